/* The models anodmd serves (see registry.h). */
#include "registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "bundle.h"

/* Split spec into a model name and a path: "NAME=PATH", or PATH named after its file. */
static int parse_spec(const char *spec, model *m, char *err, size_t errlen) {
    const char *eq = strchr(spec, '='), *path = eq ? eq + 1 : spec;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t name_len = eq ? (size_t)(eq - spec) : dot && dot != base ? (size_t)(dot - base)
                                                                    : strlen(base);
    if (name_len > API_NAME_MAX || strlen(path) >= sizeof m->path || !*path) {
        snprintf(err, errlen, "model '%s': name or path too long, or no path", spec);
        return -1;
    }
    memcpy(m->name, eq ? spec : base, name_len);
    m->name[name_len] = 0;
    if (!api_valid_model_name(m->name)) {
        snprintf(err, errlen, "model '%s': name '%s' is not 1..%d of [A-Za-z0-9._-]", spec,
                 m->name, API_NAME_MAX);
        return -1;
    }
    memcpy(m->path, path, strlen(path) + 1);
    return 0;
}

/* Read, hash and parse one bundle, then build its scorer. */
static int load_model(model *m, int max_batch, int memory_sources, char *err, size_t errlen) {
    uint8_t *buf;
    size_t len;
    char why[400];
    if (bundle_read_file(m->path, (size_t)BUNDLE_MAX_FILE_BYTES, &buf, &len, why, sizeof why)) {
        snprintf(err, errlen, "model %s: %s", m->name, why);
        return -1;
    }
    bundle_hash(buf, len, m->version);
    int rc = bundle_parse(buf, len, &m->d, why, sizeof why);
    free(buf);
    if (rc == 0 && !(m->s = scorer_create(&m->d, max_batch, why, sizeof why))) rc = -1;
    m->per_source = rc == 0 && m->d.use_memory && memory_sources > 0;
    if (m->per_source && scorer_memory_per_source(m->s, memory_sources, why, sizeof why)) rc = -1;
    if (rc) {
        snprintf(err, errlen, "model %s (%s): %s", m->name, m->path, why);
        return -1;
    }
    m->dim = shape_size(m->d.vae.arch.in);
    m->max_batch = max_batch;
    if ((m->queue = batch_queue_create(m))) return 0;
    snprintf(err, errlen, "model %s: out of memory for its batch queue", m->name);
    return -1;
}

/* Free a set's models and the set. */
static void free_set(model_set *set) {
    for (int i = 0; i < set->n; i++) {
        batch_queue_free(set->models[i].queue);
        memstore_free(set->models[i].store);
        scorer_free(set->models[i].s);
        detector_free(&set->models[i].d);
        pthread_mutex_destroy(&set->models[i].lock);
    }
    free(set->models);
    free(set);
}

/* Every spec loaded into a new set (held once, for the registry); NULL with err. */
static model_set *load_set(char *const *specs, int n_specs, int max_batch, int memory_sources,
                           char *err, size_t errlen) {
    if (n_specs < 1) {
        snprintf(err, errlen, "no models: give at least one --model [NAME=]PATH");
        return NULL;
    }
    model_set *set = calloc(1, sizeof *set);
    if (!set || !(set->models = calloc((size_t)n_specs, sizeof *set->models))) {
        free(set);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (int i = 0; i < n_specs; i++) {
        model *m = &set->models[i];
        if (parse_spec(specs[i], m, err, errlen)) break;
        if (model_set_find(set, m->name)) {
            snprintf(err, errlen, "model name '%s' is given twice", m->name);
            break;
        }
        if (load_model(m, max_batch, memory_sources, err, errlen)) {
            scorer_free(m->s);
            detector_free(&m->d);
            break;
        }
        pthread_mutex_init(&m->lock, NULL);
        set->n++;
    }
    if (set->n == n_specs) {
        set->refs = 1;
        return set;
    }
    free_set(set);
    return NULL;
}

int registry_load(registry *r, char *const *specs, int n_specs, int max_batch,
                  int memory_sources, char *err, size_t errlen) {
    r->specs = specs;
    r->n_specs = n_specs;
    r->max_batch = max_batch;
    r->memory_sources = memory_sources;
    if (!(r->current = load_set(specs, n_specs, max_batch, memory_sources, err, errlen)))
        return -1;
    r->current->generation = 1;
    pthread_mutex_init(&r->lock, NULL);
    return 0;
}

/* Open the memstore of every model of set with a memory (restore: from the log). */
static void keep_memories(registry *r, model_set *set, int restore) {
    for (int i = 0; i < set->n; i++) {
        model *m = &set->models[i];
        m->store = memstore_open(r->log, m->name, m->version, m->s,
                                 m->per_source ? r->memory_sources : 0, r->snapshot_every,
                                 restore);
    }
}

void registry_keep_memories(registry *r, scorelog *log, int every) {
    r->log = log;
    r->snapshot_every = every;
    keep_memories(r, r->current, 1);
}

void registry_flush_memories(registry *r) {
    model_set *set = registry_acquire(r);
    for (int i = 0; i < set->n; i++) {
        model *m = &set->models[i];
        pthread_mutex_lock(&m->lock);
        memstore_flush(m->store, m->s);
        pthread_mutex_unlock(&m->lock);
    }
    registry_release(r, set);
}

int registry_reload(registry *r, char *err, size_t errlen) {
    /* Loading takes the time; only the swap happens under the lock. */
    model_set *set = load_set(r->specs, r->n_specs, r->max_batch, r->memory_sources, err, errlen);
    if (!set) return -1;
    /* The old set stops recording before the new one starts its memories afresh, so that
     * nothing the old memories do lands after the new start in the log. */
    if (r->log) {
        model_set *old = registry_acquire(r);
        for (int i = 0; i < old->n; i++) {
            pthread_mutex_lock(&old->models[i].lock);
            memstore_retire(old->models[i].store);
            pthread_mutex_unlock(&old->models[i].lock);
        }
        registry_release(r, old);
        keep_memories(r, set, 0);
    }
    pthread_mutex_lock(&r->lock);
    model_set *old = r->current;
    set->generation = old->generation + 1;
    r->current = set;
    pthread_mutex_unlock(&r->lock);
    registry_release(r, old);
    return 0;
}

void registry_free(registry *r) {
    if (!r->current) return;
    registry_release(r, r->current);
    r->current = NULL;
    pthread_mutex_destroy(&r->lock);
}

model_set *registry_acquire(registry *r) {
    pthread_mutex_lock(&r->lock);
    model_set *set = r->current;
    set->refs++;
    pthread_mutex_unlock(&r->lock);
    return set;
}

void registry_release(registry *r, model_set *set) {
    pthread_mutex_lock(&r->lock);
    int last = --set->refs == 0;
    pthread_mutex_unlock(&r->lock);
    if (last) free_set(set);
}

model *model_set_find(model_set *set, const char *name) {
    if (!name) return set->n ? &set->models[0] : NULL;
    for (int i = 0; i < set->n; i++)
        if (!strcmp(set->models[i].name, name)) return &set->models[i];
    return NULL;
}

int model_score(model *m, const char *source, const float *x, int n, detector_result *res,
                float *x_rec, int *nn_idx, float *nn_dist, char *err, size_t errlen) {
    int fresh;
    pthread_mutex_lock(&m->lock);
    int slot = scorer_use_source(m->s, source, &fresh, err, errlen);
    int rc = slot < 0 ? -1 : scorer_score(m->s, x, n, res, x_rec, nn_idx, nn_dist, err, errlen);
    if (slot >= 0) memstore_scored(m->store, m->s, slot, fresh);
    pthread_mutex_unlock(&m->lock);
    return rc;
}

int model_window(model *m, float **pos, int *n) {
    const float *at;
    pthread_mutex_lock(&m->lock);
    scorer_window(m->s, &at, n);
    *pos = *n ? malloc((size_t)*n * 2 * sizeof **pos) : NULL;
    if (*pos) memcpy(*pos, at, (size_t)*n * 2 * sizeof **pos);
    pthread_mutex_unlock(&m->lock);
    return *n && !*pos ? -1 : 0;
}

int model_memory_count(model *m) {
    pthread_mutex_lock(&m->lock);
    int n = scorer_memory_count(m->s);
    pthread_mutex_unlock(&m->lock);
    return n;
}

int model_memory_reset(model *m) {
    pthread_mutex_lock(&m->lock);
    int n = scorer_memory_count(m->s);
    scorer_memory_reset(m->s);
    memstore_reset(m->store, m->s);
    pthread_mutex_unlock(&m->lock);
    return n;
}
