/* cloudevent.h — KServe's payload-logging events on the wire: CloudEvents 1.0 in the HTTP
 * protocol binding's binary content mode, and the little of HTTP/1.1 a sender needs.
 *
 * KServe's logger (its agent in front of a predictor) posts two events per inference: the
 * request body as it came, typed org.kubeflow.serving.inference.request, and the 200
 * answer's body, typed org.kubeflow.serving.inference.response, both under one event id,
 * with the deployment's facts as extension attributes (inferenceservicename, namespace,
 * component, endpoint). In binary mode the body is the event's data, unchanged; its
 * Content-Type is the event's datacontenttype; every other attribute is a "ce-" header
 * whose value is percent-encoded (space, '"', '%' and every byte outside printable
 * ASCII), so that no caller-given id can break or add a header line. anodmd's sink
 * (daemon/payloadlog.h) builds each POST here whole, queues it, and reads the sink's
 * answer with http_reply_parse. The two parsers of what others write (the sink's URL, a
 * setting; its answer's head) are fuzzed by tests/fuzz/fuzz_cloudevent.c. */
#ifndef ANODM_CLOUDEVENT_H
#define ANODM_CLOUDEVENT_H

#include <stddef.h>
#include <stdint.h>

#define CE_TYPE_REQUEST "org.kubeflow.serving.inference.request"
#define CE_TYPE_RESPONSE "org.kubeflow.serving.inference.response"

/* One event. The strings are the attributes' values, raw (percent-encoded on the way
 * out). json_len: for a body of the Open Inference Protocol's binary tensor extension, the
 * length of its JSON part (sent as the extension attribute "jsonlength", since the
 * Inference-Header-Content-Length header the body came with is not part of it); 0: none. */
typedef struct {
    const char *type, *id, *source;
    int64_t time_ns;             /* Unix time of the event, in ns: ce-time, RFC 3339, UTC */
    const char *content_type;
    const char *inference_service, *namespace_name, *component, *endpoint;
    size_t json_len;
    const void *data;
    size_t len;
} cloudevent;

/* The whole HTTP/1.1 POST of e to path on host (the Host header: the URL's host[:port]):
 * head and data, malloc'd, its length in *out_len; NULL when out of memory. */
char *cloudevent_post(const cloudevent *e, const char *host, const char *path, size_t *out_len);
/* Unix time ns as RFC 3339 in UTC with microseconds ("2026-12-03T09:30:00.123456Z"). */
void cloudevent_time(int64_t time_ns, char out[32]);

/* An http:// URL: http://host[:port][/path][?query] (no user part, no fragment; host a
 * name, an IPv4 address or an [IPv6] literal). */
#define HTTP_URL_MAX 2048
typedef struct {
    char host[256];              /* as given, without brackets */
    char port[6];                /* "80" when absent */
    char authority[264];         /* host[:port] as given: the Host header */
    char path[HTTP_URL_MAX];     /* "/" when absent; the query kept */
} http_url;
/* Parse url into u: 0, or -1 with why it is not one in err. */
int http_url_parse(const char *url, http_url *u, char *err, size_t errlen);

/* The head of an HTTP/1.x answer. */
typedef struct {
    int status;
    long long content_length;    /* -1: not given (then close is set: the end is unknown) */
    int close;                   /* the connection is not to be reused after this answer */
} http_reply;
#define HTTP_REPLY_HEAD_MAX 16384
/* The head at the start of buf (len bytes): its length (head and blank line) with r
 * filled in, 0 when more bytes are needed, -1 when it is not an HTTP/1.x answer's head
 * or is longer than HTTP_REPLY_HEAD_MAX. */
long http_reply_parse(const char *buf, size_t len, http_reply *r);

#endif
