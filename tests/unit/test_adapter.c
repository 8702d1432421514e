/* test_adapter.c — PEFT adapters (model/adapter.h) against the real gpt2-names-makemore base:
 * save/load round trips of every type, the name rule, resolution that cannot leave the root
 * (traversal, symlinks, FIFOs, directories), malformed configs and tensor files (truncated
 * at every byte, wrong shapes, missing/extra tensors, NaN, pickle), and the decoder with
 * adapters (a zero LoRA is the base model exactly; a prefix needs an empty cache). */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "adapter.h"
#include "cu.h"
#include "gpt2.h"
#include "safetensors.h"

static gpt2_model *model;
static const gpt2_config *base;
static char root[64];
static int root_fd = -1;

static int setup(void)
{
    mdl_error err;
    if (gpt2_load(cu_testdata("checkpoints/gpt2-names-makemore"), &model, &err) != 0) {
        fprintf(stderr, "load: %s\n", err.msg);
        return -1;
    }
    base = gpt2_get_config(model);
    snprintf(root, sizeof root, "/tmp/ragd-adapter-XXXXXX");
    if (!mkdtemp(root))
        return -1;
    root_fd = open(root, O_RDONLY | O_DIRECTORY);
    return root_fd < 0 ? -1 : 0;
}

static int teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    close(root_fd);
    gpt2_free(model);
    return 0;
}

static void fill(adp_adapter *a, float scale)
{
    for (size_t i = 0; i < a->n_weights; i++)
        a->weights[i] = scale * (float)sin(0.37 * (double)i + 1.0);
}

/* Makes root/name and saves a into it. */
static void save_as(const adp_adapter *a, const char *name)
{
    char dir[256];
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    mkdir(dir, 0755);
    mdl_error err;
    CU_ASSERT_EQUAL_FATAL(adp_save(a, dir, "gpt2-names-makemore", &err), 0);
}

static void write_file(const char *rel, const void *data, size_t len)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(fwrite(data, 1, len, f), len);
    fclose(f);
}

static char *read_file(const char *rel, size_t *len)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    rewind(f);
    char *b = malloc(*len + 1);
    if (fread(b, 1, *len, f) != *len)
        *len = 0;
    b[*len] = '\0';
    fclose(f);
    return b;
}

/* Loads root/rel and expects `code`, and a message containing `needle` when it fails. */
static void expect_load(const char *rel, int code, const char *needle)
{
    adp_adapter *a = NULL;
    mdl_error err = {0};
    int rc = adp_load(root_fd, rel, base, &a, &err);
    CU_ASSERT_EQUAL(rc, code);
    if (rc != code || (needle && !strstr(err.msg, needle)))
        fprintf(stderr, "\n  %s: rc %d, '%s' (wanted %d, '%s')\n", rel, rc, err.msg, code, needle ? needle : "");
    if (needle)
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, needle));
    CU_ASSERT_EQUAL(a == NULL, rc != 0);
    adp_free(a);
}

static void test_names(void)
{
    static const char *const good[] = {"a", "lora-1", "A.b_c-9", "x123456789012345678901234567890123456789012345678901234567890123"};
    static const char *const bad[] = {"", ".", "..", ".hidden", "-x", "a/b", "../x", "/etc", "a b", "a\\b", "é",
                                      "x1234567890123456789012345678901234567890123456789012345678901234", "a%2F..",
                                      "name "};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        CU_ASSERT_TRUE(adp_valid_name(good[i]));
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CU_ASSERT_FALSE(adp_valid_name(bad[i]));
}

static void test_round_trip(void)
{
    unsigned char layers[4] = {0, 1, 0, 1};
    adp_config cfgs[] = {
        {.type = ADP_LORA, .r = 4, .lora_alpha = 8, .targets = ADP_ALL_MODULES},
        {.type = ADP_LORA, .r = 2, .lora_alpha = 3, .use_rslora = 1, .layers = layers,
         .targets = ADP_MODULE_BIT(ADP_ATTN_C_ATTN) | ADP_MODULE_BIT(ADP_MLP_C_PROJ)},
        {.type = ADP_PROMPT_TUNING, .num_virtual_tokens = 3},
        {.type = ADP_PREFIX_TUNING, .num_virtual_tokens = 2},
    };
    const char *names[] = {"rt-lora", "rt-lora2", "rt-prompt", "rt-prefix"};
    for (size_t i = 0; i < 4; i++) {
        adp_adapter *a, *b;
        mdl_error err;
        CU_ASSERT_EQUAL_FATAL(adp_create(base, &cfgs[i], &a, &err), 0);
        fill(a, 0.1f);
        save_as(a, names[i]);
        CU_ASSERT_EQUAL_FATAL(adp_load(root_fd, names[i], base, &b, &err), 0);
        CU_ASSERT_EQUAL(b->cfg.type, cfgs[i].type);
        CU_ASSERT_EQUAL(b->n_weights, a->n_weights);
        CU_ASSERT(memcmp(a->weights, b->weights, a->n_weights * sizeof(float)) == 0);
        CU_ASSERT_STRING_EQUAL(b->cfg.base_model, "gpt2-names-makemore");
        CU_ASSERT(adp_bytes(b) >= b->n_weights * sizeof(float));
        CU_ASSERT_EQUAL(adp_virtual_tokens(b), cfgs[i].num_virtual_tokens * (cfgs[i].type != ADP_LORA));
        if (cfgs[i].type == ADP_LORA) {
            CU_ASSERT_EQUAL(b->cfg.targets, cfgs[i].targets);
            CU_ASSERT_EQUAL(b->cfg.r, cfgs[i].r);
            CU_ASSERT_EQUAL(adp_max_rank(b), cfgs[i].r);
            const adp_lora *lo = adp_lora_at(b, 1, ADP_ATTN_C_ATTN);
            CU_ASSERT_PTR_NOT_NULL_FATAL(lo);
            CU_ASSERT(lo->in == 64 && lo->out == 192 && lo->r == cfgs[i].r);
            float want = cfgs[i].use_rslora ? 3.0f / sqrtf(2.0f) : 2.0f;
            CU_ASSERT(fabsf(lo->scaling - want) < 1e-6f);
            CU_ASSERT_EQUAL(adp_lora_at(b, 0, ADP_ATTN_C_ATTN) == NULL, cfgs[i].layers != NULL);
            CU_ASSERT_EQUAL(adp_lora_at(b, 1, ADP_ATTN_C_PROJ) == NULL, cfgs[i].layers != NULL);
        }
        adp_free(a);
        adp_free(b);
    }
    /* The config is PEFT's: fan_in_fan_out for Conv1D, inference mode, sorted keys. */
    size_t len;
    char *cfg = read_file("rt-lora/adapter_config.json", &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
    CU_ASSERT_PTR_NOT_NULL(strstr(cfg, "\"fan_in_fan_out\": true"));
    CU_ASSERT_PTR_NOT_NULL(strstr(cfg, "\"inference_mode\": true"));
    CU_ASSERT_PTR_NOT_NULL(strstr(cfg, "\"c_proj\""));
    CU_ASSERT(strstr(cfg, "\"alpha_pattern\"") < strstr(cfg, "\"base_model_name_or_path\""));
    free(cfg);
}

static void test_paths(void)
{
    static const char *const bad[] = {"", "/etc", "../x", "a/../b", ".", "rt-lora/.", "a//b", "rt-lora/.."};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        expect_load(bad[i], MDL_EINPUT, NULL);
    expect_load("absent", MDL_EIO, "absent");
    /* A symlinked adapter directory, and symlinks as its files. */
    char target[256], link[256];
    snprintf(target, sizeof target, "%s/rt-lora", root);
    snprintf(link, sizeof link, "%s/evil", root);
    CU_ASSERT_EQUAL(symlink(target, link), 0);
    expect_load("evil", MDL_EIO, "symbolic");
    snprintf(link, sizeof link, "%s/etc", root);
    CU_ASSERT_EQUAL(symlink("/etc", link), 0);
    expect_load("etc", MDL_EIO, "symbolic");
    mkdir((snprintf(link, sizeof link, "%s/links", root), link), 0755);
    snprintf(link, sizeof link, "%s/links/adapter_config.json", root);
    snprintf(target, sizeof target, "%s/rt-lora/adapter_config.json", root);
    CU_ASSERT_EQUAL(symlink(target, link), 0);
    expect_load("links", MDL_EIO, "symbolic link");
    /* A FIFO as the weights file fails at once (it would block a plain open). */
    mkdir((snprintf(link, sizeof link, "%s/fifo", root), link), 0755);
    size_t len;
    char *cfg = read_file("rt-lora/adapter_config.json", &len);
    write_file("fifo/adapter_config.json", cfg, len);
    snprintf(link, sizeof link, "%s/fifo/adapter_model.safetensors", root);
    CU_ASSERT_EQUAL(mkfifo(link, 0644), 0);
    expect_load("fifo", MDL_EIO, "not a regular file");
    /* A directory where the weights should be; /dev/zero through a symlink. */
    mkdir((snprintf(link, sizeof link, "%s/dirs", root), link), 0755);
    write_file("dirs/adapter_config.json", cfg, len);
    mkdir((snprintf(link, sizeof link, "%s/dirs/adapter_model.safetensors", root), link), 0755);
    expect_load("dirs", MDL_EIO, "not a regular file");
    mkdir((snprintf(link, sizeof link, "%s/zero", root), link), 0755);
    write_file("zero/adapter_config.json", cfg, len);
    snprintf(link, sizeof link, "%s/zero/adapter_model.safetensors", root);
    CU_ASSERT_EQUAL(symlink("/dev/zero", link), 0);
    expect_load("zero", MDL_EIO, "symbolic link");
    /* Pickle is refused by name. */
    mkdir((snprintf(link, sizeof link, "%s/pickle", root), link), 0755);
    write_file("pickle/adapter_config.json", cfg, len);
    write_file("pickle/adapter_model.bin", "PK", 2);
    expect_load("pickle", MDL_EFORMAT, "pickle");
    /* A nested path inside the root is fine. */
    mkdir((snprintf(link, sizeof link, "%s/nest", root), link), 0755);
    adp_adapter *a;
    mdl_error err;
    adp_config c = {.type = ADP_PROMPT_TUNING, .num_virtual_tokens = 2};
    CU_ASSERT_EQUAL_FATAL(adp_create(base, &c, &a, &err), 0);
    save_as(a, "nest/inner");
    adp_free(a);
    expect_load("nest/inner", 0, NULL);
    free(cfg);
}

/* Writes root/bad-N with the given config and the weights of rt-lora (or `weights`). */
static void expect_config(const char *config, int code, const char *needle)
{
    static int n;
    char name[32], rel[64];
    snprintf(name, sizeof name, "badcfg-%d", n++);
    snprintf(rel, sizeof rel, "%s/%s", root, name);
    mkdir(rel, 0755);
    size_t len;
    char *w = read_file("rt-lora/adapter_model.safetensors", &len);
    snprintf(rel, sizeof rel, "%s/adapter_model.safetensors", name);
    write_file(rel, w, len);
    snprintf(rel, sizeof rel, "%s/adapter_config.json", name);
    write_file(rel, config, strlen(config));
    free(w);
    expect_load(name, code, needle);
}

static void test_bad_configs(void)
{
    expect_config("{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"c_attn\", \"c_proj\", "
                  "\"c_fc\"]}",
                  0, NULL);
    expect_config("{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": \"transformer\\\\.h\\\\.[0-9]+\\\\.(attn\\\\.c_attn|"
                  "attn\\\\.c_proj|mlp\\\\.c_fc|mlp\\\\.c_proj)\"}",
                  0, NULL);
    expect_config("{\"peft_type\": \"LORA\", ", MDL_EFORMAT, "adapter_config.json: invalid JSON");
    expect_config("[1]", MDL_EFORMAT, "not a JSON object");
    expect_config("{\"r\": 4}", MDL_EFORMAT, "peft_type");
    expect_config("{\"peft_type\": \"IA3\"}", MDL_EFORMAT, "IA3");
    expect_config("{\"peft_type\": \"LORA\", \"r\": 0}", MDL_EFORMAT, "'r'");
    expect_config("{\"peft_type\": \"LORA\", \"r\": 100000}", MDL_EFORMAT, "'r'");
    expect_config("{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": -1}", MDL_EFORMAT, "lora_alpha");
    expect_config("{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": \"8\"}", MDL_EFORMAT, "lora_alpha");
    expect_config("{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 1e39}", MDL_EFORMAT, "lora_alpha");
    expect_config("{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": [\"q_proj\", \"v_proj\"]}", MDL_EFORMAT,
                  "matches no module");
    expect_config("{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": []}", MDL_EFORMAT, "target_modules");
    expect_config("{\"peft_type\": \"LORA\", \"r\": 4, \"use_dora\": true}", MDL_EFORMAT, "use_dora");
    expect_config("{\"peft_type\": \"LORA\", \"r\": 4, \"bias\": \"all\"}", MDL_EFORMAT, "bias");
    expect_config("{\"peft_type\": \"LORA\", \"r\": 4, \"task_type\": \"SEQ_CLS\"}", MDL_EFORMAT, "task_type");
    expect_config("{\"peft_type\": \"LORA\", \"r\": 4, \"r\": 8}", MDL_EFORMAT, "duplicate");
    /* The config only targets c_attn, but the file has tensors for every module. */
    expect_config("{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8}", MDL_EFORMAT, "does not target");
    /* r disagrees with the tensors. */
    expect_config("{\"peft_type\": \"LORA\", \"r\": 2, \"target_modules\": [\"c_attn\", \"c_proj\", \"c_fc\"]}",
                  MDL_EFORMAT, "expected [2, 64]");
    /* The tensors are LoRA's, not a prompt's; dimensions that are not the base's. */
    expect_config("{\"peft_type\": \"PROMPT_TUNING\", \"num_virtual_tokens\": 3}", MDL_EFORMAT, "prompt_embeddings");
    expect_config("{\"peft_type\": \"PROMPT_TUNING\"}", MDL_EFORMAT, "num_virtual_tokens");
    expect_config("{\"peft_type\": \"PROMPT_TUNING\", \"num_virtual_tokens\": 3, \"token_dim\": 768}", MDL_EFORMAT,
                  "token_dim");
    expect_config("{\"peft_type\": \"PREFIX_TUNING\", \"num_virtual_tokens\": 3, \"num_layers\": 12}", MDL_EFORMAT,
                  "num_layers");
    /* 16 positions: 16 virtual tokens leave no room for a prompt. */
    expect_config("{\"peft_type\": \"PREFIX_TUNING\", \"num_virtual_tokens\": 16}", MDL_EFORMAT, "num_virtual_tokens");
    expect_config("{\"peft_type\": \"PROMPT_TUNING\", \"num_virtual_tokens\": 3, \"prompt_tuning_init\": \"TEXT\"}",
                  MDL_EFORMAT, "TEXT");
}

/* Every truncation of a small adapter's weights fails cleanly, naming the file. */
static void test_truncated(void)
{
    size_t len, clen;
    char *w = read_file("rt-prefix/adapter_model.safetensors", &len);
    char *cfg = read_file("rt-prefix/adapter_config.json", &clen);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    char dir[256];
    mkdir((snprintf(dir, sizeof dir, "%s/cut", root), dir), 0755);
    write_file("cut/adapter_config.json", cfg, clen);
    int clean = 1;
    for (size_t cut = 0; cut < len; cut += (cut < 256 ? 1 : 97)) {
        write_file("cut/adapter_model.safetensors", w, cut);
        adp_adapter *a = NULL;
        mdl_error err = {0};
        int rc = adp_load(root_fd, "cut", base, &a, &err);
        clean &= rc == MDL_EFORMAT && !a && strstr(err.msg, "cut/adapter_model.safetensors") != NULL;
    }
    CU_ASSERT_TRUE(clean);
    /* NaN in the weights. */
    float nan = NAN;
    memcpy(w + len - 4, &nan, 4);
    write_file("cut/adapter_model.safetensors", w, len);
    expect_load("cut", MDL_EFORMAT, "NaN");
    free(w);
    free(cfg);
}

static void test_tensor_set(void)
{
    adp_adapter *a;
    mdl_error err;
    adp_config c = {.type = ADP_LORA, .r = 2, .lora_alpha = 2, .targets = ADP_MODULE_BIT(ADP_ATTN_C_ATTN)};
    CU_ASSERT_EQUAL_FATAL(adp_create(base, &c, &a, &err), 0);
    fill(a, 0.1f);
    save_as(a, "set-ok");
    size_t clen;
    char *cfg = read_file("set-ok/adapter_config.json", &clen);
    /* Missing tensor: keep layer 3 out of the file. */
    sft_write_tensor t[8];
    char names[8][96];
    size_t n = 0;
    for (size_t l = 0; l < 3; l++)
        for (int b = 0; b < 2; b++, n++) {
            const adp_lora *lo = adp_lora_at(a, l, ADP_ATTN_C_ATTN);
            snprintf(names[n], sizeof names[n], "base_model.model.transformer.h.%zu.attn.c_attn.lora_%c.weight", l,
                     b ? 'B' : 'A');
            t[n] = (sft_write_tensor){names[n], 2, {b ? lo->out : lo->r, b ? lo->r : lo->in}, b ? lo->B : lo->A};
        }
    char path[256];
    mkdir((snprintf(path, sizeof path, "%s/set-missing", root), path), 0755);
    write_file("set-missing/adapter_config.json", cfg, clen);
    CU_ASSERT_EQUAL(sft_write_file((snprintf(path, sizeof path, "%s/set-missing/adapter_model.safetensors", root), path),
                                   t, n, &err),
                    0);
    expect_load("set-missing", MDL_EFORMAT, "h.3.attn.c_attn.lora_A.weight' is missing");
    /* Extra tensor (a full head saved as modules_to_save would be). */
    t[n] = (sft_write_tensor){"base_model.model.lm_head.weight", 2, {2, 2}, a->weights};
    mkdir((snprintf(path, sizeof path, "%s/set-extra", root), path), 0755);
    write_file("set-extra/adapter_config.json", cfg, clen);
    CU_ASSERT_EQUAL(sft_write_file((snprintf(path, sizeof path, "%s/set-extra/adapter_model.safetensors", root), path),
                                   t, n + 1, &err),
                    0);
    expect_load("set-extra", MDL_EFORMAT, "unexpected tensor 'base_model.model.lm_head.weight'");
    free(cfg);
    adp_free(a);
}

static void test_forward(void)
{
    size_t V = base->vocab;
    const int32_t ids[] = {0, 5, 13, 13, 1};
    float *want = malloc(5 * V * sizeof(float)), *got = malloc(5 * V * sizeof(float)), *last = malloc(V * sizeof(float));
    gpt2_cache *kc = gpt2_cache_create(model, 0);
    mdl_error err;
    CU_ASSERT_EQUAL_FATAL(gpt2_forward(model, kc, ids, 5, last, want, &err), 0);
    /* A LoRA whose B is zero is the base model exactly; a non-zero one is not. */
    adp_adapter *a;
    adp_config c = {.type = ADP_LORA, .r = 3, .lora_alpha = 6, .targets = ADP_ALL_MODULES};
    CU_ASSERT_EQUAL_FATAL(adp_create(base, &c, &a, &err), 0);
    for (size_t i = 0; i < a->n_layer * ADP_N_MODULES; i++)
        for (size_t k = 0; k < a->lora[i].r * a->lora[i].in; k++)
            a->lora[i].A[k] = 0.5f;
    gpt2_cache_reset(kc);
    CU_ASSERT_EQUAL(gpt2_begin(model, a, kc, &err), 0);
    CU_ASSERT_EQUAL_FATAL(gpt2_forward_adapter(model, a, kc, ids, 5, last, got, &err), 0);
    CU_ASSERT(memcmp(want, got, 5 * V * sizeof(float)) == 0);
    fill(a, 0.2f);
    gpt2_cache_reset(kc);
    CU_ASSERT_EQUAL_FATAL(gpt2_forward_adapter(model, a, kc, ids, 5, last, got, &err), 0);
    CU_ASSERT(memcmp(want, got, 5 * V * sizeof(float)) != 0);
    adp_free(a);
    /* A prefix takes its positions from the cache: begin needs an empty one, and the
     * sequence then has nvt fewer positions. */
    c = (adp_config){.type = ADP_PREFIX_TUNING, .num_virtual_tokens = 12};
    CU_ASSERT_EQUAL_FATAL(adp_create(base, &c, &a, &err), 0);
    fill(a, 0.3f);
    CU_ASSERT_EQUAL(gpt2_begin(model, a, kc, &err), MDL_EINPUT);
    gpt2_cache_reset(kc);
    CU_ASSERT_EQUAL(gpt2_begin(model, a, kc, &err), 0);
    CU_ASSERT_EQUAL(gpt2_cache_len(kc), 12);
    CU_ASSERT_EQUAL(gpt2_forward_adapter(model, a, kc, ids, 5, last, NULL, &err), MDL_EINPUT);
    CU_ASSERT_EQUAL(gpt2_forward_adapter(model, a, kc, ids, 4, last, NULL, &err), 0);
    adp_free(a);
    /* An adapter built for another shape is refused before it is used. */
    gpt2_config other = *base;
    other.n_embd = 32;
    other.n_inner = 128;
    c = (adp_config){.type = ADP_LORA, .r = 2, .lora_alpha = 2, .targets = ADP_ALL_MODULES};
    CU_ASSERT_EQUAL_FATAL(adp_create(&other, &c, &a, &err), 0);
    gpt2_cache_reset(kc);
    CU_ASSERT_EQUAL(gpt2_forward_adapter(model, a, kc, ids, 5, last, NULL, &err), MDL_EINPUT);
    CU_ASSERT_EQUAL(gpt2_begin(model, a, kc, &err), MDL_EINPUT);
    adp_free(a);
    gpt2_cache_free(kc);
    free(want), free(got), free(last);
}

/* A batched decode step equals each sequence's own step, whatever mix of adapters and
 * cache lengths the batch holds (two neighbouring rows share a LoRA, so their deltas go
 * through one product); a bad row is refused before anything changes. */
static void test_decode_batch(void)
{
    enum { B = 5, STEPS = 4 };
    size_t V = base->vocab;
    adp_adapter *ads[B] = {NULL};
    adp_config cl = {.type = ADP_LORA, .r = 3, .lora_alpha = 6, .targets = ADP_ALL_MODULES},
               cp = {.type = ADP_PREFIX_TUNING, .num_virtual_tokens = 3},
               ct = {.type = ADP_PROMPT_TUNING, .num_virtual_tokens = 2};
    mdl_error err;
    CU_ASSERT_EQUAL_FATAL(adp_create(base, &cl, &ads[1], &err) || adp_create(base, &cp, &ads[3], &err) ||
                              adp_create(base, &ct, &ads[4], &err),
                          0);
    for (size_t b = 1; b < B; b++)
        if (b != 2)
            fill(ads[b], 0.05f * (float)b);
    ads[2] = ads[1];
    const int32_t prompts[B][3] = {{0, 5, 13}, {0, 1}, {0, 2, 9}, {0, 19, 15}, {0}};
    const size_t plen[B] = {3, 2, 3, 3, 1};
    gpt2_cache *one[B], *many[B];
    float *want = malloc(B * V * sizeof(float)), *got = malloc(B * V * sizeof(float));
    int32_t next[B];
    for (size_t b = 0; b < B; b++) {
        one[b] = gpt2_cache_create(model, 0);
        many[b] = gpt2_cache_create(model, 0);
        CU_ASSERT_EQUAL_FATAL(gpt2_begin(model, ads[b], one[b], &err) || gpt2_begin(model, ads[b], many[b], &err), 0);
        CU_ASSERT_EQUAL_FATAL(gpt2_forward_adapter(model, ads[b], one[b], prompts[b], plen[b], want, NULL, &err) ||
                                  gpt2_forward_adapter(model, ads[b], many[b], prompts[b], plen[b], want, NULL, &err),
                              0);
        next[b] = (int32_t)(1 + b);
    }
    float worst = 0;
    for (int step = 0; step < STEPS; step++) {
        for (size_t b = 0; b < B; b++)
            CU_ASSERT_EQUAL_FATAL(gpt2_forward_adapter(model, ads[b], one[b], &next[b], 1, want + b * V, NULL, &err), 0);
        CU_ASSERT_EQUAL_FATAL(gpt2_decode_batch(model, (const adp_adapter *const *)ads, many, next, B, got, &err), 0);
        for (size_t k = 0; k < B * V; k++)
            worst = fmaxf(worst, fabsf(want[k] - got[k]));
        for (size_t b = 0; b < B; b++)
            next[b] = (int32_t)((next[b] * 7 + 3) % 27);
    }
    CU_ASSERT(worst < 1e-5f);
    for (size_t b = 0; b < B; b++)
        CU_ASSERT_EQUAL(gpt2_cache_len(one[b]), gpt2_cache_len(many[b]));
    /* A row whose id is out of range: refused, no cache moves. */
    size_t before = gpt2_cache_len(many[0]);
    next[2] = 27;
    CU_ASSERT_EQUAL(gpt2_decode_batch(model, (const adp_adapter *const *)ads, many, next, B, got, &err), MDL_EINPUT);
    CU_ASSERT_EQUAL(gpt2_cache_len(many[0]), before);
    for (size_t b = 0; b < B; b++) {
        gpt2_cache_free(one[b]);
        gpt2_cache_free(many[b]);
        if (b != 2)
            adp_free(ads[b]);
    }
    free(want), free(got);
}

void cu_register(void)
{
    if (!cu_testdata("checkpoints/gpt2-names-makemore")) {
        cu_skip_all("../shared/testdata not found");
        return;
    }
    CU_pSuite s = CU_add_suite("adapter", setup, teardown);
    CU_add_test(s, "name rule", test_names);
    CU_add_test(s, "save and load every type", test_round_trip);
    CU_add_test(s, "paths stay below the root", test_paths);
    CU_add_test(s, "malformed and mismatched configs", test_bad_configs);
    CU_add_test(s, "truncated and NaN weights", test_truncated);
    CU_add_test(s, "missing and extra tensors", test_tensor_set);
    CU_add_test(s, "decoder with adapters", test_forward);
    CU_add_test(s, "batched decode with mixed adapters", test_decode_batch);
}
