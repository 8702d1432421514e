/*
 * safetensors.h — reading (and writing) safetensors checkpoints, treating every file as
 * hostile (shared/spec/FORMATS.md §1).
 *
 * A file is read whole into a private buffer (never mmapped), so a file that changes or
 * shrinks while loaded cannot fault us. Every check of §1.4 is enforced before any tensor
 * is handed out: header size and overflow, UTF-8 JSON object, string-only __metadata__,
 * known dtypes, non-negative shapes whose byte size does not overflow, data_offsets that
 * tile the data buffer exactly (no holes, overlaps or trailing bytes), no duplicate names.
 * Errors name the file and the tensor.
 */
#ifndef RAGD_SAFETENSORS_H
#define RAGD_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "model_error.h"

#define SFT_MAX_RANK 8
#define SFT_MAX_HEADER (100u * 1000u * 1000u) /* the reference reader's MAX_HEADER_SIZE */

typedef enum {
    SFT_BOOL, SFT_F4, SFT_F6_E2M3, SFT_F6_E3M2, SFT_U8, SFT_I8, SFT_F8_E5M2, SFT_F8_E4M3,
    SFT_F8_E8M0, SFT_F8_E4M3FNUZ, SFT_F8_E5M2FNUZ, SFT_I16, SFT_U16, SFT_F16, SFT_BF16, SFT_I32,
    SFT_U32, SFT_F32, SFT_C64, SFT_F64, SFT_I64, SFT_U64, SFT_N_DTYPES
} sft_dtype;

typedef struct {
    const char *name;
    sft_dtype dtype;
    size_t rank;
    uint64_t shape[SFT_MAX_RANK];
    uint64_t numel;
    const uint8_t *data; /* inside the owning file's buffer; not aligned */
    uint64_t offset;     /* of data within the file's data buffer */
    uint64_t nbytes;
    const char *file;    /* the file it came from, for messages */
} sft_tensor;

/* A set of tensors from one file or from the shards of an index. Read-only once opened. */
typedef struct sft_set sft_set;

/* Parses and validates an in-memory file image (the fuzz entry point). On success *out owns
 * a copy of nothing: it points into `buf`, which must outlive it. `label` names the source in
 * errors. */
int sft_parse(const uint8_t *buf, size_t len, const char *label, sft_set **out, mdl_error *err);

/* Opens `dir/NAME.safetensors`, or the shards listed by `dir/NAME.safetensors.index.json`.
 * `name` is e.g. "model" or "adapter_model". */
int sft_open_dir(const char *dir, const char *name, sft_set **out, mdl_error *err);
/* Opens one file. */
int sft_open_file(const char *path, sft_set **out, mdl_error *err);
/* Reads the open regular file fd (at most `max` bytes) into a fresh NUL-terminated buffer,
 * then closes fd. `label` names the file in errors. */
int sft_read_fd(int fd, const char *label, size_t max, uint8_t **out, size_t *len, mdl_error *err);
void sft_close(sft_set *s); /* accepts NULL */

size_t sft_count(const sft_set *s);
const sft_tensor *sft_at(const sft_set *s, size_t i);
const sft_tensor *sft_find(const sft_set *s, const char *name);
/* The value of __metadata__[key] in the (first) file, or NULL. */
const char *sft_metadata(const sft_set *s, const char *key);

const char *sft_dtype_name(sft_dtype d);
/* Widens an F32, F16 or BF16 tensor into dst (n = numel floats). Other dtypes: MDL_EFORMAT. */
int sft_to_f32(const sft_tensor *t, float *dst, mdl_error *err);

/* Finds `name`, or else `prefix` + `name` (checkpoints saved from a model with a head carry
 * its base-model prefix, e.g. "bert." or "transformer."), checks that its shape is [d0]
 * (d1 == 0) or [d0, d1], and widens it into dst. MDL_EFORMAT naming the tensor otherwise. */
int sft_load_f32(const sft_set *s, const char *prefix, const char *name, size_t d0, size_t d1, float *dst,
                 mdl_error *err);

/* One tensor to write: F32 data of `numel` floats with the given shape. */
typedef struct {
    const char *name;
    size_t rank;
    uint64_t shape[SFT_MAX_RANK];
    const float *data;
} sft_write_tensor;

/* Writes an F32 safetensors file the way the reference writer does (sorted by name, compact
 * header padded with spaces to 8 bytes, __metadata__ {"format":"pt"} first), then fsyncs it.
 * The caller makes it visible atomically (write to a temp path, then rename). */
int sft_write_file(const char *path, const sft_write_tensor *t, size_t n, mdl_error *err);

#endif
