/* detector.h — AnoDM as a product: a trained beta-VAE, the reference map of normal
 * latents, and the calibration that turns two distances into one score with a
 * threshold, all in one object that a model bundle stores and the daemon loads.
 *
 * Scoring one sample x (SPEC.md section 1):
 *     D_RE     = ||x - x'||^2 / ||x||_2         x' decoded from mu (deterministic)
 *     D_MAP    = mean 2-D distance from the placed mu(x) to its k nearest reference points
 *     D_LATENT = distance from mu(x) to its nearest reference latent (the paper's
 *                latent 1-NN comparison)
 *     D_2      = D_MAP or D_LATENT: the detector's `term`
 *     raw      = alpha * D_RE + (1 - alpha) * D_2                the paper's eq. 2
 *     S        = alpha * (D_RE - m_re) / s_re + (1 - alpha) * (D_2 - m_2) / s_2
 * where m and s are each term's median and robust spread on held-out NORMAL calibration
 * samples, so neither term dominates by its units and no test label is needed. Why two
 * choices of D_2: a point placed alone into the fixed map lands among its nearest normal
 * neighbours, so D_MAP says little unless anomalies arrive together (context mode);
 * D_LATENT needs no company and measured better at 1-10% anomalies (docs/RESULTS.md).
 * Every term is computed and reported whichever joins the score; the map position is
 * always there for display. The
 * threshold is a quantile of S on those normals (0.99: ~1% false alarms) and a score's
 * p-value is (1 + #calibration S >= s) / (n_cal + 1).
 *
 * The detector owns its arrays; detector_free releases them. */
#ifndef ANODM_DETECTOR_H
#define ANODM_DETECTOR_H

#include <stddef.h>
#include <stdint.h>

#include "memory.h"
#include "scaling.h"
#include "score.h"
#include "tsne.h"
#include "vae.h"

/* Limits of a detector's sizes (a bundle holds no more, BUNDLE.md). */
#define DETECTOR_MAX_REF (1 << 21)       /* reference points */
#define DETECTOR_MAX_WINDOW (1 << 16)    /* context mode's window */

typedef enum { PLACE_SINGLE = 0, PLACE_CONTEXT = 1 } place_mode;
/* The distance fused with D_RE. */
typedef enum { TERM_MAP = 0, TERM_LATENT = 1 } fused_term;
/* The latent that goes to the map and to D_LATENT: the encoder's mean mu (the paper's
 * choice and the default), or a sample z = mu + sigma * eps (the paper's Table 2
 * comparison). D_RE always decodes mu. */
typedef enum { LATENT_MU = 0, LATENT_Z = 1 } latent_input;

typedef struct {
    vae_model vae;
    scaling scale;               /* applied to every sample before the VAE (scaling.h):
                                  * fitted on the training normals; none for pixels */
    int n_ref;                   /* reference points */
    float *ref_latent;           /* n_ref x latent: encoder means of training samples */
    float *ref_map;              /* n_ref x 2: their t-SNE positions */
    int32_t *ref_id;             /* n_ref: each point's index in the training set */
    /* scoring settings */
    place_mode mode;
    tsne_place_options place;
    int window;                  /* context mode: recent points kept */
    int k;                       /* neighbours for D_MAP */
    double alpha;                /* weight of the reconstruction term */
    fused_term term;             /* D_MAP or D_LATENT beside D_RE in the fused score */
    latent_input input;          /* mu (default) or z, for the reference and every sample */
    /* the stream memory (memory.h): off in bundles before format 4 */
    int use_memory;
    memory_options memory;
    score_fusion fusion;         /* with a memory: how z_memory joins the base score */
    /* calibration on held-out normals (memory: on a stream of them through the memory) */
    term_stats re, map, latent, mem;
    double quantile, threshold;
    int n_cal;
    float *cal_scores;           /* n_cal fused scores, ascending: p-values */
    float *cal_base, *cal_memory; /* FUSION_FISHER: n_cal base scores and z_memory of the
                                  * calibration stream, ascending; NULL otherwise */
    char *provenance;            /* JSON text from training (data, settings, metrics) */
} detector;

/* One sample's result, the score record: X(name, type, group, doc) for each number
 * scoring reports about a sample, in their one order. Every output is driven by this
 * table: the daemon's JSON (proto/api.c), the columns of its SQLite log (daemon/log.c,
 * which adds a missing column to an older log), anodm score's CSV columns and JSON lines
 * (cli/cmd_score.c), and the dashboard's list of terms (served with a model's metadata).
 * A new field goes at the end, so that CSV columns and the log only grow: a new term is
 * one line here (its d_ distance and its z_ standardised value, group TERM) and its
 * computation in scorer.c. core/ knows no JSON or SQL: the expansions live there.
 *   type   REAL   a double; NaN when unknown (z_latent of a bundle without its
 *                 statistics), written as null / NULL
 *          FLAG   an int, 0 or 1
 *          INDEX  an int32_t, a training-set index
 *   group  VERDICT  the score and what is decided from it
 *          TERM     a distance d_NAME, or z_NAME: the same standardised on the
 *                   calibration normals
 *          POSITION a coordinate of the sample placed on the map
 *          NEAREST  its nearest reference point on the map
 * d_memory and z_memory are NaN (null) for a detector without a stream memory.
 * out_of_range is 1 when the detector scales its inputs and some value of the sample lies
 * farther outside the training range than that range's width (scaling.h): the sample is
 * scored as it is, and the flag says its score extrapolates. */
#define DETECTOR_RESULT_FIELDS(X)                                                           \
    X(score, REAL, VERDICT, "fused score S: the standardised terms mixed by alpha")           \
    X(is_anomaly, FLAG, VERDICT, "S is above the calibration threshold")                    \
    X(p_value, REAL, VERDICT, "share of calibration normals scoring at least S")             \
    X(raw_score, REAL, VERDICT, "the paper's score alpha D_RE + (1 - alpha) D_2")             \
    X(d_re, REAL, TERM, "D_RE, reconstruction error")                                       \
    X(d_map, REAL, TERM, "D_MAP, map distance")                                             \
    X(z_re, REAL, TERM, "D_RE standardised")                                                \
    X(z_map, REAL, TERM, "D_MAP standardised")                                              \
    X(x, REAL, POSITION, "map position, x")                                                 \
    X(y, REAL, POSITION, "map position, y")                                                 \
    X(nearest_ref, INDEX, NEAREST, "training-set index of the nearest reference point")     \
    X(nearest_distance, REAL, NEAREST, "its map distance")                                  \
    X(d_latent, REAL, TERM, "D_LATENT, latent distance")                                    \
    X(z_latent, REAL, TERM, "D_LATENT standardised")                                      \
    X(d_memory, REAL, TERM, "D_MEMORY, closer to recent traffic than to normal data (log)")   \
    X(z_memory, REAL, TERM, "D_MEMORY standardised on a normal stream")                  \
    X(out_of_range, FLAG, VERDICT, "some input value is far outside the training range")

#define DETECTOR_CTYPE_REAL double
#define DETECTOR_CTYPE_FLAG int
#define DETECTOR_CTYPE_INDEX int32_t
typedef enum {
    DETECTOR_GROUP_VERDICT, DETECTOR_GROUP_TERM, DETECTOR_GROUP_POSITION, DETECTOR_GROUP_NEAREST
} detector_group;

typedef struct {
#define DETECTOR_FIELD_(name, type, group, doc) DETECTOR_CTYPE_##type name;
    DETECTOR_RESULT_FIELDS(DETECTOR_FIELD_)
#undef DETECTOR_FIELD_
} detector_result;

void detector_free(detector *d);

/* Is every field of r finite, but those NaN by design (the memory's terms without a memory,
 * z_latent without its statistics)? What a score must be to be answered and logged: a NaN
 * score would read as "not an anomaly". */
int detector_result_finite(const detector *d, const detector_result *r);

/* What a valid detector is, in one place: the pipeline checks the detector it is about to
 * build with it before training, and the bundle's writer and loader every detector they
 * write or read, so that a model that loads can score. Both return 0, or -1 with a
 * message naming the setting.
 * detector_check_scoring: the scoring settings alone (mode and window, k, alpha, term,
 * latent input, placement options), against the reference set's size d->n_ref. */
int detector_check_scoring(const detector *d, char *err, size_t errlen);
/* The whole detector: architecture and weights, reference set, scoring settings,
 * calibration (the statistics of the fused term, quantile, threshold, sorted scores). */
int detector_check(const detector *d, char *err, size_t errlen);

/* The z of one sample of dim values x, from its encoder output mu and logvar (latent
 * values each): z = mu + exp(logvar / 2) * eps, eps standard normal drawn from a stream
 * seeded by the bytes of x, so that a sample gets the same z whenever and with whatever
 * batch it is scored. z may be mu (overwritten in place). */
void detector_sample_z(const float *x, size_t dim, const float *mu, const float *logvar,
                       int latent, float *z);

#endif
