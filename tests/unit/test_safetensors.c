/* test_safetensors.c — the safetensors reader against hostile files (RELIABILITY.md,
 * "safetensors"), the writer round trip, dtype widening, and the real checkpoint. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cu.h"
#include "safetensors.h"

/* Builds a file image: 8-byte little-endian N, the header, then `data_len` bytes. */
static uint8_t *image(const char *header, uint64_t n_override, size_t data_len, size_t *len)
{
    size_t hl = strlen(header);
    *len = 8 + hl + data_len;
    uint8_t *b = calloc(1, *len);
    uint64_t n = n_override ? n_override : hl;
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(n >> (8 * i));
    memcpy(b + 8, header, hl);
    for (size_t i = 0; i < data_len; i++)
        b[8 + hl + i] = (uint8_t)i;
    return b;
}

/* Each header, the data bytes after it, and a fragment the error must contain (NULL: valid). */
static const struct {
    const char *header;
    size_t data;
    uint64_t n; /* header length override, 0 = the real length */
    const char *err;
} cases[] = {
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0, NULL},
    {"{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F16\",\"shape\":[2,1],\"data_offsets\":[0,4]}}  ", 4, 0, NULL},
    {" \n{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4, 0, NULL},
    {"{\"z\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[0,0]},\"a\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, 0, NULL},
    {"{}", 0, 0, NULL},
    {"{}", 0, 1000, "past the end"},
    {"{}", 0, 0xFFFFFFFFFFFFFFFFull, "over the"},
    {"{}", 0, 100000001, "over the"},
    {"[]", 0, 0, "not a JSON object"},
    {"{\"a\":1}", 0, 0, "not an object"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8, 0, "not valid JSON"},
    {"{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0, "needs string dtype"},
    {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, 0, "needs string dtype"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, 0, "needs string dtype"},
    {"{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0, "unknown dtype"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, 0, "non-negative"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8, 0, "non-negative"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8, 0, "overflows"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, 0, "2 elements"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4,8]}}", 8, 0, "2 elements"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8, 0, "non-negative"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, 0, "end 0 < begin 8"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}}", 8, 0, "need 8"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, 0, "past the data"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12, 0, "trailing bytes"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, 0, "a hole"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, 0, "overlaps"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16, 0, "not valid JSON"},
    {"{\"__metadata__\":{\"format\":1}}", 0, 0, "not a string"},
    {"{\"__metadata__\":[]}", 0, 0, "not an object"},
    {"{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,1]}}", 1, 0, "whole number of bytes"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, 0, "rank"},
    {"{\"\xff\":{}}", 0, 0, "not valid JSON"},
};

static void test_hostile_headers(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len;
        uint8_t *b = image(cases[i].header, cases[i].n, cases[i].data, &len);
        sft_set *s;
        mdl_error err = {0};
        int rc = sft_parse(b, len, "case", &s, &err);
        int ok = cases[i].err ? rc == MDL_EFORMAT && strstr(err.msg, cases[i].err) : rc == 0;
        if (!ok)
            fprintf(stderr, "case %zu: rc %d msg '%s' (want %s)\n", i, rc, err.msg,
                    cases[i].err ? cases[i].err : "success");
        CU_ASSERT(ok);
        CU_ASSERT(rc == 0 ? s != NULL : s == NULL);
        sft_close(s);
        free(b);
    }
    sft_set *s;
    mdl_error err;
    CU_ASSERT_EQUAL(sft_parse((const uint8_t *)"1234567", 7, "short", &s, &err), MDL_EFORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "too short"));
}

static void test_values_and_widening(void)
{
    /* F32 [1.5, -2], F16 [1, -0.5, 65504, 2^-24], BF16 [3.0] */
    static const char header[] =
        "{\"f\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"h\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[8,16]},"
        "\"b\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[16,18]},"
        "\"i\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[18,26]}}";
    size_t len;
    uint8_t *b = image(header, 0, 26, &len);
    uint8_t *d = b + 8 + strlen(header);
    float f[2] = {1.5f, -2.0f};
    memcpy(d, f, 8);
    const uint16_t h[4] = {0x3C00, 0xB800, 0x7BFF, 0x0001};
    for (int i = 0; i < 4; i++) {
        d[8 + 2 * i] = (uint8_t)(h[i] & 0xff);
        d[9 + 2 * i] = (uint8_t)(h[i] >> 8);
    }
    d[16] = 0x40; /* 3.0f = 0x40400000 -> bf16 0x4040 */
    d[17] = 0x40;
    sft_set *s;
    mdl_error err;
    CU_ASSERT_EQUAL_FATAL(sft_parse(b, len, "mem", &s, &err), 0);
    CU_ASSERT_EQUAL(sft_count(s), 4);
    float out[4];
    CU_ASSERT_EQUAL(sft_to_f32(sft_find(s, "f"), out, &err), 0);
    CU_ASSERT(out[0] == 1.5f && out[1] == -2.0f);
    CU_ASSERT_EQUAL(sft_to_f32(sft_find(s, "h"), out, &err), 0);
    CU_ASSERT(out[0] == 1.0f && out[1] == -0.5f && out[2] == 65504.0f && out[3] == ldexpf(1.0f, -24));
    CU_ASSERT_EQUAL(sft_to_f32(sft_find(s, "b"), out, &err), 0);
    CU_ASSERT(out[0] == 3.0f);
    CU_ASSERT_EQUAL(sft_to_f32(sft_find(s, "i"), out, &err), MDL_EFORMAT);
    CU_ASSERT_PTR_NULL(sft_find(s, "missing"));
    sft_close(s);
    free(b);
}

static void test_truncated_everywhere(void)
{
    static const char header[] = "{\"__metadata__\":{\"format\":\"pt\"},"
                                 "\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}";
    size_t len;
    uint8_t *full = image(header, 0, 24, &len);
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *b = malloc(cut ? cut : 1);
        memcpy(b, full, cut);
        sft_set *s;
        mdl_error err;
        CU_ASSERT_EQUAL(sft_parse(b, cut, "cut", &s, &err), MDL_EFORMAT);
        CU_ASSERT_PTR_NULL(s);
        free(b);
    }
    free(full);
}

static void test_write_read_round_trip(void)
{
    char dir[] = "/tmp/ragd-sft-XXXXXX";
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    float a[6] = {1, 2, 3, 4, 5, 6}, z[1] = {-7};
    sft_write_tensor t[2] = {{"zeta", 1, {1}, z}, {"alpha.weight", 2, {2, 3}, a}};
    mdl_error err;
    CU_ASSERT_EQUAL_FATAL(sft_write_file(path, t, 2, &err), 0);
    sft_set *s;
    CU_ASSERT_EQUAL_FATAL(sft_open_dir(dir, "adapter_model", &s, &err), 0);
    CU_ASSERT_STRING_EQUAL(sft_metadata(s, "format"), "pt");
    const sft_tensor *w = sft_find(s, "alpha.weight");
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    CU_ASSERT(w->rank == 2 && w->shape[0] == 2 && w->shape[1] == 3 && w->offset == 0);
    float back[6];
    sft_to_f32(w, back, &err);
    CU_ASSERT(memcmp(back, a, sizeof a) == 0);
    CU_ASSERT_EQUAL(sft_find(s, "zeta")->offset, 24); /* sorted by name */
    FILE *f = fopen(path, "rb");
    uint8_t n8[8];
    CU_ASSERT_EQUAL(fread(n8, 1, 8, f), 8);
    fclose(f);
    CU_ASSERT_EQUAL(n8[0] % 8, 0); /* the header is padded so the data starts 8-aligned */
    sft_close(s);
    CU_ASSERT_EQUAL(sft_open_dir(dir, "model", &s, &err), MDL_EIO);
    unlink(path);
    rmdir(dir);
}

static void test_sharded_index(void)
{
    char dir[] = "/tmp/ragd-sft-XXXXXX";
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    char p1[128], p2[128], idx[128];
    snprintf(p1, sizeof p1, "%s/model-00001-of-00002.safetensors", dir);
    snprintf(p2, sizeof p2, "%s/model-00002-of-00002.safetensors", dir);
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", dir);
    float a[2] = {1, 2}, b[3] = {3, 4, 5};
    sft_write_tensor ta = {"a", 1, {2}, a}, tb = {"b", 1, {3}, b};
    mdl_error err;
    CU_ASSERT_EQUAL_FATAL(sft_write_file(p1, &ta, 1, &err), 0);
    CU_ASSERT_EQUAL_FATAL(sft_write_file(p2, &tb, 1, &err), 0);
    static const struct {
        const char *json;
        int rc;
    } idx_cases[] = {
        {"{\"metadata\":{\"total_size\":20},\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\","
         "\"b\":\"model-00002-of-00002.safetensors\"}}", 0},
        {"{\"weight_map\":{\"a\":\"model-00002-of-00002.safetensors\"}}", MDL_EFORMAT},
        {"{\"weight_map\":{\"a\":\"../model-00001-of-00002.safetensors\"}}", MDL_EFORMAT},
        {"{\"weight_map\":{\"a\":\"missing.safetensors\"}}", MDL_EIO},
        {"{\"weight_map\":[]}", MDL_EFORMAT},
        {"{\"weight_map\":", MDL_EFORMAT},
    };
    for (size_t i = 0; i < sizeof idx_cases / sizeof idx_cases[0]; i++) {
        FILE *f = fopen(idx, "w");
        fputs(idx_cases[i].json, f);
        fclose(f);
        sft_set *s;
        int rc = sft_open_dir(dir, "model", &s, &err);
        if (rc != idx_cases[i].rc)
            fprintf(stderr, "index case %zu: rc %d (%s)\n", i, rc, err.msg);
        CU_ASSERT_EQUAL(rc, idx_cases[i].rc);
        if (rc == 0) {
            CU_ASSERT_EQUAL(sft_count(s), 2);
            CU_ASSERT_EQUAL(sft_find(s, "b")->shape[0], 3);
        }
        sft_close(s);
    }
    unlink(p1);
    unlink(p2);
    unlink(idx);
    rmdir(dir);
}

static void test_real_checkpoint(void)
{
    const char *dir = cu_testdata("checkpoints/gpt2-names-makemore");
    if (!dir) {
        printf("skipped: ../shared/testdata not found\n");
        return;
    }
    sft_set *s;
    mdl_error err;
    CU_ASSERT_EQUAL_FATAL(sft_open_dir(dir, "model", &s, &err), 0);
    const sft_tensor *wte = sft_find(s, "transformer.wte.weight");
    if (!wte)
        wte = sft_find(s, "wte.weight");
    CU_ASSERT_PTR_NOT_NULL_FATAL(wte);
    CU_ASSERT(wte->rank == 2 && wte->shape[0] == 27 && wte->shape[1] == 64);
    CU_ASSERT_PTR_NOT_NULL(sft_find(s, "lm_head.weight"));
    sft_close(s);
}

void cu_register(void)
{
    CU_pSuite s = CU_add_suite("safetensors", NULL, NULL);
    CU_add_test(s, "hostile headers", test_hostile_headers);
    CU_add_test(s, "values and dtype widening", test_values_and_widening);
    CU_add_test(s, "truncated at every byte", test_truncated_everywhere);
    CU_add_test(s, "write then read", test_write_read_round_trip);
    CU_add_test(s, "sharded index", test_sharded_index);
    CU_add_test(s, "real checkpoint", test_real_checkpoint);
}
