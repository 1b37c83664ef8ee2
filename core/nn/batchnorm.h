/* batchnorm.h — batch normalisation over [B, C, S], forward and backward.
 *
 * One layout covers both PyTorch layers: BatchNorm2d sees [B, C, H*W] (S = H*W) and
 * BatchNorm1d on FC features sees [B, C, 1] (S = 1). Statistics are per channel over the
 * B*S values of that channel. Parameters follow nn.BatchNorm: gamma (weight) [C], beta
 * (bias) [C], running_mean [C], running_var [C].
 *
 * Train mode normalises with the batch mean and the BIASED batch variance, and updates the
 * running statistics as PyTorch does: run = (1 - momentum) * run + momentum * batch, with
 * the UNBIASED variance (n / (n - 1), n = B*S) going into running_var. Eval mode
 * normalises with the running statistics. Either way the forward pass leaves the mean and
 * 1/sqrt(var + eps) it used in caller-provided [C] buffers, which is all backward needs.
 *
 * Like every layer in core/, backward ADDS into dx, dgamma, dbeta (the caller zeroes them
 * once per step, so that residual paths sum for free); each may be NULL. gamma/beta may
 * be NULL for affine=False. No allocation happens here. */
#ifndef ANODM_BATCHNORM_H
#define ANODM_BATCHNORM_H

#define BN_MOMENTUM 0.1f   /* PyTorch's default */
#define BN_EPS 1e-5f       /* PyTorch's default */

/* y = gamma * (x - mean) * rstd + beta; train: batch stats (B*S > 1) and running update,
 * else running stats. mean/rstd [C] receive the statistics used; running stats may be
 * NULL in train mode (track_running_stats=False). */
void batchnorm_forward(float *y, float *mean, float *rstd, float *run_mean, float *run_var,
                       const float *x, const float *gamma, const float *beta, int B, int C,
                       int S, int train, float momentum, float eps);
/* Accumulate dx, dgamma, dbeta (each may be NULL) from dy, using the forward's mean/rstd;
 * train selects whether the statistics depended on x (batch) or not (running). */
void batchnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                        const float *x, const float *mean, const float *rstd,
                        const float *gamma, int B, int C, int S, int train);

#endif
