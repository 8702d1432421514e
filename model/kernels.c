#include "kernels.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Elementwise kernels are compiled twice, for x86-64-v3 (AVX2, FMA) and for the baseline,
 * and the loader picks one for the CPU it runs on (GCC function multiversioning; clang 14's
 * support is incomplete, so clang builds get the baseline only). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define KERNEL __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define KERNEL
#endif

void k_set_threads(int n) { openblas_set_num_threads(n); }

/* OpenBLAS runs a one-row sgemm as a full GEMM, 2-3x slower than sgemv on wide outputs
 * (BENCHMARKING.md), so single rows go through sgemv. */
static void add_bias(float *y, const float *b, size_t M, size_t N)
{
    if (!b)
        return;
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j < N; j++)
            y[i * N + j] += b[j];
}

void k_linear(const float *x, const float *w, const float *b, float *y, size_t M, size_t N, size_t K)
{
    if (M == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)N, (int)K, 1.0f, w, (int)K, x, 1, 0.0f, y, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K, 1.0f, x, (int)K, w,
                    (int)K, 0.0f, y, (int)N);
    add_bias(y, b, M, N);
}

void k_conv1d(const float *x, const float *w, const float *b, float *y, size_t M, size_t N, size_t K)
{
    if (M == 1)
        cblas_sgemv(CblasRowMajor, CblasTrans, (int)K, (int)N, 1.0f, w, (int)N, x, 1, 0.0f, y, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)N, (int)K, 1.0f, x, (int)K, w,
                    (int)N, 0.0f, y, (int)N);
    add_bias(y, b, M, N);
}

KERNEL void k_layernorm(const float *x, const float *g, const float *b, float *y, size_t rows, size_t H, float eps)
{
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * H;
        float *yr = y + r * H;
        float mean = 0.0f, var = 0.0f;
        for (size_t i = 0; i < H; i++)
            mean += xr[i];
        mean /= (float)H;
        for (size_t i = 0; i < H; i++) {
            float d = xr[i] - mean;
            var += d * d;
        }
        var /= (float)H;
        float inv = 1.0f / sqrtf(var + eps);
        for (size_t i = 0; i < H; i++)
            yr[i] = (xr[i] - mean) * inv * g[i] + b[i];
    }
}

/* exp(x) in float, written without calls or branches so loops around it vectorize:
 * x = n·ln2 + r with |r| ≤ ln2/2 (Cody-Waite), e^r by a degree-6 polynomial, 2^n through the
 * exponent bits. Relative error under 2e-7 for x in [-87, 88]; inputs are clamped there. */
static inline float exp_approx(float x)
{
    x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x; /* not fminf: that is a call, this vectorizes */
    float t = x * 1.44269504f + 12582912.0f; /* round to nearest via the 1.5·2^23 trick */
    float n = t - 12582912.0f;
    float r = x - n * 0.693145752f;
    r = r - n * 1.42860677e-6f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (0.166666672f + r * (0.0416664891f + r * (0.00833336357f +
                                                                                      r * 0.00138925831f)))));
    union { float f; uint32_t u; } tb = {t}, pb = {p};
    pb.u += (tb.u - 0x4B400000u) << 23; /* the integer n, added into the exponent field */
    return pb.f;
}

/* erf by Abramowitz and Stegun 7.1.26 (absolute error under 1.5e-7), branch-free. */
static inline float erf_approx(float x)
{
    float a = fabsf(x);
    float t = 1.0f / (1.0f + 0.3275911f * a);
    float y = 1.0f - t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f +
                                                                                      t * 1.061405429f)))) *
                         exp_approx(-a * a);
    return copysignf(y, x);
}

KERNEL void k_gelu_erf(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = 0.5f * x[i] * (1.0f + erf_approx(x[i] * (float)M_SQRT1_2));
}

KERNEL void k_gelu_tanh(float *x, size_t n)
{
    const float c = 0.7978845608028654f; /* sqrt(2/pi) */
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        float y = c * (v + 0.044715f * v * v * v);
        y = y < -10.0f ? -10.0f : y > 10.0f ? 10.0f : y; /* tanh is ±1 beyond */
        float th = 1.0f - 2.0f / (exp_approx(2.0f * y) + 1.0f);
        x[i] = 0.5f * v * (1.0f + th);
    }
}

KERNEL void k_add(float *y, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] += x[i];
}

KERNEL void k_softmax_rows(float *x, const unsigned char *keep, size_t rows, size_t n)
{
    for (size_t r = 0; r < rows; r++) {
        float *xr = x + r * n;
        float max = -INFINITY;
        for (size_t j = 0; j < n; j++)
            if ((!keep || keep[j]) && xr[j] > max)
                max = xr[j];
        if (max == -INFINITY) {
            memset(xr, 0, n * sizeof *xr);
            continue;
        }
        float sum = 0.0f;
        for (size_t j = 0; j < n; j++) {
            float e = (!keep || keep[j]) ? exp_approx(xr[j] - max) : 0.0f;
            xr[j] = e;
            sum += e;
        }
        float inv = 1.0f / sum;
        for (size_t j = 0; j < n; j++)
            xr[j] *= inv;
    }
}

void k_attention(const float *q, const float *k, const float *v, size_t ld, const unsigned char *keep,
                 int causal, size_t T, size_t heads, size_t D, float *out, float *scratch)
{
    const float scale = 1.0f / sqrtf((float)D);
    const size_t H = heads * D;
    for (size_t h = 0; h < heads; h++) {
        /* scores[T,T] = q_h · k_hᵀ * scale */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)T, (int)D, scale, q + h * D, (int)ld,
                    k + h * D, (int)ld, 0.0f, scratch, (int)T);
        for (size_t i = 0; i < T; i++) {
            /* Causal rows only see keys 0..i: softmax over the prefix, zero the rest. */
            size_t n = causal ? i + 1 : T;
            k_softmax_rows(scratch + i * T, keep, 1, n);
            if (n < T)
                memset(scratch + i * T + n, 0, (T - n) * sizeof(float));
        }
        /* out_h[T,D] = P[T,T] · v_h[T,D] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)D, (int)T, 1.0f, scratch, (int)T,
                    v + h * D, (int)ld, 0.0f, out + h * D, (int)H);
    }
}

void k_attention_cached(const float *q, size_t ldq, const float *k, const float *v, size_t ldkv, size_t Tq,
                        size_t Tk, size_t heads, size_t D, float *out, float *scratch)
{
    const float scale = 1.0f / sqrtf((float)D);
    const size_t H = heads * D, past = Tk - Tq;
    for (size_t h = 0; h < heads; h++) {
        if (Tq == 1) /* decode step: a matrix-vector product, not a one-row GEMM */
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)Tk, (int)D, scale, k + h * D, (int)ldkv, q + h * D, 1,
                        0.0f, scratch, 1);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)Tq, (int)Tk, (int)D, scale, q + h * D,
                        (int)ldq, k + h * D, (int)ldkv, 0.0f, scratch, (int)Tk);
        for (size_t i = 0; i < Tq; i++) {
            size_t n = past + i + 1;
            k_softmax_rows(scratch + i * Tk, NULL, 1, n);
            if (n < Tk)
                memset(scratch + i * Tk + n, 0, (Tk - n) * sizeof(float));
        }
        if (Tq == 1)
            cblas_sgemv(CblasRowMajor, CblasTrans, (int)Tk, (int)D, 1.0f, v + h * D, (int)ldkv, scratch, 1, 0.0f,
                        out + h * D, 1);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)Tq, (int)D, (int)Tk, 1.0f, scratch, (int)Tk,
                        v + h * D, (int)ldkv, 0.0f, out + h * D, (int)H);
    }
}

/* ---- naive references ---- */

void kref_linear(const float *x, const float *w, const float *b, float *y, size_t M, size_t N, size_t K)
{
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j < N; j++) {
            double s = b ? b[j] : 0.0;
            for (size_t t = 0; t < K; t++)
                s += (double)x[i * K + t] * w[j * K + t];
            y[i * N + j] = (float)s;
        }
}

void kref_conv1d(const float *x, const float *w, const float *b, float *y, size_t M, size_t N, size_t K)
{
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j < N; j++) {
            double s = b ? b[j] : 0.0;
            for (size_t t = 0; t < K; t++)
                s += (double)x[i * K + t] * w[t * N + j];
            y[i * N + j] = (float)s;
        }
}

void kref_layernorm(const float *x, const float *g, const float *b, float *y, size_t rows, size_t H, float eps)
{
    for (size_t r = 0; r < rows; r++) {
        double mean = 0, var = 0;
        for (size_t i = 0; i < H; i++)
            mean += x[r * H + i];
        mean /= (double)H;
        for (size_t i = 0; i < H; i++)
            var += (x[r * H + i] - mean) * (x[r * H + i] - mean);
        var /= (double)H;
        for (size_t i = 0; i < H; i++)
            y[r * H + i] = (float)((x[r * H + i] - mean) / sqrt(var + eps) * g[i] + b[i]);
    }
}

void kref_attention(const float *q, const float *k, const float *v, size_t ld, const unsigned char *keep,
                    int causal, size_t T, size_t heads, size_t D, float *out)
{
    for (size_t h = 0; h < heads; h++)
        for (size_t i = 0; i < T; i++) {
            double p[T], max = -INFINITY, sum = 0;
            for (size_t j = 0; j < T; j++) {
                int on = (!keep || keep[j]) && (!causal || j <= i);
                double s = 0;
                for (size_t d = 0; d < D; d++)
                    s += (double)q[i * ld + h * D + d] * k[j * ld + h * D + d];
                p[j] = on ? s / sqrt((double)D) : -INFINITY;
                if (p[j] > max)
                    max = p[j];
            }
            for (size_t j = 0; j < T; j++) {
                p[j] = p[j] == -INFINITY ? 0 : exp(p[j] - max);
                sum += p[j];
            }
            for (size_t d = 0; d < D; d++) {
                double o = 0;
                for (size_t j = 0; j < T; j++)
                    o += p[j] / (sum > 0 ? sum : 1) * v[j * ld + h * D + d];
                out[i * heads * D + h * D + d] = (float)o;
            }
        }
}
