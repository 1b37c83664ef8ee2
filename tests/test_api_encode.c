/* The pieces of the daemon's JSON answers, byte for byte as jansson writes them:
 * proto/decimal.c's decimal_digits against printf's digits, proto/jsonw.c's reals and
 * strings against jansson's text of them, on many random values (reals of every magnitude
 * and kind: subnormals, ties of 9 digits, NaN and infinities as null; strings of every
 * kind of character, some not UTF-8, which both refuse). */
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "decimal.h"
#include "jsonw.h"
#include "rng.h"

/* The daemon's dump flags, as jansson takes them. */
#define JANSSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(9))

/* ------------------------------------------------------------------ random inputs */

/* A double of a random kind: any bit pattern (NaN, infinities, subnormals, every
 * magnitude), a float's, a printed-looking decimal, a small integer or half, a value on
 * a rounding tie of 9 digits or next to one, an edge of the layout (powers of ten, where
 * %g turns to exponents). */
static double random_real(rng_t *r) {
    static const double edge[] = {0.0, -0.0, 1.0, -1.0, DBL_MIN, DBL_TRUE_MIN, DBL_MAX, 1e-4,
                                  1e-5, 9.9999999949999e-5, 9.99999999500001e-5, 1e8, 1e9,
                                  999999999.5, 999999999.49999994, 99999999.95, 0.5, 1e15,
                                  1e16, 1e17, 1e21, 1e22, 1e23, 5e-324, 2.5e-308};
    uint64_t bits = rng_u64(r);
    double v;
    switch (rng_below(r, 9)) {
    case 0: memcpy(&v, &bits, sizeof v); return v;
    case 1: {
        uint32_t b = (uint32_t)bits;
        float f;
        memcpy(&f, &b, sizeof f);
        return f;
    }
    case 2: return ((double)(bits >> 11) * 0x1p-53 - 0.5) * pow(10.0, (double)rng_below(r, 60) - 30.0);
    case 3: return ((double)rng_below(r, 4000001) - 2000000.0) / (rng_below(r, 2) ? 2.0 : 1.0);
    case 4: {
        /* (2D + 1) 5^(X-8) 2^(X-9): exactly halfway between two 9-digit decimals */
        int x = 9 + (int)rng_below(r, 9);
        double odd = 2.0 * (double)(100000000 + rng_below(r, 900000000)) + 1.0;
        for (int i = 0; i < x - 8; i++) odd *= 5.0;
        if (odd >= 0x1p53) odd = 2.0 * (double)(100000000 + rng_below(r, 900000000)) + 1.0, x = 9;
        v = ldexp(odd, x - 9);
        return rng_below(r, 3) == 0 ? nextafter(v, rng_below(r, 2) ? INFINITY : -INFINITY) : v;
    }
    case 5: v = edge[rng_below(r, sizeof edge / sizeof edge[0])]; break;
    case 6: v = pow(10.0, (double)rng_below(r, 640) - 320.0); break;
    case 7: return rng_below(r, 2) ? NAN : rng_below(r, 2) ? INFINITY : -INFINITY;
    default: return rng_uniform(r);
    }
    switch (rng_below(r, 4)) {           /* an edge, or a few steps to either side of it */
    case 0: v = nextafter(v, INFINITY); break;
    case 1: v = nextafter(v, -INFINITY); break;
    }
    return rng_below(r, 2) ? -v : v;
}

/* A string of at most cap - 1 bytes: often empty or plain, else any characters a caller
 * may send (quotes, backslashes, control characters, DEL, 2- to 4-byte UTF-8, U+2028,
 * U+FFFF, U+10FFFF) and once in a while a byte that breaks UTF-8. */
static void random_string(rng_t *r, char *out, size_t cap) {
    static const char *const piece[] = {"a", "Z", "0", " ", "-", "\"", "\\", "/", "\n", "\t",
                                        "\b", "\f", "\r", "\x01", "\x1f", "\x7f", "\xc3\xa9",
                                        "\xe2\x82\xac", "\xe2\x80\xa8", "\xef\xbf\xbf",
                                        "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf", "cam-1"};
    size_t len = 0;
    int n = rng_below(r, 3) == 0 ? 0 : (int)rng_below(r, 40);
    for (int i = 0; i < n; i++) {
        char one[2] = {(char)(1 + rng_below(r, 255)), 0};
        const char *p = rng_below(r, 200) == 0 ? one : piece[rng_below(r, sizeof piece / sizeof piece[0])];
        size_t k = strlen(p);
        if (len + k >= cap) break;
        memcpy(out + len, p, k);
        len += k;
    }
    out[len] = 0;
}

/* jsonw's text and jansson's: both NULL, or the same bytes. */
static int same_text_(const char *file, int line, const char *what, int round, char *got,
                      char *want) {
    int same = (!got && !want) || (got && want && !strcmp(got, want));
    if (!same)
        check_fail(file, line, "%s, round %d:\n      got  %.600s\n      want %.600s", what,
                   round, got ? got : "(NULL)", want ? want : "(NULL)");
    free(got);
    free(want);
    return same;
}
#define SAME_TEXT(what, round, got, want) same_text_(__FILE__, __LINE__, what, round, got, want)

/* ------------------------------------------------------------------ reals and strings */

/* printf's n significant digits of v (> 0) and their exponent. */
static void printf_digits(double v, int n, uint64_t *digits, int *exp10) {
    char text[64];
    snprintf(text, sizeof text, "%.*e", n - 1, v);
    const char *p = text;
    *digits = 0;
    for (; *p != 'e'; p++)
        if (*p != '.') *digits = *digits * 10 + (uint64_t)(*p - '0');
    *exp10 = atoi(p + 1);
}

/* decimal_digits gives printf's digits bit for bit whenever it answers, at every count of
 * digits; and with the answers' 9 it answers for every double from 1e-14 to 1e38 and
 * every float's from 1e-23. */
TEST(decimal_digits_is_printf) {
    rng_t r;
    rng_seed(&r, 21);
    long answered = 0, tried = 0, missed = 0;
    for (int round = 0; round < 400000; round++) {
        double v = fabs(random_real(&r));
        int n = round % 4 ? JSONW_REAL_DIGITS : 1 + (int)rng_below(&r, 19);
        uint64_t fast, slow;
        int fast_x, slow_x;
        if (!isfinite(v) || v == 0) continue;
        tried++;
        int in_range = n == JSONW_REAL_DIGITS && v < 1e38 &&
                       (v > 1e-14 || (v == (float)v && v > 1e-23));
        if (!decimal_digits(v, n, &fast, &fast_x)) {
            missed += in_range;
            if (missed == 1 && in_range) CHECK_MSG(0, "%.17g: no answer", v);
            continue;
        }
        answered++;
        printf_digits(v, n, &slow, &slow_x);
        if (fast != slow || fast_x != slow_x) {
            CHECK_MSG(0, "%.17g, %d digits: %llue%d, printf %llue%d", v, n,
                      (unsigned long long)fast, fast_x, (unsigned long long)slow, slow_x);
            break;
        }
    }
    CHECK_MSG(missed == 0 && answered > tried / 2, "answered %ld of %ld, %ld in range missed",
              answered, tried, missed);
    uint64_t d;
    int x;
    CHECK(!decimal_digits(0.0, 9, &d, &x) && !decimal_digits(-1.0, 9, &d, &x) &&
          !decimal_digits(DBL_TRUE_MIN, 9, &d, &x) && !decimal_digits(INFINITY, 9, &d, &x) &&
          !decimal_digits(NAN, 9, &d, &x) && !decimal_digits(1.0, 20, &d, &x));
}

/* One value as jsonw writes it alone (the text, to free). */
static char *jsonw_alone(double v, const char *s) {
    jsonw w = {0};
    if (s) jsonw_string(&w, s);
    else jsonw_real(&w, v);
    return jsonw_finish(&w, NULL);
}

/* The same value as jansson dumps it: null for a real that is not finite (the encoders'
 * api_json_number), NULL for a string that is not UTF-8. */
static char *jansson_alone(double v, const char *s) {
    json_t *j = s ? json_string(s) : isfinite(v) ? json_real(v) : json_null();
    char *text = j ? json_dumps(j, JSON_ENCODE_ANY | JANSSON_FLAGS) : NULL;
    json_decref(j);
    return text;
}

TEST(jsonw_reals_are_janssons) {
    static const double fixed[] = {0.0, -0.0, 1.0, 100.0, 123456789.0, 1e8, 1e9, 1e-4, 1e-5,
                                   123456784.5, 123456785.5, 999999999.5, 9999999995.0,
                                   0.1, 1.5e-5, 5e-324, 1e300, DBL_MAX, -DBL_MIN, NAN, INFINITY};
    rng_t r;
    rng_seed(&r, 22);
    for (int round = 0; round < 300000; round++) {
        double v = round < (int)(sizeof fixed / sizeof fixed[0]) ? fixed[round] : random_real(&r);
        if (!SAME_TEXT("a real", round, jsonw_alone(v, NULL), jansson_alone(v, NULL))) {
            CHECK_MSG(0, "the real was %.17g", v);
            break;
        }
    }
}

/* Every string of up to two bytes, those of three and four bytes from bytes at every
 * edge of UTF-8 and of escaping, and random ones: escaped as jansson escapes them, and
 * refused (the text NULL) where jansson refuses them. */
TEST(jsonw_strings_are_janssons) {
    static const unsigned char edge[] = {0x01, 0x08, 0x1f, 0x20, 0x22, 0x2f, 0x5c, 0x7f,
                                         0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1,
                                         0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff};
    enum { E = sizeof edge };
    long refused = 0, round = 0;
    int ok = 1;
    for (unsigned a = 0; ok && a < 256; a++)
        for (unsigned b = 0; ok && b < 256; b++, round++) {
            char s[3] = {(char)a, (char)b, 0};
            char *want = jansson_alone(0, s);
            refused += !want;
            ok = SAME_TEXT("a string", (int)round, jsonw_alone(0, s), want);
        }
    for (unsigned a = 0x80; ok && a < 256; a++)
        for (int i = 0; ok && i < E * E * (a >= 0xf0 ? E : 1); i++, round++) {
            char s[5] = {(char)a, (char)edge[i % E], (char)edge[i / E % E],
                         (char)(a >= 0xf0 ? edge[i / E / E] : 0), 0};
            char *want = jansson_alone(0, s);
            refused += !want;
            ok = SAME_TEXT("a string", (int)round, jsonw_alone(0, s), want);
        }
    rng_t r;
    rng_seed(&r, 23);
    for (int i = 0; ok && i < 50000; i++, round++) {
        char s[200];
        random_string(&r, s, sizeof s);
        char *want = jansson_alone(0, s);
        refused += !want;
        ok = SAME_TEXT("a string", (int)round, jsonw_alone(0, s), want);
    }
    CHECK_MSG(refused > 10000 && round - refused > 10000, "%ld of %ld refused", refused, round);
}
