/* block.h — a workspace of several arrays in one allocation, as llm.c keeps its
 * parameters and its activations: one size, one allocation to check, one free.
 *
 * The layout is written once, as a function that takes the parts in turn, and it runs
 * twice: first to measure (block_part returns NULL and only adds up the sizes), then,
 * after block_alloc, to carve the parts out of the allocation in the same order. Parts
 * are taken by decreasing alignment (the head struct, doubles and pointers, then floats
 * and ints), so no padding falls between them; block_part aligns each one anyway. A
 * workspace whose struct heads the block is measured on a probe of that struct:
 *
 *     block b = BLOCK_HEAD(scorer);
 *     scorer probe;
 *     scorer_parts(&b, &probe, ...);         measure
 *     scorer *s = block_alloc(&b);           NULL: out of memory, or the size overflows
 *     if (s) scorer_parts(&b, s, ...);       carve
 *     ...
 *     free(s);                               everything at once
 *
 * The block is zeroed. */
#ifndef ANODM_BLOCK_H
#define ANODM_BLOCK_H

#include <stddef.h>

typedef struct {
    char *base;                  /* NULL while measuring */
    size_t head, used;           /* bytes of the head struct; bytes taken so far */
    int overflow;                /* a size did not fit a size_t */
} block;

/* A block headed by a struct of type T (at offset 0), or by nothing ({0}). */
#define BLOCK_HEAD(T) {.head = sizeof(T), .used = sizeof(T)}

/* The next part, n elements of size bytes aligned to align: NULL while measuring, else
 * its place in the block (for n = 0, a pointer that must not be read). */
void *block_part(block *b, size_t n, size_t size, size_t align);
/* p = the next part of n elements of p's type. */
#define BLOCK_TAKE(b, p, n) ((p) = block_part((b), (n), sizeof *(p), _Alignof(__typeof__(*(p)))))
/* After measuring: the zeroed block (free it), with carving to start after the head; NULL
 * when out of memory or when the measured size overflowed. */
void *block_alloc(block *b);

#endif
