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
 * The net holds no numbers: parameters live in a caller's flat block (at each layer's
 * param_off, weight then bias, PyTorch layouts), activations in a caller's arena. */
#ifndef ANODM_NET_H
#define ANODM_NET_H

#include <stddef.h>

#include "conv.h"
#include "rng.h"

#define NET_MAX_LAYERS 48
#define NET_SPEC_MAX 1024

typedef struct { int c, h, w; } shape3;      /* one sample's shape; a vector is (n, 1, 1) */

typedef enum {
    LAYER_LINEAR, LAYER_CONV2D, LAYER_CONVT2D, LAYER_CONV1D, LAYER_CONVT1D,
    LAYER_RELU, LAYER_SIGMOID, LAYER_RESHAPE,
} layer_kind;

typedef struct {
    layer_kind kind;
    shape3 in, out;
    conv_geom geom;          /* convolutions */
    size_t param_off;        /* into the net's parameter block */
    size_t n_weight, n_bias; /* weight then bias */
    size_t fan_in;           /* for PyTorch's default initialisation bound */
} layer;

typedef struct {
    char spec[NET_SPEC_MAX];
    shape3 in, out;
    int n_layers;
    layer layers[NET_MAX_LAYERS];
    size_t n_params;         /* floats in the parameter block */
    size_t max_sample_act;   /* largest activation, floats per sample */
    size_t act_per_sample;   /* sum of all layer outputs, floats per sample */
} net_def;

/* Parse spec for inputs of shape `in`; 0, or -1 with a message naming the bad token. */
int net_parse(net_def *n, const char *spec, shape3 in, char *err, size_t errlen);
/* Floats per sample in a shape. */
size_t shape_size(shape3 s);
/* Scratch floats net_forward/net_backward need for batch B. */
size_t net_work_floats(const net_def *n, int B);
/* PyTorch's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases. */
void net_init_params(const net_def *n, float *params, rng_t *rng);

/* Multiply-accumulates of one sample's forward pass (for GFLOP/s figures). */
double net_macs_per_sample(const net_def *n);

/* Run all layers. acts: B * act_per_sample floats; returns the output inside acts. */
const float *net_forward(const net_def *n, const float *params, const float *in, float *acts,
                         int B, float *work);
/* Back-propagate dout through the net: ADDS parameter gradients into grads and, when din
 * is not NULL, the input gradient into din. dbuf: 2 * B * max_sample_act floats. */
void net_backward(const net_def *n, const float *params, float *grads, const float *in,
                  const float *acts, const float *dout, float *din, int B, float *dbuf,
                  float *work);

#endif
