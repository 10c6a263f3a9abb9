// The client program of the Slurm tests, run by `srun clupy --slurm-run`: its own image is what
// the servers' workers run. Prints lines the tests read:
//   CLUSTER <master url> <number of servers>      the cluster it runs on, when it starts
//   FIRST_RESULT_MS <Unix ms>                      when the first result arrived
//   RESULT <i> <server>                            task i's value: the server that ran it
//   FAILURE <i> <message>
//   DONE <succeeded> <tasks>
// Scenarios:
//   spread N MS                 N tasks of MS ms each
//   logged N MS FILE SERVERS    waits until SERVERS servers are registered, then N tasks of MS ms
//                               that append "start i server" / "end i server" lines to FILE
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <clupy/clupy.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace {

std::string server_of_worker() {
  const char* s = std::getenv("CLUPY_WORKER_SERVER");
  return s ? s : "?";
}

std::string sleeps(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return server_of_worker();
}

void append_line(const std::string& file, const std::string& line) {
  // One write of a short line with O_APPEND: lines of concurrent tasks do not interleave.
  const int fd = ::open(file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return;
  const std::string text = line + "\n";
  [[maybe_unused]] ssize_t written = ::write(fd, text.data(), text.size());
  ::close(fd);
}

std::string logged_sleep(int i, int ms, std::string file) {
  const std::string server = server_of_worker();
  append_line(file, "start " + std::to_string(i) + " " + server);
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  append_line(file, "end " + std::to_string(i) + " " + server);
  return server;
}

clupy::ClusterStatus status_of_this_cluster() {
  clupy::ConnectOptions options;
  options.master_url = clupy::master_url();
  return clupy::cluster_status(options);
}

long long now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int report(std::vector<clupy::Future<std::string>>& results) {
  // The first result's arrival, for the launch-time measurement.
  for (;;) {
    bool any = false;
    for (auto& r : results) any |= r.completed();
    if (any) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::printf("FIRST_RESULT_MS %lld\n", now_ms());
  clupy::wait_all(results, std::chrono::seconds(120));
  int succeeded = 0;
  for (std::size_t i = 0; i < results.size(); ++i) {
    if (results[i].successful()) {
      std::printf("RESULT %zu %s\n", i, results[i].value().c_str());
      ++succeeded;
    } else if (results[i].completed()) {
      std::printf("FAILURE %zu %s\n", i, results[i].failure().to_string().c_str());
    } else {
      std::printf("FAILURE %zu did not complete\n", i);
    }
  }
  std::printf("DONE %d %zu\n", succeeded, results.size());
  std::fflush(stdout);
  return succeeded == static_cast<int>(results.size()) ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  clupy::init(argc, argv);  // workers serve tasks here and never return
  const std::string scenario = argc > 1 ? argv[1] : "";
  auto status = status_of_this_cluster();
  std::printf("CLUSTER %s %zu\n", clupy::master_url().c_str(), status.servers.size());
  std::fflush(stdout);
  std::vector<clupy::Future<std::string>> results;
  if (scenario == "spread" && argc == 4) {
    const int n = std::atoi(argv[2]), ms = std::atoi(argv[3]);
    for (int i = 0; i < n; ++i) results.push_back(clupy::parallel(sleeps)(ms));
    return report(results);
  }
  if (scenario == "logged" && argc == 6) {
    const int n = std::atoi(argv[2]), ms = std::atoi(argv[3]);
    const std::string file = argv[4];
    const std::size_t servers = static_cast<std::size_t>(std::atoi(argv[5]));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (status_of_this_cluster().servers.size() < servers) {
      if (std::chrono::steady_clock::now() > deadline) {
        std::printf("FAILURE - fewer than %zu servers after 60 s\n", servers);
        return 1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    std::printf("SERVERS_READY %zu\n", servers);
    std::fflush(stdout);
    for (int i = 0; i < n; ++i) results.push_back(clupy::parallel(logged_sleep)(i, ms, file));
    return report(results);
  }
  std::fprintf(stderr, "usage: slurm_program spread N MS | logged N MS FILE SERVERS\n");
  return 2;
}
