/* pghistory.h — the merged score history as GET /v1/scores, /v1/scores/{id} and
 * /v1/stats read it, with history on.
 *
 * The same queries as the log's (log.h) and the same results, on PostgreSQL's table of
 * every replica's rows (pgschema.h), so the dashboard of any replica shows every
 * replica's scores. There, a record's log_id is the history's id (a bigint PostgreSQL
 * assigns as the row arrives, growing in commit order: the since_id and before_id
 * cursors work as on the log); its replica_id and local_id say which replica scored it
 * and under which id in that replica's own log, the log_id its score answer gave.
 *
 * One connection, made at the first read and again after a failure (not more than once a
 * second: while PostgreSQL is down a read fails at once with the last error; a read that
 * finds the connection broken, after a restart of PostgreSQL, tries once more on a new
 * one, so that a restart between two reads fails neither), shared by
 * the HTTP threads under a lock: each read is one short query, or one read-only
 * transaction for the statistics. */
#ifndef ANODMD_PGHISTORY_H
#define ANODMD_PGHISTORY_H

#include <stddef.h>
#include <stdint.h>

#include "api.h"

typedef struct pghistory pghistory;

/* The history at url (a libpq URI), not connected yet; NULL with err when url is not a
 * valid URI or out of memory. */
pghistory *pghistory_open(const char *url, char *err, size_t errlen);
void pghistory_close(pghistory *h);
/* As scorelog_get, scorelog_page and scorelog_summary (log.h), ids being the history's. */
int pghistory_get(pghistory *h, int64_t id, api_score_record *rec, char *err, size_t errlen);
int pghistory_page(pghistory *h, const api_scores_query *q, api_score_record *rec, int *n,
                   char *err, size_t errlen);
int pghistory_summary(pghistory *h, int64_t now_ms, api_model_stats **out, int *n, char *err,
                      size_t errlen);

#endif
