/* indexer.c — the indexer thread: moves documents from their collection's tail into its HNSW
 * graph, one insert at a time (so a writer that must change the graph waits for one insert
 * at most), and commits the changed node records every ST_FLUSH_EVERY inserts and when a
 * tail runs empty. Until their records commit, indexed documents have none on disk and load
 * into the tail at the next start-up: a kill -9 at any point costs indexing work, never a
 * document. One thread serves every collection of the database.
 *
 * It also keeps each collection's pace (vectors per second while it is busy on it), from
 * which an upsert refused for a full tail learns how long to wait (st_pending_retry_after). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "store_internal.h"

#define ST_FLUSH_EVERY 2048 /* inserts between commits of the node records: fewer commits
                            * rewrite each busy neighbour's record fewer times */
#define RETRY_S 1          /* the pause after a failure (out of memory, a commit that failed) */
#define INDEXER_NICE 10    /* acknowledging writes and answering searches come first */
#define RATE_WINDOW_S 0.25 /* busy indexing measured per window into a collection's pace */
#define RATE_WEIGHT 0.5    /* of the newest window in the moving average */
#define RETRY_AFTER_MAX_S 60

/* Commits the graph's uncommitted records; on failure the collection reloads from the
 * database, and what was indexed since the last commit is back in the tail. Returns 0 or -1. */
static int flush(st_db *db, st_coll *c)
{
    st__write_lock(db);
    pthread_mutex_lock(&c->index_mu);
    int rc = 0;
    if (!atomic_load(&c->deleted) && c->index && hnsw_dirty_count(c->index)) {
        st_error err;
        rc = st__begin_write(db, &err, "indexing");
        if (rc == 0)
            rc = st__finish_write(db, c, 0, 1, &err);
    }
    pthread_mutex_unlock(&c->index_mu);
    pthread_mutex_unlock(&db->write_mu);
    return rc;
}

/* Empties the tail of c (or stops early when asked). Returns 0, or -1 after a failure. */
static int index_collection(st_db *db, st_coll *c)
{
    /* A pace window opens here, so the time between passes (idle, or on other collections)
     * never counts; the commits of node records inside it do. */
    clock_gettime(CLOCK_MONOTONIC, &c->rate_from);
    c->rate_n = 0;
    for (;;) {
        int r = 1, n = 0;
        st_error err;
        while (r == 1 && n < ST_FLUSH_EVERY && !atomic_load(&db->idx_stop) && !atomic_load(&c->deleted)) {
            pthread_mutex_lock(&c->index_mu);
            r = st__coll_index_one(c, &err);
            pthread_mutex_unlock(&c->index_mu);
            n += r == 1;
            if (r == 1)
                st__indexer_drained(db, c);
        }
        if (n && flush(db, c) != 0)
            return -1;
        if (r != 1 || atomic_load(&db->idx_stop) || atomic_load(&c->deleted))
            return r < 0 ? -1 : 0;
    }
}

/* One pass over every collection. Returns 0, or -1 when some collection failed. */
static int index_all(st_db *db)
{
    pthread_mutex_lock(&db->reg_mu);
    size_t n = db->n_colls;
    st_coll **held = malloc((n ? n : 1) * sizeof *held);
    for (size_t i = 0; held && i < n; i++) {
        held[i] = db->colls[i];
        atomic_fetch_add(&held[i]->refs, 1);
    }
    pthread_mutex_unlock(&db->reg_mu);
    if (!held)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        if (!atomic_load(&db->idx_stop) && index_collection(db, held[i]) != 0)
            rc = -1;
        st__coll_put(held[i]);
    }
    free(held);
    return rc;
}

static void *indexer_main(void *arg)
{
    st_db *db = arg;
    /* Linux applies a thread's nice value to that thread alone. Advice only: failure
     * changes nothing. */
    (void)setpriority(PRIO_PROCESS, (id_t)gettid(), INDEXER_NICE);
    pthread_setname_np(pthread_self(), "ragd-indexer");
    pthread_mutex_lock(&db->idx_mu);
    while (!atomic_load(&db->idx_stop)) {
        if (!db->idx_work) {
            db->idx_waiting = 1;
            pthread_cond_wait(&db->idx_cv, &db->idx_mu);
            db->idx_waiting = 0;
            continue;
        }
        db->idx_work = 0;
        pthread_mutex_unlock(&db->idx_mu);
        int rc = index_all(db);
        pthread_mutex_lock(&db->idx_mu);
        if (rc != 0 && !atomic_load(&db->idx_stop)) { /* try again later, not in a tight loop */
            db->idx_work = 1;
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += RETRY_S;
            while (!atomic_load(&db->idx_stop) &&
                   pthread_cond_timedwait(&db->idx_cv, &db->idx_mu, &until) != ETIMEDOUT)
                ;
        }
    }
    pthread_mutex_unlock(&db->idx_mu);
    return NULL;
}

int st__indexer_start(st_db *db, st_error *err)
{
    db->idx_work = 1; /* the tails left by the last run */
    if (pthread_create(&db->indexer, NULL, indexer_main, db) != 0)
        return st__fail(err, -1, "starting the indexer thread", "pthread_create failed");
    db->idx_started = 1;
    return 0;
}

void st__indexer_stop(st_db *db)
{
    if (!db->idx_started)
        return;
    pthread_mutex_lock(&db->idx_mu);
    atomic_store(&db->idx_stop, 1);
    pthread_cond_signal(&db->idx_cv);
    pthread_mutex_unlock(&db->idx_mu);
    pthread_join(db->indexer, NULL);
    db->idx_started = 0;
}

void st__indexer_wake(st_db *db)
{
    pthread_mutex_lock(&db->idx_mu);
    db->idx_work = 1;
    pthread_cond_signal(&db->idx_cv);
    pthread_mutex_unlock(&db->idx_mu);
}

int st_indexer_idle(st_db *db)
{
    pthread_mutex_lock(&db->idx_mu);
    int idle = !db->idx_started || (db->idx_waiting && !db->idx_work);
    pthread_mutex_unlock(&db->idx_mu);
    return idle;
}

void st__indexer_drained(st_db *db, st_coll *c)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double span = (double)(now.tv_sec - c->rate_from.tv_sec) + (double)(now.tv_nsec - c->rate_from.tv_nsec) / 1e9;
    c->rate_n++;
    pthread_mutex_lock(&db->idx_mu);
    if (span >= RATE_WINDOW_S) {
        double pace = (double)c->rate_n / span;
        c->index_rate = c->index_rate > 0 ? (1 - RATE_WEIGHT) * c->index_rate + RATE_WEIGHT * pace : pace;
        c->rate_from = now;
        c->rate_n = 0;
    }
    db->drained++;
    if (db->room_waiters)
        pthread_cond_broadcast(&db->room_cv);
    pthread_mutex_unlock(&db->idx_mu);
}

unsigned st_pending_retry_after(st_db *db, const char *collection, size_t n)
{
    st_error err;
    st_coll *c = st__coll_get(db, collection, &err);
    if (!c)
        return 1;
    st__coll_rdlock(c);
    size_t pending = c->n_tail;
    pthread_rwlock_unlock(&c->lock);
    pthread_mutex_lock(&db->idx_mu);
    double rate = c->index_rate;
    pthread_mutex_unlock(&db->idx_mu);
    st__coll_put(c);
    /* What must drain before the batch fits; an empty tail takes any batch. */
    size_t excess = pending + n > db->max_pending ? pending + n - db->max_pending : 0;
    if (excess > pending)
        excess = pending;
    if (rate <= 0 || excess == 0)
        return 1;
    double s = ceil((double)excess / rate);
    return s < 1 ? 1 : s > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : (unsigned)s;
}
