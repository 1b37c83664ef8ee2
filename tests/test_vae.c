/* The network assembler and the beta-VAE: spec parsing and its errors, a whole-loss
 * finite-difference check, and parity with PyTorch of the fashion and ECG presets and of
 * the squared-error loss, through the training step's own gradient function. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adam.h"
#include "check.h"
#include "fixture.h"
#include "gradcheck.h"
#include "train.h"
#include "vae.h"

TEST(net_parse_shapes) {
    net_def n;
    char err[256];
    CHECK(net_parse(&n, "conv2d(32,3,2,1) relu conv2d(32,3,2,1) relu linear(128)",
                    (shape3){1, 28, 28}, err, sizeof err) == 0);
    CHECK(n.n_layers == 5);
    CHECK(n.layers[0].out.c == 32 && n.layers[0].out.h == 14 && n.layers[0].out.w == 14);
    CHECK(n.layers[2].out.h == 7 && n.layers[2].out.w == 7);
    CHECK(n.out.c == 128 && n.out.h == 1);
    CHECK(n.n_params == (32 * 9 + 32) + (32 * 32 * 9 + 32) + (128 * 1568 + 128));
    CHECK(net_parse(&n, "conv1d(8,4,1,2,causal) relu convtranspose1d(1,3,2,1,1)",
                    (shape3){1, 1, 20}, err, sizeof err) == 0);
    CHECK(n.layers[0].out.w == 20);
    CHECK(n.out.c == 1 && n.out.w == 40);
}

TEST(net_parse_errors) {
    static const struct { const char *spec; const char *message_part; } cases[] = {
        {"", "empty"},
        {"linear", "arguments"},
        {"linear(0)", "at least 1"},
        {"linear(4", "expected"},
        {"warp(3)", "unknown layer"},
        {"conv2d(8,30,1,0)", "does not fit"},
        {"reshape(3,3,3)", "does not hold"},
        {"linear(-2)", "bad argument"},
        {"relu(1)", "arguments"},
        {"conv1d(4,3,1,1,0)", "(C,1,W)"},
        {"linear(1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20)", "too many"},
        {"linear(4) $", "unexpected character"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        net_def n;
        char err[256] = "";
        int rc = net_parse(&n, cases[i].spec, (shape3){1, 8, 8}, err, sizeof err);
        CHECK_MSG(rc == -1, "'%s' should not parse", cases[i].spec);
        CHECK_MSG(strstr(err, cases[i].message_part) != NULL, "'%s': message \"%s\" lacks \"%s\"",
                  cases[i].spec, err, cases[i].message_part);
    }
}

TEST(vae_preset_errors) {
    vae_arch a;
    char err[256];
    CHECK(vae_arch_preset(&a, "nonesuch", 16, err, sizeof err) == -1);
    CHECK(strstr(err, "unknown architecture") != NULL);
    CHECK(vae_arch_preset(&a, "fashion", 0, err, sizeof err) == -1);
    vae_model m;
    CHECK(vae_arch_preset(&a, "fashion", 8, err, sizeof err) == 0);
    snprintf(a.dec_spec, sizeof a.dec_spec, "linear(100)");
    CHECK(vae_create(&m, &a, 1, err, sizeof err) == -1);
    CHECK(strstr(err, "does not match") != NULL);
}

/* A tiny VAE (6x6 images) so that finite differences over the whole loss are cheap. */
typedef struct {
    vae_model m;
    vae_workspace w;
    vae_trainer *t;
    float x[3 * 36], eps[3 * 4];
    float beta, capacity;
} tiny_vae;

static void tiny_init(tiny_vae *t, recon_kind recon, float capacity) {
    vae_arch a = {.name = "tiny", .in = {1, 6, 6}, .latent = 4, .recon = recon};
    char err[256];
    snprintf(a.enc_spec, sizeof a.enc_spec, "conv2d(3,3,2,1) relu linear(7) relu");
    snprintf(a.dec_spec, sizeof a.dec_spec,
             "linear(8) relu linear(27) reshape(3,3,3) convtranspose2d(1,3,2,1,1)");
    CHECK(vae_create(&t->m, &a, 7, err, sizeof err) == 0);
    CHECK(vae_workspace_init(&t->w, &t->m, 3) == 0);
    CHECK((t->t = vae_trainer_new(&t->m, 3, 1, 1)) != NULL);
    det_fill(t->x, 3 * 36, 11, 0, 1);
    det_fill(t->eps, 3 * 4, 12, -1.5f, 1.5f);
    t->beta = 0.7f;
    t->capacity = capacity;
}

static double tiny_loss(void *ctx) {
    tiny_vae *t = ctx;
    return vae_evaluate(&t->m, &t->w, t->x, t->eps, 3, t->beta, t->capacity).loss;
}

/* Whole-model check through ReLU kinks: eps 1e-3 rarely straddles a kink, and the
 * rtol 2e-2 / atol 2e-3 bound still catches any missing or mis-scaled term. */
static void tiny_gradcheck(recon_kind recon, float capacity) {
    tiny_vae t;
    tiny_init(&t, recon, capacity);
    if (!t.t) return;
    vae_loss l = vae_trainer_gradient(t.t, t.x, t.eps, 3, t.beta, t.capacity);
    CHECK(isfinite(l.loss) && l.recon > 0 && l.kl > 0);
    CHECK_NEAR(l.loss, l.recon + t.beta * fabs(l.kl - capacity), 1e-6 * l.loss);
    float *g = malloc(t.m.n_params * sizeof(float));
    memcpy(g, t.m.grads, t.m.n_params * sizeof(float));
    gradcheck(recon == RECON_BCE ? "vae bce" : "vae mse", t.m.params, g, t.m.n_params,
              tiny_loss, &t, 1e-3f, 2e-3, 2e-2, 400);
    free(g);
    vae_trainer_free(t.t);
    vae_workspace_free(&t.w);
    vae_free(&t.m);
}

TEST(vae_loss_gradcheck_bce) { tiny_gradcheck(RECON_BCE, 0.0f); }
TEST(vae_loss_gradcheck_mse_capacity_above_kl) { tiny_gradcheck(RECON_MSE, 50.0f); }

/* ------------------------------------------------------------------ PyTorch parity
 *
 * Whole beta-VAEs against PyTorch (tests/gen_fixtures.py vae_fixture): one batch of 4
 * through vae_trainer_gradient, the function every training step runs, with beta 0.5 and
 * C 2: the encoder's mu and logvar, the decoder's output, the loss terms, every
 * parameter gradient, bn's running statistics after the step and, for fashion, one Adam
 * step. Gradients are sums over the batch and the outputs of products through the whole
 * net (and 187 LSTM steps); float32 accumulation there gives ~1e-5 relative error on
 * large entries, so each tensor is compared with atol = 1e-4 * (its largest |reference
 * value|) and rtol 1e-3 (every case here also passed with all tolerances ten times
 * tighter; a wrong dropout mask, index or sign moves values by O(10%)). */

/* The fixture's weights (gen_fixtures.py parity_weights): the k-th layer with parameters
 * draws its weight from stream 100 + 2k and its bias from 101 + 2k, uniform in
 * +-1/sqrt(fan_in) (PyTorch's bound; a tcn, which has no single fan-in, uses
 * 1/sqrt(filters * kernel) for its whole run); bn draws gamma from [0.5, 1.5) and beta
 * from [-0.5, 0.5) and starts at running mean 0, variance 1. */
static void parity_weights(vae_model *m) {
    const net_def *nets[2] = {&m->enc, &m->dec};
    float *base[2] = {m->params, m->params + m->enc.n_params};
    uint32_t seed = 100;
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < nets[k]->n_layers; i++) {
            const layer *ly = &nets[k]->layers[i];
            float *w = base[k] + ly->param_off, *b = w + ly->n_weight;
            if (!ly->n_weight) continue;
            if (ly->kind == LAYER_BATCHNORM) {
                det_fill(w, ly->n_weight, seed, 0.5f, 1.5f);
                det_fill(b, ly->n_bias, seed + 1, -0.5f, 0.5f);
                for (size_t j = 0; j < ly->n_bias; j++) b[ly->n_bias + j] = 0.0f;
                for (size_t j = 0; j < ly->n_bias; j++) b[2 * ly->n_bias + j] = 1.0f;
            } else {
                size_t fan_in = ly->kind == LAYER_TCN
                                    ? (size_t)ly->tcn.filters * ly->tcn.kernel : ly->fan_in;
                float bound = 1.0f / sqrtf((float)fan_in);
                det_fill(w, ly->n_weight, seed, -bound, bound);
                det_fill(b, ly->n_bias, seed + 1, -bound, bound);
            }
            seed += 2;
        }
}

/* The reference gradient of the whole parameter block. A linear layer's weight gradient
 * is dY^T X summed over the batch and its bias's the sum of dY: formed here in double
 * from PyTorch's input X and output gradient dY (pK_x, pK_dy; storing the 384 x 2048
 * matrix itself would make a fixture of megabytes). Every other layer's comes from
 * grads_rest in block order; bn's running statistics get none (0). NULL if the fixture
 * does not fit the model (a failed check says why). */
static float *reference_grads(const fixture *fx, const vae_model *m, int B) {
    const net_def *nets[2] = {&m->enc, &m->dec};
    size_t n_rest = 0;
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < nets[k]->n_layers; i++) {
            const layer *ly = &nets[k]->layers[i];
            if (ly->kind != LAYER_LINEAR) n_rest += ly->n_weight + ly->n_bias;
        }
    const float *rest = fixture_get(fx, "grads_rest", n_rest);
    float *g = calloc(m->n_params, sizeof(float));
    if (!rest || !g) {
        free(g);
        return NULL;
    }
    int p = 0;   /* the layer's index among those with parameters, as in the script */
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < nets[k]->n_layers; i++) {
            const layer *ly = &nets[k]->layers[i];
            float *w = g + (k ? m->enc.n_params : 0) + ly->param_off, *b = w + ly->n_weight;
            if (!ly->n_weight) continue;
            if (ly->kind != LAYER_LINEAR) {
                memcpy(w, rest, (ly->n_weight + ly->n_bias) * sizeof(float));
                rest += ly->n_weight + ly->n_bias;
                p++;
                continue;
            }
            const size_t in = shape_size(ly->in), out = shape_size(ly->out);
            char name[32];
            snprintf(name, sizeof name, "p%d_x", p);
            const float *x = fixture_get(fx, name, (size_t)B * in);
            snprintf(name, sizeof name, "p%d_dy", p++);
            const float *dy = fixture_get(fx, name, (size_t)B * out);
            if (!x || !dy) {
                free(g);
                return NULL;
            }
            for (size_t o = 0; o < out; o++) {
                double sb = 0.0;
                for (int s = 0; s < B; s++) sb += dy[s * out + o];
                b[o] = (float)sb;
                for (size_t j = 0; j < in; j++) {
                    double sw = 0.0;
                    for (int s = 0; s < B; s++) sw += (double)dy[s * out + o] * x[s * in + j];
                    w[o * in + j] = (float)sw;
                }
            }
        }
    return g;
}

typedef struct {
    const char *fixture, *preset;
    recon_kind recon;
    int threads;   /* data-parallel shards: 2 only for nets without bn or dropout */
    int adam;      /* the fixture holds params_after_adam */
} parity_case;

static void parity_vae(const parity_case *pc) {
    fixture *fx = fixture_load(pc->fixture);
    if (!fx) return;
    vae_arch a;
    vae_model m;
    char err[256];
    const int B = 4, L = 16;
    if (vae_arch_preset(&a, pc->preset, L, err, sizeof err) != 0 ||
        (a.recon = pc->recon, vae_create(&m, &a, 0, err, sizeof err)) != 0) {
        check_fail(__FILE__, __LINE__, "%s: %s", pc->preset, err);
        fixture_free(fx);
        return;
    }
    const size_t dim = shape_size(a.in);
    vae_trainer *t = vae_trainer_new(&m, B, pc->threads, 7);
    float *x = malloc(B * dim * sizeof(float)), *out = malloc(B * dim * sizeof(float));
    float eps[4 * 16], mu[4 * 16], lv[4 * 16];
    float *before = malloc(m.n_params * sizeof(float)), *gref = NULL;
    if (!t || !x || !out || !before) {
        check_fail(__FILE__, __LINE__, "out of memory");
        goto done;
    }
    parity_weights(&m);
    memcpy(before, m.params, m.n_params * sizeof(float));
    det_fill(x, B * dim, 1, 0, 1);
    det_fill(eps, B * L, 2, -1.7f, 1.7f);

    vae_loss l = vae_trainer_gradient(t, x, eps, B, 0.5f, 2.0f);
    CHECK_NEAR(l.recon, fixture_scalar(fx, "recon"), 1e-5 * fabs(l.recon));
    CHECK_NEAR(l.kl, fixture_scalar(fx, "kl"), 1e-4 * fabs(l.kl) + 1e-6);
    CHECK_NEAR(l.loss, fixture_scalar(fx, "loss"), 1e-5 * fabs(l.loss));
    vae_trainer_outputs(t, mu, lv, out);
    const float *ref;
    if ((ref = fixture_get(fx, "mu", B * L))) CHECK_CLOSE("mu", mu, ref, B * L, 1e-5, 1e-4);
    if ((ref = fixture_get(fx, "logvar", B * L))) CHECK_CLOSE("logvar", lv, ref, B * L, 1e-5, 1e-4);
    if ((ref = fixture_get(fx, "logits", B * dim))) CHECK_CLOSE("logits", out, ref, B * dim, 1e-5, 1e-4);

    if (!(gref = reference_grads(fx, &m, B))) goto done;
    const net_def *nets[2] = {&m.enc, &m.dec};
    size_t n_state = 0;
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < nets[k]->n_layers; i++) {
            const layer *ly = &nets[k]->layers[i];
            size_t off = (k ? m.enc.n_params : 0) + ly->param_off;
            size_t parts[2] = {ly->n_weight, ly->n_bias};
            for (int p = 0; p < 2; p++) {
                if (!parts[p]) continue;
                float big = 0.0f;
                for (size_t j = 0; j < parts[p]; j++) big = fmaxf(big, fabsf(gref[off + j]));
                char what[80];
                snprintf(what, sizeof what, "%s %s layer %d %s grad", pc->preset,
                         k ? "dec" : "enc", i, p ? "bias" : "weight");
                CHECK_CLOSE(what, m.grads + off, gref + off, parts[p], 1e-4 * big + 1e-9, 1e-3);
                off += parts[p];
            }
            for (size_t j = 0; j < ly->n_state; j++) CHECK(m.grads[off + j] == 0.0f);
            n_state += ly->n_state;
        }
    /* bn's running statistics after the step, in block order. */
    if (n_state && (ref = fixture_get(fx, "bn_state", n_state)))
        for (int k = 0; k < 2; k++)
            for (int i = 0; i < nets[k]->n_layers; i++) {
                const layer *ly = &nets[k]->layers[i];
                if (!ly->n_state) continue;
                const float *st = m.params + (k ? m.enc.n_params : 0) + ly->param_off +
                                  ly->n_weight + ly->n_bias;
                CHECK_CLOSE("bn running statistics", st, ref, ly->n_state, 1e-6, 1e-5);
                ref += ly->n_state;
            }

    /* One Adam step from the reference gradients, so that this checks the optimiser and
     * not again the gradients: a gradient of ~1e-8 (where float32 cancellation leaves
     * few correct digits) would otherwise move its parameter's step by ~lr * 1%. */
    adam_state opt;
    if (pc->adam && adam_init(&opt, m.n_params, 1e-3f) == 0) {
        adam_step(&opt, before, gref);
        if ((ref = fixture_get(fx, "params_after_adam", m.n_params)))
            CHECK_CLOSE("params after Adam", before, ref, m.n_params, 1e-7, 1e-6);
        adam_free(&opt);
    }
done:
    free(gref);
    free(before);
    free(x);
    free(out);
    vae_trainer_free(t);
    vae_free(&m);
    fixture_free(fx);
}

TEST(parity_vae_fashion) {
    parity_vae(&(parity_case){"vae_fashion", "fashion", RECON_BCE, 1, 1});
}
/* The same batch in two shards, as training runs on two cores: fashion has no bn or
 * dropout, so the sharded gradient must be PyTorch's too. */
TEST(parity_vae_fashion_two_shards) {
    parity_vae(&(parity_case){"vae_fashion", "fashion", RECON_BCE, 2, 1});
}
/* Stride-2 1-D convolutions, the shared ECG decoder (bn on 2048 features, six 1-D
 * deconvolutions 2 -> 187). */
TEST(parity_vae_ecg_cnn) {
    parity_vae(&(parity_case){"vae_ecg_cnn", "ecg-cnn", RECON_BCE, 1, 0});
}
/* The TCN in training mode: its dropout masks are shard 0's stream, seed ~7, which the
 * script reproduces. */
TEST(parity_vae_ecg_tcn) {
    parity_vae(&(parity_case){"vae_ecg_tcn", "ecg-tcn", RECON_BCE, 1, 0});
}
TEST(parity_vae_ecg_lstm) {
    parity_vae(&(parity_case){"vae_ecg_lstm", "ecg-lstm", RECON_BCE, 1, 0});
}
/* The Gaussian reconstruction loss (squared error) on the ECG CNN. */
TEST(parity_vae_ecg_cnn_mse) {
    parity_vae(&(parity_case){"vae_ecg_cnn_mse", "ecg-cnn", RECON_MSE, 1, 0});
}

/* Data-parallel training is the same optimisation: one epoch with 1 thread and with 3
 * threads (shards of 4, 3 and 3 samples of each batch of 10) must give the same weights
 * up to float summation order. A bn layer would differ by design (per-shard statistics),
 * so the tiny net here has none. */
TEST(vae_train_threads_agree) {
    vae_arch a = {.name = "tiny", .in = {1, 6, 6}, .latent = 3, .recon = RECON_BCE};
    char err[256];
    snprintf(a.enc_spec, sizeof a.enc_spec, "conv2d(3,3,2,1) relu linear(7) relu");
    snprintf(a.dec_spec, sizeof a.dec_spec,
             "linear(8) relu linear(27) reshape(3,3,3) convtranspose2d(1,3,2,1,1)");
    float x[40 * 36];
    det_fill(x, 40 * 36, 21, 0, 1);
    vae_model m[2];
    for (int k = 0; k < 2; k++) {
        train_opts o = train_defaults();
        o.epochs = 2;
        o.batch = 10;
        o.beta = 0.5f;
        o.capacity = 1.0f;
        o.threads = k ? 3 : 1;
        CHECK(vae_create(&m[k], &a, 5, err, sizeof err) == 0);
        CHECK(vae_train(&m[k], x, 40, &o, NULL, NULL, err, sizeof err) == 0);
    }
    CHECK_CLOSE("weights, 3 threads vs 1", m[1].params, m[0].params, m[0].n_params, 1e-5, 1e-4);
    /* And training moved them: the check above is not comparing two untouched inits. */
    vae_model init;
    CHECK(vae_create(&init, &a, 5, err, sizeof err) == 0);
    size_t moved = 0;
    for (size_t i = 0; i < init.n_params; i++) moved += fabsf(init.params[i] - m[0].params[i]) > 1e-4f;
    CHECK(moved > init.n_params / 2);
    vae_free(&init);
    vae_free(&m[0]);
    vae_free(&m[1]);
}
