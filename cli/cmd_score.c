/* anodm score: score a data file offline with a model bundle, through the same scorer
 * the daemon uses, writing one line per sample (CSV or JSON lines). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auroc.h"
#include "api.h"
#include "bundle.h"
#include "cli.h"
#include "scorer.h"

#define MAX_CLASSES 64

static void score_usage(FILE *f) {
    fprintf(f,
        "usage: anodm score MODEL.anodm DATA [options]\n"
        "  DATA                 IDX directory (its test split), or .npy/.csv/IDX file\n"
        "  --labels FILE        labels for a .npy or IDX file (copied to the output)\n"
        "  --label-col N|none   CSV label column, or none (default: the last column)\n"
        "  --anomaly-class L    with labels: report the auROC with these classes as anomalies\n"
        "  --format csv|jsonl   output format (csv)\n"
        "  --batch N            samples scored together (32; context mode depends on it)\n"
        "  --out FILE           output file (default: standard output)\n");
}

/* The CSV columns: index, label (with labels), then detector.h's table in its order. A
 * field's value by its type: REAL to 9 significant digits, as the API prints it
 * (docs/BATCHING.md; empty when unknown), FLAG 0 or 1, INDEX an integer. */
#define CSV_NAME(name, type, group, doc) "," #name
static void csv_REAL(FILE *f, double v) {
    if (isnan(v)) fputc(',', f);
    else fprintf(f, ",%.9g", v);
}
static void csv_FLAG(FILE *f, int v) { fprintf(f, ",%d", v); }
static void csv_INDEX(FILE *f, int32_t v) { fprintf(f, ",%d", (int)v); }

/* Sample i's line: CSV, or a JSON object (proto/api.c's encoder of the same table, which
 * writes an unknown value as null). 0, or -1 when out of memory. */
static int write_row(FILE *f, int jsonl, size_t i, const int32_t *label,
                     const detector_result *r) {
    if (jsonl) {
        char *line = api_encode_result_line(i, label, r);
        if (!line) return -1;
        fprintf(f, "%s\n", line);
        free(line);
        return 0;
    }
    fprintf(f, "%zu", i);
    if (label) fprintf(f, ",%d", *label);
#define CSV_FIELD(name, type, group, doc) csv_##type(f, r->name);
    DETECTOR_RESULT_FIELDS(CSV_FIELD)
#undef CSV_FIELD
    fputc('\n', f);
    return 0;
}

int cmd_score(int argc, char **argv) {
    static const struct option opts[] = {
        {"labels", required_argument, 0, 'L'}, {"label-col", required_argument, 0, 'c'},
        {"anomaly-class", required_argument, 0, 'x'}, {"format", required_argument, 0, 'F'},
        {"batch", required_argument, 0, 'B'}, {"out", required_argument, 0, 'o'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    data_source src = {.label_col = DATASET_CSV_LAST_COL};
    const char *out_path = NULL;
    int jsonl = 0, batch = 32, n_classes = 0, ch;
    int32_t classes[MAX_CLASSES];
    long long v;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'L': src.labels = optarg; break;
        case 'c':
            if (cli_label_col(optarg, &src.label_col)) return 2;
            break;
        case 'x':
            if ((n_classes = cli_parse_classes(optarg, classes, MAX_CLASSES)) < 0) {
                fprintf(stderr, "anodm score: --anomaly-class wants numbers like 1 or 1,3\n");
                return 2;
            }
            break;
        case 'F':
            if (strcmp(optarg, "csv") && strcmp(optarg, "jsonl")) {
                fprintf(stderr, "anodm score: --format is csv or jsonl\n");
                return 2;
            }
            jsonl = optarg[0] == 'j';
            break;
        case 'B': if (cli_int("--batch", optarg, 1, 4096, &v)) return 2; batch = (int)v; break;
        case 'o': out_path = optarg; break;
        case 'h': score_usage(stdout); return 0;
        default: score_usage(stderr); return 2;
        }
    }
    if (argc - optind != 2) {
        fprintf(stderr, "anodm score: a model and a data file are required\n");
        score_usage(stderr);
        return 2;
    }
    const char *model_path = argv[optind];
    src.path = argv[optind + 1];
    char err[512];
    detector d;
    dataset data = {0};
    scorer *s = NULL;
    FILE *out = stdout;
    detector_result *res = NULL;
    int rc = 1;
    double *scores = NULL;
    int *is_pos = NULL;
    uint8_t *flag = NULL;
    if (bundle_load(model_path, &d, err, sizeof err) != 0) goto fail;
    if (cli_load_data(&data, &src, 0, err, sizeof err) != 0) goto fail;
    if (data.dim != shape_size(d.vae.arch.in)) {
        snprintf(err, sizeof err, "samples have %zu values, the model expects %zu", data.dim,
                 shape_size(d.vae.arch.in));
        goto fail;
    }
    if (n_classes && !data.labels) {
        snprintf(err, sizeof err, "--anomaly-class needs labelled data");
        goto fail;
    }
    res = malloc((size_t)batch * sizeof *res);
    scores = malloc(data.n * sizeof *scores);
    is_pos = malloc(data.n * sizeof *is_pos);
    flag = malloc(data.n * sizeof *flag);
    if (!res || !scores || !is_pos || !flag) {
        snprintf(err, sizeof err, "out of memory");
        goto fail;
    }
    if (!(s = scorer_create(&d, batch, err, sizeof err))) goto fail;
    if (out_path && !(out = fopen(out_path, "w"))) {
        snprintf(err, sizeof err, "%s: cannot write", out_path);
        out = stdout;
        goto fail;
    }
    if (!jsonl)
        fprintf(out, "index%s" DETECTOR_RESULT_FIELDS(CSV_NAME) "\n",
                data.labels ? ",label" : "");
    size_t flagged = 0;
    double t0 = clock_seconds();
    for (size_t i = 0; i < data.n; i += (size_t)batch) {
        int B = (int)(data.n - i < (size_t)batch ? data.n - i : (size_t)batch);
        if (scorer_score(s, data.x + i * data.dim, B, res, NULL, NULL, NULL, err, sizeof err))
            goto fail;
        for (int b = 0; b < B; b++) {
            size_t k = i + (size_t)b;
            if (write_row(out, jsonl, k, data.labels ? &data.labels[k] : NULL, &res[b])) {
                snprintf(err, sizeof err, "out of memory");
                goto fail;
            }
            scores[k] = res[b].score;
            flag[k] = (uint8_t)res[b].is_anomaly;
            flagged += (size_t)res[b].is_anomaly;
        }
    }
    double dt = clock_seconds() - t0;
    fprintf(stderr, "scored %zu samples in %.2f s (%.0f/s): %zu flagged anomalous at threshold "
            "%.4f\n", data.n, dt, data.n / (dt > 0 ? dt : 1e-9), flagged, d.threshold);
    if (n_classes) {
        for (size_t k = 0; k < data.n; k++) {
            is_pos[k] = 0;
            for (int c = 0; c < n_classes; c++) is_pos[k] |= data.labels[k] == classes[c];
        }
        /* What a user of the stream meets: the ranking, the catch at a 1% alarm budget,
         * and at the model's own threshold. */
        size_t n_pos = 0, caught = 0, alarms = 0;
        for (size_t k = 0; k < data.n; k++) {
            n_pos += (size_t)is_pos[k];
            caught += (size_t)(is_pos[k] && flag[k]);
            alarms += (size_t)(!is_pos[k] && flag[k]);
        }
        fprintf(stderr, "auROC of the score: %.4f; true-positive rate at 1%% false positives: "
                "%.4f\n", auroc(scores, is_pos, data.n),
                roc_tpr_at_fpr(scores, is_pos, data.n, 0.01));
        fprintf(stderr, "at the threshold: %zu of %zu anomalies flagged (recall %.4f), %zu of "
                "%zu normals (false-alarm rate %.4f)\n", caught, n_pos,
                n_pos ? (double)caught / (double)n_pos : NAN, alarms, data.n - n_pos,
                data.n > n_pos ? (double)alarms / (double)(data.n - n_pos) : NAN);
    }
    if (ferror(out) || (out != stdout && fclose(out) != 0)) {
        out = stdout;
        snprintf(err, sizeof err, "writing the output failed");
        goto fail;
    }
    out = stdout;
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "anodm score: %s\n", err);
done:
    if (out != stdout) fclose(out);
    scorer_free(s);
    detector_free(&d);
    dataset_free(&data);
    free(res);
    free(scores);
    free(is_pos);
    free(flag);
    return rc;
}
