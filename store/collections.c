/* collections.c — collections and documents: the registry of collections in memory, their
 * rows in SQLite, and batch upserts that change both in one transaction. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

const char *const st_distance_names[] = {"cosine", "dot", "l2", NULL};

int st_name_valid(const char *name, size_t len)
{
    if (len == 0 || len > ST_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char ch = name[i];
        int alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        if (!alnum && (i == 0 || (ch != '_' && ch != '.' && ch != '-')))
            return 0;
    }
    return 1;
}

/* ------------------------------------------------------------ in-memory collections */

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

st_coll *st__coll_get(st_db *db, const char *name, st_error *err)
{
    st_coll *found = NULL;
    pthread_mutex_lock(&db->reg_mu);
    for (size_t i = 0; i < db->n_colls && !found; i++)
        if (strcmp(db->colls[i]->spec.name, name) == 0) {
            found = db->colls[i];
            atomic_fetch_add(&found->refs, 1);
        }
    pthread_mutex_unlock(&db->reg_mu);
    if (!found)
        st__fail(err, ST_ERR_NOT_FOUND, name, "no such collection");
    return found;
}

static int registry_add(st_db *db, st_coll *c)
{
    pthread_mutex_lock(&db->reg_mu);
    int rc = 0;
    if (db->n_colls == db->cap_colls) {
        size_t cap = db->cap_colls ? db->cap_colls * 2 : 8;
        st_coll **p = realloc(db->colls, cap * sizeof *p);
        if (p) {
            db->colls = p;
            db->cap_colls = cap;
        } else {
            rc = -1;
        }
    }
    if (rc == 0)
        db->colls[db->n_colls++] = c;
    pthread_mutex_unlock(&db->reg_mu);
    return rc;
}

static void registry_remove(st_db *db, st_coll *c)
{
    pthread_mutex_lock(&db->reg_mu);
    for (size_t i = 0; i < db->n_colls; i++)
        if (db->colls[i] == c) {
            db->colls[i] = db->colls[--db->n_colls];
            pthread_mutex_unlock(&db->reg_mu);
            st__coll_put(c);
            return;
        }
    pthread_mutex_unlock(&db->reg_mu);
}

static void index_params(const st_collection *spec, hnsw_params *p)
{
    hnsw_params_default(p, spec->dimension, (dist_metric)spec->distance);
    p->m = (int)spec->m;
    p->ef_construction = (int)spec->ef_construction;
}

/* A collection with an empty index. NULL when out of memory or (err filled) when the
 * parameters are out of the index's range. */
static st_coll *coll_new(int64_t id, const st_collection *spec, st_error *err)
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
    pthread_rwlock_init(&c->lock, NULL);
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
    if (meta && !(m = json_loadb(meta, meta_len, 0, NULL)))
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
static int coll_set(st_coll *c, size_t label, const float *vec, const char *meta, size_t meta_len, st_error *err)
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

static int coll_unset(st_coll *c, size_t label, st_error *err)
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
            bad = coll_set(c, (size_t)label, memcpy(vec, sqlite3_column_blob(st, 1), bytes), meta,
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
static int coll_load(sqlite3 *conn, st_coll *c, st_error *err)
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
    return rc == SQLITE_DONE ? 0 : -1;
}

static int write_index(sqlite3 *conn, st_coll *c, st_error *err)
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
    if (rc == 0)
        rc = hnsw_dirty_foreach(c->index, write_record, &w) == 0 ? 0 : -1;
    if (rc == 0) {
        hnsw_header_record(c->index, header);
        sqlite3_bind_int64(head, 1, c->id);
        sqlite3_bind_blob(head, 2, header, sizeof header, SQLITE_STATIC);
        rc = sqlite3_step(head) == SQLITE_DONE ? 0 : -1;
    }
    if (rc != 0)
        st__sqlite_fail(conn, err, "writing the index");
    sqlite3_finalize(w.put);
    sqlite3_finalize(w.drop);
    sqlite3_finalize(head);
    return rc;
}

static int read_spec(sqlite3_stmt *st, st_collection *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", (const char *)sqlite3_column_text(st, 1));
    out->dimension = (unsigned)sqlite3_column_int(st, 2);
    const char *d = (const char *)sqlite3_column_text(st, 3);
    out->distance = !strcmp(d, "dot") ? ST_DOT : !strcmp(d, "l2") ? ST_L2 : ST_COSINE;
    out->m = (unsigned)sqlite3_column_int(st, 4);
    out->ef_construction = (unsigned)sqlite3_column_int(st, 5);
    snprintf(out->created_at, sizeof out->created_at, "%s", (const char *)sqlite3_column_text(st, 6));
    return 0;
}

#define SPEC_COLUMNS "id, name, dimension, distance, hnsw_m, hnsw_ef_construction, created_at"

int st__load_collections(st_db *db, st_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db->conn, "SELECT " SPEC_COLUMNS " FROM collections", -1, &st, NULL) != SQLITE_OK)
        return st__sqlite_fail(db->conn, err, "loading collections");
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        st_collection spec;
        read_spec(st, &spec);
        err->code = 0;
        st_coll *c = coll_new(sqlite3_column_int64(st, 0), &spec, err);
        if (!c || coll_load(db->conn, c, err) != 0 || registry_add(db, c) != 0) {
            if (err->code == 0)
                st__fail(err, ST_ERR_NOMEM, spec.name, "out of memory");
            st__coll_put(c);
            sqlite3_finalize(st);
            return -1;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : st__sqlite_fail(db->conn, err, "loading collections");
}

void st__free_collections(st_db *db)
{
    for (size_t i = 0; i < db->n_colls; i++)
        st__coll_put(db->colls[i]);
    free(db->colls);
    db->colls = NULL;
    db->n_colls = db->cap_colls = 0;
}

/* ------------------------------------------------------------------ collections */

static void spec_of(st_coll *c, st_collection *out)
{
    *out = c->spec;
    pthread_rwlock_rdlock(&c->lock);
    out->count = c->count;
    snprintf(out->index_state, sizeof out->index_state, "%s", c->index_state);
    pthread_rwlock_unlock(&c->lock);
}

int st_collection_create(st_db *db, const st_collection *spec, st_error *err)
{
    err->code = 0;
    if (!st_name_valid(spec->name, strlen(spec->name)) || spec->dimension < 1 || spec->dimension > ST_DIM_MAX ||
        (unsigned)spec->distance > ST_L2)
        return st__fail(err, ST_ERR_INVALID, spec->name, "invalid collection parameters");
    st_coll *probe = coll_new(0, spec, err); /* the index checks m and ef_construction */
    if (!probe)
        return -1;
    st__coll_put(probe);
    pthread_mutex_lock(&db->write_mu);
    st_error ignore;
    st_coll *existing = st__coll_get(db, spec->name, &ignore);
    if (existing) {
        st__coll_put(existing);
        pthread_mutex_unlock(&db->write_mu);
        return st__fail(err, ST_ERR_EXISTS, spec->name, "a collection of that name exists");
    }
    if (st__exec(db->conn, "BEGIN IMMEDIATE", err, "creating a collection") != 0) {
        pthread_mutex_unlock(&db->write_mu);
        return -1;
    }
    sqlite3_stmt *st = NULL;
    int ok = sqlite3_prepare_v2(db->conn,
                                "INSERT INTO collections(name, dimension, distance, hnsw_m, hnsw_ef_construction) "
                                "VALUES (?1, ?2, ?3, ?4, ?5) RETURNING " SPEC_COLUMNS,
                                -1, &st, NULL) == SQLITE_OK;
    st_coll *c = NULL;
    if (ok) {
        sqlite3_bind_text(st, 1, spec->name, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, (int)spec->dimension);
        sqlite3_bind_text(st, 3, st_distance_names[spec->distance], -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 4, (int)spec->m);
        sqlite3_bind_int(st, 5, (int)spec->ef_construction);
        ok = sqlite3_step(st) == SQLITE_ROW;
        if (ok) {
            st_collection stored;
            read_spec(st, &stored);
            c = coll_new(sqlite3_column_int64(st, 0), &stored, err);
        }
        ok = ok && sqlite3_step(st) == SQLITE_DONE;
    }
    if (!ok && err->code == 0)
        st__sqlite_fail(db->conn, err, "creating a collection");
    sqlite3_finalize(st);
    char sql[96];
    if (ok && c) {
        snprintf(sql, sizeof sql, "CREATE VIRTUAL TABLE fts_%lld USING fts5(text)", (long long)c->id);
        ok = st__exec(db->conn, sql, err, "creating a collection") == 0 &&
             st__exec(db->conn, "COMMIT", err, "creating a collection") == 0;
    } else {
        ok = 0; /* coll_new filled err */
    }
    if (ok && registry_add(db, c) != 0) {
        /* Committed but not registered: undo the commit so memory and disk agree. */
        snprintf(sql, sizeof sql, "DROP TABLE fts_%lld; DELETE FROM collections WHERE id = %lld", (long long)c->id,
                 (long long)c->id);
        sqlite3_exec(db->conn, sql, NULL, NULL, NULL);
        ok = 0;
        st__fail(err, ST_ERR_NOMEM, spec->name, "out of memory");
    } else if (!ok) {
        sqlite3_exec(db->conn, "ROLLBACK", NULL, NULL, NULL);
    }
    if (!ok)
        st__coll_put(c);
    pthread_mutex_unlock(&db->write_mu);
    return ok ? 0 : -1;
}

int st_collection_get(st_db *db, const char *name, st_collection *out, st_error *err)
{
    st_coll *c = st__coll_get(db, name, err);
    if (!c)
        return -1;
    spec_of(c, out);
    st__coll_put(c);
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const st_collection *)a)->name, ((const st_collection *)b)->name);
}

int st_collection_list(st_db *db, st_collection **out, size_t *n, st_error *err)
{
    pthread_mutex_lock(&db->reg_mu);
    size_t count = db->n_colls;
    st_coll **held = malloc((count ? count : 1) * sizeof *held);
    for (size_t i = 0; held && i < count; i++) {
        held[i] = db->colls[i];
        atomic_fetch_add(&held[i]->refs, 1);
    }
    pthread_mutex_unlock(&db->reg_mu);
    *out = held ? malloc((count ? count : 1) * sizeof **out) : NULL;
    for (size_t i = 0; held && i < count; i++) {
        if (*out)
            spec_of(held[i], &(*out)[i]);
        st__coll_put(held[i]);
    }
    free(held);
    if (!*out)
        return st__fail(err, ST_ERR_NOMEM, "listing collections", "out of memory");
    qsort(*out, count, sizeof **out, by_name);
    *n = count;
    return 0;
}

int st_collection_delete(st_db *db, const char *name, st_error *err)
{
    pthread_mutex_lock(&db->write_mu);
    st_coll *c = st__coll_get(db, name, err);
    if (!c) {
        pthread_mutex_unlock(&db->write_mu);
        return -1;
    }
    char sql[160];
    snprintf(sql, sizeof sql, "BEGIN IMMEDIATE; DROP TABLE fts_%lld; DELETE FROM collections WHERE id = %lld; COMMIT",
             (long long)c->id, (long long)c->id);
    int rc = st__exec(db->conn, sql, err, "deleting a collection");
    if (rc != 0)
        sqlite3_exec(db->conn, "ROLLBACK", NULL, NULL, NULL);
    else {
        atomic_store(&c->deleted, 1);
        registry_remove(db, c);
    }
    pthread_mutex_unlock(&db->write_mu);
    st__coll_put(c);
    return rc;
}

/* ------------------------------------------------------------------ documents */

static void bind_id(sqlite3_stmt *st, int col, const st_id *id)
{
    if (id->is_string)
        sqlite3_bind_text(st, col, id->str, (int)id->len, SQLITE_STATIC);
    else
        sqlite3_bind_int64(st, col, id->num);
}

static int id_valid(const st_id *id)
{
    return !id->is_string || (id->len > 0 && id->len <= ST_ID_MAX && !memchr(id->str, '\0', id->len));
}

/* The statements of one upsert batch, on the writer connection. */
typedef struct {
    sqlite3_stmt *find, *update, *insert, *fts_del, *fts_ins, *next;
} upsert_stmts;

static int prepare_upsert(sqlite3 *conn, int64_t cid, upsert_stmts *s)
{
    char fts_del[80], fts_ins[96];
    snprintf(fts_del, sizeof fts_del, "DELETE FROM fts_%lld WHERE rowid = ?1", (long long)cid);
    snprintf(fts_ins, sizeof fts_ins, "INSERT INTO fts_%lld(rowid, text) VALUES (?1, ?2)", (long long)cid);
    const char *sql[] = {
        "SELECT label FROM documents WHERE collection_id = ?1 AND id = ?2",
        "UPDATE documents SET text = ?3, metadata = ?4, vector = ?5 WHERE collection_id = ?1 AND label = ?2",
        "INSERT INTO documents(collection_id, label, id, text, metadata, vector) VALUES (?1, ?2, ?6, ?3, ?4, ?5)",
        fts_del,
        fts_ins,
        "UPDATE collections SET next_label = ?2 WHERE id = ?1",
    };
    sqlite3_stmt **out[] = {&s->find, &s->update, &s->insert, &s->fts_del, &s->fts_ins, &s->next};
    for (size_t i = 0; i < 6; i++)
        if (sqlite3_prepare_v2(conn, sql[i], -1, out[i], NULL) != SQLITE_OK)
            return -1;
    return 0;
}

static void finalize_upsert(upsert_stmts *s)
{
    sqlite3_stmt *all[] = {s->find, s->update, s->insert, s->fts_del, s->fts_ins, s->next};
    for (size_t i = 0; i < 6; i++)
        sqlite3_finalize(all[i]);
}

static int step_done(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* Writes one document's rows; *label receives its label (existing or new). */
static int write_doc(upsert_stmts *s, int64_t cid, unsigned dim, const st_doc *d, int64_t *next_label, int64_t *label)
{
    sqlite3_bind_int64(s->find, 1, cid);
    bind_id(s->find, 2, &d->id);
    int rc = sqlite3_step(s->find);
    int exists = rc == SQLITE_ROW;
    if (exists)
        *label = sqlite3_column_int64(s->find, 0);
    sqlite3_reset(s->find);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return -1;
    if (!exists)
        *label = (*next_label)++;
    sqlite3_stmt *w = exists ? s->update : s->insert;
    sqlite3_bind_int64(w, 1, cid);
    sqlite3_bind_int64(w, 2, *label);
    if (d->text)
        sqlite3_bind_text(w, 3, d->text, (int)d->text_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(w, 3);
    if (d->metadata)
        sqlite3_bind_text(w, 4, d->metadata, (int)d->metadata_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(w, 4);
    sqlite3_bind_blob(w, 5, d->vector, (int)(dim * sizeof(float)), SQLITE_STATIC);
    if (!exists)
        bind_id(w, 6, &d->id);
    if (step_done(w) != 0)
        return -1;
    if (exists) {
        sqlite3_bind_int64(s->fts_del, 1, *label);
        if (step_done(s->fts_del) != 0)
            return -1;
    }
    if (d->text) {
        sqlite3_bind_int64(s->fts_ins, 1, *label);
        sqlite3_bind_text(s->fts_ins, 2, d->text, (int)d->text_len, SQLITE_STATIC);
        if (step_done(s->fts_ins) != 0)
            return -1;
    }
    return 0;
}

static int next_label_of(sqlite3 *conn, int64_t cid, int64_t *out)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(conn, "SELECT next_label FROM collections WHERE id = ?1", -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, cid);
    int ok = sqlite3_step(st) == SQLITE_ROW;
    if (ok)
        *out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return ok ? 0 : -1;
}

/* The end of every write transaction, after the rows and the in-memory change (`touched`):
 * the index's changed records, then COMMIT; on any failure ROLLBACK, and the collection
 * reloads from what the database holds, so nothing of the failed write stays visible. */
static int finish_write(st_db *db, st_coll *c, int rc, int touched, st_error *err)
{
    if (rc == 0 && touched)
        rc = write_index(db->conn, c, err);
    if (rc == 0)
        rc = st__exec(db->conn, "COMMIT", err, "committing");
    if (rc == 0 && touched) {
        pthread_rwlock_wrlock(&c->lock);
        hnsw_clear_dirty(c->index);
        pthread_rwlock_unlock(&c->lock);
    } else if (rc != 0) {
        sqlite3_exec(db->conn, "ROLLBACK", NULL, NULL, NULL);
        if (touched) {
            pthread_rwlock_wrlock(&c->lock);
            st_error lerr;
            coll_load(db->conn, c, &lerr);
            pthread_rwlock_unlock(&c->lock);
        }
    }
    return rc;
}

/* Checks the caller's preconditions on docs before anything is written. */
static int check_docs(const st_coll *c, const st_doc *docs, size_t n, st_error *err)
{
    char what[64];
    for (size_t i = 0; i < n; i++) {
        snprintf(what, sizeof what, "document %zu", i);
        if (!id_valid(&docs[i].id))
            return st__fail(err, ST_ERR_INVALID, what, "invalid id");
        double ss = 0;
        for (unsigned k = 0; k < c->spec.dimension; k++) {
            if (!isfinite(docs[i].vector[k]))
                return st__fail(err, ST_ERR_INVALID, what, "the vector holds a non-finite value");
            ss += (double)docs[i].vector[k] * docs[i].vector[k];
        }
        if (c->spec.distance == ST_COSINE && !(ss > 0))
            return st__fail(err, ST_ERR_INVALID, what, "a zero vector has no cosine similarity");
    }
    return 0;
}

int st_upsert(st_db *db, const char *collection, unsigned dimension, const st_doc *docs, size_t n, st_error *err)
{
    err->code = 0;
    st_coll *c = st__coll_get(db, collection, err);
    if (!c)
        return -1;
    if (c->spec.dimension != dimension) {
        st__coll_put(c);
        return st__fail(err, ST_ERR_INVALID, collection, "the collection's dimension differs");
    }
    if (check_docs(c, docs, n, err) != 0) {
        st__coll_put(c);
        return -1;
    }
    int64_t *labels = malloc((n ? n : 1) * sizeof *labels);
    if (!labels) {
        st__coll_put(c);
        return st__fail(err, ST_ERR_NOMEM, collection, "out of memory");
    }
    pthread_mutex_lock(&db->write_mu);
    upsert_stmts s = {0};
    int64_t next = 0;
    int touched = 0; /* the in-memory index has changed */
    int rc = atomic_load(&c->deleted) ? st__fail(err, ST_ERR_NOT_FOUND, collection, "no such collection")
                                      : st__exec(db->conn, "BEGIN IMMEDIATE", err, "upserting");
    if (rc == 0) {
        rc = prepare_upsert(db->conn, c->id, &s) == 0 && next_label_of(db->conn, c->id, &next) == 0 ? 0 : -1;
        for (size_t i = 0; rc == 0 && i < n; i++)
            rc = write_doc(&s, c->id, dimension, &docs[i], &next, &labels[i]);
        if (rc == 0) {
            sqlite3_bind_int64(s.next, 1, c->id);
            sqlite3_bind_int64(s.next, 2, next);
            rc = step_done(s.next);
        }
        if (rc != 0)
            st__sqlite_fail(db->conn, err, "upserting");
        finalize_upsert(&s);
    }
    if (rc == 0) {
        pthread_rwlock_wrlock(&c->lock);
        touched = 1;
        for (size_t i = 0; rc == 0 && i < n; i++)
            rc = coll_set(c, (size_t)labels[i], docs[i].vector, docs[i].metadata, docs[i].metadata_len, err);
        pthread_rwlock_unlock(&c->lock);
    }
    rc = finish_write(db, c, rc, touched, err);
    pthread_mutex_unlock(&db->write_mu);
    free(labels);
    st__coll_put(c);
    return rc;
}

void st_record_free(st_record *r)
{
    if (!r)
        return;
    free((char *)r->id.str);
    free(r->text);
    free(r->metadata);
    free(r->vector);
    memset(r, 0, sizeof *r);
}

void st_results_free(st_record *r, size_t n)
{
    for (size_t i = 0; r && i < n; i++)
        st_record_free(&r[i]);
    free(r);
}

static char *dup_bytes(const void *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

int st__read_record(sqlite3_stmt *st, int first_col, unsigned dim, int with_text, int with_meta, int with_vec,
                    st_record *out)
{
    memset(out, 0, sizeof *out);
    int c = first_col, ok = 1;
    if (sqlite3_column_type(st, c) == SQLITE_INTEGER) {
        out->id.num = sqlite3_column_int64(st, c);
    } else {
        out->id.is_string = 1;
        out->id.len = (size_t)sqlite3_column_bytes(st, c);
        ok &= (out->id.str = dup_bytes(sqlite3_column_text(st, c), out->id.len)) != NULL;
    }
    if (with_text && sqlite3_column_type(st, c + 1) != SQLITE_NULL) {
        out->text_len = (size_t)sqlite3_column_bytes(st, c + 1);
        ok &= (out->text = dup_bytes(sqlite3_column_text(st, c + 1), out->text_len)) != NULL;
    }
    if (with_meta && sqlite3_column_type(st, c + 2) != SQLITE_NULL)
        ok &= (out->metadata = dup_bytes(sqlite3_column_text(st, c + 2), (size_t)sqlite3_column_bytes(st, c + 2))) !=
              NULL;
    if (with_vec) {
        out->dimension = dim;
        ok &= (size_t)sqlite3_column_bytes(st, c + 3) == dim * sizeof(float) &&
              (out->vector = (float *)dup_bytes(sqlite3_column_blob(st, c + 3), dim * sizeof(float))) != NULL;
    }
    if (!ok)
        st_record_free(out);
    return ok ? 0 : -1;
}

int st_document_get(st_db *db, const char *collection, const st_id *id, st_record *out, st_error *err)
{
    memset(out, 0, sizeof *out);
    st_coll *c = st__coll_get(db, collection, err);
    if (!c)
        return -1;
    sqlite3 *conn = st__reader(db, err);
    int rc = -1;
    sqlite3_stmt *st;
    if (conn && sqlite3_prepare_v2(conn,
                                   "SELECT id, text, metadata, vector FROM documents "
                                   "WHERE collection_id = ?1 AND id = ?2",
                                   -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, c->id);
        bind_id(st, 2, id);
        int s = sqlite3_step(st);
        if (s == SQLITE_ROW)
            rc = st__read_record(st, 0, c->spec.dimension, 1, 1, 1, out) == 0
                     ? 0
                     : st__fail(err, ST_ERR_NOMEM, collection, "out of memory");
        else if (s == SQLITE_DONE)
            st__fail(err, ST_ERR_NOT_FOUND, collection, "no such document");
        else
            st__sqlite_fail(conn, err, "reading a document");
        sqlite3_finalize(st);
    } else if (conn) {
        st__sqlite_fail(conn, err, "reading a document");
    }
    if (conn)
        st__reader_done(db, conn);
    st__coll_put(c);
    return rc;
}

int st_document_delete(st_db *db, const char *collection, const st_id *id, st_error *err)
{
    err->code = 0;
    st_coll *c = st__coll_get(db, collection, err);
    if (!c)
        return -1;
    pthread_mutex_lock(&db->write_mu);
    sqlite3_stmt *st = NULL;
    int64_t label = -1;
    int rc = atomic_load(&c->deleted) ? st__fail(err, ST_ERR_NOT_FOUND, collection, "no such collection")
                                      : st__exec(db->conn, "BEGIN IMMEDIATE", err, "deleting a document");
    if (rc == 0) {
        rc = sqlite3_prepare_v2(db->conn, "DELETE FROM documents WHERE collection_id = ?1 AND id = ?2 RETURNING label",
                                -1, &st, NULL) == SQLITE_OK
                 ? 0
                 : -1;
        if (rc == 0) {
            sqlite3_bind_int64(st, 1, c->id);
            bind_id(st, 2, id);
            int s = sqlite3_step(st);
            if (s == SQLITE_ROW)
                label = sqlite3_column_int64(st, 0);
            rc = s == SQLITE_ROW ? (sqlite3_step(st) == SQLITE_DONE ? 0 : -1) : s == SQLITE_DONE ? 0 : -1;
        }
        if (rc != 0)
            st__sqlite_fail(db->conn, err, "deleting a document");
        sqlite3_finalize(st);
        if (rc == 0 && label >= 0) {
            char sql[80];
            snprintf(sql, sizeof sql, "DELETE FROM fts_%lld WHERE rowid = %lld", (long long)c->id, (long long)label);
            rc = st__exec(db->conn, sql, err, "deleting a document");
        }
        if (rc == 0 && label >= 0) {
            pthread_rwlock_wrlock(&c->lock);
            rc = coll_unset(c, (size_t)label, err);
            pthread_rwlock_unlock(&c->lock);
        }
        rc = finish_write(db, c, rc, label >= 0, err);
    }
    pthread_mutex_unlock(&db->write_mu);
    st__coll_put(c);
    if (rc == 0 && label < 0)
        return st__fail(err, ST_ERR_NOT_FOUND, collection, "no such document");
    return rc;
}
