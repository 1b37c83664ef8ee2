/* Bring your own data (issue 19), end to end: the worked example of README.md at a small
 * size. Two generated data sets with known anomalies, each trained with no preset named,
 * served by anodmd and scored over HTTP:
 *   - a CSV of 12 sensor readings per row, around 50 with a spread of ~10 (so scaling and
 *     MSE are chosen): 3 hidden factors drive all 12 values, plus a little noise. An
 *     anomaly is a row whose first 4 values are mirrored around 50: each value on its own
 *     is as likely as before, only their relation to the other 8 is broken;
 *   - an NPY of shape (N, 3, 32): three channels of a 32-step window, a sine and a cosine
 *     of the same random frequency (2 to 3 cycles) and phase, and their product, around
 *     20. An anomaly runs at three times the frequency.
 * examples/byod/make_data.py writes the same recipe for the README's walk-through.
 * Then what must fail before any training does, with a message naming what is wrong. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auroc.h"
#include "check.h"
#include "daemon_harness.h"
#include "rng.h"

#define TAB_W 12
#define TAB_N 600
#define WIN_C 3
#define WIN_W 32
#define WIN_N 400
#define N_EACH 30                /* normals and anomalies scored over HTTP, per model */

/* One CSV row: 50 + 10 * (the factor loadings A times 3 standard normals) + noise. */
static void tab_row(rng_t *r, const float A[3][TAB_W], int anomalous, float *x) {
    float z[3] = {rng_normal(r), rng_normal(r), rng_normal(r)};
    for (int j = 0; j < TAB_W; j++)
        x[j] = 50.0f + 10.0f * (A[0][j] * z[0] + A[1][j] * z[1] + A[2][j] * z[2]) +
               0.3f * rng_normal(r);
    for (int j = 0; anomalous && j < 4; j++) x[j] = 100.0f - x[j];
}

static void tab_loadings(float A[3][TAB_W]) {
    rng_t r;
    rng_seed(&r, 1919);
    for (int k = 0; k < 3; k++)
        for (int j = 0; j < TAB_W; j++) A[k][j] = rng_normal(&r) / sqrtf(3.0f);
}

/* One window, channel-major (3 x 32): sin, cos, their product. */
static void win_sample(rng_t *r, int anomalous, float *x) {
    const float f = (2.0f + rng_uniform(r)) * (anomalous ? 3.0f : 1.0f), ph = rng_uniform(r);
    for (int t = 0; t < WIN_W; t++) {
        float a = 2.0f * (float)M_PI * (f * t / WIN_W + ph), s = sinf(a), c = cosf(a);
        x[t] = 20.0f + 5.0f * s + 0.1f * rng_normal(r);
        x[WIN_W + t] = 20.0f + 5.0f * c + 0.1f * rng_normal(r);
        x[2 * WIN_W + t] = 20.0f + 5.0f * s * c + 0.1f * rng_normal(r);
    }
}

static int write_csv(const char *path) {
    float A[3][TAB_W], x[TAB_W];
    rng_t r;
    tab_loadings(A);
    rng_seed(&r, 7);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    for (int i = 0; i < TAB_N; i++) {
        tab_row(&r, A, 0, x);
        for (int j = 0; j < TAB_W; j++) fprintf(f, "%s%.5f", j ? "," : "", x[j]);
        fputc('\n', f);
    }
    return fclose(f);
}

/* NPY version 1.0, little-endian float32, C order, shape (N, C, W). */
static int write_npy(const char *path) {
    char hdr[128];
    int n = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, "
                     "'shape': (%d, %d, %d), }", WIN_N, WIN_C, WIN_W);
    while ((10 + n + 1) % 64) hdr[n++] = ' ';       /* header padded to 64 bytes */
    hdr[n++] = '\n';
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(n & 255),
                             (unsigned char)(n >> 8)};
    fwrite(pre, 1, 10, f);
    fwrite(hdr, 1, (size_t)n, f);
    rng_t r;
    rng_seed(&r, 8);
    float x[WIN_C * WIN_W];
    for (int i = 0; i < WIN_N; i++) {
        win_sample(&r, 0, x);
        for (int j = 0; j < WIN_C * WIN_W; j++) {     /* little-endian, whatever the host */
            uint32_t u;
            memcpy(&u, &x[j], 4);
            unsigned char b[4] = {u & 255, (u >> 8) & 255, (u >> 16) & 255, u >> 24};
            fwrite(b, 1, 4, f);
        }
    }
    return fclose(f);
}

/* {"samples": [...]} of n samples of dim values. */
static char *samples_body(const float *x, int n, int dim) {
    json_t *list = json_array();
    for (int i = 0; i < n; i++) {
        json_t *s = json_array();
        for (int j = 0; j < dim; j++) json_array_append_new(s, json_real(x[i * dim + j]));
        json_array_append_new(list, s);
    }
    json_t *root = json_pack("{s:o}", "samples", list);
    char *text = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(root);
    return text;
}

/* Score n normals then n anomalies (x: 2n samples) with model `name` over HTTP: the
 * auROC of the score, the anomalies and the normals flagged, and out_of_range seen on
 * any of them. 0, or -1 (reported). */
static int score_over_http(int port, const char *name, const float *x, int n, int dim,
                           double *auc, int *flagged_anom, int *flagged_norm, int *any_far) {
    char path[128];
    snprintf(path, sizeof path, "/v1/models/%s/score", name);
    char *body = samples_body(x, 2 * n, dim);
    response r = http_request(port, "POST", path, body, "");
    free(body);
    EXPECT_STATUS(r, 200, NULL);
    json_t *res = json_object_get(r.json, "results");
    int rc = -1;
    if (json_array_size(res) == (size_t)(2 * n)) {
        double *score = malloc(2 * n * sizeof *score);
        int *pos = malloc(2 * n * sizeof *pos);
        *flagged_anom = *flagged_norm = *any_far = 0;
        for (int i = 0; score && pos && i < 2 * n; i++) {
            json_t *one = json_array_get(res, (size_t)i);
            score[i] = jnum(one, "score");
            pos[i] = i >= n;
            int flag = json_is_true(json_object_get(one, "is_anomaly"));
            *(i >= n ? flagged_anom : flagged_norm) += flag;
            *any_far |= json_is_true(json_object_get(one, "out_of_range"));
            CHECK_MSG(json_is_boolean(json_object_get(one, "out_of_range")),
                      "%s: no out_of_range in the result", name);
        }
        if (score && pos) {
            *auc = auroc(score, pos, (size_t)(2 * n));
            rc = 0;
        }
        free(score);
        free(pos);
    } else {
        check_fail(__FILE__, __LINE__, "%s: %zu results for %d samples: %.300s", name,
                   json_array_size(res), 2 * n, r.body ? r.body : "");
    }
    response_free(&r);
    return rc;
}

/* One sample far outside the training range (a value 1000 spreads out) is scored, with
 * out_of_range true and a finite score. */
static void far_sample(int port, const char *name, float *x, int dim) {
    char path[128];
    snprintf(path, sizeof path, "/v1/models/%s/score", name);
    x[1] += 1e4f;
    char *body = samples_body(x, 1, dim);
    response r = http_request(port, "POST", path, body, "");
    free(body);
    EXPECT_STATUS(r, 200, NULL);
    json_t *one = json_array_get(json_object_get(r.json, "results"), 0);
    CHECK_MSG(json_is_true(json_object_get(one, "out_of_range")) &&
                  isfinite(jnum(one, "score")),
              "%s: a far sample: %.400s", name, r.body ? r.body : "");
    response_free(&r);
}

TEST(byod_csv_and_npy_train_serve_score) {
    const char *tmp = test_tmpdir();
    char csv[512], npy[512], tab[512], win[512], cust[512];
    snprintf(csv, sizeof csv, "%s/byod_sensors.csv", tmp);
    snprintf(npy, sizeof npy, "%s/byod_windows.npy", tmp);
    snprintf(tab, sizeof tab, "%s/byod_tab.anodm", tmp);
    snprintf(win, sizeof win, "%s/byod_win.anodm", tmp);
    snprintf(cust, sizeof cust, "%s/byod_custom.anodm", tmp);
    CHECK(write_csv(csv) == 0 && write_npy(npy) == 0);

    /* No preset named: the shape, the preset, the scaling and the loss from the data.
     * With the stream memory (the default): these models are judged below on 30 normals
     * then 30 anomalies, too short a stream for a memory whose term needs 10 of a kind,
     * so the base score's evidence must carry the anomalies; it does through the tail of
     * its p-value (score_log_p_tail). Without that tail 7 of the 30 sensor anomalies were
     * flagged under OpenBLAS's Haswell kernels and 23 under Cooperlake's (docs/STREAM.md). */
    char *out;
    int rc = run_anodm(&out, "train --data %s --label-col none --epochs 60 --n-ref 200 "
                       "--tsne-iter 300 --threads 1 --out %s", csv, tab);
    CHECK_MSG(rc == 0 && strstr(out, "building mlp detector on 600 normal samples (input "
                                     "1x1x12, scale standard, recon mse): beta 0.01") &&
                  strstr(out, "report:") && strstr(out, "threshold") && strstr(out, "KL"),
              "exit %d: %s", rc, out);
    free(out);
    rc = run_anodm(&out, "train --data %s --epochs 30 --n-ref 200 --tsne-iter 300 "
                   "--threads 1 --out %s", npy, win);
    CHECK_MSG(rc == 0 && strstr(out, "building conv1d detector on 400 normal samples (input "
                                     "3x1x32, scale standard, recon mse)"),
              "exit %d: %s", rc, out);
    free(out);
    /* The same CSV with a spec of one's own, min-max scaled: BCE is then the default. */
    rc = run_anodm(&out, "train --data %s --label-col none --encoder 'linear(24) relu' "
                   "--decoder 'linear(24) relu linear(12)' --scale minmax --epochs 5 "
                   "--n-ref 100 --tsne-iter 250 --threads 1 --out %s", csv, cust);
    CHECK_MSG(rc == 0 && strstr(out, "building custom detector") &&
                  strstr(out, "scale minmax, recon bce"), "exit %d: %s", rc, out);
    free(out);
    rc = run_anodm(&out, "inspect %s", cust);
    CHECK_MSG(rc == 0 && strstr(out, "architecture  custom: input 1x1x12, latent 16, recon bce") &&
                  strstr(out, "encoder     linear(24) relu, then linear(32)") &&
                  strstr(out, "scaling     minmax"), "exit %d: %s", rc, out);
    free(out);
    rc = run_anodm(&out, "inspect %s", win);
    CHECK_MSG(rc == 0 && strstr(out, "conv1d: input 3x1x32") && strstr(out, "scaling     standard"),
              "exit %d: %s", rc, out);
    free(out);

    /* Served together, scored over HTTP: fresh normals and the known anomalies. */
    char log[512], db[512], m1[600], m2[600];
    snprintf(log, sizeof log, "%s/byod_anodmd.txt", tmp);
    snprintf(db, sizeof db, "%s/byod.db", tmp);
    snprintf(m1, sizeof m1, "sensors=%s", tab);
    snprintf(m2, sizeof m2, "windows=%s", win);
    const char *args[] = {"--model", m1, "--model", m2, "--db", db, "--workers", "1",
                          "--threads", "1", NULL};
    int port;
    pid_t pid = spawn_anodmd(log, args, &port);
    if (!port) return;
    float A[3][TAB_W], xt[2 * N_EACH * TAB_W], xw[2 * N_EACH * WIN_C * WIN_W];
    rng_t r;
    tab_loadings(A);
    rng_seed(&r, 99);
    for (int i = 0; i < 2 * N_EACH; i++) {
        tab_row(&r, A, i >= N_EACH, xt + i * TAB_W);
        win_sample(&r, i >= N_EACH, xw + i * WIN_C * WIN_W);
    }
    double auc;
    int anom, norm, far;
    if (score_over_http(port, "sensors", xt, N_EACH, TAB_W, &auc, &anom, &norm, &far) == 0)
        CHECK_MSG(auc > 0.95 && anom >= N_EACH / 2 && norm <= 3 && !far,
                  "sensors: auROC %.3f, %d of %d anomalies and %d normals flagged, far %d",
                  auc, anom, N_EACH, norm, far);
    if (score_over_http(port, "windows", xw, N_EACH, WIN_C * WIN_W, &auc, &anom, &norm, &far) == 0)
        CHECK_MSG(auc > 0.95 && anom >= N_EACH / 2 && norm <= 3 && !far,
                  "windows: auROC %.3f, %d of %d anomalies and %d normals flagged, far %d",
                  auc, anom, N_EACH, norm, far);
    far_sample(port, "sensors", xt, TAB_W);
    far_sample(port, "windows", xw, WIN_C * WIN_W);
    stop_anodmd(pid);
}

/* Shapes and specs that cannot work are refused before any training, with the layer or
 * the sizes that do not fit. */
TEST(byod_refuses_before_training) {
    const char *tmp = test_tmpdir();
    char csv[512], out_path[512];
    snprintf(csv, sizeof csv, "%s/byod_refuse.csv", tmp);
    snprintf(out_path, sizeof out_path, "%s/byod_refuse.anodm", tmp);
    FILE *f = fopen(csv, "w");
    CHECK(f != NULL);
    if (!f) return;
    for (int i = 0; i < 50; i++) fprintf(f, "%d,2,3,4,5,%d\n", i, i % 7);
    fclose(f);
    static const struct { int code; const char *args, *want; } cases[] = {
        {2, "--input 1,1,6 --encoder 'conv2d(8,5,1,0) relu' --decoder 'linear(6)'",
         "encoder: layer 1 (conv2d) on 1x1x6: convolution does not fit"},
        {2, "--input 1,1,6 --encoder 'linear(8) relu' --decoder 'linear(8) relu linear(5)'",
         "decoder output 5x1x1 does not match input 1x1x6"},
        {2, "--input 2,1,3 --encoder 'linear(8) relux' --decoder 'linear(6)'",
         "unknown layer 'relux'"},
        {2, "--input 1,1,6 --arch fashion", "'fashion' takes 1x28x28 samples, not 1x1x6"},
        {2, "--input 1,2,3 --arch conv1d", "'conv1d' takes C channels of W steps"},
        {2, "--arch nonesuch", "unknown architecture 'nonesuch'"},
        {2, "--encoder 'linear(8)'", "--encoder and --decoder go together"},
        {2, "--arch mlp --encoder 'linear(8)' --decoder 'linear(6)'", "not both"},
        {2, "--input 0,1,6", "--input wants C,H,W"},
        {2, "--input 1,1", "--input wants C,H,W"},
        {2, "--scale zscore", "--scale is none, standard or minmax"},
        {2, "--recon l1", "--recon is bce or mse"},
        {2, "--vae-only --scale standard", "--scale needs a bundle"},
        /* after reading the data, before training: the shape the data does not have */
        {1, "--input 1,1,7", "samples have 6 values, architecture 'mlp' expects 7 (1x1x7)"},
        {1, "--encoder 'linear(8) relu' --decoder 'linear(8) relu linear(5)'",
         "decoder output 5x1x1 does not match input 1x1x6"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out;
        int rc = run_anodm(&out, "train --data %s --label-col none %s --epochs 1 --out %s", csv,
                           cases[i].args, out_path);
        CHECK_MSG(rc == cases[i].code && strstr(out, cases[i].want) && !strstr(out, "epoch "),
                  "%s: exit %d (want %d), want '%s' in:\n%s", cases[i].args, rc, cases[i].code,
                  cases[i].want, out);
        free(out);
    }
}

/* The one-vs-rest experiment on one's own labelled file: the CSV's recipe with every
 * fifth row an anomaly, labelled 1 in the last column. The reconstruction term must
 * find them (auROC above 0.85), and MNIST is a data set of its own, with digit names. */
TEST(byod_experiment_generic) {
    const char *tmp = test_tmpdir();
    char csv[512], dir[512];
    snprintf(csv, sizeof csv, "%s/byod_labelled.csv", tmp);
    snprintf(dir, sizeof dir, "%s/byod_experiment", tmp);
    float A[3][TAB_W], x[TAB_W];
    rng_t r;
    tab_loadings(A);
    rng_seed(&r, 11);
    FILE *f = fopen(csv, "w");
    CHECK(f != NULL);
    if (!f) return;
    for (int i = 0; i < 600; i++) {
        tab_row(&r, A, i % 5 == 0, x);
        for (int j = 0; j < TAB_W; j++) fprintf(f, "%.5f,", x[j]);
        fprintf(f, "%d\n", i % 5 == 0);
    }
    fclose(f);
    char *out;
    int rc = run_anodm(&out, "experiment --dataset generic --data %s --classes 1 --epochs 60 "
                       "--n-ref 150 --threads 1 --out-dir %s", csv, dir);
    const char *at = out ? strstr(out, "auROC: re ") : NULL;
    double re = at ? atof(at + strlen("auROC: re ")) : NAN;
    CHECK_MSG(rc == 0 && strstr(out, "input 1x1x12, architecture mlp, scale standard, recon mse") &&
                  re > 0.85, "exit %d, RE auROC %g: %s", rc, re, out);
    free(out);
    rc = run_anodm(&out, "experiment --dataset generic --out-dir %s", dir);
    CHECK_MSG(rc == 2 && strstr(out, "needs --data FILE"), "exit %d: %s", rc, out);
    free(out);
    rc = run_anodm(&out, "experiment --dataset fashion-mnist --labels x --out-dir %s", dir);
    CHECK_MSG(rc == 2 && strstr(out, "are for --dataset generic"), "exit %d: %s", rc, out);
    free(out);
    rc = run_anodm(&out, "experiment --dataset mnist --data %s/nowhere --out-dir %s", tmp, dir);
    CHECK_MSG(rc == 1 && strstr(out, "nowhere"), "exit %d: %s", rc, out);
    free(out);
}
