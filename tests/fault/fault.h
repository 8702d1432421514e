/*
 * fault.h — test-only interposition of the C library, for the fault-injection suites
 * (tests/fault/). fault.c defines malloc, calloc, realloc, free and the aligned allocators,
 * write/pwrite/fsync/fdatasync, and the calls that name a path (open, openat, stat, lstat,
 * fstatat, statx, access, opendir, fopen, mkdir, unlink, rename, readlink, realpath ...) in the
 * test executable itself, so they replace libc's for our code and for every shared library
 * it uses (jansson, SQLite, libmicrohttpd). Linked only into the plain build: ASan brings its
 * own allocator.
 *
 * Allocation faults work as SQLite's test_malloc.c does: arm a countdown, run the operation,
 * and the Nth allocation made while armed returns NULL (only that one, or every one from the
 * Nth on when `persistent`). The shim also counts live blocks (successful allocations minus
 * frees) over the whole process, so a test compares the count before an operation and after
 * its cleanup to find leaks.
 *
 * I/O faults fail the Nth write (write, pwrite, pwrite64) on a regular file, or the Nth sync
 * (fsync, fdatasync) of a regular file or a directory, with a given errno; writes to pipes,
 * sockets and terminals pass through.
 *
 * Path calls are counted while counting is on, with a log of each call ("openat name
 * flags=0x..."), so a test proves that a rejected name reaches no filesystem call, or that a
 * call that did happen did not follow a symlink.
 *
 * A countdown (the nth call) counts only the calls of the thread that armed it, so ragd's own
 * threads (the store's indexer) may run beside the operation under test; a persistent fault
 * (that call and every later one: a full disk) fails every thread's calls.
 */
#ifndef RAGD_FAULT_H
#define RAGD_FAULT_H

#include <stddef.h>

/* ---- allocations ---- */

/* Fails the nth allocation from now (n >= 1); persistent: that one and every later one. */
void fault_alloc_arm(long n, int persistent);
/* The same, counting the allocations of every thread: for code that runs on threads the test
 * does not own (libmicrohttpd's), with the process otherwise idle so the count is the same
 * from one run to the next. */
void fault_alloc_arm_all_threads(long n, int persistent);
/* Stops failing. Returns how many allocations were attempted while armed. */
long fault_alloc_disarm(void);
/* 1 when the armed countdown reached zero (an allocation was failed) since the last arm. */
int fault_alloc_fired(void);
/* Live heap blocks in the whole process now. */
long fault_alloc_live(void);
/* Allocations failed on purpose since the process started. */
long fault_alloc_injected(void);
/* With RAGD_FAULT_LEAKS=1 in the environment: prints (and forgets) the blocks allocated while
 * armed that are still live, each with its stack, to find what a leak check counted. */
void fault_alloc_print_armed_live(void);

/* ---- writes and syncs ---- */

typedef enum { FAULT_IO_WRITE, FAULT_IO_SYNC, FAULT_IO_N_KINDS } fault_io_kind;

/* The nth call of `kind` from now on a regular file fails with errno `err` (persistent: and
 * every later one until disarmed). */
void fault_io_arm(fault_io_kind kind, long n, int err, int persistent);
/* Stops failing `kind`; returns how many calls of that kind were made while armed. */
long fault_io_disarm(fault_io_kind kind);
int fault_io_fired(fault_io_kind kind);
long fault_io_injected(void); /* I/O calls failed on purpose since the process started */

/* ---- path calls ---- */

/* Starts counting calls that name a path (and clears the log). */
void fault_fs_count(void);
/* Stops counting; returns the calls made since fault_fs_count. */
long fault_fs_stop(void);
/* The log of those calls, one per line ("lstat /tmp/x flags=0x100", "openat evil flags=0x..."
 * with control bytes in names shown as '?'), NUL-terminated (cut at its capacity). Valid until
 * the next fault_fs_count. */
const char *fault_fs_log(void);

#endif
