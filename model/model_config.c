#include "model_config.h"

#include <math.h>
#include <stdlib.h>

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
