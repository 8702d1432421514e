/* collections.c — /collections and /collections/{name}/documents: collection CRUD, batch
 * upsert (texts without a vector are embedded here; the common body is scanned by
 * upsert_scan.c without a JSON tree), get and delete by id; and the helpers the search
 * handler shares (store errors, vectors, embedding).
 *
 * Ids in a path: a segment of digits (with an optional leading '-') that fits in 64 bits is
 * the integer id, anything else the string id; `?id_type=string` (or `integer`) says which
 * explicitly, so the string id "42" is reachable as /documents/42?id_type=string. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "json_util.h"
#include "json_watch.h"
#include "log.h"
#include "upsert_scan.h"
#include "validate.h"

/* ------------------------------------------------------------------ shared helpers */

void app_store_error(srv_req *req, const st_error *err, const char *field)
{
    switch (st_error_kind(err)) {
    case ST_ERR_NOT_FOUND:
        srv_reply_error(req, SRV_E_NOT_FOUND, NULL, "%s", err->msg);
        return;
    case ST_ERR_EXISTS:
        srv_reply_error(req, SRV_E_EXISTS, field, "%s", err->msg);
        return;
    case ST_ERR_INVALID:
        srv_reply_error(req, SRV_E_INVALID_VALUE, field, "%s", err->msg);
        return;
    case ST_ERR_NOMEM:
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
        return;
    case ST_ERR_BUSY:
        srv_reply_error(req, SRV_E_STORE_BUSY, NULL, "the database is busy; retry shortly (nothing was written)");
        return;
    case ST_ERR_BEHIND:
        srv_reply_error(req, SRV_E_INDEX_BEHIND, NULL, "%s (--max-pending-vectors)", err->msg);
        return;
    case ST_ERR_FULL:
        srv_reply_error(req, SRV_E_STORAGE_FULL, NULL, "the disk is full (nothing was written)");
        return;
    default:
        srv_log(SRV_LOG_ERROR, "store failure", "request_id=%s code=%d error=\"%s\"", srv_req_id(req), err->code,
                err->msg);
        srv_reply_error(req, SRV_E_INTERNAL, NULL, "internal error");
    }
}

int app_parse_vector(srv_req *req, json_t *arr, unsigned dim, int cosine, const char *pointer, float *out)
{
    if (!json_is_array(arr)) {
        srv_reply_error(req, SRV_E_INVALID_TYPE, pointer, "'%s' must be an array of numbers", pointer + 1);
        return -1;
    }
    if (json_array_size(arr) != dim) {
        srv_reply_error(req, SRV_E_INVALID_VALUE, pointer, "'%s' has %zu values; the collection's dimension is %u",
                        pointer + 1, json_array_size(arr), dim);
        return -1;
    }
    int nonzero = 0;
    for (unsigned k = 0; k < dim; k++) {
        json_t *v = json_array_get(arr, k);
        double d = json_is_number(v) ? json_number_value(v) : 0;
        out[k] = (float)d;
        if (!json_is_number(v) || !isfinite(d) || !isfinite(out[k])) {
            char item[96];
            snprintf(item, sizeof item, "%s/%u", pointer, k);
            if (!json_is_number(v))
                srv_reply_error(req, SRV_E_INVALID_TYPE, item, "vector values must be numbers");
            else
                srv_reply_error(req, SRV_E_OUT_OF_RANGE, item, "vector values must be finite 32-bit floats, got %g", d);
            return -1;
        }
        nonzero |= out[k] != 0;
    }
    if (cosine && !nonzero) {
        srv_reply_error(req, SRV_E_INVALID_VALUE, pointer, "a zero vector has no cosine similarity");
        return -1;
    }
    return 0;
}

int app_embed_texts(srv_req *req, struct app *app, const char **texts, const size_t *lens, size_t n, unsigned dim,
                    const char *pointer, int is_list, float *out)
{
    app_model *m = app_network_ready(req, app, APP_EMBEDDER);
    if (!m)
        return -1;
    size_t width = enc_dim(m->enc), tokens;
    if (width != dim) {
        srv_reply_error(req, SRV_E_INVALID_VALUE, pointer,
                        "the embedder gives %zu-dimensional vectors but the collection holds %u; send vectors", width,
                        dim);
        return -1;
    }
    if (app_encode(req, m, NULL, texts, lens, n, pointer, is_list, 1, TOK_TRUNCATE_RIGHT, out, &tokens) != 0)
        return -1;
    if (enc_normalizes(m->enc))
        for (size_t i = 0; i < n; i++) {
            float *v = out + i * dim;
            double ss = 0;
            for (unsigned k = 0; k < dim; k++)
                ss += (double)v[k] * v[k];
            float inv = 1.0f / fmaxf((float)sqrt(ss), 1e-12f);
            for (unsigned k = 0; k < dim; k++)
                v[k] *= inv;
        }
    return 0;
}

int app_compile_filter(srv_req *req, json_t *filter, const char *pointer, st_filter **out)
{
    *out = NULL;
    if (!filter)
        return 0;
    char *text = jsonw_dumps(filter, JSON_COMPACT | JSON_REAL_PRECISION(17));
    if (!text) {
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
        return -1;
    }
    char inner[256], field[320];
    st_error err;
    int rc = st_filter_compile(text, strlen(text), out, inner, sizeof inner, &err);
    free(text);
    if (rc != 0) {
        snprintf(field, sizeof field, "%s%s", pointer, inner);
        /* The message after "where: " is the part that explains. */
        const char *why = strstr(err.msg, ": ");
        if (err.code == ST_ERR_NOMEM)
            srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
        else
            srv_reply_error(req, SRV_E_INVALID_VALUE, field, "%s", why ? why + 2 : err.msg);
    }
    return rc;
}

/* ------------------------------------------------------------------ collections */

static json_t *collection_json(const st_collection *c)
{
    return json_pack("{s:s, s:I, s:s, s:{s:I, s:I}, s:I, s:I, s:I, s:s, s:s}", "name", c->name, "dimension",
                     (json_int_t)c->dimension, "distance", st_distance_names[c->distance], "hnsw", "m",
                     (json_int_t)c->m, "ef_construction", (json_int_t)c->ef_construction, "count",
                     (json_int_t)c->count, "indexed_vectors_count", (json_int_t)c->indexed, "pending_vectors_count",
                     (json_int_t)c->pending, "index", c->index_state, "created_at", c->created_at);
}

static void reply_collection(srv_req *req, unsigned status, const st_collection *c)
{
    json_t *o = collection_json(c);
    if (o)
        srv_reply_json(req, status, o);
    else
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
}

typedef struct {
    const char *name;
    int64_t dimension;
    int distance;
    json_t *hnsw;
} create_req;

typedef struct {
    int64_t m, ef_construction;
} hnsw_req;

static const srv_field create_fields[] = {
    {"name", SRV_F_STRING, SRV_FF_REQUIRED | SRV_FF_NONEMPTY, offsetof(create_req, name), 0, 0, ST_NAME_MAX, NULL},
    {"dimension", SRV_F_INT, 0, offsetof(create_req, dimension), 1, ST_DIM_MAX, 0, NULL},
    {"distance", SRV_F_ENUM, 0, offsetof(create_req, distance), 0, 0, 0, st_distance_names},
    {"hnsw", SRV_F_OBJECT, 0, offsetof(create_req, hnsw), 0, 0, 0, NULL},
};

static const srv_field hnsw_fields[] = {
    {"m", SRV_F_INT, 0, offsetof(hnsw_req, m), 2, 128, 0, NULL},
    {"ef_construction", SRV_F_INT, 0, offsetof(hnsw_req, ef_construction), 1, 4096, 0, NULL},
};

void h_collection_create(srv_req *req, void *ctx)
{
    struct app *app = ctx;
    create_req in = {.distance = ST_COSINE};
    hnsw_req h = {.m = 16, .ef_construction = 200};
    json_t *body = srv_req_json(req);
    if (!body || srv_validate(req, body, create_fields, sizeof create_fields / sizeof create_fields[0], &in) ||
        (in.hnsw && srv_validate_at(req, in.hnsw, "/hnsw", hnsw_fields, sizeof hnsw_fields / sizeof hnsw_fields[0], &h)))
        return;
    if (!st_name_valid(in.name, strlen(in.name))) {
        srv_reply_error(req, SRV_E_INVALID_VALUE, "/name",
                        "collection names match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$");
        return;
    }
    if (!in.dimension) {
        /* Default: the embedder's width, so texts can be embedded into it. */
        app_model *m = &app->models[APP_EMBEDDER];
        if (atomic_load_explicit(&m->state, memory_order_acquire) != APP_MODEL_READY || !m->enc) {
            srv_reply_error(req, SRV_E_MISSING_FIELD, "/dimension",
                            "'dimension' is required when no embedder is loaded");
            return;
        }
        in.dimension = (int64_t)enc_dim(m->enc);
    }
    st_collection spec = {.dimension = (unsigned)in.dimension, .distance = (st_distance)in.distance,
                          .m = (unsigned)h.m, .ef_construction = (unsigned)h.ef_construction};
    snprintf(spec.name, sizeof spec.name, "%s", in.name);
    st_error err;
    if (st_collection_create(app->db, &spec, &err) != 0 || st_collection_get(app->db, spec.name, &spec, &err) != 0) {
        app_store_error(req, &err, "/name");
        return;
    }
    reply_collection(req, 201, &spec);
}

void h_collection_list(srv_req *req, void *ctx)
{
    struct app *app = ctx;
    st_collection *all;
    size_t n;
    st_error err;
    if (st_collection_list(app->db, &all, &n, &err) != 0) {
        app_store_error(req, &err, NULL);
        return;
    }
    json_t *list = json_array();
    for (size_t i = 0; list && i < n; i++)
        if (json_array_append_new(list, collection_json(&all[i])) != 0) {
            json_decref(list);
            list = NULL;
        }
    free(all);
    json_t *out = list ? json_pack("{s:o}", "collections", list) : NULL;
    if (out)
        srv_reply_json(req, 200, out);
    else
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
}

void h_collection_get(srv_req *req, void *ctx)
{
    struct app *app = ctx;
    st_collection c;
    st_error err;
    if (st_collection_get(app->db, srv_req_param(req, "name"), &c, &err) != 0)
        app_store_error(req, &err, NULL);
    else
        reply_collection(req, 200, &c);
}

void h_collection_delete(srv_req *req, void *ctx)
{
    struct app *app = ctx;
    const char *name = srv_req_param(req, "name");
    st_error err;
    if (st_collection_delete(app->db, name, &err) != 0)
        app_store_error(req, &err, NULL);
    else
        srv_reply_json(req, 200, json_pack("{s:s, s:b}", "name", name, "deleted", 1));
}

/* ------------------------------------------------------------------ documents */

/* The id of a document in a body: an integer or a non-empty string without NUL. */
static int parse_id(srv_req *req, json_t *v, const char *pointer, st_id *out)
{
    if (json_is_integer(v)) {
        *out = (st_id){.num = json_integer_value(v)};
        return 0;
    }
    if (!json_is_string(v)) {
        srv_reply_error(req, v ? SRV_E_INVALID_TYPE : SRV_E_MISSING_FIELD, pointer,
                        v ? "'id' must be an integer or a string" : "'id' is required");
        return -1;
    }
    size_t len = json_string_length(v);
    const char *s = json_string_value(v);
    if (len == 0 || len > ST_ID_MAX || memchr(s, '\0', len)) {
        srv_reply_error(req, SRV_E_INVALID_VALUE, pointer, "string ids are 1 to %d bytes without NUL", ST_ID_MAX);
        return -1;
    }
    *out = (st_id){.is_string = 1, .str = s, .len = len};
    return 0;
}

/* The id in the path (see the file comment). */
static int path_id(srv_req *req, st_id *out)
{
    const char *s = srv_req_param(req, "id");
    unsigned count = 0;
    const char *type = srv_req_query(req, "id_type", &count);
    if (count > 1 || (type && strcmp(type, "string") && strcmp(type, "integer"))) {
        srv_reply_error(req, SRV_E_BAD_REQUEST, NULL, "'id_type' is 'string' or 'integer', given once");
        return -1;
    }
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    const char *first = s[0] == '-' ? s + 1 : s;
    int digits = *first >= '0' && *first <= '9' && *end == '\0' && errno == 0;
    if (type && !strcmp(type, "integer") && !digits) {
        srv_reply_error(req, SRV_E_BAD_REQUEST, NULL, "the id '%s' is not a 64-bit integer", s);
        return -1;
    }
    if (digits && !(type && !strcmp(type, "string")))
        *out = (st_id){.num = v};
    else
        *out = (st_id){.is_string = 1, .str = s, .len = strlen(s)};
    if (out->is_string && out->len > ST_ID_MAX) {
        srv_reply_error(req, SRV_E_BAD_REQUEST, NULL, "string ids are at most %d bytes", ST_ID_MAX);
        return -1;
    }
    return 0;
}

static json_t *id_json(const st_id *id)
{
    return id->is_string ? json_stringn(id->str, id->len) : json_integer(id->num);
}

/* What a batch needs beyond the request tree: vectors, serialized metadata, texts to embed. */
typedef struct {
    st_doc *docs;
    float *vecs;      /* [n, dim] */
    char **meta;      /* [n] json_dumps output, or NULL */
    size_t n;
} batch;

static void batch_free(batch *b)
{
    for (size_t i = 0; b->meta && i < b->n; i++)
        free(b->meta[i]);
    free(b->meta);
    free(b->docs);
    free(b->vecs);
}

/* Field names of the two upsert bodies: ours {"documents":[{id,text,vector,metadata}]} and
 * Qdrant's {"points":[{id,vector,payload}]} (no text there). */
typedef struct {
    const char *list, *metadata;
    int texts;
} doc_shape;

static const doc_shape shapes[] = {[APP_DOCS_NATIVE] = {"documents", "metadata", 1},
                                   [APP_DOCS_QDRANT] = {"points", "payload", 0}};

/* Validates document i of the batch; *needs_embedding when it has text and no vector. */
static int parse_document(srv_req *req, const doc_shape *sh, json_t *d, size_t i, const st_collection *c, batch *b,
                          int *needs_embedding)
{
    char ptr[64];
    snprintf(ptr, sizeof ptr, "/%s/%zu", sh->list, i);
    if (!json_is_object(d)) {
        srv_reply_error(req, SRV_E_INVALID_TYPE, ptr, "each document must be an object");
        return -1;
    }
    st_doc *doc = &b->docs[i];
    char field[80];
    snprintf(field, sizeof field, "%s/id", ptr);
    if (parse_id(req, json_object_get(d, "id"), field, &doc->id) != 0)
        return -1;
    json_t *text = sh->texts ? json_object_get(d, "text") : NULL, *vec = json_object_get(d, "vector"),
           *meta = json_object_get(d, sh->metadata);
    if (text && !json_is_null(text)) {
        snprintf(field, sizeof field, "%s/text", ptr);
        if (!json_is_string(text)) {
            srv_reply_error(req, SRV_E_INVALID_TYPE, field, "'text' must be a string");
            return -1;
        }
        doc->text = json_string_value(text);
        doc->text_len = json_string_length(text);
    }
    if (meta && !json_is_null(meta)) {
        snprintf(field, sizeof field, "%s/%s", ptr, sh->metadata);
        if (!json_is_object(meta)) {
            srv_reply_error(req, SRV_E_INVALID_TYPE, field, "'%s' must be an object", sh->metadata);
            return -1;
        }
        if (!(b->meta[i] = jsonw_dumps(meta, JSON_COMPACT | JSON_REAL_PRECISION(17)))) {
            srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
            return -1;
        }
        doc->metadata = b->meta[i];
        doc->metadata_len = strlen(b->meta[i]);
    }
    float *out = b->vecs + i * c->dimension;
    doc->vector = out;
    snprintf(field, sizeof field, "%s/vector", ptr);
    if (vec && !json_is_null(vec)) {
        *needs_embedding = 0;
        return app_parse_vector(req, vec, c->dimension, c->distance == ST_COSINE, field, out);
    }
    if (!doc->text) {
        srv_reply_error(req, SRV_E_MISSING_FIELD, field,
                        sh->texts ? "a document needs a 'vector' or a 'text' to embed" : "'vector' is required");
        return -1;
    }
    *needs_embedding = 1;
    return 0;
}

/* Embeds the texts of the documents that came without a vector, in one batch. */
static int embed_missing(srv_req *req, struct app *app, const st_collection *c, batch *b, const unsigned char *need,
                         size_t n_need)
{
    const char **texts = malloc(n_need * sizeof *texts);
    size_t *lens = malloc(n_need * sizeof *lens);
    float *out = malloc(n_need * c->dimension * sizeof *out);
    int rc = -1;
    if (!texts || !lens || !out) {
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
    } else {
        for (size_t i = 0, k = 0; i < b->n; i++)
            if (need[i]) {
                texts[k] = b->docs[i].text;
                lens[k++] = b->docs[i].text_len;
            }
        /* Item pointers are only right when every document is embedded. */
        rc = app_embed_texts(req, app, texts, lens, n_need, c->dimension, "/documents", n_need == b->n, out);
        for (size_t i = 0, k = 0; rc == 0 && i < b->n; i++)
            if (need[i]) {
                memcpy(b->vecs + i * c->dimension, out + k++ * c->dimension, c->dimension * sizeof *out);
                if (c->distance == ST_COSINE) { /* an embedding of zeros cannot be indexed */
                    int nonzero = 0;
                    for (unsigned d = 0; d < c->dimension; d++)
                        nonzero |= b->vecs[i * c->dimension + d] != 0;
                    if (!nonzero) {
                        char ptr[64];
                        snprintf(ptr, sizeof ptr, "/documents/%zu/text", i);
                        srv_reply_error(req, SRV_E_INVALID_VALUE, ptr, "the text embeds to a zero vector");
                        rc = -1;
                    }
                }
            }
    }
    free(texts);
    free(lens);
    free(out);
    return rc;
}

typedef struct {
    json_t *list;
} upsert_req;

static const srv_field upsert_fields[][1] = {
    [APP_DOCS_NATIVE] = {{"documents", SRV_F_ARRAY, SRV_FF_REQUIRED | SRV_FF_NONEMPTY, offsetof(upsert_req, list), 0, 0, 0,
                          NULL}},
    [APP_DOCS_QDRANT] = {{"points", SRV_F_ARRAY, SRV_FF_REQUIRED | SRV_FF_NONEMPTY, offsetof(upsert_req, list), 0, 0, 0,
                          NULL}},
};

/* Stores the batch. Returns 0, or -1 after replying; a 503 indexing_behind carries the
 * store's estimate of when the collection's tail will have room as its Retry-After. */
static int store_batch(srv_req *req, struct app *app, const doc_shape *sh, const st_collection *c, const batch *b)
{
    st_error err;
    if (st_upsert(app->db, c->name, c->dimension, b->docs, b->n, &err) == 0)
        return 0;
    if (st_error_kind(&err) == ST_ERR_BEHIND) {
        char secs[16];
        snprintf(secs, sizeof secs, "%u", st_pending_retry_after(app->db, c->name, b->n));
        srv_reply_header(req, "Retry-After", secs);
    }
    char list_ptr[16];
    snprintf(list_ptr, sizeof list_ptr, "/%s", sh->list);
    app_store_error(req, &err, list_ptr);
    return -1;
}

int app_upsert(srv_req *req, struct app *app, app_doc_shape shape, size_t *n_out, size_t *embedded)
{
    const doc_shape *sh = &shapes[shape];
    st_collection c;
    st_error err;
    batch b = {0};
    size_t body_len;
    const char *body_text = srv_req_body(req, &body_len);
    if (body_text && st_collection_get(app->db, srv_req_param(req, "name"), &c, &err) == 0 &&
        ups_scan(body_text, body_len, sh->list, sh->texts, (size_t)app->cfg->max_batch, &c, &b.docs, &b.vecs, &b.n)) {
        int rc = store_batch(req, app, sh, &c, &b);
        *n_out = b.n;
        *embedded = 0;
        batch_free(&b);
        return rc;
    }
    upsert_req in = {0};
    json_t *body = srv_req_json(req);
    if (!body || srv_validate(req, body, upsert_fields[shape], 1, &in))
        return -1;
    size_t n = json_array_size(in.list);
    char list_ptr[16];
    snprintf(list_ptr, sizeof list_ptr, "/%s", sh->list);
    if (n > (size_t)app->cfg->max_batch) {
        srv_reply_error(req, SRV_E_BATCH_TOO_LARGE, list_ptr, "'%s' has %zu items; the limit is %ld (--max-batch)",
                        sh->list, n, app->cfg->max_batch);
        return -1;
    }
    if (st_collection_get(app->db, srv_req_param(req, "name"), &c, &err) != 0) {
        app_store_error(req, &err, NULL);
        return -1;
    }
    b = (batch){.docs = calloc(n, sizeof *b.docs), .vecs = malloc(n * c.dimension * sizeof *b.vecs),
               .meta = calloc(n, sizeof *b.meta), .n = n};
    unsigned char *need = calloc(n, 1);
    if (!b.docs || !b.vecs || !b.meta || !need) {
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
        batch_free(&b);
        free(need);
        return -1;
    }
    size_t n_need = 0;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        int e = 0;
        rc = parse_document(req, sh, json_array_get(in.list, i), i, &c, &b, &e);
        need[i] = (unsigned char)e;
        n_need += (size_t)e;
    }
    if (rc == 0 && n_need)
        rc = embed_missing(req, app, &c, &b, need, n_need);
    if (rc == 0)
        rc = store_batch(req, app, sh, &c, &b);
    batch_free(&b);
    free(need);
    *n_out = n;
    *embedded = n_need;
    return rc;
}

void h_documents_upsert(srv_req *req, void *ctx)
{
    size_t n, embedded;
    if (app_upsert(req, ctx, APP_DOCS_NATIVE, &n, &embedded) == 0)
        srv_reply_json(req, 200, json_pack("{s:s, s:I, s:I}", "collection", srv_req_param(req, "name"), "upserted",
                                           (json_int_t)n, "embedded", (json_int_t)embedded));
}

json_t *app_record_json(const st_record *r, int with_vector)
{
    /* Every part or none: a key or vector element that could not be allocated must not be
     * left out of a 200 (jansson's setters take NULL and fail quietly). */
    json_t *o = json_object();
    int ok = o && json_object_set_new(o, "id", id_json(&r->id)) == 0;
    if (ok && r->text)
        ok = json_object_set_new(o, "text", json_stringn(r->text, r->text_len)) == 0;
    if (ok && r->metadata) {
        json_error_t e;
        int oom = 0;
        ok = json_object_set_new(o, "metadata", jsonw_loadb(r->metadata, strlen(r->metadata), 0, &e, &oom)) == 0;
    }
    if (ok && with_vector && r->vector) {
        json_t *v = json_array();
        for (unsigned k = 0; v && k < r->dimension; k++)
            if (json_array_append_new(v, json_real(r->vector[k])) != 0) {
                json_decref(v);
                v = NULL;
            }
        ok = json_object_set_new(o, "vector", v) == 0;
    }
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

void h_document_get(srv_req *req, void *ctx)
{
    struct app *app = ctx;
    st_id id;
    if (path_id(req, &id) != 0)
        return;
    st_record r;
    st_error err;
    if (st_document_get(app->db, srv_req_param(req, "name"), &id, &r, &err) != 0) {
        app_store_error(req, &err, NULL);
        return;
    }
    json_t *o = app_record_json(&r, 1);
    st_record_free(&r);
    if (o)
        srv_reply_json(req, 200, o);
    else
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
}

void h_document_delete(srv_req *req, void *ctx)
{
    struct app *app = ctx;
    st_id id;
    if (path_id(req, &id) != 0)
        return;
    st_error err;
    if (st_document_delete(app->db, srv_req_param(req, "name"), &id, &err) != 0)
        app_store_error(req, &err, NULL);
    else
        srv_reply_json(req, 200, json_pack("{s:o, s:b}", "id", id_json(&id), "deleted", 1));
}
