/* filter.c — Qdrant-style metadata filters: checked and compiled once per query (every shape
 * error found here, with its JSON pointer), then evaluated on each candidate's parsed
 * metadata, inside the ANN walk. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_watch.h"
#include "store_internal.h"

#define MAX_DEPTH 8           /* nested filters */
#define MAX_CONDITIONS 1024   /* conditions and `any` values in one filter, all told */
#define MAX_KEY 256

/* A filter compiled for evaluation: its conditions with their operands read out, so a
 * document costs one metadata lookup per key segment, and nothing of the filter's JSON is
 * looked up again. nodes[0] is the filter itself. */
enum { MUST, SHOULD, MUST_NOT };
enum { COND_VALUE, COND_ANY, COND_RANGE };
enum { GT, GTE, LT, LTE };
typedef struct {
    const char *key;          /* a condition's dotted key; NULL for a (nested) filter */
    size_t key_len;
    int op;                   /* COND_* */
    const json_t *want;       /* COND_VALUE: the value; COND_ANY: the array of values */
    unsigned char has[4];     /* COND_RANGE: which of gt, gte, lt, lte are given */
    double bound[4];
    size_t first[3], n[3];    /* a filter's must, should and must_not: runs of `kids` */
} fnode;

struct st_filter {
    json_t *tree;             /* the validated filter, which the nodes point into */
    fnode *nodes;
    size_t *kids;             /* indexes into nodes, one run per clause */
    size_t n_nodes, n_kids;
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

/* ---- compiling ---- */

static const char *const clause_names[3] = {"must", "should", "must_not"};
static const char *const bound_names[4] = {"gt", "gte", "lt", "lte"};

static void build_filter(st_filter *f, fnode *n, const json_t *tree);

/* Fills node i from a checked condition (or nested filter). */
static void build_condition(st_filter *f, size_t i, const json_t *c)
{
    fnode *n = &f->nodes[i];
    const json_t *key = json_object_get(c, "key");
    if (!key) {
        build_filter(f, n, c);
        return;
    }
    n->key = json_string_value(key);
    n->key_len = json_string_length(key);
    const json_t *match = json_object_get(c, "match");
    if (match) {
        n->want = json_object_get(match, "value");
        n->op = n->want ? COND_VALUE : COND_ANY;
        if (!n->want)
            n->want = json_object_get(match, "any");
        return;
    }
    n->op = COND_RANGE;
    const json_t *range = json_object_get(c, "range");
    for (int b = 0; b < 4; b++) {
        const json_t *v = json_object_get(range, bound_names[b]);
        n->has[b] = v != NULL;
        n->bound[b] = v ? json_number_value(v) : 0;
    }
}

/* Fills a filter's node from a checked filter: each clause's conditions (one object counts
 * as a list of one) take a run of `kids`, reserved before they are built, since a nested
 * filter takes runs of its own. */
static void build_filter(st_filter *f, fnode *n, const json_t *tree)
{
    for (int k = 0; k < 3; k++) {
        const json_t *v = json_object_get(tree, clause_names[k]);
        n->first[k] = f->n_kids;
        n->n[k] = json_is_object(v) ? 1 : json_array_size(v);
        f->n_kids += n->n[k];
        for (size_t j = 0; j < n->n[k]; j++) {
            size_t i = f->n_nodes++;
            f->kids[n->first[k] + j] = i;
            build_condition(f, i, json_is_object(v) ? v : json_array_get(v, j));
        }
    }
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
    /* Every condition spent from the budget, so it bounds the nodes under the filter's own. */
    size_t conditions = MAX_CONDITIONS - ck.budget;
    st_filter *f = calloc(1, sizeof *f);
    if (f) {
        f->nodes = calloc(conditions + 1, sizeof *f->nodes);
        f->kids = malloc((conditions ? conditions : 1) * sizeof *f->kids);
    }
    if (!f || !f->nodes || !f->kids) {
        st_filter_free(f);
        json_decref(tree);
        return st__fail(err, ST_ERR_NOMEM, "filter", "out of memory");
    }
    f->tree = tree;
    f->n_nodes = 1;
    build_filter(f, &f->nodes[0], tree);
    *out = f;
    return 0;
}

void st_filter_free(st_filter *f)
{
    if (!f)
        return;
    json_decref(f->tree);
    free(f->nodes);
    free(f->kids);
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

static int scalar_passes(const fnode *n, const json_t *v)
{
    if (n->op == COND_VALUE)
        return same_value(n->want, v);
    if (n->op == COND_ANY) {
        size_t i;
        const json_t *x;
        json_array_foreach(n->want, i, x)
            if (same_value(x, v))
                return 1;
        return 0;
    }
    if (!json_is_number(v))
        return 0;
    double d = json_number_value(v);
    return (!n->has[GT] || d > n->bound[GT]) && (!n->has[GTE] || d >= n->bound[GTE]) &&
           (!n->has[LT] || d < n->bound[LT]) && (!n->has[LTE] || d <= n->bound[LTE]);
}

/* The value at the dotted `key` under v passes; arrays on the way (or at the end) pass
 * when any element does. */
static int key_passes(const fnode *n, const json_t *v, const char *key, size_t key_len)
{
    if (json_is_array(v)) {
        size_t i;
        const json_t *x;
        json_array_foreach(v, i, x)
            if (key_passes(n, x, key, key_len))
                return 1;
        return 0;
    }
    if (key_len == 0)
        return scalar_passes(n, v);
    if (!json_is_object(v))
        return 0;
    const char *dot = memchr(key, '.', key_len);
    size_t seg = dot ? (size_t)(dot - key) : key_len;
    const json_t *child = json_object_getn(v, key, seg);
    if (!child)
        return 0;
    return dot ? key_passes(n, child, dot + 1, key_len - seg - 1) : key_passes(n, child, "", 0);
}

static int filter_passes(const st_filter *f, const fnode *n, const json_t *meta);

static int node_passes(const st_filter *f, size_t i, const json_t *meta)
{
    const fnode *n = &f->nodes[i];
    if (!n->key)
        return filter_passes(f, n, meta);
    return meta && key_passes(n, meta, n->key, n->key_len);
}

/* 1 when one of the clause's conditions comes out as `outcome` (1 passes, 0 fails). */
static int clause_has(const st_filter *f, const fnode *n, int k, int outcome, const json_t *meta)
{
    for (size_t j = 0; j < n->n[k]; j++)
        if (node_passes(f, f->kids[n->first[k] + j], meta) == outcome)
            return 1;
    return 0;
}

/* Every `must` holds, one `should` does (an empty `should` constrains nothing, as in
 * Qdrant), and no `must_not` does. */
static int filter_passes(const st_filter *f, const fnode *n, const json_t *meta)
{
    return !clause_has(f, n, MUST, 0, meta) && (n->n[SHOULD] == 0 || clause_has(f, n, SHOULD, 1, meta)) &&
           !clause_has(f, n, MUST_NOT, 1, meta);
}

int st__filter_eval(const st_filter *f, const json_t *meta) { return !f || filter_passes(f, &f->nodes[0], meta); }

int st_filter_matches(const st_filter *f, const char *metadata, size_t len)
{
    json_t *meta = metadata ? jsonw_loadb(metadata, len, 0, NULL, NULL) : NULL;
    int ok = st__filter_eval(f, meta);
    json_decref(meta);
    return ok;
}
