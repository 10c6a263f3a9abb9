// The `coordination:` section of clupy.master.yaml (clupy.server.yaml and clupy.client.yaml may
// carry it too): where the cluster's ZooKeeper ensemble is and how to talk to it. With it, masters
// elect a leader among themselves (src/master/standby.hpp) and servers and clients given a
// zk:// master URL follow that leader (src/common/master_locator.hpp). docs/coordination.md lists
// every key with its default.
//
//   coordination:
//     connect: zk1:2181,zk2:2181,zk3:2181/clupy
//     session_timeout: 10s
//     connect_timeout: 15s
//     digest_auth: clupy:secret
//     election_path: /clupy/master
//     advertise: master-a.example.net
//
// Without the section there is no coordination (CoordinationSection::enabled is false).
#pragma once

#include <chrono>
#include <string>

namespace YAML {
class Node;
}

namespace clupy::common {

struct CoordinationSection {
  bool enabled = false;  // the file has a coordination: section
  // "host:port[,host:port...][/chroot]"; a host without a port gets 2181.
  std::string connect = "127.0.0.1:2181/clupy";
  // Negotiated with ZooKeeper, which clamps it to [2, 20] x its tickTime. A failover of the master
  // takes about this long.
  std::chrono::milliseconds session_timeout{10'000};
  // How long a process waits for its first session, and how long an operation rides out a
  // disconnection.
  std::chrono::milliseconds connect_timeout{15'000};
  // "user:password" for ZooKeeper's digest scheme; empty: none.
  std::string digest_auth;
  // Inside the chroot: candidates under <election_path>/candidates, the leader's address in
  // <election_path>/leader.
  std::string election_path = "/clupy/master";
  // The host name or address the elected master publishes for servers and clients; empty: the
  // master's bind address, or this machine's host name when it binds a wildcard address.
  std::string advertise;
  bool operator==(const CoordinationSection&) const = default;
};

// Reads the value of the `coordination` key into `out` (which keeps its defaults for absent keys):
// a mapping of the keys above ('{}' for all defaults), or `off`. Checks every value: the connect
// string's hosts and ports, durations (session_timeout from 1s to 10m), the digest's user:password
// form, the path's shape. Throws clupy::ConfigError whose message already names the place:
// "<source>:<line>: key 'coordination.<key>': <what is wrong>"; `out` is then left unchanged.
// Keeps no state: safe to call from any thread.
void parse_coordination_section(const YAML::Node& node, const std::string& source,
                                CoordinationSection& out);

// Checks a ZooKeeper connect string "host:port[,host:port...][/chroot]" and returns it with the
// default port filled in. Throws clupy::ConfigError saying what is wrong (without a place).
std::string normalize_zk_connect(const std::string& connect);

// Throws clupy::ConfigError unless `path` is a ZooKeeper path: absolute, no trailing slash, no
// empty, "." or ".." component.
void check_zk_path(const std::string& path);

}  // namespace clupy::common
