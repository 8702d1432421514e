/* test_fault_io.c — failing writes and fsyncs, and a full disk, injected through fault.c's
 * write/pwrite/fsync/fdatasync:
 *   - the atomic adapter writer (trn_publish): for N = 1, 2, ... the Nth write, then the Nth
 *     sync, fails (EIO, and ENOSPC for writes) until the publish completes. A failed call is
 *     never reported as success; afterwards the adapter directory holds the old adapter or the
 *     new one, whole and loadable, and no temporary;
 *   - SQLite commits (st_upsert into a real store): the same loops; a failed write or sync is
 *     an error (ST_ERR_IO, or ST_ERR_FULL for ENOSPC), the batch is wholly absent, the database
 *     passes integrity_check, and the next write succeeds;
 *   - a full disk over HTTP (srv_dispatch_detached): every write of an upsert fails with
 *     ENOSPC: 507 storage_full, nothing of the batch visible, the old documents intact; once
 *     space returns the same request succeeds.
 * Each loop prints how many faults it injected. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cu.h"
#include "fault.h"
#include "fault_app.h"
#include "train.h"

#define MAX_N 100000

static fault_app fa;
static long total_injected;

static const char *const kind_names[FAULT_IO_N_KINDS] = {"write", "fsync"};

static void report(const char *what, fault_io_kind kind, int e, long n)
{
    printf("\n  fault_io: %-36s %-6s %-7s %5ld faults injected", what, kind_names[kind], e == ENOSPC ? "ENOSPC" : "EIO",
           n);
    total_injected += n;
}

/* ================================================================ adapters */

static const gpt2_config base = {.vocab = 64, .n_positions = 32, .n_embd = 16, .n_layer = 2, .n_head = 2,
                                 .n_inner = 64, .ln_eps = 1e-5f, .tied = 1, .eos_id = -1};

/* 0 when root/name loads and holds `want`'s weights. */
static int holds(int root_fd, const char *name, const adp_adapter *want)
{
    adp_adapter *a;
    mdl_error me;
    if (adp_load(root_fd, name, &base, &a, &me) != 0)
        return -1;
    int same = a->n_weights == want->n_weights && !memcmp(a->weights, want->weights, sizeof(float) * a->n_weights);
    adp_free(a);
    return same ? 0 : 1;
}

/* Entries of dir whose name starts with '.' (other than . and ..): temporaries left behind. */
static int hidden_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d)) != NULL;)
        n += e->d_name[0] == '.' && strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    if (d)
        closedir(d);
    return n;
}

static void test_adapter_publish(void)
{
    adp_config c = {.type = ADP_LORA, .r = 2, .lora_alpha = 4, .targets = ADP_ALL_MODULES};
    adp_adapter *old, *new;
    mdl_error me;
    CU_ASSERT_EQUAL_FATAL(adp_create(&base, &c, &old, &me), 0);
    CU_ASSERT_EQUAL_FATAL(adp_create(&base, &c, &new, &me), 0);
    for (size_t i = 0; i < old->n_weights; i++) {
        old->weights[i] = 0.25f;
        new->weights[i] = (float)i * 0.01f;
    }
    const char *root = fa.adapters;
    mkdir(root, 0755);
    int root_fd = open(root, O_RDONLY | O_DIRECTORY);
    CU_ASSERT_FATAL(root_fd >= 0);
    static const struct {
        fault_io_kind kind;
        int err;
    } faults[] = {{FAULT_IO_WRITE, EIO}, {FAULT_IO_WRITE, ENOSPC}, {FAULT_IO_SYNC, EIO}};
    for (size_t f = 0; f < sizeof faults / sizeof faults[0]; f++) {
        long n = 1, bad = 0;
        for (; n < MAX_N && !bad; n++) {
            CU_ASSERT_EQUAL_FATAL(trn_publish(old, root, "pub", "t", "gpt2", &me), 0);
            fault_io_arm(faults[f].kind, n, faults[f].err, 0);
            int rc = trn_publish(new, root, "pub", "t", "gpt2", &me);
            fault_io_disarm(faults[f].kind);
            int fired = fault_io_fired(faults[f].kind);
            if (fired && rc == 0) {
                fprintf(stderr, "\ntrn_publish: %s %ld failed and the publish reported success\n",
                        kind_names[faults[f].kind], n);
                bad++;
            }
            if (rc != 0 && me.code != MDL_EIO) {
                fprintf(stderr, "\ntrn_publish: %s %ld failed: code %d (%s)\n", kind_names[faults[f].kind], n, me.code,
                        me.msg);
                bad++;
            }
            /* Old or new, whole: the new one only once the rename happened. */
            int is_old = holds(root_fd, "pub", old), is_new = holds(root_fd, "pub", new);
            if (is_old != 0 && is_new != 0) {
                fprintf(stderr, "\ntrn_publish: %s %ld failed: the adapter is neither the old nor the new one\n",
                        kind_names[faults[f].kind], n);
                bad++;
            }
            if (rc == 0 && is_new != 0) {
                fprintf(stderr, "\ntrn_publish: succeeded but the adapter is not the new one\n");
                bad++;
            }
            if (hidden_entries(root) != 0) {
                fprintf(stderr, "\ntrn_publish: %s %ld failed: a temporary was left in %s\n",
                        kind_names[faults[f].kind], n, root);
                bad++;
            }
            if (!fired)
                break;
        }
        CU_ASSERT_EQUAL(bad, 0);
        report("trn_publish (LoRA over LoRA)", faults[f].kind, faults[f].err, n - 1);
    }
    /* A full disk that stays full: the publish fails, the old adapter stays; then it succeeds. */
    CU_ASSERT_EQUAL(trn_publish(old, root, "pub", "t", "gpt2", &me), 0);
    fault_io_arm(FAULT_IO_WRITE, 1, ENOSPC, 1);
    CU_ASSERT_NOT_EQUAL(trn_publish(new, root, "pub", "t", "gpt2", &me), 0);
    fault_io_disarm(FAULT_IO_WRITE);
    CU_ASSERT(strstr(me.msg, "No space left on device") != NULL);
    CU_ASSERT_EQUAL(holds(root_fd, "pub", old), 0);
    CU_ASSERT_EQUAL(trn_publish(new, root, "pub", "t", "gpt2", &me), 0);
    CU_ASSERT_EQUAL(holds(root_fd, "pub", new), 0);
    close(root_fd);
    adp_free(old);
    adp_free(new);
}

/* ================================================================ SQLite commits */

#define DIM 8

static int integrity_ok(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/ragd.db", fa.dir);
    sqlite3 *db;
    sqlite3_stmt *st;
    int ok = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
             sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK;
    if (ok) {
        ok = sqlite3_step(st) == SQLITE_ROW && !strcmp((const char *)sqlite3_column_text(st, 0), "ok");
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return ok;
}

static int count_docs(const char *coll)
{
    st_collection c;
    st_error e;
    return st_collection_get(fa.app.db, coll, &c, &e) == 0 ? (int)c.count : -1;
}

static void test_store_commits(void)
{
    st_error e;
    st_collection spec = {.name = "io", .dimension = DIM, .distance = ST_L2, .m = 8, .ef_construction = 16};
    CU_ASSERT_EQUAL_FATAL(st_collection_create(fa.app.db, &spec, &e), 0);
    float v[12][DIM];
    for (int i = 0; i < 12; i++)
        for (int k = 0; k < DIM; k++)
            v[i][k] = (float)((i * 7 + k * 3) % 11) - 5.0f;
    st_doc old[8], batch[4];
    for (int i = 0; i < 8; i++)
        old[i] = (st_doc){{0, i, NULL, 0}, "old", 3, NULL, 0, v[i]};
    for (int i = 0; i < 4; i++)
        batch[i] = (st_doc){{0, 100 + i, NULL, 0}, "new text", 8, "{\"k\":1}", 7, v[8 + i]};
    CU_ASSERT_EQUAL_FATAL(st_upsert(fa.app.db, "io", DIM, old, 8, &e), 0);
    static const struct {
        fault_io_kind kind;
        int err, kind_want;
    } faults[] = {{FAULT_IO_WRITE, EIO, ST_ERR_IO}, {FAULT_IO_WRITE, ENOSPC, ST_ERR_FULL}, {FAULT_IO_SYNC, EIO, ST_ERR_IO}};
    for (size_t f = 0; f < sizeof faults / sizeof faults[0]; f++) {
        long n = 1, bad = 0;
        for (; n < MAX_N && !bad; n++) {
            fault_io_arm(faults[f].kind, n, faults[f].err, 0);
            int rc = st_upsert(fa.app.db, "io", DIM, batch, 4, &e);
            fault_io_disarm(faults[f].kind);
            int fired = fault_io_fired(faults[f].kind);
            st_error ue = e;
            if (fired && rc == 0) {
                fprintf(stderr, "\nst_upsert: %s %ld failed and the batch was acknowledged\n",
                        kind_names[faults[f].kind], n);
                bad++;
            }
            if (rc != 0 && st_error_kind(&ue) != faults[f].kind_want) {
                fprintf(stderr, "\nst_upsert: %s %ld failed: code %d (%s)\n", kind_names[faults[f].kind], n, ue.code,
                        ue.msg);
                bad++;
            }
            int count = count_docs("io");
            if (count != (rc == 0 ? 12 : 8) || !integrity_ok()) {
                fprintf(stderr, "\nst_upsert: %s %ld failed (rc %d): %d documents, integrity %s\n",
                        kind_names[faults[f].kind], n, rc, count, integrity_ok() ? "ok" : "FAILED");
                bad++;
            }
            /* The next write succeeds: put the batch in (if it is not) and take it out again. */
            if (st_upsert(fa.app.db, "io", DIM, batch, 4, &e) != 0) {
                fprintf(stderr, "\nst_upsert after %s %ld failed: the next write failed too: %s\n",
                        kind_names[faults[f].kind], n, e.msg);
                bad++;
            }
            for (int i = 0; i < 4; i++)
                st_document_delete(fa.app.db, "io", &batch[i].id, &e);
            if (!fired)
                break;
        }
        CU_ASSERT_EQUAL(bad, 0);
        report("st_upsert (4 documents into 8)", faults[f].kind, faults[f].err, n - 1);
    }
    CU_ASSERT_EQUAL(count_docs("io"), 8);
}

/* ================================================================ a full disk over HTTP */

static void test_disk_full_http(void)
{
    fault_reply r;
    CU_ASSERT_EQUAL_FATAL(fault_app_request(&fa, "POST", "/collections",
                                            "{\"name\":\"full\",\"dimension\":4,\"distance\":\"cosine\"}", &r),
                          0);
    CU_ASSERT_EQUAL(r.status, 201);
    free(r.body);
    CU_ASSERT_EQUAL_FATAL(fault_app_request(&fa, "POST", "/collections/full/documents",
                                            "{\"documents\":[{\"id\":1,\"text\":\"kept\",\"vector\":[1,0,0,0]}]}", &r),
                          0);
    CU_ASSERT_EQUAL(r.status, 200);
    free(r.body);
    static const char batch[] = "{\"documents\":[{\"id\":2,\"text\":\"a\",\"vector\":[0,1,0,0]},"
                                "{\"id\":3,\"text\":\"b\",\"vector\":[0,0,1,0],\"metadata\":{\"x\":1}}]}";
    /* The disk fills up: every write fails with ENOSPC until space returns. */
    for (int attempt = 0; attempt < 3; attempt++) {
        fault_io_arm(FAULT_IO_WRITE, 1, ENOSPC, 1);
        CU_ASSERT_EQUAL_FATAL(fault_app_request(&fa, "POST", "/collections/full/documents", batch, &r), 0);
        fault_io_disarm(FAULT_IO_WRITE);
        CU_ASSERT(fault_io_fired(FAULT_IO_WRITE));
        total_injected += fault_io_fired(FAULT_IO_WRITE);
        fault_reply_parse(&r);
        if (r.status != 507)
            fprintf(stderr, "\ndisk full: %u %s\n", r.status, r.body);
        CU_ASSERT_EQUAL(r.status, 507);
        CU_ASSERT_STRING_EQUAL(r.code, "storage_full");
        free(r.body);
        CU_ASSERT_EQUAL(count_docs("full"), 1);
    }
    CU_ASSERT(integrity_ok());
    /* The old document reads back whole. */
    CU_ASSERT_EQUAL_FATAL(fault_app_request(&fa, "GET", "/collections/full/documents/1", NULL, &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT(r.body && strstr(r.body, "\"kept\""));
    free(r.body);
    /* Space returns: the same request succeeds, and both new documents are there. */
    CU_ASSERT_EQUAL_FATAL(fault_app_request(&fa, "POST", "/collections/full/documents", batch, &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    free(r.body);
    CU_ASSERT_EQUAL(count_docs("full"), 3);
    printf("\n  fault_io: POST /collections/full/documents, disk full: 507 storage_full 3 times, then 200");
}

static int setup(void) { return fault_app_open(&fa, 0); }

static int teardown(void)
{
    fault_app_close(&fa);
    printf("\n  fault_io: %ld I/O faults injected in total\n", total_injected);
    return 0;
}

void cu_register(void)
{
    CU_pSuite s = CU_add_suite("fault_io", setup, teardown);
    CU_add_test(s, "adapter publish: a failed write or fsync is never a success, old or new adapter whole",
                test_adapter_publish);
    CU_add_test(s, "SQLite commits: a failed write or fsync is an error, the batch absent, the next write works",
                test_store_commits);
    CU_add_test(s, "disk full over HTTP: 507 storage_full, old data intact, recovery when space returns",
                test_disk_full_http);
}
