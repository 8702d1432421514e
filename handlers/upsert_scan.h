/*
 * upsert_scan.h — the fast path of an upsert body, shared by handlers/collections.c (which
 * falls back to the JSON tree whenever it declines) and tests/unit/test_upsert_scan.c.
 * Private to handlers/.
 */
#ifndef RAGD_HANDLERS_UPSERT_SCAN_H
#define RAGD_HANDLERS_UPSERT_SCAN_H

#include <stddef.h>

#include "collections.h"

/* Scans body[len], {"<list>":[{"id":..., "vector":[...]}, ...]} with a "text" too when
 * `texts`, into docs[n] for collection c: at most max_batch documents, each vector a view
 * into vecs[n, c->dimension], each string id and text a view into body. Returns 1 with
 * *docs_out and *vecs_out allocated here (the caller frees both; body must outlive them), or
 * 0 with nothing allocated (NULL, NULL, 0) when the body is anything else or anything
 * doubtful, including out of memory: the caller then decodes it through the JSON tree, which
 * makes every error message. Nothing this accepts has a value the tree would read
 * differently. */
int ups_scan(const char *body, size_t len, const char *list, int texts, size_t max_batch, const st_collection *c,
             st_doc **docs_out, float **vecs_out, size_t *n_out);

/* The double a JSON number token [p, end) with a fraction or an exponent denotes, when
 * Clinger's fast path computes it exactly (1 and *out, bit for bit what strtod gives);
 * 0 when it does not (*out untouched): strtod must decide. The token's grammar is the
 * caller's to check. */
int ups_exact_decimal(const char *p, const char *end, double *out);

#endif
