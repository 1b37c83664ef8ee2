/* knn.h — exact k-nearest neighbours in latent space (squared Euclidean distance).
 *
 * t-SNE needs, for every point, its 3*perplexity nearest neighbours. At the sizes anodm
 * uses (N <= ~100k points of 16..784 dimensions) an exact search is affordable and
 * avoids a second source of approximation: distances come from BLAS blocks
 * (|a|^2 + |b|^2 - 2 a.b, one SGEMM per block of queries) or from a packed scan, a
 * threshold and a buffer with linear-time selection keep the k best per row, and the k
 * winners' distances are then recomputed directly in double so that cancellation in the
 * BLAS form never reaches the caller. Ties are broken by the lower index, so results are
 * deterministic.
 *
 * knn_query() is the single-query path used at scoring time: a plain loop over the
 * reference, identical for a query whatever batch it came in (batch invariance). */
#ifndef ANODM_KNN_H
#define ANODM_KNN_H

#include <stddef.h>

/* Largest k any function here accepts (the candidate buffer lives on the stack). */
#define KNN_MAX_K 300

/* For each of the n rows of X (n x d, row-major), its k nearest OTHER rows, nearest
 * first: idx[i*k + r], squared distances dist2[i*k + r]. Needs 1 <= k <= n - 1.
 * n_threads <= 0 means 2. Returns 0, or -1 with a message in err. */
int knn_all(const float *X, int n, int d, int k, int n_threads, int *idx, float *dist2,
            char *err, size_t errlen);

/* The reference packed for knn_query_packed: blocks of KNN_PACK rows, each block
 * dimension-major (the KNN_PACK values of dimension c together), so that one query's
 * distances to a block take one vector operation per dimension. Writes the
 * knn_packed_floats(n, d) floats of packed (zero rows pad the last blocks). */
#define KNN_PACK 16
void knn_pack(float *packed, const float *X, int n, int d);
size_t knn_packed_floats(int n, int d);
/* Write row `row` (d floats x) into a packed array (knn_packed_floats(n, d) floats for
 * some n > row): a reference that changes a row at a time (the stream memory). */
void knn_pack_row(float *packed, int d, int row, const float *x);
/* knn_query on a packed reference; same results contract, deterministic, batch-invariant.
 * The winners are re-measured from the packed copy, which the scan has just brought into
 * cache, so the row-major rows are not needed. */
void knn_query_packed(const float *packed, int n, int d, const float *q, int k, int skip,
                      int *idx, float *dist2);

/* An index over a fixed reference (the t-SNE map's latents) for single queries: the
 * rows reordered so that every KNN_PACK * 4 of them form a compact segment (a principal-
 * axis tree), packed as above, with each segment's centroid and radius, and a copy of
 * the rows in 7-bit codes on a grid over their box. A query scans first the segments
 * whose centroids are nearest, which gives a threshold near the final one at once (few
 * candidates to sort out), then the others, skipping a segment when the triangle
 * inequality shows that none of its rows can be among the k nearest; in a segment that
 * stays, the codes (a quarter of the floats' bytes) rule out rows the same way, with
 * the grid's rounding in the bound, and only the rest are measured in float. The
 * results are knn_query_packed's over the rows in their own order, bit for bit: the
 * same distances summed the same way, the same (distance, index) order, whatever the
 * reordering and whichever kernel scans the codes. Built once (NULL when out of memory,
 * or d > KNN_INDEX_MAX_D); read-only afterwards, so any number of threads may query it. */
typedef struct knn_index knn_index;
#define KNN_INDEX_MAX_D 4096
knn_index *knn_index_create(const float *X, int n, int d);
void knn_index_free(knn_index *ix);
size_t knn_index_bytes(const knn_index *ix);
/* The k nearest of the n rows to q, nearest first (1 <= k <= n, k <= KNN_MAX_K). */
void knn_index_query(const knn_index *ix, const float *q, int k, int *idx, float *dist2);
/* The kernels that scan the codes: portable C, AVX2's byte multiply-adds, AVX-512 VNNI's.
 * They compute the same integers, so the kernel changes the time only. knn_index_create
 * takes the last this CPU has; knn_index_use_kernel switches (tests and benchmarks,
 * before any query): 0, or -1 when the CPU lacks it. */
enum { KNN_KERNEL_PLAIN, KNN_KERNEL_AVX2, KNN_KERNEL_VNNI, KNN_KERNELS };
int knn_index_use_kernel(knn_index *ix, int kernel);
int knn_index_kernel(const knn_index *ix);

/* For each of the m rows of Q (m x d), its k nearest rows of ref (n x d), nearest
 * first, by SGEMM blocks; ref_norms: the n squared row norms. Needs 1 <= k <= n.
 * Results can differ from knn_query's in near-ties (rounding), so scoring paths that
 * must be batch-invariant use knn_query. */
void knn_batch(const float *ref, const float *ref_norms, int n, int d, const float *Q, int m,
               int k, float *scratch, int *idx, float *dist2);
/* Scratch floats knn_batch needs for m queries against n reference rows. */
size_t knn_batch_scratch(int n, int m);
/* Squared norms of the n rows of X into norms. */
void knn_norms(const float *X, int n, int d, float *norms);

/* The k nearest rows of ref (n x d) to q (d floats), nearest first; skip < 0, or the
 * index of a row to leave out. Needs 1 <= k <= n (- 1 if skip >= 0). Deterministic. */
void knn_query(const float *ref, int n, int d, const float *q, int k, int skip, int *idx,
               float *dist2);

#endif
