/* search.c — POST /search: dense, keyword or hybrid retrieval over one collection with a
 * Qdrant filter, then (when asked) the cross-encoder reranks the candidates, so a RAG
 * backend gets search-then-rerank in one call. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app.h"
#include "validate.h"

typedef struct {
    const char *collection, *query;
    json_t *vector, *filter, *rerank;
    int64_t top_k, ef;
    double score_threshold;
    int mode, exact, with_text, with_metadata, with_vector;
} search_req;

static const srv_field search_fields[] = {
    {"collection", SRV_F_STRING, SRV_FF_REQUIRED | SRV_FF_NONEMPTY, offsetof(search_req, collection), 0, 0, ST_NAME_MAX,
     NULL},
    {"query", SRV_F_STRING, SRV_FF_NONEMPTY, offsetof(search_req, query), 0, 0, 0, NULL},
    {"vector", SRV_F_ARRAY, 0, offsetof(search_req, vector), 0, 0, 0, NULL},
    {"top_k", SRV_F_INT, 0, offsetof(search_req, top_k), 1, ST_TOP_K_MAX, 0, NULL},
    {"filter", SRV_F_OBJECT, 0, offsetof(search_req, filter), 0, 0, 0, NULL},
    {"score_threshold", SRV_F_NUMBER, 0, offsetof(search_req, score_threshold), -INFINITY, INFINITY, 0, NULL},
    {"mode", SRV_F_ENUM, 0, offsetof(search_req, mode), 0, 0, 0, st_mode_names},
    {"ef", SRV_F_INT, 0, offsetof(search_req, ef), 1, 65536, 0, NULL},
    {"exact", SRV_F_BOOL, 0, offsetof(search_req, exact), 0, 0, 0, NULL},
    {"rerank", SRV_F_OBJECT, 0, offsetof(search_req, rerank), 0, 0, 0, NULL},
    {"with_text", SRV_F_BOOL, 0, offsetof(search_req, with_text), 0, 0, 0, NULL},
    {"with_metadata", SRV_F_BOOL, 0, offsetof(search_req, with_metadata), 0, 0, 0, NULL},
    {"with_vector", SRV_F_BOOL, 0, offsetof(search_req, with_vector), 0, 0, 0, NULL},
};

typedef struct {
    int64_t top_n;
} rerank_req;

static const srv_field rerank_fields[] = {
    {"top_n", SRV_F_INT, 0, offsetof(rerank_req, top_n), 1, ST_TOP_K_MAX, 0, NULL},
};

typedef struct {
    size_t index;
    float logit;
} reranked;

static int by_logit(const void *a, const void *b)
{
    const reranked *x = a, *y = b;
    if (x->logit != y->logit)
        return x->logit < y->logit ? 1 : -1;
    return (x->index > y->index) - (x->index < y->index);
}

/* Scores (query, text) for every result with the cross-encoder m; fills order[n] best first.
 * A result without text is scored on the empty string. Returns 0, or -1 after replying. */
static int rerank(srv_req *req, app_model *m, const char *query, const st_record *res, size_t n, reranked *order)
{
    const char **texts = malloc(n * sizeof *texts);
    size_t *lens = malloc(n * sizeof *lens), tokens;
    float *logits = malloc(n * sizeof *logits);
    int rc = -1;
    if (!texts || !lens || !logits) {
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
    } else {
        for (size_t i = 0; i < n; i++) {
            texts[i] = res[i].text ? res[i].text : "";
            lens[i] = res[i].text ? res[i].text_len : 0;
        }
        rc = app_encode(req, m, query, texts, lens, n, "/query", 0, 1, TOK_TRUNCATE_RIGHT, logits, &tokens);
        for (size_t i = 0; rc == 0 && i < n; i++)
            order[i] = (reranked){i, logits[i]};
        if (rc == 0)
            qsort(order, n, sizeof *order, by_logit);
    }
    free(texts);
    free(lens);
    free(logits);
    return rc;
}

void h_search(srv_req *req, void *ctx)
{
    struct app *app = ctx;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    search_req in = {.top_k = 10, .mode = ST_MODE_DENSE, .with_text = 1, .with_metadata = 1};
    rerank_req rr = {0};
    json_t *body = srv_req_json(req);
    if (!body || srv_validate(req, body, search_fields, sizeof search_fields / sizeof search_fields[0], &in) ||
        (in.rerank && srv_validate_at(req, in.rerank, "/rerank", rerank_fields, 1, &rr)))
        return;
    if (in.mode != ST_MODE_DENSE && !in.query) {
        srv_reply_error(req, SRV_E_MISSING_FIELD, "/query", "'query' is required in %s mode", st_mode_names[in.mode]);
        return;
    }
    if (in.mode == ST_MODE_DENSE && !in.query && !in.vector) {
        srv_reply_error(req, SRV_E_MISSING_FIELD, "/query", "dense search needs 'query' (text) or 'vector'");
        return;
    }
    if (in.rerank && !in.query) {
        srv_reply_error(req, SRV_E_MISSING_FIELD, "/query", "reranking needs the 'query' text");
        return;
    }
    /* The reranker must be there whatever the search finds. */
    app_model *reranker = in.rerank ? app_network_ready(req, app, APP_RERANKER) : NULL;
    if (in.rerank && !reranker)
        return;
    st_collection c;
    st_error err;
    if (st_collection_get(app->db, in.collection, &c, &err) != 0) {
        app_store_error(req, &err, "/collection");
        return;
    }
    float *vec = NULL;
    if (in.mode != ST_MODE_KEYWORD) {
        vec = malloc(c.dimension * sizeof *vec);
        if (!vec) {
            srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
            return;
        }
        size_t qlen = in.query ? strlen(in.query) : 0;
        int rc = in.vector ? app_parse_vector(req, in.vector, c.dimension, c.distance == ST_COSINE, "/vector", vec)
                           : app_embed_texts(req, app, &in.query, &qlen, 1, c.dimension, "/query", 0, vec);
        if (rc != 0) {
            free(vec);
            return;
        }
    }
    st_filter *filter;
    if (app_compile_filter(req, in.filter, "/filter", &filter) != 0) {
        free(vec);
        return;
    }
    st_query q = {
        .mode = (st_mode)in.mode,
        .vector = vec,
        .dimension = c.dimension,
        .text = in.query,
        .text_len = in.query ? strlen(in.query) : 0,
        .top_k = (size_t)in.top_k,
        .filter = filter,
        .exact = in.exact,
        .ef = (unsigned)in.ef,
        .has_threshold = json_object_get(body, "score_threshold") != NULL &&
                         !json_is_null(json_object_get(body, "score_threshold")),
        .score_threshold = in.score_threshold,
        .with_text = in.with_text || in.rerank != NULL, /* the reranker reads the text */
        .with_metadata = in.with_metadata,
        .with_vector = in.with_vector,
    };
    st_record *res;
    size_t n;
    int rc = st_search(app->db, c.name, &q, &res, &n, &err);
    st_filter_free(filter);
    free(vec);
    if (rc != 0) {
        app_store_error(req, &err, err.code == ST_ERR_INVALID ? "/vector" : NULL);
        return;
    }
    size_t shown = n;
    reranked *order = in.rerank ? malloc((n ? n : 1) * sizeof *order) : NULL;
    if (in.rerank && (!order || (n && rerank(req, reranker, in.query, res, n, order) != 0))) {
        if (!order)
            srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
        free(order);
        st_results_free(res, n);
        return;
    }
    if (in.rerank && rr.top_n && (size_t)rr.top_n < shown)
        shown = (size_t)rr.top_n;
    json_t *results = json_array();
    for (size_t i = 0; results && i < shown; i++) {
        size_t k = order ? order[i].index : i;
        st_record r = res[k];
        if (!in.with_text) { /* fetched only for the reranker */
            r.text = NULL;
        }
        json_t *item = app_record_json(&r, in.with_vector);
        if (item && (json_object_set_new(item, "score", json_real(r.score)) != 0 ||
                     (order && json_object_set_new(item, "rerank_score",
                                                   json_real(1.0 / (1.0 + exp(-(double)order[i].logit)))) != 0))) {
            json_decref(item); /* a 200 without its score would be wrong, not short */
            item = NULL;
        }
        if (!item || json_array_append_new(results, item) != 0) {
            json_decref(results);
            results = NULL;
        }
    }
    free(order);
    st_results_free(res, n);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    json_t *out = results ? json_pack("{s:o, s:s, s:f}", "results", results, "mode", st_mode_names[in.mode], "time_ms", ms)
                          : NULL;
    if (out)
        srv_reply_json(req, 200, out);
    else
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
}
