/* test_search.c — collections, documents and /search on the real daemon: CRUD, batch upserts
 * and every way a batch can be wrong (nothing written), id typing, dense/keyword/hybrid
 * search against rankings computed here, Qdrant filters (top_k filled even when few pass),
 * server-side embedding and the rerank stage on small random checkpoints
 * (tests/reference/make_bert_checkpoints.py), Qdrant's points API, and searches from many
 * clients at once (more than the route's turns, some waiting for the embedder mid-way) each
 * answered as when alone. Restarts, concurrent writes and kill -9 are in test_durability.c. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cu.h"
#include "harness.h"
#include "search_util.h"

#define EMB_DIM 32 /* the test embedder's width */

static it_server srv;
static char ck[64];

static int setup(void)
{
    snprintf(ck, sizeof ck, "/tmp/ragd-ck-XXXXXX");
    if (!mkdtemp(ck))
        return -1;
    char cmd[512], emb[128], rer[128];
    static const char *const variants[] = {"embedder-mean", "reranker"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/reference/make_bert_checkpoints.py' '%s' --only %s",
                 getenv("RAGD_SOURCE_ROOT"), ck, variants[i]);
        if (system(cmd) != 0)
            return -1;
    }
    snprintf(emb, sizeof emb, "%s/embedder-mean", ck);
    snprintf(rer, sizeof rer, "%s/reranker", ck);
    const char *args[] = {"--embedder", emb, "--reranker", rer, "--max-batch", "64", NULL};
    return it_start(&srv, args, NULL);
}

static int teardown(void)
{
    int rc = it_remove_tree(ck);
    return it_stop(&srv) == 0 && rc == 0 ? 0 : -1;
}

/* ---- helpers ---- */

static int ids_equal(json_t *results, const long *want, size_t n)
{
    if (json_array_size(results) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (json_integer_value(json_object_get(json_array_get(results, i), "id")) != want[i])
            return 0;
    return 1;
}

/* ---- collections ---- */

static void test_collections(void)
{
    it_response r = it_post(&srv, "/collections", "{\"name\":\"crud\"}");
    CU_ASSERT_EQUAL(r.status, 201);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(r.json, "dimension")), EMB_DIM); /* the embedder's */
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r.json, "distance")), "cosine");
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(r.json, "hnsw"), "m")), 16);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r.json, "index")), "ready");
    CU_ASSERT(json_integer_value(json_object_get(r.json, "indexed_vectors_count")) == 0 &&
              json_integer_value(json_object_get(r.json, "pending_vectors_count")) == 0);
    it_free(&r);
    r = it_post(&srv, "/collections", "{\"name\":\"crud\",\"dimension\":3}");
    CU_ASSERT(it_is_error(&r, 409, "already_exists", "/name"));
    it_free(&r);
    static const struct {
        const char *body;
        long status;
        const char *code, *field;
    } bad[] = {
        {"{\"name\":\"-x\",\"dimension\":3}", 422, "invalid_value", "/name"},
        {"{\"name\":\"a/b\",\"dimension\":3}", 422, "invalid_value", "/name"},
        {"{\"name\":\"a b\",\"dimension\":3}", 422, "invalid_value", "/name"},
        {"{\"name\":\"\",\"dimension\":3}", 422, "empty_input", "/name"},
        {"{\"name\":\"x2345678901234567890123456789012345678901234567890123456789012345\",\"dimension\":3}", 422,
         "out_of_range", "/name"},
        {"{\"name\":7,\"dimension\":3}", 422, "invalid_type", "/name"},
        {"{\"dimension\":3}", 422, "missing_field", "/name"},
        {"{\"name\":\"d\",\"dimension\":0}", 422, "out_of_range", "/dimension"},
        {"{\"name\":\"d\",\"dimension\":1000000}", 422, "out_of_range", "/dimension"},
        {"{\"name\":\"d\",\"dimension\":3.5}", 422, "invalid_type", "/dimension"},
        {"{\"name\":\"d\",\"dimension\":3,\"distance\":\"manhattan\"}", 422, "invalid_value", "/distance"},
        {"{\"name\":\"d\",\"dimension\":3,\"hnsw\":{\"m\":1}}", 422, "out_of_range", "/hnsw/m"},
        {"{\"name\":\"d\",\"dimension\":3,\"hnsw\":[]}", 422, "invalid_type", "/hnsw"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = it_post(&srv, "/collections", bad[i].body);
        CU_ASSERT(it_is_error(&r, bad[i].status, bad[i].code, bad[i].field));
        it_free(&r);
    }
    CU_ASSERT_EQUAL(create(&srv, "crud.b_2-x", 3, "l2"), 201);
    r = it_get(&srv, "/collections");
    json_t *list = json_object_get(r.json, "collections");
    int seen = 0;
    for (size_t i = 0; i < json_array_size(list); i++) {
        const char *name = json_string_value(json_object_get(json_array_get(list, i), "name"));
        seen += !strcmp(name, "crud") || !strcmp(name, "crud.b_2-x");
        if (i)
            CU_ASSERT(strcmp(json_string_value(json_object_get(json_array_get(list, i - 1), "name")), name) < 0);
    }
    CU_ASSERT_EQUAL(seen, 2);
    it_free(&r);
    r = it_request(&srv, "DELETE", "/collections/crud.b_2-x", NULL, NULL, 0);
    CU_ASSERT(r.status == 200 && json_is_true(json_object_get(r.json, "deleted")));
    it_free(&r);
    static const char *const gone[][2] = {{"GET", "/collections/crud.b_2-x"},
                                          {"DELETE", "/collections/crud.b_2-x"},
                                          {"GET", "/collections/nope/documents/1"},
                                          {"DELETE", "/collections/nope/documents/1"},
                                          {"GET", "/collections/crud/documents/1"}};
    for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++) {
        r = it_request(&srv, gone[i][0], gone[i][1], NULL, NULL, 0);
        CU_ASSERT(it_is_error(&r, 404, "not_found", NULL));
        it_free(&r);
    }
    r = it_post(&srv, "/collections/nope/documents", "{\"documents\":[{\"id\":1,\"vector\":[1,2,3]}]}");
    CU_ASSERT(it_is_error(&r, 404, "not_found", NULL));
    it_free(&r);
    r = it_post(&srv, "/search", "{\"collection\":\"nope\",\"vector\":[1,2,3]}");
    CU_ASSERT(it_is_error(&r, 404, "not_found", NULL));
    it_free(&r);
    /* Re-created under the same name, the collection starts empty. */
    CU_ASSERT_EQUAL(create(&srv, "crud.b_2-x", 3, "dot"), 201);
    CU_ASSERT_EQUAL(count_of(&srv, "crud.b_2-x"), 0);
}

/* ---- bad batches: a clear 4xx and nothing written ---- */

static void test_bad_batches(void)
{
    CU_ASSERT_EQUAL_FATAL(create(&srv, "bad", 3, "cosine"), 201);
    CU_ASSERT_EQUAL(status_of(it_post(&srv, "/collections/bad/documents",
                                      "{\"documents\":[{\"id\":\"seed\",\"vector\":[1,0,0]}]}")),
                    200);
    char many[8192];
    size_t o = (size_t)snprintf(many, sizeof many, "{\"documents\":[");
    for (int i = 0; i < 65; i++)
        o += (size_t)snprintf(many + o, sizeof many - o, "%s{\"id\":%d,\"vector\":[1,2,3]}", i ? "," : "", i);
    snprintf(many + o, sizeof many - o, "]}");
    char long_id[700];
    snprintf(long_id, sizeof long_id, "{\"documents\":[{\"id\":\"%0513d\",\"vector\":[1,2,3]}]}", 7);
#define OK "{\"id\":1,\"vector\":[1,2,3]},"
    const struct {
        const char *body;
        long status;
        const char *code, *field;
    } cases[] = {
        {"{\"documents\":[" OK "{\"id\":2,\"vector\":[1,2]}]}", 422, "invalid_value", "/documents/1/vector"},
        {"{\"documents\":[" OK "{\"id\":2,\"vector\":[1,2,3,4]}]}", 422, "invalid_value", "/documents/1/vector"},
        {"{\"documents\":[" OK "{\"id\":2,\"vector\":[]}]}", 422, "invalid_value", "/documents/1/vector"},
        {"{\"documents\":[" OK "{\"id\":2,\"vector\":[1,1e39,3]}]}", 422, "out_of_range", "/documents/1/vector/1"},
        {"{\"documents\":[" OK "{\"id\":2,\"vector\":[1,2,-1e39]}]}", 422, "out_of_range", "/documents/1/vector/2"},
        {"{\"documents\":[" OK "{\"id\":2,\"vector\":[0,0,0]}]}", 422, "invalid_value", "/documents/1/vector"},
        {"{\"documents\":[" OK "{\"id\":2,\"vector\":[0,-0.0,0]}]}", 422, "invalid_value", "/documents/1/vector"},
        {"{\"documents\":[" OK "{\"id\":2,\"vector\":[1,\"2\",3]}]}", 422, "invalid_type", "/documents/1/vector/1"},
        {"{\"documents\":[" OK "{\"id\":2,\"vector\":\"1,2,3\"}]}", 422, "invalid_type", "/documents/1/vector"},
        {"{\"documents\":[" OK "{\"id\":2.5,\"vector\":[1,2,3]}]}", 422, "invalid_type", "/documents/1/id"},
        {"{\"documents\":[" OK "{\"id\":true,\"vector\":[1,2,3]}]}", 422, "invalid_type", "/documents/1/id"},
        {"{\"documents\":[" OK "{\"id\":{},\"vector\":[1,2,3]}]}", 422, "invalid_type", "/documents/1/id"},
        {"{\"documents\":[" OK "{\"id\":\"\",\"vector\":[1,2,3]}]}", 422, "invalid_value", "/documents/1/id"},
        {"{\"documents\":[" OK "{\"id\":\"a\\u0000b\",\"vector\":[1,2,3]}]}", 400, "invalid_json", NULL},
        {"{\"documents\":[" OK "{\"vector\":[1,2,3]}]}", 422, "missing_field", "/documents/1/id"},
        {long_id, 422, "invalid_value", "/documents/0/id"},
        {"{\"documents\":[" OK "{\"id\":2}]}", 422, "missing_field", "/documents/1/vector"},
        {"{\"documents\":[" OK "{\"id\":2,\"text\":5,\"vector\":[1,2,3]}]}", 422, "invalid_type", "/documents/1/text"},
        {"{\"documents\":[" OK "{\"id\":2,\"metadata\":[1],\"vector\":[1,2,3]}]}", 422, "invalid_type",
         "/documents/1/metadata"},
        {"{\"documents\":[" OK "{\"id\":2,\"metadata\":\"x\",\"vector\":[1,2,3]}]}", 422, "invalid_type",
         "/documents/1/metadata"},
        {"{\"documents\":[" OK "7]}", 422, "invalid_type", "/documents/1"},
        /* a text to embed, but the embedder gives 32 values and the collection holds 3 */
        {"{\"documents\":[" OK "{\"id\":2,\"text\":\"hello\"}]}", 422, "invalid_value", "/documents"},
        {"{\"documents\":[]}", 422, "empty_input", "/documents"},
        {"{\"documents\":{}}", 422, "invalid_type", "/documents"},
        {"{}", 422, "missing_field", "/documents"},
        {"{\"documents\":[{\"id\":1,\"vector\":[NaN,2,3]}]}", 400, "invalid_json", NULL},
        {"{\"documents\":[{\"id\":1,\"vector\":[1,2,3]}],\"documents\":[]}", 400, "invalid_json", NULL},
        {"{\"documents\":[{\"id\":9223372036854775808,\"vector\":[1,2,3]}]}", 400, "invalid_json", NULL},
        {many, 413, "batch_too_large", "/documents"},
    };
#undef OK
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        it_response r = it_post(&srv, "/collections/bad/documents", cases[i].body);
        if (!it_is_error(&r, cases[i].status, cases[i].code, cases[i].field))
            fprintf(stderr, "  (case %zu)\n", i);
        CU_ASSERT(it_is_error(&r, cases[i].status, cases[i].code, cases[i].field));
        it_free(&r);
        CU_ASSERT_EQUAL(count_of(&srv, "bad"), 1); /* nothing written */
    }
    /* The document before the bad one was not written either. */
    it_response r = it_get(&srv, "/collections/bad/documents/1");
    CU_ASSERT(it_is_error(&r, 404, "not_found", NULL));
    it_free(&r);
    /* Query errors. */
    static const struct {
        const char *body;
        const char *code, *field;
    } queries[] = {
        {"{\"collection\":\"bad\",\"vector\":[1,2]}", "invalid_value", "/vector"},
        {"{\"collection\":\"bad\",\"vector\":[1,2,1e39]}", "out_of_range", "/vector/2"},
        {"{\"collection\":\"bad\",\"vector\":[0,0,0]}", "invalid_value", "/vector"},
        {"{\"collection\":\"bad\",\"vector\":[1,2,3],\"top_k\":0}", "out_of_range", "/top_k"},
        {"{\"collection\":\"bad\",\"vector\":[1,2,3],\"top_k\":-1}", "out_of_range", "/top_k"},
        {"{\"collection\":\"bad\",\"vector\":[1,2,3],\"top_k\":1001}", "out_of_range", "/top_k"},
        {"{\"collection\":\"bad\",\"vector\":[1,2,3],\"top_k\":1000000000}", "out_of_range", "/top_k"},
        {"{\"collection\":\"bad\",\"vector\":[1,2,3],\"top_k\":2.5}", "invalid_type", "/top_k"},
        {"{\"collection\":\"bad\",\"vector\":[1,2,3],\"mode\":\"fuzzy\"}", "invalid_value", "/mode"},
        {"{\"collection\":\"bad\",\"vector\":[1,2,3],\"mode\":\"keyword\"}", "missing_field", "/query"},
        {"{\"collection\":\"bad\"}", "missing_field", "/query"},
        {"{\"vector\":[1,2,3]}", "missing_field", "/collection"},
        {"{\"collection\":\"bad\",\"query\":\"\"}", "empty_input", "/query"},
        {"{\"collection\":\"bad\",\"vector\":[1,2,3],\"rerank\":{}}", "missing_field", "/query"},
        {"{\"collection\":\"bad\",\"query\":\"x\",\"mode\":\"keyword\",\"rerank\":{\"top_n\":0}}", "out_of_range",
         "/rerank/top_n"},
        {"{\"collection\":\"bad\",\"vector\":[1,2,3],\"score_threshold\":\"high\"}", "invalid_type",
         "/score_threshold"},
        {"{\"collection\":\"bad\",\"vector\":[1,2,3],\"filter\":[]}", "invalid_type", "/filter"},
        {"{\"collection\":\"bad\",\"vector\":[1,2,3],\"filter\":{\"must\":[{\"key\":\"a\"}]}}", "invalid_value",
         "/filter/must/0"},
        {"{\"collection\":\"bad\",\"vector\":[1,2,3],\"filter\":{\"must\":[{\"key\":\"a\",\"range\":{\"gt\":\"1\"}}]}}",
         "invalid_value", "/filter/must/0/range/gt"},
        {"{\"collection\":\"bad\",\"vector\":[1,2,3],\"filter\":{\"should\":[{\"key\":\"a\",\"match\":{\"any\":[1,[]]}}]}}",
         "invalid_value", "/filter/should/0/match/any/1"},
        {"{\"collection\":\"bad\",\"vector\":[1,2,3],\"filter\":{\"mustnt\":[]}}", "invalid_value", "/filter/mustnt"},
        /* query text needs the embedder's 32 dimensions */
        {"{\"collection\":\"bad\",\"query\":\"hello\"}", "invalid_value", "/query"},
    };
    for (size_t i = 0; i < sizeof queries / sizeof queries[0]; i++) {
        r = it_post(&srv, "/search", queries[i].body);
        if (!it_is_error(&r, 422, queries[i].code, queries[i].field))
            fprintf(stderr, "  (query %zu)\n", i);
        CU_ASSERT(it_is_error(&r, 422, queries[i].code, queries[i].field));
        it_free(&r);
    }
    /* The probe after every rejection: the collection still answers correctly. */
    r = it_post(&srv, "/search", "{\"collection\":\"bad\",\"vector\":[2,0,0]}");
    json_t *hit = json_array_get(json_object_get(r.json, "results"), 0);
    CU_ASSERT(r.status == 200 && !strcmp(json_string_value(json_object_get(hit, "id")), "seed") &&
              fabs(json_number_value(json_object_get(hit, "score")) - 1) < 1e-6);
    it_free(&r);
}

/* ---- ids ---- */

static void test_ids(void)
{
    CU_ASSERT_EQUAL_FATAL(create(&srv, "ids", 2, "l2"), 201);
    CU_ASSERT_EQUAL(status_of(it_post(&srv, "/collections/ids/documents",
                                      "{\"documents\":[{\"id\":7,\"text\":\"int\",\"vector\":[0,0]},"
                                      "{\"id\":\"7\",\"text\":\"str\",\"vector\":[5,5]},"
                                      "{\"id\":-3,\"text\":\"neg\",\"vector\":[9,9]},"
                                      "{\"id\":7,\"text\":\"int, last\",\"vector\":[1,0]}]}")),
                    200);
    CU_ASSERT_EQUAL(count_of(&srv, "ids"), 3);
    it_response r = it_get(&srv, "/collections/ids/documents/7");
    CU_ASSERT(r.status == 200 && json_is_integer(json_object_get(r.json, "id")) &&
              !strcmp(json_string_value(json_object_get(r.json, "text")), "int, last") &&
              json_number_value(json_array_get(json_object_get(r.json, "vector"), 0)) == 1);
    it_free(&r);
    r = it_get(&srv, "/collections/ids/documents/7?id_type=string");
    CU_ASSERT(r.status == 200 && json_is_string(json_object_get(r.json, "id")) &&
              !strcmp(json_string_value(json_object_get(r.json, "text")), "str"));
    it_free(&r);
    r = it_get(&srv, "/collections/ids/documents/-3");
    CU_ASSERT(r.status == 200 && json_integer_value(json_object_get(r.json, "id")) == -3);
    it_free(&r);
    r = it_get(&srv, "/collections/ids/documents/x?id_type=integer");
    CU_ASSERT(it_is_error(&r, 400, "bad_request", NULL));
    it_free(&r);
    r = it_get(&srv, "/collections/ids/documents/7?id_type=float");
    CU_ASSERT(it_is_error(&r, 400, "bad_request", NULL));
    it_free(&r);
    /* The replaced vector of 7 is gone from the index: nearest to (0,0) is 7 at distance 1. */
    r = it_post(&srv, "/search", "{\"collection\":\"ids\",\"vector\":[0,0],\"top_k\":3,\"with_vector\":true}");
    json_t *res = json_object_get(r.json, "results");
    CU_ASSERT(r.status == 200 && json_array_size(res) == 3 &&
              json_integer_value(json_object_get(json_array_get(res, 0), "id")) == 7 &&
              fabs(json_number_value(json_object_get(json_array_get(res, 0), "score")) + 1) < 1e-6 &&
              json_is_string(json_object_get(json_array_get(res, 1), "id")) &&
              json_array_size(json_object_get(json_array_get(res, 0), "vector")) == 2);
    it_free(&r);
    /* Delete, then insert again. */
    r = it_request(&srv, "DELETE", "/collections/ids/documents/7", NULL, NULL, 0);
    CU_ASSERT(r.status == 200 && json_integer_value(json_object_get(r.json, "id")) == 7);
    it_free(&r);
    CU_ASSERT_EQUAL(count_of(&srv, "ids"), 2);
    r = it_get(&srv, "/collections/ids/documents/7?id_type=string");
    CU_ASSERT_EQUAL(r.status, 200);
    it_free(&r);
    CU_ASSERT_EQUAL(status_of(it_post(&srv, "/collections/ids/documents",
                                      "{\"documents\":[{\"id\":7,\"vector\":[0,0.5]}]}")),
                    200);
    r = it_post(&srv, "/search", "{\"collection\":\"ids\",\"vector\":[0,0],\"top_k\":1}");
    CU_ASSERT(json_integer_value(json_object_get(json_array_get(json_object_get(r.json, "results"), 0), "id")) == 7 &&
              fabs(json_number_value(json_object_get(json_array_get(json_object_get(r.json, "results"), 0), "score")) +
                   0.5) < 1e-6);
    it_free(&r);
}

/* An upsert body of ids and vectors only is scanned straight into the batch; one with
 * metadata goes through the JSON tree. Both store the same float32 values, bit for bit,
 * including -0 (an integer to JSON, so 0), denormals, rounding, and integers. */
static void test_fast_upsert_same_values(void)
{
    CU_ASSERT_EQUAL_FATAL(create(&srv, "bits", 8, "l2"), 201);
    const char *vec = "[-0, 1e-45, 0.1, 3.4028234e38, 1E2, -12, 0.30000000000000004, 123456789]";
    char body[512];
    snprintf(body, sizeof body, " {\"documents\" : [ {\"vector\":%s, \"id\": 1},{\"id\":\"two\",\"text\":\"t\",\"vector\":%s}\n]}\n",
             vec, vec);
    CU_ASSERT_EQUAL(status_of(it_post(&srv, "/collections/bits/documents", body)), 200);
    snprintf(body, sizeof body, "{\"documents\":[{\"id\":3,\"metadata\":{},\"vector\":%s}]}", vec);
    CU_ASSERT_EQUAL(status_of(it_post(&srv, "/collections/bits/documents", body)), 200);
    char *dumps[3] = {NULL, NULL, NULL};
    const char *paths[] = {"/collections/bits/documents/1", "/collections/bits/documents/two",
                           "/collections/bits/documents/3"};
    for (int i = 0; i < 3; i++) {
        it_response r = it_get(&srv, paths[i]);
        CU_ASSERT_EQUAL(r.status, 200);
        dumps[i] = json_dumps(json_object_get(r.json, "vector"), JSON_COMPACT | JSON_REAL_PRECISION(17));
        it_free(&r);
    }
    CU_ASSERT(dumps[0] && dumps[1] && dumps[2] && !strcmp(dumps[0], dumps[2]) && !strcmp(dumps[1], dumps[2]) &&
              !strncmp(dumps[2], "[0.0,", 5));
    for (int i = 0; i < 3; i++)
        free(dumps[i]);
    it_response r = it_get(&srv, "/collections/bits/documents/two");
    CU_ASSERT(r.status == 200 && !strcmp(json_string_value(json_object_get(r.json, "text")), "t"));
    it_free(&r);
    CU_ASSERT_EQUAL(count_of(&srv, "bits"), 3);
}

/* Random decimals of 1 to 21 digits, with and without exponents, inside the range the fast
 * path reads exactly and outside it (where strtod decides): stored bit for bit as the JSON
 * tree stores them. */
static void test_fast_upsert_random_decimals(void)
{
    enum { DIM = 256, ROUNDS = 20 };
    CU_ASSERT_EQUAL_FATAL(create(&srv, "decimals", DIM, "l2"), 201);
    unsigned seed = 20261128;
    size_t cap = DIM * 40 + 128;
    char *vec = malloc(cap), *body = malloc(cap + 128);
    CU_ASSERT_FATAL(vec && body);
    int same = 0;
    for (int round = 0; round < ROUNDS; round++) {
        size_t at = 0;
        vec[at++] = '[';
        for (int k = 0; k < DIM; k++) {
            char digits[24];
            int n = 1 + rand_r(&seed) % 21, point = rand_r(&seed) % (n + 1);
            for (int i = 0; i < n; i++)
                digits[i] = (char)('0' + rand_r(&seed) % 10);
            if (point > 1 && digits[0] == '0') /* JSON: no leading zero */
                digits[0] = '1';
            at += (size_t)snprintf(vec + at, cap - at, "%s%s%.*s.%.*s%s", k ? "," : "", rand_r(&seed) % 2 ? "-" : "",
                                   point ? point : 1, point ? digits : "0", n - point ? n - point : 1,
                                   n - point ? digits + point : "0", "");
            if (rand_r(&seed) % 2) /* within float32's range: below 1e38 */
                at += (size_t)snprintf(vec + at, cap - at, "e%d", rand_r(&seed) % (61 - point) - 30);
        }
        snprintf(vec + at, cap - at, "]");
        snprintf(body, cap + 128, "{\"documents\":[{\"id\":1,\"vector\":%s}]}", vec);
        CU_ASSERT_EQUAL(status_of(it_post(&srv, "/collections/decimals/documents", body)), 200);
        snprintf(body, cap + 128, "{\"documents\":[{\"id\":2,\"metadata\":{},\"vector\":%s}]}", vec);
        CU_ASSERT_EQUAL(status_of(it_post(&srv, "/collections/decimals/documents", body)), 200);
        char *dumps[2] = {NULL, NULL};
        for (int i = 0; i < 2; i++) {
            it_response r = it_get(&srv, i ? "/collections/decimals/documents/2" : "/collections/decimals/documents/1");
            dumps[i] = json_dumps(json_object_get(r.json, "vector"), JSON_COMPACT | JSON_REAL_PRECISION(17));
            it_free(&r);
        }
        same += dumps[0] && dumps[1] && !strcmp(dumps[0], dumps[1]);
        free(dumps[0]);
        free(dumps[1]);
    }
    CU_ASSERT_EQUAL(same, ROUNDS);
    free(vec);
    free(body);
}

/* ---- search modes ---- */

static void test_modes(void)
{
    CU_ASSERT_EQUAL_FATAL(create(&srv, "modes", 3, "dot"), 201);
    CU_ASSERT_EQUAL(status_of(it_post(&srv, "/collections/modes/documents",
                                      "{\"documents\":["
                                      "{\"id\":1,\"text\":\"the cat sat on the mat\",\"vector\":[1,0,0]},"
                                      "{\"id\":2,\"text\":\"dogs chase cats\",\"vector\":[0,1,0],\"metadata\":{\"k\":2}},"
                                      "{\"id\":3,\"text\":\"a bird\",\"vector\":[0,0,1]},"
                                      "{\"id\":4,\"text\":\"cat cat cat\",\"vector\":[0.5,0.5,0]},"
                                      "{\"id\":5,\"vector\":[2,2,2]}]}")),
                    200);
    it_response r = it_post(&srv, "/search", "{\"collection\":\"modes\",\"vector\":[1,0.1,0],\"top_k\":3}");
    static const long dense[] = {5, 1, 4};
    json_t *res = json_object_get(r.json, "results");
    CU_ASSERT(r.status == 200 && ids_equal(res, dense, 3));
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r.json, "mode")), "dense");
    CU_ASSERT(json_is_number(json_object_get(r.json, "time_ms")));
    CU_ASSERT(fabs(json_number_value(json_object_get(json_array_get(res, 0), "score")) - 2.2) < 1e-6);
    CU_ASSERT(fabs(json_number_value(json_object_get(json_array_get(res, 2), "score")) - 0.55) < 1e-6);
    CU_ASSERT(!strcmp(json_string_value(json_object_get(json_array_get(res, 1), "text")), "the cat sat on the mat"));
    CU_ASSERT_PTR_NULL(json_object_get(json_array_get(res, 0), "vector"));
    it_free(&r);
    /* score_threshold, with_text false, top_k above the collection size */
    r = it_post(&srv, "/search",
                "{\"collection\":\"modes\",\"vector\":[1,0.1,0],\"top_k\":100,\"score_threshold\":0.6,"
                "\"with_text\":false}");
    static const long above[] = {5, 1};
    CU_ASSERT(ids_equal(json_object_get(r.json, "results"), above, 2) &&
              !json_object_get(json_array_get(json_object_get(r.json, "results"), 1), "text"));
    it_free(&r);
    r = it_post(&srv, "/search", "{\"collection\":\"modes\",\"vector\":[1,0.1,0],\"top_k\":100}");
    CU_ASSERT_EQUAL(json_array_size(json_object_get(r.json, "results")), 5);
    it_free(&r);
    /* keyword: BM25 over "cat" (the word alone; "cats" is another token) */
    r = it_post(&srv, "/search", "{\"collection\":\"modes\",\"query\":\"cat\",\"mode\":\"keyword\"}");
    static const long kw[] = {4, 1};
    res = json_object_get(r.json, "results");
    CU_ASSERT(r.status == 200 && ids_equal(res, kw, 2) &&
              json_number_value(json_object_get(json_array_get(res, 0), "score")) >
                  json_number_value(json_object_get(json_array_get(res, 1), "score")));
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r.json, "mode")), "keyword");
    it_free(&r);
    /* FTS5 syntax in user text is inert. */
    static const char *const hostile[] = {"cat\\\" OR", "NEAR(cat bird", "cat AND", "* ( ) :", "\\\"\\\"",
                                          "col:cat", "^cat", "-cat"};
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        char body[256];
        snprintf(body, sizeof body, "{\"collection\":\"modes\",\"query\":\"%s\",\"mode\":\"keyword\"}", hostile[i]);
        r = it_post(&srv, "/search", body);
        CU_ASSERT_EQUAL(r.status, 200);
        it_free(&r);
    }
    r = it_post(&srv, "/search", "{\"collection\":\"modes\",\"query\":\"NEAR(cat bird\",\"mode\":\"keyword\"}");
    CU_ASSERT_EQUAL(json_array_size(json_object_get(r.json, "results")), 3); /* near, cat (2 documents), bird */
    it_free(&r);
    /* hybrid: RRF of dense [5, 3, ...] (dot) and keyword [3] ("bird"): 3 fuses first */
    r = it_post(&srv, "/search",
                "{\"collection\":\"modes\",\"query\":\"bird\",\"vector\":[0,0,1],\"mode\":\"hybrid\",\"top_k\":2}");
    res = json_object_get(r.json, "results");
    CU_ASSERT(r.status == 200 && json_array_size(res) == 2 &&
              json_integer_value(json_object_get(json_array_get(res, 0), "id")) == 3 &&
              fabs(json_number_value(json_object_get(json_array_get(res, 0), "score")) - (1.0 / 61 + 1.0 / 62)) < 1e-6 &&
              json_integer_value(json_object_get(json_array_get(res, 1), "id")) == 5 &&
              fabs(json_number_value(json_object_get(json_array_get(res, 1), "score")) - 1.0 / 61) < 1e-6);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r.json, "mode")), "hybrid");
    it_free(&r);
    /* exact: true gives the same ranking */
    r = it_post(&srv, "/search", "{\"collection\":\"modes\",\"vector\":[1,0.1,0],\"top_k\":3,\"exact\":true}");
    CU_ASSERT(ids_equal(json_object_get(r.json, "results"), dense, 3));
    it_free(&r);
}

/* ---- filters ---- */

#define F_N 300
#define F_DIM 8
static float f_vecs[F_N][F_DIM];

/* The expected ranking: cosine against q over the documents `pass` accepts. */
static size_t expected(const float *q, int (*pass)(int), size_t k, long *out)
{
    double qs = 0, score[F_N];
    for (int d = 0; d < F_DIM; d++)
        qs += (double)q[d] * q[d];
    int idx[F_N], n = 0;
    for (int i = 0; i < F_N; i++) {
        if (!pass(i))
            continue;
        double dot = 0, vs = 0;
        for (int d = 0; d < F_DIM; d++) {
            dot += (double)q[d] * f_vecs[i][d];
            vs += (double)f_vecs[i][d] * f_vecs[i][d];
        }
        score[i] = dot / sqrt(qs * vs);
        idx[n++] = i;
    }
    for (int a = 0; a < n; a++) /* selection sort: small n */
        for (int b = a + 1; b < n; b++)
            if (score[idx[b]] > score[idx[a]]) {
                int t = idx[a];
                idx[a] = idx[b];
                idx[b] = t;
            }
    size_t m = (size_t)n < k ? (size_t)n : k;
    for (size_t i = 0; i < m; i++)
        out[i] = idx[i];
    return m;
}

static int p_group3(int i) { return i % 10 == 3; }
static int p_few(int i) { return i == 17 || i == 233; }
static int p_range(int i) { return i >= 100 && i < 150 && i % 2 == 0; }
static int p_should_not(int i) { return (i % 10 == 1 || i % 7 == 0) && !(i % 3 == 0); }
static int p_tag(int i) { return i % 5 == 0 || i % 5 == 1; }
static int p_nested(int i) { return i % 3 == 2 && i % 10 != 2; }
static int p_none(int i) { return i < 0; }

static void test_filters(void)
{
    CU_ASSERT_EQUAL_FATAL(create(&srv, "filters", F_DIM, "cosine"), 201);
    unsigned seed = 7;
    for (int b = 0; b < F_N / 50; b++) {
        json_t *docs = json_array();
        for (int i = b * 50; i < b * 50 + 50; i++) {
            for (int d = 0; d < F_DIM; d++)
                f_vecs[i][d] = rnd(&seed);
            json_t *tags = json_pack("[s]", i % 5 == 0 ? "red" : i % 5 == 1 ? "blue" : "grey");
            json_array_append_new(docs, json_pack("{s:i, s:o, s:{s:i, s:i, s:o, s:{s:i}}}", "id", i, "vector",
                                                  vec_json(f_vecs[i], F_DIM), "metadata", "i", i, "group", i % 10,
                                                  "tags", tags, "nested", "x", i % 3));
        }
        CU_ASSERT_EQUAL(status_of(post_json(&srv, "/collections/filters/documents", json_pack("{s:o}", "documents", docs))),
                        200);
    }
    static const struct {
        const char *filter;
        int (*pass)(int);
    } cases[] = {
        {"{\"must\":[{\"key\":\"group\",\"match\":{\"value\":3}}]}", p_group3},
        {"{\"must\":[{\"key\":\"i\",\"match\":{\"any\":[17,233,100000]}}]}", p_few},
        {"{\"must\":[{\"key\":\"i\",\"range\":{\"gte\":100,\"lt\":150}}],"
         "\"must_not\":[{\"key\":\"group\",\"match\":{\"any\":[1,3,5,7,9]}}]}",
         p_range},
        {"{\"should\":[{\"key\":\"group\",\"match\":{\"value\":1}},{\"key\":\"i\",\"match\":{\"any\":[0,7,14,21,28,35,"
         "42,49,56,63,70,77,84,91,98,105,112,119,126,133,140,147,154,161,168,175,182,189,196,203,210,217,224,231,238,"
         "245,252,259,266,273,280,287,294]}}],\"must_not\":{\"key\":\"nested.x\",\"match\":{\"value\":0}}}",
         p_should_not},
        {"{\"must\":[{\"key\":\"tags\",\"match\":{\"any\":[\"red\",\"blue\"]}}]}", p_tag},
        {"{\"must\":[{\"key\":\"nested.x\",\"range\":{\"gt\":1.5}},{\"must_not\":[{\"key\":\"group\",\"match\":{\"value\":"
         "2}}]}]}",
         p_nested},
        {"{\"must\":[{\"key\":\"group\",\"match\":{\"value\":\"3\"}}]}", p_none}, /* a string never equals 3 */
        {"{\"must\":[{\"key\":\"missing.key\",\"range\":{\"gt\":0}}]}", p_none},
    };
    float q[F_DIM];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int exact = 0; exact < 2; exact++) {
            for (int d = 0; d < F_DIM; d++)
                q[d] = rnd(&seed);
            json_error_t jerr;
            json_t *filter = json_loads(cases[c].filter, 0, &jerr);
            CU_ASSERT_PTR_NOT_NULL_FATAL(filter);
            it_response r = post_json(&srv, "/search",
                                      json_pack("{s:s, s:o, s:i, s:o, s:b, s:b}", "collection", "filters", "vector",
                                                vec_json(q, F_DIM), "top_k", 10, "filter", filter, "exact", exact,
                                                "with_metadata", 0));
            long want[10];
            size_t n = expected(q, cases[c].pass, 10, want);
            int ok = r.status == 200 && ids_equal(json_object_get(r.json, "results"), want, n);
            if (!ok)
                fprintf(stderr, "filter %zu (exact %d): expected %zu results, got %.400s\n", c, exact, n, r.body);
            CU_ASSERT(ok);
            CU_ASSERT(!json_object_get(json_array_get(json_object_get(r.json, "results"), 0), "metadata"));
            it_free(&r);
        }
    }
    /* keyword and hybrid honour the filter too */
    it_response r = it_post(&srv, "/search",
                            "{\"collection\":\"filters\",\"query\":\"anything\",\"mode\":\"hybrid\",\"vector\":[1,1,1,"
                            "1,1,1,1,1],\"top_k\":50,\"filter\":{\"must\":[{\"key\":\"group\",\"match\":{\"value\":3}}]}}");
    json_t *res = json_object_get(r.json, "results");
    int all_pass = r.status == 200 && json_array_size(res) == 30;
    for (size_t i = 0; i < json_array_size(res); i++)
        all_pass &= json_integer_value(json_object_get(json_object_get(json_array_get(res, i), "metadata"), "group")) == 3;
    CU_ASSERT(all_pass);
    it_free(&r);
}

/* ---- server-side embedding and the rerank stage ---- */

static void test_embedding_and_rerank(void)
{
    CU_ASSERT_EQUAL_FATAL(status_of(it_post(&srv, "/collections", "{\"name\":\"rag\"}")), 201);
    static const char *const texts[] = {"the capital of france is paris", "bananas are yellow fruit",
                                        "sqlite stores data in a single file", "paris is a city in france",
                                        "rust and c are systems languages", "the cat sleeps all day"};
    json_t *docs = json_array();
    for (int i = 0; i < 6; i++)
        json_array_append_new(docs, json_pack("{s:i, s:s, s:{s:i}}", "id", i, "text", texts[i], "metadata", "n", i));
    it_response r = post_json(&srv, "/collections/rag/documents", json_pack("{s:o}", "documents", docs));
    CU_ASSERT(r.status == 200 && json_integer_value(json_object_get(r.json, "embedded")) == 6);
    it_free(&r);
    /* The stored vector is the /embed vector of the text. */
    r = it_get(&srv, "/collections/rag/documents/2");
    it_response e = it_post(&srv, "/embed", "{\"inputs\":\"sqlite stores data in a single file\"}");
    json_t *stored = json_object_get(r.json, "vector"), *direct = json_array_get(e.json, 0);
    double worst = json_array_size(stored) == EMB_DIM ? 0 : 1;
    for (size_t k = 0; k < json_array_size(stored); k++)
        worst = fmax(worst, fabs(json_number_value(json_array_get(stored, k)) - json_number_value(json_array_get(direct, k))));
    CU_ASSERT(worst < 1e-6);
    it_free(&r);
    it_free(&e);
    /* A query equal to a document's text finds it first with cosine 1. */
    r = it_post(&srv, "/search", "{\"collection\":\"rag\",\"query\":\"bananas are yellow fruit\",\"top_k\":3}");
    json_t *first = json_array_get(json_object_get(r.json, "results"), 0);
    CU_ASSERT(r.status == 200 && json_integer_value(json_object_get(first, "id")) == 1 &&
              fabs(json_number_value(json_object_get(first, "score")) - 1) < 1e-5);
    it_free(&r);
    /* Search then rerank in one call: the same scores /rerank gives, sorted by them. */
    r = it_post(&srv, "/search",
                "{\"collection\":\"rag\",\"query\":\"where is paris\",\"mode\":\"hybrid\",\"top_k\":6,"
                "\"rerank\":{\"top_n\":4},\"with_text\":false}");
    json_t *res = json_object_get(r.json, "results");
    CU_ASSERT_EQUAL_FATAL(r.status, 200);
    CU_ASSERT_EQUAL(json_array_size(res), 4);
    json_t *rr_texts = json_array();
    for (int i = 0; i < 6; i++)
        json_array_append_new(rr_texts, json_string(texts[i]));
    it_response ref = post_json(&srv, "/rerank", json_pack("{s:s, s:o}", "query", "where is paris", "texts", rr_texts));
    CU_ASSERT_EQUAL_FATAL(ref.status, 200);
    for (size_t i = 0; i < json_array_size(res); i++) {
        json_t *hit = json_array_get(res, i), *want = json_array_get(ref.json, i);
        CU_ASSERT(json_integer_value(json_object_get(hit, "id")) == json_integer_value(json_object_get(want, "index")));
        CU_ASSERT(fabs(json_number_value(json_object_get(hit, "rerank_score")) -
                       json_number_value(json_object_get(want, "score"))) < 1e-5);
        CU_ASSERT(json_is_number(json_object_get(hit, "score")) && !json_object_get(hit, "text") &&
                  json_is_object(json_object_get(hit, "metadata")));
    }
    it_free(&ref);
    it_free(&r);
}

/* ---- many searches at once ---- */

/* More searches than the route's turns (one per core) at once: some wait in the turn queue
 * and are run by the thread whose turn ended, and the text queries give their turn back
 * mid-way to wait for the embedder (the next in the queue then starts on a worker). Every
 * reply must be the one the same search got alone. */
#define CONC_CLIENTS 8
#define CONC_ROUNDS 25
static const char *const conc_bodies[] = {
    "{\"collection\":\"rag\",\"query\":\"bananas are yellow fruit\",\"top_k\":3,\"with_text\":false}",
    "{\"collection\":\"rag\",\"query\":\"where is paris\",\"mode\":\"hybrid\",\"top_k\":6,\"with_text\":false}",
    "{\"collection\":\"rag\",\"query\":\"cat\",\"mode\":\"keyword\",\"top_k\":2}",
    "{\"collection\":\"rag\",\"query\":\"single file\",\"top_k\":4,\"filter\":{\"must\":[{\"key\":\"n\",\"range\":{\"gte\":2}}]}}",
};
#define N_CONC_BODIES (sizeof conc_bodies / sizeof conc_bodies[0])
static json_t *conc_alone[N_CONC_BODIES];

/* 1 when two result lists hold the same ids in the same order, scores within 1e-5 (a text
 * embedded in a batch with others may differ in the last bits). */
static int same_results(json_t *a, json_t *b)
{
    if (json_array_size(a) != json_array_size(b) || json_array_size(a) == 0)
        return 0;
    for (size_t i = 0; i < json_array_size(a); i++) {
        json_t *x = json_array_get(a, i), *y = json_array_get(b, i);
        if (!json_equal(json_object_get(x, "id"), json_object_get(y, "id")) ||
            fabs(json_number_value(json_object_get(x, "score")) - json_number_value(json_object_get(y, "score"))) > 1e-5)
            return 0;
    }
    return 1;
}

static void *conc_client(void *arg)
{
    long k = (long)arg, wrong = 0;
    for (int i = 0; i < CONC_ROUNDS; i++) {
        size_t b = (size_t)(k + i) % N_CONC_BODIES;
        it_response r = it_post(&srv, "/search", conc_bodies[b]);
        if (r.status != 200 || !same_results(json_object_get(r.json, "results"), conc_alone[b])) {
            fprintf(stderr, "\n  client %ld, search %zu: %ld %s\n", k, b, r.status, r.body ? r.body : "");
            wrong++;
        }
        it_free(&r);
    }
    return (void *)wrong;
}

static void test_concurrent_searches(void)
{
    for (size_t b = 0; b < N_CONC_BODIES; b++) {
        it_response r = it_post(&srv, "/search", conc_bodies[b]);
        CU_ASSERT_EQUAL_FATAL(r.status, 200);
        conc_alone[b] = json_incref(json_object_get(r.json, "results"));
        CU_ASSERT(json_array_size(conc_alone[b]) > 0);
        it_free(&r);
    }
    pthread_t th[CONC_CLIENTS];
    for (long k = 0; k < CONC_CLIENTS; k++)
        pthread_create(&th[k], NULL, conc_client, (void *)k);
    long wrong = 0;
    for (int k = 0; k < CONC_CLIENTS; k++) {
        void *rv;
        pthread_join(th[k], &rv);
        wrong += (long)rv;
    }
    CU_ASSERT_EQUAL(wrong, 0);
    for (size_t b = 0; b < N_CONC_BODIES; b++)
        json_decref(conc_alone[b]);
}

/* ---- Qdrant's points API over the same collections ---- */

static void test_qdrant_alias(void)
{
    CU_ASSERT_EQUAL_FATAL(create(&srv, "qd", 3, "cosine"), 201);
    const char *put = "{\"points\":[{\"id\":1,\"vector\":[1,0,0],\"payload\":{\"city\":\"Paris\"}},"
                      "{\"id\":2,\"vector\":[0.9,0.1,0],\"payload\":{\"city\":\"Berlin\"}},"
                      "{\"id\":\"three\",\"vector\":[0,1,0]}]}";
    it_response r = it_request(&srv, "PUT", "/collections/qd/points", NULL, put, strlen(put));
    CU_ASSERT(r.status == 200 && !strcmp(json_string_value(json_object_get(r.json, "status")), "ok") &&
              !strcmp(json_string_value(json_object_get(json_object_get(r.json, "result"), "status")), "completed"));
    it_free(&r);
    CU_ASSERT_EQUAL(count_of(&srv, "qd"), 3);
    r = it_get(&srv, "/collections/qd/documents/2"); /* the payload is the metadata */
    CU_ASSERT(!strcmp(json_string_value(json_object_get(json_object_get(r.json, "metadata"), "city")), "Berlin"));
    it_free(&r);
    r = it_post(&srv, "/collections/qd/points/query",
                "{\"query\":[1,0.05,0],\"limit\":2,\"with_payload\":true,"
                "\"filter\":{\"must_not\":[{\"key\":\"city\",\"match\":{\"value\":\"Paris\"}}]}}");
    json_t *points = json_object_get(json_object_get(r.json, "result"), "points");
    CU_ASSERT(r.status == 200 && json_array_size(points) == 2 && json_is_number(json_object_get(r.json, "time")) &&
              json_integer_value(json_object_get(json_array_get(points, 0), "id")) == 2 &&
              !strcmp(json_string_value(json_object_get(json_object_get(json_array_get(points, 0), "payload"), "city")),
                      "Berlin") &&
              !strcmp(json_string_value(json_object_get(json_array_get(points, 1), "id")), "three") &&
              !json_object_get(json_array_get(points, 1), "payload"));
    it_free(&r);
    r = it_post(&srv, "/collections/qd/points/query", "{\"query\":{\"nearest\":[0,1,0]},\"limit\":1}");
    points = json_object_get(json_object_get(r.json, "result"), "points");
    CU_ASSERT(json_array_size(points) == 1 && !json_object_get(json_array_get(points, 0), "payload") &&
              fabs(json_number_value(json_object_get(json_array_get(points, 0), "score")) - 1) < 1e-6);
    it_free(&r);
    static const struct {
        const char *method, *path, *body, *code, *field;
    } bad[] = {
        {"PUT", "/collections/qd/points", "{\"points\":[{\"id\":4,\"vector\":[1,0,0]},{\"id\":5,\"vector\":[1,0]}]}",
         "invalid_value", "/points/1/vector"},
        {"PUT", "/collections/qd/points", "{\"points\":[{\"id\":4,\"vector\":[1,0,0],\"payload\":[]}]}",
         "invalid_type", "/points/0/payload"},
        {"PUT", "/collections/qd/points", "{\"points\":[{\"id\":4}]}", "missing_field", "/points/0/vector"},
        {"PUT", "/collections/qd/points", "{\"documents\":[]}", "missing_field", "/points"},
        {"POST", "/collections/qd/points/query", "{\"query\":[1,0]}", "invalid_value", "/query"},
        {"POST", "/collections/qd/points/query", "{\"query\":{\"nearest\":[1,0,1e39]}}", "out_of_range",
         "/query/nearest/2"},
        {"POST", "/collections/qd/points/query", "{\"query\":[1,0,0],\"limit\":0}", "out_of_range", "/limit"},
        {"POST", "/collections/qd/points/query", "{\"query\":[1,0,0],\"params\":{\"hnsw_ef\":0}}", "out_of_range",
         "/params/hnsw_ef"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = it_request(&srv, bad[i].method, bad[i].path, NULL, bad[i].body, strlen(bad[i].body));
        CU_ASSERT(it_is_error(&r, 422, bad[i].code, bad[i].field));
        it_free(&r);
    }
    CU_ASSERT_EQUAL(count_of(&srv, "qd"), 3);
}

void cu_register(void)
{
    CU_pSuite s = CU_add_suite("search", setup, teardown);
    CU_add_test(s, "collections", test_collections);
    CU_add_test(s, "bad batches write nothing", test_bad_batches);
    CU_add_test(s, "ids keep their type", test_ids);
    CU_add_test(s, "the fast upsert path stores the same values", test_fast_upsert_same_values);
    CU_add_test(s, "the fast upsert path reads random decimals as the JSON tree does", test_fast_upsert_random_decimals);
    CU_add_test(s, "dense, keyword, hybrid", test_modes);
    CU_add_test(s, "filters", test_filters);
    CU_add_test(s, "server-side embedding and rerank", test_embedding_and_rerank);
    CU_add_test(s, "many searches at once, each answered as alone", test_concurrent_searches);
    CU_add_test(s, "Qdrant's points API", test_qdrant_alias);
}
