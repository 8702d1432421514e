/* test_pending.c — the bound on a collection's tail (--max-pending-vectors): documents
 * acknowledged but not yet in the HNSW graph. A real ragd with a tiny bound takes one large
 * batch into its empty tail (slow to index: ef_construction 400), then a second batch that
 * would pass the bound: it waits --pending-wait-ms for the indexer, then answers 503
 * indexing_behind with Retry-After (an estimate, 1 to 60 s), and nothing of it is written
 * (no row, no FTS5 entry).
 * Once the indexer has caught up the same batch is taken. With a long wait instead, the
 * second batch is taken as soon as the indexer has made room, and not before. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cu.h"
#include "harness.h"
#include "search_util.h"

#define DIM 64
#define FIRST 5000 /* documents in the first batch: seconds of indexing at ef_construction 400 */
#define LIMIT "16" /* --max-pending-vectors */
#define SECOND 20  /* documents in the second batch (ids from 100000), more than LIMIT */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* {"documents": [n documents with ids first_id.., random vectors, text "word N"]}. */
static json_t *batch(int first_id, int n, const char *word, unsigned *seed)
{
    json_t *docs = json_array();
    for (int i = 0; i < n; i++) {
        float v[DIM];
        for (int k = 0; k < DIM; k++)
            v[k] = rnd(seed);
        char text[64];
        snprintf(text, sizeof text, "%s %d", word, i);
        json_array_append_new(docs, json_pack("{s:i, s:s, s:o}", "id", first_id + i, "text", text, "vector",
                                              vec_json(v, DIM)));
    }
    return json_pack("{s:o}", "documents", docs);
}

static long field_of(const it_server *s, const char *key)
{
    it_response r = it_get(s, "/collections/p");
    long v = r.status == 200 ? (long)json_integer_value(json_object_get(r.json, key)) : -1;
    it_free(&r);
    return v;
}

/* A server with the tiny bound and `wait_ms`, collection "p" holding the first batch
 * (acknowledged, most of it still pending). Returns 0, or -1 after printing why. */
static int start_with_tail(it_server *s, const char *wait_ms, unsigned *seed)
{
    const char *args[] = {"--max-pending-vectors", LIMIT, "--pending-wait-ms", wait_ms, "--max-batch", "8192",
                          "--max-body-bytes", "16777216", NULL};
    if (it_start(s, args, NULL) != 0)
        return -1;
    char body[160];
    snprintf(body, sizeof body,
             "{\"name\":\"p\",\"dimension\":%d,\"distance\":\"cosine\",\"hnsw\":{\"m\":32,\"ef_construction\":400}}",
             DIM);
    /* Far more than the bound, but the tail is empty: taken. */
    if (status_of(it_post(s, "/collections", body)) != 201 ||
        status_of(post_json(s, "/collections/p/documents", batch(0, FIRST, "kept", seed))) != 200) {
        it_stop(s);
        return -1;
    }
    /* Else the indexer outran the test, and nothing after this is tested. */
    long pending = field_of(s, "pending_vectors_count");
    printf("\n  pending after the first batch: %ld of %d", pending, FIRST);
    if (pending <= 16) {
        it_stop(s);
        return -1;
    }
    return 0;
}

static void test_refused(void)
{
    it_server s;
    unsigned seed = 7;
    CU_ASSERT_EQUAL_FATAL(start_with_tail(&s, "300", &seed), 0);

    json_t *second = batch(100000, SECOND, "refused", &seed);
    char *text = json_dumps(second, JSON_COMPACT | JSON_REAL_PRECISION(9)); /* sent twice */
    json_decref(second);
    double t0 = now_s();
    it_response r = it_post(&s, "/collections/p/documents", text);
    double waited = now_s() - t0;
    char retry[16] = "", *end = retry;
    CU_ASSERT(it_is_error(&r, 503, "indexing_behind", NULL));
    /* The store's estimate: the tail's excess over the indexer's pace, in whole seconds. */
    CU_ASSERT(it_header(&r, "Retry-After", retry, sizeof retry));
    long retry_s = strtol(retry, &end, 10);
    CU_ASSERT(end != retry && *end == '\0' && retry_s >= 1 && retry_s <= 60);
    int n_retry = 0; /* once: the estimate, not also the error table's default */
    for (const char *h = r.headers; h && (h = strcasestr(h, "\nRetry-After:")); h++)
        n_retry++;
    CU_ASSERT_EQUAL(n_retry, 1);
    const char *msg = json_string_value(json_object_get(r.json, "error"));
    CU_ASSERT(msg && strstr(msg, "--max-pending-vectors") && strstr(msg, "nothing was written"));
    printf("\n  second batch: %ld after %.2f s, Retry-After %s: %s", r.status, waited, retry,
           msg ? msg : "(no message)");
    CU_ASSERT(waited >= 0.25); /* it waited --pending-wait-ms for the indexer first */
    it_free(&r);

    /* Nothing of the refused batch: no row, no FTS5 entry, and the first batch whole. */
    CU_ASSERT_EQUAL(count_of(&s, "p"), FIRST);
    char db[128];
    snprintf(db, sizeof db, "%s/ragd.db", s.dir);
    long rows = -1;
    CU_ASSERT_EQUAL(db_int(db, "SELECT count(*) FROM documents WHERE id >= 100000", &rows, NULL, 0), 0);
    CU_ASSERT_EQUAL(rows, 0);
    r = it_get(&s, "/collections/p/documents/100000");
    CU_ASSERT(it_is_error(&r, 404, "not_found", NULL));
    it_free(&r);
    r = it_post(&s, "/search", "{\"collection\":\"p\",\"query\":\"refused\",\"mode\":\"keyword\",\"top_k\":5}");
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(r.json, "results")), 0);
    it_free(&r);

    /* The indexer catches up: the same batch is taken. */
    CU_ASSERT_EQUAL(wait_indexed(&s, "p"), FIRST);
    CU_ASSERT_EQUAL(status_of(it_post(&s, "/collections/p/documents", text)), 200);
    free(text);
    CU_ASSERT_EQUAL(count_of(&s, "p"), FIRST + SECOND);
    r = it_post(&s, "/search", "{\"collection\":\"p\",\"query\":\"refused\",\"mode\":\"keyword\",\"top_k\":50}");
    CU_ASSERT_EQUAL(json_array_size(json_object_get(r.json, "results")), SECOND);
    it_free(&r);
    CU_ASSERT_EQUAL(wait_indexed(&s, "p"), FIRST + SECOND);
    CU_ASSERT_EQUAL(it_stop(&s), 0);
}

static void test_waits_for_room(void)
{
    it_server s;
    unsigned seed = 11;
    CU_ASSERT_EQUAL_FATAL(start_with_tail(&s, "60000", &seed), 0);
    /* More than the bound: taken only once the tail is empty, so the whole first batch is in
     * the graph by the time it is acknowledged. */
    CU_ASSERT_EQUAL(status_of(post_json(&s, "/collections/p/documents", batch(100000, SECOND, "waited", &seed))), 200);
    long indexed = field_of(&s, "indexed_vectors_count");
    printf("\n  indexed when the second batch was acknowledged: %ld of %d", indexed, FIRST);
    CU_ASSERT(indexed >= FIRST);
    CU_ASSERT_EQUAL(count_of(&s, "p"), FIRST + SECOND);
    CU_ASSERT_EQUAL(it_stop(&s), 0);
}

void cu_register(void)
{
    CU_pSuite s = CU_add_suite("pending", NULL, NULL);
    CU_add_test(s, "past --max-pending-vectors: a bounded wait, 503 indexing_behind, nothing written, then taken",
                test_refused);
    CU_add_test(s, "a long --pending-wait-ms: the batch is taken once the indexer has made room", test_waits_for_room);
}
