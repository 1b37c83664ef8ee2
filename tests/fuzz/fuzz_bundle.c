/* fuzz_bundle.c — bundle_parse (proto/bundle.c), the daemon's model loader.
 *
 * A bundle guards its bytes with a header CRC, a CRC per section and a trailing SHA-256,
 * so almost every mutation of a real file dies at the first checksum and the fuzzer
 * would never reach the JSON sections, the array sections or the cross-checks between
 * them. Each input is therefore parsed twice: as it is (the container checks), then
 * resealed, with every checksum recomputed for the bytes as they are (what a hostile
 * file that knows the format looks like). Parsed from heap blocks of exactly the
 * input's length, so ASan sees any read past the end. On success the detector is
 * freed; on failure bundle_parse promises a zeroed detector, which is checked. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "bundle.h"
#include "le.h"
#include "sha256.h"

/* Recompute the header CRC, the CRC of every section that lies inside the file, and the
 * trailing hash, trusting the table as far as it can be trusted. */
static void reseal(uint8_t *buf, size_t len) {
    if (len < BUNDLE_HEADER_BYTES + BUNDLE_HASH_BYTES) return;
    uint32_t n = le_get32(buf + 12);
    if (n > BUNDLE_MAX_SECTIONS || BUNDLE_HEADER_BYTES + (size_t)n * BUNDLE_ENTRY_BYTES > len)
        n = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint8_t *e = buf + BUNDLE_HEADER_BYTES + (size_t)i * BUNDLE_ENTRY_BYTES;
        uint64_t off = le_get64(e + 16), l = le_get64(e + 24);
        if (off <= len && l <= len - off)
            le_put32(e + 32, (uint32_t)crc32_z(0L, buf + off, (size_t)l));
    }
    uLong c = crc32_z(0L, buf, 28);
    c = crc32_z(c, buf + BUNDLE_HEADER_BYTES, (size_t)n * BUNDLE_ENTRY_BYTES);
    le_put32(buf + 28, (uint32_t)c);
    sha256(buf, len - BUNDLE_HASH_BYTES, buf + len - BUNDLE_HASH_BYTES);
}

static void parse(const uint8_t *buf, size_t len) {
    static const detector zero;
    char err[512];
    detector d;
    if (bundle_parse(buf, len, &d, err, sizeof err) != 0 && memcmp(&d, &zero, sizeof d))
        abort();                 /* the header promises a zeroed detector on failure */
    detector_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    parse(buf, size);
    reseal(buf, size);
    if (size && memcmp(buf, data, size)) parse(buf, size);
    free(buf);
    return 0;
}
