// The client program of the hostile-peer tests (hostile_test.cc): its image is what the workers
// run, and the calls a HostilePeer submits are this program's calls (print-call). argv[1]
// selects a scenario; it prints lines the test reads.
#include <dirent.h>
#include <unistd.h>

#include <chrono>
#include <clupy/clupy.hpp>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace {

int sleeps(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

long add(long a, long b) { return a + b; }

// The worker's open file descriptors, as a sorted list.
std::vector<int> open_fds() {
  std::set<int> fds;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return {-1};
  const int own = ::dirfd(dir);
  while (const dirent* entry = ::readdir(dir))
    if (entry->d_name[0] != '.' && std::atoi(entry->d_name) != own)
      fds.insert(std::atoi(entry->d_name));
  ::closedir(dir);
  return {fds.begin(), fds.end()};
}

std::string hex(const std::string& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (const char c : bytes) {
    out += kDigits[static_cast<unsigned char>(c) >> 4];
    out += kDigits[static_cast<unsigned char>(c) & 0xf];
  }
  return out;
}

// Submits an encoded call the way Parallel::operator() does, but after `forge` had its way
// with it.
template <class R>
clupy::Future<R> submit_encoded(const clupy::detail::EncodedCall& call) {
  static const auto site = clupy::detail::make_call_site(0);
  auto pending = clupy::detail::make_pending_future<R>();
  clupy::detail::submit(clupy::detail::serialize_call(call), call.function_name, {}, site,
                        pending.state);
  return pending.future;
}

// Calls whose invoker is not one of the program's invoker thunks, run by a real worker: each
// must fail with kProtocol, and the worker must still answer a genuine call afterwards.
int scenario_forged() {
  using clupy::detail::EncodedCall;
  std::vector<EncodedCall> forged;
  EncodedCall shifted = clupy::detail::encode_call(add, 1L, 2L);
  shifted.invoker.offset += 1;
  forged.push_back(shifted);
  EncodedCall plain = clupy::detail::encode_call(add, 1L, 2L);
  plain.invoker = plain.function;
  forged.push_back(plain);
  EncodedCall exits = clupy::detail::encode_call(add, 1L, 2L);
  exits.invoker = clupy::detail::locate_code(reinterpret_cast<std::uintptr_t>(&::_exit));
  forged.push_back(exits);
  int refused = 0;
  for (const auto& call : forged) {
    auto future = submit_encoded<long>(call);
    if (!future.wait(std::chrono::seconds(60))) continue;
    if (!future.successful() && future.failure().kind == clupy::FailureKind::kProtocol &&
        future.failure().message.find("invoker thunks") != std::string::npos)
      ++refused;
    else if (!future.successful())
      std::printf("UNEXPECTED %s\n", future.failure().to_string().c_str());
  }
  auto genuine = clupy::parallel(add)(40L, 2L);
  const bool ok =
      genuine.wait(std::chrono::seconds(60)) && genuine.successful() && genuine.value() == 42;
  std::printf("FORGED refused=%d of %zu genuine=%d\n", refused, forged.size(), ok ? 1 : 0);
  return 0;
}

int scenario_fds() {
  auto future = clupy::parallel(open_fds)();
  if (!future.wait(std::chrono::seconds(60)) || !future.successful()) {
    std::printf("ERROR no answer\n");
    return 1;
  }
  std::string list;
  for (const int fd : future.value()) list += (list.empty() ? "" : ",") + std::to_string(fd);
  std::printf("FDS %s\n", list.c_str());
  return 0;
}

int scenario_sleeps(int count, int ms) {
  std::vector<clupy::Future<int>> futures;
  for (int i = 0; i < count; ++i) futures.push_back(clupy::parallel(sleeps)(ms));
  int ok = 0;
  for (auto& future : futures)
    if (future.wait(std::chrono::seconds(120)) && future.successful() && future.value() == ms)
      ++ok;
    else if (future.completed())
      std::printf("FAILED %s\n", future.failure().to_string().c_str());
  std::printf("SLEEPS ok=%d of %d\n", ok, count);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "print-call") {
    // The bytes of sleeps(ms), for a HostilePeer to submit as its own.
    const int ms = argc > 2 ? std::atoi(argv[2]) : 100;
    std::printf("CALL %s\n",
                hex(clupy::detail::serialize_call(clupy::detail::encode_call(sleeps, ms))).c_str());
    return 0;
  }
  clupy::init(argc, argv);  // a worker never returns from here
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  try {
    if (mode == "forged") return scenario_forged();
    if (mode == "fds") return scenario_fds();
    if (mode == "sleeps")
      return scenario_sleeps(argc > 2 ? std::atoi(argv[2]) : 4, argc > 3 ? std::atoi(argv[3]) : 10);
  } catch (const std::exception& e) {
    std::printf("ERROR %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr, "unknown scenario '%s'\n", mode.c_str());
  return 2;
}
