/* The stream protocol (see stream.h). */
#include "stream.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "scorer.h"

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* n values, ascending, as floats (a malloc'd copy; NULL if out of memory). */
static float *ascending(const double *v, int n) {
    float *out = malloc((size_t)(n ? n : 1) * sizeof *out);
    if (!out) return NULL;
    for (int i = 0; i < n; i++) out[i] = (float)v[i];
    qsort(out, (size_t)n, sizeof *out, cmp_float);
    return out;
}

/* The replay's copy of a detector: a memory (the default settings if it had none), and
 * the base score as its score, since the callers fuse every way themselves. */
static void with_memory(detector *d) {
    if (!d->use_memory) memory_options_default(&d->memory);
    d->use_memory = 1;
    d->fusion = FUSION_BASE;
}

void stream_order_free(stream_order *o) {
    free(o->at);
    free(o->source);
    memset(o, 0, sizeof *o);
}

int stream_order_shuffled(stream_order *o, size_t n, uint64_t seed, char *err, size_t errlen) {
    memset(o, 0, sizeof *o);
    if (!(o->at = malloc((n ? n : 1) * sizeof *o->at))) {
        snprintf(err, errlen, "stream: out of memory for the order of %zu samples", n);
        return -1;
    }
    rng_t r;
    rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) o->at[i] = i;
    rng_shuffle(&r, o->at, n);
    o->n = n;
    return 0;
}

/* A sample's place in stream_order_by_source: its rank within its source, and its
 * source's first sample (which orders the sources). */
typedef struct {
    size_t rank, first, at;
    int32_t source;
} by_source;

static int cmp_source_then_index(const void *a, const void *b) {
    const by_source *x = a, *y = b;
    if (x->source != y->source) return (x->source > y->source) - (x->source < y->source);
    return (x->at > y->at) - (x->at < y->at);
}

static int cmp_rank_then_first(const void *a, const void *b) {
    const by_source *x = a, *y = b;
    if (x->rank != y->rank) return (x->rank > y->rank) - (x->rank < y->rank);
    return (x->first > y->first) - (x->first < y->first);
}

int stream_order_by_source(stream_order *o, const int32_t *source, size_t n, char *err,
                           size_t errlen) {
    memset(o, 0, sizeof *o);
    by_source *t = malloc((n ? n : 1) * sizeof *t);
    o->at = malloc((n ? n : 1) * sizeof *o->at);
    o->source = malloc((n ? n : 1) * sizeof *o->source);
    if (!t || !o->at || !o->source) {
        free(t);
        stream_order_free(o);
        snprintf(err, errlen, "stream: out of memory for the order of %zu samples", n);
        return -1;
    }
    for (size_t i = 0; i < n; i++) t[i] = (by_source){0, 0, i, source[i]};
    qsort(t, n, sizeof *t, cmp_source_then_index);
    for (size_t i = 0; i < n; i++) {
        const int same = i > 0 && t[i].source == t[i - 1].source;
        t[i].rank = same ? t[i - 1].rank + 1 : 0;
        t[i].first = same ? t[i - 1].first : t[i].at;
        o->n_sources += !same;
    }
    qsort(t, n, sizeof *t, cmp_rank_then_first);
    for (size_t i = 0; i < n; i++) {
        o->at[i] = t[i].at;
        o->source[i] = t[i].source;
    }
    o->n = n;
    free(t);
    return 0;
}

/* Score the samples of x in `order`, one at a time, through a fresh scorer of dd (which
 * has its memory on; one memory per source when the order has sources): each sample's
 * result into res (sample order). */
static int replay(const detector *dd, const float *x, const stream_order *order,
                  detector_result *res, char *err, size_t errlen) {
    const size_t dim = shape_size(dd->vae.arch.in), n = order->n;
    uint8_t *seen = calloc(n ? n : 1, 1);
    scorer *s = scorer_create(dd, 1, err, errlen);
    int rc = -1;
    if (!seen || !s) {
        if (!seen) snprintf(err, errlen, "stream: out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        if (order->at[i] >= n || seen[order->at[i]]) {
            snprintf(err, errlen, "stream: the order is not a permutation of its %zu samples", n);
            goto done;
        }
        seen[order->at[i]] = 1;
    }
    if (order->source) {
        if (order->n_sources > SCORER_MAX_SOURCES) {
            snprintf(err, errlen, "stream: %zu sources, at most %d", order->n_sources,
                     SCORER_MAX_SOURCES);
            goto done;
        }
        if (scorer_memory_per_source(s, order->n_sources ? (int)order->n_sources : 1, err,
                                     errlen) != 0)
            goto done;
    }
    for (size_t i = 0; i < n; i++) {
        size_t at = order->at[i];
        if (order->source) {
            char key[16];
            snprintf(key, sizeof key, "%d", (int)order->source[i]);
            if (scorer_use_source(s, key, NULL, err, errlen) < 0) goto done;
        }
        int src = scorer_terms(s, x + at * dim, 1, &res[at], NULL, NULL, NULL, NULL, err, errlen);
        if (src == SCORER_NOT_FINITE) {
            res[at].d_re = res[at].d_latent = res[at].d_memory = INFINITY;
        } else if (src != 0) {
            goto done;
        }
        detector_fuse(dd, &res[at]);
    }
    rc = 0;
done:
    scorer_free(s);
    free(seen);
    return rc;
}

int stream_normals(const float *cal, size_t n_cal, const float *train, size_t n_train,
                   size_t dim, const int32_t *ref_id, int n_ref, size_t max, uint64_t seed,
                   float **out, size_t *n_out, char *err, size_t errlen) {
    uint8_t *is_ref = calloc(n_train ? n_train : 1, 1);
    size_t *pick = malloc((n_cal + n_train + 1) * sizeof *pick), n = 0;
    *out = NULL;
    *n_out = 0;
    if (!is_ref || !pick) goto oom;
    for (int i = 0; i < n_ref; i++)
        if (ref_id[i] >= 0 && (size_t)ref_id[i] < n_train) is_ref[ref_id[i]] = 1;
    for (size_t i = 0; i < n_cal; i++) pick[n++] = i;
    for (size_t i = 0; i < n_train; i++)
        if (!is_ref[i]) pick[n++] = n_cal + i;
    rng_t r;
    rng_seed(&r, seed);
    rng_shuffle(&r, pick, n);
    if (n > max) n = max;
    if (!(*out = malloc((n ? n : 1) * dim * sizeof **out))) goto oom;
    for (size_t j = 0; j < n; j++) {
        const float *row = pick[j] < n_cal ? cal + pick[j] * dim : train + (pick[j] - n_cal) * dim;
        memcpy(*out + j * dim, row, dim * sizeof **out);
    }
    *n_out = n;
    free(is_ref);
    free(pick);
    return 0;
oom:
    free(is_ref);
    free(pick);
    snprintf(err, errlen, "stream: out of memory for the calibration stream");
    return -1;
}

void stream_calibration_free(stream_calibration *c) {
    free(c->base);
    free(c->memory);
    for (int f = 0; f < FUSION_N; f++) free(c->fused[f]);
    memset(c, 0, sizeof *c);
}

int stream_calibrate(const detector *d, const float *cal, const stream_order *order, double q,
                     stream_calibration *c, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    detector dd = *d;
    with_memory(&dd);
    dd.mem = (term_stats){0.0, 1.0};
    const int n_cal = (int)order->n;
    detector_result *res = malloc((size_t)(n_cal ? n_cal : 1) * sizeof *res);
    double *v = malloc((size_t)(n_cal ? n_cal : 1) * sizeof *v);
    double *z = malloc((size_t)(n_cal ? n_cal : 1) * sizeof *z);
    double *fused = malloc((size_t)(n_cal ? n_cal : 1) * sizeof *fused);
    c->n = n_cal;
    int rc = -1;
    if (!res || !v || !z || !fused) goto oom;
    if (replay(&dd, cal, order, res, err, errlen) != 0) goto done;
    for (int i = 0; i < n_cal; i++) v[i] = res[i].d_memory;
    c->mem = score_term_stats(v, (size_t)n_cal);
    for (int i = 0; i < n_cal; i++) {
        v[i] = detector_base_score(&dd, &res[i]);
        z[i] = score_standardise(res[i].d_memory, c->mem);
    }
    if (!(c->base = ascending(v, n_cal)) || !(c->memory = ascending(z, n_cal))) goto oom;
    for (int f = 0; f < FUSION_N; f++) {
        for (int i = 0; i < n_cal; i++)
            fused[i] = score_fuse((score_fusion)f, v[i], z[i], c->base, c->memory, (size_t)n_cal);
        if (!(c->fused[f] = ascending(fused, n_cal))) goto oom;
        c->threshold[f] = score_quantile(fused, (size_t)n_cal, q);
    }
    rc = 0;
    goto done;
oom:
    snprintf(err, errlen, "stream: out of memory for %d calibration samples", n_cal);
done:
    if (rc != 0) stream_calibration_free(c);
    free(res);
    free(v);
    free(z);
    free(fused);
    return rc;
}

int stream_replay(const detector *d, const float *x, const stream_order *order,
                  detector_result *res, char *err, size_t errlen) {
    detector dd = *d;
    with_memory(&dd);
    return replay(&dd, x, order, res, err, errlen);
}

void stream_scores(const detector *d, const stream_calibration *c, const detector_result *res,
                   size_t n, double *scores[FUSION_N]) {
    detector dd = *d;
    with_memory(&dd);
    for (size_t i = 0; i < n; i++) {
        const double base = detector_base_score(&dd, &res[i]);
        const double z = score_standardise(res[i].d_memory, c->mem);
        for (int f = 0; f < FUSION_N; f++)
            scores[f][i] = score_fuse((score_fusion)f, base, z, c->base, c->memory, (size_t)c->n);
    }
}
