/* fuzz_adapter.c — PEFT adapter directories (adapter.h): adapter_config.json parsing and its
 * validation against a base model, then the tensors checked against the config. The input is
 * the config, a NUL byte, then adapter_model.safetensors; without the NUL the safetensors
 * file is a valid LoRA (r 2, attn.c_attn of both layers) written at start-up, so a config
 * alone still reaches the tensor checks. Both files are written into a real directory and
 * loaded with adp_load, exactly as the server does. A failure must say why with a documented
 * code. A loaded adapter must fit the base, hold only finite weights, and survive adp_save
 * then adp_load unchanged (what training does with init_adapter). */
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "adapter.h"

/* A tiny GPT-2: the adapter tensors are small, so every exec is cheap. */
static const gpt2_config base = {.vocab = 27, .n_positions = 16, .n_embd = 8, .n_layer = 2, .n_head = 2,
                                 .n_inner = 32, .ln_eps = 1e-5f, .tied = 0, .eos_id = -1};

static char root[64];
static int root_fd = -1;
static uint8_t *default_st;
static size_t default_st_len;

static void die(const char *what, const mdl_error *err)
{
    fprintf(stderr, "fuzz_adapter: %s: %s\n", what, err ? err->msg : "");
    abort();
}

static void write_file(const char *dir, const char *name, const void *data, size_t len)
{
    char path[160];
    snprintf(path, sizeof path, "%s/%s/%s", root, dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || (len && write(fd, data, len) != (ssize_t)len) || close(fd) != 0)
        die(path, NULL);
}

static uint8_t *read_file(const char *dir, const char *name, size_t *len)
{
    char path[160];
    snprintf(path, sizeof path, "%s/%s/%s", root, dir, name);
    FILE *f = fopen(path, "rb");
    uint8_t *buf = malloc(1 << 16);
    if (!f || !buf)
        die(path, NULL);
    *len = fread(buf, 1, 1 << 16, f);
    fclose(f);
    return buf;
}

static void remove_root(void)
{
    static const char *const dirs[] = {"in", "out", "seed"};
    static const char *const files[] = {"adapter_config.json", "adapter_model.safetensors"};
    char path[160];
    for (size_t d = 0; d < 3; d++) {
        for (size_t f = 0; f < 2; f++) {
            snprintf(path, sizeof path, "%s/%s/%s", root, dirs[d], files[f]);
            unlink(path);
        }
        snprintf(path, sizeof path, "%s/%s", root, dirs[d]);
        rmdir(path);
    }
    rmdir(root);
}

static void setup(void)
{
    /* tmpfs when there is one: fsync is free there, so each exec costs CPU, not disk waits. */
    snprintf(root, sizeof root, "%s/ragd-fuzz-adapter-XXXXXX", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(root) || (root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        die("temporary directory", NULL);
    atexit(remove_root);
    static const char *const dirs[] = {"in", "out", "seed"};
    for (size_t d = 0; d < 3; d++) {
        char path[160];
        snprintf(path, sizeof path, "%s/%s", root, dirs[d]);
        if (mkdir(path, 0755) != 0)
            die(path, NULL);
    }
    /* The default tensors: a LoRA of r 2 on attn.c_attn, with weights that are not all zero. */
    adp_config cfg = {.type = ADP_LORA, .r = 2, .lora_alpha = 4, .targets = ADP_MODULE_BIT(ADP_ATTN_C_ATTN)};
    adp_adapter *a;
    mdl_error err;
    char path[160];
    snprintf(path, sizeof path, "%s/seed", root);
    if (adp_create(&base, &cfg, &a, &err) != 0)
        die("adp_create", &err);
    for (size_t i = 0; i < a->n_weights; i++)
        a->weights[i] = (float)((int)(i % 7) - 3) / 8.0f;
    if (adp_save(a, path, NULL, &err) != 0)
        die("adp_save", &err);
    adp_free(a);
    default_st = read_file("seed", "adapter_model.safetensors", &default_st_len);
}

/* The adapter at relpath in the root, saved from `a`, loads back as the same adapter. */
static void check_round_trip(const adp_adapter *a)
{
    char dir[160];
    snprintf(dir, sizeof dir, "%s/out", root);
    mdl_error err;
    if (adp_save(a, dir, NULL, &err) != 0)
        die("adp_save of a loaded adapter", &err);
    adp_adapter *b;
    if (adp_load(root_fd, "out", &base, &b, &err) != 0)
        die("an adapter saved after loading does not load again", &err);
    if (b->cfg.type != a->cfg.type || b->cfg.r != a->cfg.r || b->cfg.targets != a->cfg.targets ||
        b->cfg.num_virtual_tokens != a->cfg.num_virtual_tokens || b->cfg.use_rslora != a->cfg.use_rslora ||
        b->cfg.lora_alpha != a->cfg.lora_alpha)
        die("the reloaded adapter's config differs", NULL);
    for (size_t l = 0; l < base.n_layer; l++)
        for (int mod = 0; mod < ADP_N_MODULES; mod++) {
            const adp_lora *x = adp_lora_at(a, l, (adp_module)mod), *y = adp_lora_at(b, l, (adp_module)mod);
            if (!x != !y || (x && (x->r != y->r || x->scaling != y->scaling ||
                                   memcmp(x->A, y->A, x->r * x->in * sizeof(float)) ||
                                   memcmp(x->B, y->B, x->out * x->r * sizeof(float)))))
                die("the reloaded adapter adapts other modules or holds other weights", NULL);
        }
    if (a->prompt && memcmp(a->prompt, b->prompt,
                            a->cfg.num_virtual_tokens * a->n_embd *
                                (a->cfg.type == ADP_PREFIX_TUNING ? 2 * a->n_layer : 1) * sizeof(float)))
        die("the reloaded prompt differs", NULL);
    adp_free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (root_fd < 0)
        setup();
    const uint8_t *nul = memchr(data, 0, size);
    size_t cfg_len = nul ? (size_t)(nul - data) : size;
    write_file("in", "adapter_config.json", data, cfg_len);
    if (nul)
        write_file("in", "adapter_model.safetensors", nul + 1, size - cfg_len - 1);
    else
        write_file("in", "adapter_model.safetensors", default_st, default_st_len);
    adp_adapter *a;
    mdl_error err = {0};
    int rc = adp_load(root_fd, "in", &base, &a, &err);
    if (rc != 0) {
        if ((rc != MDL_EFORMAT && rc != MDL_EIO && rc != MDL_ENOMEM) || err.code != rc || !err.msg[0])
            die("a refusal without a documented code and a reason", &err);
        return 0;
    }
    if (adp_check_base(a, &base, &err) != 0)
        die("a loaded adapter does not fit its base", &err);
    if (a->cfg.type == ADP_LORA ? !a->cfg.r || !a->cfg.targets || !adp_max_rank(a)
                                : !a->cfg.num_virtual_tokens || adp_virtual_tokens(a) != a->cfg.num_virtual_tokens)
        die("a loaded adapter adapts nothing", NULL);
    for (size_t i = 0; i < a->n_weights; i++)
        if (!isfinite(a->weights[i]))
            die("a loaded adapter holds a non-finite weight", NULL);
    check_round_trip(a);
    adp_free(a);
    return 0;
}
