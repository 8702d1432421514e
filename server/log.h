/*
 * log.h — one-line structured logs (logfmt) on stderr.
 *
 * The level is set once at start-up, before any thread starts, and only read afterwards.
 * Lower layers (model/, store/) never call this directly: main.c registers their log
 * callbacks to forward here.
 */
#ifndef RAGD_LOG_H
#define RAGD_LOG_H

#include <stddef.h>

typedef enum { SRV_LOG_DEBUG, SRV_LOG_INFO, SRV_LOG_WARN, SRV_LOG_ERROR } srv_log_level;

/* Parse "debug"|"info"|"warn"|"error"; returns -1 for anything else. */
int srv_log_parse_level(const char *s);
void srv_log_set_level(srv_log_level level);
int srv_log_enabled(srv_log_level level);

/* Writes `ts=... level=... msg="..."` followed by the logfmt pairs in `fmt` (which the caller
 * writes as `key=value key2="quoted"`). One write(2) per line so lines never interleave. */
void srv_log(srv_log_level level, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A line with no fields beyond the message. */
#define srv_log_msg(level, msg) srv_log((level), (msg), "%s", "")

/* Appends `s` to `out` as a logfmt-quoted value, escaping quotes, backslashes and control
 * bytes and cutting it at `max` input bytes. Returns the number of bytes written (< cap). */
size_t srv_log_quote(char *out, size_t cap, const char *s, size_t max);

#endif
