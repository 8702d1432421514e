/* cu_main.c — runs the suites registered by cu_register() with CUnit's basic interface. */
#include "cu.h"

#include <CUnit/Basic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char *skip_reason;

void cu_skip_all(const char *why) { skip_reason = why; }

const char *cu_testdata(const char *rel)
{
    static char path[4096];
    const char *shared = getenv("RAGD_SHARED");
    if (!shared || !*shared)
        shared = "../shared";
    int n = snprintf(path, sizeof path, "%s/testdata/%s", shared, rel);
    if (n < 0 || (size_t)n >= sizeof path || access(path, R_OK) != 0)
        return NULL;
    return path;
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    cu_register();
    if (skip_reason) {
        printf("skipped: %s\n", skip_reason);
        CU_cleanup_registry();
        return 77;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    CU_ErrorCode err = CU_get_error();
    CU_cleanup_registry();
    return (failed || err != CUE_SUCCESS) ? 1 : 0;
}
