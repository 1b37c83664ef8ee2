/* check.h — the test harness every test file uses.
 *
 * A test is `TEST(name) { ... }`; it registers itself before main() runs, so a new test
 * file needs no list to edit. CHECK* macros record a failure with file:line and let the
 * test go on, so one run shows every broken assertion. A test that cannot run here (a
 * permission the machine does not grant) says so with SKIP("why"): it is reported as
 * skipped, never as passed, and a skip does not hide a check that failed before it. The
 * runner (tests/main.c) ends with the line `N passed, N failed` (`, N skipped` added
 * when a test was skipped); its exit status is 1 only when a test failed. */
#ifndef ANODM_CHECK_H
#define ANODM_CHECK_H

#include <math.h>
#include <stddef.h>

typedef void (*test_fn)(void);

void test_register(const char *name, test_fn fn);    /* called by TEST(), not by hand */
void check_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));           /* record one failed assertion */
const char *test_tmpdir(void);                       /* a private scratch directory */
void test_skip(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));           /* mark the running test skipped */

#define TEST(name)                                                             \
    static void name(void);                                                    \
    __attribute__((constructor)) static void name##_register(void) {           \
        test_register(#name, name);                                            \
    }                                                                          \
    static void name(void)

/* Skip the running test, giving the reason, and return from the TEST function. A
 * helper that decides to skip calls test_skip() and returns by its own means. */
#define SKIP(...)                                                              \
    do {                                                                       \
        test_skip(__VA_ARGS__);                                                \
        return;                                                                \
    } while (0)

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) check_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);        \
    } while (0)

#define CHECK_MSG(cond, ...)                                                   \
    do {                                                                       \
        if (!(cond)) check_fail(__FILE__, __LINE__, __VA_ARGS__);              \
    } while (0)

/* |a - b| <= tol, and both finite. */
#define CHECK_NEAR(a, b, tol)                                                  \
    do {                                                                       \
        double a_ = (a), b_ = (b), t_ = (tol);                                 \
        if (!(isfinite(a_) && isfinite(b_) && fabs(a_ - b_) <= t_))            \
            check_fail(__FILE__, __LINE__, "%s = %.9g, %s = %.9g, tol %.3g",    \
                       #a, a_, #b, b_, t_);                                    \
    } while (0)

/* rc == -1 and the message err contains want: a refusal, for the right reason. */
void check_fails_with_(const char *file, int line, int rc, const char *err, const char *want);
#define CHECK_FAILS_WITH(rc, err, want)                                        \
    check_fails_with_(__FILE__, __LINE__, (rc), (err), (want))

/* Element-wise |a - b| <= atol + rtol * |b| over n floats; reports the worst element. */
int check_close_(const char *file, int line, const char *what, const float *a,
                 const float *b, size_t n, double atol, double rtol);
#define CHECK_CLOSE(what, a, b, n, atol, rtol)                                 \
    check_close_(__FILE__, __LINE__, (what), (a), (b), (n), (atol), (rtol))

#endif
