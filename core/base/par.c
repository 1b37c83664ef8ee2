/* par.c — par_for: contiguous ranges on fresh threads, the first on the caller. */
#include "par.h"

#include <pthread.h>

typedef struct {
    par_fn fn;
    void *ctx;
    int begin, end;
} par_job;

static void *par_run(void *arg) {
    par_job *j = arg;
    j->fn(j->ctx, j->begin, j->end);
    return NULL;
}

void par_for(int n_threads, int n, par_fn fn, void *ctx) {
    if (n_threads > PAR_MAX_THREADS) n_threads = PAR_MAX_THREADS;
    if (n_threads > n) n_threads = n;
    if (n_threads <= 1) {
        if (n > 0) fn(ctx, 0, n);
        return;
    }
    par_job jobs[PAR_MAX_THREADS];
    pthread_t tid[PAR_MAX_THREADS];
    int started[PAR_MAX_THREADS];
    for (int t = 0; t < n_threads; t++) {
        jobs[t] = (par_job){ fn, ctx, (int)((long)n * t / n_threads),
                             (int)((long)n * (t + 1) / n_threads) };
        started[t] = t > 0 && pthread_create(&tid[t], NULL, par_run, &jobs[t]) == 0;
        if (t > 0 && !started[t]) par_run(&jobs[t]);
    }
    par_run(&jobs[0]);
    for (int t = 1; t < n_threads; t++)
        if (started[t]) pthread_join(tid[t], NULL);
}
