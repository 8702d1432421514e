/* adapters.c — the adapter registry and GET/POST/DELETE /adapters.
 *
 * Adapters live in --adapters-dir as PEFT directories. A request that names one (by
 * ?adapter=, parameters.adapter_id or OpenAI's model) loads it on first use from
 * ADAPTERS_DIR/NAME; POST /adapters registers a name for another directory below the root
 * and loads it at once. Loaded adapters sit in an LRU cache under --adapter-cache-bytes.
 *
 * Each loaded version is an app_adapter with a reference count: the registry holds one
 * reference while the version is current, each request using it one more. Evicting,
 * replacing (POST of a known name, app_adapter_forget) or deleting only detaches a version;
 * whoever drops the last reference frees it. So a request always runs on one complete
 * version from its first token to its last, whatever happens to the name meanwhile.
 *
 * Locking: reg->lock guards the entries, the counts and the clock. It is a leaf lock, never
 * held across file I/O (loading happens unlocked, then the result is published) or compute.
 */
#include "app.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "validate.h"

#define MAX_ADAPTERS 1024     /* names the registry and a listing hold */
#define MAX_LIST_BYTES 2048   /* of the names a 404 lists */

struct app_adapter_entry {
    char name[ADP_NAME_MAX + 1];
    char path[APP_ADAPTER_PATH_MAX]; /* below the root; the name itself unless registered */
    int registered;                  /* by POST: kept (unloaded) when evicted */
    app_adapter *cur;                /* the current version, or NULL when not in memory */
    uint64_t used;                   /* LRU clock of the last acquire */
};

/* Drops one reference; the caller holds the lock. Returns the version to free (outside the
 * lock) when that was the last one. */
static app_adapter *unref_locked(app_adapter *ad)
{
    return --ad->refs == 0 ? ad : NULL;
}

static void free_version(app_adapter *ad)
{
    if (!ad)
        return;
    adp_free(ad->a);
    free(ad);
}

/* Detaches an entry's current version from the cache (lock held). */
static app_adapter *detach_locked(app_adapters *reg, struct app_adapter_entry *e)
{
    app_adapter *ad = e->cur;
    if (!ad)
        return NULL;
    e->cur = NULL;
    reg->bytes -= ad->bytes;
    return unref_locked(ad);
}

static struct app_adapter_entry *find_locked(app_adapters *reg, const char *name)
{
    for (size_t i = 0; i < reg->n; i++)
        if (!strcmp(reg->entries[i].name, name))
            return &reg->entries[i];
    return NULL;
}

static void remove_locked(app_adapters *reg, struct app_adapter_entry *e)
{
    *e = reg->entries[--reg->n];
}

void app_adapters_init(struct app *app)
{
    app_adapters *reg = &app->adapters;
    pthread_mutex_init(&reg->lock, NULL);
    reg->budget = (size_t)app->cfg->adapter_cache_bytes;
    reg->entries = calloc(MAX_ADAPTERS, sizeof *reg->entries);
    const char *dir = app->cfg->adapters_dir;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        srv_log(SRV_LOG_WARN, "cannot create the adapters directory", "dir=\"%s\" error=\"%s\"", dir, strerror(errno));
    reg->root_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (reg->root_fd < 0)
        srv_log(SRV_LOG_WARN, "adapters are unavailable", "dir=\"%s\" error=\"%s\"", dir, strerror(errno));
    reg->ready = reg->entries != NULL;
}

void app_adapters_deinit(struct app *app)
{
    app_adapters *reg = &app->adapters;
    if (!reg->ready)
        return;
    for (size_t i = 0; i < reg->n; i++)
        free_version(detach_locked(reg, &reg->entries[i]));
    free(reg->entries);
    if (reg->root_fd >= 0)
        close(reg->root_fd);
    pthread_mutex_destroy(&reg->lock);
    reg->ready = 0;
}

/* Does ROOT/name exist at all (without following a symlink)? */
static int on_disk(const app_adapters *reg, const char *name)
{
    struct stat st;
    return reg->root_fd >= 0 && fstatat(reg->root_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* The adapters a client can name: registered or loaded ones, and directories in the root
 * that hold an adapter_config.json. Sorted names in a JSON array. */
static json_t *available(app_adapters *reg)
{
    json_t *names = json_object();
    if (!names)
        return NULL;
    pthread_mutex_lock(&reg->lock);
    for (size_t i = 0; i < reg->n; i++)
        json_object_set_new(names, reg->entries[i].name, json_true());
    pthread_mutex_unlock(&reg->lock);
    int fd = reg->root_fd >= 0 ? openat(reg->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d && fd >= 0)
        close(fd);
    for (struct dirent *de; d && (de = readdir(d)) != NULL && json_object_size(names) < MAX_ADAPTERS;) {
        char rel[ADP_NAME_MAX + 32];
        struct stat st;
        if (!adp_valid_name(de->d_name))
            continue;
        snprintf(rel, sizeof rel, "%s/adapter_config.json", de->d_name);
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode) &&
            fstatat(dirfd(d), rel, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
            json_object_set_new(names, de->d_name, json_true());
    }
    if (d)
        closedir(d);
    json_t *list = json_array();
    const char *k;
    json_t *v;
    json_object_foreach(names, k, v) json_array_append_new(list, json_string(k));
    json_decref(names);
    size_t n = json_array_size(list);
    const char **sorted = malloc((n ? n : 1) * sizeof *sorted);
    json_t *out = json_array();
    if (sorted && out) {
        for (size_t i = 0; i < n; i++)
            sorted[i] = json_string_value(json_array_get(list, i));
        for (size_t i = 1; i < n; i++) /* insertion sort: lists are short */
            for (size_t j = i; j > 0 && strcmp(sorted[j - 1], sorted[j]) > 0; j--) {
                const char *t = sorted[j];
                sorted[j] = sorted[j - 1];
                sorted[j - 1] = t;
            }
        for (size_t i = 0; i < n; i++)
            json_array_append_new(out, json_string(sorted[i]));
    }
    free(sorted);
    json_decref(list);
    return out;
}

/* 404 naming what exists. */
static void reply_unknown(srv_req *req, app_adapters *reg, const app_model *m, const char *name, const char *field)
{
    json_t *names = available(reg);
    char list[MAX_LIST_BYTES] = "";
    size_t used = 0;
    for (size_t i = 0; names && i < json_array_size(names) && used + 80 < sizeof list; i++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s'%s'", i ? ", " : "",
                                 json_string_value(json_array_get(names, i)));
    json_decref(names);
    srv_reply_error(req, SRV_E_NOT_FOUND, field, "adapter '%s' does not exist; available: %s%sand the base model '%s'",
                    name, list, *list ? ", " : "", m->name);
}

/* Publishes a freshly loaded version under `name` (lock held): replaces the current one
 * when `replace`, else keeps a version someone else published meanwhile. Evicts the least
 * recently used others while over budget. Returns the version now current, with a
 * reference for the caller, and in *drop what the caller must free (unlocked). */
static app_adapter *publish_locked(app_adapters *reg, const char *name, const char *path, int registered, app_adapter *ad,
                                   int replace, app_adapter **drop, size_t *n_drop)
{
    struct app_adapter_entry *e = find_locked(reg, name);
    if (e && e->cur && !replace) {
        drop[(*n_drop)++] = ad; /* lost a race to another loader: use theirs */
        ad = e->cur;
    } else {
        if (!e) {
            e = &reg->entries[reg->n++];
            memset(e, 0, sizeof *e);
            snprintf(e->name, sizeof e->name, "%s", name);
        }
        if (registered) {
            e->registered = 1;
            snprintf(e->path, sizeof e->path, "%s", path);
        } else if (!e->registered) {
            snprintf(e->path, sizeof e->path, "%s", name);
        }
        if ((drop[*n_drop] = detach_locked(reg, e)) != NULL)
            (*n_drop)++;
        e->cur = ad;
        ad->refs = 1; /* the cache's */
        reg->bytes += ad->bytes;
    }
    e->used = ++reg->clock;
    ad->refs++;
    /* Evict others, least recently used first, while over budget. */
    while (reg->bytes > reg->budget) {
        struct app_adapter_entry *lru = NULL;
        for (size_t i = 0; i < reg->n; i++)
            if (reg->entries[i].cur && &reg->entries[i] != e && (!lru || reg->entries[i].used < lru->used))
                lru = &reg->entries[i];
        if (!lru)
            break;
        if ((drop[*n_drop] = detach_locked(reg, lru)) != NULL)
            (*n_drop)++;
        if (!lru->registered)
            remove_locked(reg, lru);
        if (e == &reg->entries[reg->n]) /* moved by remove_locked */
            e = lru;
    }
    return ad;
}

/* Loads ROOT/path and publishes it under name. Returns the version (one reference for the
 * caller), or NULL after replying. */
static app_adapter *load_and_publish(srv_req *req, struct app *app, const app_model *m, const char *name,
                                     const char *path, int registered, int replace, const char *field)
{
    app_adapters *reg = &app->adapters;
    app_adapter *ad = calloc(1, sizeof *ad);
    mdl_error me;
    if (!ad) {
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
        return NULL;
    }
    if (adp_load(reg->root_fd, path, gpt2_get_config(m->gpt), &ad->a, &me) != 0) {
        free(ad);
        if (me.code == MDL_ENOMEM)
            srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory while loading adapter '%s'", name);
        else
            srv_reply_error(req, SRV_E_INVALID_VALUE, field, "adapter '%s' cannot be loaded: %s", name, me.msg);
        return NULL;
    }
    snprintf(ad->name, sizeof ad->name, "%s", name);
    ad->bytes = adp_bytes(ad->a);
    ad->reg = reg;
    if (ad->bytes > reg->budget) {
        srv_reply_error(req, SRV_E_INVALID_VALUE, field,
                        "adapter '%s' needs %zu bytes; the adapter cache holds %zu (--adapter-cache-bytes)", name,
                        ad->bytes, reg->budget);
        free_version(ad);
        return NULL;
    }
    app_adapter *drop[MAX_ADAPTERS + 2];
    size_t n_drop = 0;
    pthread_mutex_lock(&reg->lock);
    struct app_adapter_entry *e = find_locked(reg, name);
    app_adapter *cur = NULL;
    if (!e && reg->n == MAX_ADAPTERS)
        n_drop = (drop[0] = ad, 1);
    else
        cur = publish_locked(reg, name, path, registered, ad, replace, drop, &n_drop);
    pthread_mutex_unlock(&reg->lock);
    for (size_t i = 0; i < n_drop; i++)
        free_version(drop[i]);
    if (!cur)
        srv_reply_error(req, SRV_E_INVALID_VALUE, field, "the registry holds %d adapters already", MAX_ADAPTERS);
    else
        srv_log(SRV_LOG_INFO, "adapter loaded", "name=%s type=%s bytes=%zu", name, adp_type_name(cur->a->cfg.type),
                cur->bytes);
    return cur;
}

int app_adapter_acquire(srv_req *req, struct app *app, const app_model *m, const char *name, const char *field,
                        app_adapter **out)
{
    *out = NULL;
    app_adapters *reg = &app->adapters;
    if (!name || !*name || !strcmp(name, m->name))
        return 0;
    if (!adp_valid_name(name)) { /* before any filesystem call */
        srv_reply_error(req, SRV_E_BAD_REQUEST, field,
                        "adapter names match [A-Za-z0-9][A-Za-z0-9._-]{0,63}; '%.80s' does not", name);
        return -1;
    }
    if (!reg->ready || reg->root_fd < 0) {
        srv_reply_error(req, SRV_E_NOT_FOUND, field, "adapter '%s' does not exist: the adapters directory %s is unavailable",
                        name, app->cfg->adapters_dir);
        return -1;
    }
    char path[APP_ADAPTER_PATH_MAX];
    pthread_mutex_lock(&reg->lock);
    struct app_adapter_entry *e = find_locked(reg, name);
    if (e && e->cur) {
        e->cur->refs++;
        e->used = ++reg->clock;
        *out = e->cur;
    }
    int registered = e && e->registered;
    snprintf(path, sizeof path, "%s", e ? e->path : name);
    pthread_mutex_unlock(&reg->lock);
    if (*out)
        return 0;
    if (!registered && !on_disk(reg, name)) {
        reply_unknown(req, reg, m, name, field);
        return -1;
    }
    *out = load_and_publish(req, app, m, name, path, registered, 0, field);
    return *out ? 0 : -1;
}

void app_adapter_release(app_adapter *ad)
{
    if (!ad)
        return;
    pthread_mutex_lock(&ad->reg->lock);
    app_adapter *drop = unref_locked(ad);
    pthread_mutex_unlock(&ad->reg->lock);
    free_version(drop);
}

void app_adapter_forget(struct app *app, const char *name)
{
    app_adapters *reg = &app->adapters;
    if (!reg->ready)
        return;
    pthread_mutex_lock(&reg->lock);
    struct app_adapter_entry *e = find_locked(reg, name);
    app_adapter *drop = e ? detach_locked(reg, e) : NULL;
    if (e && !e->registered)
        remove_locked(reg, e);
    pthread_mutex_unlock(&reg->lock);
    free_version(drop);
}

json_t *app_adapter_json(const app_adapter *ad)
{
    const adp_adapter *a = ad->a;
    json_t *j = json_pack("{s:s, s:s, s:I, s:s*}", "name", ad->name, "type", adp_type_name(a->cfg.type), "bytes",
                          (json_int_t)ad->bytes, "base_model_name_or_path", *a->cfg.base_model ? a->cfg.base_model : NULL);
    if (!j)
        return NULL;
    if (a->cfg.type == ADP_LORA) {
        json_t *mods = json_array();
        for (int mod = 0; mod < ADP_N_MODULES; mod++)
            if (a->cfg.targets & ADP_MODULE_BIT(mod))
                json_array_append_new(mods, json_string(adp_module_name((adp_module)mod)));
        json_object_set_new(j, "r", json_integer((json_int_t)a->cfg.r));
        json_object_set_new(j, "lora_alpha", json_real(a->cfg.lora_alpha));
        json_object_set_new(j, "use_rslora", json_boolean(a->cfg.use_rslora));
        json_object_set_new(j, "target_modules", mods);
    } else {
        json_object_set_new(j, "num_virtual_tokens", json_integer((json_int_t)a->cfg.num_virtual_tokens));
    }
    return j;
}

/* ---- routes ---- */

/* The generator, and the adapters being usable; otherwise replies. */
static app_model *generator(srv_req *req, struct app *app)
{
    return app_network_ready(req, app, APP_GENERATOR);
}

/* One listing row: what the registry knows of `name` (loaded or not). `self` is a reference
 * the caller holds, not counted as a use. */
static json_t *row_locked(app_adapters *reg, const char *name, const app_adapter *self)
{
    struct app_adapter_entry *e = find_locked(reg, name);
    json_t *j = e && e->cur ? app_adapter_json(e->cur) : json_pack("{s:s}", "name", name);
    if (j) {
        json_object_set_new(j, "path", json_string(e ? e->path : name));
        json_object_set_new(j, "loaded", json_boolean(e && e->cur));
        json_object_set_new(j, "in_use", json_integer(e && e->cur ? e->cur->refs - 1 - (e->cur == self) : 0));
    }
    return j;
}

json_t *app_adapters_list(struct app *app)
{
    app_adapters *reg = &app->adapters;
    json_t *names = reg->ready ? available(reg) : json_array(), *rows = json_array();
    if (!names || !rows) {
        json_decref(names);
        json_decref(rows);
        return NULL;
    }
    pthread_mutex_lock(&reg->lock);
    for (size_t i = 0; i < json_array_size(names); i++)
        json_array_append_new(rows, row_locked(reg, json_string_value(json_array_get(names, i)), NULL));
    pthread_mutex_unlock(&reg->lock);
    json_decref(names);
    return rows;
}

void h_adapters_list(srv_req *req, void *ctx)
{
    struct app *app = ctx;
    app_model *m = generator(req, app);
    if (!m)
        return;
    json_t *rows = app_adapters_list(app);
    pthread_mutex_lock(&app->adapters.lock);
    size_t bytes = app->adapters.bytes;
    pthread_mutex_unlock(&app->adapters.lock);
    if (rows)
        srv_reply_json(req, 200,
                       json_pack("{s:o, s:s, s:{s:I, s:I}}", "adapters", rows, "base_model", m->name, "cache", "bytes",
                                 (json_int_t)bytes, "budget", (json_int_t)app->adapters.budget));
    else
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
}

/* GET /adapters/{name}: loads it when needed, so the answer says whether it can be used. */
void h_adapters_get(srv_req *req, void *ctx)
{
    struct app *app = ctx;
    app_model *m = generator(req, app);
    app_adapter *ad;
    const char *name = srv_req_param(req, "name");
    if (!m || app_adapter_acquire(req, app, m, name, NULL, &ad) != 0)
        return;
    if (!ad) {
        srv_reply_error(req, SRV_E_NOT_FOUND, NULL, "'%s' is the base model, not an adapter", name);
        return;
    }
    pthread_mutex_lock(&app->adapters.lock);
    json_t *j = row_locked(&app->adapters, name, ad);
    pthread_mutex_unlock(&app->adapters.lock);
    if (j && !json_object_get(j, "type")) /* evicted between acquire and here: describe our version */
        json_object_update_new(j, app_adapter_json(ad));
    app_adapter_release(ad);
    if (j)
        srv_reply_json(req, 200, j);
    else
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
}

typedef struct {
    const char *name, *path;
} post_req;

static const srv_field post_fields[] = {
    {"name", SRV_F_STRING, SRV_FF_REQUIRED, offsetof(post_req, name), 0, 0, ADP_NAME_MAX, NULL},
    {"path", SRV_F_STRING, 0, offsetof(post_req, path), 0, 0, APP_ADAPTER_PATH_MAX - 1, NULL},
};

/* POST /adapters {"name", "path"?}: loads (or reloads) ADAPTERS_DIR/path as `name`. */
void h_adapters_post(srv_req *req, void *ctx)
{
    struct app *app = ctx;
    post_req in = {0};
    json_t *body = srv_req_json(req);
    if (!body || srv_validate(req, body, post_fields, 2, &in))
        return;
    app_model *m = generator(req, app);
    if (!m)
        return;
    if (!adp_valid_name(in.name) || !strcmp(in.name, m->name)) {
        srv_reply_error(req, SRV_E_INVALID_VALUE, "/name",
                        "adapter names match [A-Za-z0-9][A-Za-z0-9._-]{0,63} and differ from the base model's");
        return;
    }
    if (!app->adapters.ready || app->adapters.root_fd < 0) {
        srv_reply_error(req, SRV_E_INVALID_VALUE, NULL, "the adapters directory %s is unavailable",
                        app->cfg->adapters_dir);
        return;
    }
    const char *path = in.path ? in.path : in.name;
    app_adapter *ad = load_and_publish(req, app, m, in.name, path, 1, 1, "/path");
    if (!ad)
        return;
    json_t *j = app_adapter_json(ad);
    if (j) {
        json_object_set_new(j, "path", json_string(path));
        json_object_set_new(j, "loaded", json_true());
    }
    app_adapter_release(ad);
    srv_reply_json(req, 201, j);
}

/* DELETE /adapters/{name}: unloads and forgets a registration; the files stay, so a later
 * request by name reads ADAPTERS_DIR/NAME again. Requests using it finish on their version. */
void h_adapters_delete(srv_req *req, void *ctx)
{
    struct app *app = ctx;
    app_adapters *reg = &app->adapters;
    const char *name = srv_req_param(req, "name");
    app_model *m = generator(req, app);
    if (!m)
        return;
    if (!adp_valid_name(name)) {
        srv_reply_error(req, SRV_E_BAD_REQUEST, NULL, "adapter names match [A-Za-z0-9][A-Za-z0-9._-]{0,63}");
        return;
    }
    pthread_mutex_lock(&reg->lock);
    struct app_adapter_entry *e = reg->ready ? find_locked(reg, name) : NULL;
    int was_loaded = e && e->cur, in_use = was_loaded ? e->cur->refs - 1 : 0;
    app_adapter *drop = e ? detach_locked(reg, e) : NULL;
    if (e)
        remove_locked(reg, e);
    pthread_mutex_unlock(&reg->lock);
    free_version(drop);
    if (!e && !on_disk(reg, name)) {
        reply_unknown(req, reg, m, name, NULL);
        return;
    }
    srv_reply_json(req, 200, json_pack("{s:s, s:b, s:b, s:i}", "name", name, "deleted", 1, "was_loaded", was_loaded,
                                       "in_use", in_use));
}
