/* registry.h — the models anodmd serves, by name.
 *
 * Each model is a bundle loaded once at start: its detector, its version (the SHA-256 of
 * the very bytes that were parsed, so a response can never name a file other than the
 * one scoring it) and one scorer. A scorer is not thread-safe and, in context mode, its
 * sliding window is shared state, so every model serialises its batches through its own
 * mutex; different models score in parallel. The first model is the default one.
 *
 * SIGHUP reloads every bundle into a new model set and swaps it in only when all of them
 * loaded, so a bad bundle leaves the old set serving. Sets are reference-counted: a
 * request acquires the current set once and uses it to the end, so it finishes on the
 * models it started with, and the last request to let go of a replaced set frees it. A
 * context-mode model starts a reload with an empty window (the window is run-time state
 * of the old scorer, not part of the bundle), and every stream memory starts afresh.
 *
 * Once the log is open, the stream memories are kept in it across a restart (memstore.h):
 * each model's memstore records, under the model's lock, what its memories did. */
#ifndef ANODMD_REGISTRY_H
#define ANODMD_REGISTRY_H

#include <pthread.h>
#include <stddef.h>

#include "api.h"
#include "memstore.h"
#include "scorer.h"

typedef struct {
    char name[API_NAME_MAX + 1];
    char version[API_VERSION_LEN + 1];
    char path[4096];
    detector d;
    size_t dim;                  /* values per sample */
    int max_batch;               /* samples per scorer call */
    int per_source;              /* its stream memory is one per source (memory_sources) */
    scorer *s;
    memstore *store;             /* its memories in the log; NULL: not kept */
    pthread_mutex_t lock;        /* guards s, store and the memory map below */
    /* The last memory map answered (model_memory_map): memory map_of, at map_changes. */
    api_memory_map map;
    const stream_memory *map_of;
    unsigned long long map_changes;
    /* The batcher's queue for this model, made by batch.c on the model's first request and
     * freed with the model through queue_free: the registry does not know what it is. */
    void *queue;
    void (*queue_free)(void *queue);
} model;

/* The models loaded together from one reading of the specs. */
typedef struct {
    model *models;
    int n;
    int refs;                    /* holders: the registry while current, and requests */
    unsigned generation;         /* 1 for the models loaded at start, +1 per reload */
} model_set;

typedef struct {
    pthread_mutex_t lock;        /* guards current and every set's refs */
    model_set *current;
    char *const *specs;          /* borrowed: must outlive the registry */
    int n_specs, max_batch;
    int batch_threads;           /* threads a model's batches use (scorer_set_threads) */
    int memory_sources;          /* 0: one stream memory per model; N: per source, at most N */
    scorelog *log;               /* where the memories are kept (registry_keep_memories) */
    int snapshot_every;
} registry;

/* Load every spec ("NAME=PATH", or "PATH" named after the file without directory and
 * extension) with scorers for batches of max_batch, each batch split across up to
 * batch_threads threads; models with a stream memory keep one per source (at most
 * memory_sources of them) when memory_sources > 0. 0, or -1 with err (r then empty). */
int registry_load(registry *r, char *const *specs, int n_specs, int max_batch,
                  int batch_threads, int memory_sources, char *err, size_t errlen);
/* From now on keep the models' stream memories in log (a snapshot every `every` keeps),
 * restoring those of the current set from it first. Call once, before serving. */
void registry_keep_memories(registry *r, scorelog *log, int every);
/* A snapshot of every memory of the current set that changed since its last (a clean
 * stop, once scoring has stopped). */
void registry_flush_memories(registry *r);
/* Load the specs again and make the new set current; 0, or -1 with err and the old set
 * still current. Requests holding the old set finish on it; its memories are no longer
 * recorded, and the new set's start afresh. */
int registry_reload(registry *r, char *err, size_t errlen);
void registry_free(registry *r);
/* The current set, held until registry_release. */
model_set *registry_acquire(registry *r);
void registry_release(registry *r, model_set *set);
/* The model called name, or the default model for NULL; NULL if there is none. */
model *model_set_find(model_set *set, const char *name);
/* A batch for m in two halves (scorer_front, scorer_back), so that a worker can run one
 * batch's front while another worker runs an earlier batch's back. model_front runs n
 * samples (n <= max_batch) through networks net..net + shares - 1 (0, 0: split as
 * scorer_score would) into slot
 * (0..model_slots - 1) without the model's lock (it reads nothing scoring changes);
 * x and x_rec (may be NULL) must stay until model_back, which scores the slot's batch
 * under the lock, through the stream memory of source when the model keeps one per
 * source; nn_ref and nn_dist hold n * k reference ids and distances. Each: 0, or -1 with
 * err, or SCORER_NOT_FINITE (the scorer's). */
int model_front(model *m, int slot, const float *x, int n, int net, int shares, float *x_rec,
                char *err, size_t errlen);
int model_back(model *m, int slot, const char *source, detector_result *res, int32_t *nn_ref,
               float *nn_dist, char *err, size_t errlen);
/* The slots (and networks) m's batches may use: batch_threads. */
int model_slots(const model *m);
/* A copy (malloc'd, *n points of x, y; NULL when empty) of the context-mode window's
 * positions, taken under the model's lock so no batch moves it meanwhile. 0, or -1
 * when out of memory. */
int model_window(model *m, float **pos, int *n);
/* Latents m's stream memory holds (0 without one). */
int model_memory_count(model *m);
/* Forget everything m's stream memory holds; returns how many latents that was. */
int model_memory_reset(model *m);
/* m's stream memory (source's, when it keeps one per source; none yet: empty) co-placed
 * on its map, into mm. The latents are copied under the model's lock and placed outside
 * it, so scoring waits only for the copy; the answer is kept, and given again while the
 * memory is unchanged. For a model with a memory; a worker's job (it is maths). 0, or -1
 * with err; free mm with model_memory_map_free either way. */
int model_memory_map(model *m, const char *source, api_memory_map *mm, char *err,
                     size_t errlen);
void model_memory_map_free(api_memory_map *mm);

#endif
