/* anodm bench-tsne: the C side of the t-SNE benchmark (tests/bench_tsne.py runs
 * scikit-learn on the same data in the same run and calls these subcommands).
 *
 *   bench-tsne fit   --n N [--data DIR] [--pca 50] [--threads 2] [--iters 1000]
 *                    [--perplexity 30] [--theta 0.5] [--save-x FILE] [--save-y FILE]
 *       PCA-50 of the first N Fashion-MNIST training images, fit, print time and KL.
 *   bench-tsne kl    --x FILE --y FILE --d D [--perplexity 30] [--threads 2]
 *       exact KL of a given 2-D embedding (raw float32 files) under our P.
 *   bench-tsne place --n N [--queries Q] [--data DIR] [--pca 50] [--y MAPFILE] [--co-only 1]
 *       fit a reference map on N training images, place Q test images: throughput on
 *       one core and error against exact placement, per setting; co-placement and
 *       sliding-window timings.
 *
 * Data files are raw little-endian float32, row-major, no header. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "dataset_io.h"
#include "clock.h"
#include "cli.h"
#include "knn.h"
#include "tsne.h"


typedef struct {
    const char *data_dir, *save_x, *save_y, *x_path, *y_path;
    int n, queries, pca, threads, iters, d;
    double perplexity, theta;
    int co_only;
} bench_args;

static int parse_args(int argc, char **argv, bench_args *a) {
    *a = (bench_args){ "/usr/share/datasets/fashion-mnist", NULL, NULL, NULL, NULL,
                       5000, 2000, 50, 2, 1000, 0, 30.0, 0.0, 0 };
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "bench-tsne: %s needs a value\n", k);
            return -1;
        }
        i++;
        if (!strcmp(k, "--n")) a->n = atoi(v);
        else if (!strcmp(k, "--queries")) a->queries = atoi(v);
        else if (!strcmp(k, "--data")) a->data_dir = v;
        else if (!strcmp(k, "--pca")) a->pca = atoi(v);
        else if (!strcmp(k, "--threads") || !strcmp(k, "--perplexity")) {
            /* the shared options' own rules (cli/options.c) */
            cli_value x;
            int threads = k[2] == 't';
            if (cli_option_parse(threads ? CLI_THREADS : CLI_PERPLEXITY, v, &x)) return -1;
            if (threads) a->threads = (int)x.i;
            else a->perplexity = x.r;
        }
        else if (!strcmp(k, "--iters")) a->iters = atoi(v);
        else if (!strcmp(k, "--save-x")) a->save_x = v;
        else if (!strcmp(k, "--save-y")) a->save_y = v;
        else if (!strcmp(k, "--x")) a->x_path = v;
        else if (!strcmp(k, "--y")) a->y_path = v;
        else if (!strcmp(k, "--d")) a->d = atoi(v);
        else if (!strcmp(k, "--theta")) a->theta = atof(v);
        else if (!strcmp(k, "--co-only")) a->co_only = atoi(v);
        else {
            fprintf(stderr, "bench-tsne: unknown option %s\n", k);
            return -1;
        }
    }
    return 0;
}

/* PCA to k dimensions of X (n x d), fitted on the first n_fit rows: covariance by
 * SSYRK, top-k subspace by 50 rounds of subspace iteration with Gram-Schmidt, projection
 * by SGEMM. Returns n x k or NULL. */
static float *pca(const float *X, int n, int n_fit, int d, int k) {
    float *mean = calloc((size_t)d, sizeof *mean), *C = calloc((size_t)d * d, sizeof *C);
    float *Xc = malloc((size_t)n * d * sizeof *Xc), *Q = malloc((size_t)d * k * sizeof *Q);
    float *W = malloc((size_t)d * k * sizeof *W), *out = malloc((size_t)n * k * sizeof *out);
    if (!mean || !C || !Xc || !Q || !W || !out) goto fail;
    for (int i = 0; i < n_fit; i++)
        for (int c = 0; c < d; c++) mean[c] += X[(size_t)i * d + c] / n_fit;
    for (int i = 0; i < n; i++)
        for (int c = 0; c < d; c++) Xc[(size_t)i * d + c] = X[(size_t)i * d + c] - mean[c];
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, d, n_fit, 1.0f / n_fit, Xc, d, 0.0f, C,
                d);
    for (int a = 0; a < d; a++)
        for (int b = 0; b < a; b++) C[(size_t)a * d + b] = C[(size_t)b * d + a];
    for (int e = 0; e < d * k; e++) Q[e] = (float)((e * 7919 % 1000) - 500) / 500.0f;
    for (int it = 0; it < 50; it++) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d, k, d, 1.0f, C, d, Q, k,
                    0.0f, W, k);
        for (int j = 0; j < k; j++) {               /* Gram-Schmidt, column j of W */
            for (int i = 0; i < j; i++) {
                double dot = 0;
                for (int c = 0; c < d; c++) dot += (double)W[c * k + j] * W[c * k + i];
                for (int c = 0; c < d; c++) W[c * k + j] -= (float)dot * W[c * k + i];
            }
            double nrm = 0;
            for (int c = 0; c < d; c++) nrm += (double)W[c * k + j] * W[c * k + j];
            nrm = sqrt(nrm);
            for (int c = 0; c < d; c++) W[c * k + j] = nrm > 0 ? (float)(W[c * k + j] / nrm) : 0;
        }
        memcpy(Q, W, (size_t)d * k * sizeof *Q);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, k, d, 1.0f, Xc, d, Q, k, 0.0f,
                out, k);
    free(mean); free(C); free(Xc); free(Q); free(W);
    return out;
fail:
    free(mean); free(C); free(Xc); free(Q); free(W); free(out);
    return NULL;
}

/* Fashion-MNIST split (train 1/0), first n images, projected to PCA-k (fitted on the
 * training images, so test images land in the same space). */
static int load_pca(const bench_args *a, int n_train, int n_test, float **train_out,
                    float **test_out) {
    char err[256];
    dataset tr, te;
    if (dataset_load_fashion_mnist(&tr, a->data_dir, 1, err, sizeof err)) {
        fprintf(stderr, "bench-tsne: %s\n", err);
        return -1;
    }
    if (n_train > (int)tr.n) n_train = (int)tr.n;
    int d = (int)tr.dim, total = n_train + n_test;
    float *all = malloc((size_t)total * d * sizeof *all);
    if (!all) {
        dataset_free(&tr);
        return -1;
    }
    memcpy(all, tr.x, (size_t)n_train * d * sizeof *all);
    dataset_free(&tr);
    if (n_test > 0) {
        if (dataset_load_fashion_mnist(&te, a->data_dir, 0, err, sizeof err) ||
            (int)te.n < n_test) {
            fprintf(stderr, "bench-tsne: test split: %s\n", err);
            free(all);
            return -1;
        }
        memcpy(all + (size_t)n_train * d, te.x, (size_t)n_test * d * sizeof *all);
        dataset_free(&te);
    }
    float *proj = pca(all, total, n_train, d, a->pca);
    free(all);
    if (!proj) return -1;
    *train_out = proj;
    if (test_out) *test_out = proj + (size_t)n_train * a->pca;
    return 0;
}

static int save_f32(const char *path, const float *x, size_t count) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(x, sizeof *x, count, f);
    return fclose(f) || w != count ? -1 : 0;
}

static float *load_f32(const char *path, size_t *count) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    float *x = len > 0 ? malloc((size_t)len) : NULL;
    if (x && fread(x, 1, (size_t)len, f) != (size_t)len) {
        free(x);
        x = NULL;
    }
    fclose(f);
    *count = (size_t)len / sizeof(float);
    return x;
}

static void progress(void *ctx, int iter, int n_iter, double kl) {
    double t0 = *(double *)ctx;
    fprintf(stderr, "  iter %4d/%d  KL %.4f  %.1f s\n", iter, n_iter, kl, clock_seconds() - t0);
}

/* The fit's options from the command line. */
static void fit_options(const bench_args *a, tsne_options *o) {
    tsne_options_default(o);
    o->n_threads = a->threads;
    o->n_iter = a->iters;
    o->perplexity = a->perplexity;
    if (a->theta > 0) o->theta = a->theta;
}

static int bench_fit(const bench_args *a) {
    float *X;
    if (load_pca(a, a->n, 0, &X, NULL)) return 1;
    int n = a->n, d = a->pca;
    if (a->save_x && save_f32(a->save_x, X, (size_t)n * d)) {
        fprintf(stderr, "bench-tsne: cannot write %s\n", a->save_x);
        free(X);
        return 1;
    }
    tsne_options o;
    fit_options(a, &o);
    double t0 = clock_seconds();
    o.progress = progress;
    o.progress_ctx = &t0;
    o.progress_every = 100;
    float *Y = malloc((size_t)n * 2 * sizeof *Y);
    double kl = 0;
    char err[256];
    int rc = Y ? tsne_fit(X, n, d, &o, Y, &kl, err, sizeof err) : -1;
    double t = clock_seconds() - t0;
    if (rc) {
        fprintf(stderr, "bench-tsne: %s\n", Y ? err : "out of memory");
        free(X); free(Y);
        return 1;
    }
    float lo[2] = { Y[0], Y[1] }, hi[2] = { Y[0], Y[1] };
    for (int i = 0; i < n; i++)
        for (int c = 0; c < 2; c++) {
            lo[c] = fminf(lo[c], Y[2 * i + c]);
            hi[c] = fmaxf(hi[c], Y[2 * i + c]);
        }
    printf("ours fit n=%d d=%d perplexity=%g iters=%d threads=%d: %.2f s, KL %.4f, "
           "extent %.1f x %.1f\n", n, d, a->perplexity, a->iters, a->threads, t, kl,
           hi[0] - lo[0], hi[1] - lo[1]);
    if (a->save_y && save_f32(a->save_y, Y, (size_t)n * 2))
        fprintf(stderr, "bench-tsne: cannot write %s\n", a->save_y);
    free(X); free(Y);
    return 0;
}

static int bench_kl(const bench_args *a) {
    size_t nx, ny;
    if (!a->x_path || !a->y_path || a->d <= 0) {
        fprintf(stderr, "bench-tsne kl: needs --x, --y and --d\n");
        return 1;
    }
    float *X = load_f32(a->x_path, &nx), *Yf = load_f32(a->y_path, &ny);
    int n = (int)(ny / 2);
    if (!X || !Yf || nx != (size_t)n * a->d) {
        fprintf(stderr, "bench-tsne kl: cannot read %s / %s, or sizes disagree\n", a->x_path,
                a->y_path);
        free(X); free(Yf);
        return 1;
    }
    tsne_sparse P;
    char err[256];
    double *Y = malloc((size_t)n * 2 * sizeof *Y);
    if (!Y || tsne_affinities(X, n, a->d, a->perplexity, a->threads, &P, err, sizeof err)) {
        fprintf(stderr, "bench-tsne kl: %s\n", Y ? err : "out of memory");
        free(X); free(Yf); free(Y);
        return 1;
    }
    for (int e = 0; e < 2 * n; e++) Y[e] = Yf[e];
    printf("exact KL %.4f (n=%d, %s)\n", tsne_kl_exact(&P, Y, a->threads), n, a->y_path);
    tsne_sparse_free(&P);
    free(X); free(Yf); free(Y);
    return 0;
}

/* Fit (or load from --y, writing it there after a fit) the reference map of X. */
static float *reference_map(const bench_args *a, const float *X, int n, int d) {
    size_t count = 0;
    float *Y = a->y_path ? load_f32(a->y_path, &count) : NULL;
    if (Y && count == (size_t)n * 2) return Y;
    free(Y);
    Y = malloc((size_t)n * 2 * sizeof *Y);
    tsne_options o;
    tsne_options_default(&o);
    o.n_threads = a->threads;
    char err[256];
    double t0 = clock_seconds(), kl;
    if (!Y || tsne_fit(X, n, d, &o, Y, &kl, err, sizeof err)) {
        fprintf(stderr, "bench-tsne: %s\n", Y ? err : "out of memory");
        free(Y);
        return NULL;
    }
    printf("reference map: n=%d fitted in %.1f s, KL %.4f\n", n, clock_seconds() - t0, kl);
    if (a->y_path && save_f32(a->y_path, Y, (size_t)n * 2))
        fprintf(stderr, "bench-tsne: cannot write %s\n", a->y_path);
    return Y;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Distances between two sets of positions in % of the map extent: mean, median, 95th and
 * 99th percentile, max (err[5]). */
static void position_error(const float *A, const float *B, int q, double extent, double err[5]) {
    double *e = malloc((size_t)q * sizeof *e), mean = 0;
    if (!e) {
        for (int j = 0; j < 5; j++) err[j] = NAN;
        return;
    }
    for (int i = 0; i < q; i++) {
        e[i] = hypot(A[2 * i] - B[2 * i], A[2 * i + 1] - B[2 * i + 1]) * 100.0 / extent;
        mean += e[i] / q;
    }
    qsort(e, (size_t)q, sizeof *e, cmp_double);
    err[0] = mean;
    err[1] = e[q / 2];
    err[2] = e[(int)(0.95 * (q - 1))];
    err[3] = e[(int)(0.99 * (q - 1))];
    err[4] = e[q - 1];
    free(e);
}

static int bench_place(const bench_args *a) {
    float *X, *Q;
    int n = a->n, q = a->queries, d = a->pca;
    if (load_pca(a, n, q, &X, &Q)) return 1;
    float *Y = reference_map(a, X, n, d);
    char err[256];
    if (!Y) {
        free(X);
        return 1;
    }
    double lo[2] = { Y[0], Y[1] }, hi[2] = { Y[0], Y[1] };
    for (int i = 0; i < n; i++)
        for (int c = 0; c < 2; c++) {
            lo[c] = fmin(lo[c], Y[2 * i + c]);
            hi[c] = fmax(hi[c], Y[2 * i + c]);
        }
    double extent = fmax(hi[0] - lo[0], hi[1] - lo[1]);
    double t0 = clock_seconds();
    tsne_map *m = tsne_map_create(X, Y, n, d, 0, err, sizeof err);
    if (!m) {
        fprintf(stderr, "bench-tsne: %s\n", err);
        free(X); free(Y);
        return 1;
    }
    printf("map: n=%d d=%d extent %.1f, built in %.3f s, %.1f MB\n", n, d, extent,
           clock_seconds() - t0, tsne_map_bytes(m) / 1e6);

    float *pos = malloc((size_t)q * 2 * sizeof *pos), *ref = malloc((size_t)q * 2 * sizeof *ref);
    float *conv = malloc((size_t)q * 2 * sizeof *conv);
    tsne_place_options o;
    if (a->co_only) goto co;
    /* The field shortcut against the exact sum, at the test points' neighbourhoods. */
    tsne_place_options_default(&o);
    o.n_iter = 0;
    tsne_place_batch(m, &o, Q, q, 1, pos, NULL, err, sizeof err);
    double worst = 0, num = 0, den = 0;
    for (int i = 0; i < q; i++) {
        double y[2] = { pos[2 * i] + 0.37, pos[2 * i + 1] - 0.21 }, rg[2], re[2], zg, ze;
        tsne_map_field(m, y, 0, rg, &zg);
        tsne_map_field(m, y, 1, re, &ze);
        double e = hypot(rg[0] / zg - re[0] / ze, rg[1] / zg - re[1] / ze);
        num += e * e;
        den += (re[0] * re[0] + re[1] * re[1]) / (ze * ze);
        worst = fmax(worst, fabs(zg - ze) / ze);
    }
    printf("field grid vs exact sum: relative error of rep/z %.2e (rms), z max %.2e\n",
           sqrt(num / den), worst);

    /* The neighbour search alone (k = 90, perplexity 30's): the map's index against the
     * plain packed scan, CPU time, best of three, and whether they agree bit for bit. */
    {
        long long cb = clock_thread_cpu_ns();
        knn_index *ix = knn_index_create(X, n, d);
        double build_ms = (clock_thread_cpu_ns() - cb) * 1e-6;
        float *P = malloc(knn_packed_floats(n, d) * sizeof *P);
        if (ix && P) {
            int ia[90], ib[90], differ = 0;
            float da[90], db[90];
            knn_pack(P, X, n, d);
            double best[2] = { INFINITY, INFINITY };
            for (int rep = 0; rep < 3; rep++) {
                for (int which = 0; which < 2; which++) {
                    long long c0 = clock_thread_cpu_ns();
                    for (int i = 0; i < q; i++) {
                        if (which) knn_index_query(ix, Q + (size_t)i * d, 90, ib, db);
                        else knn_query_packed(P, n, d, Q + (size_t)i * d, 90, -1, ia, da);
                    }
                    double us = (clock_thread_cpu_ns() - c0) * 1e-3 / q;
                    best[which] = us < best[which] ? us : best[which];
                }
            }
            for (int i = 0; i < q; i++) {
                knn_query_packed(P, n, d, Q + (size_t)i * d, 90, -1, ia, da);
                knn_index_query(ix, Q + (size_t)i * d, 90, ib, db);
                differ += memcmp(ia, ib, sizeof ia) != 0 || memcmp(da, db, sizeof da) != 0;
            }
            printf("neighbour search (k=90, CPU time, best of 3): packed scan %.2f us, index %.2f "
                   "us per query (index built in %.1f ms, %.2f MB); %d of %d queries differ\n",
                   best[0], best[1], build_ms, knn_index_bytes(ix) / 1e6, differ, q);
        }
        knn_index_free(ix);
        free(P);
    }

    /* A converged exact placement as the yardstick for every setting. */
    tsne_place_options exact;
    tsne_place_options_default(&exact);
    exact.exact = 1;
    exact.n_iter = 1000;
    exact.learning_rate = 0.5;
    tsne_place_batch(m, &exact, Q, q, a->threads, conv, NULL, err, sizeof err);

    /* Throughput in CPU time of this thread (the machine is shared: wall time would count
     * other work), best of three runs. */
    struct { const char *name; double perp; int iters; double lr, exag, mom, clip, tol; } set[] = {
        { "default (perp 30, 100 it, lr 1)", 30, 100, 1.0, 1.0, 0.8, 1.0, 0 },
        { "perp 30, 50 it", 30, 50, 1.0, 1.0, 0.8, 1.0, 0 },
        { "perp 30, 30 it", 30, 30, 1.0, 1.0, 0.8, 1.0, 0 },
        { "perp 30, 20 it", 30, 20, 1.0, 1.0, 0.8, 1.0, 0 },
        { "perp 30, 250 it", 30, 250, 1.0, 1.0, 0.8, 1.0, 0 },
        { "perp 30, <= 100 it, tol 0.01", 30, 100, 1.0, 1.0, 0.8, 1.0, 0.01 },
        { "perp 30, <= 100 it, tol 0.05", 30, 100, 1.0, 1.0, 0.8, 1.0, 0.05 },
        { "perp 30, <= 250 it, tol 0.01", 30, 250, 1.0, 1.0, 0.8, 1.0, 0.01 },
        { "perp 30, <= 250 it, tol 0.05", 30, 250, 1.0, 1.0, 0.8, 1.0, 0.05 },
        { "perp 30, 100 it, momentum 0.5", 30, 100, 1.0, 1.0, 0.5, 1.0, 0 },
        { "perp 20, 100 it", 20, 100, 1.0, 1.0, 0.8, 1.0, 0 },
        { "perp 10, 100 it", 10, 100, 1.0, 1.0, 0.8, 1.0, 0 },
        { "openTSNE-like (perp 5, 250 it, lr 0.1, exag 1.5)", 5, 250, 0.1, 1.5, 0.8, 0.25, 0 },
        { "zero-iteration, perp 30", 30, 0, 1.0, 1.0, 0.8, 1.0, 0 },
        { "zero-iteration, perp 5", 5, 0, 1.0, 1.0, 0.8, 1.0, 0 },
    };
    printf("single placement of %d test points, one core (points per CPU-second, best of 3); "
           "error in %% of map extent: mean / median / p95 / p99 / max\n", q);
    for (size_t s = 0; s < sizeof set / sizeof set[0]; s++) {
        tsne_place_options po;
        tsne_place_options_default(&po);
        po.perplexity = set[s].perp;
        po.n_iter = set[s].iters;
        po.learning_rate = set[s].lr;
        po.exaggeration = set[s].exag;
        po.momentum = set[s].mom;
        po.max_grad = set[s].clip;
        po.tol = set[s].tol;
        double best = INFINITY;
        for (int rep = 0; rep < 3; rep++) {
            long long c0 = clock_thread_cpu_ns();
            tsne_place_batch(m, &po, Q, q, 1, pos, NULL, err, sizeof err);
            double sec = (clock_thread_cpu_ns() - c0) * 1e-9;
            best = sec < best ? sec : best;
        }
        po.exact = 1;
        tsne_place_batch(m, &po, Q, q, a->threads, ref, NULL, err, sizeof err);
        double g[5], c[5];
        position_error(pos, ref, q, extent, g);
        position_error(pos, conv, q, extent, c);
        printf("  %-50s %8.0f points/s; vs same setting exact: mean %.3f%% max %.3f%%; "
               "vs converged perp-30 exact: %.3f / %.3f / %.2f / %.2f / %.2f %%\n", set[s].name,
               q / best, g[0], g[4], c[0], c[1], c[2], c[3], c[4]);
    }
    t0 = clock_seconds();
    double sum = 0;
    for (int i = 0; i < q; i++) sum += tsne_map_dmap(m, pos + 2 * i, 1, NULL, NULL);
    printf("D_MAP (k=1): %.2f us per query (mean %.3f)\n", (clock_seconds() - t0) / q * 1e6, sum / q);
co:
    tsne_place_options_default(&o);
    t0 = clock_seconds();
    int rc = tsne_coplace(m, &o, Q, q, pos, err, sizeof err);
    printf("co-placement of %d points (default settings, 1 thread): %.3f s%s\n", q,
           clock_seconds() - t0, rc ? " FAILED" : "");
    tsne_window *w = tsne_window_create(m, 2000, err, sizeof err);
    int batches = 0;
    double tw = 0;
    o.n_iter = 30;
    /* Fill the window, then time 100 batches of 32 (cycling through the test points). */
    for (int b = 0; w && b < 2000 / 32 + 100; b++) {
        int b0 = (b * 32) % (q - 32);
        t0 = clock_seconds();
        if (tsne_window_add(w, &o, Q + (size_t)b0 * d, 32, pos, err, sizeof err)) {
            fprintf(stderr, "bench-tsne: %s\n", err);
            break;
        }
        if (b >= 2000 / 32) {
            tw += clock_seconds() - t0;
            batches++;
        }
    }
    if (batches)
        printf("sliding window W=2000, batch 32, 30 iterations: %.2f ms per batch (%d batches)\n",
               tw / batches * 1e3, batches);
    tsne_window_free(w);
    tsne_map_free(m);
    free(X); free(Y); free(pos); free(ref); free(conv);
    return 0;
}

int bench_tsne_main(int argc, char **argv) {
    bench_args a;
    tsne_options o;
    char err[256];
    if (argc < 2 || parse_args(argc, argv, &a)) {
        fprintf(stderr, "usage: anodm bench-tsne fit|kl|place [options] (see cli/bench_tsne.c)\n");
        return 2;
    }
    fit_options(&a, &o);
    if (tsne_options_check(&o, 0, err, sizeof err)) {   /* before any data is read */
        fprintf(stderr, "bench-tsne: %s\n", err);
        return 2;
    }
    if (!strcmp(argv[1], "fit")) return bench_fit(&a);
    if (!strcmp(argv[1], "kl")) return bench_kl(&a);
    if (!strcmp(argv[1], "place")) return bench_place(&a);
    fprintf(stderr, "bench-tsne: unknown subcommand %s\n", argv[1]);
    return 2;
}
