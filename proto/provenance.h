/* provenance.h — the bundle's "provenance" section: where a model came from.
 *
 * An operator looking at a model in production must be able to tell what data, which
 * settings and which code made it, and how well it trained, without the training
 * machine: this is that record, as JSON (the loader stores it verbatim). */
#ifndef ANODM_PROVENANCE_H
#define ANODM_PROVENANCE_H

#include <stdint.h>

#include "pipeline.h"

typedef struct {
    const char *data_path;
    char data_sha256[65];        /* of the training samples file ("" if not hashed) */
    const int32_t *excluded;     /* anomaly classes left out of training */
    int n_excluded;
    const char *arch;            /* preset name */
    int latent;
    const build_opts *opts;
    const build_report *report;
    double loss, recon, kl;      /* the last epoch's means */
    double test_auroc_re;        /* NAN when not measured */
    double test_auroc_fused;     /* NAN when not measured */
} provenance_info;

/* The JSON text (malloc'd; NULL if out of memory). */
char *provenance_json(const provenance_info *p);
/* SHA-256 of a file's bytes as hex into out; 0, or -1 if unreadable. */
int provenance_file_sha256(const char *path, char out[65]);

#endif
