/* The training loop. */
#include "train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adam.h"

train_opts train_defaults(void) {
    return (train_opts){.epochs = 20, .batch = 100, .lr = 1e-3f, .beta = 1.0f, .seed = 1};
}

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int vae_train(vae_model *m, const float *x, size_t n, const train_opts *o,
              train_progress_fn progress, void *ctx, char *err, size_t errlen) {
    const size_t dim = shape_size(m->arch.in), L = (size_t)m->arch.latent;
    if (o->epochs < 1 || o->batch < 1 || !(o->lr > 0) || !(o->beta >= 0) || !(o->capacity >= 0)) {
        snprintf(err, errlen, "bad training settings (epochs %d, batch %d, lr %g, beta %g, C %g)",
                 o->epochs, o->batch, o->lr, o->beta, o->capacity);
        return -1;
    }
    if (n < 1) {
        snprintf(err, errlen, "no training samples");
        return -1;
    }
    const int B_max = (size_t)o->batch < n ? o->batch : (int)n;
    vae_workspace w;
    adam_state opt;
    size_t *order = malloc(n * sizeof *order);
    float *xb = malloc((size_t)B_max * dim * sizeof(float));
    float *eps = malloc((size_t)B_max * L * sizeof(float));
    int ws_ok = vae_workspace_init(&w, m, B_max) == 0;
    int opt_ok = adam_init(&opt, m->n_params, o->lr) == 0;
    int rc = -1;
    if (!order || !xb || !eps || !ws_ok || !opt_ok) {
        snprintf(err, errlen, "out of memory for training buffers");
        goto done;
    }
    rng_t rng;
    rng_seed(&rng, o->seed);
    /* Dropout masks get their own stream from the same seed, so that a net without dropout
     * sees the same shuffles and noise whatever the net draws. */
    rng_seed(&w.rng, ~o->seed);
    for (size_t i = 0; i < n; i++) order[i] = i;
    const size_t steps_per_epoch = (n + B_max - 1) / B_max;
    const double ramp_steps = o->capacity_ramp_epochs * (double)steps_per_epoch;
    long step = 0;
    for (int e = 1; e <= o->epochs; e++) {
        double t0 = now_seconds(), sum_loss = 0, sum_recon = 0, sum_kl = 0;
        rng_shuffle(&rng, order, n);
        for (size_t start = 0; start < n; start += B_max) {
            int B = (int)(n - start < (size_t)B_max ? n - start : (size_t)B_max);
            for (int b = 0; b < B; b++)
                memcpy(xb + (size_t)b * dim, x + order[start + b] * dim, dim * sizeof(float));
            rng_fill_normal(&rng, eps, (size_t)B * L);
            float c = o->capacity;
            if (ramp_steps > 0 && step < ramp_steps) c = (float)(o->capacity * step / ramp_steps);
            vae_loss l = vae_forward_backward(m, &w, xb, eps, B, o->beta, c);
            adam_step(&opt, m->params, m->grads);
            sum_loss += l.loss * B;
            sum_recon += l.recon * B;
            sum_kl += l.kl * B;
            step++;
        }
        if (!(sum_loss == sum_loss) || sum_loss > 1e30) {
            snprintf(err, errlen, "training diverged in epoch %d (loss %g); lower the "
                     "learning rate", e, sum_loss / n);
            goto done;
        }
        if (progress) {
            double dt = now_seconds() - t0;
            train_progress p = {.epoch = e, .epochs = o->epochs, .loss = sum_loss / n,
                                .recon = sum_recon / n, .kl = sum_kl / n, .seconds = dt,
                                .samples_per_s = n / dt, .eta_seconds = dt * (o->epochs - e)};
            progress(&p, ctx);
        }
    }
    rc = 0;
done:
    free(order);
    free(xb);
    free(eps);
    vae_workspace_free(&w);
    adam_free(&opt);
    return rc;
}
