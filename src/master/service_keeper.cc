#include "master/service_keeper.hpp"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "clupy/errors.hpp"
#include "common/log.hpp"
#include "coord/session_impl.hpp"

namespace clupy::master {

namespace fs = std::filesystem;

namespace {

auto log() { return common::logger("service"); }

constexpr const char* kSuffix = ".kept";

// Written to a temporary file and renamed into place: a reader never sees half a record.
bool write_atomically(const std::string& path, const std::string& bytes, std::string& error) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) {
      error = "cannot write " + tmp;
      return false;
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) error = "cannot rename " + tmp + ": " + ec.message();
  return !ec;
}

ServiceKeeper::Loaded parse(const std::string& name, const std::string& bytes,
                            const std::string& where) {
  ServiceKeeper::Loaded loaded;
  loaded.name = name;
  wire::KeptService record;
  if (!record.ParseFromString(bytes)) {
    loaded.error = "the kept definition " + where + " is corrupt (it does not parse)";
  } else if (record.definition().name() != name) {
    loaded.error = "the kept definition " + where + " names another service ('" +
                   record.definition().name() + "')";
  } else if (record.image_sha256().size() != 32 || record.definition().entry_points().empty() ||
             record.definition().replicas() == 0 || record.definition().port() == 0) {
    loaded.error = "the kept definition " + where +
                   " is incomplete (no image digest, entry points, replicas or port)";
  } else {
    loaded.record = std::move(record);
  }
  return loaded;
}

}  // namespace

ServiceKeeper::ServiceKeeper(Options options) : options_(std::move(options)) {
  std::error_code ec;
  fs::create_directories(options_.directory, ec);
  if (ec)
    throw ConfigError("cannot create " + options_.directory +
                      " (published services): " + ec.message());
  thread_ = std::thread([this] { run(); });
}

ServiceKeeper::~ServiceKeeper() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
  std::lock_guard lock(session_mu_);
  if (session_) session_->close();
}

std::string ServiceKeeper::where() const {
  if (!options_.coordination) return options_.directory;
  return "ZooKeeper " + options_.zk_path + " (and " + options_.directory + ")";
}

std::string ServiceKeeper::file_of(const std::string& name) const {
  return options_.directory + "/" + name + kSuffix;
}

std::string ServiceKeeper::store_name_of(const std::string& sha256) const {
  return "clupy-services/" + hex_of(sha256);
}

std::shared_ptr<coord::Session> ServiceKeeper::session() {
  std::lock_guard lock(session_mu_);
  if (!session_ || session_->state() == coord::SessionState::kExpired)
    session_ = std::make_shared<coord::Session>(*options_.coordination);
  return session_;
}

std::vector<ServiceKeeper::Loaded> ServiceKeeper::load() {
  std::vector<Loaded> loaded = options_.coordination ? load_zookeeper() : load_directory();
  for (const auto& l : loaded)
    if (l.record) image_of_[l.name] = l.record->image_sha256();
  return loaded;
}

std::vector<ServiceKeeper::Loaded> ServiceKeeper::load_directory() {
  std::vector<Loaded> loaded;
  std::error_code ec;
  for (const auto& file : fs::directory_iterator(options_.directory, ec)) {
    const std::string filename = file.path().filename().string();
    if (!filename.ends_with(kSuffix)) continue;
    const std::string name = filename.substr(0, filename.size() - std::strlen(kSuffix));
    std::ifstream in(file.path(), std::ios::binary);
    std::stringstream bytes;
    bytes << in.rdbuf();
    loaded.push_back(parse(name, bytes.str(), file.path().string()));
  }
  if (ec) {
    Loaded failed;
    failed.name = "*";
    failed.error = "cannot read " + options_.directory + ": " + ec.message();
    loaded.push_back(std::move(failed));
  }
  std::sort(loaded.begin(), loaded.end(),
            [](const Loaded& a, const Loaded& b) { return a.name < b.name; });
  return loaded;
}

std::vector<ServiceKeeper::Loaded> ServiceKeeper::load_zookeeper() {
  std::vector<Loaded> loaded;
  try {
    auto impl = session()->impl();
    auto names = impl->children(options_.zk_path, nullptr);
    if (!names) return loaded;
    std::sort(names->begin(), names->end());
    for (const auto& name : *names) {
      std::string bytes;
      const std::string path = options_.zk_path + "/" + name;
      if (impl->get(path, &bytes, nullptr, nullptr) != ZOK) continue;  // unpublished meanwhile
      loaded.push_back(parse(name, bytes, "at ZooKeeper " + path));
    }
  } catch (const std::exception& e) {
    Loaded failed;
    failed.name = "*";
    failed.error =
        "cannot read the kept services at ZooKeeper " + options_.zk_path + ": " + e.what();
    loaded.push_back(std::move(failed));
  }
  return loaded;
}

std::string ServiceKeeper::fetch_image(const std::string& sha256, ImageStore& images) {
  if (images.has(sha256)) return "";
  const std::string hex = hex_of(sha256);
  if (!options_.shared_store)
    return "its program image " + hex.substr(0, 16) +
           " is not in this master's data_dir/images and the cluster has no store every master "
           "reaches (store.redis) to fetch it from";
  const std::string part = images.path_of(sha256) + ".fetch";
  try {
    Store store(*options_.shared_store);
    store.get_file(store_name_of(sha256), part);
  } catch (const std::exception& e) {
    std::error_code ignored;
    fs::remove(part, ignored);
    return "its program image " + hex.substr(0, 16) +
           " is neither in this master's data_dir/images nor fetchable from the store (" +
           store_name_of(sha256) + "): " + e.what();
  }
  const std::string refused = images.add_file(sha256, part);
  if (!refused.empty())
    return "the store's copy of its program image " + hex.substr(0, 16) +
           " is unusable: " + refused;
  log()->info("fetched program image {} from the store ({})", hex.substr(0, 16),
              store_name_of(sha256));
  return "";
}

void ServiceKeeper::keep(const wire::KeptService& record, const std::string& image_path) {
  const std::string& name = record.definition().name();
  const std::string bytes = record.SerializeAsString();
  std::string error;
  if (!write_atomically(file_of(name), bytes, error))
    log()->error("service {}: cannot keep its definition: {}", name, error);
  const std::string old_image = image_of_.count(name) ? image_of_[name] : "";
  image_of_[name] = record.image_sha256();
  bool old_still_used = false;
  for (const auto& [other, sha] : image_of_) old_still_used |= sha == old_image;
  if (!options_.coordination) return;
  post([this, name, bytes, image = record.image_sha256(), image_path,
        old = old_still_used ? std::string() : old_image] {
    // The image first: a record in ZooKeeper always names an image the store holds.
    if (options_.shared_store) {
      try {
        Store store(*options_.shared_store);
        if (!store.exists(store_name_of(image))) store.put_file(image_path, store_name_of(image));
        store.pin(store_name_of(image));
        if (!old.empty() && old != image) store.remove(store_name_of(old));
      } catch (const std::exception& e) {
        log()->error("service {}: cannot copy its program image to the store: {}", name, e.what());
      }
    }
    try {
      auto impl = session()->impl();
      const std::string path = options_.zk_path + "/" + name;
      if (impl->set(path, bytes, nullptr) == ZNONODE) {
        impl->ensure_path(options_.zk_path);
        if (impl->create(path, bytes, 0) == ZNODEEXISTS) impl->set(path, bytes, nullptr);
      }
      log()->info("service {}: definition kept at ZooKeeper {}", name, path);
    } catch (const std::exception& e) {
      log()->error("service {}: cannot keep its definition in ZooKeeper: {}", name, e.what());
    }
  });
}

void ServiceKeeper::forget(const std::string& name) {
  std::error_code ignored;
  fs::remove(file_of(name), ignored);
  const std::string image = image_of_.count(name) ? image_of_[name] : "";
  image_of_.erase(name);
  bool still_used = false;
  for (const auto& [other, sha] : image_of_) still_used |= sha == image;
  if (!options_.coordination) return;
  post([this, name, image = still_used ? std::string() : image] {
    try {
      session()->impl()->remove(options_.zk_path + "/" + name);
    } catch (const std::exception& e) {
      log()->error("service {}: cannot remove its definition from ZooKeeper: {}", name, e.what());
    }
    if (options_.shared_store && !image.empty()) {
      try {
        Store store(*options_.shared_store);
        store.remove(store_name_of(image));
      } catch (const std::exception& e) {
        log()->warn("service {}: cannot remove its program image from the store: {}", name,
                    e.what());
      }
    }
  });
}

void ServiceKeeper::post(std::function<void()> work) {
  {
    std::lock_guard lock(mu_);
    work_.push_back(std::move(work));
  }
  wake_.notify_one();
}

void ServiceKeeper::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    wake_.wait(lock, [&] { return stopping_ || !work_.empty(); });
    if (work_.empty()) return;  // stopping, everything written
    auto work = std::move(work_.front());
    work_.pop_front();
    lock.unlock();
    work();
    lock.lock();
  }
}

}  // namespace clupy::master
