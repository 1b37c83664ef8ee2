/* Exact kNN: SGEMM distance blocks or packed scans, threshold-and-quickselect candidate
 * selection, winners re-measured in double. */
#include "knn.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

/* Keep the k best of t, re-measure them exactly and write them nearest first (ties by
 * the lower index). The rows are read from packed (knn_pack's blocks) when it is not
 * NULL, which the scan has just brought into cache, else from the row-major ref. Each
 * row's sum runs over the dimensions in order; the rows are independent, so their sums
 * overlap. The order: each key's rank is the count of smaller keys (k^2 comparisons
 * without branches, cheaper than any sort's dependent steps at these k). */
HOT_INLINE void finish(topk *t, const float *ref, const float *packed, int d, const float *q,
                   int k, int *idx, float *dist2) {
    topk_shrink(t);
    uint64_t *exact = t->s1;
    for (int r = 0; r < k; r++) {
        int row = topk_row(t->key[r]);
        size_t step = packed ? KNN_PACK : 1;
        const float *x = packed ? packed + (size_t)(row / KNN_PACK) * d * KNN_PACK + row % KNN_PACK
                                : ref + (size_t)row * d;
        double s = 0.0;
        for (int c = 0; c < d; c++) {
            double diff = (double)q[c] - (double)x[c * step];
            s += diff * diff;
        }
        exact[r] = topk_key((float)s, row);
    }
    for (int r = 0; r < k; r++) {
        uint64_t key = exact[r];
        int rank = 0;
        for (int j = 0; j < k; j++) rank += exact[j] < key;
        uint32_t b = (uint32_t)(key >> 32) & 0x7fffffffu;   /* >= 0: the sign bit was set */
        memcpy(&dist2[rank], &b, sizeof b);
        idx[rank] = topk_row(key);
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
    finish(&t, ref, NULL, d, q, k, idx, dist2);
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

HOT_LOOP
void knn_query_packed(const float *packed, const float *ref, int n, int d, const float *q,
                      int k, int skip, int *idx, float *dist2) {
    TOPK_BUF(buf);
    topk t = TOPK_INIT(buf, k);
    const size_t stride = (size_t)d * KNN_PACK; /* floats per block */
    for (int row0 = 0; row0 < n; row0 += KNN_GROUP_ROWS) {
        /* KNN_GROUP (4) blocks, eight vectors at once: independent sums hide the add
         * latency one vector's chain over d would wait on. */
        const float *grp = packed + (size_t)row0 * d;
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
        /* Once the threshold settles, most vectors hold no candidate: rule them out
         * before any scalar work. Rows come in increasing index, so one that ties the
         * threshold's distance loses to it. */
        knn_v8 acc[KNN_GROUP_ROWS / 8] = { a0, a1, a2, a3, a4, a5, a6, a7 };
        int rows = n - row0 < KNN_GROUP_ROWS ? n - row0 : KNN_GROUP_ROWS;
        for (int v = 0; v * 8 < rows; v++) {
            if (!any_below(&acc[v], topk_thr_bits(&t))) continue;
            float dist[8];
            memcpy(dist, &acc[v], sizeof dist);
            int end = rows - v * 8 < 8 ? rows - v * 8 : 8;
            if (t.count + 8 > t.cap) topk_shrink(&t);
            /* branch-free append: every key is written, only those that qualify stay */
            for (int r = 0; r < end; r++) {
                int row = row0 + v * 8 + r;
                uint64_t key = topk_key(dist[r], row);
                t.key[t.count] = key;
                t.count += (key < t.thr) & (row != skip);
            }
        }
    }
    finish(&t, ref, packed, d, q, k, idx, dist2);
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
        finish(&t, ref, NULL, d, Q + (size_t)i * d, k, idx + (size_t)i * k, dist2 + (size_t)i * k);
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
        finish(&t, c->X, NULL, c->d, c->X + (size_t)i * c->d, c->k, c->idx + (size_t)i * c->k,
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
