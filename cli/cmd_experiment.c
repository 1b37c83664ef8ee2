/* anodm experiment: the paper's one-vs-rest protocol on Fashion-MNIST (section 4,
 * Table 1), run with our detector. Per beta and per class: build a detector on the
 * other classes' training images (10% of them held out for calibration), score the
 * test set in every way core/experiment.h defines, and report auROC with the class as
 * the positive. Results are rewritten after every class, so a run cut short still
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

#include "auroc.h"
#include "cli.h"
#include "experiment.h"
#include "pipeline.h"

#define N_CLASSES 10
#define MAX_BETAS 16
#define MAX_RATES 4
#define DEFAULT_DATA "/usr/share/datasets/fashion-mnist"

static const char *const CLASS_NAME[N_CLASSES] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};

/* Reference values only: the paper's Table 1, Fashion-MNIST (beta-VAE = RE alone,
 * AnoDM = its best of mu/z-based with test-label alpha). Never computed here. */
static const double PAPER_BVAE[N_CLASSES] = {0.500, 0.860, 0.459, 0.730, 0.379,
                                             0.985, 0.501, 0.842, 0.876, 0.701};
static const double PAPER_ANODM[N_CLASSES] = {0.844, 0.978, 0.783, 0.886, 0.763,
                                              0.990, 0.713, 0.952, 0.980, 0.944};

/* Column headers of results.md, in exp_method order. */
static const char *const METHOD_LABEL[EXP_N_METHODS] = {
    "RE", "map joint", "map co-placed", "map stream", "map alone", "latent 1-NN",
    "paper score, best α (TEST LABELS)", "fused: detector (RE+alone)", "fused: RE+joint",
    "fused: RE+co-placed", "fused: RE+stream", "fused: RE+latent 1-NN"};

static const char *const COLOUR[EXP_N_METHODS] = {
    "#1f77b4", "#d62728", "#ff7f0e", "#bcbd22", "#8c564b", "#7f7f7f",
    "#000000", "#2ca02c", "#9467bd", "#e377c2", "#17becf", "#aec7e8"};

typedef struct {
    int done;
    double auc[EXP_N_METHODS];
    double best_alpha, seconds;
    size_t n_test, n_pos;
} class_result;

typedef struct {
    const char *out_dir, *data_dir;
    char command[2048], machine[512], date[64];
    int n_betas, n_rates, n_classes, epochs, n_ref, test_limit, latent;
    double betas[MAX_BETAS], perplexity;
    double rates[MAX_RATES];     /* anomaly rates of the test set; one 0: the set as it is */
    int32_t classes[N_CLASSES];
    uint64_t seed;
    double t0;
    class_result res[MAX_BETAS * MAX_RATES][N_CLASSES];  /* [beta * n_rates + rate][class] */
    /* progress context */
    double beta;
    int cls;
} run;

static void experiment_usage(FILE *f) {
    fprintf(f,
        "usage: anodm experiment --dataset fashion-mnist [options]\n"
        "  --dataset NAME       fashion-mnist (the only one so far)\n"
        "  --data DIR           its IDX directory (default " DEFAULT_DATA ")\n"
        "  --classes all|L,...  anomaly classes, one experiment each (default all)\n"
        "  --beta B[,B...]      KL weights; a list is the paper's Figure 2 sweep (default 0.01)\n"
        "  --epochs N           (default 20)   --latent N (default 16)   --seed N (default 1)\n"
        "  --n-ref N            reference points of the map (default 10000)\n"
        "  --test-limit N       score only N test images, class proportions kept (default all)\n"
        "  --anomaly-rate R[,R...]  score each class's test set at these anomaly rates: all\n"
        "                       normals, anomalies sampled (seeded) to R of the set; up to %d\n"
        "                       rates, each in (0, 1) (default: the test set as it is)\n"
        "  --perplexity P       t-SNE perplexity for the maps and placement (default 30)\n"
        "  --out-dir DIR        where results.md, results.json and ROC SVGs go (default results)\n",
        MAX_RATES);
}

static double elapsed(const run *r) { return cli_now() - r->t0; }

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

/* Parse a list like "0.01,0.1" of at most max values in [lo, hi] into v; their count,
 * or -1. */
static int parse_list(const char *what, const char *s, double lo, double hi, double *v,
                      int max) {
    char buf[512], *save = NULL;
    int n = 0;
    if (strlen(s) >= sizeof buf) return -1;
    strcpy(buf, s);
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (n == max || cli_real(what, t, lo, hi, &v[n])) return -1;
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

/* The training images of every class but cls. */
static int normals_of(const dataset *all, int32_t cls, dataset *out, char *err, size_t errlen) {
    size_t n = 0;
    for (size_t i = 0; i < all->n; i++) n += all->labels[i] != cls;
    *out = *all;
    out->n = n;
    out->x = malloc(n * all->dim * sizeof(float));
    out->labels = malloc(n * sizeof(int32_t));
    if (!out->x || !out->labels || !n) {
        snprintf(err, errlen, n ? "out of memory for the training set" : "no normal samples");
        dataset_free(out);
        return -1;
    }
    for (size_t i = 0, j = 0; i < all->n; i++)
        if (all->labels[i] != cls) {
            memcpy(out->x + j * all->dim, all->x + i * all->dim, all->dim * sizeof(float));
            out->labels[j++] = all->labels[i];
        }
    return 0;
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

static void json_num(FILE *f, double v) {
    if (isnan(v)) fprintf(f, "null");
    else fprintf(f, "%.6f", v);
}

static int write_markdown(const run *r, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "# anodm experiment: Fashion-MNIST one-vs-rest\n\n"
            "- command: `%s`\n- machine: %s\n- date: %s\n- elapsed: %.0f s\n"
            "- settings: epochs %d, latent %d, n_ref %d, perplexity %g, seed %d, test %s\n\n",
            r->command, r->machine, r->date, elapsed(r), r->epochs, r->latent, r->n_ref,
            r->perplexity, (int)r->seed, r->test_limit ? "limited (class proportions kept)"
                                                      : "whole t10k set");
    fprintf(f, "auROC, the held-out class as positive. The column \"paper score, best α\" picks "
            "α on the TEST LABELS (as the paper does); every \"fused\" column is label-free "
            "(terms standardised on held-out calibration normals, α = 0.5). The last two "
            "columns are NOT measured here: they are quoted from the paper's Table 1 as "
            "reference values.\n\n");
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
            fprintf(f, "| %d %s |", cls, CLASS_NAME[cls]);
            for (int m = 0; m < EXP_N_METHODS; m++) {
                md_num(f, cr->auc[m]);
                sum[m] += cr->auc[m];
            }
            fprintf(f, " %g |", cr->best_alpha);
            md_num(f, PAPER_BVAE[cls]);
            md_num(f, PAPER_ANODM[cls]);
            sum[EXP_N_METHODS] += PAPER_BVAE[cls];
            sum[EXP_N_METHODS + 1] += PAPER_ANODM[cls];
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
        fputc('\n', f);
    }
    return fclose(f) == 0 ? 0 : -1;
}

/* s as a JSON string: the command line may hold quotes or backslashes in paths. */
static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
        else fputc(ch, f);
    }
    fputc('"', f);
}

static int write_json(const run *r, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "{\n  \"command\": ");
    json_str(f, r->command);
    fprintf(f, ",\n  \"machine\": ");
    json_str(f, r->machine);
    fprintf(f, ",\n  \"date\": \"%s\",\n"
            "  \"elapsed_seconds\": %.1f,\n  \"settings\": {\"dataset\": \"fashion-mnist\", "
            "\"epochs\": %d, \"latent\": %d, \"n_ref\": %d, \"perplexity\": %g, \"seed\": %d, "
            "\"test_limit\": %d},\n  \"paper_reference\": {\"source\": \"Table 1, not measured "
            "here\", \"beta_vae\": [", r->date, elapsed(r), r->epochs,
            r->latent, r->n_ref, r->perplexity, (int)r->seed, r->test_limit);
    for (int k = 0; k < N_CLASSES; k++) fprintf(f, "%s%.3f", k ? ", " : "", PAPER_BVAE[k]);
    fprintf(f, "], \"anodm\": [");
    for (int k = 0; k < N_CLASSES; k++) fprintf(f, "%s%.3f", k ? ", " : "", PAPER_ANODM[k]);
    fprintf(f, "]},\n  \"label_use\": {\"paper_best_alpha\": \"alpha chosen with test labels\", "
            "\"fused_*\": \"label-free\"},\n  \"runs\": [");
    for (int k = 0; k < r->n_betas * r->n_rates; k++) {
        fprintf(f, "%s\n    {\"beta\": %g, \"anomaly_rate\": ", k ? "," : "", beta_of(r, k));
        json_num(f, rate_of(r, k) > 0 ? rate_of(r, k) : NAN);
        fprintf(f, ", \"classes\": [");
        int first = 1;
        for (int c = 0; c < r->n_classes; c++) {
            const class_result *cr = &r->res[k][c];
            if (!cr->done) continue;
            fprintf(f, "%s\n      {\"class\": %d, \"name\": \"%s\", \"n_test\": %zu, "
                    "\"n_anomalies\": %zu, \"seconds\": %.1f, \"best_alpha\": %g, \"auroc\": {",
                    first ? "" : ",", r->classes[c], CLASS_NAME[r->classes[c]], cr->n_test,
                    cr->n_pos, cr->seconds, cr->best_alpha);
            for (int m = 0; m < EXP_N_METHODS; m++) {
                fprintf(f, "%s\"%s\": ", m ? ", " : "", EXP_METHOD_ID[m]);
                json_num(f, cr->auc[m]);
            }
            fprintf(f, "}}");
            first = 0;
        }
        fprintf(f, "\n    ]}");
    }
    fprintf(f, "\n  ]\n}\n");
    return fclose(f) == 0 ? 0 : -1;
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
    char path[1024], title[256], setting[128], rate[32] = "";
    if (rate_of(r, k) > 0) snprintf(rate, sizeof rate, "_rate%g", rate_of(r, k));
    snprintf(path, sizeof path, "%s/roc_beta%g%s_class%d.svg", r->out_dir, beta_of(r, k), rate,
             r->classes[c]);
    setting_title(r, k, setting, sizeof setting);
    snprintf(title, sizeof title, "Fashion-MNIST, anomaly class %d (%s), %s: ROC",
             r->classes[c], CLASS_NAME[r->classes[c]], setting);
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
    const double t0 = cli_now();
    double *scores[EXP_N_METHODS] = {0};
    size_t *idx = malloc(test->n * sizeof *idx), n = test->n;
    int *is_pos = malloc(test->n * sizeof *is_pos), rc = -1;
    float *x = test->x;
    int ok = idx && is_pos;
    for (int m = 0; m < EXP_N_METHODS; m++)
        ok &= (scores[m] = malloc(test->n * sizeof(double))) != NULL;
    if (!ok) {
        snprintf(err, errlen, "out of memory for %zu test scores", test->n);
        goto done;
    }
    for (size_t i = 0; i < test->n; i++) is_pos[i] = test->labels[i] == cls;
    if (rate_of(r, k) > 0) {
        /* Every normal, and the anomalies sampled down (or all) to the rate. */
        n = experiment_anomaly_subset(is_pos, test->n, rate_of(r, k), r->seed, idx);
        if (!n || !(x = malloc(n * test->dim * sizeof *x))) {
            snprintf(err, errlen, n ? "out of memory for the test subset"
                                    : "the test set lacks normals or anomalies");
            x = test->x;
            goto done;
        }
        for (size_t j = 0; j < n; j++) {
            memcpy(x + j * test->dim, test->x + idx[j] * test->dim, test->dim * sizeof *x);
            is_pos[j] = is_pos[idx[j]];     /* idx ascending: entries only move forward */
        }
    }
    size_t n_pos = 0;
    for (size_t i = 0; i < n; i++) n_pos += (size_t)is_pos[i];
    if (experiment_scores(d, x, is_pos, (int)n, cal->x, (int)cal->n, eo, on_stage, r, scores,
                          &r->res[k][c].best_alpha, err, errlen) != 0 ||
        report_class(r, k, c, scores, is_pos, n, err, errlen) != 0)
        goto done;
    class_result *cr = &r->res[k][c];
    cr->n_test = n;
    cr->n_pos = n_pos;
    cr->seconds = cli_now() - t0;
    cr->done = 1;
    char setting[128];
    setting_title(r, k, setting, sizeof setting);
    printf("[%7.1fs] %s, class %d (%s): %zu test samples, %zu anomalies, scored in %.0fs, "
           "auROC:", elapsed(r), setting, cls, CLASS_NAME[cls], n, n_pos, cr->seconds);
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
    free(idx);
    free(is_pos);
    for (int m = 0; m < EXP_N_METHODS; m++) free(scores[m]);
    return rc;
}

/* Build the detector of beta b with class c held out, then score every anomaly rate. */
static int run_class(run *r, int b, int c, const dataset *train, const dataset *test,
                     char *err, size_t errlen) {
    const int32_t cls = r->classes[c];
    dataset normals = {0}, cal = {0}, rest = {0};
    detector d = {0};
    vae_arch arch;
    build_opts bo;
    experiment_opts eo;
    int rc = -1;
    r->beta = r->betas[b];
    r->cls = cls;
    build_opts_default(&bo);
    bo.train.beta = (float)r->betas[b];
    bo.train.epochs = r->epochs;
    bo.train.seed = r->seed;
    bo.n_ref = r->n_ref;
    bo.tsne.perplexity = bo.place.perplexity = r->perplexity;
    experiment_opts_default(&eo);
    eo.joint.perplexity = r->perplexity;
    eo.seed = r->seed;
    if (vae_arch_preset(&arch, "fashion", r->latent, err, errlen) != 0 ||
        normals_of(train, cls, &normals, err, errlen) != 0)
        goto done;
    on_stage(r, "start", CLASS_NAME[cls]);
    if (detector_build(&d, &arch, &normals, &bo, on_epoch, on_stage, r, err, errlen) != 0)
        goto done;
    /* The calibration normals again: the same split detector_build made (same data,
     * fraction and seed), so they were never trained on nor put in the map. */
    if (dataset_split(&normals, bo.cal_frac, bo.train.seed, &cal, &rest, err, errlen) != 0)
        goto done;
    dataset_free(&rest);
    for (int q = 0; q < r->n_rates; q++)
        if (score_setting(r, b * r->n_rates + q, c, &d, test, &cal, &eo, err, errlen) != 0)
            goto done;
    rc = 0;
done:
    detector_free(&d);
    dataset_free(&normals);
    dataset_free(&cal);
    return rc;
}

/* Keep the first --test-limit test images with the class proportions of the whole set. */
static int limit_test(dataset *test, size_t limit, char *err, size_t errlen) {
    size_t *idx = malloc(test->n * sizeof *idx);
    if (!idx) {
        snprintf(err, errlen, "out of memory for the test subset");
        return -1;
    }
    size_t n = experiment_balanced_subset(test->labels, test->n, limit, idx);
    if (n == 0) {
        snprintf(err, errlen, "out of memory for the test subset");
        free(idx);
        return -1;
    }
    for (size_t j = 0; j < n; j++) {   /* idx ascending: rows only move forward */
        memmove(test->x + j * test->dim, test->x + idx[j] * test->dim, test->dim * sizeof(float));
        test->labels[j] = test->labels[idx[j]];
    }
    test->n = n;
    free(idx);
    return 0;
}

int cmd_experiment(int argc, char **argv) {
    static const struct option opts[] = {
        {"dataset", required_argument, 0, 'D'}, {"data", required_argument, 0, 'd'},
        {"classes", required_argument, 0, 'c'}, {"beta", required_argument, 0, 'b'},
        {"epochs", required_argument, 0, 'e'}, {"n-ref", required_argument, 0, 'r'},
        {"test-limit", required_argument, 0, 'n'}, {"seed", required_argument, 0, 's'},
        {"out-dir", required_argument, 0, 'o'}, {"perplexity", required_argument, 0, 'p'},
        {"latent", required_argument, 0, 'z'}, {"anomaly-rate", required_argument, 0, 'a'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    run *r = calloc(1, sizeof *r);
    const char *dataset_name = NULL;
    long long v;
    char err[512];
    int ch, rc = 2;
    if (!r) {
        fprintf(stderr, "anodm experiment: out of memory\n");
        return 1;
    }
    r->data_dir = DEFAULT_DATA;
    r->out_dir = "results";
    r->n_betas = 1;
    r->betas[0] = 0.01;
    r->n_rates = 1;
    r->rates[0] = 0;
    r->epochs = 20;
    r->n_ref = 10000;
    r->latent = 16;
    r->perplexity = 30;
    r->seed = 1;
    r->n_classes = N_CLASSES;
    for (int k = 0; k < N_CLASSES; k++) r->classes[k] = k;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'D': dataset_name = optarg; break;
        case 'd': r->data_dir = optarg; break;
        case 'c':
            if (strcmp(optarg, "all") != 0) {
                r->n_classes = cli_parse_classes(optarg, r->classes, N_CLASSES);
                for (int k = 0; k < r->n_classes; k++)
                    if (r->classes[k] >= N_CLASSES) r->n_classes = -1;
                if (r->n_classes < 0) {
                    fprintf(stderr, "anodm experiment: --classes wants all or classes 0..9 "
                            "like 1,3\n");
                    goto out;
                }
            }
            break;
        case 'b':
            if ((r->n_betas = parse_list("--beta", optarg, 1e-9, 1e6, r->betas, MAX_BETAS)) < 0) {
                fprintf(stderr, "anodm experiment: --beta wants up to %d positive numbers like "
                        "0.01,0.1\n", MAX_BETAS);
                goto out;
            }
            break;
        case 'e': if (cli_int("--epochs", optarg, 1, 100000, &v)) goto out; r->epochs = (int)v; break;
        case 'r': if (cli_int("--n-ref", optarg, 10, 1000000, &v)) goto out; r->n_ref = (int)v; break;
        case 'n':
            if (cli_int("--test-limit", optarg, 2, INT_MAX, &v)) goto out;
            r->test_limit = (int)v;
            break;
        case 's': if (cli_int("--seed", optarg, 1, INT_MAX, &v)) goto out; r->seed = (uint64_t)v; break;
        case 'o': r->out_dir = optarg; break;
        case 'a':
            if ((r->n_rates = parse_list("--anomaly-rate", optarg, 1e-6, 1 - 1e-6, r->rates,
                                         MAX_RATES)) < 0) {
                fprintf(stderr, "anodm experiment: --anomaly-rate wants up to %d rates in (0, 1) "
                        "like 0.01,0.1\n", MAX_RATES);
                goto out;
            }
            break;
        case 'p': if (cli_real("--perplexity", optarg, 1, 100, &r->perplexity)) goto out; break;
        case 'z': if (cli_int("--latent", optarg, 1, 4096, &v)) goto out; r->latent = (int)v; break;
        case 'h': experiment_usage(stdout); rc = 0; goto out;
        default: experiment_usage(stderr); goto out;
        }
    }
    if (!dataset_name || strcmp(dataset_name, "fashion-mnist") != 0 || optind != argc) {
        fprintf(stderr, "anodm experiment: %s\n", optind != argc ? "unexpected argument"
                : "--dataset fashion-mnist is required (the only data set supported so far)");
        experiment_usage(stderr);
        goto out;
    }
    rc = 1;
    describe_machine(r, argc, argv);
    r->t0 = cli_now();
    dataset train = {0}, test = {0};
    if (mkdir(r->out_dir, 0755) != 0 && !cli_is_dir(r->out_dir)) {
        snprintf(err, sizeof err, "cannot create %s", r->out_dir);
        goto fail;
    }
    if (dataset_load_fashion_mnist(&train, r->data_dir, 1, err, sizeof err) != 0 ||
        dataset_load_fashion_mnist(&test, r->data_dir, 0, err, sizeof err) != 0 ||
        (r->test_limit && limit_test(&test, (size_t)r->test_limit, err, sizeof err) != 0))
        goto fail;
    printf("[%7.1fs] %zu training and %zu test images from %s; %d beta(s) x %d class(es)\n",
           elapsed(r), train.n, test.n, r->data_dir, r->n_betas, r->n_classes);
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
    free(r);
    return rc;
}
