/* activation.h — element-wise nonlinearities, forward and backward.
 *
 * Backward ADDS into din like every layer; ReLU's backward reads the forward OUTPUT
 * (out > 0 iff in > 0), so callers need not keep the pre-activation. */
#ifndef ANODM_ACTIVATION_H
#define ANODM_ACTIVATION_H

#include <stddef.h>

void relu_forward(float *out, const float *in, size_t n);             /* max(0, x); out may alias in */
void relu_backward(float *din, const float *dout, const float *out, size_t n); /* din += dout * (out > 0) */
void sigmoid_forward(float *out, const float *in, size_t n);          /* 1 / (1 + e^-x), overflow-safe */
void sigmoid_backward(float *din, const float *dout, const float *out, size_t n); /* din += dout * s(1 - s) */

#endif
