/* The stream memory's snapshot and kept latents (see memstate.h and MEMSTATE.md). */
#include "memstate.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "le.h"

/* Bytes of a snapshot with these counts (64-bit: no count the header allows overflows). */
static uint64_t encoded_bytes(uint64_t latent, uint64_t count, uint64_t ring, uint64_t heap) {
    return MEMSTATE_HEADER_BYTES + count * latent * 4 + count * 8 + ring * 4 + heap * 4 + 4;
}

/* A slot number; one beyond INT_MAX reads as -1, which memory_import refuses. */
static int slot_at(const uint8_t *p) {
    uint32_t v = le_get32(p);
    return v > (uint32_t)INT_MAX ? -1 : (int)v;
}

uint8_t *memstate_encode(const memory_state *st, size_t *len) {
    *len = (size_t)encoded_bytes((uint64_t)st->latent, (uint64_t)st->count,
                                 (uint64_t)st->ring_len, (uint64_t)st->heap_len);
    uint8_t *buf = malloc(*len), *p = buf + MEMSTATE_HEADER_BYTES;
    if (!buf) return NULL;
    memcpy(buf, MEMSTATE_MAGIC, 8);
    const int header[] = {MEMSTATE_VERSION, st->latent, st->capacity, st->recent, st->count,
                          st->ring_len, st->heap_len, 0};
    for (int i = 0; i < 8; i++) le_put32(buf + 8 + 4 * i, (uint32_t)header[i]);
    le_put64(buf + 40, (uint64_t)st->seen);
    for (size_t i = 0; i < (size_t)st->count * (size_t)st->latent; i++, p += 4)
        le_put_f32(p, st->lat[i]);
    for (int i = 0; i < st->count; i++, p += 8) {
        uint64_t bits;
        memcpy(&bits, &st->suspicion[i], 8);
        le_put64(p, bits);
    }
    for (int i = 0; i < st->ring_len; i++, p += 4) le_put32(p, (uint32_t)st->ring[i]);
    for (int i = 0; i < st->heap_len; i++, p += 4) le_put32(p, (uint32_t)st->heap[i]);
    le_put32(p, (uint32_t)crc32_z(0L, buf, *len - 4));
    return buf;
}

int memstate_decode(const uint8_t *buf, size_t len, memory_state *st, char *err,
                    size_t errlen) {
    memset(st, 0, sizeof *st);
    if (len < MEMSTATE_HEADER_BYTES + 4 || memcmp(buf, MEMSTATE_MAGIC, 8)) {
        snprintf(err, errlen, len < MEMSTATE_HEADER_BYTES + 4 ? "memory snapshot too short "
                 "(%zu bytes)" : "not a memory snapshot (bad magic)", len);
        return -1;
    }
    uint32_t h[8];
    for (int i = 0; i < 8; i++) h[i] = le_get32(buf + 8 + 4 * i);
    const uint32_t version = h[0], latent = h[1], capacity = h[2], recent = h[3], count = h[4],
                   ring = h[5], heap = h[6];
    if (version != MEMSTATE_VERSION) {
        snprintf(err, errlen, "memory snapshot format version %u; this build reads version %d",
                 version, MEMSTATE_VERSION);
        return -1;
    }
    if (latent < 1 || latent > MEMSTATE_MAX_LATENT || capacity < 1 ||
        capacity > MEMSTATE_MAX_CAPACITY || recent < 1 || recent > capacity || count > capacity ||
        ring > recent || heap > capacity - recent || (uint64_t)ring + heap != count || h[7]) {
        snprintf(err, errlen, "memory snapshot header out of range: %u latents of %u values "
                 "(%u recent, %u suspicious) in %u slots (%u recent), reserved %u", count,
                 latent, ring, heap, capacity, recent, h[7]);
        return -1;
    }
    uint64_t want = encoded_bytes(latent, count, ring, heap);
    if (want != len) {
        snprintf(err, errlen, "memory snapshot of %zu bytes; its header says %llu", len,
                 (unsigned long long)want);
        return -1;
    }
    uint32_t crc = (uint32_t)crc32_z(0L, buf, len - 4);
    if (crc != le_get32(buf + len - 4)) {
        snprintf(err, errlen, "memory snapshot checksum mismatch (damaged)");
        return -1;
    }
    /* Every array is no larger than its bytes in buf: the allocation is the input's size. */
    st->lat = malloc(((size_t)count * latent + 1) * sizeof *st->lat);
    st->suspicion = malloc(((size_t)count + 1) * sizeof *st->suspicion);
    st->ring = malloc(((size_t)ring + 1) * sizeof *st->ring);
    st->heap = malloc(((size_t)heap + 1) * sizeof *st->heap);
    if (!st->lat || !st->suspicion || !st->ring || !st->heap) {
        memory_state_free(st);
        snprintf(err, errlen, "out of memory for a memory snapshot of %zu bytes", len);
        return -1;
    }
    st->latent = (int)latent;
    st->capacity = (int)capacity;
    st->recent = (int)recent;
    st->count = (int)count;
    st->ring_len = (int)ring;
    st->heap_len = (int)heap;
    st->seen = (unsigned long long)le_get64(buf + 40);
    const uint8_t *p = buf + MEMSTATE_HEADER_BYTES;
    for (size_t i = 0; i < (size_t)count * latent; i++, p += 4) st->lat[i] = le_get_f32(p);
    for (uint32_t i = 0; i < count; i++, p += 8) {
        uint64_t bits = le_get64(p);
        memcpy(&st->suspicion[i], &bits, 8);
    }
    for (uint32_t i = 0; i < ring; i++, p += 4) st->ring[i] = slot_at(p);
    for (uint32_t i = 0; i < heap; i++, p += 4) st->heap[i] = slot_at(p);
    return 0;
}

void memstate_put_latent(uint8_t *out, const float *x, int latent) {
    for (int i = 0; i < latent; i++) le_put_f32(out + 4 * i, x[i]);
}

int memstate_get_latent(const uint8_t *buf, size_t len, int latent, float *x, char *err,
                        size_t errlen) {
    if (len != (size_t)latent * 4) {
        snprintf(err, errlen, "a kept latent of %zu bytes, not %d", len, latent * 4);
        return -1;
    }
    for (int i = 0; i < latent; i++) {
        x[i] = le_get_f32(buf + 4 * i);
        if (!isfinite(x[i])) {
            snprintf(err, errlen, "a kept latent's value %d is not finite", i);
            return -1;
        }
    }
    return 0;
}
