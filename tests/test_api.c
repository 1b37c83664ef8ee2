/* The wire format without a server: proto/api.c decoding hostile and malformed request
 * bodies and query strings into the right 4xx error, and encoding what the daemon
 * sends back in the shapes proto/openapi.yaml documents. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "check.h"
#include "decimal.h"
#include "fuzz/fuzz_model.h"
#include "le.h"
#include "rng.h"

#define DIM 3

/* Decoding body fails with status and code. */
static void expect_refused_(const char *file, int line, const char *body, int status,
                            const char *code) {
    api_score_request req;
    api_error e = {0};
    if (api_decode_score(body, strlen(body), DIM, 4, &req, &e) == 0) {
        check_fail(file, line, "accepted: %s", body);
        api_score_request_free(&req);
        return;
    }
    if (e.status != status || strcmp(e.code, code) || !e.message[0])
        check_fail(file, line, "%s: got %d %s (%s), want %d %s", body, e.status, e.code,
                   e.message, status, code);
    if (req.x || req.n) check_fail(file, line, "a refused request still holds samples");
}
#define EXPECT_REFUSED(body, status, code) expect_refused_(__FILE__, __LINE__, body, status, code)

TEST(api_decode_refusals) {
    EXPECT_REFUSED("", 400, "malformed_json");
    EXPECT_REFUSED("{\"sample\": [1, 2, 3]", 400, "malformed_json");
    EXPECT_REFUSED("{\"sample\": [1, 2, NaN]}", 400, "malformed_json");
    EXPECT_REFUSED("{\"sample\": [1, 2, Infinity]}", 400, "malformed_json");
    EXPECT_REFUSED("{\"sample\": [1, 2, 1e999]}", 400, "malformed_json");   /* overflows double */
    EXPECT_REFUSED("{\"sample\": [1, 2, 3]} trailing", 400, "malformed_json");
    EXPECT_REFUSED("{\"sample\": [1, 2, 3], \"sample\": [1, 2, 3]}", 400, "duplicate_key");
    EXPECT_REFUSED("{\"sample\": [1, 2, 3], \"id\": \"a\", \"id\": \"b\"}", 400, "duplicate_key");
    EXPECT_REFUSED("[1, 2, 3]", 400, "invalid_request");
    EXPECT_REFUSED("{}", 400, "invalid_request");
    EXPECT_REFUSED("{\"sample\": [1, 2, 3], \"samples\": [[1, 2, 3]]}", 400, "invalid_request");
    EXPECT_REFUSED("{\"sample\": 5}", 400, "invalid_request");
    EXPECT_REFUSED("{\"samples\": {\"a\": 1}}", 400, "invalid_request");
    EXPECT_REFUSED("{\"samples\": [[1, 2, 3], 4]}", 400, "invalid_request");
    EXPECT_REFUSED("{\"sample\": [1, \"2\", 3]}", 400, "not_a_number");
    EXPECT_REFUSED("{\"sample\": [1, null, 3]}", 400, "not_a_number");
    EXPECT_REFUSED("{\"sample\": [1, true, 3]}", 400, "not_a_number");
    EXPECT_REFUSED("{\"sample\": [1, [2], 3]}", 400, "not_a_number");
    EXPECT_REFUSED("{\"sample\": [1, 2, 1e39]}", 400, "not_finite");        /* overflows float */
    EXPECT_REFUSED("{\"sample\": [1, -3.5e38, 3]}", 400, "not_finite");
    EXPECT_REFUSED("{\"sample\": [1, 2]}", 400, "wrong_length");
    EXPECT_REFUSED("{\"sample\": [1, 2, 3, 4]}", 400, "wrong_length");
    EXPECT_REFUSED("{\"samples\": [[1, 2, 3], [1, 2]]}", 400, "wrong_length");
    EXPECT_REFUSED("{\"samples\": []}", 400, "empty_batch");
    EXPECT_REFUSED("{\"samples\": [[1,2,3],[1,2,3],[1,2,3],[1,2,3],[1,2,3]]}", 413,
                   "batch_too_large");
    EXPECT_REFUSED("{\"sample\": [1, 2, 3], \"id\": 5}", 400, "invalid_request");
    EXPECT_REFUSED("{\"sample\": [1, 2, 3], \"source\": null}", 400, "invalid_request");
    EXPECT_REFUSED("{\"sample\": [1, 2, 3], \"explain\": 1}", 400, "invalid_request");
    EXPECT_REFUSED("{\"sample\": [1, 2, 3], \"Sample\": [1, 2, 3]}", 400, "unknown_field");
    EXPECT_REFUSED("{\"sample\": [1, 2, 3], \"id\": \"a\\u0000b\"}", 400, "malformed_json");
    char body[400];
    snprintf(body, sizeof body, "{\"sample\": [1, 2, 3], \"id\": \"%0*d\"}", API_ID_MAX + 1, 7);
    EXPECT_REFUSED(body, 400, "invalid_request");
    /* Not NUL-terminated: the decoder reads len bytes only. */
    api_score_request req;
    api_error e;
    CHECK(api_decode_score("{\"sample\": [1, 2, 3]}xyz", 21, DIM, 4, &req, &e) == 0);
    api_score_request_free(&req);
}

/* Decoding a strip body: 0 with fs, or the refusal's status and code. */
static void expect_strip_(const char *file, int line, const char *body, int status,
                          const char *code) {
    api_strip_request req;
    api_error e = {0};
    int rc = api_decode_strip(body, strlen(body), &req, &e);
    if (!status) {
        if (rc) check_fail(file, line, "%s: refused, %s (%s)", body, e.code, e.message);
        else if (req.n != 3 || req.fs != 360 || req.signal[2] != 0.5f)
            check_fail(file, line, "%s: decoded %zu values at %d Hz", body, req.n, req.fs);
        api_strip_request_free(&req);
        return;
    }
    if (!rc) {
        check_fail(file, line, "accepted: %s", body);
        api_strip_request_free(&req);
    } else if (e.status != status || strcmp(e.code, code) || req.signal) {
        check_fail(file, line, "%s: got %d %s (%s), want %d %s", body, e.status, e.code,
                   e.message, status, code);
    }
}
#define EXPECT_STRIP(body, status, code) expect_strip_(__FILE__, __LINE__, body, status, code)

TEST(api_decode_strip_bodies) {
    EXPECT_STRIP("{\"signal\": [1, -2, 0.5], \"fs\": 360}", 0, NULL);
    EXPECT_STRIP("{\"fs\": 360.0, \"signal\": [1, -2, 0.5], \"id\": \"a\", \"source\": \"b\", "
                 "\"explain\": true}", 0, NULL);
    EXPECT_STRIP("{\"signal\": [1, -2, 0.5]}", 400, "invalid_request");
    EXPECT_STRIP("{\"fs\": 360}", 400, "invalid_request");
    EXPECT_STRIP("{\"signal\": [], \"fs\": 360}", 400, "invalid_request");
    EXPECT_STRIP("{\"signal\": 1, \"fs\": 360}", 400, "invalid_request");
    EXPECT_STRIP("{\"signal\": [1, -2, 0.5], \"fs\": 0}", 400, "invalid_request");
    EXPECT_STRIP("{\"signal\": [1, -2, 0.5], \"fs\": 360.5}", 400, "invalid_request");
    EXPECT_STRIP("{\"signal\": [1, -2, 0.5], \"fs\": 1e7}", 400, "invalid_request");
    EXPECT_STRIP("{\"signal\": [1, -2, 0.5], \"fs\": \"360\"}", 400, "invalid_request");
    EXPECT_STRIP("{\"signal\": [1, null, 0.5], \"fs\": 360}", 400, "not_a_number");
    EXPECT_STRIP("{\"signal\": [1, 1e39, 0.5], \"fs\": 360}", 400, "not_finite");
    EXPECT_STRIP("{\"signal\": [1, -2, 0.5], \"fs\": 360, \"fs\": 250}", 400, "duplicate_key");
    EXPECT_STRIP("{\"signal\": [1, -2, 0.5], \"fs\": 360, \"rate\": 250}", 400, "unknown_field");
    EXPECT_STRIP("{\"signal\": [1, -2, 0.5], \"fs\": 360, \"explain\": \"yes\"}", 400,
                 "invalid_request");
    EXPECT_STRIP("[1, 2]", 400, "invalid_request");
}

TEST(api_decode_accepts) {
    api_score_request req;
    api_error e;
    const char *one = "{\"explain\": true, \"sample\": [1, -2.5, 3e-3], \"id\": \"r1\", "
                      "\"source\": \"cam\"}";
    CHECK(api_decode_score(one, strlen(one), DIM, 4, &req, &e) == 0);
    CHECK(req.n == 1 && req.dim == DIM && req.explain && !strcmp(req.id, "r1") &&
          !strcmp(req.source, "cam"));
    CHECK(req.x && req.x[0] == 1.0f && req.x[1] == -2.5f && req.x[2] == 3e-3f);
    api_score_request_free(&req);
    CHECK(req.x == NULL);
    const char *batch = "{\"samples\": [[1, 2, 3], [4, 5, 6]], \"explain\": false}";
    CHECK(api_decode_score(batch, strlen(batch), DIM, 2, &req, &e) == 0);
    CHECK(req.n == 2 && !req.explain && !req.id[0] && req.x && req.x[5] == 6.0f);
    api_score_request_free(&req);
}

/* Both halves of api_decode_score on body: 1 if the fast path decoded it, 0 if it left it
 * to jansson; a failure when the fast path decoded something jansson's path would not, or
 * differently. The fast path reads a copy in a block of exactly len bytes, so that under
 * ASan (make asan-test) a read past the body's end fails. */
static int fast_agrees_(const char *file, int line, const char *body, size_t len,
                        int max_batch) {
    api_score_request fast, slow;
    api_error e;
    char *copy = malloc(len ? len : 1);
    if (!copy) {
        check_fail(file, line, "out of memory");
        return 0;
    }
    memcpy(copy, body, len);
    int taken = api_decode_score_fast(copy, len, DIM, max_batch, &fast);
    free(copy);
    if (taken != 1) {
        if (taken != 0 || fast.x || fast.n) check_fail(file, line, "fast path left a mess");
        return 0;
    }
    if (api_decode_score_json(body, len, DIM, max_batch, &slow, &e)) {
        check_fail(file, line, "fast path accepted what jansson refuses (%s): %.*s", e.code,
                   (int)len, body);
    } else if (fast.n != slow.n || fast.dim != slow.dim || fast.explain != slow.explain ||
               strcmp(fast.id, slow.id) || strcmp(fast.source, slow.source) ||
               memcmp(fast.x, slow.x, (size_t)fast.n * DIM * sizeof *fast.x)) {
        check_fail(file, line, "fast path decoded differently: %.*s", (int)len, body);
    }
    api_score_request_free(&fast);
    api_score_request_free(&slow);
    return 1;
}
#define FAST_TAKES(body) CHECK(fast_agrees_(__FILE__, __LINE__, body, strlen(body), 4) == 1)
#define FAST_LEAVES(body) CHECK(fast_agrees_(__FILE__, __LINE__, body, strlen(body), 4) == 0)

/* The fast path takes the plain bodies clients send, bit for bit as jansson decodes them,
 * and leaves everything else (errors included) to jansson. */
TEST(api_fast_path_agrees_with_jansson) {
    FAST_TAKES("{\"sample\": [1, -2.5, 3e-3]}");
    FAST_TAKES(" {\n\t\"samples\" :[ [0,-0,0.5] ,[1E+2, 1e-2, 123456789012345678]]\r\n} ");
    FAST_TAKES("{\"sample\":[0.00392156886,0.996078432,1e-40],\"id\":\"r-1\",\"source\":\"\","
               "\"explain\":true}");
    FAST_TAKES("{\"explain\": false, \"sample\": [-0.0, 3.4e38, -1.17549435e-38]}");
    FAST_LEAVES("{\"sample\": [1, 2, 3], \"id\": \"a\\\"b\"}");      /* an escape */
    FAST_LEAVES("{\"sample\": [1, 2, 3], \"source\": \"caf\xc3\xa9\"}"); /* non-ASCII */
    FAST_LEAVES("{\"sample\": [1, 2, 3], \"sample\": [1, 2, 3]}");
    FAST_LEAVES("{\"sample\": [1, 2, 3], \"samples\": [[1, 2, 3]]}");
    FAST_LEAVES("{\"sample\": [1, 2, 3], \"Sample\": 1}");
    FAST_LEAVES("{\"sample\": [1, 2, 1e39]}");
    FAST_LEAVES("{\"sample\": [1, 2, 1e999]}");
    FAST_LEAVES("{\"sample\": [1, 2, 1234567890123456789]}");
    FAST_LEAVES("{\"sample\": [1, 2, 012]}");
    FAST_LEAVES("{\"sample\": [1, 2, +1]}");
    FAST_LEAVES("{\"sample\": [1, 2, .5]}");
    FAST_LEAVES("{\"sample\": [1, 2, 1.]}");
    FAST_LEAVES("{\"sample\": [1, 2, 1e]}");
    FAST_LEAVES("{\"sample\": [1, 2, 0x1]}");
    FAST_LEAVES("{\"sample\": [1, 2]}");
    FAST_LEAVES("{\"sample\": [1, 2, 3, 4]}");
    FAST_LEAVES("{\"samples\": []}");
    FAST_LEAVES("{\"samples\": [[1,2,3],[1,2,3],[1,2,3],[1,2,3],[1,2,3]]}");
    FAST_LEAVES("{\"sample\": [1, 2, 3]} x");
    FAST_LEAVES("{\"sample\": [1, 2, 3],}");
    FAST_LEAVES("{\"explain\": truex, \"sample\": [1, 2, 3]}");
    FAST_LEAVES("{}");
    FAST_LEAVES("");
    /* Not NUL-terminated: a digit just past len must not extend the last number. */
    CHECK(fast_agrees_(__FILE__, __LINE__, "{\"sample\": [1, 2, 3]}9", 21, 4) == 1);
    CHECK(fast_agrees_(__FILE__, __LINE__, "{\"sample\": [1, 2, 3", 19, 4) == 0);

    /* Random damage to valid bodies: every body the fast path takes, jansson decodes
     * the same; and the damage leaves some bodies to each side. */
    static const char *const seeds[] = {
        "{\"sample\": [1, -2.5, 3e-3], \"id\": \"a\", \"explain\": true}",
        "{\"samples\": [[0.25, 1E2, -0], [12, 0.5e+1, 7]], \"source\": \"cam\"}",
    };
    const char alphabet[] = "0123456789-+.eE,[]{}\": \\atrue";
    rng_t r;
    rng_seed(&r, 7);
    int taken = 0, left = 0;
    for (int round = 0; round < 20000; round++) {
        char body[128];
        size_t len = strlen(seeds[round % 2]);
        memcpy(body, seeds[round % 2], len);
        for (int edits = 1 + (int)rng_below(&r, 3); edits > 0; edits--) {
            size_t at = rng_below(&r, len);
            char ch = alphabet[rng_below(&r, sizeof alphabet - 1)];
            switch (rng_below(&r, 3)) {
            case 0: body[at] = ch; break;                                   /* replace */
            case 1: memmove(body + at, body + at + 1, len - at - 1); len--; break; /* delete */
            default:                                                        /* insert */
                if (len + 1 < sizeof body) {
                    memmove(body + at + 1, body + at, len - at);
                    body[at] = ch;
                    len++;
                }
            }
        }
        if (fast_agrees_(__FILE__, __LINE__, body, len, 4)) taken++;
        else left++;
    }
    CHECK(taken > 500 && left > 500);
}

/* The number scanner's edges, each where one pass could go wrong: where exact arithmetic
 * ends (significant digits, 2^53, 64 bits, exponents at 22), zeros however written, a
 * number at the body's end, and "0," beside "0.". */
TEST(api_fast_path_number_edges) {
    static const char *const taken[] = {
        "0.123456789012345", "0.1234567890123456", "0.12345678901234567",  /* 15, 16, 17 */
        "9007199254740992e-16", "9007199254740993e-16",    /* 2^53 exact, 2^53 + 1 not */
        "1234567890123456789e-5", "12345678901234567890e-6", /* 19 digits, 20 */
        "18446744073709551621e-5", "1.8446744073709551621",  /* 2^64 + 5: m wraps to 5 */
        "0.00000000000000000000001234", "1.0000000000000000000000000001",
        "123456789012345678", "-123456789012345678", "9007199254740993",  /* integers */
        "0", "-0", "0.0", "-0.0", "0e5", "-0E-5", "0.000e999999999999", "-0e0",
        "0.0039", "0.7804", "1.0", "0.00392156886", "1e0001", "1E+2", "25e-1",
        "1e22", "1e23", "1e-22", "1e-23", "-9007199254740992e22", "4e-22", "7e-23",
        "3.4e38", "1e-45", "1e-300",
    };
    for (size_t i = 0; i < sizeof taken / sizeof taken[0]; i++) {
        char body[160];
        snprintf(body, sizeof body, "{\"sample\": [%s,%s, %s]}", taken[i], taken[i], taken[i]);
        CHECK_MSG(fast_agrees_(__FILE__, __LINE__, body, strlen(body), 4) == 1, "left %s",
                  taken[i]);
    }
    static const char *const left[] = {
        "00", "-00", "01.5", "0.", "0.e1", "-", "-.5", "0e", "0e+", "1e-", "--1", "0x10",
        "1234567890123456789", "1e39", "-1e39", "1e400", "1e-400", "1e99999999999999999999",
        "0,", "1.5.5", "1e5e5", "Infinity", "NaN", "0]",
    };
    for (size_t i = 0; i < sizeof left / sizeof left[0]; i++) {
        char body[160];
        snprintf(body, sizeof body, "{\"sample\": [1, %s, 2]}", left[i]);
        CHECK_MSG(fast_agrees_(__FILE__, __LINE__, body, strlen(body), 4) == 0, "took %s",
                  left[i]);
    }
    FAST_TAKES("{\"sample\": [0,0,0]}");
    FAST_TAKES("{\"sample\": [0 ,0\t,\n0 ]}");
    FAST_TAKES("{\"sample\": [0,0.5,0]}\n");
    FAST_TAKES("{\"samples\": [[0,0,0],[0,0,0]]} ");
    FAST_LEAVES("{\"sample\": [0,,0]}");
    FAST_LEAVES("{\"sample\": [0,0,0,]}");
    FAST_LEAVES("{\"sample\": [0.,0,0]}");
    FAST_LEAVES("{\"sample\": [0,0,0]");
    /* Cut inside a number at the body's end (the block is exactly this long). */
    static const char *const cut[] = {"{\"sample\": [1, 2, 0", "{\"sample\": [1, 2, 0.",
                                      "{\"sample\": [1, 2, 1e", "{\"sample\": [1, 2, -",
                                      "{\"sample\": [1, 2, 0.25", "{\"sample\": [0"};
    for (size_t i = 0; i < sizeof cut / sizeof cut[0]; i++) FAST_LEAVES(cut[i]);
}

/* Bodies as the benchmarks print images (tests/gen_wrk_bodies.py: pixel / 255 rounded
 * to 4 decimals, 0 for black; anodm bench-score: the float printed with %.9g), compact or
 * spaced: the fast path takes every one, bit for bit as jansson's path decodes it. */
TEST(api_fast_path_takes_images) {
    rng_t r;
    rng_seed(&r, 5);
    int taken = 0, tried = 0;
    for (int round = 0; round < 20000; round++) {
        char num[DIM][32], body[256];
        for (int i = 0; i < DIM; i++) {
            int pixel = rng_below(&r, 2) ? 0 : (int)rng_below(&r, 256);
            if (round % 2) snprintf(num[i], sizeof num[i], "%.9g", (double)(pixel / 255.0f));
            else if (!pixel) snprintf(num[i], sizeof num[i], "0");
            else snprintf(num[i], sizeof num[i], "%.4f", pixel / 255.0);
        }
        const char *sep = round % 3 ? "," : " , ";
        int len = snprintf(body, sizeof body, "{\"sample\":[%s%s%s%s%s]}", num[0], sep, num[1],
                           sep, num[2]);
        tried++;
        taken += fast_agrees_(__FILE__, __LINE__, body, (size_t)len, 4);
    }
    CHECK_MSG(taken == tried, "the fast path took %d of %d bodies", taken, tried);
}

/* A random double and a random way to print it, as clients do (%g, %e, %f at every
 * precision; pixels / 255, tiny to huge, negative, zero): its text in out. */
static void printed_real(rng_t *r, char *out, size_t len) {
    static const char *const formats[] = {"%.*g", "%.*e", "%.*f"};
    double u = (double)(rng_u64(r) >> 11) * 0x1p-53, v;   /* every bit of a double */
    switch (rng_below(r, 4)) {
    case 0: v = (double)rng_below(r, 256) / 255.0; break;
    case 1: v = u * pow(10.0, (double)rng_below(r, 80) - 40.0); break;
    case 2: v = (u - 0.5) * pow(10.0, (double)rng_below(r, 12) - 3.0); break;
    default: v = (double)rng_below(r, 3) - 1.0;
    }
    snprintf(out, len, formats[rng_below(r, 3)], 1 + (int)rng_below(r, 17), v);
}

/* decimal_exact gives strtod's double bit for bit whenever it answers (digits of every
 * length to 20, exponents around the exact powers' +-22), and answers where exact
 * arithmetic holds: to 2^53 and 10^+-22, zero with any exponent. */
TEST(decimal_exact_is_strtod) {
    rng_t r;
    rng_seed(&r, 12);
    int answered = 0, tried = 0;
    for (int round = 0; round < 200000; round++) {
        int bits = (int)rng_below(&r, 65), exp10 = (int)rng_below(&r, 61) - 30;
        uint64_t m = bits ? rng_u64(&r) >> (64 - bits) : 0;
        int negative = (int)rng_below(&r, 2);
        char text[48];
        snprintf(text, sizeof text, "%s%llue%d", negative ? "-" : "", (unsigned long long)m,
                 exp10);
        double fast, slow = strtod(text, NULL);
        tried++;
        if (!decimal_exact(m, exp10, negative, &fast)) continue;
        answered++;
        if (memcmp(&fast, &slow, sizeof fast)) {
            CHECK_MSG(0, "'%s': %.17g, strtod %.17g", text, fast, slow);
            break;
        }
    }
    CHECK_MSG(answered > tried / 4 && answered < tried, "answered %d of %d", answered, tried);
    double v;
    const uint64_t two53 = 1ULL << 53;
    CHECK(decimal_exact(two53, 22, 0, &v) && v == 0x1p53 * 1e22);
    CHECK(decimal_exact(two53, -22, 1, &v) && v == -0x1p53 / 1e22);
    CHECK(!decimal_exact(two53 + 1, 0, 0, &v) && !decimal_exact(1, 23, 0, &v) &&
          !decimal_exact(1, -23, 0, &v));
    CHECK(decimal_exact(0, 400, 1, &v) && v == 0 && signbit(v));
    CHECK(decimal_exact(0, -400, 0, &v) && v == 0 && !signbit(v));
}

/* The fast path's reals, printed every way printed_real does: each body decodes bit for
 * bit as jansson's path decodes it. */
TEST(api_fast_path_reals_agree) {
    rng_t r;
    rng_seed(&r, 11);
    int taken = 0, tried = 0;
    for (int round = 0; round < 30000; round++) {
        char num[3][400], body[1400];
        for (int i = 0; i < 3; i++) printed_real(&r, num[i], sizeof num[i]);
        int len = snprintf(body, sizeof body, "{\"sample\": [%s, %s, %s]}", num[0], num[1],
                           num[2]);
        tried++;
        taken += fast_agrees_(__FILE__, __LINE__, body, (size_t)len, 4);
    }
    CHECK_MSG(taken > tried / 2, "the fast path took %d of %d bodies", taken, tried);
}

TEST(api_decode_query) {
    api_scores_query q;
    api_error e;
    CHECK(api_decode_scores_query(NULL, NULL, NULL, NULL, NULL, &q, &e) == 0);
    CHECK(q.since_id == 0 && q.limit == API_DEFAULT_LIMIT && !q.model[0] && !q.anomalies_only);
    CHECK(api_decode_scores_query("42", "7", "m-1.x", "cam", "true", &q, &e) == 0);
    CHECK(q.since_id == 42 && q.limit == 7 && !strcmp(q.model, "m-1.x") &&
          !strcmp(q.source, "cam") && q.anomalies_only);
    static const char *const bad[][5] = {
        {"-1", 0, 0, 0, 0},  {"1x", 0, 0, 0, 0},   {"", 0, 0, 0, 0},
        {"99999999999999999999", 0, 0, 0, 0},    {0, "0", 0, 0, 0},
        {0, "1001", 0, 0, 0}, {0, "ten", 0, 0, 0}, {0, 0, "a/b", 0, 0},
        {0, 0, "", 0, 0},    {0, 0, 0, 0, "yes"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        e.status = 0;
        CHECK_MSG(api_decode_scores_query(bad[i][0], bad[i][1], bad[i][2], bad[i][3], bad[i][4],
                                          &q, &e) == -1 && e.status == 400 &&
                      !strcmp(e.code, "invalid_query"),
                  "query case %zu accepted", i);
    }
    char source[API_ID_MAX + 1], longest[API_ID_MAX + 2];
    CHECK(api_decode_source(NULL, source, &e) == 0 && !source[0]);
    memset(longest, 'a', API_ID_MAX);
    longest[API_ID_MAX] = 0;
    CHECK(api_decode_source(longest, source, &e) == 0 && strlen(source) == API_ID_MAX);
    strcat(longest, "a");
    e.status = 0;
    CHECK(api_decode_source(longest, source, &e) == -1 && e.status == 400);
    int64_t id;
    CHECK(api_parse_log_id("17", &id) == 0 && id == 17);
    CHECK(api_parse_log_id("+17", &id) == -1 && api_parse_log_id("", &id) == -1 &&
          api_parse_log_id(NULL, &id) == -1 && api_parse_log_id("1 ", &id) == -1);
}

TEST(api_encode_shapes) {
    api_error e;
    api_error_set(&e, 404, "unknown_model", "no model named '%s'", "x");
    char *s = api_encode_error(&e);
    json_t *j = s ? json_loads(s, 0, NULL) : NULL;
    json_t *err = json_object_get(j, "error");
    CHECK(err && !strcmp(json_string_value(json_object_get(err, "code")), "unknown_model") &&
          !strcmp(json_string_value(json_object_get(err, "message")), "no model named 'x'"));
    json_decref(j);
    free(s);

    /* A non-finite number becomes null, never invalid JSON. */
    api_score_record rec = {.log_id = 9, .ts_ms = 1700000000123, .index = 0, .threshold = 1.5,
                            .r = {.nearest_ref = 4, .nearest_distance = 0.25}};
    snprintf(rec.model, sizeof rec.model, "m");
    snprintf(rec.version, sizeof rec.version, "abc");
    rec.r.score = NAN;
    rec.r.p_value = 0.5;
    s = api_encode_score_page(&rec, 1, 3);
    j = s ? json_loads(s, 0, NULL) : NULL;
    json_t *r0 = json_array_get(json_object_get(j, "scores"), 0);
    CHECK(j && json_integer_value(json_object_get(j, "next_since_id")) == 9);
    CHECK(r0 && json_is_null(json_object_get(r0, "score")) &&
          json_is_null(json_object_get(r0, "id")));
    CHECK(r0 && !strcmp(json_string_value(json_object_get(r0, "time")),
                        "2023-11-14T22:13:20.123Z"));
    CHECK(r0 && json_integer_value(json_object_get(json_object_get(r0, "nearest"), "ref")) == 4);
    json_decref(j);
    free(s);
    s = api_encode_score_page(NULL, 0, 3);
    j = s ? json_loads(s, 0, NULL) : NULL;
    CHECK(j && json_integer_value(json_object_get(j, "next_since_id")) == 3 &&
          json_array_size(json_object_get(j, "scores")) == 0);
    json_decref(j);
    free(s);

    /* The memory map: a latent kept with a NaN suspicion (the memory's -inf) reads null;
     * a source tag that is not UTF-8 (a query parameter's bytes) is scrubbed, not lost. */
    static detector d;
    d.memory.capacity = 7;
    float pos[4] = {1.5f, -2.0f, 0.25f, 3.0f};
    double sus[2] = {-INFINITY, 2.5};
    unsigned char recent[2] = {0, 1};
    api_memory_map mm = {.per_source = 1, .n = 2, .pos = pos, .suspicion = sus,
                         .recent = recent, .seconds = 0.125, .cached = 1};
    snprintf(mm.source, sizeof mm.source, "cam\xff");
    api_model_ref ref = {.name = "m", .version = "abc", .d = &d};
    s = api_encode_memory_map(&ref, &mm);
    j = s ? json_loads(s, 0, NULL) : NULL;
    json_t *pts = json_object_get(j, "points"), *su = json_object_get(j, "suspicion");
    CHECK(j && !strcmp(json_string_value(json_object_get(j, "scope")), "source") &&
          !strcmp(json_string_value(json_object_get(j, "source")), "cam?") &&
          json_integer_value(json_object_get(j, "capacity")) == 7 &&
          json_integer_value(json_object_get(j, "count")) == 2 &&
          json_is_true(json_object_get(j, "cached")));
    CHECK(json_array_size(pts) == 2 &&
          json_real_value(json_array_get(json_array_get(pts, 1), 1)) == 3.0 &&
          json_is_null(json_array_get(su, 0)) && json_real_value(json_array_get(su, 1)) == 2.5 &&
          json_is_false(json_array_get(json_object_get(j, "recent"), 0)) &&
          json_is_true(json_array_get(json_object_get(j, "recent"), 1)));
    json_decref(j);
    free(s);
}

/* Every field of the score record (core/detect/detector.h's table) reaches the JSON, in the
 * place its group gives it, with its value: a log record, a result line of anodm score,
 * and the model's list of terms. A field added to the table is checked here unchanged. */
TEST(api_encode_follows_the_record_table) {
    static const struct { const char *name; detector_group group; const char *doc; } F[] = {
#define F_(name, type, group, doc) {#name, DETECTOR_GROUP_##group, doc},
        DETECTOR_RESULT_FIELDS(F_)
#undef F_
    };
    enum { N = sizeof F / sizeof F[0] };
    api_score_record rec = {.log_id = 3, .ts_ms = 1700000000000, .threshold = 2};
    snprintf(rec.model, sizeof rec.model, "m");
    snprintf(rec.version, sizeof rec.version, "v");
    /* Field i holds i + 1 (a flag: 1), so that each is found by its value. */
    int i = 0;
#define SET(name, type, group, doc) rec.r.name = (DETECTOR_CTYPE_##type)(++i);
    DETECTOR_RESULT_FIELDS(SET)
#undef SET
    rec.r.is_anomaly = 1;
    rec.r.z_latent = NAN;                  /* unknown: null */
    char *s = api_encode_score_record(&rec);
    json_t *j = s ? json_loads(s, 0, NULL) : NULL;
    char *line = api_encode_result_line(7, NULL, &rec.r);
    json_t *flat = line ? json_loads(line, 0, NULL) : NULL;
    CHECK(j && flat && json_integer_value(json_object_get(flat, "index")) == 7 &&
          json_object_size(flat) == N + 1);
    size_t positions = 0;
    for (int k = 0; j && flat && k < N; k++) {
        json_t *v = NULL;
        switch (F[k].group) {
        case DETECTOR_GROUP_VERDICT: v = json_object_get(j, F[k].name); break;
        case DETECTOR_GROUP_TERM: v = json_object_get(json_object_get(j, "terms"), F[k].name); break;
        case DETECTOR_GROUP_POSITION: v = json_array_get(json_object_get(j, "position"), positions++); break;
        case DETECTOR_GROUP_NEAREST:
            v = json_object_get(json_object_get(j, "nearest"), F[k].name + strlen("nearest_"));
            break;
        }
        json_t *w = json_object_get(flat, F[k].name);
        double want = !strcmp(F[k].name, "is_anomaly") ? 1 : k + 1;
        if (!strcmp(F[k].name, "z_latent"))
            CHECK_MSG(json_is_null(v) && json_is_null(w), "%s is not null", F[k].name);
        else if (json_is_boolean(v))
            CHECK_MSG(json_is_true(v) && json_is_true(w), "%s", F[k].name);
        else
            CHECK_MSG(v && json_number_value(v) == want && json_number_value(w) == want,
                      "%s: %g and %g, want %g", F[k].name, json_number_value(v),
                      json_number_value(w), want);
    }
    CHECK(json_array_size(json_object_get(j, "position")) == positions && positions == 2);
    json_decref(j);
    json_decref(flat);
    free(s);
    free(line);

    /* The model's metadata lists the TERM fields, name and doc, in the table's order. */
    detector d;
    char err[256];
    CHECK_MSG(fuzz_model_make(&d, PLACE_SINGLE, err, sizeof err) == 0, "%s", err);
    api_model_ref m = {"m", "v", &d, 0};
    s = api_encode_model(&m, 1);
    j = s ? json_loads(s, 0, NULL) : NULL;
    json_t *terms = json_object_get(j, "terms");
    size_t t = 0;
    for (int k = 0; k < N; k++) {
        if (F[k].group != DETECTOR_GROUP_TERM) continue;
        json_t *e = json_array_get(terms, t++);
        CHECK_MSG(e && !strcmp(json_string_value(json_object_get(e, "name")), F[k].name) &&
                      !strcmp(json_string_value(json_object_get(e, "doc")), F[k].doc),
                  "term %zu is not %s", t - 1, F[k].name);
    }
    CHECK(t >= 6 && json_array_size(terms) == t);
    json_decref(j);
    free(s);
    detector_free(&d);
}

/* ------------------------------------------------------------------ Open Inference Protocol */

/* A V2 body: the JSON text, then n bytes of binary data. */
typedef struct {
    char b[1024];
    size_t len;
    char header[24];             /* the JSON's length, as Inference-Header-Content-Length */
} v2_body;

static void v2_make(v2_body *v, const char *json, const void *bin, size_t n) {
    size_t jl = strlen(json);
    memcpy(v->b, json, jl);
    if (n) memcpy(v->b + jl, bin, n);
    v->len = jl + n;
    snprintf(v->header, sizeof v->header, "%zu", jl);
}

/* Decoding v with this header (NULL: none) fails with status and code, leaving nothing. */
static void expect_v2_refused_(const char *file, int line, const v2_body *v, const char *header,
                               int status, const char *code) {
    api_score_request req;
    api_v2_outputs out;
    api_error e = {0};
    if (api_decode_v2_infer(v->b, v->len, header, DIM, 4, &req, &out, &e) == 0) {
        check_fail(file, line, "accepted: %.*s", (int)v->len, v->b);
        api_score_request_free(&req);
        return;
    }
    if (e.status != status || strcmp(e.code, code) || !e.message[0])
        check_fail(file, line, "%.200s: got %d %s (%s), want %d %s", v->b, e.status, e.code,
                   e.message, status, code);
    if (req.x || req.n || out.n) check_fail(file, line, "a refused request still holds data");
}
#define EXPECT_V2_REFUSED(v, header, status, code) \
    expect_v2_refused_(__FILE__, __LINE__, (v), (header), (status), (code))

/* The JSON header of one binary input of shape [b, 3] and the datatype, with
 * binary_data_size size and extra text after the inputs. */
static void v2_json(char *out, size_t cap, int b, const char *type, const char *size,
                    const char *extra) {
    snprintf(out, cap, "{\"inputs\": [{\"name\": \"x\", \"shape\": [%d, 3], \"datatype\": "
             "\"%s\", \"parameters\": {\"binary_data_size\": %s}}]%s}", b, type, size, extra);
}

/* Binary tensors after the JSON (FP32, FP64, UINT8 as pixels), the same datatypes as JSON
 * data, and the outputs asked back. */
TEST(api_decode_v2_accepts) {
    api_score_request req;
    api_v2_outputs out;
    api_error e;
    v2_body v;
    char json[512];
    const float want[6] = {1.0f, -2.5f, 3e-3f, 0.0f, 3e38f, -1e-30f};
    uint8_t f32[24], f64[48], u8[6] = {0, 1, 128, 254, 255, 51};
    for (int i = 0; i < 6; i++) {
        le_put_f32(f32 + 4 * i, want[i]);
        le_put_f64(f64 + 8 * i, want[i]);
    }
    for (int t = 0; t < 3; t++) {
        v2_json(json, sizeof json, 2, t == 0 ? "FP32" : t == 1 ? "FP64" : "UINT8",
                t == 0 ? "24" : t == 1 ? "48" : "6", "");
        v2_make(&v, json, t == 0 ? f32 : t == 1 ? (void *)f64 : u8, t == 0 ? 24 : t == 1 ? 48 : 6);
        CHECK(api_decode_v2_infer(v.b, v.len, v.header, DIM, 4, &req, &out, &e) == 0);
        CHECK(req.n == 2 && req.dim == DIM && req.x);
        for (int i = 0; req.x && i < 6; i++)
            CHECK(req.x[i] == (t < 2 ? want[i] : u8[i] / 255.0f));
        CHECK(out.n == 4 && !out.binary[0] && !out.binary[3] && out.which[2] == API_V2_P_VALUE);
        api_score_request_free(&req);
    }
    /* JSON data of each datatype; the header's length may be the whole body. */
    const char *fp64 = "{\"inputs\": [{\"name\": \"x\", \"shape\": [1, 3], \"datatype\": "
                       "\"FP64\", \"data\": [1, 0.1, -2]}]}";
    v2_make(&v, fp64, NULL, 0);
    CHECK(api_decode_v2_infer(v.b, v.len, v.header, DIM, 4, &req, &out, &e) == 0);
    CHECK(req.n == 1 && req.x && req.x[1] == 0.1f && req.x[2] == -2.0f);
    api_score_request_free(&req);
    const char *uint8 = "{\"inputs\": [{\"name\": \"x\", \"shape\": [1, 3], \"datatype\": "
                        "\"UINT8\", \"data\": [[0, 255, 51]]}]}";
    CHECK(api_decode_v2_infer(uint8, strlen(uint8), NULL, DIM, 4, &req, &out, &e) == 0);
    CHECK(req.x && req.x[0] == 0.0f && req.x[1] == 1.0f && req.x[2] == 51 / 255.0f);
    api_score_request_free(&req);
    /* Outputs: all binary by the request's parameter, one overriding it, a chosen order. */
    v2_json(json, sizeof json, 1, "FP32", "12",
            ", \"parameters\": {\"binary_data_output\": true, \"other\": 1}, \"outputs\": "
            "[{\"name\": \"log_id\"}, {\"name\": \"score\", \"parameters\": {\"binary_data\": "
            "false}}]");
    v2_make(&v, json, f32, 12);
    CHECK(api_decode_v2_infer(v.b, v.len, v.header, DIM, 4, &req, &out, &e) == 0);
    CHECK(out.n == 2 && out.which[0] == API_V2_LOG_ID && out.binary[0] &&
          out.which[1] == API_V2_SCORE && !out.binary[1]);
    api_score_request_free(&req);
    v2_json(json, sizeof json, 1, "FP32", "12", ", \"outputs\": []");
    v2_make(&v, json, f32, 12);
    CHECK(api_decode_v2_infer(v.b, v.len, v.header, DIM, 4, &req, &out, &e) == 0);
    CHECK(out.n == 4 && !out.binary[0]);
    api_score_request_free(&req);
}

/* Every way a V2 body can be wrong, binary data's in particular. */
TEST(api_decode_v2_refusals) {
    v2_body v;
    char json[512];
    uint8_t f32[32] = {0}, nan32[12] = {0};
    le_put_f32(nan32 + 4, NAN);
    v2_json(json, sizeof json, 1, "FP32", "12", "");
    v2_make(&v, json, f32, 12);
    EXPECT_V2_REFUSED(&v, NULL, 400, "malformed_json");            /* binary, unframed */
    EXPECT_V2_REFUSED(&v, "99999", 400, "invalid_request");        /* past the body */
    EXPECT_V2_REFUSED(&v, "", 400, "invalid_request");
    EXPECT_V2_REFUSED(&v, "-1", 400, "invalid_request");
    EXPECT_V2_REFUSED(&v, " 12", 400, "invalid_request");
    EXPECT_V2_REFUSED(&v, "0x10", 400, "invalid_request");
    EXPECT_V2_REFUSED(&v, "99999999999999999999", 400, "invalid_request");
    EXPECT_V2_REFUSED(&v, "0", 400, "malformed_json");
    EXPECT_V2_REFUSED(&v, "10", 400, "malformed_json");            /* cuts the JSON */
    v2_make(&v, json, f32, 11);
    EXPECT_V2_REFUSED(&v, v.header, 400, "wrong_length");          /* truncated */
    v2_make(&v, json, f32, 13);
    EXPECT_V2_REFUSED(&v, v.header, 400, "wrong_length");          /* a byte left over */
    v2_make(&v, json, nan32, 12);
    EXPECT_V2_REFUSED(&v, v.header, 400, "not_finite");
    v2_make(&v, json, NULL, 0);
    EXPECT_V2_REFUSED(&v, NULL, 400, "invalid_request");           /* binary without framing */
    const struct {
        const char *type, *size, *extra;
        size_t n;
        int status;
        const char *code;
    } cases[] = {
        {"FP32", "11", "", 11, 400, "wrong_length"},
        {"FP32", "16", "", 16, 400, "wrong_length"},
        {"FP64", "12", "", 12, 400, "wrong_length"},                /* FP64 takes 24 */
        {"FP32", "-12", "", 12, 400, "invalid_request"},
        {"FP32", "12.0", "", 12, 400, "invalid_request"},
        {"FP32", "\"12\"", "", 12, 400, "invalid_request"},
        {"FP32", "null", "", 12, 400, "invalid_request"},
        {"FP32", "9223372036854775807", "", 12, 400, "wrong_length"},
        {"INT32", "12", "", 12, 400, "invalid_request"},
        {"BOOL", "3", "", 3, 400, "invalid_request"},
        {"FP32", "12", ", \"parameters\": {\"binary_data_output\": 1}", 12, 400,
         "invalid_request"},
        {"FP32", "12", ", \"parameters\": 3", 12, 400, "invalid_request"},
        {"FP32", "12", ", \"outputs\": {}", 12, 400, "invalid_request"},
        {"FP32", "12", ", \"outputs\": [\"score\"]", 12, 400, "invalid_request"},
        {"FP32", "12", ", \"outputs\": [{\"name\": 1}]", 12, 400, "invalid_request"},
        {"FP32", "12", ", \"outputs\": [{\"name\": \"Score\"}]", 12, 400, "invalid_request"},
        {"FP32", "12", ", \"outputs\": [{\"name\": \"score\"}, {\"name\": \"score\"}]", 12, 400,
         "invalid_request"},
        {"FP32", "12", ", \"outputs\": [{\"name\": \"score\", \"datatype\": \"FP32\"}]", 12, 400,
         "unknown_field"},
        {"FP32", "12", ", \"outputs\": [{\"name\": \"score\", \"parameters\": {\"binary_data\": "
                       "\"true\"}}]", 12, 400, "invalid_request"},
        {"FP32", "12", ", \"outputs\": [{\"name\": \"score\", \"parameters\": []}]", 12, 400,
         "invalid_request"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        v2_json(json, sizeof json, 1, cases[i].type, cases[i].size, cases[i].extra);
        v2_make(&v, json, f32, cases[i].n);
        EXPECT_V2_REFUSED(&v, v.header, cases[i].status, cases[i].code);
    }
    v2_json(json, sizeof json, 5, "FP32", "60", "");               /* past max_batch 4 */
    v2_make(&v, json, f32, 0);
    EXPECT_V2_REFUSED(&v, v.header, 413, "batch_too_large");
    v2_json(json, sizeof json, 0, "FP32", "0", "");
    v2_make(&v, json, f32, 0);
    EXPECT_V2_REFUSED(&v, v.header, 400, "empty_batch");
    const char *both = "{\"inputs\": [{\"name\": \"x\", \"shape\": [1, 3], \"datatype\": \"FP32\", "
                       "\"data\": [1, 2, 3], \"parameters\": {\"binary_data_size\": 12}}]}";
    v2_make(&v, both, f32, 12);
    EXPECT_V2_REFUSED(&v, v.header, 400, "invalid_request");
    const char *json_data = "{\"inputs\": [{\"name\": \"x\", \"shape\": [1, 3], \"datatype\": "
                            "\"FP32\", \"data\": [1, 2, 3]}]}";
    v2_make(&v, json_data, f32, 1);
    EXPECT_V2_REFUSED(&v, v.header, 400, "wrong_length");          /* a byte after the JSON */
    const char *bad_u8[] = {"[1, 2, 256]", "[1, 2, -1]", "[1, 2, 0.5]", "[1, 2, true]"};
    for (int i = 0; i < 4; i++) {
        snprintf(json, sizeof json, "{\"inputs\": [{\"name\": \"x\", \"shape\": [1, 3], "
                 "\"datatype\": \"UINT8\", \"data\": %s}]}", bad_u8[i]);
        v2_make(&v, json, NULL, 0);
        EXPECT_V2_REFUSED(&v, NULL, 400, i < 3 ? "invalid_request" : "not_a_number");
    }
    snprintf(json, sizeof json, "{\"inputs\": [{\"name\": \"x\", \"shape\": [1, 3], "
             "\"datatype\": \"FP64\", \"data\": [1, 2, 1e39]}]}");
    v2_make(&v, json, NULL, 0);
    EXPECT_V2_REFUSED(&v, NULL, 400, "not_finite");
}

/* What POST .../infer answers: the outputs asked for, JSON data or binary data after the
 * JSON header in their order; errors, the server metadata. */
TEST(api_encode_v2) {
    api_score_record rec[2] = {{.log_id = 7, .r = {.score = 1.25, .is_anomaly = 1,
                                                   .p_value = 0.001}},
                               {.log_id = 8, .r = {.score = -0.5, .p_value = 0.75}}};
    api_v2_outputs all_json = {.n = 4, .which = {0, 1, 2, 3}};
    size_t len, json_len;
    char *s = api_encode_v2_infer("m", "v", "", rec, 2, &all_json, &len, &json_len);
    json_t *j = s ? json_loads(s, 0, NULL) : NULL;
    CHECK(j && len == json_len && len == strlen(s) && !json_object_get(j, "id"));
    json_t *o = json_array_get(json_object_get(j, "outputs"), 0);
    CHECK(o && !strcmp(json_string_value(json_object_get(o, "datatype")), "FP64") &&
          json_real_value(json_array_get(json_object_get(o, "data"), 1)) == -0.5);
    json_decref(j);
    free(s);
    api_v2_outputs mixed = {.n = 3, .which = {API_V2_LOG_ID, API_V2_IS_ANOMALY, API_V2_SCORE},
                            .binary = {1, 0, 1}};
    s = api_encode_v2_infer("m", "v", "req", rec, 2, &mixed, &len, &json_len);
    j = s ? json_loadb(s, json_len, 0, NULL) : NULL;
    json_t *outs = json_object_get(j, "outputs");
    CHECK(j && len == json_len + 2 * 8 + 2 * 8 && json_array_size(outs) == 3 &&
          !strcmp(json_string_value(json_object_get(j, "id")), "req"));
    json_t *ids = json_array_get(outs, 0), *flags = json_array_get(outs, 1);
    CHECK(ids && !json_object_get(ids, "data") &&
          json_integer_value(json_object_get(json_object_get(ids, "parameters"),
                                             "binary_data_size")) == 16);
    CHECK(flags && json_is_true(json_array_get(json_object_get(flags, "data"), 0)) &&
          !json_object_get(flags, "parameters"));
    if (s && len == json_len + 32) {
        const uint8_t *p = (const uint8_t *)s + json_len;
        CHECK(le_get64(p) == 7 && le_get64(p + 8) == 8);
        CHECK(le_get_f64(p + 16) == 1.25 && le_get_f64(p + 24) == -0.5);
    }
    json_decref(j);
    free(s);
    api_error e;
    api_error_set(&e, 400, "wrong_length", "the shape takes %d", 12);
    s = api_encode_v2_error(&e);
    j = s ? json_loads(s, 0, NULL) : NULL;
    CHECK(j && json_object_size(j) == 1 &&
          !strcmp(json_string_value(json_object_get(j, "error")),
                  "wrong_length: the shape takes 12"));
    json_decref(j);
    free(s);
    s = api_encode_v2_server();
    j = s ? json_loads(s, 0, NULL) : NULL;
    CHECK(j && !strcmp(json_string_value(json_object_get(j, "name")), "anodmd") &&
          !strcmp(json_string_value(json_object_get(j, "version")), ANODM_VERSION) &&
          !strcmp(json_string_value(json_array_get(json_object_get(j, "extensions"), 0)),
                  API_V2_EXTENSION));
    json_decref(j);
    free(s);
}
