/* anodm train: build a detector from normal samples — train the beta-VAE, encode the
 * reference set, fit its t-SNE map, calibrate on held-out normals — and write it as one
 * model bundle. With --vae-only, stop after the beta-VAE and write its weights file.
 * When the data has a test split and an anomaly class, report test auROCs (the
 * reconstruction term alone, the paper's beta-VAE-only figure, and the fused score). */
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auroc.h"
#include "bundle.h"
#include "cli.h"
#include "pipeline.h"
#include "provenance.h"
#include "scorer.h"
#include "weights.h"

#define MAX_CLASSES 64
#define EVAL_BATCH 32

/* The shared options anodm train takes (cli/options.c), in --help's order. */
static const cli_option_id TRAIN_OPTIONS[] = {
    CLI_LATENT, CLI_BETA, CLI_CAPACITY, CLI_CAPACITY_RAMP, CLI_EPOCHS, CLI_BATCH, CLI_LR,
    CLI_SEED, CLI_THREADS, CLI_N_REF, CLI_PERPLEXITY, CLI_TSNE_ITER, CLI_CAL_FRAC,
    CLI_QUANTILE, CLI_WINDOW, CLI_K, CLI_ALPHA, CLI_MEMORY_SIZE, CLI_MEMORY_K, CLI_MEMORY_RECENT,
    CLI_MEMORY_K_MIN, CLI_MEMORY_HORIZON};
#define N_TRAIN_OPTIONS (sizeof TRAIN_OPTIONS / sizeof TRAIN_OPTIONS[0])

static void train_usage(FILE *f, const cli_settings *s) {
    fprintf(f,
        "usage: anodm train --data DIR|FILE --out FILE [options]\n"
        "  --data DIR|FILE      IDX directory (Fashion-MNIST layout) or .npy/.csv/IDX file\n"
        "  --labels FILE        labels for a .npy or IDX file\n"
        "  --label-col N|none   CSV label column, or none for a CSV of values only\n"
        "                       (default: the last column)\n"
        "  --test DIR|FILE      test set for the auROC report (default: DIR's t10k split)\n"
        "  --test-labels FILE   its labels\n"
        "  --exclude-class L    anomaly class(es), e.g. 1 or 1,3: left out of training\n"
        "  --input C,H,W        one sample's shape (default: the data's; a CSV row or 2-D\n"
        "                       array is 1,1,W, a 3-D .npy (N,C,W) is C,1,W)\n"
        "  --arch NAME          a preset: mlp (any shape, as a vector), conv1d (C,1,W),\n"
        "                       or the paper's fashion mnist cifar10 smallnorb (images)\n"
        "                       ecg-tcn ecg-cnn ecg-lstm (1,1,187). Default: the paper's\n"
        "                       preset for its image shape, conv1d for C,1,W with C > 1,\n"
        "                       mlp otherwise\n"
        "  --encoder SPEC       instead of a preset: the encoder and decoder in the\n"
        "  --decoder SPEC       architecture language of core/nn/net.h, e.g. --encoder\n"
        "                       'linear(64) relu' --decoder 'linear(64) relu linear(30)'\n"
        "  --scale KIND         none, standard or minmax per input value, fitted on the\n"
        "                       training normals and kept in the bundle (default: none\n"
        "                       for data in [0, 1], standard otherwise)\n"
        "  --recon bce|mse      reconstruction loss (default: bce for data in [0, 1] after\n"
        "                       scaling, mse otherwise)\n"
        "  --limit N            use only the first N training samples (quick runs)\n"
        "  --mode single|context  placement of new samples (single)\n"
        "  --term latent|map    the distance fused with the reconstruction error: to the\n"
        "                       nearest reference latent, or on the map (latent)\n"
        "  --latent-input mu|z  the latents of the map and that distance: the encoder mean,\n"
        "                       or a draw z = mu + sigma * eps seeded by each sample (mu)\n"
        "  --memory on|off      the stream memory: score how much closer a sample is to\n"
        "                       recent traffic than to normal data (docs/STREAM.md) (on)\n"
        "  --fusion NAME        how the memory term joins the base score: fisher, memory,\n"
        "                       max, sum or base (fisher)\n"
        "  --memory-retain company|evidence  what the memory keeps longest: samples with\n"
        "                       the most company in recent traffic, or the oddest alone\n"
        "                       (company; docs/STREAM.md)\n"
        "  --vae-only           stop after the beta-VAE and write a weights file\n"
        "  --out FILE           where to write the bundle (or weights)\n");
    cli_option_usage(f, TRAIN_OPTIONS, N_TRAIN_OPTIONS, s);
}

/* The summary a user reads after training: where the threshold sits and what it does
 * on the normals it was set on, the map's fit, and where the time went. */
static void print_report(const detector *d, const build_report *r) {
    int above = 0;
    for (int i = 0; i < d->n_cal; i++) above += d->cal_scores[i] > d->threshold;
    printf("report:\n"
           "  model        %s, input %dx%dx%d, latent %d, recon %s, scale %s, %zu parameters\n"
           "  threshold    %.4g at quantile %g: %.2f%% of the %d calibration normals above it\n"
           "               (%zu held out from training, %d training normals off the map)\n"
           "  map          %d reference points, KL %.4f\n"
           "  time         training %.1f s, map %.1f s, calibration %.1f s\n",
           d->vae.arch.name, d->vae.arch.in.c, d->vae.arch.in.h, d->vae.arch.in.w,
           d->vae.arch.latent, d->vae.arch.recon == RECON_MSE ? "mse" : "bce",
           SCALE_NAME[d->scale.kind], d->vae.n_params, d->threshold, d->quantile,
           100.0 * above / d->n_cal, d->n_cal, r->n_cal, d->n_cal - (int)r->n_cal,
           d->n_ref, r->map_kl, r->train_seconds, r->map_seconds, r->cal_seconds);
}

/* The architecture for samples of shape in: the encoder and decoder specs when given,
 * else preset arch_name, else the default preset for the shape. */
static int make_arch(vae_arch *a, shape3 in, const char *arch_name, const char *enc,
                     const char *dec, int latent, char *err, size_t errlen) {
    if (enc) return vae_arch_custom(a, in, latent, enc, dec, err, errlen);
    return vae_arch_for_input(a, arch_name ? arch_name : cli_default_arch(in), in, latent, err,
                              errlen);
}

typedef struct { vae_loss last; } train_ctx;

static void print_progress(const train_progress *p, void *ctx) {
    train_ctx *t = ctx;
    t->last = (vae_loss){.loss = p->loss, .recon = p->recon, .kl = p->kl};
    printf("epoch %3d/%d  loss %9.3f  recon %9.3f  KL %7.3f  %7.0f samples/s  %5.1fs  ETA %.0fs\n",
           p->epoch, p->epochs, p->loss, p->recon, p->kl, p->samples_per_s, p->seconds,
           p->eta_seconds);
    fflush(stdout);
}

static void print_stage(void *ctx, const char *stage, const char *detail) {
    (void)ctx;
    printf("%s: %s\n", stage, detail);
    fflush(stdout);
}

/* Test auROCs with the excluded classes as anomalies: reconstruction only, and (with a
 * detector) the fused score. */
static int evaluate(const vae_model *m, const detector *d, const dataset *test,
                    const int32_t *classes, int n_classes, double *auc_re, double *auc_fused) {
    const size_t dim = test->dim;
    double *re = malloc(test->n * sizeof(double)), *fused = malloc(test->n * sizeof(double));
    int *is_pos = malloc(test->n * sizeof(int));
    float *rec = malloc(EVAL_BATCH * dim * sizeof(float));
    detector_result res[EVAL_BATCH];
    vae_workspace w;
    scorer *s = NULL;
    char err[256];
    int rc = -1, ws_ok = 0;
    if (!re || !fused || !is_pos || !rec || !(ws_ok = vae_workspace_init(&w, m, EVAL_BATCH) == 0))
        goto done;
    if (d && !(s = scorer_create(d, EVAL_BATCH, err, sizeof err))) goto done;
    for (size_t i = 0; i < test->n; i += EVAL_BATCH) {
        int B = (int)(test->n - i < EVAL_BATCH ? test->n - i : EVAL_BATCH);
        if (s) {
            if (scorer_score(s, test->x + i * dim, B, res, NULL, NULL, NULL, err, sizeof err))
                goto done;
            for (int b = 0; b < B; b++) {
                re[i + b] = res[b].d_re;
                fused[i + b] = res[b].score;
            }
        } else {
            vae_reconstruct(m, &w, test->x + i * dim, NULL, B, rec, NULL);
            for (int b = 0; b < B; b++)
                re[i + b] = score_recon_error(test->x + (i + b) * dim, rec + (size_t)b * dim, dim);
        }
    }
    size_t n_pos = 0;
    for (size_t i = 0; i < test->n; i++) {
        is_pos[i] = 0;
        for (int c = 0; c < n_classes; c++) is_pos[i] |= test->labels[i] == classes[c];
        n_pos += (size_t)is_pos[i];
    }
    *auc_re = auroc(re, is_pos, test->n);
    *auc_fused = s ? auroc(fused, is_pos, test->n) : NAN;
    printf("test: %zu samples, %zu anomalous; auROC of reconstruction error: %.4f", test->n,
           n_pos, *auc_re);
    if (s) printf("; of the fused score: %.4f", *auc_fused);
    printf("\n");
    rc = 0;
done:
    if (rc) fprintf(stderr, "anodm train: evaluation failed (out of memory?)\n");
    scorer_free(s);
    if (ws_ok) vae_workspace_free(&w);
    free(re);
    free(fused);
    free(is_pos);
    free(rec);
    return rc;
}

int cmd_train(int argc, char **argv) {
    static const struct option own[] = {
        {"data", required_argument, 0, 'd'}, {"labels", required_argument, 0, 'L'},
        {"label-col", required_argument, 0, 'c'}, {"test", required_argument, 0, 't'},
        {"test-labels", required_argument, 0, 'T'}, {"exclude-class", required_argument, 0, 'x'},
        {"arch", required_argument, 0, 'a'}, {"limit", required_argument, 0, 'n'},
        {"out", required_argument, 0, 'o'}, {"mode", required_argument, 0, 'm'},
        {"vae-only", no_argument, 0, 'V'}, {"term", required_argument, 0, 'M'},
        {"latent-input", required_argument, 0, 'Z'}, {"input", required_argument, 0, 'I'},
        {"encoder", required_argument, 0, 'E'}, {"decoder", required_argument, 0, 'D'},
        {"scale", required_argument, 0, 'S'}, {"recon", required_argument, 0, 'R'},
        {"memory", required_argument, 0, 'Y'}, {"fusion", required_argument, 0, 'F'},
        {"memory-retain", required_argument, 0, 1002},
        {"help", no_argument, 0, 'h'}};
    struct option opts[sizeof own / sizeof own[0] + N_TRAIN_OPTIONS + 1];
    cli_getopt_table(opts, own, sizeof own / sizeof own[0], TRAIN_OPTIONS, N_TRAIN_OPTIONS);
    data_source src = {.label_col = DATASET_CSV_LAST_COL}, test_src = {.label_col = DATASET_CSV_LAST_COL};
    const char *arch_name = NULL, *enc = NULL, *dec = NULL, *out = NULL;
    shape3 in = {0, 0, 0};
    int n_classes = 0, vae_only = 0, scale = -1, recon = -1;
    long long limit = 0, v;
    int32_t classes[MAX_CLASSES];
    cli_settings set;
    cli_settings_default(&set);
    build_opts o;
    char err[512];
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (CLI_IS_OPTION(ch)) {
            if (cli_option_set(&set, ch, optarg)) return 2;
            continue;
        }
        switch (ch) {
        case 'd': src.path = optarg; break;
        case 'L': src.labels = optarg; break;
        case 'c':
            if (cli_label_col(optarg, &src.label_col)) return 2;
            test_src.label_col = src.label_col;
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
        case 'E': enc = optarg; break;
        case 'D': dec = optarg; break;
        case 'I':
            if (cli_parse_shape(optarg, &in)) {
                fprintf(stderr, "anodm train: --input wants C,H,W, three whole numbers from 1 "
                        "to %d, not '%s'\n", CONV_MAX_DIM, optarg);
                return 2;
            }
            break;
        case 'S':
            for (scale = 0; scale < SCALE_N && strcmp(optarg, SCALE_NAME[scale]); scale++) {}
            if (scale == SCALE_N) {
                fprintf(stderr, "anodm train: --scale is none, standard or minmax, not '%s'\n",
                        optarg);
                return 2;
            }
            break;
        case 'R':
            if (!strcmp(optarg, "bce") || !strcmp(optarg, "mse"))
                recon = optarg[0] == 'm' ? RECON_MSE : RECON_BCE;
            else {
                fprintf(stderr, "anodm train: --recon is bce or mse, not '%s'\n", optarg);
                return 2;
            }
            break;
        case 'n': if (cli_int("--limit", optarg, 1, LLONG_MAX, &v)) return 2; limit = v; break;
        case 'm':
            if (!strcmp(optarg, "single")) build_opts_set_mode(&set.build, PLACE_SINGLE);
            else if (!strcmp(optarg, "context")) build_opts_set_mode(&set.build, PLACE_CONTEXT);
            else {
                fprintf(stderr, "anodm train: --mode is single or context, not '%s'\n", optarg);
                return 2;
            }
            break;
        case 'M':
            if (!strcmp(optarg, "latent")) set.build.term = TERM_LATENT;
            else if (!strcmp(optarg, "map")) set.build.term = TERM_MAP;
            else {
                fprintf(stderr, "anodm train: --term is latent or map, not '%s'\n", optarg);
                return 2;
            }
            break;
        case 'Z':
            if (cli_latent_input("anodm train", optarg, &set.build.input)) return 2;
            break;
        case 'Y':
            if (strcmp(optarg, "on") && strcmp(optarg, "off")) {
                fprintf(stderr, "anodm train: --memory is on or off, not '%s'\n", optarg);
                return 2;
            }
            set.build.use_memory = !strcmp(optarg, "on");
            break;
        case 'F':
            if (cli_fusion("anodm train", optarg, &set.build.fusion)) return 2;
            break;
        case 1002:
            if (cli_memory_retain("anodm train", optarg, &set.build.memory)) return 2;
            break;
        case 'V': vae_only = 1; break;
        case 'o': out = optarg; break;
        case 'h': train_usage(stdout, &set); return 0;
        default: train_usage(stderr, &set); return 2;
        }
    }
    if (!src.path || !out || optind != argc) {
        fprintf(stderr, "anodm train: %s\n", optind != argc ? "unexpected argument" :
                "--data and --out are required");
        train_usage(stderr, &set);
        return 2;
    }
    if (!enc != !dec || (enc && arch_name)) {
        fprintf(stderr, "anodm train: %s\n", enc && arch_name ? "--arch or --encoder and "
                "--decoder, not both" : "--encoder and --decoder go together");
        return 2;
    }
    if (vae_only && scale > SCALE_NONE) {
        fprintf(stderr, "anodm train: --vae-only writes weights without a scaling; --scale "
                "needs a bundle\n");
        return 2;
    }
    o = set.build;
    const int latent = set.latent;
    /* Every option by the library's rules, before the data is read: what the data
     * allows (its size against --n-ref and the perplexity) detector_build checks before
     * training. */
    if ((vae_only ? train_opts_check(&o.train, err, sizeof err)
                  : build_opts_check(&o, 0, err, sizeof err)) != 0) {
        fprintf(stderr, "anodm train: %s\n", err);
        return 2;
    }

    vae_arch arch;
    detector d = {0};
    vae_model m = {0};
    build_report report = {0};
    train_ctx tc = {{NAN, NAN, NAN}};
    dataset train = {0}, test = {0};
    double auc_re = NAN, auc_fused = NAN;
    int rc = 1;
    /* The architecture as soon as its input shape is known, and that is before reading
     * the data when the shape is given or a paper preset is named: a spec that does not
     * fit fails here, before anything is loaded or trained. */
    shape3 preset_in = {0, 0, 0};
    if (arch_name && vae_arch_preset_shape(arch_name, &preset_in, err, sizeof err)) {
        fprintf(stderr, "anodm train: %s\n", err);
        return 2;
    }
    if (!in.c) in = preset_in;
    const int have_arch = in.c > 0;
    if (have_arch && make_arch(&arch, in, arch_name, enc, dec, latent, err, sizeof err)) {
        fprintf(stderr, "anodm train: %s\n", err);
        return 2;
    }
    if (cli_load_training(&train, &src, classes, (size_t)n_classes, (size_t)limit, err,
                          sizeof err) != 0 ||
        (!have_arch && make_arch(&arch, cli_sample_shape(&src, &train), arch_name, enc, dec,
                                 latent, err, sizeof err) != 0))
        goto fail;
    if (cli_check_input(&train, &arch, err, sizeof err) != 0) goto fail;
    arch_name = arch.name;
    /* Defaults that fit the data: scale only what is not already in [0, 1] (pixels,
     * beats scaled per sample), and BCE only for targets in [0, 1]. */
    const int unit = cli_unit_range(&train);
    o.scale = scale >= 0 ? (scale_kind)scale : unit || vae_only ? SCALE_NONE : SCALE_STANDARD;
    arch.recon = recon >= 0 ? (recon_kind)recon
                            : o.scale == SCALE_MINMAX || (o.scale == SCALE_NONE && unit)
                                  ? RECON_BCE : RECON_MSE;
    if (!test_src.path && cli_is_dir(src.path)) test_src = src; /* the directory's t10k split */
    if (n_classes && test_src.path) {
        if (cli_load_data(&test, &test_src, 0, err, sizeof err) != 0) goto fail;
        if (!test.labels || test.dim != train.dim) {
            snprintf(err, sizeof err, "test set needs labels and %zu values per sample", train.dim);
            goto fail;
        }
    }
    if (vae_only) {
        if (vae_create(&m, &arch, o.train.seed, err, sizeof err) != 0) goto fail;
        printf("training %s beta-VAE (latent %d, %zu parameters) on %zu samples: beta %g, C %g, "
               "%d epochs, batch %d, lr %g, seed %llu\n", arch_name, latent, m.n_params, train.n,
               o.train.beta, o.train.capacity, o.train.epochs, o.train.batch, o.train.lr,
               (unsigned long long)o.train.seed);
        fflush(stdout);
        if (vae_train(&m, train.x, train.n, &o.train, print_progress, &tc, err, sizeof err) ||
            weights_save(out, &m, err, sizeof err))
            goto fail;
        printf("wrote %s\n", out);
        if (test.n && evaluate(&m, NULL, &test, classes, n_classes, &auc_re, &auc_fused)) goto fail;
    } else {
        o.report = &report;
        printf("building %s detector on %zu normal samples (input %dx%dx%d, scale %s, recon "
               "%s): beta %g, %d epochs, at most %d reference points, %s placement, RE fused "
               "with the %s term\n", arch_name, train.n, arch.in.c, arch.in.h, arch.in.w,
               SCALE_NAME[o.scale], arch.recon == RECON_MSE ? "mse" : "bce", o.train.beta,
               o.train.epochs, o.n_ref, o.mode == PLACE_CONTEXT ? "context" : "single",
               o.term == TERM_LATENT ? "latent" : "map");
        fflush(stdout);
        if (detector_build(&d, &arch, &train, &o, print_progress, print_stage, &tc, err, sizeof err))
            goto fail;
        if (test.n && evaluate(&d.vae, &d, &test, classes, n_classes, &auc_re, &auc_fused))
            goto fail;
        provenance_info p = {.data_path = src.path, .excluded = classes, .n_excluded = n_classes,
                             .arch = arch_name, .latent = latent, .opts = &o, .report = &report,
                             .loss = tc.last.loss, .recon = tc.last.recon, .kl = tc.last.kl,
                             .test_auroc_re = auc_re, .test_auroc_fused = auc_fused};
        char samples_file[4096];
        snprintf(samples_file, sizeof samples_file, "%s%s", src.path,
                 cli_is_dir(src.path) ? "/train-images-idx3-ubyte.gz" : "");
        if (provenance_file_sha256(samples_file, p.data_sha256) != 0) p.data_sha256[0] = 0;
        if (!(d.provenance = provenance_json(&p))) {
            snprintf(err, sizeof err, "out of memory for the provenance record");
            goto fail;
        }
        if (bundle_save(out, &d, err, sizeof err) != 0) goto fail;
        printf("wrote %s\n", out);
        print_report(&d, &report);
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "anodm train: %s\n", err);
done:
    detector_free(&d);
    vae_free(&m);
    dataset_free(&train);
    dataset_free(&test);
    return rc;
}
