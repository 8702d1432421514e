/*
 * harness.h — the integration tests' view of a real ragd: started as a child process on
 * 127.0.0.1 port 0 with its own data directory (mkdtemp), driven through one libcurl
 * helper (and raw sockets for malformed HTTP that libcurl will not send), stopped with
 * SIGTERM. The binary comes from RAGD_BIN, test data from RAGD_SHARED/testdata, the source
 * tree from RAGD_SOURCE_ROOT.
 *
 * Every function here reports what went wrong on stderr and returns a value the test asserts;
 * nothing here calls CUnit, so suites decide what is fatal.
 */
#ifndef RAGD_IT_HARNESS_H
#define RAGD_IT_HARNESS_H

#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct {
    pid_t pid;          /* 0 once it has exited and been reaped */
    int exit_status;    /* WEXITSTATUS once reaped; -1 when killed by a signal */
    unsigned port;
    char dir[64];       /* data dir; also holds stderr.log and the port file */
    char port_file[96];
} it_server;

typedef struct {
    long status;         /* 0 when no HTTP reply came back */
    char *body;          /* NUL-terminated (the body may hold NULs before it) */
    size_t len;
    char *headers;       /* raw response header block, NUL-terminated */
    json_t *json;        /* the body parsed, or NULL */
} it_response;

/* ---- the server process ---- */

/* Starts ragd (`args` after the harness's own --listen/--port-file/--data-dir, and `env`
 * entries "NAME=value"; both NULL-terminated or NULL) and waits until it writes its port
 * file. Returns 0 when listening, 1 when it exited first (s->exit_status says how; the
 * log stays readable until it_stop), -1 when neither happened within 30 s. */
int it_spawn(it_server *s, const char *const *args, const char *const *env);
/* it_spawn, then waits until /health answers 200. Returns 0 or -1 (the log is printed). */
int it_start(it_server *s, const char *const *args, const char *const *env);
/* Waits up to timeout_ms for the process to exit by itself. Returns 0 once it has. */
int it_wait_exit(it_server *s, int timeout_ms);
/* SIGTERM (when still running), wait up to 15 s (then SIGKILL), remove the data dir.
 * Returns the exit status (0 = clean), or -1 after a signal or a kill. A non-zero result
 * prints the server's log, so sanitizer reports show up in the test output. */
int it_stop(it_server *s);
/* 1 when the server's "stderr.log" or "stdout.log" (in its data dir) so far contains `needle`. */
/* Removes a directory and everything under it, as rm -rf does. Returns 0, or -1 (printed). */
int it_remove_tree(const char *dir);
int it_log_contains(const it_server *s, const char *file, const char *needle);

/* Runs `ragd ARGS...` to completion, capturing stdout and stderr together into out (at most
 * cap-1 bytes, NUL-terminated). Returns the exit status, or -1. */
int it_run(const char *const *args, char *out, size_t cap);

/* Path of RAGD_SHARED/testdata/REL in a heap string (caller frees), or NULL when absent. */
char *it_testdata(const char *rel);
/* Path of RAGD_SOURCE_ROOT/REL (default "."), in out. */
void it_source_path(const char *rel, char *out, size_t cap);

/* ---- requests ---- */

/* The one request helper. `headers` ("Name: value", NULL-terminated) may be NULL; a NULL
 * body sends none. A body gets "Content-Type: application/json" unless headers set one. */
it_response it_request(const it_server *s, const char *method, const char *path, const char *const *headers,
                       const char *body, size_t len);
it_response it_post(const it_server *s, const char *path, const char *json); /* it_request, POST */
it_response it_get(const it_server *s, const char *path);
void it_free(it_response *r);

/* A header's value (first match, case-insensitive) copied into out. Returns 1 when present. */
int it_header(const it_response *r, const char *name, char *out, size_t cap);
/* Checks an error reply against DESIGN §4.7: status; code; error_type as the contract maps
 * that code; a string "error"; "field" equal to `field` (absent when field is NULL); and
 * request_id equal to the X-Request-Id header. Prints what differs; returns 1 when all hold. */
int it_is_error(const it_response *r, long status, const char *code, const char *field);
/* The same on OpenAI routes: {"error":{"message","type","param","code"}}. */
int it_is_openai_error(const it_response *r, long status, const char *code);
/* The probe after a rejected request: POST /tokenize "Hello world" must give GPT-2's ids
 * [15496, 995] (a server started with --generator gpt2). Returns 1 when it does. */
int it_probe(const it_server *s);
/* The value of an unlabelled metric in a /metrics text, or -1 when it is absent. */
double it_metric(const char *text, const char *name);
/* Polls /metrics until the in-flight gauge equals `want` (or 3 s pass). Requests are counted
 * when MHD reports them complete, which can be just after the client has its answer. */
int it_inflight_reaches(const it_server *s, double want);

/* ---- raw sockets ---- */

typedef struct {
    int closed;  /* the server closed the connection (rather than going quiet) */
    long ms;     /* from the last byte sent to the close or the end of the wait */
} it_raw_info;

/* Sends raw bytes on a new connection and returns what came back before the server closed
 * the connection or `timeout_ms` of silence passed (heap, NUL-terminated; caller frees;
 * never NULL unless out of memory). `info` may be NULL. */
char *it_raw(const it_server *s, const char *bytes, size_t len, int timeout_ms, it_raw_info *info);
/* Opens a connection and sends `bytes` on it, leaving it open. Returns the fd, or -1. */
int it_open(const it_server *s, const char *bytes, size_t len);
/* The status code of a raw response ("HTTP/1.1 413 ..."), or 0. */
long it_raw_status(const char *resp);

#endif
