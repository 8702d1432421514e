#include "tok_unicode.h"

size_t tu_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    uint32_t v;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2, v = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, v = c & 0x0F;
        lo = c == 0xE0 ? 0xA0 : 0x80; /* no overlongs */
        hi = c == 0xED ? 0x9F : 0xBF; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, v = c & 0x07;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF; /* nothing above U+10FFFF */
    } else
        return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        unsigned b = s[i];
        if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xBF))
            return 0;
        v = v << 6 | (b & 0x3F);
    }
    *cp = v;
    return len;
}

size_t tu_encode(uint32_t cp, char *out)
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

/* The value of the range holding cp, in ranges that cover 0..0x10FFFF in order. */
static unsigned range_value(const tu_range *r, unsigned n, uint32_t cp)
{
    unsigned lo = 0, hi = n;
    while (lo + 1 < hi) {
        unsigned mid = (lo + hi) / 2;
        if (r[mid].first <= cp)
            lo = mid;
        else
            hi = mid;
    }
    return r[lo].cat;
}

tu_category tu_category_of(uint32_t cp) { return (tu_category)range_value(tu_categories, tu_n_categories, cp); }
unsigned tu_bert_class(uint32_t cp) { return range_value(tu_bert_classes, tu_n_bert_classes, cp); }

int tu_is_letter(uint32_t cp)
{
    tu_category c = tu_category_of(cp);
    return c >= TU_LU && c <= TU_LO;
}

int tu_is_number(uint32_t cp)
{
    tu_category c = tu_category_of(cp);
    return c >= TU_ND && c <= TU_NO;
}


int tu_is_whitespace(uint32_t cp)
{
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

static const tu_mapping *find_mapping(const tu_mapping *t, unsigned n, uint32_t cp)
{
    unsigned lo = 0, hi = n;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (t[mid].cp < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && t[lo].cp == cp ? &t[lo] : NULL;
}

size_t tu_lower_full(uint32_t cp, uint32_t out[3])
{
    if (cp < 0x80) {
        out[0] = cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
        return 1;
    }
    const tu_mapping *m = find_mapping(tu_lower, tu_n_lower, cp);
    if (!m) {
        out[0] = cp;
        return 1;
    }
    for (unsigned i = 0; i < m->n; i++)
        out[i] = m->to[i];
    return m->n;
}

size_t tu_decompose(uint32_t cp, uint32_t out[4])
{
    if (cp >= 0xAC00 && cp <= 0xD7A3) { /* Hangul syllables: Unicode §3.12 */
        uint32_t s = cp - 0xAC00, t = s % 28;
        out[0] = 0x1100 + s / (21 * 28);
        out[1] = 0x1161 + (s % (21 * 28)) / 28;
        if (t) {
            out[2] = 0x11A7 + t;
            return 3;
        }
        return 2;
    }
    const tu_mapping *m = cp < 0xC0 ? NULL : find_mapping(tu_nfd, tu_n_nfd, cp);
    if (!m) {
        out[0] = cp;
        return 1;
    }
    for (unsigned i = 0; i < m->n; i++)
        out[i] = m->to[i];
    return m->n;
}
