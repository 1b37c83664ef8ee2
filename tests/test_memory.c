/* The stream memory (core/detect/memory.h): its term against brute force, retention (recent
 * first in first out, suspicious ones kept longer), floods collapsed, limits refused. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "memory.h"
#include "rng.h"

enum { L = 3 };

static stream_memory *make(int capacity, int k, double recent, double radius) {
    memory_options o;
    memory_options_default(&o);
    o.capacity = capacity;
    o.k = k;
    o.recent_share = recent;
    o.merge_radius = radius;
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
    memory_probe p;
    memory_probe_of(m, x, &p);
    CHECK(p.nearest_slot == -1 && isinf(p.kth) && isinf(p.nearest));
    CHECK(memory_term(2.0, &p) == 0.0);          /* no evidence yet */
    rng_t r;
    rng_seed(&r, 3);
    for (int i = 0; i < 30; i++) {
        rng_fill_normal(&r, pts[i], L);
        memory_probe_of(m, x, &p);
        CHECK(i >= 4 ? isfinite(p.kth) : isinf(p.kth));   /* a k-th needs k latents */
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
    CHECK_NEAR(p.nearest, d[0], 1e-6);
    CHECK_NEAR(p.kth, d[3], 1e-6);
    CHECK_NEAR(memory_term(0.7, &p), log(0.7) - log(d[3]), 1e-6);
    CHECK(memory_count(m) == 30);
    memory_reset(m);
    CHECK(memory_count(m) == 0);
    memory_probe_of(m, x, &p);
    CHECK(p.nearest_slot == -1);
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
    CHECK(memory_create(0, &o, err, sizeof err) == NULL && strstr(err, "latent size"));
}
