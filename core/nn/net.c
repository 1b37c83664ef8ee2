/* Sequential networks: spec parsing, shape inference, forward and backward dispatch. */
#include "net.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "activation.h"
#include "batchnorm.h"
#include "dropout.h"
#include "errmsg.h"
#include "linear.h"
#include "lstm.h"

#define MAX_ARGS (3 + TCN_MAX_BLOCKS)   /* tcn(F,K,R,D1..Dn) is the longest */
#define MAX_INNER ((size_t)1 << 24)     /* largest per-sample tensor a layer may hold */

size_t shape_size(shape3 s) { return (size_t)s.c * s.h * s.w; }

/* One token: a name and up to MAX_ARGS non-negative numbers ("causal" reads as -1). */
typedef struct {
    char name[32];
    int n_args;
    double args[MAX_ARGS];
} token;

static const char *next_token(const char *p, token *t, char *err, size_t errlen) {
    while (isspace((unsigned char)*p)) p++;
    if (!*p) return NULL;
    size_t len = 0;
    while (isalnum((unsigned char)*p) || *p == '_') {
        if (len + 1 >= sizeof t->name) break;
        t->name[len++] = (char)tolower((unsigned char)*p++);
    }
    t->name[len] = 0;
    t->n_args = 0;
    if (len == 0) {
        snprintf(err, errlen, "unexpected character '%c' in architecture", *p);
        return p;
    }
    if (*p == '(') {
        p++;
        for (;;) {
            while (isspace((unsigned char)*p)) p++;
            if (*p == ')') { p++; break; }
            if (t->n_args == MAX_ARGS) {
                snprintf(err, errlen, "%s: too many arguments", t->name);
                return p;
            }
            if (strncmp(p, "causal", 6) == 0) {
                t->args[t->n_args++] = -1;
                p += 6;
            } else {
                /* Plain decimals only: strtod alone would also take "1e3", "0x1p3", "inf". */
                char *end;
                double v = isdigit((unsigned char)*p) ? strtod(p, &end) : -1.0;
                if (v < 0 || (size_t)(end - p) != strspn(p, "0123456789.") || v > 1000000) {
                    snprintf(err, errlen, "%s: bad argument near \"%.10s\"", t->name, p);
                    return p;
                }
                t->args[t->n_args++] = v;
                p = end;
            }
            while (isspace((unsigned char)*p)) p++;
            if (*p == ',') p++;
            else if (*p != ')') {
                snprintf(err, errlen, "%s: expected ',' or ')'", t->name);
                return p;
            }
        }
    }
    return p;
}

static int want_args(const token *t, int lo, int hi, char *err, size_t errlen) {
    if (t->n_args < lo || t->n_args > hi) {
        snprintf(err, errlen, "%s takes %d to %d arguments, got %d", t->name, lo, hi, t->n_args);
        return 0;
    }
    return 1;
}

/* The arguments as integers into a; each but the one at index frac (-1: none) must be
 * whole. */
static int whole_args(const token *t, int frac, long *a, char *err, size_t errlen) {
    for (int i = 0; i < t->n_args; i++) {
        a[i] = (long)t->args[i];
        if (i != frac && (double)a[i] != t->args[i]) {
            snprintf(err, errlen, "%s: argument %d must be a whole number", t->name, i + 1);
            return 0;
        }
    }
    return 1;
}

static int want_sequence(const token *t, shape3 in, char *err, size_t errlen) {
    if (in.h != 1) {
        snprintf(err, errlen, "%s needs a (C,1,W) input, got %dx%dx%d", t->name, in.c, in.h,
                 in.w);
        return 0;
    }
    return 1;
}

static int add_conv(layer *L, conv_geom g, int transpose, shape3 in, char *err, size_t errlen) {
    if (!conv_geom_valid(&g)) {
        snprintf(err, errlen, "convolution does not fit its %dx%dx%d input", in.c, in.h, in.w);
        return 0;
    }
    L->geom = g;
    L->n_weight = (size_t)g.out_c * g.in_c * g.k_h * g.k_w;
    L->fan_in = (size_t)g.in_c * g.k_h * g.k_w;
    if (transpose) {
        L->n_bias = (size_t)g.in_c;
        L->out = (shape3){g.in_c, g.in_h, g.in_w};
    } else {
        L->n_bias = (size_t)g.out_c;
        L->out = (shape3){g.out_c, g.out_h, g.out_w};
    }
    return 1;
}

/* tcn(F,K,R,D1,...,Dn) on a (C,1,W) input. */
static int add_tcn(layer *L, const token *t, const long *a, shape3 in, char *err,
                   size_t errlen) {
    tcn_config *c = &L->tcn;
    if (!want_sequence(t, in, err, errlen)) return 0;
    *c = (tcn_config){.in_c = in.c, .len = in.w, .filters = (int)a[0], .kernel = (int)a[1],
                      .n_blocks = t->n_args - 3, .dropout = (float)t->args[2]};
    for (int k = 0; k < c->n_blocks; k++) c->dilations[k] = (int)a[3 + k];
    if (!tcn_config_valid(c)) {
        snprintf(err, errlen, "tcn needs filters, kernel and dilations >= 1 and a dropout "
                 "rate below 1");
        return 0;
    }
    if ((size_t)c->filters * c->len > MAX_INNER) {
        snprintf(err, errlen, "tcn: %d filters over %d steps is too large", c->filters, c->len);
        return 0;
    }
    L->out = (shape3){c->filters, 1, 1};
    L->n_weight = tcn_param_count(c);
    return 1;
}

/* lstm(H) on a (C,1,W) input: W steps of C features. */
static int add_lstm(layer *L, const token *t, const long *a, shape3 in, char *err,
                    size_t errlen) {
    if (!want_sequence(t, in, err, errlen)) return 0;
    if (a[0] < 1) { snprintf(err, errlen, "lstm needs at least 1 unit"); return 0; }
    if ((size_t)4 * a[0] * in.w > MAX_INNER) {
        snprintf(err, errlen, "lstm: %ld units over %d steps is too large", a[0], in.w);
        return 0;
    }
    const size_t H = (size_t)a[0];
    L->out = (shape3){(int)H, 1, 1};
    L->n_weight = 4 * H * (size_t)in.c + 4 * H * H;   /* W_ih, W_hh */
    L->n_bias = 8 * H;                                /* b_ih, b_hh */
    L->fan_in = H;
    return 1;
}

/* Every layer name, its kind, its argument count range and which argument (-1: none)
 * may be a fraction. */
static const struct { const char *name; layer_kind kind; int lo, hi, frac; } LAYER_NAMES[] = {
    {"linear", LAYER_LINEAR, 1, 1, -1},
    {"conv2d", LAYER_CONV2D, 4, 4, -1},
    {"convtranspose2d", LAYER_CONVT2D, 5, 5, -1},
    {"conv1d", LAYER_CONV1D, 5, 5, -1},
    {"convtranspose1d", LAYER_CONVT1D, 5, 5, -1},
    {"relu", LAYER_RELU, 0, 0, -1},
    {"sigmoid", LAYER_SIGMOID, 0, 0, -1},
    {"reshape", LAYER_RESHAPE, 3, 3, -1},
    {"bn", LAYER_BATCHNORM, 0, 0, -1},
    {"dropout", LAYER_DROPOUT, 1, 1, 0},
    {"spatialdropout", LAYER_DROPOUT, 1, 1, 0},
    {"tcn", LAYER_TCN, 4, 3 + TCN_MAX_BLOCKS, 2},
    {"lstm", LAYER_LSTM, 1, 1, -1},
};

/* Shape inference for one token; fills L->kind, out, geometry and parameter counts. */
static int build_layer(layer *L, const token *t, shape3 in, char *err, size_t errlen) {
    long a[MAX_ARGS];
    size_t k = 0, n_names = sizeof LAYER_NAMES / sizeof LAYER_NAMES[0];
    while (k < n_names && strcmp(LAYER_NAMES[k].name, t->name) != 0) k++;
    if (k == n_names) {
        snprintf(err, errlen, "unknown layer '%s'", t->name);
        return 0;
    }
    if (!want_args(t, LAYER_NAMES[k].lo, LAYER_NAMES[k].hi, err, errlen) ||
        !whole_args(t, LAYER_NAMES[k].frac, a, err, errlen))
        return 0;
    memset(L, 0, sizeof *L);
    L->kind = LAYER_NAMES[k].kind;
    L->in = in;
    L->out = in;
    if (L->kind >= LAYER_CONV2D && L->kind <= LAYER_CONVT1D && a[2] < 1) { /* stride */
        snprintf(err, errlen, "%s: stride must be at least 1", t->name);
        return 0;
    }
    switch (L->kind) {
    case LAYER_LINEAR:
        if (a[0] < 1) { snprintf(err, errlen, "linear needs at least 1 unit"); return 0; }
        L->out = (shape3){(int)a[0], 1, 1};
        L->n_weight = (size_t)a[0] * shape_size(in);
        L->n_bias = (size_t)a[0];
        L->fan_in = shape_size(in);
        return 1;
    case LAYER_CONV2D:
        return add_conv(L, conv_geom_2d(in.c, in.h, in.w, (int)a[0], (int)a[1], (int)a[2],
                                        (int)a[3]), 0, in, err, errlen);
    case LAYER_CONVT2D:
        return add_conv(L, conv_geom_transpose_2d(in.c, in.h, in.w, (int)a[0], (int)a[1],
                                                  (int)a[2], (int)a[3], (int)a[4]), 1, in, err, errlen);
    case LAYER_CONV1D: {
        if (!want_sequence(t, in, err, errlen)) return 0;
        int kern = (int)a[1], d = (int)a[3];
        long long causal = (long long)d * (kern - 1);
        if (causal > CONV_MAX_DIM) {
            snprintf(err, errlen, "conv1d: dilation %d x kernel %d is too large", d, kern);
            return 0;
        }
        int left = a[4] < 0 ? (int)causal : (int)a[4], right = a[4] < 0 ? 0 : (int)a[4];
        return add_conv(L, conv_geom_1d(in.c, in.w, (int)a[0], kern, (int)a[2], d, left, right),
                        0, in, err, errlen);
    }
    case LAYER_CONVT1D:
        if (!want_sequence(t, in, err, errlen)) return 0;
        return add_conv(L, conv_geom_transpose_1d(in.c, in.w, (int)a[0], (int)a[1], (int)a[2],
                                                  (int)a[3], (int)a[4]), 1, in, err, errlen);
    case LAYER_RELU:
    case LAYER_SIGMOID:
        return 1;
    case LAYER_RESHAPE: {
        shape3 s = {(int)a[0], (int)a[1], (int)a[2]};
        if (s.c < 1 || s.h < 1 || s.w < 1 || shape_size(s) != shape_size(in)) {
            snprintf(err, errlen, "reshape(%d,%d,%d) does not hold %zu values", s.c, s.h, s.w,
                     shape_size(in));
            return 0;
        }
        L->out = s;
        return 1;
    }
    case LAYER_BATCHNORM:
        L->n_weight = L->n_bias = (size_t)in.c;   /* gamma, beta */
        L->n_state = 2 * (size_t)in.c;            /* running mean, running variance */
        return 1;
    case LAYER_DROPOUT:
        if (!(t->args[0] >= 0.0 && t->args[0] < 1.0)) {
            snprintf(err, errlen, "%s rate must be in [0, 1), got %g", t->name, t->args[0]);
            return 0;
        }
        L->rate = (float)t->args[0];
        L->spatial = t->name[0] == 's';
        return 1;
    case LAYER_TCN:
        return add_tcn(L, t, a, in, err, errlen);
    case LAYER_LSTM:
        return add_lstm(L, t, a, in, err, errlen);
    }
    return 0;
}

int net_parse(net_def *n, const char *spec, shape3 in, char *err, size_t errlen) {
    memset(n, 0, sizeof *n);
    err[0] = 0;
    if (strlen(spec) >= NET_SPEC_MAX) {
        snprintf(err, errlen, "architecture longer than %d characters", NET_SPEC_MAX - 1);
        return -1;
    }
    /* Each factor and each partial product at most 2^24: shape_size cannot overflow. */
    if (in.c < 1 || in.h < 1 || in.w < 1 || in.c > CONV_MAX_DIM || in.h > CONV_MAX_DIM ||
        in.w > CONV_MAX_DIM || (size_t)in.c * in.h > (size_t)CONV_MAX_DIM ||
        (size_t)in.c * in.h * in.w > (size_t)CONV_MAX_DIM) {
        snprintf(err, errlen, "bad input shape %dx%dx%d", in.c, in.h, in.w);
        return -1;
    }
    snprintf(n->spec, sizeof n->spec, "%s", spec);
    n->in = in;
    shape3 cur = in;
    const char *p = spec;
    token t;
    while ((p = next_token(p, &t, err, errlen)) != NULL) {
        if (err[0]) return -1;
        if (n->n_layers == NET_MAX_LAYERS) {
            snprintf(err, errlen, "more than %d layers", NET_MAX_LAYERS);
            return -1;
        }
        layer *L = &n->layers[n->n_layers];
        if (!build_layer(L, &t, cur, err, errlen)) {
            /* Name the layer: "layer 3 (conv2d) on 32x1x16: ..." says where a spec stops
             * fitting its input. */
            char where[96];
            snprintf(where, sizeof where, "layer %d (%s) on %dx%dx%d", n->n_layers + 1, t.name,
                     cur.c, cur.h, cur.w);
            err_prefix(err, errlen, where);
            return -1;
        }
        if (shape_size(L->out) > MAX_INNER) {
            snprintf(err, errlen, "%s: activation of %zu values is too large", t.name,
                     shape_size(L->out));
            return -1;
        }
        L->param_off = n->n_params;
        n->n_params += L->n_weight + L->n_bias + L->n_state;
        n->act_per_sample += shape_size(L->out);
        if (shape_size(L->out) > n->max_sample_act) n->max_sample_act = shape_size(L->out);
        cur = L->out;
        n->n_layers++;
    }
    if (n->n_layers == 0) {
        snprintf(err, errlen, "empty architecture");
        return -1;
    }
    if (shape_size(in) > n->max_sample_act) n->max_sample_act = shape_size(in);
    n->out = cur;
    return 0;
}

static int is_conv(const layer *L) { return L->kind >= LAYER_CONV2D && L->kind <= LAYER_CONVT1D; }

/* Dropout works on [N, S]: N mask entries, each covering S consecutive values. */
static size_t dropout_groups(const layer *L, int B) {
    return (size_t)B * (L->spatial ? (size_t)L->in.c : shape_size(L->in));
}

static size_t dropout_group_size(const layer *L) {
    return L->spatial ? (size_t)L->in.h * L->in.w : 1;
}

/* What layer L keeps between its forward and backward pass, besides its output:
 * bn: mean, rstd [C]; dropout: mask; lstm: input as [B, W, C], all hidden states
 * [B, W, H], cache; tcn: its blocks' activations. */
static size_t layer_aux_floats(const layer *L, int B) {
    const size_t T = (size_t)L->in.w, C = (size_t)L->in.c, H = (size_t)L->out.c;
    switch (L->kind) {
    case LAYER_BATCHNORM: return 2 * C;
    case LAYER_DROPOUT: return dropout_groups(L, B);
    case LAYER_LSTM: return B * T * (C + H) + lstm_cache_floats(B, (int)T, (int)H);
    case LAYER_TCN: return tcn_act_floats(&L->tcn, B);
    default: return 0;
    }
}

/* Scratch of layer L; lstm's is the gradient of all hidden states and of its [B, W, C]
 * input, for backward. */
static size_t layer_work_floats(const layer *L, int B) {
    if (L->kind == LAYER_CONVT2D || L->kind == LAYER_CONVT1D)
        return conv_transpose_work_floats(&L->geom, B);
    if (is_conv(L)) return conv_work_floats(&L->geom, B);
    if (L->kind == LAYER_TCN) return tcn_work_floats(&L->tcn, B);
    if (L->kind == LAYER_LSTM) return (size_t)B * L->in.w * (L->in.c + L->out.c);
    return 0;
}

size_t net_work_floats(const net_def *n, int B) {
    size_t w = 1;
    for (int i = 0; i < n->n_layers; i++) {
        size_t c = layer_work_floats(&n->layers[i], B);
        if (c > w) w = c;
    }
    return w;
}

size_t net_aux_floats(const net_def *n, int B) {
    size_t a = 1;
    for (int i = 0; i < n->n_layers; i++) a += layer_aux_floats(&n->layers[i], B);
    return a;
}

double net_macs_per_sample(const net_def *n) {
    double macs = 0.0;
    for (int i = 0; i < n->n_layers; i++) {
        const layer *L = &n->layers[i];
        const conv_geom *g = &L->geom;
        if (L->kind == LAYER_LINEAR)
            macs += (double)L->n_weight;
        else if (is_conv(L))
            macs += (double)g->out_c * g->out_h * g->out_w * g->in_c * g->k_h * g->k_w;
        else if (L->kind == LAYER_LSTM)   /* every weight once per step */
            macs += (double)L->n_weight * L->in.w;
        else if (L->kind == LAYER_TCN)    /* every weight once per step; biases are few */
            macs += (double)L->n_weight * L->tcn.len;
    }
    return macs;
}

/* n values from U(-1/sqrt(fan_in), 1/sqrt(fan_in)); returns p + n. */
static float *fill_uniform(float *p, size_t n, size_t fan_in, rng_t *rng) {
    float bound = 1.0f / sqrtf((float)fan_in);
    for (size_t j = 0; j < n; j++) p[j] = (2.0f * rng_uniform(rng) - 1.0f) * bound;
    return p + n;
}

void net_init_params(const net_def *n, float *params, rng_t *rng) {
    for (int i = 0; i < n->n_layers; i++) {
        const layer *L = &n->layers[i];
        float *p = params + L->param_off;
        if (L->kind == LAYER_BATCHNORM) {
            const size_t C = (size_t)L->in.c;
            for (size_t c = 0; c < C; c++) {
                p[c] = 1.0f;           /* gamma */
                p[C + c] = 0.0f;       /* beta */
                p[2 * C + c] = 0.0f;   /* running mean */
                p[3 * C + c] = 1.0f;   /* running variance */
            }
        } else if (L->kind == LAYER_TCN) {   /* per conv, in core/nn/tcn.h's layout */
            for (int k = 0; k < L->tcn.n_blocks; k++) {
                tcn_block b = tcn_block_of(&L->tcn, k);
                const size_t F = (size_t)b.filters, C = (size_t)b.in_c, K = (size_t)b.kernel;
                p = fill_uniform(p, F * C * K + F, C * K, rng);
                p = fill_uniform(p, F * F * K + F, F * K, rng);
                if (C != F) p = fill_uniform(p, F * C + F, C, rng);
            }
        } else if (L->n_weight + L->n_bias) {
            fill_uniform(p, L->n_weight + L->n_bias, L->fan_in, rng);
        }
    }
}

/* The pieces of an lstm layer's aux: input [B, W, C], hidden states [B, W, H], cache. */
typedef struct { float *xt, *hs, *cache; } lstm_aux;

static lstm_aux lstm_split(const layer *L, float *aux, int B) {
    const size_t T = (size_t)L->in.w;
    lstm_aux a = {aux, aux + B * T * L->in.c, NULL};
    a.cache = a.hs + B * T * L->out.c;
    return a;
}

/* y[b, :] = last hidden state of the LSTM over x[b] read as W steps of C features. */
static void lstm_layer_forward(const layer *L, float *y, const float *x, const float *w,
                               float *aux, int B) {
    const int C = L->in.c, T = L->in.w, H = L->out.c;
    lstm_aux a = lstm_split(L, aux, B);
    const float *w_hh = w + (size_t)4 * H * C, *b_ih = w_hh + (size_t)4 * H * H;
    for (int b = 0; b < B; b++)   /* [C, W] -> [W, C] */
        for (int c = 0; c < C; c++)
            for (int t = 0; t < T; t++)
                a.xt[((size_t)b * T + t) * C + c] = x[((size_t)b * C + c) * T + t];
    lstm_forward(a.hs, a.cache, a.xt, w, w_hh, b_ih, b_ih + 4 * H, B, T, C, H);
    for (int b = 0; b < B; b++)
        memcpy(y + (size_t)b * H, a.hs + ((size_t)b * T + T - 1) * H, H * sizeof(float));
}

/* Only the last hidden state got a gradient; dx (may be NULL) is written as [B, C, W]. */
static void lstm_layer_backward(const layer *L, float *dx, float *gw, const float *dy,
                                const float *w, float *aux, int B, float *work) {
    const int C = L->in.c, T = L->in.w, H = L->out.c;
    const size_t G = (size_t)4 * H;
    lstm_aux a = lstm_split(L, aux, B);
    float *dhs = work, *dxt = work + (size_t)B * T * H;
    memset(dhs, 0, (size_t)B * T * H * sizeof(float));
    for (int b = 0; b < B; b++)
        memcpy(dhs + ((size_t)b * T + T - 1) * H, dy + (size_t)b * H, H * sizeof(float));
    if (dx) memset(dxt, 0, (size_t)B * T * C * sizeof(float));
    float *g_hh = gw + G * C, *g_bih = g_hh + G * H;
    lstm_backward(dx ? dxt : NULL, gw, g_hh, g_bih, g_bih + G, dhs, a.xt, a.hs, w,
                  w + G * C, a.cache, B, T, C, H);
    for (int b = 0; dx && b < B; b++)
        for (int c = 0; c < C; c++)
            for (int t = 0; t < T; t++)
                dx[((size_t)b * C + c) * T + t] = dxt[((size_t)b * T + t) * C + c];
}

const float *net_forward(const net_def *n, float *params, const float *in, int B,
                         const net_run *r) {
    const float *x = in;
    float *y = r->acts, *aux = r->aux;
    for (int i = 0; i < n->n_layers; i++) {
        const layer *L = &n->layers[i];
        float *w = params + L->param_off, *b = w + L->n_weight;
        size_t out_n = (size_t)B * shape_size(L->out);
        switch (L->kind) {
        case LAYER_LINEAR:
            linear_forward(y, x, w, b, B, (int)shape_size(L->in), L->out.c);
            break;
        case LAYER_CONV2D:
        case LAYER_CONV1D:
            conv_forward(y, x, w, b, &L->geom, B, r->work);
            break;
        case LAYER_CONVT2D:
        case LAYER_CONVT1D:
            conv_transpose_forward(y, x, w, b, &L->geom, B, r->work);
            break;
        case LAYER_RELU:
            relu_forward(y, x, out_n);
            break;
        case LAYER_SIGMOID:
            sigmoid_forward(y, x, out_n);
            break;
        case LAYER_RESHAPE:
            memcpy(y, x, out_n * sizeof(float));
            break;
        case LAYER_BATCHNORM: {
            const int C = L->in.c;
            float *run = b + C;   /* running mean, then running variance */
            if (r->train && r->keep_bn_stats) run = NULL; /* batch statistics, no update */
            batchnorm_forward(y, aux, aux + C, run, run ? run + C : NULL, x, w, b, B, C,
                              L->in.h * L->in.w, r->train, BN_MOMENTUM, BN_EPS);
            break;
        }
        case LAYER_DROPOUT:
            if (r->train) dropout_mask(aux, dropout_groups(L, B), L->rate, r->rng);
            dropout_forward(y, x, r->train ? aux : NULL, dropout_groups(L, B),
                            dropout_group_size(L));
            break;
        case LAYER_TCN:
            tcn_forward(y, aux, x, w, &L->tcn, B, r->train ? r->rng : NULL, r->work);
            break;
        case LAYER_LSTM:
            lstm_layer_forward(L, y, x, w, aux, B);
            break;
        }
        x = y;
        y += out_n;
        aux += layer_aux_floats(L, B);
    }
    return x;
}

void net_backward(const net_def *n, const float *params, float *grads, const float *in,
                  const float *dout, float *din, int B, const net_run *r) {
    /* Each layer's output and aux position, so we can walk them backwards. */
    const float *outs[NET_MAX_LAYERS];
    float *auxs[NET_MAX_LAYERS];
    const float *a = r->acts;
    float *x_aux = r->aux;
    for (int i = 0; i < n->n_layers; i++) {
        outs[i] = a;
        auxs[i] = x_aux;
        a += (size_t)B * shape_size(n->layers[i].out);
        x_aux += layer_aux_floats(&n->layers[i], B);
    }
    float *ping = r->dbuf, *pong = r->dbuf + (size_t)B * n->max_sample_act;
    const float *dy = dout;
    for (int i = n->n_layers - 1; i >= 0; i--) {
        const layer *L = &n->layers[i];
        const float *x = i ? outs[i - 1] : in, *y = outs[i];
        const float *w = params + L->param_off;
        float *gw = grads + L->param_off, *gb = gw + L->n_weight, *aux = auxs[i];
        size_t in_n = (size_t)B * shape_size(L->in);
        /* The first layer's input gradient goes straight to din (or nowhere). */
        float *dx = i ? (dy == ping ? pong : ping) : din;
        if (dx) memset(dx, 0, in_n * sizeof(float));
        switch (L->kind) {
        case LAYER_LINEAR:
            linear_backward(dx, gw, gb, dy, x, w, B, (int)in_n / B, L->out.c);
            break;
        case LAYER_CONV2D:
        case LAYER_CONV1D:
            conv_backward(dx, gw, gb, dy, x, w, &L->geom, B, r->work);
            break;
        case LAYER_CONVT2D:
        case LAYER_CONVT1D:
            conv_transpose_backward(dx, gw, gb, dy, x, w, &L->geom, B, r->work);
            break;
        case LAYER_RELU:
            if (dx) relu_backward(dx, dy, y, in_n);
            break;
        case LAYER_SIGMOID:
            if (dx) sigmoid_backward(dx, dy, y, in_n);
            break;
        case LAYER_RESHAPE:
            if (dx) memcpy(dx, dy, in_n * sizeof(float));
            break;
        case LAYER_BATCHNORM:
            batchnorm_backward(dx, gw, gb, dy, x, aux, aux + L->in.c, w, B, L->in.c,
                               L->in.h * L->in.w, r->train);
            break;
        case LAYER_DROPOUT:
            if (dx)
                dropout_backward(dx, dy, r->train ? aux : NULL, dropout_groups(L, B),
                                 dropout_group_size(L));
            break;
        case LAYER_TCN:
            tcn_backward(dx, gw, dy, x, w, aux, &L->tcn, B, r->work);
            break;
        case LAYER_LSTM:
            lstm_layer_backward(L, dx, gw, dy, w, aux, B, r->work);
            break;
        }
        dy = dx;
    }
}
