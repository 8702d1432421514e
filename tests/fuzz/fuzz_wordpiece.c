/* fuzz_wordpiece.c — BERT WordPiece on arbitrary bytes, through tokenizer.h only, with the
 * checks of fuzz_tok.h (normalization, accent stripping and lowercasing change lengths, and
 * offsets must still point at input bytes). The real tokenizer is
 * testdata/tokenizers/bert-base-uncased; the tiny stand-in is written below. */
#include <stdio.h>

#include "fuzz_tok.h"

/* A tiny uncased WordPiece vocabulary: specials, letters, "##" letters, digits, punctuation. */
static int write_tiny_wordpiece(const char *dir)
{
    char vocab[2048];
    size_t n = (size_t)snprintf(vocab, sizeof vocab, "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n##ing\n");
    for (char c = 'a'; c <= 'z'; c++)
        n += (size_t)snprintf(vocab + n, sizeof vocab - n, "%c\n##%c\n", c, c);
    for (const char *p = "0123456789.,!?'\"-()[]"; *p; p++)
        n += (size_t)snprintf(vocab + n, sizeof vocab - n, "%c\n", *p);
    static const char config[] = "{\"do_lower_case\": true, \"model_max_length\": 512}\n";
    return fuzz_tok_write(dir, "vocab.txt", vocab, n) |
           fuzz_tok_write(dir, "tokenizer_config.json", config, sizeof config - 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const unsigned flags[] = {TOK_DECODE_LOSSY, TOK_DECODE_LOSSY | TOK_DECODE_SKIP_SPECIAL,
                                     TOK_DECODE_LOSSY | TOK_DECODE_KEEP_SPACES};
    fuzz_tok_run(fuzz_tok_load("tokenizers/bert-base-uncased", write_tiny_wordpiece), data, size, flags, 3, 0);
    return 0;
}
