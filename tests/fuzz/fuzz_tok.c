/* fuzz_tok.c — see fuzz_tok.h. */
#include "fuzz_tok.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

int fuzz_tok_write(const char *dir, const char *name, const char *text, size_t len)
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

const tok_tokenizer *fuzz_tok_load(const char *rel, int (*write_tiny)(const char *dir))
{
    static tok_tokenizer *tok;
    if (tok)
        return tok;
    const char *shared = getenv("RAGD_SHARED");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/testdata/%s", shared ? shared : "../shared", rel);
    tok_error err = {0};
    if (tok_load_dir(dir, &tok, &err) == 0)
        return tok;
    char tiny[] = "/tmp/fuzz_tok.XXXXXX";
    if (!mkdtemp(tiny) || write_tiny(tiny) != 0 || tok_load_dir(tiny, &tok, &err) != 0) {
        fprintf(stderr, "fuzz: no tokenizer: %s\n", err.msg);
        abort();
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

static void check_decodes(const tok_tokenizer *tok, const tok_encoding *e, const unsigned *flags, size_t n_flags)
{
    for (size_t k = 0; k < n_flags; k++) {
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

void fuzz_tok_run(const tok_tokenizer *tok, const uint8_t *data, size_t size, const unsigned *flags,
                  size_t n_flags, int round_trip)
{
    if (size == 0)
        return;
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
        check_decodes(tok, &e, flags, n_flags);
        char *back = NULL;
        size_t back_len = 0;
        if (round_trip && (tok_decode(tok, e.ids, e.len, TOK_DECODE_KEEP_SPACES, &back, &back_len, &err) != 0 ||
                           back_len != len || memcmp(back, text, len) != 0))
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
        check_decodes(tok, &e, flags, n_flags);
    }
    tok_encoding_free(&e);
}
