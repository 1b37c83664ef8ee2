/* gemm.h — a matrix product whose every output is summed in one fixed order, for inference.
 *
 * Why not OpenBLAS: a row of an OpenBLAS product does not come out the same when the
 * product has more rows (its edge kernels and one-row paths sum in another order, and so
 * do threads), so a sample's score would depend on what it was batched with
 * (docs/BATCHING.md). Here each output C[m, n] is, for a product of N >= 16 columns, one
 * float accumulator that starts at bias[n] and adds A[m, k] B[k, n] for k = 0 .. K-1 in
 * that order; for fewer columns, bias[n] + (s + tail), s the sum of 16 lane accumulators
 * (lane i adds the terms at i, i + 16, ... of each run's whole vectors, in order) in a
 * fixed tree, tail the rest of each run added in order; then the epilogue. Which form and
 * which order depend on N and the run length only, never on M, on where a row falls in
 * its tile, or on the CPU: vectors are GCC vector types (of 8 floats; the 16 lanes are
 * two of them) whose element-wise IEEE operations every target_clones clone (simd.h)
 * computes alike, and ISO C mode contracts no a*b+c into an FMA. So a row gives the same
 * bits alone or inside any batch, on every x86-64.
 *
 * The A side is gathered, so a convolution needs no im2col copy: row m reads T taps, tap t
 * a run of C consecutive floats at a_off[p * T + t] from its sample's start (p = m mod P,
 * the row's position within its sample; a negative offset reads zeros: padding), so
 * K = T * C. Row m writes its N outputs contiguously at c_off[p] from its sample's start
 * in C. A plain row-major product is P = 1, T = 1, a_off = c_off = {0}. */
#ifndef ANODM_GEMM_H
#define ANODM_GEMM_H

#include <stddef.h>

#define GEMM_MAX_OPS 4

/* Element-wise operations after the sum, applied in order: ReLU (max(v, 0), NaN to 0) and
 * eval-mode batch normalisation (v - mean[n]) * scale[n] + shift[n]. */
typedef enum { GEMM_RELU, GEMM_AFFINE } gemm_op_kind;

typedef struct {
    gemm_op_kind kind;
    const float *mean, *scale, *shift;   /* GEMM_AFFINE: gemm_padded_n(N) floats each */
} gemm_op;

typedef struct {
    int M, N, P, T, C;
    const float *a;            /* the samples' inputs, sample b at a + b * a_stride */
    size_t a_stride;
    const int *a_off;          /* P * T offsets, or -1 for a tap in the padding */
    const float *zeros;        /* C zeros, read for a negative offset */
    const float *w;            /* B, packed by gemm_pack */
    const float *bias;         /* gemm_padded_n(N) floats (NULL: none) */
    float *c;                  /* outputs, sample b at c + b * c_stride */
    size_t c_stride;
    const int *c_off;          /* P offsets */
    int n_ops;
    gemm_op ops[GEMM_MAX_OPS];
} gemm_call;

/* N rounded up to whole 16-float vectors: the length of a bias or affine vector. */
int gemm_padded_n(int N);
/* Floats gemm_pack writes for a K x N matrix. */
size_t gemm_packed_floats(int K, int N);
/* Pack b (K x N, row-major) for gemm_run: panels of 32 columns (zero-padded), each its K
 * rows in a row, or for N < 16 the transpose. */
void gemm_pack(float *dst, const float *b, int K, int N);
/* Compute every output of g. */
void gemm_run(const gemm_call *g);

#endif
