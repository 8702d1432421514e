/* fuzz_bpe.c — GPT-2 byte-level BPE on arbitrary bytes, through tokenizer.h only, with the
 * checks of fuzz_tok.h, decode(encode(x)) == x among them (byte-level BPE loses nothing).
 * The real tokenizer is testdata/tokenizers/gpt2; the tiny stand-in is written below. */
#include <stdio.h>

#include "fuzz_tok.h"

/* A tiny GPT-2 style tokenizer: the 256 byte symbols, three merges and <|endoftext|>. */
static int write_tiny_bpe(const char *dir)
{
    char vocab[256 * 16 + 128];
    size_t n = 0;
    int next = 0x100; /* bytes without a printable symbol map to U+0100 upwards, in order */
    vocab[n++] = '{';
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
        int cp = printable ? b : next++;
        n += (size_t)snprintf(vocab + n, sizeof vocab - n, "%s\"\\u%04x\":%d", b ? "," : "", cp, b);
    }
    n += (size_t)snprintf(vocab + n, sizeof vocab - n,
                          ",\"\\u0120t\":256,\"he\":257,\"\\u0120the\":258,\"<|endoftext|>\":259}");
    static const char merges[] = "#version: 0.2\n\xc4\xa0 t\nh e\n\xc4\xa0t he\n";
    return fuzz_tok_write(dir, "vocab.json", vocab, n) |
           fuzz_tok_write(dir, "merges.txt", merges, sizeof merges - 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const unsigned flags[] = {TOK_DECODE_LOSSY, TOK_DECODE_LOSSY | TOK_DECODE_SKIP_SPECIAL,
                                     TOK_DECODE_SKIP_SPECIAL};
    fuzz_tok_run(fuzz_tok_load("tokenizers/gpt2", write_tiny_bpe), data, size, flags, 3, 1);
    return 0;
}
