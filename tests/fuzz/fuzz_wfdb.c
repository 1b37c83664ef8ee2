/* fuzz_wfdb.c — the WFDB parsers of core/data/wfdb.c: wfdb_parse_header, wfdb_parse_212 and
 * wfdb_parse_annotations.
 *
 * Record files come from devices, downloads and users, so every count in them is
 * hostile: a header's signal count, sample count, gains and file names; a signal file's
 * length against the header; an annotation file's codes, SKIP jumps and AUX lengths.
 *
 * Framing: the input up to its first NUL byte is a header's text, and the bytes after
 * that NUL are a format-212 signal file, decoded for that header when it parses (no NUL:
 * the whole input is the header and the signal file is empty). The whole input is also
 * parsed as an MIT annotation file. Seeds (corpus/wfdb/): real MIT-BIH headers with the
 * first frames of their signal files (sample counts, initial values and checksums made
 * to match), a header without counts or checksums, and the first annotations of three
 * .atr files closed with the end-of-file word. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wfdb.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[256];
    const uint8_t *nul = memchr(data, 0, size);
    size_t text_len = nul ? (size_t)(nul - data) : size;

    wfdb_header h;
    if (wfdb_parse_header(&h, (const char *)data, text_len, err, sizeof err) == 0) {
        volatile int sink = wfdb_find_signal(&h, "MLII");
        (void)sink;
        const uint8_t *sig = nul ? nul + 1 : data + size;
        int16_t *samples = NULL;
        size_t nsamp = 0;
        if (wfdb_parse_212(&h, sig, (size_t)(data + size - sig), &samples, &nsamp, err,
                           sizeof err) == 0 && nsamp > 0 && h.nsig > 0) {
            /* Every sample was written; and the physical value of the last one. */
            volatile double v = wfdb_physical(&h.sig[h.nsig - 1],
                                              samples[nsamp * (size_t)h.nsig - 1]);
            (void)v;
        }
        free(samples);
    }

    wfdb_annotations a;
    if (wfdb_parse_annotations(&a, data, size, err, sizeof err) == 0) {
        for (size_t i = 0; i < a.n; i++) {
            volatile const char *sym = wfdb_code_symbol(a.a[i].code);
            volatile int beat = wfdb_is_beat(a.a[i].code);
            (void)sym;
            (void)beat;
            if (a.a[i].aux >= 0) {   /* AUX texts are NUL-terminated inside aux_len */
                volatile size_t len = strlen(a.aux + a.a[i].aux);
                (void)len;
            }
        }
    }
    wfdb_annotations_free(&a);
    return 0;
}
