/* The architecture language's newer layers (bn, dropout, spatialdropout, tcn, lstm) and
 * the Table 3 presets built from them: parsing and its errors, shapes and parameter
 * counts, train versus eval behaviour, and finite-difference checks of whole nets and of
 * the VAE loss through them in both modes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fixture.h"
#include "gradcheck.h"
#include "train.h"
#include "vae.h"
#include "weights.h"

TEST(net_parse_new_layers) {
    net_def n;
    char err[256];
    CHECK_MSG(net_parse(&n, "bn dropout(0.05) spatialdropout(.5)", (shape3){3, 1, 10}, err,
                        sizeof err) == -1, "a rate must start with a digit");
    CHECK_MSG(net_parse(&n, "bn dropout(0.05) spatialdropout(0.5) tcn(4,2,0.1,1,2,4) bn",
                        (shape3){3, 1, 10}, err, sizeof err) == 0, "%s", err);
    CHECK(n.n_layers == 5);
    const layer *bn = &n.layers[0], *dr = &n.layers[1], *sd = &n.layers[2], *tc = &n.layers[3];
    CHECK(bn->kind == LAYER_BATCHNORM && bn->n_weight == 3 && bn->n_bias == 3 && bn->n_state == 6);
    CHECK(dr->kind == LAYER_DROPOUT && !dr->spatial && dr->rate == 0.05f);
    CHECK(sd->kind == LAYER_DROPOUT && sd->spatial && sd->rate == 0.5f);
    CHECK(tc->kind == LAYER_TCN && tc->tcn.n_blocks == 3 && tc->tcn.dilations[2] == 4);
    CHECK(tc->tcn.in_c == 3 && tc->tcn.len == 10 && tc->tcn.filters == 4 && tc->tcn.dropout == 0.1f);
    /* block 0 has a 1x1 residual conv (3 -> 4 channels), blocks 1 and 2 do not */
    size_t blk0 = 4 * 3 * 2 + 4 + 4 * 4 * 2 + 4 + 4 * 3 + 4, blk = 4 * 4 * 2 + 4 + 4 * 4 * 2 + 4;
    CHECK(tc->n_weight == blk0 + 2 * blk && tc->n_bias == 0);
    CHECK(tc->out.c == 4 && tc->out.h == 1 && tc->out.w == 1);
    CHECK(n.n_params == 12 + tc->n_weight + 16);
    CHECK(n.out.c == 4 && n.out.h == 1 && n.out.w == 1);

    CHECK_MSG(net_parse(&n, "lstm(5) relu", (shape3){3, 1, 7}, err, sizeof err) == 0, "%s", err);
    CHECK(n.layers[0].kind == LAYER_LSTM && n.out.c == 5 && n.out.w == 1);
    CHECK(n.n_params == 4 * 5 * 3 + 4 * 5 * 5 + 8 * 5);
    CHECK(net_aux_floats(&n, 2) > 2 * 7 * (3 + 5));

    /* bn on images: one channel's statistics over H*W; runs of rates and whole numbers */
    CHECK_MSG(net_parse(&n, "conv2d(6,3,1,1) bn dropout(0) dropout(0.999)", (shape3){2, 5, 5},
                        err, sizeof err) == 0, "%s", err);
    CHECK(n.layers[1].n_state == 12 && n.out.c == 6 && n.out.h == 5);
}

TEST(net_parse_new_layer_errors) {
    static const struct { const char *spec; shape3 in; const char *message_part; } cases[] = {
        {"bn(3)", {2, 1, 8}, "arguments"},
        {"dropout", {2, 1, 8}, "arguments"},
        {"dropout(0.1,0.2)", {2, 1, 8}, "arguments"},
        {"dropout(1)", {2, 1, 8}, "[0, 1)"},
        {"spatialdropout(2.5)", {2, 1, 8}, "[0, 1)"},
        {"dropout(causal)", {2, 1, 8}, "[0, 1)"},
        {"dropout(1e-3)", {2, 1, 8}, "bad argument"},
        {"dropout(0x1)", {2, 1, 8}, "bad argument"},
        {"dropout(inf)", {2, 1, 8}, "bad argument"},
        {"dropout(0.5.1)", {2, 1, 8}, "bad argument"},
        {"dropout(0.5 0.1)", {2, 1, 8}, "expected"},
        {"flatten", {2, 1, 8}, "unknown layer"},
        {"warp(0.5)", {2, 1, 8}, "unknown layer"},
        {"linear(2.5)", {2, 1, 8}, "whole number"},
        {"conv1d(4,3,1,1.5,causal)", {2, 1, 8}, "argument 4 must be a whole number"},
        {"tcn(4,2,0.1)", {2, 1, 8}, "arguments"},
        {"tcn(4.5,2,0.1,1)", {2, 1, 8}, "whole number"},
        {"tcn(4,2,0.1,1,2.5)", {2, 1, 8}, "whole number"},
        {"tcn(4,2,1.5,1)", {2, 1, 8}, "rate below 1"},
        {"tcn(4,0,0.1,1)", {2, 1, 8}, "kernel"},
        {"tcn(4,2,0.1,1,0)", {2, 1, 8}, "dilations"},
        {"tcn(4,2,0.1,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17)", {2, 1, 8}, "too many"},
        {"tcn(4,2,0.1,1)", {1, 8, 8}, "(C,1,W)"},
        {"tcn(100000,2,0.1,1)", {1, 1, 1000}, "too large"},
        {"lstm", {2, 1, 8}, "arguments"},
        {"lstm(0)", {2, 1, 8}, "at least 1"},
        {"lstm(4)", {1, 8, 8}, "(C,1,W)"},
        {"lstm(100000)", {1, 1, 1000}, "too large"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        net_def n;
        char err[256] = "";
        int rc = net_parse(&n, cases[i].spec, cases[i].in, err, sizeof err);
        CHECK_MSG(rc == -1, "'%s' should not parse", cases[i].spec);
        CHECK_MSG(strstr(err, cases[i].message_part) != NULL, "'%s': message \"%s\" lacks \"%s\"",
                  cases[i].spec, err, cases[i].message_part);
    }
}

/* Buffers for running one net by hand. */
typedef struct {
    net_def n;
    int B;
    float *params, *grads, *acts, *aux, *work, *dbuf;
    rng_t rng;
    net_run run;
} net_bench;

static int bench_init(net_bench *t, const char *spec, shape3 in, int B, uint64_t seed) {
    char err[256];
    memset(t, 0, sizeof *t);
    if (net_parse(&t->n, spec, in, err, sizeof err) != 0) {
        check_fail(__FILE__, __LINE__, "'%s': %s", spec, err);
        return 0;
    }
    t->B = B;
    t->params = malloc(t->n.n_params * sizeof(float));
    t->grads = malloc(t->n.n_params * sizeof(float));
    t->acts = malloc((size_t)B * t->n.act_per_sample * sizeof(float));
    t->aux = malloc(net_aux_floats(&t->n, B) * sizeof(float));
    t->work = malloc(net_work_floats(&t->n, B) * sizeof(float));
    t->dbuf = malloc(2 * (size_t)B * t->n.max_sample_act * sizeof(float));
    if (!t->params || !t->grads || !t->acts || !t->aux || !t->work || !t->dbuf) {
        check_fail(__FILE__, __LINE__, "out of memory");
        return 0;
    }
    rng_seed(&t->rng, seed);
    net_init_params(&t->n, t->params, &t->rng);
    t->run = (net_run){.train = 1, .rng = &t->rng, .acts = t->acts, .aux = t->aux,
                       .work = t->work, .dbuf = t->dbuf};
    return 1;
}

static void bench_free(net_bench *t) {
    free(t->params);
    free(t->grads);
    free(t->acts);
    free(t->aux);
    free(t->work);
    free(t->dbuf);
}

TEST(net_init_bn_and_sequence_layers) {
    net_bench t;
    if (bench_init(&t, "bn lstm(3) bn", (shape3){2, 1, 5}, 2, 3)) {
        const layer *a = &t.n.layers[0], *l = &t.n.layers[1], *b = &t.n.layers[2];
        const float *p = t.params + a->param_off, *q = t.params + b->param_off;
        CHECK(p[0] == 1 && p[1] == 1 && p[2] == 0 && p[3] == 0 && p[4] == 0 && p[5] == 0 &&
              p[6] == 1 && p[7] == 1);
        CHECK(q[0] == 1 && q[3] == 0 && q[6] == 0 && q[9] == 1 && q[11] == 1);
        /* PyTorch's nn.LSTM: everything U(-1/sqrt(H), 1/sqrt(H)) */
        float lo = 1, hi = -1, bound = 1.0f / sqrtf(3.0f);
        for (size_t j = 0; j < l->n_weight + l->n_bias; j++) {
            lo = fminf(lo, t.params[l->param_off + j]);
            hi = fmaxf(hi, t.params[l->param_off + j]);
        }
        CHECK(lo >= -bound && hi <= bound && lo < -0.8f * bound && hi > 0.8f * bound);
    }
    bench_free(&t);
    if (bench_init(&t, "tcn(4,3,0.1,1,2)", (shape3){2, 1, 6}, 2, 3)) {
        /* conv1 of block 0: fan_in 2*3; conv2: 4*3; the 1x1 residual conv: 2 */
        const float bounds[3] = {1 / sqrtf(6), 1 / sqrtf(12), 1 / sqrtf(2)};
        const size_t lens[3] = {4 * 2 * 3 + 4, 4 * 4 * 3 + 4, 4 * 2 + 4};
        const float *p = t.params;
        for (int c = 0; c < 3; c++) {
            float m = 0;
            for (size_t j = 0; j < lens[c]; j++) m = fmaxf(m, fabsf(*p++));
            CHECK_MSG(m <= bounds[c] && m > 0.5f * bounds[c], "conv %d: max |w| %g, bound %g",
                      c, m, bounds[c]);
        }
    }
    bench_free(&t);
}

/* bn: train normalises with the batch's statistics and moves the running ones by 0.1;
 * eval normalises with the running ones and changes nothing. */
TEST(net_bn_train_vs_eval) {
    net_bench t;
    if (!bench_init(&t, "bn", (shape3){2, 1, 3}, 4, 1)) {
        bench_free(&t);
        return;
    }
    float x[4 * 6], y[4 * 6];
    det_fill(x, 24, 5, -2, 3);
    float *g = t.params, *beta = g + 2, *rm = g + 4, *rv = g + 6;
    g[0] = 2.0f; g[1] = 0.5f; beta[0] = 0.25f; beta[1] = -1.0f;
    rm[0] = 0.5f; rm[1] = -0.5f; rv[0] = 2.0f; rv[1] = 0.5f;
    for (int train = 1; train >= 0; train--) {
        float before[8];
        memcpy(before, t.params, sizeof before);
        t.run.train = train;
        memcpy(y, net_forward(&t.n, t.params, x, 4, &t.run), sizeof y);
        for (int c = 0; c < 2; c++) {
            double mean = 0, var = 0;
            for (int b = 0; b < 4; b++)
                for (int s = 0; s < 3; s++) mean += x[(b * 2 + c) * 3 + s] / 12.0;
            for (int b = 0; b < 4; b++)
                for (int s = 0; s < 3; s++) var += pow(x[(b * 2 + c) * 3 + s] - mean, 2) / 12.0;
            double m = train ? mean : before[4 + c], v = train ? var : before[6 + c];
            for (int b = 0; b < 4; b++)
                for (int s = 0; s < 3; s++) {
                    int i = (b * 2 + c) * 3 + s;
                    double want = g[c] * (x[i] - m) / sqrt(v + 1e-5) + beta[c];
                    CHECK_NEAR(y[i], want, 1e-5);
                }
            if (train) {
                CHECK_NEAR(rm[c], 0.9 * before[4 + c] + 0.1 * mean, 1e-6);
                CHECK_NEAR(rv[c], 0.9 * before[6 + c] + 0.1 * var * 12.0 / 11.0, 1e-5);
            }
        }
        if (!train) CHECK(memcmp(before, t.params, sizeof before) == 0);
    }
    bench_free(&t);
}

/* dropout: eval is the identity; train zeroes or scales by 1/(1-p), the same for the same
 * seed; spatialdropout decides per (sample, channel). */
TEST(net_dropout_train_vs_eval) {
    net_bench t;
    if (!bench_init(&t, "dropout(0.5) spatialdropout(0.25)", (shape3){4, 1, 5}, 3, 9)) {
        bench_free(&t);
        return;
    }
    float x[3 * 20], y1[3 * 20], y2[3 * 20];
    det_fill(x, 60, 6, 0.5f, 1.5f);
    t.run.train = 0;
    CHECK(memcmp(net_forward(&t.n, t.params, x, 3, &t.run), x, sizeof x) == 0);
    t.run.train = 1;
    rng_seed(&t.rng, 4);
    memcpy(y1, net_forward(&t.n, t.params, x, 3, &t.run), sizeof y1);
    rng_seed(&t.rng, 4);
    memcpy(y2, net_forward(&t.n, t.params, x, 3, &t.run), sizeof y2);
    CHECK(memcmp(y1, y2, sizeof y1) == 0);
    const float *mid = t.acts;   /* after the element-wise dropout */
    int zeros = 0, dropped_channels = 0;
    for (int i = 0; i < 60; i++) {
        CHECK(mid[i] == 0.0f || fabsf(mid[i] - 2.0f * x[i]) < 1e-6f);
        zeros += mid[i] == 0.0f;
    }
    for (int ch = 0; ch < 12; ch++) {
        int off = 0;
        for (int s = 0; s < 5; s++) {
            float v = y1[ch * 5 + s], u = mid[ch * 5 + s];
            CHECK(v == 0.0f || fabsf(v - u / 0.75f) < 1e-5f);
            off += v == 0.0f && u != 0.0f;
        }
        if (off) {   /* a dropped channel is zero at every step */
            for (int s = 0; s < 5; s++) CHECK(y1[ch * 5 + s] == 0.0f);
            dropped_channels++;
        }
    }
    CHECK(zeros > 10 && zeros < 50);
    CHECK(dropped_channels > 0 && dropped_channels < 12);
    bench_free(&t);
}

/* A net-level check of dout . net(x): parameter and input gradients, in the given mode.
 * Train mode reseeds the rng before every pass so that dropout keeps its masks. */
typedef struct {
    net_bench *t;
    float *x;
    const float *r;
    uint64_t mask_seed;
} net_probe;

/* The work buffer net_work_floats sizes is enough for every layer: written past its end,
 * the canaries behind it change. Found by fuzz_net (2026-12-03): a stride-1 1-D transposed
 * conv was sized as a tap-path conv (its taps only) while it runs through im2col, and
 * wrote past the buffer. */
TEST(net_work_floats_covers_every_layer) {
    static const char *const specs[] = {
        "conv1d(4,3,1,2,causal) relu conv1d(2,1,2,1,1) convtranspose1d(2,3,1,1,1) bn relu",
        "convtranspose1d(3,5,1,2,0) relu conv1d(2,3,1,1,0)",
        "convtranspose2d(2,3,1,1,0) relu conv2d(2,3,2,1)",
        "tcn(4,3,0.1,1,2) convtranspose1d(2,3,2,1,1)",
    };
    const shape3 ins[] = {{2, 1, 16}, {2, 1, 12}, {1, 6, 6}, {2, 1, 10}};
    enum { B = 3, CANARIES = 4096 };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        net_bench t;
        if (!bench_init(&t, specs[i], ins[i], B, 5)) {
            bench_free(&t);
            continue;
        }
        size_t work = net_work_floats(&t.n, B);
        float *guarded = malloc((work + CANARIES) * sizeof(float));
        size_t in_n = (size_t)B * shape_size(t.n.in), out_n = (size_t)B * shape_size(t.n.out);
        float *x = malloc(in_n * sizeof *x), *dout = malloc(out_n * sizeof *dout),
              *din = calloc(in_n, sizeof *din);
        if (guarded && x && dout && din) {
            for (size_t j = 0; j < CANARIES; j++) guarded[work + j] = 1234.5f;
            rng_fill_normal(&t.rng, x, in_n);
            rng_fill_normal(&t.rng, dout, out_n);
            memset(t.grads, 0, t.n.n_params * sizeof(float));
            t.run.work = guarded;
            net_forward(&t.n, t.params, x, B, &t.run);
            net_backward(&t.n, t.params, t.grads, x, dout, din, B, &t.run);
            size_t hit = 0;
            for (size_t j = 0; j < CANARIES; j++) hit += guarded[work + j] != 1234.5f;
            CHECK_MSG(hit == 0, "'%s': %zu floats written past the %zu of net_work_floats",
                      specs[i], hit, work);
        }
        free(guarded);
        free(x);
        free(dout);
        free(din);
        bench_free(&t);
    }
}

static double probe_loss(void *ctx) {
    net_probe *p = ctx;
    rng_seed(&p->t->rng, p->mask_seed);
    const float *out = net_forward(&p->t->n, p->t->params, p->x, p->t->B, &p->t->run);
    return dot_loss(out, p->r, (size_t)p->t->B * shape_size(p->t->n.out));
}

static void net_gradcheck(const char *spec, shape3 in, int train) {
    const int B = 4;
    net_bench t;
    if (!bench_init(&t, spec, in, B, 21)) {
        bench_free(&t);
        return;
    }
    const size_t nx = (size_t)B * shape_size(in), ny = (size_t)B * shape_size(t.n.out);
    float *x = malloc(nx * sizeof(float)), *r = malloc(ny * sizeof(float));
    float *dx = malloc(nx * sizeof(float));
    det_fill(x, nx, 31, -1, 1);
    det_fill(r, ny, 32, -1, 1);
    if (!train) {   /* make the running statistics something other than (0, 1) */
        for (int k = 0; k < 5; k++) net_forward(&t.n, t.params, x, B, &t.run);
        t.run.train = 0;
    }
    net_probe p = {&t, x, r, 77};
    double loss = probe_loss(&p);
    CHECK_MSG(isfinite(loss), "%s: loss %g", spec, loss);
    memset(t.grads, 0, t.n.n_params * sizeof(float));
    net_backward(&t.n, t.params, t.grads, x, r, dx, B, &t.run);
    char what[64];
    /* Trainable runs only: in eval mode the output does depend on bn's running statistics,
     * but they are state, not parameters, and get no gradient. */
    for (int i = 0; i < t.n.n_layers; i++) {
        const layer *ly = &t.n.layers[i];
        snprintf(what, sizeof what, "%s layer %d params", train ? "train" : "eval", i);
        gradcheck(what, t.params + ly->param_off, t.grads + ly->param_off,
                  ly->n_weight + ly->n_bias, probe_loss, &p, 1e-3f, 2e-3, 2e-2, 300);
        for (size_t j = 0; j < ly->n_state; j++)
            CHECK(t.grads[ly->param_off + ly->n_weight + ly->n_bias + j] == 0.0f);
    }
    snprintf(what, sizeof what, "%s input", train ? "train" : "eval");
    gradcheck(what, x, dx, nx, probe_loss, &p, 1e-3f, 2e-3, 2e-2, 600);
    free(x);
    free(r);
    free(dx);
    bench_free(&t);
}

static const char LSTM_NET[] =
    "conv1d(3,2,1,1,causal) relu bn spatialdropout(0.3) lstm(4) dropout(0.25) bn linear(3)";
static const char TCN_NET[] = "bn tcn(3,2,0.2,1,2) relu bn dropout(0.2) linear(3)";

TEST(net_gradcheck_lstm_train) { net_gradcheck(LSTM_NET, (shape3){2, 1, 6}, 1); }
TEST(net_gradcheck_lstm_eval) { net_gradcheck(LSTM_NET, (shape3){2, 1, 6}, 0); }
TEST(net_gradcheck_tcn_train) { net_gradcheck(TCN_NET, (shape3){2, 1, 6}, 1); }
TEST(net_gradcheck_tcn_eval) { net_gradcheck(TCN_NET, (shape3){2, 1, 6}, 0); }
TEST(net_gradcheck_bn_images_train) {
    net_gradcheck("conv2d(3,3,2,1) bn relu spatialdropout(0.3) linear(4) bn", (shape3){2, 5, 5}, 1);
}

/* The whole VAE loss, in train mode, through encoders with tcn or lstm and bn and
 * dropout on both sides: the loss a training step minimises is the one differentiated. */
typedef struct {
    vae_model m;
    vae_trainer *t;
    float x[4 * 16], eps[4 * 3];
} seq_vae;

static double seq_vae_loss(void *ctx) {
    seq_vae *s = ctx;
    vae_trainer_reseed(s->t, 5);
    return vae_trainer_gradient(s->t, s->x, s->eps, 4, 0.6f, 0.0f).loss;
}

static void vae_train_gradcheck(const char *enc, const char *dec) {
    seq_vae s;
    vae_arch a = {.name = "seq", .in = {2, 1, 8}, .latent = 3, .recon = RECON_BCE};
    char err[256];
    snprintf(a.enc_spec, sizeof a.enc_spec, "%s", enc);
    snprintf(a.dec_spec, sizeof a.dec_spec, "%s", dec);
    if (vae_create(&s.m, &a, 13, err, sizeof err) != 0) {
        check_fail(__FILE__, __LINE__, "%s", err);
        return;
    }
    if (!(s.t = vae_trainer_new(&s.m, 4, 1, 5))) {
        check_fail(__FILE__, __LINE__, "out of memory");
        vae_free(&s.m);
        return;
    }
    det_fill(s.x, 4 * 16, 14, 0, 1);
    det_fill(s.eps, 4 * 3, 15, -1.5f, 1.5f);
    seq_vae_loss(&s);
    float *g = malloc(s.m.n_params * sizeof(float));
    memcpy(g, s.m.grads, s.m.n_params * sizeof(float));
    gradcheck("vae train", s.m.params, g, s.m.n_params, seq_vae_loss, &s, 1e-3f, 2e-3, 2e-2, 600);
    free(g);
    vae_trainer_free(s.t);
    vae_free(&s.m);
}

static const char SEQ_DEC[] =
    "linear(6) relu bn dropout(0.2) linear(8) reshape(2,1,4) convtranspose1d(2,3,2,1,1)";

TEST(vae_gradcheck_train_tcn) {
    vae_train_gradcheck("tcn(3,2,0.25,1,2,4) bn dropout(0.25) linear(5) relu", SEQ_DEC);
}
TEST(vae_gradcheck_train_lstm) {
    vae_train_gradcheck("conv1d(3,3,1,1,causal) relu bn spatialdropout(0.3) lstm(4) bn", SEQ_DEC);
}

/* Every preset builds, decodes to exactly its input shape, trains a step to a finite
 * loss, evaluates deterministically without touching the model, and survives a weights
 * file with its running statistics. */
TEST(vae_presets_build_and_run) {
    const char *const *names = vae_arch_preset_names();
    int count = 0;
    for (int k = 0; names[k]; k++, count++) {
        vae_arch a;
        vae_model m, back;
        vae_workspace w;
        char err[512], path[600];
        const int B = 2, L = 16;
        /* The presets that derive their layers from the input shape, on a window of 3
         * channels of 50 steps (odd: conv1d's decoder must land on it exactly). */
        shape3 own;
        CHECK(vae_arch_preset_shape(names[k], &own, err, sizeof err) == 0);
        const int derived = own.c == 0;
        CHECK_MSG(vae_arch_for_input(&a, names[k], derived ? (shape3){3, 1, 50} : own, L, err,
                                     sizeof err) == 0, "%s: %s", names[k], err);
        if (vae_create(&m, &a, 1, err, sizeof err) != 0) {
            check_fail(__FILE__, __LINE__, "%s: %s", names[k], err);
            continue;
        }
        CHECK_MSG(m.dec.out.c == a.in.c && m.dec.out.h == a.in.h && m.dec.out.w == a.in.w,
                  "%s decodes to %dx%dx%d", names[k], m.dec.out.c, m.dec.out.h, m.dec.out.w);
        CHECK_MSG(m.n_params > (derived ? 5000u : 50000u) && m.n_params < 5000000,
                  "%s: %zu parameters", names[k], m.n_params);
        vae_trainer *t = vae_trainer_new(&m, B, 1, 1);
        CHECK(t && vae_workspace_init(&w, &m, B) == 0);
        const size_t dim = shape_size(a.in);
        float *x = malloc(B * dim * sizeof(float)), *saved = malloc(m.n_params * sizeof(float));
        float eps[2 * 16];
        det_fill(x, B * dim, 40 + k, 0, 1);
        det_fill(eps, B * L, 50, -1, 1);
        vae_loss l = t ? vae_trainer_gradient(t, x, eps, B, 0.1f, 0.0f) : (vae_loss){NAN, 0, 0};
        CHECK_MSG(isfinite(l.loss) && l.recon > 0 && l.kl >= 0, "%s: loss %g", names[k], l.loss);
        memcpy(saved, m.params, m.n_params * sizeof(float));
        double e1 = vae_evaluate(&m, &w, x, eps, B, 0.1f, 0.0f).loss;
        double e2 = vae_evaluate(&m, &w, x, eps, B, 0.1f, 0.0f).loss;
        CHECK_MSG(isfinite(e1) && e1 == e2, "%s: eval %g then %g", names[k], e1, e2);
        CHECK(memcmp(saved, m.params, m.n_params * sizeof(float)) == 0);
        snprintf(path, sizeof path, "%s/preset.w", test_tmpdir());
        CHECK_MSG(weights_save(path, &m, err, sizeof err) == 0, "%s", err);
        if (weights_load(path, &back, err, sizeof err) == 0) {
            CHECK(back.n_params == m.n_params &&
                  memcmp(back.params, m.params, m.n_params * sizeof(float)) == 0);
            vae_free(&back);
        } else {
            check_fail(__FILE__, __LINE__, "%s: %s", names[k], err);
        }
        free(x);
        free(saved);
        vae_trainer_free(t);
        vae_workspace_free(&w);
        vae_free(&m);
    }
    CHECK(count == 9);
}

/* Parameter counts of the layers Table 3 pins down, computed by hand. */
TEST(vae_presets_parameter_counts) {
    vae_arch a;
    vae_model m;
    char err[256];
    const size_t L = 16;
    CHECK(vae_arch_preset(&a, "ecg-tcn", (int)L, err, sizeof err) == 0);
    if (vae_create(&m, &a, 0, err, sizeof err) == 0) {
        /* block 0: 1 -> 64 with a 1x1 residual conv; blocks 1..5: 64 -> 64 */
        size_t blk0 = 64 * 1 * 4 + 64 + 64 * 64 * 4 + 64 + 64 + 64, blk = 2 * (64 * 64 * 4 + 64);
        CHECK(m.enc.layers[0].kind == LAYER_TCN && m.enc.layers[0].n_weight == blk0 + 5 * blk);
        CHECK(m.enc.n_params == blk0 + 5 * blk + 64 * 2 * L + 2 * L);
        size_t dec = (L * 256 + 256) + (256 * 384 + 384) + (384 * 2048 + 2048) + 4 * 2048 +
                     (1024 * 64 * 3 + 64) + 2 * (64 * 64 * 3 + 64) + (64 * 32 * 3 + 32) +
                     (32 * 32 * 3 + 32) + (32 * 1 * 3 + 1);
        CHECK_MSG(m.dec.n_params == dec, "ecg decoder %zu, want %zu", m.dec.n_params, dec);
        const int widths[] = {2, 5, 11, 23, 46, 93, 187};
        for (int i = 0, j = 0; i < m.dec.n_layers; i++)
            if (m.dec.layers[i].kind == LAYER_CONVT1D) {
                CHECK(m.dec.layers[i].in.w == widths[j] && m.dec.layers[i].out.w == widths[j + 1]);
                j++;
            }
        vae_free(&m);
    }
    CHECK(vae_arch_preset(&a, "ecg-lstm", (int)L, err, sizeof err) == 0);
    if (vae_create(&m, &a, 0, err, sizeof err) == 0) {
        CHECK(m.enc.n_params == (4 * 64 * 1 + 4 * 64 * 64 + 8 * 64) + 64 * 2 * L + 2 * L);
        vae_free(&m);
    }
    CHECK(vae_arch_preset(&a, "cifar10", (int)L, err, sizeof err) == 0);
    if (vae_create(&m, &a, 0, err, sizeof err) == 0) {
        size_t enc = (64 * 3 * 9 + 64) + 4 * 64 + (128 * 64 * 25 + 128) + 4 * 128 +
                     (128 * 128 * 25 + 128) + 4 * 128 + (2048 * 256 + 256) + 4 * 256 +
                     (256 * 256 + 256) + 4 * 256 + (256 * 2 * L + 2 * L);
        CHECK_MSG(m.enc.n_params == enc, "cifar10 encoder %zu, want %zu", m.enc.n_params, enc);
        CHECK(m.enc.layers[3].out.c == 128 && m.enc.layers[6].out.h == 4);
        vae_free(&m);
    }
}
