/* memstore.h — a model's stream memories kept across a restart, in the score log.
 *
 * Why: a memory lives in the scorer (core/memory.h), so a restart would forget it and
 * score the next few thousand samples as if the stream had just begun. The log is the
 * daemon's durable record (a score is answered once its row is committed), so the
 * memories are written there too (log.h): a record per memory, the latent and suspicion
 * of every sample it keeps, and every `every` keeps a snapshot (proto/memstate.h) that
 * replaces those entries. A clean stop snapshots every memory. At start a model's
 * memories are read back: the snapshot loaded, then the entries after it replayed through
 * probe-then-keep, so the memory is the one the last committed score left, bit for bit,
 * after replaying at most `every` entries per memory.
 *
 * Only a record of the same bundle version and the same scope (one memory per model, or
 * per source) is used; anything else, or a record that fails its checks (reported on
 * stderr), starts the memory afresh. A reload (SIGHUP) starts every memory afresh, as
 * always; so does the reset route, recorded as an empty snapshot.
 *
 * Every memstore call after open happens under the model's lock, in the order the memory
 * changed, and hands its operations to the log at once, so the log's order is the
 * memory's. A memstore is not thread-safe otherwise. */
#ifndef ANODMD_MEMSTORE_H
#define ANODMD_MEMSTORE_H

#include "log.h"
#include "scorer.h"

typedef struct memstore memstore;

/* Keep the memories of scorer s (model name, bundle version; sources 0 for one memory
 * per model, else at most that many, one per source) in log, a snapshot every `every`
 * keeps: restored from the log first (restore 1, at start) or started afresh (restore 0,
 * a reload). NULL when the model has no memory, or, with a message on stderr, when its
 * memory cannot be kept (then it is simply not kept across a restart). */
memstore *memstore_open(scorelog *log, const char *model, const char *version, scorer *s,
                        int sources, int every, int restore);
void memstore_free(memstore *ms);
/* After a scoring call through memory slot (scorer_use_source's; fresh: started by it):
 * what it kept. */
void memstore_scored(memstore *ms, scorer *s, int slot, int fresh);
/* After scorer_memory_reset: every memory empty. */
void memstore_reset(memstore *ms, scorer *s);
/* A snapshot of every memory that changed since its last one (a clean stop). */
void memstore_flush(memstore *ms, scorer *s);
/* Record nothing more (the model set is being replaced). */
void memstore_retire(memstore *ms);

#endif
