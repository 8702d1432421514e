/* hnsw_persist.c — the index's records (formats in hnsw.h), dirty tracking, and loading from
 * records. Loading computes no distance: it copies vectors and resolves neighbour labels,
 * checking every claim a record makes before the graph is used. */
#include "hnsw_impl.h"

#include <stdlib.h>
#include <string.h>

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* ---- Records ---- */

void hnsw_header_record(const hnsw *h, uint8_t out[HNSW_HEADER_BYTES])
{
    memset(out, 0, HNSW_HEADER_BYTES);
    memcpy(out, "HNSW", 4);
    put16(out + 4, HNSW_RECORD_VERSION);
    out[6] = (uint8_t)h->p.metric;
    out[7] = (uint8_t)(h->max_level < 0 ? 0 : h->max_level);
    put32(out + 8, (uint32_t)h->p.dim);
    put32(out + 12, (uint32_t)h->p.m);
    put32(out + 16, (uint32_t)h->p.ef_construction);
    put64(out + 24, h->count);
    put64(out + 32, h->entry == NO_NODE ? 0 : (uint64_t)h->labels[h->entry]);
    put64(out + 40, h->p.seed);
    put64(out + 48, h->rng);
}

size_t hnsw_record_max_bytes(const hnsw *h)
{
    return 2 + (size_t)(HNSW_MAX_LEVEL + 1) * 2 + 8 * ((size_t)h->m0 + (size_t)HNSW_MAX_LEVEL * (size_t)h->p.m);
}

static size_t record_bytes(const hnsw *h, uint32_t s)
{
    size_t n = 2;
    for (int l = 0; l <= h->levels[s]; l++)
        n += 2 + 8 * (size_t)hnsw_links(h, s, l)[0];
    return n;
}

static void write_record(const hnsw *h, uint32_t s, uint8_t *p)
{
    *p++ = HNSW_RECORD_VERSION;
    *p++ = h->levels[s];
    for (int l = 0; l <= h->levels[s]; l++) {
        const uint32_t *ln = hnsw_links(h, s, l);
        put16(p, (uint16_t)ln[0]);
        p += 2;
        for (uint32_t i = 1; i <= ln[0]; i++, p += 8)
            put64(p, (uint64_t)h->labels[ln[i]]);
    }
}

int hnsw_node_record(const hnsw *h, int64_t label, uint8_t *buf, size_t cap, size_t *len)
{
    uint32_t s = hnsw_find(h, label);
    *len = 0;
    if (s == NO_NODE || h->loading)
        return HNSW_ENOENT;
    *len = record_bytes(h, s);
    if (cap < *len)
        return HNSW_EINVAL;
    write_record(h, s, buf);
    return HNSW_OK;
}

/* ---- Dirty tracking ---- */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int hnsw_dirty_foreach(const hnsw *h, int (*fn)(int64_t label, const uint8_t *rec, size_t len, void *ctx),
                       void *ctx)
{
    uint8_t *buf = malloc(hnsw_record_max_bytes(h));
    int64_t *del = malloc((h->n_deleted ? h->n_deleted : 1) * sizeof *del);
    int rc = 0;
    if (!buf || !del) {
        rc = HNSW_ENOMEM;
        goto done;
    }
    for (size_t i = 0; i < h->n_dirty && !rc; i++) {
        uint32_t s = h->dirty_slots[i];
        if (!h->live[s])
            continue; /* deleted since: reported below under its label */
        write_record(h, s, buf);
        rc = fn(h->labels[s], buf, record_bytes(h, s), ctx);
    }
    if (h->n_deleted)
        memcpy(del, h->deleted, h->n_deleted * sizeof *del);
    qsort(del, h->n_deleted, sizeof *del, cmp_i64);
    for (size_t i = 0; i < h->n_deleted && !rc; i++)
        if ((i == 0 || del[i] != del[i - 1]) && hnsw_find(h, del[i]) == NO_NODE)
            rc = fn(del[i], NULL, 0, ctx);
done:
    free(buf);
    free(del);
    return rc;
}

static int count_one(int64_t label, const uint8_t *rec, size_t len, void *ctx)
{
    (void)label, (void)rec, (void)len;
    (*(size_t *)ctx)++;
    return 0;
}

size_t hnsw_dirty_count(const hnsw *h)
{
    size_t n = 0;
    if (hnsw_dirty_foreach(h, count_one, &n))
        return h->n_dirty + h->n_deleted; /* no memory to deduplicate: an upper bound */
    return n;
}

void hnsw_clear_dirty(hnsw *h)
{
    for (size_t i = 0; i < h->n_dirty; i++)
        h->dirty[h->dirty_slots[i]] = 0;
    h->n_dirty = 0;
    h->n_deleted = 0;
}

/* ---- Loading ---- */

int hnsw_load_begin(const uint8_t *header, size_t len, hnsw **out, hnsw_error *err)
{
    *out = NULL;
    if (!header || len != HNSW_HEADER_BYTES)
        return hnsw_fail(err, HNSW_ECORRUPT, "index header: %zu bytes, expected %d", len, HNSW_HEADER_BYTES);
    if (memcmp(header, "HNSW", 4) != 0)
        return hnsw_fail(err, HNSW_ECORRUPT, "index header: bad magic");
    if (get16(header + 4) != HNSW_RECORD_VERSION)
        return hnsw_fail(err, HNSW_ECORRUPT, "index header: version %u, this build reads %d", get16(header + 4),
                         HNSW_RECORD_VERSION);
    if (get32(header + 20) != 0 || get64(header + 56) != 0)
        return hnsw_fail(err, HNSW_ECORRUPT, "index header: reserved fields are not zero");
    uint64_t count = get64(header + 24);
    if (count >= NO_NODE || header[7] > HNSW_MAX_LEVEL)
        return hnsw_fail(err, HNSW_ECORRUPT, "index header: count %llu or level %u out of range",
                         (unsigned long long)count, header[7]);
    hnsw_params p = {
        .dim = get32(header + 8),
        .metric = (dist_metric)header[6],
        .m = (int)(get32(header + 12) & 0x7fffffff),
        .ef_construction = (int)(get32(header + 16) & 0x7fffffff),
        .seed = get64(header + 40),
    };
    hnsw *h;
    int rc = hnsw_create(&p, &h, err);
    if (rc == HNSW_EINVAL) {
        char why[sizeof err->msg] = "";
        if (err)
            memcpy(why, err->msg, sizeof why);
        return hnsw_fail(err, HNSW_ECORRUPT, "index header: %s", why);
    }
    if (rc)
        return rc;
    h->rng = get64(header + 48);
    h->max_level = count ? header[7] : -1;
    h->load_entry = (int64_t)get64(header + 32);
    h->load_count = count;
    h->loading = 1;
    /* Room for the announced nodes up front when that is a sane amount; a bad count only
     * costs a failed reservation, after which arrays grow as nodes arrive. */
    if (count && count * p.dim <= ((uint64_t)1 << 32)) {
        hnsw_reserve(h, (size_t)count);
        hnsw_map_reserve(h, (size_t)count);
    }
    *out = h;
    return HNSW_OK;
}

int hnsw_load_add(hnsw *h, int64_t label, const float *vec, const uint8_t *rec, size_t len, hnsw_error *err)
{
    if (!h->loading)
        return hnsw_fail(err, HNSW_EINVAL, "the index is not loading");
    if (!rec || len < 2)
        return hnsw_fail(err, HNSW_ECORRUPT, "node %lld: record of %zu bytes", (long long)label, rec ? len : 0);
    if (rec[0] != HNSW_RECORD_VERSION)
        return hnsw_fail(err, HNSW_ECORRUPT, "node %lld: record version %u", (long long)label, rec[0]);
    int level = rec[1];
    if (level > HNSW_MAX_LEVEL || level > h->max_level)
        return hnsw_fail(err, HNSW_ECORRUPT, "node %lld: level %d above the index's %d", (long long)label, level,
                         h->max_level);
    /* Walk the lists once to check the length before anything is stored. */
    size_t off = 2, n_links = 0;
    for (int l = 0; l <= level; l++) {
        if (off + 2 > len)
            return hnsw_fail(err, HNSW_ECORRUPT, "node %lld: record truncated", (long long)label);
        unsigned n = get16(rec + off);
        if ((int)n > hnsw_max_links(h, l))
            return hnsw_fail(err, HNSW_ECORRUPT, "node %lld: %u links on layer %d, at most %d", (long long)label, n,
                             l, hnsw_max_links(h, l));
        off += 2;
        if (len - off < 8 * (size_t)n)
            return hnsw_fail(err, HNSW_ECORRUPT, "node %lld: record truncated", (long long)label);
        off += 8 * (size_t)n;
        n_links += n;
    }
    if (off != len)
        return hnsw_fail(err, HNSW_ECORRUPT, "node %lld: %zu bytes after the record", (long long)label, len - off);
    if (hnsw_find(h, label) != NO_NODE)
        return hnsw_fail(err, HNSW_ECORRUPT, "node %lld appears twice", (long long)label);
    if (h->n_slots >= h->load_count)
        return hnsw_fail(err, HNSW_ECORRUPT, "more nodes than the header's %llu", (unsigned long long)h->load_count);

    uint32_t s = h->n_slots;
    if (hnsw_reserve(h, (size_t)s + 1))
        return hnsw_fail(err, HNSW_ENOMEM, "out of memory");
    float *v = h->vecs + (size_t)s * h->p.dim;
    memcpy(v, vec, h->p.dim * sizeof *v);
    if (dist_prepare(h->p.metric, v, h->p.dim))
        return hnsw_fail(err, HNSW_ECORRUPT, "node %lld: the vector has NaN or Inf, or is all zeros under cosine",
                         (long long)label);
    size_t need = h->n_load + n_links;
    if (need > h->load_cap) {
        size_t cap = h->load_cap ? 2 * h->load_cap : 4096;
        while (cap < need)
            cap *= 2;
        int64_t *p = realloc(h->load_labels, cap * sizeof *p);
        if (!p)
            return hnsw_fail(err, HNSW_ENOMEM, "out of memory");
        h->load_labels = p;
        h->load_cap = cap;
    }
    if (hnsw_alloc_upper(h, s, level) || hnsw_map_put(h, label, s))
        return hnsw_fail(err, HNSW_ENOMEM, "out of memory");
    h->labels[s] = label;
    h->levels[s] = (uint8_t)level;
    h->live[s] = 1;
    off = 2;
    for (int l = 0; l <= level; l++) {
        unsigned n = get16(rec + off);
        hnsw_links(h, s, l)[0] = n; /* the ids are filled by hnsw_load_finish */
        off += 2;
        for (unsigned i = 0; i < n; i++, off += 8)
            h->load_labels[h->n_load++] = (int64_t)get64(rec + off);
    }
    h->n_slots++;
    h->count++;
    return HNSW_OK;
}

int hnsw_load_finish(hnsw *h, hnsw_error *err)
{
    if (!h->loading)
        return hnsw_fail(err, HNSW_EINVAL, "the index is not loading");
    if (h->count != h->load_count)
        return hnsw_fail(err, HNSW_ECORRUPT, "%zu nodes, the header says %llu", h->count,
                         (unsigned long long)h->load_count);
    /* Resolve labels and check each list; count in-links per node for the reverse lists. */
    size_t at = 0;
    for (uint32_t s = 0; s < h->n_slots; s++)
        for (int l = 0; l <= h->levels[s]; l++) {
            uint32_t *ln = hnsw_links(h, s, l);
            for (uint32_t i = 1; i <= ln[0]; i++) {
                int64_t t = h->load_labels[at++];
                uint32_t ts = hnsw_find(h, t);
                if (ts == NO_NODE)
                    return hnsw_fail(err, HNSW_ECORRUPT, "node %lld links to %lld, which is not in the index",
                                     (long long)h->labels[s], (long long)t);
                if (ts == s || h->levels[ts] < l)
                    return hnsw_fail(err, HNSW_ECORRUPT, "node %lld: bad link to %lld on layer %d",
                                     (long long)h->labels[s], (long long)t, l);
                for (uint32_t j = 1; j < i; j++)
                    if (ln[j] == ts)
                        return hnsw_fail(err, HNSW_ECORRUPT, "node %lld links twice to %lld",
                                         (long long)h->labels[s], (long long)t);
                ln[i] = ts;
                h->rev[ts].cap++;
            }
        }
    for (uint32_t s = 0; s < h->n_slots; s++) {
        uint32_t c = h->rev[s].cap;
        h->rev[s].cap = 0;
        if (c && !(h->rev[s].ids = malloc(c * sizeof(uint32_t))))
            return hnsw_fail(err, HNSW_ENOMEM, "out of memory");
        h->rev[s].cap = c;
    }
    for (uint32_t s = 0; s < h->n_slots; s++)
        for (int l = 0; l <= h->levels[s]; l++) {
            const uint32_t *ln = hnsw_links(h, s, l);
            for (uint32_t i = 1; i <= ln[0]; i++) {
                hnsw_rev *r = &h->rev[ln[i]];
                r->ids[r->n++] = s;
            }
        }
    if (h->count) {
        uint32_t e = hnsw_find(h, h->load_entry);
        if (e == NO_NODE || h->levels[e] != h->max_level)
            return hnsw_fail(err, HNSW_ECORRUPT, "entry point %lld is missing or not on the top layer %d",
                             (long long)h->load_entry, h->max_level);
        h->entry = e;
    }
    free(h->load_labels);
    h->load_labels = NULL;
    h->n_load = h->load_cap = 0;
    h->loading = 0;
    return HNSW_OK;
}
