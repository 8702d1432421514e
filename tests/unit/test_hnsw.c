/* test_hnsw.c — the HNSW index against exact search: recall on uniform and clustered data
 * for every metric, deletes and updates, inserts of prepared vectors, filters (down to 1%
 * selective), edge cases, the persistence records (full and incremental dumps, reload,
 * malformed records) and concurrent searches. Data come from a fixed-seed generator, so
 * every run is the same. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cu.h"
#include "hnsw.h"

#define K 10

static unsigned long long rng;

static double urand(void) /* [0, 1) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) * (1.0 / 9007199254740992.0);
}

static float frand(void) { return (float)(2 * urand() - 1); }

/* n points in dim: uniform in [-1, 1], or around 20 centres with spread 0.1. */
static float *make_data(size_t n, size_t dim, int clustered, unsigned long long seed)
{
    rng = seed;
    float *x = malloc(n * dim * sizeof *x), centres[20 * 64];
    for (size_t i = 0; i < 20 * 64; i++)
        centres[i] = frand();
    for (size_t i = 0; i < n; i++) {
        const float *c = centres + (size_t)(urand() * 20) * 64 % (20 * 64);
        for (size_t j = 0; j < dim; j++)
            x[i * dim + j] = clustered ? c[j % 64] + 0.1f * (frand() + frand() + frand()) : frand();
    }
    return x;
}

static hnsw *build(const float *x, size_t n, size_t dim, dist_metric m, int M, int efc)
{
    hnsw_params p;
    hnsw_params_default(&p, dim, m);
    p.m = M;
    p.ef_construction = efc;
    hnsw *h;
    hnsw_error err;
    CU_ASSERT_FATAL(hnsw_create(&p, &h, &err) == HNSW_OK);
    int bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += hnsw_insert(h, (int64_t)i, x + i * dim, &err) != HNSW_OK;
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(hnsw_count(h), n);
    return h;
}

/* Mean recall@k of hnsw_search against hnsw_search_exact over nq queries; also checks that
 * results are sorted, accepted by the filter and carry their true score. */
static double recall(const hnsw *h, const float *queries, size_t nq, size_t k, size_t ef, hnsw_accept_fn acc,
                     void *ctx)
{
    size_t dim = hnsw_get_params(h)->dim, found = 0, want = 0;
    int bad = 0;
    float *v = malloc(dim * sizeof *v), *q = malloc(dim * sizeof *q);
    for (size_t i = 0; i < nq; i++) {
        dist_hit a[64], e[64];
        size_t na, ne;
        hnsw_error err;
        CU_ASSERT_FATAL(hnsw_search(h, queries + i * dim, k, ef, acc, ctx, a, &na, &err) == HNSW_OK);
        CU_ASSERT_FATAL(hnsw_search_exact(h, queries + i * dim, k, acc, ctx, e, &ne, &err) == HNSW_OK);
        bad += na != ne; /* the walk fills top_k whenever enough nodes pass */
        memcpy(q, queries + i * dim, dim * sizeof *q);
        dist_prepare(hnsw_get_params(h)->metric, q, dim);
        for (size_t j = 0; j < na; j++) {
            bad += j > 0 && a[j].score > a[j - 1].score;
            bad += acc && !acc(a[j].label, ctx);
            bad += hnsw_get_vector(h, a[j].label, v) != HNSW_OK;
            bad += fabsf(dist_score(hnsw_get_params(h)->metric, v, q, dim) - a[j].score) > 1e-4f;
            int hit = 0;
            /* A hit counts when its score reaches the k-th exact score (ties are equal). */
            hit = ne > 0 && a[j].score >= e[ne - 1].score - 1e-6f;
            found += (size_t)hit;
        }
        want += ne;
    }
    CU_ASSERT_EQUAL(bad, 0);
    free(v), free(q);
    return want ? (double)found / (double)want : 1.0;
}

static void test_recall(void)
{
    size_t n = 5000, dim = 64, nq = 100;
    for (int clustered = 0; clustered < 2; clustered++) {
        /* The queries are the nq points after the n indexed: same distribution, not indexed. */
        float *x = make_data(n + nq, dim, clustered, 1234 + (unsigned)clustered), *qs = x + n * dim;
        for (int m = 0; m < 3; m++) {
            hnsw *h = build(x, n, dim, (dist_metric)m, 16, 100);
            double r = recall(h, qs, nq, K, 100, NULL, NULL);
            CU_ASSERT(r >= 0.95);
            if (r < 0.95)
                fprintf(stderr, "recall@10 %.3f for %s on %s data\n", r, dist_metric_name((dist_metric)m),
                        clustered ? "clustered" : "uniform");
            hnsw_destroy(h);
        }
        free(x);
    }
}

/* ---- Deletes and updates ---- */

static int is_odd(int64_t label, void *ctx)
{
    (void)ctx;
    return (label & 1) != 0;
}

static void test_delete_half(void)
{
    size_t n = 3000, dim = 32;
    float *x = make_data(n, dim, 1, 99);
    hnsw *h = build(x, n, dim, DIST_COSINE, 16, 100);
    hnsw_error err;
    for (size_t i = 0; i < n; i += 2)
        CU_ASSERT_EQUAL(hnsw_delete(h, (int64_t)i, &err), HNSW_OK);
    CU_ASSERT_EQUAL(hnsw_count(h), n / 2);
    CU_ASSERT_EQUAL(hnsw_contains(h, 0), 0);
    CU_ASSERT_EQUAL(hnsw_contains(h, 1), 1);
    CU_ASSERT_EQUAL(hnsw_delete(h, 0, &err), HNSW_ENOENT);
    /* The deleted points themselves as queries: only live (odd) labels may come back. */
    int stale = 0;
    for (size_t i = 0; i < n; i += 2) {
        dist_hit out[K];
        size_t no;
        CU_ASSERT_FATAL(hnsw_search(h, x + i * dim, K, 50, NULL, NULL, out, &no, &err) == HNSW_OK);
        stale += no != K;
        for (size_t j = 0; j < no; j++)
            stale += !is_odd(out[j].label, NULL);
    }
    CU_ASSERT_EQUAL(stale, 0);
    double r = recall(h, x, 200, K, 100, NULL, NULL);
    CU_ASSERT(r >= 0.95);
    /* Refill the freed slots: the graph keeps working. */
    for (size_t i = 0; i < n; i += 2)
        CU_ASSERT_EQUAL(hnsw_insert(h, (int64_t)(n + i), x + i * dim, &err), HNSW_OK);
    CU_ASSERT(recall(h, x, 200, K, 100, NULL, NULL) >= 0.95);
    /* Delete everything, including each entry point in turn. */
    for (size_t i = 1; i < n; i += 2)
        hnsw_delete(h, (int64_t)i, &err);
    for (size_t i = 0; i < n; i += 2)
        hnsw_delete(h, (int64_t)(n + i), &err);
    CU_ASSERT_EQUAL(hnsw_count(h), 0);
    dist_hit out[K];
    size_t no = 99;
    CU_ASSERT_EQUAL(hnsw_search(h, x, K, 0, NULL, NULL, out, &no, &err), HNSW_OK);
    CU_ASSERT_EQUAL(no, 0);
    CU_ASSERT_EQUAL(hnsw_insert(h, 5, x, &err), HNSW_OK);
    CU_ASSERT_EQUAL(hnsw_search(h, x, K, 0, NULL, NULL, out, &no, &err), HNSW_OK);
    CU_ASSERT(no == 1 && out[0].label == 5);
    hnsw_destroy(h);
    free(x);
}

static void test_update_moves(void)
{
    size_t n = 1000, dim = 16;
    float *x = make_data(n, dim, 0, 5);
    hnsw *h = build(x, n, dim, DIST_L2, 8, 50);
    hnsw_error err;
    float far[16];
    for (size_t j = 0; j < dim; j++)
        far[j] = 10.0f;
    CU_ASSERT_EQUAL(hnsw_insert(h, 7, far, &err), HNSW_EEXIST);
    CU_ASSERT_EQUAL(hnsw_upsert(h, 7, far, &err), HNSW_OK);
    CU_ASSERT_EQUAL(hnsw_count(h), n);
    dist_hit out[K];
    size_t no;
    CU_ASSERT_EQUAL(hnsw_search(h, far, K, 0, NULL, NULL, out, &no, &err), HNSW_OK);
    CU_ASSERT(no == K && out[0].label == 7 && out[0].score == 0.0f);
    CU_ASSERT_EQUAL(hnsw_search(h, x + 7 * dim, K, 0, NULL, NULL, out, &no, &err), HNSW_OK);
    int old = 0;
    for (size_t j = 0; j < no; j++)
        old += out[j].label == 7;
    CU_ASSERT_EQUAL(old, 0);
    float v[16];
    CU_ASSERT_EQUAL(hnsw_get_vector(h, 7, v), HNSW_OK);
    CU_ASSERT_EQUAL(v[3], 10.0f);
    /* A bad vector leaves the old node in place. */
    far[2] = NAN;
    CU_ASSERT_EQUAL(hnsw_upsert(h, 7, far, &err), HNSW_EINVAL);
    CU_ASSERT_EQUAL(hnsw_contains(h, 7), 1);
    CU_ASSERT_EQUAL(hnsw_get_vector(h, 8888, v), HNSW_ENOENT);
    hnsw_destroy(h);
    free(x);
}

/* What a caller that keeps only the prepared copy inserts (store/coll_index.c's tail) is what
 * hnsw_insert stores for the raw vector: bit for bit, and so is the graph built from it. */
static void test_insert_prepared(void)
{
    size_t n = 500, dim = 24;
    float *x = make_data(n, dim, 1, 11), *prep = malloc(n * dim * sizeof *prep);
    memcpy(prep, x, n * dim * sizeof *prep);
    for (size_t i = 0; i < n; i++)
        CU_ASSERT_EQUAL(dist_prepare(DIST_COSINE, prep + i * dim, dim), 0);
    hnsw *a = build(x, n, dim, DIST_COSINE, 8, 40), *b;
    hnsw_params p;
    hnsw_params_default(&p, dim, DIST_COSINE);
    p.m = 8;
    p.ef_construction = 40;
    hnsw_error err;
    CU_ASSERT_FATAL(hnsw_create(&p, &b, &err) == HNSW_OK);
    int bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += hnsw_insert_prepared(b, (int64_t)i, prep + i * dim, &err) != HNSW_OK;
    CU_ASSERT_EQUAL(bad, 0);
    float va[24], vb[24];
    for (size_t i = 0; i < n; i++) {
        hnsw_get_vector(a, (int64_t)i, va);
        hnsw_get_vector(b, (int64_t)i, vb);
        bad += memcmp(va, vb, sizeof va) != 0;
    }
    CU_ASSERT_EQUAL(bad, 0);
    dist_hit ra[K], rb[K];
    size_t na, nb;
    for (size_t q = 0; q < 50; q++) {
        CU_ASSERT_EQUAL(hnsw_search(a, prep + q * 7 % n * dim, K, 32, NULL, NULL, ra, &na, &err), HNSW_OK);
        CU_ASSERT_EQUAL(hnsw_search(b, prep + q * 7 % n * dim, K, 32, NULL, NULL, rb, &nb, &err), HNSW_OK);
        bad += na != nb;
        for (size_t j = 0; j < na && j < nb; j++)
            bad += ra[j].label != rb[j].label || ra[j].score != rb[j].score;
    }
    CU_ASSERT_EQUAL(bad, 0);
    hnsw_destroy(a);
    hnsw_destroy(b);
    free(prep);
    free(x);
}

/* ---- Filters ---- */

static int one_in_100(int64_t label, void *ctx)
{
    (*(size_t *)ctx)++;
    return label % 100 == 0;
}

static void test_filters(void)
{
    size_t n = 5000, dim = 32, nq = 50;
    float *x = make_data(n + nq, dim, 1, 31), *qs = x + n * dim;
    hnsw *h = build(x, n, dim, DIST_DOT, 16, 100);
    CU_ASSERT(recall(h, qs, nq, K, 64, is_odd, NULL) >= 0.95);
    size_t calls = 0;
    CU_ASSERT(recall(h, qs, nq, K, 64, one_in_100, &calls) >= 0.95);
    CU_ASSERT(calls > 0);
    /* k larger than what passes: every passing node, no more. */
    dist_hit out[64];
    size_t no;
    hnsw_error err;
    calls = 0;
    CU_ASSERT_EQUAL(hnsw_search(h, qs, 64, 64, one_in_100, &calls, out, &no, &err), HNSW_OK);
    CU_ASSERT_EQUAL(no, 50);
    CU_ASSERT(calls <= n);
    hnsw_destroy(h);
    free(x);
}

/* ---- Edge cases ---- */

static void test_edges(void)
{
    hnsw_params p;
    hnsw *h;
    hnsw_error err;
    dist_hit out[K];
    size_t no;
    float v[4] = {1, 2, 3, 4}, zero[4] = {0};

    hnsw_params_default(&p, 4, DIST_COSINE);
    p.m = 1;
    CU_ASSERT_EQUAL(hnsw_create(&p, &h, &err), HNSW_EINVAL);
    p.m = 16, p.ef_construction = 0;
    CU_ASSERT_EQUAL(hnsw_create(&p, &h, &err), HNSW_EINVAL);
    p.ef_construction = HNSW_MAX_EF + 1;
    CU_ASSERT_EQUAL(hnsw_create(&p, &h, &err), HNSW_EINVAL);
    p.ef_construction = 200, p.dim = 0;
    CU_ASSERT_EQUAL(hnsw_create(&p, &h, &err), HNSW_EINVAL);
    p.dim = 4, p.metric = (dist_metric)7;
    CU_ASSERT_EQUAL(hnsw_create(&p, &h, &err), HNSW_EINVAL);
    p.metric = DIST_COSINE;

    /* Empty index. */
    CU_ASSERT_FATAL(hnsw_create(&p, &h, &err) == HNSW_OK);
    CU_ASSERT_EQUAL(hnsw_search(h, v, K, 0, NULL, NULL, out, &no, &err), HNSW_OK);
    CU_ASSERT_EQUAL(no, 0);
    CU_ASSERT_EQUAL(hnsw_search_exact(h, v, K, NULL, NULL, out, &no, &err), HNSW_OK);
    CU_ASSERT_EQUAL(no, 0);
    CU_ASSERT_EQUAL(hnsw_delete(h, 1, &err), HNSW_ENOENT);
    /* Bad vectors and arguments. */
    CU_ASSERT_EQUAL(hnsw_insert(h, 1, zero, &err), HNSW_EINVAL);
    CU_ASSERT_EQUAL(hnsw_search(h, zero, K, 0, NULL, NULL, out, &no, &err), HNSW_EINVAL);
    v[1] = INFINITY;
    CU_ASSERT_EQUAL(hnsw_insert(h, 1, v, &err), HNSW_EINVAL);
    v[1] = 2;
    CU_ASSERT_EQUAL(hnsw_search(h, v, HNSW_MAX_EF + 1, 0, NULL, NULL, out, &no, &err), HNSW_EINVAL);
    CU_ASSERT_EQUAL(hnsw_count(h), 0);
    /* k > n, k == 0. */
    for (int i = 0; i < 5; i++) {
        v[0] = (float)i;
        CU_ASSERT_EQUAL(hnsw_insert(h, 100 + i, v, &err), HNSW_OK);
    }
    CU_ASSERT_EQUAL(hnsw_search(h, v, K, 0, NULL, NULL, out, &no, &err), HNSW_OK);
    CU_ASSERT_EQUAL(no, 5);
    CU_ASSERT_EQUAL(out[0].label, 104);
    CU_ASSERT_DOUBLE_EQUAL(out[0].score, 1.0, 1e-6);
    CU_ASSERT_EQUAL(hnsw_search(h, v, 0, 0, NULL, NULL, out, &no, &err), HNSW_OK);
    CU_ASSERT_EQUAL(no, 0);
    CU_ASSERT(hnsw_memory_bytes(h) > 5 * 4 * sizeof(float));
    hnsw_destroy(h);
    hnsw_destroy(NULL);

    /* Dimension 1 under l2: the nearest points on a line. */
    hnsw_params_default(&p, 1, DIST_L2);
    CU_ASSERT_FATAL(hnsw_create(&p, &h, &err) == HNSW_OK);
    for (int i = 0; i < 300; i++) {
        float t = (float)((i * 37) % 300);
        CU_ASSERT_EQUAL(hnsw_insert(h, i, &t, &err), HNSW_OK);
    }
    float q = 150.2f;
    CU_ASSERT_EQUAL(hnsw_search(h, &q, 3, 0, NULL, NULL, out, &no, &err), HNSW_OK);
    float got[3] = {0};
    for (size_t j = 0; j < no; j++)
        hnsw_get_vector(h, out[j].label, &got[j]);
    CU_ASSERT(no == 3 && got[0] == 150 && got[1] == 151 && got[2] == 149);
    hnsw_destroy(h);

    /* ef_construction below m is accepted (inserts then use m candidates). */
    hnsw_params_default(&p, 1, DIST_L2);
    p.ef_construction = 1;
    CU_ASSERT_FATAL(hnsw_create(&p, &h, &err) == HNSW_OK);
    for (int i = 0; i < 300; i++) {
        float t = (float)i;
        CU_ASSERT_EQUAL(hnsw_insert(h, i, &t, &err), HNSW_OK);
    }
    CU_ASSERT_EQUAL(hnsw_search(h, &q, 3, 0, NULL, NULL, out, &no, &err), HNSW_OK);
    CU_ASSERT(no == 3 && out[0].label == 150 && out[1].label == 151 && out[2].label == 149);
    hnsw_destroy(h);
}

static int only_label(int64_t label, void *ctx) { return label == *(int64_t *)ctx; }

static void test_duplicates(void)
{
    size_t n = 1500, dim = 8;
    float *x = make_data(n, dim, 0, 77);
    for (size_t i = 0; i < 1000; i++) /* two thirds are one and the same point */
        memcpy(x + i * dim, x + 1000 * dim, dim * sizeof *x);
    hnsw *h = build(x, n, dim, DIST_L2, 8, 40);
    hnsw_error err;
    dist_hit out[K];
    size_t no;
    CU_ASSERT_EQUAL(hnsw_search(h, x, K, 0, NULL, NULL, out, &no, &err), HNSW_OK);
    CU_ASSERT(no == K && out[K - 1].score == 0.0f);
    CU_ASSERT(recall(h, x + 1001 * dim, 400, K, 64, NULL, NULL) >= 0.95);
    /* Each duplicate is still reachable: a filter for one label finds it. */
    int missing = 0;
    for (int64_t l = 0; l < 1000; l += 37) {
        CU_ASSERT_EQUAL(hnsw_search(h, x, 1, 16, only_label, &l, out, &no, &err), HNSW_OK);
        missing += no != 1 || out[0].label != l;
        if (no != 1 || out[0].label != l) fprintf(stderr, "dup %lld missing\n", (long long)l);
    }
    CU_ASSERT_EQUAL(missing, 0);
    for (int64_t l = 0; l < 1000; l += 2)
        hnsw_delete(h, l, &err);
    CU_ASSERT(recall(h, x + 1001 * dim, 400, K, 64, NULL, NULL) >= 0.95);
    hnsw_destroy(h);
    free(x);
}

/* ---- Persistence ---- */

/* A stand-in for the documents table: label -> record bytes. */
typedef struct {
    uint8_t **rec;
    size_t *len;
    size_t cap;
} db;

static void db_put(db *d, int64_t label, const uint8_t *rec, size_t len)
{
    free(d->rec[label]);
    d->rec[label] = NULL;
    d->len[label] = 0;
    if (rec) {
        d->rec[label] = malloc(len);
        memcpy(d->rec[label], rec, len);
        d->len[label] = len;
    }
}

static int db_apply(int64_t label, const uint8_t *rec, size_t len, void *ctx)
{
    db_put(ctx, label, rec, len);
    return 0;
}

static void db_init(db *d, size_t cap)
{
    d->rec = calloc(cap, sizeof *d->rec);
    d->len = calloc(cap, sizeof *d->len);
    d->cap = cap;
}

static void db_free(db *d)
{
    for (size_t i = 0; i < d->cap; i++)
        free(d->rec[i]);
    free(d->rec), free(d->len);
}

/* Full dump of every live label into d. */
static void dump_all(const hnsw *h, db *d)
{
    uint8_t buf[8192];
    size_t len;
    for (size_t l = 0; l < d->cap; l++)
        db_put(d, (int64_t)l, NULL, 0);
    for (size_t l = 0; l < d->cap; l++)
        if (hnsw_node_record(h, (int64_t)l, buf, sizeof buf, &len) == HNSW_OK)
            db_put(d, (int64_t)l, buf, len);
}

/* Loads from header + records, nodes in a shuffled order; vecs[label] are the originals. */
static int load(const uint8_t *hdr, const db *d, const float *vecs, size_t dim, hnsw **out, hnsw_error *err)
{
    size_t *order = malloc(d->cap * sizeof *order), n = 0;
    for (size_t l = 0; l < d->cap; l++)
        if (d->rec[l])
            order[n++] = l;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(urand() * (double)i), t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
    int rc = hnsw_load_begin(hdr, HNSW_HEADER_BYTES, out, err);
    for (size_t i = 0; i < n && rc == HNSW_OK; i++)
        rc = hnsw_load_add(*out, (int64_t)order[i], vecs + order[i] * dim, d->rec[order[i]], d->len[order[i]], err);
    if (rc == HNSW_OK)
        rc = hnsw_load_finish(*out, err);
    if (rc != HNSW_OK) {
        hnsw_destroy(*out);
        *out = NULL;
    }
    free(order);
    return rc;
}

/* Hits compared field by field (the struct has padding). */
static int same_hits(const dist_hit *a, const dist_hit *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i].label != b[i].label || a[i].score != b[i].score)
            return 0;
    return 1;
}

static int same_results(const hnsw *a, const hnsw *b, const float *qs, size_t nq, size_t dim)
{
    int diff = 0;
    for (size_t i = 0; i < nq; i++) {
        dist_hit x[K], y[K];
        size_t nx, ny;
        hnsw_search(a, qs + i * dim, K, 32, NULL, NULL, x, &nx, NULL);
        hnsw_search(b, qs + i * dim, K, 32, NULL, NULL, y, &ny, NULL);
        diff += nx != ny || !same_hits(x, y, nx);
    }
    return diff;
}

static int same_db(const db *a, const db *b)
{
    int diff = 0;
    for (size_t l = 0; l < a->cap; l++)
        diff += a->len[l] != b->len[l] || (a->len[l] && memcmp(a->rec[l], b->rec[l], a->len[l]) != 0);
    return diff;
}

static void test_save_load(void)
{
    size_t n = 2000, dim = 24;
    float *x = make_data(n + 200, dim, 1, 555);
    hnsw *h = build(x, n, dim, DIST_COSINE, 12, 60);
    db d;
    db_init(&d, n + 200);
    dump_all(h, &d);
    uint8_t hdr[HNSW_HEADER_BYTES];
    hnsw_header_record(h, hdr);
    hnsw *g;
    hnsw_error err;
    CU_ASSERT_FATAL(load(hdr, &d, x, dim, &g, &err) == HNSW_OK);
    CU_ASSERT_EQUAL(hnsw_count(g), n);
    CU_ASSERT_EQUAL(hnsw_dirty_count(g), 0);
    CU_ASSERT_EQUAL(same_results(h, g, x, 100, dim), 0);
    /* The generator state travels in the header: the same further inserts give the same graph. */
    for (size_t i = n; i < n + 200; i++) {
        hnsw_insert(h, (int64_t)i, x + i * dim, &err);
        hnsw_insert(g, (int64_t)i, x + i * dim, &err);
    }
    db d2;
    db_init(&d2, n + 200);
    dump_all(h, &d);
    dump_all(g, &d2);
    CU_ASSERT_EQUAL(same_db(&d, &d2), 0);
    uint8_t hdr2[HNSW_HEADER_BYTES];
    hnsw_header_record(h, hdr);
    hnsw_header_record(g, hdr2);
    CU_ASSERT_EQUAL(memcmp(hdr, hdr2, sizeof hdr), 0);
    /* An empty index round-trips too. */
    hnsw_params p;
    hnsw_params_default(&p, 3, DIST_L2);
    hnsw *e;
    hnsw_create(&p, &e, &err);
    hnsw_header_record(e, hdr);
    hnsw_destroy(e);
    db none;
    db_init(&none, 1);
    CU_ASSERT_EQUAL(load(hdr, &none, x, 3, &e, &err), HNSW_OK);
    CU_ASSERT_EQUAL(hnsw_count(e), 0);
    CU_ASSERT_EQUAL(hnsw_insert(e, 0, x, &err), HNSW_OK);
    hnsw_destroy(e);
    db_free(&none);
    db_free(&d), db_free(&d2);
    hnsw_destroy(h), hnsw_destroy(g);
    free(x);
}

/* Random batches of inserts, deletes and upserts; after each the dirty records are applied
 * to an incremental db, which must equal a full dump, and must load. */
static void test_dirty_tracking(void)
{
    size_t universe = 1500, dim = 16;
    float *x = make_data(universe * 2, dim, 0, 4242);
    hnsw_params p;
    hnsw_params_default(&p, dim, DIST_L2);
    p.m = 8, p.ef_construction = 40;
    hnsw *h;
    hnsw_error err;
    hnsw_create(&p, &h, &err);
    db inc, full;
    db_init(&inc, universe);
    db_init(&full, universe);
    float *current = malloc(universe * dim * sizeof *current);
    rng = 99;
    int mismatches = 0, loads_failed = 0;
    for (int batch = 0; batch < 12; batch++) {
        for (int op = 0; op < 150; op++) {
            int64_t l = (int64_t)(urand() * (double)universe);
            const float *v = x + (size_t)(urand() * (double)(universe * 2)) * dim;
            if (!hnsw_contains(h, l) || urand() < 0.3) {
                hnsw_upsert(h, l, v, &err);
                memcpy(current + (size_t)l * dim, v, dim * sizeof *v);
            } else {
                hnsw_delete(h, l, &err);
            }
        }
        CU_ASSERT(hnsw_dirty_count(h) > 0);
        CU_ASSERT_EQUAL(hnsw_dirty_foreach(h, db_apply, &inc), 0);
        hnsw_clear_dirty(h);
        CU_ASSERT_EQUAL(hnsw_dirty_count(h), 0);
        dump_all(h, &full);
        mismatches += same_db(&inc, &full);
        uint8_t hdr[HNSW_HEADER_BYTES];
        hnsw_header_record(h, hdr);
        hnsw *g;
        loads_failed += load(hdr, &inc, current, dim, &g, &err) != HNSW_OK;
        if (g)
            mismatches += same_results(h, g, x, 30, dim);
        hnsw_destroy(g);
    }
    CU_ASSERT_EQUAL(mismatches, 0);
    CU_ASSERT_EQUAL(loads_failed, 0);
    db_free(&inc), db_free(&full);
    free(current), free(x);
    hnsw_destroy(h);
}

/* Builds a small index and its records for the malformed-record tests. */
static hnsw *small_index(db *d, uint8_t hdr[HNSW_HEADER_BYTES], float **x)
{
    *x = make_data(200, 4, 0, 8);
    hnsw *h = build(*x, 200, 4, DIST_DOT, 4, 16);
    db_init(d, 200);
    dump_all(h, d);
    hnsw_header_record(h, hdr);
    return h;
}

static void test_malformed_records(void)
{
    db d;
    uint8_t hdr[HNSW_HEADER_BYTES], bad[HNSW_HEADER_BYTES];
    float *x;
    hnsw *h = small_index(&d, hdr, &x), *g = NULL;
    hnsw_error err;
    CU_ASSERT_EQUAL(load(hdr, &d, x, 4, &g, &err), HNSW_OK);
    hnsw_destroy(g);

    /* Headers: short, bad magic, version, metric, dimension, reserved bytes, level. */
    CU_ASSERT_EQUAL(hnsw_load_begin(hdr, HNSW_HEADER_BYTES - 1, &g, &err), HNSW_ECORRUPT);
    CU_ASSERT_PTR_NULL(g);
    static const struct {
        int at;
        uint8_t v;
    } hdr_faults[] = {{0, 'X'}, {4, 2}, {6, 3}, {8, 0}, {11, 0x80}, {12, 1}, {20, 1}, {60, 1}, {7, 31}};
    for (size_t i = 0; i < sizeof hdr_faults / sizeof hdr_faults[0]; i++) {
        memcpy(bad, hdr, sizeof bad);
        if (hdr_faults[i].at == 8)
            memset(bad + 8, 0, 4);
        else
            bad[hdr_faults[i].at] = hdr_faults[i].v;
        CU_ASSERT_EQUAL(hnsw_load_begin(bad, sizeof bad, &g, &err), HNSW_ECORRUPT);
        CU_ASSERT_PTR_NULL(g);
    }

    /* Records: every truncation of one, a wrong version, trailing bytes. */
    int64_t victim = 17;
    uint8_t *orig = d.rec[victim], rec[4096];
    size_t len = d.len[victim];
    int accepted = 0;
    for (size_t cut = 0; cut < len; cut++) {
        d.len[victim] = cut;
        accepted += load(hdr, &d, x, 4, &g, &err) != HNSW_ECORRUPT;
    }
    CU_ASSERT_EQUAL(accepted, 0);
    memcpy(rec, orig, len);
    d.rec[victim] = rec;
    d.len[victim] = len;
    rec[0] = 2;
    CU_ASSERT_EQUAL(load(hdr, &d, x, 4, &g, &err), HNSW_ECORRUPT);
    rec[0] = 1;
    d.len[victim] = len + 1;
    CU_ASSERT_EQUAL(load(hdr, &d, x, 4, &g, &err), HNSW_ECORRUPT);
    d.len[victim] = len;

    /* Links: to a label that does not exist, to itself, twice to the same node. */
    CU_ASSERT_FATAL(rec[2] >= 2);
    memcpy(rec + 4, "\x3f\x42\x0f\x00\x00\x00\x00\x00", 8); /* label 999999 */
    CU_ASSERT_EQUAL(load(hdr, &d, x, 4, &g, &err), HNSW_ECORRUPT);
    CU_ASSERT(strstr(err.msg, "999999") != NULL);
    memcpy(rec + 4, "\x11\0\0\0\0\0\0\0", 8); /* itself, 17 */
    CU_ASSERT_EQUAL(load(hdr, &d, x, 4, &g, &err), HNSW_ECORRUPT);
    memcpy(rec + 4, rec + 12, 8);
    CU_ASSERT_EQUAL(load(hdr, &d, x, 4, &g, &err), HNSW_ECORRUPT);
    memcpy(rec, orig, len);

    /* A node missing (count mismatch), and a vector that is NaN. */
    d.rec[victim] = NULL;
    CU_ASSERT_EQUAL(load(hdr, &d, x, 4, &g, &err), HNSW_ECORRUPT);
    d.rec[victim] = orig;
    float keep = x[victim * 4];
    x[victim * 4] = NAN;
    CU_ASSERT_EQUAL(load(hdr, &d, x, 4, &g, &err), HNSW_ECORRUPT);
    x[victim * 4] = keep;
    /* Adding or finishing outside a load is refused. */
    CU_ASSERT_EQUAL(hnsw_load_add(h, 1, x, orig, len, &err), HNSW_EINVAL);
    CU_ASSERT_EQUAL(hnsw_load_finish(h, &err), HNSW_EINVAL);

    /* Random corruption of random records: loads either succeed or fail cleanly (ASan and
     * UBSan watch), and a successful load searches. */
    rng = 2024;
    int ok = 0;
    for (int round = 0; round < 300; round++) {
        int64_t l = (int64_t)(urand() * 200);
        uint8_t *o = d.rec[l];
        memcpy(rec, o, d.len[l]);
        rec[(size_t)(urand() * (double)d.len[l])] ^= (uint8_t)(1u << (int)(urand() * 8));
        d.rec[l] = rec;
        if (load(hdr, &d, x, 4, &g, &err) == HNSW_OK) {
            dist_hit out[K];
            size_t no;
            ok += hnsw_search(g, x, K, 0, NULL, NULL, out, &no, &err) == HNSW_OK;
            hnsw_destroy(g);
        }
        d.rec[l] = o;
    }
    CU_ASSERT(ok < 300);
    db_free(&d);
    hnsw_destroy(h);
    free(x);
}

/* ---- Threads ---- */

typedef struct {
    const hnsw *h;
    const float *qs;
    size_t nq, dim;
    dist_hit *out; /* [nq, K] */
} search_job;

static void *run_searches(void *arg)
{
    search_job *j = arg;
    for (int rep = 0; rep < 3; rep++)
        for (size_t i = 0; i < j->nq; i++) {
            size_t no;
            hnsw_search(j->h, j->qs + i * j->dim, K, 40, NULL, NULL, j->out + i * K, &no, NULL);
        }
    return NULL;
}

static void test_concurrent_searches(void)
{
    size_t n = 2000, dim = 16, nq = 100;
    float *x = make_data(n, dim, 1, 61);
    hnsw *h = build(x, n, dim, DIST_COSINE, 8, 40);
    dist_hit *a = calloc(nq * K, sizeof *a), *b = calloc(nq * K, sizeof *b), *c = calloc(nq * K, sizeof *c);
    search_job ja = {h, x, nq, dim, a}, jb = {h, x, nq, dim, b}, jc = {h, x, nq, dim, c};
    run_searches(&jc);
    pthread_t ta, tb;
    pthread_create(&ta, NULL, run_searches, &ja);
    pthread_create(&tb, NULL, run_searches, &jb);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CU_ASSERT(same_hits(a, c, nq * K));
    CU_ASSERT(same_hits(b, c, nq * K));
    free(a), free(b), free(c);
    hnsw_destroy(h);
    free(x);
}

void cu_register(void)
{
    CU_pSuite s = CU_add_suite("hnsw", NULL, NULL);
    CU_add_test(s, "recall@10 >= 0.95, uniform and clustered, every metric", test_recall);
    CU_add_test(s, "delete half: never returned, graph still navigable", test_delete_half);
    CU_add_test(s, "update moves a vector", test_update_moves);
    CU_add_test(s, "insert_prepared stores what insert stores, bit for bit", test_insert_prepared);
    CU_add_test(s, "filters fill top_k, down to 1% selective", test_filters);
    CU_add_test(s, "empty index, k > n, dim 1, bad input", test_edges);
    CU_add_test(s, "many identical vectors", test_duplicates);
    CU_add_test(s, "save, load, same results and same future", test_save_load);
    CU_add_test(s, "dirty records equal a full dump", test_dirty_tracking);
    CU_add_test(s, "malformed records rejected", test_malformed_records);
    CU_add_test(s, "concurrent searches", test_concurrent_searches);
}
