/* gpt2_train.c — GPT-2 forward with saved activations, and the backward pass through the
 * frozen base into adapter gradients (see gpt2_train.h).
 *
 * Shapes: B rows, T tokens per row, nvp prompt-tuning virtual tokens in front of each row
 * (Tp = nvp + T rows per sequence at most, R = Σ len ≤ B·Tp real rows in all), npre prefix keys per layer
 * (Tk = npre + Tp keys at most), C = n_embd, NI = n_inner, H heads of D, V vocab, r LoRA rank.
 * Only real rows are computed: the activations hold the B sequences back to back, sequence
 * b's len[b] rows from row off[b] (R = Σ len rows in all), so padding costs nothing in any
 * product (pads sit after every real token: causal attention never sees them, and their
 * gradients are exactly zero). Products over all R rows go to OpenBLAS; attention runs per
 * sequence and head. Dropout masks are still indexed as over the padded [B, Tp, ·] layout
 * (gpt2_train.h), so they do not depend on how the rows are stored.
 */
#include "gpt2_train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "gpt2_impl.h"
#include "kernels.h"

/* Element-wise loops built for AVX2 too, picked at load time (as kernels.c does). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VECTOR __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define VECTOR
#endif

/* Saved activations of one block. */
typedef struct {
    float *xin;          /* [R, C] the block's input (the residual stream) */
    float *ln1, *mu1, *rs1; /* [R, C], [R], [R] */
    float *qkv;          /* [R, 3C] */
    float *att;          /* [B, H, Tp, Tk] softmax probabilities */
    float *ctx;          /* [R, C] heads merged */
    float *xmid;         /* [R, C] after the attention residual */
    float *ln2, *mu2, *rs2;
    float *fcpre, *fcact; /* [R, NI] before and after gelu_new */
    float *z[ADP_N_MODULES]; /* [R, r] LoRA x·Aᵀ of each adapted module */
} act_block;

/* Views into the scratch shared by the forward (dropout, K/V, gathered rows) and the backward. */
typedef struct {
    float *Kc, *Vc, *dKc, *dVc; /* [Tk, C] each: one sequence's keys and values, and their gradients */
    float *dP;                  /* [Tp, Tk] */
    float *dx, *dsmall;         /* [R, C] */
    float *dbig;                /* [R, max(3C, NI)] */
    float *dz;                  /* [R, max r] */
    float *drop;                /* [R, max(3C, NI)]: a LoRA input after dropout */
    float *dy;                  /* [R, C]: a block output's gradient through resid dropout */
    float *Pd;                  /* [Tp, Tk]: one head's attention probabilities after dropout */
    float *hs;                  /* [N, C]: the scored rows of ln_f's output, or their gradient */
} scratch_views;

struct gpt2t {
    const gpt2_model *m;
    /* the last forward */
    const adp_adapter *a;
    int trained;                 /* activations of a training forward are held */
    size_t B, T, Tp, R, nvp, npre, Tk, N;
    gpt2t_dropout drop;          /* all zero unless a training forward asked for dropout */
    size_t *len;                 /* [B] real rows per sequence, virtual ones included */
    size_t *off;                 /* [B] the first row of each sequence: Σ len of those before */
    size_t *rows;                /* [N] internal row predicting each scored token */
    int32_t *tgt;                /* [N] its token */
    size_t *out_at;              /* [N] its index in logp[B, T] */
    act_block *blk;              /* [n_layer] */
    float *xf, *lnf, *muf, *rsf; /* final residual [R, C], ln_f output, stats */
    float *probs;                /* [N, V] exp(z − max z) of the scored rows' logits z */
    float *inv_sum;              /* [N] 1 / Σ exp(z − max z): probs · inv_sum is the softmax */
    /* one arena for all of the above, one for backward scratch */
    float *arena, *scratch;
    size_t arena_cap, scratch_cap;
    size_t *idx;
    size_t idx_cap;
};

gpt2t *gpt2t_create(const gpt2_model *m)
{
    gpt2t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->m = m;
    t->blk = calloc(m->cfg.n_layer, sizeof *t->blk);
    if (!t->blk) {
        free(t);
        return NULL;
    }
    return t;
}

void gpt2t_free(gpt2t *t)
{
    if (!t)
        return;
    free(t->arena);
    free(t->scratch);
    free(t->idx);
    free(t->blk);
    free(t);
}

size_t gpt2t_bytes(const gpt2t *t)
{
    return (t->arena_cap + t->scratch_cap) * sizeof(float) + t->idx_cap * sizeof(size_t);
}

/* Grows *buf to at least n elements of size `sz` (contents not kept). */
/* Buffers of 2 MB and more are aligned to 2 MB and offered to the kernel for huge pages: the
 * activations are hundreds of MB, touched once per step, and 4 KB pages would cost a fault
 * each on first use and TLB misses on every pass. */
#define HUGE_PAGE ((size_t)2 << 20)

static int grow(void **buf, size_t *cap, size_t n, size_t sz)
{
    if (n <= *cap)
        return 0;
    free(*buf);
    size_t bytes = n * sz;
    if (bytes >= HUGE_PAGE) {
        bytes = (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
        *buf = aligned_alloc(HUGE_PAGE, bytes);
        if (*buf)
            madvise(*buf, bytes, MADV_HUGEPAGE); /* advice only: without THP, plain pages */
    } else {
        *buf = malloc(bytes);
    }
    if (!*buf) {
        *cap = 0;
        return -1;
    }
    *cap = n;
    return 0;
}

/* ---- layernorm and gelu_new, forward and backward ---- */

/* y[R,H] = LN(x) with the mean and 1/std of every row saved. */
static void ln_forward(const float *x, const float *g, const float *b, float *y, float *mu, float *rs, size_t rows,
                       size_t H, float eps)
{
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * H;
        float *yr = y + r * H;
        float mean = 0.0f, var = 0.0f;
        for (size_t i = 0; i < H; i++)
            mean += xr[i];
        mean /= (float)H;
        for (size_t i = 0; i < H; i++)
            var += (xr[i] - mean) * (xr[i] - mean);
        var /= (float)H;
        float inv = 1.0f / sqrtf(var + eps);
        for (size_t i = 0; i < H; i++)
            yr[i] = (xr[i] - mean) * inv * g[i] + b[i];
        mu[r] = mean;
        rs[r] = inv;
    }
}

/* dx[R,H] += dLN/dx · dy, with x̂ = (x − μ)·rs:  dx = rs·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)), dx̂ = dy·g. */
static void ln_backward(const float *dy, const float *x, const float *mu, const float *rs, const float *g, float *dx,
                        size_t rows, size_t H)
{
    for (size_t r = 0; r < rows; r++) {
        const float *dyr = dy + r * H, *xr = x + r * H;
        float *dxr = dx + r * H;
        float s1 = 0.0f, s2 = 0.0f;
        for (size_t i = 0; i < H; i++) {
            float d = dyr[i] * g[i], xh = (xr[i] - mu[r]) * rs[r];
            s1 += d;
            s2 += d * xh;
        }
        s1 /= (float)H;
        s2 /= (float)H;
        for (size_t i = 0; i < H; i++) {
            float d = dyr[i] * g[i], xh = (xr[i] - mu[r]) * rs[r];
            dxr[i] += rs[r] * (d - s1 - xh * s2);
        }
    }
}

/* d[i] *= gelu_new'(x[i]), from the forward's y = gelu_new(x) = x·s, s = (1 + tanh u)/2,
 * u = c(x + k x³): tanh' = 1 − tanh² = 4s(1 − s), so gelu' = s + 2x·s(1 − s)·c(1 + 3k x²),
 * with no transcendental (and consistent with whatever tanh the forward used). */
static VECTOR void gelu_backward(const float *x, const float *y, float *d, size_t n)
{
    const float c = 0.7978845608028654f, k = 0.044715f;
    for (size_t i = 0; i < n; i++) {
        float v = x[i], s = fabsf(v) > 1e-20f ? y[i] / v : 0.5f;
        d[i] *= s + 2.0f * v * s * (1.0f - s) * c * (1.0f + 3.0f * k * v * v);
    }
}

/* dh[n] = w[n] · (W[tgt[n]] − inv_sum[n] · G[n]) for C columns: the gradient at the ln_f
 * output of w · log softmax(h·Wᵀ)[tgt], where G = exp(z − max)·W is already in dh. */
static VECTOR void lm_head_backward_row(float *dh, const float *wt, float w, float inv_sum, size_t C)
{
    for (size_t j = 0; j < C; j++)
        dh[j] = w * (wt[j] - inv_sum * dh[j]);
}

/* ---- dropout: masks from a counter-based RNG (splitmix64's finalizer) ---- */

static uint64_t mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

uint64_t gpt2t_dropout_key(uint64_t seed, size_t layer, int site)
{
    return mix64(seed ^ mix64(((uint64_t)layer << 8) | (uint64_t)site));
}

/* A uniform in [0, 1) with 24 bits from the element's hash; kept when it is ≥ p. */
int gpt2t_dropout_keep(uint64_t key, size_t i, float p)
{
    return (float)(mix64(key + i) >> 40) * (1.0f / 16777216.0f) >= p;
}

/* out[i] = x[i] · mask[i0+i] / (1−p), for n elements from index i0 (out may be x). */
static void dropout_apply(const float *x, float *out, size_t n, float p, uint64_t key, size_t i0)
{
    float scale = 1.0f / (1.0f - p);
    for (size_t i = 0; i < n; i++)
        out[i] = gpt2t_dropout_keep(key, i0 + i, p) ? x[i] * scale : 0.0f;
}

/* dropout_apply over all R rows of `width` columns, element (b, i, j) indexed as in the padded
 * [B, Tp, width] layout. */
static void dropout_rows(const gpt2t *t, const float *x, float *out, size_t width, float p, uint64_t key)
{
    for (size_t b = 0; b < t->B; b++)
        dropout_apply(x + t->off[b] * width, out + t->off[b] * width, t->len[b] * width, p, key, b * t->Tp * width);
}

/* ---- LoRA branch: y += s·(drop(u)·Aᵀ)·Bᵀ ---- */

static void lora_forward(gpt2t *t, const adp_lora *lo, size_t l, int mod, const float *u, float *y, float *z,
                         float *drop)
{
    size_t R = t->R;
    const float *x = u;
    if (t->drop.lora > 0.0f) {
        dropout_rows(t, u, drop, lo->in, t->drop.lora, gpt2t_dropout_key(t->drop.seed, l, mod));
        x = drop;
    }
    k_gemm(0, 1, R, lo->r, lo->in, 1.0f, x, lo->in, lo->A, lo->in, 0.0f, z, lo->r);
    k_gemm(0, 1, R, lo->out, lo->r, lo->scaling, z, lo->r, lo->B, lo->r, 1.0f, y, lo->out);
}

/* With dy[R,out]: gB += s·dyᵀ·z; dz = s·dy·B; gA += dzᵀ·drop(u); du += drop'(dz·A) (du NULL:
 * the input's gradient is not needed). */
static void lora_backward(gpt2t *t, const adp_lora *lo, size_t l, int mod, const float *u, const float *dy,
                          const float *z, float *du, float *grad, float *dz, float *drop)
{
    size_t R = t->R;
    const float *w0 = t->a->weights;
    float *gA = grad + (lo->A - w0), *gB = grad + (lo->B - w0);
    k_gemm(1, 0, lo->out, lo->r, R, lo->scaling, dy, lo->out, z, lo->r, 1.0f, gB, lo->r);
    k_gemm(0, 0, R, lo->r, lo->out, lo->scaling, dy, lo->out, lo->B, lo->r, 0.0f, dz, lo->r);
    if (t->drop.lora > 0.0f) {
        uint64_t key = gpt2t_dropout_key(t->drop.seed, l, mod);
        dropout_rows(t, u, drop, lo->in, t->drop.lora, key);
        k_gemm(1, 0, lo->r, lo->in, R, 1.0f, dz, lo->r, drop, lo->in, 1.0f, gA, lo->in);
        if (du) { /* d drop(u)/du is the same mask and scale, applied to dz·A */
            k_gemm(0, 0, R, lo->in, lo->r, 1.0f, dz, lo->r, lo->A, lo->in, 0.0f, drop, lo->in);
            dropout_rows(t, drop, drop, lo->in, t->drop.lora, key);
            k_add(du, drop, R * lo->in);
        }
    } else {
        k_gemm(1, 0, lo->r, lo->in, R, 1.0f, dz, lo->r, u, lo->in, 1.0f, gA, lo->in);
        if (du)
            k_gemm(0, 0, R, lo->in, lo->r, 1.0f, dz, lo->r, lo->A, lo->in, 1.0f, du, lo->in);
    }
}

/* ---- attention ---- */

/* The keys and values sequence b sees in layer l: npre prefix rows, then its own real rows. */
static void gather_kv(const gpt2t *t, size_t l, size_t b, const float *qkv, float *Kc, float *Vc)
{
    size_t C = t->m->cfg.n_embd, L = t->m->cfg.n_layer;
    for (size_t j = 0; j < t->npre; j++) {
        const float *row = t->a->prompt + j * 2 * L * C;
        memcpy(Kc + j * C, row + 2 * l * C, C * sizeof(float));
        memcpy(Vc + j * C, row + (2 * l + 1) * C, C * sizeof(float));
    }
    for (size_t i = 0; i < t->len[b]; i++) {
        const float *src = qkv + (t->off[b] + i) * 3 * C;
        memcpy(Kc + (t->npre + i) * C, src + C, C * sizeof(float));
        memcpy(Vc + (t->npre + i) * C, src + 2 * C, C * sizeof(float));
    }
}

/* P ⊙ mask / (1−p) of head h of sequence b (its first Lq rows, nk columns) into Pd [Lq, nk]. */
static void attn_dropout(const gpt2t *t, size_t l, size_t b, size_t h, const float *P, size_t Lq, size_t nk,
                         float *Pd)
{
    uint64_t key = gpt2t_dropout_key(t->drop.seed, l, GPT2T_DROP_ATTN);
    size_t NH = t->m->cfg.n_head;
    for (size_t i = 0; i < Lq; i++)
        dropout_apply(P + i * t->Tk, Pd + i * nk, nk, t->drop.attn, key, ((b * NH + h) * t->Tp + i) * t->Tk);
}

static void attn_forward(gpt2t *t, size_t l, act_block *k, float *Kc, float *Vc, float *Pd)
{
    const gpt2_config *c = &t->m->cfg;
    size_t C = c->n_embd, NH = c->n_head, D = C / NH, Tp = t->Tp, Tk = t->Tk;
    const float scale = 1.0f / sqrtf((float)D);
    for (size_t b = 0; b < t->B; b++) {
        size_t Lq = t->len[b], nk = t->npre + Lq, row0 = t->off[b];
        gather_kv(t, l, b, k->qkv, Kc, Vc);
        for (size_t h = 0; h < NH; h++) {
            float *S = k->att + ((b * NH + h) * Tp) * Tk;
            k_gemm(0, 1, Lq, nk, D, scale, k->qkv + row0 * 3 * C + h * D, 3 * C, Kc + h * D, C, 0.0f, S, Tk);
            for (size_t i = 0; i < Lq; i++) {
                size_t n = t->npre + i + 1;
                k_softmax_rows(S + i * Tk, NULL, 1, n);
                if (n < nk)
                    memset(S + i * Tk + n, 0, (nk - n) * sizeof(float));
            }
            if (t->drop.attn > 0.0f) { /* the saved probabilities stay undropped for the backward */
                attn_dropout(t, l, b, h, S, Lq, nk, Pd);
                k_gemm(0, 0, Lq, D, nk, 1.0f, Pd, nk, Vc + h * D, C, 0.0f, k->ctx + row0 * C + h * D, C);
            } else {
                k_gemm(0, 0, Lq, D, nk, 1.0f, S, Tk, Vc + h * D, C, 0.0f, k->ctx + row0 * C + h * D, C);
            }
        }
    }
}

/* dctx[R,C] → dqkv[R,3C] (overwritten) and the prefix keys/values' gradients. */
static void attn_backward(gpt2t *t, size_t l, const act_block *k, const float *dctx, float *dqkv, float *grad,
                          const scratch_views *sv)
{
    float *Kc = sv->Kc, *Vc = sv->Vc, *dKc = sv->dKc, *dVc = sv->dVc, *dP = sv->dP;
    const gpt2_config *c = &t->m->cfg;
    size_t C = c->n_embd, NH = c->n_head, D = C / NH, Tp = t->Tp, Tk = t->Tk, L = c->n_layer;
    const float scale = 1.0f / sqrtf((float)D);
    memset(dqkv, 0, t->R * 3 * C * sizeof(float));
    for (size_t b = 0; b < t->B; b++) {
        size_t Lq = t->len[b], nk = t->npre + Lq, row0 = t->off[b];
        gather_kv(t, l, b, k->qkv, Kc, Vc);
        memset(dKc, 0, nk * C * sizeof(float));
        memset(dVc, 0, nk * C * sizeof(float));
        for (size_t h = 0; h < NH; h++) {
            const float *P = k->att + ((b * NH + h) * Tp) * Tk, *dO = dctx + row0 * C + h * D;
            const float *Q = k->qkv + row0 * 3 * C + h * D;
            k_gemm(0, 1, Lq, nk, D, 1.0f, dO, C, Vc + h * D, C, 0.0f, dP, nk);      /* dP = dO·Vᵀ */
            if (t->drop.attn > 0.0f) { /* through the dropped probabilities: the same mask on dP */
                attn_dropout(t, l, b, h, P, Lq, nk, sv->Pd);
                k_gemm(1, 0, nk, D, Lq, 1.0f, sv->Pd, nk, dO, C, 1.0f, dVc + h * D, C);
                uint64_t key = gpt2t_dropout_key(t->drop.seed, l, GPT2T_DROP_ATTN);
                for (size_t i = 0; i < Lq; i++)
                    dropout_apply(dP + i * nk, dP + i * nk, nk, t->drop.attn, key, ((b * NH + h) * Tp + i) * Tk);
            } else {
                k_gemm(1, 0, nk, D, Lq, 1.0f, P, Tk, dO, C, 1.0f, dVc + h * D, C);  /* dV = Pᵀ·dO */
            }
            for (size_t i = 0; i < Lq; i++) {                                      /* dS = P⊙(dP − Σ P·dP) */
                const float *p = P + i * Tk;
                float *d = dP + i * nk, dot = 0.0f;
                size_t n = t->npre + i + 1;
                for (size_t j = 0; j < n; j++)
                    dot += p[j] * d[j];
                for (size_t j = 0; j < n; j++)
                    d[j] = p[j] * (d[j] - dot) * scale;
                for (size_t j = n; j < nk; j++)
                    d[j] = 0.0f;
            }
            k_gemm(0, 0, Lq, D, nk, 1.0f, dP, nk, Kc + h * D, C, 1.0f, dqkv + row0 * 3 * C + h * D, 3 * C); /* dQ */
            k_gemm(1, 0, nk, D, Lq, 1.0f, dP, nk, Q, 3 * C, 1.0f, dKc + h * D, C);                        /* dK */
        }
        for (size_t j = 0; j < t->npre; j++) {
            float *g = grad + (t->a->prompt - t->a->weights) + j * 2 * L * C;
            k_add(g + 2 * l * C, dKc + j * C, C);
            k_add(g + (2 * l + 1) * C, dVc + j * C, C);
        }
        for (size_t i = 0; i < Lq; i++) {
            float *dst = dqkv + (row0 + i) * 3 * C;
            k_add(dst + C, dKc + (t->npre + i) * C, C);
            k_add(dst + 2 * C, dVc + (t->npre + i) * C, C);
        }
    }
}

/* The gradient of a sublayer's output from that of the residual sum: dx itself, or dx
 * through resid dropout's mask (into dy). */
static const float *resid_backward(const gpt2t *t, const float *dx, float *dy, size_t l, int site)
{
    if (t->drop.resid <= 0.0f)
        return dx;
    dropout_rows(t, dx, dy, t->m->cfg.n_embd, t->drop.resid, gpt2t_dropout_key(t->drop.seed, l, site));
    return dy;
}

/* ---- the passes ---- */

static size_t max_rank(const gpt2t *t)
{
    size_t rmax = 0;
    for (size_t l = 0; l < t->m->cfg.n_layer; l++)
        for (int mod = 0; mod < ADP_N_MODULES; mod++) {
            const adp_lora *lo = adp_lora_at(t->a, l, (adp_module)mod);
            rmax = lo && lo->r > rmax ? lo->r : rmax;
        }
    return rmax;
}

/* Points the saved activations into one arena sized for this batch. */
static int layout(gpt2t *t, mdl_error *err)
{
    const gpt2_config *c = &t->m->cfg;
    size_t C = c->n_embd, NI = c->n_inner, NH = c->n_head, R = t->R, V = c->vocab;
    size_t zsum = 0;
    for (size_t l = 0; l < c->n_layer; l++)
        for (int mod = 0; mod < ADP_N_MODULES; mod++) {
            const adp_lora *lo = adp_lora_at(t->a, l, (adp_module)mod);
            zsum += lo ? R * lo->r : 0;
        }
    size_t total = c->n_layer * (R * (8 * C + 2 * NI + 4) + t->B * NH * t->Tp * t->Tk) + zsum + R * (2 * C + 2) +
                   t->N * (V + 1);
    if (grow((void **)&t->arena, &t->arena_cap, total, sizeof(float)))
        return mdl_fail(err, MDL_ENOMEM, "out of memory for %zu activations", total);
    float *p = t->arena;
#define TAKE(n) (p += (n), p - (n))
    for (size_t l = 0; l < c->n_layer; l++) {
        act_block *k = &t->blk[l];
        k->xin = TAKE(R * C);
        k->ln1 = TAKE(R * C);
        k->mu1 = TAKE(R);
        k->rs1 = TAKE(R);
        k->qkv = TAKE(R * 3 * C);
        k->att = TAKE(t->B * NH * t->Tp * t->Tk);
        k->ctx = TAKE(R * C);
        k->xmid = TAKE(R * C);
        k->ln2 = TAKE(R * C);
        k->mu2 = TAKE(R);
        k->rs2 = TAKE(R);
        k->fcpre = TAKE(R * NI);
        k->fcact = TAKE(R * NI);
        for (int mod = 0; mod < ADP_N_MODULES; mod++) {
            const adp_lora *lo = adp_lora_at(t->a, l, (adp_module)mod);
            k->z[mod] = lo ? TAKE(R * lo->r) : NULL;
        }
    }
    t->xf = TAKE(R * C);
    t->lnf = TAKE(R * C);
    t->muf = TAKE(R);
    t->rsf = TAKE(R);
    t->probs = TAKE(t->N * V);
    t->inv_sum = TAKE(t->N);
#undef TAKE
    return 0;
}

static int scratch(gpt2t *t, scratch_views *v, mdl_error *err)
{
    const gpt2_config *c = &t->m->cfg;
    size_t C = c->n_embd, NI = c->n_inner, R = t->R, big = 3 * C > NI ? 3 * C : NI;
    size_t n = 4 * t->Tk * C + 2 * t->Tp * t->Tk + 3 * R * C + 2 * R * big + R * max_rank(t) + t->N * C;
    if (grow((void **)&t->scratch, &t->scratch_cap, n, sizeof(float)))
        return mdl_fail(err, MDL_ENOMEM, "out of memory for the scratch of %zu rows", R);
    float *p = t->scratch;
#define TAKE(n) (p += (n), p - (n))
    v->Kc = TAKE(t->Tk * C);
    v->Vc = TAKE(t->Tk * C);
    v->dKc = TAKE(t->Tk * C);
    v->dVc = TAKE(t->Tk * C);
    v->dP = TAKE(t->Tp * t->Tk);
    v->dx = TAKE(R * C);
    v->dsmall = TAKE(R * C);
    v->dbig = TAKE(R * big);
    v->dz = TAKE(R * max_rank(t));
    v->drop = TAKE(R * big);
    v->dy = TAKE(R * C);
    v->Pd = TAKE(t->Tp * t->Tk);
    v->hs = TAKE(t->N * C);
#undef TAKE
    return 0;
}

int gpt2t_forward(gpt2t *t, const adp_adapter *a, const gpt2t_batch *bt, int train, const gpt2t_dropout *drop,
                  float *logp, mdl_error *err)
{
    const gpt2_model *m = t->m;
    const gpt2_config *c = &m->cfg;
    size_t C = c->n_embd, NI = c->n_inner, V = c->vocab, B = bt->B, T = bt->T;
    t->trained = 0;
    if (a && adp_check_base(a, c, err))
        return err ? err->code : MDL_EINPUT;
    if (B == 0 || T == 0)
        return mdl_fail(err, MDL_EINPUT, "an empty batch");
    gpt2t_dropout d = train && drop ? *drop : (gpt2t_dropout){0};
    const float ps[4] = {d.lora, d.embd, d.attn, d.resid};
    for (int i = 0; i < 4; i++)
        if (!(ps[i] >= 0.0f && ps[i] < 1.0f))
            return mdl_fail(err, MDL_EINPUT, "dropout %g is outside [0, 1)", (double)ps[i]);
    t->a = a;
    t->nvp = a && a->cfg.type == ADP_PROMPT_TUNING ? a->cfg.num_virtual_tokens : 0;
    t->npre = a && a->cfg.type == ADP_PREFIX_TUNING ? a->cfg.num_virtual_tokens : 0;
    if (t->nvp + t->npre + T > c->n_positions)
        return mdl_fail(err, MDL_EINPUT, "%zu tokens and %zu virtual tokens are over the context of %zu", T,
                        t->nvp + t->npre, c->n_positions);
    t->B = B;
    t->T = T;
    t->Tp = t->nvp + T;
    t->Tk = t->npre + t->Tp;
    t->drop = d;
    size_t N = 0;
    for (size_t b = 0; b < B; b++) {
        if (bt->len[b] == 0 || bt->len[b] > T)
            return mdl_fail(err, MDL_EINPUT, "row %zu has length %zu (1..%zu)", b, bt->len[b], T);
        for (size_t i = 0; i < T; i++) {
            if (bt->ids[b * T + i] < 0 || (size_t)bt->ids[b * T + i] >= V)
                return mdl_fail(err, MDL_EINPUT, "token id %d is outside the vocabulary (%zu)", bt->ids[b * T + i], V);
            if (bt->scored[b * T + i] && (i == 0 || i >= bt->len[b]))
                return mdl_fail(err, MDL_EINPUT, "row %zu scores position %zu, which has no prefix or is padding", b, i);
            N += bt->scored[b * T + i] != 0;
        }
    }
    t->N = N;
    if (grow((void **)&t->idx, &t->idx_cap, 2 * B + 3 * N + 1, sizeof(size_t)))
        return mdl_fail(err, MDL_ENOMEM, "out of memory");
    t->len = t->idx;
    t->off = t->len + B;
    t->rows = t->off + B;
    t->out_at = t->rows + N;
    t->tgt = (int32_t *)(t->out_at + N); /* N int32 fit in N size_t */
    t->R = 0;
    for (size_t b = 0, n = 0; b < B; b++) {
        t->len[b] = t->nvp + bt->len[b];
        t->off[b] = t->R;
        t->R += t->len[b];
        for (size_t i = 1; i < bt->len[b]; i++)
            if (bt->scored[b * T + i]) {
                t->rows[n] = t->off[b] + t->nvp + i - 1;
                t->out_at[n] = b * T + i;
                t->tgt[n++] = bt->ids[b * T + i];
            }
    }
    scratch_views sv;
    int rc = layout(t, err);
    if (rc || (rc = scratch(t, &sv, err)) != 0)
        return rc;
    float *ldrop = sv.drop, *hs = sv.hs;
    size_t R = t->R;

    /* Embeddings: virtual rows (prompt tuning), then wte + wpe at positions after all virtual tokens. */
    float *x = t->blk[0].xin;
    if (c->n_layer == 0)
        x = t->xf;
    for (size_t b = 0; b < B; b++)
        for (size_t i = 0; i < t->len[b]; i++) {
            float *row = x + (t->off[b] + i) * C;
            const float *e = i < t->nvp ? a->prompt + i * C : m->wte + (size_t)bt->ids[b * T + i - t->nvp] * C;
            const float *p = m->wpe + (t->npre + i) * C;
            for (size_t j = 0; j < C; j++)
                row[j] = e[j] + p[j];
        }
    if (d.embd > 0.0f)
        dropout_rows(t, x, x, C, d.embd, gpt2t_dropout_key(d.seed, 0, GPT2T_DROP_EMBD));
    for (size_t l = 0; l < c->n_layer; l++) {
        act_block *k = &t->blk[l];
        const gpt2_block *w = &m->block[l];
        const adp_lora *lo;
        float *next = l + 1 < c->n_layer ? t->blk[l + 1].xin : t->xf;
        ln_forward(k->xin, w->ln1_g, w->ln1_b, k->ln1, k->mu1, k->rs1, R, C, c->ln_eps);
        k_conv1d(k->ln1, w->attn_w, w->attn_b, k->qkv, R, 3 * C, C);
        if ((lo = adp_lora_at(a, l, ADP_ATTN_C_ATTN)))
            lora_forward(t, lo, l, ADP_ATTN_C_ATTN, k->ln1, k->qkv, k->z[ADP_ATTN_C_ATTN], ldrop);
        attn_forward(t, l, k, sv.Kc, sv.Vc, sv.Pd);
        k_conv1d(k->ctx, w->aproj_w, w->aproj_b, k->xmid, R, C, C);
        if ((lo = adp_lora_at(a, l, ADP_ATTN_C_PROJ)))
            lora_forward(t, lo, l, ADP_ATTN_C_PROJ, k->ctx, k->xmid, k->z[ADP_ATTN_C_PROJ], ldrop);
        if (d.resid > 0.0f)
            dropout_rows(t, k->xmid, k->xmid, C, d.resid, gpt2t_dropout_key(d.seed, l, GPT2T_DROP_RESID_ATTN));
        k_add(k->xmid, k->xin, R * C);
        ln_forward(k->xmid, w->ln2_g, w->ln2_b, k->ln2, k->mu2, k->rs2, R, C, c->ln_eps);
        k_conv1d(k->ln2, w->fc_w, w->fc_b, k->fcpre, R, NI, C);
        if ((lo = adp_lora_at(a, l, ADP_MLP_C_FC)))
            lora_forward(t, lo, l, ADP_MLP_C_FC, k->ln2, k->fcpre, k->z[ADP_MLP_C_FC], ldrop);
        memcpy(k->fcact, k->fcpre, R * NI * sizeof(float));
        k_gelu_tanh(k->fcact, R * NI);
        k_conv1d(k->fcact, w->mproj_w, w->mproj_b, next, R, C, NI);
        if ((lo = adp_lora_at(a, l, ADP_MLP_C_PROJ)))
            lora_forward(t, lo, l, ADP_MLP_C_PROJ, k->fcact, next, k->z[ADP_MLP_C_PROJ], ldrop);
        if (d.resid > 0.0f)
            dropout_rows(t, next, next, C, d.resid, gpt2t_dropout_key(d.seed, l, GPT2T_DROP_RESID_MLP));
        k_add(next, k->xmid, R * C);
    }
    ln_forward(t->xf, m->lnf_g, m->lnf_b, t->lnf, t->muf, t->rsf, R, C, c->ln_eps);

    /* Only scored rows meet the vocabulary: gather them, project, log-softmax. */
    for (size_t n = 0; n < N; n++)
        memcpy(hs + n * C, t->lnf + t->rows[n] * C, C * sizeof(float));
    memset(logp, 0, B * T * sizeof(float));
    if (N)
        k_linear(hs, m->lm_head, NULL, t->probs, N, V, C);
    for (size_t n = 0; n < N; n++) { /* one exp per entry, kept unnormalized with 1/sum beside it */
        float *z = t->probs + n * V, zt = z[t->tgt[n]], max;
        double sum = k_exp_shift(z, V, &max);
        t->inv_sum[n] = (float)(1.0 / sum);
        logp[t->out_at[n]] = zt - (max + (float)log(sum));
    }
    t->trained = train != 0;
    return 0;
}

int gpt2t_backward(gpt2t *t, const float *dlogp, float *grad, mdl_error *err)
{
    if (!t->trained)
        return mdl_fail(err, MDL_EINPUT, "no training forward to backpropagate through");
    const gpt2_model *m = t->m;
    const gpt2_config *c = &m->cfg;
    const adp_adapter *a = t->a;
    size_t C = c->n_embd, NI = c->n_inner, V = c->vocab, R = t->R, N = t->N;
    scratch_views sv;
    int rc = scratch(t, &sv, err);
    if (rc)
        return rc;
    float *dx = sv.dx, *dbig = sv.dbig, *dsmall = sv.dsmall, *dz = sv.dz, *drop = sv.drop, *dh = sv.hs;

    /* dlogits = w·(onehot − p), so dh = dlogits·lm_head = w·(lm_head[tgt] − p·lm_head): one
     * product with the kept exponentials, then a row of C per token (not a pass over N·V). */
    if (N)
        k_gemm(0, 0, N, C, V, 1.0f, t->probs, V, m->lm_head, C, 0.0f, dh, C);
    for (size_t n = 0; n < N; n++)
        lm_head_backward_row(dh + n * C, m->lm_head + (size_t)t->tgt[n] * C, dlogp[t->out_at[n]], t->inv_sum[n], C);
    memset(dsmall, 0, R * C * sizeof(float));
    for (size_t n = 0; n < N; n++)
        k_add(dsmall + t->rows[n] * C, dh + n * C, C);
    memset(dx, 0, R * C * sizeof(float));
    ln_backward(dsmall, t->xf, t->muf, t->rsf, m->lnf_g, dx, R, C);

    /* Gradients stop at the lowest trainable weight: a LoRA's lowest adapted layer takes no
     * input gradient, and the layers under it nothing at all (prompt tuning needs them all,
     * down to the embeddings; prefix tuning has keys and values in every layer). */
    size_t lowest = 0;
    if (!t->nvp && a && a->cfg.type == ADP_LORA)
        while (lowest + 1 < c->n_layer && !adp_lora_at(a, lowest, ADP_ATTN_C_ATTN) &&
               !adp_lora_at(a, lowest, ADP_ATTN_C_PROJ) && !adp_lora_at(a, lowest, ADP_MLP_C_FC) &&
               !adp_lora_at(a, lowest, ADP_MLP_C_PROJ))
            lowest++;
    for (size_t l = c->n_layer; l-- > lowest;) {
        int below = l > lowest || t->nvp; /* the layer's input gradient is needed */
        const act_block *k = &t->blk[l];
        const gpt2_block *w = &m->block[l];
        const adp_lora *lo;
        /* MLP: dx is d(block output); d(mlp output) is dx through the resid dropout. */
        const float *dy = resid_backward(t, dx, sv.dy, l, GPT2T_DROP_RESID_MLP);
        k_gemm(0, 1, R, NI, C, 1.0f, dy, C, w->mproj_w, C, 0.0f, dbig, NI);
        if ((lo = adp_lora_at(a, l, ADP_MLP_C_PROJ)))
            lora_backward(t, lo, l, ADP_MLP_C_PROJ, k->fcact, dy, k->z[ADP_MLP_C_PROJ], dbig, grad, dz, drop);
        gelu_backward(k->fcpre, k->fcact, dbig, R * NI);
        k_gemm(0, 1, R, C, NI, 1.0f, dbig, NI, w->fc_w, NI, 0.0f, dsmall, C);
        if ((lo = adp_lora_at(a, l, ADP_MLP_C_FC)))
            lora_backward(t, lo, l, ADP_MLP_C_FC, k->ln2, dbig, k->z[ADP_MLP_C_FC], dsmall, grad, dz, drop);
        ln_backward(dsmall, k->xmid, k->mu2, k->rs2, w->ln2_g, dx, R, C);
        /* Attention: dx is now d(xmid). */
        dy = resid_backward(t, dx, sv.dy, l, GPT2T_DROP_RESID_ATTN);
        k_gemm(0, 1, R, C, C, 1.0f, dy, C, w->aproj_w, C, 0.0f, dsmall, C);
        if ((lo = adp_lora_at(a, l, ADP_ATTN_C_PROJ)))
            lora_backward(t, lo, l, ADP_ATTN_C_PROJ, k->ctx, dy, k->z[ADP_ATTN_C_PROJ], dsmall, grad, dz, drop);
        attn_backward(t, l, k, dsmall, dbig, grad, &sv);
        if (below)
            k_gemm(0, 1, R, C, 3 * C, 1.0f, dbig, 3 * C, w->attn_w, 3 * C, 0.0f, dsmall, C);
        if ((lo = adp_lora_at(a, l, ADP_ATTN_C_ATTN)))
            lora_backward(t, lo, l, ADP_ATTN_C_ATTN, k->ln1, dbig, k->z[ADP_ATTN_C_ATTN], below ? dsmall : NULL, grad,
                          dz, drop);
        if (below)
            ln_backward(dsmall, k->xin, k->mu1, k->rs1, w->ln1_g, dx, R, C);
    }
    /* Prompt tuning: the virtual rows' embedding gradients (through the embd dropout), summed
     * over the batch. */
    if (t->nvp && t->drop.embd > 0.0f)
        dropout_rows(t, dx, dx, C, t->drop.embd, gpt2t_dropout_key(t->drop.seed, 0, GPT2T_DROP_EMBD));
    for (size_t b = 0; b < t->B && t->nvp; b++)
        for (size_t i = 0; i < t->nvp; i++)
            k_add(grad + (a->prompt - a->weights) + i * C, dx + (t->off[b] + i) * C, C);
    t->trained = 0;
    return 0;
}
