/* stream.h — the stream protocol: the detector as a user meets it.
 *
 * A daemon sees samples one at a time, in the order they come, with no labels, and acts
 * on its threshold. So quality is measured that way: a labelled test set is replayed one
 * sample at a time through the product's scorer, with the stream memory starting empty,
 * and every candidate fusion of the terms is recorded per sample; labels only enter the
 * metrics (auROC, the true-positive rate at 1% false positives, and recall and
 * false-alarm rate at each fusion's own threshold).
 *
 * The order is given as a list of steps (stream_order): a seeded random order through one
 * memory (a test set with no time in it, Fashion-MNIST), or the samples of each source in
 * their time order through that source's own memory, the sources taking turns (ECG: each
 * record a patient's monitor, its beats in R-peak order, as a ward's monitors would send
 * them to one daemon with memory_sources set). A source's memory starts empty at its first
 * sample and never sees another source's.
 *
 * Each fusion's threshold is calibrated without labels the way a bundle's is: training
 * normals are streamed through fresh memories in an order of the same kind, and the
 * threshold is a quantile of the fusion on that normal stream, so its false-alarm rate
 * should hold on normal traffic (the replay measures whether it does). */
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

/* The order of a stream: step i scores sample at[i] through the memory of source
 * source[i]; with source NULL one memory sees the whole stream. at is a permutation of
 * 0..n-1 (each sample once). Made by the functions below. */
typedef struct {
    size_t *at;                            /* n sample indices, malloc'd */
    int32_t *source;                       /* n source tags, malloc'd, or NULL */
    size_t n;
    size_t n_sources;                      /* distinct tags in source (0 without) */
} stream_order;

/* The n samples in a seeded random order, one memory. 0, or -1 (out of memory). */
int stream_order_shuffled(stream_order *o, size_t n, uint64_t seed, char *err, size_t errlen);
/* The n samples by source[i]: each source's samples in index order (which must be their
 * time order), the sources taking turns one sample at a time in the order they first
 * appear, each through its own memory. 0, or -1 (out of memory). */
int stream_order_by_source(stream_order *o, const int32_t *source, size_t n, char *err,
                           size_t errlen);
void stream_order_free(stream_order *o);

/* Stream the normals cal in `order` through fresh memories of d's settings (d->use_memory
 * must be set; d->mem is not read) and calibrate at quantile q. 0, or -1 with err. */
int stream_calibrate(const detector *d, const float *cal, const stream_order *order, double q,
                     stream_calibration *c, char *err, size_t errlen);
void stream_calibration_free(stream_calibration *c);

/* Replay the samples x in `order` through a fresh scorer of d with memory (one per source
 * when the order has sources): sample i's terms into res[i], standardised by d's
 * statistics (the memory term's is stream_scores' business). 0, or -1 with err. */
int stream_replay(const detector *d, const float *x, const stream_order *order,
                  detector_result *res, char *err, size_t errlen);
/* Every fusion's score of the n replayed results res of d against calibration c into
 * scores[f][i]. Several calibrations can be measured on one replay: its terms do not
 * depend on any (the memory keeps by z_re + z_latent). */
void stream_scores(const detector *d, const stream_calibration *c, const detector_result *res,
                   size_t n, double *scores[FUSION_N]);

#endif
