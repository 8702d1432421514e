/* test_fault_paths.c — adapter and dataset names cannot leave their directories, proved by
 * counting filesystem calls (fault.c counts every call that names a path: open, openat,
 * stat, lstat, fstatat, statx, access, opendir, fopen, mkdir, unlink, rename, readlink,
 * realpath ...).
 *   - Names the rule rejects (traversal, absolute, "..", ".", a NUL, a backslash, over-long,
 *     a leading dot or dash, look-alikes, whitespace), in every place a request names an
 *     adapter: GET/DELETE /adapters/{name}, POST /adapters name and path, /generate's
 *     adapter_id, /v1/completions' model, /finetune's adapter_name and init_adapter: a 4xx
 *     and zero filesystem calls. Dataset ids never reach the filesystem at all (datasets are
 *     rows in ragd.db): no call names them.
 *   - Symlinks and special files inside the adapters directory (a directory symlink to an
 *     adapter outside, a weights file linked to /dev/zero, a config linked outside, a FIFO, a
 *     directory where a file should be): refused with a 4xx, without blocking, and every call
 *     made on the way is one that does not follow a symlink (openat with O_NOFOLLOW, fstatat
 *     with AT_SYMLINK_NOFOLLOW); nothing outside is ever named. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cu.h"
#include "fault.h"
#include "fault_app.h"

static fault_app fa;
static char outside[64];
static long n_rejected_requests;

/* Names that break [A-Za-z0-9][A-Za-z0-9._-]{0,63}, as JSON string contents. */
static const char *const bad_names[] = {
    "../../etc/passwd", "..", ".", "/abs/path", "/etc", "a/../b", "a/b", "%2e%2e", "..%2f", "%2e%2e%2fetc",
    "..\\\\", "..\\\\..\\\\x", "a\\u0000b", "\\u0000", ".hidden", "-dash", "_under", "trailing ", " leading",
    "new\\nline", "tab\\tname", "\\uff41dapter", "caf\\u00e9", "a\\u2215b",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", /* 65 */
};

static const char *const body_templates[] = {
    "{\"name\":\"%s\"}",                                                              /* POST /adapters */
    "{\"inputs\":\"a\",\"parameters\":{\"adapter_id\":\"%s\",\"max_new_tokens\":1}}", /* POST /generate */
    "{\"model\":\"%s\",\"prompt\":\"a\",\"max_tokens\":1}",                            /* POST /v1/completions */
    "{\"adapter_name\":\"%s\",\"data\":[{\"prompt\":\"a\",\"completion\":\"b\"}]}",   /* POST /finetune */
    "{\"adapter_name\":\"ok\",\"init_adapter\":\"%s\",\"data\":[{\"prompt\":\"a\",\"completion\":\"b\"}]}",
};
static const char *const body_paths[] = {"/adapters", "/generate", "/v1/completions", "/finetune", "/finetune"};

/* A registered adapter's path (POST /adapters "path") is a relative path of plain names
 * below the adapters directory: these break that rule. Other odd names are plain names
 * there, looked up beneath the root without following symlinks (test_registered_paths). */
static const char *const bad_paths[] = {
    "../../etc/passwd", "..", ".", "/abs/path", "/etc", "a/../b", "a/./b", "a//b", "a/", "/", "", "a\\u0000b",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", /* 257: over the 255 of a component and the 255 of a path */
};

/* Runs a request counting path calls; returns the count, the status in *status. */
static long counted_request(const char *method, const char *path, const char *body, unsigned *status)
{
    fault_reply r;
    fault_fs_count();
    int rc = fault_app_request(&fa, method, path, body, &r);
    long calls = fault_fs_stop();
    *status = rc == 0 ? r.status : 0;
    free(r.body);
    n_rejected_requests++;
    return calls;
}

static void test_rejected_names(void)
{
    long total_calls = 0;
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        const char *name = bad_names[i];
        char body[512], path[512];
        for (size_t t = 0; t < sizeof body_templates / sizeof body_templates[0]; t++) {
            snprintf(body, sizeof body, body_templates[t], name);
            unsigned status;
            long calls = counted_request("POST", body_paths[t], body, &status);
            if (calls || status < 400 || status >= 500)
                fprintf(stderr, "\nPOST %s %s: %u, %ld filesystem calls:\n%s", body_paths[t], body, status, calls,
                        fault_fs_log());
            CU_ASSERT_EQUAL(calls, 0);
            CU_ASSERT(status >= 400 && status < 500);
            total_calls += calls;
        }
        /* In the path (as MHD hands it over, decoded); JSON escapes are not path bytes. */
        if (strchr(name, '\\'))
            continue;
        static const char *const methods[] = {"GET", "DELETE"};
        for (int m = 0; m < 2; m++) {
            snprintf(path, sizeof path, "/adapters/%s", name);
            unsigned status;
            long calls = counted_request(methods[m], path, NULL, &status);
            if (calls || status < 400 || status >= 500)
                fprintf(stderr, "\n%s %s: %u, %ld filesystem calls:\n%s", methods[m], path, status, calls,
                        fault_fs_log());
            CU_ASSERT_EQUAL(calls, 0);
            CU_ASSERT(status >= 400 && status < 500);
            total_calls += calls;
        }
    }
    for (size_t i = 0; i < sizeof bad_paths / sizeof bad_paths[0]; i++) {
        char body[512];
        snprintf(body, sizeof body, "{\"name\":\"ok\",\"path\":\"%s\"}", bad_paths[i]);
        unsigned status;
        long calls = counted_request("POST", "/adapters", body, &status);
        if (calls || status < 400 || status >= 500)
            fprintf(stderr, "\nPOST /adapters %s: %u, %ld filesystem calls:\n%s", body, status, calls, fault_fs_log());
        CU_ASSERT_EQUAL(calls, 0);
        CU_ASSERT(status >= 400 && status < 500);
        total_calls += calls;
    }
    printf("\n  fault_paths: %ld requests with rejected adapter names and paths, %ld filesystem calls",
           n_rejected_requests, total_calls);
}

/* A dataset id is a row key: whatever it holds, no filesystem call names it. */
static void test_dataset_ids(void)
{
    static const char *const ids[] = {"../../etc/passwd", "/etc/passwd", "..", "ds/../../x", "%2e%2e%2f"};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        char body[256];
        snprintf(body, sizeof body, "{\"adapter_name\":\"ok\",\"dataset\":\"%s\"}", ids[i]);
        unsigned status;
        counted_request("POST", "/finetune", body, &status);
        CU_ASSERT_EQUAL(status, 404);
        CU_ASSERT_PTR_NULL(strstr(fault_fs_log(), "passwd"));
        CU_ASSERT_PTR_NULL(strstr(fault_fs_log(), ".."));
        CU_ASSERT_PTR_NULL(strstr(fault_fs_log(), "%2e"));
    }
}

/* Every logged call is one that cannot follow a symlink, and none names `outside`. */
static int only_nofollow_calls(const char *log)
{
    int ok = 1;
    char line[512];
    for (const char *p = log; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        snprintf(line, sizeof line, "%.*s", (int)len, p);
        p += len + (nl != NULL);
        char fn[32];
        unsigned long flags = 0;
        const char *f = strstr(line, " flags=0x");
        if (sscanf(line, "%31s", fn) != 1 || !f)
            return 0;
        flags = strtoul(f + 9, NULL, 16);
        int nofollow = (!strcmp(fn, "openat") && (flags & O_NOFOLLOW)) ||
                       (!strcmp(fn, "fstatat") && (flags & AT_SYMLINK_NOFOLLOW)) ||
                       (!strcmp(fn, "fstatat64") && (flags & AT_SYMLINK_NOFOLLOW)) ||
                       (!strcmp(fn, "openat") && !strcmp(line, "openat . flags=0x90800")); /* the root, listing */
        if (!nofollow || (*outside && strstr(line, outside))) {
            fprintf(stderr, "a call that may follow a symlink: %s\n", line);
            ok = 0;
        }
    }
    return ok;
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "test_fault_paths: a request blocked (a FIFO opened without O_NONBLOCK?)\n";
    (void)!write(2, msg, sizeof msg - 1);
    _exit(1);
}

static void save_adapter(const char *dir)
{
    adp_config c = {.type = ADP_LORA, .r = 2, .lora_alpha = 4, .targets = ADP_ALL_MODULES};
    adp_adapter *a;
    mdl_error me;
    mkdir(dir, 0755);
    CU_ASSERT_EQUAL_FATAL(adp_create(gpt2_get_config(fa.app.models[APP_GENERATOR].gpt), &c, &a, &me), 0);
    CU_ASSERT_EQUAL(adp_save(a, dir, NULL, &me), 0);
    adp_free(a);
}

static void test_symlinks_and_special_files(void)
{
    char p[512], q[512];
    snprintf(outside, sizeof outside, "/tmp/ragd-outside-XXXXXX");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(outside));
    snprintf(p, sizeof p, "%s/real", outside);
    save_adapter(p); /* a valid adapter, outside the adapters directory */
    /* adapters/good: the control, which loads. */
    snprintf(p, sizeof p, "%s/good", fa.adapters);
    save_adapter(p);
    /* adapters/evil -> outside/real */
    snprintf(p, sizeof p, "%s/real", outside);
    snprintf(q, sizeof q, "%s/evil", fa.adapters);
    CU_ASSERT_EQUAL(symlink(p, q), 0);
    /* adapters/zero: weights linked to /dev/zero */
    snprintf(p, sizeof p, "%s/zero", fa.adapters);
    save_adapter(p);
    snprintf(q, sizeof q, "%s/zero/adapter_model.safetensors", fa.adapters);
    CU_ASSERT_EQUAL(unlink(q), 0);
    CU_ASSERT_EQUAL(symlink("/dev/zero", q), 0);
    /* adapters/cfglink: config linked to the outside adapter's */
    snprintf(p, sizeof p, "%s/cfglink", fa.adapters);
    save_adapter(p);
    snprintf(q, sizeof q, "%s/cfglink/adapter_config.json", fa.adapters);
    snprintf(p, sizeof p, "%s/real/adapter_config.json", outside);
    CU_ASSERT_EQUAL(unlink(q), 0);
    CU_ASSERT_EQUAL(symlink(p, q), 0);
    /* adapters/fifo: the weights are a FIFO nobody writes */
    snprintf(p, sizeof p, "%s/fifo", fa.adapters);
    save_adapter(p);
    snprintf(q, sizeof q, "%s/fifo/adapter_model.safetensors", fa.adapters);
    CU_ASSERT_EQUAL(unlink(q), 0);
    CU_ASSERT_EQUAL(mkfifo(q, 0644), 0);
    /* adapters/dirfile: a directory where the config should be */
    snprintf(p, sizeof p, "%s/dirfile", fa.adapters);
    save_adapter(p);
    snprintf(q, sizeof q, "%s/dirfile/adapter_config.json", fa.adapters);
    CU_ASSERT_EQUAL(unlink(q), 0);
    CU_ASSERT_EQUAL(mkdir(q, 0755), 0);

    signal(SIGALRM, on_alarm);
    alarm(60);
    unsigned status;
    counted_request("GET", "/adapters/good", NULL, &status);
    CU_ASSERT_EQUAL(status, 200); /* the control */
    CU_ASSERT(only_nofollow_calls(fault_fs_log()));
    static const char *const refused[] = {"/adapters/evil", "/adapters/zero", "/adapters/cfglink", "/adapters/fifo",
                                          "/adapters/dirfile"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        long calls = counted_request("GET", refused[i], NULL, &status);
        if (status != 422 || !only_nofollow_calls(fault_fs_log()))
            fprintf(stderr, "\nGET %s: %u after %ld calls:\n%s", refused[i], status, calls, fault_fs_log());
        CU_ASSERT_EQUAL(status, 422);
        CU_ASSERT(calls > 0 && only_nofollow_calls(fault_fs_log()));
    }
    /* A registered path through the symlink, and below it. */
    static const char *const via[] = {"{\"name\":\"via\",\"path\":\"evil\"}", "{\"name\":\"via\",\"path\":\"evil/real\"}"};
    for (size_t i = 0; i < 2; i++) {
        counted_request("POST", "/adapters", via[i], &status);
        CU_ASSERT_EQUAL(status, 422);
        CU_ASSERT(only_nofollow_calls(fault_fs_log()));
    }
    alarm(0);
    printf("\n  fault_paths: %zu symlink and special-file cases refused, every call O_NOFOLLOW or AT_SYMLINK_NOFOLLOW",
           sizeof refused / sizeof refused[0] + 2);
    fault_rmtree(outside);
}

/* Odd but plain names in a registered path: looked up beneath the root, never following. */
static void test_registered_paths(void)
{
    static const char *const odd[] = {"%2e%2e", "..%2f", "..\\\\", ".hidden", "-dash", "trailing ", "a/b",
                                      "x/%2e%2e/y", "\\uff41dapter", "new\\nline"};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        char body[256];
        snprintf(body, sizeof body, "{\"name\":\"ok\",\"path\":\"%s\"}", odd[i]);
        unsigned status;
        long calls = counted_request("POST", "/adapters", body, &status);
        CU_ASSERT_EQUAL(status, 422); /* no such directory */
        if (!(calls > 0 && only_nofollow_calls(fault_fs_log())))
            fprintf(stderr, "\nPOST /adapters %s: %u after %ld calls:\n%s", body, status, calls, fault_fs_log());
        CU_ASSERT(calls > 0 && only_nofollow_calls(fault_fs_log()));
    }
}

static int setup(void) { return fault_app_open(&fa, 1); }

static int teardown(void)
{
    fault_app_close(&fa);
    return 0;
}

void cu_register(void)
{
    if (!cu_testdata("checkpoints/gpt2-names-makemore")) {
        cu_skip_all("../shared/testdata is absent (the adapter routes need the generator)");
        return;
    }
    CU_pSuite s = CU_add_suite("fault_paths", setup, teardown);
    CU_add_test(s, "rejected adapter names: a 4xx and zero filesystem calls", test_rejected_names);
    CU_add_test(s, "dataset ids: no filesystem call names them", test_dataset_ids);
    CU_add_test(s, "registered paths of odd plain names: looked up beneath the root only", test_registered_paths);
    CU_add_test(s, "symlinks and special files: refused without following them", test_symlinks_and_special_files);
}
