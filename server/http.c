/* http.c — the daemon over libmicrohttpd and each request's lifecycle: early checks on the
 * headers, the body, the handler, completion (metrics, the log line). */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http_internal.h"
#include "log.h"

#define THREAD_STACK_BYTES (8u << 20)    /* room for jansson's 2048-deep recursion */
#define CONNECTION_MEMORY (32u << 10)    /* per-connection header/read buffer (431 above) */
#define FIRST_BODY_ALLOC (64u << 10)     /* grown as bytes arrive: a promise reserves nothing */
#define MAX_IO_THREADS 4                 /* threads serving the sockets: one per core, up to this */

/* ---------------------------------------------------------------- lifecycle */

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static int valid_request_id(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= 20 || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                         (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
            return 0;
    }
    return n > 0;
}

/* The headers whose repetition matters: several Authorization headers are refused, and
 * ambiguous framing (two different Content-Lengths, or one with Transfer-Encoding) too. */
typedef struct {
    unsigned auth, cl, te;
    const char *first_cl;
    int cl_differ;
} header_counts;

static enum MHD_Result count_headers(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    header_counts *h = cls;
    if (!key)
        return MHD_YES;
    if (strcasecmp(key, "Authorization") == 0)
        h->auth++;
    else if (strcasecmp(key, "Transfer-Encoding") == 0)
        h->te++;
    else if (strcasecmp(key, "Content-Length") == 0) {
        if (h->cl++ && strcmp(h->first_cl, value ? value : "") != 0)
            h->cl_differ = 1;
        if (!h->first_cl)
            h->first_cl = value ? value : "";
    }
    return MHD_YES;
}

static int is_type(const char *ct, const char *want)
{
    size_t n = strlen(want);
    if (!ct || strncasecmp(ct, want, n) != 0)
        return 0;
    char next = ct[n];
    return next == '\0' || next == ';' || next == ' ';
}

static int is_json_type(const char *ct) { return is_type(ct, "application/json"); }

static int is_jsonl_type(const char *ct)
{
    return is_json_type(ct) || is_type(ct, "application/jsonl") || is_type(ct, "application/x-ndjson");
}

/* Checks that need only the headers. Queues an error and returns 1 when the request is
 * rejected before its body is read. */
/* A query argument whose percent-decoded name or value holds a NUL byte: C strings would cut
 * it short, so a request could name one thing and be read as another. */
static enum MHD_Result find_nul_arg(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
                                    const char *value, size_t value_size)
{
    (void)kind;
    int *found = cls;
    if (memchr(key, 0, key_size) || (value && memchr(value, 0, value_size))) {
        *found = 1;
        return MHD_NO;
    }
    return MHD_YES;
}

static int reject_early(srv_req *req)
{
    srv_daemon *d = req->d;
    char allow[128];
    req->route = srv_route_match(d->routes, d->n_routes, req->method, req->url, &req->params,
                                 allow, sizeof allow);
    if (req->route == SRV_MATCH_NONE) {
        srv_reply_error(req, SRV_E_NOT_FOUND, NULL, "no route for %s %.200s", req->method, req->url);
        return 1;
    }
    if (req->route == SRV_MATCH_METHOD) {
        req->path_route = srv_route_find_path(d->routes, d->n_routes, req->url);
        srv_reply_header(req, "Allow", allow);
        srv_reply_error(req, SRV_E_METHOD_NOT_ALLOWED, NULL, "%s is not allowed on %.200s; allowed: %s",
                        req->method, req->url, allow);
        return 1;
    }
    int nul_arg = 0;
    MHD_get_connection_values_n(req->conn, MHD_GET_ARGUMENT_KIND, find_nul_arg, &nul_arg);
    if (nul_arg) {
        srv_reply_error(req, SRV_E_BAD_REQUEST, NULL, "a query argument holds a NUL byte (%%00)");
        return 1;
    }
    header_counts hc = {0, 0, 0, NULL, 0};
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, count_headers, &hc);
    if ((hc.te && hc.cl) || hc.cl_differ) {
        /* RFC 9112 §6.3: answer 400 and close, so no body byte can be read as a new request. */
        srv_reply_header(req, "Connection", "close");
        srv_reply_error(req, SRV_E_BAD_REQUEST, NULL, "conflicting Content-Length or Transfer-Encoding headers");
        return 1;
    }
    const srv_route *rt = &d->routes[req->route];
    if (atomic_load(&d->draining) && !(rt->flags & SRV_ROUTE_PUBLIC)) {
        srv_reply_header(req, "Connection", "close");
        srv_reply_error(req, SRV_E_SHUTTING_DOWN, NULL, "the server is shutting down");
        return 1;
    }
    if (!(rt->flags & SRV_ROUTE_PUBLIC) && d->auth) {
        unsigned n_auth = hc.auth;
        if (n_auth != 1 || !srv_auth_check(d->auth, srv_req_header(req, "Authorization"))) {
            srv_reply_header(req, "WWW-Authenticate", "Bearer");
            if (n_auth > 1)
                srv_reply_error(req, SRV_E_UNAUTHORIZED, NULL,
                                "send one Authorization header, not %u", n_auth);
            else
                srv_reply_error(req, SRV_E_UNAUTHORIZED, NULL,
                                "missing or invalid API key; send 'Authorization: Bearer KEY'");
            return 1;
        }
    }
    srv_metrics_inflight(d->metrics, 1);
    req->inflight_counted = 1;
    /* The health routes are never turned away: a probe must see the truth under load. */
    if (!(rt->flags & SRV_ROUTE_PUBLIC) && srv_metrics_inflight_now(d->metrics) > (long)d->cfg.max_concurrent) {
        srv_reply_error(req, SRV_E_OVERLOADED, NULL, "more than %u requests in flight; retry shortly",
                        d->cfg.max_concurrent);
        return 1;
    }
    if ((rt->flags & SRV_ROUTE_JSONL) && !is_jsonl_type(srv_req_header(req, "Content-Type"))) {
        srv_reply_error(req, SRV_E_UNSUPPORTED_MEDIA_TYPE, NULL,
                        "send the body as JSON Lines with 'Content-Type: application/jsonl'");
        return 1;
    }
    if (!(rt->flags & (SRV_ROUTE_NO_BODY | SRV_ROUTE_JSONL)) &&
        !is_json_type(srv_req_header(req, "Content-Type"))) {
        srv_reply_error(req, SRV_E_UNSUPPORTED_MEDIA_TYPE, NULL,
                        "send the body as JSON with 'Content-Type: application/json'");
        return 1;
    }
    const char *cl = srv_req_header(req, "Content-Length");
    if (cl) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno == 0 && end != cl && *end == '\0' && n > d->cfg.max_body_bytes) {
            srv_reply_error(req, SRV_E_PAYLOAD_TOO_LARGE, NULL,
                            "the body is %llu bytes; the limit is %zu (--max-body-bytes)", n,
                            d->cfg.max_body_bytes);
            return 1;
        }
        if (errno == 0 && end != cl && n > 0) {
            size_t first = n < FIRST_BODY_ALLOC ? (size_t)n : FIRST_BODY_ALLOC;
            req->body = malloc(first);
            if (!req->body) {
                srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory for the request body");
                return 1;
            }
            req->body_cap = first;
        }
    }
    return 0;
}

/* The route's own gate, or its model's: 0, or -1 after queuing the 429. Taken once the body
 * is in, so a client that sends its body slowly holds no place, and before it is parsed or
 * handed to a worker, so a refused request costs neither; the connection stays open for the
 * client's next request. A route that computes without a model has a gate of its own, like
 * a model's: its admitted requests share the CPU with at most --max-route-requests - 1
 * others. */
static int admit(srv_req *req, const srv_route *rt)
{
    if (rt->flags & SRV_ROUTE_GATED)
        return srv_req_admit(req, &req->d->gates[req->route], rt->pattern);
    const char *name = NULL;
    srv_gate *g = rt->model_gate ? rt->model_gate(req->d->app, &name) : NULL;
    return g ? srv_req_admit(req, g, name) : 0;
}

/* Runs the request's handler and makes sure it replied. */
static void run_handler(srv_req *req)
{
    srv_daemon *d = req->d;
    d->routes[req->route].handler(req, d->app);
    if (!req->replied) {
        srv_log(SRV_LOG_ERROR, "handler queued no reply", "route=\"%s\" id=%s", d->routes[req->route].pattern,
                req->id);
        srv_reply_error(req, SRV_E_INTERNAL, NULL, "internal error");
    }
}

/* Takes a turn at `t`, or joins its queue. Returns 1 when the request holds a turn. */
static int turn_enter(srv_req *req, srv_turns *t)
{
    pthread_mutex_lock(&t->lock);
    int now = !t->head && t->running < t->cap;
    if (now) {
        t->running++;
    } else {
        req->turn_next = NULL;
        if (t->tail)
            t->tail->turn_next = req;
        else
            t->head = req;
        t->tail = req;
    }
    req->turn = t;
    pthread_mutex_unlock(&t->lock);
    return now;
}

/* Ends the request's turn. Returns the waiting request it passed to (which now holds it and
 * must be run by the caller), or NULL. */
static srv_req *turn_pass(srv_req *req)
{
    srv_turns *t = req->turn;
    if (!t)
        return NULL;
    req->turn = NULL;
    pthread_mutex_lock(&t->lock);
    srv_req *next = t->head;
    if (next) { /* `running` stays */
        if (!(t->head = next->turn_next))
            t->tail = NULL;
    } else {
        t->running--;
    }
    pthread_mutex_unlock(&t->lock);
    return next;
}

/* The request has replied: its turn passes on and MHD may go on with the connection (and
 * free the request). Returns the request the turn passed to, or NULL. */
static srv_req *finish_handed_off(srv_req *req)
{
    srv_req *next = turn_pass(req);
    MHD_resume_connection(req->conn);
    return next;
}

/* On a worker: the handler, then each request the turn passes to, in the order they came. A
 * route that computes runs one request per core at once: sharing the cores among every
 * admitted request would make each wait for all the others, and the slowest far more than
 * the average. (Two per core, when a turn woke the waiting request's own thread, hid that
 * wake-up; with the turn's thread going straight on, one per core serves more searches and
 * halves their p99 in the soak, docs/RELIABILITY.md §5.) */
static void run_handed_off(void *arg)
{
    for (srv_req *req = arg; req; req = finish_handed_off(req))
        run_handler(req);
}

/* Gives the request to a worker; when stopping, replies 503 at once (and so does each
 * request its turn then passes to). */
static void start_handed_off(srv_req *req)
{
    while (req) {
        req->task = (srv_task){run_handed_off, req, NULL};
        if (srv_workers_submit(req->d->workers, &req->task) == 0)
            return;
        srv_reply_error(req, SRV_E_SHUTTING_DOWN, NULL, "the server is shutting down");
        req = finish_handed_off(req);
    }
}

void srv_req_turn_end(srv_req *req) { start_handed_off(turn_pass(req)); }

/* The handler goes to a worker, so this thread goes back to the other connections at once:
 * a search or a request waiting for its model never delays the reading, gating and 429s of
 * the rest. The connection is suspended first and resumed once the reply is queued; MHD
 * then calls on_request again, which sends it. */
static enum MHD_Result hand_off(srv_req *req)
{
    req->handed_off = 1;
    MHD_suspend_connection(req->conn);
    if (!(req->d->routes[req->route].flags & SRV_ROUTE_CPU) || turn_enter(req, &req->d->turns[req->route]))
        start_handed_off(req);
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)version;
    srv_daemon *d = cls;
    srv_req *req = *con_cls;
    if (!req) {
        req = calloc(1, sizeof *req);
        if (!req)
            return MHD_NO;
        *con_cls = req;
        req->d = d;
        req->conn = conn;
        req->method = method;
        req->url = url;
        req->route = SRV_MATCH_NONE;
        clock_gettime(CLOCK_MONOTONIC, &req->t0);
        const char *given = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
        if (given && valid_request_id(given))
            snprintf(req->id, sizeof req->id, "%s", given);
        else
            snprintf(req->id, sizeof req->id, "%016llx",
                     (unsigned long long)splitmix64(d->id_seed + atomic_fetch_add(&d->id_counter, 1)));
        if (reject_early(req))
            return srv_queue_reply(req);
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (!req->replied)
            srv_append_body(req, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (req->queued)
        return MHD_YES;
    if (!req->replied && !req->handed_off) {
        const srv_route *rt = &d->routes[req->route];
        if (req->body_too_large)
            srv_reply_error(req, SRV_E_PAYLOAD_TOO_LARGE, NULL,
                            "the body is over the limit of %zu bytes (--max-body-bytes)",
                            d->cfg.max_body_bytes);
        else if (admit(req, rt) == 0) {
            if (!(rt->flags & SRV_ROUTE_PUBLIC))
                return hand_off(req);
            run_handler(req); /* the health routes: quick, and never turned away */
        }
    }
    return srv_queue_reply(req); /* every path above has replied */
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    srv_daemon *d = cls;
    srv_req *req = *con_cls;
    if (!req)
        return;
    *con_cls = NULL;
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - req->t0.tv_sec) + (double)(t1.tv_nsec - req->t0.tv_nsec) * 1e-9;
    unsigned status = req->queued ? req->status : 499; /* 499: the client went away first */
    size_t route = d->n_routes; /* "unmatched" */
    if (req->route >= 0)
        route = (size_t)req->route;
    else if (req->route == SRV_MATCH_METHOD && req->path_route >= 0)
        route = srv_metrics_wrong_method(d->n_routes, (size_t)req->path_route);
    srv_metrics_observe(d->metrics, route, status, secs);
    if (req->inflight_counted)
        srv_metrics_inflight(d->metrics, -1);

    srv_log_level lvl = status >= 500 && status != 503 ? SRV_LOG_ERROR : SRV_LOG_INFO;
    if (srv_log_enabled(lvl)) {
        char path[300];
        srv_log_quote(path, sizeof path, req->url, 200);
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        char ip[INET6_ADDRSTRLEN] = "-";
        if (ci && ci->client_addr) {
            const struct sockaddr *sa = ci->client_addr;
            if (sa->sa_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip, sizeof ip);
            else if (sa->sa_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, ip, sizeof ip);
        }
        srv_log(lvl, "request", "id=%s method=%s path=%s status=%u dur_ms=%.3f in_bytes=%zu ip=%s%s%s%s",
                req->id, req->method, path, status, secs * 1e3, req->body_len, ip,
                req->err_code ? " code=" : "", req->err_code ? req->err_code : "",
                toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " aborted=true");
    }
    srv_req_free(req);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    srv_log(SRV_LOG_WARN, msg, "component=http");
}

/* ---------------------------------------------------------------- daemon */

static int parse_listen(const char *listen, char *host, size_t host_cap, char *port, size_t port_cap)
{
    const char *colon;
    if (listen[0] == '[') {
        const char *close = strchr(listen, ']');
        if (!close || close[1] != ':')
            return -1;
        snprintf(host, host_cap, "%.*s", (int)(close - listen - 1), listen + 1);
        colon = close + 1;
    } else {
        colon = strrchr(listen, ':');
        if (!colon)
            return -1;
        snprintf(host, host_cap, "%.*s", (int)(colon - listen), listen);
    }
    snprintf(port, port_cap, "%s", colon + 1);
    char *end;
    long p = strtol(port, &end, 10);
    return (*port && *end == '\0' && p >= 0 && p <= 65535) ? 0 : -1;
}

static int open_listener(srv_daemon *d, srv_daemon_error *err)
{
    char host[256], port[16];
    if (parse_listen(d->cfg.listen, host, sizeof host, port, sizeof port) != 0) {
        snprintf(err->msg, sizeof err->msg, "--listen '%s': expected HOST:PORT", d->cfg.listen);
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *ai;
    int rc = getaddrinfo(*host ? host : NULL, port, &hints, &ai);
    if (rc != 0) {
        snprintf(err->msg, sizeof err->msg, "--listen '%s': %s", d->cfg.listen, gai_strerror(rc));
        return -1;
    }
    int fd = -1, last_errno = 0;
    for (struct addrinfo *p = ai; p && fd < 0; p = p->ai_next) {
        fd = socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC, p->ai_protocol);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, p->ai_addr, p->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
            last_errno = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0) {
        snprintf(err->msg, sizeof err->msg, "--listen '%s': %s", d->cfg.listen, strerror(last_errno));
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    if (ss.ss_family == AF_INET6)
        d->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    else
        d->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    snprintf(d->host, sizeof d->host, "%s", *host ? host : "0.0.0.0");
    d->listen_fd = fd;
    return 0;
}

int srv_daemon_create(const srv_daemon_config *cfg, const srv_route *routes, size_t n_routes,
                      void *app, srv_daemon **out, srv_daemon_error *err)
{
    *out = NULL;
    srv_daemon *d = calloc(1, sizeof *d);
    if (!d)
        goto oom;
    d->cfg = *cfg;
    d->routes = routes;
    d->n_routes = n_routes;
    d->app = app;
    d->listen_fd = -1;
    pthread_mutex_init(&d->streams_lock, NULL);
    if (srv_auth_create(cfg->api_key, cfg->api_key_file, &d->auth, err->msg, sizeof err->msg) != 0) {
        free(d);
        return -1;
    }
    d->methods = calloc(n_routes + 1, sizeof *d->methods);
    d->patterns = calloc(n_routes + 1, sizeof *d->patterns);
    d->gates = calloc(n_routes + 1, sizeof *d->gates);
    d->turns = calloc(n_routes + 1, sizeof *d->turns);
    if (!d->methods || !d->patterns || !d->gates || !d->turns)
        goto oom;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    for (size_t i = 0; i < n_routes; i++) {
        d->methods[i] = routes[i].method;
        d->patterns[i] = routes[i].pattern;
        d->gates[i].cap = cfg->max_route_requests;
        d->gates[i].flag = "--max-route-requests";
        pthread_mutex_init(&d->turns[i].lock, NULL);
        d->turns[i].cap = cpus < 1 ? 1 : (unsigned)cpus;
    }
    d->metrics = srv_metrics_create(d->methods, d->patterns, n_routes);
    d->workers = srv_workers_create(THREAD_STACK_BYTES);
    if (!d->metrics || !d->workers)
        goto oom;
    if (getrandom(&d->id_seed, sizeof d->id_seed, 0) != sizeof d->id_seed)
        d->id_seed = (uint64_t)time(NULL) ^ (uint64_t)getpid() << 32;
    *out = d;
    return 0;
oom:
    srv_daemon_destroy(d);
    snprintf(err->msg, sizeof err->msg, "out of memory");
    return -1;
}

int srv_daemon_start(srv_daemon *d, srv_daemon_error *err)
{
    if (open_listener(d, err) != 0)
        return -1;
    /* A few threads serve every socket (epoll): they read requests, answer what needs no
     * handler (404, 401, 413, a full gate's 429) and hand the rest to the workers, so
     * however many connections are open, only the requests admitted to run compete for the
     * CPU. A slow client holds a connection (bounded by --max-connections and
     * --max-connections-per-ip) until --timeout closes it, but no thread. */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned io_threads = cpus < 1 ? 1 : cpus > MAX_IO_THREADS ? MAX_IO_THREADS : (unsigned)cpus;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    d->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, d,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, d, /* first, so every message goes through it */
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)d->listen_fd,
        MHD_OPTION_THREAD_POOL_SIZE, io_threads,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)d->cfg.timeout_s,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)d->cfg.max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)d->cfg.max_connections_per_ip,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY,
        MHD_OPTION_THREAD_STACK_SIZE, (size_t)THREAD_STACK_BYTES,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, d,
        MHD_OPTION_END);
    if (!d->mhd) {
        close(d->listen_fd);
        d->listen_fd = -1;
        snprintf(err->msg, sizeof err->msg, "could not start the HTTP server on %s", d->cfg.listen);
        return -1;
    }
    d->listen_fd = -1; /* MHD_stop_daemon closes it */
    return 0;
}

unsigned srv_daemon_port(const srv_daemon *d) { return d->port; }
const char *srv_daemon_host(const srv_daemon *d) { return d->host; }
int srv_daemon_draining(const srv_daemon *d) { return atomic_load(&((srv_daemon *)d)->draining); }
const srv_daemon_config *srv_daemon_get_config(const srv_daemon *d) { return &d->cfg; }

char *srv_daemon_metrics(srv_daemon *d, size_t *len) { return srv_metrics_render(d->metrics, len); }

long srv_daemon_drain(srv_daemon *d, unsigned timeout_s)
{
    /* The listener stays open: a request that arrives while draining is answered 503
     * shutting_down (with Retry-After) rather than refused, and /health says "draining".
     * MHD_quiesce_daemon is not used: in libmicrohttpd 0.9.75 it races a pool worker that
     * removes the listen socket from its own epoll set, and the loser aborts the process. */
    atomic_store(&d->draining, 1);
    struct timespec step = {0, 20 * 1000 * 1000};
    for (unsigned i = 0; i < timeout_s * 50u; i++) {
        if (srv_metrics_inflight_now(d->metrics) <= 0)
            break;
        nanosleep(&step, NULL);
    }
    return srv_metrics_inflight_now(d->metrics);
}

void srv_daemon_destroy(srv_daemon *d)
{
    if (!d)
        return;
    /* MHD must not be stopped with a connection suspended: end the streams waiting for data,
     * let the handlers under way finish (their connections resume), then stop. */
    atomic_store(&d->draining, 1);
    atomic_store(&d->stopping, 1);
    pthread_mutex_lock(&d->streams_lock);
    for (srv_stream *st = d->streams; st; st = st->later)
        srv_stream_resume(st);
    pthread_mutex_unlock(&d->streams_lock);
    srv_workers_destroy(d->workers);
    if (d->mhd)
        MHD_stop_daemon(d->mhd);
    if (d->listen_fd >= 0)
        close(d->listen_fd);
    srv_metrics_destroy(d->metrics);
    srv_auth_destroy(d->auth);
    free(d->methods);
    free(d->patterns);
    free(d->gates);
    for (size_t i = 0; d->turns && i < d->n_routes; i++)
        pthread_mutex_destroy(&d->turns[i].lock);
    free(d->turns);
    pthread_mutex_destroy(&d->streams_lock);
    free(d);
}
