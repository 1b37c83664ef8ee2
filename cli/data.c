/* Loading data sets from what a user names on the command line. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "dataset_io.h"
#include "experiment.h"

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

int cli_load_data(dataset *d, const data_source *src, int train, char *err, size_t errlen) {
    struct stat st;
    if (stat(src->path, &st) != 0) {
        snprintf(err, errlen, "%s: no such file or directory", src->path);
        return -1;
    }
    if (S_ISDIR(st.st_mode)) return dataset_load_fashion_mnist(d, src->path, train, err, errlen);
    if (ends_with(src->path, ".npy") || ends_with(src->path, ".npy.gz"))
        return dataset_load_npy(d, src->path, src->labels, err, errlen);
    if (ends_with(src->path, ".csv") || ends_with(src->path, ".csv.gz"))
        return dataset_load_csv(d, src->path, src->labels ? DATASET_CSV_NO_LABEL : src->label_col,
                                err, errlen);
    return dataset_load_idx(d, src->path, src->labels, err, errlen);
}

int cli_load_training(dataset *d, const data_source *src, const int32_t *held_out,
                      size_t n_held_out, size_t limit, char *err, size_t errlen) {
    if (cli_load_data(d, src, 1, err, errlen) != 0) return -1;
    if (n_held_out && dataset_filter_classes(d, held_out, n_held_out, 1, err, errlen) != 0)
        return -1;
    if (limit > 0 && limit < d->n) d->n = limit;
    return 0;
}

int cli_check_input(const dataset *d, const vae_arch *arch, char *err, size_t errlen) {
    if (d->dim == shape_size(arch->in)) return 0;
    snprintf(err, errlen, "samples have %zu values, architecture '%s' expects %zu (%dx%dx%d)",
             d->dim, arch->name, shape_size(arch->in), arch->in.c, arch->in.h, arch->in.w);
    return -1;
}

shape3 cli_sample_shape(const data_source *src, const dataset *d) {
    if (!cli_is_dir(src->path) && d->channels == 1 && d->height > 1 &&
        (ends_with(src->path, ".npy") || ends_with(src->path, ".npy.gz")))
        return (shape3){d->height, 1, d->width};     /* (N, C, W): C channels of W steps */
    return (shape3){d->channels, d->height, d->width};
}

const char *cli_default_arch(shape3 in) {
    if (in.h > 1 && in.c == 1 && in.h == 28 && in.w == 28) return "fashion";
    if (in.h > 1 && in.c == 3 && in.h == 32 && in.w == 32) return "cifar10";
    if (in.h > 1 && in.c == 1 && in.h == 32 && in.w == 32) return "smallnorb";
    if (in.h == 1 && in.c > 1) return "conv1d";
    return "mlp";
}

int cli_unit_range(const dataset *d) {
    for (size_t i = 0; i < d->n * d->dim; i++)
        if (!(d->x[i] >= 0.0f && d->x[i] <= 1.0f)) return 0;
    return 1;
}

int cli_parse_shape(const char *s, shape3 *out) {
    int c, h, w, n = 0;
    if (sscanf(s, "%d,%d,%d%n", &c, &h, &w, &n) != 3 || s[n] || c < 1 || h < 1 || w < 1 ||
        c > CONV_MAX_DIM || h > CONV_MAX_DIM || w > CONV_MAX_DIM)
        return -1;
    *out = (shape3){c, h, w};
    return 0;
}

int cli_label_col(const char *s, int *out) {
    long long v;
    if (!strcmp(s, "none")) {
        *out = DATASET_CSV_NO_LABEL;
        return 0;
    }
    if (cli_int("--label-col", s, 0, 100000, &v)) return -1;
    *out = (int)v;
    return 0;
}

int cli_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int cli_parse_classes(const char *s, int32_t *classes, int max) {
    int n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > 1000000 || n == max) return -1;
        classes[n++] = (int32_t)v;
        s = end;
        if (*s == ',') s++;
        else if (*s) return -1;
    }
    return n ? n : -1;
}

int cli_int(const char *opt, const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "anodm: %s wants an integer from %lld to %lld, not '%s'\n", opt, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_real(const char *opt, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v) || v < lo || v > hi) {
        fprintf(stderr, "anodm: %s wants a number from %g to %g, not '%s'\n", opt, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_test_at_rate(const dataset *test, int32_t cls, double rate, uint64_t seed, float **x,
                     int *is_pos, size_t *n, char *err, size_t errlen) {
    *x = test->x;
    *n = test->n;
    for (size_t i = 0; i < test->n; i++) is_pos[i] = test->labels[i] == cls;
    if (!(rate > 0)) return 0;
    size_t *idx = malloc(test->n * sizeof *idx);
    size_t m = idx ? experiment_anomaly_subset(is_pos, test->n, rate, seed, idx) : 0;
    float *sub = m ? malloc(m * test->dim * sizeof *sub) : NULL;
    if (!sub) {
        snprintf(err, errlen, idx && !m ? "the test set lacks normals or anomalies"
                                        : "out of memory for the test subset");
        free(idx);
        return -1;
    }
    for (size_t j = 0; j < m; j++) {
        memcpy(sub + j * test->dim, test->x + idx[j] * test->dim, test->dim * sizeof *sub);
        is_pos[j] = is_pos[idx[j]];     /* idx ascending: entries only move forward */
    }
    free(idx);
    *x = sub;
    *n = m;
    return 0;
}

int cli_choice(const char *cmd, const char *option, const char *const *names, int n,
               const char *s) {
    for (int i = 0; i < n; i++)
        if (!strcmp(s, names[i])) return i;
    fprintf(stderr, "%s: %s is", cmd, option);
    for (int i = 0; i < n; i++) fprintf(stderr, "%s %s", i ? (i == n - 1 ? " or" : ",") : "", names[i]);
    fprintf(stderr, ", not '%s'\n", s);
    return -1;
}

int cli_fusion(const char *cmd, const char *s, score_fusion *out) {
    int f = cli_choice(cmd, "--fusion", SCORE_FUSION_NAME, FUSION_N, s);
    if (f < 0) return -1;
    *out = (score_fusion)f;
    return 0;
}

int cli_memory_retain(const char *cmd, const char *s, memory_options *o) {
    int v = cli_choice(cmd, "--memory-retain", MEMORY_RETAIN_NAME, MEMORY_RETAIN_N, s);
    if (v < 0) return -1;
    o->retain = (memory_retain)v;
    return 0;
}

int cli_latent_input(const char *cmd, const char *s, latent_input *out) {
    if (!strcmp(s, "mu") || !strcmp(s, "z")) {
        *out = s[0] == 'z' ? LATENT_Z : LATENT_MU;
        return 0;
    }
    fprintf(stderr, "%s: --latent-input is mu or z, not '%s'\n", cmd, s);
    return -1;
}
