/* tok_fixture.c — see tok_fixture.h. */
#include "tok_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

tok_tokenizer *gpt2, *gpt2_files, *bert, *bert_txt, *names;
char *moby;
size_t moby_len;

tok_tokenizer *load_dir(const char *dir)
{
    tok_tokenizer *t = NULL;
    tok_error err;
    if (dir && tok_load_dir(dir, &t, &err) != 0)
        fprintf(stderr, "%s: %s\n", dir, err.msg);
    return t;
}

tok_tokenizer *load(const char *rel) { return load_dir(cu_testdata(rel)); }

char *read_all(const char *path, size_t *len)
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
int write_file(const char *dir, const char *name, const char *text, size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int rc = fwrite(text, 1, len, f) == len ? 0 : -1;
    return fclose(f) == 0 ? rc : -1;
}

void copy_file(const char *from_dir, const char *name, const char *to_dir)
{
    char path[4096];
    size_t len;
    snprintf(path, sizeof path, "%s/%s", from_dir, name);
    char *s = read_all(path, &len);
    if (s && write_file(to_dir, name, s, len) != 0)
        fprintf(stderr, "could not copy %s\n", name);
    free(s);
}

void remove_dir(const char *dir)
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
tok_tokenizer *load_subset(const char *rel, const char *const *files, size_t n)
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

int tok_fixture_setup(void)
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

int tok_fixture_teardown(void)
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

int encode_n(const tok_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen, int special, size_t max,
             tok_direction dir, tok_encoding *e)
{
    tok_options o = {special, max, dir};
    tok_error err;
    int rc = tok_encode(t, a, alen, b, blen, &o, e, &err);
    if (rc)
        fprintf(stderr, "encode: %s\n", err.msg);
    return rc;
}

int encode(const tok_tokenizer *t, const char *a, const char *b, int special, size_t max, tok_direction dir,
           tok_encoding *e)
{
    return encode_n(t, a, strlen(a), b, b ? strlen(b) : 0, special, max, dir, e);
}

int ids_equal(const tok_encoding *e, const int32_t *want, size_t n)
{
    if (e->len != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (e->ids[i] != want[i])
            return 0;
    return 1;
}

int same_encoding(const tok_encoding *x, const tok_encoding *y)
{
    if (x->len != y->len)
        return 0;
    for (size_t i = 0; i < x->len; i++)
        if (x->ids[i] != y->ids[i] || x->start[i] != y->start[i] || x->stop[i] != y->stop[i] ||
            x->type_ids[i] != y->type_ids[i])
            return 0;
    return 1;
}

void show(const char *what, const tok_encoding *e)
{
    fprintf(stderr, "  %s ->", what);
    for (size_t i = 0; i < e->len; i++)
        fprintf(stderr, " %d(%u,%u)", e->ids[i], e->start[i], e->stop[i]);
    fprintf(stderr, "\n");
}

/* Decodes and compares with `want` (NUL-terminated). */
int decodes_to(const tok_tokenizer *t, const int32_t *ids, size_t n, unsigned flags, const char *want)
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

uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

int tok_fixture_available(void)
{
    return cu_testdata("tokenizers/gpt2") && cu_testdata("tokenizers/bert-base-uncased") &&
           cu_testdata("checkpoints/gpt2-names-makemore") && cu_testdata("text/moby_dick.txt");
}
