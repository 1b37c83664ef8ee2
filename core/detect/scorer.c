/* Scoring with a detector. */
#include "scorer.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block.h"
#include "clock.h"
#include "par.h"

/* Batch invariance: a sample's result must not depend on what it was batched with, so
 * that a score logged by the daemon, computed again by `anodm score` or at calibration,
 * is the same number. OpenBLAS does not promise that for a row of a larger product (its
 * edge kernels, one-row paths and threads sum in other orders), so the network runs on
 * core/nn's own fixed-order products (vae_infer, core/nn/infer.h), a whole batch through
 * each layer; a tcn or lstm encoder, which has no plan there, runs one sample at a time
 * with OpenBLAS on one thread (docs/BATCHING.md). Placement in single mode is per sample
 * already (tsne_place.c).
 *
 * The same invariance lets a batch be split across threads (scorer_set_threads): the
 * forward pass and single-mode placement of each contiguous share of the rows run on their
 * own thread with their own network buffers, and give the bits one thread would. Only what
 * follows the scoring order (the context window, the memory) stays on the caller. */

/* A source's memory, under scope source. */
struct source_memory {
    char key[SCORER_SOURCE_MAX + 1];
    stream_memory *m;
    unsigned long long used;
};

/* One batch in flight: what a front call computed and its back call reads, max_batch rows
 * of each, in the slot's own block (slot_parts). */
typedef struct {
    int B;                       /* rows the last front call took; 0: nothing for a back */
    const float *x;              /* the rows the VAE saw: the caller's, or xs when scaled */
    float *rec, *mu;             /* where the front put reconstructions and latents */
    double *nearest;             /* single mode: D_LATENT from placement's neighbour search */
    double *ranks;               /* the memory term's reference side: n_ranks per sample */
    double *suspicion;           /* what the memory kept each sample with */
    float *own_rec, *own_mu, *pos;
    float *xs;                   /* scaled samples */
    float *dist;
    float *logvar;               /* z-based detectors only: the encoder's log-variances */
    int *far;                    /* out-of-range flags */
    int *idx;
} scorer_slot;

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
    vae_infer *nets;             /* one per thread (scorer_set_threads) */
    scorer_slot **slots;         /* as many as nets */
    int n_nets;
    int n_ranks;
    const float *kept_mu;        /* what the last back call kept in the memory (scorer_kept) */
    const double *kept_suspicion;
    int kept;
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
    for (int t = 0; t < s->n_nets; t++) {
        vae_infer_free(&s->nets[t]);
        free(s->slots[t]);
    }
    free(s->nets);
    free(s->slots);
    free(s);
}

/* A slot's buffers for batches of rows, carved after it (block.h), doubles first, then
 * floats, then ints. */
static void slot_parts(block *b, scorer_slot *t, size_t rows, size_t dim, size_t L, size_t k,
                       size_t n_ranks, int z) {
    BLOCK_TAKE(b, t->nearest, rows);
    BLOCK_TAKE(b, t->ranks, rows * n_ranks);
    BLOCK_TAKE(b, t->suspicion, rows);
    BLOCK_TAKE(b, t->own_rec, rows * dim);
    BLOCK_TAKE(b, t->xs, rows * dim);
    BLOCK_TAKE(b, t->own_mu, rows * L);
    BLOCK_TAKE(b, t->pos, rows * 2);
    BLOCK_TAKE(b, t->dist, rows * k);
    if (z) {
        BLOCK_TAKE(b, t->logvar, rows * L);
    }
    BLOCK_TAKE(b, t->far, rows);
    BLOCK_TAKE(b, t->idx, rows * k);
}

static scorer_slot *slot_create(const scorer *s) {
    const detector *d = s->d;
    const size_t dim = shape_size(d->vae.arch.in), L = (size_t)d->vae.arch.latent;
    const int z = d->input == LATENT_Z;
    block b = BLOCK_HEAD(scorer_slot);
    scorer_slot probe;
    slot_parts(&b, &probe, (size_t)s->max_batch, dim, L, (size_t)d->k, (size_t)s->n_ranks, z);
    scorer_slot *t = block_alloc(&b);
    if (t) slot_parts(&b, t, (size_t)s->max_batch, dim, L, (size_t)d->k, (size_t)s->n_ranks, z);
    return t;
}

/* Nets and slots up to n (both arrays grown first, so a failure leaves s consistent);
 * 0, or -1 with err. */
static int add_threads(scorer *s, int n, char *err, size_t errlen) {
    vae_infer *nets = realloc(s->nets, (size_t)n * sizeof *nets);
    if (nets) s->nets = nets;
    scorer_slot **slots = nets ? realloc(s->slots, (size_t)n * sizeof *slots) : NULL;
    if (slots) s->slots = slots;
    if (!slots) {
        snprintf(err, errlen, "scorer: out of memory for %d threads", n);
        return -1;
    }
    for (; s->n_nets < n; s->n_nets++) {
        if (!(s->slots[s->n_nets] = slot_create(s))) {
            snprintf(err, errlen, "scorer: out of memory for batches of %d", s->max_batch);
            return -1;
        }
        if (vae_infer_init(&s->nets[s->n_nets], &s->d->vae, err, errlen) != 0) {
            free(s->slots[s->n_nets]);
            return -1;
        }
    }
    return 0;
}

scorer *scorer_create(const detector *d, int max_batch, char *err, size_t errlen) {
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
    s->n_ranks = d->use_memory ? d->memory.k : 1;   /* the memory term's reference ranks */
    s->map = tsne_map_create(d->ref_latent, d->ref_map, d->n_ref, d->vae.arch.latent, 0, err,
                             errlen);
    if (!s->map || add_threads(s, 1, err, errlen)) {
        scorer_free(s);
        return NULL;
    }
    if (d->mode == PLACE_CONTEXT &&
        !(s->window = tsne_window_create(s->map, d->window, err, errlen))) {
        scorer_free(s);
        return NULL;
    }
    if (d->use_memory &&
        !(s->memory = s->own = memory_create(d->vae.arch.latent, &d->memory, err, errlen))) {
        scorer_free(s);
        return NULL;
    }
    return s;
}

/* Free nets and slots beyond the first n. */
static void drop_threads(scorer *s, int n) {
    while (s->n_nets > n) {
        s->n_nets--;
        vae_infer_free(&s->nets[s->n_nets]);
        free(s->slots[s->n_nets]);
    }
}

int scorer_set_threads(scorer *s, int n_threads, char *err, size_t errlen) {
    if (n_threads < 1 || n_threads > SCORER_MAX_THREADS) {
        snprintf(err, errlen, "scorer: %d threads outside 1..%d", n_threads, SCORER_MAX_THREADS);
        return -1;
    }
    /* A net without a plan runs on OpenBLAS, which is not to be entered from several
     * threads at once: it keeps to one. */
    if (!s->nets[0].enc || !s->nets[0].dec) n_threads = 1;
    const int had = s->n_nets;
    if (n_threads > had && add_threads(s, n_threads, err, errlen)) {
        drop_threads(s, had);
        return -1;
    }
    drop_threads(s, n_threads);
    return 0;
}

int scorer_threads(const scorer *s) { return s->n_nets; }

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

/* The front's work shared out by rows: share i of `shares` takes rows
 * [B i / shares, B (i + 1) / shares) and network net + i. Each row is scaled, goes
 * through the network and, in single mode, is placed; rc and err per share, rc
 * SCORER_NOT_FINITE (nothing placed) when a latent of the share is not finite. */
typedef struct {
    const scorer *s;
    scorer_slot *t;
    const float *x;
    int B, net, shares, place;
    int rc[SCORER_MAX_THREADS];
    char err[SCORER_MAX_THREADS][200];
    long long ns[3];             /* timed (one share): scaling, forward, placement */
} front_work;

static void front_shares(void *ctx, int begin, int end) {
    front_work *w = ctx;
    const scorer *s = w->s;
    scorer_slot *t = w->t;
    const detector *d = s->d;
    const size_t dim = shape_size(d->vae.arch.in), L = (size_t)d->vae.arch.latent;
    for (int share = begin; share < end; share++) {
        const int b0 = (int)((long)w->B * share / w->shares);
        const int n = (int)((long)w->B * (share + 1) / w->shares) - b0;
        const float *x = w->x + (size_t)b0 * dim;
        float *mu = t->mu + (size_t)b0 * L;
        long long t0 = stage_clock(s);
        memset(t->far + b0, 0, (size_t)n * sizeof *t->far);
        if (d->scale.kind != SCALE_NONE) {
            for (int b = 0; b < n; b++)
                t->far[b0 + b] = scaling_apply(&d->scale, x + (size_t)b * dim,
                                               t->xs + (size_t)(b0 + b) * dim);
            x = t->xs + (size_t)b0 * dim;
        }
        long long t1 = stage_clock(s);
        float *logvar = d->input == LATENT_Z ? t->logvar + (size_t)b0 * L : NULL;
        vae_infer_run(&s->nets[w->net + share], &d->vae, x, n, t->rec + (size_t)b0 * dim, mu,
                      logvar);
        for (int b = 0; logvar && b < n; b++)
            detector_sample_z(x + (size_t)b * dim, dim, mu + (size_t)b * L,
                              logvar + (size_t)b * L, (int)L, mu + (size_t)b * L);
        long long t2 = stage_clock(s);
        int finite = 1;
        for (size_t i = 0; i < (size_t)n * L; i++) finite &= isfinite(mu[i]) != 0;
        w->rc[share] = finite ? 0 : SCORER_NOT_FINITE;
        if (w->place && finite) {
            tsne_place_knn nb = {t->nearest + b0,
                                 d->use_memory ? t->ranks + (size_t)b0 * s->n_ranks : NULL,
                                 s->n_ranks, s->timing ? &s->timing->place : NULL};
            w->rc[share] = tsne_place_batch(s->map, &d->place, mu, n, 1, t->pos + 2 * b0, &nb,
                                            w->err[share], sizeof w->err[share]);
        }
        if (s->timing) {
            w->ns[0] = t1 - t0;
            w->ns[1] = t2 - t1;
            w->ns[2] = stage_clock(s) - t2;
        }
    }
}

/* The split a front with shares 0 gets: shares of at least SCORER_MIN_ROWS rows.
 * The small batches of a moderate load stay on one thread, where a split measured a
 * higher p99 (its thread start, and the other core busy with the connections), while a
 * saturated daemon's batches are large. Timed stages are one thread's CPU clock: no
 * split then. */
static int default_shares(const scorer *s, int B) {
    int shares = s->timing ? 1 : B / SCORER_MIN_ROWS;
    if (shares > s->n_nets) shares = s->n_nets;
    return shares < 1 ? 1 : shares;
}

int scorer_front(scorer *s, int slot, const float *x, int B, int net, int shares,
                 float *x_rec, float *mu, char *err, size_t errlen) {
    const detector *d = s->d;
    const size_t L = (size_t)d->vae.arch.latent;
    if (shares == 0 && net == 0) shares = default_shares(s, B);
    if (slot < 0 || slot >= s->n_nets || net < 0 || shares < 1 || net + shares > s->n_nets) {
        snprintf(err, errlen, "scorer: slot %d, networks %d..%d outside the %d there are",
                 slot, net, net + shares - 1, s->n_nets);
        return -1;
    }
    scorer_slot *t = s->slots[slot];
    t->B = 0;
    if (B < 1 || B > s->max_batch) {
        snprintf(err, errlen, "batch of %d samples outside 1..%d", B, s->max_batch);
        return -1;
    }
    if (shares > B) shares = B;
    t->rec = x_rec ? x_rec : t->own_rec;
    t->mu = mu ? mu : t->own_mu;
    t->x = d->scale.kind != SCALE_NONE ? t->xs : x;
    front_work w = {.s = s, .t = t, .x = x, .B = B, .net = net, .shares = shares,
                    .place = d->mode == PLACE_SINGLE};
    const int blas_threads = openblas_get_num_threads();
    if (blas_threads != 1) openblas_set_num_threads(1);
    par_for(shares, shares, front_shares, &w);
    if (blas_threads != 1) openblas_set_num_threads(blas_threads);
    /* A latent that is not finite refuses the batch, before the window can take it; the
     * error names the first such sample of the batch, whichever share found one. */
    for (int share = 0; share < shares; share++)
        if (w.rc[share] == SCORER_NOT_FINITE) {
            size_t i = 0;
            while (isfinite(t->mu[i])) i++;
            snprintf(err, errlen, "sample %zu: its latent is not finite (input values too "
                     "large for the network)", i / L);
            return SCORER_NOT_FINITE;
        }
    for (int share = 0; share < shares; share++)
        if (w.rc[share] != 0) {
            snprintf(err, errlen, "%s", w.err[share]);
            return -1;
        }
    if (s->timing) {
        s->timing->scale_ns += w.ns[0];
        s->timing->forward_ns += w.ns[1];
        s->timing->place_ns += w.ns[2];
    }
    t->B = B;
    return 0;
}

/* The back's terms: the window (context mode), each row's terms, then the memory, in
 * the rows' order. */
static int back_terms(scorer *s, scorer_slot *t, detector_result *res, int32_t *nn_ref,
                      float *nn_dist, char *err, size_t errlen) {
    const detector *d = s->d;
    const size_t dim = shape_size(d->vae.arch.in), L = (size_t)d->vae.arch.latent;
    const int k = d->k, B = t->B;
    scorer_timing *tm = s->timing;
    s->kept = 0;
    if (B < 1) {
        snprintf(err, errlen, "scorer: no batch in this slot (its front failed or was not run)");
        return -1;
    }
    t->B = 0;                    /* a back takes its batch once */
    long long t2 = stage_clock(s);
    if (d->mode == PLACE_CONTEXT &&
        tsne_window_add(s->window, &d->place, t->mu, B, t->pos, err, errlen) != 0)
        return -1;
    long long t3 = stage_clock(s);
    if (tm) tm->place_ns += t3 - t2;
    for (int b = 0; b < B; b++) {
        detector_result *r = &res[b];
        int *idx = t->idx + (size_t)b * k;
        float *dist = (nn_dist ? nn_dist : t->dist) + (size_t)b * k;
        memset(r, 0, sizeof *r);
        r->d_re = score_recon_error(t->x + (size_t)b * dim, t->rec + (size_t)b * dim, dim);
        r->out_of_range = t->far[b];
        if (t->rec != t->own_rec)    /* the caller's: in the data's units */
            scaling_invert(&d->scale, t->rec + (size_t)b * dim);
        r->x = t->pos[2 * b];
        r->y = t->pos[2 * b + 1];
        r->d_map = tsne_map_dmap(s->map, t->pos + 2 * b, k, idx, dist);
        if (r->d_map < 0) {          /* k was checked at create: out of memory */
            snprintf(err, errlen, "scorer: out of memory for the map distance");
            return -1;
        }
        r->nearest_ref = d->ref_id[idx[0]];
        for (int j = 0; nn_ref && j < k; j++) nn_ref[(size_t)b * k + (size_t)j] = d->ref_id[idx[j]];
        r->nearest_distance = dist[0];
        /* Single mode found the nearest reference latent while placing; the window's
         * search also counts window points, so context mode looks again. */
        r->d_latent = d->mode == PLACE_CONTEXT ? tsne_map_latent_nn(s->map, t->mu + (size_t)b * L)
                                               : t->nearest[b];
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
        double *ref = t->ranks + (size_t)b * s->n_ranks;
        if (s->memory && d->mode == PLACE_CONTEXT)
            tsne_map_latent_knn(s->map, t->mu + (size_t)b * L, s->n_ranks, ref);
        if (s->memory) t->suspicion[b] = remember(s, t->mu + (size_t)b * L, ref, r);
        else r->d_memory = NAN;
    }
    if (tm) {
        long long t5 = clock_thread_cpu_ns();
        tm->samples += B;
        tm->terms_ns += t4 - t3;
        tm->memory_ns += t5 - t4;
    }
    if (s->memory) {
        s->kept_mu = t->mu;
        s->kept_suspicion = t->suspicion;
        s->kept = B;
    }
    return 0;
}

int scorer_terms(scorer *s, const float *x, int B, detector_result *res, float *x_rec,
                 float *mu, int32_t *nn_ref, float *nn_dist, char *err, size_t errlen) {
    s->kept = 0;
    int rc = scorer_front(s, 0, x, B, 0, 0, x_rec, mu, err, errlen);
    return rc ? rc : back_terms(s, s->slots[0], res, nn_ref, nn_dist, err, errlen);
}

void scorer_kept(const scorer *s, const float **mu, const double **suspicion, int *n) {
    *mu = s->kept_mu;
    *suspicion = s->kept_suspicion;
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

/* The back's finish: fused scores, p-values and verdicts of the B results. */
static int finish(scorer *s, detector_result *res, int B, char *err, size_t errlen) {
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

int scorer_back(scorer *s, int slot, detector_result *res, int32_t *nn_ref, float *nn_dist,
                char *err, size_t errlen) {
    s->kept = 0;
    if (slot < 0 || slot >= s->n_nets) {
        snprintf(err, errlen, "scorer: slot %d outside the %d there are", slot, s->n_nets);
        return -1;
    }
    const int B = s->slots[slot]->B;
    int rc = back_terms(s, s->slots[slot], res, nn_ref, nn_dist, err, errlen);
    return rc ? rc : finish(s, res, B, err, errlen);
}

int scorer_score(scorer *s, const float *x, int B, detector_result *res, float *x_rec,
                 int32_t *nn_ref, float *nn_dist, char *err, size_t errlen) {
    s->kept = 0;
    int rc = scorer_front(s, 0, x, B, 0, 0, x_rec, NULL, err, errlen);
    return rc ? rc : scorer_back(s, 0, res, nn_ref, nn_dist, err, errlen);
}
