/* anodm inspect: what a model bundle holds, for a person or (--json) for a script.
 *
 * The file is validated exactly as the daemon loads it (bundle_parse on the bytes that
 * were hashed), so "inspect exits 0" means "anodmd will load this file, as this
 * version". The text output reads the loaded detector; the JSON output embeds the
 * file's own JSON sections as stored, so a script sees the settings the file holds
 * rather than a re-rendering of them. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "bundle.h"
#include "cli.h"
#include "le.h"

static void inspect_usage(FILE *f) {
    fprintf(f,
        "usage: anodm inspect [--json] FILE\n"
        "  FILE     a model bundle (anodm train --out)\n"
        "  --json   one JSON object instead of text\n"
        "Exit status: 0 valid bundle, 1 unreadable or invalid file, 2 usage error.\n");
}

typedef struct { float min, max; } range;

/* The extent of one coordinate of the reference map. */
static range map_extent(const detector *d, int coord) {
    range r = {d->ref_map[coord], d->ref_map[coord]};
    for (int i = 1; i < d->n_ref; i++) {
        float v = d->ref_map[2 * i + coord];
        if (v < r.min) r.min = v;
        if (v > r.max) r.max = v;
    }
    return r;
}

/* The median of the (ascending) calibration scores. */
static double cal_median(const detector *d) {
    int h = d->n_cal / 2;
    return d->n_cal % 2 ? d->cal_scores[h] : 0.5 * ((double)d->cal_scores[h - 1] + d->cal_scores[h]);
}

/* The JSON value stored in section tag (already validated by bundle_parse). */
static json_t *section_value(const bundle_section *s, int n, const char *tag) {
    for (int i = 0; i < n; i++)
        if (!strcmp(s[i].tag, tag))
            return json_loadb((const char *)s[i].data, s[i].len, JSON_DECODE_ANY, NULL);
    return NULL;
}

static int print_json(const char *path, const uint8_t *buf, size_t len, const char *hash,
                      const detector *d) {
    bundle_section s[BUNDLE_MAX_SECTIONS];
    int n;
    char err[256];
    if (bundle_sections(buf, len, s, &n, err, sizeof err) != 0) {
        fprintf(stderr, "anodm inspect: %s: %s\n", path, err);
        return 1;
    }
    json_t *sections = json_array();
    for (int i = 0; sections && i < n; i++)
        if (json_array_append_new(sections, json_pack("{s:s, s:I, s:I, s:I}", "tag", s[i].tag,
                                                      "offset", (json_int_t)s[i].offset,
                                                      "length", (json_int_t)s[i].len,
                                                      "crc32", (json_int_t)s[i].crc))) {
            json_decref(sections);
            sections = NULL;
        }
    range x = map_extent(d, 0), y = map_extent(d, 1);
    json_t *root = json_pack(
        "{s:s, s:I, s:i, s:s, s:o, s:o, s:I, s:I, s:I, s:i, s:{s:[f,f], s:[f,f]}, s:o, "
        "s:o, s:{s:f, s:f, s:f}, s:o}",
        "file", path, "bytes", (json_int_t)len, "format_version", (int)le_get32(buf + 8),
        "version", hash, "sections", sections, "arch", section_value(s, n, "arch"), "n_params",
        (json_int_t)d->vae.n_params, "n_params_encoder", (json_int_t)d->vae.enc.n_params,
        "n_params_decoder", (json_int_t)d->vae.dec.n_params, "n_ref", d->n_ref,
        "map_extent", "x", (double)x.min, (double)x.max, "y", (double)y.min, (double)y.max,
        "scoring", section_value(s, n, "scoring"), "calibration",
        section_value(s, n, "calibration"), "cal_scores", "min", (double)d->cal_scores[0],
        "median", cal_median(d), "max", (double)d->cal_scores[d->n_cal - 1], "provenance",
        section_value(s, n, "provenance"));
    char *text = root ? api_json_text(root, JSON_INDENT(2)) : NULL;
    json_decref(root);
    if (!text) {
        fprintf(stderr, "anodm inspect: out of memory\n");
        return 1;
    }
    puts(text);
    free(text);
    return 0;
}

static int print_text(const char *path, const uint8_t *buf, size_t len, const char *hash,
                      const detector *d) {
    const vae_model *m = &d->vae;
    const vae_arch *a = &m->arch;
    const tsne_place_options *o = &d->place;
    range x = map_extent(d, 0), y = map_extent(d, 1);
    printf("file          %s (%zu bytes, format version %u)\n", path, len, le_get32(buf + 8));
    printf("version       %s\n", hash);
    printf("architecture  %s: input %dx%dx%d, latent %d, recon %s\n", a->name, a->in.c,
           a->in.h, a->in.w, a->latent, a->recon == RECON_MSE ? "mse" : "bce");
    printf("  encoder     %s, then linear(%d) -> mu, logvar\n", a->enc_spec, 2 * a->latent);
    printf("  decoder     %s\n", a->dec_spec);
    printf("  scaling     %s", SCALE_NAME[d->scale.kind]);
    if (d->scale.kind != SCALE_NONE)
        printf(" per input value, fitted on the training normals (applied to every sample)");
    printf("\n");
    printf("parameters    %zu (encoder %zu, decoder %zu)\n", m->n_params, m->enc.n_params,
           m->dec.n_params);
    printf("reference     %d points; map x [%.6g, %.6g], y [%.6g, %.6g]\n", d->n_ref,
           (double)x.min, (double)x.max, (double)y.min, (double)y.max);
    printf("scoring       mode %s, window %d, k %d, alpha %g, term %s, latent input %s\n",
           d->mode == PLACE_CONTEXT ? "context" : "single", d->window, d->k, d->alpha,
           d->term == TERM_LATENT ? "latent" : "map", d->input == LATENT_Z ? "z" : "mu");
    printf("placement     perplexity %g, n_iter %d, learning_rate %g, exaggeration %g, "
           "momentum %g, max_grad %g, tol %g", o->perplexity, o->n_iter, o->learning_rate,
           o->exaggeration, o->momentum, o->max_grad, o->tol);
    if (o->tol > 0) printf(" (stops after %d steps of less)", TSNE_PLACE_STILL);
    else printf(" (off: n_iter steps)");
    printf(", exact %s\n", o->exact ? "yes" : "no");
    printf("calibration   %d normals, quantile %g, threshold %.6g\n", d->n_cal, d->quantile,
           d->threshold);
    printf("  re          center %.6g, scale %.6g\n", d->re.center, d->re.scale);
    printf("  map         center %.6g, scale %.6g\n", d->map.center, d->map.scale);
    printf("  latent      center %.6g, scale %.6g\n", d->latent.center, d->latent.scale);
    printf("  scores      min %.6g, median %.6g, max %.6g\n", (double)d->cal_scores[0],
           cal_median(d), (double)d->cal_scores[d->n_cal - 1]);
    json_t *p = json_loads(d->provenance, JSON_DECODE_ANY, NULL);
    char *text = p ? api_json_text(p, JSON_INDENT(2) | JSON_ENCODE_ANY) : NULL;
    json_decref(p);
    if (!text) {
        fprintf(stderr, "anodm inspect: out of memory\n");
        return 1;
    }
    printf("provenance\n%s\n", text);
    free(text);
    return 0;
}

int cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            inspect_usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (argv[i][0] == '-' || path) {
            fprintf(stderr, "anodm inspect: unexpected argument '%s'\n", argv[i]);
            inspect_usage(stderr);
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        inspect_usage(stderr);
        return 2;
    }
    uint8_t *buf;
    size_t len;
    char err[512], sub[512], hash[65];
    detector d;
    if (bundle_read_file(path, BUNDLE_MAX_FILE_BYTES, &buf, &len, err, sizeof err) != 0) {
        fprintf(stderr, "anodm inspect: %s\n", err);
        return 1;
    }
    if (bundle_parse(buf, len, &d, sub, sizeof sub) != 0) {
        fprintf(stderr, "anodm inspect: %s: %s\n", path, sub);
        free(buf);
        return 1;
    }
    bundle_hash(buf, len, hash);
    int rc = json ? print_json(path, buf, len, hash, &d) : print_text(path, buf, len, hash, &d);
    detector_free(&d);
    free(buf);
    return rc;
}
