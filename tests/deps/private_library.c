/* A library only the build tree has (no package, not in the loader's cache): a program linked to
   it runs on a server only if the master ships it there. */
int clupy_test_private(void) { return 7; }
