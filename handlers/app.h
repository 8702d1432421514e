/*
 * app.h — the application state every handler receives, and the route table.
 *
 * main.c builds one struct app and passes it to the daemon. Everything in it is set before
 * the daemon starts, except the models, which load after the daemon is listening (so
 * /health can answer 503 while they load): each model is published with its `ready` flag
 * (release store) and handlers read that flag (acquire load) before touching the model.
 */
#ifndef RAGD_APP_H
#define RAGD_APP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <time.h>

#include "batcher.h"
#include "config.h"
#include "encoder.h"
#include "gpt2.h"
#include "http.h"
#include "router.h"
#include "store.h"
#include "tokenizer.h"

typedef enum { APP_GENERATOR, APP_EMBEDDER, APP_RERANKER, APP_N_ROLES } app_role;

typedef enum { APP_MODEL_ABSENT, APP_MODEL_LOADING, APP_MODEL_READY, APP_MODEL_FAILED } app_model_state;

typedef struct {
    const char *dir;          /* configured directory, NULL when absent */
    tok_tokenizer *tok;       /* valid once state is READY */
    enc_model *enc;           /* embedder/reranker network; NULL when dir holds no weights */
    srv_batcher *batcher;     /* runs enc's forward passes, batching concurrent requests */
    gpt2_model *gpt;          /* the generator's network; NULL when dir holds no weights */
    pthread_mutex_t step;     /* one decoder step at a time: each uses every compute thread */
    char name[64];            /* the model id clients see (the directory's base name) */
    atomic_int state;         /* app_model_state */
    char error[320];          /* why loading failed (state FAILED) */
} app_model;

struct app_train; /* train_jobs.h */
typedef struct st_jobs st_jobs;

struct app {
    const srv_config *cfg;
    srv_daemon *daemon;
    st_db *db;
    st_jobs *jobs;            /* training jobs (set by app_train_start) */
    struct app_train *train;  /* the training workers; NULL until started */
    app_model models[APP_N_ROLES];
    time_t started_at;
};

extern const char *const app_role_names[APP_N_ROLES]; /* "generator", "embedder", "reranker" */

/* Loads the tokenizer of every configured model and publishes it. Logs each outcome. */
void app_load_models(struct app *app);
void app_unload_models(struct app *app);

/* The model for `role` if it is ready; otherwise queues a 503 naming why and returns NULL. */
app_model *app_model_ready(srv_req *req, struct app *app, app_role role);
/* Like app_model_ready, and the model must have its network (not only a tokenizer). */
app_model *app_network_ready(srv_req *req, struct app *app, app_role role);

/* Tokenizes n texts for the model's network (each after `query` as a pair when query is not
 * NULL), then runs them through its batcher together with whatever other requests wait:
 * embeddings into out[n, enc_dim] (not normalized) for the embedder, raw logits into out[n]
 * for the reranker. `pointer` names the texts in errors ("/inputs"; items get "/inputs/3"
 * when `is_list`). Returns 0 and the tokens used in *tokens, or -1 after replying. */
int app_encode(srv_req *req, app_model *m, const char *query, const char **texts, const size_t *lens, size_t n,
               const char *pointer, int is_list, int truncate, tok_direction dir, float *out, size_t *tokens);

/* Opens the jobs store, fails jobs a previous process left running, removes half-written
 * adapters, starts --train-workers workers and queues the jobs still queued. 0 or -1
 * (logged). Call after the models have loaded. */
int app_train_start(struct app *app);
/* Starts stopping: a running job stops at its next step, event streams end. Call before
 * draining the daemon. */
void app_train_quiesce(struct app *app);
/* Stops the workers: a running job stops at its next step and is queued again for the next
 * start. Closes the jobs store. */
void app_train_stop(struct app *app);

extern const srv_route app_routes[];
extern const size_t app_n_routes;

/* Route handlers, one file per resource. */
void h_health(srv_req *req, void *app);
void h_info(srv_req *req, void *app);
void h_metrics(srv_req *req, void *app);
void h_openapi(srv_req *req, void *app);
void h_tokenize(srv_req *req, void *app);
void h_decode(srv_req *req, void *app);
void h_embed(srv_req *req, void *app);
void h_openai_embeddings(srv_req *req, void *app);
void h_rerank(srv_req *req, void *app);
void h_jina_rerank(srv_req *req, void *app);
void h_cohere_rerank(srv_req *req, void *app);
void h_generate(srv_req *req, void *app);
void h_generate_stream(srv_req *req, void *app);
void h_completions(srv_req *req, void *app);
void h_models(srv_req *req, void *app);
void h_finetune(srv_req *req, void *app);
void h_dpo(srv_req *req, void *app);
void h_jobs_list(srv_req *req, void *app);
void h_jobs_get(srv_req *req, void *app);
void h_jobs_events(srv_req *req, void *app);
void h_jobs_cancel(srv_req *req, void *app);
void h_datasets_post(srv_req *req, void *app);

#endif
