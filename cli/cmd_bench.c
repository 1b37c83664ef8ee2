/* anodm bench-vae: one timed training epoch of the Fashion-MNIST beta-VAE, the C side of
 * `make bench` (tests/bench_vae.py times the same epoch in PyTorch in the same run). */
#include <cblas.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "blas.h"
#include "cli.h"
#include "train.h"

int cmd_bench_vae(int argc, char **argv) {
    static const struct option opts[] = {
        {"data", required_argument, 0, 'd'}, {"threads", required_argument, 0, 'j'},
        {"epochs", required_argument, 0, 'e'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    data_source src = {.path = "/usr/share/datasets/fashion-mnist"};
    int threads = 2, epochs = 1, ch;
    long long v;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'd': src.path = optarg; break;
        case 'j':
            if (cli_int("--threads", optarg, 1, 64, &v)) return 2;
            threads = (int)v;
            break;
        case 'e':
            if (cli_int("--epochs", optarg, 1, 1000, &v)) return 2;
            epochs = (int)v;
            break;
        case 'h':
            printf("usage: anodm bench-vae [--data DIR] [--threads N] [--epochs N]\n");
            return 0;
        default: return 2;
        }
    }
    char err[512];
    dataset d = {0};
    int32_t anomaly = 1; /* trouser held out: 54000 training images, as in the protocol */
    if (cli_load_data(&d, &src, 1, err, sizeof err) != 0 ||
        dataset_filter_classes(&d, &anomaly, 1, 1, err, sizeof err) != 0) {
        fprintf(stderr, "anodm bench-vae: %s\n", err);
        dataset_free(&d);
        return 1;
    }
    vae_arch arch;
    vae_model m;
    if (vae_arch_preset(&arch, "fashion", 16, err, sizeof err) != 0 ||
        vae_create(&m, &arch, 1, err, sizeof err) != 0) {
        fprintf(stderr, "anodm bench-vae: %s\n", err);
        dataset_free(&d);
        return 1;
    }
    train_opts o = train_defaults();
    o.epochs = epochs;
    o.beta = 0.01f;
    o.threads = threads;
    double t0 = cli_now();
    int rc = vae_train(&m, d.x, d.n, &o, NULL, NULL, err, sizeof err);
    double dt = (cli_now() - t0) / epochs;
    if (rc != 0) {
        fprintf(stderr, "anodm bench-vae: %s\n", err);
    } else {
        /* Training is forward + backward (input and weight gradients): ~3x forward MACs. */
        double macs = net_macs_per_sample(&m.enc) + net_macs_per_sample(&m.dec);
        double gflops = 3.0 * 2.0 * macs * d.n / dt / 1e9;
        printf("c: blas=\"%s\" kernel=%s threads=%d images=%zu epoch_s=%.3f images_per_s=%.0f "
               "gflops=%.1f\n", openblas_get_config(), blas_kernel_name(), threads, d.n, dt,
               d.n / dt, gflops);
    }
    vae_free(&m);
    dataset_free(&d);
    return rc ? 1 : 0;
}
