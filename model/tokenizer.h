/*
 * tokenizer.h — Hugging Face compatible tokenizers: GPT-2 byte-level BPE and BERT WordPiece.
 *
 * A tok_tokenizer is loaded once from a model directory and is then read-only: every
 * function below that takes a `const tok_tokenizer *` is safe to call from many threads at
 * once. Behaviour follows the "fast" (Rust tokenizers) implementation described in
 * shared/spec/FORMATS.md §4 and §5.5.
 *
 * Errors: fallible functions return 0 on success or a negative TOK_E* code, and write a
 * human-readable message into the caller's tok_error (never a pointer into shared state).
 */
#ifndef RAGD_TOKENIZER_H
#define RAGD_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

enum {
    TOK_OK = 0,
    TOK_ENOMEM = -1,   /* allocation failed */
    TOK_EIO = -2,      /* a file is missing or unreadable */
    TOK_EFORMAT = -3,  /* a tokenizer file is malformed */
    TOK_EINPUT = -4,   /* the caller's input is invalid (bad UTF-8, id out of range, ...) */
    TOK_ELIMIT = -5,   /* the input exceeds a limit given by the caller */
};

typedef struct {
    int code;
    char msg[256];
} tok_error;

typedef enum { TOK_KIND_BPE, TOK_KIND_WORDPIECE } tok_kind;
typedef enum { TOK_TRUNCATE_RIGHT, TOK_TRUNCATE_LEFT } tok_direction;

typedef struct tok_tokenizer tok_tokenizer;

/* One encoded sequence. Arrays have `len` valid entries and are owned by the encoding;
 * release with tok_encoding_free. For a token that came from the input, `seq` is 0 (first
 * text) or 1 (second text of a pair) and [start, stop) are byte offsets into that text;
 * a special token added by the post-processor has seq = -1 and start = stop = 0.
 * Offsets follow Hugging Face's (Rust) offsets, in bytes rather than characters: a WordPiece
 * token spans the original bytes its normalized characters came from (so "Héllo" -> "hello"
 * is [0, 6)); a byte-level BPE token that holds part of a multi-byte character spans the whole
 * character; and since GPT-2's ByteLevel post-processor has trim_offsets false, " world" in
 * "Hello world" is [5, 11), its space included (trim_offsets true is honoured when a
 * tokenizer.json asks for it). */
typedef struct {
    int32_t *ids;
    int32_t *type_ids;    /* token_type_ids (0 for A and its specials, 1 for B in a pair) */
    uint8_t *special;     /* 1 for special tokens (added by the template or matched added tokens) */
    int8_t *seq;
    uint32_t *start, *stop;
    size_t len, cap;
} tok_encoding;

typedef struct {
    int add_special_tokens;     /* apply the post-processor template ([CLS]/[SEP] for BERT) */
    size_t max_length;          /* 0 = no truncation; else total length incl. special tokens */
    tok_direction direction;    /* which end truncation removes tokens from */
} tok_options;

/* Load from a directory: tokenizer.json when present, otherwise vocab.json + merges.txt
 * (BPE) or vocab.txt (+ tokenizer_config.json, WordPiece). On success *out owns the
 * tokenizer; on failure *out is NULL and err names the file and the problem. */
int tok_load_dir(const char *dir, tok_tokenizer **out, tok_error *err);
void tok_destroy(tok_tokenizer *tok); /* accepts NULL */

tok_kind tok_get_kind(const tok_tokenizer *tok);
size_t tok_vocab_size(const tok_tokenizer *tok);     /* largest id + 1 */
size_t tok_model_max_length(const tok_tokenizer *tok); /* from tokenizer_config.json, 0 if absent */
/* The token string for an id (as stored in the vocabulary, e.g. "Ġworld" or "##ing"),
 * or NULL when the id is out of range. The pointer lives as long as the tokenizer. */
const char *tok_id_to_token(const tok_tokenizer *tok, int32_t id);
/* Ids of well-known specials, -1 when the tokenizer has none. */
int32_t tok_eos_id(const tok_tokenizer *tok);  /* GPT-2: <|endoftext|> */
int32_t tok_pad_id(const tok_tokenizer *tok);  /* BERT: [PAD] */

/* Encode one text (a pair when b != NULL) of UTF-8 bytes. Invalid UTF-8 is TOK_EINPUT.
 * Truncation (opts->max_length > 0) follows longest_first for pairs. `out` is reset first
 * and may be reused across calls; on failure it is freed (empty, nothing to free). */
int tok_encode(const tok_tokenizer *tok, const char *a, size_t a_len,
               const char *b, size_t b_len, const tok_options *opts,
               tok_encoding *out, tok_error *err);
void tok_encoding_free(tok_encoding *enc); /* frees the arrays and zeroes the struct */

enum {
    TOK_DECODE_SKIP_SPECIAL = 1 << 0, /* drop special tokens */
    TOK_DECODE_KEEP_SPACES = 1 << 1,  /* no clean_up_tokenization_spaces, even when configured */
    TOK_DECODE_LOSSY = 1 << 2,        /* replace invalid UTF-8 with U+FFFD as Rust's
                                       * String::from_utf8_lossy does (one per maximal invalid
                                       * subsequence), i.e. what Hugging Face's decode returns */
};

/* Decode ids to text; `flags` is a set of TOK_DECODE_*. Byte-level tokens give back the exact
 * bytes, which need not be valid UTF-8 (a character can span tokens, as when streaming);
 * callers that show text pass TOK_DECODE_LOSSY (or replace invalid sequences themselves).
 * WordPiece: tokens joined with spaces, "##" pieces glued, the decoder's per-token cleanup,
 * then clean_up_tokenization_spaces unless TOK_DECODE_KEEP_SPACES. An id outside the vocabulary
 * is TOK_EINPUT. On success *out is a NUL-terminated heap string the caller frees, and
 * *out_len its length. */
int tok_decode(const tok_tokenizer *tok, const int32_t *ids, size_t n, unsigned flags,
               char **out, size_t *out_len, tok_error *err);

#endif
