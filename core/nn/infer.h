/* infer.h — a network's eval-mode forward pass, batch-invariant, for scoring.
 *
 * net_forward runs training's path: OpenBLAS products, whose rows come out differently
 * with the batch around them (docs/BATCHING.md). A plan is the same network in eval mode
 * (bn on its running statistics, dropout off) on core/nn/gemm.h's fixed-order products,
 * so a sample's outputs are the same bits whatever it is batched with and on every
 * x86-64, and a batch goes through each layer at once:
 * - activations are kept channels-last ([H, W, C] per sample), so a convolution reads,
 *   for each output pixel and kernel tap, a run of C contiguous inputs: no im2col copy;
 * - a transposed convolution of stride s is s x s ordinary convolutions, one per output
 *   phase, each over only the kernel taps that reach it: no col2im scatter, no product
 *   with zeros;
 * - a linear layer after a convolution reads the channels-last activation through
 *   weights permuted once, at planning;
 * - ReLU and eval-mode bn right after a product run in its epilogue, on the sums still in
 *   registers; dropout is nothing, a reshape a permutation only where the layout needs
 *   one and no linear layer (whose columns can be put in any order) comes before it.
 * The plan copies what it needs of the parameters (packed weights, bn's scale and
 * shift): it is a snapshot, to be made again if they change. tcn and lstm layers have no
 * plan (net_plan_supported); a caller runs those nets through net_forward one sample at a
 * time. */
#ifndef ANODM_INFER_H
#define ANODM_INFER_H

#include <stddef.h>

#include "net.h"

typedef struct net_plan net_plan;

/* Nonzero if every layer of n has a kernel here (no tcn, no lstm). */
int net_plan_supported(const net_def *n);
/* A plan for n with parameters params (n's block); NULL with a message when out of memory
 * or for a net net_plan_supported refuses. */
net_plan *net_plan_create(const net_def *n, const float *params, char *err, size_t errlen);
void net_plan_free(net_plan *p);
/* out[B, out size] from in[B, in size], both in the net's own layout (C, H, W per
 * sample); any B >= 1. */
void net_plan_forward(net_plan *p, const float *in, int B, float *out);

#endif
