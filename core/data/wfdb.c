/* wfdb.c — WFDB header, format-212 signal and MIT annotation readers.
 *
 * Sections: helpers; header; format 212; annotations; files and records; codes.
 *
 * Formats, as PhysioNet's header(5), signal(5) and annot(5) describe them:
 * - Header: a record line "name nsig [fs[/cfreq[(base)]] [nsamp [time [date]]]]", then one
 *   line per signal "file format [gain[(baseline)][/units] [adcres [adczero [initval
 *   [checksum [blocksize [description]]]]]]]"; lines starting with # are comments.
 * - Format 212: each pair of samples s0, s1 (in frame order, signals interleaved) is three
 *   bytes: b0 = low 8 bits of s0, b1 = high 4 bits of s1 << 4 | high 4 bits of s0,
 *   b2 = low 8 bits of s1; samples are 12-bit two's complement.
 * - MIT annotations: little-endian 16-bit words, code A in the top 6 bits and I in the low
 *   10. 1 <= A <= 49: an annotation I samples after the previous one. A = 59 (SKIP): the
 *   next 4 bytes are a signed interval added to the next annotation's time (high 16 bits
 *   first, each half little-endian). 60 NUM, 61 SUB, 62 CHN: I is the num, subtype or
 *   chan field of the annotation just read (NUM and CHN stay for later ones). 63 AUX: I
 *   bytes of text for the annotation just read, padded to an even count. A = I = 0: end.
 *
 * Parsers never read outside [buf, buf + len): each field is read only after checking it
 * is there, and text is tokenised into bounded local copies. */
#include "wfdb.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "errmsg.h"

#define MAX_TOKENS 16         /* fields on one header line, the description excluded */
#define TOKEN_MAX 128         /* longest field text kept */
#define MAX_ANN_TIME ((int64_t)1 << 40) /* far beyond any recording, far from overflow */
#define MAX_PATH 4096

/* ------------------------------------------------------------------ helpers */

/* Whole decimal integer in [lo, hi], nothing else in the text. */
static int parse_int(const char *s, long long lo, long long hi, long long *out) {
    char *end;
    if (!*s || (*s != '-' && *s != '+' && (*s < '0' || *s > '9'))) return -1;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end || errno || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

/* A finite number at the start of s; *end after it. */
static int parse_real_prefix(const char *s, double *out, const char **end) {
    char *e;
    if (!*s || strchr(" \t", *s)) return -1;
    errno = 0;
    double v = strtod(s, &e);
    if (e == s || errno || !isfinite(v)) return -1;
    *out = v;
    *end = e;
    return 0;
}

/* Record and file names: letters, digits, '_', '-' and '.', not starting with '.', so
 * that a name can never climb out of the record's directory. */
static int plain_name(const char *s) {
    if (!*s || *s == '.' || strlen(s) >= WFDB_NAME_MAX) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-' || *s == '.'))
            return 0;
    return 1;
}

/* ------------------------------------------------------------------ header */

/* One header line split into whitespace-separated fields; rest[i] is where field i starts
 * in the line (the description is "the rest of the line", spaces included). */
typedef struct {
    int n;
    char tok[MAX_TOKENS][TOKEN_MAX];
    const char *rest[MAX_TOKENS];
} fields;

static int split_fields(const char *line, fields *f, int lineno, char *err, size_t errlen) {
    const char *p = line;
    f->n = 0;
    for (;;) {
        while (*p == ' ' || *p == '\t') p++;
        if (!*p) return 0;
        if (f->n == MAX_TOKENS) return 0; /* the rest is part of a description */
        const char *s = p;
        while (*p && *p != ' ' && *p != '\t') p++;
        if ((size_t)(p - s) >= TOKEN_MAX)
            return err_fail(err, errlen, "line %d: field '%.20s...' is too long", lineno, s);
        memcpy(f->tok[f->n], s, (size_t)(p - s));
        f->tok[f->n][p - s] = '\0';
        f->rest[f->n++] = s;
    }
}

/* "name nsig [fs[/cfreq[(base)]] [nsamp ...]]" */
static int parse_record_line(wfdb_header *h, const fields *f, int lineno, char *err,
                             size_t errlen) {
    long long v;
    if (strchr(f->tok[0], '/'))
        return err_fail(err, errlen, "line %d: '%s' is a multi-segment record, which is not "
                    "supported", lineno, f->tok[0]);
    if (!plain_name(f->tok[0]))
        return err_fail(err, errlen, "line %d: '%s' is not a valid record name", lineno, f->tok[0]);
    memcpy(h->record, f->tok[0], strlen(f->tok[0]) + 1); /* plain_name bounds it */
    if (f->n < 2) return err_fail(err, errlen, "line %d: the record line has no signal count", lineno);
    if (parse_int(f->tok[1], 0, INT_MAX, &v))
        return err_fail(err, errlen, "line %d: signal count '%s' is not a number", lineno, f->tok[1]);
    if (v < 1 || v > WFDB_MAX_SIGNALS)
        return err_fail(err, errlen, "line %d: %lld signals; 1 to %d are supported", lineno, v,
                    WFDB_MAX_SIGNALS);
    h->nsig = (int)v;
    h->fs = 250; /* WFDB's default when the field is missing */
    if (f->n > 2) {
        const char *end;
        double fs;
        if (parse_real_prefix(f->tok[2], &fs, &end) || (*end && *end != '/' && *end != '('))
            return err_fail(err, errlen, "line %d: sampling frequency '%s' is not a number",
                        lineno, f->tok[2]);
        if (!(fs > 0 && fs <= 1e6))
            return err_fail(err, errlen, "line %d: sampling frequency %g Hz is out of range "
                        "(0 to 1e6)", lineno, fs);
        h->fs = fs;
    }
    if (f->n > 3) {
        if (parse_int(f->tok[3], 0, LLONG_MAX, &v))
            return err_fail(err, errlen, "line %d: sample count '%s' is not a number", lineno,
                        f->tok[3]);
        if ((unsigned long long)v > WFDB_MAX_VALUES / (size_t)h->nsig)
            return err_fail(err, errlen, "line %d: %lld samples per signal: too large (limit %zu "
                        "samples in all)", lineno, v, (size_t)WFDB_MAX_VALUES);
        h->nsamp = (size_t)v;
    }
    return 0;
}

/* "gain[(baseline)][/units]"; *has_baseline set if the baseline is given. */
static int parse_gain(wfdb_signal *s, const char *t, int *has_baseline) {
    const char *end;
    double g;
    long long b;
    if (parse_real_prefix(t, &g, &end) || g < 0 || g > 1e9) return -1;
    s->gain = g == 0 ? 200 : g; /* WFDB: 0 means uncalibrated, taken as 200 */
    if (*end == '(') {
        char num[32];
        const char *close = strchr(end, ')');
        size_t k = close ? (size_t)(close - end - 1) : 0;
        if (!close || k == 0 || k >= sizeof num) return -1;
        memcpy(num, end + 1, k);
        num[k] = '\0';
        if (parse_int(num, INT_MIN / 2, INT_MAX / 2, &b)) return -1;
        s->baseline = (int)b;
        *has_baseline = 1;
        end = close + 1;
    }
    if (*end == '/') {
        if (!end[1] || strlen(end + 1) >= sizeof s->units) return -1;
        snprintf(s->units, sizeof s->units, "%s", end + 1);
    } else if (*end) {
        return -1;
    }
    return 0;
}

/* "file format [gain[(baseline)][/units] [adcres [adczero [initval [checksum [blocksize
 * [description]]]]]]]" */
static int parse_signal_line(wfdb_signal *s, const fields *f, int lineno, char *err,
                             size_t errlen) {
    long long v;
    int has_baseline = 0;
    memset(s, 0, sizeof *s);
    s->gain = 200;
    s->adc_res = 12;
    snprintf(s->units, sizeof s->units, "mV");
    if (!plain_name(f->tok[0]))
        return err_fail(err, errlen, "line %d: signal file '%s' is not a plain file name in the "
                    "record's directory", lineno, f->tok[0]);
    memcpy(s->file, f->tok[0], strlen(f->tok[0]) + 1); /* plain_name bounds it */
    if (f->n < 2) return err_fail(err, errlen, "line %d: signal line without a format", lineno);
    const char *fmt = f->tok[1];
    size_t digits = strspn(fmt, "0123456789");
    if (digits == 0 || digits > 4)
        return err_fail(err, errlen, "line %d: signal format '%s' is not a number", lineno, fmt);
    if (fmt[digits])
        return err_fail(err, errlen, "line %d: signal format '%s': sample-per-frame, skew and "
                    "byte-offset modifiers are not supported", lineno, fmt);
    s->format = atoi(fmt);
    if (f->n > 2 && parse_gain(s, f->tok[2], &has_baseline))
        return err_fail(err, errlen, "line %d: gain '%s' is not of the form 200, 200(0) or "
                    "200(0)/mV", lineno, f->tok[2]);
    if (f->n > 3) {
        if (parse_int(f->tok[3], 1, 32, &v))
            return err_fail(err, errlen, "line %d: ADC resolution '%s' is not 1 to 32 bits",
                        lineno, f->tok[3]);
        s->adc_res = (int)v;
    }
    if (f->n > 4) {
        if (parse_int(f->tok[4], INT_MIN / 2, INT_MAX / 2, &v))
            return err_fail(err, errlen, "line %d: ADC zero '%s' is not a number", lineno, f->tok[4]);
        s->adc_zero = (int)v;
    }
    if (!has_baseline) s->baseline = s->adc_zero; /* WFDB's rule */
    if (f->n > 5) {
        if (parse_int(f->tok[5], INT_MIN / 2, INT_MAX / 2, &v))
            return err_fail(err, errlen, "line %d: initial value '%s' is not a number", lineno,
                        f->tok[5]);
        s->init_value = (int)v;
        s->has_init = 1;
    }
    if (f->n > 6) {
        if (parse_int(f->tok[6], -32768, 65535, &v))
            return err_fail(err, errlen, "line %d: checksum '%s' is not a 16-bit number", lineno,
                        f->tok[6]);
        s->checksum = (int)(int16_t)(uint16_t)v;
        s->has_checksum = 1;
    }
    if (f->n > 7 && parse_int(f->tok[7], 0, INT_MAX, &v))
        return err_fail(err, errlen, "line %d: block size '%s' is not a number", lineno, f->tok[7]);
    if (f->n > 8) {
        /* The description is the rest of the line, inner spaces kept. */
        const char *d = f->rest[8];
        size_t k = strlen(d);
        while (k && (d[k - 1] == ' ' || d[k - 1] == '\t')) k--;
        if (k >= sizeof s->description)
            return err_fail(err, errlen, "line %d: signal description is longer than %zu "
                        "characters", lineno, sizeof s->description - 1);
        memcpy(s->description, d, k);
        s->description[k] = '\0';
    }
    return 0;
}

int wfdb_parse_header(wfdb_header *h, const char *text, size_t len, char *err, size_t errlen) {
    char line[1024];
    int lineno = 0, sig = 0, have_record = 0;
    size_t pos = 0;
    fields f;

    memset(h, 0, sizeof *h);
    if (len == 0) return err_fail(err, errlen, "empty header");
    if (len > WFDB_MAX_HEADER_BYTES)
        return err_fail(err, errlen, "header of %zu bytes: implausibly long (limit %u)", len,
                    WFDB_MAX_HEADER_BYTES);
    if (memchr(text, '\0', len)) return err_fail(err, errlen, "header holds NUL bytes: not a text file");
    while (pos < len) {
        const char *s = text + pos;
        const char *nl = memchr(s, '\n', len - pos);
        size_t k = nl ? (size_t)(nl - s) : len - pos;
        pos += k + (nl ? 1 : 0);
        lineno++;
        if (k && s[k - 1] == '\r') k--; /* CRLF, as PhysioNet ships headers */
        if (k >= sizeof line) {
            err_fail(err, errlen, "line %d: longer than %zu characters", lineno, sizeof line - 1);
            goto error;
        }
        memcpy(line, s, k);
        line[k] = '\0';
        if (strchr(line, '\r')) {
            err_fail(err, errlen, "line %d: stray carriage return", lineno);
            goto error;
        }
        const char *p = line + strspn(line, " \t");
        if (!*p || *p == '#') continue;
        if (split_fields(p, &f, lineno, err, errlen)) goto error;
        if (!have_record) {
            if (parse_record_line(h, &f, lineno, err, errlen)) goto error;
            have_record = 1;
        } else if (sig < h->nsig) {
            if (parse_signal_line(&h->sig[sig], &f, lineno, err, errlen)) goto error;
            sig++;
        } else {
            err_fail(err, errlen, "line %d: unexpected line after the %d signal lines", lineno,
                 h->nsig);
            goto error;
        }
    }
    if (!have_record) {
        err_fail(err, errlen, "no record line (only comments or blank lines)");
        goto error;
    }
    if (sig < h->nsig) {
        err_fail(err, errlen, "the record line announces %d signals but %d signal lines follow",
             h->nsig, sig);
        goto error;
    }
    return 0;

error:
    memset(h, 0, sizeof *h);
    return -1;
}

/* ------------------------------------------------------------------ format 212 */

/* Format-212 bytes for `total` samples: 3 per pair, 2 for a last odd one. */
static size_t bytes_212(size_t total) { return total / 2 * 3 + (total % 2 ? 2 : 0); }

/* The 12-bit field v as a signed value (two's complement by hand). */
static int16_t sign12(unsigned v) { return (int16_t)(v & 0x800 ? (int)v - 4096 : (int)v); }

/* The header must describe one format-212 file holding every signal, since the frames
 * interleave the signals of one file. */
static int check_212_layout(const wfdb_header *h, char *err, size_t errlen) {
    for (int i = 0; i < h->nsig; i++) {
        if (h->sig[i].format != 212)
            return err_fail(err, errlen, "signal %d is in format %d; only format 212 is supported",
                        i, h->sig[i].format);
        if (strcmp(h->sig[i].file, h->sig[0].file))
            return err_fail(err, errlen, "signals in separate files (%s, %s) are not supported",
                        h->sig[0].file, h->sig[i].file);
    }
    return 0;
}

int wfdb_parse_212(const wfdb_header *h, const uint8_t *buf, size_t len, int16_t **samples,
                   size_t *nsamp, char *err, size_t errlen) {
    size_t nsig = (size_t)h->nsig, frames = h->nsamp, total, need;

    *samples = NULL;
    *nsamp = 0;
    if (h->nsig < 1 || h->nsig > WFDB_MAX_SIGNALS)
        return err_fail(err, errlen, "header with %d signals", h->nsig);
    if (check_212_layout(h, err, errlen)) return -1;
    if (frames == 0) {
        /* No count in the header: the file decides, and must hold whole frames. */
        size_t n = len / 3 * 2 + (len % 3 == 2 ? 1 : 0);
        if (n % nsig || bytes_212(n) != len)
            return err_fail(err, errlen, "%zu bytes are not a whole number of %zu-signal "
                        "format-212 frames", len, nsig);
        frames = n / nsig;
    }
    if (frames == 0) return err_fail(err, errlen, "empty signal file");
    if (frames > WFDB_MAX_VALUES / nsig)
        return err_fail(err, errlen, "%zu samples per signal: too large", frames);
    total = frames * nsig;
    need = bytes_212(total);
    if (len < need)
        return err_fail(err, errlen, "truncated: %zu samples of %zu signals need %zu bytes but the "
                    "file has %zu", frames, nsig, need, len);
    if (len > need + 1) /* one pad byte is tolerated after an odd sample count */
        return err_fail(err, errlen, "%zu bytes more than the %zu samples of %zu signals the header "
                    "describes", len - need, frames, nsig);

    int16_t *s = malloc(total * sizeof *s);
    if (!s) return err_fail(err, errlen, "out of memory for %zu samples", total);
    size_t i = 0;
    const uint8_t *p = buf;
    for (; i + 1 < total; i += 2, p += 3) {
        s[i] = sign12((unsigned)p[0] | (unsigned)(p[1] & 0x0f) << 8);
        s[i + 1] = sign12((unsigned)p[2] | (unsigned)(p[1] & 0xf0) << 4);
    }
    if (i < total) s[i] = sign12((unsigned)p[0] | (unsigned)(p[1] & 0x0f) << 8);

    for (size_t c = 0; c < nsig; c++) {
        const wfdb_signal *sg = &h->sig[c];
        uint16_t sum = 0;
        for (size_t k = c; k < total; k += nsig) sum = (uint16_t)(sum + (uint16_t)s[k]);
        if (sg->has_init && s[c] != sg->init_value) {
            err_fail(err, errlen, "signal %zu (%s): first sample %d differs from the header's "
                 "initial value %d (damaged or mismatched file)", c, sg->description, s[c],
                 sg->init_value);
            free(s);
            return -1;
        }
        if (sg->has_checksum && (int16_t)sum != sg->checksum) {
            err_fail(err, errlen, "signal %zu (%s): checksum %d differs from the header's %d "
                 "(damaged file)", c, sg->description, (int16_t)sum, sg->checksum);
            free(s);
            return -1;
        }
    }
    *samples = s;
    *nsamp = frames;
    return 0;
}

/* ------------------------------------------------------------------ annotations */

enum { CODE_SKIP = 59, CODE_NUM = 60, CODE_SUB = 61, CODE_CHN = 62, CODE_AUX = 63,
       ACMAX = 49 };

/* Grows the annotation array to hold one more. */
static int ann_reserve(wfdb_annotations *o, size_t *cap, char *err, size_t errlen) {
    if (o->n < *cap) return 0;
    if (o->n == WFDB_MAX_ANNOTATIONS)
        return err_fail(err, errlen, "more than %zu annotations (limit)", WFDB_MAX_ANNOTATIONS);
    size_t ncap = *cap ? *cap * 2 : 1024;
    if (ncap > WFDB_MAX_ANNOTATIONS) ncap = WFDB_MAX_ANNOTATIONS;
    wfdb_annotation *a = realloc(o->a, ncap * sizeof *a);
    if (!a) return err_fail(err, errlen, "out of memory for %zu annotations", ncap);
    o->a = a;
    *cap = ncap;
    return 0;
}

int wfdb_parse_annotations(wfdb_annotations *out, const uint8_t *buf, size_t len, char *err,
                           size_t errlen) {
    wfdb_annotations o = {0};
    size_t cap = 0, aux_cap = 0, pos = 0;
    int64_t t = 0, skip = 0;
    int num = 0, chan = 0, ended = 0;

    memset(out, 0, sizeof *out);
    if (len == 0) return err_fail(err, errlen, "empty annotation file");
    if (len % 2)
        return err_fail(err, errlen, "odd length %zu: MIT annotation files are 16-bit words", len);
    if (len > WFDB_MAX_ANN_BYTES)
        return err_fail(err, errlen, "annotation file of %zu bytes: too large (limit %zu)", len,
                    WFDB_MAX_ANN_BYTES);

    while (pos + 2 <= len) {
        size_t at = pos;
        unsigned w = (unsigned)buf[pos] | (unsigned)buf[pos + 1] << 8;
        int a = (int)(w >> 10), i = (int)(w & 0x3ff);
        wfdb_annotation *last = o.n ? &o.a[o.n - 1] : NULL;
        pos += 2;
        if (a == 0 && i == 0) {
            ended = 1;
            break;
        }
        switch (a) {
        case CODE_SKIP: {
            if (len - pos < 4) {
                err_fail(err, errlen, "truncated: SKIP at byte %zu without its 4-byte interval", at);
                goto error;
            }
            uint32_t u = (uint32_t)buf[pos + 1] << 24 | (uint32_t)buf[pos] << 16 |
                         (uint32_t)buf[pos + 3] << 8 | (uint32_t)buf[pos + 2];
            skip += u & 0x80000000u ? -(int64_t)(~u) - 1 : (int64_t)u;
            pos += 4;
            continue;
        }
        case CODE_NUM: case CODE_SUB: case CODE_CHN: case CODE_AUX:
            if (!last) {
                err_fail(err, errlen, "%s field at byte %zu comes before any annotation",
                     a == CODE_NUM ? "NUM" : a == CODE_SUB ? "SUB" : a == CODE_CHN ? "CHN" : "AUX",
                     at);
                goto error;
            }
            if (a == CODE_NUM) last->num = num = i;
            else if (a == CODE_SUB) last->subtype = i >= 512 ? i - 1024 : i;
            else if (a == CODE_CHN) last->chan = chan = i;
            else {
                size_t padded = (size_t)i + (size_t)(i & 1);
                if (len - pos < padded) {
                    err_fail(err, errlen, "truncated: AUX at byte %zu announces %d bytes but %zu "
                         "remain", at, i, len - pos);
                    goto error;
                }
                if (last->aux >= 0) {
                    err_fail(err, errlen, "second AUX field for annotation %zu (byte %zu)", o.n - 1,
                         at);
                    goto error;
                }
                if (o.aux_len + (size_t)i + 1 > aux_cap) {
                    /* At most the file's size plus a NUL per AUX word: bounded. */
                    size_t ncap = aux_cap ? aux_cap * 2 : 256;
                    while (ncap < o.aux_len + (size_t)i + 1) ncap *= 2;
                    char *naux = realloc(o.aux, ncap);
                    if (!naux) {
                        err_fail(err, errlen, "out of memory for annotation texts");
                        goto error;
                    }
                    o.aux = naux;
                    aux_cap = ncap;
                }
                last->aux = (int64_t)o.aux_len;
                memcpy(o.aux + o.aux_len, buf + pos, (size_t)i);
                o.aux_len += (size_t)i;
                o.aux[o.aux_len++] = '\0';
                pos += padded;
            }
            continue;
        default:
            break;
        }
        if (a == 0 || a > ACMAX) {
            err_fail(err, errlen, "undefined annotation code %d at byte %zu (not an MIT annotation "
                 "file, or damaged)", a, at);
            goto error;
        }
        int64_t nt = t + skip + i; /* |skip| < 2^31 * len/6: no overflow */
        if (nt < 0 || nt > MAX_ANN_TIME) {
            err_fail(err, errlen, "annotation %zu (byte %zu): time %lld is out of range (damaged "
                 "SKIP?)", o.n, at, (long long)nt);
            goto error;
        }
        if (nt < t) {
            err_fail(err, errlen, "annotation %zu (byte %zu) at sample %lld precedes the previous "
                 "one at %lld: annotations must be in time order", o.n, at, (long long)nt,
                 (long long)t);
            goto error;
        }
        if (ann_reserve(&o, &cap, err, errlen)) goto error;
        o.a[o.n++] = (wfdb_annotation){.time = nt, .code = a, .chan = chan, .num = num,
                                       .aux = -1};
        t = nt;
        skip = 0;
    }
    if (!ended) {
        err_fail(err, errlen, "truncated: no end-of-file word after %zu annotations", o.n);
        goto error;
    }
    if (pos != len) {
        err_fail(err, errlen, "%zu bytes after the end-of-file word", len - pos);
        goto error;
    }
    if (o.n == 0) {
        err_fail(err, errlen, "no annotations");
        goto error;
    }
    *out = o;
    return 0;

error:
    wfdb_annotations_free(&o);
    return -1;
}

/* ------------------------------------------------------------------ files and records */

/* Reads a whole regular file of at most max bytes. */
static int read_file(const char *path, size_t max, uint8_t **bufp, size_t *lenp, char *err,
                     size_t errlen) {
    struct stat st;
    FILE *f = fopen(path, "rb");
    *bufp = NULL;
    *lenp = 0;
    if (!f) return err_fail(err, errlen, "%s: %s", path, strerror(errno));
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return err_fail(err, errlen, "%s: not a regular file", path);
    }
    if ((uintmax_t)st.st_size > max) {
        fclose(f);
        return err_fail(err, errlen, "%s: %lld bytes, larger than the %zu allowed", path,
                    (long long)st.st_size, max);
    }
    size_t len = (size_t)st.st_size;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        fclose(f);
        return err_fail(err, errlen, "%s: out of memory for %zu bytes", path, len);
    }
    size_t got = fread(buf, 1, len, f);
    int bad = ferror(f) || got != len || fgetc(f) != EOF;
    fclose(f);
    if (bad) {
        free(buf);
        return err_fail(err, errlen, "%s: read error (file changed while being read?)", path);
    }
    *bufp = buf;
    *lenp = len;
    return 0;
}

/* dir/name+suffix into out; -1 if it does not fit. */
static int join_path(char *out, size_t outlen, const char *dir, const char *name,
                     const char *suffix) {
    int w = snprintf(out, outlen, "%s/%s%s", dir, name, suffix);
    return w < 0 || (size_t)w >= outlen ? -1 : 0;
}

int wfdb_load_record(wfdb_record *r, const char *dir, const char *name, const char *annotator,
                     char *err, size_t errlen) {
    char path[MAX_PATH];
    uint8_t *buf = NULL;
    size_t len;
    int rc;

    memset(r, 0, sizeof *r);
    if (!plain_name(name)) return err_fail(err, errlen, "'%s' is not a valid record name", name);
    if (annotator && !plain_name(annotator))
        return err_fail(err, errlen, "'%s' is not a valid annotator name", annotator);
    if (join_path(path, sizeof path, dir, name, ".hea"))
        return err_fail(err, errlen, "%s: path too long", dir);
    if (read_file(path, WFDB_MAX_HEADER_BYTES, &buf, &len, err, errlen)) return -1;
    rc = wfdb_parse_header(&r->hdr, (const char *)buf, len, err, errlen);
    free(buf);
    if (rc) {
        err_prefix(err, errlen, path);
        return -1;
    }
    if (strcmp(r->hdr.record, name)) {
        err_fail(err, errlen, "%s: the header describes record '%s', not '%s'", path, r->hdr.record,
             name);
        goto error;
    }
    if (check_212_layout(&r->hdr, err, errlen)) {
        err_prefix(err, errlen, path);
        goto error;
    }
    if (join_path(path, sizeof path, dir, r->hdr.sig[0].file, "")) {
        err_fail(err, errlen, "%s: path too long", dir);
        goto error;
    }
    /* 3 bytes per 2 samples at the limit, and one pad byte. */
    if (read_file(path, WFDB_MAX_VALUES / 2 * 3 + 2, &buf, &len, err, errlen)) goto error;
    rc = wfdb_parse_212(&r->hdr, buf, len, &r->samples, &r->nsamp, err, errlen);
    free(buf);
    if (rc) {
        err_prefix(err, errlen, path);
        goto error;
    }
    if (!annotator) return 0;
    if (join_path(path, sizeof path, dir, name, ".") ||
        strlen(path) + strlen(annotator) >= sizeof path) {
        err_fail(err, errlen, "%s: path too long", dir);
        goto error;
    }
    strcat(path, annotator);
    if (read_file(path, WFDB_MAX_ANN_BYTES, &buf, &len, err, errlen)) goto error;
    rc = wfdb_parse_annotations(&r->ann, buf, len, err, errlen);
    free(buf);
    if (rc) {
        err_prefix(err, errlen, path);
        goto error;
    }
    if ((uint64_t)r->ann.a[r->ann.n - 1].time >= (uint64_t)r->nsamp) {
        err_fail(err, errlen, "%s: annotation at sample %lld lies beyond the signal's %zu samples",
             path, (long long)r->ann.a[r->ann.n - 1].time, r->nsamp);
        goto error;
    }
    return 0;

error:
    wfdb_record_free(r);
    return -1;
}

int wfdb_find_signal(const wfdb_header *h, const char *desc) {
    for (int i = 0; i < h->nsig; i++)
        if (!strcmp(h->sig[i].description, desc)) return i;
    return -1;
}

double wfdb_physical(const wfdb_signal *s, int adc) { return (adc - s->baseline) / s->gain; }

void wfdb_annotations_free(wfdb_annotations *a) {
    if (!a) return;
    free(a->a);
    free(a->aux);
    memset(a, 0, sizeof *a);
}

void wfdb_record_free(wfdb_record *r) {
    if (!r) return;
    free(r->samples);
    wfdb_annotations_free(&r->ann);
    memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------------ codes */

/* ecgcodes.h: code -> symbol, "" for codes it leaves unused. */
static const char *const SYMBOL[ACMAX + 1] = {
    "",  "N", "L", "R", "a", "V", "F", "J", "A", "S", "E", "j", "/", "Q", "~", "",
    "|", "",  "s", "T", "*", "D", "\"", "=", "p", "B", "^", "t", "+", "u", "?", "!",
    "[", "]", "e", "n", "@", "x", "f", "(", ")", "r", "",  "",  "",  "",  "",  "",
    "",  ""};

const char *wfdb_code_symbol(int code) {
    if (code < 1 || code > ACMAX || !SYMBOL[code][0]) return NULL;
    return SYMBOL[code];
}

int wfdb_is_beat(int code) {
    switch (code) {
    case 1: case 2: case 3: case 4: case 5: case 6: case 7: case 8: case 9: case 10:
    case 11: case 12: case 13:  /* N L R a V F J A S E j / Q */
    case 25: case 30:           /* B (bundle branch block beat), ? (learning) */
    case 34: case 35: case 38: case 41: /* e n f r */
        return 1;
    default:
        return 0;
    }
}
