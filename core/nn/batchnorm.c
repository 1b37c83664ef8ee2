/* Batch normalisation; per-channel sums are accumulated in double so that the result does
 * not depend on the batch size's rounding (B*S can be 100 * 1024). */
#include "batchnorm.h"

#include <math.h>
#include <stddef.h>

/* Sum over the B*S values of channel c of f(x) = (x - shift)^p, p in {1, 2}. */
static double channel_sum(const float *x, int B, int C, int S, int c, double shift, int p) {
    double acc = 0.0;
    for (int b = 0; b < B; b++) {
        const float *row = x + ((size_t)b * C + c) * S;
        for (int s = 0; s < S; s++) {
            double d = (double)row[s] - shift;
            acc += p == 1 ? d : d * d;
        }
    }
    return acc;
}

void batchnorm_forward(float *y, float *mean, float *rstd, float *run_mean, float *run_var,
                       const float *x, const float *gamma, const float *beta, int B, int C,
                       int S, int train, float momentum, float eps) {
    const double n = (double)B * S;
    for (int c = 0; c < C; c++) {
        if (train) {
            double m = channel_sum(x, B, C, S, c, 0.0, 1) / n;
            double var = channel_sum(x, B, C, S, c, m, 2) / n;   /* two-pass, biased */
            mean[c] = (float)m;
            rstd[c] = (float)(1.0 / sqrt(var + eps));
            if (run_mean)
                run_mean[c] = (float)((1.0 - momentum) * run_mean[c] + momentum * m);
            if (run_var)
                run_var[c] = (float)((1.0 - momentum) * run_var[c] +
                                     momentum * var * n / (n > 1.0 ? n - 1.0 : 1.0));
        } else {
            mean[c] = run_mean[c];
            rstd[c] = (float)(1.0 / sqrt((double)run_var[c] + eps));
        }
        float scale = rstd[c] * (gamma ? gamma[c] : 1.0f), shift = beta ? beta[c] : 0.0f;
        for (int b = 0; b < B; b++) {
            const float *xr = x + ((size_t)b * C + c) * S;
            float *yr = y + ((size_t)b * C + c) * S;
            for (int s = 0; s < S; s++) yr[s] = (xr[s] - mean[c]) * scale + shift;
        }
    }
}

void batchnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                        const float *x, const float *mean, const float *rstd,
                        const float *gamma, int B, int C, int S, int train) {
    const double n = (double)B * S;
    for (int c = 0; c < C; c++) {
        /* sum(dy) and sum(dy * xhat), xhat = (x - mean) * rstd */
        double sdy = 0.0, sdyx = 0.0;
        for (int b = 0; b < B; b++) {
            const float *xr = x + ((size_t)b * C + c) * S, *dr = dy + ((size_t)b * C + c) * S;
            for (int s = 0; s < S; s++) {
                sdy += dr[s];
                sdyx += (double)dr[s] * ((double)xr[s] - mean[c]) * rstd[c];
            }
        }
        if (dgamma) dgamma[c] += (float)sdyx;
        if (dbeta) dbeta[c] += (float)sdy;
        if (!dx) continue;
        /* With batch statistics, dx = g*rstd * (dy - mean(dy) - xhat * mean(dy*xhat));
         * with fixed (running) statistics the two mean terms vanish. */
        float g = (gamma ? gamma[c] : 1.0f) * rstd[c];
        float mdy = train ? (float)(sdy / n) : 0.0f, mdyx = train ? (float)(sdyx / n) : 0.0f;
        for (int b = 0; b < B; b++) {
            const float *xr = x + ((size_t)b * C + c) * S, *dr = dy + ((size_t)b * C + c) * S;
            float *dxr = dx + ((size_t)b * C + c) * S;
            for (int s = 0; s < S; s++) {
                float xhat = (xr[s] - mean[c]) * rstd[c];
                dxr[s] += g * (dr[s] - mdy - xhat * mdyx);
            }
        }
    }
}
