/* tsne.h — t-SNE: fit the 2-D reference map, then place new points into it.
 *
 * AnoDM scores a sample partly by where its latent mean lands on a 2-D t-SNE map of the
 * normal training latents (SPEC.md section 1). Two jobs live here:
 *
 * Fit (offline): input affinities P from a Gaussian per point whose bandwidth is found
 * by binary search to the target perplexity over its 3*perplexity exact nearest
 * neighbours, symmetrised and normalised (sparse); Student-t output affinities; the
 * optimiser of van der Maaten's implementations (early exaggeration 12 for 250
 * iterations, momentum 0.5 then 0.8, per-coordinate gains, learning rate
 * max(200, N/12), 1000 iterations). The repulsive half of the gradient is exact
 * (O(N^2), the test oracle), Barnes-Hut (O(N log N), the default) or FFT-accelerated
 * grid interpolation (FIt-SNE's idea, O(N + grid log grid)); on our FFT the grid's cost
 * grows with the map's area and Barnes-Hut measured faster at every N (docs/TSNE.md).
 * Gradients follow the bhtsne/openTSNE convention: dKL/dy_i = 4 * grad_i, which is why
 * the learning rate is N/12 here and N/48 in scikit-learn.
 *
 * Placement (online): the reference map (latents + 2-D positions) never moves. A new
 * latent gets P over its nearest reference latents (same perplexity rule) and only its
 * own 2-D position is optimised, starting from the P-weighted mean of its neighbours'
 * positions. Its output affinities are normalised per point (q_j = w_j / sum_k w_k over
 * the reference), as in openTSNE's transform; the gradient is
 *     exaggeration * sum_j p_j w_j (y - y_j)  -  sum_k w_k^2 (y - y_k) / sum_k w_k.
 * The reference sums are precomputed once on an interpolation grid (tsne_map_create),
 * so a placement costs a kNN scan plus O(iterations * k). Co-placement optimises a set
 * of new points together (their affinities span reference + new points, new points
 * repel each other), and tsne_window keeps the last W placed points as extra fixed
 * points for the daemon's context mode (SPEC.md: "recurring anomaly types form
 * islands"). Scores from the window depend on recent traffic.
 *
 * Threads: a tsne_map is immutable once created, so any number of threads may place
 * into it at once; a tsne_window is one stream's state and takes one caller at a time.
 *
 * Errors: functions return 0 (or a pointer) on success and -1 (or NULL) on bad input or
 * out of memory, with a message in err. Non-finite input, options tsne_options_check or
 * tsne_place_options_check refuses, and (fit only) all points identical are errors.
 * Duplicate points are fine: their affinities tie. */
#ifndef ANODM_TSNE_H
#define ANODM_TSNE_H

#include <stddef.h>
#include <stdint.h>

#include "par.h"

/* ---- the perplexity rule -------------------------------------------------------- */

/* A point's affinities spread over its tsne_neighbours(perplexity) = floor(3 *
 * perplexity) nearest points, in the fit (among the other points of the map) and in
 * placement (among the reference points): a perplexity is usable when it lies in
 * [TSNE_MIN_PERPLEXITY, TSNE_MAX_PERPLEXITY] and that many neighbours exist. Every check
 * of a perplexity, in here and in its callers, is tsne_check_perplexity. */
#define TSNE_MIN_PERPLEXITY 1.0
#define TSNE_MAX_PERPLEXITY 100.0
#define TSNE_MAX_PLACE_ITER 100000    /* placement iterations */
#define TSNE_PLACE_STILL 3            /* tol's count of short steps in a row */
#define TSNE_MAX_PLACE_TOL 1e4        /* tol, map units (a map spans a few hundred) */

int tsne_neighbours(double perplexity);
/* 0, or -1 with a message naming the perplexity, when it is outside the range or when
 * available points (what: e.g. "reference points") cannot give it its neighbours;
 * available < 0: not known yet, only the range is checked. */
int tsne_check_perplexity(double perplexity, int available, const char *what, char *err,
                          size_t errlen);

/* ---- affinities ---------------------------------------------------------------- */

/* Symmetric sparse P in CSR form: row i holds cols[row_ptr[i] .. row_ptr[i+1]). */
typedef struct {
    int n;
    int64_t *row_ptr;   /* n + 1 */
    int *cols;
    double *vals;       /* sums to 1 over all entries */
} tsne_sparse;

/* P for the n rows of X (n x d): perplexity-calibrated, symmetrised, normalised. */
int tsne_affinities(const float *X, int n, int d, double perplexity, int n_threads,
                    tsne_sparse *P, char *err, size_t errlen);
void tsne_sparse_free(tsne_sparse *P);

/* Conditional p_{j|i} over k neighbour squared distances d2 (any order) with the
 * given perplexity; writes p (sums to 1) and returns the perplexity reached. */
double tsne_row_affinities(const float *d2, int k, double perplexity, double *p);

/* ---- gradient and objective ---------------------------------------------------- */

/* grad (n x 2) = exaggeration * attraction - repulsion / Z, exact O(N^2); returns KL. */
double tsne_gradient_exact(const tsne_sparse *P, const double *Y, double exaggeration,
                           double *grad);
/* KL(P || Q) of the embedding Y (n x 2), exact O(N^2), multi-threaded. */
double tsne_kl_exact(const tsne_sparse *P, const double *Y, int n_threads);

/* The fast gradients, for tests and benches: same contract as the exact one (returns
 * KL, with Z approximated too), NAN when out of memory. Barnes-Hut with accuracy theta;
 * FFT grid interpolation (FIt-SNE's scheme, p = 3 nodes per unit box). */
double tsne_gradient_bh(const tsne_sparse *P, const double *Y, double exaggeration,
                        double theta, int n_threads, double *grad);
double tsne_gradient_fft(const tsne_sparse *P, const double *Y, double exaggeration,
                         int n_threads, double *grad);

/* ---- fit ----------------------------------------------------------------------- */

typedef enum { TSNE_INIT_PCA = 0, TSNE_INIT_RANDOM = 1 } tsne_init;
typedef enum {
    TSNE_GRAD_AUTO = 0, TSNE_GRAD_EXACT = 1, TSNE_GRAD_BH = 2, TSNE_GRAD_FFT = 3
} tsne_grad;

/* Called every progress_every iterations and at the end; kl of the current map. */
typedef void (*tsne_progress_fn)(void *ctx, int iter, int n_iter, double kl);

typedef struct {
    double perplexity;      /* 30 */
    int n_iter;             /* 1000 */
    int exag_iter;          /* 250: early exaggeration and low momentum this long */
    double exaggeration;    /* 12 */
    double momentum_early;  /* 0.5 */
    double momentum_late;   /* 0.8 */
    double learning_rate;   /* 0 = max(200, N / 12) */
    tsne_init init;         /* PCA (scaled to std 1e-4) or seeded N(0, 1e-4^2) */
    uint64_t seed;          /* 1; random init only */
    tsne_grad gradient;     /* AUTO: exact for N <= 500, else Barnes-Hut */
    double theta;           /* 0.5: Barnes-Hut accuracy (cell side / distance) */
    int n_threads;          /* 0 = 2 */
    tsne_progress_fn progress;
    void *progress_ctx;
    int progress_every;     /* 50 */
} tsne_options;

void tsne_options_default(tsne_options *o);
/* The fit's options for a map of n points (n 0: not known yet, and the perplexity is
 * only checked against its range): 0, or -1 with a message naming the option. tsne_fit
 * runs it first. */
int tsne_options_check(const tsne_options *o, int n, char *err, size_t errlen);

/* Fit the map of X (n x d) into Y (n x 2, floats); final KL in *kl (may be NULL). */
int tsne_fit(const float *X, int n, int d, const tsne_options *opt, float *Y, double *kl,
             char *err, size_t errlen);

/* ---- placement into a fixed map ------------------------------------------------ */

/* The optimiser is momentum gradient descent with the gradient's norm clipped; no
 * per-coordinate gains (for one 2-D point they grow unchecked and fling it away). */
typedef struct {
    double perplexity;      /* 30: tsne_neighbours(perplexity) reference latents */
    int n_iter;             /* 100 (0..TSNE_MAX_PLACE_ITER); 0 = the P-weighted mean of
                               the neighbours' positions */
    double learning_rate;   /* 1.0 */
    double exaggeration;    /* 1.0 (openTSNE's transform uses 1.5) */
    double momentum;        /* 0.8 */
    double max_grad;        /* 1.0: a point's gradient norm is clipped to this */
    double tol;             /* 0: always n_iter steps; > 0: single placement stops early
                               once TSNE_PLACE_STILL steps in a row each moved the point
                               less than tol map units (co-placement ignores it);
                               at most TSNE_MAX_PLACE_TOL. Bundles before format 6 load
                               with 0 */
    int exact;              /* 0: grid field; 1: exact sums over the reference (oracle) */
    int n_threads;          /* 1: threads for co-placement and the window */
} tsne_place_options;

void tsne_place_options_default(tsne_place_options *o);
/* Placement options for a map of n_ref reference points (0: not known yet): 0, or -1
 * with a message naming the option. Every placement function runs it first. */
int tsne_place_options_check(const tsne_place_options *o, int n_ref, char *err,
                             size_t errlen);

/* The fixed reference: latents, positions, repulsion field grid and a 2-D index. */
typedef struct tsne_map tsne_map;

/* Copies X (n x d) and Y (n x 2). box_width: the field grid's box size in map units
 * (0 = 0.5, 3 nodes per box), capped so the grid's FFT is at most 2048^2: a 10000-point
 * map (extent ~170) then holds ~38 MB and needs ~100 MB more while it is built; a
 * larger box_width trades field accuracy for memory (docs/TSNE.md). */
tsne_map *tsne_map_create(const float *X, const float *Y, int n, int d, double box_width,
                          char *err, size_t errlen);
void tsne_map_free(tsne_map *m);
int tsne_map_size(const tsne_map *m);
int tsne_map_dim(const tsne_map *m);
/* Memory held by the map, bytes. */
size_t tsne_map_bytes(const tsne_map *m);

/* The repulsion sums of the reference at q: rep = sum K2(q - y_k)(q - y_k) and
 * z = sum K1(q - y_k), from the grid (exact = 0) or by direct summation (exact = 1). */
void tsne_map_field(const tsne_map *m, const double q[2], int exact, double rep[2],
                    double *z);

/* Place one latent x (d floats) alone; position in y[2]. */
int tsne_place(const tsne_map *m, const tsne_place_options *opt, const float *x, float y[2],
               char *err, size_t errlen);
/* Where placement's time goes, summed over the rows placed (nanoseconds, monotonic): the
 * neighbour search, the perplexity calibration (with the start position), the gradient
 * iterations, in CPU time of the placing thread; and the gradient steps taken (at most
 * n_iter a row, fewer when tol stops a row early), so that the iterations' time can be
 * read per step. For `anodm bench-score`; costs a clock read per stage when asked for, once
 * for each group of rows a batch places in lockstep (groups counts them), so that the
 * reads' own time can be taken off. */
typedef struct {
    long long search_ns, calibrate_ns, iterate_ns;
    long long steps;
    long long groups;       /* lockstep groups timed: the clock reads a stage */
} tsne_place_timing;
/* What placement's own neighbour search can report of each row, read off it rather than
 * searched again: the distance to the nearest reference latent (tsne_map_latent_nn's
 * value) and to the k nearest, ascending (tsne_map_latent_knn's, for 1 <= k <= 3 *
 * perplexity): row i at ranks[i * k]. Either array may be NULL. timing, when not NULL,
 * gets the stages' times added (placement on one thread only: with more, the threads'
 * sums would race). */
typedef struct {
    double *nearest;
    double *ranks;
    int k;
    tsne_place_timing *timing;
} tsne_place_knn;
/* Place count latents independently (each result equals tsne_place of that row); nb, when
 * not NULL, gets each row's neighbour distances. */
int tsne_place_batch(const tsne_map *m, const tsne_place_options *opt, const float *X,
                     int count, int n_threads, float *Y, const tsne_place_knn *nb, char *err,
                     size_t errlen);
/* Place count latents together: affinities over reference + the set, attraction and
 * repulsion among the set; the reference stays fixed. */
int tsne_coplace(const tsne_map *m, const tsne_place_options *opt, const float *X,
                 int count, float *Y, char *err, size_t errlen);

/* D_MAP: mean Euclidean distance from y to its k nearest reference positions; their
 * indices and distances, nearest first (ties by lower index), go to idx / dist when not
 * NULL. Returns -1 if k is not in [1, n] or when out of memory (idx and dist then
 * unset), and NaN (indices 0..k-1, distances NaN) if y is not finite. */
double tsne_map_dmap(const tsne_map *m, const float y[2], int k, int *idx, float *dist);

/* D_LATENT: Euclidean distance from the latent x (d floats) to its nearest reference
 * latent, by the same exact scan placement uses (batch-invariant). */
double tsne_map_latent_nn(const tsne_map *m, const float *x);
/* The distances from x to its k nearest reference latents, ascending, into dist
 * (1 <= k <= min(n, KNN_MAX_K)), by the same scan: the stream memory's reference side. */
void tsne_map_latent_knn(const tsne_map *m, const float *x, int k, double *dist);

/* ---- sliding window (daemon context mode) -------------------------------------- */

/* The last `capacity` placed points (latents and positions) act as extra fixed points
 * for the next batch, which is co-placed against reference + window, then appended
 * (the oldest leave). Memory: capacity * (d + 2) floats; time per batch bounded by
 * (capacity + n_ref) * batch * d for the neighbour scan plus the iterations. */
typedef struct tsne_window tsne_window;

tsne_window *tsne_window_create(const tsne_map *m, int capacity, char *err, size_t errlen);
void tsne_window_free(tsne_window *w);
int tsne_window_count(const tsne_window *w);
/* The window's positions: tsne_window_count x 2, oldest first, valid until the next add. */
const float *tsne_window_positions(const tsne_window *w);
/* Co-place the batch X (count x d) against reference + window; positions in Y. A batch
 * whose positions come out non-finite (latents too large for the map's arithmetic) is not
 * appended, so that it cannot spoil every later placement; its Y is returned as computed
 * (0 still) for the caller to refuse. */
int tsne_window_add(tsne_window *w, const tsne_place_options *opt, const float *X,
                    int count, float *Y, char *err, size_t errlen);

#endif
