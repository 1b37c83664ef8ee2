/* The model bundle (proto/bundle.c) and SHA-256 (proto/sha256.c).
 *
 * A synthetic detector (a 136-parameter VAE, 10 reference points, 8 calibration scores:
 * a file of about 1.7 kB) goes through save and load bit for bit; then every way a file
 * can be bad must give -1, a message naming the problem, and a zeroed detector: every
 * prefix, every flipped bit, wrong magic, other versions, a section table that lies,
 * counts that do not match, sections that contradict each other, values out of range,
 * invalid JSON. Most of those checks sit behind the CRCs and the file hash, so the bad
 * files are rebuilt with correct checksums (reseal, replace_section): otherwise the
 * tests would only ever exercise the checksums. Damaged bytes are parsed from heap
 * blocks of exactly their length, so that `make asan-test` sees any read past the end.
 * Last, `anodm inspect` as a user runs it. */
#include "bundle.h"
#include "check.h"
#include "daemon_harness.h"
#include "fuzz/fuzz_model.h"
#include "rng.h"
#include "scorer.h"
#include "sha256.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

/* ------------------------------------------------------------------ helpers */

enum { N_REF = FUZZ_MODEL_N_REF, N_CAL = FUZZ_MODEL_N_CAL, LATENT = FUZZ_MODEL_LATENT };

/* fuzz_model.h's detector (N_REF reference points, N_CAL calibration scores, a LATENT-
 * dimensional latent), in context mode with values a lossy writer would mangle. 0 or -1. */
static int make_detector(detector *d) {
    char err[256];
    if (fuzz_model_make(d, PLACE_CONTEXT, err, sizeof err) != 0) {
        check_fail(__FILE__, __LINE__, "fuzz_model_make: %s", err);
        return -1;
    }
    char *provenance = strdup("{\"data\": \"synthetic\", \"seed\": 7, \"metrics\": {\"auroc\": 0.9}}");
    if (!provenance) {
        check_fail(__FILE__, __LINE__, "out of memory");
        detector_free(d);
        return -1;
    }
    free(d->provenance);
    d->provenance = provenance;
    d->vae.params[0] = -0.0f;
    d->vae.params[1] = 1e-40f;                       /* subnormal */
    d->vae.params[2] = 3.4028235e38f;
    d->ref_id[N_REF - 1] = INT32_MAX;
    d->cal_scores[1] = d->cal_scores[0];             /* ties are ascending too */
    d->place.learning_rate = 0.1;                    /* not a binary fraction */
    d->place.tol = 0.01;                             /* nor this */
    d->place.n_iter = 250;
    d->alpha = 1.0 / 3.0;
    d->re = (term_stats){0.12345678901234567, 0.0321};
    d->map = (term_stats){-1.5e-7, 7.5e3};
    d->latent = (term_stats){0.25, 1.0 / 7.0};
    d->term = TERM_LATENT;
    d->threshold = 2.345678901234567;
    return 0;
}

/* The encoded bytes of make_detector() (free them), or NULL. */
static uint8_t *good_file(size_t *len) {
    detector d;
    uint8_t *buf = NULL;
    char err[512];
    if (make_detector(&d) != 0) return NULL;
    CHECK_MSG(bundle_encode(&d, &buf, len, err, sizeof err) == 0, "bundle_encode: %s", err);
    detector_free(&d);
    return buf;
}

static void tmp_path(char *out, size_t outlen, const char *name) {
    snprintf(out, outlen, "%s/%s", test_tmpdir(), name);
}

static void write_all(const char *path, const void *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    CHECK(len == 0 || fwrite(buf, 1, len, f) == len);
    CHECK(fclose(f) == 0);
}

static int is_zero(const detector *d) {
    static const detector zero;
    return memcmp(d, &zero, sizeof *d) == 0;
}

/* bundle_parse on a private heap copy of exactly len bytes; its rc, the message in err.
 * A failed parse must leave the detector zeroed; a successful one is freed. */
static int parse_copy(const uint8_t *buf, size_t len, char *err, size_t errlen) {
    uint8_t *copy = malloc(len ? len : 1);
    detector d;
    if (!copy) return 0;
    if (len) memcpy(copy, buf, len);
    err[0] = 0;
    int rc = bundle_parse(copy, len, &d, err, errlen);
    if (rc != 0 && !is_zero(&d)) check_fail(__FILE__, __LINE__, "failed parse left data");
    detector_free(&d);
    free(copy);
    return rc;
}

static void expect_fail_(const char *file, int line, const uint8_t *buf, size_t len,
                         const char *want, const char *what) {
    char err[512];
    int rc = buf ? parse_copy(buf, len, err, sizeof err) : 0;
    if (rc != -1 || !strstr(err, want))
        check_fail(file, line, "%s: expected failure with '%s', got rc %d, err '%s'", what,
                   want, rc, rc ? err : "");
}
#define EXPECT_FAIL(buf, len, want, what) expect_fail_(__FILE__, __LINE__, buf, len, want, what)

static uint64_t get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v) {
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

/* Recompute the header CRC and the trailing hash after patching a header or table, so
 * that the loader's checks behind them are reached (written from BUNDLE.md, not from
 * the writer's code). */
static void reseal(uint8_t *buf, size_t len) {
    uint32_t n = (uint32_t)get64(buf + 12);
    uLong c = crc32(0L, buf, 28);
    if (n <= BUNDLE_MAX_SECTIONS && 32 + 40 * (size_t)n <= len)
        c = crc32(c, buf + 32, 40 * n);
    for (int i = 0; i < 4; i++) buf[28 + i] = (uint8_t)(c >> (8 * i));
    sha256(buf, len - 32, buf + len - 32);
}

/* The table entry of section i. */
static uint8_t *entry(uint8_t *buf, int i) { return buf + 32 + 40 * (size_t)i; }

/* buf's sections with section tag replaced by dlen bytes of data (data NULL: removed;
 * tag absent: appended), reassembled with correct checksums. Free the result. */
static uint8_t *replace_section(const uint8_t *buf, size_t len, const char *tag,
                                const void *data, size_t dlen, size_t *outlen) {
    bundle_section s[BUNDLE_MAX_SECTIONS + 1];
    int n, found = 0, m = 0;
    char err[512];
    uint8_t *out = NULL;
    if (bundle_sections(buf, len, s, &n, err, sizeof err) != 0) {
        check_fail(__FILE__, __LINE__, "bundle_sections: %s", err);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        if (strcmp(s[i].tag, tag)) {
            s[m++] = s[i];
            continue;
        }
        found = 1;
        if (data) {
            bundle_section r = {.data = data, .len = dlen};
            memcpy(r.tag, s[i].tag, sizeof r.tag);
            s[m++] = r;
        }
    }
    if (!found && data) {
        s[m] = (bundle_section){.data = data, .len = dlen};
        snprintf(s[m].tag, sizeof s[m].tag, "%s", tag);
        m++;
    }
    CHECK_MSG(bundle_assemble(s, m, &out, outlen, err, sizeof err) == 0, "assemble: %s", err);
    return out;
}

/* A copy of section tag's bytes, NUL-terminated (free it). */
static char *section_text(const uint8_t *buf, size_t len, const char *tag) {
    bundle_section s[BUNDLE_MAX_SECTIONS];
    int n;
    char err[512];
    if (bundle_sections(buf, len, s, &n, err, sizeof err) != 0) return NULL;
    for (int i = 0; i < n; i++)
        if (!strcmp(s[i].tag, tag)) return strndup((const char *)s[i].data, s[i].len);
    return NULL;
}

/* Drops version 6's place "tol" from a scoring section's text (the writer's compact
 * JSON, where a key and its number are followed by a comma), to make an older file. */
static void drop_tol(char *scoring) {
    char *at = scoring ? strstr(scoring, "\"tol\":") : NULL, *end = at ? strchr(at, ',') : NULL;
    CHECK(end != NULL);
    if (end) memmove(at, end + 1, strlen(end + 1) + 1);
}

/* JSON text with the value (a scalar or a flat array) of the first "key": replaced by
 * value (free it). */
static char *with_field(const char *text, const char *key, const char *value) {
    char pat[64], *out;
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *at = strstr(text, pat);
    if (!at) {
        check_fail(__FILE__, __LINE__, "no %s in %s", pat, text);
        return NULL;
    }
    at += strlen(pat);
    size_t end = *at == '[' ? strcspn(at, "]") + 1 : strcspn(at, ",}");
    size_t n = strlen(text) + strlen(value) + 1;
    if ((out = malloc(n)))
        snprintf(out, n, "%.*s%s%s", (int)(at - text), text, value, at + end);
    return out;
}

/* An array section: u32 rows, u32 cols, then rows * cols given floats (NULL: zeros). */
static uint8_t *array_bytes(uint32_t rows, uint32_t cols, const float *v, size_t *len) {
    *len = 8 + 4 * (size_t)rows * cols;
    uint8_t *b = calloc(*len, 1);
    if (!b) return NULL;
    put32(b, rows);
    put32(b + 4, cols);
    if (v) memcpy(b + 8, v, 4 * (size_t)rows * cols);   /* little-endian hosts only */
    return b;
}

/* ------------------------------------------------------------------ SHA-256 */

static void expect_sha_(const char *file, int line, const void *msg, size_t len,
                        const char *want) {
    uint8_t d[SHA256_DIGEST];
    char hex[65];
    sha256(msg, len, d);
    sha256_hex(d, hex);
    if (strcmp(hex, want)) check_fail(file, line, "sha256 %s, want %s", hex, want);
}
#define EXPECT_SHA(msg, len, want) expect_sha_(__FILE__, __LINE__, msg, len, want)

/* The FIPS 180-4 examples (NIST CSRC "SHA256.pdf", "SHA2_Additional.pdf"). */
TEST(bundle_sha256_vectors) {
    EXPECT_SHA("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_SHA("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_SHA(NULL, 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    EXPECT_SHA(m448, strlen(m448),
               "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *m896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                       "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    EXPECT_SHA(m896, strlen(m896),
               "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    /* One million 'a', fed in uneven pieces: block boundaries fall inside updates. */
    char chunk[997];
    memset(chunk, 'a', sizeof chunk);
    sha256_ctx c;
    sha256_init(&c);
    size_t left = 1000000;
    for (size_t k = 1; left; k = k % 997 + 1) {
        size_t take = k < left ? k : left;
        sha256_update(&c, chunk, take);
        left -= take;
    }
    uint8_t d[SHA256_DIGEST];
    char hex[65];
    sha256_final(&c, d);
    sha256_hex(d, hex);
    CHECK_MSG(!strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
              "million a: %s", hex);
    /* 55, 56 and 64 bytes: the padding's edge cases, against one-shot hashing of the
     * same bytes split in two. */
    const size_t lens[] = {55, 56, 63, 64, 65, 119, 120};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        uint8_t one[SHA256_DIGEST], two[SHA256_DIGEST];
        sha256(chunk, lens[i], one);
        sha256_init(&c);
        sha256_update(&c, chunk, lens[i] / 3);
        sha256_update(&c, chunk, lens[i] - lens[i] / 3);
        sha256_final(&c, two);
        CHECK_MSG(!memcmp(one, two, SHA256_DIGEST), "split at %zu of %zu", lens[i] / 3, lens[i]);
    }
    EXPECT_SHA(chunk, 55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
    EXPECT_SHA(chunk, 56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
    EXPECT_SHA(chunk, 64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}

/* ------------------------------------------------------------------ round trip */

static int same_bits(double a, double b) { return !memcmp(&a, &b, sizeof a); }

TEST(bundle_round_trip) {
    detector d, back;
    char err[512], path[512], tmp[600], hex[65];
    if (make_detector(&d) != 0) return;
    tmp_path(path, sizeof path, "bundle_round_trip.anodm");
    CHECK_MSG(bundle_save(path, &d, err, sizeof err) == 0, "bundle_save: %s", err);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(access(tmp, F_OK) != 0);                 /* the temporary was renamed */
    int rc = bundle_load(path, &back, err, sizeof err);
    CHECK_MSG(rc == 0, "bundle_load: %s", err);
    if (rc == 0) {
        const vae_arch *a = &d.vae.arch, *b = &back.vae.arch;
        CHECK(!strcmp(a->name, b->name) && !strcmp(a->enc_spec, b->enc_spec) &&
              !strcmp(a->dec_spec, b->dec_spec));
        CHECK(a->in.c == b->in.c && a->in.h == b->in.h && a->in.w == b->in.w);
        CHECK(a->latent == b->latent && a->recon == b->recon);
        CHECK(back.vae.n_params == d.vae.n_params && back.vae.n_params == 136);
        CHECK(back.vae.grads != NULL);
        CHECK(!memcmp(back.vae.params, d.vae.params, d.vae.n_params * sizeof(float)));
        CHECK(back.n_ref == N_REF && back.n_cal == N_CAL);
        CHECK(!memcmp(back.ref_latent, d.ref_latent, N_REF * LATENT * sizeof(float)));
        CHECK(!memcmp(back.ref_map, d.ref_map, N_REF * 2 * sizeof(float)));
        CHECK(!memcmp(back.ref_id, d.ref_id, N_REF * sizeof(int32_t)));
        CHECK(!memcmp(back.cal_scores, d.cal_scores, N_CAL * sizeof(float)));
        /* Every setting, bit for bit: the doubles went through JSON text. */
        CHECK(back.mode == d.mode && back.window == d.window && back.k == d.k);
        CHECK(same_bits(back.alpha, d.alpha));
        const tsne_place_options *p = &back.place, *q = &d.place;   /* padding differs */
        CHECK(same_bits(p->perplexity, q->perplexity) && p->n_iter == q->n_iter &&
              same_bits(p->learning_rate, q->learning_rate) &&
              same_bits(p->exaggeration, q->exaggeration) &&
              same_bits(p->momentum, q->momentum) && same_bits(p->max_grad, q->max_grad) &&
              same_bits(p->tol, q->tol) && p->tol == 0.01 && p->exact == q->exact);
        CHECK(same_bits(back.re.center, d.re.center) && same_bits(back.re.scale, d.re.scale));
        CHECK(same_bits(back.map.center, d.map.center) && same_bits(back.map.scale, d.map.scale));
        CHECK(back.term == TERM_LATENT && same_bits(back.latent.center, d.latent.center) &&
              same_bits(back.latent.scale, d.latent.scale));
        CHECK(same_bits(back.quantile, d.quantile) && same_bits(back.threshold, d.threshold));
        CHECK(!strcmp(back.provenance, d.provenance));   /* stored verbatim */
        /* Encoding is deterministic: the loaded detector writes the same bytes, hence
         * the same version. */
        uint8_t *b1, *b2;
        size_t l1, l2;
        CHECK(bundle_encode(&d, &b1, &l1, err, sizeof err) == 0);
        CHECK(bundle_encode(&back, &b2, &l2, err, sizeof err) == 0);
        CHECK(b1 && b2 && l1 == l2 && !memcmp(b1, b2, l1));
        /* The version is the SHA-256 of the whole file, as sha256sum prints it. */
        uint8_t dg[SHA256_DIGEST];
        char want[65];
        bundle_hash(b1, l1, hex);
        sha256(b1, l1, dg);
        sha256_hex(dg, want);
        CHECK(!strcmp(hex, want));
        free(b1);
        free(b2);
    }
    CHECK(back.input == LATENT_MU);
    detector_free(&back);
    detector_free(&back);                          /* idempotent */
    /* No provenance is written as an empty object. */
    free(d.provenance);
    d.provenance = NULL;
    CHECK_MSG(bundle_save(path, &d, err, sizeof err) == 0, "%s", err);
    CHECK_MSG(bundle_load(path, &back, err, sizeof err) == 0, "%s", err);
    CHECK(back.provenance && !strcmp(back.provenance, "{}"));
    detector_free(&back);
    detector_free(&d);
}

/* A z-based detector (latent_input, version 3) round-trips; a mu-based one's file does
 * not mention it; a version 2 file with it, or another value, is refused. */
TEST(bundle_latent_input) {
    detector d, back;
    char err[512];
    uint8_t *mu_file = NULL, *z_file = NULL;
    size_t mu_len = 0, z_len = 0, blen;
    if (make_detector(&d) != 0) return;
    CHECK(bundle_encode(&d, &mu_file, &mu_len, err, sizeof err) == 0);
    d.input = LATENT_Z;
    CHECK(bundle_encode(&d, &z_file, &z_len, err, sizeof err) == 0);
    char *mu_text = mu_file ? section_text(mu_file, mu_len, "scoring") : NULL;
    char *z_text = z_file ? section_text(z_file, z_len, "scoring") : NULL;
    CHECK(mu_text && !strstr(mu_text, "latent_input"));
    CHECK(z_text && strstr(z_text, "\"latent_input\":\"z\""));
    CHECK_MSG(z_file && bundle_parse(z_file, z_len, &back, err, sizeof err) == 0, "%s", err);
    CHECK(back.input == LATENT_Z);
    detector_free(&back);
    if (z_file && z_text) {
        put32(z_file + 8, 2);
        reseal(z_file, z_len);
        EXPECT_FAIL(z_file, z_len, "unknown key 'latent_input'", "version 2 with latent_input");
        put32(z_file + 8, BUNDLE_VERSION);
        reseal(z_file, z_len);
        char *t = with_field(z_text, "latent_input", "\"sigma\"");
        uint8_t *b = t ? replace_section(z_file, z_len, "scoring", t, strlen(t), &blen) : NULL;
        EXPECT_FAIL(b, blen, "'latent_input' must be \"mu\" or \"z\"", "latent_input sigma");
        free(b);
        free(t);
    }
    d.input = (latent_input)7;
    uint8_t *bad = NULL;
    CHECK(bundle_encode(&d, &bad, &blen, err, sizeof err) == -1 && !bad &&
          strstr(err, "latent input 7"));
    free(mu_text);
    free(z_text);
    free(mu_file);
    free(z_file);
    detector_free(&d);
}

/* Version 4's stream memory: settings and statistics round-trip for every fusion, the
 * Fisher fusion with its two calibration sections; an older version, an unknown fusion,
 * statistics without a memory or a missing section are refused. */
TEST(bundle_stream_memory) {
    detector d, back;
    char err[512];
    size_t len = 0, blen = 0;
    if (make_detector(&d) != 0) return;
    d.use_memory = 1;
    memory_options_default(&d.memory);
    d.memory.capacity = 300;
    d.memory.k = 4;
    d.memory.recent_share = 0.25;
    d.memory.merge_radius = 1.0 / 3.0;
    d.mem = (term_stats){-0.4, 0.7};
    d.cal_base = malloc((size_t)d.n_cal * sizeof(float));
    d.cal_memory = malloc((size_t)d.n_cal * sizeof(float));
    for (int i = 0; d.cal_base && d.cal_memory && i < d.n_cal; i++) {
        d.cal_base[i] = -1.0f + 0.25f * (float)i;
        d.cal_memory[i] = 0.5f * (float)i;
    }
    for (int f = 0; f < FUSION_N; f++) {
        d.fusion = (score_fusion)f;
        uint8_t *buf = NULL;
        CHECK_MSG(bundle_encode(&d, &buf, &len, err, sizeof err) == 0, "%s: %s",
                  SCORE_FUSION_NAME[f], err);
        CHECK_MSG(buf && bundle_parse(buf, len, &back, err, sizeof err) == 0, "%s: %s",
                  SCORE_FUSION_NAME[f], err);
        CHECK(back.use_memory && back.fusion == d.fusion && back.memory.capacity == 300 &&
              back.memory.k == 4 && same_bits(back.memory.recent_share, 0.25) &&
              same_bits(back.memory.merge_radius, 1.0 / 3.0) && same_bits(back.mem.center, -0.4) &&
              same_bits(back.mem.scale, 0.7));
        int fisher = f == FUSION_FISHER;
        CHECK(fisher ? back.cal_base && back.cal_memory &&
                           !memcmp(back.cal_base, d.cal_base, (size_t)d.n_cal * sizeof(float)) &&
                           !memcmp(back.cal_memory, d.cal_memory, (size_t)d.n_cal * sizeof(float))
                     : !back.cal_base && !back.cal_memory);
        detector_free(&back);
        if (buf && fisher) {
            uint8_t *cut = replace_section(buf, len, "cal_memory", "", 0, &blen);
            EXPECT_FAIL(cut, blen, "section 'cal_memory': 0 bytes", "fisher, empty cal_memory");
            free(cut);
        }
        if (buf && f == FUSION_MAX) {
            char *sc = section_text(buf, len, "scoring"), *cal = section_text(buf, len, "calibration");
            put32(buf + 8, 3);
            reseal(buf, len);
            EXPECT_FAIL(buf, len, "unknown key 'memory'", "version 3 with a memory");
            put32(buf + 8, BUNDLE_VERSION);
            reseal(buf, len);
            char *bad = sc ? strstr(sc, "\"max\"") : NULL;
            if (bad) memcpy(bad, "\"mix\"", 5);
            uint8_t *b = sc ? replace_section(buf, len, "scoring", sc, strlen(sc), &blen) : NULL;
            EXPECT_FAIL(b, blen, "unknown 'fusion' \"mix\"", "fusion mix");
            free(b);
            char *k0 = sc ? strstr(sc, "\"k\":4") : NULL;
            if (bad) memcpy(bad, "\"max\"", 5);
            if (k0) k0[4] = '0';
            b = sc ? replace_section(buf, len, "scoring", sc, strlen(sc), &blen) : NULL;
            EXPECT_FAIL(b, blen, "memory k 0", "memory k 0");
            free(b);
            /* statistics for a memory the scoring section does not have */
            char *m = sc ? strstr(sc, ",\"memory\":{") : NULL;
            if (m) *m = 0, strcat(sc, "}");
            b = sc ? replace_section(buf, len, "scoring", sc, strlen(sc), &blen) : NULL;
            EXPECT_FAIL(b, blen, "'memory' statistics without a memory", "stats alone");
            free(b);
            free(sc);
            free(cal);
        }
        free(buf);
    }
    detector_free(&d);
}

/* Version 5's memory settings (k_min, retain, horizon) round-trip; a version 4 file (none
 * of them) reads as version 4 scored: the term at rank k alone, retention by evidence, no
 * decay; version 4 with them, version 5 without one, or an unknown retention is refused. */
TEST(bundle_memory_method) {
    detector d, back;
    char err[512];
    size_t len = 0, blen = 0;
    if (make_detector(&d) != 0) return;
    d.use_memory = 1;
    memory_options_default(&d.memory);
    d.memory.k = 6;
    d.memory.k_min = 2;
    d.memory.retain = MEMORY_RETAIN_EVIDENCE;
    d.memory.horizon = 1234.5;
    d.fusion = FUSION_MEMORY;
    d.mem = (term_stats){0.1, 0.9};
    uint8_t *buf = NULL;
    CHECK_MSG(bundle_encode(&d, &buf, &len, err, sizeof err) == 0, "%s", err);
    CHECK_MSG(buf && bundle_parse(buf, len, &back, err, sizeof err) == 0, "%s", err);
    CHECK(back.memory.k == 6 && back.memory.k_min == 2 &&
          back.memory.retain == MEMORY_RETAIN_EVIDENCE &&
          same_bits(back.memory.horizon, 1234.5));
    detector_free(&back);
    char *sc = buf ? section_text(buf, len, "scoring") : NULL;
    json_t *j = sc ? json_loads(sc, 0, NULL) : NULL, *mem = json_object_get(j, "memory");
    CHECK(mem != NULL);
    if (mem) {
        json_object_del(mem, "horizon");          /* version 5 without one */
        char *t = json_dumps(j, JSON_COMPACT);
        uint8_t *b = t ? replace_section(buf, len, "scoring", t, strlen(t), &blen) : NULL;
        EXPECT_FAIL(b, blen, "missing 'horizon'", "version 5 without horizon");
        if (b) {                                   /* version 4 with the other two */
            put32(b + 8, 4);
            reseal(b, blen);
            EXPECT_FAIL(b, blen, "unknown key", "version 4 with k_min, retain");
        }
        free(b);
        free(t);
        json_object_del(mem, "k_min");             /* as version 4 wrote it */
        json_object_del(json_object_get(j, "place"), "tol");
        json_object_del(mem, "retain");
        t = json_dumps(j, JSON_COMPACT);
        b = t ? replace_section(buf, len, "scoring", t, strlen(t), &blen) : NULL;
        if (b) {
            put32(b + 8, 4);
            reseal(b, blen);
            CHECK_MSG(bundle_parse(b, blen, &back, err, sizeof err) == 0, "version 4: %s", err);
            CHECK(back.memory.k == 6 && back.memory.k_min == 6 &&
                  back.memory.retain == MEMORY_RETAIN_EVIDENCE &&
                  back.memory.horizon == 0.0 && back.fusion == FUSION_MEMORY);
            detector_free(&back);
        }
        free(b);
        free(t);
        json_object_set_new(json_object_get(j, "place"), "tol", json_real(0.01));
        json_object_set_new(mem, "k_min", json_integer(2));
        json_object_set_new(mem, "retain", json_string("recent"));   /* an unknown one */
        json_object_set_new(mem, "horizon", json_real(0));
        t = json_dumps(j, JSON_COMPACT);
        b = t ? replace_section(buf, len, "scoring", t, strlen(t), &blen) : NULL;
        EXPECT_FAIL(b, blen, "unknown 'retain' \"recent\"", "retain recent");
        free(b);
        free(t);
    }
    json_decref(j);
    free(sc);
    free(buf);
    detector_free(&d);
}

/* Version 6's placement stopping rule (place.tol) round-trips (above); a version 5 file
 * (no tol) reads with tol 0, n_iter fixed steps as version 5 placed; version 5 with a tol,
 * version 6 without one, and a tol that is negative, too large or not a number are refused. */
TEST(bundle_place_tol) {
    static const struct { const char *tol; const char *want; } bad[] = {
        {"-0.01", "tol -0.01 is not in [0, 10000]"}, {"1e5", "tol 100000 is not in"},
        {"1e309", "invalid JSON"}, {"\"0.01\"", "'tol'"}, {"null", "'tol'"},
    };
    detector back;
    char err[512], text[256];
    size_t len = 0, blen = 0;
    uint8_t *buf = good_file(&len);
    char *sc = buf ? section_text(buf, len, "scoring") : NULL;
    json_t *j = sc ? json_loads(sc, 0, NULL) : NULL, *place = json_object_get(j, "place");
    CHECK(place && json_real_value(json_object_get(place, "tol")) == 0.01);
    if (place) {
        json_object_del(place, "tol");
        char *t = json_dumps(j, JSON_COMPACT);
        uint8_t *b = t ? replace_section(buf, len, "scoring", t, strlen(t), &blen) : NULL;
        EXPECT_FAIL(b, blen, "missing 'tol'", "version 6 without tol");
        if (b) {                                   /* as version 5 wrote it */
            put32(b + 8, 5);
            reseal(b, blen);
            CHECK_MSG(bundle_parse(b, blen, &back, err, sizeof err) == 0, "version 5: %s", err);
            CHECK(back.place.tol == 0.0 && back.place.n_iter == 250);
            detector_free(&back);
        }
        free(b);
        free(t);
        json_object_set_new(place, "tol", json_real(0.01));
        t = json_dumps(j, JSON_COMPACT);
        b = t ? replace_section(buf, len, "scoring", t, strlen(t), &blen) : NULL;
        if (b) {
            put32(b + 8, 5);
            reseal(b, blen);
            EXPECT_FAIL(b, blen, "unknown key 'tol'", "version 5 with tol");
        }
        free(b);
        free(t);
        /* Bad values, written into the text as a hostile file would have them. */
        json_object_set_new(place, "tol", json_string("TOL"));
        t = json_dumps(j, JSON_COMPACT);
        char *at = t ? strstr(t, "\"TOL\"") : NULL;
        CHECK(at != NULL);
        for (size_t i = 0; at && i < sizeof bad / sizeof bad[0]; i++) {
            snprintf(text, sizeof text, "%.*s%s%s", (int)(at - t), t, bad[i].tol, at + 5);
            b = replace_section(buf, len, "scoring", text, strlen(text), &blen);
            EXPECT_FAIL(b, blen, bad[i].want, bad[i].tol);
            free(b);
        }
        free(t);
    }
    json_decref(j);
    free(sc);
    free(buf);
}

/* A loaded bundle's scorer places with the stored tol: its positions are those of the
 * detector it was saved from, and differ from the same detector's without the rule. */
TEST(bundle_place_tol_reaches_the_scorer) {
    enum { B = 6 };
    detector d, back, off;
    char err[512];
    size_t len = 0;
    uint8_t *buf = NULL;
    if (fuzz_model_make(&d, PLACE_SINGLE, err, sizeof err) != 0) {
        check_fail(__FILE__, __LINE__, "fuzz_model_make: %s", err);
        return;
    }
    d.place.n_iter = 250;
    d.place.tol = 0.05;
    CHECK_MSG(bundle_encode(&d, &buf, &len, err, sizeof err) == 0, "%s", err);
    CHECK_MSG(buf && bundle_parse(buf, len, &back, err, sizeof err) == 0, "%s", err);
    free(buf);
    if (!buf) {
        detector_free(&d);
        return;
    }
    CHECK(same_bits(back.place.tol, 0.05));
    off = d;
    off.place.tol = 0;
    const size_t dim = shape_size(d.vae.arch.in);
    float *x = malloc(B * dim * sizeof *x);
    detector_result r_back[B], r_d[B], r_off[B];
    scorer *s_back = scorer_create(&back, B, err, sizeof err);
    scorer *s_d = scorer_create(&d, B, err, sizeof err);
    scorer *s_off = scorer_create(&off, B, err, sizeof err);
    if (!x || !s_back || !s_d || !s_off) {
        check_fail(__FILE__, __LINE__, "%s", x ? err : "out of memory");
    } else {
        rng_t r;
        rng_seed(&r, 3);
        for (size_t i = 0; i < B * dim; i++) x[i] = rng_uniform(&r);
        CHECK(scorer_score(s_back, x, B, r_back, NULL, NULL, NULL, err, sizeof err) == 0);
        CHECK(scorer_score(s_d, x, B, r_d, NULL, NULL, NULL, err, sizeof err) == 0);
        CHECK(scorer_score(s_off, x, B, r_off, NULL, NULL, NULL, err, sizeof err) == 0);
        int differ = 0;
        for (int b = 0; b < B; b++) {
            CHECK(!memcmp(&r_back[b].x, &r_d[b].x, sizeof r_d[b].x) &&
                  !memcmp(&r_back[b].y, &r_d[b].y, sizeof r_d[b].y));
            differ += r_off[b].x != r_d[b].x || r_off[b].y != r_d[b].y;
        }
        CHECK_MSG(differ > 0, "tol 0.05 placed all %d samples as tol 0 does", B);
    }
    scorer_free(s_back);
    scorer_free(s_d);
    scorer_free(s_off);
    free(x);
    detector_free(&back);
    detector_free(&d);
}

/* A detector that scales its inputs: the arch key and the scaling section round-trip
 * bit for bit, and each one without the other, a section of the wrong shape and values a
 * scaling cannot have are refused. */
TEST(bundle_scaling) {
    detector d, back;
    char err[512];
    size_t len = 0, blen = 0;
    if (make_detector(&d) != 0) return;
    const size_t dim = shape_size(d.vae.arch.in);
    float *x = malloc(5 * dim * sizeof *x);
    for (size_t i = 0; x && i < 5 * dim; i++) x[i] = (float)(i % 7) * 0.3f - (float)(i % 3);
    CHECK(x && scaling_fit(&d.scale, SCALE_MINMAX, x, 5, dim, err, sizeof err) == 0);
    free(x);
    uint8_t *buf = NULL;
    CHECK_MSG(bundle_encode(&d, &buf, &len, err, sizeof err) == 0, "%s", err);
    if (!buf) {
        detector_free(&d);
        return;
    }
    CHECK_MSG(bundle_parse(buf, len, &back, err, sizeof err) == 0, "%s", err);
    CHECK(back.scale.kind == SCALE_MINMAX && back.scale.dim == dim && back.scale.stats &&
          !memcmp(back.scale.stats, d.scale.stats, SCALING_ROWS * dim * sizeof(float)));
    detector_free(&back);
    char *arch = section_text(buf, len, "arch");
    CHECK(arch && strstr(arch, "\"scaling\":\"minmax\""));
    /* the section without the key, the key without the section */
    uint8_t *b = replace_section(buf, len, "scaling", NULL, 0, &blen);
    EXPECT_FAIL(b, blen, "section 'scaling' is missing", "key without section");
    free(b);
    char *bogus = arch ? with_field(arch, "scaling", "\"zscore\"") : NULL;
    b = bogus ? replace_section(buf, len, "arch", bogus, strlen(bogus), &blen) : NULL;
    EXPECT_FAIL(b, blen, "'scaling' must be \"standard\" or \"minmax\"", "scaling zscore");
    free(b);
    /* the arch section as a detector without scaling writes it */
    detector none;
    if (make_detector(&none) == 0) {
        uint8_t *nb = NULL;
        size_t nlen = 0;
        CHECK(bundle_encode(&none, &nb, &nlen, err, sizeof err) == 0);
        char *narch = nb ? section_text(nb, nlen, "arch") : NULL;
        CHECK(narch && !strstr(narch, "scaling"));
        b = narch ? replace_section(buf, len, "arch", narch, strlen(narch), &blen) : NULL;
        EXPECT_FAIL(b, blen, "without a scaling named", "section without key");
        free(b);
        free(narch);
        free(nb);
        detector_free(&none);
    }
    /* shapes and values */
    size_t alen;
    uint8_t *arr = array_bytes(3, (uint32_t)dim, d.scale.stats, &alen);
    b = arr ? replace_section(buf, len, "scaling", arr, alen, &blen) : NULL;
    EXPECT_FAIL(b, blen, "3 rows, expected 4", "three rows");
    free(b);
    free(arr);
    arr = array_bytes(4, (uint32_t)dim + 1, NULL, &alen);
    b = arr ? replace_section(buf, len, "scaling", arr, alen, &blen) : NULL;
    EXPECT_FAIL(b, blen, "one per input value", "a column too many");
    free(b);
    free(arr);
    d.scale.stats[dim + 2] = 0;                           /* a zero scale */
    arr = array_bytes(4, (uint32_t)dim, d.scale.stats, &alen);
    b = arr ? replace_section(buf, len, "scaling", arr, alen, &blen) : NULL;
    EXPECT_FAIL(b, blen, "scaling: feature 2", "zero scale");
    free(b);
    free(arr);
    CHECK_FAILS_WITH(bundle_encode(&d, &b, &blen, err, sizeof err), err, "scaling: feature 2");
    free(bogus);
    free(arch);
    free(buf);
    detector_free(&d);
}

TEST(bundle_detector_free_idempotent) {
    detector d;
    memset(&d, 0, sizeof d);
    detector_free(&d);                             /* a zeroed detector */
    if (make_detector(&d) != 0) return;
    detector_free(&d);
    CHECK(is_zero(&d));
    detector_free(&d);
}

/* The writer refuses what the loader would refuse, and leaves no file behind. */
TEST(bundle_save_refuses_invalid) {
    detector d;
    char err[512], path[512];
    tmp_path(path, sizeof path, "bundle_invalid.anodm");
    if (make_detector(&d) != 0) return;
    d.k = N_REF + 1;
    CHECK(bundle_save(path, &d, err, sizeof err) == -1 && strstr(err, "k = 11"));
    CHECK(access(path, F_OK) != 0);
    d.k = 1;
    d.n_ref = BUNDLE_MAX_REF + 1;                  /* caught before the arrays are read */
    CHECK(bundle_save(path, &d, err, sizeof err) == -1 && strstr(err, "reference points"));
    d.n_ref = N_REF;
    d.cal_scores[3] = d.cal_scores[2] - 1.0f;
    CHECK(bundle_save(path, &d, err, sizeof err) == -1 && strstr(err, "not ascending at 3"));
    d.cal_scores[3] = d.cal_scores[2];
    char *p = d.provenance;
    d.provenance = "{\"open\": ";
    CHECK(bundle_save(path, &d, err, sizeof err) == -1 && strstr(err, "provenance: invalid JSON"));
    d.provenance = p;
    d.place.tol = NAN;
    CHECK(bundle_save(path, &d, err, sizeof err) == -1 && strstr(err, "tol nan"));
    d.place.tol = 0.01;
    d.vae.n_params--;
    CHECK(bundle_save(path, &d, err, sizeof err) == -1 && strstr(err, "needs 136"));
    d.vae.n_params++;
    CHECK(access(path, F_OK) != 0);
    tmp_path(path, sizeof path, "no/such/dir/model.anodm");
    CHECK(bundle_save(path, &d, err, sizeof err) == -1 && strstr(err, "cannot write") &&
          strstr(err, path));
    detector_free(&d);
}

/* ------------------------------------------------------------------ bad files */

TEST(bundle_missing_and_unreadable) {
    char err[512], path[512];
    detector d;
    tmp_path(path, sizeof path, "bundle_does_not_exist.anodm");
    CHECK(bundle_load(path, &d, err, sizeof err) == -1 && strstr(err, "No such file") &&
          strstr(err, path) && is_zero(&d));
    CHECK(bundle_load(test_tmpdir(), &d, err, sizeof err) == -1 &&
          strstr(err, "not a regular file") && is_zero(&d));
    tmp_path(path, sizeof path, "bundle_empty.anodm");
    write_all(path, "", 0);
    CHECK(bundle_load(path, &d, err, sizeof err) == -1 && strstr(err, "truncated") &&
          strstr(err, path));
    CHECK(bundle_parse(NULL, 0, &d, err, sizeof err) == -1 && is_zero(&d));
}

TEST(bundle_bad_magic_and_version) {
    size_t len;
    uint8_t *buf = good_file(&len);
    if (!buf) return;
    buf[5] = 'X';
    EXPECT_FAIL(buf, len, "bad magic", "magic");
    buf[5] = 'B';
    buf[6] = '\n';                                 /* a CRLF -> LF translation */
    EXPECT_FAIL(buf, len, "bad magic", "CRLF");
    buf[6] = '\r';
    EXPECT_FAIL((const uint8_t *)"ANODMW", 6, "bad magic", "short, wrong");
    EXPECT_FAIL((const uint8_t *)"\x1f\x8b\x08", 3, "bad magic", "gzip");
    /* A newer file: named as such both with its CRCs stale and resealed (the version
     * check precedes the checksums, whose layout a newer version may change). */
    put32(buf + 8, BUNDLE_VERSION + 1);
    char newer[64];
    snprintf(newer, sizeof newer, "version %d is newer", BUNDLE_VERSION + 1);
    EXPECT_FAIL(buf, len, newer, "future, stale CRC");
    reseal(buf, len);
    EXPECT_FAIL(buf, len, "upgrade anodm", "future, resealed");
    put32(buf + 8, 0xffffffffu);
    EXPECT_FAIL(buf, len, "newer", "version 2^32-1");
    put32(buf + 8, 0);
    reseal(buf, len);
    EXPECT_FAIL(buf, len, "version 0 is not a valid version", "version 0");
    free(buf);
}

/* Every prefix of a valid file is an error saying "truncated", never a crash. */
TEST(bundle_truncated_everywhere) {
    size_t len;
    char err[512], path[512];
    uint8_t *buf = good_file(&len);
    if (!buf) return;
    CHECK(parse_copy(buf, len, err, sizeof err) == 0);
    for (size_t cut = 0; cut < len; cut++) {
        int rc = parse_copy(buf, cut, err, sizeof err);
        CHECK_MSG(rc == -1 && strstr(err, "truncated"), "prefix %zu of %zu: rc %d, err '%s'",
                  cut, len, rc, err);
    }
    tmp_path(path, sizeof path, "bundle_truncated.anodm");
    write_all(path, buf, len / 2);
    detector d;
    CHECK(bundle_load(path, &d, err, sizeof err) == -1 && strstr(err, "truncated") &&
          strstr(err, path));
    /* Bytes after the end are as wrong as bytes missing. */
    uint8_t *longer = calloc(len + 8, 1);
    if (longer) {
        memcpy(longer, buf, len);
        EXPECT_FAIL(longer, len + 8, "8 unexpected bytes", "appended");
        free(longer);
    }
    free(buf);
}

/* Any one flipped bit is caught: by magic, version, length or table checks, a section
 * CRC, the header CRC, or the file hash (padding and the hash itself). */
TEST(bundle_bit_flip_everywhere) {
    size_t len, by_section = 0, by_hash = 0;
    char err[512];
    uint8_t *buf = good_file(&len);
    if (!buf) return;
    for (size_t i = 0; i < len; i++)
        for (int bit = 0; bit < 8; bit++) {
            buf[i] ^= (uint8_t)(1u << bit);
            int rc = parse_copy(buf, len, err, sizeof err);
            buf[i] ^= (uint8_t)(1u << bit);
            CHECK_MSG(rc == -1, "bit %d of byte %zu: rc %d", bit, i, rc);
            by_section += strstr(err, "section '") && strstr(err, "checksum mismatch");
            by_hash += strstr(err, "file hash mismatch") != NULL;
        }
    /* Section bytes are the section CRCs' job; the hash covers the 32 hash bytes and
     * whatever padding aligns the sections. */
    bundle_section s[BUNDLE_MAX_SECTIONS];
    int n;
    size_t in_sections = 0;
    CHECK(bundle_sections(buf, len, s, &n, err, sizeof err) == 0);
    for (int i = 0; i < n; i++) in_sections += s[i].len;
    size_t table_end = 32 + 40 * (size_t)n;
    CHECK_MSG(by_section == 8 * in_sections, "%zu of %zu section bits", by_section,
              8 * in_sections);
    CHECK_MSG(by_hash == 8 * (len - table_end - in_sections), "%zu hash bits, %zu padding "
              "and hash bytes", by_hash, len - table_end - in_sections);
    CHECK(parse_copy(buf, len, err, sizeof err) == 0);
    free(buf);
}

/* A section table that lies, behind a valid header CRC and file hash. */
TEST(bundle_table_lies) {
    size_t len;
    uint8_t *buf = good_file(&len), *bad;
    if (!buf || !(bad = malloc(len))) {
        free(buf);
        return;
    }
    const uint64_t off0 = 32 + 40 * 9;               /* the first section starts there */
#define PATCHED(stmt, want, what)                 \
    do {                                          \
        memcpy(bad, buf, len);                    \
        stmt;                                     \
        reseal(bad, len);                         \
        EXPECT_FAIL(bad, len, want, what);        \
    } while (0)
    PATCHED(put32(bad + 12, 0), "section count 0", "no sections");
    PATCHED(put32(bad + 12, BUNDLE_MAX_SECTIONS + 1), "section count 33", "33 sections");
    PATCHED(put32(bad + 12, 0xffffffffu), "outside 1..32", "2^32-1 sections");
    PATCHED(put32(bad + 24, 1), "header flags 0x1", "flags");
    PATCHED(put64(bad + 16, (uint64_t)1 << 62), "truncated", "declared length");
    PATCHED(entry(bad, 0)[0] = 'A', "section 0: malformed tag", "upper case tag");
    PATCHED(memset(entry(bad, 1), 0, 16), "section 1: malformed tag", "empty tag");
    PATCHED(memset(entry(bad, 1), 'a', 16), "section 1: malformed tag", "unterminated tag");
    PATCHED(memcpy(entry(bad, 1), "a\0b", 3), "section 1: malformed tag", "bytes after NUL");
    PATCHED(memcpy(entry(bad, 1), entry(bad, 0), 16), "duplicate section 'arch'", "duplicate");
    PATCHED(put32(entry(bad, 2) + 36, 5), "reserved field", "entry reserved");
    PATCHED(put64(entry(bad, 0) + 16, off0 + 4), "not 8-byte aligned", "misaligned");
    PATCHED(put64(entry(bad, 0) + 16, 0), "outside the data area", "offset in the header");
    PATCHED(put64(entry(bad, 0) + 16, len), "outside the data area", "offset at the end");
    PATCHED(put64(entry(bad, 0) + 16, UINT64_MAX - 7), "outside", "offset 2^64-8");
    PATCHED(put64(entry(bad, 8) + 24, 1000000), "outside the data area", "long last section");
    PATCHED(put64(entry(bad, 0) + 24, UINT64_MAX), "outside the data area", "length 2^64-1");
    PATCHED(put64(entry(bad, 3) + 16, off0), "sections 'arch' and 'provenance' overlap",
            "overlap");
    PATCHED(put64(entry(bad, 0) + 24, get64(entry(bad, 1) + 16) - off0 + 1),
            "overlap", "arch runs into scoring");
#undef PATCHED
    free(bad);
    free(buf);
}

TEST(bundle_sections_missing_or_unknown) {
    static const char *const tags[] = {"arch", "scoring", "calibration", "provenance",
                                       "weights", "ref_latent", "ref_map", "ref_id",
                                       "cal_scores"};
    size_t len, blen;
    char want[64];
    uint8_t *buf = good_file(&len), *b;
    if (!buf) return;
    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++) {
        snprintf(want, sizeof want, "missing section '%s'", tags[i]);
        b = replace_section(buf, len, tags[i], NULL, 0, &blen);
        EXPECT_FAIL(b, blen, want, tags[i]);
        free(b);
    }
    /* A section this version does not know is skipped (CRC-checked all the same). */
    b = replace_section(buf, len, "future_thing", "\x01\x02\x03", 3, &blen);
    char err[512];
    CHECK_MSG(b && parse_copy(b, blen, err, sizeof err) == 0, "unknown section: %s", err);
    free(b);
    b = replace_section(buf, len, "empty", "", 0, &blen);
    CHECK_MSG(b && parse_copy(b, blen, err, sizeof err) == 0, "empty section: %s", err);
    free(b);
    free(buf);
}

/* Array sections whose counts lie or exceed the limits, with correct checksums:
 * refused from their headers, before any allocation. */
TEST(bundle_oversized_counts) {
    size_t len, alen, blen;
    uint8_t *buf = good_file(&len);
    if (!buf) return;
    static const struct { const char *tag; uint32_t rows, cols; size_t have; const char *want; }
    cases[] = {
        {"weights", 1u << 30, 1, 136, "more than the 268435456 allowed"},
        {"weights", 0xffffffffu, 0xffffffffu, 136, "more than the"},
        {"weights", 137, 1, 136, "do not fit its 552 bytes"},
        {"weights", 135, 1, 136, "do not fit"},
        {"weights", 135, 1, 135, "needs 136 parameters, section 'weights' holds 135"},
        {"weights", 68, 2, 136, "2 columns, expected 1"},
        {"ref_latent", 1u << 20, 2, 20, "do not fit"},
        {"ref_latent", 5, 4, 20, "4 columns, expected 2 (the latent size)"},
        {"ref_latent", 9, 2, 18, "reference sections disagree"},
        {"ref_map", 11, 2, 22, "reference sections disagree: ref_latent has 10 points, "
                               "ref_map 11"},
        {"ref_map", 10, 3, 30, "3 columns, expected 2"},
        {"ref_id", 0, 1, 0, "disagree"},
        {"cal_scores", 1u << 28, 1, 8, "do not fit"},
        {"cal_scores", 9, 1, 9, "says n_cal = 8, section 'cal_scores' holds 9"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        float *v = calloc(cases[i].have ? cases[i].have : 1, sizeof(float));
        uint8_t *arr = array_bytes((uint32_t)cases[i].have, 1, v, &alen);
        if (arr) {
            put32(arr, cases[i].rows);
            put32(arr + 4, cases[i].cols);
        }
        uint8_t *b = arr ? replace_section(buf, len, cases[i].tag, arr, alen, &blen) : NULL;
        EXPECT_FAIL(b, blen, cases[i].want, cases[i].tag);
        free(b);
        free(arr);
        free(v);
    }
    /* Shorter than an array header. */
    uint8_t *b = replace_section(buf, len, "ref_id", "\x0a\0\0", 3, &blen);
    EXPECT_FAIL(b, blen, "too short for an array header", "3-byte array");
    free(b);
    /* Zero points everywhere and a calibration saying zero: consistent, but empty. */
    char *cal = section_text(buf, len, "calibration"), *cal0 = cal ? with_field(cal, "n_cal", "0") : NULL;
    uint8_t *e = array_bytes(0, 1, NULL, &alen), *b1 = NULL, *b2 = NULL;
    if (e && cal0 && (b1 = replace_section(buf, len, "cal_scores", e, alen, &blen)) &&
        (b2 = replace_section(b1, blen, "calibration", cal0, strlen(cal0), &blen)))
        EXPECT_FAIL(b2, blen, "0 calibration scores, outside 1..16777216", "n_cal 0");
    free(b1);
    free(b2);
    free(e);
    free(cal);
    free(cal0);
    free(buf);
}

/* The JSON sections: not JSON, not an object, wrong types, unknown and missing keys. */
TEST(bundle_invalid_json) {
    size_t len, blen;
    uint8_t *buf = good_file(&len);
    if (!buf) return;
    static const struct { const char *tag, *text, *want; } cases[] = {
        {"arch", "{", "section 'arch': invalid JSON at line 1"},
        {"arch", "", "section 'arch': invalid JSON"},
        {"arch", "[1, 2]", "section 'arch' is not a JSON object"},
        {"arch", "{} {}", "invalid JSON"},
        {"arch", "{\"name\": \"a\", \"name\": \"b\"}", "duplicate"},
        {"arch", "{\"name\": \"a\\u0000b\"}", "invalid JSON"},
        {"scoring", "{\"mode\": \"single\"}", "missing 'window'"},
        {"scoring", "\"single\"", "not a JSON object"},
        {"calibration", "{\"bogus\": 1}", "unknown key 'bogus'"},
        {"calibration", "{\"re\": 1}", "'re' must be an object"},
        {"provenance", "{\"open\": ", "provenance: invalid JSON"},
        {"provenance", "{\"a\":1}\0", "NUL byte"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t tl = strlen(cases[i].text) + (strstr(cases[i].want, "NUL") != NULL);
        uint8_t *b = replace_section(buf, len, cases[i].tag, cases[i].text, tl, &blen);
        EXPECT_FAIL(b, blen, cases[i].want, cases[i].text);
        free(b);
    }
    /* Provenance is opaque: any JSON value loads. */
    char err[512];
    uint8_t *b = replace_section(buf, len, "provenance", "[1, \"two\", null]", 16, &blen);
    CHECK_MSG(b && parse_copy(b, blen, err, sizeof err) == 0, "array provenance: %s", err);
    free(b);
    free(buf);
}

/* Well-formed sections whose values are wrong or contradict each other; each case
 * changes one field of the good file's JSON. */
TEST(bundle_inconsistent_values) {
    size_t len, blen;
    uint8_t *buf = good_file(&len);
    if (!buf) return;
    static const struct { const char *tag, *key, *value, *want; } cases[] = {
        {"arch", "name", "\"a-name-far-too-long-for-the-32-byte-field\"", "at most 31 bytes"},
        {"arch", "name", "7", "'name' must be a string"},
        {"arch", "input", "[1, 4]", "'input' must be [channels, height, width]"},
        {"arch", "input", "[1, 4, 4.0]", "'input' must be"},
        {"arch", "input", "[0, 4, 4]", "section 'arch': "},
        {"arch", "input", "[1, 5, 5]", "decoder output"},
        {"arch", "latent", "3", "needs 162 parameters"},  /* head and decoder grow */
        {"arch", "latent", "0", "latent size 0"},
        {"arch", "latent", "99999999999", "'latent' must be an integer"},
        {"arch", "recon", "\"l1\"", "'recon' must be"},
        {"arch", "encoder", "\"warp(3)\"", "encoder"},
        {"arch", "encoder", "\"linear(400000) linear(1000)\"", "more than the"},
        {"arch", "decoder", "\"linear(15)\"", "decoder"},
        {"scoring", "mode", "\"joint\"", "'mode' must be \"single\" or \"context\""},
        {"scoring", "window", "0", "context mode in 1..65536"},
        {"scoring", "window", "65537", "window 65537"},
        {"scoring", "k", "0", "k = 0 is not in [1, n_ref = 10]"},
        {"scoring", "k", "11", "k = 11"},
        {"scoring", "k", "2.5", "'k' must be an integer"},
        {"scoring", "alpha", "1.5", "alpha = 1.5 is not in [0, 1]"},
        {"scoring", "alpha", "-0.1", "alpha = -0.1"},
        {"scoring", "alpha", "\"half\"", "'alpha' must be a number"},
        {"scoring", "perplexity", "3.7", "perplexity 3.7 needs 11 neighbours"},
        {"scoring", "perplexity", "3.5", NULL},           /* 10 neighbours: every point */
        {"scoring", "perplexity", "0.5", "perplexity 0.5"},
        {"scoring", "n_iter", "-1", "placement settings"},
        {"scoring", "n_iter", "100001", "placement settings"},
        {"scoring", "learning_rate", "0", "placement settings"},
        {"scoring", "momentum", "1", "placement settings"},
        {"scoring", "max_grad", "-1", "placement settings"},
        {"scoring", "exact", "1", "'exact' must be true or false"},
        {"scoring", "term", "\"knn\"", "'term' must be \"map\" or \"latent\""},
        {"scoring", "term", "7", "'term' must be"},
        {"scoring", "exact", "1e400", "invalid JSON"},
        {"calibration", "quantile", "0", "quantile 0 must be in (0, 1]"},
        {"calibration", "quantile", "1.01", "quantile 1.01"},
        {"calibration", "scale", "0", "scales finite and > 0"},
        {"calibration", "center", "null", "'center' must be a number"},
        {"calibration", "n_cal", "9", "says n_cal = 9"},
        {"calibration", "n_cal", "-1", "says n_cal = -1"},
        {"calibration", "threshold", "-1e308", NULL},     /* finite: loads */
    };
    char err[512];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *text = section_text(buf, len, cases[i].tag);
        char *t = text ? with_field(text, cases[i].key, cases[i].value) : NULL;
        uint8_t *b = t ? replace_section(buf, len, cases[i].tag, t, strlen(t), &blen) : NULL;
        if (cases[i].want)
            EXPECT_FAIL(b, blen, cases[i].want, t ? t : cases[i].key);
        else
            CHECK_MSG(b && parse_copy(b, blen, err, sizeof err) == 0, "%s: %s", t, err);
        free(b);
        free(t);
        free(text);
    }
    /* Version 1 files (before the latent term): no "term", no latent statistics; they
     * load fusing the map term, the latent statistics unknown. Version 2 insists on
     * "term", and on the statistics of the term it fuses. */
    char *scoring = section_text(buf, len, "scoring"), *cal = section_text(buf, len, "calibration");
    char *lat = cal ? strstr(cal, ",\"latent\":{") : NULL;
    char *term = scoring ? strstr(scoring, ",\"term\":\"latent\"") : NULL;
    CHECK(lat && term);
    if (lat && term) {
        memmove(lat, strchr(lat, '}') + 1, strlen(strchr(lat, '}') + 1) + 1);   /* drop it */
        uint8_t *b1 = replace_section(buf, len, "calibration", cal, strlen(cal), &blen);
        EXPECT_FAIL(b1, blen, "needs calibration statistics", "latent term, no statistics");
        size_t b1len = blen;
        char *after = term + strlen(",\"term\":\"latent\"");
        memmove(term, after, strlen(after) + 1);
        uint8_t *b2 = b1 ? replace_section(b1, b1len, "scoring", scoring, strlen(scoring), &blen) : NULL;
        EXPECT_FAIL(b2, blen, "section 'scoring': missing 'term'", "version 2 without term");
        free(b2);
        drop_tol(scoring);
        b2 = b1 ? replace_section(b1, b1len, "scoring", scoring, strlen(scoring), &blen) : NULL;
        if (b2) {
            put32(b2 + 8, 1);
            reseal(b2, blen);
        }
        detector old;
        CHECK_MSG(b2 && bundle_parse(b2, blen, &old, err, sizeof err) == 0, "version 1: %s", err);
        if (b2 && old.vae.params) {
            CHECK(old.term == TERM_MAP && isnan(old.latent.center) && isnan(old.latent.scale));
            detector_free(&old);
        }
        free(b1);
        free(b2);
    }
    /* A version 1 file with version 2's keys is refused: they mean nothing in version 1. */
    uint8_t *v1 = malloc(len);
    if (v1) {
        memcpy(v1, buf, len);
        put32(v1 + 8, 1);
        reseal(v1, len);
        EXPECT_FAIL(v1, len, "unknown key 'term'", "version 1 with a term");
        free(v1);
    }
    free(scoring);
    free(cal);

    /* Unknown and missing keys in the nested placement object. */
    char *text = section_text(buf, len, "scoring");
    char *t = text ? with_field(text, "exact", "true,\"turbo\":true") : NULL;
    uint8_t *b = t ? replace_section(buf, len, "scoring", t, strlen(t), &blen) : NULL;
    EXPECT_FAIL(b, blen, "section 'scoring', 'place': unknown key 'turbo'", "turbo");
    free(b);
    free(t);
    free(text);

    /* Array contents: non-finite values, unsorted calibration, negative ids. */
    static const struct { const char *tag; uint32_t rows, cols; int at; float value; const char *want; }
    arrays[] = {
        {"weights", 136, 1, 7, NAN, "weights: parameter 7 is not finite"},
        {"ref_latent", N_REF, LATENT, 3, INFINITY, "ref_latent: value 3 is not finite"},
        {"ref_map", N_REF, 2, 19, -INFINITY, "ref_map: value 19 is not finite"},
        {"cal_scores", N_CAL, 1, 7, NAN, "cal_scores: value 7 is not finite"},
        {"cal_scores", N_CAL, 1, 4, -100.0f, "cal_scores: not ascending at 4"},
    };
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++) {
        size_t alen;
        float *v = calloc((size_t)arrays[i].rows * arrays[i].cols, sizeof(float));
        if (!v) continue;
        v[arrays[i].at] = arrays[i].value;
        uint8_t *arr = array_bytes(arrays[i].rows, arrays[i].cols, v, &alen);
        uint8_t *bb = arr ? replace_section(buf, len, arrays[i].tag, arr, alen, &blen) : NULL;
        EXPECT_FAIL(bb, blen, arrays[i].want, arrays[i].tag);
        free(bb);
        free(arr);
        free(v);
    }
    size_t alen;
    int32_t ids[N_REF] = {0, 1, 2, -4, 4, 5, 6, 7, 8, 9};
    uint8_t *arr = array_bytes(N_REF, 1, (const float *)(const void *)ids, &alen);
    b = arr ? replace_section(buf, len, "ref_id", arr, alen, &blen) : NULL;
    EXPECT_FAIL(b, blen, "ref_id: point 3 has negative id -4", "negative id");
    free(b);
    free(arr);
    free(buf);
}

/* A perplexity placement refuses is refused at load, by placement's own rule (range
 * [1, 100], floor(3 x perplexity) neighbours among the reference points), however many
 * reference points there are: 150 in a 500-point map once loaded, to fail on the first
 * sample. The limits themselves load. */
TEST(bundle_refuses_unplaceable_perplexity) {
    enum { BIG = 500 };
    detector d;
    char err[512];
    uint8_t *buf = NULL;
    size_t len, blen;
    if (make_detector(&d) != 0) return;
    float *latent = realloc(d.ref_latent, BIG * LATENT * sizeof(float));
    if (latent) d.ref_latent = latent;
    float *map = realloc(d.ref_map, BIG * 2 * sizeof(float));
    if (map) d.ref_map = map;
    int32_t *id = realloc(d.ref_id, BIG * sizeof(int32_t));
    if (id) d.ref_id = id;
    if (!latent || !map || !id) {
        check_fail(__FILE__, __LINE__, "out of memory");
        detector_free(&d);
        return;
    }
    rng_t r;
    rng_seed(&r, 5);
    rng_fill_normal(&r, d.ref_latent, BIG * LATENT);
    rng_fill_normal(&r, d.ref_map, BIG * 2);
    for (int i = 0; i < BIG; i++) d.ref_id[i] = i;
    d.n_ref = BIG;
    d.place.perplexity = 100;
    CHECK_MSG(bundle_encode(&d, &buf, &len, err, sizeof err) == 0, "bundle_encode: %s", err);
    d.place.perplexity = 150;
    uint8_t *refused = NULL;
    size_t refused_len;
    CHECK(bundle_encode(&d, &refused, &refused_len, err, sizeof err) == -1 && !refused &&
          strstr(err, "perplexity 150 is outside [1, 100]"));
    detector_free(&d);
    if (!buf) return;
    CHECK_MSG(parse_copy(buf, len, err, sizeof err) == 0, "perplexity 100: %s", err);
    static const struct { const char *value, *want; } cases[] = {
        {"150", "scoring: perplexity 150 is outside [1, 100]"},
        {"100.5", "perplexity 100.5 is outside"},
        {"0.99", "perplexity 0.99 is outside"},
        {"166.6", "perplexity 166.6 is outside"},   /* 499 neighbours: the old rule took it */
        {"1", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *text = section_text(buf, len, "scoring");
        char *t = text ? with_field(text, "perplexity", cases[i].value) : NULL;
        uint8_t *b = t ? replace_section(buf, len, "scoring", t, strlen(t), &blen) : NULL;
        if (cases[i].want)
            EXPECT_FAIL(b, blen, cases[i].want, cases[i].value);
        else
            CHECK_MSG(b && parse_copy(b, blen, err, sizeof err) == 0, "%s: %s", t, err);
        free(b);
        free(t);
        free(text);
    }
    free(buf);
}

/* d's file as version 1 wrote it: no "term" (version 1 fused the map term) and no latent
 * statistics, so that its z_latent is unknown. Free it; NULL on failure. */
static uint8_t *version1_file(const detector *d, size_t *len) {
    size_t n = 0, m = 0;
    uint8_t *buf = NULL, *b1 = NULL, *b2 = NULL;
    char err[512];
    CHECK_MSG(bundle_encode(d, &buf, &n, err, sizeof err) == 0, "bundle_encode: %s", err);
    char *scoring = buf ? section_text(buf, n, "scoring") : NULL;
    char *cal = buf ? section_text(buf, n, "calibration") : NULL;
    char *lat = cal ? strstr(cal, ",\"latent\":{") : NULL;
    char *term = scoring ? strstr(scoring, ",\"term\":\"") : NULL;
    char *term_end = term ? strchr(term + strlen(",\"term\":\""), '"') : NULL;
    if (cal && term_end) {
        if (lat) memmove(lat, strchr(lat, '}') + 1, strlen(strchr(lat, '}') + 1) + 1);
        memmove(term, term_end + 1, strlen(term_end + 1) + 1);
        drop_tol(scoring);
        b1 = replace_section(buf, n, "calibration", cal, strlen(cal), &m);
        b2 = b1 ? replace_section(b1, m, "scoring", scoring, strlen(scoring), len) : NULL;
        if (b2) {
            put32(b2 + 8, 1);
            reseal(b2, *len);
        }
    }
    CHECK_MSG(b2 != NULL, "cannot make a version 1 file");
    free(buf);
    free(b1);
    free(scoring);
    free(cal);
    return b2;
}

/* anodm score's JSON lines are JSON: one object per sample holding "index", "label" and
 * every field of the score record (core/detect/detector.h's table) in the table's order, an
 * unknown value null: the z_latent of a version-1 bundle, which used to be written as
 * nan. The CSV has the same columns. */
TEST(bundle_v1_scores_as_json_lines) {
    static const char *const FIELDS[] = {
#define FIELD_NAME(name, type, group, doc) #name,
        DETECTOR_RESULT_FIELDS(FIELD_NAME)
#undef FIELD_NAME
    };
    enum { N_FIELDS = sizeof FIELDS / sizeof FIELDS[0], ROWS = 12 };
    char model[512], data[512], out[512], line[4096], *text = NULL;
    size_t len;
    detector d;
    if (fuzz_model_make(&d, PLACE_SINGLE, line, sizeof line) != 0) {
        check_fail(__FILE__, __LINE__, "fuzz_model_make: %s", line);
        return;
    }
    d.latent = (term_stats){NAN, NAN};
    uint8_t *v1 = version1_file(&d, &len);
    detector_free(&d);
    if (!v1) return;
    tmp_path(model, sizeof model, "bundle_v1_score.anodm");
    write_all(model, v1, len);
    free(v1);
    tmp_path(data, sizeof data, "bundle_v1_score.csv");
    FILE *f = fopen(data, "w");
    CHECK(f != NULL);
    if (!f) return;
    rng_t r;
    rng_seed(&r, 21);
    for (int i = 0; i < ROWS; i++) {
        for (int j = 0; j < FUZZ_MODEL_DIM; j++) fprintf(f, "%.4f,", rng_uniform(&r));
        fprintf(f, "%d\n", i % 2);
    }
    CHECK(fclose(f) == 0);

    tmp_path(out, sizeof out, "bundle_v1_score.jsonl");
    int code = run_anodm(&text, "score %s %s --format jsonl --out %s", model, data, out);
    CHECK_MSG(code == 0, "exit %d:\n%s", code, text ? text : "");
    free(text);
    int rows = 0;
    f = fopen(out, "r");
    while (f && fgets(line, sizeof line, f)) {
        json_error_t e;
        json_t *j = json_loads(line, 0, &e);
        CHECK_MSG(json_is_object(j), "line %d is not a JSON object (%s): %s", rows, e.text, line);
        void *it = json_object_iter(j);
        CHECK(it && !strcmp(json_object_iter_key(it), "index") &&
              json_integer_value(json_object_iter_value(it)) == rows);
        it = json_object_iter_next(j, it);
        CHECK(it && !strcmp(json_object_iter_key(it), "label") &&
              json_integer_value(json_object_iter_value(it)) == rows % 2);
        for (int k = 0; k < N_FIELDS; k++) {
            it = it ? json_object_iter_next(j, it) : NULL;
            CHECK_MSG(it && !strcmp(json_object_iter_key(it), FIELDS[k]),
                      "line %d: field %d is not %s: %s", rows, k + 2, FIELDS[k], line);
        }
        CHECK(it && !json_object_iter_next(j, it));
        CHECK_MSG(json_is_null(json_object_get(j, "z_latent")) &&
                      json_is_number(json_object_get(j, "d_latent")) &&
                      json_is_number(json_object_get(j, "score")) &&
                      json_is_boolean(json_object_get(j, "is_anomaly")) &&
                      json_is_integer(json_object_get(j, "nearest_ref")),
                  "line %d: %s", rows, line);
        json_decref(j);
        rows++;
    }
    if (f) fclose(f);
    CHECK_MSG(rows == ROWS, "%d JSON lines, want %d", rows, ROWS);

    /* The CSV: a header of the same names, then a row per sample. */
    tmp_path(out, sizeof out, "bundle_v1_score.csv.out");
    code = run_anodm(&text, "score %s %s --out %s", model, data, out);
    CHECK_MSG(code == 0, "exit %d:\n%s", code, text ? text : "");
    free(text);
    char want[1024] = "index,label";
    for (int k = 0; k < N_FIELDS; k++) {
        strcat(want, ",");
        strcat(want, FIELDS[k]);
    }
    strcat(want, "\n");
    rows = -1;
    f = fopen(out, "r");
    if (f && fgets(line, sizeof line, f)) {
        CHECK_MSG(!strcmp(line, want), "CSV header %s, want %s", line, want);
        for (rows = 0; fgets(line, sizeof line, f); rows++) {}
    }
    if (f) fclose(f);
    CHECK_MSG(rows == ROWS, "%d CSV rows, want %d", rows, ROWS);
}

/* ------------------------------------------------------------------ anodm inspect */

/* Runs `anodm inspect ARGS`: run_anodm's exit code, the output in *out (free it). */
static int run_inspect(const char *args, char **out) { return run_anodm(out, "inspect %s", args); }

TEST(bundle_inspect_cli) {
    detector d;
    char err[512], path[512], args[1100], hex[65], *out;
    size_t len;
    if (make_detector(&d) != 0) return;
    tmp_path(path, sizeof path, "bundle_inspect.anodm");
    CHECK_MSG(bundle_save(path, &d, err, sizeof err) == 0, "%s", err);
    detector_free(&d);
    uint8_t *buf = NULL;
    CHECK(bundle_read_file(path, BUNDLE_MAX_FILE_BYTES, &buf, &len, err, sizeof err) == 0);
    if (!buf) return;
    bundle_hash(buf, len, hex);

    int code = run_inspect(path, &out);
    CHECK_MSG(code == 0 && out && strstr(out, hex) && strstr(out, "parameters    136") &&
              strstr(out, "mode context, window 16, k 2") && strstr(out, "\"synthetic\"") &&
              strstr(out, "10 points") && strstr(out, "format version 6)") &&
              strstr(out, "n_iter 250,") && strstr(out, "tol 0.01 (stops after 3 steps of less)"),
              "exit %d, output:\n%s", code, out ? out : "");
    free(out);

    snprintf(args, sizeof args, "--json %s", path);
    code = run_inspect(args, &out);
    json_t *j = out ? json_loads(out, 0, NULL) : NULL;
    CHECK_MSG(code == 0 && j, "exit %d, output:\n%s", code, out ? out : "");
    if (j) {
        CHECK(!strcmp(json_string_value(json_object_get(j, "version")), hex));
        CHECK(json_integer_value(json_object_get(j, "n_ref")) == N_REF);
        CHECK(json_integer_value(json_object_get(j, "format_version")) == BUNDLE_VERSION);
        CHECK(json_real_value(json_object_get(json_object_get(json_object_get(j, "scoring"),
                                                              "place"), "tol")) == 0.01);
        CHECK(json_integer_value(json_object_get(j, "n_params")) == 136);
        CHECK(json_array_size(json_object_get(j, "sections")) == 9);
        CHECK(!strcmp(json_string_value(json_object_get(json_object_get(j, "scoring"), "mode")),
                      "context"));
        CHECK(json_integer_value(json_object_get(json_object_get(j, "provenance"), "seed")) == 7);
        json_decref(j);
    }
    free(out);

    /* A damaged file: exit 1 and the reason. */
    buf[len / 2] ^= 0x10;
    tmp_path(path, sizeof path, "bundle_inspect_bad.anodm");
    write_all(path, buf, len);
    code = run_inspect(path, &out);
    CHECK_MSG(code == 1 && out && strstr(out, "checksum mismatch") && strstr(out, path),
              "exit %d, output:\n%s", code, out ? out : "");
    free(out);
    code = run_inspect("/nonexistent/model.anodm", &out);
    CHECK_MSG(code == 1 && out && strstr(out, "No such file"), "exit %d: %s", code, out);
    free(out);
    code = run_inspect("", &out);
    CHECK_MSG(code == 2 && out && strstr(out, "usage"), "exit %d: %s", code, out);
    free(out);
    code = run_inspect("--frobnicate x", &out);
    CHECK_MSG(code == 2, "exit %d: %s", code, out);
    free(out);
    free(buf);
}
