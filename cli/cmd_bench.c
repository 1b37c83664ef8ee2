/* anodm bench-vae: one timed training epoch of a beta-VAE preset, the C side of `make
 * bench` (tests/bench_vae.py times the same epoch in PyTorch in the same run). Two data
 * sets: Fashion-MNIST ("fashion") and the MIT-BIH heartbeats with the TCN encoder
 * ("ecg-tcn"). */
#include <cblas.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "cli.h"
#include "train.h"

/* What one benchmark trains on. limit 0: all of the samples. */
typedef struct {
    const char *arch;
    const char *data;       /* default --data; NULL: --data is required */
    int32_t held_out;       /* class removed, as the training protocol removes it */
    size_t n_held_out;      /* 0 or 1 */
    long long limit;        /* default --limit: a fixed epoch size */
} bench_set;

/* Fashion: trouser held out, 54000 training images, as in the protocol. ECG: the first
 * N beats of an `anodm ecg-extract` file, labels unread (only the epoch's size matters,
 * and the file's beats are in record order, so the first N are the same on both sides). */
static const bench_set SETS[] = {
    {"fashion", "/usr/share/datasets/fashion-mnist", 1, 1, 0},
    {"ecg-tcn", NULL, 0, 0, 20000},
};

static const bench_set *find_set(const char *arch) {
    for (size_t i = 0; i < sizeof SETS / sizeof SETS[0]; i++)
        if (!strcmp(SETS[i].arch, arch)) return &SETS[i];
    return NULL;
}

/* The shared options anodm bench-vae takes (cli/options.c). */
static const cli_option_id BENCH_OPTIONS[] = {CLI_THREADS, CLI_EPOCHS};
#define N_BENCH_OPTIONS (sizeof BENCH_OPTIONS / sizeof BENCH_OPTIONS[0])

static void usage(FILE *f, const cli_settings *s) {
    fprintf(f, "usage: anodm bench-vae [--arch NAME] [--data PATH] [--limit N] [--threads N] "
               "[--epochs N]\n"
               "  --arch fashion  --data the Fashion-MNIST directory (default %s),\n"
               "                  all training images but trousers (54000) unless --limit\n"
               "  --arch ecg-tcn  --data FILE.npy from `anodm ecg-extract` (required),\n"
               "                  its first --limit beats (default %lld)\n",
            SETS[0].data, SETS[1].limit);
    cli_option_usage(f, BENCH_OPTIONS, N_BENCH_OPTIONS, s);
}

int cmd_bench_vae(int argc, char **argv) {
    static const struct option own[] = {
        {"arch", required_argument, 0, 'a'}, {"data", required_argument, 0, 'd'},
        {"limit", required_argument, 0, 'n'}, {"help", no_argument, 0, 'h'}};
    struct option opts[sizeof own / sizeof own[0] + N_BENCH_OPTIONS + 1];
    cli_getopt_table(opts, own, sizeof own / sizeof own[0], BENCH_OPTIONS, N_BENCH_OPTIONS);
    const char *arch_name = "fashion", *path = NULL;
    int ch;
    long long v, limit = -1;   /* -1: the set's default */
    char err[512];
    /* One epoch at beta 0.01 on 2 threads, unless told otherwise. */
    cli_settings opt;
    cli_settings_default(&opt);
    train_opts *o = &opt.build.train;
    o->epochs = 1;
    o->beta = 0.01f;
    o->threads = 2;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (CLI_IS_OPTION(ch)) {
            if (cli_option_set(&opt, ch, optarg)) return 2;
            continue;
        }
        switch (ch) {
        case 'a': arch_name = optarg; break;
        case 'd': path = optarg; break;
        case 'n':
            if (cli_int("--limit", optarg, 1, LLONG_MAX, &v)) return 2;
            limit = v;
            break;
        case 'h': usage(stdout, &opt); return 0;
        default: usage(stderr, &opt); return 2;
        }
    }
    if (train_opts_check(o, err, sizeof err)) {
        fprintf(stderr, "anodm bench-vae: %s\n", err);
        return 2;
    }
    const bench_set *set = find_set(arch_name);
    if (!set || (!path && !set->data) || optind != argc) {
        fprintf(stderr, "anodm bench-vae: %s\n", !set ? "--arch is fashion or ecg-tcn" :
                optind != argc ? "unexpected argument" : "--data FILE.npy is required");
        usage(stderr, &opt);
        return 2;
    }
    dataset d = {0};
    vae_arch arch;
    vae_model m = {0};
    const data_source src = {.path = path ? path : set->data};
    if (vae_arch_preset(&arch, set->arch, 16, err, sizeof err) != 0 ||
        cli_load_training(&d, &src, &set->held_out, set->n_held_out,
                          (size_t)(limit < 0 ? set->limit : limit), err, sizeof err) != 0 ||
        cli_check_input(&d, &arch, err, sizeof err) != 0 ||
        vae_create(&m, &arch, 1, err, sizeof err) != 0) {
        fprintf(stderr, "anodm bench-vae: %s\n", err);
        vae_free(&m);
        dataset_free(&d);
        return 1;
    }
    double t0 = clock_seconds();
    int rc = vae_train(&m, d.x, d.n, o, NULL, NULL, err, sizeof err);
    double dt = (clock_seconds() - t0) / o->epochs;
    if (rc != 0) {
        fprintf(stderr, "anodm bench-vae: %s\n", err);
    } else {
        /* Training is forward + backward (input and weight gradients): ~3x forward MACs.
         * "images" counts samples of either set, so that one parser reads both lines. */
        double macs = net_macs_per_sample(&m.enc) + net_macs_per_sample(&m.dec);
        double gflops = 3.0 * 2.0 * macs * d.n / dt / 1e9;
        printf("c: blas=\"%s\" kernel=%s threads=%d images=%zu epoch_s=%.3f images_per_s=%.0f "
               "gflops=%.1f\n", openblas_get_config(), blas_kernel_name(), o->threads, d.n, dt,
               d.n / dt, gflops);
    }
    vae_free(&m);
    dataset_free(&d);
    return rc ? 1 : 0;
}
