/* tok_common.c — what BPE and WordPiece share once loaded: the vocabulary map, encodings,
 * added-token splitting, truncation, post-processing templates and decoding. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok_impl.h"
#include "tok_unicode.h"

int tok_fail(tok_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

/* ---------------------------------------------------------------- vocabulary map */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

int32_t tok_map_get(const tok_tokenizer *t, const char *s, size_t len)
{
    if (!t->map.slots)
        return -1;
    for (size_t i = hash_bytes(s, len) & t->map.mask;; i = (i + 1) & t->map.mask) {
        int32_t id = t->map.slots[i];
        if (id < 0)
            return -1;
        if (t->vocab_len[id] == len && memcmp(t->vocab[id], s, len) == 0)
            return id;
    }
}

/* Inserts vocab[id]; a string already present keeps the later id (vocab.txt rule). */
int tok_map_put(tok_tokenizer *t, int32_t id)
{
    const char *s = t->vocab[id];
    size_t len = t->vocab_len[id];
    for (size_t i = hash_bytes(s, len) & t->map.mask;; i = (i + 1) & t->map.mask) {
        int32_t cur = t->map.slots[i];
        if (cur < 0 || (t->vocab_len[cur] == len && memcmp(t->vocab[cur], s, len) == 0)) {
            t->map.slots[i] = id;
            return 0;
        }
    }
}

int tok_push(tok_encoding *e, int32_t id, int type_id, int special, int seq, size_t start, size_t stop)
{
    if (e->len == e->cap) {
        if (e->cap > SIZE_MAX / 16)
            return -1;
        size_t cap = e->cap ? e->cap * 2 : 64;
        int32_t *ids = realloc(e->ids, cap * sizeof *ids);
        if (ids)
            e->ids = ids;
        int32_t *types = realloc(e->type_ids, cap * sizeof *types);
        if (types)
            e->type_ids = types;
        uint8_t *sp = realloc(e->special, cap);
        if (sp)
            e->special = sp;
        int8_t *sq = realloc(e->seq, cap);
        if (sq)
            e->seq = sq;
        uint32_t *st = realloc(e->start, cap * sizeof *st);
        if (st)
            e->start = st;
        uint32_t *so = realloc(e->stop, cap * sizeof *so);
        if (so)
            e->stop = so;
        if (!ids || !types || !sp || !sq || !st || !so)
            return -1;
        e->cap = cap;
    }
    e->ids[e->len] = id;
    e->type_ids[e->len] = type_id;
    e->special[e->len] = (uint8_t)special;
    e->seq[e->len] = (int8_t)seq;
    e->start[e->len] = (uint32_t)start;
    e->stop[e->len] = (uint32_t)stop;
    e->len++;
    return 0;
}

void tok_encoding_free(tok_encoding *e)
{
    free(e->ids);
    free(e->type_ids);
    free(e->special);
    free(e->seq);
    free(e->start);
    free(e->stop);
    memset(e, 0, sizeof *e);
}

/* ---------------------------------------------------------------- accessors */

void tok_destroy(tok_tokenizer *t)
{
    if (!t)
        return;
    for (size_t i = 0; t->vocab && i < t->vocab_size; i++)
        free(t->vocab[i]);
    for (size_t i = 0; i < t->n_added; i++)
        free(t->added[i].content);
    free(t->vocab);
    free(t->vocab_len);
    free(t->map.slots);
    free(t->added);
    free(t->special);
    free(t->single);
    free(t->pair);
    bpe_free(t);
    free(t);
}

tok_kind tok_get_kind(const tok_tokenizer *t) { return t->kind; }
size_t tok_vocab_size(const tok_tokenizer *t) { return t->vocab_size; }
size_t tok_model_max_length(const tok_tokenizer *t) { return t->model_max_length; }
int32_t tok_eos_id(const tok_tokenizer *t) { return t->eos_id; }
int32_t tok_pad_id(const tok_tokenizer *t) { return t->pad_id; }

const char *tok_id_to_token(const tok_tokenizer *t, int32_t id)
{
    return id >= 0 && (size_t)id < t->vocab_size ? t->vocab[id] : NULL;
}

/* ---------------------------------------------------------------- encoding */

/* Finds the leftmost-longest added token at or after `from`; returns its index or -1.
 * Only tokens starting with the byte at hand are tried (added_lo/hi), longest first. */
static long find_added(const tok_tokenizer *t, const char *s, size_t len, size_t from, size_t *at)
{
    for (size_t i = from; i < len; i++) {
        unsigned c = (unsigned char)s[i];
        for (uint32_t k = t->added_lo[c]; k < t->added_hi[c]; k++) {
            const tok_added *a = &t->added[k];
            if (a->len <= len - i && memcmp(s + i, a->content, a->len) == 0) {
                *at = i;
                return (long)k;
            }
        }
    }
    return -1;
}

/* Splits out added tokens (matched in the raw text, as Hugging Face does for tokens with
 * normalized:false; tokens with normalized:true are matched the same way, which is exact for
 * GPT-2 as it has no normalizer) and runs the model on the pieces between them. */
static int encode_one(const tok_tokenizer *t, const char *s, size_t len, int seq, tok_encoding *e, tok_error *err)
{
    if (len > TOK_MAX_INPUT)
        return tok_fail(err, TOK_ELIMIT, "the text has %zu bytes, more than the %u a tokenizer accepts", len,
                        (unsigned)TOK_MAX_INPUT);
    uint32_t cp;
    for (size_t i = 0, cl; i < len; i += cl) {
        if ((unsigned char)s[i] < 0x80) {
            cl = 1;
            continue;
        }
        if (!(cl = tu_decode((const unsigned char *)s + i, len - i, &cp)))
            return tok_fail(err, TOK_EINPUT, "the %s text is not valid UTF-8 at byte %zu (0x%02x)",
                            seq ? "second" : "first", i, (unsigned char)s[i]);
    }
    for (size_t pos = 0; pos <= len;) {
        size_t at = len;
        long k = t->n_added ? find_added(t, s, len, pos, &at) : -1;
        size_t end = k >= 0 ? at : len;
        if (end > pos) {
            int rc = t->kind == TOK_KIND_BPE ? bpe_encode(t, s + pos, end - pos, pos, seq, e, err)
                                             : wp_encode(t, s + pos, end - pos, pos, seq, e, err);
            if (rc)
                return rc;
        }
        if (k < 0)
            break;
        if (tok_push(e, t->added[k].id, seq, t->added[k].special, seq, at, at + t->added[k].len))
            return tok_fail(err, TOK_ENOMEM, "out of memory");
        pos = at + t->added[k].len;
    }
    return 0;
}

/* Keeps `keep` tokens of e, removing from the end (right) or the start (left). */
static void cut(tok_encoding *e, size_t keep, tok_direction dir)
{
    if (keep >= e->len)
        return;
    if (dir == TOK_TRUNCATE_LEFT) {
        size_t drop = e->len - keep;
        memmove(e->ids, e->ids + drop, keep * sizeof *e->ids);
        memmove(e->type_ids, e->type_ids + drop, keep * sizeof *e->type_ids);
        memmove(e->special, e->special + drop, keep);
        memmove(e->seq, e->seq + drop, keep);
        memmove(e->start, e->start + drop, keep * sizeof *e->start);
        memmove(e->stop, e->stop + drop, keep * sizeof *e->stop);
    }
    e->len = keep;
}

/* longest_first as the fast tokenizer computes it (FORMATS.md §4.2 step 4). */
static void truncate_pair(tok_encoding *a, tok_encoding *b, size_t budget, tok_direction dir)
{
    size_t n1 = a->len, n2 = b ? b->len : 0;
    if (n1 + n2 <= budget)
        return;
    if (!b) {
        cut(a, budget, dir);
        return;
    }
    int swap = n1 > n2;
    size_t s = swap ? n2 : n1, l = swap ? n1 : n2;
    size_t l2 = s <= budget ? (budget - s > s ? budget - s : s) : s;
    size_t s2 = s;
    if (s + l2 > budget) {
        s2 = budget / 2;
        l2 = budget / 2 + budget % 2;
    }
    (void)l;
    cut(swap ? b : a, s2, dir);
    cut(swap ? a : b, l2, dir);
}

static size_t template_specials(const tok_piece *p, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += p[i].seq < 0;
    return k;
}

int tok_encode(const tok_tokenizer *t, const char *a, size_t a_len, const char *b, size_t b_len,
               const tok_options *opts, tok_encoding *out, tok_error *err)
{
    out->len = 0;
    tok_encoding ea = {0}, eb = {0};
    int rc = encode_one(t, a, a_len, 0, &ea, err);
    if (!rc && b)
        rc = encode_one(t, b, b_len, 1, &eb, err);
    const tok_piece *tpl = b ? t->pair : t->single;
    size_t n_tpl = b ? t->n_pair : t->n_single;
    int templated = opts->add_special_tokens && tpl;
    if (!rc && opts->max_length) {
        size_t specials = templated ? template_specials(tpl, n_tpl) : 0;
        if (opts->max_length < specials)
            rc = tok_fail(err, TOK_ELIMIT, "max_length %zu is less than the %zu special tokens", opts->max_length,
                          specials);
        else
            truncate_pair(&ea, b ? &eb : NULL, opts->max_length - specials, opts->direction);
    }
    if (!rc) {
        static const tok_piece plain[2] = {{0, -1, 0}, {1, -1, 1}};
        if (!templated) {
            tpl = plain;
            n_tpl = b ? 2 : 1;
        }
        for (size_t i = 0; i < n_tpl && !rc; i++) {
            const tok_piece *p = &tpl[i];
            if (p->seq < 0) {
                rc = tok_push(out, p->id, p->type_id, 1, -1, 0, 0);
                continue;
            }
            const tok_encoding *src = p->seq ? &eb : &ea;
            for (size_t k = 0; k < src->len && !rc; k++)
                rc = tok_push(out, src->ids[k], p->type_id, src->special[k], src->seq[k], src->start[k], src->stop[k]);
        }
        if (rc)
            rc = tok_fail(err, TOK_ENOMEM, "out of memory");
    }
    tok_encoding_free(&ea);
    tok_encoding_free(&eb);
    if (rc) /* nothing half-made is left for the caller to free */
        tok_encoding_free(out);
    return rc;
}

/* ---------------------------------------------------------------- decoding */

/* The English clean-up of transformers' clean_up_tokenization (whole text) and of the Rust
 * WordPiece decoder (applied to each token with its leading space; Rust's list also turns
 * " do not" into " don't", which cannot match inside one WordPiece token but is kept for
 * fidelity). Replacements only shrink, so they run in place; returns the new length. */
static size_t clean_up(char *s, size_t n, int rust)
{
    static const char *const from[] = {" .", " ?", " !", " ,", " ' ", " n't", " 'm", " do not", " 's", " 've", " 're"};
    static const char *const to[] = {".", "?", "!", ",", "'", "n't", "'m", " don't", "'s", "'ve", "'re"};
    for (size_t r = 0; r < sizeof from / sizeof from[0]; r++) {
        if (r == 7 && !rust)
            continue;
        size_t fl = strlen(from[r]), tl = strlen(to[r]), o = 0;
        if (!memchr(s, from[r][1], n))
            continue;
        for (size_t i = 0; i < n;) {
            if (i + fl <= n && memcmp(s + i, from[r], fl) == 0) {
                memcpy(s + o, to[r], tl);
                o += tl;
                i += fl;
            } else {
                s[o++] = s[i++];
            }
        }
        n = o;
    }
    return n;
}

static int append(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        if (*cap > SIZE_MAX / 4 || n > SIZE_MAX / 4)
            return -1;
        size_t c = (*cap + n + 1) * 2;
        char *p = realloc(*buf, c);
        if (!p)
            return -1;
        *buf = p;
        *cap = c;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    return 0;
}

/* Length of the invalid UTF-8 sequence at s[0..n): Rust's from_utf8_lossy (and the Unicode
 * "maximal subpart" rule) replaces a lead byte plus the continuation bytes that could still
 * have completed it with one U+FFFD, and any other bad byte with one U+FFFD each. */
static size_t invalid_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0], lo = 0x80, hi = 0xBF;
    size_t need;
    if (c >= 0xC2 && c <= 0xDF)
        need = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        need = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4)
        need = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else
        return 1;
    size_t i = 1;
    while (i < need && i < n && s[i] >= (i == 1 ? lo : 0x80) && s[i] <= (i == 1 ? hi : 0xBF))
        i++;
    return i;
}

/* Rewrites buf[0..*len) with invalid sequences replaced by U+FFFD (may grow the buffer). */
static int utf8_lossy(char **buf, size_t *len, size_t *cap)
{
    size_t bad = 0;
    uint32_t cp;
    for (size_t i = 0, cl; i < *len; i += cl)
        if (!(cl = tu_decode((const unsigned char *)*buf + i, *len - i, &cp)))
            bad++, cl = invalid_len((const unsigned char *)*buf + i, *len - i);
    if (!bad)
        return 0;
    char *out = NULL;
    size_t olen = 0, ocap = 0;
    for (size_t i = 0, cl; i < *len; i += cl) {
        if ((cl = tu_decode((const unsigned char *)*buf + i, *len - i, &cp)) != 0) {
            if (append(&out, &olen, &ocap, *buf + i, cl))
                goto oom;
        } else {
            cl = invalid_len((const unsigned char *)*buf + i, *len - i);
            if (append(&out, &olen, &ocap, "\xEF\xBF\xBD", 3))
                goto oom;
        }
    }
    free(*buf);
    *buf = out, *len = olen, *cap = ocap;
    return 0;
oom:
    free(out);
    return -1;
}

int tok_decode(const tok_tokenizer *t, const int32_t *ids, size_t n, unsigned flags, char **out, size_t *out_len,
               tok_error *err)
{
    *out = NULL;
    *out_len = 0;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = 0, first = 1;
    for (size_t i = 0; i < n && !rc; i++) {
        int32_t id = ids[i];
        if (id < 0 || (size_t)id >= t->vocab_size || !t->vocab[id]) {
            free(buf);
            return tok_fail(err, TOK_EINPUT, "token id %d (at %zu) is not in the vocabulary", id, i);
        }
        if ((flags & TOK_DECODE_SKIP_SPECIAL) && t->special[id])
            continue;
        const char *s = t->vocab[id];
        size_t sl = t->vocab_len[id], from = len;
        switch (t->decoder) {
        case TOK_DEC_WORDPIECE: { /* join with spaces; a "##" piece glues to the previous one */
            int cont = !first && sl >= t->prefix_len && !memcmp(s, t->prefix, t->prefix_len);
            if (cont)
                s += t->prefix_len, sl -= t->prefix_len;
            else if (!first)
                rc = append(&buf, &len, &cap, " ", 1);
            rc = rc || append(&buf, &len, &cap, s, sl);
            if (!rc && t->dec_cleanup)
                len = from + clean_up(buf + from, len - from, 1);
            break;
        }
        case TOK_DEC_BYTELEVEL:
            rc = bpe_token_bytes(t, id, &buf, &len, &cap);
            break;
        case TOK_DEC_NONE: /* no decoder: Hugging Face joins the tokens with spaces */
            rc = (!first && append(&buf, &len, &cap, " ", 1)) || append(&buf, &len, &cap, s, sl);
            break;
        }
        first = 0;
    }
    if (!rc && (flags & TOK_DECODE_LOSSY))
        rc = utf8_lossy(&buf, &len, &cap);
    if (!rc)
        rc = append(&buf, &len, &cap, "", 0);
    if (rc) {
        free(buf);
        return tok_fail(err, TOK_ENOMEM, "out of memory");
    }
    if (t->clean_up_spaces && !(flags & TOK_DECODE_KEEP_SPACES))
        len = clean_up(buf, len, 0);
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    return 0;
}
