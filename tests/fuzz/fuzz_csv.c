/* fuzz_csv.c — dataset_parse_csv (core/data/dataset_io.c).
 *
 * CSV files are text from anywhere: ragged rows, junk cells, huge or non-finite numbers,
 * a header or none, CRLF, NUL bytes inside the buffer. The text is not NUL-terminated
 * (the parser gets a length), so it is copied into a heap block of exactly that size for
 * ASan to catch any read past the end. Each input is parsed three ways: label in the
 * last column, label in column 1, and no label. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dataset_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const int label_cols[] = {DATASET_CSV_LAST_COL, 1, DATASET_CSV_NO_LABEL};
    char *text = malloc(size ? size : 1);
    if (!text) return 0;
    memcpy(text, data, size);
    for (size_t i = 0; i < sizeof label_cols / sizeof label_cols[0]; i++) {
        char err[256];
        dataset d;
        if (dataset_parse_csv(&d, text, size, label_cols[i], err, sizeof err) == 0 &&
            d.n * d.dim > 0) {
            volatile float sink = d.x[d.n * d.dim - 1];
            (void)sink;
            if (d.labels) {
                volatile int32_t lsink = d.labels[d.n - 1];
                (void)lsink;
            }
        }
        dataset_free(&d);
    }
    free(text);
    return 0;
}
