/* The weights file (proto/weights.c): a save/load round trip, then every way a file can be
 * bad — missing, empty, wrong magic, a future version, truncated at every length, a bit
 * flipped in every byte, lengths that lie, a header that does not describe the parameters
 * — each of which must give -1 and a message saying what is wrong, never a crash.
 *
 * The loader checks the CRC before it reads the header, so a test that patches a length
 * or the header text must rebuild the CRC, or it would only ever test the checksum. The
 * helpers below therefore assemble files from parts with a correct trailing CRC.
 *
 * Damaged buffers are handed to weights_parse in heap blocks of exactly their length, so
 * that a read past the end shows up under `make asan-test`. */
#include "check.h"
#include "weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

/* ------------------------------------------------------------------ helpers */

/* A tiny custom architecture (1x6x6 images, latent 3): 242 parameters, a file of about
 * 1.2 kB, small enough to truncate at every length and flip every bit of. */
static vae_arch tiny_arch(void) {
    vae_arch a = {.name = "custom", .in = {1, 6, 6}, .latent = 3, .recon = RECON_MSE};
    snprintf(a.enc_spec, sizeof a.enc_spec, "conv2d(2,3,2,1) relu linear(5) relu");
    snprintf(a.dec_spec, sizeof a.dec_spec,
             "linear(18) relu reshape(2,3,3) convtranspose2d(1,3,2,1,1)");
    return a;
}

/* The header text weights_save writes for tiny_arch(), to build variants of by hand. */
static const char TINY_HEADER[] =
    "arch=custom\nin=1,6,6\nlatent=3\nrecon=mse\n"
    "enc=conv2d(2,3,2,1) relu linear(5) relu\n"
    "dec=linear(18) relu reshape(2,3,3) convtranspose2d(1,3,2,1,1)\n";

static void tmp_path(char *out, size_t outlen, const char *name) {
    snprintf(out, outlen, "%s/%s", test_tmpdir(), name);
}

static void put_le32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v) {
    put_le32(p, (uint32_t)v);
    put_le32(p + 4, (uint32_t)(v >> 32));
}

/* Rewrites the trailing CRC of a (patched) file so that the loader's checks behind the
 * checksum are reached. */
static void fix_crc(uint8_t *buf, size_t len) {
    put_le32(buf + len - 4, (uint32_t)crc32(0L, buf, (uInt)(len - 4)));
}

/* A weights file from parts: the header text, the parameter count it claims, and
 * n_actual parameters (all 0.5f) actually present; the CRC is correct. Sets *len. */
static uint8_t *build_file(const char *header, size_t header_len, uint64_t n_claim,
                           size_t n_actual, size_t *len) {
    *len = 12 + header_len + 8 + 4 * n_actual + 4;
    uint8_t *buf = malloc(*len);
    if (!buf) return NULL;
    memcpy(buf, "ANOW", 4);
    put_le32(buf + 4, WEIGHTS_VERSION);
    put_le32(buf + 8, (uint32_t)header_len);
    memcpy(buf + 12, header, header_len);
    uint8_t *p = buf + 12 + header_len;
    put_le64(p, n_claim);
    p += 8;
    const float half = 0.5f;
    for (size_t i = 0; i < n_actual; i++, p += 4) memcpy(p, &half, 4);
    fix_crc(buf, *len);
    return buf;
}

static uint8_t *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t *buf = NULL;
    long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (size > 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)size)) &&
        fread(buf, 1, (size_t)size, f) != (size_t)size) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = size > 0 ? (size_t)size : 0;
    return buf;
}

static void write_all(const char *path, const void *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    CHECK(len == 0 || fwrite(buf, 1, len, f) == len);
    CHECK(fclose(f) == 0);
}

/* A saved tiny model's file bytes (the caller frees them), and its parameter count. */
static uint8_t *tiny_file(size_t *len, size_t *n_params) {
    vae_arch a = tiny_arch();
    vae_model m;
    char err[256], path[512];
    tmp_path(path, sizeof path, "weights_tiny.w");
    if (vae_create(&m, &a, 5, err, sizeof err) != 0) {
        check_fail(__FILE__, __LINE__, "vae_create: %s", err);
        return NULL;
    }
    *n_params = m.n_params;
    int rc = weights_save(path, &m, err, sizeof err);
    vae_free(&m);
    CHECK_MSG(rc == 0, "weights_save: %s", err);
    uint8_t *buf = rc == 0 ? read_all(path, len) : NULL;
    CHECK(buf != NULL);
    return buf;
}

/* weights_parse on a private heap copy of exactly len bytes (so ASan sees over-reads).
 * Returns its rc and leaves the message in err; frees the model if it loaded. */
static int parse_copy(const uint8_t *buf, size_t len, char *err, size_t errlen) {
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) return 0;
    if (len) memcpy(copy, buf, len);
    vae_model m;
    err[0] = 0;
    int rc = weights_parse(copy, len, &m, err, errlen);
    if (rc == 0) vae_free(&m);
    free(copy);
    return rc;
}

#define EXPECT_FAIL(rc, err, want) CHECK_FAILS_WITH((rc), (err), (want))

/* Parses a file built from a header text (with a correct CRC), expecting failure with want. */
static void expect_header_fails_(const char *file, int line, const char *header,
                                 uint64_t n_claim, size_t n_actual, const char *want) {
    size_t len;
    char err[512];
    uint8_t *buf = build_file(header, strlen(header), n_claim, n_actual, &len);
    if (!buf) return;
    int rc = parse_copy(buf, len, err, sizeof err);
    if (rc != -1 || !strstr(err, want))
        check_fail(file, line, "header \"%s\": expected '%s', got rc %d, err '%s'", header,
                   want, rc, rc ? err : "");
    free(buf);
}
#define EXPECT_HEADER_FAILS(header, n_claim, n_actual, want) \
    expect_header_fails_(__FILE__, __LINE__, (header), (n_claim), (n_actual), (want))

/* ------------------------------------------------------------------ round trip */

TEST(weights_round_trip) {
    vae_arch a = tiny_arch();
    vae_model m, back;
    char err[512], path[512], tmp[600];
    tmp_path(path, sizeof path, "weights_round_trip.w");
    CHECK_MSG(vae_create(&m, &a, 11, err, sizeof err) == 0, "%s", err);
    /* Values a lossy writer would mangle: signed zero, a subnormal, extremes. */
    m.params[0] = -0.0f;
    m.params[1] = 1e-40f;
    m.params[2] = 3.4028235e38f;
    m.params[3] = -1.17549435e-38f;
    CHECK_MSG(weights_save(path, &m, err, sizeof err) == 0, "%s", err);
    int rc = weights_load(path, &back, err, sizeof err);
    CHECK_MSG(rc == 0, "weights_load: %s", err);
    if (rc == 0) {
        CHECK(back.n_params == m.n_params);
        CHECK(back.n_params == 242);
        CHECK(memcmp(back.params, m.params, m.n_params * sizeof(float)) == 0);
        CHECK(strcmp(back.arch.name, a.name) == 0);
        CHECK(strcmp(back.arch.enc_spec, a.enc_spec) == 0);
        CHECK(strcmp(back.arch.dec_spec, a.dec_spec) == 0);
        CHECK(back.arch.in.c == 1 && back.arch.in.h == 6 && back.arch.in.w == 6);
        CHECK(back.arch.latent == 3 && back.arch.recon == RECON_MSE);
        CHECK(back.enc.n_params == m.enc.n_params);
        vae_free(&back);
    }
    /* The save is atomic through a temporary file, which must not be left behind. */
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(access(tmp, F_OK) != 0);

    /* The same through the preset the CLI uses, BCE: the header round-trips recon=bce. */
    vae_arch f;
    CHECK(vae_arch_preset(&f, "fashion", 4, err, sizeof err) == 0);
    vae_free(&m);
    CHECK_MSG(vae_create(&m, &f, 2, err, sizeof err) == 0, "%s", err);
    CHECK_MSG(weights_save(path, &m, err, sizeof err) == 0, "%s", err);
    rc = weights_load(path, &back, err, sizeof err);
    CHECK_MSG(rc == 0, "weights_load: %s", err);
    if (rc == 0) {
        CHECK(back.arch.recon == RECON_BCE && back.arch.latent == 4);
        CHECK(strcmp(back.arch.name, "fashion") == 0);
        CHECK(back.n_params == m.n_params &&
              memcmp(back.params, m.params, m.n_params * sizeof(float)) == 0);
        vae_free(&back);
    }
    vae_free(&m);
}

TEST(weights_save_unwritable) {
    vae_arch a = tiny_arch();
    vae_model m;
    char err[512], path[512];
    tmp_path(path, sizeof path, "no/such/dir/model.w");
    CHECK(vae_create(&m, &a, 1, err, sizeof err) == 0);
    EXPECT_FAIL(weights_save(path, &m, err, sizeof err), err, "cannot write");
    CHECK(strstr(err, path) != NULL);
    vae_free(&m);
}

/* ------------------------------------------------------------------ bad files */

TEST(weights_missing_and_empty) {
    char err[512], path[512];
    vae_model m;
    tmp_path(path, sizeof path, "weights_does_not_exist.w");
    EXPECT_FAIL(weights_load(path, &m, err, sizeof err), err, "No such file");
    CHECK(strstr(err, path) != NULL);

    tmp_path(path, sizeof path, "weights_empty.w");
    write_all(path, "", 0);
    EXPECT_FAIL(weights_load(path, &m, err, sizeof err), err, "too short");
    CHECK(strstr(err, path) != NULL);

    /* A directory opens with fopen on Linux but cannot be read as a file. */
    CHECK(weights_load(test_tmpdir(), &m, err, sizeof err) == -1);
    CHECK(weights_parse((const uint8_t *)"", 0, &m, err, sizeof err) == -1);
}

TEST(weights_bad_magic_and_version) {
    size_t len, n;
    char err[512], path[512];
    uint8_t *buf = tiny_file(&len, &n);
    if (!buf) return;

    buf[3] = 'X';                                         /* "ANOX" */
    EXPECT_FAIL(parse_copy(buf, len, err, sizeof err), err, "bad magic");
    buf[3] = 'W';
    /* Not ours at all: a gzip file of the same length still names the problem. */
    uint8_t gz[64] = {0x1f, 0x8b, 8, 0};
    EXPECT_FAIL(parse_copy(gz, sizeof gz, err, sizeof err), err, "bad magic");

    /* A file from a newer anodm: only the version field differs (CRC left as it is, so
     * the message must come from the version check, which precedes the checksum). */
    put_le32(buf + 4, WEIGHTS_VERSION + 1);
    EXPECT_FAIL(parse_copy(buf, len, err, sizeof err), err, "version 2");
    /* ... and with its CRC rebuilt, i.e. an intact file of that version. */
    fix_crc(buf, len);
    tmp_path(path, sizeof path, "weights_future.w");
    write_all(path, buf, len);
    vae_model m;
    EXPECT_FAIL(weights_load(path, &m, err, sizeof err), err, "version");
    CHECK(strstr(err, path) != NULL);
    put_le32(buf + 4, 0);
    EXPECT_FAIL(parse_copy(buf, len, err, sizeof err), err, "version 0");
    free(buf);
}

/* Every prefix of a valid file is an error, never a crash or a read past the end. */
TEST(weights_truncated_everywhere) {
    size_t len, n;
    char err[512], path[512];
    uint8_t *buf = tiny_file(&len, &n);
    if (!buf) return;
    CHECK(parse_copy(buf, len, err, sizeof err) == 0);
    for (size_t cut = 0; cut < len; cut++) {
        int rc = parse_copy(buf, cut, err, sizeof err);
        CHECK_MSG(rc == -1 && (strstr(err, "too short") || strstr(err, "truncated") ||
                               strstr(err, "header length")),
                  "prefix of %zu of %zu bytes: rc %d, err '%s'", cut, len, rc, err);
    }
    /* Through the file loader too, at a few telling offsets: inside the magic, inside
     * the header, inside n_params, inside the parameters, just before the CRC. */
    const size_t cuts[] = {2, 13, 12 + strlen(TINY_HEADER) + 3, len / 2, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        vae_model m;
        tmp_path(path, sizeof path, "weights_truncated.w");
        write_all(path, buf, cuts[i]);
        int rc = weights_load(path, &m, err, sizeof err);
        CHECK_MSG(rc == -1 && strstr(err, path), "cut at %zu: rc %d, err '%s'", cuts[i], rc, err);
        if (rc == 0) vae_free(&m);
    }
    /* Bytes appended after the CRC are as wrong as bytes missing. */
    uint8_t *longer = malloc(len + 7);
    if (longer) {
        memcpy(longer, buf, len);
        memset(longer + len, 0, 7);
        EXPECT_FAIL(parse_copy(longer, len + 7, err, sizeof err), err, "truncated or oversized");
        free(longer);
    }
    free(buf);
}

/* Flipping any one bit anywhere must be caught: by the checksum, or before it by the
 * magic, version or length checks. */
TEST(weights_bit_flip_everywhere) {
    size_t len, n;
    char err[512];
    uint8_t *buf = tiny_file(&len, &n);
    if (!buf) return;
    size_t by_crc = 0;
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            buf[i] ^= (uint8_t)(1u << bit);
            int rc = parse_copy(buf, len, err, sizeof err);
            buf[i] ^= (uint8_t)(1u << bit);
            int named = strstr(err, "checksum") || strstr(err, "magic") ||
                        strstr(err, "version") || strstr(err, "header length") ||
                        strstr(err, "truncated or oversized");
            CHECK_MSG(rc == -1 && named, "bit %d of byte %zu: rc %d, err '%s'", bit, i, rc, err);
            by_crc += strstr(err, "checksum") != NULL;
        }
    }
    /* The header, parameters and CRC itself (all but the 20 bytes of magic, version,
     * header length and n_params, which the length checks catch first) are the
     * checksum's job. */
    CHECK_MSG(by_crc == 8 * (len - 20), "%zu flips caught by the checksum", by_crc);
    CHECK(parse_copy(buf, len, err, sizeof err) == 0);   /* the flips were all undone */
    free(buf);
}

TEST(weights_lengths_that_lie) {
    size_t len, n;
    char err[512];
    uint8_t *buf = tiny_file(&len, &n);
    if (!buf) return;
    const size_t hl = strlen(TINY_HEADER);
    uint8_t *np = buf + 12 + hl;                           /* the n_params field */

    /* Header length pointing past the end of the file, or far past any sane header. */
    const uint32_t bad_hl[] = {(uint32_t)len, (uint32_t)len - 12 - 8, 0xffffffffu,
                               WEIGHTS_MAX_HEADER + 1};
    for (size_t i = 0; i < sizeof bad_hl / sizeof bad_hl[0]; i++) {
        put_le32(buf + 8, bad_hl[i]);
        fix_crc(buf, len);
        EXPECT_FAIL(parse_copy(buf, len, err, sizeof err), err, "header length");
    }
    put_le32(buf + 8, (uint32_t)hl);

    /* n_params claims more than the file holds, with the CRC rebuilt. Among them 2^62,
     * whose 4 * n wraps to 0 in 64 bits: only the upper bound stops it matching. */
    const uint64_t bad_n[] = {n + 1, n - 1, WEIGHTS_MAX_PARAMS + 1, (uint64_t)1 << 62,
                              UINT64_MAX};
    for (size_t i = 0; i < sizeof bad_n / sizeof bad_n[0]; i++) {
        put_le64(np, bad_n[i]);
        fix_crc(buf, len);
        EXPECT_FAIL(parse_copy(buf, len, err, sizeof err), err, "truncated or oversized");
    }
    free(buf);

    /* The 2^62 claim in a file with no parameters at all (where 4 * n "fits" exactly). */
    uint8_t *wrap = build_file(TINY_HEADER, hl, (uint64_t)1 << 62, 0, &len);
    if (wrap) {
        EXPECT_FAIL(parse_copy(wrap, len, err, sizeof err), err, "oversized");
        free(wrap);
    }
}

/* A consistent file (sizes and CRC right) whose parameter count is not what its own
 * architecture needs: the last check, after the header has been parsed. */
TEST(weights_param_count_mismatch) {
    char err[512];
    size_t len;
    const size_t need = 242;   /* tiny_arch(): see weights_round_trip */
    const size_t wrong[] = {need - 1, need + 1, 0, 1};
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        uint8_t *buf = build_file(TINY_HEADER, strlen(TINY_HEADER), wrong[i], wrong[i], &len);
        if (!buf) continue;
        int rc = parse_copy(buf, len, err, sizeof err);
        EXPECT_FAIL(rc, err, "architecture needs 242 parameters");
        char has[64];
        snprintf(has, sizeof has, "file has %zu", wrong[i]);
        CHECK_MSG(strstr(err, has) != NULL, "'%s' lacks '%s'", err, has);
        free(buf);
    }
    /* The right count through the same builder loads: the cases above fail for the count. */
    uint8_t *buf = build_file(TINY_HEADER, strlen(TINY_HEADER), need, need, &len);
    if (buf) {
        vae_model m;
        int rc = weights_parse(buf, len, &m, err, sizeof err);
        CHECK_MSG(rc == 0, "%s", err);
        if (rc == 0) {
            CHECK(m.params[0] == 0.5f && m.params[need - 1] == 0.5f);
            vae_free(&m);
        }
        free(buf);
    }
}

/* Header text that is syntactically or semantically wrong, each behind a valid CRC. */
TEST(weights_malformed_header) {
    const size_t need = 242;
    /* Missing keys: each required line left out in turn. */
    static const char *const keys[] = {"arch=", "in=", "latent=", "recon=", "enc=", "dec="};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        char h[1024] = "";
        const char *line = TINY_HEADER;
        while (*line) {
            const char *nl = strchr(line, '\n');
            size_t l = (size_t)(nl - line) + 1;
            if (strncmp(line, keys[k], strlen(keys[k])) != 0) strncat(h, line, l);
            line += l;
        }
        EXPECT_HEADER_FAILS(h, need, need, "malformed header");
    }
    EXPECT_HEADER_FAILS("", need, need, "malformed header");

    /* Bad numbers and values; the rest of the header is TINY_HEADER's. */
    static const struct { const char *from, *to, *want; } cases[] = {
        {"in=1,6,6", "in=1,six,6", "malformed header"},
        {"in=1,6,6", "in=1,6", "malformed header"},
        {"in=1,6,6", "in=", "malformed header"},
        {"latent=3", "latent=three", "malformed header"},
        {"latent=3", "latent=", "malformed header"},
        {"recon=mse", "recon=l1", "malformed header"},
        {"recon=mse", "recon=msex", "malformed header"},
        {"arch=custom", "arch=a-name-far-too-long-for-the-32-byte-field", "malformed header"},
        {"in=1,6,6", "in=0,6,6", "bad architecture"},
        {"in=1,6,6", "in=-1,6,6", "bad architecture"},
        {"in=1,6,6", "in=1,7,7", "bad architecture"},           /* decoder makes 6x6 */
        {"latent=3", "latent=0", "bad architecture"},
        {"latent=3", "latent=-5", "bad architecture"},
        {"latent=3", "latent=4097", "bad architecture"},
        {"enc=conv2d(2,3,2,1)", "enc=warp(2,3,2,1)", "bad architecture"},
        {"dec=linear(18)", "dec=linear(-18)", "bad architecture"},
        {"dec=linear(18)", "dec=linear(17)", "bad architecture"},  /* reshape(2,3,3) */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char h[1024];
        const char *at = strstr(TINY_HEADER, cases[i].from);
        CHECK(at != NULL);
        if (!at) continue;
        snprintf(h, sizeof h, "%.*s%s%s", (int)(at - TINY_HEADER), TINY_HEADER, cases[i].to,
                 at + strlen(cases[i].from));
        EXPECT_HEADER_FAILS(h, need, need, cases[i].want);
    }

    /* Bytes a text parser could trip on: no final newline, a NUL and 0xff in a value. */
    char h[1024];
    size_t hl = strlen(TINY_HEADER) - 1;                   /* drop the final '\n' */
    memcpy(h, TINY_HEADER, hl);
    size_t len;
    char err[512];
    uint8_t *buf = build_file(h, hl, need, need, &len);
    if (buf) {
        CHECK_MSG(parse_copy(buf, len, err, sizeof err) == 0, "no final newline: %s", err);
        free(buf);
    }
    memcpy(h, TINY_HEADER, hl + 1);
    h[5] = '\0';                                           /* arch=c\0stom */
    h[8] = (char)0xff;
    buf = build_file(h, hl + 1, need, need, &len);
    if (buf) {
        int rc = parse_copy(buf, len, err, sizeof err);    /* either answer, no crash */
        CHECK(rc == 0 || rc == -1);
        free(buf);
    }
}

/* An architecture far larger than the file, in a consistent file (valid CRC, a small
 * n_params): refused from the header alone, before anything is allocated. The first asks
 * for 3.1e8 parameters (over VAE_MAX_PARAMS), the second for 1.6e13. */
TEST(weights_oversized_architecture) {
    static const char *const headers[] = {
        "arch=custom\nin=1,28,28\nlatent=3\nrecon=bce\nenc=linear(400000)\n"
        "dec=linear(784)\n",
        "arch=custom\nin=16,1000,1000\nlatent=3\nrecon=bce\nenc=linear(1000000)\n"
        "dec=linear(1000000) reshape(1,1000,1000) convtranspose2d(16,1,1,0,0)\n",
    };
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        char err[512];
        size_t len;
        uint8_t *buf = build_file(headers[i], strlen(headers[i]), 10, 10, &len);
        if (!buf) continue;
        int rc = parse_copy(buf, len, err, sizeof err);
        CHECK_MSG(rc == -1 && strstr(err, "needs"),
                  "header %zu: rc %d, err '%s'", i, rc, err);
        free(buf);
    }
}
