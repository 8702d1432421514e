/* generate.c — POST /generate (TGI), POST /v1/completions and GET /v1/models (OpenAI) over
 * the GPT-2 decoder. Adapters are resolved by name; until adapters are loadable, any name
 * other than the base model is a 404 that lists what exists, never the base model silently. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app.h"
#include "json_util.h"
#include "sampler.h"
#include "validate.h"

#define MAX_STOP 16
#define MAX_STOP_BYTES 256

typedef enum { FINISH_LENGTH, FINISH_EOS, FINISH_STOP } finish_reason;
static const char *const finish_tgi[] = {"length", "eos_token", "stop_sequence"};
static const char *const finish_openai[] = {"length", "stop", "stop"};

typedef struct {
    int64_t max_new_tokens, top_k, seed;
    double temperature, top_p, repetition_penalty;
    json_t *stop;
    int details, return_full_text;
    const char *adapter_id;
} gen_params;

typedef struct {
    int32_t *ids;          /* generated ids */
    float *logprobs;
    size_t n, prompt_tokens;
    finish_reason finish;
    char *text;            /* decoded generated text (bytes, may end mid-character) */
    size_t text_len;
    uint64_t seed;
} gen_result;

static void gen_result_free(gen_result *r)
{
    free(r->ids);
    free(r->logprobs);
    free(r->text);
}

/* An adapter name must match [A-Za-z0-9][A-Za-z0-9._-]{0,63}: it is never a path. */
static int valid_adapter_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
            return 0;
    }
    return 1;
}

/* Resolves the adapter a request names (NULL or the base model's name: none). Returns 0, or
 * -1 after replying 400 for a bad name or 404 for an unknown one. */
static int resolve_adapter(srv_req *req, const app_model *m, const char *name, const char *field)
{
    if (!name || !*name || !strcmp(name, m->name))
        return 0;
    if (!valid_adapter_name(name)) {
        srv_reply_error(req, SRV_E_BAD_REQUEST, field,
                        "adapter names match [A-Za-z0-9][A-Za-z0-9._-]{0,63}; '%.80s' does not", name);
        return -1;
    }
    srv_reply_error(req, SRV_E_NOT_FOUND, field, "adapter '%s' is not loaded; available: the base model '%s' only",
                    name, m->name);
    return -1;
}

/* Checks the stop list: at most MAX_STOP non-empty strings of at most MAX_STOP_BYTES. */
static int check_stop(srv_req *req, json_t *stop, const char *field)
{
    if (!stop)
        return 0;
    if (!json_is_array(stop) || json_array_size(stop) > MAX_STOP) {
        srv_reply_error(req, SRV_E_INVALID_VALUE, field, "'stop' must be a list of at most %d strings", MAX_STOP);
        return -1;
    }
    for (size_t i = 0; i < json_array_size(stop); i++) {
        json_t *s = json_array_get(stop, i);
        if (!json_is_string(s) || json_string_length(s) == 0 || json_string_length(s) > MAX_STOP_BYTES) {
            srv_reply_error(req, SRV_E_INVALID_VALUE, field, "stop sequences are non-empty strings of at most %d bytes",
                            MAX_STOP_BYTES);
            return -1;
        }
    }
    return 0;
}

/* The byte offset where any stop sequence first occurs in text, or -1. */
static long find_stop(json_t *stop, const char *text, size_t len)
{
    long first = -1;
    for (size_t i = 0; stop && i < json_array_size(stop); i++) {
        const char *s = json_string_value(json_array_get(stop, i));
        size_t sl = json_string_length(json_array_get(stop, i));
        for (size_t at = 0; at + sl <= len; at++)
            if (!memcmp(text + at, s, sl)) {
                if (first < 0 || (long)at < first)
                    first = (long)at;
                break;
            }
    }
    return first;
}

/* Tokenizes the prompt and generates; fills *out. Returns 0, or -1 after replying. */
static int generate(srv_req *req, struct app *app, app_model *m, const char *prompt, size_t prompt_len,
                    const gen_params *p, gen_result *out)
{
    const gpt2_config *c = gpt2_get_config(m->gpt);
    memset(out, 0, sizeof *out);
    tok_encoding e = {0};
    tok_options o = {.add_special_tokens = 1};
    tok_error te;
    if (tok_encode(m->tok, prompt, prompt_len, NULL, 0, &o, &e, &te) != 0) {
        srv_reply_error(req, te.code == TOK_ENOMEM ? SRV_E_OUT_OF_MEMORY : SRV_E_TOKENIZER, "/inputs", "%s", te.msg);
        return -1;
    }
    int rc = -1;
    size_t np = e.len, max_new = (size_t)p->max_new_tokens;
    if (max_new == 0) /* not given: TGI's 20, within the context */
        max_new = np < c->n_positions ? (c->n_positions - np < 20 ? c->n_positions - np : 20) : 1;
    if (np == 0) {
        srv_reply_error(req, SRV_E_EMPTY_INPUT, "/inputs", "the prompt cannot be empty");
        goto out;
    }
    if (np > (size_t)app->cfg->max_input_tokens || np >= c->n_positions) {
        srv_reply_error(req, SRV_E_INPUT_TOO_LONG, "/inputs", "the prompt is %zu tokens; the limit is %zu", np,
                        c->n_positions - 1 < (size_t)app->cfg->max_input_tokens ? c->n_positions - 1
                                                                                 : (size_t)app->cfg->max_input_tokens);
        goto out;
    }
    if (np + max_new > c->n_positions) {
        srv_reply_error(req, SRV_E_OUT_OF_RANGE, "/parameters/max_new_tokens",
                        "prompt tokens (%zu) + max_new_tokens (%zu) must be <= the context of %zu", np, max_new,
                        c->n_positions);
        goto out;
    }
    size_t V = c->vocab;
    gpt2_cache *kc = gpt2_cache_create(m->gpt, np + max_new);
    float *logits = malloc(V * sizeof *logits), *scratch = malloc(2 * V * sizeof *scratch);
    int32_t *history = malloc((np + max_new) * sizeof *history);
    out->ids = malloc(max_new * sizeof *out->ids);
    out->logprobs = malloc(max_new * sizeof *out->logprobs);
    if (!kc || !logits || !scratch || !history || !out->ids || !out->logprobs) {
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory for this generation");
        goto done;
    }
    memcpy(history, e.ids, np * sizeof *history);
    out->prompt_tokens = np;
    out->seed = p->seed >= 0 ? (uint64_t)p->seed : (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)req;
    smp_rng rng;
    smp_seed(&rng, out->seed);
    smp_params sp = {(float)p->temperature, (size_t)p->top_k, (float)p->top_p, (float)p->repetition_penalty};
    mdl_error me;
    const int32_t *feed = e.ids;
    size_t n_feed = np;
    out->finish = FINISH_LENGTH;
    for (;;) {
        pthread_mutex_lock(&m->step);
        int frc = gpt2_forward(m->gpt, kc, feed, n_feed, logits, NULL, &me);
        pthread_mutex_unlock(&m->step);
        if (frc) {
            srv_reply_error(req, frc == MDL_ENOMEM ? SRV_E_OUT_OF_MEMORY : SRV_E_INTERNAL, NULL, "generation failed");
            goto done;
        }
        float lp;
        int32_t id = smp_next(logits, V, history, np + out->n, &sp, &rng, &lp, scratch);
        if (id == c->eos_id || id == tok_eos_id(m->tok)) {
            out->finish = FINISH_EOS;
            break;
        }
        out->ids[out->n] = id;
        out->logprobs[out->n] = lp;
        history[np + out->n++] = id;
        if (p->stop) {
            free(out->text);
            out->text = NULL;
            tok_decode(m->tok, out->ids, out->n, TOK_DECODE_SKIP_SPECIAL, &out->text, &out->text_len, &te);
            if (out->text && find_stop(p->stop, out->text, out->text_len) >= 0) {
                out->finish = FINISH_STOP;
                break;
            }
        }
        if (out->n == max_new)
            break;
        feed = &out->ids[out->n - 1];
        n_feed = 1;
    }
    free(out->text);
    out->text = NULL;
    if (tok_decode(m->tok, out->ids, out->n, TOK_DECODE_SKIP_SPECIAL, &out->text, &out->text_len, &te) != 0)
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
    else
        rc = 0;
done:
    gpt2_cache_free(kc);
    free(logits);
    free(scratch);
    free(history);
    if (rc)
        gen_result_free(out);
out:
    tok_encoding_free(&e);
    return rc;
}

/* ---- TGI ---- */

static const srv_field param_fields[] = {
    {"max_new_tokens", SRV_F_INT, 0, offsetof(gen_params, max_new_tokens), 1, 1 << 20, 0, NULL},
    {"temperature", SRV_F_NUMBER, 0, offsetof(gen_params, temperature), 0, 100, 0, NULL},
    {"top_k", SRV_F_INT, 0, offsetof(gen_params, top_k), 0, 1 << 24, 0, NULL},
    {"top_p", SRV_F_NUMBER, 0, offsetof(gen_params, top_p), 1e-6, 1, 0, NULL},
    {"repetition_penalty", SRV_F_NUMBER, 0, offsetof(gen_params, repetition_penalty), 1e-3, 100, 0, NULL},
    {"seed", SRV_F_INT, 0, offsetof(gen_params, seed), 0, 9.2e18, 0, NULL},
    {"stop", SRV_F_ARRAY, 0, offsetof(gen_params, stop), 0, 0, MAX_STOP, NULL},
    {"details", SRV_F_BOOL, 0, offsetof(gen_params, details), 0, 0, 0, NULL},
    {"return_full_text", SRV_F_BOOL, 0, offsetof(gen_params, return_full_text), 0, 0, 0, NULL},
    {"adapter_id", SRV_F_STRING, 0, offsetof(gen_params, adapter_id), 0, 0, 256, NULL},
};

typedef struct {
    const char *inputs;
    json_t *parameters;
} generate_req;

static const srv_field generate_fields[] = {
    {"inputs", SRV_F_STRING, SRV_FF_REQUIRED, offsetof(generate_req, inputs), 0, 0, 0, NULL},
    {"parameters", SRV_F_OBJECT, 0, offsetof(generate_req, parameters), 0, 0, 0, NULL},
};

static void default_params(gen_params *p, double temperature)
{
    *p = (gen_params){.max_new_tokens = 0, .seed = -1, .temperature = temperature, .top_p = 1.0,
                      .repetition_penalty = 1.0};
}

void h_generate(srv_req *req, void *ctx)
{
    struct app *app = ctx;
    generate_req in = {0};
    gen_params p;
    default_params(&p, 0.0); /* TGI: greedy unless sampling is asked for */
    json_t *body = srv_req_json(req);
    if (!body || srv_validate(req, body, generate_fields, 2, &in) ||
        (in.parameters &&
         srv_validate_at(req, in.parameters, "/parameters", param_fields, sizeof param_fields / sizeof param_fields[0], &p)) ||
        check_stop(req, p.stop, "/parameters/stop"))
        return;
    app_model *m = app_network_ready(req, app, APP_GENERATOR);
    if (!m)
        return;
    unsigned count;
    const char *q = srv_req_query(req, "adapter", &count);
    if (count > 1) {
        srv_reply_error(req, SRV_E_BAD_REQUEST, NULL, "give ?adapter= once");
        return;
    }
    if (q && p.adapter_id && strcmp(q, p.adapter_id) != 0) {
        srv_reply_error(req, SRV_E_BAD_REQUEST, "/parameters/adapter_id", "?adapter= and adapter_id disagree");
        return;
    }
    if (resolve_adapter(req, m, q ? q : p.adapter_id, q ? NULL : "/parameters/adapter_id"))
        return;
    gen_result r;
    if (generate(req, app, m, in.inputs, strlen(in.inputs), &p, &r))
        return;
    json_t *text;
    if (p.return_full_text) {
        size_t pl = strlen(in.inputs);
        char *full = malloc(pl + r.text_len + 1);
        if (full) {
            memcpy(full, in.inputs, pl);
            memcpy(full + pl, r.text, r.text_len);
        }
        text = full ? srv_json_string_lossy(full, pl + r.text_len) : NULL;
        free(full);
    } else {
        text = srv_json_string_lossy(r.text, r.text_len);
    }
    json_t *out = json_pack("{s:o*}", "generated_text", text);
    if (out && p.details) {
        json_t *tokens = json_array();
        for (size_t i = 0; tokens && i < r.n; i++) {
            char *piece;
            size_t pl;
            tok_error te;
            if (tok_decode(m->tok, &r.ids[i], 1, 0, &piece, &pl, &te) != 0)
                continue;
            json_array_append_new(tokens, json_pack("{s:i, s:o*, s:f, s:b}", "id", r.ids[i], "text",
                                                    srv_json_string_lossy(piece, pl), "logprob", (double)r.logprobs[i],
                                                    "special", 0));
            free(piece);
        }
        json_object_set_new(out, "details",
                            json_pack("{s:s, s:I, s:I, s:I, s:n, s:o*}", "finish_reason", finish_tgi[r.finish],
                                      "prompt_tokens", (json_int_t)r.prompt_tokens, "generated_tokens", (json_int_t)r.n,
                                      "seed", (json_int_t)(r.seed & 0x7fffffffffffffffull), "adapter", "tokens", tokens));
    }
    gen_result_free(&r);
    if (out)
        srv_reply_json(req, 200, out);
    else
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
}

/* ---- OpenAI ---- */

typedef struct {
    const char *model, *prompt;
    json_t *stop;
    int64_t max_tokens, seed, n;
    double temperature, top_p;
    int stream;
} completions_req;

static const srv_field completions_fields[] = {
    {"model", SRV_F_STRING, 0, offsetof(completions_req, model), 0, 0, 256, NULL},
    {"prompt", SRV_F_STRING, SRV_FF_REQUIRED, offsetof(completions_req, prompt), 0, 0, 0, NULL},
    {"stop", SRV_F_ANY, 0, offsetof(completions_req, stop), 0, 0, 0, NULL},
    {"max_tokens", SRV_F_INT, 0, offsetof(completions_req, max_tokens), 1, 1 << 20, 0, NULL},
    {"seed", SRV_F_INT, 0, offsetof(completions_req, seed), 0, 9.2e18, 0, NULL},
    {"n", SRV_F_INT, 0, offsetof(completions_req, n), 1, 1, 0, NULL},
    {"temperature", SRV_F_NUMBER, 0, offsetof(completions_req, temperature), 0, 2, 0, NULL},
    {"top_p", SRV_F_NUMBER, 0, offsetof(completions_req, top_p), 1e-6, 1, 0, NULL},
    {"stream", SRV_F_BOOL, 0, offsetof(completions_req, stream), 0, 0, 0, NULL},
};

void h_completions(srv_req *req, void *ctx)
{
    struct app *app = ctx;
    completions_req in = {.max_tokens = 0, .seed = -1, .n = 1, .temperature = 1.0, .top_p = 1.0};
    json_t *body = srv_req_json(req);
    if (!body || srv_validate(req, body, completions_fields, sizeof completions_fields / sizeof completions_fields[0], &in))
        return;
    if (in.stream) {
        srv_reply_error(req, SRV_E_INVALID_VALUE, "/stream", "streaming completions are not available yet");
        return;
    }
    /* stop: a string or a list of strings. */
    json_t *stop = in.stop && json_is_string(in.stop) ? json_pack("[O]", in.stop) : json_incref(in.stop);
    gen_params p;
    default_params(&p, in.temperature);
    p.max_new_tokens = in.max_tokens;
    p.seed = in.seed;
    p.top_p = in.top_p;
    p.stop = stop;
    app_model *m = NULL;
    gen_result r;
    if (check_stop(req, stop, "/stop") || !(m = app_network_ready(req, app, APP_GENERATOR)) ||
        resolve_adapter(req, m, in.model, "/model") || generate(req, app, m, in.prompt, strlen(in.prompt), &p, &r)) {
        json_decref(stop);
        return;
    }
    /* OpenAI leaves the stop sequence out of the text. */
    long at = r.finish == FINISH_STOP ? find_stop(stop, r.text, r.text_len) : -1;
    size_t len = at >= 0 ? (size_t)at : r.text_len;
    char id[40];
    snprintf(id, sizeof id, "cmpl-%s", srv_req_id(req));
    json_t *out = json_pack("{s:s, s:s, s:I, s:s, s:[{s:i, s:o*, s:s, s:n}], s:{s:I, s:I, s:I}}", "id", id, "object",
                            "text_completion", "created", (json_int_t)time(NULL), "model", in.model ? in.model : m->name,
                            "choices", "index", 0, "text", srv_json_string_lossy(r.text, len), "finish_reason",
                            finish_openai[r.finish], "logprobs", "usage", "prompt_tokens", (json_int_t)r.prompt_tokens,
                            "completion_tokens", (json_int_t)r.n, "total_tokens", (json_int_t)(r.prompt_tokens + r.n));
    gen_result_free(&r);
    json_decref(stop);
    if (out)
        srv_reply_json(req, 200, out);
    else
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
}

void h_models(srv_req *req, void *ctx)
{
    struct app *app = ctx;
    json_t *data = json_array();
    for (int r = 0; r < APP_N_ROLES; r++) {
        app_model *m = &app->models[r];
        if (atomic_load_explicit(&m->state, memory_order_acquire) != APP_MODEL_READY)
            continue;
        json_array_append_new(data, json_pack("{s:s, s:s, s:I, s:s, s:s, s:n}", "id", m->name, "object", "model",
                                              "created", (json_int_t)app->started_at, "owned_by", "ragd", "role",
                                              app_role_names[r], "parent"));
    }
    srv_reply_json(req, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}
