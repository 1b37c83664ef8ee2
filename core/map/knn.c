/* Exact kNN: SGEMM distance blocks or packed scans, threshold-and-quickselect candidate
 * selection, winners re-measured in double. */
#include "knn.h"

#include <cblas.h>
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
    d = d == 0.0f ? 0.0f : d;
    memcpy(&b, &d, sizeof b);
    b = b & 0x80000000u ? ~b : b | 0x80000000u;
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
 * the lower index). The rows are read from packed (knn_pack's blocks, row r at position
 * pos[r], or r when pos is NULL) when it is not NULL, which the scan has just brought
 * into cache, else from the row-major ref. Each row's sum runs over the dimensions in
 * order; the rows are independent, so their sums overlap. The order: each key's rank is
 * the count of smaller keys (k^2 comparisons without branches, cheaper than any sort's
 * dependent steps at these k). */
HOT_INLINE void finish(topk *t, const float *ref, const float *packed, const int *pos, int d,
                       const float *q, int k, int *idx, float *dist2) {
    topk_shrink(t);
    int64_t *exact = (int64_t *)t->s1;
    for (int r = 0; r < k; r++) {
        int row = topk_row(t->key[r]), at = pos ? pos[row] : row;
        size_t step = packed ? KNN_PACK : 1;
        const float *x = packed ? packed + (size_t)(at / KNN_PACK) * d * KNN_PACK + at % KNN_PACK
                                : ref + (size_t)row * d;
        double s = 0.0;
        for (int c = 0; c < d; c++) {
            double diff = (double)q[c] - (double)x[c * step];
            s += diff * diff;
        }
        /* as a signed key (top bit flipped): AVX2 compares signed 64-bit lanes only */
        exact[r] = (int64_t)(topk_key((float)s, row) ^ 0x8000000000000000ull);
    }
    for (int r = k; r % 4; r++) exact[r] = INT64_MAX;     /* padding, never smaller */
    for (int r = 0; r < k; r++) {
        int64_t key = exact[r];
        knn_i64x4 less = { 0 };
        for (int j = 0; j < k; j += 4) {
            knn_i64x4 e;
            memcpy(&e, exact + j, sizeof e);
            less += e < key;                 /* -1 where smaller */
        }
        int64_t rank = -(less[0] + less[1] + less[2] + less[3]);
        uint32_t b = (uint32_t)((uint64_t)key >> 32);      /* the float's bits */
        memcpy(&dist2[rank], &b, sizeof b);
        idx[rank] = topk_row((uint64_t)key);
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
    finish(&t, ref, NULL, NULL, d, q, k, idx, dist2);
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

/* Whether any of the 8 distances is below thr. Distances are >= +0 (sums of squares, +inf
 * at worst), so their bits order as the floats do and bits(a) - bits(thr) is negative
 * exactly when a < thr; an OR of those differences has the sign bit of any. Integer
 * arithmetic only: a float vector compare is scalarised by the AVX-512F clone. */
HOT_INLINE int any_below(const knn_v8 *a, int32_t thr_bits) {
    knn_i8 b;
    memcpy(&b, a, sizeof b);
    b -= thr_bits;
    uint64_t w[4];
    memcpy(w, &b, sizeof w);
    return ((w[0] | w[1] | w[2] | w[3]) & 0x8000000080000000ull) != 0;
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
 * and are ruled out before any scalar work. When rows come in increasing index (ordered),
 * one that ties the threshold's distance loses to it, so the vector test is strict;
 * otherwise ties go on to the key comparison. */
HOT_INLINE void offer_group(topk *t, const knn_v8 acc[KNN_GROUP_ROWS / 8], int rows, int first,
                            const int *ids, int skip, int ordered) {
    for (int v = 0; v * 8 < rows; v++) {
        int32_t thr = topk_thr_bits(t);
        if (!any_below(&acc[v], ordered || thr == INT32_MAX ? thr : thr + 1)) continue;
        float dist[8];
        memcpy(dist, &acc[v], sizeof dist);
        int end = rows - v * 8 < 8 ? rows - v * 8 : 8;
        if (t->count + 8 > t->cap) topk_shrink(t);
        /* branch-free append: every key is written, only those that qualify stay */
        for (int r = 0; r < end; r++) {
            int row = ids ? ids[v * 8 + r] : first + v * 8 + r;
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
    finish(&t, NULL, packed, NULL, d, q, k, idx, dist2);
}

/* ---- the index over a fixed reference ---------------------------------------------- */

#define SEG KNN_GROUP_ROWS          /* rows per segment: one group of the scan */

struct knn_index {
    int n, d, segs;
    float *packed;       /* the rows in tree order, knn_pack's layout: segment s is group s */
    int *id;             /* position in packed -> row of the caller's reference */
    int *pos;            /* row -> position in packed */
    float *centre;       /* the segments' centroids, knn_pack's layout */
    double *radius;      /* per segment: its rows' largest distance from the (float) centroid */
};

static void index_parts(block *b, knn_index *ix, size_t n, size_t d, size_t segs) {
    BLOCK_TAKE(b, ix->radius, segs);
    BLOCK_TAKE(b, ix->packed, knn_packed_floats((int)n, (int)d));
    BLOCK_TAKE(b, ix->centre, knn_packed_floats((int)segs, (int)d));
    BLOCK_TAKE(b, ix->id, n);
    BLOCK_TAKE(b, ix->pos, n);
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

knn_index *knn_index_create(const float *X, int n, int d) {
    if (n < 1 || d < 1) return NULL;
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
    for (int i = 0; i < n; i++) ix->id[i] = i;
    tree_order(X, d, ix->id, n, scratch, work, work + d, work + 2 * d);
    for (int p = 0; p < n; p++) {
        ix->pos[ix->id[p]] = p;
        knn_pack_row(ix->packed, d, p, X + (size_t)ix->id[p] * d);
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
    free(scratch); free(work); free(cent);
    return ix;
}

void knn_index_free(knn_index *ix) { free(ix); }

size_t knn_index_bytes(const knn_index *ix) {
    return sizeof *ix + (knn_packed_floats(ix->n, ix->d) + knn_packed_floats(ix->segs, ix->d)) *
                            sizeof(float) +
           (size_t)ix->segs * sizeof(double) + (size_t)ix->n * 2 * sizeof(int);
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
    /* 2. Their rows: a threshold near the final one at once. */
    for (int j = 0; j < m; j++) {
        int s = near[j], rows = ix->n - s * SEG < SEG ? ix->n - s * SEG : SEG;
        group_dist(ix->packed + (size_t)s * SEG * d, stride, d, q, acc);
        offer_group(&t, acc, rows, 0, ix->id + (size_t)s * SEG, -1, 0);
    }
    topk_shrink(&t);
    /* 3. The other segments, unless the triangle inequality rules a segment out: every
     * row x in it has |q - x| >= |q - centroid| - radius. The slack covers the float
     * rounding of the centroid distance and of the rows' scanned distances (a sum of d
     * squares in float: relative (d + 2) 2^-24 at most) four times over. */
    const double slack = ldexp(4.0 * (d + 2), -24);
    for (int s0 = 0; s0 < segs; s0 += SEG) {
        group_dist(ix->centre + (size_t)s0 * d, stride, d, q, acc);
        memcpy(cd, acc, sizeof cd);
        int end = segs - s0 < SEG ? segs - s0 : SEG;
        for (int r = 0; r < end; r++) {
            int s = s0 + r, seen = 0;
            for (int j = 0; j < m; j++) seen |= near[j] == s;
            if (seen) continue;
            if (t.thr != UINT64_MAX) {
                int32_t tb = topk_thr_bits(&t);
                float thr_d;
                memcpy(&thr_d, &tb, sizeof thr_d);
                double lb = sqrt((double)cd[r]) * (1.0 - slack) - ix->radius[s];
                if (lb > 0.0 && lb * lb > (double)thr_d * (1.0 + slack)) continue;
            }
            int rows = ix->n - s * SEG < SEG ? ix->n - s * SEG : SEG;
            group_dist(ix->packed + (size_t)s * SEG * d, stride, d, q, acc);
            offer_group(&t, acc, rows, 0, ix->id + (size_t)s * SEG, -1, 0);
        }
    }
    finish(&t, NULL, ix->packed, ix->pos, d, q, k, idx, dist2);
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
        finish(&t, ref, NULL, NULL, d, Q + (size_t)i * d, k, idx + (size_t)i * k, dist2 + (size_t)i * k);
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
        finish(&t, c->X, NULL, NULL, c->d, c->X + (size_t)i * c->d, c->k, c->idx + (size_t)i * c->k,
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
