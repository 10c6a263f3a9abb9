#include "master/registry.hpp"

#include <algorithm>

namespace clupy::master {

std::int64_t to_epoch_ms(Clock::time_point instant, Clock::time_point now) {
  using namespace std::chrono;
  const auto wall_now = duration_cast<milliseconds>(system_clock::now().time_since_epoch());
  return (wall_now - duration_cast<milliseconds>(now - instant)).count();
}

bool Registry::register_server(const wire::ServerDescription& description,
                               std::uint64_t connection_id, Clock::time_point now) {
  auto [it, inserted] = servers_.try_emplace(description.server_id());
  if (inserted) it->second = std::make_unique<ServerRecord>();
  ServerRecord& record = *it->second;
  if (inserted) record.registered_at = now;
  if (!inserted && (record.description.pid() != description.pid() ||
                    record.description.hostname() != description.hostname())) {
    // Another process under the same id: what the old one reported says nothing of it.
    record.dependencies.Clear();
    record.offer.Clear();
    record.offer_known = false;
  }
  record.offer_requested = false;  // a new connection: ask again if needed
  record.description = description;
  record.connection_id = connection_id;
  record.last_heartbeat = now;
  return inserted;
}

bool Registry::heartbeat(const std::string& server_id, std::uint32_t busy_slots,
                         Clock::time_point now) {
  auto it = servers_.find(server_id);
  if (it == servers_.end()) return false;
  it->second->last_heartbeat = now;
  it->second->busy_slots = busy_slots;
  return true;
}

bool Registry::unregister(const std::string& server_id) { return servers_.erase(server_id) > 0; }

void Registry::connection_lost(std::uint64_t connection_id) {
  for (auto& [id, record] : servers_)
    if (record->connection_id == connection_id) record->connection_id = 0;
}

std::vector<std::string> Registry::expire(Clock::time_point now, std::chrono::milliseconds ttl) {
  std::vector<std::string> removed;
  for (const auto& [id, record] : servers_)
    if (now - record->last_heartbeat > ttl) removed.push_back(id);
  for (const auto& id : removed) servers_.erase(id);
  std::sort(removed.begin(), removed.end());  // the order the scheduler reruns their tasks in
  return removed;
}

void Registry::reserve(const std::string& server_id, const std::string& client,
                       Clock::time_point now) {
  auto it = servers_.find(server_id);
  if (it == servers_.end() || !it->second->reserved_by.empty()) return;
  it->second->reserved_by = client;
  it->second->reserved_since = now;
}

void Registry::release(const std::string& server_id, const std::string& client) {
  auto it = servers_.find(server_id);
  if (it != servers_.end() && it->second->reserved_by == client) it->second->reserved_by.clear();
}

void Registry::fill(wire::RegistryReply& reply, Clock::time_point now) const {
  std::vector<std::pair<const std::string*, const ServerRecord*>> sorted;
  sorted.reserve(servers_.size());
  for (const auto& [id, record] : servers_) sorted.emplace_back(&id, record.get());
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return *a.first < *b.first; });
  for (const auto& [id, record_ptr] : sorted) {
    const ServerRecord& record = *record_ptr;
    wire::ServerEntry* entry = reply.add_servers();
    *entry->mutable_server() = record.description;
    entry->set_registered_at_ms(to_epoch_ms(record.registered_at, now));
    entry->set_last_heartbeat_ms(to_epoch_ms(record.last_heartbeat, now));
    entry->set_reserved_by(record.reserved_by);
    if (!record.reserved_by.empty())
      entry->set_reserved_since_ms(to_epoch_ms(record.reserved_since, now));
    entry->set_connected(record.connection_id != 0);
    entry->set_busy_slots(record.busy_slots);
    if (!record.dependencies.manifest_version().empty())
      *entry->mutable_dependencies() = record.dependencies;
  }
}

bool Registry::set_dependencies(const std::string& server_id,
                                const wire::DependencyReport& report) {
  auto it = servers_.find(server_id);
  if (it == servers_.end()) return false;
  it->second->dependencies = report;
  return true;
}

const ServerRecord* Registry::find(const std::string& server_id) const {
  auto it = servers_.find(server_id);
  return it == servers_.end() ? nullptr : it->second.get();
}

}  // namespace clupy::master

namespace clupy::master {

bool Registry::forget_offer(const std::string& server_id) {
  auto it = servers_.find(server_id);
  if (it == servers_.end() || !it->second->offer_known) return false;
  it->second->offer.Clear();
  it->second->offer_known = false;
  it->second->offer_requested = false;
  return true;
}

void Registry::offer_requested(const std::string& server_id) {
  auto it = servers_.find(server_id);
  if (it != servers_.end()) it->second->offer_requested = true;
}

bool Registry::set_offer(const std::string& server_id, wire::ServerOffer&& offer) {
  auto it = servers_.find(server_id);
  if (it == servers_.end()) return false;
  it->second->offer = std::move(offer);
  it->second->offer_known = true;
  return true;
}

}  // namespace clupy::master
