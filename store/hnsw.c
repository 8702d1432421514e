/* hnsw.c — the HNSW index's memory: creation and destruction, the label map, slots and their
 * arrays, and the pool of search scratch. The graph is walked in hnsw_search.c and edited
 * (insert, delete with repair) in hnsw_insert.c; records, dirty tracking and loading are in
 * hnsw_persist.c; the layout in hnsw_impl.h. */
#include "hnsw_impl.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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

/* ---- Label map: open addressing, linear probing, deletion by backward shift. ---- */

uint32_t hnsw_find(const hnsw *h, int64_t label)
{
    if (!h->map_cap)
        return NO_NODE;
    size_t mask = h->map_cap - 1;
    for (size_t i = hnsw_hash64(label) & mask;; i = (i + 1) & mask) {
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
        size_t i = hnsw_hash64(h->map[j].key) & (cap - 1);
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
    size_t mask = h->map_cap - 1, i = hnsw_hash64(label) & mask;
    while (h->map[i].slot != NO_NODE && h->map[i].key != label)
        i = (i + 1) & mask;
    if (h->map[i].slot == NO_NODE)
        h->map_used++;
    h->map[i].key = label;
    h->map[i].slot = slot;
    return 0;
}

void hnsw_map_remove(hnsw *h, int64_t label)
{
    size_t mask = h->map_cap - 1, i = hnsw_hash64(label) & mask;
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
        size_t home = hnsw_hash64(h->map[j].key) & mask;
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

void hnsw_scratch_free(hnsw_scratch *s)
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
        hnsw_scratch_free(s);
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

hnsw_scratch *hnsw_scratch_get(const hnsw *ch, size_t ef)
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
            hnsw_scratch_free(s);
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
        hnsw_scratch_free(s);
        return NULL;
    }
    if (++s->epoch == 0) { /* the tags wrapped: start afresh */
        memset(s->visited, 0, s->vcap * sizeof *s->visited);
        s->epoch = 1;
    }
    return s;
}

void hnsw_scratch_put(const hnsw *ch, hnsw_scratch *s)
{
    hnsw *h = (hnsw *)ch;
    pthread_mutex_lock(&h->pool_lock);
    s->next = h->pool;
    h->pool = s;
    pthread_mutex_unlock(&h->pool_lock);
}
