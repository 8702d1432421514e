/* hnsw.c — the HNSW graph: creation, insert, delete with repair, filtered search.
 * Records, dirty tracking and loading are in hnsw_persist.c; the layout in hnsw_impl.h.
 *
 * Internally a smaller distance is closer: -dot for cosine and dot, ||a-b||² for l2; scores
 * (higher is better) are made only when results leave the index. */
#include "hnsw_impl.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

typedef struct {
    float d;
    uint32_t id;
} item;

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

int hnsw_fail(hnsw_error *err, int code, const char *fmt, ...)
{
    if (err) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

static inline float dist(const hnsw *h, const float *a, const float *b)
{
    return h->p.metric == DIST_L2 ? dist_l2sq(a, b, h->p.dim) : -dist_dot(a, b, h->p.dim);
}

static inline float to_score(const hnsw *h, float d) { return h->p.metric == DIST_L2 ? -sqrtf(d) : -d; }

/* ---- Heaps of items: a max-heap on d (negate d for a min-heap). ---- */

static void heap_push(item *a, size_t *n, item x)
{
    size_t i = (*n)++;
    while (i > 0 && a[(i - 1) / 2].d < x.d) {
        a[i] = a[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    a[i] = x;
}

static item heap_pop(item *a, size_t *n)
{
    item top = a[0], x = a[--(*n)];
    size_t i = 0, len = *n;
    for (;;) {
        size_t l = 2 * i + 1, b = i;
        float bd = x.d;
        if (l < len && a[l].d > bd)
            b = l, bd = a[l].d;
        if (l + 1 < len && a[l + 1].d > bd)
            b = l + 1;
        if (b == i)
            break;
        a[i] = a[b];
        i = b;
    }
    if (len)
        a[i] = x;
    return top;
}

/* ---- Label map: open addressing, linear probing, deletion by backward shift. ---- */

static inline size_t hash64(int64_t k)
{
    uint64_t x = (uint64_t)k;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return (size_t)x;
}

uint32_t hnsw_find(const hnsw *h, int64_t label)
{
    if (!h->map_cap)
        return NO_NODE;
    size_t mask = h->map_cap - 1;
    for (size_t i = hash64(label) & mask;; i = (i + 1) & mask) {
        if (h->map[i].slot == NO_NODE)
            return NO_NODE;
        if (h->map[i].key == label)
            return h->map[i].slot;
    }
}

/* Room for n labels at a load of at most 1/2. */
int hnsw_map_reserve(hnsw *h, size_t n)
{
    if (2 * n <= h->map_cap)
        return 0;
    size_t cap = h->map_cap ? h->map_cap : 64;
    while (2 * n > cap)
        cap *= 2;
    hnsw_bucket *m = malloc(cap * sizeof *m);
    if (!m)
        return -1;
    for (size_t i = 0; i < cap; i++)
        m[i].slot = NO_NODE;
    for (size_t j = 0; j < h->map_cap; j++) {
        if (h->map[j].slot == NO_NODE)
            continue;
        size_t i = hash64(h->map[j].key) & (cap - 1);
        while (m[i].slot != NO_NODE)
            i = (i + 1) & (cap - 1);
        m[i] = h->map[j];
    }
    free(h->map);
    h->map = m;
    h->map_cap = cap;
    return 0;
}

int hnsw_map_put(hnsw *h, int64_t label, uint32_t slot)
{
    if (hnsw_map_reserve(h, h->map_used + 1))
        return -1;
    size_t mask = h->map_cap - 1, i = hash64(label) & mask;
    while (h->map[i].slot != NO_NODE && h->map[i].key != label)
        i = (i + 1) & mask;
    if (h->map[i].slot == NO_NODE)
        h->map_used++;
    h->map[i].key = label;
    h->map[i].slot = slot;
    return 0;
}

static void map_remove(hnsw *h, int64_t label)
{
    size_t mask = h->map_cap - 1, i = hash64(label) & mask;
    while (h->map[i].slot != NO_NODE && h->map[i].key != label)
        i = (i + 1) & mask;
    if (h->map[i].slot == NO_NODE)
        return;
    /* Backward shift: move later entries of the probe run into the hole when their home
     * bucket does not lie (cyclically) between the hole and them. */
    for (size_t j = i;;) {
        j = (j + 1) & mask;
        if (h->map[j].slot == NO_NODE)
            break;
        size_t home = hash64(h->map[j].key) & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            h->map[i] = h->map[j];
            i = j;
        }
    }
    h->map[i].slot = NO_NODE;
    h->map_used--;
}

/* ---- Slots ---- */

/* Asks for transparent huge pages on the 2 MB-aligned part of a large array: on a VM, first
 * touching 4 KB pages one fault at a time dominates loading (tens of thousands of faults for
 * 100k vectors); with huge pages it is a few hundred. Advice only: failure changes nothing. */
static void advise_huge(void *p, size_t bytes)
{
#ifdef MADV_HUGEPAGE
    const uintptr_t huge = (uintptr_t)2 << 20;
    uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1), b = ((uintptr_t)p + bytes) & ~(huge - 1);
    if (b > a)
        madvise((void *)a, b - a, MADV_HUGEPAGE);
#else
    (void)p, (void)bytes;
#endif
}

#define GROW(ptr, n) tmp = realloc((ptr), (n) * sizeof *(ptr)); if (!tmp) return -1; (ptr) = tmp

int hnsw_reserve(hnsw *h, size_t n)
{
    if (n <= h->cap)
        return 0;
    if (n >= NO_NODE)
        return -1;
    size_t cap = h->cap ? h->cap : 64;
    while (cap < n)
        cap *= 2;
    if (cap >= NO_NODE)
        cap = NO_NODE - 1;
    void *tmp;
    /* Each array is grown in turn; a failure part-way leaves some arrays larger than cap,
     * which is harmless. */
    GROW(h->vecs, cap * h->p.dim);
    GROW(h->labels, cap);
    GROW(h->levels, cap);
    GROW(h->live, cap);
    GROW(h->dirty, cap);
    GROW(h->links0, cap * (size_t)(h->m0 + 1));
    GROW(h->upper, cap);
    GROW(h->rev, cap);
    advise_huge(h->vecs, cap * h->p.dim * sizeof *h->vecs);
    advise_huge(h->links0, cap * (size_t)(h->m0 + 1) * sizeof *h->links0);
    for (size_t s = h->cap; s < cap; s++) {
        h->live[s] = 0;
        h->dirty[s] = 0;
        h->upper[s] = NULL;
        h->rev[s] = (hnsw_rev){NULL, 0, 0};
        h->links0[s * (size_t)(h->m0 + 1)] = 0;
    }
    h->cap = (uint32_t)cap;
    return 0;
}

int hnsw_alloc_upper(hnsw *h, uint32_t s, int level)
{
    free(h->upper[s]);
    h->upper[s] = NULL;
    if (level == 0)
        return 0;
    h->upper[s] = malloc((size_t)level * (size_t)(h->p.m + 1) * sizeof(uint32_t));
    if (!h->upper[s])
        return -1;
    for (int l = 1; l <= level; l++)
        hnsw_links(h, s, l)[0] = 0;
    return 0;
}

static int rev_reserve(hnsw_rev *r, size_t extra)
{
    if (r->n + extra <= r->cap)
        return 0;
    size_t cap = r->cap ? 2 * (size_t)r->cap : 8;
    while (cap < r->n + extra)
        cap *= 2;
    uint32_t *ids = realloc(r->ids, cap * sizeof *ids);
    if (!ids)
        return -1;
    r->ids = ids;
    r->cap = (uint32_t)cap;
    return 0;
}

static void rev_remove(hnsw_rev *r, uint32_t src)
{
    for (uint32_t i = 0; i < r->n; i++)
        if (r->ids[i] == src) {
            r->ids[i] = r->ids[--r->n];
            return;
        }
}

static int grow_list(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q)
        return -1;
    *p = q;
    *cap = c;
    return 0;
}

static int dirty_reserve(hnsw *h, size_t extra)
{
    return grow_list((void **)&h->dirty_slots, &h->dirty_cap, h->n_dirty + extra, sizeof *h->dirty_slots);
}

/* Callers reserve first (dirty_reserve), so this cannot fail. */
void hnsw_mark_dirty(hnsw *h, uint32_t s)
{
    if (h->dirty[s] || h->n_dirty >= h->dirty_cap)
        return;
    h->dirty[s] = 1;
    h->dirty_slots[h->n_dirty++] = s;
}

/* Replaces the layer-`level` list of s with ids[0..n), keeping reverse links in step and
 * marking s dirty. A new link whose reverse entry cannot get memory is dropped (so only
 * delete repairs, which do not reserve, can lose a link under memory pressure). */
static void set_links(hnsw *h, uint32_t s, int level, const uint32_t *ids, int n)
{
    uint32_t *l = hnsw_links(h, s, level);
    for (uint32_t i = 1; i <= l[0]; i++) {
        int kept = 0;
        for (int j = 0; j < n && !kept; j++)
            kept = ids[j] == l[i];
        if (!kept)
            rev_remove(&h->rev[l[i]], s);
    }
    uint32_t old[2 * HNSW_MAX_M + 1];
    uint32_t n_old = l[0];
    memcpy(old, l + 1, n_old * sizeof *old);
    uint32_t w = 0;
    for (int j = 0; j < n; j++) {
        int had = 0;
        for (uint32_t i = 0; i < n_old && !had; i++)
            had = old[i] == ids[j];
        if (!had) {
            hnsw_rev *r = &h->rev[ids[j]];
            if (rev_reserve(r, 1))
                continue;
            r->ids[r->n++] = s;
        }
        l[1 + w++] = ids[j];
    }
    l[0] = w;
    hnsw_mark_dirty(h, s);
}

/* ---- Creation ---- */

void hnsw_params_default(hnsw_params *p, size_t dim, dist_metric metric)
{
    p->dim = dim;
    p->metric = metric;
    p->m = 16;
    p->ef_construction = 200;
    p->seed = 42;
}

int hnsw_create(const hnsw_params *p, hnsw **out, hnsw_error *err)
{
    *out = NULL;
    if (p->dim < 1 || p->dim > HNSW_MAX_DIM)
        return hnsw_fail(err, HNSW_EINVAL, "dimension %zu is outside 1..%d", p->dim, HNSW_MAX_DIM);
    if ((unsigned)p->metric > DIST_L2)
        return hnsw_fail(err, HNSW_EINVAL, "unknown metric %d", (int)p->metric);
    if (p->m < HNSW_MIN_M || p->m > HNSW_MAX_M)
        return hnsw_fail(err, HNSW_EINVAL, "m %d is outside %d..%d", p->m, HNSW_MIN_M, HNSW_MAX_M);
    if (p->ef_construction < 1 || p->ef_construction > HNSW_MAX_EF)
        return hnsw_fail(err, HNSW_EINVAL, "ef_construction %d is outside 1..%d", p->ef_construction,
                         HNSW_MAX_EF);
    hnsw *h = calloc(1, sizeof *h);
    if (!h)
        return hnsw_fail(err, HNSW_ENOMEM, "out of memory");
    h->p = *p;
    h->m0 = 2 * p->m;
    h->mult = 1.0 / log((double)p->m);
    h->rng = p->seed;
    h->entry = NO_NODE;
    h->deleting = NO_NODE;
    h->max_level = -1;
    pthread_mutex_init(&h->pool_lock, NULL);
    *out = h;
    return HNSW_OK;
}

static void scratch_free(hnsw_scratch *s)
{
    if (!s)
        return;
    free(s->visited);
    free(s->cand);
    free(s->res);
    free(s->q);
    free(s->sel);
    free(s);
}

void hnsw_destroy(hnsw *h)
{
    if (!h)
        return;
    for (uint32_t s = 0; s < h->cap; s++) {
        free(h->upper[s]);
        free(h->rev[s].ids);
    }
    while (h->pool) {
        hnsw_scratch *s = h->pool;
        h->pool = s->next;
        scratch_free(s);
    }
    pthread_mutex_destroy(&h->pool_lock);
    free(h->vecs), free(h->labels), free(h->levels), free(h->live), free(h->dirty);
    free(h->links0), free(h->upper), free(h->rev), free(h->free_slots), free(h->map);
    free(h->dirty_slots), free(h->deleted), free(h->load_labels);
    free(h);
}

const hnsw_params *hnsw_get_params(const hnsw *h) { return &h->p; }
size_t hnsw_count(const hnsw *h) { return h->count; }
int hnsw_contains(const hnsw *h, int64_t label) { return hnsw_find(h, label) != NO_NODE; }

size_t hnsw_memory_bytes(const hnsw *h)
{
    size_t per_slot = h->p.dim * sizeof(float) + sizeof(int64_t) + 3 + (size_t)(h->m0 + 1) * sizeof(uint32_t) +
                      sizeof(uint32_t *) + sizeof(hnsw_rev);
    size_t b = sizeof *h + (size_t)h->cap * per_slot + h->map_cap * sizeof(hnsw_bucket) +
               h->free_cap * sizeof(uint32_t);
    for (uint32_t s = 0; s < h->n_slots; s++) {
        if (h->upper[s])
            b += (size_t)h->levels[s] * (size_t)(h->p.m + 1) * sizeof(uint32_t);
        b += (size_t)h->rev[s].cap * sizeof(uint32_t);
    }
    return b;
}

int hnsw_get_vector(const hnsw *h, int64_t label, float *out)
{
    uint32_t s = hnsw_find(h, label);
    if (s == NO_NODE)
        return HNSW_ENOENT;
    memcpy(out, hnsw_vec(h, s), h->p.dim * sizeof *out);
    return HNSW_OK;
}

/* ---- Scratch pool ---- */

static hnsw_scratch *scratch_get(const hnsw *ch, size_t ef)
{
    hnsw *h = (hnsw *)ch; /* only the pool, under its lock, is written */
    pthread_mutex_lock(&h->pool_lock);
    hnsw_scratch *s = h->pool;
    if (s)
        h->pool = s->next;
    pthread_mutex_unlock(&h->pool_lock);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return NULL;
        s->q = malloc(h->p.dim * sizeof *s->q);
        s->sel = malloc((size_t)(HNSW_MAX_LEVEL + 1) * (size_t)h->p.m * sizeof *s->sel);
        if (!s->q || !s->sel) {
            scratch_free(s);
            return NULL;
        }
    }
    int bad = 0;
    if (s->vcap < h->n_slots) {
        size_t cap = (size_t)h->cap;
        uint32_t *v = realloc(s->visited, cap * sizeof *v);
        if (v) {
            memset(v + s->vcap, 0, (cap - s->vcap) * sizeof *v);
            s->visited = v;
            s->vcap = cap;
        } else {
            bad = 1;
        }
    }
    if (!bad && s->res_cap < ef + 1) {
        item *r = realloc(s->res, (ef + 1) * sizeof *r);
        if (r) {
            s->res = r;
            s->res_cap = ef + 1;
        } else {
            bad = 1;
        }
    }
    if (bad) {
        scratch_free(s);
        return NULL;
    }
    if (++s->epoch == 0) { /* the tags wrapped: start afresh */
        memset(s->visited, 0, s->vcap * sizeof *s->visited);
        s->epoch = 1;
    }
    return s;
}

static void scratch_put(const hnsw *ch, hnsw_scratch *s)
{
    hnsw *h = (hnsw *)ch;
    pthread_mutex_lock(&h->pool_lock);
    s->next = h->pool;
    h->pool = s;
    pthread_mutex_unlock(&h->pool_lock);
}

/* ---- Search ---- */

/* Greedy walk on one upper layer: move to the closest neighbour until none is closer. */
static uint32_t greedy(const hnsw *h, const float *q, uint32_t ep, float *d_ep, int level)
{
    for (int changed = 1; changed;) {
        changed = 0;
        const uint32_t *l = hnsw_links(h, ep, level);
        for (uint32_t i = 1; i <= l[0]; i++) {
            float d = dist(h, q, hnsw_vec(h, l[i]));
            if (d < *d_ep) {
                *d_ep = d;
                ep = l[i];
                changed = 1;
            }
        }
    }
    return ep;
}

#define PREFETCH(p) __builtin_prefetch((p), 0, 3)

/* The paper's SEARCH-LAYER from one entry point, with a filter: s->res ends as a max-heap of
 * at most ef accepted nodes (all nodes when accept is NULL), *n_res its size. Nodes the
 * filter rejects still join the candidates, so the walk passes through them. Returns 0, or
 * -1 when the candidate heap cannot grow. */
static int search_layer(const hnsw *h, hnsw_scratch *s, const float *q, uint32_t ep, float d_ep, int level,
                        size_t ef, hnsw_accept_fn accept, void *ctx, size_t *n_res)
{
    size_t nc = 0, nr = 0;
    uint32_t *visited = s->visited, epoch = s->epoch;
    if (!s->cand_cap) {
        s->cand = malloc(256 * sizeof *s->cand);
        if (!s->cand)
            return -1;
        s->cand_cap = 256;
    }
    visited[ep] = epoch;
    heap_push(s->cand, &nc, (item){-d_ep, ep});
    if (!accept || accept(h->labels[ep], ctx))
        heap_push(s->res, &nr, (item){d_ep, ep});
    uint32_t fresh[2 * HNSW_MAX_M];
    while (nc) {
        item c = heap_pop(s->cand, &nc);
        if (nr == ef && -c.d > s->res[0].d)
            break;
        const uint32_t *l = hnsw_links(h, c.id, level);
        uint32_t n = l[0], nf = 0;
        for (uint32_t i = 1; i <= n; i++) {
            uint32_t v = l[i];
            if (visited[v] == epoch)
                continue;
            visited[v] = epoch;
            fresh[nf++] = v;
        }
        if (nf)
            PREFETCH(hnsw_vec(h, fresh[0]));
        if (nc + nf > s->cand_cap) {
            size_t cap = 2 * s->cand_cap > nc + nf ? 2 * s->cand_cap : nc + nf;
            item *g = realloc(s->cand, cap * sizeof *g);
            if (!g)
                return -1;
            s->cand = g;
            s->cand_cap = cap;
        }
        for (uint32_t i = 0; i < nf; i++) {
            if (i + 1 < nf)
                PREFETCH(hnsw_vec(h, fresh[i + 1]));
            uint32_t v = fresh[i];
            float d = dist(h, q, hnsw_vec(h, v));
            if (nr < ef || d < s->res[0].d) {
                heap_push(s->cand, &nc, (item){-d, v});
                if (!accept || accept(h->labels[v], ctx)) {
                    heap_push(s->res, &nr, (item){d, v});
                    if (nr > ef)
                        heap_pop(s->res, &nr);
                }
            }
        }
    }
    *n_res = nr;
    return 0;
}

/* Turns the max-heap res[0..n) into an array sorted closest first, in place. */
static void sort_results(item *res, size_t n)
{
    for (size_t len = n; len > 1;) {
        size_t m = len;
        item top = heap_pop(res, &m);
        res[--len] = top;
    }
}

int hnsw_search(const hnsw *h, const float *query, size_t k, size_t ef, hnsw_accept_fn accept, void *ctx,
                dist_hit *out, size_t *n_out, hnsw_error *err)
{
    *n_out = 0;
    if (h->loading)
        return hnsw_fail(err, HNSW_EINVAL, "the index is still loading");
    if (k > HNSW_MAX_EF || ef > HNSW_MAX_EF)
        return hnsw_fail(err, HNSW_EINVAL, "k %zu or ef %zu is above %d", k, ef, HNSW_MAX_EF);
    if (ef == 0)
        ef = (size_t)h->p.ef_construction;
    if (ef < k)
        ef = k;
    hnsw_scratch *s = scratch_get(h, ef);
    if (!s)
        return hnsw_fail(err, HNSW_ENOMEM, "out of memory for search scratch");
    memcpy(s->q, query, h->p.dim * sizeof *s->q);
    if (dist_prepare(h->p.metric, s->q, h->p.dim)) {
        scratch_put(h, s);
        return hnsw_fail(err, HNSW_EINVAL, "the query has NaN or Inf%s",
                         h->p.metric == DIST_COSINE ? ", or is all zeros" : "");
    }
    if (k == 0 || h->count == 0) {
        scratch_put(h, s);
        return HNSW_OK;
    }
    uint32_t ep = h->entry;
    float d = dist(h, s->q, hnsw_vec(h, ep));
    for (int l = h->max_level; l > 0; l--)
        ep = greedy(h, s->q, ep, &d, l);
    size_t nr;
    if (search_layer(h, s, s->q, ep, d, 0, ef, accept, ctx, &nr)) {
        scratch_put(h, s);
        return hnsw_fail(err, HNSW_ENOMEM, "out of memory for search candidates");
    }
    sort_results(s->res, nr);
    size_t n = nr < k ? nr : k;
    for (size_t i = 0; i < n; i++)
        out[i] = (dist_hit){h->labels[s->res[i].id], to_score(h, s->res[i].d)};
    *n_out = n;
    scratch_put(h, s);
    return HNSW_OK;
}

int hnsw_search_exact(const hnsw *h, const float *query, size_t k, hnsw_accept_fn accept, void *ctx,
                      dist_hit *out, size_t *n_out, hnsw_error *err)
{
    *n_out = 0;
    if (h->loading)
        return hnsw_fail(err, HNSW_EINVAL, "the index is still loading");
    if (k > HNSW_MAX_EF)
        return hnsw_fail(err, HNSW_EINVAL, "k %zu is above %d", k, HNSW_MAX_EF);
    float *q = malloc(h->p.dim * sizeof *q);
    if (!q)
        return hnsw_fail(err, HNSW_ENOMEM, "out of memory");
    memcpy(q, query, h->p.dim * sizeof *q);
    if (dist_prepare(h->p.metric, q, h->p.dim)) {
        free(q);
        return hnsw_fail(err, HNSW_EINVAL, "the query has NaN or Inf%s",
                         h->p.metric == DIST_COSINE ? ", or is all zeros" : "");
    }
    *n_out = dist_exact_topk(h->p.metric, h->vecs, h->labels, h->live, h->n_slots, h->p.dim, q, k, accept, ctx,
                             out);
    free(q);
    return HNSW_OK;
}

/* ---- Neighbour selection (Algorithm 4, keepPrunedConnections) ----
 * c[0..n) sorted closest first by c[i].d, the distance to the base. A candidate is kept when
 * it is closer to the base than to every neighbour kept so far; the pruned ones then fill the
 * remaining places in order. Exact copies of a kept neighbour come last of all, so a node
 * among many identical points still links out of the pile (the paper's rule alone keeps all
 * copies, since their distances tie at 0, and the pile becomes a trap). Writes at most M ids
 * to out, returns how many. */
static int select_neighbours(const hnsw *h, const item *c, int n, int M, uint32_t *out)
{
    enum { CAP = 2 * HNSW_MAX_M + 2 };
    int nout = 0, npruned = 0, ncopies = 0;
    uint32_t pruned[CAP], copies[CAP];
    for (int i = 0; i < n && nout < M; i++) {
        int good = 1, copy = 0;
        const float *v = hnsw_vec(h, c[i].id);
        for (int j = 0; j < nout && good; j++) {
            const float *r = hnsw_vec(h, out[j]);
            float dr = dist(h, v, r);
            if (dr <= c[i].d) {
                copy = memcmp(v, r, h->p.dim * sizeof *v) == 0;
                good = !copy && dr == c[i].d;
            }
        }
        if (good)
            out[nout++] = c[i].id;
        else if (copy && ncopies < CAP)
            copies[ncopies++] = c[i].id;
        else if (!copy && npruned < CAP)
            pruned[npruned++] = c[i].id;
    }
    for (int i = 0; i < npruned && nout < M; i++)
        out[nout++] = pruned[i];
    for (int i = 0; i < ncopies && nout < M; i++)
        out[nout++] = copies[i];
    return nout;
}

/* Closest first. Ties (in practice: identical vectors) are broken by a hash of the two
 * labels: the order does not depend on slot numbers (a loaded index, whose slots differ,
 * makes the same choices as the one it was saved from), and each node ranks a pile of
 * copies differently, so the copies link to one another like a random graph instead of
 * all to the same few. */
static void sort_items(const hnsw *h, int64_t base, item *a, int n)
{
    for (int i = 1; i < n; i++) {
        item x = a[i];
        size_t hx = hash64(base ^ h->labels[x.id]);
        int j = i;
        while (j > 0 && (a[j - 1].d > x.d || (a[j - 1].d == x.d && hash64(base ^ h->labels[a[j - 1].id]) > hx))) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = x;
    }
}

/* Whether some node other than `except` (and the node being deleted) links to d on `level`. */
static int has_other_inlink(const hnsw *h, uint32_t d, uint32_t except, int level)
{
    const hnsw_rev *r = &h->rev[d];
    for (uint32_t i = 0; i < r->n; i++) {
        uint32_t y = r->ids[i];
        if (y == except || y == h->deleting || h->levels[y] < level)
            continue;
        const uint32_t *l = hnsw_links(h, y, level);
        for (uint32_t j = 1; j <= l[0]; j++)
            if (l[j] == d)
                return 1;
    }
    return 0;
}

/* Rebuilds the layer-`level` list of s from cand[0..n) (ids, any order) with the heuristic.
 * A candidate left out that no other node links to would become unreachable on this layer:
 * it takes the place of the farthest chosen neighbour that has another in-link. */
static void relink(hnsw *h, uint32_t s, int level, item *cand, int n)
{
    const float *v = hnsw_vec(h, s);
    for (int i = 0; i < n; i++)
        cand[i].d = dist(h, v, hnsw_vec(h, cand[i].id));
    sort_items(h, h->labels[s], cand, n);
    uint32_t ids[2 * HNSW_MAX_M];
    uint8_t forced[2 * HNSW_MAX_M] = {0};
    int k = select_neighbours(h, cand, n, hnsw_max_links(h, level), ids);
    int victim = k - 1;
    for (int i = 0; i < n && victim >= 0; i++) {
        int kept = 0;
        for (int j = 0; j < k && !kept; j++)
            kept = ids[j] == cand[i].id;
        if (kept || has_other_inlink(h, cand[i].id, s, level))
            continue;
        while (victim >= 0 && (forced[victim] || !has_other_inlink(h, ids[victim], s, level)))
            victim--;
        if (victim < 0)
            break;
        ids[victim] = cand[i].id;
        forced[victim--] = 1;
    }
    set_links(h, s, level, ids, k);
}

/* Adds the link s -> t on `level`, shrinking the list with the heuristic when full. */
static void add_link(hnsw *h, uint32_t s, uint32_t t, int level)
{
    uint32_t *l = hnsw_links(h, s, level);
    if ((int)l[0] < hnsw_max_links(h, level)) {
        uint32_t ids[2 * HNSW_MAX_M];
        memcpy(ids, l + 1, l[0] * sizeof *ids);
        ids[l[0]] = t;
        set_links(h, s, level, ids, (int)l[0] + 1);
        return;
    }
    item cand[2 * HNSW_MAX_M + 1];
    int n = 0;
    for (uint32_t i = 1; i <= l[0]; i++)
        cand[n++].id = l[i];
    cand[n++].id = t;
    relink(h, s, level, cand, n);
}

/* ---- Insert ---- */

static int random_level(hnsw *h)
{
    /* splitmix64 */
    uint64_t z = (h->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    double u = ((double)(z >> 11) + 1.0) * (1.0 / 9007199254740992.0); /* (0, 1] */
    double lv = -log(u) * h->mult;
    return lv >= HNSW_MAX_LEVEL ? HNSW_MAX_LEVEL : (int)lv;
}

int hnsw_insert(hnsw *h, int64_t label, const float *vec, hnsw_error *err)
{
    if (h->loading)
        return hnsw_fail(err, HNSW_EINVAL, "the index is still loading");
    if (hnsw_find(h, label) != NO_NODE)
        return hnsw_fail(err, HNSW_EEXIST, "label %lld is already in the index", (long long)label);
    /* Fewer candidates than links to fill would starve the lists. */
    size_t efc = (size_t)(h->p.ef_construction > h->p.m ? h->p.ef_construction : h->p.m);
    hnsw_scratch *s = scratch_get(h, efc);
    if (!s)
        return hnsw_fail(err, HNSW_ENOMEM, "out of memory");
    float *q = s->q;
    memcpy(q, vec, h->p.dim * sizeof *q);
    if (dist_prepare(h->p.metric, q, h->p.dim)) {
        scratch_put(h, s);
        return hnsw_fail(err, HNSW_EINVAL, "the vector has NaN or Inf%s",
                         h->p.metric == DIST_COSINE ? ", or is all zeros" : "");
    }
    uint64_t rng_before = h->rng;
    int level = random_level(h);

    /* Phase 1, read-only: find the neighbours on every layer. Layers are independent, so
     * linking can wait until all are chosen. */
    int top = level < h->max_level ? level : h->max_level;
    size_t total_sel = 0;
    if (h->entry != NO_NODE) {
        uint32_t ep = h->entry;
        float d = dist(h, q, hnsw_vec(h, ep));
        for (int l = h->max_level; l > level; l--)
            ep = greedy(h, q, ep, &d, l);
        for (int l = top; l >= 0; l--) {
            size_t nr;
            if (l < top && ++s->epoch == 0) {
                memset(s->visited, 0, s->vcap * sizeof *s->visited);
                s->epoch = 1;
            }
            if (search_layer(h, s, q, ep, d, l, efc, NULL, NULL, &nr)) {
                h->rng = rng_before;
                scratch_put(h, s);
                return hnsw_fail(err, HNSW_ENOMEM, "out of memory");
            }
            sort_results(s->res, nr);
            sort_items(h, label, s->res, (int)nr); /* only ties move */
            ep = s->res[0].id;
            d = s->res[0].d;
            s->n_sel[l] = select_neighbours(h, s->res, (int)nr, h->p.m, s->sel + (size_t)l * (size_t)h->p.m);
            total_sel += (size_t)s->n_sel[l];
        }
    }

    /* Phase 2: reserve everything linking needs, so phase 3 cannot fail. */
    uint32_t slot = h->n_free ? h->free_slots[h->n_free - 1] : h->n_slots;
    int oom = hnsw_reserve(h, (size_t)slot + 1) || hnsw_map_reserve(h, h->map_used + 1) ||
              dirty_reserve(h, total_sel + 1) || hnsw_alloc_upper(h, slot, level) ||
              rev_reserve(&h->rev[slot], total_sel);
    for (int l = top; l >= 0 && !oom; l--)
        for (int i = 0; i < s->n_sel[l] && !oom; i++)
            oom = rev_reserve(&h->rev[s->sel[(size_t)l * (size_t)h->p.m + (size_t)i]], (size_t)top + 1);
    if (oom) {
        h->rng = rng_before;
        scratch_put(h, s);
        return hnsw_fail(err, HNSW_ENOMEM, "out of memory");
    }

    /* Phase 3: place the node and link it both ways. */
    if (h->n_free)
        h->n_free--;
    else
        h->n_slots++;
    memcpy(h->vecs + (size_t)slot * h->p.dim, q, h->p.dim * sizeof *q);
    h->labels[slot] = label;
    h->levels[slot] = (uint8_t)level;
    h->live[slot] = 1;
    hnsw_links(h, slot, 0)[0] = 0;
    hnsw_map_put(h, label, slot);
    h->count++;
    hnsw_mark_dirty(h, slot);
    for (int l = top; l >= 0; l--) {
        const uint32_t *sel = s->sel + (size_t)l * (size_t)h->p.m;
        set_links(h, slot, l, sel, s->n_sel[l]);
        for (int i = 0; i < s->n_sel[l]; i++)
            add_link(h, sel[i], slot, l);
    }
    if (level > h->max_level) {
        h->entry = slot;
        h->max_level = level;
    }
    scratch_put(h, s);
    return HNSW_OK;
}

/* ---- Delete ---- */

/* The node with the highest level among the live ones, other than `except`. */
static void pick_entry(hnsw *h, uint32_t except)
{
    h->entry = NO_NODE;
    h->max_level = -1;
    for (uint32_t s = 0; s < h->n_slots; s++)
        if (h->live[s] && s != except && (int)h->levels[s] > h->max_level) {
            h->max_level = h->levels[s];
            h->entry = s;
        }
}

int hnsw_delete(hnsw *h, int64_t label, hnsw_error *err)
{
    if (h->loading)
        return hnsw_fail(err, HNSW_EINVAL, "the index is still loading");
    uint32_t x = hnsw_find(h, label);
    if (x == NO_NODE)
        return hnsw_fail(err, HNSW_ENOENT, "label %lld is not in the index", (long long)label);
    if (dirty_reserve(h, (size_t)h->rev[x].n + 1) ||
        grow_list((void **)&h->deleted, &h->deleted_cap, h->n_deleted + 1, sizeof *h->deleted) ||
        grow_list((void **)&h->free_slots, &h->free_cap, h->n_free + 1, sizeof *h->free_slots))
        return hnsw_fail(err, HNSW_ENOMEM, "out of memory");

    /* Every node y linking to x gets, on each layer where it does, a list rebuilt from its
     * other neighbours and x's. Each repair removes y's entries from rev[x]. */
    h->deleting = x;
    while (h->rev[x].n) {
        uint32_t y = h->rev[x].ids[h->rev[x].n - 1];
        int top = h->levels[y] < h->levels[x] ? h->levels[y] : h->levels[x];
        for (int l = 0; l <= top; l++) {
            uint32_t *ly = hnsw_links(h, y, l), *lx = hnsw_links(h, x, l);
            int links_x = 0;
            for (uint32_t i = 1; i <= ly[0] && !links_x; i++)
                links_x = ly[i] == x;
            if (!links_x)
                continue;
            item cand[4 * HNSW_MAX_M];
            int n = 0;
            for (uint32_t i = 1; i <= ly[0]; i++)
                if (ly[i] != x)
                    cand[n++].id = ly[i];
            for (uint32_t i = 1; i <= lx[0]; i++) {
                int dup = lx[i] == y;
                for (int j = 0; j < n && !dup; j++)
                    dup = cand[j].id == lx[i];
                if (!dup)
                    cand[n++].id = lx[i];
            }
            relink(h, y, l, cand, n);
        }
        /* Defensive: a reverse entry with no matching link (cannot happen) must not loop. */
        if (h->rev[x].n && h->rev[x].ids[h->rev[x].n - 1] == y)
            rev_remove(&h->rev[x], y);
    }
    for (int l = 0; l <= h->levels[x]; l++)
        set_links(h, x, l, NULL, 0);
    h->deleting = NO_NODE;
    if (h->entry == x)
        pick_entry(h, x);

    h->live[x] = 0;
    map_remove(h, label);
    hnsw_alloc_upper(h, x, 0);
    free(h->rev[x].ids);
    h->rev[x] = (hnsw_rev){NULL, 0, 0};
    h->free_slots[h->n_free++] = x;
    h->deleted[h->n_deleted++] = label;
    h->count--;
    return HNSW_OK;
}

int hnsw_upsert(hnsw *h, int64_t label, const float *vec, hnsw_error *err)
{
    /* Check the vector first, so a bad one leaves the old node in place. */
    if (h->loading)
        return hnsw_fail(err, HNSW_EINVAL, "the index is still loading");
    for (size_t i = 0; i < h->p.dim; i++)
        if (!isfinite(vec[i]))
            return hnsw_fail(err, HNSW_EINVAL, "the vector has NaN or Inf");
    if (h->p.metric == DIST_COSINE) {
        int zero = 1;
        for (size_t i = 0; i < h->p.dim && zero; i++)
            zero = vec[i] == 0;
        if (zero)
            return hnsw_fail(err, HNSW_EINVAL, "the vector is all zeros");
    }
    if (hnsw_find(h, label) != NO_NODE) {
        int rc = hnsw_delete(h, label, err);
        if (rc)
            return rc;
    }
    return hnsw_insert(h, label, vec, err);
}
