/* test_tokenizer_files.c — the ways a tokenizer is loaded: tokenizer.json and the older vocab
 * files agree on real text, malformed and unusual files are refused or read as Hugging Face
 * reads them, and one loaded tokenizer serves many threads at once. */
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tok_fixture.h"

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
    if (!tok_fixture_available()) {
        cu_skip_all("../shared/testdata not found");
        return;
    }
    CU_pSuite s = CU_add_suite("tokenizer files", tok_fixture_setup, tok_fixture_teardown);
    CU_add_test(s, "tokenizer.json and vocab files agree", test_loaders_agree);
    CU_add_test(s, "concurrent encoding", test_threads);
    CU_add_test(s, "malformed tokenizer files", test_malformed_dirs);
    CU_add_test(s, "small and unusual tokenizer.json", test_small_tokenizers);
}
