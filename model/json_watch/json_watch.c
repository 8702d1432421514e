/* json_watch.c — reading a JSON file through jsonw_loadb, and writing JSON in one buffer. */
#include "json_watch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A file that could not be opened or read: NULL, the error in e. */
static json_t *file_error(json_error_t *e, const char *path, const char *what, int err)
{
    if (e) {
        memset(e, 0, sizeof *e);
        snprintf(e->source, sizeof e->source, "%s", path);
        snprintf(e->text, JSON_ERROR_TEXT_LENGTH - 1, "unable to %s %s: %s", what, path, strerror(err));
        e->text[JSON_ERROR_TEXT_LENGTH - 1] = (char)(err == ENOMEM ? json_error_out_of_memory : json_error_cannot_open_file);
    }
    return NULL;
}

json_t *jsonw_load_file(const char *path, size_t flags, json_error_t *e, int *oom)
{
    int short_memory = 0;
    if (!oom)
        oom = &short_memory;
    *oom = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return file_error(e, path, "open", errno);
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        size = ftell(f);
    char *buf = size >= 0 && fseek(f, 0, SEEK_SET) == 0 ? malloc((size_t)size + 1) : NULL;
    int err = errno;
    if (buf && fread(buf, 1, (size_t)size, f) != (size_t)size) {
        err = ferror(f) ? errno : EIO;
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (!buf) {
        *oom = err == ENOMEM;
        return file_error(e, path, "read", err);
    }
    json_t *j = jsonw_loadb(buf, (size_t)size, flags, e, oom);
    free(buf);
    if (e)
        snprintf(e->source, sizeof e->source, "%s", path);
    return j;
}

char *jsonw_dumps(const json_t *j, size_t flags)
{
    size_t len = json_dumpb(j, NULL, 0, flags);
    char *text = len ? malloc(len + 1) : NULL;
    if (text && json_dumpb(j, text, len, flags) == len) {
        text[len] = '\0';
        return text;
    }
    free(text);
    return NULL;
}
