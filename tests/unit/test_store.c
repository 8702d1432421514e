/* test_store.c — opening the database: WAL, migrations, reopening, refusing the future. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    static const char *const files[] = {"ragd.db", "ragd.db-wal", "ragd.db-shm"};
    for (size_t i = 0; i < 3; i++) {
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

void cu_register(void)
{
    CU_pSuite s = CU_add_suite("store", setup, teardown);
    CU_add_test(s, "open, migrate, reopen", test_open_migrate_reopen);
    CU_add_test(s, "refuses a newer schema", test_refuses_newer_schema);
    CU_add_test(s, "bad directories", test_bad_dirs);
}
