/* stream_lab — a quick harness for the stream memory's method (docs/STREAM.md), not part
 * of the product. `anodm experiment --stream` spends most of its time encoding and
 * placing samples; the memory and the fusions cost next to nothing. So:
 *
 *   stream_lab dump MODELS_DIR FMNIST_DIR CLASS OUT
 *       encodes, once, what the stream protocol of CLASS streams (the test set and the
 *       calibration stream of normals, built exactly as cmd_experiment.c builds them)
 *       with the cached 10-epoch detector: each sample's latent, z_re, z_latent and its
 *       distances to the KR nearest reference latents (raw and per-dimension z-scored);
 *       then the refs section: each reference point's latent and z_re (its image
 *       re-encoded), which the base score variants need;
 *   stream_lab refs MODELS_DIR FMNIST_DIR CLASS DUMP
 *       appends the refs section to a dump written before it existed;
 *   stream_lab eval [options] DUMP...
 *       replays those streams (same seeds and orders as stream.c) through a memory of
 *       the chosen settings and prints, per anomaly rate (1%, 5%, 10%), each candidate
 *       score's auROC, TPR at 1% FPR, recall and false-alarm rate at its quantile-0.99
 *       threshold on the calibration stream (the mean over the dumps, the worst in
 *       brackets); -v per class. Candidates: base (RE + latent), logk (the term at rank
 *       k, format 4's), logavg (the mean log ratio over ranks k1..k2), count (memory
 *       neighbours inside the reference's kc-NN radius, a Poisson tail), nbase (the mean
 *       base score of the k nearest kept latents), and their Fisher, min-p, weighted
 *       Fisher (--wm) and Stouffer fusions with base. Settings: --cap, --recent, --k,
 *       --k1, --k2, --kc, --space raw|z, --susp base|none|memory|memavg|fused (what a
 *       latent is kept with: z_re + z_latent, nothing, logk, logavg, base + z(logk)),
 *       --tau N (the suspicion decays by 1 every N samples), --rank 0|1|2 (logavg's
 *       reference rank: j, j * capacity / count, j * n_ref / count), --maxscale,
 *       --warm (each test stream starts from the calibration stream's memory), --burn N
 *       and --skip N (the first N of the calibration / test stream left out of the
 *       statistics / metrics), --head N (the metrics on the test stream's first N samples
 *       only: a short stream), --tail K (the p-values' exponential tail over the top K
 *       calibration values, score_log_p_tail: 0 none, the empirical p-value; default
 *       the product's size) on the base score or, with --tail-all, on every term;
 *       --base V (the base score variant V in its term's place) or --base V+ (V's z
 *       added to the product's base): see "base score variants" below;
 *   stream_lab base DUMP...
 *       single-sample scores without a memory (k-th and mean k-NN reference distances,
 *       raw and z-scored, alone and with RE; with refs sections, the base score
 *       variants alone, in their term's place and added to the base): auROC on the
 *       whole test set (and TPR at 1% FPR).
 *
 * The defaults (k 5, suspicion base, no decay) reproduce `anodm experiment --stream`'s
 * figures of format 4's memory exactly; `--susp memavg --tau 10000` is the
 * product's default since (k 10, k_min 3, company, horizon 10000): with `--k 10 --k1 3`.
 * Labels enter the metrics only. Measured figures: docs/results/stream-method-2026-12-03/,
 * the base score variants' docs/results/stream-base-2026-12-03/. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auroc.h"
#include "bundle.h"
#include "dataset.h"
#include "dataset_io.h"
#include "experiment.h"
#include "knn.h"
#include "pipeline.h"
#include "rng.h"
#include "score.h"
#include "stream.h"

#define KR 96                        /* reference neighbours kept per sample */
#define MAX_KM 64                    /* memory neighbours looked at per probe */

static void die(const char *what) {
    fprintf(stderr, "stream_lab: %s\n", what);
    exit(1);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory");
    return p;
}

/* ---- dump ------------------------------------------------------------------------ */

/* One stream's samples as the lab needs them. */
typedef struct {
    int n;
    int32_t *label;                  /* test only */
    float *mu;                       /* n x L */
    double *zre, *zlat;
    float *refd, *refdz;             /* n x KR: distances to the nearest reference latents */
    double *var;                     /* n x V_N: the base score variants (refs section) */
    double *base;                    /* n: eval --base's base score (NULL: the product's) */
} lab_set;

typedef struct {
    int L, n_ref;
    double alpha;
    float *scale;                    /* L: the reference latents' standard deviations */
    lab_set test, cal;
    double *ref_zre;                 /* n_ref, or NULL: a dump without its refs section */
    float *ref_lat;                  /* n_ref x L */
} lab_dump;

static void encode_set(const detector *d, const float *x, size_t n, size_t dim,
                       const float *packed, const float *packed_z,
                       lab_set *s, const float *scale) {
    const int L = d->vae.arch.latent;
    vae_workspace w;
    if (vae_workspace_init(&w, &d->vae, 1) != 0) die("workspace");
    float *rec = xmalloc(dim * sizeof *rec), *muz = xmalloc((size_t)L * sizeof *muz);
    int idx[KR];
    float d2[KR];
    s->n = (int)n;
    s->mu = xmalloc(n * (size_t)L * sizeof *s->mu);
    s->zre = xmalloc(n * sizeof *s->zre);
    s->zlat = xmalloc(n * sizeof *s->zlat);
    s->refd = xmalloc(n * KR * sizeof *s->refd);
    s->refdz = xmalloc(n * KR * sizeof *s->refdz);
    for (size_t i = 0; i < n; i++) {
        float *mu = s->mu + i * (size_t)L;
        vae_reconstruct(&d->vae, &w, x + i * dim, NULL, 1, rec, mu);
        s->zre[i] = score_standardise(score_recon_error(x + i * dim, rec, dim), d->re);
        knn_query_packed(packed, d->n_ref, L, mu, KR, -1, idx, d2);
        for (int r = 0; r < KR; r++) s->refd[i * KR + r] = sqrtf(d2[r]);
        s->zlat[i] = score_standardise(sqrt((double)d2[0]), d->latent);
        for (int j = 0; j < L; j++) muz[j] = mu[j] / scale[j];
        knn_query_packed(packed_z, d->n_ref, L, muz, KR, -1, idx, d2);
        for (int r = 0; r < KR; r++) s->refdz[i * KR + r] = sqrtf(d2[r]);
    }
    free(rec);
    free(muz);
    vae_workspace_free(&w);
}

static void write_set(FILE *f, const lab_set *s, int L, int labels) {
    size_t n = (size_t)s->n;
    fwrite(&s->n, sizeof s->n, 1, f);
    if (labels) fwrite(s->label, sizeof *s->label, n, f);
    fwrite(s->mu, sizeof *s->mu, n * (size_t)L, f);
    fwrite(s->zre, sizeof *s->zre, n, f);
    fwrite(s->zlat, sizeof *s->zlat, n, f);
    fwrite(s->refd, sizeof *s->refd, n * KR, f);
    fwrite(s->refdz, sizeof *s->refdz, n * KR, f);
}

/* The class's detector, and its normal training data split as build_detector split it
 * (cal, rest: the reference points are rows of rest, the bundle's ref_id). */
static void load_class(const char *models, const char *fmnist, int cls, detector *d,
                       dataset *cal, dataset *rest) {
    char err[512], path[1024];
    snprintf(path, sizeof path, "%s/fashion-mnist-cnn-class%d-beta0.01-e10-ref10000-seed1.anodm",
             models, cls);
    if (bundle_load(path, d, err, sizeof err) != 0) die(err);
    dataset normals = {0};
    if (dataset_load_fashion_mnist(&normals, fmnist, 1, err, sizeof err)) die(err);
    int32_t c32 = cls;
    if (dataset_filter_classes(&normals, &c32, 1, 1, err, sizeof err) != 0) die(err);
    build_opts bo;
    build_opts_default(&bo);
    if (dataset_split(&normals, bo.cal_frac, bo.train.seed, cal, rest, err, sizeof err) != 0)
        die(err);
}

/* The reference points' section of a dump: "SLABR", n_ref, each reference point's z_re
 * (its image re-encoded) and its latent (the bundle's ref_latent). The base score
 * variants (cmd_base, eval --base) need it; a dump without it serves everything else. */
static void write_refs(FILE *f, const detector *d, const dataset *rest) {
    const int L = d->vae.arch.latent, n = d->n_ref;
    vae_workspace w;
    if (vae_workspace_init(&w, &d->vae, 1) != 0) die("workspace");
    float *rec = xmalloc(rest->dim * sizeof *rec), *mu = xmalloc((size_t)L * sizeof *mu);
    double *zre = xmalloc((size_t)n * sizeof *zre), worst = 0;
    for (int i = 0; i < n; i++) {
        if (d->ref_id[i] < 0 || (size_t)d->ref_id[i] >= rest->n) die("a ref_id outside the split");
        const float *x = rest->x + (size_t)d->ref_id[i] * rest->dim;
        vae_reconstruct(&d->vae, &w, x, NULL, 1, rec, mu);
        zre[i] = score_standardise(score_recon_error(x, rec, rest->dim), d->re);
        for (int j = 0; j < L; j++)
            worst = fmax(worst, fabs((double)mu[j] - d->ref_latent[(size_t)i * L + j]));
    }
    /* the re-encoded latents must be the bundle's: the split is the build's */
    if (worst > 1e-3) die("the reference points do not re-encode to the bundle's latents");
    fwrite("SLABR", 1, 5, f);
    fwrite(&n, sizeof n, 1, f);
    fwrite(zre, sizeof *zre, (size_t)n, f);
    fwrite(d->ref_latent, sizeof *d->ref_latent, (size_t)n * L, f);
    free(rec);
    free(mu);
    free(zre);
    vae_workspace_free(&w);
}

static int cmd_dump(int argc, char **argv) {
    if (argc != 4) die("dump MODELS_DIR FMNIST_DIR CLASS OUT");
    char err[512];
    const int cls = atoi(argv[2]);
    detector d = {0};
    dataset test = {0}, cal = {0}, rest = {0};
    load_class(argv[0], argv[1], cls, &d, &cal, &rest);
    if (dataset_load_fashion_mnist(&test, argv[1], 0, err, sizeof err)) die(err);
    build_opts bo;
    build_opts_default(&bo);
    float *cs = NULL;
    size_t ncs = 0;
    if (stream_normals(cal.x, cal.n, rest.x, rest.n, cal.dim, d.ref_id, d.n_ref,
                       STREAM_NORMALS_MAX, bo.train.seed ^ 0x5EEDULL, &cs, &ncs, err,
                       sizeof err) != 0)
        die(err);
    const int L = d.vae.arch.latent;
    lab_dump D = {.L = L, .n_ref = d.n_ref, .alpha = d.alpha};
    D.scale = xmalloc((size_t)L * sizeof *D.scale);
    for (int j = 0; j < L; j++) {
        double m = 0, v = 0;
        for (int i = 0; i < d.n_ref; i++) m += d.ref_latent[(size_t)i * L + j];
        m /= d.n_ref;
        for (int i = 0; i < d.n_ref; i++) {
            double t = d.ref_latent[(size_t)i * L + j] - m;
            v += t * t;
        }
        D.scale[j] = (float)fmax(sqrt(v / d.n_ref), 1e-6);
    }
    float *refz = xmalloc((size_t)d.n_ref * L * sizeof *refz);
    for (size_t i = 0; i < (size_t)d.n_ref * L; i++) refz[i] = d.ref_latent[i] / D.scale[i % L];
    float *packed = xmalloc(knn_packed_floats(d.n_ref, L) * sizeof *packed);
    float *packed_z = xmalloc(knn_packed_floats(d.n_ref, L) * sizeof *packed_z);
    knn_pack(packed, d.ref_latent, d.n_ref, L);
    knn_pack(packed_z, refz, d.n_ref, L);
    encode_set(&d, test.x, test.n, test.dim, packed, packed_z, &D.test, D.scale);
    D.test.label = test.labels;
    encode_set(&d, cs, ncs, cal.dim, packed, packed_z, &D.cal, D.scale);
    FILE *f = fopen(argv[3], "wb");
    if (!f) die("cannot write the dump");
    fwrite("SLAB1", 1, 5, f);
    fwrite(&D.L, sizeof D.L, 1, f);
    fwrite(&D.n_ref, sizeof D.n_ref, 1, f);
    fwrite(&D.alpha, sizeof D.alpha, 1, f);
    fwrite(D.scale, sizeof *D.scale, (size_t)L, f);
    write_set(f, &D.test, L, 1);
    write_set(f, &D.cal, L, 0);
    write_refs(f, &d, &rest);
    if (fclose(f) != 0) die("cannot write the dump");
    printf("class %d: %d test, %d calibration stream samples\n", cls, D.test.n, D.cal.n);
    return 0;
}

static void read_all(FILE *f, void *p, size_t size, size_t n) {
    if (fread(p, size, n, f) != n) die("short dump");
}

static void read_set(FILE *f, lab_set *s, int L, int labels) {
    read_all(f, &s->n, sizeof s->n, 1);
    size_t n = (size_t)s->n;
    s->label = NULL;
    if (labels) read_all(f, s->label = xmalloc(n * sizeof *s->label), sizeof *s->label, n);
    read_all(f, s->mu = xmalloc(n * L * sizeof *s->mu), sizeof *s->mu, n * L);
    read_all(f, s->zre = xmalloc(n * sizeof *s->zre), sizeof *s->zre, n);
    read_all(f, s->zlat = xmalloc(n * sizeof *s->zlat), sizeof *s->zlat, n);
    read_all(f, s->refd = xmalloc(n * KR * sizeof *s->refd), sizeof *s->refd, n * KR);
    read_all(f, s->refdz = xmalloc(n * KR * sizeof *s->refdz), sizeof *s->refdz, n * KR);
}

static void load_dump(const char *path, lab_dump *D) {
    FILE *f = fopen(path, "rb");
    char magic[5];
    if (!f) die("cannot open a dump");
    read_all(f, magic, 1, 5);
    if (memcmp(magic, "SLAB1", 5)) die("not a stream_lab dump");
    read_all(f, &D->L, sizeof D->L, 1);
    read_all(f, &D->n_ref, sizeof D->n_ref, 1);
    read_all(f, &D->alpha, sizeof D->alpha, 1);
    read_all(f, D->scale = xmalloc((size_t)D->L * sizeof *D->scale), sizeof *D->scale,
             (size_t)D->L);
    read_set(f, &D->test, D->L, 1);
    read_set(f, &D->cal, D->L, 0);
    D->test.var = D->cal.var = D->test.base = D->cal.base = NULL;
    D->ref_zre = NULL;
    D->ref_lat = NULL;
    size_t got = fread(magic, 1, 5, f);   /* the refs section, or the end */
    if (got == 5 && !memcmp(magic, "SLABR", 5)) {
        int n;
        read_all(f, &n, sizeof n, 1);
        if (n != D->n_ref) die("the refs section's size is not the dump's n_ref");
        read_all(f, D->ref_zre = xmalloc((size_t)n * sizeof *D->ref_zre), sizeof *D->ref_zre,
                 (size_t)n);
        read_all(f, D->ref_lat = xmalloc((size_t)n * D->L * sizeof *D->ref_lat),
                 sizeof *D->ref_lat, (size_t)n * D->L);
        got = fread(magic, 1, 1, f);
    }
    if (got != 0) die("a dump of another format: bytes after its sections");
    fclose(f);
}

/* stream_lab refs: the refs section appended to a dump written without it. */
static int cmd_refs(int argc, char **argv) {
    if (argc != 4) die("refs MODELS_DIR FMNIST_DIR CLASS DUMP");
    lab_dump D;
    load_dump(argv[3], &D);
    if (D.ref_zre) die("the dump has its refs section already");
    detector d = {0};
    dataset cal = {0}, rest = {0};
    load_class(argv[0], argv[1], atoi(argv[2]), &d, &cal, &rest);
    if (d.n_ref != D.n_ref || d.vae.arch.latent != D.L) die("the dump is another model's");
    FILE *f = fopen(argv[3], "ab");
    if (!f) die("cannot append to the dump");
    write_refs(f, &d, &rest);
    if (fclose(f) != 0) die("cannot append to the dump");
    return 0;
}

/* ---- base score variants: single-sample, label-free, from the reference points ----- */

/* Per sample x, N_k(x) its k nearest reference latents, d_k(.) the distance to the k-th
 * nearest reference latent (a reference point's own: among the others):
 *   lofK   log d_k(x) - log mean_{r in N_k(x)} d_k(r): x's k-NN distance against its
 *          neighbours' own, a local density ratio (LOF's idea without reachability);
 *   lreK   (z_re(x) - mean_{N_k(x)} z_re(r)) / sd_{N_k(x)} z_re(r): x's reconstruction
 *          error against its latent neighbours' (how unusual RE is *there*);
 *   lrdK   z_re(x) - mean_{N_k(x)} z_re(r), the same without the local scale;
 *   maha   the Mahalanobis distance of x's latent to the reference latents' Gaussian
 *          (mean and full covariance). */
enum { V_LOF5, V_LOF10, V_LOF20, V_LOF50, V_LRE10, V_LRE20, V_LRD10, V_LRD20, V_MAHA, V_N };
static const char *const VAR_NAME[V_N] = {"lof5", "lof10", "lof20", "lof50", "lre10", "lre20",
                                          "lrd10", "lrd20", "maha"};
static const int VAR_K[V_N] = {5, 10, 20, 50, 10, 20, 10, 20, 0};
/* which base term a variant stands in for: 1 z_re (lre, lrd), 0 z_latent */
static const int VAR_IS_RE[V_N] = {0, 0, 0, 0, 1, 1, 1, 1, 0};
#define KV 50                        /* the largest k above */

/* Cholesky factor (lower, in place) of the L x L symmetric positive definite a. */
static void cholesky(double *a, int L) {
    for (int j = 0; j < L; j++) {
        for (int k = 0; k < j; k++)
            for (int i = j; i < L; i++) a[i * L + j] -= a[i * L + k] * a[j * L + k];
        if (a[j * L + j] <= 0) die("the reference latents' covariance is singular");
        double r = sqrt(a[j * L + j]);
        for (int i = j; i < L; i++) a[i * L + j] /= r;
    }
}

static void variants_of(const lab_dump *D, lab_set *s, const float *packed, const double *rdk,
                        const double *mean, const double *chol) {
    const int L = D->L, n_ref = D->n_ref;
    int idx[KV];
    float d2[KV];
    double *y = xmalloc((size_t)L * sizeof *y), worst = 0;
    s->var = xmalloc((size_t)s->n * V_N * sizeof *s->var);
    for (int i = 0; i < s->n; i++) {
        const float *x = s->mu + (size_t)i * L;
        double *v = s->var + (size_t)i * V_N;
        knn_query_packed(packed, n_ref, L, x, KV, -1, idx, d2);
        worst = fmax(worst, fabs(sqrt((double)d2[0]) - s->refd[(size_t)i * KR]));
        for (int q = 0; q < V_N; q++) {
            const int k = VAR_K[q];
            if (q <= V_LOF50) {
                double a = 0;
                for (int r = 0; r < k; r++) a += rdk[(size_t)idx[r] * KV + k - 1];
                v[q] = log(fmax(sqrt((double)d2[k - 1]), 1e-12)) - log(fmax(a / k, 1e-12));
            } else if (q < V_MAHA) {
                double m = 0, m2 = 0;
                for (int r = 0; r < k; r++) {
                    m += D->ref_zre[idx[r]];
                    m2 += D->ref_zre[idx[r]] * D->ref_zre[idx[r]];
                }
                m /= k;
                double sd = sqrt(fmax(m2 / k - m * m, 0));
                v[q] = q <= V_LRE20 ? (s->zre[i] - m) / fmax(sd, 1e-6) : s->zre[i] - m;
            } else {   /* forward substitution: |chol^-1 (x - mean)| */
                double a = 0;
                for (int j = 0; j < L; j++) {
                    double t = x[j] - mean[j];
                    for (int c = 0; c < j; c++) t -= chol[j * L + c] * y[c];
                    y[j] = t / chol[j * L + j];
                    a += y[j] * y[j];
                }
                v[q] = sqrt(a);
            }
        }
    }
    /* the neighbours found here must be the dump's own */
    if (worst > 1e-3) die("the refs section does not match the dump's reference distances");
    free(y);
}

/* Every variant of every test and calibration sample (a dump with its refs section). */
static void lab_variants(lab_dump *D) {
    const int L = D->L, n = D->n_ref;
    if (!D->ref_zre) die("a dump without its refs section (stream_lab refs)");
    char err[256];
    int *ridx = xmalloc((size_t)n * KV * sizeof *ridx);
    float *rd2 = xmalloc((size_t)n * KV * sizeof *rd2);
    double *rdk = xmalloc((size_t)n * KV * sizeof *rdk);
    if (knn_all(D->ref_lat, n, L, KV, 2, ridx, rd2, err, sizeof err) != 0) die(err);
    for (size_t i = 0; i < (size_t)n * KV; i++) rdk[i] = sqrt((double)rd2[i]);
    double *mean = calloc((size_t)L, sizeof *mean), *cov = calloc((size_t)L * L, sizeof *cov);
    if (!mean || !cov) die("out of memory");
    for (int i = 0; i < n; i++)
        for (int j = 0; j < L; j++) mean[j] += D->ref_lat[(size_t)i * L + j] / n;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < L; j++)
            for (int c = 0; c <= j; c++)
                cov[j * L + c] += ((double)D->ref_lat[(size_t)i * L + j] - mean[j]) *
                                  ((double)D->ref_lat[(size_t)i * L + c] - mean[c]) / n;
    cholesky(cov, L);
    float *packed = xmalloc(knn_packed_floats(n, L) * sizeof *packed);
    knn_pack(packed, D->ref_lat, n, L);
    variants_of(D, &D->test, packed, rdk, mean, cov);
    variants_of(D, &D->cal, packed, rdk, mean, cov);
    free(ridx);
    free(rd2);
    free(rdk);
    free(mean);
    free(cov);
    free(packed);
}

/* Variant q of set s standardised by the calibration stream's median and MAD. */
static void variant_z(const lab_dump *D, const lab_set *s, int q, double *out) {
    double *v = xmalloc((size_t)D->cal.n * sizeof *v);
    for (int i = 0; i < D->cal.n; i++) v[i] = D->cal.var[(size_t)i * V_N + q];
    term_stats st = score_term_stats(v, (size_t)D->cal.n);
    for (int i = 0; i < s->n; i++) out[i] = score_standardise(s->var[(size_t)i * V_N + q], st);
    free(v);
}

/* The base score modes: 0 the variant alone; 1 it stands in for its term in the
 * product's alpha z_re + (1 - alpha) z_latent; 2 the product's base plus its z. */
static void variant_base(const lab_dump *D, const lab_set *s, int q, int mode, double *out) {
    variant_z(D, s, q, out);
    for (int i = 0; i < s->n; i++) {
        double b = D->alpha * s->zre[i] + (1 - D->alpha) * s->zlat[i];
        if (mode == 1)
            b = VAR_IS_RE[q] ? D->alpha * out[i] + (1 - D->alpha) * s->zlat[i]
                             : D->alpha * s->zre[i] + (1 - D->alpha) * out[i];
        if (mode == 2) b += out[i];
        if (mode != 0) out[i] = b;
    }
}

/* ---- the lab's memory: the retention of core/memory.c, with per-slot extras ------ */

typedef struct {
    int L, cap, recent_cap, heap_cap, count, head, ring_len, heap_len;
    float *lat;
    double *susp, *base;             /* per slot: retention's suspicion, the base score */
    int *heap_pos, *ring, *heap;
} lmem;

static void lmem_init(lmem *m, int L, int cap, double recent_share) {
    memset(m, 0, sizeof *m);
    m->L = L;
    m->cap = cap;
    m->recent_cap = (int)lround(cap * recent_share);
    if (m->recent_cap < 1) m->recent_cap = 1;
    m->heap_cap = cap - m->recent_cap;
    m->lat = xmalloc((size_t)cap * L * sizeof *m->lat);
    m->susp = xmalloc((size_t)cap * sizeof *m->susp);
    m->base = xmalloc((size_t)cap * sizeof *m->base);
    m->heap_pos = xmalloc((size_t)cap * sizeof *m->heap_pos);
    m->ring = xmalloc((size_t)m->recent_cap * sizeof *m->ring);
    m->heap = xmalloc((size_t)(m->heap_cap + 1) * sizeof *m->heap);
}

static void lmem_free(lmem *m) {
    free(m->lat);
    free(m->susp);
    free(m->base);
    free(m->heap_pos);
    free(m->ring);
    free(m->heap);
}

/* A deep copy of src into a fresh m. */
static void lmem_copy(lmem *m, const lmem *src) {
    lmem_init(m, src->L, src->cap, (double)src->recent_cap / src->cap);
    int L = m->L, cap = m->cap;
    memcpy(m->lat, src->lat, (size_t)cap * L * sizeof *m->lat);
    memcpy(m->susp, src->susp, (size_t)cap * sizeof *m->susp);
    memcpy(m->base, src->base, (size_t)cap * sizeof *m->base);
    memcpy(m->heap_pos, src->heap_pos, (size_t)cap * sizeof *m->heap_pos);
    memcpy(m->ring, src->ring, (size_t)m->recent_cap * sizeof *m->ring);
    memcpy(m->heap, src->heap, (size_t)(m->heap_cap + 1) * sizeof *m->heap);
    m->count = src->count;
    m->head = src->head;
    m->ring_len = src->ring_len;
    m->heap_len = src->heap_len;
}

static void hset(lmem *m, int at, int slot) {
    m->heap[at] = slot;
    m->heap_pos[slot] = at;
}

static void hdown(lmem *m, int at) {
    for (;;) {
        int low = at, l = 2 * at + 1, r = l + 1;
        if (l < m->heap_len && m->susp[m->heap[l]] < m->susp[m->heap[low]]) low = l;
        if (r < m->heap_len && m->susp[m->heap[r]] < m->susp[m->heap[low]]) low = r;
        if (low == at) return;
        int s = m->heap[at];
        hset(m, at, m->heap[low]);
        hset(m, low, s);
        at = low;
    }
}

static void hup(lmem *m, int at) {
    while (at > 0) {
        int p = (at - 1) / 2;
        if (m->susp[m->heap[p]] <= m->susp[m->heap[at]]) return;
        int s = m->heap[at];
        hset(m, at, m->heap[p]);
        hset(m, p, s);
        at = p;
    }
}

static int age_out(lmem *m) {
    int slot = m->ring[m->head];
    m->head = (m->head + 1) % m->recent_cap;
    m->ring_len--;
    if (m->heap_len < m->heap_cap) {
        hset(m, m->heap_len++, slot);
        hup(m, m->heap_len - 1);
        return -1;
    }
    if (m->heap_len == 0 || m->susp[slot] <= m->susp[m->heap[0]]) return slot;
    int freed = m->heap[0];
    hset(m, 0, slot);
    hdown(m, 0);
    return freed;
}

/* nearest: x's distance to its nearest kept latent and that slot (-1: empty). */
static void lmem_keep(lmem *m, const float *x, double susp, double base, double nearest,
                      int nearest_slot) {
    if (nearest_slot >= 0 && nearest <= 0.0) {
        if (susp > m->susp[nearest_slot]) {
            m->susp[nearest_slot] = susp;
            if (m->heap_pos[nearest_slot] >= 0) hdown(m, m->heap_pos[nearest_slot]);
        }
        return;
    }
    int slot = -1;
    if (m->ring_len == m->recent_cap) slot = age_out(m);
    if (slot < 0) slot = m->count++;
    memcpy(m->lat + (size_t)slot * m->L, x, (size_t)m->L * sizeof *x);
    m->susp[slot] = susp;
    m->base[slot] = base;
    m->heap_pos[slot] = -1;
    m->ring[(m->head + m->ring_len++) % m->recent_cap] = slot;
}

/* ---- the candidate terms ---------------------------------------------------------- */

typedef enum { SUSP_BASE, SUSP_NONE, SUSP_MEMORY, SUSP_FUSED, SUSP_MEMAVG } susp_kind;

typedef struct {
    int cap, k, k1, k2, kc, zspace, warm;
    double recent, tau;
    int burn;                        /* calibration statistics skip the stream's first burn */
    int skip;                        /* test metrics skip the stream's first skip */
    int head;                        /* test metrics on the stream's first head only (0: all) */
    int rank;                        /* logavg's reference rank: 0 k, 1 fill, 2 mass */
    double maxscale;                 /* the rank's scale at most this (0: KR / rank) */
    susp_kind susp;
    int verbose;
} lab_opts;

/* The terms every sample gets; a fusion is chosen among them afterwards. */
enum { T_BASE, T_LOGK, T_LOGAVG, T_COUNT, T_NBASE, T_POS, T_N };   /* T_POS: stream position */

/* log P(X >= c) for X ~ Poisson(lam), c >= 0. */
static double poisson_log_tail(int c, double lam) {
    if (c <= 0) return 0.0;
    if (lam <= 0) return -INFINITY;
    /* P(X < c) summed exactly; the tail is its complement, or the leading term's sum
     * when the complement loses precision. */
    double term = exp(-lam), below = 0.0;
    for (int i = 0; i < c; i++) {
        below += term;
        term *= lam / (i + 1);
    }
    if (below < 0.9) return log1p(-below);
    double tail = 0.0, t = exp(-lam);
    for (int i = 1; i <= c; i++) t *= lam / i;        /* P(X = c) */
    for (int i = c; i < c + 400 && t > tail * 1e-17; i++) {
        tail += t;
        t *= lam / (i + 1);
    }
    return log(tail);
}

/* One sample probed against the memory (nothing changes): every term into t. */
static void probe(const lmem *m, const lab_opts *o, const float *x, const float *refd,
                  int n_ref, double base, double *t, double *nearest, int *nearest_slot) {
    const int L = m->L;
    double best[MAX_KM];
    int bslot[MAX_KM], nb = 0, want = o->k2 > o->k ? o->k2 : o->k;
    if (o->kc > want) want = o->kc;
    if (want > MAX_KM) want = MAX_KM;
    const double rc = refd[o->kc - 1];
    int count = 0;
    for (int s = 0; s < m->count; s++) {
        const float *y = m->lat + (size_t)s * L;
        double d2 = 0;
        for (int j = 0; j < L; j++) {
            double v = (double)x[j] - y[j];
            d2 += v * v;
        }
        double dd = sqrt(d2);
        count += dd < rc;
        if (nb < want || dd < best[nb - 1]) {
            int at = nb < want ? nb++ : nb - 1;
            while (at > 0 && best[at - 1] > dd) {
                best[at] = best[at - 1];
                bslot[at] = bslot[at - 1];
                at--;
            }
            best[at] = dd;
            bslot[at] = s;
        }
    }
    *nearest = nb ? best[0] : INFINITY;
    *nearest_slot = nb ? bslot[0] : -1;
    t[T_BASE] = base;
    t[T_LOGK] = nb >= o->k ? log(fmax(refd[o->k - 1], 1e-12)) - log(fmax(best[o->k - 1], 1e-12))
                           : 0.0;
    double acc = 0;
    int na = 0;
    /* the reference's rank against the memory's k: k (plain), k * capacity / count (the
     * fill corrected: as if the memory were full), k * n_ref / count (equal mass) */
    double scale = o->rank == 0 ? 1.0 : o->rank == 1 ? (double)m->cap / fmax(m->count, 1)
                                                     : (double)n_ref / fmax(m->count, 1);
    if (o->maxscale > 0) scale = fmin(scale, o->maxscale);
    for (int k = o->k1; k <= o->k2 && k <= nb; k++, na++) {
        double r = fmin(k * scale, KR);
        int lo = (int)r;
        double f = r - lo, lref = log(fmax(refd[lo - 1], 1e-12));
        if (f > 0 && lo < KR) lref += f * (log(fmax(refd[lo], 1e-12)) - lref);
        acc += lref - log(fmax(best[k - 1], 1e-12));
    }
    t[T_LOGAVG] = na == o->k2 - o->k1 + 1 ? acc / na : 0.0;
    /* memory neighbours inside the reference's kc-NN radius against the count a memory
     * of normal traffic would hold there, kc * count / n_ref */
    t[T_COUNT] = -poisson_log_tail(count, o->kc * (double)m->count / n_ref);
    /* the suspicion of x's company: mean base score of its k nearest kept latents */
    double sb = 0;
    for (int r = 0; r < nb && r < o->k; r++) sb += m->base[bslot[r]];
    t[T_NBASE] = nb >= o->k ? sb / o->k : 0.0;
}

/* Replay n samples of s (indices sel, or all) in the seeded order through a fresh
 * memory; terms into t[T_N * i] (original order). fuse_susp: the suspicion for
 * SUSP_MEMORY / SUSP_FUSED needs the memory term standardised: mstat. */
static void replay(const lab_dump *D, const lab_set *s, const size_t *sel, int n,
                   uint64_t seed, const lab_opts *o, const term_stats *mstat, double *t) {
    static lmem warm;                /* --warm: the calibration stream's memory, kept */
    lmem m;
    if (o->warm && sel) lmem_copy(&m, &warm);
    else lmem_init(&m, D->L, o->cap, o->recent);
    size_t *order = xmalloc((size_t)n * sizeof *order);
    rng_t r;
    rng_seed(&r, seed);
    for (int i = 0; i < n; i++) order[i] = (size_t)i;
    rng_shuffle(&r, order, (size_t)n);
    float *xz = xmalloc((size_t)D->L * sizeof *xz);
    for (int i = 0; i < n; i++) {
        size_t at = order[i], row = sel ? sel[at] : at;
        const float *x = s->mu + row * D->L;
        if (o->zspace) {
            for (int j = 0; j < D->L; j++) xz[j] = x[j] / D->scale[j];
            x = xz;
        }
        const float *refd = (o->zspace ? s->refdz : s->refd) + row * KR;
        double base = s->base ? s->base[row]
                              : D->alpha * s->zre[row] + (1 - D->alpha) * s->zlat[row];
        double *ti = t + T_N * (sel ? at : (size_t)i), nearest;   /* calibration: stream order */
        int nslot;
        probe(&m, o, x, refd, D->n_ref, base, ti, &nearest, &nslot);
        double susp = s->zre[row] + s->zlat[row];
        if (o->susp == SUSP_NONE) susp = 0;
        if (o->susp == SUSP_MEMORY) susp = ti[T_LOGK];
        if (o->susp == SUSP_MEMAVG) susp = ti[T_LOGAVG];
        /* decay: an older latent must be more suspicious by its age / tau to stay */
        if (o->tau > 0) susp += (double)(i + (o->warm && sel ? D->cal.n : 0)) / o->tau;
        if (o->susp == SUSP_FUSED) susp = base + score_standardise(ti[T_LOGK], mstat[T_LOGK]);
        ti[T_POS] = i;
        lmem_keep(&m, x, susp, base, nearest, nslot);
    }
    free(xz);
    free(order);
    if (o->warm && !sel) {   /* the calibration stream: each test stream starts from it */
        if (warm.lat) lmem_free(&warm);
        warm = m;
    } else {
        lmem_free(&m);
    }
}

/* ---- fusions and metrics -------------------------------------------------------- */

enum { F_BASE, F_LOGK, F_LOGAVG, F_COUNT, F_NBASE, F_FISHER_LOGK, F_FISHER_LOGAVG,
       F_FISHER_COUNT, F_FISHER_NBASE, F_FISHER3, F_MINP_LOGAVG, F_MINP3, F_WFISHER,
       F_STOUFFER, F_N };
static const char *const FUSION_LABEL[F_N] = {
    "base", "logk", "logavg", "count", "nbase", "fisher(base,logk)", "fisher(base,logavg)",
    "fisher(base,count)", "fisher(base,nbase)", "fisher(base,logavg,nbase)",
    "minp(base,logavg)", "minp(base,logavg,nbase)", "wfisher(base,logavg)",
    "stouffer(base,logavg)"};
static double memory_weight = 1.0;   /* wfisher: the memory term's weight, the base's 1 */

/* The standard normal's upper quantile of p (p in (0, 1)), by bisection on erfc. */
static double upper_normal_quantile(double p) {
    double lo = -40, hi = 40;
    for (int i = 0; i < 100; i++) {
        double mid = 0.5 * (lo + hi);
        if (0.5 * erfc(mid / sqrt(2.0)) > p) lo = mid;
        else hi = mid;
    }
    return 0.5 * (lo + hi);
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Calibration: each term's ascending values on the normal stream (p-values). */
typedef struct {
    float *asc[T_N];
    int n;
    double thr[F_N];
} lab_cal;

/* The p-values' tail (score_log_p_tail): its size (-1: the product's, score_tail_size;
 * 0: none, the empirical p-value), on the base score alone or on every term. */
static long tail_k = -1;
static int tail_all = 0;

static double lp(const lab_cal *c, int term, double v) {
    const size_t n = (size_t)c->n;
    if (term == T_BASE || tail_all)
        return score_log_p_tail(c->asc[term], n, tail_k < 0 ? score_tail_size(n) : (size_t)tail_k,
                                v);
    return log(score_p_value(c->asc[term], n, v));
}

static double fuse(const lab_cal *c, int f, const double *t) {
    switch (f) {
    case F_BASE: case F_LOGK: case F_LOGAVG: case F_COUNT: case F_NBASE: return t[f];
    case F_FISHER_LOGK: return -2 * (lp(c, T_BASE, t[T_BASE]) + lp(c, T_LOGK, t[T_LOGK]));
    case F_FISHER_LOGAVG: return -2 * (lp(c, T_BASE, t[T_BASE]) + lp(c, T_LOGAVG, t[T_LOGAVG]));
    case F_FISHER_COUNT: return -2 * (lp(c, T_BASE, t[T_BASE]) + lp(c, T_COUNT, t[T_COUNT]));
    case F_FISHER_NBASE: return -2 * (lp(c, T_BASE, t[T_BASE]) + lp(c, T_NBASE, t[T_NBASE]));
    case F_FISHER3:
        return -2 * (lp(c, T_BASE, t[T_BASE]) + lp(c, T_LOGAVG, t[T_LOGAVG]) +
                     lp(c, T_NBASE, t[T_NBASE]));
    case F_MINP_LOGAVG: return -fmin(lp(c, T_BASE, t[T_BASE]), lp(c, T_LOGAVG, t[T_LOGAVG]));
    case F_WFISHER:
        return -2 * (lp(c, T_BASE, t[T_BASE]) + memory_weight * lp(c, T_LOGAVG, t[T_LOGAVG]));
    case F_STOUFFER:
        return upper_normal_quantile(exp(lp(c, T_BASE, t[T_BASE]))) +
               upper_normal_quantile(exp(lp(c, T_LOGAVG, t[T_LOGAVG])));
    case F_MINP3:
        return -fmin(lp(c, T_BASE, t[T_BASE]),
                     fmin(lp(c, T_LOGAVG, t[T_LOGAVG]), lp(c, T_NBASE, t[T_NBASE])));
    }
    return NAN;
}

typedef struct { double auc, tpr, recall, fa; } lab_metric;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void calibrate(const lab_dump *D, const lab_opts *o, lab_cal *c, term_stats *mstat) {
    int n = D->cal.n;
    double *t = xmalloc((size_t)n * T_N * sizeof *t), *v = xmalloc((size_t)n * sizeof *v);
    for (int k = 0; k < T_N; k++) mstat[k] = (term_stats){0, 1};
    if (o->susp != SUSP_BASE && o->susp != SUSP_NONE) {   /* first pass: the terms' scales */
        lab_opts o1 = *o;
        o1.susp = SUSP_BASE;
        replay(D, &D->cal, NULL, n, 1 ^ 0xCA1ULL, &o1, mstat, t);
        for (int k = 0; k < T_N; k++) {
            for (int i = 0; i < n; i++) v[i] = t[T_N * i + k];
            mstat[k] = score_term_stats(v, (size_t)n);
        }
    }
    replay(D, &D->cal, NULL, n, 1 ^ 0xCA1ULL, o, mstat, t);
    if (o->burn > 0 && o->burn < n) {   /* the steady state only */
        memmove(t, t + (size_t)o->burn * T_N, (size_t)(n - o->burn) * T_N * sizeof *t);
        n -= o->burn;
    }
    c->n = n;
    for (int k = 0; k < T_N; k++) {
        c->asc[k] = xmalloc((size_t)n * sizeof *c->asc[k]);
        for (int i = 0; i < n; i++) c->asc[k][i] = (float)t[T_N * i + k];
        qsort(c->asc[k], (size_t)n, sizeof *c->asc[k], cmp_float);
    }
    for (int f = 0; f < F_N; f++) {
        for (int i = 0; i < n; i++) v[i] = fuse(c, f, t + T_N * i);
        qsort(v, (size_t)n, sizeof *v, cmp_double);
        c->thr[f] = score_quantile(v, (size_t)n, 0.99);
    }
    free(t);
    free(v);
}

static void evaluate(const lab_dump *D, int cls, double rate, const lab_opts *o,
                     const lab_cal *c, const term_stats *mstat, lab_metric *out) {
    const lab_set *s = &D->test;
    int *pos = xmalloc((size_t)s->n * sizeof *pos);
    size_t *sel = xmalloc((size_t)s->n * sizeof *sel);
    for (int i = 0; i < s->n; i++) pos[i] = s->label[i] == cls;
    size_t n = experiment_anomaly_subset(pos, (size_t)s->n, rate, 1, sel);
    int *is_pos = xmalloc(n * sizeof *is_pos);
    for (size_t j = 0; j < n; j++) is_pos[j] = pos[sel[j]];
    double *t = xmalloc(n * T_N * sizeof *t), *sc = xmalloc(n * sizeof *sc);
    replay(D, s, sel, (int)n, 1, o, mstat, t);
    if (o->skip > 0 || o->head > 0) {   /* metrics on stream positions skip..head - 1 */
        size_t w = 0;
        for (size_t i = 0; i < n; i++)
            if (t[T_N * i + T_POS] >= o->skip && (o->head <= 0 || t[T_N * i + T_POS] < o->head)) {
                memmove(t + T_N * w, t + T_N * i, T_N * sizeof *t);
                is_pos[w++] = is_pos[i];
            }
        n = w;
    }
    for (int f = 0; f < F_N; f++) {
        size_t tp = 0, fp = 0, np = 0;
        for (size_t i = 0; i < n; i++) {
            sc[i] = fuse(c, f, t + T_N * i);
            int flag = sc[i] > c->thr[f];
            tp += (size_t)(flag && is_pos[i]);
            fp += (size_t)(flag && !is_pos[i]);
            np += (size_t)is_pos[i];
        }
        out[f] = (lab_metric){auroc(sc, is_pos, n), roc_tpr_at_fpr(sc, is_pos, n, 0.01),
                              (double)tp / np, (double)fp / (n - np)};
    }
    free(pos);
    free(sel);
    free(is_pos);
    free(t);
    free(sc);
}

static int cmd_eval(int argc, char **argv) {
    lab_opts o = {.cap = 2000, .k = 5, .k1 = 3, .k2 = 10, .kc = 10, .recent = 0.5};
    int i = 0, base_q = -1, base_mode = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "-v")) { o.verbose = 1; continue; }
        if (!strcmp(a, "--warm")) { o.warm = 1; continue; }
        if (!strcmp(a, "--tail-all")) { tail_all = 1; continue; }
        i++;
        if (!strcmp(a, "--cap")) o.cap = atoi(v);
        else if (!strcmp(a, "--k")) o.k = atoi(v);
        else if (!strcmp(a, "--k1")) o.k1 = atoi(v);
        else if (!strcmp(a, "--k2")) o.k2 = atoi(v);
        else if (!strcmp(a, "--kc")) o.kc = atoi(v);
        else if (!strcmp(a, "--recent")) o.recent = atof(v);
        else if (!strcmp(a, "--wm")) memory_weight = atof(v);
        else if (!strcmp(a, "--tail")) tail_k = atol(v);
        else if (!strcmp(a, "--tau")) o.tau = atof(v);
        else if (!strcmp(a, "--burn")) o.burn = atoi(v);
        else if (!strcmp(a, "--skip")) o.skip = atoi(v);
        else if (!strcmp(a, "--head")) o.head = atoi(v);
        else if (!strcmp(a, "--rank")) o.rank = atoi(v);
        else if (!strcmp(a, "--maxscale")) o.maxscale = atof(v);
        else if (!strcmp(a, "--space")) o.zspace = !strcmp(v, "z");
        else if (!strcmp(a, "--base")) {   /* NAME: in its term's place; NAME+: added */
            size_t len = strlen(v);
            base_mode = len && v[len - 1] == '+' ? 2 : 1;
            for (int q = 0; q < V_N; q++)
                if (strlen(VAR_NAME[q]) == len - (base_mode == 2) &&
                    !strncmp(v, VAR_NAME[q], strlen(VAR_NAME[q])))
                    base_q = q;
            if (base_q < 0) die("unknown --base");
        }
        else if (!strcmp(a, "--susp"))
            o.susp = !strcmp(v, "none") ? SUSP_NONE : !strcmp(v, "memory") ? SUSP_MEMORY
                   : !strcmp(v, "memavg") ? SUSP_MEMAVG : !strcmp(v, "fused") ? SUSP_FUSED
                   : SUSP_BASE;
        else die("unknown option");
    }
    if (o.k < 1 || o.k > KR || o.k2 > KR || o.k1 < 1 || o.k1 > o.k2 || o.kc < 1 || o.kc > KR ||
        o.k2 > MAX_KM)
        die("k out of range");
    printf("# memory %d, recent %.2f, k %d, logavg k %d..%d, count kc %d, %s space, "
           "suspicion %d, tau %g, burn %d, warm %d, wm %g, rank %d\n", o.cap, o.recent, o.k, o.k1, o.k2,
           o.kc, o.zspace ? "z" : "raw", (int)o.susp, o.tau, o.burn, o.warm, memory_weight, o.rank);
    if (base_q >= 0)
        printf("# base score: %s %s\n", VAR_NAME[base_q],
               base_mode == 2 ? "added to the product's base" : "in its term's place");
    static const double rates[] = {0.01, 0.05, 0.1};
    enum { NR = 3 };
    int nd = argc - i;
    lab_metric (*m)[NR][F_N] = xmalloc((size_t)nd * sizeof *m);
    for (int j = 0; j < nd; j++) {
        lab_dump D;
        load_dump(argv[i + j], &D);
        const char *p = strstr(argv[i + j], "class");
        int cls = p ? atoi(p + 5) : 0;
        if (base_q >= 0) {
            lab_variants(&D);
            variant_base(&D, &D.test, base_q, base_mode, D.test.base = xmalloc((size_t)D.test.n * sizeof(double)));
            variant_base(&D, &D.cal, base_q, base_mode, D.cal.base = xmalloc((size_t)D.cal.n * sizeof(double)));
        }
        lab_cal c;
        term_stats mstat[T_N];
        calibrate(&D, &o, &c, mstat);
        for (int r = 0; r < NR; r++) evaluate(&D, cls, rates[r], &o, &c, mstat, m[j][r]);
        if (o.verbose)
            for (int r = 0; r < NR; r++)
                for (int f = 0; f < F_N; f++)
                    printf("class %d rate %.2f %-28s %.3f / %.2f / %.2f / %.3f\n", cls, rates[r],
                           FUSION_LABEL[f], m[j][r][f].auc, m[j][r][f].tpr, m[j][r][f].recall,
                           m[j][r][f].fa);
        for (int k = 0; k < T_N; k++) free(c.asc[k]);
    }
    printf("%-28s", "average over dumps");
    for (int r = 0; r < NR; r++) printf(" | rate %.2f: auROC TPR1 rec FA ", rates[r]);
    printf("\n");
    for (int f = 0; f < F_N; f++) {
        printf("%-28s", FUSION_LABEL[f]);
        for (int r = 0; r < NR; r++) {
            lab_metric a = {0};
            double fa_max = 0;
            for (int j = 0; j < nd; j++) {
                a.auc += m[j][r][f].auc / nd;
                a.tpr += m[j][r][f].tpr / nd;
                a.recall += m[j][r][f].recall / nd;
                a.fa += m[j][r][f].fa / nd;
                fa_max = fmax(fa_max, m[j][r][f].fa);
            }
            printf(" | %.3f %.2f %.2f %.3f(%.3f)", a.auc, a.tpr, a.recall, a.fa, fa_max);
        }
        printf("\n");
    }
    free(m);
    return 0;
}

/* ---- single-sample scores (no memory): which base score ranks best -------------- */

/* kind 0/1: the k-th / the mean of the k nearest reference distances, raw latents; 3/4:
 * the same in the z-scored latent space. */
static double stat_of(const lab_set *s, int i, int kind, int k) {
    const float *d = (kind >= 3 ? s->refdz : s->refd) + (size_t)i * KR;
    if (kind % 3 == 0) return d[k - 1];
    double a = 0;
    for (int r = 0; r < k; r++) a += d[r];
    return a / k;
}

static int cmd_base(int argc, char **argv) {
    static const int ks[] = {1, 3, 5, 10, 20, 32};
    static const char *const kind_name[] = {"kth raw", "mean raw", "", "kth z", "mean z"};
    enum { NK = 6 };
    double acc[5][NK][2] = {{{0}}}, acc_re = 0, acc_base[2] = {0}, accv[V_N][3][2] = {{{0}}};
    int with_refs = 1;
    for (int j = 0; j < argc; j++) {
        lab_dump D;
        load_dump(argv[j], &D);
        const char *p = strstr(argv[j], "class");
        int cls = p ? atoi(p + 5) : 0;
        const int n = D.test.n, nc = D.cal.n;
        int *pos = xmalloc((size_t)n * sizeof *pos);
        double *v = xmalloc((size_t)nc * sizeof *v), *sc = xmalloc((size_t)n * sizeof *sc);
        for (int i = 0; i < n; i++) pos[i] = D.test.label[i] == cls;
        acc_re += auroc(D.test.zre, pos, (size_t)n) / argc;
        for (int i = 0; i < n; i++) sc[i] = D.alpha * D.test.zre[i] + (1 - D.alpha) * D.test.zlat[i];
        acc_base[0] += auroc(sc, pos, (size_t)n) / argc;
        acc_base[1] += roc_tpr_at_fpr(sc, pos, (size_t)n, 0.01) / argc;
        with_refs &= D.ref_zre != NULL;
        if (with_refs) {
            lab_variants(&D);
            double cls_auc[V_N];
            for (int q = 0; q < V_N; q++)
                for (int mode = 0; mode < 3; mode++) {
                    variant_base(&D, &D.test, q, mode, sc);
                    accv[q][mode][0] += auroc(sc, pos, (size_t)n) / argc;
                    accv[q][mode][1] += roc_tpr_at_fpr(sc, pos, (size_t)n, 0.01) / argc;
                    if (mode == 1) cls_auc[q] = auroc(sc, pos, (size_t)n);
                }
            printf("class %d, in the term's place:", cls);
            for (int q = 0; q < V_N; q++) printf(" %s %.3f", VAR_NAME[q], cls_auc[q]);
            for (int i = 0; i < n; i++) sc[i] = D.alpha * D.test.zre[i] + (1 - D.alpha) * D.test.zlat[i];
            printf("; product's base %.3f\n", auroc(sc, pos, (size_t)n));
        }
        for (int kind = 0; kind < 5; kind++) {
            if (kind == 2) continue;
            for (int q = 0; q < NK; q++) {
                for (int i = 0; i < nc; i++) v[i] = stat_of(&D.cal, i, kind, ks[q]);
                term_stats st = score_term_stats(v, (size_t)nc);
                for (int i = 0; i < n; i++) sc[i] = score_standardise(stat_of(&D.test, i, kind, ks[q]), st);
                acc[kind][q][0] += auroc(sc, pos, (size_t)n) / argc;
                for (int i = 0; i < n; i++) sc[i] = D.alpha * D.test.zre[i] + (1 - D.alpha) * sc[i];
                acc[kind][q][1] += auroc(sc, pos, (size_t)n) / argc;
            }
        }
        free(pos);
        free(v);
        free(sc);
    }
    printf("RE alone %.3f\n", acc_re);
    for (int kind = 0; kind < 5; kind++) {
        if (kind == 2) continue;
        for (int q = 0; q < NK; q++)
            printf("%-9s k %2d: alone %.3f, with RE %.3f\n", kind_name[kind], ks[q], acc[kind][q][0],
                   acc[kind][q][1]);
    }
    printf("product's base (alpha z_re + (1 - alpha) z_latent): auROC %.3f, TPR at 1%% FPR %.3f\n",
           acc_base[0], acc_base[1]);
    if (!with_refs) return 0;
    printf("variant  auROC / TPR at 1%% FPR: alone | in its term's place | added to the base\n");
    for (int q = 0; q < V_N; q++)
        printf("%-7s %.3f / %.3f | %.3f / %.3f | %.3f / %.3f\n", VAR_NAME[q], accv[q][0][0],
               accv[q][0][1], accv[q][1][0], accv[q][1][1], accv[q][2][0], accv[q][2][1]);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "dump")) return cmd_dump(argc - 2, argv + 2);
    if (argc >= 2 && !strcmp(argv[1], "eval")) return cmd_eval(argc - 2, argv + 2);
    if (argc >= 2 && !strcmp(argv[1], "base")) return cmd_base(argc - 2, argv + 2);
    if (argc >= 2 && !strcmp(argv[1], "refs")) return cmd_refs(argc - 2, argv + 2);
    fprintf(stderr, "usage: stream_lab dump MODELS_DIR FMNIST_DIR CLASS OUT\n"
                    "       stream_lab eval [--cap N --recent F --k K --k1 A --k2 B --kc K "
                    "--space raw|z --susp base|none|memory|memavg|fused --tau N --wm W "
                    "--rank 0|1|2 --maxscale S --burn N --skip N --head N --tail K --tail-all --warm "
                    "--base VARIANT[+] -v] DUMP...\n"
                    "       stream_lab base DUMP...\n"
                    "       stream_lab refs MODELS_DIR FMNIST_DIR CLASS DUMP\n");
    return 2;
}
