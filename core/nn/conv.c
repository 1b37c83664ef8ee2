/* Convolutions on one batched im2col + sgemm engine (see conv.h for the geometry). */
#include "conv.h"
#include "simd.h"

#include <cblas.h>
#include <string.h>

/* Sizes come from model files, so they are computed in 64 bits and any size outside
 * [1, CONV_MAX_DIM] becomes 0, which conv_geom_valid refuses: no overflow, no division
 * by a zero stride, and no window that does not fit being rounded up to one output. */
static int dim_or_zero(long long v) { return v >= 1 && v <= CONV_MAX_DIM ? (int)v : 0; }

static int out_size(long long in, long long pads, long long k, long long dil, long long stride) {
    long long span = in + pads - dil * (k - 1) - 1;
    return span < 0 || stride < 1 ? 0 : dim_or_zero(span / stride + 1);
}

conv_geom conv_geom_2d(int in_c, int in_h, int in_w, int out_c, int k, int stride, int pad) {
    conv_geom g = {
        .in_c = in_c, .in_h = in_h, .in_w = in_w, .out_c = out_c,
        .out_h = out_size(in_h, 2LL * pad, k, 1, stride),
        .out_w = out_size(in_w, 2LL * pad, k, 1, stride),
        .k_h = k, .k_w = k, .stride_h = stride, .stride_w = stride,
        .pad_top = pad, .pad_left = pad, .dil_h = 1, .dil_w = 1,
    };
    return g;
}

conv_geom conv_geom_transpose_2d(int in_c, int in_h, int in_w, int out_c, int k, int stride,
                                 int pad, int out_pad) {
    conv_geom g = {
        .in_c = out_c,
        .in_h = dim_or_zero((in_h - 1LL) * stride - 2LL * pad + k + out_pad),
        .in_w = dim_or_zero((in_w - 1LL) * stride - 2LL * pad + k + out_pad),
        .out_c = in_c, .out_h = in_h, .out_w = in_w,
        .k_h = k, .k_w = k, .stride_h = stride, .stride_w = stride,
        .pad_top = pad, .pad_left = pad, .dil_h = 1, .dil_w = 1,
    };
    return g;
}

conv_geom conv_geom_1d(int in_c, int len, int out_c, int k, int stride, int dilation,
                       int pad_left, int pad_right) {
    conv_geom g = {
        .in_c = in_c, .in_h = 1, .in_w = len, .out_c = out_c, .out_h = 1,
        .out_w = out_size(len, (long long)pad_left + pad_right, k, dilation, stride),
        .k_h = 1, .k_w = k, .stride_h = 1, .stride_w = stride,
        .pad_top = 0, .pad_left = pad_left, .dil_h = 1, .dil_w = dilation,
    };
    return g;
}

conv_geom conv_geom_transpose_1d(int in_c, int len, int out_c, int k, int stride, int pad,
                                 int out_pad) {
    conv_geom g = {
        .in_c = out_c, .in_h = 1,
        .in_w = dim_or_zero((len - 1LL) * stride - 2LL * pad + k + out_pad),
        .out_c = in_c, .out_h = 1, .out_w = len,
        .k_h = 1, .k_w = k, .stride_h = 1, .stride_w = stride,
        .pad_top = 0, .pad_left = pad, .dil_h = 1, .dil_w = 1,
    };
    return g;
}

int conv_geom_valid(const conv_geom *g) {
    return g->in_c > 0 && g->in_h > 0 && g->in_w > 0 && g->out_c > 0 && g->out_h > 0 &&
           g->out_w > 0 && g->k_h > 0 && g->k_w > 0 && g->stride_h > 0 && g->stride_w > 0 &&
           g->pad_top >= 0 && g->pad_left >= 0 && g->dil_h > 0 && g->dil_w > 0;
}

static size_t col_rows(const conv_geom *g) { return (size_t)g->in_c * g->k_h * g->k_w; }
static size_t col_cols(const conv_geom *g, int B) { return (size_t)B * g->out_h * g->out_w; }

/* A 1-D stride-1 convolution (every conv of a TCN) needs no unrolling: tap k of the
 * kernel reads x shifted by k * dilation - pad_left, so y_b += W_k x_b(shifted) is one
 * sgemm per sample and tap, straight on the [B, C, T] arrays, with W_k = weight[:, :, k]
 * gathered into the scratch space. That skips im2col's K-fold copy of the batch, a copy
 * far larger than the caches, which had cost as much time as the products themselves. */
static int is_shift_conv(const conv_geom *g) {
    return g->in_h == 1 && g->out_h == 1 && g->k_h == 1 && g->stride_w == 1;
}

static size_t tap_floats(const conv_geom *g) {
    return (size_t)g->k_w * g->out_c * g->in_c;
}

size_t conv_transpose_work_floats(const conv_geom *g, int B) {
    return (col_rows(g) + (size_t)g->out_c) * col_cols(g, B);
}

size_t conv_work_floats(const conv_geom *g, int B) {
    if (is_shift_conv(g)) return 2 * tap_floats(g);   /* the taps and their gradient */
    return conv_transpose_work_floats(g, B);
}

/* Unroll x into col [C*KH*KW, B*OH*OW]: row (c, ki, kj), column (b, oy, ox). With
 * accumulate set, runs the adjoint instead: col is added back into x (col2im). */
HOT_LOOP static void unroll(float *col, float *x, const conv_geom *g, int B, int accumulate) {
    const int OW = g->out_w, OHW = g->out_h * g->out_w;
    const size_t N = col_cols(g, B), plane = (size_t)g->in_h * g->in_w;
    for (int c = 0; c < g->in_c; c++)
        for (int ki = 0; ki < g->k_h; ki++)
            for (int kj = 0; kj < g->k_w; kj++) {
                float *row = col + (((size_t)c * g->k_h + ki) * g->k_w + kj) * N;
                /* Output columns ox whose input column ix lies inside the image. */
                int off_w = kj * g->dil_w - g->pad_left;
                int ox_lo = off_w >= 0 ? 0 : (-off_w + g->stride_w - 1) / g->stride_w;
                int ox_hi = (g->in_w - 1 - off_w) < 0 ? 0 : (g->in_w - 1 - off_w) / g->stride_w + 1;
                if (ox_hi > OW) ox_hi = OW;
                if (ox_lo > ox_hi) ox_lo = ox_hi;
                for (int b = 0; b < B; b++) {
                    float *xp = x + ((size_t)b * g->in_c + c) * plane;
                    for (int oy = 0; oy < g->out_h; oy++) {
                        float *r = row + (size_t)b * OHW + (size_t)oy * OW;
                        int iy = oy * g->stride_h - g->pad_top + ki * g->dil_h;
                        if (iy < 0 || iy >= g->in_h) {
                            if (!accumulate) memset(r, 0, sizeof(float) * OW);
                            continue;
                        }
                        /* ix = ox * stride + off_w, inside [0, in_w) for ox in [lo, hi) */
                        float *xr = xp + (size_t)iy * g->in_w;
                        if (accumulate) {
                            for (int ox = ox_lo; ox < ox_hi; ox++)
                                xr[ox * g->stride_w + off_w] += r[ox];
                        } else {
                            for (int ox = 0; ox < ox_lo; ox++) r[ox] = 0.0f;
                            for (int ox = ox_lo; ox < ox_hi; ox++)
                                r[ox] = xr[ox * g->stride_w + off_w];
                            for (int ox = ox_hi; ox < OW; ox++) r[ox] = 0.0f;
                        }
                    }
                }
            }
}

static void im2col(float *col, const float *x, const conv_geom *g, int B) {
    unroll(col, (float *)x, g, B, 0); /* x is only read when accumulate == 0 */
}

static void col2im_add(float *x, const float *col, const conv_geom *g, int B) {
    unroll((float *)col, x, g, B, 1); /* col is only read when accumulate == 1 */
}

/* [B, C, P] <-> [C, B*P]: the gemm works channel-major over the whole batch. */
static void batch_to_channel_major(float *dst, const float *src, int B, int C, size_t P) {
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            memcpy(dst + ((size_t)c * B + b) * P, src + ((size_t)b * C + c) * P, sizeof(float) * P);
}

HOT_LOOP static void channel_major_add_to_batch(float *dst, const float *src, int B, int C, size_t P) {
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            float *d = dst + ((size_t)b * C + c) * P;
            const float *s = src + ((size_t)c * B + b) * P;
            for (size_t p = 0; p < P; p++) d[p] += s[p];
        }
}

HOT_LOOP static void fill_bias(float *out, const float *bias, int B, int C, size_t P) {
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            float *o = out + ((size_t)b * C + c) * P;
            float v = bias ? bias[c] : 0.0f;
            for (size_t p = 0; p < P; p++) o[p] = v;
        }
}

HOT_LOOP static void add_bias_grad(float *dbias, const float *d, int B, int C, size_t P) {
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            const float *s = d + ((size_t)b * C + c) * P;
            float acc = 0.0f;
            for (size_t p = 0; p < P; p++) acc += s[p];
            dbias[c] += acc;
        }
}

/* taps[k][f][c] = weight[f][c][k], and its adjoint (added back into weight's layout). */
static void gather_taps(float *taps, const float *weight, const conv_geom *g) {
    const int F = g->out_c, C = g->in_c, K = g->k_w;
    for (int k = 0; k < K; k++)
        for (int f = 0; f < F; f++)
            for (int c = 0; c < C; c++)
                taps[((size_t)k * F + f) * C + c] = weight[((size_t)f * C + c) * K + k];
}

static void scatter_add_taps(float *weight, const float *taps, const conv_geom *g) {
    const int F = g->out_c, C = g->in_c, K = g->k_w;
    for (int k = 0; k < K; k++)
        for (int f = 0; f < F; f++)
            for (int c = 0; c < C; c++)
                weight[((size_t)f * C + c) * K + k] += taps[((size_t)k * F + f) * C + c];
}

/* Output columns [lo, hi) that tap k reads from inside x, at x column t + off. */
typedef struct { int lo, hi, off; } tap_span;

static tap_span span_of_tap(const conv_geom *g, int k) {
    tap_span s = {.off = k * g->dil_w - g->pad_left};
    s.lo = s.off >= 0 ? 0 : -s.off;
    s.hi = g->in_w - s.off < g->out_w ? g->in_w - s.off : g->out_w;
    if (s.hi < s.lo) s.hi = s.lo;
    return s;
}

static void shift_conv_forward(float *y, const float *x, const float *weight, const float *bias,
                               const conv_geom *g, int B, float *work) {
    const int F = g->out_c, C = g->in_c, T = g->in_w, OW = g->out_w;
    gather_taps(work, weight, g);
    fill_bias(y, bias, B, F, (size_t)OW);
    for (int k = 0; k < g->k_w; k++) {
        tap_span s = span_of_tap(g, k);
        if (s.hi == s.lo) continue;
        const float *w_k = work + (size_t)k * F * C;
        for (int b = 0; b < B; b++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, F, s.hi - s.lo, C, 1.0f,
                        w_k, C, x + (size_t)b * C * T + s.lo + s.off, T, 1.0f,
                        y + (size_t)b * F * OW + s.lo, OW);
    }
}

static void shift_conv_backward(float *dx, float *dweight, const float *dy, const float *x,
                                const float *weight, const conv_geom *g, int B, float *work) {
    const int F = g->out_c, C = g->in_c, T = g->in_w, OW = g->out_w;
    float *dtaps = work, *taps = work + tap_floats(g);
    if (dweight) memset(dtaps, 0, sizeof(float) * tap_floats(g));
    if (dx) gather_taps(taps, weight, g);
    for (int k = 0; k < g->k_w; k++) {
        tap_span s = span_of_tap(g, k);
        if (s.hi == s.lo) continue;
        const size_t tap = (size_t)k * F * C;
        for (int b = 0; b < B; b++) {
            const float *dy_b = dy + (size_t)b * F * OW + s.lo;
            const size_t x_at = (size_t)b * C * T + s.lo + s.off;
            if (dweight)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, F, C, s.hi - s.lo, 1.0f,
                            dy_b, OW, x + x_at, T, 1.0f, dtaps + tap, C);
            if (dx)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, s.hi - s.lo, F, 1.0f,
                            taps + tap, C, dy_b, OW, 1.0f, dx + x_at, T);
        }
    }
    if (dweight) scatter_add_taps(dweight, dtaps, g);
}

void conv_forward(float *y, const float *x, const float *weight, const float *bias,
                  const conv_geom *g, int B, float *work) {
    if (is_shift_conv(g)) {
        shift_conv_forward(y, x, weight, bias, g, B, work);
        return;
    }
    const size_t K = col_rows(g), N = col_cols(g, B), P = (size_t)g->out_h * g->out_w;
    float *col = work, *tmp = work + K * N;
    im2col(col, x, g, B);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->out_c, (int)N, (int)K, 1.0f,
                weight, (int)K, col, (int)N, 0.0f, tmp, (int)N);
    fill_bias(y, bias, B, g->out_c, P);
    channel_major_add_to_batch(y, tmp, B, g->out_c, P);
}

void conv_backward(float *dx, float *dweight, float *dbias, const float *dy, const float *x,
                   const float *weight, const conv_geom *g, int B, float *work) {
    const size_t K = col_rows(g), N = col_cols(g, B), P = (size_t)g->out_h * g->out_w;
    float *col = work, *dtmp = work + K * N;
    if (dbias) add_bias_grad(dbias, dy, B, g->out_c, P);
    if (!dweight && !dx) return;
    if (is_shift_conv(g)) {
        shift_conv_backward(dx, dweight, dy, x, weight, g, B, work);
        return;
    }
    batch_to_channel_major(dtmp, dy, B, g->out_c, P);
    if (dweight) {
        im2col(col, x, g, B);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->out_c, (int)K, (int)N, 1.0f,
                    dtmp, (int)N, col, (int)N, 1.0f, dweight, (int)K);
    }
    if (dx) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)N, g->out_c, 1.0f,
                    weight, (int)K, dtmp, (int)N, 0.0f, col, (int)N);
        col2im_add(dx, col, g, B);
    }
}

void conv_transpose_forward(float *x, const float *y, const float *weight, const float *bias,
                            const conv_geom *g, int B, float *work) {
    const size_t K = col_rows(g), N = col_cols(g, B), P = (size_t)g->out_h * g->out_w;
    float *col = work, *ytmp = work + K * N;
    batch_to_channel_major(ytmp, y, B, g->out_c, P);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)N, g->out_c, 1.0f,
                weight, (int)K, ytmp, (int)N, 0.0f, col, (int)N);
    fill_bias(x, bias, B, g->in_c, (size_t)g->in_h * g->in_w);
    col2im_add(x, col, g, B);
}

void conv_transpose_backward(float *dy, float *dweight, float *dbias, const float *dx,
                             const float *y, const float *weight, const conv_geom *g, int B,
                             float *work) {
    const size_t K = col_rows(g), N = col_cols(g, B), P = (size_t)g->out_h * g->out_w;
    float *col = work, *tmp = work + K * N;
    if (dbias) add_bias_grad(dbias, dx, B, g->in_c, (size_t)g->in_h * g->in_w);
    if (!dweight && !dy) return;
    im2col(col, dx, g, B);
    if (dweight) {
        batch_to_channel_major(tmp, y, B, g->out_c, P);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->out_c, (int)K, (int)N, 1.0f,
                    tmp, (int)N, col, (int)N, 1.0f, dweight, (int)K);
    }
    if (dy) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->out_c, (int)N, (int)K, 1.0f,
                    weight, (int)K, col, (int)N, 0.0f, tmp, (int)N);
        channel_major_add_to_batch(dy, tmp, B, g->out_c, P);
    }
}
