/* The runner itself (tests/main.c): a skipped test is reported with its reason and
 * counted as skipped, never as passed; a test that failed a check and then skipped counts
 * as failed; the closing line and the exit status follow. The runner runs a copy of
 * itself on the runner_demo_* tests, which run only when ANODM_RUNNER_DEMO is set. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

TEST(runner_demo_pass) { CHECK(1 + 1 == 2); }

TEST(runner_demo_skip) { SKIP("the demo's reason %d", 42); }

TEST(runner_demo_fail_then_skip) {
    check_fail(__FILE__, __LINE__, "a check that failed before the skip");
    SKIP("too late to skip");
}

/* Run this runner on the demo tests matching the words; its stdout into out (0 or -1),
 * its exit status into *status. */
static int run_demo(const char *words, char *out, size_t outlen, int *status) {
    char self[512], cmd[1200];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return -1;
    self[n] = 0;
    snprintf(cmd, sizeof cmd, "ANODM_RUNNER_DEMO=1 '%s' %s 2>/dev/null", self, words);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t got = fread(out, 1, outlen - 1, p);
    out[got] = 0;
    int rc = pclose(p);
    *status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    return 0;
}

TEST(runner_reports_skips) {
    char out[4096];
    int status;
    if (run_demo("runner_demo_pass runner_demo_skip", out, sizeof out, &status) != 0) {
        check_fail(__FILE__, __LINE__, "cannot run the runner");
        return;
    }
    CHECK_MSG(strstr(out, "ok   runner_demo_pass (") &&
              strstr(out, "skip runner_demo_skip (the demo's reason 42)\n") &&
              strstr(out, "\n1 passed, 0 failed, 1 skipped\n") && status == 0,
              "exit %d, output:\n%s", status, out);
    CHECK_MSG(!strstr(out, "ok   runner_demo_skip"), "a skip reported as passed:\n%s", out);

    if (run_demo("runner_demo_", out, sizeof out, &status) != 0) {
        check_fail(__FILE__, __LINE__, "cannot run the runner");
        return;
    }
    CHECK_MSG(strstr(out, "FAIL runner_demo_fail_then_skip (1 failed checks, ") &&
              strstr(out, " and skipped (too late to skip)\n") &&
              strstr(out, "\n1 passed, 1 failed, 1 skipped\n") && status == 1,
              "exit %d, output:\n%s", status, out);

    /* Without skips the closing line stays `N passed, N failed`. */
    if (run_demo("runner_demo_pass", out, sizeof out, &status) != 0) {
        check_fail(__FILE__, __LINE__, "cannot run the runner");
        return;
    }
    CHECK_MSG(strstr(out, "\n1 passed, 0 failed\n") && status == 0, "exit %d, output:\n%s",
              status, out);
}
