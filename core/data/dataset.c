/* dataset.c — the sample container: class filters, splits, scaling and freeing. The
 * readers that fill it are dataset_io.c's. */
#include "dataset.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "errmsg.h"
#include "rng.h"

/* ------------------------------------------------------------------ operations */

static int in_list(int32_t v, const int32_t *list, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (list[i] == v) return 1;
    return 0;
}

int dataset_filter_classes(dataset *d, const int32_t *classes, size_t n_classes, int exclude,
                           char *err, size_t errlen) {
    size_t kept = 0;

    if (!d->labels) return err_fail(err, errlen, "the dataset has no labels to filter on");
    exclude = !!exclude;
    for (size_t i = 0; i < d->n; i++) kept += in_list(d->labels[i], classes, n_classes) != exclude;
    if (kept == 0)
        return err_fail(err, errlen, "filter leaves no samples (%s %zu classes of %zu samples)",
                    exclude ? "excluding" : "keeping", n_classes, d->n);
    size_t j = 0;
    for (size_t i = 0; i < d->n; i++) {
        if (in_list(d->labels[i], classes, n_classes) == exclude) continue;
        if (j != i) {
            memcpy(d->x + j * d->dim, d->x + i * d->dim, d->dim * sizeof *d->x);
            d->labels[j] = d->labels[i];
        }
        j++;
    }
    d->n = kept;
    return 0;
}

/* Allocates n samples shaped like proto, with labels if proto has them. */
static int alloc_like(dataset *d, const dataset *proto, size_t n) {
    *d = *proto;
    d->n = n;
    d->x = malloc(n * proto->dim * sizeof *d->x);
    d->labels = proto->labels ? malloc(n * sizeof *d->labels) : NULL;
    if (!d->x || (proto->labels && !d->labels)) {
        dataset_free(d);
        return -1;
    }
    return 0;
}

int dataset_split_rows(size_t n, double frac, uint64_t seed, uint8_t *in_a, char *err,
                       size_t errlen) {
    if (!(frac > 0 && frac < 1))
        return err_fail(err, errlen, "split fraction %g is not strictly between 0 and 1", frac);
    size_t na = (size_t)(frac * (double)n + 0.5);
    if (na == 0 || na >= n)
        return err_fail(err, errlen, "splitting %zu samples at %g leaves a part empty", n, frac);
    /* Selection sampling (Knuth's Algorithm S): sample i goes to a with probability
     * (still needed)/(still left), which picks exactly na samples, uniformly, in one pass
     * that keeps both parts in order. */
    uint64_t state = seed;
    size_t ia = 0;
    for (size_t i = 0; i < n; i++) {
        double u = (double)(rng_splitmix64(&state) >> 11) * 0x1.0p-53;
        in_a[i] = u * (double)(n - i) < (double)(na - ia);
        ia += in_a[i];
    }
    return 0;
}

int dataset_split(const dataset *d, double frac, uint64_t seed, dataset *a, dataset *b,
                  char *err, size_t errlen) {
    memset(a, 0, sizeof *a);
    memset(b, 0, sizeof *b);
    uint8_t *in_a = malloc(d->n ? d->n : 1);
    if (!in_a) return err_fail(err, errlen, "out of memory splitting %zu samples", d->n);
    if (dataset_split_rows(d->n, frac, seed, in_a, err, errlen) != 0) {
        free(in_a);
        return -1;
    }
    size_t na = 0;
    for (size_t i = 0; i < d->n; i++) na += in_a[i];
    if (alloc_like(a, d, na) || alloc_like(b, d, d->n - na)) {
        dataset_free(a);
        free(in_a);
        return err_fail(err, errlen, "out of memory splitting %zu samples", d->n);
    }
    size_t ia = 0, ib = 0;
    for (size_t i = 0; i < d->n; i++) {
        dataset *dst = in_a[i] ? a : b;
        size_t j = in_a[i] ? ia++ : ib++;
        memcpy(dst->x + j * d->dim, d->x + i * d->dim, d->dim * sizeof *d->x);
        if (d->labels) dst->labels[j] = d->labels[i];
    }
    free(in_a);
    return 0;
}

void dataset_scale_minmax(dataset *d, float lo, float hi) {
    for (size_t i = 0; i < d->n; i++) {
        float *row = d->x + i * d->dim;
        float min = row[0], max = row[0];
        for (size_t k = 1; k < d->dim; k++) {
            if (row[k] < min) min = row[k];
            if (row[k] > max) max = row[k];
        }
        /* In double: max - min can overflow float for values near FLT_MAX. */
        double scale = max > min ? ((double)hi - lo) / ((double)max - min) : 0.0;
        for (size_t k = 0; k < d->dim; k++)
            row[k] = (float)(lo + ((double)row[k] - min) * scale);
    }
}

void dataset_free(dataset *d) {
    if (!d) return;
    free(d->x);
    free(d->labels);
    memset(d, 0, sizeof *d);
}
