/*
 * train_bench.c — one LoRA SFT optimizer step (forward with saved activations, backward
 * through the frozen base, clipping, AdamW) on a GPT-2 checkpoint, batch 4 × 128 tokens,
 * LoRA r=8 on c_attn (PEFT's default for GPT-2), every token scored, dropout off (as in the
 * peer). Prints JSON: the median step time over RUNS steps after one warm-up, wall-clock and
 * the process's CPU time (the fairer figure on a shared machine, where another process can
 * take the core mid-step), and the process's peak RSS.
 *
 * usage: train_bench GPT2_DIR THREADS
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

#define B 4
#define T 128

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: train_bench GPT2_DIR THREADS\n");
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
    for (size_t i = 0; i < a->n_weights; i++) /* A small and B non-zero, so every product is real work */
        a->weights[i] = (float)((int)(i * 2654435761u % 2001) - 1000) * 1e-5f;
    static int32_t ids[B * T];
    static size_t len[B];
    static unsigned char scored[B * T];
    static float logp[B * T], dlogp[B * T];
    for (size_t i = 0; i < B * T; i++) { /* the same ids as train_peer.py */
        ids[i] = (int32_t)((i * 7919) % 50000);
        scored[i] = i % T != 0;
    }
    for (size_t b = 0; b < B; b++)
        len[b] = T;
    gpt2t_batch bt = {B, T, ids, len, scored};
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
        loss = sft_loss(logp, scored, B, T, (double)(B * (T - 1)), dlogp);
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
    printf("{\"impl\": \"ragd\", \"threads\": %ld, \"step_s\": %.4f, \"cpu_s\": %.4f, \"tokens_per_s\": %.1f, "
           "\"peak_rss_mb\": %.1f, \"activation_mb\": %.1f, \"loss\": %.4f}\n",
           threads, median(runs, RUNS), median(cpu, RUNS), B * T / median(runs, RUNS), (double)ru.ru_maxrss / 1024.0,
           (double)gpt2t_bytes(tr) / 1048576.0, loss);
    opt_adamw_deinit(&o);
    free(grad);
    gpt2t_free(tr);
    adp_free(a);
    gpt2_free(m);
    return 0;
}
