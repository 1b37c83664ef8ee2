/* The stream protocol for one class at one rate: `anodm experiment --stream`. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auroc.h"
#include "cli.h"
#include "experiment.h"

/* The order samples stream in: by source, or seeded random through one memory. */
static int order_of(const int32_t *source, size_t n, uint64_t seed, stream_order *o, char *err,
                    size_t errlen) {
    return source ? stream_order_by_source(o, source, n, err, errlen)
                  : stream_order_shuffled(o, n, seed, err, errlen);
}

/* Calibrate d on the normals cal streaming by source (or shuffled, seeded). */
static int calibrate(const detector *d, const dataset *cal, const int32_t *source,
                     uint64_t seed, double q, stream_calibration *c, char *err, size_t errlen) {
    stream_order o;
    int rc = order_of(source, cal->n, seed, &o, err, errlen);
    if (rc == 0) rc = stream_calibrate(d, cal->x, &o, q, c, err, errlen);
    stream_order_free(&o);
    return rc;
}

/* Recall and false-alarm rate of scores (n, is_pos) at threshold t. */
static void at_threshold(const double *scores, const int *is_pos, size_t n, size_t n_pos,
                         double t, double *recall, double *false_alarm) {
    size_t tp = 0, fp = 0;
    for (size_t i = 0; i < n; i++) {
        int flagged = scores[i] > t;
        tp += (size_t)(flagged && is_pos[i]);
        fp += (size_t)(flagged && !is_pos[i]);
    }
    *recall = (double)tp / (double)n_pos;
    *false_alarm = (double)fp / (double)(n - n_pos);
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* rec[i] = 1 for the anomalies whose stream had brought at least k anomalies before them
 * (per source when the order has sources); their count, or -1 if out of memory. */
static long recurring(const stream_order *o, const int *is_pos, int k, uint8_t *rec) {
    const size_t n = o->n;
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    size_t *seen = calloc(n ? n : 1, sizeof *seen), m = 0;
    long count = -1;
    if (!ids || !seen) goto done;
    for (size_t i = 0; i < n; i++) ids[i] = o->source ? o->source[i] : 0;
    qsort(ids, n, sizeof *ids, cmp_i32);
    for (size_t i = 0; i < n; i++)
        if (i == 0 || ids[i] != ids[i - 1]) ids[m++] = ids[i];
    count = 0;
    for (size_t i = 0; i < n; i++) {
        const size_t at = o->at[i];
        const int32_t key = o->source ? o->source[i] : 0;
        const int32_t *hit = bsearch(&key, ids, m, sizeof *ids, cmp_i32);
        size_t *before = &seen[hit - ids];
        rec[at] = is_pos[at] && *before >= (size_t)k;
        count += rec[at];
        *before += (size_t)is_pos[at];
    }
done:
    free(ids);
    free(seen);
    return count;
}

/* auROC of scores on the normals and the anomalies with rec[i] == want; NaN if none. */
static double auroc_of(const double *scores, const int *is_pos, const uint8_t *rec, int want,
                       size_t n, double *s, int *p) {
    size_t m = 0, pos = 0;
    for (size_t i = 0; i < n; i++)
        if (!is_pos[i] || rec[i] == want) {
            s[m] = scores[i];
            p[m++] = is_pos[i];
            pos += (size_t)is_pos[i];
        }
    return pos && pos < m ? auroc(s, p, m) : NAN;
}

int cli_stream_class(const detector *d, const cli_stream_data *data, int32_t cls, double rate,
                     double q, uint64_t seed, stream_result *out, char *err, size_t errlen) {
    const dataset *test = data->test;
    size_t n = 0;
    int *is_pos = malloc(test->n * sizeof *is_pos), rc = -1;
    float *x = test->x;
    double *scores[FUSION_N] = {0};
    detector_result *res = malloc(test->n * sizeof *res);
    uint8_t *rec = malloc(test->n ? test->n : 1);
    double *sub = malloc(test->n * sizeof *sub);
    int *sub_pos = malloc(test->n * sizeof *sub_pos);
    stream_calibration c = {0}, one = {0};
    stream_order o = {0};
    int ok = is_pos && res && rec && sub && sub_pos;
    for (int f = 0; f < FUSION_N; f++)
        ok &= (scores[f] = malloc(test->n * sizeof(double))) != NULL;
    if (!ok) {
        snprintf(err, errlen, "out of memory for %zu stream scores", test->n);
        goto done;
    }
    if (!data->test_source != !data->cal_source || (data->test_source && rate > 0)) {
        snprintf(err, errlen, "stream: sources on both sides or neither, and no anomaly rate "
                 "with sources");
        goto done;
    }
    if (cli_test_at_rate(test, cls, rate, seed, &x, is_pos, &n, err, errlen)) goto done;
    if (calibrate(d, data->cal, data->cal_source, seed ^ 0xCA1ULL, q, &c, err, errlen) != 0 ||
        order_of(data->test_source, n, seed, &o, err, errlen) != 0 ||
        stream_replay(d, x, &o, res, err, errlen) != 0)
        goto done;
    memset(out, 0, sizeof *out);
    out->n = n;
    out->n_cal = data->cal->n;
    for (size_t i = 0; i < n; i++) out->n_pos += (size_t)is_pos[i];
    out->n_sources = o.n_sources;
    stream_scores(d, &c, res, n, scores);
    long n_rec = recurring(&o, is_pos, d->use_memory ? d->memory.k : 0, rec);
    if (n_rec < 0) {
        snprintf(err, errlen, "out of memory for %zu stream scores", n);
        goto done;
    }
    out->n_recurring = (size_t)n_rec;
    for (int f = 0; f < FUSION_N; f++) {
        out->auc[f] = auroc(scores[f], is_pos, n);
        out->tpr_1pct[f] = roc_tpr_at_fpr(scores[f], is_pos, n, 0.01);
        at_threshold(scores[f], is_pos, n, out->n_pos, c.threshold[f], &out->recall[f],
                     &out->false_alarm[f]);
        out->auc_recurring[f] = auroc_of(scores[f], is_pos, rec, 1, n, sub, sub_pos);
        out->auc_first[f] = auroc_of(scores[f], is_pos, rec, 0, n, sub, sub_pos);
    }
    if (data->test_source && data->cal_one) {
        if (calibrate(d, data->cal_one, NULL, seed ^ 0xCA1ULL, q, &one, err, errlen) != 0)
            goto done;
        stream_scores(d, &one, res, n, scores);
        for (int f = 0; f < FUSION_N; f++)
            at_threshold(scores[f], is_pos, n, out->n_pos, one.threshold[f], &out->recall_one[f],
                         &out->false_alarm_one[f]);
        out->n_one_cal = data->cal_one->n;
        out->one_done = 1;
    }
    out->done = 1;
    rc = 0;
done:
    stream_order_free(&o);
    stream_calibration_free(&c);
    stream_calibration_free(&one);
    for (int f = 0; f < FUSION_N; f++) free(scores[f]);
    if (x != test->x) free(x);
    free(is_pos);
    free(res);
    free(rec);
    free(sub);
    free(sub_pos);
    return rc;
}
