/* fault.c — the interposition shim behind fault.h. Each replaced function does its
 * bookkeeping and then calls the real one: glibc's allocator through its __libc_* entry
 * points (so no dlsym runs inside malloc), everything else through dlsym(RTLD_NEXT). */
/* Both names of each 64-bit call are defined here (pwrite and pwrite64, ...), so the
 * headers must not rename one to the other. */
#undef _FILE_OFFSET_BITS
#include "fault.h"

#include <dirent.h>
#include <dlfcn.h>
#include <execinfo.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- allocations */

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);

static atomic_long live, alloc_left, alloc_seen, alloc_injected;
static atomic_int alloc_armed, alloc_persistent, alloc_did_fire, alloc_all_threads;

static atomic_int alloc_trace, leak_recording;

/* A countdown counts the arming thread's calls only: ragd's own threads (the store's indexer)
 * keep running beside the operation under test. A persistent fault hits every thread. */
static _Thread_local int alloc_armed_here, io_armed_here[FAULT_IO_N_KINDS];

void fault_alloc_arm(long n, int persistent)
{
    /* RAGD_FAULT_TRACE=N prints the stack of the failure when N is the allocation failed. */
    const char *t = getenv("RAGD_FAULT_TRACE");
    atomic_store(&alloc_trace, t && strtol(t, NULL, 10) == n);
    const char *leaks = getenv("RAGD_FAULT_LEAKS");
    atomic_store(&leak_recording, leaks && *leaks == '1');
    atomic_store(&alloc_left, n);
    atomic_store(&alloc_seen, 0);
    atomic_store(&alloc_persistent, persistent);
    atomic_store(&alloc_did_fire, 0);
    atomic_store(&alloc_all_threads, 0);
    alloc_armed_here = 1;
    atomic_store(&alloc_armed, 1);
}

void fault_alloc_arm_all_threads(long n, int persistent)
{
    fault_alloc_arm(n, persistent);
    atomic_store(&alloc_all_threads, 1);
}

long fault_alloc_disarm(void)
{
    atomic_store(&alloc_armed, 0);
    alloc_armed_here = 0;
    return atomic_load(&alloc_seen);
}

int fault_alloc_fired(void) { return atomic_load(&alloc_did_fire); }
long fault_alloc_live(void) { return atomic_load(&live); }
long fault_alloc_injected(void) { return atomic_load(&alloc_injected); }

/* 1 when this allocation must fail. */
static int alloc_fails(void)
{
    if (!atomic_load_explicit(&alloc_armed, memory_order_relaxed) ||
        !(alloc_armed_here || atomic_load(&alloc_persistent) || atomic_load(&alloc_all_threads)))
        return 0;
    atomic_fetch_add(&alloc_seen, 1);
    long left = atomic_fetch_sub(&alloc_left, 1) - 1;
    if (left > 0 || (left < 0 && !atomic_load(&alloc_persistent)))
        return 0;
    atomic_store(&alloc_did_fire, 1);
    atomic_fetch_add(&alloc_injected, 1);
    if (atomic_load(&alloc_trace)) {
        void *frames[24];
        int n = backtrace(frames, 24);
        backtrace_symbols_fd(frames, n, 2);
        write(2, "--\n", 3);
    }
    errno = ENOMEM; /* as glibc's malloc does */
    return 1;
}

/* RAGD_FAULT_LEAKS=1: the blocks allocated while armed, with where, until freed; a test that
 * finds a leak prints those still live (fault_alloc_print_armed_live). */
#define LEAK_SLOTS 16384
#define LEAK_FRAMES 12
static struct {
    void *p;
    void *frames[LEAK_FRAMES];
    int n;
} leak_slot[LEAK_SLOTS];
static pthread_mutex_t leak_lock = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local int in_backtrace;

static void leak_record(void *p)
{
    if (in_backtrace)
        return;
    void *frames[LEAK_FRAMES];
    in_backtrace = 1; /* backtrace allocates the first time it runs */
    int n = backtrace(frames, LEAK_FRAMES);
    in_backtrace = 0;
    pthread_mutex_lock(&leak_lock);
    for (size_t i = (uintptr_t)p / 16 % LEAK_SLOTS, k = 0; k < LEAK_SLOTS; i = (i + 1) % LEAK_SLOTS, k++)
        if (!leak_slot[i].p) {
            leak_slot[i].p = p;
            memcpy(leak_slot[i].frames, frames, sizeof frames);
            leak_slot[i].n = n;
            break;
        }
    pthread_mutex_unlock(&leak_lock);
}

static void leak_forget(void *p)
{
    pthread_mutex_lock(&leak_lock);
    for (size_t i = 0; i < LEAK_SLOTS; i++)
        if (leak_slot[i].p == p)
            leak_slot[i].p = NULL;
    pthread_mutex_unlock(&leak_lock);
}

void fault_alloc_print_armed_live(void)
{
    pthread_mutex_lock(&leak_lock);
    for (size_t i = 0; i < LEAK_SLOTS; i++)
        if (leak_slot[i].p) {
            dprintf(2, "live block %p, allocated at:\n", leak_slot[i].p);
            backtrace_symbols_fd(leak_slot[i].frames, leak_slot[i].n, 2);
            leak_slot[i].p = NULL;
        }
    pthread_mutex_unlock(&leak_lock);
}

static void *counted(void *p)
{
    if (p) {
        atomic_fetch_add_explicit(&live, 1, memory_order_relaxed);
        if (atomic_load_explicit(&leak_recording, memory_order_relaxed) && atomic_load(&alloc_armed))
            leak_record(p);
    }
    return p;
}

void *malloc(size_t n) { return alloc_fails() ? NULL : counted(__libc_malloc(n)); }
void *calloc(size_t n, size_t size) { return alloc_fails() ? NULL : counted(__libc_calloc(n, size)); }

void free(void *p)
{
    if (p) {
        atomic_fetch_sub_explicit(&live, 1, memory_order_relaxed);
        if (atomic_load_explicit(&leak_recording, memory_order_relaxed))
            leak_forget(p);
    }
    __libc_free(p);
}

void *realloc(void *p, size_t n)
{
    if (!p)
        return malloc(n);
    if (n == 0) {
        free(p);
        return NULL;
    }
    if (alloc_fails()) {
        errno = ENOMEM;
        return NULL;
    }
    void *q = __libc_realloc(p, n); /* the block stays one block, moved or not */
    if (q && q != p && atomic_load_explicit(&leak_recording, memory_order_relaxed)) {
        leak_forget(p);
        if (atomic_load(&alloc_armed))
            leak_record(q);
    }
    return q;
}

void *memalign(size_t align, size_t n) { return alloc_fails() ? NULL : counted(__libc_memalign(align, n)); }
void *aligned_alloc(size_t align, size_t n) { return memalign(align, n); }
void *valloc(size_t n) { return memalign((size_t)sysconf(_SC_PAGESIZE), n); }
void *pvalloc(size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return memalign(page, (n + page - 1) / page * page);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    if (align < sizeof(void *) || (align & (align - 1)))
        return EINVAL;
    void *p = memalign(align, n);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

/* ---------------------------------------------------------------- writes and syncs */

static struct {
    atomic_long left, seen;
    atomic_int armed, persistent, fired, err;
} io[FAULT_IO_N_KINDS];
static atomic_long io_injected;

void fault_io_arm(fault_io_kind kind, long n, int err, int persistent)
{
    atomic_store(&io[kind].left, n);
    atomic_store(&io[kind].seen, 0);
    atomic_store(&io[kind].err, err);
    atomic_store(&io[kind].persistent, persistent);
    atomic_store(&io[kind].fired, 0);
    io_armed_here[kind] = 1;
    atomic_store(&io[kind].armed, 1);
}

long fault_io_disarm(fault_io_kind kind)
{
    atomic_store(&io[kind].armed, 0);
    io_armed_here[kind] = 0;
    return atomic_load(&io[kind].seen);
}

int fault_io_fired(fault_io_kind kind) { return atomic_load(&io[kind].fired); }
long fault_io_injected(void) { return atomic_load(&io_injected); }

/* 1 (with errno set) when this call on fd must fail: writes to regular files, syncs of
 * regular files and directories (a rename is durable only once its directory is synced). */
static int io_fails(fault_io_kind kind, int fd)
{
    struct stat st;
    if (!atomic_load(&io[kind].armed) || !(io_armed_here[kind] || atomic_load(&io[kind].persistent)) ||
        fstat(fd, &st) != 0 ||
        !(S_ISREG(st.st_mode) || (kind == FAULT_IO_SYNC && S_ISDIR(st.st_mode))))
        return 0;
    atomic_fetch_add(&io[kind].seen, 1);
    long left = atomic_fetch_sub(&io[kind].left, 1) - 1;
    if (left > 0 || (left < 0 && !atomic_load(&io[kind].persistent)))
        return 0;
    atomic_store(&io[kind].fired, 1);
    atomic_fetch_add(&io_injected, 1);
    errno = atomic_load(&io[kind].err);
    return 1;
}

#define BIND(ret, name, params)                                                                                        \
    static ret(*real_##name) params;                                                                                   \
    static ret(*bind_##name(void)) params                                                                              \
    {                                                                                                                  \
        if (!real_##name)                                                                                              \
            *(void **)&real_##name = dlsym(RTLD_NEXT, #name);                                                          \
        return real_##name;                                                                                            \
    }

BIND(ssize_t, write, (int, const void *, size_t))
BIND(ssize_t, pwrite, (int, const void *, size_t, off_t))
BIND(ssize_t, pwrite64, (int, const void *, size_t, off_t))
BIND(int, fsync, (int))
BIND(int, fdatasync, (int))

ssize_t write(int fd, const void *buf, size_t n) { return io_fails(FAULT_IO_WRITE, fd) ? -1 : bind_write()(fd, buf, n); }
ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    return io_fails(FAULT_IO_WRITE, fd) ? -1 : bind_pwrite()(fd, buf, n, off);
}
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    return io_fails(FAULT_IO_WRITE, fd) ? -1 : bind_pwrite64()(fd, buf, n, off);
}
int fsync(int fd) { return io_fails(FAULT_IO_SYNC, fd) ? -1 : bind_fsync()(fd); }
int fdatasync(int fd) { return io_fails(FAULT_IO_SYNC, fd) ? -1 : bind_fdatasync()(fd); }

/* ---------------------------------------------------------------- path calls */

static atomic_int fs_on;
static long fs_calls;
static char fs_log[16384];
static size_t fs_log_len;
static pthread_mutex_t fs_lock = PTHREAD_MUTEX_INITIALIZER;

void fault_fs_count(void)
{
    pthread_mutex_lock(&fs_lock);
    fs_calls = 0;
    fs_log_len = 0;
    fs_log[0] = '\0';
    pthread_mutex_unlock(&fs_lock);
    atomic_store(&fs_on, 1);
}

long fault_fs_stop(void)
{
    atomic_store(&fs_on, 0);
    pthread_mutex_lock(&fs_lock);
    long n = fs_calls;
    pthread_mutex_unlock(&fs_lock);
    return n;
}

const char *fault_fs_log(void) { return fs_log; }

static void fs_note(const char *fn, const char *path, long flags)
{
    if (!atomic_load(&fs_on))
        return;
    char shown[256]; /* one line per call: control bytes shown as '?' */
    snprintf(shown, sizeof shown, "%s", path ? path : "(null)");
    for (char *p = shown; *p; p++)
        if ((unsigned char)*p < 0x20)
            *p = '?';
    pthread_mutex_lock(&fs_lock);
    fs_calls++;
    if (fs_log_len < sizeof fs_log - 1) {
        int w = snprintf(fs_log + fs_log_len, sizeof fs_log - fs_log_len, "%s %s flags=0x%lx\n", fn, shown, flags);
        if (w > 0)
            fs_log_len += (size_t)w < sizeof fs_log - fs_log_len ? (size_t)w : sizeof fs_log - 1 - fs_log_len;
    }
    pthread_mutex_unlock(&fs_lock);
}

/* open and openat carry a mode only when they create. */
static mode_t mode_arg(int flags, va_list ap)
{
    return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

BIND(int, open, (const char *, int, ...))
BIND(int, open64, (const char *, int, ...))
BIND(int, openat, (int, const char *, int, ...))
BIND(int, openat64, (int, const char *, int, ...))

int open(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    fs_note("open", path, flags);
    return bind_open()(path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    fs_note("open", path, flags);
    return bind_open64()(path, flags, mode);
}

int openat(int dir, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    fs_note("openat", path, flags);
    return bind_openat()(dir, path, flags, mode);
}

int openat64(int dir, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    fs_note("openat", path, flags);
    return bind_openat64()(dir, path, flags, mode);
}

/* The rest forward their arguments unchanged. */
#define PATH_CALL(ret, name, params, args, path, flags)                                                                \
    BIND(ret, name, params)                                                                                            \
    ret name params                                                                                                    \
    {                                                                                                                  \
        fs_note(#name, path, flags);                                                                                   \
        return bind_##name() args;                                                                                     \
    }

PATH_CALL(int, stat, (const char *p, struct stat *st), (p, st), p, 0)
PATH_CALL(int, stat64, (const char *p, struct stat64 *st), (p, st), p, 0)
PATH_CALL(int, lstat, (const char *p, struct stat *st), (p, st), p, AT_SYMLINK_NOFOLLOW)
PATH_CALL(int, lstat64, (const char *p, struct stat64 *st), (p, st), p, AT_SYMLINK_NOFOLLOW)
PATH_CALL(int, fstatat, (int d, const char *p, struct stat *st, int f), (d, p, st, f), p, f)
PATH_CALL(int, fstatat64, (int d, const char *p, struct stat64 *st, int f), (d, p, st, f), p, f)
PATH_CALL(int, statx, (int d, const char *p, int f, unsigned m, struct statx *st), (d, p, f, m, st), p, f)
PATH_CALL(int, access, (const char *p, int m), (p, m), p, 0)
PATH_CALL(int, faccessat, (int d, const char *p, int m, int f), (d, p, m, f), p, f)
PATH_CALL(DIR *, opendir, (const char *p), (p), p, 0)
PATH_CALL(FILE *, fopen, (const char *p, const char *m), (p, m), p, 0)
PATH_CALL(FILE *, fopen64, (const char *p, const char *m), (p, m), p, 0)
PATH_CALL(int, mkdir, (const char *p, mode_t m), (p, m), p, 0)
PATH_CALL(int, mkdirat, (int d, const char *p, mode_t m), (d, p, m), p, 0)
PATH_CALL(int, unlink, (const char *p), (p), p, 0)
PATH_CALL(int, unlinkat, (int d, const char *p, int f), (d, p, f), p, f)
PATH_CALL(int, rmdir, (const char *p), (p), p, 0)
PATH_CALL(int, rename, (const char *a, const char *b), (a, b), a, 0)
PATH_CALL(int, renameat, (int da, const char *a, int db, const char *b), (da, a, db, b), a, 0)
PATH_CALL(int, renameat2, (int da, const char *a, int db, const char *b, unsigned f), (da, a, db, b, f), a, f)
PATH_CALL(ssize_t, readlink, (const char *p, char *buf, size_t n), (p, buf, n), p, 0)
PATH_CALL(ssize_t, readlinkat, (int d, const char *p, char *buf, size_t n), (d, p, buf, n), p, 0)
PATH_CALL(char *, realpath, (const char *p, char *out), (p, out), p, 0)
PATH_CALL(int, chdir, (const char *p), (p), p, 0)
