// Finding the current master through ZooKeeper: a master URL
//   zk://host:port[,host:port...][/chroot][?election_path=/clupy/master]
// names the ensemble (and chroot) the masters elect their leader in; the elected master publishes
// its address at <election_path>/leader (src/master/standby.hpp). Servers and clients resolve it
// here and are told when it changes, so they follow a failover. docs/coordination.md describes
// the timeline.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/coord_config.hpp"

namespace clupy::coord {
struct SessionOptions;
}

namespace clupy::common {

// A parsed zk:// master URL.
struct ZkMasterUrl {
  std::string connect;  // "host:port[,...][/chroot]", as coord::SessionOptions::connect wants
  std::string election_path = "/clupy/master";
  std::string to_string() const;  // zk://connect[?election_path=...] (only when not the default)
};

// True when `url` starts with "zk://": such a URL names an election, not a master.
bool is_zk_url(const std::string& url);

// Parses a zk:// URL. Throws clupy::ConfigError naming the URL and what is wrong.
ZkMasterUrl parse_zk_url(const std::string& url);

// The options of a ZooKeeper session for `section` (its connect string, timeouts, digest).
coord::SessionOptions session_options(const CoordinationSection& section);

// What the elected master published.
struct MasterLocation {
  std::string url;                 // clupy://host:port: dial this
  std::int64_t fencing_token = 0;  // the leader's election token (grows with every election)
  std::string candidate;           // who the leader is, for logs ("host pid 1234")
  bool operator==(const MasterLocation&) const = default;
};

// The contents of a <election_path>/leader node; encode/decode are exposed for tests and tools.
std::string encode_master_location(const MasterLocation& location);
// nullopt when `bytes` holds no url line, or a url that parse_master_url rejects.
std::optional<MasterLocation> decode_master_location(const std::string& bytes);

// Follows the leader published under a zk:// URL. Keeps one ZooKeeper session with one watch on
// the leader node; a session that expires is replaced in the background, so the locator goes on
// following through a ZooKeeper outage once the ensemble is back.
// Thread-safe. Construction does not wait for ZooKeeper; resolve() does.
class MasterLocator {
 public:
  // `section` supplies the session timeout, connect timeout and digest; its connect string and
  // election path are replaced by the URL's. Throws clupy::ConfigError for a bad URL.
  MasterLocator(const std::string& zk_url, const CoordinationSection& section = {});
  // Waits for the background session attempt in progress (at most about 3 s) and closes the
  // session. No listener runs after it returns. Must not be called from a listener.
  ~MasterLocator();
  MasterLocator(const MasterLocator&) = delete;
  MasterLocator& operator=(const MasterLocator&) = delete;

  // The published leader, waiting up to `timeout` for one to be published (and for ZooKeeper to
  // be reached). Throws clupy::ConnectionError when none is known by then; its message says
  // whether ZooKeeper could not be reached or no master is elected. While ZooKeeper is
  // unreachable, the last location seen is returned (it may be stale: dialing it then fails).
  MasterLocation resolve(std::chrono::milliseconds timeout);
  // Does not wait: the last location seen, or nullopt when none is published.
  std::optional<MasterLocation> current() const;

  // Calls `listener(location)` after every change of the published leader: a new location, or
  // nullopt when the old leader's node vanished (it died or stepped down) and no new one is
  // published yet. Runs on the locator's ZooKeeper event thread, one call at a time, in order;
  // it must return quickly (post work elsewhere) and must not destroy the locator. Returns an id
  // for unsubscribe().
  using Listener = std::function<void(const std::optional<MasterLocation>&)>;
  std::uint64_t subscribe(Listener listener);
  // After it returns, the listener is not running and will not be called again (unless called
  // from that listener itself).
  void unsubscribe(std::uint64_t id);

  const ZkMasterUrl& url() const;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace clupy::common
