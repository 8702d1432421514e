/*
 * kernels.h — the fp32 building blocks of the encoders, the decoder and training.
 *
 * Shapes are written as [rows, cols], row-major, densely packed. Matrix products go to
 * OpenBLAS; the rest are plain loops written so the compiler vectorizes them. Each kernel
 * has a naive reference (kref_*) kept beside it and compared with it in tests/unit.
 * All are thread-safe, and the larger ones split their work across the compute threads
 * (k_parallel). Only k_attention and k_workspace need memory of their own; nothing else
 * allocates or fails.
 */
#ifndef RAGD_KERNELS_H
#define RAGD_KERNELS_H

#include <stddef.h>

/* Sets the compute threads (process-wide): the caller plus n-1 workers that sleep between
 * parallel regions. OpenBLAS itself is kept single-threaded. Call it before any kernel runs,
 * not while one does. Returns -1 when fewer workers could be started. */
int k_set_threads(int n);
/* The threads a kernel called from this thread may use. */
int k_threads(void);
/* Kernels called from this thread run on it alone, never on the shared workers: for
 * background work (training) that must leave the workers to serving. */
void k_this_thread_alone(int on);
/* The compute threads' CPU priority: `steps` nice values (0-19) below the thread that
 * starts them, so that threads doing short work (a search, reading a request) preempt a
 * model's long passes instead of queueing behind them. The workers take it when
 * k_set_threads starts them (call this first), and every thread that runs a model's passes
 * takes it by calling k_compute_thread. Linux sets nice per thread; raising it needs no
 * privilege. */
void k_set_nice(int steps);
/* The calling thread runs a model's passes: it goes the compute threads' steps and `below`
 * more below its nice value (to 19 at most), once (later calls return 0 at once). Returns
 * 0, or -1 with errno when the priority could not be set (the thread keeps its old one). */
int k_compute_thread(int below);

/* Runs fn(ctx, lo, hi) over chunks of [0, n) of `grain` items on the compute threads, the
 * caller included, and returns when all are done. When another region holds the workers, or
 * n ≤ grain, the caller runs the whole range itself. */
typedef void (*k_range_fn)(void *ctx, size_t lo, size_t hi);
void k_parallel(size_t n, size_t grain, k_range_fn fn, void *ctx);

/* Scratch of n floats for the calling thread in one of its K_WS_SLOTS slots, reused by its
 * next call for the same slot and freed when the thread exits. NULL when out of memory.
 * Slot K_WS_KERNEL belongs to the kernels; a model's forward pass uses K_WS_FORWARD, and
 * what calls the model K_WS_CALLER. */
enum { K_WS_KERNEL, K_WS_FORWARD, K_WS_CALLER, K_WS_SLOTS };
float *k_workspace(int slot, size_t n);

/* c[M,N] = alpha · op(a) · op(b) + beta · c, row-major, op(a) = aᵀ when ta (a is [K,M]),
 * op(b) = bᵀ when tb (b is [N,K]); lda/ldb/ldc are row strides. As cblas_sgemm, on the
 * compute threads. */
void k_gemm(int ta, int tb, size_t M, size_t N, size_t K, float alpha, const float *a, size_t lda, const float *b,
            size_t ldb, float beta, float *c, size_t ldc);
/* y[M,N] = x[M,K] · w[N,K]ᵀ (+ b[N] when b != NULL): nn.Linear's layout. */
void k_linear(const float *x, const float *w, const float *b, float *y, size_t M, size_t N, size_t K);
/* y[M,N] = x[M,K] · w[K,N] (+ b[N]): GPT-2's Conv1D layout. */
void k_conv1d(const float *x, const float *w, const float *b, float *y, size_t M, size_t N, size_t K);

/* LayerNorm over the last dimension as torch computes it (biased variance, eps inside the
 * square root): y[r,:] = (x - mean) / sqrt(var + eps) * g + b. y may equal x. */
void k_layernorm(const float *x, const float *g, const float *b, float *y, size_t rows, size_t H, float eps);
/* y = LayerNorm(x + res), the residual sum and the norm in one pass; y may equal x or res. */
void k_add_layernorm(const float *x, const float *res, const float *g, const float *b, float *y, size_t rows,
                     size_t H, float eps);

/* In place: GELU with erf ("gelu") and the tanh approximation ("gelu_new"). */
void k_gelu_erf(float *x, size_t n);
void k_gelu_tanh(float *x, size_t n);

/* y[i] += x[i] */
void k_add(float *y, const float *x, size_t n);

/* Softmax over each row of x[rows, n] in place, numerically stable. Entries with
 * keep[j] == 0 (keep may be NULL: all kept) get exactly 0. A row with nothing kept is all 0. */
void k_softmax_rows(float *x, const unsigned char *keep, size_t rows, size_t n);

/* The unnormalized softmax of x[n] (n ≥ 1) in place: x[j] = exp(x[j] − max x), max x into
 * *max; returns Σ x[j] after the update (summed in double), so log softmax(x)[j] = old x[j] −
 * *max − log(sum). Each x[j] within a few ulp of exp of the float difference. */
double k_exp_shift(float *x, size_t n, float *max);

/* Multi-head self-attention for B sequences of T tokens, post-projection inputs.
 *   q, k, v: [B*T, ld] with head h in columns h*D .. h*D+D-1 (ld ≥ heads*D, so q/k/v may be
 *            views into one fused [B*T, 3H] buffer);
 *   keep:    [B*T] key mask (1 = real token; NULL = all real);
 *   causal:  query i sees keys j ≤ i only;
 *   out:     [B*T, heads*D], heads merged back head-major.
 * Scores are q·kᵀ / sqrt(D). Returns -1 only when out of memory for the per-thread scratch. */
int k_attention(const float *q, const float *k, const float *v, size_t ld, const unsigned char *keep, int causal,
                size_t B, size_t T, size_t heads, size_t D, float *out);

/* Causal attention of Tq new queries over Tk ≥ Tq cached keys (the last Tq of which are the
 * queries' own positions), as a decoder with a KV cache needs: query i sees keys
 * 0 .. Tk-Tq+i.  q: [Tq, ldq]; k, v: [Tk, ldkv]; out: [Tq, heads*D]; scratch: Tq*Tk floats. */
void k_attention_cached(const float *q, size_t ldq, const float *k, const float *v, size_t ldkv, size_t Tq,
                        size_t Tk, size_t heads, size_t D, float *out, float *scratch);

/* Naive references, for tests. */
void kref_linear(const float *x, const float *w, const float *b, float *y, size_t M, size_t N, size_t K);
void kref_conv1d(const float *x, const float *w, const float *b, float *y, size_t M, size_t N, size_t K);
void kref_layernorm(const float *x, const float *g, const float *b, float *y, size_t rows, size_t H, float eps);
void kref_attention(const float *q, const float *k, const float *v, size_t ld, const unsigned char *keep,
                    int causal, size_t T, size_t heads, size_t D, float *out);

#endif
