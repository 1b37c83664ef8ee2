/* The stream memory (see memory.h). Kept latents fill slots [0, count) of one array, so
 * a probe is one exact scan over a contiguous block; a slot that is let go is reused in
 * place by the next latent. The scan reads a packed copy (knn.h: sixteen slots per vector
 * operation), updated a row at a time as latents are kept. */
#include "memory.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block.h"
#include "knn.h"

struct stream_memory {
    int latent, capacity, k, k_min, recent_cap, heap_cap;
    double merge_radius, horizon;
    unsigned long long seen;   /* keeps since creation or reset: the decay's clock */
    /* The slots, in the memory's own block (memory_parts). */
    double *suspicion;       /* per slot */
    float *lat;              /* capacity x latent; slots [0, count) hold latents */
    float *packed;           /* the same, packed for knn_query_packed */
    int *heap_pos;           /* per slot: its place in heap, -1 while in the recent ring */
    int count;
    int *ring;               /* recent slots, oldest at ring[head] */
    int head, ring_len;
    int *heap;               /* the older, suspicious slots: a min-heap on suspicion */
    int heap_len;
    unsigned long long changes;  /* keeps that changed anything, and resets */
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

void memory_free(stream_memory *m) { free(m); }

/* The slots of m, carved after it (block.h): doubles, then floats, then ints. */
static void memory_parts(block *b, stream_memory *m, size_t cap, int latent, int recent_cap,
                         int heap_cap) {
    BLOCK_TAKE(b, m->suspicion, cap);
    BLOCK_TAKE(b, m->lat, cap * (size_t)latent);
    BLOCK_TAKE(b, m->packed, knn_packed_floats((int)cap, latent));
    BLOCK_TAKE(b, m->heap_pos, cap);
    BLOCK_TAKE(b, m->ring, (size_t)recent_cap);
    BLOCK_TAKE(b, m->heap, (size_t)heap_cap);
}

stream_memory *memory_create(int latent, const memory_options *o, char *err, size_t errlen) {
    if (memory_options_check(o, err, errlen) != 0) return NULL;
    if (latent < 1) {
        snprintf(err, errlen, "memory: latent size %d", latent);
        return NULL;
    }
    const size_t cap = (size_t)o->capacity;
    int recent_cap = (int)lround(o->capacity * o->recent_share);
    if (recent_cap < 1) recent_cap = 1;
    const int heap_cap = o->capacity - recent_cap;
    block b = BLOCK_HEAD(stream_memory);
    stream_memory probe;
    memory_parts(&b, &probe, cap, latent, recent_cap, heap_cap);
    stream_memory *m = block_alloc(&b);
    if (!m) {
        snprintf(err, errlen, "memory: out of memory for %d latents of %d", o->capacity, latent);
        return NULL;
    }
    memory_parts(&b, m, cap, latent, recent_cap, heap_cap);
    m->latent = latent;
    m->capacity = o->capacity;
    m->k = o->k;
    m->k_min = o->k_min;
    m->merge_radius = o->merge_radius;
    m->horizon = o->horizon;
    m->recent_cap = recent_cap;
    m->heap_cap = heap_cap;
    return m;
}

void memory_reset(stream_memory *m) {
    m->count = m->head = m->ring_len = m->heap_len = 0;
    m->changes++;
    m->seen = 0;
}

int memory_count(const stream_memory *m) { return m->count; }

const float *memory_latents(const stream_memory *m) { return m->lat; }

void memory_entries(const stream_memory *m, memory_entry *out) {
    int n = 0;
    for (int i = 0; i < m->heap_len; i++, n++)
        out[n] = (memory_entry){m->heap[i], m->suspicion[m->heap[i]], 0};
    for (int i = 0; i < m->ring_len; i++, n++) {
        int slot = m->ring[(m->head + i) % m->recent_cap];
        out[n] = (memory_entry){slot, m->suspicion[slot], 1};
    }
}

unsigned long long memory_changes(const stream_memory *m) { return m->changes; }

void memory_probe_of(const stream_memory *m, const float *x, memory_probe *p) {
    p->n = 0;
    p->nearest_slot = -1;
    if (m->count == 0) return;
    int want = m->count < m->k ? m->count : m->k, idx[MEMORY_MAX_K]; /* knn_query's output */
    float d2[MEMORY_MAX_K];
    knn_query_packed(m->packed, m->count, m->latent, x, want, -1, idx, d2);
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
            m->changes++;
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
    m->changes++;
}

/* ---- state export and import --------------------------------------------------- */

int memory_export(const stream_memory *m, memory_state *st) {
    const size_t n = (size_t)m->count;
    *st = (memory_state){.latent = m->latent, .capacity = m->capacity, .recent = m->recent_cap,
                         .count = m->count, .ring_len = m->ring_len, .heap_len = m->heap_len,
                         .seen = m->seen};
    st->lat = malloc((n ? n : 1) * (size_t)m->latent * sizeof *st->lat);
    st->suspicion = malloc((n ? n : 1) * sizeof *st->suspicion);
    st->ring = malloc((size_t)(m->ring_len ? m->ring_len : 1) * sizeof *st->ring);
    st->heap = malloc((size_t)(m->heap_len ? m->heap_len : 1) * sizeof *st->heap);
    if (!st->lat || !st->suspicion || !st->ring || !st->heap) {
        memory_state_free(st);
        return -1;
    }
    memcpy(st->lat, m->lat, n * (size_t)m->latent * sizeof *st->lat);
    memcpy(st->suspicion, m->suspicion, n * sizeof *st->suspicion);
    for (int i = 0; i < m->ring_len; i++) st->ring[i] = m->ring[(m->head + i) % m->recent_cap];
    memcpy(st->heap, m->heap, (size_t)m->heap_len * sizeof *st->heap);
    return 0;
}

void memory_state_free(memory_state *st) {
    free(st->lat);
    free(st->suspicion);
    free(st->ring);
    free(st->heap);
    memset(st, 0, sizeof *st);
}

/* Is st a state m could be in? Uses m->heap_pos as scratch. 0, or -1 with err. */
static int check_state(stream_memory *m, const memory_state *st, char *err, size_t errlen) {
    if (st->latent != m->latent || st->capacity != m->capacity || st->recent != m->recent_cap) {
        snprintf(err, errlen, "a memory of %d slots (%d recent) of %d values, not %d (%d) of %d",
                 st->capacity, st->recent, st->latent, m->capacity, m->recent_cap, m->latent);
        return -1;
    }
    /* The suspicious part fills only once the recent one is full and stays full after. */
    if (st->count < 0 || st->count > st->capacity || st->ring_len < 0 ||
        st->ring_len > st->recent || st->heap_len < 0 || st->heap_len > m->heap_cap ||
        st->ring_len + st->heap_len != st->count || (st->heap_len && st->ring_len != st->recent)) {
        snprintf(err, errlen, "counts %d = %d recent + %d suspicious do not fit %d slots (%d "
                 "recent)", st->count, st->ring_len, st->heap_len, st->capacity, st->recent);
        return -1;
    }
    for (int i = 0; i < st->count; i++) m->heap_pos[i] = 0;
    for (int i = 0; i < st->count; i++) {
        int slot = i < st->ring_len ? st->ring[i] : st->heap[i - st->ring_len];
        if (slot < 0 || slot >= st->count || m->heap_pos[slot]) {
            snprintf(err, errlen, "slot %d is outside the %d kept, or listed twice", slot,
                     st->count);
            return -1;
        }
        m->heap_pos[slot] = 1;
    }
    for (size_t i = 0; i < (size_t)st->count * (size_t)st->latent; i++)
        if (!isfinite(st->lat[i])) {
            snprintf(err, errlen, "latent of slot %zu is not finite", i / (size_t)st->latent);
            return -1;
        }
    for (int i = 0; i < st->count; i++)
        if (isnan(st->suspicion[i])) {
            snprintf(err, errlen, "suspicion of slot %d is NaN", i);
            return -1;
        }
    for (int i = 1; i < st->heap_len; i++)
        if (st->suspicion[st->heap[(i - 1) / 2]] > st->suspicion[st->heap[i]]) {
            snprintf(err, errlen, "the suspicious part is out of order at %d", i);
            return -1;
        }
    return 0;
}

int memory_import(stream_memory *m, const memory_state *st, char *err, size_t errlen) {
    int rc = check_state(m, st, err, errlen);
    memory_reset(m);
    if (rc) return -1;
    for (int slot = 0; slot < st->count; slot++) {
        const float *x = st->lat + (size_t)slot * (size_t)m->latent;
        memcpy(m->lat + (size_t)slot * (size_t)m->latent, x, (size_t)m->latent * sizeof *x);
        knn_pack_row(m->packed, m->latent, slot, x);
        m->suspicion[slot] = st->suspicion[slot];
    }
    for (int i = 0; i < st->ring_len; i++) {
        m->ring[i] = st->ring[i];
        m->heap_pos[st->ring[i]] = -1;
    }
    for (int i = 0; i < st->heap_len; i++) heap_set(m, i, st->heap[i]);
    m->count = st->count;
    m->ring_len = st->ring_len;
    m->heap_len = st->heap_len;
    m->seen = st->seen;
    return 0;
}

static double log_distance(double d) { return log(fmax(d, 1e-12)); }

double memory_term(const stream_memory *m, const double *ref, const memory_probe *p) {
    if (p->n < m->k) return 0.0;
    double sum = 0.0;
    for (int j = m->k_min; j <= m->k; j++) sum += log_distance(ref[j - 1]) - log_distance(p->d[j - 1]);
    return sum / (m->k - m->k_min + 1);
}
