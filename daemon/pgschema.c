/* The merged score history in PostgreSQL: connection, schema, rows (see pgschema.h). */
#include "pgschema.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

/* Version 1. FLAG columns are NOT NULL DEFAULT false, also when added to an older table
 * (PostgreSQL adds such a column without rewriting the table). The indexes serve what the
 * log's serve: GET /v1/scores pages by log_id, of everything, of one model, one source,
 * the anomalies (of one model: the dashboard's table); GET /v1/stats reads a window's
 * count, anomalies and scores from a range of by_model_time (an index-only scan) and the
 * whole history's quantiles from by_model_score. */
#define PG_DECL_REAL PG_TYPE_REAL
#define PG_DECL_FLAG PG_TYPE_FLAG " NOT NULL DEFAULT false"
#define PG_DECL_INDEX PG_TYPE_INDEX
#define FIELD_DECL(name, type, group, doc) ", " #name " " PG_DECL_##type

static const char SCHEMA[] =
    "CREATE TABLE anodm_schema_version (version integer NOT NULL);"
    "INSERT INTO anodm_schema_version VALUES (" STRINGIFY(PG_SCHEMA_VERSION) ");"
    "CREATE TABLE anodm_scores ("
    "  log_id bigserial PRIMARY KEY,"     /* the history's cursor (pgschema.h) */
    "  replica_id text NOT NULL,"         /* the replica that scored it */
    "  local_id bigint NOT NULL,"         /* its id in that replica's log */
    "  ts_ms bigint NOT NULL,"            /* Unix time in milliseconds */
    "  model text NOT NULL,"
    "  version text NOT NULL,"            /* SHA-256 of the model bundle */
    "  request_id text,"
    "  source text,"
    "  idx integer NOT NULL,"             /* position in the request's batch */
    "  threshold double precision"
    DETECTOR_RESULT_FIELDS(FIELD_DECL) ","
    "  UNIQUE (replica_id, local_id));"
    "CREATE INDEX anodm_scores_by_model ON anodm_scores (model, log_id);"
    "CREATE INDEX anodm_scores_by_source ON anodm_scores (source, log_id);"
    "CREATE INDEX anodm_scores_anomalies ON anodm_scores (log_id) WHERE is_anomaly;"
    "CREATE INDEX anodm_scores_anomalies_by_model ON anodm_scores (model, log_id) "
    "  WHERE is_anomaly;"
    "CREATE INDEX anodm_scores_by_model_time ON anodm_scores (model, ts_ms) "
    "  INCLUDE (is_anomaly, score);"
    "CREATE INDEX anodm_scores_by_model_score ON anodm_scores (model, score);";

int pg_check(PGconn *c, PGresult *r, ExecStatusType want, const char *what, char *err,
             size_t errlen) {
    int ok = r && PQresultStatus(r) == want;
    if (!ok) {
        const char *msg = r && *PQresultErrorMessage(r) ? PQresultErrorMessage(r)
                                                        : PQerrorMessage(c);
        snprintf(err, errlen, "%s: %.*s", what, (int)strcspn(msg, "\n"), msg);
    }
    PQclear(r);
    return ok ? 0 : -1;
}

PGconn *pg_connect(const char *url, char *err, size_t errlen) {
    /* Ours first: the URI's own settings, expanded from dbname, override them. */
    static const char *const keys[] = {"connect_timeout", "keepalives_idle",
                                       "keepalives_interval", "keepalives_count",
                                       "tcp_user_timeout", "application_name",
                                       "client_encoding", "dbname", NULL};
    const char *values[] = {"5", "10", "5", "3", "10000", "anodmd", "UTF8", url, NULL};
    PGconn *c = PQconnectdbParams(keys, values, 1);
    if (c && PQstatus(c) == CONNECTION_OK) return c;
    const char *msg = c ? PQerrorMessage(c) : "out of memory";
    snprintf(err, errlen, "cannot connect to PostgreSQL: %.*s", (int)strcspn(msg, "\n"), msg);
    PQfinish(c);
    return NULL;
}

int pg_target(const char *url, char *out, size_t cap, char *err, size_t errlen) {
    char *why = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &why);
    if (!opts) {
        snprintf(err, errlen, "not a PostgreSQL connection URI: %.*s",
                 why ? (int)strcspn(why, "\n") : 13, why ? why : "out of memory");
        PQfreemem(why);
        return -1;
    }
    const char *host = "", *port = "", *db = "";
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val) continue;
        if (!strcmp(o->keyword, "host")) host = o->val;
        else if (!strcmp(o->keyword, "port")) port = o->val;
        else if (!strcmp(o->keyword, "dbname")) db = o->val;
    }
    snprintf(out, cap, "host=%s port=%s dbname=%s", host, port, db);
    PQconninfoFree(opts);
    return 0;
}

/* The one integer a query returns (NULL as 0) into *v. 0, or -1 with err. */
static int query_int(PGconn *c, const char *sql, long long *v, char *err, size_t errlen) {
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        *v = PQgetisnull(r, 0, 0) ? 0 : atoll(PQgetvalue(r, 0, 0));
        PQclear(r);
        return 0;
    }
    pg_check(c, r, PGRES_TUPLES_OK, "preparing the history's schema", err, errlen);
    return -1;
}

/* Run sql, which answers with status want. 0, or -1 with err. */
static int run(PGconn *c, const char *sql, ExecStatusType want, char *err, size_t errlen) {
    return pg_check(c, PQexec(c, sql), want, "preparing the history's schema", err, errlen);
}

static int exec(PGconn *c, const char *sql, char *err, size_t errlen) {
    return run(c, sql, PGRES_COMMAND_OK, err, errlen);
}

/* The record's columns an older table lacks (a field added to detector.h's table since),
 * added. */
static int add_columns(PGconn *c, char *err, size_t errlen) {
    static const struct { const char *name, *decl; } FIELDS[] = {
#define FIELD_ADDED(name, type, group, doc) {#name, PG_DECL_##type},
        DETECTOR_RESULT_FIELDS(FIELD_ADDED)
#undef FIELD_ADDED
    };
    PGresult *r = PQexec(c, "SELECT attname FROM pg_attribute WHERE attrelid = "
                            "'anodm_scores'::regclass AND attnum > 0 AND NOT attisdropped");
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return pg_check(c, r, PGRES_TUPLES_OK, "reading the history's columns", err, errlen);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof FIELDS / sizeof FIELDS[0]; i++) {
        int have = 0;
        for (int row = 0; !have && row < PQntuples(r); row++)
            have = !strcmp(PQgetvalue(r, row, 0), FIELDS[i].name);
        if (have) continue;
        char sql[160];
        snprintf(sql, sizeof sql, "ALTER TABLE anodm_scores ADD COLUMN %s %s", FIELDS[i].name,
                 FIELDS[i].decl);
        rc = exec(c, sql, err, errlen);
    }
    PQclear(r);
    return rc;
}

int pg_prepare_schema(PGconn *c, char *err, size_t errlen) {
    long long exists, version = 0;
    if (exec(c, "BEGIN", err, errlen)) return -1;
    int rc = run(c, "SELECT pg_advisory_xact_lock(" STRINGIFY(PG_LOCK_CLASS) ", "
                    STRINGIFY(PG_LOCK_SCHEMA) ")", PGRES_TUPLES_OK, err, errlen);
    if (rc == 0)
        rc = query_int(c, "SELECT (to_regclass('anodm_schema_version') IS NOT NULL)::int",
                       &exists, err, errlen);
    if (rc == 0 && exists)
        rc = query_int(c, "SELECT max(version) FROM anodm_schema_version", &version, err,
                       errlen);
    if (rc == 0 && version > PG_SCHEMA_VERSION) {
        snprintf(err, errlen, "history schema version %lld; this anodmd knows version %d",
                 version, PG_SCHEMA_VERSION);
        rc = -1;
    }
    if (rc == 0) rc = exists ? add_columns(c, err, errlen) : exec(c, SCHEMA, err, errlen);
    if (rc == 0) rc = exec(c, "COMMIT", err, errlen);
    if (rc) PQclear(PQexec(c, "ROLLBACK"));
    return rc;
}

/* A field of row (NULL: NaN, 0, 0) by its type. */
static double read_REAL(const PGresult *r, int row, int col) {
    return PQgetisnull(r, row, col) ? NAN : strtod(PQgetvalue(r, row, col), NULL);
}
static int read_FLAG(const PGresult *r, int row, int col) {
    return !PQgetisnull(r, row, col) && PQgetvalue(r, row, col)[0] == 't';
}
static int32_t read_INDEX(const PGresult *r, int row, int col) {
    return PQgetisnull(r, row, col) ? 0 : (int32_t)strtol(PQgetvalue(r, row, col), NULL, 10);
}

/* A text column (NULL reads as "") into out of size cap. */
static void read_text(const PGresult *r, int row, int col, char *out, size_t cap) {
    snprintf(out, cap, "%s", PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col));
}

void pg_read_record(const PGresult *r, int row, api_score_record *rec) {
    int col = 10;
    memset(rec, 0, sizeof *rec);
    rec->log_id = atoll(PQgetvalue(r, row, 0));
    read_text(r, row, 1, rec->replica_id, sizeof rec->replica_id);
    rec->local_id = atoll(PQgetvalue(r, row, 2));
    rec->ts_ms = atoll(PQgetvalue(r, row, 3));
    read_text(r, row, 4, rec->model, sizeof rec->model);
    read_text(r, row, 5, rec->version, sizeof rec->version);
    read_text(r, row, 6, rec->id, sizeof rec->id);
    read_text(r, row, 7, rec->source, sizeof rec->source);
    rec->index = read_INDEX(r, row, 8);
    rec->threshold = read_REAL(r, row, 9);
#define READ(name, type, group, doc) rec->r.name = read_##type(r, row, col++);
    DETECTOR_RESULT_FIELDS(READ)
#undef READ
}
