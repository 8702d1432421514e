/* test_store_busy.c — SQLITE_BUSY from a second process: a real child process opens the
 * daemon's ragd.db and holds the write lock (BEGIN IMMEDIATE) while the real ragd is asked to
 * write. ragd waits a bounded time (the busy timeout, 5 s), then answers 503 store_busy with
 * Retry-After, for a batch upsert and for a dataset upload (the jobs store); reads go on
 * meanwhile (WAL); nothing of the refused writes is visible; once the child releases the lock
 * the same writes succeed. */
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

#define BUSY_TIMEOUT_S 5 /* store.c and jobs.c's BUSY_TIMEOUT_MS */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Forks a child that holds BEGIN IMMEDIATE on DIR/ragd.db until it reads a byte from the
 * returned pipe (or the pipe closes). Returns the child's pid once it holds the lock, or -1. */
static pid_t hold_write_lock(const char *dir, int *release_fd)
{
    int ready[2], release[2];
    if (pipe(ready) != 0 || pipe(release) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(ready[0]);
        close(release[1]);
        char path[128];
        snprintf(path, sizeof path, "%s/ragd.db", dir);
        sqlite3 *db;
        char ok = sqlite3_open(path, &db) == SQLITE_OK && sqlite3_busy_timeout(db, 10000) == SQLITE_OK &&
                  sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK;
        if (write(ready[1], &ok, 1) != 1 || !ok)
            _exit(1);
        char c;
        (void)!read(release[0], &c, 1);
        int rc = sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        sqlite3_close(db);
        _exit(rc == SQLITE_OK ? 0 : 1);
    }
    close(ready[1]);
    close(release[0]);
    char ok = 0;
    if (read(ready[0], &ok, 1) != 1 || !ok) {
        close(ready[0]);
        close(release[1]);
        waitpid(pid, NULL, 0);
        return -1;
    }
    close(ready[0]);
    *release_fd = release[1];
    return pid;
}

static void test_busy(void)
{
    it_server s;
    CU_ASSERT_EQUAL_FATAL(it_start(&s, NULL, NULL), 0);
    CU_ASSERT_EQUAL(create(&s, "b", 4, "l2"), 201);
    it_response r = it_post(&s, "/collections/b/documents", "{\"documents\":[{\"id\":1,\"vector\":[1,0,0,0]}]}");
    CU_ASSERT_EQUAL(r.status, 200);
    it_free(&r);
    CU_ASSERT_EQUAL(wait_indexed(&s, "b"), 1); /* the indexer's commit is done: ragd is idle */

    int release = -1;
    pid_t child = hold_write_lock(s.dir, &release);
    CU_ASSERT_FATAL(child > 0);
    static const char batch[] = "{\"documents\":[{\"id\":2,\"vector\":[0,1,0,0]},{\"id\":3,\"vector\":[0,0,1,0]}]}";
    static const struct {
        const char *path, *body, *content_type;
    } writes[] = {
        {"/collections/b/documents", batch, NULL},
        {"/datasets", "{\"prompt\":\"a\",\"completion\":\"b\"}\n", "Content-Type: application/x-ndjson"},
    };
    for (size_t i = 0; i < 2; i++) {
        double t0 = now_s();
        const char *hdr[] = {writes[i].content_type, NULL};
        r = it_request(&s, "POST", writes[i].path, writes[i].content_type ? hdr : NULL, writes[i].body,
                       strlen(writes[i].body));
        double waited = now_s() - t0;
        char retry[16] = "";
        CU_ASSERT(it_is_error(&r, 503, "store_busy", NULL));
        CU_ASSERT(it_header(&r, "Retry-After", retry, sizeof retry) && strtol(retry, NULL, 10) >= 1);
        /* A bounded wait: the busy timeout, not forever and not at once. */
        printf("\n  store_busy: POST %s answered %ld after %.1f s (busy timeout %d s)", writes[i].path, r.status,
               waited, BUSY_TIMEOUT_S);
        CU_ASSERT(waited >= BUSY_TIMEOUT_S - 0.5 && waited < 3 * BUSY_TIMEOUT_S);
        it_free(&r);
    }
    /* Reads go on while the lock is held, and see nothing of the refused batch. */
    CU_ASSERT_EQUAL(count_of(&s, "b"), 1);
    r = it_post(&s, "/search", "{\"collection\":\"b\",\"vector\":[1,0,0,0],\"top_k\":5}");
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(r.json, "results")), 1);
    it_free(&r);

    /* Released: the same writes succeed. */
    CU_ASSERT_EQUAL(write(release, "x", 1), 1);
    close(release);
    int status;
    CU_ASSERT_EQUAL(waitpid(child, &status, 0), child);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    r = it_post(&s, "/collections/b/documents", batch);
    CU_ASSERT_EQUAL(r.status, 200);
    it_free(&r);
    const char *hdr[] = {"Content-Type: application/x-ndjson", NULL};
    r = it_request(&s, "POST", "/datasets", hdr, writes[1].body, strlen(writes[1].body));
    CU_ASSERT_EQUAL(r.status, 201);
    it_free(&r);
    CU_ASSERT_EQUAL(count_of(&s, "b"), 3);
    CU_ASSERT_EQUAL(it_stop(&s), 0);
}

void cu_register(void)
{
    CU_pSuite s = CU_add_suite("store_busy", NULL, NULL);
    CU_add_test(s, "a second process holds the write lock: bounded wait, 503 store_busy, then writes succeed", test_busy);
}
