/* test_upsert_scan.c — the fast path of an upsert body (handlers/upsert_scan.c): its exact
 * decimals at double precision against strtod, bit for bit, on edge cases at the limits of
 * Clinger's fast path and on random decimals; and which bodies the scanner takes and which
 * it leaves to the JSON tree. it_search checks the same end to end at float32 precision. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cu.h"
#include "upsert_scan.h"

/* ---- ups_exact_decimal ---- */

/* 1 when ups_exact_decimal takes `text`, 0 when it declines. A value that is not exactly
 * strtod's double (sign of zero included) counts in *wrong, the first few printed. */
static int check_decimal(const char *text, long *wrong)
{
    double want = strtod(text, NULL), got = 0;
    if (!ups_exact_decimal(text, text + strlen(text), &got))
        return 0;
    if (memcmp(&got, &want, sizeof got) != 0 && (*wrong)++ < 5)
        printf("\n  %s: fast path %.17g, strtod %.17g\n", text, got, want);
    return 1;
}

/* Inputs and whether the fast path must take them (1) or must leave them to strtod (0). */
static const struct {
    const char *text;
    int fast;
} decimals[] = {
    {"0.5", 1},
    {"0.1", 1},
    {"0.3", 1},
    {"-2.75", 1},
    {"1e-0", 1},
    {"1E+0", 1},
    {"1.0e0", 1},
    {"0.1e1", 1},
    {"-0.0", 1},
    {"-0e5", 1},
    {"0.0e-21", 1},                       /* 0 * 10^-22 */
    {"0.000123", 1},
    {"0.0000000000000000001", 1},          /* 1e-19 */
    {"1e22", 1},                           /* 10^22: the largest exact power of ten */
    {"1e-22", 1},
    {"-1e22", 1},
    {"1.5e22", 1},                         /* 15 * 10^21 */
    {"12345e18", 1},
    {"9007199254740992e0", 1},             /* 2^53 */
    {"9007199254740992e22", 1},
    {"9007199254740992e-22", 1},
    {"0.9007199254740991", 1},
    {"1e0000000000000000000022", 1},       /* leading zeros of an exponent */
    {"0000000000000000000000001.5", 1},    /* leading zeros of the digits are not significant */
    {"1e23", 0},                           /* 10^23 is not a double */
    {"1e-23", 0},
    {"3e23", 0},
    {"0.00000000000000000000001", 0},      /* 1e-23 written out */
    {"0.00000000000000000000000", 0},      /* zero, but 23 places down */
    {"9007199254740993e0", 0},             /* 2^53 + 1 is no double */
    {"9007199254740993.0", 0},
    {"9007199254740991.0", 0},             /* a trailing zero is a digit: 10 * (2^53 - 1) */
    {"4503599627370497.5", 0},             /* 45035996273704975 > 2^53 */
    {"0.30000000000000004", 0},            /* 17 digits above 2^53 */
    {"1.2345678901234567890", 0},          /* 20 significant digits */
    {"12345678901234567890123e-10", 0},
    {"1.7976931348623157e308", 0},
    {"4.9406564584124654e-324", 0},
    {"5e-324", 0},
    {"1e400", 0},
    {"1e-400", 0},
    {"1e99999999999999999999", 0},         /* an exponent that overflows an int */
    {"1e-99999999999999999999", 0},
    {"123456789012345678e4", 0},
};

static void test_edge_cases(void)
{
    long wrong = 0;
    for (size_t i = 0; i < sizeof decimals / sizeof decimals[0]; i++) {
        int fast = check_decimal(decimals[i].text, &wrong);
        if (fast != decimals[i].fast)
            printf("\n  %s: %s\n", decimals[i].text, fast ? "taken, must be declined" : "declined, must be taken");
        CU_ASSERT_EQUAL(fast, decimals[i].fast);
    }
    CU_ASSERT_EQUAL(wrong, 0);
    const char *negative_zero = "-0.0";
    double z = 1;
    CU_ASSERT_TRUE(ups_exact_decimal(negative_zero, negative_zero + 4, &z) && z == 0 && signbit(z));
    /* The token ends where the caller says, not at the NUL. */
    const char *two = "2.5,9";
    CU_ASSERT_TRUE(ups_exact_decimal(two, two + 3, &z) && z == 2.5);
}

static uint64_t next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* A random decimal: up to 25 digits (with leading zeros at times) around a point, and an
 * exponent in [-40, 40] or none. Sets *short_enough when it has at most 15 significant
 * digits and a power of ten in [-22, 22], which the fast path must take. */
static void random_decimal(uint64_t *s, char *out, size_t cap, int *short_enough)
{
    char digits[32];
    int n = 1 + (int)(next(s) % 25), lead = next(s) % 4 == 0 ? (int)(next(s) % 6) : 0;
    for (int i = 0; i < n; i++)
        digits[i] = i < lead ? '0' : (char)('0' + next(s) % 10);
    digits[n] = '\0';
    int point = (int)(next(s) % (unsigned)(n + 1)); /* digits before the point */
    int exp = next(s) % 3 ? (int)(next(s) % 81) - 40 : 0, has_exp = exp != 0 || next(s) % 2;
    int len = snprintf(out, cap, "%s%.*s%s%s", next(s) % 2 ? "-" : "", point ? point : 1, point ? digits : "0",
                       point < n ? "." : "", digits + point);
    if (has_exp)
        snprintf(out + len, cap - (size_t)len, "%c%+d", next(s) % 2 ? 'e' : 'E', exp);
    int first = 0;
    while (first < n && digits[first] == '0')
        first++;
    int significant = first < n ? n - first : 0;
    int power = exp - (n - point); /* the value is digits * 10^power */
    *short_enough = significant <= 15 && power >= -22 && power <= 22;
}

static void test_random_decimals(void)
{
    uint64_t s = 0x9E3779B97F4A7C15ull;
    char text[80];
    long taken = 0, declined = 0, missed = 0, wrong = 0;
    for (int i = 0; i < 300000; i++) {
        int must;
        random_decimal(&s, text, sizeof text, &must);
        if (check_decimal(text, &wrong))
            taken++;
        else if (declined++, must && missed++ < 5)
            printf("\n  %s: declined, must be taken\n", text);
    }
    /* Printed doubles, as clients send embeddings: %.1g to %.17g of values over 40 decades. */
    for (int i = 0; i < 300000; i++) {
        /* One draw per statement: the order of a call's arguments is the compiler's. */
        double v = ldexp((double)(next(&s) >> 11), -53);
        v *= pow(10, (double)(next(&s) % 41) - 20);
        int precision = (int)(next(&s) % 17);
        snprintf(text, sizeof text, "%.*e", precision, next(&s) % 2 ? -v : v);
        if (check_decimal(text, &wrong))
            taken++;
        else
            declined++;
    }
    printf("\n  %ld taken, %ld declined, %ld taken wrongly ", taken, declined, wrong);
    CU_ASSERT_EQUAL(wrong, 0);
    CU_ASSERT_EQUAL(missed, 0);
    /* A fast path that declined everything would pass the bitwise checks: it must not. */
    CU_ASSERT_TRUE(taken > 200000 && declined > 100000);
}

/* ---- ups_scan ---- */

static int scan(const char *body, int texts, unsigned dim, st_distance distance, st_doc **docs, float **vecs)
{
    st_collection c = {.dimension = dim, .distance = distance};
    size_t n;
    return ups_scan(body, strlen(body), texts ? "documents" : "points", texts, 4, &c, docs, vecs, &n) ? (int)n : -1;
}

static void test_scan_takes(void)
{
    const char *body = " {\"documents\" : [ {\"id\": 7, \"vector\": [0.1, -2e-3, 3]},\n"
                       "{\"text\": \"plain words\", \"vector\": [-0, 1E22, 0.30000000000000004], \"id\": \"a-b\"}] } ";
    st_doc *docs;
    float *vecs;
    CU_ASSERT_EQUAL_FATAL(scan(body, 1, 3, ST_L2, &docs, &vecs), 2);
    CU_ASSERT_FALSE(docs[0].id.is_string);
    CU_ASSERT_EQUAL(docs[0].id.num, 7);
    CU_ASSERT_PTR_NULL(docs[0].text);
    CU_ASSERT_TRUE(docs[1].id.is_string && docs[1].id.len == 3 && !memcmp(docs[1].id.str, "a-b", 3));
    CU_ASSERT_TRUE(docs[1].text_len == 11 && !memcmp(docs[1].text, "plain words", 11));
    const float want[] = {0.1f, -2e-3f, 3, 0, 1e22f, (float)0.30000000000000004};
    for (int k = 0; k < 6; k++)
        CU_ASSERT_EQUAL(docs[k / 3].vector[k % 3], want[k]);
    CU_ASSERT_PTR_EQUAL(docs[1].vector, vecs + 3);
    free(docs);
    free(vecs);
    /* Qdrant's shape, and a list longer than 64 (the first growth) under a larger cap. */
    st_collection c = {.dimension = 1, .distance = ST_COSINE};
    char big[8192];
    int len = snprintf(big, sizeof big, "{\"points\":[");
    for (int i = 0; i < 100; i++)
        len += snprintf(big + len, sizeof big - (size_t)len, "%s{\"id\":%d,\"vector\":[%d.5]}", i ? "," : "", i, i);
    snprintf(big + len, sizeof big - (size_t)len, "]}");
    size_t n;
    CU_ASSERT_EQUAL_FATAL(ups_scan(big, strlen(big), "points", 0, 100, &c, &docs, &vecs, &n), 1);
    CU_ASSERT_EQUAL(n, 100);
    CU_ASSERT_TRUE(docs[99].id.num == 99 && docs[99].vector[0] == 99.5f);
    free(docs);
    free(vecs);
    CU_ASSERT_EQUAL(ups_scan(big, strlen(big), "points", 0, 99, &c, &docs, &vecs, &n), 0);
}

/* Bodies the JSON tree must decode: every one would get an error there, or a value the
 * scanner does not read. */
static void test_scan_declines(void)
{
    static const char *const bodies[] = {
        "{\"documents\":[{\"id\":1,\"vector\":[1,2]}]}",                    /* wrong dimension */
        "{\"documents\":[{\"id\":1,\"vector\":[1,2,3,4]}]}",
        "{\"documents\":[{\"id\":1,\"vector\":[1,2,3]}],}",
        "{\"documents\":[{\"id\":1,\"vector\":[1,2,3]}]} x",
        "{\"documents\":[{\"id\":1,\"vector\":[1,2,3]}]",
        "{\"documents\":[]}",
        "{\"points\":[{\"id\":1,\"vector\":[1,2,3]}]}",                     /* the other shape */
        "{\"documents\":[{\"id\":1,\"id\":2,\"vector\":[1,2,3]}]}",         /* a repeated key */
        "{\"documents\":[{\"id\":1,\"vector\":[1,2,3],\"metadata\":{}}]}",
        "{\"documents\":[{\"id\":1.5,\"vector\":[1,2,3]}]}",
        "{\"documents\":[{\"id\":9223372036854775808,\"vector\":[1,2,3]}]}",
        "{\"documents\":[{\"id\":\"\",\"vector\":[1,2,3]}]}",
        "{\"documents\":[{\"id\":\"a\\\"b\",\"vector\":[1,2,3]}]}",         /* an escape */
        "{\"documents\":[{\"id\":1,\"text\":\"caf\xc3\xa9\",\"vector\":[1,2,3]}]}",
        "{\"documents\":[{\"id\":1,\"text\":null,\"vector\":[1,2,3]}]}",
        "{\"documents\":[{\"id\":1}]}",
        "{\"documents\":[{\"vector\":[1,2,3]}]}",
        "{\"documents\":[{\"id\":1,\"vector\":[01,2,3]}]}",                 /* not JSON numbers */
        "{\"documents\":[{\"id\":1,\"vector\":[1.,2,3]}]}",
        "{\"documents\":[{\"id\":1,\"vector\":[.5,2,3]}]}",
        "{\"documents\":[{\"id\":1,\"vector\":[+1,2,3]}]}",
        "{\"documents\":[{\"id\":1,\"vector\":[1e,2,3]}]}",
        "{\"documents\":[{\"id\":1,\"vector\":[0x10,2,3]}]}",
        "{\"documents\":[{\"id\":1,\"vector\":[NaN,2,3]}]}",
        "{\"documents\":[{\"id\":1,\"vector\":[1e39,2,3]}]}",              /* not a finite float32 */
        "{\"documents\":[{\"id\":1,\"vector\":[1e309,2,3]}]}",
        "{\"documents\":[{\"id\":1,\"vector\":[9223372036854775808,2,3]}]}",
        "{\"documents\":[{\"id\":1,\"vector\":[0,0.0,-0e3]}]}",             /* zero under cosine */
        ("{\"documents\":[{\"id\":1,\"vector\":[1,2,3]},{\"id\":2,\"vector\":[1,2,3]},"
         "{\"id\":3,\"vector\":[1,2,3]},{\"id\":4,\"vector\":[1,2,3]},{\"id\":5,\"vector\":[1,2,3]}]}"), /* over 4 */
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        st_doc *docs = (st_doc *)1;
        float *vecs = (float *)1;
        int n = scan(bodies[i], 1, 3, ST_COSINE, &docs, &vecs);
        if (n != -1)
            printf("\n  taken: %s\n", bodies[i]);
        CU_ASSERT_TRUE(n == -1 && !docs && !vecs);
    }
}

void cu_register(void)
{
    CU_pSuite s = CU_add_suite("upsert_scan", NULL, NULL);
    CU_add_test(s, "exact decimals at the fast path's limits", test_edge_cases);
    CU_add_test(s, "600000 random decimals: taken exactly or declined", test_random_decimals);
    CU_add_test(s, "bodies the scanner takes, both shapes", test_scan_takes);
    CU_add_test(s, "bodies left to the JSON tree", test_scan_declines);
}
