/* payloadlog.h — KServe-compatible payload logging: each scored request and its answer
 * POSTed as CloudEvents (proto/cloudevent.h) to a sink URL, as KServe's logger does, so
 * that what consumes KServe's inference logs (a message dumper, a Knative broker and its
 * triggers, a Kafka bridge) takes anodmd's scores unchanged.
 *
 * Scoring never waits for the sink. An event is built whole on the thread that has the
 * body (a connection's for the request, a worker's for the answer) and put on a bounded
 * queue; four threads of their own (anodmd-plog in top -H) send it, each over its own
 * kept-alive HTTP/1.1 connection with timeouts, so events leave in the order they were
 * queued but may arrive out of it (a response event before its request's, as with
 * KServe's five workers). An event the sink does not take (no connection, a timeout, a
 * 5xx) is sent again at most twice; one it refuses (4xx) is not. Then it is counted as
 * failed, and while the sink stays down each thread tries one event at a time with a
 * pause growing from 0.5 s to 8 s, so that a dead sink costs nothing but the events: an
 * event that finds the queue full (payload_log_queue events or payload_log_queue_bytes
 * bytes, so large batches cannot fill memory) is dropped and counted. /metrics shows sent, failed,
 * dropped and the queue's depth. At shutdown the queue is sent for at most 2 s; what is
 * left then is counted as dropped. Delivery is best effort: an event is lost when the
 * queue is full, the sink is down or the daemon stops, and may arrive twice when the
 * sink took it but its answer was lost. The score log (and its PostgreSQL sink) is the
 * record that loses nothing; this is a feed. */
#ifndef ANODMD_PAYLOADLOG_H
#define ANODMD_PAYLOADLOG_H

#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "config.h"
#include "metrics.h"

typedef struct payload_log payload_log;

/* Start sending to c->payload_log_url, counting into m. NULL with err when the URL or
 * the mode is not one (config.c has checked both already), or out of memory. */
payload_log *payload_log_start(const config *c, metrics *m, char *err, size_t errlen);
/* Send what is queued for at most 2 s, count the rest as dropped, stop. NULL: nothing. */
void payload_log_stop(payload_log *p);
/* Events waiting to be sent. */
long payload_log_queued(payload_log *p);

/* The event id of a request, shared by its two events: its Ce-Id header (as KServe takes
 * it; NULL when absent; ignored when longer than API_ID_MAX bytes), else the request's
 * own id (the body's "id"; "" when absent), else a new random UUID. */
void payload_log_id(const char *ce_id_header, const char *request_id, char id[API_ID_MAX + 1]);
/* Queue the event of a request body (response 0) or of its 200 answer (response 1), unless
 * the mode leaves that kind out; its time is now. content_type: the body's
 * (application/json or application/octet-stream); json_len: with octet-stream, the
 * length of the body's JSON part (0: none). */
void payload_log_event(payload_log *p, int response, const char *id, const char *content_type,
                       const void *body, size_t len, size_t json_len);

#endif
