/* The stream memory (core/detect/memory.h): its terms against brute force and hand-worked
 * values, retention (recent first in first out, suspicious ones kept longer, suspicion
 * decaying), floods collapsed, limits refused. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "memory.h"
#include "rng.h"

enum { L = 3 };

/* A memory whose term reads rank k alone (format 4's), without decay. */
static stream_memory *make(int capacity, int k, double recent, double radius) {
    memory_options o;
    memory_options_default(&o);
    o.capacity = capacity;
    o.k = o.k_min = k;
    o.recent_share = recent;
    o.merge_radius = radius;
    o.horizon = 0;
    char err[128];
    stream_memory *m = memory_create(L, &o, err, sizeof err);
    CHECK_MSG(m != NULL, "%s", err);
    return m;
}

static void keep(stream_memory *m, const float *x, double suspicion) {
    memory_probe p;
    memory_probe_of(m, x, &p);
    memory_keep(m, x, suspicion, &p);
}

/* Is a latent equal to x kept? */
static int holds(const stream_memory *m, const float *x) {
    const float *v = memory_latents(m);
    for (int i = 0; i < memory_count(m); i++)
        if (!memcmp(v + (size_t)i * L, x, sizeof(float) * L)) return 1;
    return 0;
}

TEST(memory_term_matches_brute_force) {
    stream_memory *m = make(50, 4, 0.5, 0.0);
    if (!m) return;
    float x[L] = {0.5f, -0.25f, 1.0f}, pts[30][L];
    double ref[4] = {0.1, 0.2, 0.3, 0.7};
    memory_probe p;
    memory_probe_of(m, x, &p);
    CHECK(p.nearest_slot == -1 && p.n == 0);
    CHECK(memory_term(m, ref, &p) == 0.0);             /* no evidence yet */
    rng_t r;
    rng_seed(&r, 3);
    for (int i = 0; i < 30; i++) {
        rng_fill_normal(&r, pts[i], L);
        memory_probe_of(m, x, &p);
        CHECK(p.n == (i < 4 ? i : 4));
        if (i < 4) CHECK(memory_term(m, ref, &p) == 0.0);   /* a k-th needs k latents */
        keep(m, pts[i], 0.0);
    }
    double d[30];
    for (int i = 0; i < 30; i++) {
        double s = 0;
        for (int c = 0; c < L; c++) s += ((double)pts[i][c] - x[c]) * ((double)pts[i][c] - x[c]);
        d[i] = sqrt(s);
    }
    for (int a = 0; a < 30; a++)           /* sort ascending */
        for (int b = a + 1; b < 30; b++)
            if (d[b] < d[a]) { double t = d[a]; d[a] = d[b]; d[b] = t; }
    memory_probe_of(m, x, &p);
    for (int j = 0; j < 4; j++) CHECK_NEAR(p.d[j], d[j], 1e-6);
    CHECK_NEAR(memory_term(m, ref, &p), log(0.7) - log(d[3]), 1e-6);
    CHECK(memory_count(m) == 30);
    memory_reset(m);
    CHECK(memory_count(m) == 0);
    memory_probe_of(m, x, &p);
    CHECK(p.nearest_slot == -1);
    memory_free(m);
}

/* Ranks k_min..k: latents at distances 1, 2, 4, 8 from x on a line, reference latents
 * at 0.5, 1.5, 2.5, 3.5; the term is the mean of the log ratios at ranks 2 and 3. */
TEST(memory_term_averages_ranks) {
    memory_options o;
    memory_options_default(&o);
    o.capacity = 8;
    o.k = 3;
    o.k_min = 2;
    char err[128];
    stream_memory *m = memory_create(L, &o, err, sizeof err);
    CHECK_MSG(m != NULL, "%s", err);
    if (!m) return;
    float x[L] = {0}, y[L] = {0};
    double ref[3] = {0.5, 1.5, 2.5};
    memory_probe p;
    for (int i = 0; i < 2; i++) {
        y[0] = (float)(1 << i);
        keep(m, y, 0.0);
    }
    memory_probe_of(m, x, &p);
    CHECK(memory_term(m, ref, &p) == 0.0);        /* 2 kept, k 3: no evidence */
    for (int i = 2; i < 4; i++) {
        y[0] = (float)(1 << i);
        keep(m, y, 0.0);
    }
    memory_probe_of(m, x, &p);
    CHECK(p.n == 3 && p.d[0] == 1.0 && p.d[1] == 2.0 && p.d[2] == 4.0);
    CHECK_NEAR(memory_term(m, ref, &p), ((log(1.5) - log(2.0)) + (log(2.5) - log(4.0))) / 2, 1e-12);
    y[0] = -1.5f;                                  /* closer company: the term rises */
    keep(m, y, 0.0);
    memory_probe_of(m, x, &p);
    CHECK_NEAR(memory_term(m, ref, &p), ((log(1.5) - log(1.5)) + (log(2.5) - log(2.0))) / 2, 1e-12);
    memory_free(m);
}

/* Half recent, half suspicious: five suspicious latents outlive a hundred ordinary ones,
 * and of the ordinary ones only the latest five stay. */
TEST(memory_keeps_suspicious_latents_longer) {
    stream_memory *m = make(10, 2, 0.5, 0.0);
    if (!m) return;
    float x[L] = {0};
    for (int i = 0; i < 5; i++) {
        x[0] = 1000.0f + i;
        keep(m, x, 10.0 + i);
    }
    for (int i = 0; i < 100; i++) {
        x[0] = (float)i;
        keep(m, x, 1.0);
        CHECK(memory_count(m) == (6 + i < 10 ? 6 + i : 10));
    }
    for (int i = 0; i < 5; i++) {
        x[0] = 1000.0f + i;
        CHECK_MSG(holds(m, x), "suspicious latent %d was let go", i);
    }
    for (int i = 0; i < 100; i++) {
        x[0] = (float)i;
        CHECK_MSG(holds(m, x) == (i >= 95), "ordinary latent %d: kept %d", i, holds(m, x));
    }
    /* A more suspicious newcomer, once aged out, replaces the least suspicious old one. */
    x[0] = 2000.0f;
    keep(m, x, 12.5);
    for (int i = 0; i < 5; i++) {
        x[0] = 200.0f + i;
        keep(m, x, 1.0);
    }
    x[0] = 2000.0f;
    CHECK(holds(m, x));
    x[0] = 1000.0f;          /* suspicion 10, the least of the old ones */
    CHECK(!holds(m, x));
    x[0] = 1001.0f;
    CHECK(holds(m, x));
    memory_free(m);
}

/* A flood of one sample holds one slot; near copies within the radius merge, others do
 * not; a merge raises the kept latent's suspicion. */
TEST(memory_collapses_floods) {
    stream_memory *m = make(8, 2, 0.5, 0.01);
    if (!m) return;
    float a[L] = {1, 2, 3}, near[L] = {1.005f, 2, 3}, far[L] = {1.5f, 2, 3}, x[L] = {0};
    for (int i = 0; i < 1000; i++) keep(m, a, 1.0);
    CHECK(memory_count(m) == 1);
    keep(m, near, 1.0);
    CHECK(memory_count(m) == 1 && !holds(m, near));
    keep(m, far, 1.0);
    CHECK(memory_count(m) == 2);
    keep(m, near, 50.0);     /* merged into a: a is now the most suspicious */
    for (int i = 0; i < 40; i++) {
        x[0] = -10.0f - i;
        keep(m, x, 2.0);
    }
    CHECK(holds(m, a));
    CHECK(!holds(m, far));
    memory_free(m);
}

/* memory_entries: what retention holds, as the map's memory layer draws it: the
 * suspicious half (any order) then the recent half oldest first, each with the suspicion
 * it was kept with; memory_changes moves with every keep that changes anything and with a
 * reset, and only then. */
TEST(memory_entries_follow_retention) {
    stream_memory *m = make(10, 2, 0.5, 0.0);
    if (!m) return;
    memory_entry e[10];
    unsigned long long c0 = memory_changes(m);
    float x[L] = {0};
    for (int i = 0; i < 8; i++) {           /* 3..7 recent, 0..2 aged into the heap */
        x[0] = (float)i;
        keep(m, x, 0.5 * i);
    }
    CHECK(memory_count(m) == 8 && memory_changes(m) == c0 + 8);
    memory_entries(m, e);
    int seen = 0;
    for (int i = 0; i < 8; i++) {
        int v = (int)memory_latents(m)[(size_t)e[i].slot * L];
        CHECK_MSG(e[i].recent == (i >= 3), "entry %d (latent %d): recent %d", i, v, e[i].recent);
        CHECK(e[i].suspicion == 0.5 * v);
        if (i >= 3) CHECK_MSG(v == i, "recent entry %d holds latent %d", i, v);
        else seen |= 1 << v;
    }
    CHECK(seen == 7);                       /* the heap holds 0, 1 and 2 */
    x[0] = 4.0f;
    keep(m, x, 0.0);                        /* a merge that changes nothing */
    CHECK(memory_changes(m) == c0 + 8);
    keep(m, x, 9.0);                        /* a merge that raises the suspicion */
    CHECK(memory_changes(m) == c0 + 9);
    memory_entries(m, e);
    CHECK(e[4].recent && e[4].suspicion == 9.0 && memory_latents(m)[(size_t)e[4].slot * L] == 4.0f);
    memory_reset(m);
    CHECK(memory_changes(m) == c0 + 10 && memory_count(m) == 0);
    memory_free(m);
}

/* Decay: a kept suspicion falls by 1 every horizon samples, so an old suspicious latent
 * is let go once newcomers have caught up with it; without decay it stays for good. */
TEST(memory_suspicion_decays) {
    for (int decay = 0; decay <= 1; decay++) {
        memory_options o;
        memory_options_default(&o);
        o.capacity = 4;
        o.k = o.k_min = 1;
        o.horizon = decay ? 10.0 : 0.0;
        char err[128];
        stream_memory *m = memory_create(L, &o, err, sizeof err);
        CHECK_MSG(m != NULL, "%s", err);
        if (!m) return;
        float old[L] = {100, 0, 0}, x[L] = {0};
        keep(m, old, 5.0);                 /* seen 0: suspicion 5 */
        for (int i = 0; i < 45; i++) {     /* seen 1..45: at most 4.5 */
            x[0] = (float)i;
            keep(m, x, 0.0);
        }
        CHECK_MSG(holds(m, old), "decay %d: let go after 45 samples", decay);
        for (int i = 45; i < 60; i++) {    /* seen 46..60: two of them past 5 */
            x[0] = (float)i;
            keep(m, x, 0.0);
        }
        CHECK_MSG(holds(m, old) == !decay, "decay %d: kept %d after 60 samples", decay,
                  holds(m, old));
        memory_free(m);
    }
}

TEST(memory_refuses_bad_options) {
    memory_options o;
    char err[128];
    memory_options_default(&o);
    CHECK(memory_options_check(&o, err, sizeof err) == 0);
    o.k = 0;
    CHECK_FAILS_WITH(memory_options_check(&o, err, sizeof err), err, "memory k 0");
    memory_options_default(&o);
    o.capacity = 3;
    CHECK_FAILS_WITH(memory_options_check(&o, err, sizeof err), err, "memory capacity 3");
    memory_options_default(&o);
    o.recent_share = 0;
    CHECK_FAILS_WITH(memory_options_check(&o, err, sizeof err), err, "recent share");
    memory_options_default(&o);
    o.merge_radius = NAN;
    CHECK_FAILS_WITH(memory_options_check(&o, err, sizeof err), err, "merge radius");
    memory_options_default(&o);
    o.k_min = o.k + 1;
    CHECK_FAILS_WITH(memory_options_check(&o, err, sizeof err), err, "memory k_min 11");
    memory_options_default(&o);
    o.horizon = -1;
    CHECK_FAILS_WITH(memory_options_check(&o, err, sizeof err), err, "memory horizon");
    memory_options_default(&o);
    o.retain = MEMORY_RETAIN_N;
    CHECK_FAILS_WITH(memory_options_check(&o, err, sizeof err), err, "memory retention");
    memory_options_default(&o);
    CHECK(memory_create(0, &o, err, sizeof err) == NULL && strstr(err, "latent size"));
}

/* A probe's every output, compared bit for bit. */
static int same_probe(const memory_probe *a, const memory_probe *b) {
    return a->n == b->n && !memcmp(a->d, b->d, (size_t)a->n * sizeof *a->d) &&
           a->nearest_slot == b->nearest_slot;
}

/* Two exports hold the same state, array for array. */
static int same_state(const memory_state *a, const memory_state *b) {
    size_t n = (size_t)a->count;
    return a->latent == b->latent && a->capacity == b->capacity && a->recent == b->recent &&
           a->count == b->count && a->ring_len == b->ring_len && a->heap_len == b->heap_len &&
           a->seen == b->seen &&
           !memcmp(a->lat, b->lat, n * (size_t)a->latent * sizeof *a->lat) &&
           !memcmp(a->suspicion, b->suspicion, n * sizeof *a->suspicion) &&
           !memcmp(a->ring, b->ring, (size_t)a->ring_len * sizeof *a->ring) &&
           !memcmp(a->heap, b->heap, (size_t)a->heap_len * sizeof *a->heap);
}

/* Latent i of a stream with recurring points (merges), NaN and infinite suspicions. */
static void stream_item(rng_t *r, float *x, double *suspicion, int i) {
    rng_fill_normal(r, x, L);
    if (i % 7 == 3) x[0] = x[1] = x[2] = 0.25f;          /* a flood: merged */
    *suspicion = i % 11 == 5 ? NAN : i % 13 == 6 ? INFINITY : (double)x[0] * 3.0;
}

/* A memory exported at any point and imported into a fresh one goes on exactly as the
 * original: every later probe (the term's distances and the slot a merge would take) and
 * the final state are the same, bit for bit, through the recent part filling, the
 * suspicious part filling, merges, wrap-arounds of the ring and the suspicions' decay. */
TEST(memory_export_import_round_trip) {
    static const int AT[] = {0, 1, 4, 9, 23, 60, 157};
    for (size_t a = 0; a < sizeof AT / sizeof AT[0]; a++) {
        /* with a fast decay, so that the state's clock (seen) matters */
        memory_options o;
        memory_options_default(&o);
        o.capacity = 12;
        o.k = o.k_min = 3;
        o.merge_radius = 0.05;
        o.horizon = 7.0;
        char why[128];
        stream_memory *orig = memory_create(L, &o, why, sizeof why),
                      *copy = memory_create(L, &o, why, sizeof why);
        if (!orig || !copy) {
            memory_free(orig);
            memory_free(copy);
            return;
        }
        rng_t r;
        rng_seed(&r, 77);
        float x[L];
        double susp;
        for (int i = 0; i < AT[a]; i++) {
            stream_item(&r, x, &susp, i);
            keep(orig, x, susp);
        }
        keep(copy, x, 1.0);                      /* whatever it held is replaced */
        memory_state st;
        char err[160];
        CHECK(memory_export(orig, &st) == 0);
        CHECK_MSG(memory_import(copy, &st, err, sizeof err) == 0, "%s", err);
        memory_state_free(&st);
        CHECK(memory_count(copy) == memory_count(orig));
        int differ = 0;
        for (int i = AT[a]; i < AT[a] + 200; i++) {
            stream_item(&r, x, &susp, i);
            memory_probe p1, p2;
            memory_probe_of(orig, x, &p1);
            memory_probe_of(copy, x, &p2);
            differ += !same_probe(&p1, &p2);
            memory_keep(orig, x, susp, &p1);
            memory_keep(copy, x, susp, &p2);
        }
        CHECK_MSG(!differ, "imported at %d: %d probes differ", AT[a], differ);
        memory_state s1, s2;
        CHECK(memory_export(orig, &s1) == 0 && memory_export(copy, &s2) == 0);
        CHECK_MSG(same_state(&s1, &s2), "imported at %d: the states differ", AT[a]);
        CHECK(s1.ring_len == 6 && s1.heap_len == 6);     /* both parts were reached */
        memory_state_free(&s1);
        memory_state_free(&s2);
        memory_free(orig);
        memory_free(copy);
    }
}

/* A state that does not fit the memory, or that no memory could be in, is refused with
 * a reason, and the memory is left empty. */
TEST(memory_import_refuses_bad_states) {
    stream_memory *m = make(8, 2, 0.5, 0.0), *into = make(8, 2, 0.5, 0.0),
                  *other = make(10, 2, 0.5, 0.0);
    if (!m || !into || !other) goto done;
    float x[L] = {0};
    for (int i = 0; i < 12; i++) {
        x[0] = (float)i;
        keep(m, x, (double)(i % 5));
    }
    memory_state st;
    char err[160];
    if (memory_export(m, &st)) goto done;
    CHECK(st.count == 8 && st.ring_len == 4 && st.heap_len == 4);
    CHECK_FAILS_WITH(memory_import(other, &st, err, sizeof err), err, "8 slots");
#define REFUSED(field, value, why)                                                  \
    do {                                                                            \
        keep(into, x, 1.0);                                                         \
        memory_state bad = st;                                                      \
        bad.field = value;                                                          \
        CHECK_FAILS_WITH(memory_import(into, &bad, err, sizeof err), err, why);     \
        CHECK(memory_count(into) == 0);                                             \
    } while (0)
    REFUSED(count, 9, "do not fit");
    REFUSED(ring_len, 3, "do not fit");
    REFUSED(heap_len, 5, "do not fit");
    REFUSED(latent, 4, "of 4 values");
    REFUSED(recent, 3, "(3 recent)");
    int ring0 = st.ring[0];
    st.ring[0] = st.ring[1];                               /* a slot twice */
    REFUSED(count, 8, "listed twice");
    st.ring[0] = 8;                                        /* a slot not kept */
    REFUSED(count, 8, "outside");
    st.ring[0] = ring0;
    int h0 = st.heap[0];
    st.heap[0] = st.heap[3];
    st.heap[3] = h0;
    if (st.suspicion[st.heap[0]] > st.suspicion[st.heap[1]] ||
        st.suspicion[st.heap[0]] > st.suspicion[st.heap[2]] ||
        st.suspicion[st.heap[1]] > st.suspicion[st.heap[3]])
        REFUSED(count, 8, "out of order");
    else
        check_fail(__FILE__, __LINE__, "the swap left the heap in order: no case");
    st.heap[3] = st.heap[0];
    st.heap[0] = h0;
    double s0 = st.suspicion[2];
    st.suspicion[2] = NAN;
    REFUSED(count, 8, "NaN");
    st.suspicion[2] = s0;
    float l0 = st.lat[5];
    st.lat[5] = INFINITY;
    REFUSED(count, 8, "not finite");
    st.lat[5] = l0;
    CHECK_MSG(memory_import(into, &st, err, sizeof err) == 0, "%s", err);  /* repaired */
    CHECK(memory_count(into) == 8);
#undef REFUSED
    memory_state_free(&st);
done:
    memory_free(m);
    memory_free(into);
    memory_free(other);
}
