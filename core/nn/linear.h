/* linear.h — the fully connected layer, y = x W^T + b, over a batch.
 *
 * Layout follows PyTorch's nn.Linear so that weights and fixtures move between the two
 * unchanged: weight [out, in] row-major, bias [out]. Like every layer in core/, backward
 * ADDS into the gradient buffers (the caller zeroes them once per step), which lets
 * residual and skip paths sum their gradients for free; din may be NULL. */
#ifndef ANODM_LINEAR_H
#define ANODM_LINEAR_H

/* out[B, out_f] = in[B, in_f] W^T + bias (bias may be NULL). */
void linear_forward(float *out, const float *in, const float *weight, const float *bias,
                    int B, int in_f, int out_f);
/* Accumulate din[B, in_f], dweight[out_f, in_f] and dbias[out_f] (each may be NULL). */
void linear_backward(float *din, float *dweight, float *dbias, const float *dout,
                     const float *in, const float *weight, int B, int in_f, int out_f);

#endif
