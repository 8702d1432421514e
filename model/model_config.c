#include "model_config.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>

/* ---- jansson's allocations, watched (as server/json_util.c does for the HTTP side) ---- */

static _Thread_local int json_oom;
static json_malloc_t next_malloc;
static json_free_t next_free;
static pthread_once_t hook_once = PTHREAD_ONCE_INIT;

static void *watched_malloc(size_t n)
{
    void *p = next_malloc(n);
    if (!p)
        json_oom = 1;
    return p;
}

/* Chained in front of whatever jansson had (the server's hook, say): all end at malloc/free. */
static void install_hook(void)
{
    json_get_alloc_funcs(&next_malloc, &next_free);
    json_set_alloc_funcs(watched_malloc, next_free);
}

json_t *mdl_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *e, int *oom)
{
    pthread_once(&hook_once, install_hook);
    json_oom = 0;
    json_t *j = json_loadb(buf, len, flags, e);
    *oom = json_oom || (!j && json_error_code(e) == json_error_out_of_memory);
    if (*oom) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

char *mdl_json_dumps(const json_t *j, size_t flags)
{
    size_t len = json_dumpb(j, NULL, 0, flags);
    char *text = len ? malloc(len + 1) : NULL;
    if (text && json_dumpb(j, text, len, flags) == len) {
        text[len] = '\0';
        return text;
    }
    free(text);
    return NULL;
}

int mdl_config_size(json_t *cfg, const char *const *keys, size_t def, size_t max, size_t *out, const char *path,
                    mdl_error *err)
{
    json_t *v = NULL;
    for (size_t i = 0; keys[i] && !v; i++)
        v = json_object_get(cfg, keys[i]);
    if (!v || json_is_null(v)) {
        if (!def)
            return mdl_fail(err, MDL_EFORMAT, "%s: '%s' is missing", path, keys[0]);
        *out = def;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 1 || (size_t)json_integer_value(v) > max)
        return mdl_fail(err, MDL_EFORMAT, "%s: '%s' must be an integer in 1..%zu", path, keys[0], max);
    *out = (size_t)json_integer_value(v);
    return 0;
}

int mdl_config_eps(json_t *cfg, const char *key, float def, float *out, const char *path, mdl_error *err)
{
    json_t *v = json_object_get(cfg, key);
    *out = v ? (float)json_number_value(v) : def;
    if (v && (!json_is_number(v) || !(*out >= 0.0f) || !isfinite(*out)))
        return mdl_fail(err, MDL_EFORMAT, "%s: '%s' must be a finite non-negative number", path, key);
    return 0;
}
