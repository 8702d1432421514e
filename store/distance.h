/*
 * distance.h — float32 vector similarity: the kernels under the HNSW index and exact search.
 *
 * Three metrics, each turned into a SCORE where higher is better:
 *   DIST_COSINE  cosine similarity, in [-1, 1]. Vectors are normalized once (dist_normalize),
 *                at insert and on the query, so the score is their dot product.
 *   DIST_DOT     the dot product, unbounded.
 *   DIST_L2      the negative Euclidean distance, -||a - b||₂ (not squared), so ≤ 0.
 *
 * dist_dot and dist_l2sq are compiled for AVX2+FMA and for the baseline; one is picked for
 * the CPU at start-up (x86-64 with GCC or clang; elsewhere the baseline only). The
 * *_scalar versions are the portable baseline, exported so tests compare both with a
 * double-precision reference. Pointers need no alignment. Nothing here allocates (except
 * where stated), keeps state or fails; everything is thread-safe.
 */
#ifndef RAGD_DISTANCE_H
#define RAGD_DISTANCE_H

#include <stddef.h>
#include <stdint.h>

typedef enum { DIST_COSINE = 0, DIST_DOT = 1, DIST_L2 = 2 } dist_metric;

/* One search result: the caller's label (for ragd, the document rowid) and its score. */
typedef struct {
    int64_t label;
    float score;
} dist_hit;

/* "cosine", "dot", "l2"; dist_metric_parse returns 0 and sets *out, or -1 for any other
 * string (case-sensitive). */
const char *dist_metric_name(dist_metric m);
int dist_metric_parse(const char *name, dist_metric *out);

/* Σ a[i]·b[i] and Σ (a[i]-b[i])², accumulated in float32 (several partial sums). */
float dist_dot(const float *a, const float *b, size_t n);
float dist_l2sq(const float *a, const float *b, size_t n);
float dist_dot_scalar(const float *a, const float *b, size_t n);
float dist_l2sq_scalar(const float *a, const float *b, size_t n);

/* Which kernels the loader picked: "avx2+fma" or "scalar". */
const char *dist_isa(void);

/* The score of a against b under metric m, as defined above. For DIST_COSINE both must
 * already be normalized. */
float dist_score(dist_metric m, const float *a, const float *b, size_t n);

/* Checks every element of v[0..n) is finite and, for DIST_COSINE,
 * scales it in place to unit length. Returns 0, or -1 without changing v when an element is
 * NaN/±Inf, or when the metric is cosine and the vector is all zeros. The norm is computed
 * in double, so finite vectors whose float32 sum of squares would overflow still normalize. */
int dist_prepare(dist_metric m, float *v, size_t n);

/* Exact top-k by brute force over the rows of a dense matrix.
 *   mat:    [n, dim] row-major; row i has label labels[i] (labels == NULL: label i);
 *   query:  [dim], already prepared (dist_prepare) for the metric;
 *   live:   NULL, or [n] bytes: rows with live[i] == 0 are skipped (holes in a matrix);
 *   accept: NULL, or a filter called at most once per live row (not for rows that cannot
 *           enter the top k anyway); rows where it returns 0 are skipped;
 *   out:    [k] hits, best first, ties broken by smaller label.
 * Dot products of blocks of rows go through OpenBLAS sgemv (blocks of a fixed size on the
 * stack, so nothing is allocated); L2 goes through dist_l2sq. Returns the number of hits
 * written, min(k, rows that pass). Thread-safe as long as nobody writes mat meanwhile. */
size_t dist_exact_topk(dist_metric m, const float *mat, const int64_t *labels, const unsigned char *live,
                       size_t n, size_t dim, const float *query, size_t k,
                       int (*accept)(int64_t label, void *ctx), void *ctx, dist_hit *out);

/* Naive double-precision references, for tests. */
double dist_ref_dot(const float *a, const float *b, size_t n);
double dist_ref_l2sq(const float *a, const float *b, size_t n);

#endif
