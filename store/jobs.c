/* jobs.c — training jobs, step metrics and datasets in SQLite (see jobs.h). */
#include "jobs.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define BUSY_TIMEOUT_MS 5000
#define NOW "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"

const char st_jobs_schema_sql[] =
    /* Training jobs. request is the accepted request (JSON) so a queued job can run after
     * a restart; at most one queued or running job per adapter name. */
    "CREATE TABLE jobs ("
    "  id TEXT PRIMARY KEY,"
    "  type TEXT NOT NULL CHECK (type IN ('sft', 'dpo')),"
    "  status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),"
    "  adapter_name TEXT NOT NULL,"
    "  request TEXT NOT NULL,"
    "  step INTEGER NOT NULL DEFAULT 0,"
    "  total_steps INTEGER NOT NULL DEFAULT 0,"
    "  epoch REAL NOT NULL DEFAULT 0,"
    "  error TEXT,"
    "  created_at TEXT NOT NULL DEFAULT (" NOW "),"
    "  started_at TEXT,"
    "  finished_at TEXT"
    ") STRICT;"
    "CREATE UNIQUE INDEX jobs_active_adapter ON jobs(adapter_name) WHERE status IN ('queued', 'running');"
    "CREATE INDEX jobs_created ON jobs(created_at);"
    "CREATE TABLE job_metrics ("
    "  job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,"
    "  step INTEGER NOT NULL,"
    "  metrics TEXT NOT NULL,"
    "  PRIMARY KEY (job_id, step)"
    ") STRICT;"
    "CREATE TABLE datasets ("
    "  id TEXT PRIMARY KEY,"
    "  rows INTEGER NOT NULL,"
    "  data TEXT NOT NULL,"
    "  created_at TEXT NOT NULL DEFAULT (" NOW ")"
    ") STRICT;";

static const char *const status_names[ST_JOB_N_STATUS] = {"queued", "running", "succeeded", "failed", "cancelled"};

/* Both connections are in serialized mode, every write is a single autocommit statement,
 * and `mu` gives each statement's whole life to one thread, so threads sharing a connection
 * never interleave inside one transaction. State changes go through `conn`
 * (synchronous=FULL: durable on power loss); per-step progress through `fast`
 * (synchronous=NORMAL: in WAL mode still durable when the process is killed, without an
 * fsync per optimizer step). */
struct st_jobs {
    sqlite3 *conn, *fast;
    /* Held from a statement's prepare to its finalize (the public functions take it around
     * their *_locked bodies). SQLite's own mutex covers one call, not a statement's life: a
     * write while another thread's SELECT still held its read snapshot fails with
     * SQLITE_BUSY_SNAPSHOT at once (no busy wait) when the file changed since, e.g. by an
     * upsert; a job's final state was lost that way and the job stayed 'running'. */
    pthread_mutex_t mu;
};

const char *st_job_status_name(st_job_status s) { return (unsigned)s < ST_JOB_N_STATUS ? status_names[s] : "?"; }

static st_job_status status_from(const char *s)
{
    for (int i = 0; i < ST_JOB_N_STATUS; i++)
        if (s && strcmp(s, status_names[i]) == 0)
            return (st_job_status)i;
    return ST_JOB_FAILED;
}

static int fail(st_error *err, int code, const char *what, const char *detail)
{
    err->code = code;
    snprintf(err->msg, sizeof err->msg, "%s: %s", what, detail);
    return -1;
}

static int db_fail(st_jobs *j, st_error *err, const char *what)
{
    return fail(err, sqlite3_extended_errcode(j->conn), what, sqlite3_errmsg(j->conn));
}

int st_jobs_open(const char *dir, st_jobs **out, st_error *err)
{
    *out = NULL;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/ragd.db", dir) >= (int)sizeof path)
        return fail(err, -1, dir, "path too long");
    st_jobs *j = calloc(1, sizeof *j);
    if (!j)
        return fail(err, SQLITE_NOMEM, path, "out of memory");
    pthread_mutex_init(&j->mu, NULL);
    for (int k = 0; k < 2; k++) {
        sqlite3 **c = k ? &j->fast : &j->conn;
        int rc = sqlite3_open_v2(path, c, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL);
        if (rc != SQLITE_OK) {
            fail(err, rc, path, *c ? sqlite3_errmsg(*c) : sqlite3_errstr(rc));
            st_jobs_close(j);
            return -1;
        }
        sqlite3_busy_timeout(*c, BUSY_TIMEOUT_MS);
        if (sqlite3_exec(*c, k ? "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
                               : "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;",
                         NULL, NULL, NULL) != SQLITE_OK) {
            fail(err, sqlite3_extended_errcode(*c), path, sqlite3_errmsg(*c));
            st_jobs_close(j);
            return -1;
        }
    }
    *out = j;
    return 0;
}

void st_jobs_close(st_jobs *j)
{
    if (!j)
        return;
    sqlite3_close(j->conn);
    sqlite3_close(j->fast);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

static void new_id(const char *prefix, char out[ST_JOB_ID_MAX])
{
    unsigned char r[10];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) { /* never in practice; still unique enough */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        for (size_t i = 0; i < sizeof r; i++)
            r[i] = (unsigned char)((uint64_t)ts.tv_nsec >> (i * 3));
    }
    int n = snprintf(out, ST_JOB_ID_MAX, "%s-", prefix);
    for (size_t i = 0; i < sizeof r; i++)
        n += snprintf(out + n, (size_t)(ST_JOB_ID_MAX - n), "%02x", r[i]);
}

static int prepare(st_jobs *j, const char *sql, sqlite3_stmt **st, st_error *err)
{
    if (sqlite3_prepare_v2(j->conn, sql, -1, st, NULL) != SQLITE_OK)
        return db_fail(j, err, "preparing a jobs statement");
    return 0;
}

static int job_create_locked(st_jobs *j, const char *type, const char *adapter_name, const char *request_json,
                             long total_steps, char id_out[ST_JOB_ID_MAX], st_error *err)
{
    sqlite3_stmt *st;
    if (prepare(j, "INSERT INTO jobs(id, type, status, adapter_name, request, total_steps) VALUES (?, ?, 'queued', ?, ?, ?)",
                &st, err))
        return -1;
    new_id("job", id_out);
    sqlite3_bind_text(st, 1, id_out, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, type, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, adapter_name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, request_json, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, total_steps);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc == SQLITE_CONSTRAINT)
        return ST_JOB_CONFLICT;
    return rc == SQLITE_DONE ? 0 : db_fail(j, err, "creating a job");
}

int st_job_create(st_jobs *j, const char *type, const char *adapter_name, const char *request_json,
                  long total_steps, char id_out[ST_JOB_ID_MAX], st_error *err)
{
    pthread_mutex_lock(&j->mu);
    int rc = job_create_locked(j, type, adapter_name, request_json, total_steps, id_out, err);
    pthread_mutex_unlock(&j->mu);
    return rc;
}

static void copy_col(sqlite3_stmt *st, int col, char *dst, size_t cap)
{
    const unsigned char *s = sqlite3_column_text(st, col);
    snprintf(dst, cap, "%s", s ? (const char *)s : "");
}

static char *dup_col(sqlite3_stmt *st, int col)
{
    const unsigned char *s = sqlite3_column_text(st, col);
    return s ? strdup((const char *)s) : NULL;
}

#define JOB_COLS                                                                                            \
    "id, type, status, adapter_name, step, total_steps, epoch, error, created_at, started_at, finished_at, " \
    "(SELECT metrics FROM job_metrics m WHERE m.job_id = jobs.id ORDER BY step DESC LIMIT 1)"

static void read_job(sqlite3_stmt *st, st_job *out)
{
    memset(out, 0, sizeof *out);
    copy_col(st, 0, out->id, sizeof out->id);
    copy_col(st, 1, out->type, sizeof out->type);
    out->status = status_from((const char *)sqlite3_column_text(st, 2));
    copy_col(st, 3, out->adapter_name, sizeof out->adapter_name);
    out->step = (long)sqlite3_column_int64(st, 4);
    out->total_steps = (long)sqlite3_column_int64(st, 5);
    out->epoch = sqlite3_column_double(st, 6);
    copy_col(st, 7, out->error, sizeof out->error);
    copy_col(st, 8, out->created_at, sizeof out->created_at);
    copy_col(st, 9, out->started_at, sizeof out->started_at);
    copy_col(st, 10, out->finished_at, sizeof out->finished_at);
    out->metrics = dup_col(st, 11);
}

static int job_get_locked(st_jobs *j, const char *id, st_job *out, st_error *err)
{
    sqlite3_stmt *st;
    memset(out, 0, sizeof *out);
    if (prepare(j, "SELECT " JOB_COLS ", request FROM jobs WHERE id = ?", &st, err))
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        read_job(st, out);
        out->request = dup_col(st, 12);
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_DONE)
        return ST_JOB_NOT_FOUND;
    return rc == SQLITE_ROW ? 0 : db_fail(j, err, "reading a job");
}

int st_job_get(st_jobs *j, const char *id, st_job *out, st_error *err)
{
    pthread_mutex_lock(&j->mu);
    int rc = job_get_locked(j, id, out, err);
    pthread_mutex_unlock(&j->mu);
    return rc;
}

void st_job_clear(st_job *job)
{
    free(job->request);
    free(job->metrics);
    job->request = job->metrics = NULL;
}

static int job_list_locked(st_jobs *j, size_t max, st_job **out, size_t *n, st_error *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st;
    if (prepare(j, "SELECT " JOB_COLS " FROM jobs ORDER BY created_at DESC, id LIMIT ?", &st, err))
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)max);
    st_job *jobs = calloc(max ? max : 1, sizeof *jobs);
    int rc = jobs ? SQLITE_ROW : SQLITE_NOMEM;
    while (jobs && *n < max && (rc = sqlite3_step(st)) == SQLITE_ROW)
        read_job(st, &jobs[(*n)++]);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        st_job_list_free(jobs, *n);
        *n = 0;
        return db_fail(j, err, "listing jobs");
    }
    *out = jobs;
    return 0;
}

int st_job_list(st_jobs *j, size_t max, st_job **out, size_t *n, st_error *err)
{
    pthread_mutex_lock(&j->mu);
    int rc = job_list_locked(j, max, out, n, err);
    pthread_mutex_unlock(&j->mu);
    return rc;
}

void st_job_list_free(st_job *jobs, size_t n)
{
    for (size_t i = 0; jobs && i < n; i++)
        st_job_clear(&jobs[i]);
    free(jobs);
}

static int job_queued_locked(st_jobs *j, char (**ids)[ST_JOB_ID_MAX], size_t *n, st_error *err)
{
    *ids = NULL;
    *n = 0;
    sqlite3_stmt *st;
    if (prepare(j, "SELECT id FROM jobs WHERE status = 'queued' ORDER BY created_at, id", &st, err))
        return -1;
    int rc;
    size_t cap = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            char(*grown)[ST_JOB_ID_MAX] = realloc(*ids, cap * sizeof **ids);
            if (!grown) {
                rc = SQLITE_NOMEM;
                break;
            }
            *ids = grown;
        }
        copy_col(st, 0, (*ids)[(*n)++], ST_JOB_ID_MAX);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        free(*ids);
        *ids = NULL;
        *n = 0;
        return fail(err, rc, "listing queued jobs", sqlite3_errstr(rc));
    }
    return 0;
}

int st_job_queued(st_jobs *j, char (**ids)[ST_JOB_ID_MAX], size_t *n, st_error *err)
{
    pthread_mutex_lock(&j->mu);
    int rc = job_queued_locked(j, ids, n, err);
    pthread_mutex_unlock(&j->mu);
    return rc;
}

static int job_transition_locked(st_jobs *j, const char *id, unsigned from, st_job_status to, const char *error,
                                 st_error *err)
{
    char sql[512], in[128] = "";
    size_t n = 0;
    for (int s = 0; s < ST_JOB_N_STATUS; s++)
        if (from & ST_JOB_BIT(s))
            n += (size_t)snprintf(in + n, sizeof in - n, "%s'%s'", n ? ", " : "", status_names[s]);
    snprintf(sql, sizeof sql,
             "UPDATE jobs SET status = ?, error = coalesce(?, error)%s%s WHERE id = ? AND status IN (%s) RETURNING id",
             to == ST_JOB_RUNNING ? ", started_at = " NOW : "",
             to >= ST_JOB_SUCCEEDED ? ", finished_at = " NOW : "", in);
    sqlite3_stmt *st;
    if (prepare(j, sql, &st, err))
        return -1;
    sqlite3_bind_text(st, 1, status_names[to], -1, SQLITE_STATIC);
    if (error)
        sqlite3_bind_text(st, 2, error, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 2);
    sqlite3_bind_text(st, 3, id, -1, SQLITE_STATIC);
    /* RETURNING says whether this statement changed the row; sqlite3_changes() could be
     * another thread's on the shared connection. */
    int rc = sqlite3_step(st), changed = rc == SQLITE_ROW;
    while (rc == SQLITE_ROW)
        rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return db_fail(j, err, "updating a job");
    return changed ? 0 : ST_JOB_STALE;
}

int st_job_transition(st_jobs *j, const char *id, unsigned from, st_job_status to, const char *error, st_error *err)
{
    pthread_mutex_lock(&j->mu);
    int rc = job_transition_locked(j, id, from, to, error, err);
    pthread_mutex_unlock(&j->mu);
    return rc;
}

static int job_progress_locked(st_jobs *j, const char *id, long step, long total_steps, double epoch,
                               const char *metrics_json, st_error *err)
{
    /* The metrics row and the step in one transaction: as two autocommit statements, a step
     * whose UPDATE failed (out of memory) left its metrics row behind. Every statement,
     * ROLLBACK included, is prepared before BEGIN: stepping a prepared ROLLBACK allocates
     * nothing, so a failure never leaves the transaction open. */
    static const char *const sql[] = {
        "BEGIN IMMEDIATE",
        "INSERT OR REPLACE INTO job_metrics(job_id, step, metrics) VALUES (?, ?, ?)",
        "UPDATE jobs SET step = ?, total_steps = ?, epoch = ? WHERE id = ?",
        "COMMIT",
        "ROLLBACK",
    };
    enum { BEGIN, METRICS, STEP, COMMIT, ROLLBACK, N_STMTS };
    sqlite3_stmt *st[N_STMTS] = {0};
    int ok = 1;
    for (int i = 0; ok && i < N_STMTS; i++)
        ok = sqlite3_prepare_v2(j->fast, sql[i], -1, &st[i], NULL) == SQLITE_OK;
    if (ok) {
        sqlite3_bind_text(st[METRICS], 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st[METRICS], 2, step);
        sqlite3_bind_text(st[METRICS], 3, metrics_json, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st[STEP], 1, step);
        sqlite3_bind_int64(st[STEP], 2, total_steps);
        sqlite3_bind_double(st[STEP], 3, epoch);
        sqlite3_bind_text(st[STEP], 4, id, -1, SQLITE_STATIC);
        for (int i = BEGIN; ok && i <= COMMIT; i++)
            ok = sqlite3_step(st[i]) == SQLITE_DONE;
    }
    if (!ok)
        fail(err, sqlite3_extended_errcode(j->fast), "recording a step", sqlite3_errmsg(j->fast));
    /* A failed COMMIT either left the transaction open or SQLite rolled it back itself
     * (sqlite3_get_autocommit tells which): either way nothing of it is committed. */
    for (int i = 0; st[ROLLBACK] && i < 100 && !sqlite3_get_autocommit(j->fast); i++) {
        if (sqlite3_step(st[ROLLBACK]) != SQLITE_DONE)
            sqlite3_sleep(10);
        sqlite3_reset(st[ROLLBACK]);
    }
    for (int i = 0; i < N_STMTS; i++)
        sqlite3_finalize(st[i]);
    return ok ? 0 : -1;
}

int st_job_progress(st_jobs *j, const char *id, long step, long total_steps, double epoch, const char *metrics_json,
                    st_error *err)
{
    pthread_mutex_lock(&j->mu);
    int rc = job_progress_locked(j, id, step, total_steps, epoch, metrics_json, err);
    pthread_mutex_unlock(&j->mu);
    return rc;
}

static int job_history_locked(st_jobs *j, const char *id, long after_step, size_t max, char ***rows, long **steps,
                              size_t *n, st_error *err)
{
    *rows = NULL;
    *steps = NULL;
    *n = 0;
    sqlite3_stmt *st;
    if (prepare(j, "SELECT step, metrics FROM job_metrics WHERE job_id = ? AND step > ? ORDER BY step LIMIT ?", &st,
                err))
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, after_step);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)max);
    char **r = calloc(max ? max : 1, sizeof *r);
    long *s = calloc(max ? max : 1, sizeof *s);
    int rc = r && s ? SQLITE_ROW : SQLITE_NOMEM;
    while (r && s && *n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        s[*n] = (long)sqlite3_column_int64(st, 0);
        r[(*n)++] = dup_col(st, 1);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        st_job_history_free(r, s, *n);
        *n = 0;
        return fail(err, rc, "reading job metrics", sqlite3_errstr(rc));
    }
    *rows = r;
    *steps = s;
    return 0;
}

int st_job_history(st_jobs *j, const char *id, long after_step, size_t max, char ***rows, long **steps, size_t *n,
                   st_error *err)
{
    pthread_mutex_lock(&j->mu);
    int rc = job_history_locked(j, id, after_step, max, rows, steps, n, err);
    pthread_mutex_unlock(&j->mu);
    return rc;
}

void st_job_history_free(char **rows, long *steps, size_t n)
{
    for (size_t i = 0; rows && i < n; i++)
        free(rows[i]);
    free(rows);
    free(steps);
}

static int jobs_recover_locked(st_jobs *j, const char *reason, size_t *n, st_error *err)
{
    *n = 0;
    sqlite3_stmt *st;
    if (prepare(j, "UPDATE jobs SET status = 'failed', error = ?, finished_at = " NOW " WHERE status = 'running' RETURNING id",
                &st, err))
        return -1;
    sqlite3_bind_text(st, 1, reason, -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        (*n)++;
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return db_fail(j, err, "recovering jobs");
    return 0;
}

int st_jobs_recover(st_jobs *j, const char *reason, size_t *n, st_error *err)
{
    pthread_mutex_lock(&j->mu);
    int rc = jobs_recover_locked(j, reason, n, err);
    pthread_mutex_unlock(&j->mu);
    return rc;
}

static int dataset_put_locked(st_jobs *j, const char *data, size_t len, size_t rows, char id_out[ST_JOB_ID_MAX],
                              st_error *err)
{
    sqlite3_stmt *st;
    if (prepare(j, "INSERT INTO datasets(id, rows, data) VALUES (?, ?, ?)", &st, err))
        return -1;
    new_id("ds", id_out);
    sqlite3_bind_text(st, 1, id_out, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)rows);
    sqlite3_bind_text(st, 3, data, (int)len, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : db_fail(j, err, "storing a dataset");
}

int st_dataset_put(st_jobs *j, const char *data, size_t len, size_t rows, char id_out[ST_JOB_ID_MAX], st_error *err)
{
    pthread_mutex_lock(&j->mu);
    int rc = dataset_put_locked(j, data, len, rows, id_out, err);
    pthread_mutex_unlock(&j->mu);
    return rc;
}

static int dataset_get_locked(st_jobs *j, const char *id, char **data, size_t *len, st_error *err)
{
    *data = NULL;
    *len = 0;
    sqlite3_stmt *st;
    if (prepare(j, "SELECT data FROM datasets WHERE id = ?", &st, err))
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *len = (size_t)sqlite3_column_bytes(st, 0);
        *data = malloc(*len + 1);
        if (*data) {
            memcpy(*data, sqlite3_column_text(st, 0), *len);
            (*data)[*len] = 0;
        }
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_DONE)
        return ST_JOB_NOT_FOUND;
    if (rc != SQLITE_ROW || !*data)
        return fail(err, rc, "reading a dataset", sqlite3_errstr(rc));
    return 0;
}

int st_dataset_get(st_jobs *j, const char *id, char **data, size_t *len, st_error *err)
{
    pthread_mutex_lock(&j->mu);
    int rc = dataset_get_locked(j, id, data, len, err);
    pthread_mutex_unlock(&j->mu);
    return rc;
}
