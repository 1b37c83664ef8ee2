/* The detector's lifetime (see detector.h): it owns every array it points to. */
#include "detector.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "errmsg.h"
#include "rng.h"

void detector_free(detector *d) {
    vae_free(&d->vae);
    scaling_free(&d->scale);
    free(d->ref_latent);
    free(d->ref_map);
    free(d->ref_id);
    free(d->cal_scores);
    free(d->cal_base);
    free(d->cal_memory);
    free(d->provenance);
    /* Zeroed, not just freed: a second call, or one on a detector a failed load left
     * behind, then frees nothing. */
    memset(d, 0, sizeof *d);
}

void detector_sample_z(const float *x, size_t dim, const float *mu, const float *logvar,
                       int latent, float *z) {
    /* FNV-1a over the sample's bytes: equal inputs, equal seeds, equal z. */
    uint64_t h = 0xcbf29ce484222325ULL;
    const unsigned char *p = (const unsigned char *)x;
    for (size_t i = 0; i < dim * sizeof *x; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    rng_t r;
    rng_seed(&r, h);
    for (int j = 0; j < latent; j++) z[j] = mu[j] + expf(0.5f * logvar[j]) * rng_normal(&r);
}

int detector_check_scoring(const detector *d, char *err, size_t errlen) {
    if ((d->mode != PLACE_SINGLE && d->mode != PLACE_CONTEXT) || d->window < 0 ||
        d->window > DETECTOR_MAX_WINDOW || (d->mode == PLACE_CONTEXT && d->window < 1))
        return err_fail(err, errlen, "scoring: mode %d with window %d: single mode needs a "
                        "window in 0..%d, context mode in 1..%d", (int)d->mode, d->window,
                        DETECTOR_MAX_WINDOW, DETECTOR_MAX_WINDOW);
    if (d->k < 1 || d->k > d->n_ref)
        return err_fail(err, errlen, "scoring: k = %d is not in [1, n_ref = %d]", d->k,
                        d->n_ref);
    if (!(d->alpha >= 0.0 && d->alpha <= 1.0))
        return err_fail(err, errlen, "scoring: alpha = %g is not in [0, 1]", d->alpha);
    if (d->term != TERM_MAP && d->term != TERM_LATENT)
        return err_fail(err, errlen, "scoring: term %d is neither map nor latent", (int)d->term);
    if (d->input != LATENT_MU && d->input != LATENT_Z)
        return err_fail(err, errlen, "scoring: latent input %d is neither mu nor z",
                        (int)d->input);
    /* The placement's own preconditions, so that a detector that passes cannot fail on
     * its first sample. */
    if (tsne_place_options_check(&d->place, d->n_ref, err, errlen)) {
        err_prefix(err, errlen, "scoring");
        return -1;
    }
    if (d->use_memory && memory_options_check(&d->memory, err, errlen)) {
        err_prefix(err, errlen, "scoring");
        return -1;
    }
    /* Single mode reads the memory term's reference side off placement's search. */
    if (d->use_memory && d->mode == PLACE_SINGLE &&
        d->memory.k > tsne_neighbours(d->place.perplexity))
        return err_fail(err, errlen, "scoring: memory k %d is more than the %d neighbours "
                        "placement searches at perplexity %g", d->memory.k,
                        tsne_neighbours(d->place.perplexity), d->place.perplexity);
    if (d->use_memory && !(d->fusion >= FUSION_BASE && d->fusion < FUSION_N))
        return err_fail(err, errlen, "scoring: fusion %d is not one of score.h's", (int)d->fusion);
    return 0;
}

/* n ascending finite floats: 0, or -1 naming what. */
static int check_ascending(const float *v, size_t n, const char *what, char *err, size_t errlen) {
    if (!v) return err_fail(err, errlen, "%s: missing", what);
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(v[i])) return err_fail(err, errlen, "%s: value %zu is not finite", what, i);
        if (i && v[i] < v[i - 1]) return err_fail(err, errlen, "%s: not ascending at %zu", what, i);
    }
    return 0;
}

/* Index of the first non-finite value, or n. */
static size_t first_nonfinite(const float *x, size_t n) {
    size_t i = 0;
    while (i < n && isfinite(x[i])) i++;
    return i;
}

static int finite_stats(term_stats t) {
    return isfinite(t.center) && isfinite(t.scale) && t.scale > 0;
}

int detector_check(const detector *d, char *err, size_t errlen) {
    const vae_arch *a = &d->vae.arch;
    vae_model layout;
    char sub[256];
    size_t bad;
    if (!memchr(a->name, 0, sizeof a->name) || !memchr(a->enc_spec, 0, sizeof a->enc_spec) ||
        !memchr(a->dec_spec, 0, sizeof a->dec_spec) ||
        (a->recon != RECON_BCE && a->recon != RECON_MSE))
        return err_fail(err, errlen, "architecture: malformed name, spec or recon kind");
    if (vae_layout(&layout, a, sub, sizeof sub) != 0)
        return err_fail(err, errlen, "architecture: %s", sub);
    if (!d->vae.params || d->vae.n_params != layout.n_params)
        return err_fail(err, errlen, "the model holds %zu parameters, its architecture needs "
                        "%zu", d->vae.params ? d->vae.n_params : 0, layout.n_params);
    if (scaling_check(&d->scale, shape_size(a->in), err, errlen)) return -1;
    /* Sizes before contents: the arrays are read only once their sizes are sane. */
    if (d->n_ref < 1 || d->n_ref > DETECTOR_MAX_REF)
        return err_fail(err, errlen, "%d reference points, outside 1..%d", d->n_ref,
                        DETECTOR_MAX_REF);
    if (d->n_cal < 1) return err_fail(err, errlen, "%d calibration scores: none", d->n_cal);
    if (!d->ref_latent || !d->ref_map || !d->ref_id || !d->cal_scores)
        return err_fail(err, errlen, "reference or calibration arrays missing");
    const size_t n_ref = (size_t)d->n_ref, n_cal = (size_t)d->n_cal;
    if ((bad = first_nonfinite(d->vae.params, d->vae.n_params)) < d->vae.n_params)
        return err_fail(err, errlen, "weights: parameter %zu is not finite", bad);
    if ((bad = first_nonfinite(d->ref_latent, n_ref * (size_t)a->latent)) <
        n_ref * (size_t)a->latent)
        return err_fail(err, errlen, "ref_latent: value %zu is not finite", bad);
    if ((bad = first_nonfinite(d->ref_map, 2 * n_ref)) < 2 * n_ref)
        return err_fail(err, errlen, "ref_map: value %zu is not finite", bad);
    for (size_t i = 0; i < n_ref; i++)
        if (d->ref_id[i] < 0)
            return err_fail(err, errlen, "ref_id: point %zu has negative id %d", i,
                            (int)d->ref_id[i]);
    if (detector_check_scoring(d, err, errlen)) return -1;
    if (!finite_stats(d->re) || !finite_stats(d->map))
        return err_fail(err, errlen, "calibration: term centers must be finite and scales "
                        "finite and > 0");
    if (d->term == TERM_LATENT && !finite_stats(d->latent))
        return err_fail(err, errlen, "scoring: term %d needs calibration statistics for it, "
                        "with a finite center and a finite scale > 0", (int)d->term);
    if (!(d->quantile > 0 && d->quantile <= 1) || !isfinite(d->threshold))
        return err_fail(err, errlen, "calibration: quantile %g must be in (0, 1] and threshold "
                        "%g finite", d->quantile, d->threshold);
    if (check_ascending(d->cal_scores, n_cal, "cal_scores", err, errlen)) return -1;
    if (d->use_memory && !finite_stats(d->mem))
        return err_fail(err, errlen, "calibration: the memory term needs statistics with a "
                        "finite center and a finite scale > 0");
    if (d->use_memory && d->fusion == FUSION_FISHER &&
        (check_ascending(d->cal_base, n_cal, "cal_base", err, errlen) ||
         check_ascending(d->cal_memory, n_cal, "cal_memory", err, errlen)))
        return -1;
    return 0;
}

int detector_result_finite(const detector *d, const detector_result *r) {
    /* NaN by design: the memory's terms without a memory, and a standardised term whose
     * statistics the bundle does not have (z_latent of a format-1 bundle). */
    detector_result t = *r;
    if (!d->use_memory) t.d_memory = t.z_memory = 0.0;
    if (!isfinite(d->latent.center) || !isfinite(d->latent.scale)) t.z_latent = 0.0;
#define DETECTOR_FINITE_(name, type, group, doc) if (!isfinite((double)t.name)) return 0;
    DETECTOR_RESULT_FIELDS(DETECTOR_FINITE_)
#undef DETECTOR_FINITE_
    return 1;
}
