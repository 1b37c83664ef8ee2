/* simd.h — compile a hot loop twice, for AVX2 and for baseline x86-64, and pick at load.
 *
 * The build stays portable (any x86-64, and valgrind can run it), yet the element-wise
 * loops of training (im2col, activations, Adam) run with 256-bit vectors where the CPU
 * has them: that alone is a fifth of an epoch. GCC and clang resolve the clone once,
 * through an ifunc, at program start. Elsewhere the attribute disappears. */
#ifndef ANODM_SIMD_H
#define ANODM_SIMD_H

/* GCC only: clang 14 cannot call a target_clones function from another file, and
 * sanitizer builds gain nothing from the clones. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define HOT_LOOP __attribute__((target_clones("avx2", "default")))
#else
#define HOT_LOOP
#endif

#endif
