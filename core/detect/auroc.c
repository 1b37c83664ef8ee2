/* auROC by ranks, ROC by a sweep over sorted scores. */
#include "auroc.h"

#include <math.h>
#include <stdlib.h>

typedef struct { double s; int pos; } scored;

static int by_score_desc(const void *a, const void *b) {
    double x = ((const scored *)a)->s, y = ((const scored *)b)->s;
    return (x < y) - (x > y);
}

/* Sorted copy (descending), counting positives; NULL on NaN or no memory. */
static scored *sorted(const double *scores, const int *is_pos, size_t n, size_t *n_pos) {
    scored *v = malloc((n ? n : 1) * sizeof *v);
    *n_pos = 0;
    if (!v) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (isnan(scores[i])) {
            free(v);
            return NULL;
        }
        v[i].s = scores[i];
        v[i].pos = is_pos[i] != 0;
        *n_pos += (size_t)v[i].pos;
    }
    qsort(v, n, sizeof *v, by_score_desc);
    return v;
}

double auroc(const double *scores, const int *is_pos, size_t n) {
    size_t n_pos;
    scored *v = sorted(scores, is_pos, n, &n_pos);
    if (!v || n_pos == 0 || n_pos == n) {
        free(v);
        return NAN;
    }
    /* Walk groups of tied scores from the top: each positive beats every negative below
     * its group and ties (half) with the negatives inside it. */
    double wins = 0.0;
    size_t neg_above = 0, n_neg = n - n_pos;
    for (size_t i = 0; i < n;) {
        size_t j = i, pos = 0, neg = 0;
        while (j < n && v[j].s == v[i].s) {
            if (v[j].pos) pos++;
            else neg++;
            j++;
        }
        size_t neg_below = n_neg - neg_above - neg;
        wins += (double)pos * ((double)neg_below + 0.5 * (double)neg);
        neg_above += neg;
        i = j;
    }
    free(v);
    return wins / ((double)n_pos * (double)n_neg);
}

size_t roc_curve(const double *scores, const int *is_pos, size_t n, double *fpr, double *tpr) {
    size_t n_pos;
    scored *v = sorted(scores, is_pos, n, &n_pos);
    if (!v || n_pos == 0 || n_pos == n) {
        free(v);
        return 0;
    }
    size_t k = 0, tp = 0, fp = 0;
    fpr[k] = tpr[k] = 0.0;
    k++;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && v[j].s == v[i].s) {
            if (v[j].pos) tp++;
            else fp++;
            j++;
        }
        fpr[k] = (double)fp / (double)(n - n_pos);
        tpr[k] = (double)tp / (double)n_pos;
        k++;
        i = j;
    }
    free(v);
    return k;
}

double roc_tpr_at_fpr(const double *scores, const int *is_pos, size_t n, double max_fpr) {
    size_t n_pos;
    scored *v = sorted(scores, is_pos, n, &n_pos);
    if (!v || n_pos == 0 || n_pos == n) {
        free(v);
        return NAN;
    }
    size_t tp = 0, fp = 0;
    double best = 0.0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        for (; j < n && v[j].s == v[i].s; j++) {
            if (v[j].pos) tp++;
            else fp++;
        }
        if ((double)fp / (double)(n - n_pos) > max_fpr) break;
        best = (double)tp / (double)n_pos;
        i = j;
    }
    free(v);
    return best;
}
