#include "bert.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "json_watch.h"
#include "kernels.h"
#include "model_config.h"
#include "safetensors.h"

#define MAX_DIM 65536    /* hidden, intermediate: far above any BERT */
#define MAX_LAYERS 256
#define MAX_VOCAB (1u << 22)

typedef struct {
    float *qkv_w, *qkv_b;   /* [3H,H], [3H]: query, key, value rows stacked */
    float *ao_w, *ao_b;     /* attention.output.dense [H,H], [H] */
    float *ln1_g, *ln1_b;   /* attention.output.LayerNorm */
    float *in_w, *in_b;     /* intermediate.dense [I,H], [I] */
    float *out_w, *out_b;   /* output.dense [H,I], [H] */
    float *ln2_g, *ln2_b;   /* output.LayerNorm */
} bert_layer;

struct bert_model {
    bert_config cfg;
    float *weights;         /* the one buffer every view points into */
    size_t n_weights;
    float *word, *pos, *type, *emb_ln_g, *emb_ln_b;
    bert_layer *layer;
    float *pool_w, *pool_b, *cls_w, *cls_b; /* NULL unless loaded with the classifier */
};

const bert_config *bert_get_config(const bert_model *m) { return &m->cfg; }
size_t bert_weight_bytes(const bert_model *m) { return m->n_weights * sizeof(float); }

void bert_free(bert_model *m)
{
    if (!m)
        return;
    free(m->weights);
    free(m->layer);
    free(m);
}

static int parse_config(const char *dir, int classifier, bert_config *c, mdl_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_error_t je;
    json_t *j = jsonw_load_file(path, JSON_REJECT_DUPLICATES, &je, NULL);
    if (!j)
        return mdl_fail(err, MDL_EFORMAT, "%s: %s", path, je.text);
    int rc = MDL_EFORMAT;
    if (!json_is_object(j)) {
        mdl_fail(err, rc, "%s: not a JSON object", path);
        goto out;
    }
#define KEY(name) ((const char *const[]){name, NULL})
    if (mdl_config_size(j, KEY("hidden_size"), 0, MAX_DIM, &c->hidden, path, err) ||
        mdl_config_size(j, KEY("num_hidden_layers"), 0, MAX_LAYERS, &c->layers, path, err) ||
        mdl_config_size(j, KEY("num_attention_heads"), 0, MAX_DIM, &c->heads, path, err) ||
        mdl_config_size(j, KEY("intermediate_size"), 0, MAX_DIM, &c->intermediate, path, err) ||
        mdl_config_size(j, KEY("vocab_size"), 0, MAX_VOCAB, &c->vocab, path, err) ||
        mdl_config_size(j, KEY("max_position_embeddings"), 512, MAX_DIM, &c->max_positions, path, err) ||
        mdl_config_size(j, KEY("type_vocab_size"), 2, 1024, &c->type_vocab, path, err) ||
        mdl_config_eps(j, "layer_norm_eps", 1e-12f, &c->ln_eps, path, err))
        goto out;
    if (c->hidden % c->heads) {
        mdl_fail(err, rc, "%s: hidden_size %zu is not divisible by num_attention_heads %zu", path, c->hidden,
                 c->heads);
        goto out;
    }
    const char *act = json_string_value(json_object_get(j, "hidden_act"));
    if (!act || !strcmp(act, "gelu"))
        c->act = BERT_GELU_ERF;
    else if (!strcmp(act, "gelu_new") || !strcmp(act, "gelu_pytorch_tanh"))
        c->act = BERT_GELU_TANH;
    else {
        mdl_fail(err, rc, "%s: hidden_act '%.40s' is not supported (gelu, gelu_new)", path, act);
        goto out;
    }
    const char *pet = json_string_value(json_object_get(j, "position_embedding_type"));
    if (pet && strcmp(pet, "absolute") != 0) {
        mdl_fail(err, rc, "%s: position_embedding_type '%.40s' is not supported", path, pet);
        goto out;
    }
    c->num_labels = 0;
    if (classifier) {
        json_t *id2label = json_object_get(j, "id2label");
        if (json_is_object(id2label) && json_object_size(id2label) > 0)
            c->num_labels = json_object_size(id2label);
        else if (mdl_config_size(j, KEY("num_labels"), 2, 1024, &c->num_labels, path, err))
            goto out;
    }
    rc = 0;
#undef KEY
out:
    json_decref(j);
    return rc;
}

/* Loads `name` with or without the `bert.` prefix, accepting the LayerNorm gamma/beta
 * spelling of old TensorFlow conversions. */
static int load(const sft_set *s, const char *name, size_t d0, size_t d1, float *dst, mdl_error *err)
{
    const char *ln = strstr(name, "LayerNorm.");
    if (ln && !sft_find(s, name)) {
        char old[256], pre[300];
        snprintf(old, sizeof old, "%.*sLayerNorm.%s", (int)(ln - name), name,
                 strcmp(ln, "LayerNorm.weight") == 0 ? "gamma" : "beta");
        snprintf(pre, sizeof pre, "bert.%s", old);
        if (sft_find(s, old) || sft_find(s, pre))
            return sft_load_f32(s, "bert.", old, d0, d1, dst, err);
    }
    return sft_load_f32(s, "bert.", name, d0, d1, dst, err);
}

int bert_load(const char *dir, int classifier, bert_model **out, mdl_error *err)
{
    *out = NULL;
    bert_model *m = calloc(1, sizeof *m);
    if (!m)
        return mdl_fail(err, MDL_ENOMEM, "out of memory");
    int rc = parse_config(dir, classifier, &m->cfg, err);
    if (rc) {
        bert_free(m);
        return rc;
    }
    const bert_config *c = &m->cfg;
    size_t H = c->hidden, I = c->intermediate, L = c->layers;
    size_t per_layer = 3 * H * H + 3 * H + H * H + H + 2 * H + I * H + I + H * I + H + 2 * H;
    m->n_weights = (c->vocab + c->max_positions + c->type_vocab) * H + 2 * H + L * per_layer +
                   (classifier ? H * H + H + c->num_labels * H + c->num_labels : 0);
    m->weights = malloc(m->n_weights * sizeof(float));
    m->layer = calloc(L, sizeof *m->layer);
    if (!m->weights || !m->layer) {
        size_t n = m->n_weights;
        bert_free(m);
        return mdl_fail(err, MDL_ENOMEM, "%s: out of memory for %zu weights", dir, n);
    }
    sft_set *s;
    if ((rc = sft_open_dir(dir, "model", &s, err)) != 0) {
        bert_free(m);
        return rc;
    }
    float *cur = m->weights;
    m->word = mdl_take(&cur, c->vocab * H);
    m->pos = mdl_take(&cur, c->max_positions * H);
    m->type = mdl_take(&cur, c->type_vocab * H);
    m->emb_ln_g = mdl_take(&cur, H);
    m->emb_ln_b = mdl_take(&cur, H);
    rc = load(s, "embeddings.word_embeddings.weight", c->vocab, H, m->word, err) ||
         load(s, "embeddings.position_embeddings.weight", c->max_positions, H, m->pos, err) ||
         load(s, "embeddings.token_type_embeddings.weight", c->type_vocab, H, m->type, err) ||
         load(s, "embeddings.LayerNorm.weight", H, 0, m->emb_ln_g, err) ||
         load(s, "embeddings.LayerNorm.bias", H, 0, m->emb_ln_b, err);
    for (size_t l = 0; l < L && !rc; l++) {
        bert_layer *y = &m->layer[l];
        char n[160];
#define LOAD(field, suffix, d0, d1) \
    (snprintf(n, sizeof n, "encoder.layer.%zu.%s", l, suffix), load(s, n, d0, d1, y->field, err))
        y->qkv_w = mdl_take(&cur, 3 * H * H);
        y->qkv_b = mdl_take(&cur, 3 * H);
        y->ao_w = mdl_take(&cur, H * H), y->ao_b = mdl_take(&cur, H);
        y->ln1_g = mdl_take(&cur, H), y->ln1_b = mdl_take(&cur, H);
        y->in_w = mdl_take(&cur, I * H), y->in_b = mdl_take(&cur, I);
        y->out_w = mdl_take(&cur, H * I), y->out_b = mdl_take(&cur, H);
        y->ln2_g = mdl_take(&cur, H), y->ln2_b = mdl_take(&cur, H);
        static const char *const qkv[3] = {"query", "key", "value"};
        for (int k = 0; k < 3 && !rc; k++) {
            snprintf(n, sizeof n, "encoder.layer.%zu.attention.self.%s.weight", l, qkv[k]);
            rc = load(s, n, H, H, y->qkv_w + (size_t)k * H * H, err);
            snprintf(n, sizeof n, "encoder.layer.%zu.attention.self.%s.bias", l, qkv[k]);
            rc = rc || load(s, n, H, 0, y->qkv_b + (size_t)k * H, err);
        }
        rc = rc || LOAD(ao_w, "attention.output.dense.weight", H, H) ||
             LOAD(ao_b, "attention.output.dense.bias", H, 0) ||
             LOAD(ln1_g, "attention.output.LayerNorm.weight", H, 0) ||
             LOAD(ln1_b, "attention.output.LayerNorm.bias", H, 0) ||
             LOAD(in_w, "intermediate.dense.weight", I, H) || LOAD(in_b, "intermediate.dense.bias", I, 0) ||
             LOAD(out_w, "output.dense.weight", H, I) || LOAD(out_b, "output.dense.bias", H, 0) ||
             LOAD(ln2_g, "output.LayerNorm.weight", H, 0) || LOAD(ln2_b, "output.LayerNorm.bias", H, 0);
#undef LOAD
    }
    if (classifier && !rc) {
        m->pool_w = mdl_take(&cur, H * H), m->pool_b = mdl_take(&cur, H);
        m->cls_w = mdl_take(&cur, c->num_labels * H), m->cls_b = mdl_take(&cur, c->num_labels);
        rc = load(s, "pooler.dense.weight", H, H, m->pool_w, err) ||
             load(s, "pooler.dense.bias", H, 0, m->pool_b, err) ||
             load(s, "classifier.weight", c->num_labels, H, m->cls_w, err) ||
             load(s, "classifier.bias", c->num_labels, 0, m->cls_b, err);
    }
    sft_close(s);
    if (rc) {
        bert_free(m);
        return err ? err->code : MDL_EFORMAT;
    }
    *out = m;
    return 0;
}

int bert_forward(const bert_model *m, const bert_batch *in, float *hidden, mdl_error *err)
{
    const bert_config *c = &m->cfg;
    size_t B = in->B, T = in->T, H = c->hidden, I = c->intermediate, M = B * T, D = H / c->heads;
    if (T == 0 || T > c->max_positions)
        return mdl_fail(err, MDL_EINPUT, "sequence length %zu is outside 1..%zu", T, c->max_positions);
    for (size_t i = 0; i < M; i++) {
        if (in->ids[i] < 0 || (size_t)in->ids[i] >= c->vocab)
            return mdl_fail(err, MDL_EINPUT, "token id %d is outside the vocabulary (%zu)", in->ids[i], c->vocab);
        if (in->type_ids && (in->type_ids[i] < 0 || (size_t)in->type_ids[i] >= c->type_vocab))
            return mdl_fail(err, MDL_EINPUT, "token type id %d is outside 0..%zu", in->type_ids[i],
                            c->type_vocab - 1);
    }
    /* Scratch: qkv [M,3H], ctx [M,H], tmp [M,H], inter [M,I]; kept by the thread for its next
     * batch, so large batches do not fault in fresh pages every time. */
    float *qkv = k_workspace(K_WS_FORWARD, M * (5 * H + I));
    if (!qkv)
        return mdl_fail(err, MDL_ENOMEM, "out of memory for a batch of %zu x %zu tokens", B, T);
    float *ctx = qkv + 3 * M * H, *tmp = ctx + M * H, *inter = tmp + M * H;
    float *x = hidden;

    /* Embeddings: word + type first, then position, then LayerNorm (FORMATS §2.3 step 1). */
    for (size_t b = 0; b < B; b++)
        for (size_t t = 0; t < T; t++) {
            size_t r = b * T + t;
            const float *w = m->word + (size_t)in->ids[r] * H;
            const float *ty = m->type + (size_t)(in->type_ids ? in->type_ids[r] : 0) * H;
            const float *p = m->pos + t * H;
            for (size_t h = 0; h < H; h++)
                x[r * H + h] = (w[h] + ty[h]) + p[h];
        }
    k_layernorm(x, m->emb_ln_g, m->emb_ln_b, x, M, H, c->ln_eps);

    for (size_t l = 0; l < c->layers; l++) {
        const bert_layer *y = &m->layer[l];
        k_linear(x, y->qkv_w, y->qkv_b, qkv, M, 3 * H, H);
        if (k_attention(qkv, qkv + H, qkv + 2 * H, 3 * H, in->mask, 0, B, T, c->heads, D, ctx))
            return mdl_fail(err, MDL_ENOMEM, "out of memory for attention over %zu tokens", T);
        k_linear(ctx, y->ao_w, y->ao_b, tmp, M, H, H);
        k_add_layernorm(tmp, x, y->ln1_g, y->ln1_b, x, M, H, c->ln_eps);
        k_linear(x, y->in_w, y->in_b, inter, M, I, H);
        if (c->act == BERT_GELU_ERF)
            k_gelu_erf(inter, M * I);
        else
            k_gelu_tanh(inter, M * I);
        k_linear(inter, y->out_w, y->out_b, tmp, M, H, I);
        k_add_layernorm(tmp, x, y->ln2_g, y->ln2_b, x, M, H, c->ln_eps);
    }
    return 0;
}

int bert_classify(const bert_model *m, const float *hidden, size_t B, size_t T, float *logits, mdl_error *err)
{
    const bert_config *c = &m->cfg;
    size_t H = c->hidden;
    if (!m->cls_w)
        return mdl_fail(err, MDL_EINPUT, "the model was loaded without its classifier");
    float *pooled = calloc(B * H * 2, sizeof(float));
    if (!pooled)
        return mdl_fail(err, MDL_ENOMEM, "out of memory");
    float *cls = pooled + B * H;
    for (size_t b = 0; b < B; b++)
        memcpy(cls + b * H, hidden + b * T * H, H * sizeof(float));
    k_linear(cls, m->pool_w, m->pool_b, pooled, B, H, H);
    for (size_t i = 0; i < B * H; i++)
        pooled[i] = tanhf(pooled[i]);
    k_linear(pooled, m->cls_w, m->cls_b, logits, B, c->num_labels, H);
    free(pooled);
    return 0;
}
