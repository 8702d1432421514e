/*
 * sampler.h — choosing the next token from logits, as transformers' generate does:
 * repetition penalty, then temperature, top-k and top-p; greedy when temperature is 0.
 * A seeded generator makes sampling reproducible. Not thread-safe per rng; stateless otherwise.
 */
#ifndef RAGD_SAMPLER_H
#define RAGD_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    float temperature;        /* 0 = greedy */
    size_t top_k;             /* 0 = off */
    float top_p;              /* 1 = off; in (0, 1] */
    float repetition_penalty; /* 1 = off; > 0 */
} smp_params;

typedef struct {
    uint64_t s[4];
} smp_rng;

void smp_seed(smp_rng *rng, uint64_t seed);

/* Picks the next token from logits[V], which it modifies. `history` holds the ids seen so far
 * (prompt and generated) for the repetition penalty. *logprob receives the log-probability of
 * the chosen token under the final (penalized, tempered, filtered) distribution; for greedy
 * decoding, under the penalized distribution. `logprob` may be NULL, which spares greedy
 * decoding a pass over the vocabulary. `scratch` holds 2*V floats. */
int32_t smp_next(float *logits, size_t V, const int32_t *history, size_t n_hist, const smp_params *p, smp_rng *rng,
                 float *logprob, float *scratch);

#endif
