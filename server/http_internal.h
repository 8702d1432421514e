/*
 * http_internal.h — what http.c (the daemon and the request lifecycle) and request.c (the
 * request as handlers see it, and replies) share. Not a public header.
 */
#ifndef RAGD_HTTP_INTERNAL_H
#define RAGD_HTTP_INTERNAL_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "auth.h"
#include "http.h"
#include "metrics.h"
#include "workers.h"

#define MAX_REPLY_HEADERS 8
#define MAX_REQ_GATES 4 /* places one request may hold (its route's, one per model it uses) */

typedef struct srv_stream srv_stream;

/* Turns in arrival order, `cap` at once (SRV_ROUTE_CPU). A request handed off takes a turn
 * at once when fewer than `cap` run and none waits; else it joins the queue, its connection
 * suspended, holding no thread. A turn that ends passes to the head of the queue, and the
 * thread that ended it runs that request next: under load `cap` threads go from one request
 * to the next without sleeping, and no request waits for a thread to wake. */
typedef struct {
    pthread_mutex_t lock;
    srv_req *head, *tail;
    unsigned running, cap;
} srv_turns;

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
    srv_turns *turns;         /* one per route; used by SRV_ROUTE_CPU routes */
    const char **methods, **patterns; /* labels for metrics */
    uint64_t id_seed;
    atomic_uint_fast64_t id_counter;
    atomic_int draining;
    srv_workers *workers;     /* run the handlers */
    pthread_mutex_t streams_lock;
    srv_stream *streams;      /* streamed replies handed to MHD, so stopping can wake them */
    atomic_int stopping;      /* no stream suspends and no handler is handed off any more */
};

/* A streamed reply once the handler has chosen it (see srv_reply_stream). The stream's
 * `next` may wait, so it runs on a worker, one call at a time, filling `buf`; the HTTP thread
 * sends what is there and suspends the connection until the next fill. */
#define STREAM_BUF 16384
struct srv_stream {
    srv_stream_next next;
    void (*done)(void *ctx);
    void *ctx;
    srv_daemon *d;
    struct MHD_Connection *conn; /* NULL without a socket (srv_dispatch_detached) */
    srv_task fill, finish;       /* a call of `next`; `done` and the free */
    pthread_mutex_t lock;        /* guards what follows */
    size_t len, off;             /* buf[off, len) is still to be sent */
    long end;                    /* 1 while going on; then what `next` returned (0 or -1) */
    int filling, suspended, closed; /* closed: MHD is done with the stream */
    srv_stream *prev, *later;    /* in the daemon's list */
    char buf[STREAM_BUF];
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
    srv_gate *gates[MAX_REQ_GATES]; /* places held, given back by srv_req_gates_end */
    size_t n_gates;
    /* reply */
    int replied, queued;
    unsigned status;
    char *reply;              /* malloc'd body handed to MHD */
    size_t reply_len;
    const char *content_type;
    srv_stream *stream;       /* a streamed reply instead of `reply` */
    srv_task task;            /* the handler's run on a worker */
    srv_turns *turn;          /* the turn it runs in (SRV_ROUTE_CPU), until it ends or waits for a model */
    srv_req *turn_next;       /* the next request waiting for a turn */
    int handed_off;           /* to a worker; the connection is suspended until it replies */
    char *headers[MAX_REPLY_HEADERS][2];
    size_t n_headers;
    const char *err_code;     /* for the log line */
};

/* Hands the stored reply to MHD. Returns MHD's verdict for the access handler. */
enum MHD_Result srv_queue_reply(srv_req *req);
/* Appends upload bytes to the request's body, counting them against the body cap. */
void srv_append_body(srv_req *req, const char *data, size_t n);
/* Ends the request's turn (nothing without one): srv_req_admit calls it, since from there on
 * the request waits for a model, whose gate bounds it, and holding a turn would keep a core's
 * share idle. The request waiting next, if any, starts on a worker. */
void srv_req_turn_end(srv_req *req);
/* Gives back the request's places at its gates. A reply in full gives them back when it is
 * queued, before it is sent: a client that sends its next request the moment it has read
 * this reply finds the place free. A stream holds them until it ends (srv_req_free). */
void srv_req_gates_end(srv_req *req);
/* Lets MHD go on with a stream suspended for lack of data (on stopping: to end it). */
void srv_stream_resume(srv_stream *st);
/* Frees a request and everything it owns. */
void srv_req_free(srv_req *req);

#endif
