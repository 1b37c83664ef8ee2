/* anodmd's sink and merged history (issue 16, section 1) against a real PostgreSQL.
 *
 * The tests start Debian's PostgreSQL themselves: one cluster per runner in a temporary
 * directory (initdb, pg_ctl; listening on a Unix socket there only, fsync off: the faults
 * here are anodmd's and the network's, not PostgreSQL's), as the user nobody when the
 * runner is root (initdb refuses root), a database of its own for each test, all removed
 * at exit. Without PostgreSQL's programs a test is skipped, saying so.
 *
 * - Rows scored arrive exactly once: every row of the log is in PostgreSQL with every
 *   column equal, none twice (by request id and position); after the saved position is
 *   set back to 0 (what a crash before any save leaves), everything is sent again and
 *   recognised, nothing inserted twice.
 * - kill -9 of anodmd under load, mid-shipping, three times: after the last restart every
 *   acknowledged score is in PostgreSQL exactly once and the history equals the log.
 * - PostgreSQL stopped while scoring goes on: scores answered, readiness 200, the backlog
 *   metric counts the rows scored since, errors counted; started again: the backlog
 *   drains and the history equals the log.
 * - Retention (retention_rows) keeps every row not shipped, and trims once they are.
 * - History: two daemons (replicas a and b) shipping to one database, each reading the
 *   merged history: either one pages, finds and counts every replica's rows; a new log
 *   under a replica_id that already has rows there is refused.
 * - The schema: versioned, indexed, a column missing from an older table added, a newer
 *   version refused (the sink retries; scoring goes on). */
#define _GNU_SOURCE              /* mkdtemp, strdup in C11 */
#include <glob.h>
#include <libpq-fe.h>
#include <math.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "daemon_harness.h"
#include "detector.h"

/* ------------------------------------------------------------------ a PostgreSQL cluster */

static struct {
    char dir[64];                /* data, socket, server log: all under here */
    char bin[3][512];            /* initdb, pg_ctl, postgres */
    int state;                   /* 0 not tried, 1 running, 2 stopped, -1 unavailable */
    char why[256];               /* why unavailable */
} PG;

/* A PostgreSQL program: on PATH, else in Debian's /usr/lib/postgresql/VERSION/bin. */
static int find_program(const char *name, char *out, size_t cap) {
    const char *path = getenv("PATH");
    char dirs[4096];
    snprintf(dirs, sizeof dirs, "%s", path ? path : "/usr/bin:/bin");
    for (char *save, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(out, cap, "%s/%s", d, name);
        if (access(out, X_OK) == 0) return 0;
    }
    char pattern[128];
    glob_t g;
    snprintf(pattern, sizeof pattern, "/usr/lib/postgresql/*/bin/%s", name);
    int found = glob(pattern, 0, NULL, &g) == 0 && g.gl_pathc > 0;
    if (found) snprintf(out, cap, "%s", g.gl_pathv[g.gl_pathc - 1]);   /* the newest */
    globfree(&g);
    return found ? 0 : -1;
}

/* Run a PostgreSQL program (argument list after the program's path, already quoted where
 * needed) as the cluster's user: nobody when we are root, else ourselves. Output to
 * DIR/cmd.txt. The exit code. */
static int pg_run(int prog, const char *fmt, ...) {
    char args[1024], cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s%s %s >%s/cmd.txt 2>&1", geteuid() == 0 ? "runuser -u nobody -- "
             : "", PG.bin[prog], args, PG.dir);
    int status = system(cmd);
    return status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

enum { INITDB, PG_CTL, POSTGRES };

static int pg_start(void) {
    int rc = pg_run(PG_CTL, "-D %s/data -l %s/server.txt -w -t 30 -o \"-c listen_addresses='' "
                    "-k %s -c fsync=off -c synchronous_commit=off -c full_page_writes=off\" start",
                    PG.dir, PG.dir, PG.dir);
    if (rc == 0) PG.state = 1;
    return rc;
}

static int pg_stop(void) {
    int rc = pg_run(PG_CTL, "-D %s/data -m fast -w -t 30 stop", PG.dir);
    if (rc == 0) PG.state = 2;
    return rc;
}

static void pg_remove(void) {
    if (PG.state == 1) pg_run(PG_CTL, "-D %s/data -m immediate -w -t 30 stop", PG.dir);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", PG.dir);
    if (PG.dir[0] && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", PG.dir);
}

/* The cluster, made and started on first use: 0, or -1 (skipped when PostgreSQL's
 * programs are absent, a failure reported otherwise). */
static int pg_up(void) {
    static const char *const NAMES[] = {"initdb", "pg_ctl", "postgres"};
    if (PG.state == 0) {
        PG.state = -1;
        for (int i = 0; i < 3; i++)
            if (find_program(NAMES[i], PG.bin[i], sizeof PG.bin[i])) {
                snprintf(PG.why, sizeof PG.why, "PostgreSQL's %s is not installed (make "
                         "pg-deps installs it)", NAMES[i]);
                test_skip("%s", PG.why);
                return -1;
            }
        snprintf(PG.dir, sizeof PG.dir, "/tmp/anodm-pg-XXXXXX");
        struct passwd *nobody = getpwnam("nobody");
        if (!mkdtemp(PG.dir) ||
            (geteuid() == 0 && (!nobody || chown(PG.dir, nobody->pw_uid, nobody->pw_gid)))) {
            snprintf(PG.why, sizeof PG.why, "cannot make %s for the cluster", PG.dir);
        } else {
            atexit(pg_remove);
            if (pg_run(INITDB, "-D %s/data -A trust -U anodm -E UTF8 --no-locale --no-sync",
                       PG.dir) || pg_start()) {
                char path[128];
                snprintf(path, sizeof path, "%s/cmd.txt", PG.dir);
                char *out = slurp(path);
                snprintf(PG.why, sizeof PG.why, "cannot start PostgreSQL: %.180s",
                         out ? out : "");
                free(out);
            }
        }
        if (PG.state != 1) PG.state = -2;
    }
    if (PG.state == -1) test_skip("%s", PG.why);
    else if (PG.state == -2) check_fail(__FILE__, __LINE__, "%s", PG.why);
    else if (PG.state == 2 && pg_start())
        check_fail(__FILE__, __LINE__, "cannot restart PostgreSQL");
    return PG.state == 1 ? 0 : -1;
}

static PGconn *pg_connect_url(const char *url) {
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) == CONNECTION_OK) return c;
    check_fail(__FILE__, __LINE__, "cannot connect to %s: %s", url, PQerrorMessage(c));
    PQfinish(c);
    return NULL;
}

/* A new, empty database of this name: its URL into url. 0, or -1 (reported). */
static int pg_new_db(const char *name, char *url, size_t cap) {
    if (pg_up()) return -1;
    char admin[256], sql[128];
    snprintf(admin, sizeof admin, "postgresql:///postgres?host=%s&user=anodm", PG.dir);
    snprintf(url, cap, "postgresql:///%s?host=%s&user=anodm", name, PG.dir);
    PGconn *c = pg_connect_url(admin);
    if (!c) return -1;
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok) check_fail(__FILE__, __LINE__, "%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
    return ok ? 0 : -1;
}

/* The integer a one-row query answers; -1 on error (reported). */
static long long pg_int(PGconn *c, const char *sql) {
    PGresult *r = PQexec(c, sql);
    long long v = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
        v = atoll(PQgetvalue(r, 0, 0));
    else check_fail(__FILE__, __LINE__, "%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
    return v;
}

static void pg_exec(PGconn *c, const char *sql) {
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        check_fail(__FILE__, __LINE__, "%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
}

/* ------------------------------------------------------------------ the daemons */

/* The value of an unlabelled metric on /metrics; NAN when absent. */
static double metric(int port, const char *name) {
    response r = http_request(port, "GET", "/metrics", NULL, "");
    double v = NAN;
    size_t len = strlen(name);
    for (const char *p = r.body; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, name, len) && p[len] == ' ') v = strtod(p + len + 1, NULL);
    response_free(&r);
    return v;
}

/* Wait up to ms for a metric to reach want: 1 when it did. */
static int metric_becomes(int port, const char *name, double want, long ms) {
    for (long waited = 0;; waited += 50) {
        if (metric(port, name) == want) return 1;
        if (waited >= ms) return 0;
        sleep_ms(50);
    }
}

/* Start anodmd on a new log named name (tiny model), shipping to url as replica, with
 * extra arguments (NULL-terminated, up to 6). Its pid; *port 0 when it did not start. */
static pid_t start_replica(const char *name, const char *url, const char *replica, int *port,
                           const char *const *extra) {
    char db[512], log[512], model[600];
    const test_bundles *b = test_bundles_get();
    *port = 0;
    if (!b) return -1;
    snprintf(db, sizeof db, "%s/%s.db", test_tmpdir(), name);
    snprintf(log, sizeof log, "%s/%s_stderr.txt", test_tmpdir(), name);
    snprintf(model, sizeof model, "tiny=%s", b->tiny);
    const char *args[20] = {"--model", model, "--db", db, "--sink", url, "--replica-id", replica,
                            "--threads", "2", "--workers", "2"};
    int n = 12;
    while (extra && *extra && n < 19) args[n++] = *extra++;
    args[n] = NULL;
    return spawn_anodmd(log, args, port);
}

static void paths(const char *name, char *db, char *log) {
    snprintf(db, 512, "%s/%s.db", test_tmpdir(), name);
    snprintf(log, 512, "%s/%s_stderr.txt", test_tmpdir(), name);
}

/* Score n samples (seeded by the id; anomalies for one id in five) as request id on port,
 * with source (NULL: none): 1 when answered 200. */
static int score(int port, const char *id, int n, const char *source) {
    float x[4 * DIM];
    char extra[160];
    uint64_t h = 0;
    for (const char *p = id; *p; p++) h = h * 131u + (unsigned char)*p;
    fresh_samples(x, n, h, h % 5 == 0);
    snprintf(extra, sizeof extra, ",\"id\":\"%s\"%s%s%s", id, source ? ",\"source\":\"" : "",
             source ? source : "", source ? "\"" : "");
    char *body = score_body(x, n, extra);
    response r = http_request(port, "POST", "/v1/score", body, "");
    free(body);
    int ok = r.status == 200;
    if (!ok) check_fail(__FILE__, __LINE__, "score %s: %.300s", id, r.raw ? r.raw : "(none)");
    response_free(&r);
    return ok;
}

/* Score requests first..first+count-1 ("<prefix>-<i>", 1 to 4 samples): the rows scored. */
static int score_many(int port, const char *prefix, int first, int count, const char *source) {
    int rows = 0;
    for (int i = first; i < first + count; i++) {
        char id[64];
        snprintf(id, sizeof id, "%s-%d", prefix, i);
        rows += score(port, id, 1 + i % 4, source) ? 1 + i % 4 : 0;
    }
    return rows;
}

/* ------------------------------------------------------------------ log against history */

/* The columns both hold, by name, and how to compare each: i integer, t text, r real
 * (NULL, for NaN, equal to NULL), f flag (PostgreSQL's boolean, SQLite's 0/1). */
#define COL_REAL 'r'
#define COL_FLAG 'f'
#define COL_INDEX 'i'
#define FIELD_NAME(name, type, group, doc) ", " #name
#define FIELD_KIND(name, type, group, doc) COL_##type,
static const char COMPARED[] = "ts_ms, model, version, request_id, source, idx, threshold"
    DETECTOR_RESULT_FIELDS(FIELD_NAME);
static const char KINDS[] = {'i', 't', 't', 't', 't', 'i', 'r',
                             DETECTOR_RESULT_FIELDS(FIELD_KIND) 0};

/* Column col of the log's row st and the history's row of r is the same value, of kind. */
static int same_value(char kind, sqlite3_stmt *st, const PGresult *r, int row, int col) {
    int null = sqlite3_column_type(st, col) == SQLITE_NULL;
    const char *v = PQgetvalue(r, row, col);
    if (null || PQgetisnull(r, row, col)) return null && PQgetisnull(r, row, col);
    switch (kind) {
    case 't': return !strcmp((const char *)sqlite3_column_text(st, col), v);
    case 'i': return sqlite3_column_int64(st, col) == atoll(v);
    case 'r': return sqlite3_column_double(st, col) == strtod(v, NULL);
    default: return (sqlite3_column_int(st, col) != 0) == (v[0] == 't');
    }
}

/* Every row of the log at db is in the history with the same columns under (replica,
 * its id), and the history holds no other row of replica: the rows compared, or -1 (the
 * differences reported). */
static long long same_rows(const char *db, PGconn *c, const char *replica) {
    char sql[2048];
    sqlite3 *lite = log_open_readonly(db);
    if (!lite) return -1;
    sqlite3_stmt *st;
    snprintf(sql, sizeof sql, "SELECT id, %s FROM scores ORDER BY id", COMPARED);
    if (sqlite3_prepare_v2(lite, sql, -1, &st, NULL) != SQLITE_OK) {
        check_fail(__FILE__, __LINE__, "%s", sqlite3_errmsg(lite));
        sqlite3_close(lite);
        return -1;
    }
    snprintf(sql, sizeof sql, "SELECT local_id, %s FROM anodm_scores WHERE replica_id = $1 "
             "ORDER BY local_id", COMPARED);
    const char *values[1] = {replica};
    PGresult *r = PQexecParams(c, sql, 1, NULL, values, NULL, NULL, 0);
    long long rows = 0, bad = 0;
    int n = PQresultStatus(r) == PGRES_TUPLES_OK ? PQntuples(r) : -1;
    if (n < 0) check_fail(__FILE__, __LINE__, "%s", PQresultErrorMessage(r));
    for (int row = 0; n >= 0 && sqlite3_step(st) == SQLITE_ROW; row++, rows++) {
        long long id = sqlite3_column_int64(st, 0);
        if (row >= n || atoll(PQgetvalue(r, row, 0)) != id) {
            if (bad++ < 3) check_fail(__FILE__, __LINE__, "log row %lld of %s: not in the history "
                                      "(history row %d: %s)", id, replica, row,
                                      row < n ? PQgetvalue(r, row, 0) : "none");
            break;
        }
        for (int k = 0; KINDS[k]; k++)
            if (!same_value(KINDS[k], st, r, row, 1 + k) && bad++ < 3)
                check_fail(__FILE__, __LINE__, "row %lld of %s, column %d: log '%s', history '%s'",
                           id, replica, k, sqlite3_column_text(st, 1 + k) ?
                           (const char *)sqlite3_column_text(st, 1 + k) : "NULL",
                           PQgetisnull(r, row, 1 + k) ? "NULL" : PQgetvalue(r, row, 1 + k));
    }
    if (n >= 0 && rows != n && bad++ < 3)
        check_fail(__FILE__, __LINE__, "%s: %lld rows in the log, %d in the history", replica,
                   rows, n);
    /* Exactly once by content too: every (request id, position) once. */
    char once[256];
    snprintf(once, sizeof once, "SELECT count(*) - count(DISTINCT (request_id, idx)) FROM "
             "anodm_scores WHERE replica_id = '%s'", replica);
    long long twice = pg_int(c, once);
    CHECK_MSG(twice == 0, "%s: %lld scores in the history twice", replica, twice);
    PQclear(r);
    sqlite3_finalize(st);
    sqlite3_close(lite);
    return bad || twice ? -1 : rows;
}

/* Wait up to ms for the daemon on port to have shipped everything (backlog 0) and the
 * history to hold as many rows of replica as the log at db: 1 when it did. */
static int drained(int port, PGconn *c, const char *replica, const char *db, long ms) {
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM anodm_scores WHERE replica_id = '%s'",
             replica);
    for (long waited = 0;; waited += 100) {
        if (metric(port, "anodmd_sink_backlog_rows") == 0 && pg_int(c, sql) == log_rows_at(db))
            return 1;
        if (waited >= ms) return 0;
        sleep_ms(100);
    }
}

/* ------------------------------------------------------------------ exactly once */

TEST(daemon_pg_sink_exactly_once) {
    char url[512], db[512], log[512];
    if (pg_new_db("once", url, sizeof url)) return;
    paths("pg_once", db, log);
    int port;
    pid_t pid = start_replica("pg_once", url, "solo", &port, NULL);
    PGconn *c = pg_connect_url(url);
    if (port && c) {
        int rows = score_many(port, "once", 0, 30, "cam");
        CHECK(rows == 73);
        CHECK_MSG(drained(port, c, "solo", db, 10000), "not shipped: backlog %g",
                  metric(port, "anodmd_sink_backlog_rows"));
        CHECK(same_rows(db, c, "solo") == rows);
        CHECK(metric(port, "anodmd_sink_rows_total") == rows);
        CHECK(metric(port, "anodmd_sink_resent_rows_total") == 0);
        CHECK(metric(port, "anodmd_sink_errors_total") == 0);
        CHECK(metric(port, "anodmd_sink_up") == 1);
        CHECK(metric(port, "anodmd_sink_oldest_unshipped_seconds") == 0);
        /* The history's ids follow the log's order. */
        CHECK(pg_int(c, "SELECT count(*) FROM (SELECT log_id, local_id, lag(local_id) OVER "
                        "(ORDER BY log_id) prev FROM anodm_scores) s WHERE local_id < prev") == 0);
    }
    stop_anodmd(pid);
    /* The position was saved (at the latest when the log closed) ... */
    sqlite3 *lite = log_open_readonly(db);
    CHECK(lite && log_int(lite, "SELECT max(log_id) FROM sink_position") ==
                      log_int(lite, "SELECT max(id) FROM scores"));
    sqlite3_close(lite);
    /* ... and set back to 0, as a crash before any save would leave it: everything is
     * sent again, and nothing inserted twice. */
    CHECK(sqlite3_open(db, &lite) == SQLITE_OK &&
          sqlite3_exec(lite, "UPDATE sink_position SET log_id = 0", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(lite);
    long long before = c ? pg_int(c, "SELECT count(*) FROM anodm_scores") : -1;
    pid = start_replica("pg_once", url, "solo", &port, NULL);
    if (port && c) {
        CHECK(metric_becomes(port, "anodmd_sink_resent_rows_total", (double)before, 10000));
        CHECK(metric(port, "anodmd_sink_rows_total") == 0);
        CHECK(pg_int(c, "SELECT count(*) FROM anodm_scores") == before);
        CHECK(same_rows(db, c, "solo") == before);
    }
    stop_anodmd(pid);
    PQfinish(c);
}

/* ------------------------------------------------------------------ kill -9 */

typedef struct {
    int port;
    const char *prefix;
    volatile int *stop;
    int next, acked;             /* requests sent, answered 200 (ids prefix-0 .. next-1) */
    int ok[4096];                /* which were answered 200 */
} loader;

static void *load_main(void *arg) {
    loader *l = arg;
    float x[4 * DIM];
    while (!*l->stop && l->next < 4096) {
        int i = l->next++, n = 1 + i % 4;
        char id[64], extra[96];
        snprintf(id, sizeof id, "%s-%d", l->prefix, i);
        snprintf(extra, sizeof extra, ",\"id\":\"%s\"", id);
        fresh_samples(x, n, 7919u * (uint64_t)i + (uint64_t)l->prefix[0], 0);
        char *body = score_body(x, n, extra);
        response r = http_request(l->port, "POST", "/v1/score", body, "");
        free(body);
        l->ok[i] = r.status == 200 && (int)json_array_size(json_object_get(r.json, "results")) == n;
        l->acked += l->ok[i];
        response_free(&r);
    }
    return NULL;
}

TEST(daemon_pg_sink_kill9) {
    enum { ROUNDS = 3, CLIENTS = 2 };
    char url[512], db[512], log[512], port_s[16];
    if (pg_new_db("kill9", url, sizeof url)) return;
    paths("pg_kill9", db, log);
    static loader l[ROUNDS][CLIENTS];
    unsigned seed = 20261203u;
    int port;
    pid_t pid = start_replica("pg_kill9", url, "k", &port, NULL);
    for (int round = 0; port && round < ROUNDS; round++) {
        volatile int stop = 0;
        pthread_t t[CLIENTS];
        for (int i = 0; i < CLIENTS; i++) {
            static char prefix[ROUNDS][CLIENTS][32];   /* room for any two ints */
            snprintf(prefix[round][i], sizeof prefix[round][i], "r%dc%d", round, i);
            l[round][i] = (loader){.port = port, .prefix = prefix[round][i], .stop = &stop};
            CHECK(pthread_create(&t[i], NULL, load_main, &l[round][i]) == 0);
        }
        sleep_ms(300 + (long)(rand_r(&seed) % 400));   /* scoring and shipping all along */
        CHECK(kill(pid, SIGKILL) == 0);
        CHECK(waitpid(pid, NULL, 0) == pid);
        stop = 1;
        for (int i = 0; i < CLIENTS; i++) pthread_join(t[i], NULL);
        snprintf(port_s, sizeof port_s, "%d", port);
        const char *extra[] = {"--port", port_s, NULL};
        int again;
        pid = start_replica("pg_kill9", url, "k", &again, extra);
        CHECK_MSG(again == port, "round %d: restarted on port %d", round, again);
        if (again != port) port = 0;
    }
    PGconn *c = port ? pg_connect_url(url) : NULL;
    if (c) {
        CHECK_MSG(drained(port, c, "k", db, 15000), "not shipped: backlog %g",
                  metric(port, "anodmd_sink_backlog_rows"));
        long long rows = same_rows(db, c, "k");
        /* Every acknowledged request is there, each of its samples once. */
        int acked = 0, missing = 0;
        for (int round = 0; round < ROUNDS; round++)
            for (int i = 0; i < CLIENTS; i++)
                for (int k = 0; k < l[round][i].next; k++) {
                    if (!l[round][i].ok[k]) continue;
                    char sql[200];
                    snprintf(sql, sizeof sql, "SELECT count(*) FROM anodm_scores WHERE "
                             "request_id = '%s-%d'", l[round][i].prefix, k);
                    acked++;
                    if (pg_int(c, sql) != 1 + k % 4 && missing++ < 3)
                        check_fail(__FILE__, __LINE__, "request %s-%d not in the history "
                                   "once", l[round][i].prefix, k);
                }
        CHECK(acked > 0 && missing == 0);
        fprintf(stderr, "    kill -9 x%d: %d requests acknowledged, %lld rows in log and "
                "history alike, %g resent after the last restart\n", ROUNDS, acked, rows,
                metric(port, "anodmd_sink_resent_rows_total"));
    }
    stop_anodmd(pid);
    PQfinish(c);
}

static json_t *get_json(int port, const char *path);

/* ------------------------------------------------------------------ PostgreSQL down */

TEST(daemon_pg_outage) {
    char url[512], db[512], log[512];
    if (pg_new_db("outage", url, sizeof url)) return;
    paths("pg_outage", db, log);
    const char *extra[] = {"--history", url, NULL};
    int port;
    pid_t pid = start_replica("pg_outage", url, "o", &port, extra);
    PGconn *c = port ? pg_connect_url(url) : NULL;
    if (c) {
        score_many(port, "up", 0, 4, NULL);
        CHECK(drained(port, c, "o", db, 10000));
        json_t *page = get_json(port, "/v1/scores");    /* the history, read */
        CHECK(json_array_size(json_object_get(page, "scores")) == 10);
        json_decref(page);
        PQfinish(c);
        c = NULL;
        CHECK(pg_stop() == 0);
        /* Scores go on, answered; readiness stays; the rows wait and are counted. */
        int rows = score_many(port, "down", 0, 12, NULL);
        CHECK(rows == 30);
        response r = http_request(port, "GET", "/readyz", NULL, "");
        EXPECT_STATUS(r, 200, NULL);
        response_free(&r);
        r = http_request(port, "GET", "/v1/scores", NULL, "");   /* the history is down */
        EXPECT_STATUS(r, 503, "log_unavailable");
        response_free(&r);
        CHECK_MSG(metric(port, "anodmd_sink_backlog_rows") == rows, "backlog %g, want %d",
                  metric(port, "anodmd_sink_backlog_rows"), rows);
        sleep_ms(300);
        CHECK(metric(port, "anodmd_sink_up") == 0);
        CHECK(metric(port, "anodmd_sink_errors_total") >= 1);
        CHECK(metric(port, "anodmd_sink_oldest_unshipped_seconds") >= 0.3);
        rows += score_many(port, "down", 12, 4, NULL);
        CHECK(metric(port, "anodmd_sink_backlog_rows") == rows);
        CHECK(pg_start() == 0);
        c = pg_connect_url(url);
        CHECK_MSG(c && drained(port, c, "o", db, 15000), "backlog %g after PostgreSQL came back",
                  metric(port, "anodmd_sink_backlog_rows"));
        if (c) CHECK(same_rows(db, c, "o") == log_rows_at(db));
        CHECK(metric(port, "anodmd_sink_up") == 1);
        /* And back, once the history's pause between connection attempts (a second,
         * pghistory.h) that began with the last read during the outage is over. */
        sleep_ms(1100);
        page = get_json(port, "/v1/scores?limit=1000");
        CHECK(json_array_size(json_object_get(page, "scores")) == (size_t)log_rows_at(db));
        json_decref(page);
        /* A restart between two reads: the next read finds its connection broken and makes
         * a new one, answered (a page, then the statistics, each after its own restart). */
        PQfinish(c);
        c = NULL;
        static const char *const READS[] = {"/v1/scores?limit=1", "/v1/stats"};
        for (int i = 0; i < 2; i++) {
            r = http_request(port, "GET", "/v1/scores?limit=1", NULL, "");   /* connected */
            EXPECT_STATUS(r, 200, NULL);
            response_free(&r);
            CHECK(pg_stop() == 0 && pg_start() == 0);
            r = http_request(port, "GET", READS[i], NULL, "");
            CHECK_MSG(r.status == 200, "%s after a restart: %d %s", READS[i], r.status,
                      r.body ? r.body : "");
            response_free(&r);
        }
        char *out = slurp(log);
        CHECK_MSG(out && strstr(out, "anodmd: sink: cannot connect to PostgreSQL") &&
                  strstr(out, "rows wait in the log"), "%.1500s", out ? out : "");
        free(out);
    }
    stop_anodmd(pid);
    PQfinish(c);
}

TEST(daemon_pg_retention_keeps_unshipped) {
    char url[512], db[512], log[512];
    if (pg_new_db("retain", url, sizeof url)) return;
    paths("pg_retain", db, log);
    const char *extra[] = {"--retention-rows", "5", NULL};
    int port;
    pid_t pid = start_replica("pg_retain", url, "r", &port, extra);
    PGconn *c = port ? pg_connect_url(url) : NULL;
    if (c) {
        int shipped = score_many(port, "before", 0, 4, NULL);
        CHECK(metric_becomes(port, "anodmd_sink_backlog_rows", 0, 10000));
        for (int i = 0; i < 40 && log_rows_at(db) > 5; i++) sleep_ms(100);
        CHECK(log_rows_at(db) == 5);     /* shipped rows: trimmed as before */
        CHECK(pg_stop() == 0);
        int waiting = score_many(port, "after", 0, 8, NULL);
        sleep_ms(2500);                  /* two retention rounds and more */
        /* The newest 5 are all unshipped: the log keeps every unshipped row, no other. */
        CHECK_MSG(log_rows_at(db) == waiting, "%lld rows in the log, want the %d not shipped",
                  log_rows_at(db), waiting);
        CHECK(metric(port, "anodmd_sink_backlog_rows") == waiting);
        CHECK(pg_start() == 0);
        PQfinish(c);
        c = pg_connect_url(url);
        CHECK(c && metric_becomes(port, "anodmd_sink_backlog_rows", 0, 15000));
        for (int i = 0; i < 40 && log_rows_at(db) > 5; i++) sleep_ms(100);
        CHECK(log_rows_at(db) == 5);     /* shipped now, so trimmed */
        if (c) CHECK(pg_int(c, "SELECT count(*) FROM anodm_scores") == shipped + waiting);
        if (c) CHECK(pg_int(c, "SELECT count(DISTINCT local_id) FROM anodm_scores") ==
                     shipped + waiting);
    }
    stop_anodmd(pid);
    PQfinish(c);
}

/* ------------------------------------------------------------------ the merged history */

/* GET path on port: its JSON (NULL, reported, unless 200). */
static json_t *get_json(int port, const char *path) {
    response r = http_request(port, "GET", path, NULL, "");
    json_t *j = r.status == 200 ? json_incref(r.json) : NULL;
    if (!j) check_fail(__FILE__, __LINE__, "GET %s: %.500s", path, r.raw ? r.raw : "(none)");
    response_free(&r);
    return j;
}

/* Page through GET /v1/scores on port with since_id, limit at a time (and filter, "" or
 * "&model=..."): every record into a new array. */
static json_t *poll_all(int port, int limit, const char *filter) {
    json_t *all = json_array();
    long long since = 0;
    for (int pages = 0; pages < 200; pages++) {
        char path[256];
        snprintf(path, sizeof path, "/v1/scores?since_id=%lld&limit=%d%s", since, limit, filter);
        json_t *page = get_json(port, path);
        json_t *scores = json_object_get(page, "scores");
        size_t n = json_array_size(scores);
        json_array_extend(all, scores);
        since = (long long)jnum(page, "next_since_id");
        json_decref(page);
        if (n == 0) break;
    }
    return all;
}

/* The records of a replica in a page, by replica_id. */
static int count_replica(json_t *scores, const char *replica) {
    int n = 0;
    for (size_t i = 0; i < json_array_size(scores); i++)
        n += jstr(json_array_get(scores, i), "replica_id") &&
             !strcmp(jstr(json_array_get(scores, i), "replica_id"), replica);
    return n;
}

TEST(daemon_pg_history_two_replicas) {
    char url[512], db_a[512], db_b[512], log_a[512], log_b[512];
    if (pg_new_db("merged", url, sizeof url)) return;
    paths("pg_a", db_a, log_a);
    paths("pg_b", db_b, log_b);
    const char *extra[] = {"--history", url, NULL};
    int pa, pb;
    pid_t a = start_replica("pg_a", url, "a", &pa, extra);
    pid_t b = start_replica("pg_b", url, "b", &pb, extra);
    PGconn *c = pa && pb ? pg_connect_url(url) : NULL;
    if (c) {
        int rows_a = score_many(pa, "ha", 0, 6, "sa"), rows_b = score_many(pb, "hb", 0, 5, "sb");
        rows_a += score_many(pa, "ha", 6, 2, "sa");
        CHECK(drained(pa, c, "a", db_a, 10000) && drained(pb, c, "b", db_b, 10000));
        CHECK(same_rows(db_a, c, "a") == rows_a && same_rows(db_b, c, "b") == rows_b);
        /* Either daemon pages through both replicas' rows, the same ones. */
        json_t *via_a = poll_all(pa, 7, ""), *via_b = poll_all(pb, 1000, "");
        CHECK_MSG((int)json_array_size(via_a) == rows_a + rows_b, "%zu records through a, "
                  "want %d", json_array_size(via_a), rows_a + rows_b);
        CHECK(json_equal(via_a, via_b));
        CHECK(count_replica(via_a, "a") == rows_a && count_replica(via_a, "b") == rows_b);
        long long last = 0;
        int ordered = 1, local_ok = 1;
        for (size_t i = 0; i < json_array_size(via_a); i++) {
            json_t *rec = json_array_get(via_a, i);
            ordered &= (long long)jnum(rec, "log_id") > last;
            last = (long long)jnum(rec, "log_id");
            local_ok &= json_is_integer(json_object_get(rec, "local_id"));
        }
        CHECK(ordered && local_ok);
        /* A record of b through a: its history id, replica and local id. */
        json_t *one_b = NULL;
        for (size_t i = 0; !one_b && i < json_array_size(via_a); i++)
            if (!strcmp(jstr(json_array_get(via_a, i), "replica_id"), "b"))
                one_b = json_array_get(via_a, i);
        if (one_b) {
            char path[96];
            snprintf(path, sizeof path, "/v1/scores/%lld", (long long)jnum(one_b, "log_id"));
            json_t *rec = get_json(pa, path);
            CHECK(json_equal(rec, one_b));
            json_decref(rec);
            /* Its input is held by b only. */
            snprintf(path, sizeof path, "/v1/scores/%lld/sample", (long long)jnum(one_b, "log_id"));
            response r = http_request(pa, "GET", path, NULL, "");
            EXPECT_STATUS(r, 404, "not_found");
            CHECK(r.body && strstr(r.body, "held by replica b"));
            response_free(&r);
            r = http_request(pb, "GET", path, NULL, "");
            EXPECT_STATUS(r, 200, NULL);
            CHECK(jnum(r.json, "log_id") == jnum(one_b, "log_id"));
            response_free(&r);
        }
        /* Filters and before_id pages as on a log. */
        json_t *only_b = poll_all(pa, 1000, "&source=sb");
        CHECK(json_array_size(only_b) == (size_t)rows_b && count_replica(only_b, "b") == rows_b);
        json_decref(only_b);
        json_t *newest = get_json(pb, "/v1/scores?before_id=9223372036854775807&limit=3");
        json_t *tail = json_object_get(newest, "scores");
        size_t n = json_array_size(via_a);
        CHECK(json_array_size(tail) == 3 && n >= 3 &&
              json_equal(json_array_get(tail, 2), json_array_get(via_a, n - 1)) &&
              json_equal(json_array_get(tail, 0), json_array_get(via_a, n - 3)));
        json_decref(newest);
        /* The statistics count both. */
        json_t *stats = get_json(pb, "/v1/stats");
        json_t *m0 = json_array_get(json_object_get(stats, "models"), 0);
        json_t *all = json_object_get(json_object_get(m0, "windows"), "all");
        json_t *min1 = json_object_get(json_object_get(m0, "windows"), "1m");
        CHECK_MSG(jnum(all, "count") == rows_a + rows_b && jnum(min1, "count") == rows_a + rows_b,
                  "%s", json_dumps(stats, JSON_COMPACT));
        CHECK(json_is_number(json_object_get(json_object_get(all, "score"), "p99")) &&
              json_is_number(json_object_get(json_object_get(min1, "score"), "p50")));
        json_decref(stats);
        /* A poller's cursor sees rows that arrive later, from the other replica. */
        json_t *page = get_json(pa, "/v1/scores?since_id=0&limit=1000");
        long long cursor = (long long)jnum(page, "next_since_id");
        json_decref(page);
        int more = score_many(pb, "hb", 5, 3, "sb");
        CHECK(drained(pb, c, "b", db_b, 10000));
        char path[96];
        snprintf(path, sizeof path, "/v1/scores?since_id=%lld&limit=1000", cursor);
        page = get_json(pa, path);
        CHECK(json_array_size(json_object_get(page, "scores")) == (size_t)more &&
              count_replica(json_object_get(page, "scores"), "b") == more);
        json_decref(page);
        json_decref(via_a);
        json_decref(via_b);
    }
    stop_anodmd(a);
    /* A new log under replica a's id: its ids would be a's again, so it is refused. */
    char db_c[512], log_c[512];
    paths("pg_c", db_c, log_c);
    int pc;
    pid_t pid_c = start_replica("pg_c", url, "a", &pc, NULL);
    if (pc) {
        score(pc, "c-0", 1, NULL);
        char *out = NULL;
        for (int i = 0; i < 50 && !(out && strstr(out, "did not write")); i++) {
            free(out);
            sleep_ms(100);
            out = slurp(log_c);
        }
        CHECK_MSG(out && strstr(out, "rows of replica 'a'") && strstr(out, "did not write"),
                  "%.1000s", out ? out : "");
        free(out);
        CHECK(metric(pc, "anodmd_sink_backlog_rows") == 1);
    }
    stop_anodmd(pid_c);
    stop_anodmd(b);
    PQfinish(c);
}

/* ------------------------------------------------------------------ the schema */

TEST(daemon_pg_schema) {
    char url[512], db[512], log[512];
    if (pg_new_db("schema", url, sizeof url)) return;
    paths("pg_schema", db, log);
    int port;
    pid_t pid = start_replica("pg_schema", url, "s", &port, NULL);
    PGconn *c = port ? pg_connect_url(url) : NULL;
    if (c) {
        score_many(port, "s", 0, 2, NULL);
        CHECK(drained(port, c, "s", db, 10000));
        CHECK(pg_int(c, "SELECT version FROM anodm_schema_version") == 1);
        CHECK(pg_int(c, "SELECT count(*) FROM pg_indexes WHERE tablename = 'anodm_scores' AND "
                        "indexname IN ('anodm_scores_by_model', 'anodm_scores_by_source', "
                        "'anodm_scores_anomalies', 'anodm_scores_anomalies_by_model', "
                        "'anodm_scores_by_model_time', 'anodm_scores_by_model_score', "
                        "'anodm_scores_replica_id_local_id_key')") == 7);
    }
    stop_anodmd(pid);
    /* A table from before d_latent, and a newer schema version. */
    if (c) {
        pg_exec(c, "ALTER TABLE anodm_scores DROP COLUMN d_latent");
        pg_exec(c, "UPDATE anodm_schema_version SET version = 99");
    }
    pid = start_replica("pg_schema", url, "s", &port, NULL);
    if (c && port) {
        CHECK(score_many(port, "s", 2, 2, NULL) == 7);   /* scoring goes on */
        char *out = NULL;
        for (int i = 0; i < 50 && !(out && strstr(out, "schema version 99")); i++) {
            free(out);
            sleep_ms(100);
            out = slurp(log);
        }
        CHECK_MSG(out && strstr(out, "history schema version 99; this anodmd knows version 1"),
                  "%.1000s", out ? out : "");
        free(out);
        CHECK(metric(port, "anodmd_sink_backlog_rows") == 7);
        CHECK(metric(port, "anodmd_sink_errors_total") >= 1);
        pg_exec(c, "UPDATE anodm_schema_version SET version = 1");
        CHECK(drained(port, c, "s", db, 15000));          /* at the next retry */
        CHECK(pg_int(c, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'anodm_scores'::"
                        "regclass AND attname = 'd_latent' AND NOT attisdropped") == 1);
        CHECK(pg_int(c, "SELECT count(*) FROM anodm_scores WHERE d_latent IS NULL") == 3);
        CHECK(pg_int(c, "SELECT count(*) FROM anodm_scores WHERE d_latent IS NOT NULL") == 7);
    }
    stop_anodmd(pid);
    PQfinish(c);
}

/* A dashboard polling the history with since_id while two replicas ship at once misses
 * nothing: the history's ids are committed in order (pgschema.h), so no row can commit
 * under an id below a cursor already handed out. */
typedef struct {
    int port;
    volatile int *stop;
    long long *ids;
    int n, cap, pages;
} poller;

static void *poll_main(void *arg) {
    poller *p = arg;
    long long since = 0;
    for (int empty = 0; empty < 2;) {    /* after stop: until two pages in a row are empty */
        int stopping = *p->stop;
        char path[96];
        snprintf(path, sizeof path, "/v1/scores?since_id=%lld&limit=50", since);
        response r = http_request(p->port, "GET", path, NULL, "");
        json_t *scores = json_object_get(r.json, "scores");
        for (size_t i = 0; i < json_array_size(scores) && p->n < p->cap; i++)
            p->ids[p->n++] = (long long)jnum(json_array_get(scores, i), "log_id");
        if (r.json) since = (long long)jnum(r.json, "next_since_id");
        empty = stopping && json_array_size(scores) == 0 ? empty + 1 : 0;
        p->pages++;
        response_free(&r);
        if (r.status != 200) break;
    }
    return NULL;
}

TEST(daemon_pg_history_cursor_misses_nothing) {
    enum { CAP = 1 << 16 };
    char url[512], db_a[512], db_b[512], log_a[512], log_b[512];
    if (pg_new_db("cursor", url, sizeof url)) return;
    paths("pg_cursor_a", db_a, log_a);
    paths("pg_cursor_b", db_b, log_b);
    const char *extra[] = {"--history", url, NULL};
    int pa, pb;
    pid_t a = start_replica("pg_cursor_a", url, "a", &pa, extra);
    pid_t b = start_replica("pg_cursor_b", url, "b", &pb, NULL);
    PGconn *c = pa && pb ? pg_connect_url(url) : NULL;
    static loader l[2];
    long long *ids = calloc(CAP, sizeof *ids);
    if (c && ids) {
        volatile int stop = 0, stop_poll = 0;
        poller p = {.port = pa, .stop = &stop_poll, .ids = ids, .cap = CAP};
        pthread_t t[3];
        l[0] = (loader){.port = pa, .prefix = "ca", .stop = &stop};
        l[1] = (loader){.port = pb, .prefix = "cb", .stop = &stop};
        CHECK(pthread_create(&t[2], NULL, poll_main, &p) == 0);
        for (int i = 0; i < 2; i++) CHECK(pthread_create(&t[i], NULL, load_main, &l[i]) == 0);
        sleep_ms(1500);
        stop = 1;
        for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
        CHECK(drained(pa, c, "a", db_a, 10000) && drained(pb, c, "b", db_b, 10000));
        stop_poll = 1;
        pthread_join(t[2], NULL);
        long long total = pg_int(c, "SELECT count(*) FROM anodm_scores");
        int dup = 0;
        for (int i = 1; i < p.n; i++) dup += ids[i] <= ids[i - 1];
        CHECK_MSG(p.n == total && dup == 0, "the poller saw %d rows (%d out of order) of %lld "
                  "in %d pages", p.n, dup, total, p.pages);
        fprintf(stderr, "    cursor: %d rows from two replicas seen by a poller in %d pages\n",
                p.n, p.pages);
    }
    free(ids);
    stop_anodmd(a);
    stop_anodmd(b);
    PQfinish(c);
}

/* ------------------------------------------------------------------ settings */

/* The URL as shown, its password hidden; an unset one (empty) as nothing, whatever the
 * buffer held before: `--check-config` printed a stack buffer's old bytes for an unset
 * sink or history until 2026-12-03 (seen from tests/k8s/check.mjs). */
TEST(daemon_pg_settings_redact) {
    static const char *cases[][2] = {
        {"", ""},
        {"postgresql://u:secret@h:5432/db?sslmode=require",
         "postgresql://u:***@h:5432/db?sslmode=require"},
        {"postgres://h/db?password=secret&x=1", "postgres://h/db?password=***&x=1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[128];
        memset(out, 'x', sizeof out);
        config_redact_url(cases[i][0], out, sizeof out);
        CHECK_MSG(!strcmp(out, cases[i][1]), "'%s' shown as '%s', not '%s'", cases[i][0], out,
                  cases[i][1]);
    }
}

/* sink, history and replica_id: checked when set, a URL's password never shown. */
TEST(daemon_pg_settings) {
    const test_bundles *b = test_bundles_get();
    if (!b) return;
    char host[256] = "";
    gethostname(host, sizeof host);
    char *out = NULL;
    int rc = run_anodmd(&out, "--check-config --model %s --sink "
                        "'postgresql://u:secret1@db.example:5433/h?password=secret2&sslmode=require'"
                        " --history postgres://reader@db.example/h", b->tiny);
    CHECK_MSG(rc == 0 && out && strstr(out, "sink = postgresql://u:***@db.example:5433/h?"
                                            "password=***&sslmode=require\n") &&
              strstr(out, "history = postgres://reader@db.example/h\n") &&
              !strstr(out, "secret"), "exit %d:\n%.1500s", rc, out ? out : "");
    char want[300];
    snprintf(want, sizeof want, "replica_id = %s\n", host);   /* the host name by default */
    CHECK_MSG(out && strstr(out, want), "want '%s' in:\n%.1500s", want, out ? out : "");
    free(out);
    EXPECT_CLI(2, "--sink: sink wants a postgresql:// URL (or nothing), not '(not shown)'",
               "--check-config --model %s --sink http://u:secret@x/y", b->tiny);
    EXPECT_CLI(2, "--replica-id: replica_id wants 1 to 64 letters, digits, '.', '_' or '-', "
               "not 'a b'", "--check-config --model %s --replica-id 'a b'", b->tiny);
    EXPECT_CLI(0, "replica_id = pod-0\n", "--check-config --model %s --replica-id pod-0 "
               "--sink ''", b->tiny);
    /* A URL libpq cannot parse stops the daemon at start, its password unshown. */
    EXPECT_CLI(1, "anodmd: not a PostgreSQL connection URI", "--model %s --port 0 --db %s/x.db "
               "--sink 'postgresql://u:secret@h/db?nosuchoption=1'", b->tiny, test_tmpdir());
}
