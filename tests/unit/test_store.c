/* test_store.c — the store layer directly: opening the database (WAL, migrations from an
 * older schema, reopening, refusing the future), collections, id typing, atomic batches
 * (a batch that fails half way leaves neither rows nor index entries), filters and search,
 * the index loaded from its records or rebuilt, and the tail of documents not yet indexed
 * (found by every search, indexed in the background, never stale). */
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "collections.h"
#include "cu.h"
#include "store.h"

static char dir[64];

static int setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/ragd-store-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void)
{
    char path[128];
    static const char *const files[] = {"ragd.db", "ragd.db-wal", "ragd.db-shm", "ragd.db-journal"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/sub", dir);
    rmdir(path);
    return rmdir(dir);
}

static int pragma_int(const char *path, const char *sql)
{
    sqlite3 *c;
    sqlite3_stmt *st;
    int v = -1;
    if (sqlite3_open(path, &c) == SQLITE_OK && sqlite3_prepare_v2(c, sql, -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(c);
    return v;
}

static void test_open_migrate_reopen(void)
{
    st_db *db;
    st_error err;
    CU_ASSERT_EQUAL_FATAL(st_open(dir, &db, &err), 0);
    int version = st_schema_version(db);
    CU_ASSERT(version >= 1);
    st_close(db);
    CU_ASSERT_EQUAL_FATAL(st_open(dir, &db, &err), 0); /* idempotent */
    CU_ASSERT_EQUAL(st_schema_version(db), version);
    st_close(db);

    char path[128];
    snprintf(path, sizeof path, "%s/ragd.db", dir);
    CU_ASSERT_EQUAL(pragma_int(path, "PRAGMA user_version"), version);
    CU_ASSERT_EQUAL(pragma_int(path, "SELECT count(*) FROM meta WHERE key = 'created_at'"), 1);
}

static void test_refuses_newer_schema(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/ragd.db", dir);
    sqlite3 *c;
    CU_ASSERT_EQUAL_FATAL(sqlite3_open(path, &c), SQLITE_OK);
    CU_ASSERT_EQUAL(sqlite3_exec(c, "PRAGMA user_version = 999", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(c);
    st_db *db;
    st_error err;
    CU_ASSERT_EQUAL(st_open(dir, &db, &err), -1);
    CU_ASSERT_PTR_NULL(db);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "newer"));
}

static void test_bad_dirs(void)
{
    st_db *db;
    st_error err;
    CU_ASSERT_EQUAL(st_open("/proc/ragd-cannot-exist/x", &db, &err), -1);
    CU_ASSERT_PTR_NULL(db);
    CU_ASSERT(strlen(err.msg) > 0);
}

static void remove_db(void)
{
    char path[128];
    static const char *const files[] = {"ragd.db", "ragd.db-wal", "ragd.db-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
}

static void test_migrates_from_version_1(void)
{
    remove_db();
    char path[128];
    snprintf(path, sizeof path, "%s/ragd.db", dir);
    sqlite3 *c;
    CU_ASSERT_EQUAL_FATAL(sqlite3_open(path, &c), SQLITE_OK);
    /* Exactly what migration 1 wrote, as a ragd of that version left it. */
    CU_ASSERT_EQUAL(sqlite3_exec(c,
                                 "PRAGMA journal_mode=WAL;"
                                 "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;"
                                 "INSERT INTO meta VALUES ('created_at', '2026-01-01T00:00:00.000Z');"
                                 "PRAGMA user_version = 1;",
                                 NULL, NULL, NULL),
                    SQLITE_OK);
    sqlite3_close(c);
    st_db *db;
    st_error err;
    CU_ASSERT_EQUAL_FATAL(st_open(dir, &db, &err), 0);
    CU_ASSERT(st_schema_version(db) >= 2);
    st_collection spec = {.name = "after", .dimension = 3, .distance = ST_L2, .m = 16, .ef_construction = 100};
    CU_ASSERT_EQUAL(st_collection_create(db, &spec, &err), 0);
    st_close(db);
    CU_ASSERT_EQUAL(pragma_int(path, "SELECT count(*) FROM meta WHERE value = '2026-01-01T00:00:00.000Z'"), 1);
    CU_ASSERT_EQUAL(pragma_int(path, "SELECT count(*) FROM collections WHERE name = 'after'"), 1);
    remove_db();
}

static st_db *fresh(void)
{
    remove_db();
    st_db *db;
    st_error err;
    return st_open(dir, &db, &err) == 0 ? db : NULL;
}

/* Waits (up to 60 s) until the background indexer has every document of the collection in
 * its graph; returns the number indexed, or -1. */
static int64_t wait_indexed(st_db *db, const char *name)
{
    st_collection got;
    st_error err;
    for (int i = 0; i < 12000; i++) {
        if (st_collection_get(db, name, &got, &err) != 0 || got.indexed + got.pending != got.count)
            return -1;
        if (got.pending == 0)
            return got.indexed;
        usleep(5000);
    }
    return -1;
}

static st_id sid(const char *s) { return (st_id){.is_string = 1, .str = s, .len = strlen(s)}; }
static st_id nid(int64_t v) { return (st_id){.num = v}; }

static void test_collections(void)
{
    st_db *db = fresh();
    CU_ASSERT_PTR_NOT_NULL_FATAL(db);
    st_error err;
    st_collection spec = {.name = "b-docs", .dimension = 4, .distance = ST_COSINE, .m = 16, .ef_construction = 64};
    CU_ASSERT_EQUAL(st_collection_create(db, &spec, &err), 0);
    CU_ASSERT_EQUAL(st_collection_create(db, &spec, &err), -1);
    CU_ASSERT_EQUAL(err.code, ST_ERR_EXISTS);
    static const char *const bad[] = {"", "-x", ".x", "a/b", "a b", "a\xc3\xa9",
                                      "x2345678901234567890123456789012345678901234567890123456789012345"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        st_collection b = spec;
        snprintf(b.name, sizeof b.name, "%s", bad[i]);
        CU_ASSERT_EQUAL(st_name_valid(bad[i], strlen(bad[i])), 0);
        if (strlen(bad[i]) <= ST_NAME_MAX) {
            CU_ASSERT_EQUAL(st_collection_create(db, &b, &err), -1);
            CU_ASSERT_EQUAL(err.code, ST_ERR_INVALID);
        }
    }
    CU_ASSERT(st_name_valid("A0_.-z", 6));
    st_collection a = spec;
    snprintf(a.name, sizeof a.name, "a.docs");
    a.distance = ST_DOT;
    a.dimension = 2;
    CU_ASSERT_EQUAL(st_collection_create(db, &a, &err), 0);
    st_collection *all;
    size_t n;
    CU_ASSERT_EQUAL_FATAL(st_collection_list(db, &all, &n, &err), 0);
    CU_ASSERT_EQUAL(n, 2);
    CU_ASSERT(n == 2 && !strcmp(all[0].name, "a.docs") && all[0].distance == ST_DOT && all[0].dimension == 2 &&
              !strcmp(all[1].name, "b-docs") && all[1].m == 16 && all[1].ef_construction == 64 &&
              strlen(all[1].created_at) > 10);
    free(all);
    CU_ASSERT_EQUAL(st_collection_delete(db, "a.docs", &err), 0);
    CU_ASSERT_EQUAL(st_collection_delete(db, "a.docs", &err), -1);
    CU_ASSERT_EQUAL(err.code, ST_ERR_NOT_FOUND);
    st_collection got;
    CU_ASSERT_EQUAL(st_collection_get(db, "a.docs", &got, &err), -1);
    CU_ASSERT_EQUAL(st_collection_get(db, "b-docs", &got, &err), 0);
    CU_ASSERT_EQUAL(got.count, 0);
    st_close(db);
}

static const float V[][4] = {{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {1, 1, 0, 0}, {0, 0, 0, 1}};

static void test_id_typing_and_last_wins(void)
{
    st_db *db = fresh();
    CU_ASSERT_PTR_NOT_NULL_FATAL(db);
    st_error err;
    st_collection spec = {.name = "ids", .dimension = 4, .distance = ST_L2, .m = 16, .ef_construction = 64};
    CU_ASSERT_EQUAL_FATAL(st_collection_create(db, &spec, &err), 0);
    st_doc docs[] = {
        {.id = nid(7), .text = "integer seven", .text_len = 13, .vector = V[0]},
        {.id = sid("7"), .text = "string seven", .text_len = 12, .metadata = "{\"k\":1}", .metadata_len = 7,
         .vector = V[1]},
        {.id = nid(7), .text = "integer seven again", .text_len = 19, .vector = V[2]}, /* last wins */
    };
    CU_ASSERT_EQUAL_FATAL(st_upsert(db, "ids", 4, docs, 3, &err), 0);
    st_collection got;
    st_collection_get(db, "ids", &got, &err);
    CU_ASSERT_EQUAL(got.count, 2);
    st_record r;
    st_id seven = nid(7), seven_s = sid("7");
    CU_ASSERT_EQUAL_FATAL(st_document_get(db, "ids", &seven, &r, &err), 0);
    CU_ASSERT(!r.id.is_string && r.id.num == 7 && r.text && !strcmp(r.text, "integer seven again") &&
              r.vector[2] == 1 && !r.metadata);
    st_record_free(&r);
    CU_ASSERT_EQUAL_FATAL(st_document_get(db, "ids", &seven_s, &r, &err), 0);
    CU_ASSERT(r.id.is_string && r.id.len == 1 && r.id.str[0] == '7' && !strcmp(r.metadata, "{\"k\":1}"));
    st_record_free(&r);
    /* The old vector of id 7 is gone from the index: the nearest to V[0] is not 7. */
    st_query q = {.mode = ST_MODE_DENSE, .vector = V[0], .dimension = 4, .top_k = 1};
    st_record *hits;
    size_t n;
    CU_ASSERT_EQUAL_FATAL(st_search(db, "ids", &q, &hits, &n, &err), 0);
    CU_ASSERT(n == 1 && fabs(hits[0].score + sqrt(2.0)) < 1e-6);
    st_results_free(hits, n);
    /* Delete one type of 7; the other stays. */
    CU_ASSERT_EQUAL(st_document_delete(db, "ids", &seven_s, &err), 0);
    CU_ASSERT_EQUAL(st_document_delete(db, "ids", &seven_s, &err), -1);
    CU_ASSERT_EQUAL(err.code, ST_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(st_document_get(db, "ids", &seven, &r, &err), 0);
    st_record_free(&r);
    st_collection_get(db, "ids", &got, &err);
    CU_ASSERT_EQUAL(got.count, 1);
    /* Preconditions the store checks itself. */
    float nan_vec[4] = {0, NAN, 0, 0};
    st_doc bad[] = {{.id = nid(1), .vector = V[0]}, {.id = nid(2), .vector = nan_vec}};
    CU_ASSERT_EQUAL(st_upsert(db, "ids", 4, bad, 2, &err), -1);
    CU_ASSERT_EQUAL(err.code, ST_ERR_INVALID);
    CU_ASSERT_EQUAL(st_upsert(db, "ids", 3, bad, 1, &err), -1);
    CU_ASSERT_EQUAL(err.code, ST_ERR_INVALID);
    CU_ASSERT_EQUAL(st_upsert(db, "nope", 4, bad, 1, &err), -1);
    CU_ASSERT_EQUAL(err.code, ST_ERR_NOT_FOUND);
    st_collection_get(db, "ids", &got, &err);
    CU_ASSERT_EQUAL(got.count, 1);
    st_close(db);
}

/* A batch that fails inside its transaction (a trigger aborts on one id) leaves nothing:
 * no new rows, no changed rows, no index entries, the same search results. */
static void test_failed_batch_leaves_nothing(void)
{
    st_db *db = fresh();
    CU_ASSERT_PTR_NOT_NULL_FATAL(db);
    st_error err;
    st_collection spec = {.name = "atomic", .dimension = 4, .distance = ST_COSINE, .m = 16, .ef_construction = 64};
    CU_ASSERT_EQUAL_FATAL(st_collection_create(db, &spec, &err), 0);
    st_doc first[] = {{.id = sid("keep"), .text = "kept text", .text_len = 9, .vector = V[0]}};
    CU_ASSERT_EQUAL_FATAL(st_upsert(db, "atomic", 4, first, 1, &err), 0);

    char path[128];
    snprintf(path, sizeof path, "%s/ragd.db", dir);
    sqlite3 *c;
    CU_ASSERT_EQUAL_FATAL(sqlite3_open(path, &c), SQLITE_OK);
    sqlite3_busy_timeout(c, 5000); /* the indexer may be committing */
    CU_ASSERT_EQUAL(sqlite3_exec(c,
                                 "CREATE TRIGGER boom BEFORE INSERT ON documents WHEN NEW.id = 'boom' "
                                 "BEGIN SELECT RAISE(ABORT, 'boom'); END;",
                                 NULL, NULL, NULL),
                    SQLITE_OK);
    sqlite3_close(c);
    st_doc batch[] = {
        {.id = sid("keep"), .text = "changed", .text_len = 7, .vector = V[1]},
        {.id = sid("new"), .text = "new text", .text_len = 8, .vector = V[2]},
        {.id = sid("boom"), .vector = V[3]},
    };
    CU_ASSERT_EQUAL(st_upsert(db, "atomic", 4, batch, 3, &err), -1);
    CU_ASSERT(err.code > 0 && strstr(err.msg, "boom") != NULL);
    st_collection got;
    st_collection_get(db, "atomic", &got, &err);
    CU_ASSERT_EQUAL(got.count, 1);
    st_id keep = sid("keep"), fresh_id = sid("new");
    st_record r;
    CU_ASSERT_EQUAL(st_document_get(db, "atomic", &fresh_id, &r, &err), -1);
    CU_ASSERT_EQUAL_FATAL(st_document_get(db, "atomic", &keep, &r, &err), 0);
    CU_ASSERT(r.text && !strcmp(r.text, "kept text") && r.vector[0] == 1);
    st_record_free(&r);
    for (size_t v = 0; v < 4; v++) { /* whatever the query, only "keep" exists, at its old vector */
        st_query q = {.mode = ST_MODE_DENSE, .vector = V[v], .dimension = 4, .top_k = 10, .with_text = 1};
        st_record *hits;
        size_t n;
        CU_ASSERT_EQUAL_FATAL(st_search(db, "atomic", &q, &hits, &n, &err), 0);
        CU_ASSERT(n == 1 && hits[0].id.is_string && !strcmp(hits[0].id.str, "keep") &&
                  fabs(hits[0].score - (v == 0 ? 1 : v == 3 ? sqrt(0.5) : 0)) < 1e-6);
        st_results_free(hits, n);
    }
    st_query kq = {.mode = ST_MODE_KEYWORD, .text = "new changed", .text_len = 11, .top_k = 10};
    st_record *hits;
    size_t n;
    CU_ASSERT_EQUAL(st_search(db, "atomic", &kq, &hits, &n, &err), 0);
    CU_ASSERT_EQUAL(n, 0);
    st_results_free(hits, n);
    st_close(db);
}

static void test_search_and_reopen(void)
{
    st_db *db = fresh();
    CU_ASSERT_PTR_NOT_NULL_FATAL(db);
    st_error err;
    st_collection spec = {.name = "s", .dimension = 4, .distance = ST_DOT, .m = 16, .ef_construction = 64};
    CU_ASSERT_EQUAL_FATAL(st_collection_create(db, &spec, &err), 0);
    static const char *const texts[] = {"the quick brown fox", "a lazy dog sleeps", "quick quick quick",
                                        "brown dog and brown fox", "nothing here"};
    static const char *const metas[] = {"{\"color\":\"red\",\"n\":1}", "{\"color\":\"blue\",\"n\":2}",
                                        "{\"color\":\"red\",\"n\":3,\"tags\":[\"a\",\"b\"]}",
                                        "{\"color\":\"green\",\"n\":4,\"deep\":{\"x\":true}}", NULL};
    st_doc docs[5];
    for (int i = 0; i < 5; i++)
        docs[i] = (st_doc){.id = nid(i), .text = texts[i], .text_len = strlen(texts[i]), .metadata = metas[i],
                           .metadata_len = metas[i] ? strlen(metas[i]) : 0, .vector = V[i]};
    CU_ASSERT_EQUAL_FATAL(st_upsert(db, "s", 4, docs, 5, &err), 0);
    float qv[4] = {2, 1, 0, 0};
    for (int pass = 0; pass < 2; pass++) {
        st_query q = {.mode = ST_MODE_DENSE, .vector = qv, .dimension = 4, .top_k = 3, .with_metadata = 1};
        st_record *hits;
        size_t n;
        CU_ASSERT_EQUAL_FATAL(st_search(db, "s", &q, &hits, &n, &err), 0);
        /* dot scores: id3 = 3, id0 = 2, id1 = 1 */
        CU_ASSERT(n == 3 && hits[0].id.num == 3 && hits[0].score == 3 && hits[1].id.num == 0 && hits[2].id.num == 1 &&
                  hits[0].metadata && !hits[0].text && !hits[0].vector);
        st_results_free(hits, n);

        st_filter *f;
        char ptr[128];
        const char *fj = "{\"must\":[{\"key\":\"color\",\"match\":{\"any\":[\"red\",\"green\"]}}],"
                         "\"must_not\":[{\"key\":\"n\",\"range\":{\"gte\":4}}]}";
        CU_ASSERT_EQUAL_FATAL(st_filter_compile(fj, strlen(fj), &f, ptr, sizeof ptr, &err), 0);
        q.filter = f;
        CU_ASSERT_EQUAL_FATAL(st_search(db, "s", &q, &hits, &n, &err), 0);
        CU_ASSERT(n == 2 && hits[0].id.num == 0 && hits[1].id.num == 2);
        st_results_free(hits, n);
        q.has_threshold = 1;
        q.score_threshold = 1.5;
        CU_ASSERT_EQUAL_FATAL(st_search(db, "s", &q, &hits, &n, &err), 0);
        CU_ASSERT(n == 1 && hits[0].id.num == 0);
        st_results_free(hits, n);
        st_filter_free(f);

        st_query k = {.mode = ST_MODE_KEYWORD, .text = "quick \"fox\" OR NEAR(", .text_len = 20, .top_k = 10,
                      .with_text = 1};
        CU_ASSERT_EQUAL_FATAL(st_search(db, "s", &k, &hits, &n, &err), 0);
        /* BM25 over "quick", "fox", "or", "near": both words beat one word three times. */
        CU_ASSERT(n == 3 && hits[0].id.num == 0 && hits[1].id.num == 2 && hits[2].id.num == 3 && hits[0].text &&
                  !strcmp(hits[0].text, texts[0]) && hits[0].score > hits[1].score && hits[2].score > 0);
        st_results_free(hits, n);

        st_query h = {.mode = ST_MODE_HYBRID, .vector = V[4], .dimension = 4, .text = "dog", .text_len = 3,
                      .top_k = 2};
        CU_ASSERT_EQUAL_FATAL(st_search(db, "s", &h, &hits, &n, &err), 0);
        /* id1 is 2nd densely (0 ties broken by label) and 1st or 2nd by keyword: it fuses first */
        CU_ASSERT(n == 2 && hits[0].score >= hits[1].score);
        st_results_free(hits, n);

        st_close(db);
        CU_ASSERT_EQUAL_FATAL(st_open(dir, &db, &err), 0);
    }
    st_close(db);
}

/* The index loads from its records after a reopen; with a record missing it is rebuilt
 * from the documents (and says so), with the same answers. */
static void test_index_load_and_rebuild(void)
{
    st_db *db = fresh();
    CU_ASSERT_PTR_NOT_NULL_FATAL(db);
    st_error err;
    st_collection spec = {.name = "ix", .dimension = 8, .distance = ST_COSINE, .m = 8, .ef_construction = 32};
    CU_ASSERT_EQUAL_FATAL(st_collection_create(db, &spec, &err), 0);
    enum { N = 600 };
    static float vecs[N][8];
    st_doc docs[N];
    unsigned seed = 1;
    for (int i = 0; i < N; i++) {
        for (int d = 0; d < 8; d++) {
            seed = seed * 1103515245u + 12345u;
            vecs[i][d] = (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
        }
        docs[i] = (st_doc){.id = nid(i), .vector = vecs[i]};
    }
    for (int b = 0; b < N; b += 100)
        CU_ASSERT_EQUAL_FATAL(st_upsert(db, "ix", 8, docs + b, 100, &err), 0);
    for (int i = 0; i < N; i += 7) {
        st_id id = nid(i);
        CU_ASSERT_EQUAL(st_document_delete(db, "ix", &id, &err), 0);
    }
    const char *states[] = {"ready", "loaded", "rebuilt"};
    char path[128];
    snprintf(path, sizeof path, "%s/ragd.db", dir);
    for (int pass = 0; pass < 3; pass++) {
        st_collection got;
        CU_ASSERT_EQUAL(st_collection_get(db, "ix", &got, &err), 0);
        CU_ASSERT_STRING_EQUAL(got.index_state, states[pass]);
        CU_ASSERT_EQUAL(got.count, N - (N + 6) / 7);
        int found = 0, probes = 0;
        for (int i = 1; i < N; i += 5) {
            if (i % 7 == 0)
                continue;
            st_query q = {.mode = ST_MODE_DENSE, .vector = vecs[i], .dimension = 8, .top_k = 1};
            st_record *hits;
            size_t n;
            CU_ASSERT_EQUAL_FATAL(st_search(db, "ix", &q, &hits, &n, &err), 0);
            found += n == 1 && hits[0].id.num == i;
            probes++;
            st_results_free(hits, n);
        }
        CU_ASSERT_EQUAL(found, probes);
        CU_ASSERT_EQUAL(wait_indexed(db, "ix"), N - (N + 6) / 7); /* so label 10 has its record */
        st_close(db);
        if (pass == 1) {
            sqlite3 *c;
            CU_ASSERT_EQUAL_FATAL(sqlite3_open(path, &c), SQLITE_OK);
            CU_ASSERT_EQUAL(sqlite3_exec(c, "DELETE FROM index_nodes WHERE label = 10", NULL, NULL, NULL), SQLITE_OK);
            sqlite3_close(c);
        }
        CU_ASSERT_EQUAL_FATAL(st_open(dir, &db, &err), 0);
    }
    st_close(db);
}

/* Rows committed without a node record (the indexer had not reached them before a kill -9)
 * are the tail at start-up: the graph still loads from its records, the tail is found by
 * every search at once and indexed in the background, and the next start-up loads it all. */
static void test_tail_at_startup(void)
{
    st_db *db = fresh();
    CU_ASSERT_PTR_NOT_NULL_FATAL(db);
    st_error err;
    st_collection spec = {.name = "t", .dimension = 8, .distance = ST_L2, .m = 8, .ef_construction = 32};
    CU_ASSERT_EQUAL_FATAL(st_collection_create(db, &spec, &err), 0);
    enum { N = 700, EXTRA = 300 };
    static float vecs[N + EXTRA][8];
    st_doc docs[N];
    unsigned seed = 3;
    for (int i = 0; i < N + EXTRA; i++)
        for (int d = 0; d < 8; d++) {
            seed = seed * 1103515245u + 12345u;
            vecs[i][d] = (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
        }
    for (int i = 0; i < N; i++)
        docs[i] = (st_doc){.id = nid(i), .vector = vecs[i]};
    CU_ASSERT_EQUAL_FATAL(st_upsert(db, "t", 8, docs, N, &err), 0);
    CU_ASSERT_EQUAL(wait_indexed(db, "t"), N);
    st_close(db);
    /* EXTRA more rows, as a batch acknowledged just before a kill -9 leaves them. */
    char path[128];
    snprintf(path, sizeof path, "%s/ragd.db", dir);
    sqlite3 *c;
    sqlite3_stmt *st;
    CU_ASSERT_EQUAL_FATAL(sqlite3_open(path, &c), SQLITE_OK);
    CU_ASSERT_EQUAL_FATAL(sqlite3_prepare_v2(c,
                                             "INSERT INTO documents(collection_id, label, id, vector) "
                                             "VALUES (1, ?1, ?1, ?2)",
                                             -1, &st, NULL),
                          SQLITE_OK);
    sqlite3_exec(c, "BEGIN", NULL, NULL, NULL);
    for (int i = N; i < N + EXTRA; i++) {
        sqlite3_bind_int(st, 1, i);
        sqlite3_bind_blob(st, 2, vecs[i], sizeof vecs[i], SQLITE_STATIC);
        CU_ASSERT_EQUAL(sqlite3_step(st), SQLITE_DONE);
        sqlite3_reset(st);
    }
    CU_ASSERT_EQUAL(sqlite3_exec(c, "UPDATE collections SET next_label = 1000; COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_finalize(st);
    sqlite3_close(c);
    for (int pass = 0; pass < 2; pass++) {
        CU_ASSERT_EQUAL_FATAL(st_open(dir, &db, &err), 0);
        st_collection got;
        CU_ASSERT_EQUAL(st_collection_get(db, "t", &got, &err), 0);
        CU_ASSERT_STRING_EQUAL(got.index_state, "loaded");
        CU_ASSERT_EQUAL(got.count, N + EXTRA);
        CU_ASSERT(got.indexed >= N && got.indexed + got.pending == N + EXTRA);
        int found = 0;
        for (int i = 1; i < N + EXTRA; i += 9) { /* each document is its own nearest neighbour */
            st_query q = {.mode = ST_MODE_DENSE, .vector = vecs[i], .dimension = 8, .top_k = 1};
            st_record *hits;
            size_t n;
            CU_ASSERT_EQUAL_FATAL(st_search(db, "t", &q, &hits, &n, &err), 0);
            found += n == 1 && hits[0].id.num == i && hits[0].score == 0;
            st_results_free(hits, n);
        }
        CU_ASSERT_EQUAL(found, (N + EXTRA - 1 + 8) / 9);
        CU_ASSERT_EQUAL(wait_indexed(db, "t"), N + EXTRA);
        st_close(db);
    }
    CU_ASSERT_EQUAL(pragma_int(path, "SELECT count(*) FROM index_nodes"), N + EXTRA);
}

/* A new vector for a document already in the graph takes it out of the graph at once: no
 * search returns the old vector's score, before or after the indexer puts it back. */
static void test_replaced_vector_never_stale(void)
{
    st_db *db = fresh();
    CU_ASSERT_PTR_NOT_NULL_FATAL(db);
    st_error err;
    st_collection spec = {.name = "r", .dimension = 4, .distance = ST_L2, .m = 4, .ef_construction = 16};
    CU_ASSERT_EQUAL_FATAL(st_collection_create(db, &spec, &err), 0);
    enum { N = 400 };
    static float vecs[N][4];
    st_doc docs[N];
    for (int i = 0; i < N; i++) {
        for (int d = 0; d < 4; d++)
            vecs[i][d] = (float)((i * 7 + d * 13) % 101);
        docs[i] = (st_doc){.id = nid(i), .vector = vecs[i]};
    }
    CU_ASSERT_EQUAL_FATAL(st_upsert(db, "r", 4, docs, N, &err), 0);
    CU_ASSERT_EQUAL_FATAL(wait_indexed(db, "r"), N);
    float moved[4] = {500, 500, 500, 500};
    for (int round = 0; round < 2; round++) {
        st_doc d = {.id = nid(42), .vector = moved};
        CU_ASSERT_EQUAL_FATAL(st_upsert(db, "r", 4, &d, 1, &err), 0);
        for (int exact = 0; exact < 2; exact++) {
            st_query q = {.mode = ST_MODE_DENSE, .vector = vecs[42], .dimension = 4, .top_k = 1, .exact = exact};
            st_record *hits;
            size_t n;
            CU_ASSERT_EQUAL_FATAL(st_search(db, "r", &q, &hits, &n, &err), 0);
            CU_ASSERT(n == 1 && hits[0].id.num != 42);
            st_results_free(hits, n);
            q.vector = moved;
            CU_ASSERT_EQUAL_FATAL(st_search(db, "r", &q, &hits, &n, &err), 0);
            CU_ASSERT(n == 1 && hits[0].id.num == 42 && hits[0].score == 0);
            st_results_free(hits, n);
        }
        CU_ASSERT_EQUAL(wait_indexed(db, "r"), N);
        moved[0] = -500;
    }
    st_id gone = nid(42);
    CU_ASSERT_EQUAL(st_document_delete(db, "r", &gone, &err), 0);
    CU_ASSERT_EQUAL(wait_indexed(db, "r"), N - 1);
    st_close(db);
}

/* The Retry-After of an upsert refused for a full tail (st_pending_retry_after): 1 for an
 * unknown collection, an empty tail, or before the indexer has a pace; while it works through
 * a long tail, the estimate for draining all of it agrees (within 3x) with how long draining
 * it then takes. And st_indexer_idle: never while a tail holds documents, soon after. */
static void test_retry_after_estimate(void)
{
    st_db *db = fresh();
    CU_ASSERT_PTR_NOT_NULL_FATAL(db);
    st_set_pending_limit(db, 16, 0);
    st_error err;
    enum { N = 20000, DIM = 32 };
    st_collection spec = {.name = "pace", .dimension = DIM, .distance = ST_L2, .m = 32, .ef_construction = 400};
    CU_ASSERT_EQUAL_FATAL(st_collection_create(db, &spec, &err), 0);
    CU_ASSERT_EQUAL(st_pending_retry_after(db, "none", N), 1);
    CU_ASSERT_EQUAL(st_pending_retry_after(db, "pace", N), 1);
    float *vecs = malloc((size_t)N * DIM * sizeof *vecs);
    st_doc *docs = malloc(N * sizeof *docs);
    CU_ASSERT_FATAL(vecs && docs);
    unsigned seed = 3;
    for (int i = 0; i < N; i++) {
        for (int d = 0; d < DIM; d++) {
            seed = seed * 1103515245u + 12345u;
            vecs[i * DIM + d] = (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
        }
        docs[i] = (st_doc){.id = nid(i), .vector = vecs + i * DIM};
    }
    /* Half in the graph first, so the pace changes little while the other half drains (an
     * insert slows as the graph grows); an empty tail takes any batch. */
    CU_ASSERT_EQUAL_FATAL(st_upsert(db, "pace", DIM, docs, N / 2, &err), 0);
    CU_ASSERT_EQUAL_FATAL(wait_indexed(db, "pace"), N / 2);
    CU_ASSERT_EQUAL_FATAL(st_upsert(db, "pace", DIM, docs + N / 2, N / 2, &err), 0);
    usleep(600000); /* two windows of the indexer's pace */
    st_collection got;
    int idle = st_indexer_idle(db); /* read first: once idle, nothing joins a tail unwritten */
    CU_ASSERT_EQUAL(st_collection_get(db, "pace", &got, &err), 0);
    CU_ASSERT(!(idle && got.pending > 0));
    unsigned estimate = st_pending_retry_after(db, "pace", N); /* all of the tail must drain */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CU_ASSERT_EQUAL(wait_indexed(db, "pace"), N);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("\n  %lld pending: estimate %u s, drained in %.2f s ", (long long)got.pending, estimate, took);
    CU_ASSERT(got.pending > N / 8); /* else the indexer outran the test and nothing is measured */
    CU_ASSERT(estimate >= took / 3 && estimate <= 3 * took + 1);
    CU_ASSERT_EQUAL(st_pending_retry_after(db, "pace", N), 1);
    for (int i = 0; i < 2000 && !st_indexer_idle(db); i++) /* the last commit, then idle */
        usleep(5000);
    CU_ASSERT_EQUAL(st_indexer_idle(db), 1);
    free(vecs);
    free(docs);
    st_close(db);
}

static void test_error_kinds(void)
{
    static const struct {
        int code, kind;
    } cases[] = {
        {ST_ERR_NOT_FOUND, ST_ERR_NOT_FOUND}, {ST_ERR_EXISTS, ST_ERR_EXISTS}, {ST_ERR_INVALID, ST_ERR_INVALID},
        {ST_ERR_NOMEM, ST_ERR_NOMEM},         {-1, ST_ERR_IO},                 {SQLITE_BUSY, ST_ERR_BUSY},
        {SQLITE_BUSY_SNAPSHOT, ST_ERR_BUSY},  {SQLITE_LOCKED, ST_ERR_BUSY},    {SQLITE_FULL, ST_ERR_FULL},
        {SQLITE_NOMEM, ST_ERR_NOMEM},         {SQLITE_IOERR_FSYNC, ST_ERR_IO}, {SQLITE_CORRUPT, ST_ERR_IO},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        st_error e = {.code = cases[i].code};
        CU_ASSERT_EQUAL(st_error_kind(&e), cases[i].kind);
    }
}

static void test_filters(void)
{
    static const struct {
        const char *filter, *meta;
        int pass;
    } cases[] = {
        {"{\"must\":[{\"key\":\"a\",\"match\":{\"value\":\"x\"}}]}", "{\"a\":\"x\"}", 1},
        {"{\"must\":[{\"key\":\"a\",\"match\":{\"value\":\"x\"}}]}", "{\"a\":\"y\"}", 0},
        {"{\"must\":[{\"key\":\"a\",\"match\":{\"value\":\"x\"}}]}", NULL, 0},
        {"{\"must\":[{\"key\":\"a\",\"match\":{\"value\":\"x\"}}]}", "{\"a\":[\"y\",\"x\"]}", 1},
        {"{\"must\":[{\"key\":\"a.b\",\"match\":{\"value\":3}}]}", "{\"a\":{\"b\":3}}", 1},
        {"{\"must\":[{\"key\":\"a.b\",\"match\":{\"value\":3}}]}", "{\"a\":[{\"b\":1},{\"b\":3}]}", 1},
        {"{\"must\":[{\"key\":\"a.b\",\"match\":{\"value\":3}}]}", "{\"a\":{\"b\":\"3\"}}", 0},
        {"{\"must\":[{\"key\":\"a\",\"match\":{\"value\":true}}]}", "{\"a\":true}", 1},
        {"{\"must\":[{\"key\":\"a\",\"match\":{\"value\":1}}]}", "{\"a\":true}", 0},
        {"{\"should\":[{\"key\":\"a\",\"match\":{\"value\":1}},{\"key\":\"b\",\"match\":{\"value\":1}}]}",
         "{\"b\":1}", 1},
        {"{\"should\":[{\"key\":\"a\",\"match\":{\"value\":1}}]}", "{\"b\":1}", 0},
        {"{\"should\":[]}", "{}", 1},
        {"{\"must_not\":[{\"key\":\"a\",\"match\":{\"any\":[1,2]}}]}", "{\"a\":2}", 0},
        {"{\"must_not\":[{\"key\":\"a\",\"match\":{\"any\":[1,2]}}]}", "{\"a\":3}", 1},
        {"{\"must\":[{\"key\":\"n\",\"range\":{\"gt\":1,\"lte\":2.5}}]}", "{\"n\":2.5}", 1},
        {"{\"must\":[{\"key\":\"n\",\"range\":{\"gt\":1,\"lte\":2.5}}]}", "{\"n\":1}", 0},
        {"{\"must\":[{\"key\":\"n\",\"range\":{\"lt\":0}}]}", "{\"n\":\"-1\"}", 0},
        {"{\"must\":{\"should\":[{\"key\":\"a\",\"match\":{\"value\":1}}]}}", "{\"a\":1}", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        st_filter *f;
        char ptr[128];
        st_error err;
        CU_ASSERT_EQUAL_FATAL(st_filter_compile(cases[i].filter, strlen(cases[i].filter), &f, ptr, sizeof ptr, &err), 0);
        int got = st_filter_matches(f, cases[i].meta, cases[i].meta ? strlen(cases[i].meta) : 0);
        if (got != cases[i].pass)
            fprintf(stderr, "filter case %zu: %s on %s gave %d\n", i, cases[i].filter, cases[i].meta, got);
        CU_ASSERT_EQUAL(got, cases[i].pass);
        st_filter_free(f);
    }
    static const struct {
        const char *filter, *pointer;
    } bad[] = {
        {"[]", ""},
        {"{}", ""},
        {"{\"must\":3}", "/must"},
        {"{\"must\":[{\"key\":\"a\"}]}", "/must/0"},
        {"{\"must\":[{\"key\":\"\",\"match\":{\"value\":1}}]}", "/must/0/key"},
        {"{\"must\":[{\"key\":\"a\",\"match\":{\"value\":1.5}}]}", "/must/0/match/value"},
        {"{\"must\":[{\"key\":\"a\",\"match\":{\"any\":[1,{}]}}]}", "/must/0/match/any/1"},
        {"{\"should\":[{\"key\":\"a\",\"range\":{\"gt\":\"1\"}}]}", "/should/0/range/gt"},
        {"{\"must_not\":[{\"key\":\"a\",\"range\":{\"near\":1}}]}", "/must_not/0/range/near"},
        {"{\"must\":[{\"key\":\"a\",\"match\":{\"value\":1},\"range\":{\"gt\":1}}]}", "/must/0"},
        {"{\"filter\":[]}", "/filter"},
        {"{\"must\":[{\"must\":[{\"must\":[{\"must\":[{\"must\":[{\"must\":[{\"must\":[{\"must\":[{\"must\":[{\"must\":[]}]}]}]}]}]}]}]}]}]}",
         "/must/0/must/0/must/0/must/0/must/0/must/0/must/0/must/0/must/0"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        st_filter *f;
        char ptr[128];
        st_error err;
        CU_ASSERT_EQUAL(st_filter_compile(bad[i].filter, strlen(bad[i].filter), &f, ptr, sizeof ptr, &err), -1);
        CU_ASSERT_PTR_NULL(f);
        if (strcmp(ptr, bad[i].pointer))
            fprintf(stderr, "bad filter %zu: pointer '%s', expected '%s'\n", i, ptr, bad[i].pointer);
        CU_ASSERT_STRING_EQUAL(ptr, bad[i].pointer);
        CU_ASSERT_EQUAL(err.code, ST_ERR_INVALID);
    }
}

void cu_register(void)
{
    CU_pSuite s = CU_add_suite("store", setup, teardown);
    CU_add_test(s, "open, migrate, reopen", test_open_migrate_reopen);
    CU_add_test(s, "refuses a newer schema", test_refuses_newer_schema);
    CU_add_test(s, "bad directories", test_bad_dirs);
    CU_add_test(s, "migrates a version-1 database", test_migrates_from_version_1);
    CU_add_test(s, "collections", test_collections);
    CU_add_test(s, "id typing, last wins, delete", test_id_typing_and_last_wins);
    CU_add_test(s, "a failed batch leaves nothing", test_failed_batch_leaves_nothing);
    CU_add_test(s, "search, filters, reopen", test_search_and_reopen);
    CU_add_test(s, "index loads from its records, or is rebuilt", test_index_load_and_rebuild);
    CU_add_test(s, "rows without records are the tail at start-up", test_tail_at_startup);
    CU_add_test(s, "a replaced vector is never stale", test_replaced_vector_never_stale);
    CU_add_test(s, "the Retry-After estimate of a full tail", test_retry_after_estimate);
    CU_add_test(s, "error kinds", test_error_kinds);
    CU_add_test(s, "filters", test_filters);
}
