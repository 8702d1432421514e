/*
 * encoder.h — the two BERT-based services: a sentence-transformers bi-encoder (text ->
 * embedding) and a cross-encoder (query, document -> relevance score).
 *
 * Both load a Hugging Face directory (FORMATS.md §2.5 and §3): the network, its tokenizer
 * and the packaging files, and are read-only afterwards (safe from many threads).
 * Tokenizing is separate from running the network so callers can check lengths, sort and
 * batch; a sequence is a tok_encoding as tok_encode produced it.
 */
#ifndef RAGD_ENCODER_H
#define RAGD_ENCODER_H

#include <stddef.h>

#include "bert.h"
#include "model_error.h"
#include "tokenizer.h"

/* Pooling modes of 1_Pooling/config.json; several may be set (concatenated in this order). */
enum {
    ENC_POOL_CLS = 1u << 0,
    ENC_POOL_MAX = 1u << 1,
    ENC_POOL_MEAN = 1u << 2,
    ENC_POOL_MEAN_SQRT = 1u << 3,
    ENC_POOL_WEIGHTED = 1u << 4,
    ENC_POOL_LAST = 1u << 5,
};

typedef struct enc_model enc_model;

/* Loads a bi-encoder (sentence-transformers directory) or, with `cross`, a cross-encoder
 * (BertForSequenceClassification directory). `tok` is the directory's tokenizer, loaded by
 * the caller; it is borrowed and must outlive the model. */
int enc_load(const char *dir, int cross, const tok_tokenizer *tok, enc_model **out, mdl_error *err);
/* 1 when `dir` holds weights (model.safetensors or its index), so enc_load can succeed. */
int enc_has_weights(const char *dir);
void enc_free(enc_model *m); /* accepts NULL */

const tok_tokenizer *enc_tokenizer(const enc_model *m);
const bert_config *enc_bert_config(const enc_model *m);
size_t enc_dim(const enc_model *m);          /* embedding width (bi-encoder) */
size_t enc_max_tokens(const enc_model *m);   /* max_seq_length incl. [CLS]/[SEP] */
unsigned enc_pooling(const enc_model *m);
int enc_normalizes(const enc_model *m);      /* has a Normalize module */
int enc_sigmoid(const enc_model *m);         /* cross-encoder applies sigmoid by default */
int enc_is_cross(const enc_model *m);

/* Tokenizes a text (or a query/document pair for a cross-encoder) the way
 * sentence-transformers does: strips Unicode whitespace at both ends (bi-encoder), lower-cases
 * when sentence_bert_config says so, adds [CLS]/[SEP]. When the result is longer than
 * enc_max_tokens: with `truncate` it is cut from `direction`'s end (longest_first for pairs);
 * without, TOK_ELIMIT is returned (err names the length and the limit). */
int enc_tokenize(const enc_model *m, const char *a, size_t a_len, const char *b, size_t b_len,
                 int truncate, tok_direction direction, tok_encoding *out, tok_error *err);

/* Embeds n tokenized texts into out[n, enc_dim] (pooled, then L2-normalized when
 * `normalize`). Sequences of any lengths; padded internally. */
int enc_embed(const enc_model *m, const tok_encoding *seqs, size_t n, int normalize, float *out,
              mdl_error *err);

/* Scores n tokenized pairs: out[n] = raw logits (label 0). */
int enc_score(const enc_model *m, const tok_encoding *seqs, size_t n, float *out, mdl_error *err);

#endif
