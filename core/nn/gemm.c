/* The fixed-order product (gemm.h): a 4-row by 32-column register tile for N >= 16, a
 * 16-lane dot product per output, 8 rows at a time, for narrower products; the last rows
 * in a tile of their own size, which sums each of them exactly as a full tile would. A
 * tile's rows are positions of one sample, or for P = 1 samples.
 *
 * The vectors are of 8 floats (a narrow sum's 16 lanes are two of them). GCC splits a
 * vector wider than the CPU's registers through the stack: with 16-float vectors the
 * AVX2 clone ran 30 times slower than the AVX-512 one. And on AMD Zen 4 a broadcast into
 * a 512-bit register, or into registers 16-31 (EVEX-encoded), occupies a floating-point
 * pipe that a 256-bit one into registers 0-15 does not, so 256-bit vectors in
 * AVX-512VL's 32 registers (the 4 x 32 tile's sums are 16 of them; the broadcasts must
 * land below, run_samples) make the most multiply-adds a cycle there; Intel's AVX-512
 * parts would make more with 512-bit ones. */
#include "gemm.h"
#include "simd.h"

#include <string.h>

#define VL 16   /* floats in a padded run (gemm_padded_n) and lanes of a narrow sum */
#define W 8     /* floats in a vector */
#define MR 4    /* rows in a wide tile */
#define MRN 8   /* rows in a narrow tile: 16 vectors of sums */
#define NV 4    /* vectors in a tile's row: a 32-column panel */

typedef float vf __attribute__((vector_size(4 * W)));
typedef int vi __attribute__((vector_size(4 * W)));
typedef float vf4 __attribute__((vector_size(16)));
typedef float vf_u __attribute__((vector_size(4 * W), aligned(4), may_alias));
#define VLOAD(p) ((vf)*(const vf_u *)(p))
#define VSTORE(p, v) (*(vf_u *)(p) = (v))

int gemm_padded_n(int N) { return (N + VL - 1) / VL * VL; }

size_t gemm_packed_floats(int K, int N) {
    return (size_t)K * (N >= VL ? (size_t)gemm_padded_n(N) : (size_t)N);
}

void gemm_pack(float *dst, const float *b, int K, int N) {
    if (N < VL) {
        for (int n = 0; n < N; n++)
            for (int k = 0; k < K; k++) dst[(size_t)n * K + k] = b[(size_t)k * N + n];
        return;
    }
    /* Panels of 32 columns (the last one 16 if that covers it), each K rows contiguous,
     * so that a tile streams its panel from one place. */
    const int pn = gemm_padded_n(N);
    for (int n0 = 0; n0 < pn; n0 += NV * W) {
        const int width = pn - n0 < NV * W ? pn - n0 : NV * W;
        float *panel = dst + (size_t)n0 * K;
        for (int k = 0; k < K; k++)
            for (int j = 0; j < width; j++)
                panel[(size_t)k * width + j] = n0 + j < N ? b[(size_t)k * N + n0 + j] : 0.0f;
    }
}

/* A tile's rows i = 0, 1, ..: for P > 1, positions p + i of one sample whose start is a
 * in A and c in C, their tap offsets one after the other from off = a_off + p * T and
 * their output offsets from c_off + p; for P = 1 (p1), one row per sample, sample i's
 * start at a + i * a_stride and c + i * c_stride, all with the offsets off = a_off and
 * c_off[0]. Four pointers and the layer's strides, not three pointers a row: the
 * registers go to the tile's sums (the one-output layer of an image decoder, where a row
 * is a few taps of 32 floats, ran 25% faster for it). */
typedef struct { const float *a; float *c; const int *off, *c_off; } rows;

/* Row i's run for tap t; p1 is a constant at each call. */
HOT_INLINE const float *tap(const gemm_call *g, rows r, int p1, int i, int t) {
    const int off = p1 ? r.off[t] : r.off[i * g->T + t];
    return off < 0 ? g->zeros : r.a + (p1 ? i * g->a_stride : 0) + off;
}

/* Where row i's outputs go. */
HOT_INLINE float *out_of(const gemm_call *g, rows r, int p1, int i) {
    return p1 ? r.c + i * g->c_stride + r.c_off[0] : r.c + r.c_off[i];
}

HOT_INLINE float epilogue_s(const gemm_call *g, float v, int n) {
    for (int i = 0; i < g->n_ops; i++) {
        const gemm_op *o = &g->ops[i];
        v = o->kind == GEMM_RELU ? (v > 0.0f ? v : 0.0f)
                                 : (v - o->mean[n]) * o->scale[n] + o->shift[n];
    }
    return v;
}

/* Rows 0 .. mr-1 of r by columns n0 .. n0 + nv * 8; p1, mr, nv and one (nonzero: runs of
 * one float, as in a first convolution over one channel) are constants at each call, so
 * each is a loop of its own without the others' work, its accumulators in registers. */
HOT_INLINE void wide_tile(const gemm_call *g, rows r, int p1, int mr, int n0, int nv, int one) {
    const size_t ld = (size_t)nv * W;   /* the panel's width (gemm_pack) */
    vf acc[MR][NV];
#pragma GCC unroll 4
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int j = 0; j < NV; j++)
            acc[i][j] = g->bias && j < nv ? VLOAD(g->bias + n0 + j * W) : (vf){0};
    const float *w = g->w + (size_t)n0 * g->T * g->C;
    for (int t = 0; t < g->T; t++) {
        const float *x[MR];
#pragma GCC unroll 4
        for (int i = 0; i < MR; i++) x[i] = i < mr ? tap(g, r, p1, i, t) : NULL;
        for (int c = 0; c < (one ? 1 : g->C); c++, w += ld)
#pragma GCC unroll 4
            for (int j = 0; j < nv; j++) {
                const vf wj = VLOAD(w + j * W);
#pragma GCC unroll 4
                for (int i = 0; i < mr; i++) acc[i][j] += x[i][c] * wj;
            }
    }
    /* The epilogue op by op over the whole tile, then the real columns stored. */
    for (int k = 0; k < g->n_ops; k++) {
        const gemm_op *o = &g->ops[k];
#pragma GCC unroll 4
        for (int j = 0; j < nv; j++) {
            const vf zero = {0}, mean = o->kind == GEMM_AFFINE ? VLOAD(o->mean + n0 + j * W) : zero,
                     scale = o->kind == GEMM_AFFINE ? VLOAD(o->scale + n0 + j * W) : zero,
                     shift = o->kind == GEMM_AFFINE ? VLOAD(o->shift + n0 + j * W) : zero;
#pragma GCC unroll 4
            for (int i = 0; i < mr; i++)
                acc[i][j] = o->kind == GEMM_RELU ? (vf)((vi)acc[i][j] & (acc[i][j] > zero))
                                                 : (acc[i][j] - mean) * scale + shift;
        }
    }
    const int real = g->N - n0;   /* columns of the panel in the product */
#pragma GCC unroll 4
    for (int i = 0; i < mr; i++) {
        float *c = out_of(g, r, p1, i) + n0;
#pragma GCC unroll 4
        for (int j = 0; j < nv; j++) {
            if (real >= (j + 1) * W) {
                VSTORE(c + j * W, acc[i][j]);
            } else if (real > j * W) {
                float tmp[W];
                VSTORE(tmp, acc[i][j]);
                memcpy(c + j * W, tmp, sizeof(float) * (size_t)(real - j * W));
            }
        }
    }
}

/* Lane i plus lane i + 8 (s8 = lanes 0-7 plus lanes 8-15), then i + 4, i + 2, i + 1. */
HOT_INLINE float lanes_sum(const vf *s8) {
    vf4 l4, h4;
    memcpy(&l4, s8, sizeof l4);
    memcpy(&h4, (const char *)s8 + sizeof l4, sizeof h4);
    const vf4 s4 = l4 + h4;
    return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

/* Fewer than 16 columns: per output, 16 lanes over each run's whole 16-float pieces (two
 * vectors, lanes 0-7 and 8-15), a tail sum over the rest of the run, the lanes added in
 * a fixed tree; rows 0 .. mr-1 of r (up to 8) at once, for independent chains of
 * additions. */
HOT_INLINE void narrow_tile(const gemm_call *g, rows r, int p1, int mr) {
    const size_t K = (size_t)g->T * g->C;
    for (int n = 0; n < g->N; n++) {
        const float *w = g->w + (size_t)n * K;
        vf lo[MRN], hi[MRN];
        float tail[MRN];
#pragma GCC unroll 8
        for (int i = 0; i < mr; i++) lo[i] = hi[i] = (vf){0}, tail[i] = 0.0f;
        for (int t = 0; t < g->T; t++, w += g->C) {
            const float *x[MRN];
#pragma GCC unroll 8
            for (int i = 0; i < mr; i++) x[i] = tap(g, r, p1, i, t);
            int c = 0;
            for (; c + VL <= g->C; c += VL) {
                const vf wl = VLOAD(w + c), wh = VLOAD(w + c + W);
#pragma GCC unroll 8
                for (int i = 0; i < mr; i++) {
                    lo[i] += VLOAD(x[i] + c) * wl;
                    hi[i] += VLOAD(x[i] + c + W) * wh;
                }
            }
            for (; c < g->C; c++)
#pragma GCC unroll 8
                for (int i = 0; i < mr; i++) tail[i] += x[i][c] * w[c];
        }
        const float bias = g->bias ? g->bias[n] : 0.0f;
#pragma GCC unroll 8
        for (int i = 0; i < mr; i++) {
            const vf s8 = lo[i] + hi[i];
            out_of(g, r, p1, i)[n] = epilogue_s(g, bias + (lanes_sum(&s8) + tail[i]), n);
        }
    }
}

/* The tile of rows 0 .. mr-1 of r, columns n0.. (all of them when narrow). */
HOT_INLINE void tile(const gemm_call *g, rows r, int p1, int mr, int n0, int nv, int narrow) {
    if (narrow) narrow_tile(g, r, p1, mr);
    else if (nv == NV && g->C == 1) wide_tile(g, r, p1, mr, n0, NV, 1);
    else if (nv == NV) wide_tile(g, r, p1, mr, n0, NV, 0);
    else wide_tile(g, r, p1, mr, n0, NV / 2, 0);
}

/* r from its row k on. */
HOT_INLINE rows rows_from(const gemm_call *g, rows r, int p1, int k) {
    if (p1) r.a += k * g->a_stride, r.c += k * g->c_stride;
    else r.off += k * g->T, r.c_off += k;
    return r;
}

/* m rows from r in whole tiles, the last ones in tiles of their own size, which sum each
 * of them exactly as a whole tile would. */
HOT_INLINE void span(const gemm_call *g, rows r, int p1, int m, int n0, int nv, int narrow) {
    const int full = narrow ? MRN : MR;
    for (; m >= full; m -= full, r = rows_from(g, r, p1, full)) tile(g, r, p1, full, n0, nv, narrow);
    if (narrow && m >= MR) {
        tile(g, r, p1, MR, n0, nv, narrow);
        m -= MR;
        r = rows_from(g, r, p1, MR);
    }
    switch (m) {
    case 3: tile(g, r, p1, 3, n0, nv, narrow); break;
    case 2: tile(g, r, p1, 2, n0, nv, narrow); break;
    case 1: tile(g, r, p1, 1, n0, nv, narrow); break;
    }
}

/* Every row from n0 on, in tiles across samples for P = 1 (p1), within each sample
 * otherwise; p1 and narrow are constants at each call. */
HOT_INLINE void all_rows(const gemm_call *g, int p1, int n0, int nv, int narrow) {
    const rows all = {g->a, g->c, g->a_off, g->c_off};
    if (p1) {
        span(g, all, 1, g->M, n0, nv, narrow);
        return;
    }
    for (int m = 0; m < g->M; m += g->P) {
        const rows r = {all.a + (size_t)(m / g->P) * g->a_stride,
                        all.c + (size_t)(m / g->P) * g->c_stride, all.off, all.c_off};
        span(g, r, 0, g->M - m < g->P ? g->M - m : g->P, n0, nv, narrow);
    }
}

/* Every tile of one layout of rows (p1 a constant). */
HOT_INLINE void run(const gemm_call *g, int p1) {
    if (g->N < VL) {
        all_rows(g, p1, 0, 0, 1);
        return;
    }
    /* Columns outer: a 32-column panel of B stays in cache while every row passes it. */
    for (int n0 = 0; n0 < g->N; n0 += NV * W) all_rows(g, p1, n0, g->N - n0 > VL ? NV : NV / 2, 0);
}

/* The two layouts in two functions, whose registers GCC allocates each on its own: in one
 * function with every tile, GCC 12 put the linear layers' broadcasts in registers 16-31,
 * and on Zen 4 a broadcast into those (EVEX-encoded) takes a floating-point pipe that one
 * into registers 0-15 does not: the linear layers ran 20% slower. */
static HOT_LOOP_VL void run_samples(const gemm_call *g) { run(g, 1); }
static HOT_LOOP_VL void run_positions(const gemm_call *g) { run(g, 0); }

void gemm_run(const gemm_call *g) {
    if (g->P == 1) run_samples(g);
    else run_positions(g);
}
