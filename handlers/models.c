/* models.c — loading the configured models and answering for ones that are not ready. */
#include "app.h"

#include "log.h"

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
        if (r != APP_GENERATOR && enc_has_weights(m->dir)) {
            mdl_error merr;
            if (enc_load(m->dir, r == APP_RERANKER, tok, &m->enc, &merr) != 0) {
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
                tok_vocab_size(tok), m->enc ? "bert" : "none");
    }
}

void app_unload_models(struct app *app)
{
    for (int r = 0; r < APP_N_ROLES; r++) {
        enc_free(app->models[r].enc);
        tok_destroy(app->models[r].tok);
        app->models[r].enc = NULL;
        app->models[r].tok = NULL;
    }
}

app_model *app_network_ready(srv_req *req, struct app *app, app_role role)
{
    app_model *m = app_model_ready(req, app, role);
    if (m && !m->enc) {
        srv_reply_error(req, SRV_E_MODEL_NOT_LOADED, NULL,
                        "the %s directory %s holds a tokenizer but no weights (model.safetensors)",
                        app_role_names[role], m->dir);
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
        srv_reply_error(req, SRV_E_MODEL_NOT_LOADED, "/model", "the %s failed to load: %s",
                        app_role_names[role], m->error);
        return NULL;
    }
}
