/* The merged score history read from PostgreSQL (see pghistory.h). */
#include "pghistory.h"
#include "clock.h"
#include "pgschema.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RETRY_NS 1000000000LL
/* Parameter types: int8, text and float8[]. Given explicitly, so a query may leave a
 * parameter unused (the page's filters). */
#define INT8OID 20
#define TEXTOID 25
#define FLOAT8ARRAYOID 1022

struct pghistory {
    char *url;
    pthread_mutex_t lock;        /* guards the three below */
    PGconn *conn;                /* NULL while disconnected */
    long long retry_ns;          /* after a failed connection: no new try before this */
    char last[256];              /* and its error */
};

pghistory *pghistory_open(const char *url, char *err, size_t errlen) {
    char target[1024];
    if (pg_target(url, target, sizeof target, err, errlen)) return NULL;
    pghistory *h = calloc(1, sizeof *h);
    if (!h || !(h->url = strdup(url))) {
        free(h);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&h->lock, NULL);
    return h;
}

void pghistory_close(pghistory *h) {
    if (!h) return;
    PQfinish(h->conn);
    pthread_mutex_destroy(&h->lock);
    free(h->url);
    free(h);
}

/* The connection, made (with the schema checked or created) when there is none; NULL
 * with err. Caller holds the lock. */
static PGconn *use(pghistory *h, char *err, size_t errlen) {
    if (h->conn) return h->conn;
    if (clock_ns() < h->retry_ns) {
        snprintf(err, errlen, "%s", h->last);
        return NULL;
    }
    h->conn = pg_connect(h->url, err, errlen);
    if (h->conn && pg_prepare_schema(h->conn, err, errlen)) {
        PQfinish(h->conn);
        h->conn = NULL;
    }
    if (!h->conn) {
        h->retry_ns = clock_ns() + RETRY_NS;
        snprintf(h->last, sizeof h->last, "%s", err);
    }
    return h->conn;
}

/* After a failed read: a broken connection is dropped, to be made again. 1 when the read
 * is worth trying once more at once: it ran on a connection made before it (had_conn)
 * that turned out broken, as every connection is after PostgreSQL restarts, or after a
 * proxy's idle timeout, and only a read finds out. Caller holds the lock. */
static int after_failure(pghistory *h, int had_conn) {
    if (h->conn && PQstatus(h->conn) != CONNECTION_OK) {
        PQfinish(h->conn);
        h->conn = NULL;
        return had_conn;
    }
    return 0;
}

/* Run a read (params of the given types, text results). The result, or NULL with err. */
static PGresult *query(PGconn *c, const char *sql, int n, const Oid *types,
                       const char *const *values, char *err, size_t errlen) {
    PGresult *r = PQexecParams(c, sql, n, types, values, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK) return r;
    pg_check(c, r, PGRES_TUPLES_OK, "reading the history", err, errlen);
    return NULL;
}

/* Run sql and read at most cap records into rec; *n rows. 0, or -1 with err. */
static int read_rows(pghistory *h, const char *sql, int n_params, const Oid *types,
                     const char *const *values, api_score_record *rec, int cap, int *n,
                     char *err, size_t errlen) {
    pthread_mutex_lock(&h->lock);
    PGresult *r = NULL;
    for (int again = 1; again;) {
        int had_conn = h->conn != NULL;
        PGconn *c = use(h, err, errlen);
        r = c ? query(c, sql, n_params, types, values, err, errlen) : NULL;
        again = !r && after_failure(h, had_conn);
    }
    *n = 0;
    for (int i = 0; r && i < PQntuples(r) && i < cap; i++) pg_read_record(r, i, &rec[(*n)++]);
    pthread_mutex_unlock(&h->lock);
    PQclear(r);
    return r ? 0 : -1;
}

int pghistory_get(pghistory *h, int64_t id, api_score_record *rec, char *err, size_t errlen) {
    char id_text[24];
    snprintf(id_text, sizeof id_text, "%lld", (long long)id);
    const char *values[1] = {id_text};
    const Oid types[1] = {INT8OID};
    int n;
    if (read_rows(h, "SELECT " PG_COLUMNS " FROM anodm_scores WHERE log_id = $1", 1, types,
                  values, rec, 1, &n, err, errlen))
        return -1;
    return n;
}

int pghistory_page(pghistory *h, const api_scores_query *q, api_score_record *rec, int *n,
                   char *err, size_t errlen) {
    /* As scorelog_page: fixed fragments only, every value a parameter. */
    char sql[768], since[24], limit[24], before[24];
    snprintf(sql, sizeof sql, "%sSELECT " PG_COLUMNS " FROM anodm_scores WHERE log_id > $1%s%s"
             "%s%s ORDER BY log_id%s LIMIT $4%s", q->before_id ? "SELECT * FROM (" : "",
             *q->model ? " AND model = $2" : "", *q->source ? " AND source = $3" : "",
             q->anomalies_only ? " AND is_anomaly" : "", q->before_id ? " AND log_id < $5" : "",
             q->before_id ? " DESC" : "", q->before_id ? ") p ORDER BY log_id" : "");
    snprintf(since, sizeof since, "%lld", (long long)q->since_id);
    snprintf(limit, sizeof limit, "%d", q->limit);
    snprintf(before, sizeof before, "%lld", (long long)q->before_id);
    const char *values[5] = {since, q->model, q->source, limit, before};
    const Oid types[5] = {INT8OID, TEXTOID, TEXTOID, INT8OID, INT8OID};
    return read_rows(h, sql, 5, types, values, rec, q->limit, n, err, errlen);
}

/* The models in the history, by name (model to next model through the index, a seek
 * each), into a new *out of *n entries. 0, or -1 with err. */
static int list_models(PGconn *c, api_model_stats **out, int *n, char *err, size_t errlen) {
    PGresult *r = query(c, "WITH RECURSIVE m(name) AS (SELECT min(model) FROM anodm_scores "
                        "UNION ALL SELECT (SELECT min(model) FROM anodm_scores WHERE model > "
                        "m.name) FROM m WHERE m.name IS NOT NULL) SELECT name FROM m WHERE "
                        "name IS NOT NULL", 0, NULL, NULL, err, errlen);
    if (!r) return -1;
    *n = PQntuples(r);
    *out = calloc(*n ? (size_t)*n : 1, sizeof **out);
    for (int i = 0; *out && i < *n; i++)
        snprintf((*out)[i].model, sizeof (*out)[i].model, "%s", PQgetvalue(r, i, 0));
    PQclear(r);
    if (*out) return 0;
    snprintf(err, errlen, "out of memory");
    return -1;
}

/* One model's window (since_ms 0: the whole history), as the log's window_summary: its
 * count and anomalies, and nearest-rank score quantiles. A window's scores are sorted by
 * percentile_disc (which takes rank ceil(q * count), as the log does); the whole
 * history's are read at their ranks from the (model, score) index. 0, or -1 with err. */
static int window_summary(PGconn *c, const char *model, int64_t since_ms, api_window_stats *w,
                          char *err, size_t errlen) {
    char since[24], qs[128] = "{", sql[512] = "SELECT c, a";
    snprintf(since, sizeof since, "%lld", (long long)since_ms);
    for (int q = 0; q < API_STATS_QUANTILES; q++) {
        w->score[q] = NAN;
        snprintf(qs + strlen(qs), sizeof qs - strlen(qs), "%s%.17g", q ? "," : "",
                 API_STATS_QUANTILE[q]);
        snprintf(sql + strlen(sql), sizeof sql - strlen(sql), ", q[%d]", q + 1);
    }
    snprintf(qs + strlen(qs), sizeof qs - strlen(qs), "}");
    snprintf(sql + strlen(sql), sizeof sql - strlen(sql), " FROM (SELECT count(*) c, count(*) "
             "FILTER (WHERE is_anomaly) a, %s q FROM anodm_scores WHERE model = $1 AND ts_ms "
             ">= $2) s", since_ms ? "percentile_disc($3) WITHIN GROUP (ORDER BY score)"
                                  : "NULL::float8[]");
    const char *values[3] = {model, since, qs};
    const Oid types[3] = {TEXTOID, INT8OID, FLOAT8ARRAYOID};
    PGresult *r = query(c, sql, 3, types, values, err, errlen);
    if (!r) return -1;
    w->count = atoll(PQgetvalue(r, 0, 0));
    w->anomalies = atoll(PQgetvalue(r, 0, 1));
    for (int q = 0; q < API_STATS_QUANTILES; q++)
        if (!PQgetisnull(r, 0, 2 + q)) w->score[q] = strtod(PQgetvalue(r, 0, 2 + q), NULL);
    PQclear(r);
    for (int q = 0; !since_ms && w->count && q < API_STATS_QUANTILES; q++) {
        int64_t rank = (int64_t)ceil(API_STATS_QUANTILE[q] * (double)w->count);
        char offset[24];
        snprintf(offset, sizeof offset, "%lld", (long long)(rank < 1 ? 0 : rank - 1));
        const char *at[2] = {model, offset};
        const Oid at_types[2] = {TEXTOID, INT8OID};
        if (!(r = query(c, "SELECT score FROM anodm_scores WHERE model = $1 ORDER BY score "
                        "OFFSET $2 LIMIT 1", 2, at_types, at, err, errlen)))
            return -1;
        if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
            w->score[q] = strtod(PQgetvalue(r, 0, 0), NULL);
        PQclear(r);
    }
    return 0;
}

int pghistory_summary(pghistory *h, int64_t now_ms, api_model_stats **out, int *n, char *err,
                      size_t errlen) {
    pthread_mutex_lock(&h->lock);
    int rc = -1;
    for (int again = 1; again;) {
        *out = NULL;
        *n = 0;
        int had_conn = h->conn != NULL;
        PGconn *c = use(h, err, errlen);
        /* One snapshot: the windows and the model list see the same rows. */
        rc = c ? pg_check(c, PQexec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"),
                          PGRES_COMMAND_OK, "reading the history", err, errlen)
               : -1;
        if (rc == 0) rc = list_models(c, out, n, err, errlen);
        for (int m = 0; rc == 0 && m < *n; m++)
            for (int w = 0; rc == 0 && w < API_STATS_WINDOWS; w++) {
                int64_t secs = API_STATS_WINDOW[w].seconds;
                rc = window_summary(c, (*out)[m].model, secs ? now_ms - secs * 1000 : 0,
                                    &(*out)[m].w[w], err, errlen);
            }
        if (c) PQclear(PQexec(c, rc ? "ROLLBACK" : "COMMIT"));
        if (rc) {
            free(*out);
            *out = NULL;
            *n = 0;
        }
        again = rc && after_failure(h, had_conn);
    }
    pthread_mutex_unlock(&h->lock);
    return rc;
}
