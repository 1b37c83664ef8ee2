/* The one-vs-rest evaluation: every method's scores for one trained detector. */
#include "experiment.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auroc.h"
#include "errmsg.h"
#include "knn.h"
#include "rng.h"
#include "scorer.h"

#define TERMS_BATCH 256

const char *const EXP_METHOD_ID[EXP_N_METHODS] = {
    "re", "map_joint", "map_coplaced", "map_stream", "map_alone", "latent_nn",
    "paper_best_alpha", "fused_detector", "fused_joint", "fused_coplaced", "fused_stream",
    "fused_latent_nn"};

const double EXP_ALPHA_GRID[EXP_N_ALPHA] = {0,   0.005, 0.01, 0.05, 0.1, 0.2,  0.3,  0.4,
                                            0.5, 0.6,   0.7,  0.8,  0.9, 0.95, 0.99, 1};

void experiment_opts_default(experiment_opts *o) {
    memset(o, 0, sizeof *o);
    tsne_options_default(&o->joint);
    o->stream_batch = 32;
    o->seed = 1;
    o->n_threads = 2;
    o->latent_k = 1;
}

int experiment_opts_check(const experiment_opts *o, int n_ref, char *err, size_t errlen) {
    if (tsne_options_check(&o->joint, n_ref, err, errlen)) {
        err_prefix(err, errlen, "joint map");
        return -1;
    }
    if (o->stream_batch < 1)
        return err_fail(err, errlen, "stream batch %d: at least 1", o->stream_batch);
    if (o->n_threads < 0 || o->n_threads > PAR_MAX_THREADS)
        return err_fail(err, errlen, "threads %d outside 0..%d", o->n_threads, PAR_MAX_THREADS);
    int k_max = n_ref < KNN_MAX_K ? n_ref : KNN_MAX_K;
    if (o->latent_k < 1 || o->latent_k > k_max)
        return err_fail(err, errlen, "latent_k %d outside 1..%d (n_ref %d, at most %d)",
                        o->latent_k, k_max, n_ref, KNN_MAX_K);
    return 0;
}

void experiment_latent_nn(const float *ref, int n, int d, const float *Q, int m, int k,
                          double *out) {
    int idx[KNN_MAX_K];
    float d2[KNN_MAX_K];
    for (int i = 0; i < m; i++) {
        knn_query(ref, n, d, Q + (size_t)i * d, k, -1, idx, d2);
        double sum = 0;
        for (int r = 0; r < k; r++) sum += sqrt((double)d2[r]);
        out[i] = sum / k;
    }
}

void experiment_map_distance(const float *R, int n, const float *Y, int m, int k, double *out) {
    double best[KNN_MAX_K];
    for (int i = 0; i < m; i++) {
        int have = 0;
        for (int j = 0; j < n; j++) {
            double dx = (double)Y[2 * i] - R[2 * j], dy = (double)Y[2 * i + 1] - R[2 * j + 1];
            double d2 = dx * dx + dy * dy;
            if (have == k && d2 >= best[k - 1]) continue;
            int r = have < k ? have++ : k - 1;          /* insertion into the sorted k best */
            while (r > 0 && best[r - 1] > d2) {
                best[r] = best[r - 1];
                r--;
            }
            best[r] = d2;
        }
        double sum = 0;
        for (int r = 0; r < k; r++) sum += sqrt(best[r]);
        out[i] = sum / k;
    }
}

int experiment_joint_dmap(const float *ref, int n, const float *Q, int m, int d, int k,
                          const tsne_options *opt, double *out, char *err, size_t errlen) {
    if (k < 1 || k > n || k > KNN_MAX_K) {
        snprintf(err, errlen, "joint map: k %d outside 1..%d", k, n < KNN_MAX_K ? n : KNN_MAX_K);
        return -1;
    }
    const size_t total = (size_t)n + (size_t)m;
    float *X = malloc(total * (size_t)d * sizeof *X), *Y = malloc(total * 2 * sizeof *Y);
    int rc = -1;
    if (!X || !Y) {
        snprintf(err, errlen, "joint map: out of memory for %zu points", total);
        goto done;
    }
    memcpy(X, ref, (size_t)n * d * sizeof *X);
    memcpy(X + (size_t)n * d, Q, (size_t)m * d * sizeof *X);
    if (tsne_fit(X, (int)total, d, opt, Y, NULL, err, errlen) != 0) goto done;
    experiment_map_distance(Y, n, Y + (size_t)n * 2, m, k, out);
    rc = 0;
done:
    free(X);
    free(Y);
    return rc;
}

double experiment_best_alpha(const double *a, const double *b, const int *is_pos, size_t n,
                             double *best_auc) {
    double best = EXP_ALPHA_GRID[0], best_v = -1;
    double *s = malloc(n * sizeof *s);
    if (!s) {
        *best_auc = NAN;
        return NAN;
    }
    for (int g = 0; g < EXP_N_ALPHA; g++) {
        const double al = EXP_ALPHA_GRID[g];
        for (size_t i = 0; i < n; i++) s[i] = al * a[i] + (1 - al) * b[i];
        double v = auroc(s, is_pos, n);
        if (v > best_v) {
            best_v = v;
            best = al;
        }
    }
    free(s);
    *best_auc = best_v;
    return best;
}

void experiment_fuse(const double *a, term_stats sa, const double *b, term_stats sb,
                     double alpha, size_t n, double *out) {
    for (size_t i = 0; i < n; i++)
        out[i] = alpha * score_standardise(a[i], sa) + (1 - alpha) * score_standardise(b[i], sb);
}

size_t experiment_anomaly_subset(const int *is_pos, size_t n, double rate, uint64_t seed,
                                 size_t *idx) {
    size_t n_pos = 0, kept = 0;
    for (size_t i = 0; i < n; i++) n_pos += is_pos[i] != 0;
    size_t n_neg = n - n_pos;
    if (!n_pos || !n_neg || !(rate > 0 && rate < 1)) return 0;
    double want = floor(rate * (double)n_neg / (1.0 - rate) + 0.5);
    size_t n_keep = want < 1 ? 1 : want > (double)n_pos ? n_pos : (size_t)want;
    /* A seeded shuffle of the anomalies' ranks; the first n_keep ranks are kept. */
    size_t *rank = malloc(n_pos * sizeof *rank);
    unsigned char *keep = calloc(n_pos, 1);
    if (!rank || !keep) {
        free(rank);
        free(keep);
        return 0;
    }
    for (size_t j = 0; j < n_pos; j++) rank[j] = j;
    rng_t r;
    rng_seed(&r, seed);
    rng_shuffle(&r, rank, n_pos);
    for (size_t j = 0; j < n_keep; j++) keep[rank[j]] = 1;
    for (size_t i = 0, j = 0; i < n; i++)
        if (!is_pos[i] || keep[j++]) idx[kept++] = i;
    free(rank);
    free(keep);
    return kept;
}

size_t experiment_balanced_subset(const int32_t *labels, size_t n, size_t limit, size_t *idx) {
    if (limit >= n) {
        for (size_t i = 0; i < n; i++) idx[i] = i;
        return n;
    }
    /* Labels are compacted to their distinct values first, so any int32 labels work. */
    int32_t *vals = malloc(n * sizeof *vals);
    size_t *count = calloc(n, sizeof *count), *quota = calloc(n, sizeof *quota);
    double *rem = malloc(n * sizeof *rem);
    size_t nv = 0, taken = 0;
    if (!vals || !count || !quota || !rem) goto done;
    for (size_t i = 0; i < n; i++) {
        size_t v = 0;
        while (v < nv && vals[v] != labels[i]) v++;
        if (v == nv) vals[nv++] = labels[i];
        count[v]++;
    }
    size_t given = 0;
    for (size_t v = 0; v < nv; v++) {
        double share = (double)limit * (double)count[v] / (double)n;
        quota[v] = (size_t)share;
        rem[v] = share - (double)quota[v];
        given += quota[v];
    }
    while (given < limit) {                         /* largest remainders, first on ties */
        size_t best = 0;
        for (size_t v = 1; v < nv; v++)
            if (rem[v] > rem[best]) best = v;
        quota[best]++;
        rem[best] = -1;
        given++;
    }
    for (size_t i = 0; i < n && taken < limit; i++) {
        size_t v = 0;
        while (vals[v] != labels[i]) v++;
        if (quota[v]) {
            quota[v]--;
            idx[taken++] = i;
        }
    }
done:
    free(vals);
    free(count);
    free(quota);
    free(rem);
    return taken;
}

static int cmp_size(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

size_t experiment_random_subset(const int32_t *labels, size_t n, size_t limit, uint64_t seed,
                                size_t *idx) {
    if (limit >= n) return experiment_balanced_subset(labels, n, limit, idx);
    /* The balanced subset of a seeded permutation: each label's first samples in the
     * permuted order are a random choice of its samples. */
    size_t *perm = malloc(n * sizeof *perm), k = 0;
    int32_t *permuted = malloc(n * sizeof *permuted);
    if (perm && permuted) {
        rng_t r;
        rng_seed(&r, seed);
        for (size_t i = 0; i < n; i++) perm[i] = i;
        rng_shuffle(&r, perm, n);
        for (size_t i = 0; i < n; i++) permuted[i] = labels[perm[i]];
        k = experiment_balanced_subset(permuted, n, limit, idx);
        for (size_t j = 0; j < k; j++) idx[j] = perm[idx[j]];
        qsort(idx, k, sizeof *idx, cmp_size);
    }
    free(perm);
    free(permuted);
    return k;
}

/* The detector's own terms for n samples: D_RE, D_MAP alone, latent means, fused score
 * (fused may be NULL), by the scorer the daemon runs. */
static int detector_terms(const detector *d, const float *x, int n, double *re, double *alone,
                          float *mu, double *fused, char *err, size_t errlen) {
    const size_t dim = shape_size(d->vae.arch.in), L = (size_t)d->vae.arch.latent;
    detector_result res[TERMS_BATCH];
    scorer *s = scorer_create(d, TERMS_BATCH, err, errlen);
    if (!s) return -1;
    for (int i = 0; i < n; i += TERMS_BATCH) {
        int B = n - i < TERMS_BATCH ? n - i : TERMS_BATCH;
        if (scorer_terms(s, x + (size_t)i * dim, B, res, NULL, mu + (size_t)i * L, NULL, NULL,
                         err, errlen) != 0) {
            scorer_free(s);
            return -1;
        }
        for (int b = 0; b < B; b++) {
            detector_finish_result(d, &res[b]);
            re[i + b] = res[b].d_re;
            alone[i + b] = res[b].d_map;
            if (fused) fused[i + b] = res[b].score;
        }
    }
    scorer_free(s);
    return 0;
}

/* D_MAP of n map positions Y. */
static int dmap_of(const detector *d, const tsne_map *map, const float *Y, int n, double *out,
                   char *err, size_t errlen) {
    for (int i = 0; i < n; i++)
        if ((out[i] = tsne_map_dmap(map, Y + 2 * i, d->k, NULL, NULL)) < 0) {
            snprintf(err, errlen, "map distance: out of memory");
            return -1;
        }
    return 0;
}

/* D_MAP of n latents co-placed together into the fixed map. */
static int coplaced_dmap(const detector *d, const tsne_map *map, const tsne_place_options *po,
                         const float *mu, int n, float *Y, double *out, char *err,
                         size_t errlen) {
    if (tsne_coplace(map, po, mu, n, Y, err, errlen) != 0) return -1;
    return dmap_of(d, map, Y, n, out, err, errlen);
}

/* D_MAP of n latents fed in a seeded random order, batch by batch, through a fresh
 * sliding window of the detector's size; out stays in the original order. */
static int stream_dmap(const detector *d, const tsne_map *map, const tsne_place_options *po,
                       const float *mu, int n, const experiment_opts *o, float *Y,
                       double *out, char *err, size_t errlen) {
    const size_t L = (size_t)d->vae.arch.latent;
    const int nb = o->stream_batch;
    size_t *order = malloc((size_t)n * sizeof *order);
    float *xb = malloc((size_t)nb * L * sizeof *xb), *yb = malloc((size_t)nb * 2 * sizeof *yb);
    tsne_window *w = NULL;
    int rc = -1;
    if (!order || !xb || !yb) {
        snprintf(err, errlen, "stream: out of memory");
        goto done;
    }
    if (!(w = tsne_window_create(map, d->window, err, errlen))) goto done;
    rng_t rng;
    rng_seed(&rng, o->seed ^ 0x57AEA3ULL);
    for (int i = 0; i < n; i++) order[i] = (size_t)i;
    rng_shuffle(&rng, order, (size_t)n);
    for (int i = 0; i < n; i += nb) {
        int B = n - i < nb ? n - i : nb;
        for (int b = 0; b < B; b++)
            memcpy(xb + (size_t)b * L, mu + order[i + b] * L, L * sizeof *xb);
        if (tsne_window_add(w, po, xb, B, yb, err, errlen) != 0) goto done;
        for (int b = 0; b < B; b++) memcpy(Y + 2 * order[i + b], yb + 2 * b, 2 * sizeof *Y);
    }
    rc = dmap_of(d, map, Y, n, out, err, errlen);
done:
    tsne_window_free(w);
    free(order);
    free(xb);
    free(yb);
    return rc;
}

/* Per-variant D_MAP arrays for one set of samples (test or calibration). */
enum { V_JOINT, V_COPLACED, V_STREAM, V_ALONE, V_LATENT, V_N };

/* D_RE and every distance variant for n samples x; mu and Y are scratch (n rows). */
static int all_terms(const detector *d, const tsne_map *map, const float *x, int n,
                     const experiment_opts *o, const char *what, experiment_stage_fn stage,
                     void *ctx, double *re, double *v[V_N], double *fused, float *mu, float *Y,
                     char *err, size_t errlen) {
    const int L = d->vae.arch.latent;
    tsne_place_options po = d->place;
    po.n_threads = o->n_threads;
    build_say(stage, ctx, "terms", "%s: %d samples, reconstruction and single placement", what, n);
    if (detector_terms(d, x, n, re, v[V_ALONE], mu, fused, err, errlen)) return -1;
    experiment_latent_nn(d->ref_latent, d->n_ref, L, mu, n, o->latent_k, v[V_LATENT]);
    build_say(stage, ctx, "coplaced", "%s: co-placing %d points into the fixed map", what, n);
    if (coplaced_dmap(d, map, &po, mu, n, Y, v[V_COPLACED], err, errlen)) return -1;
    build_say(stage, ctx, "stream", "%s: %d points through a window of %d, batches of %d", what, n,
        d->window, o->stream_batch);
    if (stream_dmap(d, map, &po, mu, n, o, Y, v[V_STREAM], err, errlen)) return -1;
    build_say(stage, ctx, "joint", "%s: joint t-SNE of %d reference + %d points", what, d->n_ref, n);
    return experiment_joint_dmap(d->ref_latent, d->n_ref, mu, n, L, d->k, &o->joint,
                                 v[V_JOINT], err, errlen);
}

int experiment_scores(const detector *d, const float *x, const int *is_pos, int n,
                      const float *cal, int n_cal, const experiment_opts *o,
                      experiment_stage_fn stage, void *ctx, double *scores[EXP_N_METHODS],
                      double *best_alpha, char *err, size_t errlen) {
    static const int fused_of[V_N] = {EXP_FUSED_JOINT, EXP_FUSED_COPLACED, EXP_FUSED_STREAM,
                                      -1, EXP_FUSED_LATENT_NN};
    static const int raw_of[V_N] = {EXP_MAP_JOINT, EXP_MAP_COPLACED, EXP_MAP_STREAM,
                                    EXP_MAP_ALONE, EXP_LATENT_NN};
    const size_t L = (size_t)d->vae.arch.latent, nmax = (size_t)(n > n_cal ? n : n_cal);
    if (experiment_opts_check(o, d->n_ref, err, errlen)) {
        err_prefix(err, errlen, "experiment");
        return -1;
    }
    if (d->mode != PLACE_SINGLE || n < 2 || n_cal < 2) {
        snprintf(err, errlen, "experiment: needs a single-mode detector, at least 2 test and 2 "
                 "calibration samples");
        return -1;
    }
    double *cal_re = malloc((size_t)n_cal * sizeof *cal_re), *cal_v[V_N] = {0}, *test_v[V_N];
    float *mu = malloc(nmax * L * sizeof *mu), *Y = malloc(nmax * 2 * sizeof *Y);
    tsne_map *map = NULL;
    int rc = -1, ok = cal_re && mu && Y;
    for (int v = 0; v < V_N; v++) {
        test_v[v] = scores[raw_of[v]];
        ok &= (cal_v[v] = malloc((size_t)n_cal * sizeof *cal_v[v])) != NULL;
    }
    if (!ok) {
        snprintf(err, errlen, "experiment: out of memory for %d samples", n);
        goto done;
    }
    if (!(map = tsne_map_create(d->ref_latent, d->ref_map, d->n_ref, (int)L, 0, err, errlen)))
        goto done;
    if (all_terms(d, map, x, n, o, "test", stage, ctx, scores[EXP_RE], test_v,
                  scores[EXP_FUSED_DETECTOR], mu, Y, err, errlen) ||
        all_terms(d, map, cal, n_cal, o, "calibration normals", stage, ctx, cal_re, cal_v, NULL,
                  mu, Y, err, errlen))
        goto done;
    /* RE's statistics are the detector's own (the same normals, the same computation). */
    for (int v = 0; v < V_N; v++)
        if (fused_of[v] >= 0)
            experiment_fuse(scores[EXP_RE], d->re, test_v[v],
                            score_term_stats(cal_v[v], (size_t)n_cal), d->alpha, (size_t)n,
                            scores[fused_of[v]]);
    double auc;
    *best_alpha = experiment_best_alpha(scores[EXP_RE], test_v[V_JOINT], is_pos, (size_t)n, &auc);
    if (isnan(*best_alpha)) {
        snprintf(err, errlen, "experiment: out of memory for the alpha search");
        goto done;
    }
    for (int i = 0; i < n; i++)
        scores[EXP_PAPER_BEST][i] =
            *best_alpha * scores[EXP_RE][i] + (1 - *best_alpha) * test_v[V_JOINT][i];
    rc = 0;
done:
    tsne_map_free(map);
    free(cal_re);
    for (int v = 0; v < V_N; v++) free(cal_v[v]);
    free(mu);
    free(Y);
    return rc;
}
