// The master's table of servers. Pure bookkeeping with no I/O and an injected clock, so the
// TTL and reservation rules are tested directly. Not thread-safe: the master owns it on its
// io_context thread.
#pragma once

#include <boost/unordered/unordered_flat_map.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "clupy.pb.h"

namespace clupy::master {

using Clock = std::chrono::steady_clock;

struct ServerRecord {
  // First: a heartbeat touches only these, and they share a cache line this way.
  Clock::time_point last_heartbeat;
  std::uint32_t busy_slots = 0;
  wire::ServerDescription description;
  Clock::time_point registered_at;
  std::string reserved_by;  // client id; empty when free
  Clock::time_point reserved_since;
  std::uint64_t connection_id = 0;      // 0: its connection is gone, waiting for the TTL
  wire::DependencyReport dependencies;  // its last report (docs/dependencies.md)
  wire::ServerOffer offer;              // what its loader offers programs
  bool offer_known = false;
  bool offer_requested = false;  // OfferRequest sent on its current connection
};

class Registry {
 public:
  // Adds or refreshes a server (a server re-registering after a master restart or a reconnect
  // keeps its id). Returns true when the id was not known.
  bool register_server(const wire::ServerDescription& description, std::uint64_t connection_id,
                       Clock::time_point now);
  // False for an unknown id (the server must register again).
  bool heartbeat(const std::string& server_id, std::uint32_t busy_slots, Clock::time_point now);
  bool unregister(const std::string& server_id);
  // Keeps the server's latest dependency report; false for an unknown id.
  bool set_dependencies(const std::string& server_id, const wire::DependencyReport& report);
  bool set_offer(const std::string& server_id, wire::ServerOffer&& offer);
  void offer_requested(const std::string& server_id);
  // The server's offer is stale (its libraries changed); true if it had one.
  bool forget_offer(const std::string& server_id);
  // Every server, in no particular order.
  template <class F>
  void for_each(F&& f) const {
    for (const auto& [id, record] : servers_) f(id, *record);
  }
  // The connection carrying these servers closed: they stay listed until their TTL passes.
  void connection_lost(std::uint64_t connection_id);
  // Removes servers whose last heartbeat is older than ttl; returns their ids.
  std::vector<std::string> expire(Clock::time_point now, std::chrono::milliseconds ttl);

  // Records that `client` holds the server (the first holder is shown; others share it).
  void reserve(const std::string& server_id, const std::string& client, Clock::time_point now);
  void release(const std::string& server_id, const std::string& client);

  // Lists the servers in id order.
  void fill(wire::RegistryReply& reply, Clock::time_point now) const;
  const ServerRecord* find(const std::string& server_id) const;
  std::size_t size() const { return servers_.size(); }

 private:
  // Hashed, not ordered: a heartbeat (every server, every second) finds its record in one probe
  // of a dense table instead of a walk down a tree of cold nodes. Records live apart, so the
  // table stays small and a record does not move.
  boost::unordered_flat_map<std::string, std::unique_ptr<ServerRecord>> servers_;
};

// Converts a steady-clock instant to Unix epoch milliseconds, relative to `now`.
std::int64_t to_epoch_ms(Clock::time_point instant, Clock::time_point now);

}  // namespace clupy::master
