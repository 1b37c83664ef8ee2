/* Fully connected layer on OpenBLAS sgemm. */
#include "linear.h"

#include <cblas.h>

void linear_forward(float *out, const float *in, const float *weight, const float *bias,
                    int B, int in_f, int out_f) {
    if (bias) {
        for (int b = 0; b < B; b++)
            for (int o = 0; o < out_f; o++) out[(long)b * out_f + o] = bias[o];
    }
    const float beta = bias ? 1.0f : 0.0f;
    if (B == 1) /* one row: dot products, without sgemm packing the whole weight matrix */
        cblas_sgemv(CblasRowMajor, CblasNoTrans, out_f, in_f, 1.0f, weight, in_f, in, 1,
                    beta, out, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, out_f, in_f, 1.0f, in, in_f,
                    weight, in_f, beta, out, out_f);
}

void linear_backward(float *din, float *dweight, float *dbias, const float *dout,
                     const float *in, const float *weight, int B, int in_f, int out_f) {
    if (din)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, in_f, out_f, 1.0f, dout,
                    out_f, weight, in_f, 1.0f, din, in_f);
    if (dweight)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out_f, in_f, B, 1.0f, dout,
                    out_f, in, in_f, 1.0f, dweight, in_f);
    if (dbias)
        for (int b = 0; b < B; b++)
            for (int o = 0; o < out_f; o++) dbias[o] += dout[(long)b * out_f + o];
}
