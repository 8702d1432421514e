/* generate.c — POST /generate and /generate_stream (TGI), POST /v1/completions and
 * GET /v1/models (OpenAI) over the GPT-2 decoder, with or without a PEFT adapter per request;
 * generate_stream.c streams what these routes begin. Adapters come from the registry
 * (adapters.c) by name; a session holds a reference to its adapter's version from
 * prefill to its last token. An unknown name is a 404 that lists what exists, never the
 * base model silently. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "generate.h"
#include "json_util.h"
#include "log.h"
#include "validate.h"

#define MAX_STOP 16
#define MAX_STOP_BYTES 256

static const char *const finish_tgi[] = {"length", "eos_token", "stop_sequence"};
static const char *const finish_openai[] = {"length", "stop", "stop"};

const char *gen_finish_openai(gen_finish f) { return finish_openai[f]; }

typedef struct {
    int64_t max_new_tokens, top_k, seed;
    double temperature, top_p, repetition_penalty;
    json_t *stop;
    int details, return_full_text;
    const char *adapter_id;
    int logprobs; /* set by the route, not the body: the reply shows each token's logprob */
} gen_params;

static const int32_t *gen_ids(const gen_session *s) { return s->history + s->np; }

/* The session takes no more decode steps: the batcher no longer waits for it. */
void gen_leave(gen_session *s)
{
    if (s->joined)
        srv_batcher_leave(s->m->batcher);
    s->joined = 0;
}

void gen_end(gen_session *s)
{
    if (!s)
        return;
    gen_leave(s);
    gpt2_cache_free(s->kc);
    app_adapter_release(s->ad);
    free(s->logits);
    free(s->scratch);
    free(s->history);
    free(s->logprobs);
    free(s->text);
    json_decref(s->stop);
    free(s);
}

/* Decodes the generated ids into s->text. Returns 0 or -1 (out of memory). */
int gen_decode(gen_session *s)
{
    tok_error te;
    free(s->text);
    s->text = NULL;
    return tok_decode(s->m->tok, gen_ids(s), s->n, TOK_DECODE_SKIP_SPECIAL, &s->text, &s->text_len, &te) ? -1 : 0;
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
long gen_find_stop(json_t *stop, const char *text, size_t len)
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

/* One forward pass a session asks of the generator's batcher: a prefill (after starting
 * the sequence for its adapter when `begin`), or one decode step. */
typedef struct {
    gen_session *s;
    const int32_t *ids;
    size_t n;
    int begin, rc;
} gen_job;

#define MAX_DECODE_BATCH 64 /* decode steps run as one batch */

void app_generate_jobs(void *ctx, void **items, size_t n_jobs)
{
    app_model *m = ctx;
    app_compute_thread(m, 0);
    size_t V = gpt2_get_config(m->gpt)->vocab, B = 0;
    const adp_adapter *ads[MAX_DECODE_BATCH];
    gpt2_cache *kcs[MAX_DECODE_BATCH];
    int32_t ids[MAX_DECODE_BATCH];
    gen_job *decode[MAX_DECODE_BATCH];
    for (size_t j = 0; j < n_jobs; j++) /* logits for the decode steps only, not 64 rows */
        B += ((gen_job *)items[j])->n == 1 && !((gen_job *)items[j])->begin;
    float *logits = malloc((B < MAX_DECODE_BATCH ? B : MAX_DECODE_BATCH) * V * sizeof *logits + 1);
    mdl_error me;
    B = 0;
    pthread_mutex_lock(&m->step);
    for (size_t j = 0; j < n_jobs; j++) {
        gen_job *job = items[j];
        gen_session *s = job->s;
        if (job->n == 1 && !job->begin && logits && B < MAX_DECODE_BATCH) {
            decode[B] = job;
            ads[B] = s->a;
            kcs[B] = s->kc;
            ids[B++] = job->ids[0];
            continue;
        }
        job->rc = job->begin ? gpt2_begin(m->gpt, s->a, s->kc, &me) : 0;
        if (!job->rc)
            job->rc = gpt2_forward_adapter(m->gpt, s->a, s->kc, job->ids, job->n, s->logits, NULL, &me);
    }
    /* The decode steps together: each weight is read once for all of them; rows with the same
     * adapter side by side share its LoRA products. */
    for (size_t i = 1; i < B; i++)
        for (size_t k = i; k > 0 && (uintptr_t)ads[k - 1] > (uintptr_t)ads[k]; k--) {
            const adp_adapter *ta = ads[k];
            ads[k] = ads[k - 1], ads[k - 1] = ta;
            gpt2_cache *tc = kcs[k];
            kcs[k] = kcs[k - 1], kcs[k - 1] = tc;
            int32_t ti = ids[k];
            ids[k] = ids[k - 1], ids[k - 1] = ti;
            gen_job *tj = decode[k];
            decode[k] = decode[k - 1], decode[k - 1] = tj;
        }
    int rc = B ? gpt2_decode_batch(m->gpt, ads, kcs, ids, B, logits, &me) : 0;
    for (size_t b = 0; b < B; b++) {
        decode[b]->rc = rc;
        if (!rc)
            memcpy(decode[b]->s->logits, logits + b * V, V * sizeof *logits);
    }
    pthread_mutex_unlock(&m->step);
    free(logits);
}

/* Runs the decoder over `ids` into s->logits, batched with other sessions' steps: 0, an
 * MDL_E* code, or GEN_STOPPING. */
static int gen_forward(gen_session *s, const int32_t *ids, size_t n, int begin)
{
    gen_job job = {s, ids, n, begin, 0};
    if (srv_batcher_submit(s->m->batcher, &job, n) != 0)
        return GEN_STOPPING;
    return job.rc;
}

/* The reply for a generation that failed with `rc` (an MDL_E* code, or GEN_STOPPING). */
static void reply_failure(srv_req *req, int rc)
{
    if (rc == MDL_ENOMEM)
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, GEN_SAYS_OUT_OF_MEMORY);
    else if (rc == GEN_STOPPING)
        srv_reply_error(req, SRV_E_SHUTTING_DOWN, NULL, GEN_SAYS_STOPPING);
    else
        srv_reply_error(req, SRV_E_INTERNAL, NULL, GEN_SAYS_FAILED);
}

/* Tokenizes and checks the prompt, and prefills it (after the adapter's virtual tokens).
 * Takes over the reference `ad`. Returns the session, or NULL after replying. */
static gen_session *gen_begin(srv_req *req, struct app *app, app_model *m, app_adapter *ad, const char *prompt,
                              const gen_params *p)
{
    if (srv_req_admit(req, &m->gate, m->name) != 0) {
        app_adapter_release(ad);
        return NULL;
    }
    const gpt2_config *c = gpt2_get_config(m->gpt);
    tok_encoding e = {0};
    tok_options o = {.add_special_tokens = 1};
    tok_error te;
    if (tok_encode(m->tok, prompt, strlen(prompt), NULL, 0, &o, &e, &te) != 0) {
        srv_reply_error(req, te.code == TOK_ENOMEM ? SRV_E_OUT_OF_MEMORY : SRV_E_TOKENIZER, "/inputs", "%s", te.msg);
        app_adapter_release(ad);
        return NULL;
    }
    /* The adapter's virtual tokens take the first positions of the context. */
    size_t nvt = adp_virtual_tokens(ad ? ad->a : NULL), ctx = c->n_positions - nvt;
    size_t np = e.len, max_new = (size_t)p->max_new_tokens, limit = (size_t)app->cfg->max_input_tokens;
    if (limit > ctx - 1)
        limit = ctx - 1;
    if (max_new == 0) /* not given: TGI's 20, within the context */
        max_new = np < ctx ? (ctx - np < 20 ? ctx - np : 20) : 1;
    gen_session *s = NULL;
    if (np == 0)
        srv_reply_error(req, SRV_E_EMPTY_INPUT, "/inputs", "the prompt cannot be empty");
    else if (np > limit)
        srv_reply_error(req, SRV_E_INPUT_TOO_LONG, "/inputs", "the prompt is %zu tokens; the limit is %zu", np, limit);
    else if (np + max_new > ctx)
        srv_reply_error(req, SRV_E_OUT_OF_RANGE, "/parameters/max_new_tokens",
                        "prompt tokens (%zu) + max_new_tokens (%zu) must be <= the context of %zu%s", np, max_new, ctx,
                        nvt ? " (after the adapter's virtual tokens)" : "");
    else if (!(s = calloc(1, sizeof *s)))
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, GEN_SAYS_OUT_OF_MEMORY);
    if (!s) {
        tok_encoding_free(&e);
        app_adapter_release(ad);
        return NULL;
    }
    s->m = m;
    s->ad = ad;
    s->a = ad ? ad->a : NULL;
    s->np = np;
    s->max_new = max_new;
    s->kc = gpt2_cache_create(m->gpt, nvt + np + max_new);
    s->logits = malloc(c->vocab * sizeof *s->logits);
    s->scratch = malloc(2 * c->vocab * sizeof *s->scratch);
    s->history = malloc((np + max_new) * sizeof *s->history);
    s->logprobs = malloc(max_new * sizeof *s->logprobs);
    if (!s->kc || !s->logits || !s->scratch || !s->history || !s->logprobs) {
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, GEN_SAYS_OUT_OF_MEMORY);
        gen_end(s);
        tok_encoding_free(&e);
        return NULL;
    }
    memcpy(s->history, e.ids, np * sizeof *s->history);
    tok_encoding_free(&e);
    s->seed = p->seed >= 0 ? (uint64_t)p->seed : ((uint64_t)time(NULL) << 20) ^ (uint64_t)(uintptr_t)s;
    smp_seed(&s->rng, s->seed);
    s->sp = (smp_params){(float)p->temperature, (size_t)p->top_k, (float)p->top_p, (float)p->repetition_penalty};
    s->stop = json_incref(p->stop);
    s->logprobs_wanted = p->logprobs;
    s->finish = GEN_FINISH_LENGTH;
    s->eos_id = -1;
    int rc = gen_forward(s, s->history, np, 1);
    if (rc != 0) {
        reply_failure(req, rc);
        gen_end(s);
        return NULL;
    }
    /* From here on it comes back for one decode step after another: the batcher gathers
     * the steps of all generations under way into one batch. */
    srv_batcher_join(m->batcher);
    s->joined = 1;
    return s;
}

/* Produces the next token into *id (1), or finishes (0: s->finish says why; an EOS token,
 * which is not part of the text, is still reported in *id), or fails (-1). */
int gen_step(gen_session *s, int32_t *id)
{
    if (s->done)
        return 0;
    const gpt2_config *c = gpt2_get_config(s->m->gpt);
    float lp = 0.0f;
    *id = smp_next(s->logits, c->vocab, s->history, s->np + s->n, &s->sp, &s->rng, s->logprobs_wanted ? &lp : NULL,
                   s->scratch);
    if (*id == c->eos_id || *id == tok_eos_id(s->m->tok)) {
        s->eos_id = *id;
        s->eos_logprob = lp;
        s->finish = GEN_FINISH_EOS;
        s->done = 1;
        gen_leave(s);
        return 0;
    }
    s->logprobs[s->n] = lp;
    s->history[s->np + s->n++] = *id;
    if (s->stop) {
        if (gen_decode(s) != 0) {
            s->error = MDL_ENOMEM;
            return -1;
        }
        if (gen_find_stop(s->stop, s->text, s->text_len) >= 0) {
            s->finish = GEN_FINISH_STOP;
            s->done = 1;
            gen_leave(s);
            return 1;
        }
    }
    if (s->n == s->max_new) {
        s->done = 1; /* the last token needs no forward pass */
        gen_leave(s);
        return 1;
    }
    s->error = gen_forward(s, id, 1, 0);
    return s->error == 0 ? 1 : -1;
}

#define GONE_CHECK_EVERY 4 /* tokens between checks that the client is still there */

/* Runs a session to its end and decodes the text. Returns 0, or -1 after replying (or when
 * the client went away, which cancels the generation). */
static int gen_run(srv_req *req, gen_session *s)
{
    int32_t id;
    int rc;
    while ((rc = gen_step(s, &id)) > 0)
        if (s->n % GONE_CHECK_EVERY == 0 && srv_req_client_gone(req)) {
            srv_log(SRV_LOG_INFO, "generation cancelled: the client went away", "request_id=%s generated=%zu",
                    srv_req_id(req), s->n);
            srv_reply_error(req, SRV_E_BAD_REQUEST, NULL, "the client closed the connection");
            return -1;
        }
    if (rc >= 0 && gen_decode(s) != 0)
        rc = -1, s->error = MDL_ENOMEM;
    if (rc < 0) {
        reply_failure(req, s->error);
        return -1;
    }
    return 0;
}

/* One token as TGI describes it; NULL when out of memory (never a token with its text lost). */
json_t *gen_token_json(const app_model *m, int32_t id, float logprob, int special)
{
    char *piece = NULL;
    size_t pl = 0;
    tok_error te;
    if (tok_decode(m->tok, &id, 1, 0, &piece, &pl, &te) != 0)
        return NULL;
    json_t *t = json_pack("{s:i, s:o, s:f, s:b}", "id", id, "text", srv_json_string_lossy(piece ? piece : "", pl),
                          "logprob", (double)logprob, "special", special);
    free(piece);
    return t;
}

/* {"name","type"} of the session's adapter, or null. */
static json_t *adapter_json(const gen_session *s)
{
    return s->ad ? json_pack("{s:s, s:s}", "name", s->ad->name, "type", adp_type_name(s->a->cfg.type)) : json_null();
}

/* TGI's details; the tokens (when asked) end with the EOS token that ended the generation,
 * marked special, with its logprob. generated_tokens counts it, as TGI does. NULL when out of
 * memory: never details with a key or a token left out. */
json_t *gen_details_json(const gen_session *s, int with_tokens)
{
    int eos = s->finish == GEN_FINISH_EOS && s->eos_id >= 0;
    json_t *d = json_pack("{s:s, s:I, s:I, s:I, s:o}", "finish_reason", finish_tgi[s->finish], "prompt_tokens",
                          (json_int_t)s->np, "generated_tokens", (json_int_t)(s->n + (size_t)eos), "seed",
                          (json_int_t)(s->seed & 0x7fffffffffffffffull), "adapter", adapter_json(s));
    if (d && with_tokens) {
        json_t *tokens = json_array();
        int ok = tokens != NULL;
        for (size_t i = 0; ok && i < s->n; i++)
            ok = json_array_append_new(tokens, gen_token_json(s->m, gen_ids(s)[i], s->logprobs[i], 0)) == 0;
        if (ok && eos)
            ok = json_array_append_new(tokens, gen_token_json(s->m, s->eos_id, s->eos_logprob, 1)) == 0;
        if (!ok || json_object_set_new(d, "tokens", ok ? tokens : NULL) != 0) {
            json_decref(d);
            d = NULL;
        }
        if (!ok)
            json_decref(tokens);
    }
    return d;
}

/* generated_text, with the prompt in front when asked. */
json_t *gen_text_json(const gen_session *s, const char *prompt)
{
    if (!prompt)
        return srv_json_string_lossy(s->text, s->text_len);
    size_t pl = strlen(prompt);
    char *full = malloc(pl + s->text_len + 1);
    if (!full)
        return NULL;
    memcpy(full, prompt, pl);
    memcpy(full + pl, s->text, s->text_len);
    json_t *j = srv_json_string_lossy(full, pl + s->text_len);
    free(full);
    return j;
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

/* Parses and checks a TGI body and the adapter; returns the session, or NULL after replying.
 * A stream shows every token's logprob; a reply in full, with its details. */
static gen_session *tgi_begin(srv_req *req, struct app *app, generate_req *in, gen_params *p, int stream)
{
    default_params(p, 0.0); /* TGI: greedy unless sampling is asked for */
    json_t *body = srv_req_json(req);
    if (!body || srv_validate(req, body, generate_fields, 2, in) ||
        (in->parameters &&
         srv_validate_at(req, in->parameters, "/parameters", param_fields, sizeof param_fields / sizeof param_fields[0], p)) ||
        check_stop(req, p->stop, "/parameters/stop"))
        return NULL;
    p->logprobs = stream || p->details;
    app_model *m = app_network_ready(req, app, APP_GENERATOR);
    if (!m)
        return NULL;
    unsigned count;
    const char *q = srv_req_query(req, "adapter", &count);
    if (count > 1) {
        srv_reply_error(req, SRV_E_BAD_REQUEST, NULL, "give ?adapter= once");
        return NULL;
    }
    if (q && p->adapter_id && strcmp(q, p->adapter_id) != 0) {
        srv_reply_error(req, SRV_E_BAD_REQUEST, "/parameters/adapter_id", "?adapter= and adapter_id disagree");
        return NULL;
    }
    app_adapter *ad;
    if (app_adapter_acquire(req, app, m, q ? q : p->adapter_id, q ? NULL : "/parameters/adapter_id", &ad))
        return NULL;
    return gen_begin(req, app, m, ad, in->inputs, p);
}

void h_generate(srv_req *req, void *ctx)
{
    generate_req in = {0};
    gen_params p;
    gen_session *s = tgi_begin(req, ctx, &in, &p, 0);
    if (!s || gen_run(req, s)) {
        gen_end(s);
        return;
    }
    json_t *out = json_pack("{s:o}", "generated_text", gen_text_json(s, p.return_full_text ? in.inputs : NULL));
    if (out && p.details && json_object_set_new(out, "details", gen_details_json(s, 1)) != 0) {
        json_decref(out);
        out = NULL;
    }
    gen_end(s);
    if (out)
        srv_reply_json(req, 200, out);
    else
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
}

void h_generate_stream(srv_req *req, void *ctx)
{
    generate_req in = {0};
    gen_params p;
    gen_session *s = tgi_begin(req, ctx, &in, &p, 1);
    if (s)
        gen_stream_start(req, s, &(gen_stream_opts){.details = p.details, .prompt = p.return_full_text ? in.inputs : NULL});
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
    /* stop: a string or a list of strings. */
    json_t *stop = in.stop && json_is_string(in.stop) ? json_pack("[O]", in.stop) : json_incref(in.stop);
    gen_params p;
    default_params(&p, in.temperature);
    p.max_new_tokens = in.max_tokens;
    p.seed = in.seed;
    p.top_p = in.top_p;
    p.stop = stop;
    app_model *m = NULL;
    app_adapter *ad = NULL;
    gen_session *s = NULL;
    if (check_stop(req, stop, "/stop") || !(m = app_network_ready(req, app, APP_GENERATOR)) ||
        app_adapter_acquire(req, app, m, in.model, "/model", &ad) || !(s = gen_begin(req, app, m, ad, in.prompt, &p))) {
        json_decref(stop);
        return;
    }
    const char *model = in.model ? in.model : m->name;
    char id[48];
    snprintf(id, sizeof id, "cmpl-%s", srv_req_id(req));
    if (in.stream) { /* errors until here were JSON replies; the stream starts after the prefill */
        json_decref(stop);
        gen_stream_start(req, s, &(gen_stream_opts){.openai = 1, .model = model, .id = id});
        return;
    }
    if (gen_run(req, s)) {
        gen_end(s);
        json_decref(stop);
        return;
    }
    /* OpenAI leaves the stop sequence out of the text. */
    long at = s->finish == GEN_FINISH_STOP ? gen_find_stop(stop, s->text, s->text_len) : -1;
    size_t len = at >= 0 ? (size_t)at : s->text_len;
    json_t *out = json_pack("{s:s, s:s, s:I, s:s, s:[{s:i, s:o, s:s, s:n}], s:{s:I, s:I, s:I}}", "id", id, "object",
                            "text_completion", "created", (json_int_t)time(NULL), "model", model,
                            "choices", "index", 0, "text", srv_json_string_lossy(s->text, len), "finish_reason",
                            finish_openai[s->finish], "logprobs", "usage", "prompt_tokens", (json_int_t)s->np,
                            "completion_tokens", (json_int_t)s->n, "total_tokens", (json_int_t)(s->np + s->n));
    gen_end(s);
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
    int ok = data != NULL; /* out of memory: a 503, never a list with a model left out */
    for (int r = 0; ok && r < APP_N_ROLES; r++) {
        app_model *m = &app->models[r];
        if (atomic_load_explicit(&m->state, memory_order_acquire) != APP_MODEL_READY)
            continue;
        ok = json_array_append_new(data, json_pack("{s:s, s:s, s:I, s:s, s:s, s:n}", "id", m->name, "object", "model",
                                              "created", (json_int_t)app->started_at, "owned_by", "ragd", "role",
                                              app_role_names[r], "parent")) == 0;
        if (!ok || r != APP_GENERATOR || !m->gpt)
            continue;
        /* Every adapter a request can name, with the base model as parent. */
        json_t *rows = app_adapters_list(app), *row;
        size_t i;
        ok = rows != NULL;
        json_array_foreach(rows, i, row) {
            json_t *type = json_object_get(row, "type");
            ok = ok && json_array_append_new(data, json_pack("{s:O, s:s, s:I, s:s, s:s, s:s, s:O*}", "id",
                                                  json_object_get(row, "name"), "object", "model", "created",
                                                  (json_int_t)app->started_at, "owned_by", "ragd", "role", "adapter",
                                                  "parent", m->name, "adapter_type", type)) == 0;
        }
        json_decref(rows);
    }
    json_t *out = ok ? json_pack("{s:s, s:O}", "object", "list", "data", data) : NULL;
    json_decref(data);
    if (out)
        srv_reply_json(req, 200, out);
    else
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
}
