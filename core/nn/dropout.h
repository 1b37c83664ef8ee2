/* dropout.h — inverted dropout, element-wise or whole channels, forward and backward.
 *
 * Training draws a mask whose entries are 0 (dropped, probability p) or 1/(1-p) (kept),
 * so the expected output equals the input and eval mode is the identity (inverted
 * dropout, as in PyTorch). The mask stores the scale itself, so forward and backward are
 * one multiply and backward needs nothing but the saved mask.
 *
 * One mask entry may cover a group of S consecutive values: on [N, S] data, value
 * (i, s) is multiplied by mask[i]. S = 1 is plain nn.Dropout; on [B, C, L] with S = L and
 * N = B*C it drops whole channels, i.e. Keras's SpatialDropout1D (channels-first here)
 * or PyTorch's Dropout1d. Masks come from an explicit rng_t (core/base/rng.h) so that training
 * is reproducible from its seed. Backward ADDS into din (the caller zeroes it). */
#ifndef ANODM_DROPOUT_H
#define ANODM_DROPOUT_H

#include <stddef.h>

#include "rng.h"

/* Draw n mask entries: 0 with probability p, else 1/(1-p) (p >= 1 drops everything). */
void dropout_mask(float *mask, size_t n, float p, rng_t *rng);
/* out[i*S + s] = in[i*S + s] * mask[i] for i < N; mask NULL (eval) copies; out may alias in. */
void dropout_forward(float *out, const float *in, const float *mask, size_t N, size_t S);
/* din[i*S + s] += dout[i*S + s] * mask[i]; mask NULL (eval) passes dout through. */
void dropout_backward(float *din, const float *dout, const float *mask, size_t N, size_t S);

#endif
