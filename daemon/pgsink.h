/* pgsink.h — the sink: ships the score log's committed rows to PostgreSQL.
 *
 * Each replica keeps its own log (log.h: fast, answer-after-commit, nothing lost on a
 * crash) and a thread of its own ships the log's rows onward into the merged history
 * (pgschema.h): it reads the rows after its position from the log, inserts them in one
 * transaction per batch keyed by (replica_id, local log id) with ON CONFLICT DO NOTHING,
 * and moves its position, which the log saves, only once PostgreSQL confirmed the commit.
 * So whatever fails when (a crash, a restart, the network, PostgreSQL), the rows after
 * the saved position are sent again, and those PostgreSQL already holds are recognised
 * and not inserted twice: nothing duplicated, nothing lost.
 *
 * Scoring never waits for it. While PostgreSQL is unreachable the rows wait in the log,
 * whose retention keeps every row not yet shipped, readiness is unaffected, and the
 * sink reconnects with backoff (0.25 s doubling to 8 s); /metrics shows the backlog, the
 * age of its oldest row and the errors. A replica_id must stay with its log: a new, empty
 * log under the replica_id of another would reuse its local ids, so the sink checks at
 * each connection that the history's newest row of this replica is one this log wrote,
 * and refuses to ship (an error, retried) when it is not. */
#ifndef ANODMD_PGSINK_H
#define ANODMD_PGSINK_H

#include <stddef.h>

#include "log.h"
#include "metrics.h"

typedef struct pgsink pgsink;

/* Ship log's rows to the PostgreSQL at url (a libpq URI) as replica_id, counting into m:
 * the log is told of the sink at once (so call this before scorelog_retain), and the
 * thread connects in the background. NULL with err when url is not a valid URI or out of
 * memory. */
pgsink *pgsink_start(const char *url, const char *replica_id, scorelog *log, metrics *m,
                     char *err, size_t errlen);
/* Stop after the batch in flight (the rows after it are shipped at the next start). */
void pgsink_stop(pgsink *s);
/* The sink's gauges into g (sink, sink_up, sink_backlog, sink_oldest_seconds). */
void pgsink_gauges(pgsink *s, metrics_gauges *g);

#endif
