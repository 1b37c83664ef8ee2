/* score.h — the anomaly score's terms and their calibration, as plain numbers.
 *
 * The two AnoDM terms live on unrelated scales (a normalised squared error, a distance
 * on a t-SNE map), so the paper mixes them with an alpha it picks using test labels.
 * A product has no labels: each term is standardised by its median and robust spread
 * on held-out NORMAL samples, and the mix of standardised terms is thresholded at a
 * quantile of the same normals. Medians rather than means: both terms are heavily
 * right-skewed, and a few odd calibration samples must not move the scale. */
#ifndef ANODM_SCORE_H
#define ANODM_SCORE_H

#include <stddef.h>

typedef struct { double center, scale; } term_stats;   /* standardisation of one term */

/* D_RE = ||x - x'||^2 / ||x||_2 over dim values. An all-zero x divides by 1e-12 instead:
 * any reconstruction error of an empty sample is then enormous, as it should be. */
double score_recon_error(const float *x, const float *x_rec, size_t dim);

/* Median and 1.4826 * median absolute deviation of v (n > 0); the scale falls back to
 * the standard deviation, then to 1, when it is 0. v is not modified. */
term_stats score_term_stats(const double *v, size_t n);
/* (v - center) / scale. */
double score_standardise(double v, term_stats s);
/* The q-quantile of v (n > 0, q in [0, 1]), linear between order statistics. */
double score_quantile(const double *v, size_t n, double q);
/* p-value of s against n ascending calibration scores: (1 + #{cal >= s}) / (n + 1). */
double score_p_value(const float *cal_ascending, size_t n, double s);
/* log p-value of s against n ascending calibration scores, with an exponential tail: up
 * to u, the (k_tail + 1)-th largest score, the empirical p-value above; beyond u,
 *     p(s) = p_u exp(-(s - u) / beta),   p_u = (1 + #{cal > u}) / (n + 1),
 * beta the mean excess over u of the scores above it (the exponential's maximum
 * likelihood fit to the peaks over u). p_u is the empirical p-value just above u, so the
 * tail continues it, and p falls on with s where the empirical one stops at 1 / (n + 1):
 * a sample far beyond every calibration score gets evidence in proportion to how far.
 * Monotone non-increasing in s, finite for finite s (the log is returned so that it
 * cannot underflow). Without a tail (k_tail 0, n < 2, or no spread above u) it is the
 * empirical log p-value. */
double score_log_p_tail(const float *cal_ascending, size_t n, size_t k_tail, double s);
/* The tail's size for n calibration scores: ceil(sqrt(n)), at most n - 1 (n < 2: 0), so
 * that it holds more points as n grows but a shrinking share of them. */
size_t score_tail_size(size_t n);

/* How a detector with a stream memory joins its two pieces of evidence: the base score
 * (alpha * z_re + (1 - alpha) * z_2, all a detector without a memory has) and z_memory.
 * Chosen by measurement (docs/RESULTS.md, "The stream protocol"). */
typedef enum {
    FUSION_BASE = 0,   /* base alone: the memory is reported, not scored */
    FUSION_MEMORY,     /* z_memory alone */
    FUSION_SUM,        /* base + z_memory */
    FUSION_MAX,        /* max(base, z_memory) */
    FUSION_FISHER,     /* -2 (log p(base) + log p(z_memory)), p against a normal stream,
                        * p(base) with its tail (score_log_p_tail) */
    FUSION_N
} score_fusion;
/* Their names: "base", "memory", "sum", "max", "fisher". */
extern const char *const SCORE_FUSION_NAME[FUSION_N];
/* The fused score; FUSION_FISHER reads the p-values off cal_base and cal_memory, the
 * ascending base and z_memory of n calibration samples (unused otherwise). */
double score_fuse(score_fusion f, double base, double z_memory, const float *cal_base,
                  const float *cal_memory, size_t n);

#endif
