/* A model's stream memories kept in the score log (see memstore.h). */
#include "memstore.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memstate.h"

struct memstore {
    scorelog *log;
    char model[API_NAME_MAX + 1], version[API_VERSION_LEN + 1];
    int sources;                 /* 0: the model's one memory; else at most this many */
    int every;                   /* keeps between snapshots */
    int latent;
    int n;                       /* slots: 1, or sources */
    int64_t *id;                 /* per slot: its memory's id in the log; 0 while none */
    int *since;                  /* per slot: keeps since its last snapshot */
    int retired;
};

/* Operations being gathered for one hand-over; failed: one could not be made. */
typedef struct {
    scorelog_memop *head, **tail;
    int failed;
} oplist;

static scorelog_memop *add(oplist *o, scorelog_mem_kind kind, const memstore *ms,
                           int64_t memory) {
    scorelog_memop *op = calloc(1, sizeof *op);
    if (!op) {
        o->failed = 1;
        return NULL;
    }
    op->kind = kind;
    op->memory = memory;
    memcpy(op->model, ms->model, sizeof op->model);
    memcpy(op->version, ms->version, sizeof op->version);
    *o->tail = op;
    o->tail = &op->next;
    return op;
}

/* Slot's memory gets a new record in the log (its start, empty). */
static void add_start(memstore *ms, scorer *s, oplist *o, int slot) {
    const char *source;
    unsigned long long used;
    scorer_memory_slot(s, slot, &source, &used);
    ms->id[slot] = scorelog_memory_id(ms->log);
    ms->since[slot] = 0;
    scorelog_memop *op = add(o, SCORELOG_MEM_START, ms, ms->id[slot]);
    if (op && source) {
        snprintf(op->source, sizeof op->source, "%s", source);
        op->has_source = 1;
    }
}

/* Slot's memory as it is now, replacing its record's journal. */
static void add_snapshot(memstore *ms, scorer *s, oplist *o, int slot) {
    const char *source;
    unsigned long long used;
    memory_state st;
    scorelog_memop *op = add(o, SCORELOG_MEM_SNAPSHOT, ms, ms->id[slot]);
    if (!op) return;
    if (memory_export(scorer_memory_slot(s, slot, &source, &used), &st) == 0) {
        op->data = memstate_encode(&st, &op->len);
        memory_state_free(&st);
    }
    if (!op->data) o->failed = 1;
    ms->since[slot] = 0;
}

/* What the last scoring call kept in slot's memory. */
static void add_keep(memstore *ms, scorer *s, oplist *o, int slot) {
    const float *mu;
    const double *suspicion;
    int n;
    scorer_kept(s, &mu, &suspicion, &n);
    scorelog_memop *op = n ? add(o, SCORELOG_MEM_KEEP, ms, ms->id[slot]) : NULL;
    if (!op) return;
    op->n = n;
    op->len = (size_t)ms->latent * 4;
    op->data = malloc((size_t)n * op->len);
    op->suspicion = malloc((size_t)n * sizeof *op->suspicion);
    if (!op->data || !op->suspicion) {
        o->failed = 1;
        return;
    }
    for (int i = 0; i < n; i++)
        memstate_put_latent(op->data + (size_t)i * op->len, mu + (size_t)i * (size_t)ms->latent,
                            ms->latent);
    memcpy(op->suspicion, suspicion, (size_t)n * sizeof *suspicion);
}

/* Hand o to the log. If an operation could not be made, the log can no longer follow the
 * memories of slots [from, to): their records are dropped, so that a restart starts them
 * afresh rather than wrong, and each is written whole again on its next score. */
static void submit(memstore *ms, oplist *o, int from, int to) {
    if (!o->failed) {
        if (o->head) scorelog_memory(ms->log, o->head);
        return;
    }
    scorelog_memop_free(o->head);
    *o = (oplist){NULL, &o->head, 0};
    for (int slot = from; slot < to; slot++) {
        if (ms->id[slot]) add(o, SCORELOG_MEM_DROP, ms, ms->id[slot]);
        ms->id[slot] = 0;
    }
    fprintf(stderr, "anodmd: model %s: out of memory writing its stream memory to the log; "
            "written whole on its next score\n", ms->model);
    if (o->failed) scorelog_memop_free(o->head);
    else if (o->head) scorelog_memory(ms->log, o->head);
}

void memstore_scored(memstore *ms, scorer *s, int slot, int fresh) {
    const float *mu;
    const double *suspicion;
    int n;
    if (!ms || ms->retired || slot < 0 || slot >= ms->n) return;
    scorer_kept(s, &mu, &suspicion, &n);
    oplist o = {NULL, &o.head, 0};
    int whole = !fresh && !ms->id[slot];          /* its record was lost: write it whole */
    if (fresh && ms->id[slot]) add(&o, SCORELOG_MEM_DROP, ms, ms->id[slot]);
    if (fresh || whole) add_start(ms, s, &o, slot);
    ms->since[slot] += n;
    if (whole || ms->since[slot] >= ms->every) add_snapshot(ms, s, &o, slot);
    else add_keep(ms, s, &o, slot);
    submit(ms, &o, slot, slot + 1);
}

/* Snapshot every memory s holds (starting the record of any that has none), or with
 * changed_only those that kept something since their last snapshot, in one submission. */
static void snapshot_all(memstore *ms, scorer *s, int changed_only) {
    const char *source;
    unsigned long long used;
    if (!ms || ms->retired) return;
    oplist o = {NULL, &o.head, 0};
    int slot = 0;
    for (; slot < ms->n && scorer_memory_slot(s, slot, &source, &used); slot++) {
        if (changed_only && ms->id[slot] && !ms->since[slot]) continue;
        if (!ms->id[slot]) add_start(ms, s, &o, slot);
        add_snapshot(ms, s, &o, slot);
    }
    submit(ms, &o, 0, slot);
}

void memstore_reset(memstore *ms, scorer *s) { snapshot_all(ms, s, 0); }

void memstore_flush(memstore *ms, scorer *s) { snapshot_all(ms, s, 1); }

void memstore_retire(memstore *ms) {
    if (ms) ms->retired = 1;
}

void memstore_free(memstore *ms) {
    if (!ms) return;
    free(ms->id);
    free(ms->since);
    free(ms);
}

/* ---- restoring at start ------------------------------------------------------------ */

/* A memory's journal, read and checked whole before the memory is touched. */
typedef struct {
    int latent;
    float *lat;
    double *suspicion;
    int n, cap;
    char err[160];
} journal;

static int collect(void *ctx, const uint8_t *latent, size_t len, double suspicion) {
    journal *j = ctx;
    if (j->n == j->cap) {
        int cap = j->cap ? 2 * j->cap : 64;
        float *lat = realloc(j->lat, (size_t)cap * (size_t)j->latent * sizeof *lat);
        if (lat) j->lat = lat;
        double *susp = realloc(j->suspicion, (size_t)cap * sizeof *susp);
        if (susp) j->suspicion = susp;
        if (!lat || !susp) {
            snprintf(j->err, sizeof j->err, "out of memory reading its journal");
            return 1;
        }
        j->cap = cap;
    }
    if (memstate_get_latent(latent, len, j->latent, j->lat + (size_t)j->n * (size_t)j->latent,
                            j->err, sizeof j->err))
        return 1;
    j->suspicion[j->n++] = suspicion;
    return 0;
}

/* Record r into the memory s scores through now (empty): its snapshot, then its journal
 * replayed. *replayed the journal's entries. 0, or -1 with err (the memory then empty). */
static int restore_one(memstore *ms, scorer *s, const scorelog_memory_record *r, int *replayed,
                       char *err, size_t errlen) {
    journal j = {.latent = ms->latent};
    memory_state st;
    int rc = scorelog_journal(ms->log, r->id, r->covered, collect, &j, err, errlen);
    if (rc > 0) snprintf(err, errlen, "%s", j.err);
    if (rc == 0 && r->state) {
        rc = memstate_decode(r->state, r->state_len, &st, err, errlen);
        if (rc == 0) {
            rc = scorer_memory_import(s, &st, err, errlen);
            memory_state_free(&st);
        }
    }
    for (int i = 0; rc == 0 && i < j.n; i++)
        scorer_memory_replay(s, j.lat + (size_t)i * (size_t)j.latent, j.suspicion[i]);
    *replayed = j.n;
    free(j.lat);
    free(j.suspicion);
    return rc ? -1 : 0;
}

/* Which records to restore: of this version and scope, the most recently used one per
 * source (or the one of the model), at most ms->n of them. chosen[i] set for those. */
static void choose(const memstore *ms, const scorelog_memory_record *r, int n, int *chosen) {
    int taken = 0;
    for (int i = n - 1; i >= 0; i--) {          /* most recently used first */
        chosen[i] = taken < ms->n && !strcmp(r[i].version, ms->version) &&
                    r[i].has_source == (ms->sources > 0);
        for (int k = i + 1; chosen[i] && k < n; k++)
            if (chosen[k] && !strcmp(r[k].source, r[i].source)) chosen[i] = 0;
        taken += chosen[i];
    }
}

/* The model's memories from the log (see memstore.h); what is not used is dropped. */
static void restore(memstore *ms, scorer *s) {
    scorelog_memory_record *r;
    int n, restored = 0, latents = 0, replayed = 0, others = 0;
    char err[256];
    oplist o = {NULL, &o.head, 0};
    if (scorelog_memories(ms->log, ms->model, &r, &n, err, sizeof err)) {
        fprintf(stderr, "anodmd: model %s: %s; its stream memory starts afresh\n", ms->model, err);
        add(&o, SCORELOG_MEM_DROP_MODEL, ms, 0);
        n = 0;
    }
    int *chosen = calloc((size_t)n + 1, sizeof *chosen);
    if (chosen) choose(ms, r, n, chosen);
    for (int i = 0; i < n; i++) {               /* least recently used first: the LRU order */
        int slot = 0, count;
        if (!chosen || !chosen[i]) {
            others++;
            add(&o, SCORELOG_MEM_DROP, ms, r[i].id);
            continue;
        }
        if (ms->sources && (slot = scorer_use_source(s, r[i].source, NULL, err, sizeof err)) < 0) {
            fprintf(stderr, "anodmd: model %s: %s\n", ms->model, err);
            add(&o, SCORELOG_MEM_DROP, ms, r[i].id);
            continue;
        }
        if (restore_one(ms, s, &r[i], &count, err, sizeof err)) {
            fprintf(stderr, "anodmd: model %s: its stream memory%s%s%s in the log is unusable "
                    "(%s); it starts afresh\n", ms->model, ms->sources ? " of source '" : "",
                    ms->sources ? r[i].source : "", ms->sources ? "'" : "", err);
            add(&o, SCORELOG_MEM_DROP, ms, r[i].id);
            add_start(ms, s, &o, slot);
            continue;
        }
        ms->id[slot] = r[i].id;
        ms->since[slot] = count;
        const char *source;
        unsigned long long used;
        restored++;
        replayed += count;
        latents += memory_count(scorer_memory_slot(s, slot, &source, &used));
    }
    if (!ms->sources && !ms->id[0]) add_start(ms, s, &o, 0);
    if (restored)
        fprintf(stderr, "anodmd: model %s: stream memor%s restored from the log: %d latents "
                "(%d of them replayed since the last snapshot)\n", ms->model,
                restored > 1 ? "ies" : "y", latents, replayed);
    if (others)
        fprintf(stderr, "anodmd: model %s: %d stream memor%s in the log of another version of "
                "the model, scope (memory_sources) or beyond memory_sources: not used\n",
                ms->model, others, others > 1 ? "ies" : "y");
    free(chosen);
    scorelog_memories_free(r, n);
    submit(ms, &o, 0, ms->n);
}

memstore *memstore_open(scorelog *log, const char *model, const char *version, scorer *s,
                        int sources, int every, int restore_it) {
    const stream_memory *m = scorer_memory(s);
    memory_state st;
    if (!m) return NULL;
    memstore *ms = calloc(1, sizeof *ms);
    int n = sources > 0 ? sources : 1;
    if (!ms || !(ms->id = calloc((size_t)n, sizeof *ms->id)) ||
        !(ms->since = calloc((size_t)n, sizeof *ms->since)) || memory_export(m, &st)) {
        fprintf(stderr, "anodmd: model %s: out of memory: its stream memory is not kept across "
                "a restart\n", model);
        memstore_free(ms);
        return NULL;
    }
    const int capacity = st.capacity, latent = st.latent;
    memory_state_free(&st);
    /* The largest snapshot, every slot full. */
    if (MEMSTATE_HEADER_BYTES + 4 + (double)capacity * (4.0 * latent + 8 + 4) >
        SCORELOG_MAX_BLOB) {
        fprintf(stderr, "anodmd: model %s: its stream memory (%d latents of %d) is too large to "
                "keep in the log: not kept across a restart\n", model, capacity, latent);
        memstore_free(ms);
        return NULL;
    }
    ms->log = log;
    snprintf(ms->model, sizeof ms->model, "%s", model);
    snprintf(ms->version, sizeof ms->version, "%s", version);
    ms->sources = sources > 0 ? sources : 0;
    ms->every = every;
    ms->latent = latent;
    ms->n = n;
    if (restore_it) {
        restore(ms, s);
    } else {
        oplist o = {NULL, &o.head, 0};
        add(&o, SCORELOG_MEM_DROP_MODEL, ms, 0);
        if (!ms->sources) add_start(ms, s, &o, 0);
        submit(ms, &o, 0, ms->n);
    }
    return ms;
}
