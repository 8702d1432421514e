/*
 * tok_impl.h — internals shared by the tokenizer files (tok_common.c: loading, encoding
 * orchestration, truncation, templates, decoding; tok_bpe.c; tok_wordpiece.c).
 */
#ifndef RAGD_TOK_IMPL_H
#define RAGD_TOK_IMPL_H

#include <pthread.h>
#include <stdint.h>

#include "tokenizer.h"

#define TOK_MAX_TOKEN_BYTES 1024 /* longest vocabulary entry accepted */
#define TOK_MAX_VOCAB (1 << 22)

/* String -> id, open addressing over the id_to_tok strings. */
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

/* One piece of a post-processing template. */
typedef struct {
    int seq;         /* -1 special token, 0 = sequence A, 1 = sequence B */
    int32_t id;      /* for special tokens */
    int type_id;
} tok_piece;

typedef struct {
    uint64_t key;    /* left id << 32 | right id; UINT64_MAX = empty */
    int32_t rank, merged;
} tok_merge;

#define TOK_CACHE_SLOTS 4096
#define TOK_CACHE_KEY 32
#define TOK_CACHE_IDS 16

typedef struct {
    uint32_t key_len, n_ids;
    char key[TOK_CACHE_KEY];
    int32_t ids[TOK_CACHE_IDS];
    uint16_t ends[TOK_CACHE_IDS]; /* byte end of each token within the word */
} tok_cache_entry;

struct tok_tokenizer {
    tok_kind kind;
    char **vocab;         /* id -> token string (NULL for unused ids) */
    size_t *vocab_len;
    size_t vocab_size;    /* largest id + 1 */
    tok_map map;
    tok_added *added;
    size_t n_added;
    unsigned char added_first[256]; /* first bytes of added tokens, for a fast scan */
    tok_piece *single, *pair;
    size_t n_single, n_pair;
    size_t model_max_length;
    int32_t eos_id, pad_id;
    int clean_up;         /* decode: clean_up_tokenization_spaces / decoder cleanup */

    /* BPE */
    int byte_level, add_prefix_space, decoder_byte_level;
    tok_merge *merges;
    size_t merges_mask;
    int32_t byte_id[256]; /* id of each byte's symbol (byte-level) */
    int16_t byte_of_cp[324]; /* inverse of bytes_to_unicode, -1 where none */
    int32_t unk_id;       /* BPE unk or WordPiece [UNK]; -1 = none */
    pthread_mutex_t cache_lock;
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

/* tok_bpe.c: merges are "A B" pairs of token strings; builds the merge table. */
int bpe_add_merge(tok_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen, int32_t rank,
                  tok_error *err);
int bpe_init(tok_tokenizer *t, size_t n_merges, tok_error *err);
void bpe_free(tok_tokenizer *t);
/* Encodes text[0..len) (no added tokens inside) appending to e with offsets + base. */
int bpe_encode(const tok_tokenizer *t, const char *text, size_t len, size_t base, int seq, tok_encoding *e,
               tok_error *err);
/* Appends the bytes a token stands for (byte-level decoding) to out. */
int bpe_token_bytes(const tok_tokenizer *t, int32_t id, char **out, size_t *len, size_t *cap);

/* tok_wordpiece.c */
int wp_encode(const tok_tokenizer *t, const char *text, size_t len, size_t base, int seq, tok_encoding *e,
              tok_error *err);

#endif
