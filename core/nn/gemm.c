/* The fixed-order product (gemm.h): a 4-row by 32-column register tile for N >= 16, a
 * 16-lane dot product per output for narrower products; the last rows in a tile of
 * their own size, which sums each of them exactly as a full tile would. */
#include "gemm.h"
#include "simd.h"

#include <string.h>

#define VL 16   /* floats in a vector */
#define MR 4    /* rows in a tile */

typedef float vf __attribute__((vector_size(4 * VL)));
typedef int vi __attribute__((vector_size(4 * VL)));
typedef float vf8 __attribute__((vector_size(2 * VL)));
typedef float vf4 __attribute__((vector_size(VL)));
typedef float vf_u __attribute__((vector_size(4 * VL), aligned(4), may_alias));
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
    for (int n0 = 0; n0 < pn; n0 += 2 * VL) {
        const int width = pn - n0 < 2 * VL ? pn - n0 : 2 * VL;
        float *panel = dst + (size_t)n0 * K;
        for (int k = 0; k < K; k++)
            for (int j = 0; j < width; j++)
                panel[(size_t)k * width + j] = n0 + j < N ? b[(size_t)k * N + n0 + j] : 0.0f;
    }
}

/* Row m's sample start in A, its taps' offsets and where its outputs go. */
typedef struct { const float *a; const int *off; float *c; } row_at;

/* A row's sample and position in it, stepped along rather than divided out. */
typedef struct { int b, p; } row_pos;

HOT_INLINE row_at row_of(const gemm_call *g, row_pos at) {
    return (row_at){g->a + (size_t)at.b * g->a_stride, g->a_off + (size_t)at.p * g->T,
                    g->c + (size_t)at.b * g->c_stride + g->c_off[at.p]};
}

HOT_INLINE row_pos next_row(const gemm_call *g, row_pos at) {
    return ++at.p == g->P ? (row_pos){at.b + 1, 0} : at;
}

HOT_INLINE const float *tap(const gemm_call *g, row_at r, int t) {
    return r.off[t] >= 0 ? r.a + r.off[t] : g->zeros;
}

HOT_INLINE void epilogue_v(const gemm_call *g, vf *v, int n0) {
    const vf zero = {0};
    for (int i = 0; i < g->n_ops; i++) {
        const gemm_op *o = &g->ops[i];
        if (o->kind == GEMM_RELU)
            *v = (vf)((vi)*v & (*v > zero));
        else
            *v = (*v - VLOAD(o->mean + n0)) * VLOAD(o->scale + n0) + VLOAD(o->shift + n0);
    }
}

HOT_INLINE float epilogue_s(const gemm_call *g, float v, int n) {
    for (int i = 0; i < g->n_ops; i++) {
        const gemm_op *o = &g->ops[i];
        v = o->kind == GEMM_RELU ? (v > 0.0f ? v : 0.0f)
                                 : (v - o->mean[n]) * o->scale[n] + o->shift[n];
    }
    return v;
}

/* Columns n0.. of one vector v into row output c: the real ones only. */
HOT_INLINE void store_v(const gemm_call *g, float *c, vf *v, int n0) {
    epilogue_v(g, v, n0);
    if (g->N - n0 >= VL) {
        VSTORE(c + n0, *v);
    } else {
        float tmp[VL];
        VSTORE(tmp, *v);
        memcpy(c + n0, tmp, sizeof(float) * (size_t)(g->N - n0));
    }
}

/* Rows r[0 .. mr-1] by columns n0 .. n0 + nv * 16; mr and nv are constants at each
 * call, so each (mr, nv) is a loop of its own without the others' work. */
HOT_INLINE void wide_tile(const gemm_call *g, const row_at *r, int mr, int n0, int nv) {
    const size_t ld = (size_t)nv * VL;   /* the panel's width (gemm_pack) */
    const vf zero = {0};
    const vf b0 = g->bias ? VLOAD(g->bias + n0) : zero;
    const vf b1 = g->bias && nv == 2 ? VLOAD(g->bias + n0 + VL) : zero;
    vf c00 = b0, c01 = b1, c10 = b0, c11 = b1, c20 = b0, c21 = b1, c30 = b0, c31 = b1;
    const float *w = g->w + (size_t)n0 * g->T * g->C;
    for (int t = 0; t < g->T; t++) {
        const float *x0 = tap(g, r[0], t), *x1 = mr > 1 ? tap(g, r[1], t) : x0,
                    *x2 = mr > 2 ? tap(g, r[2], t) : x0, *x3 = mr > 3 ? tap(g, r[3], t) : x0;
        for (int c = 0; c < g->C; c++, w += ld) {
            const vf w0 = VLOAD(w);
            c00 += x0[c] * w0;
            if (mr > 1) c10 += x1[c] * w0;
            if (mr > 2) c20 += x2[c] * w0;
            if (mr > 3) c30 += x3[c] * w0;
            if (nv == 2) {
                const vf w1 = VLOAD(w + VL);
                c01 += x0[c] * w1;
                if (mr > 1) c11 += x1[c] * w1;
                if (mr > 2) c21 += x2[c] * w1;
                if (mr > 3) c31 += x3[c] * w1;
            }
        }
    }
    vf acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}};  /* a copy: the
                                                  accumulators themselves stay in registers */
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nv; j++) store_v(g, r[i].c, &acc[i][j], n0 + j * VL);
}

/* Lane i plus lane i + 8, then i + 4, i + 2, i + 1: by halves of the vector. */
HOT_INLINE float lanes_sum(const vf *v) {
    vf8 lo, hi;
    memcpy(&lo, v, sizeof lo);
    memcpy(&hi, (const char *)v + sizeof lo, sizeof hi);
    const vf8 s8 = lo + hi;
    vf4 l4, h4;
    memcpy(&l4, &s8, sizeof l4);
    memcpy(&h4, (const char *)&s8 + sizeof l4, sizeof h4);
    const vf4 s4 = l4 + h4;
    return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

/* Fewer than 16 columns: per output, 16 lanes over each run's whole vectors, a tail sum
 * over the rest of the run, the lanes added in a fixed tree; rows r[0 .. mr-1] at once,
 * for independent chains of additions. */
HOT_INLINE void narrow_tile(const gemm_call *g, const row_at *r, int mr) {
    const size_t K = (size_t)g->T * g->C;
    for (int n = 0; n < g->N; n++) {
        const float *w = g->w + (size_t)n * K;
        vf a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        float t0 = 0.0f, t1 = 0.0f, t2 = 0.0f, t3 = 0.0f;
        for (int t = 0; t < g->T; t++, w += g->C) {
            const float *x0 = tap(g, r[0], t), *x1 = mr > 1 ? tap(g, r[1], t) : x0,
                        *x2 = mr > 2 ? tap(g, r[2], t) : x0, *x3 = mr > 3 ? tap(g, r[3], t) : x0;
            int c = 0;
            for (; c + VL <= g->C; c += VL) {
                const vf wv = VLOAD(w + c);
                a0 += VLOAD(x0 + c) * wv;
                if (mr > 1) a1 += VLOAD(x1 + c) * wv;
                if (mr > 2) a2 += VLOAD(x2 + c) * wv;
                if (mr > 3) a3 += VLOAD(x3 + c) * wv;
            }
            for (; c < g->C; c++) {
                t0 += x0[c] * w[c];
                if (mr > 1) t1 += x1[c] * w[c];
                if (mr > 2) t2 += x2[c] * w[c];
                if (mr > 3) t3 += x3[c] * w[c];
            }
        }
        const vf acc[MR] = {a0, a1, a2, a3};   /* a copy, as in wide_tile */
        const float tail[MR] = {t0, t1, t2, t3}, bias = g->bias ? g->bias[n] : 0.0f;
        for (int i = 0; i < mr; i++)
            r[i].c[n] = epilogue_s(g, bias + (lanes_sum(&acc[i]) + tail[i]), n);
    }
}

/* The tile of mr rows from at, and columns n0.. (all of them when narrow); returns the
 * row after it. */
HOT_INLINE row_pos tile(const gemm_call *g, row_pos at, int mr, int n0, int nv) {
    row_at r[MR];
    for (int i = 0; i < mr; i++, at = next_row(g, at)) r[i] = row_of(g, at);
    if (g->N < VL) narrow_tile(g, r, mr);
    else if (nv == 2) wide_tile(g, r, mr, n0, 2);
    else wide_tile(g, r, mr, n0, 1);
    return at;
}

HOT_LOOP void gemm_run(const gemm_call *g) {
    /* Columns outer: a 32-column panel of B stays in cache while every row passes it. */
    const int step = g->N < VL ? g->N : 2 * VL;
    for (int n0 = 0; n0 < g->N; n0 += step) {
        const int nv = g->N - n0 > VL ? 2 : 1;
        row_pos at = {0, 0};
        int m0 = 0;
        for (; m0 + MR <= g->M; m0 += MR) at = tile(g, at, MR, n0, nv);
        switch (g->M - m0) {   /* the last rows: a tile of their own size */
        case 3: tile(g, at, 3, n0, nv); break;
        case 2: tile(g, at, 2, n0, nv); break;
        case 1: tile(g, at, 1, n0, nv); break;
        }
    }
}
