/* test_json.c — the "JSON" cases of RELIABILITY.md against a real ragd (jansson with
 * duplicate keys rejected, explicit schema checks): malformed and hostile bodies, nesting
 * at and past the depth limit on the real worker threads, invalid UTF-8, NUL escapes,
 * duplicate keys, type confusion with the right JSON pointer, and large bodies within and
 * over the caps. After every rejected request the probe must still answer correctly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cu.h"
#include "harness.h"

static it_server srv;
static char *gpt2;

static int setup(void)
{
    gpt2 = it_testdata("tokenizers/gpt2");
    const char *args[] = {"--generator", gpt2, "--max-batch", "8", "--max-input-tokens", "262144", NULL};
    return it_start(&srv, args, NULL);
}

static int teardown(void)
{
    free(gpt2);
    return it_stop(&srv) == 0 ? 0 : -1;
}

/* Bodies for /tokenize or /decode and the error each must get. */
static const struct {
    const char *path, *body;
    long status;
    const char *code, *field;
} cases[] = {
    /* not JSON, or not an object */
    {"/tokenize", "", 400, "invalid_json", NULL},
    {"/tokenize", " ", 400, "invalid_json", NULL},
    {"/tokenize", "null", 400, "invalid_json", NULL},
    {"/tokenize", "\"inputs\"", 400, "invalid_json", NULL},
    {"/tokenize", "[\"a\"]", 400, "invalid_json", NULL},
    {"/tokenize", "{\"inputs\":\"a\"", 400, "invalid_json", NULL},
    {"/tokenize", "{\"inputs\":", 400, "invalid_json", NULL},
    {"/tokenize", "{}x", 400, "invalid_json", NULL},
    {"/tokenize", "{\"inputs\":\"a\"}{}", 400, "invalid_json", NULL},
    {"/tokenize", "{/*c*/\"inputs\":\"a\"}", 400, "invalid_json", NULL},
    {"/tokenize", "{\"inputs\":\"a\"} // c", 400, "invalid_json", NULL},
    {"/tokenize", "{'inputs':'a'}", 400, "invalid_json", NULL},
    {"/tokenize", "{inputs:\"a\"}", 400, "invalid_json", NULL},
    {"/tokenize", "{\"inputs\":\"a\",}", 400, "invalid_json", NULL},
    {"/decode", "{\"ids\":[NaN]}", 400, "invalid_json", NULL},
    {"/decode", "{\"ids\":[Infinity]}", 400, "invalid_json", NULL},
    {"/decode", "{\"ids\":[-Infinity]}", 400, "invalid_json", NULL},
    {"/decode", "{\"ids\":[0x10]}", 400, "invalid_json", NULL},
    {"/decode", "{\"ids\":[01]}", 400, "invalid_json", NULL},
    /* invalid UTF-8, in values and in keys; escaped lone surrogates; NUL */
    {"/tokenize", "{\"inputs\":\"\xc0\xaf\"}", 400, "invalid_json", NULL},         /* overlong '/' */
    {"/tokenize", "{\"inputs\":\"\xe0\x80\xaf\"}", 400, "invalid_json", NULL},     /* overlong, 3 bytes */
    {"/tokenize", "{\"inputs\":\"\x80\"}", 400, "invalid_json", NULL},             /* lone continuation */
    {"/tokenize", "{\"inputs\":\"\xc3\"}", 400, "invalid_json", NULL},             /* truncated sequence */
    {"/tokenize", "{\"inputs\":\"\xed\xa0\x80\"}", 400, "invalid_json", NULL},     /* encoded surrogate */
    {"/tokenize", "{\"inputs\":\"\xf4\x90\x80\x80\"}", 400, "invalid_json", NULL}, /* above U+10FFFF */
    {"/tokenize", "{\"inputs\":\"\xf5\x80\x80\x80\"}", 400, "invalid_json", NULL},
    {"/tokenize", "{\"inputs\":\"\xff\"}", 400, "invalid_json", NULL},
    {"/tokenize", "{\"inp\xfeuts\":\"a\"}", 400, "invalid_json", NULL},
    {"/tokenize", "{\"inputs\":\"\\ud800\"}", 400, "invalid_json", NULL},
    {"/tokenize", "{\"inputs\":\"\\udc00x\"}", 400, "invalid_json", NULL},
    {"/tokenize", "{\"inputs\":\"\\ud800\\u0041\"}", 400, "invalid_json", NULL},
    {"/tokenize", "{\"inputs\":\"a\\u0000b\"}", 400, "invalid_json", NULL},
    {"/tokenize", "{\"inputs\":[\"ok\",\"\\u0000\"]}", 400, "invalid_json", NULL},
    {"/tokenize", "{\"inputs\":\"a\",\"model\":\"generator\\u0000x\"}", 400, "invalid_json", NULL},
    {"/tokenize", "{\"inputs\":\"a\",\"a\\u0000b\":1}", 400, "invalid_json", NULL},
    /* duplicate keys */
    {"/tokenize", "{\"inputs\":\"ok\",\"inputs\":\"../x\"}", 400, "invalid_json", NULL},
    {"/tokenize", "{\"inputs\":\"ok\",\"model\":\"generator\",\"model\":\"embedder\"}", 400, "invalid_json", NULL},
    {"/decode", "{\"ids\":[1],\"ids\":[2]}", 400, "invalid_json", NULL},
    /* type confusion, each with its JSON pointer */
    {"/tokenize", "{}", 422, "missing_field", "/inputs"},
    {"/tokenize", "{\"Inputs\":\"a\"}", 422, "missing_field", "/inputs"},
    {"/tokenize", "{\"inputs\":null}", 422, "missing_field", "/inputs"}, /* null is absent (validate.h) */
    {"/tokenize", "{\"inputs\":5}", 422, "invalid_type", "/inputs"},
    {"/tokenize", "{\"inputs\":true}", 422, "invalid_type", "/inputs"},
    {"/tokenize", "{\"inputs\":{\"a\":\"b\"}}", 422, "invalid_type", "/inputs"},
    {"/tokenize", "{\"inputs\":[]}", 422, "empty_input", "/inputs"},
    {"/tokenize", "{\"inputs\":[\"a\",7]}", 422, "invalid_type", "/inputs/1"},
    {"/tokenize", "{\"inputs\":[\"a\",[\"b\"]]}", 422, "invalid_type", "/inputs/1"},
    {"/tokenize", "{\"inputs\":\"a\",\"add_special_tokens\":\"yes\"}", 422, "invalid_type", "/add_special_tokens"},
    {"/tokenize", "{\"inputs\":\"a\",\"add_special_tokens\":1}", 422, "invalid_type", "/add_special_tokens"},
    {"/tokenize", "{\"inputs\":\"a\",\"model\":\"gpt5\"}", 422, "invalid_value", "/model"},
    {"/tokenize", "{\"inputs\":\"a\",\"model\":\"Generator\"}", 422, "invalid_value", "/model"},
    {"/tokenize", "{\"inputs\":\"a\",\"model\":\"\"}", 422, "invalid_value", "/model"},
    {"/tokenize", "{\"inputs\":\"a\",\"model\":0}", 422, "invalid_type", "/model"},
    {"/tokenize", "{\"inputs\":\"a\",\"model\":\"embedder\"}", 503, "model_not_loaded", "/model"},
    {"/tokenize", "{\"inputs\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\"]}", 413, "batch_too_large", "/inputs"},
    {"/decode", "{}", 422, "missing_field", "/ids"},
    {"/decode", "{\"ids\":\"15496\"}", 422, "invalid_type", "/ids"},
    {"/decode", "{\"ids\":15496}", 422, "invalid_type", "/ids"},
    {"/decode", "{\"ids\":[1.5]}", 422, "invalid_type", "/ids/0"},
    {"/decode", "{\"ids\":[1.0]}", 422, "invalid_type", "/ids/0"},
    {"/decode", "{\"ids\":[1e2]}", 422, "invalid_type", "/ids/0"},
    {"/decode", "{\"ids\":[true]}", 422, "invalid_type", "/ids/0"},
    {"/decode", "{\"ids\":[null]}", 422, "invalid_type", "/ids/0"},
    {"/decode", "{\"ids\":[\"1\"]}", 422, "invalid_type", "/ids/0"},
    {"/decode", "{\"ids\":[15496,-1]}", 422, "invalid_value", "/ids/1"},
    {"/decode", "{\"ids\":[50257]}", 422, "invalid_value", "/ids/0"}, /* vocab_size */
    {"/decode", "{\"ids\":[2147483647]}", 422, "invalid_value", "/ids/0"},
    {"/decode", "{\"ids\":[4294967296]}", 422, "invalid_value", "/ids/0"},
    {"/decode", "{\"ids\":[-9223372036854775808]}", 422, "invalid_value", "/ids/0"},
    {"/decode", "{\"ids\":[[1],[2147483648]]}", 422, "invalid_value", "/ids/1/0"},
    {"/decode", "{\"ids\":[[1],2]}", 422, "invalid_type", "/ids/1"},
    {"/decode", "{\"ids\":[1,[2]]}", 422, "invalid_type", "/ids/1"},
    {"/decode", "{\"ids\":[1e400]}", 400, "invalid_json", NULL},
    {"/decode", "{\"ids\":[9223372036854775808]}", 400, "invalid_json", NULL},
    {"/decode", "{\"ids\":[1],\"skip_special_tokens\":\"no\"}", 422, "invalid_type", "/skip_special_tokens"},
    {"/decode", "{\"ids\":[[1],[2],[3],[4],[5],[6],[7],[8],[9]]}", 413, "batch_too_large", "/ids"},
};

static void test_cases(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        it_response r = it_request(&srv, "POST", cases[i].path, NULL, cases[i].body, strlen(cases[i].body));
        if (!it_is_error(&r, cases[i].status, cases[i].code, cases[i].field)) {
            fprintf(stderr, "  case %zu: POST %s %s\n", i, cases[i].path, cases[i].body);
            CU_FAIL("json case");
        }
        it_free(&r);
        CU_ASSERT(it_probe(&srv));
    }
}

/* Accepted oddities: they parse, and the answer is right. */
static void test_accepted(void)
{
    static const struct {
        const char *path, *body, *want;
    } ok[] = {
        {"/decode", "{\"ids\":[-0]}", "[\"!\"]"},             /* -0 is the integer 0 */
        {"/decode", "{\"ids\":[15496,995],\"unknown\":{\"x\":[1,2]}}", "[\"Hello world\"]"}, /* unknown keys ignored */
        {"/decode", " \t\r\n{\"ids\":[15496]} \n", "[\"Hello\"]"},
        {"/decode", "{\"ids\":[15496],\"skip_special_tokens\":null,\"model\":null}", "[\"Hello\"]"}, /* null: default */
        {"/decode", "{\"ids\":[[15496],[]]}", "[\"Hello\",\"\"]"},
        {"/decode", "{\"ids\":[\n15496\n,\n995\n]}", "[\"Hello world\"]"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        it_response r = it_post(&srv, ok[i].path, ok[i].body);
        if (r.status != 200 || strcmp(r.body, ok[i].want) != 0)
            fprintf(stderr, "%s %s: %ld %s\n", ok[i].path, ok[i].body, r.status, r.body);
        CU_ASSERT(r.status == 200 && !strcmp(r.body, ok[i].want));
        it_free(&r);
    }
    /* Escapes decode before tokenizing: "\u0048ello" is "Hello", and a surrogate pair is one
     * character (U+1F600, 4 bytes of UTF-8, so its tokens stop at byte 4). */
    it_response r = it_post(&srv, "/tokenize", "{\"inputs\":[\"\\u0048ello world\",\"\\ud83d\\ude00\"]}");
    json_t *a = json_array_get(r.json, 0), *b = json_array_get(r.json, 1);
    CU_ASSERT(r.status == 200 && json_integer_value(json_object_get(json_array_get(a, 0), "id")) == 15496);
    CU_ASSERT(json_integer_value(json_object_get(json_array_get(b, json_array_size(b) - 1), "stop")) == 4);
    it_free(&r);
}

/* Nested arrays or objects to total depth `depth`, the top-level object counting as 1
 * ({"inputs":[[...]]}); the innermost container is empty. Caller frees. */
static char *nested(size_t depth, char open)
{
    size_t inner = depth - 1; /* containers inside the top-level object */
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
        const char *code, *field;
    } depths[] = {{2048, 422, "invalid_type", "/inputs"}, {2049, 400, "invalid_json", NULL},
                  {100000, 400, "invalid_json", NULL}};
    for (size_t i = 0; i < sizeof depths / sizeof depths[0]; i++)
        for (int kind = 0; kind < 2; kind++) {
            char *body = nested(depths[i].depth, kind ? '{' : '[');
            it_response r = it_post(&srv, "/tokenize", body);
            const char *field = depths[i].field;
            /* [[...]] at depth 2048 fails as an item: /inputs/0 (the list itself parsed). */
            if (kind == 0 && depths[i].status == 422)
                field = "/inputs/0";
            if (!it_is_error(&r, depths[i].status, depths[i].code, field))
                fprintf(stderr, "  depth %zu of '%c'\n", depths[i].depth, kind ? '{' : '[');
            CU_ASSERT(it_is_error(&r, depths[i].status, depths[i].code, field));
            it_free(&r);
            free(body);
            CU_ASSERT(it_probe(&srv));
        }
}

/* A body "{PREFIX" + n copies of `item` (the last one without its trailing comma) + SUFFIX}. */
static char *repeat(const char *prefix, const char *item, size_t n, const char *suffix, size_t *len)
{
    size_t pl = strlen(prefix), il = strlen(item), sl = strlen(suffix);
    char *b = malloc(pl + il * n + sl + 1), *p = b;
    memcpy(p, prefix, pl);
    p += pl;
    for (size_t i = 0; i < n; i++, p += il)
        memcpy(p, item, il);
    if (n && item[il - 1] == ',')
        p--;
    memcpy(p, suffix, sl + 1);
    *len = (size_t)(p - b) + sl;
    return b;
}

static void test_large(void)
{
    size_t len;
    /* A 1 MB string within the body cap (2 MiB) and the token cap: tokenized in full, offsets
     * to the last byte. "Hello world " repeated is 2 tokens per 12 bytes. */
    char *b = repeat("{\"inputs\":\"", "Hello world ", 87381, "\"}", &len);
    it_response r = it_request(&srv, "POST", "/tokenize", NULL, b, len);
    json_t *toks = json_array_get(r.json, 0);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_EQUAL(json_array_size(toks), 2 * 87381 + 1); /* the final space is a token of its own */
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_array_get(toks, json_array_size(toks) - 1), "stop")),
                    87381 * 12);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_array_get(toks, 2), "id")), 18435); /* " Hello" */
    it_free(&r);
    free(b);

    /* Many small items over --max-batch: 413 batch_too_large, not a 100k-element walk. */
    b = repeat("{\"inputs\":[", "\"a\",", 100000, "]}", &len);
    r = it_request(&srv, "POST", "/tokenize", NULL, b, len);
    CU_ASSERT(it_is_error(&r, 413, "batch_too_large", "/inputs"));
    it_free(&r);
    free(b);
    CU_ASSERT(it_probe(&srv));

    /* 100k small unknown keys: parsed (jansson seeds its hash), ignored, answered. */
    b = malloc(100000 * 16 + 64);
    size_t off = (size_t)snprintf(b, 64, "{\"ids\":[15496]");
    for (size_t i = 0; i < 100000; i++)
        off += (size_t)snprintf(b + off, 16, ",\"k%zu\":0", i);
    memcpy(b + off, "}", 2);
    r = it_request(&srv, "POST", "/decode", NULL, b, off + 1);
    CU_ASSERT(r.status == 200 && !strcmp(r.body, "[\"Hello\"]"));
    it_free(&r);
    free(b);

    /* 500k ids in one sequence: over --max-input-tokens (262144), refused with the cap named. */
    b = repeat("{\"ids\":[", "0,", 500000, "]}", &len);
    r = it_request(&srv, "POST", "/decode", NULL, b, len);
    CU_ASSERT(it_is_error(&r, 413, "input_too_long", "/ids"));
    CU_ASSERT_PTR_NOT_NULL(strstr(json_string_value(json_object_get(r.json, "error")), "262144"));
    it_free(&r);
    free(b);
    CU_ASSERT(it_probe(&srv));
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
    CU_pSuite s = CU_add_suite("json", setup, teardown);
    CU_add_test(s, "malformed and hostile bodies", test_cases);
    CU_add_test(s, "accepted edge cases", test_accepted);
    CU_add_test(s, "nesting depth 2048 / 2049 / 100000", test_nesting);
    CU_add_test(s, "large bodies within and over the caps", test_large);
}
