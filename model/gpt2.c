#include "gpt2.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "adapter.h"
#include "gpt2_impl.h"
#include "json_watch.h"
#include "kernels.h"
#include "model_config.h"
#include "safetensors.h"

const gpt2_config *gpt2_get_config(const gpt2_model *m) { return &m->cfg; }
size_t gpt2_weight_bytes(const gpt2_model *m) { return m->n_weights * sizeof(float); }

void gpt2_free(gpt2_model *m)
{
    if (!m)
        return;
    free(m->weights);
    free(m->block);
    free(m);
}

static int parse_config(const char *dir, gpt2_config *c, mdl_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_error_t je;
    json_t *j = jsonw_load_file(path, JSON_REJECT_DUPLICATES, &je, NULL);
    if (!j)
        return mdl_fail(err, MDL_EFORMAT, "%s: %s", path, je.text);
    static const char *const k_vocab[] = {"vocab_size", NULL}, *const k_pos[] = {"n_positions", "max_position_embeddings", NULL},
                             *const k_embd[] = {"n_embd", "hidden_size", NULL},
                             *const k_layer[] = {"n_layer", "num_hidden_layers", NULL},
                             *const k_head[] = {"n_head", "num_attention_heads", NULL}, *const k_inner[] = {"n_inner", NULL};
    int rc = MDL_EFORMAT;
    if (!json_is_object(j)) {
        mdl_fail(err, rc, "%s: not a JSON object", path);
    } else if (!mdl_config_size(j, k_vocab, 0, MAX_VOCAB, &c->vocab, path, err) &&
               !mdl_config_size(j, k_pos, 1024, MAX_DIM, &c->n_positions, path, err) &&
               !mdl_config_size(j, k_embd, 0, MAX_DIM, &c->n_embd, path, err) &&
               !mdl_config_size(j, k_layer, 0, MAX_LAYERS, &c->n_layer, path, err) &&
               !mdl_config_size(j, k_head, 0, MAX_DIM, &c->n_head, path, err) &&
               !mdl_config_size(j, k_inner, 4 * c->n_embd, 4 * MAX_DIM, &c->n_inner, path, err) &&
               !mdl_config_eps(j, "layer_norm_epsilon", 1e-5f, &c->ln_eps, path, err)) {
        const char *act = json_string_value(json_object_get(j, "activation_function"));
        json_t *tie = json_object_get(j, "tie_word_embeddings"), *eos = json_object_get(j, "eos_token_id");
        c->tied = tie ? json_is_true(tie) : 1;
        c->eos_id = json_is_integer(eos) && json_integer_value(eos) >= 0 &&
                            (size_t)json_integer_value(eos) < c->vocab
                        ? (int32_t)json_integer_value(eos)
                        : -1;
        if (c->n_embd % c->n_head)
            mdl_fail(err, rc, "%s: n_embd %zu is not divisible by n_head %zu", path, c->n_embd, c->n_head);
        else if (act && strcmp(act, "gelu_new") != 0)
            mdl_fail(err, rc, "%s: activation_function '%.40s' is not supported (gelu_new)", path, act);
        else
            rc = 0;
    }
    json_decref(j);
    return rc;
}

static int load(const sft_set *s, const char *name, size_t d0, size_t d1, float *dst, mdl_error *err)
{
    return sft_load_f32(s, "transformer.", name, d0, d1, dst, err);
}

int gpt2_load(const char *dir, gpt2_model **out, mdl_error *err)
{
    *out = NULL;
    gpt2_model *m = calloc(1, sizeof *m);
    if (!m)
        return mdl_fail(err, MDL_ENOMEM, "out of memory");
    int rc = parse_config(dir, &m->cfg, err);
    if (rc) {
        gpt2_free(m);
        return rc;
    }
    const gpt2_config *c = &m->cfg;
    size_t C = c->n_embd, I = c->n_inner, V = c->vocab;
    size_t per_block = 4 * C + C * 3 * C + 3 * C + C * C + C + C * I + I + I * C + C;
    m->n_weights = V * C + c->n_positions * C + 2 * C + c->n_layer * per_block + (c->tied ? 0 : V * C);
    m->weights = malloc(m->n_weights * sizeof(float));
    m->block = calloc(c->n_layer, sizeof *m->block);
    if (!m->weights || !m->block) {
        size_t n = m->n_weights;
        gpt2_free(m);
        return mdl_fail(err, MDL_ENOMEM, "%s: out of memory for %zu weights", dir, n);
    }
    sft_set *s;
    if ((rc = sft_open_dir(dir, "model", &s, err)) != 0) {
        gpt2_free(m);
        return rc;
    }
    float *cur = m->weights;
    m->wte = mdl_take(&cur, V * C);
    m->wpe = mdl_take(&cur, c->n_positions * C);
    m->lnf_g = mdl_take(&cur, C);
    m->lnf_b = mdl_take(&cur, C);
    rc = load(s, "wte.weight", V, C, m->wte, err) || load(s, "wpe.weight", c->n_positions, C, m->wpe, err) ||
         load(s, "ln_f.weight", C, 0, m->lnf_g, err) || load(s, "ln_f.bias", C, 0, m->lnf_b, err);
    for (size_t l = 0; l < c->n_layer && !rc; l++) {
        gpt2_block *b = &m->block[l];
        char n[128];
#define LOAD(field, count, suffix, d0, d1) \
    (b->field = mdl_take(&cur, count), snprintf(n, sizeof n, "h.%zu.%s", l, suffix), load(s, n, d0, d1, b->field, err))
        rc = LOAD(ln1_g, C, "ln_1.weight", C, 0) || LOAD(ln1_b, C, "ln_1.bias", C, 0) ||
             LOAD(attn_w, C * 3 * C, "attn.c_attn.weight", C, 3 * C) || LOAD(attn_b, 3 * C, "attn.c_attn.bias", 3 * C, 0) ||
             LOAD(aproj_w, C * C, "attn.c_proj.weight", C, C) || LOAD(aproj_b, C, "attn.c_proj.bias", C, 0) ||
             LOAD(ln2_g, C, "ln_2.weight", C, 0) || LOAD(ln2_b, C, "ln_2.bias", C, 0) ||
             LOAD(fc_w, C * I, "mlp.c_fc.weight", C, I) || LOAD(fc_b, I, "mlp.c_fc.bias", I, 0) ||
             LOAD(mproj_w, I * C, "mlp.c_proj.weight", I, C) || LOAD(mproj_b, C, "mlp.c_proj.bias", C, 0);
#undef LOAD
    }
    if (!rc) {
        if (c->tied) {
            m->lm_head = m->wte;
        } else {
            m->lm_head = mdl_take(&cur, V * C);
            rc = load(s, "lm_head.weight", V, C, m->lm_head, err);
        }
    }
    sft_close(s);
    if (rc) {
        gpt2_free(m);
        return err ? err->code : MDL_EFORMAT;
    }
    *out = m;
    return 0;
}

gpt2_cache *gpt2_cache_create(const gpt2_model *m, size_t capacity)
{
    const gpt2_config *c = &m->cfg;
    if (capacity == 0 || capacity > c->n_positions)
        capacity = c->n_positions;
    gpt2_cache *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    size_t n = c->n_layer * capacity * c->n_embd;
    k->k = malloc(n * sizeof(float));
    k->v = malloc(n * sizeof(float));
    if (!k->k || !k->v) {
        gpt2_cache_free(k);
        return NULL;
    }
    k->capacity = capacity;
    k->layers = c->n_layer;
    k->C = c->n_embd;
    return k;
}

void gpt2_cache_free(gpt2_cache *c)
{
    if (!c)
        return;
    free(c->k);
    free(c->v);
    free(c);
}

size_t gpt2_cache_len(const gpt2_cache *c) { return c->len; }
void gpt2_cache_reset(gpt2_cache *c) { c->len = 0; }

/* Runs T new positions whose input embeddings (token + position) are in x[T, C] through the
 * network after the cached ones, with an adapter's LoRA deltas when it has them. Writes the
 * last position's logits into `logits` (and every position's into all_logits) unless both
 * are NULL. Owns nothing; x is overwritten. */
static int forward_embedded(const gpt2_model *m, const adp_adapter *a, gpt2_cache *kc, float *x, size_t T,
                            float *logits, float *all_logits, mdl_error *err)
{
    const gpt2_config *c = &m->cfg;
    size_t C = c->n_embd, I = c->n_inner, V = c->vocab, past = kc->len, D = C / c->n_head, Tk = past + T;
    size_t R = adp_max_rank(a);
    /* Scratch: h [T,C]; qkv [T,3C]; ctx [T,C]; mlp [T,I]; scores [T,Tk]; lora [T,R]. */
    float *h = malloc((T * (5 * C + I + R) + T * Tk) * sizeof(float));
    if (!h)
        return mdl_fail(err, MDL_ENOMEM, "out of memory for %zu tokens", T);
    float *qkv = h + T * C, *ctx = qkv + 3 * T * C, *mlp = ctx + T * C, *scores = mlp + T * I, *lr = scores + T * Tk;
    const adp_lora *lo;
#define LORA(mod, in, out) \
    if ((lo = adp_lora_at(a, l, mod)) != NULL) \
    adp_lora_add(lo, in, out, T, lr)
    for (size_t l = 0; l < c->n_layer; l++) {
        const gpt2_block *b = &m->block[l];
        float *K = kc->k + l * kc->capacity * C, *Vc = kc->v + l * kc->capacity * C;
        k_layernorm(x, b->ln1_g, b->ln1_b, h, T, C, c->ln_eps);
        k_conv1d(h, b->attn_w, b->attn_b, qkv, T, 3 * C, C);
        LORA(ADP_ATTN_C_ATTN, h, qkv);
        for (size_t t = 0; t < T; t++) {
            memcpy(K + (past + t) * C, qkv + t * 3 * C + C, C * sizeof(float));
            memcpy(Vc + (past + t) * C, qkv + t * 3 * C + 2 * C, C * sizeof(float));
        }
        k_attention_cached(qkv, 3 * C, K, Vc, C, T, Tk, c->n_head, D, ctx, scores);
        k_conv1d(ctx, b->aproj_w, b->aproj_b, h, T, C, C);
        LORA(ADP_ATTN_C_PROJ, ctx, h);
        k_add(x, h, T * C);
        k_layernorm(x, b->ln2_g, b->ln2_b, h, T, C, c->ln_eps);
        k_conv1d(h, b->fc_w, b->fc_b, mlp, T, I, C);
        LORA(ADP_MLP_C_FC, h, mlp);
        k_gelu_tanh(mlp, T * I);
        k_conv1d(mlp, b->mproj_w, b->mproj_b, h, T, C, I);
        LORA(ADP_MLP_C_PROJ, mlp, h);
        k_add(x, h, T * C);
    }
#undef LORA
    kc->len = Tk;
    if (all_logits) {
        k_layernorm(x, m->lnf_g, m->lnf_b, h, T, C, c->ln_eps);
        k_linear(h, m->lm_head, NULL, all_logits, T, V, C);
        memcpy(logits, all_logits + (T - 1) * V, V * sizeof(float));
    } else if (logits) {
        k_layernorm(x + (T - 1) * C, m->lnf_g, m->lnf_b, h, 1, C, c->ln_eps);
        k_linear(h, m->lm_head, NULL, logits, 1, V, C);
    }
    free(h);
    return 0;
}

int gpt2_forward_adapter(const gpt2_model *m, const adp_adapter *a, gpt2_cache *kc, const int32_t *ids, size_t T,
                         float *logits, float *all_logits, mdl_error *err)
{
    const gpt2_config *c = &m->cfg;
    size_t C = c->n_embd, V = c->vocab, past = kc->len, Tk = past + T;
    if (T == 0 || Tk > kc->capacity)
        return mdl_fail(err, MDL_EINPUT, "%zu positions are over the context of %zu", Tk, kc->capacity);
    if (a && a->cfg.type == ADP_LORA && adp_check_base(a, c, err))
        return MDL_EINPUT;
    for (size_t t = 0; t < T; t++)
        if (ids[t] < 0 || (size_t)ids[t] >= V)
            return mdl_fail(err, MDL_EINPUT, "token id %d is outside the vocabulary (%zu)", ids[t], V);
    float *x = malloc(T * C * sizeof(float));
    if (!x)
        return mdl_fail(err, MDL_ENOMEM, "out of memory for %zu tokens", T);
    for (size_t t = 0; t < T; t++) {
        const float *w = m->wte + (size_t)ids[t] * C, *p = m->wpe + (past + t) * C;
        for (size_t i = 0; i < C; i++)
            x[t * C + i] = w[i] + p[i];
    }
    int rc = forward_embedded(m, a, kc, x, T, logits, all_logits, err);
    free(x);
    return rc;
}

int gpt2_forward(const gpt2_model *m, gpt2_cache *kc, const int32_t *ids, size_t T, float *logits, float *all_logits,
                 mdl_error *err)
{
    return gpt2_forward_adapter(m, NULL, kc, ids, T, logits, all_logits, err);
}

/* Adds layer l's module-mod LoRA deltas of every row: out[B, out_w] += from in[B, in_w].
 * Runs of neighbouring rows that share an adapter go through one pair of products.
 * scratch: B * max rank floats. */
static void lora_rows(const adp_adapter *const *ads, size_t B, size_t l, adp_module mod, const float *in, size_t in_w,
                      float *out, size_t out_w, float *scratch)
{
    for (size_t b = 0, e; ads && b < B; b = e) {
        for (e = b + 1; e < B && ads[e] == ads[b]; e++)
            ;
        const adp_lora *lo = adp_lora_at(ads[b], l, mod);
        if (lo)
            adp_lora_add(lo, in + b * in_w, out + b * out_w, e - b, scratch);
    }
}

int gpt2_decode_batch(const gpt2_model *m, const adp_adapter *const *ads, gpt2_cache *const *kcs, const int32_t *ids,
                      size_t B, float *logits, mdl_error *err)
{
    const gpt2_config *c = &m->cfg;
    size_t C = c->n_embd, I = c->n_inner, V = c->vocab, D = C / c->n_head, R = 0, Tmax = 0;
    for (size_t b = 0; b < B; b++) {
        const adp_adapter *a = ads ? ads[b] : NULL;
        if (kcs[b]->len + 1 > kcs[b]->capacity)
            return mdl_fail(err, MDL_EINPUT, "row %zu: %zu positions are over the context of %zu", b, kcs[b]->len + 1,
                            kcs[b]->capacity);
        if (ids[b] < 0 || (size_t)ids[b] >= V)
            return mdl_fail(err, MDL_EINPUT, "row %zu: token id %d is outside the vocabulary (%zu)", b, ids[b], V);
        if (a && adp_check_base(a, c, err))
            return MDL_EINPUT;
        R = adp_max_rank(a) > R ? adp_max_rank(a) : R;
        Tmax = kcs[b]->len + 1 > Tmax ? kcs[b]->len + 1 : Tmax;
    }
    if (B == 0)
        return 0;
    /* Scratch: x, h [B,C]; qkv [B,3C]; ctx [B,C]; mlp [B,I]; scores [Tmax]; lora [B,R]. */
    float *x = malloc((B * (6 * C + I + R) + Tmax) * sizeof(float));
    if (!x)
        return mdl_fail(err, MDL_ENOMEM, "out of memory for a batch of %zu", B);
    float *h = x + B * C, *qkv = h + B * C, *ctx = qkv + 3 * B * C, *mlp = ctx + B * C, *scores = mlp + B * I,
          *lr = scores + Tmax;
    for (size_t b = 0; b < B; b++) {
        const float *w = m->wte + (size_t)ids[b] * C, *p = m->wpe + kcs[b]->len * C;
        for (size_t i = 0; i < C; i++)
            x[b * C + i] = w[i] + p[i];
    }
#define LORA_ROWS(mod, in, in_w, out, out_w) lora_rows(ads, B, l, mod, in, in_w, out, out_w, lr)
    for (size_t l = 0; l < c->n_layer; l++) {
        const gpt2_block *bl = &m->block[l];
        k_layernorm(x, bl->ln1_g, bl->ln1_b, h, B, C, c->ln_eps);
        k_conv1d(h, bl->attn_w, bl->attn_b, qkv, B, 3 * C, C);
        LORA_ROWS(ADP_ATTN_C_ATTN, h, C, qkv, 3 * C);
        for (size_t b = 0; b < B; b++) {
            gpt2_cache *kc = kcs[b];
            float *K = kc->k + l * kc->capacity * C, *Vc = kc->v + l * kc->capacity * C;
            memcpy(K + kc->len * C, qkv + b * 3 * C + C, C * sizeof(float));
            memcpy(Vc + kc->len * C, qkv + b * 3 * C + 2 * C, C * sizeof(float));
            k_attention_cached(qkv + b * 3 * C, 3 * C, K, Vc, C, 1, kc->len + 1, c->n_head, D, ctx + b * C, scores);
        }
        k_conv1d(ctx, bl->aproj_w, bl->aproj_b, h, B, C, C);
        LORA_ROWS(ADP_ATTN_C_PROJ, ctx, C, h, C);
        k_add(x, h, B * C);
        k_layernorm(x, bl->ln2_g, bl->ln2_b, h, B, C, c->ln_eps);
        k_conv1d(h, bl->fc_w, bl->fc_b, mlp, B, I, C);
        LORA_ROWS(ADP_MLP_C_FC, h, C, mlp, I);
        k_gelu_tanh(mlp, B * I);
        k_conv1d(mlp, bl->mproj_w, bl->mproj_b, h, B, C, I);
        LORA_ROWS(ADP_MLP_C_PROJ, mlp, I, h, C);
        k_add(x, h, B * C);
    }
#undef LORA_ROWS
    for (size_t b = 0; b < B; b++)
        kcs[b]->len++;
    k_layernorm(x, m->lnf_g, m->lnf_b, h, B, C, c->ln_eps);
    k_linear(h, m->lm_head, NULL, logits, B, V, C);
    free(x);
    return 0;
}

int gpt2_begin(const gpt2_model *m, const adp_adapter *a, gpt2_cache *kc, mdl_error *err)
{
    const gpt2_config *c = &m->cfg;
    size_t nvt = adp_virtual_tokens(a), C = c->n_embd;
    if (kc->len != 0)
        return mdl_fail(err, MDL_EINPUT, "a sequence starts on an empty cache");
    if (!a)
        return 0;
    if (adp_check_base(a, c, err))
        return MDL_EINPUT;
    if (nvt && nvt >= kc->capacity)
        return mdl_fail(err, MDL_EINPUT, "%zu virtual tokens fill the cache of %zu positions", nvt, kc->capacity);
    if (a->cfg.type == ADP_PREFIX_TUNING) {
        /* Row t holds, per layer l, the key at [2l*C, 2l*C + C) and the value after it. */
        for (size_t l = 0; l < c->n_layer; l++)
            for (size_t t = 0; t < nvt; t++) {
                const float *row = a->prompt + t * 2 * c->n_layer * C;
                memcpy(kc->k + (l * kc->capacity + t) * C, row + 2 * l * C, C * sizeof(float));
                memcpy(kc->v + (l * kc->capacity + t) * C, row + (2 * l + 1) * C, C * sizeof(float));
            }
        kc->len = nvt;
    } else if (a->cfg.type == ADP_PROMPT_TUNING) {
        /* The virtual tokens are inputs embeddings at positions 0..nvt-1. */
        float *x = malloc(nvt * C * sizeof(float));
        if (!x)
            return mdl_fail(err, MDL_ENOMEM, "out of memory for %zu virtual tokens", nvt);
        for (size_t t = 0; t < nvt; t++)
            for (size_t i = 0; i < C; i++)
                x[t * C + i] = a->prompt[t * C + i] + m->wpe[t * C + i];
        int rc = forward_embedded(m, a, kc, x, nvt, NULL, NULL, err);
        free(x);
        return rc;
    }
    return 0;
}
