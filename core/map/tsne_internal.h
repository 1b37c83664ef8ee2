/* tsne_internal.h — helpers shared by the tsne_*.c files; not part of the public API
 * (callers use tsne.h): the Barnes-Hut quadtree (the fit's repulsion, tsne_bh.c), the grid repulsion (the fixed map's field, tsne_fft.c)
 * and the perplexity calibration.
 *
 * The grid repulsion follows the FFT-accelerated interpolation idea of FIt-SNE
 * (Linderman et al. 2019): the Student-t kernel is smooth, so charges carried by the
 * points are spread onto a uniform grid by Lagrange interpolation, convolved with the
 * kernel by FFT (a Toeplitz product embedded in a circulant one), and interpolated back.
 * Written from the method's description; the FFT is our own radix-2 code because the
 * build links only OpenBLAS. */
#ifndef ANODM_TSNE_INTERNAL_H
#define ANODM_TSNE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* Grid repulsion workspace, reused across iterations (buffers grow as needed). */
typedef struct {
    int p;                 /* interpolation nodes per box and dimension (3) */
    double box_width;      /* target box width in map units (1.0) */
    int min_boxes;         /* at least this many boxes per dimension (50) */
    int n_threads;
    /* geometry of the last call */
    int n_boxes, m, L;     /* boxes, nodes per dim (p * n_boxes), FFT size */
    double lo_x, lo_y, h;  /* node t sits at lo + h * (t + 0.5) */
    /* buffers */
    double *are, *aim;     /* L rows of L/2 (+ pad) each: charges (re, im) */
    double *kre;           /* (L/2 + 1)^2: the kernel spectrum's quadrant (it is even) */
    double *scr;           /* per thread, two L x strip scratch arrays (tsne_fft.c) */
    double *twr, *twi;                          /* L/2 twiddles for size tw_L */
    int cap_L, tw_L;
    float *pot;            /* 4 potentials per node, m*m*4, centred on the node's box;
                              stored box by box (tsne_fft.c) */
    int cap_m;
    double *zbuf;          /* per-point z for fftrep_all */
    int cap_n;
    int k_L, k_m;          /* kre holds the kernel spectrum for (k_L, k_m, k_h) */
    double k_h;
    double box_x, box_y, box_side;   /* fftrep_all's current box (kept while it fits) */
} fftrep;

void fftrep_init(fftrep *w, int n_threads);
void fftrep_free(fftrep *w);

/* Lay a grid over the square box [lo_x, lo_x+side] x [lo_y, lo_y+side] and compute the
 * potentials phi_c(node) = sum_j K2(node - y_j) c_j for the charges c = 1, y_x, y_y,
 * |y|^2 of the n points y (n x 2, double), K2(r) = 1 / (1 + r^2)^2, kept as floats
 * centred on each node's box (tsne_fft.c). The points must lie in the box. Returns 0,
 * or -1 if out of memory. */
int fftrep_potentials(fftrep *w, const double *y, int n, double lo_x, double lo_y,
                      double side);

/* Free the FFT buffers, keeping the potentials for fftrep_eval. */
void fftrep_trim(fftrep *w);

/* Interpolate the potentials at q (2 doubles) and turn them into the repulsion sums
 * rep = sum_j K2(q - y_j) (q - y_j) and z = sum_j K1(q - y_j), K1 = 1 / (1 + r^2).
 * q must lie inside the grid's box. */
void fftrep_eval(const fftrep *w, const double *q, double rep[2], double *z);
/* fftrep_eval in two halves, for a caller with other work to do while the grid comes
 * from memory (it is too large for the caches): fftrep_locate finds q's boxes and
 * interpolation weights and starts loading their potentials, fftrep_sum sums them. */
#define FFTREP_MAX_P 8
typedef struct {
    int tx, ty;                          /* the boxes' first nodes */
    double wx[FFTREP_MAX_P], wy[FFTREP_MAX_P];
} fftrep_at;
void fftrep_locate(const fftrep *w, const double *q, fftrep_at *at);
void fftrep_sum(const fftrep *w, const double *q, const fftrep_at *at, double rep[2],
                double *z);

/* Sum of the Student-t repulsion of every point against all the others, by the grid:
 * rep[i*2..] = sum_{j != i} K2 (y_i - y_j), returns Z = sum_{i != j} K1 (or -1 on OOM). */
double fftrep_all(fftrep *w, const double *y, int n, double *rep);

/* Barnes-Hut quadtree over a point set, rebuilt per call; buffers reused. */
typedef struct {
    double cx, cy;         /* centre of mass */
    double w2;             /* squared side of the cell */
    double cnt;            /* points below */
    int child, n_child;    /* children are nodes [child, child + n_child) */
    int start, end;        /* leaf: points [start, end) in tree order */
} bh_node;

typedef struct {
    bh_node *nodes;
    int n_nodes, cap_nodes;
    int *perm, *perm2;     /* tree order -> point index (perm2: sort scratch) */
    uint32_t *code, *code2;   /* Morton codes, sorted, and scratch */
    double *px, *py;       /* point coordinates in tree order */
    double *zbuf;
    int cap_n;
} bhtree;

void bh_free(bhtree *t);

/* Barnes-Hut repulsion of every point against all others (theta: cell side / distance
 * below which a cell counts as one point at its centre of mass): rep[i*2..] =
 * sum_{j != i} K2 (y_i - y_j), z[i] = sum_{j != i} K1 (if z is not NULL); returns
 * Z = sum_i z[i], or -1 when out of memory. Deterministic whatever n_threads. */
double bh_repulsion(bhtree *t, const double *y, int n, double theta, int n_threads,
                    double *rep, double *z);

/* Build the tree over y (n x 2) without computing anything: for bh_query. */
int bh_build(bhtree *t, const double *y, int n);
/* Repulsion sums at an outside point q against the points of a built tree:
 * rep = sum_j K2 (q - y_j), *z = sum_j K1 (per-point criterion, theta). */
void bh_query(const bhtree *t, const double q[2], double theta, double rep[2], double *z);

/* Binary search of the Gaussian precision beta so that the distribution
 * p_j ~ exp(-beta * d2_j) over k neighbours has perplexity `perplexity` (entropy
 * log(perplexity) nats); writes p (sums to 1). Returns the entropy reached. */
double tsne_calibrate(const float *d2, int k, double perplexity, double *p, double *beta);
/* tsne_calibrate of count rows of k distances (row i at d2 + i * k) into p (count x k),
 * CALIBRATE_LANES rows in lockstep: each row's passes are tsne_calibrate's, operation for
 * operation, so p equals its p bit for bit whatever the rows around it, while the rows'
 * dependency chains overlap. scratch: 2 * k * CALIBRATE_LANES doubles. */
#define CALIBRATE_LANES 8
void tsne_calibrate_rows(const float *d2, int k, int count, double perplexity, double *p,
                         double *scratch);

/* 0 if all count values of X are finite, else -1 with "what: element i is not finite". */
int tsne_check_finite(const float *X, size_t count, const char *what, char *err,
                      size_t errlen);

#endif
