/* train_loss.c — SFT cross-entropy and the DPO losses over per-token log-probs (see train_loss.h). */
#include "train_loss.h"

#include <math.h>
#include <string.h>

static const char *const loss_names[DPO_N_LOSSES] = {"sigmoid", "ipo", "hinge"};

int dpo_loss_from_name(const char *name)
{
    for (int i = 0; i < DPO_N_LOSSES; i++)
        if (strcmp(name, loss_names[i]) == 0)
            return i;
    return -1;
}

const char *dpo_loss_name(dpo_loss_type t) { return (unsigned)t < DPO_N_LOSSES ? loss_names[t] : "?"; }

double sft_loss(const float *logp, const unsigned char *scored, size_t rows, size_t T, double n_items,
                float *dlogp)
{
    double sum = 0.0;
    float g = n_items > 0 ? (float)(-1.0 / n_items) : 0.0f;
    for (size_t i = 0; i < rows * T; i++) {
        dlogp[i] = scored[i] ? g : 0.0f;
        sum += scored[i] ? logp[i] : 0.0;
    }
    return n_items > 0 ? -sum / n_items : 0.0;
}

/* log σ(x) = −softplus(−x), stable both ways. */
static double log_sigmoid(double x) { return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x)); }
static double sigmoid(double x) { return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x)); }

double dpo_loss(const dpo_params *p, const float *logp, const float *ref, const unsigned char *scored, size_t P,
                size_t T, double scale, float *dlogp, dpo_metrics *m)
{
    memset(m, 0, sizeof *m);
    double beta = p->beta, eps = p->label_smoothing;
    for (size_t i = 0; i < P; i++) {
        const size_t rc = i, rr = P + i;
        double lc = 0, lr = 0, nc = 0, nr = 0;
        for (size_t t = 0; t < T; t++) {
            lc += scored[rc * T + t] ? logp[rc * T + t] : 0.0;
            lr += scored[rr * T + t] ? logp[rr * T + t] : 0.0;
            nc += scored[rc * T + t] != 0;
            nr += scored[rr * T + t] != 0;
        }
        double dc = lc - ref[rc], dr = lr - ref[rr], delta = dc - dr, loss, dl; /* dl = dloss/dΔ */
        double gc, gr;                                                         /* dΔ/dlogp per token */
        if (p->type == DPO_IPO) {
            nc = nc > 1 ? nc : 1;
            nr = nr > 1 ? nr : 1;
            double d = dc / nc - dr / nr - 1.0 / (2.0 * beta);
            loss = d * d;
            dl = 2.0 * d;
            gc = 1.0 / nc;
            gr = -1.0 / nr;
        } else if (p->type == DPO_HINGE) {
            loss = 1.0 - beta * delta > 0 ? 1.0 - beta * delta : 0.0;
            dl = 1.0 - beta * delta > 0 ? -beta : 0.0;
            gc = 1.0;
            gr = -1.0;
        } else {
            loss = -(1.0 - eps) * log_sigmoid(beta * delta) - eps * log_sigmoid(-beta * delta);
            dl = -(1.0 - eps) * beta * sigmoid(-beta * delta) + eps * beta * sigmoid(beta * delta);
            gc = 1.0;
            gr = -1.0;
        }
        float wc = (float)(scale * dl * gc / (double)P), wr = (float)(scale * dl * gr / (double)P);
        for (size_t t = 0; t < T; t++) {
            dlogp[rc * T + t] = scored[rc * T + t] ? wc : 0.0f;
            dlogp[rr * T + t] = scored[rr * T + t] ? wr : 0.0f;
        }
        double rwc = beta * dc, rwr = beta * dr;
        m->loss += loss;
        m->rewards_chosen += rwc;
        m->rewards_rejected += rwr;
        m->rewards_margins += rwc - rwr;
        m->rewards_accuracies += rwc > rwr;
        m->logps_chosen += lc;
        m->logps_rejected += lr;
    }
    double n = P ? (double)P : 1.0;
    m->loss /= n;
    m->rewards_chosen /= n;
    m->rewards_rejected /= n;
    m->rewards_margins /= n;
    m->rewards_accuracies /= n;
    m->logps_chosen /= n;
    m->logps_rejected /= n;
    return m->loss * scale;
}
