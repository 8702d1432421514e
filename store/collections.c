/* collections.c — the registry of collections in memory, and creating, listing and deleting
 * collections (rows, FTS5 table and index together). */
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

int st_error_kind(const st_error *err)
{
    if (err->code < 0)
        return err->code == -1 ? ST_ERR_IO : err->code;
    switch (err->code & 0xff) { /* the primary result code of an extended one */
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return ST_ERR_BUSY;
    case SQLITE_FULL:
        return ST_ERR_FULL;
    case SQLITE_NOMEM:
        return ST_ERR_NOMEM;
    default:
        return ST_ERR_IO;
    }
}

/* ------------------------------------------------------------------ the registry */

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
        st_coll *c = st__coll_new(sqlite3_column_int64(st, 0), &spec, err);
        if (!c || st__coll_load(db->conn, c, err) != 0 || registry_add(db, c) != 0) {
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
    st__coll_rdlock(c);
    out->count = c->count;
    out->pending = (int64_t)c->n_tail;
    out->indexed = c->count - out->pending;
    snprintf(out->index_state, sizeof out->index_state, "%s", c->index_state);
    pthread_rwlock_unlock(&c->lock);
}

int st_collection_create(st_db *db, const st_collection *spec, st_error *err)
{
    err->code = 0;
    if (!st_name_valid(spec->name, strlen(spec->name)) || spec->dimension < 1 || spec->dimension > ST_DIM_MAX ||
        (unsigned)spec->distance > ST_L2)
        return st__fail(err, ST_ERR_INVALID, spec->name, "invalid collection parameters");
    st_coll *probe = st__coll_new(0, spec, err); /* the index checks m and ef_construction */
    if (!probe)
        return -1;
    st__coll_put(probe);
    st__write_lock(db);
    st_error ignore;
    st_coll *existing = st__coll_get(db, spec->name, &ignore);
    if (existing) {
        st__coll_put(existing);
        pthread_mutex_unlock(&db->write_mu);
        return st__fail(err, ST_ERR_EXISTS, spec->name, "a collection of that name exists");
    }
    if (st__begin_write(db, err, "creating a collection") != 0) {
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
            c = st__coll_new(sqlite3_column_int64(st, 0), &stored, err);
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
        st__rollback(db->conn);
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
    st__write_lock(db);
    st_coll *c = st__coll_get(db, name, err);
    if (!c) {
        pthread_mutex_unlock(&db->write_mu);
        return -1;
    }
    char sql[160];
    snprintf(sql, sizeof sql, "DROP TABLE fts_%lld; DELETE FROM collections WHERE id = %lld; COMMIT",
             (long long)c->id, (long long)c->id);
    int rc = st__begin_write(db, err, "deleting a collection") != 0 ? -1
                                                                     : st__exec(db->conn, sql, err, "deleting a collection");
    if (rc != 0)
        st__rollback(db->conn);
    else {
        atomic_store(&c->deleted, 1);
        registry_remove(db, c);
    }
    pthread_mutex_unlock(&db->write_mu);
    st__coll_put(c);
    return rc;
}
