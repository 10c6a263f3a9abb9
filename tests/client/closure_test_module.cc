// A module the cross-process test dlopen()s: a worker has it only if it loads it too.
extern "C" int clupy_test_module_triple(int x) { return 3 * x; }
