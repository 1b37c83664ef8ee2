/* The beta-VAE: presets, allocation, loss, forward and backward. */
#include "vae.h"

#include "activation.h"
#include "block.h"

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

/* Paper Table 3, CIFAR-10, 3x32x32. Read as a Keras model ("ReLU activation" on every
 * layer, each BN after the activation it follows). Repairs of the garbled row:
 * - the second conv reads "filters 1": a truncated 128 (the third conv and the decoder's
 *   first deconv have 128); 1 filter would throw the image away;
 * - "Dropout (0.9)" and the truncated second "Dropout (0": a 0.9 DROP rate would leave a
 *   tenth of a 256-unit layer, so 0.9 is TensorFlow's keep_prob; we drop 0.1 in both;
 * - padding is not given: "same" (k3 p1, k5 p2; output padding 1 on the deconvs) is the
 *   only choice that halves 32 -> 16 -> 8 -> 4 and doubles back, and FC 2048 = 128x4x4
 *   confirms it.
 * The decoder's last deconv emits BCE logits, so it has no ReLU. */
static const char CIFAR10_ENC[] =
    "conv2d(64,3,2,1) relu bn conv2d(128,5,2,2) relu bn conv2d(128,5,2,2) relu bn "
    "linear(256) relu dropout(0.1) bn linear(256) relu dropout(0.1) bn";
static const char CIFAR10_DEC[] =
    "linear(256) relu bn linear(256) relu bn linear(2048) relu bn reshape(128,4,4) "
    "convtranspose2d(128,5,2,2,1) relu bn convtranspose2d(64,5,2,2,1) relu bn "
    "convtranspose2d(3,3,2,1,1)";

/* Paper Table 3, Small-NORB, 1x32x32 (the paper's 32x32 crops of 48x48 images). As
 * CIFAR-10, with the table's k3 convs (32 -> 16 -> 8 -> 4, 128x4x4 = 2048) and keep
 * probability 0.7, i.e. drop rate 0.3. The decoder row is a copy of CIFAR-10's with the
 * BNs between deconvs gone, which we follow, and "filters 3" on the last deconv, which we
 * do not: the images have one channel. */
static const char SMALLNORB_ENC[] =
    "conv2d(32,3,2,1) relu bn conv2d(64,3,2,1) relu bn conv2d(128,3,2,1) relu bn "
    "linear(256) relu dropout(0.3) bn linear(256) relu dropout(0.3) bn";
static const char SMALLNORB_DEC[] =
    "linear(256) relu bn linear(256) relu bn linear(2048) relu bn reshape(128,4,4) "
    "convtranspose2d(128,5,2,2,1) relu convtranspose2d(64,5,2,2,1) relu "
    "convtranspose2d(1,3,2,1,1)";

/* Paper Table 3, Arrhythmia: one heartbeat of 187 samples, as (1,1,187). The decoder
 * (shared by the three ECG encoders) is FC 256, FC 384, FC 2048, BN, then six k3 s2
 * deconvolutions (the table calls five of them Deconv2d; on a 1-D beat they can only be
 * 1-D). Six stride-2 layers multiply the length by about 64, so 2048 values must start
 * near 187 / 64 = 2.9 steps: 2 steps of 1024 channels, as 3 does not divide 2048. With
 * k3 s2, padding 0 gives 2L + 1 and padding 1 with output padding 1 gives 2L, so
 * 2 -> 5 -> 11 -> 23 -> 46 -> 93 -> 187 lands exactly on the beat with no crop. Filters
 * 64, 64, 64, 32, 32, 1 as in the table; ReLU between, logits out.
 * Reconstruction is BCE on the beats scaled to [0, 1], as for the images: the paper
 * uses one loss form for all datasets (its beta grid in Table 2 is the same range
 * everywhere), and BCE keeps x' in [0, 1] like the data. */
static const char ECG_DEC[] =
    "linear(256) relu linear(384) relu linear(2048) relu bn reshape(1024,1,2) "
    "convtranspose1d(64,3,2,0,0) relu convtranspose1d(64,3,2,0,0) relu "
    "convtranspose1d(64,3,2,0,0) relu convtranspose1d(32,3,2,1,1) relu "
    "convtranspose1d(32,3,2,0,0) relu convtranspose1d(1,3,2,0,0)";
/* The paper's ECG encoder: keras-tcn TCN(nb_filters 64, kernel_size 4, one stack,
 * dilations 1..32, causal, skip connections, dropout_rate 0.05), last time step; the
 * (mu, logvar) head reads its 64 features directly, as a Dense after a Keras TCN does. */
static const char ECG_TCN_ENC[] = "tcn(64,4,0.05,1,2,4,8,16,32)";
/* The CNN encoder the paper compares with (Figure 15) is not specified: three stride-2
 * convs with the TCN's 64 filters and kernel 4 (187 -> 93 -> 46 -> 23), then FC 256 like
 * the image encoders. */
static const char ECG_CNN_ENC[] =
    "conv1d(64,4,2,1,1) relu conv1d(64,4,2,1,1) relu conv1d(64,4,2,1,1) relu "
    "linear(256) relu";
/* The LSTM encoder (Figure 16) is not specified either: one layer of 64 units, the TCN's
 * width, over the 187 steps; its last hidden state feeds the head. */
static const char ECG_LSTM_ENC[] = "lstm(64)";

/* Beyond the paper: presets whose layers follow from the input shape (in = 0 below).
 *
 * "mlp", any shape read as one vector of n values (tabular rows, short sensor windows):
 * linear(h1) relu linear(h2) relu, the decoder its mirror ending in linear(n) and a
 * reshape to the input's shape, so x' has the shape of x. h1 is the
 * power of two nearest n, within [32, 512]: as wide as the input for small rows, so the
 * first layer can keep every feature, and capped so that a wide input cannot make the
 * model large; h2 = h1 / 2 (at least 16) funnels to the latent head. No bn or dropout:
 * tabular sets are small and the paper's image models train without them too.
 *
 * "conv1d", C channels of W steps as (C,1,W) (a multichannel window): two stride-2
 * convolutions, kernel 5, padding 2 (each halves W, rounding up), 32 then 64 filters,
 * linear(128), the decoder a mirror: linear(128), linear(64 * W2), two stride-2
 * transposed convolutions whose output padding (1 for an even length, 0 for an odd one)
 * lands exactly on W again, so no step is cropped or padded. Kernel 5 sees a few steps on
 * each side at each scale; channels mix from the first layer on. */
typedef struct { shape3 in; const char *enc, *dec; } preset;

static const char *const PRESET_NAMES[] = {"fashion",  "mnist",   "cifar10", "smallnorb",
                                           "ecg-tcn",  "ecg-cnn", "ecg-lstm", "mlp",
                                           "conv1d",   NULL};
static const preset PRESETS[] = {
    {{1, 28, 28}, FASHION_ENC, FASHION_DEC},     {{1, 28, 28}, FASHION_ENC, FASHION_DEC},
    {{3, 32, 32}, CIFAR10_ENC, CIFAR10_DEC},     {{1, 32, 32}, SMALLNORB_ENC, SMALLNORB_DEC},
    {{1, 1, 187}, ECG_TCN_ENC, ECG_DEC},         {{1, 1, 187}, ECG_CNN_ENC, ECG_DEC},
    {{1, 1, 187}, ECG_LSTM_ENC, ECG_DEC},        {{0, 0, 0}, NULL, NULL},
    {{0, 0, 0}, NULL, NULL},
};
_Static_assert(sizeof PRESETS / sizeof PRESETS[0] + 1 ==
               sizeof PRESET_NAMES / sizeof PRESET_NAMES[0], "one preset per name");

const char *const *vae_arch_preset_names(void) { return PRESET_NAMES; }

/* The specs of a derived preset (mlp, conv1d) for input `in`. */
static int derive(vae_arch *a, const char *name, shape3 in, char *err, size_t errlen) {
    const size_t n = shape_size(in);
    if (!strcmp(name, "mlp")) {
        int h1 = 32;
        while (h1 < 512 && (size_t)h1 * 3 / 2 < n) h1 *= 2;  /* nearest power of two */
        int h2 = h1 / 2 < 16 ? 16 : h1 / 2;
        snprintf(a->enc_spec, sizeof a->enc_spec, "linear(%d) relu linear(%d) relu", h1, h2);
        snprintf(a->dec_spec, sizeof a->dec_spec,
                 "linear(%d) relu linear(%d) relu linear(%zu) reshape(%d,%d,%d)", h2, h1, n,
                 in.c, in.h, in.w);
        return 0;
    }
    if (in.h != 1) {
        snprintf(err, errlen, "architecture 'conv1d' takes C channels of W steps (C,1,W), "
                 "not %dx%dx%d", in.c, in.h, in.w);
        return -1;
    }
    const int w1 = (in.w + 1) / 2, w2 = (w1 + 1) / 2;
    snprintf(a->enc_spec, sizeof a->enc_spec,
             "conv1d(32,5,2,1,2) relu conv1d(64,5,2,1,2) relu linear(128) relu");
    snprintf(a->dec_spec, sizeof a->dec_spec,
             "linear(128) relu linear(%d) relu reshape(64,1,%d) convtranspose1d(32,5,2,2,%d) "
             "relu convtranspose1d(%d,5,2,2,%d)", 64 * w2, w2, w1 % 2 == 0, in.c, in.w % 2 == 0);
    return 0;
}

static int check_latent(int latent, char *err, size_t errlen) {
    if (latent >= 1 && latent <= VAE_MAX_LATENT) return 0;
    snprintf(err, errlen, "latent size %d out of range 1..%d", latent, VAE_MAX_LATENT);
    return -1;
}

/* An architecture that lays out: the specs parse on its input and the decoder returns
 * the input's size. */
static int check_layout(const vae_arch *a, char *err, size_t errlen) {
    vae_model m;
    return vae_layout(&m, a, err, errlen);
}

/* The index of preset name, or -1 with a message listing the known ones. */
static int find_preset(const char *name, char *err, size_t errlen) {
    int k = 0;
    while (PRESET_NAMES[k] && strcmp(PRESET_NAMES[k], name) != 0) k++;
    if (PRESET_NAMES[k]) return k;
    int used = snprintf(err, errlen, "unknown architecture '%s' (known:", name);
    for (int j = 0; PRESET_NAMES[j] && used >= 0 && (size_t)used < errlen; j++)
        used += snprintf(err + used, errlen - used, " %s", PRESET_NAMES[j]);
    if (used >= 0 && (size_t)used < errlen) snprintf(err + used, errlen - used, ")");
    return -1;
}

int vae_arch_preset_shape(const char *name, shape3 *in, char *err, size_t errlen) {
    int k = find_preset(name, err, errlen);
    if (k < 0) return -1;
    *in = PRESETS[k].in;
    return 0;
}

int vae_arch_for_input(vae_arch *a, const char *name, shape3 in, int latent, char *err,
                       size_t errlen) {
    memset(a, 0, sizeof *a);
    if (check_latent(latent, err, errlen)) return -1;
    int k = find_preset(name, err, errlen);
    if (k < 0) return -1;
    const preset *p = &PRESETS[k];
    const int given = in.c > 0 || in.h > 0 || in.w > 0;
    if (!p->enc && !given) {
        snprintf(err, errlen, "architecture '%s' derives its layers from the input shape, "
                 "and none was given", name);
        return -1;
    }
    if (p->enc && given && (in.c != p->in.c || in.h != p->in.h || in.w != p->in.w)) {
        snprintf(err, errlen, "architecture '%s' takes %dx%dx%d samples, not %dx%dx%d", name,
                 p->in.c, p->in.h, p->in.w, in.c, in.h, in.w);
        return -1;
    }
    a->in = given ? in : p->in;
    a->recon = RECON_BCE;
    a->latent = latent;
    snprintf(a->name, sizeof a->name, "%s", name);
    if (p->enc) {
        snprintf(a->enc_spec, sizeof a->enc_spec, "%s", p->enc);
        snprintf(a->dec_spec, sizeof a->dec_spec, "%s", p->dec);
    } else if (derive(a, name, a->in, err, errlen)) {
        return -1;
    }
    return check_layout(a, err, errlen);
}

int vae_arch_preset(vae_arch *a, const char *name, int latent, char *err, size_t errlen) {
    return vae_arch_for_input(a, name, (shape3){0, 0, 0}, latent, err, errlen);
}

int vae_arch_custom(vae_arch *a, shape3 in, int latent, const char *enc, const char *dec,
                    char *err, size_t errlen) {
    memset(a, 0, sizeof *a);
    if (check_latent(latent, err, errlen)) return -1;
    if (strlen(enc) >= sizeof a->enc_spec || strlen(dec) >= sizeof a->dec_spec) {
        snprintf(err, errlen, "an encoder or decoder spec longer than %d characters",
                 NET_SPEC_MAX - 1);
        return -1;
    }
    snprintf(a->name, sizeof a->name, "custom");
    a->in = in;
    a->latent = latent;
    a->recon = RECON_BCE;
    snprintf(a->enc_spec, sizeof a->enc_spec, "%s", enc);
    snprintf(a->dec_spec, sizeof a->dec_spec, "%s", dec);
    return check_layout(a, err, errlen);
}

int vae_layout(vae_model *m, const vae_arch *a, char *err, size_t errlen) {
    char enc_full[NET_SPEC_MAX + 32];
    memset(m, 0, sizeof *m);
    m->arch = *a;
    if (a->latent < 1 || a->latent > VAE_MAX_LATENT) {
        snprintf(err, errlen, "latent size %d out of range 1..%d", a->latent, VAE_MAX_LATENT);
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
    if (m->n_params > VAE_MAX_PARAMS) {
        snprintf(err, errlen, "architecture needs %zu parameters, more than the %zu allowed",
                 m->n_params, (size_t)VAE_MAX_PARAMS);
        return -1;
    }
    return 0;
}

int vae_create(vae_model *m, const vae_arch *a, uint64_t seed, char *err, size_t errlen) {
    if (vae_layout(m, a, err, errlen) != 0) return -1;
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

/* The workspace's buffers for batches of B, all floats, in one block (block.h). */
static void workspace_parts(block *b, vae_workspace *w, const vae_model *m, size_t B) {
    const size_t L = (size_t)m->arch.latent;
    const size_t work = net_work_floats(&m->enc, (int)B), dwork = net_work_floats(&m->dec, (int)B);
    const size_t dmax = m->enc.max_sample_act > m->dec.max_sample_act ? m->enc.max_sample_act
                                                                       : m->dec.max_sample_act;
    BLOCK_TAKE(b, w->enc_acts, B * m->enc.act_per_sample);
    BLOCK_TAKE(b, w->dec_acts, B * m->dec.act_per_sample);
    BLOCK_TAKE(b, w->enc_aux, net_aux_floats(&m->enc, (int)B));
    BLOCK_TAKE(b, w->dec_aux, net_aux_floats(&m->dec, (int)B));
    BLOCK_TAKE(b, w->z, B * L);
    BLOCK_TAKE(b, w->eps, B * L);
    BLOCK_TAKE(b, w->d_enc_out, B * 2 * L);
    BLOCK_TAKE(b, w->d_z, B * L);
    BLOCK_TAKE(b, w->d_dec_out, B * shape_size(m->dec.out));
    BLOCK_TAKE(b, w->dbuf, 2 * B * dmax);
    BLOCK_TAKE(b, w->work, work > dwork ? work : dwork);
}

int vae_workspace_init(vae_workspace *w, const vae_model *m, int max_batch) {
    block b = {0};
    memset(w, 0, sizeof *w);
    if (max_batch < 1) return -1;
    workspace_parts(&b, w, m, (size_t)max_batch);
    if (!(w->mem = block_alloc(&b))) return -1;
    workspace_parts(&b, w, m, (size_t)max_batch);
    w->max_batch = max_batch;
    rng_seed(&w->rng, 1);
    return 0;
}

void vae_workspace_free(vae_workspace *w) {
    free(w->mem);
    memset(w, 0, sizeof *w);
}

/* The encoder's (dec = 0) or decoder's (dec = 1) buffers in w. Train mode updates bn
 * running statistics only for the first shard of a data-parallel batch. */
static net_run run_of(vae_workspace *w, int dec, int train, int first_shard) {
    return (net_run){.train = train, .keep_bn_stats = !first_shard, .rng = &w->rng,
                     .acts = dec ? w->dec_acts : w->enc_acts, .aux = dec ? w->dec_aux : w->enc_aux,
                     .work = w->work, .dbuf = w->dbuf};
}

/* Encoder, reparameterisation, decoder; the loss terms as SUMS over the B samples;
 * returns the decoder output. Only train mode writes to m->params (bn running
 * statistics), so eval callers may pass a const model. */
static const float *forward(const vae_model *m, vae_workspace *w, const float *x,
                            const float *eps, int B, int train, int first_shard, vae_loss *sums) {
    const int L = m->arch.latent;
    net_run er = run_of(w, 0, train, first_shard), dr = run_of(w, 1, train, first_shard);
    const float *h = net_forward(&m->enc, m->params, x, B, &er);
    double kl = 0.0;
    for (int b = 0; b < B; b++) {
        const float *mu = h + (size_t)b * 2 * L, *lv = mu + L;
        for (int j = 0; j < L; j++) {
            float e = eps ? eps[(size_t)b * L + j] : 0.0f;
            w->z[(size_t)b * L + j] = eps ? mu[j] + expf(0.5f * lv[j]) * e : mu[j];
            if (sums) kl += -0.5 * (1.0 + lv[j] - (double)mu[j] * mu[j] - exp(lv[j]));
        }
    }
    const float *out = net_forward(&m->dec, m->params + m->enc.n_params, w->z, B, &dr);
    if (!sums) return out;
    const size_t n = (size_t)B * shape_size(m->dec.out);
    double recon = 0.0;
    for (size_t i = 0; i < n; i++) {
        double l = out[i], t = x[i];
        if (m->arch.recon == RECON_BCE) /* BCE with logits, stable for any l */
            recon += (l > 0 ? l : 0) - l * t + log1p(exp(-fabs(l)));
        else
            recon += (l - t) * (l - t);
    }
    *sums = (vae_loss){.recon = recon, .kl = kl};
    return out;
}

vae_loss vae_objective(vae_loss sums, int B, float beta, float capacity, float *dkl) {
    vae_loss l = {.recon = sums.recon / B, .kl = sums.kl / B};
    l.loss = l.recon + beta * fabs(l.kl - capacity);
    /* d|KL - C| / dKL is the sign of KL - C (0 exactly at C, as torch.abs). */
    if (dkl) *dkl = l.kl > capacity ? beta : (l.kl < capacity ? -beta : 0.0f);
    return l;
}

vae_loss vae_evaluate(const vae_model *m, vae_workspace *w, const float *x, const float *eps,
                      int B, float beta, float capacity) {
    vae_loss sums;
    forward(m, w, x, eps, B, 0, 1, &sums);
    return vae_objective(sums, B, beta, capacity, NULL);
}

vae_loss vae_forward_train(vae_model *m, vae_workspace *w, const float *x, const float *eps,
                           int B, int first_shard) {
    vae_loss sums;
    forward(m, w, x, eps, B, 1, first_shard, &sums);
    return sums;
}

/* The encoder's output (mu, logvar per sample) and the decoder's of the last forward
 * pass in w: each net's last activation. */
static const float *enc_output(const vae_model *m, const vae_workspace *w, int B) {
    return w->enc_acts + (size_t)B * (m->enc.act_per_sample - 2 * (size_t)m->arch.latent);
}

static const float *dec_output(const vae_model *m, const vae_workspace *w, int B) {
    return w->dec_acts + (size_t)B * (m->dec.act_per_sample - shape_size(m->dec.out));
}

void vae_last_outputs(const vae_model *m, const vae_workspace *w, int B, float *mu,
                      float *logvar, float *out) {
    const size_t L = (size_t)m->arch.latent;
    const float *h = enc_output(m, w, B);
    for (int b = 0; b < B; b++) {
        if (mu) memcpy(mu + b * L, h + b * 2 * L, L * sizeof(float));
        if (logvar) memcpy(logvar + b * L, h + b * 2 * L + L, L * sizeof(float));
    }
    if (out) memcpy(out, dec_output(m, w, B), (size_t)B * shape_size(m->dec.out) * sizeof(float));
}

void vae_backward(const vae_model *m, vae_workspace *w, float *grads, const float *x,
                  const float *eps, int B, float scale, float dkl) {
    const int L = m->arch.latent;
    net_run er = run_of(w, 0, 1, 0), dr = run_of(w, 1, 1, 0);
    const float *h = enc_output(m, w, B), *out = dec_output(m, w, B);
    const size_t n = (size_t)B * shape_size(m->dec.out);

    for (size_t i = 0; i < n; i++) {
        float l = out[i];
        if (m->arch.recon == RECON_BCE) {
            float s = l >= 0 ? 1.0f / (1.0f + expf(-l)) : expf(l) / (1.0f + expf(l));
            w->d_dec_out[i] = (s - x[i]) * scale;
        } else {
            w->d_dec_out[i] = 2.0f * (l - x[i]) * scale;
        }
    }
    memset(grads, 0, m->n_params * sizeof(float));
    memset(w->d_z, 0, (size_t)B * L * sizeof(float));
    net_backward(&m->dec, m->params + m->enc.n_params, grads + m->enc.n_params, w->z,
                 w->d_dec_out, w->d_z, B, &dr);
    for (int b = 0; b < B; b++) {
        const float *mu = h + (size_t)b * 2 * L, *lv = mu + L;
        float *dmu = w->d_enc_out + (size_t)b * 2 * L, *dlv = dmu + L;
        for (int j = 0; j < L; j++) {
            float dz = w->d_z[(size_t)b * L + j];
            float e = eps ? eps[(size_t)b * L + j] : 0.0f;
            float sigma = expf(0.5f * lv[j]);
            dmu[j] = dz + dkl * mu[j] * scale;
            dlv[j] = dz * e * 0.5f * sigma + dkl * 0.5f * (sigma * sigma - 1.0f) * scale;
        }
    }
    net_backward(&m->enc, m->params, grads, x, w->d_enc_out, NULL, B, &er);
}

void vae_encode(const vae_model *m, vae_workspace *w, const float *x, int B, float *mu,
                float *logvar) {
    net_run er = run_of(w, 0, 0, 1);
    net_forward(&m->enc, m->params, x, B, &er);
    vae_last_outputs(m, w, B, mu, logvar, NULL);
}

void vae_reconstruct(const vae_model *m, vae_workspace *w, const float *x, const float *eps,
                     int B, float *x_rec, float *mu) {
    const float *out = forward(m, w, x, eps, B, 0, 1, NULL);
    const size_t n = (size_t)B * shape_size(m->dec.out);
    if (m->arch.recon == RECON_BCE)
        sigmoid_forward(x_rec, out, n);
    else
        memcpy(x_rec, out, n * sizeof(float));
    vae_last_outputs(m, w, B, mu, NULL, NULL);
}

/* Samples vae_infer_run takes through the encoder before the decoder: the size of its
 * h and z buffers. */
#define INFER_CHUNK 64

int vae_infer_init(vae_infer *vi, const vae_model *m, char *err, size_t errlen) {
    const size_t L = (size_t)m->arch.latent;
    memset(vi, 0, sizeof *vi);
    if (net_plan_supported(&m->enc) &&
        !(vi->enc = net_plan_create(&m->enc, m->params, err, errlen)))
        return -1;
    if (net_plan_supported(&m->dec) &&
        !(vi->dec = net_plan_create(&m->dec, m->params + m->enc.n_params, err, errlen))) {
        vae_infer_free(vi);
        return -1;
    }
    vi->h = malloc(INFER_CHUNK * 3 * L * sizeof(float));
    if (!vi->h || ((!vi->enc || !vi->dec) && vae_workspace_init(&vi->w, m, 1) != 0)) {
        vae_infer_free(vi);
        snprintf(err, errlen, "out of memory for the network's inference buffers");
        return -1;
    }
    vi->z = vi->h + INFER_CHUNK * 2 * L;
    return 0;
}

void vae_infer_free(vae_infer *vi) {
    net_plan_free(vi->enc);
    net_plan_free(vi->dec);
    vae_workspace_free(&vi->w);
    free(vi->h);
    memset(vi, 0, sizeof *vi);
}

/* out = net(in) for B samples: through its plan, or one sample at a time. */
static void infer_net(vae_infer *vi, net_plan *plan, const net_def *n, const float *params,
                      int dec, const float *in, int B, float *out) {
    if (plan) {
        net_plan_forward(plan, in, B, out);
        return;
    }
    const size_t in_n = shape_size(n->in), out_n = shape_size(n->out);
    net_run r = run_of(&vi->w, dec, 0, 1);
    for (int b = 0; b < B; b++)
        memcpy(out + b * out_n, net_forward(n, (float *)params, in + b * in_n, 1, &r),
               out_n * sizeof(float));
}

void vae_infer_run(vae_infer *vi, const vae_model *m, const float *x, int B, float *x_rec,
                   float *mu, float *logvar) {
    const size_t L = (size_t)m->arch.latent, dim = shape_size(m->arch.in);
    for (int at = 0; at < B; at += INFER_CHUNK) {
        const int n = B - at < INFER_CHUNK ? B - at : INFER_CHUNK;
        infer_net(vi, vi->enc, &m->enc, m->params, 0, x + at * dim, n, vi->h);
        for (int b = 0; b < n; b++) {
            const float *h = vi->h + b * 2 * L;
            memcpy(vi->z + b * L, h, L * sizeof(float));
            if (mu) memcpy(mu + (at + b) * L, h, L * sizeof(float));
            if (logvar) memcpy(logvar + (at + b) * L, h + L, L * sizeof(float));
        }
        if (!x_rec) continue;
        float *rec = x_rec + at * dim;
        infer_net(vi, vi->dec, &m->dec, m->params + m->enc.n_params, 1, vi->z, n, rec);
        if (m->arch.recon == RECON_BCE) sigmoid_forward(rec, rec, (size_t)n * dim);
    }
}
