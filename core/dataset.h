/* dataset.h — the samples anodm trains on and scores, read from IDX, NPY and CSV files.
 *
 * Every reader produces the same thing: n samples of dim floats each, row-major, plus one
 * int32 label per sample when there are labels. The models only ever see this form, so a
 * new file format is a new reader and nothing else.
 *
 * Data files come from outside (downloads, users, other tools), so the readers treat them
 * as hostile: every size in a header is checked against hard limits before anything is
 * allocated, and a bad file gives -1 and a message naming the file and the problem, never
 * a crash. The dataset_parse_* functions do the same on bytes in memory; the loaders read
 * a file and call them, and a fuzzer can call them directly.
 *
 * Files are read through zlib, so any of them may also be gzip-compressed.
 *
 * Conventions: functions return 0 on success, or -1 with a message in err (errlen bytes,
 * may be NULL/0). On failure the output datasets are zeroed, so dataset_free() on them is
 * always safe. */
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

/* IDX samples file, with a 1-D IDX labels file or NULL. Shapes (n,d), (n,h,w), (n,c,h,w)
 * become 1x1xd, 1xhxw, cxhxw. Unsigned-byte data are pixels and become v/255 in [0,1];
 * other element types are taken as they are. Labels must be of an integer type. */
int dataset_load_idx(dataset *out, const char *samples_path, const char *labels_path,
                     char *err, size_t errlen);

/* dir/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz (train: 1 train set, 0 test set);
 * checks the images are 1x28x28 and the labels 0 to 9. */
int dataset_load_fashion_mnist(dataset *out, const char *dir, int train, char *err,
                               size_t errlen);

/* NPY (format versions 1 to 3, C order) samples file, with a 1-D NPY labels file or NULL.
 * Shapes as for IDX. Data dtypes: any integer type or float32/float64 in either byte order;
 * |u1 data are pixels and become v/255, the rest are taken as they are. Labels: any
 * integer dtype whose values fit int32 (e.g. <i4, <i8, |u1). */
int dataset_load_npy(dataset *out, const char *samples_path, const char *labels_path,
                     char *err, size_t errlen);

/* CSV of numbers, one sample per line (shape 1x1xdim), comma-separated, no quoting. The
 * first line is a header, and skipped, when any of its cells is not a number. CRLF and
 * blank lines are fine. label_col: a column index, DATASET_CSV_LAST_COL or
 * DATASET_CSV_NO_LABEL; a label cell must hold an integer (written as "3" or "3.0"). */
int dataset_load_csv(dataset *out, const char *path, int label_col, char *err, size_t errlen);

/* The parsers behind the loaders, on a whole file's bytes in memory. */
int dataset_parse_idx(dataset *out, const uint8_t *buf, size_t len, char *err, size_t errlen);
int dataset_parse_idx_labels(int32_t **labels, size_t *n, const uint8_t *buf, size_t len,
                             char *err, size_t errlen);
int dataset_parse_npy(dataset *out, const uint8_t *buf, size_t len, char *err, size_t errlen);
int dataset_parse_npy_labels(int32_t **labels, size_t *n, const uint8_t *buf, size_t len,
                             char *err, size_t errlen);
int dataset_parse_csv(dataset *out, const char *text, size_t len, int label_col, char *err,
                      size_t errlen);

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
