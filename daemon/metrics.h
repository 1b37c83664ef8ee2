/* metrics.h — anodmd's counters and histograms, for GET /metrics (Prometheus text).
 *
 * Every request, scored batch and log commit adds to a family of labelled series (by
 * route and status, by model, or none). Updates are a few additions under one mutex:
 * they happen once per request, batch or commit (a batch's scores go into the score
 * histogram under one lock), never once per sample, so a lock costs less
 * than it would to keep a lock-free map of label sets that grow at run time (routes
 * and status codes are not known up front, and models change on reload). Series are
 * never removed, so a counter a scraper has seen never goes backwards. */
#ifndef ANODMD_METRICS_H
#define ANODMD_METRICS_H

#include <stdint.h>

#include "detector.h"

typedef struct metrics metrics;

/* Gauges read at scrape time from the modules that own them. */
typedef struct {
    int models_loaded;
    long log_queue;              /* score rows waiting for the log writer */
    long score_queue;            /* score requests waiting for a batch */
    int sink;                    /* a sink is configured: the three below are shown */
    int sink_up;                 /* it is connected to PostgreSQL */
    long long sink_backlog;      /* rows committed to the log and not confirmed by PostgreSQL */
    double sink_oldest_seconds;  /* age of the oldest of them (0 when none) */
    int payload_log;             /* payload logging is on: the one below is shown */
    long payload_log_queue;      /* its events waiting to be sent */
} metrics_gauges;

/* Empty families; NULL when out of memory. */
metrics *metrics_create(void);
void metrics_free(metrics *m);
/* One answered request: its route (the OpenAPI path), status and time taken. */
void metrics_request(metrics *m, const char *route, int status, double seconds);
/* One scorer call over n samples (one request's or several batched) of which anomalies
 * were flagged, by model. */
void metrics_scored(metrics *m, const char *model, int n, int anomalies);
/* One score request's wait in its model's queue, from joining it to a worker taking it
 * (Triton's nv_inference_queue_duration_us): the signal to add replicas on, since it grows
 * as soon as the workers fall behind, before latency or CPU tell. */
void metrics_queued(metrics *m, const char *model, double seconds);
/* The fused scores of one scorer call's n results, by model, into the score histogram
 * (a non-finite score is left out: it would make the sum useless). */
void metrics_scores(metrics *m, const char *model, const detector_result *res, int n);
/* One log transaction: how long it took and whether it committed. */
void metrics_db_write(metrics *m, double seconds, int ok);
/* The sink (daemon/pgsink.h): one batch sent to PostgreSQL, of which inserted rows were
 * new there and resent rows already held (a resend after a crash or a lost confirmation),
 * or one failure (a connection or a batch). metrics_sink(m, 0, 0, 1) shows the counters
 * at 0. */
void metrics_sink(metrics *m, uint64_t inserted, uint64_t resent, int ok);
/* n payload-log events (daemon/payloadlog.h) with result "sent", "failed" or "dropped";
 * n = 0 shows the counter at 0. */
void metrics_payload_log(metrics *m, const char *result, uint64_t n);
/* Everything in the Prometheus text exposition format 0.0.4 (malloc'd; NULL if OOM). */
char *metrics_render(metrics *m, const metrics_gauges *g);

#endif
