/* anodmd's metrics and their Prometheus text rendering (see metrics.h). */
#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LABELS_MAX 160
#define MAX_BOUNDS 17

/* Seconds: from a cached scrape to a stalled fsync. */
static const double TIME_BOUNDS[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                     0.1,    0.25,  0.5,    1,     2.5,   5,     10};
/* Fused scores: standardised by the calibration normals, so on one scale for every model;
 * finer around the usual thresholds (2 to 8). */
static const double SCORE_BOUNDS[] = {-1, -0.5, 0, 0.5, 1, 1.5, 2, 2.5, 3,
                                      4,  5,    6, 8,   10, 15, 20, 50};
/* Samples per scorer call: powers of two up to the largest max_batch allowed. */
static const double BATCH_BOUNDS[] = {1,   2,    4,    8,    16,   32,    64,    128,  256,
                                      512, 1024, 2048, 4096, 8192, 16384, 32768, 65536};

/* One labelled series: a counter uses count; a histogram count, sum and buckets. */
typedef struct {
    char labels[LABELS_MAX];     /* `route="/healthz",status="200"`, or "" */
    uint64_t count;
    double sum;
    uint64_t bucket[MAX_BOUNDS]; /* observations <= each bound (not cumulative) */
} series;

typedef struct {
    const char *name, *help;
    const double *bounds;        /* NULL: a counter */
    int n_bounds;
    series *s;
    int n, cap;
} family;

enum { F_REQUESTS, F_LATENCY, F_SAMPLES, F_ANOMALIES, F_SCORES, F_BATCH, F_QUEUE, F_DB_WRITE,
       F_DB_ERRORS, F_SINK_ROWS, F_SINK_RESENT, F_SINK_ERRORS, F_PAYLOAD_LOG, N_FAMILIES };

#define NB(a) (int)(sizeof a / sizeof a[0])

struct metrics {
    pthread_mutex_t lock;        /* guards every family */
    family f[N_FAMILIES];
};

static series *find_series(family *f, const char *labels);

metrics *metrics_create(void) {
    metrics *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    const family init[N_FAMILIES] = {
        [F_REQUESTS] = {"anodmd_http_requests_total", "HTTP requests answered, by route and status.",
                        NULL, 0, NULL, 0, 0},
        [F_LATENCY] = {"anodmd_http_request_duration_seconds",
                       "Time from a request's headers to its response, by route.", TIME_BOUNDS,
                       NB(TIME_BOUNDS), NULL, 0, 0},
        [F_SAMPLES] = {"anodmd_samples_scored_total", "Samples scored, by model.", NULL, 0,
                       NULL, 0, 0},
        [F_ANOMALIES] = {"anodmd_anomalies_total", "Samples flagged as anomalies, by model.",
                         NULL, 0, NULL, 0, 0},
        [F_SCORES] = {"anodmd_score", "Fused scores given, by model (compare with the "
                      "model's threshold).", SCORE_BOUNDS, NB(SCORE_BOUNDS), NULL, 0, 0},
        [F_BATCH] = {"anodmd_batch_size",
                     "Samples per scorer call (requests batched together), by model.",
                     BATCH_BOUNDS, NB(BATCH_BOUNDS), NULL, 0, 0},
        [F_QUEUE] = {"anodmd_queue_duration_seconds", "Time a score request waited in its "
                     "model's queue before a worker took it, by model.", TIME_BOUNDS,
                     NB(TIME_BOUNDS), NULL, 0, 0},
        [F_DB_WRITE] = {"anodmd_db_write_seconds", "Time to write and commit one log "
                        "transaction (group commit).", TIME_BOUNDS, NB(TIME_BOUNDS), NULL, 0, 0},
        [F_DB_ERRORS] = {"anodmd_db_errors_total", "Log transactions that failed.", NULL, 0,
                         NULL, 0, 0},
        [F_SINK_ROWS] = {"anodmd_sink_rows_total", "Log rows the sink inserted into "
                         "PostgreSQL.", NULL, 0, NULL, 0, 0},
        [F_SINK_RESENT] = {"anodmd_sink_resent_rows_total", "Log rows the sink sent that "
                           "PostgreSQL already held (resent after a crash or a lost "
                           "confirmation; not inserted again).", NULL, 0, NULL, 0, 0},
        [F_SINK_ERRORS] = {"anodmd_sink_errors_total", "Sink connections and batches that "
                           "failed.", NULL, 0, NULL, 0, 0},
        [F_PAYLOAD_LOG] = {"anodmd_payload_log_events_total", "Payload-log events (CloudEvents) "
                           "by result: sent (the sink took it), failed (refused or not "
                           "delivered after the retries), dropped (the queue was full, or "
                           "left at shutdown).", NULL, 0, NULL, 0, 0},
    };
    memcpy(m->f, init, sizeof init);
    pthread_mutex_init(&m->lock, NULL);
    /* The unlabelled counter exists from the start, so a scraper sees 0, not nothing. */
    if (find_series(&m->f[F_DB_ERRORS], "")) return m;
    metrics_free(m);
    return NULL;
}

void metrics_free(metrics *m) {
    if (!m) return;
    for (int i = 0; i < N_FAMILIES; i++) free(m->f[i].s);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

/* The series of f with these labels, added when new; NULL when out of memory (the
 * observation is then lost, which a metric can afford and a request cannot notice). */
static series *find_series(family *f, const char *labels) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->s[i].labels, labels)) return &f->s[i];
    if (f->n == f->cap) {
        int cap = f->cap ? 2 * f->cap : 8;
        series *s = realloc(f->s, (size_t)cap * sizeof *s);
        if (!s) return NULL;
        f->s = s;
        f->cap = cap;
    }
    series *s = &f->s[f->n++];
    memset(s, 0, sizeof *s);
    snprintf(s->labels, sizeof s->labels, "%s", labels);
    return s;
}

/* Add v (times count) to series s of f. Caller holds the lock. */
static void add_to(const family *f, series *s, double v, uint64_t count) {
    s->count += count;
    s->sum += v * (double)count;
    for (int i = 0; i < f->n_bounds; i++)
        if (v <= f->bounds[i]) {
            s->bucket[i] += count;
            break;
        }
}

/* Add v (times count) to the series of f with these labels. Caller holds the lock. */
static void observe(family *f, const char *labels, double v, uint64_t count) {
    series *s = find_series(f, labels);
    if (s) add_to(f, s, v, count);
}

/* Label values here are route patterns, status numbers and model names, which hold no
 * quote, backslash or newline, so they need no escaping. */
void metrics_request(metrics *m, const char *route, int status, double seconds) {
    char by_status[LABELS_MAX], by_route[LABELS_MAX];
    snprintf(by_status, sizeof by_status, "route=\"%s\",status=\"%d\"", route, status);
    snprintf(by_route, sizeof by_route, "route=\"%s\"", route);
    pthread_mutex_lock(&m->lock);
    observe(&m->f[F_REQUESTS], by_status, 0, 1);
    observe(&m->f[F_LATENCY], by_route, seconds, 1);
    pthread_mutex_unlock(&m->lock);
}

void metrics_scored(metrics *m, const char *model, int n, int anomalies) {
    char labels[LABELS_MAX];
    snprintf(labels, sizeof labels, "model=\"%s\"", model);
    pthread_mutex_lock(&m->lock);
    observe(&m->f[F_SAMPLES], labels, 0, (uint64_t)n);
    observe(&m->f[F_ANOMALIES], labels, 0, (uint64_t)anomalies);
    observe(&m->f[F_BATCH], labels, n, 1);
    pthread_mutex_unlock(&m->lock);
}

void metrics_queued(metrics *m, const char *model, double seconds) {
    char labels[LABELS_MAX];
    snprintf(labels, sizeof labels, "model=\"%s\"", model);
    pthread_mutex_lock(&m->lock);
    observe(&m->f[F_QUEUE], labels, seconds, 1);
    pthread_mutex_unlock(&m->lock);
}

void metrics_scores(metrics *m, const char *model, const detector_result *res, int n) {
    char labels[LABELS_MAX];
    snprintf(labels, sizeof labels, "model=\"%s\"", model);
    pthread_mutex_lock(&m->lock);
    series *s = find_series(&m->f[F_SCORES], labels);
    for (int i = 0; s && i < n; i++)
        if (isfinite(res[i].score)) add_to(&m->f[F_SCORES], s, res[i].score, 1);
    pthread_mutex_unlock(&m->lock);
}

void metrics_db_write(metrics *m, double seconds, int ok) {
    pthread_mutex_lock(&m->lock);
    observe(&m->f[F_DB_WRITE], "", seconds, 1);
    observe(&m->f[F_DB_ERRORS], "", 0, ok ? 0 : 1);
    pthread_mutex_unlock(&m->lock);
}

void metrics_sink(metrics *m, uint64_t inserted, uint64_t resent, int ok) {
    pthread_mutex_lock(&m->lock);
    observe(&m->f[F_SINK_ROWS], "", 0, inserted);
    observe(&m->f[F_SINK_RESENT], "", 0, resent);
    observe(&m->f[F_SINK_ERRORS], "", 0, ok ? 0 : 1);
    pthread_mutex_unlock(&m->lock);
}

void metrics_payload_log(metrics *m, const char *result, uint64_t n) {
    char labels[LABELS_MAX];
    snprintf(labels, sizeof labels, "result=\"%s\"", result);
    pthread_mutex_lock(&m->lock);
    observe(&m->f[F_PAYLOAD_LOG], labels, 0, n);
    pthread_mutex_unlock(&m->lock);
}

/* name{labels[,extra]} — the braces only when there is a label. */
static void series_name(FILE *out, const char *name, const char *suffix, const char *labels,
                        const char *extra) {
    int any = *labels || *extra;
    fprintf(out, "%s%s%s%s%s%s%s", name, suffix, any ? "{" : "", labels,
            *labels && *extra ? "," : "", extra, any ? "}" : "");
}

static void render_family(FILE *out, const family *f) {
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
            f->bounds ? "histogram" : "counter");
    for (int i = 0; i < f->n; i++) {
        const series *s = &f->s[i];
        if (!f->bounds) {
            series_name(out, f->name, "", s->labels, "");
            fprintf(out, " %llu\n", (unsigned long long)s->count);
            continue;
        }
        uint64_t cumulative = 0;
        char le[48];
        for (int b = 0; b < f->n_bounds; b++) {
            cumulative += s->bucket[b];
            snprintf(le, sizeof le, "le=\"%g\"", f->bounds[b]);
            series_name(out, f->name, "_bucket", s->labels, le);
            fprintf(out, " %llu\n", (unsigned long long)cumulative);
        }
        series_name(out, f->name, "_bucket", s->labels, "le=\"+Inf\"");
        fprintf(out, " %llu\n", (unsigned long long)s->count);
        series_name(out, f->name, "_sum", s->labels, "");
        fprintf(out, " %.9g\n", s->sum);
        series_name(out, f->name, "_count", s->labels, "");
        fprintf(out, " %llu\n", (unsigned long long)s->count);
    }
}

char *metrics_render(metrics *m, const metrics_gauges *g) {
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (!out) return NULL;
    pthread_mutex_lock(&m->lock);
    for (int i = 0; i < N_FAMILIES; i++) render_family(out, &m->f[i]);
    pthread_mutex_unlock(&m->lock);
    fprintf(out, "# HELP anodmd_models_loaded Models being served.\n"
            "# TYPE anodmd_models_loaded gauge\nanodmd_models_loaded %d\n"
            "# HELP anodmd_log_queue_depth Score rows waiting for the log writer.\n"
            "# TYPE anodmd_log_queue_depth gauge\nanodmd_log_queue_depth %ld\n"
            "# HELP anodmd_score_queue_depth Score requests waiting to join a batch.\n"
            "# TYPE anodmd_score_queue_depth gauge\nanodmd_score_queue_depth %ld\n",
            g->models_loaded, g->log_queue, g->score_queue);
    if (g->sink)
        fprintf(out, "# HELP anodmd_sink_up 1 while the sink is connected to PostgreSQL.\n"
                "# TYPE anodmd_sink_up gauge\nanodmd_sink_up %d\n"
                "# HELP anodmd_sink_backlog_rows Log rows not yet confirmed by PostgreSQL.\n"
                "# TYPE anodmd_sink_backlog_rows gauge\nanodmd_sink_backlog_rows %lld\n"
                "# HELP anodmd_sink_oldest_unshipped_seconds Age of the oldest log row not "
                "yet confirmed by PostgreSQL (0 when none).\n"
                "# TYPE anodmd_sink_oldest_unshipped_seconds gauge\n"
                "anodmd_sink_oldest_unshipped_seconds %.3f\n",
                g->sink_up, g->sink_backlog, g->sink_oldest_seconds);
    if (g->payload_log)
        fprintf(out, "# HELP anodmd_payload_log_queue_depth Payload-log events waiting to "
                "be sent.\n# TYPE anodmd_payload_log_queue_depth gauge\n"
                "anodmd_payload_log_queue_depth %ld\n", g->payload_log_queue);
    if (ferror(out) | fclose(out)) {
        free(text);
        return NULL;
    }
    return text;
}
