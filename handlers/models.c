/* models.c — loading the configured models and answering for ones that are not ready. */
#include "app.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "log.h"

#define BATCH_TOKENS 16384 /* tokens gathered into one batched forward pass */
#define GEN_BATCH_COST 64  /* decode steps (1 each) or prefill tokens gathered into one batch */
#define GEN_GATHER_US 4000 /* how long a decode batch waits for the other generations' steps */

typedef struct {
    const tok_encoding *seqs;
    size_t n;
    float *out;
    int rc;
    mdl_error *err;
} enc_job;

void app_compute_thread(const app_model *m, int below)
{
    if (k_compute_thread(below) != 0)
        srv_log(SRV_LOG_WARN, "cannot lower the priority of a model's compute thread", "model=%s error=\"%s\"",
                m->name, strerror(errno));
}

/* The batcher's callback: one forward pass over the sequences of every job. */
static void run_jobs(void *ctx, void **items, size_t n_jobs)
{
    app_model *m = ctx;
    app_compute_thread(m, 0);
    int cross = enc_is_cross(m->enc);
    size_t width = cross ? 1 : enc_dim(m->enc), total = 0;
    for (size_t j = 0; j < n_jobs; j++)
        total += ((enc_job *)items[j])->n;
    tok_encoding *all = malloc(total * sizeof *all);
    float *out = malloc(total * width * sizeof *out);
    mdl_error err;
    int rc = (!all || !out) ? mdl_fail(&err, MDL_ENOMEM, "out of memory for a batch of %zu", total) : 0;
    for (size_t j = 0, k = 0; j < n_jobs && !rc; j++) {
        const enc_job *job = items[j];
        memcpy(all + k, job->seqs, job->n * sizeof *all);
        k += job->n;
    }
    if (!rc)
        rc = cross ? enc_score(m->enc, all, total, out, &err) : enc_embed(m->enc, all, total, 0, out, &err);
    for (size_t j = 0, k = 0; j < n_jobs; j++) {
        enc_job *job = items[j];
        job->rc = rc;
        if (rc)
            *job->err = err;
        else
            memcpy(job->out, out + k * width, job->n * width * sizeof *out);
        k += job->n;
    }
    free(all);
    free(out);
}

int app_encode(srv_req *req, app_model *m, const char *query, const char **texts, const size_t *lens, size_t n,
               const char *pointer, int is_list, int truncate, tok_direction dir, float *out, size_t *tokens)
{
    if (srv_req_admit(req, &m->gate, m->name) != 0)
        return -1;
    tok_encoding *seqs = calloc(n, sizeof *seqs);
    if (!seqs) {
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
        return -1;
    }
    int rc = 0;
    *tokens = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        tok_error err;
        const char *a = query ? query : texts[i], *b = query ? texts[i] : NULL;
        size_t a_len = query ? strlen(query) : lens[i];
        if (enc_tokenize(m->enc, a, a_len, b, b ? lens[i] : 0, truncate, dir, &seqs[i], &err) != 0) {
            char field[64];
            snprintf(field, sizeof field, is_list ? "%s/%zu" : "%s", pointer, i);
            if (err.code == TOK_ELIMIT)
                srv_reply_error(req, SRV_E_INPUT_TOO_LONG, field, "%s", err.msg);
            else if (err.code == TOK_ENOMEM)
                srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory while tokenizing");
            else
                srv_reply_error(req, SRV_E_TOKENIZER, field, "%s", err.msg);
            rc = -1;
        }
        *tokens += seqs[i].len;
    }
    if (!rc) {
        mdl_error err;
        enc_job job = {seqs, n, out, 0, &err};
        if (srv_batcher_submit(m->batcher, &job, *tokens) != 0)
            job.rc = mdl_fail(&err, MDL_ENOMEM, "the model is shutting down");
        if (job.rc) {
            srv_reply_error(req, job.rc == MDL_ENOMEM ? SRV_E_OUT_OF_MEMORY : SRV_E_INTERNAL, NULL,
                            job.rc == MDL_ENOMEM ? "out of memory while running the %s" : "the %s failed",
                            enc_is_cross(m->enc) ? "reranker" : "embedder");
            rc = -1;
        }
    }
    for (size_t i = 0; i < n; i++)
        tok_encoding_free(&seqs[i]);
    free(seqs);
    return rc;
}

const char *const app_role_names[APP_N_ROLES] = {"generator", "embedder", "reranker"};

static const char *const role_flags[APP_N_ROLES] = {"--generator", "--embedder", "--reranker"};

void app_load_models(struct app *app)
{
    for (int r = 0; r < APP_N_ROLES; r++) {
        app_model *m = &app->models[r];
        if (!m->dir)
            continue;
        tok_error err;
        tok_tokenizer *tok;
        if (tok_load_dir(m->dir, &tok, &err) != 0) {
            snprintf(m->error, sizeof m->error, "%s", err.msg);
            atomic_store_explicit(&m->state, APP_MODEL_FAILED, memory_order_release);
            srv_log(SRV_LOG_ERROR, "model failed to load", "role=%s dir=\"%s\" error=\"%s\"",
                    app_role_names[r], m->dir, err.msg);
            continue;
        }
        m->tok = tok;
        const char *base = strrchr(m->dir, '/');
        snprintf(m->name, sizeof m->name, "%s", base && base[1] ? base + 1 : m->dir);
        if (r == APP_GENERATOR && enc_has_weights(m->dir)) {
            mdl_error merr;
            if (gpt2_load(m->dir, &m->gpt, &merr) != 0) {
                snprintf(m->error, sizeof m->error, "%s", merr.msg);
                atomic_store_explicit(&m->state, APP_MODEL_FAILED, memory_order_release);
                srv_log(SRV_LOG_ERROR, "model failed to load", "role=%s dir=\"%s\" error=\"%s\"",
                        app_role_names[r], m->dir, merr.msg);
                continue;
            }
            pthread_mutex_init(&m->step, NULL);
            if (!(m->batcher = srv_batcher_create(app_generate_jobs, m, GEN_BATCH_COST))) {
                snprintf(m->error, sizeof m->error, "cannot start the generator's batching thread");
                atomic_store_explicit(&m->state, APP_MODEL_FAILED, memory_order_release);
                srv_log(SRV_LOG_ERROR, "model failed to load", "role=%s dir=\"%s\" error=\"%s\"",
                        app_role_names[r], m->dir, m->error);
                continue;
            }
            srv_batcher_set_gather(m->batcher, GEN_GATHER_US);
            app_adapters_init(app);
        }
        if (r != APP_GENERATOR && enc_has_weights(m->dir)) {
            mdl_error merr;
            if (enc_load(m->dir, r == APP_RERANKER, tok, &m->enc, &merr) != 0 ||
                !(m->batcher = srv_batcher_create(run_jobs, m, BATCH_TOKENS))) {
                if (m->enc && !m->batcher)
                    snprintf(merr.msg, sizeof merr.msg, "cannot start the batching thread");
                snprintf(m->error, sizeof m->error, "%s", merr.msg);
                atomic_store_explicit(&m->state, APP_MODEL_FAILED, memory_order_release);
                srv_log(SRV_LOG_ERROR, "model failed to load", "role=%s dir=\"%s\" error=\"%s\"",
                        app_role_names[r], m->dir, merr.msg);
                continue;
            }
        }
        atomic_store_explicit(&m->state, APP_MODEL_READY, memory_order_release);
        srv_log(SRV_LOG_INFO, "model ready", "role=%s dir=\"%s\" tokenizer=%s vocab=%zu network=%s",
                app_role_names[r], m->dir, tok_get_kind(tok) == TOK_KIND_BPE ? "bpe" : "wordpiece",
                tok_vocab_size(tok), m->enc ? "bert" : m->gpt ? "gpt2" : "none");
    }
}

void app_unload_models(struct app *app)
{
    app_adapters_deinit(app);
    for (int r = 0; r < APP_N_ROLES; r++) {
        srv_batcher_destroy(app->models[r].batcher);
        app->models[r].batcher = NULL;
        enc_free(app->models[r].enc);
        if (app->models[r].gpt)
            pthread_mutex_destroy(&app->models[r].step);
        gpt2_free(app->models[r].gpt);
        app->models[r].gpt = NULL;
        tok_destroy(app->models[r].tok);
        app->models[r].enc = NULL;
        app->models[r].tok = NULL;
    }
}

app_model *app_network_ready(srv_req *req, struct app *app, app_role role)
{
    app_model *m = app_model_ready(req, app, role);
    if (m && !m->enc && !m->gpt) {
        /* The directory stays in the server's log: a 5xx body names no server path. */
        srv_reply_error(req, SRV_E_MODEL_NOT_LOADED, NULL,
                        "the %s directory holds a tokenizer but no weights (model.safetensors)", app_role_names[role]);
        return NULL;
    }
    return m;
}

app_model *app_model_ready(srv_req *req, struct app *app, app_role role)
{
    app_model *m = &app->models[role];
    switch (atomic_load_explicit(&m->state, memory_order_acquire)) {
    case APP_MODEL_READY:
        return m;
    case APP_MODEL_ABSENT:
        srv_reply_error(req, SRV_E_MODEL_NOT_LOADED, "/model",
                        "no %s is configured; start ragd with %s DIR", app_role_names[role],
                        role_flags[role]);
        return NULL;
    case APP_MODEL_LOADING:
        srv_reply_error(req, SRV_E_MODEL_NOT_LOADED, "/model", "the %s is still loading",
                        app_role_names[role]);
        return NULL;
    default:
        srv_reply_error(req, SRV_E_MODEL_NOT_LOADED, "/model", "the %s failed to load (the server log says why)",
                        app_role_names[role]);
        return NULL;
    }
}
