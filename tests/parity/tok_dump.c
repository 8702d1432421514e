/* tok_dump.c — ragd's tokenizer as a filter for the parity test, written against the public
 * tokenizer.h only.
 *
 *   usage: tok_dump TOKENIZER_DIR [REQUESTS.jsonl]      (standard input when no file is given)
 *
 * Each input line is one JSON request; each output line is the JSON answer, in order:
 *   encode  {"a": text, "b": pair text (optional), "special": bool (default true),
 *            "max_length": n (optional, 0 = none), "direction": "left" | "right"}
 *     ->    {"ids", "type_ids", "special_mask", "offsets": [[seq, start, stop], ...] (bytes),
 *            "tokens", "decoded" (skip specials, configured cleanup, lossy UTF-8),
 *            "decoded_keep" (specials kept, no cleanup, lossy), and for byte-level BPE without
 *            truncation "roundtrip": whether raw decode(ids) gives back a (+ b) byte for byte}
 *   decode  {"ids": [...]}  ->  {"decoded", "decoded_keep"}
 * A failed call gives {"error": message, "code": TOK_E*}. Texts may contain U+0000.
 * Exit status: 0 when every line was answered (errors included), 1 when the tokenizer cannot
 * be loaded or the input cannot be read, 2 on bad usage. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

static json_t *error_answer(const tok_error *err)
{
    return json_pack("{s:s, s:i}", "error", err->msg, "code", err->code);
}

/* Decodes ids with flags into a JSON string (lossy decoding always yields valid UTF-8).
 * Returns NULL and fills err on failure. */
static json_t *decode_json(const tok_tokenizer *tok, const int32_t *ids, size_t n, unsigned flags,
                           tok_error *err)
{
    char *text = NULL;
    size_t len = 0;
    if (tok_decode(tok, ids, n, flags | TOK_DECODE_LOSSY, &text, &len, err) != 0)
        return NULL;
    json_t *s = json_stringn(text, len);
    free(text);
    if (!s) {
        err->code = TOK_EINPUT;
        snprintf(err->msg, sizeof err->msg, "lossy decode returned invalid UTF-8");
    }
    return s;
}

/* Adds "decoded" and "decoded_keep" for ids to obj; returns 0, or -1 with err filled. */
static int add_decodes(const tok_tokenizer *tok, const int32_t *ids, size_t n, json_t *obj,
                       tok_error *err)
{
    json_t *d = decode_json(tok, ids, n, TOK_DECODE_SKIP_SPECIAL, err);
    if (!d)
        return -1;
    json_object_set_new(obj, "decoded", d);
    d = decode_json(tok, ids, n, TOK_DECODE_KEEP_SPACES, err);
    if (!d)
        return -1;
    json_object_set_new(obj, "decoded_keep", d);
    return 0;
}

static json_t *answer_decode(const tok_tokenizer *tok, const json_t *jids)
{
    size_t n = json_array_size(jids);
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids)
        return json_pack("{s:s}", "error", "out of memory");
    for (size_t i = 0; i < n; i++)
        ids[i] = (int32_t)json_integer_value(json_array_get(jids, i));
    tok_error err = {0};
    json_t *out = json_object();
    if (add_decodes(tok, ids, n, out, &err) != 0) {
        json_decref(out);
        out = error_answer(&err);
    }
    free(ids);
    return out;
}

/* Raw decode (specials kept, no cleanup, not lossy) equals a followed by b, byte for byte. */
static int round_trips(const tok_tokenizer *tok, const tok_encoding *e, const char *a,
                       size_t a_len, const char *b, size_t b_len)
{
    char *text = NULL;
    size_t len = 0;
    tok_error err;
    if (tok_decode(tok, e->ids, e->len, TOK_DECODE_KEEP_SPACES, &text, &len, &err) != 0)
        return 0;
    int same = len == a_len + b_len && memcmp(text, a, a_len) == 0 &&
               (b_len == 0 || memcmp(text + a_len, b, b_len) == 0);
    free(text);
    return same;
}

static json_t *answer_encode(const tok_tokenizer *tok, const json_t *req, tok_encoding *e)
{
    const json_t *a = json_object_get(req, "a"), *b = json_object_get(req, "b");
    const json_t *dir = json_object_get(req, "direction");
    if (!json_is_string(a) || (b && !json_is_string(b)))
        return json_pack("{s:s}", "error", "request needs a string \"a\" (and \"b\" a string)");
    tok_options o = {
        .add_special_tokens = !json_is_false(json_object_get(req, "special")),
        .max_length = (size_t)json_integer_value(json_object_get(req, "max_length")),
        .direction = dir && strcmp(json_string_value(dir) ? json_string_value(dir) : "", "left") == 0
                         ? TOK_TRUNCATE_LEFT
                         : TOK_TRUNCATE_RIGHT,
    };
    const char *bs = b ? json_string_value(b) : NULL;
    size_t b_len = b ? json_string_length(b) : 0;
    tok_error err = {0};
    if (tok_encode(tok, json_string_value(a), json_string_length(a), bs, b_len, &o, e, &err) != 0)
        return error_answer(&err);

    json_t *ids = json_array(), *types = json_array(), *mask = json_array();
    json_t *offsets = json_array(), *tokens = json_array();
    for (size_t i = 0; i < e->len; i++) {
        json_array_append_new(ids, json_integer(e->ids[i]));
        json_array_append_new(types, json_integer(e->type_ids[i]));
        json_array_append_new(mask, json_integer(e->special[i]));
        json_array_append_new(offsets, json_pack("[i, I, I]", e->seq[i], (json_int_t)e->start[i],
                                                 (json_int_t)e->stop[i]));
        const char *t = tok_id_to_token(tok, e->ids[i]);
        json_array_append_new(tokens, t ? json_string(t) : json_null());
    }
    json_t *out = json_pack("{s:o, s:o, s:o, s:o, s:o}", "ids", ids, "type_ids", types,
                            "special_mask", mask, "offsets", offsets, "tokens", tokens);
    if (add_decodes(tok, e->ids, e->len, out, &err) != 0) {
        json_decref(out);
        return error_answer(&err);
    }
    if (tok_get_kind(tok) == TOK_KIND_BPE && o.max_length == 0)
        json_object_set_new(out, "roundtrip",
                            json_boolean(round_trips(tok, e, json_string_value(a),
                                                     json_string_length(a), bs, b_len)));
    return out;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: tok_dump TOKENIZER_DIR [REQUESTS.jsonl]\n");
        return 2;
    }
    FILE *in = argc == 3 ? fopen(argv[2], "rb") : stdin;
    if (!in) {
        fprintf(stderr, "tok_dump: cannot open %s\n", argv[2]);
        return 1;
    }
    tok_tokenizer *tok;
    tok_error err;
    if (tok_load_dir(argv[1], &tok, &err) != 0) {
        fprintf(stderr, "tok_dump: %s\n", err.msg);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    tok_encoding e = {0};
    size_t lineno = 0;
    while ((n = getline(&line, &cap, in)) > 0) {
        lineno++;
        if (n == 1 && line[0] == '\n')
            continue;
        json_error_t jerr;
        json_t *req = json_loadb(line, (size_t)n, JSON_ALLOW_NUL, &jerr), *out;
        if (!json_is_object(req))
            out = json_pack("{s:s, s:I}", "error", "request is not a JSON object", "line", (json_int_t)lineno);
        else if (json_is_array(json_object_get(req, "ids")))
            out = answer_decode(tok, json_object_get(req, "ids"));
        else
            out = answer_encode(tok, req, &e);
        if (!out || json_dumpf(out, stdout, JSON_COMPACT | JSON_ENSURE_ASCII) != 0) {
            fprintf(stderr, "tok_dump: cannot write the answer to line %zu\n", lineno);
            return 1;
        }
        fputc('\n', stdout);
        json_decref(out);
        json_decref(req);
    }
    tok_encoding_free(&e);
    free(line);
    tok_destroy(tok);
    if (in != stdin)
        fclose(in);
    return ferror(stdout) ? 1 : 0;
}
