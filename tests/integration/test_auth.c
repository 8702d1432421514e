/* test_auth.c — Bearer API keys on a real ragd: every route but the health routes needs a
 * configured key, compared exactly; the scheme is case-insensitive (RFC 7235). Every
 * operation the OpenAPI document lists is walked without a key and with a wrong one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cu.h"
#include "harness.h"

static it_server srv;
static char key_file[] = "/tmp/ragd-keys-XXXXXX";
static char *gpt2;

static int setup(void)
{
    int fd = mkstemp(key_file);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f)
        return -1;
    /* A comment, blank lines and trailing spaces around a key are not part of any key. */
    fputs("# team keys\nkey-one\n\nkey-two  \n", f);
    fclose(f);
    gpt2 = it_testdata("tokenizers/gpt2");
    const char *args[] = {"--generator", gpt2, "--api-key", "main-key", "--api-key-file", key_file, NULL};
    return it_start(&srv, args, NULL);
}

static int teardown(void)
{
    remove(key_file);
    free(gpt2);
    return it_stop(&srv) == 0 ? 0 : -1;
}

static it_response call(const char *path, const char *const *headers)
{
    int post = !strcmp(path, "/tokenize");
    const char *body = "{\"inputs\":\"Hello world\"}";
    return it_request(&srv, post ? "POST" : "GET", path, headers, post ? body : NULL, post ? strlen(body) : 0);
}

static void test_rejected(void)
{
    char *huge = malloc(10240 + 32);
    int k = snprintf(huge, 32, "Authorization: Bearer ");
    memset(huge + k, 'k', 10240);
    huge[k + 10240] = '\0';
    const char *const cases[][4] = {
        {NULL},
        {"Authorization: Bearer wrong"},
        {"Authorization: Bearer key-one "},
        {"Authorization: Bearer  key-one"},
        {"Authorization: Basic a2V5LW9uZTo="},
        {"Authorization: key-one"},
        {"Authorization: Bearer key-one", "Authorization: Bearer key-one"},
        {"Authorization: Bearer main-ke"},
        {"Authorization: Bearer main-keyy"},
        {"Authorization: Bearer "},
        {"Authorization: Bearer"},
        {"Authorization: Bearer # team keys"},
        {"Authorization: Bearer key-two  "},
        {"Authorization: Bearer key-one\tx"},
        {"Authorization: Bearer main-key", "X-Api-Key: main-key", "Authorization: Bearer wrong"},
        {"X-Api-Key: main-key"},
        {huge},
    };
    static const char *const paths[] = {"/tokenize", "/info", "/metrics", "/openapi.json"};
    for (size_t p = 0; p < 4; p++)
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            it_response r = call(paths[p], cases[i][0] ? cases[i] : NULL);
            char www[64] = "";
            if (!it_is_error(&r, 401, "unauthorized", NULL))
                fprintf(stderr, "  case %zu on %s\n", i, paths[p]);
            CU_ASSERT(it_is_error(&r, 401, "unauthorized", NULL));
            CU_ASSERT(it_header(&r, "WWW-Authenticate", www, sizeof www) && !strcmp(www, "Bearer"));
            it_free(&r);
        }
    free(huge);
}

static void test_accepted(void)
{
    const char *const keys[][2] = {{"Authorization: Bearer main-key"}, {"Authorization: Bearer key-one"},
                                   {"Authorization: Bearer key-two"}, {"Authorization: bearer key-one"},
                                   {"authorization: BEARER main-key"}};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        it_response r = call("/tokenize", keys[i]);
        CU_ASSERT_EQUAL(r.status, 200);
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_array_get(json_array_get(r.json, 0), 0), "id")), 15496);
        it_free(&r);
    }
    static const char *const health[] = {"/health", "/healthz", "/readyz"};
    const char *wrong[] = {"Authorization: Bearer wrong", NULL};
    for (size_t i = 0; i < 3; i++)
        for (int k = 0; k < 2; k++) {
            it_response r = call(health[i], k ? wrong : NULL);
            CU_ASSERT(r.status == 200 && !strcmp(json_string_value(json_object_get(r.json, "status")), "ok"));
            it_free(&r);
        }
    /* A 5xx body names no server path: the generator directory holds a tokenizer only. */
    it_response g = it_request(&srv, "POST", "/generate", keys[0], "{\"inputs\":\"Hi\"}", 15);
    CU_ASSERT(it_is_error(&g, 503, "model_not_loaded", NULL));
    const char *why = json_string_value(json_object_get(g.json, "error"));
    CU_ASSERT(why && !strstr(why, gpt2) && !strchr(why, '/'));
    it_free(&g);
    /* /info says auth is on. */
    it_response r = call("/info", keys[0]);
    CU_ASSERT(r.status == 200 && json_is_true(json_object_get(r.json, "auth")));
    it_free(&r);
}

static int is_health(const char *path)
{
    return !strcmp(path, "/health") || !strcmp(path, "/healthz") || !strcmp(path, "/readyz");
}

/* The path with each {param} replaced by "x1". */
static void fill_params(const char *tmpl, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = tmpl; *p && n + 3 < cap; p++) {
        if (*p == '{') {
            const char *close = strchr(p, '}');
            if (close) {
                out[n++] = 'x';
                out[n++] = '1';
                p = close;
                continue;
            }
        }
        out[n++] = *p;
    }
    out[n] = '\0';
}

static void test_every_route(void)
{
    const char *key[] = {"Authorization: Bearer main-key", NULL};
    it_response doc = it_request(&srv, "GET", "/openapi.json", key, NULL, 0);
    CU_ASSERT_EQUAL_FATAL(doc.status, 200);
    static const char *const methods[] = {"get", "post", "put", "delete", "patch"};
    const char *tmpl;
    json_t *item;
    size_t walked = 0, open = 0;
    json_object_foreach(json_object_get(doc.json, "paths"), tmpl, item) {
        char path[256], upper[8];
        fill_params(tmpl, path, sizeof path);
        for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++) {
            if (!json_object_get(item, methods[m]))
                continue;
            size_t k = 0;
            for (; methods[m][k]; k++)
                upper[k] = (char)(methods[m][k] - 32);
            upper[k] = '\0';
            const char *wrong[] = {"Authorization: Bearer wrong", NULL};
            for (int w = 0; w < 2; w++) {
                it_response r = it_request(&srv, upper, path, w ? wrong : NULL, "{}", 2);
                if (is_health(tmpl)) {
                    CU_ASSERT_EQUAL(r.status, 200);
                    open += !w;
                } else if (!(r.json && json_is_object(json_object_get(r.json, "error"))
                                 ? it_is_openai_error(&r, 401, "unauthorized") /* the OpenAI routes */
                                 : it_is_error(&r, 401, "unauthorized", NULL))) {
                    fprintf(stderr, "  %s %s without a valid key: %ld\n", upper, path, r.status);
                    CU_FAIL("a route other than /health answered without a valid key");
                }
                it_free(&r);
            }
            walked++;
        }
    }
    printf("\n  %zu operations walked without a key, %zu open (the health routes)\n", walked, open);
    CU_ASSERT(walked >= 30);
    CU_ASSERT_EQUAL(open, 3);
    it_free(&doc);
}

void cu_register(void)
{
    char *probe = it_testdata("tokenizers/gpt2");
    int have = probe != NULL;
    free(probe);
    if (!have) {
        cu_skip_all("../shared/testdata not found");
        return;
    }
    CU_pSuite s = CU_add_suite("auth", setup, teardown);
    CU_add_test(s, "rejected keys", test_rejected);
    CU_add_test(s, "accepted keys and open health routes", test_accepted);
    CU_add_test(s, "every operation in openapi.json needs the key but the health routes", test_every_route);
}
