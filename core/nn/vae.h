/* vae.h — the beta-VAE: encoder net, Gaussian latent, decoder net, and its loss.
 *
 * Objective (Burgess et al., the paper's eq. 1), minimised:
 *     loss = recon(x, x') + beta * |KL(q(z|x) || N(0, I)) - C|
 * with recon either Bernoulli (binary cross-entropy on the decoder's logits, for data in
 * [0, 1]) or Gaussian (squared error), both summed over a sample's values and averaged
 * over the batch, and KL averaged over the batch too, so recon and KL are reported on
 * the same per-sample scale. The encoder's spec ends in features; vae_create appends the
 * head linear(2 * latent) whose outputs are (mu, logvar). The decoder outputs logits for
 * BCE (x' = sigmoid) or values for MSE.
 *
 * All parameters (encoder then decoder) sit in one block, and so do their gradients:
 * Adam updates the whole model in one loop and a model file is one array. */
#ifndef ANODM_VAE_H
#define ANODM_VAE_H

#include <stdint.h>

#include "infer.h"
#include "net.h"
#include "rng.h"

typedef enum { RECON_BCE = 0, RECON_MSE = 1 } recon_kind;

typedef struct {
    char name[32];              /* preset name, or "custom" */
    shape3 in;                  /* one sample */
    int latent;                 /* size of z */
    recon_kind recon;
    char enc_spec[NET_SPEC_MAX];
    char dec_spec[NET_SPEC_MAX];
} vae_arch;

typedef struct {
    vae_arch arch;
    net_def enc, dec;           /* enc includes the (mu, logvar) head */
    size_t n_params;            /* enc.n_params + dec.n_params */
    float *params, *grads;      /* owned; decoder's start at enc.n_params */
} vae_model;

/* Training's dropout masks come from rng: vae_workspace_init seeds it with 1, and
 * core/nn/train.c reseeds each shard's from the run's seed. */
typedef struct {
    int max_batch;
    float *enc_acts, *dec_acts; /* layer outputs */
    float *enc_aux, *dec_aux;   /* what layers keep for backward (net_aux_floats) */
    float *z, *eps;             /* B * latent */
    float *d_enc_out, *d_z, *d_dec_out;
    float *dbuf, *work;         /* backward ping-pong and layer scratch */
    void *mem;                  /* the one allocation all of the above live in */
    rng_t rng;                  /* dropout masks, training only */
} vae_workspace;

typedef struct { double loss, recon, kl; } vae_loss;

/* Named architectures: presets are names for an encoder and decoder spec. The paper's
 * (Table 3) have one input shape each: "fashion" / "mnist" (1x28x28), "cifar10"
 * (3x32x32), "smallnorb" (1x32x32), "ecg-tcn", "ecg-cnn", "ecg-lstm" (1x1x187, one
 * heartbeat). Two derive their layers from the input shape: "mlp" (any shape, read as a
 * vector: tabular rows) and "conv1d" (C channels of W steps, shape (C,1,W)). The choices
 * behind each are documented in vae.c. vae_arch_for_input: preset `name` for samples of
 * shape `in` (all zero: the preset's own shape; a paper preset refuses another one);
 * vae_arch_preset: the same with the preset's own shape. Recon is BCE; the caller may
 * change it. 0, or -1 with a message (an unknown name, a shape that does not fit). */
int vae_arch_for_input(vae_arch *a, const char *name, shape3 in, int latent, char *err,
                       size_t errlen);
int vae_arch_preset(vae_arch *a, const char *name, int latent, char *err, size_t errlen);
/* Preset name's own input shape (all zero for one that derives its layers from the
 * shape); 0, or -1 for an unknown name with a message listing the known ones. */
int vae_arch_preset_shape(const char *name, shape3 *in, char *err, size_t errlen);
/* Name "custom": encoder spec enc and decoder spec dec (core/nn/net.h's language) for
 * samples of shape in, checked by vae_layout: 0, or -1 with the message naming the net
 * and the layer that does not fit ("encoder: layer 2 (conv2d) on 32x1x32: ..."). */
int vae_arch_custom(vae_arch *a, shape3 in, int latent, const char *enc, const char *dec,
                    char *err, size_t errlen);
/* Names of the presets, NULL-terminated. */
const char *const *vae_arch_preset_names(void);

/* Largest model anodm builds or loads: 2^28 floats (1 GiB); latent sizes 1..VAE_MAX_LATENT. */
#define VAE_MAX_PARAMS ((size_t)1 << 28)
#define VAE_MAX_LATENT 4096

/* Parse the nets and count the parameters, allocating nothing (params stay NULL): what a
 * loader checks a file against before it trusts the file's sizes. */
int vae_layout(vae_model *m, const vae_arch *a, char *err, size_t errlen);
/* Build the nets and allocate parameters; seed > 0 draws PyTorch-style initial weights. */
int vae_create(vae_model *m, const vae_arch *a, uint64_t seed, char *err, size_t errlen);
void vae_free(vae_model *m);

/* Buffers for batches up to max_batch; 0 or -1 when out of memory. */
int vae_workspace_init(vae_workspace *w, const vae_model *m, int max_batch);
void vae_workspace_free(vae_workspace *w);

/* A training step's pieces. The step itself, which splits a batch into shards (one per
 * thread, each with its own workspace and gradient buffer) and puts these together, is
 * vae_trainer_gradient (core/nn/train.h): training and the tests run that one function.
 *
 * Train-mode forward of one shard (bn on the shard's batch statistics, dropout masks
 * from w->rng) with noise eps (B * latent; NULL: z = mu), keeping in w what vae_backward
 * needs; returns the shard's recon and KL as SUMS over its samples (loss unset). Only
 * the first shard updates bn's running statistics in m->params. */
vae_loss vae_forward_train(vae_model *m, vae_workspace *w, const float *x, const float *eps,
                           int B, int first_shard);
/* The objective from a whole batch's SUMS (vae_forward_train's, added over the shards):
 * per-sample means of recon and KL and loss = recon + beta * |KL - C|. When dkl is not
 * NULL it gets the KL term's slope for vae_backward, beta * sign(KL - C). */
vae_loss vae_objective(vae_loss sums, int B, float beta, float capacity, float *dkl);
/* Gradients of the shard last run forward in w, written (not added) to grads (n_params
 * floats): per-sample terms scaled by scale (1 / the whole batch's size) and the KL term
 * by dkl (vae_objective's, from the whole batch's KL). */
void vae_backward(const vae_model *m, vae_workspace *w, float *grads, const float *x,
                  const float *eps, int B, float scale, float dkl);
/* What the forward pass last run in w on B samples computed: encoder means and
 * log-variances (B * latent) and, if that pass ran the decoder, its outputs (B * input
 * size; logits for BCE); any may be NULL. */
void vae_last_outputs(const vae_model *m, const vae_workspace *w, int B, float *mu,
                      float *logvar, float *out);
/* The functions below run in eval mode (bn on running statistics, no dropout): they are
 * deterministic and leave m unchanged. */
/* Forward and loss only (no gradients), for validation. */
vae_loss vae_evaluate(const vae_model *m, vae_workspace *w, const float *x, const float *eps,
                      int B, float beta, float capacity);
/* Encoder means and log-variances (each B * latent; logvar may be NULL). */
void vae_encode(const vae_model *m, vae_workspace *w, const float *x, int B, float *mu,
                float *logvar);
/* Reconstruction x' (B * input size) from z = mu + sigma * eps (eps NULL: z = mu); mu
 * (B * latent) may be NULL. For BCE models x' is the sigmoid of the logits. */
void vae_reconstruct(const vae_model *m, vae_workspace *w, const float *x, const float *eps,
                     int B, float *x_rec, float *mu);

/* Scoring's forward pass: eval mode, and batch-invariant (a sample's outputs are the same
 * bits whatever it is batched with, docs/BATCHING.md). The encoder and the decoder run as
 * core/nn/infer.h plans, a whole batch through each layer; a net without a plan (tcn,
 * lstm) runs through net_forward one sample at a time, whose shapes never change, so its
 * rows are invariant too while the caller keeps OpenBLAS on one thread. The plans are a
 * snapshot of the model's parameters at vae_infer_init. */
typedef struct {
    net_plan *enc, *dec;
    vae_workspace w;            /* batches of one, for a net without a plan */
    float *h, *z;               /* a chunk's encoder outputs and decoder inputs */
} vae_infer;

/* 0, or -1 with a message when out of memory. */
int vae_infer_init(vae_infer *vi, const vae_model *m, char *err, size_t errlen);
void vae_infer_free(vae_infer *vi);
/* The encoder's means and log-variances (B * latent each) and the reconstruction from
 * z = mu (B * input size; for BCE models the sigmoid of the logits) of B samples; any
 * output may be NULL (x_rec NULL: the decoder does not run). */
void vae_infer_run(vae_infer *vi, const vae_model *m, const float *x, int B, float *x_rec,
                   float *mu, float *logvar);

#endif
