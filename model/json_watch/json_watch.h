/*
 * json_watch.h — jansson, watched for short memory. Every layer that parses or writes JSON
 * (server/, store/, model/, handlers/) goes through this pair, so it lives below them all.
 *
 * Under memory pressure json_loadb reports some failed allocations as syntax errors, and
 * when a token buffer cannot grow it drops the byte and parses on; json_dumps leaves out an
 * object key it cannot append. These two see every allocation jansson makes (one allocator
 * hook, installed once, chained in front of whatever jansson had), so a short memory never
 * passes for bad input or silently changes a document.
 */
#ifndef RAGD_JSON_WATCH_H
#define RAGD_JSON_WATCH_H

#include <jansson.h>
#include <stddef.h>

/* json_loadb; NULL with *oom = 1 when any allocation failed during the parse. */
json_t *jsonw_loadb(const char *buf, size_t len, size_t flags, json_error_t *e, int *oom);

/* json_dumps, written into one buffer sized first: a heap string, or NULL (out of memory). */
char *jsonw_dumps(const json_t *j, size_t flags);

#endif
