/*
 * tok_impl.h — internals shared by the tokenizer files:
 *   tok_load.c      reading tokenizer directories (tokenizer.json, vocab.json + merges.txt,
 *                   vocab.txt + tokenizer_config.json);
 *   tok_common.c    the vocabulary map, added tokens, truncation, templates, decoding;
 *   tok_bpe.c       byte-level / character-level BPE;
 *   tok_wordpiece.c BERT normalizer, pre-tokenizer and WordPiece.
 * A loaded tok_tokenizer is immutable except for the BPE word cache, which has its own locks.
 */
#ifndef RAGD_TOK_IMPL_H
#define RAGD_TOK_IMPL_H

#include <pthread.h>
#include <stdint.h>

#include "tokenizer.h"

#define TOK_MAX_TOKEN_BYTES 1024       /* longest vocabulary entry accepted */
#define TOK_MAX_VOCAB (1 << 22)        /* largest id + 1 accepted from a file */
#define TOK_MAX_FILE (512u << 20)      /* largest tokenizer file read (bytes) */
#define TOK_MAX_INPUT (UINT32_MAX - 1) /* offsets are uint32_t: longest text accepted */

/* String -> id, open addressing over the vocab strings (load factor <= 1/2). */
typedef struct {
    int32_t *slots; /* -1 = empty */
    size_t mask;
} tok_map;

typedef struct {
    char *content;
    size_t len;
    int32_t id;
    int special;
} tok_added;

/* How ids become text: tokens joined with spaces (no decoder), WordPiece (## glued), ByteLevel. */
typedef enum { TOK_DEC_NONE, TOK_DEC_WORDPIECE, TOK_DEC_BYTELEVEL } tok_decoder;

/* One piece of a post-processing template. */
typedef struct {
    int seq;         /* -1 special token, 0 = sequence A, 1 = sequence B */
    int32_t id;      /* for special tokens */
    int type_id;
} tok_piece;

/* A merge: the pair (left id, right id) -> rank and merged id. */
typedef struct {
    uint64_t key;    /* left id << 32 | right id; UINT64_MAX = empty slot */
    int32_t rank, merged;
} tok_merge;

/* BPE word cache: direct-mapped, striped locks. Entries are copied in and out under the lock,
 * so a reader never sees a half-written entry. */
#define TOK_CACHE_SLOTS 8192
#define TOK_CACHE_LOCKS 16
#define TOK_CACHE_KEY 24
#define TOK_CACHE_IDS 8

typedef struct {
    uint8_t key_len, n_ids;
    char key[TOK_CACHE_KEY];
    int32_t ids[TOK_CACHE_IDS];
    uint8_t ends[TOK_CACHE_IDS]; /* byte end of each token within the word */
} tok_cache_entry;

struct tok_tokenizer {
    tok_kind kind;
    char **vocab;         /* id -> token string (NULL for unused ids) */
    size_t *vocab_len;
    size_t vocab_size;    /* largest id + 1 */
    size_t max_token_len; /* longest vocabulary string, bytes */
    tok_map map;
    tok_added *added;     /* sorted by first byte; see added_lo/hi */
    size_t n_added;
    uint32_t added_lo[256], added_hi[256]; /* added[lo..hi) start with that byte */
    uint8_t *special;     /* per id: 1 for added special tokens (decode skips them) */
    tok_piece *single, *pair;
    size_t n_single, n_pair;
    size_t model_max_length;
    int32_t eos_id, pad_id;
    int dec_cleanup;      /* WordPiece decoder "cleanup": per-token, as the Rust decoder does */
    int clean_up_spaces;  /* transformers' clean_up_tokenization_spaces, on the whole text */

    /* BPE */
    int byte_level;       /* ByteLevel pre-tokenizer (GPT-2 regex + byte alphabet) */
    int use_regex;        /* ByteLevel: split with the GPT-2 pattern first */
    int add_prefix_space; /* ByteLevel pre-tokenizer: prepend ' ' when a segment lacks one */
    int trim_offsets;     /* ByteLevel post-processor: offsets exclude leading/trailing spaces */
    int post_prefix_space; /* ByteLevel post-processor add_prefix_space (trim_offsets detail) */
    tok_decoder decoder;
    tok_merge *merges;
    size_t merges_mask;
    size_t n_ranks;       /* largest merge rank + 1 */
    int merges_monotonic; /* every merge ranks after the merges that make its parts */
    int32_t byte_id[256]; /* id of each byte's symbol (byte-level) */
    int16_t byte_of_cp[324]; /* inverse of bytes_to_unicode, -1 where none */
    int32_t unk_id;       /* BPE unk or WordPiece [UNK]; -1 = none */
    pthread_mutex_t cache_locks[TOK_CACHE_LOCKS];
    tok_cache_entry *cache;

    /* WordPiece */
    char prefix[16];      /* continuing_subword_prefix, "##" */
    size_t prefix_len, max_chars;
    int clean_text, handle_cjk, strip_accents, lowercase;
};

/* tok_common.c */
int tok_map_put(tok_tokenizer *t, int32_t id);
int32_t tok_map_get(const tok_tokenizer *t, const char *s, size_t len);
int tok_push(tok_encoding *e, int32_t id, int type_id, int special, int seq, size_t start, size_t stop);
int tok_fail(tok_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* tok_load.c: sets up the vocabulary arrays and map for ids [0, size). */
int tok_vocab_alloc(tok_tokenizer *t, size_t size, tok_error *err);
/* Sets vocab[id] = s (copied); a second string for the same id is a format error. */
int tok_vocab_set(tok_tokenizer *t, int32_t id, const char *s, size_t len, const char *file, tok_error *err);
/* Registers an added token (matched in raw text before the model runs). */
int tok_add_added(tok_tokenizer *t, const char *content, size_t len, int32_t id, int special, const char *file,
                  tok_error *err);
/* After all added tokens: sorts them and builds the first-byte index. */
int tok_added_finish(tok_tokenizer *t, tok_error *err);

/* tok_bpe.c: merges are "A B" pairs of token strings. bpe_init sizes the merge table,
 * bpe_add_merge adds one merge (a repeated pair keeps its later rank, as the Rust and Python
 * readers do), bpe_finish checks the table once all merges are in. */
int bpe_init(tok_tokenizer *t, size_t n_merges, tok_error *err);
int bpe_add_merge(tok_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen, int32_t rank,
                  tok_error *err);
void bpe_finish(tok_tokenizer *t);
void bpe_free(tok_tokenizer *t);
/* Encodes text[0..len) (no added tokens inside; valid UTF-8) appending to e with offsets + base. */
int bpe_encode(const tok_tokenizer *t, const char *text, size_t len, size_t base, int seq, tok_encoding *e,
               tok_error *err);
/* Appends the bytes a token stands for (byte-level decoding) to out. */
int bpe_token_bytes(const tok_tokenizer *t, int32_t id, char **out, size_t *len, size_t *cap);

/* tok_wordpiece.c */
int wp_encode(const tok_tokenizer *t, const char *text, size_t len, size_t base, int seq, tok_encoding *e,
              tok_error *err);

#endif
