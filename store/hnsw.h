/*
 * hnsw.h — an in-memory HNSW index (Malkov & Yashunin, "Efficient and robust approximate
 * nearest neighbor search using Hierarchical Navigable Small World graphs", 2016/2018),
 * with deletes, a filter evaluated during the walk, and a record format for persisting the
 * graph next to the documents so a restart does not rebuild it.
 *
 * Model
 *   Each node is a vector of `dim` float32 plus a caller label (int64; ragd uses the document
 *   rowid), unique within the index. Vectors live contiguously inside the index; under
 *   DIST_COSINE they are normalized at insert, and queries are normalized by hnsw_search.
 *   Scores are higher-is-better (distance.h): cosine similarity, dot product, or -||a-b||₂.
 *   Levels are drawn as floor(-ln(U) · 1/ln(m)) from a seeded generator (splitmix64), so an
 *   index is a deterministic function of (params, seed, sequence of inserts and deletes).
 *   Layer 0 keeps up to 2·m neighbours, upper layers up to m, chosen with the heuristic of
 *   the paper's Algorithm 4 (keepPrunedConnections on). Two additions keep every node
 *   reachable in practice: a list never drops the last link into a node (the index keeps
 *   reverse links, so it knows), and exact copies of a chosen neighbour are ranked last, so
 *   many identical vectors still form a connected graph.
 *   DIST_DOT is not a metric: with vectors of very different norms, recall at a given ef is
 *   lower than under cosine or l2 (true of every HNSW). Prefer cosine for embeddings.
 *
 * Deletes
 *   hnsw_delete removes the node for good: every node that linked to it (the index keeps
 *   reverse links, so it knows them all) gets its list repaired from the deleted node's
 *   neighbours with the same heuristic, the entry point moves if needed, and the slot is
 *   reused later. A deleted label is never returned again; an update is delete + insert
 *   (hnsw_upsert does both).
 *
 * Threads
 *   Concurrent calls of the const functions (hnsw_search, hnsw_search_exact, hnsw_count,
 *   hnsw_node_record, ...) are safe with each other. Everything that takes a non-const
 *   hnsw* (insert, upsert, delete, load, clear_dirty) needs exclusive access: the caller
 *   holds a read-write lock, reads shared and writes exclusive. Searches reuse per-thread
 *   scratch memory (visited set with epoch tags, heaps) from a small pool inside the index,
 *   so a query allocates nothing once the pool is warm.
 *
 * Persistence (formats below, all integers little-endian)
 *   The index remembers which nodes changed since hnsw_clear_dirty: inserted nodes, nodes
 *   whose neighbour lists changed (new links, pruning, delete repairs), and deleted labels.
 *   After a batch of changes the caller, inside one SQLite transaction, writes
 *   hnsw_node_record for each dirty live label, drops the record of each deleted label
 *   (hnsw_dirty_foreach reports both), writes hnsw_header_record, commits, then calls
 *   hnsw_clear_dirty. If the transaction fails, the caller destroys the index and reloads it
 *   from the database (hnsw_load_*), which only resolves labels: no distance is computed.
 *
 *   Header record (HNSW_HEADER_BYTES = 64 bytes):
 *     0  u8[4] magic "HNSW"     4  u16 version (1)    6  u8 metric   7  u8 max_level
 *     8  u32 dim               12  u32 m              16 u32 ef_construction
 *     20 u32 reserved (0)      24  u64 count          32 i64 entry label (any value when count 0)
 *     40 u64 seed              48  u64 rng state      56 u64 reserved (0)
 *   (metric: 0 cosine, 1 dot, 2 l2, as dist_metric.)
 *   Node record (hnsw_node_record; at most hnsw_record_max_bytes):
 *     0  u8 version (1)  1  u8 level L, then for l = 0..L: u16 count, count × i64 labels.
 *   A record names neighbours by label, so records may be loaded in any order.
 */
#ifndef RAGD_HNSW_H
#define RAGD_HNSW_H

#include <stddef.h>
#include <stdint.h>

#include "distance.h"

typedef struct hnsw hnsw;

enum {
    HNSW_OK = 0,
    HNSW_ENOMEM = -1,   /* out of memory; the index is unchanged */
    HNSW_EINVAL = -2,   /* bad argument: parameters out of range, NaN/Inf, zero vector under cosine */
    HNSW_EEXIST = -3,   /* hnsw_insert: the label is already in the index */
    HNSW_ENOENT = -4,   /* the label is not in the index */
    HNSW_ECORRUPT = -5, /* a persisted record is malformed or inconsistent */
};

typedef struct {
    int code;       /* one of the HNSW_E* values */
    char msg[192];
} hnsw_error;

/* Run-time limits (hnsw_create and the loader refuse anything outside them). */
#define HNSW_MAX_DIM 65536
#define HNSW_MIN_M 2
#define HNSW_MAX_M 128
#define HNSW_MAX_EF 65536 /* ef_construction and ef of a search */
#define HNSW_MAX_LEVEL 30
#define HNSW_HEADER_BYTES 64
#define HNSW_RECORD_VERSION 1

typedef struct {
    size_t dim;          /* 1 .. HNSW_MAX_DIM */
    dist_metric metric;
    int m;               /* links per node on upper layers (layer 0: 2·m); default 16 */
    int ef_construction; /* candidate list size while inserting; default 200 (values below m
                          * are accepted and kept, but inserts use m) */
    uint64_t seed;       /* level generator seed; default 42 */
} hnsw_params;

/* Fills p with the defaults for the given dimension and metric. */
void hnsw_params_default(hnsw_params *p, size_t dim, dist_metric metric);

/* Creates an empty index. Returns HNSW_OK, HNSW_EINVAL (params out of range) or HNSW_ENOMEM.
 * The caller owns *out and frees it with hnsw_destroy (which accepts NULL). */
int hnsw_create(const hnsw_params *p, hnsw **out, hnsw_error *err);
void hnsw_destroy(hnsw *h);

/* The parameters it was created (or loaded) with, and its size. */
const hnsw_params *hnsw_get_params(const hnsw *h);
size_t hnsw_count(const hnsw *h);                  /* live nodes */
int hnsw_contains(const hnsw *h, int64_t label);   /* 1 or 0 */
size_t hnsw_memory_bytes(const hnsw *h);           /* vectors + graph + maps, allocated */

/* Copies the stored vector of `label` into out[dim] (normalized under cosine).
 * Returns HNSW_OK or HNSW_ENOENT. */
int hnsw_get_vector(const hnsw *h, int64_t label, float *out);

/* Adds vec[dim] (copied; the caller keeps vec) under `label`. HNSW_EEXIST when the label is
 * present, HNSW_EINVAL for NaN/Inf or a zero vector under cosine, HNSW_ENOMEM; on any error
 * the index is unchanged. */
int hnsw_insert(hnsw *h, int64_t label, const float *vec, hnsw_error *err);
/* The same for a vector already dist_prepare'd for the index's metric (finite; unit length
 * under cosine), stored as given: bit for bit what hnsw_insert of the raw vector stores,
 * where preparing it a second time could move the last bit. For callers that keep only the
 * prepared copy. */
int hnsw_insert_prepared(hnsw *h, int64_t label, const float *vec, hnsw_error *err);

/* Insert, or replace the vector of an existing label (delete + insert). On error after the
 * delete (only HNSW_ENOMEM), the label is gone from the index. */
int hnsw_upsert(hnsw *h, int64_t label, const float *vec, hnsw_error *err);

/* Removes `label` for good (see Deletes above). HNSW_ENOENT when absent; HNSW_ENOMEM, with
 * nothing changed, when the bookkeeping cannot grow. Once started it does not fail: a repair
 * that cannot get memory keeps the surviving links. */
int hnsw_delete(hnsw *h, int64_t label, hnsw_error *err);

/* Filter: return non-zero to accept `label`. Called at most once per node a search visits,
 * from the searching thread; it must not call back into the index's non-const functions. */
typedef int (*hnsw_accept_fn)(int64_t label, void *ctx);

/* Approximate k nearest neighbours of query[dim] (not modified; normalized on a copy under
 * cosine). ef is the candidate list size (raised to k when smaller; 0 means
 * max(k, ef_construction)). With a filter, rejected nodes are still walked through but never
 * returned, and the walk goes on until ef accepted nodes are found or the reachable graph is
 * exhausted, so out[] holds k hits whenever ≥ k reachable nodes pass. A very selective filter
 * therefore visits much of the graph: when few labels pass, use hnsw_search_exact.
 * Writes up to k hits to out[k], best first, and the count to *n_out.
 * Returns HNSW_OK, HNSW_EINVAL (k == 0 is fine: 0 hits; k or ef > HNSW_MAX_EF, NaN/Inf or
 * a zero query under cosine) or HNSW_ENOMEM (scratch could not grow). */
int hnsw_search(const hnsw *h, const float *query, size_t k, size_t ef, hnsw_accept_fn accept, void *ctx,
                dist_hit *out, size_t *n_out, hnsw_error *err);

/* The exact top k over the live nodes (dist_exact_topk on the stored vectors), same
 * conventions as hnsw_search. */
int hnsw_search_exact(const hnsw *h, const float *query, size_t k, hnsw_accept_fn accept, void *ctx,
                      dist_hit *out, size_t *n_out, hnsw_error *err);

/* ---- Persistence ---- */

/* Writes the 64-byte header record to out[HNSW_HEADER_BYTES]. */
void hnsw_header_record(const hnsw *h, uint8_t out[HNSW_HEADER_BYTES]);

/* The node record of `label`: writes it to buf when it fits in cap bytes and sets *len to its
 * size either way. Returns HNSW_OK, HNSW_ENOENT, or HNSW_EINVAL when cap < *len (call again
 * with a larger buffer). Records are at most 2 + (HNSW_MAX_LEVEL+1)·2 + 8·(2m + L·m) bytes;
 * hnsw_record_max_bytes gives the bound for this index. */
int hnsw_node_record(const hnsw *h, int64_t label, uint8_t *buf, size_t cap, size_t *len);
size_t hnsw_record_max_bytes(const hnsw *h);

/* Changes since the last hnsw_clear_dirty (or creation/load). fn is called once per changed
 * label: with its current record for a live node (rec valid during the call only), or with
 * rec == NULL, len == 0 for a deleted label whose record must be dropped. A label deleted
 * then inserted again is reported live. A non-zero return from fn stops the walk and is
 * returned. The order is unspecified. */
size_t hnsw_dirty_count(const hnsw *h);
int hnsw_dirty_foreach(const hnsw *h, int (*fn)(int64_t label, const uint8_t *rec, size_t len, void *ctx),
                       void *ctx);
void hnsw_clear_dirty(hnsw *h);

/* Loading: begin from a header record, add every node (label, vector as it was inserted,
 * record) in any order, then finish. begin checks the header (magic, version, ranges) and
 * creates an index that must not be used before finish returns HNSW_OK; add checks the record
 * itself; finish resolves the neighbour labels and checks the whole graph: count matches the
 * header, every neighbour label exists, no self-links or duplicates, levels within the node's
 * level, the entry point exists at the top level. Any violation is HNSW_ECORRUPT with a
 * message naming the label; then (and on any other error) the caller destroys the index
 * with hnsw_destroy and may rebuild by inserting the documents afresh. No input can crash
 * the loader. The loaded index has nothing dirty. */
int hnsw_load_begin(const uint8_t *header, size_t len, hnsw **out, hnsw_error *err);
int hnsw_load_add(hnsw *h, int64_t label, const float *vec, const uint8_t *rec, size_t len, hnsw_error *err);
int hnsw_load_finish(hnsw *h, hnsw_error *err);

#endif
