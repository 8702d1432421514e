/* test_kernels.c — every fast kernel against its naive reference on random data, over
 * shapes that cover single rows (the sgemv path), odd sizes and masks; and the compute
 * threads' priority. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

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

static const size_t shapes[][3] = {{1, 7, 5},    {1, 384, 384}, {1, 1000, 64}, {3, 5, 7},   {3, 700, 33},
                                   {8, 600, 40}, {5, 131, 77},  {17, 33, 65},  {64, 96, 128}, {200, 40, 24}};

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

/* k_gemm with every transpose, strides wider than the rows, alpha and beta, and row counts
 * that take each path (sgemv, the row loops, sgemm; split by columns and by rows). */
static void test_gemm(void)
{
    static const size_t dims[][3] = {{1, 9, 7}, {3, 70, 33}, {8, 300, 16}, {9, 5, 64}, {40, 37, 12}, {4, 6, 0}};
    static const float ab[][2] = {{1.0f, 0.0f}, {0.5f, 1.0f}, {1.0f, -2.0f}};
    for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++)
        for (int t = 0; t < 4; t++)
            for (size_t v = 0; v < sizeof ab / sizeof ab[0]; v++) {
                size_t M = dims[d][0], N = dims[d][1], K = dims[d][2], pad = 3;
                int ta = t & 1, tb = t >> 1;
                size_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
                float *a = rnd((ta ? K : M) * lda + 1), *b = rnd((tb ? N : K) * ldb + 1), *c = rnd(M * ldc);
                double *want = malloc(M * N * sizeof *want);
                for (size_t i = 0; i < M; i++)
                    for (size_t j = 0; j < N; j++) {
                        double acc = 0;
                        for (size_t k = 0; k < K; k++)
                            acc += (double)(ta ? a[k * lda + i] : a[i * lda + k]) * (tb ? b[j * ldb + k] : b[k * ldb + j]);
                        want[i * N + j] = ab[v][0] * acc + (ab[v][1] == 0.0f ? 0.0 : ab[v][1] * c[i * ldc + j]);
                    }
                k_gemm(ta, tb, M, N, K, ab[v][0], a, lda, b, ldb, ab[v][1], c, ldc);
                double worst = 0;
                for (size_t i = 0; i < M; i++)
                    for (size_t j = 0; j < N; j++)
                        worst = fmax(worst, fabs(c[i * ldc + j] - want[i * N + j]));
                if (worst >= 1e-4)
                    fprintf(stderr, "gemm M=%zu N=%zu K=%zu ta=%d tb=%d alpha=%g beta=%g: %g\n", M, N, K, ta, tb,
                            ab[v][0], ab[v][1], worst);
                CU_ASSERT(worst < 1e-4);
                free(a), free(b), free(c), free(want);
            }
}

static void test_layernorm(void)
{
    size_t rows = 300, H = 384;
    float *x = rnd(rows * H), *g = rnd(H), *b = rnd(H), *y = rnd(rows * H), *r = rnd(rows * H);
    for (size_t i = 0; i < H; i++)
        x[i] = 1000.0f + x[i]; /* a large mean must not cost precision */
    kref_layernorm(x, g, b, r, rows, H, 1e-12f);
    k_layernorm(x, g, b, y, rows, H, 1e-12f);
    CU_ASSERT(max_diff(y, r, rows * H) < 1e-3f);
    float *half = rnd(rows * H), *rest = malloc(rows * H * sizeof *rest);
    for (size_t i = 0; i < rows * H; i++)
        rest[i] = x[i] - half[i];
    k_add_layernorm(half, rest, g, b, rest, rows, H, 1e-12f); /* the residual sum, into res */
    CU_ASSERT(max_diff(rest, r, rows * H) < 1e-3f);
    k_layernorm(x, g, b, x, rows, H, 1e-12f); /* in place */
    CU_ASSERT(max_diff(x, r, rows * H) < 1e-3f);
    free(x), free(g), free(b), free(y), free(r), free(half), free(rest);
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

/* The unnormalized softmax of vocabulary-sized rows (odd lengths, logits over ±40) against
 * exp and a sum in double. */
static void test_exp_shift(void)
{
    static const size_t lens[] = {1, 7, 50257};
    for (size_t c = 0; c < sizeof lens / sizeof lens[0]; c++) {
        size_t n = lens[c];
        float *x = malloc(n * sizeof *x), *ref = malloc(n * sizeof *ref), max;
        for (size_t j = 0; j < n; j++)
            x[j] = ref[j] = 40.0f * frand();
        double sum = k_exp_shift(x, n, &max);
        float m = ref[0];
        for (size_t j = 1; j < n; j++)
            m = ref[j] > m ? ref[j] : m;
        CU_ASSERT(max == m);
        double s = 0, err = 0;
        for (size_t j = 0; j < n; j++) {
            double e = exp((double)ref[j] - (double)m);
            s += e;
            err = fmax(err, fabs(x[j] - e) / e);
        }
        CU_ASSERT(err < 1e-5); /* the float difference x − max is rounded: |x − max| · 2⁻²⁴ at most */
        CU_ASSERT(fabs(sum - s) / s < 1e-6);
        free(x);
        free(ref);
    }
}

/* A batch of sequences with padded keys, against the per-sequence reference. */
static void test_attention(void)
{
    static const size_t cfg[][4] = {{1, 1, 2, 4}, {1, 7, 3, 8}, {3, 33, 12, 32}, {2, 16, 12, 64}, {5, 5, 1, 3}};
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        size_t B = cfg[c][0], T = cfg[c][1], heads = cfg[c][2], D = cfg[c][3], H = heads * D, ld = 3 * H;
        float *qkv = rnd(B * T * ld), *o = rnd(B * T * H), *r = rnd(B * T * H);
        unsigned char *keep = malloc(B * T);
        for (size_t b = 0; b < B; b++)
            for (size_t j = 0; j < T; j++)
                keep[b * T + j] = j + b + 1 < T || j == 0; /* the last b keys of sequence b are padding */
        for (int causal = 0; causal < 2; causal++)
            for (int masked = 0; masked < 2; masked++) {
                const unsigned char *m = masked ? keep : NULL;
                CU_ASSERT(k_attention(qkv, qkv + H, qkv + 2 * H, ld, m, causal, B, T, heads, D, o) == 0);
                for (size_t b = 0; b < B; b++) {
                    const float *q = qkv + b * T * ld;
                    kref_attention(q, q + H, q + 2 * H, ld, m ? m + b * T : NULL, causal, T, heads, D, r + b * T * H);
                }
                float d = max_diff(o, r, B * T * H);
                if (d >= 1e-5f)
                    fprintf(stderr, "attention B=%zu T=%zu heads=%zu D=%zu causal=%d masked=%d: %g\n", B, T, heads,
                            D, causal, masked, d);
                CU_ASSERT(d < 1e-5f);
            }
        free(qkv), free(o), free(r), free(keep);
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

/* GELU over a range long enough to be split across threads, against the scalar formulas. */
static void test_gelu_long(void)
{
    size_t n = 100003;
    float *a = rnd(n), *t = malloc(n * sizeof *t);
    for (size_t i = 0; i < n; i++)
        a[i] *= 6.0f, t[i] = a[i];
    double *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = a[i];
    k_gelu_erf(a, n);
    k_gelu_tanh(t, n);
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs(a[i] - 0.5 * x[i] * (1 + erf(x[i] / sqrt(2.0)))));
        worst = fmax(worst, fabs(t[i] - 0.5 * x[i] * (1 + tanh(sqrt(2 / M_PI) * (x[i] + 0.044715 * x[i] * x[i] * x[i])))));
    }
    CU_ASSERT(worst < 5e-6);
    free(a), free(t), free(x);
}

/* Each chunk of a parallel range is run exactly once, whatever the grain. */
static void count_part(void *ctx, size_t lo, size_t hi)
{
    unsigned char *seen = ctx;
    for (size_t i = lo; i < hi; i++)
        seen[i]++;
}

static void test_parallel(void)
{
    static const size_t cases[][2] = {{0, 1}, {1, 1}, {7, 1}, {1000, 3}, {1000, 999}, {1000, 1000}, {4096, 64}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t n = cases[c][0];
        unsigned char *seen = calloc(n + 1, 1);
        k_parallel(n, cases[c][1], count_part, seen);
        size_t wrong = 0;
        for (size_t i = 0; i < n; i++)
            wrong += seen[i] != 1;
        CU_ASSERT(wrong == 0 && seen[n] == 0);
        free(seen);
    }
}

/* A thread that runs alone gets the whole range in one call, on itself. */
static void whole_part(void *ctx, size_t lo, size_t hi)
{
    size_t *calls = ctx;
    calls[0]++, calls[1] = lo, calls[2] = hi;
}

static void test_alone(void)
{
    size_t calls[3] = {0};
    k_this_thread_alone(1);
    CU_ASSERT_EQUAL(k_threads(), 1);
    k_parallel(1000, 1, whole_part, calls);
    CU_ASSERT(calls[0] == 1 && calls[1] == 0 && calls[2] == 1000);
    k_this_thread_alone(0);
    CU_ASSERT(k_threads() >= 1);
}

/* The nice value of thread `tid`, read as getpriority reports it (-1 is a valid value). */
static int nice_of(pid_t tid)
{
    errno = 0;
    int v = getpriority(PRIO_PROCESS, (id_t)tid);
    return errno ? INT_MIN : v;
}

static int clamp_nice(int v) { return v > 19 ? 19 : v; }

/* k_compute_thread(below) on a new thread: its nice before, k_compute_thread's result, its
 * nice after, and after a second call (which asks for 5 steps more). */
typedef struct {
    int below, before, rc, after, again;
} priority_run;

static void *take_priority(void *arg)
{
    priority_run *r = arg;
    r->before = nice_of(gettid());
    r->rc = k_compute_thread(r->below);
    r->after = nice_of(gettid());
    k_compute_thread(5);
    r->again = nice_of(gettid());
    return NULL;
}

static priority_run run_take_priority(int below)
{
    priority_run r = {.below = below};
    pthread_t t;
    CU_ASSERT_FATAL(pthread_create(&t, NULL, take_priority, &r) == 0);
    pthread_join(t, NULL);
    return r;
}

/* Threads of this process whose nice value is `nice`, other than the caller. */
static int threads_at(int nice)
{
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        pid_t tid = (pid_t)strtol(e->d_name, NULL, 10);
        n += tid > 0 && tid != gettid() && nice_of(tid) == nice;
    }
    if (d)
        closedir(d);
    return n;
}

/* The compute threads' priority: a thread that takes it runs that many nice steps below
 * where it was (at most 19), once however often it calls; no steps change nothing; the
 * workers started after k_set_nice take it. Nice values only rise here, and only on the
 * threads this test starts, which end with it. */
static void test_compute_priority(void)
{
    int base = nice_of(gettid());
    CU_ASSERT_FATAL(base != INT_MIN);
    k_set_nice(0);
    priority_run r = run_take_priority(0);
    CU_ASSERT(r.before == base && r.rc == 0 && r.after == base && r.again == base);
    k_set_nice(3);
    r = run_take_priority(0);
    CU_ASSERT(r.before == base && r.rc == 0 && r.after == clamp_nice(base + 3) && r.again == r.after);
    r = run_take_priority(4); /* a training job's thread goes further down */
    CU_ASSERT(r.rc == 0 && r.after == clamp_nice(base + 7) && r.again == r.after);
    k_set_nice(40);
    r = run_take_priority(0);
    CU_ASSERT(r.rc == 0 && r.after == 19 && r.again == 19);

    /* Three compute threads: the caller and two workers, which take their priority before
     * their first range (every worker has run one when k_parallel returns). */
    k_set_nice(2);
    int before = threads_at(clamp_nice(base + 2));
    CU_ASSERT_EQUAL_FATAL(k_set_threads(3), 0);
    unsigned char seen[4096] = {0};
    k_parallel(sizeof seen, 1, count_part, seen);
    CU_ASSERT_EQUAL(threads_at(clamp_nice(base + 2)) - before, 2);
    CU_ASSERT_EQUAL(nice_of(gettid()), base); /* the caller keeps its own */
    k_set_nice(0);
    CU_ASSERT_EQUAL(k_set_threads(1), 0);
}

/* The suites run single-threaded, then again on three compute threads (so that products are
 * split by rows and by columns, and attention by heads, with uneven last chunks). */
static int one_thread(void) { return k_set_threads(1); }
static int three_threads(void) { return k_set_threads(3) || k_threads() != 3; }

void cu_register(void)
{
    static const struct {
        const char *name;
        int (*init)(void);
    } suites[] = {{"kernels, one thread", one_thread}, {"kernels, three threads", three_threads}};
    for (size_t i = 0; i < 2; i++) {
        CU_pSuite s = CU_add_suite(suites[i].name, suites[i].init, one_thread);
        CU_add_test(s, "linear and conv1d", test_matmuls);
        CU_add_test(s, "general products", test_gemm);
        CU_add_test(s, "layernorm", test_layernorm);
        CU_add_test(s, "gelu", test_gelu);
        CU_add_test(s, "gelu over a long range", test_gelu_long);
        CU_add_test(s, "softmax", test_softmax);
        CU_add_test(s, "exponentials of a row shifted by its max", test_exp_shift);
        CU_add_test(s, "parallel ranges", test_parallel);
        CU_add_test(s, "a thread alone", test_alone);
        CU_add_test(s, "attention", test_attention);
        CU_add_test(s, "attention over a KV cache", test_attention_cached);
    }
    CU_pSuite s = CU_add_suite("compute threads' priority", one_thread, one_thread);
    CU_add_test(s, "nice steps below the starting thread", test_compute_priority);
}
