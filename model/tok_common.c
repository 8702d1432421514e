/* tok_common.c — loading tokenizer directories, and what BPE and WordPiece share: the
 * vocabulary map, added tokens, truncation, post-processing templates and decoding. */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tok_impl.h"
#include "tok_unicode.h"

#define MAX_ADDED 4096
#define MAX_MERGES (1 << 22)
#define MAX_TEMPLATE 16

int tok_fail(tok_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

/* ---------------------------------------------------------------- vocabulary map */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

int32_t tok_map_get(const tok_tokenizer *t, const char *s, size_t len)
{
    if (!t->map.slots)
        return -1;
    for (size_t i = hash_bytes(s, len) & t->map.mask;; i = (i + 1) & t->map.mask) {
        int32_t id = t->map.slots[i];
        if (id < 0)
            return -1;
        if (t->vocab_len[id] == len && memcmp(t->vocab[id], s, len) == 0)
            return id;
    }
}

/* Inserts vocab[id]; a string already present keeps the later id (vocab.txt rule). */
int tok_map_put(tok_tokenizer *t, int32_t id)
{
    const char *s = t->vocab[id];
    size_t len = t->vocab_len[id];
    for (size_t i = hash_bytes(s, len) & t->map.mask;; i = (i + 1) & t->map.mask) {
        int32_t cur = t->map.slots[i];
        if (cur < 0 || (t->vocab_len[cur] == len && memcmp(t->vocab[cur], s, len) == 0)) {
            t->map.slots[i] = id;
            return 0;
        }
    }
}

static int vocab_alloc(tok_tokenizer *t, size_t size, tok_error *err)
{
    t->vocab = calloc(size, sizeof *t->vocab);
    t->vocab_len = calloc(size, sizeof *t->vocab_len);
    size_t cap = 16;
    while (cap < size * 2)
        cap <<= 1;
    t->map.slots = malloc(cap * sizeof *t->map.slots);
    if (!t->vocab || !t->vocab_len || !t->map.slots)
        return tok_fail(err, TOK_ENOMEM, "out of memory for a vocabulary of %zu", size);
    memset(t->map.slots, 0xff, cap * sizeof *t->map.slots);
    t->map.mask = cap - 1;
    t->vocab_size = size;
    return 0;
}

/* Sets vocab[id] = s; a second string for the same id is a format error. */
static int vocab_set(tok_tokenizer *t, int32_t id, const char *s, size_t len, const char *file, tok_error *err)
{
    if (id < 0 || (size_t)id >= t->vocab_size)
        return tok_fail(err, TOK_EFORMAT, "%s: id %d is out of range", file, id);
    if (len == 0 || len > TOK_MAX_TOKEN_BYTES)
        return tok_fail(err, TOK_EFORMAT, "%s: token %d has length %zu", file, id, len);
    if (t->vocab[id])
        return tok_fail(err, TOK_EFORMAT, "%s: id %d is given to two tokens", file, id);
    if (!(t->vocab[id] = malloc(len + 1)))
        return tok_fail(err, TOK_ENOMEM, "out of memory");
    memcpy(t->vocab[id], s, len);
    t->vocab[id][len] = '\0';
    t->vocab_len[id] = len;
    return tok_map_put(t, id);
}

int tok_push(tok_encoding *e, int32_t id, int type_id, int special, int seq, size_t start, size_t stop)
{
    if (e->len == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 64;
        int32_t *ids = realloc(e->ids, cap * sizeof *ids);
        if (ids)
            e->ids = ids;
        int32_t *types = realloc(e->type_ids, cap * sizeof *types);
        if (types)
            e->type_ids = types;
        uint8_t *sp = realloc(e->special, cap);
        if (sp)
            e->special = sp;
        int8_t *sq = realloc(e->seq, cap);
        if (sq)
            e->seq = sq;
        uint32_t *st = realloc(e->start, cap * sizeof *st);
        if (st)
            e->start = st;
        uint32_t *so = realloc(e->stop, cap * sizeof *so);
        if (so)
            e->stop = so;
        if (!ids || !types || !sp || !sq || !st || !so)
            return -1;
        e->cap = cap;
    }
    e->ids[e->len] = id;
    e->type_ids[e->len] = type_id;
    e->special[e->len] = (uint8_t)special;
    e->seq[e->len] = (int8_t)seq;
    e->start[e->len] = (uint32_t)start;
    e->stop[e->len] = (uint32_t)stop;
    e->len++;
    return 0;
}

void tok_encoding_free(tok_encoding *e)
{
    free(e->ids);
    free(e->type_ids);
    free(e->special);
    free(e->seq);
    free(e->start);
    free(e->stop);
    memset(e, 0, sizeof *e);
}

/* ---------------------------------------------------------------- accessors */

void tok_destroy(tok_tokenizer *t)
{
    if (!t)
        return;
    for (size_t i = 0; t->vocab && i < t->vocab_size; i++)
        free(t->vocab[i]);
    for (size_t i = 0; i < t->n_added; i++)
        free(t->added[i].content);
    free(t->vocab);
    free(t->vocab_len);
    free(t->map.slots);
    free(t->added);
    free(t->single);
    free(t->pair);
    bpe_free(t);
    free(t);
}

tok_kind tok_get_kind(const tok_tokenizer *t) { return t->kind; }
size_t tok_vocab_size(const tok_tokenizer *t) { return t->vocab_size; }
size_t tok_model_max_length(const tok_tokenizer *t) { return t->model_max_length; }
int32_t tok_eos_id(const tok_tokenizer *t) { return t->eos_id; }
int32_t tok_pad_id(const tok_tokenizer *t) { return t->pad_id; }

const char *tok_id_to_token(const tok_tokenizer *t, int32_t id)
{
    return id >= 0 && (size_t)id < t->vocab_size ? t->vocab[id] : NULL;
}

static int is_special_id(const tok_tokenizer *t, int32_t id)
{
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].id == id && t->added[i].special)
            return 1;
    return 0;
}

/* ---------------------------------------------------------------- loading */

static char *read_text(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 65536 > cap) {
            cap = (cap + 65536) * 2;
            char *p = realloc(buf, cap);
            if (!p) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = p;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

static int add_added(tok_tokenizer *t, const char *content, size_t len, int32_t id, int special, const char *file,
                     tok_error *err)
{
    if (t->n_added == MAX_ADDED || len == 0 || len > TOK_MAX_TOKEN_BYTES)
        return tok_fail(err, TOK_EFORMAT, "%s: bad added token '%.40s'", file, content);
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].id == id)
            return 0;
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
    t->added_first[(unsigned char)content[0]] = 1;
    return 0;
}

/* Template pieces from a TemplateProcessing list, resolving SpecialToken ids. */
static int parse_template(tok_tokenizer *t, json_t *list, json_t *specials, tok_piece **out, size_t *n,
                          const char *file, tok_error *err)
{
    if (!json_is_array(list) || json_array_size(list) > MAX_TEMPLATE)
        return tok_fail(err, TOK_EFORMAT, "%s: post_processor template is not a short list", file);
    *out = calloc(MAX_TEMPLATE * 4, sizeof **out);
    if (!*out)
        return tok_fail(err, TOK_ENOMEM, "out of memory");
    size_t k = 0, i;
    json_t *item;
    json_array_foreach(list, i, item) {
        json_t *sp = json_object_get(item, "SpecialToken"), *sq = json_object_get(item, "Sequence");
        json_t *body = sp ? sp : sq;
        const char *id = json_string_value(json_object_get(body, "id"));
        json_int_t type = json_integer_value(json_object_get(body, "type_id"));
        if (!id || type < 0 || type > 16)
            return tok_fail(err, TOK_EFORMAT, "%s: template piece %zu is malformed", file, i);
        if (sq) {
            (*out)[k++] = (tok_piece){strcmp(id, "B") == 0 ? 1 : 0, -1, (int)type};
            continue;
        }
        json_t *ids = json_object_get(json_object_get(specials, id), "ids");
        size_t j;
        json_t *v;
        if (!json_is_array(ids) || json_array_size(ids) == 0 || json_array_size(ids) > 4)
            return tok_fail(err, TOK_EFORMAT, "%s: special token '%.40s' of the template has no ids", file, id);
        json_array_foreach(ids, j, v) {
            json_int_t x = json_integer_value(v);
            if (!json_is_integer(v) || x < 0 || (size_t)x >= t->vocab_size)
                return tok_fail(err, TOK_EFORMAT, "%s: special token '%.40s' has an id out of range", file, id);
            (*out)[k++] = (tok_piece){-1, (int32_t)x, (int)type};
        }
    }
    *n = k;
    return 0;
}

/* The [CLS] A [SEP] (B [SEP]) template of BERT, for directories without tokenizer.json. */
static int bert_template(tok_tokenizer *t, tok_error *err)
{
    int32_t cls = tok_map_get(t, "[CLS]", 5), sep = tok_map_get(t, "[SEP]", 5);
    if (cls < 0 || sep < 0)
        return tok_fail(err, TOK_EFORMAT, "vocab.txt lacks [CLS] or [SEP]");
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

static int opt_bool(json_t *o, const char *key, int def)
{
    json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

static int load_tokenizer_json(tok_tokenizer *t, const char *path, tok_error *err)
{
    json_error_t je;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!j)
        return tok_fail(err, TOK_EFORMAT, "%s: invalid JSON at line %d: %s", path, je.line, je.text);
    int rc = 0;
    json_t *model = json_object_get(j, "model"), *vocab = json_object_get(model, "vocab");
    const char *type = json_string_value(json_object_get(model, "type"));
    /* Older files leave the type out (the Rust reader tries each model in turn). */
    if (!type && json_is_object(model))
        type = json_object_get(model, "merges") ? "BPE"
               : json_object_get(model, "max_input_chars_per_word") ? "WordPiece" : NULL;
    if (!json_is_object(j) || !type || !json_is_object(vocab)) {
        rc = tok_fail(err, TOK_EFORMAT, "%s: needs a model with a type and a vocab object", path);
        goto out;
    }
    if (!strcmp(type, "BPE"))
        t->kind = TOK_KIND_BPE;
    else if (!strcmp(type, "WordPiece"))
        t->kind = TOK_KIND_WORDPIECE;
    else {
        rc = tok_fail(err, TOK_EFORMAT, "%s: model type '%.40s' is not supported (BPE, WordPiece)", path, type);
        goto out;
    }
    /* Size the id space: the largest id of the vocab and of the added tokens. */
    json_int_t max_id = -1;
    const char *key;
    json_t *v;
    size_t i;
    json_object_foreach(vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= TOK_MAX_VOCAB) {
            rc = tok_fail(err, TOK_EFORMAT, "%s: the id of '%.40s' is not an integer in range", path, key);
            goto out;
        }
        if (json_integer_value(v) > max_id)
            max_id = json_integer_value(v);
    }
    json_t *added = json_object_get(j, "added_tokens");
    json_array_foreach(added, i, v) {
        json_int_t id = json_integer_value(json_object_get(v, "id"));
        if (!json_is_integer(json_object_get(v, "id")) || id < 0 || id >= TOK_MAX_VOCAB) {
            rc = tok_fail(err, TOK_EFORMAT, "%s: added token %zu has no valid id", path, i);
            goto out;
        }
        if (id > max_id)
            max_id = id;
    }
    if (max_id < 0 || (rc = vocab_alloc(t, (size_t)max_id + 1, err)) != 0) {
        if (!rc)
            rc = tok_fail(err, TOK_EFORMAT, "%s: the vocabulary is empty", path);
        goto out;
    }
    json_object_foreach(vocab, key, v) {
        if ((rc = vocab_set(t, (int32_t)json_integer_value(v), key, strlen(key), path, err)) != 0)
            goto out;
    }
    json_array_foreach(added, i, v) {
        const char *content = json_string_value(json_object_get(v, "content"));
        int32_t id = (int32_t)json_integer_value(json_object_get(v, "id"));
        if (!content) {
            rc = tok_fail(err, TOK_EFORMAT, "%s: added token %zu has no content", path, i);
            goto out;
        }
        if (!t->vocab[id] && (rc = vocab_set(t, id, content, strlen(content), path, err)) != 0)
            goto out;
        if ((rc = add_added(t, content, strlen(content), id, opt_bool(v, "special", 0), path, err)) != 0)
            goto out;
    }

    const char *unk = json_string_value(json_object_get(model, "unk_token"));
    t->unk_id = unk ? tok_map_get(t, unk, strlen(unk)) : -1;
    json_t *pre = json_object_get(j, "pre_tokenizer"), *norm = json_object_get(j, "normalizer"),
           *dec = json_object_get(j, "decoder"), *post = json_object_get(j, "post_processor");
    const char *pre_type = json_string_value(json_object_get(pre, "type"));
    const char *norm_type = json_string_value(json_object_get(norm, "type"));
    const char *dec_type = json_string_value(json_object_get(dec, "type"));
    const char *post_type = json_string_value(json_object_get(post, "type"));

    if (t->kind == TOK_KIND_BPE) {
        if (pre_type && strcmp(pre_type, "ByteLevel") != 0) {
            rc = tok_fail(err, TOK_EFORMAT, "%s: pre_tokenizer '%.40s' is not supported with BPE", path, pre_type);
            goto out;
        }
        if (norm_type) {
            rc = tok_fail(err, TOK_EFORMAT, "%s: normalizer '%.40s' is not supported with BPE", path, norm_type);
            goto out;
        }
        t->byte_level = pre_type != NULL;
        t->add_prefix_space = opt_bool(pre, "add_prefix_space", 0);
        t->decoder_byte_level = dec_type && !strcmp(dec_type, "ByteLevel");
        json_t *merges = json_object_get(model, "merges");
        size_t n_merges = json_array_size(merges);
        if ((merges && !json_is_array(merges)) || n_merges > MAX_MERGES) {
            rc = tok_fail(err, TOK_EFORMAT, "%s: merges must be a list of at most %d", path, MAX_MERGES);
            goto out;
        }
        if ((rc = bpe_init(t, n_merges, err)) != 0)
            goto out;
        json_array_foreach(merges, i, v) {
            const char *a, *b;
            size_t al, bl;
            if (json_is_string(v)) { /* legacy "a b" */
                a = json_string_value(v);
                const char *sp = strchr(a, ' ');
                if (!sp) {
                    rc = tok_fail(err, TOK_EFORMAT, "%s: merge %zu has no space", path, i + 1);
                    goto out;
                }
                al = (size_t)(sp - a), b = sp + 1, bl = strlen(b);
            } else if (json_is_array(v) && json_array_size(v) == 2 && json_is_string(json_array_get(v, 0)) &&
                       json_is_string(json_array_get(v, 1))) {
                a = json_string_value(json_array_get(v, 0)), al = strlen(a);
                b = json_string_value(json_array_get(v, 1)), bl = strlen(b);
            } else {
                rc = tok_fail(err, TOK_EFORMAT, "%s: merge %zu is neither \"a b\" nor [a, b]", path, i + 1);
                goto out;
            }
            if ((rc = bpe_add_merge(t, a, al, b, bl, (int32_t)i, err)) != 0)
                goto out;
        }
    } else {
        if (!norm_type || strcmp(norm_type, "BertNormalizer") != 0 || !pre_type ||
            strcmp(pre_type, "BertPreTokenizer") != 0) {
            rc = tok_fail(err, TOK_EFORMAT, "%s: WordPiece needs BertNormalizer and BertPreTokenizer", path);
            goto out;
        }
        t->clean_text = opt_bool(norm, "clean_text", 1);
        t->handle_cjk = opt_bool(norm, "handle_chinese_chars", 1);
        t->lowercase = opt_bool(norm, "lowercase", 1);
        json_t *sa = json_object_get(norm, "strip_accents");
        t->strip_accents = json_is_boolean(sa) ? json_is_true(sa) : t->lowercase;
        const char *prefix = json_string_value(json_object_get(model, "continuing_subword_prefix"));
        json_int_t mx = json_integer_value(json_object_get(model, "max_input_chars_per_word"));
        snprintf(t->prefix, sizeof t->prefix, "%s", prefix ? prefix : "##");
        t->prefix_len = strlen(t->prefix);
        t->max_chars = mx > 0 ? (size_t)mx : 100;
        t->clean_up = opt_bool(dec, "cleanup", 1);
        if (t->unk_id < 0) {
            rc = tok_fail(err, TOK_EFORMAT, "%s: the WordPiece unk_token is not in the vocabulary", path);
            goto out;
        }
    }
    if (post_type && !strcmp(post_type, "TemplateProcessing")) {
        json_t *sp = json_object_get(post, "special_tokens");
        if ((rc = parse_template(t, json_object_get(post, "single"), sp, &t->single, &t->n_single, path, err)) ||
            (rc = parse_template(t, json_object_get(post, "pair"), sp, &t->pair, &t->n_pair, path, err)))
            goto out;
    } else if (post_type && strcmp(post_type, "ByteLevel") != 0) {
        rc = tok_fail(err, TOK_EFORMAT, "%s: post_processor '%.40s' is not supported", path, post_type);
    }
out:
    json_decref(j);
    return rc;
}

/* vocab.json + merges.txt: GPT-2's byte-level BPE. */
static int load_gpt2_files(tok_tokenizer *t, const char *vocab_path, const char *merges_path, tok_error *err)
{
    json_error_t je;
    json_t *vocab = json_load_file(vocab_path, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(vocab)) {
        json_decref(vocab);
        return tok_fail(err, TOK_EFORMAT, "%s: not a JSON object (%s)", vocab_path, je.text);
    }
    t->kind = TOK_KIND_BPE;
    t->byte_level = t->decoder_byte_level = 1;
    t->unk_id = -1;
    json_int_t max_id = -1;
    const char *key;
    json_t *v;
    int rc = 0;
    json_object_foreach(vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= TOK_MAX_VOCAB)
            rc = tok_fail(err, TOK_EFORMAT, "%s: the id of '%.40s' is not an integer in range", vocab_path, key);
        else if (json_integer_value(v) > max_id)
            max_id = json_integer_value(v);
    }
    if (!rc && max_id < 0)
        rc = tok_fail(err, TOK_EFORMAT, "%s: the vocabulary is empty", vocab_path);
    if (!rc)
        rc = vocab_alloc(t, (size_t)max_id + 1, err);
    json_object_foreach(vocab, key, v) {
        if (rc)
            break;
        rc = vocab_set(t, (int32_t)json_integer_value(v), key, strlen(key), vocab_path, err);
    }
    json_decref(vocab);
    size_t len;
    char *text = rc ? NULL : read_text(merges_path, &len);
    if (!rc && !text)
        rc = tok_fail(err, TOK_EIO, "%s: %s", merges_path, strerror(errno));
    size_t lines = 0;
    for (size_t i = 0; text && i < len; i++)
        lines += text[i] == '\n';
    if (!rc)
        rc = bpe_init(t, lines + 1, err);
    int32_t rank = 0;
    for (char *line = text, *next; !rc && line && *line; line = next) {
        next = strchr(line, '\n');
        size_t n = next ? (size_t)(next - line) : strlen(line);
        if (next)
            next++;
        if (n && line[n - 1] == '\r')
            n--;
        if (n == 0 || (n >= 8 && !strncmp(line, "#version", 8)))
            continue;
        char *sp = memchr(line, ' ', n);
        if (!sp)
            rc = tok_fail(err, TOK_EFORMAT, "%s: line '%.40s' is not 'a b'", merges_path, line);
        else
            rc = bpe_add_merge(t, line, (size_t)(sp - line), sp + 1, n - (size_t)(sp - line) - 1, rank++, err);
    }
    free(text);
    int32_t eos = tok_map_get(t, "<|endoftext|>", 13);
    if (!rc && eos >= 0)
        rc = add_added(t, "<|endoftext|>", 13, eos, 1, vocab_path, err);
    return rc;
}

/* vocab.txt: BERT WordPiece with the tokenizer_config.json options. */
static int load_vocab_txt(tok_tokenizer *t, const char *path, json_t *cfg, tok_error *err)
{
    size_t len;
    char *text = read_text(path, &len);
    if (!text)
        return tok_fail(err, TOK_EIO, "%s: %s", path, strerror(errno));
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    t->kind = TOK_KIND_WORDPIECE;
    int rc = vocab_alloc(t, lines + 1, err);
    int32_t id = 0;
    for (char *line = text, *next; !rc && line && *line; line = next, id++) {
        next = strchr(line, '\n');
        size_t n = next ? (size_t)(next - line) : strlen(line);
        if (next)
            next++;
        while (n && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
            n--;
        if (n == 0)
            continue;
        /* A repeated token maps to its later id, as the reference readers do (tok_map_put). */
        rc = vocab_set(t, id, line, n, path, err);
    }
    free(text);
    if (rc)
        return rc;
    t->vocab_size = (size_t)id;
    t->clean_text = t->handle_cjk = 1;
    t->lowercase = opt_bool(cfg, "do_lower_case", 1);
    json_t *sa = json_object_get(cfg, "strip_accents");
    t->strip_accents = json_is_boolean(sa) ? json_is_true(sa) : t->lowercase;
    t->handle_cjk = opt_bool(cfg, "tokenize_chinese_chars", 1);
    memcpy(t->prefix, "##", 3);
    t->prefix_len = 2;
    t->max_chars = 100;
    t->clean_up = 1;
    t->unk_id = tok_map_get(t, "[UNK]", 5);
    if (t->unk_id < 0)
        return tok_fail(err, TOK_EFORMAT, "%s: no [UNK] token", path);
    static const char *const specials[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    for (size_t i = 0; i < 5; i++) {
        int32_t sid = tok_map_get(t, specials[i], strlen(specials[i]));
        if (sid >= 0 && (rc = add_added(t, specials[i], strlen(specials[i]), sid, 1, path, err)) != 0)
            return rc;
    }
    return bert_template(t, err);
}

int tok_load_dir(const char *dir, tok_tokenizer **out, tok_error *err)
{
    *out = NULL;
    tok_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return tok_fail(err, TOK_ENOMEM, "out of memory");
    t->eos_id = t->pad_id = t->unk_id = -1;
    char path[4096], path2[4096];
    json_error_t je;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    json_t *cfg = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    int rc = 0;
    if (!cfg && access(path, F_OK) == 0)
        rc = tok_fail(err, TOK_EFORMAT, "%s: invalid JSON: %s", path, je.text);

    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (rc) {
    } else if (access(path, F_OK) == 0) {
        rc = load_tokenizer_json(t, path, err);
    } else {
        snprintf(path, sizeof path, "%s/vocab.json", dir);
        snprintf(path2, sizeof path2, "%s/merges.txt", dir);
        if (access(path, F_OK) == 0 && access(path2, F_OK) == 0) {
            rc = load_gpt2_files(t, path, path2, err);
        } else {
            snprintf(path, sizeof path, "%s/vocab.txt", dir);
            if (access(path, F_OK) == 0)
                rc = load_vocab_txt(t, path, cfg, err);
            else
                rc = tok_fail(err, TOK_EIO,
                              "%s: no tokenizer.json, vocab.json + merges.txt, or vocab.txt found", dir);
        }
    }
    if (!rc) {
        json_int_t mx = json_integer_value(json_object_get(cfg, "model_max_length"));
        t->model_max_length = mx > 0 && mx < (1 << 24) ? (size_t)mx : 0;
        if (t->kind == TOK_KIND_BPE)
            t->clean_up = opt_bool(cfg, "clean_up_tokenization_spaces", 0);
        const char *eos = json_string_value(json_object_get(cfg, "eos_token"));
        t->eos_id = eos ? tok_map_get(t, eos, strlen(eos)) : tok_map_get(t, "<|endoftext|>", 13);
        const char *pad = json_string_value(json_object_get(cfg, "pad_token"));
        t->pad_id = pad ? tok_map_get(t, pad, strlen(pad)) : tok_map_get(t, "[PAD]", 5);
    }
    json_decref(cfg);
    if (rc) {
        tok_destroy(t);
        return rc;
    }
    *out = t;
    return 0;
}

/* ---------------------------------------------------------------- encoding */

/* Finds the leftmost-longest added token at or after `from`; returns its index or -1. */
static long find_added(const tok_tokenizer *t, const char *s, size_t len, size_t from, size_t *at)
{
    for (size_t i = from; i < len; i++) {
        if (!t->added_first[(unsigned char)s[i]])
            continue;
        long best = -1;
        for (size_t k = 0; k < t->n_added; k++) {
            const tok_added *a = &t->added[k];
            if (a->len <= len - i && memcmp(s + i, a->content, a->len) == 0 &&
                (best < 0 || a->len > t->added[best].len))
                best = (long)k;
        }
        if (best >= 0) {
            *at = i;
            return best;
        }
    }
    return -1;
}

static int encode_one(const tok_tokenizer *t, const char *s, size_t len, int seq, tok_encoding *e, tok_error *err)
{
    uint32_t cp;
    for (size_t i = 0, cl; i < len; i += cl)
        if (!(cl = tu_decode((const unsigned char *)s + i, len - i, &cp)))
            return tok_fail(err, TOK_EINPUT, "the text is not valid UTF-8 at byte %zu", i);
    for (size_t pos = 0; pos <= len;) {
        size_t at = len;
        long k = t->n_added ? find_added(t, s, len, pos, &at) : -1;
        size_t end = k >= 0 ? at : len;
        if (end > pos) {
            int rc = t->kind == TOK_KIND_BPE ? bpe_encode(t, s + pos, end - pos, pos, seq, e, err)
                                             : wp_encode(t, s + pos, end - pos, pos, seq, e, err);
            if (rc)
                return rc;
        }
        if (k < 0)
            break;
        if (tok_push(e, t->added[k].id, seq, t->added[k].special, seq, at, at + t->added[k].len))
            return tok_fail(err, TOK_ENOMEM, "out of memory");
        pos = at + t->added[k].len;
    }
    return 0;
}

/* Keeps `keep` tokens of e, removing from the end (right) or the start (left). */
static void cut(tok_encoding *e, size_t keep, tok_direction dir)
{
    if (keep >= e->len)
        return;
    if (dir == TOK_TRUNCATE_LEFT) {
        size_t drop = e->len - keep;
        memmove(e->ids, e->ids + drop, keep * sizeof *e->ids);
        memmove(e->type_ids, e->type_ids + drop, keep * sizeof *e->type_ids);
        memmove(e->special, e->special + drop, keep);
        memmove(e->seq, e->seq + drop, keep);
        memmove(e->start, e->start + drop, keep * sizeof *e->start);
        memmove(e->stop, e->stop + drop, keep * sizeof *e->stop);
    }
    e->len = keep;
}

/* longest_first as the fast tokenizer computes it (FORMATS.md §4.2 step 4). */
static void truncate_pair(tok_encoding *a, tok_encoding *b, size_t budget, tok_direction dir)
{
    size_t n1 = a->len, n2 = b ? b->len : 0;
    if (n1 + n2 <= budget)
        return;
    if (!b) {
        cut(a, budget, dir);
        return;
    }
    int swap = n1 > n2;
    size_t s = swap ? n2 : n1, l = swap ? n1 : n2;
    size_t l2 = s <= budget ? (budget - s > s ? budget - s : s) : s;
    size_t s2 = s;
    if (s + l2 > budget) {
        s2 = budget / 2;
        l2 = budget / 2 + budget % 2;
    }
    (void)l;
    cut(swap ? b : a, s2, dir);
    cut(swap ? a : b, l2, dir);
}

static size_t template_specials(const tok_piece *p, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += p[i].seq < 0;
    return k;
}

int tok_encode(const tok_tokenizer *t, const char *a, size_t a_len, const char *b, size_t b_len,
               const tok_options *opts, tok_encoding *out, tok_error *err)
{
    out->len = 0;
    tok_encoding ea = {0}, eb = {0};
    int rc = encode_one(t, a, a_len, 0, &ea, err);
    if (!rc && b)
        rc = encode_one(t, b, b_len, 1, &eb, err);
    const tok_piece *tpl = b ? t->pair : t->single;
    size_t n_tpl = b ? t->n_pair : t->n_single;
    int templated = opts->add_special_tokens && tpl;
    if (!rc && opts->max_length) {
        size_t specials = templated ? template_specials(tpl, n_tpl) : 0;
        if (opts->max_length < specials)
            rc = tok_fail(err, TOK_ELIMIT, "max_length %zu is less than the %zu special tokens", opts->max_length,
                          specials);
        else
            truncate_pair(&ea, b ? &eb : NULL, opts->max_length - specials, opts->direction);
    }
    if (!rc) {
        static const tok_piece plain[2] = {{0, -1, 0}, {1, -1, 1}};
        if (!templated) {
            tpl = plain;
            n_tpl = b ? 2 : 1;
        }
        for (size_t i = 0; i < n_tpl && !rc; i++) {
            const tok_piece *p = &tpl[i];
            if (p->seq < 0) {
                rc = tok_push(out, p->id, p->type_id, 1, -1, 0, 0);
                continue;
            }
            const tok_encoding *src = p->seq ? &eb : &ea;
            for (size_t k = 0; k < src->len && !rc; k++)
                rc = tok_push(out, src->ids[k], p->type_id, src->special[k], src->seq[k], src->start[k], src->stop[k]);
        }
        if (rc)
            rc = tok_fail(err, TOK_ENOMEM, "out of memory");
    }
    tok_encoding_free(&ea);
    tok_encoding_free(&eb);
    return rc;
}

/* ---------------------------------------------------------------- decoding */

/* transformers' clean_up_tokenization: no space before punctuation and contractions. */
static size_t clean_up(char *s, size_t n)
{
    static const char *const from[] = {" .", " ?", " !", " ,", " ' ", " n't", " 'm", " 's", " 've", " 're"};
    static const char *const to[] = {".", "?", "!", ",", "'", "n't", "'m", "'s", "'ve", "'re"};
    for (size_t r = 0; r < sizeof from / sizeof from[0]; r++) {
        size_t fl = strlen(from[r]), tl = strlen(to[r]), o = 0;
        for (size_t i = 0; i < n;) {
            if (i + fl <= n && memcmp(s + i, from[r], fl) == 0) {
                memcpy(s + o, to[r], tl);
                o += tl;
                i += fl;
            } else {
                s[o++] = s[i++];
            }
        }
        n = o;
    }
    return n;
}

static int append(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t c = (*cap + n + 1) * 2;
        char *p = realloc(*buf, c);
        if (!p)
            return -1;
        *buf = p;
        *cap = c;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    return 0;
}

int tok_decode(const tok_tokenizer *t, const int32_t *ids, size_t n, unsigned flags, char **out, size_t *out_len,
               tok_error *err)
{
    *out = NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = 0, first = 1;
    for (size_t i = 0; i < n && !rc; i++) {
        int32_t id = ids[i];
        if (id < 0 || (size_t)id >= t->vocab_size || !t->vocab[id]) {
            free(buf);
            return tok_fail(err, TOK_EINPUT, "token id %d is not in the vocabulary", id);
        }
        if ((flags & TOK_DECODE_SKIP_SPECIAL) && is_special_id(t, id))
            continue;
        const char *s = t->vocab[id];
        size_t sl = t->vocab_len[id];
        if (t->kind == TOK_KIND_WORDPIECE) {
            /* Join with spaces; a "##" piece glues to the previous one. */
            int cont = sl >= t->prefix_len && !memcmp(s, t->prefix, t->prefix_len);
            if (cont)
                s += t->prefix_len, sl -= t->prefix_len;
            else if (!first)
                rc = append(&buf, &len, &cap, " ", 1);
            rc = rc || append(&buf, &len, &cap, s, sl);
        } else if (t->decoder_byte_level) {
            rc = bpe_token_bytes(t, id, &buf, &len, &cap);
        } else { /* no decoder: Hugging Face joins the tokens with spaces */
            rc = (!first && append(&buf, &len, &cap, " ", 1)) || append(&buf, &len, &cap, s, sl);
        }
        first = 0;
    }
    if (!rc)
        rc = append(&buf, &len, &cap, "", 0);
    if (rc) {
        free(buf);
        return tok_fail(err, TOK_ENOMEM, "out of memory");
    }
    if (t->clean_up && !(flags & TOK_DECODE_KEEP_SPACES))
        len = clean_up(buf, len);
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    return 0;
}
