/* wfdb.h — PhysioNet WFDB records: header (.hea), format-212 signal (.dat) and MIT-format
 * annotation (.atr) files, as the MIT-BIH Arrhythmia Database ships them.
 *
 * Only what real ECG recordings need is supported: single-segment records whose signals
 * all live in one format-212 file (two 12-bit samples in three bytes, signals
 * interleaved), and MIT annotation files with their SKIP/NUM/SUB/CHN/AUX pseudo-codes.
 * Anything else (multi-segment records, other signal formats, skew or byte offsets) is
 * refused with a message that says so, rather than read wrongly.
 *
 * The files come from outside, so they are treated as hostile, as in dataset.h: every
 * count is checked against hard limits before anything is allocated, parsers never read
 * outside their buffer, and a damaged file is an error naming the file and the problem,
 * never a crash. Signals are validated against the header's initial values and 16-bit
 * checksums, which is what catches a bit flip or a file cut short at a frame boundary.
 *
 * Conventions (those of dataset.h): functions return 0 on success, or -1 with a message
 * in err (errlen bytes; err may be NULL/0). On failure the outputs are zeroed, so the
 * matching free function is always safe. */
#ifndef ANODM_WFDB_H
#define ANODM_WFDB_H

#include <stddef.h>
#include <stdint.h>

#define WFDB_MAX_SIGNALS 32              /* signals per record (MIT-BIH has 2) */
#define WFDB_NAME_MAX 64                 /* record and file names, with the NUL */
#define WFDB_DESC_MAX 96                 /* signal descriptions such as "MLII" */
#define WFDB_MAX_HEADER_BYTES (1u << 20) /* a header is a few hundred bytes */
#define WFDB_MAX_VALUES ((size_t)1 << 28)   /* samples per record, all signals */
#define WFDB_MAX_ANNOTATIONS ((size_t)1 << 24)
#define WFDB_MAX_ANN_BYTES ((size_t)1 << 27) /* .atr file size */

/* One signal line of a header. */
typedef struct {
    char file[WFDB_NAME_MAX];        /* signal file name, relative to the header's dir */
    int format;                      /* 212 is the only one read */
    double gain;                     /* ADC units per physical unit (mV) */
    int baseline;                    /* ADC value of 0 physical units */
    int adc_res, adc_zero;
    int init_value, has_init;        /* the first sample, if the header gives it */
    int checksum, has_checksum;      /* 16-bit sum of all samples, if given */
    char units[16];                  /* "mV" unless the header says otherwise */
    char description[WFDB_DESC_MAX]; /* the lead, e.g. "MLII", "V5"; may be "" */
} wfdb_signal;

/* A parsed header file. */
typedef struct {
    char record[WFDB_NAME_MAX];
    int nsig;
    double fs;        /* samples per second per signal (250 if the header omits it) */
    size_t nsamp;     /* samples per signal; 0 if the header omits it */
    wfdb_signal sig[WFDB_MAX_SIGNALS];
} wfdb_header;

/* One annotation. Times are sample numbers from the start of the record. */
typedef struct {
    int64_t time;
    int code;        /* ecgcodes.h code, 1..49 (wfdb_code_symbol gives its symbol) */
    int subtype;     /* SUB field, sign-extended from 10 bits as WFDB does; 0 if none */
    int chan, num;   /* CHN and NUM fields (sticky: they carry over to later annotations) */
    int64_t aux;     /* offset of the AUX text in wfdb_annotations.aux, or -1 */
} wfdb_annotation;

/* An annotation file: n annotations in time order, and their AUX texts, each
 * NUL-terminated, e.g. "(AFIB" for a rhythm change. */
typedef struct {
    size_t n;
    wfdb_annotation *a;
    char *aux;
    size_t aux_len;
} wfdb_annotations;

/* A whole record: header, samples (in ADC units, nsamp frames of nsig interleaved
 * samples) and, when asked for, one annotation file. */
typedef struct {
    wfdb_header hdr;
    size_t nsamp;
    int16_t *samples;
    wfdb_annotations ann;
} wfdb_record;

/* Parses a header's text (LF or CRLF line endings, # comments). Checks every field;
 * multi-segment records and signal-file names that are paths are refused. */
int wfdb_parse_header(wfdb_header *h, const char *text, size_t len, char *err, size_t errlen);

/* Decodes a format-212 signal file's bytes for header h into *samples (nsamp frames of
 * h->nsig samples, interleaved; the caller frees it). The length must match the header's
 * sample count (nsamp 0 in the header: taken from the file), and each signal's first
 * sample and checksum must match the header's when it gives them. */
int wfdb_parse_212(const wfdb_header *h, const uint8_t *buf, size_t len, int16_t **samples,
                   size_t *nsamp, char *err, size_t errlen);

/* Parses an MIT-format annotation file's bytes. It must end with the end-of-file word;
 * codes must be defined, times non-decreasing and within WFDB limits. */
int wfdb_parse_annotations(wfdb_annotations *out, const uint8_t *buf, size_t len, char *err,
                           size_t errlen);

/* Reads dir/name.hea, its signal file and, unless annotator is NULL, dir/name.annotator;
 * also checks the header names this record and every annotation lies within the signal. */
int wfdb_load_record(wfdb_record *r, const char *dir, const char *name, const char *annotator,
                     char *err, size_t errlen);

/* Index of the first signal whose description is exactly desc (e.g. "MLII"), or -1. */
int wfdb_find_signal(const wfdb_header *h, const char *desc);

/* Sample value in physical units: (adc - baseline) / gain. */
double wfdb_physical(const wfdb_signal *s, int adc);

/* The ecgcodes.h symbol of an annotation code ("N", "V", "+", ...), or NULL if undefined. */
const char *wfdb_code_symbol(int code);

/* Nonzero for codes that mark a QRS complex (a beat), as WFDB's isqrs() does. */
int wfdb_is_beat(int code);

void wfdb_annotations_free(wfdb_annotations *a); /* frees and zeroes; NULL is fine */
void wfdb_record_free(wfdb_record *r);           /* frees and zeroes; NULL is fine */

#endif
