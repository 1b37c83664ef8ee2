/* The scorer's fixed-order product (core/nn/gemm.h): against a double-precision
 * reference on shapes around its tiles' edges, and a sample's bits alone and inside
 * batches. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fixture.h"
#include "gemm.h"
#include "rng.h"

/* A gathered product of S samples of P rows with random taps (some in the padding). */
typedef struct {
    int S, P, T, C, N;
    size_t in_n, out_n;
    float *a, *kn, *w, *bias, *mean, *scale, *shift, *zeros, *c;
    int *a_off, *c_off;
} gcase;

static void gcase_free(gcase *k) {
    free(k->a);
    free(k->kn);
    free(k->w);
    free(k->bias);
    free(k->mean);
    free(k->zeros);
    free(k->c);
    free(k->a_off);
}

static int gcase_make(gcase *k, int S, int P, int T, int C, int N, uint32_t seed) {
    memset(k, 0, sizeof *k);
    *k = (gcase){.S = S, .P = P, .T = T, .C = C, .N = N};
    k->in_n = (size_t)(P + 3) * C;   /* each tap's run starts at one of P + 3 places */
    k->out_n = (size_t)P * N + 5;    /* rows written at P places, with a gap at the end */
    const int K = T * C, pn = gemm_padded_n(N);
    k->a = malloc(sizeof(float) * k->in_n * S);
    k->kn = malloc(sizeof(float) * K * N + 1);
    k->w = malloc(sizeof(float) * gemm_packed_floats(K, N) + 1);
    k->bias = calloc(pn, sizeof(float));
    k->mean = calloc(3 * (size_t)pn, sizeof(float));
    k->zeros = calloc(C, sizeof(float));
    k->c = calloc(k->out_n * S, sizeof(float));
    k->a_off = malloc(sizeof(int) * ((size_t)P * T + P));
    if (!k->a || !k->kn || !k->w || !k->bias || !k->mean || !k->zeros || !k->c || !k->a_off) {
        gcase_free(k);
        return -1;
    }
    k->scale = k->mean + pn;
    k->shift = k->scale + pn;
    k->c_off = k->a_off + (size_t)P * T;
    det_fill(k->a, k->in_n * S, seed, -1, 1);
    det_fill(k->kn, (size_t)K * N, seed + 1, -1, 1);
    det_fill(k->bias, N, seed + 2, -1, 1);
    det_fill(k->mean, N, seed + 3, -0.5f, 0.5f);
    det_fill(k->scale, N, seed + 4, 0.5f, 2);
    det_fill(k->shift, N, seed + 5, -0.5f, 0.5f);
    rng_t r;
    rng_seed(&r, seed);
    for (size_t i = 0; i < (size_t)P * T; i++) {
        int at = (int)(rng_uniform(&r) * (P + 4)) - 1;   /* -1: padding */
        k->a_off[i] = at < 0 ? -1 : at * C;
    }
    for (int p = 0; p < P; p++) k->c_off[p] = (P - 1 - p) * N;   /* rows written backwards */
    gemm_pack(k->w, k->kn, K, N);
    return 0;
}

/* The call for samples [s0, s0 + n) of k, with ops relu then affine when ops is set. */
static gemm_call gcase_call(const gcase *k, int s0, int n, int ops) {
    gemm_call g = {.M = n * k->P, .N = k->N, .P = k->P, .T = k->T, .C = k->C,
                   .a = k->a + (size_t)s0 * k->in_n, .a_stride = k->in_n, .a_off = k->a_off,
                   .zeros = k->zeros, .w = k->w, .bias = k->bias,
                   .c = k->c + (size_t)s0 * k->out_n, .c_stride = k->out_n, .c_off = k->c_off};
    if (ops) {
        g.n_ops = 2;
        g.ops[0] = (gemm_op){.kind = GEMM_RELU};
        g.ops[1] = (gemm_op){.kind = GEMM_AFFINE, .mean = k->mean, .scale = k->scale,
                             .shift = k->shift};
    }
    return g;
}

/* Every output of k (computed with ops) against the sum in double, within float
 * rounding of its terms' magnitude; the gap after each sample's rows left untouched. */
static void check_reference(const gcase *k, const char *what) {
    const int K = k->T * k->C;
    double worst = 0.0;
    int bad_gap = 0;
    for (int s = 0; s < k->S; s++)
        for (int p = 0; p < k->P; p++)
            for (int n = 0; n < k->N; n++) {
                double sum = k->bias[n], mag = fabs(k->bias[n]);
                for (int t = 0; t < k->T; t++) {
                    const int off = k->a_off[p * k->T + t];
                    for (int c = 0; off >= 0 && c < k->C; c++) {
                        double term = (double)k->a[s * k->in_n + off + c] *
                                      k->kn[(size_t)(t * k->C + c) * k->N + n];
                        sum += term;
                        mag += fabs(term);
                    }
                }
                double v = sum > 0 ? sum : 0.0;
                v = (v - k->mean[n]) * k->scale[n] + k->shift[n];
                double got = k->c[s * k->out_n + k->c_off[p] + n];
                double err = fabs(got - v) / ((mag + 1.0) * k->scale[n] * (K + 1));
                if (err > worst) worst = err;
            }
    for (int s = 0; s < k->S; s++)
        for (size_t i = (size_t)k->P * k->N; i < k->out_n; i++) bad_gap |= k->c[s * k->out_n + i] != 0;
    CHECK_MSG(worst < 1.2e-7, "%s: error %.3g units of rounding per term", what, worst);
    CHECK_MSG(!bad_gap, "%s: wrote outside its rows", what);
}

/* Shapes around the kernel's edges: rows 1..4 and past a tile, columns below, at and past
 * one and two vectors, runs shorter and longer than a vector, no taps at all. */
static const int SHAPES[][4] = {   /* P, T, C, N */
    {1, 1, 1, 1},   {1, 1, 37, 1},  {3, 2, 16, 3},  {5, 3, 33, 15}, {7, 1, 5, 16},
    {2, 4, 3, 17},  {9, 2, 20, 31}, {1, 1, 100, 32}, {6, 9, 1, 33}, {4, 2, 17, 47},
    {3, 0, 4, 20},  {13, 3, 32, 64}, {1, 1, 300, 100}, {2, 5, 2, 5},
};

TEST(gemm_matches_double_reference) {
    for (size_t i = 0; i < sizeof SHAPES / sizeof SHAPES[0]; i++) {
        const int *sh = SHAPES[i];
        for (int S = 1; S <= 6; S += 5) {
            gcase k;
            if (gcase_make(&k, S, sh[0], sh[1], sh[2], sh[3], 100 + (uint32_t)i) != 0) {
                check_fail(__FILE__, __LINE__, "out of memory");
                return;
            }
            gemm_call g = gcase_call(&k, 0, S, 1);
            gemm_run(&g);
            char what[96];
            snprintf(what, sizeof what, "P %d T %d C %d N %d, %d samples", sh[0], sh[1], sh[2],
                     sh[3], S);
            check_reference(&k, what);
            gcase_free(&k);
        }
    }
}

/* The contract the scorer relies on: a sample's outputs are the same bits computed alone,
 * at any place in a batch of any size, with or without the epilogue's ops. */
TEST(gemm_row_alone_equals_row_in_batch) {
    enum { S = 11 };
    for (size_t i = 0; i < sizeof SHAPES / sizeof SHAPES[0]; i++) {
        const int *sh = SHAPES[i];
        for (int ops = 0; ops < 2; ops++) {
            gcase k;
            if (gcase_make(&k, S, sh[0], sh[1], sh[2], sh[3], 200 + (uint32_t)i) != 0) {
                check_fail(__FILE__, __LINE__, "out of memory");
                return;
            }
            const size_t n = k.out_n * S;
            float *all = malloc(sizeof(float) * n);
            if (!all) {
                check_fail(__FILE__, __LINE__, "out of memory");
                gcase_free(&k);
                return;
            }
            gemm_call g = gcase_call(&k, 0, S, ops);
            gemm_run(&g);
            memcpy(all, k.c, sizeof(float) * n);
            memset(k.c, 0, sizeof(float) * n);
            /* pieces of 1, 2, 3, 1, 2, 3, ...: each sample at another place in its call */
            for (int s0 = 0, len = 1; s0 < S; s0 += len, len = len % 3 + 1) {
                const int m = S - s0 < len ? S - s0 : len;
                g = gcase_call(&k, s0, m, ops);
                gemm_run(&g);
            }
            CHECK_MSG(memcmp(all, k.c, sizeof(float) * n) == 0,
                      "P %d T %d C %d N %d ops %d: a sample's outputs depend on its batch",
                      sh[0], sh[1], sh[2], sh[3], ops);
            free(all);
            gcase_free(&k);
        }
    }
}
