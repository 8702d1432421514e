#include "encoder.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json_watch.h"
#include "kernels.h"

#define TOKENS_PER_CHUNK 8192 /* padded tokens per forward pass: bounds scratch memory */

struct enc_model {
    bert_model *bert;
    const tok_tokenizer *tok; /* borrowed */
    int cross;
    unsigned pooling;
    int normalize;       /* bi-encoder: a Normalize module follows pooling */
    int sigmoid;         /* cross-encoder: default activation */
    size_t max_tokens;
};

const tok_tokenizer *enc_tokenizer(const enc_model *m) { return m->tok; }
const bert_config *enc_bert_config(const enc_model *m) { return bert_get_config(m->bert); }
size_t enc_max_tokens(const enc_model *m) { return m->max_tokens; }
unsigned enc_pooling(const enc_model *m) { return m->pooling; }
int enc_normalizes(const enc_model *m) { return m->normalize; }
int enc_sigmoid(const enc_model *m) { return m->sigmoid; }
int enc_is_cross(const enc_model *m) { return m->cross; }

size_t enc_dim(const enc_model *m)
{
    size_t modes = 0;
    for (unsigned p = m->pooling; p; p &= p - 1)
        modes++;
    return modes * bert_get_config(m->bert)->hidden;
}

void enc_free(enc_model *m)
{
    if (!m)
        return;
    bert_free(m->bert);
    free(m);
}

static json_t *load_json(const char *dir, const char *rel, int required, mdl_error *err, int *rc)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    json_error_t je;
    json_t *j = jsonw_load_file(path, JSON_REJECT_DUPLICATES, &je, NULL);
    if (!j && (required || strstr(je.text, "unable to open") == NULL))
        *rc = mdl_fail(err, MDL_EFORMAT, "%s: %s", path, je.text);
    else if (j && !json_is_object(j) && !json_is_array(j))
        *rc = mdl_fail(err, MDL_EFORMAT, "%s: not a JSON object", path);
    return j;
}

/* sentence-transformers packaging: modules.json, 1_Pooling/config.json, sentence_bert_config.json. */
static int load_bi_encoder(enc_model *m, const char *dir, mdl_error *err)
{
    int rc = 0;
    json_t *modules = load_json(dir, "modules.json", 0, err, &rc);
    const char *pool_dir = NULL;
    m->pooling = ENC_POOL_MEAN;
    if (modules) {
        if (!json_is_array(modules))
            rc = mdl_fail(err, MDL_EFORMAT, "%s/modules.json: not a list", dir);
        size_t i;
        json_t *mod;
        json_array_foreach(modules, i, mod) {
            if (rc)
                break;
            const char *type = json_string_value(json_object_get(mod, "type"));
            const char *path = json_string_value(json_object_get(mod, "path"));
            if (!type)
                rc = mdl_fail(err, MDL_EFORMAT, "%s/modules.json: module %zu has no type", dir, i);
            else if (strstr(type, "models.Transformer"))
                continue;
            else if (strstr(type, "models.Pooling"))
                pool_dir = path;
            else if (strstr(type, "models.Normalize"))
                m->normalize = 1;
            else
                rc = mdl_fail(err, MDL_EFORMAT, "%s/modules.json: module type '%.80s' is not supported", dir, type);
        }
    }
    if (!rc && pool_dir) {
        char rel[512];
        if (strstr(pool_dir, "..") || pool_dir[0] == '/')
            rc = mdl_fail(err, MDL_EFORMAT, "%s/modules.json: pooling path '%.80s' leaves the model", dir, pool_dir);
        snprintf(rel, sizeof rel, "%s/config.json", pool_dir);
        json_t *pc = rc ? NULL : load_json(dir, rel, 1, err, &rc);
        static const struct {
            const char *key;
            unsigned mode;
            int def;
        } keys[] = {{"pooling_mode_cls_token", ENC_POOL_CLS, 0},        {"pooling_mode_max_tokens", ENC_POOL_MAX, 0},
                    {"pooling_mode_mean_tokens", ENC_POOL_MEAN, 1},     {"pooling_mode_mean_sqrt_len_tokens", ENC_POOL_MEAN_SQRT, 0},
                    {"pooling_mode_weightedmean_tokens", ENC_POOL_WEIGHTED, 0}, {"pooling_mode_lasttoken", ENC_POOL_LAST, 0}};
        if (pc) {
            m->pooling = 0;
            for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
                json_t *v = json_object_get(pc, keys[k].key);
                if (v ? json_is_true(v) : keys[k].def)
                    m->pooling |= keys[k].mode;
            }
            if (!m->pooling)
                rc = mdl_fail(err, MDL_EFORMAT, "%s/%s: no pooling mode is enabled", dir, rel);
        }
        json_decref(pc);
    }
    json_t *sb = rc ? NULL : load_json(dir, "sentence_bert_config.json", 0, err, &rc);
    if (sb) {
        json_t *msl = json_object_get(sb, "max_seq_length");
        if (msl && (!json_is_integer(msl) || json_integer_value(msl) < 3))
            rc = mdl_fail(err, MDL_EFORMAT, "%s/sentence_bert_config.json: max_seq_length must be an integer ≥ 3", dir);
        else if (msl && (size_t)json_integer_value(msl) < m->max_tokens)
            m->max_tokens = (size_t)json_integer_value(msl);
        if (json_is_true(json_object_get(sb, "do_lower_case")))
            rc = mdl_fail(err, MDL_EFORMAT, "%s/sentence_bert_config.json: do_lower_case true is not supported", dir);
    }
    json_decref(sb);
    json_decref(modules);
    return rc;
}

/* The cross-encoder's default activation (FORMATS.md §2.5). */
static int load_cross_encoder(enc_model *m, const char *dir, mdl_error *err)
{
    int rc = 0;
    json_t *cfg = load_json(dir, "config.json", 1, err, &rc);
    const char *fn = json_string_value(json_object_get(json_object_get(cfg, "sentence_transformers"), "activation_fn"));
    if (!fn)
        fn = json_string_value(json_object_get(cfg, "sbert_ce_default_activation_function"));
    if (bert_get_config(m->bert)->num_labels != 1)
        rc = mdl_fail(err, MDL_EFORMAT, "%s: a reranker needs num_labels 1, not %zu", dir,
                      bert_get_config(m->bert)->num_labels);
    else if (!fn)
        m->sigmoid = 1;
    else if (strstr(fn, "Sigmoid"))
        m->sigmoid = 1;
    else if (strstr(fn, "Identity"))
        m->sigmoid = 0;
    else
        rc = mdl_fail(err, MDL_EFORMAT, "%s/config.json: activation '%.80s' is not supported", dir, fn);
    json_decref(cfg);
    return rc;
}

int enc_has_weights(const char *dir)
{
    static const char *const names[] = {"model.safetensors", "model.safetensors.index.json"};
    for (size_t i = 0; i < 2; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (access(path, F_OK) == 0)
            return 1;
    }
    return 0;
}

int enc_load(const char *dir, int cross, const tok_tokenizer *tok, enc_model **out, mdl_error *err)
{
    *out = NULL;
    enc_model *m = calloc(1, sizeof *m);
    if (!m)
        return mdl_fail(err, MDL_ENOMEM, "out of memory");
    m->cross = cross;
    m->tok = tok;
    int rc = bert_load(dir, cross, &m->bert, err);
    if (!rc) {
        size_t tok_max = tok_model_max_length(m->tok), pos = bert_get_config(m->bert)->max_positions;
        m->max_tokens = tok_max && tok_max < pos ? tok_max : pos;
        rc = cross ? load_cross_encoder(m, dir, err) : load_bi_encoder(m, dir, err);
    }
    if (rc) {
        enc_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

/* Python's str.strip(): White_Space characters at both ends. */
static size_t space_len(const unsigned char *s, size_t n, int from_end)
{
    static const uint32_t spaces[] = {0x85, 0xA0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006,
                                      0x2007, 0x2008, 0x2009, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000};
    if (!n)
        return 0;
    size_t i = from_end ? n - 1 : 0;
    if (from_end)
        while (i > 0 && (s[i] & 0xC0) == 0x80)
            i--;
    uint32_t cp;
    size_t len;
    if (s[i] < 0x80) {
        cp = s[i], len = 1;
        return (cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F)) ? len : 0;
    }
    if ((s[i] & 0xE0) == 0xC0 && i + 1 < n)
        cp = (uint32_t)(s[i] & 0x1F) << 6 | (s[i + 1] & 0x3F), len = 2;
    else if ((s[i] & 0xF0) == 0xE0 && i + 2 < n)
        cp = (uint32_t)(s[i] & 0x0F) << 12 | (uint32_t)(s[i + 1] & 0x3F) << 6 | (s[i + 2] & 0x3F), len = 3;
    else
        return 0;
    if (from_end && i + len != n)
        return 0;
    for (size_t k = 0; k < sizeof spaces / sizeof spaces[0]; k++)
        if (spaces[k] == cp)
            return len;
    return 0;
}

int enc_tokenize(const enc_model *m, const char *a, size_t a_len, const char *b, size_t b_len,
                 int truncate, tok_direction direction, tok_encoding *out, tok_error *err)
{
    const unsigned char *u = (const unsigned char *)a;
    size_t cut;
    if (!m->cross) { /* sentence-transformers strips; the cross-encoder (v4+) does not */
        while ((cut = space_len(u, a_len, 0)) != 0)
            u += cut, a_len -= cut;
        while ((cut = space_len(u, a_len, 1)) != 0)
            a_len -= cut;
    }
    tok_options opts = {.add_special_tokens = 1, .max_length = truncate ? m->max_tokens : 0,
                        .direction = direction};
    int rc = tok_encode(m->tok, (const char *)u, a_len, b, b_len, &opts, out, err);
    if (rc == 0 && out->len > m->max_tokens) {
        err->code = TOK_ELIMIT;
        snprintf(err->msg, sizeof err->msg,
                 "the input is %zu tokens; the model takes at most %zu (set truncate to cut it)", out->len,
                 m->max_tokens);
        return TOK_ELIMIT;
    }
    return rc;
}

/* Pools hidden[T,H] of one sequence with `len` real tokens into out (enc_dim floats). */
static void pool(unsigned modes, const float *hidden, size_t len, size_t H, float *out)
{
    size_t o = 0;
    if (modes & ENC_POOL_CLS) {
        memcpy(out, hidden, H * sizeof(float));
        o += H;
    }
    if (modes & ENC_POOL_MAX) {
        for (size_t h = 0; h < H; h++) {
            float mx = -1e9f;
            for (size_t t = 0; t < len; t++)
                mx = fmaxf(mx, hidden[t * H + h]);
            out[o + h] = mx;
        }
        o += H;
    }
    if (modes & (ENC_POOL_MEAN | ENC_POOL_MEAN_SQRT)) {
        float *sum = out + o;
        memset(sum, 0, H * sizeof(float));
        for (size_t t = 0; t < len; t++)
            for (size_t h = 0; h < H; h++)
                sum[h] += hidden[t * H + h];
        float count = fmaxf((float)len, 1e-9f);
        if (modes & ENC_POOL_MEAN) {
            for (size_t h = 0; h < H; h++)
                sum[h] /= count;
            o += H;
        }
        if (modes & ENC_POOL_MEAN_SQRT) {
            float *dst = out + o;
            for (size_t h = 0; h < H; h++) /* sum was divided above when MEAN is also on */
                dst[h] = (modes & ENC_POOL_MEAN ? sum[h] * count : sum[h]) / sqrtf(count);
            o += H;
        }
    }
    if (modes & ENC_POOL_WEIGHTED) {
        float wsum = 0;
        memset(out + o, 0, H * sizeof(float));
        for (size_t t = 0; t < len; t++) {
            float w = (float)(t + 1);
            wsum += w;
            for (size_t h = 0; h < H; h++)
                out[o + h] += w * hidden[t * H + h];
        }
        for (size_t h = 0; h < H; h++)
            out[o + h] /= fmaxf(wsum, 1e-9f);
        o += H;
    }
    if (modes & ENC_POOL_LAST)
        memcpy(out + o, hidden + (len ? len - 1 : 0) * H, H * sizeof(float));
}

typedef struct {
    size_t idx, len;
} by_len;

static int cmp_len(const void *a, const void *b)
{
    const by_len *x = a, *y = b;
    return (x->len > y->len) - (x->len < y->len);
}

/* Runs the network over seqs in chunks of similar length; for each sequence calls
 * emit(m, hidden[T,H] of that sequence, its length, its index, ctx). */
typedef void (*emit_fn)(const enc_model *m, const float *hidden, size_t len, size_t idx, void *ctx);

static int run_chunks(const enc_model *m, const tok_encoding *seqs, size_t n, emit_fn emit, void *ctx,
                      mdl_error *err)
{
    size_t H = bert_get_config(m->bert)->hidden;
    by_len *order = malloc((n ? n : 1) * sizeof *order);
    if (!order)
        return mdl_fail(err, MDL_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        order[i] = (by_len){i, seqs[i].len};
    qsort(order, n, sizeof *order, cmp_len);
    int rc = 0;
    for (size_t start = 0; start < n && !rc;) {
        size_t T = order[start].len, B = 1;
        /* Sorted ascending, so the last sequence of a chunk sets its padded length. */
        while (start + B < n && (B + 1) * order[start + B].len <= TOKENS_PER_CHUNK)
            T = order[start + B++].len;
        if (T == 0) {
            rc = mdl_fail(err, MDL_EINPUT, "an empty token sequence");
            break;
        }
        int32_t *ids = calloc(B * T, sizeof *ids), *types = calloc(B * T, sizeof *types);
        unsigned char *mask = calloc(B * T, 1);
        float *hidden = k_workspace(K_WS_CALLER, B * T * H); /* kept for the thread's next batch */
        if (!ids || !types || !mask || !hidden)
            rc = mdl_fail(err, MDL_ENOMEM, "out of memory for a batch of %zu x %zu tokens", B, T);
        for (size_t b = 0; b < B && !rc; b++) {
            const tok_encoding *e = &seqs[order[start + b].idx];
            for (size_t t = 0; t < e->len; t++) {
                ids[b * T + t] = e->ids[t];
                types[b * T + t] = e->type_ids[t];
                mask[b * T + t] = 1;
            }
        }
        bert_batch batch = {ids, types, mask, B, T};
        if (!rc)
            rc = bert_forward(m->bert, &batch, hidden, err);
        for (size_t b = 0; b < B && !rc; b++)
            emit(m, hidden + b * T * H, order[start + b].len, order[start + b].idx, ctx);
        free(ids), free(types), free(mask);
        start += B;
    }
    free(order);
    return rc;
}

typedef struct {
    float *out;
    int normalize;
} embed_ctx;

static void emit_embedding(const enc_model *m, const float *hidden, size_t len, size_t idx, void *vctx)
{
    embed_ctx *c = vctx;
    size_t dim = enc_dim(m);
    float *o = c->out + idx * dim;
    pool(m->pooling, hidden, len, bert_get_config(m->bert)->hidden, o);
    if (c->normalize) {
        double ss = 0;
        for (size_t i = 0; i < dim; i++)
            ss += (double)o[i] * o[i];
        float inv = 1.0f / fmaxf((float)sqrt(ss), 1e-12f);
        for (size_t i = 0; i < dim; i++)
            o[i] *= inv;
    }
}

int enc_embed(const enc_model *m, const tok_encoding *seqs, size_t n, int normalize, float *out, mdl_error *err)
{
    if (m->cross)
        return mdl_fail(err, MDL_EINPUT, "a cross-encoder does not embed");
    embed_ctx c = {out, normalize};
    return run_chunks(m, seqs, n, emit_embedding, &c, err);
}

typedef struct {
    float *out;
    int rc;
    mdl_error *err;
} score_ctx;

static void emit_score(const enc_model *m, const float *hidden, size_t len, size_t idx, void *vctx)
{
    (void)len;
    score_ctx *c = vctx;
    if (!c->rc)
        c->rc = bert_classify(m->bert, hidden, 1, 1, c->out + idx, c->err);
}

int enc_score(const enc_model *m, const tok_encoding *seqs, size_t n, float *out, mdl_error *err)
{
    if (!m->cross)
        return mdl_fail(err, MDL_EINPUT, "a bi-encoder does not score pairs");
    score_ctx c = {out, 0, err};
    int rc = run_chunks(m, seqs, n, emit_score, &c, err);
    return rc ? rc : c.rc;
}
