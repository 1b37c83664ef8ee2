/* daemon_harness.h — what the tests of anodmd as a running process share.
 *
 * The test models (two bundles of one tiny detector, built once per run into the test's
 * scratch directory), starting anodmd ($ANODMD_BIN, build/anodmd otherwise) on an
 * ephemeral loopback port and stopping it, a small HTTP/1.1 client over plain sockets
 * (one exchange per connection, or a kept-alive connection), request bodies, and read-only
 * access to the SQLite score log. Used by test_daemon.c (every route), and by
 * test_daemon_abuse.c, test_daemon_faults.c and test_daemon_soak.c (issue 8); its
 * command runners (run_anodm, run_anodmd) by every test that runs the binaries. */
#ifndef ANODM_DAEMON_HARNESS_H
#define ANODM_DAEMON_HARNESS_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "check.h"

/* The test models' input: one channel of SIDE x SIDE. */
#define SIDE 8
#define DIM (SIDE * SIDE)

/* ------------------------------------------------------------------ models and files */

/* The two bundles of the tiny detector: "tiny" in single mode, "ctx" in context mode, and
 * their versions (SHA-256 of the files). */
typedef struct {
    char tiny[512], ctx[512];
    char tiny_version[65], ctx_version[65];
} test_bundles;

/* The bundles, built on first use; NULL (the failure reported) if they cannot be. */
const test_bundles *test_bundles_get(void);
/* The tiny model given a stream memory by hand (50 latents, k 2, fused by "memory", its
 * z_memory standardised by (0, 1)), written to path with its threshold moved by shift:
 * another shift is another version of the same model, its memory of the same shape. 0,
 * or -1 (reported). */
int memory_bundle_at(const char *path, double shift);
/* The version anodmd reports for the bundle at path ("" if unreadable). */
void file_version(const char *path, char hex[65]);
/* n samples into x: normals (a bright row over noise) or anomalies (all zeros), from seed. */
void fresh_samples(float *x, int n, uint64_t seed, int anomalous);

/* A whole file as text (NULL if unreadable); free it. */
char *slurp(const char *path);
void sleep_ms(long ms);
/* Copy src over dst atomically (a temporary file renamed), as a deployment would. */
int install_file(const char *src, const char *dst);

/* ------------------------------------------------------------------ the daemon */

/* The anodmd binary under test. */
const char *anodmd_bin(void);
/* Running under valgrind (ANODM_VALGRIND set): start-up and answers are slower. */
int under_valgrind(void);
/* The port anodmd pid says it listens on in its output file log; 0 (the failure
 * reported) if it exits or says nothing in time. */
int listening_port(pid_t pid, const char *log);
/* Start anodmd on a free port with args (NULL-terminated), output to log; its pid and
 * *port (0 when it did not start, the failure reported). */
pid_t spawn_anodmd(const char *log, const char *const *args, int *port);
/* SIGTERM pid and check that it exits 0. */
void stop_anodmd(pid_t pid);
/* Wait up to ms for pid to exit: its wait status, or -1 (it is then still running). */
int wait_exit(pid_t pid, long ms);
/* Run anodmd with args (NULL-terminated; no port is added) and output to log, expecting
 * it to exit within ms: its exit code, or -1 (it was then killed) if it did not. */
int run_anodmd_argv(const char *log, const char *const *args, long ms);
/* Run `anodmd ARGS` / `anodm ARGS` ($ANODM_BIN, build/anodm otherwise) through the
 * shell (paths in ARGS must not need quoting, as test_tmpdir()'s do not) with both
 * streams captured in *out (free it; "" if none); the exit code, 128 + s when killed by
 * signal s, 200 when a sanitizer reported, -1 when it could not run. */
int run_anodmd(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *anodm_bin(void);
int run_anodm(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int run_anodm_v(char **out, const char *fmt, va_list ap);
#define EXPECT_CLI(code, want, ...)                                                     \
    do {                                                                                \
        char *out_;                                                                     \
        int rc_ = run_anodmd(&out_, __VA_ARGS__);                                       \
        CHECK_MSG(rc_ == (code) && out_ && strstr(out_, (want)),                         \
                  "exit %d (want %d), want '%s' in:\n%.1500s", rc_, (code), (want),       \
                  out_ ? out_ : "");                                                    \
        free(out_);                                                                     \
    } while (0)
/* RSS in kB and open file descriptors of pid, from /proc (-1 when unreadable). */
long proc_rss_kb(pid_t pid);
int proc_fds(pid_t pid);

/* ------------------------------------------------------------------ HTTP */

typedef struct {
    int status;                  /* 0 when the exchange failed or no response came */
    char *raw;                   /* the whole response */
    const char *body;
    size_t body_len;             /* its bytes (binary tensors may hold NULs) */
    size_t json_len;             /* Inference-Header-Content-Length: the body's JSON header
                                  * (binary tensors follow it); 0 when absent */
    json_t *json;                /* the body (or that JSON header) parsed, or NULL */
} response;

void response_free(response *r);
/* A TCP connection to 127.0.0.1:port (-1 on failure), with a receive timeout of
 * timeout_s seconds. */
int tcp_connect(int port, int timeout_s);
/* Send req (len bytes) on a new connection to port and read the response until the
 * server closes. */
response http_exchange(int port, const char *req, size_t len);
/* METHOD path on port, with an optional JSON body (Content-Type: application/json) and
 * extra header lines ("Name: value\r\n"...), Connection: close. */
response http_request(int port, const char *method, const char *path, const char *body,
                      const char *headers);

/* A kept-alive connection: requests one after the other, each response read by its
 * Content-Length. */
typedef struct {
    int fd, port;
    char *buf;                   /* bytes read past the last response */
    size_t have, cap;
} http_conn;
void hconn_init(http_conn *c, int port);
/* Send one request (head and body as given: the head must end in \r\n\r\n) and read its
 * response; connects first when needed. A response to a request the server closed
 * after (Connection: close) or a failure closes c, to be reconnected next time. */
response hconn_send(http_conn *c, const char *head, const char *body, size_t body_len);
void hconn_close(http_conn *c);

const char *jstr(json_t *o, const char *key);
double jnum(json_t *o, const char *key);
/* The error code of r: {"error": {"code", "message"}} (/v1 routes) or {"error": "<code>:
 * <message>"} (the V2 routes, the Open Inference Protocol's shape) into code (32 bytes),
 * with *v2 (may be NULL) saying which shape; NULL when it is neither or has no message. */
const char *error_code(const response *r, char code[32], int *v2);
/* r had this status and, for errors (code not NULL), an error (either shape) with this
 * code and a message. */
void expect_status_(const char *file, int line, const response *r, int status,
                    const char *code);
#define EXPECT_STATUS(r, status, code) expect_status_(__FILE__, __LINE__, &(r), (status), (code))

/* ------------------------------------------------------------------ request bodies */

/* {"samples": [n samples of x]} (or {"sample": x} when n is 0) with extra members
 * (",\"key\":value..." spliced before the closing brace); free it. */
char *score_body(const float *x, int n, const char *extra);
/* A sample as JSON text: first, then zeros, n values in all. */
void zero_sample(char *out, size_t cap, const char *first, int n);
/* {"sample": zero_sample(first, n)}. */
void single_body(char *out, size_t cap, const char *first, int n);

/* ------------------------------------------------------------------ the log */

/* The score log at path, read-only (NULL, the failure reported, if it cannot be opened). */
sqlite3 *log_open_readonly(const char *path);
/* Rows in the log at path; -1 (reported) if it cannot be read. */
long long log_rows_at(const char *path);
/* The integer a one-row query returns; -1 on error. */
long long log_int(sqlite3 *db, const char *sql);
/* The log at path passes PRAGMA integrity_check and holds rows rows (rows < 0: any
 * number); the failure reported. 1 when both hold. */
int log_intact_(const char *file, int line, const char *path, long long rows);
#define LOG_INTACT(path, rows) log_intact_(__FILE__, __LINE__, (path), (rows))

#endif
