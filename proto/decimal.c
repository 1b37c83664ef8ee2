/* decimal.c — a double to the digits printf gives, without printf where 128-bit integers
 * give them (the other way, decimal_exact, is inline in decimal.h). See decimal.h. */
#include "decimal.h"

#include <stdint.h>
#include <string.h>

__extension__ typedef unsigned __int128 u128;

static const uint64_t POW10_U64[20] = {
    1u, 10u, 100u, 1000u, 10000u, 100000u, 1000000u, 10000000u, 100000000u, 1000000000u,
    10000000000u, 100000000000u, 1000000000000u, 10000000000000u, 100000000000000u,
    1000000000000000u, 10000000000000000u, 100000000000000000u, 1000000000000000000u,
    10000000000000000000u};

/* 10^p, 0 <= p <= 38. */
static u128 pow10_u128(int p) {
    return p < 20 ? (u128)POW10_U64[p] : (u128)POW10_U64[19] * POW10_U64[p - 19];
}

static int bit_length(u128 x) {
    uint64_t hi = (uint64_t)(x >> 64), lo = (uint64_t)x;
    return hi ? 128 - __builtin_clzll(hi) : lo ? 64 - __builtin_clzll(lo) : 0;
}

/* s = m x 2^q x 10^p, exactly: its integer part into *whole, and into *half how the rest
 * compares with one half (-1 below, 0 equal, 1 above). 0 when it does not fit 127 bits. */
static int scaled(uint64_t m, int q, int p, u128 *whole, int *half) {
    if (p < -38 || p > 38) return 0;
    u128 num = m, rest, other;
    if (p >= 0) {                        /* s = m 10^p / 2^-q: a shift */
        u128 t = pow10_u128(p);
        if (bit_length(num) + bit_length(t) > 127) return 0;
        num *= t;
        if (q >= 0) {
            if (bit_length(num) + q > 127) return 0;
            *whole = num << q;
            *half = -1;
            return 1;
        }
        if (-q > 127) return 0;
        *whole = num >> -q;
        rest = num & (((u128)1 << -q) - 1);
        other = (u128)1 << (-q - 1);     /* one half, in units of 2^q */
        *half = rest < other ? -1 : rest > other;
        return 1;
    }
    u128 den = pow10_u128(-p);           /* s = m 2^q / 10^-p: a division */
    if (q >= 0) {
        if (bit_length(num) + q > 127) return 0;
        num <<= q;
    } else {
        if (bit_length(den) - q > 127) return 0;
        den <<= -q;
    }
    *whole = num / den;
    rest = num - *whole * den;
    other = den - rest;
    *half = rest < other ? -1 : rest > other;
    return 1;
}

int decimal_digits(double v, int n, uint64_t *digits, int *exp10) {
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    int biased = (int)(bits >> 52 & 0x7ff);
    if (n < 1 || n > 19 || bits >> 63 || biased == 0 || biased == 0x7ff) return 0;
    uint64_t m = (bits & ((1ULL << 52) - 1)) | 1ULL << 52;
    int q = biased - 1075, zeros = __builtin_ctzll(m);
    m >>= zeros;                         /* v = m 2^q, m odd: fewer bits to carry */
    q += zeros;
    /* v < 2^e2: its exponent is floor(e2 log10 2) (78913 / 2^18 is about log10 2) or
     * one below, so x starts there, where the scaled value is smallest */
    int e2 = q + 64 - __builtin_clzll(m);
    int x = (int)((e2 * 78913L + 400L * 262144) >> 18) - 400;
    const u128 lo = POW10_U64[n - 1], hi = POW10_U64[n];
    for (int tries = 0; tries < 3; tries++) {
        u128 whole;
        int half;
        if (!scaled(m, q, n - 1 - x, &whole, &half)) return 0;
        if (whole < lo || whole >= hi) {    /* x was not v's exponent: the next one */
            x += whole < lo ? -1 : 1;
            continue;
        }
        whole += half > 0 || (half == 0 && (whole & 1));     /* to nearest, ties to even */
        if (whole == hi) {                  /* 9.99...95 rounds to 10.0: one more digit */
            whole = lo;
            x++;
        }
        *digits = (uint64_t)whole;
        *exp10 = x;
        return 1;
    }
    return 0;
}
