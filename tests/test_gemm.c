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

/* Output (s, p, n) of k, ops relu then affine when ops is set, summed in float in the
 * order gemm.h documents, the padding's zero terms included: the bits gemm_run must give. */
static float documented_sum(const gcase *k, int s, int p, int n, int ops) {
    const int N = k->N, C = k->C;
    float lane[16] = {0}, tail = 0.0f, v = k->bias[n];
    for (int t = 0; t < k->T; t++) {
        const int off = k->a_off[p * k->T + t];
        const float *x = off >= 0 ? k->a + s * k->in_n + off : k->zeros;
        const float *w = k->kn + (size_t)t * C * N + n;   /* column n of rows t * C .. */
        int c = 0;
        if (N >= 16) {
            for (; c < C; c++) v += x[c] * w[(size_t)c * N];
            continue;
        }
        for (; c + 16 <= C; c += 16)
            for (int i = 0; i < 16; i++) lane[i] += x[c + i] * w[(size_t)(c + i) * N];
        for (; c < C; c++) tail += x[c] * w[(size_t)c * N];
    }
    if (N < 16) {
        float s8[8], s4[4];
        for (int i = 0; i < 8; i++) s8[i] = lane[i] + lane[i + 8];
        for (int i = 0; i < 4; i++) s4[i] = s8[i] + s8[i + 4];
        v = v + (((s4[0] + s4[2]) + (s4[1] + s4[3])) + tail);
    }
    if (ops) {
        v = v > 0.0f ? v : 0.0f;
        v = (v - k->mean[n]) * k->scale[n] + k->shift[n];
    }
    return v;
}

/* Every output to the bit against documented_sum, for batches that put rows at every
 * place in every tile shape: the order is the contract, whatever computes it. */
TEST(gemm_sums_in_the_documented_order) {
    static const int MORE[][4] = {   /* P, T, C, N: many rows per sample */
        {37, 4, 32, 1}, {50, 9, 1, 32}, {23, 2, 48, 2}, {19, 3, 13, 128}, {1, 1, 1568, 128},
    };
    const int n_shapes = (int)(sizeof SHAPES / sizeof SHAPES[0]), n_more = (int)(sizeof MORE / sizeof MORE[0]);
    for (int i = 0; i < n_shapes + n_more; i++) {
        const int *sh = i < n_shapes ? SHAPES[i] : MORE[i - n_shapes];
        for (int S = 1; S <= 19; S += 6) {
            gcase k;
            if (gcase_make(&k, S, sh[0], sh[1], sh[2], sh[3], 300 + (uint32_t)i) != 0) {
                check_fail(__FILE__, __LINE__, "out of memory");
                return;
            }
            gemm_call g = gcase_call(&k, 0, S, i % 2);
            gemm_run(&g);
            int bad = 0;
            for (int s = 0; s < S; s++)
                for (int p = 0; p < k.P; p++)
                    for (int n = 0; n < k.N; n++) {
                        const float want = documented_sum(&k, s, p, n, i % 2);
                        bad += memcmp(&want, &k.c[s * k.out_n + k.c_off[p] + n], sizeof want) != 0;
                    }
            CHECK_MSG(!bad, "P %d T %d C %d N %d, %d samples: %d outputs not in the documented "
                      "order", sh[0], sh[1], sh[2], sh[3], S, bad);
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
