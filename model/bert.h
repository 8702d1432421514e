/*
 * bert.h — the BERT encoder as transformers' BertModel computes it in eval mode
 * (shared/spec/FORMATS.md §2), and the BertForSequenceClassification head.
 *
 * All weights live in one fp32 buffer (F16/BF16 checkpoints are widened at load); tensors
 * are views into it. A loaded model is read-only: bert_forward may run from many threads.
 */
#ifndef RAGD_BERT_H
#define RAGD_BERT_H

#include <stddef.h>
#include <stdint.h>

#include "model_error.h"

typedef enum { BERT_GELU_ERF, BERT_GELU_TANH } bert_act;

typedef struct {
    size_t vocab, hidden, layers, heads, intermediate, max_positions, type_vocab, num_labels;
    float ln_eps;
    bert_act act;
} bert_config;

typedef struct bert_model bert_model;

/* Loads config.json and the safetensors weights of `dir` (names with or without `bert.`).
 * `classifier` asks for the sequence-classification head (pooler + classifier.*), which a
 * cross-encoder needs; a bi-encoder passes 0 and the head tensors are ignored. */
int bert_load(const char *dir, int classifier, bert_model **out, mdl_error *err);
void bert_free(bert_model *m); /* accepts NULL */
const bert_config *bert_get_config(const bert_model *m);
size_t bert_weight_bytes(const bert_model *m);

/* One batch of right-padded sequences: ids, type_ids [B,T] and mask [B,T] (1 = real token,
 * 0 = padding; every row starts with a real token). */
typedef struct {
    const int32_t *ids, *type_ids;
    const unsigned char *mask;
    size_t B, T;
} bert_batch;

/* hidden[B,T,H] = last_hidden_state. Ids and type ids must be in range and T ≤ max_positions
 * (MDL_EINPUT otherwise). Allocates its scratch per call (MDL_ENOMEM on failure). */
int bert_forward(const bert_model *m, const bert_batch *in, float *hidden, mdl_error *err);

/* logits[B,num_labels] = classifier(tanh(pooler(hidden[:,0]))). Needs a model loaded with
 * `classifier`. */
int bert_classify(const bert_model *m, const float *hidden, size_t B, size_t T, float *logits,
                  mdl_error *err);

#endif
