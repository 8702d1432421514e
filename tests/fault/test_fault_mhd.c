/* test_fault_mhd.c — allocation failures inside libmicrohttpd. The loops of test_fault_alloc
 * run requests without a socket (srv_dispatch_detached), so libmicrohttpd's own allocations
 * (the connection, its memory pool, the thread that serves it, the response) are never
 * failed there, although the shim does replace malloc for libmicrohttpd too (the executable's
 * definition comes first for every shared library). Here a real daemon (srv_daemon_start, the
 * route table, socket threads and workers) serves real requests on 127.0.0.1 from a raw socket
 * (whose calls allocate nothing), while the Nth allocation of any thread fails (only that
 * one, then every one from the Nth on). Every iteration checks: no crash; the reply is the
 * fault-free one, 503 out_of_memory, or none (libmicrohttpd may drop the connection); no
 * leak once the connection is gone; and the next request, without faults, gets the
 * fault-free reply (with --max-route-requests 1, a place at the route's gate that was not
 * given back would make it a 429; the generator's gate has one place too, and is checked
 * empty). A stream (server-sent events) may also, once its 200 is out, end with its error
 * event after the fault-free events before it, or be cut by libmicrohttpd (no last chunk)
 * after some of them; every event that came whole is parsed and compared. */
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cu.h"
#include "fault.h"
#include "fault_app.h"

#define MAX_N 20000
#define PERSISTENT_STRIDE 1

static fault_app fa;
static srv_daemon *daemon_;
static int have_generator;
static long baseline, total_injected;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Live heap blocks that are not SQLite's page cache (see test_fault_alloc.c). */
static long heap_live(void)
{
    int cur = 0, hi = 0;
    sqlite3_status(SQLITE_STATUS_MALLOC_COUNT, &cur, &hi, 0);
    return fault_alloc_live() - cur;
}

/* The body of a chunked reply, decoded in place; 1 when its last (empty) chunk came. */
static int dechunk(char *body)
{
    char *in = body, *out = body;
    for (;;) {
        char *end;
        unsigned long n = strtoul(in, &end, 16);
        if (end == in || strncmp(end, "\r\n", 2) != 0)
            break;
        in = end + 2;
        if (n == 0) {
            *out = '\0';
            return 1;
        }
        if (strlen(in) < n + 2) { /* cut inside the chunk: keep what came */
            memmove(out, in, strlen(in) + 1);
            return 0;
        }
        memmove(out, in, n);
        out += n;
        in += n + 2;
    }
    *out = '\0';
    return 0;
}

/* One request on a new connection (Connection: close), read until the server closes it.
 * Returns the status, or 0 when the connection closed without one; the body goes to out,
 * decoded when chunked (a stream), and *whole is 0 when its last chunk did not come. */
static long roundtrip(const char *method, const char *path, const char *body, char *out, size_t cap, int *whole)
{
    char req[1024];
    int len = snprintf(req, sizeof req,
                       "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
                       "Content-Length: %zu\r\n\r\n%s",
                       method, path, body ? strlen(body) : 0, body ? body : "");
    *out = '\0';
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)srv_daemon_port(daemon_))};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    send(fd, req, (size_t)len, MSG_NOSIGNAL);
    size_t got = 0;
    for (double end = now_s() + 10; now_s() < end && got + 1 < cap;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = recv(fd, out + got, cap - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    out[got] = '\0';
    long status = 0;
    if (strncmp(out, "HTTP/1.1 ", 9) == 0)
        status = strtol(out + 9, NULL, 10);
    const char *b = strstr(out, "\r\n\r\n");
    int chunked = b && memmem(out, (size_t)(b - out), "Transfer-Encoding: chunked", 26);
    memmove(out, b ? b + 4 : out + got, strlen(b ? b + 4 : out + got) + 1);
    *whole = chunked ? dechunk(out) : 1;
    return status;
}

/* 1 when two replies are the same but for the time a search took ("time_ms", last), or
 * an OpenAI completion's "id" (the request's) and "created". */
static int same_reply(const char *a, const char *b)
{
    const char *ta = strstr(a, "\"time_ms\""), *tb = strstr(b, "\"time_ms\"");
    size_t na = ta ? (size_t)(ta - a) : strlen(a), nb = tb ? (size_t)(tb - b) : strlen(b);
    return (na == nb && memcmp(a, b, na) == 0) ||
           (strstr(a, "\"object\":\"text_completion\"") && fault_json_same(a, b));
}

/* The error code of a JSON error body, ours or OpenAI's ("" when none). */
static void body_code(const char *body, char *code, size_t cap)
{
    json_t *j = json_loads(body, 0, NULL);
    json_t *openai = json_object_get(j, "error"); /* OpenAI's shape nests it */
    const char *c = json_string_value(json_object_get(json_is_object(openai) ? openai : j, "code"));
    snprintf(code, cap, "%s", c ? c : "");
    json_decref(j);
}

typedef struct {
    const char *method, *path, *body;
    int sse; /* a streamed reply: 1 TGI's events, 2 OpenAI's (0: not streamed) */
} mhd_case;

static const mhd_case cases[] = {
    {"POST", "/search", "{\"collection\":\"docs\",\"vector\":[1,0,0,0],\"top_k\":2}", 0},
    /* with the generator: */
    {"POST", "/tokenize", "{\"inputs\":\"Hello world, hello names\"}", 0},
    /* the model list (OpenAI's shape: no key may go missing) */
    {"GET", "/v1/models", NULL, 0},
    /* a generation, greedy, so every reply is the same */
    {"POST", "/generate", "{\"inputs\":\"emma\",\"parameters\":{\"max_new_tokens\":3,\"details\":true,\"seed\":7}}", 0},
    {"POST", "/v1/completions", "{\"prompt\":\"emma\",\"max_tokens\":3,\"temperature\":0}", 0},
    /* streamed: the pump thread's events, the fills on a worker, the suspended connection */
    {"POST", "/generate_stream",
     "{\"inputs\":\"emma\",\"parameters\":{\"max_new_tokens\":3,\"details\":true,\"seed\":7}}", 1},
    {"POST", "/v1/completions", "{\"prompt\":\"emma\",\"max_tokens\":3,\"temperature\":0,\"stream\":true}", 2},
};
#define N_CASES (sizeof cases / sizeof cases[0])

/* A 200 compared with the fault-free reply: FAULT_SSE_WHOLE when the same; for a stream,
 * also FAULT_SSE_FAILED (ended by its error event) or FAULT_SSE_CUT (libmicrohttpd cut the
 * connection: no last chunk, and no event but fault-free ones); FAULT_SSE_BAD otherwise. */
static fault_sse compare(const mhd_case *c, const char *body, int whole, const char *ref_body)
{
    if (!c->sse)
        return same_reply(body, ref_body) ? FAULT_SSE_WHOLE : FAULT_SSE_BAD;
    char why[300];
    int trailing;
    fault_sse v = fault_sse_compare(body, ref_body, c->sse == 2, &trailing, why, sizeof why);
    if (v == FAULT_SSE_BAD)
        fprintf(stderr, "\n%s %s: %s", c->method, c->path, why);
    if (whole && (v == FAULT_SSE_CUT || trailing)) { /* a stream that ended, silently short */
        fprintf(stderr, "\n%s %s: the stream ended without its last event", c->method, c->path);
        return FAULT_SSE_BAD;
    }
    return whole || v == FAULT_SSE_BAD ? v : FAULT_SSE_CUT;
}

static void loop(const mhd_case *c, int persistent)
{
    static char ref_body[65536], body[65536], code[40];
    int whole;
    long ref = roundtrip(c->method, c->path, c->body, ref_body, sizeof ref_body, &whole);
    if (ref != 200 || !whole)
        fprintf(stderr, "\n%s %s: %ld %.300s\n", c->method, c->path, ref, ref_body);
    CU_ASSERT_EQUAL_FATAL(ref, 200);
    CU_ASSERT_FATAL(whole);
    long stride = persistent ? PERSISTENT_STRIDE : 1, n = 1, runs = 0, dropped = 0, oom = 0, bad = 0;
    long failed = 0, cut = 0; /* streams ended by their error event, cut by libmicrohttpd */
    long injected = fault_alloc_injected();
    const srv_gate *gate = &fa.app.models[APP_GENERATOR].gate;
    for (; n < MAX_N && !bad; n += stride, runs++) {
        fault_app_settle(&fa);
        long before = heap_live();
        fault_alloc_arm_all_threads(n, persistent);
        long st = roundtrip(c->method, c->path, c->body, body, sizeof body, &whole);
        fault_alloc_disarm();
        int fired = fault_alloc_fired();
        body_code(body, code, sizeof code);
        fault_sse v = st == ref ? compare(c, body, whole, ref_body) : FAULT_SSE_BAD;
        if (st == 0)
            dropped++;
        else if (st == 503 && !strcmp(code, "out_of_memory"))
            oom++;
        else if (v == FAULT_SSE_FAILED || v == FAULT_SSE_CUT)
            v == FAULT_SSE_FAILED ? failed++ : cut++;
        else if (v != FAULT_SSE_WHOLE) {
            fprintf(stderr, "\n%s %s, allocation %ld%s failed: %ld %.600s\n", c->method, c->path, n,
                    persistent ? " on" : "", st, body);
            bad++;
        }
        /* The connection's thread frees what it holds once the connection is gone (a
         * stream's, once its pump has stopped), and gives back its places at the gates. */
        double end = now_s() + 5;
        while ((heap_live() > before || gate->held) && now_s() < end)
            usleep(1000);
        if (heap_live() > before) {
            fprintf(stderr, "\n%s %s, allocation %ld%s failed: %ld blocks leaked\n", c->method, c->path, n,
                    persistent ? " on" : "", heap_live() - before);
            bad++;
        }
        if (gate->held) {
            fprintf(stderr, "\n%s %s, allocation %ld%s failed: the generator's gate holds %u places\n", c->method,
                    c->path, n, persistent ? " on" : "", (unsigned)gate->held);
            bad++;
        }
        long again = roundtrip(c->method, c->path, c->body, body, sizeof body, &whole);
        if (again != ref || compare(c, body, whole, ref_body) != FAULT_SSE_WHOLE) {
            fprintf(stderr, "\n%s %s, after allocation %ld%s failed, without faults: %ld %.200s\n", c->method,
                    c->path, n, persistent ? " on" : "", again, body);
            bad++;
        }
        if (!fired)
            break;
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(n < MAX_N);
    injected = fault_alloc_injected() - injected;
    total_injected += injected;
    printf("\n  fault_mhd: %-6s %-16s%s %s: %5ld runs, %6ld faults injected; %ld dropped, %ld 503, the rest %ld",
           c->method, c->path, c->sse == 2 ? " (stream)" : "", persistent ? "from N on" : "Nth only ", runs, injected,
           dropped, oom, ref);
    if (c->sse)
        printf(" (%ld ended by the error event, %ld cut)", failed, cut);
}

static void test_nth(void)
{
    for (size_t i = 0; i < (have_generator ? N_CASES : 1u); i++)
        loop(&cases[i], 0);
}

static void test_from_nth(void)
{
    for (size_t i = 0; i < (have_generator ? N_CASES : 1u); i++)
        loop(&cases[i], 1);
}

/* ================================================================ set-up */

static int start(void)
{
    if (fault_app_open(&fa, 1) == 0)
        have_generator = 1;
    else if (fault_app_close(&fa), fault_app_open(&fa, 0) != 0)
        return -1;
    fault_reply r;
    if (fault_app_request(&fa, "POST", "/collections", "{\"name\":\"docs\",\"dimension\":4,\"distance\":\"cosine\"}",
                          &r) != 0)
        return -1;
    free(r.body);
    if (fault_app_request(&fa, "POST", "/collections/docs/documents",
                          "{\"documents\":[{\"id\":1,\"vector\":[1,0,0,0]},{\"id\":2,\"vector\":[0,1,0,0]}]}",
                          &r) != 0)
        return -1;
    free(r.body);
    srv_daemon_config dc = fa.dcfg;
    dc.listen = "127.0.0.1:0";
    dc.max_concurrent = 64;
    dc.max_connections = 16;
    dc.max_connections_per_ip = 16;
    dc.timeout_s = 5;
    dc.max_route_requests = 1;
    fa.app.models[APP_GENERATOR].gate.cap = 1; /* a place not given back: the next is a 429 */
    srv_daemon_error err;
    if (srv_daemon_create(&dc, app_routes, app_n_routes, &fa.app, &daemon_, &err) != 0 ||
        srv_daemon_start(daemon_, &err) != 0) {
        fprintf(stderr, "fault_mhd: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static void stop(void)
{
    srv_daemon_destroy(daemon_);
    daemon_ = NULL;
    fault_app_close(&fa);
}

static int setup(void)
{
    /* Once through first: what the process allocates once and keeps is then in the baseline. */
    if (start() != 0)
        return -1;
    char body[4096];
    int whole;
    roundtrip("POST", "/search", cases[0].body, body, sizeof body, &whole);
    /* and a stream: glibc keeps the stack of a joined thread (its pump's) for the next, with
     * a block (the thread's TLS vector) that is freed only with the process */
    if (have_generator)
        roundtrip("POST", "/generate_stream", "{\"inputs\":\"a\"}", body, sizeof body, &whole);
    stop();
    baseline = fault_alloc_live();
    return start();
}

static void test_close(void)
{
    stop();
    fault_expect_all_freed(baseline, "fault_mhd", total_injected);
}

void cu_register(void)
{
    CU_pSuite s = CU_add_suite("fault_mhd", setup, NULL);
    CU_add_test(s, "a real daemon, the Nth allocation of any thread failing: served, 503 or dropped; no leak",
                test_nth);
    CU_add_test(s, "a real daemon, every allocation from the Nth on failing: the same, then served", test_from_nth);
    CU_add_test(s, "everything freed when the daemon stops", test_close);
}
