/* A library with symbol versions (versioned_v1.map, versioned_v2.map): build 2 adds
   clupy_test_ver_two at CLUPYTEST_2.0, so a program linked to it needs CLUPYTEST_2.0, which
   build 1 does not define (as a program built against a newer glibc needs GLIBC_2.xx). */
int clupy_test_ver_one(void) { return 1; }
#if VERSIONED_BUILD >= 2
int clupy_test_ver_two(void) { return 2; }
#endif
