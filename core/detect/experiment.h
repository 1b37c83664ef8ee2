/* experiment.h — the paper's one-vs-rest evaluation (section 4, Table 1, Figure 4),
 * measured on our detector, without the shortcuts that make it look better than a
 * product can be.
 *
 * One trained detector (normal classes only) scores a labelled test set in every way
 * the comparison needs. The map term is measured under four placements, because the
 * placement decides most of its power (SPEC.md section 1):
 *   joint     t-SNE fitted on reference + test latents together, as the paper does:
 *             test anomalies shape the map, so they can form islands of their own;
 *   coplaced  the whole test set placed together into the fixed reference map;
 *   stream    test points in random order, batches of 32 through the daemon's sliding
 *             window (context mode), as live traffic would arrive;
 *   alone     each point alone into the fixed map (the daemon's single mode).
 * In every placement a test point's D_MAP counts only REFERENCE points as neighbours:
 * other test points (or calibration points) never serve as "normal" neighbours, else an
 * island of anomalies would look dense and normal to itself.
 *
 * Two kinds of fusion are kept apart. The paper's score alpha*D_RE + (1-alpha)*D_MAP
 * picks alpha on the test labels (experiment_best_alpha): reported, but labelled as
 * such. The label-free fusion standardises each term by its median and robust spread on
 * held-out calibration NORMALS, each map variant's statistics measured on those normals
 * with the same placement, and mixes with the detector's alpha; test labels only enter
 * the auROC. No I/O here: the command line writes the tables and plots. */
#ifndef ANODM_EXPERIMENT_H
#define ANODM_EXPERIMENT_H

#include <stddef.h>
#include <stdint.h>

#include "detector.h"
#include "pipeline.h"
#include "score.h"
#include "tsne.h"

/* The scores computed per test point, one array each (higher = more anomalous). */
typedef enum {
    EXP_RE = 0,            /* D_RE alone (the paper's beta-VAE column) */
    EXP_MAP_JOINT,         /* D_MAP, joint t-SNE of reference + test */
    EXP_MAP_COPLACED,      /* D_MAP, test set co-placed into the fixed map */
    EXP_MAP_STREAM,        /* D_MAP, sliding window, batches of 32, random order */
    EXP_MAP_ALONE,         /* D_MAP, each point alone */
    EXP_LATENT_NN,         /* latent 1-NN distance to the reference means */
    EXP_PAPER_BEST,        /* alpha*D_RE + (1-alpha)*D_MAP(joint), alpha from TEST LABELS */
    EXP_FUSED_DETECTOR,    /* the detector's label-free score (RE + alone), scorer_score */
    EXP_FUSED_JOINT,       /* label-free RE + joint map */
    EXP_FUSED_COPLACED,    /* label-free RE + co-placed map */
    EXP_FUSED_STREAM,      /* label-free RE + stream map */
    EXP_FUSED_LATENT_NN,   /* label-free RE + latent 1-NN */
    EXP_N_METHODS
} exp_method;

/* Short identifiers of the methods ("re", "map_joint", ...), for keys and file names. */
extern const char *const EXP_METHOD_ID[EXP_N_METHODS];

/* The paper's alpha grid {0, 0.005, 0.01, 0.05, 0.1, ..., 0.9, 0.95, 0.99, 1}. */
#define EXP_N_ALPHA 16
extern const double EXP_ALPHA_GRID[EXP_N_ALPHA];

typedef struct {
    tsne_options joint;    /* the joint fits (perplexity, iterations, threads) */
    int stream_batch;      /* 32 */
    uint64_t seed;         /* stream order */
    int n_threads;         /* placement threads (2) */
    int latent_k;          /* the latent term: mean distance to this many nearest (1) */
} experiment_opts;

/* Stage messages ("terms", "joint", ...) with a detail line, for progress output. */
typedef build_stage_fn experiment_stage_fn;   /* stage messages, as the build's */

void experiment_opts_default(experiment_opts *o);
/* o for a detector of n_ref reference points (the joint fits hold more): the joint fits'
 * options (tsne_options_check), a stream batch >= 1, threads in 0..PAR_MAX_THREADS and
 * latent_k in 1..min(n_ref, KNN_MAX_K). 0, or -1 with a message naming the option;
 * experiment_scores runs it first. */
int experiment_opts_check(const experiment_opts *o, int n_ref, char *err, size_t errlen);

/* Mean Euclidean distance from each of the m rows of Q (m x d) to its k nearest rows of
 * ref (n x d) into out (m); k = 1: the distance to the nearest. Needs 1 <= k <=
 * min(n, KNN_MAX_K of knn.h). */
void experiment_latent_nn(const float *ref, int n, int d, const float *Q, int m, int k,
                          double *out);

/* Mean 2-D distance from each of the m points Y (m x 2) to its k nearest points of
 * R (n x 2), into out (m); the points of Y are never each other's neighbours.
 * Needs 1 <= k <= min(n, KNN_MAX_K of knn.h). */
void experiment_map_distance(const float *R, int n, const float *Y, int m, int k, double *out);

/* The joint map: t-SNE of the rows of ref (n x d) and Q (m x d) together, then each Q
 * row's mean 2-D distance to its k nearest REFERENCE points into out (m). */
int experiment_joint_dmap(const float *ref, int n, const float *Q, int m, int d, int k,
                          const tsne_options *opt, double *out, char *err, size_t errlen);

/* alpha * a + (1 - alpha) * b over the grid; returns the alpha with the highest auROC
 * against is_pos (the first on ties), that auROC in *best_auc. Uses the labels.
 * NaN if out of memory. */
double experiment_best_alpha(const double *a, const double *b, const int *is_pos, size_t n,
                             double *best_auc);

/* out = alpha * (a - sa) + (1 - alpha) * (b - sb), each term standardised. */
void experiment_fuse(const double *a, term_stats sa, const double *b, term_stats sb,
                     double alpha, size_t n, double *out);

/* The first `limit` of n labelled samples with class proportions kept: each label's
 * quota is its share of limit (largest remainders get the rest), filled by its first
 * samples in file order. Writes the chosen indices, ascending, to idx; returns their
 * count (min(limit, n)), or 0 if out of memory. */
size_t experiment_balanced_subset(const int32_t *labels, size_t n, size_t limit, size_t *idx);

/* The same quotas, each label's filled by a seeded random choice among its samples
 * instead of its first ones (for data stored in an order that matters, such as beats in
 * record order). Indices ascending; their count, or 0 if out of memory. */
size_t experiment_random_subset(const int32_t *labels, size_t n, size_t limit, uint64_t seed,
                                size_t *idx);

/* The test set at a chosen anomaly rate: every normal (is_pos[i] == 0) and a seeded
 * random choice of round(rate * n_normal / (1 - rate)) anomalies (at least 1, at most
 * all), so anomalies make up `rate` of the result. Writes the kept indices, ascending,
 * to idx (n entries suffice); returns their count, 0 if out of memory or if there is no
 * normal or no anomaly. Needs 0 < rate < 1. */
size_t experiment_anomaly_subset(const int *is_pos, size_t n, double rate, uint64_t seed,
                                 size_t *idx);

/* Every method's score of the n test samples x (row-major, detector input size) into
 * scores[method] (n doubles each), with the calibration normals cal (n_cal rows, never
 * seen in training nor in the map) for the label-free statistics. is_pos is used only
 * for EXP_PAPER_BEST, whose alpha goes to *best_alpha. d must be in single mode. */
int experiment_scores(const detector *d, const float *x, const int *is_pos, int n,
                      const float *cal, int n_cal, const experiment_opts *o,
                      experiment_stage_fn stage, void *ctx, double *scores[EXP_N_METHODS],
                      double *best_alpha, char *err, size_t errlen);

#endif
