/*
 * store.h — ragd's SQLite database: opening, pragmas and schema migrations.
 *
 * One file, DATA_DIR/ragd.db, in WAL mode with synchronous=FULL so that an acknowledged
 * write survives kill -9 and power loss. The schema version is PRAGMA user_version; each
 * migration runs in its own transaction, so a crash mid-migration leaves the previous
 * version intact.
 */
#ifndef RAGD_STORE_H
#define RAGD_STORE_H

typedef struct st_db st_db;

typedef struct {
    int code;       /* SQLite result code, or -1 for our own checks */
    char msg[256];
} st_error;

/* Creates `dir` if needed and opens (or creates) dir/ragd.db, then migrates it to the
 * current schema. A database written by a newer ragd is refused. */
int st_open(const char *dir, st_db **out, st_error *err);
void st_close(st_db *db); /* accepts NULL */

/* The schema version after migrations, and the SQLite library version in use. */
int st_schema_version(const st_db *db);
const char *st_sqlite_version(void);

#endif
