/* test_jobs.c — training jobs over HTTP on the real gpt2-names-makemore checkpoint:
 * bad requests rejected with the field that is wrong; LoRA SFT, prompt- and prefix-tuning
 * jobs from submit to /generate?adapter=NAME (a synthetic task the base model gets wrong:
 * after "." continue with "zzz"); a DPO job with TRL's metric names; the PEFT files written;
 * progress, history and server-sent events; datasets; cancel; one writer per name (409);
 * a full queue (429); and kill -9 during a job, then a restart: the job is failed with a
 * reason, never left running, and no partial adapter remains. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cu.h"
#include "harness.h"

static it_server srv;
static char *ckpt, data_dir[64];

static const char *str_or_empty(const char *s) { return s ? s : ""; }

static int setup(void)
{
    ckpt = it_testdata("checkpoints/gpt2-names-makemore");
    snprintf(data_dir, sizeof data_dir, "/tmp/ragd-jobs-XXXXXX");
    if (!ckpt || !mkdtemp(data_dir))
        return -1;
    const char *args[] = {"--generator", ckpt, "--data-dir", data_dir, "--train-workers", "1", "--max-queued-jobs", "2",
                          "--threads", "1", NULL};
    return it_start(&srv, args, NULL);
}

static int teardown(void)
{
    int rc = it_stop(&srv);
    if (it_remove_tree(data_dir) != 0)
        rc = -1;
    free(ckpt);
    return rc == 0 ? 0 : -1;
}

/* Polls GET /jobs/{id} until the job is final (or 60 s); returns the final job (caller frees). */
static json_t *wait_job(const char *id)
{
    char path[96];
    snprintf(path, sizeof path, "/jobs/%s", id);
    for (int i = 0; i < 1200; i++) {
        it_response r = it_get(&srv, path);
        const char *st = json_string_value(json_object_get(r.json, "status"));
        if (st && (!strcmp(st, "succeeded") || !strcmp(st, "failed") || !strcmp(st, "cancelled"))) {
            json_t *j = json_incref(r.json);
            it_free(&r);
            return j;
        }
        it_free(&r);
        usleep(50000);
    }
    return NULL;
}

static char *submit(const char *route, const char *body, long want_status)
{
    it_response r = it_post(&srv, route, body);
    if (r.status != want_status)
        fprintf(stderr, "%s answered %ld: %.300s\n", route, r.status, r.body);
    CU_ASSERT_EQUAL(r.status, want_status);
    char *id = NULL;
    if (r.status == 202) {
        const char *st = str_or_empty(json_string_value(json_object_get(r.json, "status")));
        CU_ASSERT(!strcmp(st, "queued") || !strcmp(st, "running"));
        id = strdup(json_string_value(json_object_get(r.json, "id")));
    }
    it_free(&r);
    return id;
}

static void test_bad_requests(void)
{
    static const struct { const char *body, *code, *field; long status; } cases[] = {
        {"{\"data\":[{\"text\":\".ab\"}]}", "missing_field", "/adapter_name", 422},
        {"{\"adapter_name\":\"../x\",\"data\":[{\"text\":\".ab\"}]}", "invalid_value", "/adapter_name", 422},
        {"{\"adapter_name\":\"a\",\"method\":\"dora\",\"data\":[{\"text\":\".ab\"}]}", "invalid_value", "/method", 422},
        {"{\"adapter_name\":\"a\",\"data\":[{\"text\":\".ab\"}],\"hyperparameters\":{\"learning_rate\":-1}}",
         "out_of_range", "/hyperparameters/learning_rate", 422},
        {"{\"adapter_name\":\"a\",\"data\":[{\"text\":\".ab\"}],\"hyperparameters\":{\"epochs\":0}}", "out_of_range",
         "/hyperparameters/epochs", 422},
        {"{\"adapter_name\":\"a\",\"data\":[{\"text\":\".ab\"}],\"hyperparameters\":{\"batch_size\":1.5}}",
         "invalid_type", "/hyperparameters/batch_size", 422},
        {"{\"adapter_name\":\"a\",\"data\":[{\"text\":\".ab\"}],\"peft\":{\"target_modules\":[\"q_proj\"]}}",
         "invalid_value", "/peft/target_modules/0", 422},
        {"{\"adapter_name\":\"a\",\"data\":[{\"text\":\".ab\"}],\"peft\":{\"r\":0}}", "out_of_range", "/peft/r", 422},
        {"{\"adapter_name\":\"a\",\"data\":[{\"text\":\".ab\"}],\"peft\":{\"lora_dropout\":1}}", "out_of_range",
         "/peft/lora_dropout", 422},
        {"{\"adapter_name\":\"a\",\"data\":[{\"text\":\".ab\"}],\"hyperparameters\":{\"disable_dropout\":1}}",
         "invalid_type", "/hyperparameters/disable_dropout", 422},
        {"{\"adapter_name\":\"a\",\"method\":\"prompt_tuning\",\"data\":[{\"text\":\".ab\"}]}", "missing_field",
         "/peft/num_virtual_tokens", 422},
        {"{\"adapter_name\":\"a\",\"data\":[{\"text\":\".ab\"},{\"prompt\":\".abcdefghijklmnopq\",\"completion\":\"r\"}]}",
         "invalid_value", "/data/1", 422},
        {"{\"adapter_name\":\"a\",\"data\":[{\"text\":\".ab\"},{\"text\":7}]}", "invalid_type", "/data/1", 422},
        {"{\"adapter_name\":\"a\",\"data\":[{\"text\":\"\\u00e9\"}]}", "invalid_value", "/data/0", 422},
        {"{\"adapter_name\":\"a\",\"data\":[]}", "empty_input", "/data", 422},
        {"{\"adapter_name\":\"a\"}", "missing_field", "/data", 422},
        {"{\"adapter_name\":\"a\",\"dataset\":\"ds-none\"}", "not_found", "/dataset", 404},
        {"{\"adapter_name\":\"gpt2-names-makemore\",\"data\":[{\"text\":\".ab\"}]}", "conflict", "/adapter_name", 409},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        it_response r = it_post(&srv, "/finetune", cases[i].body);
        if (!it_is_error(&r, cases[i].status, cases[i].code, cases[i].field))
            fprintf(stderr, "case %zu: %.300s\n", i, r.body);
        CU_ASSERT(it_is_error(&r, cases[i].status, cases[i].code, cases[i].field));
        it_free(&r);
    }
    it_response r = it_post(&srv, "/dpo", "{\"adapter_name\":\"a\",\"data\":[{\"prompt\":\".\",\"chosen\":\"ab\"}]}");
    CU_ASSERT(it_is_error(&r, 422, "invalid_value", "/data/0"));
    it_free(&r);
    r = it_post(&srv, "/dpo", "{\"adapter_name\":\"a\",\"loss_type\":\"kto\",\"data\":[{\"prompt\":\".\",\"chosen\":\"a\",\"rejected\":\"b\"}]}");
    CU_ASSERT(it_is_error(&r, 422, "invalid_value", "/loss_type"));
    it_free(&r);
    r = it_get(&srv, "/jobs/job-0000");
    CU_ASSERT(it_is_error(&r, 404, "not_found", NULL));
    it_free(&r);
}

/* ".zzz" after "." is a task the base model does not do; after SFT the greedy continuation
 * of "." starts with "zzz". */
static void learns_task(const char *method, const char *peft, const char *lr, const char *name)
{
    char body[2048];
    snprintf(body, sizeof body,
             "{\"adapter_name\":\"%s\",\"method\":\"%s\",\"peft\":%s,\"data\":[{\"prompt\":\".\",\"completion\":\"zzz\"},"
             "{\"prompt\":\".\",\"completion\":\"zzz\"},{\"prompt\":\".\",\"completion\":\"zzz\"},"
             "{\"prompt\":\".\",\"completion\":\"zzz\"}],\"hyperparameters\":{\"epochs\":40,\"batch_size\":4,"
             "\"learning_rate\":%s,\"seed\":3}}",
             name, method, peft, lr);
    it_response before = it_post(&srv, "/generate",
                                 "{\"inputs\":\".\",\"parameters\":{\"max_new_tokens\":3,\"temperature\":0}}");
    CU_ASSERT_EQUAL(before.status, 200);
    CU_ASSERT(strncmp(str_or_empty(json_string_value(json_object_get(before.json, "generated_text"))), "z z z", 5) != 0);
    it_free(&before);
    char *id = submit("/finetune", body, 202);
    if (!id)
        return;
    json_t *job = wait_job(id);
    CU_ASSERT_PTR_NOT_NULL_FATAL(job);
    const char *st = json_string_value(json_object_get(job, "status"));
    if (strcmp(st, "succeeded"))
        fprintf(stderr, "%s job: %s\n", method, json_string_value(json_object_get(job, "error")));
    CU_ASSERT_STRING_EQUAL(st, "succeeded");
    json_t *prog = json_object_get(job, "progress");
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(prog, "step")), 40);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(prog, "total_steps")), 40);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(job, "history")), 40);
    json_t *m = json_object_get(job, "metrics");
    CU_ASSERT(json_is_number(json_object_get(m, "loss")) && json_is_number(json_object_get(m, "learning_rate")) &&
              json_is_number(json_object_get(m, "grad_norm")));
    double first = json_number_value(json_object_get(json_array_get(json_object_get(job, "history"), 0), "loss"));
    CU_ASSERT(json_number_value(json_object_get(m, "loss")) < first);
    json_decref(job);
    char path[128];
    snprintf(path, sizeof path, "/generate?adapter=%s", name);
    it_response r = it_post(&srv, path, "{\"inputs\":\".\",\"parameters\":{\"max_new_tokens\":3,\"temperature\":0}}");
    const char *text = str_or_empty(json_string_value(json_object_get(r.json, "generated_text")));
    if (strncmp(text, "z z z", 5) != 0)
        fprintf(stderr, "%s: generated '%s'\n", method, text);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_STRING_EQUAL(text, "z z z");
    it_free(&r);
    /* PEFT's files, in --adapters-dir/NAME; a LoRA's config keeps its lora_dropout */
    char file[256], config[4096] = "";
    struct stat sb;
    snprintf(file, sizeof file, "%s/adapters/%s/adapter_config.json", data_dir, name);
    FILE *f = fopen(file, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    config[fread(config, 1, sizeof config - 1, f)] = 0;
    fclose(f);
    if (!strcmp(method, "lora"))
        CU_ASSERT(strstr(config, "\"lora_dropout\": 0.05,") != NULL);
    snprintf(file, sizeof file, "%s/adapters/%s/adapter_model.safetensors", data_dir, name);
    CU_ASSERT_EQUAL(stat(file, &sb), 0);
    free(id);
}

static void test_lora_learns(void)
{
    learns_task("lora", "{\"r\":8,\"lora_alpha\":16,\"lora_dropout\":0.05,\"target_modules\":\"all-linear\"}", "0.01",
                "zzz-lora");
}
static void test_prompt_learns(void)
{
    learns_task("prompt_tuning", "{\"num_virtual_tokens\":4,\"prompt_tuning_init\":\"TEXT\",\"prompt_tuning_init_text\":\"ab\"}",
                "0.1", "zzz-prompt");
}
static void test_prefix_learns(void)
{
    learns_task("prefix_tuning", "{\"num_virtual_tokens\":4}", "0.05", "zzz-prefix");
}

static void test_dpo_events_dataset(void)
{
    /* The preference rows come as an uploaded dataset. */
    const char *jsonl = "{\"prompt\":\".\",\"chosen\":\"anna\",\"rejected\":\"zed\"}\n"
                        "{\"prompt\":\".\",\"chosen\":\"bella\",\"rejected\":\"yul\"}\n"
                        "{\"prompt\":\".\",\"chosen\":\"cara\",\"rejected\":\"xeno\"}\n";
    const char *h[] = {"Content-Type: application/jsonl", NULL};
    it_response r = it_request(&srv, "POST", "/datasets", h, jsonl, strlen(jsonl));
    CU_ASSERT_EQUAL_FATAL(r.status, 201);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(r.json, "rows")), 3);
    char body[512];
    snprintf(body, sizeof body,
             "{\"adapter_name\":\"pref\",\"dataset\":\"%s\",\"beta\":0.1,\"loss_type\":\"sigmoid\",\"label_smoothing\":0.1,"
             "\"peft\":{\"r\":4,\"target_modules\":[\"c_attn\",\"c_proj\"]},\"hyperparameters\":{\"epochs\":4,\"batch_size\":3,"
             "\"learning_rate\":0.005}}",
             json_string_value(json_object_get(r.json, "id")));
    it_free(&r);
    const char *bad = "{\"text\":\".a\"}\nnot json\n";
    r = it_request(&srv, "POST", "/datasets", h, bad, strlen(bad));
    CU_ASSERT(it_is_error(&r, 422, "invalid_value", "/1"));
    it_free(&r);
    const char *txt[] = {"Content-Type: text/plain", NULL};
    r = it_request(&srv, "POST", "/datasets", txt, jsonl, strlen(jsonl));
    CU_ASSERT(it_is_error(&r, 415, "unsupported_media_type", NULL));
    it_free(&r);

    char *id = submit("/dpo", body, 202);
    if (!id)
        return;
    json_t *job = wait_job(id);
    CU_ASSERT_PTR_NOT_NULL_FATAL(job);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(job, "status")), "succeeded");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(job, "type")), "dpo");
    json_t *m = json_object_get(job, "metrics");
    static const char *const keys[] = {"loss", "learning_rate", "grad_norm", "rewards/chosen", "rewards/rejected",
                                       "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        CU_ASSERT(json_is_number(json_object_get(m, keys[i])));
    CU_ASSERT(json_number_value(json_object_get(m, "rewards/margins")) > 0);
    json_decref(job);
    /* The event stream of a finished job: its steps, then its final state, then the end. */
    char path[96];
    snprintf(path, sizeof path, "/jobs/%s/events", id);
    r = it_get(&srv, path);
    CU_ASSERT_EQUAL(r.status, 200);
    char ct[64] = "";
    it_header(&r, "Content-Type", ct, sizeof ct);
    CU_ASSERT(strstr(ct, "text/event-stream") != NULL);
    size_t steps = 0;
    for (const char *p = r.body; (p = strstr(p, "event: step\ndata: {\"step\":")) != NULL; p++)
        steps++;
    CU_ASSERT_EQUAL(steps, 4);
    const char *last = r.body ? strstr(r.body, "event: status\ndata: ") : NULL;
    CU_ASSERT(last && strstr(last, "\"succeeded\""));
    it_free(&r);
    free(id);
}

static const char *long_job(const char *name, char *buf, size_t cap)
{
    snprintf(buf, cap,
             "{\"adapter_name\":\"%s\",\"data\":[{\"text\":\".abcdefgh\"},{\"text\":\".ijklmn\"}],"
             "\"hyperparameters\":{\"epochs\":1000,\"batch_size\":1}}",
             name);
    return buf;
}

static void test_cancel_conflict_queue(void)
{
    char b1[256], b2[256], b3[256], b4[256];
    char *a = submit("/finetune", long_job("long-a", b1, sizeof b1), 202);
    char path[96];
    snprintf(path, sizeof path, "/jobs/%s", a ? a : "none");
    for (int i = 0; i < 400; i++) { /* until the worker has taken it */
        it_response st = it_get(&srv, path);
        int running = !strcmp(str_or_empty(json_string_value(json_object_get(st.json, "status"))), "running");
        it_free(&st);
        if (running)
            break;
        usleep(25000);
    }
    /* One writer per adapter name. */
    it_response r = it_post(&srv, "/finetune", long_job("long-a", b2, sizeof b2));
    CU_ASSERT(it_is_error(&r, 409, "conflict", "/adapter_name"));
    it_free(&r);
    /* One worker, two waiting places: the fourth job is refused. */
    char *b = submit("/finetune", long_job("long-b", b2, sizeof b2), 202);
    char *c = submit("/finetune", long_job("long-c", b3, sizeof b3), 202);
    r = it_post(&srv, "/finetune", long_job("long-d", b4, sizeof b4));
    CU_ASSERT(it_is_error(&r, 429, "overloaded", NULL));
    it_free(&r);
    char *ids[3] = {a, b, c};
    for (int i = 2; i >= 0; i--) { /* the queued ones first, then the running one */
        if (!ids[i])
            continue;
        snprintf(path, sizeof path, "/jobs/%s/cancel", ids[i]);
        r = it_request(&srv, "POST", path, NULL, NULL, 0);
        CU_ASSERT_EQUAL(r.status, 200);
        it_free(&r);
        json_t *j = wait_job(ids[i]);
        CU_ASSERT_STRING_EQUAL(j ? json_string_value(json_object_get(j, "status")) : "", "cancelled");
        json_decref(j);
        r = it_request(&srv, "POST", path, NULL, NULL, 0);
        CU_ASSERT(it_is_error(&r, 409, "conflict", NULL));
        it_free(&r);
    }
    char dir[128];
    struct stat sb;
    snprintf(dir, sizeof dir, "%s/adapters/long-a", data_dir);
    CU_ASSERT_NOT_EQUAL(stat(dir, &sb), 0); /* a cancelled job writes no adapter */
    r = it_get(&srv, "/jobs");
    CU_ASSERT(json_array_size(json_object_get(r.json, "jobs")) >= 3);
    it_free(&r);
    free(a);
    free(b);
    free(c);
}

/* kill -9 while a job trains, and a half-written adapter left in the directory: after the
 * restart the job is failed with a reason and the temporary is gone. */
static void test_kill_restart(void)
{
    char body[256], path[96];
    char *id = submit("/finetune", long_job("killed", body, sizeof body), 202);
    CU_ASSERT_PTR_NOT_NULL_FATAL(id);
    snprintf(path, sizeof path, "/jobs/%s", id);
    long step = 0;
    double eta = -1;
    for (int i = 0; i < 400 && step < 3; i++) {
        it_response r = it_get(&srv, path);
        json_t *prog = json_object_get(r.json, "progress");
        step = (long)json_integer_value(json_object_get(prog, "step"));
        if (step > 0 && json_is_number(json_object_get(prog, "eta_seconds")))
            eta = json_number_value(json_object_get(prog, "eta_seconds"));
        it_free(&r);
        usleep(25000);
    }
    CU_ASSERT(step >= 3);
    CU_ASSERT(eta >= 0); /* a running job estimates its time left */
    kill(srv.pid, SIGKILL);
    waitpid(srv.pid, NULL, 0);
    srv.pid = 0;
    char tmp[160], file[200];
    snprintf(tmp, sizeof tmp, "%s/adapters/.killed.tmp-%s", data_dir, id);
    mkdir(tmp, 0755);
    snprintf(file, sizeof file, "%s/adapter_config.json", tmp);
    FILE *f = fopen(file, "w");
    if (f) {
        fputs("{\"peft_type\": \"LO", f); /* cut short, as a crash mid-write leaves it */
        fclose(f);
    }
    it_stop(&srv);
    const char *args[] = {"--generator", ckpt, "--data-dir", data_dir, "--train-workers", "1", "--threads", "1", NULL};
    CU_ASSERT_EQUAL_FATAL(it_start(&srv, args, NULL), 0);
    it_response r = it_get(&srv, path);
    CU_ASSERT_STRING_EQUAL(str_or_empty(json_string_value(json_object_get(r.json, "status"))), "failed");
    CU_ASSERT(strstr(str_or_empty(json_string_value(json_object_get(r.json, "error"))), "interrupted") != NULL);
    it_free(&r);
    struct stat sb;
    CU_ASSERT_NOT_EQUAL(stat(tmp, &sb), 0);
    snprintf(file, sizeof file, "%s/adapters/killed", data_dir);
    CU_ASSERT_NOT_EQUAL(stat(file, &sb), 0);
    /* nothing is left running */
    r = it_get(&srv, "/jobs");
    json_t *jobs = json_object_get(r.json, "jobs");
    for (size_t i = 0; i < json_array_size(jobs); i++)
        CU_ASSERT(strcmp(str_or_empty(json_string_value(json_object_get(json_array_get(jobs, i), "status"))), "running"));
    it_free(&r);
    free(id);
}

/* kill -9 at each stage of publishing an adapter (RAGD_TEST_CRASH_AT, see model/train.c):
 * before anything is written, after the write, after the fsync, after the rename. After a
 * restart the job is failed, never running; no temporary is left; the name holds either
 * nothing (stages 1-3) or the whole new adapter, which /generate serves (stage 4). */
static void test_kill_during_publish(void)
{
    for (int stage = 1; stage <= 4; stage++) {
        it_stop(&srv);
        char env_crash[32], name[16], body[512], path[128];
        snprintf(env_crash, sizeof env_crash, "RAGD_TEST_CRASH_AT=%d", stage);
        const char *env[] = {env_crash, NULL};
        const char *args[] = {"--generator", ckpt, "--data-dir", data_dir, "--train-workers", "1", "--threads", "1", NULL};
        CU_ASSERT_EQUAL_FATAL(it_start(&srv, args, env), 0);
        snprintf(name, sizeof name, "crash%d", stage);
        snprintf(body, sizeof body,
                 "{\"adapter_name\":\"%s\",\"data\":[{\"text\":\".ab\"}],\"hyperparameters\":{\"epochs\":2}}", name);
        /* The job is tiny: the process may kill itself before the 202 is on the wire, and
         * the job is then found by its adapter name after the restart. */
        it_response sr = it_post(&srv, "/finetune", body);
        CU_ASSERT(sr.status == 202 || sr.status == 0);
        char *id = sr.status == 202 ? strdup(json_string_value(json_object_get(sr.json, "id"))) : NULL;
        it_free(&sr);
        CU_ASSERT_EQUAL(it_wait_exit(&srv, 30000), 0); /* it killed itself while publishing */
        it_stop(&srv);
        CU_ASSERT_EQUAL_FATAL(it_start(&srv, args, NULL), 0);
        it_response all = it_get(&srv, "/jobs");
        json_t *jobs = json_object_get(all.json, "jobs");
        for (size_t i = 0; !id && i < json_array_size(jobs); i++)
            if (!strcmp(str_or_empty(json_string_value(json_object_get(json_array_get(jobs, i), "adapter_name"))), name))
                id = strdup(json_string_value(json_object_get(json_array_get(jobs, i), "id")));
        it_free(&all);
        CU_ASSERT_PTR_NOT_NULL_FATAL(id);
        snprintf(path, sizeof path, "/jobs/%s", id);
        it_response r = it_get(&srv, path);
        CU_ASSERT_STRING_EQUAL(str_or_empty(json_string_value(json_object_get(r.json, "status"))), "failed");
        it_free(&r);
        char tmp[192];
        struct stat sb;
        snprintf(tmp, sizeof tmp, "%s/adapters/.%s.tmp-%s", data_dir, name, id);
        CU_ASSERT_NOT_EQUAL(stat(tmp, &sb), 0);
        snprintf(path, sizeof path, "/generate?adapter=%s", name);
        r = it_post(&srv, path, "{\"inputs\":\".\",\"parameters\":{\"max_new_tokens\":2,\"temperature\":0}}");
        if (r.status != (stage == 4 ? 200 : 404))
            fprintf(stderr, "stage %d: /generate answered %ld: %.200s\n", stage, r.status, r.body);
        CU_ASSERT_EQUAL(r.status, stage == 4 ? 200 : 404);
        it_free(&r);
        free(id);
    }
}

void cu_register(void)
{
    char *d = it_testdata("checkpoints/gpt2-names-makemore");
    if (!d) {
        cu_skip_all("../shared/testdata not found");
        return;
    }
    free(d);
    CU_pSuite s = CU_add_suite("jobs", setup, teardown);
    CU_add_test(s, "bad requests name the field", test_bad_requests);
    CU_add_test(s, "LoRA SFT: submit to /generate?adapter", test_lora_learns);
    CU_add_test(s, "prompt tuning SFT: submit to /generate?adapter", test_prompt_learns);
    CU_add_test(s, "prefix tuning SFT: submit to /generate?adapter", test_prefix_learns);
    CU_add_test(s, "DPO from a dataset, metrics, events", test_dpo_events_dataset);
    CU_add_test(s, "cancel, 409 per name, 429 when full", test_cancel_conflict_queue);
    CU_add_test(s, "kill -9 and restart", test_kill_restart);
    CU_add_test(s, "kill -9 at each stage of publishing", test_kill_during_publish);
}
