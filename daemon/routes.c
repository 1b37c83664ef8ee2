/* anodmd's request handlers (see routes.h). */
#include "routes.h"

#include "block.h"
#include "dashboard.h"
#include "ecg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_SEGMENTS 6

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

/* Does a Content-Type header name the media type want (in any case, parameters such as
 * charset allowed)? */
static int type_is(const char *type, const char *want) {
    size_t n = strlen(want);
    type += strspn(type, " \t");
    if (strncasecmp(type, want, n)) return 0;
    type += n;
    type += strspn(type, " \t");
    return !*type || *type == ';';
}

/* Is a body of this Content-Type read? JSON, or a request without one, for clients that
 * send none; with binary (the V2 infer routes) also application/octet-stream, the binary
 * tensor extension's type. One that names another type (a browser form's, text/plain) is
 * not: those are the types a web page may send anywhere, and octet-stream is not one. */
static int body_type_taken(const char *type, int binary) {
    return !type || type_is(type, "application/json") ||
           (binary && type_is(type, "application/octet-stream"));
}

/* Does p match pattern (segments separated by '/', "*" matching any non-empty one)? The
 * segments the first two "*" matched go to arg[0] and arg[1] (NULL when it has fewer). */
static int match(const path_parts *p, const char *pattern, const char *arg[2]) {
    const char *s = pattern;
    int n_args = 0;
    arg[0] = arg[1] = NULL;
    for (int i = 0; i < p->n; i++) {
        size_t len = strcspn(s, "/");
        int wild = len == 1 && *s == '*';
        if (wild ? !*p->seg[i] : strlen(p->seg[i]) != len || strncmp(s, p->seg[i], len))
            return 0;
        if (wild && n_args < 2) arg[n_args++] = p->seg[i];
        s += len;
        if (!*s) return i + 1 == p->n;
        s++;
    }
    return 0;
}

/* What a route's handler is given: the daemon, the models current when the request began,
 * the request, the path segment its pattern's first "*" matched (a model name, a log id, a
 * file; NULL when it has none) and its second (a V2 model version; NULL when it has none),
 * and the reply to fill. A handler returns 1 when it handed the request to a worker (which
 * then answers and holds set), else 0: it has answered. */
typedef struct {
    app *a;
    model_set *set;
    const request *rq;
    const char *arg, *version;
    reply *out;
} route_ctx;

static void error_reply(reply *out, const api_error *e) {
    out->status = e->status;
    out->body = out->v2 ? api_encode_v2_error(e) : api_encode_error(e);
}

void routes_error(reply *out, int status, const char *code, const char *message) {
    api_error e;
    api_error_set(&e, status, code, "%s", message);
    error_reply(out, &e);
}

int routes_v2(const char *path) {
    return !strncmp(path, "/v2", 3) && (!path[3] || path[3] == '/');
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

/* The model of a V2 route: by name, and on the versioned routes only at its version (the
 * SHA-256 of its bundle), or a 404 reply. */
static model *find_v2_model(const route_ctx *c) {
    model *m = find_model(c->set, c->arg, c->out);
    if (m && c->version && strcmp(c->version, m->version)) {
        api_error e;
        api_error_set(&e, 404, "unknown_version", "model '%s' has no version '%.64s'", m->name,
                      c->version);
        error_reply(c->out, &e);
        return NULL;
    }
    return m;
}

/* Per-request buffers of a score call, in one block (block.h). */
typedef struct {
    detector_result *res;
    api_score_record *rec;
    float *nn_dist, *x_rec;      /* x_rec NULL unless kept */
    int32_t *nn_ref;
    void *mem;                   /* the allocation they all live in */
} score_buffers;

static void buffer_parts(block *b, score_buffers *sb, size_t n, size_t k, size_t dim,
                         int keep_rec) {
    BLOCK_TAKE(b, sb->res, n);
    BLOCK_TAKE(b, sb->rec, n);
    BLOCK_TAKE(b, sb->nn_dist, n * k);
    if (keep_rec) BLOCK_TAKE(b, sb->x_rec, n * dim);
    BLOCK_TAKE(b, sb->nn_ref, n * k);
}

static int alloc_buffers(score_buffers *sb, int n, int k, size_t dim, int keep_rec) {
    block b = {0};
    memset(sb, 0, sizeof *sb);
    buffer_parts(&b, sb, (size_t)n, (size_t)k, dim, keep_rec);
    if (!(sb->mem = block_alloc(&b))) return -1;
    buffer_parts(&b, sb, (size_t)n, (size_t)k, dim, keep_rec);
    return 0;
}

static void free_buffers(score_buffers *sb) {
    free(sb->mem);
    memset(sb, 0, sizeof *sb);
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
    }
}

/* A score request on its way through the batcher: decoded (or, from a strip, cut into
 * beats on a worker first), with its output buffers, and what the worker needs to log
 * it, answer it and wake its connection. */
/* A request a worker answers: the daemon, the model set it holds until then (its job's
 * model is one of the set's), and its connection, parked, to wake once the reply is set. */
typedef struct {
    app *a;
    model_set *set;
    reply *out;
    void (*wake)(void *conn);
    void *conn;
} parked;

/* Park c's request in p: it holds c's set from here on, and the connection is parked
 * before anything is queued, so a worker's wake can never come first. */
static void park(parked *p, const route_ctx *c) {
    *p = (parked){.a = c->a, .set = c->set, .out = c->out, .wake = c->rq->wake,
                  .conn = c->rq->conn};
    c->rq->park(c->rq->conn);
}

/* Let go of p's model set, then wake its connection to send the reply (p is a copy: the
 * job that held it may be freed already). */
static void unpark(parked p) {
    registry_release(p.a->reg, p.set);
    p.wake(p.conn);
}

typedef struct {
    batch_job job;               /* first member: the batcher hands back &job */
    parked p;
    api_score_request req;
    api_v2_outputs outputs;      /* with v2: the outputs asked for, JSON or binary */
    score_buffers b;
    scorelog_ticket ticket;
    int v2, logged;
    api_score_record *early;     /* answer_first: the records as submitted (no log ids) */
    api_strip_request strip;     /* a strip not yet cut into the beats of req */
    int64_t *r_peak;             /* beats cut from a strip: their R peaks (else NULL), */
    int fs;                      /* in samples of the strip at fs Hz */
    char event_id[API_ID_MAX + 1];   /* payload logging on: its events' id */
} score_job;

/* Let go of j's model set and memory, then wake its connection to send *out. */
static void job_done(score_job *j) {
    parked p = j->p;
    api_score_request_free(&j->req);
    api_strip_request_free(&j->strip);
    free_buffers(&j->b);
    free(j->early);
    free(j->r_peak);
    free(j);
    unpark(p);
}

/* On the worker, in scoring order: hand the rows to the log, so log ids follow it. */
static void job_prepare(batch_job *bj) {
    score_job *j = (score_job *)bj;
    char err[256];
    if (bj->rc) return;
    fill_records(bj->m, &j->req, &j->b);
    /* The writer sets the rows' log ids as it commits: an early answer needs its own copy,
     * taken before the rows are handed over. */
    if (j->p.a->answer_first && (j->early = malloc((size_t)j->req.n * sizeof *j->early))) {
        memcpy(j->early, j->b.rec, (size_t)j->req.n * sizeof *j->early);
        for (int i = 0; i < j->req.n; i++) j->early[i].log_id = 0;   /* not known yet */
    }
    j->logged = scorelog_submit(j->p.a->log, &j->ticket, j->b.rec, j->req.n, err, sizeof err) == 0;
    if (!j->logged) routes_error(j->p.out, 503, "log_unavailable", err);
}

/* The scores rec of j in the V1 shape or, with v2, the Open Inference Protocol's; with
 * payload logging on, the answer's event queued too. */
static void answer(score_job *j, const api_score_record *rec) {
    const model *m = j->job.m;
    reply *out = j->p.out;
    if (j->v2) {
        size_t len, json_len;
        ok_reply(out, api_encode_v2_infer(m->name, m->version, j->req.id, rec, j->req.n,
                                          &j->outputs, &len, &json_len));
        if (out->body && json_len < len) {   /* binary tensors follow the JSON */
            out->len = len;
            out->json_len = json_len;
            out->content_type = "application/octet-stream";
        }
    } else {
        api_score_detail detail = {.k = m->d.k, .ref = j->b.nn_ref, .distance = j->b.nn_dist,
                                   .x = j->req.x, .x_rec = j->req.explain ? j->b.x_rec : NULL,
                                   .dim = m->dim, .r_peak = j->r_peak, .fs = j->fs};
        ok_reply(out, api_encode_score(m->name, m->version, rec, j->req.n, &detail));
    }
    if (out->body)
        payload_log_event(j->p.a->plog, 1, j->event_id,
                          out->content_type ? out->content_type : "application/json", out->body,
                          out->len ? out->len : strlen(out->body), out->json_len);
}

/* Hold the committed samples of j (input, reconstruction, neighbours) for the sample view. */
static void remember_samples(score_job *j) {
    const model *m = j->job.m;
    const vae_arch *arch = &m->d.vae.arch;
    int k = m->d.k;
    if (!j->p.a->recent) return;
    for (int i = 0; i < j->req.n; i++) {
        size_t at = (size_t)i * (size_t)k;
        api_sample s = {.log_id = j->b.rec[i].log_id, .shape = {arch->in.c, arch->in.h, arch->in.w},
                        .dim = m->dim, .x = j->req.x + (size_t)i * m->dim,
                        .x_rec = j->b.x_rec + (size_t)i * m->dim, .k = k,
                        .ref = j->b.nn_ref + at, .distance = j->b.nn_dist + at};
        memcpy(s.model, m->name, sizeof s.model);
        memcpy(s.version, m->version, sizeof s.version);
        samples_put(j->p.a->recent, &s);
    }
}

/* With answer_first: answer now (log ids unknown: null), wake the connection, and only
 * then wait for the commit that frees the rows. A failed commit is then not seen by the
 * caller; the log counts and reports it as always. */
static void answer_before_commit(score_job *j) {
    char err[256];
    if (j->early) answer(j, j->early);
    else routes_error(j->p.out, 500, "internal", "out of memory");
    void (*wake)(void *) = j->p.wake;
    void *conn = j->p.conn;
    j->p.wake = NULL;
    wake(conn);                  /* j->p.out belongs to the connection from here on */
    if (scorelog_wait(j->p.a->log, &j->ticket, err, sizeof err) == 0) remember_samples(j);
    free(j->early);
    free(j->r_peak);
    registry_release(j->p.a->reg, j->p.set);
    api_score_request_free(&j->req);
    free_buffers(&j->b);
    free(j);
}

/* On the worker: wait for the commit, then answer. A score is never answered before its
 * row is committed (unless answer_first); when the log refused the rows, job_prepare has
 * answered already. */
static void job_finish(batch_job *bj) {
    score_job *j = (score_job *)bj;
    char err[256];
    if (!bj->rc && j->logged && j->p.a->answer_first) {
        answer_before_commit(j);
        return;
    }
    if (bj->rc == SCORER_NOT_FINITE) routes_error(j->p.out, 400, "not_finite", bj->err);
    else if (bj->rc) routes_error(j->p.out, 500, "internal", bj->err);
    else if (j->logged && scorelog_wait(j->p.a->log, &j->ticket, err, sizeof err))
        routes_error(j->p.out, 503, "log_unavailable", err);
    else if (j->logged) {
        remember_samples(j);
        answer(j, j->b.rec);
    }
    job_done(j);
}

/* With payload logging on, the event of the request rq, decoded into j: its body as it
 * came, under the id its answer's event will share. A V2 body with binary tensors (the
 * Inference-Header-Content-Length header says so, whatever its Content-Type) goes as
 * application/octet-stream with the length of its JSON part. */
static void log_request(app *a, const request *rq, score_job *j, int v2, const char *request_id) {
    if (!a->plog) return;
    const char *json_len = v2 ? rq->header(rq->conn, API_V2_HEADER_LENGTH) : NULL;
    payload_log_id(rq->header(rq->conn, "Ce-Id"), request_id, j->event_id);
    payload_log_event(a->plog, 0, j->event_id,
                      json_len ? "application/octet-stream" : "application/json", rq->body,
                      rq->len, json_len ? (size_t)strtoull(json_len, NULL, 10) : 0);
}

/* Queue the decoded request j (its connection parked, its set held) for m's workers. A
 * failure is answered at once. */
static void queue_score(score_job *j, model *m) {
    /* Reconstructions are kept for the answer (explain) and for the sample view. */
    if (alloc_buffers(&j->b, j->req.n, m->d.k, m->dim, j->req.explain || j->p.a->recent)) {
        routes_error(j->p.out, 500, "internal", "out of memory");
        job_done(j);
        return;
    }
    j->job = (batch_job){.m = m, .source = j->req.source, .x = j->req.x, .n = j->req.n,
                         .res = j->b.res, .x_rec = j->b.x_rec, .nn_ref = j->b.nn_ref,
                         .nn_dist = j->b.nn_dist, .prepare = job_prepare,
                         .finish = job_finish};
    int rc = batch_submit(j->p.a->batch, &j->job);
    if (rc == BATCH_NO_MEMORY) routes_error(j->p.out, 500, "internal", "out of memory");
    else if (rc) routes_error(j->p.out, 503, "shutting_down", "the daemon is shutting down");
    if (rc) job_done(j);
}

/* POST /v1/score, POST /v1/models/{name}/score, POST /v2/models/{name}[/versions/{version}]
 * /infer: decode here, score on a worker. 1 when handed over (the job then holds set), 0
 * when answered. */
static int score(const route_ctx *c, int v2) {
    app *a = c->a;
    model_set *set = c->set;
    const request *rq = c->rq;
    const char *name = c->arg;
    reply *out = c->out;
    model *m = v2 ? find_v2_model(c) : find_model(set, name, out);
    if (!m) return 0;
    score_job *j = calloc(1, sizeof *j);
    api_error e;
    if (!j) {
        routes_error(out, 500, "internal", "out of memory");
        return 0;
    }
    if (v2 ? api_decode_v2_infer(rq->body, rq->len, rq->header(rq->conn, API_V2_HEADER_LENGTH),
                                 m->dim, a->max_batch, &j->req, &j->outputs, &e)
           : api_decode_score(rq->body, rq->len, m->dim, a->max_batch, &j->req, &e)) {
        error_reply(out, &e);
        free(j);
        return 0;
    }
    j->v2 = v2;
    log_request(a, rq, j, v2, j->req.id);
    park(&j->p, c);
    queue_score(j, m);
    return 1;
}

static int score_json(const route_ctx *c) { return score(c, 0); }
static int infer_v2(const route_ctx *c) { return score(c, 1); }

/* On a worker (a batch_run task): the strip's R peaks and beats (core/data/ecg.h), then the
 * beats scored as the request's samples. */
static void cut_strip(batch_job *bj) {
    score_job *j = (score_job *)bj;
    model *m = bj->m;
    const int max_batch = j->p.a->max_batch;
    ecg_beats beats = {0};
    char err[256];
    if (ecg_beats_from_strip(j->strip.signal, j->strip.n, j->strip.fs, &beats, err, sizeof err)) {
        routes_error(j->p.out, 400, "bad_strip", err);
    } else if (beats.n > (size_t)max_batch) {
        api_error e;
        api_error_set(&e, 413, "too_many_beats", "the strip holds %zu heartbeats; one request "
                      "scores at most %d (max_batch): send shorter strips", beats.n, max_batch);
        error_reply(j->p.out, &e);
    } else {
        j->req = (api_score_request){.x = beats.x, .n = (int)beats.n, .dim = ECG_BEAT_LEN,
                                     .explain = j->strip.explain};
        memcpy(j->req.id, j->strip.id, sizeof j->req.id);
        memcpy(j->req.source, j->strip.source, sizeof j->req.source);
        j->r_peak = beats.sample;
        j->fs = j->strip.fs;
        beats.x = NULL;          /* now the request's */
        beats.sample = NULL;
    }
    ecg_beats_free(&beats);
    api_strip_request_free(&j->strip);
    if (j->req.n) queue_score(j, m);
    else job_done(j);
}

/* POST /v1/models/{name}/strip: for models of one heartbeat (1 x 1 x 187 at 125 Hz). The
 * strip is decoded here and cut on a worker, never on a connection's thread. */
static int strip(const route_ctx *c) {
    app *a = c->a;
    model_set *set = c->set;
    const request *rq = c->rq;
    const char *name = c->arg;
    reply *out = c->out;
    model *m = find_model(set, name, out);
    if (!m) return 0;
    const shape3 in = m->d.vae.arch.in;
    api_error e;
    char why[200];
    if (ecg_takes_beats(in.c, in.h, in.w, why, sizeof why)) {
        api_error_set(&e, 400, "not_an_ecg_model", "model '%s': %s", m->name, why);
        error_reply(out, &e);
        return 0;
    }
    score_job *j = calloc(1, sizeof *j);
    if (!j) {
        routes_error(out, 500, "internal", "out of memory");
        return 0;
    }
    if (api_decode_strip(rq->body, rq->len, &j->strip, &e)) {
        error_reply(out, &e);
        free(j);
        return 0;
    }
    log_request(a, rq, j, 0, j->strip.id);
    park(&j->p, c);
    j->job = (batch_job){.m = m, .finish = cut_strip};
    if (batch_run(a->batch, &j->job)) {
        routes_error(out, 503, "shutting_down", "the daemon is shutting down");
        job_done(j);
    }
    return 1;
}

/* Records read from this daemon's own log (not the history): its replica id, and their
 * log ids as their local ids. rec is returned. */
static const api_score_record *own_records(const app *a, api_score_record *rec, int n) {
    for (int i = 0; !a->history && i < n; i++) {
        snprintf(rec[i].replica_id, sizeof rec[i].replica_id, "%s", a->replica_id);
        rec[i].local_id = rec[i].log_id;
    }
    return rec;
}

/* Record id of the log, or of the history with history on: 1 found, 0 not, -1 error. */
static int find_record(app *a, int64_t id, api_score_record *rec, char *err, size_t errlen) {
    int found = a->history ? pghistory_get(a->history, id, rec, err, errlen)
                           : scorelog_get(a->log, id, rec, err, errlen);
    if (found == 1) own_records(a, rec, 1);
    return found;
}

/* GET /v1/scores: one page of the log (or of the history). */
static int score_page(const route_ctx *c) {
    app *a = c->a;
    const request *rq = c->rq;
    reply *out = c->out;
    api_scores_query q;
    api_error e;
    if (api_decode_scores_query(rq->query(rq->conn, "since_id"), rq->query(rq->conn, "limit"),
                                rq->query(rq->conn, "model"), rq->query(rq->conn, "source"),
                                rq->query(rq->conn, "anomalies_only"), &q, &e) ||
        api_decode_before_id(rq->query(rq->conn, "before_id"), &q, &e)) {
        error_reply(out, &e);
        return 0;
    }
    api_score_record *rec = malloc((size_t)q.limit * sizeof *rec);
    char err[256];
    int n;
    if (!rec) routes_error(out, 500, "internal", "out of memory");
    else if (a->history ? pghistory_page(a->history, &q, rec, &n, err, sizeof err)
                        : scorelog_page(a->log, &q, rec, &n, err, sizeof err))
        routes_error(out, 503, "log_unavailable", err);
    else ok_reply(out, api_encode_score_page(own_records(a, rec, n), n, q.since_id));
    free(rec);
    return 0;
}

/* GET /v1/scores/{id}. */
static int score_record(const route_ctx *c) {
    app *a = c->a;
    const char *id_text = c->arg;
    reply *out = c->out;
    int64_t id;
    api_score_record rec;
    char err[256];
    int found;
    if (api_parse_log_id(id_text, &id)) {
        routes_error(out, 400, "invalid_request", "a log id is a non-negative integer");
    } else if ((found = find_record(a, id, &rec, err, sizeof err)) < 0) {
        routes_error(out, 503, "log_unavailable", err);
    } else if (!found) {
        routes_error(out, 404, "not_found", "no score with that log id");
    } else {
        ok_reply(out, api_encode_score_record(&rec));
    }
    return 0;
}

/* With history on, the id in this daemon's own log of the history's record id, when this
 * daemon scored it: 0 with *local, else 1 with out answered. */
static int local_id(app *a, int64_t id, int64_t *local, reply *out) {
    api_score_record rec;
    char err[256], msg[320];
    int found;
    if (!a->history) {
        *local = id;
        return 0;
    }
    if ((found = pghistory_get(a->history, id, &rec, err, sizeof err)) < 0) {
        routes_error(out, 503, "log_unavailable", err);
    } else if (!found) {
        routes_error(out, 404, "not_found", "no score with that log id");
    } else if (strcmp(rec.replica_id, a->replica_id)) {
        snprintf(msg, sizeof msg, "the input of that score is held by replica %s, if at all "
                 "(this is %s)", rec.replica_id, a->replica_id);
        routes_error(out, 404, "not_found", msg);
    } else {
        *local = rec.local_id;
        return 0;
    }
    return 1;
}

/* GET /v1/scores/{id}/sample: the input the daemon still holds for a score. */
static int sample_view(const route_ctx *c) {
    app *a = c->a;
    const char *id_text = c->arg;
    reply *out = c->out;
    int64_t id, local;
    api_sample s;
    void *block;
    int found;
    if (api_parse_log_id(id_text, &id)) {
        routes_error(out, 400, "invalid_request", "a log id is a non-negative integer");
    } else if (!a->recent) {
        routes_error(out, 404, "not_found", "no inputs are kept (recent_samples = 0)");
    } else if (local_id(a, id, &local, out)) {
        return 0;
    } else if ((found = samples_get(a->recent, local, &s, &block)) < 0) {
        routes_error(out, 500, "internal", "out of memory");
    } else if (!found) {
        char msg[160];
        snprintf(msg, sizeof msg, "the input of that score is not held: only the last %d "
                 "scored since the daemon started are (recent_samples)", a->recent_capacity);
        routes_error(out, 404, "not_found", msg);
    } else {
        s.log_id = id;           /* as the caller named it: the history's id with history on */
        ok_reply(out, api_encode_sample(&s));
        free(block);
    }
    return 0;
}

/* GET / and GET /dashboard/{file}: the dashboard's embedded files, unless turned off. */
static int dashboard(const route_ctx *c) {
    reply *out = c->out;
    const dashboard_file *f = c->a->dashboard ? dashboard_find(c->arg ? c->arg : "index.html")
                                              : NULL;
    if (!c->a->dashboard) {
        routes_error(out, 404, "not_found", "the dashboard is turned off (dashboard = off)");
        return 0;
    }
    if (!f) {
        routes_error(out, 404, "not_found", "no such dashboard file");
        return 0;
    }
    out->status = 200;
    if ((out->body = malloc(f->len + 1))) memcpy(out->body, f->data, f->len + 1);
    out->content_type = dashboard_type(f->name);
    out->csp = DASHBOARD_CSP;
    return 0;
}

static api_model_ref model_ref(model *m) {
    return (api_model_ref){.name = m->name, .version = m->version, .d = &m->d,
                           .memory_count = model_memory_count(m)};
}

/* GET /v1/models. */
static int model_list(const route_ctx *c) {
    model_set *set = c->set;
    reply *out = c->out;
    api_model_ref *refs = malloc((size_t)set->n * sizeof *refs);
    if (!refs) {
        routes_error(out, 500, "internal", "out of memory");
        return 0;
    }
    for (int i = 0; i < set->n; i++) refs[i] = model_ref(&set->models[i]);
    ok_reply(out, api_encode_model_list(refs, set->n));
    free(refs);
    return 0;
}

/* GET /v1/models/{name}, and with v2 the Open Inference Protocol's metadata. */
static int model_info(const route_ctx *c, int v2) {
    model *m = v2 ? find_v2_model(c) : find_model(c->set, c->arg, c->out);
    if (!m) return 0;
    api_model_ref ref = model_ref(m);
    ok_reply(c->out, v2 ? api_encode_v2_model(&ref, m->dim)
                        : api_encode_model(&ref, m == model_set_find(c->set, NULL)));
    return 0;
}

static int model_info_v1(const route_ctx *c) { return model_info(c, 0); }
static int model_info_v2(const route_ctx *c) { return model_info(c, 1); }

/* POST /v1/models/{name}/memory/reset: the model's stream memory forgets what it holds
 * (after a drift to a new normal, say), answered once the log holds the empty memory, so
 * that a restart does not bring back what was forgotten; a model without one answers
 * 409. */
static int forget_memory(const route_ctx *c) {
    reply *out = c->out;
    model *m = find_model(c->set, c->arg, out);
    char err[256];
    if (!m) return 0;
    if (!m->d.use_memory) {
        routes_error(out, 409, "no_memory", "this model has no stream memory");
        return 0;
    }
    int forgotten = model_memory_reset(m);
    if (scorelog_sync(c->a->log, err, sizeof err)) {
        char msg[400];
        snprintf(msg, sizeof msg, "the memory was reset, but the log could not record it "
                 "(a restart may bring it back): %s", err);
        routes_error(out, 503, "log_unavailable", msg);
        return 0;
    }
    ok_reply(out, api_encode_memory_reset(m->name, m->version, forgotten));
    return 0;
}

/* GET /v1/models/{name}/memory/map on its way to a worker: co-placing the memory is maths,
 * kept off the polling threads as a strip's cutting is. */
typedef struct {
    batch_job job;               /* first member: the batcher hands back &job */
    parked p;
    char source[API_ID_MAX + 1];
} map_job;

/* Free j, then let go of its set and wake its connection to send the reply. */
static void map_done(map_job *j) {
    parked p = j->p;
    free(j);
    unpark(p);
}

/* On a worker: the map (registry.h), answered. */
static void place_memory(batch_job *bj) {
    map_job *j = (map_job *)bj;
    api_memory_map mm;
    char err[256];
    if (model_memory_map(bj->m, j->source, &mm, err, sizeof err)) {
        routes_error(j->p.out, 500, "internal", err);
    } else {
        api_model_ref ref = model_ref(bj->m);
        ok_reply(j->p.out, api_encode_memory_map(&ref, &mm));
    }
    model_memory_map_free(&mm);
    map_done(j);
}

/* GET /v1/models/{name}/memory/map?source=S: the stream memory co-placed on the model's
 * map; a model without one answers 409. 1 when handed to a worker (which holds set). */
static int memory_map(const route_ctx *c) {
    reply *out = c->out;
    model *m = find_model(c->set, c->arg, out);
    if (!m) return 0;
    if (!m->d.use_memory) {
        routes_error(out, 409, "no_memory", "this model has no stream memory");
        return 0;
    }
    map_job *j = calloc(1, sizeof *j);
    api_error e;
    if (!j) {
        routes_error(out, 500, "internal", "out of memory");
        return 0;
    }
    if (api_decode_source(c->rq->query(c->rq->conn, "source"), j->source, &e)) {
        error_reply(out, &e);
        free(j);
        return 0;
    }
    j->job = (batch_job){.m = m, .finish = place_memory};
    park(&j->p, c);
    if (batch_run(c->a->batch, &j->job)) {
        routes_error(out, 503, "shutting_down", "the daemon is shutting down");
        map_done(j);
    }
    return 1;
}

/* GET /v1/models/{name}/map?max_points=N: the reference map, evenly thinned to N, and in
 * context mode the window's current positions. */
static int model_map(const route_ctx *c) {
    reply *out = c->out;
    model *m = find_model(c->set, c->arg, out);
    if (!m) return 0;
    int max_points;
    api_error e;
    if (api_decode_max_points(c->rq->query(c->rq->conn, "max_points"), &max_points, &e)) {
        error_reply(out, &e);
        return 0;
    }
    api_model_ref ref = model_ref(m);
    float *window;
    int n_window;
    if (model_window(m, &window, &n_window)) {
        routes_error(out, 500, "internal", "out of memory");
        return 0;
    }
    ok_reply(out, api_encode_map(&ref, max_points, window, n_window));
    free(window);
    return 0;
}

/* GET /v1/stats: counts, anomaly rates and score quantiles per model and window. */
static int stats(const route_ctx *c) {
    app *a = c->a;
    reply *out = c->out;
    api_model_stats *st;
    int n;
    char err[256];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    if (a->history ? pghistory_summary(a->history, now_ms, &st, &n, err, sizeof err)
                   : scorelog_summary(a->log, now_ms, &st, &n, err, sizeof err)) {
        routes_error(out, 503, "log_unavailable", err);
        return 0;
    }
    ok_reply(out, api_encode_stats(st, n, now_ms));
    free(st);
    return 0;
}

/* Models loaded, log writable, not shutting down: GET /readyz and /v2/health/ready. */
static int is_ready(app *a, model_set *set, const request *rq, char *state, size_t cap) {
    int ok = scorelog_healthy(a->log, state, cap);
    if (rq->draining) snprintf(state, cap, "shutting down");
    return ok && !rq->draining && set->n > 0;
}

/* GET /readyz. */
static int ready(const route_ctx *c) {
    app *a = c->a;
    model_set *set = c->set;
    const request *rq = c->rq;
    reply *out = c->out;
    char state[256];
    int ok = is_ready(a, set, rq, state, sizeof state);
    out->status = ok ? 200 : 503;
    out->body = api_encode_ready(ok, set->n, state);
    return 0;
}

/* GET /v2/health/ready, and GET /v2/models/{name}[/versions/{version}]/ready for one
 * model. */
static int v2_ready(const route_ctx *c) {
    char state[256];
    if (c->arg && !find_v2_model(c)) return 0;
    int ok = is_ready(c->a, c->set, c->rq, state, sizeof state);
    c->out->status = ok ? 200 : 503;
    c->out->body = api_encode_v2_ready(c->arg, ok);
    return 0;
}

/* GET /healthz and GET /v2/health/live: the process answers. */
static int health(const route_ctx *c) {
    ok_reply(c->out, api_encode_health());
    return 0;
}
static int v2_live(const route_ctx *c) {
    ok_reply(c->out, api_encode_v2_live());
    return 0;
}

/* GET /v2: the server metadata, which names the binary tensor data extension. */
static int v2_server(const route_ctx *c) {
    ok_reply(c->out, api_encode_v2_server());
    return 0;
}

/* GET /metrics: Prometheus text. */
static int metrics_page(const route_ctx *c) {
    app *a = c->a;
    model_set *set = c->set;
    reply *out = c->out;
    metrics_gauges g = {.models_loaded = set->n, .log_queue = scorelog_queued(a->log),
                        .score_queue = batch_queued(a->batch)};
    if (a->sink) pgsink_gauges(a->sink, &g);
    if (a->plog) {
        g.payload_log = 1;
        g.payload_log_queue = payload_log_queued(a->plog);
    }
    char *text = metrics_render(a->metrics, &g);
    if (!text) {
        routes_error(out, 500, "internal", "out of memory");
        return 0;
    }
    ok_reply(out, text);
    out->content_type = "text/plain; version=0.0.4; charset=utf-8";
    return 0;
}

/* A route: method, path pattern, its OpenAPI path (the metrics label), its handler,
 * whether it is open without an API key (the health probes, so that orchestrators and
 * load balancers can check the daemon without holding a secret, and the dashboard's
 * files), and whether its body may be binary (application/octet-stream). The first row
 * that matches path and method is the route. */
static const struct route {
    const char *method, *pattern, *label;
    int (*handle)(const route_ctx *c);
    int open, binary;
} ROUTES[] = {
    {"GET", "healthz", "/healthz", health, 1, 0},
    {"GET", "readyz", "/readyz", ready, 1, 0},
    {"GET", "metrics", "/metrics", metrics_page, 0, 0},
    {"POST", "v1/score", "/v1/score", score_json, 0, 0},
    {"POST", "v1/models/*/score", "/v1/models/{name}/score", score_json, 0, 0},
    {"POST", "v1/models/*/strip", "/v1/models/{name}/strip", strip, 0, 0},
    {"POST", "v1/models/*/memory/reset", "/v1/models/{name}/memory/reset", forget_memory, 0, 0},
    {"GET", "v1/models/*/memory/map", "/v1/models/{name}/memory/map", memory_map, 0, 0},
    {"GET", "v1/scores", "/v1/scores", score_page, 0, 0},
    {"GET", "v1/scores/*", "/v1/scores/{id}", score_record, 0, 0},
    {"GET", "v1/stats", "/v1/stats", stats, 0, 0},
    {"GET", "v1/models", "/v1/models", model_list, 0, 0},
    {"GET", "v1/models/*", "/v1/models/{name}", model_info_v1, 0, 0},
    {"GET", "v1/models/*/map", "/v1/models/{name}/map", model_map, 0, 0},
    {"GET", "v2", "/v2", v2_server, 0, 0},
    {"GET", "v2/", "/v2", v2_server, 0, 0},
    {"GET", "v2/health/live", "/v2/health/live", v2_live, 1, 0},
    {"GET", "v2/health/ready", "/v2/health/ready", v2_ready, 1, 0},
    {"GET", "v2/models/*/ready", "/v2/models/{name}/ready", v2_ready, 1, 0},
    {"GET", "v2/models/*/versions/*/ready", "/v2/models/{name}/versions/{version}/ready",
     v2_ready, 1, 0},
    {"GET", "v2/models/*", "/v2/models/{name}", model_info_v2, 0, 0},
    {"GET", "v2/models/*/versions/*", "/v2/models/{name}/versions/{version}", model_info_v2, 0, 0},
    {"POST", "v2/models/*/infer", "/v2/models/{name}/infer", infer_v2, 0, 1},
    {"POST", "v2/models/*/versions/*/infer", "/v2/models/{name}/versions/{version}/infer",
     infer_v2, 0, 1},
    {"GET", "v1/scores/*/sample", "/v1/scores/{id}/sample", sample_view, 0, 0},
    /* The dashboard's files hold no data (the page asks the API, with a key when keys are
     * set), so they are open like the probes: a browser can load the page to ask for it. */
    {"GET", "", "/", dashboard, 1, 0},
    {"GET", "dashboard/*", "/dashboard/{file}", dashboard, 1, 0},
};
#define N_ROUTES (sizeof ROUTES / sizeof ROUTES[0])

const char *routes_label(const char *path) {
    path_parts p;
    split_path(path, &p);
    const char *arg[2];
    for (size_t i = 0; i < N_ROUTES; i++)
        if (match(&p, ROUTES[i].pattern, arg)) return ROUTES[i].label;
    return "unmatched";
}

int routes_handle(app *a, const request *rq, reply *out) {
    path_parts p;
    split_path(rq->path, &p);
    const struct route *found = NULL, *other_method = NULL;
    const char *arg[2] = {NULL, NULL};
    for (size_t i = 0; i < N_ROUTES && !found; i++)
        if (match(&p, ROUTES[i].pattern, arg)) {
            if (!strcmp(rq->method, ROUTES[i].method)) found = &ROUTES[i];
            else other_method = &ROUTES[i];
        }
    out->allow = NULL;
    out->content_type = NULL;
    out->challenge = NULL;
    out->csp = NULL;
    out->len = out->json_len = 0;
    out->v2 = routes_v2(rq->path);
    if (found && !found->open && !auth_allows(a->keys, rq->authorization)) {
        out->challenge = rq->authorization ? "Bearer realm=\"anodmd\", error=\"invalid_token\""
                                           : "Bearer realm=\"anodmd\"";
        routes_error(out, 401, "unauthorized", rq->authorization
                     ? "the API key is not valid"
                     : "an API key is required: Authorization: Bearer KEY");
        return 0;
    }
    if (!found && other_method) {
        out->allow = other_method->method;
        routes_error(out, 405, "method_not_allowed", other_method->method[0] == 'G'
                                                         ? "this route only answers GET"
                                                         : "this route only answers POST");
        return 0;
    }
    if (!found) {
        routes_error(out, 404, "not_found", "no such route");
        return 0;
    }
    if (!strcmp(found->method, "POST") && !body_type_taken(rq->content_type, found->binary)) {
        routes_error(out, 415, "unsupported_media_type", found->binary
                     ? "the body must be sent as Content-Type: application/json or "
                       "application/octet-stream"
                     : "the body must be sent as Content-Type: application/json");
        return 0;
    }
    /* The whole request runs on the models current when it began, even across a reload. */
    model_set *set = registry_acquire(a->reg);
    const route_ctx c = {.a = a, .set = set, .rq = rq, .arg = arg[0], .version = arg[1],
                         .out = out};
    int handed_over = found->handle(&c);
    if (!handed_over) registry_release(a->reg, set);
    return handed_over;
}
