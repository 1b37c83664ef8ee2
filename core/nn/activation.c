/* Element-wise activations. */
#include "activation.h"
#include "simd.h"

#include <math.h>

HOT_LOOP void relu_forward(float *out, const float *in, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = in[i] > 0.0f ? in[i] : 0.0f;
}

HOT_LOOP void relu_backward(float *din, const float *dout, const float *out, size_t n) {
    /* Branch-free: the sign pattern of activations is random, a branch mispredicts. */
    for (size_t i = 0; i < n; i++) din[i] += out[i] > 0.0f ? dout[i] : 0.0f;
}

HOT_LOOP void sigmoid_forward(float *out, const float *in, size_t n) {
    for (size_t i = 0; i < n; i++) {
        /* Never exponentiate a large positive number: e = e^-|x| is e^-x for x >= 0 and
         * e^x below, so 1 / (1 + e) and e / (1 + e) share it and one division, and there
         * is no branch (the signs of logits are mixed). */
        const float x = in[i], e = expf(-fabsf(x));
        out[i] = (x >= 0.0f ? 1.0f : e) / (1.0f + e);
    }
}

HOT_LOOP void sigmoid_backward(float *din, const float *dout, const float *out, size_t n) {
    for (size_t i = 0; i < n; i++) din[i] += dout[i] * out[i] * (1.0f - out[i]);
}
