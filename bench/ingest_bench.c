/* ingest_bench.c — HTTP ingest into a collection, beside its peers measured in the same run.
 *
 *   vectors given:  POST /collections/{c}/documents with batches of random unit vectors from
 *                   THREADS client threads until the last batch is acknowledged (rows and
 *                   FTS5 committed), then until the background indexer has them all in the
 *                   graph (GET /collections/{c} polled: pending_vectors_count 0); against
 *                   st_upsert of the same batches in-process (the store's own ceiling: no
 *                   HTTP, no JSON), timed the same two ways;
 *   texts embedded: the same route with texts and no vectors, against POST /embed of the
 *                   same texts (the embedder's ceiling over HTTP);
 *   start-up:       st_open of the in-process database, the index loaded from its records,
 *                   against the same open when the records are unusable (a rebuild in the
 *                   background: timed until it is done).
 *
 * usage: ingest_bench PORT [N DIM BATCH THREADS TEXTS EF_CONSTRUCTION]
 *        ingest_bench make-data DIR N DIM EF_CONSTRUCTION   (a data dir holding collection
 *                       "startup", all indexed; bench/ingest_startup.sh times the daemon on it)
 * (bench/ingest_bench.sh runs the server; HNSW m = 16 throughout)
 * Bodies are serialized before the clock starts. Prints one JSON object. */
#include <curl/curl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include <jansson.h>

#include "bench.h"
#include "collections.h"

static unsigned port;

typedef struct {
    char **bodies;
    size_t n_bodies;
    const char *path;
    size_t next; /* shared cursor, under mu */
    pthread_mutex_t mu;
    long failures;
} job;

static size_t sink(char *p, size_t size, size_t n, void *ctx)
{
    (void)p;
    (void)ctx;
    return size * n;
}

static long post(CURL *c, const char *path, const char *body)
{
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", port, path);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    return status;
}

static void *client(void *arg)
{
    job *j = arg;
    CURL *c = curl_easy_init();
    for (;;) {
        pthread_mutex_lock(&j->mu);
        size_t i = j->next++;
        pthread_mutex_unlock(&j->mu);
        if (i >= j->n_bodies)
            break;
        if (post(c, j->path, j->bodies[i]) != 200) {
            pthread_mutex_lock(&j->mu);
            j->failures++;
            pthread_mutex_unlock(&j->mu);
        }
    }
    curl_easy_cleanup(c);
    return NULL;
}

static float rnd(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static size_t collect(char *p, size_t size, size_t n, void *ctx)
{
    json_t **out = ctx;
    json_decref(*out);
    *out = json_loadb(p, size * n, 0, NULL); /* the reply is small: one chunk */
    return size * n;
}

/* The collection's pending_vectors_count over HTTP, or -1. */
static long http_pending(CURL *c, const char *name)
{
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/collections/%s", port, name);
    json_t *body = NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL); /* post()'s list is gone */
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    long pending = -1;
    if (curl_easy_perform(c) == CURLE_OK && json_is_integer(json_object_get(body, "pending_vectors_count")))
        pending = (long)json_integer_value(json_object_get(body, "pending_vectors_count"));
    json_decref(body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, NULL);
    return pending;
}

/* Waits until the in-process collection has nothing pending; returns 0, or -1. */
static int wait_indexed(st_db *db, const char *name)
{
    st_collection info;
    st_error err;
    while (st_collection_get(db, name, &info, &err) == 0 && info.pending > 0)
        usleep(5000);
    return st_collection_get(db, name, &info, &err) == 0 && info.pending == 0 ? 0 : -1;
}

/* Random unit vectors: vecs[n, dim]. */
static void random_unit(float *vecs, size_t n, size_t dim, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        double ss = 0;
        for (size_t d = 0; d < dim; d++) {
            vecs[i * dim + d] = rnd(&seed);
            ss += (double)vecs[i * dim + d] * vecs[i * dim + d];
        }
        for (size_t d = 0; d < dim; d++)
            vecs[i * dim + d] = (float)(vecs[i * dim + d] / sqrt(ss));
    }
}

/* make-data DIR N DIM EF_CONSTRUCTION: a data dir whose collection "startup" holds N random
 * unit vectors, all indexed, for bench/ingest_startup.sh. */
static int make_data(const char *dir, size_t n, size_t dim, unsigned efc)
{
    float *vecs = malloc(n * dim * sizeof *vecs);
    st_doc *docs = calloc(n, sizeof *docs);
    st_db *db;
    st_error err;
    if (!vecs || !docs || st_open(dir, &db, &err) != 0)
        return 1;
    random_unit(vecs, n, dim, 7);
    for (size_t i = 0; i < n; i++)
        docs[i] = (st_doc){.id = {.num = (int64_t)i}, .vector = vecs + i * dim};
    st_collection spec = {.name = "startup", .dimension = (unsigned)dim, .distance = ST_COSINE, .m = 16,
                          .ef_construction = efc};
    int rc = st_collection_create(db, &spec, &err);
    for (size_t b = 0; rc == 0 && b < n; b += 1000)
        rc = st_upsert(db, "startup", (unsigned)dim, docs + b, n - b < 1000 ? n - b : 1000, &err);
    if (rc == 0)
        rc = wait_indexed(db, "startup");
    if (rc != 0)
        fprintf(stderr, "ingest_bench make-data: %s\n", err.msg);
    st_close(db);
    free(docs);
    free(vecs);
    return rc ? 1 : 0;
}

/* Posts every body from `threads` clients; returns the seconds taken (failures in *failed). */
static double run(char **bodies, size_t n, const char *path, int threads, long *failed)
{
    job j = {bodies, n, path, 0, PTHREAD_MUTEX_INITIALIZER, 0};
    pthread_t th[64];
    double t0 = now();
    for (int t = 0; t < threads; t++)
        pthread_create(&th[t], NULL, client, &j);
    for (int t = 0; t < threads; t++)
        pthread_join(th[t], NULL);
    *failed = j.failures;
    return now() - t0;
}

/* A text of ~16 words from a small vocabulary, different for each i. */
static void text_of(size_t i, char *out, size_t cap)
{
    static const char *const words[] = {"search", "vector", "index", "query", "document", "rank", "model", "token",
                                        "graph", "layer", "store", "batch", "cosine", "filter", "metadata", "text"};
    size_t o = 0;
    unsigned s = (unsigned)i * 2654435761u + 1;
    for (int w = 0; w < 16 && o + 16 < cap; w++) {
        s = s * 1103515245u + 12345u;
        o += (size_t)snprintf(out + o, cap - o, "%s%s", w ? " " : "", words[(s >> 16) % 16]);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: ingest_bench PORT [N DIM BATCH THREADS TEXTS EF_CONSTRUCTION]\n"
                        "       ingest_bench make-data DIR N DIM EF_CONSTRUCTION\n");
        return 2;
    }
    if (!strcmp(argv[1], "make-data"))
        return argc == 6 ? make_data(argv[2], strtoul(argv[3], NULL, 10), strtoul(argv[4], NULL, 10),
                                     (unsigned)strtoul(argv[5], NULL, 10))
                         : 2;
    port = (unsigned)strtoul(argv[1], NULL, 10);
    size_t n = argc > 2 ? strtoul(argv[2], NULL, 10) : 20000, dim = argc > 3 ? strtoul(argv[3], NULL, 10) : 384,
           batch = argc > 4 ? strtoul(argv[4], NULL, 10) : 256, texts = argc > 6 ? strtoul(argv[6], NULL, 10) : 2048;
    int threads = argc > 5 ? (int)strtol(argv[5], NULL, 10) : 4, efc = argc > 7 ? (int)strtol(argv[7], NULL, 10) : 200;
    if (!n || !dim || !batch || threads < 1 || threads > 64)
        return 2;
    curl_global_init(CURL_GLOBAL_ALL);

    /* The vectors, and their batches as JSON bodies and as st_doc arrays. */
    float *vecs = malloc(n * dim * sizeof *vecs);
    size_t n_batches = (n + batch - 1) / batch;
    char **bodies = calloc(n_batches, sizeof *bodies);
    st_doc *docs = calloc(n, sizeof *docs);
    if (!vecs || !bodies || !docs)
        return 1;
    random_unit(vecs, n, dim, 42);
    for (size_t i = 0; i < n; i++)
        docs[i] = (st_doc){.id = {.num = (int64_t)i}, .vector = vecs + i * dim};
    for (size_t b = 0; b < n_batches; b++) {
        size_t cap = batch * dim * 16 + batch * 32 + 64, o = 0;
        char *s = malloc(cap);
        if (!s)
            return 1;
        o += (size_t)snprintf(s + o, cap - o, "{\"documents\":[");
        for (size_t i = b * batch; i < n && i < (b + 1) * batch; i++) {
            o += (size_t)snprintf(s + o, cap - o, "%s{\"id\":%zu,\"vector\":[", i > b * batch ? "," : "", i);
            for (size_t d = 0; d < dim; d++)
                o += (size_t)snprintf(s + o, cap - o, "%s%.7g", d ? "," : "", (double)vecs[i * dim + d]);
            o += (size_t)snprintf(s + o, cap - o, "]}");
        }
        snprintf(s + o, cap - o, "]}");
        bodies[b] = s;
    }

    /* HTTP, vectors given. */
    CURL *c = curl_easy_init();
    char body[256];
    snprintf(body, sizeof body,
             "{\"name\":\"ingest\",\"dimension\":%zu,\"distance\":\"cosine\",\"hnsw\":{\"m\":16,\"ef_construction\":%d}}",
             dim, efc);
    if (post(c, "/collections", body) != 201) {
        fprintf(stderr, "ingest_bench: cannot create the collection (is ragd on port %u?)\n", port);
        return 1;
    }
    long failed, pending;
    double t0 = now();
    double http_s = run(bodies, n_batches, "/collections/ingest/documents", threads, &failed);
    while ((pending = http_pending(c, "ingest")) > 0)
        usleep(5000);
    double http_indexed_s = now() - t0;
    if (pending != 0) {
        fprintf(stderr, "ingest_bench: cannot read the collection's pending count\n");
        return 1;
    }

    /* In-process peer: the same batches through st_upsert, one writer. */
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/ragd-ingest-XXXXXX");
    st_db *db;
    st_error err;
    if (!mkdtemp(dir) || st_open(dir, &db, &err) != 0)
        return 1;
    st_collection spec = {.name = "ingest", .dimension = (unsigned)dim, .distance = ST_COSINE, .m = 16,
                          .ef_construction = (unsigned)efc};
    if (st_collection_create(db, &spec, &err) != 0)
        return 1;
    t0 = now();
    for (size_t b = 0; b < n_batches; b++) {
        size_t k = b + 1 < n_batches ? batch : n - b * batch;
        if (st_upsert(db, "ingest", (unsigned)dim, docs + b * batch, k, &err) != 0) {
            fprintf(stderr, "ingest_bench: %s\n", err.msg);
            return 1;
        }
    }
    double store_s = now() - t0;
    if (wait_indexed(db, "ingest") != 0)
        return 1;
    double store_indexed_s = now() - t0;
    st_close(db);
    /* Start-up: open the database with this collection, loading the index from its records,
     * then again after spoiling the index header, which forces a rebuild from the documents. */
    double load_s = 0, rebuild_s = 0;
    st_collection info;
    char state[2][16] = {"", ""};
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            char path[96];
            snprintf(path, sizeof path, "%s/ragd.db", dir);
            sqlite3 *conn;
            if (sqlite3_open(path, &conn) != SQLITE_OK ||
                sqlite3_exec(conn, "UPDATE collections SET index_header = x'00'", NULL, NULL, NULL) != SQLITE_OK)
                return 1;
            sqlite3_close(conn);
        }
        t0 = now();
        if (st_open(dir, &db, &err) != 0 || wait_indexed(db, "ingest") != 0 ||
            st_collection_get(db, "ingest", &info, &err) != 0)
            return 1;
        *(pass ? &rebuild_s : &load_s) = now() - t0;
        snprintf(state[pass], sizeof state[pass], "%s", info.index_state);
        st_close(db);
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        return 1;

    /* HTTP, texts embedded by the server, beside /embed of the same texts. */
    double text_s = 0, embed_s = 0;
    long text_failed = 0, embed_failed = 0;
    size_t text_batch = 32, n_text_batches = texts ? (texts + text_batch - 1) / text_batch : 0;
    if (texts && post(c, "/collections", "{\"name\":\"ingest_text\"}") == 201) {
        char **tbodies = calloc(n_text_batches, sizeof *tbodies), **ebodies = calloc(n_text_batches, sizeof *ebodies);
        for (size_t b = 0; b < n_text_batches; b++) {
            size_t cap = text_batch * 200 + 64, o = 0, e = 0;
            tbodies[b] = malloc(cap);
            ebodies[b] = malloc(cap);
            o += (size_t)snprintf(tbodies[b] + o, cap - o, "{\"documents\":[");
            e += (size_t)snprintf(ebodies[b] + e, cap - e, "{\"inputs\":[");
            for (size_t i = b * text_batch; i < texts && i < (b + 1) * text_batch; i++) {
                char t[160];
                text_of(i, t, sizeof t);
                o += (size_t)snprintf(tbodies[b] + o, cap - o, "%s{\"id\":%zu,\"text\":\"%s\"}", i > b * text_batch ? "," : "",
                                      i, t);
                e += (size_t)snprintf(ebodies[b] + e, cap - e, "%s\"%s\"", i > b * text_batch ? "," : "", t);
            }
            snprintf(tbodies[b] + o, cap - o, "]}");
            snprintf(ebodies[b] + e, cap - e, "]}");
        }
        embed_s = run(ebodies, n_text_batches, "/embed", threads, &embed_failed);
        text_s = run(tbodies, n_text_batches, "/collections/ingest_text/documents", threads, &text_failed);
        for (size_t b = 0; b < n_text_batches; b++) {
            free(tbodies[b]);
            free(ebodies[b]);
        }
        free(tbodies);
        free(ebodies);
    }
    curl_easy_cleanup(c);

    double http_rate = (double)n / http_s, store_rate = (double)n / store_s;
    double http_indexed = (double)n / http_indexed_s, store_indexed = (double)n / store_indexed_s;
    printf("{\"bench\":\"ingest\",\"vectors\":%zu,\"dim\":%zu,\"batch\":%zu,\"client_threads\":%d,\"ef_construction\":%d,"
           "\"http_vectors_per_s\":%.0f,\"failed_batches\":%ld,\"in_process_st_upsert_vectors_per_s\":%.0f,"
           "\"ratio_http_to_in_process\":%.2f,\"target_vectors_per_s\":5000,\"ratio_to_target\":%.2f,"
           "\"http_indexed_vectors_per_s\":%.0f,\"in_process_indexed_vectors_per_s\":%.0f,"
           "\"ratio_indexed_http_to_in_process\":%.2f",
           n, dim, batch, threads, efc, http_rate, failed, store_rate, http_rate / store_rate, http_rate / 5000,
           http_indexed, store_indexed, http_indexed / store_indexed);
    printf(",\"startup_s_%s\":%.3f,\"startup_s_%s\":%.3f,\"ratio_rebuild_to_load\":%.1f", state[0], load_s, state[1],
           rebuild_s, rebuild_s / load_s);
    if (texts && text_s > 0)
        printf(",\"texts\":%zu,\"text_batch\":%zu,\"http_embedded_texts_per_s\":%.1f,\"failed_text_batches\":%ld,"
               "\"http_embed_texts_per_s\":%.1f,\"failed_embed_batches\":%ld,\"ratio_ingest_to_embed\":%.2f",
               texts, text_batch, (double)texts / text_s, text_failed, (double)texts / embed_s, embed_failed,
               embed_s / text_s);
    printf("}\n");
    for (size_t b = 0; b < n_batches; b++)
        free(bodies[b]);
    free(bodies);
    free(docs);
    free(vecs);
    curl_global_cleanup();
    return failed || text_failed || embed_failed ? 1 : 0;
}
