#include "metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Upper bounds in seconds; the last bucket is +Inf. */
/* Fine enough between 5 ms and 1 s that a p99 read from them is within about 20%. */
static const double bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.035, 0.05, 0.075,
                                0.1,    0.15,  0.2,    0.25,  0.35,   0.5,  0.75,  1,    1.5,   2.5,   5,    10,   30};
#define N_BOUNDS (sizeof bounds / sizeof bounds[0])
#define MAX_STATUSES 24 /* distinct statuses tracked per route; more fold into the last */

typedef struct {
    unsigned status;
    unsigned long long count;
    double sum;
    unsigned long long buckets[N_BOUNDS]; /* non-cumulative; cumulated when rendered */
} series;

typedef struct {
    series s[MAX_STATUSES];
    size_t n;
} route_stats;

struct srv_metrics {
    pthread_mutex_t lock; /* guards routes[]; held only for a few adds */
    const char *const *methods, *const *patterns;
    size_t n_routes;
    route_stats *routes; /* n_routes, unmatched, then n_routes of 405s by pattern */
    atomic_long inflight;
};

srv_metrics *srv_metrics_create(const char *const *methods, const char *const *patterns,
                                size_t n_routes)
{
    srv_metrics *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->routes = calloc(2 * n_routes + 1, sizeof *m->routes);
    if (!m->routes) {
        free(m);
        return NULL;
    }
    pthread_mutex_init(&m->lock, NULL);
    m->methods = methods;
    m->patterns = patterns;
    m->n_routes = n_routes;
    atomic_init(&m->inflight, 0);
    return m;
}

void srv_metrics_destroy(srv_metrics *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->lock);
    free(m->routes);
    free(m);
}

void srv_metrics_observe(srv_metrics *m, size_t route, unsigned status, double seconds)
{
    if (route > 2 * m->n_routes)
        route = m->n_routes;
    size_t b = 0;
    while (b < N_BOUNDS && seconds > bounds[b])
        b++;
    pthread_mutex_lock(&m->lock);
    route_stats *r = &m->routes[route];
    size_t i = 0;
    while (i < r->n && r->s[i].status != status)
        i++;
    if (i == r->n) {
        if (r->n < MAX_STATUSES)
            r->s[r->n++].status = status;
        else
            i = MAX_STATUSES - 1;
    }
    series *s = &r->s[i];
    s->count++;
    s->sum += seconds;
    if (b < N_BOUNDS)
        s->buckets[b]++;
    pthread_mutex_unlock(&m->lock);
}

void srv_metrics_inflight(srv_metrics *m, int delta) { atomic_fetch_add(&m->inflight, delta); }

long srv_metrics_inflight_now(const srv_metrics *m)
{
    return atomic_load(&((srv_metrics *)m)->inflight);
}

/* A growable text buffer for rendering. */
typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...)
{
    if (t->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (k < 0) {
            t->oom = 1;
            return;
        }
        if ((size_t)k < t->cap - t->len) {
            t->len += (size_t)k;
            return;
        }
        size_t cap = t->cap * 2 + (size_t)k + 1;
        char *p = realloc(t->p, cap);
        if (!p) {
            t->oom = 1;
            return;
        }
        t->p = p;
        t->cap = cap;
    }
}

/* The method and route labels of series index r (see metrics.h). */
static void labels(const srv_metrics *m, size_t r, const char **method, const char **pattern)
{
    *method = r < m->n_routes ? m->methods[r] : "";
    *pattern = r < m->n_routes ? m->patterns[r] : r == m->n_routes ? "unmatched" : m->patterns[r - m->n_routes - 1];
}

char *srv_metrics_render(srv_metrics *m, size_t *len)
{
    text t = {malloc(4096), 0, 4096, 0};
    if (!t.p)
        return NULL;
    put(&t, "# HELP ragd_http_requests_in_flight Requests being processed.\n"
            "# TYPE ragd_http_requests_in_flight gauge\n"
            "ragd_http_requests_in_flight %ld\n",
        srv_metrics_inflight_now(m));
    put(&t, "# HELP ragd_http_requests_total Requests answered, by route and status.\n"
            "# TYPE ragd_http_requests_total counter\n");
    pthread_mutex_lock(&m->lock);
    for (size_t r = 0; r <= 2 * m->n_routes; r++) {
        const char *meth, *pat;
        labels(m, r, &meth, &pat);
        for (size_t i = 0; i < m->routes[r].n; i++)
            put(&t, "ragd_http_requests_total{method=\"%s\",route=\"%s\",status=\"%u\"} %llu\n",
                meth, pat, m->routes[r].s[i].status, m->routes[r].s[i].count);
    }
    put(&t, "# HELP ragd_http_request_duration_seconds Time from request to response.\n"
            "# TYPE ragd_http_request_duration_seconds histogram\n");
    for (size_t r = 0; r <= 2 * m->n_routes; r++) {
        const char *meth, *pat;
        labels(m, r, &meth, &pat);
        for (size_t i = 0; i < m->routes[r].n; i++) {
            const series *s = &m->routes[r].s[i];
            unsigned long long cum = 0;
            for (size_t b = 0; b < N_BOUNDS; b++) {
                cum += s->buckets[b];
                put(&t,
                    "ragd_http_request_duration_seconds_bucket{method=\"%s\",route=\"%s\","
                    "status=\"%u\",le=\"%g\"} %llu\n",
                    meth, pat, s->status, bounds[b], cum);
            }
            put(&t,
                "ragd_http_request_duration_seconds_bucket{method=\"%s\",route=\"%s\","
                "status=\"%u\",le=\"+Inf\"} %llu\n"
                "ragd_http_request_duration_seconds_sum{method=\"%s\",route=\"%s\","
                "status=\"%u\"} %.6f\n"
                "ragd_http_request_duration_seconds_count{method=\"%s\",route=\"%s\","
                "status=\"%u\"} %llu\n",
                meth, pat, s->status, s->count, meth, pat, s->status, s->sum, meth, pat,
                s->status, s->count);
        }
    }
    pthread_mutex_unlock(&m->lock);
    if (t.oom) {
        free(t.p);
        return NULL;
    }
    *len = t.len;
    return t.p;
}
