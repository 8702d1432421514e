/* fuzz_request.c — request parsing: the first byte picks one of ragd's routes that take a
 * JSON body, the rest is the body. It runs routing, the body cap, JSON parsing, field
 * validation and the handler exactly as the daemon does (srv_dispatch_detached), with the
 * real tokenizers when ../shared/testdata is present (RAGD_SHARED) and a real store in a
 * temporary directory (so the collection and search routes write and read SQLite), and
 * checks that every reply is JSON with a status ragd documents. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app.h"

static struct app app;
static srv_config cfg;
static srv_daemon_config dcfg;
static size_t body_routes[32], n_body_routes;

static char data_dir[64];

/* The temporary store goes when the process ends. */
static void remove_store(void)
{
    st_close(app.db);
    static const char *const files[] = {"ragd.db", "ragd.db-wal", "ragd.db-shm"};
    char path[128];
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", data_dir, files[i]);
        unlink(path);
    }
    rmdir(data_dir);
}

static void setup(void)
{
    char *argv[] = {"ragd", "serve", "--max-batch", "8", "--max-input-tokens", "512", NULL};
    srv_command cmd;
    srv_config_error err;
    if (srv_config_parse(6, argv, &cfg, &cmd, &err) != 0)
        abort();
    app.cfg = &cfg;
    dcfg.max_body_bytes = 1 << 16;
    const char *shared = getenv("RAGD_SHARED");
    static char dirs[APP_N_ROLES][4096];
    static const char *const rel[APP_N_ROLES] = {"tokenizers/gpt2", "tokenizers/bert-base-uncased",
                                                 "tokenizers/bert-base-uncased"};
    for (int r = 0; r < APP_N_ROLES; r++) {
        snprintf(dirs[r], sizeof dirs[r], "%s/testdata/%s", shared ? shared : "../shared", rel[r]);
        app.models[r].dir = dirs[r];
        atomic_init(&app.models[r].state, APP_MODEL_LOADING);
    }
    app_load_models(&app); /* models that fail to load answer 503, which is fine here */
    snprintf(data_dir, sizeof data_dir, "/tmp/ragd-fuzz-XXXXXX");
    st_error serr;
    if (!mkdtemp(data_dir) || st_open(data_dir, &app.db, &serr) != 0)
        abort();
    atexit(remove_store);
    for (size_t i = 0; i < app_n_routes; i++)
        if (!(app_routes[i].flags & SRV_ROUTE_NO_BODY) && n_body_routes < 32)
            body_routes[n_body_routes++] = i;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!n_body_routes)
        setup();
    if (size == 0)
        return 0;
    const srv_route *rt = &app_routes[body_routes[data[0] % n_body_routes]];
    srv_detached_reply r;
    if (srv_dispatch_detached(app_routes, app_n_routes, &app, &dcfg, rt->method, rt->pattern,
                              (const char *)data + 1, size - 1, &r) != 0)
        return 0;
    static const unsigned documented[] = {200, 201, 400, 404, 409, 413, 422, 503};
    int known = 0;
    for (size_t i = 0; i < sizeof documented / sizeof documented[0]; i++)
        known |= r.status == documented[i];
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    if (!known || !j) {
        fprintf(stderr, "fuzz_request: %s answered %u: %.300s\n", rt->pattern, r.status, r.body);
        abort();
    }
    json_decref(j);
    free(r.body);
    return 0;
}
