/* jobq.c — worker threads over a bounded FIFO of jobs (see jobq.h). */
#include "jobq.h"

#include <pthread.h>
#include <stdlib.h>

struct srv_jobq {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    void **ring;            /* [capacity] */
    size_t capacity, head, count, running;
    int stopping;
    srv_job_run run;
    srv_job_drop drop;
    void *ctx;
    pthread_t *threads;
    size_t n_threads;
};

static void *worker(void *arg)
{
    srv_jobq *q = arg;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (!q->stopping && q->count == 0)
            pthread_cond_wait(&q->cv, &q->mu);
        if (q->stopping)
            break;
        void *job = q->ring[q->head];
        q->head = (q->head + 1) % q->capacity;
        q->count--;
        q->running++;
        pthread_mutex_unlock(&q->mu);
        q->run(q->ctx, job);
        pthread_mutex_lock(&q->mu);
        q->running--;
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

srv_jobq *srv_jobq_create(size_t workers, size_t capacity, srv_job_run run, srv_job_drop drop, void *ctx)
{
    srv_jobq *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->capacity = capacity ? capacity : 1;
    q->ring = calloc(q->capacity, sizeof *q->ring);
    q->threads = calloc(workers ? workers : 1, sizeof *q->threads);
    q->run = run;
    q->drop = drop;
    q->ctx = ctx;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    if (!q->ring || !q->threads) {
        srv_jobq_destroy(q);
        return NULL;
    }
    for (size_t i = 0; i < workers; i++) {
        if (pthread_create(&q->threads[i], NULL, worker, q) != 0) {
            srv_jobq_destroy(q);
            return NULL;
        }
        q->n_threads++;
    }
    return q;
}

void srv_jobq_destroy(srv_jobq *q)
{
    if (!q)
        return;
    pthread_mutex_lock(&q->mu);
    q->stopping = 1;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    for (size_t i = 0; i < q->n_threads; i++)
        pthread_join(q->threads[i], NULL);
    for (; q->count; q->count--, q->head = (q->head + 1) % q->capacity)
        if (q->drop)
            q->drop(q->ctx, q->ring[q->head]);
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    free(q->ring);
    free(q->threads);
    free(q);
}

int srv_jobq_push(srv_jobq *q, void *job)
{
    pthread_mutex_lock(&q->mu);
    int ok = !q->stopping && q->count < q->capacity;
    if (ok) {
        q->ring[(q->head + q->count) % q->capacity] = job;
        q->count++;
        pthread_cond_signal(&q->cv);
    }
    pthread_mutex_unlock(&q->mu);
    return ok ? 0 : -1;
}

size_t srv_jobq_remove(srv_jobq *q, int (*match)(void *ctx, const void *job), void *ctx)
{
    pthread_mutex_lock(&q->mu);
    size_t kept = 0, removed = 0;
    for (size_t i = 0; i < q->count; i++) { /* compact the ring in place, keeping the order */
        void *job = q->ring[(q->head + i) % q->capacity];
        if (match(ctx, job)) {
            if (q->drop)
                q->drop(q->ctx, job);
            removed++;
        } else {
            q->ring[(q->head + kept++) % q->capacity] = job;
        }
    }
    q->count = kept;
    pthread_mutex_unlock(&q->mu);
    return removed;
}

void srv_jobq_stats(srv_jobq *q, size_t *queued, size_t *running)
{
    pthread_mutex_lock(&q->mu);
    *queued = q->count;
    *running = q->running;
    pthread_mutex_unlock(&q->mu);
}
