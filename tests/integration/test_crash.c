/* test_crash.c — the crash loop: ragd with the real gpt2-names-makemore checkpoint and a
 * collection, driven by a stream of batch upserts and a stream of small /finetune jobs (LoRA,
 * prompt and prefix tuning, so adapters are published every few hundred milliseconds), is
 * killed with SIGKILL, restarted, and checked, cycle after cycle. Every other cycle is killed
 * at a random moment; the others at a random delay (0-20 ms) after a training job starts
 * publishing an adapter (inotify sees its temporary directory appear), so kills land inside
 * the adapter write. After each kill, before the restart, on the files themselves:
 *   - PRAGMA integrity_check is ok;
 *   - every acknowledged batch is present, and no batch is there in part;
 *   - the FTS rows match the documents;
 *   - what the kill left in the adapters directory is recorded (a temporary directory:
 *     empty, partly written or complete), as are the jobs left running.
 * Then, on the restarted server:
 *   - the index and the rows agree: the count, and sampled rows found through the index
 *     (and by the exact scan) by their own vectors;
 *   - every acknowledged job exists; every job the kill left running is failed with a
 *     reason (or resumed, with a new start time), none is left running;
 *   - no temporary is left in the adapters directory; every adapter directory holds exactly
 *     adapter_config.json and adapter_model.safetensors, is listed by GET /adapters, loads
 *     (GET /adapters/NAME) and serves POST /generate?adapter=NAME; a succeeded job's adapter
 *     is there.
 * RAGD_CRASH_CYCLES sets the cycles (default 4), RAGD_CRASH_FRESH_EVERY starts a new data
 * directory every N cycles (default 100, so long runs keep the collection small), and
 * RAGD_CRASH_SEED the random seed. bench/crash_loop.sh runs the long loop. */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cu.h"
#include "harness.h"
#include "search_util.h"

#define C_DIM 16
#define C_PER 20             /* documents per batch */
#define C_MAX_BATCHES 400000
#define C_MAX_JOBS 8192      /* acknowledged jobs remembered per data directory */
#define C_NAMES 3            /* adapter names the jobs take turns writing */
#define C_MAX_DELAY_US 20000 /* after a publish starts */

static char *ckpt;

static const char *str_or_empty(const char *s) { return s ? s : ""; }

/* ---- the load: batch upserts and training jobs ---- */

typedef struct {
    const it_server *s;
    volatile int stop;
    int first, sent;
    unsigned char acked[C_MAX_BATCHES];
} ingest_stream;

static void *ingest_run(void *arg)
{
    ingest_stream *st = arg;
    unsigned seed = (unsigned)st->first * 31u + 7u;
    for (int b = st->first; !st->stop && b < C_MAX_BATCHES; b++) {
        st->sent = b + 1;
        st->acked[b] = ingest(st->s, "crash", C_DIM, b, 1, C_PER, &seed) == 0;
        if (!st->acked[b])
            break; /* the server is gone */
    }
    return NULL;
}

typedef struct {
    char id[48];
    char name[16];
} acked_job;

typedef struct {
    const it_server *s;
    volatile int stop;
    unsigned seq;            /* jobs submitted so far (picks the method, name, epochs) */
    size_t n_acked, first_this_cycle;
    acked_job acked[C_MAX_JOBS];
} train_stream;

static const char *job_body(unsigned seq, char *name, size_t name_cap, char *buf, size_t cap)
{
    static const char *const peft[] = {
        "\"method\":\"lora\",\"peft\":{\"r\":2,\"lora_alpha\":4,\"target_modules\":[\"c_attn\",\"c_proj\"]}",
        "\"method\":\"prompt_tuning\",\"peft\":{\"num_virtual_tokens\":2}",
        "\"method\":\"prefix_tuning\",\"peft\":{\"num_virtual_tokens\":2}",
    };
    snprintf(name, name_cap, "ad%u", seq % C_NAMES);
    snprintf(buf, cap,
             "{\"adapter_name\":\"%s\",%s,\"data\":[{\"text\":\".anna\"},{\"text\":\".bob\"}],"
             "\"hyperparameters\":{\"epochs\":%u,\"batch_size\":2,\"learning_rate\":0.01,\"seed\":%u}}",
             name, peft[seq / C_NAMES % 3], 1 + seq % 3, seq);
    return buf;
}

/* Submits one small job after another and waits for each to end (or the server to go). */
static void *train_run(void *arg)
{
    train_stream *t = arg;
    while (!t->stop) {
        char body[512], name[16], path[96];
        it_response r = it_post(t->s, "/finetune", job_body(t->seq++, name, sizeof name, body, sizeof body));
        if (r.status == 0) {
            it_free(&r);
            break;
        }
        const char *id = json_string_value(json_object_get(r.json, "id"));
        if (r.status != 202 || !id || t->n_acked >= C_MAX_JOBS) {
            if (r.status != 409) /* 409: a job resumed after the restart still holds the name */
                fprintf(stderr, "/finetune answered %ld: %.200s\n", r.status, r.body);
            it_free(&r);
            usleep(20000);
            continue;
        }
        acked_job *j = &t->acked[t->n_acked++];
        snprintf(j->id, sizeof j->id, "%s", id);
        snprintf(j->name, sizeof j->name, "%s", name);
        it_free(&r);
        snprintf(path, sizeof path, "/jobs/%s", j->id);
        for (;;) {
            it_response g = it_get(t->s, path);
            const char *st = json_string_value(json_object_get(g.json, "status"));
            int done = g.status != 200 || (st && strcmp(st, "queued") && strcmp(st, "running"));
            it_free(&g);
            if (done || t->stop)
                break;
            usleep(10000);
        }
    }
    return NULL;
}

/* ---- the files after a kill ---- */

#define C_MAX_RUNNING 8

typedef struct {
    int n;
    char id[C_MAX_RUNNING][48];
    char started[C_MAX_RUNNING][40];
} running_jobs;

/* The jobs the kill left in state 'running', with their start times. */
static void jobs_running(const char *db, running_jobs *out)
{
    out->n = 0;
    sqlite3 *c;
    sqlite3_stmt *st;
    if (sqlite3_open_v2(db, &c, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(c, "SELECT id, coalesce(started_at, '') FROM jobs WHERE status = 'running'", -1, &st,
                           NULL) == SQLITE_OK) {
        while (sqlite3_step(st) == SQLITE_ROW && out->n < C_MAX_RUNNING) {
            snprintf(out->id[out->n], sizeof out->id[0], "%s", (const char *)sqlite3_column_text(st, 0));
            snprintf(out->started[out->n], sizeof out->started[0], "%s", (const char *)sqlite3_column_text(st, 1));
            out->n++;
        }
        sqlite3_finalize(st);
    }
    sqlite3_close(c);
}

/* What a kill left of a publish: temporaries (".NAME.tmp-JOB") and what they hold. */
typedef struct {
    int tmp;                /* temporary directories */
    int files;              /* adapter files found in them (final or ".x.tmp") */
    int complete;           /* temporaries holding both final files */
} publish_left;

static void scan_temporaries(const char *adapters, publish_left *out)
{
    memset(out, 0, sizeof *out);
    DIR *d = opendir(adapters);
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        if (e->d_name[0] != '.' || !strstr(e->d_name, ".tmp-"))
            continue;
        out->tmp++;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", adapters, e->d_name);
        DIR *t = opendir(path);
        int have = 0;
        for (struct dirent *f; t && (f = readdir(t)) != NULL;) {
            if (!strcmp(f->d_name, "adapter_config.json") || !strcmp(f->d_name, "adapter_model.safetensors"))
                have++;
            if (strstr(f->d_name, "adapter"))
                out->files++;
        }
        if (t)
            closedir(t);
        out->complete += have == 2;
    }
    if (d)
        closedir(d);
}

/* ---- checks on the restarted server ---- */

/* Sampled rows are found by their own vectors, through the index and by the exact scan.
 * The index may still be catching up after a restart: the index walk gets up to 10 s. */
static int rows_found(const it_server *s, long rows)
{
    for (int attempt = 0;; attempt++) {
        int found = 0, probes = 0;
        for (long id = 0; id < rows; id += 1 + rows / 30) {
            char path[96];
            snprintf(path, sizeof path, "/collections/crash/documents/%ld", id);
            it_response d = it_get(s, path);
            if (d.status != 200) { /* ids are dense only within the batches that are there */
                it_free(&d);
                continue;
            }
            for (int exact = 0; exact < 2; exact++) {
                json_t *b = json_pack("{s:s, s:O, s:i, s:b}", "collection", "crash", "vector",
                                      json_object_get(d.json, "vector"), "top_k", 1, "exact", exact);
                it_response r = post_json(s, "/search", b);
                found += json_integer_value(
                             json_object_get(json_array_get(json_object_get(r.json, "results"), 0), "id")) == id;
                probes++;
                it_free(&r);
            }
            it_free(&d);
        }
        if (found == probes || attempt == 100) {
            if (found != probes)
                fprintf(stderr, "%d of %d probes found their row\n", found, probes);
            return found == probes;
        }
        usleep(100000);
    }
}

/* GET /jobs/ID's status and error into st/err (empty when absent); the HTTP status. */
static long job_state(const it_server *s, const char *id, char *st, char *err, char *started, size_t cap)
{
    char path[96];
    snprintf(path, sizeof path, "/jobs/%s", id);
    it_response r = it_get(s, path);
    const char *v = json_string_value(json_object_get(r.json, "status"));
    snprintf(st, cap, "%s", v ? v : "");
    v = json_string_value(json_object_get(r.json, "error"));
    snprintf(err, cap, "%s", v ? v : "");
    v = json_string_value(json_object_get(r.json, "started_at"));
    snprintf(started, cap, "%s", v ? v : "");
    long code = r.status;
    it_free(&r);
    return code;
}

/* The adapters directory: no temporary, only whole adapters, each listed, loadable and
 * serving /generate. Returns the number of adapters checked, or -1 after a failure. */
static int check_adapters(const it_server *s, const char *adapters)
{
    it_response list = it_get(s, "/adapters");
    json_t *rows = json_object_get(list.json, "adapters");
    int n = 0, ok = list.status == 200;
    DIR *d = opendir(adapters);
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (e->d_name[0] == '.') {
            fprintf(stderr, "adapters/%s is left after the restart\n", e->d_name);
            ok = 0;
            continue;
        }
        char path[512];
        snprintf(path, sizeof path, "%s/%s", adapters, e->d_name);
        DIR *a = opendir(path);
        int files = 0, others = 0;
        for (struct dirent *f; a && (f = readdir(a)) != NULL;) {
            if (!strcmp(f->d_name, ".") || !strcmp(f->d_name, ".."))
                continue;
            if (!strcmp(f->d_name, "adapter_config.json") || !strcmp(f->d_name, "adapter_model.safetensors"))
                files++;
            else
                others++;
        }
        if (a)
            closedir(a);
        if (files != 2 || others) {
            fprintf(stderr, "adapters/%s holds %d of the 2 files and %d others\n", e->d_name, files, others);
            ok = 0;
        }
        int listed = 0;
        for (size_t i = 0; i < json_array_size(rows); i++) {
            const char *name = json_string_value(json_object_get(json_array_get(rows, i), "name"));
            listed |= !strcmp(str_or_empty(name), e->d_name);
        }
        snprintf(path, sizeof path, "/adapters/%s", e->d_name);
        it_response g = it_get(s, path);
        snprintf(path, sizeof path, "/generate?adapter=%s", e->d_name);
        it_response gen = it_post(s, path, "{\"inputs\":\".\",\"parameters\":{\"max_new_tokens\":3}}");
        if (!listed || g.status != 200 || gen.status != 200 ||
            !json_is_string(json_object_get(gen.json, "generated_text"))) {
            fprintf(stderr, "adapters/%s: listed %d, GET %ld %.200s, generate %ld %.200s\n", e->d_name, listed,
                    g.status, g.body, gen.status, gen.body);
            ok = 0;
        }
        it_free(&g);
        it_free(&gen);
        n++;
    }
    if (d)
        closedir(d);
    if (json_array_size(rows) != (size_t)n) {
        fprintf(stderr, "GET /adapters lists %zu adapters, the directory holds %d\n", json_array_size(rows), n);
        ok = 0;
    }
    it_free(&list);
    return ok ? n : -1;
}

/* 1 when adapters/NAME is a directory. */
static int adapter_on_disk(const char *adapters, const char *name)
{
    char path[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", adapters, name);
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* ---- the loop ---- */

/* Waits for a publish to start (a temporary ".NAME.tmp-JOB" appears in the adapters
 * directory), then a random delay; or gives up after 10 s. Returns 1 when a publish was
 * seen, with its job id in job. */
static int wait_publish(int ino, unsigned *rs, char *job, size_t cap)
{
    char buf[4096] __attribute__((aligned(8)));
    struct pollfd p = {.fd = ino, .events = POLLIN};
    for (int waited = 0; waited < 10000;) {
        if (poll(&p, 1, 100) <= 0) {
            waited += 100;
            continue;
        }
        ssize_t n = read(ino, buf, sizeof buf);
        for (ssize_t off = 0; off < n;) {
            const struct inotify_event *ev = (const void *)(buf + off);
            if (ev->len && ev->name[0] == '.' && strstr(ev->name, ".tmp-")) {
                snprintf(job, cap, "%s", strstr(ev->name, ".tmp-") + 5);
                usleep((useconds_t)(rand_r(rs) % C_MAX_DELAY_US));
                return 1;
            }
            off += (ssize_t)sizeof *ev + ev->len;
        }
    }
    return 0;
}

/* The loop's state (large: off the stack). */
static ingest_stream ing;
static train_stream tr;
static int per_batch[C_MAX_BATCHES];
static char data[64], db[128], adapters[128], prev_log[96];
static running_jobs left;

typedef struct {
    long cycles, publish_kills, in_publish, tmp_empty, tmp_partial, tmp_complete, after_rename, jobs_interrupted,
        batches_acked,
        jobs_acked, adapters_checked, fresh_dirs;
} totals;


static long env_long(const char *name, long def, long max)
{
    const char *v = getenv(name);
    long n = v ? strtol(v, NULL, 10) : 0;
    return n > 0 && n <= max ? n : def;
}

/* Waits (up to 30 s) until no job is queued or running: jobs the kill left queued resume
 * after the restart, and their publishes make temporaries of their own. 1 once idle. */
static int jobs_idle(const it_server *s)
{
    for (int i = 0; i < 600; i++) {
        it_response r = it_get(s, "/jobs");
        json_t *jobs = json_object_get(r.json, "jobs");
        int busy = r.status != 200;
        for (size_t k = 0; k < json_array_size(jobs); k++) {
            const char *st = str_or_empty(json_string_value(json_object_get(json_array_get(jobs, k), "status")));
            busy |= !strcmp(st, "queued") || !strcmp(st, "running");
        }
        if (!busy) {
            it_free(&r);
            return 1;
        }
        if (i == 599) {
            fprintf(stderr, "jobs still queued or running 30 s after the restart:\n");
            for (size_t k = 0; k < json_array_size(jobs); k++) {
                char *text = json_dumps(json_array_get(jobs, k), JSON_COMPACT);
                if (text && (strstr(text, "\"queued\"") || strstr(text, "\"running\"")))
                    fprintf(stderr, "  %.400s\n", text);
                free(text);
            }
        }
        it_free(&r);
        usleep(50000);
    }
    return 0;
}

/* Prints the lines of a server log that are not info (the reasons of failed jobs, errors). */
static void print_warnings(const char *title, const char *path)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    fprintf(stderr, "%s (%s):\n", title, path);
    while (f && fgets(line, sizeof line, f))
        if (!strstr(line, "level=info"))
            fprintf(stderr, "  %s", line);
    if (f)
        fclose(f);
}

/* The checks on the server restarted after a kill (see the top of the file). */
static void check_restart(const it_server *s, totals *tot)
{
    unsigned failures = CU_get_number_of_failures();
    long rows = -1;
    db_int(db, "SELECT count(*) FROM documents", &rows, NULL, 0);
    CU_ASSERT_EQUAL(count_of(s, "crash"), rows);
    CU_ASSERT(rows_found(s, rows));
    char st[160], err[160], started[160];
    for (int i = 0; i < left.n; i++) { /* failed with a reason, or resumed afresh */
        long code = job_state(s, left.id[i], st, err, started, sizeof st);
        int resumed = !strcmp(st, "queued") || !strcmp(st, "succeeded") ||
                      (!strcmp(st, "running") && strcmp(started, left.started[i]));
        int ok = code == 200 && ((!strcmp(st, "failed") && err[0]) || resumed);
        if (!ok)
            fprintf(stderr, "job %s, running at the kill: %s '%s'\n", left.id[i], st, err);
        CU_ASSERT(ok);
        tot->jobs_interrupted += !strcmp(st, "failed");
    }
    for (size_t i = tr.first_this_cycle; i < tr.n_acked; i++) { /* acknowledged jobs exist */
        long code = job_state(s, tr.acked[i].id, st, err, started, sizeof st);
        if (code != 200)
            fprintf(stderr, "acknowledged job %s: GET answered %ld '%s'\n", tr.acked[i].id, code, err);
        CU_ASSERT_EQUAL(code, 200);
        if (!strcmp(st, "succeeded") && !adapter_on_disk(adapters, tr.acked[i].name)) {
            fprintf(stderr, "job %s succeeded but adapters/%s is missing\n", tr.acked[i].id, tr.acked[i].name);
            CU_FAIL("a succeeded job's adapter is missing");
        }
    }
    CU_ASSERT(jobs_idle(s));
    int n = check_adapters(s, adapters);
    CU_ASSERT(n >= 0);
    tot->adapters_checked += n > 0 ? n : 0;
    if (CU_get_number_of_failures() != failures) {
        char path[160];
        print_warnings("the killed server's log", prev_log);
        snprintf(path, sizeof path, "%s/stderr.log", s->dir);
        print_warnings("the restarted server's log", path);
    }
}

static void test_crash_loop(void)
{
    const long cycles = env_long("RAGD_CRASH_CYCLES", 4, 1000000),
               fresh_every = env_long("RAGD_CRASH_FRESH_EVERY", 100, 1000000);
    unsigned rs = (unsigned)env_long("RAGD_CRASH_SEED", (long)time(NULL) & 0x7fffffff, 0x7fffffff);
    fprintf(stderr, "crash loop: %ld cycles, seed %u\n", cycles, rs);
    totals tot = {0};
    it_server s = {0};
    for (long cycle = 0; cycle <= cycles; cycle++) {
        const char *args[] = {"--generator", ckpt, "--data-dir", data, "--max-batch", "64", "--train-workers", "1",
                              "--threads", "1", "--max-queued-jobs", "4", NULL};
        if (cycle > 0) { /* the checks of what the last kill left, on the restarted server */
            CU_ASSERT_EQUAL_FATAL(it_start(&s, args, NULL), 0);
            check_restart(&s, &tot);
            if (cycle == cycles || cycle % fresh_every == 0)
                CU_ASSERT_EQUAL(it_stop(&s), 0);
            if (cycle == cycles)
                break;
        }
        if (cycle % fresh_every == 0) { /* a new data directory with an empty collection */
            if (data[0]) {
                it_remove_tree(data);
                unlink(prev_log);
            }
            snprintf(data, sizeof data, "/tmp/ragd-crash-XXXXXX");
            CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(data));
            snprintf(db, sizeof db, "%s/ragd.db", data);
            snprintf(adapters, sizeof adapters, "%s/adapters", data);
            snprintf(prev_log, sizeof prev_log, "%s.log", data);
            CU_ASSERT_EQUAL_FATAL(mkdir(adapters, 0755), 0);
            memset(&ing, 0, sizeof ing);
            memset(&tr, 0, sizeof tr);
            left.n = 0;
            tot.fresh_dirs++;
            CU_ASSERT_EQUAL_FATAL(it_start(&s, args, NULL), 0);
            CU_ASSERT_EQUAL_FATAL(create(&s, "crash", C_DIM, "cosine"), 201);
        }

        /* ---- load, then a kill ---- */
        int ino = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
        CU_ASSERT_FATAL(ino >= 0 && inotify_add_watch(ino, adapters, IN_CREATE) >= 0);
        ing.s = &s;
        ing.first = ing.sent;
        ing.stop = 0;
        tr.s = &s;
        tr.stop = 0;
        tr.first_this_cycle = tr.n_acked;
        pthread_t ti, tt;
        pthread_create(&ti, NULL, ingest_run, &ing);
        pthread_create(&tt, NULL, train_run, &tr);
        int at_publish = cycle % 2 == 1, seen = 0;
        char job[64] = "";
        if (at_publish)
            seen = wait_publish(ino, &rs, job, sizeof job);
        else
            usleep((useconds_t)(100000 + rand_r(&rs) % 500000)); /* 0.1 to 0.6 s of load */
        kill(s.pid, SIGKILL);
        waitpid(s.pid, NULL, 0);
        close(ino);
        s.pid = 0;
        s.exit_status = 0;
        ing.stop = tr.stop = 1;
        pthread_join(ti, NULL);
        pthread_join(tt, NULL);
        char log[160]; /* kept for the next cycle's checks */
        snprintf(log, sizeof log, "cp '%s/stderr.log' '%s'", s.dir, prev_log);
        if (system(log) != 0)
            fprintf(stderr, "could not keep the killed server's log\n");
        it_stop(&s); /* removes the harness's own directory, not the data */

        /* ---- the files as the kill left them ---- */
        char check[64] = "";
        CU_ASSERT_EQUAL(db_int(db, "PRAGMA integrity_check", NULL, check, sizeof check), 0);
        CU_ASSERT_STRING_EQUAL(check, "ok");
        int partial = batch_counts(db, C_PER, per_batch, ing.sent), acked = 0;
        CU_ASSERT_EQUAL(partial, 0);
        for (int b = 0; b < ing.sent; b++) {
            if (!ing.acked[b])
                continue;
            acked++;
            tot.batches_acked += b >= ing.first;
            if (per_batch[b] != C_PER)
                fprintf(stderr, "cycle %ld: acknowledged batch %d has %d rows\n", cycle, b, per_batch[b]);
            CU_ASSERT_EQUAL(per_batch[b], C_PER);
        }
        long rows = -1, fts = -1;
        db_int(db, "SELECT count(*) FROM documents", &rows, NULL, 0);
        db_int(db, "SELECT count(*) FROM fts_1", &fts, NULL, 0);
        CU_ASSERT_EQUAL(rows, fts);
        jobs_running(db, &left);
        publish_left pl;
        scan_temporaries(adapters, &pl);
        tot.cycles++;
        tot.publish_kills += at_publish;
        tot.in_publish += pl.tmp > 0;
        tot.tmp_complete += pl.tmp > 0 && pl.complete == pl.tmp;
        tot.tmp_empty += pl.tmp > 0 && pl.files == 0;
        tot.tmp_partial += pl.tmp > 0 && pl.files > 0 && pl.complete < pl.tmp;
        /* The publish was over (the name holds the new adapter) but the job not yet done. */
        int renamed = 0;
        for (int i = 0; seen && !pl.tmp && i < left.n; i++)
            renamed |= !strcmp(left.id[i], job);
        tot.after_rename += renamed;
        tot.jobs_acked += (long)(tr.n_acked - tr.first_this_cycle);
        fprintf(stderr,
                "crash cycle %ld: kill %s%s, %d batches acknowledged in all, %ld documents, %zu jobs acknowledged "
                "in all, %d running at the kill, temporaries left %d (files %d, complete %d)%s\n",
                cycle, at_publish ? "at a publish" : "at a random time", at_publish && !seen ? " (none seen)" : "",
                acked, rows, tr.n_acked, left.n, pl.tmp, pl.files, pl.complete,
                renamed ? ", after the rename before the job was done" : "");
    }
    it_remove_tree(data);
    unlink(prev_log);
    fprintf(stderr,
            "crash summary: %ld cycles (%ld data dirs), %ld kills aimed at a publish, %ld kills inside an adapter "
            "write (temporary empty %ld, partly written %ld, complete %ld; after the rename before the job was "
            "done %ld), %ld jobs failed as interrupted, %ld batches and %ld jobs acknowledged, %ld adapter checks\n",
            tot.cycles, tot.fresh_dirs, tot.publish_kills, tot.in_publish + tot.after_rename, tot.tmp_empty,
            tot.tmp_partial, tot.tmp_complete, tot.after_rename, tot.jobs_interrupted, tot.batches_acked,
            tot.jobs_acked, tot.adapters_checked);
}

void cu_register(void)
{
    ckpt = it_testdata("checkpoints/gpt2-names-makemore");
    if (!ckpt) {
        cu_skip_all("../shared/testdata not found");
        return;
    }
    CU_pSuite s = CU_add_suite("crash", NULL, NULL);
    CU_add_test(s, "kill -9 during upserts and adapter writes, restart, check", test_crash_loop);
}
