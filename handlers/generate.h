/*
 * generate.h — a generation in progress, shared by handlers/generate.c (the routes, which
 * begin sessions and answer in one reply) and handlers/generate_stream.c (the same sessions
 * streamed as server-sent events). Private to handlers/.
 */
#ifndef RAGD_HANDLERS_GENERATE_H
#define RAGD_HANDLERS_GENERATE_H

#include <jansson.h>
#include <stdint.h>

#include "app.h"
#include "sampler.h"

typedef enum { GEN_FINISH_LENGTH, GEN_FINISH_EOS, GEN_FINISH_STOP } gen_finish;

/* finish_reason as OpenAI names it ("length", "stop"). */
const char *gen_finish_openai(gen_finish f);

#define GEN_STOPPING 1 /* a step failed because the generator is stopping */
/* What a failed generation says, as a reply in full and as a stream's last event. */
#define GEN_SAYS_OUT_OF_MEMORY "out of memory for this generation"
#define GEN_SAYS_STOPPING "the server is shutting down"
#define GEN_SAYS_FAILED "generation failed"

/* One generation in progress: the prompt is prefilled when it begins, each gen_step yields
 * one token. Owns everything it points to, so a stream can outlive its request. */
typedef struct {
    app_model *m;
    app_adapter *ad;          /* a reference of our own, or NULL (the base model) */
    const adp_adapter *a;     /* ad->a, or NULL */
    gpt2_cache *kc;
    float *logits, *scratch;  /* logits of the next token; sampler scratch (2V) */
    int32_t *history;         /* prompt ids, then generated ids */
    float *logprobs;          /* of the generated ids, when wanted (0 otherwise) */
    int logprobs_wanted;      /* the reply shows them: greedy decoding computes them only then */
    size_t np, n, max_new;    /* prompt tokens, generated so far, budget */
    smp_rng rng;
    smp_params sp;
    json_t *stop;             /* a reference of our own */
    uint64_t seed;
    gen_finish finish;
    int done;
    int error;                /* why gen_step failed: an MDL_E* code, or GEN_STOPPING */
    int joined;               /* between its prefill and its last step: srv_batcher_join */
    int32_t eos_id;           /* the EOS token that ended it (GEN_FINISH_EOS), with its logprob */
    float eos_logprob;
    char *text;               /* generated text (bytes; may end mid-character) */
    size_t text_len;
} gen_session;

/* Produces the next token into *id (1), or finishes (0: s->finish says why; an EOS token,
 * which is not part of the text, is still reported in *id), or fails (-1). */
int gen_step(gen_session *s, int32_t *id);

/* The session takes no more decode steps: the batcher no longer waits for it. */
void gen_leave(gen_session *s);

/* Frees the session (NULL is fine). */
void gen_end(gen_session *s);

/* Decodes the generated ids into s->text. Returns 0 or -1 (out of memory). */
int gen_decode(gen_session *s);

/* The byte offset where any stop sequence first occurs in text, or -1. */
long gen_find_stop(json_t *stop, const char *text, size_t len);

/* One token as TGI describes it. */
json_t *gen_token_json(const app_model *m, int32_t id, float logprob, int special);

/* TGI's details, with the tokens when asked. */
json_t *gen_details_json(const gen_session *s, int with_tokens);

/* generated_text, with `prompt` in front unless it is NULL. */
json_t *gen_text_json(const gen_session *s, const char *prompt);

/* How a session is streamed. */
typedef struct {
    int openai;            /* OpenAI chunks and a final [DONE]; TGI events otherwise */
    int details;           /* TGI: details in the last event */
    const char *prompt;    /* TGI's return_full_text; NULL otherwise */
    const char *model;     /* OpenAI: the model named, as each chunk repeats it */
    const char *id;        /* OpenAI: the completion id (cmpl-REQUEST_ID) */
} gen_stream_opts;

/* Streams session s (taken over) as the reply, or replies with an error. */
void gen_stream_start(srv_req *req, gen_session *s, const gen_stream_opts *o);

#endif
