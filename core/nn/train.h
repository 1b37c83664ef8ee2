/* train.h — the beta-VAE training loop: shuffled mini-batches, reparameterised noise,
 * Adam, an optional capacity ramp (Burgess et al.), and per-epoch progress.
 *
 * The loop owns no output: it reports each epoch through a callback so the command line
 * can print progress and a daemon or a test can stay silent. Everything random comes
 * from the one seed, so the same data, settings and seed give the same weights. */
#ifndef ANODM_TRAIN_H
#define ANODM_TRAIN_H

#include <stdint.h>

#include "par.h"
#include "vae.h"

typedef struct {
    int epochs;                 /* passes over the data (paper: 20 for images) */
    int batch;                  /* samples per step (paper: 100) */
    float lr;                   /* Adam learning rate (paper: 1e-3) */
    float beta;                 /* KL weight */
    float capacity;             /* C in |KL - C|, reached after capacity_ramp_epochs */
    float capacity_ramp_epochs; /* 0: C from the start */
    uint64_t seed;              /* >= 1 (vae_create leaves seed 0's weights unset) */
    int threads;                /* data-parallel threads, 1..PAR_MAX_THREADS; 0: one per
                                   online core (at most PAR_MAX_THREADS) */
} train_opts;

typedef struct {
    int epoch, epochs;
    double loss, recon, kl;     /* epoch means per sample */
    double seconds;             /* this epoch's wall time */
    double samples_per_s;
    double eta_seconds;         /* for the remaining epochs at this pace */
} train_progress;

typedef void (*train_progress_fn)(const train_progress *p, void *ctx);

/* One training step's gradient, data-parallel: the batch is split into shards, one per
 * thread (each at least two samples: bn's batch statistics of one sample are void);
 * each thread runs its shard's train-mode forward pass (vae_forward_train); the batch's
 * objective comes from the shards' sums (vae_objective: |KL - C| needs the whole batch's
 * KL); each thread back-propagates its shard into its own buffer (vae_backward); and the
 * buffers are summed into m->grads. vae_train runs this for every step and the PyTorch
 * parity tests check it, so the objective training minimises is the tested one. bn
 * normalises each shard with its own statistics (DistributedDataParallel without
 * SyncBatchNorm); the first shard updates the running ones. */
typedef struct vae_trainer vae_trainer;

/* Buffers for batches of up to max_batch samples on `threads` threads (0: one per online
 * core; at most 64). Shard k draws dropout masks from a stream seeded with ~seed + k.
 * NULL when out of memory. */
vae_trainer *vae_trainer_new(vae_model *m, int max_batch, int threads, uint64_t seed);
void vae_trainer_free(vae_trainer *t);
/* Restart the dropout streams as vae_trainer_new seeded them: a test that needs the same
 * masks twice calls it before each step. */
void vae_trainer_reseed(vae_trainer *t, uint64_t seed);
/* The gradient of the objective on B samples x (1 <= B <= max_batch) with noise eps
 * (B * latent; NULL: z = mu) into m->grads; returns the batch's mean loss terms. With
 * more than one thread, BLAS should run single-threaded (vae_train sees to it). */
vae_loss vae_trainer_gradient(vae_trainer *t, const float *x, const float *eps, int B,
                              float beta, float capacity);
/* The last step's train-mode outputs, gathered over its shards: encoder means and
 * log-variances (B * latent), decoder outputs (B * input size; logits for BCE). Any may
 * be NULL. */
void vae_trainer_outputs(const vae_trainer *t, float *mu, float *logvar, float *out);

/* Defaults: 20 epochs, batch 100, lr 1e-3, beta 0.01 (the paper's best and this project's
 * measured best, docs/RESULTS.md), C 0, seed 1, all cores. */
train_opts train_defaults(void);
/* 0, or -1 with a message naming the option: epochs and batch >= 1, lr finite and > 0,
 * beta, capacity and its ramp finite and >= 0, seed >= 1, threads in 0..PAR_MAX_THREADS.
 * vae_train runs it first. */
int train_opts_check(const train_opts *o, char *err, size_t errlen);
/* Train m on n samples x (n * input size); 0, or -1 with a message. */
int vae_train(vae_model *m, const float *x, size_t n, const train_opts *o,
              train_progress_fn progress, void *ctx, char *err, size_t errlen);

#endif
