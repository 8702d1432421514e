/*
 * search_util.h — helpers shared by it_search, it_durability, it_crash and it_store_busy:
 * requests with jansson bodies, collection shortcuts over a running ragd (harness.h),
 * deterministic pseudo-random vectors, streams of batch upserts, and reads of the database
 * file after a kill. Failures print what came back and return a value the test
 * asserts; nothing here calls CUnit.
 */
#ifndef RAGD_IT_SEARCH_UTIL_H
#define RAGD_IT_SEARCH_UTIL_H

#include <jansson.h>

#include "harness.h"

/* POSTs a jansson body (the reference is stolen). */
it_response post_json(const it_server *s, const char *path, json_t *body);
/* The status of r (printing the body of a non-2xx reply); frees r. */
long status_of(it_response r);
/* POST /collections {name, dimension, distance}: the status. */
long create(const it_server *s, const char *name, int dim, const char *distance);
/* 1 when GET /collections/NAME reports this index state ("ready", "loaded", "rebuilt"). */
int index_state_is(const it_server *s, const char *name, const char *want);
/* The collection's document count, or -1. */
long count_of(const it_server *s, const char *name);
/* Waits (up to 60 s) until GET /collections/NAME reports nothing pending for the background
 * indexer; returns indexed_vectors_count, or -1 (also when indexed + pending != count). */
long wait_indexed(const it_server *s, const char *name);
json_t *vec_json(const float *v, int dim);
/* Deterministic pseudo-random values in [-1, 1). */
float rnd(unsigned *state);
/* A /search body for the query vector, top_k 10 (heap string; caller frees). */
char *search_body(const char *coll, const float *q, int dim);
/* Upserts batches first_batch .. first_batch + n_batches - 1 of `per` random documents each
 * (ids batch * per + i, a text, metadata {"batch": b}). Returns 0, or -1 at the first batch
 * that is not acknowledged with 200. */
int ingest(const it_server *s, const char *coll, int dim, int first_batch, int n_batches, int per, unsigned *seed);
/* Runs one SQL query on the database file (read-write, so a WAL left by a kill is replayed):
 * its first column as an integer into *out and as text into text[0..cap), either may be NULL.
 * Returns 0 when a row came back. */
int db_int(const char *path, const char *sql, long *out, char *text, size_t cap);
/* Counts the rows of each batch (metadata.batch) of `per` documents into counts[0..n); returns
 * how many batches have some rows but not all of them, or -1 when the database cannot be read. */
int batch_counts(const char *path, int per, int *counts, int n);

#endif
