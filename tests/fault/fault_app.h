/*
 * fault_app.h — ragd in process for the fault suites: the real route table, store, jobs
 * store, generator (../shared's gpt2-names-makemore, when present) and adapter registry in a
 * temporary data directory, with requests run through srv_dispatch_detached exactly as the
 * daemon runs them (routing, body cap, JSON, validation, handler), as tests/fuzz does.
 */
#ifndef RAGD_FAULT_APP_H
#define RAGD_FAULT_APP_H

#include <stddef.h>

#include "app.h"

typedef struct {
    struct app app;
    srv_config cfg;
    srv_daemon_config dcfg;
    char dir[64];           /* the data directory; adapters in dir/adapters */
    char adapters[96];
} fault_app;

/* Opens it all in a new temporary directory. with_generator: also load the generator
 * (and with it the adapter registry); fails when ../shared is absent. 0 or -1 (printed). */
int fault_app_open(fault_app *f, int with_generator);
/* Closes everything and removes the directory. */
void fault_app_close(fault_app *f);

typedef struct {
    unsigned status;
    char code[40];          /* the error body's "code" ("" for a success or no code) */
    char *body;             /* heap (free) */
} fault_reply;

/* One request (status and body; code stays ""). Returns 0, or -1 when even the detached
 * reply could not be allocated (status filled, body NULL). */
int fault_app_request(fault_app *f, const char *method, const char *path, const char *body, fault_reply *out);
/* Fills r->code from the body: run it with faults disarmed. */
void fault_reply_parse(fault_reply *r);

/* How a streamed reply (server-sent events, "data:" lines) compares with the fault-free
 * stream `ref`. An event counts once its blank line has come: a client discards the part
 * of an event a cut connection leaves (the SSE rule), so a trailing part is only noted. */
typedef enum {
    FAULT_SSE_WHOLE,  /* every event of `ref`, the same (OpenAI's "id" and "created" aside) */
    FAULT_SSE_FAILED, /* the first events of `ref`, then the stream's out-of-memory error event, last */
    FAULT_SSE_CUT,    /* the first events of `ref`, then nothing (with `trailing`: part of one) */
    FAULT_SSE_BAD     /* anything else (`why` says what) */
} fault_sse;
/* `openai` picks the error event's shape: OpenAI's {"error":{"message","type","code"}},
 * TGI's {"error":str,"error_type":str}; either must say the generation ran out of memory,
 * the only failure an allocation fault may cause. Run it with faults disarmed. */
fault_sse fault_sse_compare(const char *body, const char *ref, int openai, int *trailing, char *why, size_t cap);
/* 1 when two JSON texts are equal but for the top-level keys that change from request to
 * request ("id" and "created" of OpenAI's completions, "time_ms" of a search). */
int fault_json_same(const char *a, const char *b);

/* The suite's last check, once everything is closed: the live heap blocks are back to
 * `baseline` and the suite injected some faults (`injected`, printed under `suite`). */
void fault_expect_all_freed(long baseline, const char *suite, long injected);

/* Waits (up to 30 s) until the store's indexer is idle, every collection's tail emptied and
 * committed, so the heap holds still between operations. */
void fault_app_settle(fault_app *f);

/* Removes a directory tree (files and directories, never following a symlink). */
void fault_rmtree(const char *dir);

#endif
