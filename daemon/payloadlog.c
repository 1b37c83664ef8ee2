/* KServe-compatible payload logging: a queue and the threads that post it (see
 * payloadlog.h); the events' wire format is proto/cloudevent.c's. */
#include "payloadlog.h"
#include "clock.h"
#include "cloudevent.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ATTEMPTS 3               /* sends of one event while the sink is up */
#define RETRY_MS 100             /* before the second send; doubled before the third */
#define DOWN_MIN_MS 500          /* while the sink is down: the pause after a failed event, */
#define DOWN_MAX_MS 8000         /* doubling up to this */
#define CONNECT_MS 2000          /* to connect */
#define ANSWER_MS 5000           /* to send an event and have the sink's answer */
#define FLUSH_MS 2000            /* at shutdown, to send what is queued */
/* Sending threads, each with its connection: one event at a time waits for its answer, so
 * one thread sends at most one event per round trip (measured: it fell behind a
 * 2000-requests/s load on a busy 2-core machine, docs/DEPLOY.md); KServe's agent has 5. */
#define SENDERS 4

typedef struct event {
    struct event *next;
    char *bytes;                 /* the whole POST (cloudevent_post) */
    size_t len;
} event;

/* A sending thread and its connection. */
typedef struct {
    payload_log *p;
    int fd;                      /* -1: none */
    pthread_t thread;
} sender;

struct payload_log {
    http_url url;
    int want_request, want_response;
    const config *c;             /* the attributes: the daemon's settings, which outlive this */
    long capacity;
    size_t max_bytes;            /* the queued events' bytes at most */
    metrics *metrics;
    pthread_mutex_t lock;        /* guards the seven below */
    pthread_cond_t wake;
    event *head, *tail;
    long n;
    size_t bytes;                /* of the n queued events */
    int stopping;
    long long stop_by_ns;        /* stopping: events still sent until then */
    char state[600];             /* the failure last said on stderr, "" none */
    sender s[SENDERS];
    int started;                 /* senders running */
};

/* ------------------------------------------------------------------ ids and events */

void payload_log_id(const char *ce_id_header, const char *request_id, char id[API_ID_MAX + 1]) {
    if (ce_id_header && *ce_id_header && strlen(ce_id_header) <= API_ID_MAX) {
        memcpy(id, ce_id_header, strlen(ce_id_header) + 1);
        return;
    }
    if (*request_id) {
        snprintf(id, API_ID_MAX + 1, "%s", request_id);
        return;
    }
    /* A version 4 UUID, as KServe makes one. getrandom of 16 bytes does not fail once the
     * kernel's pool is ready, long before a daemon serves; the clock stands in if it does. */
    unsigned char b[16];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
        long long t = clock_ns();
        for (int i = 0; i < 16; i++) b[i] = (unsigned char)(t >> (8 * (i % 8))) ^ (unsigned char)i;
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(id, API_ID_MAX + 1, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
             "%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8],
             b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* Is there room for one more event? Asked before building one, so that a full queue
 * (a dead sink) costs a request no more than this. */
static int room(payload_log *p) {
    pthread_mutex_lock(&p->lock);
    int ok = !p->stopping && p->n < p->capacity && p->bytes < p->max_bytes;
    pthread_mutex_unlock(&p->lock);
    return ok;
}

void payload_log_event(payload_log *p, int response, const char *id, const char *content_type,
                       const void *body, size_t len, size_t json_len) {
    if (!p || !(response ? p->want_response : p->want_request)) return;
    if (!room(p)) {
        metrics_payload_log(p->metrics, "dropped", 1);
        return;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    const config *c = p->c;
    cloudevent e = {.type = response ? CE_TYPE_RESPONSE : CE_TYPE_REQUEST, .id = id,
                    .source = c->replica_id,
                    .time_ns = (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec,
                    .content_type = content_type,
                    .inference_service = c->payload_log_inference_service,
                    .namespace_name = c->payload_log_namespace,
                    .component = c->payload_log_component,
                    .endpoint = c->payload_log_endpoint, .json_len = json_len, .data = body,
                    .len = len};
    event *ev = malloc(sizeof *ev);
    if (ev && (ev->bytes = cloudevent_post(&e, p->url.authority, p->url.path, &ev->len))) {
        ev->next = NULL;
        pthread_mutex_lock(&p->lock);
        int queued = !p->stopping && p->n < p->capacity && ev->len <= p->max_bytes - p->bytes;
        if (queued) {
            if (p->tail) p->tail->next = ev;
            else p->head = ev;
            p->tail = ev;
            p->n++;
            p->bytes += ev->len;
            pthread_cond_signal(&p->wake);
        }
        pthread_mutex_unlock(&p->lock);
        if (queued) return;
        free(ev->bytes);
    }
    free(ev);                    /* out of memory or full: the event is dropped */
    metrics_payload_log(p->metrics, "dropped", 1);
}

long payload_log_queued(payload_log *p) {
    pthread_mutex_lock(&p->lock);
    long n = p->n;
    pthread_mutex_unlock(&p->lock);
    return n;
}

/* ------------------------------------------------------------------ the connection */

static int failure(char *err, size_t errlen, const char *what, const char *why) {
    snprintf(err, errlen, "%s: %s", what, why);
    return -1;
}

/* Wait until fd is ready for events or deadline (clock_ns) passes: 0, or -1 (timed out,
 * or poll failed). */
static int wait_fd(int fd, short events, long long deadline) {
    for (;;) {
        long long left = (deadline - clock_ns()) / 1000000;
        if (left <= 0) return -1;
        struct pollfd pfd = {.fd = fd, .events = events};
        int rc = poll(&pfd, 1, (int)left);
        if (rc > 0) return 0;
        if (rc < 0 && errno != EINTR) return -1;
    }
}

static void disconnect(sender *s) {
    if (s->fd >= 0) close(s->fd);
    s->fd = -1;
}

/* Connect s to the sink (non-blocking from here on). 0, or -1 with err. */
static int connect_sink(sender *s, char *err, size_t errlen) {
    payload_log *p = s->p;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV}, *found;
    int rc = getaddrinfo(p->url.host, p->url.port, &hints, &found);
    if (rc) return failure(err, errlen, p->url.authority, gai_strerror(rc));
    snprintf(err, errlen, "%s: no address", p->url.authority);
    for (struct addrinfo *a = found; a && s->fd < 0; a = a->ai_next) {
        int fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), e = 0;
        socklen_t elen = sizeof e;
        if (fd < 0) {
            failure(err, errlen, "socket", strerror(errno));
            continue;
        }
        if (connect(fd, a->ai_addr, a->ai_addrlen) && errno != EINPROGRESS) e = errno;
        else if (wait_fd(fd, POLLOUT, clock_ns() + CONNECT_MS * 1000000LL)) e = ETIMEDOUT;
        else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen)) e = errno;
        if (e) {
            failure(err, errlen, p->url.authority, strerror(e));
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        s->fd = fd;
    }
    freeaddrinfo(found);
    return s->fd >= 0 ? 0 : -1;
}

/* Send len bytes by deadline. 0, or -1 with err. */
static int send_all(int fd, const char *b, size_t len, long long deadline, char *err,
                    size_t errlen) {
    while (len) {
        ssize_t n = send(fd, b, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            b += n;
            len -= (size_t)n;
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            return failure(err, errlen, "sending", strerror(errno));
        } else if (n < 0 && errno == EAGAIN && wait_fd(fd, POLLOUT, deadline)) {
            return failure(err, errlen, "sending", "timed out");
        }
    }
    return 0;
}

/* Read into buf (cap bytes, *have held) by deadline: the bytes read, 0 at the end of the
 * stream, -1 on an error or timeout (err set). */
static ssize_t read_some(int fd, char *buf, size_t cap, long long deadline, char *err,
                         size_t errlen) {
    for (;;) {
        ssize_t n = recv(fd, buf, cap, MSG_DONTWAIT);
        if (n >= 0) {
            if (n == 0) failure(err, errlen, "reading the answer", "connection closed");
            return n;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN) return failure(err, errlen, "reading the answer", strerror(errno));
        if (wait_fd(fd, POLLIN, deadline))
            return failure(err, errlen, "reading the answer", "timed out");
    }
}

/* The sink's answer to the event just sent: its status, its body read past (or the
 * connection dropped when its length is unknown or the sink closes). *got: whether any of
 * it came. 0, or -1 with err (disconnected). */
static int read_answer(sender *s, int *status, int *got, long long deadline, char *err,
                       size_t errlen) {
    char buf[HTTP_REPLY_HEAD_MAX];
    size_t have = 0;
    http_reply r;
    long head;
    *got = 0;
    for (;;) {
        while ((head = http_reply_parse(buf, have, &r)) == 0) {
            ssize_t n = read_some(s->fd, buf + have, sizeof buf - have, deadline, err, errlen);
            if (n <= 0) return -1;
            have += (size_t)n;
            *got = 1;
        }
        if (head < 0) return failure(err, errlen, "the sink's answer", "not HTTP/1.x");
        if (r.status >= 200) break;
        have -= (size_t)head;    /* 1xx: an interim answer, the real one follows */
        memmove(buf, buf + head, have);
    }
    *status = r.status;
    if (r.content_length >= 0) {
        long long left = r.content_length - (long long)(have - (size_t)head);
        while (left > 0) {
            ssize_t n = read_some(s->fd, buf, sizeof buf, deadline, err, errlen);
            if (n <= 0) return -1;
            left -= n;
        }
    }
    if (r.close) disconnect(s);
    return 0;
}

/* Post ev once: 1 when the sink took it (2xx), 0 when it refused it (4xx: sending it
 * again would not help), -1 when it did not answer or failed (5xx), err saying why. A
 * kept-alive connection the sink has closed meanwhile fails before any answer: the event
 * then goes again at once on a new one, which is not counted as a second send. */
static int post(sender *s, const event *ev, char *err, size_t errlen) {
    for (int fresh = 0; fresh < 2; fresh++) {
        int reused = s->fd >= 0, got = 0, status = 0;
        if (!reused && connect_sink(s, err, errlen)) return -1;
        long long deadline = clock_ns() + ANSWER_MS * 1000000LL;
        if (send_all(s->fd, ev->bytes, ev->len, deadline, err, errlen) == 0 &&
            read_answer(s, &status, &got, deadline, err, errlen) == 0) {
            if (status < 300) return 1;
            snprintf(err, errlen, "the sink answered %d", status);
            return status < 500 ? 0 : -1;
        }
        disconnect(s);
        if (!reused || got) return -1;
    }
    return -1;
}

/* ------------------------------------------------------------------ the thread */

/* Sleep ms, or until told to stop: 1 when stopping. */
static int pause_ms(payload_log *p, long ms) {
    long long until = clock_ns() + ms * 1000000LL;
    struct timespec t = {(time_t)(until / 1000000000LL), (long)(until % 1000000000LL)};
    pthread_mutex_lock(&p->lock);
    while (!p->stopping)
        if (pthread_cond_timedwait(&p->wake, &p->lock, &t)) break;
    int stop = p->stopping;
    pthread_mutex_unlock(&p->lock);
    return stop;
}

/* Send ev, at most attempts times. 1 when the sink took it. A failure is said on stderr
 * when it is news, not at every event (a sink down for an hour would flood the journal). */
static int deliver(sender *s, const event *ev, int attempts) {
    payload_log *p = s->p;
    char err[600] = "";
    int rc = -1;
    for (int a = 0; a < attempts && rc < 0; a++) {
        if (a && pause_ms(p, RETRY_MS << (a - 1))) break;
        rc = post(s, ev, err, sizeof err);
    }
    pthread_mutex_lock(&p->lock);
    if (rc == 1 && *p->state)
        fprintf(stderr, "anodmd: payload log: %s takes events again\n", p->url.authority);
    else if (rc != 1 && strcmp(p->state, err))
        fprintf(stderr, "anodmd: payload log: %s (events are counted as failed or dropped "
                "while this lasts; retrying)\n", err);
    snprintf(p->state, sizeof p->state, "%s", rc == 1 ? "" : err);
    pthread_mutex_unlock(&p->lock);
    return rc == 1;
}

/* The next event to send, or NULL when it is time to stop. */
static event *next_event(payload_log *p, int down) {
    pthread_mutex_lock(&p->lock);
    while (!p->head && !p->stopping) pthread_cond_wait(&p->wake, &p->lock);
    event *ev = p->head;
    if (p->stopping && (down || clock_ns() >= p->stop_by_ns)) ev = NULL;
    if (ev) {
        p->head = ev->next;
        if (!p->head) p->tail = NULL;
        p->n--;
        p->bytes -= ev->len;
    }
    pthread_mutex_unlock(&p->lock);
    return ev;
}

static void *send_main(void *arg) {
    sender *s = arg;
    payload_log *p = s->p;
    prctl(PR_SET_NAME, "anodmd-plog");   /* their own lines in top -H; the bench reads their CPU */
    long down_ms = 0;            /* 0 while the sink takes events */
    event *ev;
    while ((ev = next_event(p, down_ms != 0))) {
        int ok = deliver(s, ev, down_ms ? 1 : ATTEMPTS);
        free(ev->bytes);
        free(ev);
        metrics_payload_log(p->metrics, ok ? "sent" : "failed", 1);
        if (ok) {
            down_ms = 0;
            continue;
        }
        down_ms = !down_ms ? DOWN_MIN_MS : down_ms * 2 < DOWN_MAX_MS ? down_ms * 2 : DOWN_MAX_MS;
        pause_ms(p, down_ms);
    }
    disconnect(s);
    return NULL;
}

/* ------------------------------------------------------------------ start and stop */

payload_log *payload_log_start(const config *c, metrics *m, char *err, size_t errlen) {
    char why[256];
    payload_log *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->c = c;
    p->metrics = m;
    p->capacity = c->payload_log_queue;
    p->max_bytes = c->payload_log_queue_bytes;
    p->want_request = strcmp(c->payload_log_mode, "response") != 0;
    p->want_response = strcmp(c->payload_log_mode, "request") != 0;
    if (http_url_parse(c->payload_log_url, &p->url, why, sizeof why)) {
        snprintf(err, errlen, "payload_log_url: %s", why);
        free(p);
        return NULL;
    }
    metrics_payload_log(m, "sent", 0);      /* the counters at 0 from the start */
    metrics_payload_log(m, "failed", 0);
    metrics_payload_log(m, "dropped", 0);
    pthread_mutex_init(&p->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->wake, &ca);
    pthread_condattr_destroy(&ca);
    for (; p->started < SENDERS; p->started++) {
        sender *s = &p->s[p->started];
        *s = (sender){.p = p, .fd = -1};
        if (pthread_create(&s->thread, NULL, send_main, s)) break;
    }
    if (p->started == SENDERS) return p;
    snprintf(err, errlen, "cannot start the payload log's threads");
    payload_log_stop(p);
    return NULL;
}

void payload_log_stop(payload_log *p) {
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    p->stop_by_ns = clock_ns() + FLUSH_MS * 1000000LL;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->started; i++) pthread_join(p->s[i].thread, NULL);
    long left = 0;
    for (event *ev = p->head, *next; ev; ev = next, left++) {
        next = ev->next;
        free(ev->bytes);
        free(ev);
    }
    if (left) metrics_payload_log(p->metrics, "dropped", (uint64_t)left);
    if (left) fprintf(stderr, "anodmd: payload log: %ld events not sent by shutdown\n", left);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    free(p);
}
