/* test_generate.c — generation with per-request PEFT adapters over HTTP, on a small random
 * GPT-2 checkpoint and adapters of every type that the PyTorch oracle built
 * (tests/reference/make_gpt2_checkpoints.py, make_gpt2_adapters.py): /generate,
 * /generate_stream and /v1/completions give the oracle's greedy tokens with each adapter and
 * without; the /adapters registry (list, get, post, delete, LRU eviction under the byte
 * budget); names and files that must be refused cleanly (traversal, symlinks, FIFOs,
 * malformed configs, truncated weights, wrong shapes, pickle); concurrent clients with
 * different adapters get the answers they get alone, also while the adapter they use is
 * deleted and reloaded. */
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cu.h"
#include "harness.h"

#define PROMPT "Hello world, the quick brown fox jumps over"
#define N_KINDS 5
#define N_NEW 32

static it_server srv;
static char ck[64], base_dir[128], adir[128];
static const char *const kinds[N_KINDS] = {"", "lora", "lora-rs", "prompt", "prefix"};
static const char *const types[N_KINDS] = {NULL, "LORA", "LORA", "PROMPT_TUNING", "PREFIX_TUNING"};
static json_t *expected[N_KINDS], *expected_lp[N_KINDS]; /* the oracle's greedy ids, their logprobs */

/* Runs the oracle on the prompt's ids for every kind. */
static int ask_oracle(void)
{
    it_response r = it_post(&srv, "/tokenize", "{\"inputs\":\"" PROMPT "\"}");
    json_t *ids = json_array();
    for (size_t i = 0; i < json_array_size(json_array_get(r.json, 0)); i++)
        json_array_append(ids, json_object_get(json_array_get(json_array_get(r.json, 0), i), "id"));
    it_free(&r);
    char req[160], resp[160], cmd[800], src[512];
    snprintf(req, sizeof req, "%s/oracle-in.jsonl", ck);
    snprintf(resp, sizeof resp, "%s/oracle-out.jsonl", ck);
    FILE *f = fopen(req, "w");
    for (size_t k = 0; f && k < N_KINDS; k++) {
        char ad[256];
        snprintf(ad, sizeof ad, "%s/%s", adir, kinds[k]);
        json_t *j = json_pack("{s:s, s:O, s:i, s:s*}", "dir", base_dir, "ids", ids, "greedy", N_NEW, "adapter",
                              *kinds[k] ? ad : NULL);
        json_dumpf(j, f, JSON_COMPACT);
        fputc('\n', f);
        json_decref(j);
    }
    json_decref(ids);
    if (!f)
        return -1;
    fclose(f);
    it_source_path("tests/reference/gpt2_oracle.py", src, sizeof src);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' < '%s' > '%s'", src, req, resp);
    if (system(cmd) != 0)
        return -1;
    f = fopen(resp, "r");
    char *line = NULL;
    size_t cap = 0;
    for (size_t k = 0; f && k < N_KINDS && getline(&line, &cap, f) > 0; k++) {
        json_t *j = json_loads(line, 0, NULL);
        expected[k] = json_incref(json_object_get(j, "greedy"));
        expected_lp[k] = json_incref(json_object_get(j, "greedy_logprobs"));
        json_decref(j);
    }
    free(line);
    if (f)
        fclose(f);
    return expected[N_KINDS - 1] && expected_lp[N_KINDS - 1] ? 0 : -1;
}

static int setup(void)
{
    snprintf(ck, sizeof ck, "/tmp/ragd-gen-XXXXXX");
    if (!mkdtemp(ck))
        return -1;
    char cmd[512], src[400];
    it_source_path("tests/reference/make_gpt2_checkpoints.py", src, sizeof src);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s'", src, ck);
    if (system(cmd) != 0)
        return -1;
    snprintf(base_dir, sizeof base_dir, "%s/gpt2-untied", ck);
    snprintf(adir, sizeof adir, "%s/adapters-untied", ck);
    const char *args[] = {"--generator", base_dir, "--adapters-dir", adir, NULL};
    if (it_start(&srv, args, NULL) != 0)
        return -1;
    return ask_oracle();
}

static int teardown(void)
{
    for (size_t k = 0; k < N_KINDS; k++) {
        json_decref(expected[k]);
        json_decref(expected_lp[k]);
    }
    int rc = it_remove_tree(ck);
    return it_stop(&srv) == 0 && rc == 0 ? 0 : -1;
}

/* /generate greedy with details for adapter kind k (by ?adapter= when `query`, else by
 * parameters.adapter_id); returns the token ids, or NULL. */
static json_t *generate_ids(const it_server *s, size_t k, int query, json_t **details)
{
    char path[128], body[256];
    snprintf(path, sizeof path, "/generate%s%s", query && *kinds[k] ? "?adapter=" : "", query ? kinds[k] : "");
    snprintf(body, sizeof body,
             "{\"inputs\":\"" PROMPT "\",\"parameters\":{\"max_new_tokens\":%d,\"details\":true%s%s%s}}", N_NEW,
             !query && *kinds[k] ? ",\"adapter_id\":\"" : "", !query ? kinds[k] : "", !query && *kinds[k] ? "\"" : "");
    it_response r = it_post(s, path, body);
    json_t *ids = NULL;
    if (r.status == 200) {
        json_t *d = json_object_get(r.json, "details"), *t;
        size_t i;
        ids = json_array();
        json_array_foreach(json_object_get(d, "tokens"), i, t) json_array_append(ids, json_object_get(t, "id"));
        if (details)
            *details = json_incref(d);
    } else {
        fprintf(stderr, "generate %s: %ld %s\n", kinds[k], r.status, r.body);
    }
    it_free(&r);
    return ids;
}

/* Each token's logprob is the oracle's for the same greedy token. */
static int logprobs_match(size_t k, json_t *tokens)
{
    json_t *t;
    size_t i;
    json_array_foreach(tokens, i, t) {
        json_t *lp = json_object_get(t, "logprob");
        double want = json_number_value(json_array_get(expected_lp[k], i));
        if (!json_is_number(lp) || i >= json_array_size(expected_lp[k]) || fabs(json_number_value(lp) - want) > 1e-3) {
            fprintf(stderr, "%s token %zu: logprob %g, the oracle's %g\n", kinds[k], i, json_number_value(lp), want);
            return 0;
        }
    }
    return json_array_size(tokens) > 0;
}

/* The generated ids are the oracle's (a prefix of them when EOS came first). */
static int matches(size_t k, json_t *ids)
{
    if (!ids || json_array_size(ids) == 0 || json_array_size(ids) > N_NEW)
        return 0;
    for (size_t i = 0; i < json_array_size(ids); i++)
        if (json_integer_value(json_array_get(ids, i)) != json_integer_value(json_array_get(expected[k], i)))
            return 0;
    return 1;
}

static void test_parity(void)
{
    for (size_t k = 0; k < N_KINDS; k++)
        for (int query = 0; query < 2; query++) {
            json_t *d = NULL, *ids = generate_ids(&srv, k, query, &d);
            CU_ASSERT_TRUE(matches(k, ids));
            json_t *ad = json_object_get(d, "adapter");
            if (*kinds[k]) {
                CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(ad, "name")), kinds[k]);
                CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(ad, "type")), types[k]);
            } else {
                CU_ASSERT_TRUE(json_is_null(ad));
            }
            CU_ASSERT_TRUE(logprobs_match(k, json_object_get(d, "tokens")));
            json_decref(ids);
            json_decref(d);
        }
    /* The adapter's name as OpenAI's model, and the base model's name as no adapter. */
    it_response r = it_post(&srv, "/v1/completions",
                            "{\"model\":\"prefix\",\"prompt\":\"" PROMPT "\",\"max_tokens\":32,\"temperature\":0}");
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r.json, "model")), "prefix");
    const char *text = json_string_value(json_object_get(json_array_get(json_object_get(r.json, "choices"), 0), "text"));
    char *ctext = strdup(text ? text : "");
    it_free(&r);
    r = it_post(&srv, "/generate?adapter=prefix", "{\"inputs\":\"" PROMPT "\",\"parameters\":{\"max_new_tokens\":32}}");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r.json, "generated_text")), ctext);
    it_free(&r);
    free(ctext);
    r = it_post(&srv, "/generate?adapter=gpt2-untied", "{\"inputs\":\"" PROMPT "\",\"parameters\":{\"details\":true}}");
    CU_ASSERT(r.status == 200 && json_is_null(json_object_get(json_object_get(r.json, "details"), "adapter")));
    it_free(&r);
    /* A stream's tokens carry the oracle's logprobs, details or not. */
    r = it_post(&srv, "/generate_stream?adapter=prompt", "{\"inputs\":\"" PROMPT "\",\"parameters\":{\"max_new_tokens\":32}}");
    CU_ASSERT_EQUAL(r.status, 200);
    json_t *streamed = json_array();
    for (const char *ev = r.body; ev && (ev = strstr(ev, "data:")); ev += 5) {
        json_t *e = json_loadb(ev + 5, strcspn(ev + 5, "\n"), 0, NULL);
        json_array_append(streamed, json_object_get(e, "token"));
        json_decref(e);
    }
    CU_ASSERT_TRUE(logprobs_match(3, streamed));
    json_decref(streamed);
    it_free(&r);
    /* Its last event carries the same text and, with details, the adapter. */
    r = it_post(&srv, "/generate_stream?adapter=prompt",
                "{\"inputs\":\"" PROMPT "\",\"parameters\":{\"max_new_tokens\":32,\"details\":true}}");
    CU_ASSERT_EQUAL(r.status, 200);
    const char *last = r.body ? strstr(r.body, "\"generated_text\":\"") : NULL;
    CU_ASSERT_PTR_NOT_NULL(last);
    CU_ASSERT_PTR_NOT_NULL(r.body ? strstr(r.body, "\"adapter\":{\"name\":\"prompt\",\"type\":\"PROMPT_TUNING\"}") : NULL);
    it_free(&r);
}

/* The row of `rows` whose `key` is `name`. */
static json_t *find_by(json_t *rows, const char *key, const char *name)
{
    json_t *row;
    size_t i;
    json_array_foreach(rows, i, row) {
        const char *v = json_string_value(json_object_get(row, key));
        if (v && !strcmp(v, name))
            return row;
    }
    return NULL;
}

static json_t *find_row(json_t *rows, const char *name) { return find_by(rows, "name", name); }

static void test_registry(void)
{
    it_response r = it_get(&srv, "/adapters");
    CU_ASSERT_EQUAL_FATAL(r.status, 200);
    json_t *rows = json_object_get(r.json, "adapters");
    for (size_t k = 1; k < N_KINDS; k++)
        CU_ASSERT_PTR_NOT_NULL(find_row(rows, kinds[k]));
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r.json, "base_model")), "gpt2-untied");
    it_free(&r);

    r = it_get(&srv, "/adapters/lora");
    CU_ASSERT(r.status == 200 && json_is_true(json_object_get(r.json, "loaded")));
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r.json, "type")), "LORA");
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(r.json, "r")), 8);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(r.json, "target_modules")), 4);
    it_free(&r);

    /* Register another name for the prefix directory, use it, then delete it. */
    r = it_post(&srv, "/adapters", "{\"name\":\"alias\",\"path\":\"prefix\"}");
    CU_ASSERT_EQUAL(r.status, 201);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r.json, "type")), "PREFIX_TUNING");
    it_free(&r);
    r = it_post(&srv, "/generate?adapter=alias", "{\"inputs\":\"" PROMPT "\",\"parameters\":{\"max_new_tokens\":32,\"details\":true}}");
    json_t *t, *got = json_array();
    size_t i;
    json_array_foreach(json_object_get(json_object_get(r.json, "details"), "tokens"), i, t)
        json_array_append(got, json_object_get(t, "id"));
    CU_ASSERT_TRUE(matches(4, got));
    json_decref(got);
    it_free(&r);
    r = it_get(&srv, "/v1/models");
    json_t *row = find_by(json_object_get(r.json, "data"), "id", "alias");
    CU_ASSERT_PTR_NOT_NULL(row);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(row, "parent")), "gpt2-untied");
    CU_ASSERT_PTR_NOT_NULL(find_by(json_object_get(r.json, "data"), "id", "lora-rs"));
    CU_ASSERT_PTR_NOT_NULL(find_by(json_object_get(r.json, "data"), "id", "gpt2-untied"));
    it_free(&r);
    r = it_request(&srv, "DELETE", "/adapters/alias", NULL, NULL, 0);
    CU_ASSERT(r.status == 200 && json_is_true(json_object_get(r.json, "was_loaded")));
    it_free(&r);
    r = it_get(&srv, "/adapters/alias");
    CU_ASSERT_TRUE(it_is_error(&r, 404, "not_found", NULL));
    CU_ASSERT_PTR_NOT_NULL(r.body ? strstr(r.body, "'lora-rs'") : NULL);
    it_free(&r);
    r = it_request(&srv, "DELETE", "/adapters/alias", NULL, NULL, 0);
    CU_ASSERT_TRUE(it_is_error(&r, 404, "not_found", NULL));
    it_free(&r);

    /* POSTs that must not load anything. */
    static const char *const bad_posts[] = {
        "{\"name\":\"x\",\"path\":\"../gpt2-untied\"}", "{\"name\":\"x\",\"path\":\"/etc\"}",
        "{\"name\":\"x\",\"path\":\"lora/../prompt\"}", "{\"name\":\"../x\",\"path\":\"lora\"}",
        "{\"name\":\"gpt2-untied\",\"path\":\"lora\"}", "{\"name\":\"x\",\"path\":\"nowhere\"}",
        "{\"name\":\"x\",\"path\":\"\"}", "{\"path\":\"lora\"}"};
    for (size_t k = 0; k < sizeof bad_posts / sizeof *bad_posts; k++) {
        r = it_post(&srv, "/adapters", bad_posts[k]);
        CU_ASSERT(r.status == 422);
        if (r.status != 422)
            fprintf(stderr, "POST %s: %ld %s\n", bad_posts[k], r.status, r.body);
        it_free(&r);
    }
    r = it_get(&srv, "/adapters/x");
    CU_ASSERT_EQUAL(r.status, 404);
    it_free(&r);
}

static void test_bad_names(void)
{
    static const char *const bad[] = {"/generate?adapter=../x",          "/generate?adapter=%2Fetc",
                                      "/generate?adapter=a%2F..",        "/generate?adapter=%2e%2e%2f",
                                      "/generate?adapter=..",            "/generate?adapter=.hidden",
                                      "/generate?adapter=a%5C..",        "/generate?adapter=lora%00x",
                                      "/generate?adapter=lora%20",       "/generate?adapter=lora&adapter=prompt"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        it_response r = it_post(&srv, bad[i], "{\"inputs\":\"hi\"}");
        CU_ASSERT_TRUE(it_is_error(&r, 400, "bad_request", NULL));
        it_free(&r);
    }
    it_response r = it_post(&srv, "/generate", "{\"inputs\":\"hi\",\"parameters\":{\"adapter_id\":\"../../etc/passwd\"}}");
    CU_ASSERT_TRUE(it_is_error(&r, 400, "bad_request", "/parameters/adapter_id"));
    it_free(&r);
    r = it_post(&srv, "/generate?adapter=nope", "{\"inputs\":\"hi\"}");
    CU_ASSERT_TRUE(it_is_error(&r, 404, "not_found", NULL));
    CU_ASSERT_PTR_NOT_NULL(r.body ? strstr(r.body, "'lora', 'lora-rs', 'prefix', 'prompt'") : NULL);
    CU_ASSERT_PTR_NOT_NULL(r.body ? strstr(r.body, "gpt2-untied") : NULL);
    it_free(&r);
    r = it_post(&srv, "/v1/completions", "{\"model\":\"nope\",\"prompt\":\"hi\"}");
    CU_ASSERT_TRUE(it_is_openai_error(&r, 404, "not_found"));
    it_free(&r);
    r = it_post(&srv, "/generate?adapter=lora", "{\"inputs\":\"hi\",\"parameters\":{\"adapter_id\":\"prompt\"}}");
    CU_ASSERT_TRUE(it_is_error(&r, 400, "bad_request", "/parameters/adapter_id"));
    it_free(&r);
    r = it_request(&srv, "DELETE", "/adapters/..", NULL, NULL, 0);
    CU_ASSERT(r.status == 400 || r.status == 404);
    it_free(&r);
}

/* Makes ADAPTERS/name holding a copy of lora's config (or `config`) and `weights` bytes of
 * lora's weights (all of them when weights < 0). */
static void make_adapter(const char *name, const char *config, long weights)
{
    char path[256], cmd[800];
    snprintf(path, sizeof path, "%s/%s", adir, name);
    mkdir(path, 0755);
    if (config) {
        snprintf(path, sizeof path, "%s/%s/adapter_config.json", adir, name);
        FILE *f = fopen(path, "w");
        fputs(config, f);
        fclose(f);
    } else {
        snprintf(cmd, sizeof cmd, "cp '%s/lora/adapter_config.json' '%s/%s/'", adir, adir, name);
        CU_ASSERT_EQUAL(system(cmd), 0);
    }
    if (weights >= 0) {
        snprintf(cmd, sizeof cmd, "head -c %ld '%s/lora/adapter_model.safetensors' > '%s/%s/adapter_model.safetensors'",
                 weights, adir, adir, name);
        CU_ASSERT_EQUAL(system(cmd), 0);
    }
}

static void expect_refused(const char *name, long status, const char *needle)
{
    char path[128];
    snprintf(path, sizeof path, "/generate?adapter=%s", name);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    it_response r = it_post(&srv, path, "{\"inputs\":\"hi\"}");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CU_ASSERT_TRUE(it_is_error(&r, status, status == 404 ? "not_found" : "invalid_value", NULL));
    CU_ASSERT_PTR_NOT_NULL(r.body ? strstr(r.body, needle) : NULL);
    if (!r.body || !strstr(r.body, needle))
        fprintf(stderr, "%s: %ld %s (wanted '%s')\n", name, r.status, r.body, needle);
    CU_ASSERT((t1.tv_sec - t0.tv_sec) < 5); /* a FIFO must not block */
    it_free(&r);
}

static void test_bad_files(void)
{
    char a[256], b[256];
    snprintf(a, sizeof a, "%s/evil", adir);
    CU_ASSERT_EQUAL(symlink("/etc", a), 0);
    expect_refused("evil", 422, "symbolic links are not followed");
    snprintf(a, sizeof a, "%s/outside", adir);
    snprintf(b, sizeof b, "%s/adapters-makemore/lora", ck); /* a valid adapter outside the root */
    CU_ASSERT_EQUAL(symlink(b, a), 0);
    expect_refused("outside", 422, "symbolic links are not followed");
    make_adapter("fifo", NULL, -1);
    snprintf(a, sizeof a, "%s/fifo/adapter_model.safetensors", adir);
    CU_ASSERT_EQUAL(mkfifo(a, 0644), 0);
    expect_refused("fifo", 422, "not a regular file");
    make_adapter("zero", NULL, -1);
    snprintf(a, sizeof a, "%s/zero/adapter_model.safetensors", adir);
    CU_ASSERT_EQUAL(symlink("/dev/zero", a), 0);
    expect_refused("zero", 422, "symbolic link");
    make_adapter("badjson", "{\"peft_type\": \"LORA\", \"r\": ", -1);
    expect_refused("badjson", 422, "badjson/adapter_config.json: invalid JSON");
    make_adapter("noconfig", NULL, -1);
    snprintf(a, sizeof a, "%s/noconfig/adapter_config.json", adir);
    unlink(a);
    expect_refused("noconfig", 422, "adapter_config.json: missing");
    make_adapter("trunc", NULL, 1000);
    expect_refused("trunc", 422, "trunc/adapter_model.safetensors");
    make_adapter("shapes", "{\"peft_type\":\"LORA\",\"r\":4,\"lora_alpha\":8,\"target_modules\":[\"c_attn\",\"c_proj\",\"c_fc\"]}",
                 1 << 30);
    expect_refused("shapes", 422, "expected [4, 32]");
    make_adapter("nothing", "{\"peft_type\":\"LORA\",\"r\":8,\"target_modules\":[\"q_proj\"]}", 1 << 30);
    expect_refused("nothing", 422, "matches no module");
    make_adapter("pickle", NULL, 0);
    snprintf(a, sizeof a, "%s/pickle/adapter_model.safetensors", adir);
    snprintf(b, sizeof b, "%s/pickle/adapter_model.bin", adir);
    CU_ASSERT_EQUAL(rename(a, b), 0);
    expect_refused("pickle", 422, "pickle");
    make_adapter("ia3", "{\"peft_type\":\"IA3\"}", 1 << 30);
    expect_refused("ia3", 422, "IA3");
    /* The other base's LoRA: right names, wrong dimensions. */
    snprintf(a, sizeof a, "cp -r '%s/adapters-makemore/lora' '%s/makemore'", ck, adir);
    CU_ASSERT_EQUAL(system(a), 0);
    expect_refused("makemore", 422, "expected");
    /* After all that the server still answers the base model and the adapters correctly. */
    json_t *ids = generate_ids(&srv, 0, 1, NULL);
    CU_ASSERT_TRUE(matches(0, ids));
    json_decref(ids);
    ids = generate_ids(&srv, 1, 1, NULL);
    CU_ASSERT_TRUE(matches(1, ids));
    json_decref(ids);
}

/* ---- concurrency ---- */

static volatile int stop_churn;

typedef struct {
    size_t k;
    int rounds, ok;
} client_arg;

static void *client(void *p)
{
    client_arg *c = p;
    for (int i = 0; i < c->rounds; i++) {
        json_t *ids = generate_ids(&srv, c->k, i % 2, NULL);
        c->ok += matches(c->k, ids);
        json_decref(ids);
    }
    return NULL;
}

/* Deletes and reloads lora and prefix while clients use them. */
static void *churn(void *p)
{
    int *rounds = p;
    while (!stop_churn) {
        it_response r = it_request(&srv, "DELETE", "/adapters/lora", NULL, NULL, 0);
        it_free(&r);
        r = it_post(&srv, "/adapters", "{\"name\":\"prefix\",\"path\":\"prefix\"}");
        it_free(&r);
        (*rounds)++;
        usleep(2000);
    }
    return NULL;
}

static void test_concurrent(void)
{
    enum { N = 6, ROUNDS = 3 };
    client_arg args[N];
    pthread_t th[N], ch;
    int churned = 0;
    stop_churn = 0;
    pthread_create(&ch, NULL, churn, &churned);
    for (size_t i = 0; i < N; i++) {
        args[i] = (client_arg){i % N_KINDS, ROUNDS, 0};
        pthread_create(&th[i], NULL, client, &args[i]);
    }
    int ok = 0;
    for (size_t i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        ok += args[i].ok;
    }
    stop_churn = 1;
    pthread_join(ch, NULL);
    CU_ASSERT_EQUAL(ok, N * ROUNDS);
    CU_ASSERT(churned > 0);
    it_response r = it_get(&srv, "/adapters/prefix");
    CU_ASSERT(r.status == 200 && json_integer_value(json_object_get(r.json, "in_use")) == 0);
    it_free(&r);
}

/* A second server whose cache holds about one LoRA: using another evicts the first, which
 * still works when named again; an adapter over the whole budget is refused. */
static void test_eviction(void)
{
    it_server small;
    const char *args[] = {"--generator", base_dir, "--adapters-dir", adir, "--adapter-cache-bytes", "36000", NULL};
    CU_ASSERT_EQUAL_FATAL(it_start(&small, args, NULL), 0);
    json_t *ids = generate_ids(&small, 1, 1, NULL); /* lora: ~33 KB */
    CU_ASSERT_TRUE(matches(1, ids));
    json_decref(ids);
    ids = generate_ids(&small, 2, 1, NULL); /* lora-rs: ~5 KB, over the budget together */
    CU_ASSERT_TRUE(matches(2, ids));
    json_decref(ids);
    it_response r = it_get(&small, "/adapters");
    json_t *rows = json_object_get(r.json, "adapters");
    CU_ASSERT_TRUE(json_is_false(json_object_get(find_row(rows, "lora"), "loaded")));
    CU_ASSERT_TRUE(json_is_true(json_object_get(find_row(rows, "lora-rs"), "loaded")));
    CU_ASSERT(json_integer_value(json_object_get(json_object_get(r.json, "cache"), "bytes")) <= 36000);
    it_free(&r);
    ids = generate_ids(&small, 1, 0, NULL);
    CU_ASSERT_TRUE(matches(1, ids));
    json_decref(ids);
    CU_ASSERT_EQUAL(it_stop(&small), 0);

    const char *tiny[] = {"--generator", base_dir, "--adapters-dir", adir, "--adapter-cache-bytes", "4096", NULL};
    CU_ASSERT_EQUAL_FATAL(it_start(&small, tiny, NULL), 0);
    r = it_post(&small, "/generate?adapter=lora", "{\"inputs\":\"hi\"}");
    CU_ASSERT_TRUE(it_is_error(&r, 422, "invalid_value", NULL));
    CU_ASSERT_PTR_NOT_NULL(r.body ? strstr(r.body, "--adapter-cache-bytes") : NULL);
    it_free(&r);
    ids = generate_ids(&small, 3, 1, NULL); /* prompt: small enough */
    CU_ASSERT_TRUE(matches(3, ids));
    json_decref(ids);
    CU_ASSERT_EQUAL(it_stop(&small), 0);
}

/* ---- OpenAI streaming ---- */

/* POST /v1/completions with `body` (a JSON object holding "stream": true or not). Streamed:
 * checks every chunk's shape and that [DONE] comes last, and returns the concatenated text
 * and the last chunk's finish_reason. Not streamed: the choice's text and finish_reason.
 * Returns 0, or -1 (printed) when the reply is not what OpenAI sends. */
static int completion(json_t *body, char **text, char *finish, size_t cap)
{
    char *req = json_dumps(body, JSON_COMPACT);
    it_response r = it_post(&srv, "/v1/completions", req);
    free(req);
    int stream = json_is_true(json_object_get(body, "stream")), rc = r.status == 200 ? 0 : -1;
    char ctype[64] = "";
    it_header(&r, "Content-Type", ctype, sizeof ctype);
    size_t tl = 0;
    *text = calloc(1, 1);
    *finish = '\0';
    if (!rc && !stream) {
        json_t *c = json_array_get(json_object_get(r.json, "choices"), 0);
        free(*text);
        *text = strdup(json_string_value(json_object_get(c, "text")));
        snprintf(finish, cap, "%s", json_string_value(json_object_get(c, "finish_reason")));
    } else if (!rc) {
        rc = strcmp(ctype, "text/event-stream") == 0 ? 0 : -1;
        int done = 0, chunks = 0;
        for (char *ev = r.body, *end; !rc && ev && *ev; ev = end + 2) {
            if (!(end = strstr(ev, "\n\n")) || strncmp(ev, "data: ", 6) != 0 || done) {
                rc = -1; /* every event is "data: ...\n\n", and nothing follows [DONE] */
                break;
            }
            *end = '\0';
            if (!strcmp(ev + 6, "[DONE]")) {
                done = 1;
                continue;
            }
            json_t *j = json_loads(ev + 6, 0, NULL), *c = json_array_get(json_object_get(j, "choices"), 0);
            const char *id = json_string_value(json_object_get(j, "id")), *t = json_string_value(json_object_get(c, "text"));
            json_t *fr = json_object_get(c, "finish_reason");
            if (!id || strncmp(id, "cmpl-", 5) || !json_is_integer(json_object_get(j, "created")) || !t ||
                strcmp(json_string_value(json_object_get(j, "object")), "text_completion") ||
                strcmp(json_string_value(json_object_get(j, "model")), json_string_value(json_object_get(body, "model"))) ||
                json_integer_value(json_object_get(c, "index")) != 0 || !json_is_null(json_object_get(c, "logprobs")) ||
                !fr || *finish) {
                rc = -1; /* a chunk after the one with finish_reason is wrong too */
            } else {
                size_t n = strlen(t);
                *text = realloc(*text, tl + n + 1);
                memcpy(*text + tl, t, n + 1);
                tl += n;
                if (!json_is_null(fr))
                    snprintf(finish, cap, "%s", json_string_value(fr));
                chunks++;
            }
            json_decref(j);
        }
        if (!done || !*finish || chunks < 1)
            rc = -1;
    }
    if (rc)
        fprintf(stderr, "completion: %ld %s %.400s\n", r.status, ctype, r.body);
    it_free(&r);
    return rc;
}

/* The streamed text equals the text without streaming, chunk by chunk concatenated. */
static void same_both_ways(json_t *body, const char *want_finish, char **out)
{
    char *plain, *streamed, f1[16], f2[16];
    json_object_set_new(body, "stream", json_false());
    CU_ASSERT_EQUAL(completion(body, &plain, f1, sizeof f1), 0);
    json_object_set_new(body, "stream", json_true());
    CU_ASSERT_EQUAL(completion(body, &streamed, f2, sizeof f2), 0);
    CU_ASSERT_STRING_EQUAL(streamed, plain);
    CU_ASSERT_STRING_EQUAL(f2, f1);
    if (want_finish)
        CU_ASSERT_STRING_EQUAL(f1, want_finish);
    free(streamed);
    if (out)
        *out = plain;
    else
        free(plain);
}

static void test_openai_stream(void)
{
    /* Greedy with an adapter, and sampled with a seed. */
    char *text = NULL;
    json_t *body = json_pack("{s:s, s:s, s:i, s:i}", "model", "lora", "prompt", PROMPT, "max_tokens", N_NEW, "temperature", 0);
    same_both_ways(body, "length", &text);
    CU_ASSERT_FATAL(text && strlen(text) > 12);
    json_t *sampled = json_pack("{s:s, s:s, s:i, s:f, s:f, s:i}", "model", "gpt2-untied", "prompt", PROMPT, "max_tokens",
                                N_NEW, "temperature", 0.9, "top_p", 0.95, "seed", 7);
    same_both_ways(sampled, NULL, NULL);
    json_decref(sampled);
    /* A stop sequence across two tokens (the last two characters of one and the first of the
     * next): both end before it, finish_reason "stop", and the stream must hold back the
     * first two until the third shows they are the stop sequence. Another that starts like
     * the text but never completes is held back, then flushed. */
    it_response r = it_post(&srv, "/generate?adapter=lora",
                            "{\"inputs\":\"" PROMPT "\",\"parameters\":{\"max_new_tokens\":32,\"details\":true}}");
    json_t *toks = json_object_get(json_object_get(r.json, "details"), "tokens");
    char stop[4] = "", never[16];
    for (size_t i = 1; !*stop && i + 1 < json_array_size(toks); i++) {
        const char *a = json_string_value(json_object_get(json_array_get(toks, i), "text"));
        const char *b = json_string_value(json_object_get(json_array_get(toks, i + 1), "text"));
        size_t al = a ? strlen(a) : 0;
        if (al >= 2 && b && a[al - 2] > ' ' && a[al - 2] <= '~' && a[al - 1] > ' ' && a[al - 1] <= '~' && b[0] > ' ' &&
            b[0] <= '~')
            snprintf(stop, sizeof stop, "%.2s%c", a + al - 2, b[0]);
    }
    it_free(&r);
    CU_ASSERT_FATAL(*stop != '\0');
    char *first = strstr(text, stop);
    CU_ASSERT_FATAL(first != NULL);
    size_t at = (size_t)(first - text);
    snprintf(never, sizeof never, "%.2s\x01never", stop);
    json_object_set_new(body, "stop", json_pack("[s, s]", never, stop));
    char *cut = NULL;
    same_both_ways(body, "stop", &cut);
    CU_ASSERT_PTR_NULL(cut ? strstr(cut, stop) : NULL);
    CU_ASSERT(cut && strlen(cut) == at && !strncmp(cut, text, at));
    free(cut);
    json_object_set_new(body, "stop", json_string(never));
    same_both_ways(body, "length", NULL);
    json_decref(body);
    free(text);
    /* Errors before the first byte are JSON in OpenAI's shape. */
    r = it_post(&srv, "/v1/completions", "{\"model\":\"nope\",\"prompt\":\"hi\",\"stream\":true}");
    CU_ASSERT_TRUE(it_is_openai_error(&r, 404, "not_found"));
    it_free(&r);
    r = it_post(&srv, "/v1/completions", "{\"prompt\":\"hi\",\"stream\":true,\"max_tokens\":100000}");
    CU_ASSERT_TRUE(it_is_openai_error(&r, 422, "out_of_range"));
    it_free(&r);
    r = it_post(&srv, "/v1/completions", "{\"prompt\":\"hi\",\"stream\":\"yes\"}");
    CU_ASSERT_EQUAL(r.status, 422);
    it_free(&r);
}

/* A stream whose client leaves after the first chunk: the generation stops there, and its
 * adapter reference is given back. */
static void test_openai_stream_gone(void)
{
    static const char body[] = "{\"model\":\"lora\",\"prompt\":\"a\",\"max_tokens\":40,\"stream\":true}";
    char req[512], buf[4096];
    int n = snprintf(req, sizeof req,
                     "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     sizeof body - 1, body);
    CU_ASSERT_FALSE(it_log_contains(&srv, "stderr.log", "generation cancelled"));
    int fd = it_open(&srv, req, (size_t)n);
    CU_ASSERT_FATAL(fd >= 0);
    size_t got = 0;
    struct pollfd p = {fd, POLLIN, 0};
    buf[0] = '\0';
    while (!strstr(buf, "data: ") && got + 1 < sizeof buf && poll(&p, 1, 5000) > 0) {
        ssize_t r = recv(fd, buf + got, sizeof buf - 1 - got, 0);
        if (r <= 0)
            break;
        got += (size_t)r;
        buf[got] = '\0';
    }
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "data: {"));
    close(fd);
    long in_use = -1;
    for (int i = 0; i < 100 && in_use != 0; i++) {
        usleep(50000);
        it_response r = it_get(&srv, "/adapters/lora");
        in_use = json_integer_value(json_object_get(r.json, "in_use"));
        it_free(&r);
    }
    CU_ASSERT_EQUAL(in_use, 0);
    CU_ASSERT_TRUE(it_log_contains(&srv, "stderr.log", "generation cancelled: the client went away"));
    json_t *ids = generate_ids(&srv, 1, 1, NULL);
    CU_ASSERT_TRUE(matches(1, ids));
    json_decref(ids);
}

/* A client that closes its side of the connection after sending the request: the
 * generation stops at the next check (every 4 tokens), not after all 32. */
static void test_client_gone(void)
{
    static const char body[] = "{\"inputs\":\"" PROMPT "\",\"parameters\":{\"max_new_tokens\":32}}";
    char req[512];
    int n = snprintf(req, sizeof req,
                     "POST /generate?adapter=lora HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     sizeof body - 1, body);
    int fd = it_open(&srv, req, (size_t)n);
    CU_ASSERT_FATAL(fd >= 0);
    shutdown(fd, SHUT_WR);
    char buf[2048];
    size_t got = 0;
    struct pollfd p = {fd, POLLIN, 0};
    while (got + 1 < sizeof buf && poll(&p, 1, 5000) > 0) {
        ssize_t r = recv(fd, buf + got, sizeof buf - 1 - got, 0);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    buf[got] = '\0';
    close(fd);
    CU_ASSERT_TRUE(it_log_contains(&srv, "stderr.log", "generation cancelled: the client went away"));
    CU_ASSERT_PTR_NULL(strstr(buf, "generated_text"));
    /* The server goes on serving, with the same answers. */
    json_t *ids = generate_ids(&srv, 1, 1, NULL);
    CU_ASSERT_TRUE(matches(1, ids));
    json_decref(ids);
}

void cu_register(void)
{
    if (!cu_testdata("tokenizers/gpt2") || !cu_testdata("checkpoints/gpt2-names-makemore") ||
        system("/usr/bin/python3 -c 'import torch' 2>/dev/null") != 0) {
        cu_skip_all("../shared/testdata or python3-torch not found");
        return;
    }
    CU_pSuite s = CU_add_suite("generate", setup, teardown);
    CU_add_test(s, "oracle parity with every adapter type", test_parity);
    CU_add_test(s, "adapter registry", test_registry);
    CU_add_test(s, "adapter names", test_bad_names);
    CU_add_test(s, "adapter files", test_bad_files);
    CU_add_test(s, "concurrent adapters with deletes and reloads", test_concurrent);
    CU_add_test(s, "LRU eviction under the byte budget", test_eviction);
    CU_add_test(s, "OpenAI streaming: the same text, stop sequences left out, [DONE] last", test_openai_stream);
    CU_add_test(s, "an OpenAI stream whose client leaves is cancelled", test_openai_stream_gone);
    CU_add_test(s, "a client that leaves cancels its generation", test_client_gone);
}
