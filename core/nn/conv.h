/* conv.h — convolutions (2-D and 1-D, strided, padded, dilated, causal) and their
 * transposes, all on one im2col + sgemm engine.
 *
 * One geometry describes a convolution from an "image" x [C_in, H_in, W_in] to a
 * result y [C_out, H_out, W_out]. conv_forward computes y from x; conv_transpose_forward
 * computes the ADJOINT map, y-shaped input to x-shaped output, which is exactly PyTorch's
 * ConvTranspose with the same weight tensor [C_out, C_in, KH, KW] (PyTorch stores a
 * ConvTranspose weight as [its in, its out, KH, KW], i.e. the same array). A 1-D
 * convolution is the H = 1 case; causal padding is pad_left = dilation * (K - 1) with no
 * right padding (the geometry's W_out decides where the window stops).
 *
 * The whole batch is unrolled into one column matrix so that each layer is one large
 * sgemm, not B small ones: that is where the speed comes from. The caller provides the
 * scratch space (conv_work_floats). Backward ADDS into gradient buffers; any may be NULL. */
#ifndef ANODM_CONV_H
#define ANODM_CONV_H

#include <stddef.h>

#define CONV_MAX_DIM (1 << 24)  /* largest size or padding a geometry accepts */

typedef struct {
    int in_c, in_h, in_w;      /* x, the image side */
    int out_c, out_h, out_w;   /* y, the result side */
    int k_h, k_w;              /* kernel */
    int stride_h, stride_w;
    int pad_top, pad_left;     /* zeros before x; zeros after x are implied by out_h/out_w */
    int dil_h, dil_w;
} conv_geom;

/* Conv2d(in_c -> out_c, k, stride, pad) on in_h x in_w images (PyTorch semantics). */
conv_geom conv_geom_2d(int in_c, int in_h, int in_w, int out_c, int k, int stride, int pad);
/* ConvTranspose2d(in_c -> out_c, k, stride, pad, output_padding): geometry of its adjoint
 * conv, so x is the transposed layer's OUTPUT [out_c, H', W'] and y its input. */
conv_geom conv_geom_transpose_2d(int in_c, int in_h, int in_w, int out_c, int k, int stride,
                                 int pad, int out_pad);
/* Conv1d over len samples with explicit left/right zero padding (causal: left = d*(k-1), right = 0). */
conv_geom conv_geom_1d(int in_c, int len, int out_c, int k, int stride, int dilation,
                       int pad_left, int pad_right);
/* ConvTranspose1d(in_c -> out_c, k, stride, pad, output_padding) on len samples. */
conv_geom conv_geom_transpose_1d(int in_c, int len, int out_c, int k, int stride, int pad,
                                 int out_pad);
/* Nonzero if the geometry is consistent (sizes in [1, CONV_MAX_DIM], window fits). */
int conv_geom_valid(const conv_geom *g);

/* Scratch floats needed by any conv call on this geometry with batch B. */
size_t conv_work_floats(const conv_geom *g, int B);
/* The same for the transposed calls, which go through im2col whatever the geometry (a
 * stride-1 1-D geometry takes the tap path only forward). */
size_t conv_transpose_work_floats(const conv_geom *g, int B);

/* y[B, out_c, out_h, out_w] = conv(x[B, in_c, in_h, in_w], weight) + bias[out_c]. */
void conv_forward(float *y, const float *x, const float *weight, const float *bias,
                  const conv_geom *g, int B, float *work);
/* Accumulate dx, dweight, dbias (each may be NULL) from dy. */
void conv_backward(float *dx, float *dweight, float *dbias, const float *dy, const float *x,
                   const float *weight, const conv_geom *g, int B, float *work);

/* x[B, in_c, in_h, in_w] = conv^T(y[B, out_c, out_h, out_w], weight) + bias[in_c]. */
void conv_transpose_forward(float *x, const float *y, const float *weight, const float *bias,
                            const conv_geom *g, int B, float *work);
/* Accumulate dy, dweight, dbias[in_c] (each may be NULL) from dx. */
void conv_transpose_backward(float *dy, float *dweight, float *dbias, const float *dx,
                             const float *y, const float *weight, const conv_geom *g, int B,
                             float *work);

#endif
