/* anodm — train, evaluate and inspect AnoDM models from the command line. */
#include <cblas.h>
#include <stdio.h>
#include <string.h>

#include "blas.h"
#include "cli.h"

/* Which OpenBLAS runs and with which kernels: scores are reproducible to the bit on one
 * kernel only (docs/BATCHING.md), so bug reports and `make test-kernels` name it. */
static int cmd_blas(int argc, char **argv) {
    (void)argv;
    if (argc > 1) {
        fprintf(stderr, "usage: anodm blas\n");
        return 2;
    }
    printf("kernel %s\nconfig %s\n", blas_kernel_name(), openblas_get_config());
    return 0;
}

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} COMMANDS[] = {
    {"train", cmd_train, "build a detector (beta-VAE, map, calibration) into a bundle"},
    {"bench-vae", cmd_bench_vae, "time one training epoch (C side of `make bench`)"},
    {"bench-score", cmd_bench_score, "CPU time per sample of each scoring stage, beside its floor"},
    {"bench-tsne", bench_tsne_main, "time t-SNE fits and placement (C side of `make bench`)"},
    {"score", cmd_score, "score a data file offline with a model bundle (CSV or JSON lines)"},
    {"inspect", cmd_inspect, "print what a model bundle holds (--json for scripts)"},
    {"experiment", cmd_experiment, "the paper's one-vs-rest auROC table, ROC plots"},
    {"ecg-extract", cmd_ecg_extract, "heartbeat set (CSV or NPY) from raw MIT-BIH/WFDB records"},
    {"ecg-rpeaks", cmd_ecg_rpeaks, "R-peak detector's Se and +P against WFDB beat annotations"},
    {"blas", cmd_blas, "the OpenBLAS build and the kernels it runs on this CPU"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: anodm COMMAND [options]   (anodm COMMAND --help for its options)\n\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(f, "  %-12s %s\n", COMMANDS[i].name, COMMANDS[i].help);
}

int main(int argc, char **argv) {
    blas_select_kernels(argv);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (!strcmp(argv[1], COMMANDS[i].name)) return COMMANDS[i].run(argc - 1, argv + 1);
    fprintf(stderr, "anodm: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
