/* Building and calibrating a detector. */
#include "pipeline.h"
#include "clock.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errmsg.h"
#include "scorer.h"
#include "stream.h"

#define ENCODE_BATCH 256

void build_opts_set_mode(build_opts *o, place_mode mode) {
    tsne_place_options lib;
    tsne_place_options_default(&lib);
    o->mode = mode;
    o->place.n_iter = lib.n_iter;
    o->place.tol = lib.tol;
    /* Single placement stops once the point is still, after at most 250 steps: measured
     * 2.5x closer to the converged placement on average than 100 fixed steps, at their
     * speed or better (docs/TSNE.md, "Placement with the neighbour index"). The bundle
     * keeps both (format 6), so the daemon places as calibration did. Co-placement
     * ignores tol: context mode keeps the library's fixed steps. */
    if (mode == PLACE_SINGLE) {
        o->place.n_iter = 250;
        o->place.tol = 0.01;
    }
}

void build_opts_default(build_opts *o) {
    memset(o, 0, sizeof *o);
    o->train = train_defaults();
    o->n_ref = 10000;
    o->cal_frac = 0.1;
    o->quantile = 0.99;
    tsne_options_default(&o->tsne);
    tsne_place_options_default(&o->place);
    build_opts_set_mode(o, PLACE_SINGLE);
    o->window = 2000;
    o->k = 1;
    o->alpha = 0.5;
    o->term = TERM_LATENT;
    o->use_memory = 1;
    memory_options_default(&o->memory);
    o->fusion = FUSION_FISHER;
    o->input = LATENT_MU;
    o->cal_batch = 32;
}

int build_opts_check(const build_opts *o, size_t n_train, char *err, size_t errlen) {
    if (train_opts_check(&o->train, err, errlen)) {
        err_prefix(err, errlen, "training");
        return -1;
    }
    if (o->n_ref < 1 || o->n_ref > DETECTOR_MAX_REF)
        return err_fail(err, errlen, "n_ref %d outside 1..%d", o->n_ref, DETECTOR_MAX_REF);
    if (!(o->cal_frac > 0 && o->cal_frac < 1))
        return err_fail(err, errlen, "cal_frac %g is not in (0, 1)", o->cal_frac);
    if (!(o->quantile > 0 && o->quantile < 1))
        return err_fail(err, errlen, "quantile %g is not in (0, 1)", o->quantile);
    if (o->scale != SCALE_NONE && o->scale != SCALE_STANDARD && o->scale != SCALE_MINMAX)
        return err_fail(err, errlen, "scale %d is not none, standard or minmax", (int)o->scale);
    if (o->cal_batch < 1)
        return err_fail(err, errlen, "cal_batch %d: at least 1", o->cal_batch);
    const int n_ref = build_ref_count(o, n_train);
    if (tsne_options_check(&o->tsne, n_ref, err, errlen)) {
        char what[64];
        snprintf(what, sizeof what, "map of %d reference points", n_ref);
        err_prefix(err, errlen, what);
        return -1;
    }
    /* The detector it will be, as far as options make it. */
    detector probe = {.n_ref = n_ref, .mode = o->mode, .place = o->place, .window = o->window,
                      .k = o->k, .alpha = o->alpha, .term = o->term, .input = o->input,
                      .use_memory = o->use_memory, .memory = o->memory, .fusion = o->fusion};
    return detector_check_scoring(&probe, err, errlen);
}

int build_ref_count(const build_opts *o, size_t n_train) {
    size_t cap = o->use_memory && n_train >= 2 ? n_train / 2 : n_train;
    return n_train && cap < (size_t)o->n_ref ? (int)cap : o->n_ref;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

int detector_calibrate(detector *d, const float *x, size_t n, int batch, double quantile,
                       char *err, size_t errlen) {
    const size_t dim = shape_size(d->vae.arch.in);
    if (n < 2 || batch < 1 || !(quantile > 0 && quantile < 1)) {
        snprintf(err, errlen, "calibration needs at least 2 samples, a batch size and a "
                 "quantile in (0, 1)");
        return -1;
    }
    detector_result *res = malloc(n * sizeof *res);
    double *re = malloc(n * sizeof *re), *map = malloc(n * sizeof *map),
           *latent = malloc(n * sizeof *latent), *fused = malloc(n * sizeof *fused);
    float *cal = malloc(n * sizeof *cal);
    scorer *s = NULL;
    int rc = -1;
    if (!res || !re || !map || !latent || !fused || !cal) {
        snprintf(err, errlen, "out of memory for calibration");
        goto done;
    }
    if (!(s = scorer_create(d, batch, err, errlen))) goto done;
    for (size_t i = 0; i < n; i += (size_t)batch) {
        int B = (int)(n - i < (size_t)batch ? n - i : (size_t)batch);
        if (scorer_terms(s, x + i * dim, B, res + i, NULL, NULL, NULL, NULL, err, errlen)) goto done;
    }
    for (size_t i = 0; i < n; i++) {
        re[i] = res[i].d_re;
        map[i] = res[i].d_map;
        latent[i] = res[i].d_latent;
    }
    d->re = score_term_stats(re, n);
    d->map = score_term_stats(map, n);
    d->latent = score_term_stats(latent, n);
    for (size_t i = 0; i < n; i++) {
        detector_fuse(d, &res[i]);
        fused[i] = res[i].score;
        cal[i] = (float)fused[i];
    }
    qsort(cal, n, sizeof *cal, cmp_float);
    d->quantile = quantile;
    d->threshold = score_quantile(fused, n, quantile);
    free(d->cal_scores);
    d->cal_scores = cal;
    cal = NULL;
    d->n_cal = (int)n;
    rc = 0;
done:
    scorer_free(s);
    free(res);
    free(re);
    free(map);
    free(latent);
    free(fused);
    free(cal);
    return rc;
}

/* With a memory, the threshold and the p-values come from a stream of normals through it
 * (stream.h): the held-out normals and the training normals that are not reference
 * points, so that the memory fills as traffic will fill it. */
static int calibrate_stream(detector *d, const dataset *cal, const dataset *train,
                            const build_opts *o, char *err, size_t errlen) {
    float *x = NULL;
    size_t n = 0;
    stream_calibration c;
    stream_order order;
    if (stream_normals(cal->x, cal->n, train->x, train->n, cal->dim, d->ref_id, d->n_ref,
                       STREAM_NORMALS_MAX, o->train.seed ^ 0x5EEDULL, &x, &n, err, errlen) != 0)
        return -1;
    d->use_memory = 1;
    d->memory = o->memory;
    d->fusion = o->fusion;
    int rc = stream_order_shuffled(&order, n, o->train.seed ^ 0xCA1ULL, err, errlen);
    if (rc == 0) rc = stream_calibrate(d, x, &order, o->quantile, &c, err, errlen);
    stream_order_free(&order);
    free(x);
    if (rc != 0) return -1;
    d->mem = c.mem;
    d->threshold = c.threshold[d->fusion];
    free(d->cal_scores);
    d->cal_scores = c.fused[d->fusion];
    c.fused[d->fusion] = NULL;
    d->n_cal = c.n;
    if (d->fusion == FUSION_FISHER) {
        d->cal_base = c.base;
        d->cal_memory = c.memory;
        c.base = c.memory = NULL;
    }
    stream_calibration_free(&c);
    return 0;
}

void build_say(build_stage_fn stage, void *ctx, const char *name, const char *fmt, ...) {
    char buf[256];
    va_list ap;
    if (!stage) return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    stage(ctx, name, buf);
}

int detector_build(detector *d, const vae_arch *arch, const dataset *data, const build_opts *o,
                   train_progress_fn train_progress, build_stage_fn stage, void *ctx,
                   char *err, size_t errlen) {
    const size_t L = (size_t)arch->latent;
    dataset cal = {0}, train = {0};
    float *scaled = NULL;        /* the training part, scaled: what the VAE trains on */
    memset(d, 0, sizeof *d);
    if (data->dim != shape_size(arch->in)) {
        snprintf(err, errlen, "samples have %zu values, the architecture expects %zu", data->dim,
                 shape_size(arch->in));
        return -1;
    }
    /* Fail now, not after an hour of training: the options, then what the data allows. */
    if (build_opts_check(o, 0, err, errlen) ||
        dataset_split(data, o->cal_frac, o->train.seed, &cal, &train, err, errlen) != 0)
        return -1;
    if (build_opts_check(o, train.n, err, errlen)) goto fail;
    if (cal.n < 2) {
        snprintf(err, errlen, "%zu sample(s) held out for calibration: it needs at least 2 "
                 "(more data or a larger calibration share)", cal.n);
        goto fail;
    }
    build_say(stage, ctx, "split", "%zu training samples, %zu held out for calibration", train.n, cal.n);
    build_report rep = {.n_train = train.n, .n_cal = cal.n};
    double t0 = clock_seconds();
    d->mode = o->mode;
    d->place = o->place;
    d->window = o->window;
    d->k = o->k;
    d->alpha = o->alpha;
    d->term = o->term;
    d->input = o->input;
    if (vae_create(&d->vae, arch, o->train.seed, err, errlen) != 0) goto fail;
    /* The scaling is fitted on the training part only; the VAE and the reference set see
     * the scaled samples, calibration the raw ones through the scorer, which scales them
     * as it will scale every sample it is given. */
    if (scaling_fit(&d->scale, o->scale, train.x, train.n, train.dim, err, errlen)) goto fail;
    const float *tx = train.x;
    if (o->scale != SCALE_NONE) {
        if (!(scaled = malloc(train.n * train.dim * sizeof *scaled))) {
            snprintf(err, errlen, "out of memory for the scaled training samples");
            goto fail;
        }
        for (size_t i = 0; i < train.n; i++)
            scaling_apply(&d->scale, train.x + i * train.dim, scaled + i * train.dim);
        tx = scaled;
        build_say(stage, ctx, "scaling", "%s, fitted on %zu training samples",
                  SCALE_NAME[o->scale], train.n);
    }
    build_say(stage, ctx, "training", "beta-VAE %s, latent %d, %zu parameters", arch->name,
        arch->latent, d->vae.n_params);
    if (vae_train(&d->vae, tx, train.n, &o->train, train_progress, ctx, err, errlen)) goto fail;
    rep.train_seconds = clock_seconds() - t0;

    /* Reference set: a reproducible random subset of the training part. */
    d->n_ref = build_ref_count(o, train.n);
    size_t *order = malloc(train.n * sizeof *order);
    d->ref_latent = malloc((size_t)d->n_ref * L * sizeof(float));
    d->ref_map = malloc((size_t)d->n_ref * 2 * sizeof(float));
    d->ref_id = malloc((size_t)d->n_ref * sizeof(int32_t));
    float *xr = malloc((size_t)ENCODE_BATCH * train.dim * sizeof(float));
    float *logvar = malloc((size_t)ENCODE_BATCH * L * sizeof(float));
    vae_workspace w;
    int ws_ok = vae_workspace_init(&w, &d->vae, ENCODE_BATCH) == 0;
    if (!order || !d->ref_latent || !d->ref_map || !d->ref_id || !xr || !logvar || !ws_ok) {
        snprintf(err, errlen, "out of memory for the reference set");
        free(order);
        free(xr);
        free(logvar);
        if (ws_ok) vae_workspace_free(&w);
        goto fail;
    }
    rng_t rng;
    rng_seed(&rng, o->train.seed ^ 0x5eedULL);
    for (size_t i = 0; i < train.n; i++) order[i] = i;
    rng_shuffle(&rng, order, train.n);
    for (int i = 0; i < d->n_ref; i += ENCODE_BATCH) {
        int B = d->n_ref - i < ENCODE_BATCH ? d->n_ref - i : ENCODE_BATCH;
        for (int b = 0; b < B; b++) {
            d->ref_id[i + b] = (int32_t)order[i + b];
            memcpy(xr + (size_t)b * train.dim, tx + order[i + b] * train.dim,
                   train.dim * sizeof(float));
        }
        float *mu = d->ref_latent + (size_t)i * L;
        vae_encode(&d->vae, &w, xr, B, mu, d->input == LATENT_Z ? logvar : NULL);
        for (int b = 0; d->input == LATENT_Z && b < B; b++)
            detector_sample_z(xr + (size_t)b * train.dim, train.dim, mu + (size_t)b * L,
                              logvar + (size_t)b * L, (int)L, mu + (size_t)b * L);
    }
    free(logvar);
    free(order);
    free(xr);
    vae_workspace_free(&w);
    build_say(stage, ctx, "reference", "%d training samples encoded", d->n_ref);

    t0 = clock_seconds();
    build_say(stage, ctx, "map", "fitting t-SNE on %d latents (perplexity %g, %d iterations)", d->n_ref,
        o->tsne.perplexity, o->tsne.n_iter);
    if (tsne_fit(d->ref_latent, d->n_ref, (int)L, &o->tsne, d->ref_map, &rep.map_kl, err,
                 errlen))
        goto fail;
    rep.map_seconds = clock_seconds() - t0;
    build_say(stage, ctx, "map", "final KL %.4f after %.1f s", rep.map_kl, rep.map_seconds);
    t0 = clock_seconds();
    if (detector_calibrate(d, cal.x, cal.n, o->cal_batch, o->quantile, err, errlen) != 0 ||
        (o->use_memory && calibrate_stream(d, &cal, &train, o, err, errlen) != 0))
        goto fail;
    rep.cal_seconds = clock_seconds() - t0;
    if (o->report) *o->report = rep;
    if (d->use_memory)
        build_say(stage, ctx, "calibration", "%zu held-out normals, then a stream of %d normals "
                  "through the memory: threshold %.4f (%s fusion) at quantile %g", cal.n,
                  d->n_cal, d->threshold, SCORE_FUSION_NAME[d->fusion], d->quantile);
    else
        build_say(stage, ctx, "calibration", "%d held-out normals, threshold %.4f at quantile %g",
                  d->n_cal, d->threshold, d->quantile);
    dataset_free(&cal);
    dataset_free(&train);
    free(scaled);
    return 0;
fail:
    dataset_free(&cal);
    dataset_free(&train);
    free(scaled);
    detector_free(d);
    return -1;
}
