/* anodmd's settings: defaults, config file, environment, flags (see config.h). */
#include "config.h"
#include "cloudevent.h"
#include "scorer.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef enum { KIND_TEXT, KIND_INT, KIND_SIZE, KIND_SWITCH } setting_kind;

static int valid_ipv4(const char *s) {
    struct in_addr a;
    return inet_pton(AF_INET, s, &a) == 1;
}

/* A PostgreSQL connection URI (libpq checks the rest when it connects), or "" for none. */
static int valid_url(const char *s) {
    return !*s || !strncmp(s, "postgresql://", 13) || !strncmp(s, "postgres://", 11);
}

/* A replica id: 1..CONFIG_REPLICA_MAX characters of a host name or pod name. */
static int valid_replica(const char *s) {
    size_t n = strlen(s);
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("._-", *p)) return 0;
    return n >= 1 && n <= CONFIG_REPLICA_MAX;
}

/* The payload log's sink, an http:// URL (cloudevent.h), or "" for none. */
static int valid_http_url(const char *s) {
    http_url u;
    char err[256];
    return !*s || http_url_parse(s, &u, err, sizeof err) == 0;
}

static int valid_log_mode(const char *s) {
    return !strcmp(s, "all") || !strcmp(s, "request") || !strcmp(s, "response");
}

#define NUM(name, kind, min, max) #name, kind, offsetof(config, name), 0, min, max, NULL, NULL
#define TEXT(name, check, want) \
    #name, KIND_TEXT, offsetof(config, name), sizeof((config *)0)->name, 0, 0, check, want

/* The settings other than "model": name, type, place in config, bounds; a text setting's
 * check (NULL: any value but "") and what it wants, for the message. */
static const struct setting {
    const char *key;
    setting_kind kind;
    size_t offset, cap;          /* cap: a text setting's buffer size */
    long long min, max;
    int (*valid)(const char *);
    const char *want;
} SETTINGS[] = {
    {TEXT(bind, valid_ipv4, "an IPv4 address")},
    {NUM(port, KIND_INT, 0, 65535)},
    {TEXT(db, NULL, "a path")},
    {NUM(retention_days, KIND_INT, 0, 36500)},
    {NUM(retention_rows, KIND_SIZE, 0, 1LL << 40)},
    {NUM(threads, KIND_INT, 1, 256)},
    {NUM(workers, KIND_INT, 1, 256)},
    {NUM(batch_threads, KIND_INT, 0, SCORER_MAX_THREADS)},
    {NUM(batch_window_us, KIND_INT, 0, 1000000)},
    {NUM(max_body_bytes, KIND_SIZE, 1024, 1LL << 30)},
    {NUM(max_batch, KIND_INT, 1, 65536)},
    {NUM(max_connections, KIND_INT, 1, 65536)},
    {NUM(timeout_seconds, KIND_INT, 1, 86400)},
    {NUM(drain_seconds, KIND_INT, 0, 3600)},
    {NUM(shutdown_delay_seconds, KIND_INT, 0, 3600)},
    {TEXT(api_keys_file, NULL, "a path")},
    {NUM(dashboard, KIND_SWITCH, 0, 1)},
    {NUM(recent_samples, KIND_INT, 0, 100000)},
    {NUM(answer_after_commit, KIND_SWITCH, 0, 1)},
    {NUM(memory_sources, KIND_INT, 0, 65536)},
    {NUM(memory_snapshot_every, KIND_INT, 1, 1000000)},
    {TEXT(sink, valid_url, "a postgresql:// URL (or nothing)")},
    {TEXT(history, valid_url, "a postgresql:// URL (or nothing)")},
    {TEXT(replica_id, valid_replica, "1 to 64 letters, digits, '.', '_' or '-'")},
    {TEXT(payload_log_url, valid_http_url, "an http://host[:port][/path] URL (or nothing)")},
    {TEXT(payload_log_mode, valid_log_mode, "all, request or response")},
    {TEXT(payload_log_inference_service, NULL, "a name")},
    {TEXT(payload_log_namespace, NULL, "a name")},
    {TEXT(payload_log_component, NULL, "a name")},
    {TEXT(payload_log_endpoint, NULL, "a name")},
    {NUM(payload_log_queue, KIND_INT, 1, 1000000)},
    {NUM(payload_log_queue_bytes, KIND_SIZE, 4096, 1LL << 34)},
};
#define N_SETTINGS (sizeof SETTINGS / sizeof SETTINGS[0])

void config_init(config *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->bind, sizeof c->bind, "127.0.0.1");
    c->port = 8080;
    snprintf(c->db, sizeof c->db, "anodmd.db");
    c->threads = 4;
    c->workers = 4;
    c->batch_window_us = 100;
    c->max_body_bytes = (size_t)16 << 20;
    c->max_batch = 256;
    c->max_connections = 256;
    c->timeout_seconds = 30;
    c->drain_seconds = 10;
    /* Long enough for a balancer's health checks or a Kubernetes endpoint removal to take
     * the replica out before its port closes (docs/DEPLOY.md, "Shutdown"). */
    c->shutdown_delay_seconds = 0;
    c->dashboard = 1;
    c->recent_samples = 1000;
    c->answer_after_commit = 1;
    c->memory_snapshot_every = 1000;
    /* KServe's values for a predictor on its default endpoint; the service and its
     * namespace are the deployment's to say. */
    snprintf(c->payload_log_mode, sizeof c->payload_log_mode, "all");
    snprintf(c->payload_log_inference_service, sizeof c->payload_log_inference_service, "anodmd");
    snprintf(c->payload_log_namespace, sizeof c->payload_log_namespace, "default");
    snprintf(c->payload_log_component, sizeof c->payload_log_component, "predictor");
    snprintf(c->payload_log_endpoint, sizeof c->payload_log_endpoint, "default");
    c->payload_log_queue = 1000;
    c->payload_log_queue_bytes = (size_t)32 << 20;
    /* The host name: under a StatefulSet, the pod's name, which stays with its volume. */
    if (gethostname(c->replica_id, sizeof c->replica_id) || !valid_replica(c->replica_id))
        snprintf(c->replica_id, sizeof c->replica_id, "anodmd");
}

static void clear_models(config *c) {
    for (int i = 0; i < c->n_models; i++) free(c->models[i]);
    c->n_models = 0;
}

void config_free(config *c) {
    clear_models(c);
    free(c->api_keys);
    c->api_keys = NULL;
}

/* The api_keys setting: kept whole (auth.c checks each key) and never echoed. */
static int set_api_keys(config *c, const char *value, char *err, size_t errlen) {
    char *keys = strdup(value);
    if (!keys) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    free(c->api_keys);
    c->api_keys = keys;
    return 0;
}

/* Append a model spec; the first model a source gives replaces an earlier source's. */
static int add_model(config *c, config_source source, const char *spec, const char *where,
                     char *err, size_t errlen) {
    if (c->models_from != source) clear_models(c);
    c->models_from = source;
    if (!*spec || c->n_models == CONFIG_MAX_MODELS) {
        snprintf(err, errlen, "%s: %s", where, *spec ? "too many models" : "empty model");
        return -1;
    }
    if (!(c->models[c->n_models] = strdup(spec))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->n_models++;
    return 0;
}

/* on/off (also true/false, yes/no, 1/0) as 1 or 0; -1 if none of them. */
static int parse_switch(const char *s) {
    static const char *const ON[] = {"on", "true", "yes", "1"};
    static const char *const OFF[] = {"off", "false", "no", "0"};
    for (size_t i = 0; i < sizeof ON / sizeof ON[0]; i++) {
        if (!strcmp(s, ON[i])) return 1;
        if (!strcmp(s, OFF[i])) return 0;
    }
    return -1;
}

/* A whole decimal integer in [min, max]. */
static int parse_int(const char *s, long long min, long long max, long long *v) {
    char *end;
    errno = 0;
    *v = strtoll(s, &end, 10);
    return errno || end == s || *end || *v < min || *v > max ? -1 : 0;
}

int config_set(config *c, config_source source, const char *key, const char *value,
               const char *where, char *err, size_t errlen) {
    if (!strcmp(key, "model")) return add_model(c, source, value, where, err, errlen);
    if (!strcmp(key, "api_keys")) return set_api_keys(c, value, err, errlen);
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const struct setting *s = &SETTINGS[i];
        if (strcmp(key, s->key)) continue;
        char *field = (char *)c + s->offset;
        long long v;
        if (s->kind == KIND_TEXT) {
            if (strlen(value) >= s->cap || (s->valid ? !s->valid(value) : !*value)) {
                /* A URL is not echoed: it may hold a password. An http:// one says why. */
                http_url u;
                char why[256] = "";
                if (s->valid == valid_http_url && http_url_parse(value, &u, why + 2, sizeof why - 2))
                    memcpy(why, ": ", 2);
                snprintf(err, errlen, "%s: %s wants %s, not '%s'%s", where, key, s->want,
                         s->valid == valid_url || s->valid == valid_http_url ? "(not shown)"
                                                                             : value, why);
                return -1;
            }
            memcpy(field, value, strlen(value) + 1);
        } else if (s->kind == KIND_SWITCH) {
            int on = parse_switch(value);
            if (on < 0) {
                snprintf(err, errlen, "%s: %s wants on or off, not '%s'", where, key, value);
                return -1;
            }
            *(int *)(void *)field = on;
        } else if (parse_int(value, s->min, s->max, &v)) {
            snprintf(err, errlen, "%s: %s wants an integer in %lld..%lld, not '%s'", where, key,
                     s->min, s->max, value);
            return -1;
        } else if (s->kind == KIND_INT) {
            *(int *)(void *)field = (int)v;
        } else {
            *(size_t *)(void *)field = (size_t)v;
        }
        return 0;
    }
    snprintf(err, errlen, "%s: unknown setting '%s'", where, key);
    return -1;
}

/* s without leading and trailing white space (in place). */
static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
    return s;
}

int config_load_file(config *c, const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char line[8192], where[4200];
    int rc = 0;
    for (int n = 1; rc == 0 && fgets(line, sizeof line, f); n++) {
        snprintf(where, sizeof where, "%s:%d", path, n);
        if (!strchr(line, '\n') && !feof(f)) {
            snprintf(err, errlen, "%s: line too long", where);
            rc = -1;
            break;
        }
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        char *text = trim(line), *eq = strchr(text, '=');
        if (!*text) continue;
        if (!eq) {
            snprintf(err, errlen, "%s: expected 'name = value'", where);
            rc = -1;
            break;
        }
        *eq = 0;
        rc = config_set(c, SRC_FILE, trim(text), trim(eq + 1), where, err, errlen);
    }
    if (rc == 0 && ferror(f)) {
        snprintf(err, errlen, "%s: read error", path);
        rc = -1;
    }
    fclose(f);
    return rc;
}

/* ANODMD_ followed by key in capitals into out. */
static void env_name(const char *key, char *out, size_t cap) {
    int n = snprintf(out, cap, "ANODMD_");
    for (; *key && (size_t)n + 1 < cap; key++) out[n++] = (char)toupper((unsigned char)*key);
    out[n] = 0;
}

int config_load_env(config *c, char *err, size_t errlen) {
    char name[64];
    const char *v;
    env_name("model", name, sizeof name);
    if ((v = getenv(name)) && config_set(c, SRC_ENV, "model", v, name, err, errlen)) return -1;
    env_name("api_keys", name, sizeof name);
    if ((v = getenv(name)) && config_set(c, SRC_ENV, "api_keys", v, name, err, errlen))
        return -1;
    for (size_t i = 0; i < N_SETTINGS; i++) {
        env_name(SETTINGS[i].key, name, sizeof name);
        if ((v = getenv(name)) && config_set(c, SRC_ENV, SETTINGS[i].key, v, name, err, errlen))
            return -1;
    }
    return 0;
}

void config_print(const config *c, FILE *f) {
    fprintf(f, "bind = %s\nport = %d\ndb = %s\nretention_days = %d\nretention_rows = %zu\n"
            "threads = %d\nworkers = %d\nbatch_threads = %d\nbatch_window_us = %d\n"
            "max_body_bytes = %zu\n"
            "max_batch = %d\nmax_connections = %d\ntimeout_seconds = %d\n"
            "drain_seconds = %d\nshutdown_delay_seconds = %d\ndashboard = %s\n"
            "recent_samples = %d\n"
            "answer_after_commit = %s\nmemory_sources = %d\nmemory_snapshot_every = %d\n",
            c->bind, c->port, c->db, c->retention_days, c->retention_rows, c->threads,
            c->workers, c->batch_threads, c->batch_window_us, c->max_body_bytes, c->max_batch,
            c->max_connections, c->timeout_seconds, c->drain_seconds,
            c->shutdown_delay_seconds, c->dashboard ? "on" : "off", c->recent_samples,
            c->answer_after_commit ? "on" : "off", c->memory_sources, c->memory_snapshot_every);
    if (*c->api_keys_file) fprintf(f, "api_keys_file = %s\n", c->api_keys_file);
    char url[sizeof c->sink + 8];
    config_redact_url(c->sink, url, sizeof url);
    fprintf(f, "replica_id = %s\nsink = %s\n", c->replica_id, url);
    config_redact_url(c->history, url, sizeof url);
    fprintf(f, "history = %s\n", url);
    config_redact_url(c->payload_log_url, url, sizeof url);
    if (*c->payload_log_url)
        fprintf(f, "payload_log_url = %s\npayload_log_mode = %s\n"
                "payload_log_inference_service = %s\npayload_log_namespace = %s\n"
                "payload_log_component = %s\npayload_log_endpoint = %s\n"
                "payload_log_queue = %d\npayload_log_queue_bytes = %zu\n", url,
                c->payload_log_mode, c->payload_log_inference_service, c->payload_log_namespace,
                c->payload_log_component, c->payload_log_endpoint, c->payload_log_queue,
                c->payload_log_queue_bytes);
    if (c->api_keys) fprintf(f, "# api_keys is set (not shown)\n");
    for (int i = 0; i < c->n_models; i++) fprintf(f, "model = %s\n", c->models[i]);
}

void config_redact_url(const char *url, char *out, size_t cap) {
    *out = 0;    /* glibc's fmemopen ends the text only after something is written */
    FILE *o = fmemopen(out, cap, "w");
    if (!o) {
        snprintf(out, cap, "(not shown)");
        return;
    }
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    fwrite(url, 1, (size_t)(p - url), o);
    /* The user part: user[:password]@, before the host's end. */
    size_t host_end = strcspn(p, "/?#");
    const char *at = NULL;
    for (const char *q = p; q < p + host_end; q++)
        if (*q == '@') at = q;
    const char *colon = at ? memchr(p, ':', (size_t)(at - p)) : NULL;
    if (colon) {
        fwrite(p, 1, (size_t)(colon - p), o);
        fputs(":***", o);
        p = at;
    }
    /* The rest, with each password=VALUE parameter's value hidden. */
    while (*p) {
        const char *q = strstr(p, "password=");
        if (!q) {
            fputs(p, o);
            break;
        }
        int param = q > url && (q[-1] == '?' || q[-1] == '&');
        q += strlen("password=");
        fwrite(p, 1, (size_t)(q - p), o);
        p = q;
        if (param) {
            fputs("***", o);
            p += strcspn(p, "&#");
        }
    }
    fclose(o);
    out[cap - 1] = 0;
}
