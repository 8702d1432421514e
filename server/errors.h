/*
 * errors.h — every error a client can receive, with its HTTP status, TEI error_type and
 * stable snake_case code (DESIGN §4.7). One table in errors.c maps them; the reply helper
 * in http.h builds every error body from it.
 */
#ifndef RAGD_ERRORS_H
#define RAGD_ERRORS_H

typedef enum {
    SRV_E_INVALID_JSON,           /* 400 */
    SRV_E_BAD_REQUEST,            /* 400 malformed query or path */
    SRV_E_UNAUTHORIZED,           /* 401 */
    SRV_E_NOT_FOUND,              /* 404 unknown route or resource */
    SRV_E_METHOD_NOT_ALLOWED,     /* 405 */
    SRV_E_EXISTS,                 /* 409 the resource exists already */
    SRV_E_CONFLICT,               /* 409 the resource is being written, or the action is too late */
    SRV_E_PAYLOAD_TOO_LARGE,      /* 413 body over --max-body-bytes */
    SRV_E_BATCH_TOO_LARGE,        /* 413 more inputs than --max-batch */
    SRV_E_INPUT_TOO_LONG,         /* 413 more tokens than --max-input-tokens */
    SRV_E_UNSUPPORTED_MEDIA_TYPE, /* 415 */
    SRV_E_MISSING_FIELD,          /* 422 */
    SRV_E_INVALID_TYPE,           /* 422 */
    SRV_E_OUT_OF_RANGE,           /* 422 */
    SRV_E_INVALID_VALUE,          /* 422 */
    SRV_E_EMPTY_INPUT,            /* 422 */
    SRV_E_TOKENIZER,              /* 422 the tokenizer rejected the input */
    SRV_E_OVERLOADED,             /* 429 */
    SRV_E_INTERNAL,               /* 500 */
    SRV_E_MODEL_NOT_LOADED,       /* 503 */
    SRV_E_SHUTTING_DOWN,          /* 503 */
    SRV_E_OUT_OF_MEMORY,          /* 503 */
    SRV_E_STORE_BUSY,             /* 503 the database stayed locked past the busy timeout */
    SRV_E_INDEX_BEHIND,           /* 503 a collection's not-yet-indexed tail is at --max-pending-vectors */
    SRV_E_STORAGE_FULL,           /* 507 the disk is full; nothing was written */
    SRV_E_COUNT
} srv_err;

typedef struct {
    unsigned status;
    const char *type;  /* TEI error_type */
    const char *code;  /* stable machine-readable code */
} srv_err_info;

const srv_err_info *srv_err_lookup(srv_err e);

#endif
