/* log_writer: what the score log's writer thread (daemon/log.c) costs a row, without HTTP
 * or scoring: synthetic rows through log.h's API into a fresh log, as many requests of
 * --per-request rows as --rows makes, --in-flight of them queued before waiting for their
 * commits (so that one group commit takes about per-request x in-flight rows). Prints the
 * writer's CPU a row (the thread named anodmd-log: /proc's schedstat for the total,
 * stat's ticks for the split into user and system), wall time a row, rows a commit, and
 * the time from a round's first submit to its last commit (p50, p99, max: what a request
 * waits for its commit), over the rows after --prefill (written first, unmeasured).
 *   build/bench_log_writer --db PATH [--rows 60000] [--per-request 64] [--in-flight 1]
 *                          [--prefill 0] [--scores random|equal] [--source TAG]
 * --scores equal gives every row the same score, as tests/bench_daemon.sh's all-zero
 * samples do; random ones put each row of the index by score somewhere else. */
#include "log.h"
#include "metrics.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The writer's CPU so far: ns in all, and clock ticks of user and system time. */
typedef struct { long long ns, user, sys; } cpu;

/* Find the writer among this process's threads by name; 0 when not found. */
static long writer_tid(void) {
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    long tid = 0;
    while (d && !tid && (e = readdir(d))) {
        char path[300], name[32] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (f && fgets(name, sizeof name, f) && !strcmp(name, "anodmd-log\n")) tid = atol(e->d_name);
        if (f) fclose(f);
    }
    if (d) closedir(d);
    return tid;
}

static int read_cpu(long tid, cpu *c, char *err, size_t errlen) {
    char path[96], buf[1024];
    snprintf(path, sizeof path, "/proc/self/task/%ld/schedstat", tid);
    FILE *f = fopen(path, "r");
    int ok = f && fscanf(f, "%lld", &c->ns) == 1;
    if (f) fclose(f);
    snprintf(path, sizeof path, "/proc/self/task/%ld/stat", tid);
    f = fopen(path, "r");
    ok = ok && f && fgets(buf, sizeof buf, f);
    if (f) fclose(f);
    const char *p = ok ? strrchr(buf, ')') : NULL;   /* the fields after comm */
    if (p && sscanf(p + 2, "%*c %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %lld %lld", &c->user,
                    &c->sys) == 2)
        return 0;
    snprintf(err, errlen, "cannot read the writer's CPU (/proc/self/task/%ld)", tid);
    return -1;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    const char *db = NULL, *scores = "random", *source = "";
    long rows = 60000, prefill = 0;
    int per = 64, inflight = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--db")) db = v;
        else if (!strcmp(k, "--rows")) rows = atol(v);
        else if (!strcmp(k, "--per-request")) per = atoi(v);
        else if (!strcmp(k, "--in-flight")) inflight = atoi(v);
        else if (!strcmp(k, "--prefill")) prefill = atol(v);
        else if (!strcmp(k, "--scores")) scores = v;
        else if (!strcmp(k, "--source")) source = v;
        else {
            fprintf(stderr, "log_writer: unknown option %s\n", k);
            return 2;
        }
    }
    int equal = !strcmp(scores, "equal");
    if (!db || (argc - 1) % 2 || rows < 1 || prefill < 0 || per < 1 || inflight < 1 ||
        (!equal && strcmp(scores, "random")) || strlen(source) > API_ID_MAX) {
        fprintf(stderr, "usage: log_writer --db PATH [--rows N] [--per-request N] "
                        "[--in-flight N] [--prefill N] [--scores random|equal] [--source TAG]\n");
        return 2;
    }
    char err[512];
    metrics *m = metrics_create();
    scorelog *l = m ? scorelog_open(db, m, err, sizeof err) : NULL;
    api_score_record *rec = calloc((size_t)per * (size_t)inflight, sizeof *rec);
    scorelog_ticket *t = calloc((size_t)inflight, sizeof *t);
    long rounds = rows / ((long)per * inflight) + 1, n_waits = 0;
    double *waits = malloc((size_t)rounds * sizeof *waits);   /* each measured round's, s */
    long tid = 0;
    for (int i = 0; l && !tid && i < 1000; i++) {   /* until the writer has named itself */
        struct timespec ms = {0, 1000000};
        if (!(tid = writer_tid())) nanosleep(&ms, NULL);
    }
    if (!m || !l || !rec || !t || !waits || !tid) {
        fprintf(stderr, "log_writer: %s\n", !m || !l ? (m ? err : "out of memory") :
                                           tid ? "out of memory" : "no thread anodmd-log");
        return 1;
    }
    for (int i = 0; i < per * inflight; i++) {   /* what anodmd logs, but the numbers */
        snprintf(rec[i].model, sizeof rec[i].model, "fashion");
        memset(rec[i].version, 'a', API_VERSION_LEN);
        snprintf(rec[i].source, sizeof rec[i].source, "%s", source);
        rec[i].index = i % per;
        rec[i].threshold = 3.25;
    }
    srand(1);
    cpu c0 = {0}, c1;
    uint64_t rows0 = 0, commits0 = 0, rows1, commits1;
    double t0 = 0;
    for (long done = 0; done < prefill + rows; done += (long)per * inflight) {
        if (done >= prefill && !t0) {   /* the measured part starts */
            if (scorelog_sync(l, err, sizeof err) || read_cpu(tid, &c0, err, sizeof err)) goto fail;
            scorelog_stats(l, &rows0, &commits0);
            t0 = now_s();
        }
        double round = now_s();
        for (int k = 0; k < inflight; k++) {
            for (int i = 0; i < per; i++) {
                api_score_record *r = &rec[k * per + i];
                double u = (rand() + 1.0) / (RAND_MAX + 2.0);
                r->r.score = equal ? 1.0 : -log(u);
                r->r.is_anomaly = r->r.score > 3.25;
                r->r.p_value = u;
                r->r.raw_score = r->r.score * 0.7;
                r->r.d_re = r->r.z_re = r->r.d_map = r->r.z_map = r->r.score / 2;
                r->r.d_latent = r->r.z_latent = r->r.score / 3;
                r->r.x = 40 * u - 20;
                r->r.y = 20 - 40 * u;
                r->r.nearest_ref = rand() % 60000;
                r->r.nearest_distance = u;
                r->r.d_memory = r->r.z_memory = NAN;
            }
            if (scorelog_submit(l, &t[k], &rec[k * per], per, err, sizeof err)) goto fail;
        }
        for (int k = 0; k < inflight; k++)
            if (scorelog_wait(l, &t[k], err, sizeof err)) goto fail;
        if (t0 && n_waits < rounds) waits[n_waits++] = now_s() - round;
    }
    double t1 = now_s();
    if (read_cpu(tid, &c1, err, sizeof err)) goto fail;
    scorelog_stats(l, &rows1, &commits1);
    double n = (double)(rows1 - rows0), tick_us = 1e6 / (double)sysconf(_SC_CLK_TCK);
    qsort(waits, (size_t)n_waits, sizeof *waits, by_value);
    printf("rows %.0f commits %llu rows/commit %.1f writer_us/row %.2f (user %.2f sys %.2f) "
           "wall_us/row %.2f commit_ms p50 %.2f p99 %.2f max %.2f\n", n,
           (unsigned long long)(commits1 - commits0),
           n / (double)(commits1 - commits0), (double)(c1.ns - c0.ns) / 1e3 / n,
           (double)(c1.user - c0.user) * tick_us / n, (double)(c1.sys - c0.sys) * tick_us / n,
           (t1 - t0) * 1e6 / n, waits[n_waits / 2] * 1e3, waits[n_waits * 99 / 100] * 1e3,
           waits[n_waits - 1] * 1e3);
    scorelog_close(l);
    metrics_free(m);
    free(rec);
    free(t);
    free(waits);
    return 0;
fail:
    fprintf(stderr, "log_writer: %s\n", err);
    return 1;
}
