/* test_tokenizer.c — GPT-2 BPE and BERT WordPiece on the real vocabulary files: the
 * published test vectors (FORMATS.md §8), offsets, pairs, truncation, decoding, bad input,
 * malformed files, and a huge word. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cu.h"
#include "tokenizer.h"

static tok_tokenizer *gpt2, *gpt2_files, *bert, *names;

static tok_tokenizer *load(const char *rel)
{
    const char *dir = cu_testdata(rel);
    tok_tokenizer *t = NULL;
    tok_error err;
    if (dir && tok_load_dir(dir, &t, &err) != 0)
        fprintf(stderr, "%s: %s\n", rel, err.msg);
    return t;
}

/* gpt2 has tokenizer.json (preferred) and vocab.json + merges.txt; load the latter too by
 * copying just those two files into a temporary directory. */
static tok_tokenizer *load_gpt2_files(void)
{
    char dir[] = "/tmp/ragd-tok-XXXXXX", cmd[512];
    const char *src = cu_testdata("tokenizers/gpt2");
    if (!src || !mkdtemp(dir))
        return NULL;
    snprintf(cmd, sizeof cmd, "cp '%s/vocab.json' '%s/merges.txt' '%s/tokenizer_config.json' '%s/'", src, src, src, dir);
    tok_tokenizer *t = NULL;
    tok_error err;
    if (system(cmd) == 0 && tok_load_dir(dir, &t, &err) != 0)
        fprintf(stderr, "gpt2 files: %s\n", err.msg);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return t;
}

static int setup(void)
{
    gpt2 = load("tokenizers/gpt2");
    gpt2_files = load_gpt2_files();
    bert = load("tokenizers/bert-base-uncased");
    names = load("checkpoints/gpt2-names-makemore");
    return gpt2 && gpt2_files && bert && names ? 0 : -1;
}

static int teardown(void)
{
    tok_destroy(gpt2);
    tok_destroy(gpt2_files);
    tok_destroy(bert);
    tok_destroy(names);
    return 0;
}

static int encode(tok_tokenizer *t, const char *a, const char *b, int special, size_t max, tok_direction dir,
                  tok_encoding *e)
{
    tok_options o = {special, max, dir};
    tok_error err;
    int rc = tok_encode(t, a, strlen(a), b, b ? strlen(b) : 0, &o, e, &err);
    if (rc)
        fprintf(stderr, "encode: %s\n", err.msg);
    return rc;
}

static int ids_equal(const tok_encoding *e, const int32_t *want, size_t n)
{
    if (e->len != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (e->ids[i] != want[i])
            return 0;
    return 1;
}

static void show(const char *text, const tok_encoding *e)
{
    fprintf(stderr, "  '%s' ->", text);
    for (size_t i = 0; i < e->len; i++)
        fprintf(stderr, " %d", e->ids[i]);
    fprintf(stderr, "\n");
}

typedef struct {
    const char *text, *pair;
    int32_t ids[24];
    size_t n;
} vector;

static const vector gpt2_vectors[] = {
    {"Hello world", NULL, {15496, 995}, 2},
    {"hello world", NULL, {31373, 995}, 2},
    {" Hello world", NULL, {18435, 995}, 2},
    {"The sky is", NULL, {464, 6766, 318}, 3},
    {" blue", NULL, {4171}, 1},
    {" green", NULL, {4077}, 1},
    {"a  b\n\nc<|endoftext|>", NULL, {64, 220, 275, 198, 198, 66, 50256}, 7},
};

static const vector bert_vectors[] = {
    {"Hello, my dog is cute", NULL, {101, 7592, 1010, 2026, 3899, 2003, 10140, 102}, 8},
    {"Hello world", NULL, {101, 7592, 2088, 102}, 4},
    {"The quick brown fox jumps over the lazy dog.", NULL,
     {101, 1996, 4248, 2829, 4419, 14523, 2058, 1996, 13971, 3899, 1012, 102}, 12},
    {"Héllo naïve café 北京", NULL, {101, 7592, 15743, 7668, 1781, 1755, 102}, 7},
    {"How many people live in Berlin?", "Berlin is well known for its museums.",
     {101, 2129, 2116, 2111, 2444, 1999, 4068, 1029, 102, 4068, 2003, 2092, 2124, 2005, 2049, 9941, 1012, 102}, 18},
};

static void check_vectors(tok_tokenizer *t, const vector *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        tok_encoding e = {0};
        CU_ASSERT_EQUAL_FATAL(encode(t, v[i].text, v[i].pair, 1, 0, TOK_TRUNCATE_RIGHT, &e), 0);
        int ok = ids_equal(&e, v[i].ids, v[i].n);
        if (!ok)
            show(v[i].text, &e);
        CU_ASSERT(ok);
        tok_encoding_free(&e);
    }
}

static void test_gpt2_vectors(void)
{
    check_vectors(gpt2, gpt2_vectors, sizeof gpt2_vectors / sizeof gpt2_vectors[0]);
    check_vectors(gpt2_files, gpt2_vectors, sizeof gpt2_vectors / sizeof gpt2_vectors[0]);
    CU_ASSERT_EQUAL(tok_vocab_size(gpt2), 50257);
    CU_ASSERT_EQUAL(tok_eos_id(gpt2), 50256);
    CU_ASSERT_STRING_EQUAL(tok_id_to_token(gpt2, 995), "\xc4\xa0world"); /* "Ġworld" */
}

static void test_bert_vectors(void)
{
    check_vectors(bert, bert_vectors, sizeof bert_vectors / sizeof bert_vectors[0]);
    tok_encoding e = {0};
    encode(bert, bert_vectors[4].text, bert_vectors[4].pair, 1, 0, TOK_TRUNCATE_RIGHT, &e);
    for (size_t i = 0; i < e.len; i++)
        CU_ASSERT_EQUAL(e.type_ids[i], i < 9 ? 0 : 1);
    CU_ASSERT(e.special[0] && e.special[8] && e.special[17] && !e.special[1]);
    encode(bert, "Hello world", NULL, 0, 0, TOK_TRUNCATE_RIGHT, &e);
    const int32_t plain[] = {7592, 2088};
    CU_ASSERT(ids_equal(&e, plain, 2));
    tok_encoding_free(&e);
}

static void test_offsets(void)
{
    tok_encoding e = {0};
    encode(gpt2, "Hello world", NULL, 1, 0, TOK_TRUNCATE_RIGHT, &e);
    CU_ASSERT(e.start[0] == 0 && e.stop[0] == 5 && e.start[1] == 5 && e.stop[1] == 11);
    /* A character split across byte tokens maps every piece to the whole character. */
    encode(gpt2, "\xf0\x9f\x99\x82", NULL, 1, 0, TOK_TRUNCATE_RIGHT, &e);
    for (size_t i = 0; i < e.len; i++)
        CU_ASSERT(e.start[i] == 0 && e.stop[i] == 4);
    const char *text = "Héllo, naïve!";
    encode(bert, text, NULL, 1, 0, TOK_TRUNCATE_RIGHT, &e);
    CU_ASSERT(e.seq[0] == -1 && e.special[0]);
    CU_ASSERT(e.start[1] == 0 && e.stop[1] == 6); /* "héllo": the é is two bytes */
    CU_ASSERT(e.start[2] == 6 && e.stop[2] == 7); /* "," */
    CU_ASSERT_EQUAL(e.stop[e.len - 2], strlen(text));
    tok_encoding_free(&e);
}

static void test_decode(void)
{
    static const char *const texts[] = {"Hello world", "a  b\n\nc", "Héllo naïve café 北京 🙂 👍🏽",
                                        "  leading\ttabs\r\nand  runs  ", "don't I'll we've", "", "\x01\x7f"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        tok_encoding e = {0};
        CU_ASSERT_EQUAL(encode(gpt2_files, texts[i], NULL, 1, 0, TOK_TRUNCATE_RIGHT, &e), 0);
        char *out;
        size_t len;
        tok_error err;
        /* vocab.json/merges.txt directories carry no cleanup option: exact round trip. */
        CU_ASSERT_EQUAL(tok_decode(gpt2_files, e.ids, e.len, 0, &out, &len, &err), 0);
        CU_ASSERT(len == strlen(texts[i]) && memcmp(out, texts[i], len) == 0);
        free(out);
        tok_encoding_free(&e);
    }
    int32_t ids[] = {15496, 995, 50256};
    char *out;
    size_t len;
    tok_error err;
    CU_ASSERT_EQUAL(tok_decode(gpt2, ids, 3, TOK_DECODE_SKIP_SPECIAL, &out, &len, &err), 0);
    CU_ASSERT_STRING_EQUAL(out, "Hello world");
    free(out);
    CU_ASSERT_EQUAL(tok_decode(gpt2, ids, 3, 0, &out, &len, &err), 0);
    CU_ASSERT_STRING_EQUAL(out, "Hello world<|endoftext|>");
    free(out);
    int32_t spaced[] = {40, 705, 76, 994, 764}; /* "I 'm here ." */
    CU_ASSERT_EQUAL(tok_decode(gpt2, spaced, 5, 0, &out, &len, &err), 0);
    CU_ASSERT_STRING_EQUAL(out, "I'm here."); /* clean_up_tokenization_spaces, as configured */
    char *kept;
    CU_ASSERT_EQUAL(tok_decode(gpt2, spaced, 5, TOK_DECODE_KEEP_SPACES, &kept, &len, &err), 0);
    CU_ASSERT_STRING_EQUAL(kept, "I 'm here .");
    free(out);
    free(kept);
    int32_t wp[] = {101, 7592, 1010, 2026, 3899, 2003, 10140, 102, 14523, 2015};
    CU_ASSERT_EQUAL(tok_decode(bert, wp, 8, TOK_DECODE_SKIP_SPECIAL, &out, &len, &err), 0);
    CU_ASSERT_STRING_EQUAL(out, "hello, my dog is cute");
    free(out);
    int32_t bad[] = {1, 50257};
    CU_ASSERT_EQUAL(tok_decode(gpt2, bad, 2, 0, &out, &len, &err), TOK_EINPUT);
    bad[1] = -1;
    CU_ASSERT_EQUAL(tok_decode(gpt2, bad, 2, 0, &out, &len, &err), TOK_EINPUT);
}

/* "a a a ...": every word is one token, so lengths are exact. */
static char *words(size_t n)
{
    char *s = malloc(2 * n + 1);
    for (size_t i = 0; i < n; i++)
        memcpy(s + 2 * i, "a ", 2);
    s[n ? 2 * n - 1 : 0] = '\0';
    return s;
}

static void test_truncation(void)
{
    static const struct {
        size_t n1, n2, max, want1, want2;
    } cases[] = {
        {300, 300, 512, 254, 255}, /* fast tokenizer: the extra token goes to the second */
        {300, 400, 512, 254, 255},
        {400, 300, 512, 255, 254},
        {5, 600, 512, 5, 504},     /* short query, long passage */
        {5, 5, 512, 5, 5},
        {600, 0, 512, 510, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *a = words(cases[i].n1), *b = cases[i].n2 ? words(cases[i].n2) : NULL;
        tok_encoding e = {0};
        CU_ASSERT_EQUAL_FATAL(encode(bert, a, b, 1, cases[i].max, TOK_TRUNCATE_RIGHT, &e), 0);
        size_t n1 = 0, n2 = 0;
        for (size_t k = 0; k < e.len; k++) {
            n1 += e.seq[k] == 0;
            n2 += e.seq[k] == 1;
        }
        if (n1 != cases[i].want1 || n2 != cases[i].want2)
            fprintf(stderr, "truncation case %zu: got (%zu, %zu)\n", i, n1, n2);
        CU_ASSERT(n1 == cases[i].want1 && n2 == cases[i].want2);
        tok_encoding_free(&e);
        free(a);
        free(b);
    }
    /* Left truncation keeps the end; the template still frames it. */
    tok_encoding e = {0};
    encode(bert, "one two three four five", NULL, 1, 4, TOK_TRUNCATE_LEFT, &e);
    const int32_t left[] = {101, 2176, 2274, 102}; /* [CLS] four five [SEP] */
    CU_ASSERT(ids_equal(&e, left, 4));
    encode(bert, "one two three four five", NULL, 1, 4, TOK_TRUNCATE_RIGHT, &e);
    const int32_t right[] = {101, 2028, 2048, 102};
    CU_ASSERT(ids_equal(&e, right, 4));
    tok_options o = {1, 1, TOK_TRUNCATE_RIGHT};
    tok_error err;
    CU_ASSERT_EQUAL(tok_encode(bert, "x", 1, NULL, 0, &o, &e, &err), TOK_ELIMIT);
    tok_encoding_free(&e);
}

static void test_invalid_utf8(void)
{
    static const char *const bad[] = {"\xc0\x80", "\xc0\xaf", "\xed\xa0\x80", "\xf5\x80\x80\x80", "ab\x80", "\xe2\x82",
                                      "\xf4\x90\x80\x80", "\xff"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tok_encoding e = {0};
        tok_options o = {1, 0, TOK_TRUNCATE_RIGHT};
        tok_error err;
        CU_ASSERT_EQUAL(tok_encode(gpt2, bad[i], strlen(bad[i]), NULL, 0, &o, &e, &err), TOK_EINPUT);
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "UTF-8"));
        CU_ASSERT_EQUAL(tok_encode(bert, "ok", 2, bad[i], strlen(bad[i]), &o, &e, &err), TOK_EINPUT);
        tok_encoding_free(&e);
    }
}

static void test_names_tokenizer(void)
{
    tok_encoding e = {0};
    encode(names, "emma", NULL, 1, 0, TOK_TRUNCATE_RIGHT, &e);
    const int32_t emma[] = {5, 13, 13, 1};
    CU_ASSERT(ids_equal(&e, emma, 4));
    encode(names, ".ann.", NULL, 1, 0, TOK_TRUNCATE_RIGHT, &e);
    const int32_t ann[] = {0, 1, 14, 14, 0};
    CU_ASSERT(ids_equal(&e, ann, 5));
    CU_ASSERT(e.special[0] && e.special[4]);
    encode(names, "a-b", NULL, 1, 0, TOK_TRUNCATE_RIGHT, &e); /* unknown characters are dropped */
    const int32_t ab[] = {1, 2};
    CU_ASSERT(ids_equal(&e, ab, 2));
    tok_encoding_free(&e);
}

static void test_huge_word(void)
{
    size_t n = 1 << 20;
    char *s = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        s[i] = (char)('a' + (i * 7919 % 26));
    s[n] = '\0';
    tok_encoding e = {0};
    clock_t t0 = clock();
    CU_ASSERT_EQUAL(encode(gpt2, s, NULL, 1, 0, TOK_TRUNCATE_RIGHT, &e), 0);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    CU_ASSERT(e.len > 0 && e.len < n);
    CU_ASSERT(secs < 30.0); /* linear-ish, not quadratic: a 1 MB word in seconds at most */
    tok_encoding_free(&e);
    free(s);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void test_malformed_dirs(void)
{
    static const struct {
        const char *file, *text, *msg;
    } cases[] = {
        {"tokenizer.json", "{", "invalid JSON"},
        {"tokenizer.json", "[]", "needs a model"},
        {"tokenizer.json", "{\"model\":{\"type\":\"Unigram\",\"vocab\":{}}}", "not supported"},
        {"tokenizer.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1}}}", "not an integer in range"},
        {"tokenizer.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0}}}", "two tokens"},
        {"tokenizer.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a c\"]}}", "not in the vocabulary"},
        {"tokenizer.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[7]}}", "neither"},
        {"tokenizer.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":99999999}}}", "not an integer in range"},
        {"tokenizer.json", "{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":0}},\"normalizer\":null}", "BertNormalizer"},
        {"vocab.txt", "a\nb\n", "[UNK]"},
        {"vocab.json", "{}", "no tokenizer.json"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char dir[] = "/tmp/ragd-badtok-XXXXXX";
        CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
        write_file(dir, cases[i].file, cases[i].text);
        tok_tokenizer *t = NULL;
        tok_error err = {0};
        int rc = tok_load_dir(dir, &t, &err);
        if (rc == 0 || !strstr(err.msg, cases[i].msg))
            fprintf(stderr, "malformed case %zu: rc %d '%s'\n", i, rc, err.msg);
        CU_ASSERT(rc != 0 && t == NULL && strstr(err.msg, cases[i].msg));
        char path[256];
        snprintf(path, sizeof path, "%s/%s", dir, cases[i].file);
        unlink(path);
        rmdir(dir);
    }
    tok_tokenizer *t;
    tok_error err;
    CU_ASSERT_EQUAL(tok_load_dir("/nonexistent/dir", &t, &err), TOK_EIO);
}

void cu_register(void)
{
    if (!cu_testdata("tokenizers/gpt2")) {
        cu_skip_all("../shared/testdata not found");
        return;
    }
    CU_pSuite s = CU_add_suite("tokenizer", setup, teardown);
    CU_add_test(s, "GPT-2 test vectors", test_gpt2_vectors);
    CU_add_test(s, "BERT test vectors", test_bert_vectors);
    CU_add_test(s, "byte offsets", test_offsets);
    CU_add_test(s, "decoding", test_decode);
    CU_add_test(s, "truncation", test_truncation);
    CU_add_test(s, "invalid UTF-8", test_invalid_utf8);
    CU_add_test(s, "character-level names tokenizer", test_names_tokenizer);
    CU_add_test(s, "a 1 MB word", test_huge_word);
    CU_add_test(s, "malformed tokenizer files", test_malformed_dirs);
}
