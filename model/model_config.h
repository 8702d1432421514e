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

/* jansson under memory pressure (see server/json_util.h, the same pair for the HTTP side):
 * json_loadb can take a failed allocation for a syntax error or drop a byte, json_dumps can
 * leave out a key. These watch every allocation jansson makes. */
/* json_loadb; NULL with *oom = 1 when any allocation failed during the parse. */
json_t *mdl_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *e, int *oom);
/* json_dumps, written into one buffer sized first: a heap string, or NULL (out of memory). */
char *mdl_json_dumps(const json_t *j, size_t flags);

/* Hands out the next `n` floats of a weight buffer being laid out. */
static inline float *mdl_take(float **cursor, size_t n)
{
    float *p = *cursor;
    *cursor += n;
    return p;
}

#endif
