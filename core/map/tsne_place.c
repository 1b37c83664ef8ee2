/* Placement of new points into a fixed t-SNE map (see tsne.h for the objective).
 *
 * The map precomputes, once, everything that does not depend on the new point:
 *  - the reference's repulsion field on a grid (the same FFT interpolation as the fit's
 *    grid gradient: four potentials per node, Lagrange-interpolated at the query), so a
 *    gradient step costs O(k + p^2) instead of O(N). Queries outside the grid's box
 *    (margin around the map) fall back to the exact sum;
 *  - squared norms of the reference latents for SGEMM neighbour search in batches;
 *  - a uniform cell grid over the map positions for D_MAP (k nearest map points).
 *
 * Single placement is a pure function of (map, options, x): the neighbour search is the
 * map's knn_index (knn_query_packed's results, bit for bit), and a batch runs its points
 * in lockstep (below, "batches in lockstep") with each point doing single placement's
 * operations in their order, so results are bit-identical whatever the batch.
 * Co-placement (and the window, which is co-placement against extra fixed points)
 * updates all new points synchronously: gradients for all, then steps for all. */
#include "tsne.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block.h"
#include "clock.h"
#include "errmsg.h"
#include "knn.h"
#include "par.h"
#include "simd.h"
#include "tsne_internal.h"

#define FIELD_MAX_L 2048     /* the field's FFT size cap: bounds memory and build time */
#define EXACT_NEW_MAX 1024   /* co-placement: new-new repulsion exact up to this many */

struct tsne_map {
    int n, d;
    /* In the map's own block (map_parts): */
    double *Y;               /* n x 2 positions */
    float *X;                /* n x d latents */
    float *norms;            /* n squared latent norms */
    knn_index *index;        /* the same latents, for single queries (its own block) */
    fftrep field;            /* reference potentials on the grid */
    double box_x0, box_y0, box_x1, box_y1;   /* where the grid is valid */
    /* D_MAP cell index */
    int cells;               /* per side */
    double cell_x0, cell_y0, cell_size;
    int *cell_start;         /* cells^2 + 1 */
    int *cell_pts;           /* n point indices grouped by cell */
};

void tsne_place_options_default(tsne_place_options *o) {
    o->perplexity = 30.0;
    o->n_iter = 100;
    o->learning_rate = 1.0;
    o->exaggeration = 1.0;
    o->momentum = 0.8;
    o->max_grad = 1.0;
    o->tol = 0.0;
    o->exact = 0;
    o->n_threads = 1;
}

int tsne_place_options_check(const tsne_place_options *o, int n_ref, char *err,
                             size_t errlen) {
    if (tsne_check_perplexity(o->perplexity, n_ref > 0 ? n_ref : -1, "reference points", err,
                              errlen))
        return -1;
    if (o->n_iter < 0 || o->n_iter > TSNE_MAX_PLACE_ITER)
        return err_fail(err, errlen, "placement settings: n_iter %d outside 0..%d", o->n_iter,
                        TSNE_MAX_PLACE_ITER);
    if (!(o->learning_rate > 0 && isfinite(o->learning_rate)) ||
        !(o->exaggeration > 0 && isfinite(o->exaggeration)) ||
        !(o->max_grad > 0 && isfinite(o->max_grad)))
        return err_fail(err, errlen, "placement settings: learning_rate %g, exaggeration %g "
                        "and max_grad %g must be finite and > 0", o->learning_rate,
                        o->exaggeration, o->max_grad);
    if (!(o->tol >= 0 && o->tol <= TSNE_MAX_PLACE_TOL))
        return err_fail(err, errlen, "placement settings: tol %g is not in [0, %g]", o->tol,
                        TSNE_MAX_PLACE_TOL);
    if (!(o->momentum >= 0 && o->momentum < 1))
        return err_fail(err, errlen, "placement settings: momentum %g is not in [0, 1)",
                        o->momentum);
    if (o->exact != 0 && o->exact != 1)
        return err_fail(err, errlen, "placement settings: exact %d is neither 0 nor 1",
                        o->exact);
    if (o->n_threads < 0 || o->n_threads > PAR_MAX_THREADS)
        return err_fail(err, errlen, "placement settings: threads %d outside 0..%d",
                        o->n_threads, PAR_MAX_THREADS);
    return 0;
}

/* tsne_place_options_check of a placement into m, its message prefixed. */
static int check_place_options(const tsne_place_options *o, int n_ref, char *err,
                               size_t errlen) {
    if (tsne_place_options_check(o, n_ref, err, errlen) == 0) return 0;
    err_prefix(err, errlen, "tsne place");
    return -1;
}

/* ---- the map ------------------------------------------------------------------- */

/* Cells per side of the D_MAP index of n points: about two points a cell. */
static int cells_for(int n) {
    int cells = (int)ceil(sqrt(n / 2.0));
    return cells < 1 ? 1 : cells;
}

/* The D_MAP cell index over m's positions (cell_start and cell_pts carved already, and
 * zeroed); 0, or -1 when out of memory. */
static int build_cells(tsne_map *m) {
    double x0 = m->Y[0], x1 = x0, y0 = m->Y[1], y1 = y0;
    for (int i = 0; i < m->n; i++) {
        x0 = fmin(x0, m->Y[2 * i]); x1 = fmax(x1, m->Y[2 * i]);
        y0 = fmin(y0, m->Y[2 * i + 1]); y1 = fmax(y1, m->Y[2 * i + 1]);
    }
    const int cells = m->cells;
    double side = fmax(x1 - x0, y1 - y0);
    m->cell_x0 = x0;
    m->cell_y0 = y0;
    m->cell_size = side > 0 ? side * (1 + 1e-9) / cells : 1.0;
    int *fill = malloc((size_t)cells * cells * sizeof *fill);
    if (!fill) return -1;
    for (int i = 0; i < m->n; i++) {
        int cx = (int)((m->Y[2 * i] - x0) / m->cell_size);
        int cy = (int)((m->Y[2 * i + 1] - y0) / m->cell_size);
        cx = cx < cells ? cx : cells - 1;
        cy = cy < cells ? cy : cells - 1;
        m->cell_start[cy * cells + cx + 1]++;
    }
    for (int c = 0; c < cells * cells; c++) m->cell_start[c + 1] += m->cell_start[c];
    memcpy(fill, m->cell_start, (size_t)cells * cells * sizeof *fill);
    for (int i = 0; i < m->n; i++) {
        int cx = (int)((m->Y[2 * i] - x0) / m->cell_size);
        int cy = (int)((m->Y[2 * i + 1] - y0) / m->cell_size);
        cx = cx < cells ? cx : cells - 1;
        cy = cy < cells ? cy : cells - 1;
        m->cell_pts[fill[cy * cells + cx]++] = i;
    }
    free(fill);
    return 0;
}

/* The map's arrays, carved after it (block.h): doubles, then floats, then ints. */
static void map_parts(block *b, tsne_map *m, size_t n, size_t d, size_t cells) {
    BLOCK_TAKE(b, m->Y, n * 2);
    BLOCK_TAKE(b, m->X, n * d);
    BLOCK_TAKE(b, m->norms, n);
    BLOCK_TAKE(b, m->cell_start, cells * cells + 1);
    BLOCK_TAKE(b, m->cell_pts, n);
}

tsne_map *tsne_map_create(const float *X, const float *Y, int n, int d, double box_width,
                          char *err, size_t errlen) {
    if (n < 1 || d < 1 || d > KNN_INDEX_MAX_D) {
        snprintf(err, errlen, "tsne map: need at least one point of 1..%d dimensions (n=%d, d=%d)",
                 KNN_INDEX_MAX_D, n, d);
        return NULL;
    }
    if (tsne_check_finite(X, (size_t)n * d, "tsne map latents", err, errlen) ||
        tsne_check_finite(Y, (size_t)n * 2, "tsne map positions", err, errlen))
        return NULL;
    const int cells = cells_for(n);
    block b = BLOCK_HEAD(tsne_map);
    tsne_map probe;
    map_parts(&b, &probe, (size_t)n, (size_t)d, (size_t)cells);
    tsne_map *m = block_alloc(&b);
    if (!m) goto oom;
    map_parts(&b, m, (size_t)n, (size_t)d, (size_t)cells);
    m->n = n;
    m->d = d;
    m->cells = cells;
    memcpy(m->X, X, (size_t)n * d * sizeof *m->X);
    if (!(m->index = knn_index_create(X, n, d))) goto oom;
    knn_norms(X, n, d, m->norms);
    for (int e = 0; e < 2 * n; e++) m->Y[e] = Y[e];
    if (build_cells(m)) goto oom;

    /* The field's box: the map plus a margin where islands of new points may form. */
    double x0 = m->Y[0], x1 = x0, y0 = m->Y[1], y1 = y0;
    for (int i = 0; i < n; i++) {
        x0 = fmin(x0, m->Y[2 * i]); x1 = fmax(x1, m->Y[2 * i]);
        y0 = fmin(y0, m->Y[2 * i + 1]); y1 = fmax(y1, m->Y[2 * i + 1]);
    }
    double side = fmax(x1 - x0, y1 - y0), margin = 0.15 * side + 3.0;
    side += 2 * margin;
    fftrep_init(&m->field, 1);
    m->field.min_boxes = 1;
    m->field.box_width = box_width > 0 ? box_width : 0.5;
    /* Cap the grid: 2 * p * boxes <= FIELD_MAX_L. */
    double min_width = side / (FIELD_MAX_L / (2 * m->field.p));
    if (m->field.box_width < min_width) m->field.box_width = min_width * (1 + 1e-9);
    m->box_x0 = 0.5 * (x0 + x1) - 0.5 * side;
    m->box_y0 = 0.5 * (y0 + y1) - 0.5 * side;
    m->box_x1 = m->box_x0 + side;
    m->box_y1 = m->box_y0 + side;
    if (fftrep_potentials(&m->field, m->Y, n, m->box_x0, m->box_y0, side)) goto oom;
    fftrep_trim(&m->field);
    return m;
oom:
    snprintf(err, errlen, "tsne map: out of memory (n=%d, d=%d)", n, d);
    tsne_map_free(m);
    return NULL;
}

void tsne_map_free(tsne_map *m) {
    if (!m) return;
    knn_index_free(m->index);
    fftrep_free(&m->field);
    free(m);                     /* and its arrays (map_parts) */
}

int tsne_map_size(const tsne_map *m) { return m->n; }
int tsne_map_dim(const tsne_map *m) { return m->d; }

size_t tsne_map_bytes(const tsne_map *m) {
    size_t cells = (size_t)m->cells * m->cells + 1;
    return sizeof *m + (size_t)m->n * ((size_t)m->d * 4 + 4 + 16 + 4) + cells * 4 +
           knn_index_bytes(m->index) +
           (size_t)m->field.m * m->field.m * 4 * sizeof *m->field.pot;
}

/* Whether tsne_map_field at q interpolates the grid (else it sums exactly). */
static int on_grid(const tsne_map *m, const double q[2], int exact) {
    return !exact && q[0] >= m->box_x0 && q[0] <= m->box_x1 && q[1] >= m->box_y0 &&
           q[1] <= m->box_y1;
}

void tsne_map_field(const tsne_map *m, const double q[2], int exact, double rep[2], double *z) {
    if (on_grid(m, q, exact)) {
        fftrep_eval(&m->field, q, rep, z);
        return;
    }
    double rx = 0, ry = 0, s = 0;
    for (int j = 0; j < m->n; j++) {
        double dx = q[0] - m->Y[2 * j], dy = q[1] - m->Y[2 * j + 1];
        double w = 1.0 / (1.0 + dx * dx + dy * dy);
        s += w;
        rx += w * w * dx;
        ry += w * w * dy;
    }
    rep[0] = rx;
    rep[1] = ry;
    *z = s;
}

/* ---- D_MAP --------------------------------------------------------------------- */

/* Keep the k best (d2, idx) in ascending order (insertion; k is small). */
static void keep_best(double *bd, int *bi, int k, int *count, double d2, int i) {
    if (*count == k && (d2 > bd[k - 1] || (d2 == bd[k - 1] && i > bi[k - 1]))) return;
    int at = *count < k ? (*count)++ : k - 1;
    while (at > 0 && (bd[at - 1] > d2 || (bd[at - 1] == d2 && bi[at - 1] > i))) {
        bd[at] = bd[at - 1];
        bi[at] = bi[at - 1];
        at--;
    }
    bd[at] = d2;
    bi[at] = i;
}

double tsne_map_latent_nn(const tsne_map *m, const float *x) {
    double d;
    tsne_map_latent_knn(m, x, 1, &d);
    return d;
}

void tsne_map_latent_knn(const tsne_map *m, const float *x, int k, double *dist) {
    int idx[KNN_MAX_K];
    float d2[KNN_MAX_K];
    if (k < 1 || k > KNN_MAX_K || k > m->n) {
        for (int r = 0; r < k; r++) dist[r] = NAN;
        return;
    }
    knn_index_query(m->index, x, k, idx, d2);
    for (int r = 0; r < k; r++) dist[r] = sqrt((double)d2[r]);
}

double tsne_map_dmap(const tsne_map *m, const float y[2], int k, int *idx, float *dist) {
    if (k < 1 || k > m->n) return -1.0;
    if (!isfinite(y[0]) || !isfinite(y[1])) {   /* no cell to start from: no distance */
        for (int i = 0; i < k; i++) {
            if (idx) idx[i] = i;
            if (dist) dist[i] = NAN;
        }
        return NAN;
    }
    double *bd = malloc((size_t)k * sizeof *bd);
    int *bi = malloc((size_t)k * sizeof *bi);
    if (!bd || !bi) {
        free(bd); free(bi);
        return -1.0;
    }
    double qx = y[0], qy = y[1], cs = m->cell_size;
    int C = m->cells, count = 0;
    int cx = (int)floor((qx - m->cell_x0) / cs), cy = (int)floor((qy - m->cell_y0) / cs);
    cx = cx < 0 ? 0 : cx >= C ? C - 1 : cx;
    cy = cy < 0 ? 0 : cy >= C ? C - 1 : cy;
    for (int r = 0;; r++) {
        int lo_x = cx - r, hi_x = cx + r, lo_y = cy - r, hi_y = cy + r;
        for (int gy = lo_y; gy <= hi_y; gy++) {
            if (gy < 0 || gy >= C) continue;
            for (int gx = lo_x; gx <= hi_x; gx++) {
                if (gx < 0 || gx >= C) continue;
                if (gy != lo_y && gy != hi_y && gx != lo_x && gx != hi_x) continue;
                int c = gy * C + gx;
                for (int e = m->cell_start[c]; e < m->cell_start[c + 1]; e++) {
                    int j = m->cell_pts[e];
                    double dx = qx - m->Y[2 * j], dy = qy - m->Y[2 * j + 1];
                    keep_best(bd, bi, k, &count, dx * dx + dy * dy, j);
                }
            }
        }
        if (lo_x <= 0 && lo_y <= 0 && hi_x >= C - 1 && hi_y >= C - 1) break;  /* all seen */
        if (count == k) {
            /* Unvisited points lie outside the block of rings 0..r: no closer than the
             * nearest block side that has cells beyond it. */
            double gap = INFINITY;
            if (lo_x > 0) gap = fmin(gap, qx - (m->cell_x0 + lo_x * cs));
            if (hi_x < C - 1) gap = fmin(gap, m->cell_x0 + (hi_x + 1) * cs - qx);
            if (lo_y > 0) gap = fmin(gap, qy - (m->cell_y0 + lo_y * cs));
            if (hi_y < C - 1) gap = fmin(gap, m->cell_y0 + (hi_y + 1) * cs - qy);
            if (gap > 0 && gap * gap > bd[k - 1]) break;
        }
    }
    double sum = 0;
    for (int r = 0; r < k; r++) {
        double dd = sqrt(bd[r]);
        sum += dd;
        if (idx) idx[r] = bi[r];
        if (dist) dist[r] = (float)dd;
    }
    free(bd); free(bi);
    return sum / k;
}

/* ---- single placement ---------------------------------------------------------- */

/* Placement's working arrays for rows points of k neighbours each, row i's at i * k. */
typedef struct {
    double *p, *nx, *ny;     /* neighbours' weights and positions */
    double *cal;             /* tsne_calibrate_rows' scratch */
    float *d2;
    int *idx;
    void *mem;               /* the one block they live in */
} place_buf;

static void place_buf_parts(block *b, place_buf *pb, size_t k, size_t rows) {
    BLOCK_TAKE(b, pb->p, rows * k);
    BLOCK_TAKE(b, pb->nx, rows * k);
    BLOCK_TAKE(b, pb->ny, rows * k);
    BLOCK_TAKE(b, pb->cal, 2 * k * CALIBRATE_LANES);
    BLOCK_TAKE(b, pb->d2, rows * k);
    BLOCK_TAKE(b, pb->idx, rows * k);
}

/* Buffers for rows points of k neighbours; 0, or -1 when out of memory (place_buf_free it
 * either way). */
static int place_buf_init(place_buf *pb, int k, int rows) {
    block b = {0};
    place_buf_parts(&b, pb, (size_t)k, (size_t)rows);
    if (!(pb->mem = block_alloc(&b))) return -1;
    place_buf_parts(&b, pb, (size_t)k, (size_t)rows);
    return 0;
}

static void place_buf_free(place_buf *pb) { free(pb->mem); }

/* Attraction sum_j p_j w_j (y - y_j) over k neighbours, in LANES partial sums so that
 * the compiler vectorises it (fixed order: deterministic). */
#define LANES 8
HOT_LOOP static void attract(const double *p, const double *nx, const double *ny, int k,
                    const double y[2], double g[2]) {
    double ax[LANES] = { 0 }, ay[LANES] = { 0 };
    int r = 0;
    for (; r + LANES <= k; r += LANES) {
        for (int u = 0; u < LANES; u++) {
            double dx = y[0] - nx[r + u], dy = y[1] - ny[r + u];
            double v = p[r + u] / (1.0 + dx * dx + dy * dy);
            ax[u] += v * dx;
            ay[u] += v * dy;
        }
    }
    for (; r < k; r++) {
        double dx = y[0] - nx[r], dy = y[1] - ny[r];
        double v = p[r] / (1.0 + dx * dx + dy * dy);
        ax[0] += v * dx;
        ay[0] += v * dy;
    }
    g[0] = g[1] = 0.0;
    for (int u = 0; u < LANES; u++) {
        g[0] += ax[u];
        g[1] += ay[u];
    }
}

/* Clip g to norm max_grad, then one momentum step of position y. No per-coordinate
 * gains: for a single 2-D point they grow while the direction holds and fling points
 * far past their minimum (measured; docs/TSNE.md). */
static void step(double *y, double *upd, double g[2], const tsne_place_options *o) {
    double norm = sqrt(g[0] * g[0] + g[1] * g[1]);
    if (norm > o->max_grad) {
        g[0] *= o->max_grad / norm;
        g[1] *= o->max_grad / norm;
    }
    for (int c = 0; c < 2; c++) {
        upd[c] = o->momentum * upd[c] - o->learning_rate * g[c];
        y[c] += upd[c];
    }
}

/* The rest of a gradient step once the attraction g and the field (rep, z) at y are known:
 * the gradient, the step, and the count of still steps (returned) that the stopping rule
 * reads. One function for the plain path and the lockstep, so both do the same operations. */
static int finish_step(double y[2], double upd[2], double g[2], const double rep[2], double z,
                       const tsne_place_options *o, int still) {
    g[0] = o->exaggeration * g[0] - rep[0] / z;
    g[1] = o->exaggeration * g[1] - rep[1] / z;
    step(y, upd, g, o);
    return upd[0] * upd[0] + upd[1] * upd[1] < o->tol * o->tol ? still + 1 : 0;
}

/* Place x alone: the plain path, one chain at a time (place_group's lockstep gives the
 * same bits). */
static void place_one(const tsne_map *m, const tsne_place_options *o, const float *x,
                      place_buf *b, float out[2]) {
    int k = tsne_neighbours(o->perplexity);
    knn_index_query(m->index, x, k, b->idx, b->d2);
    tsne_calibrate(b->d2, k, o->perplexity, b->p, NULL);
    double y[2] = { 0, 0 }, upd[2] = { 0, 0 };
    for (int r = 0; r < k; r++) {
        b->nx[r] = m->Y[2 * b->idx[r]];
        b->ny[r] = m->Y[2 * b->idx[r] + 1];
        y[0] += b->p[r] * b->nx[r];
        y[1] += b->p[r] * b->ny[r];
    }
    for (int it = 0, still = 0; it < o->n_iter && still < TSNE_PLACE_STILL; it++) {
        double g[2], rep[2], z;
        attract(b->p, b->nx, b->ny, k, y, g);
        tsne_map_field(m, y, o->exact, rep, &z);
        still = finish_step(y, upd, g, rep, z, o, still);
    }
    out[0] = (float)y[0];
    out[1] = (float)y[1];
}

int tsne_place(const tsne_map *m, const tsne_place_options *opt, const float *x, float y[2],
               char *err, size_t errlen) {
    tsne_place_options def;
    if (!opt) {
        tsne_place_options_default(&def);
        opt = &def;
    }
    if (check_place_options(opt, m->n, err, errlen) ||
        tsne_check_finite(x, (size_t)m->d, "tsne place input", err, errlen))
        return -1;
    place_buf b;
    if (place_buf_init(&b, tsne_neighbours(opt->perplexity), 1)) {
        place_buf_free(&b);
        snprintf(err, errlen, "tsne place: out of memory");
        return -1;
    }
    place_one(m, opt, x, &b, y);
    place_buf_free(&b);
    return 0;
}

/* ---- batches in lockstep ------------------------------------------------------- */

/* A batch is placed PLACE_GROUP rows at a time, each stage for all of them before the
 * next: the neighbour searches, then the calibrations (tsne_calibrate_rows), then the
 * iterations, PLACE_SLOTS rows at once; a row that stops hands its slot to the next.
 * Alone, a row's calibration and its steps are chains of dependent operations, each
 * waiting on the last; in lockstep the chains of different rows fill each other's
 * waits. Every row runs place_one's operations in place_one's order, so its result is
 * place_one's, bit for bit, whatever shares the lockstep with it. */
#define PLACE_GROUP 64
#define PLACE_SLOTS 8

/* Rows [0, n) of b: positions y (2n, the start positions on entry) after their steps,
 * into out (2n floats); returns the steps taken. Slot s's position is y[s], its row
 * row[s] (-1: idle). */
static long long iterate_group(const tsne_map *m, const tsne_place_options *o, int k,
                               const place_buf *b, const double *y0, int n, float *out) {
    enum { S = PLACE_SLOTS };
    double y[S][2], upd[S][2], g[S][2], rep[S][2], z[S];
    int row[S], it[S], still[S], next = 0;
    long long steps = 0;
    for (int s = 0; s < S; s++) row[s] = -1;
    for (;;) {
        int busy = 0;
        for (int s = 0; s < S; s++) {         /* idle slots take the next rows */
            while (row[s] < 0 && next < n) {
                if (o->n_iter > 0) {
                    row[s] = next;
                    y[s][0] = y0[2 * next];
                    y[s][1] = y0[2 * next + 1];
                    upd[s][0] = upd[s][1] = 0.0;
                    it[s] = still[s] = 0;
                } else {
                    out[2 * next] = (float)y0[2 * next];
                    out[2 * next + 1] = (float)y0[2 * next + 1];
                }
                next++;
            }
            busy += row[s] >= 0;
        }
        if (!busy) break;
        /* the field's potentials come from memory while the attractions are summed */
        fftrep_at at[S];
        int grid[S];
        for (int s = 0; s < S; s++) {
            grid[s] = row[s] >= 0 && on_grid(m, y[s], o->exact);
            if (grid[s]) fftrep_locate(&m->field, y[s], &at[s]);
        }
        for (int s = 0; s < S; s++) {
            if (row[s] < 0) continue;
            size_t e = (size_t)row[s] * k;
            attract(b->p + e, b->nx + e, b->ny + e, k, y[s], g[s]);
        }
        for (int s = 0; s < S; s++) {      /* tsne_map_field, in its two halves on the grid */
            if (grid[s]) fftrep_sum(&m->field, y[s], &at[s], rep[s], &z[s]);
            else if (row[s] >= 0) tsne_map_field(m, y[s], o->exact, rep[s], &z[s]);
        }
        for (int s = 0; s < S; s++) {
            if (row[s] < 0) continue;
            still[s] = finish_step(y[s], upd[s], g[s], rep[s], z[s], o, still[s]);
            if (++it[s] < o->n_iter && still[s] < TSNE_PLACE_STILL) continue;
            out[2 * row[s]] = (float)y[s][0];
            out[2 * row[s] + 1] = (float)y[s][1];
            steps += it[s];
            row[s] = -1;
        }
    }
    return steps;
}

/* Place rows [i0, i0 + n) of the batch, n <= PLACE_GROUP, with b's arrays. */
static void place_group(const tsne_map *m, const tsne_place_options *o, const float *X,
                        int i0, int n, place_buf *b, float *Y, const tsne_place_knn *nb) {
    tsne_place_timing *t = nb ? nb->timing : NULL;
    int k = tsne_neighbours(o->perplexity);
    long long t0 = t ? clock_thread_cpu_ns() : 0;
    for (int i = 0; i < n; i++)
        knn_index_query(m->index, X + (size_t)(i0 + i) * m->d, k, b->idx + (size_t)i * k,
                        b->d2 + (size_t)i * k);
    long long t1 = t ? clock_thread_cpu_ns() : 0;
    for (int i = 0; nb && i < n; i++) {
        const float *d2 = b->d2 + (size_t)i * k;
        /* as tsne_map_latent_nn and tsne_map_latent_knn have them */
        if (nb->nearest) nb->nearest[i0 + i] = sqrt((double)d2[0]);
        for (int r = 0; nb->ranks && r < nb->k; r++)
            nb->ranks[(size_t)(i0 + i) * nb->k + r] = sqrt((double)d2[r]);
    }
    tsne_calibrate_rows(b->d2, k, n, o->perplexity, b->p, b->cal);
    double y[2 * PLACE_GROUP];
    for (int i = 0; i < 2 * n; i++) y[i] = 0.0;
    for (size_t e = 0; e < (size_t)n * k; e++) {
        b->nx[e] = m->Y[2 * b->idx[e]];
        b->ny[e] = m->Y[2 * b->idx[e] + 1];
    }
    for (int r = 0; r < k; r++) {      /* the start: rows side by side, each in r order */
        for (int i = 0; i < n; i++) {
            size_t e = (size_t)i * k + r;
            y[2 * i] += b->p[e] * b->nx[e];
            y[2 * i + 1] += b->p[e] * b->ny[e];
        }
    }
    long long t2 = t ? clock_thread_cpu_ns() : 0;
    long long steps = iterate_group(m, o, k, b, y, n, Y + 2 * (size_t)i0);
    if (t) {
        long long t3 = clock_thread_cpu_ns();
        t->search_ns += t1 - t0;
        t->calibrate_ns += t2 - t1;
        t->iterate_ns += t3 - t2;
        t->steps += steps;
        t->groups++;
    }
}

typedef struct {
    const tsne_map *m;
    const tsne_place_options *o;
    const float *X;
    float *Y;
    const tsne_place_knn *nb;
    int failed;
} batch_ctx;

static void place_range(void *vctx, int begin, int end) {
    batch_ctx *c = vctx;
    place_buf b;
    int rows = end - begin < PLACE_GROUP ? end - begin : PLACE_GROUP;
    if (place_buf_init(&b, tsne_neighbours(c->o->perplexity), rows)) {
        c->failed = 1;          /* a benign race: every writer stores 1 */
    } else {
        for (int i = begin; i < end; i += PLACE_GROUP)
            place_group(c->m, c->o, c->X, i, end - i < PLACE_GROUP ? end - i : PLACE_GROUP,
                        &b, c->Y, c->nb);
    }
    place_buf_free(&b);
}

int tsne_place_batch(const tsne_map *m, const tsne_place_options *opt, const float *X,
                     int count, int n_threads, float *Y, const tsne_place_knn *nb, char *err,
                     size_t errlen) {
    tsne_place_options def;
    if (!opt) {
        tsne_place_options_default(&def);
        opt = &def;
    }
    if (count < 0 || check_place_options(opt, m->n, err, errlen) ||
        tsne_check_finite(X, (size_t)count * m->d, "tsne place input", err, errlen)) {
        if (count < 0) snprintf(err, errlen, "tsne place: negative count");
        return -1;
    }
    if (nb && nb->timing && n_threads > 1) {
        snprintf(err, errlen, "tsne place: stage timing needs one thread, not %d", n_threads);
        return -1;
    }
    if (nb && nb->ranks && (nb->k < 1 || nb->k > tsne_neighbours(opt->perplexity))) {
        snprintf(err, errlen, "tsne place: %d neighbours are not among the %d searched",
                 nb->k, tsne_neighbours(opt->perplexity));
        return -1;
    }
    batch_ctx c = { m, opt, X, Y, nb, 0 };
    par_for(n_threads > 0 ? n_threads : 1, count, place_range, &c);
    if (c.failed) {
        snprintf(err, errlen, "tsne place: out of memory");
        return -1;
    }
    return 0;
}

/* ---- co-placement -------------------------------------------------------------- */

/* Neighbour entry of a new point: target in the joint index space (reference
 * [0, n), fixed extra points [n, n + f), new points [n + f, n + f + count)). */
typedef struct {
    int target;
    double p;
} edge;

static int edge_cmp(const void *a, const void *b) {
    int x = ((const edge *)a)->target, y = ((const edge *)b)->target;
    return (x > y) - (x < y);
}

typedef struct {
    const tsne_map *m;
    const tsne_place_options *o;
    const float *Xf;             /* f fixed extra latents (the window), may be NULL */
    const float *Yf;             /* their positions */
    int f;
    const float *Xn;             /* count new latents */
    int count;
} coplace_in;

/* Merge two candidate lists (each sorted by distance) into the k nearest. */
static int merge2(const float *da, const int *ia, int na, int offa, const float *db,
                  const int *ib, int nb, int offb, int k, float *d2, int *idx) {
    int a = 0, b = 0, out = 0;
    while (out < k && (a < na || b < nb)) {
        if (b >= nb || (a < na && da[a] <= db[b])) {
            d2[out] = da[a];
            idx[out++] = ia[a++] + offa;
        } else {
            d2[out] = db[b];
            idx[out++] = ib[b++] + offb;
        }
    }
    return out;
}

typedef struct {
    const coplace_in *in;
    const int64_t *row;
    const edge *edges;
    const double *pos;           /* joint positions: reference, fixed, new */
    const bhtree *fixed_tree;    /* over the fixed extra points, or NULL */
    const double *rep_new;       /* Barnes-Hut new-new sums (large sets), or NULL */
    const double *z_new;
    double *G;
} grad_ctx;

static void coplace_grad(void *vctx, int begin, int end) {
    grad_ctx *c = vctx;
    const coplace_in *in = c->in;
    const tsne_place_options *o = in->o;
    int n = in->m->n, f = in->f, cnt = in->count;
    const double *pos = c->pos, *Yn = pos + 2 * ((size_t)n + f);
    for (int i = begin; i < end; i++) {
        double q[2] = { Yn[2 * i], Yn[2 * i + 1] }, a[2] = { 0, 0 }, r[2], z;
        for (int64_t e = c->row[i]; e < c->row[i + 1]; e++) {
            int t = c->edges[e].target;
            double dx = q[0] - pos[2 * t], dy = q[1] - pos[2 * t + 1];
            double v = c->edges[e].p / (1.0 + dx * dx + dy * dy);
            a[0] += v * dx;
            a[1] += v * dy;
        }
        tsne_map_field(in->m, q, o->exact, r, &z);
        if (c->fixed_tree) {
            double rf[2], zf;
            bh_query(c->fixed_tree, q, 0.5, rf, &zf);
            r[0] += rf[0]; r[1] += rf[1]; z += zf;
        }
        if (c->rep_new) {
            r[0] += c->rep_new[2 * i];
            r[1] += c->rep_new[2 * i + 1];
            z += c->z_new[i];
        } else {
            for (int j = 0; j < cnt; j++) {
                if (j == i) continue;
                double dx = q[0] - Yn[2 * j], dy = q[1] - Yn[2 * j + 1];
                double w = 1.0 / (1.0 + dx * dx + dy * dy);
                z += w;
                r[0] += w * w * dx;
                r[1] += w * w * dy;
            }
        }
        c->G[2 * i] = o->exaggeration * a[0] - r[0] / z;
        c->G[2 * i + 1] = o->exaggeration * a[1] - r[1] / z;
    }
}

typedef struct {
    const coplace_in *in;
    int k, kf, kn;
    const int *ir, *ifx, *inw;
    const float *dr, *dfx, *dnw;
    int *jidx, *jk;
    float *jd2;
    double *pj;
} merge_ctx;

static void merge_calibrate(void *vctx, int begin, int end) {
    merge_ctx *c = vctx;
    int k = c->k, n = c->in->m->n, f = c->in->f;
    float tmpd[KNN_MAX_K];
    int tmpi[KNN_MAX_K];
    for (int i = begin; i < end; i++) {
        size_t at = (size_t)i * k;
        /* reference + fixed first, then + new */
        int m1 = merge2(c->dr + at, c->ir + at, k, 0, c->dfx + (size_t)i * c->kf,
                        c->ifx + (size_t)i * c->kf, c->kf, n, k, tmpd, tmpi);
        c->jk[i] = merge2(tmpd, tmpi, m1, 0, c->dnw + (size_t)i * c->kn,
                          c->inw + (size_t)i * c->kn, c->kn, n + f, k, c->jd2 + at,
                          c->jidx + at);
        tsne_calibrate(c->jd2 + at, c->jk[i], c->in->o->perplexity, c->pj + at, NULL);
    }
}

/* The k nearest rows of ref (n x d) for each of the m rows of Q, by SGEMM blocks;
 * ref_norms may be NULL (then computed here). */
static int knn_against(const float *ref, const float *ref_norms, int n, int d, const float *Q,
                       int m, int k, int *idx, float *dist2) {
    float *norms = ref_norms ? NULL : malloc((size_t)n * sizeof *norms);
    int block = m < 256 ? m : 256;
    float *scratch = malloc(knn_batch_scratch(n, block) * sizeof *scratch);
    if ((!ref_norms && !norms) || !scratch) {
        free(norms); free(scratch);
        return -1;
    }
    if (norms) knn_norms(ref, n, d, norms);
    else norms = (float *)ref_norms;
    for (int q0 = 0; q0 < m; q0 += block) {
        int qn = m - q0 < block ? m - q0 : block;
        knn_batch(ref, norms, n, d, Q + (size_t)q0 * d, qn, k, scratch, idx + (size_t)q0 * k,
                  dist2 + (size_t)q0 * k);
    }
    if (!ref_norms) free(norms);
    free(scratch);
    return 0;
}

/* Co-placement's scratch for cnt new points, f fixed ones and k neighbours (kf fixed, kn
 * new), in one zeroed block (block.h): the 8-byte parts, then the 4-byte ones. The
 * neighbour lists of kf or kn columns keep a spare element for when they have none. */
typedef struct {
    int64_t *row, *fill;         /* new point i's edges: [row[i], row[i + 1]) */
    edge *edges;
    double *pj, *pos, *G, *upd, *rep, *znew, *yfix;
    float *dr, *dfx, *dnw, *jd2;
    int *ir, *ifx, *inw, *jidx, *jk;
} coplace_scratch;

static void coplace_parts(block *b, coplace_scratch *s, size_t cnt, size_t f, size_t k,
                          size_t kf, size_t kn, size_t n_joint) {
    const size_t nk = cnt * k;
    BLOCK_TAKE(b, s->row, cnt + 1);
    BLOCK_TAKE(b, s->fill, cnt);
    BLOCK_TAKE(b, s->edges, 2 * nk + 1);
    BLOCK_TAKE(b, s->pj, nk);
    BLOCK_TAKE(b, s->pos, n_joint * 2);
    BLOCK_TAKE(b, s->G, cnt * 2);
    BLOCK_TAKE(b, s->upd, cnt * 2);
    BLOCK_TAKE(b, s->rep, cnt * 2);
    BLOCK_TAKE(b, s->znew, cnt);
    BLOCK_TAKE(b, s->yfix, f * 2 + 1);
    BLOCK_TAKE(b, s->dr, nk);
    BLOCK_TAKE(b, s->dfx, cnt * kf + 1);
    BLOCK_TAKE(b, s->dnw, cnt * kn + 1);
    BLOCK_TAKE(b, s->jd2, nk);
    BLOCK_TAKE(b, s->ir, nk);
    BLOCK_TAKE(b, s->ifx, cnt * kf + 1);
    BLOCK_TAKE(b, s->inw, cnt * kn + 1);
    BLOCK_TAKE(b, s->jidx, nk);
    BLOCK_TAKE(b, s->jk, cnt);
}

static int coplace(const coplace_in *in, float *Yout, char *err, size_t errlen) {
    const tsne_map *m = in->m;
    const tsne_place_options *o = in->o;
    int n = m->n, f = in->f, cnt = in->count, d = m->d;
    int threads = o->n_threads > 0 ? o->n_threads : 1;
    int k = tsne_neighbours(o->perplexity);
    int kf = f < k ? f : k, kn = cnt - 1 < k ? cnt - 1 : k;
    size_t n_joint = (size_t)n + f + cnt;
    int rc = -1;
    coplace_scratch s;
    block b = {0};
    coplace_parts(&b, &s, (size_t)cnt, (size_t)f, (size_t)k, (size_t)kf, (size_t)kn, n_joint);
    void *mem = block_alloc(&b);
    bhtree bh = { 0 }, fixed_tree = { 0 };
    if (!mem) goto oom;
    coplace_parts(&b, &s, (size_t)cnt, (size_t)f, (size_t)k, (size_t)kf, (size_t)kn, n_joint);
    int64_t *row = s.row, *fill = s.fill;
    edge *edges = s.edges;
    double *pj = s.pj, *pos = s.pos, *G = s.G, *upd = s.upd, *rep = s.rep, *znew = s.znew,
           *yfix = s.yfix;
    float *dr = s.dr, *dfx = s.dfx, *dnw = s.dnw, *jd2 = s.jd2;
    int *ir = s.ir, *ifx = s.ifx, *inw = s.inw, *jidx = s.jidx, *jk = s.jk;
    /* 1. neighbours among reference, fixed extra and new points; calibration */
    if (knn_against(m->X, m->norms, n, d, in->Xn, cnt, k, ir, dr)) goto oom;
    if (kf > 0 && knn_against(in->Xf, NULL, f, d, in->Xn, cnt, kf, ifx, dfx)) goto oom;
    if (kn > 0 && knn_all(in->Xn, cnt, d, kn, threads, inw, dnw, err, errlen)) goto done;
    merge_ctx mc = { in, k, kf, kn, ir, ifx, inw, dr, dfx, dnw, jidx, jk, jd2, pj };
    par_for(threads, cnt, merge_calibrate, &mc);
    /* 2. edges: reference and fixed neighbours as they are; new-new pairs symmetrised
     * (p_ij + p_ji) / 2, so that co-occurring points pull each other mutually. */
    for (int i = 0; i < cnt; i++) {
        for (int r = 0; r < jk[i]; r++) {
            int t = jidx[(size_t)i * k + r];
            row[i + 1]++;
            if (t >= n + f) row[t - n - f + 1]++;
        }
    }
    for (int i = 0; i < cnt; i++) row[i + 1] += row[i];
    memcpy(fill, row, (size_t)cnt * sizeof *fill);
    for (int i = 0; i < cnt; i++) {
        for (int r = 0; r < jk[i]; r++) {
            int t = jidx[(size_t)i * k + r];
            double p = pj[(size_t)i * k + r];
            if (t < n + f) {
                edges[fill[i]++] = (edge){ t, p };
            } else {
                edges[fill[i]++] = (edge){ t, 0.5 * p };
                edges[fill[t - n - f]++] = (edge){ n + f + i, 0.5 * p };
            }
        }
    }
    for (int i = 0; i < cnt; i++) {       /* duplicates merge; the emptied slot keeps p = 0 */
        edge *e = edges + row[i];
        int len = (int)(row[i + 1] - row[i]);
        qsort(e, (size_t)len, sizeof *e, edge_cmp);
        for (int a = 1; a < len; a++) {
            if (e[a].target == e[a - 1].target) {
                e[a].p += e[a - 1].p;
                e[a - 1].p = 0;
            }
        }
    }
    /* 3. joint positions; new points start at the P-weighted mean of their neighbours
     * with known positions (or at their nearest reference point if they have none) */
    memcpy(pos, m->Y, (size_t)n * 2 * sizeof *pos);
    for (int e = 0; e < 2 * f; e++) pos[2 * (size_t)n + e] = yfix[e] = in->Yf[e];
    double *Yn = pos + 2 * ((size_t)n + f);
    for (int i = 0; i < cnt; i++) {
        double sx = 0, sy = 0, sw = 0;
        for (int64_t e = row[i]; e < row[i + 1]; e++) {
            int t = edges[e].target;
            if (t >= n + f) continue;
            sx += edges[e].p * pos[2 * t];
            sy += edges[e].p * pos[2 * t + 1];
            sw += edges[e].p;
        }
        int near = ir[(size_t)i * k];
        Yn[2 * i] = sw > 0 ? sx / sw : m->Y[2 * near];
        Yn[2 * i + 1] = sw > 0 ? sy / sw : m->Y[2 * near + 1];
    }
    if (f > 0 && bh_build(&fixed_tree, yfix, f)) goto oom;
    /* 4. synchronous iterations */
    int big = cnt > EXACT_NEW_MAX;
    grad_ctx gc = { in, row, edges, pos, f > 0 ? &fixed_tree : NULL, big ? rep : NULL,
                    big ? znew : NULL, G };
    for (int it = 0; it < o->n_iter; it++) {
        if (big && bh_repulsion(&bh, Yn, cnt, 0.5, threads, rep, znew) < 0) goto oom;
        par_for(threads, cnt, coplace_grad, &gc);
        for (int i = 0; i < cnt; i++) step(Yn + 2 * i, upd + 2 * i, G + 2 * i, o);
    }
    for (int e = 0; e < 2 * cnt; e++) Yout[e] = (float)Yn[e];
    rc = 0;
    goto done;
oom:
    snprintf(err, errlen, "tsne coplace: out of memory (%d points)", cnt);
done:
    free(mem);
    bh_free(&bh);
    bh_free(&fixed_tree);
    return rc;
}

int tsne_coplace(const tsne_map *m, const tsne_place_options *opt, const float *X,
                 int count, float *Y, char *err, size_t errlen) {
    tsne_place_options def;
    if (!opt) {
        tsne_place_options_default(&def);
        opt = &def;
    }
    if (count < 1) {
        snprintf(err, errlen, "tsne coplace: need at least one point");
        return -1;
    }
    if (check_place_options(opt, m->n, err, errlen) ||
        tsne_check_finite(X, (size_t)count * m->d, "tsne coplace input", err, errlen))
        return -1;
    coplace_in in = { m, opt, NULL, NULL, 0, X, count };
    return coplace(&in, Y, err, errlen);
}

/* ---- sliding window ------------------------------------------------------------ */

struct tsne_window {
    const tsne_map *m;
    int capacity, count;
    float *X;     /* count x d, oldest first */
    float *Y;     /* count x 2 */
};

/* The window's points, carved after it (block.h). */
static void window_parts(block *b, tsne_window *w, size_t capacity, int d) {
    BLOCK_TAKE(b, w->X, capacity * (size_t)d);
    BLOCK_TAKE(b, w->Y, capacity * 2);
}

tsne_window *tsne_window_create(const tsne_map *m, int capacity, char *err, size_t errlen) {
    if (capacity < 0) {
        snprintf(err, errlen, "tsne window: negative capacity");
        return NULL;
    }
    block b = BLOCK_HEAD(tsne_window);
    tsne_window probe;
    window_parts(&b, &probe, (size_t)capacity, m->d);
    tsne_window *w = block_alloc(&b);
    if (!w) {
        snprintf(err, errlen, "tsne window: out of memory (capacity %d)", capacity);
        return NULL;
    }
    window_parts(&b, w, (size_t)capacity, m->d);
    w->m = m;
    w->capacity = capacity;
    return w;
}

void tsne_window_free(tsne_window *w) { free(w); }

int tsne_window_count(const tsne_window *w) { return w->count; }

const float *tsne_window_positions(const tsne_window *w) { return w->Y; }

int tsne_window_add(tsne_window *w, const tsne_place_options *opt, const float *X, int count,
                    float *Y, char *err, size_t errlen) {
    tsne_place_options def;
    const tsne_map *m = w->m;
    int d = m->d;
    if (!opt) {
        tsne_place_options_default(&def);
        opt = &def;
    }
    if (count < 1) {
        snprintf(err, errlen, "tsne window: need at least one point");
        return -1;
    }
    if (check_place_options(opt, m->n, err, errlen) ||
        tsne_check_finite(X, (size_t)count * d, "tsne window input", err, errlen))
        return -1;
    coplace_in in = { m, opt, w->X, w->Y, w->count, X, count };
    if (coplace(&in, Y, err, errlen)) return -1;
    for (size_t i = 0; i < (size_t)count * 2; i++)
        if (!isfinite(Y[i])) return 0;       /* not appended: see tsne.h */
    /* Append; the oldest leave. A batch larger than the window keeps its newest rows. */
    int keep_new = count < w->capacity ? count : w->capacity;
    int keep_old = w->count + keep_new > w->capacity ? w->capacity - keep_new : w->count;
    int drop = w->count - keep_old;
    memmove(w->X, w->X + (size_t)drop * d, (size_t)keep_old * d * sizeof *w->X);
    memmove(w->Y, w->Y + (size_t)drop * 2, (size_t)keep_old * 2 * sizeof *w->Y);
    memcpy(w->X + (size_t)keep_old * d, X + (size_t)(count - keep_new) * d,
           (size_t)keep_new * d * sizeof *w->X);
    memcpy(w->Y + (size_t)keep_old * 2, Y + (size_t)(count - keep_new) * 2,
           (size_t)keep_new * 2 * sizeof *w->Y);
    w->count = keep_old + keep_new;
    return 0;
}
