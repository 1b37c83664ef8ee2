/* CloudEvents in HTTP binary mode, and the sender's side of HTTP/1.1 (see cloudevent.h). */
#include "cloudevent.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ------------------------------------------------------------------ the event */

/* A byte a header value may carry as it is: printable ASCII but '"' and '%' (the HTTP
 * binding, 3.1.3.2); every other byte, a UTF-8 sequence's included, goes as %XX. */
static int plain(unsigned char c) { return c > 0x20 && c < 0x7f && c != '"' && c != '%'; }

static void put_header(FILE *f, const char *name, const char *value) {
    fprintf(f, "%s: ", name);
    for (const unsigned char *p = (const unsigned char *)value; *p; p++)
        if (plain(*p)) fputc(*p, f);
        else fprintf(f, "%%%02X", *p);
    fputs("\r\n", f);
}

void cloudevent_time(int64_t time_ns, char out[32]) {
    time_t s = (time_t)(time_ns / 1000000000LL);
    unsigned us = (unsigned)(time_ns % 1000000000LL / 1000) % 1000000u;
    struct tm t;
    gmtime_r(&s, &t);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &t);
    snprintf(out + n, 32 - n, ".%06uZ", us);
}

char *cloudevent_post(const cloudevent *e, const char *host, const char *path, size_t *out_len) {
    char *text = NULL, when[32];
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return NULL;
    cloudevent_time(e->time_ns, when);
    /* The URL's host and path and the content type are ours, checked: no encoding. */
    fprintf(f, "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: anodmd\r\nContent-Type: %s\r\n"
            "Content-Length: %zu\r\n", path, host, e->content_type, e->len);
    put_header(f, "ce-specversion", "1.0");
    put_header(f, "ce-id", e->id);
    put_header(f, "ce-source", e->source);
    put_header(f, "ce-type", e->type);
    put_header(f, "ce-time", when);
    put_header(f, "ce-inferenceservicename", e->inference_service);
    put_header(f, "ce-namespace", e->namespace_name);
    put_header(f, "ce-component", e->component);
    put_header(f, "ce-endpoint", e->endpoint);
    if (e->json_len) fprintf(f, "ce-jsonlength: %zu\r\n", e->json_len);
    fputs("\r\n", f);
    fwrite(e->data, 1, e->len, f);
    if (ferror(f) | fclose(f)) {
        free(text);
        return NULL;
    }
    *out_len = len;
    return text;
}

/* ------------------------------------------------------------------ the sink's URL */

static int fail(char *err, size_t errlen, const char *why) {
    snprintf(err, errlen, "%s", why);
    return -1;
}

int http_url_parse(const char *url, http_url *u, char *err, size_t errlen) {
    memset(u, 0, sizeof *u);
    if (!strncasecmp(url, "https://", 8))
        return fail(err, errlen, "https is not supported: anodmd posts plain HTTP (send to an "
                    "in-cluster http:// sink, or through a TLS-terminating proxy)");
    if (strncasecmp(url, "http://", 7)) return fail(err, errlen, "not an http:// URL");
    if (strlen(url) >= HTTP_URL_MAX) return fail(err, errlen, "the URL is too long");
    for (const unsigned char *p = (const unsigned char *)url; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f)
            return fail(err, errlen, "a URL holds no spaces, control or non-ASCII characters");
    if (strchr(url, '#')) return fail(err, errlen, "the URL has a fragment (#...)");
    const char *a = url + 7, *end = a + strcspn(a, "/?");
    if (memchr(a, '@', (size_t)(end - a)))
        return fail(err, errlen, "the URL has a user part (user@host): not supported");
    const char *h = a, *h_end, *colon;
    if (*a == '[') {
        h = a + 1;
        h_end = memchr(h, ']', (size_t)(end - h));
        if (!h_end) return fail(err, errlen, "an IPv6 host wants its closing ']'");
        for (const char *p = h; p < h_end; p++)
            if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.')
                return fail(err, errlen, "not an IPv6 address between '[' and ']'");
        colon = h_end + 1 < end ? h_end + 1 : NULL;
        if (colon && *colon != ':') return fail(err, errlen, "junk after the IPv6 host");
    } else {
        colon = memchr(a, ':', (size_t)(end - a));
        h_end = colon ? colon : end;
        for (const char *p = h; p < h_end; p++)
            if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-' && *p != '_')
                return fail(err, errlen, "the host holds a character a host name does not");
    }
    if (h_end == h) return fail(err, errlen, "the URL has no host");
    if ((size_t)(h_end - h) >= sizeof u->host) return fail(err, errlen, "the host is too long");
    memcpy(u->host, h, (size_t)(h_end - h));
    if (colon) {
        const char *p = colon + 1;
        size_t n = (size_t)(end - p);
        long port = 0;
        if (n == 0 || n > 5) return fail(err, errlen, "the port is not a number in 1..65535");
        for (size_t i = 0; i < n; i++) {
            if (!isdigit((unsigned char)p[i]))
                return fail(err, errlen, "the port is not a number in 1..65535");
            port = port * 10 + (p[i] - '0');
        }
        if (port < 1 || port > 65535)
            return fail(err, errlen, "the port is not a number in 1..65535");
        snprintf(u->port, sizeof u->port, "%ld", port);
    } else {
        snprintf(u->port, sizeof u->port, "80");
    }
    memcpy(u->authority, a, (size_t)(end - a));   /* < HTTP_URL_MAX, host and port checked */
    snprintf(u->path, sizeof u->path, "%s%s", *end == '/' ? "" : "/", end);
    return 0;
}

/* ------------------------------------------------------------------ the sink's answer */

/* Is the comma-separated header value v (n bytes) one naming token, in any case? */
static int has_token(const char *v, size_t n, const char *token) {
    size_t t = strlen(token);
    for (size_t i = 0; i < n;) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) i++;
        size_t j = i;
        while (j < n && v[j] != ',') j++;
        size_t k = j;
        while (k > i && (v[k - 1] == ' ' || v[k - 1] == '\t')) k--;
        if (k - i == t && !strncasecmp(v + i, token, t)) return 1;
        i = j;
    }
    return 0;
}

long http_reply_parse(const char *buf, size_t len, http_reply *r) {
    size_t scan = len < HTTP_REPLY_HEAD_MAX ? len : HTTP_REPLY_HEAD_MAX, head = 0;
    for (size_t i = 3; i < scan && !head; i++)
        if (!memcmp(buf + i - 3, "\r\n\r\n", 4)) head = i + 1;
    if (!head) return len >= HTTP_REPLY_HEAD_MAX ? -1 : 0;
    /* The status line: HTTP/1.x SP 3DIGIT (100 to 599) (SP reason)? CRLF. */
    if (head < 14 || memcmp(buf, "HTTP/1.", 7) || !isdigit((unsigned char)buf[7]) ||
        buf[8] != ' ' || buf[9] < '1' || buf[9] > '5' || !isdigit((unsigned char)buf[10]) ||
        !isdigit((unsigned char)buf[11]) || (buf[12] != ' ' && buf[12] != '\r'))
        return -1;
    int keep_alive = buf[7] != '0', chunked = 0;
    r->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    r->content_length = -1;
    r->close = 0;
    const char *line = memchr(buf, '\n', head) + 1, *stop = buf + head - 2;
    while (line < stop) {
        const char *eol = memchr(line, '\n', (size_t)(stop + 2 - line));
        if (!eol || eol == line || eol[-1] != '\r') return -1;
        const char *colon = memchr(line, ':', (size_t)(eol - line));
        if (!colon || colon == line) return -1;
        size_t name = (size_t)(colon - line);
        const char *v = colon + 1, *v_end = eol - 1;
        while (v < v_end && (*v == ' ' || *v == '\t')) v++;
        while (v_end > v && (v_end[-1] == ' ' || v_end[-1] == '\t')) v_end--;
        size_t n = (size_t)(v_end - v);
        if (name == 14 && !strncasecmp(line, "Content-Length", 14)) {
            long long cl = 0;
            if (n == 0 || n > 15) return -1;
            for (size_t i = 0; i < n; i++) {
                if (!isdigit((unsigned char)v[i])) return -1;
                cl = cl * 10 + (v[i] - '0');
            }
            if (r->content_length >= 0 && r->content_length != cl) return -1;
            r->content_length = cl;
        } else if (name == 17 && !strncasecmp(line, "Transfer-Encoding", 17)) {
            chunked = 1;
        } else if (name == 10 && !strncasecmp(line, "Connection", 10)) {
            if (has_token(v, n, "close")) keep_alive = 0;
            else if (has_token(v, n, "keep-alive")) keep_alive = 1;
        }
        line = eol + 1;
    }
    /* No body after 1xx, 204 and 304; a chunked body's end is not looked for: the
     * connection is dropped after its head instead, as after a body of unknown length. */
    if (r->status < 200 || r->status == 204 || r->status == 304) r->content_length = 0;
    else if (chunked) r->content_length = -1;
    r->close = !keep_alive || r->content_length < 0;
    return (long)head;
}
