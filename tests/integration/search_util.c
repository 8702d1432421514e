/* search_util.c — what the collection and search suites share: JSON requests, collection
 * helpers, deterministic vectors, batch ingestion and reading the database file (see
 * search_util.h). */
#include "search_util.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* POSTs a jansson body (stolen). */
it_response post_json(const it_server *s, const char *path, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(body);
    it_response r = it_post(s, path, text);
    free(text);
    return r;
}

long status_of(it_response r)
{
    long st = r.status;
    if (st >= 300)
        fprintf(stderr, "%ld: %.300s\n", st, r.body);
    it_free(&r);
    return st;
}

long create(const it_server *s, const char *name, int dim, const char *distance)
{
    char body[256];
    snprintf(body, sizeof body, "{\"name\":\"%s\",\"dimension\":%d,\"distance\":\"%s\"}", name, dim, distance);
    return status_of(it_post(s, "/collections", body));
}

/* The collection's index state: "ready", "loaded" (from its stored nodes) or "rebuilt". */
int index_state_is(const it_server *s, const char *name, const char *want)
{
    char path[128];
    snprintf(path, sizeof path, "/collections/%s", name);
    it_response r = it_get(s, path);
    const char *got = json_string_value(json_object_get(r.json, "index"));
    int ok = got && !strcmp(got, want);
    if (!ok)
        fprintf(stderr, "%s: index %s, expected %s\n", name, got ? got : "?", want);
    it_free(&r);
    return ok;
}

long count_of(const it_server *s, const char *name)
{
    char path[128];
    snprintf(path, sizeof path, "/collections/%s", name);
    it_response r = it_get(s, path);
    long n = r.status == 200 ? (long)json_integer_value(json_object_get(r.json, "count")) : -1;
    it_free(&r);
    return n;
}

long wait_indexed(const it_server *s, const char *name)
{
    char path[128];
    snprintf(path, sizeof path, "/collections/%s", name);
    for (int i = 0; i < 6000; i++) {
        it_response r = it_get(s, path);
        json_int_t count = json_integer_value(json_object_get(r.json, "count")),
                   indexed = json_integer_value(json_object_get(r.json, "indexed_vectors_count")),
                   pending = json_integer_value(json_object_get(r.json, "pending_vectors_count"));
        int ok = r.status == 200 && json_is_integer(json_object_get(r.json, "pending_vectors_count")) &&
                 indexed + pending == count;
        it_free(&r);
        if (!ok)
            return -1;
        if (pending == 0)
            return (long)indexed;
        usleep(10000);
    }
    return -1;
}

json_t *vec_json(const float *v, int dim)
{
    json_t *a = json_array();
    for (int k = 0; k < dim; k++)
        json_array_append_new(a, json_real(v[k]));
    return a;
}

/* Deterministic pseudo-random vectors. */
float rnd(unsigned *state)
{
    *state = *state * 1103515245u + 12345u;
    return (float)((*state >> 8) & 0xffff) / 32768.0f - 1.0f;
}

char *search_body(const char *coll, const float *q, int dim)
{
    json_t *b = json_pack("{s:s, s:o, s:i}", "collection", coll, "vector", vec_json(q, dim), "top_k", 10);
    char *s = json_dumps(b, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(b);
    return s;
}

/* Upserts `n_batches` batches of `per` random documents (ids base + i, metadata {batch}). */
int ingest(const it_server *s, const char *coll, int dim, int first_batch, int n_batches, int per,
                  unsigned *seed)
{
    for (int b = first_batch; b < first_batch + n_batches; b++) {
        json_t *docs = json_array();
        for (int i = 0; i < per; i++) {
            float v[64];
            for (int d = 0; d < dim; d++)
                v[d] = rnd(seed);
            char text[64];
            snprintf(text, sizeof text, "document %d of batch %d", i, b);
            json_array_append_new(docs, json_pack("{s:i, s:s, s:o, s:{s:i}}", "id", b * per + i, "text", text, "vector",
                                                  vec_json(v, dim), "metadata", "batch", b));
        }
        char path[128];
        snprintf(path, sizeof path, "/collections/%s/documents", coll);
        if (status_of(post_json(s, path, json_pack("{s:o}", "documents", docs))) != 200)
            return -1;
    }
    return 0;
}

int db_int(const char *path, const char *sql, long *out, char *text, size_t cap)
{
    sqlite3 *c;
    sqlite3_stmt *st;
    int rc = -1;
    if (sqlite3_open_v2(path, &c, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(c, sql, -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW) {
            if (out)
                *out = (long)sqlite3_column_int64(st, 0);
            if (text)
                snprintf(text, cap, "%s", (const char *)sqlite3_column_text(st, 0));
            rc = 0;
        }
        sqlite3_finalize(st);
    }
    sqlite3_close(c);
    return rc;
}

int batch_counts(const char *path, int per, int *counts, int n)
{
    memset(counts, 0, (size_t)n * sizeof *counts);
    sqlite3 *c;
    sqlite3_stmt *st;
    int half = -1;
    if (sqlite3_open_v2(path, &c, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(c,
                           "SELECT json_extract(metadata, '$.batch') b, count(*) FROM documents GROUP BY b", -1,
                           &st, NULL) == SQLITE_OK) {
        half = 0;
        while (sqlite3_step(st) == SQLITE_ROW) {
            int b = sqlite3_column_int(st, 0), k = sqlite3_column_int(st, 1);
            if (b >= 0 && b < n)
                counts[b] = k;
            half += k != per;
        }
        sqlite3_finalize(st);
    }
    sqlite3_close(c);
    return half;
}
