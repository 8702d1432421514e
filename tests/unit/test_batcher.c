/* test_batcher.c — the dynamic batcher: items submitted together run as one batch, and with
 * a gather time the worker waits for every joined client's item before it runs one. */
#include <pthread.h>
#include <stddef.h>
#include <time.h>
#include <unistd.h>

#include "batcher.h"
#include "cu.h"

typedef struct {
    size_t sizes[64]; /* batch sizes, in order */
    size_t n;
    pthread_mutex_t m;
} record;

static void run(void *ctx, void **items, size_t n)
{
    record *r = ctx;
    (void)items;
    pthread_mutex_lock(&r->m);
    if (r->n < 64)
        r->sizes[r->n++] = n;
    pthread_mutex_unlock(&r->m);
    usleep(20000); /* a step's work */
}

typedef struct {
    srv_batcher *b;
    int steps;
    useconds_t think; /* between steps: sampling, sending the token */
    int rc;
} client_arg;

static void *client(void *p)
{
    client_arg *c = p;
    srv_batcher_join(c->b);
    for (int i = 0; i < c->steps; i++) {
        c->rc |= srv_batcher_submit(c->b, c, 1);
        usleep(c->think);
    }
    srv_batcher_leave(c->b);
    return NULL;
}

/* Three clients whose think times differ (1, 4 and 7 ms) step 5 times each. With a gather
 * time every batch holds all three (without, the quickest comes back first and runs alone). */
static size_t full_batches(unsigned gather_us)
{
    record r = {.m = PTHREAD_MUTEX_INITIALIZER};
    srv_batcher *b = srv_batcher_create(run, &r, 64);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    srv_batcher_set_gather(b, gather_us);
    client_arg args[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        args[i] = (client_arg){b, 5, (useconds_t)(1000 + 3000 * i), 0};
        pthread_create(&th[i], NULL, client, &args[i]);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        CU_ASSERT_EQUAL(args[i].rc, 0);
    }
    srv_batcher_destroy(b);
    size_t full = 0, items = 0;
    for (size_t i = 0; i < r.n; i++)
        full += r.sizes[i] == 3, items += r.sizes[i];
    CU_ASSERT_EQUAL(items, 15);
    return full;
}

static void test_gather(void)
{
    /* The first steps may come before all three have joined; after that, all together. */
    CU_ASSERT(full_batches(200000) >= 4);
}

/* A client that leaves is not waited for: one alone runs at once, gather time or not. */
static void test_leave(void)
{
    record r = {.m = PTHREAD_MUTEX_INITIALIZER};
    srv_batcher *b = srv_batcher_create(run, &r, 64);
    srv_batcher_set_gather(b, 5000000); /* 5 s: the test would notice */
    client_arg one = {b, 3, 0, 0};
    srv_batcher_join(b); /* a second client that joined and left without a step */
    srv_batcher_leave(b);
    time_t t0 = time(NULL);
    client(&one);
    CU_ASSERT(time(NULL) - t0 < 4);
    CU_ASSERT_EQUAL(one.rc, 0);
    CU_ASSERT_EQUAL(r.n, 3);
    srv_batcher_destroy(b);
}

void cu_register(void)
{
    CU_pSuite s = CU_add_suite("batcher", NULL, NULL);
    CU_add_test(s, "gathering the steps of joined clients", test_gather);
    CU_add_test(s, "a client that left is not waited for", test_leave);
}
