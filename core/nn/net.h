/* net.h — a feed-forward network assembled from a one-line architecture description.
 *
 * The beta-VAE's encoder and decoder differ per data kind (paper Table 3), so instead of
 * one hand-written struct per dataset a network is a sequence of layers parsed from a
 * spec such as
 *     "conv2d(32,3,2,1) relu conv2d(32,3,2,1) relu linear(128) relu linear(128) relu"
 * with shapes inferred from the input shape. The spec string is what a model file stores,
 * so a trained model describes itself. Layers (C channels, K kernel, S stride, P padding):
 *     linear(N)               fully connected, flattens its input
 *     conv2d(C,K,S,P)         convtranspose2d(C,K,S,P,OP)
 *     conv1d(C,K,S,D,P)       dilation D; P = "causal" or a symmetric padding
 *     convtranspose1d(C,K,S,P,OP)
 *     relu  sigmoid  reshape(C,H,W)
 *     bn                      BatchNorm over channels, statistics over batch and H*W
 *                             (BatchNorm2d on images, BatchNorm1d on linear features)
 *     dropout(R)              inverted dropout, R the DROP rate in [0, 1) as PyTorch's
 *     spatialdropout(R)       drops whole channels (Dropout2d, keras SpatialDropout1D)
 *     tcn(F,K,R,D1,...,Dn)    keras-tcn stack on (C,1,W): F filters, kernel K, dropout R,
 *                             one residual block per dilation Di (n <= TCN_MAX_BLOCKS),
 *                             skip connections; outputs the last time step, (F,1,1)
 *     lstm(H)                 LSTM over (C,1,W) read as W steps of C features; outputs
 *                             the last hidden state, (H,1,1)
 * Arguments are non-negative decimal numbers ("0.05"; no exponents); only the rates take
 * fractions, every other argument must be whole. There is no flatten: linear flattens,
 * and tcn and lstm already end in a vector.
 *
 * The net holds no numbers. Parameters live in a caller's flat block, at each layer's
 * param_off: weight, bias, then state (PyTorch layouts; for tcn the core/nn/tcn.h run of its
 * blocks counts as weight, for lstm W_ih, W_hh are the weight and b_ih, b_hh the bias).
 * State is bn's running mean and variance: model state that a weights file must carry,
 * so it sits in the same block as the parameters and a model stays one array. Nothing
 * writes a gradient for it, so its gradient stays 0 and Adam never moves it (Adam without
 * weight decay, as here: decay would shrink it). Activations live in a caller's arena;
 * what a layer keeps for its backward pass besides its output (bn's batch statistics,
 * dropout masks, LSTM and TCN internals) lives in a second caller's arena, the aux. */
#ifndef ANODM_NET_H
#define ANODM_NET_H

#include <stddef.h>

#include "conv.h"
#include "rng.h"
#include "tcn.h"

#define NET_MAX_LAYERS 48
#define NET_SPEC_MAX 1024

typedef struct { int c, h, w; } shape3;      /* one sample's shape; a vector is (n, 1, 1) */

typedef enum {
    LAYER_LINEAR, LAYER_CONV2D, LAYER_CONVT2D, LAYER_CONV1D, LAYER_CONVT1D,
    LAYER_RELU, LAYER_SIGMOID, LAYER_RESHAPE, LAYER_BATCHNORM, LAYER_DROPOUT, LAYER_TCN,
    LAYER_LSTM,
} layer_kind;

typedef struct {
    layer_kind kind;
    shape3 in, out;
    conv_geom geom;          /* convolutions */
    tcn_config tcn;          /* tcn */
    float rate;              /* dropout: probability of dropping */
    int spatial;             /* dropout: one draw per (sample, channel) */
    size_t param_off;        /* into the net's parameter block */
    size_t n_weight, n_bias; /* trainable: weight then bias */
    size_t n_state;          /* non-trainable, after the bias (bn running mean, var) */
    size_t fan_in;           /* for PyTorch's default initialisation bound */
} layer;

typedef struct {
    char spec[NET_SPEC_MAX];
    shape3 in, out;
    int n_layers;
    layer layers[NET_MAX_LAYERS];
    size_t n_params;         /* floats in the parameter block, state included */
    size_t max_sample_act;   /* largest activation, floats per sample */
    size_t act_per_sample;   /* sum of all layer outputs, floats per sample */
} net_def;

/* One forward/backward pair's mode and buffers. A backward pass must use the run (mode,
 * acts, aux) of the forward pass it differentiates. */
typedef struct {
    int train;               /* 1: bn batch statistics and running updates, dropout */
    int keep_bn_stats;       /* train mode without running-statistic updates: every
                                data-parallel shard but the first, so no two threads
                                write the same parameters */
    rng_t *rng;              /* dropout masks; read only in train mode */
    float *acts;             /* B * act_per_sample floats: every layer's output */
    float *aux;              /* net_aux_floats(B) floats: kept for backward */
    float *work;             /* net_work_floats(B) floats: scratch */
    float *dbuf;             /* backward only: 2 * B * max_sample_act floats */
} net_run;

/* Parse spec for inputs of shape `in`; 0, or -1 with a message naming the bad token, and
 * for a layer that does not fit, its number, name and input shape ("layer 3 (conv2d) on
 * 32x1x16: ..."). */
int net_parse(net_def *n, const char *spec, shape3 in, char *err, size_t errlen);
/* Floats per sample in a shape. */
size_t shape_size(shape3 s);
/* Scratch floats net_forward/net_backward need for batch B (at least 1). */
size_t net_work_floats(const net_def *n, int B);
/* Aux floats net_forward keeps for net_backward at batch B (at least 1). */
size_t net_aux_floats(const net_def *n, int B);
/* Initial parameters: PyTorch's defaults. U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the
 * weights and biases of linear and conv layers and of every conv inside tcn (fan_in =
 * in channels * kernel), U(-1/sqrt(H), 1/sqrt(H)) for all of lstm's; bn gamma 1, beta 0,
 * running mean 0, running variance 1. */
void net_init_params(const net_def *n, float *params, rng_t *rng);

/* Multiply-accumulates of one sample's forward pass (for GFLOP/s figures). */
double net_macs_per_sample(const net_def *n);

/* Run all layers on in (B samples); returns the output inside r->acts. Train mode
 * updates bn's running statistics in params; eval mode writes nothing there and is
 * deterministic. */
const float *net_forward(const net_def *n, float *params, const float *in, int B,
                         const net_run *r);
/* Back-propagate dout through the net: ADDS parameter gradients into grads (state
 * entries are left alone) and, when din is not NULL, writes the input gradient to din. */
void net_backward(const net_def *n, const float *params, float *grads, const float *in,
                  const float *dout, float *din, int B, const net_run *r);

#endif
