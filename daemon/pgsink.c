/* The sink: the log's rows shipped to PostgreSQL by a thread of their own (see pgsink.h). */
#include "pgsink.h"
#include "clock.h"
#include "pgschema.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)
/* Rows per transaction: one statement of arrays (below), a few hundred kB of text. */
#define SHIP_BATCH 500
#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 8000
/* Waiting for new rows, the thread looks whether it is to stop this often. */
#define IDLE_WAIT_MS 200

/* One batch is one INSERT of arrays, a column each (unnest makes them rows), so the
 * statement is prepared once per connection whatever the batch's size. Parameter 1 is
 * the replica id; then the log's columns, then detector.h's fields. */
#define ONE(name, type, group, doc) +1
enum { N_FIXED = 8, N_COLUMNS = N_FIXED DETECTOR_RESULT_FIELDS(ONE), N_PARAMS = 1 + N_COLUMNS };
#undef ONE
static const char INSERT_HEAD[] =
    "INSERT INTO anodm_scores (replica_id, local_id, ts_ms, model, version, request_id, "
    "source, idx, threshold" DETECTOR_RESULT_FIELDS(PG_FIELD_NAME) ") SELECT $1, * FROM "
    "unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], "
    "$8::integer[], $9::double precision[]";
static const char *const FIELD_ARRAY[] = {
#define ARRAY(name, type, group, doc) PG_TYPE_##type "[]",
    DETECTOR_RESULT_FIELDS(ARRAY)
#undef ARRAY
};
static const char LOCK_INSERT[] = "BEGIN; SELECT pg_advisory_xact_lock(" STRINGIFY(PG_LOCK_CLASS)
                                  ", " STRINGIFY(PG_LOCK_INSERT) ")";

struct pgsink {
    char *url, *replica, *target;
    scorelog *log;
    metrics *metrics;
    api_score_record *rec;       /* the batch being shipped */
    PGconn *conn;                /* the thread's; NULL while disconnected */
    int64_t position;            /* the thread's: the last id PostgreSQL confirmed */
    pthread_mutex_t lock;        /* guards the four below */
    pthread_cond_t wake;
    int stopping, up;
    char state[512];             /* the last failure said on stderr; "" since a success */
    pthread_t thread;
};

/* ------------------------------------------------------------------ a batch as arrays */

/* One array element of each type, in PostgreSQL's array literal syntax: NULL for a NaN
 * (as the log stores it) and for an empty request id or source. */
static void put_int(FILE *f, long long v) { fprintf(f, "%lld", v); }
static void put_REAL(FILE *f, double v) {
    if (isnan(v)) fputs("NULL", f);
    else if (isinf(v)) fputs(v > 0 ? "Infinity" : "-Infinity", f);
    else fprintf(f, "%.17g", v);
}
static void put_FLAG(FILE *f, int v) { fputs(v ? "t" : "f", f); }
static void put_INDEX(FILE *f, int32_t v) { fprintf(f, "%d", (int)v); }
static void put_text(FILE *f, const char *s) {
    if (!*s) {
        fputs("NULL", f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

/* The n records as N_COLUMNS array literals, text[c] each (malloc'd; free them). 0, or -1
 * when out of memory (nothing to free then). */
static int encode(const api_score_record *rec, int n, char **text) {
    FILE *f[N_COLUMNS];
    size_t len[N_COLUMNS];
    int ok = 1, c;
    for (c = 0; c < N_COLUMNS; c++) {
        text[c] = NULL;
        if (!(f[c] = open_memstream(&text[c], &len[c]))) break;
    }
    if (c < N_COLUMNS) {
        while (c--) {
            fclose(f[c]);
            free(text[c]);
        }
        return -1;
    }
    for (int i = 0; i < n; i++) {
        const api_score_record *r = &rec[i];
        for (c = 0; c < N_COLUMNS; c++) fputc(i ? ',' : '{', f[c]);
        c = 0;
        put_int(f[c++], r->log_id);
        put_int(f[c++], r->ts_ms);
        put_text(f[c++], r->model);
        put_text(f[c++], r->version);
        put_text(f[c++], r->id);
        put_text(f[c++], r->source);
        put_INDEX(f[c++], r->index);
        put_REAL(f[c++], r->threshold);
#define PUT(name, type, group, doc) put_##type(f[c++], r->r.name);
        DETECTOR_RESULT_FIELDS(PUT)
#undef PUT
    }
    for (c = 0; c < N_COLUMNS; c++) {
        fputc('}', f[c]);
        ok &= !ferror(f[c]);
        ok &= fclose(f[c]) == 0;
    }
    if (ok) return 0;
    for (c = 0; c < N_COLUMNS; c++) free(text[c]);
    return -1;
}

/* ------------------------------------------------------------------ PostgreSQL */

/* Prepare the insert on the connection. 0, or -1 with err. */
static int prepare_insert(PGconn *c, char *err, size_t errlen) {
    char *sql = NULL;
    size_t len;
    FILE *f = open_memstream(&sql, &len);
    if (!f) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    fputs(INSERT_HEAD, f);
    for (int i = 0; i < N_COLUMNS - N_FIXED; i++) fprintf(f, ", $%d::%s", 2 + N_FIXED + i,
                                                          FIELD_ARRAY[i]);
    fputs(") ON CONFLICT (replica_id, local_id) DO NOTHING", f);
    if (ferror(f) | fclose(f)) {
        free(sql);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = pg_check(c, PQprepare(c, "anodm_insert", sql, N_PARAMS, NULL), PGRES_COMMAND_OK,
                      "preparing the insert", err, errlen);
    free(sql);
    return rc;
}

/* The history's newest row of this replica is one this log wrote (pgsink.h): found here
 * with its time, or gone to retention with the log past it. 0, or -1 with err. */
static int check_own_rows(pgsink *s, char *err, size_t errlen) {
    const char *replica[1] = {s->replica};
    PGresult *r = PQexecParams(s->conn, "SELECT local_id, ts_ms FROM anodm_scores WHERE "
                               "replica_id = $1 ORDER BY local_id DESC LIMIT 1", 1, NULL,
                               replica, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) == 0)
        return pg_check(s->conn, r, PGRES_TUPLES_OK, "reading the history", err, errlen);
    long long id = atoll(PQgetvalue(r, 0, 0)), ts = atoll(PQgetvalue(r, 0, 1));
    PQclear(r);
    api_score_record rec;
    int n, found = scorelog_get(s->log, id, &rec, err, errlen);
    if (found < 0) return -1;
    if (found && rec.ts_ms == ts) return 0;
    api_scores_query after = {.since_id = id, .limit = 1};
    if (!found && scorelog_page(s->log, &after, &rec, &n, err, errlen)) return -1;
    if (!found && n == 1) return 0;
    snprintf(err, errlen, "the history holds rows of replica '%s' up to local id %lld that "
             "this log did not write (a new log under the replica_id of another? give it "
             "its own)", s->replica, id);
    return -1;
}

/* Connect, prepare the schema and the insert, and check the history's rows of this
 * replica. 0, or -1 with err (disconnected). */
static int connect_sink(pgsink *s, char *err, size_t errlen) {
    if (!(s->conn = pg_connect(s->url, err, errlen))) return -1;
    if (pg_prepare_schema(s->conn, err, errlen) == 0 && prepare_insert(s->conn, err, errlen) == 0 &&
        check_own_rows(s, err, errlen) == 0)
        return 0;
    PQfinish(s->conn);
    s->conn = NULL;
    return -1;
}

/* Insert rec's n rows in one transaction holding the insert lock (pgschema.h): 0 once
 * PostgreSQL confirmed the commit, *inserted the rows it did not hold already; or -1
 * with err, the batch then in doubt (sent again, which is safe). */
static int ship(pgsink *s, const api_score_record *rec, int n, long long *inserted, char *err,
                size_t errlen) {
    char *text[N_COLUMNS];
    const char *values[N_PARAMS];
    if (encode(rec, n, text)) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    values[0] = s->replica;
    for (int c = 0; c < N_COLUMNS; c++) values[1 + c] = text[c];
    int rc = pg_check(s->conn, PQexec(s->conn, LOCK_INSERT), PGRES_TUPLES_OK,
                      "locking the history", err, errlen);
    if (rc == 0) {
        PGresult *r = PQexecPrepared(s->conn, "anodm_insert", N_PARAMS, values, NULL, NULL, 0);
        *inserted = PQresultStatus(r) == PGRES_COMMAND_OK ? atoll(PQcmdTuples(r)) : 0;
        rc = pg_check(s->conn, r, PGRES_COMMAND_OK, "inserting rows", err, errlen);
    }
    if (rc == 0) {
        /* A COMMIT of a failed transaction answers ROLLBACK with the same status. */
        PGresult *r = PQexec(s->conn, "COMMIT");
        int committed = PQresultStatus(r) == PGRES_COMMAND_OK && !strcmp(PQcmdStatus(r), "COMMIT");
        rc = pg_check(s->conn, r, PGRES_COMMAND_OK, "committing rows", err, errlen);
        if (rc == 0 && !committed) {
            snprintf(err, errlen, "committing rows: rolled back");
            rc = -1;
        }
    }
    for (int c = 0; c < N_COLUMNS; c++) free(text[c]);
    return rc;
}

/* ------------------------------------------------------------------ the thread */

static int stopping(pgsink *s) {
    pthread_mutex_lock(&s->lock);
    int stop = s->stopping;
    pthread_mutex_unlock(&s->lock);
    return stop;
}

/* Sleep ms, or until told to stop. */
static void pause_ms(pgsink *s, long ms) {
    long long until = clock_ns() + ms * 1000000LL;
    struct timespec t = {(time_t)(until / 1000000000LL), (long)(until % 1000000000LL)};
    pthread_mutex_lock(&s->lock);
    while (!s->stopping)
        if (pthread_cond_timedwait(&s->wake, &s->lock, &t)) break;
    pthread_mutex_unlock(&s->lock);
}

/* A failure (a connection or a batch): counted, disconnected, and said on stderr when
 * it is news, not at every retry (PostgreSQL down for an hour would flood the journal). */
static void failed(pgsink *s, const char *err) {
    PQfinish(s->conn);
    s->conn = NULL;
    metrics_sink(s->metrics, 0, 0, 0);
    pthread_mutex_lock(&s->lock);
    if (strcmp(s->state, err))
        fprintf(stderr, "anodmd: sink: %s (rows wait in the log; retrying)\n", err);
    snprintf(s->state, sizeof s->state, "%s", err);
    s->up = 0;
    pthread_mutex_unlock(&s->lock);
}

static void *ship_main(void *arg) {
    pgsink *s = arg;
    long backoff = BACKOFF_MIN_MS;
    while (!stopping(s)) {
        char err[512] = "";
        int n = 0;
        long long inserted = 0;
        api_scores_query q = {.since_id = s->position, .limit = SHIP_BATCH};
        if (!s->conn && connect_sink(s, err, sizeof err) == 0) {
            pthread_mutex_lock(&s->lock);
            fprintf(stderr, "anodmd: sink: connected to PostgreSQL (%s) as replica %s, "
                    "shipping from log id %lld\n", s->target, s->replica,
                    (long long)s->position + 1);
            s->state[0] = 0;
            s->up = 1;
            pthread_mutex_unlock(&s->lock);
        }
        if (s->conn && scorelog_page(s->log, &q, s->rec, &n, err, sizeof err) == 0 && n == 0) {
            scorelog_wait_after(s->log, s->position, IDLE_WAIT_MS);
            continue;
        }
        if (s->conn && !*err && ship(s, s->rec, n, &inserted, err, sizeof err) == 0) {
            s->position = s->rec[n - 1].log_id;
            scorelog_shipped(s->log, s->position);
            metrics_sink(s->metrics, (uint64_t)inserted, (uint64_t)(n - inserted), 1);
            backoff = BACKOFF_MIN_MS;
            continue;
        }
        failed(s, err);
        pause_ms(s, backoff);
        backoff = backoff * 2 < BACKOFF_MAX_MS ? backoff * 2 : BACKOFF_MAX_MS;
    }
    PQfinish(s->conn);
    s->conn = NULL;
    return NULL;
}

/* ------------------------------------------------------------------ start, stop, gauges */

static void sink_free(pgsink *s) {
    free(s->url);
    free(s->replica);
    free(s->target);
    free(s->rec);
    free(s);
}

pgsink *pgsink_start(const char *url, const char *replica_id, scorelog *log, metrics *m,
                     char *err, size_t errlen) {
    char target[1024];
    if (pg_target(url, target, sizeof target, err, errlen)) return NULL;
    pgsink *s = calloc(1, sizeof *s);
    if (!s || !(s->url = strdup(url)) || !(s->replica = strdup(replica_id)) ||
        !(s->target = strdup(target)) || !(s->rec = malloc(SHIP_BATCH * sizeof *s->rec))) {
        snprintf(err, errlen, "out of memory");
        if (s) sink_free(s);
        return NULL;
    }
    s->log = log;
    s->metrics = m;
    if (scorelog_sink(log, target, &s->position, err, errlen)) {
        sink_free(s);
        return NULL;
    }
    metrics_sink(m, 0, 0, 1);    /* the counters at 0 from the start */
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->wake, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&s->thread, NULL, ship_main, s) == 0) return s;
    snprintf(err, errlen, "cannot start the sink's thread");
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->lock);
    sink_free(s);
    return NULL;
}

void pgsink_stop(pgsink *s) {
    if (!s) return;
    pthread_mutex_lock(&s->lock);
    s->stopping = 1;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->lock);
    sink_free(s);
}

void pgsink_gauges(pgsink *s, metrics_gauges *g) {
    int64_t rows, oldest_ms;
    pthread_mutex_lock(&s->lock);
    g->sink = 1;
    g->sink_up = s->up;
    pthread_mutex_unlock(&s->lock);
    scorelog_backlog(s->log, &rows, &oldest_ms);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    g->sink_backlog = rows;
    g->sink_oldest_seconds = oldest_ms && now_ms > oldest_ms ? (double)(now_ms - oldest_ms) / 1e3
                                                             : 0;
}
