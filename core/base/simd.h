/* simd.h — compile a hot loop for several x86-64 levels and pick one at load.
 *
 * The build stays portable (any x86-64, and valgrind can run it), yet the hot loops of
 * training (im2col, activations, Adam), the neighbour search and t-SNE run with 256- or
 * 512-bit vectors where the CPU has them: for training that alone is a fifth of an epoch.
 * GCC resolves the clone once, through an ifunc, at program start; a build for the
 * native CPU (__AVX2__ already on) needs no clones.
 *
 * Only leaf loops get clones: a clone that calls legacy-SSE code (glibc's exp, or our
 * default-compiled functions) pays the SSE/AVX transition penalty, measured 20x on exp
 * here. Helpers a hot loop calls are HOT_INLINE, so each clone has its own copy.
 * The clones are exact: ISO C mode keeps GCC from contracting a*b+c into an FMA and no
 * loop here reorders a sum, so every clone computes the same bits. */
#ifndef ANODM_SIMD_H
#define ANODM_SIMD_H

/* GCC only: clang 14 cannot call a target_clones function from another file, and
 * sanitizer builds gain nothing from the clones. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__AVX2__) && \
    !defined(__SANITIZE_ADDRESS__)
#define HOT_LOOP __attribute__((target_clones("avx512f", "avx2", "default")))
/* A loop on 256-bit vectors that wants AVX-512VL's 32 registers for them (a register
 * tile of 16 accumulators) where the CPU has them; x86-64-v4 brings FMA too, which ISO
 * C mode still never contracts into. */
#define HOT_LOOP_VL __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define HOT_LOOP
#define HOT_LOOP_VL
#endif

#if defined(__GNUC__)
#define HOT_INLINE static inline __attribute__((always_inline))
#else
#define HOT_INLINE static inline
#endif

#endif
