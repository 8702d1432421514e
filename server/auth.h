/*
 * auth.h — Bearer API keys. Keys come from --api-key and/or --api-key-file (one per line,
 * blank lines and lines starting with '#' ignored). Comparison takes the same time whatever
 * the presented key's content is.
 */
#ifndef RAGD_AUTH_H
#define RAGD_AUTH_H

#include <stddef.h>

typedef struct srv_auth srv_auth;

/* Returns 0 and *out (NULL when no key is configured: auth disabled), or -1 with a
 * message in msg (e.g. unreadable key file, empty file). */
int srv_auth_create(const char *key, const char *key_file, srv_auth **out, char *msg,
                    size_t msg_cap);
void srv_auth_destroy(srv_auth *a);

/* 1 when `header` (the whole Authorization value, may be NULL) is "Bearer <key>" for a
 * configured key; the scheme is case-insensitive (RFC 7235), the key exact. */
int srv_auth_check(const srv_auth *a, const char *header);

#endif
