/* anodm bench-tsne: the C side of the t-SNE benchmark (tests/bench_tsne.py runs
 * scikit-learn on the same data in the same run and calls these subcommands).
 *
 *   bench-tsne fit   --n N [--data DIR] [--pca 50] [--threads 2] [--iters 1000]
 *                    [--perplexity 30] [--save-x FILE] [--save-y FILE]
 *       PCA-50 of the first N Fashion-MNIST training images, fit, print time and KL.
 *   bench-tsne kl    --x FILE --y FILE --d D [--perplexity 30] [--threads 2]
 *       exact KL of a given 2-D embedding (raw float32 files) under our P.
 *   bench-tsne place --n N [--queries Q] [--data DIR] [--pca 50]
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

#include "dataset.h"
#include "tsne.h"

int bench_tsne_main(int argc, char **argv);

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct {
    const char *data_dir, *save_x, *save_y, *x_path, *y_path;
    int n, queries, pca, threads, iters, d;
    double perplexity;
} bench_args;

static int parse_args(int argc, char **argv, bench_args *a) {
    *a = (bench_args){ "/usr/share/datasets/fashion-mnist", NULL, NULL, NULL, NULL,
                       5000, 2000, 50, 2, 1000, 0, 30.0 };
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
        else if (!strcmp(k, "--threads")) a->threads = atoi(v);
        else if (!strcmp(k, "--iters")) a->iters = atoi(v);
        else if (!strcmp(k, "--perplexity")) a->perplexity = atof(v);
        else if (!strcmp(k, "--save-x")) a->save_x = v;
        else if (!strcmp(k, "--save-y")) a->save_y = v;
        else if (!strcmp(k, "--x")) a->x_path = v;
        else if (!strcmp(k, "--y")) a->y_path = v;
        else if (!strcmp(k, "--d")) a->d = atoi(v);
        else {
            fprintf(stderr, "bench-tsne: unknown option %s\n", k);
            return -1;
        }
    }
    return 0;
}

/* PCA to k dimensions of X (n x d): covariance by SSYRK, top-k subspace by 50 rounds of
 * subspace iteration with Gram-Schmidt, projection by SGEMM. Returns n x k or NULL. */
static float *pca(const float *X, int n, int d, int k) {
    float *mean = calloc((size_t)d, sizeof *mean), *C = calloc((size_t)d * d, sizeof *C);
    float *Xc = malloc((size_t)n * d * sizeof *Xc), *Q = malloc((size_t)d * k * sizeof *Q);
    float *W = malloc((size_t)d * k * sizeof *W), *out = malloc((size_t)n * k * sizeof *out);
    if (!mean || !C || !Xc || !Q || !W || !out) goto fail;
    for (int i = 0; i < n; i++)
        for (int c = 0; c < d; c++) mean[c] += X[(size_t)i * d + c] / n;
    for (int i = 0; i < n; i++)
        for (int c = 0; c < d; c++) Xc[(size_t)i * d + c] = X[(size_t)i * d + c] - mean[c];
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, d, n, 1.0f / n, Xc, d, 0.0f, C, d);
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
    /* PCA directions from the training part only */
    float *p = pca(all, n_train, d, a->pca);
    free(p);
    float *proj = pca(all, total, d, a->pca);
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
    fprintf(stderr, "  iter %4d/%d  KL %.4f  %.1f s\n", iter, n_iter, kl, now_s() - t0);
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
    tsne_options_default(&o);
    o.n_threads = a->threads;
    o.n_iter = a->iters;
    o.perplexity = a->perplexity;
    double t0 = now_s();
    o.progress = progress;
    o.progress_ctx = &t0;
    o.progress_every = 100;
    float *Y = malloc((size_t)n * 2 * sizeof *Y);
    double kl = 0;
    char err[256];
    int rc = Y ? tsne_fit(X, n, d, &o, Y, &kl, err, sizeof err) : -1;
    double t = now_s() - t0;
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

int bench_tsne_main(int argc, char **argv) {
    bench_args a;
    if (argc < 2 || parse_args(argc, argv, &a)) {
        fprintf(stderr, "usage: anodm bench-tsne fit|kl|place [options] (see cli/bench_tsne.c)\n");
        return 2;
    }
    if (!strcmp(argv[1], "fit")) return bench_fit(&a);
    if (!strcmp(argv[1], "kl")) return bench_kl(&a);
    fprintf(stderr, "bench-tsne: unknown subcommand %s\n", argv[1]);
    return 2;
}
