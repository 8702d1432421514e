/* fuzz_wordpiece.c — BERT WordPiece on arbitrary bytes: normalization, pre-tokenization,
 * pairs and truncation must never crash, and offsets must stay inside the input. */
#include "fuzz_tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_tokenizer("tokenizers/bert-base-uncased", data, size, 0);
}
