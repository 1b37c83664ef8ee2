/* rng.h — the seeded random number generator behind every random choice in anodm.
 *
 * Training, sampling z, dropout masks, shuffles and t-SNE initialisation all draw from
 * an rng_t passed in explicitly, never from global state, so that a run is reproducible
 * from its seed. The generator is xoshiro256** seeded through splitmix64. */
#ifndef ANODM_RNG_H
#define ANODM_RNG_H

#include <stdint.h>
#include <stddef.h>

typedef struct { uint64_t s[4]; } rng_t;

void rng_seed(rng_t *r, uint64_t seed);           /* same seed, same stream */
/* SplitMix64 (Steele, Lea, Flood): the next value of the tiny generator whose whole state
 * is *state; for a choice that must depend on its seed alone. */
uint64_t rng_splitmix64(uint64_t *state);
uint64_t rng_u64(rng_t *r);                        /* uniform 64-bit integer */
float rng_uniform(rng_t *r);                       /* uniform in [0, 1) */
uint64_t rng_below(rng_t *r, uint64_t n);          /* uniform integer in [0, n), n > 0 */
float rng_normal(rng_t *r);                        /* standard normal (Box-Muller) */
void rng_fill_normal(rng_t *r, float *out, size_t n);  /* n standard normals */
void rng_shuffle(rng_t *r, size_t *idx, size_t n); /* Fisher-Yates permutation in place */

#endif
