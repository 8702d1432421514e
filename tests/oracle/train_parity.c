/*
 * train_parity.c — adapter gradients against torch autograd (tests/reference/gpt2_grad_oracle.py)
 * on a random GPT-2 checkpoint: LoRA on every module, LoRA with rsLoRA on one layer, prompt
 * tuning and prefix tuning (plain, and with prefix_projection's MLP, whose parameters get
 * the gradients), each under SFT cross-entropy (completion-only) and the DPO
 * losses sigmoid (with label smoothing), ipo and hinge, the reference being the base model;
 * and LoRA, prompt and prefix tuning again in training mode with every dropout at 0.2
 * (embd, attn, resid, lora), the oracle drawing the same masks from the same seed.
 * Every gradient tensor within 1e-4 relative error (2-norm), the loss and every token log-prob
 * within 1e-5, and central finite differences on the largest gradient entries within 2%.
 * Micro-batches accumulate to the whole batch's gradient. AdamW (two parameter groups,
 * weight decay on one), the linear warmup/decay schedule and global-norm clipping over 5 steps
 * against torch.optim.AdamW + LambdaLR + clip_grad_norm_, within 1e-6.
 * Adapters ragd trains and publishes (trn_run, trn_publish) on the real gpt2-names-makemore
 * checkpoint -- LoRA (rsLoRA, lora_dropout, layers_to_transform, every module), prompt tuning
 * (TEXT init), prefix tuning plain and with prefix_projection -- load in the PyTorch oracle
 * (tests/reference/gpt2_oracle.py, PEFT's files and key names, target_modules checked) and
 * give ragd's logits within 1e-4, and ragd's own loader reads them back bit for bit.
 * Exits 1 on any mismatch.
 *
 * usage: train_parity CHECKPOINTS_DIR ORACLE_PY
 */
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "adapter.h"
#include "gpt2.h"
#include "gpt2_train.h"
#include "optim.h"
#include "safetensors.h"
#include "tokenizer.h"
#include "train.h"
#include "train_loss.h"

#define TOL_GRAD 1e-4
#define TOL_LOGP 1e-5
#define TOL_FD 2e-2
#define B_MAX 4
#define T 10

typedef struct {
    const char *name;
    adp_type type;
    unsigned targets;
    int rslora, one_layer, projection;
    float pdrop; /* every dropout's probability in the training forward */
} adapter_case;

#define PROJ_H 16 /* encoder_hidden_size of the projection case */

static const adapter_case adapters[] = {
    {"lora", ADP_LORA, ADP_ALL_MODULES, 0, 0, 0, 0.0f},
    {"lora-rs", ADP_LORA, ADP_MODULE_BIT(ADP_ATTN_C_ATTN) | ADP_MODULE_BIT(ADP_MLP_C_PROJ), 1, 1, 0, 0.0f},
    {"prompt", ADP_PROMPT_TUNING, 0, 0, 0, 0, 0.0f},
    {"prefix", ADP_PREFIX_TUNING, 0, 0, 0, 0, 0.0f},
    {"prefix-proj", ADP_PREFIX_TUNING, 0, 0, 0, 1, 0.0f},
    {"lora-drop", ADP_LORA, ADP_ALL_MODULES, 0, 0, 0, 0.2f},
    {"prompt-drop", ADP_PROMPT_TUNING, 0, 0, 0, 0, 0.2f},
    {"prefix-drop", ADP_PREFIX_TUNING, 0, 0, 0, 0, 0.2f},
};
#define DROP_SEED 20261128u
static const char *const losses[] = {"sft", "sigmoid", "ipo", "hinge"};

static int failures;
static uint64_t rng = 88172645463325252ull;

static double uniform(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

/* The batch: SFT rows of different lengths scored after a 3-token prompt; DPO 2 pairs
 * (chosen rows 0-1, rejected 2-3) sharing each pair's prompt. */
static void make_batch(int dpo, size_t V, int32_t *ids, size_t *len, unsigned char *scored, size_t *B)
{
    static const size_t sft_len[3] = {10, 7, 5}, dpo_len[4] = {9, 10, 6, 8};
    *B = dpo ? 4 : 3;
    memset(scored, 0, B_MAX * T);
    for (size_t b = 0; b < *B; b++) {
        len[b] = dpo ? dpo_len[b] : sft_len[b];
        for (size_t t = 0; t < T; t++) {
            ids[b * T + t] = (int32_t)(uniform() * (double)V);
            if (dpo && b >= 2 && t < 3)
                ids[b * T + t] = ids[(b - 2) * T + t];
            scored[b * T + t] = t >= 3 && t < len[b];
        }
    }
}

/* The loss of a training forward (with dropout `drop`, NULL: none), and its gradient added
 * into grad when grad is not NULL. */
static double loss_of(gpt2t *tr, const adp_adapter *a, const gpt2t_batch *bt, int li, const float *ref,
                      const gpt2t_dropout *drop, float *grad, float *logp)
{
    float dlogp[B_MAX * T];
    mdl_error e;
    if (gpt2t_forward(tr, a, bt, 1, drop, logp, &e) != 0) {
        fprintf(stderr, "FAIL forward: %s\n", e.msg);
        failures++;
        return NAN;
    }
    double loss;
    if (li == 0) {
        double n = 0;
        for (size_t i = 0; i < bt->B * T; i++)
            n += bt->scored[i];
        loss = sft_loss(logp, bt->scored, bt->B, T, n, dlogp);
    } else {
        dpo_params p = {(dpo_loss_type)dpo_loss_from_name(losses[li]), li == 2 ? 0.5 : 0.1, li == 1 ? 0.1 : 0.0};
        dpo_metrics m;
        loss = dpo_loss(&p, logp, ref, bt->scored, bt->B / 2, T, 1.0, dlogp, &m);
    }
    if (grad && gpt2t_backward(tr, dlogp, grad, &e) != 0) {
        fprintf(stderr, "FAIL backward: %s\n", e.msg);
        failures++;
    }
    return loss;
}

typedef struct {
    char dir[600], out[700];
    float *grad, logp[B_MAX * T];
    double loss;
    adp_adapter *a;
    size_t B;
    float *theta, *dtheta; /* the projection MLP's parameters and their gradient */
} result;

/* The projection's tensors (PEFT's PrefixEncoder names) as offsets into theta. */
static const float *proj_view(const result *r, const float *base, const char *name, size_t L)
{
    size_t nvt = r->a->cfg.num_virtual_tokens, C = r->a->n_embd, H = PROJ_H, O = 2 * L * C;
    size_t off[5] = {0, nvt * C, nvt * C + H * C, nvt * C + H * C + H, nvt * C + H * C + H + O * H};
    static const char *const names[5] = {"embedding.weight", "transform.0.weight", "transform.0.bias",
                                         "transform.2.weight", "transform.2.bias"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(name, names[i]))
            return base + off[i];
    return NULL;
}

static void compare(const result *r, const char *label)
{
    sft_set *s;
    mdl_error e;
    if (sft_open_file(r->out, &s, &e) != 0) {
        fprintf(stderr, "FAIL %s: %s\n", label, e.msg);
        failures++;
        return;
    }
    float oracle_loss, logp[B_MAX * T];
    const sft_tensor *tl = sft_find(s, "loss"), *tp = sft_find(s, "logp");
    double worst_logp = 0, worst_grad = 0;
    if (!tl || !tp || tp->numel != r->B * T || sft_to_f32(tl, &oracle_loss, &e) || sft_to_f32(tp, logp, &e)) {
        fprintf(stderr, "FAIL %s: the oracle's output lacks loss or logp\n", label);
        failures++;
        sft_close(s);
        return;
    }
    for (size_t i = 0; i < r->B * T; i++)
        worst_logp = fmax(worst_logp, fabs(logp[i] - r->logp[i]) / fmax(1.0, fabs(logp[i])));
    double dloss = fabs(oracle_loss - r->loss) / fmax(1.0, fabs(oracle_loss));
    size_t n_tensors = 0;
    for (size_t i = 0; i < sft_count(s); i++) {
        const sft_tensor *t = sft_at(s, i);
        if (!strcmp(t->name, "loss") || !strcmp(t->name, "logp"))
            continue;
        /* The tensor's place in our weight buffer, through the adapter's own views. */
        const float *mine = NULL;
        const adp_adapter *a = r->a;
        if (r->dtheta) {
            mine = proj_view(r, r->dtheta, t->name, a->n_layer);
        } else if (a->cfg.type != ADP_LORA) {
            mine = r->grad + (a->prompt - a->weights);
        } else {
            for (size_t l = 0; l < a->n_layer && !mine; l++)
                for (int mod = 0; mod < ADP_N_MODULES && !mine; mod++) {
                    const adp_lora *lo = adp_lora_at(a, l, (adp_module)mod);
                    char ka[160], kb[160];
                    snprintf(ka, sizeof ka, "base_model.model.transformer.h.%zu.%s.lora_A.weight", l,
                             adp_module_name((adp_module)mod));
                    snprintf(kb, sizeof kb, "base_model.model.transformer.h.%zu.%s.lora_B.weight", l,
                             adp_module_name((adp_module)mod));
                    if (lo && !strcmp(t->name, ka))
                        mine = r->grad + (lo->A - a->weights);
                    else if (lo && !strcmp(t->name, kb))
                        mine = r->grad + (lo->B - a->weights);
                }
        }
        float *g = malloc(t->numel * sizeof(float));
        if (!mine || !g || sft_to_f32(t, g, &e)) {
            fprintf(stderr, "FAIL %s: tensor %s unknown or unreadable\n", label, t->name);
            failures++;
            free(g);
            continue;
        }
        double dn = 0, gn = 0;
        for (size_t k = 0; k < t->numel; k++) {
            dn += ((double)g[k] - mine[k]) * ((double)g[k] - mine[k]);
            gn += (double)g[k] * g[k];
        }
        double rel = sqrt(dn) / fmax(sqrt(gn), 1e-12);
        worst_grad = fmax(worst_grad, rel);
        if (gn == 0)
            fprintf(stderr, "FAIL %s: the oracle's gradient of %s is zero\n", label, t->name), failures++;
        n_tensors++;
        free(g);
    }
    printf("%-16s loss %.6f (oracle %.6f) logp max rel %.1e, %zu tensors, grad max rel err %.2e\n", label, r->loss,
           oracle_loss, worst_logp, n_tensors, worst_grad);
    if (!(worst_grad <= TOL_GRAD) || !(worst_logp <= TOL_LOGP) || !(dloss <= TOL_LOGP) || n_tensors == 0) {
        fprintf(stderr, "FAIL %s\n", label);
        failures++;
    }
    sft_close(s);
}

/* Central differences on the 2 largest gradient entries (the loss computed in double from
 * float log-probs, so h is large and the tolerance loose: this checks the backward's
 * structure independently of torch). */
static void finite_differences(gpt2t *tr, result *r, const gpt2t_batch *bt, int li, const float *ref,
                               const gpt2t_dropout *drop, const char *label)
{
    adp_adapter *a = r->a;
    float logp[B_MAX * T];
    for (int pick = 0; pick < 2; pick++) {
        size_t best = 0;
        for (size_t i = 0; i < a->n_weights; i++)
            if (fabsf(r->grad[i]) > fabsf(r->grad[best]) && (pick == 0 || i != best))
                best = i;
        if (pick == 1) { /* the second largest */
            size_t first = best;
            best = first == 0 ? 1 : 0;
            for (size_t i = 0; i < a->n_weights; i++)
                if (i != first && fabsf(r->grad[i]) > fabsf(r->grad[best]))
                    best = i;
        }
        float keep = a->weights[best], h = 1e-2f * fmaxf(1.0f, fabsf(keep));
        a->weights[best] = keep + h;
        double up = loss_of(tr, a, bt, li, ref, drop, NULL, logp);
        a->weights[best] = keep - h;
        double down = loss_of(tr, a, bt, li, ref, drop, NULL, logp);
        a->weights[best] = keep;
        double fd = (up - down) / (2.0 * h), rel = fabs(fd - r->grad[best]) / fmax(fabs(fd), 1e-6);
        if (!(rel <= TOL_FD)) {
            fprintf(stderr, "FAIL %s: finite difference at %zu: %.6e vs backward %.6e\n", label, best, fd,
                    (double)r->grad[best]);
            failures++;
        }
    }
}

/* AdamW over 5 steps: the first ND parameters decayed, grads of growing scale so that some
 * steps clip. Writes the request; adamw_compare reads the oracle's answer. */
#define NP 40
#define ND 25
#define STEPS 5
static float adamw_theta[STEPS][NP], adamw_norm[STEPS];

static void adamw_request(FILE *f, const char *out)
{
    float theta[NP], grads[STEPS][NP];
    for (size_t i = 0; i < NP; i++)
        theta[i] = (float)(uniform() * 2 - 1);
    opt_hparams h = {.lr = 0.05, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.1};
    fprintf(f, "{\"out\": \"%s\", \"adamw\": {\"n_decay\": %d, \"lr\": %g, \"beta1\": %g, \"beta2\": %g, "
               "\"eps\": %g, \"weight_decay\": %g, \"warmup\": 2, \"total\": %d, \"max_norm\": 1.0, \"theta\": [",
            out, ND, h.lr, h.beta1, h.beta2, h.eps, h.weight_decay, STEPS);
    for (size_t i = 0; i < NP; i++)
        fprintf(f, "%s%.9g", i ? ", " : "", (double)theta[i]);
    fprintf(f, "], \"grads\": [");
    for (size_t s = 0; s < STEPS; s++) {
        fprintf(f, "%s[", s ? ", " : "");
        for (size_t i = 0; i < NP; i++) {
            grads[s][i] = (float)((uniform() * 2 - 1) * 0.15 * (double)(s + 1));
            fprintf(f, "%s%.9g", i ? ", " : "", (double)grads[s][i]);
        }
        fprintf(f, "]");
    }
    fprintf(f, "]}}\n");
    opt_adamw o;
    opt_adamw_init(&o, NP);
    const size_t decay[1][2] = {{0, ND}};
    for (long s = 0; s < STEPS; s++) {
        adamw_norm[s] = (float)opt_clip_grad_norm(grads[s], NP, 1.0);
        opt_adamw_step(&o, &h, h.lr * opt_linear_schedule(s, 2, STEPS), theta, grads[s], decay, 1);
        memcpy(adamw_theta[s], theta, sizeof theta);
    }
    opt_adamw_deinit(&o);
}

static void adamw_compare(const char *out)
{
    sft_set *s;
    mdl_error e;
    float theta[STEPS * NP], norm[STEPS];
    const sft_tensor *tt, *tn;
    if (sft_open_file(out, &s, &e) != 0 || !(tt = sft_find(s, "theta")) || !(tn = sft_find(s, "grad_norm")) ||
        tt->numel != STEPS * NP || tn->numel != STEPS || sft_to_f32(tt, theta, &e) || sft_to_f32(tn, norm, &e)) {
        fprintf(stderr, "FAIL adamw: no usable oracle output\n");
        failures++;
        return;
    }
    double worst = 0, worst_norm = 0;
    int clipped = 0;
    for (size_t k = 0; k < STEPS; k++) {
        for (size_t i = 0; i < NP; i++)
            worst = fmax(worst, fabs(theta[k * NP + i] - adamw_theta[k][i]) / fmax(1.0, fabs(theta[k * NP + i])));
        worst_norm = fmax(worst_norm, fabs(norm[k] - adamw_norm[k]) / norm[k]);
        clipped += norm[k] > 1.0f;
    }
    printf("%-16s %d steps (%d clipped), theta max rel err %.1e, grad_norm max rel err %.1e\n", "adamw", STEPS,
           clipped, worst, worst_norm);
    if (!(worst <= 1e-6) || !(worst_norm <= 1e-6) || clipped == 0 || clipped == STEPS) {
        fprintf(stderr, "FAIL adamw\n");
        failures++;
    }
    sft_close(s);
}

/* Two micro-batches (rows 0-1, then row 2) with the step's token count give the whole
 * batch's gradient. */
static void accumulation(gpt2t *tr, const result *r, const gpt2t_batch *bt)
{
    float logp[B_MAX * T], dlogp[B_MAX * T], *g = calloc(r->a->n_weights, sizeof(float));
    double n = 0, loss = 0;
    mdl_error e;
    for (size_t i = 0; i < bt->B * T; i++)
        n += bt->scored[i];
    for (size_t part = 0; part < 2; part++) {
        size_t first = part ? 2 : 0, rows = part ? 1 : 2;
        gpt2t_batch sub = {rows, T, bt->ids + first * T, bt->len + first, bt->scored + first * T};
        if (gpt2t_forward(tr, r->a, &sub, 1, NULL, logp, &e) || (loss += sft_loss(logp, sub.scored, rows, T, n, dlogp), 0) ||
            gpt2t_backward(tr, dlogp, g, &e)) {
            fprintf(stderr, "FAIL accumulation: %s\n", e.msg);
            failures++;
        }
    }
    double dn = 0, gn = 0;
    for (size_t i = 0; i < r->a->n_weights; i++) {
        dn += ((double)g[i] - r->grad[i]) * ((double)g[i] - r->grad[i]);
        gn += (double)r->grad[i] * r->grad[i];
    }
    printf("%-16s loss %.6f vs %.6f, grad rel diff %.1e\n", "accumulation", loss, r->loss, sqrt(dn / gn));
    if (!(sqrt(dn / gn) <= 1e-5) || !(fabs(loss - r->loss) <= 1e-5 * fabs(r->loss))) {
        fprintf(stderr, "FAIL accumulation\n");
        failures++;
    }
    free(g);
}

/* ---- adapters ragd trains and publishes, read by the oracle ---- */

typedef struct {
    const char *name;
    adp_type type;
    int projection;
} published_case;

/* ragd's logits [n, V] for ids with adapter a (the serving forward), or -1. */
static int serve_logits(const gpt2_model *m, const adp_adapter *a, const int32_t *ids, size_t n, float *logits)
{
    mdl_error e;
    gpt2_cache *kc = gpt2_cache_create(m, 0);
    float *last = malloc(gpt2_get_config(m)->vocab * sizeof(float));
    int rc = !kc || !last || gpt2_begin(m, a, kc, &e) || gpt2_forward_adapter(m, a, kc, ids, n, last, logits, &e);
    if (rc)
        fprintf(stderr, "FAIL serving forward: %s\n", e.msg);
    gpt2_cache_free(kc);
    free(last);
    return rc ? -1 : 0;
}

static void published(const char *work, const char *oracle_dir)
{
    const char *shared = getenv("RAGD_SHARED");
    char dir[600], root[700], cmd[2400], reqp[720];
    snprintf(dir, sizeof dir, "%s/testdata/checkpoints/gpt2-names-makemore", shared ? shared : "../shared");
    snprintf(root, sizeof root, "%s/published", work);
    gpt2_model *m;
    tok_tokenizer *tok;
    mdl_error e;
    tok_error te;
    if (gpt2_load(dir, &m, &e) != 0 || tok_load_dir(dir, &tok, &te) != 0) {
        fprintf(stderr, "FAIL published: cannot load %s\n", dir);
        failures++;
        return;
    }
    const gpt2_config *c = gpt2_get_config(m);
    static const char *const names[] = {".emma", ".olivia", ".ava", ".isabella", ".sophia", ".mia", ".amelia",
                                        ".harper", ".evelyn", ".abigail", ".emily", ".ella"};
    enum { NR = sizeof names / sizeof *names };
    trn_row rows[NR];
    for (size_t i = 0; i < NR; i++)
        rows[i] = (trn_row){.text = names[i]};
    trn_data *d = NULL;
    size_t bad;
    if (trn_data_build(tok, c, 0, rows, NR, 16, 1, &d, &bad, &e) != 0) {
        fprintf(stderr, "FAIL published: data: %s\n", e.msg);
        failures++;
        tok_destroy(tok);
        gpt2_free(m);
        return;
    }
    static const published_case cases[] = {{"lora", ADP_LORA, 0}, {"prompt", ADP_PROMPT_TUNING, 0},
                                           {"prefix", ADP_PREFIX_TUNING, 0}, {"prefix-proj", ADP_PREFIX_TUNING, 1}};
    enum { NC = sizeof cases / sizeof *cases };
    static const int32_t ids[] = {0, 13, 9, 1, 0, 5};
    enum { NI = sizeof ids / sizeof *ids };
    size_t V = c->vocab;
    float *mine = malloc(NC * NI * V * sizeof(float)), *base = malloc(NI * V * sizeof(float));
    unsigned char layers[64] = {0};
    layers[1] = layers[c->n_layer - 1] = 1;
    snprintf(reqp, sizeof reqp, "%s/published.jsonl", work);
    FILE *f = fopen(reqp, "w");
    int ok[NC] = {0};
    serve_logits(m, NULL, ids, NI, base);
    for (size_t k = 0; k < NC; k++) {
        trn_params p = {.adapter = {.type = cases[k].type, .r = 4, .lora_alpha = 6, .lora_dropout = 0.05f,
                                    .use_rslora = 1, .targets = ADP_ALL_MODULES, .layers = layers,
                                    .num_virtual_tokens = 3},
                        .prompt_init = TRN_INIT_TEXT, .prompt_init_text = "ab",
                        .prefix_projection = cases[k].projection, .encoder_hidden_size = 16,
                        .base_dropout = {0.1f, 0.1f, 0.1f}, .epochs = 2, .batch_size = 4, .grad_accum = 1,
                        .learning_rate = 2e-2, .max_grad_norm = 1.0, .seed = 5 + k};
        adp_adapter *a = NULL, *back = NULL;
        if (trn_run(m, tok, &p, d, NULL, NULL, &a, &e) != 0 || trn_publish(a, root, cases[k].name, "t", "makemore", &e)) {
            fprintf(stderr, "FAIL published %s: %s\n", cases[k].name, e.msg);
            failures++;
            adp_free(a);
            continue;
        }
        int fd = open(root, O_RDONLY | O_DIRECTORY);
        if (adp_load(fd, cases[k].name, c, &back, &e) != 0 || back->n_weights != a->n_weights ||
            memcmp(back->weights, a->weights, a->n_weights * sizeof(float)) != 0) {
            fprintf(stderr, "FAIL published %s: ragd does not read back what it wrote\n", cases[k].name);
            failures++;
        }
        close(fd);
        adp_free(back);
        if (serve_logits(m, a, ids, NI, mine + k * NI * V) == 0) {
            ok[k] = 1;
            fprintf(f, "{\"dir\": \"%s\", \"adapter\": \"%s/%s\", \"greedy\": 0, \"ids\": [", dir, root,
                    cases[k].name);
            for (size_t i = 0; i < NI; i++)
                fprintf(f, "%s%d", i ? ", " : "", ids[i]);
            fprintf(f, "]}\n");
        }
        adp_free(a);
    }
    fclose(f);
    char out[740];
    snprintf(out, sizeof out, "%s/published-out.jsonl", work);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/gpt2_oracle.py < %s > %s", oracle_dir, reqp, out);
    FILE *in = system(cmd) == 0 ? fopen(out, "r") : NULL;
    if (!in) {
        fprintf(stderr, "FAIL published: the oracle failed\n");
        failures++;
    }
    for (size_t k = 0; in && k < NC; k++) {
        if (!ok[k])
            continue;
        json_error_t je;
        json_t *r = json_loadf(in, JSON_DISABLE_EOF_CHECK, &je), *lg = json_object_get(r, "logits");
        double worst = 0, moved = 0;
        for (size_t i = 0; i < NI; i++)
            for (size_t v = 0; v < V; v++) {
                double o = json_number_value(json_array_get(json_array_get(lg, i), v));
                worst = fmax(worst, fabs(o - mine[(k * NI + i) * V + v]));
                moved = fmax(moved, fabs(o - base[i * V + v]));
            }
        printf("%-16s published, in the oracle: %zu positions, max |diff| %.2e (moved the base by %.3f)\n",
               cases[k].name, json_array_size(lg), worst, moved);
        if (json_array_size(lg) != NI || !(worst <= 1e-4) || !(moved > 1e-3)) {
            fprintf(stderr, "FAIL published %s\n", cases[k].name);
            failures++;
        }
        json_decref(r);
    }
    if (in)
        fclose(in);
    free(mine);
    free(base);
    trn_data_free(d);
    tok_destroy(tok);
    gpt2_free(m);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: train_parity CHECKPOINTS_DIR ORACLE_PY\n");
        return 2;
    }
    char base_dir[600], req[700], cmd[2200];
    snprintf(base_dir, sizeof base_dir, "%s/gpt2-tied", argv[1]);
    gpt2_model *m;
    mdl_error e;
    if (gpt2_load(base_dir, &m, &e) != 0) {
        fprintf(stderr, "FAIL load: %s\n", e.msg);
        return 1;
    }
    const gpt2_config *cfg = gpt2_get_config(m);
    gpt2t *tr = gpt2t_create(m);
    enum { NA = sizeof adapters / sizeof *adapters, NL = sizeof losses / sizeof *losses };
    static result res[NA * NL];
    snprintf(req, sizeof req, "%s/train-requests.jsonl", argv[1]);
    FILE *f = fopen(req, "w");
    for (size_t ai = 0; ai < NA; ai++)
        for (size_t li = 0; li < NL; li++) {
            const adapter_case *ac = &adapters[ai];
            result *r = &res[ai * NL + li];
            char label[64];
            snprintf(label, sizeof label, "%s/%s", ac->name, losses[li]);
            unsigned char layers[64] = {0};
            layers[cfg->n_layer - 1] = 1;
            adp_config c = {.type = ac->type, .r = 4, .lora_alpha = ac->rslora ? 6.0f : 8.0f,
                            .use_rslora = ac->rslora, .targets = ac->targets,
                            .layers = ac->one_layer ? layers : NULL, .num_virtual_tokens = 3};
            if (adp_create(cfg, &c, &r->a, &e) != 0) {
                fprintf(stderr, "FAIL %s: %s\n", label, e.msg);
                failures++;
                continue;
            }
            for (size_t i = 0; i < r->a->n_weights; i++)
                r->a->weights[i] = (float)((uniform() * 2 - 1) * (ac->type == ADP_LORA ? 0.3 : 0.5));
            size_t L = cfg->n_layer, C = cfg->n_embd, n_theta = trn_prefix_mlp_size(3, C, PROJ_H, L);
            if (ac->projection) { /* the prefix is the MLP's output */
                r->theta = malloc(n_theta * sizeof(float));
                r->dtheta = calloc(n_theta, sizeof(float));
                for (size_t i = 0; i < n_theta; i++)
                    r->theta[i] = (float)((uniform() * 2 - 1) * 0.4);
                trn_prefix_mlp_forward(r->theta, 3, C, PROJ_H, L, r->a->prompt);
            }
            snprintf(r->dir, sizeof r->dir, "%s/adapter-%s-%s", argv[1], ac->name, losses[li]);
            snprintf(r->out, sizeof r->out, "%s/grad.safetensors", r->dir);
            mkdir(r->dir, 0755);
            if (adp_save(r->a, r->dir, NULL, &e) != 0) {
                fprintf(stderr, "FAIL %s: save: %s\n", label, e.msg);
                failures++;
                continue;
            }
            int32_t ids[B_MAX * T];
            size_t len[B_MAX];
            unsigned char scored[B_MAX * T];
            make_batch(li > 0, cfg->vocab, ids, len, scored, &r->B);
            gpt2t_batch bt = {r->B, T, ids, len, scored};
            float ref[B_MAX] = {0}, rlogp[B_MAX * T];
            if (li > 0) { /* the reference: the base model, adapter off */
                if (gpt2t_forward(tr, NULL, &bt, 0, NULL, rlogp, &e) != 0) {
                    fprintf(stderr, "FAIL %s: %s\n", label, e.msg);
                    failures++;
                }
                for (size_t b = 0; b < r->B; b++)
                    for (size_t t = 0; t < T; t++)
                        ref[b] += rlogp[b * T + t];
            }
            r->grad = calloc(r->a->n_weights, sizeof(float));
            float pd = ac->pdrop;
            gpt2t_dropout drop = {pd, pd, pd, pd, DROP_SEED + ai * NL + li};
            r->loss = loss_of(tr, r->a, &bt, (int)li, ref, &drop, r->grad, r->logp);
            finite_differences(tr, r, &bt, (int)li, ref, &drop, label);
            char proj[800] = "";
            if (ac->projection) {
                trn_prefix_mlp_backward(r->theta, 3, C, PROJ_H, L, r->grad, r->dtheta);
                static const char *const pn[5] = {"embedding.weight", "transform.0.weight", "transform.0.bias",
                                                  "transform.2.weight", "transform.2.bias"};
                const uint64_t shapes[5][2] = {{3, C}, {PROJ_H, C}, {PROJ_H, 0}, {2 * L * C, PROJ_H}, {2 * L * C, 0}};
                sft_write_tensor wt[5];
                for (int k = 0; k < 5; k++)
                    wt[k] = (sft_write_tensor){pn[k], shapes[k][1] ? 2u : 1u, {shapes[k][0], shapes[k][1]},
                                               proj_view(r, r->theta, pn[k], L)};
                snprintf(proj, sizeof proj, "%s/projection.safetensors", r->dir);
                if (sft_write_file(proj, wt, 5, &e) != 0) {
                    fprintf(stderr, "FAIL %s: %s\n", label, e.msg);
                    failures++;
                }
            }
            if (ai == 0 && li == 0)
                accumulation(tr, r, &bt);
            /* the request */
            fprintf(f, "{\"dir\": \"%s\", \"out\": \"%s\", \"adapter\": {\"type\": \"%s\", \"file\": "
                        "\"%s/adapter_model.safetensors\", \"r\": 4, \"lora_alpha\": %g, \"use_rslora\": %s, "
                        "\"num_virtual_tokens\": 3, %s%s%s\"targets\": [",
                    base_dir, r->out, adp_type_name(ac->type), r->dir, (double)c.lora_alpha,
                    ac->rslora ? "true" : "false", proj[0] ? "\"projection\": {\"file\": \"" : "", proj,
                    proj[0] ? "\"}, " : "");
            for (int mod = 0, first = 1; mod < ADP_N_MODULES; mod++)
                if (ac->targets & ADP_MODULE_BIT(mod)) {
                    fprintf(f, "%s\"%s\"", first ? "" : ", ", adp_module_name((adp_module)mod));
                    first = 0;
                }
            fprintf(f, "]}, \"ids\": [");
            for (size_t b = 0; b < r->B; b++) {
                fprintf(f, "%s[", b ? ", " : "");
                for (size_t t = 0; t < T; t++)
                    fprintf(f, "%s%d", t ? ", " : "", ids[b * T + t]);
                fprintf(f, "]");
            }
            fprintf(f, "], \"scored\": [");
            for (size_t b = 0; b < r->B; b++) {
                fprintf(f, "%s[", b ? ", " : "");
                for (size_t t = 0; t < T; t++)
                    fprintf(f, "%s%d", t ? ", " : "", scored[b * T + t]);
                fprintf(f, "]");
            }
            fprintf(f, "]");
            if (pd > 0)
                fprintf(f, ", \"dropout\": {\"lora\": %.9g, \"embd\": %.9g, \"attn\": %.9g, \"resid\": %.9g, "
                           "\"seed\": %llu}",
                        (double)pd, (double)pd, (double)pd, (double)pd, (unsigned long long)drop.seed);
            if (li == 0)
                fprintf(f, ", \"loss\": {\"type\": \"sft\"}}\n");
            else
                fprintf(f, ", \"loss\": {\"type\": \"dpo\", \"loss_type\": \"%s\", \"beta\": %g, \"label_smoothing\": %g}}\n",
                        losses[li], li == 2 ? 0.5 : 0.1, li == 1 ? 0.1 : 0.0);
        }
    char adamw_out[700];
    snprintf(adamw_out, sizeof adamw_out, "%s/adamw.safetensors", argv[1]);
    adamw_request(f, adamw_out);
    fclose(f);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s < %s > /dev/null", argv[2], req);
    if (system(cmd) != 0) {
        fprintf(stderr, "FAIL: the oracle failed\n");
        failures++;
    } else {
        for (size_t i = 0; i < NA * NL; i++) {
            char label[64];
            snprintf(label, sizeof label, "%s/%s", adapters[i / NL].name, losses[i % NL]);
            if (res[i].grad)
                compare(&res[i], label);
        }
        adamw_compare(adamw_out);
    }
    for (size_t i = 0; i < NA * NL; i++) {
        adp_free(res[i].a);
        free(res[i].grad);
        free(res[i].theta);
        free(res[i].dtheta);
    }
    gpt2t_free(tr);
    gpt2_free(m);
    char oracle_dir[600];
    snprintf(oracle_dir, sizeof oracle_dir, "%s", argv[2]);
    char *slash = strrchr(oracle_dir, '/');
    if (slash)
        *slash = 0;
    published(argv[1], slash ? oracle_dir : ".");
    printf("%d cases, %d failed\n", NA * NL, failures);
    return failures ? 1 : 0;
}
