/* Dense and convolutional layers, activations and Adam: finite-difference gradient
 * checks, PyTorch parity (fixtures from tests/gen_fixtures.py) and algebraic identities.
 *
 * Parity tolerances: the C code works in float32, the reference in float64. Each output
 * is a sum of at most a few hundred products of O(1) values, so float32 accumulation
 * error is ~1e-6 relative to the sum's magnitude; atol 1e-5 and rtol 1e-4 leave a margin
 * of ten for summation order (OpenBLAS blocks its sums) while still catching any wrong
 * index, which moves values by O(0.1). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "activation.h"
#include "adam.h"
#include "check.h"
#include "conv.h"
#include "fixture.h"
#include "gradcheck.h"
#include "linear.h"

/* One layer under test: linear (geom unused), conv or transposed conv. */
typedef enum { T_LINEAR, T_CONV, T_CONVT } layer_type;

typedef struct {
    layer_type type;
    conv_geom g;
    int B, in_f, out_f;                   /* linear */
    size_t nx, ny, nw, nb;
    float *x, *w, *b, *y, *r, *work;
    float *dx, *dw, *db;
} layer_case;

static void case_alloc(layer_case *c) {
    if (c->type == T_LINEAR) {
        c->nx = (size_t)c->B * c->in_f;
        c->ny = (size_t)c->B * c->out_f;
        c->nw = (size_t)c->out_f * c->in_f;
        c->nb = (size_t)c->out_f;
    } else {
        size_t xs = (size_t)c->B * c->g.in_c * c->g.in_h * c->g.in_w;
        size_t ys = (size_t)c->B * c->g.out_c * c->g.out_h * c->g.out_w;
        c->nx = c->type == T_CONV ? xs : ys;
        c->ny = c->type == T_CONV ? ys : xs;
        c->nw = (size_t)c->g.out_c * c->g.in_c * c->g.k_h * c->g.k_w;
        c->nb = (size_t)(c->type == T_CONV ? c->g.out_c : c->g.in_c);
    }
    c->x = malloc(c->nx * sizeof(float));
    c->w = malloc(c->nw * sizeof(float));
    c->b = malloc(c->nb * sizeof(float));
    c->y = malloc(c->ny * sizeof(float));
    c->r = malloc(c->ny * sizeof(float));
    c->dx = calloc(c->nx, sizeof(float));
    c->dw = calloc(c->nw, sizeof(float));
    c->db = calloc(c->nb, sizeof(float));
    c->work = malloc((c->type == T_LINEAR ? 1 : conv_work_floats(&c->g, c->B)) * sizeof(float));
    det_fill(c->x, c->nx, 1, -1, 1);
    det_fill(c->w, c->nw, 2, -0.3f, 0.3f);
    det_fill(c->b, c->nb, 3, -0.3f, 0.3f);
    det_fill(c->r, c->ny, 4, -1, 1);
}

static void case_free(layer_case *c) {
    free(c->x); free(c->w); free(c->b); free(c->y); free(c->r);
    free(c->dx); free(c->dw); free(c->db); free(c->work);
}

static void case_forward(layer_case *c) {
    if (c->type == T_LINEAR)
        linear_forward(c->y, c->x, c->w, c->b, c->B, c->in_f, c->out_f);
    else if (c->type == T_CONV)
        conv_forward(c->y, c->x, c->w, c->b, &c->g, c->B, c->work);
    else
        conv_transpose_forward(c->y, c->x, c->w, c->b, &c->g, c->B, c->work);
}

static void case_backward(layer_case *c) {
    if (c->type == T_LINEAR)
        linear_backward(c->dx, c->dw, c->db, c->r, c->x, c->w, c->B, c->in_f, c->out_f);
    else if (c->type == T_CONV)
        conv_backward(c->dx, c->dw, c->db, c->r, c->x, c->w, &c->g, c->B, c->work);
    else
        conv_transpose_backward(c->dx, c->dw, c->db, c->r, c->x, c->w, &c->g, c->B, c->work);
}

static double case_loss(void *ctx) {
    layer_case *c = ctx;
    case_forward(c);
    return dot_loss(c->y, c->r, c->ny);
}

/* The layer is linear in x, w and b separately, so central differences are exact up to
 * rounding: eps 1e-2 on O(1) values and a double-accumulated loss give ~1e-4 error. */
static void case_gradcheck(layer_case *c, const char *name) {
    char what[64];
    case_alloc(c);
    case_backward(c);
    snprintf(what, sizeof what, "%s dx", name);
    gradcheck(what, c->x, c->dx, c->nx, case_loss, c, 1e-2f, 1e-3, 1e-3, 200);
    snprintf(what, sizeof what, "%s dw", name);
    gradcheck(what, c->w, c->dw, c->nw, case_loss, c, 1e-2f, 1e-3, 1e-3, 200);
    snprintf(what, sizeof what, "%s db", name);
    gradcheck(what, c->b, c->db, c->nb, case_loss, c, 1e-2f, 1e-3, 1e-3, 200);
    case_free(c);
}

TEST(layer_linear_gradcheck) {
    layer_case c = {.type = T_LINEAR, .B = 3, .in_f = 6, .out_f = 4};
    case_gradcheck(&c, "linear");
}

TEST(layer_conv2d_gradcheck) {
    layer_case c = {.type = T_CONV, .B = 2, .g = conv_geom_2d(3, 7, 6, 4, 3, 2, 1)};
    case_gradcheck(&c, "conv2d");
}

TEST(layer_conv2d_unpadded_stride1_gradcheck) {
    layer_case c = {.type = T_CONV, .B = 2, .g = conv_geom_2d(2, 5, 5, 3, 2, 1, 0)};
    case_gradcheck(&c, "conv2d s1");
}

TEST(layer_convtranspose2d_gradcheck) {
    layer_case c = {.type = T_CONVT, .B = 2, .g = conv_geom_transpose_2d(3, 4, 3, 2, 3, 2, 1, 1)};
    case_gradcheck(&c, "convtranspose2d");
}

TEST(layer_conv1d_causal_dilated_gradcheck) {
    layer_case c = {.type = T_CONV, .B = 2, .g = conv_geom_1d(3, 17, 4, 4, 1, 4, 12, 0)};
    case_gradcheck(&c, "conv1d causal");
}

TEST(layer_conv1d_tap_in_padding_gradcheck) {
    /* dilation 4, 8 zeros before 5 samples: the first tap never reaches the signal */
    layer_case c = {.type = T_CONV, .B = 2, .g = conv_geom_1d(2, 5, 3, 3, 1, 4, 8, 0)};
    case_gradcheck(&c, "conv1d tap in padding");
}

/* The same 1-D convolution laid along H (x as [C, T, 1]) goes through im2col, along W
 * through the per-tap sgemm path (core/nn/conv.c, is_shift_conv): the two must agree,
 * forward and backward, whatever the padding does to each tap. */
static conv_geom along_h(const conv_geom *g) {
    conv_geom h = *g;
    h.in_h = g->in_w, h.in_w = 1, h.out_h = g->out_w, h.out_w = 1;
    h.k_h = g->k_w, h.k_w = 1, h.dil_h = g->dil_w, h.dil_w = 1;
    h.pad_top = g->pad_left, h.pad_left = 0;
    return h;
}

static void check_taps_match_unrolled(const conv_geom *g, int B) {
    const conv_geom h = along_h(g);
    layer_case c[2] = {{.type = T_CONV, .B = B, .g = *g}, {.type = T_CONV, .B = B, .g = h}};
    for (int i = 0; i < 2; i++) {
        case_alloc(&c[i]);
        case_forward(&c[i]);
        case_backward(&c[i]);
    }
    const float *got[] = {c[0].y, c[0].dx, c[0].dw, c[0].db};
    const float *want[] = {c[1].y, c[1].dx, c[1].dw, c[1].db};
    const size_t n[] = {c[0].ny, c[0].nx, c[0].nw, c[0].nb};
    for (int a = 0; a < 4; a++)
        for (size_t i = 0; i < n[a]; i++)
            CHECK_NEAR(got[a][i], want[a][i], 1e-5 + 1e-5 * fabsf(want[a][i]));
    case_free(&c[0]);
    case_free(&c[1]);
}

TEST(layer_conv1d_taps_match_unrolled) {
    const conv_geom cases[] = {
        conv_geom_1d(3, 17, 4, 4, 1, 4, 12, 0),  /* causal and dilated, as in a TCN */
        conv_geom_1d(2, 5, 3, 3, 1, 4, 8, 0),    /* a tap wholly in the padding */
        conv_geom_1d(2, 6, 3, 3, 1, 1, 1, 1),    /* padding on both sides */
        conv_geom_1d(2, 9, 3, 3, 1, 2, 0, 0),    /* no padding: a shorter output */
        conv_geom_1d(5, 7, 3, 1, 1, 1, 0, 0),    /* 1x1, a TCN block's residual conv */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK(conv_geom_valid(&cases[i]));
        check_taps_match_unrolled(&cases[i], 3);
    }
}

TEST(layer_convtranspose1d_gradcheck) {
    layer_case c = {.type = T_CONVT, .B = 3, .g = conv_geom_transpose_1d(2, 9, 3, 3, 2, 1, 1)};
    case_gradcheck(&c, "convtranspose1d");
}

/* Parity with torch.nn.functional on the same det_fill inputs (tests/gen_fixtures.py). */
static void case_parity(layer_case *c, const char *fixture_name, float wscale) {
    fixture *fx = fixture_load(fixture_name);
    if (!fx) return;
    case_alloc(c);
    det_fill(c->w, c->nw, 2, -wscale, wscale);
    det_fill(c->b, c->nb, 3, -wscale, wscale);
    case_forward(c);
    const float *y = fixture_get(fx, "y", c->ny);
    if (y) CHECK_CLOSE("y", c->y, y, c->ny, 1e-5, 1e-4);
    case_backward(c);
    const float *dx = fixture_get(fx, "dx", c->nx), *dw = fixture_get(fx, "dw", c->nw),
                *db = fixture_get(fx, "db", c->nb);
    if (dx) CHECK_CLOSE("dx", c->dx, dx, c->nx, 1e-5, 1e-4);
    if (dw) CHECK_CLOSE("dw", c->dw, dw, c->nw, 1e-5, 1e-4);
    if (db) CHECK_CLOSE("db", c->db, db, c->nb, 1e-5, 1e-4);
    case_free(c);
    fixture_free(fx);
}

TEST(parity_linear) {
    layer_case c = {.type = T_LINEAR, .B = 4, .in_f = 7, .out_f = 5};
    case_parity(&c, "linear", 0.4f);
}

TEST(parity_conv2d) {
    layer_case c = {.type = T_CONV, .B = 2, .g = conv_geom_2d(3, 9, 8, 4, 3, 2, 1)};
    case_parity(&c, "conv2d", 0.2f);
}

TEST(parity_convtranspose2d) {
    layer_case c = {.type = T_CONVT, .B = 2, .g = conv_geom_transpose_2d(3, 5, 4, 2, 3, 2, 1, 1)};
    CHECK(c.g.in_h == 10 && c.g.in_w == 8);
    case_parity(&c, "convt2d", 0.2f);
}

TEST(parity_conv1d_causal) {
    layer_case c = {.type = T_CONV, .B = 2, .g = conv_geom_1d(3, 20, 4, 4, 1, 2, 6, 0)};
    CHECK(c.g.out_w == 20);
    case_parity(&c, "conv1d_causal", 0.3f);
}

TEST(parity_convtranspose1d) {
    layer_case c = {.type = T_CONVT, .B = 2, .g = conv_geom_transpose_1d(3, 10, 2, 3, 2, 1, 1)};
    CHECK(c.g.in_w == 20);
    case_parity(&c, "convt1d", 0.3f);
}

/* <conv(x), y> == <x, conv^T(y)>: the transposed convolution is the exact adjoint. */
TEST(layer_conv_transpose_is_adjoint) {
    conv_geom g = conv_geom_2d(3, 11, 9, 5, 3, 2, 1);
    int B = 2;
    size_t nx = (size_t)B * 3 * 11 * 9, ny = (size_t)B * 5 * g.out_h * g.out_w, nw = 5 * 3 * 9;
    float *x = malloc(nx * 4), *y = malloc(ny * 4), *w = malloc(nw * 4);
    float *cx = malloc(ny * 4), *ty = malloc(nx * 4), *work = malloc(conv_work_floats(&g, B) * 4);
    det_fill(x, nx, 5, -1, 1);
    det_fill(y, ny, 6, -1, 1);
    det_fill(w, nw, 7, -1, 1);
    conv_forward(cx, x, w, NULL, &g, B, work);
    conv_transpose_forward(ty, y, w, NULL, &g, B, work);
    double a = dot_loss(cx, y, ny), b = dot_loss(x, ty, nx);
    CHECK_NEAR(a, b, 1e-4 * fabs(a) + 1e-4);
    free(x); free(y); free(w); free(cx); free(ty); free(work);
}

typedef struct { float *x, *y, *r; size_t n; int sigmoid; } act_case;

static double act_loss(void *ctx) {
    act_case *c = ctx;
    if (c->sigmoid) sigmoid_forward(c->y, c->x, c->n);
    else relu_forward(c->y, c->x, c->n);
    return dot_loss(c->y, c->r, c->n);
}

TEST(layer_activation_gradcheck) {
    float x[64], y[64], r[64], dx[64];
    det_fill(x, 64, 8, -4, 4);
    det_fill(r, 64, 9, -1, 1);
    for (int i = 0; i < 64; i++)  /* keep ReLU inputs away from its kink */
        if (fabsf(x[i]) < 0.05f) x[i] = 0.5f;
    for (int s = 0; s < 2; s++) {
        act_case c = {x, y, r, 64, s};
        act_loss(&c);
        memset(dx, 0, sizeof dx);
        if (s) sigmoid_backward(dx, r, y, 64);
        else relu_backward(dx, r, y, 64);
        gradcheck(s ? "sigmoid" : "relu", x, dx, 64, act_loss, &c, 1e-2f, 1e-3, 2e-3, 64);
    }
}

TEST(parity_activations) {
    fixture *fx = fixture_load("activations");
    if (!fx) return;
    float x[64], r[64], y[64], dx[64];
    det_fill(x, 64, 8, -4, 4);
    det_fill(r, 64, 9, -1, 1);
    for (int s = 0; s < 2; s++) {
        const char *name = s ? "sigmoid" : "relu";
        char key[32];
        memset(dx, 0, sizeof dx);
        if (s) {
            sigmoid_forward(y, x, 64);
            sigmoid_backward(dx, r, y, 64);
        } else {
            relu_forward(y, x, 64);
            relu_backward(dx, r, y, 64);
        }
        snprintf(key, sizeof key, "%s_y", name);
        const float *ref = fixture_get(fx, key, 64);
        if (ref) CHECK_CLOSE(key, y, ref, 64, 1e-6, 1e-5);
        snprintf(key, sizeof key, "%s_dx", name);
        if ((ref = fixture_get(fx, key, 64))) CHECK_CLOSE(key, dx, ref, 64, 1e-6, 1e-5);
    }
    fixture_free(fx);
}

TEST(layer_sigmoid_extremes_finite) {
    float x[4] = {-1000.0f, -88.0f, 88.0f, 1000.0f}, y[4];
    sigmoid_forward(y, x, 4);
    CHECK(y[0] >= 0.0f && y[0] < 1e-30f);
    CHECK(y[3] == 1.0f);
    for (int i = 0; i < 4; i++) CHECK(isfinite(y[i]));
}

/* sigmoid_forward's one-exponential form gives the bits of the two-branch definition,
 * 1 / (1 + e^-x) for x >= 0 and e^x / (1 + e^x) below, on a sweep of every float's bit
 * patterns (NaNs aside: any NaN is one). */
TEST(layer_sigmoid_bits_of_the_definition) {
    enum { N = 4096 };
    static float x[N], y[N];
    int bad = 0;
    for (uint64_t u = 0; u < (1ull << 32); u += (uint64_t)N * 1021) {
        for (int i = 0; i < N; i++) {
            const uint32_t bits = (uint32_t)(u + (uint64_t)i * 1021);
            memcpy(&x[i], &bits, sizeof bits);
        }
        sigmoid_forward(y, x, N);
        for (int i = 0; i < N; i++) {
            if (isnan(x[i])) continue;
            const float e = expf(x[i] >= 0.0f ? -x[i] : x[i]);
            const float want = x[i] >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
            bad += memcmp(&want, &y[i], sizeof want) != 0;
        }
    }
    CHECK_MSG(bad == 0, "%d outputs differ from the definition's bits", bad);
}

TEST(parity_adam_three_steps) {
    fixture *fx = fixture_load("adam");
    if (!fx) return;
    float p[11], g[11];
    adam_state s;
    det_fill(p, 11, 1, -1, 1);
    CHECK(adam_init(&s, 11, 1e-2f) == 0);
    for (int step = 0; step < 3; step++) {
        char name[16];
        det_fill(g, 11, 10 + step, -2, 2);
        adam_step(&s, p, g);
        snprintf(name, sizeof name, "p%d", step + 1);
        const float *ref = fixture_get(fx, name, 11);
        if (ref) CHECK_CLOSE(name, p, ref, 11, 1e-6, 1e-5);
    }
    adam_free(&s);
    fixture_free(fx);
}
