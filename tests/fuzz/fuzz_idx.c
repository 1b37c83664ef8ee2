/* fuzz_idx.c — dataset_parse_idx and dataset_parse_idx_labels (core/data/dataset_io.c).
 *
 * IDX files come from downloads and users, so their headers (type code, rank, dims) are
 * hostile: the parser must check every dimension, their product and the data length
 * before allocating. Each input is tried as a samples file and as a labels file. */
#include <stdint.h>
#include <stdlib.h>

#include "dataset_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[256];
    dataset d;
    if (dataset_parse_idx(&d, data, size, err, sizeof err) == 0 && d.n * d.dim > 0) {
        volatile float sink = d.x[d.n * d.dim - 1];  /* every value was written */
        (void)sink;
    }
    dataset_free(&d);

    int32_t *labels = NULL;
    size_t n = 0;
    if (dataset_parse_idx_labels(&labels, &n, data, size, err, sizeof err) == 0 && n > 0) {
        volatile int32_t sink = labels[n - 1];
        (void)sink;
    }
    free(labels);
    return 0;
}
