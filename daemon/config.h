/* config.h — anodmd's settings and where they come from.
 *
 * Every setting has one name used everywhere: `name = value` in the config file,
 * ANODMD_NAME in the environment, --name (with '_' written '-') on the command line.
 * Later sources win: defaults, then the file, then the environment, then flags. The
 * model list is the one setting that repeats; a source that names models replaces the
 * list an earlier source gave, so `--model` on the command line never silently adds to
 * the models of the file. Values are checked when they are set, so a bad value is
 * reported with where it came from (file:line, variable or flag); API keys are secrets,
 * so neither an error nor config_print ever shows one, and a PostgreSQL URL (sink,
 * history) may hold a password, so errors never show one and config_print hides its
 * password. */
#ifndef ANODMD_CONFIG_H
#define ANODMD_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#define CONFIG_MAX_MODELS 32
#define CONFIG_REPLICA_MAX 64        /* replica_id: characters, as a host name */

typedef enum { SRC_DEFAULT, SRC_FILE, SRC_ENV, SRC_FLAG } config_source;

typedef struct {
    char bind[64];               /* IPv4 address to listen on (127.0.0.1) */
    int port;                    /* 8080; 0 = any free port */
    char db[4096];               /* score log (anodmd.db) */
    int retention_days;          /* log rows older than this are deleted (0: kept) */
    size_t retention_rows;       /* at most this many log rows are kept (0: any) */
    int threads;                 /* HTTP polling threads (4) */
    int workers;                 /* scoring threads (4) */
    int batch_threads;           /* threads one batch is split across (0: one per CPU) */
    int batch_window_us;         /* how long a request waits for others to batch with (100) */
    char *models[CONFIG_MAX_MODELS];   /* "[NAME=]PATH", malloc'd */
    int n_models;
    config_source models_from;
    size_t max_body_bytes;       /* request body limit (16 MiB) */
    int max_batch;               /* samples per request and per scorer call (256) */
    int max_connections;         /* open connections (256) */
    int timeout_seconds;         /* to send a request, take a reply, or idle (30) */
    int drain_seconds;           /* how long shutdown waits for requests in flight (10) */
    int shutdown_delay_seconds;  /* on SIGTERM, not ready but serving this long first (0) */
    char *api_keys;              /* comma-separated Bearer keys, malloc'd; NULL: none */
    char api_keys_file[4096];    /* a file of keys, one per line; "": none */
    int dashboard;               /* serve the dashboard at GET / (1) */
    int recent_samples;          /* inputs of the last N scores held for the sample view (1000) */
    int answer_after_commit;     /* answer a score only once its row is committed (1) */
    int memory_sources;          /* stream memory: 0 one per model; N one per source, at most N (0) */
    int memory_snapshot_every;   /* a memory's keeps between its snapshots in the log (1000) */
    char sink[4096];             /* PostgreSQL URL the log's rows are shipped to; "": none */
    char history[4096];          /* PostgreSQL URL /v1/scores and /v1/stats read; "": the log */
    char replica_id[CONFIG_REPLICA_MAX + 1];   /* this daemon in the merged history (host name) */
    /* KServe-compatible payload logging (payloadlog.h): the sink's http:// URL ("": off),
     * which events (all, request, response), the KServe attributes that say where the
     * events come from, and how many events may wait for the sink. */
    char payload_log_url[2048];
    char payload_log_mode[16];
    char payload_log_inference_service[254];
    char payload_log_namespace[64];
    char payload_log_component[64];
    char payload_log_endpoint[64];
    int payload_log_queue;
    size_t payload_log_queue_bytes;
} config;

/* The defaults. */
void config_init(config *c);
void config_free(config *c);
/* Set one setting from source (where names it in messages). 0, or -1 with err. */
int config_set(config *c, config_source source, const char *key, const char *value,
               const char *where, char *err, size_t errlen);
/* Read `key = value` lines (# comments, blank lines) from path. 0, or -1 with err. */
int config_load_file(config *c, const char *path, char *err, size_t errlen);
/* Apply every ANODMD_<KEY> variable that is set. 0, or -1 with err. */
int config_load_env(config *c, char *err, size_t errlen);
/* Print the effective settings in the file's format. */
void config_print(const config *c, FILE *f);
/* A PostgreSQL URL with its password (in the user part, or a password parameter) shown
 * as ***, into out. */
void config_redact_url(const char *url, char *out, size_t cap);

#endif
