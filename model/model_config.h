/*
 * model_config.h — private helpers for reading Hugging Face config.json files and laying
 * out weight buffers, shared by the network loaders (bert.c, gpt2.c). Not a public header.
 */
#ifndef RAGD_MODEL_CONFIG_H
#define RAGD_MODEL_CONFIG_H

#include <jansson.h>
#include <stddef.h>

#include "model_error.h"

/* Reads a positive integer field under any of its names (NULL-terminated `keys`, as
 * transformers' configs alias n_embd/hidden_size), into *out. Absent or null: `def`, or an
 * error naming keys[0] when def is 0. Out of 1..max: an error naming the file. */
int mdl_config_size(json_t *cfg, const char *const *keys, size_t def, size_t max, size_t *out, const char *path,
                    mdl_error *err);

/* Reads a finite non-negative number (e.g. a LayerNorm epsilon), or `def` when absent. */
int mdl_config_eps(json_t *cfg, const char *key, float def, float *out, const char *path, mdl_error *err);

/* Hands out the next `n` floats of a weight buffer being laid out. */
static inline float *mdl_take(float **cursor, size_t n)
{
    float *p = *cursor;
    *cursor += n;
    return p;
}

#endif
