/* cli.h — the anodm command line: one function per subcommand, and the helpers they
 * share (loading a data set from the forms a user passes). */
#ifndef ANODM_CLI_H
#define ANODM_CLI_H

#include <getopt.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "clock.h"
#include "dataset.h"
#include "stream.h"
#include "detector.h"
#include "pipeline.h"

int cmd_train(int argc, char **argv);       /* anodm train: fit a beta-VAE */
int cmd_bench_vae(int argc, char **argv);   /* anodm bench-vae: one timed training epoch */
int cmd_bench_score(int argc, char **argv); /* anodm bench-score: per-stage scoring cost */
int bench_tsne_main(int argc, char **argv); /* anodm bench-tsne: t-SNE fit and placement timings */
int cmd_score(int argc, char **argv);       /* anodm score: offline scoring with a bundle */
int cmd_inspect(int argc, char **argv);     /* anodm inspect: a model bundle's contents */
int cmd_experiment(int argc, char **argv);  /* anodm experiment: the paper's one-vs-rest table */
int cmd_ecg_extract(int argc, char **argv); /* anodm ecg-extract: heartbeats from WFDB records */
int cmd_ecg_rpeaks(int argc, char **argv);  /* anodm ecg-rpeaks: R-peak detector vs annotations */

/* Where samples come from: a Fashion-MNIST/MNIST-style IDX directory (split chooses
 * train or t10k), or a .npy/.csv/IDX file with an optional labels file. */
typedef struct {
    const char *path;
    const char *labels;       /* NULL: labels in the file itself (CSV) or none */
    int label_col;            /* CSV: DATASET_CSV_LAST_COL by default */
} data_source;

/* The MIT-BIH heartbeat set as `anodm ecg-extract` makes it, as a dataset (1x1x187
 * beats, AAMI labels 0..4) and the beats' record numbers (*records, malloc'd, d->n of
 * them). cli_ecg_load_dir extracts it from the records listed in DIR/RECORDS (lead MLII;
 * records without it skipped); cli_ecg_load_npy reads FILE.npy, FILE.labels.npy and
 * FILE.records.npy (*records NULL when that file is absent and need_records is 0).
 * 0, or -1 with a message. */
int cli_ecg_load_dir(dataset *d, int32_t **records, const char *dir, char *err, size_t errlen);
int cli_ecg_load_npy(dataset *d, int32_t **records, int need_records, const char *path,
                     char *err, size_t errlen);
/* Load src (train = 1: the training split of a directory). 0, or -1 with a message. */
int cli_load_data(dataset *d, const data_source *src, int train, char *err, size_t errlen);
/* Training samples: src's training split, the held_out classes removed (n_held_out 0:
 * none), the first limit kept (0: all); 0, or -1 with a message. */
int cli_load_training(dataset *d, const data_source *src, const int32_t *held_out,
                      size_t n_held_out, size_t limit, char *err, size_t errlen);
/* 0 when d's samples have arch's input size; -1 with a message saying both otherwise. */
int cli_check_input(const dataset *d, const vae_arch *arch, char *err, size_t errlen);
/* The shape of one of src's samples as the models read it: the dataset's (an IDX
 * image 1xHxW, a CSV row or 2-D array 1x1xW, a 4-D array CxHxW), except that a 3-D NPY
 * array (N, C, W) is C channels of W steps, (C,1,W), as conv1d wants it. The values are
 * in the same order either way. */
shape3 cli_sample_shape(const data_source *src, const dataset *d);
/* The preset for samples of shape in when none is named: the paper's for its image
 * shape, conv1d for several channels of a series, mlp for everything else (vectors,
 * tabular rows, other images). */
const char *cli_default_arch(shape3 in);
/* Nonzero when every value of d is in [0, 1]: pixels, beats scaled per sample. Such data
 * are not scaled and get BCE by default; anything else standard scaling and MSE. */
int cli_unit_range(const dataset *d);
/* "C,H,W" (each 1..CONV_MAX_DIM) into *out; 0, or -1 when malformed. */
int cli_parse_shape(const char *s, shape3 *out);
/* --label-col's value: a column index or "none" (DATASET_CSV_NO_LABEL); -1 after a
 * message otherwise. */
int cli_label_col(const char *s, int *out);
/* Nonzero if path is a directory. */
int cli_is_dir(const char *path);
/* Parse "1,3,5" into classes (at most max); returns the count, or -1 if malformed. */
int cli_parse_classes(const char *s, int32_t *classes, int max);
/* Parse option opt's value s as an integer in [lo, hi] into *out; on garbage or out of
 * range, print why and return -1 (the caller exits 2). */
int cli_int(const char *opt, const char *s, long long lo, long long hi, long long *out);
/* The same for a finite real number in [lo, hi]. */
int cli_real(const char *opt, const char *s, double lo, double hi, double *out);
/* --latent-input's value, "mu" or "z"; -1 after a message naming cmd otherwise. */
int cli_latent_input(const char *cmd, const char *s, latent_input *out);
/* A labelled test set at an anomaly rate: is_pos[i] (test->n entries) whether sample i is
 * of class cls; with rate > 0, every normal and a seeded choice of anomalies so that they
 * make up `rate` of the set (experiment_anomaly_subset), copied into a new *x, their
 * is_pos moved to the front; with rate 0 the set as it is (*x = test->x, not a copy).
 * *n samples; 0, or -1 with a message. */
int cli_test_at_rate(const dataset *test, int32_t cls, double rate, uint64_t seed, float **x,
                     int *is_pos, size_t *n, char *err, size_t errlen);
/* An option's value s, one of names[0..n): its index, or -1 after a message naming cmd,
 * the option and the choices. */
int cli_choice(const char *cmd, const char *option, const char *const *names, int n,
               const char *s);
/* --fusion's value, a name of score.h's SCORE_FUSION_NAME; -1 after a message naming
 * cmd otherwise. */
int cli_fusion(const char *cmd, const char *s, score_fusion *out);
/* --memory-retain's value, a name of memory.h's MEMORY_RETAIN_NAME, into o; -1 after a
 * message naming cmd otherwise. */
int cli_memory_retain(const char *cmd, const char *s, memory_options *o);

/* The stream protocol's figures for one anomaly class at one anomaly rate
 * (cli/stream_eval.c), per fusion of core/detect/stream.h. */
typedef struct {
    int done;
    size_t n, n_pos, n_sources;    /* samples, anomalies, sources (0: one stream) */
    size_t n_cal;                  /* the calibration stream's normals */
    double auc[FUSION_N];          /* auROC */
    double tpr_1pct[FUSION_N];     /* true-positive rate at 1% false positives */
    double recall[FUSION_N];       /* anomalies flagged at the fusion's threshold */
    double false_alarm[FUSION_N];  /* normals flagged at it */
    /* What the memory can see: an anomaly "recurs" when its stream (its source's) brought
     * at least the memory's k anomalies before it, so that it can have k of its kind in
     * the memory; each fusion's auROC on the recurring and on the other ("first")
     * anomalies, each against every normal (NaN when a group is empty). */
    size_t n_recurring;
    double auc_recurring[FUSION_N], auc_first[FUSION_N];
    /* With sources: at the thresholds of one calibration stream through one memory (as
     * anodm train calibrates a bundle), n_one_cal normals; one_done when measured. */
    int one_done;
    size_t n_one_cal;
    double recall_one[FUSION_N], false_alarm_one[FUSION_N];
} stream_result;

/* What one stream evaluation replays. Without sources, the test set (at an anomaly rate)
 * and the calibration normals each stream in a seeded random order through one memory.
 * With sources (each sample's tag; a source's samples in time order), each source streams
 * through its own memory (stream_order_by_source), the test set as it is, and cal_one, if
 * given, is calibrated as one stream through one memory to be measured beside. */
typedef struct {
    const dataset *test;           /* labelled */
    const int32_t *test_source;    /* NULL: no sources */
    const dataset *cal;            /* the calibration normals */
    const int32_t *cal_source;     /* NULL exactly when test_source is */
    const dataset *cal_one;        /* may be NULL */
} cli_stream_data;

/* The stream evaluation of data for anomaly class cls at anomaly rate `rate` (0: the test
 * set as it is; sources need 0) through d with fresh memories, each fusion calibrated at
 * quantile q. 0, or -1 with a message. */
int cli_stream_class(const detector *d, const cli_stream_data *data, int32_t cls, double rate,
                     double q, uint64_t seed, stream_result *out, char *err, size_t errlen);
/* ---- options several commands share (options.c: one table of names, bounds and the
 * settings they write) ---- */

/* What the shared options set. */
typedef struct {
    build_opts build;            /* training, map, calibration and scoring */
    int latent;                  /* the beta-VAE's latent size */
} cli_settings;

typedef enum {
    CLI_THREADS, CLI_SEED, CLI_EPOCHS, CLI_BATCH, CLI_LR, CLI_BETA, CLI_CAPACITY,
    CLI_CAPACITY_RAMP, CLI_LATENT, CLI_N_REF, CLI_PERPLEXITY, CLI_TSNE_ITER, CLI_CAL_FRAC,
    CLI_QUANTILE, CLI_WINDOW, CLI_K, CLI_ALPHA, CLI_MEMORY_SIZE, CLI_MEMORY_K, CLI_MEMORY_RECENT,
    CLI_MEMORY_K_MIN, CLI_MEMORY_HORIZON, CLI_N_OPTIONS
} cli_option_id;

/* getopt_long returns CLI_OPTION_VAL + id for shared option id. */
#define CLI_OPTION_VAL 0x1000
#define CLI_IS_OPTION(ch) ((ch) >= CLI_OPTION_VAL && (ch) < CLI_OPTION_VAL + CLI_N_OPTIONS)

typedef struct { long long i; double r; } cli_value;   /* an integer option's, a real's */

/* The library's defaults (build_opts_default) and latent 16. */
void cli_settings_default(cli_settings *s);
/* getopt_long's table for a command: its n_own own options, the n_ids shared ones, the
 * terminator; out has room for n_own + n_ids + 1. */
void cli_getopt_table(struct option *out, const struct option *own, size_t n_own,
                      const cli_option_id *ids, size_t n_ids);
/* Shared option ch (CLI_IS_OPTION) with value arg into s: 0, or -1 after a message naming
 * the option and its bounds (the command exits 2). */
int cli_option_set(cli_settings *s, int ch, const char *arg);
/* Option id's value s, checked as cli_option_set checks it, into v (v->i for integers,
 * v->r for reals), for a command that keeps the value elsewhere. 0 or -1 (a message). */
int cli_option_parse(cli_option_id id, const char *s, cli_value *v);
/* --help lines of the n shared options ids, with the values in s as their defaults. */
void cli_option_usage(FILE *f, const cli_option_id *ids, size_t n, const cli_settings *s);

#endif
