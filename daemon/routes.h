/* routes.h — what each URL does: the request handlers of anodmd.
 *
 * The HTTP layer (http.c) owns connections, bodies and limits; this module gets a
 * whole request and answers it, so the handlers read like the API they implement
 * and never see libmicrohttpd. Scoring is handed to the batcher's workers (batch.h);
 * everything else is answered at once. Every reply body is made by proto/api.c: JSON,
 * or for the V2 binary extension JSON followed by tensors. */
#ifndef ANODMD_ROUTES_H
#define ANODMD_ROUTES_H

#include <stddef.h>

#include "auth.h"
#include "batch.h"
#include "log.h"
#include "metrics.h"
#include "payloadlog.h"
#include "pghistory.h"
#include "pgsink.h"
#include "registry.h"
#include "samples.h"

/* What the handlers serve from. */
typedef struct {
    registry *reg;
    scorelog *log;
    metrics *metrics;
    batcher *batch;
    const auth_keys *keys;       /* wanted on every route but the health probes; NULL: none */
    int max_batch;
    int dashboard;               /* serve the dashboard's files (GET /, /dashboard/...) */
    sample_memory *recent;       /* inputs of the last recent_capacity scores; NULL: none */
    int recent_capacity;
    int answer_first;            /* answer before the log commit (answer_after_commit off) */
    const char *replica_id;      /* this daemon's, named in its log's records */
    pgsink *sink;                /* shipping the log to PostgreSQL; NULL: none */
    pghistory *history;          /* GET /v1/scores and /v1/stats read it; NULL: the log */
    payload_log *plog;           /* KServe-compatible payload logging; NULL: off */
} app;

/* One whole request. query returns a query-string parameter and header a request header,
 * each NULL when absent. A handler that hands the request to a worker parks conn first and
 * the worker wakes it once the reply is filled in. */
typedef struct {
    const char *method, *path;
    const char *body;
    size_t len;
    const char *(*query)(void *conn, const char *key);
    const char *(*header)(void *conn, const char *name);
    void (*park)(void *conn), (*wake)(void *conn);
    void *conn;
    const char *authorization;   /* the Authorization header, NULL when absent */
    const char *content_type;    /* the Content-Type header, NULL when absent */
    int draining;                /* the daemon is shutting down: not ready */
} request;

/* The answer: status, malloc'd body (NULL only when out of memory), its type (NULL:
 * JSON), for a 405 the methods the path allows, for a 401 the WWW-Authenticate
 * challenge, and for the dashboard's files their Content-Security-Policy. A body holding
 * binary tensors (the Open Inference Protocol's extension) gives its length, len, and
 * json_len, the length of the JSON before them (sent as API_V2_HEADER_LENGTH); other
 * bodies are NUL-terminated text and leave both 0. v2: the request is one of the V2
 * routes', whose errors take the Open Inference Protocol's shape. */
typedef struct {
    int status;
    char *body;
    size_t len, json_len;
    const char *content_type;
    const char *allow;
    const char *challenge;
    const char *csp;
    int v2;
} reply;

/* Route rq to its handler and fill out: 0 when out is filled now, 1 when a worker will
 * fill it (out must then stay put until rq->wake(rq->conn) is called). The handlers are
 * done with rq->body when this returns: the caller may free it. */
int routes_handle(app *a, const request *rq, reply *out);
/* The route path is on, as proto/openapi.yaml writes it ("/v1/models/{name}/score"), or
 * "unmatched": the label metrics count requests under. */
const char *routes_label(const char *path);
/* An error reply (for the HTTP layer's own refusals, such as an oversized body), in the
 * shape out->v2 says. */
void routes_error(reply *out, int status, const char *code, const char *message);
/* 1 when path is /v2 or under it: its errors take the Open Inference Protocol's shape. */
int routes_v2(const char *path);

#endif
