/* The tiny detector of fuzz_model.h (tests/test_bundle.c builds on it too). */
#include "fuzz_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

enum { N_REF = FUZZ_MODEL_N_REF, N_CAL = FUZZ_MODEL_N_CAL, LATENT = FUZZ_MODEL_LATENT };

int fuzz_model_make(detector *d, place_mode mode, char *err, size_t errlen) {
    vae_arch a = {.name = "custom", .in = {1, 4, 4}, .latent = LATENT, .recon = RECON_MSE};
    rng_t rng;
    memset(d, 0, sizeof *d);
    snprintf(a.enc_spec, sizeof a.enc_spec, "linear(4) relu");
    snprintf(a.dec_spec, sizeof a.dec_spec, "linear(16)");
    if (vae_create(&d->vae, &a, 3, err, errlen) != 0) return -1;
    d->n_ref = N_REF;
    d->n_cal = N_CAL;
    d->ref_latent = malloc(N_REF * LATENT * sizeof(float));
    d->ref_map = malloc(N_REF * 2 * sizeof(float));
    d->ref_id = malloc(N_REF * sizeof(int32_t));
    d->cal_scores = malloc(N_CAL * sizeof(float));
    d->provenance = strdup("{\"data\": \"synthetic\", \"seed\": 7}");
    if (!d->ref_latent || !d->ref_map || !d->ref_id || !d->cal_scores || !d->provenance) {
        snprintf(err, errlen, "out of memory");
        detector_free(d);
        return -1;
    }
    rng_seed(&rng, 11);
    rng_fill_normal(&rng, d->ref_latent, N_REF * LATENT);
    rng_fill_normal(&rng, d->ref_map, N_REF * 2);
    for (int i = 0; i < N_REF; i++) d->ref_id[i] = 3 * i + 1;
    float s = -1.0f;
    for (int i = 0; i < N_CAL; i++) d->cal_scores[i] = s += 0.1f + rng_uniform(&rng);
    d->mode = mode;
    tsne_place_options_default(&d->place);
    d->place.perplexity = 2.0;
    d->place.exact = 1;
    d->window = 16;
    d->k = 2;
    d->alpha = 0.5;
    d->re = (term_stats){0.1, 0.03};
    d->map = (term_stats){0.5, 0.2};
    d->latent = (term_stats){1.0, 0.5};   /* without it every score would be non-finite */
    d->quantile = 0.99;
    d->threshold = 2.0;
    return 0;
}
