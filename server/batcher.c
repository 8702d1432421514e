#include "batcher.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

typedef struct waiter {
    void *item;
    size_t cost;
    int done;
    struct waiter *next;
} waiter;

struct srv_batcher {
    pthread_mutex_t lock;
    pthread_cond_t work;      /* signalled when an item arrives or on stop */
    pthread_cond_t finished;  /* broadcast when a batch completes */
    waiter *head, *tail;
    size_t queued, joined;   /* items waiting; clients that will submit again (srv_batcher_join) */
    unsigned gather_us;
    int stopping;
    srv_batch_fn run;
    void *ctx;
    size_t max_cost;
    pthread_t thread;
    unsigned long long n_items, n_batches;
};

static void *worker(void *arg)
{
    srv_batcher *b = arg;
    pthread_setname_np(pthread_self(), "ragd-batcher");
    void **items = NULL;
    waiter **taken = NULL;
    size_t cap = 0;
    pthread_mutex_lock(&b->lock);
    for (;;) {
        while (!b->head && !b->stopping)
            pthread_cond_wait(&b->work, &b->lock);
        if (!b->head)
            break; /* stopping and drained */
        if (b->gather_us && b->queued < b->joined && !b->stopping) {
            struct timespec until;
            clock_gettime(CLOCK_MONOTONIC, &until);
            until.tv_nsec += (long)b->gather_us * 1000;
            until.tv_sec += until.tv_nsec / 1000000000;
            until.tv_nsec %= 1000000000;
            while (b->queued < b->joined && !b->stopping &&
                   pthread_cond_timedwait(&b->work, &b->lock, &until) != ETIMEDOUT)
                ;
        }
        size_t n = 0, cost = 0;
        for (waiter *w = b->head; w && (n == 0 || cost + w->cost <= b->max_cost); w = w->next)
            n++, cost += w->cost;
        void *one_item;
        waiter *one_taken;
        void **iv = items;
        waiter **tv = taken;
        if (n > cap) {
            void **pi = realloc(items, n * sizeof *items);
            if (pi)
                items = pi;
            waiter **pt = pi ? realloc(taken, n * sizeof *taken) : NULL;
            if (pt)
                taken = pt;
            if (pi && pt) {
                cap = n;
                iv = items;
                tv = taken;
            } else { /* out of memory: run one item at a time */
                n = 1;
                iv = &one_item;
                tv = &one_taken;
            }
        }
        for (size_t i = 0; i < n; i++) {
            tv[i] = b->head;
            iv[i] = b->head->item;
            b->head = b->head->next;
        }
        if (!b->head)
            b->tail = NULL;
        b->queued -= n;
        pthread_mutex_unlock(&b->lock);
        b->run(b->ctx, iv, n);
        pthread_mutex_lock(&b->lock);
        for (size_t i = 0; i < n; i++)
            tv[i]->done = 1;
        b->n_items += n;
        b->n_batches++;
        pthread_cond_broadcast(&b->finished);
    }
    pthread_mutex_unlock(&b->lock);
    free(items);
    free(taken);
    return NULL;
}

srv_batcher *srv_batcher_create(srv_batch_fn run, void *ctx, size_t max_cost)
{
    srv_batcher *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    pthread_condattr_t monotonic;
    pthread_condattr_init(&monotonic);
    pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->work, &monotonic);
    pthread_condattr_destroy(&monotonic);
    pthread_cond_init(&b->finished, NULL);
    b->run = run;
    b->ctx = ctx;
    b->max_cost = max_cost;
    if (pthread_create(&b->thread, NULL, worker, b) != 0) {
        pthread_mutex_destroy(&b->lock);
        pthread_cond_destroy(&b->work);
        pthread_cond_destroy(&b->finished);
        free(b);
        return NULL;
    }
    return b;
}

void srv_batcher_destroy(srv_batcher *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&b->lock);
    b->stopping = 1;
    pthread_cond_signal(&b->work);
    pthread_mutex_unlock(&b->lock);
    pthread_join(b->thread, NULL);
    pthread_mutex_destroy(&b->lock);
    pthread_cond_destroy(&b->work);
    pthread_cond_destroy(&b->finished);
    free(b);
}

int srv_batcher_submit(srv_batcher *b, void *item, size_t cost)
{
    waiter w = {item, cost, 0, NULL};
    pthread_mutex_lock(&b->lock);
    if (b->stopping) {
        pthread_mutex_unlock(&b->lock);
        return -1;
    }
    if (b->tail)
        b->tail->next = &w;
    else
        b->head = &w;
    b->tail = &w;
    b->queued++;
    pthread_cond_signal(&b->work);
    while (!w.done)
        pthread_cond_wait(&b->finished, &b->lock);
    pthread_mutex_unlock(&b->lock);
    return 0;
}

void srv_batcher_set_gather(srv_batcher *b, unsigned gather_us) { b->gather_us = gather_us; }

void srv_batcher_join(srv_batcher *b)
{
    pthread_mutex_lock(&b->lock);
    b->joined++;
    pthread_mutex_unlock(&b->lock);
}

void srv_batcher_leave(srv_batcher *b)
{
    pthread_mutex_lock(&b->lock);
    b->joined--;
    pthread_cond_signal(&b->work); /* a worker gathering may have all it waits for now */
    pthread_mutex_unlock(&b->lock);
}

void srv_batcher_stats(srv_batcher *b, unsigned long long *items, unsigned long long *batches, size_t *queued)
{
    pthread_mutex_lock(&b->lock);
    *items = b->n_items;
    *batches = b->n_batches;
    *queued = b->queued;
    pthread_mutex_unlock(&b->lock);
}
