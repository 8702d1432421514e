/* test_distance.c — the distance kernels (dispatched and scalar) against double-precision
 * references over every dimension 1..1031 and unaligned pointers; vector preparation; exact
 * top-k against a sort of all scores, with holes, labels and a filter. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cu.h"
#include "distance.h"

static unsigned long long rng = 0x9E3779B97F4A7C15ull;

static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static void fill(float *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = frand();
}

/* Float32 accumulation of n products of magnitude ≤ 1: relative error well under 1e-5·√n
 * against the exact sum of magnitudes. */
static int close_to(double got, double want, double mag, size_t n)
{
    return fabs(got - want) <= 1e-6 * (double)n * (mag + 1e-30) + 1e-6;
}

static void test_kernels_all_dims(void)
{
    enum { MAXN = 1031 };
    /* Over-allocate so a and b can start at every offset 0..7 (unaligned floats). */
    float *abuf = malloc((MAXN + 8) * sizeof(float)), *bbuf = malloc((MAXN + 8) * sizeof(float));
    fill(abuf, MAXN + 8);
    fill(bbuf, MAXN + 8);
    int bad = 0;
    for (size_t n = 1; n <= MAXN; n++) {
        const float *a = abuf + n % 8, *b = bbuf + (n * 3) % 8;
        double mag = 0, mag2 = 0;
        for (size_t i = 0; i < n; i++) {
            mag += fabs((double)a[i] * b[i]);
            mag2 += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        }
        double rd = dist_ref_dot(a, b, n), rl = dist_ref_l2sq(a, b, n);
        bad += !close_to(dist_dot(a, b, n), rd, mag, n);
        bad += !close_to(dist_dot_scalar(a, b, n), rd, mag, n);
        bad += !close_to(dist_l2sq(a, b, n), rl, mag2, n);
        bad += !close_to(dist_l2sq_scalar(a, b, n), rl, mag2, n);
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(dist_dot(abuf, bbuf, 0), 0.0f);
    CU_ASSERT_EQUAL(dist_l2sq(abuf, bbuf, 0), 0.0f);
    CU_ASSERT(strcmp(dist_isa(), "avx2+fma") == 0 || strcmp(dist_isa(), "scalar") == 0);
    free(abuf), free(bbuf);
}

static void test_scores_and_names(void)
{
    float a[3] = {1, 2, 2}, b[3] = {1, 0, 0};
    CU_ASSERT_DOUBLE_EQUAL(dist_score(DIST_DOT, a, b, 3), 1.0, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(dist_score(DIST_L2, a, b, 3), -sqrt(8.0), 1e-6);
    CU_ASSERT_EQUAL(dist_prepare(DIST_COSINE, a, 3), 0);
    CU_ASSERT_DOUBLE_EQUAL(a[0], 1.0 / 3, 1e-7);
    CU_ASSERT_DOUBLE_EQUAL(dist_score(DIST_COSINE, a, b, 3), 1.0 / 3, 1e-6);

    dist_metric m;
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL(dist_metric_parse(dist_metric_name((dist_metric)i), &m), 0);
        CU_ASSERT_EQUAL(m, (dist_metric)i);
    }
    CU_ASSERT_EQUAL(dist_metric_parse("Cosine", &m), -1);
    CU_ASSERT_EQUAL(dist_metric_parse("", &m), -1);
    CU_ASSERT_EQUAL(dist_metric_parse(NULL, &m), -1);
}

static void test_prepare_rejects(void)
{
    float z[4] = {0, 0, 0, 0};
    CU_ASSERT_EQUAL(dist_prepare(DIST_COSINE, z, 4), -1);
    CU_ASSERT_EQUAL(dist_prepare(DIST_DOT, z, 4), 0); /* zero is a valid vector for dot and l2 */
    CU_ASSERT_EQUAL(dist_prepare(DIST_L2, z, 4), 0);
    for (int m = 0; m < 3; m++) {
        float v[3] = {1, NAN, 0}, w[3] = {1, -INFINITY, 0};
        CU_ASSERT_EQUAL(dist_prepare((dist_metric)m, v, 3), -1);
        CU_ASSERT_EQUAL(dist_prepare((dist_metric)m, w, 3), -1);
        CU_ASSERT_EQUAL(w[0], 1.0f); /* unchanged on failure */
    }
    /* The float32 sum of squares overflows; the double one does not: still normalized. */
    float big[2] = {3e38f, 3e38f};
    CU_ASSERT_EQUAL(dist_prepare(DIST_COSINE, big, 2), 0);
    CU_ASSERT_DOUBLE_EQUAL(big[0], sqrt(0.5), 1e-6);
    float tiny[2] = {1e-45f, 0}; /* a denormal: norm > 0, normalizes to (1, 0) */
    CU_ASSERT_EQUAL(dist_prepare(DIST_COSINE, tiny, 2), 0);
    CU_ASSERT_DOUBLE_EQUAL(tiny[0], 1.0, 1e-6);
}

typedef struct {
    int64_t label;
    double score;
} ref_hit;

static int ref_cmp(const void *x, const void *y)
{
    const ref_hit *a = x, *b = y;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    return (a->label > b->label) - (a->label < b->label);
}

static int accept_odd(int64_t label, void *ctx)
{
    (*(int *)ctx)++;
    return (label & 1) != 0;
}

/* Every metric, with and without labels, holes and a filter, over n crossing the sgemv
 * block size; compared with a sort of float scores computed the same way. */
static void test_exact_topk(void)
{
    static const size_t ns[] = {1, 7, 1024, 2500};
    static const size_t dims[] = {1, 5, 64};
    for (size_t ni = 0; ni < 4; ni++)
        for (size_t di = 0; di < 3; di++)
            for (int m = 0; m < 3; m++) {
                size_t n = ns[ni], dim = dims[di], k = 10;
                float *mat = malloc(n * dim * sizeof *mat), q[64];
                int64_t *labels = malloc(n * sizeof *labels);
                unsigned char *live = malloc(n);
                ref_hit *ref = malloc(n * sizeof *ref);
                fill(mat, n * dim);
                fill(q, dim);
                for (size_t i = 0; i < n; i++) {
                    labels[i] = 1000 + (int64_t)(i * 7 % n);
                    live[i] = i % 5 != 3;
                    if (m == DIST_COSINE)
                        dist_prepare(DIST_COSINE, mat + i * dim, dim);
                }
                if (m == DIST_COSINE)
                    dist_prepare(DIST_COSINE, q, dim);
                for (int variant = 0; variant < 2; variant++) {
                    size_t nref = 0;
                    for (size_t i = 0; i < n; i++) {
                        if (variant == 1 && (!live[i] || !(labels[i] & 1)))
                            continue;
                        ref[nref].label = variant ? labels[i] : (int64_t)i;
                        ref[nref].score = m == DIST_L2 ? -sqrt(dist_ref_l2sq(mat + i * dim, q, dim))
                                                       : dist_ref_dot(mat + i * dim, q, dim);
                        nref++;
                    }
                    qsort(ref, nref, sizeof *ref, ref_cmp);
                    dist_hit out[10];
                    int calls = 0;
                    size_t got = variant ? dist_exact_topk((dist_metric)m, mat, labels, live, n, dim, q, k,
                                                           accept_odd, &calls, out)
                                         : dist_exact_topk((dist_metric)m, mat, NULL, NULL, n, dim, q, k, NULL,
                                                           NULL, out);
                    CU_ASSERT_EQUAL(got, nref < k ? nref : k);
                    int bad = 0;
                    for (size_t i = 0; i < got; i++) {
                        /* Near-ties may swap between float and double: compare scores, and
                         * the label only where the gap to the neighbours is clear. */
                        bad += fabs(out[i].score - ref[i].score) > 1e-4;
                        int clear = (i == 0 || ref[i - 1].score - ref[i].score > 1e-4) &&
                                    (i + 1 >= nref || ref[i].score - ref[i + 1].score > 1e-4);
                        bad += clear && out[i].label != ref[i].label;
                        bad += i > 0 && out[i].score > out[i - 1].score;
                    }
                    CU_ASSERT_EQUAL(bad, 0);
                    if (variant == 1)
                        CU_ASSERT(calls <= (int)n);
                }
                free(mat), free(labels), free(live), free(ref);
            }
    dist_hit out[1];
    float row[2] = {1, 0};
    CU_ASSERT_EQUAL(dist_exact_topk(DIST_DOT, row, NULL, NULL, 1, 2, row, 0, NULL, NULL, out), 0);
    CU_ASSERT_EQUAL(dist_exact_topk(DIST_DOT, row, NULL, NULL, 0, 2, row, 1, NULL, NULL, out), 0);
}

void cu_register(void)
{
    CU_pSuite s = CU_add_suite("distance", NULL, NULL);
    CU_add_test(s, "dot and l2sq, dims 1..1031, unaligned", test_kernels_all_dims);
    CU_add_test(s, "scores and metric names", test_scores_and_names);
    CU_add_test(s, "prepare rejects NaN, Inf, zero under cosine", test_prepare_rejects);
    CU_add_test(s, "exact top-k with labels, holes and a filter", test_exact_topk);
}
