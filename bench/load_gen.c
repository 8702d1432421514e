/* load_gen.c — the HTTP load generator of the overload soak (bench/soak.sh), loopback only,
 * bounded in time.
 *
 * Open loop (RATE > 0): requests are scheduled at a fixed rate whatever the server does, and
 * each one's latency is measured from its scheduled time, so a server that falls behind
 * shows up as latency rather than as fewer requests (no coordinated omission). At most CONNS
 * are outstanding at once over keep-alive connections; a request due while all are busy waits
 * its turn on the client, its wait counted. Closed loop (RATE 0): CONNS clients each send the
 * next request when the last is answered, which measures capacity.
 *
 * Prints one JSON object: requests by outcome (2xx, 429, 503, 429/503 without Retry-After,
 * other 4xx, other 5xx, transport errors, due but never sent), the 2xx rate, and latency
 * percentiles of the 2xx (admitted) requests from their scheduled time, overall and for the
 * worst tenth of the run, and from the moment they were sent (the server's part, which a
 * client backlog does not inflate): p50, p99, and the p99 of each tenth of the run, to show
 * whether it grows.
 *   usage: load_gen URL BODY_FILE SECONDS CONNS RATE [API_KEY]
 * BODY_FILE "-" sends GETs; otherwise its contents are POSTed as JSON.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bench.h"

#define WINDOWS 10 /* the run is cut in tenths for the worst-window p99 */

typedef struct {
    CURL *easy;
    int busy;
    int retry_after;  /* the reply carried Retry-After */
    double scheduled; /* when the request was due */
    double sent;      /* when it was handed to a connection */
} slot;

typedef struct {
    double *v;
    size_t n, cap;
} series;

static int push(series *s, double x)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4096;
        double *p = realloc(s->v, cap * sizeof *p);
        if (!p)
            return -1;
        s->v = p;
        s->cap = cap;
    }
    s->v[s->n++] = x;
    return 0;
}

/* The q-quantile of s (sorts it); 0 when empty. */
static double quantile(series *s, double q)
{
    if (!s->n)
        return 0;
    qsort(s->v, s->n, sizeof *s->v, cmp_double);
    size_t i = (size_t)(q * (double)(s->n - 1) + 0.5);
    return s->v[i];
}

static size_t on_header(char *data, size_t size, size_t n, void *userdata)
{
    slot *sl = userdata;
    if (size * n >= 12 && strncasecmp(data, "Retry-After:", 12) == 0)
        sl->retry_after = 1;
    return size * n;
}

static size_t discard(char *data, size_t size, size_t n, void *userdata)
{
    (void)data;
    (void)userdata;
    return size * n;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *p = NULL;
    size_t cap = 0, n = 0, k;
    for (;;) {
        if (n == cap) {
            char *q = realloc(p, cap = cap ? cap * 2 : 4096);
            if (!q) {
                free(p);
                fclose(f);
                return NULL;
            }
            p = q;
        }
        if (!(k = fread(p + n, 1, cap - n, f)))
            break;
        n += k;
    }
    fclose(f);
    *len = n;
    return p;
}

static long parse_long(const char *s, long lo, long hi, const char *what)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "load_gen: %s must be an integer in [%ld, %ld], got '%s'\n", what, lo, hi, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: load_gen URL BODY_FILE SECONDS CONNS RATE [API_KEY]\n");
        return 2;
    }
    const char *url = argv[1];
    if (strncmp(url, "http://127.", 11) != 0 && strncmp(url, "http://localhost", 16) != 0 &&
        strncmp(url, "http://[::1]", 12) != 0) {
        fprintf(stderr, "load_gen: loopback URLs only (http://127.x, localhost, [::1])\n");
        return 2;
    }
    size_t body_len = 0;
    char *body = strcmp(argv[2], "-") ? read_file(argv[2], &body_len) : NULL;
    if (strcmp(argv[2], "-") && !body) {
        fprintf(stderr, "load_gen: cannot read %s\n", argv[2]);
        return 2;
    }
    double seconds = (double)parse_long(argv[3], 1, 86400, "SECONDS");
    size_t conns = (size_t)parse_long(argv[4], 1, 4096, "CONNS");
    double rate = (double)parse_long(argv[5], 0, 1000000, "RATE");
    char auth[512] = "";
    if (argc > 6)
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", argv[6]);

    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURLM *multi = curl_multi_init();
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Expect:");
    if (*auth)
        headers = curl_slist_append(headers, auth);
    slot *slots = calloc(conns, sizeof *slots);
    if (!multi || !headers || !slots) {
        fprintf(stderr, "load_gen: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < conns; i++) {
        CURL *e = slots[i].easy = curl_easy_init();
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, &slots[i]);
        curl_easy_setopt(e, CURLOPT_PRIVATE, &slots[i]);
        curl_easy_setopt(e, CURLOPT_TIMEOUT, 60L);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        if (body) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        }
    }

    unsigned long long sent = 0, done = 0, ok = 0, s429 = 0, s503 = 0, no_retry = 0, c4xx = 0, c5xx = 0,
                       transport = 0, not_sent = 0;
    series lat = {0}, served = {0}, window[WINDOWS] = {{0}}, served_window[WINDOWS] = {{0}};
    double t0 = now(), end = t0 + seconds, next = t0;
    size_t busy = 0;
    for (;;) {
        double t = now();
        /* Start whatever is due (open loop) or keep every client busy (closed loop). */
        while (t < end && busy < conns && (rate == 0 || next <= t)) {
            slot *sl = NULL;
            for (size_t i = 0; i < conns && !sl; i++)
                if (!slots[i].busy)
                    sl = &slots[i];
            sl->busy = 1;
            sl->retry_after = 0;
            sl->scheduled = rate > 0 ? next : t;
            sl->sent = t;
            next += rate > 0 ? 1.0 / rate : 0;
            curl_multi_add_handle(multi, sl->easy);
            busy++;
            sent++;
        }
        if (t >= end && busy == 0)
            break;
        int running;
        curl_multi_perform(multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            slot *sl;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&sl);
            double lat_s = now() - sl->scheduled;
            long status = 0;
            if (msg->data.result == CURLE_OK)
                curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
            done++;
            if (status == 0)
                transport++;
            else if (status >= 200 && status < 300) {
                ok++;
                /* Tenths of the run by scheduled time, and by send time for the latency from
                 * send (a client backlog sends late what was due early). */
                size_t w = (size_t)((sl->scheduled - t0) / seconds * WINDOWS), ws = (size_t)((sl->sent - t0) / seconds * WINDOWS);
                w = w < WINDOWS ? w : WINDOWS - 1;
                ws = ws < WINDOWS ? ws : WINDOWS - 1;
                double served_s = now() - sl->sent;
                if (push(&lat, lat_s) || push(&served, served_s) || push(&window[w], lat_s) ||
                    push(&served_window[ws], served_s)) {
                    fprintf(stderr, "load_gen: out of memory\n");
                    return 1;
                }
            } else if (status == 429 || status == 503) {
                status == 429 ? s429++ : s503++;
                no_retry += !sl->retry_after;
            } else if (status >= 500)
                c5xx++;
            else
                c4xx++;
            curl_multi_remove_handle(multi, msg->easy_handle);
            sl->busy = 0;
            busy--;
        }
        double wait = rate > 0 && busy < conns ? next - now() : 0.01;
        int wait_ms = wait <= 0 ? 0 : wait > 0.01 ? 10 : (int)(wait * 1000) + 1;
        curl_multi_poll(multi, NULL, 0, wait_ms, NULL);
    }
    /* Due by the end but never sent: the client had no free connection for them. */
    if (rate > 0 && next < end)
        not_sent = (unsigned long long)((end - next) * rate);
    double elapsed = now() - t0, worst = 0, p99_sent_by_tenth[WINDOWS];
    for (size_t w = 0; w < WINDOWS; w++) {
        double p = quantile(&window[w], 0.99);
        worst = p > worst ? p : worst;
        p99_sent_by_tenth[w] = quantile(&served_window[w], 0.99);
        free(window[w].v);
        free(served_window[w].v);
    }
    double p50 = quantile(&lat, 0.50), p99 = quantile(&lat, 0.99), max = lat.n ? lat.v[lat.n - 1] : 0;
    double p50_sent = quantile(&served, 0.50), p99_sent = quantile(&served, 0.99);
    free(served.v);
    printf("{\"mode\":\"%s\",\"seconds\":%.1f,\"conns\":%zu,\"rate\":%.0f,\"sent\":%llu,\"completed\":%llu,"
           "\"status_2xx\":%llu,\"status_429\":%llu,\"status_503\":%llu,\"retry_after_missing\":%llu,"
           "\"other_4xx\":%llu,\"other_5xx\":%llu,\"transport_errors\":%llu,\"not_sent\":%llu,"
           "\"ok_per_s\":%.1f,\"p50_ms\":%.1f,\"p99_ms\":%.1f,\"max_ms\":%.1f,\"p99_ms_worst_tenth\":%.1f,"
           "\"p50_ms_from_send\":%.1f,\"p99_ms_from_send\":%.1f,\"p99_ms_from_send_by_tenth\":[",
           rate > 0 ? "open" : "closed", elapsed, conns, rate, sent, done, ok, s429, s503, no_retry, c4xx, c5xx,
           transport, not_sent, (double)ok / elapsed, p50 * 1e3, p99 * 1e3, max * 1e3, worst * 1e3, p50_sent * 1e3,
           p99_sent * 1e3);
    for (size_t w = 0; w < WINDOWS; w++)
        printf("%s%.1f", w ? "," : "", p99_sent_by_tenth[w] * 1e3);
    printf("]}\n");
    free(lat.v);
    for (size_t i = 0; i < conns; i++)
        curl_easy_cleanup(slots[i].easy);
    free(slots);
    curl_slist_free_all(headers);
    curl_multi_cleanup(multi);
    curl_global_cleanup();
    free(body);
    return 0;
}
