/* adam.h — the Adam optimiser over one contiguous parameter block.
 *
 * Parameters, gradients and both moment estimates are flat arrays of the same length, so
 * one loop updates a whole model. Semantics match torch.optim.Adam (bias-corrected
 * moments, eps added after the square root, L2 weight decay added to the gradient). */
#ifndef ANODM_ADAM_H
#define ANODM_ADAM_H

#include <stddef.h>

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
    long step;                 /* steps taken so far */
    size_t n;                  /* parameters */
    float *m, *v;              /* first and second moments, owned */
} adam_state;

/* Zeroed moments for n parameters, PyTorch defaults but lr; 0 or -1 if out of memory. */
int adam_init(adam_state *s, size_t n, float lr);
/* One step: params -= lr * m_hat / (sqrt(v_hat) + eps). */
void adam_step(adam_state *s, float *params, const float *grads);
/* The same step split across threads: adam_begin_step once, then adam_update over
 * disjoint ranges [lo, hi) that together cover all parameters. */
void adam_begin_step(adam_state *s);
void adam_update(const adam_state *s, float *params, const float *grads, size_t lo, size_t hi);
void adam_free(adam_state *s);

#endif
