/* decimal.c — a JSON real to the double strtod gives, without strtod where exact
 * arithmetic gives it (Clinger's fast path). See decimal.h. */
#include "decimal.h"

#include <stdint.h>

/* The powers of ten a double holds exactly. */
static const double EXACT_POW10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

int decimal_exact(const char *p, const char *end, int negative, double *v) {
    uint64_t m = 0;
    int significant = 0, exp10 = 0, after_point = 0;
    for (; p < end && *p != 'e' && *p != 'E'; p++) {
        if (*p == '.') {
            after_point = 1;
            continue;
        }
        if (m || *p != '0') {
            if (++significant > 15) return 0;
            m = m * 10 + (uint64_t)(*p - '0');
        }
        exp10 -= after_point;
    }
    if (p < end) {                       /* the exponent: its sign and at most 4 digits */
        int sign = 1, e = 0, n = 0;
        p++;
        if (*p == '+' || *p == '-') sign = *p++ == '-' ? -1 : 1;
        for (; p < end; p++, n++) {
            if (n == 4) return 0;
            e = e * 10 + (*p - '0');
        }
        exp10 += sign * e;
    }
    if (exp10 < -22 || exp10 > 22) {
        if (m) return 0;
        exp10 = 0;                       /* zero, whatever its exponent */
    }
    double x = exp10 < 0 ? (double)m / EXACT_POW10[-exp10] : (double)m * EXACT_POW10[exp10];
    *v = negative ? -x : x;
    return 1;
}
