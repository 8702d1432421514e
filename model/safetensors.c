#include "json_watch.h"
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model_config.h"

#define MAX_FILE_BYTES (64ull << 30) /* refuse anything larger than any model we serve */
#define MAX_SHARDS 512

static const struct {
    const char *name;
    unsigned bits;
} dtypes[SFT_N_DTYPES] = {
    [SFT_BOOL] = {"BOOL", 8},       [SFT_F4] = {"F4", 4},
    [SFT_F6_E2M3] = {"F6_E2M3", 6}, [SFT_F6_E3M2] = {"F6_E3M2", 6},
    [SFT_U8] = {"U8", 8},           [SFT_I8] = {"I8", 8},
    [SFT_F8_E5M2] = {"F8_E5M2", 8}, [SFT_F8_E4M3] = {"F8_E4M3", 8},
    [SFT_F8_E8M0] = {"F8_E8M0", 8}, [SFT_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 8},
    [SFT_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 8},
    [SFT_I16] = {"I16", 16},        [SFT_U16] = {"U16", 16},
    [SFT_F16] = {"F16", 16},        [SFT_BF16] = {"BF16", 16},
    [SFT_I32] = {"I32", 32},        [SFT_U32] = {"U32", 32},
    [SFT_F32] = {"F32", 32},        [SFT_C64] = {"C64", 64},
    [SFT_F64] = {"F64", 64},        [SFT_I64] = {"I64", 64},
    [SFT_U64] = {"U64", 64},
};

/* One parsed file: the buffer it was read into (owned unless borrowed) and its header. */
typedef struct {
    uint8_t *owned;
    json_t *header;
    char *label;
} sft_file;

struct sft_set {
    sft_file *files;
    size_t n_files;
    sft_tensor *tensors;
    size_t n, cap;
};

const char *sft_dtype_name(sft_dtype d) { return (unsigned)d < SFT_N_DTYPES ? dtypes[d].name : "?"; }

static int dtype_from_name(const char *s)
{
    for (int i = 0; i < SFT_N_DTYPES; i++)
        if (strcmp(s, dtypes[i].name) == 0)
            return i;
    return -1;
}

void sft_close(sft_set *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_files; i++) {
        free(s->files[i].owned);
        json_decref(s->files[i].header);
        free(s->files[i].label);
    }
    free(s->files);
    free(s->tensors);
    free(s);
}

size_t sft_count(const sft_set *s) { return s->n; }
const sft_tensor *sft_at(const sft_set *s, size_t i) { return i < s->n ? &s->tensors[i] : NULL; }

const sft_tensor *sft_find(const sft_set *s, const char *name)
{
    /* Checkpoints hold at most a few hundred tensors, and lookups happen at load time only. */
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->tensors[i].name, name) == 0)
            return &s->tensors[i];
    return NULL;
}

const char *sft_metadata(const sft_set *s, const char *key)
{
    if (!s->n_files)
        return NULL;
    return json_string_value(json_object_get(json_object_get(s->files[0].header, "__metadata__"), key));
}

static int cmp_offset(const void *a, const void *b)
{
    const sft_tensor *x = a, *y = b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    return (x->nbytes > y->nbytes) - (x->nbytes < y->nbytes);
}

/* Reads a non-negative JSON integer. */
static int get_u64(json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* Validates one tensor entry; on success appends it to `set` (data is set by the caller
 * once the whole file is validated). */
static int add_entry(sft_set *set, const char *label, const char *name, json_t *e, mdl_error *err)
{
    if (!json_is_object(e))
        return mdl_fail(err, MDL_EFORMAT, "%s: tensor '%s': entry is not an object", label, name);
    json_t *jd = json_object_get(e, "dtype"), *js = json_object_get(e, "shape"),
           *jo = json_object_get(e, "data_offsets");
    if (!json_is_string(jd) || !json_is_array(js) || !json_is_array(jo))
        return mdl_fail(err, MDL_EFORMAT, "%s: tensor '%s': needs string dtype, array shape and array data_offsets",
                        label, name);
    int dt = dtype_from_name(json_string_value(jd));
    if (dt < 0)
        return mdl_fail(err, MDL_EFORMAT, "%s: tensor '%s': unknown dtype '%.32s'", label, name,
                        json_string_value(jd));
    if (json_array_size(js) > SFT_MAX_RANK)
        return mdl_fail(err, MDL_EFORMAT, "%s: tensor '%s': rank %zu is over %d", label, name,
                        json_array_size(js), SFT_MAX_RANK);
    if (json_array_size(jo) != 2)
        return mdl_fail(err, MDL_EFORMAT, "%s: tensor '%s': data_offsets must have 2 elements", label, name);
    sft_tensor t = {.name = name, .dtype = (sft_dtype)dt, .rank = json_array_size(js), .numel = 1};
    for (size_t i = 0; i < t.rank; i++) {
        if (get_u64(json_array_get(js, i), &t.shape[i]) != 0)
            return mdl_fail(err, MDL_EFORMAT, "%s: tensor '%s': shape[%zu] is not a non-negative integer",
                            label, name, i);
        if (__builtin_mul_overflow(t.numel, t.shape[i], &t.numel))
            return mdl_fail(err, MDL_EFORMAT, "%s: tensor '%s': shape overflows", label, name);
    }
    uint64_t bits, begin, end;
    if (__builtin_mul_overflow(t.numel, (uint64_t)dtypes[dt].bits, &bits))
        return mdl_fail(err, MDL_EFORMAT, "%s: tensor '%s': byte size overflows", label, name);
    if (bits % 8)
        return mdl_fail(err, MDL_EFORMAT, "%s: tensor '%s': size is not a whole number of bytes", label, name);
    if (get_u64(json_array_get(jo, 0), &begin) || get_u64(json_array_get(jo, 1), &end))
        return mdl_fail(err, MDL_EFORMAT, "%s: tensor '%s': data_offsets must be non-negative integers",
                        label, name);
    if (end < begin)
        return mdl_fail(err, MDL_EFORMAT, "%s: tensor '%s': data_offsets end %llu < begin %llu", label,
                        name, (unsigned long long)end, (unsigned long long)begin);
    if (end - begin != bits / 8)
        return mdl_fail(err, MDL_EFORMAT, "%s: tensor '%s': %llu bytes in data_offsets but shape and dtype need %llu",
                        label, name, (unsigned long long)(end - begin), (unsigned long long)(bits / 8));
    if (set->n == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 64;
        sft_tensor *p = realloc(set->tensors, cap * sizeof *p);
        if (!p)
            return mdl_fail(err, MDL_ENOMEM, "out of memory reading %s", label);
        set->tensors = p;
        set->cap = cap;
    }
    t.offset = begin;
    t.nbytes = end - begin;
    t.file = label;
    set->tensors[set->n++] = t;
    return 0;
}

/* Parses one file image into `set` (tensors appended). `label` must outlive the set. */
static int parse_into(sft_set *set, const uint8_t *buf, size_t len, const char *label, json_t **header_out,
                      mdl_error *err)
{
    if (len < 8)
        return mdl_fail(err, MDL_EFORMAT, "%s: %zu bytes is too short for a safetensors file", label, len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | buf[i];
    if (n > SFT_MAX_HEADER)
        return mdl_fail(err, MDL_EFORMAT, "%s: header length %llu is over the %u limit", label,
                        (unsigned long long)n, SFT_MAX_HEADER);
    if (n > len - 8)
        return mdl_fail(err, MDL_EFORMAT, "%s: header length %llu runs past the end of the file (%zu bytes)",
                        label, (unsigned long long)n, len);
    json_error_t je;
    int oom;
    json_t *h = jsonw_loadb((const char *)buf + 8, (size_t)n, JSON_REJECT_DUPLICATES, &je, &oom);
    if (oom)
        return mdl_fail(err, MDL_ENOMEM, "%s: out of memory for the header", label);
    if (!h)
        return mdl_fail(err, MDL_EFORMAT, "%s: header is not valid JSON (byte %d: %s)", label, je.position,
                        je.text);
    *header_out = h;
    if (!json_is_object(h))
        return mdl_fail(err, MDL_EFORMAT, "%s: header is not a JSON object", label);
    size_t first = set->n;
    const char *name;
    json_t *e;
    json_object_foreach(h, name, e) {
        if (strcmp(name, "__metadata__") == 0) {
            if (!json_is_object(e))
                return mdl_fail(err, MDL_EFORMAT, "%s: __metadata__ is not an object", label);
            const char *k;
            json_t *v;
            json_object_foreach(e, k, v) {
                if (!json_is_string(v))
                    return mdl_fail(err, MDL_EFORMAT, "%s: __metadata__ value of '%.64s' is not a string",
                                    label, k);
            }
            continue;
        }
        if (add_entry(set, label, name, e, err) != 0)
            return err ? err->code : MDL_EFORMAT;
    }
    /* Sorted by offset, the entries must tile [0, data_len) exactly. */
    uint64_t data_len = len - 8 - n, pos = 0;
    size_t count = set->n - first;
    sft_tensor *t = count ? set->tensors + first : NULL;
    if (count)
        qsort(t, count, sizeof *t, cmp_offset);
    const uint8_t *data = buf + 8 + n;
    for (size_t i = 0; i < count; i++) {
        uint64_t begin = t[i].offset;
        if (begin != pos)
            return mdl_fail(err, MDL_EFORMAT, "%s: tensor '%s' starts at byte %llu; expected %llu (%s)", label,
                            t[i].name, (unsigned long long)begin, (unsigned long long)pos,
                            begin > pos ? "a hole before it" : "it overlaps the previous tensor");
        pos = begin + t[i].nbytes;
        if (pos > data_len)
            return mdl_fail(err, MDL_EFORMAT, "%s: tensor '%s' ends at byte %llu, past the data (%llu bytes)",
                            label, t[i].name, (unsigned long long)pos, (unsigned long long)data_len);
        t[i].data = data + begin;
    }
    if (pos != data_len)
        return mdl_fail(err, MDL_EFORMAT, "%s: tensors cover %llu of %llu data bytes (trailing bytes)", label,
                        (unsigned long long)pos, (unsigned long long)data_len);
    return 0;
}

static sft_file *add_file(sft_set *set, const char *label, mdl_error *err)
{
    sft_file *p = realloc(set->files, (set->n_files + 1) * sizeof *p);
    if (!p) {
        mdl_fail(err, MDL_ENOMEM, "out of memory");
        return NULL;
    }
    set->files = p;
    sft_file *f = &set->files[set->n_files];
    memset(f, 0, sizeof *f);
    f->label = strdup(label);
    if (!f->label) {
        mdl_fail(err, MDL_ENOMEM, "out of memory");
        return NULL;
    }
    set->n_files++;
    return f;
}

/* Parses `buf` as one more file of `set`; takes ownership of `owned` (may be NULL). */
static int add_image(sft_set *set, uint8_t *owned, const uint8_t *buf, size_t len, const char *label,
                     mdl_error *err)
{
    sft_file *f = add_file(set, label, err);
    if (!f) {
        free(owned);
        return MDL_ENOMEM;
    }
    f->owned = owned;
    return parse_into(set, buf, len, f->label, &f->header, err) == 0 ? 0 : (err ? err->code : MDL_EFORMAT);
}

/* Duplicate names across shards (within one file jansson already refused them). */
static int check_unique(const sft_set *set, mdl_error *err)
{
    for (size_t i = 0; i < set->n; i++)
        for (size_t j = i + 1; j < set->n; j++)
            if (strcmp(set->tensors[i].name, set->tensors[j].name) == 0)
                return mdl_fail(err, MDL_EFORMAT, "tensor '%s' appears in both %s and %s", set->tensors[i].name,
                                set->tensors[i].file, set->tensors[j].file);
    return 0;
}

int sft_parse(const uint8_t *buf, size_t len, const char *label, sft_set **out, mdl_error *err)
{
    *out = NULL;
    sft_set *set = calloc(1, sizeof *set);
    if (!set)
        return mdl_fail(err, MDL_ENOMEM, "out of memory");
    int rc = add_image(set, NULL, buf, len, label, err);
    if (rc != 0) {
        sft_close(set);
        return rc;
    }
    *out = set;
    return 0;
}

int sft_read_fd(int fd, const char *label, size_t max, uint8_t **out, size_t *len, mdl_error *err)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return mdl_fail(err, MDL_EIO, "%s: not a regular file", label);
    }
    if ((unsigned long long)st.st_size > max) {
        close(fd);
        return mdl_fail(err, MDL_EFORMAT, "%s: %lld bytes is over the limit of %zu", label, (long long)st.st_size, max);
    }
    size_t size = (size_t)st.st_size, got = 0;
    uint8_t *buf = malloc(size + 1);
    if (!buf) {
        close(fd);
        return mdl_fail(err, MDL_ENOMEM, "%s: out of memory for %zu bytes", label, size);
    }
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            free(buf);
            close(fd);
            return mdl_fail(err, MDL_EIO, "%s: read failed at byte %zu (the file changed?)", label, got);
        }
        got += (size_t)r;
    }
    close(fd);
    buf[size] = '\0';
    *out = buf;
    *len = size;
    return 0;
}

/* Reads a whole regular file into a fresh buffer. */
static int read_file(const char *path, uint8_t **out, size_t *len, mdl_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return mdl_fail(err, MDL_EIO, "%s: %s", path, strerror(errno));
    return sft_read_fd(fd, path, MAX_FILE_BYTES, out, len, err);
}

static int open_into(sft_set *set, const char *path, mdl_error *err)
{
    uint8_t *buf;
    size_t len;
    int rc = read_file(path, &buf, &len, err);
    return rc ? rc : add_image(set, buf, buf, len, path, err);
}

int sft_open_file(const char *path, sft_set **out, mdl_error *err)
{
    *out = NULL;
    sft_set *set = calloc(1, sizeof *set);
    if (!set)
        return mdl_fail(err, MDL_ENOMEM, "out of memory");
    int rc = open_into(set, path, err);
    if (rc != 0) {
        sft_close(set);
        return rc;
    }
    *out = set;
    return 0;
}

/* A shard name from an index must be a plain file name in the same directory. */
static int plain_name(const char *s)
{
    return *s && *s != '.' && !strchr(s, '/') && !strchr(s, '\\');
}

int sft_open_dir(const char *dir, const char *name, sft_set **out, mdl_error *err)
{
    *out = NULL;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s.safetensors", dir, name) >= (int)sizeof path)
        return mdl_fail(err, MDL_EIO, "%s: path too long", dir);
    if (access(path, F_OK) == 0)
        return sft_open_file(path, out, err);

    snprintf(path, sizeof path, "%s/%s.safetensors.index.json", dir, name);
    json_error_t je;
    json_t *index = jsonw_load_file(path, JSON_REJECT_DUPLICATES, &je, NULL);
    if (!index)
        return mdl_fail(err, access(path, F_OK) == 0 ? MDL_EFORMAT : MDL_EIO,
                        "%s: no %s.safetensors and no usable index (%s)", dir, name, je.text);
    json_t *map = json_object_get(index, "weight_map");
    sft_set *set = calloc(1, sizeof *set);
    int rc = 0;
    if (!set)
        rc = mdl_fail(err, MDL_ENOMEM, "out of memory");
    else if (!json_is_object(map))
        rc = mdl_fail(err, MDL_EFORMAT, "%s: weight_map is missing or not an object", path);
    /* Open each distinct shard once, in the order first named. */
    const char *tensor;
    json_t *shard;
    json_object_foreach(map, tensor, shard) {
        if (rc)
            break;
        if (!json_is_string(shard) || !plain_name(json_string_value(shard))) {
            rc = mdl_fail(err, MDL_EFORMAT, "%s: shard of '%s' is not a plain file name", path, tensor);
            break;
        }
        char spath[4096];
        snprintf(spath, sizeof spath, "%s/%s", dir, json_string_value(shard));
        int seen = 0;
        for (size_t i = 0; i < set->n_files && !seen; i++)
            seen = strcmp(set->files[i].label, spath) == 0;
        if (!seen && set->n_files == MAX_SHARDS)
            rc = mdl_fail(err, MDL_EFORMAT, "%s: more than %d shards", path, MAX_SHARDS);
        else if (!seen)
            rc = open_into(set, spath, err);
    }
    if (rc == 0)
        rc = check_unique(set, err);
    /* Every tensor the index names must be in the shard it names. */
    json_object_foreach(map, tensor, shard) {
        if (rc)
            break;
        const sft_tensor *t = sft_find(set, tensor);
        const char *want = json_string_value(shard);
        size_t dl = strlen(dir);
        if (!t || strcmp(t->file + dl + 1, want) != 0)
            rc = mdl_fail(err, MDL_EFORMAT, "%s: tensor '%s' is not in %s", path, tensor, want);
    }
    json_decref(index);
    if (rc) {
        sft_close(set);
        return rc;
    }
    *out = set;
    return 0;
}

static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalize */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) {
                man <<= 1;
                exp--;
            }
            bits = sign | exp << 23 | (man & 0x3ff) << 13;
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | man << 13;
    } else {
        bits = sign | (exp + 127 - 15) << 23 | man << 13;
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

int sft_to_f32(const sft_tensor *t, float *dst, mdl_error *err)
{
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case SFT_F32:
        memcpy(dst, p, t->numel * 4);
        return 0;
    case SFT_F16:
        for (uint64_t i = 0; i < t->numel; i++)
            dst[i] = f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        return 0;
    case SFT_BF16:
        for (uint64_t i = 0; i < t->numel; i++) {
            uint32_t bits = (uint32_t)(p[2 * i] | p[2 * i + 1] << 8) << 16;
            memcpy(&dst[i], &bits, sizeof bits);
        }
        return 0;
    default:
        return mdl_fail(err, MDL_EFORMAT, "%s: tensor '%s' is %s; expected F32, F16 or BF16", t->file,
                        t->name, sft_dtype_name(t->dtype));
    }
}

int sft_load_f32(const sft_set *s, const char *prefix, const char *name, size_t d0, size_t d1, float *dst,
                 mdl_error *err)
{
    const sft_tensor *t = sft_find(s, name);
    if (!t && prefix) {
        char alt[512];
        snprintf(alt, sizeof alt, "%s%s", prefix, name);
        t = sft_find(s, alt);
    }
    if (!t)
        return mdl_fail(err, MDL_EFORMAT, "the checkpoint has no tensor '%s'", name);
    int ok = d1 ? t->rank == 2 && t->shape[0] == d0 && t->shape[1] == d1 : t->rank == 1 && t->shape[0] == d0;
    if (!ok) {
        char want[64], got[128] = "";
        snprintf(want, sizeof want, d1 ? "[%zu, %zu]" : "[%zu]", d0, d1);
        for (size_t i = 0, n = 0; i < t->rank && n < sizeof got; i++)
            n += (size_t)snprintf(got + n, sizeof got - n, "%s%llu", i ? ", " : "", (unsigned long long)t->shape[i]);
        return mdl_fail(err, MDL_EFORMAT, "%s: tensor '%s' has shape [%s]; expected %s", t->file, t->name, got, want);
    }
    return sft_to_f32(t, dst, err);
}

static int cmp_write(const void *a, const void *b)
{
    return strcmp(((const sft_write_tensor *)a)->name, ((const sft_write_tensor *)b)->name);
}

static int write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

int sft_write_file(const char *path, const sft_write_tensor *tensors, size_t n, mdl_error *err)
{
    sft_write_tensor *t = malloc((n ? n : 1) * sizeof *t);
    json_t *h = json_object();
    if (!t || !h) {
        free(t);
        json_decref(h);
        return mdl_fail(err, MDL_ENOMEM, "out of memory");
    }
    memcpy(t, tensors, n * sizeof *t);
    qsort(t, n, sizeof *t, cmp_write);
    json_object_set_new(h, "__metadata__", json_pack("{s:s}", "format", "pt"));
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t numel = 1;
        json_t *shape = json_array();
        for (size_t k = 0; k < t[i].rank; k++) {
            numel *= t[i].shape[k];
            json_array_append_new(shape, json_integer((json_int_t)t[i].shape[k]));
        }
        json_object_set_new(h, t[i].name,
                            json_pack("{s:s, s:o, s:[I,I]}", "dtype", "F32", "shape", shape, "data_offsets",
                                      (json_int_t)off, (json_int_t)(off + numel * 4)));
        off += numel * 4;
    }
    /* JSON_PRESERVE_ORDER keeps __metadata__ first, as the reference writer does. */
    char *text = jsonw_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(h);
    if (!text) {
        free(t);
        return mdl_fail(err, MDL_ENOMEM, "out of memory");
    }
    size_t hl = strlen(text), padded = (hl + 7) / 8 * 8;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int rc = fd < 0 ? -1 : 0;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    if (!rc)
        rc = write_all(fd, len8, 8) || write_all(fd, text, hl) || write_all(fd, "        ", padded - hl);
    for (size_t i = 0; i < n && !rc; i++) {
        uint64_t numel = 1;
        for (size_t k = 0; k < t[i].rank; k++)
            numel *= t[i].shape[k];
        rc = write_all(fd, t[i].data, numel * 4);
    }
    if (!rc)
        rc = fsync(fd);
    int saved = errno;
    if (fd >= 0 && close(fd) != 0 && !rc)
        rc = -1, saved = errno;
    free(text);
    free(t);
    return rc ? mdl_fail(err, MDL_EIO, "%s: write failed: %s", path, strerror(saved)) : 0;
}
