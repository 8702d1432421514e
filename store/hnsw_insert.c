/* hnsw_insert.c — editing the HNSW graph: links kept in step with the reverse links and the
 * dirty set, neighbour selection (the paper's Algorithm 4 with keepPrunedConnections, plus
 * the two rules of hnsw.h that keep every node reachable), insert, and delete with repair. */
#include "hnsw_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- Links and their reverse entries ---- */

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
            float dr = hnsw_dist(h, v, r);
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
        size_t hx = hnsw_hash64(base ^ h->labels[x.id]);
        int j = i;
        while (j > 0 && (a[j - 1].d > x.d || (a[j - 1].d == x.d && hnsw_hash64(base ^ h->labels[a[j - 1].id]) > hx))) {
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
        cand[i].d = hnsw_dist(h, v, hnsw_vec(h, cand[i].id));
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

static int insert(hnsw *h, int64_t label, const float *vec, int prepared, hnsw_error *err)
{
    if (h->loading)
        return hnsw_fail(err, HNSW_EINVAL, "the index is still loading");
    if (hnsw_find(h, label) != NO_NODE)
        return hnsw_fail(err, HNSW_EEXIST, "label %lld is already in the index", (long long)label);
    /* Fewer candidates than links to fill would starve the lists. */
    size_t efc = (size_t)(h->p.ef_construction > h->p.m ? h->p.ef_construction : h->p.m);
    hnsw_scratch *s = hnsw_scratch_get(h, efc);
    if (!s)
        return hnsw_fail(err, HNSW_ENOMEM, "out of memory");
    float *q = s->q;
    memcpy(q, vec, h->p.dim * sizeof *q);
    if (!prepared && dist_prepare(h->p.metric, q, h->p.dim)) {
        hnsw_scratch_put(h, s);
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
        float d = hnsw_dist(h, q, hnsw_vec(h, ep));
        for (int l = h->max_level; l > level; l--)
            ep = hnsw_greedy(h, q, ep, &d, l);
        for (int l = top; l >= 0; l--) {
            size_t nr;
            if (l < top && ++s->epoch == 0) {
                memset(s->visited, 0, s->vcap * sizeof *s->visited);
                s->epoch = 1;
            }
            if (hnsw_search_layer(h, s, q, ep, d, l, efc, NULL, NULL, &nr)) {
                h->rng = rng_before;
                hnsw_scratch_put(h, s);
                return hnsw_fail(err, HNSW_ENOMEM, "out of memory");
            }
            hnsw_sort_results(s->res, nr);
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
        hnsw_scratch_put(h, s);
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
    hnsw_scratch_put(h, s);
    return HNSW_OK;
}

int hnsw_insert(hnsw *h, int64_t label, const float *vec, hnsw_error *err) { return insert(h, label, vec, 0, err); }

int hnsw_insert_prepared(hnsw *h, int64_t label, const float *vec, hnsw_error *err)
{
    return insert(h, label, vec, 1, err);
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
    hnsw_map_remove(h, label);
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
