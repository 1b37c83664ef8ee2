/* The fast path for the daemon's hottest request: a plain v1 score body.
 *
 * Why it exists: jansson builds a json_t (one malloc) for every number, so decoding a
 * 784-value Fashion-MNIST sample cost about as much CPU as scoring it (a profile of
 * anodmd under wrk: 30% of the daemon's time in json_loadb). This scanner reads the
 * common shape straight into the float buffer.
 *
 * Why it is safe: it never refuses anything. It accepts only a strict subset of JSON
 * (ASCII strings without escapes, the JSON number grammar, the five known keys each at
 * most once, the right sample length, a batch within the limit) and hands every other
 * body, valid or not, to the jansson decoder, which then accepts it or produces the
 * error the caller sees. Whatever it accepts decodes to exactly what jansson's path
 * gives: integers go through a 64-bit integer as jansson's do, reals through strtod as
 * jansson's do (or, where that is exact, the arithmetic that gives strtod's value).
 * tests/test_api.c and tests/fuzz/fuzz_api.c compare the two paths. */
#include "api.h"
#include "decimal.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *p, *end;
} cursor;

static int is_space(char ch) { return ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t'; }

/* Inline, as eat: both run around every number. Bodies are mostly compact: one comparison
 * rules space out for most bytes. */
static inline void skip_space(cursor *c) {
    while (c->p < c->end && (unsigned char)*c->p <= ' ' && is_space(*c->p)) c->p++;
}

/* Skip space, then the character ch; 0 if something else is there. */
static inline int eat(cursor *c, char ch) {
    skip_space(c);
    if (c->p == c->end || *c->p != ch) return 0;
    c->p++;
    return 1;
}

/* A string of printable ASCII without escapes: its bytes at *s, *n of them. */
static int plain_string(cursor *c, const char **s, size_t *n) {
    if (!eat(c, '"')) return 0;
    const char *start = c->p;
    while (c->p < c->end && *c->p != '"') {
        unsigned char ch = (unsigned char)*c->p;
        if (ch < 0x20 || ch > 0x7e || ch == '\\') return 0;
        c->p++;
    }
    if (c->p == c->end) return 0;
    *s = start;
    *n = (size_t)(c->p - start);
    c->p++;
    return 1;
}

/* Numbers are read without checking for the body's end at every character: the body's
 * last byte is '}' or space (api_decode_score_fast hands any other body over), which is
 * none of a number's characters, so every scan below stops on or before it, and a byte
 * of a number is never the last: the next one can be read. */

static int is_digit(char ch) { return ch >= '0' && ch <= '9'; }

/* The digits from p on, each into *m (times ten plus the digit; it wraps past 19 digits,
 * which the caller counts); where they stop. */
static const char *digits(const char *p, uint64_t *m) {
    uint64_t v = *m;
    for (unsigned d; (d = (unsigned char)*p - '0') < 10; p++) v = v * 10 + d;
    *m = v;
    return p;
}

/* An exponent's sign and digits from p (just past the 'e') into *e, held near 1e6
 * beyond which only its sign matters; where they stop, or NULL without digits. */
static const char *exponent(const char *p, int *e) {
    int sign = *p == '-' ? -1 : 1, v = 0;
    if (*p == '+' || *p == '-') p++;
    if (!is_digit(*p)) return NULL;
    for (; is_digit(*p); p++)
        if (v < 100000) v = v * 10 + (*p - '0');
    *e = sign * v;
    return p;
}

/* One JSON number into *out as jansson would decode it and api.c narrow it to float;
 * 0 for anything else, and for numbers jansson refuses or api.c rejects. One pass checks
 * the grammar and gathers the digits into an integer m and the decimal exponent. */
static int number(cursor *c, float *out) {
    skip_space(c);
    if (c->p == c->end) return 0;
    const char *start = c->p, *p = start, *first;
    if (p[0] == '0' && p[1] == ',') {       /* most of an image, its background: at once */
        *out = 0.0f;
        c->p = p + 1;
        return 1;
    }
    int negative = *p == '-', integer = 1, e = 0;
    uint64_t m = 0;
    p = first = p + negative;
    if (*p == '0') p++;                     /* a leading 0 stands alone */
    else p = digits(p, &m);
    if (p == first) return 0;
    size_t n_digits = (size_t)(p - first), n_fraction = 0;
    if (*p == '.') {
        const char *fraction = ++p;
        p = digits(p, &m);
        n_fraction = (size_t)(p - fraction);
        if (!n_fraction) return 0;
        n_digits += n_fraction;
        integer = 0;
    }
    if (*p == 'e' || *p == 'E') {
        if (!(p = exponent(p + 1, &e))) return 0;
        integer = 0;
    }
    /* A number is never the last thing in a body; what follows bounds strtod too. */
    if (!(*p == ',' || *p == ']' || is_space(*p))) return 0;
    double v;
    if (integer) {
        if (n_digits > 18) return 0; /* always fits long long: no overflow to rule out */
        long long i = (long long)m;
        v = (double)(negative ? -i : i);    /* "-0" is jansson's integer 0: +0.0 */
    } else if (n_digits > 19 || !decimal_exact(m, e - (int)n_fraction, negative, &v)) {
        /* m may have wrapped, or exact arithmetic cannot give the value: strtod, as jansson */
        char *stop;
        errno = 0;
        v = strtod(start, &stop);
        if (stop != p || errno == ERANGE || !isfinite((float)v)) return 0;
    }
    /* Else finite as a float: below 1e18, or 2^53 x 1e22 at most (FLT_MAX is 3.4e38). */
    *out = (float)v;
    c->p = p;
    return 1;
}

/* A sample: '[' and exactly dim numbers. Read with a copy of the cursor, which the
 * compiler keeps in registers (c's could change with any store to x, as far as it knows). */
static int sample(cursor *c, size_t dim, float *x) {
    cursor k = *c;
    if (!eat(&k, '[')) return 0;
    for (size_t i = 0; i < dim; i++)
        if ((i && !eat(&k, ',')) || !number(&k, &x[i])) return 0;
    if (!eat(&k, ']')) return 0;
    *c = k;
    return 1;
}

/* Room for at least n samples of dim values in *x (capacity *cap samples); 0 if out of
 * memory. */
static int reserve(float **x, size_t *cap, size_t n, size_t dim) {
    if (n <= *cap) return 1;
    size_t want = *cap ? *cap * 2 : 4;
    if (want < n) want = n;
    float *grown = realloc(*x, want * dim * sizeof **x);
    if (!grown) return 0;
    *x = grown;
    *cap = want;
    return 1;
}

/* "samples": '[' sample (',' sample)* ']' into req; 1, 0 to leave it to jansson, -1 if
 * out of memory. */
static int sample_list(cursor *c, size_t dim, int max_batch, api_score_request *req,
                       size_t *cap) {
    if (!eat(c, '[')) return 0;
    size_t n = 0;
    do {
        if (n == (size_t)max_batch) return 0;
        if (!reserve(&req->x, cap, n + 1, dim)) return -1;
        if (!sample(c, dim, req->x + n * dim)) return 0;
        n++;
    } while (eat(c, ','));
    if (!eat(c, ']')) return 0;
    req->n = (int)n;
    return 1;
}

/* The key's value into req; seen marks keys already read. 1, 0 or -1 as above. */
static int member(cursor *c, const char *key, size_t key_len, size_t dim, int max_batch,
                  api_score_request *req, unsigned *seen, size_t *cap) {
    static const char *const keys[] = {"sample", "samples", "id", "source", "explain"};
    int k = 0;
    while (k < 5 && !(strlen(keys[k]) == key_len && !memcmp(keys[k], key, key_len))) k++;
    if (k == 5 || (*seen & (1u << k))) return 0;
    *seen |= 1u << k;
    if (k <= 1) {
        if ((*seen & 3u) == 3u) return 0; /* both: jansson's path explains */
        if (k == 1) return sample_list(c, dim, max_batch, req, cap);
        if (!reserve(&req->x, cap, 1, dim)) return -1;
        req->n = 1;
        return sample(c, dim, req->x);
    }
    if (k == 4) {
        skip_space(c);
        size_t left = (size_t)(c->end - c->p);
        if (left >= 4 && !memcmp(c->p, "true", 4)) req->explain = 1, c->p += 4;
        else if (left >= 5 && !memcmp(c->p, "false", 5)) req->explain = 0, c->p += 5;
        else return 0;
        return 1;
    }
    const char *s;
    size_t n;
    if (!plain_string(c, &s, &n) || n > API_ID_MAX) return 0;
    char *to = k == 2 ? req->id : req->source;
    memcpy(to, s, n);
    to[n] = 0;
    return 1;
}

int api_decode_score_fast(const char *body, size_t len, size_t dim, int max_batch,
                          api_score_request *req) {
    memset(req, 0, sizeof *req);
    /* Every body it takes ends so, and that byte bounds each number's scan (number). */
    if (!len || !(body[len - 1] == '}' || is_space(body[len - 1]))) return 0;
    req->dim = dim;
    cursor c = {body, body + len};
    unsigned seen = 0;
    size_t cap = 0;
    int rc = eat(&c, '{');
    while (rc == 1) {
        const char *key;
        size_t key_len;
        if (!plain_string(&c, &key, &key_len) || !eat(&c, ':')) {
            rc = 0;
            break;
        }
        rc = member(&c, key, key_len, dim, max_batch, req, &seen, &cap);
        if (rc == 1 && !eat(&c, ',')) {
            rc = eat(&c, '}') ? 2 : 0;
            break;
        }
    }
    if (rc == 2) {
        skip_space(&c);
        if (c.p == c.end && (seen & 3u)) return 1;
        rc = 0;
    }
    api_score_request_free(req);
    return rc;
}
