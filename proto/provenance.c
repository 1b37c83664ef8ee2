/* The provenance record of a bundle, as JSON. */
#include "provenance.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "api.h"
#include "sha256.h"

int provenance_file_sha256(const char *path, char out[65]) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    sha256_ctx c;
    uint8_t buf[65536], digest[SHA256_DIGEST];
    size_t n;
    sha256_init(&c);
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) sha256_update(&c, buf, n);
    int ok = !ferror(f);
    fclose(f);
    if (!ok) return -1;
    sha256_final(&c, digest);
    sha256_hex(digest, out);
    return 0;
}

char *provenance_json(const provenance_info *p) {
    const build_opts *o = p->opts;
    const build_report *r = p->report;
    char when[32];
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    json_t *classes = json_array();
    for (int i = 0; classes && i < p->n_excluded; i++)
        json_array_append_new(classes, json_integer(p->excluded[i]));
    json_t *root = json_pack(
        "{s:s, s:s, s:{s:s, s:s, s:o, s:I, s:I}, s:{s:s, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:I, s:i, s:f},"
        " s:{s:i, s:f, s:i, s:o, s:f}, s:{s:f, s:i, s:f}, s:{s:o, s:o, s:o, s:o, s:o}}",
        "anodm_version", ANODM_VERSION, "created", when,
        "data", "path", p->data_path ? p->data_path : "", "sha256", p->data_sha256,
        "excluded_classes", classes ? classes : json_null(), "n_train", (json_int_t)r->n_train,
        "n_calibration", (json_int_t)r->n_cal,
        "training", "arch", p->arch, "latent", p->latent, "epochs", o->train.epochs, "batch", o->train.batch,
        "lr", (double)o->train.lr, "beta", (double)o->train.beta, "capacity",
        (double)o->train.capacity, "capacity_ramp_epochs", (double)o->train.capacity_ramp_epochs,
        "seed", (json_int_t)o->train.seed, "threads", o->train.threads, "seconds", r->train_seconds,
        "map", "n_ref", o->n_ref, "perplexity", o->tsne.perplexity, "iterations", o->tsne.n_iter,
        "kl", api_json_number(r->map_kl), "seconds", r->map_seconds,
        "calibration", "fraction", o->cal_frac, "batch", o->cal_batch, "seconds", r->cal_seconds,
        "metrics", "loss", api_json_number(p->loss), "recon", api_json_number(p->recon), "kl",
        api_json_number(p->kl), "test_auroc_recon_only", api_json_number(p->test_auroc_re),
        "test_auroc_fused", api_json_number(p->test_auroc_fused));
    if (!root) return NULL;
    char *text = api_json_text(root, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(root);
    return text;
}
