/* test_cli.c — ragd as a process: --help lists every flag of the one table in
 * server/config.c, --version, bad flags and values exit 2 with a message, RAGD_* environment
 * variables work and flags beat them, SIGTERM exits 0 after the port file was written, and a
 * start-up failure (bad model dir, busy port, unusable data dir) exits non-zero and says why. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cu.h"
#include "harness.h"

static char *gpt2;

/* The flag names of server/config.c's table: lines of the form {"name", S(...) or L(...). */
static size_t config_flags(char names[][48], size_t cap)
{
    char path[4096], line[512];
    it_source_path("server/config.c", path, sizeof path);
    FILE *f = fopen(path, "r");
    size_t n = 0;
    while (f && n < cap && fgets(line, sizeof line, f)) {
        char kind;
        if (sscanf(line, " {\"%47[a-z0-9-]\", %c(", names[n], &kind) == 2 && (kind == 'S' || kind == 'L'))
            n++;
    }
    if (f)
        fclose(f);
    return n;
}

static void test_help_and_version(void)
{
    char *out = malloc(65536), names[64][48];
    const char *help[] = {"--help", NULL}, *serve_help[] = {"serve", "--help", NULL}, *version[] = {"--version", NULL};
    CU_ASSERT_EQUAL(it_run(help, out, 65536), 0);
    size_t n = config_flags(names, 64);
    CU_ASSERT(n >= 15); /* the table was found and parsed */
    for (size_t i = 0; i < n; i++) {
        char flag[64], env[64];
        snprintf(flag, sizeof flag, "--%s ", names[i]);
        size_t k = (size_t)snprintf(env, sizeof env, "RAGD_");
        for (const char *p = names[i]; *p && k + 1 < sizeof env; p++)
            env[k++] = *p == '-' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
        env[k] = '\0';
        if (!strstr(out, flag) || !strstr(out, env))
            fprintf(stderr, "--help does not list %s / %s\n", flag, env);
        CU_ASSERT(strstr(out, flag) && strstr(out, env));
    }
    CU_ASSERT_EQUAL(it_run(serve_help, out, 65536), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "--max-body-bytes"));
    CU_ASSERT_EQUAL(it_run(version, out, 65536), 0);
    CU_ASSERT(strncmp(out, "ragd ", 5) == 0 && strchr(out + 5, '.'));
    free(out);
}

static void test_bad_command_lines(void)
{
    static const struct {
        const char *args[4];
        const char *says;
    } cases[] = {
        {{"serve", "--bogus"}, "unknown flag '--bogus'"},
        {{"serve", "--max-batch", "ten"}, "--max-batch"},
        {{"serve", "--max-batch", "0"}, "out of range"},
        {{"serve", "--max-body-bytes", "1023"}, "out of range"},
        {{"serve", "--max-batch=-1"}, "out of range"},
        {{"serve", "--timeout"}, "needs a value"},
        {{"serve", "--log-level", "loud"}, "--log-level"},
        {{"serve", "stray"}, "unexpected argument 'stray'"},
        {{"frobnicate"}, "unknown command 'frobnicate'"},
        {{NULL}, "no command"},
    };
    char out[4096];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = it_run(cases[i].args, out, sizeof out);
        if (rc != 2 || !strstr(out, cases[i].says))
            fprintf(stderr, "case %zu: exit %d, said: %s\n", i, rc, out);
        CU_ASSERT(rc == 2 && strstr(out, cases[i].says));
    }
}

static void test_env_and_precedence(void)
{
    static const char three[] = "{\"inputs\":[\"a\",\"b\",\"c\"]}";
    const char *env[] = {"RAGD_MAX_BATCH=2", NULL};
    const char *args[] = {"--generator", gpt2, NULL};
    it_server s;
    CU_ASSERT_EQUAL_FATAL(it_start(&s, args, env), 0);
    it_response r = it_post(&s, "/tokenize", three);
    CU_ASSERT(it_is_error(&r, 413, "batch_too_large", "/inputs"));
    it_free(&r);
    CU_ASSERT(it_probe(&s));
    CU_ASSERT_EQUAL(it_stop(&s), 0);

    /* The flag beats the environment. */
    const char *args2[] = {"--generator", gpt2, "--max-batch", "5", NULL};
    CU_ASSERT_EQUAL_FATAL(it_start(&s, args2, env), 0);
    r = it_post(&s, "/tokenize", three);
    CU_ASSERT(r.status == 200 && json_array_size(r.json) == 3);
    it_free(&r);
    r = it_get(&s, "/info");
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(r.json, "limits"), "max_batch")), 5);
    it_free(&r);
    CU_ASSERT_EQUAL(it_stop(&s), 0);

    /* A model directory from the environment alone. */
    char gen_env[4200];
    snprintf(gen_env, sizeof gen_env, "RAGD_GENERATOR=%s", gpt2);
    const char *env3[] = {gen_env, NULL};
    CU_ASSERT_EQUAL_FATAL(it_start(&s, NULL, env3), 0);
    CU_ASSERT(it_probe(&s));
    CU_ASSERT_EQUAL(it_stop(&s), 0);

    /* A bad value in the environment is refused like a bad flag, naming the variable. */
    const char *env4[] = {"RAGD_MAX_BATCH=lots", NULL};
    CU_ASSERT_EQUAL(it_spawn(&s, args, env4), 1);
    CU_ASSERT_EQUAL(s.exit_status, 2);
    CU_ASSERT(it_log_contains(&s, "stderr.log", "RAGD_MAX_BATCH"));
    it_stop(&s);
}

static void test_sigterm(void)
{
    const char *args[] = {"--generator", gpt2, NULL};
    it_server s;
    CU_ASSERT_EQUAL_FATAL(it_start(&s, args, NULL), 0);
    char line[64];
    snprintf(line, sizeof line, "listening on http://127.0.0.1:%u\n", s.port);
    CU_ASSERT(it_log_contains(&s, "stdout.log", line));
    CU_ASSERT_EQUAL(access(s.port_file, R_OK), 0); /* still there while running */
    CU_ASSERT(it_probe(&s));
    CU_ASSERT_EQUAL(it_stop(&s), 0);
}

/* Start-up failures: the process exits non-zero on its own and its log says why. */
static void test_startup_failures(void)
{
    char empty[] = "/tmp/ragd-empty-XXXXXX", missing[64];
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(empty));
    snprintf(missing, sizeof missing, "%s/none", empty);
    it_server busy;
    const char *busy_args[] = {"--generator", gpt2, NULL};
    CU_ASSERT_EQUAL_FATAL(it_start(&busy, busy_args, NULL), 0);
    char taken[32];
    snprintf(taken, sizeof taken, "127.0.0.1:%u", busy.port);
    static const char *const logged[] = {"model failed to load", "model failed to load", "cannot start the HTTP server",
                                         "cannot open the database"};
    const char *const cases[][4] = {
        {"--embedder", empty},
        {"--generator", missing},
        {"--listen", taken},
        {"--data-dir", "/proc/ragd-cannot-be-here"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        it_server s;
        int rc = it_spawn(&s, cases[i], NULL);
        if (rc == 0) /* it may listen first, then load the model and stop */
            CU_ASSERT_EQUAL(it_wait_exit(&s, 20000), 0);
        CU_ASSERT(s.pid == 0 && s.exit_status != 0);
        if (!it_log_contains(&s, "stderr.log", logged[i]))
            fprintf(stderr, "start-up case %zu: the log does not say '%s'\n", i, logged[i]);
        CU_ASSERT(it_log_contains(&s, "stderr.log", logged[i]));
        CU_ASSERT(i >= 2 || it_log_contains(&s, "stderr.log", cases[i][1])); /* names the directory */
        s.exit_status = 0; /* expected: do not print the log again */
        it_stop(&s);
    }
    CU_ASSERT(it_probe(&busy)); /* the server whose port was wanted is unharmed */
    CU_ASSERT_EQUAL(it_stop(&busy), 0);
    rmdir(empty);
}

static int cleanup(void)
{
    free(gpt2);
    return 0;
}

void cu_register(void)
{
    gpt2 = it_testdata("tokenizers/gpt2");
    if (!gpt2) {
        cu_skip_all("../shared/testdata not found");
        return;
    }
    CU_pSuite s = CU_add_suite("command line", NULL, cleanup);
    CU_add_test(s, "--help lists every flag, --version", test_help_and_version);
    CU_add_test(s, "bad flags and values exit 2", test_bad_command_lines);
    CU_add_test(s, "RAGD_* environment, flags win", test_env_and_precedence);
    CU_add_test(s, "SIGTERM exits 0; port file and listening line", test_sigterm);
    CU_add_test(s, "start-up failures exit non-zero and say why", test_startup_failures);
}
