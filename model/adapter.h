/*
 * adapter.h — PEFT adapters for the GPT-2 decoder, in memory and on disk
 * (shared/spec/FORMATS.md §6): LORA, PROMPT_TUNING and PREFIX_TUNING.
 *
 * An adapter directory holds adapter_config.json and adapter_model.safetensors, exactly as
 * PEFT's save_pretrained writes them for GPT2LMHeadModel (task CAUSAL_LM), so adapters move
 * between ragd and Python unchanged. Only safetensors is read; adapter_model.bin (pickle) is
 * refused. Directories are opened relative to a root directory descriptor, one component at
 * a time with O_NOFOLLOW: no absolute path, no `..`, no symlink and no special file is ever
 * followed or read, so a name can never reach outside the root.
 *
 * In memory an adapter is one fp32 buffer with named views (like the models), read-only once
 * built: any number of sequences may use it at once. Nothing here counts references; whoever
 * shares an adapter between threads (the server's registry) does.
 *
 * Tensor layouts (row-major, as PEFT saves them):
 *   LORA, per layer l and adapted module:  A = lora_A.weight [r, in]
 *                                          B = lora_B.weight [out, r]
 *     y = x·W + b + scaling · (x·Aᵀ)·Bᵀ    (fan_in_fan_out only says W is Conv1D [in, out];
 *                                          the LoRA factors are the same either way)
 *     scaling = lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora.
 *   PROMPT_TUNING: prompt [nvt, n_embd]: virtual token embeddings put in front of the input
 *     embeddings; they take positions 0..nvt-1 (and get wpe), real tokens start at nvt.
 *   PREFIX_TUNING: prompt [nvt, n_layer·2·n_embd]: for virtual token t, layer l's key is
 *     row_t[2l·n_embd .. 2l·n_embd + n_embd) and its value the next n_embd floats (heads
 *     merged head-major, as the KV cache keeps them); real tokens start at position nvt.
 */
#ifndef RAGD_ADAPTER_H
#define RAGD_ADAPTER_H

#include <stddef.h>

#include "gpt2.h"
#include "model_error.h"

#define ADP_NAME_MAX 64          /* adapter names: [A-Za-z0-9][A-Za-z0-9._-]{0,63} */
#define ADP_MAX_RANK 4096        /* r above this is refused */
#define ADP_MAX_VIRTUAL 1024     /* num_virtual_tokens above this is refused */
#define ADP_MAX_CONFIG_BYTES (1u << 20)
#define ADP_MAX_FILE_BYTES ((size_t)4 << 30)

typedef enum { ADP_LORA, ADP_PROMPT_TUNING, ADP_PREFIX_TUNING, ADP_N_TYPES } adp_type;

/* The GPT-2 modules LoRA can adapt, per block (PEFT's module names after `transformer.h.N.`). */
typedef enum { ADP_ATTN_C_ATTN, ADP_ATTN_C_PROJ, ADP_MLP_C_FC, ADP_MLP_C_PROJ, ADP_N_MODULES } adp_module;

#define ADP_MODULE_BIT(mod) (1u << (mod))
#define ADP_ALL_MODULES ((1u << ADP_N_MODULES) - 1u)

/* "LORA", "PROMPT_TUNING", "PREFIX_TUNING" (PEFT's peft_type). */
const char *adp_type_name(adp_type t);
/* "attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj". */
const char *adp_module_name(adp_module mod);
/* in and out features of a module for a base model (c_attn: C -> 3C, c_fc: C -> I, ...). */
void adp_module_dims(const gpt2_config *base, adp_module mod, size_t *in, size_t *out);

/* What an adapter is, without its weights: what adapter_config.json says (the fields ragd
 * uses; everything else PEFT writes takes its default on save). */
typedef struct {
    adp_type type;
    char base_model[256];       /* base_model_name_or_path; "" when null */
    /* LORA */
    size_t r;                   /* rank, 1..ADP_MAX_RANK */
    float lora_alpha;
    float lora_dropout;         /* [0, 1): dropout on the LoRA input while training (kept, as PEFT keeps it) */
    int use_rslora;
    unsigned targets;           /* ADP_MODULE_BIT set of adapted modules (non-empty) */
    unsigned char *layers;      /* NULL: every layer; else [n_layer] flags (layers_to_transform) */
    /* PROMPT_TUNING, PREFIX_TUNING */
    size_t num_virtual_tokens;  /* 1..ADP_MAX_VIRTUAL */
} adp_config;

/* One adapted module of one layer. r == 0 (and A, B NULL) when it is not adapted. */
typedef struct {
    size_t r, in, out;
    float scaling;
    float *A;                   /* [r, in] */
    float *B;                   /* [out, r] */
} adp_lora;

typedef struct adp_adapter {
    adp_config cfg;             /* cfg.layers points into this adapter's own storage */
    size_t n_layer, n_embd, n_head; /* of the base it was built or checked for */
    adp_lora *lora;             /* LORA: [n_layer * ADP_N_MODULES], index l*ADP_N_MODULES+mod */
    float *prompt;              /* PROMPT_TUNING [nvt, n_embd]; PREFIX_TUNING [nvt, n_layer*2*n_embd] */
    float *weights;             /* the one buffer every view above points into */
    size_t n_weights;
} adp_adapter;

/* Is `name` a valid adapter name? Makes no filesystem call. */
int adp_valid_name(const char *name);

/* Builds an adapter of the given config for `base`, every weight zero (training initializes
 * them). cfg is copied (layers too). MDL_EINPUT for a config the base cannot take. */
int adp_create(const gpt2_config *base, const adp_config *cfg, adp_adapter **out, mdl_error *err);

/* Loads the PEFT directory at `relpath` below the directory open as `root_fd` (relpath is
 * one or more components separated by '/', none of them empty, "." or ".."; every component
 * must be a real directory, not a symlink) and checks it against `base`: peft_type, r,
 * lora_alpha (finite, > 0), target_modules (a list matched as PEFT does, or a regex; matching
 * no GPT-2 module is an error), layers_to_transform, fan_in_fan_out, use_dora/bias/
 * rank_pattern/alpha_pattern/modules_to_save (unsupported values refused), every tensor's
 * name, dtype and shape, no tensor missing and none extra. Errors name the file and tensor:
 * MDL_EIO (missing, not a regular file, a symlink, unreadable), MDL_EFORMAT (malformed or
 * not matching the base). On success *out is owned by the caller (adp_free). */
int adp_load(int root_fd, const char *relpath, const gpt2_config *base, adp_adapter **out, mdl_error *err);

/* Checks an in-memory adapter against a base (dimensions, layers). */
int adp_check_base(const adp_adapter *a, const gpt2_config *base, mdl_error *err);

/* Writes adapter_config.json and adapter_model.safetensors into the existing directory
 * `dir` as PEFT's save_pretrained does (config with inference_mode true, F32 tensors with
 * metadata {"format":"pt"}), each through a temp file renamed into place. `base_model`
 * overrides cfg.base_model when not NULL. */
int adp_save(const adp_adapter *a, const char *dir, const char *base_model, mdl_error *err);

void adp_free(adp_adapter *a); /* accepts NULL */

/* Bytes an adapter holds in memory (weights and bookkeeping). */
size_t adp_bytes(const adp_adapter *a);

/* Positions an adapter puts in front of every prompt: num_virtual_tokens for prompt and
 * prefix tuning, 0 for LoRA (and for NULL). A sequence's cache needs this much room more. */
size_t adp_virtual_tokens(const adp_adapter *a);

/* The LoRA factors of module `mod` in layer `l`, or NULL when that module is not adapted
 * (or the adapter is not LoRA). */
const adp_lora *adp_lora_at(const adp_adapter *a, size_t l, adp_module mod);

/* The largest r of any adapted module (0 for prompt/prefix tuning and NULL). */
size_t adp_max_rank(const adp_adapter *a);

/* y[T, lo->out] += scaling · (x[T, lo->in] · Aᵀ) · Bᵀ, the unmerged LoRA delta of one module.
 * scratch: T * lo->r floats. */
void adp_lora_add(const adp_lora *lo, const float *x, float *y, size_t T, float *scratch);

#endif
