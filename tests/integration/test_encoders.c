/* test_encoders.c — /embed, /v1/embeddings, /rerank, /v1/rerank and /v2/rerank over HTTP on
 * small random checkpoints in the Hugging Face layouts (tests/reference generates them;
 * their numbers are checked against PyTorch in tests/oracle). Here: shapes, normalization,
 * truncation limits, batching that changes nothing, sorting, the three response shapes. */
#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cu.h"
#include "harness.h"

static it_server srv;
static char ck[64];

static int setup(void)
{
    snprintf(ck, sizeof ck, "/tmp/ragd-ck-XXXXXX");
    if (!mkdtemp(ck))
        return -1;
    char cmd[512], emb[128], rer[128];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/reference/make_bert_checkpoints.py' '%s'",
             getenv("RAGD_SOURCE_ROOT"), ck);
    if (system(cmd) != 0)
        return -1;
    snprintf(emb, sizeof emb, "%s/embedder-mean", ck);
    snprintf(rer, sizeof rer, "%s/reranker", ck);
    const char *args[] = {"--embedder", emb, "--reranker", rer, "--max-batch", "16", NULL};
    return it_start(&srv, args, NULL);
}

static int teardown(void)
{
    int rc = it_remove_tree(ck);
    return it_stop(&srv) == 0 && rc == 0 ? 0 : -1;
}

static double norm(json_t *v)
{
    double s = 0;
    for (size_t i = 0; i < json_array_size(v); i++)
        s += json_number_value(json_array_get(v, i)) * json_number_value(json_array_get(v, i));
    return sqrt(s);
}

static double max_diff(json_t *a, json_t *b)
{
    double m = json_array_size(a) == json_array_size(b) ? 0 : INFINITY;
    for (size_t i = 0; i < json_array_size(a); i++)
        m = fmax(m, fabs(json_number_value(json_array_get(a, i)) - json_number_value(json_array_get(b, i))));
    return m;
}

static void test_embed(void)
{
    it_response r = it_post(&srv, "/embed", "{\"inputs\":[\"a cat sat\",\"Héllo naïve café 北京\"]}");
    CU_ASSERT_EQUAL_FATAL(r.status, 200);
    CU_ASSERT_EQUAL(json_array_size(r.json), 2);
    for (size_t i = 0; i < 2; i++) {
        CU_ASSERT_EQUAL(json_array_size(json_array_get(r.json, i)), 32);
        CU_ASSERT(fabs(norm(json_array_get(r.json, i)) - 1.0) < 1e-5);
    }
    /* The same text alone and inside a padded batch gives the same vector. */
    it_response alone = it_post(&srv, "/embed", "{\"inputs\":\"a cat sat\"}");
    CU_ASSERT(max_diff(json_array_get(alone.json, 0), json_array_get(r.json, 0)) < 1e-5);
    it_free(&alone);
    it_free(&r);

    r = it_post(&srv, "/embed", "{\"inputs\":\"a cat sat\",\"normalize\":false}");
    CU_ASSERT(r.status == 200 && fabs(norm(json_array_get(r.json, 0)) - 1.0) > 1e-3);
    it_free(&r);
    r = it_post(&srv, "/embed", "{\"inputs\":\"a cat sat\",\"dimensions\":8}");
    CU_ASSERT(json_array_size(json_array_get(r.json, 0)) == 8 && fabs(norm(json_array_get(r.json, 0)) - 1) < 1e-5);
    it_free(&r);
}

static void test_embed_errors(void)
{
    char longer[1024];
    size_t n = (size_t)snprintf(longer, sizeof longer, "{\"inputs\":[\"ok\",\"");
    for (int i = 0; i < 60; i++)
        n += (size_t)snprintf(longer + n, sizeof longer - n, "word ");
    snprintf(longer + n, sizeof longer - n, "\"]}");
    it_response r = it_post(&srv, "/embed", longer);
    CU_ASSERT(it_is_error(&r, 413, "input_too_long", "/inputs/1"));
    it_free(&r);
    n = strlen(longer) - 1; /* reopen the object */
    snprintf(longer + n, sizeof longer - n, ",\"truncate\":true,\"truncation_direction\":\"Left\"}");
    r = it_post(&srv, "/embed", longer);
    CU_ASSERT_EQUAL(r.status, 200);
    it_free(&r);
    static const struct {
        const char *body;
        long status;
        const char *code, *field;
    } cases[] = {
        {"{\"inputs\":[]}", 422, "empty_input", "/inputs"},
        {"{\"inputs\":\"x\",\"dimensions\":33}", 422, "out_of_range", "/dimensions"},
        {"{\"inputs\":\"x\",\"dimensions\":0}", 422, "out_of_range", "/dimensions"},
        {"{\"inputs\":\"x\",\"truncation_direction\":\"Up\"}", 422, "invalid_value", "/truncation_direction"},
        {"{\"inputs\":\"x\",\"normalize\":1}", 422, "invalid_type", "/normalize"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        r = it_post(&srv, "/embed", cases[i].body);
        CU_ASSERT(it_is_error(&r, cases[i].status, cases[i].code, cases[i].field));
        it_free(&r);
    }
}

static void test_openai_embeddings(void)
{
    it_response f = it_post(&srv, "/v1/embeddings", "{\"input\":[\"a\",\"b c\"],\"model\":\"m\"}");
    it_response b = it_post(&srv, "/v1/embeddings", "{\"input\":[\"a\",\"b c\"],\"encoding_format\":\"base64\"}");
    CU_ASSERT_EQUAL_FATAL(f.status, 200);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(f.json, "object")), "list");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(f.json, "model")), "m");
    json_t *usage = json_object_get(f.json, "usage");
    CU_ASSERT(json_integer_value(json_object_get(usage, "prompt_tokens")) == 7 &&
              json_integer_value(json_object_get(usage, "total_tokens")) == 7); /* [CLS] a [SEP] [CLS] b c [SEP] */
    /* base64 holds the same little-endian float32 values. */
    json_t *d1 = json_array_get(json_object_get(f.json, "data"), 1), *d2 = json_array_get(json_object_get(b.json, "data"), 1);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(d1, "index")), 1);
    const char *s = json_string_value(json_object_get(d2, "embedding"));
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned char raw[32 * 4 + 3];
    size_t o = 0;
    for (size_t i = 0; s && s[i] && s[i + 1] && o + 3 <= sizeof raw; i += 4) {
        unsigned v = 0;
        for (int k = 0; k < 4; k++)
            v = v << 6 | (s[i + k] == '=' ? 0 : (unsigned)(strchr(tbl, s[i + k]) - tbl));
        raw[o++] = (unsigned char)(v >> 16), raw[o++] = (unsigned char)(v >> 8), raw[o++] = (unsigned char)v;
    }
    float vals[32];
    memcpy(vals, raw, sizeof vals);
    json_t *emb = json_object_get(d1, "embedding");
    double worst = 0;
    for (size_t i = 0; i < 32; i++)
        worst = fmax(worst, fabs(vals[i] - json_number_value(json_array_get(emb, i))));
    CU_ASSERT(worst < 1e-6);
    it_free(&f);
    it_free(&b);
    it_response r = it_post(&srv, "/v1/embeddings", "{\"input\":[[1,2,3]]}");
    json_t *err = json_object_get(r.json, "error");
    CU_ASSERT(r.status == 400 && json_is_string(json_object_get(err, "message")) &&
              !strcmp(json_string_value(json_object_get(err, "param")), "/input"));
    it_free(&r);
}

static void test_rerank(void)
{
    const char *body = "{\"query\":\"How many people live in Berlin?\",\"texts\":[\"Berlin has 3.5 million people.\","
                       "\"Paris is in France.\",\"cats\",\"The population of Berlin is large.\"],\"return_text\":true}";
    it_response r = it_post(&srv, "/rerank", body);
    CU_ASSERT_EQUAL_FATAL(r.status, 200);
    CU_ASSERT_EQUAL(json_array_size(r.json), 4);
    int seen[4] = {0};
    double prev = INFINITY;
    for (size_t i = 0; i < json_array_size(r.json); i++) {
        json_t *it = json_array_get(r.json, i);
        double sc = json_number_value(json_object_get(it, "score"));
        json_int_t idx = json_integer_value(json_object_get(it, "index"));
        CU_ASSERT(sc <= prev && sc > 0 && sc < 1 && idx >= 0 && idx < 4);
        if (idx >= 0 && idx < 4)
            seen[idx]++;
        prev = sc;
        CU_ASSERT(json_is_string(json_object_get(it, "text")));
    }
    CU_ASSERT(seen[0] == 1 && seen[1] == 1 && seen[2] == 1 && seen[3] == 1);
    /* raw_scores are the logits: sigmoid(raw) equals the default score. */
    char raw_body[512];
    snprintf(raw_body, sizeof raw_body, "%.*s,\"raw_scores\":true}", (int)(strlen(body) - 1), body);
    it_response raw = it_post(&srv, "/rerank", raw_body);
    for (size_t i = 0; i < 4; i++) {
        double a = json_number_value(json_object_get(json_array_get(r.json, i), "score"));
        double b = json_number_value(json_object_get(json_array_get(raw.json, i), "score"));
        CU_ASSERT(fabs(a - 1 / (1 + exp(-b))) < 1e-6);
    }
    it_free(&raw);
    it_free(&r);

    r = it_post(&srv, "/v1/rerank", "{\"query\":\"q\",\"documents\":[\"a\",\"b\",\"c\"],\"top_n\":2}");
    json_t *res = json_object_get(r.json, "results");
    CU_ASSERT(r.status == 200 && json_array_size(res) == 2 &&
              json_is_object(json_object_get(json_array_get(res, 0), "document")) &&
              json_integer_value(json_object_get(json_object_get(r.json, "usage"), "total_tokens")) > 0);
    it_free(&r);
    r = it_post(&srv, "/v2/rerank", "{\"query\":\"q\",\"documents\":[{\"text\":\"a\"},{\"text\":\"b\"}]}");
    res = json_object_get(r.json, "results");
    CU_ASSERT(r.status == 200 && json_array_size(res) == 2 && !json_object_get(json_array_get(res, 0), "document") &&
              json_is_number(json_object_get(json_array_get(res, 0), "relevance_score")));
    it_free(&r);
    static const struct {
        const char *path, *body, *code, *field;
        long status;
    } bad[] = {
        {"/rerank", "{\"query\":\"\",\"texts\":[\"a\"]}", "empty_input", "/query", 422},
        {"/rerank", "{\"query\":\"q\",\"texts\":[]}", "empty_input", "/texts", 422},
        {"/rerank", "{\"query\":\"q\"}", "missing_field", "/texts", 422},
        {"/v1/rerank", "{\"query\":\"q\",\"documents\":[{\"txt\":\"a\"}]}", "invalid_type", "/documents/0/text", 422},
        {"/v2/rerank", "{\"query\":\"q\",\"documents\":\"a\"}", "invalid_type", "/documents", 422},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = it_post(&srv, bad[i].path, bad[i].body);
        CU_ASSERT(it_is_error(&r, bad[i].status, bad[i].code, bad[i].field));
        it_free(&r);
    }
}

/* Concurrent clients get the same vectors as when alone (the batcher mixes their texts). */
static json_t *reference[8];

static void *client(void *arg)
{
    size_t k = (size_t)arg;
    char body[128];
    snprintf(body, sizeof body, "{\"inputs\":[\"client %zu text\",\"%zu %zu %zu\"]}", k, k, k * 7, k * 13);
    for (int round = 0; round < 5; round++) {
        it_response r = it_post(&srv, "/embed", body);
        if (r.status != 200 || max_diff(json_array_get(r.json, 0), json_array_get(reference[k], 0)) > 1e-5 ||
            max_diff(json_array_get(r.json, 1), json_array_get(reference[k], 1)) > 1e-5) {
            it_free(&r);
            return (void *)1;
        }
        it_free(&r);
    }
    return NULL;
}

static void test_concurrent_batching(void)
{
    for (size_t k = 0; k < 8; k++) {
        char body[128];
        snprintf(body, sizeof body, "{\"inputs\":[\"client %zu text\",\"%zu %zu %zu\"]}", k, k, k * 7, k * 13);
        it_response r = it_post(&srv, "/embed", body);
        reference[k] = json_incref(r.json);
        it_free(&r);
    }
    pthread_t th[8];
    for (size_t k = 0; k < 8; k++)
        pthread_create(&th[k], NULL, client, (void *)k);
    int failed = 0;
    for (size_t k = 0; k < 8; k++) {
        void *rv;
        pthread_join(th[k], &rv);
        failed += rv != NULL;
        json_decref(reference[k]);
    }
    CU_ASSERT_EQUAL(failed, 0);
    it_response r = it_get(&srv, "/info");
    json_t *emb = json_object_get(json_object_get(r.json, "models"), "embedder");
    CU_ASSERT(json_integer_value(json_object_get(emb, "dimension")) == 32 && json_is_true(json_object_get(emb, "normalize")));
    it_free(&r);
}

/* The nice value and name of each of the daemon's threads, from /proc/PID/task/TID/stat
 * ("tid (name) state ...", the nice value the 19th field). Returns the threads read. */
typedef struct {
    char name[32];
    int tid, nice;
} thread_info;

static size_t daemon_threads(thread_info *out, size_t cap)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)srv.pid);
    DIR *d = opendir(path);
    size_t n = 0;
    for (struct dirent *e; d && n < cap && (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        char stat[512] = "", file[128];
        snprintf(file, sizeof file, "%s/%s/stat", path, e->d_name);
        FILE *f = fopen(file, "r");
        size_t len = f ? fread(stat, 1, sizeof stat - 1, f) : 0;
        if (f)
            fclose(f);
        stat[len] = '\0';
        char *open = strchr(stat, '('), *close = strrchr(stat, ')');
        if (!open || !close)
            continue;
        snprintf(out[n].name, sizeof out[n].name, "%.*s", (int)(close - open - 1), open + 1);
        out[n].tid = (int)strtol(e->d_name, NULL, 10);
        /* After the name: state (field 3) ... nice (field 19). */
        char *p = close + 2;
        for (int field = 3; field < 19 && p; field++)
            p = strchr(p, ' ') ? strchr(p, ' ') + 1 : NULL;
        out[n].nice = p ? (int)strtol(p, NULL, 10) : INT_MIN;
        n++;
    }
    if (d)
        closedir(d);
    return n;
}

/* The models' compute runs below the requests (--compute-nice, default 5): once both models
 * have run a batch, their batching threads and the compute workers are 5 nice steps below
 * the main thread (at most 19), and the threads that serve sockets and run handlers (named
 * "ragd", as the main thread) are where it is. */
static void test_compute_priority(void)
{
    it_response r = it_post(&srv, "/embed", "{\"inputs\":\"a priority check\"}");
    CU_ASSERT_EQUAL(r.status, 200);
    it_free(&r);
    r = it_post(&srv, "/rerank", "{\"query\":\"a\",\"texts\":[\"b\"]}");
    CU_ASSERT_EQUAL(r.status, 200);
    it_free(&r);
    thread_info t[256];
    size_t n = daemon_threads(t, 256);
    int base = INT_MIN;
    for (size_t i = 0; i < n; i++)
        if (t[i].tid == (int)srv.pid)
            base = t[i].nice;
    CU_ASSERT_FATAL(base != INT_MIN);
    int low = base + 5 > 19 ? 19 : base + 5;
    size_t batchers = 0, compute = 0, sockets = 0, wrong = 0;
    for (size_t i = 0; i < n; i++) {
        int is_batcher = !strcmp(t[i].name, "ragd-batcher"), is_compute = !strcmp(t[i].name, "ragd-compute");
        int is_socket = !strcmp(t[i].name, "MHD-worker"), is_serving = is_socket || !strcmp(t[i].name, "ragd");
        batchers += is_batcher, compute += is_compute, sockets += is_socket;
        if (((is_batcher || is_compute) && t[i].nice != low) || (is_serving && t[i].nice != base)) {
            fprintf(stderr, "thread %d '%s' at nice %d (main at %d)\n", t[i].tid, t[i].name, t[i].nice, base);
            wrong++;
        }
    }
    CU_ASSERT_EQUAL(batchers, 2);
    CU_ASSERT_EQUAL(compute, (size_t)sysconf(_SC_NPROCESSORS_ONLN) - 1);
    CU_ASSERT(sockets >= 1);
    CU_ASSERT_EQUAL(wrong, 0);
}

void cu_register(void)
{
    if (!cu_testdata("tokenizers/bert-base-uncased") || system("/usr/bin/python3 -c 'import torch' 2>/dev/null") != 0) {
        cu_skip_all("../shared/testdata or python3-torch not found");
        return;
    }
    CU_pSuite s = CU_add_suite("encoders", setup, teardown);
    CU_add_test(s, "embed", test_embed);
    CU_add_test(s, "embed errors", test_embed_errors);
    CU_add_test(s, "OpenAI embeddings", test_openai_embeddings);
    CU_add_test(s, "rerank in three shapes", test_rerank);
    CU_add_test(s, "concurrent clients are batched correctly", test_concurrent_batching);
    CU_add_test(s, "the models' compute runs below the requests", test_compute_priority);
}
