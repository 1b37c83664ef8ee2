/* anodmd's HTTP server on libmicrohttpd (see http.h). */
#include "http.h"
#include "clock.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* How often the reaper looks for connections past their deadline. */
#define REAP_TICK_NS 100000000LL

/* An open connection, as the reaper sees it. */
typedef struct conn_entry {
    struct conn_entry *prev, *next;
    MHD_socket fd;
    long long deadline_ns;       /* monotonic time it is cut at; 0 while a worker scores */
    int cut;
} conn_entry;

struct http_server {
    struct MHD_Daemon *mhd;
    const config *cfg;
    app *a;
    atomic_int in_flight;        /* requests begun and not yet completed */
    atomic_int draining;         /* not ready: shutting down (http_set_unready) */
    int port;
    /* The reaper (see http.h): every open connection, and a thread cutting those past
     * their deadline. conns_lock guards the list and every entry's fields. */
    pthread_mutex_t conns_lock;
    pthread_cond_t reaper_wake;
    conn_entry *conns;
    pthread_t reaper;
    int reaper_stop;
};

/* One request's state while its body arrives and, when a worker answers it, while the
 * connection is parked. */
typedef struct {
    char *body;
    size_t len, cap;
    int too_large;
    size_t seen;                 /* body bytes received, kept or not */
    conn_entry *conn;            /* its connection's reaper entry; NULL if none */
    int parked;                  /* handed to a worker, which fills r and wakes us */
    reply r;
    double start;                /* when its headers arrived (clock_seconds), for latency */
} request_state;

/* Give e timeout_seconds from now (on), or no deadline while a worker has it (off). */
static void conn_arm(http_server *s, conn_entry *e, int on) {
    if (!e) return;
    pthread_mutex_lock(&s->conns_lock);
    e->deadline_ns = on ? clock_ns() + s->cfg->timeout_seconds * 1000000000LL : 0;
    pthread_mutex_unlock(&s->conns_lock);
}

/* libmicrohttpd's connection start and end: list the connection for the reaper, with a
 * deadline from now, and take it off before its socket is closed. */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
    http_server *s = cls;
    conn_entry *e = *socket_context;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *fd = MHD_get_connection_info(
            c, MHD_CONNECTION_INFO_CONNECTION_FD);
        /* Without an entry the connection has only libmicrohttpd's idle timeout. */
        if (!fd || !(e = calloc(1, sizeof *e))) return;
        e->fd = fd->connect_fd;
        e->deadline_ns = clock_ns() + s->cfg->timeout_seconds * 1000000000LL;
        pthread_mutex_lock(&s->conns_lock);
        e->next = s->conns;
        if (s->conns) s->conns->prev = e;
        s->conns = e;
        pthread_mutex_unlock(&s->conns_lock);
        *socket_context = e;
    } else if (e) {
        pthread_mutex_lock(&s->conns_lock);
        if (e->prev) e->prev->next = e->next;
        else s->conns = e->next;
        if (e->next) e->next->prev = e->prev;
        pthread_mutex_unlock(&s->conns_lock);
        free(e);
        *socket_context = NULL;
    }
}

/* The reaper: every tick, shut down the sockets of connections past their deadline;
 * libmicrohttpd then sees them end and closes them as it would any other. */
static void *reaper_main(void *arg) {
    http_server *s = arg;
    pthread_mutex_lock(&s->conns_lock);
    while (!s->reaper_stop) {
        long long wake = clock_ns() + REAP_TICK_NS;
        struct timespec t = {(time_t)(wake / 1000000000LL), (long)(wake % 1000000000LL)};
        pthread_cond_timedwait(&s->reaper_wake, &s->conns_lock, &t);
        long long now = clock_ns();
        for (conn_entry *e = s->conns; e; e = e->next)
            if (e->deadline_ns && now >= e->deadline_ns && !e->cut) {
                shutdown(e->fd, SHUT_RDWR);
                e->cut = 1;
            }
    }
    pthread_mutex_unlock(&s->conns_lock);
    return NULL;
}

static const char OOM_BODY[] =
    "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
static const char OOM_BODY_V2[] = "{\"error\":\"internal: out of memory\"}";

/* Count the reply to the request for url begun at st->start. */
static void count_reply(http_server *s, const request_state *st, const char *url, int status) {
    metrics_request(s->a->metrics, routes_label(url), status, clock_seconds() - st->start);
}

/* Send reply r (taking its body) to the request for url on c, and count it. */
static enum MHD_Result send_reply(http_server *s, struct MHD_Connection *c,
                                  const request_state *st, const char *url, reply *r) {
    struct MHD_Response *resp;
    if (r->body) {
        resp = MHD_create_response_from_buffer(r->len ? r->len : strlen(r->body), r->body,
                                               MHD_RESPMEM_MUST_FREE);
        if (!resp) free(r->body);
    } else {
        const char *oom = r->v2 ? OOM_BODY_V2 : OOM_BODY;
        r->status = 500;
        r->content_type = NULL;
        r->json_len = 0;
        resp = MHD_create_response_from_buffer(strlen(oom), (void *)oom, MHD_RESPMEM_PERSISTENT);
    }
    r->body = NULL;
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            r->content_type ? r->content_type : "application/json");
    if (r->json_len) {
        char n[24];
        snprintf(n, sizeof n, "%zu", r->json_len);
        MHD_add_response_header(resp, API_V2_HEADER_LENGTH, n);
    }
    if (r->allow) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
    if (r->challenge)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, r->challenge);
    if (r->csp) {
        MHD_add_response_header(resp, "Content-Security-Policy", r->csp);
        MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    }
    if (atomic_load(&s->draining))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    if (ok == MHD_YES) count_reply(s, st, url, r->status);
    conn_arm(s, st->conn, 1);    /* the client has timeout_seconds to take the reply */
    return ok;
}

static enum MHD_Result send_error(http_server *s, struct MHD_Connection *c,
                                  const request_state *st, const char *url, int status,
                                  const char *code, const char *message) {
    reply r = {.v2 = routes_v2(url)};
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

static const char *header_value(void *conn, const char *name) {
    return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
}

/* A parked connection leaves the polling thread's event loop until woken, so the thread
 * serves other connections while a worker scores. */
static void park(void *conn) { MHD_suspend_connection(conn); }

/* Called by the worker once the reply is filled in: MHD calls on_request again. */
static void wake(void *conn) { MHD_resume_connection(conn); }

/* The value of a hexadecimal digit, or -1. */
static int hex_digit(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* libmicrohttpd's unescaping of paths and query values (%HH), except that %00 stays as it
 * is: decoded, it would end the string early, so that GET /v1/models/tiny%00/map read as
 * GET /v1/models/tiny. */
static size_t unescape(void *cls, struct MHD_Connection *c, char *text) {
    (void)cls;
    (void)c;
    char *out = text;
    for (const char *in = text; *in;) {
        int hi = *in == '%' ? hex_digit(in[1]) : -1, lo = hi >= 0 ? hex_digit(in[2]) : -1;
        if (lo >= 0 && (hi | lo)) {
            *out++ = (char)(hi * 16 + lo);
            in += 3;
        } else {
            *out++ = *in++;
        }
    }
    *out = 0;
    return (size_t)(out - text);
}

/* The first call for a request: its state, and an early 413 from Content-Length. */
static enum MHD_Result begin_request(http_server *s, struct MHD_Connection *c,
                                     const char *url, void **con_cls) {
    request_state *st = calloc(1, sizeof *st);
    if (!st) return MHD_NO;
    st->start = clock_seconds();
    const union MHD_ConnectionInfo *ctx = MHD_get_connection_info(
        c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    st->conn = ctx ? ctx->socket_context : NULL;
    *con_cls = st;
    atomic_fetch_add(&s->in_flight, 1);
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *te = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_TRANSFER_ENCODING);
    /* Framing that a proxy in front might read otherwise (request smuggling), or that
     * libmicrohttpd would wait on for ever: refused, and the connection closed. */
    if (te && (cl || strcasecmp(te, "chunked"))) {
        st->too_large = 1;       /* nothing of the body is kept */
        return send_error(s, c, st, url, 400, "invalid_request",
                          cl ? "both Content-Length and Transfer-Encoding"
                             : "the only Transfer-Encoding taken is chunked");
    }
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
        st->seen += *upload_data_size;
        if (append_body(st, upload_data, *upload_data_size, s->cfg->max_body_bytes))
            return send_error(s, c, st, url, 500, "internal", "out of memory");
        *upload_data_size = 0;
        /* An oversized body (chunked, so not refused from its Content-Length) is read to
         * its end for the 413, but one still coming at twice the limit is cut off. */
        return st->too_large && st->seen / 2 > s->cfg->max_body_bytes ? MHD_NO : MHD_YES;
    }
    if (st->too_large)
        return send_error(s, c, st, url, 413, "body_too_large",
                          "the request body exceeds max_body_bytes");
    if (st->parked) return send_reply(s, c, st, url, &st->r);   /* woken: answered */
    request rq = {.method = method, .path = url, .body = st->body ? st->body : "",
                  .len = st->len, .query = query_value, .header = header_value, .park = park,
                  .wake = wake, .conn = c,
                  .authorization = header_value(c, MHD_HTTP_HEADER_AUTHORIZATION),
                  .content_type = header_value(c, MHD_HTTP_HEADER_CONTENT_TYPE),
                  .draining = atomic_load(&s->draining)};
    conn_arm(s, st->conn, 0);    /* whole: no deadline while it is handled */
    int handed_over = routes_handle(s->a, &rq, &st->r);
    /* Decoded by now (routes.h): a request waiting for its worker does not keep its body,
     * which under many large concurrent requests was a third of the peak memory. */
    free(st->body);
    st->body = NULL;
    st->len = st->cap = 0;
    if (handed_over) {
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
    conn_arm(s, st->conn, 1);    /* the next request has timeout_seconds to arrive whole */
    free(st->body);
    free(st->r.body);            /* a reply that was never sent */
    free(st);
    *con_cls = NULL;
    atomic_fetch_sub(&s->in_flight, 1);
}

/* Stop and join the reaper; then the list is libmicrohttpd's to empty as it closes. */
static void stop_reaper(http_server *s) {
    pthread_mutex_lock(&s->conns_lock);
    s->reaper_stop = 1;
    pthread_cond_signal(&s->reaper_wake);
    pthread_mutex_unlock(&s->conns_lock);
    pthread_join(s->reaper, NULL);
}

http_server *http_start(const config *cfg, app *a, char *err, size_t errlen) {
    http_server *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->cfg = cfg;
    s->a = a;
    pthread_mutex_init(&s->conns_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->reaper_wake, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&s->reaper, NULL, reaper_main, s)) {
        snprintf(err, errlen, "cannot start the connection reaper thread");
        pthread_cond_destroy(&s->reaper_wake);
        pthread_mutex_destroy(&s->conns_lock);
        free(s);
        return NULL;
    }
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cfg->port)};
    inet_pton(AF_INET, cfg->bind, &addr.sin_addr);   /* checked by config_set */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC |
                     MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    s->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg->threads, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)cfg->max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)cfg->timeout_seconds, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_UNESCAPE_CALLBACK, unescape,
        NULL, MHD_OPTION_END);
    /* No MHD_OPTION_LISTENING_ADDRESS_REUSE: it means SO_REUSEPORT, under which a second
     * daemon on the same port binds too and silently takes part of the traffic. The
     * default SO_REUSEADDR still lets a restart bind while old connections linger. */
    if (!s->mhd) {
        snprintf(err, errlen, "cannot listen on %s:%d (in use, or not an address here?)",
                 cfg->bind, cfg->port);
        stop_reaper(s);
        pthread_cond_destroy(&s->reaper_wake);
        pthread_mutex_destroy(&s->conns_lock);
        free(s);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : cfg->port;
    return s;
}

int http_port(const http_server *s) { return s->port; }

void http_set_unready(http_server *s) { atomic_store(&s->draining, 1); }

void http_stop(http_server *s) {
    if (!s) return;
    http_set_unready(s);
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
    stop_reaper(s);
    MHD_stop_daemon(s->mhd);
    pthread_cond_destroy(&s->reaper_wake);
    pthread_mutex_destroy(&s->conns_lock);
    free(s);
}
