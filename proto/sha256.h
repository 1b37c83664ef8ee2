/* sha256.h — SHA-256 (FIPS 180-4), for the model bundle's whole-file hash.
 *
 * A model's "version", as the daemon reports it in every response and log row, is the
 * SHA-256 of its bundle file: the same value `sha256sum model.anodm` prints, so an
 * operator can tell which file served a score without trusting anodm. A cryptographic
 * hash rather than a CRC because two different models must never share a version.
 * Written here (about 100 lines) rather than pulled from a crypto library to keep the
 * dependency list to what the SPEC names. Streaming: init, update any number of times,
 * final. */
#ifndef ANODM_SHA256_H
#define ANODM_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST 32

typedef struct {
    uint32_t h[8];          /* chaining state */
    uint64_t n_bytes;       /* message length so far */
    uint8_t block[64];      /* pending partial block */
    size_t fill;            /* bytes in block */
} sha256_ctx;

/* Start a new message. */
void sha256_init(sha256_ctx *c);
/* Append len bytes of the message. */
void sha256_update(sha256_ctx *c, const void *data, size_t len);
/* Pad, finish and write the digest; c must be re-initialised before reuse. */
void sha256_final(sha256_ctx *c, uint8_t out[SHA256_DIGEST]);
/* The digest of one buffer. */
void sha256(const void *data, size_t len, uint8_t out[SHA256_DIGEST]);
/* The digest as 64 lowercase hex digits and a NUL. */
void sha256_hex(const uint8_t digest[SHA256_DIGEST], char hex[2 * SHA256_DIGEST + 1]);

#endif
