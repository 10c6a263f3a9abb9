// Fakes for the Dispatcher's tests: processes that record what they are sent and are killed
// by hand, an outbox that records reports and starts fakes, and a clock the test moves.
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "worker/dispatch.hpp"

namespace clupy::worker::fakes {

class FakeProcess : public WorkerProcess {
 public:
  FakeProcess(pid_t pid, std::string of_image) : image(std::move(of_image)), pid_(pid) {}
  pid_t pid() const override { return pid_; }
  void send(const wire::Assignment& task) override { sent.push_back(task.task_id()); }
  std::optional<std::uint64_t> running() const override { return page; }
  void kill() override { ++kills; }
  void retire() override { retired = true; }
  void stop_now() override { stopped = true; }

  std::string image;
  std::vector<std::uint64_t> sent;
  std::optional<std::uint64_t> page;  // what its progress page says; none: no page
  int kills = 0;
  bool retired = false;
  bool stopped = false;

 private:
  pid_t pid_;
};

class RecordingOutbox : public DispatchOutbox {
 public:
  void report(wire::TaskResult&& result) override { reports.push_back(std::move(result)); }
  std::shared_ptr<WorkerProcess> spawn(const std::string& image, const std::string&,
                                       const std::string& library_set) override {
    if (refuse_spawn) return nullptr;
    library_sets.push_back(library_set);
    auto process = std::make_shared<FakeProcess>(1000 + static_cast<pid_t>(spawned.size()), image);
    spawned.push_back(process);
    return process;
  }
  void front_changed(WorkerProcess& worker, const wire::Assignment* front) override {
    fronts[&worker].push_back(front ? front->task_id() : 0);
  }

  // The reports so far, taken.
  std::vector<wire::TaskResult> take_reports() { return std::exchange(reports, {}); }

  std::vector<wire::TaskResult> reports;
  std::vector<std::shared_ptr<FakeProcess>> spawned;
  std::vector<std::string> library_sets;                        // of each spawned worker, in order
  std::map<WorkerProcess*, std::vector<std::uint64_t>> fronts;  // 0: none
  bool refuse_spawn = false;
};

inline const std::string kImageA(32, 'a');
inline const std::string kImageB(32, 'b');

class DispatcherFixture : public ::testing::Test {
 protected:
  explicit DispatcherFixture(unsigned capacity = 1)
      : dispatcher_(outbox_, "server-1", "host-1", capacity) {}

  wire::Assignment task(std::uint64_t id, const std::string& image = kImageA,
                        std::uint32_t timeout_ms = 0) {
    wire::Assignment a;
    a.set_task_id(id);
    a.set_image_sha256(image);
    a.set_image_name("program");
    a.set_call("call-" + std::to_string(id));
    a.set_timeout_ms(timeout_ms);
    return a;
  }
  // Adds tasks of an image already in the cache.
  void add(std::vector<std::uint64_t> ids, const std::string& image = kImageA) {
    dispatcher_.image_ready(image, now_);
    for (auto id : ids) dispatcher_.add(task(id, image), now_);
  }
  // The worker reports `id` done with an outcome.
  void done(FakeProcess& worker, std::uint64_t id) {
    wire::Envelope message;
    message.mutable_task_done()->set_task_id(id);
    message.mutable_task_done()->set_outcome("out-" + std::to_string(id));
    dispatcher_.worker_message(worker, message, now_);
  }
  // The worker's link closes and it is reaped with `exit`.
  void dies(FakeProcess& worker, WorkerExit exit = killed_by(SIGSEGV)) {
    dispatcher_.worker_closing(worker);
    dispatcher_.worker_exited(worker, exit, now_);
  }
  static WorkerExit killed_by(int signal) {
    WorkerExit exit;
    exit.known = exit.signaled = exit.attached = true;
    exit.signal = signal;
    return exit;
  }
  static WorkerExit exited_with(int code, bool attached = true) {
    WorkerExit exit;
    exit.known = true;
    exit.exit_code = code;
    exit.attached = attached;
    return exit;
  }
  FakeProcess& worker(std::size_t i) { return *outbox_.spawned.at(i); }
  std::vector<std::uint64_t> queue(std::size_t i) { return dispatcher_.queue_of(worker(i)); }
  // Ids of the reports whose failure kind is `kind` (or outcomes, for kException).
  std::vector<std::uint64_t> reported_ids(const std::vector<wire::TaskResult>& reports) {
    std::vector<std::uint64_t> ids;
    for (const auto& r : reports) ids.push_back(r.task_id());
    return ids;
  }

  RecordingOutbox outbox_;
  Dispatcher dispatcher_;
  Clock::time_point now_ = Clock::time_point() + std::chrono::hours(1);
};

inline FailureKind kind_of(const wire::TaskResult& r) {
  return static_cast<FailureKind>(r.failure().kind());
}

}  // namespace clupy::worker::fakes
