/*
 * hnsw_impl.h — the layout of the HNSW index, shared by hnsw.c (the graph: insert, delete,
 * search) and hnsw_persist.c (records, dirty tracking, loading). Not a public header.
 *
 * Nodes live in slots 0 .. n_slots; a deleted node's slot goes to a free list and is reused.
 * Per slot, in parallel arrays: its vector (dim floats, contiguous), label, level, live flag,
 * dirty flag, layer-0 links, a pointer to its upper-layer links, and its reverse links.
 * A link list is [count, id0, id1, ...] of uint32: layer 0 holds m0 = 2m ids, each upper
 * layer m. Reverse links: rev[t] lists every s with t in some link list of s, once per
 * (s, layer), so a delete finds every node that points at the deleted one.
 */
#ifndef RAGD_HNSW_IMPL_H
#define RAGD_HNSW_IMPL_H

#include <pthread.h>

#include "hnsw.h"

#define NO_NODE UINT32_MAX

typedef struct {
    uint32_t *ids;
    uint32_t n, cap;
} hnsw_rev;

/* Search scratch, one per concurrently searching thread, pooled in the index. */
typedef struct hnsw_scratch hnsw_scratch;

typedef struct {
    int64_t key;
    uint32_t slot; /* NO_NODE: empty bucket */
} hnsw_bucket;

struct hnsw {
    hnsw_params p;
    int m0;      /* layer-0 capacity, 2m */
    double mult; /* level multiplier, 1/ln(m) */
    uint64_t rng;

    uint32_t cap;     /* slots allocated */
    uint32_t n_slots; /* slots ever used (high-water mark) */
    size_t count;     /* live nodes */
    float *vecs;      /* [cap, dim] */
    int64_t *labels;  /* [cap] */
    uint8_t *levels;  /* [cap] */
    uint8_t *live;    /* [cap] */
    uint8_t *dirty;   /* [cap]: slot is in dirty_slots */
    uint32_t *links0; /* [cap, m0 + 1] */
    uint32_t **upper; /* [cap]: NULL, or [levels, m + 1] */
    hnsw_rev *rev;    /* [cap] */

    uint32_t *free_slots;
    size_t n_free, free_cap;

    hnsw_bucket *map; /* label -> slot, open addressing, linear probing */
    size_t map_cap, map_used;

    uint32_t entry;    /* NO_NODE when empty */
    uint32_t deleting; /* the node hnsw_delete is removing, else NO_NODE */
    int max_level;

    uint32_t *dirty_slots; /* slots whose record changed (may since be deleted or reused) */
    size_t n_dirty, dirty_cap;
    int64_t *deleted; /* labels deleted since the last clear (may repeat or be back) */
    size_t n_deleted, deleted_cap;

    pthread_mutex_t pool_lock;
    hnsw_scratch *pool;

    /* Loading (hnsw_load_*): neighbour labels waiting to be resolved. */
    int loading;
    int64_t load_entry;
    uint64_t load_count;
    int64_t *load_labels; /* every record's neighbour labels, slot after slot */
    size_t n_load, load_cap;
};

static inline uint32_t *hnsw_links(const hnsw *h, uint32_t s, int level)
{
    return level == 0 ? h->links0 + (size_t)s * (size_t)(h->m0 + 1)
                      : h->upper[s] + (size_t)(level - 1) * (size_t)(h->p.m + 1);
}

static inline int hnsw_max_links(const hnsw *h, int level) { return level == 0 ? h->m0 : h->p.m; }

static inline const float *hnsw_vec(const hnsw *h, uint32_t s) { return h->vecs + (size_t)s * h->p.dim; }

/* hnsw.c, for hnsw_persist.c */
uint32_t hnsw_find(const hnsw *h, int64_t label);          /* NO_NODE when absent */
int hnsw_map_put(hnsw *h, int64_t label, uint32_t slot);   /* 0 or -1 (no memory) */
int hnsw_map_reserve(hnsw *h, size_t n);                   /* room for n labels: 0 or -1 */
int hnsw_reserve(hnsw *h, size_t n);                       /* capacity for n slots: 0 or -1 */
int hnsw_fail(hnsw_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void hnsw_mark_dirty(hnsw *h, uint32_t s);
int hnsw_alloc_upper(hnsw *h, uint32_t s, int level);    /* 0 or -1 */

#endif
