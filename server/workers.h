/*
 * workers.h — the threads that run request handlers, so that the few threads serving the
 * sockets never wait on one. Not a public header: http.c hands each request's handler here.
 *
 * A task goes to an idle worker; when none is idle a new one starts at once, so a handler
 * waiting for a model never holds up a request for another route. How many tasks run at
 * once is bounded before they get here (the gates and --max-concurrent), not by the pool.
 * A worker idle for a while ends, down to a few kept warm.
 */
#ifndef RAGD_WORKERS_H
#define RAGD_WORKERS_H

#include <stddef.h>

/* One unit of work, owned by the caller and linked into the queue without an allocation. */
typedef struct srv_task {
    void (*run)(void *arg);
    void *arg;
    struct srv_task *next;
} srv_task;

typedef struct srv_workers srv_workers;

/* Starts a few workers, on stacks of `stack_bytes`. NULL when they cannot be started. */
srv_workers *srv_workers_create(size_t stack_bytes);
/* Queues `t` for a worker, starting one if none is idle (if none can start, `t` waits for
 * one). Returns 0, or -1 when the pool is stopping (`t` is then not queued). */
int srv_workers_submit(srv_workers *w, srv_task *t);
/* Runs what is queued, waits for every worker to end and frees the pool; accepts NULL. */
void srv_workers_destroy(srv_workers *w);

#endif
