#include "client/embedded.hpp"

#include <boost/asio/io_context.hpp>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "clupy/errors.hpp"
#include "common/log.hpp"
#include "master/master.hpp"
#include "server/server.hpp"

namespace clupy::client {

namespace asio = boost::asio;

struct EmbeddedCluster::Impl {
  std::string directory;
  asio::io_context master_io{1};
  asio::io_context server_io{1};
  std::unique_ptr<master::Master> master;
  std::unique_ptr<server::ServerDaemon> server;
  std::thread master_thread, server_thread;
  int port = 0;
  bool stopped = false;
};

EmbeddedCluster::EmbeddedCluster(unsigned slots) : impl_(std::make_unique<Impl>()) {
  std::string pattern = (std::filesystem::temp_directory_path() / "clupy-embedded-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr)
    throw Error("cannot create a directory for the embedded cluster");
  impl_->directory = pattern;

  common::MasterConfig master_config;
  master_config.port = 0;
  master_config.token_file = token_file();
  master_config.data_dir = impl_->directory + "/master";
  // This machine is the cluster: a dependency manifest in the program's working directory is
  // not meant for it.
  master_config.dependency_file = "none";
  impl_->master = std::make_unique<master::Master>(impl_->master_io, master_config);
  impl_->master->start();
  impl_->port = impl_->master->local_endpoint().port();

  common::ServerConfig server_config;
  server_config.master_url = master_url();
  server_config.token_file = token_file();
  server_config.server_id = "embedded";
  server_config.capacity = static_cast<int>(slots);
  server_config.cache_dir = impl_->directory + "/server";
  server_config.failure_retry_interval = std::chrono::milliseconds(50);
  impl_->server = std::make_unique<server::ServerDaemon>(impl_->server_io, server_config);
  impl_->server->set_offer_on_registration(false);  // nobody compares programs with this machine
  impl_->server->start();

  impl_->master_thread = std::thread([this] { impl_->master_io.run(); });
  impl_->server_thread = std::thread([this] { impl_->server_io.run(); });
  common::logger("client")->info("started an embedded local cluster at {}", master_url());
}

EmbeddedCluster::~EmbeddedCluster() { stop(); }

std::string EmbeddedCluster::master_url() const {
  return "clupy://127.0.0.1:" + std::to_string(impl_->port);
}

std::string EmbeddedCluster::token_file() const { return impl_->directory + "/cluster.token"; }

void EmbeddedCluster::stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  asio::post(impl_->server_io, [this] { impl_->server->stop(); });
  if (impl_->server_thread.joinable()) impl_->server_thread.join();
  asio::post(impl_->master_io, [this] { impl_->master->stop(); });
  if (impl_->master_thread.joinable()) impl_->master_thread.join();
  impl_->server.reset();
  impl_->master.reset();
  std::error_code ignored;
  std::filesystem::remove_all(impl_->directory, ignored);
}

}  // namespace clupy::client
