/* fuzz_bpe.c — GPT-2 byte-level BPE on arbitrary bytes, through tokenizer.h only.
 *
 * Input layout: byte 0 chooses the options (special tokens, truncation length and side, where
 * the pair is split); the rest is the text. Checked, abort() on failure (a fuzz finding):
 *   - tok_encode succeeds exactly when the text is valid UTF-8, and refuses it with TOK_EINPUT
 *     otherwise; ids are in the vocabulary and offsets inside the text;
 *   - decode(encode(x)) == x byte for byte (byte-level BPE loses nothing);
 *   - lossy and skip-special decoding succeed and give valid UTF-8;
 *   - a pair split at a byte, truncated to a length taken from the input, stays within that
 *     length, with type ids 0 then 1 and offsets inside their own text.
 * The tokenizer is loaded once: the real one from $RAGD_SHARED/testdata/tokenizers/gpt2
 * (default ../shared), or else a tiny one this file writes to a temporary directory, so the
 * target fuzzes anywhere. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tokenizer.h"

/* Strict UTF-8 (no overlongs, no surrogates, at most U+10FFFF), as the tokenizer must accept. */
static int utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t len;
        uint32_t min, cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2, min = 0x80, cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, min = 0x800, cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, min = 0x10000, cp = c & 0x07;
        } else {
            return 0;
        }
        if (i + len > n)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += len;
    }
    return 1;
}

static int write_file(const char *dir, const char *name, const char *text, size_t len)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return -1;
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t put = fwrite(text, 1, len, f);
    return fclose(f) == 0 && put == len ? 0 : -1;
}

/* A tiny GPT-2 style tokenizer: the 256 byte symbols, three merges and <|endoftext|>. */
static int write_tiny_bpe(char *dir_template)
{
    if (!mkdtemp(dir_template))
        return -1;
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
    return write_file(dir_template, "vocab.json", vocab, n) |
           write_file(dir_template, "merges.txt", merges, sizeof merges - 1);
}

static const tok_tokenizer *fuzz_tokenizer(void)
{
    static tok_tokenizer *tok;
    static int tried;
    if (tried)
        return tok;
    tried = 1;
    const char *shared = getenv("RAGD_SHARED");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/testdata/tokenizers/gpt2", shared ? shared : "../shared");
    tok_error err;
    if (tok_load_dir(dir, &tok, &err) == 0)
        return tok;
    char tiny[] = "/tmp/fuzz_bpe.XXXXXX";
    if (write_tiny_bpe(tiny) != 0 || tok_load_dir(tiny, &tok, &err) != 0) {
        fprintf(stderr, "fuzz_bpe: no tokenizer: %s\n", err.msg);
        abort(); /* the harness itself is broken: say so loudly */
    }
    return tok;
}

static void check_encoding(const tok_tokenizer *tok, const tok_encoding *e, size_t a_len, size_t b_len)
{
    int last_type = 0;
    for (size_t i = 0; i < e->len; i++) {
        if (e->ids[i] < 0 || (size_t)e->ids[i] >= tok_vocab_size(tok) || e->start[i] > e->stop[i])
            abort();
        if (e->seq[i] < -1 || e->seq[i] > 1 || e->stop[i] > (e->seq[i] == 1 ? b_len : a_len))
            abort();
        if (e->type_ids[i] < last_type || e->type_ids[i] > 1) /* 0s, then 1s */
            abort();
        last_type = e->type_ids[i];
    }
}

static void check_decodes(const tok_tokenizer *tok, const tok_encoding *e)
{
    static const unsigned flags[] = {TOK_DECODE_LOSSY, TOK_DECODE_LOSSY | TOK_DECODE_SKIP_SPECIAL,
                                     TOK_DECODE_SKIP_SPECIAL};
    for (size_t k = 0; k < sizeof flags / sizeof flags[0]; k++) {
        char *text = NULL;
        size_t len = 0;
        tok_error err;
        if (tok_decode(tok, e->ids, e->len, flags[k], &text, &len, &err) != 0 || !text || text[len] != '\0')
            abort();
        if ((flags[k] & TOK_DECODE_LOSSY) && !utf8_valid((const uint8_t *)text, len))
            abort();
        free(text);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const tok_tokenizer *tok = fuzz_tokenizer();
    if (size == 0)
        return 0;
    const uint8_t ctl = data[0];
    const char *text = (const char *)data + 1;
    const size_t len = size - 1;
    const int valid = utf8_valid(data + 1, len);
    tok_encoding e = {0};
    tok_error err;
    tok_options opts = {.add_special_tokens = 1};

    int rc = tok_encode(tok, text, len, NULL, 0, &opts, &e, &err);
    if (valid ? rc != 0 : rc != TOK_EINPUT)
        abort();
    if (rc == 0) {
        check_encoding(tok, &e, len, 0);
        check_decodes(tok, &e);
        char *back = NULL;
        size_t back_len = 0;
        if (tok_decode(tok, e.ids, e.len, TOK_DECODE_KEEP_SPACES, &back, &back_len, &err) != 0 ||
            back_len != len || memcmp(back, text, len) != 0)
            abort(); /* decode(encode(x)) != x */
        free(back);
    }

    /* A pair split at a byte chosen by the input, truncated to a length chosen by it too. */
    size_t split = len ? (size_t)ctl * 131u % (len + 1) : 0;
    opts.add_special_tokens = ctl & 1;
    opts.max_length = (ctl >> 1) & 0x1f; /* 0 = no truncation */
    opts.direction = ctl & 0x40 ? TOK_TRUNCATE_LEFT : TOK_TRUNCATE_RIGHT;
    int halves_valid = utf8_valid(data + 1, split) && utf8_valid(data + 1 + split, len - split);
    rc = tok_encode(tok, text, split, text + split, len - split, &opts, &e, &err);
    if (!halves_valid ? rc != TOK_EINPUT : rc != 0 && !(rc == TOK_ELIMIT && opts.max_length))
        abort();
    if (rc == 0) {
        if (opts.max_length && e.len > opts.max_length)
            abort();
        check_encoding(tok, &e, split, len - split);
        check_decodes(tok, &e);
    }
    tok_encoding_free(&e);
    return 0;
}
