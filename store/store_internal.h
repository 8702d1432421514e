/*
 * store_internal.h — what the files of store/ share and nobody else sees: the database
 * handle, its reader pool and collection registry, and small SQLite helpers.
 *
 * Locks, always taken in this order and never the other way round:
 *   write_mu (the one writer connection and every transaction on it)
 *     -> a collection's rwlock (its in-memory index and metadata; writer-preferring, taken
 *        for one document at a time, so searches interleave with a batch being applied)
 *   reg_mu and pool_mu are leaves: held for a few instructions, never while taking another.
 */
#ifndef RAGD_STORE_INTERNAL_H
#define RAGD_STORE_INTERNAL_H

#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdint.h>

#include "collections.h"
#include "hnsw.h"
#include "store.h"

#define ST_READERS 8 /* reader connections kept open; more callers wait for one */

/* A collection in memory. The fields above `lock` are fixed at creation; the ones below
 * it are guarded by it (read lock to search, write lock to change). */
typedef struct {
    int64_t id;                 /* collections.id; its FTS5 table is fts_<id> */
    st_collection spec;         /* count is kept below, not here */
    atomic_int refs;            /* the registry holds one; each user holds one */
    atomic_int deleted;         /* set (under write_mu) when the collection is deleted while
                                 * others may still hold a reference */
    pthread_rwlock_t lock;
    hnsw *index;                /* the documents' vectors and graph, by label */
    const char *index_state;    /* "ready", "loaded" (from its records) or "rebuilt" */
    size_t n_labels, cap;       /* labels 0..n_labels-1 have slots below */
    unsigned char *live;        /* [cap] 1 when the label is a current document */
    json_t **meta;              /* [cap] parsed metadata, NULL when none */
    int64_t count;              /* live documents */
} st_coll;

/* ---- coll_index.c ---- */

/* A collection with an empty index. NULL when out of memory or (err filled) when the
 * parameters are out of the index's range. */
st_coll *st__coll_new(int64_t id, const st_collection *spec, st_error *err);
/* Puts a document at `label`: its vector into the index, its metadata beside it; removes
 * one. The caller holds the write lock. */
int st__coll_set(st_coll *c, size_t label, const float *vec, const char *meta, size_t meta_len, st_error *err);
int st__coll_unset(st_coll *c, size_t label, st_error *err);
/* (Re)loads the collection through `conn` (caller holds the write lock or is the only user). */
int st__coll_load(sqlite3 *conn, st_coll *c, st_error *err);
/* Writes the index's changes since the last clear inside the caller's transaction. */
int st__coll_write_index(sqlite3 *conn, st_coll *c, st_error *err);

/* The collection named `name` with a reference taken, or NULL (ST_ERR_NOT_FOUND in err). */
st_coll *st__coll_get(st_db *db, const char *name, st_error *err);
void st__coll_put(st_coll *c); /* drops a reference; the last one frees */

/* Reads columns id, text, metadata, vector (starting at first_col) into out; only what is
 * asked for. Returns 0, or -1 when out of memory. */
int st__read_record(sqlite3_stmt *st, int first_col, unsigned dim, int with_text, int with_meta, int with_vec,
                    st_record *out);

/* Ends the open transaction. ROLLBACK needs memory to be prepared: should that fail, the
 * transaction would stay open, and the writer connection with it, holding the database's
 * write lock for good; so this tries again (up to about a second) until it is gone. */
void st__rollback(sqlite3 *c);

/* json_loadb that tells a short memory from bad JSON (store.c; the same as
 * server/json_util.h's srv_json_loadb, which explains why): NULL with *oom = 1 when any
 * allocation failed during the parse. */
json_t *st__json_loadb(const char *buf, size_t len, size_t flags, json_error_t *e, int *oom);

/* Filters, evaluated on parsed metadata (filter.c). */
int st__filter_eval(const st_filter *f, const json_t *meta);

struct st_db {
    sqlite3 *conn;            /* the writer connection, guarded by write_mu */
    pthread_mutex_t write_mu;
    int version;
    char path[4096];

    pthread_mutex_t pool_mu;  /* reader connections: readers[0..n_idle) are free */
    pthread_cond_t pool_cv;
    sqlite3 *readers[ST_READERS];
    int n_open, n_idle;

    pthread_mutex_t reg_mu;   /* the collections, by name; each holds a reference */
    st_coll **colls;
    size_t n_colls, cap_colls;
};

int st__fail(st_error *err, int code, const char *what, const char *detail);
int st__exec(sqlite3 *c, const char *sql, st_error *err, const char *what);
/* Fills err from the connection's last error; returns -1. */
int st__sqlite_fail(sqlite3 *c, st_error *err, const char *what);

/* A reader connection from the pool (opened on first use). NULL after filling err. */
sqlite3 *st__reader(st_db *db, st_error *err);
void st__reader_done(st_db *db, sqlite3 *c);

/* Loads every collection's in-memory index (collections.c); called by st_open. */
int st__load_collections(st_db *db, st_error *err);
void st__free_collections(st_db *db);

#endif
