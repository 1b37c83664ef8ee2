/* BatchNorm, Dropout, LSTM and the TCN: finite-difference gradient checks, PyTorch parity
 * (fixtures from tests/gen_fixtures_seq.py) and the properties the formulas promise.
 *
 * Parity tolerances (atol 1e-5, rtol 1e-4): the C code works in float32, the reference in
 * float64 stored as float32. Each compared value is a sum of at most a few hundred O(1)
 * products (BatchNorm: 60 values per channel, LSTM: 12 steps of 4H = 20 gates, TCN: three
 * blocks of 8x3 taps over 20 steps), so float32 accumulation error is ~1e-6 of the
 * magnitude (measured: worst 5e-7 absolute, 3e-6 relative, in the TCN's gradients); the
 * margin of ten covers summation order (OpenBLAS blocks its sums), and a wrong index,
 * mask or sign moves values by O(0.1). Running statistics: 1e-6 / 1e-5 (one update).
 *
 * Gradient checks: tests/gradcheck.c central differences with eps 1e-2 in float32 and the
 * loss sum(out * r) accumulated in double. Rounding noise is ~1e-7 * |loss terms| / eps
 * ~ 1e-5 and truncation eps^2 * f''' / 6 ~ 1e-5 for these smooth layers, so atol 1e-3 and
 * rtol 1e-2 (1e-3 for the LSTM) sit a hundred times above the noise and far below any
 * real error. The TCN is piecewise linear in each single coordinate (ReLUs, a linear
 * loss), and a central quotient that straddles a ReLU kink averages two slopes; its check
 * (gradcheck_kinked) then accepts the one-sided quotient from the kink-free side, which is
 * the exact slope, and still checks every coordinate. Its eps is 3e-3, so that two kinks
 * rarely fall within eps of one point; the float32 noise, ~1e-6 / eps = 3e-4, stays
 * under atol 1e-3. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batchnorm.h"
#include "check.h"
#include "dropout.h"
#include "fixture.h"
#include "gradcheck.h"
#include "lstm.h"
#include "rng.h"
#include "tcn.h"

/* Zeroed floats; aborts the run on allocation failure (a test cannot go on without them). */
static float *falloc(size_t n) {
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p) {
        fprintf(stderr, "out of memory (%zu floats)\n", n);
        exit(2);
    }
    return p;
}

static float *fdup(const float *src, size_t n) {
    float *p = falloc(n);
    memcpy(p, src, n * sizeof(float));
    return p;
}

/* Gradient buffers start at GRAD_BIAS, not 0, so that every parity check also proves that
 * backward ADDS into them; compare_grad subtracts it again. */
#define GRAD_BIAS 0.25f

static float *grad_alloc(size_t n) {
    float *p = falloc(n);
    for (size_t i = 0; i < n; i++) p[i] = GRAD_BIAS;
    return p;
}

/* Check got - GRAD_BIAS against the fixture tensor `name` (which must hold n values). */
static void compare_grad(const fixture *fx, const char *name, const float *got, size_t n,
                         double atol, double rtol) {
    const float *want = fixture_get(fx, name, n);
    if (!want) return;
    float *g = fdup(got, n);
    for (size_t i = 0; i < n; i++) g[i] -= GRAD_BIAS;
    CHECK_CLOSE(name, g, want, n, atol, rtol);
    free(g);
}

static void compare_out(const fixture *fx, const char *name, const float *got, size_t n,
                        double atol, double rtol) {
    const float *want = fixture_get(fx, name, n);
    if (want) CHECK_CLOSE(name, got, want, n, atol, rtol);
}

/* ------------------------------------------------------------------ BatchNorm */

typedef struct {
    int B, C, S, train;
    float *x, *gamma, *beta, *rmean, *rvar, *y, *mean, *rstd, *r;
    float *rm_scratch, *rv_scratch;
} bn_case;

/* The fixture's inputs for prefix seed `seed` (same det_fill streams as the script). */
static void bn_setup(bn_case *c, int B, int C, int S, uint32_t seed, int train) {
    size_t n = (size_t)B * C * S;
    c->B = B; c->C = C; c->S = S; c->train = train;
    c->x = falloc(n); c->y = falloc(n); c->r = falloc(n);
    c->gamma = falloc(C); c->beta = falloc(C); c->rmean = falloc(C); c->rvar = falloc(C);
    c->mean = falloc(C); c->rstd = falloc(C); c->rm_scratch = falloc(C); c->rv_scratch = falloc(C);
    det_fill(c->x, n, seed, -2.0f, 3.0f);
    det_fill(c->gamma, C, seed + 1, 0.5f, 1.5f);
    det_fill(c->beta, C, seed + 2, -0.5f, 0.5f);
    det_fill(c->rmean, C, seed + 3, -0.2f, 0.2f);
    det_fill(c->rvar, C, seed + 4, 0.5f, 1.5f);
    det_fill(c->r, n, seed + 5, -1.0f, 1.0f);
}

static void bn_free(bn_case *c) {
    free(c->x); free(c->y); free(c->r); free(c->gamma); free(c->beta); free(c->rmean);
    free(c->rvar); free(c->mean); free(c->rstd); free(c->rm_scratch); free(c->rv_scratch);
}

/* Forward on copies of the running statistics, so repeated calls see the same state. */
static void bn_run(bn_case *c) {
    memcpy(c->rm_scratch, c->rmean, sizeof(float) * c->C);
    memcpy(c->rv_scratch, c->rvar, sizeof(float) * c->C);
    batchnorm_forward(c->y, c->mean, c->rstd, c->rm_scratch, c->rv_scratch, c->x, c->gamma,
                      c->beta, c->B, c->C, c->S, c->train, BN_MOMENTUM, BN_EPS);
}

static double bn_loss(void *ctx) {
    bn_case *c = ctx;
    bn_run(c);
    return dot_loss(c->y, c->r, (size_t)c->B * c->C * c->S);
}

static void bn_parity(const char *prefix, int B, int C, int S, uint32_t seed) {
    fixture *fx = fixture_load("seq_batchnorm");
    if (!fx) return;
    for (int train = 1; train >= 0; train--) {
        const char *mode = train ? "train" : "eval";
        char name[64];
        bn_case c;
        size_t n = (size_t)B * C * S;
        bn_setup(&c, B, C, S, seed, train);
        bn_run(&c);
        snprintf(name, sizeof name, "%s_%s_y", prefix, mode);
        compare_out(fx, name, c.y, n, 1e-5, 1e-4);
        if (train) {
            snprintf(name, sizeof name, "%s_run_mean", prefix);
            compare_out(fx, name, c.rm_scratch, C, 1e-6, 1e-5);
            snprintf(name, sizeof name, "%s_run_var", prefix);
            compare_out(fx, name, c.rv_scratch, C, 1e-6, 1e-5);
        } else {   /* eval must leave the running statistics alone */
            CHECK(memcmp(c.rm_scratch, c.rmean, sizeof(float) * C) == 0);
            CHECK(memcmp(c.rv_scratch, c.rvar, sizeof(float) * C) == 0);
        }
        float *dx = grad_alloc(n), *dg = grad_alloc(C), *db = grad_alloc(C);
        batchnorm_backward(dx, dg, db, c.r, c.x, c.mean, c.rstd, c.gamma, B, C, S, train);
        snprintf(name, sizeof name, "%s_%s_dx", prefix, mode);
        compare_grad(fx, name, dx, n, 1e-5, 1e-4);
        snprintf(name, sizeof name, "%s_%s_dgamma", prefix, mode);
        compare_grad(fx, name, dg, C, 1e-5, 1e-4);
        snprintf(name, sizeof name, "%s_%s_dbeta", prefix, mode);
        compare_grad(fx, name, db, C, 1e-5, 1e-4);
        free(dx); free(dg); free(db);
        bn_free(&c);
    }
    fixture_free(fx);
}

TEST(seq_batchnorm1d_parity) { bn_parity("bn1d", 4, 3, 1, 101); }

TEST(seq_batchnorm2d_parity) { bn_parity("bn2d", 3, 4, 15, 201); }

TEST(seq_batchnorm_gradcheck) {
    for (int train = 1; train >= 0; train--) {
        bn_case c;
        const int B = 3, C = 2, S = 5;
        size_t n = (size_t)B * C * S;
        bn_setup(&c, B, C, S, 11, train);
        bn_run(&c);
        float *dx = falloc(n), *dg = falloc(C), *db = falloc(C);
        batchnorm_backward(dx, dg, db, c.r, c.x, c.mean, c.rstd, c.gamma, B, C, S, train);
        gradcheck(train ? "bn train dx" : "bn eval dx", c.x, dx, n, bn_loss, &c, 1e-2f,
                  1e-3, 1e-2, n);
        gradcheck("bn dgamma", c.gamma, dg, C, bn_loss, &c, 1e-2f, 1e-3, 1e-2, C);
        gradcheck("bn dbeta", c.beta, db, C, bn_loss, &c, 1e-2f, 1e-3, 1e-2, C);
        free(dx); free(dg); free(db);
        bn_free(&c);
    }
}

TEST(seq_batchnorm_normalises_and_tracks) {
    /* Train output has per-channel mean beta and variance gamma^2 * var/(var+eps); the
     * running mean converges to the batch mean under repeated updates. No affine. */
    const int B = 8, C = 3, S = 4;
    size_t n = (size_t)B * C * S;
    float *x = falloc(n), *y = falloc(n), mean[3], rstd[3], rm[3] = {0}, rv[3] = {1, 1, 1};
    det_fill(x, n, 21, -1.0f, 5.0f);
    for (int it = 0; it < 200; it++)
        batchnorm_forward(y, mean, rstd, rm, rv, x, NULL, NULL, B, C, S, 1, BN_MOMENTUM, BN_EPS);
    for (int c = 0; c < C; c++) {
        double s = 0, ss = 0;
        for (int b = 0; b < B; b++)
            for (int k = 0; k < S; k++) {
                double v = y[((size_t)b * C + c) * S + k];
                s += v;
                ss += v * v;
            }
        CHECK_NEAR(s / (B * S), 0.0, 1e-6);
        CHECK_NEAR(ss / (B * S), 1.0, 1e-3);
        CHECK_NEAR(rm[c], mean[c], 1e-5);
        /* running var tracks the UNBIASED variance: var_biased * n / (n - 1) */
        double var = 1.0 / ((double)rstd[c] * rstd[c]) - BN_EPS;
        CHECK_NEAR(rv[c], var * (B * S) / (B * S - 1.0), 1e-4 * var);
    }
    free(x); free(y);
}

/* ------------------------------------------------------------------ Dropout */

TEST(seq_dropout_mask_and_formula) {
    const size_t N = 20000, S = 3;
    const float p = 0.3f, keep = 1.0f / (1.0f - p);
    float *mask = falloc(N), *mask2 = falloc(N), *in = falloc(N * S), *out = falloc(N * S);
    float *din = falloc(N * S), *dout = falloc(N * S);
    rng_t r;
    rng_seed(&r, 5);
    dropout_mask(mask, N, p, &r);
    size_t dropped = 0;
    int only_two_values = 1;
    for (size_t i = 0; i < N; i++) {
        dropped += mask[i] == 0.0f;
        only_two_values &= mask[i] == 0.0f || mask[i] == keep;
    }
    CHECK(only_two_values);
    /* Binomial(N, p): sd = sqrt(N p (1-p)) ~ 65; allow five sd. */
    CHECK_MSG(fabs((double)dropped - p * N) < 5.0 * sqrt(N * p * (1 - p)),
              "dropped %zu of %zu at p = %g", dropped, N, p);
    rng_seed(&r, 5);
    dropout_mask(mask2, N, p, &r);
    CHECK(memcmp(mask, mask2, N * sizeof(float)) == 0);   /* same seed, same mask */

    /* Grouped forward: every value of group i is scaled by mask[i]. */
    det_fill(in, N * S, 31, -1.0f, 1.0f);
    det_fill(dout, N * S, 32, -1.0f, 1.0f);
    dropout_forward(out, in, mask, N, S);
    int ok = 1;
    for (size_t i = 0; i < N; i++)
        for (size_t s = 0; s < S; s++) ok &= out[i * S + s] == in[i * S + s] * mask[i];
    CHECK(ok);
    /* Backward ADDS dout * mask. */
    for (size_t i = 0; i < N * S; i++) din[i] = 1.0f;
    dropout_backward(din, dout, mask, N, S);
    ok = 1;
    for (size_t i = 0; i < N; i++)
        for (size_t s = 0; s < S; s++)
            ok &= din[i * S + s] == 1.0f + dout[i * S + s] * mask[i];
    CHECK(ok);
    /* Eval (no mask) is the identity, also in place; p = 0 keeps everything at scale 1;
     * p = 1 drops everything. */
    dropout_forward(out, in, NULL, N, S);
    CHECK(memcmp(out, in, N * S * sizeof(float)) == 0);
    dropout_forward(out, out, NULL, N, S);
    CHECK(memcmp(out, in, N * S * sizeof(float)) == 0);
    dropout_mask(mask2, N, 0.0f, &r);
    ok = 1;
    for (size_t i = 0; i < N; i++) ok &= mask2[i] == 1.0f;
    CHECK(ok);
    dropout_mask(mask2, N, 1.0f, &r);
    ok = 1;
    for (size_t i = 0; i < N; i++) ok &= mask2[i] == 0.0f;
    CHECK(ok);
    /* Inverted dropout keeps the mean: E[x * mask] = x. */
    double mean = 0.0;
    for (size_t i = 0; i < N; i++) mean += mask[i];
    CHECK_NEAR(mean / N, 1.0, 5.0 * sqrt(p / (1 - p) / N));
    free(mask); free(mask2); free(in); free(out); free(din); free(dout);
}

typedef struct { float *in, *out, *mask, *r; size_t N, S; } drop_case;

static double drop_loss(void *ctx) {
    drop_case *c = ctx;
    dropout_forward(c->out, c->in, c->mask, c->N, c->S);
    return dot_loss(c->out, c->r, c->N * c->S);
}

TEST(seq_dropout_gradcheck) {
    drop_case c = {.N = 12, .S = 4};
    size_t n = c.N * c.S;
    rng_t r;
    c.in = falloc(n); c.out = falloc(n); c.r = falloc(n); c.mask = falloc(c.N);
    float *din = falloc(n);
    det_fill(c.in, n, 41, -1.0f, 1.0f);
    det_fill(c.r, n, 42, -1.0f, 1.0f);
    rng_seed(&r, 9);
    dropout_mask(c.mask, c.N, 0.4f, &r);   /* fixed mask: the layer is then linear */
    dropout_backward(din, c.r, c.mask, c.N, c.S);
    gradcheck("dropout din", c.in, din, n, drop_loss, &c, 1e-2f, 1e-3, 1e-2, n);
    free(c.in); free(c.out); free(c.r); free(c.mask); free(din);
}

/* ------------------------------------------------------------------ LSTM */

typedef struct {
    int B, T, In, H;
    float *x, *wih, *whh, *bih, *bhh, *out, *cache, *r;
} lstm_case;

static void lstm_setup(lstm_case *c, int B, int T, int In, int H) {
    c->B = B; c->T = T; c->In = In; c->H = H;
    c->x = falloc((size_t)B * T * In);
    c->wih = falloc((size_t)4 * H * In);
    c->whh = falloc((size_t)4 * H * H);
    c->bih = falloc((size_t)4 * H);
    c->bhh = falloc((size_t)4 * H);
    c->out = falloc((size_t)B * T * H);
    c->r = falloc((size_t)B * T * H);
    c->cache = falloc(lstm_cache_floats(B, T, H));
    /* the streams of gen_fixtures_seq.py's gen_lstm */
    det_fill(c->wih, (size_t)4 * H * In, 301, -0.5f, 0.5f);
    det_fill(c->whh, (size_t)4 * H * H, 302, -0.5f, 0.5f);
    det_fill(c->bih, (size_t)4 * H, 303, -0.5f, 0.5f);
    det_fill(c->bhh, (size_t)4 * H, 304, -0.5f, 0.5f);
    det_fill(c->x, (size_t)B * T * In, 305, -1.5f, 1.5f);
    det_fill(c->r, (size_t)B * T * H, 306, -1.0f, 1.0f);
}

static void lstm_free(lstm_case *c) {
    free(c->x); free(c->wih); free(c->whh); free(c->bih); free(c->bhh); free(c->out);
    free(c->r); free(c->cache);
}

static double lstm_loss(void *ctx) {
    lstm_case *c = ctx;
    lstm_forward(c->out, c->cache, c->x, c->wih, c->whh, c->bih, c->bhh, c->B, c->T, c->In,
                 c->H);
    return dot_loss(c->out, c->r, (size_t)c->B * c->T * c->H);
}

TEST(seq_lstm_parity) {
    fixture *fx = fixture_load("seq_lstm");
    if (!fx) return;
    lstm_case c;
    lstm_setup(&c, 3, 12, 2, 5);
    const size_t G = 4 * 5;
    lstm_loss(&c);
    compare_out(fx, "out", c.out, (size_t)3 * 12 * 5, 1e-5, 1e-4);
    float *dx = grad_alloc((size_t)3 * 12 * 2), *dwih = grad_alloc(G * 2);
    float *dwhh = grad_alloc(G * 5), *dbih = grad_alloc(G), *dbhh = grad_alloc(G);
    lstm_backward(dx, dwih, dwhh, dbih, dbhh, c.r, c.x, c.out, c.wih, c.whh, c.cache, 3, 12,
                  2, 5);
    compare_grad(fx, "dx", dx, (size_t)3 * 12 * 2, 1e-5, 1e-4);
    compare_grad(fx, "dw_ih", dwih, G * 2, 1e-5, 1e-4);
    compare_grad(fx, "dw_hh", dwhh, G * 5, 1e-5, 1e-4);
    compare_grad(fx, "db_ih", dbih, G, 1e-5, 1e-4);
    compare_grad(fx, "db_hh", dbhh, G, 1e-5, 1e-4);
    /* Backward may run again on the same cache and ADDS: a second call doubles. */
    float *dx2 = fdup(dx, (size_t)3 * 12 * 2);
    lstm_backward(dx2, NULL, NULL, NULL, NULL, c.r, c.x, c.out, c.wih, c.whh, c.cache, 3, 12,
                  2, 5);
    for (size_t i = 0; i < (size_t)3 * 12 * 2; i++) dx2[i] -= dx[i] - GRAD_BIAS;
    CHECK_CLOSE("dx again", dx2, dx, (size_t)3 * 12 * 2, 1e-6, 1e-6);
    free(dx); free(dx2); free(dwih); free(dwhh); free(dbih); free(dbhh);
    lstm_free(&c);
    fixture_free(fx);
}

TEST(seq_lstm_gradcheck) {
    lstm_case c;
    const int B = 2, T = 5, In = 3, H = 4;
    const size_t G = 4 * H;
    lstm_setup(&c, B, T, In, H);
    lstm_loss(&c);
    float *dx = falloc((size_t)B * T * In), *dwih = falloc(G * In), *dwhh = falloc(G * H);
    float *dbih = falloc(G), *dbhh = falloc(G);
    lstm_backward(dx, dwih, dwhh, dbih, dbhh, c.r, c.x, c.out, c.wih, c.whh, c.cache, B, T,
                  In, H);
    gradcheck("lstm dx", c.x, dx, (size_t)B * T * In, lstm_loss, &c, 1e-2f, 1e-3, 1e-3, 1000);
    gradcheck("lstm dw_ih", c.wih, dwih, G * In, lstm_loss, &c, 1e-2f, 1e-3, 1e-3, 1000);
    gradcheck("lstm dw_hh", c.whh, dwhh, G * H, lstm_loss, &c, 1e-2f, 1e-3, 1e-3, 1000);
    gradcheck("lstm db_ih", c.bih, dbih, G, lstm_loss, &c, 1e-2f, 1e-3, 1e-3, 1000);
    gradcheck("lstm db_hh", c.bhh, dbhh, G, lstm_loss, &c, 1e-2f, 1e-3, 1e-3, 1000);
    free(dx); free(dwih); free(dwhh); free(dbih); free(dbhh);
    lstm_free(&c);
}

TEST(seq_lstm_single_step_and_causal) {
    /* T = 1 from the zero state: h = o * tanh(i * g), no recurrent term; and the outputs
     * of the first t steps do not depend on later inputs. */
    lstm_case c;
    lstm_setup(&c, 2, 6, 3, 4);
    lstm_loss(&c);
    float *first = fdup(c.out, (size_t)2 * 6 * 4);
    c.x[(size_t)0 * 6 * 3 + 4 * 3 + 1] += 0.5f;   /* sample 0, step 4 */
    lstm_loss(&c);
    CHECK(memcmp(first, c.out, sizeof(float) * 4 * 4) == 0);        /* steps 0..3 same */
    CHECK(memcmp(first + 6 * 4, c.out + 6 * 4, sizeof(float) * 6 * 4) == 0); /* sample 1 */
    CHECK(first[4 * 4] != c.out[4 * 4]);
    lstm_free(&c);
    free(first);

    lstm_setup(&c, 1, 1, 3, 4);
    lstm_loss(&c);
    for (int j = 0; j < 4; j++) {
        double a[4];
        for (int q = 0; q < 4; q++) {
            int row = q * 4 + j;
            a[q] = c.bih[row] + c.bhh[row];
            for (int k = 0; k < 3; k++) a[q] += (double)c.wih[row * 3 + k] * c.x[k];
        }
        double i = 1 / (1 + exp(-a[0])), g = tanh(a[2]), o = 1 / (1 + exp(-a[3]));
        CHECK_NEAR(c.out[j], o * tanh(i * g), 1e-6);
    }
    lstm_free(&c);
}

/* ------------------------------------------------------------------ TCN */

/* Finite differences for a function that is piecewise LINEAR in each coordinate. Where no
 * ReLU kink lies within eps, the central quotient must match. Where one does, the central
 * quotient averages two slopes, but the one-sided quotient on the kink-free side is the
 * exact slope at x, so the analytic value must match the forward or the backward one.
 * Fails on any other mismatch, or if more than a quarter of the coordinates need the
 * one-sided rescue (the check would then have lost its teeth). */
static void gradcheck_kinked(const char *what, float *x, const float *analytic, size_t n,
                             loss_fn loss, void *ctx, float eps, double atol, double rtol) {
    size_t kinks = 0, bad = 0;
    double f0 = loss(ctx);
    for (size_t i = 0; i < n; i++) {
        float saved = x[i];
        x[i] = saved + eps;
        double up = loss(ctx), hu = (double)x[i] - saved;
        x[i] = saved - eps;
        double down = loss(ctx), hd = saved - (double)x[i];
        x[i] = saved;
        double fwd = (up - f0) / hu, bwd = (f0 - down) / hd, num = (up - down) / (hu + hd);
        double a = analytic[i];
        if (fabs(num - a) <= atol + rtol * fabs(num)) continue;
        if (fabs(fwd - a) <= atol + rtol * fabs(fwd) || fabs(bwd - a) <= atol + rtol * fabs(bwd)) {
            kinks++;
            continue;
        }
        if (bad++ < 5)
            check_fail(__FILE__, __LINE__, "%s[%zu]: analytic %.7g numeric %.7g (one-sided "
                       "%.7g, %.7g)", what, i, a, num, fwd, bwd);
    }
    CHECK_MSG(kinks * 4 < n, "%s: %zu of %zu coordinates sit on a kink", what, kinks, n);
}

typedef struct {
    tcn_config cfg;
    int B;
    uint64_t seed;   /* training: re-seeded per forward, so the masks stay fixed; 0: eval */
    float *x, *params, *act, *work, *out, *r;
} tcn_case;

static void tcn_setup(tcn_case *c, int in_c, int len, int filters, int kernel,
                      const int *dil, int n_blocks, int B, float dropout, uint64_t seed) {
    memset(c, 0, sizeof *c);
    c->cfg.in_c = in_c;
    c->cfg.len = len;
    c->cfg.filters = filters;
    c->cfg.kernel = kernel;
    c->cfg.n_blocks = n_blocks;
    for (int k = 0; k < n_blocks; k++) c->cfg.dilations[k] = dil[k];
    c->cfg.dropout = dropout;
    c->B = B;
    c->seed = seed;
    size_t np = tcn_param_count(&c->cfg);
    c->x = falloc((size_t)B * in_c * len);
    c->params = falloc(np);
    c->act = falloc(tcn_act_floats(&c->cfg, B));
    c->work = falloc(tcn_work_floats(&c->cfg, B));
    c->out = falloc((size_t)B * filters);
    c->r = falloc((size_t)B * filters);
    /* the streams of gen_fixtures_seq.py's gen_tcn */
    det_fill(c->x, (size_t)B * in_c * len, 401, -1.0f, 1.0f);
    det_fill(c->params, np, 402, -0.4f, 0.4f);
    det_fill(c->r, (size_t)B * filters, 403, -1.0f, 1.0f);
}

static void tcn_free(tcn_case *c) {
    free(c->x); free(c->params); free(c->act); free(c->work); free(c->out); free(c->r);
}

static double tcn_loss(void *ctx) {
    tcn_case *c = ctx;
    rng_t r;
    rng_seed(&r, c->seed);
    tcn_forward(c->out, c->act, c->x, c->params, &c->cfg, c->B, c->seed ? &r : NULL, c->work);
    return dot_loss(c->out, c->r, (size_t)c->B * c->cfg.filters);
}

static const int PARITY_DIL[3] = {1, 2, 4};

TEST(seq_tcn_parity) {
    fixture *fx = fixture_load("seq_tcn");
    if (!fx) return;
    for (int train = 0; train <= 1; train++) {
        tcn_case c;
        /* eval, then training with dropout 0.3 and rng seed 7 (the script's masks) */
        tcn_setup(&c, 2, 20, 8, 3, PARITY_DIL, 3, 3, 0.3f, train ? 7 : 0);
        size_t np = tcn_param_count(&c.cfg), nx = (size_t)3 * 2 * 20;
        CHECK_NEAR((double)np, fixture_scalar(fx, "n_params"), 0.0);
        tcn_loss(&c);
        compare_out(fx, train ? "train_out" : "eval_out", c.out, (size_t)3 * 8, 1e-5, 1e-4);
        float *dx = grad_alloc(nx), *dp = grad_alloc(np);
        tcn_backward(dx, dp, c.r, c.x, c.params, c.act, &c.cfg, 3, c.work);
        compare_grad(fx, train ? "train_dx" : "eval_dx", dx, nx, 1e-5, 1e-4);
        compare_grad(fx, train ? "train_dparams" : "eval_dparams", dp, np, 1e-5, 1e-4);
        free(dx); free(dp);
        tcn_free(&c);
    }
    fixture_free(fx);
}

TEST(seq_tcn_gradcheck) {
    /* Training mode, dropout 0.25 with masks fixed by re-seeding, kernel 2 and dilations
     * reaching past the sequence start (4 * 1 > len - 1 is fine: causal zeros). */
    static const int dil[3] = {1, 3, 4};
    tcn_case c;
    tcn_setup(&c, 3, 9, 4, 2, dil, 3, 2, 0.25f, 12345);
    size_t np = tcn_param_count(&c.cfg), nx = (size_t)2 * 3 * 9;
    tcn_loss(&c);
    float *dx = falloc(nx), *dp = falloc(np);
    tcn_backward(dx, dp, c.r, c.x, c.params, c.act, &c.cfg, 2, c.work);
    gradcheck_kinked("tcn dx", c.x, dx, nx, tcn_loss, &c, 3e-3f, 1e-3, 1e-2);
    gradcheck_kinked("tcn dparams", c.params, dp, np, tcn_loss, &c, 3e-3f, 1e-3, 1e-2);
    free(dx); free(dp);
    tcn_free(&c);
}

typedef struct {
    tcn_block blk;
    int B;
    float *x, *params, *act, *skip, *work, *r_out, *r_skip;
    const float *out;
} block_case;

/* Loss = <out, r_out> + <skip, r_skip>: exercises both outputs of the block. */
static double block_loss(void *ctx) {
    block_case *c = ctx;
    size_t n = (size_t)c->B * c->blk.filters * c->blk.len;
    rng_t r;
    rng_seed(&r, 99);
    memset(c->skip, 0, n * sizeof(float));
    c->out = tcn_block_forward(c->act, c->skip, c->x, c->params, &c->blk, c->B, 0.3f, &r,
                               c->work);
    return dot_loss(c->out, c->r_out, n) + dot_loss(c->skip, c->r_skip, n);
}

TEST(seq_tcn_block_gradcheck) {
    /* in_c != filters (1x1 residual conv) and in_c == filters (identity residual). */
    for (int same = 0; same <= 1; same++) {
        block_case c = {.blk = {.in_c = same ? 4 : 3, .filters = 4, .kernel = 3,
                                .dilation = 2, .len = 7}, .B = 2};
        size_t nx = (size_t)c.B * c.blk.in_c * c.blk.len, n = (size_t)c.B * 4 * 7;
        size_t np = tcn_block_param_count(&c.blk);
        c.x = falloc(nx); c.params = falloc(np); c.skip = falloc(n);
        c.act = falloc(tcn_block_act_floats(&c.blk, c.B));
        c.work = falloc(tcn_block_work_floats(&c.blk, c.B));
        c.r_out = falloc(n); c.r_skip = falloc(n);
        det_fill(c.x, nx, 51, -1.0f, 1.0f);
        det_fill(c.params, np, 52, -0.5f, 0.5f);
        det_fill(c.r_out, n, 53, -1.0f, 1.0f);
        det_fill(c.r_skip, n, 54, -1.0f, 1.0f);
        block_loss(&c);
        float *dx = falloc(nx), *dp = falloc(np);
        tcn_block_backward(dx, dp, c.r_out, c.r_skip, c.x, c.params, c.act, &c.blk, c.B, c.work);
        gradcheck_kinked(same ? "block(id) dx" : "block(1x1) dx", c.x, dx, nx, block_loss, &c,
                         3e-3f, 1e-3, 1e-2);
        gradcheck_kinked(same ? "block(id) dparams" : "block(1x1) dparams", c.params, dp, np,
                         block_loss, &c, 3e-3f, 1e-3, 1e-2);
        free(dx); free(dp); free(c.x); free(c.params); free(c.skip); free(c.act);
        free(c.work); free(c.r_out); free(c.r_skip);
    }
}

TEST(seq_tcn_causal_and_sizes) {
    /* The paper's ECG encoder: 1 channel, 187 steps, 64 filters, kernel 4, dilations
     * 1..32. Parameters: block 0 has 64*1*4+64 + 64*64*4+64 + 64*1+64 = 16896, the other
     * five 2 * (64*64*4 + 64) = 32896 each: 181376, as keras-tcn counts them. */
    tcn_config ecg = {.in_c = 1, .len = 187, .filters = 64, .kernel = 4, .n_blocks = 6,
                      .dilations = {1, 2, 4, 8, 16, 32}, .dropout = 0.05f};
    CHECK(tcn_config_valid(&ecg));
    CHECK(tcn_param_count(&ecg) == 181376);
    tcn_config bad = ecg;
    bad.n_blocks = 0;
    CHECK(!tcn_config_valid(&bad));
    bad = ecg;
    bad.dropout = 1.0f;
    CHECK(!tcn_config_valid(&bad));
    bad = ecg;
    bad.dilations[3] = 0;
    CHECK(!tcn_config_valid(&bad));

    /* Causality: changing input step t0 changes no block output before t0. */
    tcn_block blk = {.in_c = 2, .filters = 3, .kernel = 3, .dilation = 2, .len = 12};
    const int B = 2, t0 = 7;
    size_t nx = (size_t)B * 2 * 12, n = (size_t)B * 3 * 12;
    float *x = falloc(nx), *p = falloc(tcn_block_param_count(&blk));
    float *act = falloc(tcn_block_act_floats(&blk, B));
    float *work = falloc(tcn_block_work_floats(&blk, B));
    float *skip = falloc(n), *skip2 = falloc(n);
    det_fill(x, nx, 61, -1.0f, 1.0f);
    det_fill(p, tcn_block_param_count(&blk), 62, -0.5f, 0.5f);
    float *out1 = fdup(tcn_block_forward(act, skip, x, p, &blk, B, 0.0f, NULL, work), n);
    for (size_t bc = 0; bc < (size_t)B * 2; bc++) x[bc * 12 + t0] += 1.0f;
    const float *out2 = tcn_block_forward(act, skip2, x, p, &blk, B, 0.0f, NULL, work);
    int before_same = 1, after_differs = 0;
    for (size_t bc = 0; bc < (size_t)B * 3; bc++)
        for (int t = 0; t < 12; t++) {
            if (t < t0) before_same &= out1[bc * 12 + t] == out2[bc * 12 + t] &&
                                       skip[bc * 12 + t] == skip2[bc * 12 + t];
            else after_differs |= out1[bc * 12 + t] != out2[bc * 12 + t];
        }
    CHECK(before_same);
    CHECK(after_differs);
    free(x); free(p); free(act); free(work); free(skip); free(skip2); free(out1);
}
