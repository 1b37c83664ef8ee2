/* Regression tests for the crashes the libFuzzer targets (tests/fuzz/) found.
 *
 * Each test feeds the crashing input, as the fuzzer saved it (embedded byte for byte),
 * to the parser it crashed, framed as the fuzz target frames it, and checks that the
 * parser refuses it cleanly: -1 and a message. The parser runs in a child process, so a
 * regression fails this one test (a signal, or a sanitizer's exit status under
 * `make asan-test`) instead of taking the whole test runner down. Names:
 * fuzz_regression_<target>_<what>. */
#include "check.h"
#include "net.h"
#include "tsne.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Runs fn(data, len) in a child; 1 if it exited with status 0, else 0 with a failed check
 * that says how the child ended. fn returns 0 when the input was refused as it should be. */
static int in_child_(const char *file, int line, int (*fn)(const uint8_t *, size_t),
                     const uint8_t *data, size_t len) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        check_fail(file, line, "fork failed");
        return 0;
    }
    if (pid == 0) _exit(fn(data, len) == 0 ? 0 : 3);
    int status;
    if (waitpid(pid, &status, 0) != pid) {
        check_fail(file, line, "waitpid failed");
        return 0;
    }
    if (WIFSIGNALED(status)) {
        check_fail(file, line, "the parser crashed: signal %d", WTERMSIG(status));
        return 0;
    }
    if (WEXITSTATUS(status) == 3) {
        check_fail(file, line, "the parser accepted the input or gave no message");
        return 0;
    }
    if (WEXITSTATUS(status) != 0) {     /* e.g. a sanitizer's report under asan-test */
        check_fail(file, line, "the child exited with status %d", WEXITSTATUS(status));
        return 0;
    }
    return 1;
}
#define EXPECT_REFUSED(fn, bytes) in_child_(__FILE__, __LINE__, (fn), (bytes), sizeof(bytes))

/* ------------------------------------------------------------------ fuzz_net */

static int clamp_int(const char *s, char **end) {
    long long v = strtoll(s, end, 10);
    return v < INT_MIN ? INT_MIN : v > INT_MAX ? INT_MAX : (int)v;
}

/* fuzz_net's framing: "C,H,W" (ints, clamped to the int range), a newline, the spec.
 * 0 if net_parse refuses it with a message. */
static int net_refuses(const uint8_t *data, size_t len) {
    char *text = malloc(len + 1);
    net_def *n = malloc(sizeof *n);
    if (!text || !n) return 2;
    memcpy(text, data, len);
    text[len] = 0;
    char *p = text, *end, err[256];
    shape3 in;
    in.c = clamp_int(p, &end);
    p = *end == ',' ? end + 1 : end;
    in.h = clamp_int(p, &end);
    p = *end == ',' ? end + 1 : end;
    in.w = clamp_int(p, &end);
    p = *end == '\n' ? end + 1 : end;
    int rc = net_parse(n, p, in, err, sizeof err);
    free(n);
    free(text);
    return rc == -1 && err[0] ? 0 : 1;
}

/* "2,1,16" conv1d(4,3,0,2,causal) ...: stride 0. conv_geom_1d (core/nn/conv.c) divided by
 * the stride for the output length before conv_geom_valid could refuse it: SIGFPE. The
 * same spec in a bundle's "arch" or a weights file's header reaches net_parse through
 * vae_layout, so a hostile model file killed anodm and anodmd. Fixed by the stride check
 * at the top of build_layer (core/nn/net.c). */
static const uint8_t CRASH_NET_CONV1D_STRIDE0[] = {
    0x32, 0x2c, 0x31, 0x2c, 0x31, 0x36, 0x0a, 0x63, 0x6f, 0x6e, 0x76, 0x31, 0x64, 0x28,
    0x34, 0x2c, 0x33, 0x2c, 0x30, 0x2c, 0x32, 0x2c, 0x63, 0x61, 0x75, 0x73, 0x61, 0x6c,
    0x29, 0x20, 0x72, 0x65, 0x6c, 0x75, 0x20, 0x73, 0x70, 0x61, 0x74, 0x69, 0x61, 0x6c,
    0x64, 0x72, 0x6f, 0x70, 0x6f, 0x75, 0x74, 0x28, 0x30, 0x2e, 0x31, 0x29, 0x20, 0x63,
    0x6f, 0x6e, 0x76, 0x31, 0x64, 0x28, 0x32, 0x2c, 0x33, 0x2c, 0x32, 0x2c, 0x31, 0x2c,
    0x31, 0x29, 0x20, 0x63, 0x6f, 0x6e, 0x76, 0x74, 0x72, 0x61, 0x6e, 0x73, 0x70, 0x6f,
    0x73, 0x65, 0x31, 0x64, 0x28, 0x32, 0x2c, 0x33, 0x2c, 0x32, 0x2c, 0x31, 0x2c, 0x31,
    0x29, 0x20, 0x62, 0x6e, 0x20, 0x72, 0x65, 0x6c, 0x75,
};

TEST(fuzz_regression_net_conv1d_stride_zero) {
    EXPECT_REFUSED(net_refuses, CRASH_NET_CONV1D_STRIDE0);
}

/* The same division in conv_geom_2d (not a fuzzer input: the sibling case). */
static const uint8_t NET_CONV2D_STRIDE0[] = "1,8,8\nconv2d(2,3,0,1) relu";

TEST(fuzz_regression_net_conv2d_stride_zero) {
    EXPECT_REFUSED(net_refuses, NET_CONV2D_STRIDE0);
}

/* The next three: an input dimension near INT_MAX (which net_parse accepts: it only
 * checks each is at least 1, and a bundle's "input" takes any int) overflows int in the
 * geometry of core/nn/conv.c, undefined behaviour that UBSan stops under asan-test:
 *   1x28xINT_MAX, conv2d(32,3,2,128): conv.c:11, in_w + 2 * pad - k */
static const uint8_t CRASH_NET_CONV2D_WIDE[] = {
    0x31, 0x2c, 0x32, 0x38, 0x2c, 0x32, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33,
    0x33, 0x38, 0x0a, 0x63, 0x6f, 0x6e, 0x76, 0x32, 0x64, 0x28, 0x33, 0x32, 0x2c, 0x33,
    0x2c, 0x32, 0x2c, 0x31, 0x32, 0x38, 0x29, 0x20, 0x72, 0x65, 0x8c, 0x75,
};

TEST(fuzz_regression_net_conv2d_wide_input) {
    EXPECT_REFUSED(net_refuses, CRASH_NET_CONV2D_WIDE);
}

/*   1xINT_MAXx32, convtranspose2d(4,52,51,4,51): conv.c:21, (in_h - 1) * stride */
static const uint8_t CRASH_NET_CONVT2D_TALL[] = {
    0x31, 0x2c, 0x34, 0x32, 0x39, 0x34, 0x39, 0x36, 0x37, 0x32, 0x39, 0x36, 0x31, 0x2c,
    0x33, 0x32, 0x63, 0x6f, 0x6e, 0x76, 0x74, 0x72, 0x61, 0x6e, 0x73, 0x70, 0x6f, 0x73,
    0x65, 0x32, 0x64, 0x28, 0x34, 0x2c, 0x35, 0x32, 0x2c, 0x35, 0x31, 0x2c, 0x34, 0x0a,
    0x2c, 0x35, 0x31, 0x29,
};

TEST(fuzz_regression_net_convtranspose2d_tall_input) {
    EXPECT_REFUSED(net_refuses, CRASH_NET_CONVT2D_TALL);
}

/*   2x1xINT_MAX, conv1d(4,3,9,2,causal): conv.c:34, len + pad_left + pad_right */
static const uint8_t CRASH_NET_CONV1D_LONG[] = {
    0x32, 0x2c, 0x31, 0x2c, 0x32, 0x31, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39,
    0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39,
    0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39,
    0x39, 0x39, 0x39, 0x0a, 0x63, 0x6f, 0x6e, 0x76, 0x31, 0x64, 0x28, 0x34, 0x2c, 0x33,
    0x2c, 0x39, 0x2c, 0x32, 0x2c, 0x63, 0x61, 0x75, 0x73, 0x61, 0x6c, 0x29, 0x20, 0x72,
    0x65, 0x6c, 0x75, 0x20, 0x20, 0x72, 0x65, 0x6c, 0x75, 0x20, 0x73, 0x70, 0x61, 0x6f,
    0x70, 0x6f, 0x75, 0x63, 0x61, 0x75, 0x73, 0x61, 0x6c, 0x29, 0x20, 0x00, 0x00, 0x00,
    0x20, 0x72, 0x65, 0x6c, 0x75,
};

TEST(fuzz_regression_net_conv1d_long_input) {
    EXPECT_REFUSED(net_refuses, CRASH_NET_CONV1D_LONG);
}

/* The same overflow through the arguments, which net_parse bounds at 1e6 each: written by
 * hand after the cases above (a 90 s run with shapes held to 4096 found nothing else).
 *   conv1d(1,1000000,1,1000000,causal): net.c build_layer, d * (kern - 1) */
static const uint8_t NET_CONV1D_CAUSAL_PAD[] = "1,1,16\nconv1d(1,1000000,1,1000000,causal)";

TEST(fuzz_regression_net_conv1d_causal_padding) {
    EXPECT_REFUSED(net_refuses, NET_CONV1D_CAUSAL_PAD);
}

/*   convtranspose1d(1,3,1000000,1,1) on 1x1x4096: conv.c conv_geom_transpose_1d,
 *   (len - 1) * stride */
static const uint8_t NET_CONVT1D_STRIDE[] = "1,1,4096\nconvtranspose1d(1,3,1000000,1,1)";

TEST(fuzz_regression_net_convtranspose1d_stride) {
    EXPECT_REFUSED(net_refuses, NET_CONVT1D_STRIDE);
}

/* ------------------------------------------------------------------ fuzz_router */

/* fuzz_router (5 minutes, 2026-11-28): a sample with one value of 5.2e28 gave the tiny
 * fuzz model a finite latent but a NaN map position, and D_MAP then converted
 * floor(NaN) to int, which is undefined (UBSan: "-nan is outside the range of
 * representable values of type 'int'", core/map/tsne_place.c). The daemon now refuses such
 * a request (400 not_finite, tests/test_daemon_abuse.c), and tsne_map_dmap answers NaN,
 * with valid indices, for a position that is not finite. */
static int dmap_of_non_finite(const uint8_t *data, size_t len) {
    (void)data;
    (void)len;
    enum { N = 10 };
    float X[N * 2], Y[N * 2];
    for (int i = 0; i < N; i++) {
        X[2 * i] = (float)i, X[2 * i + 1] = (float)(i % 3);
        Y[2 * i] = (float)(i % 4), Y[2 * i + 1] = (float)(i / 4);
    }
    char err[256];
    tsne_map *m = tsne_map_create(X, Y, N, 2, 0, err, sizeof err);
    if (!m) return 1;
    const float at[][2] = {{NAN, 0}, {0, NAN}, {INFINITY, 1}, {1, -INFINITY}};
    int bad = 0;
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        int idx[3] = {-1, -1, -1};
        float dist[3];
        double d = tsne_map_dmap(m, at[i], 3, idx, dist);
        bad += !isnan(d);
        for (int j = 0; j < 3; j++) bad += idx[j] < 0 || idx[j] >= N || !isnan(dist[j]);
    }
    tsne_map_free(m);
    return bad ? 1 : 0;
}

TEST(fuzz_regression_router_nan_position) {
    static const uint8_t none[1] = {0};
    EXPECT_REFUSED(dmap_of_non_finite, none);
}
