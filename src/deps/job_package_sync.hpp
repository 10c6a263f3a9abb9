// A server's side of jobs' own packages (JobPackagesRequest, docs/dependencies.md): each request
// is synced with deps::sync_packages on one thread of its own, one at a time in the order asked,
// and answered with a JobPackagesReport whenever its items change (the last one with
// in_progress false). Owned by the server's io_context thread; the callback runs there.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "clupy.pb.h"

namespace clupy::deps {

class JobPackageSync {
 public:
  using Report = std::function<void(const wire::JobPackagesReport& report)>;

  JobPackageSync(boost::asio::io_context& io, Report report);
  // Kills a running installer and waits for the thread.
  ~JobPackageSync();
  JobPackageSync(const JobPackageSync&) = delete;
  JobPackageSync& operator=(const JobPackageSync&) = delete;

  void request(const wire::JobPackagesRequest& request);
  // The master is gone: requests not started yet are dropped (a master asks again after
  // registration); one being installed finishes.
  void connection_lost();

 private:
  void run();
  void post_report(std::uint64_t job_id, const std::vector<wire::DependencyItem>& items,
                   bool in_progress);

  boost::asio::io_context& io_;
  Report report_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<wire::JobPackagesRequest> queue_;  // guarded by mu_
  bool stopping_ = false;                       // guarded by mu_
  std::atomic<bool> cancel_{false};
  // Handlers posted by the thread check this (on the io thread) before touching the object.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::thread thread_;
};

}  // namespace clupy::deps
