/*
 * encoder_parity.c — the BERT bi-encoder and cross-encoder against the PyTorch oracle
 * (tests/reference/bert_oracle.py) on the same small random checkpoints
 * (tests/reference/make_bert_checkpoints.py, real bert-base-uncased vocabulary).
 *
 * For every checkpoint variant it tokenizes a set of texts (mixed lengths, accents, CJK,
 * pairs, truncation on both sides), runs ragd's encoder, sends the same token ids to the
 * oracle, and requires every embedding value, logit and score (after the activation the
 * checkpoint's config names) within 1e-5. Exits 1 on any
 * mismatch, 77 when ../shared/testdata or PyTorch is missing.
 *
 * usage: encoder_parity CHECKPOINTS_DIR ORACLE_PY
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoder.h"
#include "kernels.h"

#define TOL 1e-5 /* measured ~2e-6; a wrong GELU moves normalized embeddings by ~5e-5 */

static const char *const texts[] = {
    "Hello, my dog is cute",
    "The quick brown fox jumps over the lazy dog. It barked!",
    "Héllo naïve café 北京",
    "a",
    "   leading and trailing spaces   ",
    "Berlin had a population of 3,520,031 registered inhabitants in an area of 891.82 square kilometers. "
    "It is the capital and largest city of Germany by both area and population, and its "
    "metropolitan area is one of the most populous in the European Union.",
};
#define N_TEXTS (sizeof texts / sizeof texts[0])

static int failures;

/* Writes one oracle request for the encoded batch (right-padded). */
static void write_request(FILE *f, const char *dir, const char *kind, const tok_encoding *e, size_t n)
{
    size_t T = 0;
    for (size_t i = 0; i < n; i++)
        T = e[i].len > T ? e[i].len : T;
    json_t *ids = json_array(), *types = json_array(), *mask = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *a = json_array(), *b = json_array(), *c = json_array();
        for (size_t t = 0; t < T; t++) {
            int real = t < e[i].len;
            json_array_append_new(a, json_integer(real ? e[i].ids[t] : 0));
            json_array_append_new(b, json_integer(real ? e[i].type_ids[t] : 0));
            json_array_append_new(c, json_integer(real));
        }
        json_array_append_new(ids, a);
        json_array_append_new(types, b);
        json_array_append_new(mask, c);
    }
    json_t *req = json_pack("{s:s, s:s, s:o, s:o, s:o}", "dir", dir, "kind", kind, "ids", ids, "type_ids", types,
                            "mask", mask);
    json_dumpf(req, f, JSON_COMPACT);
    fputc('\n', f);
    json_decref(req);
}

typedef struct {
    char dir[512];
    const char *kind;  /* "embed" or "rerank" */
    size_t n, width;
    float *ours;
    int sigmoid;       /* the cross-encoder's default activation, as ragd read it */
    char label[128];
} check;

static check checks[96];
static size_t n_checks;

static void run_variant(const char *root, const char *name, int cross, FILE *req, int truncate,
                        tok_direction dir)
{
    check *c = &checks[n_checks++];
    snprintf(c->dir, sizeof c->dir, "%s/%s", root, name);
    snprintf(c->label, sizeof c->label, "%s%s%s", name, truncate ? " truncated " : "",
             truncate ? (dir == TOK_TRUNCATE_LEFT ? "left" : "right") : "");
    c->kind = cross ? "rerank" : "embed";
    tok_tokenizer *tok;
    tok_error te;
    enc_model *m;
    mdl_error me;
    if (tok_load_dir(c->dir, &tok, &te) != 0 || enc_load(c->dir, cross, tok, &m, &me) != 0) {
        fprintf(stderr, "FAIL %s: cannot load: %s\n", c->label, te.msg[0] ? te.msg : me.msg);
        failures++;
        c->n = 0;
        return;
    }
    c->n = cross ? N_TEXTS - 1 : N_TEXTS;
    c->width = cross ? 1 : enc_dim(m);
    tok_encoding *e = calloc(c->n, sizeof *e);
    c->ours = malloc(c->n * c->width * sizeof(float));
    for (size_t i = 0; i < c->n; i++) {
        const char *a = cross ? "How many people live in Berlin?" : texts[i];
        const char *b = cross ? texts[i + 1] : NULL;
        int rc = enc_tokenize(m, a, strlen(a), b, b ? strlen(b) : 0, truncate, dir, &e[i], &te);
        if (rc != 0 && !(rc == TOK_ELIMIT && !truncate)) {
            fprintf(stderr, "FAIL %s: tokenize: %s\n", c->label, te.msg);
            failures++;
        }
        if (rc == TOK_ELIMIT) { /* too long without truncation: compare the truncated form instead */
            enc_tokenize(m, a, strlen(a), b, b ? strlen(b) : 0, 1, dir, &e[i], &te);
        }
    }
    int rc = cross ? enc_score(m, e, c->n, c->ours, &me) : enc_embed(m, e, c->n, enc_normalizes(m), c->ours, &me);
    c->sigmoid = cross && enc_sigmoid(m);
    if (rc) {
        fprintf(stderr, "FAIL %s: %s\n", c->label, me.msg);
        failures++;
    }
    write_request(req, c->dir, c->kind, e, c->n);
    for (size_t i = 0; i < c->n; i++)
        tok_encoding_free(&e[i]);
    free(e);
    enc_free(m);
    tok_destroy(tok);
}

static void compare(check *c, json_t *resp)
{
    int cross = !strcmp(c->kind, "rerank");
    json_t *rows = json_object_get(resp, cross ? "logits" : "embeddings"), *scores = json_object_get(resp, "scores");
    double worst = 0;
    for (size_t i = 0; i < c->n; i++)
        for (size_t k = 0; k < c->width; k++) {
            json_t *v = cross ? json_array_get(rows, i) : json_array_get(json_array_get(rows, i), k);
            if (!json_is_number(v) || (cross && !json_is_number(json_array_get(scores, i)))) {
                fprintf(stderr, "FAIL %s: oracle answer lacks item %zu/%zu\n", c->label, i, k);
                failures++;
                return;
            }
            float ours = c->ours[i * c->width + k];
            double d = fabs(json_number_value(v) - ours);
            if (cross) { /* the score after the activation the config names */
                double s = c->sigmoid ? 1.0 / (1.0 + exp(-(double)ours)) : ours;
                d = fmax(d, fabs(json_number_value(json_array_get(scores, i)) - s));
            }
            worst = d > worst ? d : worst;
        }
    printf("%-40s %zu x %zu  max |diff| %.2e\n", c->label, c->n, c->width, worst);
    if (!(worst <= TOL)) {
        fprintf(stderr, "FAIL %s: max |diff| %.3e over %.0e\n", c->label, worst, TOL);
        failures++;
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: encoder_parity CHECKPOINTS_DIR ORACLE_PY\n");
        return 2;
    }
    /* Three compute threads on any machine, so products, attention and the elementwise
     * kernels run split across threads, as they do in the daemon. */
    if (k_set_threads(3) != 0) {
        fprintf(stderr, "encoder_parity: cannot start compute threads\n");
        return 1;
    }
    char reqpath[600], resppath[600], cmd[2048];
    snprintf(reqpath, sizeof reqpath, "%s/oracle-requests.jsonl", argv[1]);
    snprintf(resppath, sizeof resppath, "%s/oracle-responses.jsonl", argv[1]);
    FILE *req = fopen(reqpath, "w");
    if (!req)
        return 2;
    static const struct {
        const char *name;
        int cross;
    } variants[] = {{"embedder-mean", 0}, {"embedder-cls", 0}, {"embedder-max", 0}, {"embedder-meansqrt", 0},
                    {"embedder-f16", 0},  {"embedder-bf16", 0}, {"embedder-sharded", 0},
                    {"reranker", 1},      {"reranker-identity", 1}};
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        run_variant(argv[1], variants[v].name, variants[v].cross, req, 0, TOK_TRUNCATE_RIGHT);
        run_variant(argv[1], variants[v].name, variants[v].cross, req, 1, TOK_TRUNCATE_RIGHT);
        run_variant(argv[1], variants[v].name, variants[v].cross, req, 1, TOK_TRUNCATE_LEFT);
    }
    fclose(req);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s < %s > %s", argv[2], reqpath, resppath);
    if (system(cmd) != 0) {
        fprintf(stderr, "FAIL: the oracle failed (%s)\n", cmd);
        return 1;
    }
    FILE *resp = fopen(resppath, "r");
    char *line = NULL;
    size_t cap = 0;
    for (size_t i = 0; i < n_checks; i++) {
        if (!resp || getline(&line, &cap, resp) < 0) {
            fprintf(stderr, "FAIL: the oracle answered %zu of %zu requests\n", i, n_checks);
            failures++;
            break;
        }
        json_t *j = json_loads(line, 0, NULL);
        if (checks[i].n)
            compare(&checks[i], j);
        json_decref(j);
        free(checks[i].ours);
    }
    free(line);
    if (resp)
        fclose(resp);
    printf("%zu checks, %d failed\n", n_checks, failures);
    return failures ? 1 : 0;
}
