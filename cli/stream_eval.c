/* The stream protocol for one class at one rate: `anodm experiment --stream`. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auroc.h"
#include "cli.h"
#include "experiment.h"

int cli_stream_class(const detector *d, const dataset *test, int32_t cls, double rate,
                     const dataset *cal, double q, uint64_t seed, stream_result *out,
                     char *err, size_t errlen) {
    const size_t dim = test->dim;
    size_t *idx = malloc(test->n * sizeof *idx), n = test->n;
    int *is_pos = malloc(test->n * sizeof *is_pos), rc = -1;
    float *x = NULL;
    double *scores[FUSION_N] = {0};
    stream_calibration c = {0};
    int ok = idx && is_pos;
    for (int f = 0; f < FUSION_N; f++)
        ok &= (scores[f] = malloc(test->n * sizeof(double))) != NULL;
    if (!ok) {
        snprintf(err, errlen, "out of memory for %zu stream scores", test->n);
        goto done;
    }
    for (size_t i = 0; i < test->n; i++) is_pos[i] = test->labels[i] == cls;
    if (rate > 0) {
        n = experiment_anomaly_subset(is_pos, test->n, rate, seed, idx);
        if (!n) {
            snprintf(err, errlen, "the test set lacks normals or anomalies");
            goto done;
        }
    } else {
        for (size_t i = 0; i < n; i++) idx[i] = i;
    }
    if (!(x = malloc(n * dim * sizeof *x))) {
        snprintf(err, errlen, "out of memory for the test stream");
        goto done;
    }
    for (size_t j = 0; j < n; j++) {
        memcpy(x + j * dim, test->x + idx[j] * dim, dim * sizeof *x);
        is_pos[j] = is_pos[idx[j]];   /* idx ascending: entries only move forward */
    }
    if (stream_calibrate(d, cal->x, (int)cal->n, seed ^ 0xCA1ULL, q, &c, err, errlen) != 0 ||
        stream_replay(d, &c, x, (int)n, seed, scores, err, errlen) != 0)
        goto done;
    memset(out, 0, sizeof *out);
    out->n = n;
    for (size_t i = 0; i < n; i++) out->n_pos += (size_t)is_pos[i];
    for (int f = 0; f < FUSION_N; f++) {
        size_t tp = 0, fp = 0;
        for (size_t i = 0; i < n; i++) {
            int flagged = scores[f][i] > c.threshold[f];
            tp += (size_t)(flagged && is_pos[i]);
            fp += (size_t)(flagged && !is_pos[i]);
        }
        out->auc[f] = auroc(scores[f], is_pos, n);
        out->tpr_1pct[f] = roc_tpr_at_fpr(scores[f], is_pos, n, 0.01);
        out->recall[f] = (double)tp / (double)out->n_pos;
        out->false_alarm[f] = (double)fp / (double)(n - out->n_pos);
    }
    out->done = 1;
    rc = 0;
done:
    stream_calibration_free(&c);
    for (int f = 0; f < FUSION_N; f++) free(scores[f]);
    free(x);
    free(idx);
    free(is_pos);
    return rc;
}
