/* fuzz_filter.c — Qdrant filter expressions (store/filter.c): compiled from arbitrary bytes,
 * then evaluated on a real store's documents inside a search. The input is the filter, then
 * optionally a NUL byte and one more metadata text that the filter is matched against on its
 * own (any bytes: metadata that is not JSON matches only conditionless filters).
 *   - a refusal is ST_ERR_INVALID with a JSON pointer ("" or starting with '/') and a reason;
 *   - an accepted filter F and {"must_not":[F]} disagree on every document;
 *   - an exact search with F returns exactly the documents F matches, and the index walk
 *     returns only documents F matches. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "collections.h"
#include "store.h"

/* Metadata of every shape a filter meets: scalars, nesting, arrays, missing keys, null. */
static const char *const metas[] = {
    "{\"a\":1,\"b\":\"x\",\"c\":true}",
    "{\"a\":2.5,\"b\":\"y\",\"c\":false,\"n\":{\"d\":3}}",
    "{\"a\":-7,\"b\":[\"x\",\"z\"],\"n\":{\"d\":[1,2,{\"e\":\"deep\"}]}}",
    "{\"a\":null,\"b\":\"\",\"n\":[{\"d\":4},{\"d\":5}]}",
    "{\"a\":9007199254740993,\"b\":\"\\u00e9t\\u00e9\",\"a.b\":1}",
    "{\"a\":[1,2,3],\"c\":[true,false],\"n\":{\"d\":{\"e\":0}}}",
    "{\"b\":\"x\",\"k\":{}}",
    "{}",
    NULL,
    "{\"a\":1e300,\"n\":{\"d\":-0.0}}",
    "{\"a\":0,\"b\":\"X\",\"c\":1}",
    "{\"a\":3,\"b\":[[\"x\"]],\"n\":{\"d\":\"3\"}}",
};
#define N_DOCS (sizeof metas / sizeof metas[0])

static st_db *db;
static char data_dir[64];

static void remove_store(void)
{
    st_close(db);
    static const char *const files[] = {"ragd.db", "ragd.db-wal", "ragd.db-shm"};
    char path[128];
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", data_dir, files[i]);
        unlink(path);
    }
    rmdir(data_dir);
}

static void setup(void)
{
    /* tmpfs when there is one: fsync is free there, so each exec costs CPU, not disk waits. */
    snprintf(data_dir, sizeof data_dir, "%s/ragd-fuzz-filter-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    st_error err;
    if (!mkdtemp(data_dir) || st_open(data_dir, &db, &err) != 0)
        abort();
    atexit(remove_store);
    st_collection c = {.name = "f", .dimension = 2, .distance = ST_L2, .m = 4, .ef_construction = 8};
    if (st_collection_create(db, &c, &err) != 0)
        abort();
    static float vecs[N_DOCS][2];
    st_doc docs[N_DOCS];
    for (size_t i = 0; i < N_DOCS; i++) {
        vecs[i][0] = (float)i;
        vecs[i][1] = 1.0f;
        docs[i] = (st_doc){.id = {.num = (int64_t)i},
                           .metadata = metas[i],
                           .metadata_len = metas[i] ? strlen(metas[i]) : 0,
                           .vector = vecs[i]};
    }
    if (st_upsert(db, "f", 2, docs, N_DOCS, &err) != 0)
        abort();
}

static void die(const char *what)
{
    fprintf(stderr, "fuzz_filter: %s\n", what);
    abort();
}

/* The documents a search with f returns, as a bit set over ids; -1 when it fails. */
static long search_set(const st_filter *f, int exact)
{
    static const float q[2] = {0, 1};
    st_query query = {.mode = ST_MODE_DENSE, .vector = q, .dimension = 2, .top_k = N_DOCS, .filter = f,
                      .exact = exact, .with_metadata = 1};
    st_record *res;
    size_t n;
    st_error err;
    if (st_search(db, "f", &query, &res, &n, &err) != 0)
        return -1;
    long set = 0;
    for (size_t i = 0; i < n; i++) {
        if (res[i].id.is_string || res[i].id.num < 0 || (size_t)res[i].id.num >= N_DOCS)
            die("a search returned an id that was never written");
        set |= 1L << res[i].id.num;
    }
    st_results_free(res, n);
    return set;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!db)
        setup();
    const uint8_t *nul = memchr(data, 0, size);
    size_t len = nul ? (size_t)(nul - data) : size;
    st_filter *f;
    char ptr[256];
    st_error err;
    if (st_filter_compile((const char *)data, len, &f, ptr, sizeof ptr, &err) != 0) {
        if (err.code != ST_ERR_INVALID || (ptr[0] && ptr[0] != '/') || !err.msg[0])
            die("a refusal without ST_ERR_INVALID, a pointer and a reason");
        return 0;
    }
    /* {"must_not":[F]}: the negation, when it still fits the depth and size limits. */
    char *neg_text = malloc(len + 16);
    if (!neg_text)
        abort();
    memcpy(neg_text, "{\"must_not\":[", 13);
    memcpy(neg_text + 13, data, len);
    memcpy(neg_text + 13 + len, "]}", 2);
    st_filter *neg = NULL;
    st_filter_compile(neg_text, len + 15, &neg, ptr, sizeof ptr, &err);
    free(neg_text);

    long want = 0;
    for (size_t i = 0; i < N_DOCS; i++) {
        size_t ml = metas[i] ? strlen(metas[i]) : 0;
        int m = st_filter_matches(f, metas[i], ml);
        if (neg && st_filter_matches(neg, metas[i], ml) == m)
            die("a filter and its must_not agree on a document");
        want |= (long)m << i;
    }
    if (nul) {
        const char *extra = (const char *)nul + 1;
        size_t el = size - len - 1;
        int m = st_filter_matches(f, extra, el);
        if (neg && st_filter_matches(neg, extra, el) == m)
            die("a filter and its must_not agree on the input's metadata");
    }
    long exact = search_set(f, 1), ann = search_set(f, 0);
    if (exact != want)
        die("an exact search with the filter does not return exactly the documents it matches");
    if (ann < 0 || (ann & ~want))
        die("the index walk returned a document the filter does not match");
    st_filter_free(neg);
    st_filter_free(f);
    return 0;
}
