/* json_util.h — small jansson helpers shared by handlers. */
#ifndef RAGD_JSON_UTIL_H
#define RAGD_JSON_UTIL_H

#include <jansson.h>
#include <stddef.h>

/* A JSON string from `len` bytes that may hold invalid UTF-8: each maximal invalid
 * sequence becomes U+FFFD (as Rust's String::from_utf8_lossy does). NULL when out of memory. */
json_t *srv_json_string_lossy(const char *s, size_t len);

#endif
