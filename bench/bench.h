/* bench.h — what every benchmark program shares: a monotonic clock and medians. */
#ifndef RAGD_BENCH_H
#define RAGD_BENCH_H

#include <stdlib.h>
#include <time.h>

#define RUNS 5 /* runs per figure; the median is reported */

static inline double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of runs[0..n) (sorts them). */
static inline double median(double *runs, size_t n)
{
    qsort(runs, n, sizeof *runs, cmp_double);
    return runs[n / 2];
}

#endif
