/* test_kernels.c — every fast kernel against its naive reference on random data, over
 * shapes that cover single rows (the sgemv path), odd sizes and masks. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cu.h"
#include "kernels.h"

static unsigned long long rng = 88172645463325252ull;

static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static float *rnd(size_t n)
{
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = frand();
    return p;
}

static float max_diff(const float *a, const float *b, size_t n)
{
    float m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmaxf(m, fabsf(a[i] - b[i]));
    return m;
}

static const size_t shapes[][3] = {{1, 7, 5}, {1, 384, 384}, {3, 5, 7}, {17, 33, 65}, {64, 96, 128}};

static void test_matmuls(void)
{
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *x = rnd(M * K), *w = rnd(N * K), *b = rnd(N), *y = rnd(M * N), *r = rnd(M * N);
        for (int bias = 0; bias < 2; bias++) {
            k_linear(x, w, bias ? b : NULL, y, M, N, K);
            kref_linear(x, w, bias ? b : NULL, r, M, N, K);
            CU_ASSERT(max_diff(y, r, M * N) < 1e-4f);
            k_conv1d(x, w, bias ? b : NULL, y, M, N, K);
            kref_conv1d(x, w, bias ? b : NULL, r, M, N, K);
            CU_ASSERT(max_diff(y, r, M * N) < 1e-4f);
        }
        free(x), free(w), free(b), free(y), free(r);
    }
}

static void test_layernorm(void)
{
    size_t rows = 5, H = 384;
    float *x = rnd(rows * H), *g = rnd(H), *b = rnd(H), *y = rnd(rows * H), *r = rnd(rows * H);
    for (size_t i = 0; i < H; i++)
        x[i] = 1000.0f + x[i]; /* a large mean must not cost precision */
    kref_layernorm(x, g, b, r, rows, H, 1e-12f);
    k_layernorm(x, g, b, y, rows, H, 1e-12f);
    CU_ASSERT(max_diff(y, r, rows * H) < 1e-3f);
    k_layernorm(x, g, b, x, rows, H, 1e-12f); /* in place */
    CU_ASSERT(max_diff(x, r, rows * H) < 1e-3f);
    free(x), free(g), free(b), free(y), free(r);
}

static void test_gelu(void)
{
    static const float in[] = {-3.0f, -1.0f, -0.5f, 0.0f, 0.5f, 1.0f, 3.0f};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
        float a = in[i], t = in[i];
        k_gelu_erf(&a, 1);
        k_gelu_tanh(&t, 1);
        double x = in[i];
        CU_ASSERT(fabs(a - 0.5 * x * (1 + erf(x / sqrt(2.0)))) < 1e-6);
        CU_ASSERT(fabs(t - 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)))) < 1e-6);
    }
}

static void test_softmax(void)
{
    float x[2][4] = {{1, 2, 3, 1000}, {-5, -5, -5, -5}};
    unsigned char keep[4] = {1, 1, 1, 0};
    k_softmax_rows(&x[0][0], keep, 2, 4);
    double z = exp(-2) + exp(-1) + 1;
    CU_ASSERT(fabs(x[0][2] - 1 / z) < 1e-6 && x[0][3] == 0.0f);
    CU_ASSERT(fabs(x[1][0] - 1.0 / 3) < 1e-6);
    unsigned char none[4] = {0};
    float y[4] = {1, 2, 3, 4};
    k_softmax_rows(y, none, 1, 4);
    CU_ASSERT(y[0] == 0 && y[3] == 0);
}

static void test_attention(void)
{
    static const size_t cfg[][3] = {{1, 2, 4}, {7, 3, 8}, {33, 12, 32}, {16, 12, 64}};
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        size_t T = cfg[c][0], heads = cfg[c][1], D = cfg[c][2], H = heads * D, ld = 3 * H;
        float *qkv = rnd(T * ld), *o = rnd(T * H), *r = rnd(T * H), *scratch = rnd(T * T);
        unsigned char *keep = malloc(T);
        for (size_t j = 0; j < T; j++)
            keep[j] = j + 2 < T || j == 0; /* the last keys are padding */
        for (int causal = 0; causal < 2; causal++)
            for (int masked = 0; masked < 2; masked++) {
                const unsigned char *m = masked ? keep : NULL;
                k_attention(qkv, qkv + H, qkv + 2 * H, ld, m, causal, T, heads, D, o, scratch);
                kref_attention(qkv, qkv + H, qkv + 2 * H, ld, m, causal, T, heads, D, r);
                float d = max_diff(o, r, T * H);
                if (d >= 1e-5f)
                    fprintf(stderr, "attention T=%zu heads=%zu D=%zu causal=%d masked=%d: %g\n", T, heads, D,
                            causal, masked, d);
                CU_ASSERT(d < 1e-5f);
            }
        free(qkv), free(o), free(r), free(scratch), free(keep);
    }
}

/* Prefill then token-by-token decode over a cache equals full causal attention. */
static void test_attention_cached(void)
{
    size_t T = 9, heads = 3, D = 8, H = heads * D, ld = 3 * H;
    float *qkv = rnd(T * ld), *full = rnd(T * H), *step = rnd(T * H), *scratch = rnd(T * T);
    float *kc = rnd(T * H), *vc = rnd(T * H);
    kref_attention(qkv, qkv + H, qkv + 2 * H, ld, NULL, 1, T, heads, D, full);
    for (size_t t = 0; t < T; t++) {
        memcpy(kc + t * H, qkv + t * ld + H, H * sizeof(float));
        memcpy(vc + t * H, qkv + t * ld + 2 * H, H * sizeof(float));
    }
    size_t prefill = 4;
    k_attention_cached(qkv, ld, kc, vc, H, prefill, prefill, heads, D, step, scratch);
    for (size_t t = prefill; t < T; t++)
        k_attention_cached(qkv + t * ld, ld, kc, vc, H, 1, t + 1, heads, D, step + t * H, scratch);
    CU_ASSERT(max_diff(full, step, T * H) < 1e-5f);
    free(qkv), free(full), free(step), free(scratch), free(kc), free(vc);
}

void cu_register(void)
{
    CU_pSuite s = CU_add_suite("kernels", NULL, NULL);
    CU_add_test(s, "linear and conv1d", test_matmuls);
    CU_add_test(s, "layernorm", test_layernorm);
    CU_add_test(s, "gelu", test_gelu);
    CU_add_test(s, "softmax", test_softmax);
    CU_add_test(s, "attention", test_attention);
    CU_add_test(s, "attention over a KV cache", test_attention_cached);
}
