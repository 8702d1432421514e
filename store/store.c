#include "store.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "jobs.h"

#define BUSY_TIMEOUT_MS 5000

struct st_db {
    sqlite3 *conn; /* the writer connection */
    int version;
};

/* Migrations, in order: migrations[i] moves the schema from version i to i + 1.
 * Never edit a migration that has shipped; append a new one. */
static const char *const migrations[] = {
    /* 1: bookkeeping about the database itself */
    "CREATE TABLE meta ("
    "  key TEXT PRIMARY KEY,"
    "  value TEXT NOT NULL"
    ") STRICT;"
    "INSERT INTO meta(key, value) VALUES ('created_at', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));",
    /* 2: training jobs, their step metrics, uploaded datasets (store/jobs.c) */
    st_jobs_schema_sql,
};
#define N_MIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))

static int fail(st_error *err, int code, const char *what, const char *detail)
{
    err->code = code;
    snprintf(err->msg, sizeof err->msg, "%s: %s", what, detail);
    return -1;
}

static int exec(sqlite3 *c, const char *sql, st_error *err, const char *what)
{
    char *msg = NULL;
    int rc = sqlite3_exec(c, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        fail(err, rc, what, msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
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
        return fail(err, sqlite3_errcode(db->conn), "reading the schema version",
                    sqlite3_errmsg(db->conn));
    if (db->version > N_MIGRATIONS) {
        char detail[128];
        snprintf(detail, sizeof detail, "schema version %d is newer than this ragd knows (%d)",
                 db->version, N_MIGRATIONS);
        return fail(err, -1, "opening the database", detail);
    }
    while (db->version < N_MIGRATIONS) {
        char what[64], bump[64];
        snprintf(what, sizeof what, "migrating the schema to version %d", db->version + 1);
        snprintf(bump, sizeof bump, "PRAGMA user_version = %d;", db->version + 1);
        if (exec(db->conn, "BEGIN IMMEDIATE", err, what) != 0)
            return -1;
        if (exec(db->conn, migrations[db->version], err, what) != 0 ||
            exec(db->conn, bump, err, what) != 0 || exec(db->conn, "COMMIT", err, what) != 0) {
            sqlite3_exec(db->conn, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
        db->version++;
    }
    return 0;
}

int st_open(const char *dir, st_db **out, st_error *err)
{
    *out = NULL;
    if (mkdir(dir, 0750) != 0 && errno != EEXIST)
        return fail(err, -1, dir, strerror(errno));
    char path[4096];
    if (snprintf(path, sizeof path, "%s/ragd.db", dir) >= (int)sizeof path)
        return fail(err, -1, dir, "path too long");
    st_db *db = calloc(1, sizeof *db);
    if (!db)
        return fail(err, SQLITE_NOMEM, path, "out of memory");
    int rc = sqlite3_open_v2(path, &db->conn,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        fail(err, rc, path, db->conn ? sqlite3_errmsg(db->conn) : sqlite3_errstr(rc));
        st_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db->conn, BUSY_TIMEOUT_MS);
    char mode[16] = "";
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db->conn, "PRAGMA journal_mode=WAL", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            snprintf(mode, sizeof mode, "%s", (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    if (strcmp(mode, "wal") != 0) {
        fail(err, -1, path, "could not switch to WAL mode (is the data dir on a network filesystem?)");
        st_close(db);
        return -1;
    }
    if (exec(db->conn, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;", err, path) != 0 ||
        migrate(db, err) != 0) {
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
    sqlite3_close(db->conn);
    free(db);
}

int st_schema_version(const st_db *db) { return db->version; }

const char *st_sqlite_version(void) { return sqlite3_libversion(); }
