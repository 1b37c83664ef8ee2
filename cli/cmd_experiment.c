/* anodm experiment: the paper's one-vs-rest protocol (section 4, Tables 1 and 2) on
 * Fashion-MNIST or the MIT-BIH heartbeats, run with our detector. Per beta and per class:
 * build a detector on the other classes' training samples (10% of them held out for
 * calibration), score the test set in every way core/detect/experiment.h defines, and report
 * auROC with the class as the positive. The heartbeats have no fixed test set: they are
 * split here, by beat (the paper's setting) or by patient record (core/data/ecg.h). Results are rewritten after every class, so a run cut short still
 * leaves its finished classes in results.md, results.json and the ROC plots. */
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "api.h"
#include "auroc.h"
#include "bundle.h"
#include "cli.h"
#include "dataset_io.h"
#include "ecg.h"
#include "experiment.h"
#include "knn.h"
#include "pipeline.h"
#include "rng.h"

#define N_CLASSES 10          /* the most classes of any data set below */
#define MAX_BETAS 16
#define MAX_RATES 4
#define ECG_TEST_FRACTION 0.2  /* the heartbeats' test share, of beats or of records */

static const char *const FASHION_CLASS[] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};

/* Reference values only: the paper's Table 1, Fashion-MNIST (beta-VAE = RE alone,
 * AnoDM = its best of mu/z-based with test-label alpha). Never computed here. */
static const double FASHION_PAPER_BVAE[] = {0.500, 0.860, 0.459, 0.730, 0.379,
                                            0.985, 0.501, 0.842, 0.876, 0.701};
static const double FASHION_PAPER_ANODM[] = {0.844, 0.978, 0.783, 0.886, 0.763,
                                             0.990, 0.713, 0.952, 0.980, 0.944};

/* The AAMI classes (core/data/ecg.h). Reference values only: the paper's Table 2, ECG, AnoDM
 * with the TCN encoder, mu-based, test-label alpha (average 0.940); it gives no beta-VAE
 * figure for ECG. Never computed here. */
static const char *const ECG_CLASS[] = {"N", "S", "V", "F", "Q"};
static const double ECG_PAPER_ANODM[] = {0.911, 0.924, 0.970, 0.905, 0.991};

/* MNIST's classes, and a labelled data set's of its own (--dataset generic): digits. */
static const char *const DIGIT_CLASS[] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};

/* A data set the experiment knows. */
typedef struct {
    const char *name, *title;          /* --dataset, and as titles show it */
    int n_classes;
    const char *const *class_name;
    const double *paper_bvae, *paper_anodm;  /* reference values; NULL: none in the paper */
    const char *paper_source;
    const char *default_data;
    int ecg;                           /* heartbeats: --encoder, --split, --beats apply */
    int generic;                       /* the user's labelled file(s): --data FILE, --labels,
                                          --test, --test-labels; classes 0..9 */
} exp_dataset;

static const exp_dataset DATASETS[] = {
    {"fashion-mnist", "Fashion-MNIST", 10, FASHION_CLASS, FASHION_PAPER_BVAE,
     FASHION_PAPER_ANODM, "Table 1", "/usr/share/datasets/fashion-mnist", 0, 0},
    {"ecg", "MIT-BIH heartbeats", ECG_N_CLASSES, ECG_CLASS, NULL, ECG_PAPER_ANODM,
     "Table 2 (TCN encoder, mu-based)", "../shared/data/ecg/mitdb", 1, 0},
    {"mnist", "MNIST", 10, DIGIT_CLASS, NULL, NULL, "tables (none for MNIST)",
     "/usr/share/datasets/mnist", 0, 0},
    {"generic", "labelled data", 10, DIGIT_CLASS, NULL, NULL, "tables (none for this data)", NULL,
     0, 1},
};

enum { SPLIT_BEAT, SPLIT_PATIENT };

/* Column headers of results.md, in exp_method order. */
static const char *const METHOD_LABEL[EXP_N_METHODS] = {
    "RE", "map joint", "map co-placed", "map stream", "map alone", "latent 1-NN",
    "paper score, best α (TEST LABELS)", "fused: detector (RE+alone)", "fused: RE+joint",
    "fused: RE+co-placed", "fused: RE+stream", "fused: RE+latent 1-NN"};

static const char *const COLOUR[EXP_N_METHODS] = {
    "#1f77b4", "#d62728", "#ff7f0e", "#bcbd22", "#8c564b", "#7f7f7f",
    "#000000", "#2ca02c", "#9467bd", "#e377c2", "#17becf", "#aec7e8"};

typedef struct {
    int done, skipped;           /* skipped: the test set holds no sample of the class */
    double auc[EXP_N_METHODS];
    double best_alpha, seconds;
    size_t n_test, n_pos;
} class_result;

typedef struct {
    const exp_dataset *ds;
    exp_dataset own;             /* generic: its classes as the labels have them */
    data_source src, test_src;   /* generic: the files */
    vae_arch arch;               /* generic: the architecture its samples' shape gets */
    const char *out_dir, *data_dir, *beats_path, *encoder;
    char command[2048], machine[512], date[64], title[160];
    cli_settings set;            /* the shared options: epochs, n_ref, latent, perplexity,
                                    seed, latent input, threads (training, t-SNE and
                                    placement; 0: one per core) */
    int n_betas, n_rates, n_classes, test_limit, train_limit, split;
    int latent_k;                /* the latent term's neighbours (1) */
    /* The data as used: samples per class on each side and, for the heartbeats, the
     * records on each side (ascending; under a beat split every record is on both). */
    size_t n_train_class[N_CLASSES], n_test_class[N_CLASSES];
    int32_t *train_records, *test_records;
    size_t n_train_records, n_test_records;
    double split_balance;        /* ecg_split_records' class balance; NaN for other splits */
    char split_desc[256];        /* how the split was made, for results.md */
    double betas[MAX_BETAS];
    double rates[MAX_RATES];     /* anomaly rates of the test set; one 0: the set as it is */
    int32_t classes[N_CLASSES];
    double t0;
    class_result res[MAX_BETAS * MAX_RATES][N_CLASSES];  /* [beta * n_rates + rate][class] */
    int stream;                  /* --stream: the stream protocol instead of the offline one */
    const char *models_dir;      /* --models: detectors kept and reused there */
    stream_result sres[MAX_BETAS * MAX_RATES][N_CLASSES];
    /* The heartbeats under --stream, streamed by record: the whole beat set (records in
     * turn, each record's beats in R-peak order), each beat's record and side, and where
     * each training and test sample came from in it. */
    int by_record;
    dataset all;
    int32_t *all_record;
    uint8_t *all_is_test;
    size_t *train_idx, *test_idx;
    /* progress context */
    double beta;
    int cls;
} run;

/* The shared options anodm experiment takes (cli/options.c); its --threads is also the
 * t-SNE and placement threads. */
static const cli_option_id EXPERIMENT_OPTIONS[] = {
    CLI_EPOCHS, CLI_LATENT, CLI_SEED, CLI_N_REF, CLI_PERPLEXITY, CLI_THREADS, CLI_MEMORY_SIZE,
    CLI_MEMORY_K, CLI_MEMORY_RECENT, CLI_MEMORY_K_MIN, CLI_MEMORY_HORIZON};
#define N_EXPERIMENT_OPTIONS (sizeof EXPERIMENT_OPTIONS / sizeof EXPERIMENT_OPTIONS[0])

static void experiment_usage(FILE *f, const cli_settings *set) {
    fprintf(f,
        "usage: anodm experiment --dataset fashion-mnist|mnist|ecg|generic [options]\n"
        "  --dataset NAME       fashion-mnist or mnist (IDX directories), ecg (the MIT-BIH\n"
        "                       heartbeats, AAMI classes), or generic: a labelled\n"
        "                       .npy/.csv/IDX file of any shape, classes 0..9, its\n"
        "                       architecture, scaling and loss chosen as anodm train does\n"
        "  --labels FILE, --label-col N|none, --test FILE, --test-labels FILE\n"
        "                       generic: its labels, and a test set (default: a seeded\n"
        "                       fifth of --data)\n"
        "  --data DIR           fashion-mnist: its IDX directory (default %s);\n"
        "                       ecg: raw WFDB records, beats extracted as ecg-extract does\n"
        "                       (DIR/RECORDS, lead MLII; default %s)\n"
        "  --classes all|L,...  anomaly classes, one experiment each (default all): numbers\n"
        "                       (0..9; ecg 0..4) or, for ecg, names like N,S,V,F,Q\n"
        "  --beta B[,B...]      KL weights; a list is the paper's Figure 2 sweep (default 0.01)\n"
        "  --test-limit N       score only N test samples, class proportions kept: fashion-mnist\n"
        "                       the first in file order, ecg a seeded random choice (default all)\n"
        "  --train-limit N      train on N training samples (before one class is held out),\n"
        "                       class proportions kept, a seeded random choice (default all)\n"
        "  --anomaly-rate R[,R...]  score each class's test set at these anomaly rates: all\n"
        "                       normals, anomalies sampled (seeded) to R of the set; up to %d\n"
        "                       rates, each in (0, 1) (default: the test set as it is)\n"
        "  --latent-input mu|z  the latents of the maps and latent 1-NN: encoder means, or\n"
        "                       draws z = mu + sigma * eps (the paper's Table 2) (default mu)\n"
        "  --latent-k K         the latent term (\"latent 1-NN\" columns): mean distance to\n"
        "                       the K nearest reference latents (default 1)\n"
        "  --out-dir DIR        where results.md, results.json and ROC SVGs go (default results)\n"
        "  --stream             the stream protocol (docs/RESULTS.md) instead of the offline\n"
        "                       one: each test set replayed one sample at a time in a seeded\n"
        "                       order through the scorer and a fresh stream memory; every\n"
        "                       fusion's auROC, TPR at 1%% FPR, and recall and false-alarm\n"
        "                       rate at its own threshold, into stream.md and stream.json\n"
        "                       (default rates 0.01,0.05,0.1 and the set as it is); ecg: each\n"
        "                       test record whole, its beats in R-peak order, through its own\n"
        "                       memory, calibrated on training records streamed alike\n"
        "  --models DIR         keep each class's detector in DIR and reuse it when the same\n"
        "                       settings (ecg: split and --train-limit too) run again\n"
        "  --memory-retain company|evidence  the stream memory's retention (as anodm\n"
        "                       train's)\n"

        "ecg only:\n"
        "  --beats FILE.npy     a beat set from anodm ecg-extract (FILE.labels.npy beside it,\n"
        "                       and FILE.records.npy for --split patient) instead of --data\n"
        "  --encoder tcn|cnn|lstm  the beta-VAE's encoder, presets ecg-tcn, ... (default tcn)\n"
        "  --split beat|patient beat: a seeded random %g%% of the beats are the test set, the\n"
        "                       paper's setting; patient: %g%% of the records, every beat of a\n"
        "                       record on one side, the best-balanced of up to %d seeded draws\n"
        "                       (docs/ECG.md) (default beat); the records on each side are\n"
        "                       listed in results.md and results.json\n"
        "  --test-records L,... --split patient with these test records (e.g. 100,103)\n",
        DATASETS[0].default_data, DATASETS[1].default_data, MAX_RATES,
        100 * ECG_TEST_FRACTION, 100 * ECG_TEST_FRACTION, ECG_SPLIT_TRIES);
    fprintf(f, "shared with anodm train (--threads: training, t-SNE and placement threads):\n");
    cli_option_usage(f, EXPERIMENT_OPTIONS, N_EXPERIMENT_OPTIONS, set);
}

static double elapsed(const run *r) { return clock_seconds() - r->t0; }

/* The run's seed: training's, and every split and subset draws from it too. */
static uint64_t seed_of(const run *r) { return r->set.build.train.seed; }

static void on_epoch(const train_progress *p, void *ctx) {
    const run *r = ctx;
    printf("[%7.1fs] beta %g class %d: epoch %3d/%d  loss %9.3f  recon %9.3f  KL %7.3f  %5.1fs\n",
           elapsed(r), r->beta, r->cls, p->epoch, p->epochs, p->loss, p->recon, p->kl,
           p->seconds);
    fflush(stdout);
}

static void on_stage(void *ctx, const char *stage, const char *detail) {
    const run *r = ctx;
    printf("[%7.1fs] beta %g class %d: %s: %s\n", elapsed(r), r->beta, r->cls, stage, detail);
    fflush(stdout);
}

/* One KL weight, by the shared --beta rule (cli/options.c). */
static int beta_value(const char *s, double *v) {
    cli_value x;
    if (cli_option_parse(CLI_BETA, s, &x)) return -1;
    *v = x.r;
    return 0;
}

/* One anomaly rate: experiment_anomaly_subset needs 0 < rate < 1. */
static int rate_value(const char *s, double *v) {
    return cli_real("--anomaly-rate", s, 1e-6, 1 - 1e-6, v);
}

/* Parse a list like "0.01,0.1" of at most max values, each by value, into v; their
 * count, or -1. */
static int parse_list(const char *s, int (*value)(const char *, double *), double *v, int max) {
    char buf[512], *save = NULL;
    int n = 0;
    if (strlen(s) >= sizeof buf) return -1;
    strcpy(buf, s);
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (n == max || value(t, &v[n])) return -1;
        n++;
    }
    return n ? n : -1;
}

static void describe_machine(run *r, int argc, char **argv) {
    struct utsname u;
    char cpu[256] = "unknown CPU", line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
            const char *v = strchr(line, ':') + 1;
            snprintf(cpu, sizeof cpu, "%s", v + strspn(v, " \t"));
            cpu[strcspn(cpu, "\n")] = 0;
            break;
        }
    if (f) fclose(f);
    if (uname(&u) != 0) memset(&u, 0, sizeof u);
    snprintf(r->machine, sizeof r->machine, "%s %s %s, %s, %ld cores", u.sysname, u.release,
             u.machine, cpu, sysconf(_SC_NPROCESSORS_ONLN));
    time_t now = time(NULL);
    strftime(r->date, sizeof r->date, "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));
    size_t len = (size_t)snprintf(r->command, sizeof r->command, "anodm");
    for (int i = 0; i < argc && len < sizeof r->command; i++)
        len += (size_t)snprintf(r->command + len, sizeof r->command - len, " %s", argv[i]);
}

/* The samples of all with side[i] == want, in order, labels with them. */
static int take_rows(const dataset *all, const uint8_t *side, int want, dataset *out, char *err,
                     size_t errlen) {
    size_t n = 0;
    for (size_t i = 0; i < all->n; i++) n += side[i] == want;
    *out = *all;
    out->n = n;
    out->x = malloc((n ? n : 1) * all->dim * sizeof(float));
    out->labels = malloc((n ? n : 1) * sizeof(int32_t));
    if (!out->x || !out->labels || !n) {
        snprintf(err, errlen, n ? "out of memory for %zu samples" : "no samples left", n);
        dataset_free(out);
        return -1;
    }
    for (size_t i = 0, j = 0; i < all->n; i++)
        if (side[i] == want) {
            memcpy(out->x + j * all->dim, all->x + i * all->dim, all->dim * sizeof(float));
            out->labels[j++] = all->labels[i];
        }
    return 0;
}

/* The training samples of every class but cls. */
static int normals_of(const dataset *all, int32_t cls, dataset *out, char *err, size_t errlen) {
    uint8_t *normal = malloc(all->n ? all->n : 1);
    if (!normal) {
        snprintf(err, errlen, "out of memory for the training set");
        return -1;
    }
    size_t n = 0;
    for (size_t i = 0; i < all->n; i++) n += normal[i] = all->labels[i] != cls;
    int rc = n ? take_rows(all, normal, 1, out, err, errlen) : -1;
    if (!n) snprintf(err, errlen, "no normal samples: every training sample is of class %d",
                     (int)cls);
    free(normal);
    return rc;
}

/* ---- output -------------------------------------------------------------------- */

/* The beta and anomaly rate of setting k (beta index * n_rates + rate index). */
static double beta_of(const run *r, int k) { return r->betas[k / r->n_rates]; }
static double rate_of(const run *r, int k) { return r->rates[k % r->n_rates]; }

/* "beta 0.01" or "beta 0.01, anomalies 5% of the test set". */
static void setting_title(const run *r, int k, char *buf, size_t len) {
    int n = snprintf(buf, len, "beta %g", beta_of(r, k));
    if (rate_of(r, k) > 0 && n > 0 && (size_t)n < len)
        snprintf(buf + n, len - (size_t)n, ", anomalies %g%% of the test set", 100 * rate_of(r, k));
}

static void md_num(FILE *f, double v) {
    if (isnan(v)) fprintf(f, " – |");
    else fprintf(f, " %.3f |", v);
}

/* A paper reference value of class cls, NaN where the paper gives none. */
static double paper_value(const double *v, int cls) { return v ? v[cls] : NAN; }

static const char *split_name(const run *r) {
    return r->split == SPLIT_PATIENT ? "patient" : "beat";
}

/* "n (N a, S b, ...)": the samples per class of one side. */
static void md_counts(FILE *f, const run *r, const size_t *count) {
    size_t n = 0;
    for (int k = 0; k < r->ds->n_classes; k++) n += count[k];
    fprintf(f, "%zu (", n);
    for (int k = 0; k < r->ds->n_classes; k++)
        fprintf(f, "%s%s %zu", k ? ", " : "", r->ds->class_name[k], count[k]);
    fprintf(f, ")");
}

static void list_records(FILE *f, const int32_t *rec, size_t n) {
    for (size_t i = 0; i < n; i++) fprintf(f, "%s%d", i ? ", " : "", (int)rec[i]);
}

static int write_markdown(const run *r, const char *path) {
    const build_opts *o = &r->set.build;
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "# anodm experiment: %s one-vs-rest\n\n"
            "- command: `%s`\n- machine: %s\n- date: %s\n- elapsed: %.0f s\n"
            "- settings: epochs %d, latent %d (%s-based), n_ref %d, perplexity %g, seed %llu, "
            "latent term over %d nearest, test %s", r->ds->title, r->command, r->machine,
            r->date, elapsed(r), o->train.epochs, r->set.latent,
            o->input == LATENT_Z ? "z" : "mu", o->n_ref, o->tsne.perplexity,
            (unsigned long long)seed_of(r),
            r->latent_k,
            r->test_limit ? "limited (class proportions kept)"
                          : r->ds->ecg || r->ds->generic ? "the whole test split"
                                                         : "whole t10k set");
    if (r->train_limit) fprintf(f, ", training set limited to %d (class proportions kept)",
                                r->train_limit);
    if (r->ds->ecg)
        fprintf(f, "\n- model: preset ecg-%s (%s encoder)\n- split: %s", r->encoder, r->encoder,
                r->split_desc);
    fprintf(f, "\n- training samples: ");
    md_counts(f, r, r->n_train_class);
    fprintf(f, "\n- test samples: ");
    md_counts(f, r, r->n_test_class);
    if (r->ds->ecg) {
        fprintf(f, "\n- training records (%zu): ", r->n_train_records);
        list_records(f, r->train_records, r->n_train_records);
        fprintf(f, "\n- test records (%zu): ", r->n_test_records);
        list_records(f, r->test_records, r->n_test_records);
    }
    fprintf(f, "\n\nauROC, the held-out class as positive. The column \"paper score, best α\" "
            "picks α on the TEST LABELS (as the paper does); every \"fused\" column is "
            "label-free (terms standardised on held-out calibration normals, α = 0.5). The last "
            "two columns are NOT measured here: they are quoted from the paper's %s as "
            "reference values (– where it gives none).\n\n", r->ds->paper_source);
    for (int k = 0; k < r->n_betas * r->n_rates; k++) {
        char title[128];
        setting_title(r, k, title, sizeof title);
        fprintf(f, "## %s\n\n| class |", title);
        for (int m = 0; m < EXP_N_METHODS; m++) fprintf(f, " %s |", METHOD_LABEL[m]);
        fprintf(f, " best α | paper β-VAE | paper AnoDM |\n|---|");
        for (int m = 0; m < EXP_N_METHODS + 3; m++) fprintf(f, "---|");
        fputc('\n', f);
        double sum[EXP_N_METHODS + 2] = {0};
        int done = 0;
        for (int c = 0; c < r->n_classes; c++) {
            const class_result *cr = &r->res[k][c];
            int cls = r->classes[c];
            if (!cr->done) continue;
            fprintf(f, "| %d %s |", cls, r->ds->class_name[cls]);
            for (int m = 0; m < EXP_N_METHODS; m++) {
                md_num(f, cr->auc[m]);
                sum[m] += cr->auc[m];
            }
            fprintf(f, " %g |", cr->best_alpha);
            md_num(f, paper_value(r->ds->paper_bvae, cls));
            md_num(f, paper_value(r->ds->paper_anodm, cls));
            sum[EXP_N_METHODS] += paper_value(r->ds->paper_bvae, cls);
            sum[EXP_N_METHODS + 1] += paper_value(r->ds->paper_anodm, cls);
            fputc('\n', f);
            done++;
        }
        if (done) {
            fprintf(f, "| **average (%d)** |", done);
            for (int m = 0; m < EXP_N_METHODS; m++) md_num(f, sum[m] / done);
            fprintf(f, " |");
            md_num(f, sum[EXP_N_METHODS] / done);
            md_num(f, sum[EXP_N_METHODS + 1] / done);
            fputc('\n', f);
        }
        for (int c = 0; c < r->n_classes; c++)
            if (r->res[k][c].skipped)
                fprintf(f, "\nClass %d %s skipped: the test set holds no sample of it.\n",
                        r->classes[c], r->ds->class_name[r->classes[c]]);
        fputc('\n', f);
    }
    return fclose(f) == 0 ? 0 : -1;
}

/* JSON arrays of n record ids, sample counts, names. NULL when out of memory. */
static json_t *json_ids(const int32_t *v, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_integer(v[i]))) a = (json_decref(a), NULL);
    return a;
}

static json_t *json_counts(const size_t *v, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_integer((json_int_t)v[i]))) a = (json_decref(a), NULL);
    return a;
}

static json_t *json_names(const char *const *v, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_string(v[i]))) a = (json_decref(a), NULL);
    return a;
}

/* The paper's values of the data set's classes, or null where it gives none. */
static json_t *json_paper(const run *r, const double *v) {
    json_t *a = v ? json_array() : json_null();
    for (int k = 0; v && a && k < r->ds->n_classes; k++)
        if (json_array_append_new(a, json_real(v[k]))) a = (json_decref(a), NULL);
    return a;
}

/* Setting k's run: its beta and anomaly rate, each finished class's auROCs, the classes
 * skipped. */
static json_t *json_run(const run *r, int k) {
    json_t *classes = json_array(), *skipped = json_array();
    json_t *o = json_pack("{s:f, s:o, s:o, s:o}", "beta", beta_of(r, k), "anomaly_rate",
                          api_json_number(rate_of(r, k) > 0 ? rate_of(r, k) : NAN), "classes",
                          classes, "skipped_classes", skipped);
    for (int c = 0; o && c < r->n_classes; c++) {
        const class_result *cr = &r->res[k][c];
        if (cr->skipped && json_array_append_new(skipped, json_integer(r->classes[c])))
            o = (json_decref(o), NULL);
        if (!o || !cr->done) continue;
        json_t *auc = json_object();
        for (int m = 0; auc && m < EXP_N_METHODS; m++)
            if (json_object_set_new(auc, EXP_METHOD_ID[m], api_json_number(cr->auc[m])))
                auc = (json_decref(auc), NULL);
        if (json_array_append_new(classes, json_pack(
                "{s:i, s:s, s:I, s:I, s:f, s:f, s:o}", "class", (int)r->classes[c], "name",
                r->ds->class_name[r->classes[c]], "n_test", (json_int_t)cr->n_test,
                "n_anomalies", (json_int_t)cr->n_pos, "seconds", cr->seconds, "best_alpha",
                cr->best_alpha, "auroc", auc)))
            o = (json_decref(o), NULL);
    }
    return o;
}

/* results.json: the run's command, machine and settings, the data as used, the paper's
 * reference values, and every setting's auROCs, by jansson. */
static int write_json(const run *r, const char *path) {
    const build_opts *o = &r->set.build;
    const size_t n_classes = (size_t)r->ds->n_classes;
    json_t *settings = json_pack(
        "{s:s, s:i, s:i, s:s, s:i, s:f, s:I, s:i, s:i, s:i, s:i}", "dataset", r->ds->name,
        "epochs", o->train.epochs, "latent", r->set.latent, "latent_input",
        o->input == LATENT_Z ? "z" : "mu", "n_ref", o->n_ref, "perplexity", o->tsne.perplexity,
        "seed", (json_int_t)seed_of(r), "test_limit", r->test_limit, "train_limit",
        r->train_limit, "threads", o->train.threads, "latent_k", r->latent_k);
    char arch[64], source[256];
    snprintf(arch, sizeof arch, "ecg-%s", r->encoder ? r->encoder : "");
    snprintf(source, sizeof source, "%s, not measured here", r->ds->paper_source);
    int rc = !settings;
    if (!rc && r->ds->ecg)
        rc = json_object_update_new(settings, json_pack(
            "{s:s, s:s, s:s, s:s, s:o, s:o, s:o}", "encoder", r->encoder, "arch", arch, "split",
            split_name(r), "split_description", r->split_desc, "split_class_balance",
            api_json_number(r->split_balance), "train_records",
            json_ids(r->train_records, r->n_train_records), "test_records",
            json_ids(r->test_records, r->n_test_records)));
    if (!rc)
        rc = json_object_update_new(settings, json_pack(
            "{s:o, s:o, s:o}", "class_names", json_names(r->ds->class_name, n_classes),
            "n_train_per_class", json_counts(r->n_train_class, n_classes),
            "n_test_per_class", json_counts(r->n_test_class, n_classes)));
    json_t *runs = json_array();
    for (int k = 0; !rc && k < r->n_betas * r->n_rates; k++)
        rc = json_array_append_new(runs, json_run(r, k));
    json_t *root = rc ? NULL : json_pack(
        "{s:s, s:s, s:s, s:f, s:O, s:{s:s, s:o, s:o}, s:{s:s, s:s}, s:O}", "command", r->command,
        "machine", r->machine, "date", r->date, "elapsed_seconds", elapsed(r), "settings",
        settings, "paper_reference", "source", source, "beta_vae",
        json_paper(r, r->ds->paper_bvae), "anodm", json_paper(r, r->ds->paper_anodm),
        "label_use", "paper_best_alpha", "alpha chosen with test labels", "fused_*",
        "label-free", "runs", runs);
    char *text = root ? api_json_text(root, JSON_INDENT(2) | JSON_REAL_PRECISION(6)) : NULL;
    FILE *f = text ? fopen(path, "w") : NULL;
    rc = f && fprintf(f, "%s\n", text) >= 0 ? 0 : -1;
    if (f && fclose(f) != 0) rc = -1;
    free(text);
    json_decref(root);
    json_decref(settings);
    json_decref(runs);
    return rc;
}

/* A ROC plot: axes with ticks, the chance diagonal, one polyline per method (points
 * closer than 1/500 of the axis to the previous one dropped), a legend. */
static int write_roc_svg(const char *path, const char *title, double *fpr[EXP_N_METHODS],
                         double *tpr[EXP_N_METHODS], const size_t *npts,
                         const double *auc) {
    const double X0 = 60, Y0 = 40, S = 400; /* plot origin (top left) and side, pixels */
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"820\" height=\"500\" "
            "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"820\" height=\"500\" "
            "fill=\"white\"/>\n<text x=\"%g\" y=\"24\" font-size=\"14\">%s</text>\n", X0, title);
    fprintf(f, "<rect x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" fill=\"none\" "
            "stroke=\"black\"/>\n", X0, Y0, S, S);
    for (int t = 0; t <= 5; t++) {
        double v = t / 5.0, px = X0 + v * S, py = Y0 + S - v * S;
        fprintf(f, "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"black\"/>"
                "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">%.1f</text>\n",
                px, Y0 + S, px, Y0 + S + 5, px, Y0 + S + 18, v);
        fprintf(f, "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"black\"/>"
                "<text x=\"%g\" y=\"%g\" text-anchor=\"end\">%.1f</text>\n",
                X0 - 5, py, X0, py, X0 - 8, py + 4, v);
    }
    fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">false positive rate</text>\n"
            "<text x=\"15\" y=\"%g\" text-anchor=\"middle\" transform=\"rotate(-90 15 %g)\">"
            "true positive rate</text>\n", X0 + S / 2, Y0 + S + 36, Y0 + S / 2, Y0 + S / 2);
    fprintf(f, "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"#999\" "
            "stroke-dasharray=\"4 4\"/>\n", X0, Y0 + S, X0 + S, Y0);
    for (int m = 0; m < EXP_N_METHODS; m++) {
        double lx = -1, ly = -1;
        int legend_y = 60 + 22 * m;
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"",
                COLOUR[m]);
        for (size_t i = 0; i < npts[m]; i++) {
            double x = fpr[m][i], y = tpr[m][i];
            if (i + 1 < npts[m] && fabs(x - lx) < 2e-3 && fabs(y - ly) < 2e-3) continue;
            fprintf(f, "%.1f,%.1f ", X0 + x * S, Y0 + S - y * S);
            lx = x;
            ly = y;
        }
        fprintf(f, "\"/>\n<line x1=\"480\" y1=\"%d\" x2=\"500\" y2=\"%d\" stroke=\"%s\" "
                "stroke-width=\"3\"/><text x=\"506\" y=\"%d\">%s %.3f</text>\n",
                legend_y, legend_y, COLOUR[m], legend_y + 4, METHOD_LABEL[m], auc[m]);
    }
    fprintf(f, "</svg>\n");
    return fclose(f) == 0 ? 0 : -1;
}

/* ---- one class ----------------------------------------------------------------- */

/* Write results.md and results.json as they stand. */
static int write_results(const run *r) {
    char path[1024];
    snprintf(path, sizeof path, "%s/results.md", r->out_dir);
    if (write_markdown(r, path) != 0) return -1;
    snprintf(path, sizeof path, "%s/results.json", r->out_dir);
    return write_json(r, path);
}

/* auROC of every method and its ROC plot. */
static int report_class(run *r, int k, int c, double *scores[EXP_N_METHODS], const int *is_pos,
                        size_t n, char *err, size_t errlen) {
    class_result *cr = &r->res[k][c];
    double *fpr[EXP_N_METHODS] = {0}, *tpr[EXP_N_METHODS] = {0};
    size_t npts[EXP_N_METHODS];
    int rc = -1;
    for (int m = 0; m < EXP_N_METHODS; m++) {
        cr->auc[m] = auroc(scores[m], is_pos, n);
        fpr[m] = malloc((n + 1) * sizeof(double));
        tpr[m] = malloc((n + 1) * sizeof(double));
        if (!fpr[m] || !tpr[m]) {
            snprintf(err, errlen, "out of memory for ROC curves");
            goto done;
        }
        npts[m] = roc_curve(scores[m], is_pos, n, fpr[m], tpr[m]);
    }
    char path[1024], title[512], setting[128], rate[32] = "";
    if (rate_of(r, k) > 0) snprintf(rate, sizeof rate, "_rate%g", rate_of(r, k));
    snprintf(path, sizeof path, "%s/roc_beta%g%s_class%d.svg", r->out_dir, beta_of(r, k), rate,
             r->classes[c]);
    setting_title(r, k, setting, sizeof setting);
    snprintf(title, sizeof title, "%s, anomaly class %d (%s), %s: ROC", r->title,
             r->classes[c], r->ds->class_name[r->classes[c]], setting);
    if (write_roc_svg(path, title, fpr, tpr, npts, cr->auc) != 0) {
        snprintf(err, errlen, "cannot write %.400s", path);
        goto done;
    }
    rc = 0;
done:
    for (int m = 0; m < EXP_N_METHODS; m++) {
        free(fpr[m]);
        free(tpr[m]);
    }
    return rc;
}

/* Score the test set at setting k's anomaly rate with the built detector d, and report. */
static int score_setting(run *r, int k, int c, const detector *d, const dataset *test,
                         const dataset *cal, const experiment_opts *eo, char *err, size_t errlen) {
    const int32_t cls = r->classes[c];
    const double t0 = clock_seconds();
    double *scores[EXP_N_METHODS] = {0};
    size_t n = 0;
    int *is_pos = malloc(test->n * sizeof *is_pos), rc = -1;
    float *x = test->x;
    int ok = is_pos != NULL;
    for (int m = 0; m < EXP_N_METHODS; m++)
        ok &= (scores[m] = malloc(test->n * sizeof(double))) != NULL;
    if (!ok) {
        snprintf(err, errlen, "out of memory for %zu test scores", test->n);
        goto done;
    }
    if (cli_test_at_rate(test, cls, rate_of(r, k), seed_of(r), &x, is_pos, &n, err, errlen))
        goto done;
    size_t n_pos = 0;
    for (size_t i = 0; i < n; i++) n_pos += (size_t)is_pos[i];
    if (experiment_scores(d, x, is_pos, (int)n, cal->x, (int)cal->n, eo, on_stage, r, scores,
                          &r->res[k][c].best_alpha, err, errlen) != 0 ||
        report_class(r, k, c, scores, is_pos, n, err, errlen) != 0)
        goto done;
    class_result *cr = &r->res[k][c];
    cr->n_test = n;
    cr->n_pos = n_pos;
    cr->seconds = clock_seconds() - t0;
    cr->done = 1;
    char setting[128];
    setting_title(r, k, setting, sizeof setting);
    printf("[%7.1fs] %s, class %d (%s): %zu test samples, %zu anomalies, scored in %.0fs, "
           "auROC:", elapsed(r), setting, cls, r->ds->class_name[cls], n, n_pos, cr->seconds);
    for (int m = 0; m < EXP_N_METHODS; m++) printf(" %s %.3f", EXP_METHOD_ID[m], cr->auc[m]);
    printf(" (best alpha %g)\n", cr->best_alpha);
    fflush(stdout);
    if (write_results(r) != 0) {
        snprintf(err, errlen, "cannot write results into %s", r->out_dir);
        goto done;
    }
    rc = 0;
done:
    if (x != test->x) free(x);
    free(is_pos);
    for (int m = 0; m < EXP_N_METHODS; m++) free(scores[m]);
    return rc;
}

/* The options of the detectors of beta and of their scoring: the command line's, with
 * --threads for t-SNE and placement too, and the map term fused in the "detector" column
 * (RE + latent has its own). */
static void class_options(const run *r, double beta, build_opts *bo, experiment_opts *eo) {
    const int threads = r->set.build.train.threads;
    *bo = r->set.build;
    bo->train.beta = (float)beta;
    bo->term = TERM_MAP;
    if (threads) bo->tsne.n_threads = bo->place.n_threads = threads;
    experiment_opts_default(eo);
    eo->joint.perplexity = bo->tsne.perplexity;
    eo->seed = seed_of(r);
    if (threads) eo->joint.n_threads = eo->n_threads = threads;
    eo->latent_k = r->latent_k;
}

/* The record streams of setting k: their sizes, and each fusion's recall / false-alarm
 * rate at the thresholds of one calibration stream through one memory. */
static void write_one_memory_table(FILE *f, const run *r, int k) {
    fprintf(f, "\nCalibrated on one stream through one memory (recall / false-alarm rate), "
               "and the streams' sizes:\n\n| class | test records | calibration beats "
               "(by record) | calibration beats (one memory) |");
    for (int fu = 0; fu < FUSION_N; fu++) fprintf(f, " %s |", SCORE_FUSION_NAME[fu]);
    fprintf(f, "\n|---|---|---|---|");
    for (int fu = 0; fu < FUSION_N; fu++) fprintf(f, "---|");
    fprintf(f, "\n");
    double sum[FUSION_N][2] = {{0}};
    int done = 0;
    for (int c = 0; c < r->n_classes; c++) {
        const stream_result *s = &r->sres[k][c];
        if (!s->done || !s->one_done) continue;
        done++;
        fprintf(f, "| %d %s | %zu | %zu | %zu |", r->classes[c], r->ds->class_name[r->classes[c]],
                s->n_sources, s->n_cal, s->n_one_cal);
        for (int fu = 0; fu < FUSION_N; fu++) {
            fprintf(f, " %.2f / %.3f |", s->recall_one[fu], s->false_alarm_one[fu]);
            sum[fu][0] += s->recall_one[fu];
            sum[fu][1] += s->false_alarm_one[fu];
        }
        fprintf(f, "\n");
    }
    if (!done) return;
    fprintf(f, "| **average** (%d) | | | |", done);
    for (int fu = 0; fu < FUSION_N; fu++)
        fprintf(f, " **%.2f / %.3f** |", sum[fu][0] / done, sum[fu][1] / done);
    fprintf(f, "\n");
}

/* Setting k's auROC on the anomalies that recur in their stream (at least the memory's k
 * of their kind before them) and on the first ones, each against every normal. */
static void write_recurrence_table(FILE *f, const run *r, int k) {
    fprintf(f, "\nWhat the memory can see: auROC on the anomalies that recur in their stream "
               "(at least %d anomalies before them, its k) / on the first ones, each against "
               "every normal:\n\n| class | anomalies recurring |", r->set.build.memory.k);
    for (int fu = 0; fu < FUSION_N; fu++) fprintf(f, " %s |", SCORE_FUSION_NAME[fu]);
    fprintf(f, "\n|---|---|");
    for (int fu = 0; fu < FUSION_N; fu++) fprintf(f, "---|");
    fprintf(f, "\n");
    for (int c = 0; c < r->n_classes; c++) {
        const stream_result *s = &r->sres[k][c];
        if (!s->done) continue;
        fprintf(f, "| %d %s | %zu of %zu |", r->classes[c], r->ds->class_name[r->classes[c]],
                s->n_recurring, s->n_pos);
        for (int fu = 0; fu < FUSION_N; fu++) {
            const double v[2] = {s->auc_recurring[fu], s->auc_first[fu]};
            for (int j = 0; j < 2; j++) {
                fputs(j ? " / " : " ", f);
                if (isnan(v[j])) fputs("–", f);
                else fprintf(f, "%.3f", v[j]);
            }
            fputs(" |", f);
        }
        fprintf(f, "\n");
    }
}

/* stream.md: per rate, each fusion's class averages and per-class figures. */
static int write_stream_markdown(const run *r, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "# %s: the stream protocol\n\n`%s`\n\n%s, %s\n\n", r->title, r->command,
            r->machine, r->date);
    if (r->by_record)
        fprintf(f, "Each test record streamed as its monitor would send it: its test beats in "
                   "R-peak order, one at a time through the scorer, into a stream memory of "
                   "its own that starts empty (the records take turns, as a ward's monitors "
                   "would reach one daemon with memory_sources set); label-free. Per fusion: "
                   "auROC / true-positive rate at 1%% false positives / recall at the fusion's "
                   "own threshold / false-alarm rate there (on the beats of the other classes). "
                   "Threshold: quantile %g of the fusion on calibration streams of the same "
                   "kind: training records' normal beats never in the map (held out, trained on "
                   "but not reference points, or left out by --train-limit), each record in "
                   "R-peak order through its own memory, %s, at most %d beats (whole records). "
                   "The second table: at the thresholds of one stream of training normals in "
                   "random order through one memory, as `anodm train` calibrates a bundle.\n",
                r->set.build.quantile,
                r->split == SPLIT_BEAT ? "as many beats of a record as its test stream holds"
                                       : "whole records",
                STREAM_NORMALS_MAX);
    else
        fprintf(f, "Each test set replayed one sample at a time in a seeded order through the "
                   "scorer with a stream memory starting empty; label-free. Per fusion: auROC / "
                   "true-positive rate at 1%% false positives / recall at the fusion's own "
                   "threshold / false-alarm rate there (threshold: quantile %g of the fusion on "
                   "a stream of training normals never in the map: the held-out ones and those "
                   "not chosen as reference points).\n", r->set.build.quantile);
    for (int k = 0; k < r->n_betas * r->n_rates; k++) {
        char setting[128];
        setting_title(r, k, setting, sizeof setting);
        fprintf(f, "\n## %s\n\n| class | n | anomalies |", setting);
        for (int fu = 0; fu < FUSION_N; fu++) fprintf(f, " %s |", SCORE_FUSION_NAME[fu]);
        fprintf(f, "\n|---|---|---|");
        for (int fu = 0; fu < FUSION_N; fu++) fprintf(f, "---|");
        fprintf(f, "\n");
        double sum[FUSION_N][4] = {{0}};
        int done = 0;
        for (int c = 0; c < r->n_classes; c++) {
            const stream_result *s = &r->sres[k][c];
            if (!s->done) continue;
            done++;
            fprintf(f, "| %d %s | %zu | %zu |", r->classes[c], r->ds->class_name[r->classes[c]],
                    s->n, s->n_pos);
            for (int fu = 0; fu < FUSION_N; fu++) {
                fprintf(f, " %.3f / %.2f / %.2f / %.3f |", s->auc[fu], s->tpr_1pct[fu],
                        s->recall[fu], s->false_alarm[fu]);
                sum[fu][0] += s->auc[fu];
                sum[fu][1] += s->tpr_1pct[fu];
                sum[fu][2] += s->recall[fu];
                sum[fu][3] += s->false_alarm[fu];
            }
            fprintf(f, "\n");
        }
        if (!done) continue;
        fprintf(f, "| **average** (%d) | | |", done);
        for (int fu = 0; fu < FUSION_N; fu++)
            fprintf(f, " **%.3f / %.2f / %.2f / %.3f** |", sum[fu][0] / done, sum[fu][1] / done,
                    sum[fu][2] / done, sum[fu][3] / done);
        fprintf(f, "\n");
        write_recurrence_table(f, r, k);
        if (r->by_record) write_one_memory_table(f, r, k);
    }
    return fclose(f) == 0 ? 0 : -1;
}

/* stream.json: the same figures, by jansson. */
static int write_stream_json(const run *r, const char *path) {
    json_t *root = json_pack("{s:s, s:s, s:s, s:s, s:s, s:[]}", "title", r->title, "command",
                             r->command, "machine", r->machine, "date", r->date, "order",
                             r->by_record ? "by record: each record's beats in R-peak order, "
                                            "one memory per record"
                                          : "seeded random, one memory", "settings");
    json_t *settings = json_object_get(root, "settings");
    for (int k = 0; root && k < r->n_betas * r->n_rates; k++) {
        json_t *classes = json_array();
        json_array_append_new(settings, json_pack("{s:f, s:f, s:o}", "beta", beta_of(r, k),
                                                  "anomaly_rate", rate_of(r, k), "classes",
                                                  classes));
        for (int c = 0; c < r->n_classes; c++) {
            const stream_result *s = &r->sres[k][c];
            if (!s->done) continue;
            json_t *fusions = json_object(), *one = s->one_done ? json_object() : json_null();
            for (int fu = 0; fu < FUSION_N; fu++) {
                json_object_set_new(fusions, SCORE_FUSION_NAME[fu],
                                    json_pack("{s:f, s:f, s:f, s:f}", "auroc", s->auc[fu],
                                              "tpr_at_1pct_fpr", s->tpr_1pct[fu], "recall",
                                              s->recall[fu], "false_alarm_rate",
                                              s->false_alarm[fu]));
                if (s->one_done)
                    json_object_set_new(one, SCORE_FUSION_NAME[fu],
                                        json_pack("{s:f, s:f}", "recall", s->recall_one[fu],
                                                  "false_alarm_rate", s->false_alarm_one[fu]));
            }
            json_t *rec = json_object();
            for (int fu = 0; fu < FUSION_N; fu++)
                json_object_set_new(rec, SCORE_FUSION_NAME[fu], json_pack(
                    "{s:o, s:o}", "auroc_recurring", api_json_number(s->auc_recurring[fu]),
                    "auroc_first", api_json_number(s->auc_first[fu])));
            json_array_append_new(classes, json_pack(
                "{s:i, s:s, s:I, s:I, s:I, s:I, s:o, s:I, s:o, s:I, s:o}", "class", r->classes[c],
                "name", r->ds->class_name[r->classes[c]], "n", (json_int_t)s->n, "anomalies",
                (json_int_t)s->n_pos, "sources", (json_int_t)s->n_sources, "calibration_normals",
                (json_int_t)s->n_cal, "fusions", fusions, "one_memory_calibration_normals",
                (json_int_t)s->n_one_cal, "one_memory_calibration", one, "recurring_anomalies",
                (json_int_t)s->n_recurring, "by_recurrence", rec));
        }
    }
    int rc = root ? json_dump_file(root, path, JSON_INDENT(1) | JSON_REAL_PRECISION(6)) : -1;
    json_decref(root);
    return rc;
}

/* The stream protocol at setting k for class c, reported and written out. */
static int stream_setting(run *r, int k, int c, const detector *d, const cli_stream_data *sd,
                          char *err, size_t errlen) {
    const double t0 = clock_seconds();
    stream_result *s = &r->sres[k][c];
    detector with_memory = *d;
    with_memory.use_memory = 1;
    with_memory.memory = r->set.build.memory;
    with_memory.term = TERM_LATENT;   /* the base score is the daemon's: RE + latent */
    d = &with_memory;
    if (cli_stream_class(d, sd, r->classes[c], rate_of(r, k), d->quantile, seed_of(r), s, err,
                         errlen) != 0)
        return -1;
    char setting[128], path[1024];
    setting_title(r, k, setting, sizeof setting);
    printf("[%7.1fs] %s, class %d (%s), stream of %zu with %zu anomalies in %.0fs, "
           "auROC/TPR@1%%/recall/false alarms:", elapsed(r), setting, r->classes[c],
           r->ds->class_name[r->classes[c]], s->n, s->n_pos, clock_seconds() - t0);
    for (int f = 0; f < FUSION_N; f++)
        printf(" %s %.3f/%.2f/%.2f/%.3f", SCORE_FUSION_NAME[f], s->auc[f], s->tpr_1pct[f],
               s->recall[f], s->false_alarm[f]);
    if (s->one_done) {
        printf("; calibrated on one stream through one memory, recall/false alarms:");
        for (int f = 0; f < FUSION_N; f++)
            printf(" %s %.2f/%.3f", SCORE_FUSION_NAME[f], s->recall_one[f], s->false_alarm_one[f]);
    }
    printf("\n");
    fflush(stdout);
    snprintf(path, sizeof path, "%s/stream.md", r->out_dir);
    int rc = write_stream_markdown(r, path);
    snprintf(path, sizeof path, "%s/stream.json", r->out_dir);
    if (rc != 0 || write_stream_json(r, path) != 0) {
        snprintf(err, errlen, "cannot write stream results into %s", r->out_dir);
        return -1;
    }
    return 0;
}

/* Index of record id v in the ascending ids[0..n), or -1. */
static long record_index(const int32_t *ids, size_t n, int32_t v) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ids[mid] < v) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && ids[lo] == v ? (long)lo : -1;
}

/* The calibration streams of the record streams, for class cls held out: every normal
 * beat of the training side (of another class than cls) that is not one of d's reference
 * points, whether it was trained on, held out, or left out by --train-limit: normals the
 * map never holds. Each record keeps a seeded choice of as many as its test stream holds
 * beats (beat split), so that its memory fills as densely as the test stream's does, or
 * all of them (patient split: test records stream whole), in R-peak order; whole records
 * are taken in a seeded order while the total stays within STREAM_NORMALS_MAX. d was built
 * on train's rows of another class than cls (cal_frac held out, as bo says). Into *cal
 * (the beats, records in turn) and *source (their records). */
static int record_calibration(const run *r, int32_t cls, const dataset *train,
                              const detector *d, const build_opts *bo, dataset *cal,
                              int32_t **source, char *err, size_t errlen) {
    const size_t N = r->all.n, R = r->n_train_records, dim = r->all.dim;
    size_t n_normal = 0, n_rest = 0, total = 0;
    size_t *normal_idx = malloc((train->n ? train->n : 1) * sizeof *normal_idx);
    size_t *rest_idx = malloc((train->n ? train->n : 1) * sizeof *rest_idx);
    size_t *pool = calloc(R ? R : 1, sizeof *pool), *want = calloc(R ? R : 1, sizeof *want);
    size_t *order = malloc((R ? R : 1) * sizeof *order);
    uint8_t *in_cal = malloc(train->n ? train->n : 1), *keep = calloc(N ? N : 1, 1);
    uint8_t *taken = calloc(R ? R : 1, 1);
    int rc = -1;
    memset(cal, 0, sizeof *cal);
    *source = NULL;
    if (!normal_idx || !rest_idx || !pool || !want || !order || !in_cal || !keep || !taken) {
        snprintf(err, errlen, "out of memory for the calibration streams");
        goto done;
    }
    /* The rows of the training part, as detector_build split them, and its references. */
    for (size_t i = 0; i < train->n; i++)
        if (train->labels[i] != cls) normal_idx[n_normal++] = r->train_idx[i];
    if (dataset_split_rows(n_normal, bo->cal_frac, bo->train.seed, in_cal, err, errlen) != 0)
        goto done;
    for (size_t i = 0; i < n_normal; i++)
        if (!in_cal[i]) rest_idx[n_rest++] = normal_idx[i];
    for (size_t g = 0; g < N; g++)     /* keep[g] = 1: in the pool, so far */
        keep[g] = !r->all_is_test[g] && r->all.labels[g] != cls;
    for (int i = 0; i < d->n_ref; i++) {
        if (d->ref_id[i] < 0 || (size_t)d->ref_id[i] >= n_rest) {
            snprintf(err, errlen, "reference point %d is not a training sample", i);
            goto done;
        }
        keep[rest_idx[d->ref_id[i]]] = 0;
    }
    for (size_t g = 0; g < N; g++) {
        long k = keep[g] ? record_index(r->train_records, R, r->all_record[g]) : -1;
        if (k >= 0) pool[k]++;
    }
    if (r->split == SPLIT_BEAT) {
        for (size_t i = 0; i < r->all.n; i++) {
            long k = r->all_is_test[i] ? record_index(r->train_records, R, r->all_record[i]) : -1;
            if (k >= 0) want[k]++;
        }
        for (size_t k = 0; k < R; k++) want[k] = want[k] < pool[k] ? want[k] : pool[k];
    } else {
        memcpy(want, pool, R * sizeof *want);
    }
    /* Whole records in a seeded order, within the cap. */
    rng_t rng;
    rng_seed(&rng, seed_of(r) ^ 0x5EEDULL);
    for (size_t k = 0; k < R; k++) order[k] = k;
    rng_shuffle(&rng, order, R);
    for (size_t j = 0; j < R; j++) {
        size_t k = order[j];
        if (want[k] && (total == 0 || total + want[k] <= STREAM_NORMALS_MAX)) {
            taken[k] = 1;
            total += want[k];
        }
    }
    /* Each record's choice: selection sampling (want of its pool, uniformly, in order). */
    if (!(cal->x = malloc((total ? total : 1) * dim * sizeof *cal->x)) ||
        !(*source = malloc((total ? total : 1) * sizeof **source))) {
        snprintf(err, errlen, "out of memory for %zu calibration beats", total);
        goto done;
    }
    cal->n = 0;
    for (size_t g = 0; g < N; g++) {
        long k = keep[g] ? record_index(r->train_records, R, r->all_record[g]) : -1;
        if (k < 0) continue;
        int pick = taken[k] && rng_below(&rng, pool[k]) < want[k];
        pool[k]--;
        if (!pick) continue;
        want[k]--;
        memcpy(cal->x + cal->n * dim, r->all.x + g * dim, dim * sizeof *cal->x);
        (*source)[cal->n++] = r->all_record[g];
    }
    cal->dim = dim;
    cal->channels = r->all.channels;
    cal->height = r->all.height;
    cal->width = r->all.width;
    rc = 0;
done:
    if (rc != 0) {
        dataset_free(cal);
        free(*source);
        *source = NULL;
    }
    free(normal_idx);
    free(rest_idx);
    free(pool);
    free(want);
    free(order);
    free(in_cal);
    free(keep);
    free(taken);
    return rc;
}

/* Build the detector of beta b with class c held out, then score every anomaly rate. */
static int run_class(run *r, int b, int c, const dataset *train, const dataset *test,
                     char *err, size_t errlen) {
    const int32_t cls = r->classes[c];
    dataset normals = {0}, cal = {0}, rest = {0}, rec_cal = {0};
    int32_t *rec_source = NULL, *test_source = NULL;
    detector d = {0};
    vae_arch arch;
    build_opts bo;
    experiment_opts eo;
    int rc = -1;
    r->beta = r->betas[b];
    r->cls = cls;
    class_options(r, r->betas[b], &bo, &eo);
    size_t n_anomalies = 0;
    for (size_t i = 0; i < test->n; i++) n_anomalies += test->labels[i] == cls;
    if (n_anomalies == 0 || n_anomalies == test->n) {
        /* A patient split can leave a rare class out of the test records altogether. */
        for (int q = 0; q < r->n_rates; q++) r->res[b * r->n_rates + q][c].skipped = 1;
        printf("[%7.1fs] beta %g class %d (%s): skipped, the test set holds %s\n", elapsed(r),
               r->beta, cls, r->ds->class_name[cls], n_anomalies ? "nothing else" : "none of it");
        fflush(stdout);
        if (write_results(r) != 0) {
            snprintf(err, errlen, "cannot write results into %s", r->out_dir);
            return -1;
        }
        return 0;
    }
    char preset[64];
    snprintf(preset, sizeof preset, "%s%s", r->ds->ecg ? "ecg-" : "fashion",
             r->ds->ecg ? r->encoder : "");
    if (r->ds->generic) arch = r->arch;
    else if (vae_arch_preset(&arch, preset, r->set.latent, err, errlen) != 0) goto done;
    if (normals_of(train, cls, &normals, err, errlen) != 0) goto done;
    on_stage(r, "start", r->ds->class_name[cls]);
    char model_path[1024] = "";
    char data_key[64] = "";      /* the heartbeats: which split and subset trained it */
    if (r->ds->ecg)
        snprintf(data_key, sizeof data_key, "-%s-limit%d", split_name(r), r->train_limit);
    if (r->models_dir)
        snprintf(model_path, sizeof model_path,
                 "%s/%s-%s%s-class%d-beta%g-e%d-ref%d-seed%llu.anodm", r->models_dir,
                 r->ds->name, r->ds->ecg ? r->encoder : r->ds->generic ? arch.name : "cnn",
                 data_key, cls, r->beta, bo.train.epochs, bo.n_ref,
                 (unsigned long long)seed_of(r));
    if (*model_path && access(model_path, R_OK) == 0) {
        if (bundle_load(model_path, &d, err, errlen) != 0) goto done;
        on_stage(r, "model", model_path);
    } else {
        if (detector_build(&d, &arch, &normals, &bo, on_epoch, on_stage, r, err, errlen) != 0)
            goto done;
        if (*model_path && bundle_save(model_path, &d, err, errlen) != 0) goto done;
    }
    /* The calibration normals again: the same split detector_build made (same data,
     * fraction and seed), so they were never trained on nor put in the map. */
    if (dataset_split(&normals, bo.cal_frac, bo.train.seed, &cal, &rest, err, errlen) != 0)
        goto done;
    cli_stream_data sd = {.test = test, .cal = &cal};
    if (r->stream) {
        /* The stream protocol calibrates on a longer normal stream (stream.h), as a bundle
         * is calibrated; record streams on their own (record_calibration), with that one
         * measured beside. */
        float *x = NULL;
        size_t n = 0;
        if (stream_normals(cal.x, cal.n, rest.x, rest.n, cal.dim, d.ref_id, d.n_ref,
                           STREAM_NORMALS_MAX, seed_of(r) ^ 0x5EEDULL, &x, &n, err, errlen) != 0)
            goto done;
        free(cal.x);
        free(cal.labels);
        cal.x = x;
        cal.labels = NULL;
        cal.n = n;
        if (r->by_record) {
            if (record_calibration(r, cls, train, &d, &bo, &rec_cal, &rec_source, err,
                                   errlen) != 0 ||
                !(test_source = malloc((test->n ? test->n : 1) * sizeof *test_source))) {
                if (!test_source) snprintf(err, errlen, "out of memory for the test streams");
                goto done;
            }
            for (size_t i = 0; i < test->n; i++) test_source[i] = r->all_record[r->test_idx[i]];
            sd = (cli_stream_data){test, test_source, &rec_cal, rec_source, &cal};
        }
    }
    for (int q = 0; q < r->n_rates; q++)
        if ((r->stream ? stream_setting(r, b * r->n_rates + q, c, &d, &sd, err, errlen)
                       : score_setting(r, b * r->n_rates + q, c, &d, test, &cal, &eo, err,
                                       errlen)) != 0)
            goto done;
    rc = 0;
done:
    detector_free(&d);
    dataset_free(&normals);
    dataset_free(&cal);
    dataset_free(&rest);
    dataset_free(&rec_cal);
    free(rec_source);
    free(test_source);
    return rc;
}

/* Keep `limit` samples of d with the class proportions of the whole set: the first ones
 * in file order, or (random) a seeded random choice; origin (d->n entries, or NULL) is
 * kept along. */
static int limit_rows(dataset *d, size_t *origin, size_t limit, int random, uint64_t seed,
                      char *err, size_t errlen) {
    size_t *idx = malloc(d->n * sizeof *idx);
    size_t n = !idx ? 0 : random ? experiment_random_subset(d->labels, d->n, limit, seed, idx)
                                 : experiment_balanced_subset(d->labels, d->n, limit, idx);
    if (n == 0) {
        snprintf(err, errlen, "out of memory for a subset of %zu samples", limit);
        free(idx);
        return -1;
    }
    for (size_t j = 0; j < n; j++) {   /* idx ascending: rows only move forward */
        memmove(d->x + j * d->dim, d->x + idx[j] * d->dim, d->dim * sizeof(float));
        d->labels[j] = d->labels[idx[j]];
        if (origin) origin[j] = origin[idx[j]];
    }
    d->n = n;
    free(idx);
    return 0;
}

/* The distinct record ids of the beats with side[i] == want, ascending, into a malloc'd
 * array; their count in *n. */
static int records_of(const int32_t *record, const uint8_t *side, size_t n_beats, int want,
                      int32_t **out, size_t *n, char *err, size_t errlen) {
    int32_t *ids = malloc((n_beats ? n_beats : 1) * sizeof *ids);
    size_t m = 0;
    *out = ids;
    *n = 0;
    if (!ids) {
        snprintf(err, errlen, "out of memory for the record lists");
        return -1;
    }
    for (size_t i = 0; i < n_beats; i++) {
        if (side[i] != want) continue;
        size_t j = 0;
        while (j < m && ids[j] != record[i]) j++;   /* a few dozen records */
        if (j == m) {
            while (j > 0 && ids[j - 1] > record[i]) {  /* insertion, ascending */
                ids[j] = ids[j - 1];
                j--;
            }
            ids[j] = record[i];
            m++;
        }
    }
    *n = m;
    return 0;
}

/* The heartbeats, split into training and test sets by beat or by record. */
static int load_ecg(run *r, const char *test_records, dataset *train, dataset *test, char *err,
                    size_t errlen) {
    dataset all = {0};
    int32_t *record = NULL, listed[1024];
    uint8_t *is_test = NULL;
    int rc = -1, n_listed = 0;
    if (test_records && (n_listed = cli_parse_classes(test_records, listed, 1024)) < 0) {
        snprintf(err, errlen, "--test-records wants record numbers like 100,103");
        return -1;
    }
    if ((r->beats_path ? cli_ecg_load_npy(&all, &record, r->split == SPLIT_PATIENT ||
                                                            r->by_record,
                                          r->beats_path, err, errlen)
                       : cli_ecg_load_dir(&all, &record, r->data_dir, err, errlen)) != 0)
        return -1;
    if (!(is_test = malloc(all.n ? all.n : 1))) {
        snprintf(err, errlen, "out of memory for the split");
        goto done;
    }
    if (r->split == SPLIT_BEAT) {
        if (ecg_split_beats(all.n, ECG_TEST_FRACTION, seed_of(r), is_test, err, errlen)) goto done;
        snprintf(r->split_desc, sizeof r->split_desc, "beat: a seeded random %g%% of the beats "
                 "are the test set (the paper's setting; records on both sides)",
                 100 * ECG_TEST_FRACTION);
    } else if (n_listed > 0) {
        if (ecg_split_listed(record, all.n, listed, (size_t)n_listed, is_test, err, errlen))
            goto done;
        snprintf(r->split_desc, sizeof r->split_desc, "patient: the test records named by "
                 "--test-records, every other record for training");
    } else {
        if (ecg_split_records(record, all.labels, all.n, ECG_TEST_FRACTION, seed_of(r), is_test,
                              NULL, NULL, &r->split_balance, err, errlen))
            goto done;
        snprintf(r->split_desc, sizeof r->split_desc, "patient: a seeded %g%% of the records are "
                 "test records, the draw with the best class balance (%.2f; 1 = every class "
                 "held by 2+ records has at least its share of beats on both sides) of up to %d",
                 100 * ECG_TEST_FRACTION, r->split_balance, ECG_SPLIT_TRIES);
    }
    if (take_rows(&all, is_test, 0, train, err, errlen) ||
        take_rows(&all, is_test, 1, test, err, errlen))
        goto done;
    if (record && (records_of(record, is_test, all.n, 0, &r->train_records, &r->n_train_records,
                              err, errlen) ||
                   records_of(record, is_test, all.n, 1, &r->test_records, &r->n_test_records,
                              err, errlen)))
        goto done;
    if (r->by_record) {         /* kept: the streams need each beat's record and origin */
        if (!(r->train_idx = malloc((train->n ? train->n : 1) * sizeof *r->train_idx)) ||
            !(r->test_idx = malloc((test->n ? test->n : 1) * sizeof *r->test_idx))) {
            snprintf(err, errlen, "out of memory for the record streams");
            goto done;
        }
        for (size_t i = 0, a = 0, b = 0; i < all.n; i++) {
            if (is_test[i]) r->test_idx[b++] = i;
            else r->train_idx[a++] = i;
        }
        r->all = all;
        r->all_record = record;
        r->all_is_test = is_test;
        all = (dataset){0};
        record = NULL;
        is_test = NULL;
    }
    rc = 0;
done:
    dataset_free(&all);
    free(record);
    free(is_test);
    return rc;
}

/* --classes: "all", or a list of class numbers or names of ds ("V,F"). Count, or -1. */
/* --dataset generic: the labelled samples of --data (and --labels), the test set from
 * --test or, without it, a seeded fifth of the data; the classes are the labels 0..9
 * that occur ("all": each of them), the architecture is the one anodm train would pick
 * for the samples' shape, with its scaling and loss defaults. 0, or -1 with a message. */
static int load_generic(run *r, const char *classes_arg, dataset *train, dataset *test,
                        char *err, size_t errlen) {
    dataset all = {0};
    r->src.path = r->data_dir;
    if (cli_load_data(&all, &r->src, 1, err, errlen) != 0) return -1;
    if (!all.labels) {
        snprintf(err, errlen, "%s: no labels (--labels FILE, or a CSV label column)", r->data_dir);
        dataset_free(&all);
        return -1;
    }
    int rc = r->test_src.path
                 ? cli_load_data(test, &r->test_src, 0, err, errlen)
                 : dataset_split(&all, ECG_TEST_FRACTION, seed_of(r) ^ 0x7E57ULL, test, train,
                                 err, errlen);
    if (rc == 0 && r->test_src.path) {
        *train = all;
        all = (dataset){0};
    }
    dataset_free(&all);
    if (rc != 0) return -1;
    if (!test->labels || test->dim != train->dim) {
        snprintf(err, errlen, "the test set needs labels and %zu values per sample", train->dim);
        return -1;
    }
    int32_t top = 0;
    for (size_t i = 0; i < train->n; i++) top = train->labels[i] > top ? train->labels[i] : top;
    if (top >= (int32_t)(sizeof DIGIT_CLASS / sizeof DIGIT_CLASS[0])) {
        snprintf(err, errlen, "label %d: --dataset generic takes classes 0..9", (int)top);
        return -1;
    }
    r->own.n_classes = (int)top + 1;
    if (!strcmp(classes_arg, "all")) {
        r->n_classes = r->own.n_classes;
        for (int k = 0; k < r->n_classes; k++) r->classes[k] = k;
    }
    shape3 in = cli_sample_shape(&r->src, train);
    if (vae_arch_for_input(&r->arch, cli_default_arch(in), in, r->set.latent, err, errlen) != 0)
        return -1;
    const int unit = cli_unit_range(train);
    r->set.build.scale = unit ? SCALE_NONE : SCALE_STANDARD;
    r->arch.recon = unit ? RECON_BCE : RECON_MSE;
    printf("[%7.1fs] %s: input %dx%dx%d, architecture %s, scale %s, recon %s\n", elapsed(r),
           r->data_dir, in.c, in.h, in.w, r->arch.name, SCALE_NAME[r->set.build.scale],
           unit ? "bce" : "mse");
    return 0;
}

static int parse_classes(const exp_dataset *ds, const char *s, int32_t *classes) {
    char buf[512], *save = NULL;
    int n = 0;
    if (!strcmp(s, "all")) {
        for (int k = 0; k < ds->n_classes; k++) classes[k] = k;
        return ds->n_classes;
    }
    if (strlen(s) >= sizeof buf) return -1;
    strcpy(buf, s);
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int k = 0;
        while (k < ds->n_classes && strcmp(t, ds->class_name[k]) != 0) k++;
        if (k == ds->n_classes) {
            char *end;
            long v = strtol(t, &end, 10);
            if (end == t || *end || v < 0 || v >= ds->n_classes) return -1;
            k = (int)v;
        }
        if (n == N_CLASSES) return -1;
        classes[n++] = k;
    }
    return n ? n : -1;
}

/* Per-class sample counts of d into count (the data set's classes; labels checked). */
static int count_classes(const run *r, const dataset *d, size_t *count, char *err,
                         size_t errlen) {
    memset(count, 0, N_CLASSES * sizeof *count);
    for (size_t i = 0; i < d->n; i++) {
        if (d->labels[i] < 0 || d->labels[i] >= r->ds->n_classes) {
            snprintf(err, errlen, "sample %zu has label %d, outside 0..%d", i, (int)d->labels[i],
                     r->ds->n_classes - 1);
            return -1;
        }
        count[d->labels[i]]++;
    }
    return 0;
}

int cmd_experiment(int argc, char **argv) {
    static const struct option own[] = {
        {"dataset", required_argument, 0, 'D'}, {"data", required_argument, 0, 'd'},
        {"classes", required_argument, 0, 'c'}, {"beta", required_argument, 0, 'b'},
        {"test-limit", required_argument, 0, 'n'}, {"out-dir", required_argument, 0, 'o'},
        {"anomaly-rate", required_argument, 0, 'a'}, {"train-limit", required_argument, 0, 'N'},
        {"beats", required_argument, 0, 'B'}, {"encoder", required_argument, 0, 'E'},
        {"split", required_argument, 0, 'S'}, {"test-records", required_argument, 0, 'R'},
        {"latent-input", required_argument, 0, 'Z'}, {"latent-k", required_argument, 0, 'K'},
        {"stream", no_argument, 0, 'W'}, {"models", required_argument, 0, 'M'},
        {"labels", required_argument, 0, 1004}, {"test", required_argument, 0, 1005},
        {"test-labels", required_argument, 0, 1006}, {"label-col", required_argument, 0, 1007},
        {"memory-retain", required_argument, 0, 1009},
        {"help", no_argument, 0, 'h'}};
    struct option opts[sizeof own / sizeof own[0] + N_EXPERIMENT_OPTIONS + 1];
    cli_getopt_table(opts, own, sizeof own / sizeof own[0], EXPERIMENT_OPTIONS,
                     N_EXPERIMENT_OPTIONS);
    run *r = calloc(1, sizeof *r);
    const char *dataset_name = NULL, *classes_arg = "all", *split_arg = NULL,
               *test_records = NULL;
    long long v;
    char err[512];
    int ch, rc = 2;
    if (!r) {
        fprintf(stderr, "anodm experiment: out of memory\n");
        return 1;
    }
    r->data_dir = NULL;
    r->out_dir = "results";
    r->n_betas = 1;
    r->betas[0] = 0.01;
    r->n_rates = 1;
    r->rates[0] = 0;
    cli_settings_default(&r->set);
    r->latent_k = 1;
    r->split_balance = NAN;
    r->src.label_col = r->test_src.label_col = DATASET_CSV_LAST_COL;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (CLI_IS_OPTION(ch)) {
            if (cli_option_set(&r->set, ch, optarg)) goto out;
            continue;
        }
        switch (ch) {
        case 'D': dataset_name = optarg; break;
        case 'd': r->data_dir = optarg; break;
        case 'c': classes_arg = optarg; break;
        case 'N':
            if (cli_int("--train-limit", optarg, 2, INT_MAX, &v)) goto out;
            r->train_limit = (int)v;
            break;
        case 'B': r->beats_path = optarg; break;
        case 'E': r->encoder = optarg; break;
        case 'S': split_arg = optarg; break;
        case 'R': test_records = optarg; break;
        case 'b':
            if ((r->n_betas = parse_list(optarg, beta_value, r->betas, MAX_BETAS)) < 0) {
                fprintf(stderr, "anodm experiment: --beta wants up to %d numbers >= 0 like "
                        "0.01,0.1\n", MAX_BETAS);
                goto out;
            }
            break;
        case 'n':
            if (cli_int("--test-limit", optarg, 2, INT_MAX, &v)) goto out;
            r->test_limit = (int)v;
            break;
        case 'o': r->out_dir = optarg; break;
        case 'a':
            if ((r->n_rates = parse_list(optarg, rate_value, r->rates, MAX_RATES)) < 0) {
                fprintf(stderr, "anodm experiment: --anomaly-rate wants up to %d rates in (0, 1) "
                        "like 0.01,0.1\n", MAX_RATES);
                goto out;
            }
            break;
        case 'Z':
            if (cli_latent_input("anodm experiment", optarg, &r->set.build.input)) goto out;
            break;
        case 'K':
            if (cli_int("--latent-k", optarg, 1, KNN_MAX_K, &v)) goto out;
            r->latent_k = (int)v;
            break;
        case 'W': r->stream = 1; break;
        case 'M': r->models_dir = optarg; break;
        case 1004: r->src.labels = optarg; break;
        case 1005: r->test_src.path = optarg; break;
        case 1006: r->test_src.labels = optarg; break;
        case 1009:
            if (cli_memory_retain("anodm experiment", optarg, &r->set.build.memory)) goto out;
            break;
        case 1007:
            if (cli_label_col(optarg, &r->src.label_col)) goto out;
            r->test_src.label_col = r->src.label_col;
            break;
        case 'h': experiment_usage(stdout, &r->set); rc = 0; goto out;
        default: experiment_usage(stderr, &r->set); goto out;
        }
    }
    for (size_t k = 0; dataset_name && k < sizeof DATASETS / sizeof DATASETS[0]; k++)
        if (!strcmp(dataset_name, DATASETS[k].name)) r->ds = &DATASETS[k];
    if (!r->ds || optind != argc) {
        if (optind != argc) fprintf(stderr, "anodm experiment: unexpected argument '%s'\n",
                                    argv[optind]);
        else if (dataset_name)
            fprintf(stderr, "anodm experiment: unknown --dataset '%s' (known: fashion-mnist, "
                    "mnist, ecg, generic)\n", dataset_name);
        else fprintf(stderr, "anodm experiment: --dataset fashion-mnist, mnist, ecg or generic "
                     "is required\n");
        experiment_usage(stderr, &r->set);
        goto out;
    }
    if ((r->n_classes = parse_classes(r->ds, classes_arg, r->classes)) < 0) {
        if (r->ds->ecg)
            fprintf(stderr, "anodm experiment: --classes wants all, or classes N,S,V,F,Q (or "
                    "0..4) like V,F, not '%s'\n", classes_arg);
        else
            fprintf(stderr, "anodm experiment: --classes wants all or classes 0..%d like 1,3, "
                    "not '%s'\n", r->ds->n_classes - 1, classes_arg);
        goto out;
    }
    if (!r->ds->generic && (r->src.labels || r->test_src.path || r->test_src.labels ||
                            r->src.label_col != DATASET_CSV_LAST_COL)) {
        fprintf(stderr, "anodm experiment: --labels, --test, --test-labels and --label-col are "
                "for --dataset generic\n");
        goto out;
    }
    if (r->ds->generic) {
        r->own = *r->ds;
        r->ds = &r->own;
        if (!r->data_dir) {
            fprintf(stderr, "anodm experiment: --dataset generic needs --data FILE\n");
            goto out;
        }
    }
    if (!r->ds->ecg && (r->beats_path || r->encoder || split_arg || test_records)) {
        fprintf(stderr, "anodm experiment: --beats, --encoder, --split and --test-records are "
                "for --dataset ecg\n");
        goto out;
    }
    if (r->ds->ecg) {
        if (!r->encoder) r->encoder = "tcn";
        if (strcmp(r->encoder, "tcn") && strcmp(r->encoder, "cnn") && strcmp(r->encoder, "lstm")) {
            fprintf(stderr, "anodm experiment: --encoder is tcn, cnn or lstm, not '%s'\n",
                    r->encoder);
            goto out;
        }
        if (split_arg && strcmp(split_arg, "beat") && strcmp(split_arg, "patient")) {
            fprintf(stderr, "anodm experiment: --split is beat or patient, not '%s'\n", split_arg);
            goto out;
        }
        r->split = split_arg && !strcmp(split_arg, "patient") ? SPLIT_PATIENT : SPLIT_BEAT;
        if (test_records && r->split != SPLIT_PATIENT) {
            fprintf(stderr, "anodm experiment: --test-records needs --split patient\n");
            goto out;
        }
        if (r->beats_path && r->data_dir) {
            fprintf(stderr, "anodm experiment: --beats and --data are two sources: give one\n");
            goto out;
        }
        snprintf(r->title, sizeof r->title, "%s, %s encoder, %s split", r->ds->title, r->encoder,
                 split_name(r));
    } else snprintf(r->title, sizeof r->title, "%s", r->ds->title);
    if (!r->data_dir) r->data_dir = r->ds->default_data;
    r->by_record = r->ds->ecg && r->stream;
    if (r->by_record && (r->test_limit || r->n_rates != 1 || r->rates[0] != 0)) {
        fprintf(stderr, "anodm experiment: --stream streams each test record whole, as its "
                "monitor would: no --test-limit or --anomaly-rate with --dataset ecg\n");
        goto out;
    }
    if (r->stream && !r->by_record && r->n_rates == 1 && r->rates[0] == 0) {
        static const double stream_rates[] = {0.01, 0.05, 0.1, 0};
        r->n_rates = 4;
        memcpy(r->rates, stream_rates, sizeof stream_rates);
    }
    /* Every option by the library's rules, before any data is read: what the data allows
     * (its size against --n-ref and the perplexity) detector_build checks before it
     * trains. */
    for (int b = 0; b < r->n_betas; b++) {
        build_opts bo;
        experiment_opts eo;
        class_options(r, r->betas[b], &bo, &eo);
        if (build_opts_check(&bo, 0, err, sizeof err) ||
            experiment_opts_check(&eo, bo.n_ref, err, sizeof err)) {
            fprintf(stderr, "anodm experiment: %s\n", err);
            goto out;
        }
    }
    rc = 1;
    describe_machine(r, argc, argv);
    r->t0 = clock_seconds();
    dataset train = {0}, test = {0};
    if (mkdir(r->out_dir, 0755) != 0 && !cli_is_dir(r->out_dir)) {
        snprintf(err, sizeof err, "cannot create %s", r->out_dir);
        goto fail;
    }
    if ((r->ds->ecg ? load_ecg(r, test_records, &train, &test, err, sizeof err)
         : r->ds->generic
             ? load_generic(r, classes_arg, &train, &test, err, sizeof err)
             : dataset_load_fashion_mnist(&train, r->data_dir, 1, err, sizeof err) ||
                   dataset_load_fashion_mnist(&test, r->data_dir, 0, err, sizeof err)) != 0 ||
        (r->train_limit && limit_rows(&train, r->train_idx, (size_t)r->train_limit, 1,
                                      seed_of(r) ^ 0x7EA1ULL, err, sizeof err) != 0) ||
        (r->test_limit && limit_rows(&test, r->test_idx, (size_t)r->test_limit, r->ds->ecg,
                                     seed_of(r) ^ 0x7E57ULL, err, sizeof err) != 0) ||
        count_classes(r, &train, r->n_train_class, err, sizeof err) != 0 ||
        count_classes(r, &test, r->n_test_class, err, sizeof err) != 0)
        goto fail;
    printf("[%7.1fs] %s: %zu training and %zu test samples from %s; %d beta(s) x %d class(es)\n",
           elapsed(r), r->title, train.n, test.n, r->beats_path ? r->beats_path : r->data_dir,
           r->n_betas, r->n_classes);
    if (r->ds->ecg) {
        printf("[%7.1fs] %zu training records, %zu test records%s\n", elapsed(r),
               r->n_train_records, r->n_test_records,
               r->split == SPLIT_BEAT ? " (beat split: records on both sides)" : "");
        for (int side = 0; side < 2; side++) {
            const size_t *cnt = side ? r->n_test_class : r->n_train_class;
            printf("[%7.1fs] %s:", elapsed(r), side ? "test" : "training");
            for (int k = 0; k < r->ds->n_classes; k++)
                printf(" %s %zu", r->ds->class_name[k], cnt[k]);
            printf("\n");
        }
    }
    fflush(stdout);
    for (int b = 0; b < r->n_betas; b++)
        for (int c = 0; c < r->n_classes; c++)
            if (run_class(r, b, c, &train, &test, err, sizeof err) != 0) goto fail;
    printf("[%7.1fs] wrote %s/results.md, results.json and ROC plots\n", elapsed(r), r->out_dir);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "anodm experiment: %s\n", err);
done:
    dataset_free(&train);
    dataset_free(&test);
out:
    free(r->train_records);
    free(r->test_records);
    dataset_free(&r->all);
    free(r->all_record);
    free(r->all_is_test);
    free(r->train_idx);
    free(r->test_idx);
    free(r);
    return rc;
}
