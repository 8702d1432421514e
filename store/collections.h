/*
 * collections.h — collections of documents: vectors with an ANN index, text with an FTS5
 * index, and metadata that filters search.
 *
 * A collection has a fixed dimension and distance. A document is (id, text?, metadata?,
 * vector): its id is an integer or a string and keeps that type, so 7 and "7" are two
 * documents. Every batch of upserts is one SQLite transaction that writes the rows and the
 * FTS5 entries together: once st_upsert returns 0 the batch survives kill -9 and every
 * search sees it, and when it fails nothing of it is visible. The vectors are then inserted
 * into the collection's HNSW graph by a background thread, which commits their node records
 * as it goes; until then they wait in the collection's tail, which every dense search scans
 * exactly beside the graph walk (counts: indexed and pending). On st_open every
 * collection's graph loads from its stored node records (hnsw.h), resolving labels only, and
 * the documents without a record join the tail; should the records be unusable, every
 * document does (the graph is rebuilt in the background) and index_state says so.
 *
 * Scores are higher-is-better for every distance: cosine similarity, dot product, and the
 * negated Euclidean distance for l2. Keyword scores are FTS5's BM25 negated (higher is
 * better); hybrid scores are reciprocal-rank-fusion sums, sum of 1 / (60 + rank).
 *
 * Thread safety: every function may be called from any thread at any time. Writes are
 * serialized on the one writer connection; searches run concurrently on reader connections
 * and interleave with a batch being applied to the index, but return only documents whose
 * rows are committed (text and metadata as committed).
 */
#ifndef RAGD_COLLECTIONS_H
#define RAGD_COLLECTIONS_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* st_error.code values of our own (SQLite codes are positive). */
enum {
    ST_ERR_NOT_FOUND = -2, /* no such collection or document */
    ST_ERR_EXISTS = -3,    /* a collection of that name exists */
    ST_ERR_INVALID = -4,   /* the caller broke a documented precondition */
    ST_ERR_NOMEM = -5,
    ST_ERR_BUSY = -6,      /* (st_error_kind only) the database stayed locked past the busy timeout */
    ST_ERR_FULL = -7,      /* (st_error_kind only) the disk is full */
    ST_ERR_IO = -8,        /* (st_error_kind only) any other database failure */
    ST_ERR_BEHIND = -9,    /* the collection's tail of vectors waiting for the indexer is full
                            * (st_set_pending_limit); retry once the indexer has caught up */
};

/* What a failure means to a caller: the code when it is one of ours, else the SQLite code
 * folded into ST_ERR_BUSY, ST_ERR_FULL, ST_ERR_NOMEM or ST_ERR_IO. In every case the write
 * that failed left nothing behind. */
int st_error_kind(const st_error *err);

typedef enum { ST_COSINE, ST_DOT, ST_L2 } st_distance;
extern const char *const st_distance_names[]; /* "cosine", "dot", "l2"; NULL-terminated */

#define ST_NAME_MAX 64   /* collection names: ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$ */
#define ST_ID_MAX 512    /* bytes in a string id */
#define ST_DIM_MAX 65536

typedef struct {
    char name[ST_NAME_MAX + 1];
    unsigned dimension;
    st_distance distance;
    unsigned m, ef_construction; /* HNSW parameters */
    int64_t count;               /* documents (filled by get/list) */
    char created_at[32];         /* ISO 8601 UTC (filled by get/list) */
    char index_state[16];        /* (filled by get/list) "ready" (built by this process),
                                  * "loaded" (from its stored nodes at start-up, no rebuild) or
                                  * "rebuilt" (the stored nodes were unusable) */
    int64_t indexed, pending;    /* (filled by get/list) documents in the graph, and in the
                                  * tail waiting for the indexer; they sum to count */
} st_collection;

/* 1 when `name` follows the collection name rule above. */
int st_name_valid(const char *name, size_t len);

/* Creates a collection from name, dimension, distance, m, ef_construction (ST_ERR_EXISTS
 * when the name is taken, ST_ERR_INVALID when a field is out of bounds, including
 * ef_construction < m). */
int st_collection_create(st_db *db, const st_collection *spec, st_error *err);
int st_collection_get(st_db *db, const char *name, st_collection *out, st_error *err);
/* Every collection, by name, in a heap array (caller frees *out). */
int st_collection_list(st_db *db, st_collection **out, size_t *n, st_error *err);
/* Deletes the collection and all its documents. */
int st_collection_delete(st_db *db, const char *name, st_error *err);

typedef struct {
    int is_string;
    int64_t num;       /* when !is_string */
    const char *str;   /* when is_string: `len` bytes, no NUL inside; borrowed */
    size_t len;
} st_id;

typedef struct {
    st_id id;
    const char *text;     /* NULL when absent; text_len bytes (may hold any UTF-8) */
    size_t text_len;
    const char *metadata; /* a JSON object as text, or NULL */
    size_t metadata_len;
    const float *vector;  /* `dimension` finite floats (non-zero under cosine) */
} st_doc;

/* Upserts docs[0..n) as one transaction; a later document with the same id replaces an
 * earlier one (last wins). `dimension` must be the collection's (ST_ERR_INVALID otherwise,
 * which also covers a collection re-created with another dimension since the caller looked). */
int st_upsert(st_db *db, const char *collection, unsigned dimension, const st_doc *docs, size_t n,
              st_error *err);

/* Bounds the tail of each collection (documents acknowledged but not yet in its graph):
 * while a collection has pending documents and a batch of n would take their number past
 * max_pending, st_upsert waits up to wait_ms for the indexer to make room, then fails with
 * ST_ERR_BEHIND having written nothing. A batch into an empty tail is always taken, so the
 * tail never holds more than max(max_pending, one batch). max_pending 0 (the default) is no
 * bound. Call right after st_open, before any upsert. */
void st_set_pending_limit(st_db *db, size_t max_pending, unsigned wait_ms);
/* After st_upsert of n documents failed with ST_ERR_BEHIND: the seconds to wait before
 * trying again, estimated as the vectors the indexer must first take off the collection's
 * tail (those past max_pending with the batch added, at most the whole tail) divided by its
 * recent pace on that collection, rounded up and clamped to [1, 60]; 1 while no pace is
 * known yet (nothing indexed for long enough) or the collection is gone. */
unsigned st_pending_retry_after(st_db *db, const char *collection, size_t n);
/* 1 when the indexer thread is waiting for work: every tail was empty and committed when it
 * last looked, and no write has woken it since (or it is not running). A tail's pending
 * count reaches 0 before the indexer has committed and let go of what it took, so tests that
 * count live allocations wait for this instead. */
int st_indexer_idle(st_db *db);

/* A document as read back; every pointer is owned (st_record_free). */
typedef struct {
    st_id id;          /* str owned */
    char *text;        /* NULL when the document has none */
    size_t text_len;
    char *metadata;    /* JSON text, or NULL */
    float *vector;
    unsigned dimension;
    double score;      /* search results only */
} st_record;
void st_record_free(st_record *r); /* frees what r owns; accepts NULL */

int st_document_get(st_db *db, const char *collection, const st_id *id, st_record *out, st_error *err);
int st_document_delete(st_db *db, const char *collection, const st_id *id, st_error *err);

/* ---- filters (Qdrant's language) ---- */

typedef struct st_filter st_filter;

/* Compiles a filter given as JSON text: {"must": [...], "should": [...], "must_not": [...]},
 * each condition {"key": "a.b", "match": {"value": v} | {"any": [v...]}} or {"key",
 * "range": {"gt"|"gte"|"lt"|"lte": number}} or a nested filter. A key with dots walks nested
 * objects; a key that reaches an array matches when any element does. On a malformed filter
 * returns ST_ERR_INVALID with the JSON pointer of the bad part (relative to the filter,
 * e.g. "/must/0/range") in `pointer`. */
int st_filter_compile(const char *json, size_t len, st_filter **out, char *pointer, size_t pointer_cap,
                      st_error *err);
void st_filter_free(st_filter *f); /* accepts NULL */
/* 1 when the metadata (JSON object text, or NULL) passes the filter. */
int st_filter_matches(const st_filter *f, const char *metadata, size_t len);

/* ---- search ---- */

typedef enum { ST_MODE_DENSE, ST_MODE_HYBRID, ST_MODE_KEYWORD } st_mode;
extern const char *const st_mode_names[]; /* "dense", "hybrid", "keyword"; NULL-terminated */

#define ST_TOP_K_MAX 1000

typedef struct {
    st_mode mode;
    const float *vector;        /* dense and hybrid: `dimension` floats */
    unsigned dimension;
    const char *text;           /* keyword and hybrid: the query text */
    size_t text_len;
    size_t top_k;               /* 1..ST_TOP_K_MAX */
    const st_filter *filter;    /* NULL = every document */
    int exact;                  /* dense: scan every vector instead of walking the index (also
                                 * chosen for small collections and filters few pass) */
    unsigned ef;                /* HNSW ef_search; 0 = the default */
    int has_threshold;
    double score_threshold;     /* drop results scoring below it */
    int with_text, with_metadata, with_vector;
} st_query;

/* Runs the query; fills a heap array of up to top_k results, best first (st_results_free). */
int st_search(st_db *db, const char *collection, const st_query *q, st_record **out, size_t *n, st_error *err);
void st_results_free(st_record *r, size_t n); /* accepts NULL */

#endif
