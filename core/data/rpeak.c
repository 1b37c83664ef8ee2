/* rpeak.c — Pan-Tompkins style R-peak detection at any sampling rate, and beat-by-beat
 * evaluation against annotations.
 *
 * Sections: checks; filters (Butterworth biquads run forwards and backwards); the
 * detection stage (candidates, adaptive levels, T-wave rejection, search back); locating
 * the R peak; evaluation.
 *
 * Why these choices:
 * - Pan and Tompkins designed integer filters for 200 Hz. To serve any rate, the band-pass
 *   is a pair of second-order Butterworth sections (5 Hz high-pass, 15 Hz low-pass)
 *   designed for the strip's own rate by the bilinear transform; run forwards and then
 *   backwards they have no delay, so the integrator's peak sits on the QRS, not 100 ms
 *   after it, and no delay has to be subtracted.
 * - Each filter pass starts in the steady state of its first input value, so a strip that
 *   starts far from zero does not begin with a step the detector would take for a beat.
 * - The signal level starts at half the median of the integrator's maxima over 2 s chunks
 *   of the first 10 s (Pan and Tompkins use a third of the maximum of a 2 s learning
 *   period, which one artefact can set far too high). Starting low errs towards detecting
 *   and the level rises to the beats' own within a few of them; on 10 s strips of the
 *   MIT-BIH records it gave 866 errors against 1120 when starting at the median itself.
 * - The R peak is put at the largest band-passed deflection within 100 ms of the
 *   integrator's peak, positive or negative, since ectopic beats are often negative in a
 *   lead where normal ones are positive. */
#include "rpeak.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errmsg.h"

#define PI 3.14159265358979323846
#define BAND_LO 5.0          /* Hz */
#define BAND_HI 15.0         /* Hz */
#define MWI_SECONDS 0.150    /* moving-window integration */
#define REFRACTORY 0.200     /* s: no two beats closer */
#define TWAVE_WINDOW 0.360   /* s: a candidate this close may be a T wave */
#define LOCATE_SECONDS 0.100 /* R peak search, either side of the integrator's peak */
#define LEARN_SECONDS 10.0
#define LEARN_CHUNK 2.0
#define RR_KEEP 8            /* RR intervals averaged */

/* ------------------------------------------------------------------ checks */

static int check_strip(const float *x, size_t n, double fs, char *err, size_t errlen) {
    if (!(fs >= RPEAK_MIN_FS && fs <= RPEAK_MAX_FS))
        return err_fail(err, errlen, "sampling rate %g Hz is outside %g to %g Hz", fs, RPEAK_MIN_FS,
                    RPEAK_MAX_FS);
    if ((double)n < RPEAK_MIN_SECONDS * fs)
        return err_fail(err, errlen, "strip of %zu samples (%.2f s) is too short: at least %g s "
                    "are needed", n, n / fs, RPEAK_MIN_SECONDS);
    if (n > RPEAK_MAX_SAMPLES)
        return err_fail(err, errlen, "strip of %zu samples: too long (limit %zu)", n,
                    RPEAK_MAX_SAMPLES);
    float lo = x[0], hi = x[0];
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i]))
            return err_fail(err, errlen, "value %zu is %s", i, isnan(x[i]) ? "NaN" : "infinite");
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
    }
    if (hi == lo) return err_fail(err, errlen, "flat strip: every value is %g", (double)lo);
    return 0;
}

/* ------------------------------------------------------------------ filters */

typedef struct {
    double b0, b1, b2, a1, a2, z1, z2;
} biquad;

/* Second-order Butterworth low- or high-pass at fc Hz, by the bilinear transform with
 * the cut-off pre-warped. */
static biquad butter2(double fc, double fs, int highpass) {
    double k = tan(PI * fc / fs), r2 = sqrt(2.0);
    double norm = 1 / (1 + r2 * k + k * k);
    biquad q = {0};
    if (highpass) {
        q.b0 = norm;
        q.b1 = -2 * norm;
    } else {
        q.b0 = k * k * norm;
        q.b1 = 2 * q.b0;
    }
    q.b2 = q.b0;
    q.a1 = 2 * (k * k - 1) * norm;
    q.a2 = (1 - r2 * k + k * k) * norm;
    return q;
}

/* The state (transposed direct form II) the section would be in after a long run of the
 * constant input c. */
static void biquad_settle(biquad *q, double c) {
    double y = c * (q->b0 + q->b1 + q->b2) / (1 + q->a1 + q->a2);
    q->z2 = q->b2 * c - q->a2 * y;
    q->z1 = q->b1 * c - q->a1 * y + q->z2;
}

static double biquad_step(biquad *q, double x) {
    double y = q->b0 * x + q->z1;
    q->z1 = q->b1 * x - q->a1 * y + q->z2;
    q->z2 = q->b2 * x - q->a2 * y;
    return y;
}

/* v through the section forwards, then backwards: zero phase, squared magnitude. */
static void filter_both_ways(biquad proto, double *v, size_t n) {
    biquad q = proto;
    biquad_settle(&q, v[0]);
    for (size_t i = 0; i < n; i++) v[i] = biquad_step(&q, v[i]);
    q = proto;
    biquad_settle(&q, v[n - 1]);
    for (size_t i = n; i-- > 0;) v[i] = biquad_step(&q, v[i]);
}

/* ------------------------------------------------------------------ detection */

/* The signals the decision rules look at. */
typedef struct {
    size_t n;
    double fs;
    double *bp;    /* band-passed strip */
    double *slope; /* its derivative */
    double *mwi;   /* squared derivative, integrated over MWI_SECONDS */
} stages;

static int make_stages(stages *s, const float *x, size_t n, double fs, char *err,
                       size_t errlen) {
    s->n = n;
    s->fs = fs;
    s->bp = malloc(n * sizeof *s->bp);
    s->slope = malloc(n * sizeof *s->slope);
    s->mwi = malloc(n * sizeof *s->mwi);
    if (!s->bp || !s->slope || !s->mwi) return err_fail(err, errlen, "out of memory for %zu samples", n);
    for (size_t i = 0; i < n; i++) s->bp[i] = x[i];
    filter_both_ways(butter2(BAND_LO, fs, 1), s->bp, n);
    filter_both_ways(butter2(BAND_HI, fs, 0), s->bp, n);
    for (size_t i = 0; i < n; i++) {
        size_t a = i ? i - 1 : 0, b = i + 1 < n ? i + 1 : n - 1;
        s->slope[i] = (s->bp[b] - s->bp[a]) * fs / (double)(b - a);
    }
    /* Centred moving average of the squared slope, by a running sum. */
    size_t half = (size_t)lround(MWI_SECONDS * fs / 2);
    double sum = 0;
    size_t lo = 0, hi = 0; /* the window is [lo, hi) */
    for (size_t i = 0; i < n; i++) {
        size_t want_hi = i + half + 1 < n ? i + half + 1 : n;
        size_t want_lo = i > half ? i - half : 0;
        while (hi < want_hi) { sum += s->slope[hi] * s->slope[hi]; hi++; }
        while (lo < want_lo) { sum -= s->slope[lo] * s->slope[lo]; lo++; }
        s->mwi[i] = sum > 0 ? sum / (double)(2 * half + 1) : 0;
    }
    return 0;
}

static void free_stages(stages *s) {
    free(s->bp);
    free(s->slope);
    free(s->mwi);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One candidate: a local maximum of the integrator. */
typedef struct {
    size_t at;
    double height, slope; /* integrator value; steepest slope nearby */
} candidate;

/* The adaptive state of the decision rules (all times in samples). */
typedef struct {
    double spk, npk, thr1, thr2;
    double rr_all[RR_KEEP], rr_reg[RR_KEEP];
    int n_all, n_reg, irregular_run;
    double rr_avg, rr_reg_avg, rr_missed;
    /* the last beat: index into the beat list, or -1; virtual start at sample 0 */
    long last;
    size_t last_at;
    double last_height, last_slope;
} levels;

static void set_thresholds(levels *L) {
    L->thr1 = L->npk + 0.25 * (L->spk - L->npk);
    L->thr2 = 0.5 * L->thr1;
}

static double mean_of(const double *v, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += v[i];
    return s / n;
}

/* Pan and Tompkins' two RR averages: of the last 8 intervals, and of the last 8 "regular"
 * ones (within 92-116 % of that average), which sets the search-back limit. */
static void add_rr(levels *L, double rr) {
    memmove(L->rr_all + 1, L->rr_all, (RR_KEEP - 1) * sizeof *L->rr_all);
    L->rr_all[0] = rr;
    if (L->n_all < RR_KEEP) L->n_all++;
    L->rr_avg = mean_of(L->rr_all, L->n_all);
    if (L->n_reg < RR_KEEP || (rr > 0.92 * L->rr_reg_avg && rr < 1.16 * L->rr_reg_avg)) {
        memmove(L->rr_reg + 1, L->rr_reg, (RR_KEEP - 1) * sizeof *L->rr_reg);
        L->rr_reg[0] = rr;
        if (L->n_reg < RR_KEEP) L->n_reg++;
        L->rr_reg_avg = mean_of(L->rr_reg, L->n_reg);
        L->irregular_run = 0;
    } else if (++L->irregular_run >= RR_KEEP) {
        /* The rhythm has changed for good: start the regular average again. */
        memcpy(L->rr_reg, L->rr_all, sizeof L->rr_reg);
        L->n_reg = L->n_all;
        L->rr_reg_avg = L->rr_avg;
        L->irregular_run = 0;
    }
    L->rr_missed = 1.66 * L->rr_reg_avg;
}

/* Growable list of accepted beats (candidate positions). */
typedef struct {
    size_t n, cap;
    candidate *c;
} beat_list;

static int push_beat(beat_list *b, candidate c) {
    if (b->n == b->cap) {
        size_t ncap = b->cap ? b->cap * 2 : 256;
        candidate *nc = realloc(b->c, ncap * sizeof *nc);
        if (!nc) return -1;
        b->c = nc;
        b->cap = ncap;
    }
    b->c[b->n++] = c;
    return 0;
}

/* Accepts c as a beat; search-back finds are weighted more (Pan and Tompkins' 0.25). */
static int accept(levels *L, beat_list *beats, candidate c, int searchback) {
    double w = searchback ? 0.25 : 0.125;
    L->spk = w * c.height + (1 - w) * L->spk;
    if (L->last >= 0) add_rr(L, (double)(c.at - L->last_at));
    if (push_beat(beats, c)) return -1;
    L->last = (long)beats->n - 1;
    L->last_at = c.at;
    L->last_height = c.height;
    L->last_slope = c.slope;
    set_thresholds(L);
    return 0;
}

/* Search back: the highest candidate in cand[from, to) above the lower threshold and past
 * the refractory period; its index or -1. */
static long search_back(const levels *L, const candidate *cand, size_t from, size_t to,
                        size_t refractory) {
    long best = -1;
    for (size_t j = from; j < to; j++) {
        if (cand[j].at <= L->last_at + refractory && L->last >= 0) continue;
        if (cand[j].height > L->thr2 && (best < 0 || cand[j].height > cand[best].height))
            best = (long)j;
    }
    return best;
}

/* Runs the decision rules over the candidates; beats gets the accepted ones in order. */
static int decide(const stages *s, const candidate *cand, size_t nc, beat_list *beats) {
    double fs = s->fs;
    size_t refractory = (size_t)lround(REFRACTORY * fs);
    size_t twave = (size_t)lround(TWAVE_WINDOW * fs);
    levels L = {0};

    /* Levels from the first seconds: the median of 2 s chunk maxima is a typical beat. */
    size_t chunk = (size_t)lround(LEARN_CHUNK * fs), span = (size_t)lround(LEARN_SECONDS * fs);
    if (span > s->n) span = s->n;
    double maxima[16], mean = 0;
    int nm = 0;
    for (size_t a = 0; a + chunk <= span && nm < 16; a += chunk) {
        double m = 0;
        for (size_t i = a; i < a + chunk; i++) m = s->mwi[i] > m ? s->mwi[i] : m;
        maxima[nm++] = m;
    }
    for (size_t i = 0; i < span; i++) mean += s->mwi[i];
    mean /= (double)span;
    qsort(maxima, (size_t)nm, sizeof *maxima, cmp_double);
    L.spk = nm ? 0.5 * maxima[nm / 2] : 0;
    L.npk = 0.5 * mean;
    if (L.npk > L.spk) L.npk = 0.5 * L.spk;
    set_thresholds(&L);
    L.last = -1;
    L.last_at = 0;
    L.rr_avg = L.rr_reg_avg = fs; /* 60 beats per minute until measured */
    L.rr_missed = 1.66 * fs;

    size_t sb_from = 0; /* candidates after the last beat */
    for (size_t k = 0; k <= nc; k++) {
        size_t at = k < nc ? cand[k].at : s->n;
        /* Search back while the gap since the last beat is too long. */
        while ((double)(at - L.last_at) > L.rr_missed) {
            long j = search_back(&L, cand, sb_from, k, refractory);
            if (j < 0) break;
            if (accept(&L, beats, cand[j], 1)) return -1;
            sb_from = (size_t)j + 1;
        }
        if (k == nc) break;
        candidate c = cand[k];
        if (c.height > L.thr1) {
            if (L.last >= 0 && c.at - L.last_at < refractory) {
                /* Two peaks of one complex: keep the taller. */
                if (c.height > L.last_height) {
                    beats->c[L.last] = c;
                    L.last_at = c.at;
                    L.last_height = c.height;
                    L.last_slope = c.slope;
                    sb_from = k + 1;
                }
                continue;
            }
            if (L.last >= 0 && c.at - L.last_at < twave && c.slope < 0.5 * L.last_slope) {
                L.npk = 0.125 * c.height + 0.875 * L.npk; /* a T wave */
                set_thresholds(&L);
                continue;
            }
            if (accept(&L, beats, c, 0)) return -1;
            sb_from = k + 1;
        } else {
            L.npk = 0.125 * c.height + 0.875 * L.npk;
            set_thresholds(&L);
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ locating */

static int find_candidates(const stages *s, candidate **out, size_t *nc) {
    size_t cap = 256, n = 0;
    size_t half = (size_t)lround(MWI_SECONDS * s->fs / 2);
    candidate *c = malloc(cap * sizeof *c);
    if (!c) return -1;
    for (size_t i = 1; i + 1 < s->n; i++) {
        if (!(s->mwi[i] > s->mwi[i - 1] && s->mwi[i] >= s->mwi[i + 1])) continue;
        if (n == cap) {
            candidate *nc2 = realloc(c, (cap *= 2) * sizeof *c);
            if (!nc2) {
                free(c);
                return -1;
            }
            c = nc2;
        }
        size_t a = i > half ? i - half : 0, b = i + half < s->n ? i + half : s->n - 1;
        double sl = 0;
        for (size_t j = a; j <= b; j++) sl = fabs(s->slope[j]) > sl ? fabs(s->slope[j]) : sl;
        c[n++] = (candidate){i, s->mwi[i], sl};
    }
    *out = c;
    *nc = n;
    return 0;
}

int rpeak_detect(const float *x, size_t n, double fs, int64_t **peaks, size_t *np, char *err,
                 size_t errlen) {
    stages s = {0};
    candidate *cand = NULL;
    beat_list beats = {0};
    size_t nc = 0;
    int rc = -1;

    *peaks = NULL;
    *np = 0;
    if (!x && n) return err_fail(err, errlen, "no samples");
    if (check_strip(x, n, fs, err, errlen)) return -1;
    if (make_stages(&s, x, n, fs, err, errlen)) goto done;
    if (find_candidates(&s, &cand, &nc) || decide(&s, cand, nc, &beats)) {
        err_fail(err, errlen, "out of memory");
        goto done;
    }
    if (beats.n) {
        int64_t *p = malloc(beats.n * sizeof *p);
        if (!p) {
            err_fail(err, errlen, "out of memory");
            goto done;
        }
        size_t reach = (size_t)lround(LOCATE_SECONDS * fs), k = 0;
        for (size_t i = 0; i < beats.n; i++) {
            size_t c = beats.c[i].at;
            size_t a = c > reach ? c - reach : 0, b = c + reach < n ? c + reach : n - 1;
            size_t best = c;
            for (size_t j = a; j <= b; j++)
                if (fabs(s.bp[j]) > fabs(s.bp[best])) best = j;
            /* Two integrator peaks can settle on one deflection: keep one beat. */
            if (k && (int64_t)best <= p[k - 1]) continue;
            p[k++] = (int64_t)best;
        }
        *peaks = p;
        *np = k;
    }
    rc = 0;
done:
    free_stages(&s);
    free(cand);
    free(beats.c);
    return rc;
}

/* ------------------------------------------------------------------ evaluation */

void rpeak_compare(const int64_t *ref, size_t nr, const int64_t *det, size_t nd, int64_t tol,
                   rpeak_match *m) {
    size_t j = 0, matched = 0;
    for (size_t i = 0; i < nr; i++) {
        /* Detections too early for this reference are never matched later. */
        while (j < nd && det[j] < ref[i] - tol) j++;
        if (j < nd && det[j] <= ref[i] + tol) {
            /* The nearer of det[j] and det[j + 1], when the next one fits too. */
            size_t best = j;
            if (j + 1 < nd && det[j + 1] <= ref[i] + tol &&
                llabs((long long)(det[j + 1] - ref[i])) < llabs((long long)(det[j] - ref[i])))
                best = j + 1;
            /* det[j] is skipped if det[j + 1] is taken: it stays unmatched (a false one). */
            j = best + 1;
            matched++;
        } else {
            m->fn++;
        }
    }
    m->tp += matched;
    m->fp += nd - matched;
}

/* Nonzero if t lies in one of the flutter/fibrillation episodes ep[0..ne) (pairs). */
static int in_episode(int64_t t, const int64_t (*ep)[2], size_t ne) {
    for (size_t e = 0; e < ne; e++)
        if (t >= ep[e][0] && t <= ep[e][1]) return 1;
    return 0;
}

int rpeak_evaluate_record(const wfdb_record *r, int channel, double strip_seconds,
                          double tol_seconds, rpeak_match *m, char *err, size_t errlen) {
    const wfdb_annotations *an = &r->ann;
    double fs = r->hdr.fs;
    int64_t (*ep)[2] = NULL;
    int64_t *ref = NULL, *keep = NULL;
    float *x = NULL;
    size_t ne = 0, nr = 0;
    int rc = -1;

    if (channel < 0 || channel >= r->hdr.nsig)
        return err_fail(err, errlen, "record %s has no signal %d", r->hdr.record, channel);
    if (!(tol_seconds > 0 && tol_seconds < 1))
        return err_fail(err, errlen, "tolerance %g s is not between 0 and 1 s", tol_seconds);
    ep = malloc((an->n + 1) * sizeof *ep);
    ref = malloc((an->n + 1) * sizeof *ref);
    x = malloc(r->nsamp * sizeof *x);
    if (!ep || !ref || !x) {
        err_fail(err, errlen, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < an->n; i++) {
        const char *sym = wfdb_code_symbol(an->a[i].code);
        if (sym && sym[0] == '[') {
            ep[ne][0] = an->a[i].time;
            ep[ne++][1] = INT64_MAX;
        } else if (sym && sym[0] == ']' && ne && ep[ne - 1][1] == INT64_MAX) {
            ep[ne - 1][1] = an->a[i].time;
        }
    }
    for (size_t i = 0; i < an->n; i++)
        if (wfdb_is_beat(an->a[i].code) && !in_episode(an->a[i].time, (const int64_t(*)[2])ep, ne))
            ref[nr++] = an->a[i].time;
    const wfdb_signal *sg = &r->hdr.sig[channel];
    for (size_t i = 0; i < r->nsamp; i++)
        x[i] = (float)wfdb_physical(sg, r->samples[i * (size_t)r->hdr.nsig + (size_t)channel]);

    size_t strip = strip_seconds > 0 ? (size_t)lround(strip_seconds * fs) : r->nsamp;
    if (strip == 0) strip = r->nsamp;
    int64_t tol = (int64_t)lround(tol_seconds * fs);
    size_t ri = 0;
    for (size_t a = 0; a < r->nsamp; a += strip) {
        size_t len = r->nsamp - a < strip ? r->nsamp - a : strip;
        int64_t *det = NULL;
        size_t nd = 0, nk = 0;
        if ((double)len < RPEAK_MIN_SECONDS * fs) break; /* a short tail is left out */
        if (rpeak_detect(x + a, len, fs, &det, &nd, err, errlen)) goto done;
        free(keep);
        keep = malloc((nd + 1) * sizeof *keep);
        if (!keep) {
            free(det);
            err_fail(err, errlen, "out of memory");
            goto done;
        }
        for (size_t i = 0; i < nd; i++) {
            int64_t t = det[i] + (int64_t)a;
            if (!in_episode(t, (const int64_t(*)[2])ep, ne)) keep[nk++] = t;
        }
        free(det);
        size_t r0 = ri;
        while (ri < nr && ref[ri] < (int64_t)(a + len)) ri++;
        rpeak_compare(ref + r0, ri - r0, keep, nk, tol, m);
    }
    rc = 0;
done:
    free(ep);
    free(ref);
    free(keep);
    free(x);
    return rc;
}

double rpeak_sensitivity(const rpeak_match *m) {
    return m->tp + m->fn ? 100.0 * (double)m->tp / (double)(m->tp + m->fn) : 100.0;
}

double rpeak_predictivity(const rpeak_match *m) {
    return m->tp + m->fp ? 100.0 * (double)m->tp / (double)(m->tp + m->fp) : 100.0;
}
