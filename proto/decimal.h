/* decimal.h — decimal text to double and back, without strtod and snprintf where exact
 * integer arithmetic gives their answer.
 *
 * Why: decoding a 784-value sample was mostly strtod (about 50 us of a sample's CPU), and
 * most numbers clients send (a pixel printed with 9 digits) need none of its generality:
 * at most 15 significant digits make an integer a double holds exactly, and times or over
 * a power of ten up to 1e22 (also exact) one rounding gives the correctly rounded value,
 * which is strtod's (Clinger's fast path; x86-64 evaluates doubles in double). The rest
 * (more digits, larger exponents) is left to strtod, so a caller's results are strtod's,
 * bit for bit: tests/test_api.c checks that on every way numbers get printed.
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

/* The JSON real whose digits run from p (its first digit, after any '-') to end, already
 * checked against the JSON number grammar, into *v as strtod would read it: 1, or 0 when
 * exact arithmetic cannot give it (then use strtod). */
int decimal_exact(const char *p, const char *end, int negative, double *v);

/* The n (1..19) significant decimal digits of v (> 0, finite) as printf("%.*e", n - 1, v)
 * prints them: *digits in [10^(n-1), 10^n) and *exp10 its exponent, v being about
 * digits x 10^(exp10 - n + 1). 1, or 0 when 128-bit arithmetic cannot give them exactly
 * (then use snprintf). */
int decimal_digits(double v, int n, uint64_t *digits, int *exp10);

#endif
