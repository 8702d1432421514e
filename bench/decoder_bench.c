/* decoder_bench.c — ragd's GPT-2 decoder on a checkpoint of the real GPT-2 124M shape
 * (random weights): prefill tokens/s for a 128-token prompt and decode tokens/s at batch 1
 * with the KV cache, and decode as a fraction of the memory-bandwidth bound (weight bytes per
 * step over the measured read bandwidth). With ADAPTERS_DIR (holding a PEFT LoRA in `lora`):
 * decode tokens/s at batch 1 and for 4 concurrent sequences (one gpt2_decode_batch step for
 * all four, as the server runs concurrent requests), each without and with the LoRA, after a
 * 128-token prefill. Median of 5 runs. Prints JSON lines.
 *   usage: decoder_bench GPT2_DIR THREADS [ADAPTERS_DIR] */
#include <fcntl.h>
#include <unistd.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

#include "adapter.h"
#include "gpt2.h"
#include "kernels.h"

#define DECODE_STEPS 32

/* Decode tokens/s (all rows together) for B sequences, each after a 128-token prefill, all
 * with adapter `a` (or none). */
static double decode_rate(const gpt2_model *m, const adp_adapter *a, size_t B, const int32_t *prompt)
{
    const gpt2_config *c = gpt2_get_config(m);
    gpt2_cache *kc[4];
    const adp_adapter *ads[4] = {a, a, a, a};
    int32_t ids[4] = {11, 12, 13, 14};
    float *logits = malloc(B * c->vocab * sizeof *logits);
    mdl_error err;
    for (size_t b = 0; b < B; b++) {
        kc[b] = gpt2_cache_create(m, 128 + (RUNS + 1) * DECODE_STEPS);
        gpt2_forward_adapter(m, a, kc[b], prompt, 128, logits, NULL, &err);
    }
    double runs[RUNS];
    for (int r = 0; r < RUNS; r++) {
        double t0 = now();
        for (int s = 0; s < DECODE_STEPS; s++)
            if (B == 1 ? gpt2_forward_adapter(m, a, kc[0], ids, 1, logits, NULL, &err)
                       : gpt2_decode_batch(m, ads, kc, ids, B, logits, &err)) {
                fprintf(stderr, "decoder_bench: %s\n", err.msg);
                exit(1);
            }
        runs[r] = now() - t0;
    }
    for (size_t b = 0; b < B; b++)
        gpt2_cache_free(kc[b]);
    free(logits);
    return (double)(B * DECODE_STEPS) / median(runs, RUNS);
}

/* Read bandwidth: xor-reducing a 512 MB buffer (integer, so it vectorizes), best of 3. */
static double bandwidth_gbs(void)
{
    size_t n = (512u << 20) / sizeof(uint64_t);
    uint64_t *a = malloc(n * sizeof *a);
    for (size_t i = 0; i < n; i++)
        a[i] = i * 0x9e3779b97f4a7c15ull;
    double best = 0;
    volatile uint64_t sink = 0;
    for (int r = 0; r < 3; r++) {
        double t0 = now();
        uint64_t x = 0;
        for (size_t i = 0; i < n; i++)
            x ^= a[i];
        sink = x;
        double gbs = (double)(n * sizeof *a) / (now() - t0) / 1e9;
        best = gbs > best ? gbs : best;
    }
    (void)sink;
    free(a);
    return best;
}

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: decoder_bench GPT2_DIR THREADS [ADAPTERS_DIR]\n");
        return 2;
    }
    int threads = (int)strtol(argv[2], NULL, 10);
    k_set_threads(threads);
    gpt2_model *m;
    mdl_error err;
    if (gpt2_load(argv[1], &m, &err) != 0) {
        fprintf(stderr, "decoder_bench: %s\n", err.msg);
        return 1;
    }
    const gpt2_config *c = gpt2_get_config(m);
    int32_t prompt[128];
    for (int i = 0; i < 128; i++)
        prompt[i] = (int32_t)((i * 7919) % 50000);
    float *logits = malloc(c->vocab * sizeof *logits);
    gpt2_cache *kc = gpt2_cache_create(m, 256);
    double pre[RUNS], dec[RUNS];
    const int steps = 64;
    for (int r = 0; r < RUNS; r++) {
        gpt2_cache_reset(kc);
        double t0 = now();
        gpt2_forward(m, kc, prompt, 128, logits, NULL, &err);
        pre[r] = now() - t0;
        int32_t tok = 11;
        t0 = now();
        for (int s = 0; s < steps; s++)
            gpt2_forward(m, kc, &tok, 1, logits, NULL, &err);
        dec[r] = (now() - t0) / steps;
    }
    double prefill = median(pre, RUNS), step = median(dec, RUNS);
    double bw = bandwidth_gbs(), bytes = (double)gpt2_weight_bytes(m) - (double)c->n_positions * c->n_embd * 4;
    printf("{\"impl\":\"ragd\",\"threads\":%d,\"what\":\"prefill_128_tokens_per_s\",\"per_s\":%.1f}\n", threads, 128 / prefill);
    printf("{\"impl\":\"ragd\",\"threads\":%d,\"what\":\"decode_b1_tokens_per_s\",\"per_s\":%.1f}\n", threads, 1 / step);
    printf("{\"impl\":\"ragd\",\"threads\":%d,\"what\":\"decode_bandwidth_fraction\",\"weight_mb\":%.0f,\"read_gbs\":%.1f,"
           "\"bound_tokens_per_s\":%.1f,\"fraction\":%.2f}\n",
           threads, bytes / 1e6, bw, bw * 1e9 / bytes, (1 / step) / (bw * 1e9 / bytes));
    if (argc == 4) {
        adp_adapter *lora;
        int root = open(argv[3], O_RDONLY | O_DIRECTORY);
        if (adp_load(root, "lora", c, &lora, &err) != 0) {
            fprintf(stderr, "decoder_bench: %s\n", err.msg);
            return 1;
        }
        close(root);
        for (size_t B = 1; B <= 4; B += 3)
            for (int with = 0; with < 2; with++)
                printf("{\"impl\":\"ragd\",\"threads\":%d,\"what\":\"decode_b%zu_%s_tokens_per_s\",\"per_s\":%.1f}\n",
                       threads, B, with ? "lora" : "base", decode_rate(m, with ? lora : NULL, B, prompt));
        adp_free(lora);
    }
    gpt2_cache_free(kc);
    free(logits);
    gpt2_free(m);
    return 0;
}
