/* score.h — the anomaly score's terms. For now the reconstruction term of the paper
 * (eq. 3); the map term and the fused score join it with the t-SNE engine. */
#ifndef ANODM_SCORE_H
#define ANODM_SCORE_H

#include <stddef.h>

/* D_RE = ||x - x'||^2 / ||x||_2 over dim values. An all-zero x divides by 1e-12 instead:
 * any reconstruction error of an empty sample is then enormous, as it should be. */
double score_recon_error(const float *x, const float *x_rec, size_t dim);

#endif
