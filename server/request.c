/* request.c — the request as handlers see it (accessors, the JSON body), the replies they
 * queue (JSON, bytes, errors, streams), and dispatch without a socket for tests. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "http_internal.h"
#include "json_util.h"
#include "json_watch.h"
#include "log.h"

/* ---------------------------------------------------------------- replies */

void srv_reply_header(srv_req *req, const char *name, const char *value)
{
    if (req->n_headers == MAX_REPLY_HEADERS)
        return;
    char *n = strdup(name), *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        return;
    }
    req->headers[req->n_headers][0] = n;
    req->headers[req->n_headers++][1] = v;
}

static const char oom_body[] = "{\"error\":\"out of memory\",\"error_type\":\"Backend\","
                               "\"code\":\"out_of_memory\"}";

/* The 503 out_of_memory reply when even the error body cannot be allocated: reply stays
 * NULL and srv_queue_reply sends its static body. */
static void reply_oom(srv_req *req)
{
    req->replied = 1;
    req->status = 503;
    req->reply = NULL;
    req->reply_len = 0;
    req->content_type = "application/json";
    req->err_code = "out_of_memory";
}

void srv_reply_bytes(srv_req *req, unsigned status, const char *content_type, const void *data,
                     size_t len)
{
    if (req->replied)
        return;
    char *copy = malloc(len ? len : 1);
    if (!copy) {
        reply_oom(req); /* keep running: a static body needs no allocation */
        return;
    }
    memcpy(copy, data, len);
    req->replied = 1;
    req->status = status;
    req->reply = copy;
    req->reply_len = len;
    req->content_type = content_type;
}

void srv_reply_json(srv_req *req, unsigned status, json_t *body)
{
    if (req->replied) {
        json_decref(body);
        return;
    }
    /* 9 significant digits print every float32 exactly and keep embeddings short. */
    char *text = body ? jsonw_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(body);
    if (!text) {
        /* Not srv_reply_error: its body is JSON too, and while memory stays short each try
         * would recurse into the next. */
        reply_oom(req);
        return;
    }
    req->replied = 1;
    req->status = status;
    req->reply = text;
    req->reply_len = strlen(text);
    req->content_type = "application/json";
}

void srv_reply_error(srv_req *req, srv_err e, const char *field, const char *fmt, ...)
{
    if (req->replied)
        return;
    const srv_err_info *info = srv_err_lookup(e);
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    json_t *body;
    int openai = req->route >= 0 && (req->d->routes[req->route].flags & SRV_ROUTE_OPENAI);
    if (openai) {
        body = json_pack("{s:{s:s, s:s, s:s?, s:s}}", "error", "message", msg, "type",
                         info->status >= 500 ? "server_error" : "invalid_request_error", "param",
                         field, "code", info->code);
    } else {
        body = json_pack("{s:s, s:s, s:s, s:s}", "error", msg, "error_type", info->type, "code",
                         info->code, "request_id", req->id);
        if (body && field)
            json_object_set_new(body, "field", json_string(field));
    }
    int has_retry = 0; /* a handler's own estimate stands */
    for (size_t i = 0; i < req->n_headers; i++)
        has_retry |= !strcasecmp(req->headers[i][0], "Retry-After");
    if ((info->status == 429 || info->status == 503) && !has_retry)
        srv_reply_header(req, "Retry-After", "1");
    req->err_code = info->code;
    srv_reply_json(req, info->status, body);
}

int srv_req_replied(const srv_req *req) { return req->replied; }

/* `done` and the free, once MHD is done with the stream and no fill runs. */
static void stream_finish(void *cls)
{
    srv_stream *st = cls;
    st->done(st->ctx);
    if (st->conn) {
        pthread_mutex_lock(&st->d->streams_lock);
        if (st->prev)
            st->prev->later = st->later;
        else
            st->d->streams = st->later;
        if (st->later)
            st->later->prev = st->prev;
        pthread_mutex_unlock(&st->d->streams_lock);
    }
    pthread_mutex_destroy(&st->lock);
    free(st);
}

/* MHD is done with the stream. `done` may wait (a generation's last step), so it runs on a
 * worker; after a fill still under way, by that fill. */
static void stream_close(void *cls)
{
    srv_stream *st = cls;
    pthread_mutex_lock(&st->lock);
    st->closed = 1;
    int filling = st->filling;
    pthread_mutex_unlock(&st->lock);
    if (!filling && srv_workers_submit(st->d->workers, &st->finish) != 0)
        stream_finish(st); /* stopping: the HTTP thread waits instead */
}

/* Lets MHD go on with the connection if it waits for a fill. Under st->lock. */
static void resume_locked(srv_stream *st)
{
    if (st->suspended) {
        st->suspended = 0;
        MHD_resume_connection(st->conn);
    }
}

/* On a worker: one call of `next` into the buffer, then MHD may send it. */
static void stream_fill(void *cls)
{
    srv_stream *st = cls;
    long n = st->next(st->ctx, st->buf, sizeof st->buf);
    pthread_mutex_lock(&st->lock);
    st->off = 0;
    st->len = n > 0 ? (size_t)n : 0;
    st->end = n > 0 ? 1 : n;
    st->filling = 0;
    int closed = st->closed;
    resume_locked(st);
    pthread_mutex_unlock(&st->lock);
    if (closed)
        stream_finish(st);
}

void srv_stream_resume(srv_stream *st)
{
    pthread_mutex_lock(&st->lock);
    resume_locked(st);
    pthread_mutex_unlock(&st->lock);
}

/* MHD's side: what the last fill left, else a new fill and the connection suspended until
 * it is done. */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    srv_stream *st = cls;
    ssize_t rc = 0;
    pthread_mutex_lock(&st->lock);
    if (st->off < st->len) {
        size_t n = st->len - st->off < max ? st->len - st->off : max;
        memcpy(buf, st->buf + st->off, n);
        st->off += n;
        rc = (ssize_t)n;
    } else if (st->end <= 0) {
        rc = st->end == 0 ? MHD_CONTENT_READER_END_OF_STREAM : MHD_CONTENT_READER_END_WITH_ERROR;
    } else if (atomic_load(&st->d->stopping)) {
        rc = MHD_CONTENT_READER_END_WITH_ERROR;
    } else if (!st->filling && srv_workers_submit(st->d->workers, &st->fill) != 0) {
        rc = MHD_CONTENT_READER_END_WITH_ERROR;
    } else {
        st->filling = 1;
        st->suspended = 1; /* the fill resumes it */
        MHD_suspend_connection(st->conn);
    }
    pthread_mutex_unlock(&st->lock);
    return rc;
}

void srv_reply_stream(srv_req *req, const char *content_type, srv_stream_next next, void (*done)(void *ctx),
                      void *ctx)
{
    srv_stream *st = req->replied ? NULL : malloc(sizeof *st);
    if (!st) {
        done(ctx);
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
        return;
    }
    *st = (srv_stream){.next = next, .done = done, .ctx = ctx, .d = req->d, .conn = req->conn, .end = 1};
    st->fill = (srv_task){stream_fill, st, NULL};
    st->finish = (srv_task){stream_finish, st, NULL};
    pthread_mutex_init(&st->lock, NULL);
    req->replied = 1;
    req->status = 200;
    req->content_type = content_type;
    req->stream = st;
}

enum MHD_Result srv_queue_reply(srv_req *req)
{
    struct MHD_Response *r;
    int streamed = req->stream != NULL;
    if (streamed) {
        srv_stream *st = req->stream;
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BUF, stream_read, st, stream_close);
        if (!r)
            return MHD_NO; /* srv_req_free ends the stream */
        req->stream = NULL; /* the response owns it now */
        pthread_mutex_lock(&st->d->streams_lock);
        st->later = st->d->streams;
        if (st->later)
            st->later->prev = st;
        st->d->streams = st;
        pthread_mutex_unlock(&st->d->streams_lock);
        MHD_add_response_header(r, "Cache-Control", "no-cache");
    } else if (req->reply) {
        r = MHD_create_response_from_buffer(req->reply_len, req->reply, MHD_RESPMEM_MUST_FREE);
    } else {
        r = MHD_create_response_from_buffer(sizeof oom_body - 1, (void *)oom_body, MHD_RESPMEM_PERSISTENT);
    }
    if (!r)
        return MHD_NO;
    req->reply = NULL; /* MHD owns it now */
    MHD_add_response_header(r, "Content-Type", req->content_type);
    MHD_add_response_header(r, "X-Request-Id", req->id);
    for (size_t i = 0; i < req->n_headers; i++)
        MHD_add_response_header(r, req->headers[i][0], req->headers[i][1]);
    enum MHD_Result rc = MHD_queue_response(req->conn, req->status, r);
    MHD_destroy_response(r);
    req->queued = 1;
    if (!streamed)
        srv_req_gates_end(req);
    return rc;
}

/* ---------------------------------------------------------------- request accessors */

srv_daemon *srv_req_daemon(const srv_req *req) { return req->d; }
const char *srv_req_id(const srv_req *req) { return req->id; }
const char *srv_req_method(const srv_req *req) { return req->method; }
const char *srv_req_path(const srv_req *req) { return req->url; }

const char *srv_req_param(const srv_req *req, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < req->params.n; i++)
        if (req->params.name_lens[i] == len && !memcmp(req->params.names[i], name, len))
            return req->params.values[i];
    return NULL;
}

typedef struct {
    const char *key;
    const char *first;
    unsigned count;
} arg_count;

static enum MHD_Result count_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
    (void)kind;
    arg_count *c = cls;
    if (key && strcasecmp(key, c->key) == 0) {
        if (c->count++ == 0)
            c->first = value ? value : "";
    }
    return MHD_YES;
}

const char *srv_req_query(const srv_req *req, const char *key, unsigned *count)
{
    arg_count c = {key, NULL, 0};
    if (req->conn)
        MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, count_arg, &c);
    if (count)
        *count = c.count;
    return c.first;
}

int srv_req_client_gone(const srv_req *req)
{
    const union MHD_ConnectionInfo *ci =
        req->conn ? MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD) : NULL;
    if (!ci)
        return 0;
    struct pollfd p = {ci->connect_fd, POLLIN | POLLRDHUP, 0};
    if (poll(&p, 1, 0) <= 0)
        return 0;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR))
        return 1;
    char c;
    return (p.revents & POLLIN) && recv(ci->connect_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

const char *srv_req_header(const srv_req *req, const char *name)
{
    if (!req->conn)
        return NULL;
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *srv_req_body(const srv_req *req, size_t *len)
{
    *len = req->body_len;
    return req->body ? req->body : "";
}

json_t *srv_req_json(srv_req *req)
{
    if (req->json)
        return req->json;
    json_error_t e;
    if (req->body_len == 0) {
        srv_reply_error(req, SRV_E_INVALID_JSON, NULL, "the request body is empty; expected a JSON object");
        return NULL;
    }
    int oom;
    json_t *j = jsonw_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &e, &oom);
    if (oom) {
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory while parsing the body");
        return NULL;
    }
    if (!j) {
        srv_reply_error(req, SRV_E_INVALID_JSON, NULL, "invalid JSON at byte %d: %s", e.position,
                        e.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        srv_reply_error(req, SRV_E_INVALID_JSON, NULL, "expected a JSON object at the top level");
        return NULL;
    }
    req->json = j;
    return j;
}

void srv_append_body(srv_req *req, const char *data, size_t n)
{
    size_t cap = req->d->cfg.max_body_bytes;
    if (n == 0)
        return;
    if (req->body_too_large || n > cap - req->body_len) {
        req->body_too_large = 1; /* keep consuming so the connection can answer 413 */
        return;
    }
    if (req->body_len + n > req->body_cap) {
        size_t want = req->body_cap ? req->body_cap * 2 : 4096;
        while (want < req->body_len + n)
            want *= 2;
        if (want > cap)
            want = cap;
        char *p = realloc(req->body, want);
        if (!p) {
            srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory for the request body");
            req->body_too_large = 1;
            return;
        }
        req->body = p;
        req->body_cap = want;
    }
    memcpy(req->body + req->body_len, data, n);
    req->body_len += n;
}

int srv_req_admit(srv_req *req, srv_gate *g, const char *what)
{
    srv_req_turn_end(req);
    for (size_t i = 0; i < req->n_gates; i++)
        if (req->gates[i] == g)
            return 0;
    if (req->n_gates == MAX_REQ_GATES || atomic_fetch_add(&g->held, 1) >= g->cap) {
        if (req->n_gates < MAX_REQ_GATES)
            atomic_fetch_sub(&g->held, 1);
        srv_reply_error(req, SRV_E_OVERLOADED, NULL,
                        "'%s' has %u requests running or waiting (%s); retry shortly", what, g->cap,
                        g->flag ? g->flag : "its limit");
        return -1;
    }
    req->gates[req->n_gates++] = g;
    return 0;
}

void srv_req_gates_end(srv_req *req)
{
    for (size_t i = 0; i < req->n_gates; i++)
        atomic_fetch_sub(&req->gates[i]->held, 1);
    req->n_gates = 0;
}

void srv_req_free(srv_req *req)
{
    srv_req_gates_end(req);
    if (req->stream) { /* replied with a stream that was never handed to MHD */
        req->stream->conn = NULL; /* never listed */
        stream_finish(req->stream);
    }
    free(req->body);
    free(req->reply);
    json_decref(req->json);
    for (size_t i = 0; i < req->n_headers; i++) {
        free(req->headers[i][0]);
        free(req->headers[i][1]);
    }
    free(req);
}

int srv_dispatch_detached(const srv_route *routes, size_t n_routes, void *app,
                          const srv_daemon_config *cfg, const char *method, const char *path,
                          const char *body, size_t body_len, srv_detached_reply *out)
{
    memset(out, 0, sizeof *out);
    srv_daemon d = {.cfg = *cfg, .routes = routes, .n_routes = n_routes, .app = app};
    srv_req *req = calloc(1, sizeof *req);
    if (!req)
        return -1;
    req->d = &d;
    req->method = method;
    req->url = path;
    snprintf(req->id, sizeof req->id, "detached");
    req->route = srv_route_match(routes, n_routes, method, path, &req->params, out->allow,
                                 sizeof out->allow);
    if (req->route == SRV_MATCH_NONE)
        srv_reply_error(req, SRV_E_NOT_FOUND, NULL, "no route for %s %.200s", method, path);
    else if (req->route == SRV_MATCH_METHOD)
        srv_reply_error(req, SRV_E_METHOD_NOT_ALLOWED, NULL, "%s is not allowed", method);
    else {
        srv_append_body(req, body, body_len);
        if (req->body_too_large)
            srv_reply_error(req, SRV_E_PAYLOAD_TOO_LARGE, NULL, "the body is over the limit");
        else
            routes[req->route].handler(req, app);
    }
    if (!req->replied)
        srv_reply_error(req, SRV_E_INTERNAL, NULL, "internal error");
    int lost = 0; /* a stream's reply could not be held whole: as when the copy fails, -1 */
    if (req->stream) { /* no socket: run the stream to its end into the reply */
        char chunk[4096];
        long n;
        while ((n = req->stream->next(req->stream->ctx, chunk, sizeof chunk)) > 0) {
            char *p = realloc(req->reply, req->reply_len + (size_t)n);
            if (!p) {
                lost = 1; /* not a reply cut short that would pass for a whole one */
                break;
            }
            memcpy(p + req->reply_len, chunk, (size_t)n);
            req->reply = p;
            req->reply_len += (size_t)n;
        }
        stream_finish(req->stream);
        req->stream = NULL;
    }
    out->status = req->status;
    out->body_len = req->reply ? req->reply_len : sizeof oom_body - 1;
    out->body = lost ? NULL : malloc(out->body_len + 1);
    int rc = out->body ? 0 : -1;
    if (out->body) {
        memcpy(out->body, req->reply ? req->reply : oom_body, out->body_len);
        out->body[out->body_len] = '\0';
    }
    srv_req_free(req);
    return rc;
}
