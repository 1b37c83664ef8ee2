/* memstate.h — the stream memory written down: the snapshot of one memory
 * (core/memory.h's memory_state) and the latent of one kept sample, as anodmd stores them
 * in its SQLite log so that a restart finds each model's memory as it was.
 *
 * Both are read back from a database the daemon does not fully control (a disk can rot, a
 * hand can edit), so the decoder checks magic, version, every count against its limits,
 * the exact length and a CRC-32 before it allocates or trusts a byte; what the values must
 * mean (each slot once, the heap's order, finite latents) memory_import checks. A bad
 * snapshot is a message and a memory started afresh, never a crash. The layout is
 * specified in proto/MEMSTATE.md. */
#ifndef ANODM_MEMSTATE_H
#define ANODM_MEMSTATE_H

#include <stddef.h>
#include <stdint.h>

#include "memory.h"

#define MEMSTATE_VERSION 2
#define MEMSTATE_MAGIC "ANODMM\r\n"               /* 8 bytes, no NUL */
#define MEMSTATE_HEADER_BYTES 48
#define MEMSTATE_MAX_LATENT 4096                  /* VAE_MAX_LATENT */
#define MEMSTATE_MAX_CAPACITY MEMORY_MAX_CAPACITY

/* The snapshot of st in a new buffer of *len bytes (free it); NULL when out of memory. */
uint8_t *memstate_encode(const memory_state *st, size_t *len);
/* Decode a snapshot into st (its arrays malloc'd: memory_state_free; on failure st is
 * empty). 0, or -1 with err. */
int memstate_decode(const uint8_t *buf, size_t len, memory_state *st, char *err,
                    size_t errlen);

/* One kept latent: `latent` float32 values, little-endian, 4 * latent bytes at out. */
void memstate_put_latent(uint8_t *out, const float *x, int latent);
/* Read one back into x: len must be 4 * latent and every value finite. 0, or -1 with err. */
int memstate_get_latent(const uint8_t *buf, size_t len, int latent, float *x, char *err,
                        size_t errlen);

#endif
