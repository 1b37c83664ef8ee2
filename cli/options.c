/* The command-line options several anodm commands share, in one table (Redis's
 * config.c is the model): each option's name, what it takes, its bounds and the setting
 * it writes. The bounds are the library's own limits (PAR_MAX_THREADS, the perplexity
 * range of core/map/tsne.h, ...), so an option is refused by the rule of the code that uses
 * it, with its name, as soon as it is read. Rules between options (a perplexity against
 * --n-ref, k against --n-ref) and against the data belong to the library's validators
 * (build_opts_check, train_opts_check), which each command runs after parsing and before
 * any work. Defaults are not in the table either: they are the library's
 * (build_opts_default), and --help prints the values a command starts from. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef enum { T_INT, T_U64, T_FLOAT, T_DOUBLE } value_type;

typedef struct {
    const char *name, *arg, *help;
    value_type type;
    size_t at;                   /* the setting: offset in cli_settings */
    ptrdiff_t also;              /* a second setting given the same value, or -1 */
    long long imin, imax;        /* integers: inclusive bounds */
    double rmin, rmax;           /* reals: bounds, excluded when open */
    int open_min, open_max;
    const char *zero;            /* what a value of 0 stands for in --help, if anything */
    void (*then)(cli_settings *); /* a rule of this option on another setting, or NULL */
} cli_option;

/* A smaller largest rank takes the smallest down with it (the default 3 would refuse
 * --memory-k 1 or 2); --memory-k-min given after it still sets its own. */
static void memory_k_lowers_k_min(cli_settings *s) {
    memory_options *m = &s->build.memory;
    if (m->k_min > m->k) m->k_min = m->k;
}

#define AT(field) offsetof(cli_settings, field)
#define INTEGER(field, lo, hi) .type = T_INT, .at = AT(field), .also = -1, .imin = lo, .imax = hi
#define REAL(t, field, lo, hi) .type = t, .at = AT(field), .also = -1, .rmin = lo, .rmax = hi

static const cli_option OPTIONS[CLI_N_OPTIONS] = {
    [CLI_THREADS] = {"threads", "N", "training threads", INTEGER(build.train.threads, 1,
                     PAR_MAX_THREADS), .zero = "one per core"},
    [CLI_SEED] = {"seed", "N", "everything random derives from it", .type = T_U64,
                  .at = AT(build.train.seed), .also = -1, .imin = 1, .imax = LLONG_MAX},
    [CLI_EPOCHS] = {"epochs", "N", "passes over the training data",
                    INTEGER(build.train.epochs, 1, INT_MAX)},
    [CLI_BATCH] = {"batch", "N", "samples per training step",
                   INTEGER(build.train.batch, 1, INT_MAX)},
    [CLI_LR] = {"lr", "X", "Adam learning rate", REAL(T_FLOAT, build.train.lr, 0, INFINITY),
                .open_min = 1},
    [CLI_BETA] = {"beta", "B", "KL weight", REAL(T_FLOAT, build.train.beta, 0, INFINITY)},
    [CLI_CAPACITY] = {"capacity", "C", "target KL in |KL - C|",
                      REAL(T_FLOAT, build.train.capacity, 0, INFINITY)},
    [CLI_CAPACITY_RAMP] = {"capacity-ramp", "E", "epochs over which C ramps up from 0",
                           REAL(T_FLOAT, build.train.capacity_ramp_epochs, 0, INFINITY)},
    [CLI_LATENT] = {"latent", "N", "latent size", INTEGER(latent, 1, VAE_MAX_LATENT)},
    [CLI_N_REF] = {"n-ref", "N", "reference points on the map",
                   INTEGER(build.n_ref, 1, DETECTOR_MAX_REF)},
    [CLI_PERPLEXITY] = {"perplexity", "P", "t-SNE perplexity of the map and of placement",
                        .type = T_DOUBLE, .at = AT(build.tsne.perplexity),
                        .also = AT(build.place.perplexity), .rmin = TSNE_MIN_PERPLEXITY,
                        .rmax = TSNE_MAX_PERPLEXITY},
    [CLI_TSNE_ITER] = {"tsne-iter", "N", "t-SNE iterations of the map",
                       INTEGER(build.tsne.n_iter, 0, INT_MAX)},
    [CLI_CAL_FRAC] = {"cal-frac", "F", "share of the normals held out for calibration",
                      REAL(T_DOUBLE, build.cal_frac, 0, 1), .open_min = 1, .open_max = 1},
    [CLI_QUANTILE] = {"quantile", "Q", "threshold quantile on calibration normals",
                      REAL(T_DOUBLE, build.quantile, 0, 1), .open_min = 1, .open_max = 1},
    [CLI_WINDOW] = {"window", "N", "context mode: recent samples kept",
                    INTEGER(build.window, 1, DETECTOR_MAX_WINDOW)},
    [CLI_K] = {"k", "N", "D_MAP neighbours", INTEGER(build.k, 1, DETECTOR_MAX_REF)},
    [CLI_ALPHA] = {"alpha", "A", "weight of the reconstruction term in the fused score",
                   REAL(T_DOUBLE, build.alpha, 0, 1)},
    [CLI_MEMORY_SIZE] = {"memory-size", "N", "stream memory: latents kept",
                         INTEGER(build.memory.capacity, 1, MEMORY_MAX_CAPACITY)},
    [CLI_MEMORY_K] = {"memory-k", "K", "stream memory: the term's largest neighbour rank",
                      INTEGER(build.memory.k, 1, MEMORY_MAX_K), .then = memory_k_lowers_k_min},
    [CLI_MEMORY_K_MIN] = {"memory-k-min", "K", "stream memory: the term's smallest neighbour rank",
                          INTEGER(build.memory.k_min, 1, MEMORY_MAX_K)},
    [CLI_MEMORY_HORIZON] = {"memory-horizon", "N",
                            "stream memory: samples over which a kept suspicion decays by 1",
                            REAL(T_DOUBLE, build.memory.horizon, 0, INFINITY), .zero = "never"},
    [CLI_MEMORY_RECENT] = {"memory-recent", "F", "stream memory: share kept for the latest",
                           REAL(T_DOUBLE, build.memory.recent_share, 0, 1), .open_min = 1},
};

void cli_settings_default(cli_settings *s) {
    build_opts_default(&s->build);
    s->latent = 16;
}

void cli_getopt_table(struct option *out, const struct option *own, size_t n_own,
                      const cli_option_id *ids, size_t n_ids) {
    memcpy(out, own, n_own * sizeof *out);
    for (size_t i = 0; i < n_ids; i++)
        out[n_own + i] = (struct option){OPTIONS[ids[i]].name, required_argument, 0,
                                         CLI_OPTION_VAL + (int)ids[i]};
    out[n_own + n_ids] = (struct option){0, 0, 0, 0};
}

/* "[1, 100]", "(0, 1)", "[0, inf)": a real option's bounds. */
static void interval(const cli_option *o, char *buf, size_t len) {
    char hi[32] = "inf";
    if (isfinite(o->rmax)) snprintf(hi, sizeof hi, "%g", o->rmax);
    snprintf(buf, len, "%c%g, %s%c", o->open_min ? '(' : '[', o->rmin, hi,
             o->open_max || !isfinite(o->rmax) ? ')' : ']');
}

int cli_option_parse(cli_option_id id, const char *s, cli_value *v) {
    const cli_option *o = &OPTIONS[id];
    char *end;
    errno = 0;
    if (o->type == T_INT || o->type == T_U64) {
        long long x = strtoll(s, &end, 10);
        if (end != s && !*end && !errno && x >= o->imin && x <= o->imax) {
            v->i = x;
            return 0;
        }
        fprintf(stderr, "anodm: --%s wants an integer from %lld to %lld, not '%s'\n", o->name,
                o->imin, o->imax, s);
        return -1;
    }
    double x = strtod(s, &end);
    if (end != s && !*end && !errno && isfinite(x) && (o->open_min ? x > o->rmin : x >= o->rmin) &&
        (o->open_max ? x < o->rmax : x <= o->rmax)) {
        v->r = x;
        return 0;
    }
    char in[64];
    interval(o, in, sizeof in);
    fprintf(stderr, "anodm: --%s wants a number in %s, not '%s'\n", o->name, in, s);
    return -1;
}

static void store(cli_settings *s, const cli_option *o, size_t at, cli_value v) {
    char *p = (char *)s + at;
    switch (o->type) {
    case T_INT: *(int *)p = (int)v.i; break;
    case T_U64: *(uint64_t *)p = (uint64_t)v.i; break;
    case T_FLOAT: *(float *)p = (float)v.r; break;
    case T_DOUBLE: *(double *)p = v.r; break;
    }
}

int cli_option_set(cli_settings *s, int ch, const char *arg) {
    const cli_option *o = &OPTIONS[ch - CLI_OPTION_VAL];
    cli_value v;
    if (cli_option_parse((cli_option_id)(ch - CLI_OPTION_VAL), arg, &v)) return -1;
    store(s, o, o->at, v);
    if (o->also >= 0) store(s, o, (size_t)o->also, v);
    if (o->then) o->then(s);
    return 0;
}

void cli_option_usage(FILE *f, const cli_option_id *ids, size_t n, const cli_settings *s) {
    for (size_t i = 0; i < n; i++) {
        const cli_option *o = &OPTIONS[ids[i]];
        const char *p = (const char *)s + o->at;
        char flag[40], now[64];
        snprintf(flag, sizeof flag, "--%s %s", o->name, o->arg);
        switch (o->type) {
        case T_INT: snprintf(now, sizeof now, "%d", *(const int *)p); break;
        case T_U64:
            snprintf(now, sizeof now, "%llu", (unsigned long long)*(const uint64_t *)p);
            break;
        case T_FLOAT: snprintf(now, sizeof now, "%g", *(const float *)p); break;
        case T_DOUBLE: snprintf(now, sizeof now, "%g", *(const double *)p); break;
        }
        if (o->zero && !strcmp(now, "0")) snprintf(now, sizeof now, "%s", o->zero);
        fprintf(f, "  %-20s %s (%s)\n", flag, o->help, now);
    }
}
