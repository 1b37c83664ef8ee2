/* The stream memory (see memory.h). Kept latents fill slots [0, count) of one array, so
 * a probe is one exact scan over a contiguous block; a slot that is let go is reused in
 * place by the next latent. The scan reads a packed copy (knn.h: sixteen slots per vector
 * operation), updated a row at a time as latents are kept. */
#include "memory.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "knn.h"

struct stream_memory {
    int latent, capacity, k, k_min, recent_cap, heap_cap;
    double merge_radius, horizon;
    unsigned long long seen;   /* keeps since creation or reset: the decay's clock */
    float *lat;              /* capacity x latent; slots [0, count) hold latents */
    float *packed;           /* the same, packed for knn_query_packed */
    double *suspicion;       /* per slot */
    int *heap_pos;           /* per slot: its place in heap, -1 while in the recent ring */
    int count;
    int *ring;               /* recent slots, oldest at ring[head] */
    int head, ring_len;
    int *heap;               /* the older, suspicious slots: a min-heap on suspicion */
    int heap_len;
};

const char *const MEMORY_RETAIN_NAME[MEMORY_RETAIN_N] = {"evidence", "company"};

void memory_options_default(memory_options *o) {
    o->capacity = 2000;
    o->k = 10;
    o->recent_share = 0.5;
    o->merge_radius = 0.0;
    o->k_min = 3;
    o->retain = MEMORY_RETAIN_COMPANY;
    o->horizon = 10000.0;
}

int memory_options_check(const memory_options *o, char *err, size_t errlen) {
    if (o->k < 1 || o->k > MEMORY_MAX_K) {
        snprintf(err, errlen, "memory k %d outside 1..%d", o->k, MEMORY_MAX_K);
        return -1;
    }
    if (o->capacity < o->k || o->capacity > MEMORY_MAX_CAPACITY) {
        snprintf(err, errlen, "memory capacity %d outside k (%d)..%d", o->capacity, o->k,
                 MEMORY_MAX_CAPACITY);
        return -1;
    }
    if (!(o->recent_share > 0.0 && o->recent_share <= 1.0)) {
        snprintf(err, errlen, "memory recent share %g outside (0, 1]", o->recent_share);
        return -1;
    }
    if (!(o->merge_radius >= 0.0 && isfinite(o->merge_radius))) {
        snprintf(err, errlen, "memory merge radius %g is not a distance", o->merge_radius);
        return -1;
    }
    if ((unsigned)o->retain >= MEMORY_RETAIN_N) {
        snprintf(err, errlen, "memory retention %d unknown", (int)o->retain);
        return -1;
    }
    if (o->k_min < 1 || o->k_min > o->k) {
        snprintf(err, errlen, "memory k_min %d outside 1..k (%d)", o->k_min, o->k);
        return -1;
    }
    if (!(o->horizon >= 0.0 && isfinite(o->horizon))) {
        snprintf(err, errlen, "memory horizon %g is not a number of samples", o->horizon);
        return -1;
    }
    return 0;
}

void memory_free(stream_memory *m) {
    if (!m) return;
    free(m->lat);
    free(m->packed);
    free(m->suspicion);
    free(m->heap_pos);
    free(m->ring);
    free(m->heap);
    free(m);
}

stream_memory *memory_create(int latent, const memory_options *o, char *err, size_t errlen) {
    if (memory_options_check(o, err, errlen) != 0) return NULL;
    if (latent < 1) {
        snprintf(err, errlen, "memory: latent size %d", latent);
        return NULL;
    }
    stream_memory *m = calloc(1, sizeof *m);
    if (!m) goto oom;
    m->latent = latent;
    m->capacity = o->capacity;
    m->k = o->k;
    m->k_min = o->k_min;
    m->merge_radius = o->merge_radius;
    m->horizon = o->horizon;
    m->recent_cap = (int)lround(o->capacity * o->recent_share);
    if (m->recent_cap < 1) m->recent_cap = 1;
    m->heap_cap = o->capacity - m->recent_cap;
    size_t cap = (size_t)o->capacity;
    m->lat = malloc(cap * (size_t)latent * sizeof *m->lat);
    m->packed = calloc(knn_packed_floats(o->capacity, latent), sizeof *m->packed);
    m->suspicion = malloc(cap * sizeof *m->suspicion);
    m->heap_pos = malloc(cap * sizeof *m->heap_pos);
    m->ring = malloc((size_t)m->recent_cap * sizeof *m->ring);
    m->heap = malloc((size_t)(m->heap_cap > 0 ? m->heap_cap : 1) * sizeof *m->heap);
    if (!m->lat || !m->packed || !m->suspicion || !m->heap_pos || !m->ring || !m->heap) goto oom;
    return m;
oom:
    memory_free(m);
    snprintf(err, errlen, "memory: out of memory for %d latents of %d", o->capacity, latent);
    return NULL;
}

void memory_reset(stream_memory *m) {
    m->count = m->head = m->ring_len = m->heap_len = 0;
    m->seen = 0;
}

int memory_count(const stream_memory *m) { return m->count; }

const float *memory_latents(const stream_memory *m) { return m->lat; }

void memory_probe_of(const stream_memory *m, const float *x, memory_probe *p) {
    p->n = 0;
    p->nearest_slot = -1;
    if (m->count == 0) return;
    int want = m->count < m->k ? m->count : m->k, idx[MEMORY_MAX_K]; /* knn_query's output */
    float d2[MEMORY_MAX_K];
    knn_query_packed(m->packed, m->lat, m->count, m->latent, x, want, -1, idx, d2);
    for (int j = 0; j < want; j++) p->d[j] = sqrt((double)d2[j]);
    p->n = want;
    p->nearest_slot = idx[0];
}

/* ---- the min-heap of older slots, on suspicion ---------------------------------- */

static void heap_set(stream_memory *m, int at, int slot) {
    m->heap[at] = slot;
    m->heap_pos[slot] = at;
}

static void heap_down(stream_memory *m, int at) {
    for (;;) {
        int low = at, l = 2 * at + 1, r = l + 1;
        if (l < m->heap_len && m->suspicion[m->heap[l]] < m->suspicion[m->heap[low]]) low = l;
        if (r < m->heap_len && m->suspicion[m->heap[r]] < m->suspicion[m->heap[low]]) low = r;
        if (low == at) return;
        int slot = m->heap[at];
        heap_set(m, at, m->heap[low]);
        heap_set(m, low, slot);
        at = low;
    }
}

static void heap_up(stream_memory *m, int at) {
    while (at > 0) {
        int parent = (at - 1) / 2;
        if (m->suspicion[m->heap[parent]] <= m->suspicion[m->heap[at]]) return;
        int slot = m->heap[at];
        heap_set(m, at, m->heap[parent]);
        heap_set(m, parent, slot);
        at = parent;
    }
}

/* The recent ring's oldest slot has aged out: into the heap if there is room or it is
 * more suspicious than the heap's least; returns the slot let go, or -1 if none was. */
static int age_out_oldest(stream_memory *m) {
    int slot = m->ring[m->head];
    m->head = (m->head + 1) % m->recent_cap;
    m->ring_len--;
    if (m->heap_len < m->heap_cap) {
        heap_set(m, m->heap_len++, slot);
        heap_up(m, m->heap_len - 1);
        return -1;
    }
    if (m->heap_len == 0 || m->suspicion[slot] <= m->suspicion[m->heap[0]]) return slot;
    int freed = m->heap[0];
    heap_set(m, 0, slot);
    heap_down(m, 0);
    return freed;
}

void memory_keep(stream_memory *m, const float *x, double suspicion, const memory_probe *p) {
    if (!(suspicion == suspicion)) suspicion = -INFINITY;   /* NaN: the least suspicious */
    /* Decay: every kept suspicion falling by 1 per horizon samples orders the heap as
     * adding seen / horizon to the newcomer's does, and touches nothing already kept. */
    if (m->horizon > 0) suspicion += (double)m->seen / m->horizon;
    m->seen++;
    if (p->nearest_slot >= 0 && p->d[0] <= m->merge_radius) {
        int slot = p->nearest_slot;
        if (suspicion > m->suspicion[slot]) {
            m->suspicion[slot] = suspicion;
            if (m->heap_pos[slot] >= 0) heap_down(m, m->heap_pos[slot]);
        }
        return;
    }
    int slot = -1;
    if (m->ring_len == m->recent_cap) slot = age_out_oldest(m);
    if (slot < 0) slot = m->count++;
    memcpy(m->lat + (size_t)slot * m->latent, x, (size_t)m->latent * sizeof *x);
    knn_pack_row(m->packed, m->latent, slot, x);
    m->suspicion[slot] = suspicion;
    m->heap_pos[slot] = -1;
    m->ring[(m->head + m->ring_len++) % m->recent_cap] = slot;
}

static double log_distance(double d) { return log(fmax(d, 1e-12)); }

double memory_term(const stream_memory *m, const double *ref, const memory_probe *p) {
    if (p->n < m->k) return 0.0;
    double sum = 0.0;
    for (int j = m->k_min; j <= m->k; j++) sum += log_distance(ref[j - 1]) - log_distance(p->d[j - 1]);
    return sum / (m->k - m->k_min + 1);
}
