/* fuzz_model.h — the tiny detector the fuzzing seeds and the router target are built on.
 *
 * One synthetic but complete detector (a 16-value input, a 136-parameter VAE, 10
 * reference points, 8 calibration scores; its bundle is about 1.7 kB), made the same way
 * every time, so the generated seed files and the router's in-memory model agree. */
#ifndef ANODM_FUZZ_MODEL_H
#define ANODM_FUZZ_MODEL_H

#include "detector.h"

#define FUZZ_MODEL_DIM 16
enum { FUZZ_MODEL_N_REF = 10, FUZZ_MODEL_N_CAL = 8, FUZZ_MODEL_LATENT = 2 };

/* Fill d (detector_free it); mode is PLACE_SINGLE or PLACE_CONTEXT. 0, or -1 with err. */
int fuzz_model_make(detector *d, place_mode mode, char *err, size_t errlen);

#endif
