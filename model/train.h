/*
 * train.h — SFT and DPO training of a PEFT adapter on the frozen GPT-2, as TRL's SFTTrainer
 * and DPOTrainer with HF Trainer's defaults do it (shared/spec/FORMATS.md §6, §7):
 *
 *   data    SFT rows {prompt, completion} (loss on completion tokens only, unless
 *           completion_only_loss is off) or {text}; DPO rows {prompt, chosen, rejected}.
 *           The prompt and prompt+completion are tokenized, the completion is what follows
 *           the prompt's ids, and EOS is appended; max_length truncation keeps the start.
 *   batches rows padded on the right; shuffled each epoch by a seeded permutation.
 *   steps   forward, backward, gradient accumulation, clipping by global norm, AdamW, the
 *           linear warmup-and-decay schedule (optim.h).
 *   dropout as model.train() applies it (gpt2_train.h): lora_dropout and the base's
 *           embd/attn/resid_pdrop from its config.json, with masks drawn from `seed`; with
 *           disable_dropout every one is off (DPOTrainer's default, so the policy and the
 *           reference see the same network).
 *   init    LoRA A Kaiming-uniform (a = √5: U(±1/√in)), B zero; prompt tuning TEXT (the
 *           tokenized text repeated or cut to num_virtual_tokens, rows of wte) or RANDOM
 *           (N(0,1)); prefix tuning N(0,1), or with prefix_projection an Embedding +
 *           Linear-tanh-Linear MLP (torch's default Linear init) whose output is the prefix,
 *           which is what is saved (as PEFT saves it); or a copy of init_adapter.
 *   DPO     the reference is the starting policy: the base model with no adapter, or
 *           init_adapter frozen, computed on the same weights (no second copy of the base).
 *
 * Data are tokenized and checked before training starts (trn_data_build), so bad rows are
 * refused up front with the row's index. Everything random follows `seed`.
 */
#ifndef RAGD_TRAIN_H
#define RAGD_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "adapter.h"
#include "gpt2.h"
#include "model_error.h"
#include "tokenizer.h"
#include "train_loss.h"

#define TRN_MAX_ROWS 100000

typedef struct {
    const char *prompt, *completion, *text; /* SFT: prompt + completion, or text */
    const char *chosen, *rejected;          /* DPO (with prompt) */
} trn_row;

/* Tokenized examples. */
typedef struct trn_data trn_data;

/* Tokenizes and checks n rows (n ≤ TRN_MAX_ROWS). A row that leaves no completion token to
 * learn after truncation to max_length, or does not tokenize, is MDL_EINPUT with *bad_row set
 * to its index (else *bad_row is n). */
int trn_data_build(const tok_tokenizer *tok, const gpt2_config *base, int dpo, const trn_row *rows, size_t n,
                   size_t max_length, int completion_only_loss, trn_data **out, size_t *bad_row, mdl_error *err);
void trn_data_free(trn_data *d); /* accepts NULL */
size_t trn_data_rows(const trn_data *d);

typedef enum { TRN_INIT_RANDOM, TRN_INIT_TEXT } trn_prompt_init;

/* GPT-2's dropout probabilities in training, as its config.json gives them. */
typedef struct {
    float embd_pdrop, attn_pdrop, resid_pdrop;
} trn_base_dropout;

/* Reads embd_pdrop, attn_pdrop and resid_pdrop from model_dir/config.json (GPT2Config's
 * default 0.1 for each one absent). MDL_EIO without the file; MDL_EFORMAT for a value that
 * is not a number in [0, 1). */
int trn_read_base_dropout(const char *model_dir, trn_base_dropout *out, mdl_error *err);

typedef struct {
    int dpo;
    adp_config adapter;          /* type, r, lora_alpha, lora_dropout, use_rslora, targets, layers, num_virtual_tokens */
    trn_base_dropout base_dropout; /* the base model's dropout in training (trn_read_base_dropout) */
    int disable_dropout;         /* train with every dropout off (lora_dropout is still saved) */
    trn_prompt_init prompt_init; /* prompt tuning */
    const char *prompt_init_text;
    int prefix_projection;       /* prefix tuning */
    size_t encoder_hidden_size;
    const adp_adapter *init_adapter; /* start (and DPO reference) from this adapter; NULL: fresh */
    /* hyperparameters */
    size_t epochs, batch_size, grad_accum;
    double learning_rate, weight_decay, max_grad_norm;
    long warmup_steps;
    uint64_t seed;
    dpo_params dpo_p;
} trn_params;

/* What a step reports (TRL's names in the comments). */
typedef struct {
    long step, total_steps;
    double epoch;
    double loss, learning_rate, grad_norm;
    int dpo;
    dpo_metrics dpo_m;           /* rewards/..., logps/... (DPO only) */
} trn_progress;

/* Called after every optimizer step; a non-zero return stops training (cancel). */
typedef int (*trn_step_fn)(void *ctx, const trn_progress *p);

/* Optimizer steps a run will take: epochs · ⌈⌈rows / batch_size⌉ / grad_accum⌉. */
long trn_total_steps(const trn_params *p, size_t rows);

/* Trains a new adapter on `data` and returns it in *out (caller frees with adp_free).
 * MDL_EINPUT for parameters the model cannot take; 1 when `step` asked to stop (no adapter
 * returned). */
int trn_run(const gpt2_model *m, const tok_tokenizer *tok, const trn_params *p, const trn_data *data,
            trn_step_fn step, void *ctx, adp_adapter **out, mdl_error *err);

/* Evaluates adapter `a` (NULL: the base) on `data` without training: SFT fills out->loss
 * with the mean token cross-entropy; DPO fills out->dpo_m (and loss) against the reference
 * `ref` (NULL: the base model) with `dp`. */
int trn_evaluate(const gpt2_model *m, const adp_adapter *a, const adp_adapter *ref, const dpo_params *dp,
                 const trn_data *data, trn_progress *out, mdl_error *err);

/* Publishes adapter `a` as root/name atomically: it is written into a hidden temporary
 * directory root/.name.tmp-TAG (every file and the directory fsynced), renamed over
 * root/name (an existing adapter is swapped out with RENAME_EXCHANGE and removed), and the
 * parent fsynced. A crash at any point leaves either the old adapter or the new one whole,
 * plus at most a hidden temporary that trn_sweep removes. (Tests kill the process at each
 * stage with RAGD_TEST_CRASH_AT=1..4; see train.c.) */
int trn_publish(const adp_adapter *a, const char *root, const char *name, const char *tag, const char *base_model,
                mdl_error *err);
/* Removes temporaries left in root by a publish that did not finish. Returns how many. */
size_t trn_sweep(const char *root);

/* The prefix_projection MLP (PEFT's PrefixEncoder), exposed for the gradient tests:
 * theta = [embedding [nvt, C] | transform.0.weight [H, C] | transform.0.bias [H] |
 *          transform.2.weight [2LC, H] | transform.2.bias [2LC]],
 * prompt[nvt, 2LC] = tanh(E·W1ᵀ + b1)·W2ᵀ + b2. */
size_t trn_prefix_mlp_size(size_t nvt, size_t C, size_t H, size_t L);
int trn_prefix_mlp_forward(const float *theta, size_t nvt, size_t C, size_t H, size_t L, float *prompt);
/* Adds dL/dtheta given dprompt[nvt, 2LC]. */
int trn_prefix_mlp_backward(const float *theta, size_t nvt, size_t C, size_t H, size_t L, const float *dprompt,
                            float *dtheta);

#endif
