/* qdrant.c — Qdrant's points API as an alias over the same engine, so Qdrant clients can
 * write and query ragd collections:
 *   PUT  /collections/{name}/points        {"points":[{"id","vector","payload"}]}
 *   POST /collections/{name}/points/query  {"query": [float] | {"nearest": [float]}, "filter",
 *                                           "limit", "score_threshold", "with_payload",
 *                                           "with_vector", "params": {"hnsw_ef", "exact"}}
 * Replies take Qdrant's envelope {"result", "status": "ok", "time"}; errors keep ragd's body. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app.h"
#include "validate.h"

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static void reply_ok(srv_req *req, json_t *result, const struct timespec *t0)
{
    json_t *out = result ? json_pack("{s:o, s:s, s:f}", "result", result, "status", "ok", "time", seconds_since(t0))
                         : NULL;
    if (out)
        srv_reply_json(req, 200, out);
    else
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
}

void h_points_upsert(srv_req *req, void *ctx)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    size_t n, embedded;
    if (app_upsert(req, ctx, APP_DOCS_QDRANT, &n, &embedded) == 0)
        reply_ok(req, json_pack("{s:I, s:s}", "operation_id", (json_int_t)0, "status", "completed"), &t0);
}

typedef struct {
    json_t *query, *filter, *params;
    int64_t limit;
    double score_threshold;
    int with_payload, with_vector;
} query_req;

static const srv_field query_fields[] = {
    {"query", SRV_F_ANY, SRV_FF_REQUIRED, offsetof(query_req, query), 0, 0, 0, NULL},
    {"filter", SRV_F_OBJECT, 0, offsetof(query_req, filter), 0, 0, 0, NULL},
    {"params", SRV_F_OBJECT, 0, offsetof(query_req, params), 0, 0, 0, NULL},
    {"limit", SRV_F_INT, 0, offsetof(query_req, limit), 1, ST_TOP_K_MAX, 0, NULL},
    {"score_threshold", SRV_F_NUMBER, 0, offsetof(query_req, score_threshold), -INFINITY, INFINITY, 0, NULL},
    {"with_payload", SRV_F_BOOL, 0, offsetof(query_req, with_payload), 0, 0, 0, NULL},
    {"with_vector", SRV_F_BOOL, 0, offsetof(query_req, with_vector), 0, 0, 0, NULL},
};

typedef struct {
    int64_t hnsw_ef;
    int exact;
} params_req;

static const srv_field params_fields[] = {
    {"hnsw_ef", SRV_F_INT, 0, offsetof(params_req, hnsw_ef), 1, 65536, 0, NULL},
    {"exact", SRV_F_BOOL, 0, offsetof(params_req, exact), 0, 0, 0, NULL},
};

void h_points_query(srv_req *req, void *ctx)
{
    struct app *app = ctx;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    query_req in = {.limit = 10};
    params_req p = {0};
    json_t *body = srv_req_json(req);
    if (!body || srv_validate(req, body, query_fields, sizeof query_fields / sizeof query_fields[0], &in) ||
        (in.params && srv_validate_at(req, in.params, "/params", params_fields, 2, &p)))
        return;
    const char *vec_ptr = "/query";
    json_t *vector = in.query;
    if (json_is_object(vector)) { /* {"nearest": [...]} */
        vector = json_object_get(vector, "nearest");
        vec_ptr = "/query/nearest";
    }
    st_collection c;
    st_error err;
    if (st_collection_get(app->db, srv_req_param(req, "name"), &c, &err) != 0) {
        app_store_error(req, &err, NULL);
        return;
    }
    float *vec = malloc(c.dimension * sizeof *vec);
    if (!vec) {
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
        return;
    }
    st_filter *filter = NULL;
    if (app_parse_vector(req, vector, c.dimension, c.distance == ST_COSINE, vec_ptr, vec) != 0 ||
        app_compile_filter(req, in.filter, "/filter", &filter) != 0) {
        free(vec);
        return;
    }
    json_t *threshold = json_object_get(body, "score_threshold");
    st_query q = {
        .mode = ST_MODE_DENSE,
        .vector = vec,
        .dimension = c.dimension,
        .top_k = (size_t)in.limit,
        .filter = filter,
        .exact = p.exact,
        .ef = (unsigned)p.hnsw_ef,
        .has_threshold = threshold && !json_is_null(threshold),
        .score_threshold = in.score_threshold,
        .with_metadata = in.with_payload,
        .with_vector = in.with_vector,
    };
    st_record *res;
    size_t n;
    int rc = st_search(app->db, c.name, &q, &res, &n, &err);
    st_filter_free(filter);
    free(vec);
    if (rc != 0) {
        app_store_error(req, &err, vec_ptr);
        return;
    }
    json_t *points = json_array();
    for (size_t i = 0; points && i < n; i++) {
        json_t *pt = app_record_json(&res[i], in.with_vector);
        if (pt) { /* every key or none: a 200 without one would be wrong, not short */
            json_t *meta = json_object_get(pt, "metadata");
            int ok = json_object_set_new(pt, "version", json_integer(0)) == 0 &&
                     json_object_set_new(pt, "score", json_real(res[i].score)) == 0 &&
                     (!meta || json_object_set(pt, "payload", meta) == 0); /* Qdrant calls it the payload */
            if (ok && meta)
                json_object_del(pt, "metadata");
            if (!ok) {
                json_decref(pt);
                pt = NULL;
            }
        }
        if (!pt || json_array_append_new(points, pt) != 0) {
            json_decref(points);
            points = NULL;
        }
    }
    st_results_free(res, n);
    reply_ok(req, points ? json_pack("{s:o}", "points", points) : NULL, &t0);
}
