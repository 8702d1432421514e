/* test_json_parse.c — jsonw_loadb (model/json_watch/json_parse.c) against jansson's own
 * json_loadb, which it replaces because jansson's lexer overruns a heap buffer when memory
 * runs short: both must accept the same texts with equal values and reject the same
 * texts, over hand-picked edge cases, the fuzz corpora and the real tokenizer files, and
 * thousands of seeded mutations of them. The short-memory side is in tests/fault. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cu.h"
#include "json_watch.h"

static long compared, accepted, disagreed;

/* Parses text both ways with `flags`; a disagreement is counted and the first few printed. */
static void compare(const char *text, size_t len, size_t flags, const char *what)
{
    json_error_t je, ours_e;
    int oom = -1;
    json_t *theirs = json_loadb(text, len, flags, &je);
    json_t *ours = jsonw_loadb(text, len, flags, &ours_e, &oom);
    compared++;
    int same = (!theirs == !ours) && (!ours || json_equal(theirs, ours)) && oom == 0;
    if (ours)
        accepted++;
    if (!same && disagreed++ < 8)
        printf("\n  %s (flags %zx, %zu bytes): jansson %s, ours %s (oom %d) %.60s%s", what, flags, len,
               theirs ? "accepts" : je.text, ours ? "accepts" : ours_e.text, oom, text, len > 60 ? "..." : "");
    json_decref(theirs);
    json_decref(ours);
}

static void compare_all_flags(const char *text, size_t len, const char *what)
{
    static const size_t flags[] = {0, JSON_REJECT_DUPLICATES, JSON_DECODE_ANY, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        compare(text, len, flags[i], what);
}

/* ---- edge cases ---- */

static const char *const cases[] = {
    "", " ", "{}", "[]", " \t\r\n{} \n", "{} x", "{}{}", "[1,]", "[,1]", "{\"a\":1,}", "{\"a\" 1}", "{\"a\":}",
    "{1:2}", "{'a':1}", "{a:1}", "[01]", "[-]", "[-0]", "[-01]", "[1.]", "[.5]", "[1.5e]", "[1e+]", "[1E-2]",
    "[0.0e0]", "[1e400]", "[-1e400]", "[1e-400]", "[9223372036854775807]", "[9223372036854775808]",
    "[-9223372036854775808]", "[-9223372036854775809]", "[123456789012345678901234567890.5]", "[NaN]",
    "[Infinity]", "[0x10]", "[+1]", "[true,false,null]", "[tru]", "[truex]", "[nul]", "[TRUE]", "true", "7",
    "\"s\"", "null", "[\"\\u0000\"]", "{\"a\\u0000\":1}", "[\"\\ud83d\\ude00\"]", "[\"\\ud83d\"]", "[\"\\ude00\"]",
    "[\"\\ud83d\\u0041\"]", "[\"\\ud83dx\"]", "[\"\\u12\"]", "[\"\\u12g4\"]", "[\"\\x\"]", "[\"\\/\\b\\f\\n\\r\\t\"]",
    "[\"a\nb\"]", "[\"a\tb\"]", "[\"\x7f\"]", "[\"\xc0\xaf\"]", "[\"\xc2\xa9\"]", "[\"\xe0\x80\xaf\"]",
    "[\"\xe0\xa0\x80\"]", "[\"\xed\x9f\xbf\"]", "[\"\xed\xa0\x80\"]", "[\"\xef\xbf\xbf\"]", "[\"\xf0\x8f\xbf\xbf\"]",
    "[\"\xf0\x90\x80\x80\"]", "[\"\xf4\x8f\xbf\xbf\"]", "[\"\xf4\x90\x80\x80\"]", "[\"\xf5\x80\x80\x80\"]",
    "[\"\x80\"]", "[\"\xc3\"]", "[\"\xc3(\"]", "[\"\xff\"]", "[\xc2\xa9]", "{\"a\":1,\"a\":2}",
    "{\"a\":{\"b\":1,\"b\":1}}", "[\"unterminated", "{\"a\":[1,2", "[1 2]", "{\"\":0}", "[\"\\\"\"]", "[\"\\\\\"]",
    "[/*c*/1]", "[1]//", "\xef\xbb\xbf[1]", "[1]\0", "[\"a\0b\"]",
};

static void test_cases(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        compare_all_flags(cases[i], strlen(cases[i]), "case");
    compare_all_flags("[1]\0", 4, "a NUL after the value");
    compare_all_flags("[\"a\0b\"]", 7, "a NUL in a string");
    printf("\n  %ld texts, %ld accepted, %ld disagreements", compared, accepted, disagreed);
    CU_ASSERT_EQUAL(disagreed, 0);
}

/* Nesting at and past jansson's limit of 2048 values, scalars counted. */
static void test_depth(void)
{
    long before = disagreed;
    static const size_t depths[] = {2046, 2047, 2048, 2049, 100000};
    for (size_t d = 0; d < sizeof depths / sizeof depths[0]; d++)
        for (int scalar = 0; scalar < 2; scalar++) {
            size_t n = depths[d];
            char *s = malloc(2 * n + 2), *p = s;
            for (size_t i = 0; i < n; i++)
                *p++ = '[';
            if (scalar)
                *p++ = '1';
            for (size_t i = 0; i < n; i++)
                *p++ = ']';
            compare(s, (size_t)(p - s), 0, "nested arrays");
            free(s);
        }
    CU_ASSERT_EQUAL(disagreed, before);
}

/* ---- corpora and their mutations ---- */

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_random(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Bytes that matter to a JSON lexer, for mutations to insert. */
static const char alphabet[] = "{}[]\":,\\u0123456789abcdefABCDEFeE.-+ \t\ntfnrlsx/\x80\xc3\xa9\xed\xa0\xf0\x90\xf4\xff";

static void mutate_and_compare(const char *text, size_t len, int rounds, const char *what)
{
    char *buf = malloc(len + 64);
    for (int r = 0; r < rounds; r++) {
        memcpy(buf, text, len);
        size_t n = len;
        int edits = 1 + (int)(next_random() % 3);
        for (int k = 0; k < edits; k++) {
            size_t at = n ? (size_t)(next_random() % n) : 0;
            char c = alphabet[next_random() % (sizeof alphabet - 1)];
            switch (next_random() % 4) {
            case 0: /* replace */
                if (n)
                    buf[at] = c;
                break;
            case 1: /* insert */
                memmove(buf + at + 1, buf + at, n - at);
                buf[at] = c;
                n++;
                break;
            case 2: /* delete */
                if (n) {
                    memmove(buf + at, buf + at + 1, n - at - 1);
                    n--;
                }
                break;
            default: /* truncate */
                n = at;
            }
        }
        compare(buf, n, r % 2 ? JSON_REJECT_DUPLICATES : JSON_DECODE_ANY, what);
    }
    free(buf);
}

/* Every file of a fuzz corpus directory under tests/fuzz/corpus, whole and mutated. */
static void corpus(const char *name, int rounds)
{
    const char *root = getenv("RAGD_SOURCE_ROOT");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/fuzz/corpus/%s", root ? root : ".", name);
    DIR *d = opendir(dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    struct dirent *de;
    int files = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        size_t len;
        char *text = read_file(path, &len);
        if (!text)
            continue;
        files++;
        compare_all_flags(text, len, path);
        mutate_and_compare(text, len, rounds, path);
        free(text);
    }
    closedir(d);
    CU_ASSERT(files > 0);
}

static void test_corpora(void)
{
    long before_compared = compared, before = disagreed;
    corpus("request", 1000);
    corpus("filter", 1000);
    corpus("adapter", 1000);
    /* The real tokenizer files: large documents of every kind of string and number. */
    static const char *const files[] = {"tokenizers/gpt2/tokenizer.json", "tokenizers/bert-base-uncased/tokenizer.json",
                                        "tokenizers/gpt2/vocab.json", "tokenizers/gpt2/config.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        const char *path = cu_testdata(files[i]);
        if (!path)
            continue;
        size_t len;
        char *text = read_file(path, &len);
        CU_ASSERT_PTR_NOT_NULL_FATAL(text);
        compare_all_flags(text, len, files[i]);
        mutate_and_compare(text, len, 8, files[i]);
        free(text);
    }
    printf("\n  %ld texts compared with jansson, %ld disagreements", compared - before_compared, disagreed - before);
    CU_ASSERT_EQUAL(disagreed, before);
}

/* What the server and the loaders print: a position and a reason. */
static void test_errors(void)
{
    json_error_t e;
    int oom = -1;
    CU_ASSERT_PTR_NULL(jsonw_loadb("{\"a\":1,\n \"b\":x}", 16, 0, &e, &oom));
    CU_ASSERT_EQUAL(oom, 0);
    CU_ASSERT_EQUAL(e.position, 13);
    CU_ASSERT_EQUAL(e.line, 2);
    CU_ASSERT_EQUAL(e.column, 6);
    CU_ASSERT_STRING_EQUAL(e.text, "invalid token");
    CU_ASSERT_EQUAL(json_error_code(&e), json_error_invalid_syntax);
    CU_ASSERT_PTR_NULL(jsonw_loadb("{\"a\":1,\"a\":2}", 13, JSON_REJECT_DUPLICATES, &e, &oom));
    CU_ASSERT_EQUAL(json_error_code(&e), json_error_duplicate_key);
    CU_ASSERT_PTR_NULL(jsonw_load_file("/nonexistent/ragd.json", 0, &e, &oom));
    CU_ASSERT_EQUAL(oom, 0);
    CU_ASSERT(strncmp(e.text, "unable to open /nonexistent/ragd.json", 37) == 0);
    CU_ASSERT_EQUAL(json_error_code(&e), json_error_cannot_open_file);
}

void cu_register(void)
{
    CU_pSuite s = CU_add_suite("json_parse", NULL, NULL);
    CU_add_test(s, "edge cases: the same verdicts and values as jansson", test_cases);
    CU_add_test(s, "nesting at and past the depth limit", test_depth);
    CU_add_test(s, "fuzz corpora, tokenizer files and their mutations", test_corpora);
    CU_add_test(s, "errors: position, line, column, code", test_errors);
}
