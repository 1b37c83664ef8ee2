/* anodm ecg-extract and anodm ecg-rpeaks: the MIT-BIH heartbeat set from raw WFDB
 * records (core/data/ecg.h), and the R-peak detector (core/data/rpeak.h) measured against the
 * records' reference annotations. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "dataset_io.h"
#include "ecg.h"
#include "rpeak.h"
#include "wfdb.h"

#define MAX_RECORDS 10000

/* ------------------------------------------------------------------ record lists */

typedef struct {
    size_t n;
    char (*name)[WFDB_NAME_MAX];
} record_list;

static int add_record(record_list *l, const char *s, size_t len) {
    if (len == 0 || len >= WFDB_NAME_MAX || l->n == MAX_RECORDS) return -1;
    for (size_t i = 0; i < len; i++)
        if (s[i] == '/' || s[i] == ' ' || s[i] == '\t') return -1;
    memcpy(l->name[l->n], s, len);
    l->name[l->n++][len] = '\0';
    return 0;
}

/* "100,101,..." from --records, or the lines of DIR/RECORDS. */
static int load_records(record_list *l, const char *dir, const char *arg, char *err,
                        size_t errlen) {
    l->n = 0;
    l->name = malloc(MAX_RECORDS * sizeof *l->name);
    if (!l->name) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (arg) {
        for (const char *s = arg;;) {
            const char *e = strchr(s, ',');
            size_t len = e ? (size_t)(e - s) : strlen(s);
            if (add_record(l, s, len)) {
                snprintf(err, errlen, "--records wants names like 100,101,... not '%s'", arg);
                return -2;
            }
            if (!e) break;
            s = e + 1;
        }
        return 0;
    }
    char path[4096], line[256];
    snprintf(path, sizeof path, "%s/RECORDS", dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%.400s: cannot read it; name the records with --records", path);
        return -1;
    }
    while (fgets(line, sizeof line, f)) {
        size_t len = strcspn(line, "\r\n");
        if (len == 0) continue;
        if (add_record(l, line, len)) {
            snprintf(err, errlen, "%.300s: '%.*s' is not a record name", path, (int)(len > 100 ? 100 : len), line);
            fclose(f);
            return -1;
        }
    }
    fclose(f);
    if (l->n == 0) {
        snprintf(err, errlen, "%.400s lists no records", path);
        return -1;
    }
    return 0;
}

/* The record's number (MIT-BIH names are numbers), else its 1-based place in the list. */
static int32_t record_id(const char *name, size_t index) {
    char *end;
    long v = strtol(name, &end, 10);
    return *end || end == name || v < 0 || v > 1000000000 ? (int32_t)(index + 1) : (int32_t)v;
}

/* ------------------------------------------------------------------ output files */

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static uint64_t get_x(const void *ctx, size_t i) {
    const ecg_beats *b = ctx;
    uint32_t u;
    memcpy(&u, &b->x[i], sizeof u);
    return u;
}
static uint64_t get_label(const void *b, size_t i) { return (uint32_t)((const ecg_beats *)b)->label[i]; }
static uint64_t get_record(const void *b, size_t i) { return (uint32_t)((const ecg_beats *)b)->record[i]; }
static uint64_t get_sample(const void *b, size_t i) { return (uint64_t)((const ecg_beats *)b)->sample[i]; }

/* beats.npy and its sidecars beats.labels.npy, beats.records.npy, beats.samples.npy. */
static int write_npy_set(const char *path, const ecg_beats *b, char *err, size_t errlen) {
    static const struct {
        const char *suffix;
        npy_dtype dtype;
        uint64_t (*get)(const void *, size_t);
    } side[] = {{".labels.npy", NPY_I4, get_label},
                {".records.npy", NPY_I4, get_record},
                {".samples.npy", NPY_I8, get_sample}};
    char p[4096];
    size_t stem = strlen(path) - 4;
    if (dataset_write_npy(path, NPY_F4, b->n, ECG_BEAT_LEN, get_x, b, err, errlen)) return -1;
    for (size_t k = 0; k < sizeof side / sizeof side[0]; k++) {
        if (snprintf(p, sizeof p, "%.*s%s", (int)stem, path, side[k].suffix) >= (int)sizeof p) {
            snprintf(err, errlen, "%s: path too long", path);
            return -1;
        }
        if (dataset_write_npy(p, side[k].dtype, b->n, 0, side[k].get, b, err, errlen))
            return -1;
        fprintf(stderr, "wrote %s\n", p);
    }
    return 0;
}

static int write_csv(const char *path, const ecg_beats *b, char *err, size_t errlen) {
    FILE *f = fopen(path, "w");
    if (!f) {
        snprintf(err, errlen, "%s: cannot write", path);
        return -1;
    }
    fprintf(f, "record,sample,label");
    for (int j = 0; j < ECG_BEAT_LEN; j++) fprintf(f, ",x%d", j);
    fputc('\n', f);
    for (size_t i = 0; i < b->n; i++) {
        fprintf(f, "%d,%lld,%d", b->record[i], (long long)b->sample[i], b->label[i]);
        const float *x = b->x + i * ECG_BEAT_LEN;
        for (int j = 0; j < ECG_BEAT_LEN; j++) fprintf(f, ",%.6g", x[j]);
        fputc('\n', f);
    }
    if (ferror(f) | fclose(f)) {
        snprintf(err, errlen, "%s: write failed", path);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ extraction */

/* What extracting a list of records gave, over all of them. */
typedef struct {
    size_t annotated[ECG_N_CLASSES], extracted[ECG_N_CLASSES], skipped_beats[ECG_N_CLASSES];
    size_t n_skipped, dropped, clipped;
} extract_tally;

/* Appends the beats of every record in recs to beats (records without the lead are
 * skipped); t gets the counts; with verbose, one line per record on stderr. */
static int extract_records(const char *dir, const record_list *recs, const ecg_lead_choice *lead,
                           const char *annotator, int verbose, ecg_beats *beats, extract_tally *t,
                           char *err, size_t errlen) {
    memset(t, 0, sizeof *t);
    for (size_t i = 0; i < recs->n; i++) {
        wfdb_record r;
        ecg_record_stats st;
        if (wfdb_load_record(&r, dir, recs->name[i], annotator, err, errlen)) return -1;
        int32_t id = record_id(recs->name[i], i);
        int e = ecg_extract_record(&r, id, lead, beats, &st, err, errlen);
        char lead_name[WFDB_DESC_MAX] = "";
        if (e == 0) memcpy(lead_name, r.hdr.sig[st.channel].description, sizeof lead_name);
        wfdb_record_free(&r);
        if (e < 0) return -1;
        size_t got = 0, ann = 0;
        for (int c = 0; c < ECG_N_CLASSES; c++) {
            t->annotated[c] += st.annotated[c];
            ann += st.annotated[c];
            if (e == ECG_NO_LEAD) t->skipped_beats[c] += st.annotated[c];
            t->extracted[c] += st.extracted[c];
            got += st.extracted[c];
        }
        if (e == ECG_NO_LEAD) {
            t->n_skipped++;
            if (verbose)
                fprintf(stderr, "[%zu/%zu] %s: skipped, %s (%zu annotated beats left out)\n",
                        i + 1, recs->n, recs->name[i], err, ann);
            continue;
        }
        t->dropped += st.dropped_no_rr + st.dropped_flat;
        t->clipped += st.clipped;
        if (verbose)
            fprintf(stderr, "[%zu/%zu] %s: %zu beats from signal %d %s (N %zu S %zu V %zu F %zu "
                    "Q %zu)%s\n", i + 1, recs->n, recs->name[i], got, st.channel, lead_name,
                    st.extracted[0], st.extracted[1], st.extracted[2], st.extracted[3],
                    st.extracted[4], st.dropped_no_rr + st.dropped_flat ? ", some dropped" : "");
    }
    return 0;
}

/* Moves beats into the dataset form (1x1x187 samples, AAMI labels) and the record ids. */
static int beats_to_dataset(ecg_beats *b, dataset *d, int32_t **records, char *err,
                            size_t errlen) {
    if (b->n == 0) {
        snprintf(err, errlen, "no beats extracted");
        return -1;
    }
    *d = (dataset){.n = b->n, .dim = ECG_BEAT_LEN, .channels = 1, .height = 1,
                   .width = ECG_BEAT_LEN, .x = b->x, .labels = b->label};
    *records = b->record;
    b->x = NULL;
    b->label = NULL;
    b->record = NULL;
    ecg_beats_free(b);
    return 0;
}

int cli_ecg_load_dir(dataset *d, int32_t **records, const char *dir, char *err, size_t errlen) {
    const ecg_lead_choice lead = {"MLII", -1};
    record_list recs = {0};
    ecg_beats beats = {0};
    extract_tally t;
    int rc = -1;
    memset(d, 0, sizeof *d);
    *records = NULL;
    if (load_records(&recs, dir, NULL, err, errlen) == 0 &&
        extract_records(dir, &recs, &lead, "atr", 0, &beats, &t, err, errlen) == 0) {
        fprintf(stderr, "%s: %zu beats of %zu records (%zu without MLII skipped): N %zu S %zu "
                "V %zu F %zu Q %zu\n", dir, beats.n, recs.n, t.n_skipped, t.extracted[0],
                t.extracted[1], t.extracted[2], t.extracted[3], t.extracted[4]);
        rc = beats_to_dataset(&beats, d, records, err, errlen);
    }
    ecg_beats_free(&beats);
    free(recs.name);
    return rc;
}

/* A whole (small) file: the sidecar arrays of a beat set. NULL, with a message, if it
 * cannot be read. */
static uint8_t *read_small_file(const char *path, size_t max, size_t *len, char *err,
                                size_t errlen) {
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    long n = -1;
    if (!f) {
        snprintf(err, errlen, "%.400s: cannot open it", path);
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    if (n < 0 || (size_t)n > max || fseek(f, 0, SEEK_SET) != 0)
        snprintf(err, errlen, "%.400s: cannot read it, or larger than %zu bytes", path, max);
    else if (!(buf = malloc((size_t)n + 1)))
        snprintf(err, errlen, "%.400s: out of memory", path);
    else if ((*len = fread(buf, 1, (size_t)n, f)) != (size_t)n) {
        snprintf(err, errlen, "%.400s: read failed", path);
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

int cli_ecg_load_npy(dataset *d, int32_t **records, int need_records, const char *path,
                     char *err, size_t errlen) {
    char labels[4096], recs[4096];
    memset(d, 0, sizeof *d);
    *records = NULL;
    size_t stem = strlen(path) - (ends_with(path, ".npy") ? 4 : 0);
    snprintf(labels, sizeof labels, "%.*s.labels.npy", (int)stem, path);
    snprintf(recs, sizeof recs, "%.*s.records.npy", (int)stem, path);
    if (!ends_with(path, ".npy")) {
        snprintf(err, errlen, "%.400s: a beat set is FILE.npy with FILE.labels.npy beside it "
                 "(anodm ecg-extract --out FILE.npy)", path);
        return -1;
    }
    if (dataset_load_npy(d, path, labels, err, errlen) != 0) return -1;
    if (d->dim != ECG_BEAT_LEN) {
        snprintf(err, errlen, "%.400s: beats of %zu values; a heartbeat has %d", path, d->dim,
                 ECG_BEAT_LEN);
        goto fail;
    }
    for (size_t i = 0; i < d->n; i++)
        if (d->labels[i] < 0 || d->labels[i] >= ECG_N_CLASSES) {
            snprintf(err, errlen, "%.400s: beat %zu has label %d, not an AAMI class 0..%d "
                     "(N S V F Q)", labels, i, (int)d->labels[i], ECG_N_CLASSES - 1);
            goto fail;
        }
    size_t len = 0, n = 0;
    if (!need_records && access(recs, F_OK) != 0) return 0;
    uint8_t *buf = read_small_file(recs, (size_t)1 << 30, &len, err, errlen);
    if (!buf) goto fail;
    int e = dataset_parse_npy_labels(records, &n, buf, len, err, errlen);
    free(buf);
    if (e != 0 || n != d->n) {
        if (e == 0)
            snprintf(err, errlen, "%.400s: %zu record ids for %zu beats", recs, n, d->n);
        else {
            char sub[256];
            snprintf(sub, sizeof sub, "%s", err);
            snprintf(err, errlen, "%.400s: %s", recs, sub);
        }
        goto fail;
    }
    return 0;
fail:
    free(*records);
    *records = NULL;
    dataset_free(d);
    return -1;
}

/* ------------------------------------------------------------------ ecg-extract */

static void extract_usage(FILE *f) {
    fprintf(f,
        "usage: anodm ecg-extract --data DIR --out FILE [options]\n"
        "Cuts the MIT-BIH heartbeat set (Kachuee et al. 2018) out of raw WFDB records: one\n"
        "lead, resampled to 125 Hz, 10 s windows scaled to [0,1], one beat per annotated\n"
        "R peak over 1.2 x the window's median RR interval, zero-padded to 187 samples,\n"
        "labelled by the AAMI classes 0..4 = N S V F Q.\n"
        "  --data DIR          directory of NNN.hea/.dat/.atr records\n"
        "  --records LIST      records to read, e.g. 100,101 (default: DIR/RECORDS)\n"
        "  --lead NAME         signal to use, by its header description (MLII); records\n"
        "                      without it are skipped, with a message\n"
        "  --channel N         use signal N of every record whatever its lead (the Kaggle\n"
        "                      set used channel 0, so also V5 for 102, 104 and 114)\n"
        "  --annotator NAME    annotation file suffix (atr)\n"
        "  --out FILE          FILE.csv or FILE.npy\n"
        "Layout, one row per beat, in record order then time order:\n"
        "  .csv  a header line, then: record,sample,label,x0,...,x186\n"
        "        record = record number, sample = R peak in samples at the record's own\n"
        "        rate (360 Hz), label = AAMI class, x = the beat (%%.6g)\n"
        "  .npy  FILE.npy float32 (n, 187) beats; FILE.labels.npy int32 (n,) labels;\n"
        "        FILE.records.npy int32 (n,) record numbers; FILE.samples.npy int64 (n,)\n"
        "        R peaks. anodm train --data FILE.npy --labels FILE.labels.npy reads it.\n");
}

int cmd_ecg_extract(int argc, char **argv) {
    static const struct option opts[] = {
        {"data", required_argument, 0, 'd'}, {"records", required_argument, 0, 'r'},
        {"lead", required_argument, 0, 'l'}, {"channel", required_argument, 0, 'c'},
        {"annotator", required_argument, 0, 'a'}, {"out", required_argument, 0, 'o'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *dir = NULL, *records_arg = NULL, *out_path = NULL, *annotator = "atr";
    ecg_lead_choice lead = {"MLII", -1};
    long long v;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'd': dir = optarg; break;
        case 'r': records_arg = optarg; break;
        case 'l': lead.lead = optarg; break;
        case 'c':
            if (cli_int("--channel", optarg, 0, WFDB_MAX_SIGNALS - 1, &v)) return 2;
            lead.channel = (int)v;
            break;
        case 'a': annotator = optarg; break;
        case 'o': out_path = optarg; break;
        case 'h': extract_usage(stdout); return 0;
        default: extract_usage(stderr); return 2;
        }
    }
    if (optind != argc || !dir || !out_path) {
        fprintf(stderr, "anodm ecg-extract: %s\n", optind != argc ? "unexpected argument"
                                                                 : "--data and --out are required");
        extract_usage(stderr);
        return 2;
    }
    int npy = ends_with(out_path, ".npy");
    if (!npy && !ends_with(out_path, ".csv")) {
        fprintf(stderr, "anodm ecg-extract: --out must end in .csv or .npy\n");
        return 2;
    }
    char err[512];
    record_list recs = {0};
    ecg_beats beats = {0};
    extract_tally t;
    int rc = 1, lr = load_records(&recs, dir, records_arg, err, sizeof err);
    if (lr) {
        fprintf(stderr, "anodm ecg-extract: %s\n", err);
        free(recs.name);
        return lr == -2 ? 2 : 1;
    }
    double t0 = clock_seconds();
    if (extract_records(dir, &recs, &lead, annotator, 1, &beats, &t, err, sizeof err)) goto fail;
    fprintf(stderr, "\n%zu records (%zu skipped), %zu beats in %.1f s\n", recs.n, t.n_skipped,
            beats.n, clock_seconds() - t0);
    fprintf(stderr, "class  annotated  in skipped records  extracted\n");
    for (int c = 0; c < ECG_N_CLASSES; c++)
        fprintf(stderr, "%-5s  %9zu  %18zu  %9zu\n", ecg_class_name(c), t.annotated[c],
                t.skipped_beats[c], t.extracted[c]);
    fprintf(stderr, "beats dropped (no RR interval or flat window): %zu; beats with a value "
            "clipped past their window: %zu\n", t.dropped, t.clipped);
    if (beats.n == 0) {
        snprintf(err, sizeof err, "no beats extracted");
        goto fail;
    }
    if (npy ? write_npy_set(out_path, &beats, err, sizeof err)
            : write_csv(out_path, &beats, err, sizeof err))
        goto fail;
    fprintf(stderr, "wrote %s\n", out_path);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "anodm ecg-extract: %s\n", err);
done:
    ecg_beats_free(&beats);
    free(recs.name);
    return rc;
}

/* ------------------------------------------------------------------ ecg-rpeaks */

static void rpeaks_usage(FILE *f) {
    fprintf(f,
        "usage: anodm ecg-rpeaks --data DIR [options]\n"
        "Runs the R-peak detector (Pan-Tompkins style, core/data/rpeak.h) on each record and\n"
        "compares it with the record's beat annotations: a detection within the tolerance\n"
        "of a beat is a true positive (each beat matched once); ventricular flutter\n"
        "episodes ([ to ]) are left out. Prints per record and in total the sensitivity\n"
        "Se = TP/(TP+FN) and positive predictivity +P = TP/(TP+FP).\n"
        "  --data DIR          directory of NNN.hea/.dat/.atr records\n"
        "  --records LIST      records to read, e.g. 100,101 (default: DIR/RECORDS)\n"
        "  --lead NAME         signal to use (MLII); channel 0 where a record lacks it\n"
        "  --channel N         signal N of every record\n"
        "  --strip SECONDS     detect on consecutive strips of this length, as a device\n"
        "                      would send them (default 0: the whole record at once)\n"
        "  --tolerance MS      matching window either side of a beat (150)\n"
        "  --annotator NAME    annotation file suffix (atr)\n");
}

int cmd_ecg_rpeaks(int argc, char **argv) {
    static const struct option opts[] = {
        {"data", required_argument, 0, 'd'}, {"records", required_argument, 0, 'r'},
        {"lead", required_argument, 0, 'l'}, {"channel", required_argument, 0, 'c'},
        {"strip", required_argument, 0, 's'}, {"tolerance", required_argument, 0, 't'},
        {"annotator", required_argument, 0, 'a'}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *dir = NULL, *records_arg = NULL, *lead = "MLII", *annotator = "atr";
    int channel = -1, ch;
    double strip = 0, tol_ms = 150;
    long long v;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'd': dir = optarg; break;
        case 'r': records_arg = optarg; break;
        case 'l': lead = optarg; break;
        case 'c':
            if (cli_int("--channel", optarg, 0, WFDB_MAX_SIGNALS - 1, &v)) return 2;
            channel = (int)v;
            break;
        case 's':
            if (cli_real("--strip", optarg, 0, 86400, &strip)) return 2;
            if (strip > 0 && strip < RPEAK_MIN_SECONDS) {
                fprintf(stderr, "anodm ecg-rpeaks: --strip is 0 or at least %g s\n",
                        RPEAK_MIN_SECONDS);
                return 2;
            }
            break;
        case 't': if (cli_real("--tolerance", optarg, 1, 500, &tol_ms)) return 2; break;
        case 'a': annotator = optarg; break;
        case 'h': rpeaks_usage(stdout); return 0;
        default: rpeaks_usage(stderr); return 2;
        }
    }
    if (optind != argc || !dir) {
        fprintf(stderr, "anodm ecg-rpeaks: %s\n", optind != argc ? "unexpected argument"
                                                                : "--data is required");
        rpeaks_usage(stderr);
        return 2;
    }
    char err[512];
    record_list recs = {0};
    rpeak_match total = {0};
    int lr = load_records(&recs, dir, records_arg, err, sizeof err);
    if (lr) {
        fprintf(stderr, "anodm ecg-rpeaks: %s\n", err);
        free(recs.name);
        return lr == -2 ? 2 : 1;
    }
    double t0 = clock_seconds();
    printf("record  lead    beats     TP    FN    FP      Se%%     +P%%\n");
    for (size_t i = 0; i < recs.n; i++) {
        wfdb_record r;
        rpeak_match m = {0};
        if (wfdb_load_record(&r, dir, recs.name[i], annotator, err, sizeof err)) goto fail;
        int c = channel >= 0 ? channel : wfdb_find_signal(&r.hdr, lead);
        if (c < 0) c = 0;
        if (c >= r.hdr.nsig) {
            snprintf(err, sizeof err, "record %s has no signal %d", recs.name[i], c);
            wfdb_record_free(&r);
            goto fail;
        }
        int e = rpeak_evaluate_record(&r, c, strip, tol_ms / 1000, &m, err, sizeof err);
        if (e == 0)
            printf("%-7s %-6s %6zu %6zu %5zu %5zu  %6.2f  %6.2f\n", recs.name[i],
                   r.hdr.sig[c].description, m.tp + m.fn, m.tp, m.fn, m.fp,
                   rpeak_sensitivity(&m), rpeak_predictivity(&m));
        wfdb_record_free(&r);
        if (e) goto fail;
        fflush(stdout);
        total.tp += m.tp;
        total.fn += m.fn;
        total.fp += m.fp;
    }
    printf("total          %6zu %6zu %5zu %5zu  %6.2f  %6.2f\n", total.tp + total.fn, total.tp,
           total.fn, total.fp, rpeak_sensitivity(&total), rpeak_predictivity(&total));
    fprintf(stderr, "%zu records in %.1f s (tolerance %g ms, %s)\n", recs.n, clock_seconds() - t0,
            tol_ms, strip > 0 ? "strips" : "whole records");
    free(recs.name);
    return 0;
fail:
    fprintf(stderr, "anodm ecg-rpeaks: %s\n", err);
    free(recs.name);
    return 1;
}
