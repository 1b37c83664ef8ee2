/* Anomaly score terms and calibration statistics. */
#include "score.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double score_recon_error(const float *x, const float *x_rec, size_t dim) {
    double err = 0.0, norm = 0.0;
    for (size_t i = 0; i < dim; i++) {
        double d = (double)x[i] - x_rec[i];
        err += d * d;
        norm += (double)x[i] * x[i];
    }
    norm = sqrt(norm);
    return err / (norm > 1e-12 ? norm : 1e-12);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Quantile of an ascending array. */
static double sorted_quantile(const double *s, size_t n, double q) {
    double pos = q * (double)(n - 1);
    size_t lo = (size_t)pos;
    if (lo + 1 >= n) return s[n - 1];
    return s[lo] + (pos - (double)lo) * (s[lo + 1] - s[lo]);
}

double score_quantile(const double *v, size_t n, double q) {
    double *s = malloc(n * sizeof *s);
    if (!s) return NAN;
    memcpy(s, v, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_double);
    double r = sorted_quantile(s, n, q);
    free(s);
    return r;
}

term_stats score_term_stats(const double *v, size_t n) {
    term_stats t = {NAN, NAN};
    double *s = malloc(n * sizeof *s);
    if (!s) return t;
    memcpy(s, v, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_double);
    t.center = sorted_quantile(s, n, 0.5);
    double mean = 0.0, var = 0.0;
    for (size_t i = 0; i < n; i++) mean += v[i];
    mean /= (double)n;
    for (size_t i = 0; i < n; i++) {
        var += (v[i] - mean) * (v[i] - mean);
        s[i] = fabs(v[i] - t.center);
    }
    qsort(s, n, sizeof *s, cmp_double);
    t.scale = 1.4826 * sorted_quantile(s, n, 0.5);
    if (!(t.scale > 0)) t.scale = n > 1 ? sqrt(var / (double)(n - 1)) : 0.0;
    if (!(t.scale > 0)) t.scale = 1.0;
    free(s);
    return t;
}

double score_standardise(double v, term_stats s) { return (v - s.center) / s.scale; }

/* First index of the ascending a[0..n) whose value is > v (strictly) or >= v (not). */
static size_t first_above(const float *a, size_t n, double v, int strictly) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((double)a[mid] < v || (strictly && (double)a[mid] == v)) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

double score_p_value(const float *cal_ascending, size_t n, double s) {
    /* Everything from the first score >= s on counts. */
    return (double)(1 + n - first_above(cal_ascending, n, s, 0)) / (double)(n + 1);
}

size_t score_tail_size(size_t n) {
    if (n < 2) return 0;
    size_t k = (size_t)ceil(sqrt((double)n));
    return k < n - 1 ? k : n - 1;
}

double score_log_p_tail(const float *cal_ascending, size_t n, size_t k_tail, double s) {
    if (k_tail > 0 && n >= 2) {
        if (k_tail > n - 1) k_tail = n - 1;
        const double u = cal_ascending[n - 1 - k_tail];
        if (s > u) {
            const size_t j = first_above(cal_ascending, n, u, 1);
            double excess = 0.0;
            for (size_t i = j; i < n; i++) excess += (double)cal_ascending[i] - u;
            const double beta = j < n ? excess / (double)(n - j) : 0.0;
            if (beta > 0)
                return log((double)(1 + n - j) / (double)(n + 1)) - (s - u) / beta;
        }
    }
    return log(score_p_value(cal_ascending, n, s));
}

const char *const SCORE_FUSION_NAME[FUSION_N] = {"base", "memory", "sum", "max", "fisher"};

double score_fuse(score_fusion f, double base, double z_memory, const float *cal_base,
                  const float *cal_memory, size_t n) {
    switch (f) {
    case FUSION_BASE: return base;
    case FUSION_MEMORY: return z_memory;
    case FUSION_SUM: return base + z_memory;
    case FUSION_MAX: return base > z_memory ? base : z_memory;
    case FUSION_FISHER:
        return -2.0 * (score_log_p_tail(cal_base, n, score_tail_size(n), base) +
                       log(score_p_value(cal_memory, n, z_memory)));
    default: return NAN;
    }
}
