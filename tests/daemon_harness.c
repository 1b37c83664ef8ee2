/* What the daemon's process-level tests share (see daemon_harness.h). */
#include "clock.h"
#include "daemon_harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bundle.h"
#include "pipeline.h"

/* ------------------------------------------------------------------ models and files */

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

void fresh_samples(float *x, int n, uint64_t seed, int anomalous) {
    rng_t r;
    rng_seed(&r, seed);
    for (int i = 0; i < n; i++) sample(x + i * DIM, &r, anomalous);
}

/* A small detector: a dense VAE, a 150-point map, k = 3 neighbours, and no stream memory,
 * so that a sample's score is a function of the sample (the tests compare the daemon's
 * answers with scoring in-process); the memory's own tests make a model with one. */
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
    o.use_memory = 0;
    char err[256];
    int rc = detector_build(d, &a, &data, &o, NULL, NULL, NULL, err, sizeof err);
    CHECK_MSG(rc == 0, "detector_build: %s", err);
    free(data.x);
    return rc;
}

void file_version(const char *path, char hex[65]) {
    uint8_t *buf;
    size_t len;
    char err[256];
    hex[0] = 0;
    if (bundle_read_file(path, (size_t)1 << 30, &buf, &len, err, sizeof err) == 0) {
        bundle_hash(buf, len, hex);
        free(buf);
    }
}

const test_bundles *test_bundles_get(void) {
    static test_bundles b;
    static int built;
    if (built) return &b;
    detector d;
    if (build_detector(&d)) return NULL;
    char err[256];
    snprintf(b.tiny, sizeof b.tiny, "%s/daemon_tiny.anodm", test_tmpdir());
    snprintf(b.ctx, sizeof b.ctx, "%s/daemon_ctx.anodm", test_tmpdir());
    int rc = bundle_save(b.tiny, &d, err, sizeof err);
    CHECK_MSG(rc == 0, "bundle_save: %s", err);
    d.mode = PLACE_CONTEXT;
    if (rc == 0) CHECK_MSG((rc = bundle_save(b.ctx, &d, err, sizeof err)) == 0, "%s", err);
    detector_free(&d);
    if (rc) return NULL;
    file_version(b.tiny, b.tiny_version);
    file_version(b.ctx, b.ctx_version);
    built = 1;
    return &b;
}

int memory_bundle_at(const char *path, double shift) {
    const test_bundles *b = test_bundles_get();
    char err[256];
    detector d;
    if (!b) return -1;
    if (bundle_load(b->tiny, &d, err, sizeof err) != 0) {
        check_fail(__FILE__, __LINE__, "%s", err);
        return -1;
    }
    d.use_memory = 1;
    memory_options_default(&d.memory);
    d.memory.capacity = 50;
    d.memory.k = 2;
    d.memory.k_min = 1;
    d.fusion = FUSION_MEMORY;
    d.mem = (term_stats){0.0, 1.0};
    d.threshold += shift;
    int rc = bundle_save(path, &d, err, sizeof err);
    CHECK_MSG(rc == 0, "%s", err);
    detector_free(&d);
    return rc;
}

char *slurp(const char *path) {
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

void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

int install_file(const char *src, const char *dst) {
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

/* ------------------------------------------------------------------ the daemon */

const char *anodmd_bin(void) {
    const char *b = getenv("ANODMD_BIN");
    return b && *b ? b : "build/anodmd";
}

int under_valgrind(void) { return getenv("ANODM_VALGRIND") != NULL; }

int listening_port(pid_t pid, const char *log) {
    int port = 0;
    const int limit_ms = under_valgrind() ? 120000 : 15000;
    for (int waited = 0; waited < limit_ms && !port; waited += 20) {
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

pid_t spawn_anodmd(const char *log, const char *const *args, int *port) {
    const char *argv[40] = {"anodmd", "--port", "0"};
    int n = 3;
    while (*args && n < 39) argv[n++] = *args++;
    argv[n] = NULL;
    /* Emptied here, not only by the child: an earlier run's "listening on" must not be
     * read as this one's. */
    FILE *f = fopen(log, "w");
    if (f) fclose(f);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);   /* never outlive the test runner */
        if (!freopen(log, "w", stderr)) _exit(127);
        dup2(fileno(stderr), fileno(stdout));
        execv(anodmd_bin(), (char *const *)argv);
        _exit(127);
    }
    *port = pid > 0 ? listening_port(pid, log) : 0;
    return pid;
}

int wait_exit(pid_t pid, long ms) {
    int status;
    for (long waited = 0;; waited += 10) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) return status;
        if (r < 0 || waited >= ms) return -1;
        sleep_ms(10);
    }
}

void stop_anodmd(pid_t pid) {
    if (pid <= 0) return;
    kill(pid, SIGTERM);
    int status = wait_exit(pid, under_valgrind() ? 120000 : 30000);
    if (status == -1) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    CHECK_MSG(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d",
              status);
}

int run_anodmd_argv(const char *log, const char *const *args, long ms) {
    const char *argv[40] = {"anodmd"};
    int n = 1;
    while (*args && n < 39) argv[n++] = *args++;
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
    if (pid < 0) return -1;
    int status = wait_exit(pid, under_valgrind() ? ms * 20 : ms);
    if (status == -1) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

const char *anodm_bin(void) {
    const char *b = getenv("ANODM_BIN");
    return b && *b ? b : "build/anodm";
}

/* `bin ARGS` through the shell, both streams to a file named after the program. */
static int run_tool(const char *bin, const char *name, char **out, const char *fmt,
                    va_list ap) {
    char args[2048], cmd[4096], path[512];
    vsnprintf(args, sizeof args, fmt, ap);
    snprintf(path, sizeof path, "%s/%s_output.txt", test_tmpdir(), name);
    snprintf(cmd, sizeof cmd, "%s %s >%s 2>&1", bin, args, path);
    int status = system(cmd), code = -1;
    *out = slurp(path);
    if (!*out) *out = strdup("");
    /* The shell reports a child killed by signal s as exit 128 + s. */
    if (status != -1) code = WIFSIGNALED(status) ? 128 + WTERMSIG(status)
                                                 : WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    /* A sanitizer's report fails the run whatever the exit status. */
    if (*out && (strstr(*out, "Sanitizer") || strstr(*out, "runtime error:"))) code = 200;
    return code;
}

int run_anodm_v(char **out, const char *fmt, va_list ap) {
    return run_tool(anodm_bin(), "anodm", out, fmt, ap);
}

int run_anodm(char **out, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int code = run_anodm_v(out, fmt, ap);
    va_end(ap);
    return code;
}

int run_anodmd(char **out, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int code = run_tool(anodmd_bin(), "anodmd", out, fmt, ap);
    va_end(ap);
    return code;
}

long proc_rss_kb(pid_t pid) {
    char path[64], line[256];
    long kb = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb;
}

int proc_fds(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* ------------------------------------------------------------------ HTTP */

void response_free(response *r) {
    free(r->raw);
    json_decref(r->json);
    r->raw = NULL;
    r->json = NULL;
}

int tcp_connect(int port, int timeout_s) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    struct timeval tv = {timeout_s, 0};
    if (fd < 0) return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;                 /* a request's last segment must not wait for an ACK */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Parse the status line and body of the response in r->raw (len bytes). */
static void parse_response(response *r, size_t len) {
    char *sep = strstr(r->raw, "\r\n\r\n");
    if (sscanf(r->raw, "HTTP/1.1 %d", &r->status) != 1 || !sep) {
        r->status = 0;
        return;
    }
    r->body = sep + 4;
    r->body_len = len - (size_t)(r->body - r->raw);
    const char *h = strstr(r->raw, "\r\nInference-Header-Content-Length: ");
    r->json_len = h && h < sep ? strtoul(h + 35, NULL, 10) : 0;
    size_t json_len = h && h < sep ? r->json_len : r->body_len;
    if (json_len <= r->body_len) r->json = json_loadb(r->body, json_len, 0, NULL);
}

response http_exchange(int port, const char *req, size_t len) {
    response r = {0};
    int fd = tcp_connect(port, under_valgrind() ? 60 : 10);
    if (fd < 0) return r;
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
    parse_response(&r, got);
    return r;
}

response http_request(int port, const char *method, const char *path, const char *body,
                      const char *headers) {
    size_t blen = body ? strlen(body) : 0, cap = blen + strlen(headers) + strlen(path) + 512;
    char *req = malloc(cap);
    response r = {0};
    if (!req) return r;
    int n = snprintf(req, cap, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     "%sContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     method, path, headers, blen, body ? body : "");
    r = http_exchange(port, req, (size_t)n);
    free(req);
    return r;
}

void hconn_init(http_conn *c, int port) {
    memset(c, 0, sizeof *c);
    c->fd = -1;
    c->port = port;
}

void hconn_close(http_conn *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->have = 0;
}

/* Read until c->buf holds at least want bytes; 0, or -1 when the connection ends. */
static int hconn_fill(http_conn *c, size_t want) {
    while (c->have < want) {
        if (want + 1 > c->cap) {
            size_t cap = c->cap ? c->cap : 65536;
            while (cap < want + 1) cap *= 2;
            char *b = realloc(c->buf, cap);
            if (!b) return -1;
            c->buf = b;
            c->cap = cap;
        }
        ssize_t n = recv(c->fd, c->buf + c->have, c->cap - c->have - 1, 0);
        if (n <= 0) return -1;
        c->have += (size_t)n;
    }
    return 0;
}

response hconn_send(http_conn *c, const char *head, const char *body, size_t body_len) {
    response r = {0};
    if (c->fd < 0 && (c->fd = tcp_connect(c->port, under_valgrind() ? 60 : 10)) < 0) return r;
    size_t hlen = strlen(head);
    int ok = 1;
    for (int part = 0; ok && part < 2; part++) {
        const char *p = part ? body : head;
        size_t len = part ? body_len : hlen;
        for (size_t sent = 0; ok && sent < len;) {
            ssize_t n = send(c->fd, p + sent, len - sent,
                             MSG_NOSIGNAL | (!part && body_len ? MSG_MORE : 0));
            if (n <= 0) ok = 0;
            else sent += (size_t)n;
        }
    }
    /* Headers, then Content-Length bytes of body (anodmd always sends one). */
    char *end = NULL;
    size_t head_len = 0;
    while (!(end = c->have ? strstr(c->buf, "\r\n\r\n") : NULL)) {
        if (c->have > (1u << 20) || hconn_fill(c, c->have + 1)) {
            hconn_close(c);
            return r;
        }
        c->buf[c->have] = 0;
    }
    head_len = (size_t)(end - c->buf) + 4;
    const char *cl = strstr(c->buf, "\r\nContent-Length: ");
    size_t body_n = cl && cl < end ? strtoul(cl + 18, NULL, 10) : 0;
    if (hconn_fill(c, head_len + body_n)) {
        hconn_close(c);
        return r;
    }
    if (!(r.raw = malloc(head_len + body_n + 1))) {
        hconn_close(c);
        return r;
    }
    memcpy(r.raw, c->buf, head_len + body_n);
    r.raw[head_len + body_n] = 0;
    const char *close_hdr = strstr(r.raw, "\r\nConnection: close");
    int closing = close_hdr && close_hdr < r.raw + head_len;
    memmove(c->buf, c->buf + head_len + body_n, c->have - head_len - body_n);
    c->have -= head_len + body_n;
    c->buf[c->have] = 0;
    parse_response(&r, head_len + body_n);
    if (closing) hconn_close(c);
    return r;
}

const char *jstr(json_t *o, const char *key) {
    return json_string_value(json_object_get(o, key));
}

double jnum(json_t *o, const char *key) {
    return json_number_value(json_object_get(o, key));
}

const char *error_code(const response *r, char code[32], int *v2) {
    json_t *err = r->json ? json_object_get(r->json, "error") : NULL;
    const char *text = json_string_value(err), *colon = text ? strstr(text, ": ") : NULL;
    if (v2) *v2 = text != NULL;
    if (text) {   /* "<code>: <message>" */
        if (!colon || colon == text || (size_t)(colon - text) >= 32 || !colon[2]) return NULL;
        memcpy(code, text, (size_t)(colon - text));
        code[colon - text] = 0;
        return code;
    }
    if (!jstr(err, "code") || !jstr(err, "message")) return NULL;
    snprintf(code, 32, "%s", jstr(err, "code"));
    return code;
}

void expect_status_(const char *file, int line, const response *r, int status,
                    const char *code) {
    char buf[32];
    const char *got = error_code(r, buf, NULL);
    if (r->status != status || (code && (!got || strcmp(got, code))))
        check_fail(file, line, "want %d %s; got:\n%.1500s", status, code ? code : "",
                   r->raw ? r->raw : "(no response)");
}

/* ------------------------------------------------------------------ request bodies */

char *score_body(const float *x, int n, const char *extra) {
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

void zero_sample(char *out, size_t cap, const char *first, int n) {
    size_t at = (size_t)snprintf(out, cap, "[%s", first);
    for (int i = 1; i < n && at + 3 < cap; i++) at += (size_t)snprintf(out + at, cap - at, ",0");
    snprintf(out + at, cap - at, "]");
}

void single_body(char *out, size_t cap, const char *first, int n) {
    char s[256];
    zero_sample(s, sizeof s, first, n);
    snprintf(out, cap, "{\"sample\":%s}", s);
}

/* ------------------------------------------------------------------ the log */

sqlite3 *log_open_readonly(const char *path) {
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        check_fail(__FILE__, __LINE__, "cannot open %s: %s", path, db ? sqlite3_errmsg(db) : "");
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 5000);
    return db;
}

long long log_int(sqlite3 *db, const char *sql) {
    sqlite3_stmt *st;
    long long v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return -1;
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

long long log_rows_at(const char *path) {
    sqlite3 *db = log_open_readonly(path);
    long long n = db ? log_int(db, "SELECT count(*) FROM scores") : -1;
    sqlite3_close(db);
    return n;
}

int log_intact_(const char *file, int line, const char *path, long long rows) {
    sqlite3 *db = log_open_readonly(path);
    if (!db) return 0;
    sqlite3_stmt *st;
    char check[256] = "(no answer)";
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
            snprintf(check, sizeof check, "%s", (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    long long n = log_int(db, "SELECT count(*) FROM scores");
    sqlite3_close(db);
    int ok = !strcmp(check, "ok") && (rows < 0 || n == rows);
    if (!ok)
        check_fail(file, line, "log %s: integrity_check '%s', %lld rows (want %lld)", path,
                   check, n, rows);
    return ok;
}
