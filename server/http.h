/*
 * http.h — the HTTP daemon over libmicrohttpd, and the request context handlers see.
 *
 * Request lifecycle (all in http.c):
 *   headers  -> request id, route match (404/405), auth (401), in-flight cap (429),
 *               Content-Type (415), Content-Length against --max-body-bytes (413, before
 *               any body byte is buffered);
 *   body     -> appended to the request's buffer, counted against the cap (chunked too);
 *   complete -> a SRV_ROUTE_GATED route's own gate (429), then the route's handler runs on
 *               a worker thread (the health routes' on the HTTP thread) while the
 *               connection is suspended, and queues exactly one reply through the
 *               srv_reply_* functions;
 *   finished -> metrics, one log line, everything the request owns is freed.
 *
 * Handlers must be reentrant: per-request state lives in srv_req, shared state in the app.
 */
#ifndef RAGD_HTTP_H
#define RAGD_HTTP_H

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "errors.h"
#include "router.h"

typedef struct srv_daemon srv_daemon;

typedef struct {
    const char *listen;            /* HOST:PORT */
    size_t max_body_bytes;
    unsigned max_concurrent;
    unsigned max_route_requests;   /* places at each SRV_ROUTE_GATED route's gate */
    unsigned max_connections, max_connections_per_ip;
    unsigned timeout_s;
    const char *api_key, *api_key_file;
} srv_daemon_config;

typedef struct {
    char msg[256];
} srv_daemon_error;

/* Creates the daemon for `routes` (which must outlive it); `app` is passed to handlers.
 * Nothing listens until srv_daemon_start. */
int srv_daemon_create(const srv_daemon_config *cfg, const srv_route *routes, size_t n_routes,
                      void *app, srv_daemon **out, srv_daemon_error *err);
/* Binds and starts serving. On success the bound port is srv_daemon_port(). */
int srv_daemon_start(srv_daemon *d, srv_daemon_error *err);
unsigned srv_daemon_port(const srv_daemon *d);
const char *srv_daemon_host(const srv_daemon *d);
/* Answers every new request but /health's with 503 shutting_down (the listener stays open,
 * so clients get a reason rather than a refusal) and waits up to `timeout_s` for in-flight
 * requests. Returns the number still in flight. */
long srv_daemon_drain(srv_daemon *d, unsigned timeout_s);
int srv_daemon_draining(const srv_daemon *d);
void srv_daemon_destroy(srv_daemon *d); /* stops it; accepts NULL */
/* Prometheus text for the HTTP metrics (heap string, caller frees); NULL when out of memory. */
char *srv_daemon_metrics(srv_daemon *d, size_t *len);
const srv_daemon_config *srv_daemon_get_config(const srv_daemon *d);

/* ---- the request, as a handler sees it ---- */

srv_daemon *srv_req_daemon(const srv_req *req);
const char *srv_req_id(const srv_req *req);
const char *srv_req_method(const srv_req *req);
const char *srv_req_path(const srv_req *req);
/* Path capture `{name}` of the matched pattern, or NULL. */
const char *srv_req_param(const srv_req *req, const char *name);
/* Query argument (percent-decoded by MHD), or NULL. *count receives how many times the key
 * appears, so handlers can reject a repeated key. */
const char *srv_req_query(const srv_req *req, const char *key, unsigned *count);
const char *srv_req_header(const srv_req *req, const char *name);
/* 1 when the client has closed (or half-closed) its connection while the handler runs, so
 * long work for it can stop; 0 otherwise, and without a socket. Never blocks or reads. */
int srv_req_client_gone(const srv_req *req);
const char *srv_req_body(const srv_req *req, size_t *len);

/* The body parsed as a JSON object (duplicate keys rejected). On failure a 400 is queued
 * and NULL returned. The tree belongs to the request. */
json_t *srv_req_json(srv_req *req);

/* ---- replies: each request gets exactly one; later calls are ignored ---- */

/* Adds a header to the reply queued next (copied). */
void srv_reply_header(srv_req *req, const char *name, const char *value);
/* Serializes `body` (the reference is stolen) as the reply. */
void srv_reply_json(srv_req *req, unsigned status, json_t *body);
/* Replies with a copy of `data`. */
void srv_reply_bytes(srv_req *req, unsigned status, const char *content_type, const void *data,
                     size_t len);
/* The one error helper: DESIGN §4.7 body (or OpenAI's shape on OpenAI routes), status from
 * the error table, Retry-After on 429/503. `field` is a JSON pointer or NULL. */
void srv_reply_error(srv_req *req, srv_err e, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int srv_req_replied(const srv_req *req);

/* A streamed reply (server-sent events, say). `next` is called on a worker thread whenever
 * MHD has sent what the last call gave: it may wait for more, writes up to `cap` bytes into
 * buf and returns how many (> 0), 0 when the stream has ended, or -1 to abort the
 * connection. `done` runs exactly once when the stream is over, finished or because the
 * client went away, never while `next` runs, and frees `ctx`, which must not point into the
 * request (the request may be freed first). */
typedef long (*srv_stream_next)(void *ctx, char *buf, size_t cap);
void srv_reply_stream(srv_req *req, const char *content_type, srv_stream_next next, void (*done)(void *ctx),
                      void *ctx);

/* ---- admission: a bound on the requests queued in front of a shared resource ---- */

/* A gate lets at most `cap` requests hold a place at once: for a model, those running on
 * it and those waiting for its batcher; for a route that computes without a model
 * (SRV_ROUTE_GATED: a search, a tokenization), those running it. So the wait of an admitted
 * request is bounded and the rest are told to come back (TEI's max_concurrent_requests).
 * Zero-initialize it and set cap and flag before serving. */
typedef struct srv_gate {
    atomic_uint held;
    unsigned cap;
    const char *flag;  /* the flag that sets cap, named in the 429 ("--max-model-requests") */
} srv_gate;

/* Takes a place at `g` for the rest of the request. The place is given back when the
 * request is over (reply sent, stream ended or client gone), so a streamed generation keeps
 * it to its last token; taking the same gate twice in one request takes one place. When
 * the gate is full, queues 429 overloaded (with Retry-After) naming `what` and returns -1;
 * otherwise 0. */
int srv_req_admit(srv_req *req, srv_gate *g, const char *what);

/* ---- without a socket: unit tests and fuzz targets ---- */

typedef struct {
    unsigned status;
    char *body;            /* heap, NUL-terminated; caller frees */
    size_t body_len;
    char allow[128];       /* the Allow header of a 405 */
} srv_detached_reply;

/* Runs one request through routing, the body cap and the route's handler exactly as the
 * daemon would, but without a connection: no headers (so no auth, Content-Type or query
 * arguments) and no metrics. Returns 0 and fills *out, or -1 when out of memory. */
int srv_dispatch_detached(const srv_route *routes, size_t n_routes, void *app,
                          const srv_daemon_config *cfg, const char *method, const char *path,
                          const char *body, size_t body_len, srv_detached_reply *out);

#endif
