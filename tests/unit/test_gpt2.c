/* test_gpt2.c — the GPT-2 decoder on the real trained checkpoint in ../shared/testdata
 * (gpt2-names-makemore: untied head, 27-character vocabulary): its reference greedy
 * continuation, and a KV cache that gives the same logits as a full prefill. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cu.h"
#include "gpt2.h"

static gpt2_model *model;

static int setup(void)
{
    const char *dir = cu_testdata("checkpoints/gpt2-names-makemore");
    if (!dir)
        return 0;
    mdl_error err;
    if (gpt2_load(dir, &model, &err) != 0) {
        fprintf(stderr, "load: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int teardown(void)
{
    gpt2_free(model);
    return 0;
}

static size_t argmax(const float *v, size_t n)
{
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (v[i] > v[best])
            best = i;
    return best;
}

static void test_config(void)
{
    const gpt2_config *c = gpt2_get_config(model);
    CU_ASSERT(c->vocab == 27 && c->n_embd == 64 && c->n_layer == 4 && c->n_head == 4 && c->n_positions == 16);
    CU_ASSERT_FALSE(c->tied);
}

/* testdata/README: the greedy continuation of "." is "analissa". */
static void test_greedy_name(void)
{
    const gpt2_config *c = gpt2_get_config(model);
    gpt2_cache *kc = gpt2_cache_create(model, 0);
    float *logits = malloc(c->vocab * sizeof *logits);
    int32_t tok = 0;
    char name[32] = "";
    size_t n = 0;
    mdl_error err;
    while (n < 15) {
        CU_ASSERT_EQUAL_FATAL(gpt2_forward(model, kc, &tok, 1, logits, NULL, &err), 0);
        tok = (int32_t)argmax(logits, c->vocab);
        if (tok == 0)
            break;
        name[n++] = (char)('a' + tok - 1);
    }
    name[n] = '\0';
    CU_ASSERT_STRING_EQUAL(name, "analissa");
    /* The context is full at n_positions: one more token is refused, not overrun. */
    gpt2_cache_reset(kc);
    int32_t ids[17] = {0};
    CU_ASSERT_EQUAL(gpt2_forward(model, kc, ids, 17, logits, NULL, &err), MDL_EINPUT);
    int32_t bad = 27;
    CU_ASSERT_EQUAL(gpt2_forward(model, kc, &bad, 1, logits, NULL, &err), MDL_EINPUT);
    free(logits);
    gpt2_cache_free(kc);
}

static void test_cache_matches_prefill(void)
{
    const gpt2_config *c = gpt2_get_config(model);
    const int32_t ids[] = {0, 5, 13, 13, 1, 0, 19, 15}; /* ".emma.so" */
    size_t T = sizeof ids / sizeof ids[0], V = c->vocab;
    float *all = malloc(T * V * sizeof *all), *last = malloc(V * sizeof *last), *step = malloc(V * sizeof *step);
    gpt2_cache *a = gpt2_cache_create(model, 0), *b = gpt2_cache_create(model, 0);
    mdl_error err;
    CU_ASSERT_EQUAL_FATAL(gpt2_forward(model, a, ids, T, last, all, &err), 0);
    float worst = 0;
    for (size_t t = 0; t < T; t++) {
        CU_ASSERT_EQUAL_FATAL(gpt2_forward(model, b, ids + t, 1, step, NULL, &err), 0);
        for (size_t v = 0; v < V; v++)
            worst = fmaxf(worst, fabsf(step[v] - all[t * V + v]));
    }
    CU_ASSERT(worst < 1e-4f);
    CU_ASSERT(memcmp(last, all + (T - 1) * V, V * sizeof *last) == 0);
    free(all), free(last), free(step);
    gpt2_cache_free(a);
    gpt2_cache_free(b);
}

void cu_register(void)
{
    if (!cu_testdata("checkpoints/gpt2-names-makemore")) {
        cu_skip_all("../shared/testdata not found");
        return;
    }
    CU_pSuite s = CU_add_suite("gpt2", setup, teardown);
    CU_add_test(s, "config", test_config);
    CU_add_test(s, "greedy name from the real checkpoint", test_greedy_name);
    CU_add_test(s, "KV cache equals prefill", test_cache_matches_prefill);
}
