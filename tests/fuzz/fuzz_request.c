/* fuzz_request.c — request parsing: the first byte picks one of ragd's routes that take a
 * body, the rest is the body. It runs routing, the body cap, JSON parsing, field validation
 * and the handler exactly as the daemon does (srv_dispatch_detached), with the real models of
 * ../shared/testdata (RAGD_SHARED): the gpt2-names-makemore checkpoint as the generator (so
 * /generate, /v1/completions, /finetune, /dpo, /datasets and /adapters run to the end), a
 * LoRA for it in the adapters directory, and the BERT tokenizer for the embedder and the
 * reranker (no network: 503). The store is real, in a temporary directory, with a collection
 * "fz" that the routes' {name} stands for. Training jobs are stored and queued with no
 * worker, then cancelled, so the queue never fills. Every reply must be JSON with a status
 * ragd documents (an event stream: JSON in every event); a 500 is a bug. */
#include <ftw.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app.h"

static struct app app;
static srv_config cfg;
static srv_daemon_config dcfg;
static size_t body_routes[32], n_body_routes;

static char data_dir[64];

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* The temporary store, jobs and adapters go when the process ends. */
static void remove_store(void)
{
    app_train_stop(&app);
    st_close(app.db);
    nftw(data_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A LoRA for the generator (r 2 on attn.c_attn, small non-zero weights) named "fz-lora". */
static void write_adapter(void)
{
    app_model *g = &app.models[APP_GENERATOR];
    if (atomic_load(&g->state) != APP_MODEL_READY || !g->gpt)
        return;
    adp_config ac = {.type = ADP_LORA, .r = 2, .lora_alpha = 4, .targets = ADP_MODULE_BIT(ADP_ATTN_C_ATTN)};
    adp_adapter *a;
    mdl_error err;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/fz-lora", cfg.adapters_dir);
    if (adp_create(gpt2_get_config(g->gpt), &ac, &a, &err) != 0)
        abort();
    for (size_t i = 0; i < a->n_weights; i++)
        a->weights[i] = (float)((int)(i % 5) - 2) / 64.0f;
    if (mkdir(dir, 0755) != 0 || adp_save(a, dir, g->name, &err) != 0)
        abort();
    adp_free(a);
}

static void setup(void)
{
    const char *shared = getenv("RAGD_SHARED");
    static char ckpt[4096];
    snprintf(ckpt, sizeof ckpt, "%s/testdata/checkpoints/gpt2-names-makemore", shared ? shared : "../shared");
    /* tmpfs when there is one: fsync is free there, so each exec costs CPU, not disk waits. */
    snprintf(data_dir, sizeof data_dir, "%s/ragd-fuzz-XXXXXX", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(data_dir))
        abort();
    char *argv[] = {"ragd", "serve", "--data-dir", data_dir, "--generator", ckpt, "--train-workers", "0",
                    "--max-batch", "8", "--max-input-tokens", "512", "--max-dataset-rows", "64", "--threads", "1",
                    NULL};
    srv_command cmd;
    srv_config_error err;
    if (srv_config_parse(16, argv, &cfg, &cmd, &err) != 0)
        abort();
    app.cfg = &cfg;
    dcfg.max_body_bytes = 1 << 16;
    static char dirs[APP_N_ROLES][4096];
    static const char *const rel[APP_N_ROLES] = {"checkpoints/gpt2-names-makemore", "tokenizers/bert-base-uncased",
                                                 "tokenizers/bert-base-uncased"};
    for (int r = 0; r < APP_N_ROLES; r++) {
        snprintf(dirs[r], sizeof dirs[r], "%s/testdata/%s", shared ? shared : "../shared", rel[r]);
        app.models[r].dir = dirs[r];
        atomic_init(&app.models[r].state, APP_MODEL_LOADING);
    }
    st_error serr;
    if (st_open(data_dir, &app.db, &serr) != 0 || app_train_start(&app) != 0)
        abort();
    atexit(remove_store);
    app_load_models(&app); /* models that fail to load answer 503, which is fine here */
    write_adapter();
    st_collection c = {.name = "fz", .dimension = 3, .distance = ST_COSINE, .m = 4, .ef_construction = 8};
    if (st_collection_create(app.db, &c, &serr) != 0)
        abort();
    for (size_t i = 0; i < app_n_routes; i++)
        if (!(app_routes[i].flags & SRV_ROUTE_NO_BODY) && n_body_routes < 32)
            body_routes[n_body_routes++] = i;
}

/* The route's pattern with every {param} replaced by "fz". */
static void concrete_path(const char *pattern, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = pattern; *p && n + 3 < cap; p++) {
        if (*p == '{') {
            memcpy(out + n, "fz", 2);
            n += 2;
            while (*p && *p != '}')
                p++;
            if (!*p)
                break;
        } else {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
}

/* A server-sent event stream (/generate_stream) whose every "data:" line is JSON. */
static int sse_ok(const char *body)
{
    if (strncmp(body, "data:", 5) != 0)
        return 0;
    for (const char *p = body; (p = strstr(p, "data:")) != NULL;) {
        p += 5;
        const char *end = strchr(p, '\n');
        json_t *j = json_loadb(p, end ? (size_t)(end - p) : strlen(p), 0, NULL);
        if (!j)
            return 0;
        json_decref(j);
    }
    return 1;
}

static json_t *dispatch(const char *method, const char *path, const uint8_t *body, size_t len, unsigned *status)
{
    srv_detached_reply r;
    if (srv_dispatch_detached(app_routes, app_n_routes, &app, &dcfg, method, path, (const char *)body, len, &r) != 0)
        return NULL;
    static const unsigned documented[] = {200, 201, 202, 400, 404, 409, 413, 415, 422, 429, 503};
    int known = 0;
    for (size_t i = 0; i < sizeof documented / sizeof documented[0]; i++)
        known |= r.status == documented[i];
    json_t *j = sse_ok(r.body) ? json_object() : json_loadb(r.body, r.body_len, 0, NULL);
    if (!known || !j) {
        fprintf(stderr, "fuzz_request: %s %s answered %u: %.300s\n", method, path, r.status, r.body);
        abort();
    }
    *status = r.status;
    free(r.body);
    return j;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!n_body_routes)
        setup();
    if (size == 0)
        return 0;
    const srv_route *rt = &app_routes[body_routes[data[0] % n_body_routes]];
    char path[128];
    concrete_path(rt->pattern, path, sizeof path);
    unsigned status;
    json_t *j = dispatch(rt->method, path, data + 1, size - 1, &status);
    const char *id = json_string_value(json_object_get(j, "id"));
    if (status == 202 && id) { /* a job was queued: cancel it, so the queue keeps its room */
        char cancel[128];
        snprintf(cancel, sizeof cancel, "/jobs/%s/cancel", id);
        json_t *c = dispatch("POST", cancel, NULL, 0, &status);
        if (status != 200) {
            fprintf(stderr, "fuzz_request: cancelling the queued job %s answered %u\n", id, status);
            abort();
        }
        json_decref(c);
    }
    json_decref(j);
    return 0;
}
