#include "auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_KEYS 64
#define MAX_KEY_LEN 4096

struct srv_auth {
    char *keys[MAX_KEYS];
    size_t lens[MAX_KEYS];
    size_t n;
};

static int add_key(srv_auth *a, const char *k, size_t len, char *msg, size_t cap)
{
    if (len == 0)
        return 0;
    if (a->n == MAX_KEYS || len > MAX_KEY_LEN) {
        snprintf(msg, cap, a->n == MAX_KEYS ? "more than %d API keys" : "an API key is longer than %d bytes",
                 a->n == MAX_KEYS ? MAX_KEYS : MAX_KEY_LEN);
        return -1;
    }
    a->keys[a->n] = malloc(len + 1);
    if (!a->keys[a->n]) {
        snprintf(msg, cap, "out of memory");
        return -1;
    }
    memcpy(a->keys[a->n], k, len);
    a->keys[a->n][len] = '\0';
    a->lens[a->n++] = len;
    return 0;
}

static int load_file(srv_auth *a, const char *path, char *msg, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(msg, cap, "--api-key-file %s: cannot open", path);
        return -1;
    }
    char line[MAX_KEY_LEN + 2];
    size_t before = a->n;
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        size_t len = strlen(line);
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' ' ||
                       line[len - 1] == '\t'))
            len--;
        if (len && line[0] != '#')
            rc = add_key(a, line, len, msg, cap);
    }
    fclose(f);
    if (rc == 0 && a->n == before) {
        snprintf(msg, cap, "--api-key-file %s: holds no key", path);
        rc = -1;
    }
    return rc;
}

int srv_auth_create(const char *key, const char *key_file, srv_auth **out, char *msg,
                    size_t msg_cap)
{
    *out = NULL;
    if ((!key || !*key) && (!key_file || !*key_file))
        return 0;
    srv_auth *a = calloc(1, sizeof *a);
    if (!a) {
        snprintf(msg, msg_cap, "out of memory");
        return -1;
    }
    if ((key && *key && add_key(a, key, strlen(key), msg, msg_cap) != 0) ||
        (key_file && *key_file && load_file(a, key_file, msg, msg_cap) != 0)) {
        srv_auth_destroy(a);
        return -1;
    }
    *out = a;
    return 0;
}

void srv_auth_destroy(srv_auth *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++)
        free(a->keys[i]);
    free(a);
}

/* Constant time in the content of `given`: every byte of the stored key is visited and the
 * length difference is folded into the result instead of returning early. */
static int key_equal(const char *given, size_t glen, const char *key, size_t klen)
{
    unsigned char diff = (unsigned char)(glen != klen);
    for (size_t i = 0; i < klen; i++)
        diff |= (unsigned char)(key[i] ^ (glen ? given[i % glen] : 0));
    return diff == 0;
}

int srv_auth_check(const srv_auth *a, const char *header)
{
    if (!a)
        return 1;
    if (!header || strncasecmp(header, "Bearer ", 7) != 0)
        return 0;
    const char *given = header + 7;
    size_t glen = strlen(given);
    int ok = 0;
    for (size_t i = 0; i < a->n; i++)
        ok |= key_equal(given, glen, a->keys[i], a->lens[i]);
    return ok;
}
