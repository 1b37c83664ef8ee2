/* Every allocation failure, one at a time (SQLite's malloc tests; tests/alloc_fail.h): the
 * bundle loader, the request decoders, the scorer and the daemon's request path are run
 * with their 1st, 2nd, ... allocation failing until a run makes fewer allocations than
 * that, and then again with every allocation from the nth on failing. Each failed run
 * must end in a clear error (a message; a 5xx reply from the daemon) and none may crash
 * or leave an allocation behind; the run that reaches no failure must give exactly what
 * a run outside the test gives. The daemon's path runs in this process: its objects
 * without main() are linked into the runner, as tests/fuzz/fuzz_router.c does for
 * libFuzzer, with a real registry, SQLite log, batcher and recent-samples store made and
 * torn down around each request. */
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc_fail.h"
#include "api.h"
#include "bundle.h"
#include "check.h"
#include "fuzz/fuzz_model.h"
#include "routes.h"
#include "scorer.h"

enum { DIM = FUZZ_MODEL_DIM, N_CAL = FUZZ_MODEL_N_CAL, MAX_RUNS = 5000 };

/* ------------------------------------------------------------------ the loop */

/* What runs under the failures: setup and teardown are tracked but never fail (NULL:
 * none); run is armed and returns 0 (done, the result as expected), -1 (a clear error,
 * its message in err) or -2 (anything else: a wrong result, an error of the wrong kind,
 * explained in err). absorb: a failure may leave the result as it would have been (the
 * daemon's metrics and its store of recent inputs are best effort). */
typedef struct {
    const char *what;
    int (*setup)(void *ctx, char *err, size_t errlen);
    int (*run)(void *ctx, char *err, size_t errlen);
    void (*teardown)(void *ctx);
    int absorb;
} alloc_op;

/* op under the nth allocation failing (and with persist every later one), for n = 1, 2,
 * ... until a run does not reach n. */
static void fail_each_allocation(const alloc_op *op, void *ctx, int persist) {
    long errors = 0, n = 1;
    const int quiet = !getenv("ANODM_ALLOC_FAIL_TRACE");
    for (;; n++) {
        char err[512] = "", sites[512];
        alloc_track_begin();
        int rc = op->setup ? op->setup(ctx, err, sizeof err) : 0;
        if (rc) {
            alloc_track_end(sites, sizeof sites);
            check_fail(__FILE__, __LINE__, "%s: setup: %s", op->what, err);
            return;
        }
        /* What the daemon says on stderr of each failure (as it would to its journal)
         * would bury the runner's output; ANODM_ALLOC_FAIL_TRACE shows it with the stacks. */
        int saved = quiet ? dup(2) : -1, null = quiet ? open("/dev/null", O_WRONLY) : -1;
        if (saved >= 0 && null >= 0) dup2(null, 2);
        alloc_fail_arm(n, persist);
        rc = op->run(ctx, err, sizeof err);
        int hit = alloc_fail_disarm();
        if (op->teardown) op->teardown(ctx);
        long live = alloc_track_end(sites, sizeof sites);
        if (saved >= 0 && null >= 0) dup2(saved, 2);
        if (saved >= 0) close(saved);
        if (null >= 0) close(null);
        const char *mode = persist ? "from allocation" : "allocation";
        CHECK_MSG(live == 0, "%s, %s %ld failing%s: %ld allocations not freed (%s)", op->what,
                  mode, n, hit ? "" : " (not reached)", live, sites);
        if (!hit) {
            CHECK_MSG(rc == 0, "%s, no allocation failing: %s", op->what, err);
            break;
        }
        CHECK_MSG(rc == -1 || (rc == 0 && op->absorb),
                  "%s, %s %ld failing: %s", op->what, mode, n,
                  rc == 0 ? "went on as if it had not failed" : err);
        CHECK_MSG(rc != -1 || err[0], "%s, %s %ld failing: an error without a message",
                  op->what, mode, n);
        errors += rc == -1;
        if (n == MAX_RUNS) {
            check_fail(__FILE__, __LINE__, "%s: more than %d allocations", op->what, MAX_RUNS);
            break;
        }
    }
    /* A run that made no allocation, or a runner linked without the wrapper, tests
     * nothing. */
    CHECK_MSG(n > 2 && errors > 0, "%s: %ld allocations, %ld failures reported", op->what,
              n - 1, errors);
}

/* Both modes: the nth alone failing, and everything from the nth on. */
static void fail_each(const alloc_op *op, void *ctx) {
    fail_each_allocation(op, ctx, 0);
    fail_each_allocation(op, ctx, 1);
}

/* fuzz_model.h's detector with what makes every allocation of the loader and the scorer
 * happen: a stream memory (fisher fusion: the bundle carries its calibration stream), an
 * input scaling, and with context the sliding window and z latents. 0, or -1 reported. */
static int make_detector(detector *d, int context) {
    char err[256];
    if (fuzz_model_make(d, context ? PLACE_CONTEXT : PLACE_SINGLE, err, sizeof err)) {
        check_fail(__FILE__, __LINE__, "%s", err);
        return -1;
    }
    float noise[20 * DIM];
    for (int i = 0; i < 20 * DIM; i++) noise[i] = (float)((i * 37) % 101) / 50.0f;
    d->use_memory = 1;
    memory_options_default(&d->memory);
    d->memory.capacity = 6;
    d->memory.k = 2;
    d->memory.k_min = 1;
    d->mem = (term_stats){0.0, 1.0};
    d->fusion = FUSION_FISHER;
    d->cal_base = malloc(N_CAL * sizeof *d->cal_base);
    d->cal_memory = malloc(N_CAL * sizeof *d->cal_memory);
    if (context) d->input = LATENT_Z;
    if (!d->cal_base || !d->cal_memory ||
        scaling_fit(&d->scale, SCALE_STANDARD, noise, 20, DIM, err, sizeof err)) {
        check_fail(__FILE__, __LINE__, "%s", d->cal_base && d->cal_memory ? err : "no memory");
        detector_free(d);
        return -1;
    }
    for (int i = 0; i < N_CAL; i++) d->cal_base[i] = d->cal_memory[i] = (float)i - 2.0f;
    return 0;
}

/* n samples of DIM values, varied. */
static void samples(float *x, int n) {
    for (int i = 0; i < n * DIM; i++) x[i] = (float)((i * 7) % 23) / 10.0f;
}

/* ------------------------------------------------------------------ the bundle */

typedef struct {
    char path[512];
    uint8_t *file;
    size_t len;
} bundle_case;

/* Load the file, then encode what was loaded: the same bytes. */
static int run_bundle(void *ctx, char *err, size_t errlen) {
    const bundle_case *c = ctx;
    detector d;
    uint8_t *buf;
    size_t len;
    if (bundle_load(c->path, &d, err, errlen)) return -1;
    int rc = bundle_encode(&d, &buf, &len, err, errlen);
    if (rc == 0 && (len != c->len || memcmp(buf, c->file, len))) {
        snprintf(err, errlen, "the loaded bundle encodes to other bytes");
        rc = -2;
    }
    if (rc != -1) free(buf);
    detector_free(&d);
    return rc;
}

TEST(alloc_fail_bundle_load) {
    bundle_case c;
    detector d;
    char err[512];
    if (make_detector(&d, 0)) return;
    snprintf(c.path, sizeof c.path, "%s/alloc-fail.anodm", test_tmpdir());
    int rc = bundle_encode(&d, &c.file, &c.len, err, sizeof err);
    if (rc == 0) rc = bundle_write_file(c.path, c.file, c.len, err, sizeof err);
    detector_free(&d);
    CHECK_MSG(rc == 0, "%s", err);
    if (rc == 0)
        fail_each(&(alloc_op){.what = "bundle_load + bundle_encode", .run = run_bundle}, &c);
    free(c.file);
    unlink(c.path);
}

/* ------------------------------------------------------------------ the decoders */

typedef struct {
    const char *body;
    int kind;                    /* 0: v1, both decoders; 1: v2 infer; 2: a strip */
    api_score_request want;
    api_strip_request want_strip;
} decode_case;

/* A refusal for want of memory is a 5xx; any other refusal of a valid body is wrong. */
static int refusal(const api_error *e, char *err, size_t errlen) {
    snprintf(err, errlen, "%d %s: %s", e->status, e->code, e->message);
    return e->status >= 500 ? -1 : -2;
}

static int same_request(const api_score_request *a, const api_score_request *b) {
    return a->n == b->n && a->dim == b->dim && a->explain == b->explain &&
           !strcmp(a->id, b->id) && !strcmp(a->source, b->source) &&
           !memcmp(a->x, b->x, (size_t)a->n * a->dim * sizeof *a->x);
}

static int run_decode(void *ctx, char *err, size_t errlen) {
    decode_case *c = ctx;
    api_error e;
    size_t len = strlen(c->body);
    if (c->kind == 2) {
        api_strip_request s;
        if (api_decode_strip(c->body, len, &s, &e)) return refusal(&e, err, errlen);
        int same = s.n == c->want_strip.n && s.fs == c->want_strip.fs &&
                   !memcmp(s.signal, c->want_strip.signal, s.n * sizeof *s.signal);
        api_strip_request_free(&s);
        if (!same) snprintf(err, errlen, "the strip decodes to something else");
        return same ? 0 : -2;
    }
    api_score_request r[2];
    api_v2_outputs outs;
    int n = c->kind == 1 ? 1 : 2;
    if (c->kind == 1 ? api_decode_v2_infer(c->body, len, NULL, DIM, 8, &r[0], &outs, &e)
                     : api_decode_score(c->body, len, DIM, 8, &r[0], &e))
        return refusal(&e, err, errlen);
    if (n == 2 && api_decode_score_json(c->body, len, DIM, 8, &r[1], &e)) {
        api_score_request_free(&r[0]);
        return refusal(&e, err, errlen);
    }
    int same = 1;
    for (int i = 0; i < n; i++) {
        same &= same_request(&r[i], &c->want);
        api_score_request_free(&r[i]);
    }
    if (!same) snprintf(err, errlen, "the body decodes to something else");
    return same ? 0 : -2;
}

TEST(alloc_fail_decode_requests) {
    static const char *const bodies[] = {
        "{\"samples\": [[0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1,1.1,1.2,1.3,1.4,1.5],"
        " [1,1,1,1,1,1,1,1,2,2,2,2,2,2,2,2]], \"id\": \"r1\", \"source\": \"cam-1\", "
        "\"explain\": true}",
        "{\"inputs\": [{\"name\": \"x\", \"shape\": [2, 16], \"datatype\": \"FP32\", \"data\": "
        "[[0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1,1.1,1.2,1.3,1.4,1.5],"
        " [1,1,1,1,1,1,1,1,2,2,2,2,2,2,2,2]]}], \"id\": \"r2\"}",
        "{\"signal\": [0.1, 0.2, 0.3, 0.2, 0.1, 0.0], \"fs\": 250, \"source\": \"lead-2\"}",
    };
    for (int kind = 0; kind < 3; kind++) {
        decode_case c = {.body = bodies[kind], .kind = kind};
        api_error e;
        api_v2_outputs outs;
        size_t len = strlen(c.body);
        int rc = kind == 2   ? api_decode_strip(c.body, len, &c.want_strip, &e)
                 : kind == 1 ? api_decode_v2_infer(c.body, len, NULL, DIM, 8, &c.want, &outs, &e)
                             : api_decode_score_json(c.body, len, DIM, 8, &c.want, &e);
        CHECK_MSG(rc == 0, "%s: %s", c.body, e.message);
        if (rc) continue;
        char what[64];
        snprintf(what, sizeof what, "decoding %s", kind == 2 ? "a strip" : kind ? "a v2 infer"
                                                                              : "a v1 score");
        fail_each(&(alloc_op){.what = what, .run = run_decode}, &c);
        api_score_request_free(&c.want);
        api_strip_request_free(&c.want_strip);
    }
}

/* ------------------------------------------------------------------ the scorer */

enum { BATCH = 3, ROUNDS = 3 };

typedef struct {
    const detector *d;
    int per_source;              /* one memory per source, at most 2: the third evicts one */
    float x[BATCH * DIM];
    detector_result want[BATCH];
    int have_want;
} scorer_case;

/* Create a scorer, score ROUNDS batches (from sources a, b, c), free it; the last batch's
 * results must be those of a run without failures. */
static int run_scorer(void *ctx, char *err, size_t errlen) {
    scorer_case *c = ctx;
    detector_result res[BATCH];
    float rec[BATCH * DIM], dist[BATCH * 2];
    int32_t nn[BATCH * 2];
    scorer *s = scorer_create(c->d, BATCH, err, errlen);
    if (!s) return -1;
    int rc = c->per_source ? scorer_memory_per_source(s, 2, err, errlen) : 0;
    for (int r = 0; r < ROUNDS && !rc; r++) {
        char source[2] = {(char)('a' + r), 0};
        rc = scorer_use_source(s, source, NULL, err, errlen) < 0 ? -1 : 0;
        if (!rc) rc = scorer_score(s, c->x, BATCH, res, rec, nn, dist, err, errlen);
    }
    scorer_free(s);
    if (rc) return rc == -1 ? -1 : -2;
    if (!c->have_want) {
        memcpy(c->want, res, sizeof res);
        c->have_want = 1;
    }
    if (memcmp(res, c->want, sizeof res)) {
        snprintf(err, errlen, "other scores than without failures");
        return -2;
    }
    return 0;
}

TEST(alloc_fail_scorer) {
    static const struct { int context, per_source; const char *what; } cases[] = {
        {0, 0, "scorer, single mode, memory"},
        {0, 1, "scorer, single mode, a memory per source"},
        {1, 0, "scorer, context mode, z latents"},
    };
    for (int i = 0; i < 3; i++) {
        detector d;
        if (make_detector(&d, cases[i].context)) return;
        scorer_case c = {.d = &d, .per_source = cases[i].per_source};
        samples(c.x, BATCH);
        char err[256];
        CHECK_MSG(run_scorer(&c, err, sizeof err) == 0, "%s: %s", cases[i].what, err);
        fail_each(&(alloc_op){.what = cases[i].what, .run = run_scorer}, &c);
        detector_free(&d);
    }
}

/* ------------------------------------------------------------------ the daemon */

typedef struct {
    char spec[600], db[512];
    int memory_sources, answer_first;
    const char *method, *path, *body;
    char *want;                  /* the reply without failures */
    app a;
    registry reg;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int woken;
} route_case;

static void park(void *conn) { (void)conn; }

static void wake(void *conn) {
    route_case *c = conn;
    pthread_mutex_lock(&c->lock);
    c->woken = 1;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

static const char *no_query(void *conn, const char *key) {
    (void)conn, (void)key;
    return NULL;
}

static void remove_db(const char *db) {
    char side[540];
    unlink(db);
    snprintf(side, sizeof side, "%s-wal", db);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", db);
    unlink(side);
}

static void app_down(void *ctx) {
    route_case *c = ctx;
    if (c->a.batch) batch_free(c->a.batch);
    if (c->a.log) scorelog_close(c->a.log);
    samples_free(c->a.recent);
    registry_free(&c->reg);
    metrics_free(c->a.metrics);
    remove_db(c->db);
    memset(&c->a, 0, sizeof c->a);
    memset(&c->reg, 0, sizeof c->reg);
}

/* A fresh daemon: the model, an empty log, one worker, a store of 4 recent inputs. */
static int app_up(void *ctx, char *err, size_t errlen) {
    route_case *c = ctx;
    char *specs[1] = {c->spec};
    remove_db(c->db);
    c->a = (app){.max_batch = 8, .dashboard = 1, .recent_capacity = 4,
                 .answer_first = c->answer_first};
    snprintf(err, errlen, "out of memory");
    if (!(c->a.metrics = metrics_create()) ||
        registry_load(&c->reg, specs, 1, 8, 2, c->memory_sources, err, errlen) ||
        !(c->a.log = scorelog_open(c->db, c->a.metrics, err, errlen)) ||
        !(c->a.batch = batch_start(1, 0, c->a.metrics, err, errlen)) ||
        !(c->a.recent = samples_create(c->a.recent_capacity))) {
        app_down(c);
        return -1;
    }
    c->a.reg = &c->reg;
    return 0;
}

/* One request through routes_handle, waited for as the HTTP layer would. */
static int run_route(void *ctx, char *err, size_t errlen) {
    route_case *c = ctx;
    request rq = {.method = c->method, .path = c->path, .body = c->body,
                  .len = strlen(c->body), .query = no_query, .header = no_query, .park = park,
                  .wake = wake,
                  .conn = c, .content_type = "application/json"};
    reply out = {0};
    c->woken = 0;
    if (routes_handle(&c->a, &rq, &out) == 1) {
        pthread_mutex_lock(&c->lock);
        while (!c->woken) pthread_cond_wait(&c->cond, &c->lock);
        pthread_mutex_unlock(&c->lock);
    }
    int rc;
    if (out.status == 200 && out.body && (!c->want || !strcmp(out.body, c->want))) {
        rc = 0;
    } else if (!out.body || (out.status >= 500 && strstr(out.body, "\"error\""))) {
        /* No body: the HTTP layer answers its fixed 500 "out of memory" (routes.h). */
        snprintf(err, errlen, "%d %s", out.status, out.body ? out.body : "(no body)");
        rc = -1;
    } else {
        snprintf(err, errlen, "%d %s", out.status, out.body ? out.body : "(no body)");
        rc = -2;
    }
    if (rc == 0 && !c->want) c->want = out.body;
    else free(out.body);
    return rc;
}

/* The daemon's start, then its end: the models, the log, the batcher, the store. */
static int run_start(void *ctx, char *err, size_t errlen) {
    if (app_up(ctx, err, errlen)) return -1;
    app_down(ctx);
    return 0;
}

TEST(alloc_fail_daemon_score) {
    static const char sample[] = "[0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1,1.1,1.2,1.3,1.4,1.5]";
    char single[200], batch[400], v2[400];
    snprintf(single, sizeof single, "{\"sample\": %s, \"id\": \"r1\"}", sample);
    /* An escaped string: the fast decoder leaves the body to jansson's. */
    snprintf(batch, sizeof batch, "{\"samples\": [%s, [1,1,1,1,1,1,1,1,2,2,2,2,2,2,2,2], %s], "
             "\"source\": \"cam\\u002d1\", \"explain\": true}", sample, sample);
    snprintf(v2, sizeof v2, "{\"inputs\": [{\"name\": \"x\", \"shape\": [2, 16], \"datatype\": "
             "\"FP32\", \"data\": [%s, %s]}]}", sample, sample);
    static const struct {
        int context, memory_sources, answer_first;
        const char *method, *path, *what;
    } cases[] = {
        {0, 0, 0, "POST", "/v1/score", "POST /v1/score"},
        {0, 2, 0, "POST", "/v1/models/tiny/score",
         "POST /v1/models/tiny/score, explained, a memory per source"},
        {1, 0, 1, "POST", "/v2/models/tiny/infer",
         "POST /v2/models/tiny/infer, context mode, answer before commit"},
    };
    const char *bodies[] = {single, batch, v2};
    char path[512], err[512], dir[64];
    /* A log on tmpfs when there is one: each run makes a new one, synchronous = FULL. */
    snprintf(dir, sizeof dir, "%s/anodm-alloc-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(dir)) SKIP("cannot make a directory for the log under %s", dir);
    snprintf(path, sizeof path, "%s/tiny.anodm", test_tmpdir());
    for (int i = 0; i < 3; i++) {
        detector d;
        if (make_detector(&d, cases[i].context)) break;
        int rc = bundle_save(path, &d, err, sizeof err);
        detector_free(&d);
        CHECK_MSG(rc == 0, "%s", err);
        if (rc) break;
        route_case c = {.memory_sources = cases[i].memory_sources,
                        .answer_first = cases[i].answer_first, .method = cases[i].method,
                        .path = cases[i].path, .body = bodies[i]};
        snprintf(c.spec, sizeof c.spec, "tiny=%s", path);
        snprintf(c.db, sizeof c.db, "%s/scores.db", dir);
        pthread_mutex_init(&c.lock, NULL);
        pthread_cond_init(&c.cond, NULL);
        const alloc_op op = {.what = cases[i].what, .setup = app_up, .run = run_route,
                             .teardown = app_down, .absorb = 1};
        /* The reply without failures, then every failure against it. */
        if (app_up(&c, err, sizeof err) == 0) {
            CHECK_MSG(run_route(&c, err, sizeof err) == 0, "%s: %s", cases[i].what, err);
            app_down(&c);
        } else {
            check_fail(__FILE__, __LINE__, "%s: %s", cases[i].what, err);
        }
        if (c.want) fail_each(&op, &c);
        char start[160];
        snprintf(start, sizeof start, "the daemon's start for %s", cases[i].what);
        fail_each(&(alloc_op){.what = start, .run = run_start}, &c);
        free(c.want);
        pthread_cond_destroy(&c.cond);
        pthread_mutex_destroy(&c.lock);
        unlink(path);
    }
    rmdir(dir);
}
