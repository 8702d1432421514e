/* test_tokenizer_bpe.c — the fast GPT-2 BPE against a naive reference (the classic "merge every
 * occurrence of the best pair" loop) on real words and on random merge lists, and a 10 MB word
 * that a quadratic merge loop could not finish. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tok_fixture.h"

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
    /* Linear in the word's length: ten times the bytes take about ten times as long (a
     * ratio, so a loaded machine or a sanitizer slows both sides alike); quadratic would be
     * a hundred times. */
    double t0 = now();
    CU_ASSERT_EQUAL(encode_n(gpt2, s, n / 10, NULL, 0, 1, 0, TOK_TRUNCATE_RIGHT, &e), 0);
    double t1 = now();
    CU_ASSERT_EQUAL(encode_n(gpt2, s, n, NULL, 0, 1, 0, TOK_TRUNCATE_RIGHT, &e), 0);
    double secs = now() - t1, ratio = secs / (t1 - t0);
    fprintf(stderr, "  10 MB word: %zu tokens in %.2f s, %.1f times 1 MB's\n", e.len, secs, ratio);
    CU_ASSERT(e.len > 0 && e.len < n && e.stop[e.len - 1] == n);
    CU_ASSERT(ratio < 30.0);
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

void cu_register(void)
{
    if (!tok_fixture_available()) {
        cu_skip_all("../shared/testdata not found");
        return;
    }
    CU_pSuite s = CU_add_suite("tokenizer BPE", tok_fixture_setup, tok_fixture_teardown);
    CU_add_test(s, "naive reference BPE on real words", test_naive_bpe);
    CU_add_test(s, "naive reference BPE on random merge lists", test_random_merges);
    CU_add_test(s, "a 10 MB word", test_huge_word);
}
