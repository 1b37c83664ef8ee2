/* anodmd when things go wrong around it (issue 8, section 3), as a running process.
 *
 * - kill -9 under load, round after round (ANODM_CRASH_ROUNDS, 3 by default; `make
 *   faults` runs 100): after each restart, on the same port, every request a client got a
 *   2xx for is in the log under its caller id with the log ids it was given, the log
 *   passes PRAGMA integrity_check, and the daemon starts cleanly.
 * - A full disk (a small tmpfs, mounted here: the tests run as root; where mounting is not
 *   permitted that test is reported as skipped) and a file size limit (RLIMIT_FSIZE set on
 *   the running daemon with prlimit, which needs no mount): scores are refused with 503
 *   log_unavailable and nothing of them is logged, /readyz turns 503 and /healthz stays
 *   200, and once there is room again readiness comes back by itself (no score needs to
 *   arrive first) and scores are taken again.
 * - A log that cannot be opened for writing at start (a directory, a missing directory,
 *   not a database, a newer schema; and, in a test of its own that is skipped where a
 *   tmpfs cannot be mounted, a read-only mount): a clear error, exit status 1.
 * - SIGHUP reloads under load: no failed request, and every answer and its log rows name
 *   one of the two bundles, never a mix.
 * - A corrupt bundle at start: a clear error naming the model, exit status 1, and no log
 *   created. */
#define _GNU_SOURCE              /* prlimit */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "daemon_harness.h"

/* ------------------------------------------------------------------ acknowledged scores */

/* One request answered with 200: its caller id, its samples' log ids, the version. */
typedef struct {
    char id[48];
    int n;
    long long log_id[4];
    char version[65];
} acked;

typedef struct {
    acked *a;
    int n, cap;
    pthread_mutex_t lock;
} acked_list;

static void acked_add(acked_list *l, const acked *a) {
    pthread_mutex_lock(&l->lock);
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 1024;
        acked *b = realloc(l->a, (size_t)cap * sizeof *b);
        if (!b) {
            pthread_mutex_unlock(&l->lock);
            check_fail(__FILE__, __LINE__, "out of memory");
            return;
        }
        l->a = b;
        l->cap = cap;
    }
    l->a[l->n++] = *a;
    pthread_mutex_unlock(&l->lock);
}

/* The answer to a score request for n samples with caller id as an acked record (its
 * results, log ids and versions checked to agree); 0, or -1 when it does not hold up. */
static int to_acked(const response *r, const char *id, int n, acked *out) {
    json_t *res = json_object_get(r->json, "results");
    const char *version = jstr(r->json, "version");
    if (!version || (int)json_array_size(res) != n || n > 4) return -1;
    snprintf(out->id, sizeof out->id, "%s", id);
    snprintf(out->version, sizeof out->version, "%s", version);
    out->n = n;
    for (int i = 0; i < n; i++) {
        json_t *one = json_array_get(res, (size_t)i);
        const char *v = jstr(one, "version"), *rid = jstr(one, "id");
        if (!v || strcmp(v, version) || !rid || strcmp(rid, id)) return -1;   /* mixed */
        out->log_id[i] = (long long)jnum(one, "log_id");
    }
    return 0;
}

/* Every acked request is in the log at path: each of its log ids is a row (looked up by
 * primary key, so a check costs little however long the log) with its caller id, its
 * position in the batch and its version (and the model named when model is not NULL).
 * The number of requests missing or wrong. */
static int check_acked(const char *path, const acked_list *l, const char *model) {
    sqlite3 *db = log_open_readonly(path);
    if (!db) return l->n;
    sqlite3_stmt *st;
    int missing = 0;
    if (sqlite3_prepare_v2(db, "SELECT request_id, idx, version, model FROM scores WHERE id = ?1",
                           -1, &st, NULL) != SQLITE_OK) {
        check_fail(__FILE__, __LINE__, "%s", sqlite3_errmsg(db));
        sqlite3_close(db);
        return l->n;
    }
    for (int i = 0; i < l->n; i++) {
        const acked *a = &l->a[i];
        int ok = 1;
        for (int k = 0; k < a->n && ok; k++) {
            sqlite3_reset(st);
            sqlite3_bind_int64(st, 1, a->log_id[k]);
            ok = sqlite3_step(st) == SQLITE_ROW;
            const char *rid = ok ? (const char *)sqlite3_column_text(st, 0) : NULL;
            const char *v = ok ? (const char *)sqlite3_column_text(st, 2) : NULL;
            const char *m = ok ? (const char *)sqlite3_column_text(st, 3) : NULL;
            ok = ok && rid && !strcmp(rid, a->id) && sqlite3_column_int(st, 1) == k && v &&
                 !strcmp(v, a->version) && (!model || (m && !strcmp(m, model)));
        }
        if (!ok && missing++ < 5)
            check_fail(__FILE__, __LINE__, "request %s (%d samples, log id %lld...): not in the "
                       "log as acknowledged", a->id, a->n, a->log_id[0]);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return missing;
}

/* A caller id is not in the log at path. */
static int absent(const char *path, const char *id) {
    sqlite3 *db = log_open_readonly(path);
    if (!db) return 0;
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM scores WHERE request_id = '%s'", id);
    long long n = log_int(db, sql);
    sqlite3_close(db);
    return n == 0;
}

/* ------------------------------------------------------------------ load */

/* A client scoring until told to stop: 1-4 samples a request, caller ids
 * "<prefix>-<client>-<seq>", on path (or alternating tiny and ctx when path is NULL). */
typedef struct {
    int port, client;
    const char *prefix, *path;
    acked_list *acks;
    volatile int *stop;
    int sent, ok, failed, bad;   /* failed: no 200; bad: a 200 that did not hold up */
    int must_succeed;            /* record every non-200 as a failure */
    char why[512];
} load_client;

static void *load_main(void *arg) {
    load_client *c = arg;
    float x[4 * DIM];
    for (int seq = 0; !*c->stop; seq++) {
        int n = 1 + seq % 4;
        char id[48], extra[96];
        snprintf(id, sizeof id, "%s-%d-%d", c->prefix, c->client, seq);
        snprintf(extra, sizeof extra, ",\"id\":\"%s\"", id);
        fresh_samples(x, n, 1000003u * (uint64_t)c->client + (uint64_t)seq, seq % 7 == 3);
        char *body = score_body(x, n, extra);
        const char *path = c->path ? c->path : seq % 2 ? "/v1/models/ctx/score" : "/v1/score";
        response r = http_request(c->port, "POST", path, body, "");
        free(body);
        c->sent++;
        acked a;
        if (r.status == 200 && to_acked(&r, id, n, &a) == 0) {
            acked_add(c->acks, &a);
            c->ok++;
        } else if (r.status == 200) {
            c->bad++;
            snprintf(c->why, sizeof c->why, "%.500s", r.raw);
        } else {
            c->failed++;
            if (c->must_succeed && !c->why[0])
                snprintf(c->why, sizeof c->why, "%d: %.480s", r.status, r.raw ? r.raw : "");
        }
        response_free(&r);
    }
    return NULL;
}

/* ------------------------------------------------------------------ kill -9 */

static int env_int(const char *name, int fallback) {
    const char *v = getenv(name);
    return v && atoi(v) > 0 ? atoi(v) : fallback;
}

TEST(daemon_fault_kill9) {
    const test_bundles *b = test_bundles_get();
    if (!b) return;
    enum { CLIENTS = 4 };
    const int rounds = env_int("ANODM_CRASH_ROUNDS", 3);
    char db[512], log[600], tiny[600], ctx[600], port_s[16] = "0";
    snprintf(db, sizeof db, "%s/crash.db", test_tmpdir());
    snprintf(tiny, sizeof tiny, "tiny=%s", b->tiny);
    snprintf(ctx, sizeof ctx, "ctx=%s", b->ctx);
    acked_list acks = {.lock = PTHREAD_MUTEX_INITIALIZER};
    unsigned seed = 20261128u;
    int port = 0, killed = 0, total_missing = 0;
    long long unacked_rows = 0;
    snprintf(log, sizeof log, "%s/crash_stderr_0.txt", test_tmpdir());
    const char *args[] = {"--model", tiny, "--model", ctx, "--db", db, "--threads", "2",
                          "--workers", "2", "--batch-window-us", "1000", "--port", port_s, NULL};
    pid_t pid = spawn_anodmd(log, args, &port);
    for (int round = 0; port && round < rounds; round++) {
        volatile int stop = 0;
        load_client c[CLIENTS];
        pthread_t t[CLIENTS];
        char prefix[32];
        snprintf(prefix, sizeof prefix, "k%d", round);
        for (int i = 0; i < CLIENTS; i++) {
            c[i] = (load_client){.port = port, .client = i, .prefix = prefix, .acks = &acks,
                                 .stop = &stop};
            CHECK(pthread_create(&t[i], NULL, load_main, &c[i]) == 0);
        }
        sleep_ms(150 + (long)(rand_r(&seed) % 600));   /* a random moment under load */
        CHECK(kill(pid, SIGKILL) == 0);
        int status;
        CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status));
        killed++;
        sleep_ms(50);            /* requests in flight run into the closed port */
        stop = 1;
        for (int i = 0; i < CLIENTS; i++) pthread_join(t[i], NULL);
        for (int i = 0; i < CLIENTS; i++)
            CHECK_MSG(c[i].bad == 0, "round %d: a 200 that does not hold up: %s", round, c[i].why);

        /* Restart on the same port, on the log as the kill left it. */
        snprintf(port_s, sizeof port_s, "%d", port);
        snprintf(log, sizeof log, "%s/crash_stderr_%d.txt", test_tmpdir(), round + 1);
        int again = 0;
        pid = spawn_anodmd(log, args, &again);
        CHECK_MSG(again == port, "round %d: restarted on port %d, want %d", round, again, port);
        if (again != port) break;
        char *out = slurp(log);
        CHECK_MSG(out && !strstr(out, "failed") && !strstr(out, "error"),
                  "round %d: the restart says:\n%.1000s", round, out ? out : "");
        free(out);
        response r = http_request(port, "GET", "/readyz", NULL, "");
        EXPECT_STATUS(r, 200, NULL);
        response_free(&r);
        if (!LOG_INTACT(db, -1)) break;
        total_missing += check_acked(db, &acks, NULL);
        sqlite3 *d = log_open_readonly(db);
        long long rows = d ? log_int(d, "SELECT count(*) FROM scores") : -1;
        sqlite3_close(d);
        long long acked_rows = 0;
        for (int i = 0; i < acks.n; i++) acked_rows += acks.a[i].n;
        unacked_rows = rows - acked_rows;
        CHECK_MSG(rows >= acked_rows, "%lld rows, %lld acknowledged", rows, acked_rows);
    }
    stop_anodmd(pid);
    LOG_INTACT(db, -1);
    CHECK_MSG(total_missing == 0, "%d acknowledged requests missing", total_missing);
    long long acked_rows = 0;
    for (int i = 0; i < acks.n; i++) acked_rows += acks.a[i].n;
    CHECK_MSG(acks.n > 0, "no request was acknowledged");
    fprintf(stderr, "    kill -9: %d rounds, %d acknowledged requests (%lld rows); missing "
            "after a restart: %d; rows committed but not acknowledged: %lld\n", killed, acks.n,
            acked_rows, total_missing, unacked_rows);
    free(acks.a);
}

/* ------------------------------------------------------------------ full disk, size limit */

/* Score one request of 16 samples with caller id; the response. */
static response score_16(int port, const char *id) {
    float x[16 * DIM];
    fresh_samples(x, 16, (uint64_t)strlen(id) * 7919u + (uint64_t)id[strlen(id) - 1], 0);
    char extra[96];
    snprintf(extra, sizeof extra, ",\"id\":\"%s\"", id);
    char *body = score_body(x, 16, extra);
    response r = http_request(port, "POST", "/v1/score", body, "");
    free(body);
    return r;
}

/* Wait up to ms for GET /readyz to answer want; 1 when it did. */
static int ready_becomes(int port, int want, long ms) {
    for (long waited = 0;; waited += 100) {
        response r = http_request(port, "GET", "/readyz", NULL, "");
        int got = r.status;
        response_free(&r);
        if (got == want) return 1;
        if (waited >= ms) return 0;
        sleep_ms(100);
    }
}

/* The full-disk scenario against the daemon pid on port with its log at db: fill()
 * takes the room away, refill() gives it back. */
typedef struct {
    const char *name;
    int (*fill)(void *ctx);
    void (*refill)(void *ctx);
    void *ctx;
} room;

static void no_room_scenario(pid_t pid, int port, const char *db, const char *log, room *rm) {
    acked_list acks = {.lock = PTHREAD_MUTEX_INITIALIZER};
    char id[48];
    int seq = 0;
    for (; seq < 3; seq++) {     /* scores before: taken */
        snprintf(id, sizeof id, "%s-before-%d", rm->name, seq);
        response r = score_16(port, id);
        EXPECT_STATUS(r, 200, NULL);
        acked a;
        if (r.status == 200 && to_acked(&r, id, 16, &a) == 0) acked_add(&acks, &a);
        response_free(&r);
    }
    if (rm->fill(rm->ctx)) {
        check_fail(__FILE__, __LINE__, "%s: cannot take the room away", rm->name);
        return;
    }
    /* Scores now: refused with 503 log_unavailable once the log needs room it cannot get
     * (a commit that still fits in pages the log already has may go through). */
    char refused[48] = "";
    for (int i = 0; i < 200 && !refused[0]; i++, seq++) {
        snprintf(id, sizeof id, "%s-full-%d", rm->name, seq);
        response r = score_16(port, id);
        acked a;
        if (r.status == 200 && to_acked(&r, id, 16, &a) == 0) acked_add(&acks, &a);
        else if (r.status == 503) snprintf(refused, sizeof refused, "%s", id);
        if (r.status != 200) EXPECT_STATUS(r, 503, "log_unavailable");
        response_free(&r);
    }
    CHECK_MSG(refused[0], "%s: 200 scores accepted with no room for the log", rm->name);
    response r = http_request(port, "GET", "/readyz", NULL, "");
    CHECK_MSG(r.status == 503 && json_is_false(json_object_get(r.json, "ready")) &&
              jstr(r.json, "log") && strcmp(jstr(r.json, "log"), "ok"),
              "%s: /readyz with no room:\n%.500s", rm->name, r.raw ? r.raw : "(no response)");
    response_free(&r);
    r = http_request(port, "GET", "/healthz", NULL, "");
    EXPECT_STATUS(r, 200, NULL);
    response_free(&r);
    r = http_request(port, "GET", "/v1/scores?limit=5", NULL, "");   /* reads still work */
    EXPECT_STATUS(r, 200, NULL);
    response_free(&r);
    CHECK(kill(pid, 0) == 0);

    /* Room again: ready by itself, without a score to prove it, then scores are taken. */
    rm->refill(rm->ctx);
    CHECK_MSG(ready_becomes(port, 200, under_valgrind() ? 60000 : 10000),
              "%s: not ready again with room for the log", rm->name);
    for (int i = 0; i < 3; i++, seq++) {
        snprintf(id, sizeof id, "%s-after-%d", rm->name, seq);
        r = score_16(port, id);
        EXPECT_STATUS(r, 200, NULL);
        acked a;
        if (r.status == 200 && to_acked(&r, id, 16, &a) == 0) acked_add(&acks, &a);
        response_free(&r);
    }
    stop_anodmd(pid);
    LOG_INTACT(db, -1);
    CHECK(check_acked(db, &acks, "tiny") == 0);
    if (refused[0]) CHECK_MSG(absent(db, refused), "%s: a refused score is in the log", refused);
    char *out = slurp(log);
    CHECK_MSG(out && strstr(out, "log write failed") && strstr(out, "log writable again") &&
              !strstr(out, "Sanitizer"), "%s: the daemon said:\n%.1500s", rm->name,
              out ? out : "");
    free(out);
    free(acks.a);
}

typedef struct {
    char dir[512], filler[600];
} tmpfs_room;

/* Fill the file system with a file until it is full. */
static int tmpfs_fill(void *ctx) {
    tmpfs_room *t = ctx;
    int fd = open(t->filler, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return -1;
    static char block[65536];
    ssize_t n;
    while ((n = write(fd, block, sizeof block)) > 0) {}
    for (int i = 0; i < 16 && write(fd, block, 512) > 0; i++) {}   /* the last partial room */
    int full = errno == ENOSPC;
    close(fd);
    return full ? 0 : -1;
}

static void tmpfs_refill(void *ctx) {
    tmpfs_room *t = ctx;
    CHECK(unlink(t->filler) == 0);
}

/* Mount a tmpfs of size at dir; 0, or -1 (errno EPERM where not permitted). */
static int mount_tmpfs(const char *dir, const char *options) {
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) return -1;
    return mount("tmpfs", dir, "tmpfs", 0, options);
}

static const char *mount_note(void) {
    return "mounting a tmpfs is not permitted here (not root, or no CAP_SYS_ADMIN)";
}

/* The log on a small tmpfs that fills up. */
TEST(daemon_fault_disk_full) {
    const test_bundles *b = test_bundles_get();
    if (!b) return;
    tmpfs_room t;
    snprintf(t.dir, sizeof t.dir, "%s/smallfs", test_tmpdir());
    snprintf(t.filler, sizeof t.filler, "%s/filler", t.dir);
    if (mount_tmpfs(t.dir, "size=2m,mode=0700"))
        SKIP("%s (%s); daemon_fault_file_size_limit covers a log that cannot grow",
             mount_note(), strerror(errno));
    char db[600], log[600], tiny[600];
    snprintf(db, sizeof db, "%s/scores.db", t.dir);
    snprintf(log, sizeof log, "%s/full_stderr.txt", test_tmpdir());
    snprintf(tiny, sizeof tiny, "tiny=%s", b->tiny);
    const char *args[] = {"--model", tiny, "--db", db, "--workers", "1", NULL};
    int port;
    pid_t pid = spawn_anodmd(log, args, &port);
    if (port) {
        room rm = {.name = "tmpfs", .fill = tmpfs_fill, .refill = tmpfs_refill, .ctx = &t};
        no_room_scenario(pid, port, db, log, &rm);
    } else if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    CHECK_MSG(umount(t.dir) == 0, "umount %s: %s", t.dir, strerror(errno));
}

typedef struct {
    pid_t pid;
    char db[600];
} fsize_room;

static long long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : 0;
}

/* No file of the daemon may grow past its log's present size. */
static int fsize_fill(void *ctx) {
    fsize_room *f = ctx;
    char wal[640];
    snprintf(wal, sizeof wal, "%s-wal", f->db);
    long long size = file_size(wal) > file_size(f->db) ? file_size(wal) : file_size(f->db);
    struct rlimit lim = {.rlim_cur = (rlim_t)size, .rlim_max = RLIM_INFINITY};
    return prlimit(f->pid, RLIMIT_FSIZE, &lim, NULL);
}

static void fsize_refill(void *ctx) {
    fsize_room *f = ctx;
    struct rlimit lim = {.rlim_cur = RLIM_INFINITY, .rlim_max = RLIM_INFINITY};
    CHECK(prlimit(f->pid, RLIMIT_FSIZE, &lim, NULL) == 0);
}

/* The log's files may not grow (RLIMIT_FSIZE, set on the running daemon): SIGXFSZ must
 * not kill it, and writes past the limit fail like a full disk. */
TEST(daemon_fault_file_size_limit) {
    const test_bundles *b = test_bundles_get();
    if (!b) return;
    fsize_room f;
    char log[600], tiny[600];
    snprintf(f.db, sizeof f.db, "%s/fsize.db", test_tmpdir());
    snprintf(log, sizeof log, "%s/fsize_stderr.txt", test_tmpdir());
    snprintf(tiny, sizeof tiny, "tiny=%s", b->tiny);
    const char *args[] = {"--model", tiny, "--db", f.db, "--workers", "1", NULL};
    int port;
    f.pid = spawn_anodmd(log, args, &port);
    if (!port) return;
    room rm = {.name = "fsize", .fill = fsize_fill, .refill = fsize_refill, .ctx = &f};
    no_room_scenario(f.pid, port, f.db, log, &rm);
}

/* ------------------------------------------------------------------ log unusable at start */

/* anodmd with its log at db exits 1 within seconds, saying want, and never listens. */
static void expect_no_start_(const char *file, int line, const char *db, const char *want) {
    const test_bundles *b = test_bundles_get();
    if (!b) return;
    char log[600], tiny[600];
    snprintf(log, sizeof log, "%s/nostart_stderr.txt", test_tmpdir());
    snprintf(tiny, sizeof tiny, "tiny=%s", b->tiny);
    const char *args[] = {"--model", tiny, "--db", db, "--port", "0", NULL};
    int rc = run_anodmd_argv(log, args, 15000);
    char *out = slurp(log);
    if (rc != 1 || !out || !strstr(out, want) || strstr(out, "listening on"))
        check_fail(file, line, "log %s: exit %d, want 1 and '%s' in:\n%.1000s", db, rc, want,
                   out ? out : "");
    free(out);
}
#define EXPECT_NO_START(db, want) expect_no_start_(__FILE__, __LINE__, (db), (want))

TEST(daemon_fault_log_unusable_at_start) {
    if (!test_bundles_get()) return;
    char path[700];
    snprintf(path, sizeof path, "%s/no/such/dir/scores.db", test_tmpdir());
    EXPECT_NO_START(path, "unable to open database file");
    snprintf(path, sizeof path, "%s/a_directory.db", test_tmpdir());
    CHECK(mkdir(path, 0700) == 0);
    EXPECT_NO_START(path, "a_directory.db");
    snprintf(path, sizeof path, "%s/not_a_database.db", test_tmpdir());
    FILE *f = fopen(path, "wb");
    if (f) {
        for (int i = 0; i < 200; i++) fputs("this is not an SQLite database\n", f);
        fclose(f);
    }
    EXPECT_NO_START(path, "file is not a database");
    snprintf(path, sizeof path, "%s/newer.db", test_tmpdir());
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK &&
          sqlite3_exec(db, "CREATE TABLE scores (id INTEGER PRIMARY KEY); PRAGMA user_version = 99",
                       NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    EXPECT_NO_START(path, "log schema version 99");
}

/* A read-only file system: as root, file modes do not stop a write; a mount does. Its own
 * test, so that where no tmpfs can be mounted the skip is reported for these cases alone
 * and the cases above still count as passed. */
TEST(daemon_fault_log_read_only_at_start) {
    if (!test_bundles_get()) return;
    char path[700], dir[600];
    sqlite3 *db = NULL;
    snprintf(dir, sizeof dir, "%s/rofs", test_tmpdir());
    if (mount_tmpfs(dir, "size=1m,mode=0700")) SKIP("%s (%s)", mount_note(), strerror(errno));
    snprintf(path, sizeof path, "%s/scores.db", dir);
    CHECK(sqlite3_open(path, &db) == SQLITE_OK &&
          sqlite3_exec(db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    CHECK_MSG(mount(NULL, dir, NULL, MS_REMOUNT | MS_RDONLY, NULL) == 0, "remount: %s",
              strerror(errno));
    EXPECT_NO_START(path, "rofs/scores.db");
    snprintf(path, sizeof path, "%s/new.db", dir);
    EXPECT_NO_START(path, "rofs/new.db");
    CHECK_MSG(umount(dir) == 0, "umount %s: %s", dir, strerror(errno));
}

/* ------------------------------------------------------------------ reload under load */

/* Count of want in the file at path. */
static int count_in(const char *path, const char *want) {
    char *out = slurp(path);
    int n = 0;
    for (const char *at = out; at && (at = strstr(at, want)); at++) n++;
    free(out);
    return n;
}

TEST(daemon_fault_reload_under_load) {
    const test_bundles *b = test_bundles_get();
    if (!b) return;
    enum { CLIENTS = 4, RELOADS = 8 };
    char db[600], log[600], swap_path[600], swap[700];
    snprintf(db, sizeof db, "%s/reload.db", test_tmpdir());
    snprintf(log, sizeof log, "%s/reload_stderr.txt", test_tmpdir());
    snprintf(swap_path, sizeof swap_path, "%s/reload_swap.anodm", test_tmpdir());
    if (install_file(b->tiny, swap_path)) return;
    snprintf(swap, sizeof swap, "swap=%s", swap_path);
    const char *args[] = {"--model", swap, "--db", db, "--threads", "2", "--workers", "2",
                          "--batch-window-us", "1000", NULL};
    int port;
    pid_t pid = spawn_anodmd(log, args, &port);
    if (!port) return;
    acked_list acks = {.lock = PTHREAD_MUTEX_INITIALIZER};
    volatile int stop = 0;
    load_client c[CLIENTS];
    pthread_t t[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        c[i] = (load_client){.port = port, .client = i, .prefix = "reload", .acks = &acks,
                             .stop = &stop, .path = "/v1/models/swap/score", .must_succeed = 1};
        CHECK(pthread_create(&t[i], NULL, load_main, &c[i]) == 0);
    }
    int reloads = 0;
    for (int i = 0; i < RELOADS; i++) {
        sleep_ms(100);
        int before = count_in(log, "reload done");
        if (install_file(i % 2 ? b->tiny : b->ctx, swap_path)) break;
        CHECK(kill(pid, SIGHUP) == 0);
        for (int waited = 0; waited < 10000 && count_in(log, "reload done") == before;
             waited += 20)
            sleep_ms(20);
        reloads += count_in(log, "reload done") > before;
    }
    sleep_ms(100);
    stop = 1;
    int sent = 0, failed = 0, bad = 0;
    for (int i = 0; i < CLIENTS; i++) {
        pthread_join(t[i], NULL);
        sent += c[i].sent;
        failed += c[i].failed;
        bad += c[i].bad;
        CHECK_MSG(!c[i].failed && !c[i].bad, "client %d: %s", i, c[i].why);
    }
    CHECK_MSG(reloads == RELOADS && failed == 0 && bad == 0,
              "%d of %d reloads; %d requests, %d failed, %d mixed or inconsistent", reloads,
              RELOADS, sent, failed, bad);
    int tiny_seen = 0, ctx_seen = 0, other = 0;
    for (int i = 0; i < acks.n; i++) {
        tiny_seen += !strcmp(acks.a[i].version, b->tiny_version);
        ctx_seen += !strcmp(acks.a[i].version, b->ctx_version);
        other += strcmp(acks.a[i].version, b->tiny_version) &&
                 strcmp(acks.a[i].version, b->ctx_version);
    }
    CHECK_MSG(tiny_seen && ctx_seen && !other, "answers: %d from tiny, %d from ctx, %d other",
              tiny_seen, ctx_seen, other);
    stop_anodmd(pid);
    LOG_INTACT(db, -1);
    CHECK(check_acked(db, &acks, "swap") == 0);
    free(acks.a);
}

/* ------------------------------------------------------------------ ids and retention */

/* The log id of the one result of a single-sample score on port; -1 if not 200. */
static long long score_one_id(int port) {
    float x[DIM];
    fresh_samples(x, 1, 5, 0);
    char *body = score_body(x, 0, NULL);
    response r = http_request(port, "POST", "/v1/score", body, "");
    free(body);
    EXPECT_STATUS(r, 200, NULL);
    long long id = r.status == 200
                       ? (long long)jnum(json_array_get(json_object_get(r.json, "results"), 0),
                                         "log_id")
                       : -1;
    response_free(&r);
    return id;
}

/* A daemon idle for longer than retention_days must not empty its log: SQLite numbers the
 * first row of an empty table 1, so ids would start again, below the cursor of every
 * dashboard polling with since_id, and callers' log ids would name other rows. The newest
 * row stays, and ids go on from it, across a restart too. */
TEST(daemon_fault_ids_survive_retention) {
    const test_bundles *b = test_bundles_get();
    if (!b) return;
    char db[600], log[600], tiny[600];
    snprintf(db, sizeof db, "%s/idle.db", test_tmpdir());
    snprintf(log, sizeof log, "%s/idle_stderr.txt", test_tmpdir());
    snprintf(tiny, sizeof tiny, "tiny=%s", b->tiny);
    const char *args[] = {"--model", tiny, "--db", db, "--retention-days", "1", NULL};
    int port;
    pid_t pid = spawn_anodmd(log, args, &port);
    if (!port) return;
    long long first = score_one_id(port);
    /* Age every row by two days, as if nothing had come since: all are past retention. */
    sqlite3 *d = NULL;
    char sql[200];
    snprintf(sql, sizeof sql, "UPDATE scores SET ts_ms = ts_ms - %lld", 2LL * 86400 * 1000);
    CHECK(sqlite3_open(db, &d) == SQLITE_OK);
    sqlite3_busy_timeout(d, 5000);
    CHECK(sqlite3_exec(d, "INSERT INTO scores (ts_ms, model, version, idx, is_anomaly) VALUES "
                          "(0, 'old', 'v', 0, 0), (0, 'old', 'v', 1, 0)", NULL, NULL,
                          NULL) == SQLITE_OK);
    CHECK(sqlite3_exec(d, sql, NULL, NULL, NULL) == SQLITE_OK);
    long long newest = log_int(d, "SELECT max(id) FROM scores"), rows = -1;
    for (int waited = 0; waited < 5000 && rows != 1; waited += 50, sleep_ms(50))
        rows = log_int(d, "SELECT count(*) FROM scores");
    sqlite3_close(d);
    CHECK_MSG(rows == 1, "%lld rows after retention, want the newest one kept", rows);
    long long next = score_one_id(port);
    CHECK_MSG(first >= 1 && newest == first + 2 && next == newest + 1,
              "first id %lld, newest %lld, next %lld: ids started again", first, newest, next);
    stop_anodmd(pid);
    pid = spawn_anodmd(log, args, &port);
    if (!port) return;
    long long after = score_one_id(port);
    CHECK_MSG(after == next + 1, "after a restart: id %lld, want %lld", after, next + 1);
    stop_anodmd(pid);
    LOG_INTACT(db, -1);
}

/* ------------------------------------------------------------------ corrupt bundle */

/* anodmd with the bundle at path as its second model exits 1 naming it, and creates no
 * log. */
static void expect_bad_bundle_(const char *file, int line, const char *what, const char *path) {
    const test_bundles *b = test_bundles_get();
    char log[600], good[600], bad[700], db[600];
    snprintf(log, sizeof log, "%s/bundle_stderr.txt", test_tmpdir());
    snprintf(db, sizeof db, "%s/bundle_never.db", test_tmpdir());
    snprintf(good, sizeof good, "good=%s", b->tiny);
    snprintf(bad, sizeof bad, "broken=%s", path);
    const char *args[] = {"--model", good, "--model", bad, "--db", db, "--port", "0", NULL};
    int rc = run_anodmd_argv(log, args, 15000);
    char *out = slurp(log);
    if (rc != 1 || !out || !strstr(out, "anodmd: model broken") || strstr(out, "listening on") ||
        access(db, F_OK) == 0)
        check_fail(file, line, "%s: exit %d, want 1, 'model broken' and no log in:\n%.1000s",
                   what, rc, out ? out : "");
    free(out);
}
#define EXPECT_BAD_BUNDLE(what, path) expect_bad_bundle_(__FILE__, __LINE__, (what), (path))

/* Write len bytes of data to path, with byte flip (if >= 0) inverted. */
static void write_variant(const char *path, const char *data, size_t len, long flip) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    for (size_t i = 0; i < len; i++) fputc((long)i == flip ? ~data[i] & 0xff : data[i], f);
    fclose(f);
}

TEST(daemon_fault_corrupt_bundle_at_start) {
    const test_bundles *b = test_bundles_get();
    if (!b) return;
    FILE *f = fopen(b->tiny, "rb");
    char *data = NULL;
    long len = -1;
    if (f && fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (data = malloc((size_t)len)) && fread(data, 1, (size_t)len, f) != (size_t)len)
        len = -1;
    if (f) fclose(f);
    CHECK(data && len > 64);
    if (!data || len <= 64) {
        free(data);
        return;
    }
    char path[600];
    snprintf(path, sizeof path, "%s/broken.anodm", test_tmpdir());
    const struct {
        const char *what;
        long keep, flip;
    } variants[] = {{"empty", 0, -1},           {"the first 8 bytes", 8, -1},
                    {"half", len / 2, -1},      {"all but the last byte", len - 1, -1},
                    {"a byte flipped in the magic", len, 0},
                    {"a byte flipped in the middle", len, len / 2},
                    {"the last byte flipped", len, len - 1}};
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        write_variant(path, data, (size_t)variants[i].keep, variants[i].flip);
        EXPECT_BAD_BUNDLE(variants[i].what, path);
    }
    f = fopen(path, "w");
    if (f) {
        fputs("model = not a bundle at all\n", f);
        fclose(f);
    }
    EXPECT_BAD_BUNDLE("a text file", path);
    snprintf(path, sizeof path, "%s/bundle_dir.anodm", test_tmpdir());
    CHECK(mkdir(path, 0700) == 0);
    EXPECT_BAD_BUNDLE("a directory", path);
    snprintf(path, sizeof path, "%s/no_such.anodm", test_tmpdir());
    EXPECT_BAD_BUNDLE("a missing file", path);
    free(data);
}
