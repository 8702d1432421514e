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

#include "adapter.h"
#include "batcher.h"
#include "collections.h"
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
    srv_batcher *batcher;     /* runs enc's or gpt's forward passes, batching concurrent requests */
    gpt2_model *gpt;          /* the generator's network; NULL when dir holds no weights */
    pthread_mutex_t step;     /* held by the generator's batch runner around each batch of steps */
    srv_gate gate;            /* admission: --max-model-requests running or waiting on it */
    char name[64];            /* the model id clients see (the directory's base name) */
    atomic_int state;         /* app_model_state */
    char error[320];          /* why loading failed (state FAILED) */
} app_model;

struct app_train; /* train_jobs.h */
typedef struct st_jobs st_jobs;
#define APP_ADAPTER_PATH_MAX 256 /* a registered adapter's path below --adapters-dir */

typedef struct app_adapters app_adapters;

/* One loaded version of an adapter (adapters.c). Read-only while anyone holds it; freed by
 * whoever drops its last reference, so it can outlive its name's eviction or deletion. */
typedef struct app_adapter {
    adp_adapter *a;
    char name[ADP_NAME_MAX + 1];
    size_t bytes;
    int refs;                 /* under reg->lock: 1 while current in the registry, + users */
    app_adapters *reg;
} app_adapter;

/* The adapter registry: named PEFT directories below --adapters-dir, loaded on first use
 * into an LRU cache under --adapter-cache-bytes. */
struct app_adapters {
    pthread_mutex_t lock;     /* a leaf lock: never held across I/O or compute */
    int ready;
    int root_fd;              /* --adapters-dir, -1 when it cannot be opened */
    size_t budget, bytes;     /* bytes of the current versions */
    uint64_t clock;           /* LRU */
    struct app_adapter_entry *entries;
    size_t n;
};

struct app {
    const srv_config *cfg;
    srv_daemon *daemon;
    st_db *db;
    st_jobs *jobs;            /* training jobs (set by app_train_start) */
    struct app_train *train;  /* the training workers; NULL until started */
    app_model models[APP_N_ROLES];
    app_adapters adapters;
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

/* ---- shared by the collection, document and search handlers (collections.c) ---- */

/* Queues the reply for a store failure: 404 unknown collection or document, 409 exists,
 * 422 invalid (naming `field`), 503 out of memory or database busy, 507 disk full, 500
 * otherwise (logged, no detail to the client). */
void app_store_error(srv_req *req, const st_error *err, const char *field);
/* A JSON array of exactly `dim` numbers that are finite as float32 (and not all zero when
 * `cosine`) into out[dim]. Returns 0, or -1 after replying (naming `pointer` or its items). */
int app_parse_vector(srv_req *req, json_t *arr, unsigned dim, int cosine, const char *pointer, float *out);
/* Embeds n texts with the embedder into out[n, dim] (normalized when the model says so),
 * truncating to the model's limit; the embedder must produce `dim` values. `pointer` names
 * the texts in errors (items when is_list). Returns 0, or -1 after replying (503 when no
 * embedder is loaded). */
int app_embed_texts(srv_req *req, struct app *app, const char **texts, const size_t *lens, size_t n, unsigned dim,
                    const char *pointer, int is_list, float *out);

/* Compiles a Qdrant filter (NULL: none, *out = NULL). A malformed one gets a 422 whose field
 * is `pointer` plus the pointer of the bad part. Returns 0, or -1 after replying. */
int app_compile_filter(srv_req *req, json_t *filter, const char *pointer, st_filter **out);

/* The batch upsert behind POST /collections/{name}/documents (APP_DOCS_NATIVE:
 * {"documents":[{id, text?, vector?, metadata?}]}, texts without a vector embedded) and
 * PUT /collections/{name}/points (APP_DOCS_QDRANT: {"points":[{id, vector, payload?}]}).
 * Returns 0 with the documents written and embedded, or -1 after replying. */
typedef enum { APP_DOCS_NATIVE, APP_DOCS_QDRANT } app_doc_shape;
int app_upsert(srv_req *req, struct app *app, app_doc_shape shape, size_t *n, size_t *embedded);

/* A stored document as JSON: id, then text and metadata when present, vector when asked.
 * NULL when out of memory. */
json_t *app_record_json(const st_record *r, int with_vector);
/* Opens the jobs store, fails jobs a previous process left running, removes half-written
 * adapters, starts --train-workers workers and queues the jobs still queued (they wait
 * for the generator to load). 0 or -1 (logged). Call before the daemon starts. */
int app_train_start(struct app *app);
/* Starts stopping: a running job stops at its next step, event streams end. Call before
 * draining the daemon. */
void app_train_quiesce(struct app *app);
/* Stops the workers: a running job stops at its next step and is queued again for the next
 * start. Closes the jobs store. */
void app_train_stop(struct app *app);
/* The generator's batch runner (ctx: its app_model): prefills one by one, then every
 * pending decode step in one gpt2_decode_batch. */
void app_generate_jobs(void *ctx, void **items, size_t n);
/* What every batch runner calls first (below 0) and a training job's thread (below
 * TRAIN_NICE): the thread takes the compute threads' priority (--compute-nice) and `below`
 * steps more, once. A failure is logged and leaves the thread as it was. */
void app_compute_thread(const app_model *m, int below);

/* Opens --adapters-dir (creating it when missing) and the registry; app_load_models calls
 * it once the generator is loaded. Without a usable directory every adapter name is a 404. */
void app_adapters_init(struct app *app);
void app_adapters_deinit(struct app *app);

/* The adapter a request names: NULL/"" or the base model's name give *out = NULL (the base
 * model); otherwise the current version with a reference the caller must release. Returns
 * 0, or -1 after replying: 400 for a name that breaks the rule (no filesystem call made), 404
 * listing what exists for an unknown one, 422 for one that cannot be loaded. `field` is
 * the JSON pointer errors name. */
int app_adapter_acquire(srv_req *req, struct app *app, const app_model *m, const char *name, const char *field,
                        app_adapter **out);
void app_adapter_release(app_adapter *ad); /* accepts NULL */
/* Drops the cached version of `name` (requests using it finish on it), so the next use reads
 * ADAPTERS_DIR again: for whoever has just (re)written that adapter. */
void app_adapter_forget(struct app *app, const char *name);
/* {"name","type","bytes",...} of a version; a new reference. */
json_t *app_adapter_json(const app_adapter *ad);
/* Every adapter a client can name, as listing rows (a new reference, or NULL). */
json_t *app_adapters_list(struct app *app);

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
void h_collection_create(srv_req *req, void *app);
void h_collection_list(srv_req *req, void *app);
void h_collection_get(srv_req *req, void *app);
void h_collection_delete(srv_req *req, void *app);
void h_documents_upsert(srv_req *req, void *app);
void h_document_get(srv_req *req, void *app);
void h_document_delete(srv_req *req, void *app);
void h_search(srv_req *req, void *app);
void h_points_upsert(srv_req *req, void *app);
void h_points_query(srv_req *req, void *app);
void h_finetune(srv_req *req, void *app);
void h_dpo(srv_req *req, void *app);
void h_jobs_list(srv_req *req, void *app);
void h_jobs_get(srv_req *req, void *app);
void h_jobs_events(srv_req *req, void *app);
void h_jobs_cancel(srv_req *req, void *app);
void h_datasets_post(srv_req *req, void *app);
void h_adapters_list(srv_req *req, void *app);
void h_adapters_get(srv_req *req, void *app);
void h_adapters_post(srv_req *req, void *app);
void h_adapters_delete(srv_req *req, void *app);

#endif
