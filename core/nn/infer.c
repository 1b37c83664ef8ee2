/* Eval-mode network plans on the fixed-order product (infer.h). */
#include "infer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "activation.h"
#include "batchnorm.h"
#include "gemm.h"

/* Samples a plan pushes through its layers at once: its buffers' size, whatever the
 * batch. A chunk's activations stay within the caches; the results do not depend on it. */
#define PLAN_CHUNK 16

typedef enum { STEP_PRODUCT, STEP_OPS, STEP_SIGMOID, STEP_PERMUTE } step_kind;

typedef struct {
    step_kind kind;
    size_t in_n, out_n;          /* floats per sample */
    int n_calls;                 /* product: one call per output phase */
    gemm_call *calls;            /* M, a, c set at run time */
    int channels;                /* ops: the channel of value i is i % channels */
    int n_ops;
    gemm_op ops[GEMM_MAX_OPS];
    const int *perm;             /* permute: out[i] = in[perm[i]] */
} step;

struct net_plan {
    int n_steps;
    step steps[NET_MAX_LAYERS + 2];
    size_t in_n, out_n, max_n;
    float *buf[2];               /* PLAN_CHUNK * max_n floats each */
    float *zeros;                /* max_n zeros: the padding a tap reads */
    void **allocs;               /* everything above and in the steps */
    int n_allocs, cap_allocs;
};

int net_plan_supported(const net_def *n) {
    for (int i = 0; i < n->n_layers; i++) {
        const layer *L = &n->layers[i];
        if (L->kind == LAYER_TCN || L->kind == LAYER_LSTM) return 0;
        /* every transposed geometry anodm builds has dilation 1; the phases assume it */
        if ((L->kind == LAYER_CONVT2D || L->kind == LAYER_CONVT1D) &&
            (L->geom.dil_h != 1 || L->geom.dil_w != 1))
            return 0;
    }
    return 1;
}

/* n zeroed elements of size bytes, owned by the plan; NULL when out of memory. */
static void *plan_alloc(net_plan *p, size_t n, size_t size) {
    if (p->n_allocs == p->cap_allocs) {
        int cap = p->cap_allocs ? 2 * p->cap_allocs : 32;
        void **a = realloc(p->allocs, (size_t)cap * sizeof *a);
        if (!a) return NULL;
        p->allocs = a;
        p->cap_allocs = cap;
    }
    void *m = calloc(n ? n : 1, size);
    if (m) p->allocs[p->n_allocs++] = m;
    return m;
}

void net_plan_free(net_plan *p) {
    if (!p) return;
    for (int i = 0; i < p->n_allocs; i++) free(p->allocs[i]);
    free(p->allocs);
    free(p);
}

/* Activations are stored channels-last; only a shape with several channels and several
 * positions is laid out differently from the net's (C, H, W). */
static int reordered(shape3 s) { return s.c > 1 && s.h * s.w > 1; }

/* Where value (c, position q) of shape s lies in the net's layout and in the plan's. */
static size_t chw_at(shape3 s, size_t c, size_t q) { return c * (size_t)s.h * s.w + q; }
static size_t hwc_at(shape3 s, size_t c, size_t q) { return q * (size_t)s.c + c; }

static step *add_step(net_plan *p, step_kind kind, size_t in_n, size_t out_n) {
    step *s = &p->steps[p->n_steps++];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->in_n = in_n;
    s->out_n = out_n;
    if (out_n > p->max_n) p->max_n = out_n;
    return s;
}

/* A permutation step out[i] = in[perm[i]], unless perm is the identity; -1 when out of
 * memory. */
static int add_permute(net_plan *p, int *perm, size_t n) {
    size_t i = 0;
    while (i < n && perm[i] == (int)i) i++;
    if (i == n) return 0;
    add_step(p, STEP_PERMUTE, n, n)->perm = perm;
    return 0;
}

/* The net's layout of `from` to the plan's of `to` (dir 0), the plan's to the net's
 * (dir 1), or a reshape between the plan's layouts of two shapes of one size (dir 2). */
static int add_layout(net_plan *p, shape3 from, shape3 to, int dir) {
    const size_t n = shape_size(to), HW = (size_t)to.h * to.w, fHW = (size_t)from.h * from.w;
    int *perm = plan_alloc(p, n, sizeof *perm);
    if (!perm) return -1;
    for (size_t c = 0; c < (size_t)to.c; c++)
        for (size_t q = 0; q < HW; q++) {
            size_t f = chw_at(to, c, q);   /* the value's place in the net's flat order */
            if (dir == 0) perm[hwc_at(to, c, q)] = (int)f;
            else if (dir == 1) perm[f] = (int)hwc_at(to, c, q);
            else perm[hwc_at(to, c, q)] = (int)hwc_at(from, f / fHW, f % fHW);
        }
    return add_permute(p, perm, n);
}

/* v (n floats) in order (d[k] = v[order[k]]; NULL: as it is), zero-padded to
 * gemm_padded_n(n); NULL when out of memory. */
static float *padded_copy(net_plan *p, const float *v, int n, const int *order) {
    float *d = plan_alloc(p, (size_t)gemm_padded_n(n), sizeof *d);
    for (int k = 0; d && k < n; k++) d[k] = v[order ? order[k] : k];
    return d;
}

/* One phase of a product, appended to step s: P output positions of T taps of C inputs,
 * N columns; its offsets and packed weights allocated for the caller to fill (the
 * weights with pack_into); NULL when out of memory. */
static gemm_call *add_call(net_plan *p, step *s, int P, int T, int C, int N, const float *bias) {
    gemm_call *calls = plan_alloc(p, (size_t)s->n_calls + 1, sizeof *calls);
    if (!calls) return NULL;
    if (s->n_calls) memcpy(calls, s->calls, sizeof *calls * (size_t)s->n_calls);
    s->calls = calls;   /* the old array stays owned by the plan: a few bytes */
    gemm_call *g = &calls[s->n_calls++];
    memset(g, 0, sizeof *g);
    g->N = N;
    g->P = P;
    g->T = T;
    g->C = C;
    g->zeros = p->zeros;
    g->bias = bias;
    int *off = plan_alloc(p, (size_t)P * T + (size_t)P, sizeof *off);
    float *w = plan_alloc(p, gemm_packed_floats(T * C, N), sizeof *w);
    if (!off || !w) return NULL;
    g->a_off = off;
    g->c_off = off + (size_t)P * T;
    g->w = w;
    return g;
}

/* Pack kn (K x N) into g's weights and free it. */
static void pack_into(gemm_call *g, float *kn) {
    gemm_pack((float *)g->w, kn, g->T * g->C, g->N);
    free(kn);
}

/* A linear layer whose column k is its output order[k] (NULL: k). */
static int add_linear(net_plan *p, const layer *L, const float *w, const float *b,
                      const int *order) {
    const shape3 s = L->in;
    const int K = (int)shape_size(s), N = L->out.c;
    const size_t HW = (size_t)s.h * s.w;
    step *st = add_step(p, STEP_PRODUCT, (size_t)K, (size_t)N);
    const float *bias = padded_copy(p, b, N, order);
    gemm_call *g = bias ? add_call(p, st, 1, 1, K, N, bias) : NULL;
    float *kn = malloc(sizeof(float) * (size_t)K * N);
    if (!g || !kn) {
        free(kn);
        return -1;
    }
    /* Row k of the packed weights is the input the plan stores at k. */
    for (size_t c = 0; c < (size_t)s.c; c++)
        for (size_t q = 0; q < HW; q++)
            for (int n = 0; n < N; n++)
                kn[hwc_at(s, c, q) * N + n] = w[(size_t)(order ? order[n] : n) * K + chw_at(s, c, q)];
    pack_into(g, kn);
    return 0;
}

/* Offset of input position (y, x) of a [h, w, C] sample, or -1 outside it. */
static int input_at(int y, int x, int h, int w, int C) {
    return y < 0 || y >= h || x < 0 || x >= w ? -1 : (y * w + x) * C;
}

/* A convolution: one phase over every output position and every tap. */
static int add_conv(net_plan *p, const layer *L, const float *w, const float *b) {
    const conv_geom *g = &L->geom;
    const int P = g->out_h * g->out_w, T = g->k_h * g->k_w, C = g->in_c, N = g->out_c;
    step *st = add_step(p, STEP_PRODUCT, shape_size(L->in), shape_size(L->out));
    const float *bias = padded_copy(p, b, N, NULL);
    gemm_call *call = bias ? add_call(p, st, P, T, C, N, bias) : NULL;
    float *kn = malloc(sizeof(float) * (size_t)T * C * N);
    if (!call || !kn) {
        free(kn);
        return -1;
    }
    int *a_off = (int *)call->a_off, *c_off = (int *)call->c_off;
    for (int q = 0; q < P; q++) {
        const int oy = q / g->out_w, ox = q % g->out_w;
        c_off[q] = q * N;
        for (int t = 0; t < T; t++) {
            const int ki = t / g->k_w, kj = t % g->k_w;
            a_off[(size_t)q * T + t] = input_at(oy * g->stride_h - g->pad_top + ki * g->dil_h,
                                                ox * g->stride_w - g->pad_left + kj * g->dil_w,
                                                g->in_h, g->in_w, C);
        }
    }
    for (int t = 0; t < T; t++)
        for (int c = 0; c < C; c++)
            for (int f = 0; f < N; f++)
                kn[((size_t)t * C + c) * N + f] = w[(((size_t)f * C + c) * T) + t];
    pack_into(call, kn);
    return 0;
}

/* A transposed convolution, the adjoint of geometry g from its y side [out_h, out_w,
 * out_c] to its x side [in_h, in_w, in_c]: x position (iy, ix) gets tap (ki, kj) from y
 * position ((iy + pad_top - ki) / stride_h, ...) when that divides exactly, i.e. when ki
 * and iy + pad_top agree modulo the stride. So the positions fall into stride_h *
 * stride_w phases, each an ordinary convolution over its own taps. */
static int add_convt(net_plan *p, const layer *L, const float *w, const float *b) {
    const conv_geom *g = &L->geom;
    const int sh = g->stride_h, sw = g->stride_w, N = g->in_c, C = g->out_c;
    step *st = add_step(p, STEP_PRODUCT, shape_size(L->in), shape_size(L->out));
    const float *bias = padded_copy(p, b, N, NULL);
    if (!bias) return -1;
    for (int py = 0; py < sh; py++)
        for (int px = 0; px < sw; px++) {
            int P = 0, T = 0;
            for (int iy = 0; iy < g->in_h; iy++)
                for (int ix = 0; ix < g->in_w; ix++)
                    P += (iy + g->pad_top) % sh == py && (ix + g->pad_left) % sw == px;
            if (!P) continue;
            for (int ki = py; ki < g->k_h; ki += sh)
                for (int kj = px; kj < g->k_w; kj += sw) T++;
            gemm_call *call = add_call(p, st, P, T, C, N, bias);
            float *kn = malloc(sizeof(float) * ((size_t)T * C * N + 1));
            if (!call || !kn) {
                free(kn);
                return -1;
            }
            int *a_off = (int *)call->a_off, *c_off = (int *)call->c_off, q = 0;
            for (int iy = 0; iy < g->in_h; iy++)
                for (int ix = 0; ix < g->in_w; ix++) {
                    if ((iy + g->pad_top) % sh != py || (ix + g->pad_left) % sw != px) continue;
                    c_off[q] = (iy * g->in_w + ix) * N;
                    int t = 0;
                    for (int ki = py; ki < g->k_h; ki += sh)
                        for (int kj = px; kj < g->k_w; kj += sw) {
                            const int dy = iy + g->pad_top - ki, dx = ix + g->pad_left - kj;
                            a_off[(size_t)q * T + t++] =
                                dy < 0 || dx < 0 ? -1
                                                 : input_at(dy / sh, dx / sw, g->out_h, g->out_w, C);
                        }
                    q++;
                }
            int t = 0;
            for (int ki = py; ki < g->k_h; ki += sh)
                for (int kj = px; kj < g->k_w; kj += sw, t++)
                    for (int f = 0; f < C; f++)
                        for (int c = 0; c < N; c++)
                            kn[((size_t)t * C + f) * N + c] =
                                w[(((size_t)f * N + c) * g->k_h + ki) * g->k_w + kj];
            pack_into(call, kn);
        }
    return 0;
}

/* An element-wise op on `channels` channels: into the product just planned (its
 * epilogue), or a step of its own; -1 when out of memory. */
static int add_op(net_plan *p, gemm_op op, int channels, size_t n, int fuse) {
    step *last = p->n_steps ? &p->steps[p->n_steps - 1] : NULL;
    if (fuse && last && last->kind == STEP_PRODUCT && last->calls[0].n_ops < GEMM_MAX_OPS) {
        for (int i = 0; i < last->n_calls; i++) last->calls[i].ops[last->calls[i].n_ops++] = op;
        return 0;
    }
    if (!(fuse && last && last->kind == STEP_OPS && last->n_ops < GEMM_MAX_OPS)) {
        last = add_step(p, STEP_OPS, n, n);
        last->channels = channels;
    }
    last->ops[last->n_ops++] = op;
    return 0;
}

/* bn in eval mode, as batchnorm_forward computes it: (v - mean) * (rstd * gamma) + beta;
 * its channel k is the net's channel order[k] (NULL: k). */
static int add_bn(net_plan *p, const layer *L, const float *w, const float *b, int fuse,
                  const int *order) {
    const int C = L->in.c;
    const float *run = b + C;
    gemm_op op = {.kind = GEMM_AFFINE};
    float *m = plan_alloc(p, 3 * (size_t)gemm_padded_n(C), sizeof *m);
    if (!m) return -1;
    float *scale = m + gemm_padded_n(C), *shift = scale + gemm_padded_n(C);
    for (int k = 0; k < C; k++) {
        const int c = order ? order[k] : k;
        m[k] = run[c];
        scale[k] = (float)(1.0 / sqrt((double)run[C + c] + BN_EPS)) * w[c];
        shift[k] = b[c];
    }
    op.mean = m;
    op.scale = scale;
    op.shift = shift;
    return add_op(p, op, C, shape_size(L->in), fuse);
}

/* The order in which the linear layer n->layers[i] is to store its outputs. When the
 * layers after it act on each output alone (relu, bn, dropout) up to a reshape that gives
 * the outputs channels and positions, it stores them straight in the plan's
 * channels-last layout of the reshape's output, its column k being the net's output
 * order[k], and the reshape, at *reshape, costs nothing; otherwise order is NULL (the
 * net's order). -1 when out of memory. */
static int linear_order(net_plan *p, const net_def *n, int i, const int **order, int *reshape) {
    int j = i + 1;
    while (j < n->n_layers && (n->layers[j].kind == LAYER_RELU ||
                               n->layers[j].kind == LAYER_BATCHNORM ||
                               n->layers[j].kind == LAYER_DROPOUT))
        j++;
    *order = NULL;
    *reshape = -1;
    if (j == n->n_layers || n->layers[j].kind != LAYER_RESHAPE || !reordered(n->layers[j].out))
        return 0;
    const shape3 to = n->layers[j].out;
    const size_t HW = (size_t)to.h * to.w;
    int *perm = plan_alloc(p, shape_size(to), sizeof *perm);
    if (!perm) return -1;
    for (size_t c = 0; c < (size_t)to.c; c++)
        for (size_t q = 0; q < HW; q++) perm[hwc_at(to, c, q)] = (int)chw_at(to, c, q);
    *order = perm;
    *reshape = j;
    return 0;
}

net_plan *net_plan_create(const net_def *n, const float *params, char *err, size_t errlen) {
    if (!net_plan_supported(n)) {
        snprintf(err, errlen, "no inference plan for a net with tcn or lstm layers");
        return NULL;
    }
    net_plan *p = calloc(1, sizeof *p);
    if (!p) goto oom;
    p->in_n = p->max_n = shape_size(n->in);
    p->out_n = shape_size(n->out);
    if (n->max_sample_act > p->max_n) p->max_n = n->max_sample_act;
    if (!(p->zeros = plan_alloc(p, p->max_n, sizeof(float)))) goto oom;
    if (reordered(n->in) && add_layout(p, n->in, n->in, 0)) goto oom;
    int fuse = 0;   /* the last step's output is the current activation */
    const int *order = NULL;   /* the plan's order of a linear layer's outputs (linear_order) */
    int folded = -1;           /* the reshape that order has done */
    for (int i = 0; i < n->n_layers; i++) {
        const layer *L = &n->layers[i];
        const float *w = params + L->param_off, *b = w + L->n_weight;
        int rc = 0;
        switch (L->kind) {
        case LAYER_LINEAR:
            rc = linear_order(p, n, i, &order, &folded) || add_linear(p, L, w, b, order);
            break;
        case LAYER_CONV2D:
        case LAYER_CONV1D: rc = add_conv(p, L, w, b); break;
        case LAYER_CONVT2D:
        case LAYER_CONVT1D: rc = add_convt(p, L, w, b); break;
        case LAYER_RELU:
            rc = add_op(p, (gemm_op){.kind = GEMM_RELU}, L->in.c, shape_size(L->in), fuse);
            break;
        case LAYER_BATCHNORM: rc = add_bn(p, L, w, b, fuse, order); break;
        case LAYER_SIGMOID:
            add_step(p, STEP_SIGMOID, shape_size(L->in), shape_size(L->in));
            break;
        case LAYER_RESHAPE:
            if (i == folded) order = NULL;
            else if (reordered(L->in) || reordered(L->out)) rc = add_layout(p, L->in, L->out, 2);
            break;
        case LAYER_DROPOUT: break;   /* eval mode: the identity */
        case LAYER_TCN:
        case LAYER_LSTM: break;      /* refused above */
        }
        if (rc) goto oom;
        /* ops fuse onto the product or ops just planned while its columns are still the
         * activation's channels: not across a reshape */
        if (L->kind != LAYER_DROPOUT) fuse = L->kind != LAYER_RESHAPE;
    }
    if (reordered(n->out) && add_layout(p, n->out, n->out, 1)) goto oom;
    for (int k = 0; k < 2; k++)
        if (!(p->buf[k] = plan_alloc(p, PLAN_CHUNK * p->max_n, sizeof(float)))) goto oom;
    return p;
oom:
    net_plan_free(p);
    snprintf(err, errlen, "out of memory for the network's inference plan");
    return NULL;
}

static void run_ops(const step *s, const float *in, float *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const size_t c = i % (size_t)s->channels;
        float v = in[i];
        for (int k = 0; k < s->n_ops; k++) {
            const gemm_op *o = &s->ops[k];
            v = o->kind == GEMM_RELU ? (v > 0.0f ? v : 0.0f)
                                     : (v - o->mean[c]) * o->scale[c] + o->shift[c];
        }
        out[i] = v;
    }
}

static void run_step(step *s, const float *in, float *out, int B) {
    switch (s->kind) {
    case STEP_PRODUCT:
        for (int i = 0; i < s->n_calls; i++) {
            gemm_call *g = &s->calls[i];
            g->M = B * g->P;
            g->a = in;
            g->a_stride = s->in_n;
            g->c = out;
            g->c_stride = s->out_n;
            gemm_run(g);
        }
        break;
    case STEP_OPS: run_ops(s, in, out, (size_t)B * s->out_n); break;
    case STEP_SIGMOID: sigmoid_forward(out, in, (size_t)B * s->out_n); break;
    case STEP_PERMUTE:
        for (int b = 0; b < B; b++)
            for (size_t i = 0; i < s->out_n; i++)
                out[b * s->out_n + i] = in[b * s->in_n + (size_t)s->perm[i]];
        break;
    }
}

void net_plan_forward(net_plan *p, const float *in, int B, float *out) {
    for (int at = 0; at < B; at += PLAN_CHUNK) {
        const int n = B - at < PLAN_CHUNK ? B - at : PLAN_CHUNK;
        const float *x = in + (size_t)at * p->in_n;
        for (int i = 0; i < p->n_steps; i++) {
            float *y = p->buf[i % 2];
            run_step(&p->steps[i], x, y, n);
            x = y;
        }
        memcpy(out + (size_t)at * p->out_n, x, sizeof(float) * (size_t)n * p->out_n);
    }
}
