/* tokenizer_bench.c — single-thread tokenizer throughput on real English text
 * (../shared/testdata/text/moby_dick.txt, paragraph by paragraph), median of 5 runs, for
 * GPT-2 BPE and BERT WordPiece. Prints one JSON object per tokenizer.
 *   usage: tokenizer_bench [SHARED_DIR] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

#include "tokenizer.h"



int main(int argc, char **argv)
{
    const char *shared = argc > 1 ? argv[1] : "../shared";
    char path[4096];
    snprintf(path, sizeof path, "%s/testdata/text/moby_dick.txt", shared);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "tokenizer_bench: %s not found\n", path);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    size_t len = (size_t)ftell(f);
    rewind(f);
    char *text = malloc(len + 1);
    if (fread(text, 1, len, f) != len)
        return 1;
    fclose(f);
    text[len] = '\0';
    static const char *const names[] = {"gpt2", "bert-base-uncased"};
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/testdata/tokenizers/%s", shared, names[k]);
        tok_tokenizer *tok;
        tok_error err;
        if (tok_load_dir(path, &tok, &err) != 0) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        tok_options o = {0, 0, TOK_TRUNCATE_RIGHT};
        tok_encoding e = {0};
        double runs[5];
        size_t tokens = 0;
        for (int r = 0; r < 5; r++) {
            double t0 = now();
            tokens = 0;
            for (char *p = text, *end; p < text + len; p = end) { /* paragraphs: split on blank lines */
                end = strstr(p, "\n\n");
                end = end ? end + 2 : text + len;
                tok_encode(tok, p, (size_t)(end - p), NULL, 0, &o, &e, &err);
                tokens += e.len;
            }
            runs[r] = now() - t0;
        }
        double secs = median(runs, 5);
        printf("{\"bench\":\"tokenizer\",\"tokenizer\":\"%s\",\"bytes\":%zu,\"tokens\":%zu,\"seconds\":%.4f,"
               "\"mb_per_s\":%.2f,\"tokens_per_s\":%.0f}\n",
               names[k], len, tokens, secs, (double)len / secs / 1e6, (double)tokens / secs);
        tok_encoding_free(&e);
        tok_destroy(tok);
    }
    free(text);
    return 0;
}
