/* samples.h — the inputs of the most recent scores, held in memory for the dashboard.
 *
 * The score log keeps each score's numbers but not the sample itself (a 784-value
 * image is 3 KB a row, and the log must keep up with thousands of scores a second).
 * A dashboard that shows a score wants the input, its reconstruction and its
 * neighbours, so anodmd keeps those of the last N scored samples here (setting
 * recent_samples), by log id, for GET /v1/scores/{id}/sample. Older ones, and all after
 * a restart, are gone: the log's row is all there is then.
 * The store is a ring indexed by log id modulo N; log ids are handed out in order, so
 * the last N ids never collide. Thread-safe: workers put, HTTP threads get. */
#ifndef ANODMD_SAMPLES_H
#define ANODMD_SAMPLES_H

#include <stdint.h>

#include "api.h"

typedef struct sample_memory sample_memory;

/* A store for the last capacity samples (capacity >= 1); NULL when out of memory. */
sample_memory *samples_create(int capacity);
void samples_free(sample_memory *m);
/* Keep a copy of s, in place of whatever held its slot. Memory to copy it into may
 * fail to come; the sample is then simply not held (a later get says so). */
void samples_put(sample_memory *m, const api_sample *s);
/* The sample with this log id: its copy into *out, whose arrays live in one block
 * (*block, malloc'd; free it). 1 found, 0 not held, -1 out of memory. */
int samples_get(sample_memory *m, int64_t log_id, api_sample *out, void **block);

#endif
