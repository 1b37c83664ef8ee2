/* memory.h — the stream memory: a bounded store of the latents of recent traffic, and the
 * term that asks whether a sample is closer to that traffic than to normal data.
 *
 * Why: a sample scored alone lands among its nearest normal neighbours, so its terms
 * rank anomalies above the bulk of normals but rarely above their tail. What the paper's
 * joint t-SNE exploits is that anomalies of one kind are each other's neighbours. A daemon
 * sees a stream, so it remembers recent latents and compares x's company in them with its
 * company in the training data (SPEC.md, "The stream memory"):
 *     d_memory(x) = mean over ranks j = k_min..k of log d_j(x, reference) - log d_j(x, memory),
 * d_j the distance to the j-th nearest latent: a local density ratio, averaged over
 * several ranks because one rank's is noisy (format 4 bundles: k_min = k, one rank).
 * High when x has more close company in recent traffic than in the training data: a
 * recurring anomaly. Until the memory holds k latents there is no evidence either way and
 * the term is 0. Measured: docs/RESULTS.md, "The stream memory's method".
 *
 * Retention: `capacity` slots. A share `recent_share` holds the latest latents, first in
 * first out; the rest keeps the most suspicious of those that aged out (a min-heap on the
 * suspicion each was kept with, which the scorer chooses: by default the term the latent
 * scored, its company), so a recurring anomaly type stays remembered while normal traffic
 * moves on. A suspicion decays by 1 every `horizon` samples the memory sees (0: never):
 * without it the heap ratchets, keeping the most suspicious normals of all history, and a
 * memory that has run long scores normals higher than the one calibrated on (measured,
 * retention by company: the term's false alarms at its 1% threshold rose to 2.5% after a
 * 20000-sample warm-up; 1.1-1.5% with horizon 10000).
 *
 * Floods: a latent within `merge_radius` of one already kept is not stored again (the kept
 * one takes the higher suspicion). A flood of one sample then holds one slot: it cannot
 * push the rest of traffic out, and cannot make its own neighbourhood dense, since d_k
 * needs k distinct latents; the flood stays as novel as its first copy was.
 *
 * A sample is probed before it is kept, so it is never its own neighbour. Not
 * thread-safe: its owner (the scorer) serialises probes and keeps. */
#ifndef ANODM_MEMORY_H
#define ANODM_MEMORY_H

#include <stddef.h>

/* Limits of memory_options_check. */
#define MEMORY_MAX_K 64
#define MEMORY_MAX_CAPACITY 1000000

/* What a latent is kept with as its suspicion: its own evidence (z_re + z_latent), or its
 * company (the memory term it scored). The scorer computes it; the memory decays it. */
typedef enum { MEMORY_RETAIN_EVIDENCE = 0, MEMORY_RETAIN_COMPANY, MEMORY_RETAIN_N } memory_retain;
/* Their names: "evidence", "company". */
extern const char *const MEMORY_RETAIN_NAME[MEMORY_RETAIN_N];

typedef struct {
    int capacity;          /* latents kept (2000) */
    int k;                 /* the term's largest neighbour rank (10) */
    double recent_share;   /* share of capacity for the latest latents (0.5) */
    double merge_radius;   /* latents closer than this to a kept one are merged into it */
    int k_min;             /* the term's smallest neighbour rank, 1..k (3) */
    memory_retain retain;  /* company */
    double horizon;        /* samples over which a suspicion decays by 1; 0 never (10000) */
} memory_options;

typedef struct stream_memory stream_memory;

/* What one probe found: the distances of the nearest kept latents, nearest first. */
typedef struct {
    int n;                 /* how many: min(kept, k) */
    double d[MEMORY_MAX_K];
    int nearest_slot;      /* the nearest's slot (for merging), -1 if empty */
} memory_probe;

/* capacity 2000, ranks k_min 3 to k 10, recent_share 0.5, merge_radius 0 (exact
 * duplicates only), retention by company, horizon 10000. */
void memory_options_default(memory_options *o);
/* 0, or -1 with a message naming the option that is out of range. */
int memory_options_check(const memory_options *o, char *err, size_t errlen);

/* A memory for latents of `latent` values; NULL with err. */
stream_memory *memory_create(int latent, const memory_options *o, char *err, size_t errlen);
void memory_free(stream_memory *m);
/* Forget everything (a new model version, or an operator's reset). */
void memory_reset(stream_memory *m);
/* Latents kept now. */
int memory_count(const stream_memory *m);
/* The kept latents, memory_count rows, in slot order (valid until the next keep). */
const float *memory_latents(const stream_memory *m);

/* What retention knows of one kept latent, for drawing the memory (the map's memory layer):
 * its slot (row of memory_latents), the suspicion it was kept with, and whether it is in
 * the recent half (1) or kept for its suspicion after ageing out (0). */
typedef struct {
    int slot;
    double suspicion;
    int recent;
} memory_entry;
/* The memory_count entries into out: those kept for their suspicion first (in no
 * particular order), then the recent half oldest first (by when each was stored; a merge
 * does not make a latent younger). */
void memory_entries(const stream_memory *m, memory_entry *out);
/* Changes so far (keeps that stored or re-rated a latent, and resets): two equal readings
 * of one memory mean the same contents, so what is drawn from it can be kept until then. */
unsigned long long memory_changes(const stream_memory *m);

/* Probe x against the kept latents (nothing changes). */
void memory_probe_of(const stream_memory *m, const float *x, memory_probe *p);
/* Keep x with its suspicion; p is x's probe, made since the last keep or reset. */
void memory_keep(stream_memory *m, const float *x, double suspicion, const memory_probe *p);

/* A memory's whole state as flat arrays, so that it can be written down and read back
 * (anodmd keeps its memories across a restart; proto/memstate.h is the file format).
 * Slots keep their places, so a memory loaded from a state answers every later probe and
 * keep exactly, bit for bit, as the one it was taken from would have. */
typedef struct {
    int latent;            /* values per latent */
    int capacity;          /* slots */
    int recent;            /* slots for the latest latents; the rest hold suspicious ones */
    int count;             /* latents kept, in slots [0, count) */
    int ring_len;          /* of them in the recent part, first in first out, */
    int heap_len;          /* and in the suspicious part: count = ring_len + heap_len */
    unsigned long long seen;   /* keeps since creation or the last reset: the decay's clock */
    float *lat;            /* count x latent, by slot */
    double *suspicion;     /* count, by slot (never NaN: a NaN was kept as -infinity) */
    int *ring;             /* ring_len slots, oldest first */
    int *heap;             /* heap_len slots: a min-heap on suspicion, in array order */
} memory_state;

/* m's state into st, its arrays malloc'd (memory_state_free). 0, or -1 out of memory. */
int memory_export(const stream_memory *m, memory_state *st);
/* Replace what m holds with st, once st is checked to be a state m could be in (its
 * shape, counts, every slot once, finite latents, the heap's order); otherwise m is left
 * empty and err says what is wrong. 0 or -1. */
int memory_import(stream_memory *m, const memory_state *st, char *err, size_t errlen);
void memory_state_free(memory_state *st);

/* The term of x from its probe p and ref[0..k), its distances to its k nearest reference
 * latents, ascending: 0 while the memory holds fewer than k latents. Distances are floored
 * at 1e-12. */
double memory_term(const stream_memory *m, const double *ref, const memory_probe *p);

#endif
