/* One allocation for a workspace (core/base/block.h): the carving pass lays the parts out
 * exactly as the measuring pass counted them, each aligned for its type and none
 * overlapping another, the block zeroed; a size that overflows is refused, not wrapped. */
#include <stdint.h>
#include <stdlib.h>

#include "block.h"
#include "check.h"

typedef struct {
    int n;
    char tag;                    /* a head whose size is not a multiple of 8 */
    double *d;
    float *f;
    char *c;
    int32_t *i;
    long double *ld;             /* taken last: the only part that needs padding */
} parts_of;

static void lay_out(block *b, parts_of *p, size_t n) {
    BLOCK_TAKE(b, p->d, n);
    BLOCK_TAKE(b, p->f, 3 * n);
    BLOCK_TAKE(b, p->c, n + 1);
    BLOCK_TAKE(b, p->i, n);
    BLOCK_TAKE(b, p->ld, 2);
}

TEST(block_carves_what_it_measured) {
    for (size_t n = 0; n < 20; n++) {
        block b = BLOCK_HEAD(parts_of);
        parts_of probe;
        lay_out(&b, &probe, n);
        CHECK(probe.d == NULL && probe.ld == NULL);     /* measuring hands out nothing */
        const size_t measured = b.used;
        parts_of *p = block_alloc(&b);
        CHECK(p != NULL);
        if (!p) return;
        lay_out(&b, p, n);
        CHECK(b.used == measured);
        char *lo = (char *)p, *hi = lo + measured;
        CHECK((char *)p->d >= lo + sizeof *p);          /* after the head */
        CHECK((uintptr_t)p->d % _Alignof(double) == 0 && (uintptr_t)p->ld % _Alignof(long double) == 0);
        CHECK((uintptr_t)p->f % _Alignof(float) == 0 && (uintptr_t)p->i % _Alignof(int32_t) == 0);
        CHECK((char *)(p->d + n) <= (char *)p->f && (char *)(p->f + 3 * n) <= p->c &&
              p->c + n + 1 <= (char *)p->i && (char *)(p->i + n) <= (char *)p->ld &&
              (char *)(p->ld + 2) <= hi);
        int zero = p->n == 0 && p->tag == 0 && p->c[n] == 0 && p->ld[1] == 0;
        for (size_t k = 0; k < n; k++) zero &= p->d[k] == 0 && p->f[3 * k + 2] == 0 && p->i[k] == 0;
        CHECK(zero);
        free(p);
    }
}

TEST(block_refuses_sizes_that_overflow) {
    block b = {0};
    double *d;
    float *f;
    BLOCK_TAKE(&b, d, 10);
    BLOCK_TAKE(&b, f, SIZE_MAX / 2);    /* 2 * SIZE_MAX bytes */
    CHECK(block_alloc(&b) == NULL);
    block c = {0};
    BLOCK_TAKE(&c, d, SIZE_MAX / 8 - 1);
    BLOCK_TAKE(&c, d, SIZE_MAX / 8 - 1); /* each fits, the sum does not */
    CHECK(block_alloc(&c) == NULL);
    (void)d, (void)f;
}
