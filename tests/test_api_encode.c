/* The daemon's answers, byte for byte as jansson wrote them. First the pieces:
 * proto/decimal.c's decimal_digits against printf's digits, proto/jsonw.c's reals and
 * strings against jansson's text of them, on many random values (reals of every magnitude
 * and kind: subnormals, ties of 9 digits, NaN and infinities as null; strings of every
 * kind of character, some not UTF-8, which both refuse). Then the hot answers proto/api.c
 * writes with jsonw (score, log record, page, held sample, result line, V2 infer) against
 * jansson's text of the same answers on random records: the oracle below builds each as a
 * jansson tree, member by member in the wire format's order (proto/openapi.yaml), and
 * dumps it with the daemon's flags. */
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "check.h"
#include "decimal.h"
#include "jsonw.h"
#include "le.h"
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

/* ------------------------------------------------------------------ the oracle */

/* A member or an element; a NULL value (a string that is not UTF-8, a real jansson
 * refuses) spoils the whole answer, as it spoilt json_pack's. */
static void put(json_t *o, const char *key, json_t *v, int *bad) {
    if (!v) *bad = 1;
    else json_object_set_new(o, key, v);
}
static void add(json_t *a, json_t *v, int *bad) {
    if (!v) *bad = 1;
    else json_array_append_new(a, v);
}
static json_t *o_num(double v) { return isfinite(v) ? json_real(v) : json_null(); }
static json_t *o_tag(const char *s) { return *s ? json_string(s) : json_null(); }
static json_t *o_id(int64_t id) { return id > 0 ? json_integer((json_int_t)id) : json_null(); }
static json_t *o_REAL(double v) { return o_num(v); }
static json_t *o_FLAG(int v) { return json_boolean(v); }
static json_t *o_INDEX(int32_t v) { return json_integer(v); }

static char *o_dump(json_t *v, int bad) {
    char *s = v && !bad ? json_dumps(v, JANSSON_FLAGS) : NULL;
    json_decref(v);
    return s;
}

/* A field of detector.h's table into o by its group: a VERDICT member, a member of
 * "terms", an element of "position" (each box made where its first field is). */
static void o_field(json_t *o, detector_group g, const char *name, json_t *v, int *bad) {
    if (g == DETECTOR_GROUP_NEAREST) {
        json_decref(v);
        return;
    }
    if (g == DETECTOR_GROUP_VERDICT) {
        put(o, name, v, bad);
        return;
    }
    const char *box = g == DETECTOR_GROUP_TERM ? "terms" : "position";
    json_t *c = json_object_get(o, box);
    if (!c) json_object_set_new(o, box, c = g == DETECTOR_GROUP_TERM ? json_object() : json_array());
    if (g == DETECTOR_GROUP_TERM) put(c, name, v, bad);
    else add(c, v, bad);
}

static json_t *o_result(const api_score_record *r, int *bad) {
    json_t *o = json_object();
    put(o, "model", json_string(r->model), bad);
    put(o, "version", json_string(r->version), bad);
    put(o, "id", o_tag(r->id), bad);
    put(o, "index", json_integer(r->index), bad);
#define F_(name, type, group, doc) o_field(o, DETECTOR_GROUP_##group, #name, o_##type(r->r.name), bad);
    DETECTOR_RESULT_FIELDS(F_)
#undef F_
    put(o, "threshold", o_num(r->threshold), bad);
    put(o, "log_id", o_id(r->log_id), bad);
    return o;
}

static json_t *o_floats(const float *v, size_t n, int *bad) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) add(a, o_num(v[i]), bad);
    return a;
}

static void o_detail(json_t *o, const api_score_detail *d, int i, int *bad) {
    if (d->r_peak) {
        json_t *p = json_object();
        put(p, "sample", json_integer((json_int_t)d->r_peak[i]), bad);
        put(p, "time_s", json_real((double)d->r_peak[i] / d->fs), bad);
        put(o, "r_peak", p, bad);
    }
    json_t *nb = json_array();
    for (int j = 0; j < d->k; j++) {
        size_t at = (size_t)i * (size_t)d->k + (size_t)j;
        json_t *e = json_object();
        put(e, "ref", json_integer(d->ref[at]), bad);
        put(e, "distance", o_num(d->distance[at]), bad);
        add(nb, e, bad);
    }
    put(o, "neighbors", nb, bad);
    if (!d->x_rec) return;
    const float *x = d->x + (size_t)i * d->dim, *rec = d->x_rec + (size_t)i * d->dim;
    json_t *se = json_array();
    for (size_t j = 0; j < d->dim; j++)
        add(se, o_num(((double)x[j] - rec[j]) * ((double)x[j] - rec[j])), bad);
    put(o, "squared_error", se, bad);
    put(o, "reconstruction", o_floats(rec, d->dim, bad), bad);
}

static char *o_score(const char *model, const char *version, const api_score_record *rec,
                     int n, const api_score_detail *d) {
    int bad = 0;
    json_t *root = json_object(), *results = json_array();
    put(root, "model", json_string(model), &bad);
    put(root, "version", json_string(version), &bad);
    put(root, "results", results, &bad);
    for (int i = 0; i < n; i++) {
        json_t *o = o_result(&rec[i], &bad);
        o_detail(o, d, i, &bad);
        add(results, o, &bad);
    }
    return o_dump(root, bad);
}

static json_t *o_record(const api_score_record *r, int *bad) {
    json_t *o = o_result(r, bad);
    time_t t = (time_t)(r->ts_ms / 1000);
    struct tm tm;
    char buf[40];
    if (gmtime_r(&t, &tm)) {
        size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(buf + n, sizeof buf - n, ".%03dZ", (int)(r->ts_ms % 1000));
        put(o, "time", json_string(buf), bad);
    } else {
        put(o, "time", json_null(), bad);
    }
    put(o, "source", o_tag(r->source), bad);
    put(o, "replica_id", o_tag(r->replica_id), bad);
    put(o, "local_id", o_id(r->local_id), bad);
    json_t *nearest = json_object();
    put(nearest, "ref", json_integer(r->r.nearest_ref), bad);
    put(nearest, "distance", o_num(r->r.nearest_distance), bad);
    put(o, "nearest", nearest, bad);
    return o;
}

static char *o_page(const api_score_record *rec, int n, int64_t since_id) {
    int bad = 0;
    json_t *root = json_object(), *scores = json_array();
    put(root, "scores", scores, &bad);
    put(root, "next_since_id", json_integer((json_int_t)(n ? rec[n - 1].log_id : since_id)), &bad);
    for (int i = 0; i < n; i++) add(scores, o_record(&rec[i], &bad), &bad);
    return o_dump(root, bad);
}

static char *o_line(size_t index, const int32_t *label, const detector_result *r) {
    int bad = 0;
    json_t *o = json_object();
    put(o, "index", json_integer((json_int_t)index), &bad);
    if (label) put(o, "label", json_integer(*label), &bad);
#define F_(name, type, group, doc) put(o, #name, o_##type(r->name), &bad);
    DETECTOR_RESULT_FIELDS(F_)
#undef F_
    return o_dump(o, bad);
}

static char *o_sample(const api_sample *s) {
    int bad = 0;
    json_t *o = json_object(), *shape = json_array();
    put(o, "log_id", json_integer((json_int_t)s->log_id), &bad);
    put(o, "model", json_string(s->model), &bad);
    put(o, "version", json_string(s->version), &bad);
    for (int i = 0; i < 3; i++) add(shape, json_integer(s->shape[i]), &bad);
    put(o, "shape", shape, &bad);
    put(o, "input", o_floats(s->x, s->dim, &bad), &bad);
    api_score_detail d = {.k = s->k, .ref = s->ref, .distance = s->distance, .x = s->x,
                          .x_rec = s->x_rec, .dim = s->dim};
    o_detail(o, &d, 0, &bad);
    return o_dump(o, bad);
}

/* The JSON header of an infer answer (the binary data after it is checked apart). */
static char *o_v2(const char *model, const char *version, const char *id,
                  const api_score_record *rec, int n, const api_v2_outputs *out) {
    static const char *const name[] = {"score", "is_anomaly", "p_value", "log_id"};
    static const char *const type[] = {"FP64", "BOOL", "FP64", "INT64"};
    static const size_t size[] = {8, 1, 8, 8};
    int bad = 0;
    json_t *root = json_object(), *outputs = json_array();
    put(root, "model_name", json_string(model), &bad);
    put(root, "model_version", json_string(version), &bad);
    put(root, "outputs", outputs, &bad);
    if (*id) put(root, "id", json_string(id), &bad);
    for (int k = 0; k < out->n; k++) {
        int w = out->which[k];
        json_t *t = json_object(), *shape = json_array();
        put(t, "name", json_string(name[w]), &bad);
        put(t, "datatype", json_string(type[w]), &bad);
        add(shape, json_integer(n), &bad);
        put(t, "shape", shape, &bad);
        if (out->binary[k]) {
            json_t *p = json_object();
            put(p, "binary_data_size", json_integer((json_int_t)(n * size[w])), &bad);
            put(t, "parameters", p, &bad);
        } else {
            json_t *data = json_array();
            for (int i = 0; i < n; i++)
                add(data, w == API_V2_SCORE        ? o_num(rec[i].r.score)
                          : w == API_V2_IS_ANOMALY ? json_boolean(rec[i].r.is_anomaly)
                          : w == API_V2_P_VALUE    ? o_num(rec[i].r.p_value)
                                                   : json_integer((json_int_t)rec[i].log_id),
                    &bad);
            put(t, "data", data, &bad);
        }
        add(outputs, t, &bad);
    }
    return o_dump(root, bad);
}

/* ------------------------------------------------------------------ random answers */

static int64_t random_int(rng_t *r) {
    switch (rng_below(r, 4)) {
    case 0: return (int64_t)rng_u64(r);
    case 1: return (int64_t)rng_below(r, 2001) - 1000;
    case 2: return rng_below(r, 2) ? INT64_MAX : INT64_MIN;
    default: return (int64_t)(rng_u64(r) >> rng_below(r, 64));
    }
}

static void random_record(rng_t *r, api_score_record *rec) {
    memset(rec, 0, sizeof *rec);
    rec->log_id = random_int(r);
    rec->local_id = random_int(r);
    /* times from before 1970 to past 9999 (gmtime_r fails at the far ends: null) */
    rec->ts_ms = rng_below(r, 8) ? (int64_t)rng_below(r, 400000000000000ULL) - 100000000000000LL
                                 : random_int(r);
    rec->index = (int)random_int(r);
    random_string(r, rec->model, API_NAME_MAX / 2);
    random_string(r, rec->version, sizeof rec->version);
    random_string(r, rec->id, sizeof rec->id);
    random_string(r, rec->source, sizeof rec->source);
    random_string(r, rec->replica_id, sizeof rec->replica_id);
    rec->threshold = random_real(r);
#define SET_REAL(v) v = random_real(r)
#define SET_FLAG(v) v = (int)rng_below(r, 3) - (rng_below(r, 4) == 0)
#define SET_INDEX(v) v = (int32_t)random_int(r)
#define F_(name, type, group, doc) SET_##type(rec->r.name);
    DETECTOR_RESULT_FIELDS(F_)
#undef F_
#undef SET_REAL
#undef SET_FLAG
#undef SET_INDEX
}

static float random_float(rng_t *r) { return (float)random_real(r); }

/* ------------------------------------------------------------------ the answers */

TEST(api_encode_score_is_janssons) {
    enum { MAX_N = 4, MAX_K = 5, MAX_DIM = 12 };
    rng_t r;
    rng_seed(&r, 17);
    int texts = 0, refused = 0;
    for (int round = 0; round < 6000; round++) {
        api_score_record rec[MAX_N];
        int32_t ref[MAX_N * MAX_K];
        float dist[MAX_N * MAX_K], x[MAX_N * MAX_DIM], x_rec[MAX_N * MAX_DIM];
        int64_t peak[MAX_N];
        int n = 1 + (int)rng_below(&r, MAX_N);
        for (int i = 0; i < n; i++) random_record(&r, &rec[i]);
        api_score_detail d = {.k = (int)rng_below(&r, MAX_K + 1), .ref = ref, .distance = dist,
                              .x = x, .dim = 1 + rng_below(&r, MAX_DIM)};
        for (int i = 0; i < MAX_N * MAX_K; i++) {
            ref[i] = (int32_t)random_int(&r);
            dist[i] = random_float(&r);
        }
        for (int i = 0; i < MAX_N * MAX_DIM; i++) {
            x[i] = random_float(&r);
            x_rec[i] = rng_below(&r, 4) ? x[i] + (float)random_real(&r) * 1e-3f : random_float(&r);
        }
        if (rng_below(&r, 2)) d.x_rec = x_rec;
        if (rng_below(&r, 3) == 0) {
            d.r_peak = peak;
            d.fs = 1 + (int)rng_below(&r, 10000);
            for (int i = 0; i < n; i++) peak[i] = random_int(&r) >> rng_below(&r, 64);
        }
        char model[API_NAME_MAX + 1], version[API_VERSION_LEN + 1];
        random_string(&r, model, sizeof model);
        random_string(&r, version, sizeof version);
        char *want = o_score(model, version, rec, n, &d);
        texts += want != NULL;
        refused += want == NULL;
        if (!SAME_TEXT("api_encode_score", round,
                       api_encode_score(model, version, rec, n, &d), want))
            break;
    }
    CHECK_MSG(texts > 2000 && refused > 100, "%d texts, %d refused", texts, refused);
}

TEST(api_encode_records_are_janssons) {
    enum { MAX_N = 5 };
    rng_t r;
    rng_seed(&r, 18);
    for (int round = 0; round < 6000; round++) {
        api_score_record rec[MAX_N];
        int n = (int)rng_below(&r, MAX_N + 1);
        for (int i = 0; i < n; i++) random_record(&r, &rec[i]);
        int64_t since = random_int(&r);
        if (!SAME_TEXT("api_encode_score_page", round, api_encode_score_page(rec, n, since),
                       o_page(rec, n, since)))
            break;
        if (n) {
            int bad = 0;
            json_t *o = o_record(&rec[0], &bad);
            char *want = o_dump(o, bad);
            if (!SAME_TEXT("api_encode_score_record", round, api_encode_score_record(&rec[0]),
                           want))
                break;
            int32_t label = (int32_t)random_int(&r);
            size_t index = (size_t)rng_u64(&r) >> rng_below(&r, 64);
            const int32_t *l = rng_below(&r, 2) ? &label : NULL;
            if (!SAME_TEXT("api_encode_result_line", round, api_encode_result_line(index, l, &rec[0].r),
                           o_line(index, l, &rec[0].r)))
                break;
        }
    }
}

TEST(api_encode_sample_is_janssons) {
    enum { MAX_K = 5, MAX_DIM = 40 };
    rng_t r;
    rng_seed(&r, 19);
    for (int round = 0; round < 3000; round++) {
        float x[MAX_DIM], x_rec[MAX_DIM], dist[MAX_K];
        int32_t ref[MAX_K];
        api_sample s = {.log_id = random_int(&r), .shape = {(int)random_int(&r), 28, 28},
                        .dim = rng_below(&r, MAX_DIM + 1), .x = x, .x_rec = x_rec,
                        .k = (int)rng_below(&r, MAX_K + 1), .ref = ref, .distance = dist};
        random_string(&r, s.model, sizeof s.model);
        random_string(&r, s.version, sizeof s.version);
        for (int i = 0; i < MAX_DIM; i++) {
            x[i] = random_float(&r);
            x_rec[i] = random_float(&r);
        }
        for (int i = 0; i < MAX_K; i++) {
            ref[i] = (int32_t)random_int(&r);
            dist[i] = random_float(&r);
        }
        if (!SAME_TEXT("api_encode_sample", round, api_encode_sample(&s), o_sample(&s))) break;
    }
}

/* The JSON header as jansson writes it, and after it each binary output's values in the
 * order asked, little-endian. */
TEST(api_encode_v2_infer_is_janssons) {
    enum { MAX_N = 6 };
    rng_t r;
    rng_seed(&r, 20);
    for (int round = 0; round < 6000; round++) {
        api_score_record rec[MAX_N];
        int n = 1 + (int)rng_below(&r, MAX_N);
        for (int i = 0; i < n; i++) random_record(&r, &rec[i]);
        api_v2_outputs out = {0};
        unsigned used = 0;
        int want_n = 1 + (int)rng_below(&r, API_V2_N_OUTPUTS);
        while (out.n < want_n) {
            int w = (int)rng_below(&r, API_V2_N_OUTPUTS);
            if (used & (1u << w)) continue;
            used |= 1u << w;
            out.which[out.n] = (unsigned char)w;
            out.binary[out.n++] = (unsigned char)rng_below(&r, 2);
        }
        char model[API_NAME_MAX + 1], version[API_VERSION_LEN + 1], id[API_ID_MAX + 1];
        random_string(&r, model, sizeof model);
        random_string(&r, version, sizeof version);
        random_string(&r, id, sizeof id);
        size_t len = 0, json_len = 0;
        char *got = api_encode_v2_infer(model, version, id, rec, n, &out, &len, &json_len);
        char *want = o_v2(model, version, id, rec, n, &out);
        int ok = 1;
        if (got && want) {
            size_t at = json_len;
            ok = json_len == strlen(want) && !memcmp(got, want, json_len) && !got[len];
            for (int k = 0; ok && k < out.n; k++)
                for (int i = 0; out.binary[k] && i < n; i++) {
                    const uint8_t *p = (const uint8_t *)got + at;
                    uint64_t bits = (uint64_t)rec[i].log_id;
                    if (out.which[k] == API_V2_SCORE) memcpy(&bits, &rec[i].r.score, 8);
                    if (out.which[k] == API_V2_P_VALUE) memcpy(&bits, &rec[i].r.p_value, 8);
                    if (out.which[k] == API_V2_IS_ANOMALY) {
                        ok &= *p == (rec[i].r.is_anomaly != 0);
                        at += 1;
                    } else {
                        ok &= le_get64(p) == bits;
                        at += 8;
                    }
                }
            ok &= at == len;
        } else {
            ok = !got && !want;
        }
        CHECK_MSG(ok, "round %d: got %.*s, want %s", round, got ? (int)json_len : 6,
                  got ? got : "(NULL)", want ? want : "(NULL)");
        free(got);
        free(want);
        if (!ok) break;
    }
}
