/* decimal.h — decimal text to double, faster than strtod where that is exact.
 *
 * Why: decoding a 784-value sample was mostly strtod (about 50 us of a sample's CPU), and
 * most numbers clients send (a pixel printed with 9 digits) need none of its generality:
 * at most 15 significant digits make an integer a double holds exactly, and times or over
 * a power of ten up to 1e22 (also exact) one rounding gives the correctly rounded value,
 * which is strtod's (Clinger's fast path; x86-64 evaluates doubles in double). The rest
 * (more digits, larger exponents) is left to strtod, so a caller's results are strtod's,
 * bit for bit: tests/test_api.c checks that on every way numbers get printed. */
#ifndef ANODM_DECIMAL_H
#define ANODM_DECIMAL_H

/* The JSON real whose digits run from p (its first digit, after any '-') to end, already
 * checked against the JSON number grammar, into *v as strtod would read it: 1, or 0 when
 * exact arithmetic cannot give it (then use strtod). */
int decimal_exact(const char *p, const char *end, int negative, double *v);

#endif
