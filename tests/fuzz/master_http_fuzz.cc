// The master's HTTP side (GET /status, /metrics, /healthz, the dashboard and its sign-in) against
// any request bytes, on a real master listening on loopback. What must hold: every request that
// reaches an answer gets a well-formed HTTP/1.1 status line with a status the master documents;
// /status, /metrics and the dashboard's JSON answer 200 only to a request that carries the
// cluster token or the dashboard's cookie (http_auth: token); and the master stays up (each
// input's connection is answered or closed, none hangs).
#include <sys/socket.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
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
  std::string cookie;  // the dashboard's, as the master derives it from the token

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
    // OpenSSL makes a per-thread error state at a thread's first HMAC, reachable only through a
    // pthread key LeakSanitizer does not scan: made while an input runs, it reads as that input's
    // leak. So both threads make theirs here, before the first input.
    cookie = clupy::base::to_hex(clupy::common::hmac_sha256(kToken, "clupy-v1 dashboard cookie"));
    std::promise<void> warmed;
    asio::post(io, [&warmed] {
      clupy::common::hmac_sha256(kToken, "warm up");
      warmed.set_value();
    });
    warmed.get_future().wait();
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
  // Asynchronous operations run by io.run(): libFuzzer's -timeout alarm (SIGALRM each second)
  // interrupts blocking connect/read calls with EINTR, which the reactor's event loop absorbs.
  asio::io_context io;
  tcp::socket socket(io);
  std::string response;
  boost::system::error_code error;
  socket.async_connect(
      tcp::endpoint(asio::ip::make_address("127.0.0.1"), master.port),
      [&](boost::system::error_code connected) {
        if (connected) {
          error = connected;
          return;
        }
        asio::async_write(
            socket, asio::buffer(request), [&](boost::system::error_code, std::size_t) {
              boost::system::error_code ignored;
              socket.shutdown(tcp::socket::shutdown_send, ignored);
              asio::async_read(socket, asio::dynamic_buffer(response),  // until the master closes
                               [&](boost::system::error_code read, std::size_t) { error = read; });
            });
      });
  io.run();
  if (error && error != asio::error::eof && error != asio::error::connection_reset) {
    std::fprintf(stderr, "talking to the master failed after %zu bytes of answer: %s\n",
                 response.size(), error.message().c_str());
    std::abort();
  }
  if (response.empty()) return 0;  // closed without an answer: an incomplete request

  static const std::set<int> kDocumented = {200, 303, 400, 401, 404, 405, 413};
  if (!response.starts_with("HTTP/1.1 ") || response.size() < 12) std::abort();
  const int status = std::atoi(response.substr(9, 3).c_str());
  if (kDocumented.count(status) == 0) std::abort();
  const bool data_page = response.find("\r\nContent-Type: application/json") != std::string::npos ||
                         response.find("# HELP") != std::string::npos;
  if (status == 200 && data_page && request.find(kToken) == std::string::npos &&
      request.find(master.cookie) == std::string::npos)
    std::abort();
  return 0;
}
