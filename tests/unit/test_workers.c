/* test_workers.c — the handlers' thread pool: it grows so that tasks waiting on each other all
 * run at once, and destroying it runs what is queued before it returns. */
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "cu.h"
#include "workers.h"

#define N_TASKS 12 /* more than the pool starts with */

typedef struct {
    pthread_mutex_t m;
    pthread_cond_t c;
    int started, done, timed_out;
} meeting;

/* Waits until every task has started (up to 5 s): only a pool that started a worker for each
 * lets them all meet. */
static void meet(void *arg)
{
    meeting *mt = arg;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    pthread_mutex_lock(&mt->m);
    mt->started++;
    pthread_cond_broadcast(&mt->c);
    while (mt->started < N_TASKS && !mt->timed_out)
        if (pthread_cond_timedwait(&mt->c, &mt->m, &until) != 0)
            mt->timed_out = 1;
    mt->done++;
    pthread_mutex_unlock(&mt->m);
}

static void test_grows(void)
{
    meeting mt = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0};
    srv_workers *w = srv_workers_create(1 << 20);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    srv_task tasks[N_TASKS];
    for (int i = 0; i < N_TASKS; i++) {
        tasks[i] = (srv_task){meet, &mt, NULL};
        CU_ASSERT_EQUAL(srv_workers_submit(w, &tasks[i]), 0);
    }
    srv_workers_destroy(w);
    CU_ASSERT_EQUAL(mt.started, N_TASKS);
    CU_ASSERT_EQUAL(mt.done, N_TASKS);
    CU_ASSERT_FALSE(mt.timed_out);
}

static void count(void *arg)
{
    usleep(1000);
    __atomic_fetch_add((int *)arg, 1, __ATOMIC_SEQ_CST);
}

static void test_destroy_runs_queued(void)
{
    int ran = 0;
    srv_workers *w = srv_workers_create(1 << 20);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    srv_task tasks[200];
    for (int i = 0; i < 200; i++) {
        tasks[i] = (srv_task){count, &ran, NULL};
        CU_ASSERT_EQUAL(srv_workers_submit(w, &tasks[i]), 0);
    }
    srv_workers_destroy(w);
    CU_ASSERT_EQUAL(ran, 200);
}

void cu_register(void)
{
    CU_pSuite s = CU_add_suite("workers", NULL, NULL);
    CU_add_test(s, "tasks that wait for each other all run: the pool grows", test_grows);
    CU_add_test(s, "destroying the pool runs every queued task first", test_destroy_runs_queued);
}
