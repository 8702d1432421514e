/*
 * optim.h — the optimizer side of training, as torch and transformers compute it
 * (shared/spec/FORMATS.md §7.2, §7.3): AdamW (`torch.optim.AdamW`, decoupled weight decay
 * applied before the moment updates, eps added after v's bias correction), the linear
 * warmup-and-decay schedule (`get_linear_schedule_with_warmup`) and clipping by global norm
 * (`clip_grad_norm_`).
 *
 * Parameters and gradients are flat fp32 vectors; the optimizer state (m, v) has the same
 * layout. Scalars (bias corrections, step size) are computed in double, as torch computes
 * them in Python; element updates in float, as torch's fp32 tensors do.
 */
#ifndef RAGD_OPTIM_H
#define RAGD_OPTIM_H

#include <stddef.h>

typedef struct {
    double lr;           /* the base learning rate; the schedule scales it */
    double beta1, beta2; /* 0.9, 0.999 */
    double eps;          /* 1e-8 */
    double weight_decay; /* 0 in HF Trainer; 0.01 in torch */
} opt_hparams;

/* AdamW state for n parameters. Embedded: opt_adamw_init / opt_adamw_deinit. */
typedef struct {
    size_t n;
    long step;       /* optimizer steps taken (torch's state["step"]) */
    float *m, *v;    /* [n] each, zero at the start */
} opt_adamw;

/* 0, or -1 when out of memory (o is then safe to deinit). */
int opt_adamw_init(opt_adamw *o, size_t n);
void opt_adamw_deinit(opt_adamw *o);

/* One optimizer step: step += 1, then every parameter range [off, off+len) listed in
 * `decay_ranges` (pairs; NULL with n_ranges 0 means "all of them") is decayed by
 * (1 - lr·weight_decay) and all n parameters get the Adam update from grad. `lr` is the
 * scheduled rate for this step. Parameters HF Trainer exempts from decay (biases, norms) are
 * simply left out of decay_ranges. */
void opt_adamw_step(opt_adamw *o, const opt_hparams *h, double lr, float *theta, const float *grad,
                    const size_t (*decay_ranges)[2], size_t n_ranges);

/* The learning-rate multiplier at scheduler step s (0 for the first optimizer step) of a
 * linear schedule with `warmup` warmup steps over `total` steps: s/max(1,W) while s < W,
 * then max(0, (N-s)/max(1, N-W)). */
double opt_linear_schedule(long s, long warmup, long total);

/* Clips grad[n] in place to a global 2-norm of at most max_norm (coef = max_norm /
 * (norm + 1e-6), clamped to 1, applied to every element) and returns the norm before
 * clipping (what Trainer logs as grad_norm). max_norm <= 0 disables clipping (the norm is
 * still returned). */
double opt_clip_grad_norm(float *grad, size_t n, double max_norm);

#endif
