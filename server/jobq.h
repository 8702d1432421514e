/*
 * jobq.h — long background jobs on a fixed set of worker threads, behind a bounded queue
 * (the shape of Redis's bio.c: a mutex, a condition variable, a job taken under the lock and
 * run without it). The queue sees a job only as a pointer and the function that runs it.
 *
 * Lock order: the queue's mutex is innermost; `run` is called without it.
 */
#ifndef RAGD_JOBQ_H
#define RAGD_JOBQ_H

#include <stddef.h>

typedef struct srv_jobq srv_jobq;

/* Runs one job; owns `job` from then on. */
typedef void (*srv_job_run)(void *ctx, void *job);
/* Frees a job that was queued but never run (at shutdown). */
typedef void (*srv_job_drop)(void *ctx, void *job);

/* `workers` threads taking jobs from a queue of at most `capacity` waiting jobs. NULL when
 * out of memory or a thread cannot start. */
srv_jobq *srv_jobq_create(size_t workers, size_t capacity, srv_job_run run, srv_job_drop drop, void *ctx);

/* Stops taking jobs, waits for the running ones to return (the caller makes them stop),
 * drops the rest. Accepts NULL. */
void srv_jobq_destroy(srv_jobq *q);

/* Queues a job. 0, or -1 when the queue is full (the caller answers 429) or stopping. */
int srv_jobq_push(srv_jobq *q, void *job);

/* Takes every waiting job for which match(ctx, job) is true out of the queue and drops it
 * (a job cancelled while it waits gives its place back at once). Returns how many. */
size_t srv_jobq_remove(srv_jobq *q, int (*match)(void *ctx, const void *job), void *ctx);

/* Jobs waiting and running, for /metrics and ETA. */
void srv_jobq_stats(srv_jobq *q, size_t *queued, size_t *running);

#endif
