/* anodmd against bad input and abuse (issue 8, section 2), as a running process.
 *
 * daemon_abuse_cases sends one hostile or odd request after another (malformed, truncated
 * and deeply nested JSON, duplicate keys, huge numbers, NaN and Infinity as literals and
 * as strings, wrong sample lengths, empty and oversized batches, bodies over the limit by
 * Content-Length and chunked, broken framing, wrong content types, unknown routes and
 * methods, path traversal, bad UTF-8 in bodies and paths) and checks the exact status and
 * error code of each; after each one /healthz must answer and the SQLite log must pass
 * PRAGMA integrity_check holding exactly the rows the accepted requests added. Where
 * libmicrohttpd itself refuses a request (before anodmd sees it) its status is checked,
 * and its body is its own HTML. daemon_bad_requests (test_daemon.c) has the everyday
 * refusals; none is repeated here.
 *
 * The other tests: a body that never ends; one request with values too large for the
 * model's arithmetic among others batched with it (context mode places a batch jointly);
 * slow clients (slowloris: a byte every 250 ms, in the headers, in the body, between
 * requests, or nothing at all) are cut at timeout_seconds and do not starve others;
 * floods of connections past max_connections; a second daemon on a port in use. */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "clock.h"
#include "daemon_harness.h"
#include "le.h"

#define MAX_BODY 65536
#define MAX_BATCH 16
#define TIMEOUT_S 2              /* timeout_seconds of the slow-client daemon */
#define SLOW_CONNS 8             /* its max_connections */

/* The daemon the cases go to, and the rows its log should hold. */
static struct {
    pid_t pid;
    int port;
    char db[512], log[512];
    long long rows;
} A;

static void stop_abuse_daemon(void) {
    if (A.pid > 0) kill(A.pid, SIGKILL);
}

/* The abuse daemon, started on first use: tiny (default) and ctx, small limits. */
static int abuse_up(void) {
    if (A.pid > 0) return 0;
    const test_bundles *b = test_bundles_get();
    if (!b) return -1;
    char tiny[600], ctx[600];
    snprintf(tiny, sizeof tiny, "tiny=%s", b->tiny);
    snprintf(ctx, sizeof ctx, "ctx=%s", b->ctx);
    snprintf(A.db, sizeof A.db, "%s/abuse.db", test_tmpdir());
    snprintf(A.log, sizeof A.log, "%s/abuse_stderr.txt", test_tmpdir());
    const char *args[] = {"--model", tiny, "--model", ctx, "--db", A.db, "--max-batch", "16",
                          "--max-body-bytes", "65536", "--threads", "2", "--workers", "2",
                          "--batch-window-us", "2000", "--max-connections", "64",
                          "--timeout-seconds", "3", NULL};
    A.pid = spawn_anodmd(A.log, args, &A.port);
    if (A.pid > 0) atexit(stop_abuse_daemon);
    if (A.port) return 0;
    A.pid = 0;
    return -1;
}

/* /healthz answers and the log is intact with the rows expected. */
static void still_serving_(const char *file, int line, int port, const char *db, long long rows) {
    response h = http_request(port, "GET", "/healthz", NULL, "");
    if (h.status != 200)
        check_fail(file, line, "/healthz: %d\n%.300s", h.status, h.raw ? h.raw : "(no response)");
    response_free(&h);
    log_intact_(file, line, db, rows);
}
#define STILL_SERVING(port, db, rows) still_serving_(__FILE__, __LINE__, (port), (db), (rows))

/* ------------------------------------------------------------------ the cases */

typedef struct {
    char name[64];
    char *req;                   /* the whole request, malloc'd */
    size_t len;
    int status;                  /* 0: the connection is closed without a response */
    const char *code;            /* the JSON error code; NULL: none (2xx, or not anodmd's) */
    int rows;                    /* log rows it adds */
} abuse_case;

#define MAX_CASES 220
static abuse_case cases[MAX_CASES];
static int n_cases;

/* Add a case: the request is head (up to the blank line, exclusive) and body. */
static void add_raw(const char *name, const char *head, const char *body, size_t body_len,
                    int status, const char *code, int rows) {
    if (n_cases == MAX_CASES) {
        check_fail(__FILE__, __LINE__, "raise MAX_CASES");
        return;
    }
    abuse_case *c = &cases[n_cases];
    size_t hl = strlen(head);
    if (!(c->req = malloc(hl + 4 + body_len + 1))) {
        check_fail(__FILE__, __LINE__, "out of memory");
        return;
    }
    memcpy(c->req, head, hl);
    memcpy(c->req + hl, "\r\n\r\n", 4);
    if (body_len) memcpy(c->req + hl + 4, body, body_len);
    c->len = hl + 4 + body_len;
    c->req[c->len] = 0;
    snprintf(c->name, sizeof c->name, "%s", name);
    c->status = status;
    c->code = code;
    c->rows = rows;
    n_cases++;
}

/* METHOD path with headers (each ending "\r\n") and a body of len bytes, sent with its
 * Content-Length. */
static void add_req(const char *name, const char *method, const char *path, const char *headers,
                    const char *body, size_t len, int status, const char *code, int rows) {
    size_t cap = strlen(path) + strlen(headers) + 256;
    char *head = malloc(cap);
    if (!head) return;
    snprintf(head, cap, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s"
             "Content-Length: %zu", method, path, headers, len);
    add_raw(name, head, body, len, status, code, rows);
    free(head);
}

#define JSON_TYPE "Content-Type: application/json\r\n"

/* POST a JSON body (as text) to path. */
static void add_post(const char *name, const char *path, const char *body, int status,
                     const char *code, int rows) {
    add_req(name, "POST", path, JSON_TYPE, body, strlen(body), status, code, rows);
}

static void add_get(const char *name, const char *path, int status, const char *code) {
    add_req(name, "GET", path, "", "", 0, status, code, 0);
}

/* A growing text buffer for generated bodies. */
typedef struct {
    char *s;
    size_t len, cap;
} text;

static void put(text *t, const char *s, size_t n) {
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 4096;
        while (cap < t->len + n + 1) cap *= 2;
        char *b = realloc(t->s, cap);
        if (!b) {
            check_fail(__FILE__, __LINE__, "out of memory");
            return;
        }
        t->s = b;
        t->cap = cap;
    }
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = 0;
}
static void puts_(text *t, const char *s) { put(t, s, strlen(s)); }
static void repeat(text *t, const char *s, int n) {
    for (int i = 0; i < n; i++) puts_(t, s);
}

/* A sample of DIM values, first then value repeated, as JSON text. */
static void sample_of(text *t, const char *first, const char *value, int n) {
    puts_(t, "[");
    puts_(t, first);
    for (int i = 1; i < n; i++) {
        puts_(t, ",");
        puts_(t, value);
    }
    puts_(t, "]");
}

/* {"sample": [first, value...]} with extra members before the closing brace. */
static void add_sample(const char *name, const char *path, const char *first, const char *value,
                       int n, const char *extra, int status, const char *code, int rows) {
    text t = {0};
    puts_(&t, "{\"sample\":");
    sample_of(&t, first, value, n);
    puts_(&t, extra);
    puts_(&t, "}");
    if (t.s) add_post(name, path, t.s, status, code, rows);
    free(t.s);
}

/* An Open Inference Protocol body with this shape and data text. */
static void add_v2(const char *name, const char *shape, const char *data, const char *input_extra,
                   int status, const char *code) {
    text t = {0};
    puts_(&t, "{\"inputs\":[{\"name\":\"x\",\"shape\":");
    puts_(&t, shape);
    puts_(&t, ",\"datatype\":\"FP32\",\"data\":");
    puts_(&t, data);
    puts_(&t, input_extra);
    puts_(&t, "}]}");
    if (t.s) add_post(name, "/v2/models/tiny/infer", t.s, status, code, 0);
    free(t.s);
}

/* A V2 request with binary data: the JSON header json, then n bytes of bin, sent as
 * application/octet-stream with Inference-Header-Content-Length: length (NULL: the JSON's
 * own length; "": no such header). */
static void add_binary(const char *name, const char *json, const void *bin, size_t n,
                       const char *length, int status, const char *code, int rows) {
    size_t jl = strlen(json);
    char headers[200], own[24];
    snprintf(own, sizeof own, "%zu", jl);
    if (!length) length = own;
    snprintf(headers, sizeof headers, "Content-Type: application/octet-stream\r\n%s%s%s",
             *length ? "Inference-Header-Content-Length: " : "", length, *length ? "\r\n" : "");
    char *body = malloc(jl + n + 1);
    if (!body) return;
    memcpy(body, json, jl);
    if (n) memcpy(body + jl, bin, n);
    add_req(name, "POST", "/v2/models/tiny/infer", headers, body, jl + n, status, code, rows);
    free(body);
}

/* The JSON header of one input: shape and datatype as text, binary_data_size as given, and
 * extra text after the input (",\"outputs\":..." and the like). */
static void bin_json(char *out, size_t cap, const char *shape, const char *type,
                     const char *size, const char *extra) {
    snprintf(out, cap, "{\"inputs\":[{\"name\":\"x\",\"shape\":%s,\"datatype\":\"%s\","
             "\"parameters\":{\"binary_data_size\":%s}}]%s}", shape, type, size, extra);
}

/* The binary tensor data extension: lengths that disagree (the header's with the body,
 * binary_data_size with the shape and with the bytes there), types, values and limits. */
static void build_binary_cases(void) {
    enum { BYTES = DIM * 4 };
    uint8_t f32[2 * DIM * 8], nan32[BYTES], huge32[BYTES], big64[DIM * 8], nan64[DIM * 8];
    for (int i = 0; i < 2 * DIM * 2; i++) le_put_f32(f32 + 4 * i, 0.5f);
    for (int i = 0; i < DIM; i++) {
        le_put_f32(nan32 + 4 * i, i == 7 ? NAN : 0.25f);
        le_put_f32(huge32 + 4 * i, 3e38f);
        le_put_f64(big64 + 8 * i, i == 3 ? 1e39 : 0.5);
        le_put_f64(nan64 + 8 * i, i == 3 ? -INFINITY : 0.5);
    }
    char json[600], size[24], shape_size[24];
    snprintf(size, sizeof size, "%d", BYTES);
    snprintf(shape_size, sizeof shape_size, "%d", 17 * BYTES);
    bin_json(json, sizeof json, "[1,64]", "FP32", size, "");
    add_binary("V2 binary: one FP32 sample", json, f32, BYTES, NULL, 200, NULL, 1);
    add_binary("V2 binary: header length past the body", json, f32, BYTES, "99999", 400,
               "invalid_request", 0);
    add_binary("V2 binary: header length the whole body", json, f32, BYTES, "", 400,
               "malformed_json", 0);
    add_binary("V2 binary: header length 2^64", json, f32, BYTES, "18446744073709551616", 400,
               "invalid_request", 0);
    add_binary("V2 binary: header length -1", json, f32, BYTES, "-1", 400, "invalid_request", 0);
    add_binary("V2 binary: header length 12abc", json, f32, BYTES, "12abc", 400,
               "invalid_request", 0);
    add_binary("V2 binary: header length 0", json, f32, BYTES, "0", 400, "malformed_json", 0);
    add_binary("V2 binary: header length inside the JSON", json, f32, BYTES, "20", 400,
               "malformed_json", 0);
    add_binary("V2 binary: truncated data", json, f32, BYTES - 1, NULL, 400, "wrong_length", 0);
    add_binary("V2 binary: no data at all", json, f32, 0, NULL, 400, "wrong_length", 0);
    add_binary("V2 binary: a byte left over", json, f32, BYTES + 1, NULL, 400, "wrong_length", 0);
    add_binary("V2 binary: a sample left over", json, f32, 2 * BYTES, NULL, 400, "wrong_length",
               0);
    add_binary("V2 binary: NaN", json, nan32, BYTES, NULL, 400, "not_finite", 0);
    add_binary("V2 binary: 3e38 everywhere (too large to score)", json, huge32, BYTES, NULL, 400,
               "not_finite", 0);
    bin_json(json, sizeof json, "[1,64]", "FP32", "255", "");
    add_binary("V2 binary: binary_data_size short of the shape", json, f32, 255, NULL, 400,
               "wrong_length", 0);
    bin_json(json, sizeof json, "[1,64]", "FP32", "512", "");
    add_binary("V2 binary: binary_data_size past the shape", json, f32, 512, NULL, 400,
               "wrong_length", 0);
    bin_json(json, sizeof json, "[1,64]", "FP32", "9223372036854775807", "");
    add_binary("V2 binary: binary_data_size 2^63-1", json, f32, BYTES, NULL, 400, "wrong_length",
               0);
    bin_json(json, sizeof json, "[1,64]", "FP32", "-256", "");
    add_binary("V2 binary: binary_data_size negative", json, f32, BYTES, NULL, 400,
               "invalid_request", 0);
    bin_json(json, sizeof json, "[1,64]", "FP32", "\"256\"", "");
    add_binary("V2 binary: binary_data_size a string", json, f32, BYTES, NULL, 400,
               "invalid_request", 0);
    bin_json(json, sizeof json, "[1,64]", "FP32", "256.0", "");
    add_binary("V2 binary: binary_data_size a real", json, f32, BYTES, NULL, 400,
               "invalid_request", 0);
    bin_json(json, sizeof json, "[1,64]", "FP32", size, "");
    add_binary("V2 binary: no Inference-Header-Content-Length", json, f32, 0, "", 400,
               "invalid_request", 0);
    snprintf(json, sizeof json, "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,64],\"datatype\":"
             "\"FP32\",\"data\":[],\"parameters\":{\"binary_data_size\":%d}}]}", BYTES);
    add_binary("V2 binary: data and binary data", json, f32, BYTES, NULL, 400, "invalid_request",
               0);
    snprintf(json, sizeof json, "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,64],\"datatype\":"
             "\"FP32\",\"data\":[0");
    for (int i = 1; i < DIM; i++) strncat(json, ",0", sizeof json - strlen(json) - 1);
    strncat(json, "]}]}", sizeof json - strlen(json) - 1);
    add_binary("V2 JSON data and bytes after it", json, f32, 4, NULL, 400, "wrong_length", 0);
    add_binary("V2 JSON data framed by its own length", json, f32, 0, NULL, 200, NULL, 1);
    snprintf(size, sizeof size, "%d", DIM * 8);
    bin_json(json, sizeof json, "[1,64]", "FP64", size, "");
    add_binary("V2 binary: FP64 beyond float", json, big64, DIM * 8, NULL, 400, "not_finite", 0);
    add_binary("V2 binary: FP64 -inf", json, nan64, DIM * 8, NULL, 400, "not_finite", 0);
    bin_json(json, sizeof json, "[1,64]", "INT32", "256", "");
    add_binary("V2 binary: INT32", json, f32, BYTES, NULL, 400, "invalid_request", 0);
    bin_json(json, sizeof json, "[1,64]", "BYTES", "256", "");
    add_binary("V2 binary: BYTES", json, f32, BYTES, NULL, 400, "invalid_request", 0);
    bin_json(json, sizeof json, "[1,65]", "FP32", "260", "");
    add_binary("V2 binary: shape [1,65]", json, f32, 260, NULL, 400, "invalid_request", 0);
    bin_json(json, sizeof json, "[17,64]", "FP32", shape_size, "");
    add_binary("V2 binary: 17 samples", json, f32, BYTES, NULL, 413, "batch_too_large", 0);
    bin_json(json, sizeof json, "[1000000,64]", "FP32", "256000000", "");
    add_binary("V2 binary: a million samples", json, f32, BYTES, NULL, 413, "batch_too_large", 0);
    /* What the request asks back. */
    snprintf(size, sizeof size, "%d", BYTES);
    const struct {
        const char *name, *extra;
        int status;
        const char *code;
    } asks[] = {
        {"all outputs binary", ",\"parameters\":{\"binary_data_output\":true}", 200, NULL},
        {"one output, binary", ",\"outputs\":[{\"name\":\"score\",\"parameters\":"
                               "{\"binary_data\":true}}]", 200, NULL},
        {"binary_data_output \"yes\"", ",\"parameters\":{\"binary_data_output\":\"yes\"}", 400,
         "invalid_request"},
        {"binary_data 1", ",\"outputs\":[{\"name\":\"score\",\"parameters\":"
                          "{\"binary_data\":1}}]", 400, "invalid_request"},
        {"parameters an array", ",\"parameters\":[]", 400, "invalid_request"},
        {"an unknown output", ",\"outputs\":[{\"name\":\"scores\"}]", 400, "invalid_request"},
        {"an output twice", ",\"outputs\":[{\"name\":\"score\"},{\"name\":\"score\"}]", 400,
         "invalid_request"},
        {"five outputs", ",\"outputs\":[{\"name\":\"score\"},{\"name\":\"p_value\"},"
                         "{\"name\":\"log_id\"},{\"name\":\"is_anomaly\"},{\"name\":\"score\"}]",
         400, "invalid_request"},
        {"an output without a name", ",\"outputs\":[{}]", 400, "invalid_request"},
        {"an unknown output field", ",\"outputs\":[{\"name\":\"score\",\"shape\":[1]}]", 400,
         "unknown_field"},
        {"outputs an object", ",\"outputs\":{\"name\":\"score\"}", 400, "invalid_request"},
    };
    for (size_t i = 0; i < sizeof asks / sizeof asks[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "V2 binary: %s", asks[i].name);
        bin_json(json, sizeof json, "[1,64]", "FP32", size, asks[i].extra);
        add_binary(name, json, f32, BYTES, NULL, asks[i].status, asks[i].code,
                   asks[i].status == 200);
    }
    add_req("octet-stream to /v1", "POST", "/v1/score",
            "Content-Type: application/octet-stream\r\n", "{}", 2, 415, "unsupported_media_type",
            0);
}

static void build_cases(void) {
    char valid[1024];
    single_body(valid, sizeof valid, "0.5", DIM);
    const size_t vlen = strlen(valid);
    char one[600];
    zero_sample(one, sizeof one, "0.25", DIM);
    char body[4096];
    text t = {0};

    /* Malformed and truncated JSON. */
    const size_t cuts[] = {1, 9, vlen / 2, vlen - 1};
    for (size_t i = 0; i < 4; i++) {
        char name[64];
        snprintf(name, sizeof name, "truncated at %zu of %zu", cuts[i], vlen);
        add_req(name, "POST", "/v1/score", JSON_TYPE, valid, cuts[i], 400, "malformed_json", 0);
    }
    snprintf(body, sizeof body, "%s x", valid);
    add_post("trailing garbage", "/v1/score", body, 400, "malformed_json", 0);
    snprintf(body, sizeof body, "%s%s", valid, valid);
    add_post("two objects", "/v1/score", body, 400, "malformed_json", 0);
    snprintf(body, sizeof body, "{'sample':%s}", one);
    add_post("single quotes", "/v1/score", body, 400, "malformed_json", 0);
    add_post("trailing comma", "/v1/score", "{\"sample\":[0.5,],}", 400, "malformed_json", 0);
    snprintf(body, sizeof body, "%s", valid);
    body[12] = 0;                /* a NUL byte inside the sample */
    add_req("NUL byte in the body", "POST", "/v1/score", JSON_TYPE, body, vlen, 400,
            "malformed_json", 0);
    snprintf(body, sizeof body, "\xEF\xBB\xBF%s", valid);
    add_post("byte order mark", "/v1/score", body, 400, "malformed_json", 0);
    snprintf(body, sizeof body, "/* note */ %s", valid);
    add_post("comment", "/v1/score", body, 400, "malformed_json", 0);
    add_post("white space only", "/v1/score", " \n\t ", 400, "malformed_json", 0);
    add_post("null", "/v1/score", "null", 400, "malformed_json", 0);
    add_post("a string", "/v1/score", "\"sample\"", 400, "malformed_json", 0);
    add_post("a number", "/v1/score", "12", 400, "malformed_json", 0);

    /* Deeply nested JSON: past jansson's depth limit, and within it where a number goes. */
    t.len = 0;
    repeat(&t, "[", 3000);
    repeat(&t, "]", 3000);
    if (t.s) add_post("3000 nested arrays", "/v1/score", t.s, 400, "malformed_json", 0);
    t.len = 0;
    puts_(&t, "{\"sample\":");
    repeat(&t, "[", 3000);
    repeat(&t, "]", 3000);
    puts_(&t, "}");
    if (t.s) add_post("3000 nested arrays as the sample", "/v1/score", t.s, 400,
                      "malformed_json", 0);
    t.len = 0;
    repeat(&t, "{\"a\":", 5000);
    puts_(&t, "1");
    repeat(&t, "}", 5000);
    if (t.s) add_post("5000 nested objects", "/v1/score", t.s, 400, "malformed_json", 0);
    t.len = 0;
    puts_(&t, "{\"sample\":[");
    repeat(&t, "[", 100);
    puts_(&t, "1");
    repeat(&t, "]", 100);
    repeat(&t, ",0", DIM - 1);
    puts_(&t, "]}");
    if (t.s) add_post("100 nested arrays as a value", "/v1/score", t.s, 400, "not_a_number", 0);

    /* Duplicate keys, also spelled differently and inside a V2 input. */
    snprintf(body, sizeof body, "{\"sample\":%s,\"id\":\"a\",\"id\":\"b\"}", one);
    add_post("duplicate id", "/v1/score", body, 400, "duplicate_key", 0);
    snprintf(body, sizeof body, "{\"id\":\"a\",\"\\u0069d\":\"b\",\"sample\":%s}", one);
    add_post("duplicate key as an escape", "/v1/score", body, 400, "duplicate_key", 0);
    add_post("duplicate key in a V2 input", "/v2/models/tiny/infer",
             "{\"inputs\":[{\"name\":\"x\",\"name\":\"y\",\"shape\":[1,64],\"datatype\":\"FP32\","
             "\"data\":[]}]}", 400, "duplicate_key", 0);

    /* Huge numbers: beyond double, beyond float, and finite floats too large to score. */
    add_sample("1e999", "/v1/score", "1e999", "0", DIM, "", 400, "malformed_json", 0);
    add_sample("-1e999", "/v1/score", "-1e999", "0", DIM, "", 400, "malformed_json", 0);
    t.len = 0;
    repeat(&t, "9", 400);
    if (t.s) {
        char *digits = strdup(t.s);
        if (digits) add_sample("a 400-digit integer", "/v1/score", digits, "0", DIM, "", 400,
                               "malformed_json", 0);
        free(digits);
    }
    add_sample("3.5e38, past float", "/v1/score", "3.5e38", "0", DIM, "", 400, "not_finite", 0);
    add_sample("3e38 everywhere (single mode)", "/v1/score", "3e38", "3e38", DIM, "", 400,
               "not_finite", 0);
    add_sample("-3e38 everywhere (context mode)", "/v1/models/ctx/score", "-3e38", "-3e38", DIM,
               "", 400, "not_finite", 0);
    add_sample("1e-400 underflows to 0", "/v1/score", "1e-400", "0.5", DIM, "", 200, NULL, 1);
    add_sample("-0.0 and a subnormal", "/v1/score", "-0.0", "4.9e-324", DIM, "", 200, NULL, 1);

    /* NaN and Infinity, as literals and as strings. */
    add_sample("NaN as a string", "/v1/score", "\"NaN\"", "0", DIM, "", 400, "not_a_number", 0);
    add_sample("Infinity as a string", "/v1/score", "\"Infinity\"", "0", DIM, "", 400,
               "not_a_number", 0);
    add_sample("-inf as a string", "/v1/score", "0", "\"-inf\"", DIM, "", 400, "not_a_number", 0);
    add_sample("Infinity literal", "/v1/score", "Infinity", "0", DIM, "", 400, "malformed_json", 0);
    add_sample("-Infinity literal", "/v1/score", "-Infinity", "0", DIM, "", 400,
               "malformed_json", 0);
    add_sample("nan literal", "/v1/score", "nan", "0", DIM, "", 400, "malformed_json", 0);
    t.len = 0;
    sample_of(&t, "\"NaN\"", "0", DIM);
    if (t.s) add_v2("V2 NaN as a string", "[1,64]", t.s, "", 400, "not_a_number");

    /* Wrong sample lengths, empty and oversized batches. */
    add_sample("65 values", "/v1/score", "0", "0", DIM + 1, "", 400, "wrong_length", 0);
    snprintf(body, sizeof body, "{\"samples\":[%s,[0,0,0],%s]}", one, one);
    add_post("short second sample of three", "/v1/score", body, 400, "wrong_length", 0);
    add_post("an empty sample", "/v1/score", "{\"sample\":[]}", 400, "wrong_length", 0);
    add_v2("V2 shape [1,65]", "[1,65]", "[]", "", 400, "invalid_request");
    add_v2("V2 empty batch", "[0,64]", "[]", "", 400, "empty_batch");
    t.len = 0;
    puts_(&t, "{\"samples\":[[]");
    repeat(&t, ",[]", MAX_BATCH);
    puts_(&t, "]}");
    if (t.s) add_post("17 empty samples: the batch limit first", "/v1/score", t.s, 413,
                      "batch_too_large", 0);
    t.len = 0;
    puts_(&t, "{\"samples\":[0");
    repeat(&t, ",0", 999);
    puts_(&t, "]}");
    if (t.s) add_post("1000 samples", "/v1/score", t.s, 413, "batch_too_large", 0);
    add_v2("V2 a million samples", "[1000000,64]", "[]", "", 413, "batch_too_large");

    /* Bodies at and over max_body_bytes, and framing that is broken or ambiguous. */
    char *big = malloc(MAX_BODY + 2);
    if (big) {
        memset(big, ' ', MAX_BODY + 1);
        memcpy(big, valid, vlen);
        add_req("a body of exactly max_body_bytes", "POST", "/v1/score", JSON_TYPE, big, MAX_BODY,
                200, NULL, 1);
        add_req("a body one byte over", "POST", "/v1/score", JSON_TYPE, big, MAX_BODY + 1, 413,
                "body_too_large", 0);
        free(big);
    }
    add_raw("Content-Length 2^64", "POST /v1/score HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            JSON_TYPE "Content-Length: 18446744073709551616", "", 0, 413, NULL, 0);
    add_raw("Content-Length -1", "POST /v1/score HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            JSON_TYPE "Content-Length: -1", "", 0, 400, NULL, 0);
    add_raw("Content-Length abc", "POST /v1/score HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            JSON_TYPE "Content-Length: abc", "", 0, 400, NULL, 0);
    snprintf(body, sizeof body, "%zx\r\n%s\r\n0\r\n\r\n", vlen, valid);
    add_raw("Content-Length and chunked", "POST /v1/score HTTP/1.1\r\nHost: x\r\n"
            "Connection: close\r\n" JSON_TYPE "Content-Length: 5\r\nTransfer-Encoding: chunked",
            body, strlen(body), 400, "invalid_request", 0);
    add_raw("Transfer-Encoding gzip", "POST /v1/score HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            JSON_TYPE "Transfer-Encoding: gzip", valid, vlen, 400, "invalid_request", 0);
    add_raw("a chunk size that is not hex", "POST /v1/score HTTP/1.1\r\nHost: x\r\n"
            "Connection: close\r\n" JSON_TYPE "Transfer-Encoding: chunked", "zz\r\nabc\r\n0\r\n\r\n",
            strlen("zz\r\nabc\r\n0\r\n\r\n"), 400, NULL, 0);
    add_raw("Expect 100-continue over the limit", "POST /v1/score HTTP/1.1\r\nHost: x\r\n"
            "Connection: close\r\nExpect: 100-continue\r\n" JSON_TYPE "Content-Length: 99999999",
            "", 0, 413, "body_too_large", 0);
    snprintf(body, sizeof body, "%zx\r\n%s\r\n0\r\n\r\n", vlen, valid);
    add_raw("chunked, within the limit", "POST /v1/score HTTP/1.1\r\nHost: x\r\n"
            "Connection: close\r\n" JSON_TYPE "Transfer-Encoding: chunked", body, strlen(body), 200,
            NULL, 1);

    /* Content types: only JSON is read (or no type at all). */
    add_req("text/plain", "POST", "/v1/score", "Content-Type: text/plain\r\n", valid, vlen, 415,
            "unsupported_media_type", 0);
    add_req("a form", "POST", "/v1/score", "Content-Type: application/x-www-form-urlencoded\r\n",
            valid, vlen, 415, "unsupported_media_type", 0);
    add_req("multipart", "POST", "/v1/score", "Content-Type: multipart/form-data; boundary=x\r\n",
            valid, vlen, 415, "unsupported_media_type", 0);
    add_req("application/jsonx", "POST", "/v1/score", "Content-Type: application/jsonx\r\n",
            valid, vlen, 415, "unsupported_media_type", 0);
    add_req("V2 as text/plain", "POST", "/v2/models/tiny/infer", "Content-Type: text/plain\r\n",
            "{}", 2, 415, "unsupported_media_type", 0);
    add_req("JSON with a charset", "POST", "/v1/score",
            "Content-Type: application/json; charset=utf-8\r\n", valid, vlen, 200, NULL, 1);
    add_req("JSON in capitals", "POST", "/v1/score", "Content-Type: APPLICATION/JSON\r\n", valid,
            vlen, 200, NULL, 1);
    add_req("no content type", "POST", "/v1/score", "", valid, vlen, 200, NULL, 1);

    /* Unknown routes and methods; requests libmicrohttpd refuses before anodmd sees them. */
    add_req("PUT", "PUT", "/v1/score", JSON_TYPE, valid, vlen, 405, "method_not_allowed", 0);
    add_req("BREW", "BREW", "/v1/score", "", "", 0, 405, "method_not_allowed", 0);
    add_req("PATCH a GET route", "PATCH", "/v1/models/tiny", "", "", 0, 405, "method_not_allowed",
            0);
    add_req("HEAD /healthz", "HEAD", "/healthz", "", "", 0, 405, NULL, 0);
    add_req("OPTIONS *", "OPTIONS", "*", "", "", 0, 404, "not_found", 0);
    add_get("too deep", "/v1/scores/1/x/y/z", 404, "not_found");
    add_get("one segment too many", "/v1/models/tiny/score/extra", 404, "not_found");
    add_get("capitals", "/v1/SCORES", 404, "not_found");
    add_get("a trailing slash", "/healthz/", 404, "not_found");
    add_get("an absolute URI", "http://elsewhere.example/healthz", 404, "not_found");
    t.len = 0;
    puts_(&t, "/v1/");
    repeat(&t, "a", 10000);
    if (t.s) add_get("a 10 kB path", t.s, 404, "not_found");
    repeat(&t, "a", 30000);
    if (t.s) add_get("a 40 kB path", t.s, 414, NULL);
    t.len = 0;
    puts_(&t, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: ");
    repeat(&t, "a", 40000);
    if (t.s) add_raw("a 40 kB header", t.s, "", 0, 431, NULL, 0);
    t.len = 0;
    puts_(&t, "/v1/scores?a=b");
    repeat(&t, "&a=b", 600);
    /* libmicrohttpd runs out of its per-connection memory and answers nothing: the
     * connection is cut at timeout_seconds (3 s here), like any other that stalls. */
    if (t.s) add_get("600 query parameters", t.s, 0, NULL);
    add_raw("not HTTP", "HELLO", "", 0, 0, NULL, 0);
    add_raw("HTTP/9.9", "GET /healthz HTTP/9.9\r\nHost: x", "", 0, 505, NULL, 0);
    add_raw("HTTP/1.0 without Host", "GET /healthz HTTP/1.0", "", 0, 200, NULL, 0);

    /* Path traversal: routes are names, never files, and the dashboard's files are embedded. */
    add_get("../ to /etc/passwd", "/../../../../etc/passwd", 404, "not_found");
    add_get("%2e%2e", "/%2e%2e/%2e%2e/etc/passwd", 404, "not_found");
    add_get("dashboard/../", "/dashboard/../../etc/passwd", 404, "not_found");
    add_get("dashboard/..%2f", "/dashboard/..%2f..%2fetc%2fpasswd", 404, "not_found");
    add_get("dashboard/%2e%2e%2f", "/dashboard/%2e%2e%2f%2e%2e%2fetc%2fpasswd", 404, "not_found");
    add_get("dashboard/....//", "/dashboard/....//....//etc/passwd", 404, "not_found");
    add_get("a model named ../..", "/v1/models/..%2f..%2fetc%2fpasswd/map", 404, "not_found");
    add_post("a model named ..", "/v1/models/../score", valid, 404, "unknown_model", 0);
    add_get("%00 ends no path early", "/v1/models/tiny%00/map", 404, "unknown_model");
    add_get("%00 in a dashboard file", "/dashboard/app.js%00.png", 404, "not_found");
    add_get("//etc/passwd", "//etc/passwd", 404, "not_found");

    /* Bad UTF-8, in bodies and in paths and parameters that messages quote. */
    snprintf(body, sizeof body, "{\"sample\":%s,\"id\":\"\xff\"}", one);
    add_post("0xff in a string", "/v1/score", body, 400, "malformed_json", 0);
    snprintf(body, sizeof body, "{\"sample\":%s,\"id\":\"\xc0\xaf\"}", one);
    add_post("an overlong form", "/v1/score", body, 400, "malformed_json", 0);
    snprintf(body, sizeof body, "{\"sample\":%s,\"id\":\"\\ud800\"}", one);
    add_post("a lone surrogate escape", "/v1/score", body, 400, "malformed_json", 0);
    snprintf(body, sizeof body, "{\"sample\":%s,\"id\":\"ab\xe2\x82\"}", one);
    add_post("a cut sequence", "/v1/score", body, 400, "malformed_json", 0);
    snprintf(body, sizeof body, "\xff%s", valid);
    add_post("0xff outside strings", "/v1/score", body, 400, "malformed_json", 0);
    add_get("0xff as a model name", "/v1/models/%ff", 404, "unknown_model");
    add_get("0xff in a long model name", "/v1/models/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            "aaaaaaaaaaaaaaa%c3%a9/map", 404, "unknown_model");
    snprintf(body, sizeof body, "{\"sample\":%s,\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
             "aaaaaaaaaaaaaaa\xc3\xa9\":1}", one);
    add_post("a field name cut inside a character", "/v1/score", body, 400, "unknown_field", 0);
    add_get("0xff as a source filter", "/v1/scores?source=%ff", 200, NULL);
    add_get("a non-ASCII model filter", "/v1/scores?model=%c3%a9", 400, "invalid_query");
    snprintf(body, sizeof body, "{\"sample\":%s,\"id\":\"caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80\"}",
             one);
    add_post("a non-ASCII id", "/v1/score", body, 200, NULL, 1);
    add_req("0xff in an Authorization header", "GET", "/v1/models", "Authorization: Bearer \xff\r\n",
            "", 0, 200, NULL, 0);
    free(t.s);
    build_binary_cases();
}

/* Every case, each followed by /healthz and a look at the log. */
TEST(daemon_abuse_cases) {
    if (abuse_up()) return;
    build_cases();
    A.rows = log_rows_at(A.db);
    for (int i = 0; i < n_cases; i++) {
        abuse_case *c = &cases[i];
        response r = http_exchange(A.port, c->req, c->len);
        char buf[32];
        int v2_shape, v2_path = strstr(c->req, " /v2/") && strstr(c->req, " /v2/") <
                                                               strstr(c->req, "\r\n");
        const char *code = error_code(&r, buf, &v2_shape);
        int ok = r.status == c->status &&
                 (c->code ? code && !strcmp(code, c->code) && v2_shape == v2_path : !code) &&
                 (!r.raw || !strstr(r.raw, "root:x:0:0"));
        if (!ok)
            check_fail(__FILE__, __LINE__, "case %d (%s): want %d %s; got:\n%.600s", i, c->name,
                       c->status, c->code ? c->code : "", r.raw ? r.raw : "(no response)");
        response_free(&r);
        A.rows += c->rows;
        STILL_SERVING(A.port, A.db, A.rows);
        A.rows = log_rows_at(A.db);   /* after a failure, the next case starts from the truth */
        free(c->req);
    }
    n_cases = 0;
}

/* ------------------------------------------------------------------ bodies without end */

/* A chunked body that never ends is not read for ever: past twice max_body_bytes the
 * connection is closed, long before the client has pushed 32 MB (loopback buffers hold
 * a few). */
TEST(daemon_abuse_endless_body) {
    if (abuse_up()) return;
    int fd = tcp_connect(A.port, 10);
    CHECK(fd >= 0);
    if (fd < 0) return;
    const char head[] = "POST /v1/score HTTP/1.1\r\nHost: x\r\n" JSON_TYPE
                        "Transfer-Encoding: chunked\r\n\r\n";
    enum { CHUNK = 65536 };
    static char chunk[CHUNK + 16];
    int h = snprintf(chunk, sizeof chunk, "%x\r\n", CHUNK);
    memset(chunk + h, ' ', CHUNK);
    memcpy(chunk + h + CHUNK, "\r\n", 2);
    size_t chunk_len = (size_t)h + CHUNK + 2, sent = 0;
    int closed = send(fd, head, sizeof head - 1, MSG_NOSIGNAL) < 0;
    const double t0 = clock_seconds();
    while (!closed && sent < ((size_t)32 << 20) && clock_seconds() - t0 < 30) {
        struct pollfd p = {.fd = fd, .events = POLLIN | POLLOUT};
        if (poll(&p, 1, 1000) <= 0) continue;
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            char buf[256];
            ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
            closed = n == 0 || (n < 0 && errno != EAGAIN);
            if (n > 0) break;     /* an answer: checked below */
        } else if (p.revents & POLLOUT) {
            ssize_t n = send(fd, chunk, chunk_len, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0 && errno != EAGAIN) closed = 1;
            if (n > 0) sent += (size_t)n;
            /* a partial chunk breaks the framing: finish it before the next */
            while (n > 0 && (size_t)n < chunk_len && !closed) {
                ssize_t m = send(fd, chunk + n, chunk_len - (size_t)n, MSG_NOSIGNAL);
                if (m <= 0) closed = 1;
                else n += m, sent += (size_t)m;
            }
        }
    }
    close(fd);
    CHECK_MSG(closed && sent < ((size_t)32 << 20),
              "endless body: %s after %zu bytes", closed ? "closed" : "still open", sent);
    STILL_SERVING(A.port, A.db, A.rows);
}

/* ------------------------------------------------------------------ values too large */

typedef struct {
    int port;
    const char *path;
    char *body;
    pthread_barrier_t *go;
    response r;
} poster;

static void *post_at_barrier(void *arg) {
    poster *p = arg;
    pthread_barrier_wait(p->go);
    p->r = http_request(p->port, "POST", p->path, p->body, "");
    return NULL;
}

/* In context mode a batch is placed jointly, so one request with values too large for the
 * arithmetic would turn the positions of every request batched with it (and then of every
 * later one, through the sliding window) into NaN, which reads as "not an anomaly". Now
 * that request alone is refused, the others are scored, and the window stays finite. */
TEST(daemon_abuse_context_not_poisoned) {
    if (abuse_up()) return;
    enum { GOOD = 8, ROUNDS = 3 };
    char huge[2048];
    {
        text t = {0};
        puts_(&t, "{\"sample\":");
        sample_of(&t, "3e38", "3e38", DIM);
        puts_(&t, "}");
        snprintf(huge, sizeof huge, "%s", t.s ? t.s : "");
        free(t.s);
    }
    float x[GOOD * DIM];
    for (int round = 0; round < ROUNDS; round++) {
        fresh_samples(x, GOOD, 4000u + (uint64_t)round, round == 1);
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, GOOD + 1);
        poster p[GOOD + 1];
        pthread_t t[GOOD + 1];
        for (int i = 0; i <= GOOD; i++) {
            p[i] = (poster){.port = A.port, .path = "/v1/models/ctx/score", .go = &go,
                            .body = i < GOOD ? score_body(x + i * DIM, 0, NULL) : huge};
            CHECK(pthread_create(&t[i], NULL, post_at_barrier, &p[i]) == 0);
        }
        for (int i = 0; i <= GOOD; i++) pthread_join(t[i], NULL);
        pthread_barrier_destroy(&go);
        EXPECT_STATUS(p[GOOD].r, 400, "not_finite");
        for (int i = 0; i < GOOD; i++) {
            EXPECT_STATUS(p[i].r, 200, NULL);
            json_t *res = json_array_get(json_object_get(p[i].r.json, "results"), 0);
            json_t *pos = json_object_get(res, "position");
            CHECK_MSG(json_is_number(json_object_get(res, "score")) &&
                      json_is_number(json_array_get(pos, 0)) &&
                      json_is_number(json_array_get(pos, 1)),
                      "round %d, request %d: %.300s", round, i, p[i].r.raw ? p[i].r.raw : "");
            if (round == 1) CHECK(json_is_true(json_object_get(res, "is_anomaly")));
            A.rows += p[i].r.status == 200;
            response_free(&p[i].r);
            free(p[i].body);
        }
        response_free(&p[GOOD].r);
    }
    /* The window holds finite positions only. */
    response m = http_request(A.port, "GET", "/v1/models/ctx/map?max_points=1", NULL, "");
    json_t *win = json_object_get(m.json, "window");
    CHECK(json_array_size(win) >= GOOD);
    for (size_t i = 0; i < json_array_size(win); i++) {
        json_t *xy = json_array_get(win, i);
        CHECK_MSG(json_is_number(json_array_get(xy, 0)) && json_is_number(json_array_get(xy, 1)),
                  "window point %zu is not finite", i);
    }
    response_free(&m);
    STILL_SERVING(A.port, A.db, A.rows);
}

/* Every magnitude from 1e5 to 1e38, in one value of a normal sample and in all of them,
 * for both models: each answer is a 200 with finite numbers throughout, or 400
 * not_finite (nothing logged), and the daemon keeps serving. Somewhere in between the
 * latents stay finite but the map position does not (the fuzz_router finding, now
 * fuzz_regression_router_nan_position); under asan-test UBSan watches the daemon. */
TEST(daemon_abuse_magnitudes) {
    if (abuse_up()) return;
    int scored = 0, refused = 0;
    float x[DIM];
    for (int model = 0; model < 2; model++)
        for (int all = 0; all < 2; all++)
            for (int e = 5; e <= 38; e++) {
                fresh_samples(x, 1, 600u + (uint64_t)e, 0);
                for (int i = 0; i < (all ? DIM : 1); i++) x[i] = (float)pow(10.0, e);
                char *body = score_body(x, 0, NULL);
                response r = http_request(A.port, "POST", model ? "/v1/models/ctx/score"
                                                                : "/v1/models/tiny/score",
                                          body, "");
                free(body);
                json_t *res = json_array_get(json_object_get(r.json, "results"), 0);
                json_t *pos = json_object_get(res, "position");
                json_t *err = json_object_get(r.json, "error");
                int ok200 = r.status == 200 && json_is_number(json_object_get(res, "score")) &&
                            json_is_number(json_object_get(res, "p_value")) &&
                            json_is_number(json_array_get(pos, 0)) &&
                            json_is_number(json_array_get(pos, 1));
                int ok400 = r.status == 400 && err && jstr(err, "code") &&
                            !strcmp(jstr(err, "code"), "not_finite");
                CHECK_MSG(ok200 || ok400, "1e%d in %s value(s), model %s: %.400s", e,
                          all ? "every" : "one", model ? "ctx" : "tiny",
                          r.raw ? r.raw : "(no response)");
                scored += ok200;
                refused += ok400;
                A.rows += ok200;
                response_free(&r);
            }
    CHECK_MSG(scored > 0 && refused > 0, "%d scored, %d refused", scored, refused);
    STILL_SERVING(A.port, A.db, A.rows);
}

/* ------------------------------------------------------------------ slow clients, floods */

/* The slow-client daemon: timeout_seconds 2, max_connections 8 over 2 threads. */
static struct {
    pid_t pid;
    int port;
    char db[512], log[512];
} S;

static void stop_slow_daemon(void) {
    if (S.pid > 0) kill(S.pid, SIGKILL);
}

static int slow_up(void) {
    if (S.pid > 0) return 0;
    const test_bundles *b = test_bundles_get();
    if (!b) return -1;
    char tiny[600], timeout[16], conns[16];
    snprintf(tiny, sizeof tiny, "tiny=%s", b->tiny);
    snprintf(timeout, sizeof timeout, "%d", TIMEOUT_S);
    snprintf(conns, sizeof conns, "%d", SLOW_CONNS);
    snprintf(S.db, sizeof S.db, "%s/slow.db", test_tmpdir());
    snprintf(S.log, sizeof S.log, "%s/slow_stderr.txt", test_tmpdir());
    const char *args[] = {"--model", tiny, "--db", S.db, "--threads", "2", "--workers", "1",
                          "--timeout-seconds", timeout, "--max-connections", conns, NULL};
    S.pid = spawn_anodmd(S.log, args, &S.port);
    if (S.pid > 0) atexit(stop_slow_daemon);
    if (S.port) return 0;
    S.pid = 0;
    return -1;
}

typedef struct {
    int port;
    pthread_barrier_t *go;
    int status;
    double took;
} flood_client;

static void *flood_one(void *arg) {
    flood_client *f = arg;
    pthread_barrier_wait(f->go);
    double t0 = clock_seconds();
    response r = http_request(f->port, "GET", "/v1/models", NULL, "");
    f->took = clock_seconds() - t0;
    f->status = r.status;
    response_free(&r);
    return NULL;
}

/* A slow client: what it dribbles, a byte per tick, after sending `first` at once. */
typedef struct {
    const char *kind;
    const char *first, *dribble;
    int fd;
    size_t at;
    double start, closed_at;     /* when it connected (or its reply came), when it was cut */
    int answered;                /* a reply came before the drip (the keep-alive kind) */
} slow_client;

static void slow_open(slow_client *c, int port) {
    c->fd = tcp_connect(port, 10);
    c->at = 0;
    c->closed_at = 0;
    c->answered = 0;
    c->start = clock_seconds();
    if (c->fd >= 0 && *c->first) send(c->fd, c->first, strlen(c->first), MSG_NOSIGNAL);
}

/* One tick: see whether the server closed it (reading what it says), then send a byte. */
static void slow_tick(slow_client *c) {
    if (c->fd < 0 || c->closed_at) return;
    char buf[4096];
    for (;;) {
        ssize_t n = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {             /* the keep-alive kind's first reply: the clock starts now */
            c->answered = 1;
            c->start = clock_seconds();
            continue;
        }
        if (n == 0 || errno != EAGAIN) c->closed_at = clock_seconds();
        break;
    }
    if (!c->closed_at && c->dribble[c->at])
        if (send(c->fd, c->dribble + c->at++, 1, MSG_NOSIGNAL) < 0) c->closed_at = clock_seconds();
}

static const char SLOW_HEADERS[] =
    "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: "
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
static const char SLOW_BODY_HEAD[] =
    "POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\n" JSON_TYPE "Content-Length: 200\r\n\r\n";
static const char SLOW_BODY[] =
    "{\"sample\": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, "
    "0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,";
static const char KEEPALIVE_FIRST[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/* Drive n slow clients, a tick every 250 ms, until every one is cut (or 20 s pass);
 * with probe set, a normal request every tick too, each of which must be answered. */
static void drive(slow_client *c, int n, int probe) {
    int probes = 0, answered = 0;
    for (double t0 = clock_seconds(); clock_seconds() - t0 < (under_valgrind() ? 120 : 20);) {
        int open = 0;
        for (int i = 0; i < n; i++) {
            slow_tick(&c[i]);
            open += c[i].fd >= 0 && !c[i].closed_at;
        }
        if (!open) break;
        if (probe) {
            response r = http_request(S.port, "GET", "/healthz", NULL, "");
            probes++;
            answered += r.status == 200;
            response_free(&r);
        }
        sleep_ms(250);
    }
    CHECK_MSG(answered == probes, "others starved: %d of %d requests answered during the "
              "slow clients", answered, probes);
    for (int i = 0; i < n; i++) {
        double lasted = (c[i].closed_at ? c[i].closed_at : clock_seconds()) - c[i].start;
        /* Cut at the deadline: not before it, and well before the 20 s the drip would take. */
        CHECK_MSG(c[i].fd >= 0 && c[i].closed_at && lasted > TIMEOUT_S - 0.5 &&
                  lasted < TIMEOUT_S + (under_valgrind() ? 60 : 5),
                  "%s client %d: %s after %.2f s (timeout %d s)", c[i].kind, i,
                  c[i].closed_at ? "cut" : "still open", lasted, TIMEOUT_S);
        if (!strcmp(c[i].kind, "keep-alive")) CHECK(c[i].answered);
        if (c[i].fd >= 0) close(c[i].fd);
        c[i].fd = -1;
    }
}

/* Slowloris and kin: a connection dribbling its headers or its body a byte at a time,
 * one idle between two requests, one that sends nothing: each is cut timeout_seconds
 * after it opened (or after its last reply), and others are served meanwhile. Then as
 * many slow clients as max_connections: once they are cut, everyone is served again. */
TEST(daemon_abuse_slow_clients) {
    if (slow_up()) return;
    slow_client c[SLOW_CONNS];
    const struct {
        const char *kind, *first, *dribble;
    } kinds[] = {{"headers", "", SLOW_HEADERS},
                 {"body", SLOW_BODY_HEAD, SLOW_BODY},
                 {"keep-alive", KEEPALIVE_FIRST, SLOW_HEADERS},
                 {"silent", "", ""}};
    for (int i = 0; i < 4; i++) {
        c[i] = (slow_client){.kind = kinds[i].kind, .first = kinds[i].first,
                             .dribble = kinds[i].dribble};
        slow_open(&c[i], S.port);
    }
    drive(c, 4, 1);

    for (int i = 0; i < SLOW_CONNS; i++) {
        c[i] = (slow_client){.kind = "headers (full house)", .first = "", .dribble = SLOW_HEADERS};
        slow_open(&c[i], S.port);
    }
    /* Connections the thread pool refused at once are closed at once: not counted. */
    sleep_ms(200);
    int held = 0;
    for (int i = 0; i < SLOW_CONNS; i++) {
        char b;
        ssize_t n = recv(c[i].fd, &b, 1, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN)) {
            close(c[i].fd);
            c[i].fd = -1;
        } else {
            c[held++] = c[i];
        }
    }
    CHECK_MSG(held == SLOW_CONNS, "only %d of %d slow connections were accepted", held,
              SLOW_CONNS);
    /* Every slot taken: a new client waits in the accept queue until the deadline frees
     * one, and is served then. */
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, 1);
    flood_client waiting = {.port = S.port, .go = &go};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, flood_one, &waiting) == 0);
    drive(c, held, 0);
    pthread_join(t, NULL);
    pthread_barrier_destroy(&go);
    CHECK_MSG(waiting.status == 200 && waiting.took < TIMEOUT_S + (under_valgrind() ? 60 : 5),
              "a client behind %d slow ones: status %d after %.2f s", held, waiting.status,
              waiting.took);
    for (int i = 0; i < SLOW_CONNS; i++) {
        response r = http_request(S.port, "GET", "/healthz", NULL, "");
        EXPECT_STATUS(r, 200, NULL);
        response_free(&r);
    }
    STILL_SERVING(S.port, S.db, 0);
}

/* Five times max_connections. Held open idle: anodmd takes max_connections of them (its
 * descriptors show it) and leaves the rest in the kernel's accept queue, from which they
 * are taken, and served, in turn as slots free up. Sent all at once: every request is
 * answered, none hangs. Afterwards the daemon holds no more descriptors than before. */
TEST(daemon_abuse_connection_flood) {
    if (slow_up()) return;
    enum { FLOOD = 5 * SLOW_CONNS };
    sleep_ms(100);
    int fds_before = proc_fds(S.pid);
    int fd[FLOOD];
    for (int i = 0; i < FLOOD; i++) fd[i] = tcp_connect(S.port, 10);
    sleep_ms(300);
    int held = proc_fds(S.pid) - fds_before;
    CHECK_MSG(held >= 1 && held <= SLOW_CONNS, "%d idle connections: the daemon holds %d "
              "(max_connections %d)", FLOOD, held, SLOW_CONNS);
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    for (int i = 0; i < FLOOD; i++)
        if (fd[i] >= 0) send(fd[i], req, sizeof req - 1, MSG_NOSIGNAL);
    int served = 0;
    for (int i = 0; i < FLOOD; i++) {
        char buf[512] = "";
        if (fd[i] >= 0 && recv(fd[i], buf, sizeof buf - 1, MSG_WAITALL) > 0 &&
            !strncmp(buf, "HTTP/1.1 200", 12))
            served++;
        if (fd[i] >= 0) close(fd[i]);
    }
    CHECK_MSG(served == FLOOD, "%d of %d queued connections served", served, FLOOD);

    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, FLOOD);
    flood_client f[FLOOD];
    pthread_t t[FLOOD];
    for (int i = 0; i < FLOOD; i++) {
        f[i] = (flood_client){.port = S.port, .go = &go};
        CHECK(pthread_create(&t[i], NULL, flood_one, &f[i]) == 0);
    }
    int ok = 0;
    double slowest = 0;
    for (int i = 0; i < FLOOD; i++) {
        pthread_join(t[i], NULL);
        ok += f[i].status == 200;
        slowest = fmax(slowest, f[i].took);
    }
    pthread_barrier_destroy(&go);
    CHECK_MSG(ok == FLOOD && slowest < (under_valgrind() ? 60 : 8),
              "burst of %d: %d answered; slowest %.2f s", FLOOD, ok, slowest);
    int fds_after = -1;
    for (int waited = 0; waited < 3000 && fds_after != fds_before; waited += 100) {
        sleep_ms(100);
        fds_after = proc_fds(S.pid);
    }
    CHECK_MSG(fds_after == fds_before, "descriptors: %d before the floods, %d after", fds_before,
              fds_after);
    STILL_SERVING(S.port, S.db, 0);
}

/* A second daemon on a port in use fails to start (no SO_REUSEPORT, which would let it
 * bind too and take part of the first one's traffic). */
TEST(daemon_abuse_port_in_use) {
    if (slow_up()) return;
    const test_bundles *b = test_bundles_get();
    char tiny[600], port[16], db[600], log[600];
    snprintf(tiny, sizeof tiny, "tiny=%s", b->tiny);
    snprintf(port, sizeof port, "%d", S.port);
    snprintf(db, sizeof db, "%s/second.db", test_tmpdir());
    snprintf(log, sizeof log, "%s/second_stderr.txt", test_tmpdir());
    const char *args[] = {"--model", tiny, "--db", db, "--port", port, NULL};
    int rc = run_anodmd_argv(log, args, 15000);
    char *out = slurp(log);
    CHECK_MSG(rc == 1 && out && strstr(out, "cannot listen on 127.0.0.1:"),
              "second daemon on port %s: exit %d\n%.1000s", port, rc, out ? out : "");
    free(out);
    STILL_SERVING(S.port, S.db, 0);
}

/* Last: both daemons that took the abuse stop cleanly on SIGTERM (exit 0: under
 * asan-test and make valgrind that is also the leak check of the processes that saw the
 * worst input), with their logs intact. */
TEST(daemon_abuse_stop) {
    if (A.pid > 0) {
        stop_anodmd(A.pid);
        A.pid = 0;
        LOG_INTACT(A.db, A.rows);
    }
    if (S.pid > 0) {
        stop_anodmd(S.pid);
        S.pid = 0;
        LOG_INTACT(S.db, 0);
    }
}
