/* rpeak.h — R-peak (QRS) detection on a raw ECG strip, and its evaluation against
 * reference beat annotations.
 *
 * The detector follows Pan and Tompkins (1985) at any sampling rate: a 5-15 Hz band-pass,
 * a derivative, squaring and a 150 ms moving-window integration, then adaptive signal and
 * noise levels with a 200 ms refractory period, T-wave rejection by slope within 360 ms,
 * and a search back with a halved threshold when no beat comes for 1.66 mean RR
 * intervals. It works on a whole strip at once (the filters run forwards and backwards,
 * so they add no delay, and the levels start from the strip's first seconds), which is
 * what a scoring request carrying a strip needs; it is not a streaming detector.
 *
 * Evaluation is the usual beat-by-beat comparison (ANSI/AAMI EC57 style): a detection
 * within the tolerance (150 ms) of a reference beat is a true positive, each matched once;
 * sensitivity Se = TP / (TP + FN), positive predictivity +P = TP / (TP + FP).
 *
 * Conventions as in dataset.h: 0 on success, -1 with a message in err. */
#ifndef ANODM_RPEAK_H
#define ANODM_RPEAK_H

#include <stddef.h>
#include <stdint.h>

#include "wfdb.h"

#define RPEAK_MIN_FS 50.0      /* Hz: the 15 Hz band edge needs room below Nyquist */
#define RPEAK_MAX_FS 10000.0
#define RPEAK_MIN_SECONDS 2.0  /* shorter strips hold too few beats to set the levels */
#define RPEAK_MAX_SAMPLES ((size_t)1 << 28)

/* Beat-by-beat comparison counts. */
typedef struct {
    size_t tp, fn, fp;
} rpeak_match;

/* Finds the R peaks of x (n samples at fs Hz): *peaks (malloc'd, may be NULL when none
 * are found) gets their sample indices in increasing order. Refuses, with a message that
 * says which: a rate outside [RPEAK_MIN_FS, RPEAK_MAX_FS], a strip shorter than
 * RPEAK_MIN_SECONDS or longer than RPEAK_MAX_SAMPLES, a NaN or infinite value, a flat
 * strip. */
int rpeak_detect(const float *x, size_t n, double fs, int64_t **peaks, size_t *np, char *err,
                 size_t errlen);

/* Matches detections det[0..nd) to reference beats ref[0..nr) (both sorted), each
 * reference to the nearest unmatched detection within tol samples; adds the counts to m. */
void rpeak_compare(const int64_t *ref, size_t nr, const int64_t *det, size_t nd, int64_t tol,
                   rpeak_match *m);

/* Runs the detector on signal `channel` of an annotated record, over the whole record
 * (strip_seconds <= 0) or over consecutive strips of that length (the last one is
 * dropped if shorter than RPEAK_MIN_SECONDS), and compares with the record's beat
 * annotations (wfdb_is_beat) within tol_seconds. Ventricular flutter/fibrillation
 * episodes (between [ and ] annotations) are left out of the comparison, as EC57 does;
 * their flutter waves are not beats. Adds to m. */
int rpeak_evaluate_record(const wfdb_record *r, int channel, double strip_seconds,
                          double tol_seconds, rpeak_match *m, char *err, size_t errlen);

/* Se and +P in percent (100 when the denominator is 0). */
double rpeak_sensitivity(const rpeak_match *m);
double rpeak_predictivity(const rpeak_match *m);

#endif
