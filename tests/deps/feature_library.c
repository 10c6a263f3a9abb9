/* A tiny shared library the dependency tests package into .deb files (two versions) and ship
   from the master: its one function says which build it is. */
int clupy_test_feature_version(void) { return FEATURE_VERSION; }
