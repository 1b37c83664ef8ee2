/* fuzz_weights.c — weights_parse (proto/weights.c), the beta-VAE weights file.
 *
 * The file ends in a CRC-32 of everything before it, which would stop nearly every
 * mutation at the checksum; so each input is parsed as it is and then again with the
 * CRC recomputed, to reach the header's key=value text, the architecture specs it hands
 * to net_parse, and the parameter count. Heap copies of exactly the input's length, so
 * ASan sees any read past the end. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "le.h"
#include "weights.h"

static void parse(const uint8_t *buf, size_t len) {
    char err[512];
    vae_model m;
    if (weights_parse(buf, len, &m, err, sizeof err) == 0) vae_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    parse(buf, size);
    if (size >= 4) {
        le_put32(buf + size - 4, (uint32_t)crc32_z(0L, buf, size - 4));
        if (memcmp(buf, data, size)) parse(buf, size);
    }
    free(buf);
    return 0;
}
