/* auroc.h — area under the ROC curve, the paper's metric, and the curve itself.
 *
 * auROC is the probability that a random positive (anomaly) scores above a random
 * negative, ties counting one half: computed exactly from ranks (Mann-Whitney U) with
 * tied scores given their average rank, so the value is the same whatever the order of
 * equal scores. */
#ifndef ANODM_AUROC_H
#define ANODM_AUROC_H

#include <stddef.h>

/* auROC of scores (higher = more anomalous) against is_pos (nonzero = positive); NaN if
 * either class is empty or a score is NaN. */
double auroc(const double *scores, const int *is_pos, size_t n);
/* ROC points at every distinct threshold, from (0,0) to (1,1): fpr and tpr arrays of
 * n + 1 entries; returns the number of points written, or 0 if a class is empty. */
size_t roc_curve(const double *scores, const int *is_pos, size_t n, double *fpr, double *tpr);
/* The true-positive rate at a false-positive rate of at most max_fpr: the best TPR of a
 * threshold (flag scores >= it) whose FPR is <= max_fpr, tied scores flagged together,
 * no interpolation. NaN as auroc. What a user with an alarm budget gets. */
double roc_tpr_at_fpr(const double *scores, const int *is_pos, size_t n, double max_fpr);

#endif
