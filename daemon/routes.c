/* anodmd's request handlers (see routes.h). */
#include "routes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_SEGMENTS 5

/* The path split at '/' into at most MAX_SEGMENTS segments (pointing into buf). */
typedef struct {
    char buf[512];
    const char *seg[MAX_SEGMENTS];
    int n;                       /* -1: too long or too deep to be any route */
} path_parts;

static void split_path(const char *path, path_parts *p) {
    p->n = -1;
    if (*path != '/' || strlen(path) >= sizeof p->buf) return;
    snprintf(p->buf, sizeof p->buf, "%s", path + 1);
    int n = 0;
    for (char *s = p->buf, *slash;; s = slash + 1) {
        if (n == MAX_SEGMENTS) return;
        p->seg[n++] = s;
        if (!(slash = strchr(s, '/'))) break;
        *slash = 0;
    }
    p->n = n;
}

/* Does p match pattern (segments separated by '/', "*" matching any non-empty one)? */
static int match(const path_parts *p, const char *pattern) {
    const char *s = pattern;
    for (int i = 0; i < p->n; i++) {
        size_t len = strcspn(s, "/");
        int wild = len == 1 && *s == '*';
        if (wild ? !*p->seg[i] : strlen(p->seg[i]) != len || strncmp(s, p->seg[i], len))
            return 0;
        s += len;
        if (!*s) return i + 1 == p->n;
        s++;
    }
    return 0;
}

void routes_error(reply *out, int status, const char *code, const char *message) {
    api_error e;
    api_error_set(&e, status, code, "%s", message);
    out->status = status;
    out->body = api_encode_error(&e);
}

static void error_reply(reply *out, const api_error *e) {
    out->status = e->status;
    out->body = api_encode_error(e);
}

static void ok_reply(reply *out, char *body) {
    out->status = 200;
    out->body = body;
}

/* A model of set by name (NULL: the default), or a 404 reply. */
static model *find_model(model_set *set, const char *name, reply *out) {
    model *m = model_set_find(set, name);
    if (!m) {
        api_error e;
        api_error_set(&e, 404, "unknown_model", "no model named '%.64s'", name ? name : "");
        error_reply(out, &e);
    }
    return m;
}

/* Per-request buffers of a score call. */
typedef struct {
    detector_result *res;
    api_score_record *rec;
    int *nn_idx;
    int32_t *nn_ref;
    float *nn_dist, *x_rec;
} score_buffers;

static int alloc_buffers(score_buffers *b, int n, int k, size_t dim, int explain) {
    size_t nk = (size_t)n * (size_t)k;
    b->res = malloc((size_t)n * sizeof *b->res);
    b->rec = calloc((size_t)n, sizeof *b->rec);
    b->nn_idx = malloc(nk * sizeof *b->nn_idx);
    b->nn_ref = malloc(nk * sizeof *b->nn_ref);
    b->nn_dist = malloc(nk * sizeof *b->nn_dist);
    b->x_rec = explain ? malloc((size_t)n * dim * sizeof *b->x_rec) : NULL;
    return b->res && b->rec && b->nn_idx && b->nn_ref && b->nn_dist && (b->x_rec || !explain)
               ? 0 : -1;
}

static void free_buffers(score_buffers *b) {
    free(b->res);
    free(b->rec);
    free(b->nn_idx);
    free(b->nn_ref);
    free(b->nn_dist);
    free(b->x_rec);
}

/* The log records of a scored request. */
static void fill_records(const model *m, const api_score_request *req, score_buffers *b) {
    const detector *d = &m->d;
    for (int i = 0; i < req->n; i++) {
        api_score_record *r = &b->rec[i];
        memcpy(r->model, m->name, sizeof r->model);
        memcpy(r->version, m->version, sizeof r->version);
        memcpy(r->id, req->id, sizeof r->id);
        memcpy(r->source, req->source, sizeof r->source);
        r->index = i;
        r->r = b->res[i];
        r->threshold = d->threshold;
        for (int j = 0; j < d->k; j++) {
            size_t at = (size_t)i * (size_t)d->k + (size_t)j;
            b->nn_ref[at] = d->ref_id[b->nn_idx[at]];
        }
        r->nearest_ref = b->nn_ref[(size_t)i * (size_t)d->k];
        r->nearest_distance = b->nn_dist[(size_t)i * (size_t)d->k];
    }
}

/* Score req with m, log the rows, then answer in the V1 shape or, with v2, the Open
 * Inference Protocol's. */
static void score_and_log(app *a, model *m, const api_score_request *req, int v2, reply *out) {
    score_buffers b = {0};
    char err[256];
    if (alloc_buffers(&b, req->n, m->d.k, m->dim, req->explain)) {
        routes_error(out, 500, "internal", "out of memory");
    } else if (model_score(m, req->x, req->n, b.res, b.x_rec, b.nn_idx, b.nn_dist, err,
                           sizeof err)) {
        fprintf(stderr, "anodmd: scoring with model %s failed: %s\n", m->name, err);
        routes_error(out, 500, "internal", err);
    } else {
        int anomalies = 0;
        for (int i = 0; i < req->n; i++) anomalies += b.res[i].is_anomaly;
        metrics_scored(a->metrics, m->name, req->n, anomalies);
        fill_records(m, req, &b);
        if (scorelog_append(a->log, b.rec, req->n, err, sizeof err)) {
            routes_error(out, 503, "log_unavailable", err);
        } else if (v2) {
            ok_reply(out, api_encode_v2_infer(m->name, m->version, req->id, b.rec, req->n));
        } else {
            api_score_detail detail = {.k = m->d.k, .ref = b.nn_ref, .distance = b.nn_dist,
                                       .x = req->x, .x_rec = b.x_rec, .dim = m->dim};
            ok_reply(out, api_encode_score(m->name, m->version, b.rec, req->n, &detail));
        }
    }
    free_buffers(&b);
}

/* POST /v1/score, POST /v1/models/{name}/score, POST /v2/models/{name}/infer. */
static void score(app *a, model_set *set, const request *rq, const char *name, int v2,
                  reply *out) {
    model *m = find_model(set, name, out);
    if (!m) return;
    api_score_request req;
    api_error e;
    if (v2 ? api_decode_v2_infer(rq->body, rq->len, m->dim, a->max_batch, &req, &e)
           : api_decode_score(rq->body, rq->len, m->dim, a->max_batch, &req, &e)) {
        error_reply(out, &e);
        return;
    }
    score_and_log(a, m, &req, v2, out);
    api_score_request_free(&req);
}

/* GET /v1/scores: one page of the log. */
static void score_page(app *a, const request *rq, reply *out) {
    api_scores_query q;
    api_error e;
    if (api_decode_scores_query(rq->query(rq->conn, "since_id"), rq->query(rq->conn, "limit"),
                                rq->query(rq->conn, "model"), rq->query(rq->conn, "source"),
                                rq->query(rq->conn, "anomalies_only"), &q, &e)) {
        error_reply(out, &e);
        return;
    }
    api_score_record *rec = malloc((size_t)q.limit * sizeof *rec);
    char err[256];
    int n;
    if (!rec) routes_error(out, 500, "internal", "out of memory");
    else if (scorelog_page(a->log, &q, rec, &n, err, sizeof err))
        routes_error(out, 503, "log_unavailable", err);
    else ok_reply(out, api_encode_score_page(rec, n, q.since_id));
    free(rec);
}

/* GET /v1/scores/{id}. */
static void score_record(app *a, const char *id_text, reply *out) {
    int64_t id;
    api_score_record rec;
    char err[256];
    int found;
    if (api_parse_log_id(id_text, &id)) {
        routes_error(out, 400, "invalid_request", "a log id is a non-negative integer");
    } else if ((found = scorelog_get(a->log, id, &rec, err, sizeof err)) < 0) {
        routes_error(out, 503, "log_unavailable", err);
    } else if (!found) {
        routes_error(out, 404, "not_found", "no score with that log id");
    } else {
        ok_reply(out, api_encode_score_record(&rec));
    }
}

static api_model_ref model_ref(const model *m) {
    return (api_model_ref){.name = m->name, .version = m->version, .d = &m->d};
}

/* GET /v1/models. */
static void model_list(model_set *set, reply *out) {
    api_model_ref *refs = malloc((size_t)set->n * sizeof *refs);
    if (!refs) {
        routes_error(out, 500, "internal", "out of memory");
        return;
    }
    for (int i = 0; i < set->n; i++) refs[i] = model_ref(&set->models[i]);
    ok_reply(out, api_encode_model_list(refs, set->n));
    free(refs);
}

/* GET /v1/models/{name}, and with v2 the Open Inference Protocol's metadata. */
static void model_info(model_set *set, const char *name, int v2, reply *out) {
    model *m = find_model(set, name, out);
    if (!m) return;
    api_model_ref ref = model_ref(m);
    ok_reply(out, v2 ? api_encode_v2_model(&ref, m->dim)
                     : api_encode_model(&ref, m == model_set_find(set, NULL)));
}

/* GET /v1/models/{name}/map?max_points=N: the reference map, evenly thinned to N. */
static void model_map(model_set *set, const request *rq, const char *name, reply *out) {
    model *m = find_model(set, name, out);
    if (!m) return;
    int max_points;
    api_error e;
    if (api_decode_max_points(rq->query(rq->conn, "max_points"), &max_points, &e)) {
        error_reply(out, &e);
        return;
    }
    api_model_ref ref = model_ref(m);
    ok_reply(out, api_encode_map(&ref, max_points));
}

/* GET /v1/stats: counts, anomaly rates and score quantiles per model and window. */
static void stats(app *a, reply *out) {
    api_model_stats *st;
    int n;
    char err[256];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    if (scorelog_summary(a->log, now_ms, &st, &n, err, sizeof err)) {
        routes_error(out, 503, "log_unavailable", err);
        return;
    }
    ok_reply(out, api_encode_stats(st, n, now_ms));
    free(st);
}

/* Models loaded, log writable, not shutting down: GET /readyz and /v2/health/ready. */
static int is_ready(app *a, model_set *set, const request *rq, char *state, size_t cap) {
    int ok = scorelog_healthy(a->log, state, cap);
    if (rq->draining) snprintf(state, cap, "shutting down");
    return ok && !rq->draining && set->n > 0;
}

/* GET /readyz. */
static void ready(app *a, model_set *set, const request *rq, reply *out) {
    char state[256];
    int ok = is_ready(a, set, rq, state, sizeof state);
    out->status = ok ? 200 : 503;
    out->body = api_encode_ready(ok, set->n, state);
}

/* GET /v2/health/ready, and GET /v2/models/{name}/ready for one model. */
static void v2_ready(app *a, model_set *set, const request *rq, const char *name,
                     reply *out) {
    char state[256];
    if (name && !find_model(set, name, out)) return;
    int ok = is_ready(a, set, rq, state, sizeof state);
    out->status = ok ? 200 : 503;
    out->body = api_encode_v2_ready(name, ok);
}

/* GET /metrics: Prometheus text. */
static void metrics_page(app *a, model_set *set, reply *out) {
    metrics_gauges g = {.models_loaded = set->n, .log_queue = scorelog_queued(a->log)};
    char *text = metrics_render(a->metrics, &g);
    if (!text) {
        routes_error(out, 500, "internal", "out of memory");
        return;
    }
    ok_reply(out, text);
    out->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

/* A route: method, path pattern, its OpenAPI path (the metrics label), its handler. */
enum {
    R_HEALTH, R_READY, R_METRICS, R_SCORE, R_MODEL_SCORE, R_SCORES, R_SCORE_RECORD, R_STATS,
    R_MODELS, R_MODEL, R_MAP, R_V2_LIVE, R_V2_READY, R_V2_MODEL_READY, R_V2_MODEL, R_V2_INFER
};
static const struct route {
    const char *method, *pattern, *label;
    int id;
} ROUTES[] = {
    {"GET", "healthz", "/healthz", R_HEALTH},
    {"GET", "readyz", "/readyz", R_READY},
    {"GET", "metrics", "/metrics", R_METRICS},
    {"POST", "v1/score", "/v1/score", R_SCORE},
    {"POST", "v1/models/*/score", "/v1/models/{name}/score", R_MODEL_SCORE},
    {"GET", "v1/scores", "/v1/scores", R_SCORES},
    {"GET", "v1/scores/*", "/v1/scores/{id}", R_SCORE_RECORD},
    {"GET", "v1/stats", "/v1/stats", R_STATS},
    {"GET", "v1/models", "/v1/models", R_MODELS},
    {"GET", "v1/models/*", "/v1/models/{name}", R_MODEL},
    {"GET", "v1/models/*/map", "/v1/models/{name}/map", R_MAP},
    {"GET", "v2/health/live", "/v2/health/live", R_V2_LIVE},
    {"GET", "v2/health/ready", "/v2/health/ready", R_V2_READY},
    {"GET", "v2/models/*/ready", "/v2/models/{name}/ready", R_V2_MODEL_READY},
    {"GET", "v2/models/*", "/v2/models/{name}", R_V2_MODEL},
    {"POST", "v2/models/*/infer", "/v2/models/{name}/infer", R_V2_INFER},
};
#define N_ROUTES (sizeof ROUTES / sizeof ROUTES[0])

const char *routes_label(const char *path) {
    path_parts p;
    split_path(path, &p);
    for (size_t i = 0; i < N_ROUTES; i++)
        if (match(&p, ROUTES[i].pattern)) return ROUTES[i].label;
    return "unmatched";
}

/* Run the handler of route id on set. */
static void dispatch(app *a, model_set *set, const request *rq, const path_parts *p, int id,
                     reply *out) {
    const char *name = p->n > 2 ? p->seg[2] : NULL;
    switch (id) {
    case R_HEALTH: ok_reply(out, api_encode_health()); break;
    case R_READY: ready(a, set, rq, out); break;
    case R_METRICS: metrics_page(a, set, out); break;
    case R_SCORE: score(a, set, rq, NULL, 0, out); break;
    case R_MODEL_SCORE: score(a, set, rq, name, 0, out); break;
    case R_SCORES: score_page(a, rq, out); break;
    case R_SCORE_RECORD: score_record(a, name, out); break;
    case R_STATS: stats(a, out); break;
    case R_MODELS: model_list(set, out); break;
    case R_MODEL: model_info(set, name, 0, out); break;
    case R_MAP: model_map(set, rq, name, out); break;
    case R_V2_LIVE: ok_reply(out, api_encode_v2_live()); break;
    case R_V2_READY: v2_ready(a, set, rq, NULL, out); break;
    case R_V2_MODEL_READY: v2_ready(a, set, rq, name, out); break;
    case R_V2_MODEL: model_info(set, name, 1, out); break;
    case R_V2_INFER: score(a, set, rq, name, 1, out); break;
    }
}

void routes_handle(app *a, const request *rq, reply *out) {
    path_parts p;
    split_path(rq->path, &p);
    const struct route *found = NULL, *other_method = NULL;
    for (size_t i = 0; i < N_ROUTES && !found; i++)
        if (match(&p, ROUTES[i].pattern)) {
            if (!strcmp(rq->method, ROUTES[i].method)) found = &ROUTES[i];
            else other_method = &ROUTES[i];
        }
    out->allow = NULL;
    out->content_type = NULL;
    if (!found && other_method) {
        out->allow = other_method->method;
        routes_error(out, 405, "method_not_allowed", other_method->method[0] == 'G'
                                                         ? "this route only answers GET"
                                                         : "this route only answers POST");
        return;
    }
    if (!found) {
        routes_error(out, 404, "not_found", "no such route");
        return;
    }
    /* The whole request runs on the models current when it began, even across a reload. */
    model_set *set = registry_acquire(a->reg);
    dispatch(a, set, rq, &p, found->id, out);
    registry_release(a->reg, set);
}
