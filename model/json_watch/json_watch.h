/*
 * json_watch.h — JSON in and out of jansson values, safe when memory runs short. Every layer
 * that parses or writes JSON (server/, store/, model/, handlers/) goes through these, so
 * they live below them all.
 *
 * jansson's parser reads and writes past a heap buffer when an allocation fails mid-token
 * (json_parse.c says how), so jsonw_loadb is a parser of our own that builds jansson values;
 * json_dumps leaves out an object key it cannot append, so jsonw_dumps sizes its buffer
 * first. A short memory never passes for bad input or silently changes a document.
 */
#ifndef RAGD_JSON_WATCH_H
#define RAGD_JSON_WATCH_H

#include <jansson.h>
#include <stddef.h>

/* json_loadb's contract (flags JSON_REJECT_DUPLICATES and JSON_DECODE_ANY; e and oom may be NULL):
 * the value, or NULL with *oom = 1 when memory ran short and 0 when the text is not JSON,
 * the error in e (position, line, column, text; json_error_code). */
json_t *jsonw_loadb(const char *buf, size_t len, size_t flags, json_error_t *e, int *oom);

/* The same over a whole file; a file that cannot be opened or read is an error whose text
 * starts "unable to open" or "unable to read". */
json_t *jsonw_load_file(const char *path, size_t flags, json_error_t *e, int *oom);

/* json_dumps, written into one buffer sized first: a heap string, or NULL (out of memory). */
char *jsonw_dumps(const json_t *j, size_t flags);

#endif
