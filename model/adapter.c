/* adapter.c — PEFT adapters in memory: building the one weight buffer and its views, and the
 * unmerged LoRA delta the decoder adds to an adapted module's output. Reading and writing
 * PEFT directories is in adapter_io.c. */
#include "adapter.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gpt2_impl.h"
#include "kernels.h"

static const char *const type_names[ADP_N_TYPES] = {"LORA", "PROMPT_TUNING", "PREFIX_TUNING"};
static const char *const module_names[ADP_N_MODULES] = {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"};

const char *adp_type_name(adp_type t) { return (unsigned)t < ADP_N_TYPES ? type_names[t] : "?"; }
const char *adp_module_name(adp_module mod) { return (unsigned)mod < ADP_N_MODULES ? module_names[mod] : "?"; }

void adp_module_dims(const gpt2_config *base, adp_module mod, size_t *in, size_t *out)
{
    /* in and out as multiples of n_embd; 0 stands for n_inner */
    static const size_t in_c[ADP_N_MODULES] = {1, 1, 1, 0}, out_c[ADP_N_MODULES] = {3, 1, 0, 1};
    *in = in_c[mod] ? in_c[mod] * base->n_embd : base->n_inner;
    *out = out_c[mod] ? out_c[mod] * base->n_embd : base->n_inner;
}

int adp_valid_name(const char *s)
{
    size_t n = strnlen(s, ADP_NAME_MAX + 1);
    if (n == 0 || n > ADP_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
            return 0;
    }
    return 1;
}

void adp_free(adp_adapter *a)
{
    if (!a)
        return;
    free(a->weights);
    free(a->lora);
    free(a->cfg.layers);
    free(a);
}

size_t adp_bytes(const adp_adapter *a)
{
    if (!a)
        return 0;
    return sizeof *a + a->n_weights * sizeof(float) + (a->lora ? a->n_layer * ADP_N_MODULES * sizeof *a->lora : 0) +
           (a->cfg.layers ? a->n_layer : 0);
}

size_t adp_virtual_tokens(const adp_adapter *a)
{
    return a && a->cfg.type != ADP_LORA ? a->cfg.num_virtual_tokens : 0;
}

const adp_lora *adp_lora_at(const adp_adapter *a, size_t l, adp_module mod)
{
    if (!a || a->cfg.type != ADP_LORA || l >= a->n_layer || (unsigned)mod >= ADP_N_MODULES)
        return NULL;
    const adp_lora *lo = &a->lora[l * ADP_N_MODULES + mod];
    return lo->r ? lo : NULL;
}

int adp_check_base(const adp_adapter *a, const gpt2_config *base, mdl_error *err)
{
    if (a->n_layer != base->n_layer || a->n_embd != base->n_embd)
        return mdl_fail(err, MDL_EINPUT, "the adapter was built for n_layer %zu, n_embd %zu; the model has %zu, %zu",
                        a->n_layer, a->n_embd, base->n_layer, base->n_embd);
    if (a->cfg.type != ADP_LORA && a->cfg.num_virtual_tokens >= base->n_positions)
        return mdl_fail(err, MDL_EINPUT, "%zu virtual tokens leave no room in a context of %zu",
                        a->cfg.num_virtual_tokens, base->n_positions);
    for (size_t l = 0; a->cfg.type == ADP_LORA && l < a->n_layer; l++)
        for (int mod = 0; mod < ADP_N_MODULES; mod++) {
            const adp_lora *lo = adp_lora_at(a, l, (adp_module)mod);
            size_t in, out;
            adp_module_dims(base, (adp_module)mod, &in, &out);
            if (lo && (lo->in != in || lo->out != out))
                return mdl_fail(err, MDL_EINPUT, "layer %zu %s is adapted as %zu -> %zu; the model has %zu -> %zu", l,
                                module_names[mod], lo->in, lo->out, in, out);
        }
    return 0;
}

/* Does config `c` adapt module `mod` of layer `l`? */
static int adapts(const adp_config *c, size_t l, int mod)
{
    return (c->targets & ADP_MODULE_BIT(mod)) && (!c->layers || c->layers[l]);
}

int adp_create(const gpt2_config *base, const adp_config *cfg, adp_adapter **out, mdl_error *err)
{
    *out = NULL;
    size_t L = base->n_layer, C = base->n_embd;
    if (cfg->type == ADP_LORA) {
        if (cfg->r == 0 || cfg->r > ADP_MAX_RANK)
            return mdl_fail(err, MDL_EINPUT, "r must be 1..%d, not %zu", ADP_MAX_RANK, cfg->r);
        if (!isfinite(cfg->lora_alpha) || cfg->lora_alpha <= 0)
            return mdl_fail(err, MDL_EINPUT, "lora_alpha must be a positive number");
        if (!(cfg->lora_dropout >= 0 && cfg->lora_dropout < 1))
            return mdl_fail(err, MDL_EINPUT, "lora_dropout must be in [0, 1)");
        if (!(cfg->targets & ADP_ALL_MODULES) || (cfg->targets & ~ADP_ALL_MODULES))
            return mdl_fail(err, MDL_EINPUT, "target modules must be some of c_attn, c_proj and c_fc");
    } else if ((unsigned)cfg->type >= ADP_N_TYPES) {
        return mdl_fail(err, MDL_EINPUT, "unknown adapter type");
    } else if (cfg->num_virtual_tokens == 0 || cfg->num_virtual_tokens > ADP_MAX_VIRTUAL ||
               cfg->num_virtual_tokens >= base->n_positions) {
        return mdl_fail(err, MDL_EINPUT, "num_virtual_tokens must be 1..%zu, not %zu",
                        (size_t)ADP_MAX_VIRTUAL < base->n_positions - 1 ? (size_t)ADP_MAX_VIRTUAL : base->n_positions - 1,
                        cfg->num_virtual_tokens);
    }
    adp_adapter *a = calloc(1, sizeof *a);
    if (!a)
        return mdl_fail(err, MDL_ENOMEM, "out of memory");
    a->cfg = *cfg;
    a->cfg.layers = NULL;
    a->n_layer = L;
    a->n_embd = C;
    a->n_head = base->n_head;
    int any = 0;
    if (cfg->type == ADP_LORA) {
        if (cfg->layers && (a->cfg.layers = malloc(L)))
            memcpy(a->cfg.layers, cfg->layers, L);
        a->lora = calloc(L * ADP_N_MODULES, sizeof *a->lora);
        for (size_t l = 0; l < L; l++)
            for (int mod = 0; mod < ADP_N_MODULES; mod++)
                if (adapts(cfg, l, mod)) {
                    size_t in, o;
                    adp_module_dims(base, (adp_module)mod, &in, &o);
                    a->n_weights += cfg->r * (in + o);
                    any = 1;
                }
    } else {
        a->n_weights = cfg->num_virtual_tokens * C * (cfg->type == ADP_PREFIX_TUNING ? 2 * L : 1);
        any = 1;
    }
    if (!any) {
        adp_free(a);
        return mdl_fail(err, MDL_EINPUT, "layers_to_transform selects no layer of the model's %zu", L);
    }
    a->weights = calloc(a->n_weights, sizeof(float));
    if (!a->weights || (cfg->type == ADP_LORA && !a->lora) || (cfg->layers && cfg->type == ADP_LORA && !a->cfg.layers)) {
        adp_free(a);
        return mdl_fail(err, MDL_ENOMEM, "out of memory for the adapter's weights");
    }
    float *cur = a->weights;
    if (cfg->type == ADP_LORA) {
        float scaling = cfg->use_rslora ? cfg->lora_alpha / sqrtf((float)cfg->r) : cfg->lora_alpha / (float)cfg->r;
        for (size_t l = 0; l < L; l++)
            for (int mod = 0; mod < ADP_N_MODULES; mod++) {
                adp_lora *lo = &a->lora[l * ADP_N_MODULES + mod];
                if (!adapts(cfg, l, mod))
                    continue;
                adp_module_dims(base, (adp_module)mod, &lo->in, &lo->out);
                lo->r = cfg->r;
                lo->scaling = scaling;
                lo->A = cur;
                cur += lo->r * lo->in;
                lo->B = cur;
                cur += lo->out * lo->r;
            }
    } else {
        a->prompt = cur;
    }
    *out = a;
    return 0;
}

void adp_lora_add(const adp_lora *lo, const float *x, float *y, size_t T, float *scratch)
{
    /* scratch[T, r] = x[T, in] · Aᵀ;  y[T, out] += scaling · scratch · Bᵀ */
    k_gemm(0, 1, T, lo->r, lo->in, 1.0f, x, lo->in, lo->A, lo->in, 0.0f, scratch, lo->r);
    k_gemm(0, 1, T, lo->out, lo->r, lo->scaling, scratch, lo->r, lo->B, lo->r, 1.0f, y, lo->out);
}

size_t adp_max_rank(const adp_adapter *a)
{
    size_t r = 0;
    for (size_t i = 0; a && a->cfg.type == ADP_LORA && i < a->n_layer * ADP_N_MODULES; i++)
        if (a->lora[i].r > r)
            r = a->lora[i].r;
    return r;
}
