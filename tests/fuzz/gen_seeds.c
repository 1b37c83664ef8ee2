/* gen_seeds.c — writes the seed files that must be made by anodm's own writers:
 * tiny bundles (both scoring modes) for fuzz_bundle and a tiny weights file for
 * fuzz_weights, from the detector of fuzz_model.c. Usage: gen_seeds CORPUS_DIR
 * (tests/fuzz/corpus; `make fuzz-seeds` runs it). The outputs are committed, so this
 * is only needed when a format changes. */
#include <stdio.h>
#include <sys/stat.h>

#include "bundle.h"
#include "fuzz_model.h"
#include "weights.h"

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
    return 0;
}
