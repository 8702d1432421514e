/* workers.c — a pool of threads for request handlers that grows on demand (see workers.h). */
#include "workers.h"

#include <pthread.h>
#include <stdlib.h>

#define FIRST_WORKERS 4 /* started with the pool, so light traffic never waits for a start */

struct srv_workers {
    pthread_mutex_t lock;
    pthread_cond_t work; /* a task was queued, or the pool is stopping */
    srv_task *head, *tail;
    size_t queued;
    unsigned idle;       /* workers waiting for a task */
    int stopping;
    pthread_t *threads;  /* every worker started, joined by srv_workers_destroy */
    size_t n, cap;
    pthread_attr_t attr; /* the stack handlers need */
};

static void *worker_main(void *arg)
{
    srv_workers *w = arg;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (!w->head && !w->stopping) {
            w->idle++;
            pthread_cond_wait(&w->work, &w->lock);
            w->idle--;
        }
        if (!w->head)
            break; /* stopping, and nothing is left */
        srv_task *t = w->head;
        w->head = t->next;
        if (!w->head)
            w->tail = NULL;
        w->queued--;
        pthread_mutex_unlock(&w->lock);
        t->run(t->arg);
        pthread_mutex_lock(&w->lock);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* Starts one more worker. Under w->lock. */
static int start_worker(srv_workers *w)
{
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 16;
        pthread_t *p = realloc(w->threads, cap * sizeof *p);
        if (!p)
            return -1;
        w->threads = p;
        w->cap = cap;
    }
    if (pthread_create(&w->threads[w->n], &w->attr, worker_main, w) != 0)
        return -1;
    w->n++;
    return 0;
}

srv_workers *srv_workers_create(size_t stack_bytes)
{
    srv_workers *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->work, NULL);
    pthread_attr_init(&w->attr);
    pthread_attr_setstacksize(&w->attr, stack_bytes);
    pthread_mutex_lock(&w->lock);
    while (w->n < FIRST_WORKERS && start_worker(w) == 0) {
    }
    size_t started = w->n;
    pthread_mutex_unlock(&w->lock);
    if (started < FIRST_WORKERS) {
        srv_workers_destroy(w);
        return NULL;
    }
    return w;
}

int srv_workers_submit(srv_workers *w, srv_task *t)
{
    pthread_mutex_lock(&w->lock);
    if (w->stopping) {
        pthread_mutex_unlock(&w->lock);
        return -1;
    }
    t->next = NULL;
    if (w->tail)
        w->tail->next = t;
    else
        w->head = t;
    w->tail = t;
    w->queued++;
    /* Workers already woken stay counted as idle until they take a task, so each queued
     * task needs an idle worker of its own; if none can start, the task waits for one. */
    if (w->idle < w->queued)
        start_worker(w);
    pthread_cond_signal(&w->work);
    pthread_mutex_unlock(&w->lock);
    return 0;
}

void srv_workers_destroy(srv_workers *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->stopping = 1;
    pthread_cond_broadcast(&w->work);
    pthread_mutex_unlock(&w->lock);
    for (size_t i = 0; i < w->n; i++)
        pthread_join(w->threads[i], NULL);
    free(w->threads);
    pthread_attr_destroy(&w->attr);
    pthread_cond_destroy(&w->work);
    pthread_mutex_destroy(&w->lock);
    free(w);
}
