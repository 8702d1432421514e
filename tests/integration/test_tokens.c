/* test_tokens.c — /tokenize and /decode over HTTP with the real GPT-2 and BERT tokenizer
 * files: ids, text, byte offsets, special tokens, batches, limits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cu.h"
#include "harness.h"

static it_server srv;

static int setup(void)
{
    const char *bert = strdup(it_testdata("tokenizers/bert-base-uncased"));
    const char *args[] = {"--generator", it_testdata("tokenizers/gpt2"), "--embedder", bert, "--reranker", bert,
                          "--max-input-tokens", "64", NULL};
    int rc = it_start(&srv, args, NULL);
    free((void *)bert);
    return rc;
}

static int teardown(void) { return it_stop(&srv) == 0 ? 0 : -1; }

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
    CU_ASSERT_EQUAL(json_integer_value(tok(l, 1, "stop")), 5);
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
    if (!it_testdata("tokenizers/gpt2")) {
        cu_skip_all("../shared/testdata not found");
        return;
    }
    CU_pSuite s = CU_add_suite("tokens", setup, teardown);
    CU_add_test(s, "GPT-2 tokenize", test_gpt2);
    CU_add_test(s, "BERT tokenize", test_bert);
    CU_add_test(s, "decode", test_decode);
    CU_add_test(s, "limits", test_limits);
}
