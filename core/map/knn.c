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
 * fills, a quickselect keeps the k best and the threshold drops to the k-th best
 * distance. Rows are scanned in increasing index, so a later candidate that ties the
 * threshold loses the (distance, index) order and can be dropped at once. The k best
 * under that strict order are unique, so the result does not depend on the buffer. */
typedef struct {
    float *d;
    int *i;
    int count, cap, k;
    float thr;
} topk;

static int worse(float da, int ia, float db, int ib) { return da > db || (da == db && ia > ib); }

/* Partially order [lo, hi] so that the k-th smallest (0-based position k) sits at k
 * with everything before it no worse. */
static void quickselect(float *d, int *ix, int lo, int hi, int k) {
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        float pd = d[mid];
        int pi = ix[mid];
        int a = lo, b = hi;
        while (a <= b) {
            while (worse(pd, pi, d[a], ix[a])) a++;
            while (worse(d[b], ix[b], pd, pi)) b--;
            if (a <= b) {
                float td = d[a]; d[a] = d[b]; d[b] = td;
                int ti = ix[a]; ix[a] = ix[b]; ix[b] = ti;
                a++;
                b--;
            }
        }
        if (k <= b) hi = b;
        else if (k >= a) lo = a;
        else return;
    }
}

static void topk_shrink(topk *t) {
    if (t->count <= t->k) return;
    quickselect(t->d, t->i, 0, t->count - 1, t->k - 1);
    t->count = t->k;
    float mx = t->d[0];
    for (int r = 1; r < t->k; r++) mx = t->d[r] > mx ? t->d[r] : mx;
    t->thr = mx;
}

HOT_INLINE void topk_push(topk *t, float d, int i) {
    /* The first k candidates are taken even at +inf (a query so far out that every squared
     * distance overflows): finish() reads k of them. */
    if (d >= t->thr && !(t->count < t->k && isinf(t->thr))) return;
    t->d[t->count] = d;
    t->i[t->count++] = i;
    if (t->count == t->cap) topk_shrink(t);
}

/* The buffer of 4k candidates lives on the caller's stack (k <= KNN_MAX_K). */

#define TOPK_CAP(k) (4 * (k) < 64 ? 64 : 4 * (k))

/* Keep the k best of t, re-measure them exactly and write them nearest first (insertion
 * sort: k is at most a few hundred). */
static void finish(topk *t, const float *ref, int d, const float *q, int k, int *idx,
                   float *dist2) {
    topk_shrink(t);
    for (int r = 0; r < k; r++) idx[r] = t->i[r];
    for (int r = 0; r < k; r++) {
        const float *x = ref + (size_t)idx[r] * d;
        double s = 0.0;
        for (int c = 0; c < d; c++) {
            double diff = (double)q[c] - (double)x[c];
            s += diff * diff;
        }
        dist2[r] = (float)s;
    }
    for (int r = 1; r < k; r++) {
        float dv = dist2[r];
        int iv = idx[r], s = r - 1;
        while (s >= 0 && worse(dist2[s], idx[s], dv, iv)) {
            dist2[s + 1] = dist2[s]; idx[s + 1] = idx[s];
            s--;
        }
        dist2[s + 1] = dv; idx[s + 1] = iv;
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
    float bd[TOPK_CAP(KNN_MAX_K)];
    int bi[TOPK_CAP(KNN_MAX_K)];
    topk t = { bd, bi, 0, TOPK_CAP(k), k, INFINITY };
    for (int j = 0; j < n; j++) {
        if (j == skip) continue;
        topk_push(&t, dist2_f(q, ref + (size_t)j * d, d), j);
    }
    finish(&t, ref, d, q, k, idx, dist2);
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

/* One block's KNN_PACK distances as a vector (GCC vector extension: the compiler maps it
 * to whatever the clone's ISA has). */
typedef float knn_vec __attribute__((vector_size(KNN_PACK * sizeof(float))));
typedef int knn_mask __attribute__((vector_size(KNN_PACK * sizeof(int))));

HOT_LOOP
void knn_query_packed(const float *packed, const float *ref, int n, int d, const float *q,
                      int k, int skip, int *idx, float *dist2) {
    float bd[TOPK_CAP(KNN_MAX_K)];
    int bi[TOPK_CAP(KNN_MAX_K)];
    topk t = { bd, bi, 0, TOPK_CAP(k), k, INFINITY };
    const size_t stride = (size_t)d * KNN_PACK; /* floats per block */
    for (int row0 = 0; row0 < n; row0 += KNN_GROUP_ROWS) {
        /* KNN_GROUP (4) blocks at once: four independent sums hide the add latency one
         * block's chain over d would wait on. Each distance is still summed over c in
         * order, as knn_query does. */
        const float *grp = packed + (size_t)row0 * d;
        knn_vec a0 = { 0 }, a1 = { 0 }, a2 = { 0 }, a3 = { 0 };
        for (int c = 0; c < d; c++) {
            knn_vec qc = (knn_vec){ 0 } + q[c], x0, x1, x2, x3;
            const float *at = grp + (size_t)c * KNN_PACK;
            memcpy(&x0, at, sizeof x0);
            memcpy(&x1, at + stride, sizeof x1);
            memcpy(&x2, at + 2 * stride, sizeof x2);
            memcpy(&x3, at + 3 * stride, sizeof x3);
            x0 = qc - x0, x1 = qc - x1, x2 = qc - x2, x3 = qc - x3;
            a0 += x0 * x0, a1 += x1 * x1, a2 += x2 * x2, a3 += x3 * x3;
        }
        /* Once the threshold settles, most groups hold no candidate: rule them out with
         * vector comparisons before any scalar work. */
        knn_mask below = (a0 < t.thr) | (a1 < t.thr) | (a2 < t.thr) | (a3 < t.thr);
        uint64_t lanes[sizeof below / sizeof(uint64_t)], any = 0;
        memcpy(lanes, &below, sizeof below);
        for (size_t w = 0; w < sizeof lanes / sizeof *lanes; w++) any |= lanes[w];
        if (!any && t.count >= t.k) continue;   /* (the first k are taken, see topk_push) */
        float dist[KNN_GROUP_ROWS];
        memcpy(dist, &a0, sizeof a0);
        memcpy(dist + KNN_PACK, &a1, sizeof a1);
        memcpy(dist + 2 * KNN_PACK, &a2, sizeof a2);
        memcpy(dist + 3 * KNN_PACK, &a3, sizeof a3);
        int rows = n - row0 < KNN_GROUP_ROWS ? n - row0 : KNN_GROUP_ROWS;
        for (int r = 0; r < rows; r++)
            if (row0 + r != skip) topk_push(&t, dist[r], row0 + r);
    }
    finish(&t, ref, d, q, k, idx, dist2);
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
    float bd[TOPK_CAP(KNN_MAX_K)];
    int bi[TOPK_CAP(KNN_MAX_K)];
    for (int i = 0; i < m; i++) {
        const float *g = G + (size_t)i * n;
        topk t = { bd, bi, 0, TOPK_CAP(k), k, INFINITY };
        for (int j = 0; j < n; j++) topk_push(&t, qn[i] + ref_norms[j] - 2.0f * g[j], j);
        finish(&t, ref, d, Q + (size_t)i * d, k, idx + (size_t)i * k, dist2 + (size_t)i * k);
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
        float ni = c->norms[i], bd[TOPK_CAP(KNN_MAX_K)];
        int bi[TOPK_CAP(KNN_MAX_K)];
        topk t = { bd, bi, 0, TOPK_CAP(c->k), c->k, INFINITY };
        for (int j = 0; j < c->n; j++)
            if (j != i) topk_push(&t, ni + c->norms[j] - 2.0f * g[j], j);
        finish(&t, c->X, c->d, c->X + (size_t)i * c->d, c->k, c->idx + (size_t)i * c->k,
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
