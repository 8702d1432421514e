/* test_jobs.c — training jobs in SQLite: create, one active job per adapter name, the
 * allowed transitions only, step metrics and history, restart recovery, datasets. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cu.h"
#include "jobs.h"
#include "store.h"

static char dir[64];
static st_db *db;
static st_jobs *jobs;

static int setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/ragd-jobs-XXXXXX");
    st_error e;
    if (!mkdtemp(dir) || st_open(dir, &db, &e) != 0 || st_jobs_open(dir, &jobs, &e) != 0)
        return -1;
    return 0;
}

static int teardown(void)
{
    st_jobs_close(jobs);
    st_close(db);
    char path[128];
    static const char *const files[] = {"ragd.db", "ragd.db-wal", "ragd.db-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    return rmdir(dir);
}

static void test_lifecycle(void)
{
    char id[ST_JOB_ID_MAX], id2[ST_JOB_ID_MAX];
    st_error e;
    CU_ASSERT_EQUAL_FATAL(st_job_create(jobs, "sft", "names", "{\"a\":1}", 10, id, &e), 0);
    CU_ASSERT_EQUAL(strncmp(id, "job-", 4), 0);
    /* One active job per adapter name. */
    CU_ASSERT_EQUAL(st_job_create(jobs, "dpo", "names", "{}", 10, id2, &e), ST_JOB_CONFLICT);
    st_job j;
    CU_ASSERT_EQUAL_FATAL(st_job_get(jobs, id, &j, &e), 0);
    CU_ASSERT_EQUAL(j.status, ST_JOB_QUEUED);
    CU_ASSERT_STRING_EQUAL(j.request, "{\"a\":1}");
    CU_ASSERT_STRING_EQUAL(j.started_at, "");
    CU_ASSERT_PTR_NULL(j.metrics);
    st_job_clear(&j);
    /* queued -> succeeded is not a transition. */
    CU_ASSERT_EQUAL(st_job_transition(jobs, id, ST_JOB_BIT(ST_JOB_RUNNING), ST_JOB_SUCCEEDED, NULL, &e), ST_JOB_STALE);
    CU_ASSERT_EQUAL(st_job_transition(jobs, id, ST_JOB_BIT(ST_JOB_QUEUED), ST_JOB_RUNNING, NULL, &e), 0);
    CU_ASSERT_EQUAL(st_job_progress(jobs, id, 1, 10, 0.1, "{\"loss\":2.5}", &e), 0);
    CU_ASSERT_EQUAL(st_job_progress(jobs, id, 2, 10, 0.2, "{\"loss\":2.0}", &e), 0);
    CU_ASSERT_EQUAL_FATAL(st_job_get(jobs, id, &j, &e), 0);
    CU_ASSERT_EQUAL(j.step, 2);
    CU_ASSERT_STRING_EQUAL(j.metrics, "{\"loss\":2.0}");
    CU_ASSERT(strlen(j.started_at) > 10);
    st_job_clear(&j);
    char **rows;
    long *steps;
    size_t n;
    CU_ASSERT_EQUAL(st_job_history(jobs, id, 1, 100, &rows, &steps, &n, &e), 0);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_EQUAL(steps[0], 2);
    st_job_history_free(rows, steps, n);
    /* Cancel and finish race: exactly one wins. */
    CU_ASSERT_EQUAL(st_job_transition(jobs, id, ST_JOB_BIT(ST_JOB_QUEUED) | ST_JOB_BIT(ST_JOB_RUNNING), ST_JOB_CANCELLED,
                                      NULL, &e), 0);
    CU_ASSERT_EQUAL(st_job_transition(jobs, id, ST_JOB_BIT(ST_JOB_RUNNING), ST_JOB_SUCCEEDED, NULL, &e), ST_JOB_STALE);
    /* The name is free again once the job is final. */
    CU_ASSERT_EQUAL(st_job_create(jobs, "dpo", "names", "{}", 10, id2, &e), 0);
    CU_ASSERT_EQUAL(st_job_get(jobs, "job-nope", &j, &e), ST_JOB_NOT_FOUND);
    st_job *list;
    CU_ASSERT_EQUAL(st_job_list(jobs, 10, &list, &n, &e), 0);
    CU_ASSERT_EQUAL(n, 2);
    st_job_list_free(list, n);
}

static void test_recover(void)
{
    char a[ST_JOB_ID_MAX], b[ST_JOB_ID_MAX];
    st_error e;
    CU_ASSERT_EQUAL_FATAL(st_job_create(jobs, "sft", "rec-a", "{}", 5, a, &e), 0);
    CU_ASSERT_EQUAL_FATAL(st_job_create(jobs, "sft", "rec-b", "{}", 5, b, &e), 0);
    CU_ASSERT_EQUAL(st_job_transition(jobs, a, ST_JOB_BIT(ST_JOB_QUEUED), ST_JOB_RUNNING, NULL, &e), 0);
    size_t n;
    CU_ASSERT_EQUAL(st_jobs_recover(jobs, "interrupted", &n, &e), 0);
    CU_ASSERT_EQUAL(n, 1);
    st_job j;
    CU_ASSERT_EQUAL_FATAL(st_job_get(jobs, a, &j, &e), 0);
    CU_ASSERT_EQUAL(j.status, ST_JOB_FAILED);
    CU_ASSERT_STRING_EQUAL(j.error, "interrupted");
    CU_ASSERT(strlen(j.finished_at) > 10);
    st_job_clear(&j);
    char(*ids)[ST_JOB_ID_MAX];
    CU_ASSERT_EQUAL(st_job_queued(jobs, &ids, &n, &e), 0);
    int found = 0;
    for (size_t i = 0; i < n; i++)
        found += strcmp(ids[i], b) == 0;
    CU_ASSERT_EQUAL(found, 1);
    free(ids);
}

static void test_datasets(void)
{
    char id[ST_JOB_ID_MAX];
    st_error e;
    const char *data = "{\"text\":\"a\"}\n{\"text\":\"b\"}\n";
    CU_ASSERT_EQUAL_FATAL(st_dataset_put(jobs, data, strlen(data), 2, id, &e), 0);
    char *got;
    size_t len;
    CU_ASSERT_EQUAL_FATAL(st_dataset_get(jobs, id, &got, &len, &e), 0);
    CU_ASSERT_EQUAL(len, strlen(data));
    CU_ASSERT_STRING_EQUAL(got, data);
    free(got);
    CU_ASSERT_EQUAL(st_dataset_get(jobs, "ds-none", &got, &len, &e), ST_JOB_NOT_FOUND);
}

void cu_register(void)
{
    CU_pSuite s = CU_add_suite("jobs", setup, teardown);
    CU_add_test(s, "create, conflict, transitions, metrics", test_lifecycle);
    CU_add_test(s, "restart recovery", test_recover);
    CU_add_test(s, "datasets", test_datasets);
}
