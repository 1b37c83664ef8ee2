/* anodmd's settings: defaults, config file, environment, flags (see config.h). */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef enum { KIND_TEXT, KIND_INT, KIND_SIZE, KIND_SWITCH } setting_kind;

/* The settings other than "model": name, type, place in config, bounds. */
static const struct setting {
    const char *key;
    setting_kind kind;
    size_t offset, cap;          /* cap: a text setting's buffer size */
    long long min, max;
} SETTINGS[] = {
    {"bind", KIND_TEXT, offsetof(config, bind), sizeof((config *)0)->bind, 0, 0},
    {"port", KIND_INT, offsetof(config, port), 0, 0, 65535},
    {"db", KIND_TEXT, offsetof(config, db), sizeof((config *)0)->db, 0, 0},
    {"retention_days", KIND_INT, offsetof(config, retention_days), 0, 0, 36500},
    {"retention_rows", KIND_SIZE, offsetof(config, retention_rows), 0, 0, 1LL << 40},
    {"threads", KIND_INT, offsetof(config, threads), 0, 1, 256},
    {"workers", KIND_INT, offsetof(config, workers), 0, 1, 256},
    {"batch_window_us", KIND_INT, offsetof(config, batch_window_us), 0, 0, 1000000},
    {"max_body_bytes", KIND_SIZE, offsetof(config, max_body_bytes), 0, 1024, 1LL << 30},
    {"max_batch", KIND_INT, offsetof(config, max_batch), 0, 1, 65536},
    {"max_connections", KIND_INT, offsetof(config, max_connections), 0, 1, 65536},
    {"timeout_seconds", KIND_INT, offsetof(config, timeout_seconds), 0, 1, 86400},
    {"drain_seconds", KIND_INT, offsetof(config, drain_seconds), 0, 0, 3600},
    {"api_keys_file", KIND_TEXT, offsetof(config, api_keys_file),
     sizeof((config *)0)->api_keys_file, 0, 0},
    {"dashboard", KIND_SWITCH, offsetof(config, dashboard), 0, 0, 1},
    {"recent_samples", KIND_INT, offsetof(config, recent_samples), 0, 0, 100000},
    {"answer_after_commit", KIND_SWITCH, offsetof(config, answer_after_commit), 0, 0, 1},
    {"memory_sources", KIND_INT, offsetof(config, memory_sources), 0, 0, 65536},
    {"memory_snapshot_every", KIND_INT, offsetof(config, memory_snapshot_every), 0, 1, 1000000},
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
    c->dashboard = 1;
    c->recent_samples = 1000;
    c->answer_after_commit = 1;
    c->memory_snapshot_every = 1000;
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
            struct in_addr a;
            if (!*value || strlen(value) >= s->cap ||
                (!strcmp(key, "bind") && inet_pton(AF_INET, value, &a) != 1)) {
                snprintf(err, errlen, "%s: %s wants %s, not '%s'", where, key,
                         strcmp(key, "bind") ? "a path" : "an IPv4 address", value);
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
            "threads = %d\nworkers = %d\nbatch_window_us = %d\nmax_body_bytes = %zu\n"
            "max_batch = %d\nmax_connections = %d\ntimeout_seconds = %d\n"
            "drain_seconds = %d\ndashboard = %s\nrecent_samples = %d\n"
            "answer_after_commit = %s\nmemory_sources = %d\nmemory_snapshot_every = %d\n",
            c->bind, c->port, c->db, c->retention_days, c->retention_rows, c->threads,
            c->workers, c->batch_window_us, c->max_body_bytes, c->max_batch,
            c->max_connections, c->timeout_seconds, c->drain_seconds,
            c->dashboard ? "on" : "off", c->recent_samples, c->answer_after_commit ? "on" : "off",
            c->memory_sources, c->memory_snapshot_every);
    if (*c->api_keys_file) fprintf(f, "api_keys_file = %s\n", c->api_keys_file);
    if (c->api_keys) fprintf(f, "# api_keys is set (not shown)\n");
    for (int i = 0; i < c->n_models; i++) fprintf(f, "model = %s\n", c->models[i]);
}
