/* optim.c — AdamW, the linear schedule and global-norm clipping (see optim.h). */
#include "optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int opt_adamw_init(opt_adamw *o, size_t n)
{
    memset(o, 0, sizeof *o);
    o->m = calloc(n ? n : 1, sizeof(float));
    o->v = calloc(n ? n : 1, sizeof(float));
    if (!o->m || !o->v) {
        opt_adamw_deinit(o);
        return -1;
    }
    o->n = n;
    return 0;
}

void opt_adamw_deinit(opt_adamw *o)
{
    free(o->m);
    free(o->v);
    memset(o, 0, sizeof *o);
}

void opt_adamw_step(opt_adamw *o, const opt_hparams *h, double lr, float *theta, const float *grad,
                    const size_t (*decay_ranges)[2], size_t n_ranges)
{
    o->step++;
    /* θ ← θ·(1 − lr·wd) first, with the current lr (torch: param.mul_(1 - lr * weight_decay)). */
    float keep = (float)(1.0 - lr * h->weight_decay);
    if (h->weight_decay != 0.0) {
        if (!decay_ranges) {
            for (size_t i = 0; i < o->n; i++)
                theta[i] *= keep;
        } else {
            for (size_t r = 0; r < n_ranges; r++)
                for (size_t i = decay_ranges[r][0]; i < decay_ranges[r][0] + decay_ranges[r][1] && i < o->n; i++)
                    theta[i] *= keep;
        }
    }
    double bc1 = 1.0 - pow(h->beta1, (double)o->step), bc2 = 1.0 - pow(h->beta2, (double)o->step);
    float b1 = (float)h->beta1, b2 = (float)h->beta2, one_b1 = (float)(1.0 - h->beta1),
          one_b2 = (float)(1.0 - h->beta2);
    float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2), eps = (float)h->eps;
    for (size_t i = 0; i < o->n; i++) {
        float g = grad[i];
        float m = o->m[i] * b1 + g * one_b1;
        float v = o->v[i] * b2 + g * g * one_b2;
        o->m[i] = m;
        o->v[i] = v;
        float denom = sqrtf(v) / bc2_sqrt + eps;
        theta[i] += -step_size * (m / denom);
    }
}

double opt_linear_schedule(long s, long warmup, long total)
{
    if (s < warmup)
        return (double)s / (double)(warmup > 1 ? warmup : 1);
    double r = (double)(total - s) / (double)(total - warmup > 1 ? total - warmup : 1);
    return r > 0.0 ? r : 0.0;
}

double opt_clip_grad_norm(float *grad, size_t n, double max_norm)
{
    double ss = 0.0;
    for (size_t i = 0; i < n; i++)
        ss += (double)grad[i] * grad[i];
    double norm = sqrt(ss);
    if (max_norm > 0.0) {
        double coef = max_norm / (norm + 1e-6);
        if (coef < 1.0)
            for (size_t i = 0; i < n; i++)
                grad[i] = (float)(grad[i] * coef);
    }
    return norm;
}
