/* Sequential networks: spec parsing, shape inference, forward and backward dispatch. */
#include "net.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "activation.h"
#include "linear.h"

#define MAX_ARGS 6

size_t shape_size(shape3 s) { return (size_t)s.c * s.h * s.w; }

/* One token: a name and up to MAX_ARGS integer arguments ("causal" reads as -1). */
typedef struct {
    char name[32];
    int n_args;
    long args[MAX_ARGS];
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
                char *end;
                long v = strtol(p, &end, 10);
                if (end == p || v < 0 || v > 1000000) {
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

/* Shape inference for one token; fills L->kind, out, geometry and parameter counts. */
static int build_layer(layer *L, const token *t, shape3 in, char *err, size_t errlen) {
    const long *a = t->args;
    memset(L, 0, sizeof *L);
    L->in = in;
    L->out = in;
    if (!strcmp(t->name, "linear")) {
        if (!want_args(t, 1, 1, err, errlen)) return 0;
        if (a[0] < 1) { snprintf(err, errlen, "linear needs at least 1 unit"); return 0; }
        L->kind = LAYER_LINEAR;
        L->out = (shape3){(int)a[0], 1, 1};
        L->n_weight = (size_t)a[0] * shape_size(in);
        L->n_bias = (size_t)a[0];
        L->fan_in = shape_size(in);
        return 1;
    }
    if (!strcmp(t->name, "conv2d")) {
        if (!want_args(t, 4, 4, err, errlen)) return 0;
        L->kind = LAYER_CONV2D;
        return add_conv(L, conv_geom_2d(in.c, in.h, in.w, (int)a[0], (int)a[1], (int)a[2],
                                        (int)a[3]), 0, in, err, errlen);
    }
    if (!strcmp(t->name, "convtranspose2d")) {
        if (!want_args(t, 5, 5, err, errlen)) return 0;
        L->kind = LAYER_CONVT2D;
        return add_conv(L, conv_geom_transpose_2d(in.c, in.h, in.w, (int)a[0], (int)a[1],
                                                  (int)a[2], (int)a[3], (int)a[4]), 1, in, err, errlen);
    }
    if (!strcmp(t->name, "conv1d")) {
        if (!want_args(t, 5, 5, err, errlen)) return 0;
        if (in.h != 1) { snprintf(err, errlen, "conv1d needs a (C,1,W) input"); return 0; }
        int k = (int)a[1], d = (int)a[3];
        int left = a[4] < 0 ? d * (k - 1) : (int)a[4], right = a[4] < 0 ? 0 : (int)a[4];
        L->kind = LAYER_CONV1D;
        return add_conv(L, conv_geom_1d(in.c, in.w, (int)a[0], k, (int)a[2], d, left, right), 0,
                        in, err, errlen);
    }
    if (!strcmp(t->name, "convtranspose1d")) {
        if (!want_args(t, 5, 5, err, errlen)) return 0;
        if (in.h != 1) { snprintf(err, errlen, "convtranspose1d needs a (C,1,W) input"); return 0; }
        L->kind = LAYER_CONVT1D;
        return add_conv(L, conv_geom_transpose_1d(in.c, in.w, (int)a[0], (int)a[1], (int)a[2],
                                                  (int)a[3], (int)a[4]), 1, in, err, errlen);
    }
    if (!strcmp(t->name, "relu") || !strcmp(t->name, "sigmoid")) {
        if (!want_args(t, 0, 0, err, errlen)) return 0;
        L->kind = t->name[0] == 'r' ? LAYER_RELU : LAYER_SIGMOID;
        return 1;
    }
    if (!strcmp(t->name, "reshape")) {
        if (!want_args(t, 3, 3, err, errlen)) return 0;
        shape3 s = {(int)a[0], (int)a[1], (int)a[2]};
        if (s.c < 1 || s.h < 1 || s.w < 1 || shape_size(s) != shape_size(in)) {
            snprintf(err, errlen, "reshape(%d,%d,%d) does not hold %zu values", s.c, s.h, s.w,
                     shape_size(in));
            return 0;
        }
        L->kind = LAYER_RESHAPE;
        L->out = s;
        return 1;
    }
    snprintf(err, errlen, "unknown layer '%s'", t->name);
    return 0;
}

int net_parse(net_def *n, const char *spec, shape3 in, char *err, size_t errlen) {
    memset(n, 0, sizeof *n);
    err[0] = 0;
    if (strlen(spec) >= NET_SPEC_MAX) {
        snprintf(err, errlen, "architecture longer than %d characters", NET_SPEC_MAX - 1);
        return -1;
    }
    if (in.c < 1 || in.h < 1 || in.w < 1) {
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
        if (!build_layer(L, &t, cur, err, errlen)) return -1;
        if (shape_size(L->out) > (1u << 24)) {
            snprintf(err, errlen, "%s: activation of %zu values is too large", t.name,
                     shape_size(L->out));
            return -1;
        }
        L->param_off = n->n_params;
        n->n_params += L->n_weight + L->n_bias;
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

size_t net_work_floats(const net_def *n, int B) {
    size_t w = 1;
    for (int i = 0; i < n->n_layers; i++) {
        const layer *L = &n->layers[i];
        if (L->kind >= LAYER_CONV2D && L->kind <= LAYER_CONVT1D) {
            size_t c = conv_work_floats(&L->geom, B);
            if (c > w) w = c;
        }
    }
    return w;
}

double net_macs_per_sample(const net_def *n) {
    double macs = 0.0;
    for (int i = 0; i < n->n_layers; i++) {
        const layer *L = &n->layers[i];
        const conv_geom *g = &L->geom;
        if (L->kind == LAYER_LINEAR)
            macs += (double)L->n_weight;
        else if (L->kind >= LAYER_CONV2D && L->kind <= LAYER_CONVT1D)
            macs += (double)g->out_c * g->out_h * g->out_w * g->in_c * g->k_h * g->k_w;
    }
    return macs;
}

void net_init_params(const net_def *n, float *params, rng_t *rng) {
    for (int i = 0; i < n->n_layers; i++) {
        const layer *L = &n->layers[i];
        float bound = L->fan_in ? 1.0f / sqrtf((float)L->fan_in) : 0.0f;
        float *p = params + L->param_off;
        for (size_t j = 0; j < L->n_weight + L->n_bias; j++)
            p[j] = (2.0f * rng_uniform(rng) - 1.0f) * bound;
    }
}

const float *net_forward(const net_def *n, const float *params, const float *in, float *acts,
                         int B, float *work) {
    const float *x = in;
    float *y = acts;
    for (int i = 0; i < n->n_layers; i++) {
        const layer *L = &n->layers[i];
        const float *w = params + L->param_off, *b = w + L->n_weight;
        size_t out_n = (size_t)B * shape_size(L->out);
        switch (L->kind) {
        case LAYER_LINEAR:
            linear_forward(y, x, w, b, B, (int)shape_size(L->in), L->out.c);
            break;
        case LAYER_CONV2D:
        case LAYER_CONV1D:
            conv_forward(y, x, w, b, &L->geom, B, work);
            break;
        case LAYER_CONVT2D:
        case LAYER_CONVT1D:
            conv_transpose_forward(y, x, w, b, &L->geom, B, work);
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
        }
        x = y;
        y += out_n;
    }
    return x;
}

void net_backward(const net_def *n, const float *params, float *grads, const float *in,
                  const float *acts, const float *dout, float *din, int B, float *dbuf,
                  float *work) {
    /* Each layer's output position in acts, so we can walk them backwards. */
    const float *outs[NET_MAX_LAYERS];
    const float *a = acts;
    for (int i = 0; i < n->n_layers; i++) {
        outs[i] = a;
        a += (size_t)B * shape_size(n->layers[i].out);
    }
    float *ping = dbuf, *pong = dbuf + (size_t)B * n->max_sample_act;
    const float *dy = dout;
    for (int i = n->n_layers - 1; i >= 0; i--) {
        const layer *L = &n->layers[i];
        const float *x = i ? outs[i - 1] : in, *y = outs[i];
        const float *w = params + L->param_off;
        float *gw = grads + L->param_off, *gb = gw + L->n_weight;
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
            conv_backward(dx, gw, gb, dy, x, w, &L->geom, B, work);
            break;
        case LAYER_CONVT2D:
        case LAYER_CONVT1D:
            conv_transpose_backward(dx, gw, gb, dy, x, w, &L->geom, B, work);
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
        }
        dy = dx;
    }
}
