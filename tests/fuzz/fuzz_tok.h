/* fuzz_tok.h — what the tokenizer fuzz targets share: loading the tokenizer under test once,
 * and the checks every tokenizer must pass on arbitrary bytes.
 *
 * Input layout: byte 0 chooses the options (special tokens, truncation length and side, where
 * the pair is split); the rest is the text. Checked, abort() on failure (a fuzz finding):
 *   - tok_encode succeeds exactly when the text is valid UTF-8, and refuses it with TOK_EINPUT
 *     otherwise; ids are in the vocabulary and offsets inside the text;
 *   - every decoding the target names succeeds, and lossy ones give valid UTF-8;
 *   - with `round_trip`, decode(encode(x)) == x byte for byte;
 *   - a pair split at a byte, truncated to a length taken from the input, stays within that
 *     length, with type ids 0 then 1 and offsets inside their own text. */
#ifndef RAGD_FUZZ_TOK_H
#define RAGD_FUZZ_TOK_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

/* The tokenizer under test, loaded on the first call: the real one from
 * $RAGD_SHARED/testdata/REL (default ../shared), or else the tiny one write_tiny writes into
 * the temporary directory it is given, so the target fuzzes anywhere. Aborts when neither
 * loads (the harness itself is broken). */
const tok_tokenizer *fuzz_tok_load(const char *rel, int (*write_tiny)(const char *dir));

/* Writes dir/name; 0 on success. */
int fuzz_tok_write(const char *dir, const char *name, const char *text, size_t len);

/* One fuzz input through the checks above; `flags` lists the decodings to check. */
void fuzz_tok_run(const tok_tokenizer *tok, const uint8_t *data, size_t size, const unsigned *flags,
                  size_t n_flags, int round_trip);

#endif
