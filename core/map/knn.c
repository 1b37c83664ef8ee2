/* Exact kNN: SGEMM distance blocks or packed scans, threshold-and-quickselect candidate
 * selection, winners re-measured in double. */
#include "knn.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "block.h"
#include "par.h"
#include "simd.h"

/* Candidate selection: candidates below a threshold go into a buffer of 4k; when it
 * fills, a quickselect keeps the k best and the threshold drops to the k-th best. A
 * candidate is one 64-bit key, the distance's bits made order-preserving in the high
 * half and the row in the low half, so that one unsigned comparison is the (distance,
 * index) order: no tie needs a branch of its own, and whatever the order rows arrive in,
 * the k best under that strict order are unique, so the result does not depend on the
 * buffer. */
typedef struct {
    uint64_t *key, *s1, *s2;   /* the buffer; two scratch arrays for the selection */
    int count, cap, k;
    uint64_t thr;        /* keys >= thr cannot be among the k best (UINT64_MAX: none yet) */
} topk;

/* The float's bits mapped so that unsigned order is the floats' order (negatives too, as
 * the SGEMM form can give; -0 counts as +0), then the row. */
HOT_INLINE uint64_t topk_key(float d, int i) {
    uint32_t b;
    memcpy(&b, &d, sizeof b);
    b = b == 0x80000000u ? 0u : b;                      /* -0 */
    b ^= (uint32_t)((int32_t)b >> 31) | 0x80000000u;    /* negative: ~b; else the top bit */
    return (uint64_t)b << 32 | (uint32_t)i;
}

HOT_INLINE int topk_row(uint64_t key) { return (int)(uint32_t)key; }

/* The threshold as the bits of a float >= 0 (0x7fffffff, above +inf, while the buffer
 * takes every row). */
HOT_INLINE int32_t topk_thr_bits(const topk *t) {
    return (int32_t)((uint32_t)(t->thr >> 32) ^ 0x80000000u);
}

/* The k-th smallest (0-based) of the n unique keys in a, which is left as it was:
 * quickselect, partitioning out of place (into s1, then between s2 and s1, each of n
 * keys) so that no step waits on the store before it, and without branches on the data. */
HOT_INLINE uint64_t kth_key(const uint64_t *a, int n, int k, uint64_t *s1, uint64_t *s2) {
    const uint64_t *src = a;
    uint64_t *dst = s1, *spare = s2;
    for (;;) {
        uint64_t x = src[0], y = src[n / 2], z = src[n - 1];
        uint64_t piv = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        /* smaller keys fill dst from the front, larger from the back; the pivot is left
         * with the one slot between them */
        int lo = 0, hi = n - 1;
        for (int j = 0; j < n; j++) {
            uint64_t v = src[j];
            dst[lo] = v;
            dst[hi] = v;
            lo += v < piv;
            hi -= v > piv;
        }
        if (k == lo) return piv;
        if (k < lo) {
            src = dst;
            n = lo;
        } else {
            src = dst + lo + 1;
            n -= lo + 1;
            k -= lo + 1;
        }
        uint64_t *sw = dst;
        dst = spare;
        spare = sw;
    }
}

/* Keep the k best: the k-th best becomes the threshold, and a branch-free pass keeps the
 * keys up to it. */
HOT_INLINE void topk_shrink(topk *t) {
    if (t->count <= t->k) return;
    uint64_t thr = kth_key(t->key, t->count, t->k - 1, t->s1, t->s2);
    int w = 0;
    for (int j = 0; j < t->count; j++) {
        uint64_t v = t->key[j];
        t->key[w] = v;
        w += v <= thr;
    }
    t->count = w;
    t->thr = thr;
}

HOT_INLINE void topk_push(topk *t, float d, int i) {
    uint64_t key = topk_key(d, i);
    if (key >= t->thr) return;
    t->key[t->count++] = key;
    if (t->count == t->cap) topk_shrink(t);
}

/* The buffer of 4k candidates and its scratch live on the caller's stack (k <=
 * KNN_MAX_K): TOPK_BUF declares them, TOPK_INIT sets a topk up on them. */

#define TOPK_CAP(k) (4 * (k) < 64 ? 64 : 4 * (k))
#define TOPK_BUF(buf) uint64_t buf[3][TOPK_CAP(KNN_MAX_K)]
#define TOPK_INIT(buf, k) { (buf)[0], (buf)[1], (buf)[2], 0, TOPK_CAP(k), (k), UINT64_MAX }

/* Four signed 64-bit keys: one AVX register (the compiler vectorises no loop of unknown
 * length at -O2, so the rank count below is written in vectors). */
typedef int64_t knn_i64x4 __attribute__((vector_size(4 * sizeof(int64_t))));

/* Keep the k best of t, re-measure them exactly and write them nearest first (ties by
 * the lower index). The rows are read from x, in blocks of `block` rows, each block
 * dimension-major (row-major when block is 1; knn_pack's layout when KNN_PACK), row r at
 * position pos[r] (r when pos is NULL): the copy the scan has just brought into cache.
 * All k places are looked up first (independent loads that overlap), then each row's
 * sum runs over the dimensions in order, four rows at a time so that their latencies
 * overlap. The order: each key's rank is the count of smaller keys, four keys against
 * each vector of others (k^2 comparisons without branches, cheaper than any sort's
 * dependent steps at these k). */
HOT_INLINE void finish(topk *t, const float *x, int block, const int *pos, int d,
                       const float *q, int k, int *idx, float *dist2) {
    topk_shrink(t);
    int64_t *exact = (int64_t *)t->s1;
    const float *at[KNN_MAX_K + 3];
    for (int r = 0; r < k + 3; r++) {    /* past k: the last row again, not written */
        int row = topk_row(t->key[r < k ? r : k - 1]), p = pos ? pos[row] : row;
        at[r] = x + (size_t)(p / block) * block * d + p % block;
    }
    for (int r0 = 0; r0 < k; r0 += 4) {
        double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
        const float *x0 = at[r0], *x1 = at[r0 + 1], *x2 = at[r0 + 2], *x3 = at[r0 + 3];
        for (int c = 0; c < d; c++) {
            size_t o = (size_t)c * block;
            double qc = q[c], e0 = qc - x0[o], e1 = qc - x1[o], e2 = qc - x2[o], e3 = qc - x3[o];
            s0 += e0 * e0;
            s1 += e1 * e1;
            s2 += e2 * e2;
            s3 += e3 * e3;
        }
        /* as signed keys (top bit flipped): AVX2 compares signed 64-bit lanes only */
        double s[4] = { s0, s1, s2, s3 };
        for (int u = 0; u < 4 && r0 + u < k; u++)
            exact[r0 + u] = (int64_t)(topk_key((float)s[u], topk_row(t->key[r0 + u])) ^
                                      0x8000000000000000ull);
    }
    for (int r = k; r % 4; r++) exact[r] = INT64_MAX;     /* padding, never smaller */
    for (int r0 = 0; r0 < k; r0 += 4) {
        knn_i64x4 l0 = { 0 }, l1 = { 0 }, l2 = { 0 }, l3 = { 0 };
        int64_t k0 = exact[r0], k1 = exact[r0 + 1], k2 = exact[r0 + 2], k3 = exact[r0 + 3];
        for (int j = 0; j < k; j += 4) {
            knn_i64x4 e;
            memcpy(&e, exact + j, sizeof e);
            l0 += e < k0;                    /* -1 where smaller */
            l1 += e < k1;
            l2 += e < k2;
            l3 += e < k3;
        }
        knn_i64x4 l[4] = { l0, l1, l2, l3 };
        for (int u = 0; u < 4 && r0 + u < k; u++) {
            int64_t key = exact[r0 + u], rank = -(l[u][0] + l[u][1] + l[u][2] + l[u][3]);
            uint32_t b = (uint32_t)((uint64_t)key >> 32);  /* the float's bits */
            memcpy(&dist2[rank], &b, sizeof b);
            idx[rank] = topk_row((uint64_t)key);
        }
    }
}

/* Squared distance with 16 independent partial sums, so that the compiler vectorises
 * it without reassociating (the result is the same for a given d whatever the batch). */
static float dist2_f(const float *restrict a, const float *restrict b, int d) {
    enum { W = 16 };
    float acc[W] = { 0 };
    int c = 0;
    for (; c + W <= d; c += W)
        for (int u = 0; u < W; u++) {
            float t = a[c + u] - b[c + u];
            acc[u] += t * t;
        }
    for (int u = 0; c < d; c++, u++) {
        float t = a[c] - b[c];
        acc[u] += t * t;
    }
    float s = 0.0f;
    for (int u = 0; u < W; u++) s += acc[u];
    return s;
}

void knn_query(const float *ref, int n, int d, const float *q, int k, int skip, int *idx,
               float *dist2) {
    TOPK_BUF(buf);
    topk t = TOPK_INIT(buf, k);
    for (int j = 0; j < n; j++) {
        if (j == skip) continue;
        topk_push(&t, dist2_f(q, ref + (size_t)j * d, d), j);
    }
    finish(&t, ref, 1, NULL, d, q, k, idx, dist2);
}

/* The packed reference is padded with zero rows to whole groups of KNN_GROUP blocks, so
 * the scan below always works on full groups. */
#define KNN_GROUP 4
#define KNN_GROUP_ROWS (KNN_GROUP * KNN_PACK)

size_t knn_packed_floats(int n, int d) {
    return (size_t)((n + KNN_GROUP_ROWS - 1) / KNN_GROUP_ROWS) * KNN_GROUP_ROWS * d;
}

void knn_pack_row(float *packed, int d, int row, const float *x) {
    float *block = packed + (size_t)(row / KNN_PACK) * d * KNN_PACK;
    for (int c = 0; c < d; c++) block[(size_t)c * KNN_PACK + row % KNN_PACK] = x[c];
}

void knn_pack(float *P, const float *X, int n, int d) {
    int blocks = (int)(knn_packed_floats(n, d) / ((size_t)d * KNN_PACK));
    for (int b = 0; b < blocks; b++) {
        for (int c = 0; c < d; c++) {
            for (int u = 0; u < KNN_PACK; u++) {
                int j = b * KNN_PACK + u;
                P[((size_t)b * d + c) * KNN_PACK + u] = j < n ? X[(size_t)j * d + c] : 0.0f;
            }
        }
    }
}

/* The scan works on vectors of 8 rows (GCC vector extension: one AVX register; wider
 * generic vectors are lowered badly by the AVX2 clone, measured 15x slower), a block of
 * KNN_PACK rows being two of them. */
typedef float knn_v8 __attribute__((vector_size(8 * sizeof(float))));
typedef int32_t knn_i8 __attribute__((vector_size(8 * sizeof(int32_t))));

/* Which of the 8 distances are below thr, as bits. Distances are >= +0 (sums of squares,
 * +inf at worst), so their bits order as the floats do and bits(a) - bits(thr) is
 * negative exactly when a < thr. Integer arithmetic only: a float vector compare is
 * scalarised by the AVX-512F clone. */
HOT_INLINE unsigned lanes_below(const knn_v8 *a, int32_t thr_bits) {
    knn_i8 b;
    memcpy(&b, a, sizeof b);
    b = (b - thr_bits) >> 31 & (knn_i8){ 1, 2, 4, 8, 16, 32, 64, 128 };
    uint64_t w[4];
    memcpy(w, &b, sizeof w);
    uint64_t o = w[0] | w[1] | w[2] | w[3];
    return (unsigned)(o | o >> 32);
}

/* acc += (q - x)^2 for the 8 rows at p: one step of a distance summed over dimensions in
 * order, as knn_query sums them (no contraction into FMA in ISO C mode). */
#define KNN_ACC(acc, p) (memcpy(&x, (p), sizeof x), x = qc - x, (acc) += x * x)

/* The distances from q to the KNN_GROUP_ROWS rows of one group of knn_pack's blocks (grp:
 * its first block; stride: floats per block), as eight vectors of eight. The KNN_GROUP
 * (4) blocks' eight vectors at once: independent sums hide the add latency one vector's
 * chain over d would wait on. */
HOT_INLINE void group_dist(const float *grp, size_t stride, int d, const float *q,
                           knn_v8 acc[KNN_GROUP_ROWS / 8]) {
    knn_v8 a0 = { 0 }, a1 = { 0 }, a2 = { 0 }, a3 = { 0 }, a4 = { 0 }, a5 = { 0 },
           a6 = { 0 }, a7 = { 0 }, x;
    for (int c = 0; c < d; c++) {
        knn_v8 qc = (knn_v8){ 0 } + q[c];
        const float *at = grp + (size_t)c * KNN_PACK;
        KNN_ACC(a0, at); KNN_ACC(a1, at + 8);
        KNN_ACC(a2, at + stride); KNN_ACC(a3, at + stride + 8);
        KNN_ACC(a4, at + 2 * stride); KNN_ACC(a5, at + 2 * stride + 8);
        KNN_ACC(a6, at + 3 * stride); KNN_ACC(a7, at + 3 * stride + 8);
    }
    acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3;
    acc[4] = a4; acc[5] = a5; acc[6] = a6; acc[7] = a7;
}

/* Offer the first `rows` distances of a group to t: row r is ids[r] (first + r when ids
 * is NULL); skip is left out. Once the threshold settles, most vectors hold no candidate
 * and are ruled out before any scalar work, and in the others only the rows below the
 * threshold are looked at. When rows come in increasing index (ordered), one that ties
 * the threshold's distance loses to it, so the vector test is strict; otherwise ties go
 * on to the key comparison. */
HOT_INLINE void offer_group(topk *t, const knn_v8 *acc, int rows, int first, const int *ids,
                            int skip, int ordered) {
    for (int v = 0; v * 8 < rows; v++) {
        int32_t thr = topk_thr_bits(t);
        unsigned lanes = lanes_below(&acc[v], ordered || thr == INT32_MAX ? thr : thr + 1);
        lanes &= rows - v * 8 < 8 ? (1u << (rows - v * 8)) - 1 : 0xffu;
        if (!lanes) continue;
        float dist[8];
        memcpy(dist, &acc[v], sizeof dist);
        if (t->count + 8 > t->cap) topk_shrink(t);
        /* branch-free append: every key is written, only those that qualify stay */
        for (; lanes; lanes &= lanes - 1) {
            int r = __builtin_ctz(lanes), row = ids ? ids[v * 8 + r] : first + v * 8 + r;
            uint64_t key = topk_key(dist[r], row);
            t->key[t->count] = key;
            t->count += (key < t->thr) & (row != skip);
        }
    }
}

HOT_LOOP
void knn_query_packed(const float *packed, int n, int d, const float *q, int k, int skip,
                      int *idx, float *dist2) {
    TOPK_BUF(buf);
    topk t = TOPK_INIT(buf, k);
    const size_t stride = (size_t)d * KNN_PACK; /* floats per block */
    for (int row0 = 0; row0 < n; row0 += KNN_GROUP_ROWS) {
        knn_v8 acc[KNN_GROUP_ROWS / 8];
        group_dist(packed + (size_t)row0 * d, stride, d, q, acc);
        int rows = n - row0 < KNN_GROUP_ROWS ? n - row0 : KNN_GROUP_ROWS;
        offer_group(&t, acc, rows, row0, NULL, skip, 1);
    }
    finish(&t, packed, KNN_PACK, NULL, d, q, k, idx, dist2);
}

/* ---- the index over a fixed reference ---------------------------------------------- */

#define SEG KNN_GROUP_ROWS          /* rows per segment: one group of the scan */
#define CODE_MAX 127                /* the codes' largest value: 7 bits (see the code scan) */
#define QUAD 4                      /* dimensions per 32-bit lane of the code scan */
#define TILE 8                      /* rows per tile of the index's floats: one vector */

struct knn_index {
    int n, d, segs, quads;
    int kernel;          /* KNN_KERNEL_* that scans the codes */
    double step;         /* the codes' grid spacing, the same in every dimension */
    double *lo, *hi;     /* per dimension: the rows' least and greatest value */
    double *radius;      /* per segment: its rows' largest distance from the (float) centroid */
    double *err;         /* per segment: a bound on its rows' distance from their codes,
                            in units of step */
    float *tiles;        /* the rows in tree order, by tiles of TILE rows, each dimension-
                            major (TILE floats a dimension): segment s is tiles s * SEG /
                            TILE on, and one tile's distances are one vector's */
    float *centre;       /* the segments' centroids, knn_pack's layout */
    int *id;             /* position in tiles -> row of the caller's reference */
    int *pos;            /* row -> position in tiles */
    uint8_t *code;       /* per segment, per quad of dimensions: SEG rows x QUAD codes */
};

static void index_parts(block *b, knn_index *ix, size_t n, size_t d, size_t segs) {
    size_t quads = (d + QUAD - 1) / QUAD;
    BLOCK_TAKE(b, ix->lo, d);
    BLOCK_TAKE(b, ix->hi, d);
    BLOCK_TAKE(b, ix->radius, segs);
    BLOCK_TAKE(b, ix->err, segs);
    BLOCK_TAKE(b, ix->tiles, segs * SEG * d);
    BLOCK_TAKE(b, ix->centre, knn_packed_floats((int)segs, (int)d));
    BLOCK_TAKE(b, ix->id, n);
    BLOCK_TAKE(b, ix->pos, n);
    BLOCK_TAKE(b, ix->code, segs * quads * SEG * QUAD);
}

typedef struct {
    double p;
    int i;
} proj_row;

static int proj_cmp(const void *a, const void *b) {
    const proj_row *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* Order ids[0, len) so that every run of SEG rows from the start is a compact segment: split
 * at a multiple of SEG near the middle of the rows' projections on their principal axis
 * (power iteration from the axis of widest spread), recursively. Deterministic: fixed
 * iterations, ties by row. */
static void tree_order(const float *X, int d, int *ids, int len, proj_row *scratch,
                       double *mean, double *v, double *w) {
    if (len <= SEG) return;
    for (int c = 0; c < d; c++) mean[c] = 0.0;
    for (int r = 0; r < len; r++)
        for (int c = 0; c < d; c++) mean[c] += X[(size_t)ids[r] * d + c];
    int widest = 0;
    double best = -1.0;
    for (int c = 0; c < d; c++) {
        mean[c] /= len;
        double lo = INFINITY, hi = -INFINITY;
        for (int r = 0; r < len; r++) {
            double x = X[(size_t)ids[r] * d + c];
            lo = x < lo ? x : lo;
            hi = x > hi ? x : hi;
        }
        if (hi - lo > best) best = hi - lo, widest = c;
    }
    for (int c = 0; c < d; c++) v[c] = c == widest;
    for (int it = 0; it < 8; it++) {       /* w = C v, C the rows' covariance (unscaled) */
        for (int c = 0; c < d; c++) w[c] = 0.0;
        for (int r = 0; r < len; r++) {
            const float *x = X + (size_t)ids[r] * d;
            double t = 0.0;
            for (int c = 0; c < d; c++) t += (x[c] - mean[c]) * v[c];
            for (int c = 0; c < d; c++) w[c] += (x[c] - mean[c]) * t;
        }
        double norm = 0.0;
        for (int c = 0; c < d; c++) norm += w[c] * w[c];
        if (!(norm > 0.0) || !isfinite(norm)) break;   /* no spread: any axis will do */
        for (int c = 0; c < d; c++) v[c] = w[c] / sqrt(norm);
    }
    for (int r = 0; r < len; r++) {
        const float *x = X + (size_t)ids[r] * d;
        double t = 0.0;
        for (int c = 0; c < d; c++) t += (x[c] - mean[c]) * v[c];
        scratch[r] = (proj_row){ t, ids[r] };
    }
    qsort(scratch, (size_t)len, sizeof *scratch, proj_cmp);
    for (int r = 0; r < len; r++) ids[r] = scratch[r].i;
    int half = SEG * (((len + SEG - 1) / SEG + 1) / 2);
    tree_order(X, d, ids, half, scratch, mean, v, w);
    tree_order(X, d, ids + half, len - half, scratch, mean, v, w);
}

/* The code of v (in [lo[c], hi[c]]) on dimension c's grid, lo[c] + step * code; adds to *e2
 * a bound on the square of v's distance from its grid value, the double arithmetic's
 * rounding included (2^-50 of the magnitudes involved). */
static int grid_code(const knn_index *ix, int c, double v, double *e2) {
    double from = v - ix->lo[c], u = nearbyint(from / ix->step);
    u = u < 0.0 ? 0.0 : u > CODE_MAX ? CODE_MAX : u;
    double off = fabs(from - ix->step * u) + (fabs(from) + ix->step * u) * 0x1p-50;
    *e2 += off * off;
    return (int)u;
}

/* sqrt of a sum of d squares computed in double, rounded up past the sum's rounding. */
static double bound_norm(double e2, int d) { return sqrt(e2 * (1.0 + (d + 2) * 0x1p-50)); }

/* The rows' codes: a grid of CODE_MAX + 1 values per dimension over the rows' box, one
 * spacing for all dimensions (so that the codes' squared distance, times step^2, is the
 * Euclidean one up to the rounding to the grid), and each segment's bound on it. */
static void index_codes(knn_index *ix, const float *X) {
    const int n = ix->n, d = ix->d;
    double wide = 0.0;
    for (int c = 0; c < d; c++) {
        double lo = X[c], hi = X[c];
        for (int i = 1; i < n; i++) {
            double x = X[(size_t)i * d + c];
            lo = x < lo ? x : lo;
            hi = x > hi ? x : hi;
        }
        ix->lo[c] = lo;
        ix->hi[c] = hi;
        wide = hi - lo > wide ? hi - lo : wide;
    }
    ix->step = wide > 0.0 ? wide / CODE_MAX : 1.0;
    for (int p = 0; p < n; p++) {
        const float *x = X + (size_t)ix->id[p] * d;
        int s = p / SEG;
        double e2 = 0.0;
        for (int c = 0; c < d; c++)
            ix->code[((size_t)(s * ix->quads + c / QUAD) * SEG + p % SEG) * QUAD + c % QUAD] =
                (uint8_t)grid_code(ix, c, x[c], &e2);
        double e = bound_norm(e2, d) / ix->step;
        ix->err[s] = e > ix->err[s] ? e : ix->err[s];
    }
}

knn_index *knn_index_create(const float *X, int n, int d) {
    if (n < 1 || d < 1 || d > KNN_INDEX_MAX_D) return NULL;
    int segs = (n + SEG - 1) / SEG;
    block b = BLOCK_HEAD(knn_index);
    knn_index probe;
    index_parts(&b, &probe, (size_t)n, (size_t)d, (size_t)segs);
    knn_index *ix = block_alloc(&b);
    proj_row *scratch = malloc((size_t)n * sizeof *scratch);
    double *work = malloc((size_t)d * 3 * sizeof *work);
    float *cent = malloc((size_t)d * sizeof *cent);
    if (!ix || !scratch || !work || !cent) {
        free(ix); free(scratch); free(work); free(cent);
        return NULL;
    }
    index_parts(&b, ix, (size_t)n, (size_t)d, (size_t)segs);
    ix->n = n;
    ix->d = d;
    ix->segs = segs;
    ix->quads = (d + QUAD - 1) / QUAD;
    for (int i = 0; i < n; i++) ix->id[i] = i;
    tree_order(X, d, ix->id, n, scratch, work, work + d, work + 2 * d);
    for (int p = 0; p < n; p++) {
        ix->pos[ix->id[p]] = p;
        for (int c = 0; c < d; c++)
            ix->tiles[((size_t)(p / TILE) * d + c) * TILE + p % TILE] = X[(size_t)ix->id[p] * d + c];
    }
    for (int s = 0; s < segs; s++) {
        int first = s * SEG, len = n - first < SEG ? n - first : SEG;
        for (int c = 0; c < d; c++) {
            double sum = 0.0;
            for (int r = 0; r < len; r++) sum += X[(size_t)ix->id[first + r] * d + c];
            cent[c] = (float)(sum / len);
        }
        double worst = 0.0;
        for (int r = 0; r < len; r++) {
            const float *x = X + (size_t)ix->id[first + r] * d;
            double s2 = 0.0;
            for (int c = 0; c < d; c++) s2 += ((double)x[c] - cent[c]) * ((double)x[c] - cent[c]);
            worst = s2 > worst ? s2 : worst;
        }
        ix->radius[s] = sqrt(worst);
        knn_pack_row(ix->centre, d, s, cent);
    }
    index_codes(ix, X);
    for (int kernel = KNN_KERNELS - 1; knn_index_use_kernel(ix, kernel); kernel--) {}
    free(scratch); free(work); free(cent);
    return ix;
}
void knn_index_free(knn_index *ix) { free(ix); }

size_t knn_index_bytes(const knn_index *ix) {
    return sizeof *ix + (size_t)ix->d * 2 * sizeof(double) +
           (size_t)ix->segs * 2 * sizeof(double) +
           ((size_t)ix->segs * SEG * ix->d + knn_packed_floats(ix->segs, ix->d)) * sizeof(float) +
           (size_t)ix->n * 2 * sizeof(int) + (size_t)ix->segs * ix->quads * SEG * QUAD;
}

/* ---- the code scan ----
 * A segment's rows are first measured on their codes: D = sum (b_c - x_c)^2 over the
 * codes of the query (b, below) and of a row, an exact integer, four dimensions a 32-bit
 * lane. With codes of 7 bits |b_c - x_c| fits a signed byte, so that x86's byte
 * multiply-adds (pmaddubsw then pmaddwd, or AVX-512 VNNI's vpdpbusd) square and sum four
 * of them at once: a segment of 64 rows x 16 dimensions is 32 vectors of 32 codes, a
 * quarter of the float scan's bytes and a quarter (VNNI) to under half (AVX2) of its
 * instructions; all 10000 rows of the Fashion-MNIST map took 1.6 / 2.2 us against the
 * float scan's 8.0 (measured). GCC's generic vectors have no byte multiply-add (written
 * with them, widening to 16 bits, the scan was slower than the float one), hence the
 * intrinsics, each kernel compiled for its own target and picked by what the CPU has;
 * the plain kernel computes the same integers anywhere. Results never depend on the
 * kernel: D only decides which rows are measured in float, and every row it leaves out
 * is proven out of the k best. */

/* Bit r of the result: row r of the segment (its codes at sc) has D < thr. qq: the
 * query's codes, a quad of dimensions a word. */
HOT_INLINE uint64_t seg_scan_plain(const uint8_t *sc, int quads, const uint32_t *qq,
                                   int32_t thr) {
    uint64_t below = 0;
    for (int r = 0; r < SEG; r++) {
        int32_t sum = 0;
        for (int g = 0; g < quads; g++) {
            const uint8_t *x = sc + ((size_t)g * SEG + r) * QUAD;
            for (int u = 0; u < QUAD; u++) {
                int32_t t = (int32_t)(qq[g] >> (8 * u) & 0xff) - x[u];
                sum += t * t;
            }
        }
        below |= (uint64_t)(sum < thr) << r;
    }
    return below;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define KNN_X86 1

/* The 8 vectors of 8 rows, each a sum over the quads of SQ(a, |q - x|) (a: the vector's
 * accumulator), then the rows with D < thr as bits. */
#define SEG_SCAN(SQ)                                                                        \
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0,       \
            a6 = a0, a7 = a0, t;                                                            \
    for (int g = 0; g < quads; g++) {                                                       \
        const __m256i qv = _mm256_set1_epi32((int)qq[g]);                                   \
        const __m256i *p = (const __m256i *)(sc + (size_t)g * SEG * QUAD);                  \
        t = _mm256_abs_epi8(_mm256_sub_epi8(qv, _mm256_loadu_si256(p))); SQ(a0, t);         \
        t = _mm256_abs_epi8(_mm256_sub_epi8(qv, _mm256_loadu_si256(p + 1))); SQ(a1, t);     \
        t = _mm256_abs_epi8(_mm256_sub_epi8(qv, _mm256_loadu_si256(p + 2))); SQ(a2, t);     \
        t = _mm256_abs_epi8(_mm256_sub_epi8(qv, _mm256_loadu_si256(p + 3))); SQ(a3, t);     \
        t = _mm256_abs_epi8(_mm256_sub_epi8(qv, _mm256_loadu_si256(p + 4))); SQ(a4, t);     \
        t = _mm256_abs_epi8(_mm256_sub_epi8(qv, _mm256_loadu_si256(p + 5))); SQ(a5, t);     \
        t = _mm256_abs_epi8(_mm256_sub_epi8(qv, _mm256_loadu_si256(p + 6))); SQ(a6, t);     \
        t = _mm256_abs_epi8(_mm256_sub_epi8(qv, _mm256_loadu_si256(p + 7))); SQ(a7, t);     \
    }                                                                                       \
    const __m256i th = _mm256_set1_epi32(thr);                                              \
    const __m256i v[8] = { a0, a1, a2, a3, a4, a5, a6, a7 };                                \
    uint64_t below = 0;                                                                     \
    for (int j = 0; j < 8; j++)                                                             \
        below |= (uint64_t)(unsigned)_mm256_movemask_ps(                                    \
                     _mm256_castsi256_ps(_mm256_cmpgt_epi32(th, v[j]))) << (8 * j);         \
    return below

/* pmaddubsw squares the bytes (|q - x| <= 127 as both its unsigned and its signed
 * operand) and adds pairs (<= 2 * 127^2, no saturation); pmaddwd by 1 adds the pairs. */
#define SQ_AVX2(a, t) \
    (a = _mm256_add_epi32(a, _mm256_madd_epi16(_mm256_maddubs_epi16(t, t), ones)))
__attribute__((target("avx2")))
static uint64_t seg_scan_avx2(const uint8_t *sc, int quads, const uint32_t *qq, int32_t thr) {
    const __m256i ones = _mm256_set1_epi16(1);
    SEG_SCAN(SQ_AVX2);
}

#define SQ_VNNI(a, t) (a = _mm256_dpbusd_epi32(a, t, t))
__attribute__((target("avx2,avx512f,avx512vl,avx512vnni")))
static uint64_t seg_scan_vnni(const uint8_t *sc, int quads, const uint32_t *qq, int32_t thr) {
    SEG_SCAN(SQ_VNNI);
}
#endif

int knn_index_use_kernel(knn_index *ix, int kernel) {
    int have = kernel == KNN_KERNEL_PLAIN;
#ifdef KNN_X86
    __builtin_cpu_init();
    if (kernel == KNN_KERNEL_AVX2) have = __builtin_cpu_supports("avx2");
    if (kernel == KNN_KERNEL_VNNI)
        have = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#endif
    if (!have) return -1;
    ix->kernel = kernel;
    return 0;
}

int knn_index_kernel(const knn_index *ix) { return ix->kernel; }

HOT_INLINE uint64_t seg_scan(const knn_index *ix, int s, const uint32_t *qq, int32_t thr) {
    const uint8_t *sc = ix->code + (size_t)s * ix->quads * SEG * QUAD;
#ifdef KNN_X86
    if (ix->kernel == KNN_KERNEL_VNNI) return seg_scan_vnni(sc, ix->quads, qq, thr);
    if (ix->kernel == KNN_KERNEL_AVX2) return seg_scan_avx2(sc, ix->quads, qq, thr);
#endif
    return seg_scan_plain(sc, ix->quads, qq, thr);
}

/* The query's side of the code scan. q's nearest point b in the rows' box, and b's codes:
 * for a row x, |q - x|^2 >= |q - b|^2 + |b - x|^2 (b is q's projection onto a convex set
 * that holds x), and |b - x| >= step sqrt(D) - eb - ex (triangle inequality: eb and ex
 * bound b's and x's distances from their grid points, which are step sqrt(D) apart). */
typedef struct {
    uint32_t qq[KNN_INDEX_MAX_D / QUAD];
    double qb2, eb;      /* |q - b|^2; eb */
} code_query;

static void code_query_init(const knn_index *ix, const float *q, code_query *cq) {
    double qb2 = 0.0, e2 = 0.0;
    memset(cq->qq, 0, (size_t)ix->quads * sizeof cq->qq[0]);
    for (int c = 0; c < ix->d; c++) {
        double b = q[c] < ix->lo[c] ? ix->lo[c] : q[c] > ix->hi[c] ? ix->hi[c] : q[c];
        qb2 += (q[c] - b) * (q[c] - b);
        cq->qq[c / QUAD] |= (uint32_t)grid_code(ix, c, b, &e2) << (8 * (c % QUAD));
    }
    cq->qb2 = qb2;
    cq->eb = bound_norm(e2, ix->d);
}

/* The float value of t's threshold, the k-th best distance so far (+inf while t holds
 * fewer than k). */
HOT_INLINE double topk_thr_dist(const topk *t) {
    if (t->thr == UINT64_MAX) return INFINITY;
    int32_t tb = topk_thr_bits(t);
    float thr;
    memcpy(&thr, &tb, sizeof thr);
    return thr;
}

/* The codes' reach for a threshold thr, grown by the slack, in units of step: sqrt(D) -
 * ex beyond it (ex: the segment's err) rules a row out, as |q - x|^2 > thr then. -1:
 * every row is out (|q - b|^2 alone exceeds thr). */
static double code_reach(const knn_index *ix, const code_query *cq, double thr) {
    double room = thr - cq->qb2;
    return room < 0.0 ? -1.0 : (sqrt(room) + cq->eb) / ix->step;
}

/* The D below which segment s's rows stay (INT32_MAX: all); the double arithmetic's
 * rounding here is far inside the 2^-40. */
HOT_INLINE int32_t code_lim(const knn_index *ix, double reach, int s) {
    if (reach < 0.0) return 0;
    double r = reach + ix->err[s], lim = r * r * (1.0 + 0x1p-40) + 1.0;
    return lim < (double)INT32_MAX ? (int32_t)lim : INT32_MAX;
}

/* The float distances from q to the 8 rows of the tile at x, each summed over the
 * dimensions in order: the packed scan's lanes, bit for bit. */
HOT_INLINE void tile_dist(const float *x, int d, const float *q, knn_v8 *acc) {
    knn_v8 a = { 0 }, v;
    for (int c = 0; c < d; c++) {
        memcpy(&v, x + (size_t)c * TILE, sizeof v);
        v = ((knn_v8){ 0 } + q[c]) - v;
        a += v * v;
    }
    *acc = a;
}

/* The same for the SEG / TILE tiles of a segment at x, eight independent sums at once
 * (group_dist for the tile layout). */
HOT_INLINE void seg_dist(const float *x, int d, const float *q, knn_v8 acc[SEG / TILE]) {
    const size_t t = (size_t)TILE * d;     /* floats per tile */
    knn_v8 a0 = { 0 }, a1 = { 0 }, a2 = { 0 }, a3 = { 0 }, a4 = { 0 }, a5 = { 0 },
           a6 = { 0 }, a7 = { 0 }, v;
    for (int c = 0; c < d; c++) {
        knn_v8 qc = (knn_v8){ 0 } + q[c];
        const float *at = x + (size_t)c * TILE;
#define KNN_TILE_ACC(a, j) (memcpy(&v, at + (j) * t, sizeof v), v = qc - v, (a) += v * v)
        KNN_TILE_ACC(a0, 0); KNN_TILE_ACC(a1, 1); KNN_TILE_ACC(a2, 2); KNN_TILE_ACC(a3, 3);
        KNN_TILE_ACC(a4, 4); KNN_TILE_ACC(a5, 5); KNN_TILE_ACC(a6, 6); KNN_TILE_ACC(a7, 7);
#undef KNN_TILE_ACC
    }
    acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3;
    acc[4] = a4; acc[5] = a5; acc[6] = a6; acc[7] = a7;
}

/* Segment s's tiles that hold a row the code scan leaves, measured in float and offered
 * to t. The codes' reach follows t's threshold (*reach for *reach_thr). */
HOT_INLINE void segment_rows(const knn_index *ix, topk *t, const code_query *cq,
                             const float *q, int s, uint64_t *reach_thr, double *reach,
                             double slack) {
    const int d = ix->d, rows = ix->n - s * SEG < SEG ? ix->n - s * SEG : SEG;
    if (t->thr != *reach_thr) {
        *reach_thr = t->thr;
        *reach = code_reach(ix, cq, topk_thr_dist(t) * (1.0 + slack));
    }
    uint64_t live = seg_scan(ix, s, cq->qq, code_lim(ix, *reach, s));
    live &= rows == SEG ? ~0ull : (1ull << rows) - 1;
    for (int v = 0; live; v++, live >>= TILE) {
        if (!(live & 0xffu)) continue;
        knn_v8 acc;
        int p0 = s * SEG + v * TILE;
        tile_dist(ix->tiles + (size_t)p0 * d, d, q, &acc);
        offer_group(t, &acc, rows - v * TILE < TILE ? rows - v * TILE : TILE, 0, ix->id + p0, -1, 0);
    }
}

/* The segments scanned first: enough rows for k with two segments to spare. */
#define INDEX_FIRST_MAX 12
static int index_first(int k, int segs) {
    int m = (k + SEG - 1) / SEG + 2;
    m = m < INDEX_FIRST_MAX ? m : INDEX_FIRST_MAX;
    return m < segs ? m : segs;
}

HOT_LOOP
void knn_index_query(const knn_index *ix, const float *q, int k, int *idx, float *dist2) {
    TOPK_BUF(buf);
    topk t = TOPK_INIT(buf, k);
    const int d = ix->d, segs = ix->segs, m = index_first(k, segs);
    const size_t stride = (size_t)d * KNN_PACK;
    knn_v8 acc[SEG / 8];
    float cd[SEG];
    /* 1. The m segments whose centroids are nearest, nearest first. */
    int near[INDEX_FIRST_MAX];
    float near_d[INDEX_FIRST_MAX];
    int have = 0;
    for (int s0 = 0; s0 < segs; s0 += SEG) {
        group_dist(ix->centre + (size_t)s0 * d, stride, d, q, acc);
        memcpy(cd, acc, sizeof cd);
        int end = segs - s0 < SEG ? segs - s0 : SEG;
        for (int r = 0; r < end; r++) {
            if (have == m && cd[r] >= near_d[m - 1]) continue;
            int at = have < m ? have++ : m - 1;
            for (; at > 0 && near_d[at - 1] > cd[r]; at--) {
                near_d[at] = near_d[at - 1];
                near[at] = near[at - 1];
            }
            near_d[at] = cd[r];
            near[at] = s0 + r;
        }
    }
    /* 2. Their rows, nearest segment first: a threshold near the final one at once; then
     * the other segments, unless the triangle inequality rules a segment out: every
     * row x in it has |q - x| >= |q - centroid| - radius. The slack covers the float
     * rounding of the centroid distance and of the rows' scanned distances (a sum of d
     * squares in float: relative (d + 2) 2^-24 at most) four times over; a centroid
     * distance that overflowed counts as FLT_MAX. In every segment the code scan rules
     * rows out likewise, and only the rows it leaves are measured in float. */
    const double slack = ldexp(4.0 * (d + 2), -24);
    code_query cq;
    code_query_init(ix, q, &cq);
    uint64_t reach_thr = t.thr;
    double reach = code_reach(ix, &cq, INFINITY);
    for (int j = 0; j < m; j++) {
        int s = near[j], rows = ix->n - s * SEG < SEG ? ix->n - s * SEG : SEG;
        seg_dist(ix->tiles + (size_t)s * SEG * d, d, q, acc);
        offer_group(&t, acc, rows, 0, ix->id + (size_t)s * SEG, -1, 0);
    }
    topk_shrink(&t);
    for (int s0 = 0; s0 < segs; s0 += SEG) {
        group_dist(ix->centre + (size_t)s0 * d, stride, d, q, acc);
        memcpy(cd, acc, sizeof cd);
        int end = segs - s0 < SEG ? segs - s0 : SEG;
        double ball = sqrt(topk_thr_dist(&t) * (1.0 + slack));
        uint64_t keep = 0;
        for (int r = 0; r < end; r++) {
            double centre = (cd[r] < FLT_MAX ? cd[r] : FLT_MAX) * (1.0 - slack);
            double within = ix->radius[s0 + r] + ball;
            keep |= (uint64_t)!(centre > within * within) << r;
        }
        for (int j = 0; j < m; j++)
            if (near[j] >= s0 && near[j] < s0 + SEG) keep &= ~(1ull << (near[j] - s0));
        for (; keep; keep &= keep - 1)
            segment_rows(ix, &t, &cq, q, s0 + __builtin_ctzll(keep), &reach_thr, &reach, slack);
    }
    finish(&t, ix->tiles, TILE, ix->pos, d, q, k, idx, dist2);
}

void knn_norms(const float *X, int n, int d, float *norms) {
    for (int i = 0; i < n; i++) {
        const float *x = X + (size_t)i * d;
        double s = 0.0;
        for (int c = 0; c < d; c++) s += (double)x[c] * x[c];
        norms[i] = (float)s;
    }
}

size_t knn_batch_scratch(int n, int m) { return (size_t)m * n + (size_t)m; }

void knn_batch(const float *ref, const float *ref_norms, int n, int d, const float *Q, int m,
               int k, float *scratch, int *idx, float *dist2) {
    float *G = scratch, *qn = scratch + (size_t)m * n;
    knn_norms(Q, m, d, qn);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, d, 1.0f, Q, d, ref, d, 0.0f,
                G, n);
    TOPK_BUF(buf);
    for (int i = 0; i < m; i++) {
        const float *g = G + (size_t)i * n;
        topk t = TOPK_INIT(buf, k);
        for (int j = 0; j < n; j++) topk_push(&t, qn[i] + ref_norms[j] - 2.0f * g[j], j);
        finish(&t, ref, 1, NULL, d, Q + (size_t)i * d, k, idx + (size_t)i * k, dist2 + (size_t)i * k);
    }
}

typedef struct {
    const float *X, *norms, *G;   /* G: block rows x n inner products */
    int n, d, k, row0;
    int *idx;
    float *dist2;
} select_ctx;

static void select_rows(void *vctx, int begin, int end) {
    select_ctx *c = vctx;
    for (int b = begin; b < end; b++) {
        int i = c->row0 + b;
        const float *g = c->G + (size_t)b * c->n;
        float ni = c->norms[i];
        TOPK_BUF(buf);
        topk t = TOPK_INIT(buf, c->k);
        for (int j = 0; j < c->n; j++)
            if (j != i) topk_push(&t, ni + c->norms[j] - 2.0f * g[j], j);
        finish(&t, c->X, 1, NULL, c->d, c->X + (size_t)i * c->d, c->k, c->idx + (size_t)i * c->k,
               c->dist2 + (size_t)i * c->k);
    }
}

int knn_all(const float *X, int n, int d, int k, int n_threads, int *idx, float *dist2,
            char *err, size_t errlen) {
    if (n < 2 || d < 1 || k < 1 || k > n - 1 || k > KNN_MAX_K) {
        snprintf(err, errlen, "knn: need 1 <= k <= n - 1 and k <= %d (n=%d, k=%d, d=%d)",
                 KNN_MAX_K, n, k, d);
        return -1;
    }
    if (n_threads <= 0) n_threads = 2;
    /* Query block: keep the inner-product block near 32 MB. */
    int block = (int)(8000000 / n);
    if (block < 16) block = 16;
    if (block > 1024) block = 1024;
    if (block > n) block = n;
    float *norms = malloc((size_t)n * sizeof *norms);
    float *G = malloc((size_t)block * n * sizeof *G);
    if (!norms || !G) {
        free(norms); free(G);
        snprintf(err, errlen, "knn: out of memory (n=%d)", n);
        return -1;
    }
    knn_norms(X, n, d, norms);
    select_ctx ctx = { X, norms, G, n, d, k, 0, idx, dist2 };
    for (int row0 = 0; row0 < n; row0 += block) {
        int rows = n - row0 < block ? n - row0 : block;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n, d, 1.0f,
                    X + (size_t)row0 * d, d, X, d, 0.0f, G, n);
        ctx.row0 = row0;
        par_for(n_threads, rows, select_rows, &ctx);
    }
    free(norms);
    free(G);
    return 0;
}
