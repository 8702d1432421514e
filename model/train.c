/* train.c — SFT and DPO of a PEFT adapter: data, initialization and the step loop (see train.h). */
#include "train.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


#include "gpt2_impl.h"
#include "gpt2_train.h"
#include "json_watch.h"
#include "kernels.h"
#include "model_config.h"
#include "optim.h"

/* One tokenized sequence: ids[0..n), the first scored (predicted) position `first` ≥ 1. */
typedef struct {
    size_t off, n, first;
} trn_seq;

struct trn_data {
    int dpo;
    size_t rows;     /* examples (SFT rows or DPO pairs) */
    trn_seq *seq;    /* SFT: [rows]; DPO: [2·rows], chosen then rejected of each pair */
    int32_t *ids;
    size_t n_ids, max_len;
};

void trn_data_free(trn_data *d)
{
    if (!d)
        return;
    free(d->seq);
    free(d->ids);
    free(d);
}

size_t trn_data_rows(const trn_data *d) { return d->rows; }

/* ---- data ---- */

static int encode(const tok_tokenizer *tok, const char *a, const char *b, tok_encoding *e, mdl_error *err)
{
    tok_error te;
    size_t na = strlen(a), nb = b ? strlen(b) : 0;
    char *s = malloc(na + nb + 1);
    if (!s)
        return mdl_fail(err, MDL_ENOMEM, "out of memory");
    memcpy(s, a, na);
    if (b)
        memcpy(s + na, b, nb);
    s[na + nb] = 0;
    tok_options o = {0, 0, TOK_TRUNCATE_RIGHT};
    int rc = tok_encode(tok, s, na + nb, NULL, 0, &o, e, &te);
    free(s);
    return rc ? mdl_fail(err, MDL_EINPUT, "%s", te.msg) : 0;
}

/* Appends prompt+completion (or text) to the id pool as one sequence, described in *seq. */
static int add_seq(trn_data *d, const tok_tokenizer *tok, int32_t eos, const char *prompt, const char *completion,
                   size_t max_length, int completion_only, trn_seq *seq, mdl_error *err)
{
    tok_encoding p = {0}, full = {0};
    int rc = 0;
    size_t first = 1;
    if (completion) {
        if ((rc = encode(tok, prompt, NULL, &p, err)) == 0 && (rc = encode(tok, prompt, completion, &full, err)) == 0)
            first = completion_only && p.len > 1 ? p.len : 1;
    } else {
        rc = encode(tok, prompt, NULL, &full, err);
    }
    size_t n = full.len + (full.len == 0 || full.ids[full.len - 1] != eos);
    if (!rc) {
        if (n > max_length)
            n = max_length;
        if (first >= n)
            rc = mdl_fail(err, MDL_EINPUT, "no %s token is left to learn within max_length %zu",
                          completion ? "completion" : "text", max_length);
    }
    int32_t *ids = rc ? NULL : realloc(d->ids, (d->n_ids + n) * sizeof *ids);
    if (!rc && !ids)
        rc = mdl_fail(err, MDL_ENOMEM, "out of memory");
    if (!rc) {
        d->ids = ids;
        for (size_t i = 0; i < n; i++)
            ids[d->n_ids + i] = i < full.len ? full.ids[i] : eos;
        *seq = (trn_seq){d->n_ids, n, first};
        d->n_ids += n;
        d->max_len = n > d->max_len ? n : d->max_len;
    }
    tok_encoding_free(&p);
    tok_encoding_free(&full);
    return rc;
}

int trn_data_build(const tok_tokenizer *tok, const gpt2_config *base, int dpo, const trn_row *rows, size_t n,
                   size_t max_length, int completion_only_loss, trn_data **out, size_t *bad_row, mdl_error *err)
{
    *out = NULL;
    *bad_row = n;
    int32_t eos = base->eos_id >= 0 ? base->eos_id : tok_eos_id(tok);
    if (eos < 0 || (size_t)eos >= base->vocab)
        return mdl_fail(err, MDL_EINPUT, "the model has no end-of-sequence token to append");
    if (n == 0 || n > TRN_MAX_ROWS)
        return mdl_fail(err, MDL_EINPUT, "%zu rows (1..%d)", n, TRN_MAX_ROWS);
    if (max_length < 2 || max_length > base->n_positions)
        return mdl_fail(err, MDL_EINPUT, "max_length %zu is outside 2..%zu", max_length, base->n_positions);
    trn_data *d = calloc(1, sizeof *d);
    if (!d)
        return mdl_fail(err, MDL_ENOMEM, "out of memory");
    d->dpo = dpo;
    d->seq = calloc(n * (dpo ? 2 : 1), sizeof *d->seq);
    int rc = d->seq ? 0 : mdl_fail(err, MDL_ENOMEM, "out of memory");
    for (size_t i = 0; i < n && !rc; i++) {
        const trn_row *r = &rows[i];
        if (dpo) {
            if (!r->prompt || !r->chosen || !r->rejected || r->text || r->completion)
                rc = mdl_fail(err, MDL_EINPUT, "a DPO row is {prompt, chosen, rejected}");
            else if ((rc = add_seq(d, tok, eos, r->prompt, r->chosen, max_length, 1, &d->seq[2 * i], err)) == 0)
                rc = add_seq(d, tok, eos, r->prompt, r->rejected, max_length, 1, &d->seq[2 * i + 1], err);
        } else if (r->text && !r->prompt && !r->completion) {
            rc = add_seq(d, tok, eos, r->text, NULL, max_length, 0, &d->seq[i], err);
        } else if (r->prompt && r->completion && !r->text) {
            rc = add_seq(d, tok, eos, r->prompt, r->completion, max_length, completion_only_loss, &d->seq[i], err);
        } else {
            rc = mdl_fail(err, MDL_EINPUT, "an SFT row is {prompt, completion} or {text}");
        }
        if (rc)
            *bad_row = i;
        else
            d->rows++;
    }
    if (rc) {
        trn_data_free(d);
        return rc;
    }
    *out = d;
    return 0;
}

/* ---- the base's dropout ---- */

int trn_read_base_dropout(const char *model_dir, trn_base_dropout *out, mdl_error *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", model_dir);
    json_error_t je;
    json_t *cfg = jsonw_load_file(path, JSON_REJECT_DUPLICATES, &je, NULL);
    if (!cfg)
        return mdl_fail(err, MDL_EIO, "%s: %s", path, je.text);
    static const char *const keys[3] = {"embd_pdrop", "attn_pdrop", "resid_pdrop"};
    float *dst[3] = {&out->embd_pdrop, &out->attn_pdrop, &out->resid_pdrop};
    int rc = 0;
    for (int i = 0; i < 3 && !rc; i++) /* GPT2Config's default: 0.1 */
        if ((rc = mdl_config_eps(cfg, keys[i], 0.1f, dst[i], path, err)) == 0 && !(*dst[i] < 1.0f))
            rc = mdl_fail(err, MDL_EFORMAT, "%s: '%s' must be below 1", path, keys[i]);
    json_decref(cfg);
    return rc;
}

/* ---- random numbers (splitmix64; Box-Muller normals) ---- */

typedef struct {
    uint64_t s;
} rng_t;

static uint64_t rng_next(rng_t *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double rng_uniform(rng_t *r) { return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }

static double rng_normal(rng_t *r)
{
    double u = rng_uniform(r), v = rng_uniform(r);
    return sqrt(-2.0 * log(u > 0 ? u : 1e-300)) * cos(2.0 * M_PI * v);
}

static void fill_uniform(rng_t *r, float *x, size_t n, double bound)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)((rng_uniform(r) * 2.0 - 1.0) * bound);
}

static void fill_normal(rng_t *r, float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)rng_normal(r);
}

/* ---- the prefix projection MLP ---- */

size_t trn_prefix_mlp_size(size_t nvt, size_t C, size_t H, size_t L)
{
    return nvt * C + H * C + H + 2 * L * C * H + 2 * L * C;
}

int trn_prefix_mlp_forward(const float *theta, size_t nvt, size_t C, size_t H, size_t L, float *prompt)
{
    size_t O = 2 * L * C;
    const float *E = theta, *W1 = E + nvt * C, *b1 = W1 + H * C, *W2 = b1 + H, *b2 = W2 + O * H;
    float *hid = malloc(nvt * H * sizeof(float));
    if (!hid)
        return MDL_ENOMEM;
    k_linear(E, W1, b1, hid, nvt, H, C);
    for (size_t i = 0; i < nvt * H; i++)
        hid[i] = tanhf(hid[i]);
    k_linear(hid, W2, b2, prompt, nvt, O, H);
    free(hid);
    return 0;
}

int trn_prefix_mlp_backward(const float *theta, size_t nvt, size_t C, size_t H, size_t L, const float *dprompt,
                            float *dtheta)
{
    size_t O = 2 * L * C;
    const float *E = theta, *W1 = E + nvt * C, *b1 = W1 + H * C, *W2 = b1 + H;
    float *dE = dtheta, *dW1 = dE + nvt * C, *db1 = dW1 + H * C, *dW2 = db1 + H, *db2 = dW2 + O * H;
    float *hid = malloc(2 * nvt * H * sizeof(float));
    if (!hid)
        return MDL_ENOMEM;
    float *dh = hid + nvt * H;
    k_linear(E, W1, b1, hid, nvt, H, C);
    for (size_t i = 0; i < nvt * H; i++)
        hid[i] = tanhf(hid[i]);
    for (size_t t = 0; t < nvt; t++)
        k_add(db2, dprompt + t * O, O);
    /* dW2[O,H] += dPᵀ·hid; dh[nvt,H] = dP·W2 */
    k_gemm(1, 0, O, H, nvt, 1.0f, dprompt, O, hid, H, 1.0f, dW2, H);
    k_gemm(0, 0, nvt, H, O, 1.0f, dprompt, O, W2, H, 0.0f, dh, H);
    for (size_t i = 0; i < nvt * H; i++)
        dh[i] *= 1.0f - hid[i] * hid[i];
    for (size_t t = 0; t < nvt; t++)
        k_add(db1, dh + t * H, H);
    k_gemm(1, 0, H, C, nvt, 1.0f, dh, H, E, C, 1.0f, dW1, C);
    k_gemm(0, 0, nvt, C, H, 1.0f, dh, H, W1, C, 1.0f, dE, C);
    free(hid);
    return 0;
}

/* ---- initialization ---- */

static int init_adapter(const gpt2_model *m, const tok_tokenizer *tok, const trn_params *p, adp_adapter *a,
                        float *theta, rng_t *r, mdl_error *err)
{
    const gpt2_config *c = &m->cfg;
    if (p->init_adapter) {
        const adp_adapter *src = p->init_adapter;
        if (src->cfg.type != a->cfg.type || src->n_weights != a->n_weights || p->prefix_projection)
            return mdl_fail(err, MDL_EINPUT, "init_adapter is a %s adapter of another shape", adp_type_name(src->cfg.type));
        memcpy(a->weights, src->weights, a->n_weights * sizeof(float));
        return 0;
    }
    size_t nvt = a->cfg.num_virtual_tokens, C = c->n_embd;
    switch (a->cfg.type) {
    case ADP_LORA:
        for (size_t l = 0; l < c->n_layer; l++)
            for (int mod = 0; mod < ADP_N_MODULES; mod++) {
                const adp_lora *lo = adp_lora_at(a, l, (adp_module)mod);
                if (lo) { /* kaiming_uniform(a=√5) on [r, in]: bound 1/√in; B stays zero */
                    fill_uniform(r, lo->A, lo->r * lo->in, 1.0 / sqrt((double)lo->in));
                    memset(lo->B, 0, lo->out * lo->r * sizeof(float));
                }
            }
        return 0;
    case ADP_PROMPT_TUNING:
        if (p->prompt_init == TRN_INIT_TEXT) {
            tok_encoding e = {0};
            int rc = encode(tok, p->prompt_init_text ? p->prompt_init_text : "", NULL, &e, err);
            if (!rc && e.len == 0)
                rc = mdl_fail(err, MDL_EINPUT, "prompt_tuning_init_text has no tokens");
            for (size_t i = 0; !rc && i < nvt; i++) /* repeated, then cut to nvt */
                memcpy(a->prompt + i * C, m->wte + (size_t)e.ids[i % e.len] * C, C * sizeof(float));
            tok_encoding_free(&e);
            return rc;
        }
        fill_normal(r, a->prompt, nvt * C);
        return 0;
    case ADP_PREFIX_TUNING:
        if (p->prefix_projection) {
            size_t H = p->encoder_hidden_size, L = c->n_layer, O = 2 * L * C;
            fill_normal(r, theta, nvt * C);
            fill_uniform(r, theta + nvt * C, H * C + H, 1.0 / sqrt((double)C)); /* W1, b1: fan_in C */
            fill_uniform(r, theta + nvt * C + H * C + H, O * H + O, 1.0 / sqrt((double)H));
            return trn_prefix_mlp_forward(theta, nvt, C, H, L, a->prompt) ? mdl_fail(err, MDL_ENOMEM, "out of memory")
                                                                            : 0;
        }
        fill_normal(r, a->prompt, a->n_weights);
        return 0;
    default:
        return mdl_fail(err, MDL_EINPUT, "unknown adapter type");
    }
}

/* ---- the step loop ---- */

long trn_total_steps(const trn_params *p, size_t rows)
{
    size_t bs = p->batch_size ? p->batch_size : 1, ga = p->grad_accum ? p->grad_accum : 1;
    size_t micro = (rows + bs - 1) / bs;
    return (long)(p->epochs * ((micro + ga - 1) / ga));
}

typedef struct {
    int32_t *ids;
    size_t *len;
    unsigned char *scored;
    float *logp, *dlogp, *ref_tok, *ref;
} batch_buf;

static void batch_free(batch_buf *bb)
{
    free(bb->ids);
    free(bb->len);
    free(bb->scored);
    free(bb->logp);
    free(bb->dlogp);
    free(bb->ref_tok);
    free(bb->ref);
}

/* Buffers for batches of up to B rows of T tokens: 1, or 0 when out of memory. */
static int batch_alloc(batch_buf *bb, size_t B, size_t T)
{
    *bb = (batch_buf){malloc(B * T * sizeof(int32_t)), malloc(B * sizeof(size_t)), malloc(B * T),
                      malloc(B * T * sizeof(float)), malloc(B * T * sizeof(float)), malloc(B * T * sizeof(float)),
                      malloc(B * sizeof(float))};
    return bb->ids && bb->len && bb->scored && bb->logp && bb->dlogp && bb->ref_tok && bb->ref;
}

/* Fills rows [first, first+k) of the permutation into a padded batch (DPO: chosen rows,
 * then rejected rows). Returns the scored-token count. */
static size_t fill_batch(const trn_data *d, const size_t *perm, size_t first, size_t k, size_t T, batch_buf *bb,
                         size_t *B)
{
    size_t per = d->dpo ? 2 : 1, scored = 0;
    *B = k * per;
    memset(bb->scored, 0, *B * T);
    for (size_t half = 0; half < per; half++)
        for (size_t i = 0; i < k; i++) {
            const trn_seq *s = &d->seq[perm[first + i] * per + half];
            size_t row = half * k + i;
            bb->len[row] = s->n;
            for (size_t t = 0; t < T; t++) {
                bb->ids[row * T + t] = t < s->n ? d->ids[s->off + t] : d->ids[s->off + s->n - 1];
                bb->scored[row * T + t] = t >= s->first && t < s->n;
                scored += bb->scored[row * T + t];
            }
        }
    return scored;
}

int trn_run(const gpt2_model *m, const tok_tokenizer *tok, const trn_params *p, const trn_data *d,
            trn_step_fn step, void *ctx, adp_adapter **out, mdl_error *err)
{
    *out = NULL;
    const gpt2_config *c = &m->cfg;
    if (d->dpo != p->dpo)
        return mdl_fail(err, MDL_EINPUT, "the data are not %s data", p->dpo ? "DPO" : "SFT");
    if (!p->epochs || !p->batch_size || !p->grad_accum || !(p->learning_rate > 0) || !(p->weight_decay >= 0) ||
        p->warmup_steps < 0)
        return mdl_fail(err, MDL_EINPUT, "invalid hyperparameters");
    const trn_base_dropout *bd = &p->base_dropout;
    if (!(bd->embd_pdrop >= 0 && bd->embd_pdrop < 1) || !(bd->attn_pdrop >= 0 && bd->attn_pdrop < 1) ||
        !(bd->resid_pdrop >= 0 && bd->resid_pdrop < 1))
        return mdl_fail(err, MDL_EINPUT, "the base model's dropout must be in [0, 1)");
    gpt2t_dropout drop = {0};
    if (!p->disable_dropout)
        drop = (gpt2t_dropout){p->adapter.lora_dropout, bd->embd_pdrop, bd->attn_pdrop, bd->resid_pdrop, 0};
    size_t nvt = p->adapter.type == ADP_LORA ? 0 : p->adapter.num_virtual_tokens;
    if (nvt + d->max_len > c->n_positions)
        return mdl_fail(err, MDL_EINPUT, "%zu tokens and %zu virtual tokens are over the context of %zu", d->max_len,
                        nvt, c->n_positions);
    int proj = p->adapter.type == ADP_PREFIX_TUNING && p->prefix_projection;
    if (proj && (p->encoder_hidden_size == 0 || p->encoder_hidden_size > 65536))
        return mdl_fail(err, MDL_EINPUT, "encoder_hidden_size must be 1..65536");
    adp_adapter *a;
    int rc = adp_create(c, &p->adapter, &a, err);
    if (rc)
        return rc;
    size_t C = c->n_embd, L = c->n_layer, H = p->encoder_hidden_size;
    size_t n_theta = proj ? trn_prefix_mlp_size(nvt, C, H, L) : a->n_weights;
    size_t T = d->max_len, bs = p->batch_size, Bmax = bs * (d->dpo ? 2 : 1), rows = d->rows;
    float *theta_own = proj ? calloc(n_theta, sizeof(float)) : NULL, *theta = proj ? theta_own : a->weights;
    float *grad = calloc(n_theta, sizeof(float)), *gbuf = proj ? calloc(a->n_weights, sizeof(float)) : grad;
    size_t *perm = malloc(rows * sizeof *perm);
    batch_buf bb;
    int bb_ok = batch_alloc(&bb, Bmax, T);
    gpt2t *tr = gpt2t_create(m);
    opt_adamw opt = {0};
    rng_t rng = {p->seed};
    if (!grad || !gbuf || !perm || !bb_ok || !tr || (proj && !theta_own) || opt_adamw_init(&opt, n_theta))
        rc = mdl_fail(err, MDL_ENOMEM, "out of memory for training");
    if (!rc)
        rc = init_adapter(m, tok, p, a, theta, &rng, err);
    /* HF Trainer decays every weight but biases and norms: all adapter weights, and the
     * projection's embedding and matrices (not its biases). */
    size_t decay[2][2] = {{0, n_theta}, {0, 0}}, n_decay = 1;
    if (proj) {
        decay[0][1] = nvt * C + H * C;
        decay[1][0] = nvt * C + H * C + H;
        decay[1][1] = 2 * L * C * H;
        n_decay = 2;
    }
    opt_hparams hp = {p->learning_rate, 0.9, 0.999, 1e-8, p->weight_decay};
    const adp_adapter *ref_adapter = p->init_adapter; /* NULL: the base model */
    long total = trn_total_steps(p, rows), s = 0;
    size_t micro_per_epoch = (rows + bs - 1) / bs;
    for (size_t ep = 0; ep < p->epochs && !rc; ep++) {
        for (size_t i = 0; i < rows; i++)
            perm[i] = i;
        for (size_t i = rows; i > 1; i--) { /* Fisher-Yates */
            size_t j = (size_t)(rng_next(&rng) % i), tmp = perm[i - 1];
            perm[i - 1] = perm[j];
            perm[j] = tmp;
        }
        for (size_t mb = 0; mb < micro_per_epoch && !rc; mb += p->grad_accum) {
            size_t n_micro = mb + p->grad_accum <= micro_per_epoch ? p->grad_accum : micro_per_epoch - mb;
            /* SFT divides by the step's token count over all its micro-batches. */
            double n_items = 0, loss = 0;
            size_t Bdummy;
            for (size_t k = 0; k < n_micro && !d->dpo; k++) {
                size_t first = (mb + k) * bs, cnt = first + bs <= rows ? bs : rows - first;
                n_items += (double)fill_batch(d, perm, first, cnt, T, &bb, &Bdummy);
            }
            trn_progress pr = {.step = s + 1, .total_steps = total, .dpo = d->dpo};
            memset(grad, 0, n_theta * sizeof(float));
            if (proj) {
                memset(gbuf, 0, a->n_weights * sizeof(float));
                if (trn_prefix_mlp_forward(theta, nvt, C, H, L, a->prompt))
                    rc = mdl_fail(err, MDL_ENOMEM, "out of memory");
            }
            for (size_t k = 0; k < n_micro && !rc; k++) {
                size_t first = (mb + k) * bs, cnt = first + bs <= rows ? bs : rows - first, B;
                fill_batch(d, perm, first, cnt, T, &bb, &B);
                gpt2t_batch bt = {B, T, bb.ids, bb.len, bb.scored};
                if (d->dpo) {
                    rc = gpt2t_forward(tr, ref_adapter, &bt, 0, NULL, bb.ref_tok, err);
                    for (size_t b = 0; b < B && !rc; b++) {
                        bb.ref[b] = 0;
                        for (size_t t = 0; t < T; t++)
                            bb.ref[b] += bb.ref_tok[b * T + t];
                    }
                }
                drop.seed = rng_next(&rng);
                if (!rc)
                    rc = gpt2t_forward(tr, a, &bt, 1, &drop, bb.logp, err);
                if (rc)
                    break;
                if (d->dpo) {
                    dpo_metrics dm;
                    loss += dpo_loss(&p->dpo_p, bb.logp, bb.ref, bb.scored, cnt, T, 1.0 / (double)n_micro, bb.dlogp,
                                     &dm);
                    pr.dpo_m.rewards_chosen += dm.rewards_chosen / (double)n_micro;
                    pr.dpo_m.rewards_rejected += dm.rewards_rejected / (double)n_micro;
                    pr.dpo_m.rewards_margins += dm.rewards_margins / (double)n_micro;
                    pr.dpo_m.rewards_accuracies += dm.rewards_accuracies / (double)n_micro;
                    pr.dpo_m.logps_chosen += dm.logps_chosen / (double)n_micro;
                    pr.dpo_m.logps_rejected += dm.logps_rejected / (double)n_micro;
                } else {
                    loss += sft_loss(bb.logp, bb.scored, B, T, n_items, bb.dlogp);
                }
                rc = gpt2t_backward(tr, bb.dlogp, gbuf, err);
            }
            if (rc)
                break;
            if (proj && trn_prefix_mlp_backward(theta, nvt, C, H, L, gbuf + (a->prompt - a->weights), grad))
                rc = mdl_fail(err, MDL_ENOMEM, "out of memory");
            double lr = p->learning_rate * opt_linear_schedule(s, p->warmup_steps, total);
            pr.grad_norm = opt_clip_grad_norm(grad, n_theta, p->max_grad_norm);
            if (!isfinite(pr.grad_norm) || !isfinite(loss)) {
                rc = mdl_fail(err, MDL_EINPUT, "the loss diverged at step %ld (not finite); lower the learning rate",
                              s + 1);
                break;
            }
            opt_adamw_step(&opt, &hp, lr, theta, grad, (const size_t(*)[2])decay, n_decay);
            s++;
            pr.loss = loss;
            pr.dpo_m.loss = loss;
            pr.learning_rate = lr;
            pr.epoch = (double)ep + (double)(mb + n_micro) / (double)micro_per_epoch;
            if (step && step(ctx, &pr)) {
                rc = 1;
                break;
            }
        }
    }
    if (!rc && proj && trn_prefix_mlp_forward(theta, nvt, C, H, L, a->prompt))
        rc = mdl_fail(err, MDL_ENOMEM, "out of memory");
    opt_adamw_deinit(&opt);
    gpt2t_free(tr);
    batch_free(&bb);
    free(perm);
    if (gbuf != grad)
        free(gbuf);
    free(grad);
    free(theta_own);
    if (rc) {
        adp_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

int trn_evaluate(const gpt2_model *m, const adp_adapter *a, const adp_adapter *ref, const dpo_params *dp,
                 const trn_data *d, trn_progress *out, mdl_error *err)
{
    memset(out, 0, sizeof *out);
    out->dpo = d->dpo;
    size_t bs = 16, T = d->max_len, Bmax = bs * 2, rows = d->rows;
    size_t *perm = malloc(rows * sizeof *perm);
    batch_buf bb;
    int bb_ok = batch_alloc(&bb, Bmax, T);
    gpt2t *tr = gpt2t_create(m);
    int rc = 0;
    if (!perm || !bb_ok || !tr)
        rc = mdl_fail(err, MDL_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < rows; i++)
        perm[i] = i;
    double sum = 0, n_tok = 0;
    for (size_t first = 0; !rc && first < rows; first += bs) {
        size_t cnt = first + bs <= rows ? bs : rows - first, B;
        size_t scored = fill_batch(d, perm, first, cnt, T, &bb, &B);
        gpt2t_batch bt = {B, T, bb.ids, bb.len, bb.scored};
        if ((rc = gpt2t_forward(tr, a, &bt, 0, NULL, bb.logp, err)) != 0)
            break;
        if (d->dpo) {
            if ((rc = gpt2t_forward(tr, ref, &bt, 0, NULL, bb.ref_tok, err)) != 0)
                break;
            for (size_t b = 0; b < B; b++) {
                bb.ref[b] = 0;
                for (size_t t = 0; t < T; t++)
                    bb.ref[b] += bb.ref_tok[b * T + t];
            }
            dpo_metrics dm;
            dpo_loss(dp, bb.logp, bb.ref, bb.scored, cnt, T, 1.0, bb.dlogp, &dm);
            double w = (double)cnt / (double)rows;
            out->dpo_m.loss += dm.loss * w;
            out->dpo_m.rewards_chosen += dm.rewards_chosen * w;
            out->dpo_m.rewards_rejected += dm.rewards_rejected * w;
            out->dpo_m.rewards_margins += dm.rewards_margins * w;
            out->dpo_m.rewards_accuracies += dm.rewards_accuracies * w;
            out->dpo_m.logps_chosen += dm.logps_chosen * w;
            out->dpo_m.logps_rejected += dm.logps_rejected * w;
        } else {
            sum += sft_loss(bb.logp, bb.scored, B, T, 1.0, bb.dlogp);
            n_tok += (double)scored;
        }
    }
    out->loss = d->dpo ? out->dpo_m.loss : sum / (n_tok > 0 ? n_tok : 1);
    gpt2t_free(tr);
    batch_free(&bb);
    free(perm);
    return rc;
}

/* ---- publishing ---- */

static int fsync_path(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Removes a directory of plain files (what adp_save writes). */
static void remove_flat_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char path[4352];
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* Fault injection for the kill -9 tests: RAGD_TEST_CRASH_AT=N kills the process at stage N
 * of a publish (1: temp directory made, nothing written; 2: files written, not fsynced;
 * 3: fsynced, not renamed; 4: renamed, the job not yet marked done). */
static void crash_point(int stage)
{
    const char *at = getenv("RAGD_TEST_CRASH_AT");
    if (at && at[0] == '0' + stage && at[1] == 0)
        raise(SIGKILL);
}

int trn_publish(const adp_adapter *a, const char *root, const char *name, const char *tag, const char *base_model,
                mdl_error *err)
{
    char tmp[4096], dst[4096], path[4352];
    if (!adp_valid_name(name))
        return mdl_fail(err, MDL_EINPUT, "'%.80s' is not a valid adapter name", name);
    if (snprintf(tmp, sizeof tmp, "%s/.%s.tmp-%s", root, name, tag) >= (int)sizeof tmp ||
        snprintf(dst, sizeof dst, "%s/%s", root, name) >= (int)sizeof dst)
        return mdl_fail(err, MDL_EINPUT, "the adapters directory path is too long");
    if (mkdir(root, 0755) != 0 && errno != EEXIST)
        return mdl_fail(err, MDL_EIO, "%s: %s", root, strerror(errno));
    remove_flat_dir(tmp);
    if (mkdir(tmp, 0755) != 0)
        return mdl_fail(err, MDL_EIO, "%s: %s", tmp, strerror(errno));
    crash_point(1);
    int rc = adp_save(a, tmp, base_model, err);
    crash_point(2);
    static const char *const files[] = {"adapter_config.json", "adapter_model.safetensors"};
    for (size_t i = 0; i < 2 && !rc; i++) {
        snprintf(path, sizeof path, "%s/%s", tmp, files[i]);
        if (fsync_path(path, O_RDONLY) != 0)
            rc = mdl_fail(err, MDL_EIO, "%s: %s", path, strerror(errno));
    }
    if (!rc && fsync_path(tmp, O_RDONLY | O_DIRECTORY) != 0)
        rc = mdl_fail(err, MDL_EIO, "%s: %s", tmp, strerror(errno));
    crash_point(3);
    if (!rc) {
        struct stat st;
        if (lstat(dst, &st) == 0) {
            /* Swap the new adapter in whole; the old one ends up at tmp and is removed. */
            if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dst, RENAME_EXCHANGE) != 0)
                rc = mdl_fail(err, MDL_EIO, "%s: %s", dst, strerror(errno));
        } else if (rename(tmp, dst) != 0) {
            rc = mdl_fail(err, MDL_EIO, "%s: %s", dst, strerror(errno));
        }
    }
    if (!rc && fsync_path(root, O_RDONLY | O_DIRECTORY) != 0)
        rc = mdl_fail(err, MDL_EIO, "%s: %s", root, strerror(errno));
    remove_flat_dir(tmp);
    crash_point(4);
    return rc;
}

size_t trn_sweep(const char *root)
{
    DIR *d = opendir(root);
    size_t n = 0;
    if (!d)
        return 0;
    struct dirent *e;
    char path[4352];
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] == '.' && strstr(e->d_name, ".tmp-")) {
            snprintf(path, sizeof path, "%s/%s", root, e->d_name);
            remove_flat_dir(path);
            n++;
        }
    closedir(d);
    return n;
}
