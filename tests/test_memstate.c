/* The stream memory's snapshot format (proto/memstate.h): a memory written and read back
 * is the same memory; a truncated, damaged, foreign or out-of-range snapshot is refused
 * with its reason; the latent of a kept sample likewise. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "check.h"
#include "le.h"
#include "memstate.h"
#include "rng.h"

enum { L = 4 };

static stream_memory *make(int capacity) {
    memory_options o;
    memory_options_default(&o);
    o.capacity = capacity;
    o.k = o.k_min = 2;
    char err[128];
    stream_memory *m = memory_create(L, &o, err, sizeof err);
    CHECK_MSG(m != NULL, "%s", err);
    return m;
}

/* A memory of 10 slots that has seen n latents, their suspicions mixed (some infinite). */
static stream_memory *filled(int n) {
    stream_memory *m = make(10);
    rng_t r;
    rng_seed(&r, 5);
    for (int i = 0; m && i < n; i++) {
        float x[L];
        rng_fill_normal(&r, x, L);
        memory_probe p;
        memory_probe_of(m, x, &p);
        memory_keep(m, x, i % 4 == 1 ? -INFINITY : x[1], &p);
    }
    return m;
}

/* A snapshot of the memory filled by n latents; NULL (reported) on failure. */
static uint8_t *snapshot_of(int n, size_t *len) {
    stream_memory *m = filled(n);
    memory_state st;
    uint8_t *buf = NULL;
    if (m && memory_export(m, &st) == 0) {
        buf = memstate_encode(&st, len);
        memory_state_free(&st);
    }
    CHECK(buf != NULL);
    memory_free(m);
    return buf;
}

static void reseal(uint8_t *buf, size_t len) {
    le_put32(buf + len - 4, (uint32_t)crc32_z(0L, buf, len - 4));
}

TEST(memstate_round_trip) {
    for (int n = 0; n <= 40; n += 8) {
        stream_memory *m = filled(n), *back = make(10);
        memory_state st, dec, again;
        char err[200];
        size_t len, len2;
        if (!m || !back || memory_export(m, &st)) {
            memory_free(m);
            memory_free(back);
            return;
        }
        uint8_t *buf = memstate_encode(&st, &len), *buf2 = NULL;
        CHECK(buf && len == MEMSTATE_HEADER_BYTES + (size_t)st.count * (4 * L + 8) +
                                4 * (size_t)st.count + 4);
        CHECK_MSG(buf && memstate_decode(buf, len, &dec, err, sizeof err) == 0, "%s", err);
        CHECK(st.seen == (unsigned long long)n && dec.seen == st.seen);   /* the decay's clock */
        CHECK_MSG(memory_import(back, &dec, err, sizeof err) == 0, "%s", err);
        CHECK(memory_export(back, &again) == 0);
        buf2 = memstate_encode(&again, &len2);     /* the same bytes: nothing was lost */
        CHECK_MSG(buf2 && len2 == len && !memcmp(buf, buf2, len), "%d latents: re-encoded "
                  "snapshot differs", n);
        CHECK(memory_count(back) == (n < 10 ? n : 10));
        free(buf);
        free(buf2);
        memory_state_free(&st);
        memory_state_free(&dec);
        memory_state_free(&again);
        memory_free(m);
        memory_free(back);
    }
}

/* Every truncation and every flipped bit is refused (the length, then the CRC); with the
 * CRC resealed, each header field out of range is refused naming the problem. */
TEST(memstate_refuses_bad_snapshots) {
    size_t len;
    uint8_t *good = snapshot_of(30, &len);
    if (!good) return;
    memory_state st;
    char err[200];
    for (size_t cut = 0; cut < len; cut++)
        CHECK_MSG(memstate_decode(good, cut, &st, err, sizeof err) == -1 && !st.lat,
                  "accepted %zu of %zu bytes", cut, len);
    uint8_t *bad = malloc(len + 1);
    if (!bad) {
        free(good);
        return;
    }
    int accepted = 0;
    for (size_t i = 0; i < len * 8; i++) {
        memcpy(bad, good, len);
        bad[i / 8] ^= (uint8_t)(1u << (i % 8));
        accepted += memstate_decode(bad, len, &st, err, sizeof err) == 0;
    }
    CHECK_MSG(accepted == 0, "%d single-bit flips accepted", accepted);
    memcpy(bad, good, len);
    bad[len] = 0;
    CHECK_FAILS_WITH(memstate_decode(bad, len + 1, &st, err, sizeof err), err, "header says");
    memcpy(bad, good, len);
    bad[50] ^= 1;
    CHECK_FAILS_WITH(memstate_decode(bad, len, &st, err, sizeof err), err, "checksum");
    memcpy(bad, good, len);
    bad[0] = 'X';
    CHECK_FAILS_WITH(memstate_decode(bad, len, &st, err, sizeof err), err, "bad magic");
    CHECK_FAILS_WITH(memstate_decode(good, 10, &st, err, sizeof err), err, "too short");
    static const struct { int offset; uint32_t value; const char *why; } FIELD[] = {
        {8, 3, "version 3"},                     /* a newer format */
        {8, 1, "version 1"},                     /* before seen, the decay's clock */
        {12, 0, "out of range"},                 /* latent 0 */
        {12, MEMSTATE_MAX_LATENT + 1, "out of range"},
        {16, MEMSTATE_MAX_CAPACITY + 1, "out of range"},
        {20, 0, "out of range"},                 /* recent 0 */
        {20, 11, "out of range"},                /* recent beyond capacity */
        {24, 11, "out of range"},                /* count beyond capacity */
        {28, 6, "out of range"},                 /* ring beyond recent */
        {32, 4, "out of range"},                 /* ring + heap != count */
        {36, 1, "reserved 1"},
        {24, 0xffffffffu, "out of range"},
    };
    for (size_t f = 0; f < sizeof FIELD / sizeof FIELD[0]; f++) {
        memcpy(bad, good, len);
        le_put32(bad + FIELD[f].offset, FIELD[f].value);
        reseal(bad, len);
        CHECK_FAILS_WITH(memstate_decode(bad, len, &st, err, sizeof err), err, FIELD[f].why);
    }
    /* Well formed but not a state a memory can be in: decoded, then refused on import. */
    memcpy(bad, good, len);
    size_t ring_at = len - 4 - 4 * 10;           /* 5 recent, 5 suspicious slots */
    le_put32(bad + ring_at, 0x80000000u);        /* a slot beyond INT_MAX */
    reseal(bad, len);
    stream_memory *m = make(10);
    CHECK(memstate_decode(bad, len, &st, err, sizeof err) == 0);
    CHECK_FAILS_WITH(m ? memory_import(m, &st, err, sizeof err) : -1, err, "outside");
    memory_state_free(&st);
    memory_free(m);
    free(bad);
    free(good);
}

TEST(memstate_latent_blob) {
    float x[L] = {1.5f, -0.0f, 3e-39f, -2.25f}, y[L];
    uint8_t b[4 * L];
    char err[128];
    memstate_put_latent(b, x, L);
    CHECK(le_get_f32(b) == 1.5f);                /* little-endian binary32 */
    CHECK(memstate_get_latent(b, sizeof b, L, y, err, sizeof err) == 0 && !memcmp(x, y, sizeof x));
    CHECK_FAILS_WITH(memstate_get_latent(b, sizeof b - 1, L, y, err, sizeof err), err, "15 bytes");
    CHECK_FAILS_WITH(memstate_get_latent(b, sizeof b, L + 1, y, err, sizeof err), err, "not 20");
    le_put_f32(b + 8, NAN);
    CHECK_FAILS_WITH(memstate_get_latent(b, sizeof b, L, y, err, sizeof err), err, "not finite");
}
