#include "json_watch.h"

#include <pthread.h>
#include <stdlib.h>

static _Thread_local int json_oom;
static json_malloc_t next_malloc;
static json_free_t next_free;
static pthread_once_t hook_once = PTHREAD_ONCE_INIT;

static void *watched_malloc(size_t n)
{
    void *p = next_malloc(n);
    if (!p)
        json_oom = 1;
    return p;
}

/* Chained, so a hook installed before ours keeps working; every hook ends at malloc/free,
 * which makes blocks allocated before or after the change interchangeable. */
static void install_hook(void)
{
    json_get_alloc_funcs(&next_malloc, &next_free);
    json_set_alloc_funcs(watched_malloc, next_free);
}

json_t *jsonw_loadb(const char *buf, size_t len, size_t flags, json_error_t *e, int *oom)
{
    pthread_once(&hook_once, install_hook);
    json_oom = 0;
    json_t *j = json_loadb(buf, len, flags, e);
    *oom = json_oom || (!j && json_error_code(e) == json_error_out_of_memory);
    if (*oom) {
        json_decref(j);
        j = NULL;
    }
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
