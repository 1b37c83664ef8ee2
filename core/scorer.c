/* Scoring with a detector. */
#include "scorer.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Batch invariance: a sample's result must not depend on what it was batched with, so
 * that a score logged by the daemon, computed again by `anodm score` or at calibration,
 * is the same number. OpenBLAS does not promise that for a row of a larger product: the
 * kernel it picks for the edges of a matrix (and its one-row paths) sums in another
 * order, and which rows fall on an edge depends on the batch, and on the threads it
 * splits a product between. So the network runs on one sample at a time, whose shapes
 * never change, with BLAS on one thread: measured on 10000 Fashion-MNIST images, 7 % more
 * CPU than 64-row passes (docs/BATCHING.md). Placement in single mode is per sample
 * already (tsne_place.c). */

/* A source's memory, under scope source. */
struct source_memory {
    char key[SCORER_SOURCE_MAX + 1];
    stream_memory *m;
    unsigned long long used;
};

struct scorer {
    const detector *d;
    int max_batch;
    tsne_map *map;
    tsne_window *window;         /* context mode only */
    stream_memory *memory;       /* the memory calls go through; NULL without one */
    stream_memory *own;          /* the model's memory (scope model) */
    struct source_memory *sources; /* scope source: one memory per source, LRU-capped */
    int n_sources, max_sources;
    unsigned long long tick;     /* for least recently used */
    vae_workspace w;
    float *rec, *mu, *pos;       /* max_batch rows each */
    float *xs;                   /* max_batch scaled samples: what the VAE sees */
    int *far;                    /* max_batch out-of-range flags */
    float *enc_mu, *logvar;      /* z-based detectors only: the encoder's outputs */
    double *nearest;             /* single mode: D_LATENT from placement's neighbour search */
    double *ranks;               /* the memory term's reference side: n_ranks per sample */
    int n_ranks;
    int *idx;
    float *dist;
};

void scorer_free(scorer *s) {
    if (!s) return;
    tsne_window_free(s->window);
    memory_free(s->own);
    for (int i = 0; i < s->n_sources; i++) memory_free(s->sources[i].m);
    free(s->sources);
    tsne_map_free(s->map);
    vae_workspace_free(&s->w);
    free(s->rec);
    free(s->xs);
    free(s->far);
    free(s->mu);
    free(s->enc_mu);
    free(s->nearest);
    free(s->ranks);
    free(s->logvar);
    free(s->pos);
    free(s->idx);
    free(s->dist);
    free(s);
}

scorer *scorer_create(const detector *d, int max_batch, char *err, size_t errlen) {
    const size_t dim = shape_size(d->vae.arch.in), L = (size_t)d->vae.arch.latent;
    if (max_batch < 1 || d->k < 1 || d->k > d->n_ref) {
        snprintf(err, errlen, "scorer: bad batch size %d or k %d for %d reference points",
                 max_batch, d->k, d->n_ref);
        return NULL;
    }
    scorer *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "scorer: out of memory");
        return NULL;
    }
    s->d = d;
    s->max_batch = max_batch;
    s->map = tsne_map_create(d->ref_latent, d->ref_map, d->n_ref, (int)L, 0, err, errlen);
    if (!s->map) {
        scorer_free(s);
        return NULL;
    }
    if (d->mode == PLACE_CONTEXT &&
        !(s->window = tsne_window_create(s->map, d->window, err, errlen))) {
        scorer_free(s);
        return NULL;
    }
    if (d->use_memory && !(s->memory = s->own = memory_create((int)L, &d->memory, err, errlen))) {
        scorer_free(s);
        return NULL;
    }
    s->rec = malloc((size_t)max_batch * dim * sizeof(float));
    s->xs = malloc((size_t)max_batch * dim * sizeof(float));
    s->far = malloc((size_t)max_batch * sizeof(int));
    s->mu = malloc((size_t)max_batch * L * sizeof(float));
    s->pos = malloc((size_t)max_batch * 2 * sizeof(float));
    s->nearest = malloc((size_t)max_batch * sizeof(double));
    s->n_ranks = d->use_memory ? d->memory.k : 1;   /* the memory term's reference ranks */
    s->ranks = malloc((size_t)max_batch * s->n_ranks * sizeof(double));
    s->idx = malloc((size_t)max_batch * d->k * sizeof(int));
    s->dist = malloc((size_t)max_batch * d->k * sizeof(float));
    if (d->input == LATENT_Z) {
        s->enc_mu = malloc((size_t)max_batch * L * sizeof(float));
        s->logvar = malloc((size_t)max_batch * L * sizeof(float));
    }
    if (!s->rec || !s->xs || !s->far || !s->mu || !s->pos || !s->nearest || !s->ranks || !s->idx ||
        !s->dist ||
        (d->input == LATENT_Z && (!s->enc_mu || !s->logvar)) ||
        vae_workspace_init(&s->w, &d->vae, 1) != 0) {
        snprintf(err, errlen, "scorer: out of memory for batches of %d", max_batch);
        scorer_free(s);
        return NULL;
    }
    return s;
}

/* The memory term of latent mu, then mu kept with its suspicion: its company (the term:
 * retention favours what recurs) or its evidence on its own (z_re + z_latent).
 * ref: mu's distances to its s->n_ranks nearest reference latents. */
static void remember(scorer *s, const float *mu, const double *ref, detector_result *r) {
    const detector *d = s->d;
    memory_probe p;
    memory_probe_of(s->memory, mu, &p);
    r->d_memory = memory_term(s->memory, ref, &p);
    double suspicion = d->memory.retain == MEMORY_RETAIN_COMPANY
                           ? r->d_memory
                           : score_standardise(r->d_re, d->re) +
                                 score_standardise(r->d_latent, d->latent);
    memory_keep(s->memory, mu, suspicion, &p);
}

int scorer_terms(scorer *s, const float *x, int B, detector_result *res, float *x_rec,
                 float *mu, int *nn_idx, float *nn_dist, char *err, size_t errlen) {
    const detector *d = s->d;
    const size_t dim = shape_size(d->vae.arch.in);
    const int k = d->k;
    if (B < 1 || B > s->max_batch) {
        snprintf(err, errlen, "batch of %d samples outside 1..%d", B, s->max_batch);
        return -1;
    }
    float *rec = x_rec ? x_rec : s->rec, *m = mu ? mu : s->mu;
    const size_t L = (size_t)d->vae.arch.latent;
    /* Every sample on the scale the model was trained on; from here on x is that. */
    memset(s->far, 0, (size_t)B * sizeof *s->far);
    if (d->scale.kind != SCALE_NONE) {
        for (int b = 0; b < B; b++)
            s->far[b] = scaling_apply(&d->scale, x + (size_t)b * dim, s->xs + (size_t)b * dim);
        x = s->xs;
    }
    const int blas_threads = openblas_get_num_threads();
    if (blas_threads != 1) openblas_set_num_threads(1);
    for (int b = 0; b < B; b++) {
        const size_t at = (size_t)b;
        vae_reconstruct(&d->vae, &s->w, x + at * dim, NULL, 1, rec + at * dim, m + at * L);
        /* a second encoder pass for logvar: an option, not the default */
        if (d->input == LATENT_Z)
            vae_encode(&d->vae, &s->w, x + at * dim, 1, s->enc_mu + at * L, s->logvar + at * L);
    }
    if (blas_threads != 1) openblas_set_num_threads(blas_threads);
    if (d->input == LATENT_Z) {
        for (int b = 0; b < B; b++)
            detector_sample_z(x + (size_t)b * dim, dim, m + (size_t)b * L, s->logvar + (size_t)b * L,
                              (int)L, m + (size_t)b * L);
    }
    for (size_t i = 0; i < (size_t)B * L; i++)
        if (!isfinite(m[i])) {   /* before placing: the window must not take it */
            snprintf(err, errlen, "sample %zu: its latent is not finite (input values too "
                     "large for the network)", i / L);
            return SCORER_NOT_FINITE;
        }
    int rc = d->mode == PLACE_CONTEXT
                 ? tsne_window_add(s->window, &d->place, m, B, s->pos, err, errlen)
                 : tsne_place_batch(s->map, &d->place, m, B, 1, s->pos,
                                    &(tsne_place_knn){s->nearest, s->memory ? s->ranks : NULL,
                                                       s->n_ranks},
                                    err, errlen);
    if (rc != 0) return -1;
    for (int b = 0; b < B; b++) {
        detector_result *r = &res[b];
        int *idx = (nn_idx ? nn_idx : s->idx) + (size_t)b * k;
        float *dist = (nn_dist ? nn_dist : s->dist) + (size_t)b * k;
        memset(r, 0, sizeof *r);
        r->d_re = score_recon_error(x + (size_t)b * dim, rec + (size_t)b * dim, dim);
        r->out_of_range = s->far[b];
        if (x_rec) scaling_invert(&d->scale, x_rec + (size_t)b * dim); /* in the data's units */
        r->x = s->pos[2 * b];
        r->y = s->pos[2 * b + 1];
        r->d_map = tsne_map_dmap(s->map, s->pos + 2 * b, k, idx, dist);
        r->nearest_ref = d->ref_id[idx[0]];
        r->nearest_distance = dist[0];
        /* Single mode found the nearest reference latent while placing; the window's
         * search also counts window points, so context mode looks again. */
        r->d_latent = d->mode == PLACE_CONTEXT
                          ? tsne_map_latent_nn(s->map, m + (size_t)b * d->vae.arch.latent)
                          : s->nearest[b];
        /* Single mode read the reference side off placement's search too. */
        double *ref = s->ranks + (size_t)b * s->n_ranks;
        if (s->memory && d->mode == PLACE_CONTEXT)
            tsne_map_latent_knn(s->map, m + (size_t)b * L, s->n_ranks, ref);
        if (s->memory) remember(s, m + (size_t)b * L, ref, r);
        else r->d_memory = NAN;
    }
    return 0;
}

const stream_memory *scorer_memory(const scorer *s) { return s->memory; }

int scorer_memory_count(const scorer *s) {
    int n = s->own ? memory_count(s->own) : 0;
    for (int i = 0; i < s->n_sources; i++) n += memory_count(s->sources[i].m);
    return n;
}

void scorer_memory_reset(scorer *s) {
    if (s->own) memory_reset(s->own);
    for (int i = 0; i < s->n_sources; i++) memory_reset(s->sources[i].m);
}

int scorer_memory_per_source(scorer *s, int max_sources, char *err, size_t errlen) {
    if (!s->own || max_sources < 1 || max_sources > SCORER_MAX_SOURCES) {
        snprintf(err, errlen, "memory per source: %s", s->own ? "at most 1..65536 sources"
                                                            : "the model has no memory");
        return -1;
    }
    if (!(s->sources = calloc((size_t)max_sources, sizeof *s->sources))) {
        snprintf(err, errlen, "memory per source: out of memory");
        return -1;
    }
    s->max_sources = max_sources;
    return 0;
}

int scorer_use_source(scorer *s, const char *source, char *err, size_t errlen) {
    if (!s->sources) return 0;
    char key[SCORER_SOURCE_MAX + 1];
    snprintf(key, sizeof key, "%s", source ? source : "");
    int at = -1, oldest = 0;
    for (int i = 0; i < s->n_sources && at < 0; i++) {
        if (!strcmp(s->sources[i].key, key)) at = i;
        if (s->sources[i].used < s->sources[oldest].used) oldest = i;
    }
    if (at < 0 && s->n_sources < s->max_sources) {
        stream_memory *m = memory_create(s->d->vae.arch.latent, &s->d->memory, err, errlen);
        if (!m) return -1;
        at = s->n_sources++;
        s->sources[at].m = m;
    } else if (at < 0) {
        at = oldest;                 /* the least recently used source is forgotten */
        memory_reset(s->sources[at].m);
    }
    memcpy(s->sources[at].key, key, sizeof key);
    s->sources[at].used = ++s->tick;
    s->memory = s->sources[at].m;
    return 0;
}

void scorer_window(const scorer *s, const float **pos, int *n) {
    *pos = s->window ? tsne_window_positions(s->window) : NULL;
    *n = s->window ? tsne_window_count(s->window) : 0;
}

double detector_base_score(const detector *d, const detector_result *r) {
    return d->alpha * r->z_re +
           (1.0 - d->alpha) * (d->term == TERM_LATENT ? r->z_latent : r->z_map);
}

void detector_fuse(const detector *d, detector_result *r) {
    r->z_re = score_standardise(r->d_re, d->re);
    r->z_map = score_standardise(r->d_map, d->map);
    r->z_latent = score_standardise(r->d_latent, d->latent);
    r->z_memory = d->use_memory ? score_standardise(r->d_memory, d->mem) : NAN;
    r->score = detector_base_score(d, r);
    if (d->use_memory)
        r->score = score_fuse(d->fusion, r->score, r->z_memory, d->cal_base, d->cal_memory,
                              (size_t)d->n_cal);
    int latent = d->term == TERM_LATENT;
    r->raw_score = d->alpha * r->d_re + (1.0 - d->alpha) * (latent ? r->d_latent : r->d_map);
}

void detector_finish_result(const detector *d, detector_result *r) {
    detector_fuse(d, r);
    r->p_value = score_p_value(d->cal_scores, (size_t)d->n_cal, r->score);
    r->is_anomaly = r->score > d->threshold;
}

int scorer_score(scorer *s, const float *x, int B, detector_result *res, float *x_rec,
                 int *nn_idx, float *nn_dist, char *err, size_t errlen) {
    int rc = scorer_terms(s, x, B, res, x_rec, NULL, nn_idx, nn_dist, err, errlen);
    if (rc != 0) return rc;
    for (int b = 0; b < B; b++) detector_finish_result(s->d, &res[b]);
    return 0;
}
