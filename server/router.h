/*
 * router.h — matches METHOD + path against the route table.
 *
 * Patterns are literal segments and `{name}` captures of one non-empty segment, e.g.
 * "/collections/{name}/documents/{id}". A path that matches some pattern under another
 * method gives 405 with the Allow list; a path that matches nothing gives 404.
 */
#ifndef RAGD_ROUTER_H
#define RAGD_ROUTER_H

#include <stddef.h>

#define SRV_MAX_PARAMS 4
#define SRV_MAX_PATH 2048

typedef struct srv_req srv_req;
typedef void (*srv_handler)(srv_req *req, void *app);

enum {
    SRV_ROUTE_PUBLIC = 1u << 0,   /* no API key needed (health) */
    SRV_ROUTE_OPENAI = 1u << 1,   /* errors in OpenAI's shape */
    SRV_ROUTE_NO_BODY = 1u << 2,  /* GET-like: no JSON body expected */
    SRV_ROUTE_JSONL = 1u << 3,    /* the body is JSON Lines (application/jsonl, x-ndjson or json) */
    SRV_ROUTE_GATED = 1u << 4,    /* computes without a model: admitted through the route's own gate
                                   * (--max-route-requests) once its body is in, before it is parsed */
    SRV_ROUTE_CPU = 1u << 5,      /* a gated route that computes from start to end without waiting
                                   * on a model: two requests per core run at once, the others
                                   * admitted take their turn in the order they came */
};

struct srv_gate;

typedef struct {
    const char *method;
    const char *pattern;
    srv_handler handler;
    unsigned flags;
    /* The gate of the model the route runs on (and the model's name for the 429), or NULL.
     * It is taken once the body is in, before the handler is handed to a worker, so a full
     * model turns requests away without one; the handler's own srv_req_admit of the same
     * gate then takes no second place. */
    struct srv_gate *(*model_gate)(void *app, const char **name);
} srv_route;

typedef struct {
    char buf[SRV_MAX_PATH];  /* NUL-separated copy of the captured segments */
    const char *names[SRV_MAX_PARAMS];
    size_t name_lens[SRV_MAX_PARAMS];
    const char *values[SRV_MAX_PARAMS];
    size_t n;
} srv_params;

enum { SRV_MATCH_NONE = -1, SRV_MATCH_METHOD = -2 };

/* Returns the index of the matching route (and fills params), SRV_MATCH_METHOD when only
 * the method differs (allow receives "GET, POST"), or SRV_MATCH_NONE. */
int srv_route_match(const srv_route *routes, size_t n, const char *method, const char *path,
                    srv_params *params, char *allow, size_t allow_cap);
/* The index of the first route whose pattern matches `path` under any method, or
 * SRV_MATCH_NONE. */
int srv_route_find_path(const srv_route *routes, size_t n, const char *path);

#endif
