/* tok_load.c — reading a tokenizer directory: tokenizer.json (preferred), else vocab.json +
 * merges.txt (GPT-2 BPE), else vocab.txt (BERT WordPiece), each with tokenizer_config.json.
 * Every file is untrusted: wrong types, ids out of range or given twice, unknown components
 * and oversized files are TOK_EFORMAT with a message naming the file; nothing is guessed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json_watch.h"
#include "tok_impl.h"

#define MAX_ADDED 4096
#define MAX_MERGES (1 << 22)
#define MAX_TEMPLATE 16

/* ---------------------------------------------------------------- vocabulary and added tokens */

int tok_vocab_alloc(tok_tokenizer *t, size_t size, tok_error *err)
{
    t->vocab = calloc(size, sizeof *t->vocab);
    t->vocab_len = calloc(size, sizeof *t->vocab_len);
    t->special = calloc(size, 1);
    size_t cap = 16;
    while (cap < size * 2)
        cap <<= 1;
    t->map.slots = malloc(cap * sizeof *t->map.slots);
    if (!t->vocab || !t->vocab_len || !t->special || !t->map.slots)
        return tok_fail(err, TOK_ENOMEM, "out of memory for a vocabulary of %zu", size);
    memset(t->map.slots, 0xff, cap * sizeof *t->map.slots);
    t->map.mask = cap - 1;
    t->vocab_size = size;
    return 0;
}

int tok_vocab_set(tok_tokenizer *t, int32_t id, const char *s, size_t len, const char *file, tok_error *err)
{
    if (id < 0 || (size_t)id >= t->vocab_size)
        return tok_fail(err, TOK_EFORMAT, "%s: id %d is out of range", file, id);
    if (len == 0 || len > TOK_MAX_TOKEN_BYTES)
        return tok_fail(err, TOK_EFORMAT, "%s: token %d has length %zu (1..%d allowed)", file, id, len,
                        TOK_MAX_TOKEN_BYTES);
    if (t->vocab[id])
        return tok_fail(err, TOK_EFORMAT, "%s: id %d is given to two tokens", file, id);
    if (!(t->vocab[id] = malloc(len + 1)))
        return tok_fail(err, TOK_ENOMEM, "out of memory");
    memcpy(t->vocab[id], s, len);
    t->vocab[id][len] = '\0';
    t->vocab_len[id] = len;
    if (len > t->max_token_len)
        t->max_token_len = len;
    return tok_map_put(t, id);
}

int tok_add_added(tok_tokenizer *t, const char *content, size_t len, int32_t id, int special, const char *file,
                  tok_error *err)
{
    if (t->n_added == MAX_ADDED || len == 0 || len > TOK_MAX_TOKEN_BYTES || id < 0 || (size_t)id >= t->vocab_size)
        return tok_fail(err, TOK_EFORMAT, "%s: bad added token '%.40s' (id %d)", file, content, id);
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].id == id || (t->added[i].len == len && !memcmp(t->added[i].content, content, len)))
            return 0; /* the same token listed twice (tokenizer.json and the config) */
    tok_added *p = realloc(t->added, (t->n_added + 1) * sizeof *p);
    if (!p)
        return tok_fail(err, TOK_ENOMEM, "out of memory");
    t->added = p;
    char *c = malloc(len + 1);
    if (!c)
        return tok_fail(err, TOK_ENOMEM, "out of memory");
    memcpy(c, content, len);
    c[len] = '\0';
    t->added[t->n_added++] = (tok_added){c, len, id, special};
    if (special)
        t->special[id] = 1;
    return 0;
}

static int added_cmp(const void *a, const void *b)
{
    const tok_added *x = a, *y = b;
    unsigned cx = (unsigned char)x->content[0], cy = (unsigned char)y->content[0];
    return cx != cy ? (cx > cy) - (cx < cy) : (x->len < y->len) - (x->len > y->len);
}

/* Sorted by first byte (longest first within one), so the scan tries only the tokens that
 * can start at a position, and the first match found is the longest. */
int tok_added_finish(tok_tokenizer *t, tok_error *err)
{
    (void)err;
    if (t->n_added)
        qsort(t->added, t->n_added, sizeof *t->added, added_cmp);
    memset(t->added_lo, 0, sizeof t->added_lo);
    memset(t->added_hi, 0, sizeof t->added_hi);
    for (size_t i = t->n_added; i-- > 0;) {
        unsigned c = (unsigned char)t->added[i].content[0];
        t->added_lo[c] = (uint32_t)i;
        if (!t->added_hi[c])
            t->added_hi[c] = (uint32_t)i + 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- files */

/* Reads a whole file (at most TOK_MAX_FILE bytes), NUL-terminated. */
static int read_text(const char *path, char **out, size_t *len, tok_error *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return tok_fail(err, TOK_EIO, "%s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t cap = 0, n = 0;
    int rc = 0;
    for (;;) {
        if (n + 65536 > cap) {
            if (cap > TOK_MAX_FILE) {
                rc = tok_fail(err, TOK_EFORMAT, "%s: larger than %u bytes", path, TOK_MAX_FILE);
                break;
            }
            cap = (cap + 65536) * 2;
            char *p = realloc(buf, cap);
            if (!p) {
                rc = tok_fail(err, TOK_ENOMEM, "%s: out of memory", path);
                break;
            }
            buf = p;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) {
            if (ferror(f))
                rc = tok_fail(err, TOK_EIO, "%s: read error", path);
            break;
        }
    }
    fclose(f);
    if (rc) {
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

static int load_json(const char *path, json_t **out, tok_error *err)
{
    char *text;
    size_t len;
    int rc = read_text(path, &text, &len, err);
    if (rc)
        return rc;
    json_error_t je;
    *out = jsonw_loadb(text, len, JSON_REJECT_DUPLICATES, &je, NULL);
    free(text);
    if (!*out)
        return tok_fail(err, TOK_EFORMAT, "%s: invalid JSON at line %d: %s", path, je.line, je.text);
    return 0;
}

static int opt_bool(json_t *o, const char *key, int def)
{
    json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

/* A token named in tokenizer_config.json: a string, or an AddedToken object with "content". */
static const char *cfg_token(json_t *cfg, const char *key, const char *def)
{
    json_t *v = json_object_get(cfg, key);
    if (json_is_object(v))
        v = json_object_get(v, "content");
    return json_is_string(v) ? json_string_value(v) : def;
}

static int32_t token_id(const tok_tokenizer *t, const char *s)
{
    return s ? tok_map_get(t, s, strlen(s)) : -1;
}

/* Messages from tok_bpe.c do not know the file: put its name in front. */
static int in_file(int rc, const char *path, tok_error *err)
{
    size_t n = strlen(path);
    if (rc && err && strncmp(err->msg, path, n) != 0) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%.*s: %.*s", (int)(sizeof msg / 2), path, (int)(sizeof msg / 2 - 3), err->msg);
        memcpy(err->msg, msg, sizeof msg);
    }
    return rc;
}

/* ---------------------------------------------------------------- templates */

/* Template pieces from a TemplateProcessing list, resolving SpecialToken ids. */
static int parse_template(tok_tokenizer *t, json_t *list, json_t *specials, tok_piece **out, size_t *n,
                          const char *file, tok_error *err)
{
    if (!json_is_array(list) || json_array_size(list) > MAX_TEMPLATE)
        return tok_fail(err, TOK_EFORMAT, "%s: post_processor template is not a list of at most %d", file,
                        MAX_TEMPLATE);
    *out = calloc(MAX_TEMPLATE * 4, sizeof **out);
    if (!*out)
        return tok_fail(err, TOK_ENOMEM, "out of memory");
    size_t k = 0, i;
    json_t *item;
    json_array_foreach(list, i, item) {
        json_t *sp = json_object_get(item, "SpecialToken"), *sq = json_object_get(item, "Sequence");
        json_t *body = sp ? sp : sq, *type_v = json_object_get(body, "type_id");
        const char *id = json_string_value(json_object_get(body, "id"));
        json_int_t type = json_integer_value(type_v);
        if (!id || !json_is_integer(type_v) || type < 0 || type > 16)
            return tok_fail(err, TOK_EFORMAT, "%s: template piece %zu is malformed", file, i);
        if (sq) {
            if (strcmp(id, "A") != 0 && strcmp(id, "B") != 0)
                return tok_fail(err, TOK_EFORMAT, "%s: template sequence '%.20s' is neither A nor B", file, id);
            (*out)[k++] = (tok_piece){id[0] == 'B', -1, (int)type};
            continue;
        }
        json_t *ids = json_object_get(json_object_get(specials, id), "ids");
        size_t j;
        json_t *v;
        if (!json_is_array(ids) || json_array_size(ids) == 0 || json_array_size(ids) > 4)
            return tok_fail(err, TOK_EFORMAT, "%s: special token '%.40s' of the template has no ids", file, id);
        json_array_foreach(ids, j, v) {
            json_int_t x = json_integer_value(v);
            if (!json_is_integer(v) || x < 0 || (size_t)x >= t->vocab_size || !t->vocab[x])
                return tok_fail(err, TOK_EFORMAT, "%s: special token '%.40s' has an id not in the vocabulary", file,
                                id);
            (*out)[k++] = (tok_piece){-1, (int32_t)x, (int)type};
        }
    }
    *n = k;
    return 0;
}

/* The [CLS] A [SEP] (B [SEP]) template of BERT (vocab.txt directories, BertProcessing). */
static int bert_template(tok_tokenizer *t, int32_t cls, int32_t sep, const char *file, tok_error *err)
{
    if (cls < 0 || sep < 0 || (size_t)cls >= t->vocab_size || (size_t)sep >= t->vocab_size)
        return tok_fail(err, TOK_EFORMAT, "%s: the [CLS] or [SEP] token is not in the vocabulary", file);
    t->single = malloc(3 * sizeof *t->single);
    t->pair = malloc(5 * sizeof *t->pair);
    if (!t->single || !t->pair)
        return tok_fail(err, TOK_ENOMEM, "out of memory");
    tok_piece s[3] = {{-1, cls, 0}, {0, -1, 0}, {-1, sep, 0}};
    tok_piece p[5] = {{-1, cls, 0}, {0, -1, 0}, {-1, sep, 0}, {1, -1, 1}, {-1, sep, 1}};
    memcpy(t->single, s, sizeof s);
    memcpy(t->pair, p, sizeof p);
    t->n_single = 3;
    t->n_pair = 5;
    return 0;
}

static int parse_post(tok_tokenizer *t, json_t *post, const char *path, tok_error *err)
{
    const char *type = json_string_value(json_object_get(post, "type"));
    if (json_is_null(post) || !post)
        return 0;
    if (!type)
        return tok_fail(err, TOK_EFORMAT, "%s: post_processor has no type", path);
    if (!strcmp(type, "TemplateProcessing")) {
        json_t *sp = json_object_get(post, "special_tokens");
        int rc = parse_template(t, json_object_get(post, "single"), sp, &t->single, &t->n_single, path, err);
        return rc ? rc : parse_template(t, json_object_get(post, "pair"), sp, &t->pair, &t->n_pair, path, err);
    }
    if (!strcmp(type, "BertProcessing")) { /* "cls": ["[CLS]", 101], "sep": ["[SEP]", 102] */
        json_t *cls = json_array_get(json_object_get(post, "cls"), 1), *sep = json_array_get(json_object_get(post, "sep"), 1);
        if (!json_is_integer(cls) || !json_is_integer(sep))
            return tok_fail(err, TOK_EFORMAT, "%s: BertProcessing needs cls and sep ids", path);
        json_int_t c = json_integer_value(cls), s = json_integer_value(sep);
        return bert_template(t, c >= 0 && c < TOK_MAX_VOCAB ? (int32_t)c : -1,
                             s >= 0 && s < TOK_MAX_VOCAB ? (int32_t)s : -1, path, err);
    }
    if (!strcmp(type, "ByteLevel")) {
        t->trim_offsets = opt_bool(post, "trim_offsets", 1);
        t->post_prefix_space = opt_bool(post, "add_prefix_space", 1);
        return 0;
    }
    return tok_fail(err, TOK_EFORMAT, "%s: post_processor '%.40s' is not supported", path, type);
}

/* ---------------------------------------------------------------- tokenizer.json */

/* Ids of model.vocab and added_tokens: checks them and returns the largest. */
static int scan_ids(json_t *vocab, json_t *added, const char *path, json_int_t *max_id, tok_error *err)
{
    const char *key;
    json_t *v;
    size_t i;
    *max_id = -1;
    json_object_foreach(vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= TOK_MAX_VOCAB)
            return tok_fail(err, TOK_EFORMAT, "%s: the id of '%.40s' is not an integer in range [0, %d)", path, key,
                            TOK_MAX_VOCAB);
        if (json_integer_value(v) > *max_id)
            *max_id = json_integer_value(v);
    }
    if (added && !json_is_array(added))
        return tok_fail(err, TOK_EFORMAT, "%s: added_tokens is not a list", path);
    json_array_foreach(added, i, v) {
        json_t *idv = json_object_get(v, "id");
        json_int_t id = json_integer_value(idv);
        if (!json_is_integer(idv) || id < 0 || id >= TOK_MAX_VOCAB || !json_is_string(json_object_get(v, "content")))
            return tok_fail(err, TOK_EFORMAT, "%s: added token %zu has no valid id and content", path, i);
        if (id > *max_id)
            *max_id = id;
    }
    if (*max_id < 0)
        return tok_fail(err, TOK_EFORMAT, "%s: the vocabulary is empty", path);
    return 0;
}

static int load_merges_json(tok_tokenizer *t, json_t *merges, const char *path, tok_error *err)
{
    size_t n = json_array_size(merges), i;
    json_t *v;
    if ((merges && !json_is_null(merges) && !json_is_array(merges)) || n > MAX_MERGES)
        return tok_fail(err, TOK_EFORMAT, "%s: merges must be a list of at most %d", path, MAX_MERGES);
    int rc = bpe_init(t, n, err);
    json_array_foreach(merges, i, v) {
        if (rc)
            break;
        const char *a, *b;
        size_t al, bl;
        if (json_is_string(v)) { /* legacy "a b" */
            a = json_string_value(v);
            const char *sp = strchr(a, ' ');
            if (!sp)
                return tok_fail(err, TOK_EFORMAT, "%s: merge %zu has no space", path, i + 1);
            al = (size_t)(sp - a), b = sp + 1, bl = strlen(b);
        } else if (json_is_array(v) && json_array_size(v) == 2 && json_is_string(json_array_get(v, 0)) &&
                   json_is_string(json_array_get(v, 1))) {
            a = json_string_value(json_array_get(v, 0)), al = strlen(a);
            b = json_string_value(json_array_get(v, 1)), bl = strlen(b);
        } else {
            return tok_fail(err, TOK_EFORMAT, "%s: merge %zu is neither \"a b\" nor [a, b]", path, i + 1);
        }
        rc = bpe_add_merge(t, a, al, b, bl, (int32_t)i, err);
    }
    if (!rc)
        bpe_finish(t);
    return in_file(rc, path, err);
}

static int setup_bpe(tok_tokenizer *t, json_t *model, json_t *norm, json_t *pre, json_t *dec, const char *path,
                     tok_error *err)
{
    const char *pre_type = json_string_value(json_object_get(pre, "type"));
    const char *dec_type = json_string_value(json_object_get(dec, "type"));
    json_t *drop = json_object_get(model, "dropout");
    const char *csp = json_string_value(json_object_get(model, "continuing_subword_prefix"));
    const char *eow = json_string_value(json_object_get(model, "end_of_word_suffix"));
    if (pre && !json_is_null(pre) && (!pre_type || strcmp(pre_type, "ByteLevel") != 0))
        return tok_fail(err, TOK_EFORMAT, "%s: pre_tokenizer '%.40s' is not supported with BPE (ByteLevel or null)",
                        path, pre_type ? pre_type : "?");
    if (norm && !json_is_null(norm))
        return tok_fail(err, TOK_EFORMAT, "%s: a normalizer is not supported with BPE", path);
    if ((json_is_number(drop) && json_number_value(drop) > 0) || opt_bool(model, "byte_fallback", 0) ||
        (csp && *csp) || (eow && *eow))
        return tok_fail(err, TOK_EFORMAT,
                        "%s: BPE dropout, byte_fallback, continuing_subword_prefix and end_of_word_suffix "
                        "are not supported", path);
    if (dec && !json_is_null(dec) && (!dec_type || strcmp(dec_type, "ByteLevel") != 0))
        return tok_fail(err, TOK_EFORMAT, "%s: decoder '%.40s' is not supported with BPE (ByteLevel or null)", path,
                        dec_type ? dec_type : "?");
    t->byte_level = pre_type != NULL;
    t->use_regex = opt_bool(pre, "use_regex", 1);
    t->add_prefix_space = opt_bool(pre, "add_prefix_space", 1); /* the ByteLevel default */
    t->decoder = dec_type ? TOK_DEC_BYTELEVEL : TOK_DEC_NONE;
    return load_merges_json(t, json_object_get(model, "merges"), path, err);
}

static int setup_wordpiece(tok_tokenizer *t, json_t *model, json_t *norm, json_t *pre, json_t *dec, const char *path,
                           tok_error *err)
{
    const char *norm_type = json_string_value(json_object_get(norm, "type"));
    const char *pre_type = json_string_value(json_object_get(pre, "type"));
    const char *dec_type = json_string_value(json_object_get(dec, "type"));
    if (!norm_type || strcmp(norm_type, "BertNormalizer") != 0 || !pre_type || strcmp(pre_type, "BertPreTokenizer") != 0)
        return tok_fail(err, TOK_EFORMAT, "%s: WordPiece needs BertNormalizer and BertPreTokenizer", path);
    t->clean_text = opt_bool(norm, "clean_text", 1);
    t->handle_cjk = opt_bool(norm, "handle_chinese_chars", 1);
    t->lowercase = opt_bool(norm, "lowercase", 1);
    json_t *sa = json_object_get(norm, "strip_accents");
    t->strip_accents = json_is_boolean(sa) ? json_is_true(sa) : t->lowercase;
    json_t *pv = json_object_get(model, "continuing_subword_prefix"), *mv = json_object_get(model, "max_input_chars_per_word");
    const char *prefix = json_is_string(pv) ? json_string_value(pv) : "##";
    if (strlen(prefix) >= sizeof t->prefix)
        return tok_fail(err, TOK_EFORMAT, "%s: continuing_subword_prefix is too long", path);
    memcpy(t->prefix, prefix, strlen(prefix) + 1);
    t->prefix_len = strlen(prefix);
    json_int_t mx = json_integer_value(mv);
    if (mv && !json_is_null(mv) && (!json_is_integer(mv) || mx <= 0))
        return tok_fail(err, TOK_EFORMAT, "%s: max_input_chars_per_word must be a positive integer", path);
    t->max_chars = mv && json_is_integer(mv) ? (size_t)mx : 100;
    if (dec && !json_is_null(dec)) {
        if (!dec_type || strcmp(dec_type, "WordPiece") != 0)
            return tok_fail(err, TOK_EFORMAT, "%s: decoder '%.40s' is not supported with WordPiece", path,
                            dec_type ? dec_type : "?");
        const char *dp = json_string_value(json_object_get(dec, "prefix"));
        if (dp && strcmp(dp, t->prefix) != 0)
            return tok_fail(err, TOK_EFORMAT, "%s: the decoder prefix differs from the model's", path);
        t->decoder = TOK_DEC_WORDPIECE;
        t->dec_cleanup = opt_bool(dec, "cleanup", 1);
    }
    if (t->unk_id < 0)
        return tok_fail(err, TOK_EFORMAT, "%s: the WordPiece unk_token is not in the vocabulary", path);
    return 0;
}

static int load_tokenizer_json(tok_tokenizer *t, const char *path, tok_error *err)
{
    json_t *j;
    int rc = load_json(path, &j, err);
    if (rc)
        return rc;
    json_t *model = json_object_get(j, "model"), *vocab = json_object_get(model, "vocab");
    json_t *added = json_object_get(j, "added_tokens");
    const char *type = json_string_value(json_object_get(model, "type"));
    /* Older files leave the type out (the Rust reader tries each model in turn). */
    if (!type && json_is_object(model))
        type = json_object_get(model, "merges") ? "BPE"
               : json_object_get(model, "max_input_chars_per_word") ? "WordPiece" : NULL;
    json_int_t max_id;
    if (!json_is_object(j) || !type || !json_is_object(vocab)) {
        rc = tok_fail(err, TOK_EFORMAT, "%s: needs a model with a type and a vocab object", path);
    } else if (strcmp(type, "BPE") != 0 && strcmp(type, "WordPiece") != 0) {
        rc = tok_fail(err, TOK_EFORMAT, "%s: model type '%.40s' is not supported (BPE, WordPiece)", path, type);
    } else if (!(rc = scan_ids(vocab, added, path, &max_id, err))) {
        t->kind = !strcmp(type, "BPE") ? TOK_KIND_BPE : TOK_KIND_WORDPIECE;
        rc = tok_vocab_alloc(t, (size_t)max_id + 1, err);
    }
    const char *key;
    json_t *v;
    size_t i;
    json_object_foreach(vocab, key, v) {
        if (rc)
            break;
        rc = tok_vocab_set(t, (int32_t)json_integer_value(v), key, strlen(key), path, err);
    }
    json_array_foreach(added, i, v) {
        if (rc)
            break;
        const char *content = json_string_value(json_object_get(v, "content"));
        int32_t id = (int32_t)json_integer_value(json_object_get(v, "id"));
        if (!t->vocab[id])
            rc = tok_vocab_set(t, id, content, strlen(content), path, err);
        if (!rc)
            rc = tok_add_added(t, content, strlen(content), id, opt_bool(v, "special", 0), path, err);
    }
    if (!rc) {
        json_t *unk = json_object_get(model, "unk_token");
        if (unk && !json_is_null(unk) && !json_is_string(unk))
            rc = tok_fail(err, TOK_EFORMAT, "%s: unk_token is not a string", path);
        t->unk_id = token_id(t, json_string_value(unk));
    }
    json_t *pre = json_object_get(j, "pre_tokenizer"), *norm = json_object_get(j, "normalizer"),
           *dec = json_object_get(j, "decoder");
    if (!rc)
        rc = t->kind == TOK_KIND_BPE ? setup_bpe(t, model, norm, pre, dec, path, err)
                                     : setup_wordpiece(t, model, norm, pre, dec, path, err);
    if (!rc)
        rc = parse_post(t, json_object_get(j, "post_processor"), path, err);
    json_decref(j);
    return rc;
}

/* ---------------------------------------------------------------- vocab.json + merges.txt */

static int load_gpt2_files(tok_tokenizer *t, const char *vocab_path, const char *merges_path, tok_error *err)
{
    json_t *vocab;
    int rc = load_json(vocab_path, &vocab, err);
    if (rc)
        return rc;
    json_int_t max_id;
    t->kind = TOK_KIND_BPE;
    t->byte_level = t->use_regex = 1;
    t->decoder = TOK_DEC_BYTELEVEL;
    t->unk_id = -1;
    if (!json_is_object(vocab))
        rc = tok_fail(err, TOK_EFORMAT, "%s: not a JSON object", vocab_path);
    else if (!(rc = scan_ids(vocab, NULL, vocab_path, &max_id, err)))
        rc = tok_vocab_alloc(t, (size_t)max_id + 1, err);
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v) {
        if (rc)
            break;
        rc = tok_vocab_set(t, (int32_t)json_integer_value(v), key, strlen(key), vocab_path, err);
    }
    json_decref(vocab);
    char *text = NULL;
    size_t len = 0, lines = 0;
    if (!rc)
        rc = read_text(merges_path, &text, &len, err);
    for (size_t i = 0; !rc && i < len; i++)
        lines += text[i] == '\n';
    if (!rc && lines + 1 > MAX_MERGES)
        rc = tok_fail(err, TOK_EFORMAT, "%s: more than %d merges", merges_path, MAX_MERGES);
    if (!rc)
        rc = in_file(bpe_init(t, lines + 1, err), vocab_path, err);
    int32_t rank = 0;
    for (char *line = text, *next; !rc && line && *line; line = next) {
        next = strchr(line, '\n');
        size_t n = next ? (size_t)(next - line) : strlen(line);
        if (next)
            next++;
        if (n && line[n - 1] == '\r')
            n--;
        /* Rust skips "#version" lines; empty lines (the file's end) carry no merge. */
        if (n == 0 || (n >= 8 && !strncmp(line, "#version", 8)))
            continue;
        char *sp = memchr(line, ' ', n);
        if (!sp)
            rc = tok_fail(err, TOK_EFORMAT, "%s: merge line %d ('%.40s') is not 'a b'", merges_path, rank + 1, line);
        else
            rc = in_file(bpe_add_merge(t, line, (size_t)(sp - line), sp + 1, n - (size_t)(sp - line) - 1, rank++, err),
                         merges_path, err);
    }
    free(text);
    if (!rc)
        bpe_finish(t);
    int32_t eos = tok_map_get(t, "<|endoftext|>", 13);
    if (!rc && eos >= 0)
        rc = tok_add_added(t, "<|endoftext|>", 13, eos, 1, vocab_path, err);
    return rc;
}

/* ---------------------------------------------------------------- vocab.txt */

static int load_vocab_txt(tok_tokenizer *t, const char *path, json_t *cfg, tok_error *err)
{
    char *text;
    size_t len, lines = 0;
    int rc = read_text(path, &text, &len, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    t->kind = TOK_KIND_WORDPIECE;
    if (lines + 1 > TOK_MAX_VOCAB)
        rc = tok_fail(err, TOK_EFORMAT, "%s: more than %d lines", path, TOK_MAX_VOCAB);
    else
        rc = tok_vocab_alloc(t, lines + 1, err);
    int32_t id = 0;
    for (char *line = text, *next; !rc && line && *line; line = next, id++) {
        next = strchr(line, '\n');
        size_t n = next ? (size_t)(next - line) : strlen(line);
        if (next)
            next++;
        while (n && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
            n--;
        if (n == 0)
            continue; /* an empty line keeps its id unused */
        /* A repeated token maps to its later id, as the reference readers do (tok_map_put). */
        rc = tok_vocab_set(t, id, line, n, path, err);
    }
    free(text);
    if (rc)
        return rc;
    t->vocab_size = (size_t)id;
    t->clean_text = 1;
    t->lowercase = opt_bool(cfg, "do_lower_case", 1);
    json_t *sa = json_object_get(cfg, "strip_accents");
    t->strip_accents = json_is_boolean(sa) ? json_is_true(sa) : t->lowercase;
    t->handle_cjk = opt_bool(cfg, "tokenize_chinese_chars", 1);
    memcpy(t->prefix, "##", 3);
    t->prefix_len = 2;
    t->max_chars = 100;
    t->decoder = TOK_DEC_WORDPIECE;
    t->dec_cleanup = 1;
    const char *unk = cfg_token(cfg, "unk_token", "[UNK]"), *cls = cfg_token(cfg, "cls_token", "[CLS]"),
               *sep = cfg_token(cfg, "sep_token", "[SEP]");
    t->unk_id = token_id(t, unk);
    if (t->unk_id < 0)
        return tok_fail(err, TOK_EFORMAT, "%s: the unk token '%.40s' is not in the vocabulary", path, unk);
    const char *specials[] = {cfg_token(cfg, "pad_token", "[PAD]"), unk, cls, sep, cfg_token(cfg, "mask_token", "[MASK]")};
    for (size_t i = 0; i < 5; i++) {
        int32_t sid = token_id(t, specials[i]);
        if (sid >= 0 && (rc = tok_add_added(t, specials[i], strlen(specials[i]), sid, 1, path, err)) != 0)
            return rc;
    }
    return bert_template(t, token_id(t, cls), token_id(t, sep), path, err);
}

/* ---------------------------------------------------------------- the directory */

static int exists(const char *path) { return access(path, F_OK) == 0; }

int tok_load_dir(const char *dir, tok_tokenizer **out, tok_error *err)
{
    *out = NULL;
    tok_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return tok_fail(err, TOK_ENOMEM, "out of memory");
    t->eos_id = t->pad_id = t->unk_id = -1;
    char path[4096], path2[4096];
    json_t *cfg = NULL;
    int rc = 0;
    if ((size_t)snprintf(path, sizeof path, "%s/tokenizer_config.json", dir) >= sizeof path - 16) {
        rc = tok_fail(err, TOK_EIO, "tokenizer directory path is too long");
    } else if (exists(path) && (rc = load_json(path, &cfg, err)) == 0 && !json_is_object(cfg)) {
        rc = tok_fail(err, TOK_EFORMAT, "%s: not a JSON object", path);
    }
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (rc) {
    } else if (exists(path)) {
        rc = load_tokenizer_json(t, path, err);
    } else {
        snprintf(path, sizeof path, "%s/vocab.json", dir);
        snprintf(path2, sizeof path2, "%s/merges.txt", dir);
        if (exists(path) && exists(path2)) {
            rc = load_gpt2_files(t, path, path2, err);
        } else {
            snprintf(path, sizeof path, "%s/vocab.txt", dir);
            if (exists(path))
                rc = load_vocab_txt(t, path, cfg, err);
            else
                rc = tok_fail(err, TOK_EIO, "%s: no tokenizer.json, vocab.json + merges.txt, or vocab.txt found", dir);
        }
    }
    if (!rc)
        rc = tok_added_finish(t, err);
    if (!rc) {
        json_t *mx = json_object_get(cfg, "model_max_length");
        json_int_t m = json_integer_value(mx);
        /* transformers writes 1e30 for "no limit": anything not a sane integer is 0 (none). */
        t->model_max_length = json_is_integer(mx) && m > 0 && m < (1 << 24) ? (size_t)m : 0;
        /* transformers' default for clean_up_tokenization_spaces: BERT tokenizers pass true,
         * the base class (and so GPT-2) false; the file's value wins. */
        t->clean_up_spaces = opt_bool(cfg, "clean_up_tokenization_spaces", t->kind == TOK_KIND_WORDPIECE);
        t->eos_id = token_id(t, cfg_token(cfg, "eos_token", "<|endoftext|>"));
        t->pad_id = token_id(t, cfg_token(cfg, "pad_token", "[PAD]"));
    }
    json_decref(cfg);
    if (rc) {
        tok_destroy(t);
        return rc;
    }
    *out = t;
    return 0;
}
