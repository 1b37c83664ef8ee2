/* The wire format without a server: proto/api.c decoding hostile and malformed request
 * bodies and query strings into the right 4xx error, and encoding what the daemon
 * sends back in the shapes proto/openapi.yaml documents. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "check.h"
#include "fuzz/fuzz_model.h"
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
 * differently. */
static int fast_agrees_(const char *file, int line, const char *body, size_t len,
                        int max_batch) {
    api_score_request fast, slow;
    api_error e;
    int taken = api_decode_score_fast(body, len, DIM, max_batch, &fast);
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
