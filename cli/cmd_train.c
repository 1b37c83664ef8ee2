/* anodm train: fit the beta-VAE on normal samples, print progress per epoch, save the
 * weights, and (when the data has a test split and an anomaly class) report the auROC of
 * the reconstruction error alone, the paper's beta-VAE-only figure. */
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auroc.h"
#include "cli.h"
#include "score.h"
#include "train.h"
#include "weights.h"

#define MAX_CLASSES 64

static void train_usage(FILE *f) {
    fprintf(f,
        "usage: anodm train --data DIR|FILE --out FILE [options]\n"
        "  --data DIR|FILE      IDX directory (Fashion-MNIST layout) or .npy/.csv/IDX file\n"
        "  --labels FILE        labels for a .npy or IDX file\n"
        "  --label-col N        CSV label column (default: last)\n"
        "  --test DIR|FILE      test set for the auROC report (default: DIR's t10k split)\n"
        "  --test-labels FILE   its labels\n"
        "  --exclude-class L    anomaly class(es), e.g. 1 or 1,3: left out of training\n"
        "  --arch NAME          architecture preset (default fashion)\n"
        "  --latent N           latent size (default 16)\n"
        "  --beta B             KL weight (default 1)\n"
        "  --capacity C         target KL in |KL - C| (default 0)\n"
        "  --capacity-ramp E    epochs over which C ramps up from 0 (default 0)\n"
        "  --epochs N           (default 20)   --batch N (default 100)   --lr X (default 1e-3)\n"
        "  --seed N             (default 1)    --threads N (training threads, default: all cores)\n"
        "  --limit N            use only the first N training samples (quick runs)\n"
        "  --out FILE           where to write the weights\n");
}

typedef struct { double t0; } progress_ctx;

static void print_progress(const train_progress *p, void *ctx) {
    (void)ctx;
    printf("epoch %3d/%d  loss %9.3f  recon %9.3f  KL %7.3f  %7.0f samples/s  %5.1fs  ETA %.0fs\n",
           p->epoch, p->epochs, p->loss, p->recon, p->kl, p->samples_per_s, p->seconds,
           p->eta_seconds);
    fflush(stdout);
}

/* auROC of D_RE on the test set, the excluded classes being the anomalies. */
static int report_recon_auroc(const vae_model *m, const dataset *test, const int32_t *classes,
                              int n_classes) {
    const size_t dim = test->dim, chunk = 500;
    vae_workspace w;
    double *scores = malloc(test->n * sizeof(double));
    int *is_pos = malloc(test->n * sizeof(int));
    float *rec = malloc(chunk * dim * sizeof(float));
    if (!scores || !is_pos || !rec || vae_workspace_init(&w, m, (int)chunk) != 0) {
        fprintf(stderr, "anodm train: out of memory for evaluation\n");
        free(scores); free(is_pos); free(rec);
        return -1;
    }
    for (size_t s = 0; s < test->n; s += chunk) {
        int B = (int)(test->n - s < chunk ? test->n - s : chunk);
        vae_reconstruct(m, &w, test->x + s * dim, NULL, B, rec, NULL);
        for (int b = 0; b < B; b++)
            scores[s + b] = score_recon_error(test->x + (s + b) * dim, rec + (size_t)b * dim, dim);
    }
    size_t n_pos = 0;
    for (size_t i = 0; i < test->n; i++) {
        is_pos[i] = 0;
        for (int c = 0; c < n_classes; c++) is_pos[i] |= test->labels[i] == classes[c];
        n_pos += (size_t)is_pos[i];
    }
    printf("test: %zu samples, %zu anomalous; auROC of reconstruction error: %.4f\n", test->n,
           n_pos, auroc(scores, is_pos, test->n));
    vae_workspace_free(&w);
    free(scores); free(is_pos); free(rec);
    return 0;
}

int cmd_train(int argc, char **argv) {
    static const struct option opts[] = {
        {"data", required_argument, 0, 'd'}, {"labels", required_argument, 0, 'L'},
        {"label-col", required_argument, 0, 'c'}, {"test", required_argument, 0, 't'},
        {"test-labels", required_argument, 0, 'T'}, {"exclude-class", required_argument, 0, 'x'},
        {"arch", required_argument, 0, 'a'}, {"latent", required_argument, 0, 'z'},
        {"beta", required_argument, 0, 'b'}, {"capacity", required_argument, 0, 'C'},
        {"capacity-ramp", required_argument, 0, 'R'}, {"epochs", required_argument, 0, 'e'},
        {"batch", required_argument, 0, 'B'}, {"lr", required_argument, 0, 'l'},
        {"seed", required_argument, 0, 's'}, {"threads", required_argument, 0, 'j'},
        {"limit", required_argument, 0, 'n'}, {"out", required_argument, 0, 'o'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    data_source src = {.label_col = DATASET_CSV_LAST_COL}, test_src = {.label_col = DATASET_CSV_LAST_COL};
    const char *arch_name = "fashion", *out = NULL;
    int latent = 16, n_classes = 0;
    long long limit = 0, v;
    double r;
    int32_t classes[MAX_CLASSES];
    train_opts o = train_defaults();
    char err[512];
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'd': src.path = optarg; break;
        case 'L': src.labels = optarg; break;
        case 'c':
            if (cli_int("--label-col", optarg, 0, 100000, &v)) return 2;
            src.label_col = test_src.label_col = (int)v;
            break;
        case 't': test_src.path = optarg; break;
        case 'T': test_src.labels = optarg; break;
        case 'x':
            if ((n_classes = cli_parse_classes(optarg, classes, MAX_CLASSES)) < 0) {
                fprintf(stderr, "anodm train: --exclude-class wants numbers like 1 or 1,3\n");
                return 2;
            }
            break;
        case 'a': arch_name = optarg; break;
        case 'z': if (cli_int("--latent", optarg, 1, 4096, &v)) return 2; latent = (int)v; break;
        case 'b': if (cli_real("--beta", optarg, 0, 1e6, &r)) return 2; o.beta = (float)r; break;
        case 'C': if (cli_real("--capacity", optarg, 0, 1e6, &r)) return 2; o.capacity = (float)r; break;
        case 'R':
            if (cli_real("--capacity-ramp", optarg, 0, 1e6, &r)) return 2;
            o.capacity_ramp_epochs = (float)r;
            break;
        case 'e': if (cli_int("--epochs", optarg, 1, 100000, &v)) return 2; o.epochs = (int)v; break;
        case 'B': if (cli_int("--batch", optarg, 1, 100000, &v)) return 2; o.batch = (int)v; break;
        case 'l': if (cli_real("--lr", optarg, 1e-12, 10, &r)) return 2; o.lr = (float)r; break;
        case 's': if (cli_int("--seed", optarg, 1, LLONG_MAX, &v)) return 2; o.seed = (uint64_t)v; break;
        case 'j': if (cli_int("--threads", optarg, 1, 64, &v)) return 2; o.threads = (int)v; break;
        case 'n': if (cli_int("--limit", optarg, 1, LLONG_MAX, &v)) return 2; limit = v; break;
        case 'o': out = optarg; break;
        case 'h': train_usage(stdout); return 0;
        default: train_usage(stderr); return 2;
        }
    }
    if (!src.path || !out || optind != argc) {
        fprintf(stderr, "anodm train: %s\n", optind != argc ? "unexpected argument" :
                "--data and --out are required");
        train_usage(stderr);
        return 2;
    }

    vae_arch arch;
    vae_model m;
    dataset train = {0}, test = {0};
    int rc = 1;
    if (vae_arch_preset(&arch, arch_name, latent, err, sizeof err) != 0) {
        fprintf(stderr, "anodm train: %s\n", err);
        return 2;
    }
    if (cli_load_data(&train, &src, 1, err, sizeof err) != 0) goto fail;
    if (n_classes && dataset_filter_classes(&train, classes, (size_t)n_classes, 1, err, sizeof err))
        goto fail;
    if (limit > 0 && (size_t)limit < train.n) train.n = (size_t)limit;
    if (train.dim != shape_size(arch.in)) {
        snprintf(err, sizeof err, "samples have %zu values, architecture '%s' expects %zu",
                 train.dim, arch_name, shape_size(arch.in));
        goto fail;
    }
    if (vae_create(&m, &arch, o.seed, err, sizeof err) != 0) goto fail;
    printf("training %s beta-VAE (latent %d, %zu parameters) on %zu samples: beta %g, C %g, "
           "%d epochs, batch %d, lr %g, seed %llu\n", arch_name, latent, m.n_params, train.n,
           o.beta, o.capacity, o.epochs, o.batch, o.lr, (unsigned long long)o.seed);
    fflush(stdout);
    if (vae_train(&m, train.x, train.n, &o, print_progress, NULL, err, sizeof err) != 0 ||
        weights_save(out, &m, err, sizeof err) != 0) {
        vae_free(&m);
        goto fail;
    }
    printf("wrote %s\n", out);
    if (!test_src.path && cli_is_dir(src.path)) test_src = src; /* the directory's t10k split */
    if (n_classes && test_src.path) {
        if (cli_load_data(&test, &test_src, 0, err, sizeof err) != 0) {
            vae_free(&m);
            goto fail;
        }
        if (!test.labels || test.dim != train.dim) {
            fprintf(stderr, "anodm train: test set needs labels and %zu values per sample\n",
                    train.dim);
        } else if (report_recon_auroc(&m, &test, classes, n_classes) != 0) {
            vae_free(&m);
            goto fail;
        }
    }
    vae_free(&m);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "anodm train: %s\n", err);
done:
    dataset_free(&train);
    dataset_free(&test);
    return rc;
}
