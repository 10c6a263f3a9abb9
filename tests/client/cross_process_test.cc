// Calls encoded in this process run in another process of the same image (re-executed from
// /proc/self/exe, so ASLR gives it other load addresses): a plain function, a function in a
// linked shared library, capturing lambdas (one instantiated in that library), a registered
// name, a throwing function, and a function in a dlopen()ed module the worker has not loaded
// (refused) and then has loaded (runs).
//
// This binary has its own main(): with CLUPY_CLOSURE_TEST_WORKER=<calls>:<outcomes> set it is
// the worker, as clupy::init() makes a program's worker processes.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <link.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "closure_test_lib.hpp"
#include "clupy/detail/call.hpp"
#include "support/process.hpp"
#include "test_types.hpp"

namespace clupy::test {

struct Overdrawn : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::vector<int> primes_below(int n) {
  std::vector<int> out;
  for (int i = 2; i < n; ++i) {
    bool prime = true;
    for (int d = 2; d * d <= i && prime; ++d) prime = i % d != 0;
    if (prime) out.push_back(i);
  }
  return out;
}
long withdraw(long balance, long amount) {
  if (amount > balance)
    throw Overdrawn("balance " + std::to_string(balance) + " < " + std::to_string(amount));
  return balance - amount;
}
std::string shout(const std::string& s) { return s + "!"; }

}  // namespace clupy::test

CLUPY_REMOTE(clupy::test::shout);

namespace clupy::test {
namespace {

constexpr char kWorkerEnv[] = "CLUPY_CLOSURE_TEST_WORKER";
constexpr char kModuleSymbol[] = "clupy_test_module_triple";

// Records: a count, then length-prefixed byte strings.
void write_records(const std::string& path, const std::vector<std::string>& records) {
  std::ofstream out(path, std::ios::binary);
  for (const std::string& r : records) {
    const std::uint64_t size = r.size();
    out.write(reinterpret_cast<const char*>(&size), sizeof size);
    out.write(r.data(), static_cast<std::streamsize>(r.size()));
  }
  if (!out) throw std::runtime_error("cannot write " + path);
}
std::vector<std::string> read_records(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<std::string> records;
  std::uint64_t size = 0;
  while (in.read(reinterpret_cast<char*>(&size), sizeof size)) {
    std::string r(size, '\0');
    in.read(r.data(), static_cast<std::streamsize>(size));
    records.push_back(std::move(r));
  }
  return records;
}

std::uintptr_t main_program_bias() {
  std::uintptr_t bias = 0;
  dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* out) {
        *static_cast<std::uintptr_t*>(out) = info->dlpi_addr;
        return 1;
      },
      &bias);
  return bias;
}

// The worker role: runs every call, then loads the module and runs the last call again.
int run_worker(const std::string& spec) {
  const auto colon = spec.find(':');
  const std::vector<std::string> calls = read_records(spec.substr(0, colon));
  std::vector<std::string> outcomes;
  for (const std::string& bytes : calls) {
    outcomes.push_back(detail::serialize_outcome(detail::execute_call(detail::parse_call(bytes))));
  }
  if (dlopen(CLUPY_TEST_MODULE_PATH, RTLD_NOW) == nullptr) return 3;
  outcomes.push_back(
      detail::serialize_outcome(detail::execute_call(detail::parse_call(calls.back()))));
  outcomes.push_back(std::to_string(main_program_bias()));
  write_records(spec.substr(colon + 1), outcomes);
  return 0;
}

template <class T>
T result_of(const detail::CallOutcome& outcome) {
  EXPECT_TRUE(outcome.ok) << outcome.failure.to_string();
  auto pending = detail::make_pending_future<T>();
  pending.state->complete_with_result(outcome.result);
  return pending.future.get();
}

TEST(CrossProcessTest, CallsEncodedHereRunInAnotherProcessOfTheSameImage) {
  void* module = dlopen(CLUPY_TEST_MODULE_PATH, RTLD_NOW);
  ASSERT_NE(module, nullptr) << dlerror();
  auto* triple = reinterpret_cast<int (*)(int)>(dlsym(module, kModuleSymbol));
  ASSERT_NE(triple, nullptr);

  const Point origin{10, 20};
  const int scale = 3;
  std::vector<detail::EncodedCall> calls = {
      detail::encode_call(primes_below, 30),
      detail::encode_call(lib_cube, 4),
      detail::encode_call(
          [origin, scale](Point p) {
            return Point{origin.x + scale * p.x, origin.y};
          },
          Point{2, 0}),
      lib_scaled_call(5, 1, 8),
      detail::encode_call(shout, "hey"),
      detail::encode_call(withdraw, 5L, 9L),
      detail::encode_call(triple, 14),  // last: the worker runs it without and with the module
  };
  EXPECT_EQ(calls[0].form, detail::CallForm::kFunction);
  EXPECT_NE(calls[1].function.segment_id, calls[0].function.segment_id);
  EXPECT_NE(calls[1].function.segment_path.find("closure_test_lib"), std::string::npos);
  EXPECT_NE(calls[3].invoker.segment_id, calls[0].invoker.segment_id);
  EXPECT_EQ(calls[4].form, detail::CallForm::kNamed);
  EXPECT_NE(calls[6].function.segment_path.find("closure_test_module"), std::string::npos);

  TempDir dir;
  std::vector<std::string> bytes;
  for (const auto& c : calls) bytes.push_back(detail::serialize_call(c));
  write_records(dir.file("calls"), bytes);

  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  ASSERT_GT(n, 0);
  ChildProcess worker(
      ChildProcess::Options{.argv = {std::string(self, static_cast<std::size_t>(n))},
                            .env = {{kWorkerEnv, dir.file("calls") + ":" + dir.file("outcomes")}},
                            .working_dir = "",
                            .log_path = dir.file("worker.log")});
  const auto status = worker.wait(std::chrono::seconds(120));
  ASSERT_TRUE(status.has_value()) << "the worker did not finish";
  ASSERT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
      << "worker status " << *status << ", log:\n"
      << worker.log();

  const std::vector<std::string> records = read_records(dir.file("outcomes"));
  ASSERT_EQ(records.size(), calls.size() + 2);
  std::vector<detail::CallOutcome> out;
  for (std::size_t i = 0; i + 1 < records.size(); ++i)
    out.push_back(detail::parse_outcome(records[i]));

  EXPECT_EQ(result_of<std::vector<int>>(out[0]), primes_below(30));
  EXPECT_EQ(result_of<int>(out[1]), 64);
  EXPECT_EQ(result_of<Point>(out[2]), (Point{16, 20}));
  EXPECT_EQ(result_of<int>(out[3]), 41);
  EXPECT_EQ(result_of<std::string>(out[4]), "hey!");

  EXPECT_FALSE(out[5].ok);
  EXPECT_EQ(out[5].failure.kind, FailureKind::kException);
  EXPECT_EQ(out[5].failure.type_name, "clupy::test::Overdrawn");
  EXPECT_EQ(out[5].failure.message, "balance 5 < 9");

  EXPECT_FALSE(out[6].ok);
  EXPECT_EQ(out[6].failure.kind, FailureKind::kProtocol);
  EXPECT_NE(out[6].failure.message.find("is not loaded in this process"), std::string::npos)
      << out[6].failure.message;
  EXPECT_EQ(result_of<int>(out[7]), 42);

  // Informational: with ASLR off (setarch -R) both would match and the test still holds.
  const std::uintptr_t worker_bias = std::stoull(records.back());
  std::printf("load bias of the program: here %#llx, in the worker %#llx\n",
              static_cast<unsigned long long>(main_program_bias()),
              static_cast<unsigned long long>(worker_bias));
  dlclose(module);
}

}  // namespace
}  // namespace clupy::test

int main(int argc, char** argv) {
  if (const char* spec = std::getenv(clupy::test::kWorkerEnv)) {
    return clupy::test::run_worker(spec);
  }
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
