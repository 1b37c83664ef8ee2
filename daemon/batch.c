/* Batched scoring on worker threads (see batch.h). */
#include "batch.h"
#include "block.h"
#include "clock.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One batch in flight: its requests' samples gathered when there are several (x), then
 * scored (the rest). */
typedef struct {
    float *x, *x_rec, *nn_dist;
    int32_t *nn_ref;
    detector_result *res;
} batch_slot;

/* A model's batches are pipelined: up to n_slots in flight, each with a slot and a network
 * of the model's scorer, their fronts (the network, placement) on several workers at once
 * and their backs (the memory, the verdicts) one at a time in the order they were taken.
 * A batch taken while none is in flight may split its front across every network
 * (split): then no other batch is taken until that front is done. */
struct batch_queue {
    model *m;
    batch_job *head, **tail;     /* waiting jobs, oldest first */
    int samples;                 /* in the waiting jobs */
    int n_slots, in_flight, split;
    unsigned slots_used;         /* bit i: slot i holds a batch in flight */
    unsigned long long taken, backs; /* batches taken, and backs done: the next back's turn */
    int listed;                  /* on the batcher's runnable list */
    batch_queue *next_runnable;
    batch_slot slot[SCORER_MAX_THREADS];
};

struct batcher {
    pthread_mutex_t lock;        /* guards everything below and every queue's list fields */
    pthread_cond_t work;
    pthread_cond_t turn;         /* a queue's back turn moved on */
    batch_queue *runnable;       /* queues with waiting jobs and a free slot */
    batch_job *tasks, **tasks_tail; /* batch_run's jobs, oldest first */
    long queued;                 /* jobs waiting */
    long long window_ns;
    int stopping;
    metrics *metrics;
    pthread_t *workers;
    int n_workers;
};

/* A model's queue and its slots' buffers in one block (block.h): the queue, the results'
 * doubles, then floats and int32s, so one free releases it. */
static void queue_parts(block *b, batch_queue *q, int slots, size_t rows, size_t dim,
                        size_t k) {
    for (int i = 0; i < slots; i++) BLOCK_TAKE(b, q->slot[i].res, rows);
    for (int i = 0; i < slots; i++) {
        BLOCK_TAKE(b, q->slot[i].x, rows * dim);
        BLOCK_TAKE(b, q->slot[i].x_rec, rows * dim);
        BLOCK_TAKE(b, q->slot[i].nn_dist, rows * k);
        BLOCK_TAKE(b, q->slot[i].nn_ref, rows * k);
    }
}

static batch_queue *queue_create(model *m) {
    const size_t rows = (size_t)m->max_batch, k = (size_t)m->d.k;
    const int slots = model_slots(m);
    block b = BLOCK_HEAD(batch_queue);
    batch_queue probe;
    queue_parts(&b, &probe, slots, rows, m->dim, k);
    batch_queue *q = block_alloc(&b);
    if (!q) return NULL;
    queue_parts(&b, q, slots, rows, m->dim, k);
    q->m = m;
    q->n_slots = slots;
    q->tail = &q->head;
    return q;
}

static void queue_free(void *q) { free(q); }

/* Put q on the runnable list if it has waiting jobs and room for a batch. Caller holds
 * the lock. */
static void make_runnable(batcher *b, batch_queue *q) {
    if (q->listed || q->split || q->in_flight == q->n_slots || !q->head) return;
    batch_queue **at = &b->runnable;
    while (*at) at = &(*at)->next_runnable;
    *at = q;
    q->next_runnable = NULL;
    q->listed = 1;
}

/* The first runnable queue that is due (taken off the list); else NULL with *wake_ns the
 * earliest deadline (0: none). A queue with no batch in flight is due when full, past its
 * window, or when stopping. One with a batch in flight is due once it holds a batch worth
 * a front of its own (full, or two split shares' worth): smaller ones wait for the batch
 * in flight, as they did before batches were pipelined, since under a saturating load of
 * small requests a stream of small batches costs more per sample than the core it adds
 * (a forward pass at batch 8 is ~20% dearer a sample than at 64). Holds the lock. */
static batch_queue *take_due(batcher *b, long long now, long long *wake_ns) {
    *wake_ns = 0;
    for (batch_queue **at = &b->runnable; *at; at = &(*at)->next_runnable) {
        batch_queue *q = *at;
        const int full = q->samples >= q->m->max_batch;
        const long long due = q->head->queued_ns + b->window_ns;
        if (q->in_flight && !b->stopping && !full && q->samples < 2 * SCORER_MIN_ROWS)
            continue;                /* the batch in flight's back wakes a worker */
        if (b->stopping || full || q->in_flight || due <= now) {
            *at = q->next_runnable;
            q->listed = 0;
            return q;
        }
        if (!*wake_ns || due < *wake_ns) *wake_ns = due;
    }
    return NULL;
}

/* Detach the oldest jobs of q that fit in one batch; *n their samples. Holds the lock. */
static batch_job *take_jobs(batcher *b, batch_queue *q, int *n) {
    batch_job *first = q->head, *last = NULL;
    *n = 0;
    for (batch_job *j = q->head; j && *n + j->n <= q->m->max_batch; j = j->next) {
        *n += j->n;
        last = j;
        b->queued--;
    }
    q->head = last->next;       /* a job never exceeds max_batch, so last is set */
    if (!q->head) q->tail = &q->head;
    q->samples -= *n;
    last->next = NULL;
    return first;
}

/* Are the map positions of n results all finite? (The other terms are per sample; a
 * placement in context mode is joint, and one that failed left the window as it was.) */
static int placed(const detector_result *r, int n) {
    for (int i = 0; i < n; i++)
        if (!isfinite(r[i].x) || !isfinite(r[i].y)) return 0;
    return 1;
}

/* Score job j, rows [at, at + j->n) of the slot's batch, alone in the slot: its front on
 * the slot's own network, then its back. */
static int score_rows(batch_queue *q, int slot, batch_job *j, size_t at, char *err,
                      size_t errlen) {
    const size_t dim = q->m->dim, k = (size_t)q->m->d.k;
    batch_slot *t = &q->slot[slot];
    int rc = model_front(q->m, slot, j->x, j->n, slot, 1, j->x_rec ? t->x_rec + at * dim : NULL,
                         err, errlen);
    return rc ? rc : model_back(q->m, slot, j->source, t->res + at, t->nn_ref + at * k,
                                t->nn_dist + at * k, err, errlen);
}

/* The front of the n samples of jobs in one call, in slot, on `shares` networks from
 * `net` (a model whose stream memory is per source has none: it scores a request at a
 * time at its back). A lone job's samples are read where they are, several are gathered
 * in the slot; reconstructions are kept only when a job wants them. 0, or the front's
 * failure with err. */
static int front_batch(batch_queue *q, int slot, batch_job *jobs, int n, int net, int shares,
                       char *err, size_t errlen) {
    const size_t dim = q->m->dim;
    batch_slot *t = &q->slot[slot];
    int want_rec = 0;
    size_t at = 0;
    for (batch_job *j = jobs; j; at += (size_t)j->n, j = j->next) {
        if (jobs->next) memcpy(t->x + at * dim, j->x, (size_t)j->n * dim * sizeof *t->x);
        want_rec |= j->x_rec != NULL;
    }
    if (q->m->per_source && jobs->next) return 0;
    return model_front(q->m, slot, jobs->next ? t->x : jobs->x, n, net, shares,
                       want_rec ? t->x_rec : NULL, err, errlen);
}

/* The back of the batch in slot, whose front returned rc, and each job's rows. One
 * request must not fail or spoil the others batched with it (in context mode a batch is
 * placed jointly, so one sample too large for the arithmetic turns every position of its
 * batch non-finite): a batch of several requests that fails or is placed non-finite is
 * scored again one request at a time, and each request gets its own outcome. A model
 * whose stream memory is per source scores one request at a time from the start, each
 * through its source's memory. */
static void back_batch(batcher *b, batch_queue *q, int slot, batch_job *jobs, int n, int rc,
                       char *err, size_t errlen) {
    const model *m = q->m;
    const size_t dim = m->dim, k = (size_t)m->d.k;
    batch_slot *t = &q->slot[slot];
    const int per_source = m->per_source && jobs->next;
    if (!rc && !per_source)
        rc = model_back(q->m, slot, jobs->source, t->res, t->nn_ref, t->nn_dist, err, errlen);
    const int alone = per_source || (jobs->next && (rc || !placed(t->res, n)));
    /* A failure the input caused (SCORER_NOT_FINITE) is the client's to hear, not the log's. */
    if (rc && rc != SCORER_NOT_FINITE && !alone)
        fprintf(stderr, "anodmd: scoring with model %s failed: %s\n", m->name, err);
    int anomalies = 0;
    size_t at = 0;
    for (batch_job *j = jobs; j; at += (size_t)j->n, j = j->next) {
        j->rc = alone ? score_rows(q, slot, j, at, j->err, sizeof j->err) : rc;
        if (!alone) snprintf(j->err, sizeof j->err, "%s", err);
        if (alone && j->rc && j->rc != SCORER_NOT_FINITE)
            fprintf(stderr, "anodmd: scoring with model %s failed: %s\n", m->name, j->err);
        if (alone && !j->rc) {
            int flagged = 0;
            for (int i = 0; i < j->n; i++) flagged += t->res[at + (size_t)i].is_anomaly;
            metrics_scored(b->metrics, m->name, j->n, flagged);
            metrics_scores(b->metrics, m->name, t->res + at, j->n);
        }
        if (j->rc) continue;
        const size_t rows = (size_t)j->n;
        memcpy(j->res, t->res + at, rows * sizeof *j->res);
        memcpy(j->nn_ref, t->nn_ref + at * k, rows * k * sizeof *j->nn_ref);
        memcpy(j->nn_dist, t->nn_dist + at * k, rows * k * sizeof *j->nn_dist);
        if (j->x_rec) memcpy(j->x_rec, t->x_rec + at * dim, rows * dim * sizeof *j->x_rec);
        for (int i = 0; i < j->n; i++) anomalies += j->res[i].is_anomaly;
    }
    if (!rc && !alone) metrics_scored(b->metrics, m->name, n, anomalies);
    if (!rc && !alone) metrics_scores(b->metrics, m->name, t->res, n);
}

/* Take the next batch from q into a free slot: its jobs, *slot, *ticket (its back's turn)
 * and whether it may split its front (*split: nothing else of q in flight). Holds the
 * lock. */
static batch_job *take_batch(batcher *b, batch_queue *q, int *n, int *slot,
                             unsigned long long *ticket, int *split) {
    batch_job *jobs = take_jobs(b, q, n);
    *slot = __builtin_ctz(~q->slots_used);
    q->slots_used |= 1u << *slot;
    *ticket = q->taken++;
    *split = q->in_flight == 0 && q->n_slots > 1 && *n >= 2 * SCORER_MIN_ROWS;
    q->split = *split;
    q->in_flight++;
    make_runnable(b, q);
    return jobs;
}

/* A worker: take a due queue and a batch from it, run the batch's front, wait for its
 * turn, run its back and prepare its jobs in order, pass the turn on, then finish the
 * jobs. */
static void *worker_main(void *arg) {
    batcher *b = arg;
    pthread_mutex_lock(&b->lock);
    for (;;) {
        if (b->tasks) {
            batch_job *t = b->tasks;
            if (!(b->tasks = t->next)) b->tasks_tail = &b->tasks;
            b->queued--;
            pthread_mutex_unlock(&b->lock);
            t->finish(t);
            pthread_mutex_lock(&b->lock);
            continue;
        }
        long long wake_ns;
        batch_queue *q = take_due(b, clock_ns(), &wake_ns);
        if (!q) {
            if (b->stopping) break;   /* stopping makes every queue due: none is left */
            if (!wake_ns) {
                pthread_cond_wait(&b->work, &b->lock);
            } else {
                struct timespec t = {(time_t)(wake_ns / 1000000000LL),
                                     (long)(wake_ns % 1000000000LL)};
                pthread_cond_timedwait(&b->work, &b->lock, &t);
            }
            continue;
        }
        int n, slot, split;
        unsigned long long ticket;
        const long long taken_ns = clock_ns();
        batch_job *jobs = take_batch(b, q, &n, &slot, &ticket, &split);
        if (b->runnable) pthread_cond_signal(&b->work);   /* q or another queue may be due */
        pthread_mutex_unlock(&b->lock);
        for (batch_job *j = jobs; j; j = j->next)
            metrics_queued(b->metrics, q->m->name, (double)(taken_ns - j->queued_ns) / 1e9);
        char err[256] = "";   /* split: the scorer's own split over every network */
        int rc = front_batch(q, slot, jobs, n, split ? 0 : slot, split ? 0 : 1, err, sizeof err);
        pthread_mutex_lock(&b->lock);
        if (split) {                  /* the networks are free: the next batch may start */
            q->split = 0;
            make_runnable(b, q);
            if (q->listed) pthread_cond_signal(&b->work);
        }
        while (q->backs != ticket) pthread_cond_wait(&b->turn, &b->lock);
        pthread_mutex_unlock(&b->lock);
        back_batch(b, q, slot, jobs, n, rc, err, sizeof err);
        for (batch_job *j = jobs; j; j = j->next) j->prepare(j);
        pthread_mutex_lock(&b->lock);
        q->backs++;
        q->in_flight--;
        q->slots_used &= ~(1u << slot);
        pthread_cond_broadcast(&b->turn);
        make_runnable(b, q);
        if (q->listed) pthread_cond_signal(&b->work);
        pthread_mutex_unlock(&b->lock);
        /* finish may drop the last hold on the model set, freeing q: q is not used again */
        for (batch_job *j = jobs, *next; j; j = next) {
            next = j->next;
            j->finish(j);
        }
        pthread_mutex_lock(&b->lock);
    }
    pthread_mutex_unlock(&b->lock);
    return NULL;
}

batcher *batch_start(int n_workers, long window_us, metrics *mt, char *err, size_t errlen) {
    batcher *b = calloc(1, sizeof *b);
    pthread_condattr_t ca;
    if (!b || !(b->workers = calloc((size_t)n_workers, sizeof *b->workers))) {
        free(b);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    b->window_ns = (long long)window_us * 1000;
    b->tasks_tail = &b->tasks;
    b->metrics = mt;
    pthread_mutex_init(&b->lock, NULL);
    /* Deadlines are monotonic: a clock step must not stall or rush a batch. */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->work, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&b->turn, NULL);
    for (; b->n_workers < n_workers; b->n_workers++)
        if (pthread_create(&b->workers[b->n_workers], NULL, worker_main, b)) {
            snprintf(err, errlen, "cannot start scoring worker %d", b->n_workers + 1);
            batch_free(b);
            return NULL;
        }
    return b;
}

/* Append j to its model's queue (made on the model's first request), or with to_model 0
 * to the tasks: 0, or BATCH_STOPPING, or BATCH_NO_MEMORY. */
static int enqueue(batcher *b, int to_model, batch_job *j) {
    pthread_mutex_lock(&b->lock);
    if (b->stopping) {
        pthread_mutex_unlock(&b->lock);
        return BATCH_STOPPING;
    }
    batch_queue *q = NULL;
    if (to_model && !(q = j->m->queue) && (q = queue_create(j->m))) {
        j->m->queue = q;
        j->m->queue_free = queue_free;
    }
    if (to_model && !q) {
        pthread_mutex_unlock(&b->lock);
        return BATCH_NO_MEMORY;
    }
    j->next = NULL;
    j->queued_ns = clock_ns();
    if (q) {
        *q->tail = j;
        q->tail = &j->next;
        q->samples += j->n;
        make_runnable(b, q);
    } else {
        *b->tasks_tail = j;
        b->tasks_tail = &j->next;
    }
    b->queued++;
    pthread_cond_signal(&b->work);
    pthread_mutex_unlock(&b->lock);
    return 0;
}

int batch_submit(batcher *b, batch_job *j) { return enqueue(b, 1, j); }

int batch_run(batcher *b, batch_job *j) { return enqueue(b, 0, j); }

long batch_queued(batcher *b) {
    pthread_mutex_lock(&b->lock);
    long n = b->queued;
    pthread_mutex_unlock(&b->lock);
    return n;
}

void batch_stop(batcher *b) {
    pthread_mutex_lock(&b->lock);
    b->stopping = 1;
    pthread_cond_broadcast(&b->work);
    pthread_mutex_unlock(&b->lock);
    for (int i = 0; i < b->n_workers; i++) pthread_join(b->workers[i], NULL);
    b->n_workers = 0;
}

void batch_free(batcher *b) {
    if (!b) return;
    batch_stop(b);
    pthread_cond_destroy(&b->work);
    pthread_cond_destroy(&b->turn);
    pthread_mutex_destroy(&b->lock);
    free(b->workers);
    free(b);
}
