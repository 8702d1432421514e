/* tok_dump.c — ragd's tokenizer as a filter, for the parity test: loads DIR, reads JSON
 * lines {"a": text, "b": pair-text?, "special": bool} and prints JSON lines
 * {"ids": [...], "type_ids": [...], "decoded": text} (or {"error": message}). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: tok_dump TOKENIZER_DIR < requests.jsonl\n");
        return 2;
    }
    tok_tokenizer *tok;
    tok_error err;
    if (tok_load_dir(argv[1], &tok, &err) != 0) {
        fprintf(stderr, "tok_dump: %s\n", err.msg);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    tok_encoding e = {0};
    while (getline(&line, &cap, stdin) > 0) {
        json_t *req = json_loads(line, 0, NULL), *out;
        json_t *a = json_object_get(req, "a"), *b = json_object_get(req, "b");
        tok_options o = {.add_special_tokens = !json_is_false(json_object_get(req, "special"))};
        if (!json_is_string(a)) {
            out = json_pack("{s:s}", "error", "bad request line");
        } else if (tok_encode(tok, json_string_value(a), json_string_length(a), b ? json_string_value(b) : NULL,
                              b ? json_string_length(b) : 0, &o, &e, &err) != 0) {
            out = json_pack("{s:s}", "error", err.msg);
        } else {
            json_t *ids = json_array(), *types = json_array();
            for (size_t i = 0; i < e.len; i++) {
                json_array_append_new(ids, json_integer(e.ids[i]));
                json_array_append_new(types, json_integer(e.type_ids[i]));
            }
            char *text;
            size_t len;
            tok_decode(tok, e.ids, e.len, TOK_DECODE_SKIP_SPECIAL, &text, &len, &err);
            json_t *decoded = json_stringn(text, len); /* NULL when not UTF-8 (a partial character) */
            out = json_pack("{s:o, s:o, s:o}", "ids", ids, "type_ids", types, "decoded",
                            decoded ? decoded : json_null());
            free(text);
        }
        json_dumpf(out, stdout, JSON_COMPACT);
        fputc('\n', stdout);
        json_decref(out);
        json_decref(req);
    }
    tok_encoding_free(&e);
    free(line);
    tok_destroy(tok);
    return 0;
}
