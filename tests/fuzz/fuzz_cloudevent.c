/* fuzz_cloudevent.c — the payload log's two parsers of what others write (proto/
 * cloudevent.h): http_url_parse (the sink's URL, a setting) and http_reply_parse (the
 * sink's answer's head, off the network).
 *
 * Input: the first byte picks the parser (even: the URL, odd: the answer); the rest is
 * its text. A URL that parses must give parts that fit their buffers and a POST built
 * with them; an answer's head that parses must lie within the input and carry a status
 * in 100..599, and parsing a prefix of it must ask for more bytes, never succeed
 * differently. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cloudevent.h"

static void url(const char *text) {
    http_url u;
    char err[256];
    if (http_url_parse(text, &u, err, sizeof err)) {
        if (!memchr(err, 0, sizeof err)) abort();
        return;
    }
    if (!u.host[0] || !u.port[0] || u.path[0] != '/' || !u.authority[0]) abort();
    cloudevent e = {.type = CE_TYPE_RESPONSE, .id = text, .source = u.host, .time_ns = 0,
                    .content_type = "application/json", .inference_service = u.path,
                    .namespace_name = "n", .component = "c", .endpoint = "e",
                    .data = text, .len = strlen(text)};
    size_t len;
    char *msg = cloudevent_post(&e, u.authority, u.path, &len);
    if (msg && (len < strlen(text) || memcmp(msg + len - strlen(text), text, strlen(text))))
        abort();
    free(msg);
}

static void reply(const char *buf, size_t n) {
    http_reply r;
    long head = http_reply_parse(buf, n, &r);
    if (head < -1 || head > (long)n) abort();
    if (head > 0) {
        if (r.status < 100 || r.status > 599 || r.content_length < -1) abort();
        http_reply p;
        if (http_reply_parse(buf, (size_t)head - 1, &p) != 0) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    char *text = malloc(size);
    if (!text) return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = 0;
    if (data[0] % 2 == 0) url(text);
    else reply(text, size - 1);
    free(text);
    return 0;
}
