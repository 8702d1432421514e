/* coll_index.c — a collection in memory: its HNSW index (which holds the indexed vectors),
 * the tail of documents waiting for the indexer, and the parsed metadata, by label; loading
 * the index from its stored records (rows without one join the tail; when the records are
 * unusable every row does, and the index is rebuilt in the background) and writing its
 * changed records inside a write transaction. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "distance.h"
#include "json_watch.h"
#include "store_internal.h"

static void coll_clear(st_coll *c)
{
    for (size_t i = 0; i < c->n_labels; i++)
        json_decref(c->meta[i]);
    hnsw_destroy(c->index);
    free(c->live), free(c->meta), free(c->tail_at);
    free(c->tail_labels), free(c->tail_prep);
    c->index = NULL;
    c->live = NULL;
    c->meta = NULL;
    c->tail_at = NULL;
    c->tail_labels = NULL;
    c->tail_prep = NULL;
    c->n_labels = c->cap = c->n_tail = c->tail_cap = 0;
    c->count = 0;
}

void st__coll_put(st_coll *c)
{
    if (!c || atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    coll_clear(c);
    pthread_rwlock_destroy(&c->lock);
    pthread_mutex_destroy(&c->index_mu);
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
    atomic_init(&c->lock_wanted, 0);
    pthread_mutex_init(&c->index_mu, NULL);
    /* Writers first: a stream of searches must not starve an upsert (glibc prefers readers). */
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&c->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    return c;
}

int st__coll_reserve(st_coll *c, size_t max_label, size_t extra)
{
    if (max_label >= c->cap) {
        size_t cap = c->cap ? c->cap : 64;
        while (cap <= max_label)
            cap *= 2;
        unsigned char *l = realloc(c->live, cap);
        if (l)
            c->live = l;
        json_t **m = realloc(c->meta, cap * sizeof *m);
        if (m)
            c->meta = m;
        uint32_t *t = realloc(c->tail_at, cap * sizeof *t);
        if (t)
            c->tail_at = t;
        if (!l || !m || !t)
            return -1;
        memset(c->live + c->cap, 0, cap - c->cap);
        memset(c->meta + c->cap, 0, (cap - c->cap) * sizeof *m);
        for (size_t i = c->cap; i < cap; i++)
            c->tail_at[i] = ST_NOT_PENDING;
        c->cap = cap;
    }
    if (c->n_tail + extra > c->tail_cap) {
        size_t cap = c->tail_cap ? c->tail_cap : 64, dim = c->spec.dimension;
        while (cap < c->n_tail + extra)
            cap *= 2;
        if (cap >= ST_NOT_PENDING)
            return -1;
        int64_t *l = realloc(c->tail_labels, cap * sizeof *l);
        if (l)
            c->tail_labels = l;
        float *p = realloc(c->tail_prep, cap * dim * sizeof *p);
        if (p)
            c->tail_prep = p;
        if (!l || !p)
            return -1;
        c->tail_cap = cap;
    }
    return 0;
}

int st__coll_indexed(const st_coll *c, size_t label)
{
    return label < c->n_labels && c->live[label] && c->tail_at[label] == ST_NOT_PENDING;
}

/* Marks `label` live with metadata m (ownership passes). Room reserved. */
static void set_live(st_coll *c, size_t label, json_t *m)
{
    json_decref(c->meta[label]);
    c->meta[label] = m;
    if (!c->live[label])
        c->count++;
    c->live[label] = 1;
    if (label >= c->n_labels)
        c->n_labels = label + 1;
}

void st__coll_pend(st_coll *c, size_t label, const float *vec, json_t *meta)
{
    size_t dim = c->spec.dimension;
    uint32_t at = c->tail_at[label];
    if (at == ST_NOT_PENDING) {
        at = (uint32_t)c->n_tail++;
        c->tail_at[label] = at;
        c->tail_labels[at] = (int64_t)label;
    }
    memcpy(c->tail_prep + at * dim, vec, dim * sizeof *vec);
    dist_prepare((dist_metric)c->spec.distance, c->tail_prep + at * dim, dim); /* checked by the caller */
    set_live(c, label, meta);
}

/* Takes `label` out of the tail: the last entry moves into its place. */
static void tail_remove(st_coll *c, size_t label)
{
    size_t dim = c->spec.dimension;
    uint32_t at = c->tail_at[label], last = (uint32_t)--c->n_tail;
    c->tail_at[label] = ST_NOT_PENDING;
    if (at == last)
        return;
    int64_t moved = c->tail_labels[last];
    c->tail_labels[at] = moved;
    memcpy(c->tail_prep + at * dim, c->tail_prep + last * dim, dim * sizeof(float));
    c->tail_at[moved] = at;
}

int st__coll_unset(st_coll *c, size_t label, st_error *err)
{
    if (label >= c->n_labels || !c->live[label])
        return 0;
    if (c->tail_at[label] != ST_NOT_PENDING) {
        tail_remove(c, label);
    } else {
        hnsw_error herr;
        if (!c->index)
            return st__fail(err, ST_ERR_NOMEM, c->spec.name, "the index could not be reloaded after a failure");
        if (hnsw_delete(c->index, (int64_t)label, &herr) != HNSW_OK)
            return st__fail(err, herr.code == HNSW_ENOMEM ? ST_ERR_NOMEM : SQLITE_CORRUPT, c->spec.name, herr.msg);
    }
    c->live[label] = 0;
    json_decref(c->meta[label]);
    c->meta[label] = NULL;
    c->count--;
    return 0;
}

/* How long the indexer gives way, at most, before each insert while others wait for the
 * collection's lock: polls of 50 µs, up to 2 ms. */
#define GIVE_WAY_POLLS 40
#define GIVE_WAY_POLL_US 50

int st__coll_index_one(st_coll *c, st_error *err)
{
    for (int i = 0; i < GIVE_WAY_POLLS && atomic_load(&c->lock_wanted); i++)
        usleep(GIVE_WAY_POLL_US);
    pthread_rwlock_wrlock(&c->lock);
    int rc = 0;
    if (c->n_tail && c->index) {
        size_t at = c->n_tail - 1, dim = c->spec.dimension;
        int64_t label = c->tail_labels[at];
        hnsw_error herr;
        if (hnsw_insert_prepared(c->index, label, c->tail_prep + at * dim, &herr) == HNSW_OK) {
            tail_remove(c, (size_t)label);
            rc = 1;
        } else {
            rc = st__fail(err, herr.code == HNSW_ENOMEM ? ST_ERR_NOMEM : SQLITE_CORRUPT, c->spec.name, herr.msg);
        }
    }
    pthread_rwlock_unlock(&c->lock);
    return rc;
}

/* One row as loaded: into the graph when it has a record (rec != NULL), else into the tail;
 * its metadata parsed beside it. Returns 0, or -1 when the row or record is unusable or
 * memory runs out. */
static int load_row(st_coll *c, sqlite3_stmt *st, int with_records, hnsw_error *herr)
{
    int64_t label = sqlite3_column_int64(st, 0);
    size_t bytes = c->spec.dimension * sizeof(float);
    const char *meta = (const char *)sqlite3_column_text(st, 2);
    int has_rec = with_records && sqlite3_column_type(st, 3) == SQLITE_BLOB;
    if (label < 0 || label >= (int64_t)ST_NOT_PENDING || (size_t)sqlite3_column_bytes(st, 1) != bytes)
        return -1;
    const float *vec = sqlite3_column_blob(st, 1);
    float *copy = has_rec ? NULL : malloc(bytes);
    json_t *m = NULL;
    int ok = (has_rec || copy) && (!meta || (m = jsonw_loadb(meta, (size_t)sqlite3_column_bytes(st, 2), 0, NULL, NULL))) &&
             st__coll_reserve(c, (size_t)label, 1) == 0;
    if (ok && has_rec)
        ok = hnsw_load_add(c->index, label, vec, sqlite3_column_blob(st, 3), (size_t)sqlite3_column_bytes(st, 3),
                           herr) == HNSW_OK;
    if (ok && !has_rec) { /* a vector that cannot be prepared was never acknowledged */
        memcpy(copy, vec, bytes);
        ok = dist_prepare((dist_metric)c->spec.distance, copy, c->spec.dimension) == 0;
        if (ok)
            st__coll_pend(c, (size_t)label, vec, m);
    }
    if (ok && has_rec)
        set_live(c, (size_t)label, m);
    if (!ok)
        json_decref(m);
    free(copy);
    return ok ? 0 : -1;
}

/* Reads every row of the collection (with its node record when with_records) through
 * load_row. Returns 0, 1 when a row or record is unusable, -1 on a database error. */
static int load_rows(sqlite3 *conn, st_coll *c, int with_records, st_error *err)
{
    sqlite3_stmt *st;
    const char *sql = with_records
                          ? "SELECT d.label, d.vector, d.metadata, n.record FROM documents d "
                            "LEFT JOIN index_nodes n ON n.collection_id = d.collection_id AND n.label = d.label "
                            "WHERE d.collection_id = ?1"
                          : "SELECT label, vector, metadata FROM documents WHERE collection_id = ?1";
    if (sqlite3_prepare_v2(conn, sql, -1, &st, NULL) != SQLITE_OK)
        return st__sqlite_fail(conn, err, "loading an index");
    sqlite3_bind_int64(st, 1, c->id);
    int rc, bad = 0;
    hnsw_error herr;
    while (!bad && (rc = sqlite3_step(st)) == SQLITE_ROW)
        bad = load_row(c, st, with_records, &herr) != 0;
    sqlite3_finalize(st);
    if (bad)
        return 1;
    return rc == SQLITE_DONE ? 0 : st__sqlite_fail(conn, err, "loading an index");
}

/* Starts the index afresh (when the stored records are unusable): the records are dropped
 * and every document goes into the tail, for the indexer to insert. */
static int coll_rebuild(sqlite3 *conn, st_coll *c, st_error *err)
{
    coll_clear(c);
    hnsw_params p;
    index_params(&c->spec, &p);
    hnsw_error herr;
    if (hnsw_create(&p, &c->index, &herr) != HNSW_OK)
        return st__fail(err, ST_ERR_NOMEM, c->spec.name, herr.msg);
    /* Best effort: should this fail, the next start-up finds the records inconsistent again
     * and rebuilds again. */
    char sql[160];
    snprintf(sql, sizeof sql,
             "BEGIN IMMEDIATE; DELETE FROM index_nodes WHERE collection_id = %lld; "
             "UPDATE collections SET index_header = NULL WHERE id = %lld; COMMIT",
             (long long)c->id, (long long)c->id);
    if (sqlite3_exec(conn, sql, NULL, NULL, NULL) != SQLITE_OK)
        sqlite3_exec(conn, "ROLLBACK", NULL, NULL, NULL);
    int rc = load_rows(conn, c, 0, err);
    if (rc > 0)
        return st__fail(err, SQLITE_CORRUPT, c->spec.name, "a stored vector has the wrong size or is not finite");
    c->index_state = "rebuilt";
    return rc;
}

/* Loads the graph from its header and node records (no distance is computed) and puts every
 * row without a record into the tail; falls back to a rebuild when the records are
 * inconsistent. The caller holds index_mu and the write lock, or is the only user. */
int st__coll_load(sqlite3 *conn, st_coll *c, st_error *err)
{
    coll_clear(c);
    /* A write whose ROLLBACK could not run (memory short) left its transaction open: loading
     * now would read its uncommitted rows. The collection stays without its graph, and the
     * next write loads it once st__write_lock has ended that transaction. */
    if (!sqlite3_get_autocommit(conn))
        return st__fail(err, ST_ERR_NOMEM, c->spec.name, "the index could not be reloaded after a failure");
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(conn, "SELECT index_header FROM collections WHERE id = ?1", -1, &st, NULL) != SQLITE_OK)
        return st__sqlite_fail(conn, err, "loading an index");
    sqlite3_bind_int64(st, 1, c->id);
    hnsw_error herr;
    int has_header = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_BLOB;
    int ok = has_header && hnsw_load_begin(sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0),
                                           &c->index, &herr) == HNSW_OK;
    sqlite3_finalize(st);
    if (has_header && !ok)
        return coll_rebuild(conn, c, err);
    if (!has_header) { /* nothing indexed yet: every row is in the tail */
        hnsw_params p;
        index_params(&c->spec, &p);
        if (hnsw_create(&p, &c->index, &herr) != HNSW_OK)
            return st__fail(err, ST_ERR_NOMEM, c->spec.name, herr.msg);
        int rc = load_rows(conn, c, 0, err);
        if (rc > 0)
            return coll_rebuild(conn, c, err);
        c->index_state = c->count ? "loaded" : "ready";
        return rc;
    }
    int rc = load_rows(conn, c, 1, err);
    if (rc < 0)
        return rc;
    if (rc == 0 && hnsw_load_finish(c->index, &herr) == HNSW_OK) {
        c->index_state = "loaded";
        return 0;
    }
    return coll_rebuild(conn, c, err);
}

int st__coll_reload_lost(sqlite3 *conn, st_coll *c, st_error *err)
{
    st__coll_rdlock(c);
    int lost = !c->index;
    pthread_rwlock_unlock(&c->lock);
    if (!lost)
        return 0;
    pthread_mutex_lock(&c->index_mu);
    st__coll_wrlock(c);
    int rc = c->index ? 0 : st__coll_load(conn, c, err);
    pthread_rwlock_unlock(&c->lock);
    pthread_mutex_unlock(&c->index_mu);
    return rc;
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
    int walk = c->index ? 0 : HNSW_ENOMEM; /* lost by a reload that failed (see st__coll_reload_lost) */
    if (rc == 0 && c->index)
        rc = (walk = hnsw_dirty_foreach(c->index, write_record, &w)) == 0 ? 0 : -1;
    else if (rc == 0)
        rc = -1;
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
