// A client program the program-check tests run: linked to libclupytestprivate.so.1 (only in the
// build tree) and to build 2 of libclupytestver.so.1 (needs CLUPYTEST_2.0). Prints
//   REFUSED <init's message>                        when init refuses it (exit 3)
//   RESULT <server> <value> <file the private library was loaded from>   per task
#include <dlfcn.h>

#include <clupy/clupy.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

extern "C" int clupy_test_private(void);
extern "C" int clupy_test_ver_two(void);

namespace {
std::string run_here(int n) {
  Dl_info info{};
  ::dladdr(reinterpret_cast<void*>(&clupy_test_private), &info);
  const char* server = std::getenv("CLUPY_WORKER_SERVER");
  return std::string(server == nullptr ? "?" : server) + " " +
         std::to_string(n * clupy_test_private() + clupy_test_ver_two()) + " " +
         (info.dli_fname == nullptr ? "?" : info.dli_fname);
}
}  // namespace

int main(int argc, char** argv) {
  try {
    clupy::init(argc, argv);
  } catch (const clupy::Error& e) {
    std::printf("REFUSED %s\n", e.what());
    return 3;
  }
  std::vector<clupy::Future<std::string>> results;
  for (int i = 0; i < 2; ++i) results.push_back(clupy::parallel(run_here)(i));
  for (auto& result : results) {
    try {
      std::printf("RESULT %s\n", result.get().c_str());
    } catch (const std::exception& e) {
      std::printf("FAILURE %s\n", e.what());
    }
  }
  return 0;
}
