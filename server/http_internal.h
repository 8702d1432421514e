/*
 * http_internal.h — what http.c (the daemon and the request lifecycle) and request.c (the
 * request as handlers see it, and replies) share. Not a public header.
 */
#ifndef RAGD_HTTP_INTERNAL_H
#define RAGD_HTTP_INTERNAL_H

#include <microhttpd.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "auth.h"
#include "http.h"
#include "metrics.h"

#define MAX_REPLY_HEADERS 8
#define MAX_REQ_GATES 4 /* places one request may hold (its route's, one per model it uses) */

struct srv_daemon {
    srv_daemon_config cfg;
    const srv_route *routes;
    size_t n_routes;
    void *app;
    struct MHD_Daemon *mhd;
    int listen_fd;
    char host[256];
    unsigned port;
    srv_auth *auth;
    srv_metrics *metrics;
    srv_gate *gates;          /* one per route; used by SRV_ROUTE_GATED routes */
    const char **methods, **patterns; /* labels for metrics */
    uint64_t id_seed;
    atomic_uint_fast64_t id_counter;
    atomic_int draining;
};

struct srv_req {
    srv_daemon *d;
    struct MHD_Connection *conn;
    char id[24];
    const char *method, *url;
    int route;                /* index, or SRV_MATCH_NONE / SRV_MATCH_METHOD */
    int path_route;           /* on SRV_MATCH_METHOD: the first route with the path's pattern */
    srv_params params;
    struct timespec t0;
    int inflight_counted;
    /* body */
    char *body;
    size_t body_len, body_cap;
    int body_too_large;
    json_t *json;
    srv_gate *gates[MAX_REQ_GATES]; /* places held, given back by srv_req_free */
    size_t n_gates;
    /* reply */
    int replied, queued;
    unsigned status;
    char *reply;              /* malloc'd body handed to MHD */
    size_t reply_len;
    const char *content_type;
    srv_stream_next stream_next;  /* a streamed reply instead of `reply` */
    void (*stream_done)(void *ctx);
    void *stream_ctx;
    char *headers[MAX_REPLY_HEADERS][2];
    size_t n_headers;
    const char *err_code;     /* for the log line */
};

/* Hands the stored reply to MHD. Returns MHD's verdict for the access handler. */
enum MHD_Result srv_queue_reply(srv_req *req);
/* Appends upload bytes to the request's body, counting them against the body cap. */
void srv_append_body(srv_req *req, const char *data, size_t n);
/* Frees a request and everything it owns. */
void srv_req_free(srv_req *req);

#endif
