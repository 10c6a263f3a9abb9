// The service of the service benchmark: a no-op entry point (its argument back).
#include <clupy/clupy.hpp>
#include <clupy/service.hpp>

int noop(int x) { return x; }
CLUPY_EXPORT(noop, x);

int main(int argc, char** argv) {
  clupy::init(argc, argv);
  return 0;
}
