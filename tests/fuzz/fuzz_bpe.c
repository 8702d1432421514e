/* fuzz_bpe.c — GPT-2 byte-level BPE on arbitrary bytes: encoding valid UTF-8 must succeed
 * and decode back to the same bytes; anything else must be refused cleanly. Also encodes
 * the input as a pair split at its first byte, with truncation. */
#include "fuzz_tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_tokenizer("tokenizers/gpt2", data, size, 1);
}
