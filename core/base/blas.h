/* blas.h — choosing OpenBLAS's kernels for this processor.
 *
 * Debian 12's OpenBLAS (0.3.21, DYNAMIC_ARCH) picks its kernels when it is loaded, from
 * the CPU model it recognises. Processors newer than the library (Sapphire Rapids and
 * later, for one) are not recognised and get the generic "Prescott" SSE3 kernels, three
 * to five times slower than the AVX-512 or AVX2 kernels those processors run perfectly
 * well. The choice can only be changed through OPENBLAS_CORETYPE before the library is
 * loaded, so a program that finds itself on the fallback sets it and re-executes itself
 * once. A value already set by the user or the system is always respected. */
#ifndef ANODM_BLAS_H
#define ANODM_BLAS_H

/* If OpenBLAS fell back to generic kernels on a CPU with AVX-512 (SkylakeX kernels) or
 * AVX2 (Haswell), set OPENBLAS_CORETYPE and re-exec argv; returns only if nothing to do
 * or the re-exec failed. Call first thing in main(). */
void blas_select_kernels(char **argv);
/* The kernel family OpenBLAS is using, e.g. "SkylakeX". */
const char *blas_kernel_name(void);

#endif
