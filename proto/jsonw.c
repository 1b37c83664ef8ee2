/* jsonw.c — JSON text without a tree, as jansson writes it (see jsonw.h). */
#include "jsonw.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decimal.h"

/* The longest real: "-1.23456789e-308". */
#define REAL_TEXT_MAX (JSONW_REAL_DIGITS + 16)

/* Room for n more bytes and the closing NUL: 0, or -1 when the text has failed. */
static int reserve(jsonw *w, size_t n) {
    if (w->failed) return -1;
    if (w->cap - w->len > n) return 0;
    size_t cap = w->cap ? w->cap : 1024;
    while (cap - w->len <= n && cap <= SIZE_MAX / 2) cap *= 2;
    char *s = cap - w->len > n ? realloc(w->s, cap) : NULL;
    if (!s) {
        w->failed = 1;
        return -1;
    }
    w->s = s;
    w->cap = cap;
    return 0;
}

int jsonw_bytes(const char *bytes, size_t n, void *data) {
    jsonw *w = data;
    if (reserve(w, n)) return -1;
    memcpy(w->s + w->len, bytes, n);
    w->len += n;
    return 0;
}

static void put_char(jsonw *w, char c) {
    if (!reserve(w, 1)) w->s[w->len++] = c;
}

/* The ',' before a member or an element that follows another. */
static void separate(jsonw *w) {
    if (w->comma) put_char(w, ',');
}

/* A scalar's text of n bytes. */
static void put_value(jsonw *w, const char *text, size_t n) {
    separate(w);
    if (!jsonw_bytes(text, n, w)) w->comma = 1;
}

int jsonw_utf8_length(const unsigned char *p) {
    unsigned c = p[0];
    int n = c == 0 ? 0 : c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
          : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    for (int i = 1; i < n; i++)
        if ((p[i] & 0xC0) != 0x80) return 0;         /* stops at a NUL too */
    if (n == 3 && ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] >= 0xA0))) return 0;
    if (n == 4 && ((c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] >= 0x90))) return 0;
    return n;
}

/* s quoted and escaped; the text fails if s is not UTF-8. */
static void put_string(jsonw *w, const char *s) {
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    if (n > SIZE_MAX / 8) w->failed = 1;
    if (reserve(w, 2 + 6 * n)) return;                /* every byte escaped, at worst */
    char *o = w->s + w->len;
    const unsigned char *p = (const unsigned char *)s;
    *o++ = '"';
    while (*p) {
        unsigned c = *p;
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            *o++ = (char)*p++;
            continue;
        }
        if (c >= 0x80) {
            int k = jsonw_utf8_length(p);
            if (!k) {
                w->failed = 1;
                return;
            }
            memcpy(o, p, (size_t)k);
            o += k;
            p += k;
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        default:
            memcpy(o, "u00", 3);
            o[3] = hex[c >> 4];
            o[4] = hex[c & 15];
            o += 5;
        }
        p++;
    }
    *o++ = '"';
    w->len = (size_t)(o - w->s);
}

void jsonw_open(jsonw *w, char bracket) {
    separate(w);
    put_char(w, bracket);
    w->comma = 0;
}

void jsonw_close(jsonw *w, char bracket) {
    put_char(w, bracket);
    w->comma = 1;
}

void jsonw_key(jsonw *w, const char *key) {
    separate(w);
    put_string(w, key);
    put_char(w, ':');
    w->comma = 0;
}

void jsonw_string(jsonw *w, const char *s) {
    separate(w);
    put_string(w, s);
    w->comma = 1;
}

void jsonw_key_string(jsonw *w, const char *key, const char *s) {
    jsonw_key(w, key);
    jsonw_string(w, s);
}

/* v in decimal ("%lld") at out; its length. */
static size_t int_text(int64_t v, char *out) {
    char rev[20];
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    size_t n = 0, k = 0;
    do rev[n++] = (char)('0' + u % 10);
    while (u /= 10);
    if (v < 0) out[k++] = '-';
    while (n) out[k++] = rev[--n];
    return k;
}

void jsonw_int(jsonw *w, int64_t v) {
    char text[24];
    put_value(w, text, int_text(v, text));
}

void jsonw_bool(jsonw *w, int v) { put_value(w, v ? "true" : "false", v ? 4 : 5); }

void jsonw_null(jsonw *w) { put_value(w, "null", 4); }

/* The digits of v (> 0, finite) as snprintf prints them, where decimal_digits cannot. */
static void printed_digits(double v, uint64_t *digits, int *exp10) {
    char text[64];
    snprintf(text, sizeof text, "%.*e", JSONW_REAL_DIGITS - 1, v);
    const char *p = text;
    uint64_t d = 0;
    for (; *p && *p != 'e'; p++)                      /* the point is the locale's: skipped */
        if (*p >= '0' && *p <= '9') d = d * 10 + (uint64_t)(*p - '0');
    *digits = d;
    *exp10 = *p ? atoi(p + 1) : 0;
}

/* v (finite) as "%.9g" prints it, with jansson's amendments; its length. */
static size_t real_text(double v, char *out) {
    char *o = out, d[JSONW_REAL_DIGITS];
    if (signbit(v)) {
        *o++ = '-';
        v = -v;
    }
    if (v == 0) {
        memcpy(o, "0.0", 3);
        return (size_t)(o + 3 - out);
    }
    uint64_t digits;
    int x, nd = JSONW_REAL_DIGITS;
    if (!decimal_digits(v, JSONW_REAL_DIGITS, &digits, &x)) printed_digits(v, &digits, &x);
    for (; digits % 10 == 0; nd--) digits /= 10;      /* %g drops trailing zeros */
    for (int i = nd - 1; i >= 0; i--, digits /= 10) d[i] = (char)('0' + digits % 10);
    if (x < -4 || x >= JSONW_REAL_DIGITS) {           /* %g's exponent form: d.ddde-5, d.ddde9 */
        *o++ = d[0];
        if (nd > 1) {
            *o++ = '.';
            memcpy(o, d + 1, (size_t)nd - 1);
            o += nd - 1;
        }
        *o++ = 'e';
        o += int_text(x, o);
    } else if (x < 0) {                               /* 0.000ddd */
        *o++ = '0';
        *o++ = '.';
        for (int i = -1; i > x; i--) *o++ = '0';
        memcpy(o, d, (size_t)nd);
        o += nd;
    } else if (nd > x + 1) {                          /* ddd.ddd */
        memcpy(o, d, (size_t)x + 1);
        o += x + 1;
        *o++ = '.';
        memcpy(o, d + x + 1, (size_t)(nd - x - 1));
        o += nd - x - 1;
    } else {                                          /* ddd000, and jansson's ".0" */
        memcpy(o, d, (size_t)nd);
        o += nd;
        memset(o, '0', (size_t)(x + 1 - nd));
        o += x + 1 - nd;
        memcpy(o, ".0", 2);
        o += 2;
    }
    return (size_t)(o - out);
}

void jsonw_real(jsonw *w, double v) {
    char text[REAL_TEXT_MAX];
    if (!isfinite(v)) jsonw_null(w);
    else put_value(w, text, real_text(v, text));
}

char *jsonw_finish(jsonw *w, size_t *len) {
    if (reserve(w, 0)) {
        free(w->s);
        w->s = NULL;
        return NULL;
    }
    w->s[w->len] = 0;
    if (len) *len = w->len;
    return w->s;
}
