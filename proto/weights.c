/* Reading and writing the weights file (see weights.h for the layout). */
#include "weights.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define MAX_FILE_BYTES ((size_t)1 << 31)

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

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
    put_u32(buf + 4, WEIGHTS_VERSION);
    put_u32(buf + 8, (uint32_t)hl);
    memcpy(buf + 12, header, (size_t)hl);
    uint8_t *p = buf + 12 + hl;
    put_u32(p, (uint32_t)(m->n_params & 0xffffffffu));
    put_u32(p + 4, (uint32_t)((uint64_t)m->n_params >> 32));
    p += 8;
    for (size_t i = 0; i < m->n_params; i++, p += 4) {
        uint32_t u;
        memcpy(&u, &m->params[i], 4);
        put_u32(p, u);
    }
    put_u32(p, (uint32_t)crc32(0L, buf, (uInt)(total - 4)));

    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    int ok = f && fwrite(buf, 1, total, f) == total;
    if (f && fclose(f) != 0) ok = 0;
    free(buf);
    if (!ok || rename(tmp, path) != 0) {
        snprintf(err, errlen, "%s: cannot write: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
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
    uint32_t version = get_u32(buf + 4), hl = get_u32(buf + 8);
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
    uint64_t n = get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
    if (n > WEIGHTS_MAX_PARAMS || 12 + (size_t)hl + 8 + n * 4 + 4 != len) {
        snprintf(err, errlen, "truncated or oversized: %llu parameters do not match the "
                 "file size %zu", (unsigned long long)n, len);
        return -1;
    }
    if ((uint32_t)crc32(0L, buf, (uInt)(len - 4)) != get_u32(buf + len - 4)) {
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
    for (size_t i = 0; i < n; i++, p += 4) {
        uint32_t u = get_u32(p);
        memcpy(&m->params[i], &u, 4);
    }
    return 0;
}

int weights_load(const char *path, vae_model *m, char *err, size_t errlen) {
    char sub[256];
    memset(m, 0, sizeof *m);
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (size < 0 || (size_t)size > MAX_FILE_BYTES || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        snprintf(err, errlen, "%s: unreadable or larger than 2 GiB", path);
        return -1;
    }
    uint8_t *buf = malloc(size ? (size_t)size : 1);
    int ok = buf && fread(buf, 1, (size_t)size, f) == (size_t)size;
    fclose(f);
    int rc = -1;
    if (!ok)
        snprintf(err, errlen, "%s: read failed", path);
    else if ((rc = weights_parse(buf, (size_t)size, m, sub, sizeof sub)) != 0)
        snprintf(err, errlen, "%s: %s", path, sub);
    free(buf);
    return rc;
}
