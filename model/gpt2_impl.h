/*
 * gpt2_impl.h — the GPT-2 model and cache layouts, private to model/ (gpt2.c, and the
 * training code that needs the weights and the per-layer steps). Not a public header:
 * handlers see only gpt2.h.
 *
 * All weights are views into m->weights, laid out in checkpoint order; read-only once
 * loaded. Shapes use C = n_embd, I = n_inner, V = vocab, P = n_positions.
 */
#ifndef RAGD_GPT2_IMPL_H
#define RAGD_GPT2_IMPL_H

#include "gpt2.h"

#define MAX_DIM 65536
#define MAX_LAYERS 256
#define MAX_VOCAB (1u << 22)

typedef struct {
    float *ln1_g, *ln1_b;     /* [C] each */
    float *attn_w, *attn_b;   /* c_attn [C, 3C], [3C] */
    float *aproj_w, *aproj_b; /* attn.c_proj [C, C], [C] */
    float *ln2_g, *ln2_b;     /* [C] each */
    float *fc_w, *fc_b;       /* mlp.c_fc [C, I], [I] */
    float *mproj_w, *mproj_b; /* mlp.c_proj [I, C], [C] */
} gpt2_block;

struct gpt2_model {
    gpt2_config cfg;
    float *weights;
    size_t n_weights;
    float *wte, *wpe;         /* [V, C], [P, C] */
    float *lnf_g, *lnf_b;     /* [C] each */
    float *lm_head;           /* [V, C] (nn.Linear layout); == wte when tied */
    gpt2_block *block;        /* [n_layer] */
};

struct gpt2_cache {
    size_t len, capacity, layers, C;
    float *k, *v; /* [layers, capacity, C] each; head h in columns h*D .. h*D+D-1 */
};

#endif
