/* tok_bpe.c — byte-level BPE as GPT-2 and Hugging Face tokenizers compute it
 * (FORMATS.md §5.5): the GPT-2 pre-tokenization pattern written out by hand, the
 * bytes_to_unicode alphabet, and merges applied lowest rank first in O(n log n). */
#include <stdlib.h>
#include <string.h>

#include "tok_impl.h"
#include "tok_unicode.h"

/* bytes_to_unicode: printable bytes map to themselves, the other 68 to U+0100.. in order. */
static uint32_t byte_to_cp(unsigned b)
{
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)
        return b;
    unsigned n = 0;
    for (unsigned x = 0; x < b; x++)
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174))
            n++;
    return 256 + n;
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

int bpe_init(tok_tokenizer *t, size_t n_merges, tok_error *err)
{
    size_t cap = 16;
    while (cap < n_merges * 2 + 16)
        cap <<= 1;
    t->merges = malloc(cap * sizeof *t->merges);
    if (!t->merges)
        return tok_fail(err, TOK_ENOMEM, "out of memory for %zu merges", n_merges);
    for (size_t i = 0; i < cap; i++)
        t->merges[i].key = UINT64_MAX;
    t->merges_mask = cap - 1;
    t->cache = calloc(TOK_CACHE_SLOTS, sizeof *t->cache);
    if (!t->cache)
        return tok_fail(err, TOK_ENOMEM, "out of memory");
    pthread_mutex_init(&t->cache_lock, NULL);
    for (unsigned c = 0; c < 324; c++)
        t->byte_of_cp[c] = -1;
    for (unsigned b = 0; b < 256; b++) {
        char s[4];
        t->byte_of_cp[byte_to_cp(b)] = (int16_t)b;
        size_t n = tu_encode(byte_to_cp(b), s);
        t->byte_id[b] = tok_map_get(t, s, n);
        if (t->byte_level && t->byte_id[b] < 0)
            return tok_fail(err, TOK_EFORMAT, "the vocabulary lacks the byte symbol for 0x%02x", b);
    }
    return 0;
}

void bpe_free(tok_tokenizer *t)
{
    if (t->cache)
        pthread_mutex_destroy(&t->cache_lock);
    free(t->merges);
    free(t->cache);
}

static const tok_merge *find_merge(const tok_tokenizer *t, int32_t a, int32_t b)
{
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (size_t i = mix(key) & t->merges_mask;; i = (i + 1) & t->merges_mask) {
        if (t->merges[i].key == key)
            return &t->merges[i];
        if (t->merges[i].key == UINT64_MAX)
            return NULL;
    }
}

int bpe_add_merge(tok_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen, int32_t rank,
                  tok_error *err)
{
    char joined[2 * TOK_MAX_TOKEN_BYTES];
    int32_t ia = tok_map_get(t, a, alen), ib = tok_map_get(t, b, blen);
    if (alen + blen > sizeof joined || ia < 0 || ib < 0)
        return tok_fail(err, TOK_EFORMAT, "merge %d ('%.*s %.*s') names a token not in the vocabulary", rank + 1,
                        (int)(alen > 40 ? 40 : alen), a, (int)(blen > 40 ? 40 : blen), b);
    memcpy(joined, a, alen);
    memcpy(joined + alen, b, blen);
    int32_t merged = tok_map_get(t, joined, alen + blen);
    if (merged < 0)
        return tok_fail(err, TOK_EFORMAT, "merge %d: '%.*s' is not in the vocabulary", rank + 1,
                        (int)((alen + blen) > 80 ? 80 : alen + blen), joined);
    uint64_t key = (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib;
    size_t i = mix(key) & t->merges_mask;
    while (t->merges[i].key != UINT64_MAX && t->merges[i].key != key)
        i = (i + 1) & t->merges_mask;
    if (t->merges[i].key == key)
        return 0; /* a repeated merge keeps its first (lowest) rank */
    t->merges[i] = (tok_merge){key, rank, merged};
    return 0;
}

/* ---- merging one word ---- */

typedef struct {
    int32_t id, prev, next; /* prev/next: indices, -1 at the ends; id -1 once merged away */
    uint32_t start, end;    /* byte span within the word */
} symbol;

typedef struct {
    int32_t rank, left, right_id, left_id;
} cand;

static int cand_less(const cand *x, const cand *y)
{
    return x->rank != y->rank ? x->rank < y->rank : x->left < y->left;
}

static void heap_push(cand *h, size_t *n, cand c)
{
    size_t i = (*n)++;
    while (i && cand_less(&c, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = c;
}

static cand heap_pop(cand *h, size_t *n)
{
    cand top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const cand *best = &last;
        if (l < *n && cand_less(&h[l], best))
            m = l, best = &h[l];
        if (r < *n && cand_less(&h[r], best))
            m = r;
        if (m == i)
            break;
        h[i] = h[m];
        i = m;
    }
    if (*n)
        h[i] = last;
    return top;
}

static void consider(const tok_tokenizer *t, const symbol *s, int32_t left, cand *h, size_t *n)
{
    int32_t right = s[left].next;
    if (right < 0)
        return;
    const tok_merge *m = find_merge(t, s[left].id, s[right].id);
    if (m)
        heap_push(h, n, (cand){m->rank, left, s[right].id, s[left].id});
}

/* Applies merges to s[0..n) in place, lowest rank first, leftmost first among equals. */
static int merge_word(const tok_tokenizer *t, symbol *s, size_t n, tok_error *err)
{
    if (n < 2 || !t->merges_mask)
        return 0;
    cand *h = malloc(n * 2 * sizeof *h); /* each merge pushes at most two candidates */
    if (!h)
        return tok_fail(err, TOK_ENOMEM, "out of memory");
    size_t hn = 0;
    for (size_t i = 0; i + 1 < n; i++)
        consider(t, s, (int32_t)i, h, &hn);
    while (hn) {
        cand c = heap_pop(h, &hn);
        symbol *l = &s[c.left];
        if (l->id != c.left_id || l->next < 0 || s[l->next].id != c.right_id)
            continue; /* stale: one side has merged since */
        symbol *r = &s[l->next];
        l->id = find_merge(t, c.left_id, c.right_id)->merged;
        l->end = r->end;
        l->next = r->next;
        if (r->next >= 0)
            s[r->next].prev = c.left;
        r->id = -1;
        if (l->prev >= 0)
            consider(t, s, l->prev, h, &hn);
        consider(t, s, c.left, h, &hn);
    }
    free(h);
    return 0;
}

/* ---- words ---- */

/* The char containing byte i of text[0..len) starts at the returned index. */
static size_t char_start(const char *text, size_t i)
{
    while (i > 0 && ((unsigned char)text[i] & 0xC0) == 0x80)
        i--;
    return i;
}

static size_t char_end(const char *text, size_t len, size_t i)
{
    while (i < len && ((unsigned char)text[i] & 0xC0) == 0x80)
        i++;
    return i;
}

static uint64_t fnv(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

/* Encodes one pre-token word[0..n) (starting at byte `at` of `text`) and appends it. */
static int encode_word(const tok_tokenizer *t, const char *text, size_t len, size_t at, size_t n, size_t base,
                       int seq, tok_encoding *e, tok_error *err)
{
    const char *word = text + at;
    /* Short words repeat (" the", " of"): look them up in the cache first. */
    tok_cache_entry *slot = NULL;
    if (t->byte_level && n <= TOK_CACHE_KEY) {
        slot = &t->cache[fnv(word, n) % TOK_CACHE_SLOTS];
        tok_cache_entry hit;
        pthread_mutex_lock((pthread_mutex_t *)&t->cache_lock);
        hit = *slot;
        pthread_mutex_unlock((pthread_mutex_t *)&t->cache_lock);
        if (hit.key_len == n && hit.n_ids && memcmp(hit.key, word, n) == 0) {
            size_t start = 0;
            for (uint32_t i = 0; i < hit.n_ids; i++) {
                size_t s0 = char_start(text, at + start), s1 = char_end(text, len, at + hit.ends[i]);
                if (tok_push(e, hit.ids[i], seq, 0, seq, base + s0, base + s1))
                    return tok_fail(err, TOK_ENOMEM, "out of memory");
                start = hit.ends[i];
            }
            return 0;
        }
    }
    symbol *s = malloc((n ? n : 1) * sizeof *s);
    if (!s)
        return tok_fail(err, TOK_ENOMEM, "out of memory for a word of %zu bytes", n);
    size_t k = 0;
    if (t->byte_level) {
        for (size_t i = 0; i < n; i++)
            s[k++] = (symbol){t->byte_id[(unsigned char)word[i]], (int32_t)i - 1, (int32_t)i + 1, (uint32_t)i,
                              (uint32_t)i + 1};
    } else { /* character symbols; unknown ones become unk, or are dropped as HF does */
        uint32_t cp;
        for (size_t i = 0, cl; i < n; i += cl) {
            cl = tu_decode((const unsigned char *)word + i, n - i, &cp);
            int32_t id = tok_map_get(t, word + i, cl);
            if (id < 0)
                id = t->unk_id;
            if (id >= 0)
                s[k] = (symbol){id, (int32_t)k - 1, (int32_t)k + 1, (uint32_t)i, (uint32_t)(i + cl)}, k++;
        }
    }
    if (k)
        s[k - 1].next = -1;
    int rc = merge_word(t, s, k, err);
    uint32_t n_ids = 0;
    for (int32_t i = k ? 0 : -1; i >= 0 && !rc; i = s[i].next) {
        size_t s0 = char_start(text, at + s[i].start), s1 = char_end(text, len, at + s[i].end);
        if (tok_push(e, s[i].id, seq, 0, seq, base + s0, base + s1))
            rc = tok_fail(err, TOK_ENOMEM, "out of memory");
        n_ids++;
    }
    if (!rc && slot && n_ids <= TOK_CACHE_IDS) {
        tok_cache_entry fresh = {.key_len = (uint32_t)n, .n_ids = n_ids};
        memcpy(fresh.key, word, n);
        uint32_t j = 0;
        for (int32_t i = 0; i >= 0; i = s[i].next, j++) {
            fresh.ids[j] = s[i].id;
            fresh.ends[j] = (uint16_t)s[i].end;
        }
        pthread_mutex_lock((pthread_mutex_t *)&t->cache_lock);
        *slot = fresh;
        pthread_mutex_unlock((pthread_mutex_t *)&t->cache_lock);
    }
    free(s);
    return rc;
}

/* ---- the GPT-2 pre-tokenization pattern ----
 * 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * Returns the length of the match at text[i..len) (always ≥ 1). */

enum { CL_SPACE, CL_LETTER, CL_NUMBER, CL_OTHER };

static int cls_at(const char *text, size_t len, size_t i, size_t *clen)
{
    uint32_t cp;
    *clen = tu_decode((const unsigned char *)text + i, len - i, &cp);
    return tu_is_whitespace(cp) ? CL_SPACE : tu_is_letter(cp) ? CL_LETTER : tu_is_number(cp) ? CL_NUMBER : CL_OTHER;
}

/* Extends a run of class c from byte j; returns the end. */
static size_t run_of(const char *text, size_t len, size_t j, int c)
{
    size_t cl;
    while (j < len && cls_at(text, len, j, &cl) == c)
        j += cl;
    return j;
}

static size_t next_pretoken(const char *text, size_t len, size_t i)
{
    if (text[i] == '\'' && i + 1 < len) {
        static const char *const contractions[] = {"s", "t", "re", "ve", "m", "ll", "d"};
        for (size_t k = 0; k < 7; k++) {
            size_t n = strlen(contractions[k]);
            if (i + 1 + n <= len && memcmp(text + i + 1, contractions[k], n) == 0)
                return 1 + n;
        }
    }
    size_t cl, j = i;
    int c = cls_at(text, len, i, &cl);
    if (text[i] == ' ' && i + 1 < len) { /* the optional leading space of the next three */
        size_t cl2;
        int c2 = cls_at(text, len, i + 1, &cl2);
        if (c2 != CL_SPACE) {
            c = c2;
            j = i + 1;
        }
    }
    if (c == CL_LETTER || c == CL_NUMBER)
        return run_of(text, len, j, c) - i;
    if (c == CL_OTHER) {
        size_t k = j;
        while (k < len) {
            int ck = cls_at(text, len, k, &cl);
            if (ck != CL_OTHER)
                break;
            k += cl;
        }
        return k - i;
    }
    /* Whitespace: the run minus its last char when a non-space follows, else all of it. */
    size_t end = run_of(text, len, i, CL_SPACE);
    if (end == len)
        return end - i;
    size_t last = char_start(text, end - 1);
    return last > i ? last - i : end - i;
}

int bpe_encode(const tok_tokenizer *t, const char *text, size_t len, size_t base, int seq, tok_encoding *e,
               tok_error *err)
{
    if (!t->byte_level) /* no pre-tokenizer: the whole segment is one word */
        return len ? encode_word(t, text, len, 0, len, base, seq, e, err) : 0;
    for (size_t i = 0; i < len;) {
        size_t n = next_pretoken(text, len, i);
        int rc = encode_word(t, text, len, i, n, base, seq, e, err);
        if (rc)
            return rc;
        i += n;
    }
    return 0;
}

int bpe_token_bytes(const tok_tokenizer *t, int32_t id, char **out, size_t *len, size_t *cap)
{
    const char *s = t->vocab[id];
    size_t n = t->vocab_len[id];
    if (*len + n + 4 > *cap) {
        size_t c = (*cap + n + 4) * 2;
        char *p = realloc(*out, c);
        if (!p)
            return -1;
        *out = p;
        *cap = c;
    }
    if (!t->decoder_byte_level) {
        memcpy(*out + *len, s, n);
        *len += n;
        return 0;
    }
    uint32_t cp;
    for (size_t i = 0, cl; i < n; i += cl) {
        cl = tu_decode((const unsigned char *)s + i, n - i, &cp);
        if (!cl) { /* not UTF-8: pass the byte through */
            (*out)[(*len)++] = s[i];
            cl = 1;
            continue;
        }
        int b = cp < 324 ? t->byte_of_cp[cp] : -1;
        if (b >= 0) {
            (*out)[(*len)++] = (char)b;
        } else { /* not a byte symbol: Rust passes its bytes through unchanged */
            memcpy(*out + *len, s + i, cl);
            *len += cl;
        }
    }
    return 0;
}
