// A store writer that uploads MiB of data and then waits to be killed: the atomicity test
// SIGKILLs it mid-write. Usage: store_writer_helper REDIS_URL KEY_PREFIX NAME MIB
#include <unistd.h>

#include <clupy/store.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s REDIS_URL KEY_PREFIX NAME MIB\n", argv[0]);
    return 2;
  }
  clupy::StoreOptions options;
  options.redis_url = argv[1];
  options.key_prefix = argv[2];
  options.chunk_size = 256 * 1024;
  clupy::Store store(options);
  clupy::StoreWriter writer = store.open_write(argv[3]);
  std::string mib(1 << 20, 'w');
  for (long i = 0; i < std::strtol(argv[4], nullptr, 10); ++i) writer << mib;
  writer.flush();
  // Everything sent so far is acknowledged once the pipeline drains below its depth; say so and
  // wait for the SIGKILL without committing.
  std::printf("written\n");
  std::fflush(stdout);
  while (true) ::pause();
}
