/*
 * gpt2_parity.c — the GPT-2 decoder against the PyTorch oracle (tests/reference/gpt2_oracle.py):
 * random checkpoints in the HF layout (tied, untied with `transformer.` names, F16) and the
 * real trained gpt2-names-makemore checkpoint. Logits of every prompt position within 1e-4,
 * and identical greedy continuations (32 tokens, or to the end of the context), decoded
 * with the KV cache one token at a time. Exits 1 on any mismatch.
 *
 * usage: gpt2_parity CHECKPOINTS_DIR ORACLE_PY
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpt2.h"
#include "tokenizer.h"

#define TOL 1e-4

typedef struct {
    char dir[512];
    int32_t ids[64];
    size_t n_ids, n_greedy, V;
    float *logits;        /* [n_ids, V] */
    int32_t greedy[64];
} check;

static int failures;

static int run(check *c, const char *prompt)
{
    gpt2_model *m;
    tok_tokenizer *tok;
    mdl_error me;
    tok_error te;
    if (gpt2_load(c->dir, &m, &me) != 0 || tok_load_dir(c->dir, &tok, &te) != 0) {
        fprintf(stderr, "FAIL %s: cannot load\n", c->dir);
        return -1;
    }
    tok_encoding e = {0};
    tok_options o = {1, 0, TOK_TRUNCATE_RIGHT};
    tok_encode(tok, prompt, strlen(prompt), NULL, 0, &o, &e, &te);
    c->n_ids = e.len;
    memcpy(c->ids, e.ids, e.len * sizeof *c->ids);
    tok_encoding_free(&e);
    const gpt2_config *cfg = gpt2_get_config(m);
    c->V = cfg->vocab;
    c->n_greedy = cfg->n_positions - c->n_ids < 32 ? cfg->n_positions - c->n_ids : 32;
    c->logits = malloc(c->n_ids * c->V * sizeof(float));
    float *last = malloc(c->V * sizeof(float));
    gpt2_cache *kc = gpt2_cache_create(m, 0);
    int rc = gpt2_forward(m, kc, c->ids, c->n_ids, last, c->logits, &me);
    for (size_t i = 0; i < c->n_greedy && !rc; i++) {
        size_t best = 0;
        for (size_t v = 1; v < c->V; v++)
            if (last[v] > last[best])
                best = v;
        c->greedy[i] = (int32_t)best;
        if (i + 1 < c->n_greedy)
            rc = gpt2_forward(m, kc, &c->greedy[i], 1, last, NULL, &me);
    }
    free(last);
    gpt2_cache_free(kc);
    tok_destroy(tok);
    gpt2_free(m);
    return rc;
}

static void compare(const check *c, json_t *resp)
{
    json_t *rows = json_object_get(resp, "logits"), *greedy = json_object_get(resp, "greedy");
    double worst = 0;
    for (size_t t = 0; t < c->n_ids; t++)
        for (size_t v = 0; v < c->V; v++) {
            json_t *x = json_array_get(json_array_get(rows, t), v);
            double d = x ? fabs(json_number_value(x) - c->logits[t * c->V + v]) : INFINITY;
            worst = d > worst ? d : worst;
        }
    size_t same = 0;
    while (same < c->n_greedy && json_integer_value(json_array_get(greedy, same)) == c->greedy[same])
        same++;
    printf("%-60s %zu prompt tokens, max |diff| %.2e, greedy %zu/%zu identical\n", c->dir, c->n_ids, worst, same,
           c->n_greedy);
    if (!(worst <= TOL) || same != c->n_greedy || json_array_size(greedy) != c->n_greedy) {
        fprintf(stderr, "FAIL %s\n", c->dir);
        failures++;
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: gpt2_parity CHECKPOINTS_DIR ORACLE_PY\n");
        return 2;
    }
    static check checks[4];
    static const char *const names[] = {"gpt2-tied", "gpt2-untied", "gpt2-f16"};
    const char *shared = getenv("RAGD_SHARED");
    for (size_t i = 0; i < 3; i++)
        snprintf(checks[i].dir, sizeof checks[i].dir, "%s/%s", argv[1], names[i]);
    snprintf(checks[3].dir, sizeof checks[3].dir, "%s/testdata/checkpoints/gpt2-names-makemore",
             shared ? shared : "../shared");
    char req[600], resp[600], cmd[2048];
    snprintf(req, sizeof req, "%s/gpt2-requests.jsonl", argv[1]);
    snprintf(resp, sizeof resp, "%s/gpt2-responses.jsonl", argv[1]);
    FILE *f = fopen(req, "w");
    for (size_t i = 0; i < 4; i++) {
        if (run(&checks[i], i < 3 ? "Hello world, the quick brown fox jumps over" : ".") != 0) {
            failures++;
            continue;
        }
        json_t *ids = json_array();
        for (size_t k = 0; k < checks[i].n_ids; k++)
            json_array_append_new(ids, json_integer(checks[i].ids[k]));
        json_t *r = json_pack("{s:s, s:o, s:I}", "dir", checks[i].dir, "ids", ids, "greedy", (json_int_t)checks[i].n_greedy);
        json_dumpf(r, f, JSON_COMPACT);
        fputc('\n', f);
        json_decref(r);
    }
    fclose(f);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s < %s > %s", argv[2], req, resp);
    if (system(cmd) != 0) {
        fprintf(stderr, "FAIL: the oracle failed\n");
        return 1;
    }
    f = fopen(resp, "r");
    char *line = NULL;
    size_t cap = 0;
    for (size_t i = 0; i < 4; i++) {
        if (!checks[i].logits)
            continue;
        if (!f || getline(&line, &cap, f) < 0) {
            fprintf(stderr, "FAIL: the oracle answered too few requests\n");
            failures++;
            break;
        }
        json_t *j = json_loads(line, 0, NULL);
        compare(&checks[i], j);
        json_decref(j);
        free(checks[i].logits);
    }
    free(line);
    if (f)
        fclose(f);
    printf("4 checks, %d failed\n", failures);
    return failures ? 1 : 0;
}
