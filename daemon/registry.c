/* The models anodmd serves (see registry.h). */
#include "registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "clock.h"

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
static int load_model(model *m, int max_batch, int batch_threads, int memory_sources, char *err,
                      size_t errlen) {
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
    if (rc == 0 && scorer_set_threads(m->s, batch_threads, why, sizeof why)) rc = -1;
    m->per_source = rc == 0 && m->d.use_memory && memory_sources > 0;
    if (m->per_source && scorer_memory_per_source(m->s, memory_sources, why, sizeof why)) rc = -1;
    if (rc) {
        snprintf(err, errlen, "model %s (%s): %s", m->name, m->path, why);
        return -1;
    }
    m->dim = shape_size(m->d.vae.arch.in);
    m->max_batch = max_batch;
    return 0;
}

/* Free a set's models and the set. */
static void free_set(model_set *set) {
    for (int i = 0; i < set->n; i++) {
        if (set->models[i].queue_free) set->models[i].queue_free(set->models[i].queue);
        memstore_free(set->models[i].store);
        scorer_free(set->models[i].s);
        detector_free(&set->models[i].d);
        model_memory_map_free(&set->models[i].map);
        pthread_mutex_destroy(&set->models[i].lock);
    }
    free(set->models);
    free(set);
}

/* Every spec loaded into a new set (held once, for the registry); NULL with err. */
static model_set *load_set(const registry *r, char *err, size_t errlen) {
    if (r->n_specs < 1) {
        snprintf(err, errlen, "no models: give at least one --model [NAME=]PATH");
        return NULL;
    }
    model_set *set = calloc(1, sizeof *set);
    if (!set || !(set->models = calloc((size_t)r->n_specs, sizeof *set->models))) {
        free(set);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (int i = 0; i < r->n_specs; i++) {
        model *m = &set->models[i];
        if (parse_spec(r->specs[i], m, err, errlen)) break;
        if (model_set_find(set, m->name)) {
            snprintf(err, errlen, "model name '%s' is given twice", m->name);
            break;
        }
        if (load_model(m, r->max_batch, r->batch_threads, r->memory_sources, err, errlen)) {
            scorer_free(m->s);
            detector_free(&m->d);
            break;
        }
        pthread_mutex_init(&m->lock, NULL);
        set->n++;
    }
    if (set->n == r->n_specs) {
        set->refs = 1;
        return set;
    }
    free_set(set);
    return NULL;
}

int registry_load(registry *r, char *const *specs, int n_specs, int max_batch,
                  int batch_threads, int memory_sources, char *err, size_t errlen) {
    r->specs = specs;
    r->n_specs = n_specs;
    r->max_batch = max_batch;
    r->batch_threads = batch_threads;
    r->memory_sources = memory_sources;
    if (!(r->current = load_set(r, err, errlen)))
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
    model_set *set = load_set(r, err, errlen);
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

int model_front(model *m, int slot, const float *x, int n, int net, int shares, float *x_rec,
                char *err, size_t errlen) {
    return scorer_front(m->s, slot, x, n, net, shares, x_rec, NULL, err, errlen);
}

int model_back(model *m, int slot, const char *source, detector_result *res, int32_t *nn_ref,
               float *nn_dist, char *err, size_t errlen) {
    int fresh;
    pthread_mutex_lock(&m->lock);
    int at = scorer_use_source(m->s, source, &fresh, err, errlen);
    int rc = at < 0 ? -1 : scorer_back(m->s, slot, res, nn_ref, nn_dist, err, errlen);
    if (at >= 0) memstore_scored(m->store, m->s, at, fresh);
    pthread_mutex_unlock(&m->lock);
    return rc;
}

int model_slots(const model *m) { return scorer_threads(m->s); }

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

void model_memory_map_free(api_memory_map *mm) {
    free(mm->pos);
    free(mm->suspicion);
    free(mm->recent);
    mm->pos = NULL;
    mm->suspicion = NULL;
    mm->recent = NULL;
    mm->n = 0;
}

/* Room for n points in mm's arrays (already freed or empty): 0, or -1 out of memory. */
static int map_alloc(api_memory_map *mm, int n) {
    mm->n = n;
    mm->pos = malloc(((size_t)n * 2 + 1) * sizeof *mm->pos);
    mm->suspicion = malloc(((size_t)n + 1) * sizeof *mm->suspicion);
    mm->recent = malloc((size_t)n + 1);
    return mm->pos && mm->suspicion && mm->recent ? 0 : -1;
}

/* dst, empty, becomes a copy of src's points. */
static int map_copy(api_memory_map *dst, const api_memory_map *src) {
    if (map_alloc(dst, src->n)) return -1;
    memcpy(dst->pos, src->pos, (size_t)src->n * 2 * sizeof *dst->pos);
    memcpy(dst->suspicion, src->suspicion, (size_t)src->n * sizeof *dst->suspicion);
    memcpy(dst->recent, src->recent, (size_t)src->n);
    dst->seconds = src->seconds;
    return 0;
}

int model_memory_map(model *m, const char *source, api_memory_map *mm, char *err,
                     size_t errlen) {
    const size_t L = (size_t)m->d.vae.arch.latent;
    memset(mm, 0, sizeof *mm);
    mm->per_source = m->per_source;
    snprintf(mm->source, sizeof mm->source, "%s", m->per_source && source ? source : "");
    float *lat = NULL;
    memory_entry *e = NULL;
    int rc = 0;
    pthread_mutex_lock(&m->lock);
    const stream_memory *mem = scorer_find_memory(m->s, source);
    int n = mem ? memory_count(mem) : 0;
    unsigned long long changes = mem ? memory_changes(mem) : 0;
    if (n && mem == m->map_of && changes == m->map_changes) {
        mm->cached = 1;
        rc = map_copy(mm, &m->map);
    } else if (n) {
        lat = malloc((size_t)n * L * sizeof *lat);
        e = malloc((size_t)n * sizeof *e);
        rc = !lat || !e || map_alloc(mm, n) ? -1 : 0;
        if (rc == 0) {
            memory_entries(mem, e);
            for (int i = 0; i < n; i++) {
                memcpy(lat + i * L, memory_latents(mem) + (size_t)e[i].slot * L, L * sizeof *lat);
                mm->suspicion[i] = e[i].suspicion;
                mm->recent[i] = (unsigned char)e[i].recent;
            }
        }
    }
    pthread_mutex_unlock(&m->lock);
    if (rc) snprintf(err, errlen, "out of memory for a map of %d latents", n);
    if (rc || mm->cached || !n) goto done;
    double t0 = clock_seconds();
    if ((rc = scorer_coplace(m->s, lat, n, mm->pos, err, errlen))) goto done;
    mm->seconds = clock_seconds() - t0;
    api_memory_map keep = {0};
    if (map_copy(&keep, mm)) {                   /* not kept: the next request places again */
        model_memory_map_free(&keep);
        goto done;
    }
    pthread_mutex_lock(&m->lock);
    model_memory_map_free(&m->map);
    m->map = keep;
    m->map_of = mem;
    m->map_changes = changes;
    pthread_mutex_unlock(&m->lock);
done:
    free(lat);
    free(e);
    return rc;
}
