/* tok_wordpiece.c — BERT's normalizer, pre-tokenizer and WordPiece, with the fast
 * (Rust tokenizers) behaviour of FORMATS.md §4.2. Offsets point into the original text:
 * every normalized character remembers the byte span of the character it came from. */
#include <stdlib.h>
#include <string.h>

#include "tok_impl.h"
#include "tok_unicode.h"

typedef struct {
    uint32_t cp;
    uint32_t start, end; /* original bytes */
} nchar;

typedef struct {
    nchar *c;
    size_t n, cap;
} nstring;

static int put(nstring *s, uint32_t cp, size_t start, size_t end)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        nchar *p = realloc(s->c, cap * sizeof *p);
        if (!p)
            return -1;
        s->c = p;
        s->cap = cap;
    }
    s->c[s->n++] = (nchar){cp, (uint32_t)start, (uint32_t)end};
    return 0;
}

static int is_cjk(uint32_t cp)
{
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
           (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B920 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

static int is_bert_punct(uint32_t cp)
{
    if (cp < 0x80)
        return (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126);
    return tu_bert_class(cp) & TU_BERT_PUNCT;
}

static int is_space(uint32_t cp) { return cp == ' ' || (cp >= 0x80 || cp < 0x20 ? tu_is_whitespace(cp) : 0); }

/* BertNormalizer: clean text, space out CJK, strip accents (NFD, drop Mn), lowercase. */
static int normalize(const tok_tokenizer *t, const char *text, size_t len, nstring *out)
{
    uint32_t cp;
    for (size_t i = 0, cl; i < len; i += cl) {
        unsigned char c = (unsigned char)text[i];
        if (c >= 0x20 && c < 0x7F) { /* printable ASCII: no category, CJK or decomposition work */
            cl = 1;
            if (put(out, t->lowercase && c >= 'A' && c <= 'Z' ? c + 32u : c, i, i + 1))
                return -1;
            continue;
        }
        cl = tu_decode((const unsigned char *)text + i, len - i, &cp);
        if (t->clean_text) {
            /* Rust: filter(!(NUL | U+FFFD | control)) then map(whitespace -> ' '), where control
             * is category C* except \t \n \r. So \v, \f and U+0085 (Cc and White_Space) are
             * removed, not turned into spaces. */
            int tnr = cp == '\t' || cp == '\n' || cp == '\r';
            if (cp == 0 || cp == 0xFFFD || (!tnr && (tu_bert_class(cp) & TU_BERT_OTHER)))
                continue;
            if (tnr || tu_is_whitespace(cp))
                cp = ' ';
        }
        int cjk = t->handle_cjk && is_cjk(cp);
        if (cjk && put(out, ' ', i, i + cl))
            return -1;
        uint32_t parts[4];
        size_t np = 1;
        parts[0] = cp;
        if (t->strip_accents)
            np = tu_decompose(cp, parts);
        for (size_t k = 0; k < np; k++) {
            if (t->strip_accents && (tu_bert_class(parts[k]) & TU_BERT_MN))
                continue;
            uint32_t low[3];
            size_t nl = 1;
            low[0] = parts[k];
            if (t->lowercase)
                nl = tu_lower_full(parts[k], low);
            for (size_t q = 0; q < nl; q++)
                if (put(out, low[q], i, i + cl))
                    return -1;
        }
        if (cjk && put(out, ' ', i, i + cl))
            return -1;
    }
    return 0;
}

/* WordPiece over the normalized characters w[0..n): greedy longest match first, continuation
 * pieces looked up with the prefix ("##"). A word of more than max_chars characters, or with
 * no match at some position, is one [UNK] spanning the whole word. Candidate pieces longer
 * than the longest vocabulary entry are skipped without a lookup, so the work per word is
 * O(n * longest entry) whatever max_input_chars_per_word a file asks for. */
static int wordpiece(const tok_tokenizer *t, const nchar *w, size_t n, size_t base, int seq, tok_encoding *e)
{
    if (n > t->max_chars)
        return tok_push(e, t->unk_id, seq, 0, seq, base + w[0].start, base + w[n - 1].end);
    enum { SMALL = 64 };
    char small_word[4 * SMALL + 16 + 4 * SMALL];
    size_t small_pos[SMALL + 1];
    char *word = small_word;
    size_t *pos = small_pos;
    if (n > SMALL) {
        if (n > SIZE_MAX / 16)
            return -1;
        word = malloc(8 * n + sizeof t->prefix);
        pos = malloc((n + 1) * sizeof *pos);
        if (!word || !pos) {
            free(word == small_word ? NULL : word);
            free(pos == small_pos ? NULL : pos);
            return -1;
        }
    }
    /* word: the UTF-8 of the word, then room for prefix + the longest piece. */
    size_t p = 0;
    for (size_t i = 0; i < n; i++) {
        pos[i] = p;
        p += tu_encode(w[i].cp, word + p);
    }
    pos[n] = p;
    char *piece = word + p;
    size_t first = e->len;
    int rc = 0;
    memcpy(piece, t->prefix, t->prefix_len);
    for (size_t start = 0; start < n;) {
        int32_t id = -1;
        size_t end = n, room = t->max_token_len - (start ? t->prefix_len : 0);
        if (t->max_token_len < t->prefix_len)
            end = start;
        while (end > start && pos[end] - pos[start] > room)
            end--;
        for (; end > start; end--) {
            size_t bytes = pos[end] - pos[start];
            if (start == 0) {
                id = tok_map_get(t, word, bytes);
            } else { /* a continuation piece is looked up with its prefix */
                memcpy(piece + t->prefix_len, word + pos[start], bytes);
                id = tok_map_get(t, piece, t->prefix_len + bytes);
            }
            if (id >= 0)
                break;
        }
        if (id < 0) { /* no piece fits: the whole word is unknown */
            e->len = first;
            rc = tok_push(e, t->unk_id, seq, 0, seq, base + w[0].start, base + w[n - 1].end);
            break;
        }
        if ((rc = tok_push(e, id, seq, 0, seq, base + w[start].start, base + w[end - 1].end)) != 0)
            break;
        start = end;
    }
    if (word != small_word) {
        free(word);
        free(pos);
    }
    return rc;
}

int wp_encode(const tok_tokenizer *t, const char *text, size_t len, size_t base, int seq, tok_encoding *e,
              tok_error *err)
{
    nstring s = {0};
    if (normalize(t, text, len, &s) != 0) {
        free(s.c);
        return tok_fail(err, TOK_ENOMEM, "out of memory while normalizing");
    }
    int rc = 0;
    /* BertPreTokenizer: split on whitespace, and every punctuation character alone. */
    for (size_t i = 0; i < s.n && !rc;) {
        uint32_t cp = s.c[i].cp;
        if (is_space(cp)) {
            i++;
            continue;
        }
        size_t j = i + 1;
        if (!is_bert_punct(cp))
            while (j < s.n && !is_space(s.c[j].cp) && !is_bert_punct(s.c[j].cp))
                j++;
        if (wordpiece(t, s.c + i, j - i, base, seq, e) != 0)
            rc = tok_fail(err, TOK_ENOMEM, "out of memory");
        i = j;
    }
    free(s.c);
    return rc;
}
