/*
 * batcher.h — dynamic batching for one model: requests submitted from many HTTP threads
 * are gathered by one worker thread, which runs them together in a single call.
 *
 * The worker takes waiting items in arrival order until the batch would pass `max_cost`
 * (tokens, say; one item is always taken even if it alone is over), calls `run` once for
 * them all, then wakes every submitter. Model work therefore never runs on two threads at
 * once, so the compute threads given to BLAS are never oversubscribed, and concurrent small
 * requests share one larger, faster matrix product.
 *
 * Lock order: the batcher's mutex is the innermost lock; `run` is called without it.
 */
#ifndef RAGD_BATCHER_H
#define RAGD_BATCHER_H

#include <stddef.h>

typedef struct srv_batcher srv_batcher;

/* Runs items[0..n) together. Each item carries its own inputs, outputs and status. */
typedef void (*srv_batch_fn)(void *ctx, void **items, size_t n);

/* Returns NULL when out of memory or the thread cannot start. */
srv_batcher *srv_batcher_create(srv_batch_fn run, void *ctx, size_t max_cost);
/* Stops the worker after the items already submitted; accepts NULL. */
void srv_batcher_destroy(srv_batcher *b);

/* Submits `item` and blocks until `run` has processed it. Returns 0, or -1 when the
 * batcher is shutting down or out of memory (the item was not run). */
int srv_batcher_submit(srv_batcher *b, void *item, size_t cost);

/* Clients that submit item after item, each waiting for the last (generations: one decode
 * step at a time), join while they do so. A worker that finds fewer items queued than
 * joined clients waits up to `gather_us` (set once, before use; 0, the default, never
 * waits) for the others before it runs the batch, so that their steps run as one batch
 * instead of splitting into a batch of whoever came back first and one of the rest. */
void srv_batcher_set_gather(srv_batcher *b, unsigned gather_us);
void srv_batcher_join(srv_batcher *b);
void srv_batcher_leave(srv_batcher *b);

/* Items processed and batches run so far, for /metrics. */
void srv_batcher_stats(srv_batcher *b, unsigned long long *items, unsigned long long *batches,
                       size_t *queued);

#endif
