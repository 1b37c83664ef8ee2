/* ecg.h — heartbeats from ECG recordings, the way Kachuee et al. (2018) built the
 * MIT-BIH heartbeat set the paper uses: one lead (MLII), resampled to 125 Hz, cut into
 * 10 s windows each scaled to [0, 1], and one beat per R peak, from the peak over 1.2
 * times the window's median RR interval, zero-padded to 187 samples.
 *
 * The pieces are separate so that both paths share them: a WFDB record with reference
 * annotations (ecg_extract_record: R peaks and labels from the annotations), and a raw
 * strip from a device (ecg_beats_from_strip: R peaks from core/data/rpeak.h, no labels).
 *
 * Choices the paper leaves open, made here (docs/ECG.md has the reasoning):
 * - Resampler: a linear-phase polyphase FIR (Kaiser-windowed sinc), not linear
 *   interpolation. Going from 360 to 125 Hz discards everything above 62.5 Hz; linear
 *   interpolation would fold muscle noise and the upper QRS spectrum back into the band
 *   instead, and it also smooths the sharp R peak unevenly depending on where each output
 *   sample falls between inputs. A symmetric FIR has no phase shift, so an R peak at input
 *   sample t lands exactly at output sample t * 125 / 360.
 * - A beat whose 1.2 T span runs past its window's end continues into the next samples,
 *   scaled by its own window's minimum and maximum and clipped to [0, 1]; only the
 *   recording's end truncates a beat (the rest is zeros).
 * - The median RR interval is over consecutive R peaks inside the window; a window with a
 *   single peak also uses the intervals to the peaks just outside it.
 *
 * Conventions as in dataset.h: 0 on success, -1 with a message in err; outputs zeroed on
 * failure, so ecg_beats_free() is always safe. */
#ifndef ANODM_ECG_H
#define ANODM_ECG_H

#include <stddef.h>
#include <stdint.h>

#include "wfdb.h"

#define ECG_FS 125          /* Hz, the beat set's sampling rate */
#define ECG_WINDOW 1250     /* samples per normalisation window: 10 s */
#define ECG_BEAT_LEN 187    /* samples per beat, zero-padded */
#define ECG_RR_FACTOR 1.2   /* beat span, in median RR intervals */
#define ECG_N_CLASSES 5     /* AAMI: N S V F Q */

/* Resampler limits: integer rates, and a ratio simple enough for a phase table. */
#define ECG_MAX_RATE 100000
#define ECG_MAX_PHASES 1000
#define ECG_MAX_DECIMATION 128 /* covers rpeak.h's 10 kHz strips to 125 Hz */

/* A set of beats, each with where it came from. */
typedef struct {
    size_t n, cap;
    float *x;          /* n * ECG_BEAT_LEN values in [0, 1], row-major */
    int32_t *label;    /* AAMI class 0..4 (N S V F Q), or -1 when unlabelled */
    int32_t *record;   /* record id (the MIT-BIH record number), or -1 */
    int64_t *sample;   /* R peak, in samples at the recording's own rate */
    char *symbol;      /* annotation symbol ('N', 'L', 'V', ...), or '?' when unlabelled */
} ecg_beats;

/* Which signal of a record to use. */
typedef struct {
    const char *lead;  /* description to look for, e.g. "MLII" (used when channel < 0) */
    int channel;       /* >= 0: this channel whatever its lead (the Kaggle set used 0) */
} ecg_lead_choice;

/* What happened to one record's annotated beats. */
typedef struct {
    int channel;                           /* the signal used, -1 if none */
    size_t annotated[ECG_N_CLASSES];       /* AAMI beats in the annotation file */
    size_t extracted[ECG_N_CLASSES];       /* beats cut */
    size_t dropped_no_rr, dropped_flat;    /* beats lost: no RR interval; flat window */
    size_t clipped;                        /* beats with a value clipped into [0, 1] */
} ecg_record_stats;

/* Outcome of ecg_segment for one R peak. */
enum { ECG_SEG_OK = 0, ECG_SEG_NO_RR = 1, ECG_SEG_FLAT = 2 };

/* ecg_extract_record's result when the record lacks the lead asked for (err says so). */
#define ECG_NO_LEAD 1

/* AAMI class (0..4 for N S V F Q) of an annotation code, -1 for codes outside the five:
 * N = N L R e j; S = A a J S; V = V E; F = F; Q = / f Q. */
int ecg_aami_class(int code);

/* "N", "S", "V", "F", "Q" for classes 0..4; "?" otherwise. */
const char *ecg_class_name(int cls);

/* Output length of ecg_resample for n input samples. */
size_t ecg_resample_len(size_t n, int fs_in, int fs_out);

/* Resamples n finite samples from fs_in to fs_out Hz (integers; fs_in / fs_out reduced
 * must have at most ECG_MAX_PHASES phases and a decimation of at most ECG_MAX_DECIMATION)
 * with a zero-phase anti-aliasing filter: output m is the signal at input time
 * m * fs_in / fs_out. The ends are extended with the edge values; equal rates copy.
 * *y is malloc'd. */
int ecg_resample(const float *x, size_t n, int fs_in, int fs_out, float **y, size_t *ny,
                 char *err, size_t errlen);

/* The Kachuee segmentation on sig (n samples at ECG_FS) with R peaks at peaks[0..np)
 * (sorted, each < n): writes beat i to beats + i * ECG_BEAT_LEN and its outcome
 * (ECG_SEG_*) to status[i]; rows of dropped beats are zeros. clipped (may be NULL) gets
 * the number of beats with a clipped value. */
int ecg_segment(const float *sig, size_t n, const int64_t *peaks, size_t np, float *beats,
                uint8_t *status, size_t *clipped, char *err, size_t errlen);

/* Appends the beats of an annotated record (every annotation in an AAMI class), cut from
 * the chosen lead, tagged with record_id. Returns ECG_NO_LEAD, with a message, when the
 * record has no such lead; st (may be NULL) gets the counts (the annotated ones even
 * then, channel -1). */
int ecg_extract_record(const wfdb_record *r, int32_t record_id, const ecg_lead_choice *lead,
                       ecg_beats *out, ecg_record_stats *st, char *err, size_t errlen);

/* Beats of a raw strip (n values at fs Hz) with R peaks found by rpeak_detect: appended
 * to out unlabelled (label -1, record -1, sample = peak index in x). The strip must pass
 * rpeak_detect's checks; a strip in which no beat is found is an error. */
int ecg_beats_from_strip(const float *x, size_t n, int fs, ecg_beats *out, char *err,
                         size_t errlen);
/* Can a model whose samples are channels x height x width values take the beats
 * ecg_beats_from_strip cuts (1 x 1 x ECG_BEAT_LEN)? 0, or -1 with a message saying what
 * it takes instead. */
int ecg_takes_beats(int channels, int height, int width, char *err, size_t errlen);

/* Train/test splits of n beats for one-vs-rest experiments: is_test[i] = 1 puts beat i in
 * the test set, 0 in the training set. Both sides are never empty. The same seed gives
 * the same split on every machine.
 *
 * ecg_split_beats: the paper's setting, round(test_frac * n) beats drawn at random
 * (clamped to 1..n-1) whatever their record, so one patient's beats sit on both sides.
 * Needs n >= 2 and 0 < test_frac < 1. */
int ecg_split_beats(size_t n, double test_frac, uint64_t seed, uint8_t *is_test, char *err,
                    size_t errlen);

/* ecg_split_records: by patient. The distinct record ids of record[0..n) are put in a
 * seeded random order and the first round(test_frac * n_records) of them (clamped to
 * 1..n_records-1) are test records: all their beats are test beats, no record is on both
 * sides. With labels (label may be NULL; AAMI classes 0..4, others ignored), up to
 * ECG_SPLIT_TRIES orders are drawn from the seed's stream and the first with the best
 * class balance is kept, so that a rare class held by a few patients (F, Q) does not fall
 * on one side by chance (a stratified group split). A class's balance is
 * min(1, test share / test_frac, training share / (1 - test_frac)) of its beats; a split's
 * is the least over the classes found in at least 2 records. The test records go to
 * test_records (ascending; room for n ids; may be NULL), their count to *n_test (may be
 * NULL), the balance reached to *balance (may be NULL; 1 without labels). Needs at least
 * 2 distinct records. */
#define ECG_SPLIT_TRIES 1000
int ecg_split_records(const int32_t *record, const int32_t *label, size_t n, double test_frac,
                      uint64_t seed, uint8_t *is_test, int32_t *test_records, size_t *n_test,
                      double *balance, char *err, size_t errlen);

/* ecg_split_listed: by patient, with the test records named (e.g. the usual inter-patient
 * DS2 list). Fails if a listed record has no beat or if no training beat is left. */
int ecg_split_listed(const int32_t *record, size_t n, const int32_t *test_records,
                     size_t n_test, uint8_t *is_test, char *err, size_t errlen);

/* Frees what b owns and zeroes it; NULL and zeroed sets are fine. */
void ecg_beats_free(ecg_beats *b);

#endif
