#include "kernels.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Elementwise kernels are compiled twice, for x86-64-v3 (AVX2, FMA) and for the baseline,
 * and the loader picks one for the CPU it runs on (GCC function multiversioning; clang 14's
 * support is incomplete, so clang builds get the baseline only). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define KERNEL __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define KERNEL
#endif

/* ---- compute threads ----
 * OpenBLAS always runs single-threaded here: its own workers spin for a long while after each
 * call and would fight ours for the cores. Parallelism is ours: k_parallel hands out chunks of
 * a range to `threads - 1` sleeping workers and the caller. One parallel region runs at a time;
 * a caller that finds the workers busy (another model's pass) runs its range alone, so the
 * threads in use never exceed the configured count plus one per concurrent model. */
static struct {
    pthread_mutex_t region;   /* held by the caller whose range the workers run */
    pthread_mutex_t m;
    pthread_cond_t go, done;
    pthread_t *workers;
    atomic_int n_workers;
    int active, stop;
    unsigned long generation;
    k_range_fn fn;
    void *ctx;
    size_t n, grain;
    atomic_size_t next;
} pool = {.region = PTHREAD_MUTEX_INITIALIZER, .m = PTHREAD_MUTEX_INITIALIZER, .go = PTHREAD_COND_INITIALIZER,
          .done = PTHREAD_COND_INITIALIZER};

static void run_range(void)
{
    for (;;) {
        size_t lo = atomic_fetch_add(&pool.next, pool.grain);
        if (lo >= pool.n)
            return;
        pool.fn(pool.ctx, lo, lo + pool.grain < pool.n ? lo + pool.grain : pool.n);
    }
}

static atomic_int nice_steps;
static _Thread_local int niced;

void k_set_nice(int steps) { atomic_store(&nice_steps, steps < 0 ? 0 : steps > 19 ? 19 : steps); }

int k_compute_thread(int below)
{
    int steps = atomic_load(&nice_steps) + below;
    if (niced)
        return 0;
    niced = 1; /* the first call decides */
    if (steps <= 0)
        return 0;
    /* Relative to the thread's own nice value, so a daemon started under `nice` keeps its
     * compute below its requests; getpriority's -1 is a valid value, hence errno. */
    errno = 0;
    int now = getpriority(PRIO_PROCESS, (id_t)gettid());
    if (errno)
        return -1;
    return setpriority(PRIO_PROCESS, (id_t)gettid(), now + steps > 19 ? 19 : now + steps);
}

static void *worker(void *arg)
{
    (void)arg;
    (void)k_compute_thread(0); /* as the batcher that drives it, which reports a failure */
    pthread_setname_np(pthread_self(), "ragd-compute");
    unsigned long seen = 0;
    pthread_mutex_lock(&pool.m);
    for (;;) {
        while (pool.generation == seen && !pool.stop)
            pthread_cond_wait(&pool.go, &pool.m);
        if (pool.stop)
            break;
        seen = pool.generation;
        pthread_mutex_unlock(&pool.m);
        run_range();
        pthread_mutex_lock(&pool.m);
        if (--pool.active == 0)
            pthread_cond_signal(&pool.done);
    }
    pthread_mutex_unlock(&pool.m);
    return NULL;
}

static void stop_workers(void)
{
    pthread_mutex_lock(&pool.m);
    pool.stop = 1;
    pthread_cond_broadcast(&pool.go);
    pthread_mutex_unlock(&pool.m);
    for (int i = 0; i < atomic_load(&pool.n_workers); i++)
        pthread_join(pool.workers[i], NULL);
    free(pool.workers);
    pool.workers = NULL;
    atomic_store(&pool.n_workers, 0);
    pool.stop = 0;
}

int k_set_threads(int n)
{
    openblas_set_num_threads(1);
    pthread_mutex_lock(&pool.region);
    stop_workers();
    int rc = 0;
    int started = 0;
    if (n > 1 && (pool.workers = calloc((size_t)n - 1, sizeof *pool.workers)) != NULL)
        while (started < n - 1 && pthread_create(&pool.workers[started], NULL, worker, NULL) == 0)
            started++;
    atomic_store(&pool.n_workers, started);
    if (started < n - 1)
        rc = -1;
    pthread_mutex_unlock(&pool.region);
    return rc;
}

static _Thread_local int alone;

void k_this_thread_alone(int on) { alone = on; }

int k_threads(void) { return alone ? 1 : atomic_load(&pool.n_workers) + 1; }

void k_parallel(size_t n, size_t grain, k_range_fn fn, void *ctx)
{
    if (grain == 0)
        grain = 1;
    if (n <= grain || alone || atomic_load(&pool.n_workers) == 0 || pthread_mutex_trylock(&pool.region) != 0) {
        if (n)
            fn(ctx, 0, n);
        return;
    }
    pthread_mutex_lock(&pool.m);
    pool.fn = fn, pool.ctx = ctx, pool.n = n, pool.grain = grain;
    atomic_store(&pool.next, 0);
    pool.active = atomic_load(&pool.n_workers);
    pool.generation++;
    pthread_cond_broadcast(&pool.go);
    pthread_mutex_unlock(&pool.m);
    run_range();
    pthread_mutex_lock(&pool.m);
    while (pool.active)
        pthread_cond_wait(&pool.done, &pool.m);
    pthread_mutex_unlock(&pool.m);
    pthread_mutex_unlock(&pool.region);
}

/* A chunk size that gives every thread about `per_thread` chunks of at least `min` items. */
static size_t grain_for(size_t n, size_t min, size_t per_thread)
{
    size_t g = n / ((size_t)k_threads() * per_thread);
    return g < min ? min : g;
}

/* Per-thread scratch, grown on demand and freed when its thread exits. */
static pthread_key_t ws_key;
static pthread_once_t ws_once = PTHREAD_ONCE_INIT;

typedef struct {
    float *data[K_WS_SLOTS];
    size_t cap[K_WS_SLOTS];
} workspace;

static void ws_free(void *p)
{
    workspace *w = p;
    for (int i = 0; i < K_WS_SLOTS; i++)
        free(w->data[i]);
    free(w);
}

static void ws_create(void) { pthread_key_create(&ws_key, ws_free); }

float *k_workspace(int slot, size_t n)
{
    pthread_once(&ws_once, ws_create);
    workspace *w = pthread_getspecific(ws_key);
    if (!w && ((w = calloc(1, sizeof *w)) == NULL || pthread_setspecific(ws_key, w) != 0)) {
        free(w);
        return NULL;
    }
    if (w->cap[slot] < n) {
        float *g = realloc(w->data[slot], n * sizeof(float));
        if (!g)
            return NULL;
        w->data[slot] = g, w->cap[slot] = n;
    }
    return w->data[slot];
}

/* ---- matrix products ----
 * Every product goes through gemm_part. It is split across the threads by rows of C when
 * there are enough of them, else by columns (so a one-row decode step shares its weight
 * reads). A bias is written into C first and the product added onto it (beta = 1): one pass
 * over C instead of two. Single rows go through sgemv: OpenBLAS runs a one-row sgemm as a
 * full GEMM, 2-3x slower on wide outputs (BENCHMARKING.md). A few rows against weights in
 * memory go through row loops that read each weight once for all rows, where sgemm would
 * first copy the whole matrix into its packed layout (more than doubling a decode step's
 * memory traffic). */
#define FEW_ROWS 8  /* rows up to which the row loops beat sgemm */
#define BIG_B ((size_t)1 << 20) /* elements of b from which packing it again per part shows */
#define BIG_B_ROWS 256          /* rows of a part against such a b (one sgemm panel and more) */

typedef struct {
    int ta, tb;
    size_t M, N, K;
    float alpha, beta;
    const float *a, *b, *bias;
    size_t lda, ldb, ldc;
    float *c;
    int by_rows;
} gemm_args;

/* c[M,N] += a[M,K] · b[K,N] (b row-major, as Conv1D weights) for M ≤ FEW_ROWS. b is walked
 * in blocks of KB rows, each row front to back: KB sequential streams the prefetchers follow
 * (a walk down a column block would jump a whole row of b, several KB, per load). Within a
 * block, eight columns at a time keep their M sums in registers (M is a constant in each
 * instance, see rows_kn) while the KB weights meet each row of a as broadcasts; c, a few KB
 * per row, stays in cache between blocks. The sums over k run in order, as one pass would. */
typedef float v8f __attribute__((vector_size(32))); /* eight floats; GCC splits it where AVX is absent */
#define KB 8

static inline __attribute__((always_inline)) void rows_kn_m(const float *a, size_t lda, const float *b, size_t ldb,
                                                             float *c, size_t ldc, size_t M, size_t N, size_t K)
{
    size_t k0 = 0;
    for (; k0 + KB <= K; k0 += KB) {
        size_t n0 = 0;
        for (; n0 + 8 <= N; n0 += 8) {
            v8f acc[FEW_ROWS];
#pragma GCC unroll 8
            for (size_t m = 0; m < M; m++)
                memcpy(&acc[m], c + m * ldc + n0, sizeof acc[m]);
#pragma GCC unroll 8
            for (size_t k = k0; k < k0 + KB; k++) {
                v8f w;
                memcpy(&w, b + k * ldb + n0, sizeof w);
#pragma GCC unroll 8
                for (size_t m = 0; m < M; m++)
                    acc[m] += a[m * lda + k] * w;
            }
#pragma GCC unroll 8
            for (size_t m = 0; m < M; m++)
                memcpy(c + m * ldc + n0, &acc[m], sizeof acc[m]);
        }
        for (size_t k = k0; n0 < N && k < k0 + KB; k++) /* the last N % 8 columns */
            for (size_t m = 0; m < M; m++)
                for (size_t n = n0; n < N; n++)
                    c[m * ldc + n] += a[m * lda + k] * b[k * ldb + n];
    }
    for (size_t k = k0; k < K; k++) /* the last K % KB rows of b */
        for (size_t m = 0; m < M; m++)
            for (size_t n = 0; n < N; n++)
                c[m * ldc + n] += a[m * lda + k] * b[k * ldb + n];
}

/* c[M,N] += a[M,K] · b[N,K]ᵀ (nn.Linear weights) for M ≤ FEW_ROWS: each weight row is loaded
 * once, eight floats at a time, and meets every row of a (in L1) with its M partial sums in
 * registers. */
static inline __attribute__((always_inline)) void rows_nk_m(const float *a, size_t lda, const float *b, size_t ldb,
                                                             float *c, size_t ldc, size_t M, size_t N, size_t K)
{
    for (size_t n = 0; n < N; n++) {
        const float *bn = b + n * ldb;
        v8f acc[FEW_ROWS];
#pragma GCC unroll 8
        for (size_t m = 0; m < M; m++)
            acc[m] = (v8f){0};
        size_t k = 0;
        for (; k + 8 <= K; k += 8) {
            v8f w;
            memcpy(&w, bn + k, sizeof w);
#pragma GCC unroll 8
            for (size_t m = 0; m < M; m++) {
                v8f x;
                memcpy(&x, a + m * lda + k, sizeof x);
                acc[m] += x * w;
            }
        }
        for (size_t m = 0; m < M; m++) {
            v8f v = acc[m];
            float sum = ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
            for (size_t t = k; t < K; t++)
                sum += a[m * lda + t] * bn[t];
            c[m * ldc + n] += sum;
        }
    }
}

/* The instances of the row loops for each M, so that M is a constant inside them. */
#define ROWS_DISPATCH(fn, M, ...) \
    switch (M) { \
    case 2: fn(__VA_ARGS__, 2, N, K); break; \
    case 3: fn(__VA_ARGS__, 3, N, K); break; \
    case 4: fn(__VA_ARGS__, 4, N, K); break; \
    case 5: fn(__VA_ARGS__, 5, N, K); break; \
    case 6: fn(__VA_ARGS__, 6, N, K); break; \
    case 7: fn(__VA_ARGS__, 7, N, K); break; \
    default: fn(__VA_ARGS__, 8, N, K); break; \
    }

static KERNEL void rows_kn(const float *a, size_t lda, const float *b, size_t ldb, float *c, size_t ldc, size_t M,
                           size_t N, size_t K)
{
    ROWS_DISPATCH(rows_kn_m, M, a, lda, b, ldb, c, ldc)
}

static KERNEL void rows_nk(const float *a, size_t lda, const float *b, size_t ldb, float *c, size_t ldc, size_t M,
                           size_t N, size_t K)
{
    ROWS_DISPATCH(rows_nk_m, M, a, lda, b, ldb, c, ldc)
}

static void gemm_part(void *vctx, size_t lo, size_t hi)
{
    const gemm_args *g = vctx;
    size_t M = g->by_rows ? hi - lo : g->M, N = g->by_rows ? g->N : hi - lo, K = g->K;
    size_t r0 = g->by_rows ? lo : 0, c0 = g->by_rows ? 0 : lo;
    const float *a = g->a + (g->ta ? r0 : r0 * g->lda), *b = g->b + (g->tb ? c0 * g->ldb : c0);
    float *c = g->c + r0 * g->ldc + c0, beta = g->beta;
    if (g->bias) {
        for (size_t i = 0; i < M; i++)
            memcpy(c + i * g->ldc, g->bias + c0, N * sizeof(float));
        beta = 1.0f;
    }
    if (K == 0 || (!g->ta && g->alpha == 1.0f && M > 1 && M <= FEW_ROWS)) {
        if (beta != 1.0f)
            for (size_t i = 0; i < M; i++)
                for (size_t j = 0; j < N; j++)
                    c[i * g->ldc + j] = beta == 0.0f ? 0.0f : c[i * g->ldc + j] * beta;
        if (K && g->tb)
            rows_nk(a, g->lda, b, g->ldb, c, g->ldc, M, N, K);
        else if (K)
            rows_kn(a, g->lda, b, g->ldb, c, g->ldc, M, N, K);
    } else if (M == 1) {
        int inca = g->ta ? (int)g->lda : 1;
        if (g->tb) /* b is [N,K] */
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)N, (int)K, g->alpha, b, (int)g->ldb, a, inca, beta, c, 1);
        else /* b is [K,N] */
            cblas_sgemv(CblasRowMajor, CblasTrans, (int)K, (int)N, g->alpha, b, (int)g->ldb, a, inca, beta, c, 1);
    } else {
        cblas_sgemm(CblasRowMajor, g->ta ? CblasTrans : CblasNoTrans, g->tb ? CblasTrans : CblasNoTrans, (int)M, (int)N,
                    (int)K, g->alpha, a, (int)g->lda, b, (int)g->ldb, beta, c, (int)g->ldc);
    }
}

static void run_gemm(gemm_args *g)
{
    if (g->M == 0 || g->N == 0)
        return;
    size_t threads = (size_t)k_threads();
    g->by_rows = g->M >= 16 * threads;
    if (g->by_rows) {
        /* Every part packs the whole of b: against a big b (a weight matrix, not a slice of
         * activations) parts of fewer than BIG_B_ROWS rows would spend more on packing than
         * two parts per thread gain in balance, so such products take one part per thread. */
        size_t grain = grain_for(g->M, 16, 2), whole = (g->M + threads - 1) / threads;
        if (g->N * g->K >= BIG_B && grain < BIG_B_ROWS)
            grain = whole < BIG_B_ROWS ? whole : BIG_B_ROWS;
        k_parallel(g->M, grain, gemm_part, g);
    }
    else /* columns in multiples of 64 keep each part's rows of b aligned and whole */
        k_parallel(g->N, (grain_for(g->N, 256, 1) + 63) & ~(size_t)63, gemm_part, g);
}

void k_gemm(int ta, int tb, size_t M, size_t N, size_t K, float alpha, const float *a, size_t lda, const float *b,
            size_t ldb, float beta, float *c, size_t ldc)
{
    run_gemm(&(gemm_args){ta, tb, M, N, K, alpha, beta, a, b, NULL, lda, ldb, ldc, c, 0});
}

void k_linear(const float *x, const float *w, const float *b, float *y, size_t M, size_t N, size_t K)
{
    run_gemm(&(gemm_args){0, 1, M, N, K, 1.0f, 0.0f, x, w, b, K, K, N, y, 0});
}

void k_conv1d(const float *x, const float *w, const float *b, float *y, size_t M, size_t N, size_t K)
{
    run_gemm(&(gemm_args){0, 0, M, N, K, 1.0f, 0.0f, x, w, b, K, N, N, y, 0});
}

/* ---- elementwise ---- */

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

/* LayerNorm of rows of x (+ res when res != NULL) into y; y may equal x or res. */
static KERNEL void layernorm_rows(const float *x, const float *res, const float *g, const float *b, float *y,
                                  size_t rows, size_t H, float eps)
{
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * H;
        float *yr = y + r * H;
        if (res) {
            const float *rr = res + r * H;
            for (size_t i = 0; i < H; i++)
                yr[i] = xr[i] + rr[i];
            xr = yr;
        }
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

typedef struct {
    const float *x, *res, *g, *b;
    float *y;
    size_t H;
    float eps;
} norm_args;

static void layernorm_part(void *vctx, size_t lo, size_t hi)
{
    const norm_args *a = vctx;
    layernorm_rows(a->x + lo * a->H, a->res ? a->res + lo * a->H : NULL, a->g, a->b, a->y + lo * a->H, hi - lo,
                   a->H, a->eps);
}

/* Rows per chunk so that a chunk is at least ~16k floats of work. */
static size_t row_grain(size_t rows, size_t H) { return grain_for(rows, H >= 16384 ? 1 : 16384 / H, 2); }

void k_layernorm(const float *x, const float *g, const float *b, float *y, size_t rows, size_t H, float eps)
{
    k_parallel(rows, row_grain(rows, H), layernorm_part, &(norm_args){x, NULL, g, b, y, H, eps});
}

void k_add_layernorm(const float *x, const float *res, const float *g, const float *b, float *y, size_t rows,
                     size_t H, float eps)
{
    k_parallel(rows, row_grain(rows, H), layernorm_part, &(norm_args){x, res, g, b, y, H, eps});
}


static KERNEL void gelu_erf_range(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = 0.5f * x[i] * (1.0f + erf_approx(x[i] * (float)M_SQRT1_2));
}

static KERNEL void gelu_tanh_range(float *x, size_t n)
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

static void gelu_erf_part(void *x, size_t lo, size_t hi) { gelu_erf_range((float *)x + lo, hi - lo); }
static void gelu_tanh_part(void *x, size_t lo, size_t hi) { gelu_tanh_range((float *)x + lo, hi - lo); }

void k_gelu_erf(float *x, size_t n) { k_parallel(n, grain_for(n, 16384, 2), gelu_erf_part, x); }
void k_gelu_tanh(float *x, size_t n) { k_parallel(n, grain_for(n, 16384, 2), gelu_tanh_part, x); }

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

KERNEL double k_exp_shift(float *x, size_t n, float *max)
{
    float m = x[0];
    double sum = 0.0;
    for (size_t j = 1; j < n; j++)
        m = x[j] > m ? x[j] : m;
    for (size_t j = 0; j < n; j++) {
        x[j] = exp_approx(x[j] - m);
        sum += x[j];
    }
    *max = m;
    return sum;
}

/* ---- attention ---- */

/* One head of one sequence. kt: [D, T] scratch for the keys transposed, so that each query's
 * scores are D passes of s[j] += q[d]·kt[d][j] over contiguous memory; s: [T] scratch. */
static KERNEL void attend_head(const float *q, const float *k, const float *v, size_t ld, const unsigned char *keep,
                               int causal, size_t T, size_t D, float *out, size_t ldo, float *kt, float *s)
{
    const float scale = 1.0f / sqrtf((float)D);
    for (size_t j = 0; j < T; j++)
        for (size_t d = 0; d < D; d++)
            kt[d * T + j] = k[j * ld + d];
    for (size_t i = 0; i < T; i++) {
        size_t n = causal ? i + 1 : T;
        const float *qi = q + i * ld;
        memset(s, 0, n * sizeof *s);
        for (size_t d = 0; d < D; d++) {
            const float qd = qi[d] * scale, *kd = kt + d * T;
            for (size_t j = 0; j < n; j++)
                s[j] += qd * kd[j];
        }
        k_softmax_rows(s, keep, 1, n);
        float *o = out + i * ldo;
        memset(o, 0, D * sizeof *o);
        for (size_t j = 0; j < n; j++) {
            const float p = s[j], *vj = v + j * ld;
            if (p != 0.0f)
                for (size_t d = 0; d < D; d++)
                    o[d] += p * vj[d];
        }
    }
}

typedef struct {
    const float *q, *k, *v;
    size_t ld;
    const unsigned char *keep;
    int causal;
    size_t T, heads, D;
    float *out;
    atomic_int failed;
} attn_args;

static void attention_part(void *vctx, size_t lo, size_t hi)
{
    attn_args *a = vctx;
    float *kt = k_workspace(K_WS_KERNEL, a->T * (a->D + 1));
    if (!kt) {
        atomic_store(&a->failed, 1);
        return;
    }
    for (size_t u = lo; u < hi; u++) {
        size_t b = u / a->heads, h = u % a->heads, row = b * a->T, col = h * a->D;
        attend_head(a->q + row * a->ld + col, a->k + row * a->ld + col, a->v + row * a->ld + col, a->ld,
                    a->keep ? a->keep + row : NULL, a->causal, a->T, a->D, a->out + row * a->heads * a->D + col,
                    a->heads * a->D, kt, kt + a->T * a->D);
    }
}

int k_attention(const float *q, const float *k, const float *v, size_t ld, const unsigned char *keep, int causal,
                size_t B, size_t T, size_t heads, size_t D, float *out)
{
    attn_args a = {q, k, v, ld, keep, causal, T, heads, D, out, 0};
    k_parallel(B * heads, 1, attention_part, &a);
    return atomic_load(&a.failed) ? -1 : 0;
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
