/* anodmd's HTTP server on libmicrohttpd (see http.h). */
#include "http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct http_server {
    struct MHD_Daemon *mhd;
    const config *cfg;
    app *a;
    atomic_int in_flight;        /* requests begun and not yet completed */
    atomic_int draining;
    int port;
};

/* One request's state while its body arrives and, when a worker answers it, while the
 * connection is parked. */
typedef struct {
    char *body;
    size_t len, cap;
    int too_large;
    int parked;                  /* handed to a worker, which fills r and wakes us */
    reply r;
    struct timespec start;       /* when its headers arrived, for the latency metric */
} request_state;

static const char OOM_BODY[] =
    "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";

/* Count the reply to the request for url begun at st->start. */
static void count_reply(http_server *s, const request_state *st, const char *url, int status) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    metrics_request(s->a->metrics, routes_label(url), status,
                    (double)(now.tv_sec - st->start.tv_sec) +
                        (double)(now.tv_nsec - st->start.tv_nsec) * 1e-9);
}

/* Send reply r (taking its body) to the request for url on c, and count it. */
static enum MHD_Result send_reply(http_server *s, struct MHD_Connection *c,
                                  const request_state *st, const char *url, reply *r) {
    struct MHD_Response *resp;
    if (r->body) {
        resp = MHD_create_response_from_buffer(strlen(r->body), r->body, MHD_RESPMEM_MUST_FREE);
        if (!resp) free(r->body);
    } else {
        r->status = 500;
        r->content_type = NULL;
        resp = MHD_create_response_from_buffer(sizeof OOM_BODY - 1, (void *)OOM_BODY,
                                               MHD_RESPMEM_PERSISTENT);
    }
    r->body = NULL;
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            r->content_type ? r->content_type : "application/json");
    if (r->allow) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
    if (r->challenge)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, r->challenge);
    if (atomic_load(&s->draining))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    if (ok == MHD_YES) count_reply(s, st, url, r->status);
    return ok;
}

static enum MHD_Result send_error(http_server *s, struct MHD_Connection *c,
                                  const request_state *st, const char *url, int status,
                                  const char *code, const char *message) {
    reply r = {0};
    routes_error(&r, status, code, message);
    return send_reply(s, c, st, url, &r);
}

/* Append a chunk of body, or mark the request too large once past the limit. */
static int append_body(request_state *st, const char *data, size_t n, size_t limit) {
    if (st->too_large || n > limit - st->len) {
        st->too_large = 1;
        return 0;
    }
    if (st->len + n + 1 > st->cap) {
        size_t cap = st->cap ? st->cap : 4096;
        while (cap < st->len + n + 1) cap *= 2;
        char *b = realloc(st->body, cap);
        if (!b) return -1;
        st->body = b;
        st->cap = cap;
    }
    memcpy(st->body + st->len, data, n);
    st->len += n;
    st->body[st->len] = 0;
    return 0;
}

static const char *query_value(void *conn, const char *key) {
    return MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, key);
}

/* A parked connection leaves the polling thread's event loop until woken, so the thread
 * serves other connections while a worker scores. */
static void park(void *conn) { MHD_suspend_connection(conn); }

/* Called by the worker once the reply is filled in: MHD calls on_request again. */
static void wake(void *conn) { MHD_resume_connection(conn); }

/* The first call for a request: its state, and an early 413 from Content-Length. */
static enum MHD_Result begin_request(http_server *s, struct MHD_Connection *c,
                                     const char *url, void **con_cls) {
    request_state *st = calloc(1, sizeof *st);
    if (!st) return MHD_NO;
    clock_gettime(CLOCK_MONOTONIC, &st->start);
    *con_cls = st;
    atomic_fetch_add(&s->in_flight, 1);
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) > s->cfg->max_body_bytes) {
        st->too_large = 1;
        return send_error(s, c, st, url, 413, "body_too_large",
                          "the request body exceeds max_body_bytes");
    }
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    (void)version;
    http_server *s = cls;
    request_state *st = *con_cls;
    if (!st) return begin_request(s, c, url, con_cls);
    if (*upload_data_size) {
        if (append_body(st, upload_data, *upload_data_size, s->cfg->max_body_bytes))
            return send_error(s, c, st, url, 500, "internal", "out of memory");
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (st->too_large)
        return send_error(s, c, st, url, 413, "body_too_large",
                          "the request body exceeds max_body_bytes");
    if (st->parked) return send_reply(s, c, st, url, &st->r);   /* woken: answered */
    request rq = {.method = method, .path = url, .body = st->body ? st->body : "",
                  .len = st->len, .query = query_value, .park = park, .wake = wake, .conn = c,
                  .authorization = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                               MHD_HTTP_HEADER_AUTHORIZATION),
                  .draining = atomic_load(&s->draining)};
    if (routes_handle(s->a, &rq, &st->r)) {
        st->parked = 1;
        return MHD_YES;
    }
    return send_reply(s, c, st, url, &st->r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode why) {
    (void)c;
    (void)why;
    http_server *s = cls;
    request_state *st = *con_cls;
    if (!st) return;
    free(st->body);
    free(st->r.body);            /* a reply that was never sent */
    free(st);
    *con_cls = NULL;
    atomic_fetch_sub(&s->in_flight, 1);
}

http_server *http_start(const config *cfg, app *a, char *err, size_t errlen) {
    http_server *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->cfg = cfg;
    s->a = a;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cfg->port)};
    inet_pton(AF_INET, cfg->bind, &addr.sin_addr);   /* checked by config_set */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC |
                     MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    s->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg->threads, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)cfg->max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)cfg->timeout_seconds, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, MHD_OPTION_END);
    if (!s->mhd) {
        snprintf(err, errlen, "cannot listen on %s:%d (in use, or not an address here?)",
                 cfg->bind, cfg->port);
        free(s);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : cfg->port;
    return s;
}

int http_port(const http_server *s) { return s->port; }

void http_stop(http_server *s) {
    if (!s) return;
    atomic_store(&s->draining, 1);
    MHD_socket fd = MHD_quiesce_daemon(s->mhd);
    if (fd != MHD_INVALID_SOCKET) close(fd);
    const struct timespec tick = {0, 10 * 1000 * 1000};
    for (long waited = 0; atomic_load(&s->in_flight) > 0 &&
                          waited < s->cfg->drain_seconds * 100L; waited++)
        nanosleep(&tick, NULL);
    if (atomic_load(&s->in_flight) > 0)
        fprintf(stderr, "anodmd: %d requests still running after %d s; stopping anyway\n",
                atomic_load(&s->in_flight), s->cfg->drain_seconds);
    /* libmicrohttpd must not stop with a connection parked: the workers finish and wake
     * every one first. */
    batch_stop(s->a->batch);
    MHD_stop_daemon(s->mhd);
    free(s);
}
