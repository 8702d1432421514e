/* rerank.c — POST /rerank (TEI), /v1/rerank (Jina) and /v2/rerank (Cohere): one engine,
 * three response shapes. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "validate.h"

typedef struct {
    size_t index;
    float logit;
} ranked;

static int by_score_desc(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->logit != y->logit)
        return x->logit < y->logit ? 1 : -1;
    return (x->index > y->index) - (x->index < y->index); /* stable: earlier document first */
}

static float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

/* Scores every (query, document) pair with the cross-encoder and sorts them, best first.
 * Returns a heap array of n entries (and the tokens scored in *tokens), or NULL after replying. */
static ranked *rank(srv_req *req, app_model *m, const char *query, const char **docs, const size_t *lens, size_t n,
                    const char *doc_pointer, int truncate, tok_direction dir, size_t *tokens)
{
    ranked *out = malloc(n * sizeof *out);
    float *logits = malloc(n * sizeof *logits);
    if (!out || !logits) {
        free(out);
        free(logits);
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
        return NULL;
    }
    if (app_encode(req, m, query, docs, lens, n, doc_pointer, 1, truncate, dir, logits, tokens) != 0) {
        free(out);
        free(logits);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = (ranked){i, logits[i]};
    qsort(out, n, sizeof *out, by_score_desc);
    free(logits);
    return out;
}

/* The document list of Jina and Cohere: strings, or objects with a "text" field. Fills
 * borrowed pointers (caller frees the arrays). Returns 0, or -1 after replying. */
static int document_list(srv_req *req, json_t *docs, size_t max, const char ***texts, size_t **lens, size_t *n)
{
    int is_list;
    if (json_is_array(docs) && json_array_size(docs) > 0 && json_is_object(json_array_get(docs, 0))) {
        size_t count = json_array_size(docs);
        if (count > max) {
            srv_reply_error(req, SRV_E_BATCH_TOO_LARGE, "/documents",
                            "'documents' has %zu items; the limit is %zu (--max-batch)", count, max);
            return -1;
        }
        *texts = malloc(count * sizeof **texts);
        *lens = malloc(count * sizeof **lens);
        if (!*texts || !*lens) {
            free(*texts), free(*lens);
            srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
            return -1;
        }
        for (size_t i = 0; i < count; i++) {
            json_t *t = json_object_get(json_array_get(docs, i), "text");
            if (!json_is_string(t)) {
                char field[48];
                snprintf(field, sizeof field, "/documents/%zu/text", i);
                free(*texts), free(*lens);
                srv_reply_error(req, SRV_E_INVALID_TYPE, field, "each document needs a string 'text'");
                return -1;
            }
            (*texts)[i] = json_string_value(t);
            (*lens)[i] = json_string_length(t);
        }
        *n = count;
        return 0;
    }
    if (!json_is_array(docs)) {
        srv_reply_error(req, SRV_E_INVALID_TYPE, "/documents", "'documents' must be a list");
        return -1;
    }
    return srv_string_list(req, docs, "/documents", max, texts, lens, n, &is_list);
}

/* ---- TEI ---- */

typedef struct {
    const char *query;
    json_t *texts;
    int raw_scores, return_text, truncate, direction;
} tei_req;

static const char *const directions[] = {"Right", "Left", NULL};
static const srv_field tei_fields[] = {
    {"query", SRV_F_STRING, SRV_FF_REQUIRED | SRV_FF_NONEMPTY, offsetof(tei_req, query), 0, 0, 0, NULL},
    {"texts", SRV_F_ARRAY, SRV_FF_REQUIRED, offsetof(tei_req, texts), 0, 0, 0, NULL},
    {"raw_scores", SRV_F_BOOL, 0, offsetof(tei_req, raw_scores), 0, 0, 0, NULL},
    {"return_text", SRV_F_BOOL, 0, offsetof(tei_req, return_text), 0, 0, 0, NULL},
    {"truncate", SRV_F_BOOL, 0, offsetof(tei_req, truncate), 0, 0, 0, NULL},
    {"truncation_direction", SRV_F_ENUM, 0, offsetof(tei_req, direction), 0, 0, 0, directions},
};

void h_rerank(srv_req *req, void *ctx)
{
    struct app *app = ctx;
    tei_req in = {.truncate = 1};
    json_t *body = srv_req_json(req);
    if (!body || srv_validate(req, body, tei_fields, sizeof tei_fields / sizeof tei_fields[0], &in))
        return;
    app_model *m = app_network_ready(req, app, APP_RERANKER);
    const char **docs;
    size_t *lens, n;
    int is_list;
    if (!m || srv_string_list(req, in.texts, "/texts", (size_t)app->cfg->max_batch, &docs, &lens, &n, &is_list))
        return;
    size_t tokens;
    ranked *r = rank(req, m, in.query, docs, lens, n, "/texts", in.truncate, (tok_direction)in.direction, &tokens);
    json_t *out = r ? json_array() : NULL;
    for (size_t i = 0; out && i < n; i++) {
        size_t k = r[i].index;
        json_t *item = json_pack("{s:I, s:f}", "index", (json_int_t)k, "score",
                                 (double)(in.raw_scores ? r[i].logit : sigmoid(r[i].logit)));
        if (item && in.return_text)
            json_object_set_new(item, "text", json_stringn(docs[k], lens[k]));
        if (!item || json_array_append_new(out, item) != 0) {
            json_decref(out);
            out = NULL;
        }
    }
    if (out)
        srv_reply_json(req, 200, out);
    else if (r)
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
    free(r);
    free(docs);
    free(lens);
}

/* ---- Jina (/v1/rerank) and Cohere (/v2/rerank) ---- */

typedef struct {
    const char *model, *query;
    json_t *documents;
    int64_t top_n;
    int return_documents;
} api_req;

static const srv_field api_fields[] = {
    {"model", SRV_F_STRING, 0, offsetof(api_req, model), 0, 0, 256, NULL},
    {"query", SRV_F_STRING, SRV_FF_REQUIRED | SRV_FF_NONEMPTY, offsetof(api_req, query), 0, 0, 0, NULL},
    {"documents", SRV_F_ANY, SRV_FF_REQUIRED, offsetof(api_req, documents), 0, 0, 0, NULL},
    {"top_n", SRV_F_INT, 0, offsetof(api_req, top_n), 1, 1 << 30, 0, NULL},
    {"return_documents", SRV_F_BOOL, 0, offsetof(api_req, return_documents), 0, 0, 0, NULL},
};

static void api_rerank(srv_req *req, struct app *app, int cohere)
{
    /* Jina returns the documents unless told not to; Cohere v2 only when asked. */
    api_req in = {.model = "ragd-reranker", .return_documents = !cohere};
    json_t *body = srv_req_json(req);
    if (!body || srv_validate(req, body, api_fields, sizeof api_fields / sizeof api_fields[0], &in))
        return;
    app_model *m = app_network_ready(req, app, APP_RERANKER);
    const char **docs;
    size_t *lens, n;
    if (!m || document_list(req, in.documents, (size_t)app->cfg->max_batch, &docs, &lens, &n))
        return;
    size_t tokens;
    ranked *r = rank(req, m, in.query, docs, lens, n, "/documents", 1, TOK_TRUNCATE_RIGHT, &tokens);
    size_t top = in.top_n && (size_t)in.top_n < n ? (size_t)in.top_n : n;
    json_t *results = r ? json_array() : NULL;
    for (size_t i = 0; results && i < top; i++) {
        size_t k = r[i].index;
        json_t *item = json_pack("{s:I, s:f}", "index", (json_int_t)k, "relevance_score", (double)sigmoid(r[i].logit));
        if (item && in.return_documents)
            json_object_set_new(item, "document", json_pack("{s:s%}", "text", docs[k], lens[k]));
        if (!item || json_array_append_new(results, item) != 0) {
            json_decref(results);
            results = NULL;
        }
    }
    json_t *out = NULL;
    if (results && cohere) {
        char id[40];
        snprintf(id, sizeof id, "%s", srv_req_id(req));
        out = json_pack("{s:s, s:o, s:{s:{s:I}}}", "id", id, "results", results, "meta", "billed_units",
                        "search_units", (json_int_t)1);
    } else if (results) {
        out = json_pack("{s:s, s:o, s:{s:I}}", "model", in.model, "results", results, "usage", "total_tokens",
                        (json_int_t)tokens);
    }
    if (out)
        srv_reply_json(req, 200, out);
    else if (r)
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
    free(r);
    free(docs);
    free(lens);
}

void h_jina_rerank(srv_req *req, void *ctx) { api_rerank(req, ctx, 0); }
void h_cohere_rerank(srv_req *req, void *ctx) { api_rerank(req, ctx, 1); }
