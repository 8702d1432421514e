/* cu.h — the shared harness for ragd's CUnit suites.
 * Each suite file defines cu_register(), which adds its suites with CU_add_suite/CU_add_test.
 * cu_main.c runs them all and exits non-zero when any assertion failed. */
#ifndef RAGD_CU_H
#define RAGD_CU_H

#include <CUnit/CUnit.h>

void cu_register(void);

/* Path of a file under ../shared/testdata (RAGD_SHARED/testdata/REL), or NULL when the
 * test data is not present. The string is static: copy it before the next call. */
const char *cu_testdata(const char *rel);

/* Call from cu_register(): the whole executable reports "skipped" (exit 77) with `why`. */
void cu_skip_all(const char *why);

#endif
