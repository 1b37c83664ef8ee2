/* ecg.c — AAMI classes, the polyphase resampler, the Kachuee segmentation, and the two
 * ways in: annotated WFDB records and raw strips.
 *
 * The resampler. fs_in / fs_out reduces to down / up; output m sits at input time
 * m * down / up, whose fractional part is one of `up` phases. Each phase has its own
 * taps of the windowed-sinc low-pass, precomputed once: 25 phases of 104 taps for
 * 360 -> 125 Hz. The low-pass cuts at 90 % of the lower Nyquist frequency (56 Hz for
 * 125 Hz output) with 16 zero crossings a side under a Kaiser window (beta 8, about 80 dB
 * of stopband attenuation): flat to about 47 Hz, and nothing above 65 Hz folds back into
 * the output band. Each phase's taps are scaled to sum to 1, so a constant stays exactly
 * constant whatever the phase. */
#include "ecg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errmsg.h"
#include "rng.h"
#include "rpeak.h"

#define PI 3.14159265358979323846
#define RS_ZERO_CROSSINGS 16
#define RS_CUTOFF 0.9
#define RS_KAISER_BETA 8.0

/* ------------------------------------------------------------------ classes */

int ecg_aami_class(int code) {
    switch (code) {
    case 1: case 2: case 3: case 34: case 11: return 0; /* N L R e j */
    case 8: case 4: case 7: case 9: return 1;           /* A a J S */
    case 5: case 10: return 2;                          /* V E */
    case 6: return 3;                                   /* F */
    case 12: case 38: case 13: return 4;                /* / f Q */
    default: return -1;
    }
}

const char *ecg_class_name(int cls) {
    static const char *const NAME[ECG_N_CLASSES] = {"N", "S", "V", "F", "Q"};
    return cls >= 0 && cls < ECG_N_CLASSES ? NAME[cls] : "?";
}

/* ------------------------------------------------------------------ resampling */

static long gcd(long a, long b) {
    while (b) {
        long t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* Modified Bessel function of the first kind, order 0, by its power series (converges
 * fast for the arguments a Kaiser window uses, at most beta). */
static double bessel_i0(double x) {
    double sum = 1, term = 1, q = x * x / 4;
    for (int k = 1; k < 200 && term > 1e-17 * sum; k++) {
        term *= q / ((double)k * k);
        sum += term;
    }
    return sum;
}

/* The reduced ratio and the taps per phase, or -1 if the rates are unsupported. */
static int resample_plan(int fs_in, int fs_out, long *up, long *down, double *fc, long *half,
                         char *err, size_t errlen) {
    if (fs_in < 1 || fs_in > ECG_MAX_RATE || fs_out < 1 || fs_out > ECG_MAX_RATE)
        return err_fail(err, errlen, "sampling rates must be whole numbers from 1 to %d Hz, not %d "
                    "and %d", ECG_MAX_RATE, fs_in, fs_out);
    long g = gcd(fs_in, fs_out);
    *up = fs_out / g;
    *down = fs_in / g;
    if (*up > ECG_MAX_PHASES || *down / *up > ECG_MAX_DECIMATION)
        return err_fail(err, errlen, "cannot resample %d Hz to %d Hz: the ratio %ld/%ld needs more "
                    "than %d phases or decimates by more than %d", fs_in, fs_out, *down, *up,
                    ECG_MAX_PHASES, ECG_MAX_DECIMATION);
    /* Cut-off in cycles per input sample: below the lower of the two Nyquist rates. */
    *fc = 0.5 * RS_CUTOFF * (*up < *down ? (double)*up / (double)*down : 1.0);
    *half = (long)ceil(RS_ZERO_CROSSINGS / (2 * *fc));
    return 0;
}

size_t ecg_resample_len(size_t n, int fs_in, int fs_out) {
    long up, down, half;
    double fc;
    if (n == 0 || resample_plan(fs_in, fs_out, &up, &down, &fc, &half, NULL, 0)) return 0;
    /* Outputs at input times m * down / up <= n - 1. */
    return (size_t)(((unsigned long long)(n - 1) * (unsigned long long)up) /
                    (unsigned long long)down) + 1;
}

int ecg_resample(const float *x, size_t n, int fs_in, int fs_out, float **y, size_t *ny,
                 char *err, size_t errlen) {
    long up, down, half;
    double fc;

    *y = NULL;
    *ny = 0;
    if (n == 0) return err_fail(err, errlen, "no samples to resample");
    if (resample_plan(fs_in, fs_out, &up, &down, &fc, &half, err, errlen)) return -1;
    if (up == down) { /* same rate: nothing to filter away */
        if (!(*y = malloc(n * sizeof **y))) return err_fail(err, errlen, "out of memory");
        memcpy(*y, x, n * sizeof *x);
        *ny = n;
        return 0;
    }
    if (n > ((size_t)1 << 40) / (size_t)up)
        return err_fail(err, errlen, "%zu samples: too many to resample", n);
    size_t taps = 2 * (size_t)half, m_out = ecg_resample_len(n, fs_in, fs_out);
    double *h = malloc((size_t)up * taps * sizeof *h);
    float *out = malloc(m_out * sizeof *out);
    if (!h || !out) {
        free(h);
        free(out);
        return err_fail(err, errlen, "out of memory resampling %zu samples", n);
    }
    /* Phase p: output at input time k0 + p/up uses inputs k0 - half + 1 .. k0 + half. */
    double i0_beta = bessel_i0(RS_KAISER_BETA);
    for (long p = 0; p < up; p++) {
        double *hp = h + (size_t)p * taps, sum = 0;
        for (size_t j = 0; j < taps; j++) {
            double t = (double)((long)j - half + 1) - (double)p / (double)up; /* k - time */
            double r = t / (double)half, w = 0;
            if (fabs(r) < 1) w = bessel_i0(RS_KAISER_BETA * sqrt(1 - r * r)) / i0_beta;
            double arg = 2 * fc * t;
            double sinc = fabs(arg) < 1e-12 ? 1.0 : sin(PI * arg) / (PI * arg);
            hp[j] = 2 * fc * sinc * w;
            sum += hp[j];
        }
        for (size_t j = 0; j < taps; j++) hp[j] /= sum;
    }
    for (size_t m = 0; m < m_out; m++) {
        unsigned long long pos = (unsigned long long)m * (unsigned long long)down;
        long long k0 = (long long)(pos / (unsigned long long)up);
        const double *hp = h + (size_t)(pos % (unsigned long long)up) * taps;
        long long first = k0 - half + 1;
        double acc = 0;
        if (first >= 0 && first + (long long)taps <= (long long)n) {
            const float *xp = x + first;
            for (size_t j = 0; j < taps; j++) acc += hp[j] * xp[j];
        } else {
            /* Near the ends: the signal continues with its edge values. */
            for (size_t j = 0; j < taps; j++) {
                long long k = first + (long long)j;
                acc += hp[j] * x[k < 0 ? 0 : k >= (long long)n ? (long long)n - 1 : k];
            }
        }
        out[m] = (float)acc;
    }
    free(h);
    *y = out;
    *ny = m_out;
    return 0;
}

/* ------------------------------------------------------------------ segmentation */

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Median RR interval of the peaks p[i0, i1) of one window; when fewer than two are inside,
 * the peaks just outside the window (p[i0 - 1], p[i1]) join in. 0 if there is no interval. */
static double window_rr(const int64_t *p, size_t np, size_t i0, size_t i1, int64_t *scratch) {
    if (i1 - i0 < 2) {
        if (i0 > 0) i0--;
        if (i1 < np) i1++;
    }
    size_t k = 0;
    for (size_t i = i0; i + 1 < i1; i++) scratch[k++] = p[i + 1] - p[i];
    if (k == 0) return 0;
    qsort(scratch, k, sizeof *scratch, cmp_i64);
    return k % 2 ? (double)scratch[k / 2] : 0.5 * (double)(scratch[k / 2 - 1] + scratch[k / 2]);
}

int ecg_segment(const float *sig, size_t n, const int64_t *peaks, size_t np, float *beats,
                uint8_t *status, size_t *clipped, char *err, size_t errlen) {
    size_t n_clipped = 0;
    if (clipped) *clipped = 0;
    for (size_t i = 0; i < np; i++) {
        if (peaks[i] < 0 || (uint64_t)peaks[i] >= (uint64_t)n)
            return err_fail(err, errlen, "R peak %zu at sample %lld lies outside the %zu-sample "
                        "signal", i, (long long)peaks[i], n);
        if (i && peaks[i] < peaks[i - 1])
            return err_fail(err, errlen, "R peaks must be in increasing order (peak %zu)", i);
    }
    memset(beats, 0, np * ECG_BEAT_LEN * sizeof *beats);
    int64_t *scratch = malloc((np + 1) * sizeof *scratch);
    if (!scratch) return err_fail(err, errlen, "out of memory");

    size_t i = 0;
    for (size_t w0 = 0; w0 < n && i < np; w0 += ECG_WINDOW) {
        size_t w1 = w0 + ECG_WINDOW < n ? w0 + ECG_WINDOW : n, i0 = i;
        while (i < np && (size_t)peaks[i] < w1) i++;
        if (i == i0) continue;
        float lo = sig[w0], hi = sig[w0];
        for (size_t k = w0; k < w1; k++) {
            lo = sig[k] < lo ? sig[k] : lo;
            hi = sig[k] > hi ? sig[k] : hi;
        }
        double rr = window_rr(peaks, np, i0, i, scratch);
        for (size_t b = i0; b < i; b++) {
            status[b] = !(hi > lo) ? ECG_SEG_FLAT : rr <= 0 ? ECG_SEG_NO_RR : ECG_SEG_OK;
            if (status[b] != ECG_SEG_OK) continue;
            size_t len = (size_t)lround(ECG_RR_FACTOR * rr), at = (size_t)peaks[b];
            if (len > ECG_BEAT_LEN) len = ECG_BEAT_LEN;
            if (len > n - at) len = n - at;
            float *row = beats + b * ECG_BEAT_LEN, range = hi - lo;
            int was_clipped = 0;
            for (size_t j = 0; j < len; j++) {
                float v = (sig[at + j] - lo) / range; /* exactly 0..1 inside */
                if (v < 0 || v > 1) { /* only past the window's end */
                    v = v < 0 ? 0 : 1;
                    was_clipped = 1;
                }
                row[j] = v;
            }
            n_clipped += (size_t)was_clipped;
        }
    }
    free(scratch);
    if (clipped) *clipped = n_clipped;
    return 0;
}

/* ------------------------------------------------------------------ beat sets */

static int beats_reserve(ecg_beats *b, size_t more, char *err, size_t errlen) {
    if (b->n + more <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->n + more) cap *= 2;
    if (cap > ((size_t)1 << 26))
        return err_fail(err, errlen, "more than %zu beats (limit)", (size_t)1 << 26);
    float *x = realloc(b->x, cap * ECG_BEAT_LEN * sizeof *x);
    if (x) b->x = x;
    int32_t *l = realloc(b->label, cap * sizeof *l);
    if (l) b->label = l;
    int32_t *r = realloc(b->record, cap * sizeof *r);
    if (r) b->record = r;
    int64_t *s = realloc(b->sample, cap * sizeof *s);
    if (s) b->sample = s;
    char *c = realloc(b->symbol, cap);
    if (c) b->symbol = c;
    if (!x || !l || !r || !s || !c) return err_fail(err, errlen, "out of memory for %zu beats", cap);
    b->cap = cap;
    return 0;
}

void ecg_beats_free(ecg_beats *b) {
    if (!b) return;
    free(b->x);
    free(b->label);
    free(b->record);
    free(b->sample);
    free(b->symbol);
    memset(b, 0, sizeof *b);
}

/* Segments sig (at ECG_FS) at peaks125 and appends the beats that were cut; the tags
 * come from the parallel arrays. counts (may be NULL) gets per-status totals. */
static int append_segmented(ecg_beats *out, const float *sig, size_t n, const int64_t *peaks125,
                            const int64_t *orig, const int32_t *label, const char *symbol,
                            size_t np, int32_t record_id, size_t counts[3], size_t *clipped,
                            char *err, size_t errlen) {
    float *rows = malloc((np ? np : 1) * ECG_BEAT_LEN * sizeof *rows);
    uint8_t *status = malloc(np ? np : 1);
    int rc = -1;
    if (!rows || !status) {
        err_fail(err, errlen, "out of memory for %zu beats", np);
        goto done;
    }
    if (ecg_segment(sig, n, peaks125, np, rows, status, clipped, err, errlen)) goto done;
    size_t kept = 0;
    for (size_t i = 0; i < np; i++) kept += status[i] == ECG_SEG_OK;
    if (beats_reserve(out, kept, err, errlen)) goto done;
    for (size_t i = 0; i < np; i++) {
        if (counts) counts[status[i]]++;
        if (status[i] != ECG_SEG_OK) continue;
        size_t k = out->n++;
        memcpy(out->x + k * ECG_BEAT_LEN, rows + i * ECG_BEAT_LEN, ECG_BEAT_LEN * sizeof *rows);
        out->label[k] = label[i];
        out->record[k] = record_id;
        out->sample[k] = orig[i];
        out->symbol[k] = symbol[i];
    }
    rc = 0;
done:
    free(rows);
    free(status);
    return rc;
}

/* The header's rate as a whole number of Hz, or -1 with a message. */
static int whole_rate(double fs, const char *what, char *err, size_t errlen) {
    if (!(fs >= 1 && fs <= ECG_MAX_RATE) || fabs(fs - floor(fs + 0.5)) > 1e-9)
        return err_fail(err, errlen, "%s: sampling rate %g Hz is not a whole number from 1 to %d",
                    what, fs, ECG_MAX_RATE);
    return (int)floor(fs + 0.5);
}

/* Sample t at rate fs_in, as the nearest sample at ECG_FS, within [0, n). */
static int64_t to_125(int64_t t, int fs_in, size_t n) {
    int64_t m = (t * ECG_FS * 2 + fs_in) / (2 * (int64_t)fs_in);
    return m >= (int64_t)n ? (int64_t)n - 1 : m;
}

int ecg_extract_record(const wfdb_record *r, int32_t record_id, const ecg_lead_choice *lead,
                       ecg_beats *out, ecg_record_stats *st, char *err, size_t errlen) {
    ecg_record_stats s = {0};
    const wfdb_header *h = &r->hdr;
    int ch = lead->channel;
    float *x = NULL, *y = NULL;
    int64_t *p125 = NULL, *orig = NULL;
    int32_t *label = NULL;
    char *symbol = NULL;
    size_t ny = 0, np = 0, counts[3] = {0};
    int rc = -1;

    if (st) memset(st, 0, sizeof *st);
    s.channel = -1;
    for (size_t i = 0; i < r->ann.n; i++) {
        int cls = ecg_aami_class(r->ann.a[i].code);
        if (cls >= 0) s.annotated[cls]++;
    }
    if (st) *st = s; /* the annotated counts, even when the lead is missing */
    if (ch >= h->nsig)
        return err_fail(err, errlen, "record %s has %d signals, no channel %d", h->record, h->nsig, ch);
    if (ch < 0) {
        const char *want = lead->lead ? lead->lead : "MLII";
        if ((ch = wfdb_find_signal(h, want)) < 0) {
            char leads[256] = "";
            for (int i = 0; i < h->nsig; i++) {
                size_t u = strlen(leads);
                snprintf(leads + u, sizeof leads - u, "%s%s", i ? ", " : "",
                         h->sig[i].description[0] ? h->sig[i].description : "(unnamed)");
            }
            err_fail(err, errlen, "record %s has no %s signal (it has %s)", h->record, want, leads);
            return ECG_NO_LEAD;
        }
    }
    s.channel = ch;
    int fs = whole_rate(h->fs, h->record, err, errlen);
    if (fs < 0) return -1;
    if (r->nsamp == 0 || !r->samples)
        return err_fail(err, errlen, "record %s has no samples", h->record);

    x = malloc(r->nsamp * sizeof *x);
    p125 = malloc((r->ann.n + 1) * sizeof *p125);
    orig = malloc((r->ann.n + 1) * sizeof *orig);
    label = malloc((r->ann.n + 1) * sizeof *label);
    symbol = malloc(r->ann.n + 1);
    if (!x || !p125 || !orig || !label || !symbol) {
        err_fail(err, errlen, "out of memory for record %s", h->record);
        goto done;
    }
    for (size_t i = 0; i < r->nsamp; i++)
        x[i] = (float)wfdb_physical(&h->sig[ch], r->samples[i * (size_t)h->nsig + (size_t)ch]);
    if (ecg_resample(x, r->nsamp, fs, ECG_FS, &y, &ny, err, errlen)) goto done;
    for (size_t i = 0; i < r->ann.n; i++) {
        int cls = ecg_aami_class(r->ann.a[i].code);
        if (cls < 0) continue;
        p125[np] = to_125(r->ann.a[i].time, fs, ny);
        orig[np] = r->ann.a[i].time;
        label[np] = cls;
        symbol[np++] = wfdb_code_symbol(r->ann.a[i].code)[0];
    }
    size_t before = out->n;
    if (append_segmented(out, y, ny, p125, orig, label, symbol, np, record_id, counts,
                         &s.clipped, err, errlen))
        goto done;
    for (size_t k = before; k < out->n; k++) s.extracted[out->label[k]]++;
    s.dropped_no_rr = counts[ECG_SEG_NO_RR];
    s.dropped_flat = counts[ECG_SEG_FLAT];
    if (st) *st = s;
    rc = 0;
done:
    free(x);
    free(y);
    free(p125);
    free(orig);
    free(label);
    free(symbol);
    return rc;
}

int ecg_takes_beats(int channels, int height, int width, char *err, size_t errlen) {
    if (channels == 1 && height == 1 && width == ECG_BEAT_LEN) return 0;
    return err_fail(err, errlen, "the model takes samples of %d x %d x %d values; strips are "
                    "cut into heartbeats of 1 x 1 x %d (an ECG model's)", channels, height,
                    width, ECG_BEAT_LEN);
}

int ecg_beats_from_strip(const float *x, size_t n, int fs, ecg_beats *out, char *err,
                         size_t errlen) {
    int64_t *peaks = NULL, *p125 = NULL;
    int32_t *label = NULL;
    char *symbol = NULL;
    float *y = NULL;
    size_t np = 0, ny = 0;
    int rc = -1;

    if (rpeak_detect(x, n, fs, &peaks, &np, err, errlen)) return -1;
    if (np == 0) {
        err_fail(err, errlen, "no heartbeat found in the strip");
        goto done;
    }
    if (ecg_resample(x, n, fs, ECG_FS, &y, &ny, err, errlen)) goto done;
    p125 = malloc(np * sizeof *p125);
    label = malloc(np * sizeof *label);
    symbol = malloc(np);
    if (!p125 || !label || !symbol) {
        err_fail(err, errlen, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < np; i++) {
        p125[i] = to_125(peaks[i], fs, ny);
        label[i] = -1;
        symbol[i] = '?';
    }
    size_t before = out->n;
    if (append_segmented(out, y, ny, p125, peaks, label, symbol, np, -1, NULL, NULL, err,
                         errlen))
        goto done;
    if (out->n == before) {
        err_fail(err, errlen, "%zu R peaks found but no beat could be cut (a single beat has no "
             "RR interval)", np);
        goto done;
    }
    rc = 0;
done:
    free(peaks);
    free(p125);
    free(label);
    free(symbol);
    free(y);
    return rc;
}

/* ------------------------------------------------------------------ splits */

/* round(frac * n) clamped to 1..n-1 (n >= 2). */
static size_t test_count(double frac, size_t n) {
    double want = floor(frac * (double)n + 0.5);
    return want < 1 ? 1 : want > (double)(n - 1) ? n - 1 : (size_t)want;
}

int ecg_split_beats(size_t n, double test_frac, uint64_t seed, uint8_t *is_test, char *err,
                    size_t errlen) {
    if (n < 2) return err_fail(err, errlen, "a split needs at least 2 beats, not %zu", n);
    if (!(test_frac > 0 && test_frac < 1))
        return err_fail(err, errlen, "test fraction %g is not between 0 and 1", test_frac);
    size_t *order = malloc(n * sizeof *order), k = test_count(test_frac, n);
    if (!order) return err_fail(err, errlen, "out of memory for a split of %zu beats", n);
    rng_t r;
    rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) order[i] = i;
    rng_shuffle(&r, order, n);
    memset(is_test, 0, n);
    for (size_t j = 0; j < k; j++) is_test[order[j]] = 1;
    free(order);
    return 0;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Index of id in the sorted ids[0..n), or -1. */
static long find_id(const int32_t *ids, size_t n, int32_t id) {
    const int32_t *p = bsearch(&id, ids, n, sizeof *ids, cmp_i32);
    return p ? (long)(p - ids) : -1;
}

/* The distinct values of record[0..n), ascending, into *ids (malloc'd); their count, or
 * 0 if out of memory. */
static size_t distinct_ids(const int32_t *record, size_t n, int32_t **ids) {
    size_t m = 0;
    if (!(*ids = malloc((n ? n : 1) * sizeof **ids))) return 0;
    memcpy(*ids, record, n * sizeof **ids);
    qsort(*ids, n, sizeof **ids, cmp_i32);
    for (size_t i = 0; i < n; i++)
        if (m == 0 || (*ids)[m - 1] != (*ids)[i]) (*ids)[m++] = (*ids)[i];
    return m;
}

/* The class balance of a split that puts the records with chosen[j] set on the test side
 * (ecg.h); count[j * ECG_N_CLASSES + c] is record j's number of beats of class c, total[c]
 * the class's, eligible[c] nonzero for the classes that count. */
static double split_balance(const size_t *count, const size_t *total, const uint8_t *eligible,
                            const uint8_t *chosen, size_t m, double test_frac) {
    double worst = 1;
    for (int c = 0; c < ECG_N_CLASSES; c++) {
        if (!eligible[c]) continue;
        size_t in_test = 0;
        for (size_t j = 0; j < m; j++)
            if (chosen[j]) in_test += count[j * ECG_N_CLASSES + c];
        double share = (double)in_test / (double)total[c];
        double b = fmin(share / test_frac, (1 - share) / (1 - test_frac));
        if (b < worst) worst = b;
    }
    return worst;
}

int ecg_split_records(const int32_t *record, const int32_t *label, size_t n, double test_frac,
                      uint64_t seed, uint8_t *is_test, int32_t *test_records, size_t *n_test,
                      double *balance, char *err, size_t errlen) {
    if (n_test) *n_test = 0;
    if (balance) *balance = 0;
    if (!(test_frac > 0 && test_frac < 1))
        return err_fail(err, errlen, "test fraction %g is not between 0 and 1", test_frac);
    int32_t *ids = NULL;
    size_t m = distinct_ids(record, n, &ids), mm = m ? m : 1;
    size_t *order = malloc(mm * sizeof *order), *count = calloc(mm * ECG_N_CLASSES, sizeof *count);
    uint8_t *chosen = calloc(mm, 1), *best = calloc(mm, 1);
    int rc = -1;
    if (!ids || !order || !count || !chosen || !best) {
        err_fail(err, errlen, "out of memory for a split of %zu beats", n);
        goto done;
    }
    if (m < 2) {
        err_fail(err, errlen, "a split by patient needs beats of at least 2 records, not %zu", m);
        goto done;
    }
    /* Beats per record and class; the classes that more than one record holds. */
    size_t total[ECG_N_CLASSES] = {0};
    uint8_t eligible[ECG_N_CLASSES] = {0};
    for (size_t i = 0; label && i < n; i++)
        if (label[i] >= 0 && label[i] < ECG_N_CLASSES) {
            count[(size_t)find_id(ids, m, record[i]) * ECG_N_CLASSES + (size_t)label[i]]++;
            total[label[i]]++;
        }
    for (int c = 0; c < ECG_N_CLASSES; c++) {
        size_t holders = 0;
        for (size_t j = 0; j < m; j++) holders += count[j * ECG_N_CLASSES + c] > 0;
        eligible[c] = holders >= 2;
    }
    /* Shuffles of the sorted ids, so the choice depends on the seed and the set of
     * records, not on the order the beats come in. */
    rng_t r;
    rng_seed(&r, seed);
    size_t k = test_count(test_frac, m);
    double best_balance = -1;
    for (int t = 0; t < (label ? ECG_SPLIT_TRIES : 1) && best_balance < 1; t++) {
        for (size_t j = 0; j < m; j++) order[j] = j;
        rng_shuffle(&r, order, m);
        memset(chosen, 0, m);
        for (size_t j = 0; j < k; j++) chosen[order[j]] = 1;
        double b = split_balance(count, total, eligible, chosen, m, test_frac);
        if (b > best_balance) {
            best_balance = b;
            memcpy(best, chosen, m);
        }
    }
    for (size_t i = 0; i < n; i++) is_test[i] = best[find_id(ids, m, record[i])];
    for (size_t j = 0, t = 0; j < m; j++)
        if (best[j] && test_records) test_records[t++] = ids[j];
    if (n_test) *n_test = k;
    if (balance) *balance = best_balance;
    rc = 0;
done:
    free(ids);
    free(order);
    free(count);
    free(chosen);
    free(best);
    return rc;
}

int ecg_split_listed(const int32_t *record, size_t n, const int32_t *test_records,
                     size_t n_test, uint8_t *is_test, char *err, size_t errlen) {
    int32_t *ids = NULL;
    size_t m = distinct_ids(record, n, &ids), n_train = 0;
    uint8_t *chosen = calloc(m ? m : 1, 1);
    int rc = -1;
    if (!ids || !chosen) {
        err_fail(err, errlen, "out of memory for a split of %zu beats", n);
        goto done;
    }
    if (n_test == 0) {
        err_fail(err, errlen, "no test records named");
        goto done;
    }
    for (size_t j = 0; j < n_test; j++) {
        long at = find_id(ids, m, test_records[j]);
        if (at < 0) {
            err_fail(err, errlen, "test record %d has no beats in the data", (int)test_records[j]);
            goto done;
        }
        chosen[at] = 1;
    }
    for (size_t i = 0; i < n; i++) {
        is_test[i] = chosen[find_id(ids, m, record[i])];
        n_train += !is_test[i];
    }
    if (n_train == 0) {
        err_fail(err, errlen, "every record is a test record: no beat is left for training");
        goto done;
    }
    rc = 0;
done:
    free(ids);
    free(chosen);
    return rc;
}
