/* tokenizer_bench.c — single-thread tok_encode throughput (MB/s of UTF-8 input) for GPT-2 BPE
 * and BERT WordPiece on real English text, beside peers measured in the same run on the same
 * texts cut the same way:
 *   moby_dick  ../shared/testdata/text/moby_dick.txt, paragraph by paragraph (cut after every
 *              "\n\n"; the blank line stays with the paragraph before it)
 *   sotu       ../shared/testdata/text/sotu.jsonl, one whole speech (the "text" field) per call
 * No special tokens are added, no truncation. Each figure is the median of RUNS runs. The peers
 * (@huggingface/tokenizers in JS, js-tiktoken, and Hugging Face's Rust library through napi) run
 * in bench/tokenizer_peer.mjs after ragd's runs; their token counts are printed beside ours.
 * Prints one JSON document with ratios ours/peer (> 1: ragd is faster).
 *
 *   usage: tokenizer_bench [SHARED_DIR] [--no-peer]
 *          (SHARED_DIR defaults to $RAGD_SHARED, then ../shared; the peers need
 *           npm ci --prefix tests/parity) */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "tokenizer.h"

#ifndef TOKENIZER_PEER_SCRIPT
#define TOKENIZER_PEER_SCRIPT "bench/tokenizer_peer.mjs"
#endif

typedef struct {
    const char *name;  /* "moby_dick" or "sotu" */
    char **texts;      /* views into one buffer per corpus, NUL-terminated */
    size_t *lens;
    size_t n, bytes;
    char *storage;
} corpus;

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)n + 1)) && fread(buf, 1, (size_t)n, f) == (size_t)n) {
        buf[n] = '\0';
        *len = (size_t)n;
    } else {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

static int corpus_push(corpus *c, char *text, size_t len)
{
    if ((c->n & (c->n + 1)) == 0 || c->n == 0) { /* grow at 0, 1, 3, 7, ... */
        size_t cap = (c->n + 1) * 2;
        char **t = realloc(c->texts, cap * sizeof *t);
        if (!t)
            return -1;
        c->texts = t;
        size_t *l = realloc(c->lens, cap * sizeof *l);
        if (!l)
            return -1;
        c->lens = l;
    }
    c->texts[c->n] = text;
    c->lens[c->n++] = len;
    c->bytes += len;
    return 0;
}

/* moby_dick.txt cut after every "\n\n" (the same cut as the peer's split(/(?<=\n\n)/)). */
static int load_moby(const char *shared, corpus *c)
{
    char path[4096];
    size_t len;
    snprintf(path, sizeof path, "%s/testdata/text/moby_dick.txt", shared);
    if (!(c->storage = read_file(path, &len)))
        return -1;
    for (char *p = c->storage, *end; p < c->storage + len; p = end) {
        end = strstr(p, "\n\n");
        end = end ? end + 2 : c->storage + len;
        if (corpus_push(c, p, (size_t)(end - p)) != 0)
            return -1;
    }
    return 0;
}

/* The "text" of every sotu.jsonl line, copied into one buffer. */
static int load_sotu(const char *shared, corpus *c)
{
    char path[4096];
    size_t len;
    snprintf(path, sizeof path, "%s/testdata/text/sotu.jsonl", shared);
    char *raw = read_file(path, &len);
    if (!raw || !(c->storage = malloc(len + 1))) {
        free(raw);
        return -1;
    }
    size_t used = 0, nlines = 0;
    for (char *line = raw, *nl; line < raw + len; line = nl + 1) {
        nl = memchr(line, '\n', (size_t)(raw + len - line));
        if (!nl)
            nl = raw + len;
        json_t *row = json_loadb(line, (size_t)(nl - line), 0, NULL);
        json_t *text = json_object_get(row, "text");
        if (json_is_string(text)) {
            size_t n = json_string_length(text);
            memcpy(c->storage + used, json_string_value(text), n);
            c->storage[used + n] = '\0';
            nlines++;
            used += n + 1;
        }
        json_decref(row);
    }
    free(raw);
    for (size_t i = 0, off = 0; i < nlines; i++) {
        size_t n = strlen(c->storage + off); /* speeches hold no U+0000 */
        if (corpus_push(c, c->storage + off, n) != 0)
            return -1;
        off += n + 1;
    }
    return nlines ? 0 : -1;
}

static void corpus_free(corpus *c)
{
    free(c->texts);
    free(c->lens);
    free(c->storage);
}

/* Encodes every text RUNS times; returns the median seconds and the token count. */
static double time_encode(const tok_tokenizer *tok, const corpus *c, size_t *tokens)
{
    tok_options o = {.add_special_tokens = 0};
    tok_encoding e = {0};
    tok_error err;
    double runs[RUNS];
    for (int r = 0; r < RUNS; r++) {
        size_t n = 0;
        double t0 = now();
        for (size_t i = 0; i < c->n; i++) {
            if (tok_encode(tok, c->texts[i], c->lens[i], NULL, 0, &o, &e, &err) != 0) {
                fprintf(stderr, "tokenizer_bench: %s text %zu: %s\n", c->name, i, err.msg);
                exit(1);
            }
            n += e.len;
        }
        runs[r] = now() - t0;
        *tokens = n;
    }
    tok_encoding_free(&e);
    return median(runs, RUNS);
}

/* Runs the peer script and returns its lines as a JSON array (empty when it cannot run). */
static json_t *run_peers(const char *shared)
{
    json_t *rows = json_array();
    char cmd[8192];
    if (snprintf(cmd, sizeof cmd, "node '%s' '%s' %d", TOKENIZER_PEER_SCRIPT, shared, RUNS) >= (int)sizeof cmd ||
        strchr(shared, '\''))
        return rows;
    FILE *p = popen(cmd, "r");
    if (!p)
        return rows;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, p) > 0) {
        json_t *row = json_loads(line, 0, NULL);
        if (json_is_object(row))
            json_array_append_new(rows, row);
        else
            json_decref(row);
    }
    free(line);
    if (pclose(p) != 0)
        fprintf(stderr, "tokenizer_bench: the peer script failed (npm ci --prefix tests/parity?)\n");
    return rows;
}

int main(int argc, char **argv)
{
    const char *shared = getenv("RAGD_SHARED") ? getenv("RAGD_SHARED") : "../shared";
    int peers = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--no-peer") == 0)
            peers = 0;
        else
            shared = argv[i];
    }
    corpus corpora[2] = {{.name = "moby_dick"}, {.name = "sotu"}};
    if (load_moby(shared, &corpora[0]) != 0 || load_sotu(shared, &corpora[1]) != 0) {
        fprintf(stderr, "tokenizer_bench: cannot read %s/testdata/text/{moby_dick.txt,sotu.jsonl}\n", shared);
        return 1;
    }
    static const char *const names[] = {"gpt2", "bert-base-uncased"};
    json_t *results = json_array();
    for (int k = 0; k < 2; k++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/testdata/tokenizers/%s", shared, names[k]);
        tok_tokenizer *tok;
        tok_error err;
        if (tok_load_dir(dir, &tok, &err) != 0) {
            fprintf(stderr, "tokenizer_bench: %s\n", err.msg);
            return 1;
        }
        for (int c = 0; c < 2; c++) {
            size_t tokens = 0;
            double secs = time_encode(tok, &corpora[c], &tokens);
            json_array_append_new(results,
                json_pack("{s:s, s:s, s:I, s:I, s:I, s:f, s:f, s:o}", "tokenizer", names[k], "corpus",
                          corpora[c].name, "texts", (json_int_t)corpora[c].n, "bytes",
                          (json_int_t)corpora[c].bytes, "tokens", (json_int_t)tokens, "seconds", secs,
                          "ragd_mb_per_s", (double)corpora[c].bytes / secs / 1e6, "peers", json_object()));
        }
        tok_destroy(tok);
    }
    json_t *peer_rows = peers ? run_peers(shared) : json_array();
    size_t i;
    json_t *row;
    json_array_foreach(peer_rows, i, row) {
        size_t j;
        json_t *r;
        json_array_foreach(results, j, r) {
            if (!json_equal(json_object_get(r, "tokenizer"), json_object_get(row, "tokenizer")) ||
                !json_equal(json_object_get(r, "corpus"), json_object_get(row, "corpus")))
                continue;
            double mbps = json_real_value(json_object_get(row, "mb_per_s"));
            double ours = json_real_value(json_object_get(r, "ragd_mb_per_s"));
            json_object_set_new(json_object_get(r, "peers"), json_string_value(json_object_get(row, "peer")),
                json_pack("{s:f, s:O, s:f}", "mb_per_s", mbps, "tokens", json_object_get(row, "tokens"),
                          "ratio", mbps > 0 ? ours / mbps : 0.0));
        }
    }
    json_t *doc = json_pack("{s:s, s:i, s:i, s:{s:s, s:s}, s:s, s:o}", "bench", "tokenizer", "threads", 1,
        "runs", RUNS, "units", "moby_dick", "paragraph by paragraph (cut after each blank line)", "sotu",
        "one whole speech per call", "ratio", "ragd MB/s / peer MB/s", "results", results);
    json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', stdout);
    json_decref(doc);
    json_decref(peer_rows);
    corpus_free(&corpora[0]);
    corpus_free(&corpora[1]);
    return 0;
}
