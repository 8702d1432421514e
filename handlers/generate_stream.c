/* generate_stream.c — generations streamed as server-sent events, one per token, in TGI's
 * shape (/generate_stream) or OpenAI's (/v1/completions with "stream": true).
 *
 * The stream owns its session, which a thread of its own (the pump) steps and formats, a few
 * events ahead of what MHD has taken: the HTTP thread that serves the connection may serve
 * other streams too, and waiting on it would keep them out of each other's decode batches.
 * When the client goes away MHD stops asking for more and stream_done stops the pump, which
 * cancels the generation. OpenAI's text is held back while it may still become a stop
 * sequence or the rest of a character, so the streamed text equals the text without
 * streaming. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "generate.h"
#include "json_util.h"
#include "json_watch.h"
#include "log.h"

#define STREAM_AHEAD 1024 /* bytes of events the pump may have ready before MHD takes them */

/* The last event of a stream whose generation failed, by cause, in each API's shape, saying
 * what the same failure says as a reply in full (the words of generate.h; the codes and
 * TGI's error types of server/errors.c). Constant, so a stream that ran out of memory still
 * ends with it rather than silently short (a 200 whose events stop is a finished generation
 * to a client that does not check for the last one). */
enum { FAILED, OUT_OF_MEMORY, STOPPING };
#define TGI_ERROR(message, type) "data:{\"error\":\"" message "\",\"error_type\":\"" type "\"}\n\n"
#define OPENAI_ERROR(message, code)                                                                               \
    "data: {\"error\":{\"message\":\"" message "\",\"type\":\"server_error\",\"param\":null,\"code\":\"" code "\"}}\n\n"
static const char tgi_failed[] = TGI_ERROR(GEN_SAYS_FAILED, "Backend");
static const char tgi_out_of_memory[] = TGI_ERROR(GEN_SAYS_OUT_OF_MEMORY, "Backend");
static const char tgi_stopping[] = TGI_ERROR(GEN_SAYS_STOPPING, "Unhealthy");
static const char openai_failed[] = OPENAI_ERROR(GEN_SAYS_FAILED, "internal_error");
static const char openai_out_of_memory[] = OPENAI_ERROR(GEN_SAYS_OUT_OF_MEMORY, "out_of_memory");
static const char openai_stopping[] = OPENAI_ERROR(GEN_SAYS_STOPPING, "shutting_down");
static const char *const error_events[3][2] = {
    [FAILED] = {tgi_failed, openai_failed},
    [OUT_OF_MEMORY] = {tgi_out_of_memory, openai_out_of_memory},
    [STOPPING] = {tgi_stopping, openai_stopping},
};

typedef struct {
    gen_session *s;
    int openai;          /* OpenAI chunks and a final [DONE]; TGI events otherwise */
    int details, finished; /* finished: the last event is queued */
    char *prompt;        /* TGI's return_full_text; NULL otherwise */
    size_t index;        /* TGI: events so far */
    char *model;         /* OpenAI: the model named, as each chunk repeats it */
    json_int_t created;
    size_t sent;         /* OpenAI: bytes of s->text sent so far */
    char id[48];         /* OpenAI's completion id (cmpl-REQUEST_ID); the request id for TGI */
    pthread_t pump;
    pthread_mutex_t lock; /* guards what follows */
    pthread_cond_t moved; /* events queued, or taken, or the stream cancelled */
    int pumping, cancelled;
    char *pending;       /* formatted events not yet taken by MHD */
    size_t len, off, cap;
    const char *error;   /* the generation failed: this event follows the pending ones */
    size_t error_off;    /* bytes of it taken */
} gen_stream;

static void stream_done(void *ctx)
{
    gen_stream *st = ctx;
    pthread_mutex_lock(&st->lock);
    st->cancelled = 1;
    pthread_cond_broadcast(&st->moved);
    pthread_mutex_unlock(&st->lock);
    if (st->pumping)
        pthread_join(st->pump, NULL); /* after the step under way, if any */
    if (!st->finished)
        srv_log(SRV_LOG_INFO, "generation cancelled: the client went away", "request_id=%s generated=%zu",
                st->id + (st->openai ? 5 : 0), st->s->n);
    gen_end(st->s);
    pthread_mutex_destroy(&st->lock);
    pthread_cond_destroy(&st->moved);
    free(st->prompt);
    free(st->model);
    free(st->pending);
    free(st);
}

/* Queues "data:<ev>\n\n" (OpenAI: "data: <ev>\n\n"; `ev` is stolen) or, with ev NULL, the
 * raw event `raw`, after what is still pending. Runs on the pump. */
static int stream_push(gen_stream *st, json_t *ev, const char *raw)
{
    char *text = ev ? jsonw_dumps(ev, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(ev);
    const char *body = ev ? text : raw, *lead = st->openai ? "data: " : "data:";
    if (!body)
        return -1;
    size_t n = strlen(body), ll = strlen(lead);
    pthread_mutex_lock(&st->lock);
    if (st->off == st->len)
        st->off = st->len = 0;
    size_t need = st->len + ll + n + 2;
    char *p = need > st->cap ? realloc(st->pending, need) : st->pending;
    if (p) {
        st->pending = p, st->cap = need > st->cap ? need : st->cap;
        memcpy(p + st->len, lead, ll);
        memcpy(p + st->len + ll, body, n);
        memcpy(p + st->len + ll + n, "\n\n", 2);
        st->len = need;
        pthread_cond_broadcast(&st->moved);
    }
    pthread_mutex_unlock(&st->lock);
    free(text);
    return p ? 0 : -1;
}

/* TGI: one event per token; the last carries generated_text and details. */
static int tgi_event(gen_stream *st, int32_t id, int rc)
{
    gen_session *s = st->s;
    int last = rc == 0 || s->done;
    if (last && gen_decode(s) != 0)
        return -1;
    json_t *token = gen_token_json(s->m, id, rc > 0 ? s->logprobs[s->n - 1] : 0.0f, rc == 0);
    st->finished = last;
    return stream_push(st,
                       json_pack("{s:I, s:o, s:o, s:o}", "index", (json_int_t)++st->index, "token", token,
                                 "generated_text", last ? gen_text_json(s, st->prompt) : json_null(), "details",
                                 last && st->details ? gen_details_json(s, 0) : json_null()),
                       NULL);
}

/* How many bytes at the end of text[0, len) begin a UTF-8 character whose other bytes are
 * still to come (0-3): a token may end inside a character, and a chunk of text must not. */
static size_t utf8_unfinished(const char *text, size_t len)
{
    for (size_t i = 1; i <= 3 && i <= len; i++) {
        unsigned char c = (unsigned char)text[len - i];
        if (c >= 0x80 && c <= 0xBF)
            continue; /* a continuation byte: look further back for its lead */
        size_t need = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xC2 && c <= 0xDF ? 2 : 1;
        return need > i ? i : 0;
    }
    return 0;
}

/* The length of the longest tail of text[0, len) that is the start of a stop sequence. */
static size_t stop_prefix_tail(json_t *stop, const char *text, size_t len)
{
    size_t longest = 0;
    for (size_t i = 0; stop && i < json_array_size(stop); i++) {
        const char *s = json_string_value(json_array_get(stop, i));
        size_t sl = json_string_length(json_array_get(stop, i));
        for (size_t k = (sl - 1 < len ? sl - 1 : len); k > longest; k--)
            if (!memcmp(text + len - k, s, k)) {
                longest = k;
                break;
            }
    }
    return longest;
}

/* The bytes of the text that can be sent: once finished, all of it up to the stop sequence
 * (which OpenAI leaves out, as the answer without streaming does); before that, not a tail
 * that may still become a stop sequence or the rest of a character. */
static size_t openai_releasable(const gen_session *s)
{
    if (s->finish == GEN_FINISH_STOP) {
        long at = gen_find_stop(s->stop, s->text, s->text_len);
        return at >= 0 ? (size_t)at : s->text_len;
    }
    if (s->done)
        return s->text_len;
    size_t n = s->text_len - utf8_unfinished(s->text, s->text_len);
    return n - stop_prefix_tail(s->stop, s->text, n);
}

/* OpenAI: one chunk per token with the text it releases; the last carries finish_reason and
 * is followed by [DONE]. */
static int openai_chunk(gen_stream *st)
{
    gen_session *s = st->s;
    if (gen_decode(s) != 0)
        return -1;
    size_t upto = openai_releasable(s);
    if (upto < st->sent) /* never taken back */
        upto = st->sent;
    int last = s->done;
    json_t *ev = json_pack("{s:s, s:s, s:I, s:s, s:[{s:o, s:i, s:n, s:s?}]}", "id", st->id, "object",
                           "text_completion", "created", st->created, "model", st->model, "choices", "text",
                           srv_json_string_lossy(s->text + st->sent, upto - st->sent), "index", 0, "logprobs",
                           "finish_reason", last ? gen_finish_openai(s->finish) : NULL);
    json_t *choice = json_array_get(json_object_get(ev, "choices"), 0);
    if (ev && !last && json_object_set_new(choice, "finish_reason", json_null())) { /* s? left it out */
        json_decref(ev);
        ev = NULL;
    }
    st->sent = upto;
    st->finished = last;
    return stream_push(st, ev, NULL) || (last && stream_push(st, NULL, "[DONE]")) ? -1 : 0;
}

/* Steps the session and queues its events until the last, or until the stream is
 * cancelled, staying at most STREAM_AHEAD bytes ahead of MHD. */
static void *stream_pump(void *ctx)
{
    gen_stream *st = ctx;
    for (;;) {
        pthread_mutex_lock(&st->lock);
        while (!st->cancelled && st->len - st->off >= STREAM_AHEAD)
            pthread_cond_wait(&st->moved, &st->lock);
        int stop = st->cancelled || st->finished;
        pthread_mutex_unlock(&st->lock);
        if (stop)
            break;
        int32_t id;
        int rc = gen_step(st->s, &id), cause = -1;
        if (rc < 0)
            cause = st->s->error == MDL_ENOMEM ? OUT_OF_MEMORY : st->s->error == GEN_STOPPING ? STOPPING : FAILED;
        else if ((st->openai ? openai_chunk(st) : tgi_event(st, id, rc)) != 0)
            cause = OUT_OF_MEMORY; /* an event could not be made */
        if (cause >= 0) { /* the error event needs no memory: stream_next sends it last */
            pthread_mutex_lock(&st->lock);
            st->error = error_events[cause][st->openai];
            pthread_mutex_unlock(&st->lock);
            st->finished = 1;
        }
    }
    /* The session takes no more steps, so the batcher need not wait for it. */
    gen_leave(st->s);
    pthread_mutex_lock(&st->lock);
    st->pumping = st->pumping ? 2 : 0; /* 2: ended, still to be joined */
    pthread_cond_broadcast(&st->moved);
    pthread_mutex_unlock(&st->lock);
    return NULL;
}

/* MHD's side: waits for the pump's next events and hands them over; 0 once the last is. */
static long stream_next(void *ctx, char *buf, size_t cap)
{
    gen_stream *st = ctx;
    pthread_mutex_lock(&st->lock);
    while (st->off == st->len && st->pumping == 1)
        pthread_cond_wait(&st->moved, &st->lock);
    size_t n = st->len - st->off < cap ? st->len - st->off : cap;
    if (n) {
        memcpy(buf, st->pending + st->off, n);
        st->off += n;
    } else if (st->error) { /* the pump has ended: nothing more is pending */
        size_t left = strlen(st->error) - st->error_off;
        n = left < cap ? left : cap;
        memcpy(buf, st->error + st->error_off, n);
        st->error_off += n;
    }
    pthread_cond_broadcast(&st->moved);
    pthread_mutex_unlock(&st->lock);
    return (long)n;
}

void gen_stream_start(srv_req *req, gen_session *s, const gen_stream_opts *o)
{
    gen_stream *st = calloc(1, sizeof *st);
    if (st) {
        st->openai = o->openai;
        st->details = o->details;
        st->prompt = o->prompt ? strdup(o->prompt) : NULL;
        st->model = o->model ? strdup(o->model) : NULL;
        st->created = (json_int_t)time(NULL);
        snprintf(st->id, sizeof st->id, "%s", o->id ? o->id : srv_req_id(req));
        if ((o->prompt && !st->prompt) || (o->model && !st->model)) {
            free(st->prompt);
            free(st->model);
            free(st);
            st = NULL;
        }
    }
    if (st) {
        st->s = s;
        pthread_mutex_init(&st->lock, NULL);
        pthread_cond_init(&st->moved, NULL);
        st->pumping = 1;
        if (pthread_create(&st->pump, NULL, stream_pump, st) != 0) {
            st->pumping = 0;
            st->finished = 1; /* nothing was cancelled */
            stream_done(st);
            st = NULL, s = NULL;
        }
    }
    if (!st) {
        gen_end(s);
        srv_reply_error(req, SRV_E_OUT_OF_MEMORY, NULL, "out of memory");
        return;
    }
    srv_reply_stream(req, "text/event-stream", stream_next, stream_done, st);
}
