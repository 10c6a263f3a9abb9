// Keeps the definitions of published services where a restarted or newly elected master finds
// them (docs/services.md, "Surviving a master restart or failover"):
// - always in <data_dir>/services/<name>.kept (a wire::KeptService), for a restart of the same
//   master; the program image stays in <data_dir>/images, pinned while the service lives;
// - with coordination, also in ZooKeeper at <chroot>/clupy/services/<name>, which an elected
//   master reads instead of its directory (the standby's data_dir never saw the publish);
// - with a store every master reaches (a `store:` section naming an external Redis), the image
//   also as the store file clupy-services/<sha256 hex>, pinned, from which an elected master
//   that lacks it fetches it.
//
// Threading: the constructor, load(), fetch_image(), keep() and forget() run on the master's
// io_context thread. load() and fetch_image() block (ZooKeeper and Redis); they run once, when
// the master starts serving. keep() and forget() write the local file at once and hand the
// ZooKeeper and store writes to a thread this object owns, in order, so that a slow ZooKeeper
// or Redis never stalls the HTTP fronts. Errors of those writes are logged, never thrown.
#pragma once

#include <clupy/coord.hpp>
#include <clupy/store.hpp>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "kept_service.pb.h"
#include "master/images.hpp"

namespace clupy::master {

class ServiceKeeper {
 public:
  struct Options {
    std::string directory;  // <data_dir>/services
    // Set when the master is one of a standby set: records go to ZooKeeper too.
    std::optional<coord::SessionOptions> coordination;
    std::string zk_path = "/clupy/services";
    // Set when the cluster's store is an external Redis that every master reaches.
    std::optional<StoreOptions> shared_store;
  };

  // One kept service as a starting master finds it: a record, or why there is none usable.
  struct Loaded {
    std::string name;
    std::optional<wire::KeptService> record;
    std::string error;  // "" when record is set
  };

  // Creates the directory. Throws clupy::ConfigError when it cannot.
  explicit ServiceKeeper(Options options);
  // Finishes the queued ZooKeeper and store writes (each bounded by its own timeouts).
  ~ServiceKeeper();
  ServiceKeeper(const ServiceKeeper&) = delete;
  ServiceKeeper& operator=(const ServiceKeeper&) = delete;

  // The kept services, sorted by name: from ZooKeeper when coordinated, else from the
  // directory. A record that does not parse is a Loaded with its error. Blocks; never throws
  // (ZooKeeper unreachable is one Loaded named "*" with the error).
  std::vector<Loaded> load();

  // Makes the image `sha256` (raw digest) present in `images`, fetching it from the shared store
  // when it is not there yet. Returns "" or why the image cannot be had. Blocks.
  std::string fetch_image(const std::string& sha256, ImageStore& images);

  // Records `record` (replacing the service's previous record); `image_path` is the image's
  // file, copied to the shared store when there is one.
  void keep(const wire::KeptService& record, const std::string& image_path);
  // Removes the service's record (and its image from the shared store when no other kept
  // service runs it). A later start does not serve it again.
  void forget(const std::string& name);

  // Where records are kept, for logs: "<dir>" or "ZooKeeper <path> (and <dir>)".
  std::string where() const;

 private:
  std::string file_of(const std::string& name) const;
  std::string store_name_of(const std::string& sha256) const;
  std::vector<Loaded> load_directory();
  std::vector<Loaded> load_zookeeper();
  // The ZooKeeper session, connected on first use (throws CoordError).
  std::shared_ptr<coord::Session> session();
  void post(std::function<void()> work);
  void run();

  Options options_;
  std::map<std::string, std::string> image_of_;  // kept service -> its image's raw digest

  std::mutex session_mu_;
  std::shared_ptr<coord::Session> session_;

  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> work_;
  bool stopping_ = false;
  std::thread thread_;  // last: started once everything above exists
};

}  // namespace clupy::master
