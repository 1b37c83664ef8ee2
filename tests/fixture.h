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
/* The tensor called `name`; its element count in *n (may be NULL). NULL + failed check if absent. */
const float *fixture_get(const fixture *fx, const char *name, size_t *n);
/* The tensor's value as a scalar (the tensor must hold one element). */
float fixture_scalar(const fixture *fx, const char *name);

/* Deterministic pseudo-random values in [lo, hi): element i of stream `seed`. */
void det_fill(float *out, size_t n, uint32_t seed, float lo, float hi);

#endif
