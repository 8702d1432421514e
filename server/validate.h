/*
 * validate.h — table-driven validation of a JSON request object.
 *
 * A handler declares its fields once (name, type, required, bounds) and gets typed values
 * written into its own struct at the given offsets, or one 4xx error naming the field by
 * JSON pointer. A field that is absent or null keeps the default the caller put in the
 * struct. Unknown fields are ignored, as TEI and OpenAI servers do.
 */
#ifndef RAGD_VALIDATE_H
#define RAGD_VALIDATE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"

typedef enum {
    SRV_F_BOOL,    /* -> int (0/1) */
    SRV_F_INT,     /* -> int64_t, within [min, max]; floats are rejected */
    SRV_F_NUMBER,  /* -> double, finite, within [min, max]; with SRV_FF_FLOAT32 finite as float */
    SRV_F_STRING,  /* -> const char * (borrowed from the tree), at most max_len bytes */
    SRV_F_ENUM,    /* -> int: index into choices */
    SRV_F_OBJECT,  /* -> json_t * (borrowed) */
    SRV_F_ARRAY,   /* -> json_t * (borrowed), at most max_len elements */
    SRV_F_ANY,     /* -> json_t * (borrowed); the handler checks the shape */
} srv_ftype;

enum { SRV_FF_REQUIRED = 1u << 0, SRV_FF_FLOAT32 = 1u << 1, SRV_FF_NONEMPTY = 1u << 2 };

typedef struct {
    const char *name;
    srv_ftype type;
    unsigned flags;
    size_t offset;              /* where the value goes in the caller's struct */
    double min, max;            /* SRV_F_INT, SRV_F_NUMBER */
    size_t max_len;             /* SRV_F_STRING bytes, SRV_F_ARRAY elements; 0 = no cap */
    const char *const *choices; /* SRV_F_ENUM, NULL-terminated */
} srv_field;

/* Validates `obj` against fields[0..n). Returns 0, or -1 after queuing the error reply. */
int srv_validate(srv_req *req, json_t *obj, const srv_field *fields, size_t n, void *out);
/* The same for an object nested at JSON pointer `at` (e.g. "/parameters"), which prefixes
 * the field pointers in errors. */
int srv_validate_at(srv_req *req, json_t *obj, const char *at, const srv_field *fields, size_t n, void *out);

/* `value` must be a string or an array of 1..max_items strings ("inputs": str | [str]).
 * Fills a heap array of borrowed pointers and lengths (caller frees *items and *lens) and
 * *is_list. Returns 0, or -1 after queuing the error reply (413 over max_items, 422 for an
 * empty list or a wrong type). `pointer` names the field in errors. */
int srv_string_list(srv_req *req, json_t *value, const char *pointer, size_t max_items,
                    const char ***items, size_t **lens, size_t *n, int *is_list);

#endif
