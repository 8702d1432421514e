/* jobs.c — POST /finetune, POST /dpo, GET /jobs, GET /jobs/{id}, GET /jobs/{id}/events (SSE),
 * POST /jobs/{id}/cancel and POST /datasets (DESIGN §4.5). A job is checked whole before it
 * is accepted: fields, PEFT config, and every data row tokenized, so a bad request is a 4xx
 * naming the field and an accepted job fails only for reasons outside the request. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adapter.h"
#include "json_util.h"
#include "json_watch.h"
#include "train_jobs.h"
#include "validate.h"

#define MAX_LIST 100
#define MAX_HISTORY 10000

static const char *const methods[] = {"lora", "prompt_tuning", "prefix_tuning", NULL};
static const char *const loss_types[] = {"sigmoid", "ipo", "hinge", NULL};
static const char *const prompt_inits[] = {"RANDOM", "TEXT", NULL};

typedef struct {
    const char *adapter_name, *dataset, *init_adapter;
    int method, loss_type;
    json_t *peft, *data, *hyper;
    double beta, label_smoothing;
} job_in;

typedef struct {
    int64_t r, num_virtual_tokens, encoder_hidden_size;
    double lora_alpha, lora_dropout;
    json_t *target_modules, *layers;
    int use_rslora, use_dora, prefix_projection, prompt_init;
    const char *prompt_init_text;
} peft_in;

typedef struct {
    int64_t epochs, batch_size, max_length, warmup_steps, seed, grad_accum;
    double learning_rate, weight_decay, max_grad_norm;
    int completion_only_loss, disable_dropout;
} hyper_in;

#define F(s, f) offsetof(s, f)
static const srv_field job_fields[] = {
    {"adapter_name", SRV_F_STRING, SRV_FF_REQUIRED | SRV_FF_NONEMPTY, F(job_in, adapter_name), 0, 0, ADP_NAME_MAX,
     NULL},
    {"method", SRV_F_ENUM, 0, F(job_in, method), 0, 0, 0, methods},
    {"peft", SRV_F_OBJECT, 0, F(job_in, peft), 0, 0, 0, NULL},
    {"data", SRV_F_ARRAY, SRV_FF_NONEMPTY, F(job_in, data), 0, 0, 0, NULL},
    {"dataset", SRV_F_STRING, SRV_FF_NONEMPTY, F(job_in, dataset), 0, 0, ST_JOB_ID_MAX, NULL},
    {"hyperparameters", SRV_F_OBJECT, 0, F(job_in, hyper), 0, 0, 0, NULL},
    {"init_adapter", SRV_F_STRING, SRV_FF_NONEMPTY, F(job_in, init_adapter), 0, 0, ADP_NAME_MAX, NULL},
    /* DPO only (ignored by /finetune) */
    {"beta", SRV_F_NUMBER, 0, F(job_in, beta), 1e-6, 1e6, 0, NULL},
    {"loss_type", SRV_F_ENUM, 0, F(job_in, loss_type), 0, 0, 0, loss_types},
    {"label_smoothing", SRV_F_NUMBER, 0, F(job_in, label_smoothing), 0, 0.499, 0, NULL},
};
static const srv_field peft_fields[] = {
    {"r", SRV_F_INT, 0, F(peft_in, r), 1, ADP_MAX_RANK, 0, NULL},
    {"lora_alpha", SRV_F_NUMBER, SRV_FF_FLOAT32, F(peft_in, lora_alpha), 1e-6, 1e6, 0, NULL},
    {"lora_dropout", SRV_F_NUMBER, 0, F(peft_in, lora_dropout), 0, 0.99, 0, NULL},
    {"target_modules", SRV_F_ANY, 0, F(peft_in, target_modules), 0, 0, 0, NULL},
    {"layers_to_transform", SRV_F_ANY, 0, F(peft_in, layers), 0, 0, 0, NULL},
    {"use_rslora", SRV_F_BOOL, 0, F(peft_in, use_rslora), 0, 0, 0, NULL},
    {"use_dora", SRV_F_BOOL, 0, F(peft_in, use_dora), 0, 0, 0, NULL},
    {"num_virtual_tokens", SRV_F_INT, 0, F(peft_in, num_virtual_tokens), 1, ADP_MAX_VIRTUAL, 0, NULL},
    {"prompt_tuning_init", SRV_F_ENUM, 0, F(peft_in, prompt_init), 0, 0, 0, prompt_inits},
    {"prompt_tuning_init_text", SRV_F_STRING, SRV_FF_NONEMPTY, F(peft_in, prompt_init_text), 0, 0, 4096, NULL},
    {"prefix_projection", SRV_F_BOOL, 0, F(peft_in, prefix_projection), 0, 0, 0, NULL},
    {"encoder_hidden_size", SRV_F_INT, 0, F(peft_in, encoder_hidden_size), 1, 65536, 0, NULL},
};
static const srv_field hyper_fields[] = {
    {"epochs", SRV_F_INT, 0, F(hyper_in, epochs), 1, 1000, 0, NULL},
    {"batch_size", SRV_F_INT, 0, F(hyper_in, batch_size), 1, 1024, 0, NULL},
    {"learning_rate", SRV_F_NUMBER, 0, F(hyper_in, learning_rate), 1e-12, 10, 0, NULL},
    {"max_length", SRV_F_INT, 0, F(hyper_in, max_length), 2, 1 << 20, 0, NULL},
    {"weight_decay", SRV_F_NUMBER, 0, F(hyper_in, weight_decay), 0, 10, 0, NULL},
    {"warmup_steps", SRV_F_INT, 0, F(hyper_in, warmup_steps), 0, 10000000, 0, NULL},
    {"max_grad_norm", SRV_F_NUMBER, 0, F(hyper_in, max_grad_norm), 0, 1e9, 0, NULL},
    {"seed", SRV_F_INT, 0, F(hyper_in, seed), 0, 9007199254740991.0, 0, NULL},
    {"completion_only_loss", SRV_F_BOOL, 0, F(hyper_in, completion_only_loss), 0, 0, 0, NULL},
    {"gradient_accumulation_steps", SRV_F_INT, 0, F(hyper_in, grad_accum), 1, 1024, 0, NULL},
    {"disable_dropout", SRV_F_BOOL, 0, F(hyper_in, disable_dropout), 0, 0, 0, NULL},
};
#undef F
#define N(a) (sizeof a / sizeof a[0])

/* target_modules as PEFT matches a list: an entry names a module when the module's dotted
 * name equals it or ends with "." + it; "all-linear" is every module. */
static int parse_targets(srv_req *req, json_t *v, unsigned *out)
{
    *out = 0;
    if (!v || json_is_null(v)) {
        *out = ADP_MODULE_BIT(ADP_ATTN_C_ATTN); /* PEFT's default for gpt2 */
        return 0;
    }
    if (json_is_string(v) && !strcmp(json_string_value(v), "all-linear")) {
        *out = ADP_ALL_MODULES;
        return 0;
    }
    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > 16) {
        srv_reply_error(
            req, SRV_E_INVALID_VALUE, "/peft/target_modules",
            "target_modules is a list of module names (c_attn, c_proj, c_fc, attn.c_proj, ...) or \"all-linear\"");
        return -1;
    }
    for (size_t i = 0; i < json_array_size(v); i++) {
        const char *e = json_string_value(json_array_get(v, i));
        unsigned hit = 0;
        for (int mod = 0; e && mod < ADP_N_MODULES; mod++) {
            char full[96];
            snprintf(full, sizeof full, "transformer.h.0.%s", adp_module_name((adp_module)mod));
            size_t fl = strlen(full), el = strlen(e);
            if (!strcmp(full, e) || (el < fl && full[fl - el - 1] == '.' && !strcmp(full + fl - el, e)))
                hit |= ADP_MODULE_BIT(mod);
        }
        if (!hit) {
            char field[64];
            snprintf(field, sizeof field, "/peft/target_modules/%zu", i);
            srv_reply_error(req, SRV_E_INVALID_VALUE, field, "'%.60s' names no GPT-2 module (c_attn, c_proj, c_fc)",
                            e ? e : "(not a string)");
            return -1;
        }
        *out |= hit;
    }
    return 0;
}

static int parse_layers(srv_req *req, json_t *v, size_t n_layer, app_job_spec *s)
{
    if (!v || json_is_null(v))
        return 0;
    json_t *one = json_is_integer(v) ? json_pack("[O]", v) : json_incref(v);
    int ok = json_is_array(one) && json_array_size(one) > 0;
    for (size_t i = 0; ok && i < json_array_size(one); i++) {
        json_t *x = json_array_get(one, i);
        ok = json_is_integer(x) && json_integer_value(x) >= 0 && (size_t)json_integer_value(x) < n_layer &&
             (size_t)json_integer_value(x) < sizeof s->layers;
        if (ok)
            s->layers[json_integer_value(x)] = 1;
    }
    json_decref(one);
    if (!ok) {
        srv_reply_error(req, SRV_E_INVALID_VALUE, "/peft/layers_to_transform",
                        "layers_to_transform is a layer index or a list of them, each below %zu", n_layer);
        return -1;
    }
    s->p.adapter.layers = s->layers;
    return 0;
}

/* The job object of DESIGN §4.5. */
static json_t *job_json(struct app *app, const st_job *j, int with_history)
{
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:s, s:{s:I, s:I, s:f}, s:s}", "id", j->id, "object", "training_job", "type",
                  j->type, "status", st_job_status_name(j->status), "progress", "step", (json_int_t)j->step,
                  "total_steps", (json_int_t)j->total_steps, "epoch", j->epoch, "adapter_name", j->adapter_name);
    if (!o)
        return NULL;
    json_t *prog = json_object_get(o, "progress");
    if (j->status == ST_JOB_RUNNING && j->step > 0 && j->started_at[0]) {
        struct tm tm = {0};
        if (strptime(j->started_at, "%Y-%m-%dT%H:%M:%S", &tm)) {
            double elapsed = difftime(time(NULL), timegm(&tm));
            json_object_set_new(prog, "eta_seconds",
                                json_real(elapsed / (double)j->step * (double)(j->total_steps - j->step)));
        }
    }
    json_t *m = j->metrics ? jsonw_loadb(j->metrics, strlen(j->metrics), 0, NULL, NULL) : NULL;
    json_object_set_new(o, "metrics", m ? m : json_object());
    if (with_history) {
        char **rows;
        long *steps;
        size_t n;
        st_error e;
        json_t *h = json_array();
        if (st_job_history(app->jobs, j->id, 0, MAX_HISTORY, &rows, &steps, &n, &e) == 0) {
            for (size_t i = 0; i < n; i++) {
                json_t *r = jsonw_loadb(rows[i], strlen(rows[i]), 0, NULL, NULL);
                if (r)
                    json_array_append_new(h, r);
            }
            st_job_history_free(rows, steps, n);
        }
        json_object_set_new(o, "history", h);
    }
    if (j->error[0])
        json_object_set_new(o, "error", json_string(j->error));
    json_object_set_new(o, "created_at", json_string(j->created_at));
    json_object_set_new(o, "started_at", j->started_at[0] ? json_string(j->started_at) : json_null());
    json_object_set_new(o, "finished_at", j->finished_at[0] ? json_string(j->finished_at) : json_null());
    return o;
}

static int jobs_ready(srv_req *req, struct app *app)
{
    if (app->train && app->jobs)
        return 1;
    srv_reply_error(req, SRV_E_MODEL_NOT_LOADED, NULL, "training is not available until the models have loaded");
    return 0;
}

/* Everything /finetune and /dpo share: validation into a spec, the data checked, the job stored and queued. */
static void submit(srv_req *req, struct app *app, int dpo)
{
    app_model *g = app_network_ready(req, app, APP_GENERATOR);
    if (!g || !jobs_ready(req, app))
        return;
    const gpt2_config *c = gpt2_get_config(g->gpt);
    json_t *body = srv_req_json(req);
    if (!body)
        return;
    job_in in = {.method = 0, .beta = 0.1, .loss_type = 0, .label_smoothing = 0};
    peft_in pf = {.r = 8, .lora_alpha = 8, .encoder_hidden_size = (int64_t)c->n_embd};
    hyper_in hy = {.epochs = 3,
                   .batch_size = 8,
                   .learning_rate = dpo ? 1e-6 : 2e-5,
                   .max_length = 0 /* below: the context left by virtual tokens, at most 1024 */,
                   .max_grad_norm = 1.0,
                   .seed = 42,
                   .completion_only_loss = 1,
                   .grad_accum = 1,
                   /* TRL: SFTTrainer trains with model.train()'s dropout, DPOConfig.disable_dropout is true */
                   .disable_dropout = dpo};
    if (srv_validate(req, body, job_fields, N(job_fields), &in) ||
        srv_validate_at(req, in.peft, "/peft", peft_fields, N(peft_fields), &pf) ||
        srv_validate_at(req, in.hyper, "/hyperparameters", hyper_fields, N(hyper_fields), &hy))
        return;
    app_job_spec s = {0};
    snprintf(s.type, sizeof s.type, "%s", dpo ? "dpo" : "sft");
    s.adapter_name = in.adapter_name;
    s.init_adapter = in.init_adapter;
    trn_params *p = &s.p;
    p->dpo = dpo;
    p->adapter = (adp_config){.type = (adp_type)in.method,
                              .r = (size_t)pf.r,
                              .lora_alpha = (float)pf.lora_alpha,
                              .lora_dropout = (float)pf.lora_dropout,
                              .use_rslora = pf.use_rslora,
                              .num_virtual_tokens = pf.num_virtual_tokens > 0 ? (size_t)pf.num_virtual_tokens : 0};
    p->disable_dropout = hy.disable_dropout;
    p->prompt_init = pf.prompt_init ? TRN_INIT_TEXT : TRN_INIT_RANDOM;
    p->prompt_init_text = pf.prompt_init_text;
    p->prefix_projection = pf.prefix_projection;
    p->encoder_hidden_size = (size_t)pf.encoder_hidden_size;
    p->epochs = (size_t)hy.epochs;
    p->batch_size = (size_t)hy.batch_size;
    p->grad_accum = (size_t)hy.grad_accum;
    p->learning_rate = hy.learning_rate;
    p->weight_decay = hy.weight_decay;
    p->max_grad_norm = hy.max_grad_norm;
    p->warmup_steps = (long)hy.warmup_steps;
    p->seed = (uint64_t)hy.seed;
    p->dpo_p = (dpo_params){(dpo_loss_type)in.loss_type, in.beta, in.label_smoothing};
    s.max_length = (size_t)hy.max_length;
    s.completion_only_loss = hy.completion_only_loss;
    size_t nvt = p->adapter.type == ADP_LORA ? 0 : p->adapter.num_virtual_tokens;

    if (!adp_valid_name(in.adapter_name)) {
        srv_reply_error(req, SRV_E_INVALID_VALUE, "/adapter_name",
                        "adapter names match [A-Za-z0-9][A-Za-z0-9._-]{0,63}; '%.80s' does not", in.adapter_name);
        return;
    }
    if (!strcmp(in.adapter_name, g->name)) {
        srv_reply_error(req, SRV_E_CONFLICT, "/adapter_name", "'%s' is the base model's name", g->name);
        return;
    }
    if (in.init_adapter && !adp_valid_name(in.init_adapter)) {
        srv_reply_error(req, SRV_E_INVALID_VALUE, "/init_adapter", "'%.80s' is not an adapter name", in.init_adapter);
        return;
    }
    if (p->adapter.type == ADP_LORA) {
        if (pf.use_dora) {
            srv_reply_error(req, SRV_E_INVALID_VALUE, "/peft/use_dora", "DoRA is not supported");
            return;
        }
        if (parse_targets(req, pf.target_modules, &p->adapter.targets) || parse_layers(req, pf.layers, c->n_layer, &s))
            return;
    } else if (!nvt) {
        srv_reply_error(req, SRV_E_MISSING_FIELD, "/peft/num_virtual_tokens", "%s needs num_virtual_tokens",
                        methods[in.method]);
        return;
    } else if (p->prompt_init == TRN_INIT_TEXT && (p->adapter.type != ADP_PROMPT_TUNING || !p->prompt_init_text)) {
        srv_reply_error(req, SRV_E_INVALID_VALUE, "/peft/prompt_tuning_init_text",
                        "TEXT init is for prompt_tuning and needs prompt_tuning_init_text");
        return;
    }
    if (!s.max_length)
        s.max_length = c->n_positions - nvt < 1024 ? c->n_positions - nvt : 1024;
    if (s.max_length + nvt > c->n_positions) {
        srv_reply_error(req, SRV_E_OUT_OF_RANGE, "/hyperparameters/max_length",
                        "max_length (%zu) + virtual tokens (%zu) must be <= the context of %zu", s.max_length, nvt,
                        c->n_positions);
        return;
    }
    if (!in.data == !in.dataset) {
        srv_reply_error(req, SRV_E_MISSING_FIELD, in.data ? "/dataset" : "/data",
                        "give the rows as \"data\" or a \"dataset\" id, not both");
        return;
    }

    /* The data: inline rows or an uploaded dataset, every row tokenized and checked. */
    json_t *ds_rows = NULL;
    char why[320] = "";
    size_t bad = 0;
    if (in.data && json_array_size(in.data) > (size_t)app->cfg->max_dataset_rows) {
        srv_reply_error(req, SRV_E_BATCH_TOO_LARGE, "/data", "at most %ld rows (--max-dataset-rows)",
                        app->cfg->max_dataset_rows);
        return;
    }
    if (in.dataset) {
        char *text;
        size_t len;
        st_error se;
        int rc = st_dataset_get(app->jobs, in.dataset, &text, &len, &se);
        if (rc == ST_JOB_NOT_FOUND) {
            srv_reply_error(req, SRV_E_NOT_FOUND, "/dataset", "no dataset '%.40s'", in.dataset);
            return;
        }
        if (rc) {
            srv_reply_error(req, SRV_E_INTERNAL, NULL, "the dataset could not be read");
            return;
        }
        ds_rows = app_jsonl_rows(text, len, (size_t)app->cfg->max_dataset_rows, &bad, why, sizeof why);
        free(text);
        if (!ds_rows) {
            srv_reply_error(req, bad == APP_JSONL_NOMEM ? SRV_E_OUT_OF_MEMORY : SRV_E_INTERNAL, NULL,
                            bad == APP_JSONL_NOMEM ? "out of memory" : "the stored dataset is unreadable");
            return;
        }
    }
    json_t *rows_json = in.data ? in.data : ds_rows;
    trn_row *rows = NULL;
    trn_data *data = NULL;
    mdl_error me = {0};
    long n = app_job_rows(rows_json, dpo, &rows, &bad, why, sizeof why);
    char field[64];
    snprintf(field, sizeof field, in.data ? "/data/%zu" : "/dataset", bad);
    if (n < 0) {
        json_decref(ds_rows);
        srv_reply_error(req, SRV_E_INVALID_TYPE, field, "%s", why);
        return;
    }
    int rc = trn_data_build(g->tok, c, dpo, rows, (size_t)n, s.max_length, s.completion_only_loss, &data, &bad, &me);
    free(rows);
    trn_data_free(data);
    if (rc) {
        json_decref(ds_rows);
        snprintf(field, sizeof field, in.data ? "/data/%zu" : "/dataset", bad);
        if (bad == (size_t)n) {
            srv_reply_error(req, SRV_E_INVALID_VALUE, in.data ? "/data" : "/dataset", "%s", me.msg);
            return;
        }
        srv_reply_error(req, SRV_E_INVALID_VALUE, field, "%s%s", in.data ? "" : "a row of the dataset: ", me.msg);
        return;
    }
    long total = trn_total_steps(p, (size_t)n);
    json_decref(ds_rows);
    s.rows = in.data;
    s.dataset = in.dataset;

    /* Store, then queue: a full queue is 429 (checked first, so nothing is stored). */
    size_t queued, running;
    app_train_stats(app, &queued, &running);
    if (queued >= (size_t)app->cfg->max_queued_jobs) {
        srv_reply_error(req, SRV_E_OVERLOADED, NULL, "%zu training jobs are waiting (--max-queued-jobs); retry later",
                        queued);
        return;
    }
    json_t *spec = app_job_spec_to_json(&s);
    char *text = spec ? jsonw_dumps(spec, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(spec);
    char id[ST_JOB_ID_MAX];
    st_error se;
    rc = text ? st_job_create(app->jobs, s.type, s.adapter_name, text, total, id, &se) : -1;
    free(text);
    if (rc == ST_JOB_CONFLICT) {
        srv_reply_error(req, SRV_E_CONFLICT, "/adapter_name", "another job is already writing adapter '%s'",
                        s.adapter_name);
        return;
    }
    if (rc) {
        srv_reply_error(req, SRV_E_INTERNAL, NULL, "the job could not be stored");
        return;
    }
    if (app_train_submit(app, id) != 0) {
        st_job_transition(app->jobs, id, ST_JOB_BIT(ST_JOB_QUEUED), ST_JOB_FAILED, "the job queue was full", &se);
        srv_reply_error(req, SRV_E_OVERLOADED, NULL, "the training queue is full; retry later");
        return;
    }
    st_job j;
    if (st_job_get(app->jobs, id, &j, &se) != 0) {
        srv_reply_error(req, SRV_E_INTERNAL, NULL, "the job could not be read back");
        return;
    }
    srv_reply_json(req, 202, job_json(app, &j, 0));
    st_job_clear(&j);
}

void h_finetune(srv_req *req, void *ctx)
{
    submit(req, ctx, 0);
}
void h_dpo(srv_req *req, void *ctx)
{
    submit(req, ctx, 1);
}

void h_jobs_list(srv_req *req, void *ctx)
{
    struct app *app = ctx;
    if (!jobs_ready(req, app))
        return;
    st_job *jobs;
    size_t n;
    st_error e;
    if (st_job_list(app->jobs, MAX_LIST, &jobs, &n, &e) != 0) {
        srv_reply_error(req, SRV_E_INTERNAL, NULL, "jobs could not be listed");
        return;
    }
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(list, job_json(app, &jobs[i], 0));
    st_job_list_free(jobs, n);
    srv_reply_json(req, 200, json_pack("{s:o}", "jobs", list));
}

/* The job named by the path, or NULL after a 404. */
static int find_job(srv_req *req, struct app *app, st_job *j)
{
    const char *id = srv_req_param(req, "id");
    st_error e;
    int rc = st_job_get(app->jobs, id, j, &e);
    if (rc == ST_JOB_NOT_FOUND)
        srv_reply_error(req, SRV_E_NOT_FOUND, NULL, "no job '%.40s'", id);
    else if (rc)
        srv_reply_error(req, SRV_E_INTERNAL, NULL, "the job could not be read");
    return rc == 0;
}

void h_jobs_get(srv_req *req, void *ctx)
{
    struct app *app = ctx;
    st_job j;
    if (!jobs_ready(req, app) || !find_job(req, app, &j))
        return;
    srv_reply_json(req, 200, job_json(app, &j, 1));
    st_job_clear(&j);
}

void h_jobs_cancel(srv_req *req, void *ctx)
{
    struct app *app = ctx;
    st_job j;
    if (!jobs_ready(req, app) || !find_job(req, app, &j))
        return;
    char id[ST_JOB_ID_MAX];
    snprintf(id, sizeof id, "%s", j.id);
    st_job_status was = j.status;
    st_job_clear(&j);
    st_error e;
    if (was >= ST_JOB_SUCCEEDED) {
        srv_reply_error(req, SRV_E_CONFLICT, NULL, "job %s has already %s", id, st_job_status_name(was));
        return;
    }
    /* Queued: cancelled here and taken out of the queue. Running: the worker stops at its
     * next step; wait a little for it so the reply usually shows the final state. */
    int was_queued = st_job_transition(app->jobs, id, ST_JOB_BIT(ST_JOB_QUEUED), ST_JOB_CANCELLED, NULL, &e) == 0;
    app_train_cancel(app, id);
    if (!was_queued) {
        unsigned long seen = 0;
        for (int i = 0; i < 50; i++) {
            if (st_job_get(app->jobs, id, &j, &e) == 0 && j.status != ST_JOB_RUNNING) {
                st_job_clear(&j);
                break;
            }
            st_job_clear(&j);
            seen = app_train_wait(app, seen, 100);
        }
    }
    if (st_job_get(app->jobs, id, &j, &e) != 0) {
        srv_reply_error(req, SRV_E_INTERNAL, NULL, "the job could not be read");
        return;
    }
    srv_reply_json(req, 200, job_json(app, &j, 0));
    st_job_clear(&j);
}

/* ---- GET /jobs/{id}/events: every recorded step, then the final state ---- */

typedef struct {
    struct app *app;
    char id[ST_JOB_ID_MAX];
    long last_step;
    unsigned long seen;
    int sent_open, finished;
} events;

static long events_next(void *ctx, char *buf, size_t cap)
{
    events *ev = ctx;
    if (ev->finished || app_train_stopping(ev->app))
        return 0;
    for (int waited = 0;; waited++) {
        st_job j;
        st_error e;
        if (st_job_get(ev->app->jobs, ev->id, &j, &e) != 0)
            return -1;
        char **rows;
        long *steps;
        size_t n;
        long len = 0;
        if (st_job_history(ev->app->jobs, ev->id, ev->last_step, 16, &rows, &steps, &n, &e) == 0) {
            for (size_t i = 0; i < n; i++) {
                int w = snprintf(buf + len, cap - (size_t)len, "event: step\ndata: %s\n\n", rows[i]);
                if (w < 0 || (size_t)(len + w) >= cap)
                    break;
                len += w;
                ev->last_step = steps[i];
            }
            st_job_history_free(rows, steps, n);
        }
        if (len == 0 && (!ev->sent_open || j.status >= ST_JOB_SUCCEEDED || waited >= 10)) {
            /* the state when the stream opens and when the job ends; a comment keeps the
             * connection alive while nothing happens */
            json_t *o = ev->sent_open && j.status < ST_JOB_SUCCEEDED ? NULL : job_json(ev->app, &j, 0);
            char *text = o ? jsonw_dumps(o, JSON_COMPACT) : NULL;
            json_decref(o);
            len = text ? snprintf(buf, cap, "event: status\ndata: %s\n\n", text) : snprintf(buf, cap, ": waiting\n\n");
            free(text);
            if (len < 0 || (size_t)len >= cap)
                len = snprintf(buf, cap, ": status too large\n\n");
            ev->finished = ev->sent_open && j.status >= ST_JOB_SUCCEEDED;
            if (!ev->sent_open && j.status >= ST_JOB_SUCCEEDED) /* already over: status, steps, status */
                ev->finished = 0;
            ev->sent_open = 1;
        }
        st_job_clear(&j);
        if (len > 0)
            return len;
        if (app_train_stopping(ev->app))
            return 0;
        ev->seen = app_train_wait(ev->app, ev->seen, 500);
    }
}

static void events_done(void *ctx)
{
    free(ctx);
}

void h_jobs_events(srv_req *req, void *ctx)
{
    struct app *app = ctx;
    st_job j;
    if (!jobs_ready(req, app) || !find_job(req, app, &j))
        return;
    events *ev = calloc(1, sizeof *ev);
    if (!ev) {
        st_job_clear(&j);
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
        return;
    }
    ev->app = app;
    snprintf(ev->id, sizeof ev->id, "%s", j.id);
    st_job_clear(&j);
    srv_reply_header(req, "Cache-Control", "no-cache");
    srv_reply_stream(req, "text/event-stream", events_next, events_done, ev);
}

/* ---- POST /datasets ---- */

void h_datasets_post(srv_req *req, void *ctx)
{
    struct app *app = ctx;
    if (!jobs_ready(req, app))
        return;
    size_t len, bad = 0;
    const char *body = srv_req_body(req, &len);
    char why[320];
    json_t *rows = app_jsonl_rows(body ? body : "", len, (size_t)app->cfg->max_dataset_rows, &bad, why, sizeof why);
    if (!rows && bad == APP_JSONL_NOMEM) {
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
        return;
    }
    if (!rows) {
        char field[48];
        snprintf(field, sizeof field, "/%zu", bad);
        srv_reply_error(req, SRV_E_INVALID_VALUE, field, "line %zu: %s", bad + 1, why);
        return;
    }
    size_t n = json_array_size(rows);
    /* Every row is an SFT or DPO row: string fields only. */
    for (size_t i = 0; i < n; i++) {
        const char *k;
        json_t *v;
        json_object_foreach(json_array_get(rows, i), k, v) if (!json_is_string(v))
        {
            char field[48];
            snprintf(field, sizeof field, "/%zu/%.30s", i, k);
            srv_reply_error(req, SRV_E_INVALID_TYPE, field, "line %zu: '%s' must be a string", i + 1, k);
            json_decref(rows); /* after the reply: k lives in rows */
            return;
        }
    }
    json_decref(rows);
    if (n == 0) {
        srv_reply_error(req, SRV_E_EMPTY_INPUT, NULL, "the dataset has no rows");
        return;
    }
    char id[ST_JOB_ID_MAX];
    st_error e;
    if (st_dataset_put(app->jobs, body, len, n, id, &e) != 0) {
        app_store_error(req, &e, NULL); /* 503 out of memory or busy, 507 disk full, else 500 */
        return;
    }
    srv_reply_json(req, 201, json_pack("{s:s, s:s, s:I}", "id", id, "object", "dataset", "rows", (json_int_t)n));
}
