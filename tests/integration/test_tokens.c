/* test_tokens.c — /tokenize and /decode over HTTP with the real GPT-2 and BERT tokenizer
 * files: ids, text, byte offsets, special tokens, batches, limits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cu.h"
#include "harness.h"

static it_server srv;
static char *gpt2, *bert;

static int setup(void)
{
    gpt2 = it_testdata("tokenizers/gpt2");
    bert = it_testdata("tokenizers/bert-base-uncased");
    const char *args[] = {"--generator", gpt2, "--embedder", bert, "--reranker", bert, "--max-input-tokens", "64", NULL};
    return it_start(&srv, args, NULL);
}

static int teardown(void)
{
    free(gpt2);
    free(bert);
    return it_stop(&srv) == 0 ? 0 : -1;
}

static json_t *tok(json_t *list, size_t i, const char *key)
{
    return json_object_get(json_array_get(list, i), key);
}

static void test_gpt2(void)
{
    const char *text = "Hello world";
    it_response r = it_post(&srv, "/tokenize", "{\"inputs\":\"Hello world\"}");
    json_t *l = json_array_get(r.json, 0);
    CU_ASSERT_EQUAL_FATAL(json_array_size(l), 2);
    CU_ASSERT_EQUAL(json_integer_value(tok(l, 0, "id")), 15496);
    CU_ASSERT_EQUAL(json_integer_value(tok(l, 1, "id")), 995);
    for (size_t i = 0; i < 2; i++) {
        json_int_t a = json_integer_value(tok(l, i, "start")), b = json_integer_value(tok(l, i, "stop"));
        CU_ASSERT(strlen(json_string_value(tok(l, i, "text"))) == (size_t)(b - a) &&
                  !strncmp(json_string_value(tok(l, i, "text")), text + a, (size_t)(b - a)));
        CU_ASSERT(json_is_false(tok(l, i, "special")));
    }
    it_free(&r);
    r = it_post(&srv, "/tokenize", "{\"inputs\":[\"a<|endoftext|>\",\"b\"]}");
    CU_ASSERT_EQUAL(json_array_size(r.json), 2);
    l = json_array_get(r.json, 0);
    CU_ASSERT(json_integer_value(tok(l, 1, "id")) == 50256 && json_is_true(tok(l, 1, "special")));
    it_free(&r);
}

/* Byte offsets of every non-special token: text is exactly the input's bytes [start, stop)
 * (a token holding part of a character spans the whole character, as in HF tokenizers),
 * starts and stops never go backwards, and for a lossless (byte-level) tokenizer the
 * tokens cover every byte from 0 to the end. Specials added by the tokenizer have null
 * offsets. */
static int offsets_consistent(const char *text, json_t *toks, int lossless)
{
    json_int_t last_start = 0, last_stop = 0;
    for (size_t i = 0; i < json_array_size(toks); i++) {
        json_t *start = tok(toks, i, "start"), *stop = tok(toks, i, "stop");
        const char *s = json_string_value(tok(toks, i, "text"));
        if (json_is_null(start) || json_is_null(stop)) {
            if (!json_is_true(tok(toks, i, "special")) || !json_is_null(start) || !json_is_null(stop))
                return 0;
            continue;
        }
        json_int_t a = json_integer_value(start), b = json_integer_value(stop);
        if (!s || a < last_start || b < last_stop || b <= a || (size_t)b > strlen(text) ||
            strlen(s) != (size_t)(b - a) || strncmp(s, text + a, (size_t)(b - a)) != 0 ||
            (lossless && a > last_stop))
            return 0;
        last_start = a;
        last_stop = b;
    }
    return !lossless || (size_t)last_stop == strlen(text);
}

static void test_offsets(void)
{
    static const char *const texts[] = {"Hello world", "  leading and trailing  ", "H\xc3\xa9llo na\xc3\xafve caf\xc3\xa9",
                                        "\xe5\x8c\x97\xe4\xba\xac \xf0\x9f\x98\x80 ok", "don't stop-believing 42x",
                                        "tab\there\nnew line", "a<|endoftext|>b"};
    static const char *const models[] = {"generator", "embedder"};
    for (size_t m = 0; m < 2; m++)
        for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
            json_t *req = json_pack("{s:s, s:s}", "inputs", texts[i], "model", models[m]);
            char *body = json_dumps(req, 0);
            it_response r = it_post(&srv, "/tokenize", body);
            json_t *toks = json_array_get(r.json, 0);
            int ok = r.status == 200 && json_array_size(toks) > 0 && offsets_consistent(texts[i], toks, m == 0);
            if (!ok)
                fprintf(stderr, "offsets of %s for %s: %.400s\n", models[m], texts[i], r.body);
            CU_ASSERT(ok);
            it_free(&r);
            free(body);
            json_decref(req);
        }
}

static void test_bert(void)
{
    it_response r = it_post(&srv, "/tokenize", "{\"inputs\":\"Hello world\",\"model\":\"embedder\"}");
    json_t *l = json_array_get(r.json, 0);
    static const json_int_t want[] = {101, 7592, 2088, 102};
    CU_ASSERT_EQUAL_FATAL(json_array_size(l), 4);
    for (size_t i = 0; i < 4; i++)
        CU_ASSERT_EQUAL(json_integer_value(tok(l, i, "id")), want[i]);
    CU_ASSERT(json_is_true(tok(l, 0, "special")) && json_is_null(tok(l, 0, "start")) &&
              !strcmp(json_string_value(tok(l, 0, "text")), "[CLS]"));
    CU_ASSERT(json_is_true(tok(l, 3, "special")) && json_is_null(tok(l, 3, "start")) && json_is_null(tok(l, 3, "stop")) &&
              !strcmp(json_string_value(tok(l, 3, "text")), "[SEP]"));
    CU_ASSERT(json_integer_value(tok(l, 1, "start")) == 0 && json_integer_value(tok(l, 1, "stop")) == 5);
    CU_ASSERT(json_integer_value(tok(l, 2, "start")) == 6 && json_integer_value(tok(l, 2, "stop")) == 11);
    CU_ASSERT(!strcmp(json_string_value(tok(l, 1, "text")), "Hello")); /* the input's bytes, not "hello" */
    it_free(&r);
    /* A list gives one list per input, in order. */
    r = it_post(&srv, "/tokenize", "{\"inputs\":[\"Hello\",\"world\",\"Hello world\"],\"model\":\"embedder\"}");
    CU_ASSERT(json_array_size(r.json) == 3 && json_array_size(json_array_get(r.json, 0)) == 3 &&
              json_array_size(json_array_get(r.json, 2)) == 4 &&
              json_integer_value(tok(json_array_get(r.json, 1), 1, "id")) == 2088);
    it_free(&r);
    r = it_post(&srv, "/tokenize", "{\"inputs\":\"Hello world\",\"model\":\"reranker\",\"add_special_tokens\":false}");
    l = json_array_get(r.json, 0);
    CU_ASSERT(json_array_size(l) == 2 && json_integer_value(tok(l, 0, "id")) == 7592);
    it_free(&r);
}

static void test_decode(void)
{
    static const struct {
        const char *body, *want;
    } cases[] = {
        {"{\"ids\":[15496,995]}", "[\"Hello world\"]"},
        {"{\"ids\":[[15496],[995,50256]]}", "[\"Hello\",\" world\"]"},
        {"{\"ids\":[995,50256],\"skip_special_tokens\":false}", "[\" world<|endoftext|>\"]"},
        {"{\"ids\":[101,7592,2088,102],\"model\":\"embedder\"}", "[\"hello world\"]"},
        {"{\"ids\":[101,7592,2088,102],\"model\":\"embedder\",\"skip_special_tokens\":false}",
         "[\"[CLS] hello world [SEP]\"]"},
        {"{\"ids\":[[101,7592,102],[2088]],\"model\":\"reranker\"}", "[\"hello\",\"world\"]"},
        {"{\"ids\":[]}", "[\"\"]"},
        {"{\"ids\":[171]}", "[\"\xef\xbf\xbd\"]"}, /* a lone byte of a character: U+FFFD */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        it_response r = it_post(&srv, "/decode", cases[i].body);
        if (r.status != 200 || strcmp(r.body, cases[i].want) != 0)
            fprintf(stderr, "decode %s: %ld %s\n", cases[i].body, r.status, r.body);
        CU_ASSERT(r.status == 200 && !strcmp(r.body, cases[i].want));
        it_free(&r);
    }
}

static void test_limits(void)
{
    char body[1024];
    size_t n = (size_t)snprintf(body, sizeof body, "{\"inputs\":[\"short\",\"");
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(body + n, sizeof body - n, "w ");
    snprintf(body + n, sizeof body - n, "\"]}");
    it_response r = it_post(&srv, "/tokenize", body);
    CU_ASSERT(it_is_error(&r, 413, "input_too_long", "/inputs/1"));
    it_free(&r);
    r = it_post(&srv, "/embed", "{\"inputs\":\"x\"}");
    CU_ASSERT(it_is_error(&r, 503, "model_not_loaded", NULL)); /* a tokenizer-only directory */
    it_free(&r);
}

void cu_register(void)
{
    char *a = it_testdata("tokenizers/gpt2"), *b = it_testdata("tokenizers/bert-base-uncased");
    int have = a && b;
    free(a);
    free(b);
    if (!have) {
        cu_skip_all("../shared/testdata not found");
        return;
    }
    CU_pSuite s = CU_add_suite("tokens", setup, teardown);
    CU_add_test(s, "GPT-2 tokenize", test_gpt2);
    CU_add_test(s, "BERT tokenize", test_bert);
    CU_add_test(s, "offsets tile the input", test_offsets);
    CU_add_test(s, "decode", test_decode);
    CU_add_test(s, "limits", test_limits);
}
