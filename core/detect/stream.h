/* stream.h — the stream protocol: the detector as a user meets it.
 *
 * A daemon sees samples one at a time, in the order they come, with no labels, and acts
 * on its threshold. So quality is measured that way: a labelled test set is replayed one
 * sample at a time in a seeded order through the product's scorer, with the stream
 * memory starting empty, and every candidate fusion of the terms is recorded per sample;
 * labels only enter the metrics (auROC, the true-positive rate at 1% false positives, and
 * recall and false-alarm rate at each fusion's own threshold).
 *
 * Each fusion's threshold is calibrated without labels the way a bundle's is: held-out
 * training normals are streamed through a fresh memory, and the threshold is a quantile
 * of the fusion on that normal stream, so its false-alarm rate should hold on normal
 * traffic (the replay measures whether it does). */
#ifndef ANODM_STREAM_H
#define ANODM_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "detector.h"

/* Every fusion of score.h is a candidate; base = alpha * z_re + (1 - alpha) * z_latent,
 * the score of detectors without a memory, and p-values are against the normal stream. */
typedef struct {
    term_stats mem;                        /* d_memory on the normal stream */
    double threshold[FUSION_N];            /* each fusion's quantile on that stream */
    float *base, *memory;                  /* the stream's base and z_memory, ascending */
    float *fused[FUSION_N];                /* each fusion on the stream, ascending */
    int n;
} stream_calibration;

/* The longest normal stream calibration uses. */
#define STREAM_NORMALS_MAX 20000

/* The normal stream to calibrate on: the held-out normals cal (n_cal rows) and the
 * training normals train (n_train rows) that are not reference points (ref_id, as the
 * detector keeps them: indices into train), a seeded random choice of at most max of
 * them in random order. A reference point would find itself in the reference at
 * distance 0; the held-out normals alone (10% of the data) are too few to fill a memory
 * and reach the steady state traffic will. *out is malloc'd (*n_out rows); 0, or -1. */
int stream_normals(const float *cal, size_t n_cal, const float *train, size_t n_train,
                   size_t dim, const int32_t *ref_id, int n_ref, size_t max, uint64_t seed,
                   float **out, size_t *n_out, char *err, size_t errlen);

/* Stream the n_cal normals cal (seeded order) through a fresh memory of d's settings
 * (d->use_memory must be set; d->mem is not read) and calibrate at quantile q. 0, or -1
 * with err. */
int stream_calibrate(const detector *d, const float *cal, int n_cal, uint64_t seed, double q,
                     stream_calibration *c, char *err, size_t errlen);
void stream_calibration_free(stream_calibration *c);

/* Replay the n samples x in a seeded order through a fresh scorer with memory; every
 * fusion's score of sample i (original order) into scores[f][i]. d->mem is set from c. */
int stream_replay(const detector *d, const stream_calibration *c, const float *x, int n,
                  uint64_t seed, double *scores[FUSION_N], char *err, size_t errlen);

#endif
