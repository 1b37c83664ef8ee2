/* FFT-accelerated grid interpolation of the t-SNE repulsion (see tsne_internal.h).
 *
 * Four charges (1, y_x, y_y, |y|^2) convolved with the one kernel K2 = 1/(1+r^2)^2
 * give everything: the repulsion q*phi_1 - phi_y and, because K1 = (1 + r^2) K2,
 * sum_j K1(q - y_j) = (1+|q|^2) phi_1 - 2 q.phi_y + phi_|y|^2. The interpolation error
 * of that combination is the kernel's own error times (1 + r^2), so no cancellation is
 * amplified by the map's extent.
 *
 * Grid: n_boxes boxes per dimension, p Lagrange nodes per box at (t + 0.5) h, h the node
 * spacing; the FFT size L is the power of two >= 2m (m = p * n_boxes nodes), and the
 * box count is then raised to fill L, which buys accuracy for free. Two real charges
 * share one complex FFT (the kernel's spectrum is real because the embedded kernel is
 * even). FFTs run down columns in cache-sized blocks with the butterflies running along
 * rows (contiguous, vectorised).
 *
 * The convolution never holds an L x L array. The charges sit in the first m rows and
 * columns of two L x (L/2) arrays (the padding's zero columns are never stored); the
 * columns are transformed (all L row frequencies), then each strip of COL_BLOCK rows is
 * copied transposed into an L x COL_BLOCK scratch, transformed along the other axis,
 * multiplied by the kernel's spectrum, transformed back, and its first L/2 columns are
 * copied back; the columns' inverse transform leaves the potentials in the first m rows.
 * So the charges take half the memory a full 2-D transform's array took.
 * The kernel's spectrum is even in both frequencies: only its (L/2 + 1)^2 quadrant is
 * kept, built the same way (strips over the first L/2 + 1 rows).
 *
 * Memory matters because the placement map builds this once at L = 2048 and keeps the
 * potentials: they are kept as floats, centred on their box. A node of box b
 * stores phi_1, phi_y - c_b phi_1 and phi_|y|^2 - 2 c_b.phi_y + |c_b|^2 phi_1, c_b the
 * box's centre, i.e. the sums of K2 times 1, (y_j - c_b) and |y_j - c_b|^2. Those are
 * linear in the potentials, so interpolating them and recombining with q - c_b gives
 * the same sums as before, and a float's rounding is multiplied by at most |q - c_b|
 * (half a box diagonal) where uncentred floats would have it multiplied by |q|^2 (the
 * map's extent squared). */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "par.h"
#include "simd.h"
#include "tsne_internal.h"

#define COL_BLOCK 32
#define ROW_PAD 8      /* row strides get + ROW_PAD: a power-of-two stride thrashes the cache */
#define MAX_P FFTREP_MAX_P
#define SCR_STRIDE (COL_BLOCK + ROW_PAD)   /* a strip's scratch row */

void fftrep_init(fftrep *w, int n_threads) {
    memset(w, 0, sizeof *w);
    w->p = 3;
    w->box_width = 1.0;
    w->min_boxes = 50;
    w->n_threads = n_threads > 0 ? n_threads : 2;
}

void fftrep_free(fftrep *w) {
    free(w->are); free(w->aim); free(w->kre); free(w->scr);
    free(w->twr); free(w->twi); free(w->pot); free(w->zbuf);
    memset(w, 0, sizeof *w);
}

void fftrep_trim(fftrep *w) {
    free(w->are); free(w->aim); free(w->kre); free(w->scr);
    free(w->twr); free(w->twi); free(w->zbuf);
    w->are = w->aim = w->kre = w->scr = w->twr = w->twi = w->zbuf = NULL;
    w->cap_L = w->tw_L = w->k_L = w->cap_n = 0;
}

/* Row stride of the L x m working arrays: m + 1 columns (the kernel's build) rounded up
 * to whole column blocks, plus the padding. */
static size_t work_stride(int L) {
    int used = (L / 2 + 1 + COL_BLOCK - 1) / COL_BLOCK * COL_BLOCK;
    return (size_t)used + ROW_PAD;
}

static int ensure_buffers(fftrep *w, int L, int m) {
    if (L > w->cap_L) {
        size_t nn = (size_t)L * work_stride(L), H = (size_t)L / 2 + 1;
        size_t sizes[4] = { nn, nn, H * H, (size_t)w->n_threads * 2 * L * SCR_STRIDE };
        double **bufs[4] = { &w->are, &w->aim, &w->kre, &w->scr };
        for (int b = 0; b < 4; b++) {
            free(*bufs[b]);
            *bufs[b] = malloc(sizes[b] * sizeof(double));
        }
        free(w->twr); free(w->twi);
        w->twr = malloc((size_t)L / 2 * sizeof(double));
        w->twi = malloc((size_t)L / 2 * sizeof(double));
        w->tw_L = 0;
        int ok = w->twr && w->twi;
        for (int b = 0; b < 4; b++) ok = ok && *bufs[b];
        w->k_L = 0;
        if (!ok) {
            w->cap_L = 0;
            return -1;
        }
        w->cap_L = L;
    }
    if (w->tw_L != L) {
        for (int j = 0; j < L / 2; j++) {
            w->twr[j] = cos(2.0 * M_PI * j / L);
            w->twi[j] = -sin(2.0 * M_PI * j / L);
        }
        w->tw_L = L;
    }
    if (m > w->cap_m) {
        free(w->pot);
        w->pot = malloc((size_t)m * m * 4 * sizeof *w->pot);
        if (!w->pot) {
            w->cap_m = 0;
            return -1;
        }
        w->cap_m = m;
    }
    return 0;
}

/* ---- 2-D FFT ------------------------------------------------------------------- */

typedef struct {
    double *re, *im;
    const double *twr, *twi;
    int L, inverse;
    size_t S;                /* row stride of re and im */
} fft_ctx;

/* One radix-2 butterfly across COL_BLOCK columns; restrict and the fixed width let the
 * compiler vectorise it at -O2. */
HOT_INLINE void butterfly2(double *restrict ar, double *restrict ai, double *restrict br,
                            double *restrict bi, double wr, double wi) {
    for (int c = 0; c < COL_BLOCK; c++) {
        double tr = wr * br[c] - wi * bi[c];
        double ti = wr * bi[c] + wi * br[c];
        br[c] = ar[c] - tr; bi[c] = ai[c] - ti;
        ar[c] += tr; ai[c] += ti;
    }
}

/* Two radix-2 stages fused (half h then 2h) on rows a, a+h, a+2h, a+3h: w1 is the first
 * stage's twiddle, w2 and w3 the second stage's for the pairs (a, a+2h), (a+h, a+3h).
 * Half the memory sweeps of two separate stages. */
HOT_INLINE void butterfly4(double *restrict r0, double *restrict i0, double *restrict r1,
                            double *restrict i1, double *restrict r2, double *restrict i2,
                            double *restrict r3, double *restrict i3, const double w[6]) {
    for (int c = 0; c < COL_BLOCK; c++) {
        double tr = w[0] * r1[c] - w[1] * i1[c], ti = w[0] * i1[c] + w[1] * r1[c];
        double a0r = r0[c] + tr, a0i = i0[c] + ti, a1r = r0[c] - tr, a1i = i0[c] - ti;
        tr = w[0] * r3[c] - w[1] * i3[c]; ti = w[0] * i3[c] + w[1] * r3[c];
        double a2r = r2[c] + tr, a2i = i2[c] + ti, a3r = r2[c] - tr, a3i = i2[c] - ti;
        tr = w[2] * a2r - w[3] * a2i; ti = w[2] * a2i + w[3] * a2r;
        r0[c] = a0r + tr; i0[c] = a0i + ti; r2[c] = a0r - tr; i2[c] = a0i - ti;
        tr = w[4] * a3r - w[5] * a3i; ti = w[4] * a3i + w[5] * a3r;
        r1[c] = a1r + tr; i1[c] = a1i + ti; r3[c] = a1r - tr; i3[c] = a1i - ti;
    }
}

HOT_INLINE void swap_rows(double *restrict a, double *restrict b) {
    for (int c = 0; c < COL_BLOCK; c++) {
        double t = a[c]; a[c] = b[c]; b[c] = t;
    }
}

/* Length-L transforms down the columns of blocks [b0, b1) (COL_BLOCK columns each):
 * bit reversal, the stages up to TILE rows inside L1-sized tiles, then the remaining
 * stages in fused pairs. */
HOT_LOOP static void fft_col_blocks(void *vctx, int b0, int b1) {
    enum { TILE = 64 };
    fft_ctx *f = vctx;
    int L = f->L;
    size_t S = f->S;
    double sign = f->inverse ? -1.0 : 1.0;
    const double *twr = f->twr, *twi = f->twi;
    int tile = L < TILE ? L : TILE;
    for (int b = b0; b < b1; b++) {
        double *re = f->re + (size_t)b * COL_BLOCK, *im = f->im + (size_t)b * COL_BLOCK;
        for (int i = 0, j = 0; i < L; i++) {
            if (i < j) {
                swap_rows(re + i * S, re + j * S);
                swap_rows(im + i * S, im + j * S);
            }
            int bit = L >> 1;
            for (; j & bit; bit >>= 1) j ^= bit;
            j |= bit;
        }
        for (int t0 = 0; t0 < L; t0 += tile) {
            for (int len = 2; len <= tile; len <<= 1) {
                int half = len >> 1, step = L / len;
                for (int s = t0; s < t0 + tile; s += len) {
                    for (int k = 0; k < half; k++) {
                        size_t a = (s + k) * S, bb = a + half * S;
                        butterfly2(re + a, im + a, re + bb, im + bb, twr[k * step],
                                   sign * twi[k * step]);
                    }
                }
            }
        }
        int len = tile * 2;
        if (len <= L && ((L / tile) & 0x55555555) == 0) {   /* odd count left: one radix-2 */
            int half = len >> 1, step = L / len;
            for (int s = 0; s < L; s += len) {
                for (int k = 0; k < half; k++) {
                    size_t a = (s + k) * S, bb = a + half * S;
                    butterfly2(re + a, im + a, re + bb, im + bb, twr[k * step],
                               sign * twi[k * step]);
                }
            }
            len <<= 1;
        }
        for (; len * 2 <= L; len <<= 2) {        /* stages len and 2*len, fused */
            int h = len >> 1, step1 = L / len, step2 = L / (2 * len);
            for (int s = 0; s < L; s += 2 * len) {
                for (int k = 0; k < h; k++) {
                    double w[6] = { twr[k * step1], sign * twi[k * step1],
                                    twr[k * step2], sign * twi[k * step2],
                                    twr[(k + h) * step2], sign * twi[(k + h) * step2] };
                    size_t a = (s + k) * S, hs = h * S;
                    butterfly4(re + a, im + a, re + a + hs, im + a + hs, re + a + 2 * hs,
                               im + a + 2 * hs, re + a + 3 * hs, im + a + 3 * hs, w);
                }
            }
        }
    }
}

/* Length-L transforms down columns [0, ncols) (rounded up to whole blocks) of the L rows
 * of re and im, row stride S. */
static void fft_cols(const fftrep *w, double *re, double *im, size_t S, int ncols,
                     int inverse) {
    fft_ctx f = { re, im, w->twr, w->twi, w->L, inverse, S };
    int blocks = (ncols + COL_BLOCK - 1) / COL_BLOCK;
    par_for(w->n_threads, blocks, fft_col_blocks, &f);
}

/* The second axis, strip by strip (see the header). A strip is COL_BLOCK rows u of the
 * L x m arrays, copied transposed into a task's scratch (L rows, one per column c). */
typedef struct {
    const fftrep *w;
    size_t S;
    int kernel;              /* 1: build kre from the kernel's column transforms */
    int strips, tasks;
} strip_ctx;

static void strip_range(void *vctx, int t0, int t1) {
    strip_ctx *x = vctx;
    const fftrep *w = x->w;
    const int L = w->L, half = L / 2, H = half + 1;   /* half >= the nodes m */
    const size_t S = x->S, SS = SCR_STRIDE;
    const double scale = 1.0 / ((double)L * L);
    for (int t = t0; t < t1; t++) {
        double *sr = w->scr + (size_t)t * 2 * L * SS, *si = sr + (size_t)L * SS;
        fft_ctx f = { sr, si, w->twr, w->twi, L, 0, SS };
        for (int s = x->strips * t / x->tasks; s < x->strips * (t + 1) / x->tasks; s++) {
            int u0 = s * COL_BLOCK;
            const double *re = w->are + u0 * S, *im = w->aim + u0 * S;
            if (x->kernel) {
                /* rows u of the column transforms are real and even in c: mirror them */
                for (int c = 0; c < L; c++) {
                    int cc = c <= half ? c : L - c;
                    for (int j = 0; j < COL_BLOCK; j++) {
                        sr[c * SS + j] = re[j * S + cc];
                        si[c * SS + j] = 0.0;
                    }
                }
                f.inverse = 0;
                fft_col_blocks(&f, 0, 1);
                for (int j = 0; j < COL_BLOCK && u0 + j < H; j++)
                    for (int v = 0; v < H; v++) w->kre[(size_t)(u0 + j) * H + v] = sr[v * SS + j];
                continue;
            }
            for (int c = 0; c < half; c++) {
                for (int j = 0; j < COL_BLOCK; j++) {
                    sr[c * SS + j] = re[j * S + c];
                    si[c * SS + j] = im[j * S + c];
                }
            }
            memset(sr + half * SS, 0, (size_t)(L - half) * SS * sizeof *sr);
            memset(si + half * SS, 0, (size_t)(L - half) * SS * sizeof *si);
            f.inverse = 0;
            fft_col_blocks(&f, 0, 1);
            for (int v = 0; v < L; v++) {   /* spectrum (u, v) times kre (|u|, |v|) mod L */
                const double *kv = w->kre + (v < H ? v : L - v);
                for (int j = 0; j < COL_BLOCK; j++) {
                    int u = u0 + j;
                    double k = kv[(size_t)(u < H ? u : L - u) * H] * scale;
                    sr[v * SS + j] *= k;
                    si[v * SS + j] *= k;
                }
            }
            f.inverse = 1;
            fft_col_blocks(&f, 0, 1);
            double *wre = w->are + u0 * S, *wim = w->aim + u0 * S;
            for (int c = 0; c < half; c++) {
                for (int j = 0; j < COL_BLOCK; j++) {
                    wre[j * S + c] = sr[c * SS + j];
                    wim[j * S + c] = si[c * SS + j];
                }
            }
        }
    }
}

/* Strips over the first `rows` rows (a multiple of COL_BLOCK is read whole). */
static void strips(const fftrep *w, size_t S, int rows, int kernel) {
    strip_ctx x = { w, S, kernel, (rows + COL_BLOCK - 1) / COL_BLOCK, w->n_threads };
    par_for(w->n_threads, w->n_threads, strip_range, &x);
}

/* ---- interpolation ------------------------------------------------------------- */

/* Box index along one axis of coordinate v; *t its distance from lo in node spacings. */
HOT_INLINE int box_of(const fftrep *w, double v, double lo, double *t) {
    *t = (v - lo) / w->h;
    int b = (int)floor(*t / w->p);
    if (b < 0) b = 0;
    if (b > w->n_boxes - 1) b = w->n_boxes - 1;
    return b;
}

/* Where node (r, c) keeps its four potentials in pot, in floats: box by box, a box's p x p
 * nodes row by row, so that an interpolation reads one block of 4 p^2 floats (one page,
 * a few cache lines) rather than p rows of the grid a page apart. */
HOT_INLINE size_t node_at(const fftrep *w, int r, int c) {
    size_t p = (size_t)w->p;
    return (((size_t)r / p * w->n_boxes + (size_t)c / p) * p * p + r % p * p + c % p) * 4;
}

/* num / den, by a multiplication when den is a power of two (as the Lagrange weights'
 * denominators are for p = 3): 1 / den is then a power of two too, built from den's
 * exponent, and the product rounds the same real number as the quotient, so the bits are
 * the division's without its cost. */
HOT_INLINE double quotient(double num, double den) {
    union { double d; uint64_t u; } b = { .d = den };
    uint64_t e = b.u >> 52 & 0x7ff;
    if (b.u << 12 || e == 0 || e > 2045) return num / den;
    b.u = (b.u & (UINT64_C(1) << 63)) | (2046 - e) << 52;
    return num * b.d;
}

/* Box index along one axis and the p Lagrange weights of coordinate v. */
HOT_INLINE int box_weights(const fftrep *w, double v, double lo, double *wt) {
    int p = w->p;
    double t;
    int b = box_of(w, v, lo, &t);
    double u = t - (double)b * p;
    for (int a = 0; a < p; a++) {
        double num = 1.0, den = 1.0;
        for (int c = 0; c < p; c++) {
            if (c == a) continue;
            num *= u - (c + 0.5);
            den *= (double)(a - c);
        }
        wt[a] = quotient(num, den);
    }
    return b * p;
}

int fftrep_potentials(fftrep *w, const double *y, int n, double lo_x, double lo_y,
                      double side) {
    if (side < 1e-6) side = 1e-6;
    int p = w->p;
    int nb = (int)ceil(side / w->box_width);
    if (nb < w->min_boxes) nb = w->min_boxes;
    int L = COL_BLOCK;
    while (L < 2 * p * nb) L <<= 1;
    nb = L / (2 * p);
    int m = p * nb;
    if (ensure_buffers(w, L, m)) return -1;
    w->n_boxes = nb; w->m = m; w->L = L;
    w->lo_x = lo_x; w->lo_y = lo_y;
    w->h = side / nb / p;

    size_t S = work_stride(L), nn = (size_t)L * S;
    const int H = L / 2 + 1;   /* m may be below L / 2 (whole boxes) */
    if (w->k_L != L || w->k_m != m || w->k_h != w->h) {
        /* The kernel at every node offset (dx, dy) in (-m, m), wrapped modulo L: its
         * columns dx in [0, m] (the others mirror them), transformed down the columns,
         * then along the rows by strips into kre. */
        for (int r = 0; r < L; r++) {
            int dy = r < m ? r : (r > L - m ? r - L : INT_MAX);
            for (size_t c = 0; c < S; c++) {
                int dx = c < (size_t)m ? (int)c : INT_MAX;
                double val = 0.0;
                if (dx != INT_MAX && dy != INT_MAX) {
                    double r2 = w->h * w->h * ((double)dx * dx + (double)dy * dy);
                    val = 1.0 / ((1.0 + r2) * (1.0 + r2));
                }
                w->are[r * S + c] = val;
            }
        }
        memset(w->aim, 0, nn * sizeof(double));
        fft_cols(w, w->are, w->aim, S, H, 0);
        strips(w, S, H, 1);
        w->k_L = L; w->k_m = m; w->k_h = w->h;
    }
    /* Two passes with one complex buffer: charges (1, y_x), then (y_y, |y|^2). */
    for (int pass = 0; pass < 2; pass++) {
        memset(w->are, 0, nn * sizeof(double));
        memset(w->aim, 0, nn * sizeof(double));
        for (int i = 0; i < n; i++) {
            double x = y[2 * i], v = y[2 * i + 1], wx[MAX_P], wy[MAX_P];
            int tx = box_weights(w, x, lo_x, wx), ty = box_weights(w, v, lo_y, wy);
            double c_re = pass ? v : 1.0, c_im = pass ? x * x + v * v : x;
            for (int b = 0; b < p; b++) {
                size_t row = (ty + b) * S + tx;
                for (int a = 0; a < p; a++) {
                    double c = wy[b] * wx[a];
                    w->are[row + a] += c * c_re;
                    w->aim[row + a] += c * c_im;
                }
            }
        }
        fft_cols(w, w->are, w->aim, S, m, 0);
        strips(w, S, L, 0);
        fft_cols(w, w->are, w->aim, S, m, 1);
        for (int r = 0; r < m; r++) {
            double cy = lo_y + w->h * ((r / p) * p + 0.5 * p);   /* the box's centre */
            for (int c = 0; c < m; c++) {
                double cx = lo_x + w->h * ((c / p) * p + 0.5 * p);
                size_t e = r * S + c;
                float *pt = w->pot + node_at(w, r, c);
                double first[2];             /* pass 0's (phi_1, phi_x), kept in pt's bytes */
                if (pass == 0) {
                    first[0] = w->are[e];
                    first[1] = w->aim[e];
                    memcpy(pt, first, sizeof first);
                    continue;
                }
                memcpy(first, pt, sizeof first);
                double p1 = first[0], px = first[1], py = w->are[e], p2 = w->aim[e];
                pt[0] = (float)p1;
                pt[1] = (float)(px - cx * p1);
                pt[2] = (float)(py - cy * p1);
                pt[3] = (float)(p2 - 2.0 * (cx * px + cy * py) + (cx * cx + cy * cy) * p1);
            }
        }
    }
    return 0;
}

HOT_LOOP void fftrep_locate(const fftrep *w, const double *q, fftrep_at *at) {
    int p = w->p;
    at->tx = box_weights(w, q[0], w->lo_x, at->wx);
    at->ty = box_weights(w, q[1], w->lo_y, at->wy);
    const float *box = w->pot + node_at(w, at->ty, at->tx);
    for (int f = 0; f < 4 * p * p; f += 16) __builtin_prefetch(box + f);   /* 64-byte lines */
    __builtin_prefetch(box + 4 * p * p - 1);
}

/* A node's four potentials as doubles, and as the floats they are kept in; loads need
 * only their element's alignment. */
typedef double pot_d __attribute__((vector_size(32), aligned(8)));
typedef float pot_f __attribute__((vector_size(16), aligned(4)));

HOT_LOOP void fftrep_sum(const fftrep *w, const double *q, const fftrep_at *at, double rep[2],
                         double *z) {
    int p = w->p, tx = at->tx, ty = at->ty;
    const float *box = w->pot + node_at(w, ty, tx);
    pot_d phi = { 0, 0, 0, 0 };
    for (int b = 0; b < p; b++) {
        const float *row = box + 4 * p * b;
        for (int a = 0; a < p; a++) {
            double c = at->wy[b] * at->wx[a];
            pot_d node = __builtin_convertvector(*(const pot_f *)(row + 4 * a), pot_d);
            phi += (pot_d){ c, c, c, c } * node;
        }
    }
    double x = q[0] - (w->lo_x + w->h * (tx + 0.5 * p));   /* q - the box's centre */
    double v = q[1] - (w->lo_y + w->h * (ty + 0.5 * p));
    rep[0] = x * phi[0] - phi[1];
    rep[1] = v * phi[0] - phi[2];
    *z = (1.0 + x * x + v * v) * phi[0] - 2.0 * (x * phi[1] + v * phi[2]) + phi[3];
}

void fftrep_eval(const fftrep *w, const double *q, double rep[2], double *z) {
    fftrep_at at;
    fftrep_locate(w, q, &at);
    fftrep_sum(w, q, &at, rep, z);
}

typedef struct {
    const fftrep *w;
    const double *y;
    double *rep, *z;
} eval_ctx;

static void eval_range(void *vctx, int begin, int end) {
    eval_ctx *c = vctx;
    for (int i = begin; i < end; i++) fftrep_eval(c->w, c->y + 2 * i, c->rep + 2 * i, c->z + i);
}

double fftrep_all(fftrep *w, const double *y, int n, double *rep) {
    double min_x = y[0], max_x = y[0], min_y = y[1], max_y = y[1];
    for (int i = 1; i < n; i++) {
        double a = y[2 * i], b = y[2 * i + 1];
        if (a < min_x) min_x = a;
        if (a > max_x) max_x = a;
        if (b < min_y) min_y = b;
        if (b > max_y) max_y = b;
    }
    /* Keep the previous box (and so the kernel's spectrum) while the points stay
     * inside it and it is at most 20% too large; otherwise take a new box with a 5%
     * margin. During the late iterations the map barely grows, so the kernel FFT is
     * mostly skipped. */
    double need = fmax(max_x - min_x, max_y - min_y);
    need += 1e-9 * need + 1e-12;
    int fits = w->box_side > 0 && min_x >= w->box_x && min_y >= w->box_y &&
               max_x <= w->box_x + w->box_side && max_y <= w->box_y + w->box_side &&
               w->box_side <= 1.2 * need;
    if (!fits) {
        w->box_side = 1.05 * need;
        w->box_x = 0.5 * (min_x + max_x) - 0.5 * w->box_side;
        w->box_y = 0.5 * (min_y + max_y) - 0.5 * w->box_side;
    }
    if (fftrep_potentials(w, y, n, w->box_x, w->box_y, w->box_side)) return -1.0;
    if (n > w->cap_n) {
        free(w->zbuf);
        w->zbuf = malloc((size_t)n * sizeof(double));
        if (!w->zbuf) {
            w->cap_n = 0;
            return -1.0;
        }
        w->cap_n = n;
    }
    eval_ctx c = { w, y, rep, w->zbuf };
    par_for(w->n_threads, n, eval_range, &c);
    double Z = 0.0;
    for (int i = 0; i < n; i++) Z += w->zbuf[i];
    return Z - n;
}
