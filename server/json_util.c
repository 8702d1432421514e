#include "json_util.h"

#include <stdlib.h>
#include <string.h>

/* Examines the UTF-8 sequence at s[0..n). Returns its length when it is valid; otherwise
 * returns 0 and sets *skip to the length of its maximal ill-formed subpart (≥ 1), the unit
 * that Unicode §3.9 and Rust's from_utf8_lossy replace with one U+FFFD. */
static size_t utf8_seq(const unsigned char *s, size_t n, size_t *skip)
{
    unsigned char c = s[0];
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    *skip = 1;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80;
        hi = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF;
    } else
        return 0;
    for (size_t i = 1; i < len; i++) {
        unsigned char b = i < n ? s[i] : 0;
        if (i >= n || b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xBF)) {
            *skip = i;
            return 0;
        }
    }
    return len;
}

json_t *srv_json_string_lossy(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, skip, k;
    while (i < len && (k = utf8_seq(u + i, len - i, &skip)) != 0)
        i += k;
    if (i == len)
        return json_stringn(s, len);
    /* Worst case every byte becomes the 3-byte U+FFFD. */
    char *out = malloc(len * 3 + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (i = 0; i < len;) {
        if ((k = utf8_seq(u + i, len - i, &skip)) != 0) {
            memcpy(out + o, s + i, k);
            o += k;
            i += k;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += skip;
        }
    }
    json_t *j = json_stringn(out, o);
    free(out);
    return j;
}
