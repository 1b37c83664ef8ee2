/* weights.h — the beta-VAE weights file (format version 1), until the full model bundle.
 *
 * Layout, little-endian:
 *     "ANOW"  u32 version (1)  u32 header_len  header[header_len]
 *     u64 n_params  float32 params[n_params]  u32 crc32 (zlib) of every byte before it
 * The header is text, one "key=value" per line: arch, in (C,H,W), latent, recon (bce or
 * mse), enc, dec (the net specs). A model file therefore rebuilds its own architecture,
 * and the loader checks magic, version, every length and the checksum before it trusts
 * a byte, so a truncated or damaged file is an error message, never a crash. */
#ifndef ANODM_WEIGHTS_H
#define ANODM_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "vae.h"

#define WEIGHTS_VERSION 1
#define WEIGHTS_MAX_HEADER 16384
#define WEIGHTS_MAX_PARAMS ((uint64_t)1 << 28)

/* Write m's architecture and parameters to path (atomically: a temporary file renamed). */
int weights_save(const char *path, const vae_model *m, char *err, size_t errlen);
/* Read a weights file into a new model (vae_free it). */
int weights_load(const char *path, vae_model *m, char *err, size_t errlen);
/* The same on bytes in memory. */
int weights_parse(const uint8_t *buf, size_t len, vae_model *m, char *err, size_t errlen);

#endif
