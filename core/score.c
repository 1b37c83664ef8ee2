/* Anomaly score terms. */
#include "score.h"

#include <math.h>

double score_recon_error(const float *x, const float *x_rec, size_t dim) {
    double err = 0.0, norm = 0.0;
    for (size_t i = 0; i < dim; i++) {
        double d = (double)x[i] - x_rec[i];
        err += d * d;
        norm += (double)x[i] * x[i];
    }
    norm = sqrt(norm);
    return err / (norm > 1e-12 ? norm : 1e-12);
}
