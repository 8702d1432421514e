/* test_openapi.c — the OpenAPI document served at /openapi.json agrees with the router:
 * every route of handlers/routes.c (read from RAGD_SOURCE_ROOT) is documented, every
 * documented operation is served by the live daemon (not 404/405, and a method it does not
 * document gets 405 with an Allow header listing exactly the documented ones), every
 * operation documents its errors with the shared error schema, and every $ref resolves. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cu.h"
#include "harness.h"

static it_server srv;
static char *gpt2;
static json_t *doc;

static int setup(void)
{
    gpt2 = it_testdata("tokenizers/gpt2");
    const char *args[] = {"--generator", gpt2, NULL};
    if (it_start(&srv, args, NULL) != 0)
        return -1;
    it_response r = it_get(&srv, "/openapi.json");
    doc = r.status == 200 ? json_incref(r.json) : NULL;
    it_free(&r);
    return 0;
}

static int teardown(void)
{
    json_decref(doc);
    free(gpt2);
    return it_stop(&srv) == 0 ? 0 : -1;
}

typedef struct {
    char method[16], path[256];
    int openai;
} route;

/* The routes of handlers/routes.c: lines {"GET", "/health", h_health, FLAGS}. */
static size_t read_routes(route *out, size_t cap)
{
    char src[4096], line[512];
    it_source_path("handlers/routes.c", src, sizeof src);
    FILE *f = fopen(src, "r");
    if (!f) {
        fprintf(stderr, "cannot read %s\n", src);
        return 0;
    }
    size_t n = 0;
    while (n < cap && fgets(line, sizeof line, f)) {
        char flags[128] = "";
        if (sscanf(line, " {\"%15[A-Z]\", \"%255[^\"]\", %*[A-Za-z0-9_], %127[^}]", out[n].method, out[n].path,
                   flags) < 2)
            continue;
        out[n].openai = strstr(flags, "OPENAI") != NULL;
        n++;
    }
    fclose(f);
    return n;
}

static const char *str_or(const char *s, const char *fallback) { return s ? s : fallback; }

static void lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

static void test_document(void)
{
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    CU_ASSERT(!strncmp(str_or(json_string_value(json_object_get(doc, "openapi")), ""), "3.1", 3));
    CU_ASSERT(json_string_length(json_object_get(json_object_get(doc, "info"), "title")) > 0);
    it_response r = it_get(&srv, "/info");
    CU_ASSERT_STRING_EQUAL(str_or(json_string_value(json_object_get(json_object_get(doc, "info"), "version")), ""),
                           str_or(json_string_value(json_object_get(r.json, "version")), "-"));
    it_free(&r);
    CU_ASSERT(json_object_size(json_object_get(doc, "paths")) > 0);
}

/* Every route in the router is documented, with an error response using the shared schema. */
static void test_routes_documented(void)
{
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    route routes[128];
    size_t n = read_routes(routes, 128), in_doc = 0;
    CU_ASSERT_FATAL(n > 0);
    json_t *paths = json_object_get(doc, "paths");
    for (size_t i = 0; i < n; i++) {
        char m[16];
        snprintf(m, sizeof m, "%s", routes[i].method);
        lower(m);
        json_t *op = json_object_get(json_object_get(paths, routes[i].path), m);
        if (!op)
            fprintf(stderr, "route %s %s is not in openapi.json\n", routes[i].method, routes[i].path);
        CU_ASSERT_PTR_NOT_NULL(op);
        /* At least one 4xx/5xx response whose JSON schema is the error body of its kind. */
        const char *want = routes[i].openai ? "#/components/schemas/OpenAIError" : "#/components/schemas/ErrorBody";
        const char *code;
        json_t *resp;
        int documented = 0;
        json_object_foreach(json_object_get(op, "responses"), code, resp) {
            json_t *schema = json_object_get(json_object_get(json_object_get(resp, "content"), "application/json"), "schema");
            const char *ref = json_string_value(json_object_get(schema, "$ref"));
            if ((code[0] == '4' || code[0] == '5') && ref && !strcmp(ref, want))
                documented++;
        }
        if (op && !documented)
            fprintf(stderr, "%s %s documents no error response with %s\n", routes[i].method, routes[i].path, want);
        CU_ASSERT(!op || documented);
    }
    const char *path;
    json_t *item;
    json_object_foreach(paths, path, item) {
        const char *method;
        json_t *op;
        json_object_foreach(item, method, op) in_doc += strcmp(method, "parameters") != 0;
    }
    if (in_doc != n)
        fprintf(stderr, "the router has %zu routes, openapi.json documents %zu operations\n", n, in_doc);
    CU_ASSERT_EQUAL(in_doc, n);
}

/* The path with every {param} replaced by a dummy value. */
static void concrete(const char *path, char *out, size_t cap)
{
    size_t o = 0;
    for (const char *p = path; *p && o + 8 < cap; p++) {
        if (*p == '{') {
            const char *end = strchr(p, '}');
            if (end) {
                o += (size_t)snprintf(out + o, cap - o, "x1");
                p = end;
                continue;
            }
        }
        out[o++] = *p;
    }
    out[o] = '\0';
}

/* Every documented operation is served by the live daemon, and its path answers an
 * undocumented method with 405 and an Allow header of exactly the documented methods. */
static void test_documented_routes_live(void)
{
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    const char *path;
    json_t *item;
    json_object_foreach(json_object_get(doc, "paths"), path, item) {
        char url[512], allow_doc[128] = "", allow[128] = "";
        concrete(path, url, sizeof url);
        const char *method;
        json_t *op;
        json_object_foreach(item, method, op) {
            if (!strcmp(method, "parameters"))
                continue;
            char m[16];
            snprintf(m, sizeof m, "%s", method);
            for (char *c = m; *c; c++)
                *c = (char)(*c >= 'a' && *c <= 'z' ? *c - 'a' + 'A' : *c);
            size_t k = strlen(allow_doc);
            snprintf(allow_doc + k, sizeof allow_doc - k, "%s%s", k ? ", " : "", m);
            int body = !strcmp(m, "POST") || !strcmp(m, "PUT") || !strcmp(m, "PATCH");
            it_response r = it_request(&srv, m, url, NULL, body ? "{}" : NULL, body ? 2 : 0);
            const char *code = json_string_value(json_object_get(r.json, "code"));
            /* A {param} route may say its resource is absent, but not that the route is. */
            int routed = r.status != 405 && (r.status != 404 || (strchr(path, '{') && code && strstr(r.body, "no route") == NULL));
            if (!routed)
                fprintf(stderr, "documented %s %s answers %ld: %.200s\n", m, url, r.status, r.body);
            CU_ASSERT(routed);
            it_free(&r);
        }
        it_response r = it_request(&srv, "PATCH", url, NULL, "{}", 2);
        CU_ASSERT(it_is_error(&r, 405, "method_not_allowed", NULL) || it_is_openai_error(&r, 405, "method_not_allowed"));
        it_header(&r, "Allow", allow, sizeof allow);
        /* Same set, in any order: the same length and every documented method in it. */
        int same = strlen(allow) == strlen(allow_doc);
        for (const char *t = allow_doc; *t && same; t += strspn(t, ", ")) {
            size_t len = strcspn(t, ", ");
            char one[16];
            snprintf(one, sizeof one, "%.*s", (int)len, t);
            same = strstr(allow, one) != NULL;
            t += len;
        }
        if (!same)
            fprintf(stderr, "%s: Allow '%s', documented '%s'\n", path, allow, allow_doc);
        CU_ASSERT(same);
        it_free(&r);
    }
}

/* Collects every "$ref" string in the tree and checks it names an existing component. */
static size_t check_refs(json_t *node, size_t *bad)
{
    size_t n = 0;
    if (json_is_object(node)) {
        const char *key;
        json_t *v;
        json_object_foreach(node, key, v) {
            if (!strcmp(key, "$ref") && json_is_string(v)) {
                n++;
                const char *ref = json_string_value(v);
                char kind[64], name[128];
                if (sscanf(ref, "#/components/%63[^/]/%127s", kind, name) != 2 ||
                    !json_object_get(json_object_get(json_object_get(doc, "components"), kind), name)) {
                    fprintf(stderr, "unresolved $ref %s\n", ref);
                    ++*bad;
                }
            } else {
                n += check_refs(v, bad);
            }
        }
    } else if (json_is_array(node)) {
        for (size_t i = 0; i < json_array_size(node); i++)
            n += check_refs(json_array_get(node, i), bad);
    }
    return n;
}

static void test_refs_resolve(void)
{
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    size_t bad = 0, n = check_refs(doc, &bad);
    CU_ASSERT(n > 0);
    CU_ASSERT_EQUAL(bad, 0);
    json_t *err = json_object_get(json_object_get(json_object_get(doc, "components"), "schemas"), "ErrorBody");
    json_t *props = json_object_get(err, "properties");
    static const char *const fields[] = {"error", "error_type", "code", "field", "request_id"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        CU_ASSERT_PTR_NOT_NULL(json_object_get(props, fields[i]));
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
    CU_pSuite s = CU_add_suite("openapi", setup, teardown);
    CU_add_test(s, "the document", test_document);
    CU_add_test(s, "every route is documented, with its errors", test_routes_documented);
    CU_add_test(s, "every documented route is served", test_documented_routes_live);
    CU_add_test(s, "every $ref resolves; ErrorBody has the §4.7 fields", test_refs_resolve);
}
