/*
 * jobs.h — training jobs, their per-step metrics and uploaded datasets, in ragd.db.
 *
 * A job moves queued → running → succeeded | failed | cancelled; only those transitions are
 * made (a status update names the states it may come from, and changes nothing otherwise),
 * so a cancel racing a finishing worker has exactly one winner. At most one queued or running
 * job may write a given adapter name (a partial unique index): a second is ST_JOB_CONFLICT.
 *
 * The handle owns one SQLite connection in serialized mode, so any thread may call any
 * function; every write is one short transaction (synchronous=FULL, WAL), so what a function
 * reported as written survives kill -9. Strings in and out are JSON text; store/ parses none
 * of it.
 */
#ifndef RAGD_JOBS_H
#define RAGD_JOBS_H

#include <stddef.h>

#include "store.h"

#define ST_JOB_ID_MAX 40
#define ST_JOB_CONFLICT 1  /* another active job writes that adapter name */
#define ST_JOB_NOT_FOUND 2
#define ST_JOB_STALE 3     /* the job was not in a state the update may come from */

typedef enum { ST_JOB_QUEUED, ST_JOB_RUNNING, ST_JOB_SUCCEEDED, ST_JOB_FAILED, ST_JOB_CANCELLED, ST_JOB_N_STATUS } st_job_status;

#define ST_JOB_BIT(s) (1u << (s))

typedef struct {
    char id[ST_JOB_ID_MAX];
    char type[8];              /* "sft" | "dpo" */
    st_job_status status;
    char adapter_name[80];
    long step, total_steps;
    double epoch;
    char error[320];           /* "" unless failed */
    char created_at[32], started_at[32], finished_at[32]; /* ISO 8601 UTC; "" when not yet */
    char *request;             /* the accepted request, JSON (heap; st_job_clear) */
    char *metrics;             /* the latest step's metrics, JSON object text, or NULL */
} st_job;

typedef struct st_jobs st_jobs;

/* "queued", "running", ... */
const char *st_job_status_name(st_job_status s);

/* Opens dir/ragd.db (already created and migrated by st_open) for jobs. */
int st_jobs_open(const char *dir, st_jobs **out, st_error *err);
void st_jobs_close(st_jobs *j); /* accepts NULL */

/* Inserts a queued job with a new id (written to id_out). ST_JOB_CONFLICT when an active
 * job already writes adapter_name. */
int st_job_create(st_jobs *j, const char *type, const char *adapter_name, const char *request_json,
                  long total_steps, char id_out[ST_JOB_ID_MAX], st_error *err);

/* Fills *out (st_job_clear frees its strings). ST_JOB_NOT_FOUND when there is no such job. */
int st_job_get(st_jobs *j, const char *id, st_job *out, st_error *err);
void st_job_clear(st_job *job);

/* The newest `max` jobs (without request text), newest first; *out is a heap array the
 * caller frees with st_job_list_free. */
int st_job_list(st_jobs *j, size_t max, st_job **out, size_t *n, st_error *err);
void st_job_list_free(st_job *jobs, size_t n);

/* Ids of queued jobs, oldest first (heap array of ST_JOB_ID_MAX strings; free()). */
int st_job_queued(st_jobs *j, char (**ids)[ST_JOB_ID_MAX], size_t *n, st_error *err);

/* Moves a job to `to` if its status is one of the bits in `from` (started_at is set on
 * running, finished_at on the final states, error when not NULL). ST_JOB_STALE otherwise. */
int st_job_transition(st_jobs *j, const char *id, unsigned from, st_job_status to, const char *error,
                      st_error *err);

/* Records one optimizer step: progress on the job and a row of metrics (a JSON object). */
int st_job_progress(st_jobs *j, const char *id, long step, long total_steps, double epoch, const char *metrics_json,
                    st_error *err);

/* The metrics rows of steps > after_step, in step order, at most max: a heap array of heap
 * strings (st_job_history_free). */
int st_job_history(st_jobs *j, const char *id, long after_step, size_t max, char ***rows, long **steps, size_t *n,
                   st_error *err);
void st_job_history_free(char **rows, long *steps, size_t n);

/* At start-up: every job left running by a previous process is failed with `reason`; the
 * number is returned in *n. Queued jobs stay queued (the server queues them again). */
int st_jobs_recover(st_jobs *j, const char *reason, size_t *n, st_error *err);

/* Datasets: a JSONL body of `rows` rows stored whole; get returns a heap copy. */
int st_dataset_put(st_jobs *j, const char *data, size_t len, size_t rows, char id_out[ST_JOB_ID_MAX], st_error *err);
int st_dataset_get(st_jobs *j, const char *id, char **data, size_t *len, st_error *err);

/* The schema of jobs, job_metrics and datasets: one migration for store.c's list. */
extern const char st_jobs_schema_sql[];

#endif
