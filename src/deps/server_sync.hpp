// A server's side of the dependency manifest: on each manifest the master announces, compare
// with what this machine has, install missing or too old packages (package_sync, on a thread of
// its own), fetch missing libraries from the master into a content-addressed cache (verified by
// SHA-256), and report each item's state as it changes. Owned by the server's io_context thread;
// not thread-safe. Callbacks run on that thread.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "clupy.pb.h"
#include "deps/library_fetches.hpp"

namespace clupy::deps {

class ServerSync {
 public:
  struct Callbacks {
    // The report changed (also sent again when the same manifest is announced again).
    std::function<void(const wire::DependencyReport& report)> report;
    // Ask the master for a library's bytes (FetchImage with its SHA-256).
    std::function<void(const std::string& sha256)> fetch_library;
    // The manifest's libraries are all in place: workers started from now on get `directory`
    // (absolute; empty when the manifest has no libraries) on their library path.
    std::function<void(const std::string& directory)> libraries_ready;
    // Other library folders in this cache that are in use (jobs' shipped libraries): pruning
    // keeps them as it keeps the current one.
    std::function<std::vector<std::string>()> folders_in_use;
  };

  // Every `recheck_period` (zero: never) a satisfied server checks again, quietly, that what the
  // manifest needs is still here (dpkg's database, the cached libraries' digests) and syncs
  // again when not; an unsatisfied one retries its sync; and the library cache is pruned (see
  // prune_library_cache).
  ServerSync(boost::asio::io_context& io, std::string cache_dir, Callbacks callbacks,
             std::chrono::milliseconds recheck_period = std::chrono::minutes(10));
  // Kills a running installer and waits for its thread.
  ~ServerSync();
  ServerSync(const ServerSync&) = delete;
  ServerSync& operator=(const ServerSync&) = delete;

  // A manifest from the master. The same version again re-sends the report (and retries what
  // failed); a new one starts a sync, or waits for the running one to finish (an installer is
  // never interrupted by a newer manifest).
  void apply(const wire::DependencyManifest& manifest);
  // The server is stopping: no more re-checks (their timer would keep the io_context running).
  void stop();
  // A piece of a library this sync asked for. False when it is no library of ours (the caller
  // passes it on: it may be a program image).
  bool library_chunk(const wire::ImageChunk& chunk);
  bool library_failed(const std::string& sha256, const std::string& reason);
  // The master is gone: libraries being fetched will not arrive (they are fetched again when
  // the manifest is announced after registering again).
  void connection_lost();

  const wire::DependencyReport& report() const { return report_; }
  // Satisfied for the latest manifest announced (true when none or an empty one was).
  bool satisfied() const;
  // The library directory of the latest satisfied manifest; empty when none.
  const std::string& library_directory() const { return library_directory_; }

  // What re-checks have done since this object was made (tests, logs).
  struct RecheckCounters {
    std::uint64_t rechecks = 0;      // quiet checks run
    std::uint64_t resyncs = 0;       // syncs started because a check found something missing
    std::uint64_t sets_removed = 0;  // library folders of other manifests removed
    std::uint64_t libraries_removed = 0;
  };
  const RecheckCounters& recheck_counters() const { return recheck_counters_; }

  // Removes the library folders (one per manifest version) no server sharing this cache has
  // used for 3 re-check periods, then the library files (and leftovers of interrupted fetches)
  // that no remaining folder links to and that are as old. The current folder is marked used
  // first. Runs after every re-check; public for tests.
  void prune_library_cache();

 private:
  void start(const wire::DependencyManifest& manifest);
  void packages_progress(std::uint64_t run, std::vector<wire::DependencyItem> items);
  void packages_done(std::uint64_t run, std::vector<wire::DependencyItem> items);
  void library_finished(const std::string& sha256, bool ok, const std::string& detail,
                        std::uint64_t received);
  void finish_if_done();
  void send_report();
  // Builds (once per manifest version, shared by servers with one cache) the folder of links
  // named as the libraries are to their cached files.
  std::string make_library_set(const wire::DependencyManifest& manifest);
  void join_installer();
  void arm_recheck();
  void recheck();
  void recheck_done(std::uint64_t run, std::vector<wire::DependencyItem> packages,
                    std::vector<std::string> libraries_missing);

  boost::asio::io_context& io_;
  std::string cache_dir_;
  Callbacks callbacks_;
  wire::DependencyManifest manifest_;                // being synced, or synced last
  std::optional<wire::DependencyManifest> pending_;  // announced while a sync ran
  wire::DependencyReport report_;
  bool running_ = false;
  bool packages_running_ = false;
  std::uint64_t run_ = 0;
  LibraryFetches libraries_;  // in cache_dir_
  std::string library_directory_;
  std::thread installer_;
  std::chrono::milliseconds recheck_period_;
  boost::asio::steady_timer recheck_timer_;
  bool rechecking_ = false;
  bool stopped_ = false;
  RecheckCounters recheck_counters_;
  std::atomic<bool> cancel_{false};
  // Handlers posted by the installer's thread check this before touching the object.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// Builds (once: an existing one is used as it is) `cache_dir`/sets/`folder_name`/, a folder of
// links named as the libraries are to their files `cache_dir`/<hex SHA-256>, atomically (servers
// sharing the cache may build the same folder at once). Returns its path; throws
// std::runtime_error when it cannot be made.
std::string make_library_folder(
    const std::string& cache_dir, const std::string& folder_name,
    const google::protobuf::RepeatedPtrField<wire::DependencyLibrary>& libraries);

}  // namespace clupy::deps
