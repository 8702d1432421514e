/* documents.c — documents: batch upserts that write the rows and the FTS5 entries in one
 * transaction and hand the vectors to the tail (the indexer inserts them into the graph
 * later), reading one back, and deleting one. A write that changes the graph itself (a
 * delete, or a new vector for an indexed document) commits the changed node records in its
 * own transaction, and reloads the collection when that fails. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json_watch.h"
#include "store_internal.h"

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

/* Writes one document's rows; *label receives its label (existing or new), *existed 1 when
 * the row was there before. */
static int write_doc(upsert_stmts *s, int64_t cid, unsigned dim, const st_doc *d, int64_t *next_label, int64_t *label,
                     int *existed)
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
    *existed = exists;
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

int st__finish_write(st_db *db, st_coll *c, int rc, int touched, st_error *err)
{
    if (rc == 0 && touched)
        rc = st__coll_write_index(db->conn, c, err);
    if (rc == 0)
        rc = st__exec(db->conn, "COMMIT", err, "committing");
    if (rc == 0 && touched) {
        st__coll_wrlock(c);
        hnsw_clear_dirty(c->index);
        pthread_rwlock_unlock(&c->lock);
    } else if (rc != 0) {
        st__rollback(db->conn);
        if (touched) {
            st__coll_wrlock(c);
            st_error lerr;
            st__coll_load(db->conn, c, &lerr);
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

/* Parses each document's metadata (NULL when it has none) into metas[0..n). */
static int parse_metas(const st_doc *docs, size_t n, json_t **metas, const char *collection, st_error *err)
{
    for (size_t i = 0; i < n; i++)
        if (docs[i].metadata && !(metas[i] = jsonw_loadb(docs[i].metadata, docs[i].metadata_len, 0, NULL, NULL)))
            return st__fail(err, ST_ERR_NOMEM, collection, "out of memory (or unreadable metadata)");
    return 0;
}

void st_set_pending_limit(st_db *db, size_t max_pending, unsigned wait_ms)
{
    db->max_pending = max_pending;
    db->pending_wait_ms = wait_ms;
}

/* Takes the write lock once c's tail has room for n more documents (see
 * st_set_pending_limit), waiting for the indexer up to the configured time. Returns 0 with
 * write_mu held, or -1 (ST_ERR_BEHIND in err) without it. The drain count is read before
 * each look at the tail, so a drain between the look and the wait is never missed. */
static int lock_with_room(st_db *db, st_coll *c, size_t n, st_error *err)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += db->pending_wait_ms / 1000;
    until.tv_nsec += (long)(db->pending_wait_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    for (;;) {
        pthread_mutex_lock(&db->idx_mu);
        uint64_t seen = db->drained;
        pthread_mutex_unlock(&db->idx_mu);
        st__write_lock(db);
        if (!db->max_pending || atomic_load(&c->deleted)) /* the caller answers a deleted one */
            return 0;
        st__coll_rdlock(c);
        size_t pending = c->n_tail;
        pthread_rwlock_unlock(&c->lock);
        if (pending == 0 || pending + n <= db->max_pending)
            return 0;
        pthread_mutex_unlock(&db->write_mu);
        int rc = 0;
        pthread_mutex_lock(&db->idx_mu);
        db->room_waiters++;
        while (rc != ETIMEDOUT && db->drained == seen && !atomic_load(&db->idx_stop))
            rc = pthread_cond_timedwait(&db->room_cv, &db->idx_mu, &until);
        db->room_waiters--;
        pthread_mutex_unlock(&db->idx_mu);
        if (rc == ETIMEDOUT || atomic_load(&db->idx_stop)) {
            char detail[160];
            snprintf(detail, sizeof detail,
                     "%zu vectors are waiting for the indexer and %zu more would pass the limit of %zu; "
                     "nothing was written, retry shortly", pending, n, db->max_pending);
            return st__fail(err, ST_ERR_BEHIND, c->spec.name, detail);
        }
    }
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
    json_t **metas = calloc(n ? n : 1, sizeof *metas);
    if (!labels || !metas) {
        free(labels);
        free(metas);
        st__coll_put(c);
        return st__fail(err, ST_ERR_NOMEM, collection, "out of memory");
    }
    if (lock_with_room(db, c, n, err) != 0) {
        free(labels);
        free(metas);
        st__coll_put(c);
        return -1;
    }
    upsert_stmts s = {0};
    int64_t next = 0, max_label = 0;
    int replaces = 0; /* some document existed: its label may be in the graph or the tail */
    int touched = 0;  /* the graph has changed (index_mu held) */
    int rc = atomic_load(&c->deleted)                       ? st__fail(err, ST_ERR_NOT_FOUND, collection, "no such collection")
             : st__coll_reload_lost(db->conn, c, err) != 0 ? -1
                                                           : st__begin_write(db, err, "upserting");
    if (rc == 0) {
        rc = prepare_upsert(db->conn, c->id, &s) == 0 && next_label_of(db->conn, c->id, &next) == 0 ? 0 : -1;
        for (size_t i = 0; rc == 0 && i < n; i++) {
            int existed = 0;
            rc = write_doc(&s, c->id, dimension, &docs[i], &next, &labels[i], &existed);
            replaces |= existed;
            max_label = labels[i] > max_label ? labels[i] : max_label;
        }
        if (rc == 0) {
            sqlite3_bind_int64(s.next, 1, c->id);
            sqlite3_bind_int64(s.next, 2, next);
            rc = step_done(s.next);
        }
        if (rc != 0) {
            st__sqlite_fail(db->conn, err, "upserting");
            st__write_failed(db);
        }
        finalize_upsert(&s);
        if (rc == 0)
            rc = parse_metas(docs, n, metas, collection, err);
    }
    if (rc == 0) {
        /* New labels are nobody's but ours; a replaced one may be moving from the tail into
         * the graph, so the indexer waits while it is dealt with. A replaced vector that is
         * in the graph leaves it now (and its node record with this transaction). */
        if (replaces) {
            pthread_mutex_lock(&c->index_mu);
            touched = 1;
        }
        st__coll_wrlock(c);
        if (st__coll_reserve(c, (size_t)max_label, n) != 0)
            rc = st__fail(err, ST_ERR_NOMEM, collection, "out of memory");
        for (size_t i = 0; rc == 0 && replaces && i < n; i++)
            if (st__coll_indexed(c, (size_t)labels[i]))
                rc = st__coll_unset(c, (size_t)labels[i], err);
        pthread_rwlock_unlock(&c->lock);
    }
    rc = st__finish_write(db, c, rc, touched, err);
    if (rc == 0) { /* committed: room was reserved, so this cannot fail */
        st__coll_wrlock(c);
        for (size_t i = 0; i < n; i++) {
            st__coll_pend(c, (size_t)labels[i], docs[i].vector, metas[i]);
            metas[i] = NULL;
        }
        pthread_rwlock_unlock(&c->lock);
    }
    if (touched)
        pthread_mutex_unlock(&c->index_mu);
    pthread_mutex_unlock(&db->write_mu);
    if (rc == 0)
        st__indexer_wake(db);
    for (size_t i = 0; i < n; i++)
        json_decref(metas[i]);
    free(metas);
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
    st__write_lock(db);
    sqlite3_stmt *st = NULL;
    int64_t label = -1;
    int rc = atomic_load(&c->deleted)                       ? st__fail(err, ST_ERR_NOT_FOUND, collection, "no such collection")
             : st__coll_reload_lost(db->conn, c, err) != 0 ? -1
                                                           : st__begin_write(db, err, "deleting a document");
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
        if (rc != 0) {
            st__sqlite_fail(db->conn, err, "deleting a document");
            st__write_failed(db);
        }
        sqlite3_finalize(st);
        if (rc == 0 && label >= 0) {
            char sql[80];
            snprintf(sql, sizeof sql, "DELETE FROM fts_%lld WHERE rowid = %lld", (long long)c->id, (long long)label);
            if ((rc = st__exec(db->conn, sql, err, "deleting a document")) != 0)
                st__write_failed(db);
        }
        /* The label may be in the graph or on its way there: the indexer waits. */
        pthread_mutex_lock(&c->index_mu);
        if (rc == 0 && label >= 0) {
            st__coll_wrlock(c);
            rc = st__coll_unset(c, (size_t)label, err);
            pthread_rwlock_unlock(&c->lock);
        }
        rc = st__finish_write(db, c, rc, label >= 0, err);
        pthread_mutex_unlock(&c->index_mu);
    }
    pthread_mutex_unlock(&db->write_mu);
    st__coll_put(c);
    if (rc == 0 && label < 0)
        return st__fail(err, ST_ERR_NOT_FOUND, collection, "no such document");
    return rc;
}
