/* The stream memory across a restart of anodmd (issue 15; docs/STREAM.md, "Across a
 * restart"; daemon/memstore.h). Each test scores a stream through a model with a memory in
 * two parts, restarts anodmd between them (a clean stop, or kill -9 once the first part's
 * last answer came), and checks the second part's d_memory, z_memory and score, to the bit
 * (the log's doubles), against a daemon that saw the same traffic without a restart. A
 * memory that came back even slightly different (a latent missing, another order, another
 * source forgotten) moves some of those numbers. Snapshots are taken every 7 kept samples,
 * so that restarts meet both a snapshot and samples replayed after it. */
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "daemon_harness.h"

#define PATHLEN 600
#define EVERY "7"
enum { N_A = 100, N_B = 60, N = N_A + N_B };

/* The stream: normals, every ninth sample an anomaly (all zeros, so all one latent). */
static float *stream(void) {
    float *x = malloc((size_t)N * DIM * sizeof *x);
    if (!x) {
        check_fail(__FILE__, __LINE__, "out of memory");
        return NULL;
    }
    fresh_samples(x, N, 71, 0);
    for (int i = 8; i < N; i += 9) fresh_samples(x + (size_t)i * DIM, 1, 0, 1);
    return x;
}

typedef struct {
    char db[PATHLEN], log[PATHLEN], spec[PATHLEN + 8];
    pid_t pid;
    int port;
} run;

/* Start anodmd on bundle (as model "mem") with the log NAME.db, snapshots every EVERY
 * keeps, and the extra arguments (NULL-terminated, may be NULL). 0, or -1 (reported). */
static int start(run *d, const char *name, const char *bundle, const char *const *extra) {
    snprintf(d->db, sizeof d->db, "%s/%s.db", test_tmpdir(), name);
    snprintf(d->log, sizeof d->log, "%s/%s_stderr.txt", test_tmpdir(), name);
    snprintf(d->spec, sizeof d->spec, "mem=%s", bundle);
    const char *args[24] = {"--model", d->spec, "--db", d->db, "--memory-snapshot-every", EVERY,
                            "--workers", "2"};
    int n = 8;
    for (; extra && *extra && n < 23; extra++) args[n++] = *extra;
    d->pid = spawn_anodmd(d->log, args, &d->port);
    return d->port ? 0 : -1;
}

/* Start anodmd again on the same log and bundle. */
static int restart(run *d, const char *const *extra) {
    char name[PATHLEN];
    snprintf(name, sizeof name, "%s", strrchr(d->db, '/') + 1);
    name[strlen(name) - 3] = 0;                  /* without ".db" */
    char bundle[PATHLEN];
    snprintf(bundle, sizeof bundle, "%s", d->spec + 4);
    return start(d, name, bundle, extra);
}

static void kill9(run *d) {
    kill(d->pid, SIGKILL);
    waitpid(d->pid, NULL, 0);
    d->pid = 0;
}

/* The source of sample i: none, or from a pattern (see the per-source test). */
typedef const char *(*source_fn)(int i);

/* Samples [from, to) of x, in requests of up to batch samples one after the other, each
 * with the id "s<index of its first sample>" and its first sample's source. 1 when every
 * request was answered 200. */
static int send_part(const run *d, const float *x, int from, int to, int batch, source_fn src) {
    int ok = 1;
    for (int at = from; at < to; at += batch) {
        int n = to - at < batch ? to - at : batch;
        char extra[128];
        int len = snprintf(extra, sizeof extra, ",\"id\":\"s%d\"", at);
        if (src && src(at))
            snprintf(extra + len, sizeof extra - (size_t)len, ",\"source\":\"%s\"", src(at));
        char *body = score_body(x + (size_t)at * DIM, n == 1 ? 0 : n, extra);
        response r = http_request(d->port, "POST", "/v1/models/mem/score", body, "");
        if (r.status != 200) {
            check_fail(__FILE__, __LINE__, "sample %d: status %d: %.300s", at, r.status,
                       r.body ? r.body : "");
            ok = 0;
        }
        response_free(&r);
        free(body);
        if (!ok) break;
    }
    return ok;
}

/* Latents the model's memories hold now (GET /v1/models/mem), -1 if unreadable. */
static int memory_held(const run *d) {
    response r = http_request(d->port, "GET", "/v1/models/mem", NULL, "");
    json_t *mem = json_object_get(json_object_get(r.json, "scoring"), "memory");
    int n = json_is_object(mem) ? (int)jnum(mem, "count") : -1;
    response_free(&r);
    return n;
}

/* The last n rows of the log at path: d_memory, z_memory and score of each, oldest first,
 * into out (3 n doubles). 0, or -1 (reported). */
static int last_terms(const char *path, int n, double *out) {
    sqlite3 *db = log_open_readonly(path);
    sqlite3_stmt *st;
    int got = 0;
    if (!db) return -1;
    if (sqlite3_prepare_v2(db, "SELECT d_memory, z_memory, score FROM (SELECT * FROM scores "
                           "ORDER BY id DESC LIMIT ?1) ORDER BY id", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int(st, 1, n);
        for (; got < n && sqlite3_step(st) == SQLITE_ROW; got++)
            for (int c = 0; c < 3; c++) out[3 * got + c] = sqlite3_column_double(st, c);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    CHECK_MSG(got == n, "%s: %d of %d rows", path, got, n);
    return got == n ? 0 : -1;
}

/* The last n scores in the log got are the last n of want, bit for bit; what differs is
 * reported (the first few). */
static void check_same_scores(const char *want, const char *got, int n, const char *what) {
    double *a = malloc((size_t)n * 3 * sizeof *a), *b = malloc((size_t)n * 3 * sizeof *b);
    if (a && b && last_terms(want, n, a) == 0 && last_terms(got, n, b) == 0) {
        int differ = 0;
        for (int i = 0; i < n; i++) {
            if (!memcmp(a + 3 * i, b + 3 * i, 3 * sizeof *a)) continue;
            if (differ++ < 3)
                check_fail(__FILE__, __LINE__, "%s: sample %d of %d: d_memory %.17g z_memory "
                           "%.17g score %.17g, without a restart %.17g %.17g %.17g", what, i, n,
                           b[3 * i], b[3 * i + 1], b[3 * i + 2], a[3 * i], a[3 * i + 1],
                           a[3 * i + 2]);
        }
        CHECK_MSG(!differ, "%s: %d of %d scores differ", what, differ, n);
    }
    free(a);
    free(b);
}

/* The log at path: its memory journal holds fewer entries than a snapshot's period per
 * memory (start-up replays at most that), and it passes its integrity check. */
static void check_log(const char *path, int memories) {
    sqlite3 *db = log_open_readonly(path);
    if (!db) return;
    long long journal = log_int(db, "SELECT count(*) FROM memory_journal");
    CHECK_MSG(journal >= 0 && journal < (long long)memories * atoi(EVERY), "%lld entries in the "
              "journal of %d memories", journal, memories);
    sqlite3_close(db);
    LOG_INTACT(path, -1);
}

/* Does the daemon's output file hold text? */
static int said(const run *d, const char *text) {
    char *out = slurp(d->log);
    int yes = out && strstr(out, text);
    free(out);
    return yes;
}

static char BUNDLE[PATHLEN];

static int memory_model(void) {
    if (*BUNDLE) return 0;
    snprintf(BUNDLE, sizeof BUNDLE, "%s/memory_restart.anodm", test_tmpdir());
    if (memory_bundle_at(BUNDLE, 0.0) == 0) return 0;
    *BUNDLE = 0;
    return -1;
}

/* The reference: the whole stream (part A in requests of 3, part B of 2) without a
 * restart, in the log NAME.db; 0, or -1. */
static int reference(run *d, const char *name, const float *x) {
    if (start(d, name, BUNDLE, NULL)) return -1;
    int ok = send_part(d, x, 0, N_A, 3, NULL) && send_part(d, x, N_A, N, 2, NULL);
    stop_anodmd(d->pid);
    return ok ? 0 : -1;
}

/* Part A, a restart (kill -9 or a clean stop), part B: the same scores as without the
 * restart. With kill -9 the log also prunes its score rows down to 30 meanwhile (the
 * memory's record is not the score rows, so retention takes nothing from it). */
static void restart_case(const char *name, int kill_it) {
    if (memory_model()) return;
    float *x = stream();
    run ref, d;
    char ref_name[64];
    snprintf(ref_name, sizeof ref_name, "%s_ref", name);
    static const char *const retain[] = {"--retention-rows", "30", NULL};
    if (!x || reference(&ref, ref_name, x) || start(&d, name, BUNDLE, kill_it ? retain : NULL)) {
        free(x);
        return;
    }
    int ok = send_part(&d, x, 0, N_A, 3, NULL);
    int before = memory_held(&d);
    CHECK(before == 50);                         /* full: both parts of it in play */
    if (kill_it) {
        for (int i = 0; i < 300 && log_rows_at(d.db) > 30; i++) sleep_ms(10);
        CHECK(log_rows_at(d.db) <= 30);
        kill9(&d);
        sqlite3 *db = log_open_readonly(d.db);
        /* what the restart must replay after the last snapshot */
        CHECK(db && log_int(db, "SELECT count(*) FROM memory_journal") > 0);
        sqlite3_close(db);
    } else {
        stop_anodmd(d.pid);
        sqlite3 *db = log_open_readonly(d.db);
        /* a clean stop snapshots the memory: nothing to replay */
        CHECK(db && log_int(db, "SELECT count(*) FROM memory_journal") == 0);
        sqlite3_close(db);
    }
    check_log(d.db, 1);
    if (ok && restart(&d, NULL) == 0) {
        CHECK(memory_held(&d) == before);
        CHECK_MSG(said(&d, "stream memory restored from the log: 50 latents"), "no restore "
                  "message in %s", d.log);
        ok = send_part(&d, x, N_A, N, 2, NULL);
        stop_anodmd(d.pid);
        if (ok) check_same_scores(ref.db, d.db, N_B, name);
        check_log(d.db, 1);
    }
    free(x);
}

TEST(daemon_memory_survives_a_clean_stop) { restart_case("memory_clean", 0); }

TEST(daemon_memory_survives_kill_9) { restart_case("memory_kill9", 1); }

/* ---- concurrent clients: the memory follows the order the log commits ---------------- */

typedef struct {
    const run *d;
    const float *x;
    int first, step;             /* samples first, first + step, ... of part A */
    int failed;
} client_job;

static void *client(void *arg) {
    client_job *j = arg;
    http_conn c;
    hconn_init(&c, j->d->port);
    for (int i = j->first; i < N_A; i += j->step) {
        char extra[32], head[256];
        snprintf(extra, sizeof extra, ",\"id\":\"s%d\"", i);
        char *body = score_body(j->x + (size_t)i * DIM, 0, extra);
        snprintf(head, sizeof head, "POST /v1/models/mem/score HTTP/1.1\r\nHost: t\r\n"
                 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                 body ? strlen(body) : 0);
        response r = body ? hconn_send(&c, head, body, strlen(body)) : (response){0};
        j->failed += r.status != 200;
        response_free(&r);
        free(body);
    }
    hconn_close(&c);
    free(c.buf);
    return NULL;
}

/* Part A from four clients at once (batched by the daemon as they come), kill -9, part B:
 * the same scores as a daemon that saw part A one sample at a time in the order the first
 * one logged it, then part B. So the memory that comes back is the one the committed
 * rows' order describes, whatever the batching and the concurrency. */
TEST(daemon_memory_restart_follows_the_log_order) {
    if (memory_model()) return;
    float *x = stream();
    run d, ref;
    static const char *const wide[] = {"--batch-window-us", "3000", NULL};
    if (!x || start(&d, "memory_concurrent", BUNDLE, wide)) {
        free(x);
        return;
    }
    client_job jobs[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (client_job){.d = &d, .x = x, .first = i, .step = 4};
        CHECK(pthread_create(&t[i], NULL, client, &jobs[i]) == 0);
    }
    int failed = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        failed += jobs[i].failed;
    }
    CHECK_MSG(!failed, "%d requests failed", failed);
    kill9(&d);
    /* The order the log holds part A in. */
    int order[N_A], n = 0;
    sqlite3 *db = log_open_readonly(d.db);
    sqlite3_stmt *st;
    if (db && sqlite3_prepare_v2(db, "SELECT request_id FROM scores ORDER BY id", -1, &st,
                                 NULL) == SQLITE_OK) {
        while (n < N_A && sqlite3_step(st) == SQLITE_ROW)
            order[n++] = atoi((const char *)sqlite3_column_text(st, 0) + 1);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    CHECK_MSG(n == N_A, "%d of %d rows", n, N_A);
    int ok = n == N_A && start(&ref, "memory_concurrent_ref", BUNDLE, NULL) == 0;
    for (int i = 0; ok && i < N_A; i++) ok = send_part(&ref, x, order[i], order[i] + 1, 1, NULL);
    ok = ok && send_part(&ref, x, N_A, N, 2, NULL);
    if (ref.port) stop_anodmd(ref.pid);
    if (ok && restart(&d, wide) == 0) {
        ok = send_part(&d, x, N_A, N, 2, NULL);
        stop_anodmd(d.pid);
        if (ok) check_same_scores(ref.db, d.db, N_B, "concurrent part A, kill -9");
    }
    free(x);
}

/* ---- one memory per source ------------------------------------------------------------ */

/* Sources for --memory-sources 2: part A cycles through a, b, a, c, b (so memories are
 * forgotten and started again all along) and ends having used a last, b before it; part B
 * starts with a new source, d, which must make the restarted daemon forget b (the least
 * recently used), not a, whose samples follow. */
static const char *source_of(int i) {
    static const char *const A[] = {"a", "b", "a", "c", "b"};
    static const char *const B[] = {"a", "a", "b", "d", "c"};
    if (i < N_A - 2) return A[i % 5];
    if (i < N_A) return i == N_A - 2 ? "b" : "a";
    if (i == N_A) return "d";
    return B[(i - N_A) % 5];
}

TEST(daemon_memory_per_source_survives_kill_9) {
    if (memory_model()) return;
    float *x = stream();
    run d, ref;
    static const char *const sources[] = {"--memory-sources", "2", NULL};
    if (!x || start(&ref, "memory_sources_ref", BUNDLE, sources)) {
        free(x);
        return;
    }
    int ok = send_part(&ref, x, 0, N, 1, source_of);
    stop_anodmd(ref.pid);
    if (!ok || start(&d, "memory_sources", BUNDLE, sources)) {
        free(x);
        return;
    }
    ok = send_part(&d, x, 0, N_A, 1, source_of);
    int before = memory_held(&d);
    kill9(&d);
    check_log(d.db, 2);
    if (ok && restart(&d, sources) == 0) {
        CHECK(before > 0 && memory_held(&d) == before);
        CHECK(said(&d, "stream memories restored from the log"));
        ok = send_part(&d, x, N_A, N, 1, source_of);
        stop_anodmd(d.pid);
        if (ok) check_same_scores(ref.db, d.db, N_B, "per source, kill -9");
    }
    /* A restart with one memory per model cannot use memories per source: afresh. */
    if (ok && restart(&d, NULL) == 0) {
        CHECK(memory_held(&d) == 0);
        CHECK(said(&d, "of another version of the model, scope"));
        stop_anodmd(d.pid);
    }
    free(x);
}

/* ---- reset, new versions, damage ------------------------------------------------------ */

/* A reset is kept: kill -9 right after it brings back an empty memory; what followed it
 * comes back after another kill -9, and scores on as a daemon that saw part A, the reset
 * and part B without a restart. */
TEST(daemon_memory_reset_survives_kill_9) {
    if (memory_model()) return;
    float *x = stream();
    run d, ref;
    if (!x || start(&ref, "memory_reset_ref", BUNDLE, NULL)) {
        free(x);
        return;
    }
    int ok = send_part(&ref, x, 0, N_A, 3, NULL);
    response r = http_request(ref.port, "POST", "/v1/models/mem/memory/reset", "{}", "");
    EXPECT_STATUS(r, 200, NULL);
    response_free(&r);
    ok = ok && send_part(&ref, x, N_A, N_A + 30, 2, NULL);
    int want = memory_held(&ref);
    ok = ok && send_part(&ref, x, N_A + 30, N, 2, NULL);
    stop_anodmd(ref.pid);
    if (!ok || start(&d, "memory_reset", BUNDLE, NULL)) {
        free(x);
        return;
    }
    ok = send_part(&d, x, 0, N_A, 3, NULL);
    r = http_request(d.port, "POST", "/v1/models/mem/memory/reset", "{}", "");
    EXPECT_STATUS(r, 200, NULL);
    CHECK(jnum(r.json, "forgotten") == 50);
    response_free(&r);
    kill9(&d);
    if (!ok || restart(&d, NULL)) {
        free(x);
        return;
    }
    CHECK(memory_held(&d) == 0);
    ok = send_part(&d, x, N_A, N_A + 30, 2, NULL);
    CHECK(memory_held(&d) == want);
    kill9(&d);
    if (ok && restart(&d, NULL) == 0) {
        CHECK(memory_held(&d) == want);
        ok = send_part(&d, x, N_A + 30, N, 2, NULL);
        stop_anodmd(d.pid);
        if (ok) check_same_scores(ref.db, d.db, N_B - 30, "reset, kill -9");
    }
    free(x);
}

/* Another version of the model starts afresh, whether it comes with a restart or with a
 * reload (SIGHUP): its scores are those of a daemon that only ever saw it. And the
 * memory of the new version is then kept across a kill -9 like any. */
TEST(daemon_memory_new_version_starts_afresh) {
    if (memory_model()) return;
    char v2[PATHLEN], path[PATHLEN];
    snprintf(v2, sizeof v2, "%s/memory_v2.anodm", test_tmpdir());
    snprintf(path, sizeof path, "%s/memory_deployed.anodm", test_tmpdir());
    float *x = stream();
    run d, ref;
    if (!x || memory_bundle_at(v2, 1e-3) || install_file(BUNDLE, path) ||
        start(&ref, "memory_version_ref", v2, NULL)) {
        free(x);
        return;
    }
    /* The reference: version 2 only, part B then the first 20 of part A. */
    int ok = send_part(&ref, x, N_A, N, 2, NULL) && send_part(&ref, x, 0, 20, 2, NULL);
    stop_anodmd(ref.pid);
    /* A restart onto a new file. */
    if (!ok || start(&d, "memory_version", path, NULL)) {
        free(x);
        return;
    }
    ok = send_part(&d, x, 0, N_A, 3, NULL);
    stop_anodmd(d.pid);
    if (!ok || install_file(v2, path) || restart(&d, NULL)) {
        free(x);
        return;
    }
    CHECK(memory_held(&d) == 0);
    CHECK(said(&d, "of another version of the model"));
    ok = send_part(&d, x, N_A, N, 2, NULL) && send_part(&d, x, 0, 20, 2, NULL);
    stop_anodmd(d.pid);
    if (ok) check_same_scores(ref.db, d.db, N_B + 20, "new version at a restart");
    /* A reload onto a new file, then kill -9. */
    if (!ok || install_file(BUNDLE, path) || start(&d, "memory_reload", path, NULL)) {
        free(x);
        return;
    }
    ok = send_part(&d, x, 0, N_A, 3, NULL) && install_file(v2, path) == 0;
    kill(d.pid, SIGHUP);
    int fresh = 0;
    for (int i = 0; i < 200 && !fresh; i++) {
        sleep_ms(20);
        fresh = said(&d, "reload done") && memory_held(&d) == 0;
    }
    CHECK_MSG(fresh, "the memory was not started afresh by the reload");
    ok = ok && fresh && send_part(&d, x, N_A, N, 2, NULL);
    int before = memory_held(&d);
    kill9(&d);
    if (ok && restart(&d, NULL) == 0) {
        CHECK(memory_held(&d) == before);
        ok = send_part(&d, x, 0, 20, 2, NULL);
        stop_anodmd(d.pid);
        if (ok) check_same_scores(ref.db, d.db, N_B + 20, "new version by reload, kill -9");
    }
    check_log(d.db, 1);
    free(x);
}

/* Damage to the memory's record (a snapshot cut short, a journal entry of the wrong
 * size) is reported and the memory starts afresh; anodmd serves on. */
TEST(daemon_memory_damaged_record_starts_afresh) {
    if (memory_model()) return;
    float *x = stream();
    run d;
    static const char *const DAMAGE[] = {
        "UPDATE memories SET state = substr(state, 1, length(state) - 1)",
        "UPDATE memory_journal SET latent = x'00' WHERE seq = (SELECT max(seq) FROM "
        "memory_journal)",
    };
    for (int k = 0; k < 2 && x; k++) {
        if (start(&d, k ? "memory_damaged_journal" : "memory_damaged_state", BUNDLE, NULL)) break;
        int ok = send_part(&d, x, 0, N_A, 3, NULL);
        kill9(&d);
        sqlite3 *db = NULL;
        CHECK(sqlite3_open(d.db, &db) == SQLITE_OK &&
              sqlite3_exec(db, DAMAGE[k], NULL, NULL, NULL) == SQLITE_OK &&
              sqlite3_changes(db) == 1);
        sqlite3_close(db);
        if (!ok || restart(&d, NULL)) break;
        CHECK(memory_held(&d) == 0);
        CHECK_MSG(said(&d, "in the log is unusable"), "no message in %s", d.log);
        CHECK(send_part(&d, x, N_A, N_A + 10, 2, NULL));
        CHECK(memory_held(&d) == 10);
        stop_anodmd(d.pid);
        check_log(d.db, 1);
    }
    free(x);
}

/* memory_snapshot_every is one of config.c's settings, checked within 1..10^6. */
TEST(daemon_memory_snapshot_setting) {
    if (memory_model()) return;
    EXPECT_CLI(0, "memory_snapshot_every = 1000", "--check-config --model %s", BUNDLE);
    EXPECT_CLI(0, "memory_snapshot_every = 5", "--check-config --model %s "
               "--memory-snapshot-every 5", BUNDLE);
    EXPECT_CLI(2, "memory_snapshot_every wants an integer in 1..1000000", "--check-config "
               "--model %s --memory-snapshot-every 0", BUNDLE);
    EXPECT_CLI(2, "memory_snapshot_every wants an integer", "--check-config --model %s "
               "--memory-snapshot-every 1000001", BUNDLE);
}
