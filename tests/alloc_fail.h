/* alloc_fail.h — failing the Nth allocation on purpose, and counting what is not freed
 * (SQLite's malloc tests), for the test runner only.
 *
 * The runner is linked with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free
 * (Makefile), so every allocation that anodm's own code makes in it (libanodm, the
 * daemon's objects, the tests) goes through alloc_fail.c, and so do jansson's while a
 * test is tracking (json_set_alloc_funcs), but for its parser's (json_loadb, json_loads,
 * also wrapped), which asserts on a failure inside its lexer: a parse fails as a whole,
 * as jansson reports running out of memory. anodm and anodmd are linked without: the
 * production code is the same, only its allocator is wrapped here. SQLite, OpenBLAS and
 * libc keep their own allocations.
 *
 * A test tracks an operation (every allocation made meanwhile is remembered until it is
 * freed, by any thread) and arms a failure within it: the nth allocation from the arming
 * on returns NULL, and with persist every one after it too. The operation must then end
 * in a clear error, and once it has undone itself, alloc_track_end must find nothing
 * left. A test runs n = 1, 2, ... until the operation finishes without reaching n. */
#ifndef ANODM_ALLOC_FAIL_H
#define ANODM_ALLOC_FAIL_H

#include <stddef.h>

/* Start tracking (the set of live tracked allocations starts empty). */
void alloc_track_begin(void);
/* Stop tracking: the tracked allocations still live (leaks, once the operation is over),
 * or -1 if there were more than the tracker holds; sites (cap bytes) names where the first
 * few were made, as FILE+OFFSET for addr2line -e FILE. */
long alloc_track_end(char *sites, size_t cap);
/* Make the nth allocation from now fail (n >= 1), and with persist every later one. */
void alloc_fail_arm(long n, int persist);
/* Disarm: 1 if the nth allocation was reached (a failure was injected), else 0. */
int alloc_fail_disarm(void);

#endif
