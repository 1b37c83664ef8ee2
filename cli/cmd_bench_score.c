/* anodm bench-score: where a scored sample's CPU time goes, stage by stage, beside each
 * stage's arithmetic floor.
 *
 * The daemon's cost is per sample, whatever the batch (docs/BATCHING.md: the network runs
 * one sample at a time), so the question is which stage to cut. This runs the daemon's
 * own steps on real samples: the request's JSON decoded by proto/api.c, the scorer with
 * its stage timing on (core/detect/scorer.h), the answer encoded by proto/api.c, at each
 * batch size asked for, and prints the thread CPU time per sample of every stage. The
 * floor is the stage's floating-point work divided by the single-thread sgemm rate
 * measured in the same run: as fast as this core does arithmetic. Only stages whose work
 * is arithmetic get one (parsing, printing and the perplexity's exponentials do not).
 * The iterations' floor counts the gradient steps placement reports having taken
 * (tsne_place_timing.steps, averaged over the B=1 run's samples; placement is batch-
 * invariant, so every batch size takes the same steps), not the bundle's n_iter cap:
 * the stopping rule (tol) ends most placements long before it. The neighbour search's
 * floor is a full scan of the reference (what an exact answer costs without an index).
 * Each timed interval is two reads of the thread CPU clock, a system call that costs CPU
 * time itself (about 0.6 us in the VM this was written on); the cost of one read,
 * measured in the same run (the gap between back-to-back reads), is taken off each
 * interval: per batch for the stages the scorer and the JSON steps time once a batch,
 * per group of rows placed in lockstep (tsne_place_timing.groups: a batch of up to 64
 * rows is one) for placement's search, calibration and iterations, and placement as a
 * whole holds four reads a group besides (placement's own stage timing). The header
 * prints it. The SQLite row and the HTTP exchange are the daemon's (tests/bench_daemon.sh). */
#include <cblas.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "blas.h"
#include "bundle.h"
#include "cli.h"
#include "clock.h"
#include "dataset_io.h"
#include "scorer.h"

#define MAX_BATCHES 8
#define SGEMM_N 256

/* The calling thread's sgemm rate on one BLAS thread, GFLOP/s, on square products of
 * SGEMM_N: the arithmetic floor's yardstick. 0 when out of memory. */
static double sgemm_gflops(void) {
    const size_t nn = (size_t)SGEMM_N * SGEMM_N;
    float *a = malloc(3 * nn * sizeof *a);
    if (!a) return 0.0;
    for (size_t i = 0; i < 3 * nn; i++) a[i] = (float)(i % 17) * 0.01f;
    const int threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    long long reps = 0, t0 = clock_thread_cpu_ns(), t = t0;
    for (; t - t0 < 300000000LL || reps < 3; reps++, t = clock_thread_cpu_ns())
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, SGEMM_N, SGEMM_N, SGEMM_N, 1.0f,
                    a, SGEMM_N, a + nn, SGEMM_N, 0.0f, a + 2 * nn, SGEMM_N);
    openblas_set_num_threads(threads);
    free(a);
    return 2.0 * SGEMM_N * SGEMM_N * SGEMM_N * (double)reps / (double)(t - t0);
}

/* The thread CPU time one clock read adds to a timed interval: the mean gap between
 * back-to-back reads, the least of 20 rounds of 1000 (a round the machine disturbed
 * would overstate it). */
static double clock_read_ns(void) {
    double best = INFINITY;
    for (int round = 0; round < 20; round++) {
        long long t0 = clock_thread_cpu_ns(), t = t0;
        for (int i = 0; i < 1000; i++) t = clock_thread_cpu_ns();
        best = fmin(best, (double)(t - t0) / 1000);
    }
    return best;
}

/* {"samples": [[...], ...]} for B samples of dim values, as a client would print them. */
static char *request_body(const float *x, int B, size_t dim, size_t *len) {
    size_t cap = 32 + (size_t)B * (dim * 18 + 4);
    char *s = malloc(cap), *p = s;
    if (!s) return NULL;
    p += sprintf(p, "{\"samples\": [");
    for (int b = 0; b < B; b++) {
        *p++ = '[';
        for (size_t j = 0; j < dim; j++)
            p += sprintf(p, "%s%.9g", j ? "," : "", (double)x[(size_t)b * dim + j]);
        p += sprintf(p, "]%s", b + 1 < B ? "," : "");
    }
    p += sprintf(p, "]}");
    *len = (size_t)(p - s);
    return s;
}

/* The stages, in a request's order; each row's time per sample, by batch size. */
enum { ST_DECODE, ST_SCALE, ST_FORWARD, ST_PLACE, ST_SEARCH, ST_CALIBRATE, ST_ITERATE,
       ST_TERMS, ST_MEMORY, ST_FINISH, ST_ENCODE, ST_N };
static const char *const STAGE_NAME[ST_N] = {
    "decode JSON", "scale input", "forward (VAE)", "placement", "  neighbour search",
    "  calibration", "  iterations", "terms", "memory", "fuse, verdict", "encode JSON"};

/* Score the first n samples of x in batches of B through a fresh scorer, the request
 * decoded and the answer encoded as the daemon does; ns[stage] gets the CPU time per
 * sample, less the clock reads' own (clock_ns a read, see the top), *steps the
 * placement's gradient steps per sample. 0, or -1 with err. */
static int run_batches(const detector *d, const float *x, size_t n, size_t dim, int B,
                       double clock_ns, double ns[ST_N], double *steps, char *err,
                       size_t errlen) {
    const int k = d->k;
    scorer *s = scorer_create(d, B, err, errlen);
    detector_result *res = malloc((size_t)B * sizeof *res);
    api_score_record *rec = calloc((size_t)B, sizeof *rec);
    int32_t *ref = malloc((size_t)B * (size_t)k * sizeof *ref);
    float *dist = malloc((size_t)B * (size_t)k * sizeof *dist);
    scorer_timing t = {0};
    long long decode = 0, encode = 0;
    int rc = s && res && rec && ref && dist ? 0 : -1;
    if (rc && s) snprintf(err, errlen, "out of memory");
    if (s) scorer_time_stages(s, &t);
    for (size_t at = 0; rc == 0 && at + (size_t)B <= n; at += (size_t)B) {
        size_t len;
        char *body = request_body(x + at * dim, B, dim, &len), *answer = NULL;
        api_score_request req = {0};
        api_error e;
        long long c0 = clock_thread_cpu_ns();
        int bad = !body || api_decode_score(body, len, dim, B, &req, &e);
        decode += clock_thread_cpu_ns() - c0;
        if (bad) {
            snprintf(err, errlen, "decoding a request: %s", body ? e.message : "out of memory");
            rc = -1;
        }
        if (rc == 0) rc = scorer_score(s, req.x, B, res, NULL, ref, dist, err, errlen);
        if (rc == 0) {
            for (int b = 0; b < B; b++)
                rec[b] = (api_score_record){.index = b, .r = res[b], .threshold = d->threshold};
            api_score_detail detail = {.k = k, .ref = ref, .distance = dist};
            c0 = clock_thread_cpu_ns();
            answer = api_encode_score("bench", "bench", rec, B, &detail);
            encode += clock_thread_cpu_ns() - c0;
            if (!answer) {
                snprintf(err, errlen, "encoding an answer: out of memory");
                rc = -1;
            }
        }
        free(answer);
        api_score_request_free(&req);
        free(body);
    }
    double per = t.samples > 0 ? 1.0 / (double)t.samples : 0.0;
    ns[ST_DECODE] = (double)decode * per;
    ns[ST_SCALE] = (double)t.scale_ns * per;
    ns[ST_FORWARD] = (double)t.forward_ns * per;
    ns[ST_PLACE] = (double)t.place_ns * per;
    ns[ST_SEARCH] = (double)t.place.search_ns * per;
    ns[ST_CALIBRATE] = (double)t.place.calibrate_ns * per;
    ns[ST_ITERATE] = (double)t.place.iterate_ns * per;
    ns[ST_TERMS] = (double)t.terms_ns * per;
    ns[ST_MEMORY] = (double)t.memory_ns * per;
    ns[ST_FINISH] = (double)t.finish_ns * per;
    ns[ST_ENCODE] = (double)encode * per;
    *steps = (double)t.place.steps * per;
    /* placement reads the clock once a stage for each group of rows it places together */
    double group_reads = (double)t.place.groups * per * clock_ns;
    for (int st = 0; st < ST_N; st++) {
        int inner = st == ST_SEARCH || st == ST_CALIBRATE || st == ST_ITERATE;
        if (inner && d->mode != PLACE_SINGLE) continue;      /* not timed */
        ns[st] -= inner ? group_reads
                        : clock_ns / B + (st == ST_PLACE && d->mode == PLACE_SINGLE
                                          ? 4.0 * group_reads : 0.0);
        ns[st] = ns[st] > 0.0 ? ns[st] : 0.0;   /* a stage shorter than the reads' noise */
    }
    scorer_free(s);
    free(res);
    free(rec);
    free(ref);
    free(dist);
    return rc;
}

/* Floating-point operations per sample of the stages whose work is arithmetic (0: no
 * floor): the network's multiply-adds, the neighbour scan's distance (a subtraction and a
 * multiply-add per coordinate of every reference latent), and per placement iteration
 * the attraction of k neighbours (about 10 operations each) and the field's interpolation
 * (9 nodes x 4 potentials, about 100), times the steps placement took per sample (steps:
 * the stopping rule ends most placements well before the n_iter cap, so the cap would
 * overstate the work). */
static void stage_flops(const detector *d, double steps, double flops[ST_N]) {
    memset(flops, 0, ST_N * sizeof *flops);
    const int k = tsne_neighbours(d->place.perplexity);
    flops[ST_FORWARD] = 2.0 * (net_macs_per_sample(&d->vae.enc) + net_macs_per_sample(&d->vae.dec));
    if (d->mode == PLACE_SINGLE) {
        flops[ST_SEARCH] = 3.0 * d->n_ref * d->vae.arch.latent;
        flops[ST_ITERATE] = steps * (10.0 * k + 100.0);
        flops[ST_PLACE] = flops[ST_SEARCH] + flops[ST_ITERATE];
    }
}

static void usage(FILE *f) {
    fprintf(f, "usage: anodm bench-score MODEL.anodm DATA [--batches 1,8,64] [--samples N]\n"
               "  DATA            IDX directory (its test split), or .npy/.csv/IDX file\n"
               "  --batches LIST  batch sizes, each scored through a fresh scorer (1,8,64)\n"
               "  --samples N     samples scored at each batch size (1024)\n"
               "Prints the CPU time per sample of each stage and its arithmetic floor.\n");
}

int cmd_bench_score(int argc, char **argv) {
    static const struct option opts[] = {
        {"batches", required_argument, 0, 'b'}, {"samples", required_argument, 0, 'n'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int32_t batches[MAX_BATCHES] = {1, 8, 64};
    int n_batches = 3, ch;
    long long n_samples = 1024;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'b':
            n_batches = cli_parse_classes(optarg, batches, MAX_BATCHES);
            for (int i = 0; i < n_batches; i++)
                if (batches[i] < 1 || batches[i] > 4096) n_batches = -1;
            if (n_batches < 1) {
                fprintf(stderr, "anodm bench-score: --batches wants up to %d sizes in 1..4096, "
                        "like 1,8,64\n", MAX_BATCHES);
                return 2;
            }
            break;
        case 'n':
            if (cli_int("--samples", optarg, 1, 1 << 20, &n_samples)) return 2;
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (argc - optind != 2) {
        fprintf(stderr, "anodm bench-score: a model and a data file are required\n");
        usage(stderr);
        return 2;
    }
    char err[512];
    detector d;
    dataset data = {0};
    const data_source src = {.path = argv[optind + 1], .label_col = DATASET_CSV_LAST_COL};
    if (bundle_load(argv[optind], &d, err, sizeof err)) {
        fprintf(stderr, "anodm bench-score: %s\n", err);
        return 1;
    }
    int rc = cli_load_data(&data, &src, 0, err, sizeof err) ||
             cli_check_input(&data, &d.vae.arch, err, sizeof err);
    size_t n = data.n < (size_t)n_samples ? data.n : (size_t)n_samples;
    double ns[MAX_BATCHES][ST_N], steps[MAX_BATCHES], flops[ST_N];
    double gflops = rc ? 0.0 : sgemm_gflops(), clock_ns = rc ? 0.0 : clock_read_ns();
    for (int i = 0; rc == 0 && i < n_batches; i++) {
        if ((size_t)batches[i] > n) {
            snprintf(err, sizeof err, "batch %d is larger than the %zu samples", batches[i], n);
            rc = -1;
        } else {
            rc = run_batches(&d, data.x, n, data.dim, batches[i], clock_ns, ns[i], &steps[i],
                             err, sizeof err);
        }
    }
    if (rc) {
        fprintf(stderr, "anodm bench-score: %s\n", err);
    } else {
        stage_flops(&d, steps[0], flops);
        printf("anodm bench-score: %s, %zu samples per batch size, blas kernel %s, "
               "sgemm on one thread %.1f GFLOP/s\n", argv[optind], n, blas_kernel_name(), gflops);
        printf("CPU time per sample, microseconds (thread CPU time; one thread, the scorer "
               "as the daemon runs it; less %.2f us a clock read)\n%-20s", clock_ns / 1e3,
               "stage");
        for (int i = 0; i < n_batches; i++) printf("  %8s%-4d", "B=", batches[i]);
        printf("  %9s  %8s  %s\n", "floor", "B=1/floor", "FLOPs");
        double total[MAX_BATCHES] = {0};
        for (int st = 0; st < ST_N; st++) {
            printf("%-20s", STAGE_NAME[st]);
            for (int i = 0; i < n_batches; i++) {
                printf("  %12.2f", ns[i][st] / 1e3);
                if (st != ST_SEARCH && st != ST_CALIBRATE && st != ST_ITERATE) total[i] += ns[i][st];
            }
            if (flops[st] > 0 && gflops > 0) {
                double floor_ns = flops[st] / gflops;
                printf("  %9.2f  %8.1fx  %.3g\n", floor_ns / 1e3, ns[0][st] / floor_ns, flops[st]);
            } else {
                printf("  %9s  %9s  %s\n", "-", "-", "-");
            }
        }
        printf("%-20s", "total");
        for (int i = 0; i < n_batches; i++) printf("  %12.2f", total[i] / 1e3);
        printf("\n");
        if (d.mode == PLACE_SINGLE)
            printf("placement's gradient steps per sample: %.1f (of at most %d; tol %g), "
                   "the iterations' floor counts these\n", steps[0], d.place.n_iter, d.place.tol);
    }
    dataset_free(&data);
    detector_free(&d);
    return rc ? 1 : 0;
}
