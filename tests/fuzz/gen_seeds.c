/* gen_seeds.c — writes the seed files that must be made by anodm's own writers:
 * tiny bundles (both scoring modes) for fuzz_bundle and a tiny weights file for
 * fuzz_weights, from the detector of fuzz_model.c, and snapshots of a small stream memory
 * (filling, and with both parts full) for fuzz_memstate. Usage: gen_seeds CORPUS_DIR
 * (tests/fuzz/corpus; `make fuzz-seeds` runs it). The outputs are committed, so this
 * is only needed when a format changes. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "bundle.h"
#include "fuzz_model.h"
#include "memstate.h"
#include "weights.h"

/* Snapshots of a memory of 8 slots of 3 values after 5 and after 20 latents. */
static int memstate_seeds(const char *dir) {
    char path[4096], err[256];
    memory_options o;
    memory_options_default(&o);
    o.capacity = 8;
    o.k = o.k_min = 2;
    stream_memory *m = memory_create(3, &o, err, sizeof err);
    if (!m) return -1;
    snprintf(path, sizeof path, "%s/memstate", dir);
    mkdir(path, 0755);
    int rc = 0;
    for (int i = 0; rc == 0 && i < 20; i++) {
        float x[3] = {(float)i, (float)(i % 3), -0.5f * (float)i};
        memory_probe p;
        memory_probe_of(m, x, &p);
        memory_keep(m, x, (double)(i % 7), &p);
        if (i != 4 && i != 19) continue;
        memory_state st;
        size_t len;
        uint8_t *buf = memory_export(m, &st) ? NULL : memstate_encode(&st, &len);
        memory_state_free(&st);
        snprintf(path, sizeof path, "%s/memstate/memory_%d.mem", dir, i + 1);
        rc = buf ? bundle_write_file(path, buf, len, err, sizeof err) : -1;
        free(buf);
    }
    memory_free(m);
    return rc;
}

int main(int argc, char **argv) {
    char path[4096], err[512];
    if (argc != 2) {
        fprintf(stderr, "usage: gen_seeds CORPUS_DIR\n");
        return 2;
    }
    static const struct { place_mode mode; const char *name; } bundles[] = {
        {PLACE_SINGLE, "tiny_single.anodm"}, {PLACE_CONTEXT, "tiny_context.anodm"}};
    for (size_t i = 0; i < sizeof bundles / sizeof bundles[0]; i++) {
        detector d;
        snprintf(path, sizeof path, "%s/bundle", argv[1]);
        mkdir(path, 0755);
        snprintf(path, sizeof path, "%s/bundle/%s", argv[1], bundles[i].name);
        if (fuzz_model_make(&d, bundles[i].mode, err, sizeof err) != 0 ||
            bundle_save(path, &d, err, sizeof err) != 0) {
            fprintf(stderr, "gen_seeds: %s: %s\n", path, err);
            return 1;
        }
        if (i == 0) {
            snprintf(path, sizeof path, "%s/weights", argv[1]);
            mkdir(path, 0755);
            snprintf(path, sizeof path, "%s/weights/tiny.w", argv[1]);
            if (weights_save(path, &d.vae, err, sizeof err) != 0) {
                fprintf(stderr, "gen_seeds: %s: %s\n", path, err);
                return 1;
            }
        }
        detector_free(&d);
    }
    if (memstate_seeds(argv[1]) != 0) {
        fprintf(stderr, "gen_seeds: the memory snapshots could not be written\n");
        return 1;
    }
    return 0;
}
