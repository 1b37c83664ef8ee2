/* decimal.h — decimal text to double and back, without strtod and snprintf where exact
 * integer arithmetic gives their answer.
 *
 * Why: decoding a 784-value sample was mostly strtod (about 50 us of a sample's CPU), and
 * most numbers clients send (a pixel printed with 9 digits) need none of its generality:
 * an integer up to 2^53 (every one of 15 digits, most of 16) is one a double holds
 * exactly, and times or over a power of ten up to 1e22 (also exact) one rounding gives
 * the correctly rounded value, which is strtod's (Clinger's fast path; x86-64 evaluates
 * doubles in double). The rest (more digits, larger exponents) is left to strtod, so a
 * caller's results are strtod's, bit for bit: tests/test_api.c checks that on every way
 * numbers get printed. It takes the digits as an integer and a decimal exponent, not as
 * text: the JSON scanner (api_fast.c) gathers them while it checks the grammar, in one
 * pass over each number.
 * The other way, the answers' reals were mostly printf (glibc's exact printing of every
 * digit, then rounding): decimal_digits takes the double's integer mantissa times a
 * power of two and a power of ten in 128-bit integers, where the first n digits and
 * whether the rest is below, at or above half a unit are exact, so its rounding is
 * printf's (to nearest, ties to even: the default rounding mode, which nothing in anodm
 * changes). Values 128 bits cannot hold so (below about 1e-14 for a general double,
 * 1e-23 for a float's, and subnormals; above about 1e38) are left to snprintf:
 * tests/test_api_encode.c checks decimal_digits against snprintf's digits bit for bit. */
#ifndef ANODM_DECIMAL_H
#define ANODM_DECIMAL_H

#include <stdint.h>

/* m x 10^exp10, negated if negative, into *v as strtod rounds that number's text: 1, or 0
 * when exact arithmetic cannot give it (then use strtod). m must be the text's digits
 * exactly, all of them (the caller's scanner gives up on more than fit 64 bits). Inline:
 * the score decoder calls it for every real, and a call costs as much as its work. */
static inline int decimal_exact(uint64_t m, int exp10, int negative, double *v) {
    static const double exact_pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                         1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                         1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    if (m > 1ULL << 53) return 0;           /* not exactly a double: a second rounding */
    if (exp10 < -22 || exp10 > 22) {
        if (m) return 0;
        exp10 = 0;                          /* zero, whatever its exponent */
    }
    double x = exp10 < 0 ? (double)m / exact_pow10[-exp10] : (double)m * exact_pow10[exp10];
    *v = negative ? -x : x;
    return 1;
}

/* The n (1..19) significant decimal digits of v (> 0, finite) as printf("%.*e", n - 1, v)
 * prints them: *digits in [10^(n-1), 10^n) and *exp10 its exponent, v being about
 * digits x 10^(exp10 - n + 1). 1, or 0 when 128-bit arithmetic cannot give them exactly
 * (then use snprintf). */
int decimal_digits(double v, int n, uint64_t *digits, int *exp10);

#endif
