/* Tests of core/data/dataset: the real Fashion-MNIST files, round trips through small IDX, NPY
 * and CSV files this file writes into test_tmpdir(), every error path a user can hit, and
 * a small fuzz of each parser over truncated and mutated buffers. */
#include "check.h"
#include "dataset_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define FMNIST "/usr/share/datasets/fashion-mnist"

/* ------------------------------------------------------------------ helpers */

/* rc must be -1 and the message in `err` (a local of the test) must contain want. */
#define EXPECT_FAIL(rc, want) CHECK_FAILS_WITH((rc), err, (want))

static void tmp_path(char *out, size_t outlen, const char *name) {
    snprintf(out, outlen, "%s/%s", test_tmpdir(), name);
}

/* Writes len bytes to test_tmpdir()/name, gzip-compressed if gz; the full path in path. */
static void write_tmp(char *path, size_t pathlen, const char *name, const void *data,
                      size_t len, int gz) {
    tmp_path(path, pathlen, name);
    if (gz) {
        gzFile f = gzopen(path, "wb");
        CHECK(f != NULL);
        if (!f) return;
        CHECK(len == 0 || gzwrite(f, data, (unsigned)len) == (int)len);
        CHECK(gzclose(f) == Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        CHECK(f != NULL);
        if (!f) return;
        CHECK(fwrite(data, 1, len, f) == len);
        CHECK(fclose(f) == 0);
    }
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put_le32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* An IDX file into out: magic for `type`, ndim dimensions, then payload as given. */
static size_t make_idx(uint8_t *out, uint8_t type, int ndim, const uint32_t *dims,
                       const void *payload, size_t payload_len) {
    out[0] = out[1] = 0;
    out[2] = type;
    out[3] = (uint8_t)ndim;
    for (int i = 0; i < ndim; i++) put_be32(out + 4 + 4 * i, dims[i]);
    memcpy(out + 4 + 4 * ndim, payload, payload_len);
    return 4 + 4 * (size_t)ndim + payload_len;
}

/* An NPY file into out, format version major, with the header dict text as given, padded
 * as numpy pads it (to a multiple of 64 bytes, ending in '\n'). */
static size_t make_npy(uint8_t *out, int major, const char *dict, const void *payload,
                       size_t payload_len) {
    size_t prefix = major == 1 ? 10 : 12, hlen = strlen(dict) + 1;
    hlen += (64 - (prefix + hlen) % 64) % 64;
    memcpy(out, "\x93NUMPY", 6);
    out[6] = (uint8_t)major;
    out[7] = 0;
    if (major == 1) {
        out[8] = (uint8_t)hlen;
        out[9] = (uint8_t)(hlen >> 8);
    } else {
        put_le32(out + 8, (uint32_t)hlen);
    }
    memset(out + prefix, ' ', hlen);
    memcpy(out + prefix, dict, strlen(dict));
    out[prefix + hlen - 1] = '\n';
    memcpy(out + prefix + hlen, payload, payload_len);
    return prefix + hlen + payload_len;
}

static int parse_csv_str(dataset *d, const char *text, int label_col, char *err,
                         size_t errlen) {
    return dataset_parse_csv(d, text, strlen(text), label_col, err, errlen);
}

/* ------------------------------------------------------------------ Fashion-MNIST */

static void check_fashion(int train, size_t n, const int32_t *first_labels) {
    dataset d;
    char err[512];
    int rc = dataset_load_fashion_mnist(&d, FMNIST, train, err, sizeof err);
    CHECK_MSG(rc == 0, "%s", err);
    if (rc) return;
    CHECK(d.n == n && d.dim == 784);
    CHECK(d.channels == 1 && d.height == 28 && d.width == 28);
    CHECK(d.labels != NULL);

    size_t per_class[10] = {0};
    for (size_t i = 0; i < d.n; i++) per_class[d.labels[i]]++;
    for (int c = 0; c < 10; c++)
        CHECK_MSG(per_class[c] == n / 10, "class %d has %zu samples", c, per_class[c]);
    for (int i = 0; i < 10; i++) CHECK(d.labels[i] == first_labels[i]);

    float lo = 1, hi = 0;
    double sum = 0;
    for (size_t i = 0; i < d.n * d.dim; i++) {
        if (d.x[i] < lo) lo = d.x[i];
        if (d.x[i] > hi) hi = d.x[i];
        sum += d.x[i];
    }
    CHECK(lo == 0.0f && hi == 1.0f);
    /* The mean pixel everyone normalises Fashion-MNIST with: 0.2860 (train). */
    if (train) CHECK_NEAR(sum / (double)(d.n * d.dim), 0.2860406, 1e-6);
    dataset_free(&d);
}

TEST(dataset_fashion_mnist_train) {
    static const int32_t first[10] = {9, 0, 0, 3, 0, 2, 7, 2, 5, 5};
    check_fashion(1, 60000, first);
}

TEST(dataset_fashion_mnist_test) {
    static const int32_t first[10] = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7};
    check_fashion(0, 10000, first);
}

/* The paper's protocol: train on every class but the anomaly. */
TEST(dataset_fashion_mnist_one_vs_rest) {
    dataset d;
    char err[512];
    const int32_t anomaly = 3;
    int rc = dataset_load_fashion_mnist(&d, FMNIST, 1, err, sizeof err);
    CHECK_MSG(rc == 0, "%s", err);
    if (rc) return;
    float first_kept = d.x[1 * 784 + 300]; /* sample 1 is class 0, the first one kept */
    CHECK(dataset_filter_classes(&d, &anomaly, 1, 1, err, sizeof err) == 0);
    CHECK(d.n == 54000);
    size_t threes = 0;
    for (size_t i = 0; i < d.n; i++) threes += d.labels[i] == 3;
    CHECK(threes == 0);
    CHECK(d.labels[0] == 9 && d.labels[1] == 0 && d.labels[2] == 0 && d.labels[3] == 0);
    CHECK(d.x[1 * 784 + 300] == first_kept);
    dataset_free(&d);
}

TEST(dataset_fashion_mnist_missing_dir) {
    dataset d;
    char err[512];
    EXPECT_FAIL(dataset_load_fashion_mnist(&d, "/nonexistent/fmnist", 1, err, sizeof err),
                "/nonexistent/fmnist/train-images-idx3-ubyte.gz: No such file");
    CHECK(d.x == NULL && d.labels == NULL && d.n == 0);
}

/* ------------------------------------------------------------------ IDX */

TEST(dataset_idx_roundtrip) {
    uint8_t pix[18], lab[3] = {4, 0, 9}, buf[256];
    uint32_t dims[3] = {3, 2, 3}, ldims[1] = {3};
    char ipath[512], lpath[512], err[512];
    dataset d;
    for (int i = 0; i < 18; i++) pix[i] = (uint8_t)(i * 15);

    size_t n = make_idx(buf, 0x08, 3, dims, pix, sizeof pix);
    write_tmp(ipath, sizeof ipath, "rt-images-idx3-ubyte", buf, n, 0);
    n = make_idx(buf, 0x08, 1, ldims, lab, sizeof lab);
    write_tmp(lpath, sizeof lpath, "rt-labels-idx1-ubyte.gz", buf, n, 1);

    int rc = dataset_load_idx(&d, ipath, lpath, err, sizeof err);
    CHECK_MSG(rc == 0, "%s", err);
    CHECK(d.n == 3 && d.dim == 6 && d.channels == 1 && d.height == 2 && d.width == 3);
    for (int i = 0; rc == 0 && i < 18; i++) CHECK(d.x[i] == (float)(i * 15) / 255.0f);
    CHECK(rc == 0 && d.labels[0] == 4 && d.labels[1] == 0 && d.labels[2] == 9);
    CHECK(rc == 0 && d.x[17] == 1.0f);
    dataset_free(&d);

    /* The same images gzip-compressed, without labels. */
    n = make_idx(buf, 0x08, 3, dims, pix, sizeof pix);
    write_tmp(ipath, sizeof ipath, "rt-images-idx3-ubyte.gz", buf, n, 1);
    rc = dataset_load_idx(&d, ipath, NULL, err, sizeof err);
    CHECK_MSG(rc == 0, "%s", err);
    CHECK(d.n == 3 && d.labels == NULL && rc == 0 && d.x[1] == 15.0f / 255.0f);
    dataset_free(&d);
}

/* Non-byte element types are taken as they are; 2-D and 4-D shapes map to CxHxW. */
TEST(dataset_idx_types_and_shapes) {
    uint8_t payload[64], buf[256];
    char err[512];
    dataset d;
    int32_t *labels;
    size_t nl;

    const float f[6] = {-1.5f, 0.0f, 2.25f, 1e6f, -3e-4f, 7.0f};
    for (int i = 0; i < 6; i++) {
        uint32_t bits;
        memcpy(&bits, &f[i], 4);
        put_be32(payload + 4 * i, bits);
    }
    uint32_t dims4[4] = {1, 2, 1, 3};
    size_t n = make_idx(buf, 0x0D, 4, dims4, payload, 24);
    CHECK(dataset_parse_idx(&d, buf, n, err, sizeof err) == 0);
    CHECK(d.n == 1 && d.dim == 6 && d.channels == 2 && d.height == 1 && d.width == 3);
    if (d.x) CHECK_CLOSE("idx f32", d.x, f, 6, 0, 0);
    dataset_free(&d);

    const uint8_t i16[4] = {0xFF, 0xFE, 0x01, 0x00}; /* -2, 256 */
    uint32_t dims2[2] = {2, 1};
    n = make_idx(buf, 0x0B, 2, dims2, i16, sizeof i16);
    CHECK(dataset_parse_idx(&d, buf, n, err, sizeof err) == 0);
    CHECK(d.n == 2 && d.dim == 1 && d.channels == 1 && d.height == 1 && d.width == 1);
    CHECK(d.x && d.x[0] == -2.0f && d.x[1] == 256.0f);
    dataset_free(&d);

    const uint8_t i32[8] = {0xFF, 0xFF, 0xFF, 0xF9, 0x00, 0x00, 0x01, 0x00}; /* -7, 256 */
    uint32_t ldims[1] = {2};
    n = make_idx(buf, 0x0C, 1, ldims, i32, sizeof i32);
    CHECK(dataset_parse_idx_labels(&labels, &nl, buf, n, err, sizeof err) == 0);
    CHECK(nl == 2 && labels && labels[0] == -7 && labels[1] == 256);
    free(labels);
}

TEST(dataset_idx_errors) {
    uint8_t pix[8] = {0}, buf[256];
    uint32_t dims[3] = {3, 2, 3}, ldims[1] = {2};
    char path[512], lpath[512], err[512];
    dataset d;
    int32_t *labels;
    size_t n, nl;

    tmp_path(path, sizeof path, "no-such-file");
    EXPECT_FAIL(dataset_load_idx(&d, path, NULL, err, sizeof err), "no-such-file: No such file");
    EXPECT_FAIL(dataset_load_idx(&d, test_tmpdir(), NULL, err, sizeof err), "Is a directory");

    write_tmp(path, sizeof path, "empty.idx", "", 0, 0);
    EXPECT_FAIL(dataset_load_idx(&d, path, NULL, err, sizeof err), "empty.idx: empty file");
    write_tmp(path, sizeof path, "empty.idx.gz", "", 0, 1);
    EXPECT_FAIL(dataset_load_idx(&d, path, NULL, err, sizeof err), "empty file");

    write_tmp(path, sizeof path, "pgm.idx", "P5\n28 28\n255\n", 13, 0);
    EXPECT_FAIL(dataset_load_idx(&d, path, NULL, err, sizeof err),
                "pgm.idx: wrong magic 0x50350a32: not an IDX file");
    EXPECT_FAIL(dataset_parse_idx(&d, (const uint8_t *)"\0\0\x07\x03", 4, err, sizeof err),
                "unknown IDX element type 0x07");
    EXPECT_FAIL(dataset_parse_idx(&d, (const uint8_t *)"\0\0", 2, err, sizeof err),
                "too short");
    EXPECT_FAIL(dataset_parse_idx(&d, (const uint8_t *)"\0\0\x08\x03\0\0\0\x03", 8, err,
                                  sizeof err),
                "truncated: the IDX header needs 16 bytes but the file has 8");

    /* Truncated data, and data beyond what the header describes. */
    n = make_idx(buf, 0x08, 3, dims, pix, 6);
    write_tmp(path, sizeof path, "short-images-idx3-ubyte.gz", buf, n, 1);
    EXPECT_FAIL(dataset_load_idx(&d, path, NULL, err, sizeof err),
                "short-images-idx3-ubyte.gz: truncated: header says 3 samples of 2x3 "
                "(18 bytes of data) but the file ends after 22 bytes");
    dims[0] = 1;
    n = make_idx(buf, 0x08, 3, dims, pix, 6) + 2;
    EXPECT_FAIL(dataset_parse_idx(&d, buf, n, err, sizeof err), "2 unexpected bytes after");

    /* Wrong dimensions. */
    n = make_idx(buf, 0x08, 1, ldims, pix, 2);
    EXPECT_FAIL(dataset_parse_idx(&d, buf, n, err, sizeof err), "is this a labels file?");
    n = make_idx(buf, 0x08, 3, dims, pix, 6);
    EXPECT_FAIL(dataset_parse_idx_labels(&labels, &nl, buf, n, err, sizeof err),
                "labels must be 1-dimensional");
    CHECK(labels == NULL && nl == 0);
    uint32_t dims5[5] = {1, 1, 1, 1, 1};
    n = make_idx(buf, 0x08, 5, dims5, pix, 1);
    EXPECT_FAIL(dataset_parse_idx(&d, buf, n, err, sizeof err), "5 dimensions");
    n = make_idx(buf, 0x08, 0, dims, pix, 0);
    EXPECT_FAIL(dataset_parse_idx(&d, buf, n, err, sizeof err), "0 dimensions");
    uint32_t zero_n[3] = {0, 28, 28}, zero_w[3] = {5, 28, 0};
    n = make_idx(buf, 0x08, 3, zero_n, pix, 0);
    EXPECT_FAIL(dataset_parse_idx(&d, buf, n, err, sizeof err), "no samples");
    n = make_idx(buf, 0x08, 3, zero_w, pix, 0);
    EXPECT_FAIL(dataset_parse_idx(&d, buf, n, err, sizeof err), "samples are empty");
    /* A header claiming 2^32 * 2^32 values must be refused before any allocation. */
    uint32_t huge[3] = {0xFFFFFFFFu, 0xFFFF, 0xFFFF};
    n = make_idx(buf, 0x08, 3, huge, pix, 6);
    EXPECT_FAIL(dataset_parse_idx(&d, buf, n, err, sizeof err), "too large");
    CHECK(d.x == NULL && d.n == 0);

    /* Labels: count mismatch, floating point. */
    dims[0] = 3;
    n = make_idx(buf, 0x08, 3, dims, (uint8_t[18]){0}, 18);
    write_tmp(path, sizeof path, "three-images", buf, n, 0);
    n = make_idx(buf, 0x08, 1, ldims, pix, 2);
    write_tmp(lpath, sizeof lpath, "two-labels", buf, n, 0);
    EXPECT_FAIL(dataset_load_idx(&d, path, lpath, err, sizeof err),
                "two-labels: labels count 2 != samples count 3");
    CHECK(d.x == NULL && d.labels == NULL);
    n = make_idx(buf, 0x0D, 1, ldims, pix, 8);
    EXPECT_FAIL(dataset_parse_idx_labels(&labels, &nl, buf, n, err, sizeof err),
                "floating point");
    write_tmp(lpath, sizeof lpath, "bad-labels", "junk", 4, 0);
    EXPECT_FAIL(dataset_load_idx(&d, path, lpath, err, sizeof err),
                "bad-labels: wrong magic");
    CHECK(d.x == NULL);

    /* A NaN pixel in float data. */
    uint8_t nan_be[4] = {0x7F, 0xC0, 0, 0};
    uint32_t one[2] = {1, 1};
    n = make_idx(buf, 0x0D, 2, one, nan_be, 4);
    EXPECT_FAIL(dataset_parse_idx(&d, buf, n, err, sizeof err), "not a finite float32");
}

/* A gzip file cut short or corrupted is an error, not a silently shorter file. */
TEST(dataset_idx_bad_gzip) {
    uint8_t pix[4096], buf[8192], gzbytes[8192];
    uint32_t dims[3] = {4, 32, 32};
    char path[512], err[512];
    dataset d;
    for (size_t i = 0; i < sizeof pix; i++) pix[i] = (uint8_t)(i * 7919 >> 3);
    size_t n = make_idx(buf, 0x08, 3, dims, pix, sizeof pix);
    write_tmp(path, sizeof path, "whole.gz", buf, n, 1);

    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    if (!f) return;
    size_t gzlen = fread(gzbytes, 1, sizeof gzbytes, f);
    fclose(f);
    CHECK(gzlen > 100 && gzlen < sizeof gzbytes);
    CHECK(dataset_load_idx(&d, path, NULL, err, sizeof err) == 0);
    dataset_free(&d);

    write_tmp(path, sizeof path, "cut.gz", gzbytes, gzlen / 2, 0);
    EXPECT_FAIL(dataset_load_idx(&d, path, NULL, err, sizeof err), "cut.gz: truncated");
    write_tmp(path, sizeof path, "cut-trailer.gz", gzbytes, gzlen - 4, 0);
    EXPECT_FAIL(dataset_load_idx(&d, path, NULL, err, sizeof err), "cut-trailer.gz: truncated");
    gzbytes[gzlen - 6] ^= 0xFF; /* the CRC32 in the trailer */
    write_tmp(path, sizeof path, "crc.gz", gzbytes, gzlen, 0);
    EXPECT_FAIL(dataset_load_idx(&d, path, NULL, err, sizeof err), "crc.gz: incorrect data check");
    char want[600];
    snprintf(want, sizeof want, "%s: incorrect data check", path);
    CHECK_MSG(strcmp(err, want) == 0, "the path once, then zlib's message: '%s'", err);
    CHECK(d.x == NULL);
}

/* ------------------------------------------------------------------ NPY */

TEST(dataset_npy_roundtrip) {
    uint8_t buf[512], payload[64];
    char xpath[512], lpath[512], err[512];
    dataset d;

    /* Version 1, <f4 (2, 3), with <i8 labels. */
    const float f[6] = {0.5f, -1.0f, 3.0f, 1e-3f, 0.0f, -7.25f};
    size_t n = make_npy(buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
                        f, sizeof f);
    write_tmp(xpath, sizeof xpath, "x.npy", buf, n, 0);
    const uint8_t i8[16] = {5, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
                            0xFF, 0xFF, 0xFF, 0xFF}; /* 5, -1 */
    n = make_npy(buf, 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }", i8, 16);
    write_tmp(lpath, sizeof lpath, "y.npy.gz", buf, n, 1);
    int rc = dataset_load_npy(&d, xpath, lpath, err, sizeof err);
    CHECK_MSG(rc == 0, "%s", err);
    CHECK(d.n == 2 && d.dim == 3 && d.channels == 1 && d.height == 1 && d.width == 3);
    if (rc == 0) {
        CHECK_CLOSE("npy f4", d.x, f, 6, 0, 0);
        CHECK(d.labels[0] == 5 && d.labels[1] == -1);
    }
    dataset_free(&d);

    /* Version 2, |u1 (2, 2, 2) pixels, with |u1 labels; other spellings numpy accepts. */
    const uint8_t u1[8] = {0, 51, 102, 255, 1, 2, 3, 4};
    n = make_npy(buf, 2, "{\"shape\":(2,2,2),\"fortran_order\":False,\"descr\":\"|u1\"}", u1, 8);
    write_tmp(xpath, sizeof xpath, "u1.npy", buf, n, 0);
    n = make_npy(buf, 2, "{'descr': '|u1', 'fortran_order': False, 'shape': (2,)}",
                 (uint8_t[2]){1, 0}, 2);
    write_tmp(lpath, sizeof lpath, "u1-labels.npy", buf, n, 0);
    rc = dataset_load_npy(&d, xpath, lpath, err, sizeof err);
    CHECK_MSG(rc == 0, "%s", err);
    CHECK(d.n == 2 && d.dim == 4 && d.channels == 1 && d.height == 2 && d.width == 2);
    CHECK(rc == 0 && d.x[0] == 0.0f && d.x[1] == 0.2f && d.x[3] == 1.0f && d.x[4] == 1 / 255.0f);
    CHECK(rc == 0 && d.labels[0] == 1 && d.labels[1] == 0);
    dataset_free(&d);

    /* Version 3, big-endian >f8 (1, 1, 2, 2), with <i4 labels. */
    const uint8_t one_be[8] = {0x3F, 0xF0, 0, 0, 0, 0, 0, 0}; /* 1.0 */
    const uint8_t m2_be[8] = {0xC0, 0, 0, 0, 0, 0, 0, 0};     /* -2.0 */
    for (int i = 0; i < 4; i++) memcpy(payload + 8 * i, i % 2 ? m2_be : one_be, 8);
    n = make_npy(buf, 3, "{'descr': '>f8', 'fortran_order': False, 'shape': (1, 1, 2, 2), }",
                 payload, 32);
    CHECK(dataset_parse_npy(&d, buf, n, err, sizeof err) == 0);
    CHECK(d.n == 1 && d.dim == 4 && d.channels == 1 && d.height == 2 && d.width == 2);
    CHECK(d.x && d.x[0] == 1.0f && d.x[1] == -2.0f && d.x[2] == 1.0f && d.x[3] == -2.0f);
    dataset_free(&d);

    int32_t *labels;
    size_t nl;
    const int32_t i4[3] = {7, -3, 100000};
    n = make_npy(buf, 3, "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }", i4, 12);
    CHECK(dataset_parse_npy_labels(&labels, &nl, buf, n, err, sizeof err) == 0);
    CHECK(nl == 3 && labels && labels[0] == 7 && labels[1] == -3 && labels[2] == 100000);
    free(labels);
}

TEST(dataset_npy_errors) {
    uint8_t buf[512] = {0}, zeros[64] = {0};
    char xpath[512], lpath[512], err[512];
    dataset d;
    int32_t *labels;
    size_t n, nl;
#define NPY_FAILS(dict, payload_len, want)                                           \
    do {                                                                             \
        n = make_npy(buf, 1, (dict), zeros, (payload_len));                          \
        EXPECT_FAIL(dataset_parse_npy(&d, buf, n, err, sizeof err), (want));         \
        CHECK(d.x == NULL);                                                          \
    } while (0)

    EXPECT_FAIL(dataset_parse_npy(&d, buf, 0, err, sizeof err), "empty file");
    EXPECT_FAIL(dataset_parse_npy(&d, (const uint8_t *)"PK\3\4 a zip file", 16, err, sizeof err),
                "wrong magic: not an NPY file");
    n = make_npy(buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }", zeros, 8);
    buf[6] = 4;
    EXPECT_FAIL(dataset_parse_npy(&d, buf, n, err, sizeof err), "version 4.0 is not supported");
    EXPECT_FAIL(dataset_parse_npy(&d, buf, 60, err, sizeof err), "version 4.0");
    buf[6] = 1;
    EXPECT_FAIL(dataset_parse_npy(&d, buf, 60, err, sizeof err),
                "truncated: the NPY header needs 128 bytes but the file has 60");
    EXPECT_FAIL(dataset_parse_npy(&d, buf, n - 1, err, sizeof err),
                "truncated: header says 1 samples of 2 (8 bytes of data) but the file ends "
                "after 135 bytes");
    buf[8] = 0xFF; /* header length 65535 + 10 > file */
    EXPECT_FAIL(dataset_parse_npy(&d, buf, n, err, sizeof err), "truncated");
    put_le32(buf + 8, 0xFFFFFFF0u);
    buf[6] = 2;
    EXPECT_FAIL(dataset_parse_npy(&d, buf, n, err, sizeof err), "implausibly long");

    NPY_FAILS("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 24,
              "fortran_order is True");
    NPY_FAILS("{'descr': '<c8', 'fortran_order': False, 'shape': (1, 2), }", 16,
              "unsupported dtype '<c8'");
    NPY_FAILS("{'descr': '|b1', 'fortran_order': False, 'shape': (1, 2), }", 2,
              "unsupported dtype '|b1'");
    NPY_FAILS("{'descr': '<U3', 'fortran_order': False, 'shape': (1, 2), }", 24,
              "unsupported dtype '<U3'");
    NPY_FAILS("{'descr': '<f2', 'fortran_order': False, 'shape': (1, 2), }", 4,
              "unsupported dtype '<f2'");
    NPY_FAILS("{'descr': '|f4', 'fortran_order': False, 'shape': (1, 2), }", 8,
              "unsupported dtype '|f4'");
    NPY_FAILS("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", 4,
              "structured");
    NPY_FAILS("{'descr': '<f4', 'fortran_order': False, }", 8, "missing 'shape'");
    NPY_FAILS("{'descr': '<f4', 'shape': (1, 2), }", 8, "missing 'fortran_order'");
    NPY_FAILS("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), 'x': 1}", 8,
              "unexpected or repeated key 'x'");
    NPY_FAILS("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1, 2)}", 8,
              "repeated key 'descr'");
    NPY_FAILS("{'descr': '<f4', 'fortran_order': maybe, 'shape': (1, 2), }", 8,
              "fortran_order is not True or False");
    NPY_FAILS("{'descr': '<f4', 'fortran_order': False, 'shape': (1 2), }", 8,
              "malformed shape");
    NPY_FAILS("{'descr': '<f4', 'fortran_order': False, 'shape': (1, -2), }", 8,
              "other than integers");
    NPY_FAILS("{'descr': '<f4', 'fortran_order': False, 'shape': [1, 2], }", 8,
              "not a tuple");
    NPY_FAILS("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), } x", 8,
              "text after the dict");
    NPY_FAILS("{'descr': '<f4' 'fortran_order': False, 'shape': (1, 2), }", 8,
              "expected ',' or '}'");
    NPY_FAILS("('descr', '<f4')", 8, "not a dict");
    NPY_FAILS("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 8,
              "1-dimensional array");
    NPY_FAILS("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", 4,
              "0-dimensional array");
    NPY_FAILS("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 2), }", 8,
              "more than 4 dimensions");
    NPY_FAILS("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 2), }", 8,
              "too large");
    NPY_FAILS("{'descr': '<f4', 'fortran_order': False, 'shape': (65536, 65536), }", 8,
              "too large");
    NPY_FAILS("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 2), }", 0, "no samples");
    NPY_FAILS("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }", 12,
              "4 unexpected bytes");

    /* Non-finite data. */
    const float inf[2] = {1.0f, INFINITY};
    n = make_npy(buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }", inf, 8);
    EXPECT_FAIL(dataset_parse_npy(&d, buf, n, err, sizeof err),
                "sample 0, value 1: inf is not a finite float32");
    const double big[1] = {1e300};
    n = make_npy(buf, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1), }", big, 8);
    EXPECT_FAIL(dataset_parse_npy(&d, buf, n, err, sizeof err), "not a finite float32");

    /* Labels. */
#define NPY_LABELS_FAIL(dict, payload, payload_len, want)                                  \
    do {                                                                                   \
        n = make_npy(buf, 1, (dict), (payload), (payload_len));                            \
        EXPECT_FAIL(dataset_parse_npy_labels(&labels, &nl, buf, n, err, sizeof err), (want)); \
        CHECK(labels == NULL && nl == 0);                                                  \
    } while (0)
    NPY_LABELS_FAIL("{'descr': '<i8', 'fortran_order': False, 'shape': (2, 1), }", zeros, 16,
                    "labels must be 1-dimensional");
    NPY_LABELS_FAIL("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", zeros, 8,
                    "floating point");
    NPY_LABELS_FAIL("{'descr': '<i8', 'fortran_order': False, 'shape': (0,), }", zeros, 0,
                    "no labels");
    const uint8_t too_big[8] = {0, 0, 0, 0, 0, 1, 0, 0}; /* 2^40 */
    NPY_LABELS_FAIL("{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }", too_big, 8,
                    "does not fit in int32");
    const uint8_t too_small[8] = {0, 0, 0, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF}; /* -2164260864 < INT32_MIN */
    NPY_LABELS_FAIL("{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }", too_small, 8,
                    "does not fit in int32");
#undef NPY_FAILS
#undef NPY_LABELS_FAIL

    /* Count mismatch between files. */
    n = make_npy(buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", zeros, 24);
    write_tmp(xpath, sizeof xpath, "three.npy", buf, n, 0);
    n = make_npy(buf, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (4,), }", zeros, 16);
    write_tmp(lpath, sizeof lpath, "four-labels.npy", buf, n, 0);
    EXPECT_FAIL(dataset_load_npy(&d, xpath, lpath, err, sizeof err),
                "four-labels.npy: labels count 4 != samples count 3");
    CHECK(d.x == NULL && d.labels == NULL);
    tmp_path(lpath, sizeof lpath, "missing-labels.npy");
    EXPECT_FAIL(dataset_load_npy(&d, xpath, lpath, err, sizeof err),
                "missing-labels.npy: No such file");
}

/* ------------------------------------------------------------------ CSV */

TEST(dataset_csv_roundtrip) {
    char path[512], err[512];
    dataset d;

    /* Header auto-detected, CRLF, spaces, blank lines, label last written as a float. */
    const char *ecg = "\xEF\xBB\xBFx0,x1,label\r\n1,2,0\r\n\r\n3.5, -4e-1 ,1.0\r\n  \r\n";
    write_tmp(path, sizeof path, "ecg.csv.gz", ecg, strlen(ecg), 1);
    int rc = dataset_load_csv(&d, path, DATASET_CSV_LAST_COL, err, sizeof err);
    CHECK_MSG(rc == 0, "%s", err);
    CHECK(d.n == 2 && d.dim == 2 && d.channels == 1 && d.height == 1 && d.width == 2);
    CHECK(rc == 0 && d.x[0] == 1.0f && d.x[1] == 2.0f && d.x[2] == 3.5f && d.x[3] == -0.4f);
    CHECK(rc == 0 && d.labels[0] == 0 && d.labels[1] == 1);
    dataset_free(&d);

    /* No header, label first, no final newline. */
    rc = parse_csv_str(&d, "7,0.25,0.5\n-8,1,2", 0, err, sizeof err);
    CHECK_MSG(rc == 0, "%s", err);
    CHECK(d.n == 2 && d.dim == 2 && rc == 0 && d.labels[0] == 7 && d.labels[1] == -8);
    CHECK(rc == 0 && d.x[0] == 0.25f && d.x[1] == 0.5f && d.x[2] == 1.0f && d.x[3] == 2.0f);
    dataset_free(&d);

    /* Label in the middle; no labels at all. */
    rc = parse_csv_str(&d, "1,5,2\n3,6,4\n", 1, err, sizeof err);
    CHECK(rc == 0 && d.dim == 2 && d.labels[1] == 6 && d.x[2] == 3.0f && d.x[3] == 4.0f);
    dataset_free(&d);
    rc = parse_csv_str(&d, "1,5,2\n3,6,4\n", DATASET_CSV_NO_LABEL, err, sizeof err);
    CHECK(rc == 0 && d.n == 2 && d.dim == 3 && d.labels == NULL && d.x[5] == 4.0f);
    dataset_free(&d);

    /* The first line is a header as soon as one cell is not a number. */
    rc = parse_csv_str(&d, "0,1,class\n1,2,3\n", DATASET_CSV_LAST_COL, err, sizeof err);
    CHECK(rc == 0 && d.n == 1 && d.labels[0] == 3);
    dataset_free(&d);
}

TEST(dataset_csv_errors) {
    char path[512], err[512];
    dataset d;
    char long_cell[200];

    write_tmp(path, sizeof path, "empty.csv", "", 0, 0);
    EXPECT_FAIL(dataset_load_csv(&d, path, DATASET_CSV_LAST_COL, err, sizeof err),
                "empty.csv: empty file");
    tmp_path(path, sizeof path, "absent.csv");
    EXPECT_FAIL(dataset_load_csv(&d, path, DATASET_CSV_LAST_COL, err, sizeof err),
                "absent.csv: No such file");
#define CSV_FAILS(text, label_col, want)                                               \
    do {                                                                               \
        EXPECT_FAIL(parse_csv_str(&d, (text), (label_col), err, sizeof err), (want));  \
        CHECK(d.x == NULL && d.labels == NULL && d.n == 0);                            \
    } while (0)
    CSV_FAILS("\r\n \n\t\n", 0, "empty file");
    CSV_FAILS("a,b,label\r\n", DATASET_CSV_LAST_COL, "no data rows");
    CSV_FAILS("1,2,3\n4,x,6\n", DATASET_CSV_LAST_COL,
              "line 2, column 2: 'x' is not a finite number");
    CSV_FAILS("1,2,3\n4,5\n", DATASET_CSV_LAST_COL,
              "ragged rows: line 2 has 2 columns, line 1 has 3");
    CSV_FAILS("h1,h2\n1,2\n\n3,4,5\n", DATASET_CSV_NO_LABEL,
              "ragged rows: line 4 has 3 columns, line 1 has 2");
    CSV_FAILS("1,2,3\n4,,6\n", DATASET_CSV_LAST_COL, "line 2, column 2: '' is not");
    CSV_FAILS("1,2,3\n4,nan,6\n", DATASET_CSV_LAST_COL, "'nan' is not a finite number");
    CSV_FAILS("1,2,3\n4,1e999,6\n", DATASET_CSV_LAST_COL, "'1e999' is not a finite number");
    CSV_FAILS("1,2,3\n4,1e39,6\n", DATASET_CSV_LAST_COL, "'1e39' is not a finite number");
    CSV_FAILS("1,2,3\n4,5,6x\n", DATASET_CSV_LAST_COL, "column 3: '6x' is not");
    CSV_FAILS("1,2,0.5\n", DATASET_CSV_LAST_COL, "line 1, column 3: '0.5' is not an int32 label");
    CSV_FAILS("1,2,3e9\n", DATASET_CSV_LAST_COL, "'3e9' is not an int32 label");
    CSV_FAILS("1,2,3\n", 3, "label column 3: rows have 3 columns");
    CSV_FAILS("1,2,3\n", -3, "label column -3");
    CSV_FAILS("1\n2\n", DATASET_CSV_LAST_COL, "only the label column");
    memset(long_cell, '1', sizeof long_cell - 1);
    long_cell[sizeof long_cell - 1] = '\0';
    char text[256];
    snprintf(text, sizeof text, "1,2\n3,%s\n", long_cell);
    CSV_FAILS(text, DATASET_CSV_NO_LABEL, "...' is not a finite number");
#undef CSV_FAILS
}

/* ------------------------------------------------------------------ operations */

TEST(dataset_filter_one_vs_rest) {
    static const char *csv = "0,10\n1,11\n2,12\n1,13\n";
    char err[512];
    dataset d;

    CHECK(parse_csv_str(&d, csv, 0, err, sizeof err) == 0);
    int32_t one = 1;
    CHECK(dataset_filter_classes(&d, &one, 1, 0, err, sizeof err) == 0);
    CHECK(d.n == 2 && d.x[0] == 11.0f && d.x[1] == 13.0f && d.labels[0] == 1 && d.labels[1] == 1);
    dataset_free(&d);

    CHECK(parse_csv_str(&d, csv, 0, err, sizeof err) == 0);
    CHECK(dataset_filter_classes(&d, &one, 1, 1, err, sizeof err) == 0);
    CHECK(d.n == 2 && d.x[0] == 10.0f && d.x[1] == 12.0f && d.labels[0] == 0 && d.labels[1] == 2);

    /* A filter that empties the set fails and leaves the set as it was. */
    int32_t five = 5, all[3] = {0, 1, 2};
    EXPECT_FAIL(dataset_filter_classes(&d, &five, 1, 0, err, sizeof err),
                "filter leaves no samples");
    EXPECT_FAIL(dataset_filter_classes(&d, all, 3, 1, err, sizeof err),
                "filter leaves no samples");
    EXPECT_FAIL(dataset_filter_classes(&d, NULL, 0, 0, err, sizeof err),
                "filter leaves no samples");
    CHECK(d.n == 2 && d.x[1] == 12.0f);
    dataset_free(&d);

    CHECK(parse_csv_str(&d, csv, DATASET_CSV_NO_LABEL, err, sizeof err) == 0);
    EXPECT_FAIL(dataset_filter_classes(&d, &one, 1, 0, err, sizeof err), "no labels");
    CHECK(d.n == 4);
    dataset_free(&d);
}

/* 1000 samples holding their own index, so a split can be checked sample by sample. */
static void make_indexed(dataset *d, size_t n) {
    memset(d, 0, sizeof *d);
    d->x = malloc(n * 2 * sizeof *d->x);
    d->labels = malloc(n * sizeof *d->labels);
    CHECK(d->x && d->labels);
    if (!d->x || !d->labels) return;
    d->n = n;
    d->dim = 2;
    d->channels = d->height = 1;
    d->width = 2;
    for (size_t i = 0; i < n; i++) {
        d->x[2 * i] = (float)i;
        d->x[2 * i + 1] = -(float)i;
        d->labels[i] = (int32_t)(i % 10);
    }
}

TEST(dataset_split_deterministic) {
    dataset d, a, b, a2, b2, a3, b3;
    char err[512];
    make_indexed(&d, 1000);
    if (!d.x) return;

    CHECK_MSG(dataset_split(&d, 0.1, 42, &a, &b, err, sizeof err) == 0, "%s", err);
    CHECK(a.n == 100 && b.n == 900 && a.dim == 2 && b.width == 2 && a.labels && b.labels);
    /* Every sample lands in exactly one part, each part in the original order. */
    char seen[1000] = {0};
    const dataset *parts[2] = {&a, &b};
    for (int p = 0; p < 2; p++) {
        for (size_t i = 0; i < parts[p]->n; i++) {
            size_t v = (size_t)parts[p]->x[2 * i];
            CHECK(v < 1000 && !seen[v]);
            if (v < 1000) seen[v] = 1;
            CHECK(parts[p]->x[2 * i + 1] == -(float)v && parts[p]->labels[i] == (int32_t)(v % 10));
            if (i) CHECK(parts[p]->x[2 * i] > parts[p]->x[2 * (i - 1)]);
        }
    }
    size_t total = 0;
    for (int i = 0; i < 1000; i++) total += seen[i];
    CHECK(total == 1000);
    /* Random, not the first 100. */
    CHECK(a.x[2 * 99] > 200.0f);

    CHECK(dataset_split(&d, 0.1, 42, &a2, &b2, err, sizeof err) == 0);
    CHECK(a2.n == a.n && memcmp(a2.x, a.x, a.n * 2 * sizeof(float)) == 0);
    CHECK(memcmp(b2.x, b.x, b.n * 2 * sizeof(float)) == 0);
    CHECK(dataset_split(&d, 0.1, 43, &a3, &b3, err, sizeof err) == 0);
    CHECK(a3.n == 100 && memcmp(a3.x, a.x, a.n * 2 * sizeof(float)) != 0);
    /* The first picks of seed 42, pinned so that a change of generator is noticed: a
     * model's calibration hold-out must stay the same across versions. */
    CHECK(a.x[0] == 4.0f && a.x[2] == 18.0f && a.x[4] == 21.0f);
    /* dataset_split_rows names the same rows. */
    uint8_t in_a[1000];
    CHECK(dataset_split_rows(1000, 0.1, 42, in_a, err, sizeof err) == 0);
    size_t ia = 0, ib = 0;
    for (size_t i = 0; i < 1000; i++) {
        const dataset *p = in_a[i] ? &a : &b;
        size_t j = in_a[i] ? ia++ : ib++;
        CHECK_MSG(j < p->n && p->x[2 * j] == (float)i, "row %zu", i);
    }
    CHECK(ia == a.n && ib == b.n);
    EXPECT_FAIL(dataset_split_rows(1000, 1.5, 42, in_a, err, sizeof err), "not strictly between");

    dataset_free(&a);
    dataset_free(&b);
    dataset_free(&a2);
    dataset_free(&b2);
    dataset_free(&a3);
    dataset_free(&b3);

    EXPECT_FAIL(dataset_split(&d, 0.0, 1, &a, &b, err, sizeof err), "not strictly between");
    EXPECT_FAIL(dataset_split(&d, 1.0, 1, &a, &b, err, sizeof err), "not strictly between");
    EXPECT_FAIL(dataset_split(&d, NAN, 1, &a, &b, err, sizeof err), "not strictly between");
    EXPECT_FAIL(dataset_split(&d, 0.0001, 1, &a, &b, err, sizeof err), "leaves a part empty");
    EXPECT_FAIL(dataset_split(&d, 0.9999, 1, &a, &b, err, sizeof err), "leaves a part empty");
    CHECK(a.x == NULL && b.x == NULL);
    dataset_free(&d);
}

TEST(dataset_scale_per_sample) {
    char err[512];
    dataset d;
    CHECK(parse_csv_str(&d, "2,4,6\n5,5,5\n-1,0,3\n", DATASET_CSV_NO_LABEL, err, sizeof err) == 0);
    if (!d.x) return;
    dataset_scale_minmax(&d, 0.0f, 1.0f);
    const float want[9] = {0, 0.5f, 1, 0, 0, 0, 0, 0.25f, 1};
    CHECK_CLOSE("scaled to [0,1]", d.x, want, 9, 1e-7, 0);
    dataset_scale_minmax(&d, -1.0f, 1.0f);
    const float want2[9] = {-1, 0, 1, -1, -1, -1, -1, -0.5f, 1};
    CHECK_CLOSE("scaled to [-1,1]", d.x, want2, 9, 1e-7, 0);
    dataset_free(&d);
}

/* ------------------------------------------------------------------ robustness */

/* Every parser, on every prefix of a valid file and on every one-byte change of it, must
 * return 0 or -1 (with its outputs zeroed) without reading outside the buffer; each
 * attempt gets an exact-size heap copy so that ASan or valgrind would see an overread. */
typedef int (*parse_fn)(const uint8_t *buf, size_t len, char *err, size_t errlen);

static int try_idx(const uint8_t *buf, size_t len, char *err, size_t errlen) {
    dataset d;
    int rc = dataset_parse_idx(&d, buf, len, err, errlen);
    if (rc) CHECK(d.x == NULL && d.n == 0);
    dataset_free(&d);
    return rc;
}

static int try_npy(const uint8_t *buf, size_t len, char *err, size_t errlen) {
    dataset d;
    int32_t *labels;
    size_t n;
    int rc = dataset_parse_npy(&d, buf, len, err, errlen);
    if (rc) CHECK(d.x == NULL && d.n == 0);
    dataset_free(&d);
    int lrc = dataset_parse_npy_labels(&labels, &n, buf, len, err, errlen);
    if (lrc) CHECK(labels == NULL && n == 0);
    free(labels);
    return rc && lrc ? -1 : 0; /* the file is either samples or labels */
}

static int try_csv(const uint8_t *buf, size_t len, char *err, size_t errlen) {
    dataset d;
    int rc = dataset_parse_csv(&d, (const char *)buf, len, DATASET_CSV_LAST_COL, err, errlen);
    if (rc) CHECK(d.x == NULL && d.labels == NULL && d.n == 0);
    dataset_free(&d);
    return rc;
}

static void mutate_all(parse_fn parse, const uint8_t *valid, size_t len, int last_line_optional) {
    static const uint8_t values[] = {0x00, 0xFF, 0x7F, '9', ',', '\n', ')', '\''};
    char err[512];
    uint8_t *copy;

    for (size_t cut = 0; cut <= len; cut++) {
        copy = malloc(cut ? cut : 1);
        CHECK(copy != NULL);
        if (!copy) return;
        memcpy(copy, valid, cut);
        int rc = parse(copy, cut, err, sizeof err);
        /* Only the whole file parses (a CSV may also lose whole trailing lines). */
        if (!last_line_optional) CHECK_MSG((rc == 0) == (cut == len), "prefix %zu: rc %d", cut, rc);
        free(copy);
    }
    copy = malloc(len);
    CHECK(copy != NULL);
    if (!copy) return;
    for (size_t i = 0; i < len; i++) {
        for (size_t v = 0; v < sizeof values; v++) {
            memcpy(copy, valid, len);
            copy[i] = values[v];
            parse(copy, len, err, sizeof err);
        }
    }
    free(copy);
}

TEST(dataset_parsers_survive_bad_bytes) {
    uint8_t idx[64], npy[256], pix[12];
    uint32_t dims[3] = {2, 2, 3};
    for (int i = 0; i < 12; i++) pix[i] = (uint8_t)(i * 20);
    size_t n = make_idx(idx, 0x08, 3, dims, pix, sizeof pix);
    mutate_all(try_idx, idx, n, 0);

    const float f[4] = {1, 2, 3, 4};
    n = make_npy(npy, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", f, 16);
    mutate_all(try_npy, npy, n, 0);
    n = make_npy(npy, 3, "{'descr': '<i4', 'fortran_order': False, 'shape': (4,), }", f, 16);
    mutate_all(try_npy, npy, n, 0);

    const char *csv = "a,b,label\r\n1.5,-2e3,0\r\n3,4,1\n";
    mutate_all(try_csv, (const uint8_t *)csv, strlen(csv), 1);
}

static const float npy_values[6] = {1.5f, -0.0f, 3e-38f, 7.25f, -1e30f, 0.1f};
static uint64_t npy_value_bits(const void *ctx, size_t i) {
    uint32_t u;
    memcpy(&u, (const float *)ctx + i, sizeof u);
    return u;
}
static uint64_t npy_label(const void *ctx, size_t i) {
    (void)ctx;
    return (uint64_t)(int64_t)((int)i * 7 - 4);   /* negative too: two's complement bytes */
}

/* The writer's files are read back by the reader, values bit for bit, for each dtype. */
TEST(dataset_npy_writer_round_trips) {
    char err[256], xpath[512], lpath[512];
    tmp_path(xpath, sizeof xpath, "written.npy");
    tmp_path(lpath, sizeof lpath, "written.labels.npy");
    for (int dt = NPY_I4; dt <= NPY_I8; dt++) {
        CHECK(dataset_write_npy(xpath, NPY_F4, 3, 2, npy_value_bits, npy_values, err, sizeof err) == 0);
        CHECK(dataset_write_npy(lpath, (npy_dtype)dt, 3, 0, npy_label, NULL, err, sizeof err) == 0);
        dataset d;
        CHECK(dataset_load_npy(&d, xpath, lpath, err, sizeof err) == 0);
        CHECK(d.n == 3 && d.dim == 2 && d.labels != NULL);
        if (d.x) CHECK(memcmp(d.x, npy_values, sizeof npy_values) == 0);
        for (size_t i = 0; d.labels && i < 3; i++) CHECK(d.labels[i] == (int)i * 7 - 4);
        dataset_free(&d);
    }
    /* An unwritable path is an error with the path in it, not a crash. */
    char bad[600];
    snprintf(bad, sizeof bad, "%s/no-such-dir/x.npy", test_tmpdir());
    CHECK(dataset_write_npy(bad, NPY_F4, 3, 2, npy_value_bits, npy_values, err, sizeof err) == -1);
    CHECK(strstr(err, "no-such-dir") != NULL);
}
