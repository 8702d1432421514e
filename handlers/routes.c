/* routes.c — the one table of every route ragd serves (openapi/openapi.json documents the
 * same list; tests/integration checks that the two agree). */
#include "app.h"

#define PUBLIC (SRV_ROUTE_PUBLIC | SRV_ROUTE_NO_BODY)
/* Routes whose work grows with the request and runs on no model's batcher (whose gate bounds
 * /embed, /rerank, /generate and the rest): each has a gate of its own. */
#define GATED SRV_ROUTE_GATED

const srv_route app_routes[] = {
    {"GET", "/health", h_health, PUBLIC},
    {"GET", "/healthz", h_health, PUBLIC},
    {"GET", "/readyz", h_health, PUBLIC},
    {"GET", "/info", h_info, SRV_ROUTE_NO_BODY},
    {"GET", "/metrics", h_metrics, SRV_ROUTE_NO_BODY},
    {"GET", "/openapi.json", h_openapi, SRV_ROUTE_NO_BODY},
    {"POST", "/tokenize", h_tokenize, GATED},
    {"POST", "/decode", h_decode, GATED},
    {"POST", "/embed", h_embed, 0},
    {"POST", "/v1/embeddings", h_openai_embeddings, SRV_ROUTE_OPENAI},
    {"POST", "/rerank", h_rerank, 0},
    {"POST", "/v1/rerank", h_jina_rerank, 0},
    {"POST", "/v2/rerank", h_cohere_rerank, 0},
    {"POST", "/generate", h_generate, 0},
    {"POST", "/generate_stream", h_generate_stream, 0},
    {"POST", "/v1/completions", h_completions, SRV_ROUTE_OPENAI},
    {"GET", "/v1/models", h_models, SRV_ROUTE_NO_BODY | SRV_ROUTE_OPENAI},
    {"POST", "/collections", h_collection_create, 0},
    {"GET", "/collections", h_collection_list, SRV_ROUTE_NO_BODY},
    {"GET", "/collections/{name}", h_collection_get, SRV_ROUTE_NO_BODY},
    {"DELETE", "/collections/{name}", h_collection_delete, SRV_ROUTE_NO_BODY},
    {"POST", "/collections/{name}/documents", h_documents_upsert, GATED},
    {"GET", "/collections/{name}/documents/{id}", h_document_get, SRV_ROUTE_NO_BODY},
    {"DELETE", "/collections/{name}/documents/{id}", h_document_delete, SRV_ROUTE_NO_BODY},
    {"POST", "/search", h_search, GATED},
    {"PUT", "/collections/{name}/points", h_points_upsert, GATED},
    {"POST", "/collections/{name}/points/query", h_points_query, GATED},
    {"POST", "/finetune", h_finetune, 0},
    {"POST", "/dpo", h_dpo, 0},
    {"GET", "/jobs", h_jobs_list, SRV_ROUTE_NO_BODY},
    {"GET", "/jobs/{id}", h_jobs_get, SRV_ROUTE_NO_BODY},
    {"GET", "/jobs/{id}/events", h_jobs_events, SRV_ROUTE_NO_BODY},
    {"POST", "/jobs/{id}/cancel", h_jobs_cancel, SRV_ROUTE_NO_BODY},
    {"POST", "/datasets", h_datasets_post, SRV_ROUTE_JSONL | GATED},
    {"GET", "/adapters", h_adapters_list, SRV_ROUTE_NO_BODY},
    {"POST", "/adapters", h_adapters_post, 0},
    {"GET", "/adapters/{name}", h_adapters_get, SRV_ROUTE_NO_BODY},
    {"DELETE", "/adapters/{name}", h_adapters_delete, SRV_ROUTE_NO_BODY},
};

const size_t app_n_routes = sizeof app_routes / sizeof app_routes[0];
