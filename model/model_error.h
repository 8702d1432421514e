/* model_error.h — the error type of model/ (tensors, checkpoints, networks). Tokenizers,
 * which stand alone, have their own tok_error. */
#ifndef RAGD_MODEL_ERROR_H
#define RAGD_MODEL_ERROR_H

#include <stdarg.h>
#include <stdio.h>

enum {
    MDL_OK = 0,
    MDL_ENOMEM = -1,   /* allocation failed */
    MDL_EIO = -2,      /* a file is missing, unreadable or not a regular file */
    MDL_EFORMAT = -3,  /* a file is malformed or inconsistent */
    MDL_EINPUT = -4,   /* the caller's input is invalid */
};

typedef struct {
    int code;
    char msg[320];
} mdl_error;

/* Sets err (when not NULL) and returns code, for `return mdl_fail(err, MDL_EIO, ...)`. */
static inline int mdl_fail(mdl_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline int mdl_fail(mdl_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

#endif
