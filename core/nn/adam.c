/* Adam (Kingma & Ba), as torch.optim.Adam computes it. */
#include "adam.h"
#include "simd.h"

#include <math.h>
#include <stdlib.h>

int adam_init(adam_state *s, size_t n, float lr) {
    *s = (adam_state){.lr = lr, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .n = n};
    s->m = calloc(n ? n : 1, sizeof(float));
    s->v = calloc(n ? n : 1, sizeof(float));
    if (!s->m || !s->v) {
        adam_free(s);
        return -1;
    }
    return 0;
}

void adam_begin_step(adam_state *s) { s->step++; }

HOT_LOOP void adam_update(const adam_state *s, float *params, const float *grads, size_t lo, size_t hi) {
    const float b1 = s->beta1, b2 = s->beta2;
    const float c1 = 1.0f - powf(b1, (float)s->step);
    const float c2 = 1.0f - powf(b2, (float)s->step);
    const float step_size = s->lr / c1, c2_sqrt = sqrtf(c2);
    for (size_t i = lo; i < hi; i++) {
        float g = grads[i] + s->weight_decay * params[i];
        s->m[i] = b1 * s->m[i] + (1.0f - b1) * g;
        s->v[i] = b2 * s->v[i] + (1.0f - b2) * g * g;
        params[i] -= step_size * s->m[i] / (sqrtf(s->v[i]) / c2_sqrt + s->eps);
    }
}

void adam_step(adam_state *s, float *params, const float *grads) {
    adam_begin_step(s);
    adam_update(s, params, grads, 0, s->n);
}

void adam_free(adam_state *s) {
    free(s->m);
    free(s->v);
    s->m = s->v = NULL;
}
