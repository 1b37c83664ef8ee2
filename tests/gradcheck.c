/* Finite-difference gradient checking. */
#include "gradcheck.h"
#include "check.h"

#include <math.h>

double dot_loss(const float *out, const float *r, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)out[i] * r[i];
    return s;
}

double gradcheck(const char *what, float *x, const float *analytic, size_t n, loss_fn loss,
                 void *ctx, float eps, double atol, double rtol, size_t max_checks) {
    size_t step = n > max_checks ? n / max_checks : 1, bad = 0;
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) /* every entry, not only the sampled ones */
        if (!isfinite(analytic[i]) && bad++ < 5)
            check_fail(__FILE__, __LINE__, "%s[%zu]: analytic gradient %g", what, i, analytic[i]);
    double f0 = loss(ctx);
    if (!isfinite(f0)) {
        check_fail(__FILE__, __LINE__, "%s: loss %g", what, f0);
        bad++;
    }
    if (bad) return INFINITY;
    for (size_t i = 0; i < n; i += step) {
        float saved = x[i];
        x[i] = saved + eps;
        double up = loss(ctx);
        x[i] = saved - eps;
        double down = loss(ctx);
        x[i] = saved;
        double numeric = (up - down) / (2.0 * (double)eps);
        double err = isfinite(numeric) ? fabs(numeric - analytic[i]) : INFINITY;
        if (!isfinite(numeric) || !(err <= atol + rtol * fabs(numeric)))
            check_fail(__FILE__, __LINE__, "%s[%zu]: analytic %.7g numeric %.7g", what, i,
                       analytic[i], numeric);
        if (err > worst) worst = err;
    }
    return worst;
}
