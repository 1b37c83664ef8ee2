/* anodmd as clients see it: the binary named by $ANODMD_BIN (build/anodmd otherwise)
 * started on an ephemeral loopback port with three models made in-process by the harness
 * (daemon_harness.h: a tiny detector saved twice, "tiny" in single mode, the default, and
 * "ctx" in context mode; "swap" starts as a copy of tiny, and the reload test replaces
 * its file), then driven over plain sockets with the harness's small HTTP/1.1 client. The batch window is a
 * generous 5 ms so that concurrent requests reliably meet in one batch on a busy machine
 * (and a lone request still answers quickly). Every route, every
 * refusal, paging, concurrency and a SIGTERM under load are checked, and the SQLite log
 * is read directly and compared row by row with what the responses acknowledged. */
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bundle.h"
#include "check.h"
#include "clock.h"
#include "daemon_harness.h"
#include "le.h"
#include "scorer.h"

#define MAX_BATCH 16
#define MAX_BODY 65536
#define MAX_ACKED 65536

/* ------------------------------------------------------------------ the daemon */

static struct {
    pid_t pid;
    int port;
    char tiny[512], ctx[512], swap[512], db[512], log[512];
    char tiny_version[65], ctx_version[65];
    int64_t acked[MAX_ACKED];    /* log ids of every score answered with 200 */
    int n_acked;
    pthread_mutex_t lock;        /* guards acked */
} D = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* Both bundles (made once by the harness), and their versions. */
static int make_bundles(void) {
    if (D.tiny[0]) return 0;
    const test_bundles *b = test_bundles_get();
    if (!b) return -1;
    memcpy(D.tiny, b->tiny, sizeof D.tiny);
    memcpy(D.ctx, b->ctx, sizeof D.ctx);
    memcpy(D.tiny_version, b->tiny_version, sizeof D.tiny_version);
    memcpy(D.ctx_version, b->ctx_version, sizeof D.ctx_version);
    return 0;
}

static void kill_daemon(void) {
    if (D.pid > 0) {
        kill(D.pid, SIGKILL);
        waitpid(D.pid, NULL, 0);
        D.pid = 0;
    }
}

#define OWN_PATH 600

/* The files of a test that starts its own anodmd on the tiny bundle: the log NAME.db, the
 * daemon's output NAME_stderr.txt, and the --model argument (OWN_PATH bytes each). */
static void own_daemon_files(const char *name, char *db, char *log, char *model) {
    snprintf(db, OWN_PATH, "%s/%s.db", test_tmpdir(), name);
    snprintf(log, OWN_PATH, "%s/%s_stderr.txt", test_tmpdir(), name);
    snprintf(model, OWN_PATH, "tiny=%s", D.tiny);
}

/* Start anodmd and read its port from "listening on 127.0.0.1:PORT" on its stderr. */
static int start_daemon(void) {
    snprintf(D.db, sizeof D.db, "%s/daemon_scores.db", test_tmpdir());
    snprintf(D.log, sizeof D.log, "%s/daemon_stderr.txt", test_tmpdir());
    char tiny[600], ctx[600], swap[600];
    snprintf(D.swap, sizeof D.swap, "%s/daemon_swap.anodm", test_tmpdir());
    if (install_file(D.tiny, D.swap)) return -1;
    snprintf(tiny, sizeof tiny, "tiny=%s", D.tiny);
    snprintf(ctx, sizeof ctx, "ctx=%s", D.ctx);
    snprintf(swap, sizeof swap, "swap=%s", D.swap);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);   /* never outlive the test runner */
        FILE *f = freopen(D.log, "w", stderr);
        if (!f) _exit(127);
        dup2(fileno(stderr), fileno(stdout));
        execl(anodmd_bin(), "anodmd", "--model", tiny, "--model", ctx, "--model", swap, "--port", "0",
              "--db",
              D.db, "--threads", "4", "--max-batch", "16", "--max-body-bytes", "65536",
              "--drain-seconds", "5", "--workers", "2", "--batch-window-us", "5000",
              (char *)NULL);
        _exit(127);
    }
    if (pid < 0) return -1;
    D.pid = pid;
    atexit(kill_daemon);
    if ((D.port = listening_port(pid, D.log)) > 0) return 0;
    kill_daemon();
    return -1;
}

/* The daemon, started on first use (and again after daemon_sigterm stopped it). */
static int daemon_up(void) {
    if (D.pid > 0) return 0;
    D.port = 0;
    return make_bundles() || start_daemon() ? -1 : 0;
}

/* ------------------------------------------------------------------ HTTP to D.port */

/* Send req (len bytes) to the daemon and read the response until it closes. */
static response exchange(const char *req, size_t len) { return http_exchange(D.port, req, len); }

/* METHOD path with an optional JSON body and extra header lines ("Name: value\r\n"...). */
static response http_with(const char *method, const char *path, const char *body,
                          const char *headers) {
    return http_request(D.port, method, path, body, headers);
}

/* METHOD path with an optional JSON body. */
static response http(const char *method, const char *path, const char *body) {
    return http_with(method, path, body, "");
}

/* ------------------------------------------------------------------ request bodies */

/* Remember the log ids of a successful score response. */
static void remember(const response *r) {
    json_t *res = json_object_get(r->json, "results");
    pthread_mutex_lock(&D.lock);
    for (size_t i = 0; i < json_array_size(res); i++) {
        if (D.n_acked == MAX_ACKED) {
            check_fail(__FILE__, __LINE__, "more than %d scores: raise MAX_ACKED", MAX_ACKED);
            break;
        }
        D.acked[D.n_acked++] = (int64_t)jnum(json_array_get(res, i), "log_id");
    }
    pthread_mutex_unlock(&D.lock);
}

/* POST samples to path and return the 200 response (checked, remembered). */
static response score(const char *path, const float *x, int n, const char *extra) {
    char *body = score_body(x, n, extra);
    response r = http("POST", path, body);
    free(body);
    EXPECT_STATUS(r, 200, NULL);
    if (r.status == 200) remember(&r);
    return r;
}

/* ------------------------------------------------------------------ the log */

static sqlite3 *open_log(void) { return log_open_readonly(D.db); }

static long long log_rows(void) {
    sqlite3 *db = open_log();
    long long n = db ? log_int(db, "SELECT count(*) FROM scores") : -1;
    sqlite3_close(db);
    return n;
}

/* The API prints numbers to 9 significant digits, which a float survives ((float) of the
 * printed number is the float) and a double does not: what a double reads as once
 * printed. */
static double as_printed(double v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.9g", v);
    return strtod(buf, NULL);
}

/* A logged double and the answer's printed copy of it. */
#define CHECK_PRINTED(logged, answered) CHECK(as_printed(logged) == (answered))
/* Equal to 9 significant digits, where one side may have been rounded twice. */
#define CHECK_REL(a, b) CHECK_NEAR((a), (b), 1e-8 + 1e-7 * fabs((double)(b)))

/* The row of result res (one element of "results") matches it field by field. */
static void check_row(sqlite3 *db, json_t *res, const char *model, const char *version,
                      const char *id, const char *source) {
    sqlite3_stmt *st;
    CHECK(sqlite3_prepare_v2(db, "SELECT model, version, request_id, source, idx, score, "
                             "is_anomaly, threshold, p_value, raw_score, d_re, d_map, x, y, "
                             "nearest_ref, ts_ms, d_latent, z_latent FROM scores WHERE id = ?1",
                             -1, &st, NULL) == SQLITE_OK);
    sqlite3_bind_int64(st, 1, json_integer_value(json_object_get(res, "log_id")));
    if (sqlite3_step(st) != SQLITE_ROW) {
        check_fail(__FILE__, __LINE__, "no row for log_id %lld",
                   (long long)json_integer_value(json_object_get(res, "log_id")));
        sqlite3_finalize(st);
        return;
    }
    json_t *terms = json_object_get(res, "terms"), *pos = json_object_get(res, "position");
    json_t *nb0 = json_array_get(json_object_get(res, "neighbors"), 0);
    const char *rid = (const char *)sqlite3_column_text(st, 2);
    const char *src = (const char *)sqlite3_column_text(st, 3);
    CHECK(!strcmp((const char *)sqlite3_column_text(st, 0), model));
    CHECK(!strcmp((const char *)sqlite3_column_text(st, 1), version));
    CHECK(id ? rid && !strcmp(rid, id) : !rid);
    CHECK(source ? src && !strcmp(src, source) : !src);
    CHECK(sqlite3_column_int(st, 4) == jnum(res, "index"));
    CHECK_PRINTED(sqlite3_column_double(st, 5), jnum(res, "score"));
    CHECK(sqlite3_column_int(st, 6) == json_is_true(json_object_get(res, "is_anomaly")));
    CHECK_PRINTED(sqlite3_column_double(st, 7), jnum(res, "threshold"));
    CHECK_PRINTED(sqlite3_column_double(st, 8), jnum(res, "p_value"));
    CHECK_PRINTED(sqlite3_column_double(st, 9), jnum(res, "raw_score"));
    CHECK_PRINTED(sqlite3_column_double(st, 10), jnum(terms, "d_re"));
    CHECK_PRINTED(sqlite3_column_double(st, 11), jnum(terms, "d_map"));
    CHECK_PRINTED(sqlite3_column_double(st, 12), json_number_value(json_array_get(pos, 0)));
    CHECK_PRINTED(sqlite3_column_double(st, 13), json_number_value(json_array_get(pos, 1)));
    CHECK(sqlite3_column_int(st, 14) == jnum(nb0, "ref"));
    long long now_ms = (long long)time(NULL) * 1000;
    long long ts = sqlite3_column_int64(st, 15);
    CHECK(ts > now_ms - 600000 && ts <= now_ms + 1000);
    CHECK_PRINTED(sqlite3_column_double(st, 16), jnum(terms, "d_latent"));
    CHECK_PRINTED(sqlite3_column_double(st, 17), jnum(terms, "z_latent"));
    sqlite3_finalize(st);
}

/* ------------------------------------------------------------------ tests */

TEST(daemon_settings) {
    if (make_bundles()) return;
    char conf[512];
    snprintf(conf, sizeof conf, "%s/daemon_test.conf", test_tmpdir());
    FILE *f = fopen(conf, "w");
    CHECK(f != NULL);
    if (!f) return;
    fprintf(f, "# a test config\nport = 9123\nmodel = tiny=%s\n\nthreads=2 # two\n", D.tiny);
    fclose(f);
    EXPECT_CLI(0, "usage: anodmd", "--help");
    EXPECT_CLI(2, "usage: anodmd", "--bogus");
    EXPECT_CLI(2, "unexpected argument 'stray'", "stray");
    EXPECT_CLI(2, "--port: port wants an integer in 0..65535, not 'http'",
               "--model %s --port http", D.tiny);
    EXPECT_CLI(2, "--bind: bind wants an IPv4 address", "--model %s --bind localhost", D.tiny);
    EXPECT_CLI(2, "No such file", "--config %s/none.conf", test_tmpdir());
    EXPECT_CLI(1, "no models", "--check-config");
    EXPECT_CLI(1, "/nonexistent.anodm", "--check-config --model /nonexistent.anodm");
    EXPECT_CLI(1, "given twice", "--check-config --model a=%s --model a=%s", D.tiny, D.ctx);
    EXPECT_CLI(1, "not 1..64", "--check-config --model 'b@d=%s'", D.tiny);
    /* The file, then the environment, then flags; flags' models replace the file's. */
    EXPECT_CLI(0, "port = 9123", "--check-config --config %s", conf);
    EXPECT_CLI(0, "threads = 2", "--check-config --config %s", conf);
    EXPECT_CLI(0, "port = 9555", "--check-config --config %s --port 9555", conf);
    EXPECT_CLI(0, "port = 7000", "--check-config --config %s --port 7000", conf);
    EXPECT_CLI(0, "model = other=", "--check-config --config %s --model other=%s", conf, D.ctx);
    EXPECT_CLI(0, "version ", "--check-config --model %s", D.tiny);
    EXPECT_CLI(0, "batches on 3 threads at most", "--check-config --model %s --batch-threads 3",
               D.tiny);
    EXPECT_CLI(2, "--batch-threads: batch_threads wants an integer in 0..16, not '17'",
               "--check-config --model %s --batch-threads 17", D.tiny);
    CHECK(setenv("ANODMD_PORT", "7777", 1) == 0);
    EXPECT_CLI(0, "port = 7777", "--check-config --config %s", conf);
    EXPECT_CLI(0, "port = 7001", "--check-config --config %s --port 7001", conf);
    CHECK(setenv("ANODMD_PORT", "many", 1) == 0);
    EXPECT_CLI(2, "ANODMD_PORT: port wants an integer", "--check-config --config %s", conf);
    unsetenv("ANODMD_PORT");
    f = fopen(conf, "a");
    if (f) {
        fprintf(f, "colour = blue\n");
        fclose(f);
    }
    EXPECT_CLI(2, "daemon_test.conf:6: unknown setting 'colour'", "--check-config --config %s",
               conf);
}

TEST(daemon_health_and_models) {
    if (daemon_up()) return;
    response r = http("GET", "/healthz", NULL);
    EXPECT_STATUS(r, 200, NULL);
    CHECK(r.json && !strcmp(jstr(r.json, "status"), "ok"));
    CHECK(strstr(r.raw, "Content-Type: application/json") != NULL);
    response_free(&r);

    r = http("GET", "/readyz", NULL);
    EXPECT_STATUS(r, 200, NULL);
    CHECK(json_is_true(json_object_get(r.json, "ready")) && jnum(r.json, "models") == 3);
    CHECK(r.json && !strcmp(jstr(r.json, "log"), "ok"));
    response_free(&r);

    r = http("GET", "/v1/models", NULL);
    EXPECT_STATUS(r, 200, NULL);
    json_t *models = json_object_get(r.json, "models");
    CHECK(json_array_size(models) == 3 && !strcmp(jstr(r.json, "default"), "tiny"));
    json_t *m0 = json_array_get(models, 0), *m1 = json_array_get(models, 1);
    CHECK(m0 && !strcmp(jstr(m0, "name"), "tiny") && !strcmp(jstr(m0, "version"), D.tiny_version));
    CHECK(m0 && json_is_true(json_object_get(m0, "default")) &&
          !strcmp(jstr(m0, "mode"), "single"));
    CHECK(m1 && !strcmp(jstr(m1, "name"), "ctx") && !strcmp(jstr(m1, "version"), D.ctx_version));
    CHECK(m1 && json_is_false(json_object_get(m1, "default")) &&
          !strcmp(jstr(m1, "mode"), "context"));
    CHECK(strcmp(D.tiny_version, D.ctx_version) != 0 && strlen(D.tiny_version) == 64);
    response_free(&r);

    r = http("GET", "/v1/models/ctx", NULL);
    EXPECT_STATUS(r, 200, NULL);
    json_t *cal = json_object_get(r.json, "calibration");
    CHECK(!strcmp(jstr(r.json, "version"), D.ctx_version) &&
          !strcmp(jstr(r.json, "arch"), "daemon-test"));
    CHECK(jnum(cal, "n") == 100 && fabs(jnum(cal, "quantile") - 0.9) < 1e-9);
    CHECK(jnum(json_object_get(r.json, "scoring"), "k") == 3);
    CHECK(json_is_object(json_object_get(r.json, "provenance")) ||
          json_is_null(json_object_get(r.json, "provenance")));
    CHECK(!strcmp(jstr(json_object_get(r.json, "architecture"), "encoder"), "linear(24) relu"));
    response_free(&r);

    r = http("POST", "/v1/models/tiny/strip", "{\"fs\": 360, \"signal\": [1, 2, 3]}");
    EXPECT_STATUS(r, 400, "not_an_ecg_model");
    response_free(&r);

    r = http("GET", "/v1/models/nope", NULL);
    EXPECT_STATUS(r, 404, "unknown_model");
    response_free(&r);
}

/* Every operation proto/openapi.yaml documents is routed (the reverse: it lists 22). */
TEST(daemon_openapi_routes) {
    if (daemon_up()) return;
    FILE *f = fopen("proto/openapi.yaml", "r");
    CHECK_MSG(f != NULL, "proto/openapi.yaml (run from the repository root)");
    if (!f) return;
    char line[512], path[256] = "", method[16];
    int operations = 0, in_path = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] != ' ') in_path = 0;          /* paths end where "components:" starts */
        if (!strncmp(line, "  /", 3)) {           /* "  /v1/score:", or the root, "  /:" */
            in_path = 1;
            if (sscanf(line, "  /%255[^:]:", path) != 1) path[0] = 0;
            continue;
        }
        if (sscanf(line, "    %15[a-z]:", method) != 1 || line[4] == ' ' || !in_path) continue;
        if (strcmp(method, "get") && strcmp(method, "post")) continue;
        char url[300] = "/", *brace;
        strncat(url, path, sizeof url - 2);
        while ((brace = strchr(url, '{'))) {       /* {name} -> tiny, {id} -> 1 */
            char *close = strchr(brace, '}'), rest[300];
            if (!close) break;
            snprintf(rest, sizeof rest, "%s", close + 1);
            snprintf(brace, sizeof url - (size_t)(brace - url), "%s%s",
                     brace[1] == 'n' ? "tiny" : "1", rest);
        }
        response r = http(method[0] == 'g' ? "GET" : "POST", url, method[0] == 'p' ? "{}" : NULL);
        int routed = r.status && r.status != 405 &&
                     !(r.status == 404 && strstr(r.body, "no such route"));
        CHECK_MSG(routed, "%s %s: %d", method, url, r.status);
        response_free(&r);
        operations++;
    }
    fclose(f);
    CHECK_MSG(operations == 26, "%d operations documented, 26 routed", operations);
}

/* The daemon scores exactly as the scorer does in-process, and logs what it answered. */
TEST(daemon_score_one_sample) {
    if (daemon_up()) return;
    float x[DIM];
    fresh_samples(x, 1, 99, 0);
    response r = score("/v1/score", x, 0, ",\"id\":\"req-1\",\"source\":\"unit\"");
    json_t *res = json_array_get(json_object_get(r.json, "results"), 0);
    CHECK(r.json && !strcmp(jstr(r.json, "model"), "tiny") &&
          !strcmp(jstr(r.json, "version"), D.tiny_version));
    CHECK(json_array_size(json_object_get(r.json, "results")) == 1);
    if (!res) {
        response_free(&r);
        return;
    }
    CHECK(!strcmp(jstr(res, "id"), "req-1") && !strcmp(jstr(res, "model"), "tiny"));
    CHECK(json_array_size(json_object_get(res, "neighbors")) == 3);
    CHECK(!json_object_get(res, "reconstruction"));
    CHECK(jnum(res, "p_value") > 0 && jnum(res, "p_value") <= 1);

    detector d;
    char err[256];
    CHECK(bundle_load(D.tiny, &d, err, sizeof err) == 0);
    scorer *s = scorer_create(&d, 1, err, sizeof err);
    detector_result want;
    int32_t nn[3];
    float dist[3];
    CHECK(s && scorer_score(s, x, 1, &want, NULL, nn, dist, err, sizeof err) == 0);
    CHECK(jnum(res, "score") == as_printed(want.score));
    CHECK(jnum(res, "threshold") == as_printed(d.threshold));
    CHECK(json_is_true(json_object_get(res, "is_anomaly")) == want.is_anomaly);
    CHECK(jnum(json_object_get(res, "terms"), "z_re") == as_printed(want.z_re));
    json_t *nb = json_object_get(res, "neighbors");
    for (int j = 0; j < 3; j++) {
        CHECK(jnum(json_array_get(nb, (size_t)j), "ref") == nn[j]);
        CHECK((float)jnum(json_array_get(nb, (size_t)j), "distance") == dist[j]);
    }
    scorer_free(s);
    detector_free(&d);

    sqlite3 *db = open_log();
    if (db) check_row(db, res, "tiny", D.tiny_version, "req-1", "unit");
    sqlite3_close(db);

    /* The same record, from the log. */
    char path[64];
    snprintf(path, sizeof path, "/v1/scores/%lld", (long long)jnum(res, "log_id"));
    response g = http("GET", path, NULL);
    EXPECT_STATUS(g, 200, NULL);
    CHECK(g.json && !strcmp(jstr(g.json, "version"), D.tiny_version) &&
          !strcmp(jstr(g.json, "source"), "unit"));
    CHECK(jnum(g.json, "score") == jnum(res, "score"));
    CHECK(g.json && strlen(jstr(g.json, "time")) == 24);
    response_free(&g);
    response_free(&r);
}

TEST(daemon_score_batch_explained) {
    if (daemon_up()) return;
    float x[5 * DIM];
    fresh_samples(x, 4, 5, 0);
    fresh_samples(x + 4 * DIM, 1, 6, 1);
    response r = score("/v1/models/ctx/score", x, 5, ",\"explain\":true");
    json_t *results = json_object_get(r.json, "results");
    CHECK(r.json && !strcmp(jstr(r.json, "model"), "ctx") && json_array_size(results) == 5);
    sqlite3 *db = open_log();
    for (size_t i = 0; i < json_array_size(results); i++) {
        json_t *res = json_array_get(results, i);
        json_t *rec = json_object_get(res, "reconstruction");
        json_t *se = json_object_get(res, "squared_error");
        CHECK(jnum(res, "index") == (double)i && json_is_null(json_object_get(res, "id")));
        CHECK(json_array_size(rec) == DIM && json_array_size(se) == DIM);
        for (size_t j = 0; j < json_array_size(rec); j++) {
            double d = x[i * DIM + j] - json_number_value(json_array_get(rec, j));
            CHECK_NEAR(json_number_value(json_array_get(se, j)), d * d, 1e-6);
        }
        if (i) CHECK(jnum(res, "log_id") == jnum(json_array_get(results, i - 1), "log_id") + 1);
        if (db) check_row(db, res, "ctx", D.ctx_version, NULL, NULL);
    }
    /* The empty sample is flagged and scores highest. */
    CHECK(json_is_true(json_object_get(json_array_get(results, 4), "is_anomaly")));
    double top = jnum(json_array_get(results, 4), "score");
    for (size_t i = 0; i < 4; i++) CHECK(top > jnum(json_array_get(results, i), "score"));
    sqlite3_close(db);
    response_free(&r);
}

/* Each refusal is a 4xx JSON error with its code, and logs nothing. */
TEST(daemon_bad_requests) {
    if (daemon_up()) return;
    long long rows = log_rows();
    float x[(MAX_BATCH + 1) * DIM];
    fresh_samples(x, MAX_BATCH + 1, 3, 0);
    char *too_many = score_body(x, MAX_BATCH + 1, NULL);
    char one[256], dup[600], nan_body[600], huge[600], with_string[600], short_one[600],
        both[600], unknown[600], bad_id[600], bad_explain[600];
    zero_sample(one, sizeof one, "0", DIM);
    snprintf(dup, sizeof dup, "{\"sample\":%s,\"sample\":%s}", one, one);
    single_body(nan_body, sizeof nan_body, "NaN", DIM);
    single_body(huge, sizeof huge, "1e39", DIM);
    single_body(with_string, sizeof with_string, "\"0.1\"", DIM);
    single_body(short_one, sizeof short_one, "0", DIM - 1);
    snprintf(both, sizeof both, "{\"sample\":%s,\"samples\":[%s]}", one, one);
    snprintf(unknown, sizeof unknown, "{\"sampel\":%s}", one);
    snprintf(bad_id, sizeof bad_id, "{\"sample\":%s,\"id\":7}", one);
    snprintf(bad_explain, sizeof bad_explain, "{\"sample\":%s,\"explain\":\"yes\"}", one);
    const struct {
        const char *method, *path, *body;
        int status;
        const char *code;
    } cases[] = {
        {"POST", "/v1/score", "{\"sample\": [1, 2,", 400, "malformed_json"},
        {"POST", "/v1/score", "", 400, "malformed_json"},
        {"POST", "/v1/score", "[1, 2]", 400, "invalid_request"},
        {"POST", "/v1/score", dup, 400, "duplicate_key"},
        {"POST", "/v1/score", nan_body, 400, "malformed_json"},
        {"POST", "/v1/score", huge, 400, "not_finite"},
        {"POST", "/v1/score", with_string, 400, "not_a_number"},
        {"POST", "/v1/score", short_one, 400, "wrong_length"},
        {"POST", "/v1/score", "{\"samples\": []}", 400, "empty_batch"},
        {"POST", "/v1/score", "{\"samples\": [[]]}", 400, "wrong_length"},
        {"POST", "/v1/score", "{\"samples\": 3}", 400, "invalid_request"},
        {"POST", "/v1/score", too_many, 413, "batch_too_large"},
        {"POST", "/v1/score", both, 400, "invalid_request"},
        {"POST", "/v1/score", unknown, 400, "unknown_field"},
        {"POST", "/v1/score", bad_id, 400, "invalid_request"},
        {"POST", "/v1/score", bad_explain, 400, "invalid_request"},
        {"POST", "/v1/models/nope/score", one, 404, "unknown_model"},
        {"GET", "/v1/score", NULL, 405, "method_not_allowed"},
        {"DELETE", "/v1/models/tiny", NULL, 405, "method_not_allowed"},
        {"POST", "/v1/models", "{}", 405, "method_not_allowed"},
        {"GET", "/v2/nothing", NULL, 404, "not_found"},
        {"GET", "/v1", NULL, 404, "not_found"},          /* GET / is the dashboard */
        {"GET", "/v1/models//score", NULL, 404, "not_found"},
        {"GET", "/v1/scores?limit=0", NULL, 400, "invalid_query"},
        {"GET", "/v1/scores?limit=1001", NULL, 400, "invalid_query"},
        {"GET", "/v1/scores?since_id=-1", NULL, 400, "invalid_query"},
        {"GET", "/v1/scores?anomalies_only=maybe", NULL, 400, "invalid_query"},
        {"GET", "/v1/scores?model=a/b", NULL, 400, "invalid_query"},
        {"GET", "/v1/scores/abc", NULL, 400, "invalid_request"},
        {"GET", "/v1/scores/999999999", NULL, 404, "not_found"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        response r = http(cases[i].method, cases[i].path, cases[i].body);
        if (r.status != cases[i].status)
            check_fail(__FILE__, __LINE__, "case %zu: %s %s", i, cases[i].method, cases[i].path);
        EXPECT_STATUS(r, cases[i].status, cases[i].code);
        if (cases[i].status == 405) CHECK(strstr(r.raw, "Allow: ") != NULL);
        response_free(&r);
    }
    free(too_many);

    /* Bodies over max_body_bytes: announced by Content-Length (refused before reading),
     * and sent chunked (refused once past the limit). */
    char head[256];
    int n = snprintf(head, sizeof head, "POST /v1/score HTTP/1.1\r\nHost: x\r\n"
                     "Connection: close\r\nContent-Length: %d\r\n\r\n{", MAX_BODY + 1);
    response r = exchange(head, (size_t)n);
    EXPECT_STATUS(r, 413, "body_too_large");
    response_free(&r);
    size_t big = MAX_BODY + 100;
    char *chunked = malloc(big + 256);
    if (chunked) {
        int h = sprintf(chunked, "POST /v1/score HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n%zx\r\n", big);
        memset(chunked + h, ' ', big);
        h += (int)big;
        h += sprintf(chunked + h, "\r\n0\r\n\r\n");
        r = exchange(chunked, (size_t)h);
        EXPECT_STATUS(r, 413, "body_too_large");
        response_free(&r);
        free(chunked);
    }

    /* Still serving, and nothing was logged. */
    r = http("GET", "/healthz", NULL);
    EXPECT_STATUS(r, 200, NULL);
    response_free(&r);
    CHECK_MSG(log_rows() == rows, "rows %lld -> %lld after refused requests", rows, log_rows());
}

/* Cursor paging: every row once, in id order, with the filters applied. */
TEST(daemon_paging) {
    if (daemon_up()) return;
    float x[MAX_BATCH * DIM];
    fresh_samples(x, 8, 21, 0);
    fresh_samples(x + 8 * DIM, 4, 22, 1);
    for (int i = 0; i < 2; i++) {
        response r = score("/v1/score", x, 12, ",\"source\":\"pager\"");
        response_free(&r);
    }
    response r = score("/v1/models/ctx/score", x, 3, ",\"source\":\"pager\"");
    response_free(&r);
    /* 27 rows from "pager": pages of 10, 10, 7, then an empty page. */
    int64_t since = 0, last = 0;
    int total = 0, pages = 0, anomalies = 0;
    for (;; pages++) {
        char path[128];
        snprintf(path, sizeof path, "/v1/scores?source=pager&limit=10&since_id=%lld",
                 (long long)since);
        r = http("GET", path, NULL);
        EXPECT_STATUS(r, 200, NULL);
        json_t *scores = json_object_get(r.json, "scores");
        size_t n = json_array_size(scores);
        for (size_t i = 0; i < n; i++) {
            json_t *s = json_array_get(scores, i);
            CHECK(jnum(s, "log_id") > last && !strcmp(jstr(s, "source"), "pager"));
            CHECK(jstr(s, "version") && strlen(jstr(s, "version")) == 64);
            last = (int64_t)jnum(s, "log_id");
            anomalies += json_is_true(json_object_get(s, "is_anomaly"));
        }
        int64_t next = (int64_t)jnum(r.json, "next_since_id");
        CHECK(next == (n ? last : since));
        response_free(&r);
        total += (int)n;
        if (!n || pages > 10) break;
        since = next;
    }
    CHECK_MSG(total == 27 && pages == 3, "%d rows in %d pages", total, pages);
    CHECK(anomalies >= 8);     /* at least the empty samples */

    r = http("GET", "/v1/scores?source=pager&model=ctx&limit=1000", NULL);
    CHECK(json_array_size(json_object_get(r.json, "scores")) == 3);
    response_free(&r);
    r = http("GET", "/v1/scores?source=pager&anomalies_only=true&limit=1000", NULL);
    json_t *scores = json_object_get(r.json, "scores");
    CHECK_MSG(json_array_size(scores) == (size_t)anomalies, "%zu anomalies, want %d",
              json_array_size(scores), anomalies);
    for (size_t i = 0; i < json_array_size(scores); i++)
        CHECK(json_is_true(json_object_get(json_array_get(scores, i), "is_anomaly")));
    response_free(&r);
    r = http("GET", "/v1/scores", NULL);   /* defaults: from the start, 100 rows */
    EXPECT_STATUS(r, 200, NULL);
    CHECK(json_array_size(json_object_get(r.json, "scores")) >= 27);
    response_free(&r);
}

/* Does SQLite's plan for sql seek index? */
static int plan_uses(sqlite3 *db, const char *sql, const char *index) {
    char explain[512], want[96];
    sqlite3_stmt *st;
    int found = 0;
    snprintf(explain, sizeof explain, "EXPLAIN QUERY PLAN %s", sql);
    snprintf(want, sizeof want, "INDEX %s ", index);   /* USING [COVERING] INDEX */
    if (sqlite3_prepare_v2(db, explain, -1, &st, NULL) != SQLITE_OK) return 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *detail = (const char *)sqlite3_column_text(st, 3);
        if (detail && strstr(detail, want)) found = 1;
    }
    sqlite3_finalize(st);
    return found;
}

/* The log's schema: versioned, WAL, indexed for the polling queries. */
TEST(daemon_log_schema) {
    if (daemon_up()) return;
    sqlite3 *db = open_log();
    if (!db) return;
    CHECK(log_int(db, "PRAGMA user_version") == 6);
    CHECK(log_int(db, "SELECT count(*) FROM pragma_journal_mode WHERE journal_mode = 'wal'") == 1);
    CHECK(log_int(db, "SELECT count(*) FROM scores WHERE d_latent IS NULL") == 0);
    CHECK(log_int(db, "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name IN "
                      "('scores_by_model', 'scores_by_source', 'scores_anomalies', "
                      "'scores_by_model_time', 'scores_by_model_score')") == 5);
    CHECK(log_int(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = "
                      "'sink_position'") == 1);
    /* The index by source holds the tagged rows only (version 6), and paging by a tag
     * (GET /v1/scores's query, daemon/log.c) still seeks it. */
    CHECK(log_int(db, "SELECT count(*) FROM sqlite_master WHERE name = 'scores_by_source' AND "
                      "sql LIKE '%WHERE source IS NOT NULL'") == 1);
    CHECK(plan_uses(db, "SELECT id FROM scores WHERE id > ?1 AND source = ?3 ORDER BY id "
                        "LIMIT ?4", "scores_by_source"));
    /* The statistics read their indexes only: no full scan of the table, no sort of the
     * whole log. */
    CHECK(log_int(db, "SELECT count(*) FROM (SELECT score FROM scores INDEXED BY "
                      "scores_by_model_score WHERE model = 'tiny' ORDER BY score)") ==
          log_int(db, "SELECT count(*) FROM scores WHERE model = 'tiny'"));
    sqlite3_close(db);
}

/* The value of one metric line ("name{labels}" exactly as rendered) in a /metrics page; -1
 * when absent. Every sample line is also checked to be `series value`. */
static double metric(const char *page, const char *series) {
    double found = -1;
    const char *line = page;
    while (line && *line) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (*line != '#') {
            const char *sp = memchr(line, ' ', len);
            char *num_end;
            double v = sp ? strtod(sp + 1, &num_end) : 0;
            CHECK_MSG(sp && num_end == line + len, "not a sample line: %.*s", (int)len, line);
            if (sp && (size_t)(sp - line) == strlen(series) && !strncmp(line, series, strlen(series)))
                found = v;
        }
        line = end ? end + 1 : NULL;
    }
    return found;
}

/* GET /metrics as text (its status and type checked); free it. */
static char *metrics_page(void) {
    response r = http("GET", "/metrics", NULL);
    CHECK(r.status == 200 && strstr(r.raw, "Content-Type: text/plain; version=0.0.4"));
    char *page = r.body ? strdup(r.body) : NULL;
    response_free(&r);
    return page ? page : strdup("");
}

/* The counters move by exactly what the requests did. */
TEST(daemon_metrics) {
    if (daemon_up()) return;
    const char *health = "anodmd_http_requests_total{route=\"/healthz\",status=\"200\"}";
    const char *missing = "anodmd_http_requests_total{route=\"/v1/models/{name}\",status=\"404\"}";
    const char *scored = "anodmd_samples_scored_total{model=\"tiny\"}";
    const char *flagged = "anodmd_anomalies_total{model=\"tiny\"}";
    const char *batches = "anodmd_batch_size_count{model=\"tiny\"}";
    const char *big = "anodmd_batch_size_bucket{model=\"tiny\",le=\"4\"}";
    const char *waits = "anodmd_queue_duration_seconds_count{model=\"tiny\"}";
    const char *waited = "anodmd_queue_duration_seconds_sum{model=\"tiny\"}";
    const char *quick = "anodmd_queue_duration_seconds_bucket{model=\"tiny\",le=\"0.0025\"}";
    char *before = metrics_page();
    for (int i = 0; i < 3; i++) {
        response r = http("GET", "/healthz", NULL);
        response_free(&r);
    }
    response r = http("GET", "/v1/models/nope", NULL);
    response_free(&r);
    float x[5 * DIM];
    fresh_samples(x, 3, 77, 0);
    fresh_samples(x + 3 * DIM, 2, 78, 1);
    r = score("/v1/score", x, 5, NULL);
    response_free(&r);
    char *after = metrics_page();
    CHECK_NEAR(metric(after, health) - fmax(metric(before, health), 0), 3, 0);
    CHECK_NEAR(metric(after, missing) - fmax(metric(before, missing), 0), 1, 0);
    CHECK_NEAR(metric(after, scored) - fmax(metric(before, scored), 0), 5, 0);
    CHECK(metric(after, flagged) - fmax(metric(before, flagged), 0) >= 2);
    CHECK_NEAR(metric(after, batches) - fmax(metric(before, batches), 0), 1, 0);
    CHECK_NEAR(metric(after, big) - fmax(metric(before, big), 0), 0, 0);   /* 5 > 4 */
    /* The lone request waited in its queue once, for the whole batch window (5 ms here). */
    CHECK_NEAR(metric(after, waits) - fmax(metric(before, waits), 0), 1, 0);
    CHECK(metric(after, waited) - fmax(metric(before, waited), 0) >= 0.005);
    CHECK_NEAR(metric(after, quick) - fmax(metric(before, quick), 0), 0, 0);
    CHECK(strstr(after, "# TYPE anodmd_queue_duration_seconds histogram") != NULL);
    CHECK(metric(after, "anodmd_db_write_seconds_count") > metric(before, "anodmd_db_write_seconds_count"));
    CHECK(metric(after, "anodmd_db_errors_total") == 0);
    const char *scores = "anodmd_score_count{model=\"tiny\"}";
    CHECK(metric(after, scores) - fmax(metric(before, scores), 0) >= 3);   /* the normals */
    CHECK(metric(after, scores) == metric(after, "anodmd_score_bucket{model=\"tiny\",le=\"+Inf\"}"));
    CHECK(metric(after, "anodmd_models_loaded") == 3);
    CHECK(metric(after, "anodmd_http_request_duration_seconds_bucket{route=\"/healthz\",le=\"+Inf\"}") >= 3);
    CHECK(strstr(after, "# TYPE anodmd_http_request_duration_seconds histogram") != NULL);
    free(before);
    free(after);
}

/* /v1/stats agrees with the log: counts, anomaly rates, nearest-rank quantiles. */
TEST(daemon_stats) {
    if (daemon_up()) return;
    float x[4 * DIM];
    fresh_samples(x, 4, 88, 0);
    response r = score("/v1/models/ctx/score", x, 4, NULL);
    response_free(&r);
    r = http("GET", "/v1/stats", NULL);
    EXPECT_STATUS(r, 200, NULL);
    sqlite3 *db = open_log();
    json_t *models = json_object_get(r.json, "models");
    CHECK(json_array_size(models) >= 2);
    for (size_t i = 0; db && i < json_array_size(models); i++) {
        json_t *m = json_array_get(models, i);
        const char *name = jstr(m, "model");
        json_t *all = json_object_get(json_object_get(m, "windows"), "all");
        json_t *minute = json_object_get(json_object_get(m, "windows"), "1m");
        char sql[300];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM scores WHERE model = '%s'", name);
        long long n = log_int(db, sql);
        CHECK_MSG(jnum(all, "count") == n, "%s: %g rows, log %lld", name, jnum(all, "count"), n);
        CHECK(jnum(minute, "count") == n);   /* every row is from this run */
        snprintf(sql, sizeof sql, "SELECT sum(is_anomaly) FROM scores WHERE model = '%s'", name);
        CHECK(jnum(all, "anomalies") == log_int(db, sql));
        CHECK_NEAR(jnum(all, "anomaly_rate"), jnum(all, "anomalies") / (double)n, 1e-8);
        json_t *q = json_object_get(all, "score");
        CHECK(jnum(q, "p50") <= jnum(q, "p90") && jnum(q, "p90") <= jnum(q, "p99"));
        /* Every quantile of both windows (the whole log's walks one index, the minute's
         * sorts a range of the other) is the nearest-rank one of the table's rows. */
        static const struct { const char *key; double p; } QS[] = {
            {"p50", 0.5}, {"p90", 0.9}, {"p99", 0.99}};
        json_t *qm = json_object_get(minute, "score");
        for (size_t k = 0; k < 3; k++) {
            sqlite3_stmt *st;
            CHECK(sqlite3_prepare_v2(db, "SELECT score FROM scores NOT INDEXED WHERE model = ?1 "
                                     "ORDER BY score LIMIT 1 OFFSET ?2", -1, &st, NULL) == SQLITE_OK);
            sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 2, (long long)ceil(QS[k].p * (double)n) - 1);
            CHECK(sqlite3_step(st) == SQLITE_ROW);
            CHECK_REL(jnum(q, QS[k].key), sqlite3_column_double(st, 0));
            CHECK_REL(jnum(qm, QS[k].key), sqlite3_column_double(st, 0));
            sqlite3_finalize(st);
        }
    }
    sqlite3_close(db);
    response_free(&r);
}

/* The reference map, whole and thinned deterministically. */
TEST(daemon_map) {
    if (daemon_up()) return;
    detector d;
    char err[256];
    if (bundle_load(D.tiny, &d, err, sizeof err)) {
        check_fail(__FILE__, __LINE__, "%s", err);
        return;
    }
    response r = http("GET", "/v1/models/tiny/map", NULL);
    EXPECT_STATUS(r, 200, NULL);
    CHECK(jnum(r.json, "n") == d.n_ref && jnum(r.json, "n_ref") == d.n_ref);
    CHECK(json_array_size(json_object_get(r.json, "points")) == (size_t)d.n_ref);
    response_free(&r);
    r = http("GET", "/v1/models/tiny/map?max_points=10", NULL);
    response again = http("GET", "/v1/models/tiny/map?max_points=10", NULL);
    EXPECT_STATUS(r, 200, NULL);
    CHECK(r.body && again.body && !strcmp(r.body, again.body));
    json_t *pts = json_object_get(r.json, "points"), *refs = json_object_get(r.json, "refs");
    CHECK(json_array_size(pts) == 10 && json_array_size(refs) == 10);
    for (size_t i = 0; i < json_array_size(pts); i++) {
        size_t at = i * (size_t)d.n_ref / 10;
        json_t *p = json_array_get(pts, i);
        CHECK(json_integer_value(json_array_get(refs, i)) == d.ref_id[at]);
        CHECK_NEAR(json_number_value(json_array_get(p, 0)), d.ref_map[2 * at], 1e-6);
        CHECK_NEAR(json_number_value(json_array_get(p, 1)), d.ref_map[2 * at + 1], 1e-6);
    }
    CHECK(!json_object_get(r.json, "window"));   /* single mode: no window */
    response_free(&r);
    response_free(&again);
    detector_free(&d);
    /* Context mode: the window's positions too, the newest last. */
    float x[3 * DIM];
    fresh_samples(x, 3, 61, 0);
    response sc = score("/v1/models/ctx/score", x, 3, NULL);
    r = http("GET", "/v1/models/ctx/map?max_points=100000", NULL);
    CHECK(r.json && !strcmp(jstr(r.json, "mode"), "context") && jnum(r.json, "n") == 150);
    json_t *win = json_object_get(r.json, "window"), *res = json_object_get(sc.json, "results");
    size_t nw = json_array_size(win);
    CHECK_MSG(nw >= 3 && nw <= 40 && jnum(r.json, "n_window") == (double)nw, "%zu", nw);
    for (size_t i = 0; nw >= 3 && i < 3; i++) {
        json_t *got = json_array_get(win, nw - 3 + i);
        json_t *want = json_object_get(json_array_get(res, i), "position");
        for (size_t c = 0; c < 2; c++)
            CHECK_NEAR(json_number_value(json_array_get(got, c)),
                       json_number_value(json_array_get(want, c)), 1e-6);
    }
    response_free(&sc);
    response_free(&r);
    const char *bad[] = {"/v1/models/tiny/map?max_points=0", "/v1/models/tiny/map?max_points=x",
                         "/v1/models/tiny/map?max_points=-3"};
    for (size_t i = 0; i < 3; i++) {
        r = http("GET", bad[i], NULL);
        EXPECT_STATUS(r, 400, "invalid_query");
        response_free(&r);
    }
    r = http("GET", "/v1/models/nope/map", NULL);
    EXPECT_STATUS(r, 404, "unknown_model");
    response_free(&r);
}

/* An Open Inference Protocol body for n samples of x: shape [n, 1, 8, 8], data nested by
 * sample when nested, else flat. */
static char *infer_body(const float *x, int n, int nested, const char *type) {
    json_t *data = json_array();
    for (int i = 0; i < n; i++) {
        json_t *to = data;
        if (nested) {
            to = json_array();
            json_array_append_new(data, to);
        }
        for (int j = 0; j < DIM; j++) json_array_append_new(to, json_real(x[i * DIM + j]));
    }
    json_t *root = json_pack("{s:s, s:[{s:s, s:[i, i, i, i], s:s, s:o}]}", "id", "v2-req",
                             "inputs", "name", "input", "shape", n, 1, SIDE, SIDE,
                             "datatype", type, "data", data);
    char *text = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(root);
    return text;
}

/* Remember the log ids of n scores answered by V2. */
static void remember_ids(const int64_t *id, size_t n) {
    pthread_mutex_lock(&D.lock);
    for (size_t i = 0; i < n && D.n_acked < MAX_ACKED; i++) D.acked[D.n_acked++] = id[i];
    pthread_mutex_unlock(&D.lock);
}

/* The V2 output named name of r (NULL when it has none). */
static json_t *v2_output(const response *r, const char *name) {
    json_t *outs = json_object_get(r->json, "outputs");
    for (size_t i = 0; i < json_array_size(outs); i++)
        if (!strcmp(jstr(json_array_get(outs, i), "name"), name)) return json_array_get(outs, i);
    return NULL;
}

/* Value i of output name of a V2 answer as a double, from its JSON data or from its binary
 * data (the bytes after the JSON header, output after output in their order). */
static double v2_value(const response *r, const char *name, size_t i) {
    json_t *outs = json_object_get(r->json, "outputs");
    size_t at = r->json_len;
    for (size_t k = 0; k < json_array_size(outs); k++) {
        json_t *o = json_array_get(outs, k);
        json_t *size = json_object_get(json_object_get(o, "parameters"), "binary_data_size");
        if (strcmp(jstr(o, "name"), name)) {
            at += (size_t)json_integer_value(size);
            continue;
        }
        if (!size) {
            json_t *v = json_array_get(json_object_get(o, "data"), i);
            return json_is_boolean(v) ? json_is_true(v) : json_number_value(v);
        }
        const char *type = jstr(o, "datatype");
        size_t width = !strcmp(type, "BOOL") ? 1 : 8;
        const uint8_t *p = (const uint8_t *)r->body + at + i * width;
        if (at + (i + 1) * width > r->body_len) return NAN;
        return width == 1 ? p[0] : !strcmp(type, "INT64") ? (double)(int64_t)le_get64(p)
                                                           : le_get_f64(p);
    }
    return NAN;
}

/* A V2 answer for n samples: 200 from tiny, every output of shape [n], the scores, flags
 * and p-values those of the /v1 answer want (equal to its printed digits), in JSON or in
 * binary (json_len set); its log ids are remembered. */
static void expect_v2_scores_(const char *file, int line, response *r, json_t *want, int n) {
    EXPECT_STATUS(*r, 200, NULL);
    if (!r->json || strcmp(jstr(r->json, "model_name"), "tiny") ||
        strcmp(jstr(r->json, "model_version"), D.tiny_version)) {
        check_fail(file, line, "not tiny's answer:\n%.600s", r->raw ? r->raw : "");
        return;
    }
    json_t *res = json_object_get(want, "results");
    int64_t ids[MAX_BATCH];
    for (int i = 0; i < n && i < MAX_BATCH; i++) {
        json_t *w = json_array_get(res, i);
        double score = v2_value(r, "score", i), p = v2_value(r, "p_value", i);
        if (as_printed(score) != jnum(w, "score") || as_printed(p) != jnum(w, "p_value") ||
            v2_value(r, "is_anomaly", i) != json_is_true(json_object_get(w, "is_anomaly")))
            check_fail(file, line, "sample %d: score %.17g, p %.17g; /v1 says %.17g, %.17g", i,
                       score, p, jnum(w, "score"), jnum(w, "p_value"));
        ids[i] = (int64_t)v2_value(r, "log_id", i);
    }
    for (const char *name = "score"; name; name = !strcmp(name, "score") ? "log_id" : NULL)
        if (json_integer_value(json_array_get(json_object_get(v2_output(r, name), "shape"), 0))
            != n)
            check_fail(file, line, "%s: not of shape [%d]", name, n);
    remember_ids(ids, (size_t)n);
}
#define EXPECT_V2_SCORES(r, want, n) expect_v2_scores_(__FILE__, __LINE__, &(r), (want), (n))

/* A V2 refusal: status and code, in the Open Inference Protocol's shape. */
static void expect_v2_error_(const char *file, int line, const response *r, int status,
                             const char *code) {
    char got[32];
    int v2 = 0;
    expect_status_(file, line, r, status, code);
    if (error_code(r, got, &v2) && !v2)
        check_fail(file, line, "a V2 error in /v1's shape:\n%.400s", r->raw);
}
#define EXPECT_V2_ERROR(r, status, code) \
    expect_v2_error_(__FILE__, __LINE__, &(r), (status), (code))

/* KServe V2: the same scores as /v1, as output tensors; health, server and model
 * metadata, the versioned routes, and errors in the protocol's shape. */
TEST(daemon_v2_protocol) {
    if (daemon_up()) return;
    float x[3 * DIM];
    fresh_samples(x, 2, 91, 0);
    fresh_samples(x + 2 * DIM, 1, 92, 1);
    response v1 = score("/v1/models/tiny/score", x, 3, NULL);
    char path[200];
    snprintf(path, sizeof path, "/v2/models/tiny/versions/%s/infer", D.tiny_version);
    for (int variant = 0; variant < 4; variant++) {   /* flat, nested, FP64, versioned */
        char *body = infer_body(x, 3, variant == 1, variant == 2 ? "FP64" : "FP32");
        response r = http("POST", variant == 3 ? path : "/v2/models/tiny/infer", body);
        free(body);
        EXPECT_V2_SCORES(r, v1.json, 3);
        CHECK(r.json && !strcmp(jstr(r.json, "id"), "v2-req") && r.json_len == 0 &&
              strstr(r.raw, "Content-Type: application/json"));
        json_t *outs = json_object_get(r.json, "outputs");
        const char *names[] = {"score", "is_anomaly", "p_value", "log_id"};
        const char *types[] = {"FP64", "BOOL", "FP64", "INT64"};
        CHECK(json_array_size(outs) == 4);
        for (int k = 0; k < 4; k++)
            CHECK(!strcmp(jstr(json_array_get(outs, k), "name"), names[k]) &&
                  !strcmp(jstr(json_array_get(outs, k), "datatype"), types[k]));
        response_free(&r);
    }
    response_free(&v1);
    char *int32 = infer_body(x, 1, 0, "INT32"), *short_data = infer_body(x, 1, 0, "FP32");
    char *p = short_data ? strstr(short_data, ",0.") : NULL;   /* drop one value */
    if (p) memmove(p, strchr(p + 1, ','), strlen(strchr(p + 1, ',')) + 1);
    char other_version[200];
    snprintf(other_version, sizeof other_version, "/v2/models/tiny/versions/%s/infer",
             D.ctx_version);
    const struct {
        const char *path, *body;
        int status;
        const char *code;
    } cases[] = {
        {"/v2/models/tiny/infer", int32, 400, "invalid_request"},
        {"/v2/models/tiny/infer", short_data, 400, "wrong_length"},
        {"/v2/models/tiny/infer", "{\"inputs\": []}", 400, "invalid_request"},
        {"/v2/models/tiny/infer", "{\"inputs\": [{\"name\": \"i\", \"shape\": [1, 63], "
                                  "\"datatype\": \"FP32\", \"data\": []}]}", 400, "wrong_length"},
        {"/v2/models/tiny/infer", "{\"inputs\": [{\"name\": \"i\", \"shape\": [17, 64], "
                                  "\"datatype\": \"FP32\", \"data\": []}]}", 413, "batch_too_large"},
        {"/v2/models/tiny/infer", "{\"inputs\": [{\"name\": \"i\", \"shape\": [1, 64], "
                                  "\"datatype\": \"FP32\", \"data\": [\"a\"]}]}", 400, "not_a_number"},
        {"/v2/models/tiny/infer", "{\"inputz\": 1}", 400, "unknown_field"},
        {"/v2/models/tiny/infer", "{\"inputs\": [], \"outputs\": [{\"name\": \"z\"}]}", 400,
         "invalid_request"},
        {"/v2/models/nope/infer", "{}", 404, "unknown_model"},
        {other_version, "{}", 404, "unknown_version"},
        {"/v2/models/tiny/versions/1/infer", "{}", 404, "unknown_version"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        response r = http("POST", cases[i].path, cases[i].body);
        if (r.status != cases[i].status) check_fail(__FILE__, __LINE__, "v2 case %zu", i);
        EXPECT_V2_ERROR(r, cases[i].status, cases[i].code);
        response_free(&r);
    }
    free(int32);
    free(short_data);
    response r = http("GET", "/v2/health/live", NULL);
    CHECK(r.status == 200 && json_is_true(json_object_get(r.json, "live")));
    response_free(&r);
    r = http("GET", "/v2/health/ready", NULL);
    CHECK(r.status == 200 && json_is_true(json_object_get(r.json, "ready")));
    response_free(&r);
    r = http("GET", "/v2/models/ctx/ready", NULL);
    CHECK(r.status == 200 && json_is_true(json_object_get(r.json, "ready")) &&
          !strcmp(jstr(r.json, "name"), "ctx"));
    response_free(&r);
    snprintf(path, sizeof path, "/v2/models/ctx/versions/%s/ready", D.ctx_version);
    r = http("GET", path, NULL);
    CHECK(r.status == 200 && json_is_true(json_object_get(r.json, "ready")));
    response_free(&r);
    snprintf(path, sizeof path, "/v2/models/ctx/versions/%s/ready", D.tiny_version);
    r = http("GET", path, NULL);
    EXPECT_V2_ERROR(r, 404, "unknown_version");
    response_free(&r);
    r = http("GET", "/v2/models/nope/ready", NULL);
    EXPECT_V2_ERROR(r, 404, "unknown_model");
    response_free(&r);
    for (int versioned = 0; versioned < 2; versioned++) {
        snprintf(path, sizeof path, "/v2/models/tiny%s%s", versioned ? "/versions/" : "",
                 versioned ? D.tiny_version : "");
        r = http("GET", path, NULL);
        json_t *in = json_array_get(json_object_get(r.json, "inputs"), 0);
        CHECK(r.status == 200 && !strcmp(jstr(r.json, "name"), "tiny"));
        CHECK(!strcmp(json_string_value(json_array_get(json_object_get(r.json, "versions"), 0)),
                      D.tiny_version));
        CHECK(json_integer_value(json_array_get(json_object_get(in, "shape"), 1)) == DIM);
        CHECK(json_array_size(json_object_get(r.json, "outputs")) == 4);
        response_free(&r);
    }
    r = http("GET", "/v2/models/tiny/versions/0", NULL);
    EXPECT_V2_ERROR(r, 404, "unknown_version");
    response_free(&r);
    for (int slash = 0; slash < 2; slash++) {
        r = http("GET", slash ? "/v2/" : "/v2", NULL);
        json_t *ext = json_object_get(r.json, "extensions");
        CHECK(r.status == 200 && !strcmp(jstr(r.json, "name"), "anodmd") &&
              jstr(r.json, "version") && json_array_size(ext) == 1 &&
              !strcmp(json_string_value(json_array_get(ext, 0)), "binary_tensor_data"));
        response_free(&r);
    }
    /* Every refusal on a V2 path takes the protocol's shape, the router's too. */
    r = http("GET", "/v2/nothing", NULL);
    EXPECT_V2_ERROR(r, 404, "not_found");
    response_free(&r);
    r = http("DELETE", "/v2/models/tiny", NULL);
    EXPECT_V2_ERROR(r, 405, "method_not_allowed");
    response_free(&r);
}

/* POST path with a V2 JSON header and binary data after it, as tritonclient sends them:
 * with Content-Type type (NULL: none) and Inference-Header-Content-Length header_len (< 0:
 * none). */
static response post_binary(const char *path, const char *json, const void *bin, size_t n,
                            long header_len, const char *type) {
    size_t jl = strlen(json);
    char head[512], framing[64] = "", ctype[80] = "";
    if (header_len >= 0)
        snprintf(framing, sizeof framing, "Inference-Header-Content-Length: %ld\r\n", header_len);
    if (type) snprintf(ctype, sizeof ctype, "Content-Type: %s\r\n", type);
    int h = snprintf(head, sizeof head, "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: "
                     "close\r\n%s%sContent-Length: %zu\r\n\r\n", path, ctype, framing, jl + n);
    char *req = malloc((size_t)h + jl + n);
    response r = {0};
    if (!req) return r;
    memcpy(req, head, (size_t)h);
    memcpy(req + h, json, jl);
    if (n) memcpy(req + h + jl, bin, n);
    r = exchange(req, (size_t)h + jl + n);
    free(req);
    return r;
}

/* The JSON header of a binary request for n samples of datatype type (bytes each), with
 * the request's parameters and outputs as given (JSON text, "" for none). */
static void binary_header(char *out, size_t cap, int n, const char *type, size_t bytes,
                          const char *extra) {
    snprintf(out, cap, "{\"id\":\"bin\",\"inputs\":[{\"name\":\"input\",\"shape\":[%d,%d],"
             "\"datatype\":\"%s\",\"parameters\":{\"binary_data_size\":%zu}}]%s}", n, DIM, type,
             (size_t)n * DIM * bytes, extra);
}

/* The binary tensor data extension: inputs as raw FP32, FP64 and UINT8 bytes after the
 * JSON, outputs as JSON or as binary, and the answers those of /v1 for the same samples. */
TEST(daemon_v2_binary) {
    if (daemon_up()) return;
    enum { N = 3 };
    float x[N * DIM];
    fresh_samples(x, 2, 93, 0);
    fresh_samples(x + 2 * DIM, 1, 94, 1);
    response v1 = score("/v1/models/tiny/score", x, N, NULL);
    uint8_t f32[N * DIM * 4], f64[N * DIM * 8];
    for (int i = 0; i < N * DIM; i++) {
        le_put_f32(f32 + 4 * i, x[i]);
        le_put_f64(f64 + 8 * i, x[i]);
    }
    const char *extras[] = {
        "",                                                   /* outputs in JSON */
        ",\"parameters\":{\"binary_data_output\":true}",      /* every output binary */
        ",\"outputs\":[{\"name\":\"log_id\",\"parameters\":{\"binary_data\":true}},"
        "{\"name\":\"is_anomaly\"},{\"name\":\"p_value\",\"parameters\":{\"binary_data\":true}},"
        "{\"name\":\"score\"}]",                              /* a mix, in another order */
    };
    const char *types[] = {"application/octet-stream", NULL, "application/json"};
    for (int e = 0; e < 3; e++)
        for (int t = 0; t < 2; t++) {
            char json[600];
            binary_header(json, sizeof json, N, t ? "FP64" : "FP32", t ? 8 : 4, extras[e]);
            response r = post_binary("/v2/models/tiny/infer", json, t ? f64 : f32,
                                     t ? sizeof f64 : sizeof f32, (long)strlen(json), types[e]);
            EXPECT_V2_SCORES(r, v1.json, N);
            CHECK_MSG((r.json_len > 0) == (e > 0) &&
                      (e == 0 || strstr(r.raw, "Content-Type: application/octet-stream")),
                      "case %d/%d:\n%.500s", e, t, r.raw ? r.raw : "");
            if (e == 2) {
                json_t *outs = json_object_get(r.json, "outputs");
                CHECK(json_array_size(outs) == 4 &&
                      !strcmp(jstr(json_array_get(outs, 0), "name"), "log_id") &&
                      !strcmp(jstr(json_array_get(outs, 3), "name"), "score") &&
                      r.body_len == r.json_len + N * 8 * 2);
            }
            response_free(&r);
        }
    response_free(&v1);
    /* UINT8: pixels, v/255 as the data readers take bytes, in binary and in JSON. */
    uint8_t u8[N * DIM];
    float xu[N * DIM];
    for (int i = 0; i < N * DIM; i++) {
        u8[i] = (uint8_t)(i * 37 % 256);
        xu[i] = u8[i] / 255.0f;
    }
    v1 = score("/v1/models/tiny/score", xu, N, NULL);
    char json[600];
    binary_header(json, sizeof json, N, "UINT8", 1, "");
    response r = post_binary("/v2/models/tiny/infer", json, u8, sizeof u8, (long)strlen(json),
                             "application/octet-stream");
    EXPECT_V2_SCORES(r, v1.json, N);
    response_free(&r);
    json_t *data = json_array();
    for (int i = 0; i < N * DIM; i++) json_array_append_new(data, json_integer(u8[i]));
    json_t *root = json_pack("{s:[{s:s, s:[i, i], s:s, s:o}]}", "inputs", "name", "u", "shape",
                             N, DIM, "datatype", "UINT8", "data", data);
    char *body = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    r = http("POST", "/v2/models/tiny/infer", body ? body : "");
    EXPECT_V2_SCORES(r, v1.json, N);
    response_free(&r);
    free(body);
    response_free(&v1);
    /* A few refusals here; daemon_abuse_cases has the rest. */
    binary_header(json, sizeof json, 1, "FP32", 4, "");
    r = post_binary("/v2/models/tiny/infer", json, f32, DIM * 4 - 1, (long)strlen(json), NULL);
    EXPECT_V2_ERROR(r, 400, "wrong_length");
    response_free(&r);
    r = post_binary("/v2/models/tiny/infer", json, f32, DIM * 4, -1, NULL);
    EXPECT_V2_ERROR(r, 400, "malformed_json");
    response_free(&r);
    r = post_binary("/v2/models/tiny/infer", json, f32, DIM * 4, (long)strlen(json) + DIM * 4 + 1,
                    NULL);
    EXPECT_V2_ERROR(r, 400, "invalid_request");
    response_free(&r);
    r = post_binary("/v1/models/tiny/score", "{}", NULL, 0, 2, "application/octet-stream");
    EXPECT_STATUS(r, 415, "unsupported_media_type");
    response_free(&r);
}

/* The version GET /v1/models/swap reports, into out (65 bytes). */
static void swap_version(char *out) {
    response r = http("GET", "/v1/models/swap", NULL);
    snprintf(out, 65, "%s", r.json && jstr(r.json, "version") ? jstr(r.json, "version") : "");
    response_free(&r);
}

/* Send SIGHUP and wait until the daemon's output says `want` one more time. */
static int sighup_until(const char *want) {
    char *out = slurp(D.log);
    int seen = 0;
    for (const char *at = out; at && (at = strstr(at, want)); at++) seen++;
    free(out);
    CHECK(kill(D.pid, SIGHUP) == 0);
    for (int waited = 0; waited < 10000; waited += 20) {
        int now = 0;
        out = slurp(D.log);
        for (const char *at = out; at && (at = strstr(at, want)); at++) now++;
        free(out);
        if (now > seen) return 0;
        sleep_ms(20);
    }
    check_fail(__FILE__, __LINE__, "no '%s' after SIGHUP", want);
    return -1;
}

/* SIGHUP reloads every bundle; a corrupt one leaves the old models serving. */
TEST(daemon_sighup_reload) {
    if (daemon_up()) return;
    char v[65];
    swap_version(v);
    CHECK(!strcmp(v, D.tiny_version));
    if (install_file(D.ctx, D.swap) || sighup_until("reload done")) return;
    swap_version(v);
    CHECK_MSG(!strcmp(v, D.ctx_version), "after reload: %s", v);
    float x[DIM];
    fresh_samples(x, 1, 123, 0);
    response r = score("/v1/models/swap/score", x, 0, NULL);
    CHECK(r.json && !strcmp(jstr(r.json, "version"), D.ctx_version));
    response_free(&r);
    FILE *f = fopen(D.swap, "wb");
    if (f) {
        fputs("not a bundle", f);
        fclose(f);
    }
    if (sighup_until("reload failed")) return;
    swap_version(v);
    CHECK_MSG(!strcmp(v, D.ctx_version), "after a failed reload: %s", v);
    r = score("/v1/models/swap/score", x, 0, NULL);
    CHECK(r.json && !strcmp(jstr(r.json, "version"), D.ctx_version));
    response_free(&r);
    char *out = slurp(D.log);
    CHECK(out && strstr(out, "still serving the previous models: model swap"));
    free(out);
}

/* Under systemd: READY=1 once serving, WATCHDOG=1 pings at half of WATCHDOG_USEC, and
 * STOPPING=1 on SIGTERM, as datagrams to $NOTIFY_SOCKET. */
TEST(daemon_sd_notify) {
    if (make_bundles()) return;
    char sock[600], db[600], model[600];
    snprintf(sock, sizeof sock, "%s/notify.sock", test_tmpdir());
    snprintf(db, sizeof db, "%s/notify.db", test_tmpdir());
    snprintf(model, sizeof model, "tiny=%s", D.tiny);
    unlink(sock);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int fd = strlen(sock) < sizeof a.sun_path ? socket(AF_UNIX, SOCK_DGRAM, 0) : -1;
    if (fd >= 0) memcpy(a.sun_path, sock, strlen(sock) + 1);
    struct timeval tv = {10, 0};
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        check_fail(__FILE__, __LINE__, "cannot bind %s", sock);
        if (fd >= 0) close(fd);
        return;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        setenv("NOTIFY_SOCKET", sock, 1);
        setenv("WATCHDOG_USEC", "100000", 1);
        execl(anodmd_bin(), "anodmd", "--model", model, "--port", "0", "--db", db, (char *)NULL);
        _exit(127);
    }
    const char *want[] = {"READY=1", "WATCHDOG=1", "WATCHDOG=1", "STOPPING=1"};
    for (int i = 0; pid > 0 && i < 4; i++) {
        char buf[256];
        ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
        buf[n > 0 ? n : 0] = 0;
        while (i == 3 && !strcmp(buf, "WATCHDOG=1")) {   /* pings until the stop lands */
            n = recv(fd, buf, sizeof buf - 1, 0);
            buf[n > 0 ? n : 0] = 0;
        }
        CHECK_MSG(!strcmp(buf, want[i]), "message %d: '%s', want '%s'", i, buf, want[i]);
        if (i == 2) kill(pid, SIGTERM);
    }
    int status = -1;
    if (pid > 0) waitpid(pid, &status, 0);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
    close(fd);
    unlink(sock);
}

#define KEY_A "list-key-0123456789abcdef"
#define KEY_B "list-key-second-ABCDEFGHIJ"
#define KEY_F "file-key-0123456789ABCDEF+/="

/* GET or POST path on the daemon at port with an Authorization header (auth NULL: none);
 * the status, and for a 401 the error code and the WWW-Authenticate challenge checked. */
static void expect_auth_(const char *file, int line, int port, const char *method,
                         const char *path, const char *body, const char *auth, int status) {
    char headers[256] = "";
    if (auth) snprintf(headers, sizeof headers, "Authorization: %s\r\n", auth);
    int saved = D.port;
    D.port = port;
    response r = http_with(method, path, body, headers);
    D.port = saved;
    if (r.status != status ||
        (status == 401 && (!strstr(r.raw, "\r\nWWW-Authenticate: Bearer realm=\"anodmd\"") ||
                           (auth && !strstr(r.raw, "error=\"invalid_token\"")))))
        check_fail(file, line, "%s %s with '%s': want %d; got:\n%.1000s", method, path,
                   auth ? auth : "(none)", status, r.raw ? r.raw : "(no response)");
    if (status == 401) expect_status_(file, line, &r, 401, "unauthorized");
    response_free(&r);
}
#define EXPECT_AUTH(port, method, path, body, auth, status) \
    expect_auth_(__FILE__, __LINE__, port, method, path, body, auth, status)

/* With API keys (from the flag and from a file), every route but the health probes
 * wants one as a Bearer token; keys are checked when loaded and never printed. */
TEST(daemon_api_keys) {
    if (make_bundles()) return;
    char keyfile[600], db[OWN_PATH], log[OWN_PATH], model[OWN_PATH];
    snprintf(keyfile, sizeof keyfile, "%s/daemon_keys.txt", test_tmpdir());
    own_daemon_files("daemon_keys", db, log, model);
    FILE *f = fopen(keyfile, "w");
    CHECK(f != NULL);
    if (!f) return;
    fprintf(f, "# keys for the test\n\n  " KEY_F "  # the file's key\n");
    fclose(f);
    EXPECT_CLI(2, "api_keys: key 2 is not 16..256 characters",
               "--check-config --model %s --api-keys " KEY_A ",short-secret", D.tiny);
    char bad[600];
    snprintf(bad, sizeof bad, "%s/daemon_bad_keys.txt", test_tmpdir());
    if ((f = fopen(bad, "w"))) {
        fprintf(f, KEY_F "\n# a comment\nshort-secret\n");
        fclose(f);
    }
    EXPECT_CLI(2, "daemon_bad_keys.txt:3: the key is not", "--check-config --model %s "
               "--api-keys-file %s", D.tiny, bad);
    char *out;
    run_anodmd(&out, "--check-config --model %s --api-keys " KEY_A " --api-keys-file %s",
               D.tiny, keyfile);
    CHECK_MSG(strstr(out, "api_keys is set (not shown)") && strstr(out, "2 API keys") &&
              !strstr(out, "list-key") && !strstr(out, "file-key"), "%.1500s", out);
    CHECK(!strstr(out, "short-secret"));
    free(out);

    const char *args[] = {"--model", model, "--db", db, "--api-keys", KEY_A "," KEY_B,
                          "--api-keys-file", keyfile, NULL};
    int port;
    pid_t pid = spawn_anodmd(log, args, &port);
    char one[600];
    single_body(one, sizeof one, "0.5", DIM);
    if (port) {
        EXPECT_AUTH(port, "GET", "/healthz", NULL, NULL, 200);
        EXPECT_AUTH(port, "GET", "/readyz", NULL, NULL, 200);
        EXPECT_AUTH(port, "GET", "/v2/health/ready", NULL, NULL, 200);
        EXPECT_AUTH(port, "GET", "/v2/models/tiny/ready", NULL, NULL, 200);
        EXPECT_AUTH(port, "POST", "/v1/score", one, NULL, 401);
        EXPECT_AUTH(port, "GET", "/v1/models", NULL, NULL, 401);
        EXPECT_AUTH(port, "GET", "/v1/scores", NULL, NULL, 401);
        EXPECT_AUTH(port, "GET", "/metrics", NULL, NULL, 401);
        EXPECT_AUTH(port, "POST", "/v1/score", one, "Bearer wrong-key-0123456789abc", 401);
        EXPECT_AUTH(port, "POST", "/v1/score", one, "Bearer list-key-0123456789abcde", 401);
        EXPECT_AUTH(port, "POST", "/v1/score", one, "Bearer " KEY_A "0", 401);
        EXPECT_AUTH(port, "POST", "/v1/score", one, "Basic " KEY_A, 401);
        EXPECT_AUTH(port, "POST", "/v1/score", one, "Bearer " KEY_A, 200);
        EXPECT_AUTH(port, "POST", "/v2/models/tiny/infer", "{}", "Bearer " KEY_B, 400);
        EXPECT_AUTH(port, "GET", "/v1/scores", NULL, "bearer " KEY_F, 200);
        EXPECT_AUTH(port, "GET", "/metrics", NULL, "Bearer  " KEY_B, 200);
    }
    stop_anodmd(pid);
    out = slurp(log);
    CHECK_MSG(out && strstr(out, "3 API keys") && !strstr(out, "list-key") &&
              !strstr(out, "file-key"), "%.1500s", out ? out : "");
    free(out);
}

/* answer_after_commit off: the answer comes first, without a log id; the row follows. */
TEST(daemon_answer_before_commit) {
    if (make_bundles()) return;
    char db_path[OWN_PATH], log[OWN_PATH], model[OWN_PATH];
    own_daemon_files("daemon_early", db_path, log, model);
    EXPECT_CLI(2, "answer_after_commit", "--model %s --answer-after-commit maybe --check-config",
               model);
    const char *args[] = {"--model", model, "--db", db_path, "--answer-after-commit", "off", NULL};
    int port;
    pid_t pid = spawn_anodmd(log, args, &port);
    if (port) {
        float x[3 * DIM];
        fresh_samples(x, 3, 5, 0);
        char *body = score_body(x, 3, ",\"id\":\"early\"");
        response r = http_request(port, "POST", "/v1/score", body, "");
        EXPECT_STATUS(r, 200, NULL);
        json_t *res = json_object_get(r.json, "results");
        CHECK(json_array_size(res) == 3);
        for (size_t i = 0; i < json_array_size(res); i++) {
            json_t *one = json_array_get(res, i);
            CHECK(json_is_null(json_object_get(one, "log_id")) &&
                  json_is_number(json_object_get(one, "score")));
        }
        response_free(&r);
        free(body);
        /* The rows are committed all the same, soon after. */
        int seen = 0;
        for (int tries = 0; tries < 100 && seen < 3; tries++) {
            r = http_request(port, "GET", "/v1/scores?since_id=0", NULL, "");
            seen = (int)json_array_size(json_object_get(r.json, "scores"));
            response_free(&r);
            if (seen < 3) sleep_ms(50);
        }
        CHECK_MSG(seen == 3, "%d of 3 rows in the log", seen);
    }
    stop_anodmd(pid);
    LOG_INTACT(db_path, 3);
}

/* A log written by schema version 1 (before the latent term) is migrated at start: its
 * rows kept, with the new columns NULL (served as null), new rows complete. */
TEST(daemon_log_migrates_version_1) {
    if (make_bundles()) return;
    char db_path[OWN_PATH], log[OWN_PATH], model[OWN_PATH];
    own_daemon_files("daemon_v1", db_path, log, model);
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(db_path, &db) == SQLITE_OK &&
          sqlite3_exec(db,
              "PRAGMA journal_mode = WAL;"
              "CREATE TABLE scores (id INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL,"
              "  model TEXT NOT NULL, version TEXT NOT NULL, request_id TEXT, source TEXT,"
              "  idx INTEGER NOT NULL, score REAL, raw_score REAL, is_anomaly INTEGER NOT NULL,"
              "  threshold REAL, p_value REAL, d_re REAL, d_map REAL, z_re REAL, z_map REAL,"
              "  x REAL, y REAL, nearest_ref INTEGER, nearest_distance REAL);"
              "CREATE INDEX scores_by_model ON scores(model, id);"
              "CREATE INDEX scores_by_source ON scores(source, id);"
              "CREATE INDEX scores_anomalies ON scores(id) WHERE is_anomaly = 1;"
              "INSERT INTO scores VALUES (1, 1764000000000, 'tiny', 'v1', 'old', NULL, 0, 0.5,"
              "  0.4, 0, 3.0, 0.5, 0.1, 0.2, 0.3, 0.4, 1.0, 2.0, 7, 0.25);"
              "PRAGMA user_version = 1;", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    const char *args[] = {"--model", model, "--db", db_path, NULL};
    int port;
    pid_t pid = spawn_anodmd(log, args, &port);
    if (port) {
        char one[600];
        single_body(one, sizeof one, "0.5", DIM);
        response r = http_request(port, "POST", "/v1/score", one, "");
        EXPECT_STATUS(r, 200, NULL);
        response_free(&r);
        r = http_request(port, "GET", "/v1/scores/1", NULL, "");
        EXPECT_STATUS(r, 200, NULL);
        json_t *terms = json_object_get(r.json, "terms");
        CHECK(!strcmp(jstr(r.json, "id"), "old") && jnum(terms, "d_map") == 0.2);
        CHECK(json_is_null(json_object_get(terms, "d_latent")) &&
              json_is_null(json_object_get(terms, "z_latent")));
        response_free(&r);
        r = http_request(port, "GET", "/v1/scores/2", NULL, "");
        terms = json_object_get(r.json, "terms");
        CHECK(json_is_number(json_object_get(terms, "d_latent")) &&
              json_is_number(json_object_get(terms, "z_latent")));
        response_free(&r);
        /* The statistics' indexes were built over the old rows too. */
        r = http_request(port, "GET", "/v1/stats", NULL, "");
        json_t *model0 = json_array_get(json_object_get(r.json, "models"), 0);
        json_t *all = json_object_get(json_object_get(model0, "windows"), "all");
        CHECK_MSG(jnum(all, "count") == 2, "%s", r.body ? r.body : "");
        response_free(&r);
    }
    stop_anodmd(pid);
    if ((db = log_open_readonly(db_path))) {
        CHECK(log_int(db, "PRAGMA user_version") == 6);
        CHECK(log_int(db, "SELECT count(*) FROM sqlite_master WHERE name IN ('scores_by_model_"
                          "time', 'scores_by_model_score', 'sink_position')") == 3);
        /* and the stream memories' tables (version 4), empty: tiny has no memory */
        CHECK(log_int(db, "SELECT count(*) FROM memories") == 0 &&
              log_int(db, "SELECT count(*) FROM memory_journal") == 0);
        CHECK(log_int(db, "SELECT count(*) FROM scores") == 2);
        CHECK(log_int(db, "SELECT count(*) FROM scores WHERE d_latent IS NULL") == 1);
        sqlite3_close(db);
    }
    LOG_INTACT(db_path, 2);
}

/* A version-5 log, whose index by source holds every row, gets it rebuilt over the tagged
 * rows at start (version 6): paging by a tag finds the old rows and the new. */
TEST(daemon_log_migrates_version_5) {
    if (make_bundles()) return;
    char db_path[OWN_PATH], log[OWN_PATH], model[OWN_PATH], one[600], tagged[600];
    own_daemon_files("daemon_v5", db_path, log, model);
    single_body(one, sizeof one, "0.5", DIM);
    snprintf(tagged, sizeof tagged, "%.*s,\"source\":\"pager\"}", (int)strlen(one) - 1, one);
    const char *args[] = {"--model", model, "--db", db_path, NULL};
    int port;
    pid_t pid = spawn_anodmd(log, args, &port);
    for (int i = 0; port && i < 2; i++) {
        response r = http_request(port, "POST", "/v1/score", i ? one : tagged, "");
        EXPECT_STATUS(r, 200, NULL);
        response_free(&r);
    }
    stop_anodmd(pid);
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(db_path, &db) == SQLITE_OK &&
          sqlite3_exec(db, "DROP INDEX scores_by_source;"
                           "CREATE INDEX scores_by_source ON scores(source, id);"
                           "PRAGMA user_version = 5;", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    pid = spawn_anodmd(log, args, &port);
    if (port) {
        response r = http_request(port, "POST", "/v1/score", tagged, "");
        EXPECT_STATUS(r, 200, NULL);
        response_free(&r);
        r = http_request(port, "GET", "/v1/scores?source=pager", NULL, "");
        json_t *scores = json_object_get(r.json, "scores");
        CHECK_MSG(json_array_size(scores) == 2, "%s", r.body ? r.body : "");
        CHECK(jnum(json_array_get(scores, 0), "log_id") == 1 &&
              jnum(json_array_get(scores, 1), "log_id") == 3);
        response_free(&r);
        r = http_request(port, "GET", "/v1/scores", NULL, "");
        CHECK(json_array_size(json_object_get(r.json, "scores")) == 3);
        response_free(&r);
    }
    stop_anodmd(pid);
    if ((db = log_open_readonly(db_path))) {
        CHECK(log_int(db, "PRAGMA user_version") == 6);
        CHECK(log_int(db, "SELECT count(*) FROM sqlite_master WHERE name = 'scores_by_source' "
                          "AND sql LIKE '%WHERE source IS NOT NULL'") == 1);
        CHECK(log_int(db, "SELECT count(*) FROM scores INDEXED BY scores_by_source WHERE "
                          "source = 'pager'") == 2);
        sqlite3_close(db);
    }
    LOG_INTACT(db_path, 3);
}

/* A field added to the score record's table (core/detect/detector.h) becomes a column of an
 * existing log at start, without a schema version: here a version-3 log from before
 * z_latent (the column dropped after a first run) gets it back, its old row null there,
 * new rows complete, and a column declared exactly as a new log declares it. */
TEST(daemon_log_adds_new_record_columns) {
    if (make_bundles()) return;
    char db_path[OWN_PATH], log[OWN_PATH], model[OWN_PATH], one[600];
    own_daemon_files("daemon_new_column", db_path, log, model);
    single_body(one, sizeof one, "0.5", DIM);
    const char *args[] = {"--model", model, "--db", db_path, NULL};
    int port;
    pid_t pid = spawn_anodmd(log, args, &port);
    if (port) {
        response r = http_request(port, "POST", "/v1/score", one, "");
        EXPECT_STATUS(r, 200, NULL);
        response_free(&r);
    }
    stop_anodmd(pid);
    sqlite3 *db = NULL;
    char *fresh = NULL;   /* the column as a new log declares it */
    CHECK(sqlite3_open(db_path, &db) == SQLITE_OK);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT type FROM pragma_table_info('scores') WHERE name = "
                           "'z_latent'", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW) fresh = strdup((const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    CHECK(fresh && !strcmp(fresh, "REAL"));
    CHECK(sqlite3_exec(db, "ALTER TABLE scores DROP COLUMN z_latent", NULL, NULL, NULL) ==
          SQLITE_OK);
    sqlite3_close(db);
    pid = spawn_anodmd(log, args, &port);
    if (port) {
        response r = http_request(port, "POST", "/v1/score", one, "");
        EXPECT_STATUS(r, 200, NULL);
        response_free(&r);
        r = http_request(port, "GET", "/v1/scores/1", NULL, "");
        EXPECT_STATUS(r, 200, NULL);
        json_t *terms = json_object_get(r.json, "terms");
        CHECK(json_is_number(json_object_get(terms, "d_latent")) &&
              json_is_null(json_object_get(terms, "z_latent")));
        response_free(&r);
        r = http_request(port, "GET", "/v1/scores/2", NULL, "");
        CHECK(json_is_number(json_object_get(json_object_get(r.json, "terms"), "z_latent")));
        response_free(&r);
    }
    stop_anodmd(pid);
    if ((db = log_open_readonly(db_path))) {
        CHECK(log_int(db, "PRAGMA user_version") == 6);
        CHECK(log_int(db, "SELECT count(*) FROM pragma_table_info('scores') WHERE name = "
                          "'z_latent' AND type = 'REAL'") == 1);
        CHECK(log_int(db, "SELECT count(*) FROM scores WHERE z_latent IS NULL") == 1);
        sqlite3_close(db);
    }
    free(fresh);
    LOG_INTACT(db_path, 2);
}

/* The log keeps rows for retention_days and at most retention_rows of them, trimmed
 * by the writer as the daemon runs. */
TEST(daemon_retention) {
    if (make_bundles()) return;
    char db_path[OWN_PATH], log[OWN_PATH], model[OWN_PATH];
    own_daemon_files("daemon_retention", db_path, log, model);
    const char *args[] = {"--model", model, "--db", db_path, "--retention-days", "7",
                          "--retention-rows", "30", NULL};
    int port, saved = D.port;
    pid_t pid = spawn_anodmd(log, args, &port);
    if (!port) return;
    D.port = port;              /* http() talks to this daemon until the end */
    /* Three rows from ten days ago, as an older daemon would have left them (so with the
     * lowest ids: retention never deletes the newest row, whatever its age). */
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(db_path, &db) == SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    char sql[300];
    snprintf(sql, sizeof sql, "INSERT INTO scores (ts_ms, model, version, idx, is_anomaly) "
             "VALUES (%lld, 'old', 'v', 0, 0), (%lld, 'old', 'v', 1, 0), "
             "(%lld, 'old', 'v', 2, 0)", (long long)(time(NULL) - 10 * 86400) * 1000,
             (long long)(time(NULL) - 10 * 86400) * 1000,
             (long long)(time(NULL) - 8 * 86400) * 1000);
    CHECK(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK);
    float x[40 * DIM];
    fresh_samples(x, 40, 31, 0);
    char *body = score_body(x, 10, NULL);
    response r = http("POST", "/v1/score", body);
    EXPECT_STATUS(r, 200, NULL);
    response_free(&r);
    free(body);
    long long old = 3;
    for (int waited = 0; waited < 5000 && old; waited += 50, sleep_ms(50))
        old = log_int(db, "SELECT count(*) FROM scores WHERE model = 'old'");
    CHECK_MSG(old == 0, "%lld rows older than 7 days remain", old);
    CHECK(log_int(db, "SELECT count(*) FROM scores") == 10);
    /* 40 more: 50 rows, so the oldest 20 go and the newest 30 stay. */
    body = score_body(x, 40, NULL);
    r = http("POST", "/v1/score", body);
    EXPECT_STATUS(r, 200, NULL);
    long long newest = (long long)jnum(json_array_get(json_object_get(r.json, "results"), 39),
                                       "log_id");
    response_free(&r);
    free(body);
    long long rows = -1;
    for (int waited = 0; waited < 5000 && rows != 30; waited += 50, sleep_ms(50))
        rows = log_int(db, "SELECT count(*) FROM scores");
    CHECK_MSG(rows == 30, "%lld rows kept, want 30", rows);
    CHECK(log_int(db, "SELECT max(id) FROM scores") == newest);
    CHECK(log_int(db, "SELECT min(id) FROM scores") == newest - 29);
    sqlite3_close(db);
    D.port = saved;
    stop_anodmd(pid);
}

/* ------------------------------------------------------------------ the dashboard */

/* GET / and the dashboard's files: embedded, typed, under a Content-Security-Policy;
 * unknown files are 404 and the page is only read. */
TEST(daemon_dashboard_files) {
    if (daemon_up()) return;
    response r = http("GET", "/", NULL);
    CHECK_MSG(r.status == 200 && strstr(r.raw, "\r\nContent-Type: text/html") &&
              strstr(r.raw, "\r\nContent-Security-Policy: default-src 'self'") &&
              strstr(r.raw, "\r\nX-Content-Type-Options: nosniff") &&
              strstr(r.body, "/dashboard/app.js") && strstr(r.body, "/dashboard/style.css"),
              "%.1000s", r.raw ? r.raw : "(no response)");
    response_free(&r);
    static const char *const files[][2] = {{"/dashboard/app.js", "text/javascript"},
                                           {"/dashboard/style.css", "text/css"},
                                           {"/dashboard/index.html", "text/html"}};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char want[80];
        snprintf(want, sizeof want, "\r\nContent-Type: %s", files[i][1]);
        r = http("GET", files[i][0], NULL);
        CHECK_MSG(r.status == 200 && strstr(r.raw, want) && strlen(r.body) > 100, "%s: %.500s",
                  files[i][0], r.raw ? r.raw : "(no response)");
        response_free(&r);
    }
    r = http("GET", "/dashboard/nope.js", NULL);
    EXPECT_STATUS(r, 404, "not_found");
    response_free(&r);
    r = http("GET", "/dashboard/../README.md", NULL);
    EXPECT_STATUS(r, 404, "not_found");
    response_free(&r);
    r = http("POST", "/", "{}");
    EXPECT_STATUS(r, 405, "method_not_allowed");
    response_free(&r);
}

/* The log ids of a score response's results, into id (room for n). */
static void result_ids(const response *r, int64_t *id, int n) {
    json_t *res = json_object_get(r->json, "results");
    for (int i = 0; i < n; i++) id[i] = (int64_t)jnum(json_array_get(res, (size_t)i), "log_id");
}

/* GET path: the log ids of its page, in order, into id (room for cap); how many, or -1. */
static int page_ids(const char *path, int64_t *id, int cap) {
    response r = http("GET", path, NULL);
    EXPECT_STATUS(r, 200, NULL);
    json_t *scores = json_object_get(r.json, "scores");
    int n = scores ? (int)json_array_size(scores) : -1;
    for (int i = 0; i < n && i < cap; i++) id[i] = (int64_t)jnum(json_array_get(scores, (size_t)i), "log_id");
    if (n > 0 && (int64_t)jnum(r.json, "next_since_id") != id[n < cap ? n - 1 : cap - 1])
        check_fail(__FILE__, __LINE__, "%s: next_since_id is not the last row's", path);
    response_free(&r);
    return n;
}

/* before_id pages back from the newest rows: the newest `limit` below it, oldest first,
 * combined with since_id and the filters. */
TEST(daemon_scores_before_id) {
    if (daemon_up()) return;
    float x[6 * DIM];
    int64_t id[6], got[10];
    fresh_samples(x, 6, 606, 0);
    response s = score("/v1/models/tiny/score", x, 6, ",\"source\":\"before-test\"");
    result_ids(&s, id, 6);
    response_free(&s);
    char path[200];
    snprintf(path, sizeof path, "/v1/scores?source=before-test&before_id=%lld&limit=2",
             (long long)id[5]);
    CHECK(page_ids(path, got, 10) == 2 && got[0] == id[3] && got[1] == id[4]);
    snprintf(path, sizeof path, "/v1/scores?source=before-test&model=tiny&before_id=%lld"
             "&since_id=%lld&limit=10", (long long)id[5], (long long)id[1]);
    CHECK(page_ids(path, got, 10) == 3 && got[0] == id[2] && got[2] == id[4]);
    CHECK(page_ids("/v1/scores?source=before-test&before_id=9223372036854775807&limit=1", got,
                   10) == 1 && got[0] == id[5]);
    snprintf(path, sizeof path, "/v1/scores?source=before-test&before_id=%lld", (long long)id[0]);
    CHECK(page_ids(path, got, 10) == 0);
    static const char *const bad[] = {"/v1/scores?before_id=0", "/v1/scores?before_id=x",
                                      "/v1/scores?before_id=-3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        response r = http("GET", bad[i], NULL);
        EXPECT_STATUS(r, 400, "invalid_query");
        response_free(&r);
    }
}

/* Two JSON arrays of numbers agree to the encoding's precision. */
static int same_numbers(json_t *a, json_t *b) {
    if (!json_is_array(a) || !json_is_array(b) || json_array_size(a) != json_array_size(b))
        return 0;
    for (size_t i = 0; i < json_array_size(a); i++) {
        double u = json_number_value(json_array_get(a, i)), v = json_number_value(json_array_get(b, i));
        if (fabs(u - v) > 1e-8 + 1e-7 * fabs(v)) return 0;
    }
    return 1;
}

/* GET /v1/scores/{id}/sample: the input the daemon holds, with its reconstruction, error
 * and neighbours as an explained score gives them. */
TEST(daemon_sample_view) {
    if (daemon_up()) return;
    float x[2 * DIM];
    fresh_samples(x, 2, 707, 1);
    x[DIM + 5] = 0.25f;
    response s = score("/v1/models/tiny/score", x, 2, ",\"explain\":true");
    json_t *res = json_array_get(json_object_get(s.json, "results"), 1);
    char path[100];
    snprintf(path, sizeof path, "/v1/scores/%lld/sample", (long long)jnum(res, "log_id"));
    response r = http("GET", path, NULL);
    EXPECT_STATUS(r, 200, NULL);
    json_t *v = r.json, *shape = json_object_get(v, "shape"), *in = json_object_get(v, "input");
    CHECK(res && v && jnum(v, "log_id") == jnum(res, "log_id"));
    CHECK(v && !strcmp(jstr(v, "model"), "tiny") && !strcmp(jstr(v, "version"), D.tiny_version));
    CHECK(json_array_size(shape) == 3 && json_integer_value(json_array_get(shape, 0)) == 1 &&
          json_integer_value(json_array_get(shape, 1)) == SIDE &&
          json_integer_value(json_array_get(shape, 2)) == SIDE);
    int same_input = json_array_size(in) == DIM;
    for (int j = 0; same_input && j < DIM; j++)
        same_input = (float)json_number_value(json_array_get(in, (size_t)j)) == x[DIM + j];
    CHECK_MSG(same_input, "the input held is not the one scored");
    CHECK(same_numbers(json_object_get(v, "reconstruction"), json_object_get(res, "reconstruction")));
    CHECK(same_numbers(json_object_get(v, "squared_error"), json_object_get(res, "squared_error")));
    json_t *nb = json_object_get(v, "neighbors"), *want = json_object_get(res, "neighbors");
    CHECK(json_array_size(nb) == 3 && json_array_size(want) == 3);
    for (size_t i = 0; i < json_array_size(want); i++)
        CHECK(jnum(json_array_get(nb, i), "ref") == jnum(json_array_get(want, i), "ref") &&
              fabs(jnum(json_array_get(nb, i), "distance") -
                   jnum(json_array_get(want, i), "distance")) < 1e-6);
    response_free(&r);
    response_free(&s);
    r = http("GET", "/v1/scores/abc/sample", NULL);
    EXPECT_STATUS(r, 400, "invalid_request");
    response_free(&r);
    r = http("GET", "/v1/scores/987654321/sample", NULL);
    EXPECT_STATUS(r, 404, "not_found");
    response_free(&r);
}

/* GET path on the daemon at port: its status, and the body contains want (NULL: any). */
static void expect_get_(const char *file, int line, int port, const char *path, int status,
                        const char *want) {
    int saved = D.port;
    D.port = port;
    response r = http("GET", path, NULL);
    D.port = saved;
    if (r.status != status || (want && (!r.body || !strstr(r.body, want))))
        check_fail(file, line, "GET %s: want %d '%s'; got:\n%.800s", path, status,
                   want ? want : "", r.raw ? r.raw : "(no response)");
    response_free(&r);
}
#define EXPECT_GET(port, path, status, want) expect_get_(__FILE__, __LINE__, port, path, status, want)

/* dashboard = off serves no page, recent_samples = 0 holds no input; with API keys the
 * page loads without one (it holds no data) and what it reads wants one. */
TEST(daemon_dashboard_settings) {
    if (make_bundles()) return;
    EXPECT_CLI(2, "--dashboard: dashboard wants on or off, not 'maybe'",
               "--check-config --model %s --dashboard maybe", D.tiny);
    EXPECT_CLI(0, "dashboard = on", "--check-config --model %s", D.tiny);
    EXPECT_CLI(0, "dashboard = off", "--check-config --model %s --dashboard off", D.tiny);
    EXPECT_CLI(0, "recent_samples = 1000", "--check-config --model %s", D.tiny);
    EXPECT_CLI(2, "recent_samples wants an integer", "--check-config --model %s "
               "--recent-samples -1", D.tiny);
    char db[OWN_PATH], log[OWN_PATH], model[OWN_PATH], one[600];
    own_daemon_files("daemon_dash_off", db, log, model);
    single_body(one, sizeof one, "0.5", DIM);
    const char *off[] = {"--model", model, "--db", db, "--dashboard", "off",
                         "--recent-samples", "0", NULL};
    int port;
    pid_t pid = spawn_anodmd(log, off, &port);
    if (port) {
        EXPECT_GET(port, "/", 404, "the dashboard is turned off");
        EXPECT_GET(port, "/dashboard/app.js", 404, "the dashboard is turned off");
        EXPECT_AUTH(port, "POST", "/v1/score", one, NULL, 200);
        EXPECT_GET(port, "/v1/scores/1/sample", 404, "recent_samples = 0");
        EXPECT_GET(port, "/v1/scores/1", 200, "\"log_id\":1");
    }
    stop_anodmd(pid);
    own_daemon_files("daemon_dash_keys", db, log, model);
    const char *keys[] = {"--model", model, "--db", db, "--api-keys", KEY_A,
                          "--recent-samples", "2", NULL};
    pid = spawn_anodmd(log, keys, &port);
    if (port) {
        EXPECT_GET(port, "/", 200, "<!doctype html>");
        EXPECT_GET(port, "/dashboard/app.js", 200, NULL);
        EXPECT_AUTH(port, "GET", "/v1/scores/1/sample", NULL, NULL, 401);
        for (int i = 0; i < 3; i++) EXPECT_AUTH(port, "POST", "/v1/score", one, "Bearer " KEY_A, 200);
        /* Two held: the oldest of three has gone. */
        EXPECT_AUTH(port, "GET", "/v1/scores/1/sample", NULL, "Bearer " KEY_A, 404);
        EXPECT_AUTH(port, "GET", "/v1/scores/3/sample", NULL, "Bearer " KEY_A, 200);
    }
    stop_anodmd(pid);
}

/* One single-sample client of the batching test: waits at the barrier, then posts. */
typedef struct {
    const float *x;
    int explain;
    pthread_barrier_t *go;
    response r;
} lone_client;

static void *post_alone(void *arg) {
    lone_client *c = arg;
    char *body = score_body(c->x, 0, c->explain ? ",\"explain\":true" : NULL);
    pthread_barrier_wait(c->go);
    c->r = http("POST", "/v1/score", body);
    free(body);
    return NULL;
}

/* A response to one sample equals scoring that sample alone in-process, to the printed
 * digit, however it was batched (docs/BATCHING.md), and its log row matches it. */
static void check_alone(json_t *res, scorer *s, const float *x,
                        int explain, sqlite3 *db) {
    detector_result want;
    float rec[DIM], dist[3];
    int32_t nn[3];
    char err[256];
    if (!res || scorer_score(s, x, 1, &want, rec, nn, dist, err, sizeof err)) {
        check_fail(__FILE__, __LINE__, "no result, or in-process scoring failed: %s", err);
        return;
    }
    json_t *terms = json_object_get(res, "terms"), *pos = json_object_get(res, "position");
    CHECK(jnum(res, "score") == as_printed(want.score));
    CHECK(jnum(terms, "d_re") == as_printed(want.d_re));
    CHECK(jnum(terms, "d_map") == as_printed(want.d_map));
    CHECK(jnum(terms, "d_latent") == as_printed(want.d_latent));
    /* the position is the placement's float, held as a double */
    CHECK((float)json_number_value(json_array_get(pos, 0)) == (float)want.x);
    CHECK((float)json_number_value(json_array_get(pos, 1)) == (float)want.y);
    CHECK(json_is_true(json_object_get(res, "is_anomaly")) == want.is_anomaly);
    CHECK(jnum(json_array_get(json_object_get(res, "neighbors"), 0), "ref") == nn[0]);
    CHECK(nn[0] == want.nearest_ref);
    json_t *got_rec = json_object_get(res, "reconstruction");
    CHECK(explain ? json_array_size(got_rec) == DIM : got_rec == NULL);
    for (size_t j = 0; explain && j < json_array_size(got_rec); j++)
        CHECK((float)json_number_value(json_array_get(got_rec, j)) == rec[j]);
    if (db) check_row(db, res, "tiny", D.tiny_version, NULL, NULL);
}

/* Concurrent single-sample requests are scored together: /metrics shows batches of more
 * than one sample, the queue depth gauge is there, each request waited in the queue once,
 * and every answer is the lone one. */
TEST(daemon_batching) {
    if (daemon_up()) return;
    enum { CLIENTS = 12, ROUNDS = 4 };
    const char *count = "anodmd_batch_size_count{model=\"tiny\"}";
    const char *samples = "anodmd_samples_scored_total{model=\"tiny\"}";
    const char *waits = "anodmd_queue_duration_seconds_count{model=\"tiny\"}";
    detector d;
    char err[256];
    if (bundle_load(D.tiny, &d, err, sizeof err)) {
        check_fail(__FILE__, __LINE__, "%s", err);
        return;
    }
    scorer *s = scorer_create(&d, 1, err, sizeof err);
    sqlite3 *db = open_log();
    CHECK_MSG(s != NULL, "%s", err);
    float x[CLIENTS * DIM];
    double batches = 0, scored = 0;
    /* Meeting in a window is likely, not certain, on a loaded machine: a few rounds. */
    for (int round = 0; s && round < ROUNDS && batches == scored; round++) {
        fresh_samples(x, CLIENTS - 2, 7000u + (uint64_t)round, 0);
        fresh_samples(x + (CLIENTS - 2) * DIM, 2, 7100u + (uint64_t)round, 1);
        char *before = metrics_page();
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, CLIENTS);
        pthread_t t[CLIENTS];
        lone_client c[CLIENTS];
        for (int i = 0; i < CLIENTS; i++) {
            c[i] = (lone_client){.x = x + i * DIM, .explain = i % 3 == 0, .go = &go};
            CHECK(pthread_create(&t[i], NULL, post_alone, &c[i]) == 0);
        }
        for (int i = 0; i < CLIENTS; i++) pthread_join(t[i], NULL);
        pthread_barrier_destroy(&go);
        char *after = metrics_page();
        batches = metric(after, count) - fmax(metric(before, count), 0);
        scored = metric(after, samples) - fmax(metric(before, samples), 0);
        CHECK_MSG(scored == CLIENTS, "%g samples scored, want %d", scored, CLIENTS);
        CHECK(metric(after, "anodmd_score_queue_depth") >= 0);
        /* each request's wait is one observation, however the requests were batched */
        CHECK_NEAR(metric(after, waits) - fmax(metric(before, waits), 0), CLIENTS, 0);
        for (int i = 0; i < CLIENTS; i++) {
            EXPECT_STATUS(c[i].r, 200, NULL);
            if (c[i].r.status == 200) remember(&c[i].r);
            check_alone(json_array_get(json_object_get(c[i].r.json, "results"), 0), s,
                        c[i].x, c[i].explain, db);
            response_free(&c[i].r);
        }
        free(before);
        free(after);
    }
    CHECK_MSG(batches < scored, "%g samples in %g batches: none was batched", scored, batches);
    sqlite3_close(db);
    scorer_free(s);
    detector_free(&d);
}

typedef struct {
    int requests, ok;
    uint64_t seed;
    int until_refused;           /* keep going until the daemon stops answering */
} client_job;

static void *client(void *arg) {
    client_job *job = arg;
    float x[2 * DIM];
    for (int i = 0; job->until_refused || i < job->requests; i++) {
        fresh_samples(x, 2, job->seed + (uint64_t)i, 0);
        char *body = score_body(x, 2, NULL);
        response r = http("POST", i % 2 ? "/v1/models/ctx/score" : "/v1/score", body);
        free(body);
        if (r.status == 200) {
            remember(&r);
            job->ok++;
        }
        int stop = job->until_refused && r.status != 200;
        response_free(&r);
        if (stop) break;
    }
    return NULL;
}

/* Requests from many clients at once: all answered, all logged under distinct ids. */
TEST(daemon_concurrent_clients) {
    if (daemon_up()) return;
    long long before = log_rows();
    enum { CLIENTS = 8, EACH = 10 };
    pthread_t t[CLIENTS];
    client_job jobs[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        jobs[i] = (client_job){.requests = EACH, .seed = 1000u * (uint64_t)i};
        CHECK(pthread_create(&t[i], NULL, client, &jobs[i]) == 0);
    }
    int ok = 0;
    for (int i = 0; i < CLIENTS; i++) {
        pthread_join(t[i], NULL);
        ok += jobs[i].ok;
    }
    CHECK_MSG(ok == CLIENTS * EACH, "%d of %d requests answered", ok, CLIENTS * EACH);
    CHECK_MSG(log_rows() == before + 2 * ok, "log grew %lld, want %d", log_rows() - before, 2 * ok);
}

typedef struct {
    int client;
    response r[5];
} batch_client_job;

/* One client's batches (the test daemon takes at most 16 samples a request), under its
 * own source tag. */
static void *batch_client(void *arg) {
    batch_client_job *job = arg;
    static const int SIZES[5] = {1, 3, 16, 7, 15};
    float x[16 * DIM];
    char extra[64];
    snprintf(extra, sizeof extra, ",\"source\":\"batch-%d\"", job->client);
    for (int i = 0; i < 5; i++) {
        fresh_samples(x, SIZES[i], 5000u + 100u * (uint64_t)job->client + (uint64_t)i, 0);
        char *body = score_body(x, SIZES[i], extra);
        job->r[i] = http("POST", "/v1/models/ctx/score", body);
        free(body);
    }
    return NULL;
}

/* Batches from several clients at once, so that the writer commits rows of several
 * requests together, in INSERT statements of up to 16 rows that span requests
 * (daemon/log.c): every answer's log id is the row of that very sample. */
TEST(daemon_log_ids_of_concurrent_batches) {
    if (daemon_up()) return;
    enum { CLIENTS = 6 };
    pthread_t t[CLIENTS];
    batch_client_job jobs[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        jobs[i] = (batch_client_job){.client = i};
        CHECK(pthread_create(&t[i], NULL, batch_client, &jobs[i]) == 0);
    }
    for (int i = 0; i < CLIENTS; i++) pthread_join(t[i], NULL);
    sqlite3 *db = open_log();
    for (int i = 0; i < CLIENTS; i++) {
        char source[32];
        snprintf(source, sizeof source, "batch-%d", i);
        for (int b = 0; b < 5; b++) {
            response *r = &jobs[i].r[b];
            EXPECT_STATUS(*r, 200, NULL);
            if (r->status == 200) remember(r);
            json_t *results = json_object_get(r->json, "results");
            for (size_t k = 0; db && k < json_array_size(results); k++)
                check_row(db, json_array_get(results, k), "ctx", D.ctx_version, NULL, source);
            response_free(r);
        }
    }
    sqlite3_close(db);
}

/* SIGTERM under load: exit 0, and every score answered with 200 is in the log. */
TEST(daemon_sigterm_drains) {
    if (daemon_up()) return;
    enum { CLIENTS = 4 };
    pthread_t t[CLIENTS];
    client_job jobs[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        jobs[i] = (client_job){.seed = 50000u * (uint64_t)(i + 1), .until_refused = 1};
        CHECK(pthread_create(&t[i], NULL, client, &jobs[i]) == 0);
    }
    sleep_ms(300);
    CHECK(kill(D.pid, SIGTERM) == 0);
    int status = -1;
    CHECK(waitpid(D.pid, &status, 0) == D.pid);
    D.pid = 0;
    int ok = 0;
    for (int i = 0; i < CLIENTS; i++) {
        pthread_join(t[i], NULL);
        ok += jobs[i].ok;
    }
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
    CHECK_MSG(ok > 0, "no request was answered before SIGTERM");
    char *out = slurp(D.log);
    CHECK(out && strstr(out, "draining") && strstr(out, "rows in") && !strstr(out, "Sanitizer"));
    free(out);
    /* Every acknowledged score of every test is in the log, and nothing else is. */
    sqlite3 *db = open_log();
    if (!db) return;
    sqlite3_stmt *st;
    CHECK(sqlite3_prepare_v2(db, "SELECT count(*) FROM scores WHERE id = ?1", -1, &st,
                             NULL) == SQLITE_OK);
    int missing = 0;
    for (int i = 0; i < D.n_acked; i++) {
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, D.acked[i]);
        missing += sqlite3_step(st) != SQLITE_ROW || sqlite3_column_int(st, 0) != 1;
    }
    sqlite3_finalize(st);
    CHECK_MSG(missing == 0, "%d of %d acknowledged scores are not in the log", missing, D.n_acked);
    CHECK_MSG(log_int(db, "SELECT count(*) FROM scores") == D.n_acked, "%lld rows, %d acknowledged",
              log_int(db, "SELECT count(*) FROM scores"), D.n_acked);
    sqlite3_close(db);
}

/* A score on a kept-alive connection: its response (the status checked). */
static response score_kept(http_conn *c, const char *body) {
    char head[256];
    snprintf(head, sizeof head, "POST /v1/score HTTP/1.1\r\nHost: test\r\n"
             "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n", strlen(body));
    response r = hconn_send(c, head, body, strlen(body));
    EXPECT_STATUS(r, 200, NULL);
    return r;
}

/* Poll /readyz on port until it answers 503 "shutting down", for up to ms: 1 if it did. */
static int becomes_unready(int port, long ms) {
    for (long waited = 0; waited <= ms; waited += 10) {
        response r = http_request(port, "GET", "/readyz", NULL, "");
        int unready = r.status == 503 && r.raw && strstr(r.raw, "shutting down");
        response_free(&r);
        if (unready) return 1;
        sleep_ms(10);
    }
    return 0;
}

/* SIGTERM with shutdown_delay_seconds (the readiness-first drain, docs/DEPLOY.md): at once
 * /readyz 503 while /healthz stays 200 and scores are still answered and committed, on new
 * connections and on a kept-alive one (whose replies now close it); the daemon stays for
 * the whole delay, then drains and exits 0. */
TEST(daemon_sigterm_unready_first) {
    if (make_bundles()) return;
    char db_path[OWN_PATH], log[OWN_PATH], model[OWN_PATH];
    own_daemon_files("daemon_unready", db_path, log, model);
    EXPECT_CLI(0, "shutdown_delay_seconds = 7",
               "--check-config --model %s --shutdown-delay-seconds 7", model);
    EXPECT_CLI(2, "shutdown_delay_seconds wants an integer in 0..3600",
               "--check-config --model %s --shutdown-delay-seconds -1", model);
    const int delay = under_valgrind() ? 20 : 3;
    char delay_arg[16];
    snprintf(delay_arg, sizeof delay_arg, "%d", delay);
    const char *args[] = {"--model", model, "--db", db_path, "--shutdown-delay-seconds",
                          delay_arg, NULL};
    int port;
    pid_t pid = spawn_anodmd(log, args, &port);
    if (!port) return;
    float x[DIM];
    fresh_samples(x, 1, 77, 0);
    char *body = score_body(x, 0, NULL);
    http_conn kept;
    hconn_init(&kept, port);
    response r = score_kept(&kept, body);
    CHECK_MSG(r.raw && !strstr(r.raw, "Connection: close"), "closed before SIGTERM");
    response_free(&r);
    double t0 = clock_seconds();
    CHECK(kill(pid, SIGTERM) == 0);
    CHECK_MSG(becomes_unready(port, 2000), "/readyz not 503 within 2 s of SIGTERM");
    r = http_request(port, "GET", "/healthz", NULL, "");
    EXPECT_STATUS(r, 200, NULL);
    response_free(&r);
    int64_t ids[2] = {-1, -1};
    r = http_request(port, "POST", "/v1/score", body, "");
    EXPECT_STATUS(r, 200, NULL);
    if (r.json) ids[0] = (int64_t)jnum(json_array_get(json_object_get(r.json, "results"), 0),
                                       "log_id");
    response_free(&r);
    r = score_kept(&kept, body);
    CHECK_MSG(r.raw && strstr(r.raw, "Connection: close"), "a kept-alive reply while not "
              "ready does not close its connection");
    if (r.json) ids[1] = (int64_t)jnum(json_array_get(json_object_get(r.json, "results"), 0),
                                       "log_id");
    response_free(&r);
    hconn_close(&kept);
    free(kept.buf);
    free(body);
    double during = clock_seconds() - t0;
    CHECK_MSG(during < delay - 0.5, "the checks took %.1f s of the %d s delay: not measured "
              "within it", during, delay);
    CHECK_MSG(waitpid(pid, NULL, WNOHANG) == 0, "exited during the delay");
    int status = wait_exit(pid, (delay + 15) * 1000L);
    double gone = clock_seconds() - t0;
    if (status == -1) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    CHECK_MSG(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
    CHECK_MSG(gone >= delay - 0.1 && gone < delay + 10, "exited %.2f s after SIGTERM, delay %d s",
              gone, delay);
    char *out = slurp(log);
    char want[96];
    snprintf(want, sizeof want, "SIGTERM: not ready, serving on for %d s", delay);
    CHECK_MSG(out && strstr(out, want) && strstr(out, "draining") && strstr(out, "rows in"),
              "output:\n%.1500s", out ? out : "");
    free(out);
    /* The three scores, the two answered while not ready among them, are in the log. */
    if (!LOG_INTACT(db_path, 3)) return;
    sqlite3 *db = log_open_readonly(db_path);
    if (!db) return;
    char sql[128];
    for (int i = 0; i < 2; i++) {
        snprintf(sql, sizeof sql, "SELECT count(*) FROM scores WHERE id = %lld", (long long)ids[i]);
        CHECK_MSG(ids[i] > 0 && log_int(db, sql) == 1, "log_id %lld not in the log",
                  (long long)ids[i]);
    }
    sqlite3_close(db);
}

/* The delay is cut short by a second SIGTERM (an impatient operator, or a supervisor
 * escalating), and not taken at all on SIGINT (Ctrl-C at a terminal), nor with 0. */
TEST(daemon_shutdown_delay_cut_short) {
    if (make_bundles()) return;
    char db_path[OWN_PATH], log[OWN_PATH], model[OWN_PATH];
    own_daemon_files("daemon_cut_short", db_path, log, model);
    static const struct { int first, second; const char *delay, *want, *not_want; } CASES[] = {
        {SIGTERM, SIGTERM, "600", "SIGTERM: the delay cut short", NULL},
        {SIGINT, 0, "600", "SIGINT: draining", "not ready, serving on"},
        {SIGTERM, 0, "0", "SIGTERM: draining", "not ready, serving on"},
    };
    for (size_t k = 0; k < sizeof CASES / sizeof CASES[0]; k++) {
        const char *args[] = {"--model", model, "--db", db_path, "--shutdown-delay-seconds",
                              CASES[k].delay, NULL};
        int port;
        pid_t pid = spawn_anodmd(log, args, &port);
        if (!port) return;
        double t0 = clock_seconds();
        CHECK(kill(pid, CASES[k].first) == 0);
        if (CASES[k].second) {
            CHECK_MSG(becomes_unready(port, 2000), "case %zu: /readyz not 503", k);
            CHECK(kill(pid, CASES[k].second) == 0);
        }
        int status = wait_exit(pid, under_valgrind() ? 60000 : 10000);
        if (status == -1) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
        CHECK_MSG(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "case %zu: status %d after %.1f s", k, status, clock_seconds() - t0);
        char *out = slurp(log);
        CHECK_MSG(out && strstr(out, CASES[k].want) &&
                  (!CASES[k].not_want || !strstr(out, CASES[k].not_want)),
                  "case %zu: output:\n%.1500s", k, out ? out : "");
        free(out);
    }
}

/* The tiny model given a stream memory by hand (capacity 50, k 2, z_memory standardised
 * by (0, 1), fused by "memory"), saved at path (OWN_PATH bytes); 0, or -1 reported. */
static int memory_bundle(char *path) {
    snprintf(path, OWN_PATH, "%s/daemon_memory.anodm", test_tmpdir());
    return memory_bundle_at(path, 0.0);
}

/* anodmd with the memory bundle (at path) as "mem" and the tiny model, behind KEY_A, its
 * files named after name (path, db and log OWN_PATH bytes each); its pid, with *port 0
 * when it did not start (reported). */
static pid_t spawn_memory_daemon(const char *name, char *path, char *db, char *log,
                                 int *port) {
    char model[OWN_PATH], spec[OWN_PATH + 8];
    *port = 0;
    own_daemon_files(name, db, log, model);
    if (memory_bundle(path)) return 0;
    snprintf(spec, sizeof spec, "mem=%s", path);
    const char *args[] = {"--model", spec, "--model", model, "--db", db, "--api-keys", KEY_A,
                          NULL};
    return spawn_anodmd(log, args, port);
}

/* The stream memory as anodmd serves it: every response and log row carries d_memory and
 * z_memory; a flood of one sample holds one latent; the model's metadata shows what the
 * memory holds; POST .../memory/reset (behind the API key) forgets it, and a model with
 * no memory answers 409; a reload starts the memory afresh. The bundle is the tiny model
 * given a memory by hand (its z_memory standardised by (0, 1), fused by "memory"). */
TEST(daemon_stream_memory) {
    if (make_bundles()) return;
    char db[OWN_PATH], log[OWN_PATH], path[OWN_PATH], err[256];
    int port;
    pid_t pid = spawn_memory_daemon("daemon_memory", path, db, log, &port);
    if (!port) return;
    float x[6 * DIM];
    fresh_samples(x, 6, 41, 0);
    char *five = score_body(x, 5, NULL), *one = score_body(x + 5 * DIM, 0, NULL);
    const char *auth = "Authorization: Bearer " KEY_A "\r\n";
    response r = http_request(port, "POST", "/v1/models/mem/score", five, auth);
    EXPECT_STATUS(r, 200, NULL);
    json_t *res = json_object_get(r.json, "results");
    /* Offline, the same stream through the same bundle gives the same scores: the five
     * one at a time into a fresh scorer. */
    detector back;
    scorer *s = NULL;
    CHECK_MSG(bundle_load(path, &back, err, sizeof err) == 0, "%s", err);
    CHECK_MSG((s = scorer_create(&back, 1, err, sizeof err)) != NULL, "%s", err);
    for (int i = 0; s && i < 5 && (size_t)i < json_array_size(res); i++) {
        detector_result want;
        CHECK(scorer_score(s, x + (size_t)i * DIM, 1, &want, NULL, NULL, NULL, err, sizeof err) == 0);
        CHECK(jnum(json_array_get(res, (size_t)i), "score") == as_printed(want.score));
        CHECK(jnum(json_object_get(json_array_get(res, (size_t)i), "terms"), "d_memory") ==
              as_printed(want.d_memory));
    }
    scorer_free(s);
    detector_free(&back);
    for (size_t i = 0; i < json_array_size(res); i++) {
        json_t *t = json_object_get(json_array_get(res, i), "terms");
        /* fewer than k = 2 kept before the first two: no evidence, 0 */
        CHECK(json_is_number(json_object_get(t, "d_memory")) &&
              (i >= 2 || jnum(t, "d_memory") == 0.0));
        CHECK(jnum(json_array_get(res, i), "score") == jnum(t, "z_memory"));
    }
    response_free(&r);
    for (int i = 0; i < 20; i++) {             /* a flood of one sample: one latent */
        r = http_request(port, "POST", "/v1/models/mem/score", one, auth);
        EXPECT_STATUS(r, 200, NULL);
        response_free(&r);
    }
    r = http_request(port, "GET", "/v1/models/mem", NULL, auth);
    json_t *mem = json_object_get(json_object_get(r.json, "scoring"), "memory");
    CHECK(jnum(mem, "count") == 6 && jnum(mem, "capacity") == 50 && jnum(mem, "k") == 2 &&
          !strcmp(jstr(mem, "fusion"), "memory"));
    CHECK(json_is_object(json_object_get(json_object_get(r.json, "calibration"), "d_memory")));
    response_free(&r);
    /* The log holds the terms too. */
    sqlite3 *h = log_open_readonly(db);
    CHECK(h && log_int(h, "SELECT count(*) FROM scores WHERE model = 'mem' AND d_memory IS NOT "
                          "NULL AND z_memory IS NOT NULL") == 25);
    CHECK(h && log_int(h, "SELECT count(*) FROM scores WHERE model = 'tiny'") == 0);
    sqlite3_close(h);
    r = http_request(port, "POST", "/v1/models/mem/memory/reset", "{}", "");
    EXPECT_STATUS(r, 401, "unauthorized");
    response_free(&r);
    r = http_request(port, "POST", "/v1/models/mem/memory/reset", "{}", auth);
    EXPECT_STATUS(r, 200, NULL);
    CHECK(jnum(r.json, "forgotten") == 6 && !strcmp(jstr(r.json, "model"), "mem"));
    response_free(&r);
    r = http_request(port, "GET", "/v1/models/mem", NULL, auth);
    CHECK(jnum(json_object_get(json_object_get(r.json, "scoring"), "memory"), "count") == 0);
    response_free(&r);
    r = http_request(port, "POST", "/v1/models/tiny/memory/reset", "{}", auth);
    EXPECT_STATUS(r, 409, "no_memory");
    response_free(&r);
    r = http_request(port, "POST", "/v1/models/nope/memory/reset", "{}", auth);
    EXPECT_STATUS(r, 404, NULL);
    response_free(&r);
    r = http_request(port, "GET", "/v1/models/tiny", NULL, auth);   /* no memory: no block */
    CHECK(r.json && !json_object_get(json_object_get(r.json, "scoring"), "memory"));
    response_free(&r);
    /* A reload starts the memory afresh. */
    r = http_request(port, "POST", "/v1/models/mem/score", five, auth);
    response_free(&r);
    kill(pid, SIGHUP);
    int fresh = 0;
    for (int i = 0; i < 100 && !fresh; i++) {
        sleep_ms(50);
        r = http_request(port, "GET", "/v1/models/mem", NULL, auth);
        fresh = jnum(json_object_get(json_object_get(r.json, "scoring"), "memory"), "count") == 0;
        response_free(&r);
    }
    CHECK_MSG(fresh, "the memory still holds latents after a reload");
    free(five);
    free(one);
    stop_anodmd(pid);
}

/* A client of daemon_pipeline_keeps_the_memory_order: requests of 1..40 samples, each
 * sample's log id (from the answer) next to its sample. */
typedef struct {
    int port, requests, ok;
    uint64_t seed;
    float *x;                    /* requests * 40 samples */
    int64_t *id;                 /* one per sample, -1 when not answered */
    pthread_barrier_t *go;
} stream_client;

enum { PIPE_MAX = 40 };

static void *post_stream(void *arg) {
    stream_client *c = arg;
    const char *auth = "Authorization: Bearer " KEY_A "\r\n";
    pthread_barrier_wait(c->go);
    for (int i = 0; i < c->requests; i++) {
        float *x = c->x + (size_t)i * PIPE_MAX * DIM;
        const int n = 1 + (int)((c->seed + 7u * (uint64_t)i) % PIPE_MAX);
        fresh_samples(x, n, c->seed + (uint64_t)i, i % 5 == 0);
        char *body = score_body(x, n, NULL);
        response r = http_request(c->port, "POST", "/v1/models/mem/score", body, auth);
        free(body);
        json_t *res = json_object_get(r.json, "results");
        for (int j = 0; j < PIPE_MAX; j++)
            c->id[i * PIPE_MAX + j] = r.status == 200 && j < n && (size_t)j < json_array_size(res)
                                          ? (int64_t)jnum(json_array_get(res, (size_t)j), "log_id")
                                          : -1;
        c->ok += r.status == 200;
        response_free(&r);
    }
    return NULL;
}

typedef struct {
    int64_t id;
    const float *x;
} logged_sample;

static int by_log_id(const void *a, const void *b) {
    int64_t x = ((const logged_sample *)a)->id, y = ((const logged_sample *)b)->id;
    return (x > y) - (x < y);
}

/* Batches of a model with a stream memory pipelined on two threads (one batch's network
 * and placement while the one before goes through the memory): every sample of many
 * concurrent requests, taken in the log's order and scored one at a time offline through
 * a fresh scorer, gets the score and memory term the daemon logged. So the memory saw the
 * samples in the order the log numbered them, whichever batch finished its front first. */
TEST(daemon_pipeline_keeps_the_memory_order) {
    if (make_bundles()) return;
    enum { CLIENTS = 8, REQUESTS = 25 };
    char db[OWN_PATH], log[OWN_PATH], model[OWN_PATH], path[OWN_PATH], spec[OWN_PATH + 8], err[256];
    int port = 0;
    own_daemon_files("daemon_pipeline", db, log, model);
    if (memory_bundle(path)) return;
    snprintf(spec, sizeof spec, "mem=%s", path);
    const char *args[] = {"--model", spec, "--db", db, "--api-keys", KEY_A, "--batch-threads",
                          "2", "--batch-window-us", "2000", "--max-batch", "40", NULL};
    pid_t pid = spawn_anodmd(log, args, &port);
    if (!port) return;
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, CLIENTS);
    stream_client c[CLIENTS];
    pthread_t t[CLIENTS];
    float *x = malloc((size_t)CLIENTS * REQUESTS * PIPE_MAX * DIM * sizeof *x);
    int64_t *id = malloc((size_t)CLIENTS * REQUESTS * PIPE_MAX * sizeof *id);
    logged_sample *seen = malloc((size_t)CLIENTS * REQUESTS * PIPE_MAX * sizeof *seen);
    CHECK(x && id && seen);
    for (int i = 0; x && id && seen && i < CLIENTS; i++) {
        c[i] = (stream_client){.port = port, .requests = REQUESTS, .seed = 9000u + 100u * (uint64_t)i,
                               .x = x + (size_t)i * REQUESTS * PIPE_MAX * DIM,
                               .id = id + (size_t)i * REQUESTS * PIPE_MAX, .go = &go};
        CHECK(pthread_create(&t[i], NULL, post_stream, &c[i]) == 0);
    }
    for (int i = 0; x && id && seen && i < CLIENTS; i++) {
        pthread_join(t[i], NULL);
        CHECK_MSG(c[i].ok == REQUESTS, "client %d: %d of %d requests answered", i, c[i].ok,
                  REQUESTS);
    }
    pthread_barrier_destroy(&go);
    size_t n = 0;
    for (size_t i = 0; x && id && seen && i < (size_t)CLIENTS * REQUESTS * PIPE_MAX; i++)
        if (id[i] >= 0) seen[n++] = (logged_sample){id[i], x + i * DIM};
    qsort(seen, n, sizeof *seen, by_log_id);
    detector d;
    scorer *s = NULL;
    sqlite3 *h = log_open_readonly(db);
    sqlite3_stmt *st = NULL;
    CHECK_MSG(bundle_load(path, &d, err, sizeof err) == 0, "%s", err);
    CHECK_MSG((s = scorer_create(&d, 1, err, sizeof err)) != NULL, "%s", err);
    CHECK(h && sqlite3_prepare_v2(h, "SELECT score, d_memory FROM scores WHERE id = ?1", -1,
                                  &st, NULL) == SQLITE_OK);
    int differ = 0;
    for (size_t i = 0; s && st && i < n; i++) {
        detector_result want;
        CHECK(scorer_score(s, seen[i].x, 1, &want, NULL, NULL, NULL, err, sizeof err) == 0);
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, seen[i].id);
        if (sqlite3_step(st) != SQLITE_ROW || sqlite3_column_double(st, 0) != want.score ||
            sqlite3_column_double(st, 1) != want.d_memory) {
            if (!differ++)
                check_fail(__FILE__, __LINE__, "log id %lld (%zu in the log's order): logged "
                           "score %.17g, memory term %.17g; offline %.17g, %.17g",
                           (long long)seen[i].id, i, sqlite3_column_double(st, 0),
                           sqlite3_column_double(st, 1), want.score, want.d_memory);
        }
    }
    CHECK_MSG(differ == 0, "%d of %zu samples differ", differ, n);
    CHECK_MSG(n > (size_t)CLIENTS * REQUESTS, "only %zu samples logged", n);
    sqlite3_finalize(st);
    sqlite3_close(h);
    scorer_free(s);
    detector_free(&d);
    free(x);
    free(id);
    free(seen);
    stop_anodmd(pid);
}

/* The reference map's extent (x0, x1, y0, y1) as GET /v1/models/{name}/map answers it. */
static void map_extent(int port, const char *name, const char *auth, double ext[4]) {
    char path[128];
    snprintf(path, sizeof path, "/v1/models/%s/map", name);
    response r = http_request(port, "GET", path, NULL, auth);
    json_t *pts = json_object_get(r.json, "points");
    ext[0] = ext[2] = INFINITY;
    ext[1] = ext[3] = -INFINITY;
    for (size_t i = 0; i < json_array_size(pts); i++)
        for (int c = 0; c < 2; c++) {
            double v = json_number_value(json_array_get(json_array_get(pts, i), (size_t)c));
            ext[2 * c] = fmin(ext[2 * c], v);
            ext[2 * c + 1] = fmax(ext[2 * c + 1], v);
        }
    CHECK(json_array_size(pts) > 0);
    response_free(&r);
}

/* GET /v1/models/{name}/memory/map: count points, each finite and on the map (inside the
 * reference extent widened by a quarter of its span: a recurring kind may gather just past
 * the edge of the normal bulk); the number of recent ones. */
static int memory_map_points(json_t *mm, const double ext[4], int *recent) {
    json_t *pts = json_object_get(mm, "points"), *sus = json_object_get(mm, "suspicion"),
           *rec = json_object_get(mm, "recent");
    size_t n = json_array_size(pts);
    int on_map = 1;
    *recent = 0;
    CHECK(json_array_size(sus) == n && json_array_size(rec) == n);
    for (size_t i = 0; i < n; i++) {
        for (int c = 0; c < 2; c++) {
            double v = json_number_value(json_array_get(json_array_get(pts, i), (size_t)c));
            double lo = ext[2 * c], hi = ext[2 * c + 1], pad = 0.25 * (hi - lo);
            on_map &= isfinite(v) && v >= lo - pad && v <= hi + pad;
        }
        *recent += json_is_true(json_array_get(rec, i));
        CHECK(json_is_number(json_array_get(sus, i)));
    }
    CHECK_MSG(on_map, "a memory point is not finite or off the map");
    return (int)n;
}

/* GET /v1/models/{name}/memory/map: the stream memory co-placed on the map, exactly as
 * scorer_coplace places the latents an offline scorer fed the same stream holds, in
 * memory_entries' order (the kept-for-suspicion half, then the recent half oldest first),
 * with each one's suspicion; as many points as the memory holds; answered again from the
 * cache while the memory is unchanged, placed afresh once it changes; behind the API key,
 * 409 for a model without a memory, 404 for none, 405 for POST, counted in the metrics
 * under its route. */
TEST(daemon_memory_map) {
    if (make_bundles()) return;
    char db[OWN_PATH], log[OWN_PATH], path[OWN_PATH], err[256];
    int port;
    pid_t pid = spawn_memory_daemon("daemon_memory_map", path, db, log, &port);
    if (!port) return;
    const char *auth = "Authorization: Bearer " KEY_A "\r\n";
    double ext[4];
    map_extent(port, "mem", auth, ext);
    response r = http_request(port, "GET", "/v1/models/mem/memory/map", NULL, "");
    EXPECT_STATUS(r, 401, "unauthorized");
    response_free(&r);
    r = http_request(port, "GET", "/v1/models/mem/memory/map", NULL, auth);
    EXPECT_STATUS(r, 200, NULL);            /* empty: nothing to place */
    CHECK(jnum(r.json, "count") == 0 && json_array_size(json_object_get(r.json, "points")) == 0 &&
          !strcmp(jstr(r.json, "scope"), "model") && !json_object_get(r.json, "source") &&
          jnum(r.json, "capacity") == 50);
    response_free(&r);
    /* 40 distinct samples: with capacity 50, 25 stay recent and 15 age out into the
     * suspicious half (which has room for them all). */
    enum { N = 40 };
    float x[N * DIM];
    fresh_samples(x, N, 47, 0);
    for (int i = 0; i < N; i += 8) {
        char *body = score_body(x + (size_t)i * DIM, 8, NULL);
        r = http_request(port, "POST", "/v1/models/mem/score", body, auth);
        EXPECT_STATUS(r, 200, NULL);
        response_free(&r);
        free(body);
    }
    r = http_request(port, "GET", "/v1/models/mem/memory/map", NULL, auth);
    EXPECT_STATUS(r, 200, NULL);
    response model_info = http_request(port, "GET", "/v1/models/mem", NULL, auth);
    int count = (int)jnum(json_object_get(json_object_get(model_info.json, "scoring"), "memory"),
                          "count");
    response_free(&model_info);
    int recent, n = memory_map_points(r.json, ext, &recent);
    CHECK_MSG(n == N && count == N && jnum(r.json, "count") == N, "%d points, memory holds %d", n,
              count);
    CHECK_MSG(recent == 25, "%d recent", recent);
    CHECK(!json_is_true(json_object_get(r.json, "cached")) && jnum(r.json, "seconds") >= 0);
    /* Offline: the same stream through the same bundle, its memory co-placed. */
    detector back;
    scorer *s = NULL;
    float *lat = NULL, pos[2 * N];
    memory_entry e[N];
    CHECK_MSG(bundle_load(path, &back, err, sizeof err) == 0, "%s", err);
    CHECK_MSG((s = scorer_create(&back, 1, err, sizeof err)) != NULL, "%s", err);
    if (s) lat = malloc((size_t)N * (size_t)back.vae.arch.latent * sizeof *lat);
    for (int i = 0; s && i < N; i++) {
        detector_result res;
        CHECK(scorer_score(s, x + (size_t)i * DIM, 1, &res, NULL, NULL, NULL, err, sizeof err) == 0);
    }
    if (lat && memory_count(scorer_memory(s)) == N) {
        const stream_memory *mem = scorer_memory(s);
        const size_t L = (size_t)back.vae.arch.latent;
        memory_entries(mem, e);
        for (int i = 0; i < N; i++)
            memcpy(lat + i * L, memory_latents(mem) + (size_t)e[i].slot * L, L * sizeof *lat);
        CHECK(scorer_coplace(s, lat, N, pos, err, sizeof err) == 0);
        json_t *pts = json_object_get(r.json, "points"), *sus = json_object_get(r.json, "suspicion");
        int same = 1;
        for (int i = 0; i < N; i++) {
            json_t *p = json_array_get(pts, (size_t)i);
            same &= (float)json_number_value(json_array_get(p, 0)) == pos[2 * i] &&
                    (float)json_number_value(json_array_get(p, 1)) == pos[2 * i + 1] &&
                    as_printed(e[i].suspicion) == json_number_value(json_array_get(sus, (size_t)i)) &&
                    json_is_true(json_array_get(json_object_get(r.json, "recent"), (size_t)i)) ==
                        e[i].recent;
        }
        CHECK_MSG(same, "the route's memory map is not scorer_coplace of the memory's latents");
    } else {
        CHECK_MSG(0, "the offline scorer's memory holds %d", s ? memory_count(scorer_memory(s)) : -1);
    }
    scorer_free(s);
    detector_free(&back);
    free(lat);
    /* Unchanged memory: the same answer, from the cache; one more sample: placed afresh. */
    response again = http_request(port, "GET", "/v1/models/mem/memory/map?source=ignored", NULL, auth);
    CHECK(json_is_true(json_object_get(again.json, "cached")));
    CHECK(json_equal(json_object_get(again.json, "points"), json_object_get(r.json, "points")));
    CHECK(!strcmp(jstr(again.json, "scope"), "model") && !json_object_get(again.json, "source"));
    response_free(&again);
    response_free(&r);
    float extra[DIM];
    fresh_samples(extra, 1, 53, 0);
    char *body = score_body(extra, 0, NULL);
    r = http_request(port, "POST", "/v1/models/mem/score", body, auth);
    response_free(&r);
    free(body);
    r = http_request(port, "GET", "/v1/models/mem/memory/map", NULL, auth);
    CHECK(!json_is_true(json_object_get(r.json, "cached")) && jnum(r.json, "count") == N + 1);
    response_free(&r);
    r = http_request(port, "GET", "/v1/models/tiny/memory/map", NULL, auth);
    EXPECT_STATUS(r, 409, "no_memory");
    response_free(&r);
    r = http_request(port, "GET", "/v1/models/nope/memory/map", NULL, auth);
    EXPECT_STATUS(r, 404, "unknown_model");
    response_free(&r);
    r = http_request(port, "POST", "/v1/models/mem/memory/map", "{}", auth);
    EXPECT_STATUS(r, 405, "method_not_allowed");
    response_free(&r);
    char long_source[300] = "/v1/models/mem/memory/map?source=";
    memset(long_source + strlen(long_source), 'a', 130);
    r = http_request(port, "GET", long_source, NULL, auth);
    EXPECT_STATUS(r, 400, "invalid_query");
    response_free(&r);
    r = http_request(port, "GET", "/metrics", NULL, auth);
    CHECK(r.body && strstr(r.body, "route=\"/v1/models/{name}/memory/map\",status=\"200\"") &&
          strstr(r.body, "route=\"/v1/models/{name}/memory/map\",status=\"409\""));
    response_free(&r);
    stop_anodmd(pid);
}

/* --memory-sources: one memory per source tag. Five samples from "a" fill a's memory;
 * the same first sample from "b" then meets an empty memory (no evidence: d_memory 0),
 * where one memory for the model would hold a's five (the scorer's own test checks that
 * a source scores as if alone whatever the others send). */
TEST(daemon_stream_memory_per_source) {
    if (make_bundles()) return;
    char db[OWN_PATH], log[OWN_PATH], model[OWN_PATH], path[OWN_PATH], spec[OWN_PATH + 8];
    own_daemon_files("daemon_memory_sources", db, log, model);
    if (memory_bundle(path)) return;
    snprintf(spec, sizeof spec, "mem=%s", path);
    const char *args[] = {"--model", spec, "--db", db, "--memory-sources", "4", NULL};
    int port;
    pid_t pid = spawn_anodmd(log, args, &port);
    if (!port) return;
    float x[6 * DIM];
    fresh_samples(x, 6, 43, 0);
    double a_scores[6];
    for (int i = 0; i < 6; i++) {
        char extra[64];
        snprintf(extra, sizeof extra, ",\"source\":\"%s\"", i < 5 ? "a" : "b");
        char *body = score_body(x + (size_t)(i < 5 ? i : 0) * DIM, 0, extra);
        response r = http_request(port, "POST", "/v1/models/mem/score", body, "");
        EXPECT_STATUS(r, 200, NULL);
        json_t *t = json_object_get(json_array_get(json_object_get(r.json, "results"), 0), "terms");
        a_scores[i] = jnum(t, "d_memory");
        response_free(&r);
        free(body);
    }
    CHECK(a_scores[4] != 0.0);               /* a's memory held four by then */
    CHECK(a_scores[5] == 0.0);               /* b's was empty */
    response r = http_request(port, "GET", "/v1/models/mem", NULL, "");
    CHECK(jnum(json_object_get(json_object_get(r.json, "scoring"), "memory"), "count") == 6);
    response_free(&r);
    /* The memory map of each source: a's five, b's one; a source never seen (and the
     * untagged requests, none here) has an empty memory, and asking makes none. */
    double ext[4];
    map_extent(port, "mem", "", ext);
    const struct { const char *query, *source; int count; } maps[] = {
        {"?source=a", "a", 5}, {"?source=b", "b", 1}, {"?source=c", "c", 0}, {"", "", 0}};
    for (size_t i = 0; i < sizeof maps / sizeof maps[0]; i++) {
        char path[96];
        int recent;
        snprintf(path, sizeof path, "/v1/models/mem/memory/map%s", maps[i].query);
        r = http_request(port, "GET", path, NULL, "");
        EXPECT_STATUS(r, 200, NULL);
        CHECK_MSG(r.json && !strcmp(jstr(r.json, "scope"), "source") &&
                  !strcmp(jstr(r.json, "source"), maps[i].source) &&
                  jnum(r.json, "count") == maps[i].count &&
                  memory_map_points(r.json, ext, &recent) == maps[i].count &&
                  recent == maps[i].count, "%s: %.300s", path, r.body ? r.body : "");
        response_free(&r);
    }
    r = http_request(port, "GET", "/v1/models/mem", NULL, "");
    CHECK(jnum(json_object_get(json_object_get(r.json, "scoring"), "memory"), "count") == 6);
    response_free(&r);
    stop_anodmd(pid);
    const char *check[] = {"--check-config", "--model", spec, "--memory-sources", "70000", NULL};
    CHECK(run_anodmd_argv(log, check, 10000) != 0);   /* beyond 65536: refused */
}
