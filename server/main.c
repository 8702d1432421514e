/*
 * main.c — the composition root: parses the configuration, opens the store, starts the
 * HTTP daemon, loads the models, and drains cleanly on SIGTERM/SIGINT.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app.h"
#include "config.h"
#include "http.h"
#include "kernels.h"
#include "log.h"
#include "store.h"

/* Writes the port atomically (temp file + rename) so a reader never sees a partial file. */
static int write_port_file(const char *path, unsigned port)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return -1;
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    int ok = fprintf(f, "%u\n", port) > 0;
    ok &= fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int serve(const srv_config *cfg)
{
    srv_log_set_level((srv_log_level)srv_log_parse_level(cfg->log_level));

    /* Signals are taken synchronously by this thread; every other thread inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct app app = {.cfg = cfg, .started_at = time(NULL)};
    const char *dirs[APP_N_ROLES] = {cfg->generator_dir, cfg->embedder_dir, cfg->reranker_dir};
    for (int r = 0; r < APP_N_ROLES; r++) {
        app.models[r].dir = dirs[r] && *dirs[r] ? dirs[r] : NULL;
        app.models[r].gate.cap = (unsigned)cfg->max_model_requests;
        app.models[r].gate.flag = "--max-model-requests";
        atomic_init(&app.models[r].state, app.models[r].dir ? APP_MODEL_LOADING : APP_MODEL_ABSENT);
    }
    /* Each model's batcher runs one forward pass at a time, on every compute thread, below
     * the priority of the threads that serve requests (docs/RELIABILITY.md §5). */
    k_set_nice((int)cfg->compute_nice);
    if (k_set_threads((int)cfg->threads) != 0)
        srv_log(SRV_LOG_WARN, "fewer compute threads than asked", "threads=%ld", cfg->threads);

    st_error serr;
    if (st_open(cfg->data_dir, &app.db, &serr) != 0) {
        srv_log(SRV_LOG_ERROR, "cannot open the database", "data_dir=\"%s\" error=\"%s\"",
                cfg->data_dir, serr.msg);
        return 1;
    }
    st_set_pending_limit(app.db, (size_t)cfg->max_pending_vectors, (unsigned)cfg->pending_wait_ms);
    /* Jobs before the daemon: /jobs answers from the first request, and queued jobs wait in
     * their workers for the generator to load. */
    if (app_train_start(&app) != 0) {
        app_train_stop(&app);
        st_close(app.db);
        return 1;
    }
    srv_daemon_config dc = {
        .listen = cfg->listen,
        .max_body_bytes = (size_t)cfg->max_body_bytes,
        .max_concurrent = (unsigned)cfg->max_concurrent,
        .max_route_requests = (unsigned)cfg->max_route_requests,
        .max_connections = (unsigned)cfg->max_connections,
        .max_connections_per_ip = (unsigned)cfg->max_connections_per_ip,
        .timeout_s = (unsigned)cfg->timeout_s,
        .api_key = cfg->api_key,
        .api_key_file = cfg->api_key_file,
    };
    srv_daemon_error derr;
    if (srv_daemon_create(&dc, app_routes, app_n_routes, &app, &app.daemon, &derr) != 0 ||
        srv_daemon_start(app.daemon, &derr) != 0) {
        srv_log(SRV_LOG_ERROR, "cannot start the HTTP server", "error=\"%s\"", derr.msg);
        srv_daemon_destroy(app.daemon);
        app_train_stop(&app);
        st_close(app.db);
        return 1;
    }
    unsigned port = srv_daemon_port(app.daemon);
    printf("listening on http://%s:%u\n", srv_daemon_host(app.daemon), port);
    fflush(stdout);
    if (cfg->port_file && write_port_file(cfg->port_file, port) != 0)
        srv_log(SRV_LOG_WARN, "cannot write the port file", "path=\"%s\" error=\"%s\"",
                cfg->port_file, strerror(errno));
    srv_log(SRV_LOG_INFO, "ragd started", "version=%s listen=%s:%u data_dir=\"%s\"", RAGD_VERSION,
            srv_daemon_host(app.daemon), port, cfg->data_dir);

    app_load_models(&app);
    int rc = 0;
    for (int r = 0; r < APP_N_ROLES; r++)
        if (atomic_load(&app.models[r].state) == APP_MODEL_FAILED)
            rc = 1;

    if (rc == 0) {
        int sig = 0;
        sigwait(&sigs, &sig);
        srv_log(SRV_LOG_INFO, "draining", "signal=%s timeout_s=%ld", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                cfg->shutdown_timeout_s);
        /* A second signal during the drain ends the process at once. */
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        pthread_sigmask(SIG_UNBLOCK, &sigs, NULL);
    } else {
        srv_log_msg(SRV_LOG_ERROR, "a configured model failed to load; stopping");
    }
    app_train_quiesce(&app);
    long left = srv_daemon_drain(app.daemon, (unsigned)cfg->shutdown_timeout_s);
    if (left > 0)
        srv_log(SRV_LOG_WARN, "drain deadline passed", "in_flight=%ld", left);
    srv_daemon_destroy(app.daemon);
    app_train_stop(&app);
    app_unload_models(&app);
    st_close(app.db);
    srv_log_msg(SRV_LOG_INFO, "stopped");
    return rc;
}

int main(int argc, char **argv)
{
    srv_config cfg;
    srv_command cmd;
    srv_config_error err;
    if (srv_config_parse(argc, argv, &cfg, &cmd, &err) != 0) {
        fprintf(stderr, "ragd: %s\n", err.msg);
        return 2;
    }
    switch (cmd) {
    case SRV_CMD_HELP:
        srv_config_usage(stdout);
        return 0;
    case SRV_CMD_VERSION:
        printf("ragd %s\n", RAGD_VERSION);
        return 0;
    default:
        return serve(&cfg);
    }
}
