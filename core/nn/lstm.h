/* lstm.h — a single-layer LSTM over batch-first sequences, forward and BPTT backward.
 *
 * Semantics and layouts are PyTorch's nn.LSTM(In, H, batch_first=True), one layer, one
 * direction, zero initial state, so weights and fixtures move between the two unchanged:
 *   gates = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh, split as (i, f, g, o);
 *   i, f, o = sigmoid; g = tanh; c_t = f*c_{t-1} + i*g; h_t = o * tanh(c_t).
 * W_ih [4H, In], W_hh [4H, H], b_ih [4H], b_hh [4H]; input x [B, T, In]; output all hidden
 * states h [B, T, H] (h[:, T-1] is the final state, what an encoder usually reads).
 *
 * The input projection of all B*T steps is one sgemm; the recurrence is one [B, H] x
 * [H, 4H] sgemm per step. Forward leaves what backward needs (activated gates, cell
 * states and their tanh) in a cache of lstm_cache_floats() floats that the caller owns;
 * backward also uses the cache as its scratch, so it must follow the forward pass that
 * filled it (it may be run again on the same cache). Backward ADDS into every gradient
 * buffer (the caller zeroes them once per step); any of them may be NULL. */
#ifndef ANODM_LSTM_H
#define ANODM_LSTM_H

#include <stddef.h>

/* Floats of cache one forward/backward pair needs for batch B, length T, hidden H. */
size_t lstm_cache_floats(int B, int T, int H);
/* out[B, T, H] = all hidden states of the LSTM on x[B, T, In]; biases may be NULL. */
void lstm_forward(float *out, float *cache, const float *x, const float *w_ih,
                  const float *w_hh, const float *b_ih, const float *b_hh, int B, int T,
                  int In, int H);
/* BPTT from dout[B, T, H] (gradient w.r.t. every hidden state): accumulate dx[B, T, In],
 * dw_ih, dw_hh, db_ih, db_hh (each may be NULL). out and cache are the forward's. */
void lstm_backward(float *dx, float *dw_ih, float *dw_hh, float *db_ih, float *db_hh,
                   const float *dout, const float *x, const float *out, const float *w_ih,
                   const float *w_hh, float *cache, int B, int T, int In, int H);

#endif
