/* log.h — the score log: every score anodmd gives, in SQLite, for dashboards to poll.
 *
 * SQLite allows one writer at a time and a commit costs an fsync, so one writer thread
 * owns the write connection and commits whatever has queued up since its last commit
 * in one transaction (group commit): under load many requests share one fsync, and a
 * lone request is written at once. A scoring worker hands its rows over (in scoring
 * order) and later waits until they are committed, so a score is acknowledged only once
 * it is durable, and the log ids it returns are real. Readers use their own connection;
 * WAL mode keeps them from blocking the writer. The schema is versioned with PRAGMA
 * user_version (SCHEMA in log.c) and created on first open; a newer database is
 * refused, not guessed at. A score record's columns are the fields of core/detect/detector.h's
 * table, and a column an older log lacks is added at open.
 * Retention (by age and by row count) is the writer's too, in small deletes between
 * group commits, so it never holds up a score for long. It always keeps the newest row,
 * so that log ids never start again from 1 (the cursor of GET /v1/scores).
 *
 * The same database keeps the models' stream memories across a restart (memstore.h):
 * each memory is a record (model, version, source, a snapshot in proto/memstate.h's
 * format) and a journal of what it kept since the snapshot. The daemon hands the writer
 * what its memories did (scorelog_memory) in the order they did it; the writer commits
 * it in that order with the score rows queued around it, so the log always holds a
 * state a memory was in, and a score's answer, sent after its row is committed, comes
 * after what its memory kept was committed too. Retention never touches these tables:
 * a snapshot replaces its journal, so they stay as small as the memories.
 *
 * A sink (daemon/pgsink.h, shipping rows to PostgreSQL) reads committed rows like any
 * reader and reports the last id it has shipped; the log keeps that position in a table of
 * its own, saved by the writer with its next commit (or alone within a second), and
 * retention never deletes a row after it, so rows not shipped yet wait here. */
#ifndef ANODMD_LOG_H
#define ANODMD_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "metrics.h"

typedef struct scorelog scorelog;

/* The largest snapshot the log takes (SQLite's default limit on one value's bytes). */
#define SCORELOG_MAX_BLOB 1000000000

/* What a stream memory did, for the writer to record (see above). */
typedef enum {
    SCORELOG_MEM_START,          /* a new, empty memory: its id, model, version, source */
    SCORELOG_MEM_KEEP,           /* memory id kept n latents (proto/memstate.h) */
    SCORELOG_MEM_SNAPSHOT,       /* memory id's whole state now, replacing its journal */
    SCORELOG_MEM_DROP,           /* memory id forgotten (its source was) */
    SCORELOG_MEM_DROP_MODEL,     /* every memory of model forgotten (started afresh) */
} scorelog_mem_kind;

typedef struct scorelog_memop {
    scorelog_mem_kind kind;
    int64_t memory;              /* an id from scorelog_memory_id */
    char model[API_NAME_MAX + 1];        /* START, DROP_MODEL */
    char version[API_VERSION_LEN + 1];   /* START */
    char source[API_ID_MAX + 1]; /* START: the source tag, */
    int has_source;              /* or 0 for the model's one memory */
    int n;                       /* KEEP: latents, each */
    size_t len;                  /* KEEP: len bytes of data; SNAPSHOT: the snapshot's bytes */
    uint8_t *data;               /* malloc'd */
    double *suspicion;           /* KEEP: n, malloc'd */
    struct scorelog_memop *next;
} scorelog_memop;

/* Rows handed to the writer; the submitter owns it (and the rows) until scorelog_wait. */
typedef struct scorelog_ticket {
    api_score_record *rec;
    int n;
    int done, rc;
    scorelog_memop *ops;         /* a ticket of scorelog_memory's (the writer frees it) */
    struct scorelog_ticket *next;
} scorelog_ticket;

/* Open (creating if needed) the database at path and start its writer thread, which
 * reports each transaction to m. */
scorelog *scorelog_open(const char *path, metrics *m, char *err, size_t errlen);
/* Drain the queue, commit, stop the writer and close the database. */
void scorelog_close(scorelog *l);
/* Queue n records without waiting (their ts_ms is set now, their log_id when written);
 * rows are written in the order they are submitted. 0, or -1 with err when closing. */
int scorelog_submit(scorelog *l, scorelog_ticket *t, api_score_record *rec, int n, char *err,
                    size_t errlen);
/* Wait until t's rows are committed. 0, or -1 with err when the write failed. */
int scorelog_wait(scorelog *l, scorelog_ticket *t, char *err, size_t errlen);
/* Record id into rec: 1 found, 0 no such id, -1 error (err). */
int scorelog_get(scorelog *l, int64_t id, api_score_record *rec, char *err, size_t errlen);
/* One page of the query into rec (room for q->limit), oldest first; *n rows. 0 or -1. */
int scorelog_page(scorelog *l, const api_scores_query *q, api_score_record *rec, int *n,
                  char *err, size_t errlen);
/* Per model in the log (by name), its count, anomalies and score quantiles over each
 * API_STATS_WINDOW ending at now_ms: *out (malloc'd, free it) holds *n. 0 or -1. */
int scorelog_summary(scorelog *l, int64_t now_ms, api_model_stats **out, int *n, char *err,
                     size_t errlen);
/* 1 if the last write succeeded; state gets "ok" or the last error. */
int scorelog_healthy(scorelog *l, char *state, size_t statelen);
/* Keep rows for days (0: for ever) and at most rows of them (0: any number), the oldest
 * going first: the writer deletes a chunk at a time between commits, checking once a
 * second, starting now. */
void scorelog_retain(scorelog *l, int days, long long rows);
/* From now on a sink named key (any text) ships this log's rows: the position saved for
 * key (0: none yet) into *shipped, and retention keeps every row after it. Call it before
 * scorelog_retain. 0, or -1 with err. */
int scorelog_sink(scorelog *l, const char *key, int64_t *shipped, char *err, size_t errlen);
/* The sink has shipped every row up to id (PostgreSQL confirmed them): retention may
 * delete them, and the writer saves the position. */
void scorelog_shipped(scorelog *l, int64_t id);
/* Wait until a row after id is committed, or ms pass: 1 if there is one. */
int scorelog_wait_after(scorelog *l, int64_t id, long ms);
/* The sink's backlog: rows committed after its position (ids above it are never deleted,
 * so this is the newest id less the position) and the ts_ms of the oldest of them (0 when
 * none). 0, or -1 when the oldest could not be read. */
int scorelog_backlog(scorelog *l, int64_t *rows, int64_t *oldest_ms);
/* Score rows queued and not yet taken by the writer. */
long scorelog_queued(scorelog *l);
/* Rows written and transactions committed so far. */
void scorelog_stats(scorelog *l, uint64_t *rows, uint64_t *commits);
/* Wait until everything queued before this call is committed. 0, or -1 with err. */
int scorelog_sync(scorelog *l, char *err, size_t errlen);

/* ---- the stream memories (see above) ---- */

/* Hand the list ops over to the writer (it frees them, scorelog_memop_free), to commit in
 * order after everything queued before. 0, or -1 when closing (ops freed). */
int scorelog_memory(scorelog *l, scorelog_memop *ops);
/* Free a list of ops. */
void scorelog_memop_free(scorelog_memop *ops);
/* An id no memory in this log has. */
int64_t scorelog_memory_id(scorelog *l);

/* A memory as the log holds it. */
typedef struct {
    int64_t id;
    char version[API_VERSION_LEN + 1];
    char source[API_ID_MAX + 1];
    int has_source;              /* 0: a model's one memory */
    int64_t last_use;            /* larger: used more recently */
    int64_t covered;             /* its journal up to here is in state */
    uint8_t *state;              /* the snapshot (malloc'd), NULL when it never had one */
    size_t state_len;
} scorelog_memory_record;
/* Every memory the log holds for model (any version), the least recently used first:
 * *out (scorelog_memories_free) holds *n. 0 or -1 with err. */
int scorelog_memories(scorelog *l, const char *model, scorelog_memory_record **out, int *n,
                      char *err, size_t errlen);
void scorelog_memories_free(scorelog_memory_record *r, int n);
/* Memory id's journal after `covered`, in order: fn(ctx, latent, len, suspicion) for each
 * entry (suspicion NaN when stored as NULL) until fn returns nonzero. 0, fn's nonzero
 * value, or -1 with err on a read error. */
int scorelog_journal(scorelog *l, int64_t id, int64_t covered,
                     int (*fn)(void *ctx, const uint8_t *latent, size_t len, double suspicion),
                     void *ctx, char *err, size_t errlen);

#endif
