/* anodmd: the AnoDM scoring daemon. Settings (config.c) -> models (registry.c) -> metrics
 * (metrics.c) -> score log (log.c) -> its sink and the merged history in PostgreSQL, when
 * set (pgsink.c, pghistory.c) -> HTTP (http.c, routes.c); then tell systemd it is ready
 * (notify.c) and wait for signals, pinging the watchdog between them: SIGHUP reloads the
 * models, SIGTERM/SIGINT shut down in reverse order: stop accepting and drain requests,
 * stop the sink, then flush and close the log. SIGTERM first makes the daemon not ready
 * while it serves on for shutdown_delay_seconds, so that a balancer checking /readyz
 * (or Kubernetes removing the endpoint) stops sending before the port closes; SIGINT (an
 * operator's Ctrl-C), or a second signal during the delay, goes straight to the drain. */
#include <cblas.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blas.h"
#include "auth.h"
#include "clock.h"
#include "batch.h"
#include "config.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "payloadlog.h"
#include "pghistory.h"
#include "pgsink.h"
#include "registry.h"
#include "samples.h"
#include "signals.h"

#define MAX_FLAGS 128

static void usage(FILE *f) {
    fprintf(f,
        "usage: anodmd [options]\n"
        "  --config FILE            settings file (key = value; see etc/anodmd.conf)\n"
        "  --model [NAME=]PATH      a model bundle to serve (repeatable; the first is the\n"
        "                           default model; NAME defaults to the file's name)\n"
        "  --bind ADDR              IPv4 address to listen on (127.0.0.1)\n"
        "  --port N                 port (8080; 0 = any free port)\n"
        "  --db PATH                score log, SQLite (anodmd.db)\n"
        "  --retention-days N       delete log rows older than N days (0: keep)\n"
        "  --retention-rows N       keep at most N log rows, the newest (0: any number)\n"
        "  --threads N              HTTP polling threads (4)\n"
        "  --workers N              scoring threads (4)\n"
        "  --batch-threads N        threads a model's batches use (0: one per CPU)\n"
        "  --batch-window-us N      a score request waits this long to be batched (100)\n"
        "  --max-body-bytes N       request body limit (16777216)\n"
        "  --max-batch N            samples per request and per scorer call (256)\n"
        "  --max-connections N      open connections (256)\n"
        "  --timeout-seconds N      time a connection gets to send each request whole, to\n"
        "                           take each reply, and to idle between them (30)\n"
        "  --drain-seconds N        shutdown waits this long for requests in flight (10)\n"
        "  --shutdown-delay-seconds N  on SIGTERM, first answer /readyz 503 while still\n"
        "                           serving for N s, for balancers to take this replica\n"
        "                           out (0: drain at once; 5 behind a balancer)\n"
        "  --api-keys K1,K2         require Authorization: Bearer K on all but health probes\n"
        "  --api-keys-file FILE     the same, one key a line (keeps keys out of ps)\n"
        "  --dashboard on|off       serve the read-only dashboard at GET / (on)\n"
        "  --recent-samples N       keep the inputs of the last N scores in memory for\n"
        "                           GET /v1/scores/{id}/sample, the dashboard's sample\n"
        "                           view (1000; 0: none)\n"
        "  --answer-after-commit on|off  answer a score only once its log row is committed\n"
        "                           (on); off answers first, log_id null, the row follows\n"
        "  --memory-sources N       models with a stream memory keep one per source tag,\n"
        "                           at most N (least recently used forgotten first), so\n"
        "                           one source cannot move another's scores (0: one per\n"
        "                           model)\n"
        "  --memory-snapshot-every N  the stream memories are kept in the log across a\n"
        "                           restart: a snapshot of each after N kept samples, the\n"
        "                           samples in between replayed at start (1000)\n"
        "  --sink URL               ship the log's rows to PostgreSQL (postgresql://...),\n"
        "                           the merged history of every replica (docs/DEPLOY.md)\n"
        "  --history URL            GET /v1/scores, /v1/stats and the dashboard read the\n"
        "                           merged history at URL instead of this log\n"
        "  --replica-id NAME        this daemon in the merged history (the host name)\n"
        "  --payload-log-url URL    post each scored request and its answer as KServe's\n"
        "                           logger does (CloudEvents, binary mode) to an http://\n"
        "                           URL (docs/DEPLOY.md); https is not supported\n"
        "  --payload-log-mode M     all, request or response (all)\n"
        "  --payload-log-inference-service NAME, --payload-log-namespace NAME,\n"
        "  --payload-log-component NAME, --payload-log-endpoint NAME  the events' KServe\n"
        "                           attributes (anodmd, default, predictor, default)\n"
        "  --payload-log-queue N    events waiting for the sink at most; more are dropped\n"
        "                           and counted (1000)\n"
        "  --payload-log-queue-bytes N  and at most N bytes of them (33554432)\n"
        "  --check-config           load the settings and models, print them, exit\n"
        "Every setting is also ANODMD_<NAME> in the environment (ANODMD_PORT=9000);\n"
        "flags beat the environment, which beats the file. ANODMD_CONFIG names the file.\n");
}

/* A flag's setting name: the long option with '-' as '_'. */
static void setting_name(const char *flag, char *out, size_t cap) {
    size_t i = 0;
    for (; flag[i] && i + 1 < cap; i++) out[i] = flag[i] == '-' ? '_' : flag[i];
    out[i] = 0;
}

/* Settings from the command line, applied last. */
typedef struct {
    const char *key[MAX_FLAGS], *value[MAX_FLAGS];
    int n;
    const char *config_path;
    int check_only;
} flags;

static const struct option OPTIONS[] = {
    {"config", required_argument, 0, 'c'},       {"model", required_argument, 0, 's'},
    {"bind", required_argument, 0, 's'},         {"port", required_argument, 0, 's'},
    {"db", required_argument, 0, 's'},           {"threads", required_argument, 0, 's'},
    {"workers", required_argument, 0, 's'},      {"batch-window-us", required_argument, 0, 's'},
    {"batch-threads", required_argument, 0, 's'},
    {"retention-days", required_argument, 0, 's'}, {"retention-rows", required_argument, 0, 's'},
    {"max-body-bytes", required_argument, 0, 's'}, {"max-batch", required_argument, 0, 's'},
    {"max-connections", required_argument, 0, 's'},
    {"timeout-seconds", required_argument, 0, 's'},
    {"drain-seconds", required_argument, 0, 's'}, {"check-config", no_argument, 0, 'k'},
    {"shutdown-delay-seconds", required_argument, 0, 's'},
    {"api-keys", required_argument, 0, 's'},     {"api-keys-file", required_argument, 0, 's'},
    {"dashboard", required_argument, 0, 's'},    {"recent-samples", required_argument, 0, 's'},
    {"answer-after-commit", required_argument, 0, 's'},
    {"memory-sources", required_argument, 0, 's'},
    {"memory-snapshot-every", required_argument, 0, 's'},
    {"sink", required_argument, 0, 's'},         {"history", required_argument, 0, 's'},
    {"replica-id", required_argument, 0, 's'},
    {"payload-log-url", required_argument, 0, 's'}, {"payload-log-mode", required_argument, 0, 's'},
    {"payload-log-inference-service", required_argument, 0, 's'},
    {"payload-log-namespace", required_argument, 0, 's'},
    {"payload-log-component", required_argument, 0, 's'},
    {"payload-log-endpoint", required_argument, 0, 's'},
    {"payload-log-queue", required_argument, 0, 's'},
    {"payload-log-queue-bytes", required_argument, 0, 's'},
    {"help", no_argument, 0, 'h'},               {0, 0, 0, 0}};

/* Parse argv into f: 0, 1 for --help, or 2 for a usage error. */
static int parse_flags(int argc, char **argv, flags *f) {
    int ch, index;
    memset(f, 0, sizeof *f);
    f->config_path = getenv("ANODMD_CONFIG");
    while ((ch = getopt_long(argc, argv, "h", OPTIONS, &index)) != -1) {
        switch (ch) {
        case 'c': f->config_path = optarg; break;
        case 'k': f->check_only = 1; break;
        case 's':
            if (f->n == MAX_FLAGS) {
                fprintf(stderr, "anodmd: too many options\n");
                return 2;
            }
            f->key[f->n] = OPTIONS[index].name;
            f->value[f->n++] = optarg;
            break;
        case 'h': usage(stdout); return 1;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "anodmd: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    return 0;
}

/* Defaults, then the file, the environment and the flags. 0, or -1 with err. */
static int load_config(config *c, const flags *f, char *err, size_t errlen) {
    config_init(c);
    if (f->config_path && config_load_file(c, f->config_path, err, errlen)) return -1;
    if (config_load_env(c, err, errlen)) return -1;
    for (int i = 0; i < f->n; i++) {
        char key[64], where[80];
        setting_name(f->key[i], key, sizeof key);
        snprintf(where, sizeof where, "--%s", f->key[i]);
        if (config_set(c, SRC_FLAG, key, f->value[i], where, err, errlen)) return -1;
    }
    return 0;
}

/* batch_threads, 0 resolved: one per online CPU, within the scorer's limit. */
static int batch_threads(const config *c) {
    long n = c->batch_threads ? c->batch_threads : sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > SCORER_MAX_THREADS ? SCORER_MAX_THREADS : (int)n;
}

static void print_models(const model_set *set, FILE *out) {
    for (int i = 0; i < set->n; i++) {
        const model *m = &set->models[i];
        fprintf(out, "anodmd: model %s%s: %s, version %s, %zu inputs, %s mode, batches on %d "
                "threads at most (split or pipelined)\n", m->name,
                i ? "" : " (default)", m->path, m->version, m->dim,
                m->d.mode == PLACE_CONTEXT ? "context" : "single", scorer_threads(m->s));
    }
}

/* SIGHUP: load every bundle again; the old models keep serving if any fails. */
static void reload(registry *reg) {
    char err[1024];
    fprintf(stderr, "anodmd: SIGHUP: reloading models\n");
    if (registry_reload(reg, err, sizeof err)) {
        fprintf(stderr, "anodmd: reload failed, still serving the previous models: %s\n", err);
        return;
    }
    model_set *set = registry_acquire(reg);
    print_models(set, stderr);
    fprintf(stderr, "anodmd: reload done: model set %u\n", set->generation);
    registry_release(reg, set);
}

/* Wait for SIGTERM or SIGINT, reloading on SIGHUP and pinging the watchdog meanwhile, for
 * at most timeout_ms (-1: for ever): the signal, or 0 when the time ran out. */
static int wait_for_stop(registry *reg, long timeout_ms) {
    long ping_ms = notify_watchdog_ms();
    long long deadline_ns = clock_ns() + timeout_ms * 1000000LL;
    int sig;
    for (;;) {
        if (ping_ms) notify_send("WATCHDOG=1");
        long wait_ms = ping_ms ? ping_ms : -1;
        if (timeout_ms >= 0) {
            long left_ms = (long)((deadline_ns - clock_ns() + 999999) / 1000000);
            if (left_ms <= 0) return 0;
            if (wait_ms < 0 || left_ms < wait_ms) wait_ms = left_ms;
        }
        sig = signals_wait((int)wait_ms);
        if (sig == SIGTERM || sig == SIGINT) return sig;
        if (sig == SIGHUP) {
            notify_send("RELOADING=1");
            reload(reg);
            notify_send("READY=1");
        }
    }
}

/* Serve until SIGTERM or SIGINT; 0 on a clean shutdown. */
static int serve(const config *c, registry *reg, const auth_keys *keys) {
    char err[512];
    metrics *mt = metrics_create();
    scorelog *log = mt ? scorelog_open(c->db, mt, err, sizeof err) : NULL;
    if (!log) {
        fprintf(stderr, "anodmd: %s\n", mt ? err : "out of memory");
        metrics_free(mt);
        return 1;
    }
    app a = {.reg = reg, .log = log, .metrics = mt, .keys = keys, .max_batch = c->max_batch,
             .dashboard = c->dashboard, .recent_capacity = c->recent_samples,
             .answer_first = !c->answer_after_commit, .replica_id = c->replica_id};
    http_server *http = NULL;
    /* The sink first: retention must know from the start which rows it has not shipped. */
    if (*c->sink && !(a.sink = pgsink_start(c->sink, c->replica_id, log, mt, err, sizeof err)))
        goto failed;
    scorelog_retain(log, c->retention_days, (long long)c->retention_rows);
    registry_keep_memories(reg, log, c->memory_snapshot_every);
    if (*c->history && !(a.history = pghistory_open(c->history, err, sizeof err))) goto failed;
    if (*c->payload_log_url && !(a.plog = payload_log_start(c, mt, err, sizeof err))) goto failed;
    if (c->recent_samples && !(a.recent = samples_create(c->recent_samples)))
        snprintf(err, sizeof err, "out of memory");
    else a.batch = batch_start(c->workers, c->batch_window_us, mt, err, sizeof err);
    http = a.batch ? http_start(c, &a, err, sizeof err) : NULL;
failed:
    if (!http) {
        fprintf(stderr, "anodmd: %s\n", err);
        batch_free(a.batch);
        samples_free(a.recent);
        pghistory_close(a.history);
        payload_log_stop(a.plog);
        pgsink_stop(a.sink);
        scorelog_close(log);
        metrics_free(mt);
        return 1;
    }
    fprintf(stderr, "anodmd: log %s\n", c->db);
    char url[sizeof c->sink + 8];
    if (a.sink) config_redact_url(c->sink, url, sizeof url);
    if (a.sink) fprintf(stderr, "anodmd: sink %s as replica %s\n", url, c->replica_id);
    if (a.history) config_redact_url(c->history, url, sizeof url);
    if (a.history) fprintf(stderr, "anodmd: scores and stats read from the history at %s\n", url);
    if (a.plog) config_redact_url(c->payload_log_url, url, sizeof url);
    if (a.plog) fprintf(stderr, "anodmd: payload log (%s) to %s\n", c->payload_log_mode, url);
    if (c->dashboard)
        fprintf(stderr, "anodmd: dashboard at http://%s:%d/\n", c->bind, http_port(http));
    fprintf(stderr, "listening on %s:%d\n", c->bind, http_port(http));
    if (notify_send("READY=1")) perror("anodmd: sd_notify");
    int sig = wait_for_stop(reg, -1);
    notify_send("STOPPING=1");
    http_set_unready(http);
    if (sig == SIGTERM && c->shutdown_delay_seconds > 0) {
        fprintf(stderr, "anodmd: SIGTERM: not ready, serving on for %d s "
                "(shutdown_delay_seconds)\n", c->shutdown_delay_seconds);
        int again = wait_for_stop(reg, c->shutdown_delay_seconds * 1000L);
        if (again) {
            sig = again;
            fprintf(stderr, "anodmd: %s: the delay cut short\n",
                    sig == SIGINT ? "SIGINT" : "SIGTERM");
        }
    }
    fprintf(stderr, "anodmd: %s: draining requests\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    http_stop(http);             /* stops the batcher too, once its last request is answered */
    batch_free(a.batch);
    samples_free(a.recent);
    registry_flush_memories(reg);
    pghistory_close(a.history);
    payload_log_stop(a.plog);    /* after the last answer: its events are queued */
    pgsink_stop(a.sink);
    uint64_t rows, commits;
    scorelog_stats(log, &rows, &commits);
    scorelog_close(log);
    metrics_free(mt);
    fprintf(stderr, "anodmd: log closed: %llu rows in %llu transactions; bye\n",
            (unsigned long long)rows, (unsigned long long)commits);
    return 0;
}

int main(int argc, char **argv) {
    blas_select_kernels(argv);
    flags f;
    int rc = parse_flags(argc, argv, &f);
    if (rc) return rc == 1 ? 0 : rc;
    config c;
    registry reg;
    auth_keys keys;
    char err[1024];
    if (load_config(&c, &f, err, sizeof err) ||
        auth_load(&keys, c.api_keys, c.api_keys_file, err, sizeof err)) {
        fprintf(stderr, "anodmd: %s\n", err);
        config_free(&c);
        return 2;
    }
    /* Batches run in parallel on the scoring workers; each scores with one BLAS thread. */
    openblas_set_num_threads(1);
    if (registry_load(&reg, c.models, c.n_models, c.max_batch, batch_threads(&c),
                      c.memory_sources, err, sizeof err)) {
        fprintf(stderr, "anodmd: %s\n", err);
        auth_free(&keys);
        config_free(&c);
        return 1;
    }
    print_models(reg.current, stderr);
    fprintf(stderr, "anodmd: %d API key%s: %s\n", keys.n, keys.n == 1 ? "" : "s",
            keys.n ? "required except on the health probes" : "none, every route is open");
    if (f.check_only) {
        config_print(&c, stdout);
        printf("config ok: %d model%s\n", reg.current->n, reg.current->n == 1 ? "" : "s");
        rc = 0;
    } else if (signals_init() != 0) {
        perror("anodmd: signals");
        rc = 1;
    } else {
        rc = serve(&c, &reg, &keys);
    }
    registry_free(&reg);
    auth_free(&keys);
    config_free(&c);
    return rc;
}
