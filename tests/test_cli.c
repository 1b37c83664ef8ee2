/* The anodm command line, run as a user runs it: the binary named by $ANODM_BIN (set by
 * `make test` and `make asan-test`; build/anodm otherwise) in a shell, its stdout and
 * stderr captured to one file. Every bad invocation and bad data file must end in a
 * non-zero exit (2 for usage errors, 1 for bad data) with a message naming the problem,
 * and never in a signal or a sanitizer report. Then a tiny end-to-end training run on a
 * generated Fashion-MNIST-shaped directory, and its reproducibility. */
#include "bundle.h"
#include "check.h"
#include "daemon_harness.h"
#include "weights.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <zlib.h>

/* ------------------------------------------------------------------ running anodm */

static void tmp_path(char *out, size_t outlen, const char *name) {
    snprintf(out, outlen, "%s/%s", test_tmpdir(), name);
}

typedef struct {
    int code;        /* exit status, or 128 + signal when killed */
    char *out;       /* stdout and stderr interleaved; free it */
} run_result;

/* Runs `anodm ARGS` (run_anodm of daemon_harness.h) as one value for EXPECT_RUN. */
static run_result run_cli(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static run_result run_cli(const char *fmt, ...) {
    va_list ap;
    run_result r;
    va_start(ap, fmt);
    r.code = run_anodm_v(&r.out, fmt, ap);
    va_end(ap);
    return r;
}

/* The run must have exited with `code` (not crashed), and its output contain each of the
 * NULL-terminated strings in want. Frees r.out. */
static void expect_run_(const char *file, int line, run_result r, int code, ...) {
    const char *out = r.out ? r.out : "";
    int ok = r.code == code && !strstr(out, "Sanitizer") && !strstr(out, "runtime error");
    va_list ap;
    va_start(ap, code);
    for (const char *w; (w = va_arg(ap, const char *)) != NULL;)
        if (!strstr(out, w)) {
            check_fail(file, line, "output lacks '%s'", w);
            ok = 0;
        }
    va_end(ap);
    if (!ok)
        check_fail(file, line, "exit %d (want %d)%s; output:\n%.2000s", r.code, code,
                   r.code >= 128 ? " -- CRASHED" : "", out);
    free(r.out);
}
#define EXPECT_RUN(r, code, ...) expect_run_(__FILE__, __LINE__, (r), (code), __VA_ARGS__, NULL)

/* ------------------------------------------------------------------ data files */

static void write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    CHECK(len == 0 || fwrite(data, 1, len, f) == len);
    CHECK(fclose(f) == 0);
}

static void write_text(const char *path, const char *text) { write_file(path, text, strlen(text)); }

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* A gzip-compressed IDX file: unsigned-byte data of ndim dimensions, then payload. */
static void write_idx_gz(const char *path, int ndim, const uint32_t *dims, const uint8_t *payload,
                         size_t payload_len) {
    uint8_t head[4 + 4 * 4] = {0, 0, 0x08, (uint8_t)ndim};
    for (int i = 0; i < ndim; i++) put_be32(head + 4 + 4 * i, dims[i]);
    gzFile f = gzopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    CHECK(gzwrite(f, head, 4 + 4 * (unsigned)ndim) == 4 + 4 * ndim);
    CHECK(gzwrite(f, payload, (unsigned)payload_len) == (int)payload_len);
    CHECK(gzclose(f) == Z_OK);
}

/* A small stand-in for Fashion-MNIST with images a VAE can tell apart: class c is a
 * horizontal band whose height depends on c, except class 1, two vertical bars (a
 * "trouser"), so that the class left out of training looks unlike the rest. Pixels are
 * jittered with a fixed LCG, so the files are the same on every run. */
static void make_image(uint8_t *img, int label, uint32_t *lcg) {
    for (int y = 0; y < 28; y++)
        for (int x = 0; x < 28; x++) {
            *lcg = *lcg * 1664525u + 1013904223u;
            int on = label == 1 ? (x >= 8 && x < 12) || (x >= 16 && x < 20)
                                : y >= 14 - label && y < 14 + label;
            int v = (on ? 200 : 10) + (int)(*lcg >> 27);   /* + 0..31 */
            img[y * 28 + x] = (uint8_t)v;
        }
}

/* dir/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz with n_train and n_test images. */
static void make_fashion_dir(const char *dir, uint32_t n_train, uint32_t n_test) {
    CHECK(mkdir(dir, 0755) == 0);
    static const char *const split[2] = {"train", "t10k"};
    uint32_t lcg = 12345;
    for (int s = 0; s < 2; s++) {
        uint32_t n = s ? n_test : n_train;
        uint8_t *images = malloc((size_t)n * 784), *labels = malloc(n);
        if (!images || !labels) {
            check_fail(__FILE__, __LINE__, "out of memory");
            free(images);
            free(labels);
            return;
        }
        for (uint32_t i = 0; i < n; i++) {
            labels[i] = (uint8_t)(i % 10);
            make_image(images + (size_t)i * 784, labels[i], &lcg);
        }
        char path[600];
        const uint32_t idims[3] = {n, 28, 28}, ldims[1] = {n};
        snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte.gz", dir, split[s]);
        write_idx_gz(path, 3, idims, images, (size_t)n * 784);
        snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte.gz", dir, split[s]);
        write_idx_gz(path, 1, ldims, labels, n);
        free(images);
        free(labels);
    }
}

/* The directory every test here that trains shares, made on first use. */
static const char *fashion_dir(void) {
    static char dir[512];
    if (!dir[0]) {
        tmp_path(dir, sizeof dir, "cli_fashion");
        make_fashion_dir(dir, 300, 200);
    }
    return dir;
}

/* ------------------------------------------------------------------ usage errors */

TEST(cli_usage_errors) {
    EXPECT_RUN(run_cli("%s", ""), 2, "usage: anodm COMMAND", "train");
    EXPECT_RUN(run_cli("--help"), 0, "usage: anodm COMMAND");
    EXPECT_RUN(run_cli("frobnicate"), 2, "unknown command 'frobnicate'", "usage");
    EXPECT_RUN(run_cli("train"), 2, "--data and --out are required", "usage: anodm train");
    EXPECT_RUN(run_cli("train --data %s", test_tmpdir()), 2, "--data and --out are required");
    EXPECT_RUN(run_cli("train --out %s/x.w", test_tmpdir()), 2, "--data and --out are required");
    EXPECT_RUN(run_cli("train --help"), 0, "--exclude-class");
    EXPECT_RUN(run_cli("train --bogus-option"), 2, "usage: anodm train");
    EXPECT_RUN(run_cli("train --data a --out b stray"), 2, "unexpected argument");
    EXPECT_RUN(run_cli("train --data a --out b --exclude-class one"), 2, "--exclude-class");
    EXPECT_RUN(run_cli("train --data a --out b --exclude-class 1,,2"), 2, "--exclude-class");
    EXPECT_RUN(run_cli("train --data a --out b --arch nonesuch"), 2,
               "unknown architecture 'nonesuch'");
    EXPECT_RUN(run_cli("train --data a --out b --latent 0"), 2, "--latent wants an integer");
    /* Numbers are parsed strictly: garbage and seed 0 (which would mean "no init") fail. */
    EXPECT_RUN(run_cli("train --data a --out b --seed 0"), 2, "--seed");
    EXPECT_RUN(run_cli("train --data a --out b --beta abc"), 2, "--beta wants a number");
    EXPECT_RUN(run_cli("train --data a --out b --epochs 2x"), 2, "--epochs");
    EXPECT_RUN(run_cli("train --data a --out b --epochs 0"), 2, "--epochs");
    EXPECT_RUN(run_cli("train --data a --out b --batch -3"), 2, "--batch");
    EXPECT_RUN(run_cli("train --data a --out b --lr 0"), 2, "--lr");
}

/* ------------------------------------------------------------------ bad data */

TEST(cli_missing_data) {
    char out[512];
    tmp_path(out, sizeof out, "cli_never_written.w");
    EXPECT_RUN(run_cli("train --data /nonexistent --out %s", out), 1, "/nonexistent");
    struct stat st;
    CHECK(stat(out, &st) != 0);   /* nothing written for a failed run */

    /* A directory without the Fashion-MNIST files in it. */
    char dir[512];
    tmp_path(dir, sizeof dir, "cli_empty_dir");
    CHECK(mkdir(dir, 0755) == 0);
    EXPECT_RUN(run_cli("train --data %s --out %s", dir, out), 1, "train-images-idx3-ubyte.gz");
}

TEST(cli_bad_idx_files) {
    char path[512], out[512];
    tmp_path(out, sizeof out, "cli_bad.w");

    /* Header says 10 images of 28x28; the file holds 100 bytes of pixels. */
    uint8_t buf[16 + 100] = {0, 0, 0x08, 3};
    put_be32(buf + 4, 10);
    put_be32(buf + 8, 28);
    put_be32(buf + 12, 28);
    tmp_path(path, sizeof path, "cli_truncated.idx");
    write_file(path, buf, sizeof buf);
    EXPECT_RUN(run_cli("train --data %s --out %s", path, out), 1, path, "truncated");

    /* Cut inside the header itself. */
    tmp_path(path, sizeof path, "cli_truncated_header.idx");
    write_file(path, buf, 9);
    EXPECT_RUN(run_cli("train --data %s --out %s", path, out), 1, path, "truncated");

    /* A gzip stream that stops half way. */
    uint8_t *pixels = calloc(784 * 20, 1);
    if (pixels) {
        const uint32_t dims[3] = {20, 28, 28};
        char gz[512];
        tmp_path(gz, sizeof gz, "cli_whole.idx.gz");
        write_idx_gz(gz, 3, dims, pixels, 784 * 20);
        FILE *f = fopen(gz, "rb");
        uint8_t half[4096];
        size_t n = f ? fread(half, 1, sizeof half, f) : 0;
        if (f) fclose(f);
        CHECK(n > 40);
        tmp_path(path, sizeof path, "cli_cut.idx.gz");
        write_file(path, half, n / 2);
        EXPECT_RUN(run_cli("train --data %s --out %s", path, out), 1, path, "gzip");
        free(pixels);
    }

    /* Not an IDX file at all: wrong magic. */
    put_be32(buf, 0x12345678);
    tmp_path(path, sizeof path, "cli_magic.idx");
    write_file(path, buf, sizeof buf);
    EXPECT_RUN(run_cli("train --data %s --out %s", path, out), 1, path, "wrong magic");

    /* An empty file. */
    tmp_path(path, sizeof path, "cli_empty.idx");
    write_file(path, "", 0);
    EXPECT_RUN(run_cli("train --data %s --out %s", path, out), 1, path, "empty");

    /* Labels that do not match the samples in number. */
    tmp_path(path, sizeof path, "cli_ok.idx");
    uint8_t img[16 + 2 * 784] = {0, 0, 0x08, 3};
    put_be32(img + 4, 2);
    put_be32(img + 8, 28);
    put_be32(img + 12, 28);
    write_file(path, img, sizeof img);
    char labels[512];
    tmp_path(labels, sizeof labels, "cli_3labels.idx");
    const uint8_t lab[8 + 3] = {0, 0, 0x08, 1, 0, 0, 0, 3, 0, 1, 2};
    write_file(labels, lab, sizeof lab);
    EXPECT_RUN(run_cli("train --data %s --labels %s --out %s", path, labels, out), 1,
               "labels count 3 != samples count 2");
    /* An IDX file without labels cannot be filtered by class. */
    EXPECT_RUN(run_cli("train --data %s --exclude-class 1 --out %s", path, out), 1, "no labels");
}

TEST(cli_bad_csv_files) {
    char path[512], out[512];
    tmp_path(out, sizeof out, "cli_bad.w");

    tmp_path(path, sizeof path, "cli_ragged.csv");
    write_text(path, "1,2,3,0\n4,5,6,1\n7,8,0\n");
    EXPECT_RUN(run_cli("train --data %s --out %s", path, out), 1, path, "ragged rows", "line 3");

    tmp_path(path, sizeof path, "cli_notnum.csv");
    write_text(path, "1,2,3,0\n4,x5,6,1\n");
    EXPECT_RUN(run_cli("train --data %s --out %s", path, out), 1, path, "line 2");

    /* Every sample is of the class excluded: nothing left to train on. */
    tmp_path(path, sizeof path, "cli_one_class.csv");
    write_text(path, "1,2,3,4\n5,6,7,4\n");
    EXPECT_RUN(run_cli("train --data %s --exclude-class 4 --out %s", path, out), 1,
               "filter leaves no samples");
    EXPECT_RUN(run_cli("train --data %s --exclude-class 3,4,5 --out %s", path, out), 1,
               "filter leaves no samples");

    /* 10 columns (9 values and a label) for an architecture of 28x28 inputs. */
    tmp_path(path, sizeof path, "cli_ten_columns.csv");
    write_text(path, "1,2,3,4,5,6,7,8,9,0\n9,8,7,6,5,4,3,2,1,1\n");
    EXPECT_RUN(run_cli("train --data %s --arch fashion --out %s", path, out), 1,
               "samples have 9 values", "expects 784");
    /* The same file with its label column given as the first: still 9 values. */
    EXPECT_RUN(run_cli("train --data %s --label-col 0 --arch fashion --out %s", path, out), 1,
               "samples have 9 values");
    /* A label column that is not there. */
    EXPECT_RUN(run_cli("train --data %s --label-col 12 --out %s", path, out), 1,
               "label column 12");
}

/* An --out that cannot be written: exit 1 with a message, after real work was done. */
TEST(cli_bad_settings) {
    const char *dir = fashion_dir();
    char out[512];
    tmp_path(out, sizeof out, "no/such/dir/model.w");
    EXPECT_RUN(run_cli("train --data %s --epochs 1 --limit 20 --latent 2 --vae-only --out %s",
                         dir, out),
               1, "cannot write", out);
}

/* ------------------------------------------------------------------ end to end */

static int count_epoch_lines(const char *out) {
    int n = 0;
    for (const char *l = out; l && *l;) {
        const char *nl = strchr(l, '\n');
        size_t len = nl ? (size_t)(nl - l) : strlen(l);
        char line[512];
        snprintf(line, sizeof line, "%.*s", (int)(len < 511 ? len : 511), l);
        if (!strncmp(line, "epoch ", 6) && strstr(line, "loss") && strstr(line, "ETA")) n++;
        l = nl ? nl + 1 : l + len;
    }
    return n;
}

static int files_equal(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int equal = fa && fb;
    while (equal) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb) equal = 0;
        if (ca == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return equal;
}

TEST(cli_train_end_to_end) {
    const char *dir = fashion_dir();
    char m1[512], m2[512], err[512];
    tmp_path(m1, sizeof m1, "cli_e2e_1.w");
    tmp_path(m2, sizeof m2, "cli_e2e_2.w");
    /* No --threads: with OpenBLAS's default threading (2 threads on the machine this was
     * written on) the two runs below still give identical bytes, as OpenBLAS's sgemm
     * splits the output matrix, not the inner sum, across threads. Should that ever
     * change, add --threads 1 here rather than loosening the comparison. */
    static const char ARGS[] = "train --data %s --exclude-class 1 --epochs 2 --batch 50 "
                               "--latent 4 --beta 0.1 --vae-only --out %s --seed %d";
    run_result r = run_cli(ARGS, dir, m1, 3);
    char *out = r.out ? strdup(r.out) : NULL;
    EXPECT_RUN(r, 0, "270 samples", "wrote", "auROC of reconstruction error");
    if (!out) return;
    CHECK_MSG(count_epoch_lines(out) == 2, "want 2 epoch lines with loss and ETA:\n%s", out);
    const char *a = strstr(out, "auROC of reconstruction error:");
    if (a) {
        char *end;
        double v = strtod(a + strlen("auROC of reconstruction error:"), &end);
        CHECK_MSG(end != a && v >= 0.0 && v <= 1.0, "auROC '%.40s'", a);
    }
    CHECK(strstr(out, "200 samples, 20 anomalous") != NULL);   /* t10k: every 10th is 1 */
    free(out);

    vae_model m;
    int rc = weights_load(m1, &m, err, sizeof err);
    CHECK_MSG(rc == 0, "weights_load: %s", err);
    if (rc == 0) {
        CHECK(m.arch.latent == 4 && m.arch.in.h == 28 && strcmp(m.arch.name, "fashion") == 0);
        int finite = 1;
        for (size_t i = 0; i < m.n_params; i++) finite &= isfinite(m.params[i]);
        CHECK(finite);
        vae_free(&m);
    }

    /* The same seed and settings: the same bytes. */
    EXPECT_RUN(run_cli(ARGS, dir, m2, 3), 0, "wrote");
    CHECK_MSG(files_equal(m1, m2), "%s and %s differ: training is not reproducible", m1, m2);
    /* And a different seed does change them (the comparison above can see a difference). */
    EXPECT_RUN(run_cli(ARGS, dir, m2, 4), 0, "wrote");
    CHECK(!files_equal(m1, m2));
}

/* The whole pipeline: a bundle that loads, names its provenance, and the same seed
 * building the same model (weights, map, calibration; the provenance's timestamps may
 * differ, so the files are compared through the loader). */
TEST(cli_train_bundle_end_to_end) {
    const char *dir = fashion_dir();
    char b1[512], b2[512], err[512];
    tmp_path(b1, sizeof b1, "cli_e2e_1.anodm");
    tmp_path(b2, sizeof b2, "cli_e2e_2.anodm");
    static const char ARGS[] = "train --data %s --exclude-class 1 --epochs 2 --batch 50 "
                               "--latent 4 --beta 0.1 --n-ref 200 --perplexity 10 "
                               "--tsne-iter 300 --out %s --seed 3";
    /* --n-ref 200 of 243 training normals: half of them (121), the other half streamed
     * through the memory at calibration (build_ref_count). */
    EXPECT_RUN(run_cli(ARGS, dir, b1), 0, "reference: 121", "map: final KL", "calibration: 27",
               "of the fused score", "wrote");
    EXPECT_RUN(run_cli(ARGS, dir, b2), 0, "wrote");
    detector d1, d2;
    int ok1 = bundle_load(b1, &d1, err, sizeof err) == 0;
    CHECK_MSG(ok1, "bundle_load: %s", err);
    int ok2 = bundle_load(b2, &d2, err, sizeof err) == 0;
    CHECK_MSG(ok2, "bundle_load: %s", err);
    if (ok1 && ok2) {
        /* The threshold is calibrated on a stream through the memory: the 27 held-out
         * normals and the training normals that are not reference points. */
        CHECK(d1.n_ref == 121 && d1.n_cal == 27 + 243 - 121 && d1.k == 1 &&
              d1.mode == PLACE_SINGLE && d1.place.n_iter == 250 && d1.place.tol == 0.01);
        CHECK(d1.use_memory && d1.fusion == FUSION_FISHER && d1.cal_base && d1.cal_memory);
        CHECK(strstr(d1.provenance, "\"excluded_classes\"") && strstr(d1.provenance, "\"sha256\""));
        CHECK(d1.vae.n_params == d2.vae.n_params &&
              !memcmp(d1.vae.params, d2.vae.params, d1.vae.n_params * sizeof(float)));
        CHECK(d1.n_ref == d2.n_ref &&
              !memcmp(d1.ref_map, d2.ref_map, (size_t)d1.n_ref * 2 * sizeof(float)));
        CHECK(d1.n_cal == d2.n_cal &&
              !memcmp(d1.cal_scores, d2.cal_scores, (size_t)d1.n_cal * sizeof(float)));
        CHECK(d1.threshold == d2.threshold);
    }
    detector_free(&d1);
    detector_free(&d2);
    EXPECT_RUN(run_cli("inspect %s", b1), 0, "sha256", "latent input mu", "n_iter 250,",
               "tol 0.01 (stops");
    /* The z-based variant (paper Table 2): built, stored, shown, scored; in context mode,
     * whose co-placement has no stopping rule: the library's fixed steps, not the cap. */
    char bz[512];
    tmp_path(bz, sizeof bz, "cli_e2e_z.anodm");
    EXPECT_RUN(run_cli("train --data %s --exclude-class 1 --epochs 1 --batch 50 --latent 4 "
                         "--n-ref 200 --perplexity 10 --tsne-iter 300 --latent-input z "
                         "--mode context --out %s", dir, bz), 0, "wrote");
    EXPECT_RUN(run_cli("inspect %s", bz), 0, "latent input z", "mode context", "n_iter 100,",
               "tol 0 (off");
    EXPECT_RUN(run_cli("score %s %s --anomaly-class 1", bz, dir), 0, "scored 200 samples");
    EXPECT_RUN(run_cli("train --data %s --latent-input sigma --out %s", dir, bz), 2,
               "--latent-input is mu or z, not 'sigma'");
    EXPECT_RUN(run_cli("experiment --dataset fashion-mnist --latent-input 1"), 2,
               "--latent-input is mu or z");
    /* Offline scoring of the 200 test images: a header and a row each, then the summary. */
    char csv[512];
    tmp_path(csv, sizeof csv, "cli_scores.csv");
    EXPECT_RUN(run_cli("score %s %s --anomaly-class 1 --out %s", b1, dir, csv), 0,
               "scored 200 samples", "auROC of the score");
    FILE *f = fopen(csv, "r");
    int lines = 0, c;
    while (f && (c = fgetc(f)) != EOF) lines += c == '\n';
    if (f) fclose(f);
    CHECK_MSG(lines == 201, "%d lines in the score CSV", lines);
    /* The network's sums are core/nn/gemm's, in one order on every CPU, not OpenBLAS's:
     * the same scores to the bit with OpenBLAS's generic kernels and in batches of 5
     * (docs/BATCHING.md). */
    char csv2[512], *was = getenv("OPENBLAS_CORETYPE") ? strdup(getenv("OPENBLAS_CORETYPE")) : NULL;
    tmp_path(csv2, sizeof csv2, "cli_scores_prescott.csv");
    setenv("OPENBLAS_CORETYPE", "Prescott", 1);
    EXPECT_RUN(run_cli("score %s %s --anomaly-class 1 --batch 5 --out %s", b1, dir, csv2), 0,
               "scored 200 samples");
    if (was) setenv("OPENBLAS_CORETYPE", was, 1);
    else unsetenv("OPENBLAS_CORETYPE");
    free(was);
    char *s1 = slurp(csv), *s2 = slurp(csv2);
    CHECK_MSG(s1 && s2 && strcmp(s1, s2) == 0, "scores differ with OpenBLAS's Prescott kernels");
    free(s1);
    free(s2);
    EXPECT_RUN(run_cli("score %s %s --format jsonl --batch 7", b1, dir), 0, "\"p_value\":");
    /* Where the time goes: every stage, at each batch size asked for. */
    EXPECT_RUN(run_cli("bench-score %s %s --batches 1,7 --samples 21", b1, dir), 0, "B=7",
               "forward (VAE)", "neighbour search", "calibration", "iterations", "encode JSON",
               "GFLOP/s", "total", "gradient steps per sample", "us a clock read");
    EXPECT_RUN(run_cli("bench-score %s %s --batches 0", b1, dir), 2, "--batches");
    EXPECT_RUN(run_cli("bench-score %s %s --batches 64 --samples 20", b1, dir), 1,
               "batch 64 is larger than the 20 samples");
    EXPECT_RUN(run_cli("bench-score %s", b1), 2, "required");
    EXPECT_RUN(run_cli("score %s", b1), 2, "required");
    EXPECT_RUN(run_cli("score %s %s", csv, dir), 1, "anodm score:");
    /* Too few samples for the map's perplexity: refused before any training. */
    EXPECT_RUN(run_cli("train --data %s --limit 40 --out %s", dir, b2), 1, "perplexity");
}

/* Options are refused by the rules of the code that uses them (core's validators, and
 * the shared option table's bounds, which are core's limits) before any work: exit 2, a
 * message naming the option, and not one epoch trained (nor the data read: the build
 * line never printed). The rules are the same in every command (--threads 1..64, the
 * perplexity range and its neighbours among the reference points). */
TEST(cli_refuses_options_before_training) {
    const char *dir = fashion_dir();
    char out[512];
    tmp_path(out, sizeof out, "cli_refused.anodm");
    static const struct { const char *args, *want; } train[] = {
        {"--perplexity 150", "--perplexity wants a number in [1, 100], not '150'"},
        {"--perplexity 0.5", "--perplexity wants a number in [1, 100]"},
        {"--n-ref 50", "perplexity 30 needs 90 neighbours"},
        {"--n-ref 200 --perplexity 70", "perplexity 70 needs 210 neighbours"},
        {"--n-ref 0", "--n-ref wants an integer from 1 to 2097152"},
        {"--n-ref 3000000", "--n-ref wants an integer from 1 to 2097152"},
        {"--threads 65", "--threads wants an integer from 1 to 64, not '65'"},
        {"--threads 0", "--threads wants an integer from 1 to 64"},
        {"--k 300 --n-ref 200 --perplexity 10", "k = 300 is not in [1, n_ref = 200]"},
        {"--quantile 1", "--quantile wants a number in (0, 1)"},
        {"--cal-frac 0", "--cal-frac wants a number in (0, 1)"},
        {"--mode context --window 0", "--window wants an integer from 1 to 65536"},
        {"--alpha 1.5", "--alpha wants a number in [0, 1]"},
        {"--beta -1", "--beta wants a number in [0, inf)"},
        {"--lr 1e-50", "lr 0 is not a finite number > 0"},    /* 0 once a float */
        {"--beta 1e300", "beta inf is not a finite number"},
        {"--vae-only --threads 65", "--threads wants an integer from 1 to 64"},
    };
    for (size_t i = 0; i < sizeof train / sizeof train[0]; i++) {
        run_result r = run_cli("train --data %s --exclude-class 1 --epochs 1 --out %s %s", dir,
                               out, train[i].args);
        char *text = r.out ? strdup(r.out) : NULL;
        EXPECT_RUN(r, 2, train[i].want);
        CHECK_MSG(text && count_epoch_lines(text) == 0 && !strstr(text, "building"),
                  "train %s: work began before the refusal:\n%s", train[i].args, text);
        free(text);
    }
    /* What only the data can tell (300 samples, 40 kept: 36 for training, half of them for
     * the map) is refused by detector_build before its first epoch. */
    run_result r = run_cli("train --data %s --limit 40 --out %s", dir, out);
    char *text = r.out ? strdup(r.out) : NULL;
    EXPECT_RUN(r, 1, "map of 18 reference points: perplexity 30 needs 90 neighbours");
    CHECK_MSG(text && count_epoch_lines(text) == 0, "trained before the refusal:\n%s", text);
    free(text);
    struct stat st;
    CHECK(stat(out, &st) != 0);

    /* experiment and bench-vae by the same rules; --data names nothing, so a refusal that
     * came after reading it would exit 1. */
    static const struct { const char *args, *want; } other[] = {
        {"experiment --dataset fashion-mnist --threads 65", "--threads wants an integer from 1 to 64"},
        {"experiment --dataset fashion-mnist --perplexity 150", "--perplexity wants a number in [1, 100]"},
        {"experiment --dataset fashion-mnist --n-ref 50", "perplexity 30 needs 90 neighbours"},
        {"experiment --dataset fashion-mnist --n-ref 10 --perplexity 3 --latent-k 20",
         "memory k 10 is more than the 9 neighbours placement searches at perplexity 3"},
        {"experiment --dataset fashion-mnist --n-ref 10 --perplexity 3 --memory-k 9 --latent-k 20",
         "latent_k 20 outside 1..10"},
        {"experiment --dataset fashion-mnist --memory-k 4 --memory-k-min 5",
         "memory k_min 5 outside 1..k (4)"},
        {"experiment --dataset fashion-mnist --memory-retain oddest",
         "--memory-retain is evidence or company, not 'oddest'"},
        {"experiment --dataset fashion-mnist --beta 0.1,-1", "--beta wants a number in [0, inf)"},
        {"experiment --dataset fashion-mnist --seed 0", "--seed wants an integer from 1"},
        {"experiment --dataset fashion-mnist --epochs 0", "--epochs wants an integer from 1"},
        {"bench-vae --threads 65", "--threads wants an integer from 1 to 64"},
        {"bench-vae --epochs 0", "--epochs wants an integer from 1"},
        {"bench-tsne fit --perplexity 150", "--perplexity wants a number in [1, 100]"},
        {"bench-tsne fit --threads 65", "--threads wants an integer from 1 to 64"},
    };
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
        EXPECT_RUN(run_cli("%s --data %s/nowhere", other[i].args, test_tmpdir()), 2,
                   other[i].want);
}
