/* fuzz_api.c — the daemon's request decoders (proto/api.c): every byte of a request
 * body and every query parameter comes from an untrusted caller.
 *
 * Input layout: byte 0 picks the decoder, byte 1 the model's sample length (1..32);
 * the rest is the body or the parameters.
 *   byte0 % 5 == 0   api_decode_score     (POST /v1/models/{name}/score)
 *   byte0 % 5 == 1   api_decode_v2_infer  (POST /v2/models/{name}/infer), all JSON
 *   byte0 % 5 == 2   GET parameters: up to five NUL-separated strings for
 *                    api_decode_scores_query (since_id, limit, model, source,
 *                    anomalies_only; a missing one is NULL), and each string through
 *                    api_decode_max_points, api_parse_log_id and api_valid_model_name
 *   byte0 % 5 == 3   api_decode_score with max_batch 1 (the batch limit path), and the
 *                    same body through api_decode_strip (POST /v1/models/{name}/strip)
 *   byte0 % 5 == 4   api_decode_v2_infer with binary data: bytes 2 and 3 are the
 *                    Inference-Header-Content-Length (little-endian; 0xffff: no such
 *                    header, 0xfffe: the text "-1"), the rest the body, a JSON header and
 *                    the bytes after it
 * The body is not NUL-terminated (the decoders get a length), so it sits in a heap block
 * of exactly its size for ASan. A decoded request must hold n * dim finite values, and
 * whatever api_decode_score's fast path (api_fast.c) decodes, its jansson path must
 * decode identically. A decoded V2 request is answered by api_encode_v2_infer as asked:
 * its JSON header must parse and the binary outputs fill the rest exactly. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <stdio.h>

#include "api.h"

static void check_request(const api_score_request *req, size_t dim) {
    if (req->n < 1 || req->dim != dim || !req->x) abort();
    for (size_t i = 0; i < (size_t)req->n * dim; i++)
        if (!isfinite(req->x[i])) abort();
}

static void decode_query(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return;
    memcpy(text, data, size);
    text[size] = 0;
    const char *arg[5] = {NULL, NULL, NULL, NULL, NULL};
    size_t at = 0;
    for (int i = 0; i < 5 && at <= size; i++) {
        arg[i] = text + at;
        at += strlen(text + at) + 1;
    }
    api_scores_query q;
    api_error e;
    if (api_decode_scores_query(arg[0], arg[1], arg[2], arg[3], arg[4], &q, &e) == 0 &&
        (q.limit < 1 || q.limit > API_MAX_LIMIT || q.since_id < 0))
        abort();
    for (int i = 0; i < 5 && arg[i]; i++) {
        int n;
        int64_t id;
        if (api_decode_max_points(arg[i], &n, &e) == 0 && n < 0) abort();
        if (api_parse_log_id(arg[i], &id) == 0 && id < 0) abort();
        (void)api_valid_model_name(arg[i]);
    }
    free(text);
}

/* The fast path may only take bodies that jansson's path decodes the same way. */
static void check_fast_path(const char *body, size_t size, size_t dim, int max_batch) {
    api_score_request fast, slow;
    api_error e;
    int taken = api_decode_score_fast(body, size, dim, max_batch, &fast);
    if (taken != 1) {
        if (fast.x || fast.n) abort();
        return;
    }
    if (api_decode_score_json(body, size, dim, max_batch, &slow, &e)) abort();
    if (fast.n != slow.n || fast.explain != slow.explain || strcmp(fast.id, slow.id) ||
        strcmp(fast.source, slow.source) ||
        memcmp(fast.x, slow.x, (size_t)fast.n * dim * sizeof *fast.x))
        abort();
    api_score_request_free(&fast);
    api_score_request_free(&slow);
}

/* A decoded strip holds 1..API_STRIP_MAX_VALUES finite values and a whole rate in Hz. */
static void decode_strip(const char *body, size_t size) {
    api_strip_request req;
    api_error e;
    if (api_decode_strip(body, size, &req, &e)) {
        if (e.status < 400 || e.status > 599 || !e.code[0] || req.signal) abort();
        return;
    }
    if (!req.signal || req.n < 1 || req.n > API_STRIP_MAX_VALUES || req.fs < 1 || req.fs > 1000000)
        abort();
    for (size_t i = 0; i < req.n; i++)
        if (!isfinite(req.signal[i])) abort();
    api_strip_request_free(&req);
}

/* The answer to a decoded V2 request: outputs as asked, each once; the JSON header parses
 * and holds them in order; the binary ones fill the rest of the body exactly. */
static void check_v2_answer(const api_score_request *req, const api_v2_outputs *out) {
    static const size_t width[API_V2_N_OUTPUTS] = {8, 1, 8, 8};
    unsigned seen = 0;
    size_t binary = 0;
    if (out->n < 1 || out->n > API_V2_N_OUTPUTS) abort();
    for (int k = 0; k < out->n; k++) {
        if (out->which[k] >= API_V2_N_OUTPUTS || (seen & (1u << out->which[k]))) abort();
        seen |= 1u << out->which[k];
        if (out->binary[k]) binary += (size_t)req->n * width[out->which[k]];
    }
    api_score_record *rec = calloc((size_t)req->n, sizeof *rec);
    size_t len, json_len;
    char *body = rec ? api_encode_v2_infer("m", "v", req->id, rec, req->n, out, &len, &json_len)
                     : NULL;
    if (body) {
        json_t *j = json_loadb(body, json_len, 0, NULL);
        if (!j || len != json_len + binary ||
            json_array_size(json_object_get(j, "outputs")) != (size_t)out->n)
            abort();
        json_decref(j);
    }
    free(body);
    free(rec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    int which = data[0] % 5;
    size_t dim = 1 + data[1] % 32;
    data += 2;
    size -= 2;
    if (which == 2) {
        decode_query(data, size);
        return 0;
    }
    char header[16], *framing = NULL;
    if (which == 4) {
        if (size < 2) return 0;
        unsigned length = data[0] | (unsigned)data[1] << 8;
        if (length != 0xffff) snprintf(framing = header, sizeof header, length == 0xfffe
                                       ? "-1" : "%u", length);
        data += 2;
        size -= 2;
    }
    char *body = malloc(size ? size : 1);
    if (!body) return 0;
    memcpy(body, data, size);
    api_score_request req;
    api_v2_outputs out;
    api_error e;
    int max_batch = which == 3 ? 1 : 8, v2 = which == 1 || which == 4;
    int rc = v2 ? api_decode_v2_infer(body, size, framing, dim, max_batch, &req, &out, &e)
                : api_decode_score(body, size, dim, max_batch, &req, &e);
    if (rc == 0) {
        check_request(&req, dim);
        if (req.n > max_batch) abort();
        if (v2) check_v2_answer(&req, &out);
    } else if (e.status < 400 || e.status > 599 || !e.code[0]) {
        abort();
    }
    api_score_request_free(&req);
    if (!v2) check_fast_path(body, size, dim, max_batch);
    if (which == 3) decode_strip(body, size);
    free(body);
    return 0;
}
