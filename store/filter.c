/* filter.c — Qdrant-style metadata filters: compiled once per query (every shape error found
 * here, with its JSON pointer), then evaluated on each candidate's parsed metadata, inside
 * the ANN walk. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_watch.h"
#include "store_internal.h"

#define MAX_DEPTH 8           /* nested filters */
#define MAX_CONDITIONS 1024   /* conditions and `any` values in one filter, all told */
#define MAX_KEY 256

struct st_filter {
    json_t *tree; /* the validated filter */
};

typedef struct {
    char *ptr;
    size_t cap;
    size_t budget; /* conditions left */
    st_error *err;
} checker;

static int bad(checker *ck, const char *at, const char *msg)
{
    snprintf(ck->ptr, ck->cap, "%s", at);
    return st__fail(ck->err, ST_ERR_INVALID, at[0] ? at : "filter", msg);
}

static int spend(checker *ck, const char *at)
{
    if (ck->budget == 0)
        return bad(ck, at, "the filter has too many conditions (the limit is 1024)");
    ck->budget--;
    return 0;
}

static int is_filter_key(const char *k)
{
    return !strcmp(k, "must") || !strcmp(k, "should") || !strcmp(k, "must_not");
}

static int check_filter(checker *ck, const json_t *f, const char *at, int depth);

static int check_match(checker *ck, const json_t *m, const char *at)
{
    char p[256];
    if (!json_is_object(m))
        return bad(ck, at, "'match' must be an object");
    const char *k;
    const json_t *v;
    int n = 0;
    json_object_foreach((json_t *)m, k, v) {
        snprintf(p, sizeof p, "%s/%s", at, k);
        if (!strcmp(k, "value")) {
            if (!json_is_string(v) && !json_is_integer(v) && !json_is_boolean(v))
                return bad(ck, p, "'match.value' must be a string, an integer or a boolean");
        } else if (!strcmp(k, "any")) {
            if (!json_is_array(v))
                return bad(ck, p, "'match.any' must be an array of strings or integers");
            size_t i;
            const json_t *x;
            json_array_foreach(v, i, x) {
                char q[280];
                snprintf(q, sizeof q, "%s/%zu", p, i);
                if (!json_is_string(x) && !json_is_integer(x))
                    return bad(ck, q, "'match.any' must hold only strings or integers");
                if (spend(ck, q))
                    return -1;
            }
        } else {
            return bad(ck, p, "'match' takes 'value' or 'any'");
        }
        n++;
    }
    return n == 1 ? 0 : bad(ck, at, "'match' needs exactly one of 'value' or 'any'");
}

static int check_range(checker *ck, const json_t *r, const char *at)
{
    char p[256];
    if (!json_is_object(r) || json_object_size(r) == 0)
        return bad(ck, at, "'range' must be an object with at least one of 'gt', 'gte', 'lt', 'lte'");
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)r, k, v) {
        snprintf(p, sizeof p, "%s/%s", at, k);
        if (strcmp(k, "gt") && strcmp(k, "gte") && strcmp(k, "lt") && strcmp(k, "lte"))
            return bad(ck, p, "'range' takes 'gt', 'gte', 'lt' and 'lte'");
        if (!json_is_number(v) || !isfinite(json_number_value(v)))
            return bad(ck, p, "range bounds must be finite numbers");
    }
    return 0;
}

static int check_condition(checker *ck, const json_t *c, const char *at, int depth)
{
    char p[256];
    if (spend(ck, at))
        return -1;
    if (!json_is_object(c))
        return bad(ck, at, "a condition must be an object");
    const json_t *key = json_object_get(c, "key");
    if (!key)
        return check_filter(ck, c, at, depth + 1);
    snprintf(p, sizeof p, "%s/key", at);
    if (!json_is_string(key) || json_string_length(key) == 0 || json_string_length(key) > MAX_KEY ||
        strlen(json_string_value(key)) != json_string_length(key))
        return bad(ck, p, "'key' must be a non-empty string of at most 256 bytes");
    const json_t *match = json_object_get(c, "match"), *range = json_object_get(c, "range");
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)c, k, v) {
        if (strcmp(k, "key") && strcmp(k, "match") && strcmp(k, "range")) {
            snprintf(p, sizeof p, "%s/%s", at, k);
            return bad(ck, p, "a condition takes 'key' with 'match' or 'range'");
        }
    }
    if (!match == !range)
        return bad(ck, at, "a condition needs exactly one of 'match' or 'range'");
    snprintf(p, sizeof p, "%s/%s", at, match ? "match" : "range");
    return match ? check_match(ck, match, p) : check_range(ck, range, p);
}

static int check_filter(checker *ck, const json_t *f, const char *at, int depth)
{
    char p[256];
    if (depth > MAX_DEPTH)
        return bad(ck, at, "filters nest at most 8 deep");
    if (!json_is_object(f))
        return bad(ck, at, "a filter must be an object");
    const char *k;
    const json_t *v;
    int n = 0;
    json_object_foreach((json_t *)f, k, v) {
        snprintf(p, sizeof p, "%s/%s", at, k);
        if (!is_filter_key(k))
            return bad(ck, p, "a filter takes 'must', 'should' and 'must_not' (a condition needs 'key')");
        n++;
        if (json_is_object(v)) { /* one condition, as Qdrant allows */
            if (check_condition(ck, v, p, depth))
                return -1;
            continue;
        }
        if (!json_is_array(v))
            return bad(ck, p, "must be an array of conditions");
        size_t i;
        const json_t *c;
        json_array_foreach(v, i, c) {
            char q[280];
            snprintf(q, sizeof q, "%s/%zu", p, i);
            if (check_condition(ck, c, q, depth))
                return -1;
        }
    }
    return n ? 0 : bad(ck, at, "a filter needs 'must', 'should' or 'must_not'");
}

int st_filter_compile(const char *json, size_t len, st_filter **out, char *pointer, size_t pointer_cap, st_error *err)
{
    *out = NULL;
    if (pointer_cap)
        pointer[0] = '\0';
    json_error_t jerr;
    int oom;
    json_t *tree = jsonw_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr, &oom);
    if (!tree)
        return st__fail(err, oom ? ST_ERR_NOMEM : ST_ERR_INVALID, "filter", oom ? "out of memory" : jerr.text);
    checker ck = {pointer, pointer_cap, MAX_CONDITIONS, err};
    if (check_filter(&ck, tree, "", 0) != 0) {
        json_decref(tree);
        return -1;
    }
    st_filter *f = malloc(sizeof *f);
    if (!f) {
        json_decref(tree);
        return st__fail(err, ST_ERR_NOMEM, "filter", "out of memory");
    }
    f->tree = tree;
    *out = f;
    return 0;
}

void st_filter_free(st_filter *f)
{
    if (!f)
        return;
    json_decref(f->tree);
    free(f);
}

/* ---- evaluation ---- */

static int same_value(const json_t *want, const json_t *got)
{
    if (json_is_string(want))
        return json_is_string(got) && json_string_length(want) == json_string_length(got) &&
               !memcmp(json_string_value(want), json_string_value(got), json_string_length(got));
    if (json_is_boolean(want))
        return json_is_boolean(got) && json_is_true(want) == json_is_true(got);
    if (json_is_integer(got))
        return json_integer_value(want) == json_integer_value(got);
    return json_is_real(got) && json_real_value(got) == (double)json_integer_value(want);
}

static int scalar_passes(const json_t *cond, const json_t *v)
{
    const json_t *match = json_object_get(cond, "match");
    if (match) {
        const json_t *want = json_object_get(match, "value");
        if (want)
            return same_value(want, v);
        size_t i;
        const json_t *x;
        json_array_foreach(json_object_get(match, "any"), i, x)
            if (same_value(x, v))
                return 1;
        return 0;
    }
    if (!json_is_number(v))
        return 0;
    double d = json_number_value(v);
    const json_t *r = json_object_get(cond, "range"), *b;
    if ((b = json_object_get(r, "gt")) && !(d > json_number_value(b)))
        return 0;
    if ((b = json_object_get(r, "gte")) && !(d >= json_number_value(b)))
        return 0;
    if ((b = json_object_get(r, "lt")) && !(d < json_number_value(b)))
        return 0;
    if ((b = json_object_get(r, "lte")) && !(d <= json_number_value(b)))
        return 0;
    return 1;
}

/* The value at the dotted `key` under v passes; arrays on the way (or at the end) pass
 * when any element does. */
static int key_passes(const json_t *cond, const json_t *v, const char *key, size_t key_len)
{
    if (json_is_array(v)) {
        size_t i;
        const json_t *x;
        json_array_foreach(v, i, x)
            if (key_passes(cond, x, key, key_len))
                return 1;
        return 0;
    }
    if (key_len == 0)
        return scalar_passes(cond, v);
    if (!json_is_object(v))
        return 0;
    const char *dot = memchr(key, '.', key_len);
    size_t seg = dot ? (size_t)(dot - key) : key_len;
    const json_t *child = json_object_getn(v, key, seg);
    if (!child)
        return 0;
    return dot ? key_passes(cond, child, dot + 1, key_len - seg - 1) : key_passes(cond, child, "", 0);
}

static int eval_filter(const json_t *f, const json_t *meta);

static int eval_condition(const json_t *c, const json_t *meta)
{
    const json_t *key = json_object_get(c, "key");
    if (!key)
        return eval_filter(c, meta);
    return meta && key_passes(c, meta, json_string_value(key), json_string_length(key));
}

/* Every condition of the clause holds (one object counts as a list of one). */
static int all_true(const json_t *clause, const json_t *meta)
{
    if (json_is_object(clause))
        return eval_condition(clause, meta);
    size_t i;
    const json_t *c;
    json_array_foreach(clause, i, c)
        if (!eval_condition(c, meta))
            return 0;
    return 1;
}

static int any_true(const json_t *clause, const json_t *meta)
{
    if (json_is_object(clause))
        return eval_condition(clause, meta);
    size_t i;
    const json_t *c;
    json_array_foreach(clause, i, c)
        if (eval_condition(c, meta))
            return 1;
    return 0;
}

static int eval_filter(const json_t *f, const json_t *meta)
{
    const json_t *must = json_object_get(f, "must"), *should = json_object_get(f, "should"),
                 *must_not = json_object_get(f, "must_not");
    if (must && !all_true(must, meta))
        return 0;
    /* An empty `should` constrains nothing, as in Qdrant. */
    if (should && (json_is_object(should) || json_array_size(should) > 0) && !any_true(should, meta))
        return 0;
    return !(must_not && any_true(must_not, meta));
}

int st__filter_eval(const st_filter *f, const json_t *meta) { return !f || eval_filter(f->tree, meta); }

int st_filter_matches(const st_filter *f, const char *metadata, size_t len)
{
    json_t *meta = metadata ? jsonw_loadb(metadata, len, 0, NULL, NULL) : NULL;
    int ok = st__filter_eval(f, meta);
    json_decref(meta);
    return ok;
}
