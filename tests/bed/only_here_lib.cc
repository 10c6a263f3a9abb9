// A shared library built in the build tree only: the bed's hosts do not have it, so a program
// linked against it cannot start its workers there (scenario "missing library").
extern "C" long bed_only_here_twice(long x) { return 2 * x; }
