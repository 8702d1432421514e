/* routes.c — the one table of every route ragd serves (openapi/openapi.json documents the
 * same list; tests/integration checks that the two agree). */
#include "app.h"

#define PUBLIC (SRV_ROUTE_PUBLIC | SRV_ROUTE_NO_BODY)
/* Routes whose work grows with the request and runs on no model's batcher (whose gate bounds
 * /embed, /rerank, /generate and the rest): each has a gate of its own. */
#define GATED SRV_ROUTE_GATED

/* The gates of the models, taken before a request is handed to a worker. */
static srv_gate *model_gate(void *app, app_role role, const char **name)
{
    app_model *m = &((struct app *)app)->models[role];
    *name = m->name[0] ? m->name : app_role_names[role];
    return &m->gate;
}
static srv_gate *embedder(void *app, const char **name) { return model_gate(app, APP_EMBEDDER, name); }
static srv_gate *reranker(void *app, const char **name) { return model_gate(app, APP_RERANKER, name); }
static srv_gate *generator(void *app, const char **name) { return model_gate(app, APP_GENERATOR, name); }

const srv_route app_routes[] = {
    {"GET", "/health", h_health, PUBLIC, NULL},
    {"GET", "/healthz", h_health, PUBLIC, NULL},
    {"GET", "/readyz", h_health, PUBLIC, NULL},
    {"GET", "/info", h_info, SRV_ROUTE_NO_BODY, NULL},
    {"GET", "/metrics", h_metrics, SRV_ROUTE_NO_BODY, NULL},
    {"GET", "/openapi.json", h_openapi, SRV_ROUTE_NO_BODY, NULL},
    {"POST", "/tokenize", h_tokenize, GATED | SRV_ROUTE_CPU, NULL},
    {"POST", "/decode", h_decode, GATED | SRV_ROUTE_CPU, NULL},
    {"POST", "/embed", h_embed, 0, embedder},
    {"POST", "/v1/embeddings", h_openai_embeddings, SRV_ROUTE_OPENAI, embedder},
    {"POST", "/rerank", h_rerank, 0, reranker},
    {"POST", "/v1/rerank", h_jina_rerank, 0, reranker},
    {"POST", "/v2/rerank", h_cohere_rerank, 0, reranker},
    {"POST", "/generate", h_generate, 0, generator},
    {"POST", "/generate_stream", h_generate_stream, 0, generator},
    {"POST", "/v1/completions", h_completions, SRV_ROUTE_OPENAI, generator},
    {"GET", "/v1/models", h_models, SRV_ROUTE_NO_BODY | SRV_ROUTE_OPENAI, NULL},
    {"POST", "/collections", h_collection_create, 0, NULL},
    {"GET", "/collections", h_collection_list, SRV_ROUTE_NO_BODY, NULL},
    {"GET", "/collections/{name}", h_collection_get, SRV_ROUTE_NO_BODY, NULL},
    {"DELETE", "/collections/{name}", h_collection_delete, SRV_ROUTE_NO_BODY, NULL},
    {"POST", "/collections/{name}/documents", h_documents_upsert, GATED, NULL},
    {"GET", "/collections/{name}/documents/{id}", h_document_get, SRV_ROUTE_NO_BODY, NULL},
    {"DELETE", "/collections/{name}/documents/{id}", h_document_delete, SRV_ROUTE_NO_BODY, NULL},
    {"POST", "/search", h_search, GATED | SRV_ROUTE_CPU, NULL},
    {"PUT", "/collections/{name}/points", h_points_upsert, GATED, NULL},
    {"POST", "/collections/{name}/points/query", h_points_query, GATED | SRV_ROUTE_CPU, NULL},
    {"POST", "/finetune", h_finetune, 0, NULL},
    {"POST", "/dpo", h_dpo, 0, NULL},
    {"GET", "/jobs", h_jobs_list, SRV_ROUTE_NO_BODY, NULL},
    {"GET", "/jobs/{id}", h_jobs_get, SRV_ROUTE_NO_BODY, NULL},
    {"GET", "/jobs/{id}/events", h_jobs_events, SRV_ROUTE_NO_BODY, NULL},
    {"POST", "/jobs/{id}/cancel", h_jobs_cancel, SRV_ROUTE_NO_BODY, NULL},
    {"POST", "/datasets", h_datasets_post, SRV_ROUTE_JSONL | GATED, NULL},
    {"GET", "/adapters", h_adapters_list, SRV_ROUTE_NO_BODY, NULL},
    {"POST", "/adapters", h_adapters_post, 0, NULL},
    {"GET", "/adapters/{name}", h_adapters_get, SRV_ROUTE_NO_BODY, NULL},
    {"DELETE", "/adapters/{name}", h_adapters_delete, SRV_ROUTE_NO_BODY, NULL},
};

const size_t app_n_routes = sizeof app_routes / sizeof app_routes[0];
