/*
 * metrics.h — request counters and latency histograms per route and status, and the
 * in-flight gauge, rendered as Prometheus text. Thread-safe; one object per daemon.
 */
#ifndef RAGD_METRICS_H
#define RAGD_METRICS_H

#include <stddef.h>

typedef struct srv_metrics srv_metrics;

/* `methods` and `patterns` label each route index ("POST /tokenize"). Observations use
 * index i < n_routes for route i, n_routes for a path no pattern matches (route
 * "unmatched"), and srv_metrics_wrong_method(n_routes, i) for a path that matches route i's
 * pattern under a method none of its routes serve (a 405: that pattern, method ""). The
 * labels must outlive the object. Returns NULL when out of memory. */
srv_metrics *srv_metrics_create(const char *const *methods, const char *const *patterns,
                                size_t n_routes);
void srv_metrics_destroy(srv_metrics *m);
static inline size_t srv_metrics_wrong_method(size_t n_routes, size_t route) { return n_routes + 1 + route; }

void srv_metrics_observe(srv_metrics *m, size_t route, unsigned status, double seconds);
void srv_metrics_inflight(srv_metrics *m, int delta);
long srv_metrics_inflight_now(const srv_metrics *m);

/* Returns a heap string of Prometheus text (caller frees) or NULL when out of memory. */
char *srv_metrics_render(srv_metrics *m, size_t *len);

#endif
