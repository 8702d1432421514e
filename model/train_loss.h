/*
 * train_loss.h — the training objectives as TRL computes them (shared/spec/FORMATS.md §7.1,
 * §7.4), written as losses of per-token log-probs so one backward (gpt2_train.h) serves all:
 * each returns the loss and fills dlogp = dL/dlogp for every scored token.
 *
 * Token log-probs come as logp[rows, T] with scored[rows, T] marking the tokens that count
 * (completion tokens, EOS included; never prompt or padding).
 */
#ifndef RAGD_TRAIN_LOSS_H
#define RAGD_TRAIN_LOSS_H

#include <stddef.h>

/* SFT cross-entropy: −Σ scored logp / n_items, where n_items is the number of scored
 * tokens over every micro-batch of the optimizer step (Trainer's num_items_in_batch), so
 * accumulated micro-batches sum to the token mean of the whole step. Returns that
 * micro-batch's share of the loss. */
double sft_loss(const float *logp, const unsigned char *scored, size_t rows, size_t T, double n_items,
                float *dlogp);

typedef enum { DPO_SIGMOID, DPO_IPO, DPO_HINGE, DPO_N_LOSSES } dpo_loss_type;

typedef struct {
    dpo_loss_type type;
    double beta;            /* 0.1 */
    double label_smoothing; /* cDPO's ε, sigmoid only, in [0, 0.5) */
} dpo_params;

/* TRL's logged DPO metrics, means over the pairs. */
typedef struct {
    double loss;
    double rewards_chosen, rewards_rejected, rewards_margins, rewards_accuracies;
    double logps_chosen, logps_rejected;
} dpo_metrics;

/* The "dpo_loss_type" names: "sigmoid", "ipo", "hinge". -1 for another name. */
int dpo_loss_from_name(const char *name);
const char *dpo_loss_name(dpo_loss_type t);

/* DPO over P pairs: rows 0..P-1 of logp are the chosen completions, rows P..2P-1 the
 * rejected ones (same prompts, same order); ref[2P] are the reference policy's summed
 * log-probs of the same rows. The loss is the mean over pairs scaled by `scale` (1/number of
 * micro-batches when accumulating); dlogp gets the gradient of that. Metrics are unscaled. */
double dpo_loss(const dpo_params *p, const float *logp, const float *ref, const unsigned char *scored, size_t P,
                size_t T, double scale, float *dlogp, dpo_metrics *m);

#endif
