/*
 * gpt2_train.h — GPT-2 forward with saved activations and the backward pass through the
 * frozen base, for training adapters (shared/spec/FORMATS.md §5.4, §6.3–6.5, §7).
 *
 * The base weights are only read: activation gradients flow through every block, and the
 * only gradients kept are the adapter's (LoRA A/B of every adapted module, prompt-tuning
 * embeddings, prefix-tuning keys/values), accumulated into a vector with the layout of the
 * adapter's weight buffer (adp_adapter.weights).
 *
 * A batch is B rows of T token ids, padded on the right. The caller says which tokens are
 * scored: the forward returns log p(ids[b,t] | ids[b,<t]) for those, and the backward takes
 * dL/dlogp for them, so SFT cross-entropy and DPO's summed sequence log-probs are both a
 * per-token weighting of the same quantity (train.h). Only scored positions pay for the
 * vocabulary projection, and only real tokens for anything (padding is never computed).
 *
 * Virtual tokens as PEFT places them: prompt tuning puts nvt embedding rows in front of
 * every row (positions 0..nvt-1, real tokens from nvt on); prefix tuning gives every layer
 * nvt extra keys and values that every real query attends to (real positions from nvt on).
 * Dropout as GPT-2 and PEFT apply it in training (model.train()): embd_pdrop on the input
 * embeddings (virtual rows included), attn_pdrop on the attention probabilities, resid_pdrop
 * on each block's attention and MLP outputs before the residual add, and lora_dropout on the
 * LoRA branch input. Every mask comes from a counter-based RNG keyed by (seed, layer, site)
 * and the element's index (gpt2t_dropout_keep), so the backward regenerates it instead of
 * storing it, and an oracle can draw the very same masks.
 *
 * One gpt2t is one training pass at a time (not thread-safe); any number may share a model.
 */
#ifndef RAGD_GPT2_TRAIN_H
#define RAGD_GPT2_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "adapter.h"
#include "gpt2.h"
#include "model_error.h"

typedef struct {
    size_t B, T;                  /* rows, padded length */
    const int32_t *ids;           /* [B, T] */
    const size_t *len;            /* [B] real tokens per row, 1..T */
    const unsigned char *scored;  /* [B, T]: 1 where log p(ids[b,t] | ids[b,<t]) is wanted; t ≥ 1, t < len[b] */
} gpt2t_batch;

typedef struct gpt2t gpt2t;

/* Dropout probabilities of a training forward, each in [0, 1) (0: that dropout is off). */
typedef struct {
    float lora, embd, attn, resid;
    uint64_t seed;
} gpt2t_dropout;

/* Where the masks fall: LoRA sites 0..3 are the adp_module of the adapted module. Element
 * indices: LoRA over the module input [R, in]; embd and the two resid sites over [R, C]
 * (R = B·(nvp+T) rows, virtual rows first in each sequence, padding counted although it is
 * never computed); attn over [B, H, Tp, Tk] with Tp = nvp+T and Tk = npre+Tp. Layer is 0
 * for embd. */
enum { GPT2T_DROP_EMBD = ADP_N_MODULES, GPT2T_DROP_ATTN, GPT2T_DROP_RESID_ATTN, GPT2T_DROP_RESID_MLP };

/* The mask key of (seed, layer, site), and whether element i survives dropout p with it. */
uint64_t gpt2t_dropout_key(uint64_t seed, size_t layer, int site);
int gpt2t_dropout_keep(uint64_t key, size_t i, float p);

/* A training pass over `m`. NULL when out of memory. Buffers grow with the largest batch. */
gpt2t *gpt2t_create(const gpt2_model *m);
void gpt2t_free(gpt2t *t); /* accepts NULL */

/* Runs the batch with adapter `a` (NULL: the base model alone, e.g. DPO's reference) and
 * writes logp[B, T]: the log-prob of every scored token, 0 elsewhere. With `train` set, the
 * activations are kept for gpt2t_backward and `drop` (NULL: none) is applied; without it
 * nothing is kept and dropout is off (eval). The batch and the adapter must stay unchanged
 * until the backward. MDL_EINPUT for ids out of range, lengths, a probability outside
 * [0, 1), or a sequence past n_positions; MDL_ENOMEM. */
int gpt2t_forward(gpt2t *t, const adp_adapter *a, const gpt2t_batch *b, int train, const gpt2t_dropout *drop,
                  float *logp, mdl_error *err);

/* Backpropagates dlogp[B, T] (dL/dlogp of each scored token; others ignored) through the
 * last training forward and ADDS dL/dθ into grad[a->n_weights] (the adapter's layout), so
 * micro-batches accumulate. MDL_EINPUT without a training forward before it. */
int gpt2t_backward(gpt2t *t, const float *dlogp, float *grad, mdl_error *err);

/* Peak bytes of activations and scratch held (for benchmarks). */
size_t gpt2t_bytes(const gpt2t *t);

#endif
