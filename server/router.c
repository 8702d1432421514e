#include "router.h"

#include <stdio.h>
#include <string.h>

/* Matches one pattern; captures go to params. Returns 1 on a match. */
static int match_pattern(const char *pat, const char *path, srv_params *params)
{
    size_t used = 0;
    params->n = 0;
    while (*pat && *path) {
        if (*pat != '/' || *path != '/')
            return 0;
        pat++;
        path++;
        const char *pe = strchr(pat, '/'), *se = strchr(path, '/');
        size_t pl = pe ? (size_t)(pe - pat) : strlen(pat);
        size_t sl = se ? (size_t)(se - path) : strlen(path);
        if (pl >= 2 && pat[0] == '{' && pat[pl - 1] == '}') {
            if (sl == 0 || params->n == SRV_MAX_PARAMS || used + sl + 1 > sizeof params->buf)
                return 0;
            memcpy(params->buf + used, path, sl);
            params->buf[used + sl] = '\0';
            params->names[params->n] = pat + 1;
            params->name_lens[params->n] = pl - 2;
            params->values[params->n++] = params->buf + used;
            used += sl + 1;
        } else if (pl != sl || memcmp(pat, path, pl) != 0) {
            return 0;
        }
        pat += pl;
        path += sl;
    }
    return *pat == '\0' && *path == '\0';
}

int srv_route_match(const srv_route *routes, size_t n, const char *method, const char *path,
                    srv_params *params, char *allow, size_t allow_cap)
{
    int path_matched = 0;
    size_t used = 0;
    if (allow_cap)
        allow[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (!match_pattern(routes[i].pattern, path, params))
            continue;
        if (strcmp(routes[i].method, method) == 0)
            return (int)i;
        path_matched = 1;
        if (used < allow_cap) {
            int k = snprintf(allow + used, allow_cap - used, "%s%s", used ? ", " : "",
                             routes[i].method);
            if (k > 0)
                used += (size_t)k;
        }
    }
    params->n = 0;
    return path_matched ? SRV_MATCH_METHOD : SRV_MATCH_NONE;
}

int srv_route_find_path(const srv_route *routes, size_t n, const char *path)
{
    srv_params scratch;
    for (size_t i = 0; i < n; i++)
        if (match_pattern(routes[i].pattern, path, &scratch))
            return (int)i;
    return SRV_MATCH_NONE;
}
