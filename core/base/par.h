/* par.h — the one way core/ runs work on several threads.
 *
 * Everything parallel in anodm is a loop over independent rows, shards or blocks whose
 * results do not depend on how the loop was split (each index writes its own output), so
 * one primitive serves the t-SNE fit, the neighbour search, placement and the training
 * shards: split [0, n) into contiguous ranges, run the first on the caller and the others
 * on fresh threads, and return when all are done. Threads are created per call: the
 * callers' loops are milliseconds or longer, so a pool would save nothing measurable and
 * would add state that a fork or a library user must know about. A thread that cannot
 * be created is not an error: its range runs on the caller, so the work always completes. */
#ifndef ANODM_PAR_H
#define ANODM_PAR_H

/* Most threads one call uses; larger requests are clamped to it. */
#define PAR_MAX_THREADS 64

/* One thread's share: the indices [begin, end). */
typedef void (*par_fn)(void *ctx, int begin, int end);

/* Run fn over [0, n) split into min(n_threads, n, PAR_MAX_THREADS) contiguous ranges of
 * near-equal size, range t being [n*t/T, n*(t+1)/T); with one thread (or n_threads < 1)
 * fn(ctx, 0, n) runs on the caller. */
void par_for(int n_threads, int n, par_fn fn, void *ctx);

#endif
