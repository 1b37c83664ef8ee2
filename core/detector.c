/* The detector's lifetime (see detector.h): it owns every array it points to. */
#include "detector.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

void detector_free(detector *d) {
    vae_free(&d->vae);
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
