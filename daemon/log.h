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

/* Rows handed to the writer; the submitter owns it (and the rows) until scorelog_wait. */
typedef struct scorelog_ticket {
    api_score_record *rec;
    int n;
    int done, rc;
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

#endif
