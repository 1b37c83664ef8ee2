/* http.h — anodmd's HTTP server: libmicrohttpd, its threads, bodies and limits.
 *
 * libmicrohttpd runs a pool of threads polling with epoll; a handler runs on the thread
 * that read its request. This layer gathers a request's body (refusing one larger than
 * the limit with 413, before reading it when Content-Length says so), hands the whole
 * request to routes.c and sends back its JSON. A request routes.c hands to a scoring
 * worker is suspended (MHD_suspend_connection) until the worker resumes it, so polling
 * threads never wait on maths or on the log. Shutdown is graceful: first, for as long as
 * main.c says (shutdown_delay_seconds), not ready (GET /readyz 503) while still serving,
 * every reply closing its connection, so that balancers take the replica out before its
 * port closes; then stop accepting, let the requests in flight finish (bounded by
 * drain_seconds), and stop.
 *
 * Slow clients: libmicrohttpd's timeout only closes a connection that sends nothing, so
 * one sending a byte a second (slowloris) would hold its slot for ever. Each connection
 * therefore has a deadline, timeout_seconds from when it opened, its last reply was
 * sent, or that reply was queued: a request must arrive whole, and a reply be taken,
 * within it (there is none while a worker scores). A reaper thread shuts down the
 * sockets of connections past it, ten times a second. A chunked body past
 * max_body_bytes is read on (and dropped) to answer 413 when it ends, but cut off at
 * twice the limit. */
#ifndef ANODMD_HTTP_H
#define ANODMD_HTTP_H

#include <stddef.h>

#include "config.h"
#include "routes.h"

typedef struct http_server http_server;

/* Listen on cfg's address and port and serve a; the server keeps pointers to both. */
http_server *http_start(const config *cfg, app *a, char *err, size_t errlen);
/* The port actually bound (the chosen one when cfg->port was 0). */
int http_port(const http_server *s);
/* Not ready from now on (/readyz 503, replies with Connection: close); still serving. */
void http_set_unready(http_server *s);
/* Stop accepting, drain the requests in flight, stop the threads and free s. */
void http_stop(http_server *s);

#endif
