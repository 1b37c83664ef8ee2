/* The inputs of the most recent scores (see samples.h). */
#include "samples.h"
#include "block.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* One held sample: its fields, with x, x_rec and distance pointing into values
 * (2 dim + k floats) and ref into refs (k). */
typedef struct {
    int used;
    api_sample s;
    float *values;
    int32_t *refs;
    size_t values_cap, refs_cap;
} slot;

struct sample_memory {
    pthread_mutex_t lock;        /* guards every slot */
    slot *slots;
    int capacity;
};

sample_memory *samples_create(int capacity) {
    if (capacity < 1) return NULL;
    block b = BLOCK_HEAD(sample_memory);
    sample_memory probe;
    BLOCK_TAKE(&b, probe.slots, (size_t)capacity);
    sample_memory *m = block_alloc(&b);
    if (!m) return NULL;
    BLOCK_TAKE(&b, m->slots, (size_t)capacity);   /* with the memory, in one block */
    m->capacity = capacity;
    pthread_mutex_init(&m->lock, NULL);
    return m;
}

void samples_free(sample_memory *m) {
    if (!m) return;
    for (int i = 0; i < m->capacity; i++) {
        free(m->slots[i].values);
        free(m->slots[i].refs);
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}

/* Make *buf hold at least n elements of size bytes; 0, or -1 (buf unchanged). */
static int reserve(void **buf, size_t *cap, size_t n, size_t size) {
    if (n <= *cap) return 0;
    void *b = realloc(*buf, n * size);
    if (!b) return -1;
    *buf = b;
    *cap = n;
    return 0;
}

static slot *slot_of(sample_memory *m, int64_t log_id) {
    return &m->slots[(uint64_t)log_id % (uint64_t)m->capacity];
}

void samples_put(sample_memory *m, const api_sample *s) {
    size_t k = (size_t)s->k, n_values = 2 * s->dim + k;
    pthread_mutex_lock(&m->lock);
    slot *sl = slot_of(m, s->log_id);
    sl->used = 0;
    if (reserve((void **)&sl->values, &sl->values_cap, n_values, sizeof *sl->values) == 0 &&
        reserve((void **)&sl->refs, &sl->refs_cap, k ? k : 1, sizeof *sl->refs) == 0) {
        sl->s = *s;
        sl->s.x = sl->values;
        sl->s.x_rec = sl->values + s->dim;
        sl->s.distance = sl->values + 2 * s->dim;
        sl->s.ref = sl->refs;
        memcpy(sl->values, s->x, s->dim * sizeof *sl->values);
        memcpy(sl->values + s->dim, s->x_rec, s->dim * sizeof *sl->values);
        memcpy(sl->values + 2 * s->dim, s->distance, k * sizeof *sl->values);
        memcpy(sl->refs, s->ref, k * sizeof *sl->refs);
        sl->used = 1;
    }
    pthread_mutex_unlock(&m->lock);
}

int samples_get(sample_memory *m, int64_t log_id, api_sample *out, void **block) {
    int rc = 0;
    *block = NULL;
    pthread_mutex_lock(&m->lock);
    slot *sl = slot_of(m, log_id);
    if (sl->used && sl->s.log_id == log_id) {
        size_t k = (size_t)sl->s.k, n_values = 2 * sl->s.dim + k;
        float *values = malloc(n_values * sizeof *values + k * sizeof(int32_t));
        if (values) {
            int32_t *refs = (int32_t *)(void *)(values + n_values);
            memcpy(values, sl->values, n_values * sizeof *values);
            memcpy(refs, sl->refs, k * sizeof *refs);
            *out = sl->s;
            out->x = values;
            out->x_rec = values + sl->s.dim;
            out->distance = values + 2 * sl->s.dim;
            out->ref = refs;
            *block = values;
            rc = 1;
        } else {
            rc = -1;
        }
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}
