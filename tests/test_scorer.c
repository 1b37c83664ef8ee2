/* The scorer's batch contract, on the real architectures: a sample's result is the same
 * to the bit whatever it was batched with (docs/BATCHING.md). Every preset is tried with
 * seeded random weights and a hand-made reference set, because the shapes decide which
 * BLAS paths run: a tiny test network can pass where the Fashion-MNIST one would not.
 * `make test-kernels` runs this under every OpenBLAS kernel the CPU can run. */
#include <cblas.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

#include "check.h"
#include "rng.h"
#include "scorer.h"

enum { N_REF = 300, BATCH = 37, K = 3, LATENT = 16 };

/* A single-mode detector around preset `name` with random weights; 0, or -1. */
static int make_detector(detector *d, const char *name, latent_input input) {
    char err[256];
    vae_arch a;
    memset(d, 0, sizeof *d);
    /* The presets that derive their layers from the shape, on 3 channels of 50 steps
     * and with a scaling (fitted on noise) in front, so that its path is tried too. */
    shape3 in;
    if (vae_arch_preset_shape(name, &in, err, sizeof err) != 0 ||
        vae_arch_for_input(&a, name, in.c ? in : (shape3){3, 1, 50}, LATENT, err, sizeof err) ||
        vae_create(&d->vae, &a, 5, err, sizeof err) != 0) {
        check_fail(__FILE__, __LINE__, "%s: %s", name, err);
        return -1;
    }
    d->n_ref = N_REF;
    d->n_cal = 4;
    d->ref_latent = malloc((size_t)N_REF * LATENT * sizeof(float));
    d->ref_map = malloc((size_t)N_REF * 2 * sizeof(float));
    d->ref_id = malloc(N_REF * sizeof(int32_t));
    d->cal_scores = malloc(4 * sizeof(float));
    if (!d->ref_latent || !d->ref_map || !d->ref_id || !d->cal_scores) {
        check_fail(__FILE__, __LINE__, "out of memory");
        detector_free(d);
        return -1;
    }
    rng_t r;
    rng_seed(&r, 17);
    if (!in.c) {
        const size_t dim = shape_size(a.in);
        float *noise = malloc(20 * dim * sizeof *noise);
        if (noise) rng_fill_normal(&r, noise, 20 * dim);
        if (!noise || scaling_fit(&d->scale, SCALE_STANDARD, noise, 20, dim, err, sizeof err)) {
            check_fail(__FILE__, __LINE__, "%s: scaling: %s", name, noise ? err : "no memory");
            free(noise);
            detector_free(d);
            return -1;
        }
        free(noise);
    }
    /* Reference latents near where random encoders put their means (close to 0). */
    rng_fill_normal(&r, d->ref_latent, (size_t)N_REF * LATENT);
    for (size_t i = 0; i < (size_t)N_REF * LATENT; i++) d->ref_latent[i] *= 0.05f;
    rng_fill_normal(&r, d->ref_map, (size_t)N_REF * 2);
    for (int i = 0; i < N_REF; i++) d->ref_id[i] = i;
    for (int i = 0; i < 4; i++) d->cal_scores[i] = (float)i;
    d->mode = PLACE_SINGLE;
    d->input = input;
    tsne_place_options_default(&d->place);
    d->place.perplexity = 10;
    d->k = K;
    d->alpha = 0.5;
    d->re = d->map = d->latent = (term_stats){1.0, 0.5};
    d->quantile = 0.99;
    d->threshold = 1.5;
    return 0;
}

/* Every field of the score record the same to the bit (a NaN equals itself). */
static int same_result(const detector_result *a, const detector_result *b) {
    int same = 1;
#define SAME_FIELD_(name, type, group, doc) same &= !memcmp(&a->name, &b->name, sizeof a->name);
    DETECTOR_RESULT_FIELDS(SAME_FIELD_)
#undef SAME_FIELD_
    return same;
}

/* Score BATCH samples at once with BLAS on one thread (as anodmd), then in pieces of every
 * size in `pieces` (cycled) on two threads (as `anodm score`), and compare every output bit
 * for bit. */
static void check_preset(const char *name, latent_input input) {
    detector d;
    if (make_detector(&d, name, input) != 0) return;
    const size_t dim = shape_size(d.vae.arch.in);
    char err[256];
    scorer *s = scorer_create(&d, BATCH, err, sizeof err);
    float *x = malloc(BATCH * dim * sizeof *x), *rec = malloc(BATCH * dim * sizeof *rec);
    float *rec2 = malloc(BATCH * dim * sizeof *rec2), dist[BATCH * K], dist2[BATCH * K];
    float mu[BATCH * LATENT], mu2[BATCH * LATENT];
    int32_t nn[BATCH * K], nn2[BATCH * K];
    detector_result res[BATCH], res2[BATCH], terms_only[BATCH];
    if (!s || !x || !rec || !rec2) {
        check_fail(__FILE__, __LINE__, "%s: %s", name, s ? "out of memory" : err);
        goto done;
    }
    rng_t r;
    rng_seed(&r, 23);
    for (size_t i = 0; i < BATCH * dim; i++) x[i] = rng_uniform(&r);
    const int blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    CHECK_MSG(scorer_terms(s, x, BATCH, terms_only, NULL, mu, NULL, NULL, err, sizeof err) == 0,
              "%s: %s", name, err);
    CHECK(scorer_score(s, x, BATCH, res, rec, nn, dist, err, sizeof err) == 0);
    openblas_set_num_threads(2);
    static const int pieces[] = {1, 2, 5, 13, 3, 8, 1, 4};
    int at = 0;
    for (int p = 0; at < BATCH; p = (p + 1) % 8) {
        int n = pieces[p] < BATCH - at ? pieces[p] : BATCH - at;
        CHECK(scorer_terms(s, x + at * dim, n, terms_only + at, NULL, mu2 + at * LATENT, NULL,
                           NULL, err, sizeof err) == 0);
        CHECK(scorer_score(s, x + at * dim, n, res2 + at, rec2 + at * dim, nn2 + at * K,
                           dist2 + at * K, err, sizeof err) == 0);
        at += n;
    }
    openblas_set_num_threads(blas_threads);
    int bad = 0;
    for (int b = 0; b < BATCH; b++) bad += !same_result(&res[b], &res2[b]);
    CHECK_MSG(bad == 0, "%s: %d of %d results differ between the batch and its pieces", name,
              bad, BATCH);
    /* The batch split across threads (BATCH / SCORER_MIN_ROWS shares): the same bits. */
    CHECK_MSG(scorer_set_threads(s, 3, err, sizeof err) == 0, "%s: %s", name, err);
    CHECK(scorer_threads(s) ==
          (net_plan_supported(&d.vae.enc) && net_plan_supported(&d.vae.dec) ? 3 : 1));
    CHECK(scorer_score(s, x, BATCH, res2, rec2, nn2, dist2, err, sizeof err) == 0);
    bad = 0;
    for (int b = 0; b < BATCH; b++) bad += !same_result(&res[b], &res2[b]);
    CHECK_MSG(bad == 0, "%s: %d of %d results differ on 3 threads", name, bad, BATCH);
    CHECK_MSG(memcmp(rec, rec2, BATCH * dim * sizeof *rec) == 0 &&
                  memcmp(nn, nn2, sizeof nn) == 0 && memcmp(dist, dist2, sizeof dist) == 0,
              "%s: reconstructions or neighbours differ on 3 threads", name);
    CHECK_MSG(memcmp(rec, rec2, BATCH * dim * sizeof *rec) == 0, "%s: reconstructions differ",
              name);
    CHECK_MSG(memcmp(mu, mu2, sizeof mu) == 0, "%s: latents differ", name);
    CHECK_MSG(memcmp(nn, nn2, sizeof nn) == 0 && memcmp(dist, dist2, sizeof dist) == 0,
              "%s: neighbours differ", name);
done:
    free(x);
    free(rec);
    free(rec2);
    scorer_free(s);
    detector_free(&d);
}

TEST(scorer_batch_invariant_every_preset) {
    for (const char *const *name = vae_arch_preset_names(); *name; name++)
        check_preset(*name, LATENT_MU);
}

/* z-based latents: the draw is seeded by the sample, so it is batch-invariant too. */
TEST(scorer_batch_invariant_z_latents) { check_preset("fashion", LATENT_Z); }

/* make_detector's fashion detector with a stream memory of capacity latents and rank k,
 * its term standardised by (0, 1); 0, or -1 reported. */
static int make_memory_detector(detector *d, int capacity, int k) {
    if (make_detector(d, "fashion", LATENT_MU) != 0) return -1;
    d->use_memory = 1;
    memory_options_default(&d->memory);
    d->memory.capacity = capacity;
    d->memory.k = k;
    d->memory.k_min = 1;
    d->mem = (term_stats){0.0, 1.0};
    return 0;
}

/* The memory term reads its reference ranks off placement's search in single mode and
 * searches them itself in context mode: the same stream gets the same memory terms, to
 * the bit. */
TEST(scorer_memory_same_in_both_modes) {
    detector d;
    if (make_memory_detector(&d, 12, 3) != 0) return;
    const size_t dim = shape_size(d.vae.arch.in);
    detector dc = d;
    dc.mode = PLACE_CONTEXT;
    dc.window = 8;
    char err[256];
    scorer *single = scorer_create(&d, 1, err, sizeof err), *context = scorer_create(&dc, 1, err, sizeof err);
    float *x = malloc(40 * dim * sizeof *x);
    if (!single || !context || !x) {
        check_fail(__FILE__, __LINE__, "%s", single && context ? "out of memory" : err);
        goto done;
    }
    rng_t r;
    rng_seed(&r, 41);
    for (size_t i = 0; i < 40 * dim; i++) x[i] = rng_uniform(&r);
    int same = 1, nonzero = 0;
    for (int i = 0; i < 40; i++) {
        detector_result a, b;
        CHECK(scorer_score(single, x + (size_t)i * dim, 1, &a, NULL, NULL, NULL, err, sizeof err) == 0);
        CHECK(scorer_score(context, x + (size_t)i * dim, 1, &b, NULL, NULL, NULL, err, sizeof err) == 0);
        same &= a.d_memory == b.d_memory;
        nonzero += a.d_memory != 0.0;
    }
    CHECK_MSG(same, "the memory term differs between single and context mode");
    CHECK(nonzero == 40 - 3);
done:
    free(x);
    scorer_free(single);
    scorer_free(context);
    detector_free(&d);
}

/* The stream memory in the scorer: a batch goes through it in batch order, each sample
 * probed before it is kept, exactly as if the samples had come one at a time; a sample is
 * never its own neighbour; a flood of one sample holds one slot; a reset forgets. */
TEST(scorer_memory_is_a_stream) {
    detector d;
    if (make_memory_detector(&d, 20, 3) != 0) return;
    const size_t dim = shape_size(d.vae.arch.in);
    char err[256];
    scorer *all = scorer_create(&d, BATCH, err, sizeof err), *one = scorer_create(&d, 1, err, sizeof err);
    float *x = malloc(BATCH * dim * sizeof *x);
    detector_result res[BATCH], r1;
    if (!all || !one || !x) {
        check_fail(__FILE__, __LINE__, "%s", all && one ? "out of memory" : err);
        goto done;
    }
    rng_t r;
    rng_seed(&r, 31);
    for (size_t i = 0; i < BATCH * dim; i++) x[i] = rng_uniform(&r);
    CHECK(scorer_set_threads(all, 4, err, sizeof err) == 0);   /* the order survives a split */
    CHECK(scorer_score(all, x, BATCH, res, NULL, NULL, NULL, err, sizeof err) == 0);
    int same = 1, nonzero = 0;
    for (int b = 0; b < BATCH; b++) {
        CHECK(scorer_score(one, x + b * dim, 1, &r1, NULL, NULL, NULL, err, sizeof err) == 0);
        same &= r1.d_memory == res[b].d_memory && r1.score == res[b].score;
        nonzero += res[b].d_memory != 0.0;
        if (b < 3) CHECK(res[b].d_memory == 0.0);    /* fewer than k kept: no evidence */
    }
    CHECK_MSG(same, "a batch through the memory differs from the same samples one at a time");
    CHECK(nonzero == BATCH - 3);
    CHECK(memory_count(scorer_memory(all)) == 20);
    /* Not its own neighbour: the first probe of a sample sees only earlier ones; the
     * second sees its first copy, merged rather than stored again. */
    scorer_memory_reset(one);
    CHECK(memory_count(scorer_memory(one)) == 0);
    for (int b = 0; b < 5; b++)
        CHECK(scorer_score(one, x + b * dim, 1, &r1, NULL, NULL, NULL, err, sizeof err) == 0);
    memory_probe p;
    float mu[LATENT];
    CHECK(scorer_terms(one, x + 9 * dim, 1, &r1, NULL, mu, NULL, NULL, err, sizeof err) == 0);
    CHECK(memory_count(scorer_memory(one)) == 6);
    memory_probe_of(scorer_memory(one), mu, &p);
    CHECK(p.n >= 1 && p.d[0] == 0.0);                  /* now it is kept */
    for (int i = 0; i < 50; i++)              /* a flood of that one sample */
        CHECK(scorer_terms(one, x + 9 * dim, 1, &r1, NULL, NULL, NULL, NULL, err, sizeof err) == 0);
    CHECK(memory_count(scorer_memory(one)) == 6);
done:
    free(x);
    scorer_free(all);
    scorer_free(one);
    detector_free(&d);
}

typedef struct {
    scorer *s;
    const float *x;
    int slot, B, rc;
    float *rec;
} front_job;

static void *run_front(void *arg) {
    front_job *f = arg;
    char err[256];
    f->rc = scorer_front(f->s, f->slot, f->x, f->B, f->slot, 1, f->rec, NULL, err, sizeof err);
    return NULL;
}

/* The two halves a daemon pipelines: three batches whose fronts run in two slots, one of
 * them on another thread while the batch before goes through its back, give what three
 * scorer_score calls give, bit for bit, memory terms included (the backs run in order);
 * the reconstructions come back in the data's units. A back without a front, a slot or
 * networks out of range, and a back after a failed front are refused, the memory left as
 * it was. */
TEST(scorer_front_and_back_pipelined) {
    detector d;
    if (make_memory_detector(&d, 20, 3) != 0) return;
    const size_t dim = shape_size(d.vae.arch.in);
    enum { B = 5 };
    char err[256];
    scorer *piped = scorer_create(&d, B, err, sizeof err), *plain = scorer_create(&d, B, err, sizeof err);
    float *x = malloc(3 * B * dim * sizeof *x), *rec = malloc(3 * B * dim * sizeof *rec),
          *want_rec = malloc(B * dim * sizeof *want_rec);
    detector_result got[3][B], want[B];
    if (!piped || !plain || !x || !rec || !want_rec) {
        check_fail(__FILE__, __LINE__, "%s", piped && plain ? "out of memory" : err);
        goto done;
    }
    rng_t r;
    rng_seed(&r, 43);
    for (size_t i = 0; i < 3 * B * dim; i++) x[i] = rng_uniform(&r);
    CHECK(scorer_set_threads(piped, 2, err, sizeof err) == 0);
    CHECK(scorer_back(piped, 1, got[0], NULL, NULL, err, sizeof err) == -1);   /* no front */
    CHECK_MSG(strstr(err, "no batch") != NULL, "%s", err);
    CHECK(scorer_front(piped, 2, x, B, 0, 1, NULL, NULL, err, sizeof err) == -1 &&
          scorer_front(piped, 0, x, B, 1, 2, NULL, NULL, err, sizeof err) == -1 &&
          scorer_front(piped, 0, x, B + 1, 0, 1, NULL, NULL, err, sizeof err) == -1 &&
          scorer_back(piped, -1, got[0], NULL, NULL, err, sizeof err) == -1);
    front_job second = {piped, x + B * dim, 1, B, -1, rec + B * dim};
    pthread_t t;
    CHECK(scorer_front(piped, 0, x, B, 0, 1, rec, NULL, err, sizeof err) == 0);
    CHECK(pthread_create(&t, NULL, run_front, &second) == 0);
    CHECK(scorer_back(piped, 0, got[0], NULL, NULL, err, sizeof err) == 0);
    pthread_join(t, NULL);
    CHECK(second.rc == 0);
    CHECK(scorer_front(piped, 0, x + 2 * B * dim, B, 0, 1, rec + 2 * B * dim, NULL, err,
                       sizeof err) == 0);
    CHECK(scorer_back(piped, 1, got[1], NULL, NULL, err, sizeof err) == 0);
    CHECK(scorer_back(piped, 0, got[2], NULL, NULL, err, sizeof err) == 0);
    CHECK(scorer_back(piped, 0, got[2], NULL, NULL, err, sizeof err) == -1);   /* taken once */
    int same = 1;
    for (int batch = 0; batch < 3; batch++) {
        CHECK(scorer_score(plain, x + (size_t)batch * B * dim, B, want, want_rec, NULL, NULL, err,
                           sizeof err) == 0);
        same &= !memcmp(want, got[batch], sizeof want) &&
                !memcmp(want_rec, rec + (size_t)batch * B * dim, B * dim * sizeof *rec);
    }
    CHECK_MSG(same, "pipelined halves differ from whole batches");
    CHECK(scorer_memory_count(piped) == 15 && got[2][B - 1].d_memory != 0.0);
    /* A front that fails leaves no batch behind, not even the one before it. */
    CHECK(scorer_front(piped, 1, x, B, 1, 1, NULL, NULL, err, sizeof err) == 0);
    CHECK(scorer_front(piped, 1, x, B + 1, 1, 1, NULL, NULL, err, sizeof err) == -1);
    CHECK(scorer_back(piped, 1, got[0], NULL, NULL, err, sizeof err) == -1);
    /* A score that overflows is refused at the back. */
    for (size_t i = 0; i < dim; i++) x[dim + i] = 3e38f;
    CHECK(scorer_front(piped, 1, x, B, 1, 1, NULL, NULL, err, sizeof err) == 0);
    CHECK(scorer_back(piped, 1, got[0], NULL, NULL, err, sizeof err) == SCORER_NOT_FINITE);
    CHECK(scorer_memory_count(piped) == 15);
done:
    free(x);
    free(rec);
    free(want_rec);
    scorer_free(piped);
    scorer_free(plain);
    detector_free(&d);
}

/* A batch with one sample too large for the model's arithmetic is refused whole, naming
 * the sample, and leaves the memory as it was; the finiteness rule is the record's:
 * every field, the memory's terms only when there is a memory. */
TEST(scorer_refuses_non_finite_and_keeps_memory) {
    detector d;
    if (make_memory_detector(&d, 20, 3) != 0) return;
    const size_t dim = shape_size(d.vae.arch.in);
    char err[256];
    enum { SPLIT = 2 * SCORER_MIN_ROWS };         /* a batch in two shares */
    scorer *s = scorer_create(&d, SPLIT, err, sizeof err);
    float *x = malloc((SPLIT + 4) * dim * sizeof *x);
    detector_result res[SPLIT];
    if (!s || !x) {
        check_fail(__FILE__, __LINE__, "%s", s ? "out of memory" : err);
        goto done;
    }
    rng_t r0;
    rng_seed(&r0, 7);
    for (size_t i = 0; i < (SPLIT + 4) * dim; i++) x[i] = rng_uniform(&r0);
    for (size_t i = 0; i < dim; i++) x[2 * dim + i] = x[(SPLIT + 1) * dim + i] = 3e38f;
    CHECK(scorer_score(s, x, 4, res, NULL, NULL, NULL, err, sizeof err) == SCORER_NOT_FINITE);
    CHECK_MSG(strstr(err, "sample 2") != NULL, "%s", err);
    CHECK(scorer_memory_count(s) == 0);
    /* Split across threads, the bad sample in the second share: the same refusal. */
    CHECK(scorer_set_threads(s, 2, err, sizeof err) == 0);
    CHECK(scorer_score(s, x + 3 * dim, SPLIT, res, NULL, NULL, NULL, err, sizeof err) ==
          SCORER_NOT_FINITE);
    char want[32];
    snprintf(want, sizeof want, "sample %d", SPLIT - 2);
    CHECK_MSG(strstr(err, want) != NULL, "%s", err);
    CHECK(scorer_memory_count(s) == 0);
    CHECK(scorer_set_threads(s, 0, err, sizeof err) == -1 &&
          scorer_set_threads(s, SCORER_MAX_THREADS + 1, err, sizeof err) == -1);
    CHECK(scorer_threads(s) == 2);
    CHECK(scorer_score(s, x, 2, res, NULL, NULL, NULL, err, sizeof err) == 0);
    CHECK(scorer_memory_count(s) == 2);
    CHECK(detector_result_finite(&d, &res[0]));
    detector_result r = res[0];
    r.z_memory = NAN;
    CHECK(!detector_result_finite(&d, &r));
    d.use_memory = 0;
    CHECK(detector_result_finite(&d, &r));
    r.raw_score = INFINITY;
    CHECK(!detector_result_finite(&d, &r));
    r.raw_score = res[0].raw_score;
    r.z_latent = NAN;
    CHECK(!detector_result_finite(&d, &r));
    d.latent.center = NAN;                    /* an old bundle's: no statistics */
    CHECK(detector_result_finite(&d, &r));
    d.use_memory = 1;
done:
    free(x);
    scorer_free(s);
    detector_free(&d);
}

/* Stage timing (anodm bench-score) sees every sample and every stage, and changes no
 * result: the same samples scored with and without it agree bit for bit. */
TEST(scorer_stage_timing_changes_nothing) {
    detector d;
    if (make_memory_detector(&d, 20, 3) != 0) return;
    const size_t dim = shape_size(d.vae.arch.in);
    char err[256];
    scorer *plain = scorer_create(&d, 8, err, sizeof err), *timed = scorer_create(&d, 8, err, sizeof err);
    float *x = malloc(16 * dim * sizeof *x);
    detector_result a[8], b[8];
    scorer_timing t = {0};
    if (!plain || !timed || !x) {
        check_fail(__FILE__, __LINE__, "%s", plain && timed ? "out of memory" : err);
        goto done;
    }
    rng_t r;
    rng_seed(&r, 5);
    for (size_t i = 0; i < 16 * dim; i++) x[i] = rng_uniform(&r);
    scorer_time_stages(timed, &t);
    for (int at = 0; at < 16; at += 8) {
        CHECK(scorer_score(plain, x + at * dim, 8, a, NULL, NULL, NULL, err, sizeof err) == 0);
        CHECK(scorer_score(timed, x + at * dim, 8, b, NULL, NULL, NULL, err, sizeof err) == 0);
        CHECK(memcmp(a, b, sizeof a) == 0);
    }
    CHECK(t.samples == 16);
    CHECK(t.forward_ns > 0 && t.place_ns > 0 && t.place.search_ns > 0 &&
          t.place.iterate_ns > 0 && t.finish_ns >= 0);
    CHECK(t.place.search_ns + t.place.calibrate_ns + t.place.iterate_ns <= t.place_ns);
    scorer_time_stages(timed, NULL);
    CHECK(scorer_score(timed, x, 8, b, NULL, NULL, NULL, err, sizeof err) == 0);
    CHECK(t.samples == 16);
done:
    free(x);
    scorer_free(plain);
    scorer_free(timed);
    detector_free(&d);
}

/* scorer_find_memory reads without side effects: the model's memory whatever the source
 * under scope model; under scope source the source's, or NULL for one never used, making
 * none and leaving the next scores' memory as it was. */
TEST(scorer_find_memory_changes_nothing) {
    detector d;
    if (make_memory_detector(&d, 30, 2) != 0) return;
    const size_t dim = shape_size(d.vae.arch.in);
    char err[256];
    scorer *model = scorer_create(&d, 1, err, sizeof err), *per = scorer_create(&d, 1, err, sizeof err);
    float *x = malloc(4 * dim * sizeof *x);
    detector_result res;
    if (!model || !per || !x) {
        check_fail(__FILE__, __LINE__, "%s", model && per ? "out of memory" : err);
        goto done;
    }
    rng_t r;
    rng_seed(&r, 41);
    for (size_t i = 0; i < 4 * dim; i++) x[i] = rng_uniform(&r);
    CHECK(scorer_find_memory(model, "any") == scorer_memory(model));
    CHECK(scorer_find_memory(model, NULL) == scorer_memory(model));
    CHECK(scorer_memory_per_source(per, 1, err, sizeof err) == 0);
    CHECK(scorer_use_source(per, "a", NULL, err, sizeof err) == 0);
    for (int i = 0; i < 3; i++)
        CHECK(scorer_score(per, x + (size_t)i * dim, 1, &res, NULL, NULL, NULL, err, sizeof err) == 0);
    const stream_memory *a = scorer_memory(per);
    CHECK(scorer_find_memory(per, "a") == a && memory_count(a) == 3);
    /* With room for one source, making "b"'s would forget "a"'s: finding it must not. */
    CHECK(scorer_find_memory(per, "b") == NULL && scorer_find_memory(per, NULL) == NULL);
    CHECK(scorer_memory(per) == a && memory_count(a) == 3);
    CHECK(scorer_score(per, x + 3 * dim, 1, &res, NULL, NULL, NULL, err, sizeof err) == 0);
    CHECK(memory_count(a) == 4);
done:
    free(x);
    scorer_free(model);
    scorer_free(per);
    detector_free(&d);
}

/* Scope source: each source's samples go through its own memory, so a source scores
 * exactly as it would alone whatever other sources send; at most max sources are kept,
 * the least recently used forgotten first; the count and a reset cover them all. */
TEST(scorer_memory_one_per_source) {
    detector d;
    if (make_memory_detector(&d, 30, 2) != 0) return;
    const size_t dim = shape_size(d.vae.arch.in);
    char err[256];
    scorer *mixed = scorer_create(&d, 1, err, sizeof err), *alone = scorer_create(&d, 1, err, sizeof err);
    float *x = malloc(20 * dim * sizeof *x);
    if (!mixed || !alone || !x) {
        check_fail(__FILE__, __LINE__, "%s", mixed && alone ? "out of memory" : err);
        goto done;
    }
    CHECK(scorer_memory_per_source(mixed, 2, err, sizeof err) == 0);
    CHECK(scorer_memory_per_source(mixed, 0, err, sizeof err) == -1);   /* out of range */
    rng_t r;
    rng_seed(&r, 37);
    for (size_t i = 0; i < 20 * dim; i++) x[i] = rng_uniform(&r);
    /* Source "a" gets the even samples, interleaved with "b"'s odd ones; the reference
     * scores "a"'s alone through a model-wide memory. */
    int same = 1, fresh;
    for (int i = 0; i < 20; i++) {
        detector_result got, want;
        const char *src = i % 2 ? "b" : "a";
        /* a's memory in slot 0, b's in slot 1, each started by its first use */
        CHECK(scorer_use_source(mixed, src, &fresh, err, sizeof err) == i % 2 && fresh == (i < 2));
        CHECK(scorer_score(mixed, x + (size_t)i * dim, 1, &got, NULL, NULL, NULL, err, sizeof err) == 0);
        if (i % 2) continue;
        CHECK(scorer_use_source(alone, src, &fresh, err, sizeof err) == 0 && !fresh); /* no-op */
        CHECK(scorer_score(alone, x + (size_t)i * dim, 1, &want, NULL, NULL, NULL, err, sizeof err) == 0);
        same &= got.d_memory == want.d_memory && got.score == want.score;
    }
    CHECK_MSG(same, "source a's scores moved with source b's traffic");
    CHECK(scorer_memory_count(mixed) == 20 && scorer_memory_count(alone) == 10);
    /* A third source evicts the least recently used ("a": "b" was used last) and takes
     * its slot, started afresh. */
    CHECK(scorer_use_source(mixed, "c", &fresh, err, sizeof err) == 0 && fresh);
    CHECK(memory_count(scorer_memory(mixed)) == 0);
    CHECK(scorer_memory_count(mixed) == 10);
    CHECK(scorer_use_source(mixed, "b", &fresh, err, sizeof err) == 1 && !fresh);
    CHECK(memory_count(scorer_memory(mixed)) == 10);
    const char *src;
    unsigned long long used_c, used_b;
    CHECK(scorer_memory_slot(mixed, 0, &src, &used_c) && !strcmp(src, "c"));
    CHECK(scorer_memory_slot(mixed, 1, &src, &used_b) && !strcmp(src, "b") && used_b > used_c);
    CHECK(!scorer_memory_slot(mixed, 2, &src, &used_b));
    scorer_memory_reset(mixed);
    CHECK(scorer_memory_count(mixed) == 0);
done:
    free(x);
    scorer_free(mixed);
    scorer_free(alone);
    detector_free(&d);
}

/* A scorer's memory written down (a snapshot, then the latents each later call kept) and
 * restored into another scorer goes on exactly as the original: the rest of the stream
 * scores the same to the bit, whichever call the snapshot followed (none: the empty
 * memory), through batches, merges, and both parts of the memory filling. */
TEST(scorer_memory_restored_scores_alike) {
    enum { N = 60, CUT = 41, B = 4, CALLS = (CUT + B - 1) / B };
    detector d;
    if (make_memory_detector(&d, 12, 2) != 0) return;
    const size_t dim = shape_size(d.vae.arch.in), L = LATENT;
    char err[256];
    float *x = malloc(N * dim * sizeof *x), *journal = malloc(N * L * sizeof *journal);
    double susp[N];
    if (!x || !journal) {
        check_fail(__FILE__, __LINE__, "out of memory");
        goto done;
    }
    rng_t r;
    rng_seed(&r, 43);
    for (size_t i = 0; i < N * dim; i++) x[i] = rng_uniform(&r);
    for (size_t i = 3 * dim; i < 4 * dim; i++) x[i + 5 * dim] = x[i];   /* a repeat: merged */
    for (int snap = -1; snap < CALLS; snap += 3) {
        scorer *orig = scorer_create(&d, B, err, sizeof err);
        scorer *back = scorer_create(&d, B, err, sizeof err);
        memory_state st;
        int journaled = 0, differ = 0;
        if (!orig || !back || (snap < 0 && memory_export(scorer_memory(orig), &st))) {
            check_fail(__FILE__, __LINE__, "%s", err);
            scorer_free(orig);
            scorer_free(back);
            goto done;
        }
        /* The first CUT samples in calls of up to B, a snapshot after call snap, and the
         * latents every later call kept. */
        for (int c = 0; c < CALLS; c++) {
            int at = c * B, n = CUT - at < B ? CUT - at : B, kept;
            detector_result res[B];
            const float *mu;
            const double *s;
            CHECK(scorer_score(orig, x + (size_t)at * dim, n, res, NULL, NULL, NULL, err,
                               sizeof err) == 0);
            scorer_kept(orig, &mu, &s, &kept);
            CHECK(kept == n);
            if (c == snap) CHECK(memory_export(scorer_memory(orig), &st) == 0);
            if (c <= snap) continue;
            memcpy(journal + (size_t)journaled * L, mu, (size_t)n * L * sizeof *mu);
            memcpy(susp + journaled, s, (size_t)n * sizeof *s);
            journaled += n;
        }
        CHECK_MSG(scorer_memory_import(back, &st, err, sizeof err) == 0, "%s", err);
        for (int i = 0; i < journaled; i++)
            scorer_memory_replay(back, journal + (size_t)i * L, susp[i]);
        CHECK(memory_count(scorer_memory(orig)) == 12);
        CHECK(memory_count(scorer_memory(back)) == 12);
        for (int at = CUT; at < N; at++) {
            detector_result a, b;
            const float *xa = x + (size_t)at * dim;
            CHECK(scorer_score(orig, xa, 1, &a, NULL, NULL, NULL, err, sizeof err) == 0);
            CHECK(scorer_score(back, xa, 1, &b, NULL, NULL, NULL, err, sizeof err) == 0);
            differ += memcmp(&a.d_memory, &b.d_memory, sizeof a.d_memory) ||
                      memcmp(&a.score, &b.score, sizeof a.score);
        }
        CHECK_MSG(!differ, "snapshot after call %d, %d replayed: %d scores differ", snap,
                  journaled, differ);
        memory_state_free(&st);
        scorer_free(orig);
        scorer_free(back);
    }
done:
    free(x);
    free(journal);
    detector_free(&d);
}
