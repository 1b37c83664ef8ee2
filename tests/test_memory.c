/* The stream memory (core/memory.h): its terms against brute force and hand-worked
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
