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
    size_t n = 0;
    int *is_pos = malloc(test->n * sizeof *is_pos), rc = -1;
    float *x = test->x;
    double *scores[FUSION_N] = {0};
    stream_calibration c = {0};
    int ok = is_pos != NULL;
    for (int f = 0; f < FUSION_N; f++)
        ok &= (scores[f] = malloc(test->n * sizeof(double))) != NULL;
    if (!ok) {
        snprintf(err, errlen, "out of memory for %zu stream scores", test->n);
        goto done;
    }
    if (cli_test_at_rate(test, cls, rate, seed, &x, is_pos, &n, err, errlen)) goto done;
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
    if (x != test->x) free(x);
    free(is_pos);
    return rc;
}
