#include "harness.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
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

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

const char *it_testdata(const char *rel)
{
    static char path[4096];
    const char *shared = getenv("RAGD_SHARED");
    snprintf(path, sizeof path, "%s/testdata/%s", shared ? shared : "../shared", rel);
    return access(path, R_OK) == 0 ? path : NULL;
}

static void print_log(const it_server *s)
{
    char path[128], line[512];
    snprintf(path, sizeof path, "%s/stderr.log", s->dir);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f))
        fprintf(stderr, "  ragd: %s", line);
    if (f)
        fclose(f);
}

int it_start(it_server *s, const char *const *args, const char *const *env)
{
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "/tmp/ragd-it-XXXXXX");
    if (!mkdtemp(s->dir))
        return -1;
    char port_file[128], log[128];
    snprintf(port_file, sizeof port_file, "%s/port", s->dir);
    snprintf(log, sizeof log, "%s/stderr.log", s->dir);
    const char *bin = getenv("RAGD_BIN");
    const char *argv[64] = {bin ? bin : "build/ragd", "serve", "--listen", "127.0.0.1:0", "--port-file",
                            port_file, "--data-dir", s->dir};
    size_t n = 8;
    for (size_t i = 0; args && args[i] && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    s->pid = fork();
    if (s->pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 2);
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        for (size_t i = 0; env && env[i]; i++)
            putenv((char *)env[i]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 400; i++) { /* up to 20 s */
        FILE *f = fopen(port_file, "r");
        if (f) {
            int ok = fscanf(f, "%u", &s->port) == 1;
            fclose(f);
            if (ok) { /* listening; ready once /health says so (models load after) */
                it_response r = it_get(s, "/health");
                long status = r.status;
                it_free(&r);
                if (status == 200)
                    return 0;
            }
        }
        int status;
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            fprintf(stderr, "ragd exited during start-up (status %d)\n", status);
            print_log(s);
            s->pid = 0;
            return -1;
        }
        sleep_ms(50);
    }
    fprintf(stderr, "ragd did not write its port file\n");
    print_log(s);
    return -1;
}

int it_stop(it_server *s)
{
    if (s->pid <= 0)
        return -1;
    kill(s->pid, SIGTERM);
    int status = 0;
    for (int i = 0; i < 300; i++) { /* up to 15 s */
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            s->pid = 0;
            char cmd[128];
            snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
            if (system(cmd) != 0)
                fprintf(stderr, "could not remove %s\n", s->dir);
            if (!WIFEXITED(status)) {
                print_log(s);
                return -1;
            }
            return WEXITSTATUS(status);
        }
        sleep_ms(50);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, &status, 0);
    s->pid = 0;
    fprintf(stderr, "ragd did not stop within 15 s of SIGTERM\n");
    return -1;
}

typedef struct {
    char *p;
    size_t len;
} buf;

static size_t collect(char *data, size_t size, size_t n, void *userdata)
{
    buf *b = userdata;
    size_t add = size * n;
    char *p = realloc(b->p, b->len + add + 1);
    if (!p)
        return 0;
    memcpy(p + b->len, data, add);
    b->len += add;
    p[b->len] = '\0';
    b->p = p;
    return add;
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
        has_type |= strncasecmp(headers[i], "Content-Type", 12) == 0;
    }
    if (body && !has_type)
        h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:"); /* send bodies at once, no 100-continue round trip */
    char url[2300];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", s->port, path);
    buf b = {0}, hb = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &hb);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK)
        fprintf(stderr, "curl %s %s: %s\n", method, path, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    r.body = b.p ? b.p : calloc(1, 1);
    r.len = b.len;
    r.headers = hb.p ? hb.p : calloc(1, 1);
    r.json = json_loadb(r.body, r.len, 0, NULL);
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

char *it_raw(const it_server *s, const char *bytes, size_t len, int timeout_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    buf b = {0};
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0)
            close(fd);
        return calloc(1, 1);
    }
    size_t sent = 0;
    while (sent < len) {
        ssize_t w = send(fd, bytes + sent, len - sent, MSG_NOSIGNAL);
        if (w <= 0)
            break; /* the server may close early (e.g. after a 413): read what it said */
        sent += (size_t)w;
    }
    struct pollfd p = {fd, POLLIN, 0};
    char chunk[4096];
    while (poll(&p, 1, timeout_ms) > 0) {
        ssize_t r = recv(fd, chunk, sizeof chunk, 0);
        if (r <= 0)
            break;
        collect(chunk, 1, (size_t)r, &b);
    }
    close(fd);
    return b.p ? b.p : calloc(1, 1);
}

int it_header(const it_response *r, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    for (const char *line = r->headers; line && *line;) {
        if (strncasecmp(line, name, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ')
                v++;
            size_t len = strcspn(v, "\r\n");
            snprintf(out, cap, "%.*s", (int)len, v);
            return 1;
        }
        const char *next = strchr(line, '\n');
        line = next ? next + 1 : NULL;
    }
    return 0;
}

int it_is_error(const it_response *r, long status, const char *code, const char *field)
{
    const char *got_code = json_string_value(json_object_get(r->json, "code"));
    const char *got_field = json_string_value(json_object_get(r->json, "field"));
    const char *rid = json_string_value(json_object_get(r->json, "request_id"));
    char hdr[64] = "";
    it_header(r, "X-Request-Id", hdr, sizeof hdr);
    int ok = r->status == status && got_code && !strcmp(got_code, code) &&
             json_is_string(json_object_get(r->json, "error")) &&
             json_is_string(json_object_get(r->json, "error_type")) && rid && !strcmp(rid, hdr) &&
             (field ? got_field && !strcmp(got_field, field) : 1);
    if (!ok)
        fprintf(stderr, "expected %ld %s %s, got %ld: %.300s\n", status, code, field ? field : "", r->status, r->body);
    return ok;
}
