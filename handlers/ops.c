/* ops.c — /health, /info, /metrics and /openapi.json. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "openapi_doc.h"

static const char *const state_names[] = {"absent", "loading", "ready", "failed"};

void h_health(srv_req *req, void *ctx)
{
    struct app *app = ctx;
    if (srv_daemon_draining(app->daemon)) {
        srv_reply_error(req, SRV_E_SHUTTING_DOWN, NULL, "the server is shutting down");
        return;
    }
    for (int r = 0; r < APP_N_ROLES; r++) {
        int st = atomic_load_explicit(&app->models[r].state, memory_order_acquire);
        if (st == APP_MODEL_LOADING || st == APP_MODEL_FAILED) {
            srv_reply_error(req, SRV_E_MODEL_NOT_LOADED, NULL, "the %s is %s", app_role_names[r],
                            state_names[st]);
            return;
        }
    }
    srv_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static json_t *model_info(const app_model *m)
{
    int st = atomic_load_explicit(&m->state, memory_order_acquire);
    json_t *o = json_pack("{s:s?, s:s}", "dir", m->dir, "status", state_names[st]);
    if (!o)
        return NULL;
    if (st == APP_MODEL_READY) {
        json_object_set_new(o, "tokenizer",
                            json_string(tok_get_kind(m->tok) == TOK_KIND_BPE ? "bpe" : "wordpiece"));
        json_object_set_new(o, "vocab_size", json_integer((json_int_t)tok_vocab_size(m->tok)));
        size_t max_len = tok_model_max_length(m->tok);
        json_object_set_new(o, "max_length", max_len ? json_integer((json_int_t)max_len) : json_null());
        if (m->enc) {
            const bert_config *c = enc_bert_config(m->enc);
            json_object_set_new(o, "network", json_pack("{s:s, s:I, s:I, s:I, s:I}", "architecture",
                                                        enc_is_cross(m->enc) ? "BertForSequenceClassification" : "BertModel",
                                                        "hidden", (json_int_t)c->hidden, "layers", (json_int_t)c->layers,
                                                        "heads", (json_int_t)c->heads, "max_input_tokens",
                                                        (json_int_t)enc_max_tokens(m->enc)));
            if (!enc_is_cross(m->enc)) {
                json_object_set_new(o, "dimension", json_integer((json_int_t)enc_dim(m->enc)));
                json_object_set_new(o, "normalize", json_boolean(enc_normalizes(m->enc)));
            }
        }
    } else if (st == APP_MODEL_FAILED) {
        json_object_set_new(o, "error", json_string(m->error));
    }
    return o;
}

void h_info(srv_req *req, void *ctx)
{
    struct app *app = ctx;
    const srv_config *c = app->cfg;
    json_t *models = json_object();
    for (int r = 0; r < APP_N_ROLES && models; r++)
        json_object_set_new(models, app_role_names[r], model_info(&app->models[r]));
    json_t *limits = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "max_body_bytes", (json_int_t)c->max_body_bytes,
        "max_batch", (json_int_t)c->max_batch, "max_input_tokens", (json_int_t)c->max_input_tokens,
        "max_concurrent", (json_int_t)c->max_concurrent, "max_connections",
        (json_int_t)c->max_connections, "max_connections_per_ip", (json_int_t)c->max_connections_per_ip,
        "timeout_s", (json_int_t)c->timeout_s, "max_model_requests", (json_int_t)c->max_model_requests,
        "max_route_requests", (json_int_t)c->max_route_requests);
    json_t *body = json_pack("{s:s, s:s, s:o*, s:o*, s:I, s:b, s:I, s:s}", "name", "ragd",
                             "version", RAGD_VERSION, "models", models, "limits", limits, "threads",
                             (json_int_t)c->threads, "auth", c->api_key || c->api_key_file, "schema_version",
                             (json_int_t)st_schema_version(app->db), "sqlite_version",
                             st_sqlite_version());
    if (!body) {
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
        return;
    }
    json_object_set_new(body, "started_at", json_integer((json_int_t)app->started_at));
    srv_reply_json(req, 200, body);
}

void h_metrics(srv_req *req, void *ctx)
{
    struct app *app = ctx;
    size_t len;
    char *http = srv_daemon_metrics(app->daemon, &len);
    if (!http) {
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
        return;
    }
    char extra[1024];
    size_t n = (size_t)snprintf(extra, sizeof extra,
                                "# HELP ragd_build_info Version of this ragd.\n"
                                "# TYPE ragd_build_info gauge\n"
                                "ragd_build_info{version=\"%s\"} 1\n"
                                "# HELP ragd_model_ready Whether each configured model is ready.\n"
                                "# TYPE ragd_model_ready gauge\n",
                                RAGD_VERSION);
    for (int r = 0; r < APP_N_ROLES && n < sizeof extra; r++)
        n += (size_t)snprintf(extra + n, sizeof extra - n, "ragd_model_ready{role=\"%s\"} %d\n",
                              app_role_names[r],
                              atomic_load(&app->models[r].state) == APP_MODEL_READY);
    char *all = realloc(http, len + n + 1);
    if (!all) {
        free(http);
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
        return;
    }
    memcpy(all + len, extra, n + 1);
    srv_reply_bytes(req, 200, "text/plain; version=0.0.4; charset=utf-8", all, len + n);
    free(all);
}

void h_openapi(srv_req *req, void *ctx)
{
    (void)ctx;
    srv_reply_bytes(req, 200, "application/json", openapi_doc, openapi_doc_len);
}
