/* anodmd as clients see it: the binary named by $ANODMD_BIN (build/anodmd otherwise)
 * started on an ephemeral loopback port with three models made here in-process (a tiny
 * detector saved twice: "tiny" in single mode, the default, and "ctx" in context mode;
 * "swap" starts as a copy of tiny, and the reload test replaces its file),
 * then driven over plain sockets with a small HTTP/1.1 client. The batch window is a
 * generous 5 ms so that concurrent requests reliably meet in one batch on a busy machine
 * (and a lone request still answers quickly). Every route, every
 * refusal, paging, concurrency and a SIGTERM under load are checked, and the SQLite log
 * is read directly and compared row by row with what the responses acknowledged. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
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
#include "pipeline.h"
#include "scorer.h"

#define SIDE 8
#define DIM (SIDE * SIDE)
#define MAX_BATCH 16
#define MAX_BODY 65536
#define MAX_ACKED 65536

/* ------------------------------------------------------------------ the models */

/* Normals: one bright row at a random height over dim noise. Anomalies: all zeros, which
 * no model reconstructs exactly and D_RE divides by ~0, so they are flagged whatever
 * the (deliberately tiny) model learnt. */
static void sample(float *x, rng_t *r, int anomalous) {
    int row = (int)rng_below(r, SIDE);
    for (int y = 0; y < SIDE; y++)
        for (int c = 0; c < SIDE; c++) {
            float v = 0.05f + 0.85f * (float)(y == row) + 0.05f * rng_uniform(r);
            x[y * SIDE + c] = anomalous ? 0.0f : v;
        }
}

/* A small detector: a dense VAE, a 150-point map, k = 3 neighbours. */
static int build_detector(detector *d) {
    dataset data = {.n = 400, .dim = DIM, .channels = 1, .height = SIDE, .width = SIDE};
    if (!(data.x = malloc(data.n * DIM * sizeof(float)))) return -1;
    rng_t r;
    rng_seed(&r, 11);
    for (size_t i = 0; i < data.n; i++) sample(data.x + i * DIM, &r, 0);
    vae_arch a = {.in = {1, SIDE, SIDE}, .latent = 3, .recon = RECON_BCE};
    snprintf(a.name, sizeof a.name, "daemon-test");
    snprintf(a.enc_spec, sizeof a.enc_spec, "linear(24) relu");
    snprintf(a.dec_spec, sizeof a.dec_spec, "linear(24) relu linear(64) reshape(1,8,8)");
    build_opts o;
    build_opts_default(&o);
    o.train.epochs = 5;
    o.train.batch = 50;
    o.train.threads = 1;
    o.n_ref = 150;
    o.cal_frac = 0.25;
    o.quantile = 0.9;
    o.tsne.perplexity = 10;
    o.tsne.n_iter = 250;
    o.place.perplexity = 10;
    o.k = 3;
    o.window = 40;
    o.cal_batch = 4;
    char err[256];
    int rc = detector_build(d, &a, &data, &o, NULL, NULL, NULL, err, sizeof err);
    CHECK_MSG(rc == 0, "detector_build: %s", err);
    free(data.x);
    return rc;
}

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

static const char *anodmd_bin(void) {
    const char *b = getenv("ANODMD_BIN");
    return b && *b ? b : "build/anodmd";
}

static void file_version(const char *path, char hex[65]) {
    uint8_t *buf;
    size_t len;
    char err[256];
    hex[0] = 0;
    if (bundle_read_file(path, (size_t)1 << 30, &buf, &len, err, sizeof err) == 0) {
        bundle_hash(buf, len, hex);
        free(buf);
    }
}

/* Both bundles, made on first use. */
static int make_bundles(void) {
    if (D.tiny[0]) return 0;
    detector d;
    if (build_detector(&d)) return -1;
    char err[256];
    snprintf(D.tiny, sizeof D.tiny, "%s/daemon_tiny.anodm", test_tmpdir());
    snprintf(D.ctx, sizeof D.ctx, "%s/daemon_ctx.anodm", test_tmpdir());
    int rc = bundle_save(D.tiny, &d, err, sizeof err);
    CHECK_MSG(rc == 0, "bundle_save: %s", err);
    d.mode = PLACE_CONTEXT;
    if (rc == 0) CHECK_MSG((rc = bundle_save(D.ctx, &d, err, sizeof err)) == 0, "%s", err);
    detector_free(&d);
    file_version(D.tiny, D.tiny_version);
    file_version(D.ctx, D.ctx_version);
    if (rc) D.tiny[0] = 0;
    return rc;
}

/* A whole text file (NULL if unreadable); free it. */
static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *s = NULL;
    long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (s = malloc((size_t)n + 1))) {
        s[fread(s, 1, (size_t)n, f)] = 0;
    }
    fclose(f);
    return s;
}

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static void kill_daemon(void) {
    if (D.pid > 0) {
        kill(D.pid, SIGKILL);
        waitpid(D.pid, NULL, 0);
        D.pid = 0;
    }
}

/* Copy src over dst atomically (a temporary file renamed), as a deployment would. */
static int install_file(const char *src, const char *dst) {
    char tmp[600], buf[65536];
    snprintf(tmp, sizeof tmp, "%s.tmp", dst);
    FILE *in = fopen(src, "rb"), *out = fopen(tmp, "wb");
    int rc = in && out ? 0 : -1;
    for (size_t n; rc == 0 && (n = fread(buf, 1, sizeof buf, in)) > 0;)
        if (fwrite(buf, 1, n, out) != n) rc = -1;
    if (in) fclose(in);
    if (out && fclose(out)) rc = -1;
    if (rc == 0) rc = rename(tmp, dst);
    CHECK_MSG(rc == 0, "cannot install %s as %s", src, dst);
    return rc;
}

/* The port anodmd pid says it listens on ("listening on 127.0.0.1:PORT") in its output
 * file log; 0 (the failure reported) if it exits or says nothing for 15 s. */
static int listening_port(pid_t pid, const char *log) {
    int port = 0;
    for (int waited = 0; waited < 15000 && !port; waited += 20) {
        char *out = slurp(log);
        const char *at = out ? strstr(out, "listening on 127.0.0.1:") : NULL;
        if (at) port = atoi(at + strlen("listening on 127.0.0.1:"));
        free(out);
        if (port || waitpid(pid, NULL, WNOHANG) == pid) break;
        sleep_ms(20);
    }
    if (port > 0) return port;
    char *out = slurp(log);
    check_fail(__FILE__, __LINE__, "anodmd did not start; its output:\n%.2000s", out ? out : "");
    free(out);
    return 0;
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

/* ------------------------------------------------------------------ a tiny HTTP client */

typedef struct {
    int status;                  /* 0 when the exchange failed */
    char *raw;                   /* the whole response */
    const char *body;
    json_t *json;                /* the body parsed, or NULL */
} response;

static void response_free(response *r) {
    free(r->raw);
    json_decref(r->json);
}

/* Send req (len bytes) to the daemon and read the response until it closes. */
static response exchange(const char *req, size_t len) {
    response r = {0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)D.port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    struct timeval tv = {10, 0};
    if (fd < 0) return r;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return r;
    }
    for (size_t sent = 0; sent < len;) {
        ssize_t n = send(fd, req + sent, len - sent, MSG_NOSIGNAL);
        if (n <= 0) break;            /* the server may answer before reading it all */
        sent += (size_t)n;
    }
    size_t cap = 65536, got = 0;
    char *buf = malloc(cap);
    for (ssize_t n; buf && (n = recv(fd, buf + got, cap - got - 1, 0)) > 0;) {
        got += (size_t)n;
        if (got + 1 == cap) {
            char *b = realloc(buf, cap *= 2);
            if (!b) break;
            buf = b;
        }
    }
    close(fd);
    if (!buf) return r;
    buf[got] = 0;
    r.raw = buf;
    char *sep = strstr(buf, "\r\n\r\n");
    if (sscanf(buf, "HTTP/1.1 %d", &r.status) != 1 || !sep) {
        r.status = 0;
        return r;
    }
    r.body = sep + 4;
    r.json = json_loads(r.body, 0, NULL);
    return r;
}

/* METHOD path with an optional JSON body and extra header lines ("Name: value\r\n"...). */
static response http_with(const char *method, const char *path, const char *body,
                          const char *headers) {
    size_t blen = body ? strlen(body) : 0, cap = blen + strlen(headers) + 512;
    char *req = malloc(cap);
    response r = {0};
    if (!req) return r;
    int n = snprintf(req, cap, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     "%sContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     method, path, headers, blen, body ? body : "");
    r = exchange(req, (size_t)n);
    free(req);
    return r;
}

/* METHOD path with an optional JSON body. */
static response http(const char *method, const char *path, const char *body) {
    return http_with(method, path, body, "");
}

static const char *jstr(json_t *o, const char *key) {
    return json_string_value(json_object_get(o, key));
}
static double jnum(json_t *o, const char *key) {
    return json_number_value(json_object_get(o, key));
}

/* The response had this status (and, for errors, this error code). */
static void expect_status_(const char *file, int line, const response *r, int status,
                           const char *code) {
    json_t *err = r->json ? json_object_get(r->json, "error") : NULL;
    const char *got = err ? jstr(err, "code") : NULL;
    if (r->status != status || (code && (!got || strcmp(got, code))) ||
        (code && !jstr(err, "message")))
        check_fail(file, line, "want %d %s; got:\n%.1500s", status, code ? code : "",
                   r->raw ? r->raw : "(no response)");
}
#define EXPECT_STATUS(r, status, code) expect_status_(__FILE__, __LINE__, &(r), (status), (code))

/* ------------------------------------------------------------------ request bodies */

/* {"samples": [n samples]} (or {"sample": one} when n is 0) with extra members. */
static char *score_body(const float *x, int n, const char *extra) {
    json_t *root = json_object(), *list = json_array();
    for (int i = 0; i < (n ? n : 1); i++) {
        json_t *s = json_array();
        for (int j = 0; j < DIM; j++) json_array_append_new(s, json_real(x[i * DIM + j]));
        json_array_append_new(list, s);
    }
    if (n) json_object_set_new(root, "samples", list);
    else {
        json_object_set(root, "sample", json_array_get(list, 0));
        json_decref(list);
    }
    char *text = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(root);
    if (!text || !extra) return text;
    /* extra is ",\"key\":value..." spliced before the closing brace */
    char *out = malloc(strlen(text) + strlen(extra) + 1);
    if (out) sprintf(out, "%.*s%s}", (int)strlen(text) - 1, text, extra);
    free(text);
    return out;
}

/* A sample as JSON text: first, then zeros, n values in all. */
static void zero_sample(char *out, size_t cap, const char *first, int n) {
    size_t at = (size_t)snprintf(out, cap, "[%s", first);
    for (int i = 1; i < n && at + 3 < cap; i++) at += (size_t)snprintf(out + at, cap - at, ",0");
    snprintf(out + at, cap - at, "]");
}

/* {"sample": zero_sample(first, n)}. */
static void single_body(char *out, size_t cap, const char *first, int n) {
    char s[256];
    zero_sample(s, sizeof s, first, n);
    snprintf(out, cap, "{\"sample\":%s}", s);
}

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

static void fresh_samples(float *x, int n, uint64_t seed, int anomalous) {
    rng_t r;
    rng_seed(&r, seed);
    for (int i = 0; i < n; i++) sample(x + i * DIM, &r, anomalous);
}

/* ------------------------------------------------------------------ the log */

static sqlite3 *open_log(void) {
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(D.db, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        check_fail(__FILE__, __LINE__, "cannot open %s: %s", D.db, db ? sqlite3_errmsg(db) : "");
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static long long log_int(sqlite3 *db, const char *sql) {
    sqlite3_stmt *st;
    long long v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return -1;
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static long long log_rows(void) {
    sqlite3 *db = open_log();
    long long n = db ? log_int(db, "SELECT count(*) FROM scores") : -1;
    sqlite3_close(db);
    return n;
}

/* Equal to 9 significant digits, the precision of the JSON encoding. */
#define CHECK_REL(a, b) CHECK_NEAR((a), (b), 1e-8 + 1e-7 * fabs((double)(b)))

/* The row of result res (one element of "results") matches it field by field. */
static void check_row(sqlite3 *db, json_t *res, const char *model, const char *version,
                      const char *id, const char *source) {
    sqlite3_stmt *st;
    CHECK(sqlite3_prepare_v2(db, "SELECT model, version, request_id, source, idx, score, "
                             "is_anomaly, threshold, p_value, raw_score, d_re, d_map, x, y, "
                             "nearest_ref, ts_ms FROM scores WHERE id = ?1",
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
    CHECK_REL(sqlite3_column_double(st, 5), jnum(res, "score"));
    CHECK(sqlite3_column_int(st, 6) == json_is_true(json_object_get(res, "is_anomaly")));
    CHECK_REL(sqlite3_column_double(st, 7), jnum(res, "threshold"));
    CHECK_REL(sqlite3_column_double(st, 8), jnum(res, "p_value"));
    CHECK_REL(sqlite3_column_double(st, 9), jnum(res, "raw_score"));
    CHECK_REL(sqlite3_column_double(st, 10), jnum(terms, "d_re"));
    CHECK_REL(sqlite3_column_double(st, 11), jnum(terms, "d_map"));
    CHECK_REL(sqlite3_column_double(st, 12), json_number_value(json_array_get(pos, 0)));
    CHECK_REL(sqlite3_column_double(st, 13), json_number_value(json_array_get(pos, 1)));
    CHECK(sqlite3_column_int(st, 14) == jnum(nb0, "ref"));
    long long now_ms = (long long)time(NULL) * 1000;
    long long ts = sqlite3_column_int64(st, 15);
    CHECK(ts > now_ms - 600000 && ts <= now_ms + 1000);
    sqlite3_finalize(st);
}

/* ------------------------------------------------------------------ tests */

/* Runs `anodmd ARGS` with output to a file; returns the exit code, output in *out. */
static int run_anodmd(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int run_anodmd(char **out, const char *fmt, ...) {
    char args[2048], cmd[4096], path[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(path, sizeof path, "%s/daemon_cli.txt", test_tmpdir());
    snprintf(cmd, sizeof cmd, "%s %s >%s 2>&1", anodmd_bin(), args, path);
    int status = system(cmd);
    *out = slurp(path);
    if (!*out) *out = strdup("");
    return status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

#define EXPECT_CLI(code, want, ...)                                                     \
    do {                                                                                \
        char *out_;                                                                     \
        int rc_ = run_anodmd(&out_, __VA_ARGS__);                                       \
        CHECK_MSG(rc_ == (code) && out_ && strstr(out_, (want)),                         \
                  "exit %d (want %d), want '%s' in:\n%.1500s", rc_, (code), (want),       \
                  out_ ? out_ : "");                                                    \
        free(out_);                                                                     \
    } while (0)

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

    r = http("GET", "/v1/models/nope", NULL);
    EXPECT_STATUS(r, 404, "unknown_model");
    response_free(&r);
}

/* Every operation proto/openapi.yaml documents is routed (the reverse: it lists 16). */
TEST(daemon_openapi_routes) {
    if (daemon_up()) return;
    FILE *f = fopen("proto/openapi.yaml", "r");
    CHECK_MSG(f != NULL, "proto/openapi.yaml (run from the repository root)");
    if (!f) return;
    char line[512], path[256] = "", method[16];
    int operations = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] != ' ') path[0] = 0;          /* paths end where "components:" starts */
        if (sscanf(line, "  /%255[^:]:", path) == 1 && line[2] == '/') continue;
        if (sscanf(line, "    %15[a-z]:", method) != 1 || line[4] == ' ' || !path[0]) continue;
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
    CHECK_MSG(operations == 16, "%d operations documented, 16 routed", operations);
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
    int nn[3];
    float dist[3];
    CHECK(s && scorer_score(s, x, 1, &want, NULL, nn, dist, err, sizeof err) == 0);
    CHECK_REL(jnum(res, "score"), want.score);
    CHECK_NEAR(jnum(res, "threshold"), d.threshold, 1e-6);
    CHECK(json_is_true(json_object_get(res, "is_anomaly")) == want.is_anomaly);
    CHECK_NEAR(jnum(json_object_get(res, "terms"), "z_re"), want.z_re, 1e-5);
    json_t *nb = json_object_get(res, "neighbors");
    for (int j = 0; j < 3; j++) {
        CHECK(jnum(json_array_get(nb, (size_t)j), "ref") == d.ref_id[nn[j]]);
        CHECK_NEAR(jnum(json_array_get(nb, (size_t)j), "distance"), dist[j], 1e-5);
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
    CHECK_REL(jnum(g.json, "score"), jnum(res, "score"));
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
        {"GET", "/", NULL, 404, "not_found"},
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

/* The log's schema: versioned, WAL, indexed for the polling queries. */
TEST(daemon_log_schema) {
    if (daemon_up()) return;
    sqlite3 *db = open_log();
    if (!db) return;
    CHECK(log_int(db, "PRAGMA user_version") == 1);
    CHECK(log_int(db, "SELECT count(*) FROM pragma_journal_mode WHERE journal_mode = 'wal'") == 1);
    CHECK(log_int(db, "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name IN "
                      "('scores_by_model', 'scores_by_source', 'scores_anomalies')") == 3);
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
    CHECK(metric(after, "anodmd_db_write_seconds_count") > metric(before, "anodmd_db_write_seconds_count"));
    CHECK(metric(after, "anodmd_db_errors_total") == 0);
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
        sqlite3_stmt *st;
        CHECK(sqlite3_prepare_v2(db, "SELECT score FROM scores WHERE model = ?1 ORDER BY score "
                                 "LIMIT 1 OFFSET ?2", -1, &st, NULL) == SQLITE_OK);
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (long long)ceil(0.9 * (double)n) - 1);
        CHECK(sqlite3_step(st) == SQLITE_ROW);
        CHECK_REL(jnum(q, "p90"), sqlite3_column_double(st, 0));
        sqlite3_finalize(st);
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

/* KServe V2: the same scores as /v1, as output tensors; health and metadata. */
TEST(daemon_v2_protocol) {
    if (daemon_up()) return;
    float x[3 * DIM];
    fresh_samples(x, 2, 91, 0);
    fresh_samples(x + 2 * DIM, 1, 92, 1);
    response v1 = score("/v1/models/tiny/score", x, 3, NULL);
    for (int nested = 0; nested < 2; nested++) {
        char *body = infer_body(x, 3, nested, "FP32");
        response r = http("POST", "/v2/models/tiny/infer", body);
        free(body);
        EXPECT_STATUS(r, 200, NULL);
        CHECK(r.json && !strcmp(jstr(r.json, "model_name"), "tiny") &&
              !strcmp(jstr(r.json, "model_version"), D.tiny_version) &&
              !strcmp(jstr(r.json, "id"), "v2-req"));
        json_t *outs = json_object_get(r.json, "outputs");
        CHECK(json_array_size(outs) == 4);
        json_t *ids = json_object_get(json_array_get(outs, 3), "data");
        pthread_mutex_lock(&D.lock);
        for (size_t i = 0; i < json_array_size(ids) && D.n_acked < MAX_ACKED; i++)
            D.acked[D.n_acked++] = json_integer_value(json_array_get(ids, i));
        pthread_mutex_unlock(&D.lock);
        json_t *sc = json_array_get(outs, 0), *fl = json_array_get(outs, 1),
               *pv = json_array_get(outs, 2);
        CHECK(sc && !strcmp(jstr(sc, "name"), "score") && !strcmp(jstr(sc, "datatype"), "FP32"));
        CHECK(fl && !strcmp(jstr(fl, "name"), "is_anomaly") && !strcmp(jstr(fl, "datatype"), "BOOL"));
        CHECK(pv && !strcmp(jstr(pv, "name"), "p_value"));
        CHECK(json_integer_value(json_array_get(json_object_get(sc, "shape"), 0)) == 3);
        json_t *res = json_object_get(v1.json, "results");
        for (size_t i = 0; i < 3; i++) {
            json_t *want = json_array_get(res, i);
            CHECK_REL(json_number_value(json_array_get(json_object_get(sc, "data"), i)),
                      jnum(want, "score"));
            CHECK(json_is_true(json_array_get(json_object_get(fl, "data"), i)) ==
                  json_is_true(json_object_get(want, "is_anomaly")));
            CHECK_REL(json_number_value(json_array_get(json_object_get(pv, "data"), i)),
                      jnum(want, "p_value"));
        }
        response_free(&r);
    }
    response_free(&v1);
    char *fp64 = infer_body(x, 1, 0, "FP64"), *short_data = infer_body(x, 1, 0, "FP32");
    char *p = short_data ? strstr(short_data, ",0.") : NULL;   /* drop one value */
    if (p) memmove(p, strchr(p + 1, ','), strlen(strchr(p + 1, ',')) + 1);
    const struct {
        const char *path, *body;
        int status;
        const char *code;
    } cases[] = {
        {"/v2/models/tiny/infer", fp64, 400, "invalid_request"},
        {"/v2/models/tiny/infer", short_data, 400, "wrong_length"},
        {"/v2/models/tiny/infer", "{\"inputs\": []}", 400, "invalid_request"},
        {"/v2/models/tiny/infer", "{\"inputs\": [{\"name\": \"i\", \"shape\": [1, 63], "
                                  "\"datatype\": \"FP32\", \"data\": []}]}", 400, "wrong_length"},
        {"/v2/models/tiny/infer", "{\"inputs\": [{\"name\": \"i\", \"shape\": [17, 64], "
                                  "\"datatype\": \"FP32\", \"data\": []}]}", 413, "batch_too_large"},
        {"/v2/models/tiny/infer", "{\"inputs\": [{\"name\": \"i\", \"shape\": [1, 64], "
                                  "\"datatype\": \"FP32\", \"data\": [\"a\"]}]}", 400, "not_a_number"},
        {"/v2/models/tiny/infer", "{\"inputz\": 1}", 400, "unknown_field"},
        {"/v2/models/nope/infer", "{}", 404, "unknown_model"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        response r = http("POST", cases[i].path, cases[i].body);
        if (r.status != cases[i].status) check_fail(__FILE__, __LINE__, "v2 case %zu", i);
        EXPECT_STATUS(r, cases[i].status, cases[i].code);
        response_free(&r);
    }
    free(fp64);
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
    r = http("GET", "/v2/models/nope/ready", NULL);
    EXPECT_STATUS(r, 404, "unknown_model");
    response_free(&r);
    r = http("GET", "/v2/models/tiny", NULL);
    json_t *in = json_array_get(json_object_get(r.json, "inputs"), 0);
    CHECK(r.status == 200 && !strcmp(jstr(r.json, "name"), "tiny"));
    CHECK(!strcmp(json_string_value(json_array_get(json_object_get(r.json, "versions"), 0)),
                  D.tiny_version));
    CHECK(json_integer_value(json_array_get(json_object_get(in, "shape"), 1)) == DIM);
    CHECK(json_array_size(json_object_get(r.json, "outputs")) == 4);
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

/* Start another anodmd on a free port with args (NULL-terminated), output to log; its
 * pid and *port (0 when it did not start, the failure reported). */
static pid_t spawn_anodmd(const char *log, const char *const *args, int *port) {
    const char *argv[32] = {"anodmd", "--port", "0"};
    int n = 3;
    while (*args && n < 31) argv[n++] = *args++;
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (!freopen(log, "w", stderr)) _exit(127);
        dup2(fileno(stderr), fileno(stdout));
        execv(anodmd_bin(), (char *const *)argv);
        _exit(127);
    }
    *port = pid > 0 ? listening_port(pid, log) : 0;
    return pid;
}

/* SIGTERM pid and check that it exits 0. */
static void stop_anodmd(pid_t pid) {
    int status = -1;
    if (pid <= 0) return;
    kill(pid, SIGTERM);
    waitpid(pid, &status, 0);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
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
    char keyfile[600], db[600], log[600], model[600];
    snprintf(keyfile, sizeof keyfile, "%s/daemon_keys.txt", test_tmpdir());
    snprintf(db, sizeof db, "%s/daemon_keys.db", test_tmpdir());
    snprintf(log, sizeof log, "%s/daemon_keys_stderr.txt", test_tmpdir());
    snprintf(model, sizeof model, "tiny=%s", D.tiny);
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

/* The log keeps rows for retention_days and at most retention_rows of them, trimmed
 * by the writer as the daemon runs. */
TEST(daemon_retention) {
    if (make_bundles()) return;
    char db_path[600], log[600], model[600];
    snprintf(db_path, sizeof db_path, "%s/daemon_retention.db", test_tmpdir());
    snprintf(log, sizeof log, "%s/daemon_retention_stderr.txt", test_tmpdir());
    snprintf(model, sizeof model, "tiny=%s", D.tiny);
    const char *args[] = {"--model", model, "--db", db_path, "--retention-days", "7",
                          "--retention-rows", "30", NULL};
    int port, saved = D.port;
    pid_t pid = spawn_anodmd(log, args, &port);
    if (!port) return;
    D.port = port;              /* http() talks to this daemon until the end */
    float x[40 * DIM];
    fresh_samples(x, 40, 31, 0);
    char *body = score_body(x, 10, NULL);
    response r = http("POST", "/v1/score", body);
    EXPECT_STATUS(r, 200, NULL);
    response_free(&r);
    free(body);
    /* Three rows from ten days ago, as an older daemon would have left them. */
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

/* A response to one sample equals scoring that sample alone in-process, however it was
 * batched (single mode is batch-invariant), and its log row matches it. */
static void check_alone(json_t *res, scorer *s, const detector *d, const float *x,
                        int explain, sqlite3 *db) {
    detector_result want;
    float rec[DIM], dist[3];
    int nn[3];
    char err[256];
    if (!res || scorer_score(s, x, 1, &want, rec, nn, dist, err, sizeof err)) {
        check_fail(__FILE__, __LINE__, "no result, or in-process scoring failed: %s", err);
        return;
    }
    json_t *terms = json_object_get(res, "terms"), *pos = json_object_get(res, "position");
    CHECK_NEAR(jnum(res, "score"), want.score, 1e-6 * fmax(1, fabs(want.score)));
    CHECK_NEAR(jnum(terms, "d_re"), want.d_re, 1e-6 * fmax(1, fabs(want.d_re)));
    CHECK_NEAR(jnum(terms, "d_map"), want.d_map, 1e-6 * fmax(1, fabs(want.d_map)));
    CHECK_NEAR(json_number_value(json_array_get(pos, 0)), want.pos[0], 1e-5);
    CHECK_NEAR(json_number_value(json_array_get(pos, 1)), want.pos[1], 1e-5);
    CHECK(json_is_true(json_object_get(res, "is_anomaly")) == want.is_anomaly);
    CHECK(jnum(json_array_get(json_object_get(res, "neighbors"), 0), "ref") == d->ref_id[nn[0]]);
    json_t *got_rec = json_object_get(res, "reconstruction");
    CHECK(explain ? json_array_size(got_rec) == DIM : got_rec == NULL);
    for (size_t j = 0; explain && j < json_array_size(got_rec); j++)
        CHECK_NEAR(json_number_value(json_array_get(got_rec, j)), rec[j], 1e-6);
    if (db) check_row(db, res, "tiny", D.tiny_version, NULL, NULL);
}

/* Concurrent single-sample requests are scored together: /metrics shows batches of more
 * than one sample, the queue depth gauge is there, and every answer is the lone one. */
TEST(daemon_batching) {
    if (daemon_up()) return;
    enum { CLIENTS = 12, ROUNDS = 4 };
    const char *count = "anodmd_batch_size_count{model=\"tiny\"}";
    const char *samples = "anodmd_samples_scored_total{model=\"tiny\"}";
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
        for (int i = 0; i < CLIENTS; i++) {
            EXPECT_STATUS(c[i].r, 200, NULL);
            if (c[i].r.status == 200) remember(&c[i].r);
            check_alone(json_array_get(json_object_get(c[i].r.json, "results"), 0), s, &d,
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
