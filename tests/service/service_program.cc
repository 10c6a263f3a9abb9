// The service the cluster tests publish. Built three times: SERVICE_VERSION 1 and 2 (a rolling
// update switches between them) and with CRASH_AT_START (its replicas die before serving).
#include <unistd.h>

#include <chrono>
#include <clupy/clupy.hpp>
#include <clupy/service.hpp>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#ifndef SERVICE_VERSION
#define SERVICE_VERSION 1
#endif

struct Reading {
  std::string sensor;
  std::vector<double> values;
  std::optional<std::string> unit;
};
CLUPY_JSON_FIELDS(Reading, sensor, values, unit);

struct Summary {
  std::string sensor;
  double mean = 0;
  std::size_t count = 0;
};
CLUPY_JSON_FIELDS(Summary, sensor, mean, count);

long add(long a, long b) { return a + b; }
CLUPY_EXPORT(add, a, b);

Summary summarize(Reading reading) {
  Summary s{reading.sensor, 0, reading.values.size()};
  for (double v : reading.values) s.mean += v;
  if (!reading.values.empty()) s.mean /= static_cast<double>(reading.values.size());
  return s;
}
CLUPY_EXPORT(summarize, reading);

std::map<std::string, int> tally(std::vector<std::string> words) {
  std::map<std::string, int> out;
  for (const auto& w : words) ++out[w];
  return out;
}
CLUPY_EXPORT(tally, words);

int fail(std::string why) { throw std::runtime_error(why); }
CLUPY_EXPORT(fail, why);

int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
CLUPY_EXPORT(sleep_ms, ms);

int version() { return SERVICE_VERSION; }
CLUPY_EXPORT(version);

// The pid of the replica that answered: the tests find and kill it.
long replica_pid() { return static_cast<long>(::getpid()); }
CLUPY_EXPORT(replica_pid);

int main(int argc, char** argv) {
#ifdef CRASH_AT_START
  if (std::getenv("CLUPY_WORKER_FD")) {
    std::fprintf(stderr, "service_program: crashing on purpose at start\n");
    std::fflush(stderr);
    std::abort();
  }
#endif
  // A replica that comes up slowly (its server was started with SERVICE_START_DELAY_MS): the
  // publish command's view of replicas coming up is tested with it.
  if (const char* delay = std::getenv("SERVICE_START_DELAY_MS");
      delay != nullptr && std::getenv("CLUPY_WORKER_FD") != nullptr)
    std::this_thread::sleep_for(std::chrono::milliseconds(std::atoi(delay)));
  clupy::init(argc, argv);
  std::printf("service_program %d: publish me\n", SERVICE_VERSION);
  return 0;
}
