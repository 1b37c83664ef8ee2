/* KServe-compatible payload logging (daemon/payloadlog.h, proto/cloudevent.h; issue 16).
 *
 * - The wire format: a CloudEvent in binary mode, its header values percent-encoded, its
 *   time in RFC 3339; the sink's URL and the sink's answers parsed, malformed ones refused.
 * - Against a receiver run here (libmicrohttpd, on loopback): every scored request on
 *   every scoring route sends a request event with the body as sent and a response event
 *   with the answer as received, under one ce-id (the Ce-Id header, else the request's
 *   id, else a UUID), with KServe's types and attributes; a refused request sends none;
 *   mode request and mode response send only their kind; /metrics counts what was sent.
 * - A sink that is down, or answers 503: every score still answered at once; the events
 *   counted as failed or dropped, a 503 sent at most three times, a 400 once; the sink
 *   back up takes events again. A hostile sink (not HTTP, a head that never ends, no
 *   answer, a short body): events counted as failed, scores and daemon unharmed.
 * - A malformed URL or mode is refused at start, saying why. */
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "clock.h"
#include "cloudevent.h"
#include "daemon_harness.h"
#include "payloadlog.h"

/* ------------------------------------------------------------------ the wire format */

/* A header's value in a whole HTTP message, copied into out; 0 if absent. */
static int header_value(const char *msg, const char *name, char *out, size_t cap) {
    char key[80];
    snprintf(key, sizeof key, "\r\n%s: ", name);
    const char *p = strstr(msg, key);
    if (!p) return 0;
    p += strlen(key);
    size_t n = strcspn(p, "\r");
    snprintf(out, cap, "%.*s", (int)n, p);
    return 1;
}

TEST(payload_log_event_format) {
    const char data[] = "{\"sample\": [1]}";
    cloudevent e = {.type = CE_TYPE_REQUEST, .id = "a b\"c%d\xc3\xa9\n", .source = "pod-0",
                    .time_ns = 1764754200123456789LL, .content_type = "application/json",
                    .inference_service = "isvc", .namespace_name = "ns 1",
                    .component = "predictor", .endpoint = "default", .data = data,
                    .len = strlen(data)};
    size_t len;
    char *msg = cloudevent_post(&e, "sink.example:8080", "/in?x=1", &len), v[256];
    CHECK(msg != NULL);
    if (!msg) return;
    CHECK_MSG(!strncmp(msg, "POST /in?x=1 HTTP/1.1\r\nHost: sink.example:8080\r\n", 47), "%s", msg);
    CHECK(header_value(msg, "ce-id", v, sizeof v) && !strcmp(v, "a%20b%22c%25d%C3%A9%0A"));
    CHECK(header_value(msg, "ce-specversion", v, sizeof v) && !strcmp(v, "1.0"));
    CHECK(header_value(msg, "ce-type", v, sizeof v) &&
          !strcmp(v, "org.kubeflow.serving.inference.request"));
    CHECK(header_value(msg, "ce-source", v, sizeof v) && !strcmp(v, "pod-0"));
    CHECK(header_value(msg, "ce-time", v, sizeof v) && !strcmp(v, "2025-12-03T09:30:00.123456Z"));
    CHECK(header_value(msg, "ce-namespace", v, sizeof v) && !strcmp(v, "ns%201"));
    CHECK(header_value(msg, "ce-inferenceservicename", v, sizeof v) && !strcmp(v, "isvc"));
    CHECK(header_value(msg, "ce-component", v, sizeof v) && !strcmp(v, "predictor"));
    CHECK(header_value(msg, "ce-endpoint", v, sizeof v) && !strcmp(v, "default"));
    CHECK(header_value(msg, "Content-Type", v, sizeof v) && !strcmp(v, "application/json"));
    CHECK(header_value(msg, "Content-Length", v, sizeof v) && atoi(v) == (int)strlen(data));
    CHECK(!header_value(msg, "ce-jsonlength", v, sizeof v));
    CHECK(!header_value(msg, "ce-datacontenttype", v, sizeof v));
    const char *body = strstr(msg, "\r\n\r\n");
    CHECK(body && (size_t)(msg + len - body - 4) == strlen(data) && !memcmp(body + 4, data, strlen(data)));
    free(msg);
    /* Binary data, NULs and all, and the JSON part's length. */
    const char bin[] = {'{', '}', 0, 1, 2};
    e.data = bin;
    e.len = sizeof bin;
    e.json_len = 2;
    e.time_ns = 0;
    msg = cloudevent_post(&e, "h", "/", &len);
    CHECK(msg && header_value(msg, "ce-jsonlength", v, sizeof v) && !strcmp(v, "2"));
    CHECK(msg && header_value(msg, "ce-time", v, sizeof v) &&
          !strcmp(v, "1970-01-01T00:00:00.000000Z"));
    CHECK(msg && len > sizeof bin && !memcmp(msg + len - sizeof bin, bin, sizeof bin));
    free(msg);
}

TEST(payload_log_url_parse) {
    static const struct { const char *url, *host, *port, *authority, *path; } ok[] = {
        {"http://sink", "sink", "80", "sink", "/"},
        {"http://message-dumper.default/", "message-dumper.default", "80",
         "message-dumper.default", "/"},
        {"HTTP://127.0.0.1:8080/a/b?c=d&e", "127.0.0.1", "8080", "127.0.0.1:8080", "/a/b?c=d&e"},
        {"http://h:1?q", "h", "1", "h:1", "/?q"},
        {"http://[::1]:9000/x", "::1", "9000", "[::1]:9000", "/x"},
        {"http://broker-ingress.knative-eventing.svc.cluster.local/ns/default", 
         "broker-ingress.knative-eventing.svc.cluster.local", "80",
         "broker-ingress.knative-eventing.svc.cluster.local", "/ns/default"},
    };
    static const struct { const char *url, *why; } bad[] = {
        {"https://sink/", "https is not supported"}, {"ftp://sink/", "not an http:// URL"},
        {"sink:80", "not an http:// URL"}, {"http://", "no host"}, {"http:///x", "no host"},
        {"http://:80/", "no host"}, {"http://h:/", "port"}, {"http://h:0/", "port"},
        {"http://h:65536/", "port"}, {"http://h:8o/", "port"}, {"http://h:123456/", "port"},
        {"http://u:p@h/", "user part"}, {"http://h/a b", "spaces"}, {"http://h/\x01", "control"},
        {"http://h/#f", "fragment"}, {"http://h\xc3\xa9/", "non-ASCII"},
        {"http://[::1/", "']'"}, {"http://[xyz]/", "IPv6"}, {"http://[::1]x/", "junk"},
        {"http://h!/", "host"},
    };
    http_url u;
    char err[256];
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int rc = http_url_parse(ok[i].url, &u, err, sizeof err);
        CHECK_MSG(rc == 0 && !strcmp(u.host, ok[i].host) && !strcmp(u.port, ok[i].port) &&
                  !strcmp(u.authority, ok[i].authority) && !strcmp(u.path, ok[i].path),
                  "%s: rc %d (%s) host '%s' port '%s' authority '%s' path '%s'", ok[i].url, rc,
                  rc ? err : "", u.host, u.port, u.authority, u.path);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_FAILS_WITH(http_url_parse(bad[i].url, &u, err, sizeof err), err, bad[i].why);
    char *huge = malloc(HTTP_URL_MAX + 16);
    if (huge) {
        memset(huge, 'a', HTTP_URL_MAX + 15);
        memcpy(huge, "http://h/", 9);
        huge[HTTP_URL_MAX + 15] = 0;
        CHECK_FAILS_WITH(http_url_parse(huge, &u, err, sizeof err), err, "too long");
        free(huge);
    }
}

TEST(payload_log_reply_parse) {
    static const struct {
        const char *text;
        long head;               /* -2: the whole text's length */
        int status, close;
        long long length;
    } cases[] = {
        {"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n", -2, 202, 0, 0},
        {"HTTP/1.1 200 OK\r\ncontent-length:  5 \r\n\r\nhello", 40, 200, 0, 5},
        {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive, Close\r\n\r\n", -2,
         200, 1, 5},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", -2, 200, 1, -1},
        {"HTTP/1.1 500 Oops\r\n\r\n", -2, 500, 1, -1},
        {"HTTP/1.0 204 No Content\r\n\r\n", -2, 204, 1, 0},
        {"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n", -2, 200, 0, 2},
        {"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n", 25, 100, 0, 0},
        {"HTTP/1.1 204\r\n\r\n", -2, 204, 0, 0},
        {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", -2, 200, 0, 3},
        {"HTTP/1.1 200 OK\r\nContent-Length: 3", 0, 0, 0, 0},
        {"HTTP/1.1 200 OK\r\n", 0, 0, 0, 0},
        {"", 0, 0, 0, 0},
        {"HTTP/2 200\r\n\r\n", -1, 0, 0, 0},
        {"HTTP/1.1 20 OK\r\n\r\n", -1, 0, 0, 0},
        {"HTTP/1.1 020 OK\r\n\r\n", -1, 0, 0, 0},   /* found by fuzz_cloudevent */
        {"HTTP/1.1 600 OK\r\n\r\n", -1, 0, 0, 0},
        {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", -1, 0, 0, 0},
        {"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", -1, 0, 0, 0},
        {"HTTP/1.1 200 OK\r\nContent-Length: 9999999999999999\r\n\r\n", -1, 0, 0, 0},
        {"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", -1, 0, 0, 0},
        {"HTTP/1.1 200 OK\r\n: empty name\r\n\r\n", -1, 0, 0, 0},
        {"HTTP/1.1 200 OK\r\nX: bare\nY: lf\r\n\r\n", -1, 0, 0, 0},
        {"garbage\r\n\r\n", -1, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        http_reply r = {0};
        size_t n = strlen(cases[i].text);
        long head = http_reply_parse(cases[i].text, n, &r), want = cases[i].head;
        if (want == -2) want = (long)n;
        CHECK_MSG(head == want, "case %zu: head %ld, want %ld", i, head, want);
        if (head > 0)
            CHECK_MSG(r.status == cases[i].status && r.close == cases[i].close &&
                      r.content_length == cases[i].length, "case %zu: %d %d %lld", i, r.status,
                      r.close, r.content_length);
    }
    /* A head that never ends is refused once it passes the limit. */
    char *big = malloc(HTTP_REPLY_HEAD_MAX + 1);
    if (big) {
        http_reply r;
        memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
        memset(big + 20, 'a', HTTP_REPLY_HEAD_MAX - 19);
        CHECK(http_reply_parse(big, HTTP_REPLY_HEAD_MAX - 1, &r) == 0);
        CHECK(http_reply_parse(big, HTTP_REPLY_HEAD_MAX + 1, &r) == -1);
        free(big);
    }
}

TEST(payload_log_ids) {
    char id[API_ID_MAX + 1], long_id[API_ID_MAX + 2];
    payload_log_id("from-header", "from-body", id);
    CHECK(!strcmp(id, "from-header"));
    payload_log_id(NULL, "from-body", id);
    CHECK(!strcmp(id, "from-body"));
    payload_log_id("", "from-body", id);
    CHECK(!strcmp(id, "from-body"));
    memset(long_id, 'x', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = 0;
    payload_log_id(long_id, "from-body", id);
    CHECK(!strcmp(id, "from-body"));
    char other[API_ID_MAX + 1];
    payload_log_id(NULL, "", id);
    payload_log_id(NULL, "", other);
    CHECK_MSG(strlen(id) == 36 && id[8] == '-' && id[13] == '-' && id[14] == '4' &&
              id[18] == '-' && strchr("89ab", id[19]) && id[23] == '-' &&
              strspn(id, "0123456789abcdef-") == 36 && strcmp(id, other), "%s %s", id, other);
}

/* ------------------------------------------------------------------ a receiver */

#define MAX_EVENTS 256

typedef struct {
    char url[64], type[64], id[400], source[80], time[64], specversion[8], service[64],
        namespace_name[64], component[64], endpoint[64], content_type[64], jsonlength[16];
    char *body;
    size_t len;
} received;

typedef struct {
    struct MHD_Daemon *d;
    int port, status;            /* status: what it answers (202 unless told) */
    pthread_mutex_t lock;
    received ev[MAX_EVENTS];
    int n;
} receiver;

typedef struct {
    char *body;
    size_t len;
} upload;

static void copy_header(struct MHD_Connection *c, const char *name, char *out, size_t cap) {
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
    snprintf(out, cap, "%s", v ? v : "(none)");
}

static enum MHD_Result on_event(void *cls, struct MHD_Connection *c, const char *url,
                                const char *method, const char *version, const char *data,
                                size_t *size, void **state) {
    receiver *rv = cls;
    upload *u = *state;
    (void)method, (void)version;
    if (!u) {
        *state = u = calloc(1, sizeof *u);
        return u ? MHD_YES : MHD_NO;
    }
    if (*size) {
        char *grown = realloc(u->body, u->len + *size);
        if (!grown) return MHD_NO;
        memcpy(grown + u->len, data, *size);
        u->body = grown;
        u->len += *size;
        *size = 0;
        return MHD_YES;
    }
    pthread_mutex_lock(&rv->lock);
    if (rv->n < MAX_EVENTS) {
        received *e = &rv->ev[rv->n++];
        snprintf(e->url, sizeof e->url, "%s", url);
        copy_header(c, "ce-type", e->type, sizeof e->type);
        copy_header(c, "ce-id", e->id, sizeof e->id);
        copy_header(c, "ce-source", e->source, sizeof e->source);
        copy_header(c, "ce-time", e->time, sizeof e->time);
        copy_header(c, "ce-specversion", e->specversion, sizeof e->specversion);
        copy_header(c, "ce-inferenceservicename", e->service, sizeof e->service);
        copy_header(c, "ce-namespace", e->namespace_name, sizeof e->namespace_name);
        copy_header(c, "ce-component", e->component, sizeof e->component);
        copy_header(c, "ce-endpoint", e->endpoint, sizeof e->endpoint);
        copy_header(c, "Content-Type", e->content_type, sizeof e->content_type);
        copy_header(c, "ce-jsonlength", e->jsonlength, sizeof e->jsonlength);
        e->body = u->body;
        e->len = u->len;
        u->body = NULL;
    }
    int status = rv->status;
    pthread_mutex_unlock(&rv->lock);
    struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ok;
}

static void on_done(void *cls, struct MHD_Connection *c, void **state,
                    enum MHD_RequestTerminationCode why) {
    (void)cls, (void)c, (void)why;
    upload *u = *state;
    if (u) free(u->body);
    free(u);
    *state = NULL;
}

/* Start rv on loopback at port (0: any free one), answering status. 0, or -1 (reported). */
static int receiver_start(receiver *rv, int port, int status) {
    memset(rv, 0, sizeof *rv);
    pthread_mutex_init(&rv->lock, NULL);
    rv->status = status;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    rv->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, on_event, rv,
                             MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&a,
                             MHD_OPTION_NOTIFY_COMPLETED, on_done, rv, MHD_OPTION_END);
    const union MHD_DaemonInfo *info = rv->d ? MHD_get_daemon_info(rv->d, MHD_DAEMON_INFO_BIND_PORT) : NULL;
    rv->port = info ? info->port : 0;
    CHECK_MSG(rv->port > 0, "the receiver did not start");
    return rv->port > 0 ? 0 : -1;
}

/* Stop rv's server (the events it holds stay readable). */
static void receiver_close(receiver *rv) {
    if (rv->d) MHD_stop_daemon(rv->d);
    rv->d = NULL;
}

static void receiver_free(receiver *rv) {
    receiver_close(rv);
    for (int i = 0; i < rv->n; i++) free(rv->ev[i].body);
    pthread_mutex_destroy(&rv->lock);
}

static int receiver_count(receiver *rv) {
    pthread_mutex_lock(&rv->lock);
    int n = rv->n;
    pthread_mutex_unlock(&rv->lock);
    return n;
}

/* Wait up to ms for rv to hold at least n events, then a little more for any extra one:
 * how many it holds. */
static int receiver_wait(receiver *rv, int n, long ms) {
    long long until = clock_ns() + ms * 1000000LL;
    while (receiver_count(rv) < n && clock_ns() < until) sleep_ms(20);
    sleep_ms(under_valgrind() ? 1000 : 200);
    return receiver_count(rv);
}

/* ------------------------------------------------------------------ the daemon */

/* Start anodmd serving the tiny model as "tiny", sending events to the receiver's port
 * with extra args (NULL-terminated, at most 12). */
static pid_t spawn_logging(const char *name, int sink_port, const char *const *extra, int *port) {
    static char db[512], log[512], model[600], url[128];
    const test_bundles *b = test_bundles_get();
    *port = 0;
    if (!b) return 0;
    snprintf(db, sizeof db, "%s/%s.db", test_tmpdir(), name);
    snprintf(log, sizeof log, "%s/%s_stderr.txt", test_tmpdir(), name);
    snprintf(model, sizeof model, "tiny=%s", b->tiny);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/events?from=anodmd", sink_port);
    const char *args[32] = {"--model", model, "--db", db, "--replica-id", "replica-7",
                            "--payload-log-url", url};
    int n = 8;
    for (int i = 0; extra && extra[i] && n < 30; i++) args[n++] = extra[i];
    args[n] = NULL;
    return spawn_anodmd(log, args, port);
}

/* A metric's value in /metrics of the daemon on port (-1 when absent). */
static double metric(int port, const char *series) {
    response r = http_request(port, "GET", "/metrics", NULL, "");
    double v = -1;
    char key[160];
    snprintf(key, sizeof key, "\n%s ", series);
    const char *p = r.body ? strstr(r.body, key) : NULL;
    if (p) v = atof(p + strlen(key));
    response_free(&r);
    return v;
}

#define SENT "anodmd_payload_log_events_total{result=\"sent\"}"
#define FAILED "anodmd_payload_log_events_total{result=\"failed\"}"
#define DROPPED "anodmd_payload_log_events_total{result=\"dropped\"}"
#define DEPTH "anodmd_payload_log_queue_depth"

/* Wait up to ms for the series to reach at least want: its value then. */
static double metric_wait(int port, const char *series, double want, long ms) {
    long long until = clock_ns() + ms * 1000000LL;
    double v;
    while ((v = metric(port, series)) < want && clock_ns() < until) sleep_ms(50);
    return v;
}

/* A request as sent and its answer as received. */
typedef struct {
    char *req;                   /* the whole request */
    size_t head_len, len;        /* its head's length; the whole length */
    response r;
    const char *want_id;         /* the ce-id its events must carry; NULL: a new UUID */
    int binary;                  /* a V2 body with binary tensors */
} exchange_rec;

static void send_request(exchange_rec *x, int port, const char *path, const char *headers,
                         const void *body, size_t len) {
    char head[1024];
    int h = snprintf(head, sizeof head, "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: "
                     "close\r\n%sContent-Length: %zu\r\n\r\n", path, headers, len);
    x->req = malloc((size_t)h + len + 1);
    if (!x->req) return;
    memcpy(x->req, head, (size_t)h);
    memcpy(x->req + h, body, len);
    x->head_len = (size_t)h;
    x->len = (size_t)h + len;
    x->r = http_exchange(port, x->req, x->len);
}

/* The V2 JSON body of one sample x with request id id. */
static char *infer_json(const float *x, const char *id) {
    size_t cap = 128 + (size_t)DIM * 24;
    char *b = malloc(cap);
    if (!b) return NULL;
    int n = snprintf(b, cap, "{\"id\":\"%s\",\"inputs\":[{\"name\":\"input\",\"shape\":[1,%d],"
                     "\"datatype\":\"FP32\",\"data\":[", id, DIM);
    for (int i = 0; i < DIM; i++) n += snprintf(b + n, cap - (size_t)n, "%s%.9g", i ? "," : "", x[i]);
    snprintf(b + n, cap - (size_t)n, "]}]}");
    return b;
}

/* The request event and the response event of x among rv's events: their indices (-1
 * when missing); the check that there is exactly one of each. */
static void find_events(receiver *rv, const char *id, int *req, int *resp) {
    *req = *resp = -1;
    for (int i = 0; i < rv->n; i++) {
        if (strcmp(rv->ev[i].id, id)) continue;
        int *slot = !strcmp(rv->ev[i].type, CE_TYPE_REQUEST) ? req : resp;
        CHECK_MSG(*slot < 0, "two %s events under id %s", rv->ev[i].type, id);
        *slot = i;
    }
}

/* The attributes every event of the daemons here carries. */
static void check_attributes(const received *e, const char *endpoint) {
    CHECK_MSG(!strcmp(e->specversion, "1.0") && !strcmp(e->source, "replica-7") &&
              !strcmp(e->service, "isvc-a") && !strcmp(e->namespace_name, "team-b") &&
              !strcmp(e->component, "predictor") && !strcmp(e->endpoint, endpoint) &&
              !strcmp(e->url, "/events"),
              "%s %s %s %s %s %s %s", e->specversion, e->source, e->service, e->namespace_name,
              e->component, e->endpoint, e->url);
    CHECK_MSG(strlen(e->time) == 27 && e->time[10] == 'T' && e->time[19] == '.' &&
              e->time[26] == 'Z', "ce-time %s", e->time);
}

static const char *const ATTRS[] = {"--payload-log-inference-service", "isvc-a",
                                    "--payload-log-namespace", "team-b", NULL};

/* Every scoring route, mode all: the events' headers and bodies, the pairs under one id,
 * nothing for a refused request, and the counters. */
TEST(payload_log_all_routes) {
    receiver rv;
    if (receiver_start(&rv, 0, 202)) return;
    int port;
    const char *extra[] = {ATTRS[0], ATTRS[1], ATTRS[2], ATTRS[3], "--payload-log-endpoint",
                           "canary", NULL};
    pid_t pid = spawn_logging("plog_all", rv.port, extra, &port);
    if (!port) {
        receiver_free(&rv);
        return;
    }
    float x[4 * DIM];
    fresh_samples(x, 3, 71, 0);
    fresh_samples(x + 3 * DIM, 1, 72, 1);
    enum { N = 6 };
    exchange_rec ex[N] = {{0}};
    char *b0 = score_body(x, 0, ",\"id\":\"req-1\"");
    char *b1 = score_body(x + DIM, 2, NULL);
    char *b2 = score_body(x + 3 * DIM, 0, ",\"id\":\"body-id\"");
    char *b3 = infer_json(x, "v2-json");
    char *b4 = score_body(x, 0, NULL);
    /* A V2 body with binary tensors: its JSON part, then the raw FP32 sample. */
    char bin_json[300], bin_head[128];
    snprintf(bin_json, sizeof bin_json, "{\"id\":\"v2-bin\",\"inputs\":[{\"name\":\"input\","
             "\"shape\":[1,%d],\"datatype\":\"FP32\",\"parameters\":{\"binary_data_size\":%d}}],"
             "\"parameters\":{\"binary_data_output\":true}}", DIM, DIM * 4);
    size_t jl = strlen(bin_json), bl = jl + DIM * 4;
    char *b5 = malloc(bl);
    if (b5) {
        memcpy(b5, bin_json, jl);
        memcpy(b5 + jl, x, DIM * 4);
    }
    snprintf(bin_head, sizeof bin_head, "Content-Type: application/octet-stream\r\n"
             "Inference-Header-Content-Length: %zu\r\n", jl);
    if (b0 && b1 && b2 && b3 && b4 && b5) {
        const char *json = "Content-Type: application/json\r\n";
        send_request(&ex[0], port, "/v1/score", json, b0, strlen(b0));
        ex[0].want_id = "req-1";
        send_request(&ex[1], port, "/v1/models/tiny/score", "Ce-Id: trace 7\"%\r\n", b1,
                     strlen(b1));
        ex[1].want_id = "trace%207%22%25";
        send_request(&ex[2], port, "/v1/models/tiny/score", "Ce-Id: from-header\r\n", b2,
                     strlen(b2));
        ex[2].want_id = "from-header";
        send_request(&ex[3], port, "/v2/models/tiny/infer", json, b3, strlen(b3));
        ex[3].want_id = "v2-json";
        send_request(&ex[4], port, "/v1/score", "", b4, strlen(b4));
        ex[4].want_id = NULL;
        send_request(&ex[5], port, "/v2/models/tiny/infer", bin_head, b5, bl);
        ex[5].want_id = "v2-bin";
        ex[5].binary = 1;
    }
    /* Refused: no events. */
    response bad = http_request(port, "POST", "/v1/score", "{\"sample\": [1, 2]}", "");
    EXPECT_STATUS(bad, 400, "wrong_length");
    response_free(&bad);
    for (int i = 0; i < N; i++) CHECK_MSG(ex[i].r.status == 200, "request %d: %d", i, ex[i].r.status);
    int got = receiver_wait(&rv, 2 * N, 10000);
    CHECK_MSG(got == 2 * N, "%d events, want %d", got, 2 * N);
    pthread_mutex_lock(&rv.lock);
    for (int i = 0; i < N && ex[i].r.status == 200; i++) {
        const char *id = ex[i].want_id;
        char uuid[64] = "";
        if (!id) {               /* the one without an id: find its UUID by its body */
            for (int k = 0; k < rv.n; k++)
                if (rv.ev[k].len == ex[i].len - ex[i].head_len &&
                    !memcmp(rv.ev[k].body, ex[i].req + ex[i].head_len, rv.ev[k].len))
                    snprintf(uuid, sizeof uuid, "%s", rv.ev[k].id);
            CHECK_MSG(strlen(uuid) == 36 && uuid[14] == '4', "no UUID: '%s'", uuid);
            id = uuid;
        }
        int q, a;
        find_events(&rv, id, &q, &a);
        CHECK_MSG(q >= 0 && a >= 0, "request %d (id %s): events %d and %d", i, id, q, a);
        if (q < 0 || a < 0) continue;
        const received *eq = &rv.ev[q], *ea = &rv.ev[a];
        check_attributes(eq, "canary");
        check_attributes(ea, "canary");
        size_t body_len = ex[i].len - ex[i].head_len;
        CHECK_MSG(eq->len == body_len && !memcmp(eq->body, ex[i].req + ex[i].head_len, body_len),
                  "request %d: the request event's body differs", i);
        CHECK_MSG(ea->len == ex[i].r.body_len && !memcmp(ea->body, ex[i].r.body, ea->len),
                  "request %d: the response event's body differs (%zu, %zu bytes)", i, ea->len,
                  ex[i].r.body_len);
        const char *type = ex[i].binary ? "application/octet-stream" : "application/json";
        CHECK_MSG(!strcmp(eq->content_type, type) && !strcmp(ea->content_type, type),
                  "request %d: %s, %s", i, eq->content_type, ea->content_type);
        if (ex[i].binary) {
            CHECK_MSG(atol(eq->jsonlength) == (long)jl && ex[i].r.json_len > 0 &&
                      atol(ea->jsonlength) == (long)ex[i].r.json_len, "%s %s", eq->jsonlength,
                      ea->jsonlength);
        } else {
            CHECK_MSG(!strcmp(eq->jsonlength, "(none)") && !strcmp(ea->jsonlength, "(none)"),
                      "request %d: jsonlength %s %s", i, eq->jsonlength, ea->jsonlength);
        }
    }
    pthread_mutex_unlock(&rv.lock);
    CHECK_MSG(metric_wait(port, SENT, 2 * N, 3000) == 2 * N, "sent %g", metric(port, SENT));
    CHECK(metric(port, FAILED) == 0 && metric(port, DROPPED) == 0 && metric(port, DEPTH) == 0);
    stop_anodmd(pid);
    for (int i = 0; i < N; i++) {
        free(ex[i].req);
        response_free(&ex[i].r);
    }
    free(b0), free(b1), free(b2), free(b3), free(b4), free(b5);
    receiver_free(&rv);
}

/* Mode request sends only request events, mode response only response events. */
TEST(payload_log_modes) {
    static const char *const modes[] = {"request", "response"};
    float x[DIM];
    fresh_samples(x, 1, 73, 0);
    char *body = score_body(x, 0, NULL);
    for (int m = 0; m < 2 && body; m++) {
        receiver rv;
        if (receiver_start(&rv, 0, 200)) break;
        int port;
        const char *extra[] = {ATTRS[0], ATTRS[1], ATTRS[2], ATTRS[3], "--payload-log-mode",
                               modes[m], NULL};
        pid_t pid = spawn_logging(m ? "plog_response" : "plog_request", rv.port, extra, &port);
        for (int i = 0; port && i < 3; i++) {
            response r = http_request(port, "POST", "/v1/score", body, "");
            CHECK(r.status == 200);
            response_free(&r);
        }
        int got = port ? receiver_wait(&rv, 3, 10000) : 0;
        CHECK_MSG(got == 3, "mode %s: %d events", modes[m], got);
        pthread_mutex_lock(&rv.lock);
        for (int i = 0; i < rv.n; i++) {
            CHECK_MSG(!strcmp(rv.ev[i].type, m ? CE_TYPE_RESPONSE : CE_TYPE_REQUEST),
                      "mode %s: a %s event", modes[m], rv.ev[i].type);
            check_attributes(&rv.ev[i], "default");
        }
        pthread_mutex_unlock(&rv.lock);
        if (port) stop_anodmd(pid);
        receiver_free(&rv);
    }
    free(body);
}

/* Score n samples one request at a time: how many were answered 200, in *seconds. */
static int score_n(int port, const char *body, int n, double *seconds) {
    int ok = 0;
    double t0 = clock_seconds();
    for (int i = 0; i < n; i++) {
        response r = http_request(port, "POST", "/v1/score", body, "");
        ok += r.status == 200;
        response_free(&r);
    }
    *seconds = clock_seconds() - t0;
    return ok;
}

/* A port of 127.0.0.1 that nothing listens on (a receiver's, just closed): 0 if none. */
static int dead_sink_port(void) {
    receiver rv;
    if (receiver_start(&rv, 0, 202)) return 0;
    int port = rv.port;
    receiver_free(&rv);
    return port;
}

/* Wait up to 5 s until events events are accounted for in /metrics (failed, dropped or
 * still queued); those three counts. */
static void wait_accounted(int port, double events, double *failed, double *dropped,
                           double *depth) {
    long long until = clock_ns() + 5000000000LL;
    do {
        sleep_ms(50);
        *failed = metric(port, FAILED);
        *dropped = metric(port, DROPPED);
        *depth = metric(port, DEPTH);
    } while (*failed + *dropped + *depth != events && clock_ns() < until);
}

/* The sink down: every score answered, and at once; the events failed or dropped, all of
 * them counted; the sink back on its port takes events again. */
TEST(payload_log_sink_down) {
    int sink_port = dead_sink_port();
    if (!sink_port) return;
    int port;
    const char *extra[] = {ATTRS[0], ATTRS[1], ATTRS[2], ATTRS[3], "--payload-log-queue", "4",
                           NULL};
    pid_t pid = spawn_logging("plog_down", sink_port, extra, &port);
    if (!port) return;
    float x[DIM];
    fresh_samples(x, 1, 74, 0);
    char *body = score_body(x, 0, NULL);
    enum { N = 40 };
    double seconds = 0;
    int ok = body ? score_n(port, body, N, &seconds) : 0;
    CHECK_MSG(ok == N, "%d of %d scores answered", ok, N);
    CHECK_MSG(seconds < (under_valgrind() ? 60 : 5), "%d scores took %.2f s", N, seconds);
    /* Every event is accounted for: failed, dropped or still queued (none sent). */
    double failed, dropped, depth;
    wait_accounted(port, 2 * N, &failed, &dropped, &depth);
    CHECK_MSG(failed >= 1 && dropped >= 1 && failed + dropped + depth == 2 * N &&
              metric(port, SENT) == 0, "failed %g dropped %g queued %g", failed, dropped, depth);
    /* The sink comes back on the same port: new events get through (the thread retries
     * within its longest pause, 8 s). */
    receiver rv;
    if (receiver_start(&rv, sink_port, 202) == 0) {
        long long until = clock_ns() + 20000000000LL;
        while (receiver_count(&rv) == 0 && clock_ns() < until) {
            score_n(port, body, 1, &seconds);
            sleep_ms(200);
        }
        CHECK_MSG(receiver_count(&rv) > 0, "no event reached the sink once it was back");
        CHECK(metric_wait(port, SENT, 1, 3000) >= 1);
        receiver_free(&rv);
    }
    stop_anodmd(pid);
    char path[512];
    snprintf(path, sizeof path, "%s/plog_down_stderr.txt", test_tmpdir());
    char *log = slurp(path);
    CHECK_MSG(log && strstr(log, "payload log: 127.0.0.1:") && strstr(log, "takes events again"),
              "%.2000s", log ? log : "");
    free(log);
    free(body);
}

/* The queue is bounded in bytes too: with the sink down and room for a thousand events
 * but only 4096 bytes, no more than 4 events (each over 1000 bytes: a head of about 600
 * and a body of 64 numbers) wait at any time; the rest are dropped, every one counted. */
TEST(payload_log_queue_bytes) {
    int sink_port = dead_sink_port();
    if (!sink_port) return;
    int port;
    const char *extra[] = {"--payload-log-queue", "1000", "--payload-log-queue-bytes", "4096",
                           NULL};
    pid_t pid = spawn_logging("plog_bytes", sink_port, extra, &port);
    if (!port) return;
    float x[DIM];
    fresh_samples(x, 1, 76, 0);
    char *body = score_body(x, 0, NULL);
    enum { N = 40 };
    double seconds = 0, most = 0;
    for (int i = 0; i < N && body; i++) {
        CHECK(score_n(port, body, 1, &seconds) == 1);
        double depth = metric(port, DEPTH);
        if (depth > most) most = depth;
    }
    double failed, dropped, depth;
    wait_accounted(port, 2 * N, &failed, &dropped, &depth);
    CHECK_MSG(most <= 4 && failed + dropped + depth == 2 * N && dropped >= 2 * N - 4 - failed,
              "most queued %g; failed %g dropped %g queued %g", most, failed, dropped, depth);
    stop_anodmd(pid);
    free(body);
}

/* A sink answering 503 gets each event at most three times while it seemed up, then once;
 * one answering 400 gets each event once: a refusal is not retried. Scores unaffected. */
TEST(payload_log_sink_errors) {
    static const int statuses[] = {503, 400};
    float x[DIM];
    fresh_samples(x, 1, 75, 0);
    char *body = score_body(x, 0, ",\"id\":\"same\"");
    for (int s = 0; s < 2 && body; s++) {
        receiver rv;
        if (receiver_start(&rv, 0, statuses[s])) break;
        int port;
        const char *extra[] = {ATTRS[0], ATTRS[1], ATTRS[2], ATTRS[3], "--payload-log-mode",
                               "request", NULL};
        pid_t pid = spawn_logging(s ? "plog_400" : "plog_503", rv.port, extra, &port);
        double seconds;
        if (port) CHECK(score_n(port, body, 1, &seconds) == 1);
        int want = s ? 1 : 3;
        int got = port ? receiver_wait(&rv, want, 5000) : 0;
        CHECK_MSG(got == want, "sink answering %d: %d posts of one event, want %d",
                  statuses[s], got, want);
        if (port) {
            CHECK(metric_wait(port, FAILED, 1, 3000) == 1 && metric(port, SENT) == 0);
            stop_anodmd(pid);
        }
        receiver_free(&rv);
    }
    free(body);
}

/* A malformed URL or mode is refused at start, saying why; --check-config shows the
 * settings with their defaults. */
TEST(payload_log_settings) {
    const test_bundles *b = test_bundles_get();
    if (!b) return;
    EXPECT_CLI(2, "https is not supported", "--check-config --model %s "
               "--payload-log-url https://sink/", b->tiny);
    EXPECT_CLI(2, "payload_log_url wants an http://host[:port][/path] URL", "--check-config "
               "--model %s --payload-log-url http://", b->tiny);
    EXPECT_CLI(2, "no host", "--check-config --model %s --payload-log-url http:///x", b->tiny);
    EXPECT_CLI(2, "the port is not a number in 1..65535", "--check-config --model %s "
               "--payload-log-url http://sink:70000/", b->tiny);
    EXPECT_CLI(2, "user part", "--check-config --model %s --payload-log-url "
               "http://me:secret@sink/", b->tiny);
    EXPECT_CLI(2, "not an http:// URL", "--check-config --model %s --payload-log-url "
               "ftp://sink/", b->tiny);
    EXPECT_CLI(2, "payload_log_mode wants all, request or response, not 'sometimes'",
               "--check-config --model %s --payload-log-url http://sink/ "
               "--payload-log-mode sometimes", b->tiny);
    EXPECT_CLI(2, "payload_log_queue wants an integer in 1..1000000", "--check-config "
               "--model %s --payload-log-url http://sink/ --payload-log-queue 0", b->tiny);
    EXPECT_CLI(2, "payload_log_queue_bytes", "--check-config --model %s --payload-log-url "
               "http://sink/ --payload-log-queue-bytes 100", b->tiny);
    char *out;
    int rc = run_anodmd(&out, "--check-config --model %s --payload-log-url http://sink:81/in",
                        b->tiny);
    CHECK_MSG(rc == 0 && out && strstr(out, "payload_log_url = http://sink:81/in\n") &&
              strstr(out, "payload_log_mode = all\n") &&
              strstr(out, "payload_log_inference_service = anodmd\n") &&
              strstr(out, "payload_log_namespace = default\n") &&
              strstr(out, "payload_log_component = predictor\n") &&
              strstr(out, "payload_log_endpoint = default\n") &&
              strstr(out, "payload_log_queue = 1000\n") &&
              strstr(out, "payload_log_queue_bytes = 33554432\n"), "%.2000s", out ? out : "");
    CHECK_MSG(!strstr(out ? out : "", "secret"), "the password shown");
    free(out);
    rc = run_anodmd(&out, "--check-config --model %s", b->tiny);
    CHECK_MSG(rc == 0 && out && !strstr(out, "payload_log"), "%.2000s", out ? out : "");
    free(out);
}

/* ------------------------------------------------------------------ a hostile sink */

/* A sink of raw sockets answering each event wrongly, by mode: 0 garbage, 1 a head that
 * never ends (past the 16 kB limit), 2 nothing (closing at once), 3 a body shorter than
 * its Content-Length. */
typedef struct {
    int fd, port, mode, stop, accepted;
    pthread_t thread;
} hostile;

static void *hostile_main(void *arg) {
    hostile *h = arg;
    while (!__atomic_load_n(&h->stop, __ATOMIC_SEQ_CST)) {
        struct pollfd p = {.fd = h->fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0) continue;
        int c = accept(h->fd, NULL, NULL);
        if (c < 0) continue;
        __atomic_add_fetch(&h->accepted, 1, __ATOMIC_SEQ_CST);
        char buf[4096];
        size_t have = 0;
        ssize_t n;
        while (have < sizeof buf - 1 && (n = recv(c, buf + have, sizeof buf - 1 - have, 0)) > 0) {
            have += (size_t)n;
            buf[have] = 0;
            if (strstr(buf, "\r\n\r\n")) break;
        }
        if (h->mode == 0) {
            (void)!write(c, "garbage\r\n\r\n", 11);
        } else if (h->mode == 1) {
            char head[20000];
            memset(head, 'a', sizeof head);
            memcpy(head, "HTTP/1.1 200 OK\r\nX: ", 20);
            (void)!write(c, head, sizeof head);
        } else if (h->mode == 3) {
            const char *r = "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nshort";
            (void)!write(c, r, strlen(r));
        }
        close(c);
    }
    return NULL;
}

static int hostile_start(hostile *h, int mode) {
    memset(h, 0, sizeof *h);
    h->mode = mode;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    h->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (h->fd < 0 || bind(h->fd, (struct sockaddr *)&a, sizeof a) || listen(h->fd, 16) ||
        getsockname(h->fd, (struct sockaddr *)&a, &len) ||
        pthread_create(&h->thread, NULL, hostile_main, h)) {
        CHECK_MSG(0, "the hostile sink did not start");
        if (h->fd >= 0) close(h->fd);
        return -1;
    }
    h->port = ntohs(a.sin_port);
    return 0;
}

static void hostile_stop(hostile *h) {
    __atomic_store_n(&h->stop, 1, __ATOMIC_SEQ_CST);
    pthread_join(h->thread, NULL);
    close(h->fd);
}

/* Answers that are not HTTP, never end, never come or stop short: each event counted as
 * failed, nothing sent, every score answered, the daemon unharmed. */
TEST(payload_log_hostile_sink) {
    float x[DIM];
    fresh_samples(x, 1, 76, 0);
    char *body = score_body(x, 0, NULL);
    for (int mode = 0; mode < 4 && body; mode++) {
        hostile h;
        if (hostile_start(&h, mode)) break;
        int port;
        const char *extra[] = {ATTRS[0], ATTRS[1], ATTRS[2], ATTRS[3], "--payload-log-mode",
                               "request", NULL};
        char name[32];
        snprintf(name, sizeof name, "plog_hostile%d", mode);
        pid_t pid = spawn_logging(name, h.port, extra, &port);
        if (port) {
            double seconds;
            CHECK_MSG(score_n(port, body, 3, &seconds) == 3, "mode %d", mode);
            double failed = metric_wait(port, FAILED, 1, 5000);
            CHECK_MSG(failed >= 1 && metric(port, SENT) == 0, "mode %d: failed %g sent %g",
                      mode, failed, metric(port, SENT));
            CHECK_MSG(__atomic_load_n(&h.accepted, __ATOMIC_SEQ_CST) >= 1, "mode %d", mode);
            stop_anodmd(pid);
        }
        hostile_stop(&h);
    }
    free(body);
}
