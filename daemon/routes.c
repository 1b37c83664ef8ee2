/* anodmd's request handlers (see routes.h). */
#include "routes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* A model by name (NULL: the default), or a 404 reply. */
static model *find_model(app *a, const char *name, reply *out) {
    model *m = registry_find(a->reg, name);
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

/* POST /v1/score, POST /v1/models/{name}/score: score, log, then answer. */
static void score(app *a, const request *rq, const char *name, reply *out) {
    model *m = find_model(a, name, out);
    if (!m) return;
    api_score_request req;
    api_error e;
    if (api_decode_score(rq->body, rq->len, m->dim, a->max_batch, &req, &e)) {
        error_reply(out, &e);
        return;
    }
    score_buffers b = {0};
    char err[256];
    if (alloc_buffers(&b, req.n, m->d.k, m->dim, req.explain)) {
        routes_error(out, 500, "internal", "out of memory");
    } else if (model_score(m, req.x, req.n, b.res, b.x_rec, b.nn_idx, b.nn_dist, err,
                           sizeof err)) {
        fprintf(stderr, "anodmd: scoring with model %s failed: %s\n", m->name, err);
        routes_error(out, 500, "internal", err);
    } else {
        fill_records(m, &req, &b);
        if (scorelog_append(a->log, b.rec, req.n, err, sizeof err)) {
            routes_error(out, 503, "log_unavailable", err);
        } else {
            api_score_detail detail = {.k = m->d.k, .ref = b.nn_ref, .distance = b.nn_dist,
                                       .x = req.x, .x_rec = b.x_rec, .dim = m->dim};
            ok_reply(out, api_encode_score(m->name, m->version, b.rec, req.n, &detail));
        }
    }
    free_buffers(&b);
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
static void model_list(app *a, reply *out) {
    api_model_ref *refs = malloc((size_t)a->reg->n * sizeof *refs);
    if (!refs) {
        routes_error(out, 500, "internal", "out of memory");
        return;
    }
    for (int i = 0; i < a->reg->n; i++) refs[i] = model_ref(&a->reg->models[i]);
    ok_reply(out, api_encode_model_list(refs, a->reg->n));
    free(refs);
}

/* GET /v1/models/{name}. */
static void model_info(app *a, const char *name, reply *out) {
    model *m = find_model(a, name, out);
    if (!m) return;
    api_model_ref ref = model_ref(m);
    ok_reply(out, api_encode_model(&ref, m == registry_find(a->reg, NULL)));
}

/* GET /readyz: models loaded, log writable, not shutting down. */
static void ready(app *a, const request *rq, reply *out) {
    char state[256];
    int ok = scorelog_healthy(a->log, state, sizeof state);
    if (rq->draining) snprintf(state, sizeof state, "shutting down");
    ok = ok && !rq->draining && a->reg->n > 0;
    out->status = ok ? 200 : 503;
    out->body = api_encode_ready(ok, a->reg->n, state);
}

/* A route: method, path pattern, and its handler's number. */
enum { R_HEALTH, R_READY, R_SCORE, R_MODEL_SCORE, R_SCORES, R_SCORE_RECORD, R_MODELS, R_MODEL };
static const struct route {
    const char *method, *pattern;
    int id;
} ROUTES[] = {
    {"GET", "healthz", R_HEALTH},
    {"GET", "readyz", R_READY},
    {"POST", "v1/score", R_SCORE},
    {"POST", "v1/models/*/score", R_MODEL_SCORE},
    {"GET", "v1/scores", R_SCORES},
    {"GET", "v1/scores/*", R_SCORE_RECORD},
    {"GET", "v1/models", R_MODELS},
    {"GET", "v1/models/*", R_MODEL},
};
#define N_ROUTES (sizeof ROUTES / sizeof ROUTES[0])

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
    switch (found->id) {
    case R_HEALTH: ok_reply(out, api_encode_health()); break;
    case R_READY: ready(a, rq, out); break;
    case R_SCORE: score(a, rq, NULL, out); break;
    case R_MODEL_SCORE: score(a, rq, p.seg[2], out); break;
    case R_SCORES: score_page(a, rq, out); break;
    case R_SCORE_RECORD: score_record(a, p.seg[2], out); break;
    case R_MODELS: model_list(a, out); break;
    case R_MODEL: model_info(a, p.seg[2], out); break;
    }
}
