/* dataset_io.h — datasets from IDX, NPY and CSV files, and NPY files from arrays.
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
#ifndef ANODM_DATASET_IO_H
#define ANODM_DATASET_IO_H

#include <stddef.h>
#include <stdint.h>

#include "dataset.h"

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

/* The type of one stored number, as IDX type codes, NPY dtypes and the Open Inference
 * Protocol's binary tensors (proto/api.c) describe it. */
typedef struct {
    char kind;      /* 'u' unsigned integer, 'i' signed integer, 'f' IEEE float */
    int size;       /* bytes: 1, 2, 4 or 8 (floats: 4 or 8) */
    int big_endian;
} dataset_elem;

/* count stored numbers of type t at src (count * t.size bytes, samples of dim values) into
 * floats, by the rule every reader above follows: unsigned bytes are pixels and become
 * v/255; anything else is kept as it is but must be a finite float32. 0, or -1 with err
 * naming the sample and value. */
int dataset_decode_samples(float *dst, const uint8_t *src, size_t count, size_t dim,
                           dataset_elem t, char *err, size_t errlen);

/* Element types dataset_write_npy writes: little-endian float32, int32, int64. */
typedef enum { NPY_F4, NPY_I4, NPY_I8 } npy_dtype;

/* An NPY (version 1.0) file of shape (n, cols), or (n,) when cols is 0, whose element i
 * (C order) is get(ctx, i): an integer, or for NPY_F4 a float's bit pattern. */
int dataset_write_npy(const char *path, npy_dtype dtype, size_t n, size_t cols,
                      uint64_t (*get)(const void *ctx, size_t i), const void *ctx, char *err,
                      size_t errlen);

#endif
