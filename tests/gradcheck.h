/* gradcheck.h — finite-difference gradient checks shared by the layer tests.
 *
 * The loss is any scalar function of a float array (a layer's input or parameters, with
 * the rest captured in ctx). Central differences in float32 have error ~ eps^2 * f''' +
 * rounding / eps; the checked layers are piecewise linear or smooth, so eps = 1e-2 and a
 * loss accumulated in double keep both well under the tolerance the callers choose. */
#ifndef ANODM_GRADCHECK_H
#define ANODM_GRADCHECK_H

#include <stddef.h>

typedef double (*loss_fn)(void *ctx);

/* Compare analytic[i] with (loss(x_i + eps) - loss(x_i - eps)) / 2 eps for up to
 * max_checks evenly spaced i; x is restored. Reports through CHECK; returns worst error.
 * Any non-finite value fails: the loss at x, an analytic gradient anywhere in the n, a
 * numeric one at a checked i. */
double gradcheck(const char *what, float *x, const float *analytic, size_t n, loss_fn loss,
                 void *ctx, float eps, double atol, double rtol, size_t max_checks);

/* sum_i out[i] * r[i] in double: a loss whose gradient with respect to out is r. */
double dot_loss(const float *out, const float *r, size_t n);

#endif
