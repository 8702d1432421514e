/* tok_bpe.c — BPE as GPT-2 and Hugging Face tokenizers compute it (FORMATS.md §5.5): the
 * GPT-2 pre-tokenization pattern written out by hand, the bytes_to_unicode alphabet, and
 * merges applied lowest rank first, leftmost first among equal ranks.
 *
 * Merging one word costs O(n log n) with a heap of (rank, position) keys, as the Rust
 * implementation does. That heap is the bottleneck on very long words (a 10 MB "word" spends
 * its time in cache misses), so long words use a bucket queue instead when the merge list is
 * "monotonic" (bpe_finish; every trained merge list is): one bucket per rank, processed in
 * rank order, O(n + ranks). Both give the result of the (rank, position) heap; see
 * merge_buckets for why. */
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
    for (int i = 0; i < TOK_CACHE_LOCKS; i++)
        pthread_mutex_init(&t->cache_locks[i], NULL);
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
        for (int i = 0; i < TOK_CACHE_LOCKS; i++)
            pthread_mutex_destroy(&t->cache_locks[i]);
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
    /* A repeated pair keeps its later rank: Rust collects the merges into a map, Python into a
     * dict, and both let the last one win. */
    t->merges[i] = (tok_merge){key, rank, merged};
    return 0;
}

/* Monotonic: every merge (a, b) ranks after every merge that produces a or b. Then a merge of
 * rank r only ever creates pairs of rank > r, which is what the bucket queue relies on. An
 * allocation failure here only costs speed (the heap is always correct). */
void bpe_finish(tok_tokenizer *t)
{
    t->merges_monotonic = 0;
    t->n_ranks = 0;
    if (!t->merges)
        return;
    int32_t *made = malloc(t->vocab_size * sizeof *made);
    if (!made)
        return;
    memset(made, 0xff, t->vocab_size * sizeof *made);
    for (size_t i = 0; i <= t->merges_mask; i++) {
        const tok_merge *m = &t->merges[i];
        if (m->key == UINT64_MAX)
            continue;
        if (m->rank > made[m->merged])
            made[m->merged] = m->rank;
        if ((size_t)m->rank + 1 > t->n_ranks)
            t->n_ranks = (size_t)m->rank + 1;
    }
    int mono = 1;
    for (size_t i = 0; i <= t->merges_mask && mono; i++) {
        const tok_merge *m = &t->merges[i];
        if (m->key != UINT64_MAX && (made[m->key >> 32] >= m->rank || made[m->key & 0xffffffffu] >= m->rank))
            mono = 0;
    }
    free(made);
    t->merges_monotonic = mono;
}

/* ---------------------------------------------------------------- merging one word */

/* The symbols of one word as a doubly linked list over indices 0..n-1; id -1 once merged into
 * its left neighbour. start/end (byte span) are kept only for character-level BPE; byte-level
 * symbol k starts at byte k and ends where the next live symbol starts. */
typedef struct {
    int32_t *id, *prev, *next;
    uint32_t *start, *end;
} syms;

/* Rank of the pair starting at p, or -1; *m gets the merge. */
static int32_t pair_rank(const tok_tokenizer *t, const syms *s, int32_t p, const tok_merge **m)
{
    int32_t q = s->next[p];
    const tok_merge *x = q >= 0 ? find_merge(t, s->id[p], s->id[q]) : NULL;
    if (m)
        *m = x;
    return x ? x->rank : -1;
}

/* Merges symbol p with its right neighbour. */
static void join(syms *s, int32_t p, const tok_merge *m)
{
    int32_t q = s->next[p];
    s->id[p] = m->merged;
    s->next[p] = s->next[q];
    if (s->next[q] >= 0)
        s->prev[s->next[q]] = p;
    if (s->end)
        s->end[p] = s->end[q];
    s->id[q] = -1;
}

/* Heap of rank << 32 | position: the smallest key is the lowest rank, leftmost. */
static void heap_push(uint64_t *h, size_t *n, uint64_t v)
{
    size_t i = (*n)++;
    while (i && v < h[(i - 1) / 2]) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = v;
}

static uint64_t heap_pop(uint64_t *h, size_t *n)
{
    uint64_t top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, m = l + 1 < *n && h[l + 1] < h[l] ? l + 1 : l;
        if (l >= *n || h[m] >= last)
            break;
        h[i] = h[m];
        i = m;
    }
    if (*n)
        h[i] = last;
    return top;
}

static void consider(const tok_tokenizer *t, const syms *s, int32_t p, uint64_t *h, size_t *n)
{
    int32_t r = pair_rank(t, s, p, NULL);
    if (r >= 0)
        heap_push(h, n, (uint64_t)(uint32_t)r << 32 | (uint32_t)p);
}

/* The Rust algorithm. h has room for 2n keys: n-1 initial pairs, and each merge pops one key
 * and pushes at most two, so the heap never holds more than (n-1) + merges < 2n. A popped key
 * is stale when its pair has changed since: symbols only grow, so a pair that changed never
 * comes back, and "the pair at p still has rank r" identifies the live entry. */
static void merge_heap(const tok_tokenizer *t, syms *s, size_t n, uint64_t *h)
{
    size_t hn = 0;
    for (size_t p = 0; p + 1 < n; p++)
        consider(t, s, (int32_t)p, h, &hn);
    while (hn) {
        uint64_t v = heap_pop(h, &hn);
        int32_t p = (int32_t)(v & 0xffffffffu), r = (int32_t)(v >> 32);
        const tok_merge *m;
        if (s->id[p] < 0 || pair_rank(t, s, p, &m) != r)
            continue;
        join(s, p, m);
        if (s->prev[p] >= 0)
            consider(t, s, s->prev[p], h, &hn);
        consider(t, s, p, h, &hn);
    }
}

/* Bucket queue: bucket r holds positions whose pair had rank r when they were added, in
 * 64-byte blocks (one cache line, scanned in order: no pointer chase per entry). Entries are
 * never removed; an entry is live when the pair at its position still has rank r.
 *
 * Why this equals the heap: with a monotonic merge list, merging a pair of rank r creates only
 * pairs of rank > r, so the heap pops every rank-r pair before any other, and no rank-r pair
 * appears while it does. Occurrences of a pair (A, B) with A != B cannot overlap, so their order
 * does not matter. When A == B they overlap only inside a run of A's, where leftmost-first pairs
 * them from the start of the run; we do the same by walking to the start of the run. (Buckets
 * fill in position order when every merged string has one producing merge, as in GPT-2, and
 * the walk is then a no-op; it keeps the result right for lists where it might not.) */
#define BLOCK_POS 14
typedef struct {
    int32_t next; /* block index, -1 at the end */
    uint32_t n;
    int32_t pos[BLOCK_POS];
} block;

typedef struct {
    block *pool;
    size_t n_blocks, cap;
    int32_t free_list;  /* recycled blocks */
    int32_t *head, *tail; /* per rank, block indices */
    int failed;         /* out of memory */
} buckets;

static void bucket_add(buckets *b, int32_t p, int32_t r)
{
    int32_t t = b->tail[r];
    if (t < 0 || b->pool[t].n == BLOCK_POS) {
        int32_t nb = b->free_list;
        if (nb >= 0) {
            b->free_list = b->pool[nb].next;
        } else {
            if (b->n_blocks == b->cap) {
                size_t cap = b->cap * 2;
                block *np = cap < INT32_MAX ? realloc(b->pool, cap * sizeof *np) : NULL;
                if (!np) {
                    b->failed = 1;
                    return;
                }
                b->pool = np;
                b->cap = cap;
            }
            nb = (int32_t)b->n_blocks++;
        }
        b->pool[nb].next = -1;
        b->pool[nb].n = 0;
        if (t < 0)
            b->head[r] = nb;
        else
            b->pool[t].next = nb;
        b->tail[r] = t = nb;
    }
    b->pool[t].pos[b->pool[t].n++] = p;
}

static void bucket_join(const tok_tokenizer *t, syms *s, buckets *b, int32_t p, const tok_merge *m)
{
    join(s, p, m);
    int32_t l = s->prev[p], r;
    if (l >= 0 && (r = pair_rank(t, s, l, NULL)) >= 0)
        bucket_add(b, l, r);
    if ((r = pair_rank(t, s, p, NULL)) >= 0)
        bucket_add(b, p, r);
}

static int merge_buckets(const tok_tokenizer *t, syms *s, size_t n)
{
    buckets b = {.cap = n / BLOCK_POS + 64, .free_list = -1};
    b.pool = malloc(b.cap * sizeof *b.pool);
    b.head = malloc(t->n_ranks * sizeof(int32_t));
    b.tail = malloc(t->n_ranks * sizeof(int32_t));
    if (!b.pool || !b.head || !b.tail) {
        b.failed = 1;
        goto out;
    }
    memset(b.head, 0xff, t->n_ranks * sizeof(int32_t));
    memset(b.tail, 0xff, t->n_ranks * sizeof(int32_t));
    for (size_t p = 0; p + 1 < n; p++) {
        int32_t r = pair_rank(t, s, (int32_t)p, NULL);
        if (r >= 0)
            bucket_add(&b, (int32_t)p, r);
    }
    for (size_t r = 0; r < t->n_ranks && !b.failed; r++) {
        /* Adding to other buckets may move the pool: index it afresh each time. */
        for (int32_t bi = b.head[r]; bi >= 0 && !b.failed; bi = b.pool[bi].next) {
            for (uint32_t i = 0; i < b.pool[bi].n; i++) {
                int32_t p = b.pool[bi].pos[i];
                const tok_merge *m;
                if (s->id[p] < 0 || pair_rank(t, s, p, &m) != (int32_t)r)
                    continue; /* merged away, or its pair changed (and went to a later bucket) */
                int32_t a = s->id[p];
                if ((int32_t)(m->key & 0xffffffffu) != a) {
                    bucket_join(t, s, &b, p, m);
                    continue;
                }
                while (s->prev[p] >= 0 && s->id[s->prev[p]] == a)
                    p = s->prev[p];
                for (; p >= 0 && s->id[p] == a && s->next[p] >= 0 && s->id[s->next[p]] == a; p = s->next[p])
                    bucket_join(t, s, &b, p, m);
            }
        }
        if (b.head[r] >= 0) { /* recycle the bucket's blocks */
            b.pool[b.tail[r]].next = b.free_list;
            b.free_list = b.head[r];
        }
    }
out:
    free(b.pool);
    free(b.head);
    free(b.tail);
    return b.failed ? -1 : 0;
}

/* Words at least this long use the bucket queue (its setup touches one int per rank). */
static int use_buckets(const tok_tokenizer *t, size_t n)
{
    return t->merges_monotonic && n >= 4096 && n >= t->n_ranks / 16;
}

/* ---------------------------------------------------------------- words */

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

/* Where a word's tokens point: `text` is what was pre-tokenized; when `prefixed`, it is the
 * original segment with a ' ' put in front (add_prefix_space), and that space maps to the
 * segment's first character, as Hugging Face's NormalizedString::prepend aligns it. */
typedef struct {
    const char *text, *orig;
    size_t len, orig_len, base;
    int prefixed, seq;
} seg;

static int push_token(const tok_tokenizer *t, const seg *g, tok_encoding *e, int32_t id, size_t b0, size_t b1)
{
    size_t lead = 0, trail = 0;
    if (t->trim_offsets) { /* ByteLevel post-processor: spaces at either end are left out */
        while (b0 + lead < b1 && g->text[b0 + lead] == ' ')
            lead++;
        while (b1 - trail > b0 && g->text[b1 - 1 - trail] == ' ')
            trail++;
    }
    size_t o0 = b0, o1 = b1;
    if (g->prefixed) {
        size_t first = g->orig_len ? char_end(g->orig, g->orig_len, 1) : 0;
        o0 = b0 ? b0 - 1 : 0;
        o1 = b1 > 1 ? b1 - 1 : first;
    }
    size_t s0 = g->base + char_start(g->orig, o0), s1 = g->base + char_end(g->orig, g->orig_len, o1);
    if (lead) { /* Rust's process_offsets: keep one space the post-processor says it added */
        int first = e->len == 0 || s0 == 0;
        if (!(first && t->post_prefix_space && lead == 1))
            s0 = s0 + lead < s1 ? s0 + lead : s1;
    }
    if (trail && s1 >= trail)
        s1 = s1 - trail > s0 ? s1 - trail : s0;
    return tok_push(e, id, g->seq, 0, g->seq, s0, s1);
}

static uint64_t fnv(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

/* Short words repeat (" the", " of"): a hit skips the merging. The entry is copied out under its
 * stripe's lock, so concurrent writers cannot tear it. */
static int cache_get(const tok_tokenizer *t, const char *word, size_t n, size_t slot, tok_cache_entry *hit)
{
    pthread_mutex_t *lock = (pthread_mutex_t *)&t->cache_locks[slot % TOK_CACHE_LOCKS];
    pthread_mutex_lock(lock);
    *hit = t->cache[slot];
    pthread_mutex_unlock(lock);
    return hit->n_ids && hit->key_len == n && memcmp(hit->key, word, n) == 0;
}

static void cache_put(const tok_tokenizer *t, size_t slot, const tok_cache_entry *fresh)
{
    pthread_mutex_t *lock = (pthread_mutex_t *)&t->cache_locks[slot % TOK_CACHE_LOCKS];
    pthread_mutex_lock(lock);
    ((tok_cache_entry *)t->cache)[slot] = *fresh;
    pthread_mutex_unlock(lock);
}

#define SMALL_WORD 64 /* words this short merge in stack buffers */

/* Encodes one pre-token g->text[at..at+n) and appends its tokens. */
static int encode_word(const tok_tokenizer *t, seg *g, size_t at, size_t n, tok_encoding *e, tok_error *err)
{
    const char *word = g->text + at;
    int cacheable = t->byte_level && n <= TOK_CACHE_KEY;
    size_t slot = 0;
    if (cacheable) {
        tok_cache_entry hit;
        slot = fnv(word, n) % TOK_CACHE_SLOTS;
        if (cache_get(t, word, n, slot, &hit)) {
            for (size_t i = 0, start = 0; i < hit.n_ids; start = hit.ends[i++])
                if (push_token(t, g, e, hit.ids[i], at + start, at + hit.ends[i]))
                    return tok_fail(err, TOK_ENOMEM, "out of memory");
            return 0;
        }
    }
    int32_t small[3 * SMALL_WORD];
    uint64_t small_heap[2 * SMALL_WORD];
    int32_t *buf = small;
    uint64_t *heap = small_heap;
    syms s = {0};
    int chars = !t->byte_level;
    if (n > SIZE_MAX / (8 * sizeof *heap)) /* keeps every size product below in range */
        return tok_fail(err, TOK_ELIMIT, "a word of %zu bytes is too long", n);
    if (n > SMALL_WORD || chars) {
        buf = malloc(n * (chars ? 5 : 3) * sizeof *buf);
        if (!buf)
            return tok_fail(err, TOK_ENOMEM, "out of memory for a word of %zu bytes", n);
    }
    s.id = buf, s.prev = buf + n, s.next = buf + 2 * n;
    size_t k = 0;
    if (!chars) {
        for (size_t i = 0; i < n; i++) {
            s.id[i] = t->byte_id[(unsigned char)word[i]];
            s.prev[i] = (int32_t)i - 1;
            s.next[i] = (int32_t)i + 1;
        }
        k = n;
    } else { /* character symbols; unknown ones become unk, or are dropped as HF does */
        s.start = (uint32_t *)(buf + 3 * n), s.end = (uint32_t *)(buf + 4 * n);
        uint32_t cp;
        for (size_t i = 0, cl; i < n; i += cl) {
            cl = tu_decode((const unsigned char *)word + i, n - i, &cp);
            int32_t id = tok_map_get(t, word + i, cl);
            if (id < 0)
                id = t->unk_id;
            if (id < 0)
                continue;
            s.id[k] = id, s.prev[k] = (int32_t)k - 1, s.next[k] = (int32_t)k + 1;
            s.start[k] = (uint32_t)i, s.end[k] = (uint32_t)(i + cl);
            k++;
        }
    }
    if (k)
        s.next[k - 1] = -1;
    int rc = 0;
    if (k >= 2 && t->merges_mask) {
        if (use_buckets(t, k)) {
            if (merge_buckets(t, &s, k))
                rc = tok_fail(err, TOK_ENOMEM, "out of memory for a word of %zu bytes", n);
        } else {
            if (k > SMALL_WORD && !(heap = malloc(2 * k * sizeof *heap)))
                rc = tok_fail(err, TOK_ENOMEM, "out of memory for a word of %zu bytes", n);
            else
                merge_heap(t, &s, k, heap);
        }
    }
    tok_cache_entry fresh = {.key_len = (uint8_t)n};
    for (int32_t i = k ? 0 : -1; i >= 0 && !rc; i = s.next[i]) {
        size_t b0 = chars ? s.start[i] : (size_t)i;
        size_t b1 = chars ? s.end[i] : s.next[i] >= 0 ? (size_t)s.next[i] : n;
        if (push_token(t, g, e, s.id[i], at + b0, at + b1))
            rc = tok_fail(err, TOK_ENOMEM, "out of memory");
        if (fresh.n_ids < TOK_CACHE_IDS) {
            fresh.ids[fresh.n_ids] = s.id[i];
            fresh.ends[fresh.n_ids] = (uint8_t)b1;
        }
        if (fresh.n_ids <= TOK_CACHE_IDS)
            fresh.n_ids++;
    }
    if (!rc && cacheable && fresh.n_ids && fresh.n_ids <= TOK_CACHE_IDS) {
        memcpy(fresh.key, word, n);
        cache_put(t, slot, &fresh);
    }
    if (buf != small)
        free(buf);
    if (heap != small_heap)
        free(heap);
    return rc;
}

/* ---------------------------------------------------------------- the GPT-2 pattern
 * 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * Leftmost matches, alternatives in order, greedy with backtracking. Written out by hand:
 * next_pretoken returns the length of the match at text[i..len) (always >= 1). */

enum { CL_SPACE, CL_LETTER, CL_NUMBER, CL_OTHER };

static int cls_at(const char *text, size_t len, size_t i, size_t *clen)
{
    unsigned char c = (unsigned char)text[i];
    if (c < 0x80) { /* ASCII fast path; same answers as the tables */
        *clen = 1;
        if (c == ' ' || (c >= 9 && c <= 13))
            return CL_SPACE;
        if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
            return CL_LETTER;
        return c >= '0' && c <= '9' ? CL_NUMBER : CL_OTHER;
    }
    uint32_t cp = 0xFFFD;
    *clen = tu_decode((const unsigned char *)text + i, len - i, &cp);
    if (!*clen) /* cannot happen: the text was validated; keep the scan moving anyway */
        *clen = 1;
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
    if (c != CL_SPACE)
        return run_of(text, len, j, c) - i;
    /* Whitespace: the run minus its last char when a non-space follows, else all of it. */
    size_t end = run_of(text, len, i, CL_SPACE);
    if (end == len)
        return end - i;
    size_t last = char_start(text, end - 1);
    return last > i ? last - i : end - i;
}

static int encode_segment(const tok_tokenizer *t, seg *g, tok_encoding *e, tok_error *err)
{
    if (!t->byte_level || !t->use_regex) /* no pattern: the whole segment is one word */
        return g->len ? encode_word(t, g, 0, g->len, e, err) : 0;
    for (size_t i = 0; i < g->len;) {
        size_t n = next_pretoken(g->text, g->len, i);
        int rc = encode_word(t, g, i, n, e, err);
        if (rc)
            return rc;
        i += n;
    }
    return 0;
}

int bpe_encode(const tok_tokenizer *t, const char *text, size_t len, size_t base, int seq, tok_encoding *e,
               tok_error *err)
{
    seg g = {text, text, len, len, base, 0, seq};
    if (!(t->byte_level && t->add_prefix_space && len && text[0] != ' '))
        return encode_segment(t, &g, e, err);
    char *p = malloc(len + 1);
    if (!p)
        return tok_fail(err, TOK_ENOMEM, "out of memory");
    p[0] = ' ';
    memcpy(p + 1, text, len);
    g.text = p, g.len = len + 1, g.prefixed = 1;
    int rc = encode_segment(t, &g, e, err);
    free(p);
    return rc;
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
    if (t->decoder != TOK_DEC_BYTELEVEL) {
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
