/*
 * gpt2.h — the GPT-2 decoder as transformers' GPT2LMHeadModel computes it in eval mode
 * (shared/spec/FORMATS.md §5): Conv1D [in, out] weights, pre-LN blocks, gelu_new, tied or
 * untied lm_head, names with or without `transformer.`, F32/F16/BF16 checkpoints.
 *
 * Weights live in one fp32 buffer and are read-only after loading, so any number of
 * sequences (each with its own gpt2_cache) can run at once.
 */
#ifndef RAGD_GPT2_H
#define RAGD_GPT2_H

#include <stddef.h>
#include <stdint.h>

#include "model_error.h"

typedef struct {
    size_t vocab, n_positions, n_embd, n_layer, n_head, n_inner;
    float ln_eps;
    int tied;            /* lm_head is wte */
    int32_t eos_id;      /* eos_token_id from config.json, -1 when absent */
} gpt2_config;

typedef struct gpt2_model gpt2_model;
struct adp_adapter; /* adapter.h */

int gpt2_load(const char *dir, gpt2_model **out, mdl_error *err);
void gpt2_free(gpt2_model *m); /* accepts NULL */
const gpt2_config *gpt2_get_config(const gpt2_model *m);
size_t gpt2_weight_bytes(const gpt2_model *m);

/* The keys and values of one sequence's past tokens, for every layer. */
typedef struct gpt2_cache gpt2_cache;

/* A cache for up to `capacity` positions (≤ n_positions). NULL when out of memory. */
gpt2_cache *gpt2_cache_create(const gpt2_model *m, size_t capacity);
void gpt2_cache_free(gpt2_cache *c); /* accepts NULL */
size_t gpt2_cache_len(const gpt2_cache *c);
void gpt2_cache_reset(gpt2_cache *c);

/* Feeds T new tokens after the cached ones (a prompt prefill, or one decode step) and
 * writes the logits of the last new token into logits[vocab]; with all_logits != NULL,
 * also the logits of every new token into all_logits[T, vocab]. MDL_EINPUT for ids out of
 * range or a sequence that would pass the cache's capacity. */
int gpt2_forward(const gpt2_model *m, gpt2_cache *c, const int32_t *ids, size_t T, float *logits,
                 float *all_logits, mdl_error *err);

/* The same with an adapter (NULL: the base model alone). LoRA deltas are added unmerged to
 * the adapted modules' outputs, so sequences with different adapters share the weights.
 * Prompt and prefix tuning need gpt2_begin first. */
int gpt2_forward_adapter(const gpt2_model *m, const struct adp_adapter *a, gpt2_cache *c, const int32_t *ids,
                         size_t T, float *logits, float *all_logits, mdl_error *err);

/* One decode step for B sequences at once: token ids[b] after the cached positions of
 * caches[b], with adapters[b] (adapters may be NULL, or hold NULL entries: the base model).
 * Every weight is read once for the whole batch; each row gets its own adapter's LoRA
 * deltas and attends over its own cache. Writes logits[B, vocab]. Checks every row first:
 * MDL_EINPUT (and nothing is changed) when any id is out of range, any cache is full, or an
 * adapter does not fit the model. */
int gpt2_decode_batch(const gpt2_model *m, const struct adp_adapter *const *adapters, gpt2_cache *const *caches,
                      const int32_t *ids, size_t B, float *logits, mdl_error *err);

/* Starts a sequence on an empty cache for an adapter: prefix tuning puts its per-layer keys
 * and values in the first num_virtual_tokens positions; prompt tuning runs its virtual
 * token embeddings through the network into those positions; LoRA and NULL do nothing.
 * The cache needs adp_virtual_tokens(a) positions more than the sequence. MDL_EINPUT when
 * the cache is not empty or too small, or the adapter was built for another shape. */
int gpt2_begin(const gpt2_model *m, const struct adp_adapter *a, gpt2_cache *c, mdl_error *err);

#endif
