/* Inverted dropout with a saved, pre-scaled mask. */
#include "dropout.h"

#include <string.h>

void dropout_mask(float *mask, size_t n, float p, rng_t *rng) {
    float keep = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    /* rng_uniform is in [0, 1), so u >= p keeps with probability 1 - p (p = 0 keeps all). */
    for (size_t i = 0; i < n; i++) mask[i] = rng_uniform(rng) >= p ? keep : 0.0f;
}

void dropout_forward(float *out, const float *in, const float *mask, size_t N, size_t S) {
    if (!mask) {
        if (out != in) memmove(out, in, sizeof(float) * N * S);
        return;
    }
    for (size_t i = 0; i < N; i++)
        for (size_t s = 0; s < S; s++) out[i * S + s] = in[i * S + s] * mask[i];
}

void dropout_backward(float *din, const float *dout, const float *mask, size_t N, size_t S) {
    for (size_t i = 0; i < N; i++) {
        float m = mask ? mask[i] : 1.0f;
        for (size_t s = 0; s < S; s++) din[i * S + s] += dout[i * S + s] * m;
    }
}
