/* Failing allocations on purpose, and tracking what is not freed (see alloc_fail.h).
 *
 * The wrappers cost one atomic load each while nothing is tracked or armed, so every
 * other test runs through them unchanged. Tracked pointers are kept in an open-addressed
 * set under a mutex (any thread may allocate: the daemon's workers, its log writer);
 * a pointer is taken out of it before it is freed or moved by realloc, so that no other
 * thread can be handed the same address while it is still in the set. */
#define _GNU_SOURCE          /* dladdr */
#include "alloc_fail.h"

#include <dlfcn.h>
#include <execinfo.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
void __wrap_free(void *p);
json_t *__real_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *e);
json_t *__real_json_loads(const char *text, size_t flags, json_error_t *e);
json_t *__wrap_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *e);
json_t *__wrap_json_loads(const char *text, size_t flags, json_error_t *e);

static atomic_int tracking, armed, reached;
static atomic_long calls;            /* allocations since armed */
static long fail_at;
static int fail_persist;
static _Thread_local int parsing;    /* inside jansson's parser: nothing fails */

#define SET_BITS 16
#define SET_CAP ((size_t)1 << SET_BITS)
static struct { void *p, *site; } set[SET_CAP];   /* site: the allocation's caller */
static size_t set_n;
static int set_overflow;
static pthread_mutex_t set_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t home(const void *p) {
    return (size_t)((((uint64_t)(uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ULL) >> (64 - SET_BITS));
}

/* Under set_lock. */
static void set_add(void *p, void *site) {
    if (set_n >= SET_CAP / 4 * 3) {
        set_overflow = 1;
        return;
    }
    size_t i = home(p);
    while (set[i].p) i = (i + 1) & (SET_CAP - 1);
    set[i].p = p;
    set[i].site = site;
    set_n++;
}

/* Under set_lock: p out of the set if it is there (backward-shift deletion). */
static void set_remove(const void *p) {
    size_t i = home(p);
    while (set[i].p && set[i].p != p) i = (i + 1) & (SET_CAP - 1);
    if (!set[i].p) return;
    for (size_t j = (i + 1) & (SET_CAP - 1); set[j].p; j = (j + 1) & (SET_CAP - 1)) {
        size_t h = home(set[j].p);
        /* set[j] may fill the hole at i unless its home lies cyclically in (i, j]. */
        int stays = i < j ? (h > i && h <= j) : (h > i || h <= j);
        if (!stays) {
            set[i] = set[j];
            i = j;
        }
    }
    set[i].p = NULL;
    set_n--;
}

static void track(void *p, void *site) {
    if (!p || !atomic_load(&tracking)) return;
    pthread_mutex_lock(&set_lock);
    set_add(p, site);
    pthread_mutex_unlock(&set_lock);
}

/* Is this allocation the one to fail? */
static int fail_now(void) {
    if (!atomic_load(&armed) || parsing) return 0;
    long c = atomic_fetch_add(&calls, 1) + 1;
    if (c != fail_at && !(fail_persist && c > fail_at)) return 0;
    atomic_store(&reached, 1);
    if (c == fail_at && getenv("ANODM_ALLOC_FAIL_TRACE")) {   /* where it failed */
        void *frames[32];
        fprintf(stderr, "alloc_fail: allocation %ld fails here:\n", c);
        backtrace_symbols_fd(frames, backtrace(frames, 32), 2);
    }
    return 1;
}

void *__wrap_malloc(size_t n) {
    if (fail_now()) return NULL;
    void *p = __real_malloc(n);
    track(p, __builtin_return_address(0));
    return p;
}

void *__wrap_calloc(size_t n, size_t size) {
    if (fail_now()) return NULL;
    void *p = __real_calloc(n, size);
    track(p, __builtin_return_address(0));
    return p;
}

void *__wrap_realloc(void *p, size_t n) {
    if (fail_now()) return NULL;
    if (!atomic_load(&tracking)) return __real_realloc(p, n);
    pthread_mutex_lock(&set_lock);
    void *q = __real_realloc(p, n);
    if (p && (q || n == 0)) set_remove(p);      /* moved, or freed by a size of 0 */
    if (q) set_add(q, __builtin_return_address(0));
    pthread_mutex_unlock(&set_lock);
    return q;
}

void __wrap_free(void *p) {
    if (p && atomic_load(&tracking)) {
        pthread_mutex_lock(&set_lock);
        set_remove(p);
        pthread_mutex_unlock(&set_lock);
    }
    __real_free(p);
}

/* jansson's parser asserts when an allocation fails inside its lexer (akheron/jansson
 * issue 362, open), so a parse counts as one allocation: when its turn comes, it fails as
 * jansson reports running out of memory (json_error_code reads the code from the last
 * byte of the text, jansson.h), and the allocations within it never fail. */
static json_t *parse_fails(json_error_t *e) {
    if (e) {
        memset(e, 0, sizeof *e);
        e->line = e->column = e->position = -1;
        snprintf(e->text, sizeof e->text, "out of memory");
        e->text[JSON_ERROR_TEXT_LENGTH - 1] = (char)json_error_out_of_memory;
    }
    return NULL;
}

json_t *__wrap_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *e) {
    if (fail_now()) return parse_fails(e);
    parsing = 1;
    json_t *j = __real_json_loadb(buf, len, flags, e);
    parsing = 0;
    return j;
}

json_t *__wrap_json_loads(const char *text, size_t flags, json_error_t *e) {
    if (fail_now()) return parse_fails(e);
    parsing = 1;
    json_t *j = __real_json_loads(text, flags, e);
    parsing = 0;
    return j;
}

void alloc_track_begin(void) {
    pthread_mutex_lock(&set_lock);
    memset(set, 0, sizeof set);
    set_n = 0;
    set_overflow = 0;
    pthread_mutex_unlock(&set_lock);
    json_set_alloc_funcs(__wrap_malloc, __wrap_free);
    atomic_store(&tracking, 1);
}

long alloc_track_end(char *sites, size_t cap) {
    atomic_store(&tracking, 0);
    json_set_alloc_funcs(__real_malloc, __real_free);
    pthread_mutex_lock(&set_lock);
    long live = set_overflow ? -1 : (long)set_n;
    size_t used = 0;
    if (cap) sites[0] = 0;
    for (size_t i = 0, shown = 0; i < SET_CAP && shown < 4 && used < cap; i++) {
        Dl_info in;
        if (!set[i].p) continue;
        if (dladdr(set[i].site, &in) && in.dli_fname)
            used += (size_t)snprintf(sites + used, cap - used, "%s%s+%#lx", shown ? ", " : "",
                                     in.dli_fname,
                                     (unsigned long)((char *)set[i].site - (char *)in.dli_fbase));
        shown++;
    }
    pthread_mutex_unlock(&set_lock);
    return live;
}

void alloc_fail_arm(long n, int persist) {
    fail_at = n;
    fail_persist = persist;
    atomic_store(&calls, 0);
    atomic_store(&reached, 0);
    atomic_store(&armed, 1);
}

int alloc_fail_disarm(void) {
    atomic_store(&armed, 0);
    return atomic_load(&reached);
}
