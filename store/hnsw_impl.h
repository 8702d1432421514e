/*
 * hnsw_impl.h — the layout of the HNSW index, shared by hnsw.c (memory: slots, label map,
 * scratch), hnsw_search.c (walking the graph), hnsw_insert.c (editing it) and hnsw_persist.c
 * (records, dirty tracking, loading). Not a public header.
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

#include <math.h>
#include <pthread.h>

#include "hnsw.h"

#define NO_NODE UINT32_MAX

typedef struct {
    uint32_t *ids;
    uint32_t n, cap;
} hnsw_rev;

/* A node and its distance to something (a query, a base node). */
typedef struct {
    float d;
    uint32_t id;
} item;

/* Search scratch, one per concurrently searching thread, pooled in the index. */
typedef struct hnsw_scratch hnsw_scratch;
struct hnsw_scratch {
    hnsw_scratch *next;
    uint32_t *visited; /* [vcap] epoch tags: visited[s] == epoch means seen in this walk */
    size_t vcap;
    uint32_t epoch;
    item *cand; /* candidates to expand: max-heap on -d (closest on top) */
    size_t cand_cap;
    item *res; /* results: max-heap on d (farthest on top), at most ef + 1 */
    size_t res_cap;
    float *q;      /* [dim] the prepared query or new vector */
    uint32_t *sel; /* [(HNSW_MAX_LEVEL + 1) · m] neighbours chosen for a new node, per layer */
    int n_sel[HNSW_MAX_LEVEL + 1];
};

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

/* Internally a smaller distance is closer: -dot for cosine and dot, ||a-b||² for l2. */
static inline float hnsw_dist(const hnsw *h, const float *a, const float *b)
{
    return h->p.metric == DIST_L2 ? dist_l2sq(a, b, h->p.dim) : -dist_dot(a, b, h->p.dim);
}

static inline float hnsw_score(const hnsw *h, float d) { return h->p.metric == DIST_L2 ? -sqrtf(d) : -d; }

static inline size_t hnsw_hash64(int64_t k)
{
    uint64_t x = (uint64_t)k;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return (size_t)x;
}

/* hnsw.c */
uint32_t hnsw_find(const hnsw *h, int64_t label);          /* NO_NODE when absent */
int hnsw_map_put(hnsw *h, int64_t label, uint32_t slot);   /* 0 or -1 (no memory) */
int hnsw_map_reserve(hnsw *h, size_t n);                   /* room for n labels: 0 or -1 */
void hnsw_map_remove(hnsw *h, int64_t label);
int hnsw_reserve(hnsw *h, size_t n);                       /* capacity for n slots: 0 or -1 */
int hnsw_fail(hnsw_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int hnsw_alloc_upper(hnsw *h, uint32_t s, int level);    /* 0 or -1 */
/* Scratch for a walk with candidate list ef (visited set sized, epoch advanced), or NULL
 * when out of memory; hand it back with hnsw_scratch_put. */
hnsw_scratch *hnsw_scratch_get(const hnsw *h, size_t ef);
void hnsw_scratch_put(const hnsw *h, hnsw_scratch *s);
void hnsw_scratch_free(hnsw_scratch *s);

/* hnsw_search.c */
/* Greedy walk on one upper layer: the closest node reachable from ep, its distance in *d_ep. */
uint32_t hnsw_greedy(const hnsw *h, const float *q, uint32_t ep, float *d_ep, int level);
/* SEARCH-LAYER: s->res ends as a max-heap of at most ef accepted nodes, *n_res of them.
 * Returns 0, or -1 when the candidate heap cannot grow. */
int hnsw_search_layer(const hnsw *h, hnsw_scratch *s, const float *q, uint32_t ep, float d_ep, int level, size_t ef,
                      hnsw_accept_fn accept, void *ctx, size_t *n_res);
void hnsw_sort_results(item *res, size_t n); /* the max-heap res, sorted closest first */

/* hnsw_insert.c */
void hnsw_mark_dirty(hnsw *h, uint32_t s);

#endif
