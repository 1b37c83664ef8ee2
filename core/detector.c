/* The detector's lifetime (see detector.h): it owns every array it points to. */
#include "detector.h"

#include <stdlib.h>
#include <string.h>

void detector_free(detector *d) {
    vae_free(&d->vae);
    free(d->ref_latent);
    free(d->ref_map);
    free(d->ref_id);
    free(d->cal_scores);
    free(d->provenance);
    /* Zeroed, not just freed: a second call, or one on a detector a failed load left
     * behind, then frees nothing. */
    memset(d, 0, sizeof *d);
}
