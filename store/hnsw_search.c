/* hnsw_search.c — walking the HNSW graph: the greedy descent through the upper layers, the
 * paper's SEARCH-LAYER with a filter evaluated on each visited node (also used by inserts to
 * find neighbours), and the k-nearest-neighbour search, approximate and exact.
 *
 * Internally a smaller distance is closer (hnsw_impl.h); scores are made only when results
 * leave the index. */
#include "hnsw_impl.h"

#include <stdlib.h>
#include <string.h>

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

/* ---- Search ---- */

/* Greedy walk on one upper layer: move to the closest neighbour until none is closer. */
uint32_t hnsw_greedy(const hnsw *h, const float *q, uint32_t ep, float *d_ep, int level)
{
    for (int changed = 1; changed;) {
        changed = 0;
        const uint32_t *l = hnsw_links(h, ep, level);
        for (uint32_t i = 1; i <= l[0]; i++) {
            float d = hnsw_dist(h, q, hnsw_vec(h, l[i]));
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
int hnsw_search_layer(const hnsw *h, hnsw_scratch *s, const float *q, uint32_t ep, float d_ep, int level,
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
            float d = hnsw_dist(h, q, hnsw_vec(h, v));
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
void hnsw_sort_results(item *res, size_t n)
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
    hnsw_scratch *s = hnsw_scratch_get(h, ef);
    if (!s)
        return hnsw_fail(err, HNSW_ENOMEM, "out of memory for search scratch");
    memcpy(s->q, query, h->p.dim * sizeof *s->q);
    if (dist_prepare(h->p.metric, s->q, h->p.dim)) {
        hnsw_scratch_put(h, s);
        return hnsw_fail(err, HNSW_EINVAL, "the query has NaN or Inf%s",
                         h->p.metric == DIST_COSINE ? ", or is all zeros" : "");
    }
    if (k == 0 || h->count == 0) {
        hnsw_scratch_put(h, s);
        return HNSW_OK;
    }
    uint32_t ep = h->entry;
    float d = hnsw_dist(h, s->q, hnsw_vec(h, ep));
    for (int l = h->max_level; l > 0; l--)
        ep = hnsw_greedy(h, s->q, ep, &d, l);
    size_t nr;
    if (hnsw_search_layer(h, s, s->q, ep, d, 0, ef, accept, ctx, &nr)) {
        hnsw_scratch_put(h, s);
        return hnsw_fail(err, HNSW_ENOMEM, "out of memory for search candidates");
    }
    hnsw_sort_results(s->res, nr);
    size_t n = nr < k ? nr : k;
    for (size_t i = 0; i < n; i++)
        out[i] = (dist_hit){h->labels[s->res[i].id], hnsw_score(h, s->res[i].d)};
    *n_out = n;
    hnsw_scratch_put(h, s);
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
