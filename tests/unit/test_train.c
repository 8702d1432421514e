/* test_train.c — training pieces and training that learns, with fixed seeds:
 *   optim: the linear schedule, clipping, one AdamW step worked by hand;
 *   losses: SFT and every DPO loss's dL/dlogp against central differences;
 *   data: completion masks, EOS, truncation, bad rows named by index;
 *   init: LoRA A within ±1/√in and B zero, prompt TEXT init repeating the text's wte rows;
 *   dropout: the base's probabilities read from config.json; masks that follow the seed (the
 *   same seed gives the same loss, gradient and trained adapter; another seed or no dropout
 *   does not); lora_dropout kept in adapter_config.json through publish and load;
 *   prefix projection MLP: backward against central differences;
 *   learning on the real gpt2-names-makemore checkpoint: LoRA, prompt and prefix tuning SFT
 *   lower held-out loss on a new name distribution (names written backwards); DPO lifts
 *   rewards/accuracies above 0.9 on held-out pairs of a separable preference (names starting
 *   a..m preferred over names starting n..z). */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cu.h"
#include "gpt2.h"
#include "gpt2_train.h"
#include "optim.h"
#include "tokenizer.h"
#include "train.h"

static gpt2_model *model;
static tok_tokenizer *tok;
static char **names;
static size_t n_names;

static int setup(void)
{
    const char *dir = cu_testdata("checkpoints/gpt2-names-makemore");
    if (!dir)
        return 0;
    char d[1024];
    snprintf(d, sizeof d, "%s", dir);
    mdl_error e;
    tok_error te;
    if (gpt2_load(d, &model, &e) != 0 || tok_load_dir(d, &tok, &te) != 0)
        return -1;
    char path[1100], line[256];
    snprintf(path, sizeof path, "%s/names.txt", d);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    names = calloc(40000, sizeof *names);
    while (n_names < 40000 && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (strlen(line) >= 2 && strlen(line) <= 9)
            names[n_names++] = strdup(line);
    }
    fclose(f);
    return 0;
}

static int teardown(void)
{
    for (size_t i = 0; i < n_names; i++)
        free(names[i]);
    free(names);
    tok_destroy(tok);
    gpt2_free(model);
    return 0;
}

/* ---- optim ---- */

static void test_schedule(void)
{
    static const struct { long s, w, n; double want; } cases[] = {
        {0, 0, 10, 1.0}, {5, 0, 10, 0.5}, {10, 0, 10, 0.0}, {12, 0, 10, 0.0},
        {0, 2, 10, 0.0}, {1, 2, 10, 0.5}, {2, 2, 10, 1.0}, {6, 2, 10, 0.5}, {0, 1, 1, 0.0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        CU_ASSERT_DOUBLE_EQUAL(opt_linear_schedule(cases[i].s, cases[i].w, cases[i].n), cases[i].want, 1e-12);
}

static void test_clip(void)
{
    float g[2] = {3.0f, 4.0f};
    CU_ASSERT_DOUBLE_EQUAL(opt_clip_grad_norm(g, 2, 1.0), 5.0, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(g[0], 3.0 / (5.0 + 1e-6), 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(g[1], 4.0 / (5.0 + 1e-6), 1e-6);
    float h[2] = {0.3f, 0.4f};
    CU_ASSERT_DOUBLE_EQUAL(opt_clip_grad_norm(h, 2, 1.0), 0.5, 1e-7);
    CU_ASSERT_EQUAL(h[0], 0.3f); /* under the cap: untouched */
}

static void test_adamw_step(void)
{
    opt_adamw o;
    CU_ASSERT_EQUAL_FATAL(opt_adamw_init(&o, 2), 0);
    float theta[2] = {1.0f, -2.0f}, g[2] = {0.5f, -0.25f};
    opt_hparams h = {0.1, 0.9, 0.999, 1e-8, 0.01};
    const size_t decay[1][2] = {{0, 1}}; /* only theta[0] decays */
    opt_adamw_step(&o, &h, 0.1, theta, g, decay, 1);
    /* step 1: m = 0.1 g, v = 0.001 g², m̂/√v̂ = sign(g): θ -= lr·sign(g) (after decay). */
    CU_ASSERT_DOUBLE_EQUAL(theta[0], 1.0 * (1 - 0.1 * 0.01) - 0.1, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(theta[1], -2.0 + 0.1, 1e-6);
    CU_ASSERT_EQUAL(o.step, 1);
    opt_adamw_deinit(&o);
}

/* ---- losses ---- */

static void test_loss_gradients(void)
{
    enum { P = 2, T = 4 };
    float logp[2 * P * T], dlogp[2 * P * T];
    float ref[2 * P] = {-3.0f, -2.5f, -4.0f, -1.0f};
    unsigned char scored[2 * P * T];
    for (size_t i = 0; i < 2 * P * T; i++) {
        logp[i] = -0.2f - 0.37f * (float)(i % 5);
        scored[i] = i % T >= 1 && !(i == 7);
    }
    for (int type = 0; type < DPO_N_LOSSES; type++) {
        dpo_params dp = {(dpo_loss_type)type, type == DPO_HINGE ? 0.3 : 0.1, type == DPO_SIGMOID ? 0.2 : 0.0};
        dpo_metrics m;
        dpo_loss(&dp, logp, ref, scored, P, T, 1.0, dlogp, &m);
        for (size_t i = 0; i < 2 * P * T; i++) {
            float keep = logp[i];
            double h = 1e-3;
            logp[i] = keep + (float)h;
            double up = dpo_loss(&dp, logp, ref, scored, P, T, 1.0, (float[2 * P * T]){0}, &m);
            logp[i] = keep - (float)h;
            double down = dpo_loss(&dp, logp, ref, scored, P, T, 1.0, (float[2 * P * T]){0}, &m);
            logp[i] = keep;
            CU_ASSERT_DOUBLE_EQUAL(dlogp[i], scored[i] ? (up - down) / (2 * h) : 0.0, 2e-3);
        }
    }
    float d[2 * P * T];
    double loss = sft_loss(logp, scored, 2 * P, T, 10.0, d);
    double sum = 0;
    for (size_t i = 0; i < 2 * P * T; i++)
        sum += scored[i] ? logp[i] : 0;
    CU_ASSERT_DOUBLE_EQUAL(loss, -sum / 10.0, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(d[1], -0.1, 1e-7);
    CU_ASSERT_EQUAL(d[0], 0.0f);
    CU_ASSERT_EQUAL(dpo_loss_from_name("ipo"), DPO_IPO);
    CU_ASSERT_EQUAL(dpo_loss_from_name("robust"), -1);
}

/* ---- data ---- */

static void test_data(void)
{
    if (!model)
        return;
    const gpt2_config *c = gpt2_get_config(model);
    trn_row rows[3] = {{.prompt = ".em", .completion = "ma"}, {.text = ".ava"}, {.prompt = ".abcdefghijklmnop", .completion = "q"}};
    trn_data *d;
    size_t bad;
    mdl_error e;
    /* The third row's completion falls beyond max_length 16: refused, named by index. */
    CU_ASSERT_EQUAL(trn_data_build(tok, c, 0, rows, 3, 16, 1, &d, &bad, &e), MDL_EINPUT);
    CU_ASSERT_EQUAL(bad, 2);
    CU_ASSERT_PTR_NULL(d);
    CU_ASSERT_EQUAL_FATAL(trn_data_build(tok, c, 0, rows, 2, 16, 1, &d, &bad, &e), 0);
    CU_ASSERT_EQUAL(trn_data_rows(d), 2);
    /* ".em"+"ma" + EOS = 6 tokens, 3 learned ("m", "a", EOS); ".ava" + EOS = 5 tokens, 4 learned. */
    trn_progress pr;
    CU_ASSERT_EQUAL(trn_evaluate(model, NULL, NULL, NULL, d, &pr, &e), 0);
    CU_ASSERT(pr.loss > 0 && pr.loss < 10);
    trn_data_free(d);
    trn_row dpo_bad[1] = {{.prompt = ".", .chosen = "a"}};
    CU_ASSERT_EQUAL(trn_data_build(tok, c, 1, dpo_bad, 1, 16, 1, &d, &bad, &e), MDL_EINPUT);
    CU_ASSERT_EQUAL(bad, 0);
    trn_row mixed[1] = {{.prompt = ".", .completion = "a", .text = ".b"}};
    CU_ASSERT_EQUAL(trn_data_build(tok, c, 0, mixed, 1, 16, 1, &d, &bad, &e), MDL_EINPUT);
}

/* ---- prefix projection ---- */

static void test_prefix_mlp_gradient(void)
{
    size_t nvt = 2, C = 3, H = 4, L = 2, O = 2 * L * C, n = trn_prefix_mlp_size(nvt, C, H, L);
    float *theta = malloc(n * sizeof(float)), *g = calloc(n, sizeof(float)), P[2 * 12], dP[2 * 12];
    for (size_t i = 0; i < n; i++)
        theta[i] = (float)sin(1.7 * (double)i);
    for (size_t i = 0; i < nvt * O; i++)
        dP[i] = (float)cos(0.9 * (double)i);
    CU_ASSERT_EQUAL(trn_prefix_mlp_backward(theta, nvt, C, H, L, dP, g), 0);
    for (size_t i = 0; i < n; i++) { /* L = Σ dP·P */
        double h = 1e-2, f[2];
        float keep = theta[i];
        for (int s = 0; s < 2; s++) {
            theta[i] = keep + (float)(s ? -h : h);
            trn_prefix_mlp_forward(theta, nvt, C, H, L, P);
            f[s] = 0;
            for (size_t k = 0; k < nvt * O; k++)
                f[s] += (double)dP[k] * P[k];
        }
        theta[i] = keep;
        CU_ASSERT_DOUBLE_EQUAL(g[i], (f[0] - f[1]) / (2 * h), 2e-3);
    }
    free(theta);
    free(g);
}

/* ---- learning ---- */

static void reversed(const char *s, char *out)
{
    size_t n = strlen(s);
    out[0] = '.';
    for (size_t i = 0; i < n; i++)
        out[1 + i] = s[n - 1 - i];
    out[n + 1] = 0;
}

static trn_data *reversed_names(size_t first, size_t n, char (*buf)[16])
{
    trn_row *rows = calloc(n, sizeof *rows);
    for (size_t i = 0; i < n; i++) {
        reversed(names[(first + i) * 97 % n_names], buf[i]);
        rows[i].text = buf[i];
    }
    trn_data *d = NULL;
    size_t bad;
    mdl_error e;
    CU_ASSERT_EQUAL(trn_data_build(tok, gpt2_get_config(model), 0, rows, n, 16, 1, &d, &bad, &e), 0);
    free(rows);
    return d;
}

static void sft_learns(adp_type type, size_t epochs, double lr, double min_gain)
{
    if (!model)
        return;
    static char train_buf[256][16], held_buf[128][16];
    trn_data *train = reversed_names(0, 256, train_buf), *held = reversed_names(5000, 128, held_buf);
    trn_params p = {.adapter = {.type = type, .r = 8, .lora_alpha = 16, .targets = ADP_ALL_MODULES,
                                .num_virtual_tokens = 4},
                    .epochs = epochs, .batch_size = 16, .grad_accum = 1, .learning_rate = lr, .max_grad_norm = 1.0,
                    .seed = 1234};
    adp_adapter *a = NULL;
    mdl_error e;
    trn_progress before, after;
    CU_ASSERT_EQUAL_FATAL(trn_evaluate(model, NULL, NULL, NULL, held, &before, &e), 0);
    int rc = trn_run(model, tok, &p, train, NULL, NULL, &a, &e);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(trn_evaluate(model, a, NULL, NULL, held, &after, &e), 0);
    printf("\n  %s SFT on reversed names: held-out loss %.3f -> %.3f ", adp_type_name(type), before.loss, after.loss);
    CU_ASSERT(after.loss < before.loss - min_gain);
    adp_free(a);
    trn_data_free(train);
    trn_data_free(held);
}

static void test_lora_sft_learns(void) { sft_learns(ADP_LORA, 3, 3e-3, 0.3); }
static void test_prompt_sft_learns(void) { sft_learns(ADP_PROMPT_TUNING, 6, 0.3, 0.05); }
static void test_prefix_sft_learns(void) { sft_learns(ADP_PREFIX_TUNING, 6, 0.1, 0.1); }

static int steps_seen;
static trn_progress first_step;
static int count_steps(void *ctx, const trn_progress *p)
{
    (void)ctx;
    if (steps_seen++ == 0)
        first_step = *p;
    return p->step >= 3; /* cancel after 3 steps */
}

static trn_data *preference_pairs(size_t first, size_t n)
{
    trn_row *rows = calloc(n, sizeof *rows);
    size_t k = 0;
    for (size_t i = first; k < n && i < n_names; i++) {
        const char *s = names[i * 31 % n_names];
        if (s[0] > 'm' || k >= n)
            continue;
        for (size_t j = i + 1; j < n_names; j++) {
            const char *r = names[j * 37 % n_names];
            if (r[0] > 'm') {
                rows[k].prompt = ".";
                rows[k].chosen = s;
                rows[k++].rejected = r;
                break;
            }
        }
    }
    trn_data *d = NULL;
    size_t bad;
    mdl_error e;
    CU_ASSERT_EQUAL(trn_data_build(tok, gpt2_get_config(model), 1, rows, k, 16, 1, &d, &bad, &e), 0);
    free(rows);
    return d;
}

static void test_dpo_learns(void)
{
    if (!model)
        return;
    trn_data *train = preference_pairs(0, 192), *held = preference_pairs(8000, 96);
    trn_params p = {.dpo = 1, .adapter = {.type = ADP_LORA, .r = 8, .lora_alpha = 16, .targets = ADP_ALL_MODULES},
                    .epochs = 3, .batch_size = 8, .grad_accum = 2, .learning_rate = 5e-3, .max_grad_norm = 1.0,
                    .seed = 99, .dpo_p = {DPO_SIGMOID, 0.1, 0.0}};
    adp_adapter *a = NULL;
    mdl_error e;
    trn_progress before, after;
    CU_ASSERT_EQUAL_FATAL(trn_evaluate(model, NULL, NULL, &p.dpo_p, held, &before, &e), 0);
    CU_ASSERT_EQUAL_FATAL(trn_run(model, tok, &p, train, NULL, NULL, &a, &e), 0);
    CU_ASSERT_EQUAL(trn_evaluate(model, a, NULL, &p.dpo_p, held, &after, &e), 0);
    printf("\n  DPO held-out rewards/accuracies %.3f -> %.3f, margins %.3f ", before.dpo_m.rewards_accuracies,
           after.dpo_m.rewards_accuracies, after.dpo_m.rewards_margins);
    CU_ASSERT(after.dpo_m.rewards_accuracies > 0.9);
    CU_ASSERT(after.dpo_m.rewards_margins > 0);
    adp_free(a);
    /* A step callback that asks to stop ends the run with 1 and no adapter. */
    steps_seen = 0;
    CU_ASSERT_EQUAL(trn_run(model, tok, &p, train, count_steps, NULL, &a, &e), 1);
    CU_ASSERT_EQUAL(steps_seen, 3);
    CU_ASSERT_PTR_NULL(a);
    /* The base as the reference: the fresh LoRA (B = 0) is the base, so the first step's
     * rewards are 0 (up to the float sums of log-probs). */
    CU_ASSERT_DOUBLE_EQUAL(first_step.dpo_m.rewards_chosen, 0.0, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(first_step.dpo_m.rewards_margins, 0.0, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(first_step.loss, log(2.0), 1e-6);
    /* init_adapter: training starts from it, and it is the reference (not the base), so the
     * first step's rewards are 0 again although the policy is far from the base; training on
     * moves the policy away from it. */
    adp_adapter *init = NULL;
    p.epochs = 1;
    CU_ASSERT_EQUAL_FATAL(trn_run(model, tok, &p, train, NULL, NULL, &init, &e), 0);
    trn_progress init_vs_base;
    CU_ASSERT_EQUAL(trn_evaluate(model, init, NULL, &p.dpo_p, held, &init_vs_base, &e), 0);
    CU_ASSERT(init_vs_base.dpo_m.rewards_margins > 0.05); /* it learned: far from the base */
    p.init_adapter = init;
    steps_seen = 0;
    CU_ASSERT_EQUAL(trn_run(model, tok, &p, train, count_steps, NULL, &a, &e), 1);
    CU_ASSERT_DOUBLE_EQUAL(first_step.dpo_m.rewards_chosen, 0.0, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(first_step.dpo_m.rewards_rejected, 0.0, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(first_step.loss, log(2.0), 1e-6);
    CU_ASSERT(first_step.dpo_m.logps_chosen > -1e30);
    CU_ASSERT_EQUAL_FATAL(trn_run(model, tok, &p, train, NULL, NULL, &a, &e), 0);
    trn_progress after_init;
    CU_ASSERT_EQUAL(trn_evaluate(model, a, init, &p.dpo_p, held, &after_init, &e), 0);
    printf("\n  DPO from init_adapter: margins against it %.3f (init against the base %.3f) ",
           after_init.dpo_m.rewards_margins, init_vs_base.dpo_m.rewards_margins);
    CU_ASSERT(after_init.dpo_m.rewards_margins > 0);
    adp_free(a);
    adp_free(init);
    trn_data_free(train);
    trn_data_free(held);
}

static void test_init(void)
{
    if (!model)
        return;
    const gpt2_config *c = gpt2_get_config(model);
    static char buf[16][16];
    trn_data *d = reversed_names(0, 4, buf);
    trn_params p = {.adapter = {.type = ADP_LORA, .r = 4, .lora_alpha = 8, .targets = ADP_ALL_MODULES},
                    .epochs = 1, .batch_size = 4, .grad_accum = 1, .learning_rate = 1e-30, .seed = 5};
    adp_adapter *a = NULL;
    mdl_error e;
    CU_ASSERT_EQUAL_FATAL(trn_run(model, tok, &p, d, NULL, NULL, &a, &e), 0);
    const adp_lora *lo = adp_lora_at(a, 0, ADP_MLP_C_PROJ);
    CU_ASSERT_PTR_NOT_NULL_FATAL(lo);
    float amax = 0, bmax = 0;
    for (size_t i = 0; i < lo->r * lo->in; i++)
        amax = fmaxf(amax, fabsf(lo->A[i]));
    for (size_t i = 0; i < lo->r * lo->out; i++)
        bmax = fmaxf(bmax, fabsf(lo->B[i]));
    CU_ASSERT(amax <= 1.0f / sqrtf((float)lo->in) && amax > 0.5f / sqrtf((float)lo->in));
    CU_ASSERT(bmax < 1e-20f); /* zero, moved only by a vanishing lr */
    adp_free(a);
    /* TEXT init: "abc" repeated over 5 virtual tokens -> wte rows of a b c a b. */
    trn_params q = {.adapter = {.type = ADP_PROMPT_TUNING, .num_virtual_tokens = 5}, .prompt_init = TRN_INIT_TEXT,
                    .prompt_init_text = "abc", .epochs = 1, .batch_size = 4, .grad_accum = 1,
                    .learning_rate = 1e-30, .seed = 5};
    CU_ASSERT_EQUAL_FATAL(trn_run(model, tok, &q, d, NULL, NULL, &a, &e), 0);
    float logits[27];
    (void)logits;
    /* rows 0 and 3 are both 'a' (id 1), rows 1 and 4 'b' */
    CU_ASSERT_EQUAL(memcmp(a->prompt, a->prompt + 3 * c->n_embd, c->n_embd * sizeof(float)), 0);
    CU_ASSERT_EQUAL(memcmp(a->prompt + c->n_embd, a->prompt + 4 * c->n_embd, c->n_embd * sizeof(float)), 0);
    CU_ASSERT(memcmp(a->prompt, a->prompt + c->n_embd, c->n_embd * sizeof(float)) != 0);
    adp_free(a);
    trn_data_free(d);
}

/* ---- dropout ---- */

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(text, f);
    fclose(f);
}

static void test_base_dropout_config(void)
{
    if (!model)
        return;
    trn_base_dropout bd = {1, 1, 1};
    mdl_error e;
    CU_ASSERT_EQUAL(trn_read_base_dropout(cu_testdata("checkpoints/gpt2-names-makemore"), &bd, &e), 0);
    CU_ASSERT(bd.embd_pdrop == 0.0f && bd.attn_pdrop == 0.0f && bd.resid_pdrop == 0.0f); /* its config says 0.0 */
    char dir[] = "/tmp/ragd-drop-XXXXXX", path[64];
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_text(path, "{\"model_type\": \"gpt2\", \"attn_pdrop\": 0.25}");
    CU_ASSERT_EQUAL(trn_read_base_dropout(dir, &bd, &e), 0);
    CU_ASSERT(bd.embd_pdrop == 0.1f && bd.attn_pdrop == 0.25f && bd.resid_pdrop == 0.1f); /* GPT2Config's 0.1 */
    write_text(path, "{\"resid_pdrop\": 1.0}");
    CU_ASSERT_EQUAL(trn_read_base_dropout(dir, &bd, &e), MDL_EFORMAT);
    CU_ASSERT(strstr(e.msg, "resid_pdrop") != NULL);
    write_text(path, "{\"embd_pdrop\": \"0.1\"}");
    CU_ASSERT_EQUAL(trn_read_base_dropout(dir, &bd, &e), MDL_EFORMAT);
    unlink(path);
    CU_ASSERT_EQUAL(trn_read_base_dropout(dir, &bd, &e), MDL_EIO);
    rmdir(dir);
}

/* One training forward and backward of a LoRA on every module: the loss and the gradient. */
static double drop_step(gpt2t *tr, const adp_adapter *a, const gpt2t_dropout *d, float *grad)
{
    enum { B = 2, T = 8 };
    static const int32_t ids[B * T] = {0, 5, 13, 13, 1, 0, 0, 0, 0, 1, 22, 1, 0, 0, 0, 0};
    static const size_t len[B] = {6, 5};
    unsigned char scored[B * T] = {0};
    for (size_t b = 0; b < B; b++)
        for (size_t t = 1; t < len[b]; t++)
            scored[b * T + t] = 1;
    gpt2t_batch bt = {B, T, ids, len, scored};
    float logp[B * T], dlogp[B * T];
    mdl_error e;
    CU_ASSERT_EQUAL_FATAL(gpt2t_forward(tr, a, &bt, 1, d, logp, &e), 0);
    double loss = sft_loss(logp, scored, B, T, 9.0, dlogp);
    memset(grad, 0, a->n_weights * sizeof(float));
    CU_ASSERT_EQUAL(gpt2t_backward(tr, dlogp, grad, &e), 0);
    return loss;
}

static void test_dropout_follows_seed(void)
{
    if (!model)
        return;
    const gpt2_config *c = gpt2_get_config(model);
    adp_config cfg = {.type = ADP_LORA, .r = 4, .lora_alpha = 8, .targets = ADP_ALL_MODULES};
    adp_adapter *a;
    mdl_error e;
    CU_ASSERT_EQUAL_FATAL(adp_create(c, &cfg, &a, &e), 0);
    for (size_t i = 0; i < a->n_weights; i++)
        a->weights[i] = (float)sin(0.37 * (double)i) * 0.2f;
    gpt2t *tr = gpt2t_create(model);
    float *g1 = malloc(a->n_weights * sizeof(float)), *g2 = malloc(a->n_weights * sizeof(float));
    const gpt2t_dropout off = {0}, d1 = {0.1f, 0.1f, 0.1f, 0.1f, 7}, d2 = {0.1f, 0.1f, 0.1f, 0.1f, 8};
    double base = drop_step(tr, a, &off, g1);
    double l1 = drop_step(tr, a, &d1, g1), l1b = drop_step(tr, a, &d1, g2);
    CU_ASSERT_EQUAL(l1, l1b); /* the same seed: the same masks, bit for bit */
    CU_ASSERT_EQUAL(memcmp(g1, g2, a->n_weights * sizeof(float)), 0);
    double l2 = drop_step(tr, a, &d2, g2);
    printf("\n  loss without dropout %.5f, with p 0.1 seed 7 %.5f, seed 8 %.5f ", base, l1, l2);
    CU_ASSERT(fabs(l1 - base) > 1e-4 && fabs(l2 - base) > 1e-4 && fabs(l1 - l2) > 1e-4);
    CU_ASSERT(memcmp(g1, g2, a->n_weights * sizeof(float)) != 0);
    /* Each kind of dropout alone moves the loss. */
    for (int k = 0; k < 4; k++) {
        gpt2t_dropout one = {k == 0 ? 0.3f : 0, k == 1 ? 0.3f : 0, k == 2 ? 0.3f : 0, k == 3 ? 0.3f : 0, 7};
        CU_ASSERT(fabs(drop_step(tr, a, &one, g2) - base) > 1e-4);
    }
    /* The fraction kept is 1 − p. */
    size_t kept = 0, n = 100000;
    uint64_t key = gpt2t_dropout_key(7, 3, GPT2T_DROP_ATTN);
    for (size_t i = 0; i < n; i++)
        kept += (size_t)gpt2t_dropout_keep(key, i, 0.25f);
    CU_ASSERT(fabs((double)kept / (double)n - 0.75) < 0.01);
    /* A probability outside [0, 1) is refused; eval ignores dropout. */
    gpt2t_dropout bad = {0, 0, 1.0f, 0, 1};
    int32_t ids[2] = {0, 5};
    size_t len[1] = {2};
    unsigned char sc[2] = {0, 1};
    gpt2t_batch bt = {1, 2, ids, len, sc};
    float lp[2], lq[2];
    CU_ASSERT_EQUAL(gpt2t_forward(tr, a, &bt, 1, &bad, lp, &e), MDL_EINPUT);
    CU_ASSERT_EQUAL(gpt2t_forward(tr, a, &bt, 0, &d1, lp, &e), 0);
    CU_ASSERT_EQUAL(gpt2t_forward(tr, a, &bt, 0, NULL, lq, &e), 0);
    CU_ASSERT_EQUAL(lp[1], lq[1]);
    free(g1);
    free(g2);
    gpt2t_free(tr);
    adp_free(a);
}

/* Training with dropout follows the seed: the same adapter twice, another without dropout. */
static void test_training_dropout(void)
{
    if (!model)
        return;
    static char buf[32][16];
    trn_data *d = reversed_names(0, 32, buf);
    trn_params p = {.adapter = {.type = ADP_LORA, .r = 4, .lora_alpha = 8, .lora_dropout = 0.1f,
                                .targets = ADP_ALL_MODULES},
                    .base_dropout = {0.1f, 0.1f, 0.1f}, .epochs = 1, .batch_size = 8, .grad_accum = 1,
                    .learning_rate = 1e-2, .max_grad_norm = 1.0, .seed = 11};
    adp_adapter *a1 = NULL, *a2 = NULL, *a3 = NULL;
    mdl_error e;
    CU_ASSERT_EQUAL_FATAL(trn_run(model, tok, &p, d, NULL, NULL, &a1, &e), 0);
    CU_ASSERT_EQUAL_FATAL(trn_run(model, tok, &p, d, NULL, NULL, &a2, &e), 0);
    CU_ASSERT_EQUAL(memcmp(a1->weights, a2->weights, a1->n_weights * sizeof(float)), 0);
    p.disable_dropout = 1;
    CU_ASSERT_EQUAL_FATAL(trn_run(model, tok, &p, d, NULL, NULL, &a3, &e), 0);
    CU_ASSERT(memcmp(a1->weights, a3->weights, a1->n_weights * sizeof(float)) != 0);
    CU_ASSERT_EQUAL(a3->cfg.lora_dropout, 0.1f); /* still saved, as PEFT keeps it in the config */
    p.base_dropout.attn_pdrop = 1.0f;
    p.disable_dropout = 0;
    adp_adapter *bad = NULL;
    CU_ASSERT_EQUAL(trn_run(model, tok, &p, d, NULL, NULL, &bad, &e), MDL_EINPUT);
    CU_ASSERT_PTR_NULL(bad);

    /* lora_dropout goes into adapter_config.json as PEFT writes it, and comes back on load. */
    char root[] = "/tmp/ragd-lorad-XXXXXX", path[128];
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(root));
    a1->cfg.lora_dropout = 0.05f;
    CU_ASSERT_EQUAL_FATAL(trn_publish(a1, root, "dropped", "t1", "gpt2-names-makemore", &e), 0);
    snprintf(path, sizeof path, "%s/dropped/adapter_config.json", root);
    FILE *f = fopen(path, "r");
    char text[4096] = "";
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    text[fread(text, 1, sizeof text - 1, f)] = 0;
    fclose(f);
    CU_ASSERT(strstr(text, "\"lora_dropout\": 0.05,") != NULL);
    int fd = open(root, O_RDONLY | O_DIRECTORY);
    adp_adapter *back = NULL;
    CU_ASSERT_EQUAL(adp_load(fd, "dropped", gpt2_get_config(model), &back, &e), 0);
    CU_ASSERT(back && back->cfg.lora_dropout == 0.05f);
    adp_free(back);
    /* Out of [0, 1), or not a number: refused, naming the field. */
    static const char *const bad_values[] = {"1.5", "-0.1", "\"0.1\""};
    for (size_t i = 0; i < 3; i++) {
        char *at = strstr(text, "\"lora_dropout\": 0.05"), edited[4200];
        snprintf(edited, sizeof edited, "%.*s\"lora_dropout\": %s%s", (int)(at - text), text, bad_values[i],
                 at + strlen("\"lora_dropout\": 0.05"));
        write_text(path, edited);
        back = NULL;
        CU_ASSERT_EQUAL(adp_load(fd, "dropped", gpt2_get_config(model), &back, &e), MDL_EFORMAT);
        CU_ASSERT(strstr(e.msg, "lora_dropout") != NULL);
        CU_ASSERT_PTR_NULL(back);
    }
    close(fd);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    CU_ASSERT_EQUAL(system(cmd), 0);
    adp_free(a1);
    adp_free(a2);
    adp_free(a3);
    trn_data_free(d);
}

void cu_register(void)
{
    CU_pSuite s = CU_add_suite("optim_losses", NULL, NULL);
    CU_add_test(s, "linear schedule", test_schedule);
    CU_add_test(s, "clip by global norm", test_clip);
    CU_add_test(s, "one AdamW step by hand", test_adamw_step);
    CU_add_test(s, "SFT and DPO loss gradients", test_loss_gradients);
    CU_add_test(s, "prefix projection MLP gradient", test_prefix_mlp_gradient);
    if (!cu_testdata("checkpoints/gpt2-names-makemore")) {
        printf("skipped learning tests: ../shared/testdata not found\n");
        return;
    }
    s = CU_add_suite("train_makemore", setup, teardown);
    CU_add_test(s, "data: masks, truncation, bad rows", test_data);
    CU_add_test(s, "init: LoRA and prompt TEXT", test_init);
    CU_add_test(s, "dropout: the base's from config.json", test_base_dropout_config);
    CU_add_test(s, "dropout: masks follow the seed and change the loss", test_dropout_follows_seed);
    CU_add_test(s, "dropout: training reproducible, lora_dropout saved", test_training_dropout);
    CU_add_test(s, "LoRA SFT lowers held-out loss", test_lora_sft_learns);
    CU_add_test(s, "prompt tuning SFT lowers held-out loss", test_prompt_sft_learns);
    CU_add_test(s, "prefix tuning SFT lowers held-out loss", test_prefix_sft_learns);
    CU_add_test(s, "DPO lifts rewards/accuracies above 0.9", test_dpo_learns);
}
