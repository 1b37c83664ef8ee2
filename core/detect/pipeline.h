/* pipeline.h — building a detector from normal samples: train the beta-VAE, encode a
 * reference set, fit its t-SNE map, calibrate on a held-out split (SPEC.md section 1,
 * training steps 1-4). The split is made here, before training, so the calibration
 * samples are never seen by the VAE nor in the map: a sample never meets itself. */
#ifndef ANODM_PIPELINE_H
#define ANODM_PIPELINE_H

#include "dataset.h"
#include "detector.h"
#include "train.h"

/* What a build measured, for the bundle's provenance. */
typedef struct {
    size_t n_train, n_cal;       /* the split */
    double map_kl;               /* final KL of the reference map */
    double train_seconds, map_seconds, cal_seconds;
} build_report;

typedef struct {
    train_opts train;
    int n_ref;                   /* reference points (10000), drawn from the training part;
                                    at most all of it, and with a memory at most half, so
                                    that the other half streams through the memory at
                                    calibration (build_ref_count) */
    double cal_frac;             /* held-out share of the normals for calibration (0.1) */
    double quantile;             /* threshold quantile of calibration scores (0.99) */
    tsne_options tsne;           /* the reference map's fit */
    place_mode mode;             /* single */
    tsne_place_options place;    /* by mode (build_opts_set_mode) */
    int window;                  /* context mode window (2000) */
    int k;                       /* D_MAP neighbours (1) */
    double alpha;                /* reconstruction weight in the fused score (0.5) */
    fused_term term;             /* the distance fused with D_RE (latent: measured best
                                    online, docs/RESULTS.md) */
    latent_input input;          /* mu (default) or z: the latents of the map and D_LATENT */
    int use_memory;              /* the stream memory: calibrated on a normal stream */
    memory_options memory;
    score_fusion fusion;         /* how z_memory joins the base score */
    scale_kind scale;            /* per-feature scaling fitted on the training part and
                                    kept in the detector (none) */
    int cal_batch;               /* calibration batch size (32): in context mode scores
                                    depend on how many samples are placed together, so
                                    calibrate with the batch size the daemon will see */
    build_report *report;        /* filled in when not NULL */
} build_opts;

/* Stage messages ("training", "reference", "map", "calibration") for progress output. */
typedef void (*build_stage_fn)(void *ctx, const char *stage, const char *detail);

void build_opts_default(build_opts *o);
/* Place new samples by mode, with that mode's steps (o->place.n_iter and tol: at most 250
 * steps and tol 0.01 for single placement, the library's fixed steps for context); the
 * other placement settings stay as they are. */
void build_opts_set_mode(build_opts *o, place_mode mode);
/* Every option of o, by the rules of the code that uses it (train_opts_check,
 * tsne_options_check for the map, detector_check_scoring for the detector to be), for a
 * reference set drawn from n_train training samples (0: not known yet, the reference set
 * then taken as o->n_ref points): 0, or -1 with a message naming the option. The command
 * line runs it before any work, detector_build before training. */
int build_opts_check(const build_opts *o, size_t n_train, char *err, size_t errlen);
/* The reference points a build on n_train training samples takes (n_train 0: o->n_ref):
 * o->n_ref, capped by n_train, and with a memory by n_train / 2. Measured on a small
 * tabular set (README, "Bring your own data"): with every training sample a reference
 * point, the memory's calibration stream is the held-out normals alone, and 13% of fresh
 * normals scored above the 0.99 threshold; with half, 1%. */
int build_ref_count(const build_opts *o, size_t n_train);
/* Format a stage message and pass it to stage (nothing when stage is NULL). */
void build_say(build_stage_fn stage, void *ctx, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Build d from the normal samples in data (labels ignored); train_progress reports each
 * epoch, stage each step. d is zeroed on failure. */
int detector_build(detector *d, const vae_arch *arch, const dataset *data, const build_opts *o,
                   train_progress_fn train_progress, build_stage_fn stage, void *ctx,
                   char *err, size_t errlen);
/* Calibrate d on n normal samples x, scored in batches of `batch`: term statistics,
 * threshold, calibration scores. */
int detector_calibrate(detector *d, const float *x, size_t n, int batch, double quantile,
                       char *err, size_t errlen);

#endif
