/* le.h — explicit little-endian integers for anodm's file formats.
 *
 * Files are written and read byte by byte, never by casting a buffer to a struct, so
 * the formats mean the same on any host and an unaligned or short buffer is never
 * dereferenced as a wider type. Floats travel as the little-endian bytes of their IEEE
 * 754 bit pattern (le_put_f32 / le_get_f32, le_put_f64 / le_get_f64), which keeps every
 * value, NaN payloads and signed zeros included, bit for bit. */
#ifndef ANODM_LE_H
#define ANODM_LE_H

#include <stdint.h>
#include <string.h>

/* Store v at p, least significant byte first. */
static inline void le_put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* Store v at p, least significant byte first. */
static inline void le_put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Store v at p, least significant byte first. */
static inline void le_put64(uint8_t *p, uint64_t v) {
    le_put32(p, (uint32_t)v);
    le_put32(p + 4, (uint32_t)(v >> 32));
}

/* The 32-bit value stored little-endian at p. */
static inline uint32_t le_get32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The 64-bit value stored little-endian at p. */
static inline uint64_t le_get64(const uint8_t *p) {
    return (uint64_t)le_get32(p) | (uint64_t)le_get32(p + 4) << 32;
}

/* Store the bit pattern of f at p. */
static inline void le_put_f32(uint8_t *p, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    le_put32(p, u);
}

/* The float whose bit pattern is stored at p. */
static inline float le_get_f32(const uint8_t *p) {
    uint32_t u = le_get32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Store the bit pattern of d at p. */
static inline void le_put_f64(uint8_t *p, double d) {
    uint64_t u;
    memcpy(&u, &d, 8);
    le_put64(p, u);
}

/* The double whose bit pattern is stored at p. */
static inline double le_get_f64(const uint8_t *p) {
    uint64_t u = le_get64(p);
    double d;
    memcpy(&d, &u, 8);
    return d;
}

#endif
