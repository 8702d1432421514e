/* test_durability.c — what must survive on the real daemon: search results identical across
 * a restart with the same data dir (the index loaded from its records, not rebuilt), the 503s
 * and 422s of a server without models, concurrent writers and readers, the same id written
 * by eight clients at once, and kill -9 in the middle of a stream of batch upserts (then
 * integrity_check, every acknowledged batch, no half batch, every row found by search at
 * once — from the graph or the tail the indexer had not reached — and, once the background
 * indexer is done, the graph holding exactly the rows; RAGD_KILL9_CYCLES sets the number of
 * cycles). */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cu.h"
#include "harness.h"
#include "search_util.h"

static it_server srv; /* no models: vectors only */

static int setup(void) { return it_start(&srv, (const char *const[]){"--max-batch", "64", NULL}, NULL); }

static int teardown(void) { return it_stop(&srv) == 0 ? 0 : -1; }

static void test_persistence(void)
{
    char data[64];
    snprintf(data, sizeof data, "/tmp/ragd-persist-XXXXXX");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(data));
    const char *args[] = {"--data-dir", data, "--max-batch", "64", NULL};
    it_server s;
    CU_ASSERT_EQUAL_FATAL(it_start(&s, args, NULL), 0);
    CU_ASSERT_EQUAL(create(&s, "p", 16, "l2"), 201);
    /* This server has no models: what needs them is a clear 503 (or 422), and writes nothing. */
    it_response r = it_post(&s, "/collections", "{\"name\":\"nodim\"}");
    CU_ASSERT(it_is_error(&r, 422, "missing_field", "/dimension"));
    it_free(&r);
    r = it_post(&s, "/collections/p/documents", "{\"documents\":[{\"id\":1,\"text\":\"embed me\"}]}");
    CU_ASSERT(it_is_error(&r, 503, "model_not_loaded", "/model"));
    it_free(&r);
    r = it_post(&s, "/search", "{\"collection\":\"p\",\"query\":\"embed me\"}");
    CU_ASSERT(it_is_error(&r, 503, "model_not_loaded", "/model"));
    it_free(&r);
    r = it_post(&s, "/search", "{\"collection\":\"p\",\"query\":\"x\",\"mode\":\"keyword\",\"rerank\":{}}");
    CU_ASSERT(it_is_error(&r, 503, "model_not_loaded", "/model"));
    it_free(&r);
    CU_ASSERT_EQUAL(count_of(&s, "p"), 0);
    unsigned seed = 99;
    CU_ASSERT_EQUAL(ingest(&s, "p", 16, 0, 10, 40, &seed), 0);
    r = it_request(&s, "DELETE", "/collections/p/documents/5", NULL, NULL, 0);
    it_free(&r);
    /* The graph is approximate: compare results once it holds everything, as it will after
     * the restart. */
    CU_ASSERT_EQUAL(wait_indexed(&s, "p"), 399);
    char *bodies[8], *before[8];
    for (int i = 0; i < 8; i++) {
        float q[16];
        for (int d = 0; d < 16; d++)
            q[d] = rnd(&seed);
        bodies[i] = search_body("p", q, 16);
        r = it_post(&s, "/search", bodies[i]);
        before[i] = json_dumps(json_object_get(r.json, "results"), JSON_COMPACT);
        it_free(&r);
    }
    r = it_post(&s, "/search", "{\"collection\":\"p\",\"query\":\"batch 3\",\"mode\":\"keyword\",\"top_k\":5}");
    char *kw_before = json_dumps(json_object_get(r.json, "results"), JSON_COMPACT);
    it_free(&r);
    CU_ASSERT_EQUAL(it_stop(&s), 0);
    CU_ASSERT_EQUAL_FATAL(it_start(&s, args, NULL), 0);
    CU_ASSERT_EQUAL(count_of(&s, "p"), 399);
    CU_ASSERT(index_state_is(&s, "p", "loaded")); /* from its stored nodes, not rebuilt */
    CU_ASSERT_EQUAL(wait_indexed(&s, "p"), 399);  /* nothing was left pending */
    for (int i = 0; i < 8; i++) {
        r = it_post(&s, "/search", bodies[i]);
        char *after = json_dumps(json_object_get(r.json, "results"), JSON_COMPACT);
        CU_ASSERT(r.status == 200 && before[i] && after && !strcmp(before[i], after));
        free(after);
        free(before[i]);
        free(bodies[i]);
        it_free(&r);
    }
    r = it_post(&s, "/search", "{\"collection\":\"p\",\"query\":\"batch 3\",\"mode\":\"keyword\",\"top_k\":5}");
    char *kw_after = json_dumps(json_object_get(r.json, "results"), JSON_COMPACT);
    CU_ASSERT(kw_before && kw_after && !strcmp(kw_before, kw_after));
    free(kw_before);
    free(kw_after);
    it_free(&r);
    r = it_get(&s, "/collections/p/documents/5");
    CU_ASSERT(it_is_error(&r, 404, "not_found", NULL));
    it_free(&r);
    CU_ASSERT_EQUAL(it_stop(&s), 0);
    CU_ASSERT_EQUAL(it_remove_tree(data), 0);
}

/* ---- concurrent writers and readers ---- */

#define C_WRITERS 4
#define C_READERS 4
#define C_BATCHES 15
#define C_PER 20

static void *writer(void *arg)
{
    long w = (long)arg, failures = 0;
    unsigned seed = (unsigned)(1000 + w);
    failures += ingest(&srv, "conc", 8, (int)w * C_BATCHES, C_BATCHES, C_PER, &seed) != 0;
    return (void *)failures;
}

static void *reader(void *arg)
{
    long failures = 0;
    unsigned seed = (unsigned)(2000 + (long)arg);
    for (int i = 0; i < 40; i++) {
        float q[8];
        for (int d = 0; d < 8; d++)
            q[d] = rnd(&seed);
        char *body = search_body("conc", q, 8);
        it_response r = it_post(&srv, "/search", body);
        free(body);
        failures += r.status != 200;
        it_free(&r);
    }
    return (void *)failures;
}

static void test_concurrent(void)
{
    CU_ASSERT_EQUAL_FATAL(create(&srv, "conc", 8, "cosine"), 201);
    pthread_t th[C_WRITERS + C_READERS];
    for (long i = 0; i < C_WRITERS; i++)
        pthread_create(&th[i], NULL, writer, (void *)i);
    for (long i = 0; i < C_READERS; i++)
        pthread_create(&th[C_WRITERS + i], NULL, reader, (void *)i);
    long failures = 0;
    for (int i = 0; i < C_WRITERS + C_READERS; i++) {
        void *rv;
        pthread_join(th[i], &rv);
        failures += (long)rv;
    }
    CU_ASSERT_EQUAL(failures, 0);
    CU_ASSERT_EQUAL(count_of(&srv, "conc"), C_WRITERS * C_BATCHES * C_PER);
    /* Every document is findable by its own vector. */
    int found = 0;
    for (int id = 0; id < C_WRITERS * C_BATCHES * C_PER; id += 37) {
        char path[96];
        snprintf(path, sizeof path, "/collections/conc/documents/%d", id);
        it_response d = it_get(&srv, path);
        json_t *b = json_pack("{s:s, s:O, s:i}", "collection", "conc", "vector", json_object_get(d.json, "vector"),
                              "top_k", 1);
        it_response r = post_json(&srv, "/search", b);
        found += json_integer_value(json_object_get(json_array_get(json_object_get(r.json, "results"), 0), "id")) == id;
        it_free(&r);
        it_free(&d);
    }
    CU_ASSERT_EQUAL(found, (C_WRITERS * C_BATCHES * C_PER + 36) / 37);
}

/* Eight clients upsert the same id with different vectors at once: exactly one version is
 * visible, and the row and the index agree on it. */
static void *same_id_writer(void *arg)
{
    long k = (long)arg, failures = 0;
    for (int round = 0; round < 10; round++) {
        char body[160];
        snprintf(body, sizeof body, "{\"documents\":[{\"id\":\"same\",\"vector\":[%ld,%d,1,0]}]}", k + 1,
                 round + 1);
        failures += status_of(it_post(&srv, "/collections/same/documents", body)) != 200;
    }
    return (void *)failures;
}

static void test_same_id_concurrently(void)
{
    CU_ASSERT_EQUAL_FATAL(create(&srv, "same", 4, "l2"), 201);
    pthread_t th[8];
    for (long i = 0; i < 8; i++)
        pthread_create(&th[i], NULL, same_id_writer, (void *)i);
    long failures = 0;
    for (int i = 0; i < 8; i++) {
        void *rv;
        pthread_join(th[i], &rv);
        failures += (long)rv;
    }
    CU_ASSERT_EQUAL(failures, 0);
    CU_ASSERT_EQUAL(count_of(&srv, "same"), 1);
    it_response d = it_get(&srv, "/collections/same/documents/same");
    CU_ASSERT_EQUAL_FATAL(d.status, 200);
    for (int exact = 0; exact < 2; exact++) {
        json_t *b = json_pack("{s:s, s:O, s:i, s:b}", "collection", "same", "vector", json_object_get(d.json, "vector"),
                              "top_k", 10, "exact", exact);
        it_response r = post_json(&srv, "/search", b);
        json_t *res = json_object_get(r.json, "results");
        CU_ASSERT(json_array_size(res) == 1 &&
                  !strcmp(json_string_value(json_object_get(json_array_get(res, 0), "id")), "same") &&
                  json_number_value(json_object_get(json_array_get(res, 0), "score")) == 0);
        it_free(&r);
    }
    it_free(&d);
}

/* ---- kill -9 in the middle of a stream of upserts ---- */

#define K_PER 50
#define K_DIM 16
#define K_MAX_BATCHES 200000

typedef struct {
    const it_server *s;
    int first;              /* first batch number of this cycle */
    volatile int stop;
    int acked[K_MAX_BATCHES];
    int sent;               /* batches sent (acknowledged or not) */
} stream;

static void *streamer(void *arg)
{
    stream *st = arg;
    unsigned seed = (unsigned)st->first * 31u + 5u;
    for (int b = st->first; !st->stop && b < K_MAX_BATCHES; b++) {
        st->sent = b + 1;
        st->acked[b] = ingest(st->s, "crash", K_DIM, b, 1, K_PER, &seed) == 0;
        if (!st->acked[b])
            break; /* the server is gone */
    }
    return NULL;
}

static void test_kill9(void)
{
    char data[64], db[128];
    snprintf(data, sizeof data, "/tmp/ragd-kill9-XXXXXX");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(data));
    snprintf(db, sizeof db, "%s/ragd.db", data);
    const char *args[] = {"--data-dir", data, "--max-batch", "64", NULL};
    static stream st; /* large: off the stack */
    memset(&st, 0, sizeof st);
    srand((unsigned)time(NULL));
    /* RAGD_KILL9_CYCLES lengthens the loop (bench/kill9_loop.sh runs hundreds). */
    const char *env = getenv("RAGD_KILL9_CYCLES");
    long wanted = env ? strtol(env, NULL, 10) : 0;
    int cycles = wanted > 0 && wanted < 100000 ? (int)wanted : 6, next_batch = 0;
    for (int cycle = 0; cycle < cycles; cycle++) {
        it_server s;
        CU_ASSERT_EQUAL_FATAL(it_start(&s, args, NULL), 0);
        if (cycle == 0)
            CU_ASSERT_EQUAL_FATAL(create(&s, "crash", K_DIM, "cosine"), 201);
        st.s = &s;
        st.first = next_batch;
        st.stop = 0;
        pthread_t th;
        pthread_create(&th, NULL, streamer, &st);
        usleep((useconds_t)(100000 + rand() % 400000)); /* 0.1 to 0.5 s of writes */
        kill(s.pid, SIGKILL);
        int status;
        waitpid(s.pid, &status, 0);
        s.pid = 0;
        s.exit_status = 0;
        st.stop = 1;
        pthread_join(th, NULL);
        it_stop(&s); /* removes the harness's own dir, not ours */
        next_batch = st.sent;

        char check[64] = "";
        CU_ASSERT_EQUAL(db_int(db, "PRAGMA integrity_check", NULL, check, sizeof check), 0);
        CU_ASSERT_STRING_EQUAL(check, "ok");
        /* No half batch: every batch present has all its documents; every acknowledged batch
         * is present. */
        static int per_batch[K_MAX_BATCHES];
        long rows = -1, fts = -1;
        int half = batch_counts(db, K_PER, per_batch, st.sent), acked = 0;
        CU_ASSERT_EQUAL(half, 0);
        for (int b = 0; b < st.sent; b++) {
            if (!st.acked[b])
                continue;
            acked++;
            if (per_batch[b] != K_PER)
                fprintf(stderr, "cycle %d: acknowledged batch %d has %d rows\n", cycle, b, per_batch[b]);
            CU_ASSERT_EQUAL(per_batch[b], K_PER);
        }
        db_int(db, "SELECT count(*) FROM documents", &rows, NULL, 0);
        db_int(db, "SELECT count(*) FROM fts_1", &fts, NULL, 0);
        CU_ASSERT_EQUAL(rows, fts);
        fprintf(stderr, "kill -9 cycle %d: %d batches acknowledged so far, %ld documents\n", cycle, acked, rows);

        /* Restart: index and rows agree (count, and every row found through the index). */
        CU_ASSERT_EQUAL_FATAL(it_start(&s, args, NULL), 0);
        CU_ASSERT_EQUAL(count_of(&s, "crash"), rows);
        CU_ASSERT(index_state_is(&s, "crash", rows ? "loaded" : "ready"));
        int found = 0, probes = 0;
        for (long id = 0; id < rows; id += 1 + rows / 40) {
            char path[96];
            snprintf(path, sizeof path, "/collections/crash/documents/%ld", id);
            it_response d = it_get(&s, path);
            if (d.status != 200) { /* ids are dense: batches are whole and numbered in order */
                it_free(&d);
                continue;
            }
            for (int exact = 0; exact < 2; exact++) {
                json_t *b = json_pack("{s:s, s:O, s:i, s:b}", "collection", "crash", "vector",
                                      json_object_get(d.json, "vector"), "top_k", 1, "exact", exact);
                it_response r = post_json(&s, "/search", b);
                found += json_integer_value(json_object_get(json_array_get(json_object_get(r.json, "results"), 0),
                                                            "id")) == id;
                probes++;
                it_free(&r);
            }
            it_free(&d);
        }
        CU_ASSERT_EQUAL(found, probes);
        /* Rows without a node record were the tail: once the indexer is done, the graph and
         * the stored records hold every row. */
        CU_ASSERT_EQUAL(wait_indexed(&s, "crash"), rows);
        CU_ASSERT_EQUAL(it_stop(&s), 0);
        long records = -1;
        db_int(db, "SELECT count(*) FROM index_nodes", &records, NULL, 0);
        CU_ASSERT_EQUAL(records, rows);
    }
    CU_ASSERT_EQUAL(it_remove_tree(data), 0);
}

void cu_register(void)
{
    CU_pSuite s = CU_add_suite("durability", setup, teardown);
    CU_add_test(s, "persistence across a restart", test_persistence);
    CU_add_test(s, "concurrent upserts and searches", test_concurrent);
    CU_add_test(s, "the same id from eight clients", test_same_id_concurrently);
    CU_add_test(s, "kill -9 during ingestion", test_kill9);
}
