/* The input scaling (core/data/scaling.h): what it fits, that it inverts, when it flags a
 * sample as far outside the training range, and what it refuses. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "scaling.h"

/* Three features over four samples: a spread one, a constant one, a negative one. */
static const float X[4 * 3] = {1, 5, -10, 3, 5, -20, 5, 5, -30, 7, 5, -40};

TEST(scaling_standard_fit) {
    scaling s;
    char err[256];
    CHECK(scaling_fit(&s, SCALE_STANDARD, X, 4, 3, err, sizeof err) == 0);
    if (!s.stats) return;
    const float *center = s.stats, *scale = s.stats + 3, *lo = s.stats + 6, *hi = s.stats + 9;
    CHECK_NEAR(center[0], 4.0, 1e-6);
    CHECK_NEAR(scale[0], sqrt(5.0), 1e-6);       /* population sd of 1, 3, 5, 7 */
    CHECK_NEAR(center[1], 5.0, 1e-6);
    CHECK_NEAR(scale[1], 1.0, 0);                 /* constant: nothing to divide */
    CHECK_NEAR(center[2], -25.0, 1e-6);
    CHECK(lo[0] == 1 && hi[0] == 7 && lo[2] == -40 && hi[2] == -10);
    /* Scaled, the training data has mean 0 and sd 1 per spread feature. */
    double m = 0, v = 0;
    for (int i = 0; i < 4; i++) {
        float out[3];
        CHECK(scaling_apply(&s, X + 3 * i, out) == 0);
        m += out[2];
        v += out[2] * out[2];
    }
    CHECK_NEAR(m / 4, 0.0, 1e-6);
    CHECK_NEAR(v / 4, 1.0, 1e-5);
    CHECK(scaling_check(&s, 3, err, sizeof err) == 0);
    CHECK_FAILS_WITH(scaling_check(&s, 4, err, sizeof err), err, "3 features, the input has 4");
    scaling_free(&s);
    CHECK(!s.stats && s.kind == SCALE_NONE);
}

TEST(scaling_minmax_round_trip_and_range) {
    scaling s;
    char err[256];
    CHECK(scaling_fit(&s, SCALE_MINMAX, X, 4, 3, err, sizeof err) == 0);
    if (!s.stats) return;
    float out[3], back[3];
    CHECK(scaling_apply(&s, X + 9, out) == 0);    /* the last sample: maxima of feature 0 */
    CHECK_NEAR(out[0], 1.0, 1e-6);
    CHECK_NEAR(out[2], 0.0, 1e-6);                /* -40 is feature 2's minimum */
    memcpy(back, out, sizeof out);
    scaling_invert(&s, back);
    CHECK_CLOSE("inverse", back, X + 9, 3, 1e-5, 1e-6);
    /* Outside the range by less than its width: in; by more: flagged, and still scaled
     * (never clipped). */
    const float near[3] = {12.9f, 5, -25}, far[3] = {13.1f, 5, -25}, moved[3] = {4, 5.5f, -25};
    CHECK(scaling_apply(&s, near, out) == 0);
    CHECK(scaling_apply(&s, far, out) == 1);
    CHECK_NEAR(out[0], (13.1 - 1) / 6, 1e-5);
    CHECK(scaling_apply(&s, moved, out) == 1);    /* a constant feature that moved */
    const float nan_in[3] = {NAN, 5, -25};
    CHECK(scaling_apply(&s, nan_in, out) == 1);
    /* What a loaded bundle could hold and the check refuses. */
    s.stats[3] = 0;                               /* a zero scale */
    CHECK_FAILS_WITH(scaling_check(&s, 3, err, sizeof err), err, "feature 0");
    s.stats[3] = 1;
    s.stats[6] = 8;                               /* lo above hi */
    CHECK_FAILS_WITH(scaling_check(&s, 3, err, sizeof err), err, "feature 0");
    scaling_free(&s);
    const float bad[2] = {1, INFINITY};
    CHECK_FAILS_WITH(scaling_fit(&s, SCALE_STANDARD, bad, 1, 2, err, sizeof err), err,
                     "not finite");
    CHECK(scaling_fit(&s, SCALE_NONE, X, 4, 3, err, sizeof err) == 0 && !s.stats);
    CHECK(scaling_check(&s, 3, err, sizeof err) == 0);
}
