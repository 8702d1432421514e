/* adapter_io.c — reading and writing PEFT adapter directories (shared/spec/FORMATS.md §6).
 *
 * Every file is treated as hostile. Paths are resolved below a root directory descriptor one
 * component at a time with O_NOFOLLOW, files are opened with O_NOFOLLOW | O_NONBLOCK (a FIFO
 * never blocks us) and must be regular files by fstat, and both files are read whole into
 * private buffers before anything is parsed. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <regex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "adapter.h"
#include "json_watch.h"
#include "model_config.h"
#include "safetensors.h"

#define KEY_PREFIX "base_model.model.transformer.h."
#define PATH_MAX_BYTES 1024

/* Is every '/'-separated component of `relpath` a plain name (not empty, ".", ".." or too
 * long)? Checked whole before any filesystem call. */
static int plain_relpath(const char *relpath, size_t n)
{
    if (n == 0 || n == PATH_MAX_BYTES || relpath[0] == '/')
        return 0;
    for (const char *p = relpath;; p++) {
        size_t len = strcspn(p, "/");
        if (len == 0 || len > 255 || (p[0] == '.' && (len == 1 || (len == 2 && p[1] == '.'))))
            return 0;
        p += len;
        if (!*p)
            return 1;
    }
}

/* Opens `relpath` below root_fd as a directory into *out, never following a symlink. */
static int open_beneath(int root_fd, const char *relpath, int *out, mdl_error *err)
{
    if (!plain_relpath(relpath, strnlen(relpath, PATH_MAX_BYTES)))
        return mdl_fail(err, MDL_EINPUT,
                        "'%.80s' is not a relative path of plain names inside the adapters directory", relpath);
    int cur = root_fd;
    for (const char *p = relpath; *p;) {
        size_t len = strcspn(p, "/");
        char comp[256];
        memcpy(comp, p, len);
        comp[len] = '\0';
        int next = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int e = errno;
        if (cur != root_fd)
            close(cur);
        if (next < 0)
            return mdl_fail(err, MDL_EIO, "%.200s: %s", relpath,
                            e == ELOOP || e == ENOTDIR ? "not a directory (symbolic links are not followed)"
                                                       : strerror(e));
        cur = next;
        p += len;
        if (*p == '/')
            p++;
    }
    *out = cur;
    return 0;
}

/* Reads the regular file `name` in dir_fd whole (at most `max` bytes). */
static int read_at(int dir_fd, const char *name, const char *label, size_t max, uint8_t **out, size_t *len,
                   mdl_error *err)
{
    int fd = openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return mdl_fail(err, MDL_EIO, "%s: %s", label,
                        errno == ELOOP ? "a symbolic link (not followed)"
                        : errno == ENOENT ? "missing"
                                          : strerror(errno));
    return sft_read_fd(fd, label, max, out, len, err);
}

/* ---- adapter_config.json ---- */

/* The parts of a LoRA config that select modules, kept until the tensors are checked. */
typedef struct {
    json_t *targets;  /* list or regex string (borrowed) */
    regex_t re;
    int has_re;
} target_rule;

/* PEFT's check_target_module_exists for one full module name. */
static int rule_matches(const target_rule *t, const char *full)
{
    if (t->has_re)
        return regexec(&t->re, full, 0, NULL, 0) == 0;
    size_t i;
    json_t *e;
    size_t fl = strlen(full);
    json_array_foreach(t->targets, i, e) {
        const char *s = json_string_value(e);
        size_t sl = json_string_length(e);
        if (!strcmp(full, s) || (fl > sl && full[fl - sl - 1] == '.' && !strcmp(full + fl - sl, s)))
            return 1;
    }
    return 0;
}

/* A size field: absent/null gives def; otherwise an integer in 1..max. */
static int cfg_size(json_t *j, const char *key, size_t def, size_t max, size_t *out, const char *label, mdl_error *err)
{
    json_t *v = json_object_get(j, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return def ? 0 : mdl_fail(err, MDL_EFORMAT, "%s: '%s' is required", label, key);
    }
    if (!json_is_integer(v) || json_integer_value(v) < 1 || (uint64_t)json_integer_value(v) > max)
        return mdl_fail(err, MDL_EFORMAT, "%s: '%s' must be an integer in 1..%zu", label, key, max);
    *out = (size_t)json_integer_value(v);
    return 0;
}

/* A field that must be absent, null, or equal to `want` (dimensions PEFT copies from the base). */
static int cfg_same(json_t *j, const char *key, size_t want, const char *label, mdl_error *err)
{
    json_t *v = json_object_get(j, key);
    if (!v || json_is_null(v) || (json_is_integer(v) && json_integer_value(v) == (json_int_t)want))
        return 0;
    return mdl_fail(err, MDL_EFORMAT, "%s: '%s' does not match the base model's %zu", label, key, want);
}

/* A field that ragd does not implement: it must be absent or hold the default. */
static int cfg_default(json_t *j, const char *key, const char *label, mdl_error *err)
{
    json_t *v = json_object_get(j, key);
    int ok = !v || json_is_null(v) || json_is_false(v) || (json_is_object(v) && json_object_size(v) == 0) ||
             (json_is_array(v) && json_array_size(v) == 0) ||
             (!strcmp(key, "bias") && json_is_string(v) && !strcmp(json_string_value(v), "none"));
    return ok ? 0 : mdl_fail(err, MDL_EFORMAT, "%s: '%s' other than its default is not supported", label, key);
}

#define MAX_REGEX_BYTES 256
#define MAX_REGEX_COST 256

/* How many copies of its parts glibc's regcomp may build for a pattern: it copies the
 * operand of `+` once more and that of {n,m} max(n,m) times, so nested or repeated
 * repetitions grow it exponentially ("a++++..." took gigabytes). The product of every
 * repetition's factor bounds it from above; it stops counting past `cap`. */
static size_t regex_cost(const char *p, size_t cap)
{
    size_t cost = 1;
    for (; *p && cost <= cap; p++) {
        if (*p == '\\' && p[1]) {
            p++;
        } else if (*p == '[') { /* a bracket expression: no operators inside */
            p += p[1] == '^' ? 2 : 1;
            if (*p == ']')
                p++;
            while (*p && *p != ']')
                p++;
            if (!*p)
                break;
        } else if (*p == '+') {
            cost *= 2;
        } else if (*p == '{') {
            size_t n = 0, most = 0;
            for (p++; *p && *p != '}'; p++) {
                if (*p >= '0' && *p <= '9')
                    n = n > cap ? n : n * 10 + (size_t)(*p - '0');
                else
                    n = 0;
                most = n > most ? n : most;
            }
            cost *= most + 1;
            if (!*p)
                break;
        }
    }
    return cost;
}

static int parse_lora(json_t *j, const gpt2_config *base, adp_config *c, target_rule *t, const char *label,
                      mdl_error *err)
{
    static const char *const unsupported[] = {"use_dora", "bias", "rank_pattern", "alpha_pattern", "modules_to_save",
                                              "lora_bias", "exclude_modules"};
    for (size_t i = 0; i < sizeof unsupported / sizeof *unsupported; i++)
        if (cfg_default(j, unsupported[i], label, err))
            return err ? err->code : MDL_EFORMAT;
    if (cfg_size(j, "r", 8, ADP_MAX_RANK, &c->r, label, err))
        return MDL_EFORMAT;
    json_t *alpha = json_object_get(j, "lora_alpha"), *rs = json_object_get(j, "use_rslora");
    double a = alpha ? json_number_value(alpha) : 8.0;
    if ((alpha && !json_is_number(alpha)) || !isfinite(a) || a <= 0 || !isfinite((float)a))
        return mdl_fail(err, MDL_EFORMAT, "%s: 'lora_alpha' must be a positive finite number", label);
    c->lora_alpha = (float)a;
    if (rs && !json_is_boolean(rs))
        return mdl_fail(err, MDL_EFORMAT, "%s: 'use_rslora' must be a boolean", label);
    c->use_rslora = rs && json_is_true(rs);
    json_t *drop = json_object_get(j, "lora_dropout");
    double p = drop && !json_is_null(drop) ? json_number_value(drop) : 0.0;
    if ((drop && !json_is_null(drop) && !json_is_number(drop)) || !(p >= 0 && p < 1))
        return mdl_fail(err, MDL_EFORMAT, "%s: 'lora_dropout' must be a number in [0, 1)", label);
    c->lora_dropout = (float)p;

    json_t *tm = json_object_get(j, "target_modules");
    if (!tm || json_is_null(tm)) { /* PEFT's built-in map: gpt2 -> ["c_attn"] */
        t->targets = json_pack("[s]", "c_attn");
        if (!t->targets)
            return mdl_fail(err, MDL_ENOMEM, "out of memory");
    } else if (json_is_string(tm)) {
        size_t n = json_string_length(tm);
        if (n > MAX_REGEX_BYTES || regex_cost(json_string_value(tm), MAX_REGEX_COST) > MAX_REGEX_COST)
            return mdl_fail(err, MDL_EFORMAT,
                            "%s: 'target_modules' as a regex is limited to %d bytes and few repetitions ('+', {n,m})",
                            label, MAX_REGEX_BYTES);
        char *pat = malloc(n + 5);
        if (!pat)
            return mdl_fail(err, MDL_ENOMEM, "out of memory");
        snprintf(pat, n + 5, "^(%s)$", json_string_value(tm));
        int bad = strlen(pat) != n + 4 || regcomp(&t->re, pat, REG_EXTENDED | REG_NOSUB) != 0;
        free(pat);
        if (bad)
            return mdl_fail(err, MDL_EFORMAT, "%s: 'target_modules' is not a regular expression ragd can use", label);
        t->has_re = 1;
    } else if (json_is_array(tm) && json_array_size(tm) > 0) {
        size_t i;
        json_t *e;
        json_array_foreach(tm, i, e) if (!json_is_string(e)) return mdl_fail(
            err, MDL_EFORMAT, "%s: 'target_modules' must be a list of strings or a regex string", label);
        t->targets = json_incref(tm);
    } else {
        return mdl_fail(err, MDL_EFORMAT, "%s: 'target_modules' must be a non-empty list of strings or a regex", label);
    }

    json_t *ltt = json_object_get(j, "layers_to_transform"), *lp = json_object_get(j, "layers_pattern");
    if (ltt && !json_is_null(ltt)) {
        if (lp && !json_is_null(lp) && !(json_is_string(lp) && !strcmp(json_string_value(lp), "h")) &&
            !(json_is_array(lp) && json_array_size(lp) == 1 && json_is_string(json_array_get(lp, 0)) &&
              !strcmp(json_string_value(json_array_get(lp, 0)), "h")))
            return mdl_fail(err, MDL_EFORMAT, "%s: 'layers_pattern' must be \"h\" for GPT-2", label);
        if (!(c->layers = calloc(base->n_layer, 1)))
            return mdl_fail(err, MDL_ENOMEM, "out of memory");
        json_t *one = json_is_integer(ltt) ? json_pack("[O]", ltt) : json_incref(ltt);
        size_t i;
        json_t *e;
        int bad = !json_is_array(one);
        json_array_foreach(one, i, e) {
            if (!json_is_integer(e) || json_integer_value(e) < 0)
                bad = 1;
            else if ((uint64_t)json_integer_value(e) < base->n_layer)
                c->layers[json_integer_value(e)] = 1;
        }
        json_decref(one);
        if (bad)
            return mdl_fail(err, MDL_EFORMAT, "%s: 'layers_to_transform' must be a layer index or a list of them", label);
    }
    /* Which modules of which layers the rule adapts. */
    c->targets = 0;
    for (size_t l = 0; l < base->n_layer; l++)
        for (int mod = 0; mod < ADP_N_MODULES; mod++) {
            char full[96];
            snprintf(full, sizeof full, "transformer.h.%zu.%s", l, adp_module_name((adp_module)mod));
            if ((!c->layers || c->layers[l]) && rule_matches(t, full))
                c->targets |= ADP_MODULE_BIT(mod);
        }
    if (!c->targets)
        return mdl_fail(err, MDL_EFORMAT,
                        "%s: 'target_modules' matches no module of the model (GPT-2 has attn.c_attn, attn.c_proj, "
                        "mlp.c_fc and mlp.c_proj in transformer.h.N)",
                        label);
    return 0;
}

static int parse_prompt(json_t *j, const gpt2_config *base, adp_config *c, const char *label, mdl_error *err)
{
    if (cfg_size(j, "num_virtual_tokens", 0, ADP_MAX_VIRTUAL, &c->num_virtual_tokens, label, err) ||
        cfg_same(j, "token_dim", base->n_embd, label, err) || cfg_same(j, "num_layers", base->n_layer, label, err) ||
        cfg_same(j, "num_attention_heads", base->n_head, label, err) ||
        cfg_same(j, "num_transformer_submodules", 1, label, err) || cfg_default(j, "modules_to_save", label, err))
        return err ? err->code : MDL_EFORMAT;
    const char *init = json_string_value(json_object_get(j, "prompt_tuning_init"));
    if (c->type == ADP_PROMPT_TUNING && init && !strcmp(init, "TEXT") &&
        (!json_is_string(json_object_get(j, "prompt_tuning_init_text")) ||
         !json_is_string(json_object_get(j, "tokenizer_name_or_path"))))
        return mdl_fail(err, MDL_EFORMAT,
                        "%s: prompt_tuning_init TEXT needs prompt_tuning_init_text and tokenizer_name_or_path "
                        "(PEFT refuses it too)",
                        label);
    return 0;
}

static int parse_config(const uint8_t *buf, size_t len, const gpt2_config *base, adp_config *c, target_rule *t,
                        const char *label, mdl_error *err)
{
    json_error_t je;
    int oom;
    json_t *j = jsonw_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, &je, &oom);
    if (oom)
        return mdl_fail(err, MDL_ENOMEM, "%s: out of memory", label);
    if (!j)
        return mdl_fail(err, MDL_EFORMAT, "%s: invalid JSON at line %d: %s", label, je.line, je.text);
    int rc = MDL_EFORMAT;
    const char *type = json_string_value(json_object_get(j, "peft_type"));
    json_t *task = json_object_get(j, "task_type"), *bm = json_object_get(j, "base_model_name_or_path");
    memset(c, 0, sizeof *c);
    if (!json_is_object(j))
        mdl_fail(err, rc, "%s: not a JSON object", label);
    else if (!type)
        mdl_fail(err, rc, "%s: 'peft_type' is missing", label);
    else if (task && !json_is_null(task) &&
             !(json_is_string(task) && !strcmp(json_string_value(task), "CAUSAL_LM")))
        mdl_fail(err, rc, "%s: task_type must be CAUSAL_LM for a GPT-2 generator", label);
    else if (bm && !json_is_null(bm) && !json_is_string(bm))
        mdl_fail(err, rc, "%s: 'base_model_name_or_path' must be a string", label);
    else {
        if (json_is_string(bm))
            snprintf(c->base_model, sizeof c->base_model, "%s", json_string_value(bm));
        if (!strcmp(type, "LORA")) {
            c->type = ADP_LORA;
            rc = parse_lora(j, base, c, t, label, err);
        } else if (!strcmp(type, "PROMPT_TUNING") || !strcmp(type, "PREFIX_TUNING")) {
            c->type = !strcmp(type, "PROMPT_TUNING") ? ADP_PROMPT_TUNING : ADP_PREFIX_TUNING;
            rc = parse_prompt(j, base, c, label, err);
        } else {
            mdl_fail(err, rc, "%s: peft_type '%.40s' is not supported (LORA, PROMPT_TUNING, PREFIX_TUNING)", label,
                     type);
        }
    }
    json_decref(j);
    return rc;
}

/* ---- adapter_model.safetensors ---- */

/* Widens a tensor into dst after checking its shape, and refuses NaN and infinity. */
static int take_tensor(const sft_tensor *te, size_t d0, size_t d1, float *dst, mdl_error *err)
{
    if (te->rank != 2 || te->shape[0] != d0 || te->shape[1] != d1)
        return mdl_fail(err, MDL_EFORMAT, "%s: tensor '%s' has shape [%llu%s%llu], expected [%zu, %zu]", te->file,
                        te->name, (unsigned long long)(te->rank ? te->shape[0] : 0), te->rank > 1 ? ", " : "",
                        (unsigned long long)(te->rank > 1 ? te->shape[1] : 0), d0, d1);
    int rc = sft_to_f32(te, dst, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < d0 * d1; i++)
        if (!isfinite(dst[i]))
            return mdl_fail(err, MDL_EFORMAT, "%s: tensor '%s' holds NaN or infinity", te->file, te->name);
    return 0;
}

/* Parses KEY_PREFIX "N.<module>.lora_{A,B}.weight" into layer, module and which factor. */
static int lora_key(const char *name, size_t n_layer, size_t *l, int *mod, int *is_b)
{
    if (strncmp(name, KEY_PREFIX, sizeof KEY_PREFIX - 1) != 0)
        return 0;
    const char *p = name + sizeof KEY_PREFIX - 1;
    size_t v = 0;
    if (*p < '0' || *p > '9' || (*p == '0' && p[1] != '.'))
        return 0;
    while (*p >= '0' && *p <= '9' && v <= n_layer)
        v = v * 10 + (size_t)(*p++ - '0');
    if (v >= n_layer || *p++ != '.')
        return 0;
    for (int m = 0; m < ADP_N_MODULES; m++) {
        size_t ml = strlen(adp_module_name((adp_module)m));
        if (!strncmp(p, adp_module_name((adp_module)m), ml) &&
            (!strcmp(p + ml, ".lora_A.weight") || !strcmp(p + ml, ".lora_B.weight"))) {
            *l = v;
            *mod = m;
            *is_b = p[ml + 6] == 'B';
            return 1;
        }
    }
    return 0;
}

static int fill_lora(adp_adapter *a, const sft_set *s, const target_rule *t, const char *label, mdl_error *err)
{
    /* Drop the modules the rule selects in some layers but not in this one. */
    for (size_t l = 0; l < a->n_layer; l++)
        for (int mod = 0; mod < ADP_N_MODULES; mod++) {
            adp_lora *lo = &a->lora[l * ADP_N_MODULES + mod];
            char full[96];
            snprintf(full, sizeof full, "transformer.h.%zu.%s", l, adp_module_name((adp_module)mod));
            if (lo->r && !rule_matches(t, full))
                *lo = (adp_lora){0};
        }
    unsigned char *seen = calloc(a->n_layer * ADP_N_MODULES, 2);
    if (!seen)
        return mdl_fail(err, MDL_ENOMEM, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < sft_count(s) && !rc; i++) {
        const sft_tensor *te = sft_at(s, i);
        size_t l;
        int mod, is_b;
        if (!lora_key(te->name, a->n_layer, &l, &mod, &is_b)) {
            rc = mdl_fail(err, MDL_EFORMAT,
                          "%s: unexpected tensor '%.120s' (ragd reads " KEY_PREFIX
                          "N.{attn.c_attn,attn.c_proj,mlp.c_fc,mlp.c_proj}.lora_{A,B}.weight)",
                          label, te->name);
            break;
        }
        adp_lora *lo = &a->lora[l * ADP_N_MODULES + mod];
        if (!lo->r) {
            rc = mdl_fail(err, MDL_EFORMAT, "%s: tensor '%.120s' adapts a module adapter_config.json does not target",
                          label, te->name);
            break;
        }
        seen[(l * ADP_N_MODULES + (size_t)mod) * 2 + (size_t)is_b] = 1;
        rc = is_b ? take_tensor(te, lo->out, lo->r, lo->B, err) : take_tensor(te, lo->r, lo->in, lo->A, err);
    }
    for (size_t i = 0; i < a->n_layer * ADP_N_MODULES * 2 && !rc; i++)
        if (a->lora[i / 2].r && !seen[i])
            rc = mdl_fail(err, MDL_EFORMAT, "%s: tensor '" KEY_PREFIX "%zu.%s.lora_%c.weight' is missing", label,
                          i / 2 / ADP_N_MODULES, adp_module_name((adp_module)(i / 2 % ADP_N_MODULES)),
                          i % 2 ? 'B' : 'A');
    free(seen);
    return rc;
}

static int fill_prompt(adp_adapter *a, const sft_set *s, const char *label, mdl_error *err)
{
    const sft_tensor *te = sft_find(s, "prompt_embeddings");
    size_t width = a->n_embd * (a->cfg.type == ADP_PREFIX_TUNING ? 2 * a->n_layer : 1);
    if (!te)
        return mdl_fail(err, MDL_EFORMAT, "%s: tensor 'prompt_embeddings' is missing", label);
    if (sft_count(s) != 1)
        return mdl_fail(err, MDL_EFORMAT, "%s: %zu tensors; %s saves only 'prompt_embeddings'", label, sft_count(s),
                        adp_type_name(a->cfg.type));
    return take_tensor(te, a->cfg.num_virtual_tokens, width, a->prompt, err);
}

int adp_load(int root_fd, const char *relpath, const gpt2_config *base, adp_adapter **out, mdl_error *err)
{
    *out = NULL;
    int dir = -1;
    int rc = open_beneath(root_fd, relpath, &dir, err);
    if (rc)
        return rc;
    char cfg_label[PATH_MAX_BYTES + 64], st_label[PATH_MAX_BYTES + 64];
    snprintf(cfg_label, sizeof cfg_label, "%s/adapter_config.json", relpath);
    snprintf(st_label, sizeof st_label, "%s/adapter_model.safetensors", relpath);
    uint8_t *cbuf = NULL, *sbuf = NULL;
    size_t clen, slen;
    adp_config cfg = {0};
    target_rule rule = {0};
    sft_set *set = NULL;
    adp_adapter *a = NULL;
    struct stat st;
    rc = read_at(dir, "adapter_config.json", cfg_label, ADP_MAX_CONFIG_BYTES, &cbuf, &clen, err);
    if (!rc)
        rc = parse_config(cbuf, clen, base, &cfg, &rule, cfg_label, err);
    if (!rc && fstatat(dir, "adapter_model.safetensors", &st, AT_SYMLINK_NOFOLLOW) != 0 &&
        fstatat(dir, "adapter_model.bin", &st, AT_SYMLINK_NOFOLLOW) == 0)
        rc = mdl_fail(err, MDL_EFORMAT,
                      "%s/adapter_model.bin: pickle adapters are never loaded; save the adapter with "
                      "safe_serialization (adapter_model.safetensors)",
                      relpath);
    if (!rc)
        rc = read_at(dir, "adapter_model.safetensors", st_label, ADP_MAX_FILE_BYTES, &sbuf, &slen, err);
    if (!rc)
        rc = sft_parse(sbuf, slen, st_label, &set, err);
    mdl_error ce;
    if (!rc && adp_create(base, &cfg, &a, &ce) != 0) /* a config the base cannot take is the file's fault */
        rc = mdl_fail(err, ce.code == MDL_ENOMEM ? MDL_ENOMEM : MDL_EFORMAT, "%s: %s", cfg_label, ce.msg);
    if (!rc)
        rc = cfg.type == ADP_LORA ? fill_lora(a, set, &rule, st_label, err) : fill_prompt(a, set, st_label, err);
    sft_close(set);
    free(sbuf);
    free(cbuf);
    free(cfg.layers);
    json_decref(rule.targets);
    if (rule.has_re)
        regfree(&rule.re);
    close(dir);
    if (rc) {
        adp_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

/* ---- writing ---- */

static int write_file_atomic(const char *dir, const char *name, const void *data, size_t len, mdl_error *err)
{
    char path[4096], tmp[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    int rc = fd < 0 ? -1 : 0;
    for (size_t off = 0; !rc && off < len;) {
        ssize_t w = write(fd, (const char *)data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            rc = -1;
        else
            off += (size_t)w;
    }
    if (!rc)
        rc = fsync(fd);
    if (fd >= 0 && close(fd) != 0)
        rc = -1;
    if (!rc)
        rc = rename(tmp, path);
    if (rc) {
        int e = errno;
        unlink(tmp);
        return mdl_fail(err, MDL_EIO, "%s: write failed: %s", path, strerror(e));
    }
    return 0;
}

/* PEFT's target_modules list for a module set ("c_proj" when both projections are adapted). */
static json_t *target_list(unsigned targets)
{
    json_t *l = json_array();
    if (targets & ADP_MODULE_BIT(ADP_ATTN_C_ATTN))
        json_array_append_new(l, json_string("c_attn"));
    unsigned proj = ADP_MODULE_BIT(ADP_ATTN_C_PROJ) | ADP_MODULE_BIT(ADP_MLP_C_PROJ);
    if ((targets & proj) == proj)
        json_array_append_new(l, json_string("c_proj"));
    else if (targets & proj)
        json_array_append_new(l, json_string(targets & ADP_MODULE_BIT(ADP_ATTN_C_PROJ) ? "attn.c_proj" : "mlp.c_proj"));
    if (targets & ADP_MODULE_BIT(ADP_MLP_C_FC))
        json_array_append_new(l, json_string("c_fc"));
    return l;
}

/* An adapter loaded through a regex may adapt a module in some layers only, which neither a
 * module list nor layers_to_transform can say; its config then names each adapted module
 * ("h.0.attn.c_attn", matched as a suffix, as PEFT does), so saving it again loads back the
 * same modules. NULL when the module list and the layers say it exactly. */
static json_t *module_names(const adp_adapter *a)
{
    const adp_config *c = &a->cfg;
    int regular = 1;
    for (size_t l = 0; l < a->n_layer; l++) {
        unsigned mask = 0;
        for (int mod = 0; mod < ADP_N_MODULES; mod++)
            if (a->lora[l * ADP_N_MODULES + mod].r)
                mask |= ADP_MODULE_BIT(mod);
        if (mask != ((!c->layers || c->layers[l]) ? c->targets : 0u))
            regular = 0;
    }
    if (regular)
        return NULL;
    json_t *l = json_array();
    for (size_t i = 0; l && i < a->n_layer * ADP_N_MODULES; i++)
        if (a->lora[i].r)
            json_array_append_new(l, json_sprintf("h.%zu.%s", i / ADP_N_MODULES,
                                                  adp_module_name((adp_module)(i % ADP_N_MODULES))));
    return l;
}

/* A float as the shortest decimal that reads back as it (0.05, not 0.05000000074505806), as
 * Python prints the value it was given. */
static json_t *json_float32(float f)
{
    char buf[32];
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)f);
        if ((float)strtod(buf, NULL) == f)
            break;
    }
    return json_real(strtod(buf, NULL));
}

static json_t *config_json(const adp_adapter *a, const char *base_model)
{
    const adp_config *c = &a->cfg;
    json_t *j = json_pack("{s:s, s:s, s:o, s:b, s:n, s:n}", "peft_type", adp_type_name(c->type), "task_type",
                          "CAUSAL_LM", "base_model_name_or_path",
                          *base_model ? json_string(base_model) : json_null(), "inference_mode", 1, "revision",
                          "modules_to_save");
    if (!j)
        return NULL;
    if (c->type == ADP_LORA) {
        json_t *layers = json_null(), *names = module_names(a);
        if (c->layers && !names) {
            layers = json_array();
            for (size_t l = 0; l < a->n_layer; l++)
                if (c->layers[l])
                    json_array_append_new(layers, json_integer((json_int_t)l));
        }
        double alpha = c->lora_alpha;
        json_object_update_new(j, json_pack("{s:I, s:o, s:o, s:o, s:b, s:s, s:b, s:b, s:o, s:o, s:{}, s:{}, s:b}", "r",
                                        (json_int_t)c->r, "lora_alpha",
                                        alpha == floor(alpha) && fabs(alpha) < 1e15 ? json_integer((json_int_t)alpha)
                                                                                    : json_float32(c->lora_alpha),
                                        "lora_dropout", json_float32(c->lora_dropout), "target_modules",
                                        names ? names : target_list(c->targets),
                                        "fan_in_fan_out", 1, "bias", "none", "use_rslora", c->use_rslora,
                                        "init_lora_weights", 1, "layers_to_transform", layers, "layers_pattern",
                                        c->layers && !names ? json_string("h") : json_null(), "rank_pattern",
                                        "alpha_pattern", "use_dora", 0));
    } else {
        json_object_update_new(j, json_pack("{s:I, s:I, s:i, s:I, s:I}", "num_virtual_tokens",
                                        (json_int_t)c->num_virtual_tokens, "token_dim", (json_int_t)a->n_embd,
                                        "num_transformer_submodules", 1, "num_attention_heads",
                                        (json_int_t)a->n_head, "num_layers", (json_int_t)a->n_layer));
        if (c->type == ADP_PROMPT_TUNING)
            json_object_update_new(j, json_pack("{s:s, s:n, s:n, s:n}", "prompt_tuning_init", "RANDOM",
                                            "prompt_tuning_init_text", "tokenizer_name_or_path", "tokenizer_kwargs"));
        else
            json_object_update_new(j, json_pack("{s:I, s:b}", "encoder_hidden_size", (json_int_t)a->n_embd,
                                            "prefix_projection", 0));
    }
    return j;
}

int adp_save(const adp_adapter *a, const char *dir, const char *base_model, mdl_error *err)
{
    size_t n = a->cfg.type == ADP_LORA ? a->n_layer * ADP_N_MODULES * 2 : 1, k = 0;
    sft_write_tensor *t = calloc(n, sizeof *t);
    char *names = calloc(n, 128);
    json_t *cfg = config_json(a, base_model ? base_model : a->cfg.base_model);
    char *text = cfg ? jsonw_dumps(cfg, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(15)) : NULL;
    json_decref(cfg);
    int rc = 0;
    if (!t || !names || !text)
        rc = mdl_fail(err, MDL_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && a->cfg.type == ADP_LORA && i < a->n_layer * ADP_N_MODULES; i++) {
        const adp_lora *lo = &a->lora[i];
        if (!lo->r)
            continue;
        for (int b = 0; b < 2; b++, k++) {
            snprintf(names + k * 128, 128, KEY_PREFIX "%zu.%s.lora_%c.weight", i / ADP_N_MODULES,
                     adp_module_name((adp_module)(i % ADP_N_MODULES)), b ? 'B' : 'A');
            t[k] = (sft_write_tensor){names + k * 128, 2, {b ? lo->out : lo->r, b ? lo->r : lo->in}, b ? lo->B : lo->A};
        }
    }
    if (!rc && a->cfg.type != ADP_LORA) {
        size_t width = a->n_embd * (a->cfg.type == ADP_PREFIX_TUNING ? 2 * a->n_layer : 1);
        t[k++] = (sft_write_tensor){"prompt_embeddings", 2, {a->cfg.num_virtual_tokens, width}, a->prompt};
    }
    char tmp[4096], path[4096];
    snprintf(tmp, sizeof tmp, "%s/.adapter_model.safetensors.tmp", dir);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    if (!rc && (rc = sft_write_file(tmp, t, k, err)) == 0 && rename(tmp, path) != 0)
        rc = mdl_fail(err, MDL_EIO, "%s: %s", path, strerror(errno));
    if (rc)
        unlink(tmp);
    if (!rc) {
        size_t len = strlen(text);
        rc = write_file_atomic(dir, "adapter_config.json", text, len, err);
    }
    free(text);
    free(names);
    free(t);
    return rc;
}
