/* Barnes-Hut repulsion for the t-SNE fit (see tsne_internal.h).
 *
 * Why Barnes-Hut for the fit although the grid is used for the fixed map: the grid's
 * cost grows with the map's area (a t-SNE map of 5000 points already spans ~150 units,
 * i.e. a 1024^2 FFT per iteration at the needed resolution: ~70 ms on our FFT), while
 * Barnes-Hut's grows with N log N whatever the extent (~1.5 ms at N = 5000).
 *
 * The tree is rebuilt every iteration: points are sorted by Morton code (radix sort, no
 * data-dependent branches), so every cell is a contiguous range of the sorted points and
 * the tree falls out of the code prefixes; coordinates are kept in that order, so leaves
 * and neighbouring groups touch neighbouring memory. Centres of mass come bottom-up. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "par.h"
#include "simd.h"
#include "tsne_internal.h"

#define LEAF 8
#define BITS 16        /* quantisation per axis: cells below extent / 65536 are leaves */
#define MAX_DEPTH (BITS + 1)

void bh_free(bhtree *t) {
    free(t->nodes); free(t->perm); free(t->perm2); free(t->code); free(t->code2);
    free(t->px); free(t->py); free(t->zbuf);
    memset(t, 0, sizeof *t);
}

static int new_nodes(bhtree *t, int count) {
    if (t->n_nodes + count > t->cap_nodes) {
        int cap = t->cap_nodes ? 2 * t->cap_nodes : 1024;
        while (cap < t->n_nodes + count) cap *= 2;
        bh_node *nn = realloc(t->nodes, (size_t)cap * sizeof *nn);
        if (!nn) return -1;
        t->nodes = nn;
        t->cap_nodes = cap;
    }
    int first = t->n_nodes;
    t->n_nodes += count;
    return first;
}

/* Morton code of a point quantised to BITS bits per axis in the root cell: x bits at
 * even positions, y bits at odd ones, so the 2-bit digit at each level is the quadrant
 * (bit 0: right half, bit 1: upper half). */
static uint32_t morton(double x, double y, double x0, double y0, double scale) {
    double fx = (x - x0) * scale, fy = (y - y0) * scale;
    uint32_t qx = fx <= 0 ? 0 : fx >= (1 << BITS) - 1 ? (1 << BITS) - 1 : (uint32_t)fx;
    uint32_t qy = fy <= 0 ? 0 : fy >= (1 << BITS) - 1 ? (1 << BITS) - 1 : (uint32_t)fy;
    uint32_t code = 0;
    for (int b = 0; b < BITS; b++)
        code |= ((qx >> b) & 1u) << (2 * b) | ((qy >> b) & 1u) << (2 * b + 1);
    return code;
}

/* Sort the points by Morton code: LSD radix sort, 8 bits a pass, stable. */
static void sort_codes(bhtree *t, int n) {
    uint32_t *key = t->code, *key2 = t->code2;
    int *idx = t->perm, *idx2 = t->perm2;
    for (int shift = 0; shift < 2 * BITS; shift += 8) {
        int count[257] = { 0 };
        for (int k = 0; k < n; k++) count[((key[k] >> shift) & 255u) + 1]++;
        for (int b = 0; b < 256; b++) count[b + 1] += count[b];
        for (int k = 0; k < n; k++) {
            int at = count[(key[k] >> shift) & 255u]++;
            key2[at] = key[k];
            idx2[at] = idx[k];
        }
        uint32_t *tk = key; key = key2; key2 = tk;
        int *ti = idx; idx = idx2; idx2 = ti;
    }
    /* 2 * BITS / 8 passes is even, so the result is back in t->code / t->perm. */
}

/* First k in [lo, hi) whose code has digit >= d at `level` (codes sorted). */
static int digit_bound(const uint32_t *code, int lo, int hi, int level, uint32_t d) {
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (((code[mid] >> (2 * level)) & 3u) < d) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* Fill node `id` for the points [start, end) that share the code digits above `level`;
 * centres of mass come bottom-up from the children. */
static int build(bhtree *t, int id, int start, int end, int level, double side) {
    int cnt = end - start;
    bh_node *nd = &t->nodes[id];
    nd->w2 = side * side;
    nd->cnt = cnt;
    nd->start = start; nd->end = end;
    nd->child = 0; nd->n_child = 0;
    if (cnt <= LEAF || level < 0) {
        double sx = 0, sy = 0;
        for (int k = start; k < end; k++) {
            sx += t->px[k];
            sy += t->py[k];
        }
        nd->cx = sx / cnt; nd->cy = sy / cnt;
        return 0;
    }
    int bounds[5] = { start, 0, 0, 0, end };
    for (uint32_t q = 1; q < 4; q++) bounds[q] = digit_bound(t->code, start, end, level, q);
    int n_child = 0;
    for (int q = 0; q < 4; q++) n_child += bounds[q + 1] > bounds[q];
    if (n_child == 1) return build(t, id, start, end, level - 1, 0.5 * side);
    int first = new_nodes(t, n_child);   /* may move t->nodes */
    if (first < 0) return -1;
    t->nodes[id].child = first;
    t->nodes[id].n_child = n_child;
    double sx = 0, sy = 0;
    for (int q = 0, c = first; q < 4; q++) {
        if (bounds[q + 1] == bounds[q]) continue;
        if (build(t, c, bounds[q], bounds[q + 1], level - 1, 0.5 * side)) return -1;
        sx += t->nodes[c].cx * t->nodes[c].cnt;
        sy += t->nodes[c].cy * t->nodes[c].cnt;
        c++;
    }
    t->nodes[id].cx = sx / cnt;
    t->nodes[id].cy = sy / cnt;
    return 0;
}

/* Groups: the highest nodes with at most GROUP points. Each group walks the tree once
 * with its bounding box, which is conservative (a cell is summarised only if it is far
 * enough from every point of the group), and collects an interaction list: summarised
 * cells as (centre of mass, count), leaves as their points with count 1. Every point of
 * the group then runs through the list in one branch-free loop that the compiler
 * vectorises; the self pair contributes exactly w = 1 to z and 0 to the force, and is
 * removed afterwards. */
#define GROUP 128      /* measured best of 8..256 at N = 5000 */
#define LANES 8

static int collect_groups(const bhtree *t, int id, int *groups, int count) {
    const bh_node *nd = &t->nodes[id];
    if (nd->cnt <= GROUP || nd->n_child == 0) {
        groups[count] = id;
        return count + 1;
    }
    for (int c = 0; c < nd->n_child; c++) count = collect_groups(t, nd->child + c, groups, count);
    return count;
}

typedef struct {
    const bhtree *t;
    const int *groups;
    double theta2;
    double *rep;
    int list_cap;
} walk_ctx;

/* The interaction sums of query q over a list of n_list (x, y, count) entries. */
HOT_INLINE void sum_list(const double *lx, const double *ly, const double *lc, int n_list,
                     double qx, double qy, double out[3]) {
    double z[LANES] = { 0 }, rx[LANES] = { 0 }, ry[LANES] = { 0 };
    int k = 0;
    for (; k + LANES <= n_list; k += LANES) {
        for (int u = 0; u < LANES; u++) {
            double dx = qx - lx[k + u], dy = qy - ly[k + u];
            double w = 1.0 / (1.0 + dx * dx + dy * dy), cw = lc[k + u] * w;
            z[u] += cw;
            rx[u] += cw * w * dx;
            ry[u] += cw * w * dy;
        }
    }
    for (; k < n_list; k++) {
        double dx = qx - lx[k], dy = qy - ly[k];
        double w = 1.0 / (1.0 + dx * dx + dy * dy), cw = lc[k] * w;
        z[0] += cw;
        rx[0] += cw * w * dx;
        ry[0] += cw * w * dy;
    }
    out[0] = out[1] = out[2] = 0.0;
    for (int u = 0; u < LANES; u++) {
        out[0] += z[u];
        out[1] += rx[u];
        out[2] += ry[u];
    }
}

HOT_LOOP static void walk_range(void *vctx, int begin, int end) {
    walk_ctx *c = vctx;
    const bhtree *t = c->t;
    const bh_node *nodes = t->nodes;
    double *lx = malloc((size_t)c->list_cap * 3 * sizeof *lx);
    int *stack = malloc((size_t)(4 * MAX_DEPTH + 8) * sizeof *stack);
    if (!lx || !stack) {
        /* Out of memory: mark the groups' z as NaN so the caller reports it. */
        for (int g = begin; g < end; g++) {
            const bh_node *gn = &nodes[c->groups[g]];
            for (int k = gn->start; k < gn->end; k++) t->zbuf[k] = NAN;
        }
        free(lx); free(stack);
        return;
    }
    double *ly = lx + c->list_cap, *lc = ly + c->list_cap;
    for (int g = begin; g < end; g++) {
        const bh_node *gn = &nodes[c->groups[g]];
        double bx0 = t->px[gn->start], bx1 = bx0, by0 = t->py[gn->start], by1 = by0;
        for (int k = gn->start; k < gn->end; k++) {
            bx0 = t->px[k] < bx0 ? t->px[k] : bx0;
            bx1 = t->px[k] > bx1 ? t->px[k] : bx1;
            by0 = t->py[k] < by0 ? t->py[k] : by0;
            by1 = t->py[k] > by1 ? t->py[k] : by1;
        }
        int n_list = 0, sp = 0;
        stack[sp++] = 0;
        while (sp) {
            const bh_node *nd = &nodes[stack[--sp]];
            double dx = nd->cx < bx0 ? bx0 - nd->cx : (nd->cx > bx1 ? nd->cx - bx1 : 0.0);
            double dy = nd->cy < by0 ? by0 - nd->cy : (nd->cy > by1 ? nd->cy - by1 : 0.0);
            if (nd->w2 < c->theta2 * (dx * dx + dy * dy)) {
                lx[n_list] = nd->cx; ly[n_list] = nd->cy; lc[n_list] = nd->cnt;
                n_list++;
            } else if (nd->n_child == 0) {
                for (int k = nd->start; k < nd->end; k++) {
                    lx[n_list] = t->px[k]; ly[n_list] = t->py[k]; lc[n_list] = 1.0;
                    n_list++;
                }
            } else {
                for (int ch = 0; ch < nd->n_child; ch++) stack[sp++] = nd->child + ch;
            }
        }
        for (int k = gn->start; k < gn->end; k++) {
            double out[3];
            sum_list(lx, ly, lc, n_list, t->px[k], t->py[k], out);
            int i = t->perm[k];
            c->rep[2 * i] = out[1];
            c->rep[2 * i + 1] = out[2];
            t->zbuf[k] = out[0] - 1.0;     /* the self pair */
        }
    }
    free(lx);
    free(stack);
}

int bh_build(bhtree *t, const double *y, int n) {
    if (n < 1) return -1;
    if (n > t->cap_n) {
        free(t->perm); free(t->perm2); free(t->code); free(t->code2);
        free(t->px); free(t->py); free(t->zbuf);
        t->perm = malloc((size_t)n * sizeof *t->perm);
        t->perm2 = malloc((size_t)n * sizeof *t->perm2);
        t->code = malloc((size_t)n * sizeof *t->code);
        t->code2 = malloc((size_t)n * sizeof *t->code2);
        t->px = malloc((size_t)n * sizeof *t->px);
        t->py = malloc((size_t)n * sizeof *t->py);
        t->zbuf = malloc((size_t)n * sizeof *t->zbuf);
        if (!t->perm || !t->perm2 || !t->code || !t->code2 || !t->px || !t->py || !t->zbuf) {
            t->cap_n = 0;
            return -1;
        }
        t->cap_n = n;
    }
    double x0 = y[0], x1 = y[0], y0 = y[1], y1 = y[1];
    for (int i = 0; i < n; i++) {
        double a = y[2 * i], b = y[2 * i + 1];
        x0 = a < x0 ? a : x0;
        x1 = a > x1 ? a : x1;
        y0 = b < y0 ? b : y0;
        y1 = b > y1 ? b : y1;
    }
    double side = x1 - x0 > y1 - y0 ? x1 - x0 : y1 - y0;
    side += 1e-9 * side + 1e-300;
    double scale = (double)(1 << BITS) / side;
    for (int i = 0; i < n; i++) {
        t->perm[i] = i;
        t->code[i] = morton(y[2 * i], y[2 * i + 1], x0, y0, scale);
    }
    sort_codes(t, n);
    for (int k = 0; k < n; k++) {
        t->px[k] = y[2 * t->perm[k]];
        t->py[k] = y[2 * t->perm[k] + 1];
    }
    t->n_nodes = 0;
    if (new_nodes(t, 1) < 0 || build(t, 0, 0, n, BITS - 1, side)) return -1;
    return 0;
}

double bh_repulsion(bhtree *t, const double *y, int n, double theta, int n_threads,
                    double *rep, double *z) {
    if (n < 1 || bh_build(t, y, n)) return -1.0;
    int *groups = malloc((size_t)t->n_nodes * sizeof *groups);
    if (!groups) return -1.0;
    int n_groups = collect_groups(t, 0, groups, 0);
    walk_ctx c = { t, groups, theta * theta, rep, n + t->n_nodes };
    par_for(n_threads, n_groups, walk_range, &c);
    free(groups);
    double Z = 0;
    for (int k = 0; k < n; k++) {
        Z += t->zbuf[k];
        if (z) z[t->perm[k]] = t->zbuf[k];
    }
    return isnan(Z) ? -1.0 : Z;
}

void bh_query(const bhtree *t, const double q[2], double theta, double rep[2], double *z) {
    int stack[4 * MAX_DEPTH + 8], sp = 0;
    double rx = 0, ry = 0, s = 0, theta2 = theta * theta;
    stack[sp++] = 0;
    while (sp) {
        const bh_node *nd = &t->nodes[stack[--sp]];
        double dx = q[0] - nd->cx, dy = q[1] - nd->cy, d2 = dx * dx + dy * dy;
        if (nd->w2 < theta2 * d2) {
            double w = 1.0 / (1.0 + d2), cw = nd->cnt * w;
            s += cw;
            rx += cw * w * dx;
            ry += cw * w * dy;
        } else if (nd->n_child == 0) {
            for (int k = nd->start; k < nd->end; k++) {
                double ex = q[0] - t->px[k], ey = q[1] - t->py[k];
                double w = 1.0 / (1.0 + ex * ex + ey * ey);
                s += w;
                rx += w * w * ex;
                ry += w * w * ey;
            }
        } else {
            for (int ch = 0; ch < nd->n_child; ch++) stack[sp++] = nd->child + ch;
        }
    }
    rep[0] = rx;
    rep[1] = ry;
    *z = s;
}
