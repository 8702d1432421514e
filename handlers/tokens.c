/* tokens.c — POST /tokenize and POST /decode (DESIGN §4.1). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "app.h"
#include "json_util.h"
#include "validate.h"

static const char *const model_choices[] = {"generator", "embedder", "reranker", NULL};

/* Maps a tokenizer failure to a reply. */
static void reply_tok_error(srv_req *req, const tok_error *err, const char *field)
{
    if (err->code == TOK_ENOMEM)
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory while tokenizing");
    else if (err->code == TOK_ELIMIT)
        srv_reply_error(req, SRV_E_INPUT_TOO_LONG, field, "%s", err->msg);
    else
        srv_reply_error(req, SRV_E_TOKENIZER, field, "%s", err->msg);
}

/* One input's tokens as TEI's SimpleToken list. Returns NULL when out of memory. */
static json_t *tokens_json(const tok_tokenizer *tok, const tok_encoding *enc, const char *text)
{
    json_t *list = json_array();
    for (size_t i = 0; list && i < enc->len; i++) {
        json_t *t;
        if (enc->seq[i] < 0) {
            const char *s = tok_id_to_token(tok, enc->ids[i]);
            t = json_pack("{s:i, s:s, s:b, s:n, s:n}", "id", (int)enc->ids[i], "text", s ? s : "",
                          "special", 1, "start", "stop");
        } else {
            /* Not "o*": a text that could not be allocated must not drop the key from a 200. */
            json_t *s = srv_json_string_lossy(text + enc->start[i], enc->stop[i] - enc->start[i]);
            t = s ? json_pack("{s:i, s:o, s:b, s:I, s:I}", "id", (int)enc->ids[i], "text", s, "special",
                              enc->special[i] != 0, "start", (json_int_t)enc->start[i], "stop",
                              (json_int_t)enc->stop[i])
                  : NULL;
        }
        if (!t || json_array_append_new(list, t) != 0) {
            json_decref(list);
            return NULL;
        }
    }
    return list;
}

typedef struct {
    json_t *inputs;
    int add_special_tokens;
    int model;
} tokenize_req;

static const srv_field tokenize_fields[] = {
    {"inputs", SRV_F_ANY, SRV_FF_REQUIRED, offsetof(tokenize_req, inputs), 0, 0, 0, NULL},
    {"add_special_tokens", SRV_F_BOOL, 0, offsetof(tokenize_req, add_special_tokens), 0, 0, 0, NULL},
    {"model", SRV_F_ENUM, 0, offsetof(tokenize_req, model), 0, 0, 0, model_choices},
};

void h_tokenize(srv_req *req, void *ctx)
{
    struct app *app = ctx;
    tokenize_req in = {NULL, 1, APP_GENERATOR};
    json_t *body = srv_req_json(req);
    if (!body || srv_validate(req, body, tokenize_fields, 3, &in) != 0)
        return;
    const app_model *m = app_model_ready(req, app, (app_role)in.model);
    if (!m)
        return;
    const char **texts;
    size_t *lens, n;
    int is_list;
    if (srv_string_list(req, in.inputs, "/inputs", (size_t)app->cfg->max_batch, &texts, &lens, &n,
                        &is_list) != 0)
        return;
    tok_options opts = {.add_special_tokens = in.add_special_tokens};
    tok_encoding enc = {0};
    json_t *out = json_array();
    for (size_t i = 0; out && i < n; i++) {
        char field[48];
        snprintf(field, sizeof field, is_list ? "/inputs/%zu" : "/inputs", i);
        tok_error err;
        if (tok_encode(m->tok, texts[i], lens[i], NULL, 0, &opts, &enc, &err) != 0) {
            reply_tok_error(req, &err, field);
            break;
        }
        if (enc.len > (size_t)app->cfg->max_input_tokens) {
            srv_reply_error(req, SRV_E_INPUT_TOO_LONG, field,
                            "the input is %zu tokens; the limit is %ld (--max-input-tokens)", enc.len,
                            app->cfg->max_input_tokens);
            break;
        }
        json_t *toks = tokens_json(m->tok, &enc, texts[i]);
        if (!toks || json_array_append_new(out, toks) != 0) {
            srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
            break;
        }
    }
    tok_encoding_free(&enc);
    free(texts);
    free(lens);
    if (!out)
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
    if (srv_req_replied(req))
        json_decref(out);
    else
        srv_reply_json(req, 200, out);
}

typedef struct {
    json_t *ids;
    int skip_special_tokens;
    int model;
} decode_req;

static const srv_field decode_fields[] = {
    {"ids", SRV_F_ARRAY, SRV_FF_REQUIRED, offsetof(decode_req, ids), 0, 0, 0, NULL},
    {"skip_special_tokens", SRV_F_BOOL, 0, offsetof(decode_req, skip_special_tokens), 0, 0, 0, NULL},
    {"model", SRV_F_ENUM, 0, offsetof(decode_req, model), 0, 0, 0, model_choices},
};

/* Reads one id list into `ids` (capacity `cap`). Returns its length, or -1 after replying. */
static long read_ids(srv_req *req, json_t *list, const char *pointer, size_t vocab, int32_t *ids,
                     size_t cap)
{
    if (json_array_size(list) > cap) {
        srv_reply_error(req, SRV_E_INPUT_TOO_LONG, pointer,
                        "%zu ids in one sequence; the limit is %zu (--max-input-tokens)",
                        json_array_size(list), cap);
        return -1;
    }
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *v = json_array_get(list, i);
        char field[64];
        snprintf(field, sizeof field, "%s/%zu", pointer, i);
        if (!json_is_integer(v)) {
            srv_reply_error(req, SRV_E_INVALID_TYPE, field, "token ids must be integers");
            return -1;
        }
        json_int_t id = json_integer_value(v);
        if (id < 0 || (size_t)id >= vocab) {
            srv_reply_error(req, SRV_E_INVALID_VALUE, field,
                            "token id %lld is outside the vocabulary (0..%zu)", (long long)id,
                            vocab - 1);
            return -1;
        }
        ids[i] = (int32_t)id;
    }
    return (long)json_array_size(list);
}

void h_decode(srv_req *req, void *ctx)
{
    struct app *app = ctx;
    decode_req in = {NULL, 1, APP_GENERATOR};
    json_t *body = srv_req_json(req);
    if (!body || srv_validate(req, body, decode_fields, 3, &in) != 0)
        return;
    const app_model *m = app_model_ready(req, app, (app_role)in.model);
    if (!m)
        return;
    /* [int] is one sequence; [[int], ...] is a batch. */
    int batch = json_array_size(in.ids) > 0 && json_is_array(json_array_get(in.ids, 0));
    size_t n = batch ? json_array_size(in.ids) : 1;
    if (n > (size_t)app->cfg->max_batch) {
        srv_reply_error(req, SRV_E_BATCH_TOO_LARGE, "/ids",
                        "'ids' has %zu sequences; the limit is %ld (--max-batch)", n,
                        app->cfg->max_batch);
        return;
    }
    size_t cap = (size_t)app->cfg->max_input_tokens;
    int32_t *ids = malloc(cap * sizeof *ids);
    json_t *out = json_array();
    if (!ids || !out) {
        free(ids);
        json_decref(out);
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
        return;
    }
    size_t vocab = tok_vocab_size(m->tok);
    for (size_t i = 0; i < n; i++) {
        char pointer[32];
        json_t *list = batch ? json_array_get(in.ids, i) : in.ids;
        snprintf(pointer, sizeof pointer, batch ? "/ids/%zu" : "/ids", i);
        if (!json_is_array(list)) {
            srv_reply_error(req, SRV_E_INVALID_TYPE, pointer,
                            "'ids' must be a list of integers or a list of such lists");
            break;
        }
        long len = read_ids(req, list, pointer, vocab, ids, cap);
        if (len < 0)
            break;
        char *text;
        size_t text_len;
        tok_error err;
        if (tok_decode(m->tok, ids, (size_t)len, in.skip_special_tokens ? TOK_DECODE_SKIP_SPECIAL : 0, &text, &text_len,
                       &err) != 0) {
            reply_tok_error(req, &err, pointer);
            break;
        }
        json_t *s = srv_json_string_lossy(text, text_len);
        free(text);
        if (!s || json_array_append_new(out, s) != 0) {
            srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
            break;
        }
    }
    free(ids);
    if (srv_req_replied(req))
        json_decref(out);
    else
        srv_reply_json(req, 200, out);
}
