/* fixture.h — reading the PyTorch parity fixtures written by tests/gen_fixtures.py.
 *
 * A fixture file is a gzip stream of named float32 tensors:
 *   "ANTF", u32 version (1), u32 count, then per tensor:
 *   u32 name_len, name bytes, u32 ndim, u32 dims[ndim], float32 data[prod(dims)]
 * all little-endian. Weights and inputs are not stored when both sides can make them:
 * det_fill() is the generator that the Python script implements identically. */
#ifndef ANODM_FIXTURE_H
#define ANODM_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

typedef struct fixture fixture;

fixture *fixture_load(const char *name);       /* tests/fixtures/NAME.bin.gz; NULL + message */
void fixture_free(fixture *fx);
/* The tensor called `name`, which must hold exactly n values: the caller says how many it
 * will read, so no caller can read past a short tensor or compare a wrong-sized one.
 * NULL and a failed check if it is absent or of another size. */
const float *fixture_get(const fixture *fx, const char *name, size_t n);
/* The tensor's value as a scalar (it must hold one value; NaN and a failed check if not). */
float fixture_scalar(const fixture *fx, const char *name);

/* Deterministic pseudo-random values in [lo, hi): element i of stream `seed`. */
void det_fill(float *out, size_t n, uint32_t seed, float lo, float hi);

#endif
