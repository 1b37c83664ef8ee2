/* fuzz_npy.c — dataset_parse_npy and dataset_parse_npy_labels (core/data/dataset_io.c).
 *
 * NPY files come from other tools and users: the header is a Python dict literal (descr,
 * fortran_order, shape) of attacker-chosen length, version 1 to 3; the parser must check
 * dtype, shape and data length before allocating. Each input is tried as a samples file
 * and as a labels file. */
#include <stdint.h>
#include <stdlib.h>

#include "dataset_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[256];
    dataset d;
    if (dataset_parse_npy(&d, data, size, err, sizeof err) == 0 && d.n * d.dim > 0) {
        volatile float sink = d.x[d.n * d.dim - 1];  /* every value was written */
        (void)sink;
    }
    dataset_free(&d);

    int32_t *labels = NULL;
    size_t n = 0;
    if (dataset_parse_npy_labels(&labels, &n, data, size, err, sizeof err) == 0 && n > 0) {
        volatile int32_t sink = labels[n - 1];
        (void)sink;
    }
    free(labels);
    return 0;
}
