#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* xoshiro256** seeded through splitmix64. */
void smp_seed(smp_rng *rng, uint64_t seed)
{
    for (int i = 0; i < 4; i++) {
        seed += 0x9e3779b97f4a7c15ull;
        uint64_t z = seed;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        rng->s[i] = z ^ (z >> 31);
    }
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static double uniform(smp_rng *r)
{
    uint64_t *s = r->s, result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return (double)(result >> 11) * (1.0 / 9007199254740992.0);
}

static int desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

/* log-sum-exp over the entries that are not -inf. */
static float log_norm(const float *x, size_t n)
{
    float max = -INFINITY;
    for (size_t i = 0; i < n; i++)
        max = x[i] > max ? x[i] : max;
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += x[i] == -INFINITY ? 0.0 : exp((double)(x[i] - max));
    return max + (float)log(sum);
}

int32_t smp_next(float *logits, size_t V, const int32_t *history, size_t n_hist, const smp_params *p, smp_rng *rng,
                 float *logprob, float *scratch)
{
    /* Repetition penalty (transformers' RepetitionPenaltyLogitsProcessor): each distinct id
     * once, from its original logit. scratch[V..2V) marks the ids already done. */
    if (p->repetition_penalty != 1.0f) {
        float *done = scratch + V;
        for (size_t i = 0; i < n_hist; i++)
            if (history[i] >= 0 && (size_t)history[i] < V)
                done[history[i]] = 0.0f;
        for (size_t i = 0; i < n_hist; i++) {
            int32_t id = history[i];
            if (id < 0 || (size_t)id >= V || done[id] != 0.0f)
                continue;
            float l = logits[id];
            logits[id] = l < 0 ? l * p->repetition_penalty : l / p->repetition_penalty;
            done[id] = 1.0f;
        }
    }
    if (p->temperature == 0.0f) {
        size_t best = 0;
        for (size_t i = 1; i < V; i++)
            if (logits[i] > logits[best])
                best = i;
        if (logprob)
            *logprob = logits[best] - log_norm(logits, V);
        return (int32_t)best;
    }
    for (size_t i = 0; i < V; i++)
        logits[i] /= p->temperature;
    /* top-k, then top-p: find the logit threshold below which tokens are removed. */
    float cut = -INFINITY;
    if ((p->top_k > 0 && p->top_k < V) || p->top_p < 1.0f) {
        memcpy(scratch, logits, V * sizeof *scratch);
        qsort(scratch, V, sizeof *scratch, desc);
        size_t keep = p->top_k > 0 && p->top_k < V ? p->top_k : V;
        if (p->top_p < 1.0f) {
            float norm = log_norm(scratch, keep);
            double cum = 0;
            size_t k = 0;
            while (k < keep) { /* smallest prefix whose mass reaches top_p (at least one token) */
                cum += exp((double)(scratch[k] - norm));
                k++;
                if (cum >= p->top_p)
                    break;
            }
            keep = k;
        }
        cut = scratch[keep - 1];
    }
    for (size_t i = 0; i < V; i++)
        if (logits[i] < cut)
            logits[i] = -INFINITY;
    float norm = log_norm(logits, V);
    double u = uniform(rng), cum = 0;
    size_t pick = V;
    for (size_t i = 0; i < V; i++) {
        if (logits[i] == -INFINITY)
            continue;
        cum += exp((double)(logits[i] - norm));
        pick = i;
        if (u < cum)
            break;
    }
    if (logprob)
        *logprob = logits[pick] - norm;
    return (int32_t)pick;
}
