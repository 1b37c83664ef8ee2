/* anodmd under sustained mixed load (issue 8, section 4): the soak.
 *
 * Eight clients on kept-alive connections send a fixed mix of valid requests (single and
 * batched scores on both placement modes, explained scores, V2 infer, log pages,
 * statistics, metrics, probes) and invalid ones (malformed JSON, wrong lengths, NaN as a
 * string, duplicate keys, unknown models and routes, wrong methods and content types,
 * oversized batches and bodies), about a third of them invalid, each checked against
 * its exact expected status and error code. The log keeps at most 100000 rows
 * (retention), so it is trimmed all along too. Every period the daemon's RSS, open file
 * descriptors and threads (from /proc) and the log's size are sampled.
 *
 * It must end with no unexpected answer and no failed exchange; the same number of
 * descriptors, once the clients have gone, as before they came; a clean SIGTERM; an
 * intact log; and, on runs of a minute or more, RSS at the end within 10% + 8 MB of RSS
 * after the warm-up (30 s).
 *
 * In `make test` it runs for ANODM_SOAK_SECONDS = 4 by default; `make soak` runs it for
 * 600 s and writes the samples to $(BUILD)/soak-report.txt (ANODM_SOAK_REPORT). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "clock.h"
#include "daemon_harness.h"

#define CLIENTS 8
#define SOAK_MAX_BODY 65536
#define SOAK_MAX_BATCH 16

/* One kind of request in the mix: how often (out of the sum of weights), what it sends,
 * and what must come back. */
typedef struct {
    const char *name;
    int weight;
    char *head;                  /* request line and headers, ending \r\n\r\n */
    char *body;
    size_t body_len;
    int status;
    const char *code;            /* error code, or NULL for a 2xx */
    int samples;                 /* scored samples in a 200 */
} kind;

#define MAX_KINDS 32
static kind kinds[MAX_KINDS];
static int n_kinds, total_weight;

static void add_kind(const char *name, int weight, const char *method, const char *path,
                     const char *content_type, const char *body, size_t body_len, int status,
                     const char *code, int samples) {
    if (n_kinds == MAX_KINDS) return;
    kind *k = &kinds[n_kinds];
    char head[512];
    snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s%sContent-Length: %zu"
             "\r\n\r\n", method, path, content_type ? "Content-Type: " : "",
             content_type ? content_type : "", content_type ? "\r\n" : "", body_len);
    k->head = strdup(head);
    k->body = malloc(body_len + 1);
    if (!k->head || !k->body) {
        check_fail(__FILE__, __LINE__, "out of memory");
        return;
    }
    if (body_len) memcpy(k->body, body, body_len);
    k->body[body_len] = 0;
    k->name = name;
    k->weight = weight;
    k->body_len = body_len;
    k->status = status;
    k->code = code;
    k->samples = samples;
    total_weight += weight;
    n_kinds++;
}

#define JSON "application/json"

static void build_mix(void) {
    float x[SOAK_MAX_BATCH * DIM];
    fresh_samples(x, 8, 77, 0);
    fresh_samples(x + 8 * DIM, 8, 78, 1);
    char *one = score_body(x, 0, ",\"source\":\"soak\""), *eight = score_body(x + 4 * DIM, 8, NULL);
    char *explain = score_body(x + 9 * DIM, 0, ",\"explain\":true");
    char *too_many = malloc(32 + 3 * (SOAK_MAX_BATCH + 1));
    if (too_many) {
        strcpy(too_many, "{\"samples\":[[]");
        for (int i = 0; i < SOAK_MAX_BATCH; i++) strcat(too_many, ",[]");
        strcat(too_many, "]}");
    }
    char v2[4096] = "{\"id\":\"soak\",\"inputs\":[{\"name\":\"x\",\"shape\":[1,64],\"datatype\":"
                    "\"FP32\",\"data\":[0.1";
    for (int i = 1; i < DIM; i++) strcat(v2, ",0.5");
    strcat(v2, "]}]}");
    char short_one[512], nan_string[512], dup[1024];
    single_body(short_one, sizeof short_one, "0.5", DIM - 1);
    single_body(nan_string, sizeof nan_string, "\"NaN\"", DIM);
    snprintf(dup, sizeof dup, "{\"id\":\"a\",\"id\":\"b\",%s", one ? one + 1 : "}");
    char *big = malloc(SOAK_MAX_BODY + 1);
    if (!one || !eight || !explain || !too_many || !big) {
        check_fail(__FILE__, __LINE__, "out of memory");
    } else {
        memset(big, ' ', SOAK_MAX_BODY + 1);
        /* valid: about two thirds of the requests */
        add_kind("score 1 (single mode)", 30, "POST", "/v1/score", JSON, one, strlen(one), 200, NULL, 1);
        add_kind("score 8 (single mode)", 10, "POST", "/v1/models/tiny/score", JSON, eight,
                 strlen(eight), 200, NULL, 8);
        add_kind("score 1 (context mode)", 10, "POST", "/v1/models/ctx/score", JSON, one,
                 strlen(one), 200, NULL, 1);
        add_kind("score 1, explained", 4, "POST", "/v1/score", JSON, explain, strlen(explain),
                 200, NULL, 1);
        add_kind("V2 infer", 4, "POST", "/v2/models/tiny/infer", JSON, v2, strlen(v2), 200, NULL, 1);
        add_kind("log page", 4, "GET", "/v1/scores?limit=50&source=soak", NULL, "", 0, 200, NULL, 0);
        add_kind("stats", 1, "GET", "/v1/stats", NULL, "", 0, 200, NULL, 0);
        add_kind("metrics", 2, "GET", "/metrics", NULL, "", 0, 200, NULL, 0);
        add_kind("healthz", 2, "GET", "/healthz", NULL, "", 0, 200, NULL, 0);
        add_kind("map", 1, "GET", "/v1/models/ctx/map?max_points=50", NULL, "", 0, 200, NULL, 0);
        /* invalid: about a third */
        add_kind("malformed JSON", 4, "POST", "/v1/score", JSON, one, strlen(one) / 2, 400,
                 "malformed_json", 0);
        add_kind("wrong length", 4, "POST", "/v1/score", JSON, short_one, strlen(short_one), 400,
                 "wrong_length", 0);
        add_kind("NaN as a string", 3, "POST", "/v1/score", JSON, nan_string, strlen(nan_string),
                 400, "not_a_number", 0);
        add_kind("duplicate key", 3, "POST", "/v1/score", JSON, dup, strlen(dup), 400,
                 "duplicate_key", 0);
        add_kind("unknown model", 3, "POST", "/v1/models/nope/score", JSON, one, strlen(one), 404,
                 "unknown_model", 0);
        add_kind("unknown route", 3, "GET", "/v1/nothing", NULL, "", 0, 404, "not_found", 0);
        add_kind("wrong method", 2, "DELETE", "/v1/score", NULL, "", 0, 405, "method_not_allowed", 0);
        add_kind("wrong content type", 3, "POST", "/v1/score", "text/plain", one, strlen(one),
                 415, "unsupported_media_type", 0);
        add_kind("batch too large", 3, "POST", "/v1/score", JSON, too_many, strlen(too_many), 413,
                 "batch_too_large", 0);
        add_kind("body too large", 1, "POST", "/v1/score", JSON, big, SOAK_MAX_BODY + 1, 413,
                 "body_too_large", 0);
    }
    free(one);
    free(eight);
    free(explain);
    free(too_many);
    free(big);
}

static void free_mix(void) {
    for (int i = 0; i < n_kinds; i++) {
        free(kinds[i].head);
        free(kinds[i].body);
    }
    n_kinds = total_weight = 0;
}

/* ------------------------------------------------------------------ clients */

typedef struct {
    int port, id;
    volatile int *stop;
    long long requests, unexpected, failed, samples, valid;
    char first_bad[600];
    pthread_mutex_t lock;        /* guards the counters, which the monitor reads */
} soak_client;

static void *soak_main(void *arg) {
    soak_client *c = arg;
    http_conn conn;
    hconn_init(&conn, c->port);
    unsigned seed = 1234u + (unsigned)c->id;
    while (!*c->stop) {
        int pick = (int)(rand_r(&seed) % (unsigned)total_weight), k = 0;
        while (pick >= kinds[k].weight) pick -= kinds[k++].weight;
        const kind *kd = &kinds[k];
        response r = hconn_send(&conn, kd->head, kd->body, kd->body_len);
        json_t *err = r.json ? json_object_get(r.json, "error") : NULL;
        const char *code = err ? jstr(err, "code") : NULL;
        int ok = r.status == kd->status && (kd->code ? code && !strcmp(code, kd->code) : !err);
        pthread_mutex_lock(&c->lock);
        c->requests++;
        if (!r.status) c->failed++;
        else if (!ok) c->unexpected++;
        else if (!kd->code) {
            c->valid++;
            c->samples += kd->samples;
        }
        if ((!r.status || !ok) && !c->first_bad[0])
            snprintf(c->first_bad, sizeof c->first_bad, "%s: want %d %s, got %.400s", kd->name,
                     kd->status, kd->code ? kd->code : "", r.raw ? r.raw : "(no response)");
        pthread_mutex_unlock(&c->lock);
        response_free(&r);
    }
    hconn_close(&conn);
    free(conn.buf);
    return NULL;
}

/* ------------------------------------------------------------------ the soak */

static int threads_of(pid_t pid) {
    char path[64], line[256];
    int n = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %d", &n) == 1) break;
    fclose(f);
    return n;
}

static long long bytes_of(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : 0;
}

TEST(daemon_soak) {
    const test_bundles *b = test_bundles_get();
    if (!b) return;
    const char *env = getenv("ANODM_SOAK_SECONDS");
    const double seconds = env && atof(env) > 0 ? atof(env) : 4;
    const double period = seconds >= 60 ? 10 : 1, warmup = seconds >= 60 ? 30 : 1;
    const char *report_path = getenv("ANODM_SOAK_REPORT");
    FILE *report = report_path ? fopen(report_path, "w") : NULL;
    char db[600], wal[640], log[600], tiny[600], ctx[600], body_limit[16], batch_limit[16];
    snprintf(db, sizeof db, "%s/soak.db", test_tmpdir());
    snprintf(wal, sizeof wal, "%s-wal", db);
    snprintf(log, sizeof log, "%s/soak_stderr.txt", test_tmpdir());
    snprintf(tiny, sizeof tiny, "tiny=%s", b->tiny);
    snprintf(ctx, sizeof ctx, "ctx=%s", b->ctx);
    snprintf(body_limit, sizeof body_limit, "%d", SOAK_MAX_BODY);
    snprintf(batch_limit, sizeof batch_limit, "%d", SOAK_MAX_BATCH);
    const char *args[] = {"--model", tiny, "--model", ctx, "--db", db, "--retention-rows", "100000",
                          "--max-body-bytes", body_limit, "--max-batch", batch_limit, NULL};
    int port;
    pid_t pid = spawn_anodmd(log, args, &port);
    if (!port) return;
    build_mix();
    /* One request of each kind first, so that what the daemon opens on first use (the
     * readers' view of the WAL) is open before the idle count. */
    {
        http_conn warm;
        hconn_init(&warm, port);
        for (int i = 0; i < n_kinds; i++) {
            response r = hconn_send(&warm, kinds[i].head, kinds[i].body, kinds[i].body_len);
            response_free(&r);
        }
        hconn_close(&warm);
        free(warm.buf);
    }
    sleep_ms(200);
    const int fds_idle = proc_fds(pid);
    volatile int stop = 0;
    soak_client c[CLIENTS];
    pthread_t t[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        c[i] = (soak_client){.port = port, .id = i, .stop = &stop,
                             .lock = PTHREAD_MUTEX_INITIALIZER};
        CHECK(pthread_create(&t[i], NULL, soak_main, &c[i]) == 0);
    }
    if (report)
        fprintf(report, "# anodmd soak: %d clients, %.0f s; every %.0f s: seconds, requests, "
                "requests/s since the last line, RSS kB, open fds, threads, log bytes (db+wal)\n",
                CLIENTS, seconds, period);
    const double t0 = clock_seconds();
    long long last_requests = 0, rss_warm = -1, rss_peak = 0, rss_last = 0;
    int fds_max = 0;
    double last_t = t0;
    for (double next = t0 + period; clock_seconds() - t0 < seconds; next += period) {
        while (clock_seconds() < next && clock_seconds() - t0 < seconds) sleep_ms(50);
        long long requests = 0;
        for (int i = 0; i < CLIENTS; i++) {
            pthread_mutex_lock(&c[i].lock);
            requests += c[i].requests;
            pthread_mutex_unlock(&c[i].lock);
        }
        double now = clock_seconds();
        long rss = proc_rss_kb(pid);
        int fds = proc_fds(pid), threads = threads_of(pid);
        if (rss_warm < 0 && now - t0 >= warmup) rss_warm = rss;
        rss_peak = rss > rss_peak ? rss : rss_peak;
        rss_last = rss;
        fds_max = fds > fds_max ? fds : fds_max;
        if (report)
            fprintf(report, "%7.1f %10lld %8.0f %8ld %4d %3d %11lld\n", now - t0, requests,
                    (double)(requests - last_requests) / (now - last_t), rss, fds, threads,
                    bytes_of(db) + bytes_of(wal));
        if (report) fflush(report);
        last_requests = requests;
        last_t = now;
        if (rss < 0) break;      /* the daemon is gone */
    }
    const double elapsed = clock_seconds() - t0;
    stop = 1;
    long long requests = 0, unexpected = 0, failed = 0, samples = 0, valid = 0;
    for (int i = 0; i < CLIENTS; i++) {
        pthread_join(t[i], NULL);
        requests += c[i].requests;
        unexpected += c[i].unexpected;
        failed += c[i].failed;
        samples += c[i].samples;
        valid += c[i].valid;
        CHECK_MSG(!c[i].first_bad[0], "client %d: %s", i, c[i].first_bad);
    }
    int fds_after = -1;
    for (int waited = 0; waited < 5000 && fds_after != fds_idle; waited += 100) {
        sleep_ms(100);
        fds_after = proc_fds(pid);
    }
    char summary[1024];
    snprintf(summary, sizeof summary,
             "soak: %.0f s, %d clients: %lld requests (%.0f/s), %lld valid (%lld samples "
             "scored, %.0f/s), %lld invalid as expected, %lld unexpected answers, %lld failed "
             "exchanges; RSS %ld kB after warm-up, %lld kB at the end, %lld kB peak; fds %d "
             "idle, %d max under load, %d after", elapsed, CLIENTS, requests,
             (double)requests / elapsed, valid, samples, (double)samples / elapsed,
             requests - valid - unexpected - failed, unexpected, failed, (long)rss_warm,
             rss_last, rss_peak, fds_idle, fds_max, fds_after);
    fprintf(stderr, "    %s\n", summary);
    if (report) fprintf(report, "# %s\n", summary);
    CHECK_MSG(unexpected == 0 && failed == 0 && requests > 0, "%lld unexpected, %lld failed",
              unexpected, failed);
    /* A few seconds (make test) are all warm-up: RSS is only judged on a real soak. */
    if (seconds >= 60)
        CHECK_MSG(rss_warm > 0 && rss_last <= rss_warm + rss_warm / 10 + 8192,
                  "RSS grew from %lld kB after the warm-up to %lld kB", rss_warm, rss_last);
    CHECK_MSG(fds_after == fds_idle, "descriptors: %d before the load, %d after", fds_idle,
              fds_after);
    stop_anodmd(pid);
    sqlite3 *d = log_open_readonly(db);
    long long rows = d ? log_int(d, "SELECT count(*) FROM scores") : -1;
    sqlite3_close(d);
    LOG_INTACT(db, -1);
    if (report) fprintf(report, "# log: %lld rows at the end (retention_rows 100000)\n", rows);
    if (report) fclose(report);
    char *out = slurp(log);
    CHECK_MSG(out && strstr(out, "bye") && !strstr(out, "failed"), "the daemon said:\n%.1500s",
              out ? out : "");
    free(out);
    free_mix();
}
