#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "jobs.h"
#include "store_internal.h"

#define BUSY_TIMEOUT_MS 5000

/* Migrations, in order: migrations[i] moves the schema from version i to i + 1.
 * Never edit a migration that has shipped; append a new one. */
static const char *const migrations[] = {
    /* 1: bookkeeping about the database itself */
    "CREATE TABLE meta ("
    "  key TEXT PRIMARY KEY,"
    "  value TEXT NOT NULL"
    ") STRICT;"
    "INSERT INTO meta(key, value) VALUES ('created_at', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));",

    /* 2: collections of documents. A document's id keeps its JSON type (an ANY column of a
     * STRICT table stores 7 and '7' as different values), its label is its node in the
     * collection's HNSW index, and each collection also has an FTS5 table fts_<id> (rowid =
     * label) created with it. next_label only grows, so a label is never reused. The index
     * is persisted as its header record (collections.index_header, NULL until the first
     * write) and one record per node (index_nodes), written in the batch's transaction. */
    "CREATE TABLE collections ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  dimension INTEGER NOT NULL CHECK (dimension BETWEEN 1 AND 65536),"
    "  distance TEXT NOT NULL CHECK (distance IN ('cosine', 'dot', 'l2')),"
    "  hnsw_m INTEGER NOT NULL,"
    "  hnsw_ef_construction INTEGER NOT NULL,"
    "  next_label INTEGER NOT NULL DEFAULT 0,"
    "  index_header BLOB,"
    "  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"
    ") STRICT;"
    "CREATE TABLE documents ("
    "  collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,"
    "  label INTEGER NOT NULL,"
    "  id ANY NOT NULL CHECK (typeof(id) IN ('integer', 'text')),"
    "  text TEXT,"
    "  metadata TEXT,"
    "  vector BLOB NOT NULL,"
    "  UNIQUE (collection_id, label),"
    "  UNIQUE (collection_id, id)"
    ") STRICT;"
    "CREATE TABLE index_nodes ("
    "  collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,"
    "  label INTEGER NOT NULL,"
    "  record BLOB NOT NULL,"
    "  PRIMARY KEY (collection_id, label)"
    ") STRICT;",

    /* 3: training jobs, their step metrics, uploaded datasets (store/jobs.c) */
    st_jobs_schema_sql,
};
#define N_MIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))

int st__fail(st_error *err, int code, const char *what, const char *detail)
{
    err->code = code;
    snprintf(err->msg, sizeof err->msg, "%s: %s", what, detail);
    return -1;
}

static int open_conn(const char *path, int flags, sqlite3 **out, st_error *err);
static void close_conn(sqlite3 *c);

/* Every connection keeps a ROLLBACK prepared from its opening (open_conn): under memory that
 * stays short, preparing one fails every time, and stepping a prepared one needs no memory. */
static const char rollback_sql[] = "ROLLBACK";

static sqlite3_stmt *kept_rollback(sqlite3 *c)
{
    for (sqlite3_stmt *s = sqlite3_next_stmt(c, NULL); s; s = sqlite3_next_stmt(c, s)) {
        const char *sql = sqlite3_sql(s); /* NULL for a statement whose text could not be kept */
        if (sql && strcmp(sql, rollback_sql) == 0)
            return s;
    }
    return NULL;
}

void st__rollback(sqlite3 *c)
{
    sqlite3_stmt *kept = kept_rollback(c);
    for (int i = 0; i < 100 && !sqlite3_get_autocommit(c); i++) {
        int rc;
        if (kept) {
            rc = sqlite3_step(kept) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
            sqlite3_reset(kept);
        } else {
            rc = sqlite3_exec(c, rollback_sql, NULL, NULL, NULL);
        }
        if (rc != SQLITE_OK && i)
            sqlite3_sleep(10);
    }
}

void st__write_lock(st_db *db)
{
    pthread_mutex_lock(&db->write_mu);
    st__rollback(db->conn);
    sqlite3 *fresh;
    st_error ignore;
    if (db->conn_stale && sqlite3_get_autocommit(db->conn) &&
        open_conn(db->path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &fresh, &ignore) == 0) {
        close_conn(db->conn);
        db->conn = fresh;
        db->conn_stale = 0;
    }
}

void st__write_failed(st_db *db)
{
    if (sqlite3_get_autocommit(db->conn))
        db->conn_stale = 1;
}

int st__begin_write(st_db *db, st_error *err, const char *what)
{
    if (db->conn_stale)
        return st__fail(err, ST_ERR_NOMEM, what, "out of memory (the writer connection could not be reopened)");
    return st__exec(db->conn, "BEGIN IMMEDIATE", err, what);
}

int st__exec(sqlite3 *c, const char *sql, st_error *err, const char *what)
{
    char *msg = NULL;
    int rc = sqlite3_exec(c, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        st__fail(err, rc, what, msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

int st__sqlite_fail(sqlite3 *c, st_error *err, const char *what)
{
    return st__fail(err, sqlite3_extended_errcode(c), what, sqlite3_errmsg(c));
}


static int read_int(sqlite3 *c, const char *sql, int *out)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(c, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : -1;
}

static int migrate(st_db *db, st_error *err)
{
    if (read_int(db->conn, "PRAGMA user_version", &db->version) != 0)
        return st__fail(err, sqlite3_errcode(db->conn), "reading the schema version",
                    sqlite3_errmsg(db->conn));
    if (db->version > N_MIGRATIONS) {
        char detail[128];
        snprintf(detail, sizeof detail, "schema version %d is newer than this ragd knows (%d)",
                 db->version, N_MIGRATIONS);
        return st__fail(err, -1, "opening the database", detail);
    }
    while (db->version < N_MIGRATIONS) {
        char what[64], bump[64];
        snprintf(what, sizeof what, "migrating the schema to version %d", db->version + 1);
        snprintf(bump, sizeof bump, "PRAGMA user_version = %d;", db->version + 1);
        if (st__exec(db->conn, "BEGIN IMMEDIATE", err, what) != 0)
            return -1;
        if (st__exec(db->conn, migrations[db->version], err, what) != 0 ||
            st__exec(db->conn, bump, err, what) != 0 || st__exec(db->conn, "COMMIT", err, what) != 0) {
            st__rollback(db->conn);
            return -1;
        }
        db->version++;
    }
    return 0;
}

/* Closes a connection and its kept ROLLBACK (FTS5 finalizes its own statements on close). */
static void close_conn(sqlite3 *c)
{
    if (c)
        sqlite3_finalize(kept_rollback(c));
    sqlite3_close(c);
}

/* Opens a connection with the pragmas every connection needs, and its kept ROLLBACK. */
static int open_conn(const char *path, int flags, sqlite3 **out, st_error *err)
{
    int rc = sqlite3_open_v2(path, out, flags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        st__fail(err, rc, path, *out ? sqlite3_errmsg(*out) : sqlite3_errstr(rc));
        sqlite3_close(*out);
        *out = NULL;
        return -1;
    }
    sqlite3_busy_timeout(*out, BUSY_TIMEOUT_MS);
    sqlite3_stmt *rollback;
    if (st__exec(*out, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;", err, path) != 0 ||
        (sqlite3_prepare_v3(*out, rollback_sql, -1, SQLITE_PREPARE_PERSISTENT, &rollback, NULL) != SQLITE_OK &&
         st__sqlite_fail(*out, err, path) != 0)) {
        close_conn(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

int st_open(const char *dir, st_db **out, st_error *err)
{
    *out = NULL;
    if (mkdir(dir, 0750) != 0 && errno != EEXIST)
        return st__fail(err, -1, dir, strerror(errno));
    st_db *db = calloc(1, sizeof *db);
    if (!db)
        return st__fail(err, SQLITE_NOMEM, dir, "out of memory");
    pthread_mutex_init(&db->write_mu, NULL);
    pthread_mutex_init(&db->pool_mu, NULL);
    pthread_cond_init(&db->pool_cv, NULL);
    pthread_mutex_init(&db->reg_mu, NULL);
    pthread_mutex_init(&db->idx_mu, NULL);
    pthread_cond_init(&db->idx_cv, NULL);
    pthread_cond_init(&db->room_cv, NULL);
    if (snprintf(db->path, sizeof db->path, "%s/ragd.db", dir) >= (int)sizeof db->path) {
        st_close(db);
        return st__fail(err, -1, dir, "path too long");
    }
    if (open_conn(db->path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &db->conn, err) != 0) {
        st_close(db);
        return -1;
    }
    char mode[16] = "";
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db->conn, "PRAGMA journal_mode=WAL", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            snprintf(mode, sizeof mode, "%s", (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    if (strcmp(mode, "wal") != 0) {
        st__fail(err, -1, db->path, "could not switch to WAL mode (is the data dir on a network filesystem?)");
        st_close(db);
        return -1;
    }
    if (migrate(db, err) != 0 || st__load_collections(db, err) != 0 || st__indexer_start(db, err) != 0) {
        st_close(db);
        return -1;
    }
    *out = db;
    return 0;
}

void st_close(st_db *db)
{
    if (!db)
        return;
    st__indexer_stop(db);
    st__free_collections(db);
    for (int i = 0; i < db->n_idle; i++)
        close_conn(db->readers[i]);
    close_conn(db->conn);
    pthread_mutex_destroy(&db->write_mu);
    pthread_mutex_destroy(&db->pool_mu);
    pthread_cond_destroy(&db->pool_cv);
    pthread_mutex_destroy(&db->reg_mu);
    pthread_mutex_destroy(&db->idx_mu);
    pthread_cond_destroy(&db->idx_cv);
    pthread_cond_destroy(&db->room_cv);
    free(db);
}

sqlite3 *st__reader(st_db *db, st_error *err)
{
    pthread_mutex_lock(&db->pool_mu);
    while (db->n_idle == 0 && db->n_open == ST_READERS)
        pthread_cond_wait(&db->pool_cv, &db->pool_mu);
    if (db->n_idle > 0) {
        sqlite3 *c = db->readers[--db->n_idle];
        pthread_mutex_unlock(&db->pool_mu);
        return c;
    }
    db->n_open++; /* reserve the slot, open outside the lock */
    pthread_mutex_unlock(&db->pool_mu);
    sqlite3 *c;
    if (open_conn(db->path, SQLITE_OPEN_READONLY, &c, err) != 0) {
        pthread_mutex_lock(&db->pool_mu);
        db->n_open--;
        pthread_cond_signal(&db->pool_cv);
        pthread_mutex_unlock(&db->pool_mu);
        return NULL;
    }
    return c;
}

void st__reader_done(st_db *db, sqlite3 *c)
{
    if (!sqlite3_get_autocommit(c)) {
        /* Its read transaction could not be ended (memory short): pooled, it would serve an
         * old snapshot to every later read. Closing it ends the transaction. */
        close_conn(c);
        pthread_mutex_lock(&db->pool_mu);
        db->n_open--;
        pthread_cond_signal(&db->pool_cv);
        pthread_mutex_unlock(&db->pool_mu);
        return;
    }
    pthread_mutex_lock(&db->pool_mu);
    db->readers[db->n_idle++] = c;
    pthread_cond_signal(&db->pool_cv);
    pthread_mutex_unlock(&db->pool_mu);
}

int st_schema_version(const st_db *db) { return db->version; }

const char *st_sqlite_version(void) { return sqlite3_libversion(); }
