/* test_fault_alloc.c — allocation failures, SQLite-style: for N = 1, 2, ... the Nth
 * allocation of an operation fails, until an N is reached that the operation never gets to;
 * each loop runs twice, failing only the Nth allocation, then every allocation from the
 * Nth on until the operation returns (memory that stays short; requests strided, see
 * PERSISTENT_STRIDE), after which the same operation must succeed. Over
 *   - requests: route + JSON body + validation + handler through srv_dispatch_detached, on
 *     the routes that write and read collections, documents, search, datasets, the
 *     tokenizer, adapters and generation (TGI's and OpenAI's, streamed too);
 *   - ingest: a batch upsert into a real store (st_upsert);
 *   - adapter loading: real PEFT directories (LoRA, prompt and prefix tuning) written by
 *     adp_save, read back by adp_load;
 *   - job state changes: create, queued -> running -> succeeded, progress, cancel, datasets.
 * Every iteration checks: no crash; the answer the fault-free run gives, or the documented
 * error (503 out_of_memory for a request, ST_ERR_NOMEM / MDL_ENOMEM in process); no leak
 * (live heap blocks outside SQLite's own back to the count before the operation, and the
 * whole process back to its baseline when the store closes); the state consistent (a batch
 * wholly present or absent and found by search when present, a job in a state it may be in).
 * Each loop prints how many faults it injected. */
#include <fcntl.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cu.h"
#include "fault.h"
#include "fault_app.h"
#include "jobs.h"
#include "json_watch.h"

#define MAX_N 200000 /* a loop that has not finished by then is a failure */
/* The persistent loop over requests takes every PERSISTENT_STRIDE-th N (RAGD_FAULT_STRIDE
 * overrides it; 1 runs them all, in about 6 minutes): a run from N on fails the allocations
 * of every later N too, so a stride leaves out only where the first failure falls, and
 * keeps the suite short (a failed write waits for its store to settle). The other
 * persistent loops are quick and take every N. */
#define PERSISTENT_STRIDE 8

/* How a loop fails allocations: the Nth only, or every one from the Nth on (every thread's,
 * the store's indexer included) until the operation returns. */
typedef struct {
    int persistent;
    long stride;
} fault_mode;
static fault_mode nth_only = {0, 1}, from_nth = {1, 1}, requests_from_nth = {1, PERSISTENT_STRIDE};

static fault_app fa;
static int have_generator;
static long total_injected;
static long streams_failed; /* streamed replies that ended with their error event */

/* Live heap blocks that are not SQLite's: SQLite keeps pages cached across operations (and
 * frees them all on close, which the close check covers); everything else an operation
 * allocates must be freed by the time it returns. Taken once the indexer has caught up. */
static long heap_live(void)
{
    fault_app_settle(&fa);
    int cur = 0, hi = 0;
    sqlite3_status(SQLITE_STATUS_MALLOC_COUNT, &cur, &hi, 0);
    return fault_alloc_live() - cur;
}

/* Prints a loop's figures: the runs in which allocations failed, and how many failed. */
static void report(const char *what, const fault_mode *m, long runs, long injected)
{
    if (m->persistent)
        printf("\n  fault_alloc: %-48s %6ld runs from N on (stride %ld), %7ld faults injected", what, runs, m->stride,
               injected);
    else
        printf("\n  fault_alloc: %-48s %6ld faults injected", what, injected);
    total_injected += injected;
}

/* ================================================================ requests */

typedef struct {
    const char *method, *path, *body;
    void (*undo)(void);    /* puts the state back, whatever happened (NULL: nothing to undo) */
    int (*consistent)(void); /* 1 when the write is wholly absent, 2 wholly present, 0 neither
                              * (NULL: no check) */
    int sse;               /* a streamed reply: 1 TGI's events, 2 OpenAI's (0: not streamed) */
} req_case;

static const char docs_body[] =
    "{\"documents\":["
    "{\"id\":1,\"text\":\"alpha beta gamma\",\"vector\":[1,0,0,0,0,0,0,0.5],\"metadata\":{\"tag\":\"a\",\"n\":1}},"
    "{\"id\":\"two\",\"text\":\"beta delta\",\"vector\":[0,1,0,0,0,0,0.5,0],\"metadata\":{\"tag\":\"b\",\"n\":2}},"
    "{\"id\":3,\"vector\":[0,0,1,0,0,0.5,0,0]},"
    "{\"id\":\"four\",\"text\":\"gamma\",\"vector\":[0,0,0,1,0.5,0,0,0],\"metadata\":{\"tag\":\"a\",\"list\":[1,2]}}]}";
static const char points_body[] =
    "{\"points\":[{\"id\":10,\"vector\":[1,1,0,0,0,0,0,0],\"payload\":{\"tag\":\"q\"}},"
    "{\"id\":11,\"vector\":[0,1,1,0,0,0,0,0]}]}";

static int count_present(const char *coll, const st_id *ids, size_t n)
{
    int present = 0;
    for (size_t i = 0; i < n; i++) {
        st_record r;
        st_error e;
        if (st_document_get(fa.app.db, coll, &ids[i], &r, &e) == 0) {
            present++;
            st_record_free(&r);
        }
    }
    return present;
}

static const st_id batch_ids[] = {{0, 1, NULL, 0}, {1, 0, "two", 3}, {0, 3, NULL, 0}, {1, 0, "four", 4}};
static const st_id point_ids[] = {{0, 10, NULL, 0}, {0, 11, NULL, 0}};

static void undo_collection(void)
{
    st_error e;
    st_collection_delete(fa.app.db, "made", &e);
}
static int made_consistent(void)
{
    st_collection c;
    st_error e;
    int rc = st_collection_get(fa.app.db, "made", &c, &e);
    return rc == 0 ? (c.dimension == 8 && c.count == 0) * 2 : e.code == ST_ERR_NOT_FOUND;
}
static void undo_docs(void)
{
    st_error e;
    for (size_t i = 0; i < 4; i++)
        st_document_delete(fa.app.db, "docs", &batch_ids[i], &e);
}
static int docs_consistent(void)
{
    int p = count_present("docs", batch_ids, 4);
    return p == 0 ? 1 : p == 4 ? 2 : 0;
}
static void undo_points(void)
{
    st_error e;
    for (size_t i = 0; i < 2; i++)
        st_document_delete(fa.app.db, "docs", &point_ids[i], &e);
}
static int points_consistent(void)
{
    int p = count_present("docs", point_ids, 2);
    return p == 0 ? 1 : p == 2 ? 2 : 0;
}
static void undo_adapter(void)
{
    fault_reply r;
    if (fault_app_request(&fa, "DELETE", "/adapters/lo", NULL, &r) == 0)
        free(r.body);
}

static const req_case req_cases[] = {
    {"POST", "/collections", "{\"name\":\"made\",\"dimension\":8,\"distance\":\"cosine\",\"m\":8}", undo_collection,
     made_consistent, 0},
    {"POST", "/collections/docs/documents", docs_body, undo_docs, docs_consistent, 0},
    {"PUT", "/collections/docs/points", points_body, undo_points, points_consistent, 0},
    {"POST", "/search",
     "{\"collection\":\"docs\",\"vector\":[1,0,0,0,0,0,0,0],\"top_k\":3,\"with_vector\":true,"
     "\"filter\":{\"must\":[{\"key\":\"tag\",\"match\":{\"any\":[\"a\",\"b\"]}}],\"must_not\":[{\"key\":\"n\",\"range\":{\"gt\":5}}]}}",
     NULL, NULL, 0},
    {"POST", "/search", "{\"collection\":\"docs\",\"query\":\"beta\",\"mode\":\"keyword\",\"top_k\":3}", NULL, NULL, 0},
    {"POST", "/collections/docs/points/query", "{\"query\":[0,1,0,0,0,0,0,0],\"limit\":2,\"with_payload\":true}", NULL,
     NULL, 0},
    {"GET", "/collections/docs/documents/two", NULL, NULL, NULL, 0},
    {"GET", "/collections", NULL, NULL, NULL, 0},
    {"POST", "/datasets", "{\"prompt\":\"a\",\"completion\":\"b\"}\n{\"prompt\":\"c\",\"completion\":\"d\"}\n", NULL, NULL, 0},
    {"POST", "/collections", "{\"name\":\"bad\",\"dimension\":-1}", NULL, NULL, 0}, /* a 422 must stay a 422 */
    {"POST", "/search", "{\"collection\":\"docs\",\"vector\":[1,2],\"top_k\":3}", NULL, NULL, 0},
    {"POST", "/collections/docs/documents", "{\"documents\":[{\"id\":1,\"vector\":[1,0,0,0,0,0,0,\"x\"]}]}", NULL, NULL, 0},
    /* With the generator (../shared): */
    {"POST", "/tokenize", "{\"inputs\":\"Hello world, hello names\"}", NULL, NULL, 0},
    {"POST", "/adapters", "{\"name\":\"lo\"}", undo_adapter, NULL, 0},
    {"GET", "/adapters", NULL, NULL, NULL, 0},
    {"POST", "/generate", "{\"inputs\":\"emma\",\"parameters\":{\"max_new_tokens\":3,\"details\":true,\"seed\":7}}",
     NULL, NULL, 0},
    {"POST", "/v1/completions", "{\"prompt\":\"emma\",\"max_tokens\":3,\"temperature\":0}", NULL, NULL, 0},
    /* Streams run here too: srv_dispatch_detached runs a stream to its end into the reply (its
     * pump thread, the generation's steps and events as on the daemon; only MHD's side, the
     * fills on a worker and the suspended connection, is fault_mhd's). Once the 200 is
     * queued a failure can only end the stream with its error event. From the Nth on, the
     * detached reply cannot grow once the stream fails (-1: only the leak, the gate and the
     * next request are checked); fault_mhd checks those streams' events. */
    {"POST", "/generate_stream",
     "{\"inputs\":\"emma\",\"parameters\":{\"max_new_tokens\":3,\"details\":true,\"seed\":7}}", NULL, NULL, 1},
    {"POST", "/v1/completions", "{\"prompt\":\"emma\",\"max_tokens\":3,\"temperature\":0,\"stream\":true}", NULL,
     NULL, 2},
};
#define N_GENERATOR_CASES 7

/* Runs one request with the Nth allocation failing (from the Nth on when persistent, and then
 * the same request again without faults); returns 1 when the fault fired. */
static int one_request(const req_case *c, const fault_reply *ref, long n, int persistent, int *ok)
{
    long before = heap_live();
    fault_reply r;
    /* A stream's events are made on its pump thread: count every thread's allocations. The
     * process is otherwise idle (the indexer settled), so N is the same allocation each run. */
    if (c->sse)
        fault_alloc_arm_all_threads(n, persistent);
    else
        fault_alloc_arm(n, persistent);
    int rc = fault_app_request(&fa, c->method, c->path, c->body, &r);
    fault_alloc_disarm();
    int fired = fault_alloc_fired();
    fault_reply_parse(&r);
    /* -1: the detached harness could not allocate the reply copy (the daemon has a static
     * one); the handler ran and its reply was freed, so the other checks still hold, and
     * the status is known. */
    if (rc != 0 && r.status != 0 && r.status != ref->status && r.status != 503) {
        fprintf(stderr, "\n%s %s, allocation %ld failed: %u (without a fault: %u)\n", c->method, c->path, n, r.status,
                ref->status);
        *ok = 0;
    }
    if (rc == 0 && r.status != ref->status && !(r.status == 503 && !strcmp(r.code, "out_of_memory"))) {
        fprintf(stderr, "\n%s %s, allocation %ld failed: %u %s (without a fault: %u): %.300s\n", c->method, c->path,
                n, r.status, r.code, ref->status, r.body);
        *ok = 0;
    }
    if (rc == 0 && r.status == ref->status && strcmp(r.code, ref->code) != 0) {
        fprintf(stderr, "\n%s %s, allocation %ld failed: code %s instead of %s: %.300s\n", c->method, c->path, n,
                r.code, ref->code, r.body);
        *ok = 0;
    }
    if (c->sse && rc == 0 && r.status == 200) { /* without a socket nothing cuts the stream */
        char why[300];
        int trailing;
        fault_sse v = fault_sse_compare(r.body, ref->body, c->sse == 2, &trailing, why, sizeof why);
        if (v == FAULT_SSE_FAILED)
            streams_failed++;
        if (v == FAULT_SSE_BAD || v == FAULT_SSE_CUT || trailing) {
            fprintf(stderr, "\n%s %s, allocation %ld failed: %s\n%.600s\n", c->method, c->path, n,
                    v == FAULT_SSE_BAD ? why : "the stream ended without its last event", r.body);
            *ok = 0;
        }
    }
    /* The generator's place at its gate is given back with the request (a stream's at its end). */
    if (have_generator && fa.app.models[APP_GENERATOR].gate.held != 0) {
        fprintf(stderr, "\n%s %s, allocation %ld failed: the generator's gate holds %u places\n", c->method, c->path,
                n, (unsigned)fa.app.models[APP_GENERATOR].gate.held);
        *ok = 0;
    }
    char reply[200];
    snprintf(reply, sizeof reply, "%u %.180s", r.status, r.body ? r.body : "");
    free(r.body);
    int state = c->consistent ? c->consistent() : 1;
    if (!state) {
        fprintf(stderr, "\n%s %s, allocation %ld failed: the state is not consistent\n", c->method, c->path, n);
        *ok = 0;
    }
    /* Always: a write can commit and its reply still fail (503), which a client retries. */
    if (c->undo)
        c->undo();
    long after = heap_live();
    /* Fewer blocks is no leak: a collection whose write failed reloads its index from the
     * database, in fewer, larger blocks. A write that committed (its reply failed after) keeps
     * what the index grew by, even once undone. Every block is counted on close (test_close). */
    if (after > before && state == 1) {
        fprintf(stderr, "\n%s %s, allocation %ld failed: %ld blocks leaked (reply %s)\n", c->method, c->path, n,
                after - before, reply);
        fault_alloc_print_armed_live();
        *ok = 0;
    }
    if (persistent) { /* memory is back: the same request gets the fault-free answer */
        fault_reply again;
        int arc = fault_app_request(&fa, c->method, c->path, c->body, &again);
        fault_reply_parse(&again);
        if (arc != 0 || again.status != ref->status || strcmp(again.code, ref->code) != 0) {
            fprintf(stderr, "\n%s %s, allocations from %ld on failed, then none: %u %s (without a fault: %u %s)\n",
                    c->method, c->path, n, again.status, again.code, ref->status, ref->code);
            *ok = 0;
        }
        free(again.body);
        if (c->consistent && c->consistent() != (ref->status < 300 ? 2 : 1)) {
            fprintf(stderr, "\n%s %s, allocations from %ld on failed, then none: the state is not consistent\n",
                    c->method, c->path, n);
            *ok = 0;
        }
        if (c->undo)
            c->undo();
    }
    return fired;
}

static void loop_request(const req_case *c, const fault_mode *m)
{
    /* The fault-free answer, twice: the first run warms caches (tokenizer, prepared state). */
    fault_reply ref;
    for (int i = 0; i < 2; i++) {
        CU_ASSERT_EQUAL_FATAL(fault_app_request(&fa, c->method, c->path, c->body, &ref), 0);
        fault_reply_parse(&ref);
        if (c->undo)
            c->undo();
        if (i == 0)
            free(ref.body);
    }
    if (ref.status >= 500)
        fprintf(stderr, "\n%s %s without a fault: %u %s\n", c->method, c->path, ref.status, ref.body);
    CU_ASSERT(ref.status < 500);
    {
        int ok = 1;
        long n = 1, runs = 0, injected = fault_alloc_injected();
        streams_failed = 0;
        while (n < MAX_N && ok && one_request(c, &ref, n, m->persistent, &ok)) {
            n += m->stride;
            runs++;
        }
        CU_ASSERT(ok);
        CU_ASSERT(n < MAX_N);
        char what[96];
        snprintf(what, sizeof what, "%s %s%s (%u)", c->method, c->path, c->sse == 2 ? " stream" : "", ref.status);
        report(what, m, runs, fault_alloc_injected() - injected);
        if (c->sse)
            printf("; %ld streams ended by their error event", streams_failed);
    }
    free(ref.body);
}

static void requests_setup(void)
{
    fault_reply r;
    CU_ASSERT_EQUAL_FATAL(
        fault_app_request(&fa, "POST", "/collections", "{\"name\":\"docs\",\"dimension\":8,\"distance\":\"cosine\"}", &r),
        0);
    CU_ASSERT_EQUAL(r.status, 201);
    free(r.body);
    /* Documents the searches find, besides the batch the loop writes and removes. */
    CU_ASSERT_EQUAL_FATAL(
        fault_app_request(&fa, "POST", "/collections/docs/documents",
                          "{\"documents\":[{\"id\":100,\"text\":\"beta base\",\"vector\":[1,1,1,0,0,0,0,0],"
                          "\"metadata\":{\"tag\":\"a\",\"n\":1}}]}",
                          &r),
        0);
    CU_ASSERT_EQUAL(r.status, 200);
    free(r.body);
    if (have_generator) { /* an adapter for POST /adapters to load */
        adp_config c = {.type = ADP_LORA, .r = 2, .lora_alpha = 4, .targets = ADP_ALL_MODULES};
        adp_adapter *a;
        mdl_error me;
        char dir[256];
        snprintf(dir, sizeof dir, "%s/lo", fa.adapters);
        CU_ASSERT_EQUAL_FATAL(mkdir(dir, 0755), 0);
        CU_ASSERT_EQUAL_FATAL(adp_create(gpt2_get_config(fa.app.models[APP_GENERATOR].gpt), &c, &a, &me), 0);
        CU_ASSERT_EQUAL(adp_save(a, dir, NULL, &me), 0);
        adp_free(a);
    }
}

static void loop_requests(const fault_mode *m)
{
    size_t n = sizeof req_cases / sizeof req_cases[0] - (have_generator ? 0 : N_GENERATOR_CASES);
    const char *only = getenv("RAGD_FAULT_ONLY"); /* to reproduce one loop: a substring of "METHOD PATH" */
    for (size_t i = 0; i < n; i++) {
        char what[96];
        snprintf(what, sizeof what, "%s %s", req_cases[i].method, req_cases[i].path);
        if (only && !strstr(what, only))
            continue;
        loop_request(&req_cases[i], m);
    }
}

static void test_requests(void)
{
    requests_setup();
    loop_requests(&nth_only);
}

static void test_requests_from_n(void) { loop_requests(&requests_from_nth); }

/* ================================================================ ingest */

#define DIM 16
#define BATCH 6

/* Removes the batch and puts back the two old documents it replaced. */
static void ingest_undo(st_db *db, const st_doc *batch, const st_doc *old)
{
    st_error e;
    for (size_t i = 0; i < BATCH; i++)
        st_document_delete(db, "ingest", &batch[i].id, &e);
    CU_ASSERT_EQUAL(st_upsert(db, "ingest", DIM, &old[3], 1, &e), 0);
    CU_ASSERT_EQUAL(st_upsert(db, "ingest", DIM, &old[17], 1, &e), 0);
}

static void loop_ingest(const fault_mode *m)
{
    st_db *db = fa.app.db;
    st_error e;
    st_collection spec = {.name = "ingest", .dimension = DIM, .distance = ST_COSINE, .m = 8, .ef_construction = 32};
    st_collection_delete(db, "ingest", &e); /* the last loop's */
    CU_ASSERT_EQUAL_FATAL(st_collection_create(db, &spec, &e), 0);
    /* 40 documents already there, then a batch of 6 (two replacing old ids) over and over. */
    float vec[40 + BATCH][DIM];
    unsigned seed = 7;
    for (size_t i = 0; i < 40 + BATCH; i++)
        for (size_t k = 0; k < DIM; k++)
            vec[i][k] = (float)((seed = seed * 1103515245u + 12345u) >> 8 & 0xffff) / 65536.0f - 0.5f;
    st_doc old[40];
    char texts[40][32];
    for (size_t i = 0; i < 40; i++) {
        snprintf(texts[i], sizeof texts[i], "old document %zu", i);
        old[i] = (st_doc){{0, (int64_t)i, NULL, 0}, texts[i], strlen(texts[i]), "{\"old\":true}", 12, vec[i]};
    }
    CU_ASSERT_EQUAL_FATAL(st_upsert(db, "ingest", DIM, old, 40, &e), 0);
    static const char *const ids[BATCH] = {"new-a", "new-b", "new-c", "new-d", NULL, NULL};
    st_doc batch[BATCH];
    for (size_t i = 0; i < BATCH; i++) {
        st_id id = ids[i] ? (st_id){1, 0, ids[i], strlen(ids[i])} : (st_id){0, (int64_t)(i == 4 ? 3 : 17), NULL, 0};
        static const char meta[] = "{\"batch\":1,\"tags\":[\"x\"]}";
        batch[i] = (st_doc){id, "a new text", 10, meta, sizeof meta - 1, vec[40 + i]};
    }
    {
        long n = 1, bad = 0, runs = 0, injected = fault_alloc_injected();
        for (; n < MAX_N; n += m->stride, runs++) {
            long before = heap_live();
            fault_alloc_arm(n, m->persistent);
            int rc = st_upsert(db, "ingest", DIM, batch, BATCH, &e);
            fault_alloc_disarm();
            int fired = fault_alloc_fired();
            st_error ue = e;
            if (rc != 0 && st_error_kind(&e) != ST_ERR_NOMEM) {
                fprintf(stderr, "\nst_upsert, allocation %ld failed: code %d (%s)\n", n, e.code, e.msg);
                bad++;
            }
            /* Wholly present or absent, each new document found by search when present. */
            int present = 0, found = 0;
            for (size_t i = 0; i < BATCH; i++) {
                st_record r;
                if (st_document_get(db, "ingest", &batch[i].id, &r, &e) == 0) {
                    present += r.text && !strcmp(r.text, "a new text") && r.vector &&
                               !memcmp(r.vector, batch[i].vector, sizeof(float) * DIM);
                    st_record_free(&r);
                }
                st_query q = {.mode = ST_MODE_DENSE, .vector = batch[i].vector, .dimension = DIM, .top_k = 1};
                st_record *res;
                size_t nres;
                if (st_search(db, "ingest", &q, &res, &nres, &e) == 0) {
                    found += nres == 1 && res[0].score > 0.9999;
                    st_results_free(res, nres);
                }
            }
            int want = rc == 0 ? BATCH : 0;
            if (present != want || found != want) {
                fprintf(stderr, "\nst_upsert (rc %d: %s), allocation %ld failed: %d of %d present, %d found\n", rc,
                        rc ? ue.msg : "", n, present, BATCH, found);
                bad++;
            }
            if (rc == 0) /* back to the 40 old documents */
                ingest_undo(db, batch, old);
            /* Fewer blocks: the index reloaded; a committed batch (undone above) leaves what the
             * index grew by (see one_request). */
            long leaked = heap_live() - before;
            if (leaked > 0 && rc != 0) {
                fprintf(stderr, "\nst_upsert, allocation %ld failed: %ld blocks leaked\n", n,
                        leaked);
                bad++;
            }
            if (m->persistent && rc != 0) { /* memory is back: the same batch is written */
                int again = st_upsert(db, "ingest", DIM, batch, BATCH, &e);
                if (again != 0) {
                    fprintf(stderr, "\nst_upsert, allocations from %ld on failed, then none: %s\n", n, e.msg);
                    bad++;
                } else
                    ingest_undo(db, batch, old);
            }
            if (!fired || bad)
                break;
        }
        CU_ASSERT_EQUAL(bad, 0);
        CU_ASSERT(n < MAX_N);
        report("st_upsert (6 documents into 40)", m, runs, fault_alloc_injected() - injected);
    }
    st_collection c;
    CU_ASSERT_EQUAL(st_collection_get(db, "ingest", &c, &e), 0);
    CU_ASSERT_EQUAL(c.count, 40);
}

static void test_ingest(void) { loop_ingest(&nth_only); }
static void test_ingest_from_n(void) { loop_ingest(&from_nth); }

/* ================================================================ adapter loading */

static void loop_adapter_load(const fault_mode *m)
{
    /* A small GPT-2 shape: the adapter files are real PEFT files all the same. */
    static const gpt2_config base = {.vocab = 64, .n_positions = 32, .n_embd = 16, .n_layer = 2, .n_head = 2,
                                     .n_inner = 64, .ln_eps = 1e-5f, .tied = 1, .eos_id = -1};
    static const struct {
        const char *name;
        adp_config cfg;
    } kinds[] = {
        {"lora", {.type = ADP_LORA, .r = 4, .lora_alpha = 8, .targets = ADP_ALL_MODULES}},
        {"lora-attn", {.type = ADP_LORA, .r = 2, .lora_alpha = 2, .use_rslora = 1,
                       .targets = ADP_MODULE_BIT(ADP_ATTN_C_ATTN)}},
        {"prompt", {.type = ADP_PROMPT_TUNING, .num_virtual_tokens = 4}},
        {"prefix", {.type = ADP_PREFIX_TUNING, .num_virtual_tokens = 3}},
    };
    int root = open(fa.adapters, O_RDONLY | O_DIRECTORY);
    CU_ASSERT_FATAL(root >= 0);
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        adp_adapter *a, *b;
        mdl_error me;
        char dir[256];
        snprintf(dir, sizeof dir, "%s/%s", fa.adapters, kinds[k].name);
        fault_rmtree(dir); /* the last loop's */
        CU_ASSERT_EQUAL_FATAL(mkdir(dir, 0755), 0);
        CU_ASSERT_EQUAL_FATAL(adp_create(&base, &kinds[k].cfg, &a, &me), 0);
        for (size_t i = 0; i < a->n_weights; i++)
            a->weights[i] = (float)i * 0.001f - 0.5f;
        CU_ASSERT_EQUAL_FATAL(adp_save(a, dir, "gpt2", &me), 0);
        {
            long n = 1, bad = 0, runs = 0, injected = fault_alloc_injected();
            for (; n < MAX_N; n += m->stride, runs++) {
                long before = fault_alloc_live();
                fault_alloc_arm(n, m->persistent);
                int rc = adp_load(root, kinds[k].name, &base, &b, &me);
                fault_alloc_disarm();
                int fired = fault_alloc_fired();
                if (rc != 0 && me.code != MDL_ENOMEM) {
                    fprintf(stderr, "\nadp_load %s, allocation %ld failed: code %d (%s)\n", kinds[k].name, n, me.code,
                            me.msg);
                    bad++;
                }
                if (rc == 0 && (b->n_weights != a->n_weights ||
                                memcmp(b->weights, a->weights, sizeof(float) * a->n_weights) != 0)) {
                    fprintf(stderr, "\nadp_load %s, allocation %ld failed: different weights\n", kinds[k].name, n);
                    bad++;
                }
                if (rc == 0)
                    adp_free(b);
                if (fault_alloc_live() != before) {
                    fprintf(stderr, "\nadp_load %s, allocation %ld failed: %ld blocks leaked\n", kinds[k].name, n,
                            fault_alloc_live() - before);
                    bad++;
                }
                if (m->persistent && rc != 0) { /* memory is back: the adapter loads, whole */
                    int again = adp_load(root, kinds[k].name, &base, &b, &me);
                    if (again != 0 || memcmp(b->weights, a->weights, sizeof(float) * a->n_weights) != 0) {
                        fprintf(stderr, "\nadp_load %s, allocations from %ld on failed, then none: %s\n",
                                kinds[k].name, n, again ? me.msg : "different weights");
                        bad++;
                    }
                    if (again == 0)
                        adp_free(b);
                }
                if (!fired || bad)
                    break;
            }
            CU_ASSERT_EQUAL(bad, 0);
            CU_ASSERT(n < MAX_N);
            char what[64];
            snprintf(what, sizeof what, "adp_load (%s)", kinds[k].name);
            report(what, m, runs, fault_alloc_injected() - injected);
        }
        adp_free(a);
    }
    close(root);
}

static void test_adapter_load(void) { loop_adapter_load(&nth_only); }
static void test_adapter_load_from_n(void) { loop_adapter_load(&from_nth); }

/* ================================================================ job state changes */

typedef enum { OP_CREATE, OP_START, OP_PROGRESS, OP_FINISH, OP_CANCEL, OP_DATASET, N_OPS } job_op;
static const char *const op_names[N_OPS] = {"st_job_create",   "st_job_transition queued->running",
                                            "st_job_progress", "st_job_transition running->succeeded",
                                            "st_job_transition queued->cancelled", "st_dataset_put"};

/* The job each op starts from (made without faults); "" for create and datasets. */
static void prepare(job_op op, char id[ST_JOB_ID_MAX])
{
    st_error e;
    *id = '\0';
    if (op == OP_CREATE || op == OP_DATASET)
        return;
    CU_ASSERT_EQUAL(st_job_create(fa.app.jobs, "sft", "job-adapter", "{\"x\":1}", 4, id, &e), 0);
    if (op == OP_PROGRESS || op == OP_FINISH)
        CU_ASSERT_EQUAL(st_job_transition(fa.app.jobs, id, ST_JOB_BIT(ST_JOB_QUEUED), ST_JOB_RUNNING, NULL, &e), 0);
}

static int run_op(job_op op, char id[ST_JOB_ID_MAX], st_error *e)
{
    st_jobs *j = fa.app.jobs;
    char ds[ST_JOB_ID_MAX];
    switch (op) {
    case OP_CREATE:
        return st_job_create(j, "dpo", "job-adapter", "{\"request\":[1,2,3]}", 9, id, e);
    case OP_START:
        return st_job_transition(j, id, ST_JOB_BIT(ST_JOB_QUEUED), ST_JOB_RUNNING, NULL, e);
    case OP_PROGRESS:
        return st_job_progress(j, id, 1, 4, 0.25, "{\"loss\":1.5,\"lr\":0.001}", e);
    case OP_FINISH:
        return st_job_transition(j, id, ST_JOB_BIT(ST_JOB_RUNNING), ST_JOB_SUCCEEDED, NULL, e);
    case OP_CANCEL:
        return st_job_transition(j, id, ST_JOB_BIT(ST_JOB_QUEUED) | ST_JOB_BIT(ST_JOB_RUNNING), ST_JOB_CANCELLED, NULL,
                                 e);
    default:
        return st_dataset_put(j, "{\"prompt\":\"a\",\"completion\":\"b\"}\n", 32, 1, ds, e);
    }
}

/* After the op (rc 0 or not): is the job where it may be, and is it whole? Also moves it to a
 * final state so that the adapter name is free for the next iteration. */
static int job_consistent(job_op op, const char *id, int rc)
{
    st_jobs *j = fa.app.jobs;
    st_error e;
    st_job *list;
    size_t n, active = 0;
    if (st_job_list(j, 8, &list, &n, &e) != 0) /* newest first: an active job is among the last made */
        return 0;
    char active_id[ST_JOB_ID_MAX] = "";
    for (size_t i = 0; i < n; i++)
        if (list[i].status == ST_JOB_QUEUED || list[i].status == ST_JOB_RUNNING) {
            active++;
            snprintf(active_id, sizeof active_id, "%s", list[i].id);
        }
    st_job_list_free(list, n);
    if (op == OP_CREATE || op == OP_DATASET) {
        if (active != (op == OP_CREATE && rc == 0))
            return 0;
    } else {
        st_job job;
        if (st_job_get(j, id, &job, &e) != 0)
            return 0;
        static const st_job_status want_ok[N_OPS] = {0, ST_JOB_RUNNING, ST_JOB_RUNNING, ST_JOB_SUCCEEDED,
                                                     ST_JOB_CANCELLED, 0};
        static const st_job_status want_fail[N_OPS] = {0, ST_JOB_QUEUED, ST_JOB_RUNNING, ST_JOB_RUNNING,
                                                       ST_JOB_QUEUED, 0};
        int good = job.status == (rc == 0 ? want_ok[op] : want_fail[op]);
        if (op == OP_PROGRESS) { /* progress and its metrics row together */
            char **rows;
            long *steps;
            size_t nh = 0;
            good = good && st_job_history(j, id, 0, 10, &rows, &steps, &nh, &e) == 0;
            if (good) {
                good = job.step == (rc == 0 ? 1 : 0) && nh == (rc == 0 ? 1u : 0u);
                st_job_history_free(rows, steps, nh);
            }
        }
        if (op == OP_FINISH && rc == 0)
            good = good && *job.finished_at;
        st_job_clear(&job);
        if (!good)
            return 0;
    }
    if (*active_id)
        st_job_transition(j, active_id, ST_JOB_BIT(ST_JOB_QUEUED) | ST_JOB_BIT(ST_JOB_RUNNING), ST_JOB_FAILED, "test",
                          &e);
    return 1;
}

static void loop_jobs(const fault_mode *m)
{
    for (job_op op = 0; op < N_OPS; op++)
        {
            long n = 1, bad = 0, runs = 0, injected = fault_alloc_injected();
            for (; n < MAX_N; n += m->stride, runs++) {
                char id[ST_JOB_ID_MAX];
                st_error e;
                prepare(op, id);
                long before = heap_live();
                fault_alloc_arm(n, m->persistent);
                int rc = run_op(op, id, &e);
                fault_alloc_disarm();
                int fired = fault_alloc_fired();
                if (rc != 0 && (rc != -1 || st_error_kind(&e) != ST_ERR_NOMEM)) {
                    fprintf(stderr, "\n%s, allocation %ld failed: rc %d code %d (%s)\n", op_names[op], n, rc, e.code,
                            e.msg);
                    bad++;
                }
                if (heap_live() != before) {
                    fprintf(stderr, "\n%s, allocation %ld failed: %ld blocks leaked\n", op_names[op], n,
                            heap_live() - before);
                    bad++;
                }
                if (!job_consistent(op, id, rc)) {
                    fprintf(stderr, "\n%s (rc %d), allocation %ld failed: the job is not where it should be\n",
                            op_names[op], rc, n);
                    bad++;
                }
                if (m->persistent && rc != 0) { /* memory is back: the same change succeeds */
                    prepare(op, id);
                    int again = run_op(op, id, &e);
                    if (again != 0 || !job_consistent(op, id, again)) {
                        fprintf(stderr, "\n%s, allocations from %ld on failed, then none: rc %d (%s)\n",
                                op_names[op], n, again, again ? e.msg : "the job is not where it should be");
                        bad++;
                    }
                }
                if (!fired || bad)
                    break;
            }
            CU_ASSERT_EQUAL(bad, 0);
            CU_ASSERT(n < MAX_N);
            report(op_names[op], m, runs, fault_alloc_injected() - injected);
        }
}

static void test_jobs(void) { loop_jobs(&nth_only); }
static void test_jobs_from_n(void) { loop_jobs(&from_nth); }

/* ================================================================ JSON */

/* jsonw_loadb over texts with long strings and keys (past any first buffer), escapes,
 * numbers and nesting: the same value, or NULL with oom set; never a syntax error. */
static void loop_json(const fault_mode *m)
{
    static const char *const texts[] = {
        docs_body,
        "{\"inputs\":\"emma\",\"parameters\":{\"max_new_tokens\":3,\"details\":true,\"seed\":7}}",
        "[\"a string that is longer than sixty-four bytes, with escapes \\n \\u00e9 \\ud83d\\ude00 and UTF-8 \xc3\xa9\","
        "-12.5e-3,123456789012,{\"a key that is also longer than sixty-four bytes, to be copied out of the buffer\":[[],{}]}]",
    };
    for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
        size_t len = strlen(texts[t]);
        int oom;
        json_t *ref = jsonw_loadb(texts[t], len, JSON_REJECT_DUPLICATES, NULL, &oom);
        CU_ASSERT_PTR_NOT_NULL_FATAL(ref);
        long n = 1, runs = 0, injected = fault_alloc_injected(), bad = 0;
        for (; n < MAX_N; n++, runs++) {
            long before = fault_alloc_live();
            json_error_t e;
            fault_alloc_arm(n, m->persistent);
            json_t *j = jsonw_loadb(texts[t], len, JSON_REJECT_DUPLICATES, &e, &oom);
            fault_alloc_disarm();
            int fired = fault_alloc_fired();
            if (j ? !json_equal(j, ref) || oom : !oom) {
                fprintf(stderr, "\njsonw_loadb (text %zu), allocation %ld failed: %s\n", t, n,
                        j ? "a different value" : e.text);
                bad++;
            }
            json_decref(j);
            if (fault_alloc_live() != before) {
                fprintf(stderr, "\njsonw_loadb (text %zu), allocation %ld failed: %ld blocks leaked\n", t, n,
                        fault_alloc_live() - before);
                bad++;
            }
            if (!fired || bad)
                break;
        }
        json_decref(ref);
        CU_ASSERT_EQUAL(bad, 0);
        char what[64];
        snprintf(what, sizeof what, "jsonw_loadb (text %zu, %zu bytes)", t, len);
        report(what, m, runs, fault_alloc_injected() - injected);
    }
}

static void test_json(void) { loop_json(&nth_only); }
static void test_json_from_n(void) { loop_json(&from_nth); }

/* ================================================================ whole process */

static long baseline;

static int setup(void)
{
    const char *stride = getenv("RAGD_FAULT_STRIDE");
    if (stride && strtol(stride, NULL, 10) > 0)
        requests_from_nth.stride = strtol(stride, NULL, 10);
    /* Once through without faults first: what the process allocates once and keeps (SQLite's
     * global state, the time zone, OpenBLAS's buffers) is then in the baseline. A stream
     * too: glibc keeps the stack of a joined thread (its pump's) for the next, with a block
     * (the thread's TLS vector) that is freed only with the process. */
    if (fault_app_open(&fa, 1) == 0) {
        fault_reply r;
        if (fault_app_request(&fa, "POST", "/generate_stream", "{\"inputs\":\"a\"}", &r) == 0)
            free(r.body);
    }
    fault_app_close(&fa);
    baseline = fault_alloc_live();
    if (fault_app_open(&fa, 1) == 0) {
        have_generator = 1;
        return 0;
    }
    fault_app_close(&fa);
    return fault_app_open(&fa, 0);
}

static void test_close(void)
{
    fault_app_close(&fa);
    /* Everything the suite opened is gone, SQLite's caches and the models included. The
     * allocator's own per-thread state and OpenBLAS's buffers (made before main) do not
     * count: they were there in the baseline. */
    fault_expect_all_freed(baseline, "fault_alloc", total_injected);
}

void cu_register(void)
{
    CU_pSuite s = CU_add_suite("fault_alloc", setup, NULL);
    CU_add_test(s, "JSON parsing: the same value or out of memory, no leak", test_json);
    CU_add_test(s, "JSON parsing, allocations failing from N on: the same", test_json_from_n);
    CU_add_test(s, "requests: 503 out_of_memory or the right answer, no leak", test_requests);
    CU_add_test(s, "ingest: a batch wholly present or absent, no leak", test_ingest);
    CU_add_test(s, "adapter loading: MDL_ENOMEM or the same adapter, no leak", test_adapter_load);
    CU_add_test(s, "job state changes: a valid state, no leak", test_jobs);
    CU_add_test(s, "requests, allocations failing from N on: the same, then the request succeeds",
                test_requests_from_n);
    CU_add_test(s, "adapter loading, allocations failing from N on: the same, then it loads", test_adapter_load_from_n);
    CU_add_test(s, "ingest, allocations failing from N on: the same, then the batch is written", test_ingest_from_n);
    CU_add_test(s, "job state changes, allocations failing from N on: the same, then they succeed", test_jobs_from_n);
    CU_add_test(s, "everything freed on close", test_close);
}
