// The master's HTTP side (GET /status, /metrics, /healthz, the dashboard and its sign-in) against
// any request bytes, on a real master listening on loopback. What must hold: every request that
// reaches an answer gets a well-formed HTTP/1.1 status line with a status the master documents;
// /status, /metrics and the dashboard's JSON answer 200 only to a request that carries the
// cluster token or the dashboard's cookie (http_auth: token); and the master stays up (each
// input's connection is answered or closed, none hangs).
#include <sys/socket.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>

#include "base/hex.hpp"
#include "common/auth.hpp"
#include "common/config.hpp"
#include "master/master.hpp"

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
constexpr const char* kToken = "fuzz-master-http-token-0123456789";

unsigned short free_port() {
  asio::io_context io;
  tcp::acceptor probe(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return probe.local_endpoint().port();
}

// One master for the whole run, on its own thread; its directory is removed at exit.
struct RunningMaster {
  std::filesystem::path dir;
  asio::io_context io;
  std::unique_ptr<clupy::master::Master> master;
  std::thread thread;
  unsigned short port = 0;

  RunningMaster() {
    char pattern[] = "/tmp/clupy-fuzz-master-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) std::abort();
    dir = pattern;
    std::ofstream(dir / "token") << kToken << "\n";
    std::filesystem::permissions(
        dir / "token", std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    clupy::common::MasterConfig config;
    config.port = 0;
    config.token_file = (dir / "token").string();
    config.data_dir = (dir / "data").string();
    config.http_auth = clupy::common::HttpAuth::kToken;
    config.log_level = "off";
    config.http_port = free_port();
    master = std::make_unique<clupy::master::Master>(io, config);
    master->start();
    port = master->http_port();
    thread = std::thread([this] { io.run(); });
  }
  ~RunningMaster() {
    asio::post(io, [this] { master->stop(); });
    thread.join();
    master.reset();
    std::filesystem::remove_all(dir);
  }
};

RunningMaster& running_master() {
  static RunningMaster instance;
  return instance;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  RunningMaster& master = running_master();
  const std::string request(reinterpret_cast<const char*>(data), size);
  asio::io_context io;
  tcp::socket socket(io);
  socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), master.port));
  boost::system::error_code error;
  asio::write(socket, asio::buffer(request), error);
  socket.shutdown(tcp::socket::shutdown_send, error);
  std::string response;
  asio::read(socket, asio::dynamic_buffer(response), error);  // until the master closes
  if (error && error != asio::error::eof && error != asio::error::connection_reset) {
    // Without a byte of answer this is a connection the master dropped (an incomplete request's
    // fate; seen once under heavy load, not reproduced); an answer cut short is a bug.
    if (response.empty()) return 0;
    std::fprintf(stderr, "reading the master's answer failed after %zu bytes: %s\n",
                 response.size(), error.message().c_str());
    std::abort();
  }
  if (response.empty()) return 0;  // closed without an answer: an incomplete request

  static const std::set<int> kDocumented = {200, 303, 400, 401, 404, 405, 413};
  static const std::string kCookie =
      clupy::base::to_hex(clupy::common::hmac_sha256(kToken, "clupy-v1 dashboard cookie"));
  if (!response.starts_with("HTTP/1.1 ") || response.size() < 12) std::abort();
  const int status = std::atoi(response.substr(9, 3).c_str());
  if (kDocumented.count(status) == 0) std::abort();
  const bool data_page = response.find("\r\nContent-Type: application/json") != std::string::npos ||
                         response.find("# HELP") != std::string::npos;
  if (status == 200 && data_page && request.find(kToken) == std::string::npos &&
      request.find(kCookie) == std::string::npos)
    std::abort();
  return 0;
}
