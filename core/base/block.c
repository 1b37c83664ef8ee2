/* One allocation for a workspace (see block.h). */
#include "block.h"

#include <stdint.h>
#include <stdlib.h>

void *block_part(block *b, size_t n, size_t size, size_t align) {
    size_t at = (b->used + align - 1) / align * align;
    if (at < b->used || (size && n > (SIZE_MAX - at) / size)) {
        b->overflow = 1;
        return NULL;
    }
    b->used = at + n * size;
    return b->base ? b->base + at : NULL;
}

void *block_alloc(block *b) {
    if (b->overflow) return NULL;
    b->base = calloc(1, b->used ? b->used : 1);
    b->used = b->head;
    return b->base;
}
