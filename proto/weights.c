/* Reading and writing the weights file (see weights.h for the layout). */
#include "weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "bundle.h"
#include "le.h"

#define MAX_FILE_BYTES ((size_t)1 << 31)

static const char *recon_name(recon_kind r) { return r == RECON_MSE ? "mse" : "bce"; }

int weights_save(const char *path, const vae_model *m, char *err, size_t errlen) {
    char header[WEIGHTS_MAX_HEADER];
    const vae_arch *a = &m->arch;
    int hl = snprintf(header, sizeof header, "arch=%s\nin=%d,%d,%d\nlatent=%d\nrecon=%s\nenc=%s\ndec=%s\n",
                      a->name, a->in.c, a->in.h, a->in.w, a->latent, recon_name(a->recon),
                      a->enc_spec, a->dec_spec);
    if (hl < 0 || (size_t)hl >= sizeof header) {
        snprintf(err, errlen, "architecture description too long");
        return -1;
    }
    size_t total = 12 + (size_t)hl + 8 + m->n_params * 4 + 4;
    uint8_t *buf = malloc(total);
    if (!buf) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    memcpy(buf, "ANOW", 4);
    le_put32(buf + 4, WEIGHTS_VERSION);
    le_put32(buf + 8, (uint32_t)hl);
    memcpy(buf + 12, header, (size_t)hl);
    uint8_t *p = buf + 12 + hl;
    le_put64(p, m->n_params);
    p += 8;
    for (size_t i = 0; i < m->n_params; i++, p += 4) le_put_f32(p, m->params[i]);
    le_put32(p, (uint32_t)crc32(0L, buf, (uInt)(total - 4)));
    int rc = bundle_write_file(path, buf, total, err, errlen);
    free(buf);
    return rc;
}

/* The value of "key=" in the header, copied into out; 0 if absent or too long. */
static int header_value(const char *h, size_t hl, const char *key, char *out, size_t outlen) {
    size_t kl = strlen(key);
    for (size_t i = 0; i < hl;) {
        size_t e = i;
        while (e < hl && h[e] != '\n') e++;
        if (e - i > kl && memcmp(h + i, key, kl) == 0 && h[i + kl] == '=') {
            size_t vl = e - i - kl - 1;
            if (vl >= outlen) return 0;
            memcpy(out, h + i + kl + 1, vl);
            out[vl] = 0;
            return 1;
        }
        i = e + 1;
    }
    return 0;
}

int weights_parse(const uint8_t *buf, size_t len, vae_model *m, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    if (len < 12 + 8 + 4 || memcmp(buf, "ANOW", 4) != 0) {
        snprintf(err, errlen, len < 24 ? "file too short to be a weights file"
                                       : "not an anodm weights file (bad magic)");
        return -1;
    }
    uint32_t version = le_get32(buf + 4), hl = le_get32(buf + 8);
    if (version != WEIGHTS_VERSION) {
        snprintf(err, errlen, "weights format version %u, this build reads version %d",
                 version, WEIGHTS_VERSION);
        return -1;
    }
    if (hl > WEIGHTS_MAX_HEADER || 12 + (size_t)hl + 8 + 4 > len) {
        snprintf(err, errlen, "header length %u does not fit the file", hl);
        return -1;
    }
    const uint8_t *p = buf + 12 + hl;
    uint64_t n = le_get64(p);
    if (n > WEIGHTS_MAX_PARAMS || 12 + (size_t)hl + 8 + n * 4 + 4 != len) {
        snprintf(err, errlen, "truncated or oversized: %llu parameters do not match the "
                 "file size %zu", (unsigned long long)n, len);
        return -1;
    }
    if ((uint32_t)crc32(0L, buf, (uInt)(len - 4)) != le_get32(buf + len - 4)) {
        snprintf(err, errlen, "checksum mismatch: the file is corrupted");
        return -1;
    }
    const char *h = (const char *)buf + 12;
    vae_arch a;
    char in[64], latent[32], recon[16];
    memset(&a, 0, sizeof a);
    if (!header_value(h, hl, "arch", a.name, sizeof a.name) ||
        !header_value(h, hl, "in", in, sizeof in) ||
        !header_value(h, hl, "latent", latent, sizeof latent) ||
        !header_value(h, hl, "recon", recon, sizeof recon) ||
        !header_value(h, hl, "enc", a.enc_spec, sizeof a.enc_spec) ||
        !header_value(h, hl, "dec", a.dec_spec, sizeof a.dec_spec) ||
        sscanf(in, "%d,%d,%d", &a.in.c, &a.in.h, &a.in.w) != 3 ||
        sscanf(latent, "%d", &a.latent) != 1 ||
        (strcmp(recon, "bce") != 0 && strcmp(recon, "mse") != 0)) {
        snprintf(err, errlen, "malformed header");
        return -1;
    }
    a.recon = recon[0] == 'm' ? RECON_MSE : RECON_BCE;
    char sub[256];
    /* Count before allocating: the header alone must not make us reserve memory. */
    if (vae_layout(m, &a, sub, sizeof sub) != 0) {
        snprintf(err, errlen, "bad architecture: %s", sub);
        return -1;
    }
    if (m->n_params != n) {
        snprintf(err, errlen, "architecture needs %zu parameters, file has %llu", m->n_params,
                 (unsigned long long)n);
        return -1;
    }
    if (vae_create(m, &a, 0, sub, sizeof sub) != 0) {
        snprintf(err, errlen, "%s", sub);
        return -1;
    }
    p += 8;
    for (size_t i = 0; i < n; i++, p += 4) m->params[i] = le_get_f32(p);
    return 0;
}

int weights_load(const char *path, vae_model *m, char *err, size_t errlen) {
    uint8_t *buf;
    size_t len;
    char sub[256];
    memset(m, 0, sizeof *m);
    if (bundle_read_file(path, MAX_FILE_BYTES, &buf, &len, err, errlen) != 0) return -1;
    int rc = weights_parse(buf, len, m, sub, sizeof sub);
    if (rc != 0) snprintf(err, errlen, "%s: %s", path, sub);
    free(buf);
    return rc;
}
