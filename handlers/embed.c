/* embed.c — POST /embed (TEI) and POST /v1/embeddings (OpenAI) over the bi-encoder. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "validate.h"

static const char *const directions[] = {"Right", "Left", NULL};

/* Keeps the first `dims` values of each row (Matryoshka truncation), then L2-normalizes
 * when asked. Rows stay `stride` apart; the result is packed [n, dims]. */
static void finish_rows(float *v, size_t n, size_t stride, size_t dims, int normalize)
{
    for (size_t i = 0; i < n; i++) {
        float *src = v + i * stride, *dst = v + i * dims;
        memmove(dst, src, dims * sizeof *dst);
        if (!normalize)
            continue;
        double ss = 0;
        for (size_t k = 0; k < dims; k++)
            ss += (double)dst[k] * dst[k];
        float inv = 1.0f / fmaxf((float)sqrt(ss), 1e-12f);
        for (size_t k = 0; k < dims; k++)
            dst[k] *= inv;
    }
}

static json_t *float_array(const float *v, size_t n)
{
    json_t *a = json_array();
    for (size_t k = 0; a && k < n; k++)
        if (json_array_append_new(a, json_real(v[k])) != 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

typedef struct {
    json_t *inputs;
    int normalize, truncate, direction;
    int64_t dimensions;
} embed_req;

static const srv_field embed_fields[] = {
    {"inputs", SRV_F_ANY, SRV_FF_REQUIRED, offsetof(embed_req, inputs), 0, 0, 0, NULL},
    {"normalize", SRV_F_BOOL, 0, offsetof(embed_req, normalize), 0, 0, 0, NULL},
    {"truncate", SRV_F_BOOL, 0, offsetof(embed_req, truncate), 0, 0, 0, NULL},
    {"truncation_direction", SRV_F_ENUM, 0, offsetof(embed_req, direction), 0, 0, 0, directions},
    {"dimensions", SRV_F_INT, 0, offsetof(embed_req, dimensions), 1, 1 << 20, 0, NULL},
};

/* Checks `dimensions` against the model's width; 0 means all of it. */
static int check_dims(srv_req *req, int64_t dims, size_t width)
{
    if ((size_t)dims > width) {
        srv_reply_error(req, SRV_E_OUT_OF_RANGE, "/dimensions",
                        "'dimensions' is %lld; this model embeds into %zu", (long long)dims, width);
        return -1;
    }
    return 0;
}

/* The work both embedding routes share: the inputs (a string or a list of them, named
 * `pointer` in errors), tokenized and embedded, cut to `dimensions` (0 = all) and normalized
 * when asked. Returns a heap array [*n, *dims], or NULL after replying. */
static float *embed_inputs(srv_req *req, struct app *app, app_model *m, json_t *inputs, const char *pointer,
                           int64_t dimensions, int truncate, tok_direction dir, int normalize, size_t *n, size_t *dims,
                           size_t *tokens)
{
    size_t width = enc_dim(m->enc);
    *dims = dimensions ? (size_t)dimensions : width;
    const char **texts;
    size_t *lens;
    int is_list;
    if (check_dims(req, dimensions, width) ||
        srv_string_list(req, inputs, pointer, (size_t)app->cfg->max_batch, &texts, &lens, n, &is_list))
        return NULL;
    float *vec = malloc(*n * width * sizeof *vec);
    if (!vec)
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
    else if (app_encode(req, m, NULL, texts, lens, *n, pointer, is_list, truncate, dir, vec, tokens) == 0)
        finish_rows(vec, *n, width, *dims, normalize);
    else {
        free(vec);
        vec = NULL;
    }
    free(texts);
    free(lens);
    return vec;
}

void h_embed(srv_req *req, void *ctx)
{
    struct app *app = ctx;
    embed_req in = {.normalize = 1};
    json_t *body = srv_req_json(req);
    if (!body || srv_validate(req, body, embed_fields, sizeof embed_fields / sizeof embed_fields[0], &in))
        return;
    app_model *m = app_network_ready(req, app, APP_EMBEDDER);
    if (!m)
        return;
    size_t n, dims, tokens;
    float *vec = embed_inputs(req, app, m, in.inputs, "/inputs", in.dimensions, in.truncate,
                              (tok_direction)in.direction, in.normalize, &n, &dims, &tokens);
    if (!vec)
        return;
    json_t *out = json_array();
    for (size_t i = 0; out && i < n; i++)
        if (json_array_append_new(out, float_array(vec + i * dims, dims)) != 0) {
            json_decref(out);
            out = NULL;
        }
    free(vec);
    if (out)
        srv_reply_json(req, 200, out);
    else
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
}

/* ---- OpenAI ---- */

typedef struct {
    json_t *input;
    const char *model;
    int format;
    int64_t dimensions;
} openai_req;

static const char *const formats[] = {"float", "base64", NULL};
static const srv_field openai_fields[] = {
    {"input", SRV_F_ANY, SRV_FF_REQUIRED, offsetof(openai_req, input), 0, 0, 0, NULL},
    {"model", SRV_F_STRING, 0, offsetof(openai_req, model), 0, 0, 256, NULL},
    {"encoding_format", SRV_F_ENUM, 0, offsetof(openai_req, format), 0, 0, 0, formats},
    {"dimensions", SRV_F_INT, 0, offsetof(openai_req, dimensions), 1, 1 << 20, 0, NULL},
};

static json_t *base64_floats(const float *v, size_t n)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *b = (const unsigned char *)v;
    size_t len = n * sizeof *v, olen = (len + 2) / 3 * 4;
    char *o = malloc(olen + 1);
    if (!o)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < len; i += 3) {
        unsigned x = (unsigned)b[i] << 16 | (i + 1 < len ? (unsigned)b[i + 1] << 8 : 0) | (i + 2 < len ? b[i + 2] : 0);
        o[j++] = tbl[x >> 18 & 63];
        o[j++] = tbl[x >> 12 & 63];
        o[j++] = i + 1 < len ? tbl[x >> 6 & 63] : '=';
        o[j++] = i + 2 < len ? tbl[x & 63] : '=';
    }
    json_t *s = json_stringn(o, j);
    free(o);
    return s;
}

void h_openai_embeddings(srv_req *req, void *ctx)
{
    struct app *app = ctx;
    openai_req in = {.model = "ragd-embedder"};
    json_t *body = srv_req_json(req);
    if (!body || srv_validate(req, body, openai_fields, sizeof openai_fields / sizeof openai_fields[0], &in))
        return;
    app_model *m = app_network_ready(req, app, APP_EMBEDDER);
    if (!m)
        return;
    /* Token-id input ([int] or [[int]]) is another model's vocabulary (tiktoken's, for OpenAI
     * clients), so its ids would embed garbage: refuse it plainly. */
    json_t *first = json_is_array(in.input) ? json_array_get(in.input, 0) : NULL;
    if (json_is_integer(first) || json_is_array(first)) {
        srv_reply_error(req, SRV_E_BAD_REQUEST, "/input",
                        "token-id input is not accepted: ids from another tokenizer cannot be embedded by "
                        "this model; send the text instead");
        return;
    }
    size_t n, dims, tokens;
    float *vec = embed_inputs(req, app, m, in.input, "/input", in.dimensions, 0, TOK_TRUNCATE_RIGHT,
                              enc_normalizes(m->enc), &n, &dims, &tokens);
    if (!vec)
        return;
    json_t *data = json_array();
    for (size_t i = 0; data && i < n; i++) {
        json_t *e = in.format ? base64_floats(vec + i * dims, dims) : float_array(vec + i * dims, dims);
        json_t *item = json_pack("{s:s, s:I, s:o*}", "object", "embedding", "index", (json_int_t)i, "embedding", e);
        if (!e || !item) {
            json_decref(item);
            json_decref(data);
            data = NULL;
        } else if (json_array_append_new(data, item) != 0) {
            json_decref(data);
            data = NULL;
        }
    }
    free(vec);
    json_t *out = json_pack("{s:s, s:o*, s:s, s:{s:I, s:I}}", "object", "list", "data", data, "model", in.model,
                            "usage", "prompt_tokens", (json_int_t)tokens, "total_tokens", (json_int_t)tokens);
    if (out && data)
        srv_reply_json(req, 200, out);
    else {
        json_decref(out);
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
    }
}
