/* The one-vs-rest experiment: its maths on small synthetic data (each against a brute
 * force or a constructed answer), then `anodm experiment` end to end on a tiny
 * Fashion-MNIST-shaped directory. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <zlib.h>

#include "auroc.h"
#include "check.h"
#include "daemon_harness.h"
#include "experiment.h"
#include "rng.h"

static void fill_uniform(float *v, size_t n, uint64_t seed) {
    rng_t r;
    rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) v[i] = rng_uniform(&r);
}

TEST(experiment_latent_nn_brute_force) {
    enum { N = 57, M = 23, D = 5 };
    float ref[N * D], q[M * D];
    double got[M];
    fill_uniform(ref, N * D, 1);
    fill_uniform(q, M * D, 2);
    memcpy(q + 3 * D, ref + 10 * D, D * sizeof *q);     /* an exact hit: distance 0 */
    experiment_latent_nn(ref, N, D, q, M, 1, got);
    double got5[M];
    experiment_latent_nn(ref, N, D, q, M, 5, got5);
    for (int i = 0; i < M; i++) {
        double d[N];                                     /* every distance, sorted */
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int c = 0; c < D; c++) {
                double diff = (double)q[i * D + c] - ref[j * D + c];
                s += diff * diff;
            }
            int at = j;
            for (; at > 0 && d[at - 1] > sqrt(s); at--) d[at] = d[at - 1];
            d[at] = sqrt(s);
        }
        CHECK_NEAR(got[i], d[0], 1e-5);
        CHECK_NEAR(got5[i], (d[0] + d[1] + d[2] + d[3] + d[4]) / 5, 1e-5);
    }
    CHECK_NEAR(got[3], 0.0, 1e-6);
}

/* Points of both classes lie along the line 0.3 a + 0.7 b = 1, spread far along it and
 * just off it on either side: only alpha = 0.3 separates them; every other grid value
 * mixes them. */
TEST(experiment_best_alpha_finds_the_separating_mix) {
    enum { N = 200 };
    double a[N], b[N];
    int pos[N];
    rng_t r;
    rng_seed(&r, 7);
    for (int i = 0; i < N; i++) {
        double t = 20.0 * rng_uniform(&r) - 10.0, off = (i % 2 ? 1 : -1) * 0.01;
        pos[i] = i % 2;
        a[i] = 1 + 0.7 * t + 0.3 * off;
        b[i] = 1 - 0.3 * t + 0.7 * off;
    }
    double auc, alpha = experiment_best_alpha(a, b, pos, N, &auc);
    CHECK_NEAR(alpha, 0.3, 1e-12);
    CHECK_NEAR(auc, 1.0, 1e-12);
    double s[N];
    for (int g = 0; g < EXP_N_ALPHA; g++) {     /* and it is the grid's maximum */
        for (int i = 0; i < N; i++) s[i] = EXP_ALPHA_GRID[g] * a[i] + (1 - EXP_ALPHA_GRID[g]) * b[i];
        CHECK(auroc(s, pos, N) <= auc);
    }
    CHECK(EXP_ALPHA_GRID[0] == 0 && EXP_ALPHA_GRID[EXP_N_ALPHA - 1] == 1);
}

/* Test points sit in a tight clump far from the reference: each one's D_MAP is its
 * distance to the reference, never to its clump neighbours. */
TEST(experiment_map_distance_counts_reference_only) {
    const float R[] = {0, 0, 1, 0, 0, 1};
    const float Y[] = {10, 10, 10.01f, 10, 10, 10.01f};
    double out[3];
    experiment_map_distance(R, 3, Y, 3, 1, out);
    CHECK_NEAR(out[0], sqrt(81.0 + 100.0), 1e-4);   /* nearest reference (1,0) or (0,1) */
    CHECK_NEAR(out[1], sqrt(9.01 * 9.01 + 100.0), 1e-3);
    experiment_map_distance(R, 3, Y, 1, 3, out);    /* k = 3: the mean over all three */
    CHECK_NEAR(out[0], (sqrt(200.0) + 2 * sqrt(181.0)) / 3, 1e-4);
}

/* The joint map: its D_MAP equals the brute-force distance to the nearest REFERENCE
 * point in the same fit, and an island of anomalies does not count its own members (most of them have a
 * fellow nearer than any reference point, so counting them would shrink D_MAP). */
TEST(experiment_joint_dmap_excludes_test_points) {
    enum { N = 60, M = 20, D = 4, T = N + M };
    float X[T * D], Y[T * 2];
    double got[M];
    char err[256];
    fill_uniform(X, N * D, 3);
    fill_uniform(X + N * D, M * D, 4);
    for (int i = N * D; i < T * D; i++) X[i] = 5 + 0.01f * X[i];   /* a far, tight island */
    tsne_options o;
    tsne_options_default(&o);
    o.perplexity = 5;
    o.n_iter = 300;
    CHECK(experiment_joint_dmap(X, N, X + N * D, M, D, 1, &o, got, err, sizeof err) == 0);
    CHECK(tsne_fit(X, T, D, &o, Y, NULL, err, sizeof err) == 0);    /* the same, seeded fit */
    int closer_to_island = 0;
    for (int i = 0; i < M; i++) {
        const float *y = Y + 2 * (N + i);
        double to_ref = INFINITY, to_island = INFINITY;
        for (int j = 0; j < T; j++) {
            if (j == N + i) continue;
            double dx = y[0] - Y[2 * j], dy = y[1] - Y[2 * j + 1], dd = sqrt(dx * dx + dy * dy);
            if (j < N && dd < to_ref) to_ref = dd;
            if (j >= N && dd < to_island) to_island = dd;
        }
        CHECK_NEAR(got[i], to_ref, 1e-4);
        closer_to_island += to_island < to_ref;
    }
    CHECK_MSG(closer_to_island >= M / 2, "only %d of %d island points have an island "
              "neighbour nearer than the reference", closer_to_island, M);
}

TEST(experiment_balanced_subset_keeps_proportions) {
    enum { N = 100 };
    int32_t labels[N];
    size_t idx[N], count[3] = {0};
    for (int i = 0; i < N; i++) labels[i] = i % 10 < 5 ? 7 : i % 10 < 8 ? 2 : 9;  /* 50/30/20 */
    size_t n = experiment_balanced_subset(labels, N, 10, idx);
    CHECK(n == 10);
    for (size_t j = 0; j < n; j++) {
        count[labels[idx[j]] == 7 ? 0 : labels[idx[j]] == 2 ? 1 : 2]++;
        if (j) CHECK(idx[j] > idx[j - 1]);
    }
    CHECK(count[0] == 5 && count[1] == 3 && count[2] == 2);
    CHECK(idx[0] == 0 && idx[4] == 4 && idx[5] == 5);          /* first of each class */
    CHECK(experiment_balanced_subset(labels, N, 1000, idx) == N);
}

TEST(experiment_anomaly_subset_sets_the_rate) {
    enum { N = 1000 };
    int is_pos[N];
    size_t idx[N], idx2[N];
    for (int i = 0; i < N; i++) is_pos[i] = i % 10 == 3;          /* 900 normals, 100 anomalies */
    static const double rate[] = { 0.01, 0.05, 0.1, 0.5 };
    static const size_t want_pos[] = { 9, 47, 100, 100 };          /* 0.5 wants 900: all 100 */
    for (int t = 0; t < 4; t++) {
        size_t n = experiment_anomaly_subset(is_pos, N, rate[t], 3, idx), pos = 0;
        CHECK(n == 900 + want_pos[t]);
        for (size_t j = 0; j < n; j++) {
            pos += is_pos[idx[j]] != 0;
            if (j) CHECK(idx[j] > idx[j - 1]);
        }
        CHECK(pos == want_pos[t]);
    }
    /* Seeded: the same seed keeps the same anomalies, another seed others. */
    size_t n1 = experiment_anomaly_subset(is_pos, N, 0.01, 3, idx);
    size_t n2 = experiment_anomaly_subset(is_pos, N, 0.01, 3, idx2);
    CHECK(n1 == n2 && !memcmp(idx, idx2, n1 * sizeof *idx));
    CHECK(experiment_anomaly_subset(is_pos, N, 0.01, 4, idx2) == n1);
    CHECK(memcmp(idx, idx2, n1 * sizeof *idx) != 0);
    CHECK(experiment_anomaly_subset(is_pos, N, 1e-6, 3, idx) == 901);  /* at least one */
    CHECK(experiment_anomaly_subset(is_pos, N, 0, 3, idx) == 0);
    CHECK(experiment_anomaly_subset(is_pos, N, 1, 3, idx) == 0);
    for (int i = 0; i < N; i++) is_pos[i] = 0;
    CHECK(experiment_anomaly_subset(is_pos, N, 0.1, 3, idx) == 0);      /* no anomaly */
}

TEST(experiment_fuse_standardises_each_term) {
    const double a[] = {3, 5}, b[] = {10, 30};
    double out[2];
    experiment_fuse(a, (term_stats){1, 2}, b, (term_stats){10, 10}, 0.25, 2, out);
    CHECK_NEAR(out[0], 0.25 * 1 + 0.75 * 0, 1e-12);
    CHECK_NEAR(out[1], 0.25 * 2 + 0.75 * 2, 1e-12);
}

/* ------------------------------------------------------------------ command line */

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* One gzip IDX file of unsigned bytes: images (n x 28 x 28) or labels (n). */
static void write_idx(const char *path, const unsigned char *data, uint32_t n, int images) {
    unsigned char head[16] = {0, 0, 8, (unsigned char)(images ? 3 : 1)};
    put_be32(head + 4, n);
    put_be32(head + 8, 28);
    put_be32(head + 12, 28);
    unsigned hlen = images ? 16 : 8, len = images ? n * 784 : n;
    gzFile f = gzopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    CHECK(gzwrite(f, head, hlen) == (int)hlen);
    CHECK(gzwrite(f, data, len) == (int)len);
    CHECK(gzclose(f) == Z_OK);
}

/* Ten classes told apart by where a bright square sits (class c at column 2 + 2c),
 * with pixel noise; labels cycle 0..9. */
static void write_split(const char *dir, const char *split, uint32_t n, uint64_t seed) {
    unsigned char *img = malloc((size_t)n * 784), *lab = malloc(n);
    char path[600];
    rng_t r;
    CHECK(img && lab);
    if (!img || !lab) goto done;
    rng_seed(&r, seed);
    for (uint32_t i = 0; i < n; i++) {
        int c = (int)(i % 10), x0 = 2 + 2 * c;
        lab[i] = (unsigned char)c;
        for (int p = 0; p < 784; p++) {
            int x = p % 28, y = p / 28, on = x >= x0 && x < x0 + 6 && y >= 10 && y < 18;
            img[(size_t)i * 784 + p] = (unsigned char)((on ? 200 : 5) + (int)rng_below(&r, 40));
        }
    }
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte.gz", dir, split);
    write_idx(path, img, n, 1);
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte.gz", dir, split);
    write_idx(path, lab, n, 0);
done:
    free(img);
    free(lab);
}

/* Run `anodm experiment ARGS` (run_anodm) with its output kept in log; its exit code. */
static int run_experiment(const char *args, const char *log) {
    char *out;
    int code = run_anodm(&out, "experiment %s", args);
    FILE *f = fopen(log, "w");
    if (f) {
        fputs(out, f);
        fclose(f);
    }
    free(out);
    return code;
}

static int exists(const char *dir, const char *name) {
    char path[700];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0 && st.st_size > 0;
}

TEST(experiment_cli_usage_errors) {
    char log[600];
    snprintf(log, sizeof log, "%s/exp_usage.log", test_tmpdir());
    CHECK(run_experiment("", log) == 2);                                 /* no --dataset */
    CHECK(run_experiment("--dataset cifar10", log) == 2);
    CHECK(run_experiment("--dataset fashion-mnist --classes 12", log) == 2);
    CHECK(run_experiment("--dataset fashion-mnist --beta 0.1,x", log) == 2);
    CHECK(run_experiment("--dataset fashion-mnist --epochs 0", log) == 2);
    CHECK(run_experiment("--dataset fashion-mnist --perplexity 500", log) == 2);
    CHECK(run_experiment("--help", log) == 0);
    char args[700];
    snprintf(args, sizeof args, "--dataset fashion-mnist --data %s/nowhere", test_tmpdir());
    CHECK(run_experiment(args, log) == 1);
}

TEST(experiment_cli_end_to_end) {
    char dir[600], out[600], log[600], args[2000], path[700];
    snprintf(dir, sizeof dir, "%s/exp_fashion", test_tmpdir());
    snprintf(out, sizeof out, "%s/exp_out", test_tmpdir());
    snprintf(log, sizeof log, "%s/exp_run.log", test_tmpdir());
    CHECK(mkdir(dir, 0755) == 0);
    write_split(dir, "train", 600, 11);
    write_split(dir, "t10k", 200, 12);
    snprintf(args, sizeof args, "--dataset fashion-mnist --data %s --classes 3 --epochs 1 "
             "--n-ref 100 --test-limit 80 --perplexity 5 --out-dir %s", dir, out);
    int code = run_experiment(args, log);
    CHECK_MSG(code == 0, "exit %d; see %s", code, log);
    CHECK(exists(out, "results.md") && exists(out, "results.json"));
    CHECK(exists(out, "roc_beta0.01_class3.svg"));

    snprintf(path, sizeof path, "%s/results.json", out);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    CHECK_MSG(root != NULL, "results.json: %s", jerr.text);
    json_t *classes = json_object_get(json_array_get(json_object_get(root, "runs"), 0), "classes");
    CHECK(json_array_size(classes) == 1);
    size_t i, checked = 0;
    json_t *c;
    json_array_foreach(classes, i, c) {
        CHECK(json_integer_value(json_object_get(c, "n_test")) == 80);
        CHECK(json_integer_value(json_object_get(c, "n_anomalies")) == 8);
        json_t *auc = json_object_get(c, "auroc");
        for (int m = 0; m < EXP_N_METHODS; m++) {
            json_t *v = json_object_get(auc, EXP_METHOD_ID[m]);
            double x = json_number_value(v);
            CHECK_MSG(json_is_number(v) && x >= 0 && x <= 1, "class %zu %s = %g", i,
                      EXP_METHOD_ID[m], x);
            checked++;
        }
    }
    CHECK(checked == EXP_N_METHODS);
    json_decref(root);

    snprintf(path, sizeof path, "%s/results.md", out);
    FILE *f = fopen(path, "r");
    char md[16384] = {0};
    CHECK(f != NULL);
    if (f) {
        CHECK(fread(md, 1, sizeof md - 1, f) > 0);
        fclose(f);
    }
    CHECK(strstr(md, "TEST LABELS") && strstr(md, "paper AnoDM") && strstr(md, "| 3 Dress |") && strstr(md, "average (1)"));
    CHECK(strstr(md, "anodm experiment --dataset fashion-mnist") && strstr(md, "machine:"));

    /* Anomaly rates: the same detector scores all 72 normals with 4 anomalies (5%: round
     * of 0.05 * 72 / 0.95) and with all 8 (50% would want 72). */
    snprintf(args, sizeof args, "--dataset fashion-mnist --data %s --classes 3 --epochs 1 "
             "--n-ref 100 --test-limit 80 --perplexity 5 --anomaly-rate 0.05,0.5 "
             "--out-dir %s", dir, out);
    code = run_experiment(args, log);
    CHECK_MSG(code == 0, "exit %d; see %s", code, log);
    CHECK(exists(out, "roc_beta0.01_rate0.05_class3.svg") &&
          exists(out, "roc_beta0.01_rate0.5_class3.svg"));
    snprintf(path, sizeof path, "%s/results.json", out);
    root = json_load_file(path, 0, &jerr);
    CHECK_MSG(root != NULL, "results.json: %s", jerr.text);
    json_t *runs = json_object_get(root, "runs");
    static const double rate[] = { 0.05, 0.5 };
    static const int n_anomalies[] = { 4, 8 };
    CHECK(json_array_size(runs) == 2);
    for (size_t k = 0; k < 2 && json_array_size(runs) == 2; k++) {
        json_t *run = json_array_get(runs, k);
        json_t *cls = json_array_get(json_object_get(run, "classes"), 0);
        CHECK(fabs(json_number_value(json_object_get(run, "anomaly_rate")) - rate[k]) < 1e-9);
        CHECK(json_integer_value(json_object_get(cls, "n_anomalies")) == n_anomalies[k]);
        CHECK(json_integer_value(json_object_get(cls, "n_test")) == 72 + n_anomalies[k]);
    }
    json_decref(root);
    CHECK(run_experiment("--dataset fashion-mnist --anomaly-rate 1", log) == 2);
}

/* A seeded random choice with the quotas of experiment_balanced_subset: proportions kept,
 * indices ascending and distinct, the same for the same seed, not just the first ones. */
TEST(experiment_random_subset_keeps_proportions) {
    enum { N = 1000 };
    int32_t labels[N];
    size_t a[N], b[N], first[N];
    for (int i = 0; i < N; i++) labels[i] = i < 800 ? 0 : i < 950 ? 1 : 2;
    size_t k = experiment_random_subset(labels, N, 100, 9, a);
    CHECK(k == 100 && experiment_random_subset(labels, N, 100, 9, b) == 100);
    CHECK(memcmp(a, b, sizeof a[0] * 100) == 0);
    CHECK(experiment_balanced_subset(labels, N, 100, first) == 100);
    size_t count[3] = {0}, late = 0;
    for (size_t j = 0; j < k; j++) {
        count[labels[a[j]]]++;
        if (j) CHECK(a[j] > a[j - 1]);
        late += labels[a[j]] == 0 && a[j] >= 80;   /* class 0's first 80 are the balanced pick */
    }
    CHECK(count[0] == 80 && count[1] == 15 && count[2] == 5);
    CHECK(late > 50);
    CHECK(experiment_random_subset(labels, N, 100, 10, b) == 100 && memcmp(a, b, sizeof a[0] * 100));
    CHECK(experiment_random_subset(labels, 5, 10, 1, a) == 5 && a[4] == 4);
}
