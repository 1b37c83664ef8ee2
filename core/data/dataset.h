/* dataset.h — the samples anodm trains on and scores: the container and what is done to it.
 *
 * Every reader (dataset_io.h) produces the same thing: n samples of dim floats each,
 * row-major, plus one int32 label per sample when there are labels. The models only ever see this form, so a
 * new file format is a new reader and nothing else.
 *
 * Conventions: functions return 0 on success, or -1 with a message in err (errlen bytes,
 * may be NULL/0). */
#ifndef ANODM_DATASET_H
#define ANODM_DATASET_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    size_t n;                    /* samples */
    size_t dim;                  /* values per sample: channels * height * width */
    int channels, height, width; /* shape of one sample: images C,H,W; series 1,1,len */
    float *x;                    /* n * dim values, row-major, owned */
    int32_t *labels;             /* n labels, owned; NULL when the data has none */
} dataset;

/* Most values (n * dim) a dataset may hold: 2 GiB of floats. Larger headers are refused. */
#define DATASET_MAX_VALUES ((size_t)1 << 29)

/* label_col values for the CSV reader besides a column index (0 is the first column). */
enum { DATASET_CSV_NO_LABEL = -1, DATASET_CSV_LAST_COL = -2 };

/* One-vs-rest: keeps the samples whose label is in classes (exclude 0) or not in classes
 * (exclude 1), in their order. Fails, leaving d as it was, if d has no labels or if no
 * sample would be left. */
int dataset_filter_classes(dataset *d, const int32_t *classes, size_t n_classes, int exclude,
                           char *err, size_t errlen);

/* Random split, e.g. for a calibration hold-out: a gets round(frac * n) samples, b the
 * rest, each in the original order. The same seed gives the same split on every machine.
 * Fails if frac is not strictly between 0 and 1 or a part would be empty. */
int dataset_split(const dataset *d, double frac, uint64_t seed, dataset *a, dataset *b,
                  char *err, size_t errlen);
/* Which of n samples dataset_split(d, frac, seed, ...) puts in a: in_a[i] = 1 for them, 0
 * for b's (for data kept beside a dataset, such as where each sample came from). The
 * same checks; 0, or -1 with a message. */
int dataset_split_rows(size_t n, double frac, uint64_t seed, uint8_t *in_a, char *err,
                       size_t errlen);

/* Maps each sample on its own linearly onto [lo, hi] (its minimum to lo, its maximum to hi;
 * a constant sample becomes all lo). Per sample, not per dataset, so that the training and
 * the test set are scaled alike without sharing statistics, as the ECG heartbeat set
 * (Kachuee et al.) was prepared. Pixels read from bytes are already in [0,1]. */
void dataset_scale_minmax(dataset *d, float lo, float hi);

/* Frees what d owns and zeroes it; NULL and zeroed datasets are fine. */
void dataset_free(dataset *d);

#endif
