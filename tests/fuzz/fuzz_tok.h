/* fuzz_tok.h — the body shared by the tokenizer fuzz targets. The real tokenizer is loaded
 * once from RAGD_SHARED/testdata (falling back to ../shared); without it the target only
 * exercises loading errors. */
#ifndef RAGD_FUZZ_TOK_H
#define RAGD_FUZZ_TOK_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

static int fuzz_tokenizer(const char *rel, const uint8_t *data, size_t size, int round_trip)
{
    static tok_tokenizer *tok;
    static int tried;
    if (!tried) {
        tried = 1;
        const char *shared = getenv("RAGD_SHARED");
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/testdata/%s", shared ? shared : "../shared", rel);
        tok_error err;
        if (tok_load_dir(dir, &tok, &err) != 0)
            fprintf(stderr, "fuzz: %s\n", err.msg);
    }
    if (!tok || size == 0)
        return 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1, split = data[0] % (len + 1);
    tok_options opts = {.add_special_tokens = 1};
    tok_encoding e = {0};
    tok_error err;
    int rc = tok_encode(tok, text, len, NULL, 0, &opts, &e, &err);
    if (rc == 0) {
        for (size_t i = 0; i < e.len; i++)
            if (e.stop[i] > len || e.start[i] > e.stop[i] || (size_t)e.ids[i] >= tok_vocab_size(tok))
                abort();
        if (round_trip) { /* byte-level BPE loses nothing (when spaces are kept as they are) */
            char *back;
            size_t back_len;
            if (tok_decode(tok, e.ids, e.len, TOK_DECODE_KEEP_SPACES, &back, &back_len, &err) != 0 || back_len != len ||
                memcmp(back, text, len) != 0)
                abort();
            free(back);
        }
        /* Pairs with truncation from both ends. */
        opts.max_length = 3 + data[0] % 16;
        opts.direction = data[0] & 1 ? TOK_TRUNCATE_LEFT : TOK_TRUNCATE_RIGHT;
        if (tok_encode(tok, text, split, text + split, len - split, &opts, &e, &err) == 0 &&
            e.len > opts.max_length)
            abort();
    } else if (rc != TOK_EINPUT) {
        abort();
    }
    tok_encoding_free(&e);
    return 0;
}

#endif
