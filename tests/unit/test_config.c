/* test_config.c — `ragd` command line, RAGD_* environment and defaults. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "cu.h"

#define ARGV(...) ((char *[]){"ragd", __VA_ARGS__, NULL})
#define ARGC(...) ((int)(sizeof((char *[]){"ragd", __VA_ARGS__}) / sizeof(char *)))
#define PARSE(cfg, cmd, err, ...) srv_config_parse(ARGC(__VA_ARGS__), ARGV(__VA_ARGS__), cfg, cmd, err)

static void test_defaults(void)
{
    srv_config c;
    srv_command cmd;
    srv_config_error e;
    CU_ASSERT_EQUAL_FATAL(PARSE(&c, &cmd, &e, "serve"), 0);
    CU_ASSERT_EQUAL(cmd, SRV_CMD_SERVE);
    CU_ASSERT_STRING_EQUAL(c.listen, "127.0.0.1:8080");
    CU_ASSERT_STRING_EQUAL(c.data_dir, "./data");
    CU_ASSERT_STRING_EQUAL(c.adapters_dir, "./data/adapters");
    CU_ASSERT_EQUAL(c.max_body_bytes, 2097152);
    CU_ASSERT_EQUAL(c.max_batch, 32);
    CU_ASSERT(c.threads >= 1);
    CU_ASSERT_EQUAL(c.compute_nice, 5);
    CU_ASSERT_PTR_NULL(c.generator_dir);
    CU_ASSERT_PTR_NULL(c.api_key);
}

static void test_flags_forms(void)
{
    srv_config c;
    srv_command cmd;
    srv_config_error e;
    CU_ASSERT_EQUAL_FATAL(PARSE(&c, &cmd, &e, "serve", "--listen", "0.0.0.0:0", "--max-batch=7",
                                "--data-dir", "/tmp/x", "--generator", "/m/gpt2"),
                          0);
    CU_ASSERT_STRING_EQUAL(c.listen, "0.0.0.0:0");
    CU_ASSERT_EQUAL(c.max_batch, 7);
    CU_ASSERT_STRING_EQUAL(c.adapters_dir, "/tmp/x/adapters");
    CU_ASSERT_STRING_EQUAL(c.generator_dir, "/m/gpt2");
}

static void test_env_and_precedence(void)
{
    srv_config c;
    srv_command cmd;
    srv_config_error e;
    setenv("RAGD_MAX_BATCH", "5", 1);
    setenv("RAGD_ADAPTERS_DIR", "/srv/adapters", 1);
    CU_ASSERT_EQUAL(PARSE(&c, &cmd, &e, "serve"), 0);
    CU_ASSERT_EQUAL(c.max_batch, 5);
    CU_ASSERT_STRING_EQUAL(c.adapters_dir, "/srv/adapters");
    CU_ASSERT_EQUAL(PARSE(&c, &cmd, &e, "serve", "--max-batch", "9"), 0);
    CU_ASSERT_EQUAL(c.max_batch, 9); /* the flag beats the environment */
    setenv("RAGD_MAX_BATCH", "lots", 1);
    CU_ASSERT_EQUAL(PARSE(&c, &cmd, &e, "serve"), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "RAGD_MAX_BATCH"));
    unsetenv("RAGD_MAX_BATCH");
    unsetenv("RAGD_ADAPTERS_DIR");
}

/* Each bad command line and a fragment its message must contain. */
static const struct {
    const char *args[4];
    const char *msg;
} bad_cases[] = {
    {{NULL}, "no command"},
    {{"launch"}, "unknown command 'launch'"},
    {{"serve", "--bogus"}, "unknown flag '--bogus'"},
    {{"serve", "--listen"}, "needs a value"},
    {{"serve", "--max-batch", "0"}, "out of range"},
    {{"serve", "--max-batch", "12abc"}, "expected an integer"},
    {{"serve", "--compute-nice", "20"}, "out of range"},
    {{"serve", "--max-body-bytes", "99999999999999999999"}, "expected an integer"},
    {{"serve", "--log-level", "loud"}, "--log-level"},
    {{"serve", "stray"}, "unexpected argument 'stray'"},
};

static void test_bad_command_lines(void)
{
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        char *argv[6] = {"ragd"};
        int argc = 1;
        for (int k = 0; k < 4 && bad_cases[i].args[k]; k++)
            argv[argc++] = (char *)bad_cases[i].args[k];
        srv_config c;
        srv_command cmd;
        srv_config_error e;
        CU_ASSERT_EQUAL(srv_config_parse(argc, argv, &c, &cmd, &e), -1);
        if (!strstr(e.msg, bad_cases[i].msg))
            fprintf(stderr, "case %zu: message '%s' lacks '%s'\n", i, e.msg, bad_cases[i].msg);
        CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, bad_cases[i].msg));
    }
}

static void test_help_and_version(void)
{
    srv_config c;
    srv_command cmd;
    srv_config_error e;
    CU_ASSERT_EQUAL(PARSE(&c, &cmd, &e, "--help"), 0);
    CU_ASSERT_EQUAL(cmd, SRV_CMD_HELP);
    CU_ASSERT_EQUAL(PARSE(&c, &cmd, &e, "serve", "--help"), 0);
    CU_ASSERT_EQUAL(cmd, SRV_CMD_HELP);
    CU_ASSERT_EQUAL(PARSE(&c, &cmd, &e, "--version"), 0);
    CU_ASSERT_EQUAL(cmd, SRV_CMD_VERSION);

    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    srv_config_usage(f);
    fclose(f);
    static const char *const expect[] = {"--listen", "RAGD_LISTEN", "--api-key-file", "RAGD_API_KEY_FILE",
                                         "--max-connections-per-ip", "default 2097152",
                                         "RAGD_COMPUTE_NICE"};
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++)
        CU_ASSERT_PTR_NOT_NULL(strstr(text, expect[i]));
    free(text);
}

void cu_register(void)
{
    CU_pSuite s = CU_add_suite("config", NULL, NULL);
    CU_add_test(s, "defaults", test_defaults);
    CU_add_test(s, "flag forms", test_flags_forms);
    CU_add_test(s, "environment and precedence", test_env_and_precedence);
    CU_add_test(s, "bad command lines", test_bad_command_lines);
    CU_add_test(s, "help and version", test_help_and_version);
}
