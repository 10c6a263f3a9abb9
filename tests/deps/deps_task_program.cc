// The client program of the dependency tests: its tasks load the libraries the dependency
// manifest brings to servers (the packaged one by its installed path, the shipped one by its
// soname through the library path the server gives its workers) and say what they found:
//   RESULT <server> package=<version|missing> shipped=<version|missing>
#include <dlfcn.h>

#include <chrono>
#include <clupy/clupy.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

std::string loaded_version(const char* library) {
  void* handle = ::dlopen(library, RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) return "missing";
  auto* version = reinterpret_cast<int (*)()>(::dlsym(handle, "clupy_test_feature_version"));
  const std::string text = version == nullptr ? "nosymbol" : std::to_string(version());
  ::dlclose(handle);
  return text;
}

std::string what_this_server_has(int) {
  const char* server = std::getenv("CLUPY_WORKER_SERVER");
  return std::string(server == nullptr ? "?" : server) +
         " package=" + loaded_version("/usr/lib/clupy-test/libclupytestfeat.so.1") +
         " shipped=" + loaded_version("libclupytestshipped.so.1");
}

}  // namespace

int main(int argc, char** argv) {
  clupy::init(argc, argv);
  const int tasks = argc > 1 ? std::atoi(argv[1]) : 4;
  std::vector<clupy::Future<std::string>> results;
  for (int i = 0; i < tasks; ++i) results.push_back(clupy::parallel(what_this_server_has)(i));
  for (auto& result : results) {
    try {
      std::printf("RESULT %s\n", result.get().c_str());
    } catch (const std::exception& e) {
      std::printf("FAILURE %s\n", e.what());
    }
    std::fflush(stdout);
  }
  return 0;
}
