/* Loader for the PyTorch parity fixtures and the shared deterministic generator. */
#include "fixture.h"
#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define FIXTURE_MAX_TENSORS 256
#define FIXTURE_MAX_ELEMS (1u << 24)

struct fixture {
    char path[512];
    int count;
    char *names[FIXTURE_MAX_TENSORS];
    float *data[FIXTURE_MAX_TENSORS];
    size_t sizes[FIXTURE_MAX_TENSORS];
};

static int read_exact(gzFile f, void *buf, size_t n) {
    return gzread(f, buf, (unsigned)n) == (int)n;
}

static int read_u32(gzFile f, uint32_t *v) {
    unsigned char b[4];
    if (!read_exact(f, b, 4)) return 0;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return 1;
}

fixture *fixture_load(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "tests/fixtures/%s.bin.gz", name);
    gzFile f = gzopen(path, "rb");
    if (!f) {
        check_fail(__FILE__, __LINE__, "cannot open fixture %s", path);
        return NULL;
    }
    fixture *fx = calloc(1, sizeof *fx);
    if (fx) snprintf(fx->path, sizeof fx->path, "%s", path);
    char magic[4];
    uint32_t version, count;
    if (!fx || !read_exact(f, magic, 4) || memcmp(magic, "ANTF", 4) || !read_u32(f, &version) ||
        version != 1 || !read_u32(f, &count) || count > FIXTURE_MAX_TENSORS)
        goto bad;
    for (uint32_t t = 0; t < count; t++) {
        uint32_t len, ndim, dim;
        size_t n = 1;
        if (!read_u32(f, &len) || len == 0 || len > 200) goto bad;
        fx->names[t] = calloc(len + 1, 1);
        fx->count = (int)t + 1;
        if (!fx->names[t] || !read_exact(f, fx->names[t], len)) goto bad;
        if (!read_u32(f, &ndim) || ndim > 8) goto bad;
        for (uint32_t d = 0; d < ndim; d++) {
            if (!read_u32(f, &dim) || dim > FIXTURE_MAX_ELEMS) goto bad;
            n *= dim;
            if (n > FIXTURE_MAX_ELEMS) goto bad;
        }
        fx->sizes[t] = n;
        fx->data[t] = malloc(n * sizeof(float) + 1);
        if (!fx->data[t]) goto bad;
        unsigned char *raw = (unsigned char *)fx->data[t];
        if (!read_exact(f, raw, n * 4)) goto bad;
        for (size_t i = 0; i < n; i++) {     /* little-endian on disk, whatever the host */
            uint32_t u = (uint32_t)raw[4 * i] | (uint32_t)raw[4 * i + 1] << 8 |
                         (uint32_t)raw[4 * i + 2] << 16 | (uint32_t)raw[4 * i + 3] << 24;
            memcpy(&fx->data[t][i], &u, 4);
        }
    }
    gzclose(f);
    return fx;
bad:
    check_fail(__FILE__, __LINE__, "fixture %s is malformed", path);
    gzclose(f);
    fixture_free(fx);
    return NULL;
}

void fixture_free(fixture *fx) {
    if (!fx) return;
    for (int t = 0; t < fx->count; t++) {
        free(fx->names[t]);
        free(fx->data[t]);
    }
    free(fx);
}

const float *fixture_get(const fixture *fx, const char *name, size_t n) {
    for (int t = 0; fx && t < fx->count; t++)
        if (strcmp(fx->names[t], name) == 0) {
            if (fx->sizes[t] == n) return fx->data[t];
            check_fail(__FILE__, __LINE__, "%s: tensor '%s' holds %zu values, expected %zu",
                       fx->path, name, fx->sizes[t], n);
            return NULL;
        }
    check_fail(__FILE__, __LINE__, "%s: no tensor '%s'", fx ? fx->path : "fixture", name);
    return NULL;
}

float fixture_scalar(const fixture *fx, const char *name) {
    const float *v = fixture_get(fx, name, 1);
    return v ? v[0] : NAN;
}

/* A 32-bit integer hash (the "lowbias32" finaliser); Python reproduces it bit for bit. */
static uint32_t det_hash(uint32_t i, uint32_t seed) {
    uint32_t h = (i + 1u) * 0x9E3779B1u + seed * 0x85EBCA77u;
    h ^= h >> 16;
    h *= 0x7FEB352Du;
    h ^= h >> 15;
    h *= 0x846CA68Bu;
    h ^= h >> 16;
    return h;
}

void det_fill(float *out, size_t n, uint32_t seed, float lo, float hi) {
    for (size_t i = 0; i < n; i++) {
        double u = (double)(det_hash((uint32_t)i, seed) >> 8) / 16777216.0;
        out[i] = (float)((double)lo + ((double)hi - (double)lo) * u);
    }
}
