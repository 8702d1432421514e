#include "config.h"
#include "log.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef enum { OPT_STR, OPT_LONG } opt_type;

typedef struct {
    const char *name;  /* flag name without "--" */
    opt_type type;
    size_t offset;
    const char *def;   /* default as text; NULL = unset */
    long min, max;     /* bounds for OPT_LONG */
    const char *help;
} opt_spec;

#define S(field) OPT_STR, offsetof(srv_config, field)
#define L(field) OPT_LONG, offsetof(srv_config, field)

/* The one table of flags: parsing, environment, defaults and --help all come from it. */
static const opt_spec opts[] = {
    {"listen", S(listen), "127.0.0.1:8080", 0, 0, "address to serve on, HOST:PORT (port 0 picks a free port)"},
    {"port-file", S(port_file), NULL, 0, 0, "write the bound port to this file once listening"},
    {"data-dir", S(data_dir), "./data", 0, 0, "directory for the SQLite database, adapters and datasets"},
    {"embedder", S(embedder_dir), NULL, 0, 0, "sentence-transformers model directory (bi-encoder)"},
    {"reranker", S(reranker_dir), NULL, 0, 0, "cross-encoder model directory"},
    {"generator", S(generator_dir), NULL, 0, 0, "GPT-2 model directory"},
    {"adapters-dir", S(adapters_dir), NULL, 0, 0, "PEFT adapters directory (default DATA_DIR/adapters)"},
    {"adapter-cache-bytes", L(adapter_cache_bytes), "1073741824", 1, 1L << 40,
     "memory for loaded adapters; the least recently used are unloaded above it"},
    {"api-key", S(api_key), NULL, 0, 0, "require 'Authorization: Bearer KEY' on every route but /health"},
    {"api-key-file", S(api_key_file), NULL, 0, 0, "file with accepted API keys, one per line"},
    {"threads", L(threads), "0", 0, 1024, "compute threads (0 = number of cores)"},
    {"compute-nice", L(compute_nice), "5", 0, 19,
     "nice steps below the rest of ragd at which the models' compute threads run, so searches and requests preempt them (0 = none)"},
    {"train-workers", L(train_workers), "1", 0, 64, "training job worker threads"},
    {"max-queued-jobs", L(max_queued_jobs), "16", 1, 1 << 16, "training jobs waiting for a worker before 429"},
    {"max-dataset-rows", L(max_dataset_rows), "100000", 1, 100000, "most rows in one training request or dataset"},
    {"max-body-bytes", L(max_body_bytes), "2097152", 1024, 1L << 34, "largest request body accepted (413 above)"},
    {"max-batch", L(max_batch), "32", 1, 1 << 20, "most texts or id lists in one request (413 above)"},
    {"max-input-tokens", L(max_input_tokens), "8192", 1, 1 << 24, "most tokens in one input (413 above)"},
    {"max-concurrent", L(max_concurrent), "512", 1, 1 << 20, "requests in flight before 429"},
    {"max-model-requests", L(max_model_requests), "64", 1, 1 << 20,
     "requests running or waiting on one model before 429 (a generation holds its place to its last token)"},
    {"max-route-requests", L(max_route_requests), "64", 1, 1 << 20,
     "requests running at once on one route that computes without a model (/search, /tokenize, upserts ...) before 429"},
    {"max-pending-vectors", L(max_pending_vectors), "50000", 0, 1L << 30,
     "documents per collection acknowledged but not yet indexed before upserts answer 503 (0 = no bound)"},
    {"pending-wait-ms", L(pending_wait_ms), "2000", 0, 60000,
     "how long an upsert waits for the indexer to make room below --max-pending-vectors"},
    {"max-connections", L(max_connections), "256", 1, 1 << 20, "open connections before new ones are refused"},
    {"max-connections-per-ip", L(max_connections_per_ip), "64", 1, 1 << 20, "open connections per client IP"},
    {"timeout", L(timeout_s), "30", 1, 86400, "seconds an idle or stalled connection is kept"},
    {"shutdown-timeout", L(shutdown_timeout_s), "10", 0, 3600, "seconds SIGTERM waits for in-flight requests"},
    {"log-level", S(log_level), "info", 0, 0, "debug, info, warn or error"},
};
#define N_OPTS (sizeof opts / sizeof opts[0])

static int fail(srv_config_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(srv_config_error *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

static void env_name(const opt_spec *o, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "RAGD_");
    for (const char *p = o->name; *p && n + 1 < cap; p++)
        out[n++] = *p == '-' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
    out[n] = '\0';
}

/* Stores `value` for option `o`; `origin` names where it came from for error messages. */
static int set_opt(srv_config *cfg, const opt_spec *o, const char *value, const char *origin,
                   srv_config_error *err)
{
    char *field = (char *)cfg + o->offset;
    if (o->type == OPT_STR) {
        *(const char **)field = value;
        return 0;
    }
    char *end;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (errno || end == value || *end != '\0')
        return fail(err, "%s: expected an integer, got '%s'", origin, value);
    if (v < o->min || v > o->max)
        return fail(err, "%s: %ld is out of range [%ld, %ld]", origin, v, o->min, o->max);
    *(long *)field = v;
    return 0;
}

static const opt_spec *find_opt(const char *name, size_t len)
{
    for (size_t i = 0; i < N_OPTS; i++)
        if (strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0)
            return &opts[i];
    return NULL;
}

void srv_config_usage(void *out)
{
    FILE *f = out;
    fprintf(f, "ragd %s — tokenize, embed, search, rerank, generate and train adapters over HTTP\n\n"
               "Usage:\n  ragd serve [flags]\n  ragd --help\n  ragd --version\n\n"
               "Flags of serve (each also as an environment variable):\n", RAGD_VERSION);
    for (size_t i = 0; i < N_OPTS; i++) {
        char env[64], flag[64];
        env_name(&opts[i], env, sizeof env);
        snprintf(flag, sizeof flag, "--%s %s", opts[i].name, opts[i].type == OPT_LONG ? "N" : "VALUE");
        fprintf(f, "  %-32s %s\n  %-32s [%s%s%s]\n", flag, opts[i].help, "", env,
                opts[i].def ? ", default " : "", opts[i].def ? opts[i].def : "");
    }
}

int srv_config_parse(int argc, char **argv, srv_config *cfg, srv_command *cmd,
                     srv_config_error *err)
{
    memset(cfg, 0, sizeof *cfg);
    err->msg[0] = '\0';
    *cmd = SRV_CMD_SERVE;
    if (argc < 2)
        return fail(err, "no command given; try 'ragd --help'");
    const char *c = argv[1];
    if (!strcmp(c, "--help") || !strcmp(c, "-h") || !strcmp(c, "help")) {
        *cmd = SRV_CMD_HELP;
        return 0;
    }
    if (!strcmp(c, "--version") || !strcmp(c, "version")) {
        *cmd = SRV_CMD_VERSION;
        return 0;
    }
    if (strcmp(c, "serve") != 0)
        return fail(err, "unknown command '%s'; try 'ragd --help'", c);

    /* Defaults, then the environment, then the command line. */
    for (size_t i = 0; i < N_OPTS; i++) {
        char origin[96], env[64];
        env_name(&opts[i], env, sizeof env);
        const char *v = getenv(env);
        snprintf(origin, sizeof origin, "%s", v ? env : "default");
        if (!v)
            v = opts[i].def;
        if (v && set_opt(cfg, &opts[i], v, origin, err) != 0)
            return -1;
    }
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            *cmd = SRV_CMD_HELP;
            return 0;
        }
        if (strncmp(a, "--", 2) != 0)
            return fail(err, "unexpected argument '%s'", a);
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const opt_spec *o = find_opt(name, len);
        if (!o)
            return fail(err, "unknown flag '%.*s'; try 'ragd --help'", (int)(len + 2), a);
        const char *value = eq ? eq + 1 : NULL;
        if (!value) {
            if (i + 1 >= argc)
                return fail(err, "flag --%s needs a value", o->name);
            value = argv[++i];
        }
        char origin[80];
        snprintf(origin, sizeof origin, "--%s", o->name);
        if (set_opt(cfg, o, value, origin, err) != 0)
            return -1;
    }

    if (srv_log_parse_level(cfg->log_level) < 0)
        return fail(err, "--log-level: expected debug, info, warn or error, got '%s'", cfg->log_level);
    if (!cfg->adapters_dir) {
        int n = snprintf(cfg->adapters_buf, sizeof cfg->adapters_buf, "%s/adapters", cfg->data_dir);
        if (n < 0 || (size_t)n >= sizeof cfg->adapters_buf)
            return fail(err, "--data-dir is too long");
        cfg->adapters_dir = cfg->adapters_buf;
    }
    if (cfg->threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->threads = n > 0 ? n : 1;
    }
    return 0;
}
