/* scorer.h — scoring samples with a detector: the code path the daemon, offline scoring,
 * calibration and the experiments all share, so a calibration threshold is measured on
 * exactly the computation it will be compared against.
 *
 * A scorer holds what a detector needs at run time and nothing a bundle stores: the
 * reference map's index and repulsion field (built once from the detector's arrays),
 * the sliding window of recent placements in context mode, the stream memory when the
 * detector has one, and batch buffers. It is not thread-safe; the daemon gives each model
 * one scorer and serialises batches through it (the window and the memory are shared
 * state by design: the samples of a batch go through the memory in batch order, each
 * probed before it is kept, exactly as if they had come one at a time). */
#ifndef ANODM_SCORER_H
#define ANODM_SCORER_H

#include "detector.h"

typedef struct scorer scorer;

/* Build the runtime for d (which must outlive it) for batches up to max_batch. */
scorer *scorer_create(const detector *d, int max_batch, char *err, size_t errlen);
void scorer_free(scorer *s);
/* Let a batch's forward pass and single-mode placement be split across up to n_threads
 * threads (1, the default, keeps every call on the caller's thread), in shares of at
 * least SCORER_MIN_ROWS samples, and as many batches be in flight (scorer_front). Results
 * are the same bits whatever the count (each sample's are batch-invariant). Each thread
 * beyond the first holds its own copy of the network's inference buffers and packed
 * weights, and its slot's batch buffers. A net without an inference plan (tcn, lstm)
 * runs on OpenBLAS and stays on one thread. 0, or -1 with err (out of range, or out of
 * memory: the scorer keeps the threads it had). Not while a batch is in flight. */
#define SCORER_MAX_THREADS 16
#define SCORER_MIN_ROWS 16
int scorer_set_threads(scorer *s, int n_threads, char *err, size_t errlen);
/* The threads a batch may be split across, and the slots batches may be in flight in. */
int scorer_threads(const scorer *s);

/* A batch in two halves, so that a daemon can pipeline a model's batches: the front
 * (scaling, the network, single-mode placement) depends on nothing but its samples, while
 * the back (the context window, the terms, the memory, the verdicts) must see batches in
 * scoring order. Each batch in flight has a slot (0..scorer_threads - 1). scorer_front
 * calls on different slots, and networks, may run at the same time as each other and as
 * one call of any other function on another slot; everything else is one call at a time.
 * A front's rows go through networks net..net + shares - 1 (shares of rows, one thread
 * each; no two calls running at once may share a network); net 0 and shares 0 is the split
 * scorer_score makes (B / SCORER_MIN_ROWS shares, at most scorer_threads). x, and x_rec and mu when not
 * NULL (reconstructions in the data's units and latent means, as scorer_terms has them),
 * must stay until the slot's back. Same returns as scorer_score; after a failed front the
 * slot has no batch. */
int scorer_front(scorer *s, int slot, const float *x, int B, int net, int shares,
                 float *x_rec, float *mu, char *err, size_t errlen);
/* The back of the slot's batch: what scorer_score returns, into res (B rows), nn_ref and
 * nn_dist. -1 with err when the slot has no batch. */
int scorer_back(scorer *s, int slot, detector_result *res, int32_t *nn_ref, float *nn_dist,
                char *err, size_t errlen);

/* scorer_terms and scorer_score return 0, or -1 with err, or SCORER_NOT_FINITE when a
 * sample's latent, a term or its score came out non-finite (input values too large for
 * the model's arithmetic; err names the sample): the input cannot be scored, and the
 * window (context mode) and the memory are left as they were, but for a score that
 * overflows after its terms were finite, which the calibration's checks rule out. */
#define SCORER_NOT_FINITE (-2)

/* Terms only (no calibration needed): d_re, d_map, d_latent, the map position, the
 * nearest reference point and out_of_range of each of the B samples in res; the optional
 * outputs are the reconstructions (B * input size, in the data's units: a detector that
 * scales its inputs computes D_RE on the scaled sample and returns x' unscaled), latent
 * means (B * latent) and the k nearest reference points' training-set ids (the
 * detector's ref_id) and 2-D distances (B * k).
 * Samples x are in the data's units: the detector's scaling is applied here. */
int scorer_terms(scorer *s, const float *x, int B, detector_result *res, float *x_rec,
                 float *mu, int32_t *nn_ref, float *nn_dist, char *err, size_t errlen);
/* Full scores: terms, then standardised terms, fused and raw score, p-value, verdict. */
int scorer_score(scorer *s, const float *x, int B, detector_result *res, float *x_rec,
                 int32_t *nn_ref, float *nn_dist, char *err, size_t errlen);
/* Context mode: the sliding window's positions, *n points of (x, y), oldest first, valid
 * until the next scoring call; single mode: NULL and 0. */
void scorer_window(const scorer *s, const float **pos, int *n);
/* Where scoring's time goes, summed over the samples scored while it is attached
 * (nanoseconds of the calling thread's CPU time): input scaling, the network, placement (its search,
 * calibration and iterations; single mode), the terms (reconstruction error, map
 * distance, latent distance), the memory term and its update, the fused score and
 * verdict. For `anodm bench-score`. */
typedef struct {
    long long samples;
    long long scale_ns, forward_ns, place_ns, terms_ns, memory_ns, finish_ns;
    tsne_place_timing place;
} scorer_timing;
/* Add the stages' times of every following call to *t (NULL: stop timing). */
void scorer_time_stages(scorer *s, scorer_timing *t);
/* The stream memory the next calls go through (NULL if the detector has none). */
const stream_memory *scorer_memory(const scorer *s);
/* What the last scoring call kept in that memory, so that a caller can write it down
 * (anodmd keeps its memories across a restart): the latents (*n x latent) and their
 * suspicions, in batch order, valid until the next call. A call that returns 0 keeps
 * every sample, one that fails none (*n 0); so does a detector without a memory. */
void scorer_kept(const scorer *s, const float **mu, const double **suspicion, int *n);
/* The memories by slot: scope model has one (slot 0, source NULL), scope source one per
 * source remembered (slots 0..n-1, source its tag, *used larger for the more recently
 * used); NULL past the last. */
const stream_memory *scorer_memory_slot(const scorer *s, int slot, const char **source,
                                        unsigned long long *used);
/* Restore the memory the next calls go through: its state st (memory_import: checked,
 * and on failure the memory is empty; 0 or -1 with err), then, in order, each latent
 * kept since with its suspicion, probed and kept exactly as scoring did. */
int scorer_memory_import(scorer *s, const memory_state *st, char *err, size_t errlen);
void scorer_memory_replay(scorer *s, const float *mu, double suspicion);
/* Latents held by all of the scorer's memories, and forgetting them all. */
int scorer_memory_count(const scorer *s);
void scorer_memory_reset(scorer *s);

/* Scope source: one memory per source tag instead of one for the model, so that one
 * source's traffic cannot move another's scores; at most max_sources (the least recently
 * used is forgotten to make room). 0, or -1 with err (no memory, or out of range). */
#define SCORER_SOURCE_MAX 128
#define SCORER_MAX_SOURCES 65536
int scorer_memory_per_source(scorer *s, int max_sources, char *err, size_t errlen);
/* Under scope source, the next calls go through source's memory (NULL or "" is a source
 * like any other; longer tags are cut at SCORER_SOURCE_MAX bytes); otherwise nothing
 * changes. Returns the memory's slot (scorer_memory_slot; 0 under scope model), which
 * stays the source's while it is remembered, with *fresh (if not NULL) 1 when this call
 * started the memory (a source not remembered: a new memory, or the least recently used
 * one's emptied), else 0; -1 with err when a new memory cannot be made. */
int scorer_use_source(scorer *s, const char *source, int *fresh, char *err, size_t errlen);
/* The memory source's scores go through, without making one or counting as a use: under
 * scope source, source's (NULL or "" is the untagged requests'), NULL if it has none;
 * otherwise the model's, whatever source says (NULL without a memory). */
const stream_memory *scorer_find_memory(const scorer *s, const char *source);
/* Co-place n latents (n x latent) together on the reference map with the detector's
 * placement options (tsne_coplace: they attract and repel each other, the reference stays
 * fixed): how the map shows the stream memory, its recurring anomalies gathered into
 * islands as the memory term sees them. Reads only what scorer_create built and never
 * changes, so it may run on one thread while another scores. 0, or -1 with err. */
int scorer_coplace(const scorer *s, const float *lat, int n, float *pos, char *err,
                   size_t errlen);
/* A result's base score, alpha * z_re + (1 - alpha) * z_2 (z_2 the detector's term),
 * from its standardised terms: the whole score of a detector without a memory. */
double detector_base_score(const detector *d, const detector_result *res);
/* The standardised terms, fused and raw score of res from its raw terms (what
 * calibration needs before a threshold exists). */
void detector_fuse(const detector *d, detector_result *res);
/* detector_fuse, then the p-value and the verdict. */
void detector_finish_result(const detector *d, detector_result *res);

#endif
