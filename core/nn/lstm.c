/* LSTM on OpenBLAS: batched input projection, per-step recurrent sgemm, BPTT. */
#include "lstm.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* Cache layout (n = B*T rows): gates [n, 4H] activated (i, f, g, o); cell [n, H];
 * tanh(cell) [n, H]; then backward scratch: dgates [n, 4H] (pre-activation gradients),
 * dh and dc [B, H] (the gradients carried from step t+1 to step t). */
typedef struct { float *gates, *cell, *tcell, *dgates, *dh, *dc; } lstm_cache;

static lstm_cache cache_split(float *cache, int B, int T, int H) {
    const size_t n = (size_t)B * T;
    lstm_cache c;
    c.gates = cache;
    c.cell = c.gates + n * 4 * H;
    c.tcell = c.cell + n * H;
    c.dgates = c.tcell + n * H;
    c.dh = c.dgates + n * 4 * H;
    c.dc = c.dh + (size_t)B * H;
    return c;
}

size_t lstm_cache_floats(int B, int T, int H) {
    return (size_t)B * T * 10 * H + (size_t)2 * B * H;
}

static float sigmoidf(float x) {
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);   /* never exponentiate a large positive number */
    return e / (1.0f + e);
}

void lstm_forward(float *out, float *cache, const float *x, const float *w_ih,
                  const float *w_hh, const float *b_ih, const float *b_hh, int B, int T,
                  int In, int H) {
    const int G = 4 * H;
    const size_t n = (size_t)B * T;
    lstm_cache c = cache_split(cache, B, T, H);
    for (size_t r = 0; r < n; r++)
        for (int j = 0; j < G; j++)
            c.gates[r * G + j] = (b_ih ? b_ih[j] : 0.0f) + (b_hh ? b_hh[j] : 0.0f);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, G, In, 1.0f, x, In, w_ih, In,
                1.0f, c.gates, G);
    for (int t = 0; t < T; t++) {
        /* Rows of step t are b*T + t: strided views with leading dimension T * width. */
        if (t > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, G, H, 1.0f,
                        out + (size_t)(t - 1) * H, T * H, w_hh, H, 1.0f,
                        c.gates + (size_t)t * G, T * G);
        for (int b = 0; b < B; b++) {
            const size_t r = (size_t)b * T + t;
            float *g = c.gates + r * G;
            for (int j = 0; j < H; j++) {
                float ig = sigmoidf(g[j]), fg = sigmoidf(g[H + j]);
                float gg = tanhf(g[2 * H + j]), og = sigmoidf(g[3 * H + j]);
                float cprev = t > 0 ? c.cell[(r - 1) * H + j] : 0.0f;
                float cell = fg * cprev + ig * gg;
                g[j] = ig;
                g[H + j] = fg;
                g[2 * H + j] = gg;
                g[3 * H + j] = og;
                c.cell[r * H + j] = cell;
                c.tcell[r * H + j] = tanhf(cell);
                out[r * H + j] = og * c.tcell[r * H + j];
            }
        }
    }
}

void lstm_backward(float *dx, float *dw_ih, float *dw_hh, float *db_ih, float *db_hh,
                   const float *dout, const float *x, const float *out, const float *w_ih,
                   const float *w_hh, float *cache, int B, int T, int In, int H) {
    const int G = 4 * H;
    const size_t n = (size_t)B * T;
    lstm_cache c = cache_split(cache, B, T, H);
    memset(c.dh, 0, sizeof(float) * (size_t)B * H);
    memset(c.dc, 0, sizeof(float) * (size_t)B * H);
    for (int t = T - 1; t >= 0; t--) {
        for (int b = 0; b < B; b++) {
            const size_t r = (size_t)b * T + t;
            const float *g = c.gates + r * G;
            float *dg = c.dgates + r * G;
            for (int j = 0; j < H; j++) {
                float ig = g[j], fg = g[H + j], gg = g[2 * H + j], og = g[3 * H + j];
                float tc = c.tcell[r * H + j];
                float cprev = t > 0 ? c.cell[(r - 1) * H + j] : 0.0f;
                float dh = dout[r * H + j] + c.dh[(size_t)b * H + j];
                float dc = c.dc[(size_t)b * H + j] + dh * og * (1.0f - tc * tc);
                dg[j] = dc * gg * ig * (1.0f - ig);
                dg[H + j] = dc * cprev * fg * (1.0f - fg);
                dg[2 * H + j] = dc * ig * (1.0f - gg * gg);
                dg[3 * H + j] = dh * tc * og * (1.0f - og);
                c.dc[(size_t)b * H + j] = dc * fg;
            }
        }
        /* dh_{t-1} = dgates_t W_hh (h_{-1} is the fixed zero state: nothing to carry). */
        if (t > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, H, G, 1.0f,
                        c.dgates + (size_t)t * G, T * G, w_hh, H, 0.0f, c.dh, H);
    }
    if (dw_ih)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, G, In, (int)n, 1.0f, c.dgates, G,
                    x, In, 1.0f, dw_ih, In);
    /* dW_hh = sum over t >= 1 of dgates_t^T h_{t-1}: per sample, steps 1..T-1 against 0..T-2. */
    if (dw_hh && T > 1)
        for (int b = 0; b < B; b++)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, G, H, T - 1, 1.0f,
                        c.dgates + ((size_t)b * T + 1) * G, G, out + (size_t)b * T * H, H,
                        1.0f, dw_hh, H);
    /* Both biases enter every gate sum identically. */
    for (size_t r = 0; (db_ih || db_hh) && r < n; r++)
        for (int j = 0; j < G; j++) {
            if (db_ih) db_ih[j] += c.dgates[r * G + j];
            if (db_hh) db_hh[j] += c.dgates[r * G + j];
        }
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, In, G, 1.0f, c.dgates, G,
                    w_ih, In, 1.0f, dx, In);
}
