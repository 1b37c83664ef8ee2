/* auth.h — optional API keys: `Authorization: Bearer KEY` on every route but the probes.
 *
 * Keys come from the api_keys setting (comma-separated) and the file api_keys_file (one
 * per line, # comments), so a key can be kept out of the config file and the process's
 * environment. Only their SHA-256 digests are kept: a presented key is hashed and
 * compared with every digest without an early exit, so neither the time taken nor its
 * length tells a caller how close a guess came. Keys are never printed or logged; a bad
 * key in the settings is reported by position, not by value. With no keys configured,
 * every request is allowed. */
#ifndef ANODMD_AUTH_H
#define ANODMD_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "sha256.h"

#define AUTH_KEY_MIN 16          /* shorter keys are refused as guessable */
#define AUTH_KEY_MAX 256

typedef struct {
    uint8_t (*digest)[SHA256_DIGEST];
    int n;
} auth_keys;

/* The keys of list (comma-separated, may be NULL) and of the file at path (NULL or ""
 * for none) into k. 0, or -1 with err (k then empty). */
int auth_load(auth_keys *k, const char *list, const char *path, char *err, size_t errlen);
void auth_free(auth_keys *k);
/* 1 if no keys are configured (k NULL or empty) or the Authorization header value (NULL
 * when absent) carries one of them as a Bearer token, else 0. */
int auth_allows(const auth_keys *k, const char *authorization);

#endif
