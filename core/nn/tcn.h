/* tcn.h — the temporal convolutional network encoder: residual blocks of dilated causal
 * 1-D convolutions, skip connections, last time step (keras-tcn's TCN layer).
 *
 * The paper's ECG encoder is keras-tcn's TCN(nb_filters=64, kernel_size=4,
 * dilations=[1,2,4,8,16,32], padding='causal', use_skip_connections=True,
 * dropout_rate=0.05, return_sequences=False). What keras-tcn computes (tcn/tcn.py,
 * ResidualBlock.call and TCN.call), and what is implemented here:
 *   block(x):  h1 = ReLU(CausalConv_d(x));   d1 = Drop(h1)
 *              h2 = ReLU(CausalConv_d(d1));  branch = Drop(h2)
 *              res = x, or Conv1x1(x) when x's channels differ from the filters
 *              out = ReLU(res + branch);      skip = branch
 *   stack(x):  y = sum over blocks of skip;  encoder output = y[:, :, T-1]  [B, filters]
 * keras-tcn also applies a ReLU to the branch after the second dropout ("Act_Conv_Blocks");
 * its input is already >= 0, so it is the identity and is omitted. With skip connections
 * on, the last block's `out` does not reach the encoder output (the skip sum replaces it),
 * so it gets no gradient; there is no activation after the skip sum.
 * Dropout is keras's SpatialDropout1D: one draw per (sample, channel) drops or keeps that
 * channel for all time steps, scaled by 1/(1-p) (core/nn/dropout.h with S = T).
 * Differences from keras-tcn, all of layout or initialisation, none of function:
 *   - channels-first like PyTorch: x [B, C, T] and conv weights [out, in, K] (keras:
 *     [B, T, C] and [K, in, out]); for the ECG's single channel x [B, 1, T] is [B, T].
 *   - no initialiser here: keras uses he_normal kernels and zero biases; the caller
 *     initialises the parameter block.
 *   - only what the paper uses: causal padding, use_skip_connections=True, one stack,
 *     no batch/layer/weight norm, the same filter count in every block.
 * This follows keras-tcn 3.x (the current ResidualBlock class). The old 2.x function API
 * differed: a 1x1 conv on the input before the first block, a 1x1 conv on EVERY residual
 * path, and a linear (not ReLU) residual activation by default. The paper does not say
 * which release it used.
 *
 * Parameters of block k, PyTorch layouts, in one contiguous run, blocks in order:
 *   conv1.weight [F, C_in, K], conv1.bias [F], conv2.weight [F, F, K], conv2.bias [F],
 *   and, only when C_in != F, down.weight [F, C_in, 1], down.bias [F].
 * Activations kept for backward (per block): h1, h2, out [B, F, T] and the two dropout
 * masks [B, F]. The caller owns parameters, activations and scratch (size functions
 * below); nothing is allocated here. Backward ADDS into dx and dparams (the caller
 * zeroes them once per step); either may be NULL. */
#ifndef ANODM_TCN_H
#define ANODM_TCN_H

#include <stddef.h>

#include "rng.h"

#define TCN_MAX_BLOCKS 16

/* One residual block: input [B, in_c, len] -> output and skip [B, filters, len]. */
typedef struct { int in_c, filters, kernel, dilation, len; } tcn_block;

/* The stack: blocks with dilations[0..n_blocks-1], the first reading in_c channels. */
typedef struct {
    int in_c, len, filters, kernel, n_blocks;
    int dilations[TCN_MAX_BLOCKS];
    float dropout;   /* SpatialDropout1D rate, used only in training */
} tcn_config;

/* Nonzero if every size is positive, 1 <= n_blocks <= TCN_MAX_BLOCKS and 0 <= dropout < 1. */
int tcn_config_valid(const tcn_config *cfg);
/* The geometry of block k of the stack. */
tcn_block tcn_block_of(const tcn_config *cfg, int k);

size_t tcn_block_param_count(const tcn_block *blk);   /* floats of the block's parameters */
size_t tcn_block_act_floats(const tcn_block *blk, int B);   /* floats of kept activations */
size_t tcn_block_work_floats(const tcn_block *blk, int B);  /* scratch floats, either pass */

/* Run one block on x [B, in_c, len]; returns its output [B, filters, len] (inside act).
 * skip [B, filters, len], if not NULL, gets the branch ADDED. rng not NULL: training,
 * channel dropout with rate p drawn from rng; NULL: evaluation, no dropout. */
const float *tcn_block_forward(float *act, float *skip, const float *x, const float *params,
                               const tcn_block *blk, int B, float p, rng_t *rng,
                               float *work);
/* Accumulate dx and dparams from dout (gradient of the output; NULL if unused) and dskip
 * (gradient of the skip output; NULL if unused). x and act are the forward's. */
void tcn_block_backward(float *dx, float *dparams, const float *dout, const float *dskip,
                        const float *x, const float *params, const float *act,
                        const tcn_block *blk, int B, float *work);

size_t tcn_param_count(const tcn_config *cfg);          /* floats of all blocks' parameters */
size_t tcn_act_floats(const tcn_config *cfg, int B);     /* floats of kept activations */
size_t tcn_work_floats(const tcn_config *cfg, int B);    /* scratch floats, either pass */

/* out[B, filters] = last time step of the sum of all blocks' skip outputs on x[B, in_c,
 * len]. rng not NULL: training with cfg->dropout; NULL: evaluation. */
void tcn_forward(float *out, float *act, const float *x, const float *params,
                 const tcn_config *cfg, int B, rng_t *rng, float *work);
/* Accumulate dx[B, in_c, len] and dparams from dout[B, filters]; x and act are the forward's. */
void tcn_backward(float *dx, float *dparams, const float *dout, const float *x,
                  const float *params, const float *act, const tcn_config *cfg, int B,
                  float *work);

#endif
