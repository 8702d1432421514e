/*
 * train_bench.c — one LoRA SFT optimizer step (forward with saved activations, backward
 * through the frozen base, clipping, AdamW) on a GPT-2 checkpoint, batch 4 × 128 tokens,
 * LoRA r=8 on c_attn (PEFT's default for GPT-2), dropout off (as in the peer). Two batches,
 * both as TRL's SFTTrainer builds them (bench/README.md):
 *   text        four {text} rows packed to 128 tokens, every token scored (packing=True);
 *   completion  four {prompt, completion} rows of different lengths padded on the right to
 *               the longest (128), loss on the completion tokens only (TRL's default for
 *               prompt-completion data).
 * The ids, lengths and LoRA weights are the ones bench/train_peer.py builds. Prints JSON: the
 * median step time over RUNS steps after one warm-up, wall-clock and the process's CPU time
 * (the fairer figure on a shared machine, where another process can take the core mid-step),
 * and the process's peak RSS.
 *
 * usage: train_bench GPT2_DIR THREADS text|completion
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench.h"
#include "gpt2_train.h"
#include "kernels.h"
#include "optim.h"
#include "train_loss.h"

#define NB 4
#define NT 128

/* The completion batch: each row's length (EOS included) and prompt length; the same in
 * train_peer.py. */
static const size_t row_len[NB] = {128, 109, 93, 71}, prompt_len[NB] = {41, 29, 52, 35};

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    int completion = argc == 4 && strcmp(argv[3], "completion") == 0;
    if (argc != 4 || (!completion && strcmp(argv[3], "text") != 0)) {
        fprintf(stderr, "usage: train_bench GPT2_DIR THREADS text|completion\n");
        return 2;
    }
    long threads = strtol(argv[2], NULL, 10);
    if (threads < 1 || threads > 1024)
        threads = 1;
    k_set_threads((int)threads);
    gpt2_model *m;
    mdl_error e;
    if (gpt2_load(argv[1], &m, &e) != 0) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    const gpt2_config *c = gpt2_get_config(m);
    adp_config cfg = {.type = ADP_LORA, .r = 8, .lora_alpha = 16, .targets = ADP_MODULE_BIT(ADP_ATTN_C_ATTN)};
    adp_adapter *a;
    if (adp_create(c, &cfg, &a, &e) != 0) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    for (size_t l = 0; l < c->n_layer; l++) { /* A small and B non-zero, so every product is real work */
        const adp_lora *lo = adp_lora_at(a, l, ADP_ATTN_C_ATTN);
        for (size_t i = 0; i < lo->r * lo->in; i++)
            lo->A[i] = (float)((int)(i * 2654435761u % 2001) - 1000) * 1e-5f;
        for (size_t i = 0; i < lo->out * lo->r; i++)
            lo->B[i] = 1e-3f;
    }
    static int32_t ids[NB * NT];
    static size_t len[NB];
    static unsigned char scored[NB * NT];
    static float logp[NB * NT], dlogp[NB * NT];
    size_t n_scored = 0;
    for (size_t b = 0; b < NB; b++) {
        len[b] = completion ? row_len[b] : NT;
        for (size_t t = 0; t < NT; t++) { /* pads are EOS, as TRL pads GPT-2 */
            ids[b * NT + t] = t < len[b] ? (int32_t)(((b * NT + t) * 7919) % 50000) : 50256;
            scored[b * NT + t] = t >= (completion ? prompt_len[b] : 1) && t < len[b];
            n_scored += scored[b * NT + t];
        }
    }
    gpt2t_batch bt = {NB, NT, ids, len, scored};
    gpt2t *tr = gpt2t_create(m);
    float *grad = calloc(a->n_weights, sizeof(float));
    opt_adamw o;
    opt_adamw_init(&o, a->n_weights);
    opt_hparams h = {1e-4, 0.9, 0.999, 1e-8, 0.0};
    double runs[RUNS], cpu[RUNS], loss = 0;
    for (int r = -1; r < RUNS; r++) {
        double t0 = now(), c0 = cpu_now();
        memset(grad, 0, a->n_weights * sizeof(float));
        if (gpt2t_forward(tr, a, &bt, 1, NULL, logp, &e) != 0) {
            fprintf(stderr, "%s\n", e.msg);
            return 1;
        }
        loss = sft_loss(logp, scored, NB, NT, (double)n_scored, dlogp);
        gpt2t_backward(tr, dlogp, grad, &e);
        opt_clip_grad_norm(grad, a->n_weights, 1.0);
        opt_adamw_step(&o, &h, h.lr, a->weights, grad, NULL, 0);
        if (r >= 0) {
            runs[r] = now() - t0;
            cpu[r] = cpu_now() - c0;
        }
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"impl\": \"ragd\", \"data\": \"%s\", \"threads\": %ld, \"step_s\": %.4f, \"cpu_s\": %.4f, "
           "\"scored_tokens\": %zu, \"peak_rss_mb\": %.1f, \"activation_mb\": %.1f, \"loss\": %.4f}\n",
           argv[3], threads, median(runs, RUNS), median(cpu, RUNS), n_scored, (double)ru.ru_maxrss / 1024.0,
           (double)gpt2t_bytes(tr) / 1048576.0, loss);
    opt_adamw_deinit(&o);
    free(grad);
    gpt2t_free(tr);
    adp_free(a);
    gpt2_free(m);
    return 0;
}
