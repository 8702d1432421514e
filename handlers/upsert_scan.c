/* upsert_scan.c — the fast path of an upsert body (see upsert_scan.h for the contract).
 *
 * Decoding a batch of vectors through the JSON tree costs a node, a malloc and a locale-aware
 * strtod per number; at 384 numbers a document that is ~95% of an acknowledged upsert. The
 * common body (every document an object of only "id", "vector" and, natively, "text"; ids
 * integers or plain strings, texts plain ASCII strings, vectors of exactly the collection's
 * dimension of finite float32 values) is scanned here straight into the batch. Anything else,
 * or anything doubtful (an escape, a non-ASCII byte, a repeated key, a number strtod would
 * read differently from JSON's grammar), gives up before a reply is made, and the body goes
 * through the JSON tree as before, which makes every error message. What this accepts, the
 * tree accepts too, with the same values: numbers go through strtoll or strtod, as in
 * jansson, or through Clinger's exact fast path (ups_exact_decimal), which gives what strtod
 * gives. */
#include "upsert_scan.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *p, *end;
} scan;

static void skip_ws(scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int take(scan *s, char ch)
{
    skip_ws(s);
    if (s->p == s->end || *s->p != ch)
        return 0;
    s->p++;
    return 1;
}

/* A string of printable ASCII without escapes: its bytes (in the body) and length. */
static int plain_string(scan *s, const char **out, size_t *len)
{
    if (!take(s, '"'))
        return 0;
    const char *start = s->p;
    while (s->p < s->end && *s->p != '"') {
        unsigned char ch = (unsigned char)*s->p++;
        if (ch < 0x20 || ch >= 0x80 || ch == '\\')
            return 0;
    }
    if (s->p == s->end)
        return 0;
    *out = start;
    *len = (size_t)(s->p++ - start);
    return 1;
}

/* A number by JSON's grammar; *integral when it has no fraction or exponent. The token is
 * followed by at least one byte of the body, so strtod cannot read past it. */
static int number_token(scan *s, const char **start, int *integral)
{
    skip_ws(s);
    const char *p = s->p, *e = s->end;
    *start = p;
    if (p < e && *p == '-')
        p++;
    if (p < e && *p == '0')
        p++;
    else if (p < e && *p >= '1' && *p <= '9')
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    else
        return 0;
    *integral = 1;
    if (p < e && *p == '.') {
        *integral = 0;
        if (++p == e || *p < '0' || *p > '9')
            return 0;
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        *integral = 0;
        if (++p < e && (*p == '+' || *p == '-'))
            p++;
        if (p == e || *p < '0' || *p > '9')
            return 0;
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    }
    if (p == e)
        return 0;
    s->p = p;
    return 1;
}

/* The value of a number token with a fraction or exponent (its grammar already checked by
 * number_token, `end` its end) when it has at most 19 significant digits, they fit in 53 bits
 * and its power of ten in [-22, 22]: then the digits and the power are both exact doubles,
 * and one IEEE multiplication or division rounds their product correctly, giving exactly
 * what strtod gives (Clinger's fast path). Returns 0 for anything else: strtod decides. */
int ups_exact_decimal(const char *p, const char *end, double *out)
{
    static const double pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                   1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    int neg = *p == '-';
    p += neg;
    uint64_t m = 0;
    int digits = 0, in_fraction = 0, e = 0;
    for (; p < end && ((*p >= '0' && *p <= '9') || *p == '.'); p++) {
        if (*p == '.') {
            in_fraction = 1;
            continue;
        }
        e -= in_fraction; /* each digit after the point lowers the power by one */
        if (e < -1000)
            return 0;
        if (m == 0 && *p == '0') /* leading zeros are not significant */
            continue;
        if (++digits > 19)
            return 0;
        m = m * 10 + (uint64_t)(*p - '0');
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        int eneg = *++p == '-', x = 0;
        p += *p == '-' || *p == '+';
        for (; p < end && *p >= '0' && *p <= '9'; p++)
            if ((x = x * 10 + (*p - '0')) > 1000)
                return 0;
        e += eneg ? -x : x;
    }
    if (m > (1ull << 53) || e < -22 || e > 22)
        return 0;
    double d = e < 0 ? (double)m / pow10[-e] : (double)m * pow10[e];
    *out = neg ? -d : d;
    return 1;
}

static int fast_vector(scan *s, unsigned dim, int cosine, float *out)
{
    if (!take(s, '['))
        return 0;
    int nonzero = 0;
    for (unsigned k = 0; k < dim; k++) {
        const char *tok;
        int integral;
        char *stop;
        if ((k && !take(s, ',')) || !number_token(s, &tok, &integral))
            return 0;
        double d;
        errno = 0;
        if (integral) /* an integer to jansson: "-0" is 0, and 2^63 is an error */
            d = (double)strtoll(tok, &stop, 10);
        else if (ups_exact_decimal(tok, s->p, &d))
            stop = (char *)s->p;
        else
            d = strtod(tok, &stop);
        out[k] = (float)d;
        if (errno || stop != s->p || !isfinite(d) || !isfinite(out[k]))
            return 0;
        nonzero |= out[k] != 0;
    }
    return take(s, ']') && (!cosine || nonzero);
}

static int fast_document(scan *s, int texts, const st_collection *c, st_doc *doc, float *vec)
{
    if (!take(s, '{'))
        return 0;
    int has_id = 0, has_vec = 0, has_text = 0;
    do {
        const char *key;
        size_t len;
        if (!plain_string(s, &key, &len) || !take(s, ':'))
            return 0;
        if (len == 2 && !memcmp(key, "id", 2) && !has_id++) {
            const char *tok;
            int integral;
            skip_ws(s);
            if (s->p < s->end && *s->p == '"') {
                if (!plain_string(s, &doc->id.str, &doc->id.len) || doc->id.len == 0 || doc->id.len > ST_ID_MAX)
                    return 0;
                doc->id.is_string = 1;
            } else {
                if (!number_token(s, &tok, &integral) || !integral)
                    return 0;
                char *stop;
                errno = 0;
                doc->id.num = strtoll(tok, &stop, 10);
                if (errno || stop != s->p)
                    return 0;
            }
        } else if (len == 6 && !memcmp(key, "vector", 6) && !has_vec++) {
            if (!fast_vector(s, c->dimension, c->distance == ST_COSINE, vec))
                return 0;
            doc->vector = vec;
        } else if (texts && len == 4 && !memcmp(key, "text", 4) && !has_text++) {
            if (!plain_string(s, &doc->text, &doc->text_len))
                return 0;
        } else {
            return 0;
        }
    } while (take(s, ','));
    return take(s, '}') && has_id && has_vec;
}

int ups_scan(const char *body, size_t len, const char *list, int texts, size_t max_batch, const st_collection *c,
             st_doc **docs_out, float **vecs_out, size_t *n_out)
{
    scan s = {body, body + len};
    st_doc *docs = NULL;
    float *vecs = NULL;
    size_t n = 0, cap = 0;
    const char *key;
    size_t key_len;
    *docs_out = NULL;
    *vecs_out = NULL;
    *n_out = 0;
    if (!take(&s, '{') || !plain_string(&s, &key, &key_len) || key_len != strlen(list) || memcmp(key, list, key_len) ||
        !take(&s, ':') || !take(&s, '['))
        return 0;
    int ok = 1;
    do {
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            st_doc *d = realloc(docs, cap * sizeof *d);
            float *v = d ? realloc(vecs, cap * c->dimension * sizeof *v) : NULL;
            docs = d ? d : docs;
            vecs = v ? v : vecs;
            ok = d && v;
        }
        ok = ok && n < max_batch;
        if (ok) {
            docs[n] = (st_doc){0};
            ok = fast_document(&s, texts, c, &docs[n], vecs + n * c->dimension);
            n++;
        }
    } while (ok && take(&s, ','));
    ok = ok && take(&s, ']') && take(&s, '}');
    skip_ws(&s);
    if (!ok || s.p != s.end) {
        free(docs);
        free(vecs);
        return 0;
    }
    for (size_t i = 0; i < n; i++) /* realloc may have moved them */
        docs[i].vector = vecs + i * c->dimension;
    *docs_out = docs;
    *vecs_out = vecs;
    *n_out = n;
    return 1;
}
