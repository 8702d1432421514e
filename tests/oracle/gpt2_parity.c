/*
 * gpt2_parity.c — the GPT-2 decoder against the PyTorch oracle (tests/reference/gpt2_oracle.py):
 * random checkpoints in the HF layout (tied, untied with `transformer.` names, F16) and the
 * real trained gpt2-names-makemore checkpoint, each alone and with PEFT adapters the oracle
 * built (tests/reference/make_gpt2_adapters.py: LoRA on every module, LoRA with rsLoRA on
 * one layer, prompt tuning, projected prefix tuning; LoRA on makemore). Logits of every
 * prompt position within 1e-4, and identical greedy continuations (32 tokens, or to the end
 * of the context), decoded with the KV cache one token at a time. Exits 1 on any mismatch.
 *
 * usage: gpt2_parity CHECKPOINTS_DIR ORACLE_PY
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <unistd.h>

#include "adapter.h"
#include "gpt2.h"
#include "tokenizer.h"

#define TOL 1e-4

#define N_CHECKS 9

typedef struct {
    char dir[512];
    char adapter[512];    /* a PEFT directory, or "" */
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
    adp_adapter *a = NULL;
    if (gpt2_load(c->dir, &m, &me) != 0 || tok_load_dir(c->dir, &tok, &te) != 0) {
        fprintf(stderr, "FAIL %s: cannot load\n", c->dir);
        return -1;
    }
    if (*c->adapter) {
        char root[512];
        snprintf(root, sizeof root, "%s", c->adapter);
        char *slash = strrchr(root, '/');
        *slash = '\0';
        int fd = open(root, O_RDONLY | O_DIRECTORY);
        int rc = adp_load(fd, slash + 1, gpt2_get_config(m), &a, &me);
        close(fd);
        if (rc) {
            fprintf(stderr, "FAIL %s: %s\n", c->adapter, me.msg);
            tok_destroy(tok);
            gpt2_free(m);
            return -1;
        }
    }
    tok_encoding e = {0};
    tok_options o = {1, 0, TOK_TRUNCATE_RIGHT};
    tok_encode(tok, prompt, strlen(prompt), NULL, 0, &o, &e, &te);
    c->n_ids = e.len;
    memcpy(c->ids, e.ids, e.len * sizeof *c->ids);
    tok_encoding_free(&e);
    const gpt2_config *cfg = gpt2_get_config(m);
    c->V = cfg->vocab;
    size_t room = cfg->n_positions - adp_virtual_tokens(a) - c->n_ids;
    c->n_greedy = room < 32 ? room : 32;
    c->logits = malloc(c->n_ids * c->V * sizeof(float));
    float *last = malloc(c->V * sizeof(float));
    gpt2_cache *kc = gpt2_cache_create(m, 0);
    int rc = gpt2_begin(m, a, kc, &me) || gpt2_forward_adapter(m, a, kc, c->ids, c->n_ids, last, c->logits, &me);
    for (size_t i = 0; i < c->n_greedy && !rc; i++) {
        size_t best = 0;
        for (size_t v = 1; v < c->V; v++)
            if (last[v] > last[best])
                best = v;
        c->greedy[i] = (int32_t)best;
        if (i + 1 < c->n_greedy)
            rc = gpt2_forward_adapter(m, a, kc, &c->greedy[i], 1, last, NULL, &me);
    }
    if (rc) {
        fprintf(stderr, "FAIL %s %s: %s\n", c->dir, c->adapter, me.msg);
        free(c->logits);
        c->logits = NULL; /* not sent to the oracle */
    }
    adp_free(a);
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
    printf("%-50s %-8s %zu prompt tokens, max |diff| %.2e, greedy %zu/%zu identical\n", c->dir, *c->adapter ? strrchr(c->adapter, '/') + 1 : "-", c->n_ids, worst, same,
           c->n_greedy);
    if (!(worst <= TOL) || same != c->n_greedy || json_array_size(greedy) != c->n_greedy) {
        fprintf(stderr, "FAIL %s %s\n", c->dir, c->adapter);
        failures++;
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: gpt2_parity CHECKPOINTS_DIR ORACLE_PY\n");
        return 2;
    }
    static check checks[N_CHECKS];
    /* base, adapter (in ADAPTERS_DIR), prompt */
    static const char *const plan[N_CHECKS][3] = {
        {"gpt2-tied", "", NULL}, {"gpt2-untied", "", NULL}, {"gpt2-f16", "", NULL}, {NULL, "", "."},
        {"gpt2-untied", "adapters-untied/lora", NULL}, {"gpt2-untied", "adapters-untied/lora-rs", NULL},
        {"gpt2-untied", "adapters-untied/prompt", NULL}, {"gpt2-untied", "adapters-untied/prefix", NULL},
        {NULL, "adapters-makemore/lora", "."},
    };
    const char *shared = getenv("RAGD_SHARED");
    for (size_t i = 0; i < N_CHECKS; i++) {
        if (plan[i][0])
            snprintf(checks[i].dir, sizeof checks[i].dir, "%s/%s", argv[1], plan[i][0]);
        else
            snprintf(checks[i].dir, sizeof checks[i].dir, "%s/testdata/checkpoints/gpt2-names-makemore",
                     shared ? shared : "../shared");
        if (*plan[i][1])
            snprintf(checks[i].adapter, sizeof checks[i].adapter, "%s/%s", argv[1], plan[i][1]);
    }
    char req[600], resp[600], cmd[2048];
    snprintf(req, sizeof req, "%s/gpt2-requests.jsonl", argv[1]);
    snprintf(resp, sizeof resp, "%s/gpt2-responses.jsonl", argv[1]);
    FILE *f = fopen(req, "w");
    for (size_t i = 0; i < N_CHECKS; i++) {
        if (run(&checks[i], plan[i][2] ? plan[i][2] : "Hello world, the quick brown fox jumps over") != 0) {
            failures++;
            continue;
        }
        json_t *ids = json_array();
        for (size_t k = 0; k < checks[i].n_ids; k++)
            json_array_append_new(ids, json_integer(checks[i].ids[k]));
        json_t *r = json_pack("{s:s, s:o, s:I, s:s*}", "dir", checks[i].dir, "ids", ids, "greedy",
                              (json_int_t)checks[i].n_greedy, "adapter", *checks[i].adapter ? checks[i].adapter : NULL);
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
    for (size_t i = 0; i < N_CHECKS; i++) {
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
    }
    free(line);
    if (f)
        fclose(f);
    /* An adapter that changed nothing would pass the checks above vacuously. */
    for (size_t i = 4; i < N_CHECKS; i++) {
        const check *a = &checks[i], *b = &checks[i == N_CHECKS - 1 ? 3 : 1];
        double moved = 0;
        for (size_t k = 0; a->logits && b->logits && a->n_ids == b->n_ids && k < a->n_ids * a->V; k++)
            moved = fmax(moved, fabs(a->logits[k] - b->logits[k]));
        printf("%-8s moves the base logits by up to %.3f\n", strrchr(a->adapter, '/') + 1, moved);
        if (!(moved > 1e-2)) {
            fprintf(stderr, "FAIL %s does not change the base model's logits\n", a->adapter);
            failures++;
        }
    }
    for (size_t i = 0; i < N_CHECKS; i++)
        free(checks[i].logits);
    printf("%d checks, %d failed\n", N_CHECKS, failures);
    return failures ? 1 : 0;
}
