/* t-SNE fit: affinities, exact and grid gradients, the optimiser, PCA initialisation. */
#include "tsne.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errmsg.h"
#include "knn.h"
#include "par.h"
#include "simd.h"
#include "rng.h"
#include "tsne_internal.h"

/* ---- affinities ---------------------------------------------------------------- */

/* 1/t!, t = 0..12: Horner's rule with multiplications only (a division per term made the
 * perplexity calibration a seventh of a scored sample's time). */
static const double INV_FACT[13] = {
    1.0, 1.0, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040, 1.0 / 40320,
    1.0 / 362880, 1.0 / 3628800, 1.0 / 39916800, 1.0 / 479001600};

/* exp(-a) for 0 <= a < 708, relative error below 1e-12: a = k ln2 + r, |r| <= ln2/2,
 * 2^-k from the exponent bits and e^-r by its Taylor series to r^12. Ours rather than
 * libm's because glibc's exp entry point is legacy-SSE code that pays the SSE/AVX
 * transition penalty after vectorised code (measured 20x slower per call on this
 * machine), and because P then does not depend on the libm version. */
HOT_INLINE double exp_neg(double a) {
    double k = floor(a * 1.4426950408889634 + 0.5);
    double r = k * 0.6931471805599453 - a;      /* e^-a = 2^-k e^r */
    double poly = INV_FACT[12];
    for (int t = 11; t >= 0; t--) poly = poly * r + INV_FACT[t];
    union { double d; uint64_t u; } scale = { .u = (uint64_t)(1023 - (int)k) << 52 };
    return poly * scale.d;
}

/* CALIBRATE_LANES doubles side by side (GCC's vector extension: one AVX-512 register,
 * two AVX2 ones, four SSE2 ones), and their kin; loads and stores need only their
 * element's alignment. */
typedef double lanes_d __attribute__((vector_size(8 * CALIBRATE_LANES), aligned(8)));
typedef long long lanes_l __attribute__((vector_size(8 * CALIBRATE_LANES), aligned(8)));
typedef int lanes_i __attribute__((vector_size(4 * CALIBRATE_LANES), aligned(4)));
typedef float lanes_f __attribute__((vector_size(4 * CALIBRATE_LANES), aligned(4)));

/* exp_neg of each lane of *a, in place, for 0 <= a < 60: its operations in its order, but
 * floor by truncation (the same for the positive argument) and 2^-k by integer lanes.
 * (Through a pointer: a 64-byte vector argument would change the ABI between clones.) */
HOT_INLINE void exp_neg_lanes(lanes_d *a) {
    lanes_i ki = __builtin_convertvector(*a * 1.4426950408889634 + 0.5, lanes_i);
    lanes_d r = __builtin_convertvector(ki, lanes_d) * 0.6931471805599453 - *a;
    lanes_d poly = (lanes_d){0} + INV_FACT[12];
    for (int t = 11; t >= 0; t--) poly = poly * r + INV_FACT[t];
    lanes_l scale = __builtin_convertvector(1023 - ki, lanes_l) << 52;
    *a = poly * (lanes_d)scale;
}

/* The Gaussian weight of each lane's exponent a, in place: a < 60 ? exp_neg(a) : 0, bit
 * for bit (the nearest has weight 1; below e^-60 a weight cannot matter, and exp() of
 * large arguments goes denormal and very slow). exp_neg_lanes gets 0 where a fails the
 * test, NaN included, and its result is dropped there. */
HOT_INLINE void weights_lanes(lanes_d *a) {
    lanes_l in = (lanes_l)(*a < (lanes_d){0} + 60.0);
    *a = (lanes_d)((lanes_l)*a & in);
    exp_neg_lanes(a);
    *a = (lanes_d)((lanes_l)*a & in);
}

/* The Gaussian weights p_j = e^(-beta (d2_j - dmin)) of k neighbours, their sum and their
 * first two moments of the distance: one step of the calibration, a leaf loop. The
 * weights come CALIBRATE_LANES at a time (the last k % CALIBRATE_LANES by exp_neg, whose
 * floor() is a single instruction in the AVX2 and AVX-512 clones); the sums run in index
 * order in every clone. */
HOT_LOOP static void gauss_weights(const float *d2, int k, double dmin, double beta, double *p,
                                   double *sum_out, double *sdp_out, double *sd2p_out) {
    enum { W = CALIBRATE_LANES };
    int j = 0;
    for (; j + W <= k; j += W) {
        lanes_d a = beta * (__builtin_convertvector(*(const lanes_f *)(d2 + j), lanes_d) - dmin);
        weights_lanes(&a);
        *(lanes_d *)(p + j) = a;
    }
    for (; j < k; j++) {
        double a = beta * (d2[j] - dmin);
        p[j] = a < 60.0 ? exp_neg(a) : 0.0;
    }
    double sum = 0.0, sdp = 0.0, sd2p = 0.0;
    for (j = 0; j < k; j++) {
        double dj = d2[j] - dmin;
        sum += p[j];
        sdp += dj * p[j];
        sd2p += dj * dj * p[j];
    }
    *sum_out = sum;
    *sdp_out = sdp;
    *sd2p_out = sd2p;
}

/* The calibration's start: the nearest distance *dmin and the mean excess of the k
 * distances over it. */
static double calibrate_start(const float *d2, int k, double *dmin_out) {
    double dmin = d2[0], mean = 0.0;
    for (int j = 1; j < k; j++) dmin = d2[j] < dmin ? d2[j] : dmin;
    for (int j = 0; j < k; j++) mean += d2[j] - dmin;
    *dmin_out = dmin;
    return mean / k;
}

/* One pass's verdict from gauss_weights' sums at *beta: *H gets the entropy; 1 when it is
 * within 1e-5 nats of target, else 0 with the bracket [lo, hi] narrowed and *beta moved.
 * H(beta) falls monotonically with beta, and dH/dbeta = -beta * Var_p(d): Newton steps,
 * kept inside the bracket (bisection when a step would leave it), reach 1e-5 nats in a
 * handful of passes. */
static int calibrate_update(double sum, double sdp, double sd2p, double target,
                            double *beta, double *lo, double *hi, double *H) {
    double b = *beta, md = sdp / sum, var = sd2p / sum - md * md;
    *H = log(sum) + b * md;
    if (fabs(*H - target) < 1e-5) return 1;
    if (*H > target) *lo = b;
    else *hi = b;
    double next = var > 0 ? b + (*H - target) / (b * var) : NAN;
    if (!(next > *lo && next < *hi))
        next = isinf(*hi) ? 2.0 * b : 0.5 * (*lo + *hi);
    *beta = next;
    return 0;
}

#define CALIBRATE_PASSES 100

double tsne_calibrate(const float *d2, int k, double perplexity, double *p, double *beta_out) {
    double target = log(perplexity), dmin, mean = calibrate_start(d2, k, &dmin);
    if (mean <= 0.0) {             /* all neighbours tie: uniform is all we can say */
        for (int j = 0; j < k; j++) p[j] = 1.0 / k;
        if (beta_out) *beta_out = 0.0;
        return log((double)k);
    }
    /* The scale starts at the mean distance so that any unit of the latents converges
     * alike. */
    double beta = 1.0 / mean, lo = 0.0, hi = INFINITY, H = 0.0;
    for (int it = 0; it < CALIBRATE_PASSES; it++) {
        double sum, sdp, sd2p;
        gauss_weights(d2, k, dmin, beta, p, &sum, &sdp, &sd2p);
        if (calibrate_update(sum, sdp, sd2p, target, &beta, &lo, &hi, &H)) break;
    }
    double sum = 0.0;
    for (int j = 0; j < k; j++) sum += p[j];
    for (int j = 0; j < k; j++) p[j] /= sum;
    if (beta_out) *beta_out = beta;
    return H;
}

/* gauss_weights of CALIBRATE_LANES rows at once, lane l the row at beta[l]: dj and p
 * hold neighbour j of lane l at [j * CALIBRATE_LANES + l], dj the distance less the
 * row's nearest. Each lane does gauss_weights' operations in its order. */
HOT_LOOP static void gauss_lanes(const double *dj, int k, const double *beta, double *p,
                                 double *sum_out, double *sdp_out, double *sd2p_out) {
    enum { W = CALIBRATE_LANES };
    lanes_d b = *(const lanes_d *)beta, sum = {0}, sdp = {0}, sd2p = {0};
    for (int j = 0; j < k; j++) {
        lanes_d d = *(const lanes_d *)(dj + (size_t)j * W), pj = b * d;
        weights_lanes(&pj);
        *(lanes_d *)(p + (size_t)j * W) = pj;
        sum += pj;
        sdp += d * pj;
        sd2p += d * d * pj;
    }
    *(lanes_d *)sum_out = sum;
    *(lanes_d *)sdp_out = sdp;
    *(lanes_d *)sd2p_out = sd2p;
}

void tsne_calibrate_rows(const float *d2, int k, int count, double perplexity, double *p,
                         double *scratch) {
    enum { W = CALIBRATE_LANES };
    double *dj = scratch, *pl = scratch + (size_t)k * W;
    double target = log(perplexity), beta[W], lo[W], hi[W], H, sum[W], sdp[W], sd2p[W];
    int row[W], passes[W], next = 0;
    if (count == 1) {      /* a lone row gains nothing from lanes, and pays for seven idle */
        tsne_calibrate(d2, k, perplexity, p, NULL);
        return;
    }
    memset(dj, 0, (size_t)k * W * sizeof *dj);
    for (int l = 0; l < W; l++) {
        row[l] = -1;
        beta[l] = 0.0;               /* an idle lane computes e^0s, and they go nowhere */
    }
    for (;;) {
        int busy = 0;
        for (int l = 0; l < W; l++) {         /* idle lanes take the next rows */
            while (row[l] < 0 && next < count) {
                const float *d = d2 + (size_t)next * k;
                double dmin, mean = calibrate_start(d, k, &dmin);
                if (mean <= 0.0) {            /* tsne_calibrate's ties */
                    for (int j = 0; j < k; j++) p[(size_t)next * k + j] = 1.0 / k;
                } else {
                    for (int j = 0; j < k; j++) dj[j * W + l] = d[j] - dmin;
                    row[l] = next;
                    beta[l] = 1.0 / mean;
                    lo[l] = 0.0;
                    hi[l] = INFINITY;
                    passes[l] = 0;
                }
                next++;
            }
            busy += row[l] >= 0;
        }
        if (!busy) break;
        gauss_lanes(dj, k, beta, pl, sum, sdp, sd2p);
        for (int l = 0; l < W; l++) {
            if (row[l] < 0) continue;
            if (calibrate_update(sum[l], sdp[l], sd2p[l], target, &beta[l], &lo[l], &hi[l],
                                 &H) ||
                ++passes[l] == CALIBRATE_PASSES) {
                /* tsne_calibrate's normalising sum adds the same weights in the same
                 * order as this pass's sum */
                double *out = p + (size_t)row[l] * k;
                for (int j = 0; j < k; j++) out[j] = pl[j * W + l] / sum[l];
                row[l] = -1;
            }
        }
    }
}

double tsne_row_affinities(const float *d2, int k, double perplexity, double *p) {
    double beta;
    tsne_calibrate(d2, k, perplexity, p, &beta);
    double H = 0.0;
    for (int j = 0; j < k; j++)
        if (p[j] > 0.0) H -= p[j] * log(p[j]);
    return exp(H);
}

void tsne_sparse_free(tsne_sparse *P) {
    free(P->row_ptr); free(P->cols); free(P->vals);
    memset(P, 0, sizeof *P);
}

int tsne_check_finite(const float *X, size_t count, const char *what, char *err,
                      size_t errlen) {
    for (size_t e = 0; e < count; e++) {
        if (!isfinite(X[e])) {
            snprintf(err, errlen, "%s: element %zu is not finite", what, e);
            return -1;
        }
    }
    return 0;
}

typedef struct {
    const float *dist2;
    int *idx;
    double *cond;
    int k;
    double perplexity;
} calib_ctx;

/* Calibrate each row and sort its neighbours by index (for the symmetrising merge). */
static void calibrate_rows(void *vctx, int begin, int end) {
    calib_ctx *c = vctx;
    int k = c->k;
    for (int i = begin; i < end; i++) {
        int *ix = c->idx + (size_t)i * k;
        double *pv = c->cond + (size_t)i * k;
        tsne_calibrate(c->dist2 + (size_t)i * k, k, c->perplexity, pv, NULL);
        for (int r = 1; r < k; r++) {
            int iv = ix[r], s = r - 1;
            double v = pv[r];
            while (s >= 0 && ix[s] > iv) {
                ix[s + 1] = ix[s]; pv[s + 1] = pv[s];
                s--;
            }
            ix[s + 1] = iv; pv[s + 1] = v;
        }
    }
}

int tsne_neighbours(double perplexity) { return (int)(3.0 * perplexity); }

int tsne_check_perplexity(double perplexity, int available, const char *what, char *err,
                          size_t errlen) {
    if (!(perplexity >= TSNE_MIN_PERPLEXITY && perplexity <= TSNE_MAX_PERPLEXITY))
        return err_fail(err, errlen, "perplexity %g is outside [%g, %g]", perplexity,
                        TSNE_MIN_PERPLEXITY, TSNE_MAX_PERPLEXITY);
    if (available >= 0 && tsne_neighbours(perplexity) > available)
        return err_fail(err, errlen, "perplexity %g needs %d neighbours (3 x perplexity), "
                        "more than the %d %s", perplexity, tsne_neighbours(perplexity),
                        available, what);
    return 0;
}

int tsne_affinities(const float *X, int n, int d, double perplexity, int n_threads,
                    tsne_sparse *P, char *err, size_t errlen) {
    memset(P, 0, sizeof *P);
    if (n < 2 || d < 1) {
        snprintf(err, errlen, "tsne: need at least 2 points of dimension >= 1 (n=%d, d=%d)",
                 n, d);
        return -1;
    }
    if (tsne_check_perplexity(perplexity, n - 1, "other points of the map", err, errlen)) {
        err_prefix(err, errlen, "tsne");
        return -1;
    }
    int k = tsne_neighbours(perplexity);
    if (tsne_check_finite(X, (size_t)n * d, "tsne input", err, errlen)) return -1;
    size_t nk = (size_t)n * k;
    int *idx = malloc(nk * sizeof *idx);
    float *dist2 = malloc(nk * sizeof *dist2);
    double *cond = malloc(nk * sizeof *cond);
    int64_t *rev_ptr = calloc((size_t)n + 1, sizeof *rev_ptr);
    int *rev_col = malloc(nk * sizeof *rev_col);
    double *rev_val = malloc(nk * sizeof *rev_val);
    P->row_ptr = malloc(((size_t)n + 1) * sizeof *P->row_ptr);
    P->cols = malloc(2 * nk * sizeof *P->cols);
    P->vals = malloc(2 * nk * sizeof *P->vals);
    int rc = -1;
    if (!idx || !dist2 || !cond || !rev_ptr || !rev_col || !rev_val || !P->row_ptr ||
        !P->cols || !P->vals) {
        snprintf(err, errlen, "tsne: out of memory for affinities (n=%d, k=%d)", n, k);
        goto done;
    }
    if (knn_all(X, n, d, k, n_threads, idx, dist2, err, errlen)) goto done;
    calib_ctx cc = { dist2, idx, cond, k, perplexity };
    par_for(n_threads > 0 ? n_threads : 2, n, calibrate_rows, &cc);

    /* Reverse lists (row j gets p_{j|i} from every i naming j), filled in i order so
     * they come out sorted by column, then merged with the forward lists. */
    for (size_t e = 0; e < nk; e++) rev_ptr[idx[e] + 1]++;
    for (int i = 0; i < n; i++) rev_ptr[i + 1] += rev_ptr[i];
    int64_t *fill = P->row_ptr;   /* borrowed as a cursor, rebuilt below */
    memcpy(fill, rev_ptr, (size_t)n * sizeof *fill);
    for (int i = 0; i < n; i++) {
        for (int r = 0; r < k; r++) {
            size_t e = (size_t)i * k + r;
            int64_t at = fill[idx[e]]++;
            rev_col[at] = i;
            rev_val[at] = cond[e];
        }
    }
    double scale = 1.0 / (2.0 * n);
    int64_t out = 0;
    for (int i = 0; i < n; i++) {
        P->row_ptr[i] = out;
        const int *fc = idx + (size_t)i * k;
        const double *fv = cond + (size_t)i * k;
        int64_t a = 0, b = rev_ptr[i], bend = rev_ptr[i + 1];
        while (a < k || b < bend) {
            int col;
            double v = 0.0;
            if (b >= bend || (a < k && fc[a] < rev_col[b])) {
                col = fc[a]; v = fv[a++];
            } else if (a >= k || rev_col[b] < fc[a]) {
                col = rev_col[b]; v = rev_val[b++];
            } else {
                col = fc[a]; v = fv[a++] + rev_val[b++];
            }
            P->cols[out] = col;
            P->vals[out] = v * scale;
            out++;
        }
    }
    P->row_ptr[n] = out;
    P->n = n;
    rc = 0;
done:
    free(idx); free(dist2); free(cond); free(rev_ptr); free(rev_col); free(rev_val);
    if (rc) tsne_sparse_free(P);
    return rc;
}

/* ---- gradient ------------------------------------------------------------------ */

typedef struct {
    const tsne_sparse *P;
    const double *Y;
    double exaggeration;
    double *grad;          /* receives exaggeration * attraction */
    double *plogw;         /* per-row sum P log(P / w), or NULL */
} attr_ctx;

#define LANES 8   /* independent partial sums, so that the compiler can vectorise */

HOT_LOOP static void attraction_rows(void *vctx, int begin, int end) {
    attr_ctx *c = vctx;
    const double *Y = c->Y;
    const int *cols = c->P->cols;
    const double *vals = c->P->vals;
    for (int i = begin; i < end; i++) {
        double ax[LANES] = { 0 }, ay[LANES] = { 0 }, yx = Y[2 * i], yy = Y[2 * i + 1];
        int64_t e = c->P->row_ptr[i], stop = c->P->row_ptr[i + 1];
        for (; e + LANES <= stop; e += LANES) {
            for (int u = 0; u < LANES; u++) {
                int j = cols[e + u];
                double dx = yx - Y[2 * j], dy = yy - Y[2 * j + 1];
                double v = vals[e + u] / (1.0 + dx * dx + dy * dy);
                ax[u] += v * dx;
                ay[u] += v * dy;
            }
        }
        for (; e < stop; e++) {
            int j = cols[e];
            double dx = yx - Y[2 * j], dy = yy - Y[2 * j + 1];
            double v = vals[e] / (1.0 + dx * dx + dy * dy);
            ax[0] += v * dx;
            ay[0] += v * dy;
        }
        double sx = 0.0, sy = 0.0;
        for (int u = 0; u < LANES; u++) {
            sx += ax[u];
            sy += ay[u];
        }
        c->grad[2 * i] = c->exaggeration * sx;
        c->grad[2 * i + 1] = c->exaggeration * sy;
        if (c->plogw) {
            double kl = 0.0;
            for (e = c->P->row_ptr[i]; e < stop; e++) {
                int j = cols[e];
                double dx = yx - Y[2 * j], dy = yy - Y[2 * j + 1];
                if (vals[e] > 0)   /* calibration may leave exact zeros: 0 log 0 = 0 */
                    kl += vals[e] * log(vals[e] * (1.0 + dx * dx + dy * dy));
            }
            c->plogw[i] = kl;
        }
    }
}

/* Attraction into grad; returns sum P log(P/w) when want_kl (else 0), or NAN on OOM. */
static double attraction(const tsne_sparse *P, const double *Y, double exaggeration,
                         int n_threads, int want_kl, double *grad) {
    double *plogw = NULL;
    if (want_kl && !(plogw = malloc((size_t)P->n * sizeof *plogw))) return NAN;
    attr_ctx c = { P, Y, exaggeration, grad, plogw };
    par_for(n_threads, P->n, attraction_rows, &c);
    double s = 0.0;
    if (plogw)
        for (int i = 0; i < P->n; i++) s += plogw[i];
    free(plogw);
    return s;
}

typedef struct {
    const double *Y;
    int n;
    double *rep, *z;       /* per row: repulsion sum and sum of w */
} exact_ctx;

static void exact_rows(void *vctx, int begin, int end) {
    exact_ctx *c = vctx;
    for (int i = begin; i < end; i++) {
        double rx = 0.0, ry = 0.0, z = 0.0, yx = c->Y[2 * i], yy = c->Y[2 * i + 1];
        for (int j = 0; j < c->n; j++) {
            if (j == i) continue;
            double dx = yx - c->Y[2 * j], dy = yy - c->Y[2 * j + 1];
            double w = 1.0 / (1.0 + dx * dx + dy * dy);
            z += w;
            rx += w * w * dx;
            ry += w * w * dy;
        }
        if (c->rep) {
            c->rep[2 * i] = rx;
            c->rep[2 * i + 1] = ry;
        }
        c->z[i] = z;
    }
}

/* Exact repulsion (rep may be NULL) and Z; NAN when out of memory. */
static double exact_repulsion(const double *Y, int n, int n_threads, double *rep) {
    double *z = malloc((size_t)n * sizeof *z);
    if (!z) return NAN;
    exact_ctx c = { Y, n, rep, z };
    par_for(n_threads, n, exact_rows, &c);
    double Z = 0.0;
    for (int i = 0; i < n; i++) Z += z[i];
    free(z);
    return Z;
}

/* grad = attraction part (already in grad) - rep / Z; KL from its parts. */
static double combine(int n, const double *rep, double Z, double plogw, double *grad) {
    for (int e = 0; e < 2 * n; e++) grad[e] -= rep[e] / Z;
    return plogw + log(Z);
}

double tsne_gradient_exact(const tsne_sparse *P, const double *Y, double exaggeration,
                           double *grad) {
    int n = P->n;
    double *rep = malloc((size_t)n * 2 * sizeof *rep);
    if (!rep) return NAN;
    double plogw = attraction(P, Y, exaggeration, 1, 1, grad);
    double Z = exact_repulsion(Y, n, 1, rep);
    double kl = combine(n, rep, Z, plogw, grad);
    free(rep);
    return kl;
}

double tsne_kl_exact(const tsne_sparse *P, const double *Y, int n_threads) {
    if (n_threads <= 0) n_threads = 2;
    double *grad = malloc((size_t)P->n * 2 * sizeof *grad);
    if (!grad) return NAN;
    double plogw = attraction(P, Y, 1.0, n_threads, 1, grad);
    double Z = exact_repulsion(Y, P->n, n_threads, NULL);
    free(grad);
    return plogw + log(Z);
}

double tsne_gradient_bh(const tsne_sparse *P, const double *Y, double exaggeration,
                        double theta, int n_threads, double *grad) {
    if (n_threads <= 0) n_threads = 2;
    int n = P->n;
    bhtree t = { 0 };
    double *rep = malloc((size_t)n * 2 * sizeof *rep);
    double kl = NAN;
    if (rep) {
        double plogw = attraction(P, Y, exaggeration, n_threads, 1, grad);
        double Z = bh_repulsion(&t, Y, n, theta, n_threads, rep, NULL);
        if (Z > 0.0) kl = combine(n, rep, Z, plogw, grad);
    }
    free(rep);
    bh_free(&t);
    return kl;
}

double tsne_gradient_fft(const tsne_sparse *P, const double *Y, double exaggeration,
                         int n_threads, double *grad) {
    if (n_threads <= 0) n_threads = 2;
    int n = P->n;
    fftrep w;
    fftrep_init(&w, n_threads);
    double *rep = malloc((size_t)n * 2 * sizeof *rep);
    double kl = NAN;
    if (rep) {
        double plogw = attraction(P, Y, exaggeration, n_threads, 1, grad);
        double Z = fftrep_all(&w, Y, n, rep);
        if (Z > 0.0) kl = combine(n, rep, Z, plogw, grad);
    }
    free(rep);
    fftrep_free(&w);
    return kl;
}

/* ---- initialisation ------------------------------------------------------------ */

/* Top two principal directions by subspace iteration on the covariance; Y = X V scaled
 * so that the first coordinate has std 1e-4 (as openTSNE and scikit-learn do). Returns
 * -1 when out of memory, 1 when the data have no spread along two directions. */
static int pca_init(const float *X, int n, int d, double *Y) {
    double *mean = calloc((size_t)d, sizeof *mean);
    double *C = calloc((size_t)d * d, sizeof *C);
    double *V = malloc((size_t)d * 2 * sizeof *V), *W = malloc((size_t)d * 2 * sizeof *W);
    enum { BLOCK = 256 };
    double *B = malloc((size_t)BLOCK * d * sizeof *B);
    int rc = -1;
    if (!mean || !C || !V || !W || !B) goto done;
    for (int i = 0; i < n; i++)
        for (int c = 0; c < d; c++) mean[c] += X[(size_t)i * d + c];
    for (int c = 0; c < d; c++) mean[c] /= n;
    for (int i0 = 0; i0 < n; i0 += BLOCK) {
        int rows = n - i0 < BLOCK ? n - i0 : BLOCK;
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < d; c++)
                B[(size_t)r * d + c] = X[(size_t)(i0 + r) * d + c] - mean[c];
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, d, rows, 1.0, B, d, 1.0, C, d);
    }
    for (int a = 0; a < d; a++)
        for (int b = 0; b < a; b++) C[(size_t)a * d + b] = C[(size_t)b * d + a];
    for (int c = 0; c < d; c++) {            /* a fixed, generic start */
        V[2 * c] = 1.0 + 0.01 * c;
        V[2 * c + 1] = (c % 2 ? 1.0 : -1.0) * (1.0 + 0.003 * c);
    }
    rc = 1;
    for (int it = 0; it < 300; it++) {
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d, 2, d, 1.0, C, d, V, 2,
                    0.0, W, 2);
        /* Gram-Schmidt on the two columns of W into V. */
        double n0 = 0.0, dot = 0.0, n1 = 0.0;
        for (int c = 0; c < d; c++) n0 += W[2 * c] * W[2 * c];
        n0 = sqrt(n0);
        if (!(n0 > 0.0)) goto done;
        for (int c = 0; c < d; c++) dot += W[2 * c] * W[2 * c + 1] / n0;
        for (int c = 0; c < d; c++) {
            V[2 * c] = W[2 * c] / n0;
            V[2 * c + 1] = W[2 * c + 1] - dot * V[2 * c];
            n1 += V[2 * c + 1] * V[2 * c + 1];
        }
        n1 = sqrt(n1);
        if (!(n1 > 1e-12 * n0)) goto done;
        for (int c = 0; c < d; c++) V[2 * c + 1] /= n1;
    }
    for (int col = 0; col < 2; col++) {      /* sign: largest loading positive */
        int arg = 0;
        for (int c = 1; c < d; c++)
            if (fabs(V[2 * c + col]) > fabs(V[2 * arg + col])) arg = c;
        if (V[2 * arg + col] < 0)
            for (int c = 0; c < d; c++) V[2 * c + col] = -V[2 * c + col];
    }
    double s0 = 0.0;
    for (int i = 0; i < n; i++) {
        double a = 0.0, b = 0.0;
        for (int c = 0; c < d; c++) {
            double x = X[(size_t)i * d + c] - mean[c];
            a += x * V[2 * c];
            b += x * V[2 * c + 1];
        }
        Y[2 * i] = a;
        Y[2 * i + 1] = b;
        s0 += a * a;
    }
    s0 = sqrt(s0 / n);
    if (!(s0 > 0.0)) goto done;
    for (int e = 0; e < 2 * n; e++) Y[e] *= 1e-4 / s0;
    rc = 0;
done:
    free(mean); free(C); free(V); free(W); free(B);
    return rc;
}

static void random_init(uint64_t seed, int n, double *Y) {
    rng_t r;
    rng_seed(&r, seed);
    for (int e = 0; e < 2 * n; e++) Y[e] = 1e-4 * rng_normal(&r);
}

/* ---- fit ----------------------------------------------------------------------- */

void tsne_options_default(tsne_options *o) {
    memset(o, 0, sizeof *o);
    o->perplexity = 30.0;
    o->n_iter = 1000;
    o->exag_iter = 250;
    o->exaggeration = 12.0;
    o->momentum_early = 0.5;
    o->momentum_late = 0.8;
    o->learning_rate = 0.0;
    o->init = TSNE_INIT_PCA;
    o->seed = 1;
    o->gradient = TSNE_GRAD_AUTO;
    o->theta = 0.5;
    o->n_threads = 0;
    o->progress_every = 50;
}

int tsne_options_check(const tsne_options *o, int n, char *err, size_t errlen) {
    if (tsne_check_perplexity(o->perplexity, n > 0 ? n - 1 : -1, "other points of the map",
                              err, errlen))
        return -1;
    if (o->n_iter < 0 || o->exag_iter < 0)
        return err_fail(err, errlen, "iterations: n_iter %d and exag_iter %d must not be "
                        "negative", o->n_iter, o->exag_iter);
    if (!(o->exaggeration > 0 && isfinite(o->exaggeration)))
        return err_fail(err, errlen, "exaggeration %g is not a finite number > 0",
                        o->exaggeration);
    if (!(o->learning_rate >= 0 && isfinite(o->learning_rate)))
        return err_fail(err, errlen, "learning_rate %g is not a finite number >= 0 (0: "
                        "automatic)", o->learning_rate);
    if (!(o->momentum_early >= 0 && o->momentum_early < 1) ||
        !(o->momentum_late >= 0 && o->momentum_late < 1))
        return err_fail(err, errlen, "momentum %g then %g: each must be in [0, 1)",
                        o->momentum_early, o->momentum_late);
    if (!(o->theta >= 0 && isfinite(o->theta)))
        return err_fail(err, errlen, "theta %g is not a finite number >= 0", o->theta);
    if (o->init != TSNE_INIT_PCA && o->init != TSNE_INIT_RANDOM)
        return err_fail(err, errlen, "init %d is neither PCA nor random", (int)o->init);
    if (o->gradient < TSNE_GRAD_AUTO || o->gradient > TSNE_GRAD_FFT)
        return err_fail(err, errlen, "gradient %d is not a known method", (int)o->gradient);
    if (o->n_threads < 0 || o->n_threads > PAR_MAX_THREADS)
        return err_fail(err, errlen, "threads %d outside 0..%d (0: the default)", o->n_threads,
                        PAR_MAX_THREADS);
    return 0;
}

typedef struct {
    tsne_grad method;      /* resolved: EXACT, BH or FFT */
    double theta;
    int n_threads;
    bhtree bh;
    fftrep fft;
    double *rep;
} fit_work;

/* One gradient evaluation by the chosen method; returns KL if want_kl (else 0), NAN on
 * out of memory. */
static double fit_gradient(fit_work *fw, const tsne_sparse *P, const double *Y,
                           double exaggeration, int want_kl, double *grad) {
    double plogw = attraction(P, Y, exaggeration, fw->n_threads, want_kl, grad);
    double Z = fw->method == TSNE_GRAD_EXACT ? exact_repulsion(Y, P->n, fw->n_threads, fw->rep)
             : fw->method == TSNE_GRAD_BH ? bh_repulsion(&fw->bh, Y, P->n, fw->theta,
                                                         fw->n_threads, fw->rep, NULL)
             : fftrep_all(&fw->fft, Y, P->n, fw->rep);
    if (isnan(plogw) || !(Z > 0.0)) return NAN;
    double kl = combine(P->n, fw->rep, Z, plogw, grad);
    return want_kl ? kl : 0.0;
}

int tsne_fit(const float *X, int n, int d, const tsne_options *opt, float *Yout, double *kl_out,
             char *err, size_t errlen) {
    tsne_options def;
    if (!opt) {
        tsne_options_default(&def);
        opt = &def;
    }
    if (tsne_options_check(opt, n, err, errlen)) {
        err_prefix(err, errlen, "tsne");
        return -1;
    }
    int n_threads = opt->n_threads > 0 ? opt->n_threads : 2;
    tsne_sparse P;
    if (tsne_affinities(X, n, d, opt->perplexity, n_threads, &P, err, errlen)) return -1;
    int rc = -1;
    double *Y = malloc((size_t)n * 2 * sizeof *Y);
    double *grad = malloc((size_t)n * 2 * sizeof *grad);
    double *upd = calloc((size_t)n * 2, sizeof *upd);
    double *gains = malloc((size_t)n * 2 * sizeof *gains);
    fit_work fw = { .theta = opt->theta > 0 ? opt->theta : 0.5, .n_threads = n_threads };
    fw.method = opt->gradient != TSNE_GRAD_AUTO ? opt->gradient
              : n <= 500 ? TSNE_GRAD_EXACT : TSNE_GRAD_BH;
    fftrep_init(&fw.fft, n_threads);
    fw.rep = malloc((size_t)n * 2 * sizeof *fw.rep);
    if (!Y || !grad || !fw.rep || !upd || !gains) {
        snprintf(err, errlen, "tsne: out of memory (n=%d)", n);
        goto done;
    }
    /* Affinities already rejected too few points; all-identical points give a
     * degenerate map, so refuse them here with a clear message. */
    int spread = 0;
    for (int i = 1; i < n && !spread; i++)
        spread = memcmp(X, X + (size_t)i * d, (size_t)d * sizeof *X) != 0;
    if (!spread) {
        snprintf(err, errlen, "tsne: all %d points are identical (zero variance)", n);
        goto done;
    }
    int init_rc = opt->init == TSNE_INIT_PCA && d >= 2 ? pca_init(X, n, d, Y) : 1;
    if (init_rc < 0) {
        snprintf(err, errlen, "tsne: out of memory in PCA initialisation");
        goto done;
    }
    if (init_rc > 0) random_init(opt->seed, n, Y);   /* random asked, or no 2-D spread */
    for (int e = 0; e < 2 * n; e++) gains[e] = 1.0;
    double lr = opt->learning_rate > 0 ? opt->learning_rate : fmax(200.0, n / 12.0);
    int every = opt->progress_every > 0 ? opt->progress_every : 50;
    for (int it = 0; it < opt->n_iter; it++) {
        int early = it < opt->exag_iter;
        double mom = early ? opt->momentum_early : opt->momentum_late;
        int report = opt->progress && it > 0 && it % every == 0;
        double kl = fit_gradient(&fw, &P, Y, early ? opt->exaggeration : 1.0, report, grad);
        if (isnan(kl)) {
            snprintf(err, errlen, "tsne: gradient failed at iteration %d (out of memory or "
                     "non-finite map)", it);
            goto done;
        }
        if (report) opt->progress(opt->progress_ctx, it, opt->n_iter, kl);
        double mx = 0.0, my = 0.0;
        for (int e = 0; e < 2 * n; e++) {
            /* gains grow where the step keeps its direction, shrink where it flips */
            gains[e] = (grad[e] > 0) != (upd[e] > 0) ? gains[e] + 0.2 : gains[e] * 0.8;
            if (gains[e] < 0.01) gains[e] = 0.01;
            upd[e] = mom * upd[e] - lr * gains[e] * grad[e];
            Y[e] += upd[e];
        }
        for (int i = 0; i < n; i++) {
            mx += Y[2 * i];
            my += Y[2 * i + 1];
        }
        mx /= n; my /= n;
        for (int i = 0; i < n; i++) {
            Y[2 * i] -= mx;
            Y[2 * i + 1] -= my;
        }
    }
    double kl = fit_gradient(&fw, &P, Y, 1.0, 1, grad);
    if (isnan(kl)) {
        snprintf(err, errlen, "tsne: final gradient failed (out of memory or non-finite map)");
        goto done;
    }
    for (int e = 0; e < 2 * n; e++) {
        if (!isfinite(Y[e])) {
            snprintf(err, errlen, "tsne: optimisation diverged (non-finite position)");
            goto done;
        }
    }
    if (opt->progress) opt->progress(opt->progress_ctx, opt->n_iter, opt->n_iter, kl);
    for (int e = 0; e < 2 * n; e++) Yout[e] = (float)Y[e];
    if (kl_out) *kl_out = kl;
    rc = 0;
done:
    free(Y); free(grad); free(fw.rep); free(upd); free(gains);
    fftrep_free(&fw.fft);
    bh_free(&fw.bh);
    tsne_sparse_free(&P);
    return rc;
}
