/* jobs_run.c — the training workers: job specs in and out of JSON, running a job to its end
 * (train, record steps, publish the adapter), cancel, and the change counter SSE waits on. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "adapter.h"
#include "jobq.h"
#include "json_util.h"
#include "json_watch.h"
#include "kernels.h"
#include "log.h"
#include "train_jobs.h"

#define MAX_WORKERS 64

typedef struct {
    char id[ST_JOB_ID_MAX]; /* "" when the slot is free */
    atomic_int cancel;
} run_slot;

struct app_train {
    srv_jobq *q;
    pthread_mutex_t mu;     /* guards seq, slots, running; never held across training or SQLite */
    pthread_cond_t cv;
    unsigned long seq;
    run_slot slots[MAX_WORKERS];
    size_t running;
    atomic_int stopping;
};

/* ---- specs ---- */

static const char *const method_names[ADP_N_TYPES] = {"lora", "prompt_tuning", "prefix_tuning"};

json_t *app_job_spec_to_json(const app_job_spec *s)
{
    const trn_params *p = &s->p;
    json_t *layers = json_null();
    if (p->adapter.layers) {
        layers = json_array();
        for (size_t l = 0; l < sizeof s->layers; l++)
            if (s->layers[l])
                json_array_append_new(layers, json_integer((json_int_t)l));
    }
    json_t *j = json_pack(
        "{s:s, s:s, s:s, s:{s:I, s:f, s:b, s:I, s:o, s:I, s:f, s:s, s:b, s:I},"
        " s:{s:I, s:I, s:I, s:f, s:f, s:f, s:I, s:I, s:I, s:b, s:b}, s:{s:f, s:s, s:f}}",
        "type", s->type, "adapter_name", s->adapter_name, "method",
        method_names[p->adapter.type], "peft", "r", (json_int_t)p->adapter.r, "lora_alpha", (double)p->adapter.lora_alpha,
        "use_rslora", p->adapter.use_rslora, "targets", (json_int_t)p->adapter.targets, "layers", layers,
        "num_virtual_tokens", (json_int_t)p->adapter.num_virtual_tokens, "lora_dropout", (double)p->adapter.lora_dropout,
        "prompt_tuning_init", p->prompt_init == TRN_INIT_TEXT ? "TEXT" : "RANDOM", "prefix_projection", p->prefix_projection, "encoder_hidden_size",
        (json_int_t)p->encoder_hidden_size, "hyperparameters", "epochs", (json_int_t)p->epochs, "batch_size",
        (json_int_t)p->batch_size, "gradient_accumulation_steps", (json_int_t)p->grad_accum, "learning_rate",
        p->learning_rate, "weight_decay", p->weight_decay, "max_grad_norm", p->max_grad_norm, "warmup_steps",
        (json_int_t)p->warmup_steps, "seed", (json_int_t)p->seed, "max_length", (json_int_t)s->max_length,
        "completion_only_loss", s->completion_only_loss, "disable_dropout", p->disable_dropout, "dpo", "beta", p->dpo_p.beta, "loss_type",
        dpo_loss_name(p->dpo_p.type), "label_smoothing", p->dpo_p.label_smoothing);
    if (j && s->init_adapter)
        json_object_set_new(j, "init_adapter", json_string(s->init_adapter));
    if (j && p->prompt_init_text)
        json_object_set_new(json_object_get(j, "peft"), "prompt_tuning_init_text", json_string(p->prompt_init_text));
    if (j && s->dataset)
        json_object_set_new(j, "dataset", json_string(s->dataset));
    else if (j)
        json_object_set(j, "data", s->rows);
    return j;
}

int app_job_spec_from_json(json_t *j, app_job_spec *s, char *why, size_t cap)
{
    memset(s, 0, sizeof *s);
    const char *type, *method, *init, *loss;
    json_int_t r, targets, nvt, ehs, epochs, bs, ga, warm, seed, maxlen;
    double alpha, drop, lr, wd, mgn, beta, ls;
    int rs, proj, col, nodrop = -1;
    json_t *layers;
    json_error_t je;
    if (json_unpack_ex(j, &je, 0,
                       "{s:s, s:s, s?:s, s:s, s:{s:I, s:F, s:b, s:I, s:o, s:I, s:F, s:s, s?:s, s:b, s:I},"
                       " s:{s:I, s:I, s:I, s:F, s:F, s:F, s:I, s:I, s:I, s:b, s?:b}, s:{s:F, s:s, s:F}, s?:o, s?:s}",
                       "type", &type, "adapter_name", &s->adapter_name, "init_adapter", &s->init_adapter, "method",
                       &method, "peft", "r", &r, "lora_alpha", &alpha, "use_rslora", &rs, "targets", &targets, "layers",
                       &layers, "num_virtual_tokens", &nvt, "lora_dropout", &drop, "prompt_tuning_init", &init,
                       "prompt_tuning_init_text", &s->p.prompt_init_text, "prefix_projection", &proj,
                       "encoder_hidden_size", &ehs, "hyperparameters", "epochs", &epochs, "batch_size", &bs,
                       "gradient_accumulation_steps", &ga, "learning_rate", &lr, "weight_decay", &wd, "max_grad_norm",
                       &mgn, "warmup_steps", &warm, "seed", &seed, "max_length", &maxlen, "completion_only_loss", &col,
                       "disable_dropout", &nodrop, "dpo", "beta", &beta, "loss_type", &loss, "label_smoothing", &ls, "data", &s->rows, "dataset",
                       &s->dataset) != 0) {
        snprintf(why, cap, "the stored job is malformed: %s", je.text);
        return -1;
    }
    snprintf(s->type, sizeof s->type, "%s", type);
    trn_params *p = &s->p;
    p->dpo = !strcmp(type, "dpo");
    p->adapter.type = ADP_N_TYPES;
    for (int t = 0; t < ADP_N_TYPES; t++)
        if (!strcmp(method, method_names[t]))
            p->adapter.type = (adp_type)t;
    int lt = dpo_loss_from_name(loss);
    if (p->adapter.type == ADP_N_TYPES || lt < 0 || r < 0 || nvt < 0 || ehs < 0 || epochs < 1 || bs < 1 || ga < 1 ||
        maxlen < 2 || warm < 0) {
        snprintf(why, cap, "the stored job has values out of range");
        return -1;
    }
    p->adapter.r = (size_t)r;
    p->adapter.lora_alpha = (float)alpha;
    p->adapter.use_rslora = rs;
    p->adapter.targets = (unsigned)targets;
    p->adapter.num_virtual_tokens = (size_t)nvt;
    if (json_is_array(layers)) {
        for (size_t i = 0; i < json_array_size(layers); i++) {
            json_int_t l = json_integer_value(json_array_get(layers, i));
            if (l >= 0 && (size_t)l < sizeof s->layers)
                s->layers[l] = 1;
        }
        p->adapter.layers = s->layers;
    }
    p->adapter.lora_dropout = (float)drop;
    p->disable_dropout = nodrop < 0 ? p->dpo : nodrop; /* a job stored before the field: TRL's default */
    p->prompt_init = !strcmp(init, "TEXT") ? TRN_INIT_TEXT : TRN_INIT_RANDOM;
    p->prefix_projection = proj;
    p->encoder_hidden_size = (size_t)ehs;
    p->epochs = (size_t)epochs;
    p->batch_size = (size_t)bs;
    p->grad_accum = (size_t)ga;
    p->learning_rate = lr;
    p->weight_decay = wd;
    p->max_grad_norm = mgn;
    p->warmup_steps = (long)warm;
    p->seed = (uint64_t)seed;
    p->dpo_p = (dpo_params){(dpo_loss_type)lt, beta, ls};
    s->max_length = (size_t)maxlen;
    s->completion_only_loss = col;
    if (!s->rows == !s->dataset) {
        snprintf(why, cap, "the stored job has neither data nor a dataset");
        return -1;
    }
    return 0;
}

long app_job_rows(json_t *rows, int dpo, trn_row **out, size_t *bad, char *why, size_t cap)
{
    size_t n = json_array_size(rows);
    trn_row *r = calloc(n ? n : 1, sizeof *r);
    *out = NULL;
    if (!r) {
        snprintf(why, cap, "out of memory");
        return -1;
    }
    static const char *const sft_keys[] = {"prompt", "completion", "text"}, *const dpo_keys[] = {"prompt", "chosen", "rejected"};
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(rows, i);
        const char *const *keys = dpo ? dpo_keys : sft_keys;
        const char **dst[3] = {&r[i].prompt, dpo ? &r[i].chosen : &r[i].completion, dpo ? &r[i].rejected : &r[i].text};
        if (!json_is_object(o)) {
            snprintf(why, cap, "row %zu is not an object", i);
            *bad = i;
            free(r);
            return -1;
        }
        for (int k = 0; k < 3; k++) {
            json_t *v = json_object_get(o, keys[k]);
            if (v && !json_is_string(v)) {
                snprintf(why, cap, "row %zu: '%s' must be a string", i, keys[k]);
                *bad = i;
                free(r);
                return -1;
            }
            *dst[k] = v ? json_string_value(v) : NULL;
        }
    }
    *out = r;
    return (long)n;
}

json_t *app_jsonl_rows(const char *data, size_t len, size_t max_rows, size_t *bad_line, char *why, size_t cap)
{
    json_t *rows = json_array();
    size_t line = 0;
    if (!rows) {
        *bad_line = APP_JSONL_NOMEM;
        snprintf(why, cap, "out of memory");
        return NULL;
    }
    for (size_t at = 0; at < len; line++) {
        const char *nl = memchr(data + at, '\n', len - at);
        size_t end = nl ? (size_t)(nl - data) : len, n = end - at;
        while (n && (data[at + n - 1] == '\r' || data[at + n - 1] == ' '))
            n--;
        if (n) {
            json_error_t je;
            int oom;
            json_t *o = jsonw_loadb(data + at, n, JSON_REJECT_DUPLICATES, &je, &oom);
            if (oom || (o && json_array_append(rows, o) != 0)) {
                *bad_line = APP_JSONL_NOMEM;
                snprintf(why, cap, "out of memory");
                json_decref(o);
                json_decref(rows);
                return NULL;
            }
            if (!json_is_object(o) || json_array_size(rows) > max_rows) {
                snprintf(why, cap, "%s", !o ? je.text : json_array_size(rows) >= max_rows ? "too many rows"
                                                                                         : "a row must be a JSON object");
                *bad_line = line;
                json_decref(o);
                json_decref(rows);
                return NULL;
            }
            json_decref(o);
        }
        at = end + 1;
    }
    return rows;
}

/* ---- the change counter and cancel ---- */

static void bump(struct app_train *t)
{
    pthread_mutex_lock(&t->mu);
    t->seq++;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

unsigned long app_train_wait(struct app *app, unsigned long seen, int timeout_ms)
{
    struct app_train *t = app->train;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&t->mu);
    while (t->seq == seen && !atomic_load(&t->stopping))
        if (pthread_cond_timedwait(&t->cv, &t->mu, &until) == ETIMEDOUT)
            break;
    unsigned long s = t->seq;
    pthread_mutex_unlock(&t->mu);
    return s;
}

static int same_id(void *id, const void *job) { return !strcmp(id, job); }

void app_train_cancel(struct app *app, const char *id)
{
    struct app_train *t = app->train;
    srv_jobq_remove(t->q, same_id, (void *)id); /* waiting: its place in the queue is free again */
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < MAX_WORKERS; i++)
        if (!strcmp(t->slots[i].id, id))
            atomic_store(&t->slots[i].cancel, 1);
    t->seq++;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

void app_train_stats(struct app *app, size_t *queued, size_t *running)
{
    srv_jobq_stats(app->train->q, queued, running);
}

/* ---- running a job ---- */

typedef struct {
    struct app *app;
    run_slot *slot;
    const char *id;
    int failed_store;
} run_ctx;

static int on_step(void *ctx, const trn_progress *p)
{
    run_ctx *rc = ctx;
    struct app_train *t = rc->app->train;
    json_t *m = json_pack("{s:I, s:f, s:f, s:f, s:f}", "step", (json_int_t)p->step, "epoch", p->epoch, "loss", p->loss,
                          "learning_rate", p->learning_rate, "grad_norm", p->grad_norm);
    if (m && p->dpo) {
        json_object_set_new(m, "rewards/chosen", json_real(p->dpo_m.rewards_chosen));
        json_object_set_new(m, "rewards/rejected", json_real(p->dpo_m.rewards_rejected));
        json_object_set_new(m, "rewards/margins", json_real(p->dpo_m.rewards_margins));
        json_object_set_new(m, "rewards/accuracies", json_real(p->dpo_m.rewards_accuracies));
        json_object_set_new(m, "logps/chosen", json_real(p->dpo_m.logps_chosen));
        json_object_set_new(m, "logps/rejected", json_real(p->dpo_m.logps_rejected));
    }
    char *text = m ? jsonw_dumps(m, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(m);
    st_error e;
    if (!text || st_job_progress(rc->app->jobs, rc->id, p->step, p->total_steps, p->epoch, text, &e) != 0)
        rc->failed_store = 1;
    free(text);
    bump(t);
    return rc->failed_store || atomic_load(&rc->slot->cancel) || atomic_load(&t->stopping);
}

/* Trains and publishes. Returns 0, 1 (stopped by cancel or shutdown) or -1 with why. */
static int train_and_publish(struct app *app, run_ctx *rcx, const st_job *job, char *why, size_t cap)
{
    app_model *g = &app->models[APP_GENERATOR];
    while (atomic_load_explicit(&g->state, memory_order_acquire) == APP_MODEL_LOADING &&
           !atomic_load(&app->train->stopping))
        usleep(100000); /* after a restart, queued jobs wait for the model */
    if (atomic_load_explicit(&g->state, memory_order_acquire) != APP_MODEL_READY || !g->gpt) {
        snprintf(why, cap, "no generator model is loaded");
        return -1;
    }
    json_error_t je;
    json_t *spec_json = jsonw_loadb(job->request, strlen(job->request), 0, &je, NULL), *rows_json = NULL;
    app_job_spec spec;
    if (!spec_json || app_job_spec_from_json(spec_json, &spec, why, cap) != 0) {
        if (!spec_json)
            snprintf(why, cap, "the stored job is not JSON: %s", je.text);
        json_decref(spec_json);
        return -1;
    }
    int rc = 0;
    if (spec.dataset) {
        char *data;
        size_t len, bad;
        st_error se;
        if (st_dataset_get(app->jobs, spec.dataset, &data, &len, &se) != 0) {
            snprintf(why, cap, "dataset %s is gone", spec.dataset);
            rc = -1;
        } else {
            rows_json = app_jsonl_rows(data, len, (size_t)app->cfg->max_dataset_rows, &bad, why, cap);
            free(data);
            rc = rows_json ? 0 : -1;
        }
    }
    trn_row *rows = NULL;
    size_t bad;
    long n = rc ? -1 : app_job_rows(spec.rows ? spec.rows : rows_json, spec.p.dpo, &rows, &bad, why, cap);
    trn_data *data = NULL;
    mdl_error me = {0};
    if (n >= 0 && trn_data_build(g->tok, gpt2_get_config(g->gpt), spec.p.dpo, rows, (size_t)n, spec.max_length,
                                 spec.completion_only_loss, &data, &bad, &me) != 0) {
        snprintf(why, cap, "row %zu: %s", bad, me.msg);
        n = -1;
    }
    adp_adapter *init = NULL, *out = NULL;
    if (n >= 0 && spec.init_adapter) {
        int root = open(app->cfg->adapters_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (root < 0 || adp_load(root, spec.init_adapter, gpt2_get_config(g->gpt), &init, &me) != 0) {
            snprintf(why, cap, "init_adapter '%s': %s", spec.init_adapter, root < 0 ? strerror(errno) : me.msg);
            n = -1;
        }
        if (root >= 0)
            close(root);
        spec.p.init_adapter = init;
    }
    if (n >= 0 && !spec.p.disable_dropout && trn_read_base_dropout(g->dir, &spec.p.base_dropout, &me) != 0) {
        snprintf(why, cap, "the model's dropout: %s", me.msg);
        n = -1;
    }
    if (n < 0) {
        rc = -1;
    } else if ((rc = trn_run(g->gpt, g->tok, &spec.p, data, on_step, rcx, &out, &me)) < 0) {
        snprintf(why, cap, "%s", rcx->failed_store ? "the job's progress could not be stored" : me.msg);
    } else if (rc == 0) {
        /* The adapter becomes visible whole under its name, or not at all. */
        if (trn_publish(out, app->cfg->adapters_dir, spec.adapter_name, job->id, g->name, &me) != 0) {
            snprintf(why, cap, "writing the adapter failed: %s", me.msg);
            rc = -1;
        }
    }
    adp_free(out);
    trn_data_free(data);
    adp_free(init);
    free(rows);
    json_decref(rows_json);
    json_decref(spec_json);
    return rc;
}

/* Records a job's final state. A busy database is waited out (up to 30 s more than SQLite's
 * own busy timeout): a worker that is done must never leave its job 'running'. */
static void finish_job(struct app *app, const char *id, st_job_status to, const char *why)
{
    st_error se = {0};
    for (int attempt = 0; attempt < 60; attempt++) {
        int rc = st_job_transition(app->jobs, id, ST_JOB_BIT(ST_JOB_RUNNING), to, why, &se);
        if (rc == 0 || rc == ST_JOB_STALE)
            return;
        usleep(500000);
    }
    srv_log(SRV_LOG_ERROR, "cannot record a job's final state", "job=%s status=%s error=\"%s\"", id,
            st_job_status_name(to), se.msg);
}

/* Training yields the CPU to serving: its kernels run on the job's worker thread alone (the
 * compute workers stay with serving) at TRAIN_NICE steps below the models' serving compute
 * (itself --compute-nice below the requests), so serving preempts it and training uses what
 * serving leaves. */
#define TRAIN_NICE 10

static void run_job(void *ctx, void *job_id)
{
    struct app *app = ctx;
    struct app_train *t = app->train;
    char *id = job_id;
    st_error se;
    k_this_thread_alone(1);
    app_compute_thread(&app->models[APP_GENERATOR], TRAIN_NICE);
    if (st_job_transition(app->jobs, id, ST_JOB_BIT(ST_JOB_QUEUED), ST_JOB_RUNNING, NULL, &se) != 0) {
        free(id); /* cancelled while queued (or gone) */
        bump(t);
        return;
    }
    pthread_mutex_lock(&t->mu);
    run_slot *slot = NULL;
    for (size_t i = 0; i < MAX_WORKERS && !slot; i++)
        if (!t->slots[i].id[0])
            slot = &t->slots[i];
    snprintf(slot->id, sizeof slot->id, "%s", id);
    atomic_store(&slot->cancel, 0);
    t->running++;
    t->seq++;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);

    srv_log(SRV_LOG_INFO, "training job started", "job=%s", id);
    st_job job;
    char why[320] = "";
    run_ctx rcx = {app, slot, id, 0};
    int rc = st_job_get(app->jobs, id, &job, &se) == 0 ? train_and_publish(app, &rcx, &job, why, sizeof why) : -1;
    if (rc < 0 && !why[0])
        snprintf(why, sizeof why, "the job could not be read: %s", se.msg);
    char job_name[sizeof job.adapter_name];
    snprintf(job_name, sizeof job_name, "%s", job.adapter_name);
    st_job_clear(&job);
    if (rc == 0) {
        /* A cached older version of the name is dropped, so the next request loads this one. */
        app_adapter_forget(app, job_name);
        finish_job(app, id, ST_JOB_SUCCEEDED, NULL);
        srv_log(SRV_LOG_INFO, "training job succeeded", "job=%s", id);
    } else if (rc > 0 && atomic_load(&slot->cancel)) {
        finish_job(app, id, ST_JOB_CANCELLED, NULL);
        srv_log(SRV_LOG_INFO, "training job cancelled", "job=%s", id);
    } else if (rc > 0) { /* shutting down: run it again from the start after the restart */
        finish_job(app, id, ST_JOB_QUEUED, NULL);
        srv_log(SRV_LOG_INFO, "training job requeued for the next start", "job=%s", id);
    } else {
        finish_job(app, id, ST_JOB_FAILED, why);
        srv_log(SRV_LOG_WARN, "training job failed", "job=%s error=\"%s\"", id, why);
    }
    pthread_mutex_lock(&t->mu);
    slot->id[0] = 0;
    t->running--;
    t->seq++;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    free(id);
}

static void drop_job(void *ctx, void *job_id)
{
    (void)ctx;
    free(job_id); /* still queued in the database: the next start queues it again */
}

int app_train_submit(struct app *app, const char *id)
{
    char *copy = strdup(id);
    if (!copy || !app->train || srv_jobq_push(app->train->q, copy) != 0) {
        free(copy);
        return -1;
    }
    bump(app->train);
    return 0;
}

int app_train_start(struct app *app) /* before the models load and the daemon starts */
{
    const srv_config *cfg = app->cfg;
    st_error se;
    if (st_jobs_open(cfg->data_dir, &app->jobs, &se) != 0) {
        srv_log(SRV_LOG_ERROR, "cannot open the jobs store", "error=\"%s\"", se.msg);
        return -1;
    }
    size_t failed = 0, swept = trn_sweep(cfg->adapters_dir);
    if (st_jobs_recover(app->jobs, "interrupted: ragd stopped while the job was running", &failed, &se) != 0) {
        srv_log(SRV_LOG_ERROR, "cannot recover jobs", "error=\"%s\"", se.msg);
        return -1;
    }
    if (failed || swept)
        srv_log(SRV_LOG_WARN, "jobs interrupted by the last stop were failed", "jobs=%zu partial_adapters_removed=%zu",
                failed, swept);
    struct app_train *t = calloc(1, sizeof *t);
    if (!t)
        return -1;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    app->train = t;
    size_t workers = (size_t)(cfg->train_workers < MAX_WORKERS ? cfg->train_workers : MAX_WORKERS);
    t->q = srv_jobq_create(workers, (size_t)cfg->max_queued_jobs, run_job, drop_job, app);
    if (!t->q) {
        srv_log_msg(SRV_LOG_ERROR, "cannot start the training workers");
        return -1;
    }
    char(*ids)[ST_JOB_ID_MAX];
    size_t n;
    if (st_job_queued(app->jobs, &ids, &n, &se) == 0) {
        for (size_t i = 0; i < n; i++)
            if (app_train_submit(app, ids[i]) != 0)
                st_job_transition(app->jobs, ids[i], ST_JOB_BIT(ST_JOB_QUEUED), ST_JOB_FAILED,
                                  "the job queue was full after a restart", &se);
        free(ids);
    }
    return 0;
}

void app_train_quiesce(struct app *app)
{
    struct app_train *t = app->train;
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    atomic_store(&t->stopping, 1);
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

int app_train_stopping(struct app *app) { return !app->train || atomic_load(&app->train->stopping); }

void app_train_stop(struct app *app)
{
    struct app_train *t = app->train;
    if (t) {
        app_train_quiesce(app);
        srv_jobq_destroy(t->q);
        pthread_cond_destroy(&t->cv);
        pthread_mutex_destroy(&t->mu);
        free(t);
        app->train = NULL;
    }
    st_jobs_close(app->jobs);
    app->jobs = NULL;
}
