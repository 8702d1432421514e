/* test_tokenizer.c — GPT-2 BPE and BERT WordPiece on the real vocabulary files: the published
 * test vectors (FORMATS.md §8), offsets, pairs, truncation, decoding and round trips, bad input
 * and the character-level makemore tokenizer. (test_tokenizer_bpe.c checks BPE against a naive
 * reference; test_tokenizer_files.c the loaders, malformed files and threads.) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok_fixture.h"

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


void cu_register(void)
{
    if (!tok_fixture_available()) {
        cu_skip_all("../shared/testdata not found");
        return;
    }
    CU_pSuite s = CU_add_suite("tokenizer", tok_fixture_setup, tok_fixture_teardown);
    CU_add_test(s, "GPT-2 test vectors", test_gpt2_vectors);
    CU_add_test(s, "BERT test vectors", test_bert_vectors);
    CU_add_test(s, "GPT-2 pairs", test_gpt2_pair);
    CU_add_test(s, "byte offsets", test_offsets);
    CU_add_test(s, "byte-level round trips", test_round_trip);
    CU_add_test(s, "decoding", test_decode);
    CU_add_test(s, "truncation", test_truncation);
    CU_add_test(s, "invalid UTF-8", test_invalid_utf8);
    CU_add_test(s, "character-level names tokenizer", test_names_tokenizer);
}
