/* fuzz_net.c — net_parse (core/nn/net.c), the architecture DSL.
 *
 * Specs arrive inside bundles and weights files, with the input shape next to them, so
 * both are hostile: any token, any numbers, any int for C, H and W. Input: a first line
 * "C,H,W" (decimal ints, clamped to the int range), then the spec text. A spec that
 * parses must then be safe to run: when it is small (at most 2^16 parameters and 2^14
 * activation floats per sample), the net is initialised and run forward in eval mode
 * and forward plus backward in train mode on two samples, so a shape the parser got
 * wrong shows up as an out-of-bounds access in the layer code, under ASan. */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net.h"

enum { BATCH = 2 };

static int clamp_int(const char *s, char **end) {
    long long v = strtoll(s, end, 10);
    return v < INT_MIN ? INT_MIN : v > INT_MAX ? INT_MAX : (int)v;
}

static float *alloc_floats(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

static void run(const net_def *n) {
    if (n->n_params > (1u << 16) || n->act_per_sample > (1u << 14) ||
        n->max_sample_act > (1u << 14))
        return;
    size_t in_n = BATCH * shape_size(n->in), out_n = BATCH * shape_size(n->out);
    float *params = alloc_floats(n->n_params), *grads = alloc_floats(n->n_params);
    float *x = alloc_floats(in_n), *dout = alloc_floats(out_n), *din = alloc_floats(in_n);
    float *acts = alloc_floats(BATCH * n->act_per_sample);
    float *aux = alloc_floats(net_aux_floats(n, BATCH));
    float *work = alloc_floats(net_work_floats(n, BATCH));
    float *dbuf = alloc_floats(2 * BATCH * n->max_sample_act);
    rng_t rng;
    if (params && grads && x && dout && din && acts && aux && work && dbuf) {
        rng_seed(&rng, 1);
        net_init_params(n, params, &rng);
        rng_fill_normal(&rng, x, in_n);
        rng_fill_normal(&rng, dout, out_n);
        net_run r = {.train = 0, .rng = &rng, .acts = acts, .aux = aux, .work = work,
                     .dbuf = dbuf};
        net_forward(n, params, x, BATCH, &r);
        r.train = 1;
        net_forward(n, params, x, BATCH, &r);
        net_backward(n, params, grads, x, dout, din, BATCH, &r);
        (void)net_macs_per_sample(n);
    }
    free(params), free(grads), free(x), free(dout), free(din);
    free(acts), free(aux), free(work), free(dbuf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    char *p = text, *end;
    shape3 in;
    in.c = clamp_int(p, &end);
    p = *end == ',' ? end + 1 : end;
    in.h = clamp_int(p, &end);
    p = *end == ',' ? end + 1 : end;
    in.w = clamp_int(p, &end);
    p = *end == '\n' ? end + 1 : end;
    net_def *n = malloc(sizeof *n);
    char err[256];
    if (n && net_parse(n, p, in, err, sizeof err) == 0) run(n);
    free(n);
    free(text);
    return 0;
}
