/* fuzz_memstate.c — memstate_decode and memory_import (proto/memstate.c, core/memory.c):
 * the stream memory's snapshot as anodmd reads it back from its log at start.
 *
 * The snapshot ends in a CRC-32 of everything before it, which would stop nearly every
 * mutation at the checksum; so each input is decoded as it is and then again with the
 * CRC recomputed, to reach the header's counts and the arrays. A snapshot that decodes is
 * imported into a memory of its own shape (when that is small), and one that imports is
 * probed and given a latent, as the daemon's replay would. Heap copies of exactly the
 * input's length, so ASan sees any read past the end. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "le.h"
#include "memstate.h"

static const float ZERO[MEMSTATE_MAX_LATENT];

static void decode(const uint8_t *buf, size_t len) {
    char err[512];
    memory_state st;
    if (memstate_decode(buf, len, &st, err, sizeof err)) return;
    memory_options o;
    memory_options_default(&o);
    o.capacity = st.capacity;
    o.k = 1;
    o.recent_share = (double)st.recent / st.capacity;
    stream_memory *m = (size_t)st.capacity * (size_t)st.latent <= 65536
                           ? memory_create(st.latent, &o, err, sizeof err) : NULL;
    if (m && memory_import(m, &st, err, sizeof err) == 0) {
        memory_probe p;
        const float *x = st.count ? st.lat : ZERO;
        memory_probe_of(m, x, &p);
        memory_keep(m, x, 1.0, &p);
    }
    memory_free(m);
    memory_state_free(&st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    decode(buf, size);
    if (size >= 4) {
        le_put32(buf + size - 4, (uint32_t)crc32_z(0L, buf, size - 4));
        if (memcmp(buf, data, size)) decode(buf, size);
    }
    free(buf);
    return 0;
}
