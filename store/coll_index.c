/* coll_index.c — a collection in memory: its HNSW index (which holds the vectors) and the
 * parsed metadata beside it, by label; loading the index from its stored records (or
 * rebuilding it from the documents when they are unusable) and writing its changed records
 * inside a write transaction. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

static void coll_clear(st_coll *c)
{
    for (size_t i = 0; i < c->n_labels; i++)
        json_decref(c->meta[i]);
    hnsw_destroy(c->index);
    free(c->live);
    free(c->meta);
    c->index = NULL;
    c->live = NULL;
    c->meta = NULL;
    c->n_labels = c->cap = 0;
    c->count = 0;
}

void st__coll_put(st_coll *c)
{
    if (!c || atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    coll_clear(c);
    pthread_rwlock_destroy(&c->lock);
    free(c);
}

static void index_params(const st_collection *spec, hnsw_params *p)
{
    hnsw_params_default(p, spec->dimension, (dist_metric)spec->distance);
    p->m = (int)spec->m;
    p->ef_construction = (int)spec->ef_construction;
}

/* A collection with an empty index. NULL when out of memory or (err filled) when the
 * parameters are out of the index's range. */
st_coll *st__coll_new(int64_t id, const st_collection *spec, st_error *err)
{
    hnsw_params p;
    index_params(spec, &p);
    hnsw_error herr;
    hnsw *index;
    if (hnsw_create(&p, &index, &herr) != HNSW_OK) {
        st__fail(err, herr.code == HNSW_ENOMEM ? ST_ERR_NOMEM : ST_ERR_INVALID, spec->name, herr.msg);
        return NULL;
    }
    st_coll *c = calloc(1, sizeof *c);
    if (!c) {
        hnsw_destroy(index);
        st__fail(err, ST_ERR_NOMEM, spec->name, "out of memory");
        return NULL;
    }
    c->id = id;
    c->spec = *spec;
    c->spec.count = 0;
    c->index = index;
    c->index_state = "ready";
    atomic_init(&c->refs, 1);
    atomic_init(&c->deleted, 0);
    /* Writers first: a stream of searches must not starve an upsert (glibc prefers readers). */
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&c->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    return c;
}

/* Makes room for label `label`. Returns 0, or -1 when out of memory. */
static int coll_reserve(st_coll *c, size_t label)
{
    if (label < c->cap)
        return 0;
    size_t cap = c->cap ? c->cap : 64;
    while (cap <= label)
        cap *= 2;
    unsigned char *l = realloc(c->live, cap);
    if (l)
        c->live = l;
    json_t **m = realloc(c->meta, cap * sizeof *m);
    if (m)
        c->meta = m;
    if (!l || !m)
        return -1;
    memset(c->live + c->cap, 0, cap - c->cap);
    memset(c->meta + c->cap, 0, (cap - c->cap) * sizeof *m);
    c->cap = cap;
    return 0;
}

/* Records a document's metadata (parsed) at `label` as live. */
static int coll_set_meta(st_coll *c, size_t label, const char *meta, size_t meta_len)
{
    json_t *m = NULL;
    json_error_t je;
    int oom;
    if (meta && !(m = st__json_loadb(meta, meta_len, 0, &je, &oom)))
        return -1;
    if (coll_reserve(c, label) != 0) {
        json_decref(m);
        return -1;
    }
    json_decref(c->meta[label]);
    c->meta[label] = m;
    if (!c->live[label])
        c->count++;
    c->live[label] = 1;
    if (label >= c->n_labels)
        c->n_labels = label + 1;
    return 0;
}

/* Puts a document at `label`: its vector into the index, its metadata beside it. */
int st__coll_set(st_coll *c, size_t label, const float *vec, const char *meta, size_t meta_len, st_error *err)
{
    hnsw_error herr;
    if (!c->index)
        return st__fail(err, ST_ERR_NOMEM, c->spec.name, "the index could not be reloaded after a failure");
    if (hnsw_upsert(c->index, (int64_t)label, vec, &herr) != HNSW_OK)
        return st__fail(err, herr.code == HNSW_ENOMEM ? ST_ERR_NOMEM : ST_ERR_INVALID, c->spec.name, herr.msg);
    if (coll_set_meta(c, label, meta, meta_len) != 0)
        return st__fail(err, ST_ERR_NOMEM, c->spec.name, "out of memory (or unreadable metadata)");
    return 0;
}

int st__coll_unset(st_coll *c, size_t label, st_error *err)
{
    if (label >= c->n_labels || !c->live[label])
        return 0;
    hnsw_error herr;
    if (!c->index)
        return st__fail(err, ST_ERR_NOMEM, c->spec.name, "the index could not be reloaded after a failure");
    if (hnsw_delete(c->index, (int64_t)label, &herr) != HNSW_OK)
        return st__fail(err, herr.code == HNSW_ENOMEM ? ST_ERR_NOMEM : SQLITE_CORRUPT, c->spec.name, herr.msg);
    c->live[label] = 0;
    json_decref(c->meta[label]);
    c->meta[label] = NULL;
    c->count--;
    return 0;
}

/* Builds the index afresh from the documents (when the stored records are unusable). */
static int coll_rebuild(sqlite3 *conn, st_coll *c, st_error *err)
{
    coll_clear(c);
    hnsw_params p;
    index_params(&c->spec, &p);
    hnsw_error herr;
    if (hnsw_create(&p, &c->index, &herr) != HNSW_OK)
        return st__fail(err, ST_ERR_NOMEM, c->spec.name, herr.msg);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(conn, "SELECT label, vector, metadata FROM documents WHERE collection_id = ?1", -1, &st,
                           NULL) != SQLITE_OK)
        return st__sqlite_fail(conn, err, "rebuilding an index");
    sqlite3_bind_int64(st, 1, c->id);
    int rc, bad = 0;
    size_t bytes = c->spec.dimension * sizeof(float);
    while (!bad && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t label = sqlite3_column_int64(st, 0);
        const char *meta = (const char *)sqlite3_column_text(st, 2);
        float *vec = malloc(bytes);
        if (label < 0 || (size_t)sqlite3_column_bytes(st, 1) != bytes)
            bad = st__fail(err, SQLITE_CORRUPT, c->spec.name, "a stored vector has the wrong size");
        else if (!vec)
            bad = st__fail(err, ST_ERR_NOMEM, c->spec.name, "out of memory");
        else
            bad = st__coll_set(c, (size_t)label, memcpy(vec, sqlite3_column_blob(st, 1), bytes), meta,
                           meta ? (size_t)sqlite3_column_bytes(st, 2) : 0, err);
        free(vec);
    }
    sqlite3_finalize(st);
    if (bad)
        return -1;
    c->index_state = "rebuilt";
    return rc == SQLITE_DONE ? 0 : st__sqlite_fail(conn, err, "rebuilding an index");
}

/* Loads the index from its header and node records (no distance is computed); falls back to
 * a rebuild when they are missing or inconsistent. The caller holds the write lock or is the
 * only user. */
int st__coll_load(sqlite3 *conn, st_coll *c, st_error *err)
{
    coll_clear(c);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(conn, "SELECT index_header FROM collections WHERE id = ?1", -1, &st, NULL) != SQLITE_OK)
        return st__sqlite_fail(conn, err, "loading an index");
    sqlite3_bind_int64(st, 1, c->id);
    hnsw_error herr;
    int has_header = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_BLOB;
    int ok = has_header && hnsw_load_begin(sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0),
                                           &c->index, &herr) == HNSW_OK;
    sqlite3_finalize(st);
    if (!ok) { /* never written (an empty collection: nothing to rebuild), or unreadable */
        int rc = coll_rebuild(conn, c, err);
        if (rc == 0 && !has_header)
            c->index_state = "ready";
        return rc;
    }
    if (sqlite3_prepare_v2(conn,
                           "SELECT d.label, d.vector, d.metadata, n.record FROM documents d "
                           "LEFT JOIN index_nodes n ON n.collection_id = d.collection_id AND n.label = d.label "
                           "WHERE d.collection_id = ?1",
                           -1, &st, NULL) != SQLITE_OK)
        return st__sqlite_fail(conn, err, "loading an index");
    sqlite3_bind_int64(st, 1, c->id);
    int rc;
    size_t bytes = c->spec.dimension * sizeof(float);
    while (ok && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t label = sqlite3_column_int64(st, 0);
        const char *meta = (const char *)sqlite3_column_text(st, 2);
        ok = label >= 0 && (size_t)sqlite3_column_bytes(st, 1) == bytes &&
             sqlite3_column_type(st, 3) == SQLITE_BLOB &&
             hnsw_load_add(c->index, label, sqlite3_column_blob(st, 1), sqlite3_column_blob(st, 3),
                           (size_t)sqlite3_column_bytes(st, 3), &herr) == HNSW_OK &&
             coll_set_meta(c, (size_t)label, meta, meta ? (size_t)sqlite3_column_bytes(st, 2) : 0) == 0;
    }
    sqlite3_finalize(st);
    if (ok && rc != SQLITE_DONE)
        return st__sqlite_fail(conn, err, "loading an index");
    if (ok && hnsw_load_finish(c->index, &herr) == HNSW_OK) {
        c->index_state = "loaded";
        return 0;
    }
    return coll_rebuild(conn, c, err);
}

/* Writes the index's changes since the last clear (node records, dropped records, header)
 * inside the caller's transaction. */
typedef struct {
    sqlite3_stmt *put, *drop;
    int64_t cid;
} record_writer;

static int write_record(int64_t label, const uint8_t *rec, size_t len, void *ctx)
{
    record_writer *w = ctx;
    sqlite3_stmt *st = rec ? w->put : w->drop;
    sqlite3_bind_int64(st, 1, w->cid);
    sqlite3_bind_int64(st, 2, label);
    if (rec)
        sqlite3_bind_blob(st, 3, rec, (int)len, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : 1; /* positive: not HNSW_ENOMEM, which the walk itself returns */
}

int st__coll_write_index(sqlite3 *conn, st_coll *c, st_error *err)
{
    record_writer w = {NULL, NULL, c->id};
    sqlite3_stmt *head = NULL;
    uint8_t header[HNSW_HEADER_BYTES];
    int rc = sqlite3_prepare_v2(conn, "INSERT OR REPLACE INTO index_nodes(collection_id, label, record) "
                                      "VALUES (?1, ?2, ?3)", -1, &w.put, NULL) == SQLITE_OK &&
                     sqlite3_prepare_v2(conn, "DELETE FROM index_nodes WHERE collection_id = ?1 AND label = ?2", -1,
                                        &w.drop, NULL) == SQLITE_OK &&
                     sqlite3_prepare_v2(conn, "UPDATE collections SET index_header = ?2 WHERE id = ?1", -1, &head,
                                        NULL) == SQLITE_OK
                 ? 0
                 : -1;
    int walk = 0;
    if (rc == 0)
        rc = (walk = hnsw_dirty_foreach(c->index, write_record, &w)) == 0 ? 0 : -1;
    if (rc == 0) {
        hnsw_header_record(c->index, header);
        sqlite3_bind_int64(head, 1, c->id);
        sqlite3_bind_blob(head, 2, header, sizeof header, SQLITE_STATIC);
        rc = sqlite3_step(head) == SQLITE_DONE ? 0 : -1;
    }
    if (rc != 0 && walk == HNSW_ENOMEM)
        st__fail(err, ST_ERR_NOMEM, c->spec.name, "out of memory writing the index");
    else if (rc != 0)
        st__sqlite_fail(conn, err, "writing the index");
    sqlite3_finalize(w.put);
    sqlite3_finalize(w.drop);
    sqlite3_finalize(head);
    return rc;
}
