/*
 * harness.h — the integration tests' view of a real ragd: started as a child process on
 * 127.0.0.1 port 0 with its own data directory, driven through one libcurl helper (and a
 * raw-socket helper for malformed HTTP that libcurl will not send), stopped with SIGTERM.
 */
#ifndef RAGD_IT_HARNESS_H
#define RAGD_IT_HARNESS_H

#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct {
    pid_t pid;
    unsigned port;
    char dir[64];   /* data dir; also holds stderr.log and the port file */
} it_server;

typedef struct {
    long status;
    char *body;      /* NUL-terminated */
    size_t len;
    char *headers;   /* raw response headers, NUL-terminated */
    json_t *json;    /* parsed body, or NULL */
} it_response;

/* Starts ragd with `args` (NULL-terminated, after the harness's own --listen/--port-file/
 * --data-dir) and `env` ("NAME=value", NULL-terminated, may be NULL). Returns 0 when it is
 * listening; -1 when it did not come up (its log is printed). */
int it_start(it_server *s, const char *const *args, const char *const *env);
/* Sends SIGTERM and waits; returns the exit status (or -1 when it had to be killed). */
int it_stop(it_server *s);
/* Path of a file under ../shared/testdata, or NULL when absent. */
const char *it_testdata(const char *rel);

/* One request. `headers` is NULL-terminated ("Name: value") or NULL; a body of NULL sends
 * none. The default Content-Type for a body is application/json unless a header sets it. */
it_response it_request(const it_server *s, const char *method, const char *path, const char *const *headers,
                       const char *body, size_t len);
/* POST JSON text to path. */
it_response it_post(const it_server *s, const char *path, const char *json);
it_response it_get(const it_server *s, const char *path);
void it_free(it_response *r);

/* Sends raw bytes on a new connection and returns what comes back before the server closes
 * or `timeout_ms` of silence passes (heap, NUL-terminated; caller frees). */
char *it_raw(const it_server *s, const char *bytes, size_t len, int timeout_ms);

/* Asserts an error reply: status, code, optional field, the DESIGN §4.7 shape, and that
 * request_id equals the X-Request-Id header. Returns 1 when all hold (failures are printed). */
int it_is_error(const it_response *r, long status, const char *code, const char *field);
/* A header's value in the response (first match, case-insensitive), copied into out. */
int it_header(const it_response *r, const char *name, char *out, size_t cap);

#endif
