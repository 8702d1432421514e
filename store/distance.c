#include "distance.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define DIST_X86 1
#include <immintrin.h>
#endif

static const char *const metric_names[] = {"cosine", "dot", "l2"};

const char *dist_metric_name(dist_metric m)
{
    return (unsigned)m < 3 ? metric_names[m] : "?";
}

int dist_metric_parse(const char *name, dist_metric *out)
{
    for (int i = 0; i < 3; i++)
        if (name && strcmp(name, metric_names[i]) == 0) {
            *out = (dist_metric)i;
            return 0;
        }
    return -1;
}

/* ---- Kernels ----
 * The scalar versions keep 8 partial sums, so they vectorize where the compiler may and their
 * rounding stays close to the SIMD versions'. */

float dist_dot_scalar(const float *a, const float *b, size_t n)
{
    float s[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            s[j] += a[i + j] * b[i + j];
    float t = 0;
    for (; i < n; i++)
        t += a[i] * b[i];
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7])) + t;
}

float dist_l2sq_scalar(const float *a, const float *b, size_t n)
{
    float s[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) {
            float d = a[i + j] - b[i + j];
            s[j] += d * d;
        }
    float t = 0;
    for (; i < n; i++) {
        float d = a[i] - b[i];
        t += d * d;
    }
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7])) + t;
}

#ifdef DIST_X86
#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static inline float hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
    return _mm_cvtss_f32(s);
}

/* The tail (n % 8 elements) is loaded with a mask, so there is no scalar loop. */
AVX2 static inline __m256i tail_mask(size_t r)
{
    static const int32_t m[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256((const __m256i *)(m + 8 - r));
}

AVX2 static float dot_avx2(const float *a, const float *b, size_t n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    if (i < n) {
        __m256i m = tail_mask(n - i);
        s1 = _mm256_fmadd_ps(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m), s1);
    }
    return hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

AVX2 static float l2sq_avx2(const float *a, const float *b, size_t n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8));
        __m256 d2 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16));
        __m256 d3 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24));
        s0 = _mm256_fmadd_ps(d0, d0, s0);
        s1 = _mm256_fmadd_ps(d1, d1, s1);
        s2 = _mm256_fmadd_ps(d2, d2, s2);
        s3 = _mm256_fmadd_ps(d3, d3, s3);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 d = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        s0 = _mm256_fmadd_ps(d, d, s0);
    }
    if (i < n) {
        __m256i m = tail_mask(n - i);
        __m256 d = _mm256_sub_ps(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m));
        s1 = _mm256_fmadd_ps(d, d, s1);
    }
    return hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

/* Dispatch through two pointers set once by a constructor, before main and before any
 * thread exists. They start at the scalar kernels, so a call made even earlier is still
 * right. (A GNU ifunc would do the same, but its resolver runs before the sanitizer runtime
 * is up and crashes the ASan build.) */
typedef float (*kernel_fn)(const float *, const float *, size_t);
static kernel_fn dot_impl = dist_dot_scalar, l2sq_impl = dist_l2sq_scalar;
static int use_avx2;

__attribute__((constructor)) static void pick_kernels(void)
{
    __builtin_cpu_init();
    use_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (use_avx2) {
        dot_impl = dot_avx2;
        l2sq_impl = l2sq_avx2;
    }
}

float dist_dot(const float *a, const float *b, size_t n) { return dot_impl(a, b, n); }
float dist_l2sq(const float *a, const float *b, size_t n) { return l2sq_impl(a, b, n); }
const char *dist_isa(void) { return use_avx2 ? "avx2+fma" : "scalar"; }

#else

float dist_dot(const float *a, const float *b, size_t n) { return dist_dot_scalar(a, b, n); }
float dist_l2sq(const float *a, const float *b, size_t n) { return dist_l2sq_scalar(a, b, n); }
const char *dist_isa(void) { return "scalar"; }

#endif

float dist_score(dist_metric m, const float *a, const float *b, size_t n)
{
    return m == DIST_L2 ? -sqrtf(dist_l2sq(a, b, n)) : dist_dot(a, b, n);
}

int dist_prepare(dist_metric m, float *v, size_t n)
{
    /* Squares of finite floats summed in double cannot overflow (n ≤ 2^32 terms of at most
     * 2^256), so the sum is finite exactly when every element is: one test at the end. The
     * norm is taken in double, so vectors whose float32 sum of squares would overflow (or
     * underflow) still normalize; only a true zero is refused. */
    double s[4] = {0, 0, 0, 0};
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int j = 0; j < 4; j++)
            s[j] += (double)v[i + j] * v[i + j];
    for (; i < n; i++)
        s[0] += (double)v[i] * v[i];
    double ss = (s[0] + s[1]) + (s[2] + s[3]);
    if (!isfinite(ss))
        return -1;
    if (m != DIST_COSINE)
        return 0;
    if (!(ss > 0))
        return -1;
    double inv = 1.0 / sqrt(ss);
    for (i = 0; i < n; i++)
        v[i] = (float)(v[i] * inv);
    return 0;
}

/* ---- Exact top-k ----
 * out[0..len) is a min-heap on (score, then larger label worse), so out[0] is the worst hit
 * kept; it becomes sorted best first at the end. */

static int worse(const dist_hit *a, const dist_hit *b)
{
    return a->score < b->score || (a->score == b->score && a->label > b->label);
}

static void sift_down(dist_hit *h, size_t len, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, w = i;
        if (l < len && worse(&h[l], &h[w]))
            w = l;
        if (l + 1 < len && worse(&h[l + 1], &h[w]))
            w = l + 1;
        if (w == i)
            return;
        dist_hit t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

static void offer(dist_hit *h, size_t *len, size_t k, int64_t label, float score)
{
    dist_hit x = {label, score};
    if (*len < k) {
        size_t i = (*len)++;
        while (i > 0 && worse(&x, &h[(i - 1) / 2])) {
            h[i] = h[(i - 1) / 2];
            i = (i - 1) / 2;
        }
        h[i] = x;
    } else if (worse(&h[0], &x)) {
        h[0] = x;
        sift_down(h, *len, 0);
    }
}

/* Sorts a heap built by offer() best first, in place. */
static void heap_sort_best_first(dist_hit *h, size_t len)
{
    for (size_t n = len; n > 1; n--) {
        dist_hit t = h[0]; /* worst of h[0..n) goes to the back */
        h[0] = h[n - 1];
        h[n - 1] = t;
        sift_down(h, n - 1, 0);
    }
}

#define EXACT_BLOCK 1024 /* rows per sgemv; the scores sit on the stack */

size_t dist_exact_topk(dist_metric m, const float *mat, const int64_t *labels, const unsigned char *live,
                       size_t n, size_t dim, const float *query, size_t k,
                       int (*accept)(int64_t label, void *ctx), void *ctx, dist_hit *out)
{
    size_t len = 0;
    if (k == 0)
        return 0;
    float sc[EXACT_BLOCK];
    for (size_t r0 = 0; r0 < n; r0 += EXACT_BLOCK) {
        size_t rows = n - r0 < EXACT_BLOCK ? n - r0 : EXACT_BLOCK;
        const float *blk = mat + r0 * dim;
        if (m == DIST_L2) {
            for (size_t i = 0; i < rows; i++)
                sc[i] = (live && !live[r0 + i]) ? 0 : -dist_l2sq(blk + i * dim, query, dim);
        } else {
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)rows, (int)dim, 1.0f, blk, (int)dim, query, 1, 0.0f, sc,
                        1);
        }
        for (size_t i = 0; i < rows; i++) {
            size_t r = r0 + i;
            if (live && !live[r])
                continue;
            int64_t label = labels ? labels[r] : (int64_t)r;
            /* Cheap rejection before the filter: a full heap keeps only better scores. */
            if (len == k && sc[i] < out[0].score)
                continue;
            if (accept && !accept(label, ctx))
                continue;
            offer(out, &len, k, label, sc[i]);
        }
    }
    heap_sort_best_first(out, len);
    if (m == DIST_L2)
        for (size_t i = 0; i < len; i++)
            out[i].score = -sqrtf(-out[i].score);
    return len;
}

double dist_ref_dot(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

double dist_ref_l2sq(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        s += d * d;
    }
    return s;
}
