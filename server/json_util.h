/* json_util.h — small jansson helpers shared by handlers. */
#ifndef RAGD_JSON_UTIL_H
#define RAGD_JSON_UTIL_H

#include <jansson.h>
#include <stddef.h>

/* A JSON string from `len` bytes that may hold invalid UTF-8: each maximal invalid
 * sequence becomes U+FFFD (as Rust's String::from_utf8_lossy does). NULL when out of memory. */
json_t *srv_json_string_lossy(const char *s, size_t len);

/* jansson under memory pressure: json_loadb reports some failed allocations as syntax
 * errors, and when a token buffer cannot grow it drops the byte and parses on; json_dumps
 * leaves out an object key it cannot append. These two see every allocation jansson makes
 * (through an allocator hook chained in front of whatever jansson had), so a short memory
 * never passes for bad input or silently changes a document. */

/* json_loadb; NULL with *oom = 1 when any allocation failed during the parse. */
json_t *srv_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *e, int *oom);
/* json_dumps, written into one buffer sized first: a heap string, or NULL (out of memory). */
char *srv_json_dumps(const json_t *j, size_t flags);

#endif
