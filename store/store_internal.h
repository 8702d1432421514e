/*
 * store_internal.h — what the files of store/ share and nobody else sees: the database
 * handle, its reader pool, collection registry and indexer thread, and small SQLite helpers.
 *
 * Locks, always taken in this order and never the other way round:
 *   write_mu (the one writer connection and every transaction on it)
 *     -> a collection's index_mu (whoever changes its HNSW graph, from the change until the
 *        changed records are committed: the indexer inserting, a writer deleting)
 *       -> a collection's rwlock (its in-memory index, tail and metadata; writer-preferring,
 *          taken for one document at a time, so searches interleave with writes)
 *   reg_mu, pool_mu and idx_mu are leaves: held for a few instructions, never while taking
 *   another.
 *
 * Indexing is asynchronous. A batch is acknowledged once its rows and FTS5 entries commit;
 * its vectors then wait in the collection's tail (searched exactly, beside the graph) until
 * the indexer thread inserts them into the graph and commits their node records. A label is
 * in exactly one of the two places, moved under the write lock, so a search sees every
 * committed document once. On disk, a row without a node record is in the tail.
 */
#ifndef RAGD_STORE_INTERNAL_H
#define RAGD_STORE_INTERNAL_H

#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

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
    pthread_mutex_t index_mu;   /* see the lock order above */
    atomic_int lock_wanted;     /* threads waiting in st__coll_rdlock/wrlock */
    pthread_rwlock_t lock;
    hnsw *index;                /* the indexed documents' vectors and graph, by label */
    const char *index_state;    /* "ready", "loaded" (from its records) or "rebuilt" */
    size_t n_labels, cap;       /* labels 0..n_labels-1 have slots below */
    unsigned char *live;        /* [cap] 1 when the label is a current document */
    json_t **meta;              /* [cap] parsed metadata, NULL when none */
    uint32_t *tail_at;          /* [cap] the label's place in the tail, or ST_NOT_PENDING */
    int64_t count;              /* live documents (indexed + pending) */
    /* The tail: committed documents not yet in the graph, in no particular order. */
    size_t n_tail, tail_cap;
    int64_t *tail_labels;       /* [tail_cap] */
    float *tail_prep;           /* [tail_cap, dim] the vectors, dist_prepare'd: what search scans
                                 * and the index inserts (as hnsw_insert would store them) */
    /* The indexer's pace on this collection (st_pending_retry_after): a moving average of
     * vectors per second over windows of busy indexing, 0 until the first window closes;
     * under db->idx_mu. The open window (since when, how many) is the indexer thread's own. */
    double index_rate;
    struct timespec rate_from;
    size_t rate_n;
} st_coll;

/* c->lock for a search or a write. The indexer relocks it after every insert, and a thread
 * that unlocks and relocks at once wins over one already asleep on the lock: the indexer
 * gives way while lock_wanted counts a waiter (st__coll_index_one). */
static inline void st__coll_rdlock(st_coll *c)
{
    atomic_fetch_add(&c->lock_wanted, 1);
    pthread_rwlock_rdlock(&c->lock);
    atomic_fetch_sub(&c->lock_wanted, 1);
}

static inline void st__coll_wrlock(st_coll *c)
{
    atomic_fetch_add(&c->lock_wanted, 1);
    pthread_rwlock_wrlock(&c->lock);
    atomic_fetch_sub(&c->lock_wanted, 1);
}

#define ST_NOT_PENDING UINT32_MAX

/* ---- coll_index.c ---- */

/* A collection with an empty index. NULL when out of memory or (err filled) when the
 * parameters are out of the index's range. */
st_coll *st__coll_new(int64_t id, const st_collection *spec, st_error *err);
/* Room for labels up to max_label and for `extra` more documents in the tail, so that
 * st__coll_pend cannot fail. Write lock held. Returns 0, or -1 when out of memory. */
int st__coll_reserve(st_coll *c, size_t max_label, size_t extra);
/* Makes `label` a current document with metadata `meta` (parsed; ownership passes) and
 * vector vec (finite; non-zero under cosine) waiting in the tail, replacing what the label
 * had there. The label must not be in the index (1 from st__coll_indexed: delete it first).
 * Write lock held, room reserved. */
void st__coll_pend(st_coll *c, size_t label, const float *vec, json_t *meta);
/* 1 when `label` is in the index (as opposed to the tail or nowhere). Any lock held. */
int st__coll_indexed(const st_coll *c, size_t label);
/* Indexes the newest tail document (index_mu held; takes the write lock for the insert).
 * Returns 1 when one was indexed, 0 when the tail is empty, -1 (err filled) when out of
 * memory: the document stays in the tail. */
int st__coll_index_one(st_coll *c, st_error *err);
/* Removes a document, from the tail or the index (the latter needs index_mu). Write lock held. */
int st__coll_unset(st_coll *c, size_t label, st_error *err);
/* (Re)loads the collection through `conn`: the graph from its records, every row without
 * one into the tail. The caller holds index_mu and the write lock, or is the only user. */
int st__coll_load(sqlite3 *conn, st_coll *c, st_error *err);
/* A write whose rollback could not reload the collection (memory short) left it without its
 * graph; the next write reloads it first, with this (write lock held, no transaction open).
 * 0, or -1 with ST_ERR_NOMEM when it still cannot be loaded. */
int st__coll_reload_lost(sqlite3 *conn, st_coll *c, st_error *err);
/* Writes the index's changes since the last clear inside the caller's transaction
 * (index_mu held). */
int st__coll_write_index(sqlite3 *conn, st_coll *c, st_error *err);
/* Ends a write transaction that may have changed the index (`touched`, index_mu held):
 * the changed records when rc == 0, COMMIT, clearing the index's changes; on any failure
 * ROLLBACK and a reload, so nothing of it stays visible. Returns rc or the failure. */
int st__finish_write(st_db *db, st_coll *c, int rc, int touched, st_error *err);

/* ---- indexer.c ---- */

/* The indexer thread: inserts tail documents into their collection's graph and commits their
 * node records every ST_FLUSH_EVERY inserts and when the tail is empty. */
int st__indexer_start(st_db *db, st_error *err);
void st__indexer_stop(st_db *db); /* after its current insert; commits what it indexed */
void st__indexer_wake(st_db *db);
/* Called by the indexer after taking a document off c's tail: counts it in c's pace and
 * wakes upserts waiting for room. */
void st__indexer_drained(st_db *db, st_coll *c);

/* The collection named `name` with a reference taken, or NULL (ST_ERR_NOT_FOUND in err). */
st_coll *st__coll_get(st_db *db, const char *name, st_error *err);
void st__coll_put(st_coll *c); /* drops a reference; the last one frees */

/* Reads columns id, text, metadata, vector (starting at first_col) into out; only what is
 * asked for. Returns 0, or -1 when out of memory. */
int st__read_record(sqlite3_stmt *st, int first_col, unsigned dim, int with_text, int with_meta, int with_vec,
                    st_record *out);

/* Ends the open transaction. A ROLLBACK prepared each time needs memory: should that fail,
 * the transaction would stay open, and the writer connection with it, holding the database's
 * write lock for good and reading its own uncommitted rows. So every connection store.c
 * opens keeps one prepared (stepping it allocates nothing), and this tries again (up to
 * about a second) until the transaction is gone. */
void st__rollback(sqlite3 *c);
/* Takes the write lock (db->write_mu) for a write on db->conn. When memory stayed short
 * through a failed write's st__rollback, its transaction is still open: it is rolled back
 * here, before the next write begins. Unlock with pthread_mutex_unlock(&db->write_mu). */
void st__write_lock(st_db *db);
/* After a statement of a write failed: when SQLite has already ended the transaction itself
 * (it rolls back on its own after SQLITE_NOMEM, SQLITE_IOERR or SQLITE_FULL inside a
 * statement; sqlite3_get_autocommit is the documented way to tell), the connection's FTS5
 * tables may still hold the aborted statements' pending terms, which the next transaction
 * would write (entries for rowids that do not exist: SQLITE_CORRUPT on a later delete, and
 * a later batch's FTS5 writes half-failing). The connection is marked stale; the next
 * st__write_lock replaces it with a fresh one. */
void st__write_failed(st_db *db);
/* BEGIN IMMEDIATE on db->conn, or ST_ERR_NOMEM while it is stale and could not be reopened. */
int st__begin_write(st_db *db, st_error *err, const char *what);


/* Filters, evaluated on parsed metadata (filter.c). */
int st__filter_eval(const st_filter *f, const json_t *meta);

struct st_db {
    sqlite3 *conn;            /* the writer connection, guarded by write_mu */
    int conn_stale;           /* st__write_failed: reopen it before the next write */
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

    pthread_mutex_t idx_mu;   /* the indexer thread's wake-ups, and upserts waiting for room */
    pthread_cond_t idx_cv;
    pthread_cond_t room_cv;   /* broadcast when the indexer has taken documents off a tail */
    uint64_t drained;         /* how many times it has (under idx_mu) */
    int room_waiters;         /* upserts waiting on room_cv (under idx_mu) */
    size_t max_pending;       /* st_set_pending_limit; 0 = no bound */
    unsigned pending_wait_ms;
    int idx_work, idx_started;
    int idx_waiting;          /* the indexer is in its wait for work (under idx_mu) */
    atomic_int idx_stop;
    pthread_t indexer;
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
