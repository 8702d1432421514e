/* fault_app.c — see fault_app.h. */
#include "fault_app.h"

#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cu.h"
#include "fault.h"
#include "log.h"

int fault_app_open(fault_app *f, int with_generator)
{
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/ragd-fault-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->adapters, sizeof f->adapters, "%s/adapters", f->dir);
    const char *gen = with_generator ? cu_testdata("checkpoints/gpt2-names-makemore") : NULL;
    char gen_dir[4096] = "";
    if (with_generator && !gen) {
        fprintf(stderr, "fault_app: ../shared/testdata is absent\n");
        return -1;
    }
    if (gen)
        snprintf(gen_dir, sizeof gen_dir, "%s", gen);
    char *argv[] = {"ragd", "serve", "--data-dir", f->dir, "--max-batch", "16", "--train-workers", "0",
                    gen ? "--generator" : NULL, gen_dir, NULL};
    srv_command cmd;
    srv_config_error cerr;
    if (srv_config_parse(gen ? 10 : 8, argv, &f->cfg, &cmd, &cerr) != 0) {
        fprintf(stderr, "fault_app: %s\n", cerr.msg);
        return -1;
    }
    srv_log_set_level(SRV_LOG_ERROR);
    f->app.cfg = &f->cfg;
    f->dcfg.max_body_bytes = (size_t)f->cfg.max_body_bytes;
    st_error serr;
    if (st_open(f->dir, &f->app.db, &serr) != 0) {
        fprintf(stderr, "fault_app: %s\n", serr.msg);
        return -1;
    }
    if (app_train_start(&f->app) != 0) /* the jobs store; no workers (--train-workers 0) */
        return -1;
    for (int r = 0; r < APP_N_ROLES; r++) {
        f->app.models[r].dir = NULL;
        f->app.models[r].gate.cap = (unsigned)f->cfg.max_model_requests; /* as main.c sets them */
        f->app.models[r].gate.flag = "--max-model-requests";
    }
    f->app.models[APP_GENERATOR].dir = f->cfg.generator_dir;
    for (int r = 0; r < APP_N_ROLES; r++)
        atomic_init(&f->app.models[r].state, f->app.models[r].dir ? APP_MODEL_LOADING : APP_MODEL_ABSENT);
    app_load_models(&f->app);
    if (gen && atomic_load(&f->app.models[APP_GENERATOR].state) != APP_MODEL_READY) {
        fprintf(stderr, "fault_app: the generator did not load: %s\n", f->app.models[APP_GENERATOR].error);
        return -1;
    }
    return 0;
}

void fault_app_close(fault_app *f)
{
    app_train_stop(&f->app);
    app_unload_models(&f->app);
    st_close(f->app.db);
    f->app.db = NULL;
    if (*f->dir)
        fault_rmtree(f->dir);
}

int fault_app_request(fault_app *f, const char *method, const char *path, const char *body, fault_reply *out)
{
    srv_detached_reply r;
    memset(out, 0, sizeof *out);
    int rc = srv_dispatch_detached(app_routes, app_n_routes, &f->app, &f->dcfg, method, path, body ? body : "",
                                   body ? strlen(body) : 0, &r);
    out->status = r.status; /* set even when the copy of the body could not be made */
    if (rc != 0)
        return -1;
    out->body = r.body;
    return 0;
}

void fault_reply_parse(fault_reply *r)
{
    json_t *j = r->body ? json_loads(r->body, 0, NULL) : NULL;
    json_t *code = json_object_get(j, "code");
    if (!code) /* OpenAI's shape */
        code = json_object_get(json_object_get(j, "error"), "code");
    if (json_is_string(code))
        snprintf(r->code, sizeof r->code, "%s", json_string_value(code));
    else if (!j)
        snprintf(r->code, sizeof r->code, "(not JSON)");
    json_decref(j);
}

/* A JSON text without the top-level keys that change from request to request; NULL when the
 * text is not JSON. */
static json_t *json_steady(const char *text, size_t len)
{
    json_t *j = json_loadb(text, len, 0, NULL);
    json_object_del(j, "id");
    json_object_del(j, "created");
    json_object_del(j, "time_ms");
    return j;
}

/* 1 when two JSON texts are equal but for the keys json_steady drops. */
static int steady_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    json_t *ja = json_steady(a, alen), *jb = json_steady(b, blen);
    int same = ja && jb && json_equal(ja, jb);
    json_decref(ja);
    json_decref(jb);
    return same;
}

int fault_json_same(const char *a, const char *b) { return steady_equal(a, strlen(a), b, strlen(b)); }

/* The next whole event of an SSE body at *at: its data (after "data:" and one space) in
 * [*data, *data + *len), and *at moved past its blank line. 0 at the end or before a part
 * of an event; -1 when it is not one "data:" line. */
static int sse_next(const char **at, const char **data, size_t *len)
{
    const char *end = strstr(*at, "\n\n");
    if (!end)
        return 0;
    const char *d = *at;
    *at = end + 2;
    if (strncmp(d, "data:", 5) != 0 || memchr(d, '\n', (size_t)(end - d)))
        return -1;
    d += d[5] == ' ' ? 6 : 5;
    *data = d;
    *len = (size_t)(end - d);
    return 1;
}

static int is_str(const json_t *j, const char *want)
{
    return json_is_string(j) && !strcmp(json_string_value(j), want);
}

/* 1 when the data is the stream's error event for running out of memory, in its API's shape. */
static int sse_error_event(const char *data, size_t len, int openai)
{
    json_t *j = json_loadb(data, len, 0, NULL), *e = json_object_get(j, "error");
    int ok = openai ? json_object_size(j) == 1 && is_str(json_object_get(e, "message"), "out of memory for this generation") &&
                          is_str(json_object_get(e, "type"), "server_error") &&
                          is_str(json_object_get(e, "code"), "out_of_memory")
                    : json_object_size(j) == 2 && is_str(e, "out of memory for this generation") &&
                          is_str(json_object_get(j, "error_type"), "Backend");
    json_decref(j);
    return ok;
}

fault_sse fault_sse_compare(const char *body, const char *ref, int openai, int *trailing, char *why, size_t cap)
{
    const char *at = body, *rat = ref, *d, *rd;
    size_t len, rlen, i = 0;
    int rc, rrc;
    *why = '\0';
    for (;; i++) {
        rc = sse_next(&at, &d, &len);
        rrc = sse_next(&rat, &rd, &rlen);
        if (rc <= 0 || rrc <= 0) /* past the reference: the error event, checked below */
            break;
        if (!(len == rlen && !memcmp(d, rd, len)) && !steady_equal(d, len, rd, rlen))
            break;
    }
    *trailing = rc == 0 && *at != '\0';
    if (rc < 0) {
        snprintf(why, cap, "event %zu is not one data line", i + 1);
        return FAULT_SSE_BAD;
    }
    if (rc == 0)
        return rrc == 0 ? FAULT_SSE_WHOLE : FAULT_SSE_CUT;
    /* event i is not the reference's: only the error event may stand there, and last */
    if (!sse_error_event(d, len, openai)) {
        snprintf(why, cap, "event %zu is neither the fault-free one nor the out-of-memory error event: %.*s", i + 1,
                 (int)(len < 200 ? len : 200), d);
        return FAULT_SSE_BAD;
    }
    if (*at != '\0') {
        snprintf(why, cap, "the error event (event %zu) is not the last", i + 1);
        return FAULT_SSE_BAD;
    }
    return FAULT_SSE_FAILED;
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return type == FTW_DP ? rmdir(path) : unlink(path);
}

void fault_rmtree(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

void fault_app_settle(fault_app *f)
{
    for (int tries = 0; tries < 3000 && !st_indexer_idle(f->app.db); tries++)
        usleep(10000);
}

void fault_expect_all_freed(long baseline, const char *suite, long injected)
{
    long left = fault_alloc_live() - baseline;
    if (left)
        fprintf(stderr, "\n%s: %ld blocks still live after closing everything\n", suite, left);
    CU_ASSERT_EQUAL(left, 0);
    printf("\n  %s: %ld allocation faults injected in total", suite, injected);
    CU_ASSERT(injected > 0);
}
