/* test_tokenizer.c — GPT-2 BPE and BERT WordPiece on the real vocabulary files: the published
 * test vectors (FORMATS.md §8), offsets, pairs, truncation, decoding and round trips, bad
 * input, malformed files, a 10 MB word, threads, and a naive reference BPE (the classic
 * "merge every occurrence of the best pair" loop) checked against the fast one on real words. */
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cu.h"
#include "tokenizer.h"

static tok_tokenizer *gpt2, *gpt2_files, *bert, *bert_txt, *names;
static char *moby;
static size_t moby_len;

/* ---------------------------------------------------------------- fixtures */

static tok_tokenizer *load_dir(const char *dir)
{
    tok_tokenizer *t = NULL;
    tok_error err;
    if (dir && tok_load_dir(dir, &t, &err) != 0)
        fprintf(stderr, "%s: %s\n", dir, err.msg);
    return t;
}

static tok_tokenizer *load(const char *rel) { return load_dir(cu_testdata(rel)); }

static char *read_all(const char *path, size_t *len)
{
    FILE *f = path ? fopen(path, "rb") : NULL;
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    fclose(f);
    if (s) {
        s[n] = '\0';
        *len = (size_t)n;
    }
    return s;
}

/* Returns 0 on success (no CUnit assertions: setup() uses it outside any test). */
static int write_file(const char *dir, const char *name, const char *text, size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int rc = fwrite(text, 1, len, f) == len ? 0 : -1;
    return fclose(f) == 0 ? rc : -1;
}

static void copy_file(const char *from_dir, const char *name, const char *to_dir)
{
    char path[4096];
    size_t len;
    snprintf(path, sizeof path, "%s/%s", from_dir, name);
    char *s = read_all(path, &len);
    if (s && write_file(to_dir, name, s, len) != 0)
        fprintf(stderr, "could not copy %s\n", name);
    free(s);
}

static void remove_dir(const char *dir)
{
    static const char *const files[] = {"tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                                        "vocab.txt"};
    char path[512];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* A directory with only some files of a real one (gpt2 without tokenizer.json, bert's vocab.txt). */
static tok_tokenizer *load_subset(const char *rel, const char *const *files, size_t n)
{
    char dir[] = "/tmp/ragd-tok-XXXXXX";
    const char *src = cu_testdata(rel);
    if (!src || !mkdtemp(dir))
        return NULL;
    char from[4096];
    snprintf(from, sizeof from, "%s", src);
    for (size_t i = 0; i < n; i++)
        copy_file(from, files[i], dir);
    tok_tokenizer *t = load_dir(dir);
    remove_dir(dir);
    return t;
}

static int setup(void)
{
    static const char *const gpt2_set[] = {"vocab.json", "merges.txt", "tokenizer_config.json"};
    static const char *const bert_set[] = {"vocab.txt", "tokenizer_config.json"};
    gpt2 = load("tokenizers/gpt2");
    gpt2_files = load_subset("tokenizers/gpt2", gpt2_set, 3);
    bert = load("tokenizers/bert-base-uncased");
    bert_txt = load_subset("tokenizers/bert-base-uncased", bert_set, 2);
    names = load("checkpoints/gpt2-names-makemore");
    moby = read_all(cu_testdata("text/moby_dick.txt"), &moby_len);
    return gpt2 && gpt2_files && bert && bert_txt && names && moby ? 0 : -1;
}

static int teardown(void)
{
    tok_destroy(gpt2);
    tok_destroy(gpt2_files);
    tok_destroy(bert);
    tok_destroy(bert_txt);
    tok_destroy(names);
    free(moby);
    return 0;
}

/* ---------------------------------------------------------------- helpers */

static int encode_n(const tok_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen, int special,
                    size_t max, tok_direction dir, tok_encoding *e)
{
    tok_options o = {special, max, dir};
    tok_error err;
    int rc = tok_encode(t, a, alen, b, blen, &o, e, &err);
    if (rc)
        fprintf(stderr, "encode: %s\n", err.msg);
    return rc;
}

static int encode(const tok_tokenizer *t, const char *a, const char *b, int special, size_t max, tok_direction dir,
                  tok_encoding *e)
{
    return encode_n(t, a, strlen(a), b, b ? strlen(b) : 0, special, max, dir, e);
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

static int same_encoding(const tok_encoding *x, const tok_encoding *y)
{
    if (x->len != y->len)
        return 0;
    for (size_t i = 0; i < x->len; i++)
        if (x->ids[i] != y->ids[i] || x->start[i] != y->start[i] || x->stop[i] != y->stop[i] ||
            x->type_ids[i] != y->type_ids[i])
            return 0;
    return 1;
}

static void show(const char *what, const tok_encoding *e)
{
    fprintf(stderr, "  %s ->", what);
    for (size_t i = 0; i < e->len; i++)
        fprintf(stderr, " %d(%u,%u)", e->ids[i], e->start[i], e->stop[i]);
    fprintf(stderr, "\n");
}

/* Decodes and compares with `want` (NUL-terminated). */
static int decodes_to(const tok_tokenizer *t, const int32_t *ids, size_t n, unsigned flags, const char *want)
{
    char *out = NULL;
    size_t len = 0;
    tok_error err;
    int rc = tok_decode(t, ids, n, flags, &out, &len, &err);
    int ok = rc == 0 && len == strlen(want) && memcmp(out, want, len) == 0 && out[len] == '\0';
    if (!ok)
        fprintf(stderr, "  decode: got '%s' (rc %d), want '%s'\n", out ? out : err.msg, rc, want);
    free(out);
    return ok;
}

/* ---------------------------------------------------------------- test vectors */

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
    /* checked with @huggingface/tokenizers on tokenizer.json */
    {"\xc2\xa0\xc2\xa0x", NULL, {1849, 1849, 87}, 3},
    {"x \xe3\x80\x80y", NULL, {87, 220, 5099, 222, 88}, 5},
    {"\xf0\x9f\x99\x82\xf0\x9f\x99\x82 ", NULL, {8582, 25081, 8582, 25081, 220}, 5},
    {"1234567 abc'sdef 're' 've", NULL, {10163, 2231, 3134, 450, 66, 338, 4299, 705, 260, 6, 705, 303}, 12},
    {"", NULL, {0}, 0},
};

static const vector bert_vectors[] = {
    {"Hello, my dog is cute", NULL, {101, 7592, 1010, 2026, 3899, 2003, 10140, 102}, 8},
    {"Hello world", NULL, {101, 7592, 2088, 102}, 4},
    {"The quick brown fox jumps over the lazy dog.", NULL,
     {101, 1996, 4248, 2829, 4419, 14523, 2058, 1996, 13971, 3899, 1012, 102}, 12},
    {"H\xc3\xa9llo na\xc3\xafve caf\xc3\xa9 \xe5\x8c\x97\xe4\xba\xac", NULL, {101, 7592, 15743, 7668, 1781, 1755, 102}, 7},
    {"How many people live in Berlin?", "Berlin is well known for its museums.",
     {101, 2129, 2116, 2111, 2444, 1999, 4068, 1029, 102, 4068, 2003, 2092, 2124, 2005, 2049, 9941, 1012, 102}, 18},
    /* checked with @huggingface/tokenizers: controls (\v, U+0085, U+200B) are removed, not spaces */
    {"a\x0b" "b", NULL, {101, 11113, 102}, 3},
    {"a\xc2\x85" "b", NULL, {101, 11113, 102}, 3},
    {"a\xe2\x80\xa8" "b", NULL, {101, 1037, 1038, 102}, 4},
    {"a\xe2\x80\x8b" "b", NULL, {101, 11113, 102}, 3},
    {"\xc4\xb0stanbul", NULL, {101, 9960, 102}, 3},
    {"hello[SEP]world [MASK]", NULL, {101, 7592, 102, 2088, 103, 102}, 6},
    {"", NULL, {101, 102}, 2},
};

static void check_vectors(const tok_tokenizer *t, const vector *v, size_t n)
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
    size_t n = sizeof gpt2_vectors / sizeof gpt2_vectors[0];
    check_vectors(gpt2, gpt2_vectors, n);
    check_vectors(gpt2_files, gpt2_vectors, n);
    CU_ASSERT_EQUAL(tok_get_kind(gpt2), TOK_KIND_BPE);
    CU_ASSERT_EQUAL(tok_vocab_size(gpt2), 50257);
    CU_ASSERT_EQUAL(tok_vocab_size(gpt2_files), 50257);
    CU_ASSERT_EQUAL(tok_eos_id(gpt2), 50256);
    CU_ASSERT_EQUAL(tok_model_max_length(gpt2), 1024);
    CU_ASSERT_STRING_EQUAL(tok_id_to_token(gpt2, 995), "\xc4\xa0world"); /* "Ġworld" */
    CU_ASSERT_PTR_NULL(tok_id_to_token(gpt2, 50257));
    CU_ASSERT_PTR_NULL(tok_id_to_token(gpt2, -1));
    /* "<|endoftext|>" in text is the special token, flagged as such */
    tok_encoding e = {0};
    encode(gpt2, "x<|endoftext|>", NULL, 1, 0, TOK_TRUNCATE_RIGHT, &e);
    CU_ASSERT(e.len == 2 && e.ids[1] == 50256 && e.special[1] && !e.special[0]);
    tok_encoding_free(&e);
}

static void test_bert_vectors(void)
{
    size_t n = sizeof bert_vectors / sizeof bert_vectors[0];
    check_vectors(bert, bert_vectors, n);
    check_vectors(bert_txt, bert_vectors, n); /* vocab.txt + tokenizer_config.json */
    CU_ASSERT_EQUAL(tok_get_kind(bert), TOK_KIND_WORDPIECE);
    CU_ASSERT_EQUAL(tok_vocab_size(bert), 30522);
    CU_ASSERT_EQUAL(tok_vocab_size(bert_txt), 30522);
    CU_ASSERT_EQUAL(tok_pad_id(bert), 0);
    CU_ASSERT_EQUAL(tok_model_max_length(bert), 512);
    tok_encoding e = {0};
    encode(bert, bert_vectors[4].text, bert_vectors[4].pair, 1, 0, TOK_TRUNCATE_RIGHT, &e);
    CU_ASSERT_EQUAL(e.len, 18);
    for (size_t i = 0; i < e.len; i++)
        CU_ASSERT_EQUAL(e.type_ids[i], i < 9 ? 0 : 1);
    CU_ASSERT(e.special[0] && e.special[8] && e.special[17] && !e.special[1]);
    CU_ASSERT(e.seq[0] == -1 && e.seq[1] == 0 && e.seq[9] == 1 && e.seq[17] == -1);
    encode(bert, "Hello world", NULL, 0, 0, TOK_TRUNCATE_RIGHT, &e);
    const int32_t plain[] = {7592, 2088};
    CU_ASSERT(ids_equal(&e, plain, 2));
    /* a word over max_input_chars_per_word (100) is one [UNK]; an unknown char is one [UNK] */
    char long_word[151];
    memset(long_word, 'a', 150);
    long_word[150] = '\0';
    encode(bert, long_word, NULL, 0, 0, TOK_TRUNCATE_RIGHT, &e);
    CU_ASSERT(e.len == 1 && e.ids[0] == 100 && e.start[0] == 0 && e.stop[0] == 150);
    encode(bert, long_word + 60, NULL, 0, 0, TOK_TRUNCATE_RIGHT, &e); /* 90 chars: pieces */
    CU_ASSERT(e.len > 1 && e.ids[0] != 100);
    tok_encoding_free(&e);
}

/* GPT-2 pairs just concatenate, with type ids 0 and 1; no specials are added. */
static void test_gpt2_pair(void)
{
    tok_encoding e = {0};
    CU_ASSERT_EQUAL(encode(gpt2, "Hello world", " blue", 1, 0, TOK_TRUNCATE_RIGHT, &e), 0);
    const int32_t want[] = {15496, 995, 4171};
    CU_ASSERT(ids_equal(&e, want, 3));
    CU_ASSERT(e.type_ids[0] == 0 && e.type_ids[1] == 0 && e.type_ids[2] == 1);
    CU_ASSERT(e.seq[2] == 1 && e.start[2] == 0 && e.stop[2] == 5);
    CU_ASSERT_EQUAL(encode(gpt2, "The sky is", " blue", 1, 3, TOK_TRUNCATE_RIGHT, &e), 0);
    const int32_t cut[] = {464, 6766, 4171}; /* longest_first: (3, 1) over 3 -> (2, 1) */
    CU_ASSERT(ids_equal(&e, cut, 3));
    tok_encoding_free(&e);
}

/* ---------------------------------------------------------------- offsets */

typedef struct {
    const char *text;
    uint32_t span[8][2]; /* of the tokens from the text (specials skipped) */
    size_t n;
} offsets_case;

static void check_offsets(const tok_tokenizer *t, const offsets_case *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        tok_encoding e = {0};
        CU_ASSERT_EQUAL_FATAL(encode(t, c[i].text, NULL, 1, 0, TOK_TRUNCATE_RIGHT, &e), 0);
        size_t k = 0;
        int ok = 1;
        for (size_t j = 0; j < e.len; j++) {
            if (e.seq[j] < 0) {
                ok &= e.start[j] == 0 && e.stop[j] == 0;
                continue;
            }
            ok &= k < c[i].n && e.start[j] == c[i].span[k][0] && e.stop[j] == c[i].span[k][1];
            k++;
        }
        ok &= k == c[i].n;
        if (!ok)
            show(c[i].text, &e);
        CU_ASSERT(ok);
        tok_encoding_free(&e);
    }
}

static void test_offsets(void)
{
    /* Byte offsets into the input. GPT-2's post-processor has trim_offsets false, so " world"
     * keeps its space; every byte token of a split character spans the whole character. */
    static const offsets_case gpt2_cases[] = {
        {"Hello world", {{0, 5}, {5, 11}}, 2},
        {"a  b\n\nc<|endoftext|>", {{0, 1}, {1, 2}, {2, 4}, {4, 5}, {5, 6}, {6, 7}, {7, 20}}, 7},
        {"\xf0\x9f\x99\x82", {{0, 4}, {0, 4}}, 2},
        {"x \xe3\x80\x80y", {{0, 1}, {1, 2}, {2, 5}, {2, 5}, {5, 6}}, 5},
    };
    /* BERT: normalization changes lengths; offsets still point into the original bytes. */
    static const offsets_case bert_cases[] = {
        {"H\xc3\xa9llo, na\xc3\xafve!", {{0, 6}, {6, 7}, {8, 14}, {14, 15}}, 4}, /* "naive" is one token */
        {"\xc4\xb0stanbul \xe5\x8c\x97\xe4\xba\xac", {{0, 9}, {10, 13}, {13, 16}}, 3},
        {"hello[SEP]world [MASK]", {{0, 5}, {5, 10}, {10, 15}, {16, 22}}, 4},
        {"a\x0b" "b x\xc2\xadz", {{0, 3}, {4, 5}, {7, 8}}, 3},
    };
    check_offsets(gpt2, gpt2_cases, sizeof gpt2_cases / sizeof gpt2_cases[0]);
    check_offsets(bert, bert_cases, sizeof bert_cases / sizeof bert_cases[0]);
}

/* ---------------------------------------------------------------- decoding */

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Random valid UTF-8 mixing ASCII, whitespace runs, Latin, combining marks, CJK, emoji and
 * any other scalar value. */
static size_t random_utf8(uint64_t *s, char *out, size_t max_chars)
{
    static const uint32_t ranges[][2] = {{'a', 'z'}, {' ', ' '}, {'\t', '\r'}, {'0', '9'}, {'!', '/'},
                                         {0xA0, 0x17F}, {0x300, 0x36F}, {0x4E00, 0x9FFF}, {0x1F300, 0x1FAFF},
                                         {0x2000, 0x206F}, {0x80, 0x10FFFF}};
    size_t n = rng_next(s) % max_chars, len = 0;
    for (size_t i = 0; i < n; i++) {
        const uint32_t *r = ranges[rng_next(s) % (sizeof ranges / sizeof ranges[0])];
        uint32_t cp = r[0] + (uint32_t)(rng_next(s) % (r[1] - r[0] + 1));
        if (cp >= 0xD800 && cp <= 0xDFFF)
            cp = 'x';
        if (cp < 0x80) {
            out[len++] = (char)cp;
        } else if (cp < 0x800) {
            out[len++] = (char)(0xC0 | cp >> 6);
            out[len++] = (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out[len++] = (char)(0xE0 | cp >> 12);
            out[len++] = (char)(0x80 | (cp >> 6 & 0x3F));
            out[len++] = (char)(0x80 | (cp & 0x3F));
        } else {
            out[len++] = (char)(0xF0 | cp >> 18);
            out[len++] = (char)(0x80 | (cp >> 12 & 0x3F));
            out[len++] = (char)(0x80 | (cp >> 6 & 0x3F));
            out[len++] = (char)(0x80 | (cp & 0x3F));
        }
    }
    return len;
}

/* Byte-level BPE loses nothing: decode(encode(x)) == x, and offsets are ordered, in bounds
 * and on character boundaries. */
static void test_round_trip(void)
{
    uint64_t seed = 0x9E3779B97F4A7C15ull;
    char text[4 * 200 + 1];
    int failures = 0;
    for (int i = 0; i < 2000; i++) {
        size_t len = random_utf8(&seed, text, 200);
        const tok_tokenizer *t = i % 2 ? gpt2 : gpt2_files;
        tok_encoding e = {0};
        CU_ASSERT_EQUAL_FATAL(encode_n(t, text, len, NULL, 0, 1, 0, TOK_TRUNCATE_RIGHT, &e), 0);
        char *out = NULL;
        size_t out_len = 0;
        tok_error err;
        int ok = tok_decode(t, e.ids, e.len, TOK_DECODE_KEEP_SPACES, &out, &out_len, &err) == 0 && out_len == len &&
                 memcmp(out, text, len) == 0;
        for (size_t k = 0; k < e.len; k++) {
            ok &= e.start[k] < e.stop[k] && e.stop[k] <= len && (k == 0 || e.start[k] >= e.start[k - 1]);
            ok &= ((unsigned char)text[e.start[k]] & 0xC0) != 0x80;
            ok &= e.stop[k] == len || ((unsigned char)text[e.stop[k]] & 0xC0) != 0x80;
        }
        if (!ok && failures++ < 3)
            fprintf(stderr, "  round trip failed for case %d (%zu bytes)\n", i, len);
        CU_ASSERT(ok);
        free(out);
        tok_encoding_free(&e);
    }
    static const char *const texts[] = {"Hello world", "a  b\n\nc", "  leading\ttabs\r\nand  runs  ",
                                        "don't I'll we've", "\x01\x7f", "\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd 北京"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        tok_encoding e = {0};
        encode(gpt2, texts[i], NULL, 1, 0, TOK_TRUNCATE_RIGHT, &e);
        CU_ASSERT(decodes_to(gpt2, e.ids, e.len, TOK_DECODE_KEEP_SPACES, texts[i]));
        tok_encoding_free(&e);
    }
}

/* GPT-2 byte symbol ids: decode each of the first 256 ids to find its byte. */
static void byte_ids(int32_t ids[256])
{
    for (int32_t id = 0; id < 256; id++) {
        char *out;
        size_t len;
        tok_error err;
        if (tok_decode(gpt2, &id, 1, TOK_DECODE_KEEP_SPACES, &out, &len, &err) == 0 && len == 1)
            ids[(unsigned char)out[0]] = id;
        free(out);
    }
}

static void test_decode(void)
{
    int32_t ids[] = {15496, 995, 50256};
    CU_ASSERT(decodes_to(gpt2, ids, 3, TOK_DECODE_SKIP_SPECIAL, "Hello world"));
    CU_ASSERT(decodes_to(gpt2, ids, 3, 0, "Hello world<|endoftext|>"));
    CU_ASSERT(decodes_to(gpt2, ids, 0, 0, ""));
    int32_t spaced[] = {40, 705, 76, 994, 764}; /* "I 'm here ." */
    CU_ASSERT(decodes_to(gpt2, spaced, 5, 0, "I'm here.")); /* clean_up_tokenization_spaces: true */
    CU_ASSERT(decodes_to(gpt2, spaced, 5, TOK_DECODE_KEEP_SPACES, "I 'm here ."));
    int32_t bad[] = {1, 50257};
    char *out = NULL;
    size_t len;
    tok_error err;
    CU_ASSERT_EQUAL(tok_decode(gpt2, bad, 2, 0, &out, &len, &err), TOK_EINPUT);
    CU_ASSERT_PTR_NULL(out);
    bad[1] = -1;
    CU_ASSERT_EQUAL(tok_decode(gpt2, bad, 2, 0, &out, &len, &err), TOK_EINPUT);
    CU_ASSERT_EQUAL(tok_decode(bert, bad, 2, 0, &out, &len, &err), TOK_EINPUT);

    /* Raw bytes by default; TOK_DECODE_LOSSY as Rust's from_utf8_lossy: one U+FFFD per
     * maximal invalid subsequence. */
    static const struct {
        const char *bytes, *lossy;
    } lossy[] = {
        {"a\xf0\x9f", "a\xef\xbf\xbd"},
        {"\xf0\x9f\x99", "\xef\xbf\xbd"},
        {"\xc0\x80", "\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xe2\x82" "a", "\xef\xbf\xbd" "a"},
        {"\xff", "\xef\xbf\xbd"},
        {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xe2\x82\xac\x80", "\xe2\x82\xac\xef\xbf\xbd"},
    };
    int32_t byte_id[256];
    byte_ids(byte_id);
    for (size_t i = 0; i < sizeof lossy / sizeof lossy[0]; i++) {
        int32_t seq[8];
        size_t n = strlen(lossy[i].bytes);
        for (size_t k = 0; k < n; k++)
            seq[k] = byte_id[(unsigned char)lossy[i].bytes[k]];
        CU_ASSERT(decodes_to(gpt2, seq, n, TOK_DECODE_KEEP_SPACES, lossy[i].bytes));
        CU_ASSERT(decodes_to(gpt2, seq, n, TOK_DECODE_KEEP_SPACES | TOK_DECODE_LOSSY, lossy[i].lossy));
    }

    /* WordPiece: spaces between tokens, "##" glued; the decoder's own cleanup works per token
     * (" ," and " ." go, " ' " stays), clean_up_tokenization_spaces on the whole text
     * (as @huggingface/tokenizers gives). */
    int32_t wp[] = {101, 7592, 1010, 2026, 3899, 2003, 10140, 102};
    CU_ASSERT(decodes_to(bert, wp, 8, TOK_DECODE_SKIP_SPECIAL, "hello, my dog is cute"));
    CU_ASSERT(decodes_to(bert, wp, 8, 0, "[CLS] hello, my dog is cute [SEP]"));
    tok_encoding e = {0};
    encode(bert, "don't I'm a ' b, c.", NULL, 0, 0, TOK_TRUNCATE_RIGHT, &e);
    CU_ASSERT(decodes_to(bert, e.ids, e.len, 0, "don't i'm a'b, c."));
    CU_ASSERT(decodes_to(bert, e.ids, e.len, TOK_DECODE_KEEP_SPACES, "don ' t i ' m a ' b, c."));
    CU_ASSERT(decodes_to(bert_txt, e.ids, e.len, 0, "don't i'm a'b, c."));
    encode(bert, "unaffable tokenization", NULL, 0, 0, TOK_TRUNCATE_RIGHT, &e);
    CU_ASSERT(e.len > 2);
    CU_ASSERT(decodes_to(bert, e.ids, e.len, 0, "unaffable tokenization"));
    const int32_t piece_first[] = {2015, 7592}; /* a leading "##s" keeps its prefix, as in Rust */
    CU_ASSERT(decodes_to(bert, piece_first, 2, 0, "##s hello"));
    tok_encoding_free(&e);

    /* The names tokenizer has no decoder: Hugging Face joins tokens with spaces. */
    const int32_t emma[] = {0, 5, 13, 13, 1, 0};
    CU_ASSERT(decodes_to(names, emma, 6, TOK_DECODE_SKIP_SPECIAL, "e m m a"));
}

/* ---------------------------------------------------------------- truncation */

/* "a a a ...": every word is one token for BERT, so lengths are exact. */
static char *words(size_t n)
{
    char *s = malloc(2 * n + 1);
    for (size_t i = 0; i < n; i++)
        memcpy(s + 2 * i, "a ", 2);
    s[n ? 2 * n - 1 : 0] = '\0';
    return s;
}

static void count_seqs(const tok_encoding *e, size_t *n1, size_t *n2)
{
    *n1 = *n2 = 0;
    for (size_t k = 0; k < e->len; k++) {
        *n1 += e->seq[k] == 0;
        *n2 += e->seq[k] == 1;
    }
}

static void test_truncation(void)
{
    static const struct {
        size_t n1, n2, max;
        int special;
        tok_direction dir;
        size_t want1, want2;
    } cases[] = {
        {300, 300, 512, 1, TOK_TRUNCATE_RIGHT, 254, 255}, /* fast tokenizer: the extra token goes second */
        {300, 400, 512, 1, TOK_TRUNCATE_RIGHT, 254, 255},
        {400, 300, 512, 1, TOK_TRUNCATE_RIGHT, 255, 254}, /* first longer */
        {5, 600, 512, 1, TOK_TRUNCATE_RIGHT, 5, 504},     /* short query, long passage */
        {600, 5, 512, 1, TOK_TRUNCATE_RIGHT, 504, 5},
        {5, 5, 512, 1, TOK_TRUNCATE_RIGHT, 5, 5},
        {600, 0, 512, 1, TOK_TRUNCATE_RIGHT, 510, 0},     /* single text keeps M = 510 */
        {600, 0, 512, 0, TOK_TRUNCATE_RIGHT, 512, 0},     /* no specials: the budget is max_length */
        {300, 400, 512, 1, TOK_TRUNCATE_LEFT, 254, 255},
        {10, 10, 3, 1, TOK_TRUNCATE_RIGHT, 0, 0},         /* budget 0 */
        {10, 10, 4, 1, TOK_TRUNCATE_RIGHT, 0, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *a = words(cases[i].n1), *b = cases[i].n2 ? words(cases[i].n2) : NULL;
        tok_encoding e = {0};
        CU_ASSERT_EQUAL_FATAL(encode(bert, a, b, cases[i].special, cases[i].max, cases[i].dir, &e), 0);
        size_t n1, n2;
        count_seqs(&e, &n1, &n2);
        if (n1 != cases[i].want1 || n2 != cases[i].want2)
            fprintf(stderr, "  truncation case %zu: got (%zu, %zu)\n", i, n1, n2);
        CU_ASSERT(n1 == cases[i].want1 && n2 == cases[i].want2);
        CU_ASSERT(e.len == n1 + n2 + (cases[i].special ? (b ? 3 : 2) : 0));
        tok_encoding_free(&e);
        free(a);
        free(b);
    }
    /* Left truncation keeps the end; the template still frames it; offsets follow the tokens. */
    tok_encoding e = {0};
    encode(bert, "one two three four five", NULL, 1, 4, TOK_TRUNCATE_LEFT, &e);
    const int32_t left[] = {101, 2176, 2274, 102}; /* [CLS] four five [SEP] */
    CU_ASSERT(ids_equal(&e, left, 4));
    CU_ASSERT(e.start[1] == 14 && e.stop[2] == 23);
    encode(bert, "one two three four five", NULL, 1, 4, TOK_TRUNCATE_RIGHT, &e);
    const int32_t right[] = {101, 2028, 2048, 102};
    CU_ASSERT(ids_equal(&e, right, 4));
    encode(bert, "one two three", "four five six", 1, 7, TOK_TRUNCATE_LEFT, &e);
    const int32_t pair_left[] = {101, 2048, 2093, 102, 2274, 2416, 102};
    CU_ASSERT(ids_equal(&e, pair_left, 7));
    tok_options o = {1, 1, TOK_TRUNCATE_RIGHT};
    tok_error err = {0};
    CU_ASSERT_EQUAL(tok_encode(bert, "x", 1, NULL, 0, &o, &e, &err), TOK_ELIMIT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "max_length"));
    o.max_length = 2;
    CU_ASSERT_EQUAL(tok_encode(bert, "x", 1, "y", 1, &o, &e, &err), TOK_ELIMIT);
    o.max_length = 1; /* GPT-2 adds no specials: 1 is a valid budget */
    CU_ASSERT_EQUAL(tok_encode(gpt2, "Hello world", 11, NULL, 0, &o, &e, &err), 0);
    CU_ASSERT(e.len == 1 && e.ids[0] == 15496);
    tok_encoding_free(&e);
}

/* ---------------------------------------------------------------- bad input */

static void test_invalid_utf8(void)
{
    static const struct {
        const char *text;
        size_t at;
    } bad[] = {
        {"\xc0\x80", 0},         /* overlong */
        {"ok \xc1\xbf", 3},      /* overlong */
        {"\xe0\x80\xaf", 0},     /* overlong, 3 bytes */
        {"ab\xed\xa0\x80", 2},   /* surrogate */
        {"\xf5\x80\x80\x80", 0}, /* beyond U+10FFFF */
        {"\xf4\x90\x80\x80", 0}, /* beyond U+10FFFF */
        {"ab\x80", 2},           /* lone continuation */
        {"x\xe2\x82", 1},        /* truncated */
        {"\xf0\x9f\x99", 0},     /* truncated */
        {"\xff", 0},
        {"\xe2\x82(", 0},        /* bad continuation */
    };
    tok_tokenizer **const toks[] = {&gpt2, &bert, &names};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        for (size_t k = 0; k < 3; k++) {
            tok_encoding e = {0};
            tok_options o = {1, 0, TOK_TRUNCATE_RIGHT};
            tok_error err = {0};
            char where[32];
            snprintf(where, sizeof where, "at byte %zu", bad[i].at);
            CU_ASSERT_EQUAL(tok_encode(*toks[k], bad[i].text, strlen(bad[i].text), NULL, 0, &o, &e, &err), TOK_EINPUT);
            CU_ASSERT(strstr(err.msg, "UTF-8") && strstr(err.msg, where));
            CU_ASSERT_EQUAL(tok_encode(*toks[k], "ok", 2, bad[i].text, strlen(bad[i].text), &o, &e, &err),
                            TOK_EINPUT);
            CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "second"));
            tok_encoding_free(&e);
        }
    }
    /* NUL bytes are valid UTF-8: byte tokens for GPT-2, dropped by BERT's clean_text */
    tok_encoding e = {0};
    CU_ASSERT_EQUAL(encode_n(gpt2, "a\0b", 3, NULL, 0, 1, 0, TOK_TRUNCATE_RIGHT, &e), 0);
    CU_ASSERT_EQUAL(e.len, 3);
    CU_ASSERT_EQUAL(encode_n(bert, "a\0b", 3, NULL, 0, 0, 0, TOK_TRUNCATE_RIGHT, &e), 0);
    CU_ASSERT(e.len == 1 && e.ids[0] == 11113);
    tok_encoding_free(&e);
}

static void test_names_tokenizer(void)
{
    tok_encoding e = {0};
    encode(names, "emma", NULL, 1, 0, TOK_TRUNCATE_RIGHT, &e);
    const int32_t emma[] = {5, 13, 13, 1};
    CU_ASSERT(ids_equal(&e, emma, 4));
    CU_ASSERT(e.start[3] == 3 && e.stop[3] == 4);
    encode(names, ".", NULL, 1, 0, TOK_TRUNCATE_RIGHT, &e);
    CU_ASSERT(e.len == 1 && e.ids[0] == 0 && e.special[0]);
    encode(names, ".ann.", NULL, 1, 0, TOK_TRUNCATE_RIGHT, &e);
    const int32_t ann[] = {0, 1, 14, 14, 0};
    CU_ASSERT(ids_equal(&e, ann, 5));
    CU_ASSERT(e.special[0] && e.special[4] && !e.special[1]);
    encode(names, "a-B\xc3\xa9 b", NULL, 1, 0, TOK_TRUNCATE_RIGHT, &e); /* unknown characters are dropped */
    const int32_t ab[] = {1, 2};
    CU_ASSERT(ids_equal(&e, ab, 2));
    CU_ASSERT(e.start[1] == 6 && e.stop[1] == 7);
    CU_ASSERT_EQUAL(tok_vocab_size(names), 27);
    CU_ASSERT_EQUAL(tok_eos_id(names), 0);
    tok_encoding_free(&e);
}

/* ---------------------------------------------------------------- naive reference BPE */

/* bytes_to_unicode, written independently of the library. */
static size_t byte_symbol(unsigned b, char out[3])
{
    unsigned cp = b;
    if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)) {
        unsigned k = 0;
        for (unsigned x = 0; x < b; x++)
            k += !((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174);
        cp = 256 + k;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | cp >> 6);
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

typedef struct {
    json_t *ranks; /* "a b" -> rank */
    json_t *vocab; /* token -> id */
} naive_bpe;

static int naive_load(naive_bpe *nb)
{
    char path[4096];
    size_t len;
    snprintf(path, sizeof path, "%s/merges.txt", cu_testdata("tokenizers/gpt2"));
    char *text = read_all(path, &len);
    snprintf(path, sizeof path, "%s/vocab.json", cu_testdata("tokenizers/gpt2"));
    nb->vocab = json_load_file(path, 0, NULL);
    nb->ranks = json_object();
    if (!text || !nb->vocab)
        return -1;
    int rank = 0;
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (*line && strncmp(line, "#version", 8) != 0)
            json_object_set_new(nb->ranks, line, json_integer(rank++));
    }
    free(text);
    return 0;
}

static long naive_rank(const naive_bpe *nb, const char *a, const char *b)
{
    char key[2100];
    snprintf(key, sizeof key, "%s %s", a, b);
    json_t *r = json_object_get(nb->ranks, key);
    return r ? (long)json_integer_value(r) : -1;
}

/* GPT-2's encoder.py loop: find the best-ranked pair, merge all of its occurrences left to
 * right, repeat. Quadratic, obviously right. Returns the number of ids written. */
static size_t naive_encode(const naive_bpe *nb, const char *word, size_t n, int32_t *ids, int chars)
{
    char **sym = malloc(n * sizeof *sym);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        sym[k] = calloc(3, 1);
        if (chars) /* ASCII characters are the symbols */
            sym[k++][0] = word[i];
        else
            byte_symbol((unsigned char)word[i], sym[k++]);
    }
    for (;;) {
        long best = -1;
        size_t at = 0;
        for (size_t i = 0; i + 1 < k; i++) {
            long r = naive_rank(nb, sym[i], sym[i + 1]);
            if (r >= 0 && (best < 0 || r < best))
                best = r, at = i;
        }
        if (best < 0)
            break;
        char a[1024], b[1024];
        snprintf(a, sizeof a, "%s", sym[at]);
        snprintf(b, sizeof b, "%s", sym[at + 1]);
        size_t o = 0;
        for (size_t i = 0; i < k;) {
            if (i + 1 < k && !strcmp(sym[i], a) && !strcmp(sym[i + 1], b)) {
                size_t la = strlen(a), lb = strlen(b);
                char *m = malloc(la + lb + 1);
                memcpy(m, a, la);
                memcpy(m + la, b, lb + 1);
                free(sym[i]);
                free(sym[i + 1]);
                sym[o++] = m;
                i += 2;
            } else {
                sym[o++] = sym[i++];
            }
        }
        k = o;
    }
    for (size_t i = 0; i < k; i++) {
        ids[i] = (int32_t)json_integer_value(json_object_get(nb->vocab, sym[i]));
        free(sym[i]);
    }
    free(sym);
    return k;
}

static int check_naive_with(const tok_tokenizer *t, const naive_bpe *nb, const char *word, size_t n, int chars)
{
    int32_t *want = malloc(n * sizeof *want);
    size_t k = naive_encode(nb, word, n, want, chars);
    tok_encoding e = {0};
    int ok = encode_n(t, word, n, NULL, 0, 0, 0, TOK_TRUNCATE_RIGHT, &e) == 0 && ids_equal(&e, want, k);
    if (!ok)
        fprintf(stderr, "  naive BPE differs on '%.*s' (%zu bytes): %zu vs %zu ids\n", (int)(n > 60 ? 60 : n), word, n,
                k, e.len);
    tok_encoding_free(&e);
    free(want);
    return ok;
}

static int check_naive(const naive_bpe *nb, const char *word, size_t n)
{
    return check_naive_with(gpt2, nb, word, n, 0);
}

/* Random merge lists over {a, b} (built bottom-up, so "monotonic" like trained ones) make
 * runs of equal symbols created at different times: the bucket path's hardest case. Long
 * character-level words go through the buckets; the naive loop is the reference. */
static void test_random_merges(void)
{
    uint64_t seed = 0xC0FFEE;
    char dir[] = "/tmp/ragd-randtok-XXXXXX";
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    size_t bad = 0;
    for (int trial = 0; trial < 40; trial++) {
        naive_bpe nb = {json_object(), json_object()};
        json_t *merges = json_array();
        const char *sym[64] = {"a", "b"};
        int used[64] = {0};
        size_t n_sym = 2;
        json_object_set_new(nb.vocab, "a", json_integer(0));
        json_object_set_new(nb.vocab, "b", json_integer(1));
        for (int k = 0; k < 200 && n_sym < 64; k++) {
            size_t ix = rng_next(&seed) % n_sym, iy = rng_next(&seed) % n_sym;
            const char *x = sym[ix], *y = sym[iy];
            char joined[256], key[256];
            snprintf(joined, sizeof joined, "%s%s", x, y);
            snprintf(key, sizeof key, "%s %s", x, y);
            json_t *have = json_object_get(nb.vocab, joined);
            /* A second merge making an existing string is fine while nothing uses that string
             * yet (the list stays monotonic): those strings exercise the bucket's run walk. */
            if (strlen(joined) > 40 || json_object_get(nb.ranks, key) ||
                (have && used[json_integer_value(have)]))
                continue;
            used[ix] = used[iy] = 1;
            json_object_set_new(nb.ranks, key, json_integer((json_int_t)json_array_size(merges)));
            json_array_append_new(merges, json_pack("[s,s]", x, y));
            if (have)
                continue;
            json_object_set_new(nb.vocab, joined, json_integer((json_int_t)n_sym));
            sym[n_sym++] = json_object_iter_key(json_object_iter_at(nb.vocab, joined));
        }
        json_t *root = json_pack("{s:{s:s,s:O,s:o}}", "model", "type", "BPE", "vocab", nb.vocab, "merges", merges);
        char *text = json_dumps(root, JSON_COMPACT);
        json_decref(root);
        CU_ASSERT_EQUAL(write_file(dir, "tokenizer.json", text, strlen(text)), 0);
        free(text);
        tok_tokenizer *t = load_dir(dir);
        CU_ASSERT_PTR_NOT_NULL(t);
        char word[6000];
        for (int w = 0; t && w < 8; w++) {
            size_t n = 4200 + rng_next(&seed) % 1500;
            unsigned bias = (unsigned)(rng_next(&seed) % 4);
            char pattern[8];
            size_t plen = 1 + rng_next(&seed) % 6, head = rng_next(&seed) % 4;
            for (size_t i = 0; i < plen; i++)
                pattern[i] = "ab"[rng_next(&seed) % 2];
            for (size_t i = 0; i < n; i++) /* random, or a short pattern repeated: long runs */
                word[i] = w % 2 ? (rng_next(&seed) % 8 < 4 + bias ? 'a' : 'b')
                                : i < head ? "ab"[rng_next(&seed) % 2] : pattern[(i - head) % plen];
            bad += !check_naive_with(t, &nb, word, n, 1);
            bad += !check_naive_with(t, &nb, word, 300, 1); /* the heap path, same lists */
        }
        tok_destroy(t);
        json_decref(nb.ranks);
        json_decref(nb.vocab);
    }
    CU_ASSERT_EQUAL(bad, 0);
    remove_dir(dir);
}

/* Short words take the heap path; words of >= 4096 bytes the bucket path (tok_bpe.c). */
static void test_naive_bpe(void)
{
    naive_bpe nb = {0};
    CU_ASSERT_EQUAL_FATAL(naive_load(&nb), 0);
    /* Every 7th pre-token-like piece of Moby-Dick: " word", "word", digits, punctuation runs. */
    size_t checked = 0, bad = 0;
    for (size_t i = 0; i < moby_len && checked < 6000;) {
        size_t j = i;
        unsigned char c = (unsigned char)moby[i];
        int alpha = (c | 0x20) >= 'a' && (c | 0x20) <= 'z', digit = c >= '0' && c <= '9';
        if (c == ' ' && i + 1 < moby_len)
            j++, c = (unsigned char)moby[j], alpha = (c | 0x20) >= 'a' && (c | 0x20) <= 'z', digit = c >= '0' && c <= '9';
        while (j < moby_len) {
            unsigned char d = (unsigned char)moby[j];
            int da = (d | 0x20) >= 'a' && (d | 0x20) <= 'z', dd = d >= '0' && d <= '9';
            int other = !da && !dd && d != ' ' && d != '\n' && d != '\r' && d != '\t' && d < 0x80;
            if (!(alpha ? da : digit ? dd : other))
                break;
            j++;
        }
        if (j > i && (checked++ % 7) == 0)
            bad += !check_naive(&nb, moby + i, j - i);
        i = j > i ? j : i + 1;
    }
    CU_ASSERT(checked > 3000);
    CU_ASSERT_EQUAL(bad, 0);
    /* Long words: Moby-Dick's letters without spaces, and runs of one letter (A == B pairs). */
    char *letters = malloc(moby_len);
    size_t nl = 0;
    for (size_t i = 0; i < moby_len; i++)
        if (((unsigned char)moby[i] | 0x20) >= 'a' && ((unsigned char)moby[i] | 0x20) <= 'z')
            letters[nl++] = moby[i];
    for (size_t off = 0; off + 5000 <= nl && off < 40000; off += 9973)
        CU_ASSERT(check_naive(&nb, letters + off, 5000));
    memset(letters, 'a', 4999);
    CU_ASSERT(check_naive(&nb, letters, 4999));
    CU_ASSERT(check_naive(&nb, letters, 17));
    for (size_t i = 0; i < 4100; i++)
        letters[i] = "aab"[i % 3];
    CU_ASSERT(check_naive(&nb, letters, 4100));
    free(letters);
    json_decref(nb.ranks);
    json_decref(nb.vocab);
}

/* ---------------------------------------------------------------- scale, threads, paths */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void test_huge_word(void)
{
    size_t n = 10u << 20;
    char *s = malloc(n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    uint64_t seed = 12345;
    for (size_t i = 0; i < n; i++)
        s[i] = (char)('a' + rng_next(&seed) % 26);
    tok_encoding e = {0};
    double t0 = now();
    CU_ASSERT_EQUAL(encode_n(gpt2, s, n, NULL, 0, 1, 0, TOK_TRUNCATE_RIGHT, &e), 0);
    double secs = now() - t0;
    fprintf(stderr, "  10 MB word: %zu tokens in %.2f s\n", e.len, secs);
    CU_ASSERT(e.len > 0 && e.len < n && e.stop[e.len - 1] == n);
    CU_ASSERT(secs < 60.0); /* ~3 s here; quadratic would be hours */
    /* decoding gives the word back */
    char *out = NULL;
    size_t len = 0;
    tok_error err;
    CU_ASSERT(tok_decode(gpt2, e.ids, e.len, TOK_DECODE_KEEP_SPACES, &out, &len, &err) == 0 && len == n &&
              memcmp(out, s, n) == 0);
    free(out);
    /* and a long run of one byte, the bucket path's overlapping case */
    memset(s, 'z', 1u << 20);
    CU_ASSERT_EQUAL(encode_n(gpt2, s, 1u << 20, NULL, 0, 1, 0, TOK_TRUNCATE_RIGHT, &e), 0);
    CU_ASSERT(e.len > 0 && e.len <= (1u << 19));
    tok_encoding_free(&e);
    free(s);
}

/* Paragraphs of Moby-Dick through both GPT-2 loaders (tokenizer.json and vocab.json +
 * merges.txt) and both BERT loaders must agree token for token, offsets included. */
static void test_loaders_agree(void)
{
    size_t paragraphs = 0, mismatches = 0;
    for (const char *p = moby, *end; p < moby + moby_len && paragraphs < 1500; p = end) {
        end = strstr(p, "\n\n");
        end = end ? end + 2 : moby + moby_len;
        tok_encoding x = {0}, y = {0};
        encode_n(gpt2, p, (size_t)(end - p), NULL, 0, 1, 0, TOK_TRUNCATE_RIGHT, &x);
        encode_n(gpt2_files, p, (size_t)(end - p), NULL, 0, 1, 0, TOK_TRUNCATE_RIGHT, &y);
        mismatches += !same_encoding(&x, &y);
        encode_n(bert, p, (size_t)(end - p), NULL, 0, 1, 0, TOK_TRUNCATE_RIGHT, &x);
        encode_n(bert_txt, p, (size_t)(end - p), NULL, 0, 1, 0, TOK_TRUNCATE_RIGHT, &y);
        mismatches += !same_encoding(&x, &y);
        tok_encoding_free(&x);
        tok_encoding_free(&y);
        paragraphs++;
    }
    CU_ASSERT(paragraphs > 1000);
    CU_ASSERT_EQUAL(mismatches, 0);
}

/* The tokenizer is shared read-only; only the BPE word cache is written, under its locks.
 * Two threads encode the same paragraphs and must get what one thread got. */
typedef struct {
    const tok_tokenizer *t;
    size_t mismatches;
} thread_arg;

static void *encode_all(void *p)
{
    thread_arg *a = p;
    for (int round = 0; round < 2; round++) {
        size_t i = 0;
        for (const char *s = moby, *end; s < moby + moby_len && i < 400; s = end, i++) {
            end = strstr(s, "\n\n");
            end = end ? end + 2 : moby + moby_len;
            tok_encoding x = {0}, y = {0};
            tok_options o = {1, 0, TOK_TRUNCATE_RIGHT};
            tok_error err;
            tok_encode(a->t, s, (size_t)(end - s), NULL, 0, &o, &x, &err);
            tok_encode(a->t, s, (size_t)(end - s), NULL, 0, &o, &y, &err); /* second one hits the cache */
            a->mismatches += !same_encoding(&x, &y) || x.len == 0;
            tok_encoding_free(&x);
            tok_encoding_free(&y);
        }
    }
    return NULL;
}

static void test_threads(void)
{
    thread_arg args[4] = {{gpt2, 0}, {gpt2, 0}, {bert, 0}, {gpt2_files, 0}};
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, encode_all, &args[i]), 0);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CU_ASSERT_EQUAL(args[i].mismatches, 0);
    }
}

/* ---------------------------------------------------------------- malformed files */

static void test_malformed_dirs(void)
{
    static const struct {
        const char *file, *text, *file2, *text2;
        int code;
        const char *msg;
    } cases[] = {
        {"tokenizer.json", "{", NULL, NULL, TOK_EFORMAT, "invalid JSON"},
        {"tokenizer.json", "", NULL, NULL, TOK_EFORMAT, "invalid JSON"},
        {"tokenizer.json", "[]", NULL, NULL, TOK_EFORMAT, "needs a model"},
        {"tokenizer.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":[]}}", NULL, NULL, TOK_EFORMAT, "needs a model"},
        {"tokenizer.json", "{\"model\":{\"type\":\"Unigram\",\"vocab\":{}}}", NULL, NULL, TOK_EFORMAT, "not supported"},
        {"tokenizer.json", "{\"model\":{\"type\":7,\"vocab\":{}}}", NULL, NULL, TOK_EFORMAT, "needs a model"},
        {"tokenizer.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{}}}", NULL, NULL, TOK_EFORMAT, "empty"},
        {"tokenizer.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1}}}", NULL, NULL, TOK_EFORMAT, "not an integer in range"},
        {"tokenizer.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":\"0\"}}}", NULL, NULL, TOK_EFORMAT, "not an integer in range"},
        {"tokenizer.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1.5}}}", NULL, NULL, TOK_EFORMAT, "not an integer in range"},
        {"tokenizer.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":99999999999}}}", NULL, NULL, TOK_EFORMAT, "not an integer in range"},
        {"tokenizer.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0}}}", NULL, NULL, TOK_EFORMAT, "two tokens"},
        {"tokenizer.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"a\":1}}}", NULL, NULL, TOK_EFORMAT, "invalid JSON"},
        {"tokenizer.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a c\"]}}", NULL, NULL, TOK_EFORMAT, "not in the vocabulary"},
        {"tokenizer.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]}}", NULL, NULL, TOK_EFORMAT, "'ab' is not in the vocabulary"},
        {"tokenizer.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[7]}}", NULL, NULL, TOK_EFORMAT, "neither"},
        {"tokenizer.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":{}}}", NULL, NULL, TOK_EFORMAT, "merges must be a list"},
        {"tokenizer.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"ab\"]}}", NULL, NULL, TOK_EFORMAT, "no space"},
        {"tokenizer.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"added_tokens\":{}}", NULL, NULL, TOK_EFORMAT, "added_tokens is not a list"},
        {"tokenizer.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"added_tokens\":[{\"id\":-4,\"content\":\"x\"}]}", NULL, NULL, TOK_EFORMAT, "no valid id"},
        {"tokenizer.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"added_tokens\":[{\"id\":1}]}", NULL, NULL, TOK_EFORMAT, "no valid id and content"},
        {"tokenizer.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"pre_tokenizer\":{\"type\":\"Whitespace\"}}", NULL, NULL, TOK_EFORMAT, "not supported"},
        {"tokenizer.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}", NULL, NULL, TOK_EFORMAT, "byte symbol"},
        {"tokenizer.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"post_processor\":{\"type\":\"RobertaProcessing\"}}", NULL, NULL, TOK_EFORMAT, "not supported"},
        {"tokenizer.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"byte_fallback\":true}}", NULL, NULL, TOK_EFORMAT, "not supported"},
        {"tokenizer.json", "{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":0}},\"normalizer\":null}", NULL, NULL, TOK_EFORMAT, "BertNormalizer"},
        {"tokenizer.json", "{\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"[UNK]\",\"vocab\":{\"a\":0}},\"normalizer\":{\"type\":\"BertNormalizer\"},\"pre_tokenizer\":{\"type\":\"BertPreTokenizer\"}}", NULL, NULL, TOK_EFORMAT, "unk_token"},
        {"tokenizer.json", "{\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"a\",\"vocab\":{\"a\":0}},\"normalizer\":{\"type\":\"BertNormalizer\"},\"pre_tokenizer\":{\"type\":\"BertPreTokenizer\"},\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"[CLS]\",\"type_id\":0}}],\"pair\":[],\"special_tokens\":{}}}", NULL, NULL, TOK_EFORMAT, "has no ids"},
        {"tokenizer.json", "{\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"a\",\"vocab\":{\"a\":0}},\"normalizer\":{\"type\":\"BertNormalizer\"},\"pre_tokenizer\":{\"type\":\"BertPreTokenizer\"},\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"Sequence\":{\"id\":\"C\",\"type_id\":0}}],\"pair\":[],\"special_tokens\":{}}}", NULL, NULL, TOK_EFORMAT, "neither A nor B"},
        {"tokenizer.json", "{\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"a\",\"vocab\":{\"a\":0},\"max_input_chars_per_word\":-3},\"normalizer\":{\"type\":\"BertNormalizer\"},\"pre_tokenizer\":{\"type\":\"BertPreTokenizer\"}}", NULL, NULL, TOK_EFORMAT, "positive"},
        {"vocab.txt", "a\nb\n", NULL, NULL, TOK_EFORMAT, "[UNK]"},
        {"vocab.txt", "[UNK]\nb\n", NULL, NULL, TOK_EFORMAT, "[CLS]"},
        {"vocab.txt", "[UNK]\n[CLS]\n[SEP]\n", "tokenizer_config.json", "{\"do_lower_case\":", TOK_EFORMAT, "tokenizer_config.json: invalid JSON"},
        {"vocab.txt", "[UNK]\n[CLS]\n[SEP]\n", "tokenizer_config.json", "[1]", TOK_EFORMAT, "not a JSON object"},
        {"vocab.json", "{}", NULL, NULL, TOK_EIO, "no tokenizer.json"},
        {"vocab.json", "[1,2]", "merges.txt", "#version: 0.2\n", TOK_EFORMAT, "not a JSON object"},
        {"vocab.json", "{\"a\":0,\"b\":1,\"ab\":2}", "merges.txt", "#version: 0.2\na b\n", TOK_EFORMAT, "byte symbol"},
        /* NULL text: the real GPT-2 vocab.json */
        {"vocab.json", NULL, "merges.txt", "#version: 0.2\n\xc4\xa0 t\nab\n", TOK_EFORMAT, "merges.txt: merge line 2"},
        {"vocab.json", NULL, "merges.txt", "#version: 0.2\nzq qz\n", TOK_EFORMAT, "merges.txt: merge 1"},
        {"vocab.json", "{\"a\":\"x\"}", "merges.txt", "", TOK_EFORMAT, "not an integer"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char dir[] = "/tmp/ragd-badtok-XXXXXX";
        CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
        if (cases[i].text) {
            CU_ASSERT_EQUAL(write_file(dir, cases[i].file, cases[i].text, strlen(cases[i].text)), 0);
        } else {
            copy_file(cu_testdata("tokenizers/gpt2"), cases[i].file, dir);
        }
        if (cases[i].file2) {
            CU_ASSERT_EQUAL(write_file(dir, cases[i].file2, cases[i].text2, strlen(cases[i].text2)), 0);
        }
        tok_tokenizer *t = (tok_tokenizer *)1;
        tok_error err = {0};
        int rc = tok_load_dir(dir, &t, &err);
        int ok = rc == cases[i].code && t == NULL && strstr(err.msg, cases[i].msg) && strstr(err.msg, "/tmp/ragd-badtok");
        if (!ok)
            fprintf(stderr, "  malformed case %zu: rc %d '%s'\n", i, rc, err.msg);
        CU_ASSERT(ok);
        remove_dir(dir);
    }
    tok_tokenizer *t;
    tok_error err;
    CU_ASSERT_EQUAL(tok_load_dir("/nonexistent/dir", &t, &err), TOK_EIO);
    CU_ASSERT_PTR_NULL(t);
    tok_destroy(NULL);
    tok_encoding e = {0};
    tok_encoding_free(&e);
}

/* A well-formed but unusual tokenizer.json: char-level BPE with merges that are not
 * "monotonic" (ab is made after it is used), unk_token set, a BertProcessing post-processor. */
static void test_small_tokenizers(void)
{
    char dir[] = "/tmp/ragd-smalltok-XXXXXX";
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    const char *json = "{\"model\":{\"type\":\"BPE\",\"unk_token\":\"?\",\"vocab\":{\"?\":0,\"a\":1,\"b\":2,\"c\":3,"
                       "\"ab\":4,\"abc\":5,\"[C]\":6,\"[S]\":7},\"merges\":[\"ab c\",\"a b\"]},"
                       "\"added_tokens\":[{\"id\":6,\"content\":\"[C]\",\"special\":true},"
                       "{\"id\":7,\"content\":\"[S]\",\"special\":true}],"
                       "\"post_processor\":{\"type\":\"BertProcessing\",\"cls\":[\"[C]\",6],\"sep\":[\"[S]\",7]}}";
    CU_ASSERT_EQUAL(write_file(dir, "tokenizer.json", json, strlen(json)), 0);
    tok_tokenizer *t = load_dir(dir);
    remove_dir(dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    tok_encoding e = {0};
    encode(t, "abcxab", "c", 1, 0, TOK_TRUNCATE_RIGHT, &e);
    /* a b -> ab (the only pair with a merge), then ab c (rank 0) -> abc; x is unk */
    const int32_t want[] = {6, 5, 0, 4, 7, 3, 7};
    CU_ASSERT(ids_equal(&e, want, 7));
    CU_ASSERT(e.type_ids[5] == 1 && e.type_ids[6] == 1 && e.type_ids[4] == 0);
    CU_ASSERT(e.start[2] == 3 && e.stop[2] == 4 && e.start[3] == 4 && e.stop[3] == 6);
    size_t n = 6000;
    char *s = malloc(n);
    for (size_t i = 0; i < n; i++)
        s[i] = "abc"[i % 3];
    encode_n(t, s, n, NULL, 0, 0, 0, TOK_TRUNCATE_RIGHT, &e);
    int all_abc = e.len == 2000;
    for (size_t i = 0; all_abc && i < e.len; i++)
        all_abc = e.ids[i] == 5;
    CU_ASSERT(all_abc); /* a long word on the heap path (merges not monotonic) */
    free(s);
    tok_encoding_free(&e);
    tok_destroy(t);
}

void cu_register(void)
{
    if (!cu_testdata("tokenizers/gpt2") || !cu_testdata("tokenizers/bert-base-uncased") ||
        !cu_testdata("checkpoints/gpt2-names-makemore") || !cu_testdata("text/moby_dick.txt")) {
        cu_skip_all("../shared/testdata not found");
        return;
    }
    CU_pSuite s = CU_add_suite("tokenizer", setup, teardown);
    CU_add_test(s, "GPT-2 test vectors", test_gpt2_vectors);
    CU_add_test(s, "BERT test vectors", test_bert_vectors);
    CU_add_test(s, "GPT-2 pairs", test_gpt2_pair);
    CU_add_test(s, "byte offsets", test_offsets);
    CU_add_test(s, "byte-level round trips", test_round_trip);
    CU_add_test(s, "decoding", test_decode);
    CU_add_test(s, "truncation", test_truncation);
    CU_add_test(s, "invalid UTF-8", test_invalid_utf8);
    CU_add_test(s, "character-level names tokenizer", test_names_tokenizer);
    CU_add_test(s, "naive reference BPE on real words", test_naive_bpe);
    CU_add_test(s, "naive reference BPE on random merge lists", test_random_merges);
    CU_add_test(s, "a 10 MB word", test_huge_word);
    CU_add_test(s, "tokenizer.json and vocab files agree", test_loaders_agree);
    CU_add_test(s, "concurrent encoding", test_threads);
    CU_add_test(s, "malformed tokenizer files", test_malformed_dirs);
    CU_add_test(s, "small and unusual tokenizer.json", test_small_tokenizers);
}
