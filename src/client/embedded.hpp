// The embedded local cluster: a master and a server running on threads of this process, for
// programs started with no cluster configured (like ray.init() or Dask's Client()).
#pragma once

#include <memory>
#include <string>

namespace clupy::client {

class EmbeddedCluster {
 public:
  // Starts a master on 127.0.0.1 (a free port) and a server with `slots` worker slots (0 = one
  // per core), in a private temporary directory that holds the token and the caches.
  // Throws clupy::Error when they cannot start.
  explicit EmbeddedCluster(unsigned slots = 0);
  ~EmbeddedCluster();
  EmbeddedCluster(const EmbeddedCluster&) = delete;
  EmbeddedCluster& operator=(const EmbeddedCluster&) = delete;

  std::string master_url() const;
  std::string token_file() const;
  // Stops the server (killing its workers) and the master, and removes the directory.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace clupy::client
