/* auROC and the ROC curve against cases computed by hand. */
#include "auroc.h"
#include "check.h"
#include "rng.h"

TEST(auroc_hand_cases) {
    /* Perfect, inverted, and a mix: positives {0.9, 0.4}, negatives {0.8, 0.3, 0.1}:
     * 0.9 beats 3 negatives, 0.4 beats 2 -> 5 of 6 pairs. */
    double s1[] = {0.9, 0.8, 0.4, 0.3, 0.1};
    int p1[] = {1, 0, 1, 0, 0};
    CHECK_NEAR(auroc(s1, p1, 5), 5.0 / 6.0, 1e-12);
    int p2[] = {1, 1, 0, 0, 0};
    CHECK_NEAR(auroc(s1, p2, 5), 1.0, 1e-12);
    int p3[] = {0, 0, 0, 1, 1};
    CHECK_NEAR(auroc(s1, p3, 5), 0.0, 1e-12);
}

TEST(auroc_ties_count_half) {
    /* All scores equal: every pair is a tie -> 0.5, in any order. */
    double s[] = {1, 1, 1, 1};
    int p[] = {1, 0, 0, 1};
    CHECK_NEAR(auroc(s, p, 4), 0.5, 1e-12);
    /* Positive 0.5 ties one negative 0.5 and beats negative 0.2: (1 + 0.5) / 2 pairs. */
    double s2[] = {0.5, 0.5, 0.2};
    int p2[] = {0, 1, 0};
    CHECK_NEAR(auroc(s2, p2, 3), 0.75, 1e-12);
}

TEST(auroc_degenerate_is_nan) {
    double s[] = {0.1, 0.2};
    int all_neg[] = {0, 0};
    CHECK(isnan(auroc(s, all_neg, 2)));
    double with_nan[] = {0.1, NAN};
    int p[] = {0, 1};
    CHECK(isnan(auroc(with_nan, p, 2)));
}

TEST(auroc_roc_curve_points) {
    double s[] = {0.9, 0.8, 0.4, 0.3, 0.1};
    int p[] = {1, 0, 1, 0, 0};
    double fpr[6], tpr[6];
    CHECK(roc_curve(s, p, 5, fpr, tpr) == 6);
    double want_fpr[] = {0, 0, 1.0 / 3, 1.0 / 3, 2.0 / 3, 1};
    double want_tpr[] = {0, 0.5, 0.5, 1, 1, 1};
    for (int i = 0; i < 6; i++) {
        CHECK_NEAR(fpr[i], want_fpr[i], 1e-12);
        CHECK_NEAR(tpr[i], want_tpr[i], 1e-12);
    }
    /* The trapezoid area under the curve equals auroc(). */
    double area = 0;
    for (int i = 1; i < 6; i++) area += (fpr[i] - fpr[i - 1]) * (tpr[i] + tpr[i - 1]) / 2;
    CHECK_NEAR(area, auroc(s, p, 5), 1e-12);
}

/* The calibration statistics behind the fused score. */
#include <math.h>
#include <stdlib.h>

#include "score.h"

TEST(score_quantile_and_p_value) {
    double v[] = {5, 1, 4, 2, 3};
    CHECK_NEAR(score_quantile(v, 5, 0.0), 1.0, 1e-12);
    CHECK_NEAR(score_quantile(v, 5, 0.5), 3.0, 1e-12);
    CHECK_NEAR(score_quantile(v, 5, 0.9), 4.6, 1e-12);   /* 4 + 0.6 * (5 - 4) */
    CHECK_NEAR(score_quantile(v, 5, 1.0), 5.0, 1e-12);
    float cal[] = {1, 2, 2, 3, 4};                       /* ascending */
    CHECK_NEAR(score_p_value(cal, 5, 0.5), 6.0 / 6.0, 1e-12);
    CHECK_NEAR(score_p_value(cal, 5, 2.0), 5.0 / 6.0, 1e-12); /* 2, 2, 3, 4 are >= 2 */
    CHECK_NEAR(score_p_value(cal, 5, 3.5), 2.0 / 6.0, 1e-12);
    CHECK_NEAR(score_p_value(cal, 5, 9.0), 1.0 / 6.0, 1e-12);
}

static int cmp_float_asc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* n seeded draws, ascending: exponential(1) (exp = 1) or standard normal (exp = 0). */
static float *sorted_draws(size_t n, int exp, uint64_t seed) {
    float *v = malloc(n * sizeof *v);
    if (!v) return NULL;
    rng_t r;
    rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) v[i] = exp ? -logf(1.0f - rng_uniform(&r)) : rng_normal(&r);
    qsort(v, n, sizeof *v, cmp_float_asc);
    return v;
}

/* The base p-value's tail against distributions whose tails are known. */
TEST(score_tail_known_distributions) {
    enum { N = 10000 };
    const size_t k = score_tail_size(N);
    CHECK(k == 100 && score_tail_size(20000) == 142 && score_tail_size(2) == 1 &&
          score_tail_size(1) == 0);
    float *e = sorted_draws(N, 1, 7), *g = sorted_draws(N, 0, 7);
    CHECK(e && g);
    if (!e || !g) goto done;
    const double floor_lp = log(1.0 / (N + 1));
    /* Exponential(1): log P(X >= s) = -s, the tail's own family: near it far beyond the
     * largest draw (about 9.2 here) where the empirical p-value stops at 1 / (N + 1). */
    for (double s = 10; s <= 40; s += 10) {
        const double lp = score_log_p_tail(e, N, k, s);
        CHECK_MSG(fabs(lp + s) < 0.05 * s, "exponential: log p(%g) = %g, want about %g", s, lp,
                  -s);
    }
    /* Standard normal, lighter-tailed than any exponential: the tail is conservative
     * (log p above the true one) but still below the empirical floor beyond the draws. */
    for (double s = 4.5; s <= 8; s += 0.5) {
        const double lp = score_log_p_tail(g, N, k, s), truth = log(0.5 * erfc(s / sqrt(2.0)));
        CHECK_MSG(lp > truth && lp < floor_lp, "normal: log p(%g) = %g, true %g, floor %g", s,
                  lp, truth, floor_lp);
    }
    /* Up to u the empirical p-value, unchanged; just above u it continues from the
     * empirical value there; monotone; finite however far out. */
    const float *cal[] = {e, g};
    for (int c = 0; c < 2; c++) {
        const float *a = cal[c];
        const double u = a[N - 1 - k];
        for (size_t i = 0; i <= N - 1 - k; i += 97)
            CHECK_NEAR(score_log_p_tail(a, N, k, a[i]), log(score_p_value(a, N, a[i])), 1e-12);
        CHECK_NEAR(score_log_p_tail(a, N, k, u), log(score_p_value(a, N, u)), 1e-12);
        CHECK_NEAR(score_log_p_tail(a, N, k, u + 1e-9), log((double)(1 + k) / (N + 1)), 1e-6);
        double prev = INFINITY;
        int monotone = 1;
        for (double s = a[0] - 1; s < a[N - 1] + 50; s += 0.01) {
            const double lp = score_log_p_tail(a, N, k, s);
            if (!(lp <= prev)) monotone = 0;
            prev = lp;
        }
        CHECK(monotone);
        CHECK(isfinite(score_log_p_tail(a, N, k, 1e30)) && score_log_p_tail(a, N, k, 1e30) < -1e20);
        /* Without a tail, the empirical log p-value. */
        CHECK_NEAR(score_log_p_tail(a, N, 0, 1e30), floor_lp, 1e-12);
    }
    /* No spread above u (ties) and too few scores: the empirical p-value. */
    float flat[] = {1, 2, 3, 3, 3, 3};
    CHECK_NEAR(score_log_p_tail(flat, 6, 2, 9.0), log(1.0 / 7.0), 1e-12);
    CHECK_NEAR(score_log_p_tail(flat, 1, 1, 9.0), log(1.0 / 2.0), 1e-12);
    /* A hand case: u = 2 (k 2 of {1, 2, 4, 6}), excesses 2 and 4, beta 3, p_u 3/5. */
    float hand[] = {1, 2, 4, 6};
    CHECK_NEAR(score_log_p_tail(hand, 4, 2, 11.0), log(3.0 / 5.0) - 3.0, 1e-12);
done:
    free(e);
    free(g);
}

TEST(score_term_stats_robust) {
    /* Median 3, absolute deviations {2,1,0,1,97} -> MAD 1 -> scale 1.4826; the outlier
     * 100 moves neither. */
    double v[] = {1, 2, 3, 4, 100};
    term_stats t = score_term_stats(v, 5);
    CHECK_NEAR(t.center, 3.0, 1e-12);
    CHECK_NEAR(t.scale, 1.4826, 1e-12);
    CHECK_NEAR(score_standardise(4.4826, t), 1.0, 1e-12);
    /* MAD 0 falls back to the standard deviation, and a constant to 1. */
    double w[] = {2, 2, 2, 2, 6};
    t = score_term_stats(w, 5);
    CHECK_NEAR(t.center, 2.0, 1e-12);
    CHECK_NEAR(t.scale, sqrt(3.2), 1e-12);               /* sample std: 12.8 / 4 */
    double c[] = {7, 7, 7};
    t = score_term_stats(c, 3);
    CHECK_NEAR(t.scale, 1.0, 1e-12);
}

TEST(score_recon_error_paper_eq3) {
    float x[] = {3, 4}, xr[] = {3, 2};                  /* ||x - x'||^2 = 4, ||x|| = 5 */
    CHECK_NEAR(score_recon_error(x, xr, 2), 0.8, 1e-12);
    float z[] = {0, 0}, zr[] = {0, 0.001f};
    CHECK(score_recon_error(z, zr, 2) > 1e5);            /* empty sample: huge, finite */
}

/* TPR at a false-alarm budget, by hand: scores 9..1 with positives at 9, 7, 6, 2; four
 * positives, five negatives (8, 5, 4, 3, 1). */
TEST(roc_tpr_at_fpr_by_hand) {
    double s[] = {9, 8, 7, 6, 5, 4, 3, 2, 1};
    int pos[] = {1, 0, 1, 1, 0, 0, 0, 1, 0};
    CHECK_NEAR(roc_tpr_at_fpr(s, pos, 9, 0.0), 0.25, 1e-12);   /* only 9 is flagged */
    CHECK_NEAR(roc_tpr_at_fpr(s, pos, 9, 0.2), 0.75, 1e-12);   /* 9..6: one false alarm */
    CHECK_NEAR(roc_tpr_at_fpr(s, pos, 9, 0.39), 0.75, 1e-12);
    CHECK_NEAR(roc_tpr_at_fpr(s, pos, 9, 0.8), 1.0, 1e-12);    /* down to 2 */
    CHECK_NEAR(roc_tpr_at_fpr(s, pos, 9, 1.0), 1.0, 1e-12);
    /* A tie between a positive and a negative is flagged together or not at all. */
    double t[] = {5, 5, 1, 0};
    int tp[] = {1, 0, 1, 0};
    CHECK_NEAR(roc_tpr_at_fpr(t, tp, 4, 0.4), 0.0, 1e-12);
    CHECK_NEAR(roc_tpr_at_fpr(t, tp, 4, 0.5), 1.0, 1e-12);   /* 5, 5 and 1: one alarm */
    int none[] = {0, 0, 0, 0};
    CHECK(isnan(roc_tpr_at_fpr(t, none, 4, 0.1)));
    /* Agrees with the ROC curve: the best tpr among points with fpr <= budget. */
    rng_t r;
    rng_seed(&r, 5);
    double v[200], fpr[201], tpr[201];
    int lab[200];
    for (int i = 0; i < 200; i++) {
        lab[i] = rng_uniform(&r) < 0.3;
        v[i] = floor(10 * rng_uniform(&r)) + lab[i];   /* many ties */
    }
    size_t npts = roc_curve(v, lab, 200, fpr, tpr);
    for (double budget = 0; budget <= 1.0; budget += 0.05) {
        double want = 0;
        for (size_t k = 0; k < npts; k++)
            if (fpr[k] <= budget && tpr[k] > want) want = tpr[k];
        CHECK_NEAR(roc_tpr_at_fpr(v, lab, 200, budget), want, 1e-12);
    }
}
