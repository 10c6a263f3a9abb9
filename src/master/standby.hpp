// A standby master: several `clupy --master` processes with the same `coordination:` section join
// one election in ZooKeeper; the elected one serves and publishes its address, the others wait.
// docs/coordination.md ("A standby master") gives the failover timeline and the fencing argument.
//
// Use (run_master):
//   MasterElection election(config.coordination, MasterElection::default_candidate(),
//                           {.on_elected = ..., .on_lost = [&](auto) { post(io, stop+exit); }});
//   election.start();                 // joins; throws ConnectionError if ZooKeeper is unreachable
//   election.wait_elected(forever);   // or react in on_elected
//   master.start();                   // bind
//   election.publish(host, port);     // servers and clients given zk:// find it now
//   ... dispatch only while election.is_leader() ...
#pragma once

#include <chrono>
#include <clupy/coord.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/coord_config.hpp"

namespace clupy::master {

class MasterElection {
 public:
  enum class State {
    kIdle,     // before start()
    kStandby,  // joined, another master leads (or none yet)
    kLeading,  // elected; may serve
    kLost,     // was elected and lost it: final, this process must not lead again
    kStopped,  // stop() was called: final
  };

  struct Callbacks {
    // Elected: the master may bind, serve and then publish(). `fencing_token` is the creation
    // zxid of this master's election node: every later leader's token is higher.
    std::function<void(std::int64_t fencing_token)> on_elected;
    // Leadership lost (the ZooKeeper session was suspended or expired, or this process was
    // paused so long that its session may have expired). is_leader() is false before this runs.
    // When it returns the master must have stopped dispatching: the election is then left and
    // the session closed, so a standby takes over without waiting for the session to expire.
    std::function<void(coord::LossReason reason)> on_lost;
  };

  // `section` must be enabled; `candidate` describes this master in logs and in ZooKeeper (see
  // default_candidate()). Does not connect yet.
  MasterElection(common::CoordinationSection section, std::string candidate, Callbacks callbacks);
  // stop().
  ~MasterElection();
  MasterElection(const MasterElection&) = delete;
  MasterElection& operator=(const MasterElection&) = delete;

  // Connects to ZooKeeper (waiting up to section.connect_timeout) and joins the election. Throws
  // clupy::ConnectionError when ZooKeeper cannot be reached, clupy::ConfigError when the digest
  // is refused or the connect string is bad. Call once.
  void start();

  // Blocks until elected (true), or until the timeout passes or the election ends without being
  // elected (false).
  bool wait_elected(std::chrono::milliseconds timeout);

  // Publishes "clupy://host:port" (with the fencing token) at <election_path>/leader, an
  // ephemeral node of this master's session, replacing a node a former leader left behind.
  // Returns false when this master no longer leads (on_lost comes or came). Throws
  // clupy::ConnectionError when ZooKeeper does not answer within connect_timeout.
  bool publish(const std::string& host, int port);

  // True while elected and not lost, and this process has run recently enough to trust that: a
  // process that was paused for longer than half the session timeout (SIGSTOP, swapping) answers
  // false at once on waking, before its ZooKeeper client thread has noticed anything. Dispatchers
  // check it before each batch. Cheap (a mutex and a clock read); any thread.
  bool is_leader() const;
  // The fencing token of this master's election (0 before it was elected).
  std::int64_t fencing_token() const;
  State state() const;

  // Leaves the election: deletes the published address (if this master leads) and its election
  // node, closes the session. No callback is called by or after it. Idempotent. Call it only once
  // the master has stopped dispatching. Must not be called from a callback.
  void stop();

  // "<hostname> pid <pid>".
  static std::string default_candidate();
  // The host to publish: section.advertise when set, else `bind` unless it is a wildcard
  // (0.0.0.0, ::), else this machine's host name.
  static std::string advertised_host(const common::CoordinationSection& section,
                                     const std::string& bind);

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

const char* to_string(MasterElection::State state);

}  // namespace clupy::master
