#include "validate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

static const char *expected_name(srv_ftype t)
{
    static const char *const names[] = {"a boolean", "an integer", "a number", "a string",
                                        "a string", "an object", "an array", "a value"};
    return names[t];
}

static int check_field(srv_req *req, const char *at, const srv_field *f, json_t *v, char *out)
{
    char ptr[160];
    snprintf(ptr, sizeof ptr, "%s/%s", at, f->name);
    int type_ok;
    switch (f->type) {
    case SRV_F_BOOL: type_ok = json_is_boolean(v); break;
    case SRV_F_INT: type_ok = json_is_integer(v); break;
    case SRV_F_NUMBER: type_ok = json_is_number(v); break;
    case SRV_F_STRING:
    case SRV_F_ENUM: type_ok = json_is_string(v); break;
    case SRV_F_OBJECT: type_ok = json_is_object(v); break;
    case SRV_F_ARRAY: type_ok = json_is_array(v); break;
    default: type_ok = 1;
    }
    if (!type_ok) {
        srv_reply_error(req, SRV_E_INVALID_TYPE, ptr, "'%s' must be %s, not %s", f->name,
                        expected_name(f->type), type_name(v));
        return -1;
    }
    switch (f->type) {
    case SRV_F_BOOL:
        *(int *)(out + f->offset) = json_is_true(v);
        break;
    case SRV_F_INT: {
        json_int_t i = json_integer_value(v);
        if ((double)i < f->min || (double)i > f->max) {
            srv_reply_error(req, SRV_E_OUT_OF_RANGE, ptr, "'%s' must be between %.0f and %.0f, got %lld",
                            f->name, f->min, f->max, (long long)i);
            return -1;
        }
        *(int64_t *)(out + f->offset) = (int64_t)i;
        break;
    }
    case SRV_F_NUMBER: {
        double d = json_number_value(v);
        if (!isfinite(d) || ((f->flags & SRV_FF_FLOAT32) && !isfinite((float)d))) {
            srv_reply_error(req, SRV_E_OUT_OF_RANGE, ptr, "'%s' must be a finite%s number", f->name,
                            (f->flags & SRV_FF_FLOAT32) ? " 32-bit" : "");
            return -1;
        }
        if (d < f->min || d > f->max) {
            srv_reply_error(req, SRV_E_OUT_OF_RANGE, ptr, "'%s' must be between %g and %g, got %g",
                            f->name, f->min, f->max, d);
            return -1;
        }
        *(double *)(out + f->offset) = d;
        break;
    }
    case SRV_F_STRING: {
        size_t len = json_string_length(v);
        if (f->max_len && len > f->max_len) {
            srv_reply_error(req, SRV_E_OUT_OF_RANGE, ptr, "'%s' is %zu bytes; the limit is %zu",
                            f->name, len, f->max_len);
            return -1;
        }
        if ((f->flags & SRV_FF_NONEMPTY) && len == 0) {
            srv_reply_error(req, SRV_E_EMPTY_INPUT, ptr, "'%s' cannot be empty", f->name);
            return -1;
        }
        *(const char **)(out + f->offset) = json_string_value(v);
        break;
    }
    case SRV_F_ENUM: {
        const char *s = json_string_value(v);
        for (int i = 0; f->choices[i]; i++) {
            if (strcmp(s, f->choices[i]) == 0) {
                *(int *)(out + f->offset) = i;
                return 0;
            }
        }
        char list[256];
        size_t used = 0;
        for (int i = 0; f->choices[i] && used < sizeof list; i++)
            used += (size_t)snprintf(list + used, sizeof list - used, "%s'%s'", i ? ", " : "",
                                     f->choices[i]);
        srv_reply_error(req, SRV_E_INVALID_VALUE, ptr, "'%s' must be one of %s", f->name, list);
        return -1;
    }
    case SRV_F_ARRAY:
        if (f->max_len && json_array_size(v) > f->max_len) {
            srv_reply_error(req, SRV_E_OUT_OF_RANGE, ptr, "'%s' has %zu elements; the limit is %zu",
                            f->name, json_array_size(v), f->max_len);
            return -1;
        }
        if ((f->flags & SRV_FF_NONEMPTY) && json_array_size(v) == 0) {
            srv_reply_error(req, SRV_E_EMPTY_INPUT, ptr, "'%s' cannot be empty", f->name);
            return -1;
        }
        /* fall through */
    default:
        *(json_t **)(out + f->offset) = v;
    }
    return 0;
}

int srv_validate(srv_req *req, json_t *obj, const srv_field *fields, size_t n, void *out)
{
    return srv_validate_at(req, obj, "", fields, n, out);
}

int srv_validate_at(srv_req *req, json_t *obj, const char *at, const srv_field *fields, size_t n, void *out)
{
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_object_get(obj, fields[i].name);
        if (!v || json_is_null(v)) {
            if (fields[i].flags & SRV_FF_REQUIRED) {
                char ptr[160];
                snprintf(ptr, sizeof ptr, "%s/%s", at, fields[i].name);
                srv_reply_error(req, SRV_E_MISSING_FIELD, ptr, "'%s' is required", fields[i].name);
                return -1;
            }
            continue;
        }
        if (check_field(req, at, &fields[i], v, out) != 0)
            return -1;
    }
    return 0;
}

int srv_string_list(srv_req *req, json_t *value, const char *pointer, size_t max_items,
                    const char ***items, size_t **lens, size_t *n, int *is_list)
{
    *items = NULL;
    *lens = NULL;
    *n = 0;
    *is_list = json_is_array(value);
    size_t count = *is_list ? json_array_size(value) : 1;
    if (!*is_list && !json_is_string(value)) {
        srv_reply_error(req, SRV_E_INVALID_TYPE, pointer, "'%s' must be a string or an array of strings",
                        pointer + 1);
        return -1;
    }
    if (count == 0) {
        srv_reply_error(req, SRV_E_EMPTY_INPUT, pointer, "'%s' cannot be empty", pointer + 1);
        return -1;
    }
    if (count > max_items) {
        srv_reply_error(req, SRV_E_BATCH_TOO_LARGE, pointer,
                        "'%s' has %zu items; the limit is %zu (--max-batch)", pointer + 1, count,
                        max_items);
        return -1;
    }
    *items = malloc(count * sizeof **items);
    *lens = malloc(count * sizeof **lens);
    if (!*items || !*lens) {
        free(*items);
        free(*lens);
        *items = NULL;
        *lens = NULL;
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        json_t *s = *is_list ? json_array_get(value, i) : value;
        if (!json_is_string(s)) {
            char ptr[160];
            snprintf(ptr, sizeof ptr, "%s/%zu", pointer, i);
            free(*items);
            free(*lens);
            *items = NULL;
            *lens = NULL;
            srv_reply_error(req, SRV_E_INVALID_TYPE, ptr, "'%s' must hold only strings; item %zu is %s",
                            pointer + 1, i, type_name(s));
            return -1;
        }
        (*items)[i] = json_string_value(s);
        (*lens)[i] = json_string_length(s);
    }
    *n = count;
    return 0;
}
