/* The daemon's JSON wire format (see api.h and openapi.yaml). */
#include "api.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Reals: 9 significant digits round-trip every float and keep scores to 1e-9. */
#define API_DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(9))

void api_error_set(api_error *e, int status, const char *code, const char *fmt, ...) {
    va_list ap;
    e->status = status;
    snprintf(e->code, sizeof e->code, "%s", code);
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
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

/* Every member of the request object: the known keys with their types. */
static int decode_members(json_t *root, size_t dim, int max_batch, api_score_request *req,
                          api_error *e) {
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "sample") || !strcmp(key, "samples")) continue;
        if (!strcmp(key, "id")) {
            if (decode_tag(v, key, req->id, e)) return -1;
        } else if (!strcmp(key, "source")) {
            if (decode_tag(v, key, req->source, e)) return -1;
        } else if (!strcmp(key, "explain")) {
            if (!json_is_boolean(v)) {
                api_error_set(e, 400, "invalid_request", "\"explain\" must be true or false");
                return -1;
            }
            req->explain = json_is_true(v);
        } else {
            api_error_set(e, 400, "unknown_field", "unknown field \"%.64s\"", key);
            return -1;
        }
    }
    return decode_samples(root, dim, max_batch, req, e);
}

int api_decode_score(const char *body, size_t len, size_t dim, int max_batch,
                     api_score_request *req, api_error *e) {
    memset(req, 0, sizeof *req);
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (json_error_code(&jerr) == json_error_duplicate_key)
            api_error_set(e, 400, "duplicate_key", "%s", jerr.text);
        else
            api_error_set(e, 400, "malformed_json", "line %d, column %d: %s", jerr.line,
                          jerr.column, jerr.text);
        return -1;
    }
    int rc = -1;
    if (!json_is_object(root))
        api_error_set(e, 400, "invalid_request", "the body must be a JSON object");
    else
        rc = decode_members(root, dim, max_batch, req, e);
    json_decref(root);
    if (rc) api_score_request_free(req);
    return rc;
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
    if (source) {
        if (strlen(source) > API_ID_MAX) {
            api_error_set(e, 400, "invalid_query", "source is longer than %d bytes", API_ID_MAX);
            return -1;
        }
        snprintf(q->source, sizeof q->source, "%s", source);
    }
    if (anomalies_only) {
        if (!strcmp(anomalies_only, "true") || !strcmp(anomalies_only, "1")) q->anomalies_only = 1;
        else if (strcmp(anomalies_only, "false") && strcmp(anomalies_only, "0")) {
            api_error_set(e, 400, "invalid_query", "anomalies_only must be true or false");
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ encoding */

/* A number, or null for a non-finite one (JSON has no NaN). */
static json_t *num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

/* Serialise and release v; NULL if v is NULL (a failed build) or out of memory. */
static char *dump(json_t *v) {
    if (!v) return NULL;
    char *s = json_dumps(v, API_DUMP_FLAGS);
    json_decref(v);
    return s;
}

/* A float array of n values. */
static json_t *float_array(const float *v, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, num(v[i]))) {
            json_decref(a);
            return NULL;
        }
    return a;
}

/* An optional tag: the string, or null when empty. */
static json_t *tag(const char *s) { return *s ? json_string(s) : json_null(); }

/* RFC 3339 UTC time with milliseconds. */
static json_t *timestamp(int64_t ms) {
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char buf[40];
    if (!gmtime_r(&t, &tm)) return json_null();
    size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof buf - n, ".%03dZ", (int)(ms % 1000));
    return json_string(buf);
}

/* The fields a score result and a log record share. */
static json_t *score_fields(const api_score_record *r) {
    return json_pack("{s:o, s:o, s:o, s:i, s:o, s:b, s:o, s:o, s:o, "
                     "s:{s:o, s:o, s:o, s:o}, s:[o, o], s:I}",
                     "model", json_string(r->model), "version", json_string(r->version),
                     "id", tag(r->id), "index", r->index, "score", num(r->r.score),
                     "is_anomaly", r->r.is_anomaly, "threshold", num(r->threshold),
                     "p_value", num(r->r.p_value), "raw_score", num(r->r.raw_score), "terms",
                     "d_re", num(r->r.d_re), "d_map", num(r->r.d_map), "z_re", num(r->r.z_re),
                     "z_map", num(r->r.z_map), "position", num(r->r.pos[0]), num(r->r.pos[1]),
                     "log_id", (json_int_t)r->log_id);
}

/* Neighbours of sample i, and with explain its reconstruction and squared error. */
static int add_detail(json_t *o, const api_score_detail *d, int i) {
    json_t *nb = json_array();
    if (!nb || json_object_set_new(o, "neighbors", nb)) return -1;
    for (int j = 0; j < d->k; j++) {
        size_t at = (size_t)i * (size_t)d->k + (size_t)j;
        if (json_array_append_new(nb, json_pack("{s:i, s:o}", "ref", (int)d->ref[at], "distance",
                                                num(d->distance[at]))))
            return -1;
    }
    if (!d->x_rec) return 0;
    const float *x = d->x + (size_t)i * d->dim, *rec = d->x_rec + (size_t)i * d->dim;
    json_t *se = json_array();
    for (size_t j = 0; se && j < d->dim; j++)
        if (json_array_append_new(se, num(((double)x[j] - rec[j]) * ((double)x[j] - rec[j])))) {
            json_decref(se);
            se = NULL;
        }
    if (json_object_set_new(o, "squared_error", se)) return -1;
    return json_object_set_new(o, "reconstruction", float_array(rec, d->dim));
}

char *api_encode_score(const char *model, const char *version, const api_score_record *rec,
                       int n, const api_score_detail *detail) {
    json_t *results = json_array();
    json_t *root = json_pack("{s:s, s:s, s:o}", "model", model, "version", version, "results",
                             results);
    if (!root) return NULL;
    for (int i = 0; i < n; i++) {
        json_t *o = score_fields(&rec[i]);
        if (json_array_append_new(results, o) || add_detail(o, detail, i)) {
            json_decref(root);
            return NULL;
        }
    }
    return dump(root);
}

/* A log record: the shared fields, its time and source, and its nearest neighbour. */
static json_t *record(const api_score_record *r) {
    json_t *o = score_fields(r);
    if (!o) return NULL;
    if (json_object_set_new(o, "time", timestamp(r->ts_ms)) ||
        json_object_set_new(o, "source", tag(r->source)) ||
        json_object_set_new(o, "nearest", json_pack("{s:i, s:o}", "ref", (int)r->nearest_ref,
                                                    "distance", num(r->nearest_distance)))) {
        json_decref(o);
        return NULL;
    }
    return o;
}

char *api_encode_score_page(const api_score_record *rec, int n, int64_t since_id) {
    json_t *scores = json_array();
    json_t *root = json_pack("{s:o, s:I}", "scores", scores, "next_since_id",
                             (json_int_t)(n ? rec[n - 1].log_id : since_id));
    if (!root) return NULL;
    for (int i = 0; i < n; i++)
        if (json_array_append_new(scores, record(&rec[i]))) {
            json_decref(root);
            return NULL;
        }
    return dump(root);
}

char *api_encode_score_record(const api_score_record *rec) { return dump(record(rec)); }

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
        "{s:{s:s, s:s, s:s, s:I}, s:{s:o, s:i, s:i, s:o, s:i}, "
        "s:{s:i, s:o, s:o, s:{s:o, s:o}, s:{s:o, s:o}}, s:o}",
        "architecture", "recon", a->recon == RECON_BCE ? "bce" : "mse", "encoder", a->enc_spec,
        "decoder", a->dec_spec, "parameters", (json_int_t)d->vae.n_params,
        "scoring", "alpha", num(d->alpha), "k", d->k, "window", d->window, "perplexity",
        num(d->place.perplexity), "n_ref", d->n_ref,
        "calibration", "n", d->n_cal, "quantile", num(d->quantile), "threshold",
        num(d->threshold), "d_re", "center", num(d->re.center), "scale", num(d->re.scale),
        "d_map", "center", num(d->map.center), "scale", num(d->map.scale),
        "provenance", provenance(d->provenance));
    if (!more || json_object_update(o, more)) {
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

char *api_encode_error(const api_error *e) {
    return dump(json_pack("{s:{s:s, s:s}}", "error", "code", e->code, "message", e->message));
}

char *api_encode_health(void) { return dump(json_pack("{s:s}", "status", "ok")); }

char *api_encode_ready(int ready, int n_models, const char *log_state) {
    return dump(json_pack("{s:b, s:i, s:s}", "ready", ready, "models", n_models, "log",
                          log_state));
}
