/* The training loop, data-parallel over the cores.
 *
 * Each batch is split into one shard per thread. A thread runs its shard's forward pass
 * and, once the whole batch's KL is known (|KL - C| needs its sign), the backward pass
 * into its own gradient buffer; then every thread sums one slice of the gradients over
 * the shards (that much is vae_trainer_gradient, the function the tests check against
 * PyTorch) and applies Adam to that slice. BLAS runs single-threaded inside each
 * shard: one big sgemm per layer per thread keeps both cores busy, where a threaded BLAS
 * under a serial network leaves them waiting on im2col and activations in between.
 *
 * As in PyTorch's DistributedDataParallel without SyncBatchNorm, bn layers normalise each
 * shard with its own statistics and the first shard updates the running statistics; a
 * run is reproducible for the same seed and the same number of threads. */
#include "train.h"
#include "clock.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adam.h"
#include "errmsg.h"

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

train_opts train_defaults(void) {
    return (train_opts){.epochs = 20, .batch = 100, .lr = 1e-3f, .beta = 0.01f, .seed = 1};
}

/* Late in training Adam's second moments and many gradients sink below FLT_MIN, and
 * arithmetic on such subnormal floats is ~100x slower on x86: the Adam loop alone grew
 * to a third of an epoch. Flushing them to zero (FTZ and DAZ, per thread) changes no
 * result that matters: the values are below 1e-38. Returns the previous mode. */
static unsigned flush_subnormals(void) {
#if defined(__SSE__)
    unsigned old = _mm_getcsr();
    _mm_setcsr(old | 0x8040u); /* FTZ (bit 15) | DAZ (bit 6) */
    return old;
#else
    return 0;
#endif
}

static void restore_float_mode(unsigned old) {
#if defined(__SSE__)
    _mm_setcsr(old);
#else
    (void)old;
#endif
}

/* One thread's share of a step. */
typedef struct {
    vae_trainer *t;
    int index;
    vae_workspace w;
    float *grads;            /* shard 0 uses the model's own buffer */
    int lo, B;               /* its samples within the batch */
    vae_loss sums;
} shard;

struct vae_trainer {
    vae_model *m;
    adam_state *opt;         /* vae_train's, for the update phase */
    int n_shards;            /* shards of this batch (a small last batch uses fewer) */
    int n_threads;
    const float *xb, *eps;   /* the batch and its noise */
    size_t dim;
    float scale, dkl;        /* backward's factors, from the whole batch */
    shard shards[PAR_MAX_THREADS];
};

static void shard_forward(shard *s) {
    flush_subnormals();
    const vae_trainer *t = s->t;
    const size_t L = (size_t)t->m->arch.latent;
    s->sums = vae_forward_train(t->m, &s->w, t->xb + (size_t)s->lo * t->dim,
                                t->eps ? t->eps + (size_t)s->lo * L : NULL, s->B, s->index == 0);
}

static void shard_backward(shard *s) {
    flush_subnormals();
    const vae_trainer *t = s->t;
    const size_t L = (size_t)t->m->arch.latent;
    vae_backward(t->m, &s->w, s->grads, t->xb + (size_t)s->lo * t->dim,
                 t->eps ? t->eps + (size_t)s->lo * L : NULL, s->B, t->scale, t->dkl);
}

/* This thread's slice [lo, hi) of the parameters: the update phases split the work so. */
static void shard_slice(const shard *s, size_t *lo, size_t *hi) {
    size_t n = s->t->m->n_params;
    *lo = n * s->index / s->t->n_shards;
    *hi = n * (s->index + 1) / s->t->n_shards;
}

/* Sum this thread's slice of the gradients over the shards, into shard 0's (m->grads). */
static void shard_sum(shard *s) {
    flush_subnormals();
    const vae_trainer *t = s->t;
    size_t lo, hi;
    shard_slice(s, &lo, &hi);
    float *g = t->shards[0].grads;
    for (int k = 1; k < t->n_shards; k++)
        for (size_t i = lo; i < hi; i++) g[i] += t->shards[k].grads[i];
}

/* Adam on this thread's slice. */
static void shard_adam(shard *s) {
    flush_subnormals();
    const vae_trainer *t = s->t;
    size_t lo, hi;
    shard_slice(s, &lo, &hi);
    adam_update(t->opt, t->m->params, t->m->grads, lo, hi);
}

/* Run fn on every shard, the first on this thread. */
typedef void (*shard_fn)(shard *s);
typedef struct {
    vae_trainer *t;
    shard_fn fn;
} shard_job;

static void shard_range(void *ctx, int begin, int end) {
    shard_job *j = ctx;
    for (int k = begin; k < end; k++) j->fn(&j->t->shards[k]);
}

static void run_shards(vae_trainer *t, shard_fn fn) {
    shard_job j = {t, fn};
    par_for(t->n_shards, t->n_shards, shard_range, &j);
}

void vae_trainer_free(vae_trainer *t) {
    if (!t) return;
    for (int k = 0; k < t->n_threads; k++) {
        vae_workspace_free(&t->shards[k].w);
        if (k) free(t->shards[k].grads);
    }
    free(t);
}

void vae_trainer_reseed(vae_trainer *t, uint64_t seed) {
    for (int k = 0; k < t->n_threads; k++) rng_seed(&t->shards[k].w.rng, ~seed + (uint64_t)k);
}

vae_trainer *vae_trainer_new(vae_model *m, int max_batch, int threads, uint64_t seed) {
    if (threads < 1) threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1) threads = 1;
    if (threads > PAR_MAX_THREADS) threads = PAR_MAX_THREADS;
    if (max_batch < 1) return NULL;
    vae_trainer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->m = m;
    t->dim = shape_size(m->arch.in);
    t->n_threads = threads;
    int ok = 1;
    const int per_shard = (max_batch + threads - 1) / threads;
    for (int k = 0; k < threads; k++) {
        shard *s = &t->shards[k];
        s->t = t;
        s->index = k;
        s->grads = k ? malloc(m->n_params * sizeof(float)) : m->grads;
        if (vae_workspace_init(&s->w, m, per_shard) != 0 || !s->grads) ok = 0;
    }
    if (!ok) {
        vae_trainer_free(t);
        return NULL;
    }
    vae_trainer_reseed(t, seed);   /* dropout: each shard its own stream */
    return t;
}

vae_loss vae_trainer_gradient(vae_trainer *t, const float *x, const float *eps, int B,
                              float beta, float capacity) {
    unsigned float_mode = flush_subnormals();
    /* Every shard gets at least two samples: batch statistics of one sample are void. */
    int shards = B / 2 < t->n_threads ? (B / 2 > 0 ? B / 2 : 1) : t->n_threads;
    t->n_shards = shards;
    t->xb = x;
    t->eps = eps;
    for (int k = 0; k < shards; k++) {
        t->shards[k].lo = B * k / shards;
        t->shards[k].B = B * (k + 1) / shards - t->shards[k].lo;
    }
    run_shards(t, shard_forward);
    vae_loss sum = {0};
    for (int k = 0; k < shards; k++) {
        sum.recon += t->shards[k].sums.recon;
        sum.kl += t->shards[k].sums.kl;
    }
    vae_loss mean = vae_objective(sum, B, beta, capacity, &t->dkl);
    t->scale = 1.0f / (float)B;
    run_shards(t, shard_backward);
    if (shards > 1) run_shards(t, shard_sum);
    restore_float_mode(float_mode);
    return mean;
}

void vae_trainer_outputs(const vae_trainer *t, float *mu, float *logvar, float *out) {
    const size_t L = (size_t)t->m->arch.latent;
    for (int k = 0; k < t->n_shards; k++) {
        const shard *s = &t->shards[k];
        vae_last_outputs(t->m, &s->w, s->B, mu ? mu + s->lo * L : NULL,
                         logvar ? logvar + s->lo * L : NULL, out ? out + s->lo * t->dim : NULL);
    }
}

/* One optimisation step on the B samples x with noise eps; returns the batch's mean
 * losses. */
static vae_loss train_step(vae_trainer *t, const float *x, const float *eps, int B,
                           float beta, float capacity) {
    vae_loss mean = vae_trainer_gradient(t, x, eps, B, beta, capacity);
    adam_begin_step(t->opt);
    run_shards(t, shard_adam);
    return mean;
}

int train_opts_check(const train_opts *o, char *err, size_t errlen) {
    if (o->epochs < 1) return err_fail(err, errlen, "epochs %d: at least 1", o->epochs);
    if (o->batch < 1) return err_fail(err, errlen, "batch %d: at least 1", o->batch);
    if (!(o->lr > 0 && isfinite(o->lr)))
        return err_fail(err, errlen, "lr %g is not a finite number > 0", o->lr);
    if (!(o->beta >= 0 && isfinite(o->beta)))
        return err_fail(err, errlen, "beta %g is not a finite number >= 0", o->beta);
    if (!(o->capacity >= 0 && isfinite(o->capacity)) ||
        !(o->capacity_ramp_epochs >= 0 && isfinite(o->capacity_ramp_epochs)))
        return err_fail(err, errlen, "capacity %g and its ramp %g epochs must be finite and "
                        ">= 0", o->capacity, o->capacity_ramp_epochs);
    if (o->seed < 1) return err_fail(err, errlen, "seed 0: seeds start at 1");
    if (o->threads < 0 || o->threads > PAR_MAX_THREADS)
        return err_fail(err, errlen, "threads %d outside 1..%d (0: one per core)", o->threads,
                        PAR_MAX_THREADS);
    return 0;
}

int vae_train(vae_model *m, const float *x, size_t n, const train_opts *o,
              train_progress_fn progress, void *ctx, char *err, size_t errlen) {
    const size_t dim = shape_size(m->arch.in), L = (size_t)m->arch.latent;
    if (train_opts_check(o, err, errlen)) return -1;
    if (n < 2) {
        snprintf(err, errlen, "training needs at least 2 samples, got %zu", n);
        return -1;
    }
    const int B_max = (size_t)o->batch < n ? o->batch : (int)n;
    vae_trainer *t = vae_trainer_new(m, B_max, o->threads, o->seed);
    adam_state opt;
    int opt_ok = adam_init(&opt, m->n_params, o->lr) == 0;
    size_t *order = malloc(n * sizeof *order);
    float *xb = malloc((size_t)B_max * dim * sizeof(float));
    float *eps = malloc((size_t)B_max * L * sizeof(float));
    int rc = -1, blas_threads = openblas_get_num_threads();
    unsigned float_mode = 0;
    int float_mode_set = 0;
    if (!t || !opt_ok || !order || !xb || !eps) {
        snprintf(err, errlen, "out of memory for training buffers");
        goto done;
    }
    t->opt = &opt;
    openblas_set_num_threads(1);
    float_mode = flush_subnormals();
    float_mode_set = 1;
    rng_t rng;
    rng_seed(&rng, o->seed);
    for (size_t i = 0; i < n; i++) order[i] = i;
    const size_t steps_per_epoch = (n + B_max - 1) / B_max;
    const double ramp_steps = o->capacity_ramp_epochs * (double)steps_per_epoch;
    long step = 0;
    for (int e = 1; e <= o->epochs; e++) {
        double t0 = clock_seconds(), sum_loss = 0, sum_recon = 0, sum_kl = 0;
        size_t seen = 0;
        rng_shuffle(&rng, order, n);
        for (size_t start = 0; start < n; start += B_max) {
            int B = (int)(n - start < (size_t)B_max ? n - start : (size_t)B_max);
            if (B < 2) break; /* a last batch of one sample: no batch statistics */
            for (int b = 0; b < B; b++)
                memcpy(xb + (size_t)b * dim, x + order[start + b] * dim, dim * sizeof(float));
            rng_fill_normal(&rng, eps, (size_t)B * L);
            float c = o->capacity;
            if (ramp_steps > 0 && step < ramp_steps) c = (float)(o->capacity * step / ramp_steps);
            vae_loss l = train_step(t, xb, eps, B, o->beta, c);
            sum_loss += l.loss * B;
            sum_recon += l.recon * B;
            sum_kl += l.kl * B;
            seen += (size_t)B;
            step++;
        }
        if (!(sum_loss == sum_loss) || sum_loss / seen > 1e30) {
            snprintf(err, errlen, "training diverged in epoch %d (loss %g); lower the "
                     "learning rate", e, sum_loss / seen);
            goto done;
        }
        if (progress) {
            double dt = clock_seconds() - t0;
            train_progress p = {.epoch = e, .epochs = o->epochs, .loss = sum_loss / seen,
                                .recon = sum_recon / seen, .kl = sum_kl / seen, .seconds = dt,
                                .samples_per_s = seen / dt, .eta_seconds = dt * (o->epochs - e)};
            progress(&p, ctx);
        }
    }
    rc = 0;
done:
    if (float_mode_set) restore_float_mode(float_mode);
    openblas_set_num_threads(blas_threads);
    vae_trainer_free(t);
    adam_free(&opt);
    free(order);
    free(xb);
    free(eps);
    return rc;
}
