/* json_parse.c — RFC 8259 text into jansson values, for jsonw_loadb.
 *
 * jansson's own parser is not safe when memory runs short: its lexer keeps each token in a
 * buffer that grows as the token does, and when growing fails it drops the byte and lexes
 * on (load.c's lex_save ignores the failure). A string whose closing quote was dropped is
 * then copied out by a loop that looks for that quote past the buffer's end, reading and
 * writing whatever heap follows. So parsing is ours, and the values are jansson's: each
 * constructor we call reports its own failure, which can only be out of memory.
 *
 * What it accepts and rejects is jansson 2.14's (tests/unit/test_json_parse.c compares the
 * two over the fuzz corpora and mutations of them): strict JSON, strict UTF-8 (no overlong
 * forms, no encoded surrogates, nothing above U+10FFFF), escaped surrogates only in valid
 * pairs, no \u0000, integers in a json_int_t and reals that do not overflow, and at most
 * JSON_PARSER_MAX_DEPTH values nested, scalars included. */
#include "json_watch.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 2048 /* jansson's JSON_PARSER_MAX_DEPTH */

typedef struct {
    const unsigned char *start, *p, *end;
    size_t flags;
    int depth;
    int failed, oom;
    json_error_t *e;
    char *text; /* the string being decoded */
    size_t text_cap;
} parser;

/* Records the first error, at the current byte. */
static void fail(parser *P, enum json_error_code code, const char *fmt, ...)
{
    if (P->failed)
        return;
    P->failed = 1;
    if (code == json_error_out_of_memory)
        P->oom = 1;
    json_error_t *e = P->e;
    if (!e)
        return;
    size_t at = (size_t)(P->p - P->start);
    e->position = at > INT32_MAX ? INT32_MAX : (int)at;
    e->line = 1;
    const unsigned char *line_start = P->start;
    for (const unsigned char *q = P->start; q < P->p; q++)
        if (*q == '\n') {
            e->line++;
            line_start = q + 1;
        }
    e->column = (int)(P->p - line_start) + 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->text, JSON_ERROR_TEXT_LENGTH - 1, fmt, ap);
    va_end(ap);
    e->text[JSON_ERROR_TEXT_LENGTH - 1] = (char)code; /* where json_error_code reads it */
}

static void skip_space(parser *P)
{
    while (P->p < P->end && (*P->p == ' ' || *P->p == '\t' || *P->p == '\n' || *P->p == '\r'))
        P->p++;
}

/* ---------------------------------------------------------------- strings */

static int text_reserve(parser *P, size_t len, size_t more)
{
    if (more <= P->text_cap - len)
        return 0;
    size_t cap = P->text_cap ? P->text_cap : 64;
    while (cap - len < more)
        cap *= 2;
    char *t = realloc(P->text, cap);
    if (!t) {
        fail(P, json_error_out_of_memory, "out of memory");
        return -1;
    }
    P->text = t;
    P->text_cap = cap;
    return 0;
}

static int hex4(const unsigned char *s)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    return v;
}

/* The length of the UTF-8 sequence at s (s < end, *s >= 0x80), or 0 when it is not one. */
static size_t utf8_length(const unsigned char *s, const unsigned char *end)
{
    unsigned c = s[0];
    size_t n;
    unsigned lo = 0x80, hi = 0xBF; /* the second byte's range */
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        else if (c == 0xED)
            hi = 0x9F; /* a surrogate */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
    } else
        return 0;
    if ((size_t)(end - s) < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return n;
}

static size_t utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* One \uXXXX escape, or a surrogate pair of two, at P->p (after the backslash and 'u'):
 * its code point, or -1 after recording the error. */
static long unicode_escape(parser *P)
{
    if (P->end - P->p < 4 || hex4(P->p) < 0) {
        fail(P, json_error_invalid_syntax, "invalid escape");
        return -1;
    }
    long cp = hex4(P->p);
    P->p += 4;
    if (cp >= 0xDC00 && cp <= 0xDFFF) {
        fail(P, json_error_invalid_syntax, "invalid Unicode '\\u%04lX'", cp);
        return -1;
    }
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        int low = P->end - P->p >= 6 && P->p[0] == '\\' && P->p[1] == 'u' ? hex4(P->p + 2) : -1;
        if (low < 0xDC00 || low > 0xDFFF) {
            fail(P, json_error_invalid_syntax, "invalid Unicode '\\u%04lX'", cp);
            return -1;
        }
        P->p += 6;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
    }
    if (cp == 0) {
        fail(P, json_error_null_character, "\\u0000 is not allowed");
        return -1;
    }
    return cp;
}

/* The string at P->p (its opening quote) decoded into P->text: its length, or -1. */
static long parse_string(parser *P)
{
    P->p++;
    size_t len = 0;
    for (;;) {
        const unsigned char *run = P->p;
        while (P->p < P->end && *P->p >= 0x20 && *P->p < 0x80 && *P->p != '"' && *P->p != '\\')
            P->p++;
        size_t n = (size_t)(P->p - run);
        if (n) {
            if (text_reserve(P, len, n))
                return -1;
            memcpy(P->text + len, run, n);
            len += n;
        }
        if (P->p == P->end) {
            fail(P, json_error_premature_end_of_input, "premature end of input");
            return -1;
        }
        unsigned c = *P->p;
        if (c == '"') {
            P->p++;
            if (text_reserve(P, len, 1))
                return -1;
            P->text[len] = '\0';
            return (long)len;
        }
        if (c < 0x20) {
            fail(P, json_error_invalid_syntax, c == '\n' ? "unexpected newline" : "control character 0x%x", c);
            return -1;
        }
        if (c >= 0x80) {
            size_t k = utf8_length(P->p, P->end);
            if (!k) {
                fail(P, json_error_invalid_utf8, "invalid UTF-8");
                return -1;
            }
            if (text_reserve(P, len, k))
                return -1;
            memcpy(P->text + len, P->p, k);
            len += k;
            P->p += k;
            continue;
        }
        /* an escape */
        if (++P->p == P->end) {
            fail(P, json_error_premature_end_of_input, "premature end of input");
            return -1;
        }
        if (text_reserve(P, len, 4))
            return -1;
        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
        const char *which = *P->p ? strchr(from, *P->p) : NULL;
        if (which) {
            P->text[len++] = to[which - from];
            P->p++;
        } else if (*P->p == 'u') {
            P->p++;
            long cp = unicode_escape(P);
            if (cp < 0)
                return -1;
            len += utf8_encode((uint32_t)cp, P->text + len);
        } else {
            fail(P, json_error_invalid_syntax, "invalid escape");
            return -1;
        }
    }
}

/* ---------------------------------------------------------------- numbers */

static int digits(parser *P)
{
    const unsigned char *from = P->p;
    while (P->p < P->end && *P->p >= '0' && *P->p <= '9')
        P->p++;
    return P->p > from;
}

static json_t *parse_number(parser *P)
{
    const unsigned char *from = P->p;
    int real = 0;
    if (*P->p == '-')
        P->p++;
    if (P->p < P->end && *P->p == '0')
        P->p++; /* "01" then fails where a ',' or the end is expected */
    else if (!digits(P)) {
        fail(P, json_error_invalid_syntax, "invalid token");
        return NULL;
    }
    if (P->p < P->end && *P->p == '.') {
        P->p++;
        real = 1;
        if (!digits(P)) {
            fail(P, json_error_invalid_syntax, "invalid token");
            return NULL;
        }
    }
    if (P->p < P->end && (*P->p == 'e' || *P->p == 'E')) {
        P->p++;
        real = 1;
        if (P->p < P->end && (*P->p == '+' || *P->p == '-'))
            P->p++;
        if (!digits(P)) {
            fail(P, json_error_invalid_syntax, "invalid token");
            return NULL;
        }
    }
    /* strtoll and strtod want a terminated string: a copy, on the stack when it fits. */
    size_t n = (size_t)(P->p - from);
    char small[128], *s = n < sizeof small ? small : malloc(n + 1);
    if (!s) {
        fail(P, json_error_out_of_memory, "out of memory");
        return NULL;
    }
    memcpy(s, from, n);
    s[n] = '\0';
    json_t *v = NULL;
    errno = 0;
    if (!real) {
        long long i = strtoll(s, NULL, 10);
        if (errno == ERANGE)
            fail(P, json_error_numeric_overflow, i < 0 ? "too big negative integer" : "too big integer");
        else if (!(v = json_integer((json_int_t)i)))
            fail(P, json_error_out_of_memory, "out of memory");
    } else {
        double d = strtod(s, NULL);
        if (errno == ERANGE && isinf(d))
            fail(P, json_error_numeric_overflow, "real number overflow");
        else if (!(v = json_real(d)))
            fail(P, json_error_out_of_memory, "out of memory");
    }
    if (s != small)
        free(s);
    return v;
}

/* ---------------------------------------------------------------- values */

static json_t *parse_value(parser *P);

static int literal(parser *P, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(P->end - P->p) < n || memcmp(P->p, word, n) != 0)
        return 0;
    P->p += n;
    return 1;
}

/* After a member or an element: 1 past a ',' (another follows), 0 past `close`, or -1 with
 * the error recorded. */
static int after_item(parser *P, char close)
{
    skip_space(P);
    if (P->p < P->end && *P->p == ',') {
        P->p++;
        skip_space(P);
        return 1;
    }
    if (P->p < P->end && *P->p == (unsigned char)close) {
        P->p++;
        return 0;
    }
    fail(P, P->p == P->end ? json_error_premature_end_of_input : json_error_invalid_syntax, "'%c' expected", close);
    return -1;
}

/* Past the opening of container c (NULL: it could not be made): 1 when items follow, 0 past
 * `close` (an empty one) or with the error recorded when c is NULL. */
static int open_container(parser *P, json_t *c, char close)
{
    if (!c) {
        fail(P, json_error_out_of_memory, "out of memory");
        return 0;
    }
    P->p++;
    skip_space(P);
    if (P->p < P->end && *P->p == (unsigned char)close) {
        P->p++;
        return 0;
    }
    return 1;
}

static json_t *parse_object(parser *P)
{
    json_t *o = json_object();
    if (!open_container(P, o, '}'))
        return o;
    for (;;) {
        if (P->p == P->end || *P->p != '"') {
            fail(P, P->p == P->end ? json_error_premature_end_of_input : json_error_invalid_syntax,
                 "string or '}' expected");
            break;
        }
        long klen = parse_string(P);
        if (klen < 0)
            break;
        if ((P->flags & JSON_REJECT_DUPLICATES) && json_object_getn(o, P->text, (size_t)klen)) {
            fail(P, json_error_duplicate_key, "duplicate object key");
            break;
        }
        /* The key is copied out of P->text before the value reuses it. */
        char small[64], *key = (size_t)klen < sizeof small ? small : malloc((size_t)klen + 1);
        if (!key) {
            fail(P, json_error_out_of_memory, "out of memory");
            break;
        }
        memcpy(key, P->text, (size_t)klen + 1);
        skip_space(P);
        json_t *v = NULL;
        if (P->p == P->end || *P->p != ':')
            fail(P, P->p == P->end ? json_error_premature_end_of_input : json_error_invalid_syntax, "':' expected");
        else {
            P->p++;
            skip_space(P);
            v = parse_value(P);
        }
        /* jansson takes the value either way, and frees it when it cannot insert it */
        int bad = !v || json_object_setn_new_nocheck(o, key, (size_t)klen, v) != 0;
        if (v && bad)
            fail(P, json_error_out_of_memory, "out of memory");
        if (key != small)
            free(key);
        if (bad)
            break;
        int more = after_item(P, '}');
        if (more == 0)
            return o;
        if (more < 0)
            break;
    }
    json_decref(o);
    return NULL;
}

static json_t *parse_array(parser *P)
{
    json_t *a = json_array();
    if (!open_container(P, a, ']'))
        return a;
    for (;;) {
        json_t *v = parse_value(P);
        if (!v)
            break;
        if (json_array_append_new(a, v) != 0) {
            fail(P, json_error_out_of_memory, "out of memory");
            break;
        }
        int more = after_item(P, ']');
        if (more == 0)
            return a;
        if (more < 0)
            break;
    }
    json_decref(a);
    return NULL;
}

/* The value at P->p (no space before it). */
static json_t *parse_value(parser *P)
{
    if (P->p == P->end) {
        fail(P, json_error_premature_end_of_input, "premature end of input");
        return NULL;
    }
    if (++P->depth > MAX_DEPTH) {
        fail(P, json_error_stack_overflow, "maximum parsing depth reached");
        return NULL;
    }
    json_t *v = NULL;
    unsigned c = *P->p;
    if (c == '{')
        v = parse_object(P);
    else if (c == '[')
        v = parse_array(P);
    else if (c == '"') {
        long n = parse_string(P);
        if (n >= 0 && !(v = json_stringn_nocheck(P->text, (size_t)n)))
            fail(P, json_error_out_of_memory, "out of memory");
    } else if (c == '-' || (c >= '0' && c <= '9'))
        v = parse_number(P);
    else if (literal(P, "true"))
        v = json_true();
    else if (literal(P, "false"))
        v = json_false();
    else if (literal(P, "null"))
        v = json_null();
    else
        fail(P, json_error_invalid_syntax, "invalid token");
    P->depth--;
    return v;
}

json_t *jsonw_loadb(const char *buf, size_t len, size_t flags, json_error_t *e, int *oom)
{
    parser P = {.start = (const unsigned char *)buf, .p = (const unsigned char *)buf,
                .end = (const unsigned char *)buf + len, .flags = flags, .e = e};
    if (e) {
        memset(e, 0, sizeof *e);
        snprintf(e->source, sizeof e->source, "<buffer>");
    }
    skip_space(&P);
    json_t *j = NULL;
    if (!(flags & JSON_DECODE_ANY) && (P.p == P.end || (*P.p != '[' && *P.p != '{')))
        fail(&P, P.p == P.end ? json_error_premature_end_of_input : json_error_invalid_syntax, "'[' or '{' expected");
    else if ((j = parse_value(&P))) {
        skip_space(&P);
        if (P.p != P.end) {
            fail(&P, json_error_end_of_input_expected, "end of file expected");
            json_decref(j);
            j = NULL;
        }
    }
    free(P.text);
    if (oom)
        *oom = P.oom;
    return j;
}
