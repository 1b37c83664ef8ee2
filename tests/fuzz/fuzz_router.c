/* fuzz_router.c — anodmd's router and handlers (daemon/routes.c), without the HTTP layer.
 *
 * routes.h has a pure entry point, routes_label (the path to its metrics label), and
 * routes_handle, which takes a whole request as a struct: method, path, query lookup and
 * body. Both get every input. Behind routes_handle sits a real app, made once: one
 * model ("tiny", the detector of fuzz_model.c given a stream memory, saved as a bundle
 * and loaded through registry_load), a score log (SQLite, in a private directory under
 * /dev/shm or /tmp, removed at exit), metrics, one batching worker, the dashboard's files
 * and a store of the 16 most recent inputs; so a fuzzed path that reaches a handler runs
 * it for real: scoring, the log queries, the map, the memory's map and reset, stats, the
 * metrics page and the sample view. A request the handler hands to the worker
 * (routes_handle returns 1) is waited for, as the HTTP layer's park/wake would. No API
 * keys are set. Input layout:
 *     METHOD PATH\n
 *     key=value\n ...      query parameters, and Name: value lines, headers (such as
 *                          Inference-Header-Content-Length), up to 8 each, ended by an
 *                          empty line
 *     body                 the rest, not NUL-terminated
 * Every reply must have a status in 200..599 and a body (NULL only when out of memory); a
 * binary one (the V2 extension's) a JSON header within it; an error on a /v2 path the
 * Open Inference Protocol's shape, {"error": "..."}. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>

#include "batch.h"
#include "bundle.h"
#include "fuzz_model.h"
#include "routes.h"

enum { MAX_QUERY = 8 };

/* One request's connection: its query parameters and headers, and the wake-up from the
 * worker. */
typedef struct {
    const char *key[MAX_QUERY], *value[MAX_QUERY];
    int n;
    const char *name[MAX_QUERY], *header[MAX_QUERY];
    int n_headers;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int woken;
} conn_state;

static app the_app;
static registry reg;
static char dir[64], bundle_path[128], db_path[128], spec[160];
static char *specs[1] = {spec};

static void cleanup(void) {
    if (the_app.batch) {
        batch_stop(the_app.batch);
        batch_free(the_app.batch);
    }
    if (the_app.log) scorelog_close(the_app.log);
    samples_free(the_app.recent);
    registry_free(&reg);
    metrics_free(the_app.metrics);
    char wal[160], shm[160];
    snprintf(wal, sizeof wal, "%s-wal", db_path);
    snprintf(shm, sizeof shm, "%s-shm", db_path);
    unlink(bundle_path), unlink(db_path), unlink(wal), unlink(shm), rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    char err[512] = "";
    detector d;
    snprintf(dir, sizeof dir, "%s/anodm-fuzz-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(1);
    }
    snprintf(bundle_path, sizeof bundle_path, "%s/tiny.anodm", dir);
    snprintf(db_path, sizeof db_path, "%s/scores.db", dir);
    snprintf(spec, sizeof spec, "tiny=%s", bundle_path);
    int made = fuzz_model_make(&d, PLACE_SINGLE, err, sizeof err);
    if (made == 0) {             /* with a stream memory, so the memory routes run too */
        d.use_memory = 1;
        memory_options_default(&d.memory);
        d.memory.capacity = 32;
        d.memory.k = 2;
        d.memory.k_min = 1;
        d.fusion = FUSION_MEMORY;
        d.mem = (term_stats){0.0, 1.0};
    }
    if (made != 0 || bundle_save(bundle_path, &d, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_router: %s\n", err);
        exit(1);
    }
    detector_free(&d);
    the_app.max_batch = 8;
    the_app.metrics = metrics_create();
    if (!the_app.metrics ||
        registry_load(&reg, specs, 1, the_app.max_batch, 1, 0, err, sizeof err) != 0 ||
        !(the_app.log = scorelog_open(db_path, the_app.metrics, err, sizeof err)) ||
        !(the_app.batch = batch_start(1, 0, the_app.metrics, err, sizeof err)) ||
        !(the_app.recent = samples_create(the_app.recent_capacity = 16))) {
        fprintf(stderr, "fuzz_router: %s\n", err[0] ? err : "out of memory");
        exit(1);
    }
    the_app.reg = &reg;
    the_app.dashboard = 1;
    the_app.replica_id = "fuzz";
    atexit(cleanup);
    return 0;
}

static const char *lookup(void *conn, const char *key) {
    const conn_state *q = conn;
    for (int i = 0; i < q->n; i++)
        if (!strcmp(q->key[i], key)) return q->value[i];
    return NULL;
}

static const char *header(void *conn, const char *name) {
    const conn_state *q = conn;
    for (int i = 0; i < q->n_headers; i++)
        if (!strcasecmp(q->name[i], name)) return q->header[i];
    return NULL;
}

static void park(void *conn) { (void)conn; }

static void wake(void *conn) {
    conn_state *q = conn;
    pthread_mutex_lock(&q->lock);
    q->woken = 1;
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* The head (request line and query) as NUL-terminated text, the body as bytes. */
    const uint8_t *blank = NULL;
    for (size_t i = 0; i + 1 < size && !blank; i++)
        if (data[i] == '\n' && data[i + 1] == '\n') blank = data + i;
    size_t head_len = blank ? (size_t)(blank - data) : size;
    size_t body_len = blank ? size - head_len - 2 : 0;
    char *head = malloc(head_len + 1), *body = malloc(body_len ? body_len : 1);
    if (!head || !body) {
        free(head), free(body);
        return 0;
    }
    memcpy(head, data, head_len);
    head[head_len] = 0;
    if (body_len) memcpy(body, blank + 2, body_len);

    char *line = head, *next = strchr(line, '\n');
    if (next) *next++ = 0;
    char *method = line, *path = strchr(line, ' ');
    if (path) *path++ = 0;
    else path = "";
    conn_state q = {.n = 0, .woken = 0};
    pthread_mutex_init(&q.lock, NULL);
    pthread_cond_init(&q.cond, NULL);
    while (next) {
        line = next;
        if ((next = strchr(line, '\n'))) *next++ = 0;
        char *colon = strstr(line, ": "), *eq = strchr(line, '=');
        if (colon && (!eq || colon < eq) && q.n_headers < MAX_QUERY) {
            *colon = 0;
            q.name[q.n_headers] = line;
            q.header[q.n_headers++] = colon + 2;
        } else if (eq && q.n < MAX_QUERY) {
            *eq = 0;
            q.key[q.n] = line;
            q.value[q.n++] = eq + 1;
        }
    }

    if (!routes_label(path)) __builtin_trap();
    request rq = {.method = method, .path = path, .body = body, .len = body_len,
                  .query = lookup, .header = header, .park = park, .wake = wake, .conn = &q,
                  .content_type = header(&q, "Content-Type")};
    reply out = {0};
    if (routes_handle(&the_app, &rq, &out) == 1) {   /* a worker answers: wait for it */
        pthread_mutex_lock(&q.lock);
        while (!q.woken) pthread_cond_wait(&q.cond, &q.lock);
        pthread_mutex_unlock(&q.lock);
    }
    if (out.status < 200 || out.status > 599) __builtin_trap();
    if (out.body && out.json_len) {
        json_t *j = out.json_len < out.len ? json_loadb(out.body, out.json_len, 0, NULL) : NULL;
        if (!j) __builtin_trap();
        json_decref(j);
    }
    if (out.body && out.status >= 400 && routes_v2(path)) {
        json_t *j = json_loads(out.body, 0, NULL);
        if (!json_is_string(json_object_get(j, "error")) || json_object_size(j) != 1)
            __builtin_trap();
        json_decref(j);
    }
    free(out.body);
    pthread_cond_destroy(&q.cond);
    pthread_mutex_destroy(&q.lock);
    free(head);
    free(body);
    return 0;
}
