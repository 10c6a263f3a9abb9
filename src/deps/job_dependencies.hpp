// A server's side of a job's own dependencies (JobPackagesRequest, docs/dependencies.md): its
// packages, installed by JobPackageSync on a thread of its own, and the libraries it ships from
// its client, fetched from the master (FetchImage with each one's SHA-256, verified) into the
// server's library cache and linked by name into a folder of that set alone
// (cache_dir/libraries/sets/job-<set digest>). One JobPackagesReport per change carries both,
// packages first; the last one has in_progress false. Owned by the server's io_context thread;
// not thread-safe; callbacks run on that thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "clupy.pb.h"
#include "deps/job_package_sync.hpp"
#include "deps/library_fetches.hpp"

namespace clupy::deps {

class JobDependencies {
 public:
  struct Callbacks {
    std::function<void(const wire::JobPackagesReport& report)> report;
    // Ask the master for a library's bytes (FetchImage with its SHA-256).
    std::function<void(const std::string& sha256)> fetch_library;
  };
  JobDependencies(boost::asio::io_context& io, std::string cache_dir, Callbacks callbacks);
  JobDependencies(const JobDependencies&) = delete;
  JobDependencies& operator=(const JobDependencies&) = delete;

  void request(const wire::JobPackagesRequest& request);
  // A piece of a library a job's request asked for. False when no job waits for it (the caller
  // passes it on).
  bool library_chunk(const wire::ImageChunk& chunk);
  bool library_failed(const std::string& sha256, const std::string& reason);
  // The master is gone: libraries being fetched will not arrive, requests not started are
  // dropped (a master asks again after registration).
  void connection_lost();

  // The folder of the job's libraries for Assignment.library_set (deps::library_set_digest),
  // marked as used now; "" for an empty digest.
  std::string library_directory(const std::string& library_set);
  // The folders this server built or used in the last day, for pruning to keep
  // (ServerSync::Callbacks): a job's workers may start long after its libraries were fetched.
  std::vector<std::string> folders_in_use() const;

 private:
  struct Job {
    wire::JobPackagesRequest request;
    std::vector<wire::DependencyItem> packages;
    bool packages_done = true;
    std::vector<wire::DependencyItem> libraries;  // in the order of request.libraries()
    std::string folder_error;
  };
  void packages_report(const wire::JobPackagesReport& report);
  void library_finished(const std::string& sha256, bool ok, const std::string& detail,
                        std::uint64_t received);
  // Sends the job's state; once everything is final, builds its library folder first.
  void send(std::uint64_t job_id);
  std::string folder_of(const std::string& library_set) const;

  boost::asio::io_context& io_;
  std::string cache_dir_;  // cache_dir/libraries
  Callbacks callbacks_;
  std::map<std::uint64_t, Job> jobs_;  // by job id; until their final report
  LibraryFetches libraries_;           // in cache_dir_
  std::map<std::string, std::chrono::steady_clock::time_point> folders_;  // when last used
  JobPackageSync packages_;
};

}  // namespace clupy::deps
