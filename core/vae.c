/* The beta-VAE: presets, allocation, loss, forward and backward. */
#include "vae.h"

#include "activation.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Paper Table 3, 1x28x28. The table lists "Conv2d(32, k3, s2)" twice then FC 128, FC 128,
 * and a decoder ending in two stride-2 deconvolutions from 32x7x7: padding 1 (and output
 * padding 1) is the only choice that gives 28 -> 14 -> 7 -> 14 -> 28, and FC 1568 = 32x7x7
 * confirms it. ReLU everywhere but the decoder's last layer, whose logits feed the BCE. */
static const char FASHION_ENC[] =
    "conv2d(32,3,2,1) relu conv2d(32,3,2,1) relu linear(128) relu linear(128) relu";
static const char FASHION_DEC[] =
    "linear(128) relu linear(1568) relu reshape(32,7,7) convtranspose2d(32,3,2,1,1) relu "
    "convtranspose2d(1,3,2,1,1)";

static const char *const PRESETS[] = {"fashion", "mnist", NULL};

const char *const *vae_arch_preset_names(void) { return PRESETS; }

int vae_arch_preset(vae_arch *a, const char *name, int latent, char *err, size_t errlen) {
    memset(a, 0, sizeof *a);
    if (latent < 1 || latent > 4096) {
        snprintf(err, errlen, "latent size %d out of range 1..4096", latent);
        return -1;
    }
    if (!strcmp(name, "fashion") || !strcmp(name, "mnist")) {
        a->in = (shape3){1, 28, 28};
        a->recon = RECON_BCE;
        snprintf(a->enc_spec, sizeof a->enc_spec, "%s", FASHION_ENC);
        snprintf(a->dec_spec, sizeof a->dec_spec, "%s", FASHION_DEC);
    } else {
        snprintf(err, errlen, "unknown architecture '%s' (known: fashion, mnist)", name);
        return -1;
    }
    snprintf(a->name, sizeof a->name, "%s", name);
    a->latent = latent;
    return 0;
}

int vae_create(vae_model *m, const vae_arch *a, uint64_t seed, char *err, size_t errlen) {
    char enc_full[NET_SPEC_MAX + 32];
    memset(m, 0, sizeof *m);
    m->arch = *a;
    if (a->latent < 1 || a->latent > 4096) {
        snprintf(err, errlen, "latent size %d out of range 1..4096", a->latent);
        return -1;
    }
    snprintf(enc_full, sizeof enc_full, "%s linear(%d)", a->enc_spec, 2 * a->latent);
    char sub[256];
    if (net_parse(&m->enc, enc_full, a->in, sub, sizeof sub)) {
        snprintf(err, errlen, "encoder: %s", sub);
        return -1;
    }
    if (net_parse(&m->dec, a->dec_spec, (shape3){a->latent, 1, 1}, sub, sizeof sub)) {
        snprintf(err, errlen, "decoder: %s", sub);
        return -1;
    }
    if (shape_size(m->dec.out) != shape_size(a->in)) {
        snprintf(err, errlen, "decoder output %dx%dx%d does not match input %dx%dx%d",
                 m->dec.out.c, m->dec.out.h, m->dec.out.w, a->in.c, a->in.h, a->in.w);
        return -1;
    }
    m->n_params = m->enc.n_params + m->dec.n_params;
    m->params = calloc(m->n_params, sizeof(float));
    m->grads = calloc(m->n_params, sizeof(float));
    if (!m->params || !m->grads) {
        snprintf(err, errlen, "out of memory for %zu parameters", m->n_params);
        vae_free(m);
        return -1;
    }
    if (seed) {
        rng_t rng;
        rng_seed(&rng, seed);
        net_init_params(&m->enc, m->params, &rng);
        net_init_params(&m->dec, m->params + m->enc.n_params, &rng);
    }
    return 0;
}

void vae_free(vae_model *m) {
    free(m->params);
    free(m->grads);
    m->params = m->grads = NULL;
}

int vae_workspace_init(vae_workspace *w, const vae_model *m, int max_batch) {
    const size_t B = (size_t)max_batch, L = (size_t)m->arch.latent;
    size_t work = net_work_floats(&m->enc, max_batch), dwork = net_work_floats(&m->dec, max_batch);
    size_t dmax = m->enc.max_sample_act > m->dec.max_sample_act ? m->enc.max_sample_act
                                                                 : m->dec.max_sample_act;
    memset(w, 0, sizeof *w);
    w->max_batch = max_batch;
    w->enc_acts = malloc(B * m->enc.act_per_sample * sizeof(float));
    w->dec_acts = malloc(B * m->dec.act_per_sample * sizeof(float));
    w->z = malloc(B * L * sizeof(float));
    w->eps = malloc(B * L * sizeof(float));
    w->d_enc_out = malloc(B * 2 * L * sizeof(float));
    w->d_z = malloc(B * L * sizeof(float));
    w->d_dec_out = malloc(B * shape_size(m->dec.out) * sizeof(float));
    w->dbuf = malloc(2 * B * dmax * sizeof(float));
    w->work = malloc((work > dwork ? work : dwork) * sizeof(float));
    if (max_batch < 1 || !w->enc_acts || !w->dec_acts || !w->z || !w->eps || !w->d_enc_out ||
        !w->d_z || !w->d_dec_out || !w->dbuf || !w->work) {
        vae_workspace_free(w);
        return -1;
    }
    return 0;
}

void vae_workspace_free(vae_workspace *w) {
    free(w->enc_acts);
    free(w->dec_acts);
    free(w->z);
    free(w->eps);
    free(w->d_enc_out);
    free(w->d_z);
    free(w->d_dec_out);
    free(w->dbuf);
    free(w->work);
    memset(w, 0, sizeof *w);
}

/* Encoder, reparameterisation, decoder; the loss terms; returns the decoder output. */
static const float *forward(const vae_model *m, vae_workspace *w, const float *x,
                            const float *eps, int B, float beta, float capacity, vae_loss *loss) {
    const int L = m->arch.latent;
    const float *h = net_forward(&m->enc, m->params, x, w->enc_acts, B, w->work);
    double kl = 0.0;
    for (int b = 0; b < B; b++) {
        const float *mu = h + (size_t)b * 2 * L, *lv = mu + L;
        for (int j = 0; j < L; j++) {
            float e = eps ? eps[(size_t)b * L + j] : 0.0f;
            w->z[(size_t)b * L + j] = mu[j] + expf(0.5f * lv[j]) * e;
            kl += -0.5 * (1.0 + lv[j] - (double)mu[j] * mu[j] - exp(lv[j]));
        }
    }
    const float *out = net_forward(&m->dec, m->params + m->enc.n_params, w->z, w->dec_acts, B,
                                   w->work);
    const size_t n = (size_t)B * shape_size(m->dec.out);
    double recon = 0.0;
    for (size_t i = 0; i < n; i++) {
        double l = out[i], t = x[i];
        if (m->arch.recon == RECON_BCE) /* BCE with logits, stable for any l */
            recon += (l > 0 ? l : 0) - l * t + log1p(exp(-fabs(l)));
        else
            recon += (l - t) * (l - t);
    }
    loss->recon = recon / B;
    loss->kl = kl / B;
    loss->loss = loss->recon + beta * fabs(loss->kl - capacity);
    return out;
}

vae_loss vae_evaluate(const vae_model *m, vae_workspace *w, const float *x, const float *eps,
                      int B, float beta, float capacity) {
    vae_loss loss;
    forward(m, w, x, eps, B, beta, capacity, &loss);
    return loss;
}

vae_loss vae_forward_backward(vae_model *m, vae_workspace *w, const float *x, const float *eps,
                              int B, float beta, float capacity) {
    const int L = m->arch.latent;
    vae_loss loss;
    const float *out = forward(m, w, x, eps, B, beta, capacity, &loss);
    const float *h = w->enc_acts + (size_t)B * (m->enc.act_per_sample - 2 * L);
    const size_t n = (size_t)B * shape_size(m->dec.out);
    const float inv_b = 1.0f / (float)B;

    for (size_t i = 0; i < n; i++) {
        float l = out[i];
        if (m->arch.recon == RECON_BCE) {
            float s = l >= 0 ? 1.0f / (1.0f + expf(-l)) : expf(l) / (1.0f + expf(l));
            w->d_dec_out[i] = (s - x[i]) * inv_b;
        } else {
            w->d_dec_out[i] = 2.0f * (l - x[i]) * inv_b;
        }
    }
    memset(m->grads, 0, m->n_params * sizeof(float));
    memset(w->d_z, 0, (size_t)B * L * sizeof(float));
    net_backward(&m->dec, m->params + m->enc.n_params, m->grads + m->enc.n_params, w->z,
                 w->dec_acts, w->d_dec_out, w->d_z, B, w->dbuf, w->work);

    /* d|KL - C| / dKL is the sign of KL - C (0 exactly at C, as torch.abs). */
    float dkl = loss.kl > capacity ? beta : (loss.kl < capacity ? -beta : 0.0f);
    for (int b = 0; b < B; b++) {
        const float *mu = h + (size_t)b * 2 * L, *lv = mu + L;
        float *dmu = w->d_enc_out + (size_t)b * 2 * L, *dlv = dmu + L;
        for (int j = 0; j < L; j++) {
            float dz = w->d_z[(size_t)b * L + j];
            float e = eps ? eps[(size_t)b * L + j] : 0.0f;
            float sigma = expf(0.5f * lv[j]);
            dmu[j] = dz + dkl * mu[j] * inv_b;
            dlv[j] = dz * e * 0.5f * sigma + dkl * 0.5f * (sigma * sigma - 1.0f) * inv_b;
        }
    }
    net_backward(&m->enc, m->params, m->grads, x, w->enc_acts, w->d_enc_out, NULL, B, w->dbuf,
                 w->work);
    return loss;
}

void vae_encode(const vae_model *m, vae_workspace *w, const float *x, int B, float *mu,
                float *logvar) {
    const int L = m->arch.latent;
    const float *h = net_forward(&m->enc, m->params, x, w->enc_acts, B, w->work);
    for (int b = 0; b < B; b++) {
        memcpy(mu + (size_t)b * L, h + (size_t)b * 2 * L, L * sizeof(float));
        if (logvar) memcpy(logvar + (size_t)b * L, h + (size_t)b * 2 * L + L, L * sizeof(float));
    }
}

void vae_reconstruct(const vae_model *m, vae_workspace *w, const float *x, const float *eps,
                     int B, float *x_rec, float *mu) {
    const int L = m->arch.latent;
    vae_loss unused;
    const float *out = forward(m, w, x, eps, B, 0.0f, 0.0f, &unused);
    const size_t n = (size_t)B * shape_size(m->dec.out);
    if (m->arch.recon == RECON_BCE)
        sigmoid_forward(x_rec, out, n);
    else
        memcpy(x_rec, out, n * sizeof(float));
    if (mu) {
        const float *h = w->enc_acts + (size_t)B * (m->enc.act_per_sample - 2 * L);
        for (int b = 0; b < B; b++) memcpy(mu + (size_t)b * L, h + (size_t)b * 2 * L, L * sizeof(float));
    }
}
