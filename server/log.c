#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static srv_log_level min_level = SRV_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

int srv_log_parse_level(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

void srv_log_set_level(srv_log_level level) { min_level = level; }

int srv_log_enabled(srv_log_level level) { return level >= min_level; }

size_t srv_log_quote(char *out, size_t cap, const char *s, size_t max)
{
    size_t o = 0;
    if (cap < 3)
        return 0;
    out[o++] = '"';
    for (size_t i = 0; s[i] && i < max && o + 5 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o++] = '"';
    out[o] = '\0';
    return o;
}

void srv_log(srv_log_level level, const char *msg, const char *fmt, ...)
{
    if (!srv_log_enabled(level))
        return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(line, sizeof line, "ts=%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof line - n, ".%03ldZ level=%s msg=",
                          ts.tv_nsec / 1000000L, level_names[level]);
    n += srv_log_quote(line + n, sizeof line - n, msg, 512);
    if (fmt && *fmt && n + 2 < sizeof line) {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(line + n, sizeof line - n, fmt, ap);
        va_end(ap);
        if (k > 0)
            n += (size_t)k < sizeof line - n ? (size_t)k : sizeof line - n - 1;
    }
    if (n >= sizeof line - 1)
        n = sizeof line - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}
