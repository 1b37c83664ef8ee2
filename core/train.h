/* train.h — the beta-VAE training loop: shuffled mini-batches, reparameterised noise,
 * Adam, an optional capacity ramp (Burgess et al.), and per-epoch progress.
 *
 * The loop owns no output: it reports each epoch through a callback so the command line
 * can print progress and a daemon or a test can stay silent. Everything random comes
 * from the one seed, so the same data, settings and seed give the same weights. */
#ifndef ANODM_TRAIN_H
#define ANODM_TRAIN_H

#include <stdint.h>

#include "vae.h"

#define TRAIN_MAX_THREADS 64

typedef struct {
    int epochs;                 /* passes over the data (paper: 20 for images) */
    int batch;                  /* samples per step (paper: 100) */
    float lr;                   /* Adam learning rate (paper: 1e-3) */
    float beta;                 /* KL weight */
    float capacity;             /* C in |KL - C|, reached after capacity_ramp_epochs */
    float capacity_ramp_epochs; /* 0: C from the start */
    uint64_t seed;              /* >= 1 (vae_create leaves seed 0's weights unset) */
    int threads;                /* data-parallel threads, 1..TRAIN_MAX_THREADS; 0: one per
                                   online core (at most TRAIN_MAX_THREADS) */
} train_opts;

typedef struct {
    int epoch, epochs;
    double loss, recon, kl;     /* epoch means per sample */
    double seconds;             /* this epoch's wall time */
    double samples_per_s;
    double eta_seconds;         /* for the remaining epochs at this pace */
} train_progress;

typedef void (*train_progress_fn)(const train_progress *p, void *ctx);

/* Defaults: 20 epochs, batch 100, lr 1e-3, beta 1, C 0, seed 1, all cores. */
train_opts train_defaults(void);
/* 0, or -1 with a message naming the option: epochs and batch >= 1, lr finite and > 0,
 * beta, capacity and its ramp finite and >= 0, seed >= 1, threads in 0..TRAIN_MAX_THREADS.
 * vae_train runs it first. */
int train_opts_check(const train_opts *o, char *err, size_t errlen);
/* Train m on n samples x (n * input size); 0, or -1 with a message. */
int vae_train(vae_model *m, const float *x, size_t n, const train_opts *o,
              train_progress_fn progress, void *ctx, char *err, size_t errlen);

#endif
