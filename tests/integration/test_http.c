/* test_http.c — the "HTTP layer" cases of RELIABILITY.md against a real ragd: routing, media
 * types, body caps (honest, lying, chunked), malformed framing, header abuse, request ids,
 * overload (429), /metrics, /info and /health. After every rejected request a probe must
 * still tokenize "Hello world" into GPT-2's ids. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cu.h"
#include "harness.h"

#define MAX_BODY 4096 /* --max-body-bytes of the shared server (the smallest allowed is 1024) */
#define TIMEOUT_S 2   /* --timeout: idle connections are closed after this */

static it_server srv;
static char *gpt2;

static int setup(void)
{
    const char *args[] = {"--generator", gpt2, "--max-body-bytes", "4096", "--timeout", "2", "--max-batch", "8", NULL};
    return it_start(&srv, args, NULL);
}

static int teardown(void)
{
    free(gpt2);
    return it_stop(&srv) == 0 ? 0 : -1;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The JSON body of a raw response, or NULL. */
static json_t *raw_json(const char *resp)
{
    const char *body = strstr(resp, "\r\n\r\n");
    return body ? json_loads(body + 4, JSON_DISABLE_EOF_CHECK, NULL) : NULL;
}

static void test_routing(void)
{
    static const struct {
        const char *method, *path;
        long status;
        const char *allow; /* for 405 */
    } cases[] = {
        {"GET", "/nope", 404, NULL},       {"POST", "/nope", 404, NULL},       {"GET", "/", 404, NULL},
        {"POST", "/tokenize/x", 404, NULL}, {"GET", "/health/", 404, NULL},    {"DELETE", "/tokenize", 405, "POST"},
        {"GET", "/tokenize", 405, "POST"},  {"PUT", "/decode", 405, "POST"},   {"POST", "/health", 405, "GET"},
        {"OPTIONS", "/tokenize", 405, "POST"}, {"OPTIONS", "/health", 405, "GET"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *body = !strcmp(cases[i].method, "POST") ? "{\"inputs\":\"a\"}" : NULL;
        it_response r = it_request(&srv, cases[i].method, cases[i].path, NULL, body, body ? strlen(body) : 0);
        char allow[64] = "";
        if (cases[i].status == 404) {
            CU_ASSERT(it_is_error(&r, 404, "not_found", NULL));
        } else {
            CU_ASSERT(it_is_error(&r, 405, "method_not_allowed", NULL));
            CU_ASSERT(it_header(&r, "Allow", allow, sizeof allow) && !strcmp(allow, cases[i].allow));
        }
        /* CORS is off: no Access-Control-Allow-* header on anything, preflight included. */
        if (strcasestr(r.headers, "Access-Control-Allow"))
            fprintf(stderr, "%s %s sent CORS headers:\n%s", cases[i].method, cases[i].path, r.headers);
        CU_ASSERT_PTR_NULL(strcasestr(r.headers, "Access-Control-Allow"));
        it_free(&r);
        CU_ASSERT(it_probe(&srv));
    }
}

static void test_media_type(void)
{
    static const struct {
        const char *header;
        long status; /* 200: accepted, and the answer is checked */
    } cases[] = {
        {"Content-Type: text/plain", 415},
        {"Content-Type:", 415}, /* libcurl: send no Content-Type at all */
        {"Content-Type: application/jsonx", 415},
        {"Content-Type: application/x-www-form-urlencoded", 415},
        {"Content-Type: multipart/form-data; boundary=x", 415},
        {"Content-Type: application/json; charset=utf-8", 200},
        {"Content-Type: Application/JSON", 200},
    };
    static const char body[] = "{\"inputs\":\"Hello world\"}";
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *h[] = {cases[i].header, NULL};
        it_response r = it_request(&srv, "POST", "/tokenize", h, body, sizeof body - 1);
        int ok = cases[i].status == 415 ? it_is_error(&r, 415, "unsupported_media_type", NULL)
                                        : r.status == 200 && json_integer_value(json_object_get(
                                                                 json_array_get(json_array_get(r.json, 0), 1), "id")) == 995;
        if (!ok)
            fprintf(stderr, "  %s\n", cases[i].header);
        CU_ASSERT(ok);
        it_free(&r);
        CU_ASSERT(it_probe(&srv));
    }
}

/* A /tokenize body of exactly `n` bytes: {"inputs":"aaa..."}. Caller frees. */
static char *body_of_size(size_t n)
{
    char *b = malloc(n + 1);
    int k = snprintf(b, n + 1, "{\"inputs\":\"");
    memset(b + k, 'a', n - (size_t)k - 2);
    memcpy(b + n - 2, "\"}", 3);
    return b;
}

static void test_body_cap_honest(void)
{
    /* At the cap: served. One byte over: 413. Far over: 413. */
    static const struct {
        size_t size;
        long status;
    } cases[] = {{MAX_BODY, 200}, {MAX_BODY + 1, 413}, {64 * 1024, 413}, {3u << 20, 413}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *b = body_of_size(cases[i].size);
        it_response r = it_request(&srv, "POST", "/tokenize", NULL, b, cases[i].size);
        if (cases[i].status == 413) {
            CU_ASSERT(it_is_error(&r, 413, "payload_too_large", NULL));
        } else {
            json_t *toks = json_array_get(r.json, 0);
            json_t *last = json_array_get(toks, json_array_size(toks) - 1);
            CU_ASSERT(r.status == 200 && json_array_size(toks) > 0 &&
                      json_integer_value(json_object_get(last, "stop")) == (json_int_t)(cases[i].size - 13));
        }
        it_free(&r);
        free(b);
        CU_ASSERT(it_probe(&srv));
    }
    /* The 413 comes from the headers alone, before any body byte: none is ever sent here,
     * so an answer well inside the idle timeout proves the server did not wait for it. */
    static const char head[] = "POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                               "Content-Length: 1000000000\r\n\r\n";
    it_raw_info info;
    char *resp = it_raw(&srv, head, sizeof head - 1, TIMEOUT_S * 3000, &info);
    json_t *j = raw_json(resp);
    CU_ASSERT_EQUAL(it_raw_status(resp), 413);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "code")), "payload_too_large");
    CU_ASSERT(info.ms < TIMEOUT_S * 1000 / 2);
    json_decref(j);
    free(resp);
    CU_ASSERT(it_probe(&srv));
}

/* A chunked request to /tokenize whose body is `json` cut into chunks of `chunk` bytes,
 * padded with `pad` spaces after it (also chunked). Caller frees. */
static char *chunked(const char *json, size_t pad, size_t chunk, size_t *len)
{
    static const char head[] = "POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n";
    size_t n = strlen(json) + pad, off = sizeof head - 1;
    char *body = malloc(n + 1), *raw = malloc(off + n + (n / chunk + 2) * 16);
    memcpy(body, json, strlen(json));
    memset(body + strlen(json), ' ', pad);
    memcpy(raw, head, off);
    for (size_t at = 0; at < n; at += chunk) {
        size_t k = n - at < chunk ? n - at : chunk;
        off += (size_t)snprintf(raw + off, 16, "%zx\r\n", k);
        memcpy(raw + off, body + at, k);
        off += k;
        memcpy(raw + off, "\r\n", 2);
        off += 2;
    }
    memcpy(raw + off, "0\r\n\r\n", 5);
    *len = off + 5;
    free(body);
    return raw;
}

static void test_body_cap_chunked(void)
{
    static const struct {
        size_t pad, chunk;
        long status;
    } cases[] = {{0, 3, 200}, {MAX_BODY - 40, 1000, 200}, {MAX_BODY, 1000, 413}, {2u << 20, 65536, 413}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len;
        char *raw = chunked("{\"inputs\":\"Hello world\"}", cases[i].pad, cases[i].chunk, &len);
        char *resp = it_raw(&srv, raw, len, TIMEOUT_S * 2000, NULL);
        json_t *j = raw_json(resp);
        const char *code = json_string_value(json_object_get(j, "code"));
        int ok = it_raw_status(resp) == cases[i].status &&
                 (cases[i].status == 413
                      ? code && !strcmp(code, "payload_too_large")
                      : json_integer_value(json_object_get(json_array_get(json_array_get(j, 0), 1), "id")) == 995);
        if (!ok)
            fprintf(stderr, "chunked, %zu bytes of padding: %.300s\n", cases[i].pad, resp);
        CU_ASSERT(ok);
        json_decref(j);
        free(resp);
        free(raw);
        CU_ASSERT(it_probe(&srv));
    }
}

#define POST_HEAD "POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"

/* Framing libcurl will not send, and what each must get. */
static const struct {
    const char *name, *request;
    long status;       /* the first response's status; 0: none at all */
    const char *code;  /* our JSON error code, when the reply is ours */
    int close_now;     /* the server must close the connection at once (RFC 9112 §6.3) */
} framing[] = {
    {"Content-Length smaller than the body", POST_HEAD "Content-Length: 5\r\n\r\n{\"inputs\":\"abc\"}", 400,
     "invalid_json", 0},
    {"negative Content-Length", POST_HEAD "Content-Length: -5\r\n\r\n{}", 400, NULL, 1},
    {"non-numeric Content-Length", POST_HEAD "Content-Length: ten\r\n\r\n{}", 400, NULL, 1},
    {"Content-Length with a plus sign", POST_HEAD "Content-Length: +2\r\n\r\n{}", 400, NULL, 1},
    {"two different Content-Lengths", POST_HEAD "Content-Length: 2\r\nContent-Length: 20\r\n\r\n{}", 400, NULL, 1},
    {"Content-Length with chunked", POST_HEAD "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
     -1, NULL, 1},
    {"header line without a colon", "GET /health HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400, NULL, 1},
};

static void test_framing(void)
{
    for (size_t i = 0; i < sizeof framing / sizeof framing[0]; i++) {
        it_raw_info info;
        char *resp = it_raw(&srv, framing[i].request, strlen(framing[i].request), TIMEOUT_S * 3000, &info);
        long status = it_raw_status(resp);
        json_t *j = raw_json(resp);
        /* -1: either answer is allowed (reject it, or honour chunked and ignore the length). */
        int ok = framing[i].status == -1 ? (status == 400 || status == 422) : status == framing[i].status;
        if (framing[i].code)
            ok &= json_is_string(json_object_get(j, "code")) &&
                  !strcmp(json_string_value(json_object_get(j, "code")), framing[i].code);
        if (framing[i].close_now)
            ok &= info.closed && info.ms < TIMEOUT_S * 1000 / 2;
        if (!ok)
            fprintf(stderr, "%s: closed=%d after %ld ms, got %.300s\n", framing[i].name, info.closed, info.ms, resp);
        CU_ASSERT(ok);
        json_decref(j);
        free(resp);
        CU_ASSERT(it_probe(&srv));
    }
}

static void test_lying_length_larger(void)
{
    /* The body never completes: no answer, no crash; the connection is closed at the idle
     * timeout, and other clients are served meanwhile. */
    static const char req[] = POST_HEAD "Content-Length: 100\r\n\r\n{}";
    it_raw_info info;
    char *resp = it_raw(&srv, req, sizeof req - 1, TIMEOUT_S * 4000, &info);
    CU_ASSERT(info.closed);
    CU_ASSERT(info.ms >= TIMEOUT_S * 1000 - 300 && info.ms <= TIMEOUT_S * 1000 + 2500);
    CU_ASSERT(it_raw_status(resp) == 0 || it_raw_status(resp) == 408);
    if (!info.closed)
        fprintf(stderr, "lying Content-Length: open after %ld ms: %.200s\n", info.ms, resp);
    free(resp);
    CU_ASSERT(it_probe(&srv));
}

/* A request with one `fill`-byte header value, or `count` small headers, or a long path. */
static char *oversized(size_t header_bytes, size_t count, size_t path_bytes, size_t *len)
{
    size_t cap = header_bytes + count * 24 + path_bytes + 128, off = 0;
    char *r = malloc(cap);
    off += (size_t)snprintf(r, cap, "GET /health");
    memset(r + off, 'u', path_bytes);
    off += path_bytes;
    off += (size_t)snprintf(r + off, cap - off, " HTTP/1.1\r\nHost: x\r\n");
    if (header_bytes) {
        off += (size_t)snprintf(r + off, cap - off, "X-Big: ");
        memset(r + off, 'a', header_bytes);
        off += header_bytes;
        off += (size_t)snprintf(r + off, cap - off, "\r\n");
    }
    for (size_t i = 0; i < count; i++)
        off += (size_t)snprintf(r + off, cap - off, "X-H%zu: v\r\n", i);
    off += (size_t)snprintf(r + off, cap - off, "\r\n");
    *len = off;
    return r;
}

static void test_header_abuse(void)
{
    static const struct {
        const char *name;
        size_t header_bytes, count, path_bytes;
        long allowed[2];
        const char *code; /* when the reply is ours */
    } cases[] = {
        {"a 32 KiB header", 32 * 1024, 0, 0, {431, 400}, NULL},
        {"a 100 KiB header", 100 * 1024, 0, 0, {431, 400}, NULL},
        {"1,000 headers", 0, 1000, 0, {431, 400}, NULL},
        {"an 8 KiB URI", 0, 0, 8 * 1024, {414, 404}, "not_found"},
        {"a 100 KiB URI", 0, 0, 100 * 1024, {414, 431}, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len;
        char *req = oversized(cases[i].header_bytes, cases[i].count, cases[i].path_bytes, &len);
        char *resp = it_raw(&srv, req, len, TIMEOUT_S * 2000, NULL);
        long status = it_raw_status(resp);
        json_t *j = raw_json(resp);
        int ok = status == cases[i].allowed[0] || status == cases[i].allowed[1];
        if (ok && status == 404)
            ok = json_is_string(json_object_get(j, "code")) && !strcmp(json_string_value(json_object_get(j, "code")), cases[i].code);
        if (!ok)
            fprintf(stderr, "%s: expected %ld or %ld, got %.200s\n", cases[i].name, cases[i].allowed[0],
                    cases[i].allowed[1], resp);
        CU_ASSERT(ok);
        json_decref(j);
        free(resp);
        free(req);
        CU_ASSERT(it_probe(&srv));
    }
}

static void test_request_ids(void)
{
    static const struct {
        const char *header; /* NULL: none sent */
        int echoed;
    } cases[] = {
        {"X-Request-Id: trace-42.a_b", 1}, {"X-Request-Id: abcdefghij0123456789", 1}, /* 20 characters */
        {NULL, 0},                         {"X-Request-Id: abcdefghij0123456789x", 0},  /* 21 */
        {"X-Request-Id: has spaces", 0},   {"X-Request-Id: a/b", 0},
        {"X-Request-Id: \"q\"", 0},        {"X-Request-Id: caf\xc3\xa9", 0},
    };
    char prev[64] = "";
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *h[] = {cases[i].header, NULL};
        it_response r = it_request(&srv, "GET", "/nope", cases[i].header ? h : NULL, NULL, 0);
        char id[64] = "";
        CU_ASSERT(it_is_error(&r, 404, "not_found", NULL)); /* also: body request_id == header */
        CU_ASSERT(it_header(&r, "X-Request-Id", id, sizeof id));
        if (cases[i].echoed) {
            CU_ASSERT_STRING_EQUAL(id, cases[i].header + strlen("X-Request-Id: "));
        } else {
            CU_ASSERT(strlen(id) == 16 && strspn(id, "0123456789abcdef") == 16 && strcmp(id, prev) != 0);
            snprintf(prev, sizeof prev, "%s", id);
        }
        it_free(&r);
    }
    /* Successful replies carry the id too. */
    const char *mine[] = {"X-Request-Id: ok-1", NULL};
    it_response r = it_request(&srv, "GET", "/health", mine, NULL, 0);
    char id[64] = "";
    CU_ASSERT(r.status == 200 && it_header(&r, "X-Request-Id", id, sizeof id) && !strcmp(id, "ok-1"));
    it_free(&r);
}

static int positive_int(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    return end != s && *end == '\0' && v > 0;
}

/* The value of an unlabelled metric line "NAME VALUE", or -1. */
static void test_overload(void)
{
    /* Requests whose body never arrives hold their place (they count from their headers),
     * which makes the 429 deterministic. Own server: its timeout must outlast the test. */
    it_server s;
    const char *args[] = {"--generator", gpt2, "--max-concurrent", "3", "--timeout", "20", NULL};
    CU_ASSERT_EQUAL_FATAL(it_start(&s, args, NULL), 0);
    static const char held[] = POST_HEAD "Content-Length: 100\r\n\r\n{";
    int fds[3];
    fds[0] = it_open(&s, held, sizeof held - 1);
    fds[1] = it_open(&s, held, sizeof held - 1);
    CU_ASSERT(it_inflight_reaches(&s, 3)); /* the two held requests and /metrics itself */
    fds[2] = it_open(&s, held, sizeof held - 1);
    int got429 = 0;
    for (int i = 0; i < 500 && !got429; i++, sleep_ms(20)) { /* each held connection is read by its own thread */
        /* A held request that arrived while a finished one was still counted (its count drops
         * only after its reply is sent) was itself turned away: hold another in its place. */
        for (int k = 0; k < 3; k++) {
            struct pollfd p = {.fd = fds[k], .events = POLLIN};
            if (fds[k] < 0 || poll(&p, 1, 0) == 1) {
                if (fds[k] >= 0)
                    close(fds[k]);
                fds[k] = it_open(&s, held, sizeof held - 1);
            }
        }
        it_response r = it_post(&s, "/tokenize", "{\"inputs\":\"Hello world\"}");
        char retry[16] = "";
        if (r.status == 429) {
            got429 = 1;
            CU_ASSERT(it_is_error(&r, 429, "overloaded", NULL));
            CU_ASSERT(it_header(&r, "Retry-After", retry, sizeof retry) && positive_int(retry));
        }
        it_free(&r);
    }
    CU_ASSERT(got429);
    for (int i = 0; i < 3; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    /* Once they leave, the server recovers: the slots are released and the probe answers. */
    CU_ASSERT(it_inflight_reaches(&s, 1));
    CU_ASSERT(it_probe(&s));
    it_response r = it_get(&s, "/metrics");
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "ragd_http_requests_total{method=\"POST\",route=\"/tokenize\",status=\"429\"}"));
    it_free(&r);
    CU_ASSERT_EQUAL(it_stop(&s), 0);
}

static void test_metrics(void)
{
    CU_ASSERT(it_probe(&srv));
    it_response bad = it_post(&srv, "/tokenize", "{\"inputs\":5}");
    CU_ASSERT(it_is_error(&bad, 422, "invalid_type", "/inputs"));
    it_free(&bad);
    /* Requests are counted when MHD reports them complete, which can be just after the
     * client has its answer: poll until the in-flight gauge is back to this request alone. */
    CU_ASSERT(it_inflight_reaches(&srv, 1));
    it_response r = it_get(&srv, "/metrics");
    char ctype[128] = "";
    CU_ASSERT(r.status == 200 && it_header(&r, "Content-Type", ctype, sizeof ctype) && !strncmp(ctype, "text/plain", 10));
    static const char *const want[] = {
        "ragd_http_requests_total{method=\"POST\",route=\"/tokenize\",status=\"200\"} ",
        "ragd_http_requests_total{method=\"POST\",route=\"/tokenize\",status=\"422\"} ",
        "ragd_http_request_duration_seconds_bucket{method=\"POST\",route=\"/tokenize\"",
        "# TYPE ragd_http_requests_in_flight gauge\n",
        "ragd_model_ready{role=\"generator\"} 1\n",
        "ragd_model_ready{role=\"embedder\"} 0\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (!strstr(r.body, want[i]))
            fprintf(stderr, "/metrics lacks %s\n", want[i]);
        CU_ASSERT_PTR_NOT_NULL(strstr(r.body, want[i]));
    }
    /* Every sample line is "name{labels} number" (Prometheus text format 0.0.4). */
    size_t samples = 0;
    for (char *line = r.body; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (*line == '#' || *line == '\n')
            continue;
        const char *sp = strchr(line, ' '), *nl = strchr(line, '\n');
        char *end = NULL;
        if (sp && (!nl || sp < nl))
            strtod(sp + 1, &end);
        int ok = end && end != sp + 1 && (*end == '\n' || *end == '\0');
        if (!ok)
            fprintf(stderr, "bad metric line: %.*s\n", (int)(nl ? nl - line : 80), line);
        CU_ASSERT(ok);
        samples++;
    }
    CU_ASSERT(samples > 10);
    it_free(&r);
}

static void test_info_and_health(void)
{
    it_response r = it_get(&srv, "/info");
    CU_ASSERT_EQUAL_FATAL(r.status, 200);
    json_t *limits = json_object_get(r.json, "limits"), *models = json_object_get(r.json, "models");
    static const struct {
        const char *key;
        json_int_t value;
    } want[] = {{"max_body_bytes", MAX_BODY}, {"max_batch", 8}, {"max_input_tokens", 8192}, {"timeout_s", TIMEOUT_S}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(limits, want[i].key)), want[i].value);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r.json, "name")), "ragd");
    CU_ASSERT(json_string_length(json_object_get(r.json, "version")) > 0);
    CU_ASSERT(json_is_false(json_object_get(r.json, "auth")));
    json_t *gen = json_object_get(models, "generator");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(gen, "status")), "ready");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(gen, "tokenizer")), "bpe");
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(gen, "vocab_size")), 50257);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(json_object_get(models, "embedder"), "status")), "absent");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(json_object_get(models, "reranker"), "status")), "absent");
    it_free(&r);
    static const char *const health[] = {"/health", "/healthz", "/readyz"};
    for (size_t i = 0; i < 3; i++) {
        r = it_get(&srv, health[i]);
        CU_ASSERT(r.status == 200 && !strcmp(json_string_value(json_object_get(r.json, "status")), "ok"));
        it_free(&r);
    }
    /* A route whose model is absent says so, and the rest keep working. */
    r = it_post(&srv, "/tokenize", "{\"inputs\":\"a\",\"model\":\"embedder\"}");
    CU_ASSERT(it_is_error(&r, 503, "model_not_loaded", "/model"));
    char retry[16] = "";
    CU_ASSERT(it_header(&r, "Retry-After", retry, sizeof retry));
    it_free(&r);
    CU_ASSERT(it_probe(&srv));
}

void cu_register(void)
{
    gpt2 = it_testdata("tokenizers/gpt2");
    if (!gpt2) {
        cu_skip_all("../shared/testdata not found");
        return;
    }
    CU_pSuite s = CU_add_suite("http", setup, teardown);
    CU_add_test(s, "404, 405 with Allow, no CORS", test_routing);
    CU_add_test(s, "415 media types", test_media_type);
    CU_add_test(s, "413 honest Content-Length", test_body_cap_honest);
    CU_add_test(s, "413 chunked", test_body_cap_chunked);
    CU_add_test(s, "malformed framing", test_framing);
    CU_add_test(s, "lying Content-Length (larger)", test_lying_length_larger);
    CU_add_test(s, "oversized headers and URIs", test_header_abuse);
    CU_add_test(s, "request ids", test_request_ids);
    CU_add_test(s, "429 over --max-concurrent", test_overload);
    CU_add_test(s, "metrics", test_metrics);
    CU_add_test(s, "info and health", test_info_and_health);
}
