// A small blocking HTTP/1.1 client for the service tests (Boost.Beast), one keep-alive
// connection to 127.0.0.1:port, reopened after a failure.
#pragma once

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace clupy::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

struct HttpAnswer {
  int status = 0;  // 0: no answer (the connection failed)
  std::string body;
  nlohmann::json json() const { return nlohmann::json::parse(body, nullptr, false); }
};

// One keep-alive HTTP/1.1 connection to 127.0.0.1:port, reopened after a failure.
class HttpClient {
 public:
  explicit HttpClient(int port, std::string authorization = "")
      : port_(port), authorization_(std::move(authorization)) {}

  HttpAnswer post(const std::string& path, const std::string& body) {
    return send(http::verb::post, path, body);
  }
  HttpAnswer get(const std::string& path) { return send(http::verb::get, path, ""); }

  HttpAnswer send(http::verb verb, const std::string& path, const std::string& body) {
    HttpAnswer answer;
    try {
      if (!stream_) {
        stream_ = std::make_unique<beast::tcp_stream>(io_);
        stream_->connect(
            tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port_)));
      }
      http::request<http::string_body> request(verb, path, 11);
      request.set(http::field::host, "127.0.0.1");
      if (!authorization_.empty()) request.set(http::field::authorization, authorization_);
      if (verb == http::verb::post) request.set(http::field::content_type, "application/json");
      request.body() = body;
      request.prepare_payload();
      stream_->expires_after(std::chrono::seconds(30));
      http::write(*stream_, request);
      beast::flat_buffer buffer;
      http::response_parser<http::string_body> parser;
      parser.body_limit(64 << 20);
      http::read(*stream_, buffer, parser);
      answer.status = static_cast<int>(parser.get().result_int());
      answer.body = parser.get().body();
      if (!parser.get().keep_alive()) stream_.reset();
    } catch (const std::exception& e) {
      stream_.reset();
      answer.body = e.what();
    }
    return answer;
  }

 private:
  int port_;
  std::string authorization_;
  asio::io_context io_;
  std::unique_ptr<beast::tcp_stream> stream_;
};

}  // namespace clupy::test
