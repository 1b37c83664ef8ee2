/* dataset_io.c — the IDX, NPY and CSV readers, and the NPY writer.
 *
 * Sections: error and shape helpers; element decoding shared by IDX and NPY; the three
 * parsers, on memory buffers; reading files through zlib and the loaders; the writer.
 *
 * Parsers never read outside [buf, buf + len): fixed-size header fields are read only
 * after checking they are there, data only after checking the header's promised byte
 * count against what is left, and C library functions that want terminated strings
 * (strtod) get a bounded local copy. */
#include "dataset_io.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "errmsg.h"
#include "le.h"

/* Largest file read (after decompression): bounds memory even for a gzip bomb. */
#define MAX_FILE_BYTES ((size_t)1 << 31)
#define MAX_NDIM 4            /* n, then at most channels, height, width */
#define NPY_MAX_HEADER 65536  /* numpy writes a few hundred bytes; anything huge is bogus */
#define CSV_MAX_CELL 64       /* longest number text; "-1.2345678901234567e-308" is 24 */
#define READ_CHUNK (1u << 30) /* gzread takes an unsigned and returns an int */

/* ------------------------------------------------------------------ helpers */

/* "28x28"-style text for the shape of one sample, dims[1..ndim-1]. */
static void format_sample_shape(char *out, size_t outlen, const uint64_t *dims, int ndim) {
    size_t used = 0;
    out[0] = '\0';
    for (int i = 1; i < ndim && used < outlen; i++) {
        int w = snprintf(out + used, outlen - used, "%s%llu", i > 1 ? "x" : "",
                         (unsigned long long)dims[i]);
        if (w < 0) return;
        used += (size_t)w;
    }
}

/* Checks every dimension and their product against DATASET_MAX_VALUES. Each factor is at
 * most 2^29 and the running product is kept at most 2^29, so uint64 cannot overflow. */
static int count_values(const uint64_t *dims, int ndim, uint64_t *values, char *err,
                        size_t errlen) {
    uint64_t v = 1;
    for (int i = 0; i < ndim; i++) {
        if (dims[i] > DATASET_MAX_VALUES || (v *= dims[i]) > DATASET_MAX_VALUES)
            return err_fail(err, errlen, "too large: more than %zu values (limit)",
                        (size_t)DATASET_MAX_VALUES);
    }
    *values = v;
    return 0;
}

/* ------------------------------------------------------------------ elements */

typedef dataset_elem elem_type;

static uint64_t load_bits(const uint8_t *p, int size, int big_endian) {
    uint64_t v = 0;
    for (int i = 0; i < size; i++) v = v << 8 | p[big_endian ? i : size - 1 - i];
    return v;
}

/* One element as a double. Exact for every type except 64-bit integers beyond 2^53, which
 * no label can be anyway and which as data would be rounded to float regardless. */
static double elem_value(const uint8_t *p, elem_type t) {
    uint64_t bits = load_bits(p, t.size, t.big_endian);
    if (t.kind == 'u') return (double)bits;
    if (t.kind == 'i') {
        /* Two's complement by hand: converting to a signed type is implementation-defined. */
        uint64_t sign = (uint64_t)1 << (8 * t.size - 1);
        uint64_t mask = sign | (sign - 1);
        return bits & sign ? -(double)((~bits & mask) + 1) : (double)bits;
    }
    if (t.size == 4) {
        uint32_t u = (uint32_t)bits;
        float f;
        memcpy(&f, &u, sizeof f);
        return f;
    }
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

/* Unsigned bytes are pixel intensities; anything else must be a finite float32, since one
 * NaN would poison a whole training run (or a score). */
int dataset_decode_samples(float *dst, const uint8_t *src, size_t count, size_t dim,
                           dataset_elem t, char *err, size_t errlen) {
    if (t.kind == 'u' && t.size == 1) {
        for (size_t i = 0; i < count; i++) dst[i] = src[i] / 255.0f;
        return 0;
    }
    for (size_t i = 0; i < count; i++, src += t.size) {
        double v = elem_value(src, t);
        if (!(fabs(v) <= FLT_MAX))
            return err_fail(err, errlen, "sample %zu, value %zu: %g is not a finite float32",
                        i / dim, i % dim, v);
        dst[i] = (float)v;
    }
    return 0;
}

static int decode_labels(int32_t *dst, const uint8_t *src, size_t count, elem_type t,
                         char *err, size_t errlen) {
    for (size_t i = 0; i < count; i++, src += t.size) {
        double v = elem_value(src, t);
        if (v < INT32_MIN || v > INT32_MAX)
            return err_fail(err, errlen, "label %zu (%.0f) does not fit in int32", i, v);
        dst[i] = (int32_t)v;
    }
    return 0;
}

/* The bytes after a header must be exactly the elements the header promises: fewer is a
 * truncated file, more a header that lies about the shape. */
static int check_payload(uint64_t values, elem_type t, size_t len, size_t off,
                         const char *what, char *err, size_t errlen) {
    uint64_t need = values * (uint64_t)t.size;
    uint64_t have = len - off;
    if (have < need)
        return err_fail(err, errlen, "truncated: header says %s (%llu bytes of data) but the "
                    "file ends after %zu bytes", what, (unsigned long long)need, len);
    if (have > need)
        return err_fail(err, errlen, "%llu unexpected bytes after the %s the header describes",
                    (unsigned long long)(have - need), what);
    return 0;
}

/* Builds out from a parsed header (dims[0] is the sample count) and the data at buf+off. */
static int make_samples(dataset *out, const uint64_t *dims, int ndim, elem_type t,
                        const uint8_t *buf, size_t len, size_t off, char *err,
                        size_t errlen) {
    char shape[96], what[160];
    uint64_t values = 0;

    if (ndim < 2)
        return err_fail(err, errlen, "%d-dimensional array: samples need 2 to %d dimensions "
                    "(count, then the shape of one sample); is this a labels file?",
                    ndim, MAX_NDIM);
    if (ndim > MAX_NDIM)
        return err_fail(err, errlen, "%d-dimensional array: at most %d dimensions are supported",
                    ndim, MAX_NDIM);
    format_sample_shape(shape, sizeof shape, dims, ndim);
    if (dims[0] == 0) return err_fail(err, errlen, "no samples (shape 0 x %s)", shape);
    for (int i = 1; i < ndim; i++)
        if (dims[i] == 0) return err_fail(err, errlen, "samples are empty (shape %s)", shape);
    if (count_values(dims, ndim, &values, err, errlen)) return -1;
    snprintf(what, sizeof what, "%llu samples of %s", (unsigned long long)dims[0], shape);
    if (check_payload(values, t, len, off, what, err, errlen)) return -1;

    dataset d = {0};
    d.n = (size_t)dims[0];
    d.dim = (size_t)(values / dims[0]);
    d.channels = ndim == 4 ? (int)dims[1] : 1;
    d.height = ndim >= 3 ? (int)dims[ndim - 2] : 1;
    d.width = (int)dims[ndim - 1];
    d.x = malloc((size_t)values * sizeof *d.x);
    if (!d.x) return err_fail(err, errlen, "out of memory for %llu values",
                          (unsigned long long)values);
    if (dataset_decode_samples(d.x, buf + off, (size_t)values, d.dim, t, err, errlen)) {
        free(d.x);
        return -1;
    }
    *out = d;
    return 0;
}

/* Builds a label array from a parsed header and the data at buf+off. */
static int make_labels(int32_t **labels, size_t *n, const uint64_t *dims, int ndim,
                       elem_type t, const uint8_t *buf, size_t len, size_t off, char *err,
                       size_t errlen) {
    char what[64];
    uint64_t count = 0;

    if (ndim != 1)
        return err_fail(err, errlen, "labels must be 1-dimensional, not %d-dimensional", ndim);
    if (t.kind == 'f')
        return err_fail(err, errlen, "labels are floating point; they must be integers");
    if (dims[0] == 0) return err_fail(err, errlen, "no labels");
    if (count_values(dims, 1, &count, err, errlen)) return -1;
    snprintf(what, sizeof what, "%llu labels", (unsigned long long)count);
    if (check_payload(count, t, len, off, what, err, errlen)) return -1;

    int32_t *l = malloc((size_t)count * sizeof *l);
    if (!l) return err_fail(err, errlen, "out of memory for %llu labels",
                        (unsigned long long)count);
    if (decode_labels(l, buf + off, (size_t)count, t, err, errlen)) {
        free(l);
        return -1;
    }
    *labels = l;
    *n = (size_t)count;
    return 0;
}

/* A format's header parser: element type, shape (ndim dims) and the data's offset. */
typedef int (*header_parser)(const uint8_t *buf, size_t len, elem_type *t, uint64_t *dims,
                             int *ndim, size_t *off, char *err, size_t errlen);

static int parse_samples(dataset *out, header_parser header, const uint8_t *buf, size_t len,
                         char *err, size_t errlen) {
    elem_type t;
    uint64_t dims[MAX_NDIM];
    int ndim;
    size_t off;

    memset(out, 0, sizeof *out);
    if (header(buf, len, &t, dims, &ndim, &off, err, errlen)) return -1;
    return make_samples(out, dims, ndim, t, buf, len, off, err, errlen);
}

static int parse_labels(int32_t **labels, size_t *n, header_parser header, const uint8_t *buf,
                        size_t len, char *err, size_t errlen) {
    elem_type t;
    uint64_t dims[MAX_NDIM];
    int ndim;
    size_t off;

    *labels = NULL;
    *n = 0;
    if (header(buf, len, &t, dims, &ndim, &off, err, errlen)) return -1;
    return make_labels(labels, n, dims, ndim, t, buf, len, off, err, errlen);
}

/* ------------------------------------------------------------------ IDX */

/* IDX (LeCun's MNIST format): bytes 0 0, a type code, the number of dimensions, then each
 * dimension as a big-endian uint32, then the elements, big-endian, in C order. */
static int idx_header(const uint8_t *buf, size_t len, elem_type *t, uint64_t *dims,
                      int *ndim, size_t *off, char *err, size_t errlen) {
    static const struct { uint8_t code; elem_type t; } types[] = {
        {0x08, {'u', 1, 1}}, {0x09, {'i', 1, 1}}, {0x0B, {'i', 2, 1}},
        {0x0C, {'i', 4, 1}}, {0x0D, {'f', 4, 1}}, {0x0E, {'f', 8, 1}},
    };
    size_t i;

    if (len == 0) return err_fail(err, errlen, "empty file");
    if (len < 4) return err_fail(err, errlen, "truncated: %zu bytes, too short for an IDX header", len);
    uint32_t magic = (uint32_t)load_bits(buf, 4, 1);
    if (buf[0] != 0 || buf[1] != 0)
        return err_fail(err, errlen, "wrong magic 0x%08x: not an IDX file", (unsigned)magic);
    for (i = 0; i < sizeof types / sizeof types[0] && types[i].code != buf[2]; i++) continue;
    if (i == sizeof types / sizeof types[0])
        return err_fail(err, errlen, "wrong magic 0x%08x: unknown IDX element type 0x%02x",
                    (unsigned)magic, buf[2]);
    *t = types[i].t;
    *ndim = buf[3];
    if (*ndim < 1 || *ndim > MAX_NDIM)
        return err_fail(err, errlen, "IDX file with %d dimensions: 1 to %d are supported", *ndim,
                    MAX_NDIM);
    *off = 4 + 4 * (size_t)*ndim;
    if (len < *off)
        return err_fail(err, errlen, "truncated: the IDX header needs %zu bytes but the file has %zu",
                    *off, len);
    for (int d = 0; d < *ndim; d++) dims[d] = load_bits(buf + 4 + 4 * d, 4, 1);
    return 0;
}

int dataset_parse_idx(dataset *out, const uint8_t *buf, size_t len, char *err, size_t errlen) {
    return parse_samples(out, idx_header, buf, len, err, errlen);
}

int dataset_parse_idx_labels(int32_t **labels, size_t *n, const uint8_t *buf, size_t len,
                             char *err, size_t errlen) {
    return parse_labels(labels, n, idx_header, buf, len, err, errlen);
}

/* ------------------------------------------------------------------ NPY */

/* NPY: "\x93NUMPY", major and minor version bytes, the header length (uint16 LE in
 * version 1, uint32 LE in 2 and 3), then the header: a Python dict literal such as
 * {'descr': '<f4', 'fortran_order': False, 'shape': (60000, 28, 28), } padded with
 * spaces and a newline. The data follow in the order and byte order it gives. Only the
 * subset of Python syntax numpy writes is accepted. */

typedef struct {
    const char *p, *end;
} cursor;

static void skip_space(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

/* Consumes ch after optional white space; 0 if something else comes next. */
static int accept_char(cursor *c, char ch) {
    skip_space(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

static int accept_word(cursor *c, const char *word) {
    size_t n = strlen(word);
    skip_space(c);
    if ((size_t)(c->end - c->p) >= n && memcmp(c->p, word, n) == 0) {
        c->p += n;
        return 1;
    }
    return 0;
}

/* A quoted string without escapes (numpy's keys and simple dtypes need none). */
static int parse_pystr(cursor *c, char *out, size_t outlen) {
    skip_space(c);
    if (c->p == c->end || (*c->p != '\'' && *c->p != '"')) return -1;
    char quote = *c->p++;
    const char *s = c->p;
    while (c->p < c->end && *c->p != quote) c->p++;
    if (c->p == c->end || (size_t)(c->p - s) >= outlen) return -1;
    memcpy(out, s, (size_t)(c->p - s));
    out[c->p - s] = '\0';
    c->p++;
    return 0;
}

/* A tuple of non-negative integers, "(60000, 28, 28)", "(5,)" or "()". */
static int parse_shape(cursor *c, uint64_t *dims, int *ndim, char *err, size_t errlen) {
    *ndim = 0;
    if (!accept_char(c, '(')) return err_fail(err, errlen, "bad NPY header: shape is not a tuple");
    while (!accept_char(c, ')')) {
        uint64_t v = 0;
        skip_space(c);
        if (c->p == c->end || *c->p < '0' || *c->p > '9')
            return err_fail(err, errlen, "bad NPY header: shape holds something other than integers");
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            v = v * 10 + (uint64_t)(*c->p++ - '0');
            if (v > DATASET_MAX_VALUES)
                return err_fail(err, errlen, "too large: a dimension exceeds %zu",
                            (size_t)DATASET_MAX_VALUES);
        }
        if (*ndim == MAX_NDIM)
            return err_fail(err, errlen, "more than %d dimensions are not supported", MAX_NDIM);
        dims[(*ndim)++] = v;
        if (!accept_char(c, ',') && !(c->p < c->end && *c->p == ')'))
            return err_fail(err, errlen, "bad NPY header: malformed shape tuple");
    }
    return 0;
}

/* descr such as "<f4" or "|u1": byte order, kind, size. Single-byte types have no order. */
static int parse_dtype(const char *descr, elem_type *t) {
    if (strlen(descr) != 3) return -1;
    char order = descr[0], kind = descr[1];
    int size = descr[2] - '0';
    if (order != '<' && order != '>' && order != '|') return -1;
    if (kind == 'f' ? size != 4 && size != 8
                    : (kind != 'u' && kind != 'i') || (size != 1 && size != 2 && size != 4 && size != 8))
        return -1;
    if (order == '|' && size != 1) return -1;
    t->kind = kind;
    t->size = size;
    t->big_endian = order == '>';
    return 0;
}

static int npy_header(const uint8_t *buf, size_t len, elem_type *t, uint64_t *dims,
                      int *ndim, size_t *off, char *err, size_t errlen) {
    static const uint8_t magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    size_t hlen, start;
    char key[32], descr[32];
    int have_descr = 0, have_order = 0, have_shape = 0, fortran = 0;

    if (len == 0) return err_fail(err, errlen, "empty file");
    if (len < 10 || memcmp(buf, magic, sizeof magic) != 0)
        return err_fail(err, errlen, "wrong magic: not an NPY file");
    if (buf[6] == 1) {
        hlen = (size_t)load_bits(buf + 8, 2, 0);
        start = 10;
    } else if (buf[6] == 2 || buf[6] == 3) {
        if (len < 12) return err_fail(err, errlen, "truncated NPY header");
        hlen = (size_t)load_bits(buf + 8, 4, 0);
        start = 12;
    } else {
        return err_fail(err, errlen, "NPY format version %d.%d is not supported (1 to 3 are)",
                    buf[6], buf[7]);
    }
    if (hlen > NPY_MAX_HEADER)
        return err_fail(err, errlen, "NPY header of %zu bytes: implausibly long", hlen);
    if (len - start < hlen)
        return err_fail(err, errlen, "truncated: the NPY header needs %zu bytes but the file has %zu",
                    start + hlen, len);
    *off = start + hlen;

    cursor c = {(const char *)buf + start, (const char *)buf + start + hlen};
    if (!accept_char(&c, '{')) return err_fail(err, errlen, "bad NPY header: not a dict");
    for (;;) {
        if (accept_char(&c, '}')) break;
        if (parse_pystr(&c, key, sizeof key) || !accept_char(&c, ':'))
            return err_fail(err, errlen, "bad NPY header: expected 'key':");
        if (strcmp(key, "descr") == 0 && !have_descr) {
            if (parse_pystr(&c, descr, sizeof descr))
                return err_fail(err, errlen, "unsupported dtype: structured or unreadable descr");
            if (parse_dtype(descr, t))
                return err_fail(err, errlen, "unsupported dtype '%s' (need an integer type or "
                            "float32/float64, e.g. '<f4' or '|u1')", descr);
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0 && !have_order) {
            if (accept_word(&c, "True")) fortran = 1;
            else if (!accept_word(&c, "False"))
                return err_fail(err, errlen, "bad NPY header: fortran_order is not True or False");
            have_order = 1;
        } else if (strcmp(key, "shape") == 0 && !have_shape) {
            if (parse_shape(&c, dims, ndim, err, errlen)) return -1;
            have_shape = 1;
        } else {
            return err_fail(err, errlen, "bad NPY header: unexpected or repeated key '%s'", key);
        }
        if (accept_char(&c, ',')) continue;
        if (accept_char(&c, '}')) break;
        return err_fail(err, errlen, "bad NPY header: expected ',' or '}'");
    }
    skip_space(&c);
    if (c.p != c.end) return err_fail(err, errlen, "bad NPY header: text after the dict");
    if (!have_descr || !have_order || !have_shape)
        return err_fail(err, errlen, "bad NPY header: missing '%s'",
                    !have_descr ? "descr" : !have_order ? "fortran_order" : "shape");
    if (fortran)
        return err_fail(err, errlen, "fortran_order is True: only C-order arrays are supported "
                    "(save numpy.ascontiguousarray(a))");
    return 0;
}

int dataset_parse_npy(dataset *out, const uint8_t *buf, size_t len, char *err, size_t errlen) {
    return parse_samples(out, npy_header, buf, len, err, errlen);
}

int dataset_parse_npy_labels(int32_t **labels, size_t *n, const uint8_t *buf, size_t len,
                             char *err, size_t errlen) {
    return parse_labels(labels, n, npy_header, buf, len, err, errlen);
}

/* ------------------------------------------------------------------ CSV */

typedef struct {
    const char *p, *end;
    size_t lineno; /* 1-based number of the line last returned */
} line_reader;

static int is_blank_char(char ch) { return ch == ' ' || ch == '\t'; }

/* The next line that is not blank, as [*s, *e) without its "\n" or "\r\n"; 0 at the end. */
static int next_line(line_reader *r, const char **s, const char **e) {
    while (r->p < r->end) {
        const char *ls = r->p, *nl = memchr(ls, '\n', (size_t)(r->end - ls));
        const char *le = nl ? nl : r->end;
        r->p = nl ? nl + 1 : r->end;
        r->lineno++;
        if (le > ls && le[-1] == '\r') le--;
        const char *q = ls;
        while (q < le && is_blank_char(*q)) q++;
        if (q < le) {
            *s = ls;
            *e = le;
            return 1;
        }
    }
    return 0;
}

static size_t count_cells(const char *s, const char *e) {
    size_t n = 1;
    while ((s = memchr(s, ',', (size_t)(e - s))) != NULL) {
        n++;
        s++;
    }
    return n;
}

/* The cell starting at s: sets *e to its end (the next ',' or line end). */
static const char *cell_end(const char *s, const char *line_end) {
    const char *comma = memchr(s, ',', (size_t)(line_end - s));
    return comma ? comma : line_end;
}

/* Parses the cell [s, e) as a number that fits a float. strtod wants a terminated string
 * and the text need not be one, so the cell is copied into a bounded buffer first. (strtod
 * follows LC_NUMERIC; anodm never calls setlocale, so the decimal point is '.'.) */
static int parse_number(const char *s, const char *e, double *v) {
    char tmp[CSV_MAX_CELL];
    char *end;

    while (s < e && is_blank_char(*s)) s++;
    while (e > s && is_blank_char(e[-1])) e--;
    size_t n = (size_t)(e - s);
    if (n == 0 || n >= sizeof tmp) return -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    *v = strtod(tmp, &end);
    return end == tmp + n && fabs(*v) <= FLT_MAX ? 0 : -1;
}

static int csv_cell_error(const char *s, const char *e, size_t lineno, size_t col,
                          const char *why, char *err, size_t errlen) {
    int shown = e - s > 32 ? 32 : (int)(e - s);
    return err_fail(err, errlen, "line %zu, column %zu: '%.*s%s' %s", lineno, col + 1, shown, s,
                e - s > 32 ? "..." : "", why);
}

/* The first line is a header when any cell of it is not a number. */
static int is_header(const char *s, const char *e) {
    double v;
    while (1) {
        const char *ce = cell_end(s, e);
        if (parse_number(s, ce, &v)) return 1;
        if (ce == e) return 0;
        s = ce + 1;
    }
}

/* Parses one data line of ncols cells into row (dim floats) and *label (if label >= 0). */
static int parse_csv_row(const char *s, const char *e, size_t lineno, long label, float *row,
                         int32_t *labelp, char *err, size_t errlen) {
    double v;
    for (size_t col = 0;; col++) {
        const char *ce = cell_end(s, e);
        if (parse_number(s, ce, &v))
            return csv_cell_error(s, ce, lineno, col, "is not a finite number", err, errlen);
        if ((long)col == label) {
            if (v != floor(v) || v < INT32_MIN || v > INT32_MAX)
                return csv_cell_error(s, ce, lineno, col, "is not an int32 label", err, errlen);
            *labelp = (int32_t)v;
        } else {
            *row++ = (float)v;
        }
        if (ce == e) return 0;
        s = ce + 1;
    }
}

int dataset_parse_csv(dataset *out, const char *text, size_t len, int label_col, char *err,
                      size_t errlen) {
    line_reader r = {text, text + len, 0};
    const char *s, *e;
    size_t ncols, first_line, rows = 0;
    long label;

    memset(out, 0, sizeof *out);
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) r.p += 3; /* UTF-8 BOM (Excel) */
    if (!next_line(&r, &s, &e)) return err_fail(err, errlen, "empty file");
    ncols = count_cells(s, e);
    first_line = r.lineno;
    if (label_col == DATASET_CSV_NO_LABEL) label = -1;
    else if (label_col == DATASET_CSV_LAST_COL) label = (long)ncols - 1;
    else if (label_col >= 0 && (size_t)label_col < ncols) label = label_col;
    else return err_fail(err, errlen, "label column %d: rows have %zu columns", label_col, ncols);
    size_t dim = ncols - (label >= 0);
    if (dim == 0) return err_fail(err, errlen, "rows hold only the label column");

    /* Pass 1 counts rows and checks their widths, so that pass 2 can allocate once. */
    line_reader data = r;
    int header = is_header(s, e);
    if (!header) data = (line_reader){s, text + len, first_line - 1};
    r = data;
    while (next_line(&r, &s, &e)) {
        size_t n = count_cells(s, e);
        if (n != ncols)
            return err_fail(err, errlen, "ragged rows: line %zu has %zu columns, line %zu has %zu",
                        r.lineno, n, first_line, ncols);
        rows++;
    }
    if (rows == 0) return err_fail(err, errlen, "no data rows after the header");
    if (rows > DATASET_MAX_VALUES / dim)
        return err_fail(err, errlen, "too large: more than %zu values (limit)",
                    (size_t)DATASET_MAX_VALUES);

    dataset d = {0};
    d.n = rows;
    d.dim = dim;
    d.channels = d.height = 1;
    d.width = (int)dim;
    d.x = malloc(rows * dim * sizeof *d.x);
    d.labels = label >= 0 ? malloc(rows * sizeof *d.labels) : NULL;
    if (!d.x || (label >= 0 && !d.labels)) {
        dataset_free(&d);
        return err_fail(err, errlen, "out of memory for %zu rows of %zu values", rows, dim);
    }
    r = data;
    for (size_t i = 0; next_line(&r, &s, &e); i++) {
        if (parse_csv_row(s, e, r.lineno, label, d.x + i * dim, d.labels ? d.labels + i : NULL,
                          err, errlen)) {
            dataset_free(&d);
            return -1;
        }
    }
    *out = d;
    return 0;
}

/* ------------------------------------------------------------------ files */

/* zlib's message for the last error, without the "path: " zlib puts in front of most. */
static const char *gz_message(gzFile gz, const char *path) {
    int zerr;
    const char *msg = gzerror(gz, &zerr);
    size_t n = strlen(path);
    if (zerr == Z_ERRNO) return strerror(errno);
    if (strncmp(msg, path, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ') msg += n + 2;
    return msg;
}

/* Reads a whole file; gzip-compressed files are decompressed (zlib passes other files
 * through unchanged). On failure the message names the path. */
static int read_file(const char *path, uint8_t **bufp, size_t *lenp, char *err,
                     size_t errlen) {
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    int zerr;

    errno = 0;
    gzFile gz = gzopen(path, "rb");
    if (!gz) return err_fail(err, errlen, "%s: %s", path, errno ? strerror(errno) : "cannot open");
    gzbuffer(gz, 1 << 17);
    for (;;) {
        if (len == cap) {
            if (cap == MAX_FILE_BYTES) {
                err_fail(err, errlen, "%s: larger than %zu bytes (limit)", path, MAX_FILE_BYTES);
                goto error;
            }
            size_t ncap = cap ? cap * 2 : (size_t)1 << 20;
            if (ncap > MAX_FILE_BYTES) ncap = MAX_FILE_BYTES;
            uint8_t *nbuf = realloc(buf, ncap);
            if (!nbuf) {
                err_fail(err, errlen, "%s: out of memory reading %zu bytes", path, ncap);
                goto error;
            }
            buf = nbuf;
            cap = ncap;
        }
        size_t want = cap - len < READ_CHUNK ? cap - len : READ_CHUNK;
        int got = gzread(gz, buf + len, (unsigned)want);
        if (got < 0) {
            err_fail(err, errlen, "%s: %s", path, gz_message(gz, path));
            goto error;
        }
        if (got == 0) break;
        len += (size_t)got;
    }
    /* A gzip stream cut short reads as a clean end of file; zlib reports it here. */
    gzerror(gz, &zerr);
    if (zerr == Z_BUF_ERROR) {
        err_fail(err, errlen, "%s: truncated: the gzip stream ends early", path);
        goto error;
    }
    if (gzclose(gz) != Z_OK) {
        free(buf);
        return err_fail(err, errlen, "%s: error reading the file", path);
    }
    *bufp = buf;
    *lenp = len;
    return 0;

error:
    gzclose(gz);
    free(buf);
    return -1;
}

typedef int (*parse_samples_fn)(dataset *, const uint8_t *, size_t, char *, size_t);
typedef int (*parse_labels_fn)(int32_t **, size_t *, const uint8_t *, size_t, char *,
                               size_t);

/* Reads and parses a samples file and, if labels_path is set, its labels file, and checks
 * the two agree on the number of samples. */
static int load_pair(dataset *out, const char *samples_path, const char *labels_path,
                     parse_samples_fn parse_samples, parse_labels_fn parse_labels, char *err,
                     size_t errlen) {
    uint8_t *buf;
    size_t len, n;
    int32_t *labels;
    dataset d;

    memset(out, 0, sizeof *out);
    if (read_file(samples_path, &buf, &len, err, errlen)) return -1;
    int rc = parse_samples(&d, buf, len, err, errlen);
    free(buf);
    if (rc) {
        err_prefix(err, errlen, samples_path);
        return -1;
    }
    if (!labels_path) {
        *out = d;
        return 0;
    }
    if (read_file(labels_path, &buf, &len, err, errlen)) {
        dataset_free(&d);
        return -1;
    }
    rc = parse_labels(&labels, &n, buf, len, err, errlen);
    free(buf);
    if (rc) {
        err_prefix(err, errlen, labels_path);
        dataset_free(&d);
        return -1;
    }
    if (n != d.n) {
        err_fail(err, errlen, "%s: labels count %zu != samples count %zu in %s", labels_path, n,
             d.n, samples_path);
        free(labels);
        dataset_free(&d);
        return -1;
    }
    d.labels = labels;
    *out = d;
    return 0;
}

int dataset_load_idx(dataset *out, const char *samples_path, const char *labels_path,
                     char *err, size_t errlen) {
    return load_pair(out, samples_path, labels_path, dataset_parse_idx,
                     dataset_parse_idx_labels, err, errlen);
}

int dataset_load_npy(dataset *out, const char *samples_path, const char *labels_path,
                     char *err, size_t errlen) {
    return load_pair(out, samples_path, labels_path, dataset_parse_npy,
                     dataset_parse_npy_labels, err, errlen);
}

int dataset_load_csv(dataset *out, const char *path, int label_col, char *err, size_t errlen) {
    uint8_t *buf;
    size_t len;

    memset(out, 0, sizeof *out);
    if (read_file(path, &buf, &len, err, errlen)) return -1;
    int rc = dataset_parse_csv(out, (const char *)buf, len, label_col, err, errlen);
    free(buf);
    if (rc) err_prefix(err, errlen, path);
    return rc;
}

int dataset_load_fashion_mnist(dataset *out, const char *dir, int train, char *err,
                               size_t errlen) {
    const char *set = train ? "train" : "t10k";
    char images[4096], labels[4096];

    memset(out, 0, sizeof *out);
    if (snprintf(images, sizeof images, "%s/%s-images-idx3-ubyte.gz", dir, set) >=
            (int)sizeof images ||
        snprintf(labels, sizeof labels, "%s/%s-labels-idx1-ubyte.gz", dir, set) >=
            (int)sizeof labels)
        return err_fail(err, errlen, "%s: directory name too long", dir);
    if (dataset_load_idx(out, images, labels, err, errlen)) return -1;
    if (out->channels != 1 || out->height != 28 || out->width != 28) {
        err_fail(err, errlen, "%s: images are %dx%dx%d, not Fashion-MNIST's 1x28x28", images,
             out->channels, out->height, out->width);
        dataset_free(out);
        return -1;
    }
    for (size_t i = 0; i < out->n; i++) {
        if (out->labels[i] < 0 || out->labels[i] > 9) {
            err_fail(err, errlen, "%s: label %zu is %d, not a Fashion-MNIST class 0 to 9", labels,
                 i, (int)out->labels[i]);
            dataset_free(out);
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ NPY writer */

int dataset_write_npy(const char *path, npy_dtype dtype, size_t n, size_t cols,
                      uint64_t (*get)(const void *ctx, size_t i), const void *ctx, char *err,
                      size_t errlen) {
    const char *descr = dtype == NPY_I8 ? "<i8" : dtype == NPY_I4 ? "<i4" : "<f4";
    const int bytes = dtype == NPY_I8 ? 8 : 4;
    char dict[128];
    uint8_t head[10 + 128], buf[8 * 1024];
    if (cols)
        snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%zu, %zu), }",
                 descr, n, cols);
    else
        snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%zu,), }",
                 descr, n);
    /* Header padded with spaces and a newline so the data start at a multiple of 64. */
    size_t hlen = strlen(dict) + 1, total = 10 + hlen;
    total = (total + 63) / 64 * 64;
    hlen = total - 10;
    memcpy(head, "\x93NUMPY\x01\x00", 8);
    le_put16(head + 8, (uint16_t)hlen);
    memset(head + 10, ' ', hlen);
    memcpy(head + 10, dict, strlen(dict));
    head[total - 1] = '\n';
    FILE *f = fopen(path, "wb");
    if (!f) return err_fail(err, errlen, "%s: cannot write (%s)", path, strerror(errno));
    fwrite(head, 1, total, f);
    size_t count = n * (cols ? cols : 1), used = 0;
    for (size_t i = 0; i < count; i++) {
        uint64_t v = get(ctx, i);
        if (bytes == 8)
            le_put64(buf + used, v);
        else
            le_put32(buf + used, (uint32_t)v);
        used += (size_t)bytes;
        if (used + 8 > sizeof buf || i + 1 == count) {
            fwrite(buf, 1, used, f);
            used = 0;
        }
    }
    if (ferror(f) | fclose(f)) return err_fail(err, errlen, "%s: write failed", path);
    return 0;
}
