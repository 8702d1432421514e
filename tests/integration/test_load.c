/* test_load.c — the short versions of the overload soak (bench/soak.sh) on a real ragd with
 * the small random GPT-2 (tests/reference/make_gpt2_checkpoints.py):
 *  - a full model gate (--max-model-requests 2) answers 429 with Retry-After at once while
 *    admitted generations finish, and /health and /tokenize stay fast meanwhile;
 *  - a route that computes without a model has a gate of its own (--max-route-requests 1):
 *    eight clients on /search get 404 (served) or 429 with Retry-After naming the flag, while
 *    /tokenize (another route) is served, and every place is given back afterwards;
 *  - slow clients (idle half-sent headers, byte-a-time dribblers, from 127.0.0.2) do not
 *    starve normal clients; idle ones are closed at --timeout, and one past the per-IP limit
 *    is refused at once;
 *  - SIGTERM under load: requests in flight finish with 200, later ones get 503
 *    shutting_down (or, once the daemon has stopped, a refused connection), and ragd
 *    exits 0;
 *  - /metrics counts a 405 under the pattern its path matched. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cu.h"
#include "harness.h"

#define GATE 2          /* --max-model-requests */
#define PER_IP 24       /* --max-connections-per-ip */
#define TIMEOUT_S "2"   /* --timeout */
#define CLIENTS 10
static const char gen_body[] = "{\"inputs\":\"Hello world, this is\",\"parameters\":{\"max_new_tokens\":40}}";

static it_server srv;
static char ck[64], gen_dir[128];

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int setup(void)
{
    snprintf(ck, sizeof ck, "/tmp/ragd-load-XXXXXX");
    if (!mkdtemp(ck))
        return -1;
    char cmd[512], src[400];
    it_source_path("tests/reference/make_gpt2_checkpoints.py", src, sizeof src);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s' >/dev/null", src, ck);
    if (system(cmd) != 0)
        return -1;
    snprintf(gen_dir, sizeof gen_dir, "%s/gpt2-untied", ck);
    const char *args[] = {"--generator", gen_dir, "--max-model-requests", "2", "--timeout", TIMEOUT_S,
                          "--max-connections-per-ip", "24", NULL};
    return it_start(&srv, args, NULL);
}

static int teardown(void)
{
    int rc = it_remove_tree(ck);
    return it_stop(&srv) == 0 && rc == 0 ? 0 : -1;
}

/* ---- clients that loop /generate until told to stop ---- */

#define MAX_CALLS 4096
typedef struct {
    const it_server *s;
    volatile int *stop;
    int stop_on_refusal;      /* stop after the first reply that is not a 200 */
    size_t n;
    long status[MAX_CALLS];
    int retry_after[MAX_CALLS], overloaded[MAX_CALLS], shutting_down[MAX_CALLS], text[MAX_CALLS];
    double t0[MAX_CALLS], t1[MAX_CALLS];
} client;

static void *client_loop(void *arg)
{
    client *c = arg;
    while (!*c->stop && c->n < MAX_CALLS) {
        size_t i = c->n++;
        c->t0[i] = now_s();
        it_response r = it_post(c->s, "/generate", gen_body);
        c->t1[i] = now_s();
        char ra[16];
        c->status[i] = r.status;
        c->retry_after[i] = it_header(&r, "Retry-After", ra, sizeof ra) && strtol(ra, NULL, 10) > 0;
        const char *code = json_string_value(json_object_get(r.json, "code"));
        c->overloaded[i] = code && !strcmp(code, "overloaded");
        c->shutting_down[i] = code && !strcmp(code, "shutting_down");
        c->text[i] = json_is_string(json_object_get(r.json, "generated_text"));
        it_free(&r);
        if (c->stop_on_refusal && c->status[i] != 200)
            break;
        /* Back off after a 429 as a client honouring Retry-After would, but for 20 ms only,
         * so the gate stays contended. Without it each client would open and close some
         * thousand connections a second, and the per-IP limit (PER_IP) would refuse some
         * new ones before the server has reaped the closed. */
        if (c->status[i] == 429)
            usleep(20 * 1000);
    }
    return NULL;
}

static void test_overload(void)
{
    static client cl[CLIENTS];
    volatile int stop = 0;
    pthread_t th[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        cl[i] = (client){.s = &srv, .stop = &stop};
        pthread_create(&th[i], NULL, client_loop, &cl[i]);
    }
    /* Meanwhile the health route and a route without a model answer at once. */
    double worst = 0;
    for (int k = 0; k < 20; k++) {
        double t = now_s();
        it_response h = it_get(&srv, "/health");
        CU_ASSERT_EQUAL(h.status, 200);
        it_free(&h);
        CU_ASSERT(it_probe(&srv));
        worst = now_s() - t > worst ? now_s() - t : worst;
        usleep(100 * 1000);
    }
    stop = 1;
    for (int i = 0; i < CLIENTS; i++)
        pthread_join(th[i], NULL);
    size_t ok = 0, refused = 0, other = 0;
    double admitted_worst = 0;
    for (int i = 0; i < CLIENTS; i++)
        for (size_t j = 0; j < cl[i].n; j++) {
            if (cl[i].status[j] == 200 && cl[i].text[j]) {
                ok++;
                double d = cl[i].t1[j] - cl[i].t0[j];
                admitted_worst = d > admitted_worst ? d : admitted_worst;
            } else if (cl[i].status[j] == 429 && cl[i].retry_after[j] && cl[i].overloaded[j])
                refused++;
            else
                other++;
        }
    printf("\n  overload: %zu admitted (slowest %.0f ms), %zu refused with 429 + Retry-After, %zu other; "
           "slowest /health + /tokenize %.0f ms\n", ok, admitted_worst * 1e3, refused, other, worst * 1e3);
    CU_ASSERT(ok > 0);
    CU_ASSERT(refused > 0);
    CU_ASSERT_EQUAL(other, 0);
    CU_ASSERT(worst < 5.0);
    CU_ASSERT(admitted_worst < 30.0);
    /* Every place was given back: the next requests, one at a time, are all admitted. */
    for (int k = 0; k < GATE + 1; k++) {
        it_response r = it_post(&srv, "/generate", gen_body);
        CU_ASSERT(r.status == 200 && json_is_string(json_object_get(r.json, "generated_text")));
        it_free(&r);
    }
}

/* ---- a route's own gate ---- */

#define SEARCHERS 8
static const char absent_search[] = "{\"collection\":\"absent\",\"vector\":[1,0]}";

typedef struct {
    const it_server *s;
    volatile int *stop;
    long served, refused, other; /* 404 (served: no such collection), 429 as documented, else */
} searcher;

static void *search_loop(void *arg)
{
    searcher *c = arg;
    while (!*c->stop) {
        it_response r = it_post(c->s, "/search", absent_search);
        char ra[16];
        const char *msg = json_string_value(json_object_get(r.json, "error"));
        if (r.status == 404)
            c->served++;
        else if (it_is_error(&r, 429, "overloaded", NULL) && it_header(&r, "Retry-After", ra, sizeof ra) &&
                 strtol(ra, NULL, 10) > 0 && msg && strstr(msg, "'/search'") && strstr(msg, "--max-route-requests"))
            c->refused++;
        else
            c->other++;
        it_free(&r);
    }
    return NULL;
}

static void test_route_gate(void)
{
    it_server s3;
    const char *args[] = {"--generator", gen_dir, "--max-route-requests", "1", NULL};
    CU_ASSERT_FATAL(it_start(&s3, args, NULL) == 0);
    /* Eight clients on /search with one place: some are turned away at once, until 10 s. */
    static searcher cl[SEARCHERS];
    volatile int stop = 0;
    pthread_t th[SEARCHERS];
    for (int i = 0; i < SEARCHERS; i++) {
        cl[i] = (searcher){.s = &s3, .stop = &stop};
        pthread_create(&th[i], NULL, search_loop, &cl[i]);
    }
    long refused = 0, probes = 0, probes_ok = 0;
    for (double t0 = now_s(); refused == 0 && now_s() - t0 < 10.0;) {
        /* Another route's gate is its own: /tokenize is served meanwhile. */
        probes++;
        probes_ok += it_probe(&s3);
        refused = 0;
        for (int i = 0; i < SEARCHERS; i++)
            refused += cl[i].refused;
    }
    stop = 1;
    long served = 0, other = 0;
    refused = 0;
    for (int i = 0; i < SEARCHERS; i++) {
        pthread_join(th[i], NULL);
        served += cl[i].served;
        refused += cl[i].refused;
        other += cl[i].other;
    }
    printf("\n  route gate: /search %ld served, %ld refused with 429 + Retry-After, %ld other; /tokenize %ld of %ld\n",
           served, refused, other, probes_ok, probes);
    CU_ASSERT(served > 0);
    CU_ASSERT(refused > 0);
    CU_ASSERT_EQUAL(other, 0);
    CU_ASSERT_EQUAL(probes_ok, probes);
    /* Every place is given back: sequential searches are served. */
    for (int i = 0; i < 3; i++) {
        it_response r = it_post(&s3, "/search", absent_search);
        CU_ASSERT(it_is_error(&r, 404, "not_found", NULL));
        it_free(&r);
    }
    CU_ASSERT_EQUAL(it_stop(&s3), 0);
}

/* ---- slow clients ---- */

/* A connection from 127.0.0.2 (another client address on loopback) with `bytes` sent. */
static int open_from_other_ip(const char *bytes)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in me = {.sin_family = AF_INET}, to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)srv.port)};
    inet_pton(AF_INET, "127.0.0.2", &me.sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    if (fd < 0 || bind(fd, (struct sockaddr *)&me, sizeof me) != 0 || connect(fd, (struct sockaddr *)&to, sizeof to) != 0 ||
        send(fd, bytes, strlen(bytes), MSG_NOSIGNAL) < 0) {
        perror("open_from_other_ip");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* 1 when the server closes fd (EOF or reset) within timeout_ms; unread replies count. */
static int closed_within(int fd, int timeout_ms)
{
    double end = now_s() + timeout_ms / 1e3;
    char buf[4096];
    while (now_s() < end) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 50) > 0) {
            ssize_t n = recv(fd, buf, sizeof buf, 0);
            if (n == 0 || (n < 0 && errno == ECONNRESET))
                return 1;
        }
    }
    return 0;
}

#define IDLE (PER_IP - 4)
#define DRIBBLERS 4
static volatile int dribble_stop;

static void *dribble(void *arg)
{
    int fd = *(int *)arg;
    static const char req[] = "POST /generate HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    for (size_t i = 0; !dribble_stop && i + 1 < sizeof req; i++) {
        if (send(fd, req + i, 1, MSG_NOSIGNAL) != 1)
            break;
        usleep(300 * 1000);
    }
    return NULL;
}

static void test_slow_clients(void)
{
    int idle[IDLE], drib[DRIBBLERS];
    pthread_t th[DRIBBLERS];
    for (int i = 0; i < IDLE; i++)
        idle[i] = open_from_other_ip("POST /generate HTTP/1.1\r\nHost: x\r\nContent-Le");
    dribble_stop = 0;
    for (int i = 0; i < DRIBBLERS; i++) {
        drib[i] = open_from_other_ip("");
        pthread_create(&th[i], NULL, dribble, &drib[i]);
    }
    /* That address is at its limit: one more connection is closed at once. */
    usleep(200 * 1000);
    int extra = open_from_other_ip("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    CU_ASSERT(extra >= 0 && closed_within(extra, 2000));
    if (extra >= 0)
        close(extra);
    /* Normal clients are served, promptly and correctly, all the while. */
    double worst = 0, t_start = now_s();
    while (now_s() - t_start < 3.0) {
        double t = now_s();
        CU_ASSERT(it_probe(&srv));
        it_response r = it_post(&srv, "/generate", gen_body);
        CU_ASSERT_EQUAL(r.status, 200);
        it_free(&r);
        worst = now_s() - t > worst ? now_s() - t : worst;
    }
    printf("\n  slow clients: %d idle + %d dribbling from 127.0.0.2; slowest normal /tokenize + /generate %.0f ms\n",
           IDLE, DRIBBLERS, worst * 1e3);
    CU_ASSERT(worst < 5.0);
    /* Idle connections are closed at --timeout (2 s; they have been idle for 3). */
    int closed = 0;
    for (int i = 0; i < IDLE; i++)
        if (idle[i] >= 0) {
            closed += closed_within(idle[i], 3000);
            close(idle[i]);
        }
    CU_ASSERT_EQUAL(closed, IDLE);
    dribble_stop = 1;
    for (int i = 0; i < DRIBBLERS; i++) {
        pthread_join(th[i], NULL);
        if (drib[i] >= 0)
            close(drib[i]);
    }
    /* And the address may connect again once its connections are gone. */
    usleep(300 * 1000);
    int again = open_from_other_ip("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    char buf[256] = "";
    struct pollfd p = {again, POLLIN, 0};
    CU_ASSERT(again >= 0 && poll(&p, 1, 3000) == 1 && recv(again, buf, sizeof buf - 1, 0) > 0 &&
              it_raw_status(buf) == 200);
    if (again >= 0)
        close(again);
}

/* ---- SIGTERM under load ---- */

static void test_sigterm_drains(void)
{
    it_server s2;
    const char *args[] = {"--generator", gen_dir, "--shutdown-timeout", "20", NULL};
    CU_ASSERT_FATAL(it_start(&s2, args, NULL) == 0);
    static client cl[6];
    volatile int stop = 0;
    pthread_t th[6];
    for (int i = 0; i < 6; i++) {
        cl[i] = (client){.s = &s2, .stop = &stop, .stop_on_refusal = 1};
        pthread_create(&th[i], NULL, client_loop, &cl[i]);
    }
    usleep(1500 * 1000);
    double t_kill = now_s();
    kill(s2.pid, SIGTERM);
    CU_ASSERT(it_wait_exit(&s2, 30000) == 0);
    CU_ASSERT_EQUAL(s2.exit_status, 0);
    stop = 1;
    for (int i = 0; i < 6; i++)
        pthread_join(th[i], NULL);
    size_t drained = 0, before = 0, refused_503 = 0, bad = 0;
    for (int i = 0; i < 6; i++)
        for (size_t j = 0; j < cl[i].n; j++) {
            long st = cl[i].status[j];
            if (cl[i].t0[j] < t_kill)
                before++;
            if (st == 200 && cl[i].text[j])
                drained += cl[i].t0[j] < t_kill && cl[i].t1[j] > t_kill; /* in flight at the signal */
            else if (st == 503 && cl[i].shutting_down[j] && cl[i].retry_after[j])
                refused_503++;
            else if (st == 0 && cl[i].t0[j] > t_kill - 0.05)
                ; /* refused: the daemon had stopped (or was stopping) */
            else {
                bad++;
                fprintf(stderr, "  SIGTERM: status %ld for a request sent %.3f s after the signal\n", st,
                        cl[i].t0[j] - t_kill);
            }
        }
    printf("\n  SIGTERM: %zu requests sent before it, %zu in flight finished with 200, %zu later ones answered "
           "503 shutting_down, exit %d\n",
           before, drained, refused_503, s2.exit_status);
    CU_ASSERT(drained > 0);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(it_log_contains(&s2, "stderr.log", "stopped"));
    CU_ASSERT_EQUAL(it_stop(&s2), 0);
}

/* ---- metrics ---- */

static void test_metrics_405(void)
{
    it_response r = it_get(&srv, "/generate");
    CU_ASSERT(it_is_error(&r, 405, "method_not_allowed", NULL));
    it_free(&r);
    CU_ASSERT(it_inflight_reaches(&srv, 1));
    it_response m = it_get(&srv, "/metrics");
    CU_ASSERT_EQUAL(m.status, 200);
    CU_ASSERT(m.body && strstr(m.body, "ragd_http_requests_total{method=\"\",route=\"/generate\",status=\"405\"} 1\n"));
    CU_ASSERT(m.body && !strstr(m.body, "route=\"unmatched\",status=\"405\""));
    it_free(&m);
}

void cu_register(void)
{
    if (!cu_testdata("tokenizers/gpt2")) {
        cu_skip_all("../shared/testdata not found");
        return;
    }
    CU_pSuite s = CU_add_suite("load", setup, teardown);
    CU_add_test(s, "a full model gate answers 429 + Retry-After; other routes stay fast", test_overload);
    CU_add_test(s, "a route without a model has its own gate: 429 + Retry-After, then served", test_route_gate);
    CU_add_test(s, "slow clients do not starve normal ones; idle ones close at --timeout", test_slow_clients);
    CU_add_test(s, "SIGTERM under load drains in-flight requests and exits 0", test_sigterm_drains);
    CU_add_test(s, "/metrics counts a 405 under its path's pattern", test_metrics_405);
}
