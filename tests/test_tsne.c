/* Tests for the t-SNE engine (core/map/tsne.h, core/map/knn.h): affinities, gradients, fit,
 * placement into a fixed map, D_MAP, co-placement, the sliding window, bad input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "knn.h"
#include "rng.h"
#include "tsne.h"
#include "tsne_internal.h"

/* n points in d dims: `clusters` Gaussian blobs (std 1) with centres 8 apart. */
static float *blobs(int n, int d, int clusters, uint64_t seed) {
    rng_t r;
    rng_seed(&r, seed);
    float *X = malloc((size_t)n * d * sizeof *X);
    for (int i = 0; i < n; i++)
        for (int c = 0; c < d; c++)
            X[(size_t)i * d + c] = rng_normal(&r) + (c == (i % clusters) % d ? 8.0f : 0.0f)
                                   + (c == 0 ? 3.0f * (float)(i % clusters) : 0.0f);
    return X;
}

static double *random_map(int n, double spread, uint64_t seed) {
    rng_t r;
    rng_seed(&r, seed);
    double *Y = malloc((size_t)n * 2 * sizeof *Y);
    for (int e = 0; e < 2 * n; e++) Y[e] = spread * rng_normal(&r);
    return Y;
}

TEST(tsne_knn_matches_brute_force) {
    int n = 300, d = 7, k = 10;
    float *X = blobs(n, d, 3, 1);
    int *idx = malloc((size_t)n * k * sizeof *idx), qi[10];
    float *d2 = malloc((size_t)n * k * sizeof *d2), qd[10];
    char err[200];
    CHECK(knn_all(X, n, d, k, 2, idx, d2, err, sizeof err) == 0);
    for (int i = 0; i < n; i++) {
        knn_query(X, n, d, X + (size_t)i * d, k, i, qi, qd);
        for (int r = 0; r < k; r++) {
            CHECK(qi[r] == idx[(size_t)i * k + r]);
            CHECK_NEAR(qd[r], d2[(size_t)i * k + r], 1e-5);
        }
        for (int r = 1; r < k; r++) CHECK(d2[(size_t)i * k + r] >= d2[(size_t)i * k + r - 1]);
    }
    CHECK(knn_all(X, n, d, n, 2, idx, d2, err, sizeof err) == -1);
    free(X); free(idx); free(d2);
}

/* The packed scan (vector blocks, a group filter, padding rows) finds what the plain loop
 * finds, ties included: sizes off the block grid, a dimension off the vector width,
 * duplicated rows, a skipped row. */
TEST(tsne_knn_packed_matches_plain_scan) {
    static const int sizes[][3] = { { 1037, 16, 90 }, { 70, 19, 1 }, { 64, 2, 63 }, { 5, 3, 4 } };
    for (int s = 0; s < 4; s++) {
        int n = sizes[s][0], d = sizes[s][1], k = sizes[s][2];
        float *X = blobs(n, d, 4, 10 + (uint64_t)s);
        for (int c = 0; c < d; c++) X[(size_t)(n - 1) * d + c] = X[c]; /* a duplicate of row 0 */
        float *P = malloc(knn_packed_floats(n, d) * sizeof *P);
        CHECK(P != NULL);
        if (P) knn_pack(P, X, n, d);
        int ia[KNN_MAX_K], ib[KNN_MAX_K];
        float da[KNN_MAX_K], db[KNN_MAX_K];
        for (int i = 0; P && i < n; i += 1 + n / 50) {
            int skip = i % 3 ? -1 : (i + 1) % n;
            int kk = skip >= 0 && k == n ? k - 1 : k;
            knn_query(X, n, d, X + (size_t)i * d, kk, skip, ia, da);
            knn_query_packed(P, n, d, X + (size_t)i * d, kk, skip, ib, db);
            for (int r = 0; r < kk; r++) CHECK(ia[r] == ib[r] && da[r] == db[r]);
        }
        free(P);
        free(X);
    }
}

/* The contract of every exact search here, written the slow way: each row's float
 * distance summed over the dimensions in order, the k best by (distance, index), those
 * re-measured in double and ordered by (that distance as a float, index). */
typedef struct {
    float d;
    int i;
} brute_pair;

static int brute_cmp(const void *a, const void *b) {
    const brute_pair *x = a, *y = b;
    if (x->d != y->d) return x->d < y->d ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

static void brute_knn(const float *X, int n, int d, const float *q, int k, int skip, int *idx,
                      float *dist2) {
    brute_pair *p = malloc((size_t)n * sizeof *p);
    int m = 0;
    for (int j = 0; p && j < n; j++) {
        if (j == skip) continue;
        float s = 0.0f;
        for (int c = 0; c < d; c++) {
            float t = q[c] - X[(size_t)j * d + c];
            s += t * t;
        }
        p[m++] = (brute_pair){ s, j };
    }
    if (!p) return;
    qsort(p, (size_t)m, sizeof *p, brute_cmp);
    for (int r = 0; r < k; r++) {
        double s = 0.0;
        for (int c = 0; c < d; c++) {
            double t = (double)q[c] - (double)X[(size_t)p[r].i * d + c];
            s += t * t;
        }
        p[r].d = (float)s;
    }
    qsort(p, (size_t)k, sizeof *p, brute_cmp);
    for (int r = 0; r < k; r++) {
        idx[r] = p[r].i;
        dist2[r] = p[r].d;
    }
    free(p);
}

/* The packed scan against that brute force, bit for bit: random data, data on a coarse
 * grid (ties everywhere: equal distances, equal rows), sizes off the vector and block
 * grid, a skipped row, k from 1 to n, and rows so large that every distance is +inf. */
TEST(tsne_knn_packed_matches_brute_force_with_ties) {
    static const int cases[][4] = {   /* n, d, k, kind: 0 normal, 1 grid, 2 huge */
        { 1000, 16, 90, 0 }, { 1000, 16, 90, 1 }, { 777, 5, 300, 1 }, { 130, 33, 1, 0 },
        { 67, 3, 67, 1 }, { 9, 2, 4, 1 }, { 200, 8, 30, 2 }, { 2500, 16, 15, 1 } };
    rng_t r;
    rng_seed(&r, 77);
    for (size_t s = 0; s < sizeof cases / sizeof cases[0]; s++) {
        int n = cases[s][0], d = cases[s][1], k = cases[s][2], kind = cases[s][3];
        float *X = malloc((size_t)n * d * sizeof *X), *Q = malloc((size_t)20 * d * sizeof *Q);
        float *P = malloc(knn_packed_floats(n, d) * sizeof *P);
        CHECK(X && Q && P);
        if (!X || !Q || !P) {
            free(X); free(Q); free(P);
            continue;
        }
        for (size_t e = 0; e < (size_t)n * d; e++) {
            double v = rng_normal(&r);
            X[e] = kind == 1 ? (float)floor(v * 1.5) : kind == 2 ? (float)(v * 1e20) : (float)v;
        }
        for (size_t e = 0; e < (size_t)20 * d; e++)
            Q[e] = kind == 1 ? (float)floor(rng_normal(&r)) : (float)rng_normal(&r);
        knn_pack(P, X, n, d);
        int ia[KNN_MAX_K], ib[KNN_MAX_K];
        float da[KNN_MAX_K], db[KNN_MAX_K];
        for (int i = 0; i < 20; i++) {
            /* queries: fresh points, and reference rows themselves (a zero distance) */
            const float *q = i % 2 ? Q + (size_t)i * d : X + (size_t)(i * 37 % n) * d;
            int skip = i % 4 == 2 ? i * 37 % n : -1;   /* the query's own row */
            int kk = skip >= 0 && k == n ? k - 1 : k;
            brute_knn(X, n, d, q, kk, skip, ia, da);
            knn_query_packed(P, n, d, q, kk, skip, ib, db);
            int same = 1;
            for (int j = 0; j < kk; j++) same &= ia[j] == ib[j] && memcmp(&da[j], &db[j], 4) == 0;
            CHECK_MSG(same, "case %zu query %d: packed scan differs from brute force", s, i);
        }
        free(X); free(Q); free(P);
    }
}

/* The index (reordered rows, segments skipped by the triangle inequality, rows by the
 * code scan) against the plain packed scan, bit for bit, with every code-scan kernel this
 * CPU has: clustered data, a coarse grid full of ties and duplicate rows, all rows equal
 * (a grid of one point), sizes off the segment and tile grid and below one tile,
 * dimensions off the quad of the codes (1, 7, 17), k from 1 to the limit, queries near
 * and far (far: every segment but the nearest is skipped, and outside the rows' box),
 * and distances of +inf: rows so large, or a query so far, that every sum overflows. */
TEST(tsne_knn_index_matches_packed_scan) {
    static const int cases[][4] = {   /* n, d, k, kind: 0 blobs, 1 grid, 2 huge, 3 equal */
        { 3000, 16, 90, 0 }, { 3000, 16, 90, 1 }, { 1001, 7, 300, 0 }, { 777, 3, 1, 1 },
        { 50, 5, 50, 1 }, { 65, 16, 64, 0 }, { 300, 8, 30, 2 }, { 4100, 2, 15, 1 },
        { 700, 17, 40, 0 }, { 300, 1, 20, 1 }, { 5, 4, 5, 0 }, { 200, 16, 90, 3 } };
    rng_t r;
    rng_seed(&r, 78);
    int kernels = 0;
    for (size_t s = 0; s < sizeof cases / sizeof cases[0]; s++) {
        int n = cases[s][0], d = cases[s][1], k = cases[s][2], kind = cases[s][3];
        float *X = kind == 0 ? blobs(n, d, 7, 30 + s) : malloc((size_t)n * d * sizeof *X);
        float *P = malloc(knn_packed_floats(n, d) * sizeof *P), q[17];
        CHECK(X && P);
        if (!X || !P) {
            free(X); free(P);
            continue;
        }
        for (size_t e = 0; kind && e < (size_t)n * d; e++) {
            double v = rng_normal(&r);
            X[e] = kind == 1 ? (float)floor(v * 1.5) : kind == 2 ? (float)(v * 1e20) : 0.25f;
        }
        knn_pack(P, X, n, d);
        knn_index *ix = knn_index_create(X, n, d);
        CHECK(ix != NULL);
        int ia[KNN_MAX_K], ib[KNN_MAX_K];
        float da[KNN_MAX_K], db[KNN_MAX_K];
        int chosen = ix ? knn_index_kernel(ix) : -1;
        CHECK(ix && knn_index_use_kernel(ix, KNN_KERNELS) == -1 &&
              knn_index_use_kernel(ix, -1) == -1);
        for (int kernel = 0; ix && kernel < KNN_KERNELS; kernel++) {
            if (knn_index_use_kernel(ix, kernel)) continue;      /* not on this CPU */
            CHECK_MSG(kernel <= chosen, "kernel %d runs here, yet the index chose %d", kernel,
                      chosen);
            kernels |= 1 << kernel;
            for (int i = 0; i < 120; i++) {
                /* reference rows, points near them, points far out (scale 30), and, for
                 * the last few, a point 1e20 away (every distance +inf) */
                const float *row = X + (size_t)(i * 53 % n) * d;
                for (int c = 0; c < d; c++)
                    q[c] = i >= 116 ? row[c] + (c == 0 ? 1e20f : 0.0f)
                           : i % 3 == 0 ? row[c]
                           : row[c] + (float)rng_normal(&r) * (i % 3 == 1 ? 0.5f : 30.0f);
                knn_query_packed(P, n, d, q, k, -1, ia, da);
                knn_index_query(ix, q, k, ib, db);
                int same = 1;
                for (int j = 0; j < k; j++) same &= ia[j] == ib[j] && memcmp(&da[j], &db[j], 4) == 0;
                CHECK_MSG(same, "case %zu kernel %d query %d: the index differs from the scan",
                          s, kernel, i);
            }
        }
        knn_index_free(ix);
        free(X); free(P);
    }
    CHECK(kernels & 1 << KNN_KERNEL_PLAIN);   /* the portable kernel runs everywhere */
    float one = 0.0f;
    CHECK(knn_index_create(&one, 1, KNN_INDEX_MAX_D + 1) == NULL);
}

TEST(tsne_perplexity_calibration_hits_target) {
    rng_t r;
    rng_seed(&r, 2);
    float d2[90];
    double p[90];
    for (int j = 0; j < 90; j++) d2[j] = 1e4f * rng_uniform(&r);   /* any unit works */
    double targets[] = { 5, 30, 60 };
    for (int t = 0; t < 3; t++) {
        double perp = tsne_row_affinities(d2, 90, targets[t], p);
        CHECK_NEAR(perp, targets[t], 1e-3 * targets[t]);
        double s = 0;
        for (int j = 0; j < 90; j++) s += p[j];
        CHECK_NEAR(s, 1.0, 1e-12);
    }
    /* all distances tie: uniform, perplexity = k (documented) */
    for (int j = 0; j < 90; j++) d2[j] = 3.0f;
    CHECK_NEAR(tsne_row_affinities(d2, 90, 30, p), 90.0, 1e-9);
    CHECK_NEAR(p[17], 1.0 / 90, 1e-15);
}

/* tsne_calibrate_rows runs CALIBRATE_LANES rows in lockstep, a lane handed to the next
 * row when its row converges: each row's p must be tsne_calibrate's alone, bit for bit,
 * whatever rows share the lanes: rows of scales from 1e-4 to 1e4 (so of different pass
 * counts), tied rows (uniform), weights below e^-60 (zero), one row, and counts around
 * the lane count. */
TEST(tsne_calibrate_rows_match_rows_alone) {
    enum { K = 90, ROWS = 45 };
    rng_t r;
    rng_seed(&r, 52);
    float *d2 = malloc((size_t)ROWS * K * sizeof *d2);
    double *want = malloc((size_t)ROWS * K * sizeof *want), *got = malloc((size_t)ROWS * K * sizeof *got);
    double *scratch = malloc(2 * K * CALIBRATE_LANES * sizeof *scratch);
    for (int i = 0; i < ROWS; i++) {
        double scale = pow(10.0, -4 + 8 * rng_uniform(&r));
        for (int j = 0; j < K; j++) d2[i * K + j] = (float)(scale * rng_uniform(&r));
    }
    for (int j = 0; j < K; j++) {
        d2[3 * K + j] = 2.5f;                          /* all tie */
        d2[4 * K + j] = j ? 1e6f : 0.0f;               /* one near, the rest at e^-big */
        d2[5 * K + j] = (float)(j / 10);               /* ties in runs */
        d2[11 * K + j] = d2[10 * K + j];               /* a row twice */
    }
    const double perps[] = { 5, 30 };
    for (int t = 0; t < 2; t++) {
        int k = tsne_neighbours(perps[t]);
        for (int i = 0; i < ROWS; i++) tsne_calibrate(d2 + i * K, k, perps[t], want + i * K, NULL);
        /* rows [0, n) packed at k per row, for n around the lane count */
        const int counts[] = { 1, 2, 7, 8, 9, 16, 17, ROWS };
        for (int c = 0; c < 8; c++) {
            int n = counts[c];
            float *packed = malloc((size_t)n * k * sizeof *packed);
            for (int i = 0; i < n; i++) memcpy(packed + i * k, d2 + i * K, k * sizeof *packed);
            tsne_calibrate_rows(packed, k, n, perps[t], got, scratch);
            int same = 1;
            for (int i = 0; i < n; i++) same &= !memcmp(got + i * k, want + i * K, k * sizeof *got);
            CHECK_MSG(same, "perplexity %g, %d rows: lockstep p differs from tsne_calibrate's",
                      perps[t], n);
            free(packed);
        }
    }
    free(d2); free(want); free(got); free(scratch);
}

TEST(tsne_affinities_symmetric_normalised) {
    int n = 200, d = 5;
    float *X = blobs(n, d, 4, 3);
    tsne_sparse P;
    char err[200];
    CHECK(tsne_affinities(X, n, d, 10, 2, &P, err, sizeof err) == 0);
    double total = 0;
    for (int i = 0; i < n; i++) {
        for (int64_t e = P.row_ptr[i]; e < P.row_ptr[i + 1]; e++) {
            total += P.vals[e];
            CHECK(P.cols[e] != i);
            if (e > P.row_ptr[i]) CHECK(P.cols[e] > P.cols[e - 1]);
            /* find the transposed entry */
            int j = P.cols[e], found = 0;
            for (int64_t f = P.row_ptr[j]; f < P.row_ptr[j + 1]; f++)
                if (P.cols[f] == i) { found = 1; CHECK_NEAR(P.vals[f], P.vals[e], 1e-15); }
            CHECK(found);
        }
    }
    CHECK_NEAR(total, 1.0, 1e-12);
    tsne_sparse_free(&P);
    free(X);
}

/* KL as a function of Y for finite differences: exact gradient's KL return. */
TEST(tsne_exact_gradient_matches_finite_differences) {
    int n = 60, d = 4;
    float *X = blobs(n, d, 3, 4);
    tsne_sparse P;
    char err[200];
    CHECK(tsne_affinities(X, n, d, 5, 1, &P, err, sizeof err) == 0);
    double *Y = random_map(n, 2.0, 5), *g = malloc(n * 2 * sizeof *g),
           *g2 = malloc(n * 2 * sizeof *g2);
    tsne_gradient_exact(&P, Y, 1.0, g);
    double worst = 0, h = 1e-5;
    for (int e = 0; e < 2 * n; e++) {
        double keep = Y[e];
        Y[e] = keep + h;
        double kp = tsne_gradient_exact(&P, Y, 1.0, g2);
        Y[e] = keep - h;
        double km = tsne_gradient_exact(&P, Y, 1.0, g2);
        Y[e] = keep;
        double fd = (kp - km) / (2 * h);        /* dKL/dy = 4 * grad */
        worst = fmax(worst, fabs(fd - 4 * g[e]));
    }
    CHECK_MSG(worst < 1e-6, "worst |fd - 4 grad| = %g", worst);
    tsne_sparse_free(&P);
    free(X); free(Y); free(g); free(g2);
}

/* A known problem: 3 points, P uniform over pairs, equilateral triangle of side s.
 * q_ij = 1/6 for every ordered pair too, so KL = 0 whatever s. */
TEST(tsne_kl_of_known_problem) {
    int64_t rp[4] = { 0, 2, 4, 6 };
    int cols[6] = { 1, 2, 0, 2, 0, 1 };
    double vals[6] = { 1.0 / 6, 1.0 / 6, 1.0 / 6, 1.0 / 6, 1.0 / 6, 1.0 / 6 };
    tsne_sparse P = { 3, rp, cols, vals };
    double Y[6] = { 0, 0, 2, 0, 1, sqrt(3.0) }, g[6];
    CHECK_NEAR(tsne_gradient_exact(&P, Y, 1.0, g), 0.0, 1e-12);
    CHECK_NEAR(tsne_kl_exact(&P, Y, 2), 0.0, 1e-12);
    /* Collinear 0, 1, 2: w = 1/2, 1/2, 1/5; Z = 2 * 1.2; KL = sum 1/6 log((1/6) / (w/Z)). */
    double Y2[6] = { 0, 0, 1, 0, 2, 0 };
    double Z = 2 * (0.5 + 0.5 + 0.2);
    double want = 2 * (1.0 / 6) * (2 * log((1.0 / 6) / (0.5 / Z)) + log((1.0 / 6) / (0.2 / Z)));
    CHECK_NEAR(tsne_kl_exact(&P, Y2, 1), want, 1e-12);
}

/* Fast gradients against the exact one on random maps from collapsed (initial) to
 * spread-out: relative L2 error bounds as measured with margin (Barnes-Hut theta 0.5:
 * up to 1.5e-2 on these random maps, 2e-3 on a real t-SNE map; grid: 1.5e-2). */
TEST(tsne_fast_gradients_match_exact) {
    int n = 3000, d = 10;
    float *X = blobs(n, d, 5, 6);
    tsne_sparse P;
    char err[200];
    CHECK(tsne_affinities(X, n, d, 30, 2, &P, err, sizeof err) == 0);
    double spreads[] = { 1e-3, 3.0, 10.0 };
    double *ge = malloc(n * 2 * sizeof *ge), *gf = malloc(n * 2 * sizeof *gf);
    for (int s = 0; s < 3; s++) {
        double *Y = random_map(n, spreads[s], 7 + s);
        double kle = tsne_gradient_exact(&P, Y, 1.0, ge);
        CHECK_NEAR(kle, tsne_kl_exact(&P, Y, 2), 1e-9);
        for (int method = 0; method < 2; method++) {
            double kl = method == 0 ? tsne_gradient_bh(&P, Y, 1.0, 0.5, 2, gf)
                                    : tsne_gradient_fft(&P, Y, 1.0, 2, gf);
            double num = 0, den = 0;
            for (int e = 0; e < 2 * n; e++) {
                num += (ge[e] - gf[e]) * (ge[e] - gf[e]);
                den += ge[e] * ge[e];
            }
            double rel = sqrt(num / den), bound = method == 0 ? 2e-2 : 3e-2;
            CHECK_MSG(rel < bound, "%s, spread %g: relative gradient error %g",
                      method == 0 ? "barnes-hut" : "fft", spreads[s], rel);
            CHECK_NEAR(kl, kle, 2e-3 * fabs(kle));
        }
        free(Y);
    }
    free(ge); free(gf);
    tsne_sparse_free(&P);
    free(X);
}

/* Barnes-Hut must not depend on the thread count (fixed traversal per point). */
TEST(tsne_bh_deterministic_across_threads) {
    int n = 2000, d = 6;
    float *X = blobs(n, d, 3, 11);
    tsne_sparse P;
    char err[200];
    CHECK(tsne_affinities(X, n, d, 20, 2, &P, err, sizeof err) == 0);
    double *Y = random_map(n, 5.0, 12), *g1 = malloc(n * 2 * sizeof *g1),
           *g2 = malloc(n * 2 * sizeof *g2);
    double k1 = tsne_gradient_bh(&P, Y, 12.0, 0.5, 1, g1);
    double k2 = tsne_gradient_bh(&P, Y, 12.0, 0.5, 3, g2);
    CHECK(k1 == k2);
    CHECK(memcmp(g1, g2, n * 2 * sizeof *g1) == 0);
    tsne_sparse_free(&P);
    free(X); free(Y); free(g1); free(g2);
}

/* A fit separates well-separated clusters, is reproducible, and its KL agrees with
 * the exact KL of the returned map. */
TEST(tsne_fit_separates_clusters) {
    int n = 1200, d = 8, k = 4;
    float *X = blobs(n, d, k, 13), *Y = malloc(n * 2 * sizeof *Y), *Y2 = malloc(n * 2 * sizeof *Y2);
    tsne_options o;
    tsne_options_default(&o);
    o.perplexity = 20;
    o.n_iter = 500;
    double kl = 0, kl2 = 0;
    char err[200];
    CHECK(tsne_fit(X, n, d, &o, Y, &kl, err, sizeof err) == 0);
    CHECK(tsne_fit(X, n, d, &o, Y2, &kl2, err, sizeof err) == 0);
    CHECK(memcmp(Y, Y2, n * 2 * sizeof *Y) == 0);
    CHECK(kl == kl2);
    /* each point's nearest map neighbour is from its own cluster */
    int agree = 0;
    for (int i = 0; i < n; i++) {
        int best = -1;
        double bd = INFINITY;
        for (int j = 0; j < n; j++) {
            if (j == i) continue;
            double dx = Y[2 * i] - Y[2 * j], dy = Y[2 * i + 1] - Y[2 * j + 1];
            if (dx * dx + dy * dy < bd) { bd = dx * dx + dy * dy; best = j; }
        }
        agree += best % k == i % k;
    }
    CHECK_MSG(agree >= n * 99 / 100, "only %d of %d nearest map neighbours agree", agree, n);
    tsne_sparse P;
    CHECK(tsne_affinities(X, n, d, 20, 2, &P, err, sizeof err) == 0);
    double *Yd = malloc(n * 2 * sizeof *Yd);
    for (int e = 0; e < 2 * n; e++) Yd[e] = Y[e];
    CHECK_NEAR(kl, tsne_kl_exact(&P, Yd, 2), 0.01 * kl);
    CHECK(kl < 1.5);
    tsne_sparse_free(&P);
    free(X); free(Y); free(Y2); free(Yd);
}

static int progress_calls;
static void count_progress(void *ctx, int iter, int n_iter, double kl) {
    (void)ctx; (void)iter; (void)n_iter;
    if (isfinite(kl)) progress_calls++;
}

TEST(tsne_fit_exact_small_and_progress) {
    int n = 150, d = 5;
    float *X = blobs(n, d, 3, 14), *Y = malloc(n * 2 * sizeof *Y);
    tsne_options o;
    tsne_options_default(&o);
    o.perplexity = 10;
    o.n_iter = 300;
    o.init = TSNE_INIT_RANDOM;
    o.progress = count_progress;
    o.progress_every = 100;
    progress_calls = 0;
    double kl;
    char err[200];
    CHECK(tsne_fit(X, n, d, &o, Y, &kl, err, sizeof err) == 0);
    CHECK(progress_calls == 3);           /* iterations 100, 200 and the end */
    CHECK_MSG(kl > 0 && kl < 2.0, "kl %g", kl);
    free(X); free(Y);
}

TEST(tsne_bad_input) {
    int n = 100, d = 4;
    float *X = blobs(n, d, 2, 15), *Y = malloc(n * 2 * sizeof *Y);
    char err[200] = "";
    tsne_options o;
    tsne_options_default(&o);
    /* too few points for the perplexity: 3 * 40 + 1 > 100 */
    o.perplexity = 40;
    CHECK(tsne_fit(X, n, d, &o, Y, NULL, err, sizeof err) == -1);
    CHECK(strstr(err, "perplexity") != NULL);
    o.perplexity = 0.5;
    CHECK(tsne_fit(X, n, d, &o, Y, NULL, err, sizeof err) == -1);
    o.perplexity = 10;
    /* NaN / Inf */
    X[17] = NAN;
    CHECK(tsne_fit(X, n, d, &o, Y, NULL, err, sizeof err) == -1);
    CHECK(strstr(err, "not finite") != NULL);
    X[17] = INFINITY;
    CHECK(tsne_fit(X, n, d, &o, Y, NULL, err, sizeof err) == -1);
    X[17] = 0;
    /* zero variance: all points identical */
    float *same = calloc((size_t)n * d, sizeof *same);
    CHECK(tsne_fit(same, n, d, &o, Y, NULL, err, sizeof err) == -1);
    CHECK(strstr(err, "identical") != NULL);
    /* duplicates are fine: half the points are copies of the other half */
    memcpy(X + (size_t)(n / 2) * d, X, (size_t)(n / 2) * d * sizeof *X);
    o.n_iter = 300;
    double kl;
    CHECK(tsne_fit(X, n, d, &o, Y, &kl, err, sizeof err) == 0);
    for (int e = 0; e < 2 * n; e++) CHECK(isfinite(Y[e]));
    CHECK(isfinite(kl));
    /* 1-D input: PCA cannot give two axes, random init is used */
    CHECK_MSG(tsne_fit(X, n, 1, &o, Y, &kl, err, sizeof err) == 0, "%s", err);
    o.momentum_late = 1.0;
    CHECK(tsne_fit(X, n, d, &o, Y, NULL, err, sizeof err) == -1);
    free(X); free(Y); free(same);
}

/* ---- placement ------------------------------------------------------------------ */

/* A fitted reference map of `clusters` blobs, shared by the placement tests. */
typedef struct {
    int n, d, k;
    float *X, *Y;
    tsne_map *m;
} ref_map;

static ref_map make_ref(int n, int d, int clusters, uint64_t seed) {
    ref_map r = { n, d, clusters, blobs(n, d, clusters, seed), malloc(n * 2 * sizeof(float)), 0 };
    tsne_options o;
    tsne_options_default(&o);
    o.n_iter = 500;
    char err[200];
    CHECK(tsne_fit(r.X, n, d, &o, r.Y, NULL, err, sizeof err) == 0);
    r.m = tsne_map_create(r.X, r.Y, n, d, 0, err, sizeof err);
    CHECK_MSG(r.m != NULL, "%s", err);
    return r;
}

static void free_ref(ref_map *r) {
    tsne_map_free(r->m);
    free(r->X);
    free(r->Y);
}

static double extent_of(const float *Y, int n) {
    float lo[2] = { Y[0], Y[1] }, hi[2] = { Y[0], Y[1] };
    for (int i = 0; i < n; i++)
        for (int c = 0; c < 2; c++) {
            lo[c] = fminf(lo[c], Y[2 * i + c]);
            hi[c] = fmaxf(hi[c], Y[2 * i + c]);
        }
    return fmax(hi[0] - lo[0], hi[1] - lo[1]);
}

TEST(tsne_map_field_grid_matches_exact) {
    ref_map r = make_ref(2000, 8, 4, 21);
    double ext = extent_of(r.Y, r.n), num = 0, den = 0, zworst = 0;
    rng_t g;
    rng_seed(&g, 22);
    for (int t = 0; t < 500; t++) {
        /* near map points (where placements land) and anywhere in the box */
        int j = (int)rng_below(&g, r.n);
        double q[2] = { r.Y[2 * j] + rng_normal(&g), r.Y[2 * j + 1] + rng_normal(&g) };
        if (t % 2) {
            q[0] = (rng_uniform(&g) - 0.5) * ext;
            q[1] = (rng_uniform(&g) - 0.5) * ext;
        }
        double rg[2], re[2], zg, ze;
        tsne_map_field(r.m, q, 0, rg, &zg);
        tsne_map_field(r.m, q, 1, re, &ze);
        num += pow(rg[0] / zg - re[0] / ze, 2) + pow(rg[1] / zg - re[1] / ze, 2);
        den += pow(re[0] / ze, 2) + pow(re[1] / ze, 2);
        zworst = fmax(zworst, fabs(zg - ze) / ze);
    }
    /* measured: ~3e-3 and ~1e-3 on this map (docs/TSNE.md has the 10k-point figures) */
    CHECK_MSG(sqrt(num / den) < 2e-2, "repulsion rms relative error %g", sqrt(num / den));
    CHECK_MSG(zworst < 2e-2, "z worst relative error %g", zworst);
    /* outside the grid's box the exact sum is used */
    double far[2] = { 10 * ext, -10 * ext }, rg[2], re[2], zg, ze;
    tsne_map_field(r.m, far, 0, rg, &zg);
    tsne_map_field(r.m, far, 1, re, &ze);
    CHECK(zg == ze && rg[0] == re[0] && rg[1] == re[1]);
    free_ref(&r);
}

/* The grid keeps its potentials as floats, centred on each box (tsne_fft.c): moving the
 * whole map far from the origin must not change the field beyond a float's rounding.
 * Uncentred floats would lose ~|offset|^2 * 6e-8 relative (here ~0.1) in z. */
TEST(tsne_map_field_translation_invariant) {
    ref_map r = make_ref(2000, 8, 4, 25);
    const double off[2] = { 1000.0, -700.0 };
    float *Ys = malloc((size_t)r.n * 2 * sizeof *Ys);
    for (int i = 0; i < r.n; i++) {
        Ys[2 * i] = (float)(r.Y[2 * i] + off[0]);
        Ys[2 * i + 1] = (float)(r.Y[2 * i + 1] + off[1]);
    }
    /* the shifted floats round differently: compare against the rounded positions */
    for (int i = 0; i < r.n; i++) {
        r.Y[2 * i] = (float)(Ys[2 * i] - off[0]);
        r.Y[2 * i + 1] = (float)(Ys[2 * i + 1] - off[1]);
    }
    char err[200];
    tsne_map *m0 = tsne_map_create(r.X, r.Y, r.n, r.d, 0, err, sizeof err);
    tsne_map *m1 = tsne_map_create(r.X, Ys, r.n, r.d, 0, err, sizeof err);
    CHECK_MSG(m0 && m1, "%s", err);
    rng_t g;
    rng_seed(&g, 26);
    double worst_z = 0, worst_rep = 0;
    for (int t = 0; t < 300; t++) {
        int j = (int)rng_below(&g, r.n);
        double q0[2] = { r.Y[2 * j] + rng_normal(&g), r.Y[2 * j + 1] + rng_normal(&g) };
        double q1[2] = { q0[0] + off[0], q0[1] + off[1] }, r0[2], r1[2], z0, z1;
        tsne_map_field(m0, q0, 0, r0, &z0);
        tsne_map_field(m1, q1, 0, r1, &z1);
        worst_z = fmax(worst_z, fabs(z1 - z0) / z0);
        worst_rep = fmax(worst_rep, hypot(r1[0] - r0[0], r1[1] - r0[1]) / hypot(r0[0], r0[1]));
    }
    CHECK_MSG(worst_z < 1e-4, "z moved by %g relative", worst_z);
    CHECK_MSG(worst_rep < 1e-3, "repulsion moved by %g relative", worst_rep);
    tsne_map_free(m0);
    tsne_map_free(m1);
    free(Ys);
    free_ref(&r);
}

TEST(tsne_place_training_point_lands_near_its_position) {
    ref_map r = make_ref(2000, 8, 4, 23);
    double ext = extent_of(r.Y, r.n);
    tsne_place_options o;
    tsne_place_options_default(&o);
    char err[200];
    int wrong_cluster = 0;
    double worst = 0;
    for (int i = 0; i < r.n; i += 40) {
        float y[2];
        CHECK(tsne_place(r.m, &o, r.X + (size_t)i * r.d, y, err, sizeof err) == 0);
        worst = fmax(worst, hypot(y[0] - r.Y[2 * i], y[1] - r.Y[2 * i + 1]) / ext);
        int nn;
        tsne_map_dmap(r.m, y, 1, &nn, NULL);
        wrong_cluster += nn % r.k != i % r.k;
    }
    CHECK_MSG(worst < 0.05, "a training point landed %.1f%% of the extent away", 100 * worst);
    CHECK(wrong_cluster == 0);
    /* the zero-iteration shortcut is the P-weighted mean of the neighbours' positions */
    o.n_iter = 0;
    float y0[2];
    CHECK(tsne_place(r.m, &o, r.X, y0, err, sizeof err) == 0);
    int idx[90];
    float d2[90];
    double p[90], mx = 0, my = 0;
    knn_query(r.X, r.n, r.d, r.X, 90, -1, idx, d2);
    tsne_row_affinities(d2, 90, 30, p);
    for (int j = 0; j < 90; j++) {
        mx += p[j] * r.Y[2 * idx[j]];
        my += p[j] * r.Y[2 * idx[j] + 1];
    }
    CHECK_NEAR(y0[0], mx, 1e-3);
    CHECK_NEAR(y0[1], my, 1e-3);
    free_ref(&r);
}

TEST(tsne_place_grid_close_to_exact_placement) {
    ref_map r = make_ref(2000, 8, 4, 24);
    double ext = extent_of(r.Y, r.n), mean = 0;
    int q = 200;
    float *Q = blobs(q, r.d, 4, 25), *A = malloc(q * 2 * sizeof *A), *B = malloc(q * 2 * sizeof *B);
    tsne_place_options o;
    tsne_place_options_default(&o);
    char err[200];
    double *nearest = malloc(q * sizeof *nearest), *five = malloc(q * 5 * sizeof *five), want[5];
    tsne_place_knn nb = {nearest, five, 5, NULL};
    CHECK(nearest && five && tsne_place_batch(r.m, &o, Q, q, 2, A, &nb, err, sizeof err) == 0);
    /* D_LATENT and the memory term's reference side read off the placement's neighbours
     * are the separate scans', bit for bit. */
    for (int i = 0; nearest && five && i < q; i++) {
        CHECK_MSG(nearest[i] == tsne_map_latent_nn(r.m, Q + (size_t)i * r.d), "row %d: %.9g vs %.9g",
                  i, nearest[i], tsne_map_latent_nn(r.m, Q + (size_t)i * r.d));
        tsne_map_latent_knn(r.m, Q + (size_t)i * r.d, 5, want);
        CHECK(!memcmp(five + (size_t)i * 5, want, sizeof want));
        CHECK(five[(size_t)i * 5] == nearest[i] && five[(size_t)i * 5 + 4] >= five[(size_t)i * 5 + 3]);
    }
    free(nearest);
    free(five);
    nb = (tsne_place_knn){NULL, NULL, 91, NULL};    /* beyond the 90 searched at perplexity 30 */
    CHECK(tsne_place_batch(r.m, &o, Q, q, 2, A, &nb, err, sizeof err) == 0);
    double unused;
    tsne_place_timing timing = {0};
    nb = (tsne_place_knn){NULL, NULL, 5, &timing};   /* timing sums on one thread only */
    CHECK(tsne_place_batch(r.m, &o, Q, q, 2, A, &nb, err, sizeof err) == -1 &&
          strstr(err, "stage timing needs one thread"));
    CHECK(tsne_place_batch(r.m, &o, Q, q, 1, A, &nb, err, sizeof err) == 0 &&
          timing.search_ns > 0 && timing.iterate_ns > 0);
    CHECK_MSG(timing.groups == (q + 63) / 64, "%lld groups of rows timed", timing.groups);
    nb = (tsne_place_knn){NULL, NULL, 91, NULL};
    nb.ranks = &unused;   /* never written: refused first */
    CHECK(tsne_place_batch(r.m, &o, Q, q, 2, A, &nb, err, sizeof err) == -1 &&
          strstr(err, "91 neighbours are not among the 90 searched"));
    o.exact = 1;
    CHECK(tsne_place_batch(r.m, &o, Q, q, 2, B, NULL, err, sizeof err) == 0);
    for (int i = 0; i < q; i++) mean += hypot(A[2 * i] - B[2 * i], A[2 * i + 1] - B[2 * i + 1]) / q;
    CHECK_MSG(mean / ext < 0.01, "grid vs exact placement: mean %.3f%% of extent",
              100 * mean / ext);
    free_ref(&r);
    free(Q); free(A); free(B);
}

TEST(tsne_place_batch_invariant) {
    ref_map r = make_ref(1500, 8, 3, 26);
    int q = 64;
    float *Q = blobs(q, r.d, 5, 27), *A = malloc(q * 2 * sizeof *A), *B = malloc(q * 2 * sizeof *B);
    float *Qr = malloc((size_t)q * r.d * sizeof *Qr);
    tsne_place_options o;
    tsne_place_options_default(&o);
    char err[200];
    CHECK(tsne_place_batch(r.m, &o, Q, q, 1, A, NULL, err, sizeof err) == 0);
    for (int i = 0; i < q; i++) {       /* alone */
        float y[2];
        CHECK(tsne_place(r.m, &o, Q + (size_t)i * r.d, y, err, sizeof err) == 0);
        CHECK(y[0] == A[2 * i] && y[1] == A[2 * i + 1]);
    }
    for (int i = 0; i < q; i++)         /* reversed batch, three threads */
        memcpy(Qr + (size_t)i * r.d, Q + (size_t)(q - 1 - i) * r.d, r.d * sizeof *Qr);
    CHECK(tsne_place_batch(r.m, &o, Qr, q, 3, B, NULL, err, sizeof err) == 0);
    for (int i = 0; i < q; i++)
        CHECK(B[2 * (q - 1 - i)] == A[2 * i] && B[2 * (q - 1 - i) + 1] == A[2 * i + 1]);
    free_ref(&r);
    free(Q); free(Qr); free(A); free(B);
}

/* Whether each of the q positions equals tsne_place's of its row alone, bit for bit. */
static int batch_matches_single(const tsne_map *m, const tsne_place_options *o, const float *Q,
                                int q, int d, const float *got) {
    char err[200];
    int same = 1;
    for (int i = 0; i < q; i++) {
        float y[2];
        same &= tsne_place(m, o, Q + (size_t)i * d, y, err, sizeof err) == 0 &&
                !memcmp(y, got + 2 * i, sizeof y);
    }
    return same;
}

/* Batches place their rows in lockstep (tsne_place.c: groups of 64 rows, 8 of them
 * stepping at once, a slot handed to the next row when its row stops); every row must
 * still come out as tsne_place has it alone, bit for bit: rows that stop at different
 * steps (tol, and the n_iter cap), rows flung outside the field's box (its exact sums),
 * repeated rows, a row on a reference latent, a far row, rows whose neighbours all tie
 * (uniform affinities), and batches of sizes around the slot and group counts, on one
 * thread and on three. */
TEST(tsne_place_lockstep_matches_single) {
    ref_map r = make_ref(1500, 8, 3, 50);
    int q = 203, d = r.d;
    float *Q = blobs(q, d, 5, 51), *A = malloc(q * 2 * sizeof *A);
    for (int i = 10; i < 15; i++) memcpy(Q + i * d, Q + 9 * d, d * sizeof *Q);
    memcpy(Q + 20 * d, r.X + 7 * d, d * sizeof *Q);
    for (int c = 0; c < d; c++) Q[21 * d + c] = c % 2 ? 1e4f : -1e4f;
    tsne_place_options o[4];
    for (int t = 0; t < 4; t++) tsne_place_options_default(&o[t]);
    o[0].n_iter = 250;                  /* the bundles' settings: tol stops rows apart */
    o[0].tol = 1e-2;
    o[1].n_iter = 12;                   /* some stop by tol, the rest at the cap */
    o[1].tol = 3e-2;
    o[2].n_iter = 40;                   /* flung out of the field's box and back */
    o[2].learning_rate = 300;
    o[3].n_iter = 0;
    char err[200];
    const int sizes[] = { 1, 2, 7, 8, 9, 63, 64, 65, 203 };
    for (int t = 0; t < 4; t++) {
        for (int z = 0; z < 9; z++) {
            int ok = 1;
            for (int at = 0; at < q; at += sizes[z]) {
                int n = q - at < sizes[z] ? q - at : sizes[z];
                ok &= tsne_place_batch(r.m, &o[t], Q + at * d, n, 1, A + 2 * at, NULL, err,
                                       sizeof err) == 0;
            }
            CHECK_MSG(ok && batch_matches_single(r.m, &o[t], Q, q, d, A),
                      "settings %d, batches of %d: not tsne_place's bits", t, sizes[z]);
        }
        CHECK(tsne_place_batch(r.m, &o[t], Q, q, 3, A, NULL, err, sizeof err) == 0 &&
              batch_matches_single(r.m, &o[t], Q, q, d, A));
    }
    /* the settings do what they are there for: rows stop at different steps... */
    tsne_place_timing tm;
    tsne_place_knn nb = {NULL, NULL, 1, &tm};
    long long fewest = 1 << 30, most = 0;
    for (int i = 0; i < q; i++) {
        tm = (tsne_place_timing){0};
        CHECK(tsne_place_batch(r.m, &o[0], Q + i * d, 1, 1, A, &nb, err, sizeof err) == 0);
        fewest = tm.steps < fewest ? tm.steps : fewest;
        most = tm.steps > most ? tm.steps : most;
    }
    CHECK_MSG(fewest < most, "steps %lld..%lld", fewest, most);
    /* ...and some rows, not all, end outside the box (tsne_map_create's margin) */
    float lo[2] = { r.Y[0], r.Y[1] }, hi[2] = { r.Y[0], r.Y[1] };
    for (int i = 0; i < r.n; i++)
        for (int c = 0; c < 2; c++) {
            lo[c] = fminf(lo[c], r.Y[2 * i + c]);
            hi[c] = fmaxf(hi[c], r.Y[2 * i + c]);
        }
    double side = fmax(hi[0] - lo[0], hi[1] - lo[1]), half = 0.5 * side + 0.15 * side + 3.0;
    CHECK(tsne_place_batch(r.m, &o[2], Q, q, 1, A, NULL, err, sizeof err) == 0);
    int outside = 0;
    for (int i = 0; i < q; i++)
        outside += fabs(A[2 * i] - 0.5 * (lo[0] + hi[0])) > half ||
                   fabs(A[2 * i + 1] - 0.5 * (lo[1] + hi[1])) > half;
    CHECK_MSG(outside > 0 && outside < q, "%d of %d rows outside the box", outside, q);
    free_ref(&r);

    /* A map whose latents repeat one point 120 times: rows on it, or near it, see all
     * their 90 neighbours at one distance (tsne_calibrate's uniform case). */
    int n = 400;
    float *X = blobs(n, 4, 3, 53), *Y = blobs(n, 2, 3, 54);
    for (int i = 1; i < 120; i++) memcpy(X + i * 4, X, 4 * sizeof *X);
    tsne_map *m = tsne_map_create(X, Y, n, 4, 0, err, sizeof err);
    CHECK_MSG(m != NULL, "%s", err);
    float *T = blobs(19, 4, 3, 55);
    memcpy(T + 4, X, 4 * sizeof *T);
    memcpy(T + 12, X, 4 * sizeof *T);
    T[12] += 1e-3f;
    for (int t = 0; m && t < 3; t++) {
        CHECK(tsne_place_batch(m, &o[t], T, 19, 1, A, NULL, err, sizeof err) == 0);
        CHECK(batch_matches_single(m, &o[t], T, 19, 4, A));
    }
    tsne_map_free(m);
    free(X); free(Y); free(T); free(Q); free(A);
}

/* The stopping rule: a tolerance no step can meet changes nothing; one every step meets
 * stops after TSNE_PLACE_STILL steps, exactly where n_iter = TSNE_PLACE_STILL stops; a
 * moderate one lands close to the full run. Bad tolerances (negative, not finite, above
 * TSNE_MAX_PLACE_TOL) are refused. */
TEST(tsne_place_tolerance_stops_early) {
    ref_map r = make_ref(1500, 8, 3, 40);
    int q = 32;
    float *Q = blobs(q, r.d, 5, 41), *A = malloc(q * 2 * sizeof *A), *B = malloc(q * 2 * sizeof *B);
    tsne_place_options o;
    tsne_place_options_default(&o);
    char err[200];
    CHECK(tsne_place_batch(r.m, &o, Q, q, 1, A, NULL, err, sizeof err) == 0);
    o.tol = 1e-300;
    CHECK(tsne_place_batch(r.m, &o, Q, q, 1, B, NULL, err, sizeof err) == 0);
    for (int i = 0; i < 2 * q; i++) CHECK(A[i] == B[i]);
    tsne_place_options short_run = o;
    short_run.tol = 0;
    short_run.n_iter = TSNE_PLACE_STILL;
    o.tol = TSNE_MAX_PLACE_TOL;
    /* the stage timing counts the steps taken: TSNE_PLACE_STILL a point here, n_iter
     * without tol, in between with a small one */
    tsne_place_timing tm = {0};
    tsne_place_knn nb = {NULL, NULL, 1, &tm};
    CHECK(tsne_place_batch(r.m, &short_run, Q, q, 1, A, NULL, err, sizeof err) == 0);
    CHECK(tsne_place_batch(r.m, &o, Q, q, 1, B, &nb, err, sizeof err) == 0);
    for (int i = 0; i < 2 * q; i++) CHECK(A[i] == B[i]);
    CHECK_MSG(tm.steps == (long long)q * TSNE_PLACE_STILL, "%lld steps", tm.steps);
    tsne_place_options_default(&o);
    tm = (tsne_place_timing){0};
    CHECK(tsne_place_batch(r.m, &o, Q, q, 1, A, &nb, err, sizeof err) == 0);
    CHECK_MSG(tm.steps == (long long)q * o.n_iter, "%lld steps", tm.steps);
    o.tol = 1e-3;
    tm = (tsne_place_timing){0};
    CHECK(tsne_place_batch(r.m, &o, Q, q, 1, B, &nb, err, sizeof err) == 0);
    CHECK_MSG(tm.steps > (long long)q * TSNE_PLACE_STILL && tm.steps < (long long)q * o.n_iter,
              "%lld steps", tm.steps);
    double worst = 0;
    for (int i = 0; i < q; i++) worst = fmax(worst, hypot(A[2 * i] - B[2 * i], A[2 * i + 1] - B[2 * i + 1]));
    CHECK_MSG(worst < 0.05, "tol 1e-3 lands %.3g map units from the full run", worst);
    o.tol = -1;
    CHECK_FAILS_WITH(tsne_place(r.m, &o, Q, A, err, sizeof err), err, "tol");
    o.tol = NAN;
    CHECK_FAILS_WITH(tsne_place(r.m, &o, Q, A, err, sizeof err), err, "tol");
    o.tol = INFINITY;
    CHECK_FAILS_WITH(tsne_place(r.m, &o, Q, A, err, sizeof err), err, "tol");
    o.tol = nextafter(TSNE_MAX_PLACE_TOL, INFINITY);
    CHECK_FAILS_WITH(tsne_place(r.m, &o, Q, A, err, sizeof err), err, "tol");
    free_ref(&r);
    free(Q); free(A); free(B);
}

TEST(tsne_dmap_matches_brute_force) {
    int n = 3000;
    rng_t g;
    rng_seed(&g, 28);
    float *X = malloc(n * 2 * sizeof *X), *Y = malloc(n * 2 * sizeof *Y);
    for (int i = 0; i < n; i++) {       /* clustered map with some exact duplicates */
        int c = i % 5;
        Y[2 * i] = 20.0f * c + 3.0f * rng_normal(&g);
        Y[2 * i + 1] = -15.0f * (c % 2) + 3.0f * rng_normal(&g);
        if (i % 97 == 1) { Y[2 * i] = Y[2 * i - 2]; Y[2 * i + 1] = Y[2 * i - 1]; }
        X[2 * i] = Y[2 * i];
        X[2 * i + 1] = Y[2 * i + 1];
    }
    char err[200];
    tsne_map *m = tsne_map_create(X, Y, n, 2, 0, err, sizeof err);
    CHECK(m != NULL);
    int ks[3] = { 1, 7, 40 }, idx[40], bidx[40];
    float dist[40];
    for (int t = 0; t < 300; t++) {
        float q[2] = { 120.0f * rng_uniform(&g) - 20.0f, 60.0f * rng_uniform(&g) - 40.0f };
        if (t % 3 == 0) { q[0] = Y[2 * t]; q[1] = Y[2 * t + 1]; }   /* on a point */
        if (t % 50 == 1) { q[0] = 1e4f; q[1] = -3e3f; }              /* far outside */
        for (int s = 0; s < 3; s++) {
            int k = ks[s];
            double got = tsne_map_dmap(m, q, k, idx, dist);
            /* brute force with the same (distance, index) order */
            double bd[40];
            int count = 0;
            for (int j = 0; j < n; j++) {
                double dx = (double)q[0] - Y[2 * j], dy = (double)q[1] - Y[2 * j + 1];
                double d2 = dx * dx + dy * dy;
                int at = count < k ? count++ : k;
                if (at == k && !(d2 < bd[k - 1])) continue;
                if (at == k) at = k - 1;
                while (at > 0 && bd[at - 1] > d2) { bd[at] = bd[at - 1]; bidx[at] = bidx[at - 1]; at--; }
                bd[at] = d2;
                bidx[at] = j;
            }
            double want = 0;
            for (int r = 0; r < k; r++) {
                want += sqrt(bd[r]) / k;
                CHECK(idx[r] == bidx[r]);
                CHECK_NEAR(dist[r], sqrt(bd[r]), 1e-4 * (1 + sqrt(bd[r])));
            }
            CHECK_NEAR(got, want, 1e-9 * (1 + want));
        }
    }
    CHECK(tsne_map_dmap(m, Y, 0, NULL, NULL) < 0);
    CHECK(tsne_map_dmap(m, Y, n + 1, NULL, NULL) < 0);
    tsne_map_free(m);
    free(X); free(Y);
}

/* The paper's signal: anomalies placed together pull each other into an island away
 * from the normal clusters; placed alone each lands among its nearest normals. */
TEST(tsne_coplace_anomalies_form_island) {
    ref_map r = make_ref(2000, 8, 4, 29);
    int q = 60;
    rng_t g;
    rng_seed(&g, 30);
    float *Q = malloc((size_t)q * r.d * sizeof *Q), *S = malloc(q * 2 * sizeof *S),
          *C = malloc(q * 2 * sizeof *C);
    for (int i = 0; i < q; i++)        /* a fifth blob, near cluster 0 in latent space */
        for (int c = 0; c < r.d; c++)
            Q[(size_t)i * r.d + c] = 0.5f * rng_normal(&g) + (c == 0 ? 4.0f : 0.0f) +
                                     (c == 5 ? 5.0f : 0.0f);
    tsne_place_options o;
    tsne_place_options_default(&o);
    char err[200];
    CHECK(tsne_place_batch(r.m, &o, Q, q, 2, S, NULL, err, sizeof err) == 0);
    CHECK(tsne_coplace(r.m, &o, Q, q, C, err, sizeof err) == 0);
    double ds = 0, dc = 0;
    for (int i = 0; i < q; i++) {
        ds += tsne_map_dmap(r.m, S + 2 * i, 1, NULL, NULL) / q;
        dc += tsne_map_dmap(r.m, C + 2 * i, 1, NULL, NULL) / q;
        CHECK(isfinite(C[2 * i]) && isfinite(C[2 * i + 1]));
    }
    CHECK_MSG(dc > 1.5 * ds, "D_MAP co-placed %.3f vs alone %.3f", dc, ds);
    /* co-placement of one point is single placement up to neighbour-search rounding */
    float y1[2], y2[2];
    CHECK(tsne_coplace(r.m, &o, r.X, 1, y1, err, sizeof err) == 0);
    CHECK(tsne_place(r.m, &o, r.X, y2, err, sizeof err) == 0);
    CHECK_NEAR(y1[0], y2[0], 1e-2);
    CHECK_NEAR(y1[1], y2[1], 1e-2);
    free_ref(&r);
    free(Q); free(S); free(C);
}

TEST(tsne_window_bounded_and_attracts) {
    ref_map r = make_ref(1500, 8, 3, 31);
    char err[200];
    tsne_window *w = tsne_window_create(r.m, 100, err, sizeof err);
    CHECK(w != NULL);
    tsne_place_options o;
    tsne_place_options_default(&o);
    o.n_iter = 30;
    int b = 16;
    rng_t g;
    rng_seed(&g, 32);
    float *Q = malloc((size_t)b * r.d * sizeof *Q), *Y = malloc(b * 2 * sizeof *Y);
    float *S = malloc(b * 2 * sizeof *S), *prev = malloc(b * 2 * sizeof *prev);
    double near_window = 0, near_single = 0;
    for (int batch = 0; batch < 20; batch++) {
        for (int i = 0; i < b * r.d; i++)       /* a recurring anomaly type */
            Q[i] = 0.5f * rng_normal(&g) + (i % r.d == 6 ? 6.0f : 0.0f);
        CHECK(tsne_window_add(w, &o, Q, b, Y, err, sizeof err) == 0);
        CHECK(tsne_window_count(w) == ((batch + 1) * b < 100 ? (batch + 1) * b : 100));
        CHECK(tsne_place_batch(r.m, &o, Q, b, 1, S, NULL, err, sizeof err) == 0);
        if (batch == 19) {
            /* With the window, new anomalies land next to the previous ones of their type
             * (attraction to window points); placed alone they do not know of them. */
            for (int i = 0; i < b; i++) {
                double bw = INFINITY, bs = INFINITY;
                for (int j = 0; j < b; j++) {
                    bw = fmin(bw, hypot(Y[2 * i] - prev[2 * j], Y[2 * i + 1] - prev[2 * j + 1]));
                    bs = fmin(bs, hypot(S[2 * i] - prev[2 * j], S[2 * i + 1] - prev[2 * j + 1]));
                }
                near_window += bw / b;
                near_single += bs / b;
            }
        }
        memcpy(prev, Y, b * 2 * sizeof *Y);
    }
    CHECK(tsne_window_count(w) == 100);
    CHECK_MSG(near_window < near_single, "distance to previous anomalies: window %.3f, alone %.3f",
              near_window, near_single);
    /* a batch larger than the window keeps the newest rows */
    float *big = blobs(150, r.d, 3, 33), *Yb = malloc(150 * 2 * sizeof *Yb);
    CHECK(tsne_window_add(w, &o, big, 150, Yb, err, sizeof err) == 0);
    CHECK(tsne_window_count(w) == 100);
    big[5] = NAN;
    CHECK(tsne_window_add(w, &o, big, 150, Yb, err, sizeof err) == -1);
    CHECK(tsne_window_count(w) == 100);
    tsne_window_free(w);
    CHECK(tsne_window_create(r.m, -1, err, sizeof err) == NULL);
    free_ref(&r);
    free(Q); free(Y); free(S); free(prev); free(big); free(Yb);
}

TEST(tsne_place_bad_input) {
    int n = 200, d = 4;
    float *X = blobs(n, d, 2, 34), *Y = malloc(n * 2 * sizeof *Y);
    for (int i = 0; i < 2 * n; i++) Y[i] = (float)(i % 17);
    char err[200] = "";
    CHECK(tsne_map_create(X, Y, 0, d, 0, err, sizeof err) == NULL);
    /* wider than the index takes (X is read only after the check) */
    CHECK_FAILS_WITH(tsne_map_create(X, Y, 1, KNN_INDEX_MAX_D + 1, 0, err, sizeof err) ? 0 : -1,
                     err, "dimensions");
    Y[3] = INFINITY;
    CHECK(tsne_map_create(X, Y, n, d, 0, err, sizeof err) == NULL);
    CHECK(strstr(err, "not finite") != NULL);
    Y[3] = 1;
    tsne_map *m = tsne_map_create(X, Y, n, d, 0, err, sizeof err);
    CHECK(m != NULL);
    tsne_place_options o;
    tsne_place_options_default(&o);
    float q[4] = { 0, 1, NAN, 2 }, y[2];
    CHECK(tsne_place(m, &o, q, y, err, sizeof err) == -1);
    CHECK(strstr(err, "not finite") != NULL);
    q[2] = 0;
    o.perplexity = 70;               /* 210 neighbours > 200 reference points */
    CHECK(tsne_place(m, &o, q, y, err, sizeof err) == -1);
    CHECK(strstr(err, "perplexity") != NULL);
    o.perplexity = 30;
    o.momentum = 1.0;
    CHECK(tsne_place(m, &o, q, y, err, sizeof err) == -1);
    o.momentum = 0.8;
    CHECK(tsne_coplace(m, &o, q, 0, y, err, sizeof err) == -1);
    /* a query identical to a reference latent, and one far away, are fine */
    CHECK(tsne_place(m, &o, X, y, err, sizeof err) == 0);
    float far[4] = { 1e6f, -1e6f, 1e6f, 0 };
    CHECK(tsne_place(m, &o, far, y, err, sizeof err) == 0);
    CHECK(isfinite(y[0]) && isfinite(y[1]));
    tsne_map_free(m);
    free(X); free(Y);
}

/* Sets above 1024 points take the Barnes-Hut path for new-new repulsion. */
TEST(tsne_coplace_large_set) {
    ref_map r = make_ref(1500, 8, 3, 35);
    int q = 1100;
    float *Q = blobs(q, r.d, 4, 36), *A = malloc(q * 2 * sizeof *A), *B = malloc(q * 2 * sizeof *B);
    tsne_place_options o;
    tsne_place_options_default(&o);
    o.n_iter = 20;
    char err[200];
    CHECK(tsne_coplace(r.m, &o, Q, q, A, err, sizeof err) == 0);
    o.n_threads = 2;
    CHECK(tsne_coplace(r.m, &o, Q, q, B, err, sizeof err) == 0);
    CHECK(memcmp(A, B, q * 2 * sizeof *A) == 0);   /* thread count does not matter */
    double ext = extent_of(r.Y, r.n);
    for (int i = 0; i < q; i++) {
        CHECK(isfinite(A[2 * i]) && isfinite(A[2 * i + 1]));
        CHECK(fabs(A[2 * i]) < 2 * ext && fabs(A[2 * i + 1]) < 2 * ext);
    }
    free_ref(&r);
    free(Q); free(A); free(B);
}
