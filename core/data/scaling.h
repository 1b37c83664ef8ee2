/* scaling.h — per-feature scaling fitted on the training normals, which travels with the
 * model: a bundle stores it and the scorer applies it to every sample it scores, so the
 * network always sees inputs on the scale it was trained on, whichever path a sample
 * takes (daemon, anodm score, calibration).
 *
 * For feature j, x'_j = (x_j - center_j) / scale_j with
 *     standard   center = mean, scale = standard deviation (population)
 *     minmax     center = minimum, scale = maximum - minimum: training data to [0, 1]
 * and a feature that is constant on the training set gets scale 1 (nothing to divide).
 * The training range (lo_j, hi_j) is kept as well, to say when a sample is FAR outside
 * what the model has seen: some value beyond [lo - w, hi + w], w = hi - lo. Such a sample
 * is still scored with its values as they are, never clipped; the result says so. */
#ifndef ANODM_SCALING_H
#define ANODM_SCALING_H

#include <stddef.h>

typedef enum { SCALE_NONE = 0, SCALE_STANDARD = 1, SCALE_MINMAX = 2 } scale_kind;
#define SCALE_N 3
extern const char *const SCALE_NAME[SCALE_N]; /* "none", "standard", "minmax" */

typedef struct {
    scale_kind kind;             /* SCALE_NONE: no statistics, samples pass unchanged */
    size_t dim;
    float *stats;                /* 4 x dim, owned: center, scale, lo, hi rows */
} scaling;

#define SCALING_ROWS 4

/* Fit kind on n samples of dim values (n >= 1); SCALE_NONE sets s to none. 0, or -1
 * with a message (out of memory, a non-finite value). */
int scaling_fit(scaling *s, scale_kind kind, const float *x, size_t n, size_t dim,
                char *err, size_t errlen);
/* For a scaling that is not SCALE_NONE: out = the scaled sample x (dim values; out may
 * be x). Returns 1 when x is far outside the training range (above), else 0. */
int scaling_apply(const scaling *s, const float *x, float *out);
/* The inverse, in place: a reconstruction back in the data's units. */
void scaling_invert(const scaling *s, float *x);
/* A scaling that can be applied: kind known, dim values per row, all finite, scales > 0,
 * lo <= hi. 0, or -1 with a message. */
int scaling_check(const scaling *s, size_t dim, char *err, size_t errlen);
void scaling_free(scaling *s);

#endif
