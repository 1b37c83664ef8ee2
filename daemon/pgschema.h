/* pgschema.h — the merged score history in PostgreSQL: connection, schema, rows.
 *
 * Every replica ships the rows of its own log (log.h) into one table, anodm_scores
 * (pgsink.h), and any replica can serve GET /v1/scores and /v1/stats from it
 * (pghistory.h). This is what the two share: how to connect, the schema and its version,
 * and a row's columns.
 *
 * A row is keyed by (replica_id, local_id): the replica that scored it and its id in that
 * replica's own log, so a row sent twice is recognised (INSERT ... ON CONFLICT DO
 * NOTHING). Its log_id in the history is a bigint PostgreSQL assigns as it inserts the
 * row, from a sequence, while the inserting transaction holds an advisory lock that every
 * sink's insert takes: so ids are committed in increasing order, and a reader paging with
 * since_id never misses a row committed later under a lower id. Ids have gaps (a resent
 * row draws an id it does not keep), like any sequence.
 *
 * The columns of a score record are the fields of core/detect/detector.h's table, as in
 * the log; a NaN is stored as NULL and read back as NaN. The schema is versioned like the
 * log's: anodm_schema_version holds the version, the schema is created at the first
 * connection and migrated under an advisory lock (replicas start together), a newer
 * version is refused, and a field added to the table becomes a column of an existing
 * history at the next connection, needing no new version. */
#ifndef ANODMD_PGSCHEMA_H
#define ANODMD_PGSCHEMA_H

#include <libpq-fe.h>
#include <stddef.h>

#include "api.h"

#define PG_SCHEMA_VERSION 1

/* A record field's column type, by its type in detector.h's table. */
#define PG_TYPE_REAL "double precision"
#define PG_TYPE_FLAG "boolean"
#define PG_TYPE_INDEX "integer"
#define PG_FIELD_NAME(name, type, group, doc) ", " #name

/* A row's columns in the order pg_read_record reads them. */
#define PG_COLUMNS "log_id, replica_id, local_id, ts_ms, model, version, request_id, source, " \
                   "idx, threshold" DETECTOR_RESULT_FIELDS(PG_FIELD_NAME)

/* Advisory locks (class, key) of anodm: the schema's migration, and every sink's insert
 * (which orders the history's ids, above). */
#define PG_LOCK_CLASS 1634627428   /* "anod" */
#define PG_LOCK_SCHEMA 1
#define PG_LOCK_INSERT 2

/* Connect to url (a libpq URI) with anodmd's defaults, which the URI may override: a 5 s
 * connection timeout, TCP keepalives and a 10 s TCP user timeout (a dead peer is noticed
 * in seconds, not at the kernel's minutes), application_name anodmd; and the client
 * encoding UTF8, what the API's text is. The connection, or NULL with err. */
PGconn *pg_connect(const char *url, char *err, size_t errlen);
/* Create the schema, or migrate it to PG_SCHEMA_VERSION, in one transaction. 0, or -1
 * with err (a newer version among the reasons). */
int pg_prepare_schema(PGconn *c, char *err, size_t errlen);
/* The url's server and database ("host=H port=P dbname=D", as the URI gives them), into
 * out: a sink's name for its position in the log, never its password. 0, or -1 with err
 * when url is not a valid connection URI. */
int pg_target(const char *url, char *out, size_t cap, char *err, size_t errlen);
/* r had status want: 0; else -1 with err = what + the server's message. Clears r. */
int pg_check(PGconn *c, PGresult *r, ExecStatusType want, const char *what, char *err,
             size_t errlen);
/* Row row of a SELECT PG_COLUMNS result (text format) into rec. */
void pg_read_record(const PGresult *r, int row, api_score_record *rec);

#endif
