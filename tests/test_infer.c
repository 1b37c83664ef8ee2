/* The scorer's forward pass: inference plans (core/nn/infer.h) against training's
 * net_forward in eval mode on every preset and on nets built to reach every planning path,
 * each sample alone against the batch to the bit, and vae_infer against vae_reconstruct. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fixture.h"
#include "infer.h"
#include "rng.h"
#include "vae.h"

/* bn's parameters and running statistics away from their initial 1, 0, 0, 1, so that the
 * plan's folding of them is tried. */
static void perturb_bn(const net_def *n, float *params, uint32_t seed) {
    for (int i = 0; i < n->n_layers; i++) {
        const layer *L = &n->layers[i];
        if (L->kind != LAYER_BATCHNORM) continue;
        float *p = params + L->param_off;
        const size_t C = (size_t)L->in.c;
        det_fill(p, C, seed + (uint32_t)i, 0.5f, 1.5f);                  /* gamma */
        det_fill(p + C, C, seed + 100 + (uint32_t)i, -0.5f, 0.5f);      /* beta */
        det_fill(p + 2 * C, C, seed + 200 + (uint32_t)i, -0.5f, 0.5f);  /* mean */
        det_fill(p + 3 * C, C, seed + 300 + (uint32_t)i, 0.5f, 2.0f);   /* variance */
    }
}

/* Net n's plan on B random samples against net_forward in eval mode (within float
 * rounding of the output's scale), and each sample alone against the batch, to the bit. */
static void check_plan(const net_def *n, float *params, const char *what) {
    enum { B = 7 };
    char err[256];
    const size_t in_n = shape_size(n->in), out_n = shape_size(n->out);
    net_plan *p = net_plan_create(n, params, err, sizeof err);
    float *x = malloc(sizeof(float) * B * in_n), *y = malloc(sizeof(float) * B * out_n);
    float *one = malloc(sizeof(float) * out_n);
    float *acts = malloc(sizeof(float) * B * n->act_per_sample);
    float *aux = malloc(sizeof(float) * net_aux_floats(n, B));
    float *work = malloc(sizeof(float) * net_work_floats(n, B));
    if (!p || !x || !y || !one || !acts || !aux || !work) {
        check_fail(__FILE__, __LINE__, "%s: %s", what, p ? "out of memory" : err);
        goto done;
    }
    det_fill(x, B * in_n, 11, -1, 1);
    net_plan_forward(p, x, B, y);
    const float *ref = net_forward(n, params, x, B, &(net_run){.acts = acts, .aux = aux, .work = work});
    double big = 0.0, worst = 0.0;
    for (size_t i = 0; i < B * out_n; i++) big = fmax(big, fabs(ref[i]));
    for (size_t i = 0; i < B * out_n; i++) worst = fmax(worst, fabs(y[i] - ref[i]));
    CHECK_MSG(big > 0.0 && worst <= 1e-5 * big, "%s: plan differs from net_forward by %.3g "
              "(outputs up to %.3g)", what, worst, big);
    int same = 1;
    for (int b = 0; b < B; b++) {
        net_plan_forward(p, x + b * in_n, 1, one);
        same &= memcmp(one, y + b * out_n, sizeof(float) * out_n) == 0;
    }
    CHECK_MSG(same, "%s: a sample alone differs from the same sample in a batch", what);
done:
    net_plan_free(p);
    free(x);
    free(y);
    free(one);
    free(acts);
    free(aux);
    free(work);
}

TEST(infer_plan_matches_net_forward_every_preset) {
    int planned = 0;
    for (const char *const *name = vae_arch_preset_names(); *name; name++) {
        char err[256], what[64];
        vae_arch a;
        vae_model m;
        shape3 in;
        if (vae_arch_preset_shape(*name, &in, err, sizeof err) != 0 ||
            vae_arch_for_input(&a, *name, in.c ? in : (shape3){3, 1, 50}, 16, err, sizeof err) ||
            vae_create(&m, &a, 3, err, sizeof err) != 0) {
            check_fail(__FILE__, __LINE__, "%s: %s", *name, err);
            continue;
        }
        perturb_bn(&m.enc, m.params, 1);
        perturb_bn(&m.dec, m.params + m.enc.n_params, 2);
        if (net_plan_supported(&m.enc)) {
            snprintf(what, sizeof what, "%s encoder", *name);
            check_plan(&m.enc, m.params, what);
            planned++;
        }
        snprintf(what, sizeof what, "%s decoder", *name);
        check_plan(&m.dec, m.params + m.enc.n_params, what);
        vae_free(&m);
    }
    CHECK(planned == 7);   /* all but the tcn and lstm encoders */
}

/* Nets that reach every planning path: inputs with channels (the input's permutation),
 * a relu with no product before it, conv -> bn -> relu (the epilogue's order), dropout,
 * a stride-3 transposed conv with kernel 2 (a phase with no taps: bias only), a reshape
 * between channel layouts, a sigmoid in the middle, linear after a conv (its weights
 * permuted), linear -> bn -> relu -> reshape to channels (the linear's columns and bn's
 * vectors in the reshape's layout), outputs with channels (the permutation back); in 1-D
 * a causal dilated conv and a strided transposed one. */
TEST(infer_plan_every_path) {
    static const char *const SPECS[] = {
        "relu conv2d(5,3,2,1) bn relu dropout(0.2) convtranspose2d(4,2,3,0,1) bn "
        "reshape(2,20,18) conv2d(3,3,1,1) sigmoid linear(20) relu bn linear(18) bn relu "
        "reshape(2,3,3) convtranspose2d(3,3,2,1,0) relu",
        "conv1d(4,3,1,2,causal) relu conv1d(6,4,2,1,1) convtranspose1d(2,3,2,0,1) bn",
    };
    static const shape3 INS[] = {{2, 9, 7}, {3, 1, 21}};
    for (int s = 0; s < 2; s++) {
        net_def n;
        char err[256];
        if (net_parse(&n, SPECS[s], INS[s], err, sizeof err) != 0) {
            check_fail(__FILE__, __LINE__, "spec %d: %s", s, err);
            continue;
        }
        float *params = malloc(sizeof(float) * n.n_params);
        if (!params) {
            check_fail(__FILE__, __LINE__, "out of memory");
            return;
        }
        rng_t r;
        rng_seed(&r, 9);
        net_init_params(&n, params, &r);
        perturb_bn(&n, params, 3);
        check_plan(&n, params, SPECS[s]);
        free(params);
    }
}

/* vae_infer, as the scorer calls it, against vae_reconstruct and vae_encode on the
 * fashion preset, and its per-sample path for a tcn encoder (no plan). */
TEST(vae_infer_matches_reconstruct) {
    static const char *const NAMES[] = {"fashion", "ecg-tcn"};
    for (int i = 0; i < 2; i++) {
        char err[256];
        vae_arch a;
        vae_model m;
        vae_workspace w;
        vae_infer vi;
        enum { B = 5, L = 8 };
        if (vae_arch_preset(&a, NAMES[i], L, err, sizeof err) != 0 ||
            vae_create(&m, &a, 4, err, sizeof err) != 0) {
            check_fail(__FILE__, __LINE__, "%s: %s", NAMES[i], err);
            continue;
        }
        const size_t dim = shape_size(a.in);
        float *x = malloc(sizeof(float) * B * dim * 3), *rec = x + B * dim, *ref = rec + B * dim;
        float mu[B * L], lv[B * L], mu_ref[B * L], lv_ref[B * L];
        int ok_w = vae_workspace_init(&w, &m, B) == 0, ok_i = vae_infer_init(&vi, &m, err, sizeof err) == 0;
        if (!x || !ok_w || !ok_i) {
            check_fail(__FILE__, __LINE__, "%s: %s", NAMES[i], ok_i ? "out of memory" : err);
        } else {
            det_fill(x, B * dim, 21, 0, 1);
            vae_infer_run(&vi, &m, x, B, rec, mu, lv);
            vae_reconstruct(&m, &w, x, NULL, B, ref, mu_ref);
            vae_encode(&m, &w, x, B, mu_ref, lv_ref);
            CHECK_CLOSE("reconstruction", rec, ref, B * dim, 1e-5, 1e-4);
            CHECK_CLOSE("mu", mu, mu_ref, B * L, 1e-5, 1e-4);
            CHECK_CLOSE("logvar", lv, lv_ref, B * L, 1e-5, 1e-4);
        }
        if (ok_i) vae_infer_free(&vi);
        if (ok_w) vae_workspace_free(&w);
        free(x);
        vae_free(&m);
    }
}
