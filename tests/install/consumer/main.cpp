// A program built against an installed CluPy, as a user would build it.
#include <clupy/clupy.hpp>
#include <cstdio>

int twice(int x) { return 2 * x; }

// Compiled (templates instantiated) but not run: running needs a cluster.
clupy::Future<int> submit_one() { return clupy::parallel(twice, {.server_count = 1})(21); }

int main() {
  try {
    clupy::ConnectOptions options;
    options.master_url = "clupy://127.0.0.1:1";
    options.timeout = std::chrono::milliseconds(2000);
    clupy::cluster_status(options);
  } catch (const clupy::ConnectionError& e) {
    std::printf("consumer ok: %s\n", e.what());
    return 0;
  } catch (const clupy::Error& e) {
    std::printf("consumer ok: %s\n", e.what());
    return 0;
  }
  return 1;
}
