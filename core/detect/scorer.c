/* Scoring with a detector. */
#include "scorer.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block.h"
#include "clock.h"

/* Batch invariance: a sample's result must not depend on what it was batched with, so
 * that a score logged by the daemon, computed again by `anodm score` or at calibration,
 * is the same number. OpenBLAS does not promise that for a row of a larger product (its
 * edge kernels, one-row paths and threads sum in other orders), so the network runs on
 * core/nn's own fixed-order products (vae_infer, core/nn/infer.h), a whole batch through
 * each layer; a tcn or lstm encoder, which has no plan there, runs one sample at a time
 * with OpenBLAS on one thread (docs/BATCHING.md). Placement in single mode is per sample
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
    vae_infer net;
    /* The batch buffers, max_batch rows each, in the scorer's own block (scorer_parts). */
    double *nearest;             /* single mode: D_LATENT from placement's neighbour search */
    double *ranks;               /* the memory term's reference side: n_ranks per sample */
    int n_ranks;
    double *suspicion;           /* what the memory kept each sample with, */
    const float *kept_mu;        /* the latents it kept (mu or s->mu), */
    int kept;                    /* and how many, in the last call (scorer_kept) */
    float *rec, *mu, *pos;
    float *xs;                   /* scaled samples: what the VAE sees */
    float *dist;
    float *logvar;               /* z-based detectors only: the encoder's log-variances */
    int *far;                    /* out-of-range flags */
    int *idx;
    scorer_timing *timing;       /* NULL unless scorer_time_stages */
};

void scorer_time_stages(scorer *s, scorer_timing *t) { s->timing = t; }

/* The thread's CPU clock when s is timing its stages, else 0 (no clock read). */
static long long stage_clock(const scorer *s) { return s->timing ? clock_thread_cpu_ns() : 0; }

void scorer_free(scorer *s) {
    if (!s) return;
    tsne_window_free(s->window);
    memory_free(s->own);
    for (int i = 0; i < s->n_sources; i++) memory_free(s->sources[i].m);
    free(s->sources);
    tsne_map_free(s->map);
    vae_infer_free(&s->net);
    free(s);                     /* and its batch buffers (scorer_parts) */
}

/* The batch buffers for batches of rows, carved after the scorer (block.h), doubles first,
 * then floats, then ints. */
static void scorer_parts(block *b, scorer *s, size_t rows, size_t dim, size_t L, size_t k,
                         int z) {
    BLOCK_TAKE(b, s->nearest, rows);
    BLOCK_TAKE(b, s->ranks, rows * (size_t)s->n_ranks);
    BLOCK_TAKE(b, s->suspicion, rows);
    BLOCK_TAKE(b, s->rec, rows * dim);
    BLOCK_TAKE(b, s->xs, rows * dim);
    BLOCK_TAKE(b, s->mu, rows * L);
    BLOCK_TAKE(b, s->pos, rows * 2);
    BLOCK_TAKE(b, s->dist, rows * k);
    if (z) {
        BLOCK_TAKE(b, s->logvar, rows * L);
    }
    BLOCK_TAKE(b, s->far, rows);
    BLOCK_TAKE(b, s->idx, rows * k);
}

scorer *scorer_create(const detector *d, int max_batch, char *err, size_t errlen) {
    const size_t dim = shape_size(d->vae.arch.in), L = (size_t)d->vae.arch.latent;
    if (max_batch < 1 || d->k < 1 || d->k > d->n_ref) {
        snprintf(err, errlen, "scorer: bad batch size %d or k %d for %d reference points",
                 max_batch, d->k, d->n_ref);
        return NULL;
    }
    const size_t rows = (size_t)max_batch, k = (size_t)d->k;
    const int z = d->input == LATENT_Z;
    block b = BLOCK_HEAD(scorer);
    scorer probe;
    probe.n_ranks = d->use_memory ? d->memory.k : 1;   /* the memory term's reference ranks */
    scorer_parts(&b, &probe, rows, dim, L, k, z);
    scorer *s = block_alloc(&b);
    if (!s) {
        snprintf(err, errlen, "scorer: out of memory for batches of %d", max_batch);
        return NULL;
    }
    s->n_ranks = probe.n_ranks;
    scorer_parts(&b, s, rows, dim, L, k, z);
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
    if (vae_infer_init(&s->net, &d->vae, err, errlen) != 0) {
        scorer_free(s);
        return NULL;
    }
    return s;
}

/* The memory term of latent mu, then mu kept with its suspicion, which is returned: its
 * company (the term: retention favours what recurs) or its evidence on its own (z_re +
 * z_latent). ref: mu's distances to its s->n_ranks nearest reference latents. */
static double remember(scorer *s, const float *mu, const double *ref, detector_result *r) {
    const detector *d = s->d;
    memory_probe p;
    memory_probe_of(s->memory, mu, &p);
    r->d_memory = memory_term(s->memory, ref, &p);
    double suspicion = d->memory.retain == MEMORY_RETAIN_COMPANY
                           ? r->d_memory
                           : score_standardise(r->d_re, d->re) +
                                 score_standardise(r->d_latent, d->latent);
    memory_keep(s->memory, mu, suspicion, &p);
    return suspicion;
}

int scorer_terms(scorer *s, const float *x, int B, detector_result *res, float *x_rec,
                 float *mu, int32_t *nn_ref, float *nn_dist, char *err, size_t errlen) {
    const detector *d = s->d;
    const size_t dim = shape_size(d->vae.arch.in);
    const int k = d->k;
    if (B < 1 || B > s->max_batch) {
        snprintf(err, errlen, "batch of %d samples outside 1..%d", B, s->max_batch);
        return -1;
    }
    float *rec = x_rec ? x_rec : s->rec, *m = mu ? mu : s->mu;
    const size_t L = (size_t)d->vae.arch.latent;
    scorer_timing *t = s->timing;
    long long t0 = stage_clock(s);
    s->kept = 0;
    /* Every sample on the scale the model was trained on; from here on x is that. */
    memset(s->far, 0, (size_t)B * sizeof *s->far);
    if (d->scale.kind != SCALE_NONE) {
        for (int b = 0; b < B; b++)
            s->far[b] = scaling_apply(&d->scale, x + (size_t)b * dim, s->xs + (size_t)b * dim);
        x = s->xs;
    }
    long long t1 = stage_clock(s);
    const int blas_threads = openblas_get_num_threads();
    if (blas_threads != 1) openblas_set_num_threads(1);
    vae_infer_run(&s->net, &d->vae, x, B, rec, m, d->input == LATENT_Z ? s->logvar : NULL);
    if (blas_threads != 1) openblas_set_num_threads(blas_threads);
    if (d->input == LATENT_Z) {
        for (int b = 0; b < B; b++)
            detector_sample_z(x + (size_t)b * dim, dim, m + (size_t)b * L, s->logvar + (size_t)b * L,
                              (int)L, m + (size_t)b * L);
    }
    long long t2 = stage_clock(s);
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
                                                       s->n_ranks, t ? &t->place : NULL},
                                    err, errlen);
    if (rc != 0) return -1;
    long long t3 = stage_clock(s);
    for (int b = 0; b < B; b++) {
        detector_result *r = &res[b];
        int *idx = s->idx + (size_t)b * k;
        float *dist = (nn_dist ? nn_dist : s->dist) + (size_t)b * k;
        memset(r, 0, sizeof *r);
        r->d_re = score_recon_error(x + (size_t)b * dim, rec + (size_t)b * dim, dim);
        r->out_of_range = s->far[b];
        if (x_rec) scaling_invert(&d->scale, x_rec + (size_t)b * dim); /* in the data's units */
        r->x = s->pos[2 * b];
        r->y = s->pos[2 * b + 1];
        r->d_map = tsne_map_dmap(s->map, s->pos + 2 * b, k, idx, dist);
        if (r->d_map < 0) {          /* k was checked at create: out of memory */
            snprintf(err, errlen, "scorer: out of memory for the map distance");
            return -1;
        }
        r->nearest_ref = d->ref_id[idx[0]];
        for (int j = 0; nn_ref && j < k; j++) nn_ref[(size_t)b * k + (size_t)j] = d->ref_id[idx[j]];
        r->nearest_distance = dist[0];
        /* Single mode found the nearest reference latent while placing; the window's
         * search also counts window points, so context mode looks again. */
        r->d_latent = d->mode == PLACE_CONTEXT
                          ? tsne_map_latent_nn(s->map, m + (size_t)b * d->vae.arch.latent)
                          : s->nearest[b];
    }
    long long t4 = stage_clock(s);
    /* All checked before any sample goes into the memory, so that a request refused as not
     * finite leaves it as it was: the record's own rule, on the fields computed so far (the
     * rest are still the zeros they were set to). */
    for (int b = 0; b < B; b++)
        if (!detector_result_finite(d, &res[b])) {
            snprintf(err, errlen, "sample %d: its score is not finite (input values too large "
                     "for the model's arithmetic)", b);
            return SCORER_NOT_FINITE;
        }
    for (int b = 0; b < B; b++) {
        detector_result *r = &res[b];
        /* Single mode read the reference side off placement's search too. */
        double *ref = s->ranks + (size_t)b * s->n_ranks;
        if (s->memory && d->mode == PLACE_CONTEXT)
            tsne_map_latent_knn(s->map, m + (size_t)b * L, s->n_ranks, ref);
        if (s->memory) s->suspicion[b] = remember(s, m + (size_t)b * L, ref, r);
        else r->d_memory = NAN;
    }
    if (t) {
        long long t5 = clock_thread_cpu_ns();
        t->samples += B;
        t->scale_ns += t1 - t0;
        t->forward_ns += t2 - t1;
        t->place_ns += t3 - t2;
        t->terms_ns += t4 - t3;
        t->memory_ns += t5 - t4;
    }
    if (s->memory) {
        s->kept_mu = m;
        s->kept = B;
    }
    return 0;
}

void scorer_kept(const scorer *s, const float **mu, const double **suspicion, int *n) {
    *mu = s->kept_mu;
    *suspicion = s->suspicion;
    *n = s->kept;
}

const stream_memory *scorer_memory_slot(const scorer *s, int slot, const char **source,
                                        unsigned long long *used) {
    if (!s->sources) {
        *source = NULL;
        *used = 0;
        return slot == 0 ? s->own : NULL;
    }
    if (slot < 0 || slot >= s->n_sources) return NULL;
    *source = s->sources[slot].key;
    *used = s->sources[slot].used;
    return s->sources[slot].m;
}

int scorer_memory_import(scorer *s, const memory_state *st, char *err, size_t errlen) {
    return memory_import(s->memory, st, err, errlen);
}

void scorer_memory_replay(scorer *s, const float *mu, double suspicion) {
    memory_probe p;
    memory_probe_of(s->memory, mu, &p);
    memory_keep(s->memory, mu, suspicion, &p);
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

/* The slot of source's memory under scope source, -1 if it has none. */
static int find_source(const scorer *s, const char *key) {
    for (int i = 0; i < s->n_sources; i++)
        if (!strcmp(s->sources[i].key, key)) return i;
    return -1;
}

const stream_memory *scorer_find_memory(const scorer *s, const char *source) {
    if (!s->sources) return s->own;
    char key[SCORER_SOURCE_MAX + 1];
    snprintf(key, sizeof key, "%s", source ? source : "");
    int at = find_source(s, key);
    return at < 0 ? NULL : s->sources[at].m;
}

int scorer_coplace(const scorer *s, const float *lat, int n, float *pos, char *err,
                   size_t errlen) {
    return tsne_coplace(s->map, &s->d->place, lat, n, pos, err, errlen);
}

int scorer_use_source(scorer *s, const char *source, int *fresh, char *err, size_t errlen) {
    if (fresh) *fresh = 0;
    if (!s->sources) return 0;
    char key[SCORER_SOURCE_MAX + 1];
    snprintf(key, sizeof key, "%s", source ? source : "");
    int at = find_source(s, key), oldest = 0;
    for (int i = 1; at < 0 && i < s->n_sources; i++)
        if (s->sources[i].used < s->sources[oldest].used) oldest = i;
    if (at < 0 && s->n_sources < s->max_sources) {
        stream_memory *m = memory_create(s->d->vae.arch.latent, &s->d->memory, err, errlen);
        if (!m) return -1;
        at = s->n_sources++;
        s->sources[at].m = m;
        if (fresh) *fresh = 1;
    } else if (at < 0) {
        at = oldest;                 /* the least recently used source is forgotten */
        memory_reset(s->sources[at].m);
        if (fresh) *fresh = 1;
    }
    memcpy(s->sources[at].key, key, sizeof key);
    s->sources[at].used = ++s->tick;
    s->memory = s->sources[at].m;
    return at;
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
                 int32_t *nn_ref, float *nn_dist, char *err, size_t errlen) {
    int rc = scorer_terms(s, x, B, res, x_rec, NULL, nn_ref, nn_dist, err, errlen);
    if (rc != 0) return rc;
    long long t0 = stage_clock(s);
    for (int b = 0; b < B; b++) {
        detector_finish_result(s->d, &res[b]);
        if (!detector_result_finite(s->d, &res[b])) {
            snprintf(err, errlen, "sample %d: its score is not finite", b);
            return SCORER_NOT_FINITE;
        }
    }
    if (s->timing) s->timing->finish_ns += clock_thread_cpu_ns() - t0;
    return 0;
}
