/* encoder_bench.c — ragd's BERT encoder on a checkpoint of the real MiniLM-L6 shape
 * (random weights: speed does not depend on their values). Prints JSON lines:
 *   embed: sentences/s at batch 32 for 16, 64 and 128 tokens; latency of one 16-token text
 *   rerank: pairs/s at batch 32 and 128 tokens
 *   peak RSS.
 * Median of RUNS runs each. The same token ids are used by bench/encoder_peer.py.
 *   usage: encoder_bench EMBEDDER_DIR RERANKER_DIR THREADS */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench.h"

#include "encoder.h"
#include "kernels.h"

#include <cblas.h>




/* n sequences of T tokens: [CLS] ids... [SEP], ids from a fixed LCG (as the peer does). */
static tok_encoding *make(size_t n, size_t T, int pair)
{
    tok_encoding *e = calloc(n, sizeof *e);
    unsigned long long x = 12345;
    for (size_t i = 0; i < n; i++) {
        e[i].len = e[i].cap = T;
        e[i].ids = malloc(T * sizeof(int32_t));
        e[i].type_ids = calloc(T, sizeof(int32_t));
        for (size_t t = 0; t < T; t++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            e[i].ids[t] = t == 0 ? 101 : t == T - 1 ? 102 : (int32_t)(1000 + (x >> 33) % 29000);
            e[i].type_ids[t] = pair && t >= T / 2;
        }
    }
    return e;
}

static double median_seconds(enc_model *m, tok_encoding *e, size_t n, int score, float *out)
{
    double runs[RUNS];
    mdl_error err;
    for (int r = 0; r < RUNS; r++) {
        double t0 = now();
        int rc = score ? enc_score(m, e, n, out, &err) : enc_embed(m, e, n, 1, out, &err);
        runs[r] = now() - t0;
        if (rc) {
            fprintf(stderr, "encoder_bench: %s\n", err.msg);
            exit(1);
        }
    }
    return median(runs, RUNS);
}

/* FLOPs of one forward pass over a sequence of T tokens (matrix products only). */
static double flops(const bert_config *c, size_t T)
{
    double h = (double)c->hidden, inner = (double)c->intermediate, t = (double)T; /* cblas.h defines I */
    return (double)c->layers * (2 * t * h * 3 * h + 2 * t * h * h + 2 * 2 * t * h * inner + 2 * 2 * t * t * h);
}

/* The machine's sgemm rate on the batched case's biggest product, [4096 x 384] x [384 x 1536],
 * with OpenBLAS's own threading on `threads` threads. */
static double sgemm_gflops(int threads)
{
    openblas_set_num_threads(threads);
    int M = 4096, N = 1536, K = 384;
    float *a = calloc((size_t)M * K, 4), *b = calloc((size_t)K * N, 4), *c = calloc((size_t)M * N, 4);
    double runs[RUNS];
    for (int r = 0; r < RUNS; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
        runs[r] = now() - t0;
    }
    free(a), free(b), free(c);
    k_set_threads(threads); /* OpenBLAS back to one thread, ours in charge */
    return 2.0 * M * N * K / median(runs, RUNS) / 1e9;
}

static enc_model *load(const char *dir, int cross, tok_tokenizer **tok)
{
    tok_error te;
    mdl_error me;
    enc_model *m;
    if (tok_load_dir(dir, tok, &te) != 0 || enc_load(dir, cross, *tok, &m, &me) != 0) {
        fprintf(stderr, "encoder_bench: cannot load %s\n", dir);
        exit(1);
    }
    return m;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: encoder_bench EMBEDDER_DIR RERANKER_DIR THREADS\n");
        return 2;
    }
    int threads = (int)strtol(argv[3], NULL, 10);
    double peak = sgemm_gflops(threads);
    tok_tokenizer *tok, *rtok;
    enc_model *emb = load(argv[1], 0, &tok), *rer = load(argv[2], 1, &rtok);
    float *out = malloc(32 * 384 * sizeof(float));
    static const size_t lens[] = {16, 64, 128};
    for (size_t k = 0; k < 3; k++) {
        tok_encoding *e = make(32, lens[k], 0);
        double s = median_seconds(emb, e, 32, 0, out);
        printf("{\"impl\":\"ragd\",\"threads\":%d,\"what\":\"embed_b32_t%zu\",\"per_s\":%.1f}\n", threads, lens[k], 32 / s);
        if (lens[k] == 128)
            printf("{\"impl\":\"ragd\",\"threads\":%d,\"what\":\"sgemm_fraction_b32_t128\",\"model_gflops\":%.1f,"
                   "\"sgemm_gflops\":%.1f,\"fraction\":%.2f}\n",
                   threads, 32 * flops(enc_bert_config(emb), 128) / s / 1e9, peak,
                   32 * flops(enc_bert_config(emb), 128) / s / 1e9 / peak);
    }
    tok_encoding *one = make(1, 16, 0);
    printf("{\"impl\":\"ragd\",\"threads\":%d,\"what\":\"latency_1x16_ms\",\"ms\":%.3f}\n", threads,
           median_seconds(emb, one, 1, 0, out) * 1e3);
    tok_encoding *pairs = make(32, 128, 1);
    printf("{\"impl\":\"ragd\",\"threads\":%d,\"what\":\"rerank_b32_t128\",\"per_s\":%.1f}\n", threads,
           32 / median_seconds(rer, pairs, 32, 1, out));
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"impl\":\"ragd\",\"threads\":%d,\"what\":\"peak_rss_mb\",\"mb\":%.1f}\n", threads, ru.ru_maxrss / 1024.0);
    return 0;
}
