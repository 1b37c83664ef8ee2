/* The daemon's JSON wire format (see api.h and openapi.yaml). */
#include "api.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dataset_io.h"
#include "jsonw.h"
#include "le.h"

/* Compact, and reals as jsonw.h writes them. */
#define API_DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(JSONW_REAL_DIGITS))

/* Make s valid UTF-8 in place: every byte that does not begin a complete, well-formed
 * sequence (RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF) becomes
 * '?'. Messages quote request bytes (a path segment, a field name cut at a length), and
 * JSON strings must be UTF-8, or the error itself could not be encoded. */
static void utf8_scrub(char *s) {
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        int n = jsonw_utf8_length(p);
        if (n) p += n;
        else *p++ = '?';
    }
}

void api_error_set(api_error *e, int status, const char *code, const char *fmt, ...) {
    va_list ap;
    e->status = status;
    snprintf(e->code, sizeof e->code, "%s", code);
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    utf8_scrub(e->code);
    utf8_scrub(e->message);
}

int api_valid_model_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > API_NAME_MAX) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-'))
            return 0;
    return 1;
}

/* ------------------------------------------------------------------ decoding */

/* An optional string member into out (API_ID_MAX + 1 bytes); 0, or -1 with e. */
static int decode_tag(json_t *v, const char *key, char *out, api_error *e) {
    if (!json_is_string(v)) {
        api_error_set(e, 400, "invalid_request", "\"%s\" must be a string", key);
        return -1;
    }
    if (json_string_length(v) > API_ID_MAX) {
        api_error_set(e, 400, "invalid_request", "\"%s\" is longer than %d bytes", key,
                      API_ID_MAX);
        return -1;
    }
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

/* One sample (a JSON array of dim numbers) into x; which names it in messages. */
static int decode_sample(json_t *a, size_t dim, float *x, int which, api_error *e) {
    if (!json_is_array(a)) {
        api_error_set(e, 400, "invalid_request", "sample %d is not an array of numbers", which);
        return -1;
    }
    if (json_array_size(a) != dim) {
        api_error_set(e, 400, "wrong_length", "sample %d has %zu values, the model expects %zu",
                      which, json_array_size(a), dim);
        return -1;
    }
    for (size_t i = 0; i < dim; i++) {
        json_t *v = json_array_get(a, i);
        if (!json_is_number(v)) {
            api_error_set(e, 400, "not_a_number", "sample %d, value %zu is not a number", which, i);
            return -1;
        }
        x[i] = (float)json_number_value(v);
        if (!isfinite(x[i])) {
            api_error_set(e, 400, "not_finite",
                          "sample %d, value %zu is outside the finite float range", which, i);
            return -1;
        }
    }
    return 0;
}

/* The samples of root ("sample" or "samples") into req. */
static int decode_samples(json_t *root, size_t dim, int max_batch, api_score_request *req,
                          api_error *e) {
    json_t *one = json_object_get(root, "sample"), *many = json_object_get(root, "samples");
    if (!one == !many) {
        api_error_set(e, 400, "invalid_request", "give exactly one of \"sample\" or \"samples\"");
        return -1;
    }
    if (many && !json_is_array(many)) {
        api_error_set(e, 400, "invalid_request", "\"samples\" must be an array of samples");
        return -1;
    }
    size_t n = one ? 1 : json_array_size(many);
    if (n == 0) {
        api_error_set(e, 400, "empty_batch", "\"samples\" is empty");
        return -1;
    }
    if (n > (size_t)max_batch) {
        api_error_set(e, 413, "batch_too_large", "%zu samples in one request; the limit is %d",
                      n, max_batch);
        return -1;
    }
    if (!(req->x = malloc(n * dim * sizeof *req->x))) {
        api_error_set(e, 500, "internal", "out of memory");
        return -1;
    }
    req->n = (int)n;
    req->dim = dim;
    for (size_t i = 0; i < n; i++)
        if (decode_sample(one ? one : json_array_get(many, i), dim, req->x + i * dim, (int)i, e))
            return -1;
    return 0;
}

/* The members a score and a strip request share: 1 when key is one of them (decoded
 * into id, source, explain), 0 when it is not, -1 with e when its value is wrong. */
static int decode_common(const char *key, json_t *v, char *id, char *source, int *explain,
                         api_error *e) {
    if (!strcmp(key, "id")) return decode_tag(v, key, id, e) ? -1 : 1;
    if (!strcmp(key, "source")) return decode_tag(v, key, source, e) ? -1 : 1;
    if (strcmp(key, "explain")) return 0;
    if (!json_is_boolean(v)) {
        api_error_set(e, 400, "invalid_request", "\"explain\" must be true or false");
        return -1;
    }
    *explain = json_is_true(v);
    return 1;
}

static void unknown_field(const char *key, api_error *e) {
    api_error_set(e, 400, "unknown_field", "unknown field \"%.64s\"", key);
}

/* Every member of the request object: the known keys with their types. */
static int decode_members(json_t *root, size_t dim, int max_batch, api_score_request *req,
                          api_error *e) {
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "sample") || !strcmp(key, "samples")) continue;
        int rc = decode_common(key, v, req->id, req->source, &req->explain, e);
        if (rc < 0) return -1;
        if (rc == 0) {
            unknown_field(key, e);
            return -1;
        }
    }
    return decode_samples(root, dim, max_batch, req, e);
}

/* The body as a JSON object; NULL with e when it is not JSON, has duplicate keys or is
 * not an object. */
static json_t *parse_object(const char *body, size_t len, api_error *e) {
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (json_error_code(&jerr) == json_error_out_of_memory)
            api_error_set(e, 500, "internal", "out of memory");
        else if (json_error_code(&jerr) == json_error_duplicate_key)
            api_error_set(e, 400, "duplicate_key", "%s", jerr.text);
        else
            api_error_set(e, 400, "malformed_json", "line %d, column %d: %s", jerr.line,
                          jerr.column, jerr.text);
        return NULL;
    }
    if (json_is_object(root)) return root;
    api_error_set(e, 400, "invalid_request", "the body must be a JSON object");
    json_decref(root);
    return NULL;
}

int api_decode_score(const char *body, size_t len, size_t dim, int max_batch,
                     api_score_request *req, api_error *e) {
    int fast = api_decode_score_fast(body, len, dim, max_batch, req);
    if (fast == 1) return 0;
    if (fast < 0) {
        api_error_set(e, 500, "internal", "out of memory");
        return -1;
    }
    return api_decode_score_json(body, len, dim, max_batch, req, e);
}

int api_decode_score_json(const char *body, size_t len, size_t dim, int max_batch,
                          api_score_request *req, api_error *e) {
    memset(req, 0, sizeof *req);
    json_t *root = parse_object(body, len, e);
    if (!root) return -1;
    int rc = decode_members(root, dim, max_batch, req, e);
    json_decref(root);
    if (rc) api_score_request_free(req);
    return rc;
}

/* A strip's "signal" into req. */
static int decode_signal(json_t *a, api_strip_request *req, api_error *e) {
    if (!json_is_array(a)) {
        api_error_set(e, 400, "invalid_request", "\"signal\" must be an array of numbers");
        return -1;
    }
    size_t n = json_array_size(a);
    if (n == 0) {
        api_error_set(e, 400, "invalid_request", "\"signal\" is empty");
        return -1;
    }
    if (n > API_STRIP_MAX_VALUES) {
        api_error_set(e, 413, "strip_too_long", "the strip has %zu values; the limit is %d", n,
                      API_STRIP_MAX_VALUES);
        return -1;
    }
    if (!(req->signal = malloc(n * sizeof *req->signal))) {
        api_error_set(e, 500, "internal", "out of memory");
        return -1;
    }
    req->n = n;
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(a, i);
        if (!json_is_number(v)) {
            api_error_set(e, 400, "not_a_number", "signal value %zu is not a number", i);
            return -1;
        }
        req->signal[i] = (float)json_number_value(v);
        if (!isfinite(req->signal[i])) {
            api_error_set(e, 400, "not_finite", "signal value %zu is outside the finite float "
                          "range", i);
            return -1;
        }
    }
    return 0;
}

/* A strip's "fs": a whole number of Hz, at least 1. */
static int decode_rate(json_t *v, int *fs, api_error *e) {
    double hz = json_is_number(v) ? json_number_value(v) : NAN;
    if (!(hz >= 1 && hz <= 1e6) || hz != floor(hz)) {
        api_error_set(e, 400, "invalid_request", "\"fs\" must be the sampling rate in Hz, a "
                      "whole number from 1 to 1000000");
        return -1;
    }
    *fs = (int)hz;
    return 0;
}

int api_decode_strip(const char *body, size_t len, api_strip_request *req, api_error *e) {
    memset(req, 0, sizeof *req);
    json_t *root = parse_object(body, len, e), *v;
    if (!root) return -1;
    const char *key;
    int rc = 0;
    json_object_foreach(root, key, v) {
        int known = !strcmp(key, "signal") ? 1
                    : !strcmp(key, "fs")   ? (decode_rate(v, &req->fs, e) ? -1 : 1)
                                           : decode_common(key, v, req->id, req->source,
                                                           &req->explain, e);
        if (known == 0) unknown_field(key, e);
        if (known <= 0) {
            rc = -1;
            break;
        }
    }
    if (!rc && (!json_object_get(root, "signal") || !req->fs)) {
        api_error_set(e, 400, "invalid_request", "a strip needs \"signal\" (the values) and "
                      "\"fs\" (their sampling rate in Hz)");
        rc = -1;
    }
    if (!rc) rc = decode_signal(json_object_get(root, "signal"), req, e);
    json_decref(root);
    if (rc) api_strip_request_free(req);
    return rc;
}

void api_strip_request_free(api_strip_request *req) {
    free(req->signal);
    req->signal = NULL;
    req->n = 0;
}

/* ------------------------------------------------------------------ Open Inference Protocol */

/* The input datatypes taken, as the stored numbers they are: dataset_io.h's rule makes
 * floats of them, in binary data and in JSON data alike. */
static const struct {
    const char *name;
    dataset_elem t;
} V2_INPUT_TYPE[] = {{"FP32", {'f', 4, 0}}, {"FP64", {'f', 8, 0}}, {"UINT8", {'u', 1, 0}}};
#define V2_N_INPUT_TYPES (sizeof V2_INPUT_TYPE / sizeof V2_INPUT_TYPE[0])

/* The outputs, in api_v2_output's order, and the bytes of one element as binary data. */
static const struct {
    const char *name, *datatype;
    size_t size;
} V2_OUTPUT[API_V2_N_OUTPUTS] = {
    {"score", "FP64", 8}, {"is_anomaly", "BOOL", 1}, {"p_value", "FP64", 8},
    {"log_id", "INT64", 8}};

/* The bytes of a body after its JSON header; framed when the request gave the header's
 * length (API_V2_HEADER_LENGTH), without which there are none. */
typedef struct {
    const uint8_t *p;
    size_t len;
    int framed;
} v2_binary;

/* The batch size of an input's shape [B, d1, ...] whose trailing dimensions hold dim
 * values; -1 with e. */
static long v2_batch(json_t *shape, size_t dim, int max_batch, api_error *e) {
    size_t rank = json_array_size(shape), per_sample = 1;
    if (!json_is_array(shape) || rank < 2) {
        api_error_set(e, 400, "invalid_request", "\"shape\" must be [batch, values...]");
        return -1;
    }
    for (size_t i = 0; i < rank; i++) {
        json_t *v = json_array_get(shape, i);
        json_int_t d = json_is_integer(v) ? json_integer_value(v) : -1;
        if (d < 0 || (i > 0 && (d == 0 || (size_t)d > dim))) {
            api_error_set(e, 400, "invalid_request", "shape[%zu] is not a valid size", i);
            return -1;
        }
        if (i > 0) per_sample *= (size_t)d;
        if (per_sample > dim) break;
    }
    json_int_t b = json_integer_value(json_array_get(shape, 0));
    if (per_sample != dim) {
        api_error_set(e, 400, "wrong_length", "the shape holds samples of other than %zu values",
                      dim);
        return -1;
    }
    if (b == 0) {
        api_error_set(e, 400, "empty_batch", "the batch is empty");
        return -1;
    }
    if (b > max_batch) {
        api_error_set(e, 413, "batch_too_large", "%lld samples in one request; the limit is %d",
                      (long long)b, max_batch);
        return -1;
    }
    return (long)b;
}

/* The numbers of data (nested arrays, depth first), stored numbers of type t, into
 * x[*at..cap); -1 with e. */
static int v2_flatten(json_t *data, dataset_elem t, float *x, size_t cap, size_t *at,
                      int depth, api_error *e) {
    if (depth > 8) {
        api_error_set(e, 400, "invalid_request", "\"data\" is nested too deeply");
        return -1;
    }
    for (size_t i = 0; i < json_array_size(data); i++) {
        json_t *v = json_array_get(data, i);
        if (json_is_array(v)) {
            if (v2_flatten(v, t, x, cap, at, depth + 1, e)) return -1;
            continue;
        }
        if (!json_is_number(v)) {
            api_error_set(e, 400, "not_a_number", "data value %zu is not a number", *at);
            return -1;
        }
        if (*at == cap) {
            api_error_set(e, 400, "wrong_length", "\"data\" holds more than the shape's %zu "
                          "values", cap);
            return -1;
        }
        if (t.kind == 'u') {
            json_int_t b = json_is_integer(v) ? json_integer_value(v) : -1;
            if (b < 0 || b > 255) {
                api_error_set(e, 400, "invalid_request", "data value %zu is not a UINT8 (an "
                              "integer from 0 to 255)", *at);
                return -1;
            }
            uint8_t byte = (uint8_t)b;
            dataset_decode_samples(&x[*at], &byte, 1, 1, t, NULL, 0);   /* a byte always is */
        } else if (!isfinite(x[*at] = (float)json_number_value(v))) {
            api_error_set(e, 400, "not_finite", "data value %zu is outside the finite float "
                          "range", *at);
            return -1;
        }
        (*at)++;
    }
    return 0;
}

/* A "parameters" member (NULL when absent) must be an object; its boolean key into *v,
 * left as it is when absent. 0, or -1 with e. */
static int v2_flag(json_t *params, const char *key, int *v, api_error *e) {
    if (params && !json_is_object(params)) {
        api_error_set(e, 400, "invalid_request", "\"parameters\" must be an object");
        return -1;
    }
    json_t *f = json_object_get(params, key);
    if (!f) return 0;
    if (!json_is_boolean(f)) {
        api_error_set(e, 400, "invalid_request", "\"%s\" must be true or false", key);
        return -1;
    }
    *v = json_is_true(f);
    return 0;
}

/* An input's binary_data_size into *size: -1 when it has none. 0, or -1 with e. */
static int v2_binary_size(json_t *params, long long *size, api_error *e) {
    *size = -1;
    if (params && !json_is_object(params)) {
        api_error_set(e, 400, "invalid_request", "\"parameters\" must be an object");
        return -1;
    }
    json_t *s = json_object_get(params, "binary_data_size");
    if (!s) return 0;
    if (!json_is_integer(s) || json_integer_value(s) < 0) {
        api_error_set(e, 400, "invalid_request", "\"binary_data_size\" must be a byte count");
        return -1;
    }
    *size = (long long)json_integer_value(s);
    return 0;
}

/* The data of an input of count values of type t, sent as size bytes of binary data,
 * from bin into x: size must be what the shape takes, and bin exactly that. */
static int v2_binary_data(const v2_binary *bin, long long size, dataset_elem t, size_t count,
                          size_t dim, float *x, api_error *e) {
    size_t want = count * (size_t)t.size;
    char why[200];
    if (!bin->framed) {
        api_error_set(e, 400, "invalid_request", "an input with \"binary_data_size\" needs "
                      "the JSON's length in the " API_V2_HEADER_LENGTH " header");
        return -1;
    }
    if ((unsigned long long)size != want) {
        api_error_set(e, 400, "wrong_length", "\"binary_data_size\" is %lld bytes; the shape "
                      "takes %zu", size, want);
        return -1;
    }
    if (bin->len < want) {
        api_error_set(e, 400, "wrong_length", "the body ends %zu bytes into the input's %zu "
                      "bytes of binary data", bin->len, want);
        return -1;
    }
    if (bin->len > want) {
        api_error_set(e, 400, "wrong_length", "%zu bytes after the input's binary data belong "
                      "to no tensor", bin->len - want);
        return -1;
    }
    if (dataset_decode_samples(x, bin->p, count, dim, t, why, sizeof why)) {
        api_error_set(e, 400, "not_finite", "binary data: %s", why);
        return -1;
    }
    return 0;
}

/* The one input tensor of an infer request into req, its data from JSON or from bin. */
static int v2_input(json_t *in, size_t dim, int max_batch, const v2_binary *bin,
                    api_score_request *req, api_error *e) {
    const char *key;
    json_t *v;
    if (!json_is_object(in)) {
        api_error_set(e, 400, "invalid_request", "an input must be an object");
        return -1;
    }
    json_object_foreach(in, key, v) {
        if (strcmp(key, "name") && strcmp(key, "shape") && strcmp(key, "datatype") &&
            strcmp(key, "data") && strcmp(key, "parameters")) {
            api_error_set(e, 400, "unknown_field", "unknown input field \"%.64s\"", key);
            return -1;
        }
    }
    const char *type = json_string_value(json_object_get(in, "datatype"));
    json_t *data = json_object_get(in, "data");
    long long size;
    if (v2_binary_size(json_object_get(in, "parameters"), &size, e)) return -1;
    if (!json_is_string(json_object_get(in, "name")) || !type ||
        (size < 0 ? !json_is_array(data) : data != NULL)) {
        api_error_set(e, 400, "invalid_request", "an input needs \"name\", \"shape\", "
                      "\"datatype\", and \"data\" or else binary data (\"parameters\": "
                      "{\"binary_data_size\": bytes})");
        return -1;
    }
    size_t k = 0;
    while (k < V2_N_INPUT_TYPES && strcmp(type, V2_INPUT_TYPE[k].name)) k++;
    if (k == V2_N_INPUT_TYPES) {
        api_error_set(e, 400, "invalid_request", "datatype %.16s: FP32, FP64 and UINT8 are "
                      "taken", type);
        return -1;
    }
    if (size < 0 && bin->len) {
        api_error_set(e, 400, "wrong_length", "%zu bytes after the JSON header belong to no "
                      "tensor", bin->len);
        return -1;
    }
    long b = v2_batch(json_object_get(in, "shape"), dim, max_batch, e);
    if (b < 0) return -1;
    size_t cap = (size_t)b * dim, got = 0;
    if (!(req->x = malloc(cap * sizeof *req->x))) {
        api_error_set(e, 500, "internal", "out of memory");
        return -1;
    }
    req->n = (int)b;
    req->dim = dim;
    dataset_elem t = V2_INPUT_TYPE[k].t;
    if (size >= 0) return v2_binary_data(bin, size, t, cap, dim, req->x, e);
    if (v2_flatten(data, t, req->x, cap, &got, 0, e)) return -1;
    if (got == cap) return 0;
    api_error_set(e, 400, "wrong_length", "\"data\" holds %zu values, the shape %zu", got, cap);
    return -1;
}

/* The outputs asked for into out: those "outputs" names (all of them, in their order,
 * when it is absent or empty), each binary as its "binary_data" says, or else as the
 * request's "binary_data_output" (all_binary). */
static int v2_outputs(json_t *outputs, int all_binary, api_v2_outputs *out, api_error *e) {
    if (outputs && !json_is_array(outputs)) {
        api_error_set(e, 400, "invalid_request", "\"outputs\" must be an array");
        return -1;
    }
    if (!json_array_size(outputs)) {
        out->n = API_V2_N_OUTPUTS;
        for (int w = 0; w < API_V2_N_OUTPUTS; w++) {
            out->which[w] = (unsigned char)w;
            out->binary[w] = (unsigned char)all_binary;
        }
        return 0;
    }
    unsigned seen = 0;
    for (size_t i = 0; i < json_array_size(outputs); i++) {
        json_t *o = json_array_get(outputs, i), *v;
        const char *key, *name = json_string_value(json_object_get(o, "name"));
        if (!json_is_object(o) || !name) {
            api_error_set(e, 400, "invalid_request", "an output is an object with a \"name\"");
            return -1;
        }
        json_object_foreach(o, key, v) {
            if (strcmp(key, "name") && strcmp(key, "parameters")) {
                api_error_set(e, 400, "unknown_field", "unknown output field \"%.64s\"", key);
                return -1;
            }
        }
        int w = 0, binary = all_binary;
        while (w < API_V2_N_OUTPUTS && strcmp(name, V2_OUTPUT[w].name)) w++;
        if (w == API_V2_N_OUTPUTS) {
            api_error_set(e, 400, "invalid_request", "no output named \"%.64s\" (score, "
                          "is_anomaly, p_value, log_id)", name);
            return -1;
        }
        if (seen & (1u << w)) {
            api_error_set(e, 400, "invalid_request", "output \"%s\" is asked for twice", name);
            return -1;
        }
        if (v2_flag(json_object_get(o, "parameters"), "binary_data", &binary, e)) return -1;
        seen |= 1u << w;
        out->which[out->n] = (unsigned char)w;
        out->binary[out->n++] = (unsigned char)binary;
    }
    return 0;
}

/* The members of an infer request: id, parameters, outputs, inputs (exactly one). */
static int v2_members(json_t *root, size_t dim, int max_batch, const v2_binary *bin,
                      api_score_request *req, api_v2_outputs *out, api_error *e) {
    const char *key;
    json_t *v;
    int all_binary = 0;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "id")) {
            if (decode_tag(v, key, req->id, e)) return -1;
        } else if (strcmp(key, "inputs") && strcmp(key, "outputs") && strcmp(key, "parameters")) {
            api_error_set(e, 400, "unknown_field", "unknown field \"%.64s\"", key);
            return -1;
        }
    }
    if (v2_flag(json_object_get(root, "parameters"), "binary_data_output", &all_binary, e) ||
        v2_outputs(json_object_get(root, "outputs"), all_binary, out, e))
        return -1;
    json_t *inputs = json_object_get(root, "inputs");
    if (!json_is_array(inputs) || json_array_size(inputs) != 1) {
        api_error_set(e, 400, "invalid_request", "\"inputs\" must hold exactly one tensor");
        return -1;
    }
    return v2_input(json_array_get(inputs, 0), dim, max_batch, bin, req, e);
}

/* The API_V2_HEADER_LENGTH header's value: a decimal byte count within the body's len. */
static int v2_header_length(const char *text, size_t len, size_t *json_len, api_error *e) {
    size_t digits = strspn(text, "0123456789");
    unsigned long long v = digits && digits <= 19 && !text[digits] ? strtoull(text, NULL, 10)
                                                                   : ULLONG_MAX;
    if (v > len) {
        api_error_set(e, 400, "invalid_request", API_V2_HEADER_LENGTH " must be the length "
                      "of the body's JSON header, at most the body's %zu bytes", len);
        return -1;
    }
    *json_len = (size_t)v;
    return 0;
}

int api_decode_v2_infer(const char *body, size_t len, const char *header_length, size_t dim,
                        int max_batch, api_score_request *req, api_v2_outputs *out,
                        api_error *e) {
    memset(req, 0, sizeof *req);
    memset(out, 0, sizeof *out);
    size_t json_len = len;
    if (header_length && v2_header_length(header_length, len, &json_len, e)) return -1;
    json_t *root = parse_object(body, json_len, e);
    if (!root) return -1;
    const v2_binary bin = {(const uint8_t *)body + json_len, len - json_len,
                           header_length != NULL};
    int rc = v2_members(root, dim, max_batch, &bin, req, out, e);
    json_decref(root);
    if (rc) {
        api_score_request_free(req);
        memset(out, 0, sizeof *out);
    }
    return rc;
}

int api_decode_source(const char *s, char source[API_ID_MAX + 1], api_error *e) {
    if (s && strlen(s) > API_ID_MAX) {
        api_error_set(e, 400, "invalid_query", "source is longer than %d bytes", API_ID_MAX);
        return -1;
    }
    snprintf(source, API_ID_MAX + 1, "%s", s ? s : "");
    return 0;
}

int api_decode_max_points(const char *s, int *n, api_error *e) {
    int64_t v = 0;
    *n = 0;
    if (s && (api_parse_log_id(s, &v) || v < 1 || v > INT32_MAX)) {
        api_error_set(e, 400, "invalid_query", "max_points must be a positive integer");
        return -1;
    }
    *n = (int)v;
    return 0;
}

void api_score_request_free(api_score_request *req) {
    free(req->x);
    memset(req, 0, sizeof *req);
}

int api_parse_log_id(const char *s, int64_t *id) {
    if (!s || *s < '0' || *s > '9') return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) return -1;
    *id = v;
    return 0;
}

int api_decode_scores_query(const char *since_id, const char *limit, const char *model,
                            const char *source, const char *anomalies_only,
                            api_scores_query *q, api_error *e) {
    memset(q, 0, sizeof *q);
    q->limit = API_DEFAULT_LIMIT;
    if (since_id && api_parse_log_id(since_id, &q->since_id)) {
        api_error_set(e, 400, "invalid_query", "since_id must be a log id (0 or more)");
        return -1;
    }
    if (limit) {
        int64_t v;
        if (api_parse_log_id(limit, &v) || v < 1 || v > API_MAX_LIMIT) {
            api_error_set(e, 400, "invalid_query", "limit must be 1..%d", API_MAX_LIMIT);
            return -1;
        }
        q->limit = (int)v;
    }
    if (model) {
        if (!api_valid_model_name(model)) {
            api_error_set(e, 400, "invalid_query", "model is not a valid model name");
            return -1;
        }
        snprintf(q->model, sizeof q->model, "%s", model);
    }
    if (api_decode_source(source, q->source, e)) return -1;
    if (anomalies_only) {
        if (!strcmp(anomalies_only, "true") || !strcmp(anomalies_only, "1")) q->anomalies_only = 1;
        else if (strcmp(anomalies_only, "false") && strcmp(anomalies_only, "0")) {
            api_error_set(e, 400, "invalid_query", "anomalies_only must be true or false");
            return -1;
        }
    }
    return 0;
}

int api_decode_before_id(const char *before_id, api_scores_query *q, api_error *e) {
    q->before_id = 0;
    if (before_id && (api_parse_log_id(before_id, &q->before_id) || q->before_id < 1)) {
        api_error_set(e, 400, "invalid_query", "before_id must be a log id (1 or more)");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ encoding */

json_t *api_json_number(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *num(double v) { return api_json_number(v); }   /* the encoders' shorthand */

char *api_json_text(const json_t *v, size_t flags) {
    jsonw w = {0};
    if (json_dump_callback(v, jsonw_bytes, &w, flags)) w.failed = 1;
    return jsonw_finish(&w, NULL);
}

/* Serialise and release v; NULL if v is NULL (a failed build) or out of memory. */
static char *dump(json_t *v) {
    if (!v) return NULL;
    char *s = api_json_text(v, API_DUMP_FLAGS);
    json_decref(v);
    return s;
}

/* RFC 3339 UTC time with milliseconds into buf; 0, or -1 when gmtime cannot say. */
static int timestamp_text(int64_t ms, char buf[40]) {
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm)) return -1;
    size_t n = strftime(buf, 40, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, 40 - n, ".%03dZ", (int)(ms % 1000));
    return 0;
}

static json_t *timestamp(int64_t ms) {
    char buf[40];
    return timestamp_text(ms, buf) ? json_null() : json_string(buf);
}

/* The hot answers (a score, a log record, a page of them, a held sample, a result line, a
 * V2 infer answer) are written without a jansson tree (jsonw.h: the same text, byte for
 * byte, a fraction of the CPU); the rest are built as trees and dumped. */

static void put_floats(jsonw *w, const float *v, size_t n) {
    jsonw_open(w, '[');
    for (size_t i = 0; i < n; i++) jsonw_real(w, v[i]);
    jsonw_close(w, ']');
}

/* An optional tag: the string, or null when empty. */
static void put_tag(jsonw *w, const char *s) {
    if (*s) jsonw_string(w, s);
    else jsonw_null(w);
}

/* A log id: null when unknown (0). */
static void put_log_id(jsonw *w, int64_t id) {
    if (id > 0) jsonw_int(w, id);
    else jsonw_null(w);
}

/* detector.h's table of the score record, each field's value found by its offset. */
typedef enum { FIELD_REAL, FIELD_FLAG, FIELD_INDEX } field_type;
static const struct {
    const char *name;
    field_type type;
    detector_group group;
    size_t offset;
} FIELD[] = {
#define FIELD_(name, type, group, doc)                                                       \
    {#name, FIELD_##type, DETECTOR_GROUP_##group, offsetof(detector_result, name)},
    DETECTOR_RESULT_FIELDS(FIELD_)
#undef FIELD_
};
#define N_FIELDS (sizeof FIELD / sizeof FIELD[0])

/* Field i of r by its type: REAL a number or null, FLAG a boolean, INDEX an integer. */
static void put_field(jsonw *w, const detector_result *r, size_t i) {
    const char *at = (const char *)r + FIELD[i].offset;
    switch (FIELD[i].type) {
    case FIELD_REAL: jsonw_real(w, *(const double *)at); break;
    case FIELD_FLAG: jsonw_bool(w, *(const int *)at); break;
    case FIELD_INDEX: jsonw_int(w, *(const int32_t *)at); break;
    }
}

/* Every field of r by its group: VERDICT a member, TERM a member of "terms", POSITION an
 * element of "position", each box where the first field of its group is, holding all of
 * them in the table's order. NEAREST fields are a log record's "nearest" (put_record). */
static void put_result(jsonw *w, const detector_result *r) {
    unsigned boxed = 0;
    for (size_t i = 0; i < N_FIELDS; i++) {
        detector_group g = FIELD[i].group;
        if (g == DETECTOR_GROUP_VERDICT) {
            jsonw_key(w, FIELD[i].name);
            put_field(w, r, i);
        }
        if ((g != DETECTOR_GROUP_TERM && g != DETECTOR_GROUP_POSITION) || (boxed & 1u << g))
            continue;
        boxed |= 1u << g;
        jsonw_key(w, g == DETECTOR_GROUP_TERM ? "terms" : "position");
        jsonw_open(w, g == DETECTOR_GROUP_TERM ? '{' : '[');
        for (size_t j = i; j < N_FIELDS; j++) {
            if (FIELD[j].group != g) continue;
            if (g == DETECTOR_GROUP_TERM) jsonw_key(w, FIELD[j].name);
            put_field(w, r, j);
        }
        jsonw_close(w, g == DETECTOR_GROUP_TERM ? '}' : ']');
    }
}

/* The members a score result and a log record share: the model and the request, every
 * field of r, the threshold r was judged against and the log id. */
static void put_score_fields(jsonw *w, const api_score_record *r) {
    jsonw_key_string(w, "model", r->model);
    jsonw_key_string(w, "version", r->version);
    jsonw_key(w, "id");
    put_tag(w, r->id);
    jsonw_key(w, "index");
    jsonw_int(w, r->index);
    put_result(w, &r->r);
    jsonw_key(w, "threshold");
    jsonw_real(w, r->threshold);
    jsonw_key(w, "log_id");
    put_log_id(w, r->log_id);
}

/* A beat's R peak, the neighbours of sample i, and with explain its squared error and
 * reconstruction. */
static void put_detail(jsonw *w, const api_score_detail *d, int i) {
    if (d->r_peak) {
        jsonw_key(w, "r_peak");
        jsonw_open(w, '{');
        jsonw_key(w, "sample");
        jsonw_int(w, d->r_peak[i]);
        jsonw_key(w, "time_s");
        jsonw_real(w, (double)d->r_peak[i] / d->fs);
        jsonw_close(w, '}');
    }
    jsonw_key(w, "neighbors");
    jsonw_open(w, '[');
    for (int j = 0; j < d->k; j++) {
        size_t at = (size_t)i * (size_t)d->k + (size_t)j;
        jsonw_open(w, '{');
        jsonw_key(w, "ref");
        jsonw_int(w, d->ref[at]);
        jsonw_key(w, "distance");
        jsonw_real(w, d->distance[at]);
        jsonw_close(w, '}');
    }
    jsonw_close(w, ']');
    if (!d->x_rec) return;
    const float *x = d->x + (size_t)i * d->dim, *rec = d->x_rec + (size_t)i * d->dim;
    jsonw_key(w, "squared_error");
    jsonw_open(w, '[');
    for (size_t j = 0; j < d->dim; j++)
        jsonw_real(w, ((double)x[j] - rec[j]) * ((double)x[j] - rec[j]));
    jsonw_close(w, ']');
    jsonw_key(w, "reconstruction");
    put_floats(w, rec, d->dim);
}

char *api_encode_score(const char *model, const char *version, const api_score_record *rec,
                       int n, const api_score_detail *detail) {
    jsonw w = {0};
    jsonw_open(&w, '{');
    jsonw_key_string(&w, "model", model);
    jsonw_key_string(&w, "version", version);
    jsonw_key(&w, "results");
    jsonw_open(&w, '[');
    for (int i = 0; i < n; i++) {
        jsonw_open(&w, '{');
        put_score_fields(&w, &rec[i]);
        put_detail(&w, detail, i);
        jsonw_close(&w, '}');
    }
    jsonw_close(&w, ']');
    jsonw_close(&w, '}');
    return jsonw_finish(&w, NULL);
}

/* A log record: the shared fields, its time and source, the replica that scored it with
 * the row's id in that replica's own log, and its nearest neighbour. */
static void put_record(jsonw *w, const api_score_record *r) {
    char time[40];
    jsonw_open(w, '{');
    put_score_fields(w, r);
    jsonw_key(w, "time");
    if (timestamp_text(r->ts_ms, time)) jsonw_null(w);
    else jsonw_string(w, time);
    jsonw_key(w, "source");
    put_tag(w, r->source);
    jsonw_key(w, "replica_id");
    put_tag(w, r->replica_id);
    jsonw_key(w, "local_id");
    put_log_id(w, r->local_id);
    jsonw_key(w, "nearest");
    jsonw_open(w, '{');
    jsonw_key(w, "ref");
    jsonw_int(w, r->r.nearest_ref);
    jsonw_key(w, "distance");
    jsonw_real(w, r->r.nearest_distance);
    jsonw_close(w, '}');
    jsonw_close(w, '}');
}

char *api_encode_score_page(const api_score_record *rec, int n, int64_t since_id) {
    jsonw w = {0};
    jsonw_open(&w, '{');
    jsonw_key(&w, "scores");
    jsonw_open(&w, '[');
    for (int i = 0; i < n; i++) put_record(&w, &rec[i]);
    jsonw_close(&w, ']');
    jsonw_key(&w, "next_since_id");
    jsonw_int(&w, n ? rec[n - 1].log_id : since_id);
    jsonw_close(&w, '}');
    return jsonw_finish(&w, NULL);
}

char *api_encode_score_record(const api_score_record *rec) {
    jsonw w = {0};
    put_record(&w, rec);
    return jsonw_finish(&w, NULL);
}

char *api_encode_result_line(size_t index, const int32_t *label, const detector_result *r) {
    jsonw w = {0};
    jsonw_open(&w, '{');
    jsonw_key(&w, "index");
    jsonw_int(&w, (int64_t)index);
    if (label) {
        jsonw_key(&w, "label");
        jsonw_int(&w, *label);
    }
    for (size_t i = 0; i < N_FIELDS; i++) {
        jsonw_key(&w, FIELD[i].name);
        put_field(&w, r, i);
    }
    jsonw_close(&w, '}');
    return jsonw_finish(&w, NULL);
}

char *api_encode_sample(const api_sample *s) {
    jsonw w = {0};
    jsonw_open(&w, '{');
    jsonw_key(&w, "log_id");
    jsonw_int(&w, s->log_id);
    jsonw_key_string(&w, "model", s->model);
    jsonw_key_string(&w, "version", s->version);
    jsonw_key(&w, "shape");
    jsonw_open(&w, '[');
    for (int i = 0; i < 3; i++) jsonw_int(&w, s->shape[i]);
    jsonw_close(&w, ']');
    jsonw_key(&w, "input");
    put_floats(&w, s->x, s->dim);
    /* neighbors, squared_error and reconstruction, as a score's explain gives them */
    api_score_detail d = {.k = s->k, .ref = s->ref, .distance = s->distance, .x = s->x,
                          .x_rec = s->x_rec, .dim = s->dim};
    put_detail(&w, &d, 0);
    jsonw_close(&w, '}');
    return jsonw_finish(&w, NULL);
}

/* The summary of a model: what GET /v1/models lists. */
static json_t *model_summary(const api_model_ref *m, int is_default) {
    const detector *d = m->d;
    const vae_arch *a = &d->vae.arch;
    return json_pack("{s:s, s:s, s:b, s:s, s:[i, i, i], s:i, s:s, s:o}", "name", m->name,
                     "version", m->version, "default", is_default, "arch", a->name, "input",
                     a->in.c, a->in.h, a->in.w, "latent", a->latent, "mode",
                     d->mode == PLACE_CONTEXT ? "context" : "single", "threshold",
                     num(d->threshold));
}

/* The provenance JSON as an object, or as a string if it does not parse. */
static json_t *provenance(const char *text) {
    if (!text) return json_null();
    json_t *p = json_loads(text, 0, NULL);
    return p ? p : json_string(text);
}

char *api_encode_model(const api_model_ref *m, int is_default) {
    const detector *d = m->d;
    const vae_arch *a = &d->vae.arch;
    json_t *o = model_summary(m, is_default);
    if (!o) return NULL;
    json_t *more = json_pack(
        "{s:{s:s, s:s, s:s, s:I}, s:{s:o, s:s, s:i, s:i, s:o, s:i}, "
        "s:{s:i, s:o, s:o, s:{s:o, s:o}, s:{s:o, s:o}, s:{s:o, s:o}}, s:o}",
        "architecture", "recon", a->recon == RECON_BCE ? "bce" : "mse", "encoder", a->enc_spec,
        "decoder", a->dec_spec, "parameters", (json_int_t)d->vae.n_params,
        "scoring", "alpha", num(d->alpha), "term", d->term == TERM_LATENT ? "latent" : "map",
        "k", d->k, "window", d->window, "perplexity",
        num(d->place.perplexity), "n_ref", d->n_ref,
        "calibration", "n", d->n_cal, "quantile", num(d->quantile), "threshold",
        num(d->threshold), "d_re", "center", num(d->re.center), "scale", num(d->re.scale),
        "d_map", "center", num(d->map.center), "scale", num(d->map.scale),
        "d_latent", "center", num(d->latent.center), "scale", num(d->latent.scale),
        "provenance", provenance(d->provenance));
    json_t *terms = json_array();
    int rc = json_object_set_new(more, "terms", terms);   /* takes terms even if it fails */
    if (!rc && d->use_memory)
        rc = json_object_set_new(json_object_get(more, "scoring"), "memory",
                                 json_pack("{s:i, s:i, s:o, s:o, s:s, s:i, s:s, s:o, s:i}",
                                           "capacity", d->memory.capacity, "k", d->memory.k,
                                           "recent_share", num(d->memory.recent_share),
                                           "merge_radius", num(d->memory.merge_radius),
                                           "fusion", SCORE_FUSION_NAME[d->fusion], "k_min",
                                           d->memory.k_min, "retain",
                                           MEMORY_RETAIN_NAME[d->memory.retain], "horizon",
                                           num(d->memory.horizon), "count",
                                           m->memory_count)) ||
             json_object_set_new(json_object_get(more, "calibration"), "d_memory",
                                 json_pack("{s:o, s:o}", "center", num(d->mem.center), "scale",
                                           num(d->mem.scale)));
#define TERM(name, type, group, doc)                                                         \
    if (!rc && DETECTOR_GROUP_##group == DETECTOR_GROUP_TERM)                                \
        rc = json_array_append_new(terms, json_pack("{s:s, s:s}", "name", #name, "doc", doc));
    DETECTOR_RESULT_FIELDS(TERM)
#undef TERM
    if (rc || json_object_update(o, more)) {
        json_decref(more);
        json_decref(o);
        return NULL;
    }
    json_decref(more);
    return dump(o);
}

char *api_encode_model_list(const api_model_ref *m, int n) {
    json_t *list = json_array();
    json_t *root = json_pack("{s:o, s:o}", "models", list, "default",
                             n ? json_string(m[0].name) : json_null());
    if (!root) return NULL;
    for (int i = 0; i < n; i++)
        if (json_array_append_new(list, model_summary(&m[i], i == 0))) {
            json_decref(root);
            return NULL;
        }
    return dump(root);
}

char *api_encode_memory_reset(const char *model, const char *version, int forgotten) {
    return dump(json_pack("{s:s, s:s, s:i}", "model", model, "version", version, "forgotten",
                          forgotten));
}

char *api_encode_error(const api_error *e) {
    return dump(json_pack("{s:{s:s, s:s}}", "error", "code", e->code, "message", e->message));
}

char *api_encode_health(void) { return dump(json_pack("{s:s}", "status", "ok")); }

char *api_encode_ready(int ready, int n_models, const char *log_state) {
    return dump(json_pack("{s:b, s:i, s:s}", "ready", ready, "models", n_models, "log",
                          log_state));
}

/* [[x, y], ...] of n points. */
static json_t *encode_points(const float *xy, int n) {
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_pack("[o, o]", num(xy[2 * i]), num(xy[2 * i + 1])))) {
            json_decref(a);
            a = NULL;
        }
    return a;
}

char *api_encode_map(const api_model_ref *m, int max_points, const float *window,
                     int n_window) {
    const detector *d = m->d;
    int n = max_points && max_points < d->n_ref ? max_points : d->n_ref;
    json_t *points = json_array(), *refs = json_array();
    json_t *root = json_pack("{s:s, s:s, s:s, s:i, s:i, s:o, s:o}", "model", m->name,
                             "version", m->version, "mode",
                             d->mode == PLACE_CONTEXT ? "context" : "single", "n_ref",
                             d->n_ref, "n", n, "refs", refs, "points", points);
    if (!root) return NULL;
    for (int i = 0; i < n; i++) {
        /* Point i is reference floor(i * n_ref / n): even strides, the same every time. */
        size_t at = (size_t)((int64_t)i * d->n_ref / n);
        if (json_array_append_new(refs, json_integer(d->ref_id[at])) ||
            json_array_append_new(points, json_pack("[o, o]", num(d->ref_map[2 * at]),
                                                    num(d->ref_map[2 * at + 1])))) {
            json_decref(root);
            return NULL;
        }
    }
    if (d->mode == PLACE_CONTEXT &&
        (json_object_set_new(root, "n_window", json_integer(n_window)) ||
         json_object_set_new(root, "window", encode_points(window, n_window)))) {
        json_decref(root);
        return NULL;
    }
    return dump(root);
}

char *api_encode_memory_map(const api_model_ref *m, const api_memory_map *mm) {
    json_t *suspicion = json_array(), *recent = json_array();
    json_t *root = json_pack("{s:s, s:s, s:s, s:i, s:i, s:o, s:o, s:o, s:o, s:b}", "model",
                             m->name, "version", m->version, "scope",
                             mm->per_source ? "source" : "model", "capacity",
                             m->d->memory.capacity, "count", mm->n, "points",
                             encode_points(mm->pos, mm->n), "suspicion", suspicion, "recent",
                             recent, "seconds", num(mm->seconds), "cached", mm->cached);
    if (!root) return NULL;
    for (int i = 0; i < mm->n; i++)
        if (json_array_append_new(suspicion, num(mm->suspicion[i])) ||
            json_array_append_new(recent, json_boolean(mm->recent[i]))) {
            json_decref(root);
            return NULL;
        }
    char source[sizeof mm->source];
    memcpy(source, mm->source, sizeof source);
    utf8_scrub(source);          /* a query parameter's bytes, shown as JSON can hold them */
    if (mm->per_source && json_object_set_new(root, "source", json_string(source))) {
        json_decref(root);
        return NULL;
    }
    return dump(root);
}

const api_stats_window API_STATS_WINDOW[API_STATS_WINDOWS] = {
    {"1m", 60}, {"1h", 3600}, {"all", 0}};
const double API_STATS_QUANTILE[API_STATS_QUANTILES] = {0.5, 0.9, 0.99};

/* One window's numbers. */
static json_t *window_stats(const api_window_stats *w) {
    json_t *q = json_object();
    for (int i = 0; q && i < API_STATS_QUANTILES; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%g", API_STATS_QUANTILE[i] * 100);
        if (json_object_set_new(q, name, num(w->score[i]))) {
            json_decref(q);
            q = NULL;
        }
    }
    return json_pack("{s:I, s:I, s:o, s:o}", "count", (json_int_t)w->count, "anomalies",
                     (json_int_t)w->anomalies, "anomaly_rate",
                     w->count ? json_real((double)w->anomalies / (double)w->count) : json_null(),
                     "score", q);
}

char *api_encode_stats(const api_model_stats *s, int n, int64_t now_ms) {
    json_t *models = json_array();
    json_t *root = json_pack("{s:o, s:o}", "time", timestamp(now_ms), "models", models);
    if (!root) return NULL;
    for (int i = 0; i < n; i++) {
        json_t *windows = json_object();
        if (json_array_append_new(models, json_pack("{s:s, s:o}", "model", s[i].model,
                                                    "windows", windows))) {
            json_decref(root);
            return NULL;
        }
        for (int w = 0; w < API_STATS_WINDOWS; w++)
            if (json_object_set_new(windows, API_STATS_WINDOW[w].name, window_stats(&s[i].w[w]))) {
                json_decref(root);
                return NULL;
            }
    }
    return dump(root);
}

/* Output which of record r as a JSON value. */
static void v2_put_json(jsonw *w, const api_score_record *r, int which) {
    switch (which) {
    case API_V2_SCORE: jsonw_real(w, r->r.score); break;
    case API_V2_IS_ANOMALY: jsonw_bool(w, r->r.is_anomaly); break;
    case API_V2_P_VALUE: jsonw_real(w, r->r.p_value); break;
    default: jsonw_int(w, r->log_id);
    }
}

/* Output which of record r as binary data at p (V2_OUTPUT[which].size bytes). */
static void v2_put_value(uint8_t *p, const api_score_record *r, int which) {
    switch (which) {
    case API_V2_SCORE: le_put_f64(p, r->r.score); break;
    case API_V2_IS_ANOMALY: *p = r->r.is_anomaly != 0; break;
    case API_V2_P_VALUE: le_put_f64(p, r->r.p_value); break;
    default: le_put64(p, (uint64_t)r->log_id);
    }
}

char *api_encode_v2_infer(const char *model, const char *version, const char *id,
                          const api_score_record *rec, int n, const api_v2_outputs *out,
                          size_t *len, size_t *json_len) {
    jsonw w = {0};
    jsonw_open(&w, '{');
    jsonw_key_string(&w, "model_name", model);
    jsonw_key_string(&w, "model_version", version);
    jsonw_key(&w, "outputs");
    jsonw_open(&w, '[');
    for (int k = 0; k < out->n; k++) {
        int which = out->which[k];
        jsonw_open(&w, '{');
        jsonw_key_string(&w, "name", V2_OUTPUT[which].name);
        jsonw_key_string(&w, "datatype", V2_OUTPUT[which].datatype);
        jsonw_key(&w, "shape");
        jsonw_open(&w, '[');
        jsonw_int(&w, n);
        jsonw_close(&w, ']');
        if (out->binary[k]) {
            jsonw_key(&w, "parameters");
            jsonw_open(&w, '{');
            jsonw_key(&w, "binary_data_size");
            jsonw_int(&w, (int64_t)((size_t)n * V2_OUTPUT[which].size));
            jsonw_close(&w, '}');
        } else {
            jsonw_key(&w, "data");
            jsonw_open(&w, '[');
            for (int i = 0; i < n; i++) v2_put_json(&w, &rec[i], which);
            jsonw_close(&w, ']');
        }
        jsonw_close(&w, '}');
    }
    jsonw_close(&w, ']');
    if (*id) {
        jsonw_key_string(&w, "id", id);
    }
    jsonw_close(&w, '}');
    size_t head = w.len;
    for (int k = 0; k < out->n; k++)           /* the binary outputs' data, in their order */
        for (int i = 0, which = out->which[k]; out->binary[k] && i < n; i++) {
            uint8_t v[8];
            v2_put_value(v, &rec[i], which);
            jsonw_bytes((const char *)v, V2_OUTPUT[which].size, &w);
        }
    char *body = jsonw_finish(&w, len);
    if (body) *json_len = head;
    return body;
}

/* {"name", "datatype", "shape": [-1]} of each output, as the model metadata lists them. */
static json_t *v2_output_metadata(void) {
    json_t *a = json_array();
    for (int w = 0; a && w < API_V2_N_OUTPUTS; w++)
        if (json_array_append_new(a, json_pack("{s:s, s:s, s:[i]}", "name", V2_OUTPUT[w].name,
                                               "datatype", V2_OUTPUT[w].datatype, "shape",
                                               -1))) {
            json_decref(a);
            a = NULL;
        }
    return a;
}

char *api_encode_v2_model(const api_model_ref *m, size_t dim) {
    return dump(json_pack("{s:s, s:[s], s:s, s:[{s:s, s:s, s:[i, I]}], s:o}", "name", m->name,
                          "versions", m->version, "platform", "anodm", "inputs", "name",
                          "input", "datatype", "FP32", "shape", -1, (json_int_t)dim,
                          "outputs", v2_output_metadata()));
}

char *api_encode_v2_server(void) {
    return dump(json_pack("{s:s, s:s, s:[s]}", "name", "anodmd", "version", ANODM_VERSION,
                          "extensions", API_V2_EXTENSION));
}

char *api_encode_v2_error(const api_error *e) {
    char text[sizeof e->code + sizeof e->message + 2];
    snprintf(text, sizeof text, "%s: %s", e->code, e->message);
    return dump(json_pack("{s:s}", "error", text));
}

char *api_encode_v2_live(void) { return dump(json_pack("{s:b}", "live", 1)); }

char *api_encode_v2_ready(const char *name, int ready) {
    return dump(name ? json_pack("{s:s, s:b}", "name", name, "ready", ready)
                     : json_pack("{s:b}", "ready", ready));
}
