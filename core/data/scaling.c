/* Per-feature scaling: fit, apply, invert, check. */
#include "scaling.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "errmsg.h"

const char *const SCALE_NAME[SCALE_N] = {"none", "standard", "minmax"};

void scaling_free(scaling *s) {
    free(s->stats);
    memset(s, 0, sizeof *s);
}

int scaling_fit(scaling *s, scale_kind kind, const float *x, size_t n, size_t dim,
                char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    if (kind == SCALE_NONE) return 0;
    if (n < 1 || dim < 1) return err_fail(err, errlen, "scaling: no samples to fit on");
    float *st = malloc(SCALING_ROWS * dim * sizeof *st);
    double *sum = calloc(2 * dim, sizeof *sum);
    if (!st || !sum) {
        free(st);
        free(sum);
        return err_fail(err, errlen, "scaling: out of memory for %zu features", dim);
    }
    float *center = st, *scale = st + dim, *lo = st + 2 * dim, *hi = st + 3 * dim;
    for (size_t j = 0; j < dim; j++) lo[j] = hi[j] = x[j];
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < dim; j++) {
            float v = x[i * dim + j];
            if (!isfinite(v)) {
                free(st);
                free(sum);
                return err_fail(err, errlen, "scaling: sample %zu, feature %zu is not finite",
                                i, j);
            }
            sum[j] += v;
            if (v < lo[j]) lo[j] = v;
            if (v > hi[j]) hi[j] = v;
        }
    for (size_t j = 0; j < dim; j++) sum[j] /= (double)n;          /* the means */
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < dim; j++) {
            double e = x[i * dim + j] - sum[j];
            sum[dim + j] += e * e;
        }
    for (size_t j = 0; j < dim; j++) {
        double c = kind == SCALE_STANDARD ? sum[j] : lo[j];
        double sc = kind == SCALE_STANDARD ? sqrt(sum[dim + j] / (double)n) : (double)hi[j] - lo[j];
        /* constant in training (up to float rounding of its values): nothing to divide */
        if (!(sc > 1e-6 * (1.0 + fabs(c)))) sc = 1.0;
        center[j] = (float)c;
        scale[j] = (float)sc;
    }
    free(sum);
    s->kind = kind;
    s->dim = dim;
    s->stats = st;
    return 0;
}

int scaling_apply(const scaling *s, const float *x, float *out) {
    const size_t dim = s->dim;
    const float *center = s->stats, *scale = s->stats + dim, *lo = s->stats + 2 * dim,
                *hi = s->stats + 3 * dim;
    int far = 0;
    for (size_t j = 0; j < dim; j++) {
        float v = x[j], w = hi[j] - lo[j];
        far |= !(v >= lo[j] - w && v <= hi[j] + w);    /* NaN counts as far */
        out[j] = (v - center[j]) / scale[j];
    }
    return far;
}

void scaling_invert(const scaling *s, float *x) {
    if (s->kind == SCALE_NONE) return;
    for (size_t j = 0; j < s->dim; j++) x[j] = x[j] * s->stats[s->dim + j] + s->stats[j];
}

int scaling_check(const scaling *s, size_t dim, char *err, size_t errlen) {
    if (s->kind == SCALE_NONE)
        return s->stats ? err_fail(err, errlen, "scaling: none, with statistics") : 0;
    if (s->kind != SCALE_STANDARD && s->kind != SCALE_MINMAX)
        return err_fail(err, errlen, "scaling: unknown kind %d", (int)s->kind);
    if (!s->stats || s->dim != dim)
        return err_fail(err, errlen, "scaling: %zu features, the input has %zu", s->dim, dim);
    const float *center = s->stats, *scale = s->stats + dim, *lo = s->stats + 2 * dim,
                *hi = s->stats + 3 * dim;
    for (size_t j = 0; j < dim; j++)
        if (!isfinite(center[j]) || !isfinite(scale[j]) || !(scale[j] > 0) ||
            !isfinite(lo[j]) || !isfinite(hi[j]) || !(lo[j] <= hi[j]))
            return err_fail(err, errlen, "scaling: feature %zu: center %g, scale %g, range "
                            "[%g, %g]: scales must be > 0 and everything finite", j,
                            center[j], scale[j], lo[j], hi[j]);
    return 0;
}
