/* routes.h — what each URL does: the request handlers of anodmd.
 *
 * The HTTP layer (http.c) owns connections, bodies and limits; this module gets a
 * whole request and answers it, so the handlers read like the API they implement
 * and never see libmicrohttpd. Every reply body is JSON made by proto/api.c. */
#ifndef ANODMD_ROUTES_H
#define ANODMD_ROUTES_H

#include <stddef.h>

#include "log.h"
#include "metrics.h"
#include "registry.h"

/* What the handlers serve from. */
typedef struct {
    registry *reg;
    scorelog *log;
    metrics *metrics;
    int max_batch;
} app;

/* One whole request. query returns a query-string parameter, or NULL when absent. */
typedef struct {
    const char *method, *path;
    const char *body;
    size_t len;
    const char *(*query)(void *conn, const char *key);
    void *conn;
    int draining;                /* the daemon is shutting down: not ready */
} request;

/* The answer: status, malloc'd body (NULL only when out of memory), its type (NULL:
 * JSON), and for a 405 the methods the path allows. */
typedef struct {
    int status;
    char *body;
    const char *content_type;
    const char *allow;
} reply;

/* Route rq to its handler and fill out. */
void routes_handle(app *a, const request *rq, reply *out);
/* The route path is on, as proto/openapi.yaml writes it ("/v1/models/{name}/score"), or
 * "unmatched": the label metrics count requests under. */
const char *routes_label(const char *path);
/* An error reply (for the HTTP layer's own refusals, such as an oversized body). */
void routes_error(reply *out, int status, const char *code, const char *message);

#endif
