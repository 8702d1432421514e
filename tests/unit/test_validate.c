/* test_validate.c — routing, table-driven field validation, the error table and body
 * shape, and lossy JSON strings, run through srv_dispatch_detached (no socket). */
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cu.h"
#include "errors.h"
#include "http.h"
#include "json_util.h"
#include "router.h"
#include "validate.h"

/* ---- a route whose handler validates one field of every type ---- */

typedef struct {
    int flag;
    int64_t count;
    double temp;
    const char *name;
    int mode;
    json_t *list, *any;
} sample_req;

static const char *const modes[] = {"dense", "keyword", "hybrid", NULL};
static const srv_field sample_fields[] = {
    {"name", SRV_F_STRING, SRV_FF_REQUIRED | SRV_FF_NONEMPTY, offsetof(sample_req, name), 0, 0, 8, NULL},
    {"flag", SRV_F_BOOL, 0, offsetof(sample_req, flag), 0, 0, 0, NULL},
    {"count", SRV_F_INT, 0, offsetof(sample_req, count), 1, 100, 0, NULL},
    {"temp", SRV_F_NUMBER, SRV_FF_FLOAT32, offsetof(sample_req, temp), 0, 1e300, 0, NULL},
    {"mode", SRV_F_ENUM, 0, offsetof(sample_req, mode), 0, 0, 0, modes},
    {"list", SRV_F_ARRAY, 0, offsetof(sample_req, list), 0, 0, 3, NULL},
    {"inputs", SRV_F_ANY, 0, offsetof(sample_req, any), 0, 0, 0, NULL},
};

static void h_sample(srv_req *req, void *app)
{
    (void)app;
    sample_req in = {.flag = 1, .count = 10, .temp = 0.5, .mode = 0};
    json_t *body = srv_req_json(req);
    if (!body || srv_validate(req, body, sample_fields, sizeof sample_fields / sizeof sample_fields[0], &in))
        return;
    size_t n = 0;
    if (in.any) {
        const char **items;
        size_t *lens;
        int is_list;
        if (srv_string_list(req, in.any, "/inputs", 2, &items, &lens, &n, &is_list) != 0)
            return;
        free(items);
        free(lens);
    }
    srv_reply_json(req, 200, json_pack("{s:s, s:b, s:I, s:f, s:s, s:I}", "name", in.name, "flag",
                                       in.flag, "count", (json_int_t)in.count, "temp", in.temp,
                                       "mode", modes[in.mode], "inputs", (json_int_t)n));
}

static void h_param(srv_req *req, void *app)
{
    (void)app;
    srv_reply_json(req, 200, json_pack("{s:s, s:s}", "c", srv_req_param(req, "name"), "d",
                                       srv_req_param(req, "id")));
}

static const srv_route routes[] = {
    {"POST", "/sample", h_sample, 0, NULL},
    {"GET", "/collections/{name}/documents/{id}", h_param, SRV_ROUTE_NO_BODY, NULL},
    {"DELETE", "/collections/{name}/documents/{id}", h_param, SRV_ROUTE_NO_BODY, NULL},
};
#define N_ROUTES (sizeof routes / sizeof routes[0])

static const srv_daemon_config cfg = {.max_body_bytes = 4096};

/* Dispatches and parses the reply; returns the JSON (caller decrefs). */
static json_t *call(const char *method, const char *path, const char *body, unsigned *status,
                    char *allow)
{
    srv_detached_reply r;
    CU_ASSERT_EQUAL_FATAL(srv_dispatch_detached(routes, N_ROUTES, NULL, &cfg, method, path, body,
                                                body ? strlen(body) : 0, &r),
                          0);
    *status = r.status;
    if (allow)
        snprintf(allow, 128, "%s", r.allow);
    json_t *j = json_loads(r.body, 0, NULL);
    if (!j)
        fprintf(stderr, "reply is not JSON: %s\n", r.body);
    free(r.body);
    return j;
}

/* Each body, the status it must get, and for errors the code and field. */
static const struct {
    const char *body;
    unsigned status;
    const char *code, *field;
} cases[] = {
    {"{\"name\":\"a\"}", 200, NULL, NULL},
    {"{\"name\":\"a\",\"unknown\":[1,2]}", 200, NULL, NULL},
    {"{\"name\":\"a\",\"count\":null}", 200, NULL, NULL},
    {"", 400, "invalid_json", NULL},
    {"null", 400, "invalid_json", NULL},
    {"[]", 400, "invalid_json", NULL},
    {"{\"name\":\"a\"", 400, "invalid_json", NULL},
    {"{}x", 400, "invalid_json", NULL},
    {"{\"name\":\"a\"} // c", 400, "invalid_json", NULL},
    {"{'name':'a'}", 400, "invalid_json", NULL},
    {"{\"name\":\"a\",\"temp\":NaN}", 400, "invalid_json", NULL},
    {"{\"name\":\"a\",\"temp\":Infinity}", 400, "invalid_json", NULL},
    {"{\"name\":\"a\",\"name\":\"b\"}", 400, "invalid_json", NULL},
    {"{\"name\":\"\\ud800\"}", 400, "invalid_json", NULL},
    {"{\"name\":\"a\\u0000b\"}", 400, "invalid_json", NULL},
    {"{\"name\":\"\xc0\xaf\"}", 400, "invalid_json", NULL},
    {"{\"name\":\"\xed\xa0\x80\"}", 400, "invalid_json", NULL},
    {"{\"name\":\"a\",\"count\":1e400}", 400, "invalid_json", NULL},
    {"{\"name\":\"a\",\"count\":9223372036854775808}", 400, "invalid_json", NULL},
    {"{}", 422, "missing_field", "/name"},
    {"{\"name\":null}", 422, "missing_field", "/name"},
    {"{\"name\":\"\"}", 422, "empty_input", "/name"},
    {"{\"name\":\"123456789\"}", 422, "out_of_range", "/name"},
    {"{\"name\":5}", 422, "invalid_type", "/name"},
    {"{\"name\":\"a\",\"flag\":\"true\"}", 422, "invalid_type", "/flag"},
    {"{\"name\":\"a\",\"flag\":1}", 422, "invalid_type", "/flag"},
    {"{\"name\":\"a\",\"count\":1.5}", 422, "invalid_type", "/count"},
    {"{\"name\":\"a\",\"count\":0}", 422, "out_of_range", "/count"},
    {"{\"name\":\"a\",\"count\":-1}", 422, "out_of_range", "/count"},
    {"{\"name\":\"a\",\"count\":101}", 422, "out_of_range", "/count"},
    {"{\"name\":\"a\",\"count\":-0}", 422, "out_of_range", "/count"},
    {"{\"name\":\"a\",\"temp\":\"hot\"}", 422, "invalid_type", "/temp"},
    {"{\"name\":\"a\",\"temp\":1e39}", 422, "out_of_range", "/temp"},
    {"{\"name\":\"a\",\"temp\":-0.5}", 422, "out_of_range", "/temp"},
    {"{\"name\":\"a\",\"mode\":\"fuzzy\"}", 422, "invalid_value", "/mode"},
    {"{\"name\":\"a\",\"list\":[1,2,3,4]}", 422, "out_of_range", "/list"},
    {"{\"name\":\"a\",\"list\":{}}", 422, "invalid_type", "/list"},
    {"{\"name\":\"a\",\"inputs\":[]}", 422, "empty_input", "/inputs"},
    {"{\"name\":\"a\",\"inputs\":7}", 422, "invalid_type", "/inputs"},
    {"{\"name\":\"a\",\"inputs\":[\"x\",3]}", 422, "invalid_type", "/inputs/1"},
    {"{\"name\":\"a\",\"inputs\":[\"x\",\"y\",\"z\"]}", 413, "batch_too_large", "/inputs"},
    {"{\"name\":\"a\",\"inputs\":[\"x\",\"y\"]}", 200, NULL, NULL},
};

static void test_validation_table(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned status;
        json_t *j = call("POST", "/sample", cases[i].body, &status, NULL);
        CU_ASSERT_PTR_NOT_NULL_FATAL(j);
        int ok = status == cases[i].status;
        if (cases[i].code) {
            const char *code = json_string_value(json_object_get(j, "code"));
            const char *field = json_string_value(json_object_get(j, "field"));
            ok &= code && !strcmp(code, cases[i].code);
            ok &= cases[i].field ? field && !strcmp(field, cases[i].field) : field == NULL;
            ok &= json_is_string(json_object_get(j, "error")) &&
                  json_is_string(json_object_get(j, "error_type")) &&
                  json_is_string(json_object_get(j, "request_id"));
        }
        if (!ok) {
            char *got = json_dumps(j, JSON_COMPACT);
            fprintf(stderr, "case %zu %s: want %u %s %s, got %u %s\n", i, cases[i].body,
                    cases[i].status, cases[i].code ? cases[i].code : "", cases[i].field ? cases[i].field : "",
                    status, got);
            free(got);
        }
        CU_ASSERT(ok);
        json_decref(j);
    }
}

static void test_defaults_and_values(void)
{
    unsigned status;
    json_t *j = call("POST", "/sample", "{\"name\":\"ab\",\"mode\":\"hybrid\",\"count\":100,\"temp\":0.25}",
                     &status, NULL);
    CU_ASSERT_EQUAL(status, 200);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "mode")), "hybrid");
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "count")), 100);
    CU_ASSERT_DOUBLE_EQUAL(json_real_value(json_object_get(j, "temp")), 0.25, 1e-12);
    CU_ASSERT(json_is_true(json_object_get(j, "flag")));
    json_decref(j);
}

static void test_body_cap(void)
{
    char *big = malloc(5000);
    memset(big, ' ', 4999);
    big[4999] = '\0';
    unsigned status;
    json_t *j = call("POST", "/sample", big, &status, NULL);
    CU_ASSERT_EQUAL(status, 413);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "code")), "payload_too_large");
    json_decref(j);
    free(big);
}

static void test_routing(void)
{
    unsigned status;
    char allow[128];
    json_t *j = call("GET", "/collections/docs/documents/42", NULL, &status, NULL);
    CU_ASSERT_EQUAL(status, 200);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "c")), "docs");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "d")), "42");
    json_decref(j);

    j = call("PUT", "/collections/docs/documents/42", NULL, &status, allow);
    CU_ASSERT_EQUAL(status, 405);
    CU_ASSERT_STRING_EQUAL(allow, "GET, DELETE");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "code")), "method_not_allowed");
    json_decref(j);

    static const char *const not_found[] = {"/collections//documents/1", "/collections/a/documents",
                                            "/collections/a/documents/1/x", "/sample/", "/", ""};
    for (size_t i = 0; i < sizeof not_found / sizeof not_found[0]; i++) {
        j = call("GET", not_found[i], NULL, &status, NULL);
        CU_ASSERT_EQUAL(status, 404);
        CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "code")), "not_found");
        json_decref(j);
    }
}

static void test_error_table(void)
{
    for (int a = 0; a < SRV_E_COUNT; a++) {
        const srv_err_info *ia = srv_err_lookup((srv_err)a);
        CU_ASSERT(ia->status >= 400 && ia->status <= 599);
        CU_ASSERT_PTR_NOT_NULL(ia->code);
        CU_ASSERT_PTR_NOT_NULL(ia->type);
        for (int b = a + 1; b < SRV_E_COUNT; b++)
            CU_ASSERT(strcmp(ia->code, srv_err_lookup((srv_err)b)->code) != 0);
    }
    CU_ASSERT_EQUAL(srv_err_lookup(SRV_E_OVERLOADED)->status, 429);
    CU_ASSERT_STRING_EQUAL(srv_err_lookup(SRV_E_UNAUTHORIZED)->type, "Auth");
    CU_ASSERT_EQUAL(srv_err_lookup(SRV_E_COUNT)->status, 500); /* out of range: internal */
}

static const struct {
    const char *in;
    size_t len;
    const char *out;
} lossy_cases[] = {
    {"plain", 5, "plain"},
    {"caf\xc3\xa9", 5, "caf\xc3\xa9"},
    {"a\xffz", 3, "a\xef\xbf\xbdz"},
    {"\xe2\x82", 2, "\xef\xbf\xbd"},                       /* truncated: one replacement */
    {"\xe2\x82" "A", 3, "\xef\xbf\xbd" "A"},
    {"\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* surrogate: three */
    {"\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd"},           /* overlong */
    {"\xf0\x9f\x98", 3, "\xef\xbf\xbd"},
    {"\xf0\x9f\x98\x80", 4, "\xf0\x9f\x98\x80"},
};

static void test_lossy_strings(void)
{
    for (size_t i = 0; i < sizeof lossy_cases / sizeof lossy_cases[0]; i++) {
        json_t *s = srv_json_string_lossy(lossy_cases[i].in, lossy_cases[i].len);
        CU_ASSERT_PTR_NOT_NULL_FATAL(s);
        if (strcmp(json_string_value(s), lossy_cases[i].out) != 0)
            fprintf(stderr, "lossy case %zu differs\n", i);
        CU_ASSERT_STRING_EQUAL(json_string_value(s), lossy_cases[i].out);
        json_decref(s);
    }
}

void cu_register(void)
{
    CU_pSuite s = CU_add_suite("validate", NULL, NULL);
    CU_add_test(s, "validation table", test_validation_table);
    CU_add_test(s, "defaults and values", test_defaults_and_values);
    CU_add_test(s, "body cap", test_body_cap);
    CU_add_test(s, "routing", test_routing);
    CU_add_test(s, "error table", test_error_table);
    CU_add_test(s, "lossy JSON strings", test_lossy_strings);
}
