/* test_http.c — the HTTP and JSON cases of RELIABILITY.md against a real ragd: routing,
 * media types, body caps (honest, lying, chunked), header abuse, malformed and hostile JSON,
 * request ids, metrics, /info, the OpenAPI document, and the command line. After every
 * rejected request a probe must still tokenize correctly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cu.h"
#include "harness.h"

static it_server srv;

static int setup(void)
{
    const char *gpt2 = it_testdata("tokenizers/gpt2");
    const char *args[] = {"--generator", gpt2, "--timeout", "3", "--max-batch", "8", NULL};
    return it_start(&srv, args, NULL);
}

static int teardown(void) { return it_stop(&srv) == 0 ? 0 : -1; }

/* The next valid request gives the right answer. */
static void probe(void)
{
    it_response r = it_post(&srv, "/tokenize", "{\"inputs\":\"Hello world\"}");
    json_t *toks = json_array_get(r.json, 0);
    int ok = r.status == 200 && json_array_size(toks) == 2 &&
             json_integer_value(json_object_get(json_array_get(toks, 0), "id")) == 15496 &&
             json_integer_value(json_object_get(json_array_get(toks, 1), "id")) == 995;
    if (!ok)
        fprintf(stderr, "probe failed: %ld %s\n", r.status, r.body);
    CU_ASSERT(ok);
    it_free(&r);
}

static void test_routing(void)
{
    it_response r = it_get(&srv, "/nope");
    CU_ASSERT(it_is_error(&r, 404, "not_found", NULL));
    it_free(&r);
    static const char *const methods[] = {"DELETE", "GET", "PUT", "OPTIONS"};
    for (size_t i = 0; i < 4; i++) {
        r = it_request(&srv, methods[i], "/tokenize", NULL, NULL, 0);
        char allow[64] = "", cors[64];
        CU_ASSERT(it_is_error(&r, 405, "method_not_allowed", NULL));
        CU_ASSERT(it_header(&r, "Allow", allow, sizeof allow) && !strcmp(allow, "POST"));
        CU_ASSERT_FALSE(it_header(&r, "Access-Control-Allow-Origin", cors, sizeof cors));
        it_free(&r);
    }
    probe();
}

static void test_media_type(void)
{
    const char *plain[] = {"Content-Type: text/plain", NULL}, *none[] = {"Content-Type:", NULL};
    it_response r = it_request(&srv, "POST", "/tokenize", plain, "{\"inputs\":\"a\"}", 14);
    CU_ASSERT(it_is_error(&r, 415, "unsupported_media_type", NULL));
    it_free(&r);
    r = it_request(&srv, "POST", "/tokenize", none, "{\"inputs\":\"a\"}", 14);
    CU_ASSERT(it_is_error(&r, 415, "unsupported_media_type", NULL));
    it_free(&r);
    const char *charset[] = {"Content-Type: application/json; charset=utf-8", NULL};
    r = it_request(&srv, "POST", "/tokenize", charset, "{\"inputs\":\"a\"}", 14);
    CU_ASSERT_EQUAL(r.status, 200);
    it_free(&r);
    probe();
}

static void test_body_caps(void)
{
    size_t n = 3u << 20; /* over the default 2 MiB cap */
    char *big = malloc(n + 32);
    int k = snprintf(big, 32, "{\"inputs\":\"");
    memset(big + k, 'a', n - (size_t)k - 2);
    memcpy(big + n - 2, "\"}", 3);
    it_response r = it_request(&srv, "POST", "/tokenize", NULL, big, n);
    CU_ASSERT(it_is_error(&r, 413, "payload_too_large", NULL));
    it_free(&r);
    free(big);
    probe();

    /* Chunked, over the cap: counted as it arrives. */
    const char *head = "POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n";
    size_t chunk = 65536, chunks = 40, off = strlen(head);
    char *raw = malloc(off + chunks * (chunk + 16) + 16);
    memcpy(raw, head, off);
    for (size_t i = 0; i < chunks; i++) {
        off += (size_t)snprintf(raw + off, 16, "%zx\r\n", chunk);
        memset(raw + off, i == 0 ? '{' : ' ', chunk);
        off += chunk;
        memcpy(raw + off, "\r\n", 2);
        off += 2;
    }
    memcpy(raw + off, "0\r\n\r\n", 5);
    char *resp = it_raw(&srv, raw, off + 5, 3000);
    CU_ASSERT_PTR_NOT_NULL(strstr(resp, " 413 "));
    CU_ASSERT_PTR_NOT_NULL(strstr(resp, "payload_too_large"));
    free(resp);
    free(raw);
    probe();
}

/* Raw requests that libcurl will not send, and the status they must get. */
static const struct {
    const char *name, *request;
    const char *want; /* a fragment of the response; NULL: only that the server survives */
} raw_cases[] = {
    {"Content-Length smaller than the body",
     "POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\n{\"inputs\":\"abc\"}",
     "invalid_json"},
    {"negative Content-Length",
     "POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: -5\r\n\r\n{}", " 400 "},
    {"non-numeric Content-Length",
     "POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ten\r\n\r\n{}", " 400 "},
    {"Content-Length with chunked",
     "POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\n"
     "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", NULL},
    {"header line without a colon", "GET /health HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", " 400 "},
    {"Content-Length larger than the body (closed at the idle timeout)",
     "POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{}", NULL},
};

static void test_raw_http(void)
{
    for (size_t i = 0; i < sizeof raw_cases / sizeof raw_cases[0]; i++) {
        char *resp = it_raw(&srv, raw_cases[i].request, strlen(raw_cases[i].request), 5000);
        int ok = !raw_cases[i].want || strstr(resp, raw_cases[i].want);
        if (!ok)
            fprintf(stderr, "%s: got %.200s\n", raw_cases[i].name, resp);
        CU_ASSERT(ok);
        free(resp);
        probe();
    }
    /* Oversized headers, URI and header counts: refused by status, never a crash. */
    size_t n = 70000; /* over the per-connection memory limit */
    char *req = malloc(n + 200);
    int k = snprintf(req, 200, "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(req + k, 'a', n);
    memcpy(req + k + n, "\r\n\r\n", 5);
    char *resp = it_raw(&srv, req, strlen(req), 3000);
    CU_ASSERT(strstr(resp, " 431 ") || strstr(resp, " 400 ") || strstr(resp, " 413 "));
    free(resp);
    k = snprintf(req, 200, "GET /");
    memset(req + k, 'u', 9000);
    memcpy(req + k + 9000, " HTTP/1.1\r\nHost: x\r\n\r\n", 23);
    resp = it_raw(&srv, req, strlen(req), 3000);
    CU_ASSERT(strstr(resp, " 414 ") || strstr(resp, " 404 ") || strstr(resp, " 431 "));
    free(resp);
    size_t off = (size_t)snprintf(req, 200, "GET /health HTTP/1.1\r\nHost: x\r\n");
    req = realloc(req, 1000 * 16 + 200);
    for (int i = 0; i < 1000; i++)
        off += (size_t)snprintf(req + off, 32, "X-H%d: v\r\n", i);
    memcpy(req + off, "\r\n", 3);
    resp = it_raw(&srv, req, off + 2, 3000);
    CU_ASSERT(strstr(resp, " 431 ") || strstr(resp, " 400 ") || strstr(resp, " 200 "));
    free(resp);
    free(req);
    probe();
}

/* Nested arrays or objects to total depth `depth` (the top-level object counts; the
 * innermost container is empty, since jansson counts a scalar as one more level). */
static char *nested(size_t depth, char open)
{
    size_t inner = depth - 1;
    char *s = malloc(inner * 8 + 32), *p = s;
    p += snprintf(p, 16, "{\"inputs\":");
    for (size_t i = 0; i + 1 < inner; i++)
        p += open == '[' ? snprintf(p, 2, "[") : snprintf(p, 8, "{\"a\":");
    p += snprintf(p, 3, open == '[' ? "[]" : "{}");
    for (size_t i = 0; i + 1 < inner; i++)
        *p++ = open == '[' ? ']' : '}';
    *p++ = '}';
    *p = '\0';
    return s;
}

static void test_nesting(void)
{
    static const struct {
        size_t depth;
        long status;
        const char *code;
    } cases[] = {{2048, 422, "invalid_type"}, {2049, 400, "invalid_json"}, {100000, 400, "invalid_json"}};
    for (size_t i = 0; i < 3; i++)
        for (int kind = 0; kind < 2; kind++) {
            char *body = nested(cases[i].depth, kind ? '{' : '[');
            it_response r = it_post(&srv, "/tokenize", body);
            CU_ASSERT(it_is_error(&r, cases[i].status, cases[i].code, NULL) ||
                      it_is_error(&r, cases[i].status, cases[i].code, "/inputs"));
            it_free(&r);
            free(body);
        }
    probe();
}

/* Bodies for /tokenize or /decode and the error each must get. */
static const struct {
    const char *path, *body;
    long status;
    const char *code, *field;
} json_cases[] = {
    {"/tokenize", "", 400, "invalid_json", NULL},
    {"/tokenize", "null", 400, "invalid_json", NULL},
    {"/tokenize", "[\"a\"]", 400, "invalid_json", NULL},
    {"/tokenize", "{\"inputs\":\"a\"", 400, "invalid_json", NULL},
    {"/tokenize", "{}x", 400, "invalid_json", NULL},
    {"/tokenize", "{/*c*/\"inputs\":\"a\"}", 400, "invalid_json", NULL},
    {"/tokenize", "{'inputs':'a'}", 400, "invalid_json", NULL},
    {"/decode", "{\"ids\":[NaN]}", 400, "invalid_json", NULL},
    {"/decode", "{\"ids\":[Infinity]}", 400, "invalid_json", NULL},
    {"/tokenize", "{\"inputs\":\"\xc0\xaf\"}", 400, "invalid_json", NULL},
    {"/tokenize", "{\"inputs\":\"\x80\"}", 400, "invalid_json", NULL},
    {"/tokenize", "{\"inputs\":\"\xed\xa0\x80\"}", 400, "invalid_json", NULL},
    {"/tokenize", "{\"inputs\":\"\xf5\x80\x80\x80\"}", 400, "invalid_json", NULL},
    {"/tokenize", "{\"inputs\":\"\\ud800\"}", 400, "invalid_json", NULL},
    {"/tokenize", "{\"inputs\":\"a\\u0000b\"}", 400, "invalid_json", NULL},
    {"/tokenize", "{\"inputs\":\"ok\",\"inputs\":\"../x\"}", 400, "invalid_json", NULL},
    {"/tokenize", "{}", 422, "missing_field", "/inputs"},
    {"/tokenize", "{\"inputs\":5}", 422, "invalid_type", "/inputs"},
    {"/tokenize", "{\"inputs\":[]}", 422, "empty_input", "/inputs"},
    {"/tokenize", "{\"inputs\":[\"a\",7]}", 422, "invalid_type", "/inputs/1"},
    {"/tokenize", "{\"inputs\":\"a\",\"add_special_tokens\":\"yes\"}", 422, "invalid_type", "/add_special_tokens"},
    {"/tokenize", "{\"inputs\":\"a\",\"model\":\"gpt5\"}", 422, "invalid_value", "/model"},
    {"/tokenize", "{\"inputs\":\"a\",\"model\":\"embedder\"}", 503, "model_not_loaded", "/model"},
    {"/tokenize", "{\"inputs\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\"]}", 413, "batch_too_large", "/inputs"},
    {"/decode", "{\"ids\":[1.5]}", 422, "invalid_type", "/ids/0"},
    {"/decode", "{\"ids\":[15496,-1]}", 422, "invalid_value", "/ids/1"},
    {"/decode", "{\"ids\":[50257]}", 422, "invalid_value", "/ids/0"},
    {"/decode", "{\"ids\":[[1],[2147483648]]}", 422, "invalid_value", "/ids/1/0"},
    {"/decode", "{\"ids\":[1e400]}", 400, "invalid_json", NULL},
    {"/decode", "{\"ids\":[9223372036854775808]}", 400, "invalid_json", NULL},
    {"/decode", "{\"ids\":\"15496\"}", 422, "invalid_type", "/ids"},
    {"/decode", "{\"ids\":[true]}", 422, "invalid_type", "/ids/0"},
};

static void test_json_cases(void)
{
    for (size_t i = 0; i < sizeof json_cases / sizeof json_cases[0]; i++) {
        it_response r = it_request(&srv, "POST", json_cases[i].path, NULL, json_cases[i].body,
                                   strlen(json_cases[i].body));
        if (!it_is_error(&r, json_cases[i].status, json_cases[i].code, json_cases[i].field)) {
            fprintf(stderr, "  json case %zu: %s\n", i, json_cases[i].body);
            CU_FAIL("json case");
        }
        it_free(&r);
        probe();
    }
}

static void test_large_inputs(void)
{
    /* A 1 MB string is within the body cap but over the token cap. */
    size_t n = 1u << 20;
    char *body = malloc(n + 32);
    int k = snprintf(body, 32, "{\"inputs\":\"");
    memset(body + k, '.', n);
    memcpy(body + k + n, "\"}", 3);
    it_response r = it_post(&srv, "/tokenize", body);
    CU_ASSERT(it_is_error(&r, 413, "input_too_long", "/inputs"));
    it_free(&r);
    free(body);
    probe();
}

static void test_request_ids(void)
{
    const char *mine[] = {"X-Request-Id: trace-42.a_b", NULL}, *bad[] = {"X-Request-Id: has spaces", NULL};
    it_response r = it_request(&srv, "GET", "/health", mine, NULL, 0);
    char id[64] = "";
    CU_ASSERT(it_header(&r, "X-Request-Id", id, sizeof id) && !strcmp(id, "trace-42.a_b"));
    it_free(&r);
    r = it_request(&srv, "GET", "/nope", bad, NULL, 0);
    CU_ASSERT(it_is_error(&r, 404, "not_found", NULL));
    CU_ASSERT(it_header(&r, "X-Request-Id", id, sizeof id) && strlen(id) == 16);
    it_free(&r);
}

static void test_metrics_and_info(void)
{
    probe();
    it_response r = it_get(&srv, "/metrics");
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "ragd_http_requests_total{method=\"POST\",route=\"/tokenize\",status=\"200\"}"));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "ragd_http_request_duration_seconds_bucket{method=\"POST\",route=\"/tokenize\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "ragd_http_requests_in_flight "));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "ragd_model_ready{role=\"generator\"} 1"));
    it_free(&r);
    r = it_get(&srv, "/info");
    json_t *limits = json_object_get(r.json, "limits");
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(limits, "max_batch")), 8);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(limits, "timeout_s")), 3);
    json_t *gen = json_object_get(json_object_get(r.json, "models"), "generator");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(gen, "status")), "ready");
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(gen, "vocab_size")), 50257);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(json_object_get(json_object_get(r.json, "models"),
                                                                             "embedder"), "status")), "absent");
    it_free(&r);
    r = it_get(&srv, "/health");
    CU_ASSERT(r.status == 200 && !strcmp(json_string_value(json_object_get(r.json, "status")), "ok"));
    it_free(&r);
}

/* The router (handlers/routes.c) and the OpenAPI document list the same routes. */
static void test_openapi_agrees(void)
{
    it_response r = it_get(&srv, "/openapi.json");
    CU_ASSERT_EQUAL_FATAL(r.status, 200);
    json_t *paths = json_object_get(r.json, "paths");
    CU_ASSERT_FATAL(json_is_object(paths));
    char src[4096];
    const char *root = getenv("RAGD_SOURCE_ROOT");
    snprintf(src, sizeof src, "%s/handlers/routes.c", root ? root : ".");
    FILE *f = fopen(src, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    char line[512];
    size_t in_router = 0;
    while (fgets(line, sizeof line, f)) {
        char method[16], path[256];
        if (sscanf(line, " {\"%15[A-Z]\", \"%255[^\"]\"", method, path) != 2)
            continue;
        in_router++;
        for (char *m = method; *m; m++)
            *m = (char)(*m - 'A' + 'a');
        json_t *op = json_object_get(json_object_get(paths, path), method);
        if (!op)
            fprintf(stderr, "route %s %s is not in openapi.json\n", method, path);
        CU_ASSERT_PTR_NOT_NULL(op);
        /* Every operation documents its errors with the shared schema. */
        const char *dumped = json_dumps(op, JSON_COMPACT);
        CU_ASSERT(dumped && (strstr(dumped, "ErrorBody") || strstr(dumped, "OpenAIError")));
        free((void *)dumped);
    }
    fclose(f);
    size_t in_doc = 0;
    const char *path;
    json_t *item;
    json_object_foreach(paths, path, item) {
        in_doc += json_object_size(item);
        const char *method;
        json_t *op;
        json_object_foreach(item, method, op) {
            it_response live = !strcmp(method, "get") ? it_get(&srv, path) : it_post(&srv, path, "{}");
            if (live.status == 404 || live.status == 405)
                fprintf(stderr, "documented %s %s answers %ld\n", method, path, live.status);
            CU_ASSERT(live.status != 404 && live.status != 405);
            it_free(&live);
        }
    }
    CU_ASSERT(in_router > 0 && in_router == in_doc);
    it_free(&r);
}

static int run(const char *const *argv, char *out, size_t cap)
{
    char cmd[1024];
    size_t n = (size_t)snprintf(cmd, sizeof cmd, "%s", getenv("RAGD_BIN"));
    for (size_t i = 0; argv[i]; i++)
        n += (size_t)snprintf(cmd + n, sizeof cmd - n, " %s", argv[i]);
    snprintf(cmd + n, sizeof cmd - n, " 2>&1");
    FILE *p = popen(cmd, "r");
    size_t got = fread(out, 1, cap - 1, p);
    out[got] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_command_line(void)
{
    char *out = malloc(65536);
    const char *help[] = {"--help", NULL}, *version[] = {"--version", NULL}, *bogus[] = {"serve", "--bogus", NULL};
    CU_ASSERT_EQUAL(run(help, out, 65536), 0);
    static const char *const flags[] = {"--listen", "--port-file", "--data-dir", "--embedder", "--reranker",
                                        "--generator", "--adapters-dir", "--api-key", "--api-key-file", "--threads",
                                        "--train-workers", "--max-body-bytes", "--max-batch", "--max-input-tokens",
                                        "--max-concurrent", "RAGD_MAX_BATCH"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        CU_ASSERT_PTR_NOT_NULL(strstr(out, flags[i]));
    CU_ASSERT_EQUAL(run(version, out, 65536), 0);
    CU_ASSERT(strncmp(out, "ragd ", 5) == 0);
    CU_ASSERT_EQUAL(run(bogus, out, 65536), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "unknown flag '--bogus'"));
    free(out);
}

static void test_env_and_precedence(void)
{
    const char *gpt2 = it_testdata("tokenizers/gpt2");
    const char *env[] = {"RAGD_MAX_BATCH=2", "RAGD_GENERATOR=", NULL};
    const char *args[] = {"--generator", gpt2, NULL};
    it_server s;
    CU_ASSERT_EQUAL_FATAL(it_start(&s, args, env), 0);
    it_response r = it_post(&s, "/tokenize", "{\"inputs\":[\"a\",\"b\",\"c\"]}");
    CU_ASSERT(it_is_error(&r, 413, "batch_too_large", "/inputs"));
    it_free(&r);
    CU_ASSERT_EQUAL(it_stop(&s), 0);
    const char *args2[] = {"--generator", gpt2, "--max-batch", "5", NULL};
    CU_ASSERT_EQUAL_FATAL(it_start(&s, args2, env), 0);
    r = it_post(&s, "/tokenize", "{\"inputs\":[\"a\",\"b\",\"c\"]}");
    CU_ASSERT_EQUAL(r.status, 200);
    it_free(&r);
    CU_ASSERT_EQUAL(it_stop(&s), 0);
}

static void test_bad_model_dir_stops(void)
{
    char dir[] = "/tmp/ragd-empty-XXXXXX";
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    const char *args[] = {"--embedder", dir, NULL};
    it_server s;
    int rc = it_start(&s, args, NULL);
    if (rc == 0) { /* it may come up and then stop: wait for the exit */
        int status = 0;
        for (int i = 0; i < 100 && waitpid(s.pid, &status, WNOHANG) != s.pid; i++)
            usleep(50000);
        CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) != 0);
        s.pid = 0;
    }
    rmdir(dir);
}

void cu_register(void)
{
    if (!it_testdata("tokenizers/gpt2")) {
        cu_skip_all("../shared/testdata not found");
        return;
    }
    CU_pSuite s = CU_add_suite("http", setup, teardown);
    CU_add_test(s, "404 and 405", test_routing);
    CU_add_test(s, "media type", test_media_type);
    CU_add_test(s, "body caps", test_body_caps);
    CU_add_test(s, "raw HTTP abuse", test_raw_http);
    CU_add_test(s, "JSON nesting", test_nesting);
    CU_add_test(s, "JSON cases", test_json_cases);
    CU_add_test(s, "large inputs", test_large_inputs);
    CU_add_test(s, "request ids", test_request_ids);
    CU_add_test(s, "metrics, info, health", test_metrics_and_info);
    CU_add_test(s, "router and OpenAPI agree", test_openapi_agrees);
    CU_pSuite c = CU_add_suite("command line", NULL, NULL);
    CU_add_test(c, "help, version, bad flags", test_command_line);
    CU_add_test(c, "environment and precedence", test_env_and_precedence);
    CU_add_test(c, "a model directory that fails stops ragd", test_bad_model_dir_stops);
}
