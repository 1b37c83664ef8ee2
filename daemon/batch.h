/* batch.h — scoring on worker threads, with concurrent requests for a model batched.
 *
 * A forward pass over B samples costs far less than B passes over one (the weights are
 * read once, the matrix products vectorise), so requests for the same model that arrive
 * close together are scored in one scorer call. Each model has a queue; a request joins
 * its model's queue and a worker takes a batch from it once it holds max_batch samples or
 * its oldest request has waited batch_window_us, so a lone request waits at most the
 * window. A model's batches are pipelined: up to its batch_threads batches are in flight,
 * each in a slot of the model's scorer (scorer_front, scorer_back), so one batch's network
 * and placement run while an earlier one goes through the stream memory; the backs run one
 * at a time in the order the batches were taken. While every slot is taken (or a lone
 * batch splits its front across all the networks), new requests gather behind, so under
 * load batches grow by themselves.
 *
 * Workers, not libmicrohttpd's polling threads, do the maths (and wait for the log), so
 * a slow batch never stalls the connections those threads serve. A job is finished in
 * two steps: prepare runs in its batch's back turn, so work that must follow the scoring
 * order (handing rows to the log) does; finish runs after the turn is passed on, and may
 * block (waiting for the commit) and free the job. */
#ifndef ANODMD_BATCH_H
#define ANODMD_BATCH_H

#include <stddef.h>

#include "metrics.h"
#include "registry.h"

typedef struct batcher batcher;
typedef struct batch_queue batch_queue;

/* One request's samples. The submitter fills in everything above rc; the outputs hold n
 * rows each (x_rec NULL when not wanted, nn_ref and nn_dist k per sample). */
typedef struct batch_job {
    model *m;
    const char *source;          /* the request's source tag ("" when none) */
    const float *x;
    int n;
    detector_result *res;
    float *x_rec;
    int32_t *nn_ref;
    float *nn_dist;
    void (*prepare)(struct batch_job *j);
    void (*finish)(struct batch_job *j);
    int rc;                      /* set by the worker: 0, or -1 with err */
    char err[256];
    struct batch_job *next;
    long long queued_ns;         /* when it joined its queue (monotonic) */
} batch_job;

/* Start n_workers threads batching over window_us microseconds; scored batches are
 * counted in mt. NULL with err. */
batcher *batch_start(int n_workers, long window_us, metrics *mt, char *err, size_t errlen);
/* batch_submit's and batch_run's failures (j untouched). */
enum { BATCH_STOPPING = -1, BATCH_NO_MEMORY = -2 };
/* Queue j on its model's queue (the batcher makes a model's queue and batch buffers on its
 * first request, and the model frees them: model.queue_free): 0, or BATCH_STOPPING, or
 * BATCH_NO_MEMORY. */
int batch_submit(batcher *b, batch_job *j);
/* Run j->finish(j) on a worker, before any waiting batch and without scoring: for the
 * maths a request needs before its samples exist (a raw ECG strip cut into beats), which
 * must not run on a polling thread. Only finish is used. 0, or -1 when the batcher is
 * stopping (BATCH_STOPPING; j untouched). */
int batch_run(batcher *b, batch_job *j);
/* Requests waiting in queues (or to be run), not yet taken by a worker. */
long batch_queued(batcher *b);
/* Refuse new jobs, score every queued one at once, and join the workers. */
void batch_stop(batcher *b);
/* Stop b if it is running, and free it. */
void batch_free(batcher *b);

#endif
