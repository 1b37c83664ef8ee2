/* The score log: SQLite in WAL mode, one writer thread with group commit (see log.h). */
#include "log.h"
#include "clock.h"

#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#define SCHEMA_VERSION 6
#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)
#define BUSY_TIMEOUT_MS 5000
/* Retention deletes at most TRIM_CHUNK rows per transaction, so the writer never holds
 * the database (and scores waiting for their commit) for long. It looks once every
 * TRIM_PERIOD_NS, and again after TRIM_AGAIN_NS while a backlog remains, which lets the
 * groups queued meanwhile commit between the chunks. */
#define TRIM_CHUNK 1000
#define TRIM_PERIOD_NS 1000000000LL
#define TRIM_AGAIN_NS 10000000LL
#define DAY_MS 86400000LL
/* While the last write failed, the writer tries a write of its own this often, so that
 * readiness comes back with the disk even when no score arrives meanwhile (a load
 * balancer sends none to a daemon that says it is not ready). */
#define PROBE_PERIOD_NS 1000000000LL
/* A sink's position is saved with the next group commit, or alone this long after it moved
 * when no score comes meanwhile: at most one extra fsync a second for the sink, and a
 * crash makes it resend at most the rows it shipped in that second (which PostgreSQL then
 * recognises, daemon/pgsink.h). */
#define SAVE_DELAY_NS 1000000000LL

/* GET /v1/stats reads only these two indexes (never the table, never sorting the whole
 * log): a window's count, anomalies and scores come from a range of the first, the
 * whole log's quantiles from a walk of the second, which holds each model's scores in
 * order. */
#define STATS_INDEXES                                                                    \
    "CREATE INDEX scores_by_model_time ON scores(model, ts_ms, is_anomaly, score);"     \
    "CREATE INDEX scores_by_model_score ON scores(model, score);"

/* Version 6: GET /v1/scores's source filter matches a tag (source = ?), which SQLite knows
 * no NULL source can, so the index by source holds the tagged rows only: an untagged score
 * costs one B-tree insert less to log (before version 6 it held every row). */
#define SOURCE_INDEX \
    "CREATE INDEX scores_by_source ON scores(source, id) WHERE source IS NOT NULL;"

/* Version 4: where a sink (daemon/pgsink.h) has got to, one row per sink, so that a
 * restart resends nothing it need not and retention keeps what is not shipped yet. */
#define SINK_TABLE "CREATE TABLE sink_position (sink TEXT PRIMARY KEY, log_id INTEGER NOT NULL);"

/* The columns of a score record (detector.h's table, DETECTOR_RESULT_FIELDS) follow the
 * columns every row has; each field is one column of its name. A REAL field's NaN is
 * stored as NULL (as SQLite binds it) and read back as NaN, an unknown value. FLAG
 * columns are NOT NULL in a new log, 0 in a row written without them (a writer that
 * predates the flag); one added to an older log cannot be NOT NULL. */
#define SQL_TYPE_REAL "REAL"
#define SQL_TYPE_FLAG "INTEGER NOT NULL DEFAULT 0"
#define SQL_TYPE_INDEX "INTEGER"
#define SQL_ADDED_REAL "REAL"
#define SQL_ADDED_FLAG "INTEGER"
#define SQL_ADDED_INDEX "INTEGER"
#define FIELD_DECL(name, type, group, doc) ", " #name " " SQL_TYPE_##type
#define FIELD_NAME(name, type, group, doc) ", " #name
#define FIELD_PARAM(name, type, group, doc) ", ?"
#define FIELD_ONE(name, type, group, doc) + 1

/* Score rows go in by INSERT statements of 1, 2, 4, ... INSERT_MAX_ROWS rows, a group's
 * rows in as few of them as fit: a statement's own cost (opening and closing the cursors
 * of the table and its indexes, halting) is most of what a row costs when each has one
 * (at 64 rows a commit, about 38000 instructions a row with one statement a row, 19000 in
 * statements of 16). Its rows take consecutive ids, as a new row's id is the table's
 * largest plus one, so the last id gives them all. OR FAIL: a failed row fails the
 * transaction anyway (write_group rolls it back), so the statement needs no journal of
 * its own to undo its earlier rows. */
#define INSERT_SIZES 5
#define INSERT_MAX_ROWS (1 << (INSERT_SIZES - 1))
#define INSERT_PARAMS (7 DETECTOR_RESULT_FIELDS(FIELD_ONE))   /* a row's parameters */

/* The stream memories (log.h, memstore.h). A memory is a row of memories from its start
 * (afresh) to its end (a new version, a reload, its source forgotten): its id is the
 * daemon's (scorelog_memory_id), source is NULL for a model's one memory, else the source
 * tag ('' for none), state its latest snapshot (proto/memstate.h; NULL: none yet, empty).
 * memory_journal holds what it kept since: the latent (proto/memstate.h) and suspicion of
 * each, in the order of seq, one sequence the writer numbers all memory operations by.
 * covered is the seq the snapshot was taken at (its journal up to there is gone), and
 * last_use the seq of its start or of the last entry a snapshot took in (with the
 * journal's newest entry, the order of use of a model's sources). */
#define MEMORY_TABLES                                                                    \
    "CREATE TABLE memories (id INTEGER PRIMARY KEY, model TEXT NOT NULL, "              \
    "version TEXT NOT NULL, source TEXT, last_use INTEGER NOT NULL, "                  \
    "covered INTEGER NOT NULL, state BLOB);"                                            \
    "CREATE INDEX memories_by_model ON memories(model);"                               \
    "CREATE TABLE memory_journal (memory INTEGER NOT NULL, seq INTEGER NOT NULL, "       \
    "latent BLOB NOT NULL, suspicion REAL, PRIMARY KEY (memory, seq)) WITHOUT ROWID;"

/* Version SCHEMA_VERSION. The first indexes serve GET /v1/scores: the primary key pages
 * the whole log, the others page one model, one source, or the anomalies, in id order.
 * Version 2 added d_latent and z_latent, version 3 STATS_INDEXES, version 4 MEMORY_TABLES,
 * version 5 SINK_TABLE, version 6 made SOURCE_INDEX partial;
 * columns are added to an older log by add_columns, whichever version it is, so that a
 * field added to the table needs no new version. */
static const char SCHEMA[] =
    "CREATE TABLE scores ("
    "  id INTEGER PRIMARY KEY,"           /* log_id: the paging cursor */
    "  ts_ms INTEGER NOT NULL,"           /* Unix time in milliseconds */
    "  model TEXT NOT NULL,"
    "  version TEXT NOT NULL,"            /* SHA-256 of the model bundle */
    "  request_id TEXT,"                  /* the caller's id, NULL when none */
    "  source TEXT,"                      /* the caller's source tag, NULL when none */
    "  idx INTEGER NOT NULL,"             /* position in the request's batch */
    "  threshold REAL"                    /* the model's, the record was judged against */
    DETECTOR_RESULT_FIELDS(FIELD_DECL) ");"
    "CREATE INDEX scores_by_model ON scores(model, id);"
    SOURCE_INDEX
    "CREATE INDEX scores_anomalies ON scores(id) WHERE is_anomaly = 1;"
    STATS_INDEXES
    MEMORY_TABLES
    SINK_TABLE
    "PRAGMA user_version = " STRINGIFY(SCHEMA_VERSION) ";";

/* Every row's columns, then the record's: what read_record reads, in its order. */
#define FIXED_COLUMNS 8
#define COLUMNS "id, ts_ms, model, version, request_id, source, idx, threshold" \
    DETECTOR_RESULT_FIELDS(FIELD_NAME)

/* An older version to SCHEMA_VERSION, step by step: from 1 or 2 the statistics' indexes
 * (built at start: seconds for millions of rows), from 3 the memories' tables (empty),
 * from 4 the sinks' positions, from 5 the index by source rebuilt over the tagged rows
 * (a walk of the table at start). */
static const char MIGRATE_TO_3[] = STATS_INDEXES;
static const char MIGRATE_TO_4[] = MEMORY_TABLES;
static const char MIGRATE_TO_5[] = SINK_TABLE;
static const char MIGRATE_TO_6[] = "DROP INDEX scores_by_source;" SOURCE_INDEX;
static const char SET_VERSION[] = "PRAGMA user_version = " STRINGIFY(SCHEMA_VERSION) ";";

/* The writer's statements for the memories' operations (scorelog_memop), by kind; KEEP
 * adds an entry only for a memory that still exists (an operation of a model set being
 * replaced may come after the new set's start afresh). */
enum { MEM_START, MEM_KEEP, MEM_SNAPSHOT, MEM_TRIM, MEM_DROP, MEM_DROP_JOURNALS,
       MEM_DROP_MODEL, N_MEM_SQL };
static const char *const MEM_SQL[N_MEM_SQL] = {
    "INSERT INTO memories (id, model, version, source, last_use, covered, state) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?5, NULL)",
    "INSERT INTO memory_journal (memory, seq, latent, suspicion) SELECT ?1, ?2, ?3, ?4 "
    "WHERE EXISTS (SELECT 1 FROM memories WHERE id = ?1)",
    "UPDATE memories SET state = ?2, covered = ?3, last_use = max(last_use, coalesce("
    "(SELECT max(seq) FROM memory_journal WHERE memory = ?1), 0)) WHERE id = ?1",
    "DELETE FROM memory_journal WHERE memory = ?1 AND seq <= ?2",
    "DELETE FROM memories WHERE id = ?1",
    "DELETE FROM memory_journal WHERE memory IN (SELECT id FROM memories WHERE model = ?1)",
    "DELETE FROM memories WHERE model = ?1",
};

struct scorelog {
    sqlite3 *wdb, *rdb;          /* the writer's and the readers' connections */
    sqlite3_stmt *insert[INSERT_SIZES];     /* of 1 << i rows */
    sqlite3_stmt *trim_age, *trim_rows, *save_position;
    sqlite3_stmt *mem[N_MEM_SQL];
    int64_t mem_seq;             /* the last memory operation's number (the writer's) */
    int64_t next_memory;         /* scorelog_memory_id's next (under lock) */
    pthread_mutex_t rlock;       /* guards rdb */
    pthread_mutex_t lock;        /* guards everything below */
    pthread_cond_t work, done;
    scorelog_ticket *head, **tail;
    long queued;                 /* rows in the pending list */
    int stopping, healthy;
    char state[256];
    uint64_t rows, commits;
    int keep_days;               /* retention: 0 keeps rows for ever */
    long long keep_rows;         /* retention: 0 keeps any number */
    long long next_trim_ns;      /* monotonic time retention is next applied */
    long long next_probe_ns;     /* while unhealthy: when the writer next tries a write */
    int64_t last_id;             /* the newest committed row's id */
    char *sink;                  /* the sink's key in sink_position; NULL: no sink */
    int64_t shipped;             /* the last id the sink confirmed (retention keeps the rows
                                    after it) */
    int64_t saved;               /* the position sink_position holds */
    long long save_ns;           /* while shipped != saved: when the writer saves it alone */
    metrics *metrics;
    pthread_t writer;
};

/* err = what + the connection's last message. */
static void db_error(sqlite3 *db, const char *what, char *err, size_t errlen) {
    snprintf(err, errlen, "%s: %s", what, db ? sqlite3_errmsg(db) : "out of memory");
}

static int exec(sqlite3 *db, const char *sql, char *err, size_t errlen) {
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK) return 0;
    db_error(db, sql, err, errlen);
    return -1;
}

/* End a failed transaction; the error that failed it is the one worth reporting. */
static void rollback(sqlite3 *db) { sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL); }

/* The integer a one-row statement like "PRAGMA user_version" returns; -1 on error. */
static long long query_int(sqlite3 *db, const char *sql) {
    sqlite3_stmt *st;
    long long v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return -1;
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* The record's columns an older log lacks (d_latent and z_latent before version 2, a
 * field added to detector.h's table since), added: the rows logged before hold NULL
 * there, served as null. */
static int add_columns(sqlite3 *db, char *err, size_t errlen) {
    static const struct { const char *name, *type; } FIELDS[] = {
#define FIELD_ADDED(name, type, group, doc) {#name, SQL_ADDED_##type},
        DETECTOR_RESULT_FIELDS(FIELD_ADDED)
#undef FIELD_ADDED
    };
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM pragma_table_info('scores') WHERE "
                           "name = ?1", -1, &st, NULL) != SQLITE_OK) {
        db_error(db, "reading the log's columns", err, errlen);
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof FIELDS / sizeof FIELDS[0]; i++) {
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, FIELDS[i].name, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_ROW) {
            db_error(db, "reading the log's columns", err, errlen);
            rc = -1;
        } else if (sqlite3_column_int(st, 0) == 0) {
            char sql[128];
            snprintf(sql, sizeof sql, "ALTER TABLE scores ADD COLUMN %s %s", FIELDS[i].name,
                     FIELDS[i].type);
            rc = exec(db, sql, err, errlen);
        }
    }
    sqlite3_finalize(st);
    return rc;
}

/* WAL mode, then create the schema or check that it is one this code knows. */
static int prepare_schema(sqlite3 *db, char *err, size_t errlen) {
    sqlite3_stmt *st;
    int wal = 0;
    if (sqlite3_prepare_v2(db, "PRAGMA journal_mode = WAL", -1, &st, NULL) == SQLITE_OK) {
        wal = sqlite3_step(st) == SQLITE_ROW &&
              !strcmp((const char *)sqlite3_column_text(st, 0), "wal");
        sqlite3_finalize(st);
    }
    if (!wal) {
        db_error(db, "cannot switch the log to WAL mode", err, errlen);
        return -1;
    }
    /* FULL: a commit is on disk when COMMIT returns, so an acknowledged score is too. */
    if (exec(db, "PRAGMA synchronous = FULL", err, errlen) ||
        exec(db, "BEGIN IMMEDIATE", err, errlen))
        return -1;
    long long version = query_int(db, "PRAGMA user_version");
    if (version < 0 || version > SCHEMA_VERSION) {
        snprintf(err, errlen, "log schema version %lld; this anodmd knows version %d", version,
                 SCHEMA_VERSION);
        rollback(db);
        return -1;
    }
    if ((version == 0 && exec(db, SCHEMA, err, errlen)) ||
        (version > 0 && add_columns(db, err, errlen)) ||
        ((version == 1 || version == 2) && exec(db, MIGRATE_TO_3, err, errlen)) ||
        (version > 0 && version < 4 && exec(db, MIGRATE_TO_4, err, errlen)) ||
        (version > 0 && version < 5 && exec(db, MIGRATE_TO_5, err, errlen)) ||
        (version > 0 && version < 6 && exec(db, MIGRATE_TO_6, err, errlen)) ||
        exec(db, SET_VERSION, err, errlen) || exec(db, "COMMIT", err, errlen)) {
        rollback(db);
        return -1;
    }
    return 0;
}

static int open_db(const char *path, int flags, sqlite3 **db, char *err, size_t errlen) {
    if (sqlite3_open_v2(path, db, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        char what[600];
        snprintf(what, sizeof what, "cannot open log %s", path);
        db_error(*db, what, err, errlen);
        return -1;
    }
    sqlite3_busy_timeout(*db, BUSY_TIMEOUT_MS);
    return 0;
}

/* A record field's value into parameter i of st, and out of column i, by its type. */
static void bind_REAL(sqlite3_stmt *st, int i, double v) { sqlite3_bind_double(st, i, v); }
static void bind_FLAG(sqlite3_stmt *st, int i, int v) { sqlite3_bind_int(st, i, v); }
static void bind_INDEX(sqlite3_stmt *st, int i, int32_t v) { sqlite3_bind_int(st, i, v); }
static double column_REAL(sqlite3_stmt *st, int i) {
    return sqlite3_column_type(st, i) == SQLITE_NULL ? NAN : sqlite3_column_double(st, i);
}
static int column_FLAG(sqlite3_stmt *st, int i) { return sqlite3_column_int(st, i); }
static int32_t column_INDEX(sqlite3_stmt *st, int i) { return sqlite3_column_int(st, i); }

/* Bind one record to an insert statement's parameters after the first `at`. */
static void bind_record(sqlite3_stmt *st, int at, const api_score_record *r) {
    int i = at + 7;
    sqlite3_bind_int64(st, at + 1, r->ts_ms);
    sqlite3_bind_text(st, at + 2, r->model, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, at + 3, r->version, -1, SQLITE_STATIC);
    if (*r->id) sqlite3_bind_text(st, at + 4, r->id, -1, SQLITE_STATIC);
    else sqlite3_bind_null(st, at + 4);
    if (*r->source) sqlite3_bind_text(st, at + 5, r->source, -1, SQLITE_STATIC);
    else sqlite3_bind_null(st, at + 5);
    sqlite3_bind_int(st, at + 6, r->index);
    sqlite3_bind_double(st, at + 7, r->threshold);
#define BIND(name, type, group, doc) bind_##type(st, ++i, r->r.name);
    DETECTOR_RESULT_FIELDS(BIND)
#undef BIND
}

/* Insert the n records rec[0..n) (n <= INSERT_MAX_ROWS), in order, in statements of the
 * largest sizes that fit, and set their log ids. 0, or -1 (the connection says why). */
static int insert_rows(scorelog *l, api_score_record *const *rec, int n) {
    while (n > 0) {
        int s = INSERT_SIZES - 1;
        while ((1 << s) > n) s--;
        int k = 1 << s;
        sqlite3_stmt *st = l->insert[s];
        sqlite3_reset(st);
        for (int j = 0; j < k; j++) bind_record(st, j * INSERT_PARAMS, rec[j]);
        if (sqlite3_step(st) != SQLITE_DONE) {
            sqlite3_reset(st);
            return -1;
        }
        int64_t last = sqlite3_last_insert_rowid(l->wdb);
        for (int j = 0; j < k; j++) rec[j]->log_id = last - (k - 1 - j);
        rec += k;
        n -= k;
    }
    return 0;
}

/* Run statement MEM_* k of l with its parameters bound by the caller; 0 or -1. */
static int mem_step(scorelog *l, int k) {
    int rc = sqlite3_step(l->mem[k]) == SQLITE_DONE ? 0 : -1;
    sqlite3_reset(l->mem[k]);
    sqlite3_clear_bindings(l->mem[k]);
    return rc;
}

/* Apply one memory operation (log.h). 0, or -1 (the connection says why). */
static int apply_memop(scorelog *l, const scorelog_memop *op) {
    sqlite3_stmt *const *st = l->mem;
    switch (op->kind) {
    case SCORELOG_MEM_START:
        sqlite3_bind_int64(st[MEM_START], 1, op->memory);
        sqlite3_bind_text(st[MEM_START], 2, op->model, -1, SQLITE_STATIC);
        sqlite3_bind_text(st[MEM_START], 3, op->version, -1, SQLITE_STATIC);
        if (op->has_source) sqlite3_bind_text(st[MEM_START], 4, op->source, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st[MEM_START], 5, ++l->mem_seq);
        return mem_step(l, MEM_START);
    case SCORELOG_MEM_KEEP:
        for (int i = 0; i < op->n; i++) {
            sqlite3_bind_int64(st[MEM_KEEP], 1, op->memory);
            sqlite3_bind_int64(st[MEM_KEEP], 2, ++l->mem_seq);
            sqlite3_bind_blob(st[MEM_KEEP], 3, op->data + (size_t)i * op->len, (int)op->len,
                              SQLITE_STATIC);
            sqlite3_bind_double(st[MEM_KEEP], 4, op->suspicion[i]);
            if (mem_step(l, MEM_KEEP)) return -1;
        }
        return 0;
    case SCORELOG_MEM_SNAPSHOT:
        sqlite3_bind_int64(st[MEM_SNAPSHOT], 1, op->memory);
        sqlite3_bind_blob(st[MEM_SNAPSHOT], 2, op->data, (int)op->len, SQLITE_STATIC);
        sqlite3_bind_int64(st[MEM_SNAPSHOT], 3, l->mem_seq);
        sqlite3_bind_int64(st[MEM_TRIM], 1, op->memory);
        sqlite3_bind_int64(st[MEM_TRIM], 2, l->mem_seq);
        return mem_step(l, MEM_SNAPSHOT) || mem_step(l, MEM_TRIM) ? -1 : 0;
    case SCORELOG_MEM_DROP:
        sqlite3_bind_int64(st[MEM_DROP], 1, op->memory);
        sqlite3_bind_int64(st[MEM_TRIM], 1, op->memory);
        sqlite3_bind_int64(st[MEM_TRIM], 2, INT64_MAX);
        return mem_step(l, MEM_DROP) || mem_step(l, MEM_TRIM) ? -1 : 0;
    case SCORELOG_MEM_DROP_MODEL:
        sqlite3_bind_text(st[MEM_DROP_JOURNALS], 1, op->model, -1, SQLITE_STATIC);
        sqlite3_bind_text(st[MEM_DROP_MODEL], 1, op->model, -1, SQLITE_STATIC);
        return mem_step(l, MEM_DROP_JOURNALS) || mem_step(l, MEM_DROP_MODEL) ? -1 : 0;
    }
    return -1;
}

/* The sink's position (l->sink, at id) into sink_position, in the open transaction. */
static int save_position(scorelog *l, int64_t id, char *err, size_t errlen) {
    sqlite3_reset(l->save_position);
    sqlite3_bind_text(l->save_position, 1, l->sink, -1, SQLITE_STATIC);
    sqlite3_bind_int64(l->save_position, 2, id);
    if (sqlite3_step(l->save_position) == SQLITE_DONE) return 0;
    db_error(l->wdb, "saving the sink's position", err, errlen);
    sqlite3_reset(l->save_position);
    return -1;
}

/* Write every queued request (and memory operation) in one transaction, filling in log
 * ids, and the sink's position with them when save >= 0. A failed transaction leaves
 * mem_seq ahead of the log: numbers are skipped, never reused. */
static int write_group(scorelog *l, scorelog_ticket *group, int64_t save, char *err,
                       size_t errlen) {
    if (exec(l->wdb, "BEGIN IMMEDIATE", err, errlen)) return -1;
    if (save >= 0 && save_position(l, save, err, errlen)) {
        rollback(l->wdb);
        return -1;
    }
    /* The rows of consecutive tickets are inserted together, INSERT_MAX_ROWS at a time;
     * a ticket's memory operations still come after the rows queued before them. */
    api_score_record *run[INSERT_MAX_ROWS];
    int n = 0;
    for (scorelog_ticket *p = group; p; p = p->next) {
        int rc = 0;
        for (int i = 0; rc == 0 && i < p->n; i++) {
            run[n++] = &p->rec[i];
            if (n == INSERT_MAX_ROWS) {
                rc = insert_rows(l, run, n);
                n = 0;
            }
        }
        if (p->ops || !p->next) {    /* the run ends before memory operations, and at the end */
            if (rc == 0) rc = insert_rows(l, run, n);
            n = 0;
        }
        if (rc) {
            db_error(l->wdb, "writing a score", err, errlen);
            rollback(l->wdb);
            return -1;
        }
        for (const scorelog_memop *op = p->ops; op; op = op->next)
            if (apply_memop(l, op)) {
                db_error(l->wdb, "writing a stream memory", err, errlen);
                rollback(l->wdb);
                return -1;
            }
    }
    if (exec(l->wdb, "COMMIT", err, errlen) == 0) return 0;
    rollback(l->wdb);
    return -1;
}

/* Save the sink's position at id in a transaction of its own. 0, or -1 with err. */
static int save_alone(scorelog *l, int64_t id, char *err, size_t errlen) {
    if (exec(l->wdb, "BEGIN IMMEDIATE", err, errlen)) return -1;
    if (save_position(l, id, err, errlen) || exec(l->wdb, "COMMIT", err, errlen)) {
        rollback(l->wdb);
        return -1;
    }
    return 0;
}

/* Run a trim statement (?1 its bound, ?2 the chunk, ?3 the last id it may delete); rows
 * deleted, or -1 with err. */
static int trim(sqlite3 *db, sqlite3_stmt *st, long long bound, int64_t last, char *err,
                size_t errlen) {
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, bound);
    sqlite3_bind_int(st, 2, TRIM_CHUNK);
    sqlite3_bind_int64(st, 3, last);
    if (sqlite3_step(st) == SQLITE_DONE) return sqlite3_changes(db);
    db_error(db, "applying retention", err, errlen);
    sqlite3_reset(st);
    return -1;
}

/* One round of retention: at most a chunk of rows older than keep_days, and a chunk of
 * the oldest beyond keep_rows, none after id last (a sink has not shipped them yet).
 * Returns 1 when a chunk was full (more to delete). */
static int apply_retention(scorelog *l, int keep_days, long long keep_rows, int64_t last) {
    char err[256];
    int age = 0, count = 0;
    if (keep_days) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        long long now_ms = (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
        age = trim(l->wdb, l->trim_age, now_ms - keep_days * DAY_MS, last, err, sizeof err);
    }
    if (keep_rows && age >= 0)
        count = trim(l->wdb, l->trim_rows, keep_rows, last, err, sizeof err);
    if (age < 0 || count < 0) {
        fprintf(stderr, "anodmd: %s (retried in %lld s)\n", err, TRIM_PERIOD_NS / 1000000000LL);
        return 0;
    }
    return age == TRIM_CHUNK || count == TRIM_CHUNK;
}

/* Is retention on and due? Caller holds the lock. */
static int retention_due(const scorelog *l, long long now) {
    return (l->keep_days || l->keep_rows) && !l->stopping && now >= l->next_trim_ns;
}

/* Is the sink's position to be saved alone now? Caller holds the lock. */
static int save_due(const scorelog *l, long long now) {
    return l->sink && l->shipped != l->saved && (l->stopping || now >= l->save_ns);
}

/* Is a probe write due (the last write failed)? Caller holds the lock. */
static int probe_due(const scorelog *l, long long now) {
    return !l->healthy && !l->stopping && now >= l->next_probe_ns;
}

/* A write that changes nothing but needs room like any commit: page 1 written again. */
static int probe(scorelog *l, char *err, size_t errlen) {
    if (exec(l->wdb, "BEGIN IMMEDIATE", err, errlen)) return -1;
    if (exec(l->wdb, "PRAGMA user_version = " STRINGIFY(SCHEMA_VERSION), err, errlen) ||
        exec(l->wdb, "COMMIT", err, errlen)) {
        rollback(l->wdb);
        return -1;
    }
    return 0;
}

/* Record how the last write went, saying so on stderr when the log's health changes (not
 * at every failed commit: a full disk would flood the journal). Holds the lock. */
static void set_health(scorelog *l, int rc, const char *err) {
    if (rc && (l->healthy || strcmp(l->state, err)))
        fprintf(stderr, "anodmd: log write failed: %s%s\n", err,
                l->healthy ? " (scores are refused until it is writable again)" : "");
    else if (!rc && !l->healthy)
        fprintf(stderr, "anodmd: log writable again\n");
    if (rc && l->healthy) l->next_probe_ns = clock_ns() + PROBE_PERIOD_NS;
    l->healthy = rc == 0;
    snprintf(l->state, sizeof l->state, "%s", rc ? err : "ok");
}

/* Sleep until rows are queued, the log is closing, or retention or a probe is due. Holds
 * the lock. */
static void writer_wait(scorelog *l) {
    for (;;) {
        long long now = clock_ns(), wake = 0;
        if (l->head || l->stopping || retention_due(l, now) || probe_due(l, now) ||
            save_due(l, now))
            return;
        if (l->keep_days || l->keep_rows) wake = l->next_trim_ns;
        if (!l->healthy && (!wake || l->next_probe_ns < wake)) wake = l->next_probe_ns;
        if (l->sink && l->shipped != l->saved && (!wake || l->save_ns < wake)) wake = l->save_ns;
        if (!wake) {
            pthread_cond_wait(&l->work, &l->lock);
            continue;
        }
        struct timespec t = {(time_t)(wake / 1000000000LL), (long)(wake % 1000000000LL)};
        pthread_cond_timedwait(&l->work, &l->lock, &t);
    }
}

/* The writer: take everything queued, commit it together (with the sink's position when
 * it moved), wake the requesters; between groups, apply retention a chunk at a time, and
 * save the sink's position alone when no group came to carry it. */
static void *writer_main(void *arg) {
    scorelog *l = arg;
    prctl(PR_SET_NAME, "anodmd-log");   /* its own line in top -H; tests/bench/log_writer.c
                                           reads its CPU */
    pthread_mutex_lock(&l->lock);
    for (;;) {
        writer_wait(l);
        if (retention_due(l, clock_ns())) {
            int days = l->keep_days;
            long long rows = l->keep_rows;
            int64_t last = l->sink ? l->shipped : INT64_MAX;
            pthread_mutex_unlock(&l->lock);
            int more = apply_retention(l, days, rows, last);
            pthread_mutex_lock(&l->lock);
            l->next_trim_ns = clock_ns() + (more ? TRIM_AGAIN_NS : TRIM_PERIOD_NS);
            continue;
        }
        if (!l->head && probe_due(l, clock_ns())) {
            pthread_mutex_unlock(&l->lock);
            char err[256] = "";
            int rc = probe(l, err, sizeof err);
            pthread_mutex_lock(&l->lock);
            l->next_probe_ns = clock_ns() + PROBE_PERIOD_NS;
            set_health(l, rc, err);
            continue;
        }
        if (!l->head && save_due(l, clock_ns())) {
            int64_t id = l->shipped;
            pthread_mutex_unlock(&l->lock);
            char err[256] = "";
            int rc = save_alone(l, id, err, sizeof err);
            pthread_mutex_lock(&l->lock);
            if (rc == 0) l->saved = id;
            else if (!l->stopping) l->save_ns = clock_ns() + PROBE_PERIOD_NS;
            else break;      /* closing: the sink resends from the saved position */
            continue;
        }
        if (!l->head) break;
        scorelog_ticket *group = l->head;
        l->head = NULL;
        l->tail = &l->head;
        l->queued = 0;
        int64_t save = l->sink && l->shipped != l->saved ? l->shipped : -1;
        pthread_mutex_unlock(&l->lock);
        char err[256] = "";
        double t0 = clock_seconds();
        int rc = write_group(l, group, save, err, sizeof err);
        metrics_db_write(l->metrics, clock_seconds() - t0, rc == 0);
        pthread_mutex_lock(&l->lock);
        if (rc == 0 && save >= 0) l->saved = save;
        for (scorelog_ticket *p = group, *next; p; p = next) {
            next = p->next;          /* p belongs to its submitter once done: read it first */
            if (p->ops) {            /* scorelog_memory's: nobody waits for it */
                scorelog_memop_free(p->ops);
                free(p);
                continue;
            }
            l->rows += rc ? 0 : (uint64_t)p->n;
            if (rc == 0 && p->n && p->rec[p->n - 1].log_id > l->last_id)
                l->last_id = p->rec[p->n - 1].log_id;
            p->rc = rc;
            p->done = 1;
        }
        l->commits += rc ? 0 : 1;
        set_health(l, rc, err);
        pthread_cond_broadcast(&l->done);
    }
    pthread_mutex_unlock(&l->lock);
    return NULL;
}

/* Finalize l's statements and close its two connections (any of them may be NULL). */
static void close_database(scorelog *l) {
    for (int k = 0; k < N_MEM_SQL; k++) sqlite3_finalize(l->mem[k]);
    sqlite3_finalize(l->save_position);
    sqlite3_finalize(l->trim_rows);
    sqlite3_finalize(l->trim_age);
    for (int s = 0; s < INSERT_SIZES; s++) sqlite3_finalize(l->insert[s]);
    sqlite3_close(l->rdb);
    sqlite3_close(l->wdb);
}

scorelog *scorelog_open(const char *path, metrics *m, char *err, size_t errlen) {
    scorelog *l = calloc(1, sizeof *l);
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    l->metrics = m;
    const int rw = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    if (open_db(path, rw, &l->wdb, err, errlen)) goto fail;
    if (prepare_schema(l->wdb, err, errlen)) {
        char why[512];
        snprintf(why, sizeof why, "%s", err);
        snprintf(err, errlen, "log %s: %s", path, why);
        goto fail;
    }
    if (open_db(path, SQLITE_OPEN_READONLY, &l->rdb, err, errlen)) goto fail;
    for (int s = 0; s < INSERT_SIZES; s++) {
        static const char HEAD[] = "INSERT OR FAIL INTO scores (ts_ms, model, version, "
            "request_id, source, idx, threshold" DETECTOR_RESULT_FIELDS(FIELD_NAME) ") VALUES ";
        static const char ROW[] = "(?, ?, ?, ?, ?, ?, ?" DETECTOR_RESULT_FIELDS(FIELD_PARAM) ")";
        char sql[sizeof HEAD + INSERT_MAX_ROWS * sizeof ROW];
        int len = snprintf(sql, sizeof sql, "%s", HEAD);
        for (int j = 0; j < 1 << s; j++)
            len += snprintf(sql + len, sizeof sql - (size_t)len, "%s%s", j ? "," : "", ROW);
        if (sqlite3_prepare_v2(l->wdb, sql, len, &l->insert[s], NULL) != SQLITE_OK) {
            db_error(l->wdb, "preparing the insert", err, errlen);
            goto fail;
        }
    }
    /* Both walk the primary key from the oldest row, so a round costs a chunk, not a scan
     * of the table. Ids grow with time (a row's ts_ms is taken as it is queued). The
     * newest row is never deleted by age: SQLite gives a row of an empty table id 1, and
     * log ids starting again would hide every new row from a dashboard polling with
     * since_id (and reuse ids callers were given). */
    if (sqlite3_prepare_v2(l->wdb, "DELETE FROM scores WHERE id IN (SELECT id FROM scores "
                           "ORDER BY id LIMIT ?2) AND ts_ms < ?1 AND id < (SELECT max(id) "
                           "FROM scores) AND id <= ?3", -1, &l->trim_age,
                           NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(l->wdb, "DELETE FROM scores WHERE id IN (SELECT id FROM scores "
                           "WHERE id <= (SELECT max(id) FROM scores) - ?1 AND id <= ?3 "
                           "ORDER BY id LIMIT ?2)", -1, &l->trim_rows, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(l->wdb, "INSERT INTO sink_position (sink, log_id) VALUES (?1, ?2) "
                           "ON CONFLICT (sink) DO UPDATE SET log_id = excluded.log_id", -1,
                           &l->save_position, NULL) != SQLITE_OK) {
        db_error(l->wdb, "preparing retention and the sink's position", err, errlen);
        goto fail;
    }
    for (int k = 0; k < N_MEM_SQL; k++)
        if (sqlite3_prepare_v2(l->wdb, MEM_SQL[k], -1, &l->mem[k], NULL) != SQLITE_OK) {
            db_error(l->wdb, "preparing the memories' statements", err, errlen);
            goto fail;
        }
    l->mem_seq = query_int(l->wdb, "SELECT max(coalesce((SELECT max(seq) FROM memory_journal), 0),"
                           " coalesce((SELECT max(max(last_use, covered)) FROM memories), 0))");
    l->next_memory = query_int(l->wdb, "SELECT coalesce(max(id), 0) + 1 FROM memories");
    if (l->mem_seq < 0 || l->next_memory < 1) {
        db_error(l->wdb, "reading the memories' sequence", err, errlen);
        goto fail;
    }
    l->last_id = query_int(l->wdb, "SELECT ifnull(max(id), 0) FROM scores");
    pthread_mutex_init(&l->rlock, NULL);
    pthread_mutex_init(&l->lock, NULL);
    /* Retention deadlines are monotonic: a clock step must not stall or rush them. */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&l->work, &ca);
    pthread_cond_init(&l->done, &ca);
    pthread_condattr_destroy(&ca);
    l->tail = &l->head;
    l->healthy = 1;
    snprintf(l->state, sizeof l->state, "ok");
    if (pthread_create(&l->writer, NULL, writer_main, l) == 0) return l;
    snprintf(err, errlen, "cannot start the log writer thread");
    pthread_cond_destroy(&l->done);
    pthread_cond_destroy(&l->work);
    pthread_mutex_destroy(&l->lock);
    pthread_mutex_destroy(&l->rlock);
fail:
    close_database(l);
    free(l);
    return NULL;
}

void scorelog_close(scorelog *l) {
    if (!l) return;
    pthread_mutex_lock(&l->lock);
    l->stopping = 1;
    pthread_cond_signal(&l->work);
    pthread_mutex_unlock(&l->lock);
    pthread_join(l->writer, NULL);
    close_database(l);
    pthread_cond_destroy(&l->done);
    pthread_cond_destroy(&l->work);
    pthread_mutex_destroy(&l->lock);
    pthread_mutex_destroy(&l->rlock);
    free(l->sink);
    free(l);
}

/* Queue t for the writer: 0, or -1 with err when closing. */
static int enqueue(scorelog *l, scorelog_ticket *t, char *err, size_t errlen) {
    pthread_mutex_lock(&l->lock);
    if (l->stopping) {
        pthread_mutex_unlock(&l->lock);
        snprintf(err, errlen, "the log is closing");
        return -1;
    }
    *l->tail = t;
    l->tail = &t->next;
    l->queued += t->n;
    pthread_cond_signal(&l->work);
    pthread_mutex_unlock(&l->lock);
    return 0;
}

int scorelog_submit(scorelog *l, scorelog_ticket *t, api_score_record *rec, int n, char *err,
                    size_t errlen) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    for (int i = 0; i < n; i++) {
        rec[i].ts_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
        rec[i].log_id = 0;
    }
    *t = (scorelog_ticket){.rec = rec, .n = n};
    return enqueue(l, t, err, errlen);
}

int scorelog_wait(scorelog *l, scorelog_ticket *t, char *err, size_t errlen) {
    pthread_mutex_lock(&l->lock);
    while (!t->done) pthread_cond_wait(&l->done, &l->lock);
    if (t->rc) snprintf(err, errlen, "%s", l->state);
    pthread_mutex_unlock(&l->lock);
    return t->rc;
}

int scorelog_sync(scorelog *l, char *err, size_t errlen) {
    scorelog_ticket t = {0};
    return enqueue(l, &t, err, errlen) ? -1 : scorelog_wait(l, &t, err, errlen);
}

int scorelog_memory(scorelog *l, scorelog_memop *ops) {
    char err[64];
    scorelog_ticket *t = calloc(1, sizeof *t);
    if (t) t->ops = ops;
    if (t && enqueue(l, t, err, sizeof err) == 0) return 0;
    free(t);
    scorelog_memop_free(ops);
    return -1;
}

void scorelog_memop_free(scorelog_memop *ops) {
    for (scorelog_memop *next; ops; ops = next) {
        next = ops->next;
        free(ops->data);
        free(ops->suspicion);
        free(ops);
    }
}

int64_t scorelog_memory_id(scorelog *l) {
    pthread_mutex_lock(&l->lock);
    int64_t id = l->next_memory++;
    pthread_mutex_unlock(&l->lock);
    return id;
}

/* Copy a text column (NULL reads as "") into out of size cap. */
static void column_text(sqlite3_stmt *st, int col, char *out, size_t cap) {
    const unsigned char *s = sqlite3_column_text(st, col);
    snprintf(out, cap, "%s", s ? (const char *)s : "");
}

/* The current row of a SELECT COLUMNS statement into r. */
static void read_record(sqlite3_stmt *st, api_score_record *r) {
    int i = FIXED_COLUMNS;
    memset(r, 0, sizeof *r);
    r->log_id = sqlite3_column_int64(st, 0);
    r->ts_ms = sqlite3_column_int64(st, 1);
    column_text(st, 2, r->model, sizeof r->model);
    column_text(st, 3, r->version, sizeof r->version);
    column_text(st, 4, r->id, sizeof r->id);
    column_text(st, 5, r->source, sizeof r->source);
    r->index = sqlite3_column_int(st, 6);
    r->threshold = column_REAL(st, 7);
    /* NULL (a field added after the row was logged, or unknown): NaN, not 0. */
#define READ(name, type, group, doc) r->r.name = column_##type(st, i++);
    DETECTOR_RESULT_FIELDS(READ)
#undef READ
}

/* Run a prepared read statement into at most cap records; *n rows. */
static int read_rows(scorelog *l, sqlite3_stmt *st, api_score_record *rec, int cap, int *n,
                     char *err, size_t errlen) {
    int rc = SQLITE_DONE;
    *n = 0;
    while (*n < cap && (rc = sqlite3_step(st)) == SQLITE_ROW) read_record(st, &rec[(*n)++]);
    if (*n < cap && rc != SQLITE_DONE) {
        db_error(l->rdb, "reading the log", err, errlen);
        return -1;
    }
    return 0;
}

int scorelog_get(scorelog *l, int64_t id, api_score_record *rec, char *err, size_t errlen) {
    sqlite3_stmt *st;
    int n = 0, rc = -1;
    pthread_mutex_lock(&l->rlock);
    if (sqlite3_prepare_v2(l->rdb, "SELECT " COLUMNS " FROM scores WHERE id = ?1", -1, &st,
                           NULL) != SQLITE_OK) {
        db_error(l->rdb, "reading the log", err, errlen);
    } else {
        sqlite3_bind_int64(st, 1, id);
        rc = read_rows(l, st, rec, 1, &n, err, errlen) ? -1 : n;
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&l->rlock);
    return rc;
}

int scorelog_page(scorelog *l, const api_scores_query *q, api_score_record *rec, int *n,
                  char *err, size_t errlen) {
    /* Only fixed fragments go into the SQL; every value is bound. With before_id the
     * newest rows below it are taken (id descending), then put back in id order. */
    char sql[768];
    snprintf(sql, sizeof sql, "%sSELECT " COLUMNS " FROM scores WHERE id > ?1%s%s%s%s "
             "ORDER BY id%s LIMIT ?4%s", q->before_id ? "SELECT * FROM (" : "",
             *q->model ? " AND model = ?2" : "", *q->source ? " AND source = ?3" : "",
             q->anomalies_only ? " AND is_anomaly = 1" : "", q->before_id ? " AND id < ?5" : "",
             q->before_id ? " DESC" : "", q->before_id ? ") ORDER BY id" : "");
    sqlite3_stmt *st;
    int rc = -1;
    pthread_mutex_lock(&l->rlock);
    if (sqlite3_prepare_v2(l->rdb, sql, -1, &st, NULL) != SQLITE_OK) {
        db_error(l->rdb, "reading the log", err, errlen);
    } else {
        sqlite3_bind_int64(st, 1, q->since_id);
        if (*q->model) sqlite3_bind_text(st, 2, q->model, -1, SQLITE_STATIC);
        if (*q->source) sqlite3_bind_text(st, 3, q->source, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 4, q->limit);
        if (q->before_id) sqlite3_bind_int64(st, 5, q->before_id);
        rc = read_rows(l, st, rec, q->limit, n, err, errlen);
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&l->rlock);
    return rc;
}

/* The models in the log, by name, into a new *out of *n entries. Caller holds rlock. */
static int list_models(scorelog *l, api_model_stats **out, int *n, char *err, size_t errlen) {
    sqlite3_stmt *st;
    int cap = 0, rc;
    *out = NULL;
    *n = 0;
    /* Model to next model through the index, a seek each: not a walk of every row. */
    static const char NAMES[] =
        "WITH RECURSIVE m(name) AS (SELECT min(model) FROM scores UNION ALL SELECT "
        "(SELECT min(model) FROM scores WHERE model > m.name) FROM m WHERE m.name IS NOT NULL) "
        "SELECT name FROM m WHERE name IS NOT NULL";
    if (sqlite3_prepare_v2(l->rdb, NAMES, -1, &st, NULL) != SQLITE_OK) {
        db_error(l->rdb, "reading the log", err, errlen);
        return -1;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            api_model_stats *more = realloc(*out, (size_t)(cap = cap ? 2 * cap : 8) * sizeof *more);
            if (!more) {
                snprintf(err, errlen, "out of memory");
                break;
            }
            *out = more;
        }
        memset(&(*out)[*n], 0, sizeof **out);
        column_text(st, 0, (*out)[*n].model, sizeof (*out)[*n].model);
        (*n)++;
    }
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) db_error(l->rdb, "reading the log", err, errlen);
    sqlite3_finalize(st);
    if (rc == SQLITE_DONE) return 0;
    free(*out);
    *out = NULL;
    return -1;
}

/* The statements of GET /v1/stats, each reading one index only. */
enum { STAT_COUNT, STAT_WINDOW_SCORES, STAT_ALL_SCORES, N_STAT_QUERIES };
static const char *const STAT_SQL[N_STAT_QUERIES] = {
    "SELECT count(*), total(is_anomaly) FROM scores INDEXED BY scores_by_model_time "
    "WHERE model = ?1 AND ts_ms >= ?2",
    /* a window's rows are few next to the log's: sorting them is cheap */
    "SELECT score FROM scores INDEXED BY scores_by_model_time WHERE model = ?1 AND "
    "ts_ms >= ?2 ORDER BY score",
    /* the whole log: already in score order in the index */
    "SELECT score FROM scores INDEXED BY scores_by_model_score WHERE model = ?1 ORDER BY score",
};

/* One model's window (since_ms 0: the whole log): its count and anomalies, then its
 * scores in order, walked up to the last rank a nearest-rank quantile needs. */
static int window_summary(sqlite3_stmt *const *st, const char *model, int64_t since_ms,
                          api_window_stats *w) {
    int rc;
    for (int q = 0; q < API_STATS_QUANTILES; q++) w->score[q] = NAN;
    sqlite3_stmt *count = st[STAT_COUNT];
    sqlite3_reset(count);
    sqlite3_bind_text(count, 1, model, -1, SQLITE_STATIC);
    sqlite3_bind_int64(count, 2, since_ms);
    if (sqlite3_step(count) != SQLITE_ROW) return -1;
    w->count = sqlite3_column_int64(count, 0);
    w->anomalies = (int64_t)sqlite3_column_double(count, 1);
    if (w->count == 0) return 0;
    int64_t rank[API_STATS_QUANTILES], last = 0;
    for (int q = 0; q < API_STATS_QUANTILES; q++) {
        rank[q] = (int64_t)ceil(API_STATS_QUANTILE[q] * (double)w->count);
        if (rank[q] < 1) rank[q] = 1;
        if (rank[q] > last) last = rank[q];
    }
    sqlite3_stmt *scores = st[since_ms ? STAT_WINDOW_SCORES : STAT_ALL_SCORES];
    sqlite3_reset(scores);
    sqlite3_bind_text(scores, 1, model, -1, SQLITE_STATIC);
    if (since_ms) sqlite3_bind_int64(scores, 2, since_ms);
    int64_t i = 0;
    rc = SQLITE_DONE;
    while (i < last && (rc = sqlite3_step(scores)) == SQLITE_ROW) {
        i++;
        for (int q = 0; q < API_STATS_QUANTILES; q++)
            if (i == rank[q]) w->score[q] = sqlite3_column_double(scores, 0);
    }
    sqlite3_reset(scores);       /* a walk stopped early must not hold its read snapshot */
    return i == last || rc == SQLITE_DONE ? 0 : -1;
}

int scorelog_summary(scorelog *l, int64_t now_ms, api_model_stats **out, int *n, char *err,
                     size_t errlen) {
    sqlite3_stmt *st[N_STAT_QUERIES] = {NULL};
    int rc = -1;
    pthread_mutex_lock(&l->rlock);
    /* One read transaction: the windows and the model list see the same rows. */
    if (exec(l->rdb, "BEGIN", err, errlen)) {
        pthread_mutex_unlock(&l->rlock);
        return -1;
    }
    if (list_models(l, out, n, err, errlen) == 0) {
        rc = 0;
        for (int q = 0; rc == 0 && q < N_STAT_QUERIES; q++)
            if (sqlite3_prepare_v2(l->rdb, STAT_SQL[q], -1, &st[q], NULL) != SQLITE_OK) rc = -1;
        for (int m = 0; rc == 0 && m < *n; m++)
            for (int w = 0; rc == 0 && w < API_STATS_WINDOWS; w++) {
                int64_t secs = API_STATS_WINDOW[w].seconds;
                rc = window_summary(st, (*out)[m].model, secs ? now_ms - secs * 1000 : 0,
                                    &(*out)[m].w[w]);
            }
        if (rc) {
            db_error(l->rdb, "summarising the log", err, errlen);
            free(*out);
            *out = NULL;
        }
        for (int q = 0; q < N_STAT_QUERIES; q++) sqlite3_finalize(st[q]);
    }
    sqlite3_exec(l->rdb, "COMMIT", NULL, NULL, NULL);
    pthread_mutex_unlock(&l->rlock);
    return rc;
}

int scorelog_healthy(scorelog *l, char *state, size_t statelen) {
    pthread_mutex_lock(&l->lock);
    int ok = l->healthy;
    snprintf(state, statelen, "%s", l->state);
    pthread_mutex_unlock(&l->lock);
    return ok;
}

void scorelog_retain(scorelog *l, int days, long long rows) {
    pthread_mutex_lock(&l->lock);
    l->keep_days = days;
    l->keep_rows = rows;
    l->next_trim_ns = clock_ns();
    pthread_cond_signal(&l->work);
    pthread_mutex_unlock(&l->lock);
}

long scorelog_queued(scorelog *l) {
    pthread_mutex_lock(&l->lock);
    long n = l->queued;
    pthread_mutex_unlock(&l->lock);
    return n;
}

void scorelog_stats(scorelog *l, uint64_t *rows, uint64_t *commits) {
    pthread_mutex_lock(&l->lock);
    *rows = l->rows;
    *commits = l->commits;
    pthread_mutex_unlock(&l->lock);
}

void scorelog_memories_free(scorelog_memory_record *r, int n) {
    for (int i = 0; r && i < n; i++) free(r[i].state);
    free(r);
}

int scorelog_memories(scorelog *l, const char *model, scorelog_memory_record **out, int *n,
                      char *err, size_t errlen) {
    static const char SQL[] =
        "SELECT id, version, source, max(last_use, coalesce((SELECT max(seq) FROM "
        "memory_journal WHERE memory = m.id), 0)) AS used, covered, state FROM memories m "
        "WHERE model = ?1 ORDER BY used, id";
    sqlite3_stmt *st;
    int cap = 0, rc = SQLITE_DONE;
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&l->rlock);
    if (sqlite3_prepare_v2(l->rdb, SQL, -1, &st, NULL) != SQLITE_OK) {
        db_error(l->rdb, "reading the memories", err, errlen);
        pthread_mutex_unlock(&l->rlock);
        return -1;
    }
    sqlite3_bind_text(st, 1, model, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            scorelog_memory_record *more = realloc(*out, (size_t)(cap = cap ? 2 * cap : 4) *
                                                             sizeof *more);
            if (!more) break;
            *out = more;
        }
        scorelog_memory_record *r = &(*out)[*n];
        memset(r, 0, sizeof *r);
        r->id = sqlite3_column_int64(st, 0);
        column_text(st, 1, r->version, sizeof r->version);
        r->has_source = sqlite3_column_type(st, 2) != SQLITE_NULL;
        column_text(st, 2, r->source, sizeof r->source);
        r->last_use = sqlite3_column_int64(st, 3);
        r->covered = sqlite3_column_int64(st, 4);
        const void *blob = sqlite3_column_blob(st, 5);
        r->state_len = (size_t)sqlite3_column_bytes(st, 5);
        if (blob && !(r->state = malloc(r->state_len))) break;
        if (blob) memcpy(r->state, blob, r->state_len);
        (*n)++;
    }
    if (rc != SQLITE_DONE) {
        if (rc == SQLITE_ROW) snprintf(err, errlen, "out of memory reading the memories");
        else db_error(l->rdb, "reading the memories", err, errlen);
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&l->rlock);
    if (rc == SQLITE_DONE) return 0;
    scorelog_memories_free(*out, *n);
    *out = NULL;
    *n = 0;
    return -1;
}

int scorelog_journal(scorelog *l, int64_t id, int64_t covered,
                     int (*fn)(void *ctx, const uint8_t *latent, size_t len, double suspicion),
                     void *ctx, char *err, size_t errlen) {
    sqlite3_stmt *st;
    int rc = SQLITE_DONE, stop = 0;
    pthread_mutex_lock(&l->rlock);
    if (sqlite3_prepare_v2(l->rdb, "SELECT latent, suspicion FROM memory_journal WHERE "
                           "memory = ?1 AND seq > ?2 ORDER BY seq", -1, &st, NULL) != SQLITE_OK) {
        db_error(l->rdb, "reading a memory's journal", err, errlen);
        pthread_mutex_unlock(&l->rlock);
        return -1;
    }
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, covered);
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW)
        stop = fn(ctx, sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0),
                  column_REAL(st, 1));
    if (!stop && rc != SQLITE_DONE) db_error(l->rdb, "reading a memory's journal", err, errlen);
    sqlite3_finalize(st);
    pthread_mutex_unlock(&l->rlock);
    return stop ? stop : rc == SQLITE_DONE ? 0 : -1;
}

int scorelog_sink(scorelog *l, const char *key, int64_t *shipped, char *err, size_t errlen) {
    char *copy = strdup(key);
    sqlite3_stmt *st;
    int rc = -1;
    *shipped = 0;
    if (!copy) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_lock(&l->rlock);
    if (sqlite3_prepare_v2(l->rdb, "SELECT log_id FROM sink_position WHERE sink = ?1", -1, &st,
                           NULL) != SQLITE_OK) {
        db_error(l->rdb, "reading the sink's position", err, errlen);
    } else {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW) *shipped = sqlite3_column_int64(st, 0);
        if (step == SQLITE_ROW || step == SQLITE_DONE) rc = 0;
        else db_error(l->rdb, "reading the sink's position", err, errlen);
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&l->rlock);
    if (rc) {
        free(copy);
        return -1;
    }
    pthread_mutex_lock(&l->lock);
    free(l->sink);
    l->sink = copy;
    l->shipped = l->saved = *shipped;
    pthread_mutex_unlock(&l->lock);
    return 0;
}

void scorelog_shipped(scorelog *l, int64_t id) {
    pthread_mutex_lock(&l->lock);
    if (l->shipped == l->saved) l->save_ns = clock_ns() + SAVE_DELAY_NS;
    if (id > l->shipped) l->shipped = id;
    pthread_cond_signal(&l->work);
    pthread_mutex_unlock(&l->lock);
}

int scorelog_wait_after(scorelog *l, int64_t id, long ms) {
    long long until = clock_ns() + ms * 1000000LL;
    struct timespec t = {(time_t)(until / 1000000000LL), (long)(until % 1000000000LL)};
    pthread_mutex_lock(&l->lock);
    while (l->last_id <= id && !l->stopping)
        if (pthread_cond_timedwait(&l->done, &l->lock, &t)) break;
    int more = l->last_id > id;
    pthread_mutex_unlock(&l->lock);
    return more;
}

int scorelog_backlog(scorelog *l, int64_t *rows, int64_t *oldest_ms) {
    pthread_mutex_lock(&l->lock);
    int64_t after = l->shipped;
    *rows = l->last_id > after ? l->last_id - after : 0;
    pthread_mutex_unlock(&l->lock);
    *oldest_ms = 0;
    if (!*rows) return 0;
    sqlite3_stmt *st;
    int rc = -1;
    pthread_mutex_lock(&l->rlock);
    if (sqlite3_prepare_v2(l->rdb, "SELECT ts_ms FROM scores WHERE id > ?1 ORDER BY id LIMIT 1",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, after);
        if (sqlite3_step(st) == SQLITE_ROW) {
            *oldest_ms = sqlite3_column_int64(st, 0);
            rc = 0;
        }
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&l->rlock);
    return rc;
}
