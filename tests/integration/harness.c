#include "harness.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define START_DEADLINE_MS 30000
#define STOP_DEADLINE_MS 15000

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct {
    char *p;
    size_t len;
} buf;

/* Appends to a growing buffer, keeping it NUL-terminated. Returns 0 when out of memory. */
static int buf_add(buf *b, const char *data, size_t n)
{
    char *p = realloc(b->p, b->len + n + 1);
    if (!p)
        return 0;
    memcpy(p + b->len, data, n);
    b->len += n;
    p[b->len] = '\0';
    b->p = p;
    return 1;
}

static char *buf_take(buf *b) { return b->p ? b->p : calloc(1, 1); }

char *it_testdata(const char *rel)
{
    const char *shared = getenv("RAGD_SHARED");
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/testdata/%s", shared && *shared ? shared : "../shared", rel);
    if (n < 0 || (size_t)n >= sizeof path || access(path, R_OK) != 0)
        return NULL;
    return strdup(path);
}

void it_source_path(const char *rel, char *out, size_t cap)
{
    const char *root = getenv("RAGD_SOURCE_ROOT");
    snprintf(out, cap, "%s/%s", root && *root ? root : ".", rel);
}

/* ------------------------------------------------------------------ the process */

static void print_log(const it_server *s)
{
    char path[128], line[1024];
    snprintf(path, sizeof path, "%s/stderr.log", s->dir);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f))
        fprintf(stderr, "  ragd: %s", line);
    if (f)
        fclose(f);
}

int it_log_contains(const it_server *s, const char *file, const char *needle)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", s->dir, file);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    buf b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_add(&b, chunk, n);
    fclose(f);
    int found = b.p && strstr(b.p, needle) != NULL;
    free(b.p);
    return found;
}

/* Records the exit of a reaped child. */
static void reaped(it_server *s, int status)
{
    s->pid = 0;
    s->exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int it_wait_exit(it_server *s, int timeout_ms)
{
    for (long end = now_ms() + timeout_ms; s->pid > 0;) {
        int status;
        if (waitpid(s->pid, &status, WNOHANG) == s->pid)
            reaped(s, status);
        else if (now_ms() > end)
            return -1;
        else
            sleep_ms(20);
    }
    return 0;
}

int it_spawn(it_server *s, const char *const *args, const char *const *env)
{
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "/tmp/ragd-it-XXXXXX");
    if (!mkdtemp(s->dir)) {
        perror("mkdtemp");
        return -1;
    }
    char log[128], out_log[128];
    snprintf(s->port_file, sizeof s->port_file, "%s/port", s->dir);
    snprintf(log, sizeof log, "%s/stderr.log", s->dir);
    snprintf(out_log, sizeof out_log, "%s/stdout.log", s->dir);
    const char *bin = getenv("RAGD_BIN");
    const char *argv[64] = {bin ? bin : "build/ragd", "serve", "--listen", "127.0.0.1:0", "--port-file",
                            s->port_file, "--data-dir", s->dir};
    size_t n = 8;
    for (size_t i = 0; args && args[i] && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    fflush(NULL);
    s->pid = fork();
    if (s->pid < 0) {
        perror("fork");
        return -1;
    }
    if (s->pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644), devnull = open("/dev/null", O_RDONLY);
        int out = open(out_log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || out < 0 || devnull < 0 || dup2(fd, 2) < 0 || dup2(out, 1) < 0 || dup2(devnull, 0) < 0)
            _exit(126);
        for (size_t i = 0; env && env[i]; i++)
            putenv((char *)env[i]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    for (long end = now_ms() + START_DEADLINE_MS; now_ms() < end; sleep_ms(20)) {
        FILE *f = fopen(s->port_file, "r"); /* written atomically (temp file + rename) */
        if (f) {
            int ok = fscanf(f, "%u", &s->port) == 1 && s->port > 0;
            fclose(f);
            if (ok)
                return 0;
        }
        int status;
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            reaped(s, status);
            return 1;
        }
    }
    fprintf(stderr, "ragd wrote no port file within %d ms\n", START_DEADLINE_MS);
    print_log(s);
    return -1;
}

int it_start(it_server *s, const char *const *args, const char *const *env)
{
    int rc = it_spawn(s, args, env);
    if (rc == 1)
        fprintf(stderr, "ragd exited during start-up (status %d)\n", s->exit_status);
    /* Listening; ready once /health says so (models load after the port is bound). */
    for (long end = now_ms() + START_DEADLINE_MS; rc == 0; sleep_ms(20)) {
        it_response r = it_get(s, "/health");
        long status = r.status;
        it_free(&r);
        if (status == 200)
            return 0;
        if (now_ms() > end || it_wait_exit(s, 0) == 0 || s->pid == 0) {
            fprintf(stderr, "ragd is not healthy (last /health status %ld)\n", status);
            break;
        }
    }
    print_log(s);
    return -1;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int it_remove_tree(const char *dir)
{
    if (nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0)
        return 0;
    fprintf(stderr, "could not remove %s\n", dir);
    return -1;
}

int it_stop(it_server *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        if (it_wait_exit(s, STOP_DEADLINE_MS) != 0) {
            fprintf(stderr, "ragd did not stop within %d ms of SIGTERM; killing it\n", STOP_DEADLINE_MS);
            kill(s->pid, SIGKILL);
            int status;
            waitpid(s->pid, &status, 0);
            s->pid = 0;
            s->exit_status = -1;
        }
    }
    if (s->exit_status != 0) {
        fprintf(stderr, "ragd exited with status %d\n", s->exit_status);
        print_log(s);
    }
    if (s->dir[0])
        it_remove_tree(s->dir);
    s->dir[0] = '\0';
    return s->exit_status;
}

int it_run(const char *const *args, char *out, size_t cap)
{
    const char *argv[32] = {getenv("RAGD_BIN") ? getenv("RAGD_BIN") : "build/ragd"};
    size_t n = 1;
    for (size_t i = 0; args && args[i] && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    int p[2];
    if (pipe(p) != 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 1);
        dup2(p[1], 2);
        close(p[0]);
        close(p[1]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    size_t got = 0;
    ssize_t r;
    while (pid > 0 && got + 1 < cap && (r = read(p[0], out + got, cap - 1 - got)) > 0)
        got += (size_t)r;
    out[got] = '\0';
    close(p[0]);
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ------------------------------------------------------------------ requests */

static size_t collect(char *data, size_t size, size_t n, void *userdata)
{
    return buf_add(userdata, data, size * n) ? size * n : 0;
}

it_response it_request(const it_server *s, const char *method, const char *path, const char *const *headers,
                       const char *body, size_t len)
{
    it_response r = {0};
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    int has_type = 0;
    for (size_t i = 0; headers && headers[i]; i++) {
        h = curl_slist_append(h, headers[i]);
        has_type |= strncasecmp(headers[i], "Content-Type:", 13) == 0;
    }
    if (body && !has_type)
        h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:"); /* send bodies at once, no 100-continue round trip */
    size_t url_len = strlen(path) + 64;
    char *url = malloc(url_len);
    buf b = {0}, hb = {0};
    if (!c || !h || !url) {
        fprintf(stderr, "it_request: out of memory\n");
    } else {
        snprintf(url, url_len, "http://127.0.0.1:%u%s", s->port, path);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collect);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, &hb);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
        if (!strcmp(method, "HEAD"))
            curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        if (body) {
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        }
        CURLcode rc = curl_easy_perform(c);
        if (rc != CURLE_OK)
            fprintf(stderr, "curl %s %.80s: %s\n", method, path, curl_easy_strerror(rc));
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    }
    free(url);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    r.len = b.len;
    r.body = buf_take(&b);
    r.headers = buf_take(&hb);
    r.json = json_loadb(r.body, r.len, JSON_REJECT_DUPLICATES, NULL);
    return r;
}

it_response it_post(const it_server *s, const char *path, const char *json)
{
    return it_request(s, "POST", path, NULL, json, strlen(json));
}

it_response it_get(const it_server *s, const char *path) { return it_request(s, "GET", path, NULL, NULL, 0); }

void it_free(it_response *r)
{
    free(r->body);
    free(r->headers);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

int it_header(const it_response *r, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    for (const char *line = r->headers; line && *line;) {
        if (strncasecmp(line, name, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ')
                v++;
            snprintf(out, cap, "%.*s", (int)strcspn(v, "\r\n"), v);
            return 1;
        }
        const char *next = strchr(line, '\n');
        line = next ? next + 1 : NULL;
    }
    return 0;
}

/* DESIGN §4.7: the TEI error_type of each code (the contract, not a copy of errors.c). */
static const char *const error_types[][2] = {
    {"invalid_json", "Validation"},   {"bad_request", "Validation"},     {"unauthorized", "Auth"},
    {"not_found", "NotFound"},         {"method_not_allowed", "Validation"}, {"payload_too_large", "Validation"},
    {"batch_too_large", "Validation"}, {"input_too_long", "Validation"},  {"unsupported_media_type", "Validation"},
    {"missing_field", "Validation"},   {"invalid_type", "Validation"},    {"out_of_range", "Validation"},
    {"invalid_value", "Validation"},   {"empty_input", "Empty"},          {"tokenizer_error", "Tokenizer"},
    {"overloaded", "Overloaded"},      {"internal_error", "Backend"},     {"model_not_loaded", "Unhealthy"},
    {"shutting_down", "Unhealthy"},    {"out_of_memory", "Backend"},      {"already_exists", "Validation"},
    {"store_busy", "Overloaded"},      {"storage_full", "Backend"},       {"conflict", "Validation"},
    {"indexing_behind", "Overloaded"},
};

static const char *error_type_of(const char *code)
{
    for (size_t i = 0; i < sizeof error_types / sizeof error_types[0]; i++)
        if (!strcmp(error_types[i][0], code))
            return error_types[i][1];
    return NULL;
}

static int same(const char *a, const char *b) { return a && b && !strcmp(a, b); }

int it_is_error(const it_response *r, long status, const char *code, const char *field)
{
    const char *got_field = json_string_value(json_object_get(r->json, "field"));
    char hdr[128] = "", ctype[128] = "";
    it_header(r, "X-Request-Id", hdr, sizeof hdr);
    it_header(r, "Content-Type", ctype, sizeof ctype);
    int ok = r->status == status && json_is_object(r->json) &&
             same(json_string_value(json_object_get(r->json, "code")), code) &&
             same(json_string_value(json_object_get(r->json, "error_type")), error_type_of(code)) &&
             json_string_length(json_object_get(r->json, "error")) > 0 &&
             same(json_string_value(json_object_get(r->json, "request_id")), hdr) &&
             (field ? same(got_field, field) : got_field == NULL) && !strncmp(ctype, "application/json", 16);
    if (!ok)
        fprintf(stderr, "expected %ld %s field=%s (id %s), got %ld: %.300s\n", status, code, field ? field : "-",
                hdr, r->status, r->body);
    return ok;
}

int it_is_openai_error(const it_response *r, long status, const char *code)
{
    json_t *e = json_object_get(r->json, "error");
    int ok = r->status == status && same(json_string_value(json_object_get(e, "code")), code) &&
             json_string_length(json_object_get(e, "message")) > 0 && json_is_string(json_object_get(e, "type"));
    if (!ok)
        fprintf(stderr, "expected OpenAI error %ld %s, got %ld: %.300s\n", status, code, r->status, r->body);
    return ok;
}

double it_metric(const char *text, const char *name)
{
    char pat[128];
    snprintf(pat, sizeof pat, "\n%s ", name);
    const char *at = text ? strstr(text, pat) : NULL;
    return at ? strtod(at + strlen(pat), NULL) : -1;
}

int it_inflight_reaches(const it_server *s, double want)
{
    for (int i = 0; i < 150; i++, sleep_ms(20)) {
        it_response r = it_get(s, "/metrics");
        double v = it_metric(r.body, "ragd_http_requests_in_flight");
        it_free(&r);
        if (v == want)
            return 1;
    }
    fprintf(stderr, "in-flight gauge never reached %g\n", want);
    return 0;
}

int it_probe(const it_server *s)
{
    it_response r = it_post(s, "/tokenize", "{\"inputs\":\"Hello world\"}");
    json_t *toks = json_array_get(r.json, 0);
    int ok = r.status == 200 && json_array_size(r.json) == 1 && json_array_size(toks) == 2 &&
             json_integer_value(json_object_get(json_array_get(toks, 0), "id")) == 15496 &&
             json_integer_value(json_object_get(json_array_get(toks, 1), "id")) == 995;
    if (!ok)
        fprintf(stderr, "probe failed: %ld %.300s\n", r.status, r.body);
    it_free(&r);
    return ok;
}

/* ------------------------------------------------------------------ raw sockets */

int it_open(const it_server *s, const char *bytes, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("it_open");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    for (size_t sent = 0; sent < len;) {
        ssize_t w = send(fd, bytes + sent, len - sent, MSG_NOSIGNAL);
        if (w <= 0)
            break; /* the server may close early (e.g. after a 413): the caller reads what it said */
        sent += (size_t)w;
    }
    return fd;
}

char *it_raw(const it_server *s, const char *bytes, size_t len, int timeout_ms, it_raw_info *info)
{
    it_raw_info local;
    if (!info)
        info = &local;
    memset(info, 0, sizeof *info);
    buf b = {0};
    int fd = it_open(s, bytes, len);
    long t0 = now_ms();
    struct pollfd p = {fd, POLLIN, 0};
    char chunk[4096];
    while (fd >= 0 && poll(&p, 1, timeout_ms) > 0) {
        ssize_t r = recv(fd, chunk, sizeof chunk, 0);
        if (r <= 0) {
            info->closed = 1;
            break;
        }
        buf_add(&b, chunk, (size_t)r);
    }
    info->ms = now_ms() - t0;
    if (fd >= 0)
        close(fd);
    return buf_take(&b);
}

long it_raw_status(const char *resp)
{
    long status = 0;
    return sscanf(resp, "HTTP/1.%*[01] %ld", &status) == 1 ? status : 0;
}
