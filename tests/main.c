/* The one test runner: runs every registered TEST (or those whose name contains one of
 * the command-line words) and ends with `N passed, N failed`, followed by `, N skipped`
 * when a test skipped itself (SKIP in check.h). */
#include "blas.h"
#include "check.h"
#include "clock.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_TESTS 2048

static struct { const char *name; test_fn fn; } tests[MAX_TESTS];
static int n_tests;
static int current_failures;
static char current_skip[256];           /* the running test's reason to skip, or "" */
static char tmpdir[256];

void test_register(const char *name, test_fn fn) {
    if (n_tests == MAX_TESTS) {
        fprintf(stderr, "too many tests; raise MAX_TESTS\n");
        exit(2);
    }
    tests[n_tests].name = name;
    tests[n_tests].fn = fn;
    n_tests++;
}

void check_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    if (current_failures++ < 10) {
        fprintf(stderr, "    %s:%d: ", file, line);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
    }
}

void check_fails_with_(const char *file, int line, int rc, const char *err, const char *want) {
    if (rc != -1 || !strstr(err, want))
        check_fail(file, line, "expected failure with '%s', got rc %d, err '%s'", want, rc,
                   rc ? err : "");
}

int check_close_(const char *file, int line, const char *what, const float *a,
                 const float *b, size_t n, double atol, double rtol) {
    size_t worst = 0, bad = 0;
    double worst_excess = -1.0;
    for (size_t i = 0; i < n; i++) {
        double diff = fabs((double)a[i] - (double)b[i]);
        double allowed = atol + rtol * fabs((double)b[i]);
        double excess = isfinite(diff) ? diff - allowed : INFINITY;
        if (excess > 0) bad++;
        if (excess > worst_excess) { worst_excess = excess; worst = i; }
    }
    if (bad) {
        check_fail(file, line, "%s: %zu of %zu elements differ; worst [%zu] %.9g vs %.9g "
                   "(atol %.2g rtol %.2g)", what, bad, n, worst, a[worst], b[worst], atol, rtol);
        return 0;
    }
    return 1;
}

void test_skip(const char *fmt, ...) {
    va_list ap;
    if (current_skip[0]) return;         /* the first reason stands */
    va_start(ap, fmt);
    vsnprintf(current_skip, sizeof current_skip, fmt, ap);
    va_end(ap);
    if (!current_skip[0]) snprintf(current_skip, sizeof current_skip, "no reason given");
}

const char *test_tmpdir(void) { return tmpdir; }

/* The command-line words pick tests by name. The runner's own demo tests
 * (tests/test_runner.c, named runner_demo_*) run when ANODM_RUNNER_DEMO is set, and then
 * alone: that is how the runner's test runs a copy of the runner. */
static int selected(const char *name, int argc, char **argv) {
    int demo = strncmp(name, "runner_demo_", strlen("runner_demo_")) == 0;
    if (demo != (getenv("ANODM_RUNNER_DEMO") != NULL)) return 0;
    if (argc < 2) return 1;
    for (int i = 1; i < argc; i++)
        if (strstr(name, argv[i])) return 1;
    return 0;
}

int main(int argc, char **argv) {
    int passed = 0, failed = 0, skipped = 0;
    blas_select_kernels(argv); /* test the kernels that anodm itself will run */
    snprintf(tmpdir, sizeof tmpdir, "/tmp/anodm-test-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 2;
    }
    for (int i = 0; i < n_tests; i++) {
        if (!selected(tests[i].name, argc, argv)) continue;
        double t0 = clock_seconds();
        current_failures = 0;
        current_skip[0] = 0;
        tests[i].fn();
        double ms = (clock_seconds() - t0) * 1e3;
        if (current_failures) {
            failed++;
            printf("FAIL %s (%d failed checks, %.0f ms)%s%s%s\n", tests[i].name,
                   current_failures, ms, current_skip[0] ? " and skipped (" : "", current_skip,
                   current_skip[0] ? ")" : "");
        } else if (current_skip[0]) {
            skipped++;
            printf("skip %s (%s)\n", tests[i].name, current_skip);
        } else {
            passed++;
            printf("ok   %s (%.0f ms)\n", tests[i].name, ms);
        }
        fflush(stdout);
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    if (skipped)
        printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    else
        printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
