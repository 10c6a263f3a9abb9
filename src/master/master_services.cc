// Published services kept across a restart of the master or a failover to a standby
// (docs/services.md, "Surviving a master restart or failover").
#include "common/log.hpp"
#include "common/master_locator.hpp"
#include "master/master.hpp"

namespace clupy::master {

namespace {
auto log() { return common::logger("service"); }
}  // namespace

std::unique_ptr<ServiceKeeper> Master::make_service_keeper() const {
  ServiceKeeper::Options options;
  options.directory = config_.data_dir + "/services";
  if (config_.coordination.enabled)
    options.coordination = common::session_options(config_.coordination);
  // An embedded store dies with its master: only an external Redis carries images over.
  if (store_ && !config_.store.embedded) options.shared_store = store_->client_options();
  return std::make_unique<ServiceKeeper>(std::move(options));
}

void Master::restore_services() {
  const auto kept = service_keeper_->load();
  if (!kept.empty())
    log()->info("{} published service(s) kept at {}", kept.size(), service_keeper_->where());
  for (const auto& loaded : kept) {
    if (!loaded.record) {
      published_->restore_failed(loaded.name, loaded.error);
      continue;
    }
    const std::string missing =
        service_keeper_->fetch_image(loaded.record->image_sha256(), images_);
    if (!missing.empty()) {
      published_->restore_failed(loaded.name, missing + "; publish it again");
      continue;
    }
    published_->restore(*loaded.record);
  }
}

}  // namespace clupy::master
