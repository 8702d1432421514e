/*
 * train_jobs.h — the training side of the app, shared by handlers/jobs.c (the routes) and
 * handlers/jobs_run.c (the workers). Private to handlers/.
 *
 * A job is accepted by a route, validated whole (hyperparameters, PEFT config, every data
 * row tokenized), then stored as a normalized "spec" (JSON) in store/jobs and its id queued.
 * A worker runs the spec: trains (model/train.h), records every step's metrics, publishes
 * the adapter atomically into --adapters-dir and marks the job succeeded; /generate then
 * serves it by name. Cancel sets a flag the step callback reads. Every change bumps a
 * sequence number that /jobs/{id}/events waits on.
 *
 * A job runs on its worker thread alone (k_this_thread_alone): its products never take the
 * compute threads that serve requests, so --train-workers is exactly what training adds.
 */
#ifndef RAGD_HANDLERS_TRAIN_JOBS_H
#define RAGD_HANDLERS_TRAIN_JOBS_H

#include <jansson.h>

#include "app.h"
#include "jobs.h"
#include "train.h"

/* The spec of a job: everything a worker needs, in our own normalized JSON. */
typedef struct {
    char type[8];                /* "sft" | "dpo" */
    const char *adapter_name;
    const char *init_adapter;    /* NULL: none */
    trn_params p;
    unsigned char layers[256];   /* storage for p.adapter.layers */
    json_t *rows;                /* array of row objects (borrowed from the spec tree) */
    const char *dataset;         /* or a dataset id */
    size_t max_length;
    int completion_only_loss;
} app_job_spec;

/* Reads a stored spec (a tree the caller keeps alive while the spec is used). 0 or -1. */
int app_job_spec_from_json(json_t *j, app_job_spec *s, char *why, size_t cap);
/* The normalized JSON of a spec (new reference). */
json_t *app_job_spec_to_json(const app_job_spec *s);

/* Rows for trn_data_build from a JSON array of row objects (borrowed strings). Returns the
 * count, or -1 with the offending index in *bad and a message. */
long app_job_rows(json_t *rows, int dpo, trn_row **out, size_t *bad, char *why, size_t cap);
/* Parses a JSONL dataset body into a JSON array of rows. NULL with a message and the bad line,
 * which is APP_JSONL_NOMEM when memory ran out (jansson's own errors included). */
#define APP_JSONL_NOMEM ((size_t)-1)
json_t *app_jsonl_rows(const char *data, size_t len, size_t max_rows, size_t *bad_line, char *why, size_t cap);

/* Queues job `id`. 0, or -1 when the queue is full. */
int app_train_submit(struct app *app, const char *id);
/* Takes a waiting job out of the queue, or asks a running one to stop at its next step. */
void app_train_cancel(struct app *app, const char *id);
/* Waits until the jobs' change counter passes `seen` or timeout_ms passes; returns it. */
unsigned long app_train_wait(struct app *app, unsigned long seen, int timeout_ms);
/* 1 once the app is stopping (streams end). */
int app_train_stopping(struct app *app);
/* Waiting and running jobs. */
void app_train_stats(struct app *app, size_t *queued, size_t *running);

#endif
