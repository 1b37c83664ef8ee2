/* TCN residual blocks and the skip-connection stack on core/nn/conv.h's causal Conv1d. */
#include "tcn.h"

#include <string.h>

#include "activation.h"
#include "conv.h"
#include "dropout.h"

/* Geometries: the two dilated causal convs and the 1x1 residual conv. */
static conv_geom geom_conv1(const tcn_block *k) {
    return conv_geom_1d(k->in_c, k->len, k->filters, k->kernel, 1, k->dilation,
                        k->dilation * (k->kernel - 1), 0);
}

static conv_geom geom_conv2(const tcn_block *k) {
    return conv_geom_1d(k->filters, k->len, k->filters, k->kernel, 1, k->dilation,
                        k->dilation * (k->kernel - 1), 0);
}

static conv_geom geom_down(const tcn_block *k) {
    return conv_geom_1d(k->in_c, k->len, k->filters, 1, 1, 1, 0, 0);
}

static int has_down(const tcn_block *k) { return k->in_c != k->filters; }

/* Pointers into one block's parameter run (down.* NULL without a residual conv). */
typedef struct { const float *w1, *b1, *w2, *b2, *wd, *bd; } block_params;

static block_params split_params(const float *p, const tcn_block *k) {
    const size_t F = (size_t)k->filters, C = (size_t)k->in_c, K = (size_t)k->kernel;
    block_params bp;
    bp.w1 = p;
    bp.b1 = bp.w1 + F * C * K;
    bp.w2 = bp.b1 + F;
    bp.b2 = bp.w2 + F * F * K;
    bp.wd = has_down(k) ? bp.b2 + F : NULL;
    bp.bd = has_down(k) ? bp.wd + F * C : NULL;
    return bp;
}

/* Pointers into one block's activations: h1, h2, out [B, F, T]; masks m1, m2 [B, F]. */
typedef struct { float *h1, *h2, *out, *m1, *m2; } block_acts;

static block_acts split_acts(const float *act, const tcn_block *k, int B) {
    const size_t n = (size_t)B * k->filters * k->len;
    block_acts a;
    a.h1 = (float *)act;   /* const only in backward, which never writes through these */
    a.h2 = a.h1 + n;
    a.out = a.h2 + n;
    a.m1 = a.out + n;
    a.m2 = a.m1 + (size_t)B * k->filters;
    return a;
}

int tcn_config_valid(const tcn_config *cfg) {
    if (cfg->in_c <= 0 || cfg->len <= 0 || cfg->filters <= 0 || cfg->kernel <= 0 ||
        cfg->n_blocks < 1 || cfg->n_blocks > TCN_MAX_BLOCKS || !(cfg->dropout >= 0.0f) ||
        !(cfg->dropout < 1.0f))
        return 0;
    for (int k = 0; k < cfg->n_blocks; k++)
        if (cfg->dilations[k] <= 0) return 0;
    return 1;
}

tcn_block tcn_block_of(const tcn_config *cfg, int k) {
    tcn_block blk = {
        .in_c = k == 0 ? cfg->in_c : cfg->filters, .filters = cfg->filters,
        .kernel = cfg->kernel, .dilation = cfg->dilations[k], .len = cfg->len,
    };
    return blk;
}

size_t tcn_block_param_count(const tcn_block *k) {
    const size_t F = (size_t)k->filters, C = (size_t)k->in_c, K = (size_t)k->kernel;
    return F * C * K + F + F * F * K + F + (has_down(k) ? F * C + F : 0);
}

size_t tcn_block_act_floats(const tcn_block *k, int B) {
    return (size_t)B * k->filters * (3 * (size_t)k->len + 2);
}

/* Largest conv scratch of the block's convolutions. */
static size_t conv_scratch(const tcn_block *k, int B) {
    conv_geom g1 = geom_conv1(k), g2 = geom_conv2(k), gd = geom_down(k);
    size_t w = conv_work_floats(&g1, B), w2 = conv_work_floats(&g2, B);
    if (w2 > w) w = w2;
    if (has_down(k) && conv_work_floats(&gd, B) > w) w = conv_work_floats(&gd, B);
    return w;
}

size_t tcn_block_work_floats(const tcn_block *k, int B) {
    return 3 * (size_t)B * k->filters * k->len + conv_scratch(k, B);
}

const float *tcn_block_forward(float *act, float *skip, const float *x, const float *params,
                               const tcn_block *k, int B, float p, rng_t *rng,
                               float *work) {
    const size_t F = (size_t)k->filters, T = (size_t)k->len, N = (size_t)B * F;
    conv_geom g1 = geom_conv1(k), g2 = geom_conv2(k), gd = geom_down(k);
    block_params bp = split_params(params, k);
    block_acts a = split_acts(act, k, B);
    float *d1 = work, *cw = work + N * T;
    if (rng) {
        dropout_mask(a.m1, N, p, rng);
        dropout_mask(a.m2, N, p, rng);
    } else {   /* evaluation: keep-all masks make backward mode-agnostic */
        for (size_t i = 0; i < N; i++) a.m1[i] = a.m2[i] = 1.0f;
    }
    conv_forward(a.h1, x, bp.w1, bp.b1, &g1, B, cw);
    relu_forward(a.h1, a.h1, N * T);
    dropout_forward(d1, a.h1, a.m1, N, T);
    conv_forward(a.h2, d1, bp.w2, bp.b2, &g2, B, cw);
    relu_forward(a.h2, a.h2, N * T);
    if (has_down(k))
        conv_forward(a.out, x, bp.wd, bp.bd, &gd, B, cw);
    else
        memcpy(a.out, x, sizeof(float) * N * T);
    for (size_t c = 0; c < N; c++)
        for (size_t t = 0; t < T; t++) {
            float branch = a.h2[c * T + t] * a.m2[c], v = a.out[c * T + t] + branch;
            a.out[c * T + t] = v > 0.0f ? v : 0.0f;
            if (skip) skip[c * T + t] += branch;
        }
    return a.out;
}

/* d <- d * mask[c] * (h > 0): back through Drop(ReLU(.)), h the ReLU output. */
static void drop_relu_grad(float *d, const float *mask, const float *h, size_t N, size_t T) {
    for (size_t c = 0; c < N; c++)
        for (size_t t = 0; t < T; t++)
            d[c * T + t] = h[c * T + t] > 0.0f ? d[c * T + t] * mask[c] : 0.0f;
}

void tcn_block_backward(float *dx, float *dparams, const float *dout, const float *dskip,
                        const float *x, const float *params, const float *act,
                        const tcn_block *k, int B, float *work) {
    const size_t F = (size_t)k->filters, T = (size_t)k->len, N = (size_t)B * F, n = N * T;
    conv_geom g1 = geom_conv1(k), g2 = geom_conv2(k), gd = geom_down(k);
    block_params bp = split_params(params, k);
    block_acts a = split_acts(act, k, B);
    float *dsum = work, *d1 = work + n, *dd1 = work + 2 * n, *cw = work + 3 * n;
    /* Gradient slots in dparams mirror the parameter layout. */
    float *dw1 = NULL, *db1 = NULL, *dw2 = NULL, *db2 = NULL, *dwd = NULL, *dbd = NULL;
    if (dparams) {
        dw1 = dparams + (bp.w1 - params);
        db1 = dparams + (bp.b1 - params);
        dw2 = dparams + (bp.w2 - params);
        db2 = dparams + (bp.b2 - params);
        if (has_down(k)) {
            dwd = dparams + (bp.wd - params);
            dbd = dparams + (bp.bd - params);
        }
    }
    /* out = ReLU(res + branch): the sum's gradient goes to both paths. */
    if (dout) {
        for (size_t i = 0; i < n; i++) dsum[i] = a.out[i] > 0.0f ? dout[i] : 0.0f;
        if (has_down(k))
            conv_backward(dx, dwd, dbd, dsum, x, bp.wd, &gd, B, cw);
        else if (dx)
            for (size_t i = 0; i < n; i++) dx[i] += dsum[i];
    } else {
        memset(dsum, 0, sizeof(float) * n);
    }
    if (dskip)
        for (size_t i = 0; i < n; i++) dsum[i] += dskip[i];
    /* branch = Drop(ReLU(conv2(d1))), d1 = Drop(h1) recomputed from the kept h1, m1. */
    drop_relu_grad(dsum, a.m2, a.h2, N, T);
    dropout_forward(d1, a.h1, a.m1, N, T);
    memset(dd1, 0, sizeof(float) * n);
    conv_backward(dd1, dw2, db2, dsum, d1, bp.w2, &g2, B, cw);
    drop_relu_grad(dd1, a.m1, a.h1, N, T);
    conv_backward(dx, dw1, db1, dd1, x, bp.w1, &g1, B, cw);
}

size_t tcn_param_count(const tcn_config *cfg) {
    size_t n = 0;
    for (int k = 0; k < cfg->n_blocks; k++) {
        tcn_block blk = tcn_block_of(cfg, k);
        n += tcn_block_param_count(&blk);
    }
    return n;
}

size_t tcn_act_floats(const tcn_config *cfg, int B) {
    size_t n = 0;
    for (int k = 0; k < cfg->n_blocks; k++) {
        tcn_block blk = tcn_block_of(cfg, k);
        n += tcn_block_act_floats(&blk, B);
    }
    return n;
}

size_t tcn_work_floats(const tcn_config *cfg, int B) {
    size_t w = 0;
    for (int k = 0; k < cfg->n_blocks; k++) {
        tcn_block blk = tcn_block_of(cfg, k);
        if (tcn_block_work_floats(&blk, B) > w) w = tcn_block_work_floats(&blk, B);
    }
    /* the skip sum (forward) or dskip and two block-gradient buffers (backward) */
    return 3 * (size_t)B * cfg->filters * cfg->len + w;
}

void tcn_forward(float *out, float *act, const float *x, const float *params,
                 const tcn_config *cfg, int B, rng_t *rng, float *work) {
    const size_t N = (size_t)B * cfg->filters, T = (size_t)cfg->len;
    float *skip = work, *bw = work + 3 * N * T;
    const float *in = x;
    memset(skip, 0, sizeof(float) * N * T);
    for (int k = 0; k < cfg->n_blocks; k++) {
        tcn_block blk = tcn_block_of(cfg, k);
        in = tcn_block_forward(act, skip, in, params, &blk, B, cfg->dropout, rng, bw);
        act += tcn_block_act_floats(&blk, B);
        params += tcn_block_param_count(&blk);
    }
    for (size_t c = 0; c < N; c++) out[c] = skip[c * T + T - 1];
}

void tcn_backward(float *dx, float *dparams, const float *dout, const float *x,
                  const float *params, const float *act, const tcn_config *cfg, int B,
                  float *work) {
    const size_t N = (size_t)B * cfg->filters, T = (size_t)cfg->len;
    float *dskip = work, *dnext = work + N * T, *dcur = work + 2 * N * T, *bw = work + 3 * N * T;
    const float *acts[TCN_MAX_BLOCKS], *prms[TCN_MAX_BLOCKS];
    float *dprms[TCN_MAX_BLOCKS];
    tcn_block blks[TCN_MAX_BLOCKS];
    for (int k = 0; k < cfg->n_blocks; k++) {
        blks[k] = tcn_block_of(cfg, k);
        acts[k] = k ? acts[k - 1] + tcn_block_act_floats(&blks[k - 1], B) : act;
        prms[k] = k ? prms[k - 1] + tcn_block_param_count(&blks[k - 1]) : params;
        dprms[k] = dparams ? dparams + (prms[k] - params) : NULL;
    }
    /* Only the last time step of the skip sum reaches the output. */
    memset(dskip, 0, sizeof(float) * N * T);
    for (size_t c = 0; c < N; c++) dskip[c * T + T - 1] = dout[c];
    /* The last block's output is unused (the skip sum replaces it): no gradient flows in. */
    const float *dblock = NULL;
    for (int k = cfg->n_blocks - 1; k >= 0; k--) {
        const float *xk = k ? split_acts(acts[k - 1], &blks[k - 1], B).out : x;
        float *dxk = dx;
        if (k) {
            dxk = dcur;
            memset(dxk, 0, sizeof(float) * N * T);
        }
        tcn_block_backward(dxk, dprms[k], dblock, dskip, xk, prms[k], acts[k], &blks[k], B, bw);
        /* dxk becomes the next (earlier) block's dout; swap the two buffers. */
        dblock = dxk;
        dcur = dnext;
        dnext = dxk;
    }
}
