/* api.h — the daemon's JSON wire format: decoding requests, encoding responses.
 *
 * This is the only place that knows field names and JSON shapes (proto/openapi.yaml
 * documents them; a result's numbers are named by core/detect/detector.h's table of the score
 * record, which the encoders expand), so the HTTP layer deals in C structs and the wire
 * format can be tested without a server. Decoders are the trust boundary for request bodies: they
 * refuse malformed JSON, duplicate keys, wrong types, non-finite or out-of-range
 * numbers, wrong sample lengths and oversized batches with an api_error naming the
 * HTTP status, a stable machine code and a message a caller can act on. Encoders
 * return malloc'd NUL-terminated JSON text (free it), or NULL when out of memory or when a
 * string they are given is not UTF-8. The hottest answers (score, log records, the held
 * sample, result lines, V2 infer) are written by jsonw.h, the rest dumped by jansson: the
 * same text either way. */
#ifndef ANODM_API_H
#define ANODM_API_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "detector.h"

#define API_NAME_MAX 64        /* model names: [A-Za-z0-9._-], 1..64 characters */
#define API_ID_MAX 128         /* caller ids and source tags, bytes */
#define API_VERSION_LEN 64     /* model version: SHA-256 of the bundle, hex */
#define API_DEFAULT_LIMIT 100  /* GET /v1/scores page size when none is given */
#define API_MAX_LIMIT 1000
#define ANODM_VERSION "0.1.0"  /* the software's: provenance records and GET /v2 say it */

/* A refused request: HTTP status, stable code (e.g. "wrong_length") and message. */
typedef struct {
    int status;
    char code[32];
    char message[256];
} api_error;

/* POST .../score: n samples of dim values each, row-major in x (malloc'd). */
typedef struct {
    float *x;
    int n;
    size_t dim;
    char id[API_ID_MAX + 1];     /* the caller's request id; "" when absent */
    char source[API_ID_MAX + 1]; /* the caller's source tag; "" when absent */
    int explain;
} api_score_request;

/* One logged score: what the log stores and GET /v1/scores returns. */
typedef struct {
    int64_t log_id;
    int64_t ts_ms;               /* Unix time, milliseconds */
    char model[API_NAME_MAX + 1];
    char version[API_VERSION_LEN + 1];
    char id[API_ID_MAX + 1];
    char source[API_ID_MAX + 1];
    int index;                   /* position in its request's batch */
    detector_result r;           /* the sample's numbers (detector.h's table) */
    double threshold;            /* the model's, which r was judged against */
    char replica_id[API_ID_MAX + 1];   /* a log record's replica ("" unknown) */
    int64_t local_id;            /* its id in that replica's own log (0 unknown): log_id in
                                    a replica's log, not in the merged history's */
} api_score_record;

/* The nearest reference points of each sample and, with explain, the reconstructions. */
typedef struct {
    int k;
    const int32_t *ref;          /* n * k training-set indices */
    const float *distance;       /* n * k map distances */
    const float *x, *x_rec;      /* n * dim each; x_rec NULL unless explained */
    size_t dim;
    const int64_t *r_peak;       /* beats cut from a strip: each one's R peak (strip sample), */
    int fs;                      /* at fs Hz; NULL for plain samples */
} api_score_detail;

/* POST /v1/models/{name}/strip: a raw ECG strip of n values sampled at fs Hz. */
#define API_STRIP_MAX_VALUES (1 << 21)
typedef struct {
    float *signal;               /* malloc'd */
    size_t n;
    int fs;
    char id[API_ID_MAX + 1];
    char source[API_ID_MAX + 1];
    int explain;
} api_strip_request;

/* GET /v1/scores: rows with log_id > since_id, oldest first, at most limit. With
 * before_id, only rows below it, and the newest limit of them (still oldest first). */
typedef struct {
    int64_t since_id;
    int64_t before_id;              /* 0 = none */
    int limit;
    char model[API_NAME_MAX + 1];   /* "" = any */
    char source[API_ID_MAX + 1];    /* "" = any */
    int anomalies_only;
} api_scores_query;

/* GET /v1/stats: the windows (seconds 0: the whole log) and score quantiles reported. */
#define API_STATS_WINDOWS 3
#define API_STATS_QUANTILES 3
typedef struct {
    const char *name;
    int64_t seconds;
} api_stats_window;
extern const api_stats_window API_STATS_WINDOW[API_STATS_WINDOWS];
extern const double API_STATS_QUANTILE[API_STATS_QUANTILES];

/* One model's log over one window; the quantiles are NaN (null) when count is 0. */
typedef struct {
    int64_t count, anomalies;
    double score[API_STATS_QUANTILES];
} api_window_stats;

typedef struct {
    char model[API_NAME_MAX + 1];
    api_window_stats w[API_STATS_WINDOWS];
} api_model_stats;

/* Decode a score request body for a model taking dim values, at most max_batch samples.
 * 0, or -1 with e filled in (req is then empty). */
int api_decode_score(const char *body, size_t len, size_t dim, int max_batch,
                     api_score_request *req, api_error *e);
/* The two halves of api_decode_score, for the tests and fuzzers that hold them to
 * agreeing. The fast scanner (api_fast.c) reads plain v1 bodies without building a JSON
 * tree: 1 with req filled in, exactly as api_decode_score_json would fill it; 0 with req
 * empty for any body it leaves to jansson (every invalid one among them); -1 when out of
 * memory. api_decode_score_json is the complete decoder, on jansson. */
int api_decode_score_fast(const char *body, size_t len, size_t dim, int max_batch,
                          api_score_request *req);
int api_decode_score_json(const char *body, size_t len, size_t dim, int max_batch,
                          api_score_request *req, api_error *e);
/* ------------------------------------------------------------------ Open Inference Protocol
 * (V2, kserve/open-inference-protocol), with the binary tensor data extension: a body may
 * be a JSON header of API_V2_HEADER_LENGTH bytes followed by raw little-endian tensors, an
 * input whose "parameters" hold "binary_data_size" takes its data from there, and outputs
 * asked for with "binary_data" (or the request's "binary_data_output") are answered so. */

/* The HTTP header giving the JSON header's length, in requests and answers. */
#define API_V2_HEADER_LENGTH "Inference-Header-Content-Length"
/* What GET /v2 lists: the binary extension, as Triton names it. */
#define API_V2_EXTENSION "binary_tensor_data"

/* The outputs of an infer answer, in the model metadata's order. */
typedef enum {
    API_V2_SCORE, API_V2_IS_ANOMALY, API_V2_P_VALUE, API_V2_LOG_ID, API_V2_N_OUTPUTS
} api_v2_output;

/* What an infer request asks back: n outputs (all, in the metadata's order, when it names
 * none), which and in what order, each as JSON data or as binary data. */
typedef struct {
    int n;
    unsigned char which[API_V2_N_OUTPUTS];
    unsigned char binary[API_V2_N_OUTPUTS];   /* of the i-th output answered */
} api_v2_outputs;

/* Decode an infer body into req, as api_decode_score does (id from the body's "id"), and
 * what it asks back into out. header_length is the API_V2_HEADER_LENGTH header (NULL when
 * absent: the whole body is JSON). Exactly one input: shape [B, d1, ...] with d1 x ... =
 * dim, datatype FP32 or FP64 (each value a finite float32 once narrowed) or UINT8 (pixels:
 * v/255, as the data readers take bytes, core/data/dataset_io.h); its "data" flat or
 * nested, or its "parameters": {"binary_data_size": bytes} and the bytes after the JSON,
 * read in place. Every byte of the body must be the JSON or that input's data. 0, or -1
 * with e (req is then empty). */
int api_decode_v2_infer(const char *body, size_t len, const char *header_length, size_t dim,
                        int max_batch, api_score_request *req, api_v2_outputs *out,
                        api_error *e);
/* Release what api_decode_score or api_decode_v2_infer allocated. */
void api_score_request_free(api_score_request *req);
/* Decode a strip body {"signal": [numbers], "fs": Hz, "id", "source", "explain"}: at
 * most API_STRIP_MAX_VALUES finite values, fs a whole number of Hz (whether the rate and
 * the strip suit the R-peak detector is core/data/rpeak.h's to say). 0, or -1 with e (req is
 * then empty). */
int api_decode_strip(const char *body, size_t len, api_strip_request *req, api_error *e);
void api_strip_request_free(api_strip_request *req);
/* Decode GET /v1/scores parameters (each NULL when absent). 0, or -1 with e. */
int api_decode_scores_query(const char *since_id, const char *limit, const char *model,
                            const char *source, const char *anomalies_only,
                            api_scores_query *q, api_error *e);
/* GET /v1/scores's before_id (NULL when absent) into q, after api_decode_scores_query.
 * 0, or -1 with e. */
int api_decode_before_id(const char *before_id, api_scores_query *q, api_error *e);
/* A source tag given as a query parameter (NULL: none, ""), at most API_ID_MAX bytes,
 * into source. 0, or -1 with e. */
int api_decode_source(const char *s, char source[API_ID_MAX + 1], api_error *e);
/* GET .../map's max_points (NULL: every point) into *n (0 meaning all). 0, or -1 with e. */
int api_decode_max_points(const char *s, int *n, api_error *e);
/* Parse a decimal log id ("42") as in /v1/scores/{id}; 0, or -1 if not one. */
int api_parse_log_id(const char *s, int64_t *id);
/* 1 if s is a valid model name. */
int api_valid_model_name(const char *s);

/* A number, or null when it is not finite (JSON has no NaN): the reals of every JSON
 * anodm writes (the API, the provenance, anodm experiment's results.json). */
json_t *api_json_number(double v);
/* v as JSON text (malloc'd, NUL-terminated; jansson's dump flags), or NULL when out of
 * memory: every JSON text anodm writes goes through here, not json_dumps, which returns
 * wrong text when an allocation fails while it writes an object's key (the key is left
 * out: {"a":1,":2}; jansson 2.14 does not check that write, akheron/jansson issue 655). */
char *api_json_text(const json_t *v, size_t flags);

/* Fill e in: status, code and a printf-style message. */
void api_error_set(api_error *e, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* {"error": {"code", "message"}}. */
char *api_encode_error(const api_error *e);
/* {"model", "version", "results": [...]} for n records with their details; a strip's
 * beats also carry "r_peak": {"sample", "time_s"}. */
char *api_encode_score(const char *model, const char *version, const api_score_record *rec,
                       int n, const api_score_detail *detail);
/* {"scores": [...], "next_since_id"} for one page; next_since_id is the cursor to poll
 * with next (since_id itself when the page is empty). A log record also carries its
 * "replica_id" and "local_id" (null when unknown). */
char *api_encode_score_page(const api_score_record *rec, int n, int64_t since_id);
/* One record, as GET /v1/scores/{id} returns it. */
char *api_encode_score_record(const api_score_record *rec);
/* One result as a flat JSON object, one member per field of detector.h's table after
 * "index" and (label not NULL) "label": a line of anodm score --format jsonl. */
char *api_encode_result_line(size_t index, const int32_t *label, const detector_result *r);
/* A scored sample the daemon still holds: GET /v1/scores/{id}/sample. */
typedef struct {
    int64_t log_id;
    char model[API_NAME_MAX + 1];
    char version[API_VERSION_LEN + 1];
    int shape[3];                /* the model's input: channels, height, width */
    size_t dim;
    const float *x, *x_rec;      /* the input and its reconstruction, dim values each */
    int k;
    const int32_t *ref;          /* the k nearest reference points (training-set indices) */
    const float *distance;       /* and their map distances, nearest first */
} api_sample;
/* {"log_id", "model", "version", "shape", "input", "reconstruction", "squared_error",
 * "neighbors"}. */
char *api_encode_sample(const api_sample *s);
/* A loaded model as the encoders see it. */
typedef struct {
    const char *name, *version;
    const detector *d;
    int memory_count;            /* latents its stream memory holds now (0 without one) */
} api_model_ref;

/* GET /v1/models/{name}: architecture, scoring settings, calibration, provenance, and
 * the score's terms (detector.h's TERM fields: name and doc, for the dashboard). */
char *api_encode_model(const api_model_ref *m, int is_default);
/* POST /v1/models/{name}/memory/reset: {"model", "version", "forgotten": n}. */
char *api_encode_memory_reset(const char *model, const char *version, int forgotten);
/* A stream memory drawn on the map: its latents co-placed on the reference map
 * (scorer_coplace), in memory_entries' order, with what retention knows of each. */
typedef struct {
    int per_source;              /* the model keeps one memory per source tag, */
    char source[API_ID_MAX + 1]; /* and this is source's ("" the untagged requests') */
    int n;
    float *pos;                  /* n x 2 co-placed positions */
    double *suspicion;           /* n: what each was kept with (its z_re + z_latent) */
    unsigned char *recent;       /* n: 1 in the recent half, 0 kept for its suspicion */
    double seconds;              /* the co-placement's time */
    int cached;                  /* the answer of an earlier request (the memory unchanged) */
} api_memory_map;
/* GET /v1/models/{name}/memory/map: {"model", "version", "scope", ["source"], "capacity",
 * "count", "points", "suspicion", "recent", "seconds", "cached"}. */
char *api_encode_memory_map(const api_model_ref *m, const api_memory_map *mm);
/* GET /v1/models: {"models": [summaries], "default"}; the first model is the default. */
char *api_encode_model_list(const api_model_ref *m, int n);
/* GET /v1/models/{name}/map: the reference points, at most max_points (0: all) of them
 * taken at even strides through the stored order, so the same request always returns
 * the same points; in context mode also the sliding window's n_window positions
 * (window: x, y each, oldest first). */
char *api_encode_map(const api_model_ref *m, int max_points, const float *window,
                     int n_window);
/* GET /v1/stats: n models' windows, computed at now_ms. */
char *api_encode_stats(const api_model_stats *s, int n, int64_t now_ms);
/* The answer of POST /v2/models/{name}/infer: the outputs out asks for (score FP64,
 * is_anomaly BOOL, p_value FP64, log_id INT64, each of shape [n]) as a JSON object, then
 * the binary ones' bytes in their order. *len is the whole body's length and *json_len
 * the JSON's (== *len when nothing is binary: the body is then NUL-terminated JSON). */
char *api_encode_v2_infer(const char *model, const char *version, const char *id,
                          const api_score_record *rec, int n, const api_v2_outputs *out,
                          size_t *len, size_t *json_len);
/* GET /v2/models/{name}: the Open Inference Protocol's model metadata. */
char *api_encode_v2_model(const api_model_ref *m, size_t dim);
/* GET /v2: the server metadata, {"name", "version", "extensions"}. */
char *api_encode_v2_server(void);
/* The Open Inference Protocol's error, {"error": "<code>: <message>"}: the V2 routes'
 * shape for every refusal (the /v1 routes keep api_encode_error's). */
char *api_encode_v2_error(const api_error *e);
/* GET /v2/health/live. */
char *api_encode_v2_live(void);
/* GET /v2/health/ready (name NULL) and /v2/models/{name}/ready. */
char *api_encode_v2_ready(const char *name, int ready);
/* {"status": "ok"} for GET /healthz. */
char *api_encode_health(void);
/* GET /readyz: ready, models loaded, and the log's state ("ok" or why not). */
char *api_encode_ready(int ready, int n_models, const char *log_state);

#endif
