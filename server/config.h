/*
 * config.h — the command line and RAGD_* environment of `ragd serve`.
 *
 * Every flag --NAME has an environment variable RAGD_NAME (upper case, '-' -> '_');
 * a flag on the command line beats the environment, which beats the default.
 */
#ifndef RAGD_CONFIG_H
#define RAGD_CONFIG_H

#include <stddef.h>

typedef struct {
    char msg[256];
} srv_config_error;

typedef struct {
    const char *listen;          /* HOST:PORT; port 0 picks a free port */
    const char *port_file;
    const char *data_dir;
    const char *embedder_dir, *reranker_dir, *generator_dir;
    const char *adapters_dir;    /* default: DATA_DIR/adapters (filled by srv_config_parse) */
    const char *api_key, *api_key_file;
    const char *log_level;
    long threads, compute_nice, train_workers, max_queued_jobs, max_dataset_rows;
    long max_body_bytes, max_batch, max_input_tokens, max_concurrent, max_model_requests;
    long max_route_requests;
    long max_connections, max_connections_per_ip;
    long timeout_s, shutdown_timeout_s;
    long adapter_cache_bytes;
    long max_pending_vectors, pending_wait_ms;
    char adapters_buf[4096];     /* storage for the derived adapters_dir */
} srv_config;

typedef enum { SRV_CMD_SERVE, SRV_CMD_HELP, SRV_CMD_VERSION } srv_command;

/* Parse `ragd <command> [flags]`. Strings point into argv, the environment or static
 * defaults, all of which outlive the process's use of the config. Returns 0, or -1 with
 * a message naming the flag in err. `cmd` receives the command. */
int srv_config_parse(int argc, char **argv, srv_config *cfg, srv_command *cmd,
                     srv_config_error *err);

/* Writes the usage text (every flag, its variable and default) to `out`. */
void srv_config_usage(void *out /* FILE* */);

#endif
