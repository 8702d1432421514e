/* search.c — dense (ANN or exact), keyword (FTS5 BM25) and hybrid (reciprocal rank fusion)
 * search over one collection, with the metadata filter applied inside each ranking so that
 * top_k is filled whenever enough documents pass. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "distance.h"
#include "store_internal.h"

const char *const st_mode_names[] = {"dense", "hybrid", "keyword", NULL};

#define RRF_K 60.0          /* reciprocal rank fusion constant (Cormack et al. 2009) */
#define FUSION_DEPTH 100    /* each ranking contributes at least this many to the fusion */
#define MAX_QUERY_WORDS 64  /* words of a keyword query that count */
#define EXACT_BELOW 256     /* collections this small are always searched exactly */
#define FILTER_EXACT_RATIO 20 /* exact search when under 1/20 of the documents pass the filter */
#define SAMPLE 512          /* labels looked at, at most, to estimate how many pass a filter */

typedef struct {
    const st_coll *c;
    const st_filter *f;
} accept_ctx;

/* The index's filter callback: the document's metadata passes the filter. Called with the
 * collection's read lock held. */
static int accept_label(int64_t label, void *ctx)
{
    const accept_ctx *a = ctx;
    return (size_t)label < a->c->n_labels && a->c->live[label] && st__filter_eval(a->f, a->c->meta[label]);
}

/* Estimates how many live documents pass the filter from a strided sample of at most SAMPLE
 * labels, scaled up. It only chooses between the walk and an exact search, and both return
 * what passes. Read lock held. */
static double estimate_passing(const st_coll *c, const st_filter *f)
{
    accept_ctx a = {c, f};
    size_t stride = (c->n_labels + SAMPLE - 1) / SAMPLE, seen = 0, pass = 0;
    for (size_t l = 0; l < c->n_labels; l += stride)
        if (c->live[l]) {
            seen++;
            pass += (size_t)accept_label((int64_t)l, &a);
        }
    return seen ? (double)pass / (double)seen * (double)c->count : 0;
}

static int by_score(const void *a, const void *b)
{
    const dist_hit *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? 1 : -1;
    return (x->label > y->label) - (x->label < y->label);
}

/* Dense ranking: up to k hits for the query vector, best first: the graph's, merged with an
 * exact scan of the tail (the documents the indexer has not reached; a label is in one or
 * the other). The HNSW walk evaluates the filter on each node it visits; exact search of
 * the graph's vectors is used instead when asked, when the collection is small, when few
 * documents pass the filter (a filtered walk would visit most of the graph), and whenever
 * the walk comes back short of k (so top_k is filled whenever k documents pass). out has
 * room for 2k hits. */
static int dense(st_coll *c, const st_query *q, size_t k, dist_hit *out, size_t *n, st_error *err)
{
    size_t dim = c->spec.dimension;
    float *query = malloc(dim * sizeof *query);
    if (!query)
        return st__fail(err, ST_ERR_NOMEM, c->spec.name, "out of memory");
    memcpy(query, q->vector, dim * sizeof *query);
    if (dist_prepare((dist_metric)c->spec.distance, query, dim) != 0) {
        free(query);
        return st__fail(err, ST_ERR_INVALID, "vector",
                        "the query vector must be finite (and not all zeros under cosine)");
    }
    accept_ctx a = {c, q->filter};
    hnsw_accept_fn accept = q->filter ? accept_label : NULL;
    hnsw_error herr = {0, ""};
    int rc = HNSW_OK;
    st__coll_rdlock(c);
    if (!c->index) {
        pthread_rwlock_unlock(&c->lock);
        free(query);
        return st__fail(err, ST_ERR_NOMEM, c->spec.name, "the index could not be reloaded after a failure");
    }
    int exact = q->exact || c->count <= EXACT_BELOW ||
                (q->filter && estimate_passing(c, q->filter) * FILTER_EXACT_RATIO < (double)c->count);
    if (!exact) {
        rc = hnsw_search(c->index, query, k, q->ef, accept, &a, out, n, &herr);
        exact = rc == HNSW_OK && *n < k && q->filter; /* the walk missed some that pass */
    }
    if (exact && rc == HNSW_OK)
        rc = hnsw_search_exact(c->index, query, k, accept, &a, out, n, &herr);
    if (rc == HNSW_OK && c->n_tail) {
        *n += dist_exact_topk((dist_metric)c->spec.distance, c->tail_prep, c->tail_labels, NULL, c->n_tail, dim,
                              query, k, accept, &a, out + *n);
        qsort(out, *n, sizeof *out, by_score);
        if (*n > k)
            *n = k;
    }
    pthread_rwlock_unlock(&c->lock);
    free(query);
    if (rc != HNSW_OK)
        return st__fail(err, rc == HNSW_ENOMEM ? ST_ERR_NOMEM : ST_ERR_INVALID, "vector", herr.msg);
    return 0;
}

/* Separates words: ASCII that is not a letter or digit (bytes of UTF-8 sequences belong to
 * words, as in FTS5's unicode61 tokenizer, which splits them further itself). */
static int is_separator(unsigned char ch)
{
    return ch < 0x80 && !((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'));
}

/* The keyword query for FTS5: each word of the user's text as a quoted string, joined with
 * OR, so no text can use FTS5's query syntax (AND, NEAR, column filters, quotes are inert).
 * Returns a heap string ("" when the text has no words), or NULL when out of memory. */
static char *fts_query(const char *text, size_t len)
{
    const unsigned char *u = (const unsigned char *)text;
    char *q = malloc(len + 6 * MAX_QUERY_WORDS + 1);
    if (!q)
        return NULL;
    size_t o = 0, words = 0, i = 0;
    while (words < MAX_QUERY_WORDS) {
        while (i < len && is_separator(u[i]))
            i++;
        if (i == len)
            break;
        if (words++) {
            memcpy(q + o, " OR ", 4);
            o += 4;
        }
        q[o++] = '"';
        while (i < len && !is_separator(u[i]))
            q[o++] = text[i++];
        q[o++] = '"';
    }
    q[o] = '\0';
    return q;
}

/* Keyword ranking: up to k hits by BM25 (negated, so higher is better), best first. */
static int keyword(st_db *db, st_coll *c, const st_query *q, size_t k, dist_hit *out, size_t *n, st_error *err)
{
    *n = 0;
    char *match = fts_query(q->text, q->text_len);
    if (!match)
        return st__fail(err, ST_ERR_NOMEM, c->spec.name, "out of memory");
    if (!match[0]) {
        free(match);
        return 0;
    }
    sqlite3 *conn = st__reader(db, err);
    if (!conn) {
        free(match);
        return -1;
    }
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT rowid, -bm25(fts_%lld) FROM fts_%lld WHERE fts_%lld MATCH ?1 ORDER BY rank",
             (long long)c->id, (long long)c->id, (long long)c->id);
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(conn, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, match, -1, SQLITE_STATIC);
        accept_ctx a = {c, q->filter};
        while (*n < k && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            int64_t label = sqlite3_column_int64(st, 0);
            st__coll_rdlock(c);
            int ok = accept_label(label, &a);
            pthread_rwlock_unlock(&c->lock);
            if (ok)
                out[(*n)++] = (dist_hit){label, (float)sqlite3_column_double(st, 1)};
        }
        sqlite3_finalize(st);
    }
    if (rc != SQLITE_OK && rc != SQLITE_ROW && rc != SQLITE_DONE) {
        if (atomic_load(&c->deleted)) /* its FTS5 table went with it */
            st__fail(err, ST_ERR_NOT_FOUND, c->spec.name, "no such collection");
        else
            st__sqlite_fail(conn, err, "keyword search");
    }
    st__reader_done(db, conn);
    free(match);
    return rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

/* Reciprocal rank fusion of two rankings into out (room for na + nb); returns the count. */
static size_t fuse(const dist_hit *a, size_t na, const dist_hit *b, size_t nb, dist_hit *out)
{
    size_t n = 0;
    for (size_t i = 0; i < na; i++)
        out[n++] = (dist_hit){a[i].label, (float)(1.0 / (RRF_K + (double)(i + 1)))};
    for (size_t j = 0; j < nb; j++) {
        float s = (float)(1.0 / (RRF_K + (double)(j + 1)));
        size_t i = 0;
        while (i < na && out[i].label != b[j].label)
            i++;
        if (i < na)
            out[i].score += s;
        else
            out[n++] = (dist_hit){b[j].label, s};
    }
    qsort(out, n, sizeof *out, by_score);
    return n;
}

/* Reads the rows of the hits (what the query asks for) into out; a row deleted since the
 * ranking was made is skipped. */
static int fetch(st_db *db, st_coll *c, const st_query *q, const dist_hit *hits, size_t n, st_record *out,
                 size_t *n_out, st_error *err)
{
    *n_out = 0;
    sqlite3 *conn = st__reader(db, err);
    if (!conn)
        return -1;
    sqlite3_stmt *st;
    int rc = 0;
    if (sqlite3_prepare_v2(conn,
                           "SELECT id, text, metadata, vector FROM documents WHERE collection_id = ?1 AND label = ?2",
                           -1, &st, NULL) != SQLITE_OK) {
        st__reader_done(db, conn);
        return st__sqlite_fail(conn, err, "reading results");
    }
    /* One read transaction, so every row comes from the same snapshot. */
    sqlite3_exec(conn, "BEGIN", NULL, NULL, NULL);
    for (size_t i = 0; i < n && rc == 0; i++) {
        sqlite3_bind_int64(st, 1, c->id);
        sqlite3_bind_int64(st, 2, hits[i].label);
        int s = sqlite3_step(st);
        if (s == SQLITE_ROW) {
            if (st__read_record(st, 0, c->spec.dimension, q->with_text, q->with_metadata, q->with_vector,
                                &out[*n_out]) != 0)
                rc = st__fail(err, ST_ERR_NOMEM, c->spec.name, "out of memory");
            else
                out[(*n_out)++].score = hits[i].score;
        } else if (s != SQLITE_DONE) {
            rc = st__sqlite_fail(conn, err, "reading results");
        }
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    st__rollback(conn); /* ends the read transaction, even when memory is short (a pooled
                         * connection left in one would read this snapshot for good) */
    st__reader_done(db, conn);
    return rc;
}

int st_search(st_db *db, const char *collection, const st_query *q, st_record **out, size_t *n_out, st_error *err)
{
    *out = NULL;
    *n_out = 0;
    err->code = 0;
    if (q->top_k < 1 || q->top_k > ST_TOP_K_MAX || (q->mode != ST_MODE_KEYWORD && !q->vector) ||
        (q->mode != ST_MODE_DENSE && !q->text))
        return st__fail(err, ST_ERR_INVALID, "search", "invalid query");
    st_coll *c = st__coll_get(db, collection, err);
    if (!c)
        return -1;
    if (q->mode != ST_MODE_KEYWORD && q->dimension != c->spec.dimension) {
        st__coll_put(c);
        return st__fail(err, ST_ERR_INVALID, "vector", "the query vector's dimension differs from the collection's");
    }
    size_t depth = q->mode == ST_MODE_HYBRID ? (q->top_k > FUSION_DEPTH ? q->top_k : FUSION_DEPTH) : q->top_k;
    dist_hit *a = malloc(2 * depth * sizeof *a), *b = malloc(depth * sizeof *b), *fused = malloc(2 * depth * sizeof *fused);
    size_t na = 0, nb = 0, n = 0;
    int rc = a && b && fused ? 0 : st__fail(err, ST_ERR_NOMEM, collection, "out of memory");
    if (rc == 0 && q->mode != ST_MODE_KEYWORD)
        rc = dense(c, q, depth, a, &na, err);
    if (rc == 0 && q->mode != ST_MODE_DENSE)
        rc = keyword(db, c, q, depth, b, &nb, err);
    if (rc == 0) {
        const dist_hit *ranked = q->mode == ST_MODE_DENSE ? a : q->mode == ST_MODE_KEYWORD ? b : fused;
        n = q->mode == ST_MODE_DENSE ? na : q->mode == ST_MODE_KEYWORD ? nb : fuse(a, na, b, nb, fused);
        if (n > q->top_k)
            n = q->top_k;
        if (q->has_threshold)
            while (n > 0 && ranked[n - 1].score < q->score_threshold)
                n--;
        *out = n ? calloc(n, sizeof **out) : NULL;
        if (n && !*out)
            rc = st__fail(err, ST_ERR_NOMEM, collection, "out of memory");
        else if (n)
            rc = fetch(db, c, q, ranked, n, *out, n_out, err);
        if (rc != 0) {
            st_results_free(*out, *n_out);
            *out = NULL;
            *n_out = 0;
        }
    }
    free(a);
    free(b);
    free(fused);
    st__coll_put(c);
    return rc;
}
