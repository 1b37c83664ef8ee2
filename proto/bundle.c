/* Reading and writing model bundles (the format: BUNDLE.md; the contract: bundle.h).
 *
 * Two layers. The container (bundle_sections, bundle_assemble) knows the header, the
 * section table, the CRCs and the file hash, and nothing of detectors. The detector
 * layer maps sections to fields: JSON sections through jansson, array sections through
 * one "rows x cols" reader that checks a section's declared shape against its length
 * before anything is allocated. What a valid detector is lives in one function,
 * check_detector, which the writer runs before writing and the loader after reading, so
 * that bundle_save can never produce a file bundle_load refuses. */
#include "bundle.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "api.h"
#include "le.h"
#include "sha256.h"

/* The sections of a version 1 bundle, all required, then those a detector has only with
 * some settings (version 4: the Fisher fusion's calibration stream); any other tag is
 * skipped. */
enum { ARCH, SCORING, CALIBRATION, PROVENANCE, WEIGHTS, REF_LATENT, REF_MAP, REF_ID,
       CAL_SCORES, N_REQUIRED, CAL_BASE = N_REQUIRED, CAL_MEMORY, SCALING, N_KNOWN };
static const char *const TAGS[N_KNOWN] = {
    "arch", "scoring", "calibration", "provenance", "weights", "ref_latent", "ref_map",
    "ref_id", "cal_scores", "cal_base", "cal_memory", "scaling",
};

/* ------------------------------------------------------------------ container */

static size_t align8(size_t x) { return (x + 7) & ~(size_t)7; }

static uint32_t crc(const uint8_t *p, size_t n) { return (uint32_t)crc32_z(0L, p, n); }

/* CRC of the header's first 28 bytes followed by the section table. */
static uint32_t header_crc(const uint8_t *buf, uint32_t n_sections) {
    uLong c = crc32_z(0L, buf, 28);
    return (uint32_t)crc32_z(c, buf + BUNDLE_HEADER_BYTES, (size_t)n_sections * BUNDLE_ENTRY_BYTES);
}

/* A tag field: 1 to BUNDLE_TAG_MAX characters of [a-z0-9_], then only NULs. */
static int valid_tag(const uint8_t *field) {
    size_t n = 0;
    while (n < BUNDLE_TAG_MAX && field[n] &&
           ((field[n] >= 'a' && field[n] <= 'z') || (field[n] >= '0' && field[n] <= '9') ||
            field[n] == '_'))
        n++;
    if (n == 0) return 0;
    for (size_t i = n; i <= BUNDLE_TAG_MAX; i++)
        if (field[i]) return 0;
    return 1;
}

/* What the writer puts in one section: raw bytes, or an array of 4-byte elements
 * (float32 or int32) stored as u32 rows, u32 cols, then rows * cols values. */
typedef struct {
    const char *tag;
    const uint8_t *bytes;
    size_t len;                 /* raw: bytes */
    const float *f32;           /* array: exactly one of f32, i32 */
    const int32_t *i32;
    uint32_t rows, cols;
} source;

static size_t source_len(const source *s) {
    return s->f32 || s->i32 ? 8 + 4 * (size_t)s->rows * s->cols : s->len;
}

static void source_write(const source *s, uint8_t *p) {
    if (!s->f32 && !s->i32) {
        if (s->len) memcpy(p, s->bytes, s->len);
        return;
    }
    const size_t n = (size_t)s->rows * s->cols;
    le_put32(p, s->rows);
    le_put32(p + 4, s->cols);
    p += 8;
    for (size_t i = 0; i < n; i++, p += 4) {
        if (s->f32) le_put_f32(p, s->f32[i]);
        else le_put32(p, (uint32_t)s->i32[i]);
    }
}

/* Lay out, write and seal a file: sections 8-byte aligned in the given order, zero
 * padding, per-section CRCs, header CRC, trailing SHA-256. */
static int assemble(const source *src, int n, uint8_t **out, size_t *outlen, char *err,
                    size_t errlen) {
    *out = NULL;
    *outlen = 0;
    if (n < 1 || n > BUNDLE_MAX_SECTIONS) {
        snprintf(err, errlen, "%d sections: a bundle holds 1 to %d", n, BUNDLE_MAX_SECTIONS);
        return -1;
    }
    uint64_t offsets[BUNDLE_MAX_SECTIONS];
    uint64_t end = BUNDLE_HEADER_BYTES + (uint64_t)n * BUNDLE_ENTRY_BYTES;
    for (int i = 0; i < n; i++) {
        uint8_t field[BUNDLE_TAG_MAX + 1] = {0};
        size_t tl = strlen(src[i].tag);
        if (tl <= BUNDLE_TAG_MAX) memcpy(field, src[i].tag, tl);
        if (tl > BUNDLE_TAG_MAX || !valid_tag(field)) {
            snprintf(err, errlen, "bad section tag '%s'", src[i].tag);
            return -1;
        }
        uint64_t l = source_len(&src[i]);
        if (l > BUNDLE_MAX_FILE_BYTES) {             /* the size check below reports it */
            end = BUNDLE_MAX_FILE_BYTES + 1;
            break;
        }
        offsets[i] = align8(end);
        end = offsets[i] + l;
    }
    uint64_t total = align8(end) + BUNDLE_HASH_BYTES;
    if (end > BUNDLE_MAX_FILE_BYTES || total > BUNDLE_MAX_FILE_BYTES) {
        snprintf(err, errlen, "the bundle would exceed %llu bytes",
                 (unsigned long long)BUNDLE_MAX_FILE_BYTES);
        return -1;
    }
    uint8_t *buf = calloc(total, 1);
    if (!buf) {
        snprintf(err, errlen, "out of memory for a %llu-byte bundle", (unsigned long long)total);
        return -1;
    }
    memcpy(buf, BUNDLE_MAGIC, 8);
    le_put32(buf + 8, BUNDLE_VERSION);
    le_put32(buf + 12, (uint32_t)n);
    le_put64(buf + 16, total);
    for (int i = 0; i < n; i++) {
        uint8_t *e = buf + BUNDLE_HEADER_BYTES + (size_t)i * BUNDLE_ENTRY_BYTES;
        size_t l = source_len(&src[i]);
        source_write(&src[i], buf + offsets[i]);
        memcpy(e, src[i].tag, strlen(src[i].tag));
        le_put64(e + 16, offsets[i]);
        le_put64(e + 24, l);
        le_put32(e + 32, crc(buf + offsets[i], l));
    }
    le_put32(buf + 28, header_crc(buf, (uint32_t)n));
    sha256(buf, total - BUNDLE_HASH_BYTES, buf + total - BUNDLE_HASH_BYTES);
    *out = buf;
    *outlen = total;
    return 0;
}

int bundle_assemble(const bundle_section *s, int n, uint8_t **buf, size_t *len, char *err,
                    size_t errlen) {
    source src[BUNDLE_MAX_SECTIONS];
    for (int i = 0; i < n && i < BUNDLE_MAX_SECTIONS; i++)
        src[i] = (source){.tag = s[i].tag, .bytes = s[i].data, .len = s[i].len};
    return assemble(src, n, buf, len, err, errlen);
}

int bundle_sections(const uint8_t *buf, size_t len, bundle_section *s, int *n, char *err,
                    size_t errlen) {
    *n = 0;
    if (len > 0 && memcmp(buf, BUNDLE_MAGIC, len < 8 ? len : 8) != 0) {
        snprintf(err, errlen, "not an anodm model bundle (bad magic)");
        return -1;
    }
    if (len < BUNDLE_HEADER_BYTES) {
        snprintf(err, errlen, "truncated: %zu bytes, less than the %d-byte header", len,
                 BUNDLE_HEADER_BYTES);
        return -1;
    }
    uint32_t version = le_get32(buf + 8), count = le_get32(buf + 12);
    if (version < 1 || version > BUNDLE_VERSION) {
        if (version > BUNDLE_VERSION)
            snprintf(err, errlen, "bundle format version %u is newer than this anodm reads "
                     "(version %d): upgrade anodm", version, BUNDLE_VERSION);
        else
            snprintf(err, errlen, "bundle format version %u is not a valid version", version);
        return -1;
    }
    uint64_t file_len = le_get64(buf + 16);
    if (file_len != len) {
        if (file_len > len)
            snprintf(err, errlen, "truncated: the header declares %llu bytes, the file has %zu",
                     (unsigned long long)file_len, len);
        else
            snprintf(err, errlen, "%llu unexpected bytes after the declared end of the file",
                     (unsigned long long)(len - file_len));
        return -1;
    }
    if (count < 1 || count > BUNDLE_MAX_SECTIONS) {
        snprintf(err, errlen, "section count %u outside 1..%d", count, BUNDLE_MAX_SECTIONS);
        return -1;
    }
    const size_t data_start = BUNDLE_HEADER_BYTES + (size_t)count * BUNDLE_ENTRY_BYTES;
    if (data_start + BUNDLE_HASH_BYTES > len) {
        snprintf(err, errlen, "a table of %u sections does not fit the %zu-byte file", count,
                 len);
        return -1;
    }
    if (header_crc(buf, count) != le_get32(buf + 28)) {
        snprintf(err, errlen, "header checksum mismatch: the header or section table is "
                 "corrupted");
        return -1;
    }
    if (le_get32(buf + 24) != 0) {
        snprintf(err, errlen, "header flags 0x%x unknown to this anodm", le_get32(buf + 24));
        return -1;
    }
    const size_t data_end = len - BUNDLE_HASH_BYTES;
    int order[BUNDLE_MAX_SECTIONS];
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *e = buf + BUNDLE_HEADER_BYTES + (size_t)i * BUNDLE_ENTRY_BYTES;
        bundle_section *t = &s[i];
        if (!valid_tag(e)) {
            snprintf(err, errlen, "section %u: malformed tag", i);
            return -1;
        }
        memcpy(t->tag, e, BUNDLE_TAG_MAX + 1);
        for (uint32_t j = 0; j < i; j++)
            if (!strcmp(s[j].tag, t->tag)) {
                snprintf(err, errlen, "duplicate section '%s'", t->tag);
                return -1;
            }
        uint64_t off = le_get64(e + 16), l = le_get64(e + 24);
        if (le_get32(e + 36) != 0) {
            snprintf(err, errlen, "section '%s': reserved field is not zero", t->tag);
            return -1;
        }
        if (off % 8 != 0 || off < data_start || off > data_end || l > data_end - off) {
            snprintf(err, errlen, "section '%s': offset %llu, length %llu: outside the data "
                     "area [%zu, %zu) or not 8-byte aligned", t->tag, (unsigned long long)off,
                     (unsigned long long)l, data_start, data_end);
            return -1;
        }
        t->offset = off;
        t->data = buf + off;
        t->len = (size_t)l;
        t->crc = le_get32(e + 32);
        /* Insertion into offset order, to find overlaps between neighbours. */
        int k = (int)i;
        for (; k > 0 && s[order[k - 1]].offset > off; k--) order[k] = order[k - 1];
        order[k] = (int)i;
    }
    for (uint32_t i = 1; i < count; i++) {
        const bundle_section *a = &s[order[i - 1]], *b = &s[order[i]];
        if (a->offset + a->len > b->offset) {
            snprintf(err, errlen, "sections '%s' and '%s' overlap", a->tag, b->tag);
            return -1;
        }
    }
    for (uint32_t i = 0; i < count; i++)
        if (crc(s[i].data, s[i].len) != s[i].crc) {
            snprintf(err, errlen, "section '%s' checksum mismatch: the file is corrupted",
                     s[i].tag);
            return -1;
        }
    uint8_t digest[SHA256_DIGEST];
    sha256(buf, data_end, digest);
    if (memcmp(digest, buf + data_end, SHA256_DIGEST) != 0) {
        snprintf(err, errlen, "file hash mismatch: the file is corrupted");
        return -1;
    }
    *n = (int)count;
    return 0;
}

void bundle_hash(const uint8_t *buf, size_t len, char hex[65]) {
    uint8_t digest[SHA256_DIGEST];
    sha256(buf, len, digest);
    sha256_hex(digest, hex);
}

/* ------------------------------------------------------------------ JSON fields */

/* Parse JSON text (any value) of at most BUNDLE_MAX_JSON bytes, without NUL bytes and
 * duplicate keys; where names it in messages. */
static json_t *parse_json(const uint8_t *text, size_t len, const char *where, char *err,
                          size_t errlen) {
    if (len > BUNDLE_MAX_JSON) {
        snprintf(err, errlen, "%s: %zu bytes of JSON, more than the %zu allowed", where, len,
                 BUNDLE_MAX_JSON);
        return NULL;
    }
    if (memchr(text, 0, len)) {
        snprintf(err, errlen, "%s: NUL byte in JSON text", where);
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb((const char *)text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!j)
        snprintf(err, errlen, "%s: invalid JSON at line %d column %d: %s", where, je.line,
                 je.column, je.text);
    return j;
}

/* A JSON section whose value must be an object. */
static json_t *object_section(const bundle_section *s, char *err, size_t errlen) {
    char where[64];
    snprintf(where, sizeof where, "section '%s'", s->tag);
    json_t *j = parse_json(s->data, s->len, where, err, errlen);
    if (j && !json_is_object(j)) {
        snprintf(err, errlen, "%s is not a JSON object", where);
        json_decref(j);
        return NULL;
    }
    return j;
}

/* Readers reject a key they do not know: a key that changed the meaning of a model
 * must not be silently ignored (BUNDLE.md, "Compatibility"). keys is NULL-terminated. */
static int only_keys(json_t *obj, const char *where, const char *const *keys, char *err,
                     size_t errlen) {
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        size_t i = 0;
        while (keys[i] && strcmp(keys[i], key)) i++;
        if (!keys[i]) {
            snprintf(err, errlen, "%s: unknown key '%s'", where, key);
            return -1;
        }
    }
    return 0;
}

static json_t *member(json_t *obj, const char *where, const char *key, char *err,
                      size_t errlen) {
    json_t *v = json_object_get(obj, key);
    if (!v) snprintf(err, errlen, "%s: missing '%s'", where, key);
    return v;
}

/* An integer that fits an int; 0 or -1. */
static int int_value(json_t *v, int *out) {
    if (!json_is_integer(v)) return -1;
    json_int_t x = json_integer_value(v);
    if (x < INT_MIN || x > INT_MAX) return -1;
    *out = (int)x;
    return 0;
}

static int get_int(json_t *obj, const char *where, const char *key, int *out, char *err,
                   size_t errlen) {
    json_t *v = member(obj, where, key, err, errlen);
    if (!v) return -1;
    if (int_value(v, out) != 0) {
        snprintf(err, errlen, "%s: '%s' must be an integer in the int range", where, key);
        return -1;
    }
    return 0;
}

static int get_real(json_t *obj, const char *where, const char *key, double *out, char *err,
                    size_t errlen) {
    json_t *v = member(obj, where, key, err, errlen);
    if (!v) return -1;
    if (!json_is_number(v)) {
        snprintf(err, errlen, "%s: '%s' must be a number", where, key);
        return -1;
    }
    *out = json_number_value(v);
    return 0;
}

/* A string into out (cap bytes with the NUL). */
static int get_str(json_t *obj, const char *where, const char *key, char *out, size_t cap,
                   char *err, size_t errlen) {
    json_t *v = member(obj, where, key, err, errlen);
    if (!v) return -1;
    if (!json_is_string(v) || json_string_length(v) >= cap) {
        snprintf(err, errlen, "%s: '%s' must be a string of at most %zu bytes", where, key,
                 cap - 1);
        return -1;
    }
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

static json_t *get_obj(json_t *obj, const char *where, const char *key, char *err,
                       size_t errlen) {
    json_t *v = member(obj, where, key, err, errlen);
    if (v && !json_is_object(v)) {
        snprintf(err, errlen, "%s: '%s' must be an object", where, key);
        return NULL;
    }
    return v;
}

/* ------------------------------------------------------------------ sections <-> detector */

static const char *recon_name(recon_kind r) { return r == RECON_MSE ? "mse" : "bce"; }
static const char *mode_name(place_mode m) { return m == PLACE_CONTEXT ? "context" : "single"; }
static const char *term_name(fused_term t) { return t == TERM_LATENT ? "latent" : "map"; }

static int decode_arch(json_t *j, uint32_t version, vae_arch *a, scale_kind *kind, char *err,
                       size_t errlen) {
    static const char *const keys_v3[] = {"name", "input", "latent", "recon", "encoder",
                                          "decoder", NULL};
    static const char *const keys[] = {"name", "input", "latent", "recon", "encoder",
                                       "decoder", "scaling", NULL};
    const char *w = "section 'arch'";
    char recon[8], scale[16] = "none";
    memset(a, 0, sizeof *a);
    *kind = SCALE_NONE;
    if (only_keys(j, w, version < 4 ? keys_v3 : keys, err, errlen) ||
        (json_object_get(j, "scaling") &&
         get_str(j, w, "scaling", scale, sizeof scale, err, errlen)) ||
        get_str(j, w, "name", a->name, sizeof a->name, err, errlen) ||
        get_int(j, w, "latent", &a->latent, err, errlen) ||
        get_str(j, w, "recon", recon, sizeof recon, err, errlen) ||
        get_str(j, w, "encoder", a->enc_spec, sizeof a->enc_spec, err, errlen) ||
        get_str(j, w, "decoder", a->dec_spec, sizeof a->dec_spec, err, errlen))
        return -1;
    json_t *in = member(j, w, "input", err, errlen);
    if (!in) return -1;
    if (!json_is_array(in) || json_array_size(in) != 3 ||
        int_value(json_array_get(in, 0), &a->in.c) ||
        int_value(json_array_get(in, 1), &a->in.h) ||
        int_value(json_array_get(in, 2), &a->in.w)) {
        snprintf(err, errlen, "%s: 'input' must be [channels, height, width]", w);
        return -1;
    }
    if (strcmp(recon, "bce") && strcmp(recon, "mse")) {
        snprintf(err, errlen, "%s: 'recon' must be \"bce\" or \"mse\"", w);
        return -1;
    }
    a->recon = recon[0] == 'm' ? RECON_MSE : RECON_BCE;
    if (!strcmp(scale, "standard")) *kind = SCALE_STANDARD;
    else if (!strcmp(scale, "minmax")) *kind = SCALE_MINMAX;
    else if (json_object_get(j, "scaling")) {   /* absent: none; "none" is never written */
        snprintf(err, errlen, "%s: 'scaling' must be \"standard\" or \"minmax\"", w);
        return -1;
    }
    return 0;
}

/* The index of s in names[0..n), or -1. */
static int name_index(const char *const *names, int n, const char *s) {
    for (int i = 0; i < n; i++)
        if (!strcmp(s, names[i])) return i;
    return -1;
}

static int decode_scoring(json_t *j, uint32_t version, detector *d, char *err, size_t errlen) {
    static const char *const keys_v1[] = {"mode", "window", "k", "alpha", "place", NULL};
    static const char *const keys_v2[] = {"mode", "window", "k", "alpha", "place", "term", NULL};
    static const char *const keys_v3[] = {"mode", "window", "k", "alpha", "place", "term",
                                          "latent_input", NULL};
    static const char *const keys[] = {"mode", "window", "k", "alpha", "place", "term",
                                       "latent_input", "memory", NULL};
    static const char *const memory_keys_v4[] = {"capacity", "k", "recent_share",
                                                 "merge_radius", "fusion", NULL};
    static const char *const memory_keys[] = {"capacity", "k", "recent_share", "merge_radius",
                                              "fusion", "k_min", "retain", "horizon", NULL};
    static const char *const place_keys_v5[] = {"perplexity", "n_iter", "learning_rate",
                                                "exaggeration", "momentum", "max_grad",
                                                "exact", NULL};
    static const char *const place_keys[] = {"perplexity", "n_iter", "learning_rate",
                                             "exaggeration", "momentum", "max_grad", "tol",
                                             "exact", NULL};
    const char *w = "section 'scoring'", *pw = "section 'scoring', 'place'";
    char mode[16];
    tsne_place_options *o = &d->place;
    json_t *p, *exact;
    char term[16] = "map"; /* version 1 knew only the map term */
    if (only_keys(j, w, version == 1 ? keys_v1 : version == 2 ? keys_v2 : version == 3 ? keys_v3 : keys,
                  err, errlen) ||
        get_str(j, w, "mode", mode, sizeof mode, err, errlen) ||
        get_int(j, w, "window", &d->window, err, errlen) ||
        get_int(j, w, "k", &d->k, err, errlen) ||
        get_real(j, w, "alpha", &d->alpha, err, errlen) ||
        !(p = get_obj(j, w, "place", err, errlen)) ||
        only_keys(p, pw, version < 6 ? place_keys_v5 : place_keys, err, errlen) ||
        get_real(p, pw, "perplexity", &o->perplexity, err, errlen) ||
        get_int(p, pw, "n_iter", &o->n_iter, err, errlen) ||
        get_real(p, pw, "learning_rate", &o->learning_rate, err, errlen) ||
        get_real(p, pw, "exaggeration", &o->exaggeration, err, errlen) ||
        get_real(p, pw, "momentum", &o->momentum, err, errlen) ||
        get_real(p, pw, "max_grad", &o->max_grad, err, errlen) ||
        (version >= 6 && get_real(p, pw, "tol", &o->tol, err, errlen)) ||
        !(exact = member(p, pw, "exact", err, errlen)) ||
        (version > 1 && get_str(j, w, "term", term, sizeof term, err, errlen)))
        return -1;
    if (version < 6) o->tol = 0.0; /* the stopping rule came with version 6: n_iter steps */
    if (!json_is_boolean(exact)) {
        snprintf(err, errlen, "%s: 'exact' must be true or false", pw);
        return -1;
    }
    o->exact = json_is_true(exact);
    if (strcmp(mode, "single") && strcmp(mode, "context")) {
        snprintf(err, errlen, "%s: 'mode' must be \"single\" or \"context\"", w);
        return -1;
    }
    d->mode = mode[0] == 'c' ? PLACE_CONTEXT : PLACE_SINGLE;
    if (strcmp(term, "map") && strcmp(term, "latent")) {
        snprintf(err, errlen, "%s: 'term' must be \"map\" or \"latent\"", w);
        return -1;
    }
    d->term = term[0] == 'l' ? TERM_LATENT : TERM_MAP;
    /* Version 3, optional, "mu" when absent. */
    d->input = LATENT_MU;
    if (version > 2 && json_object_get(j, "latent_input")) {
        char input[8];
        if (get_str(j, w, "latent_input", input, sizeof input, err, errlen)) return -1;
        if (strcmp(input, "mu") && strcmp(input, "z")) {
            snprintf(err, errlen, "%s: 'latent_input' must be \"mu\" or \"z\"", w);
            return -1;
        }
        d->input = input[0] == 'z' ? LATENT_Z : LATENT_MU;
    }
    /* Version 4, optional: the stream memory. */
    json_t *mem = json_object_get(j, "memory");
    if (!mem) return 0;
    const char *mw = "section 'scoring', 'memory'";
    char fusion[16], retain[16] = "evidence";
    memory_options *mo = &d->memory;
    if (!(mem = get_obj(j, w, "memory", err, errlen)) ||
        only_keys(mem, mw, version < 5 ? memory_keys_v4 : memory_keys, err, errlen) ||
        get_int(mem, mw, "capacity", &mo->capacity, err, errlen) ||
        get_int(mem, mw, "k", &mo->k, err, errlen) ||
        get_real(mem, mw, "recent_share", &mo->recent_share, err, errlen) ||
        get_real(mem, mw, "merge_radius", &mo->merge_radius, err, errlen) ||
        get_str(mem, mw, "fusion", fusion, sizeof fusion, err, errlen))
        return -1;
    /* Version 4 knew one rank, retention by evidence, and no decay. */
    mo->k_min = mo->k;
    mo->horizon = 0.0;
    if (version >= 5 && (get_int(mem, mw, "k_min", &mo->k_min, err, errlen) ||
                         get_str(mem, mw, "retain", retain, sizeof retain, err, errlen) ||
                         get_real(mem, mw, "horizon", &mo->horizon, err, errlen)))
        return -1;
    d->use_memory = 1;
    int f = name_index(SCORE_FUSION_NAME, FUSION_N, fusion),
        r = name_index(MEMORY_RETAIN_NAME, MEMORY_RETAIN_N, retain);
    if (f < 0 || r < 0) {
        snprintf(err, errlen, "%s: unknown '%s' \"%s\"", mw, f < 0 ? "fusion" : "retain",
                 f < 0 ? fusion : retain);
        return -1;
    }
    d->fusion = (score_fusion)f;
    mo->retain = (memory_retain)r;
    return 0;
}

/* An optional term's {"center", "scale"}. */
static int decode_stats(json_t *o, const char *where, term_stats *t, char *err, size_t errlen) {
    static const char *const term_keys[] = {"center", "scale", NULL};
    if (!json_is_object(o)) {
        snprintf(err, errlen, "%s must be an object", where);
        return -1;
    }
    return only_keys(o, where, term_keys, err, errlen) ||
                   get_real(o, where, "center", &t->center, err, errlen) ||
                   get_real(o, where, "scale", &t->scale, err, errlen)
               ? -1
               : 0;
}

static int decode_calibration(json_t *j, uint32_t version, detector *d, char *err,
                              size_t errlen) {
    static const char *const keys_v1[] = {"re", "map", "quantile", "threshold", "n_cal", NULL};
    static const char *const keys[] = {"re", "map", "latent", "memory", "quantile", "threshold",
                                       "n_cal", NULL};
    static const char *const term_keys[] = {"center", "scale", NULL};
    const char *w = "section 'calibration'", *lw = "section 'calibration', 'latent'";
    json_t *re, *map, *latent = json_object_get(j, "latent");
    if (only_keys(j, w, version == 1 ? keys_v1 : keys, err, errlen) ||
        !(re = get_obj(j, w, "re", err, errlen)) || !(map = get_obj(j, w, "map", err, errlen)) ||
        only_keys(re, "section 'calibration', 're'", term_keys, err, errlen) ||
        only_keys(map, "section 'calibration', 'map'", term_keys, err, errlen) ||
        get_real(re, "section 'calibration', 're'", "center", &d->re.center, err, errlen) ||
        get_real(re, "section 'calibration', 're'", "scale", &d->re.scale, err, errlen) ||
        get_real(map, "section 'calibration', 'map'", "center", &d->map.center, err, errlen) ||
        get_real(map, "section 'calibration', 'map'", "scale", &d->map.scale, err, errlen) ||
        get_real(j, w, "quantile", &d->quantile, err, errlen) ||
        get_real(j, w, "threshold", &d->threshold, err, errlen) ||
        get_int(j, w, "n_cal", &d->n_cal, err, errlen))
        return -1;
    /* Optional: version 1 bundles, and version 2 ones from a detector that never had
     * them, lack the latent term's statistics. NaN, so that its z is reported as
     * unknown; check_detector insists on them when the term is fused. */
    d->latent.center = d->latent.scale = NAN;
    if (latent && decode_stats(latent, lw, &d->latent, err, errlen)) return -1;
    /* The memory term's, with a memory (version 4): check_detector insists on them. */
    json_t *mem = json_object_get(j, "memory");
    d->mem.center = d->mem.scale = NAN;
    if (mem && (!d->use_memory || version < 4)) {
        snprintf(err, errlen, "%s: 'memory' statistics without a memory in 'scoring'", w);
        return -1;
    }
    if (mem && decode_stats(mem, "section 'calibration', 'memory'", &d->mem, err, errlen))
        return -1;
    return 0;
}

/* An array section's shape, checked against its length and the expected column count
 * before anything is allocated. */
typedef struct { uint32_t rows, cols; const uint8_t *data; } array_view;

static int array_section(const bundle_section *s, uint32_t cols, const char *cols_what,
                         array_view *v, char *err, size_t errlen) {
    if (s->len < 8) {
        snprintf(err, errlen, "section '%s': %zu bytes, too short for an array header",
                 s->tag, s->len);
        return -1;
    }
    v->rows = le_get32(s->data);
    v->cols = le_get32(s->data + 4);
    v->data = s->data + 8;
    uint64_t elems = (uint64_t)v->rows * v->cols;
    if (elems > BUNDLE_MAX_ARRAY) {
        snprintf(err, errlen, "section '%s': %u x %u elements, more than the %llu allowed",
                 s->tag, v->rows, v->cols, (unsigned long long)BUNDLE_MAX_ARRAY);
        return -1;
    }
    if (8 + 4 * elems != s->len) {
        snprintf(err, errlen, "section '%s': %u x %u elements do not fit its %zu bytes",
                 s->tag, v->rows, v->cols, s->len);
        return -1;
    }
    if (v->cols != cols) {
        snprintf(err, errlen, "section '%s': %u columns, expected %u (%s)", s->tag, v->cols,
                 cols, cols_what);
        return -1;
    }
    return 0;
}

static float *copy_f32(const array_view *v) {
    const size_t n = (size_t)v->rows * v->cols;
    float *out = malloc(n * sizeof *out);
    for (size_t i = 0; out && i < n; i++) out[i] = le_get_f32(v->data + 4 * i);
    return out;
}

static int32_t *copy_i32(const array_view *v) {
    const size_t n = (size_t)v->rows * v->cols;
    int32_t *out = malloc(n * sizeof *out);
    for (size_t i = 0; out && i < n; i++) out[i] = (int32_t)le_get32(v->data + 4 * i);
    return out;
}

/* Counts every allocation depends on: checked on a file's section headers before the
 * loader allocates, and on a detector before it is written. */
static int check_counts(long long n_ref, long long n_cal, char *err, size_t errlen) {
    if (n_ref < 1 || n_ref > BUNDLE_MAX_REF) {
        snprintf(err, errlen, "%lld reference points, outside 1..%d", n_ref, BUNDLE_MAX_REF);
        return -1;
    }
    if (n_cal < 1 || n_cal > BUNDLE_MAX_CAL) {
        snprintf(err, errlen, "%lld calibration scores, outside 1..%d", n_cal, BUNDLE_MAX_CAL);
        return -1;
    }
    return 0;
}

/* What a usable detector is (detector_check), within the format's limits and with a
 * provenance that parses; the single definition for writer and loader. */
static int check_detector(const detector *d, char *err, size_t errlen) {
    if (check_counts(d->n_ref, d->n_cal, err, errlen) || detector_check(d, err, errlen))
        return -1;
    if (d->provenance) {
        json_t *p = parse_json((const uint8_t *)d->provenance, strlen(d->provenance),
                               "provenance", err, errlen);
        if (!p) return -1;
        json_decref(p);
    }
    return 0;
}

int bundle_encode(const detector *d, uint8_t **buf, size_t *len, char *err, size_t errlen) {
    *buf = NULL;
    *len = 0;
    if (check_detector(d, err, errlen)) return -1;
    const vae_arch *a = &d->vae.arch;
    const tsne_place_options *o = &d->place;
    json_t *j[3] = {
        json_pack("{s:s, s:[i,i,i], s:i, s:s, s:s, s:s}", "name", a->name, "input", a->in.c,
                  a->in.h, a->in.w, "latent", a->latent, "recon", recon_name(a->recon),
                  "encoder", a->enc_spec, "decoder", a->dec_spec),
        json_pack("{s:s, s:i, s:i, s:f, s:{s:f, s:i, s:f, s:f, s:f, s:f, s:f, s:b}, s:s}",
                  "mode", mode_name(d->mode), "window", d->window, "k", d->k, "alpha", d->alpha,
                  "place", "perplexity", o->perplexity, "n_iter", o->n_iter, "learning_rate",
                  o->learning_rate, "exaggeration", o->exaggeration, "momentum", o->momentum,
                  "max_grad", o->max_grad, "tol", o->tol, "exact", o->exact, "term",
                  term_name(d->term)),
        isfinite(d->latent.center) && isfinite(d->latent.scale)
            ? json_pack("{s:{s:f, s:f}, s:{s:f, s:f}, s:{s:f, s:f}, s:f, s:f, s:i}", "re",
                        "center", d->re.center, "scale", d->re.scale, "map", "center",
                        d->map.center, "scale", d->map.scale, "latent", "center",
                        d->latent.center, "scale", d->latent.scale, "quantile", d->quantile,
                        "threshold", d->threshold, "n_cal", d->n_cal)
            : json_pack("{s:{s:f, s:f}, s:{s:f, s:f}, s:f, s:f, s:i}", "re", "center",
                        d->re.center, "scale", d->re.scale, "map", "center", d->map.center,
                        "scale", d->map.scale, "quantile", d->quantile, "threshold",
                        d->threshold, "n_cal", d->n_cal),
    };
    if (d->scale.kind != SCALE_NONE && j[0] &&
        json_object_set_new(j[0], "scaling", json_string(SCALE_NAME[d->scale.kind]))) {
        json_decref(j[0]);
        j[0] = NULL;
    }
    if (d->input == LATENT_Z && j[1] && json_object_set_new(j[1], "latent_input", json_string("z"))) {
        json_decref(j[1]);
        j[1] = NULL;
    }
    if (d->use_memory && j[1] && j[2] &&
        (json_object_set_new(j[1], "memory",
                             json_pack("{s:i, s:i, s:f, s:f, s:s, s:i, s:s, s:f}",
                                       "capacity", d->memory.capacity, "k", d->memory.k,
                                       "recent_share", d->memory.recent_share, "merge_radius",
                                       d->memory.merge_radius, "fusion",
                                       SCORE_FUSION_NAME[d->fusion], "k_min",
                                       d->memory.k_min, "retain",
                                       MEMORY_RETAIN_NAME[d->memory.retain], "horizon",
                                       d->memory.horizon)) ||
         json_object_set_new(j[2], "memory", json_pack("{s:f, s:f}", "center", d->mem.center,
                                                       "scale", d->mem.scale)))) {
        json_decref(j[1]);
        j[1] = NULL;
    }
    char *text[3];
    for (int i = 0; i < 3; i++) text[i] = j[i] ? api_json_text(j[i], JSON_COMPACT) : NULL;
    const char *prov = d->provenance ? d->provenance : "{}";
    const uint32_t n_ref = (uint32_t)d->n_ref;
    const source src[N_KNOWN] = {
        [ARCH] = {TAGS[ARCH], (const uint8_t *)text[0], text[0] ? strlen(text[0]) : 0},
        [SCORING] = {TAGS[SCORING], (const uint8_t *)text[1], text[1] ? strlen(text[1]) : 0},
        [CALIBRATION] = {TAGS[CALIBRATION], (const uint8_t *)text[2],
                         text[2] ? strlen(text[2]) : 0},
        [PROVENANCE] = {TAGS[PROVENANCE], (const uint8_t *)prov, strlen(prov)},
        [WEIGHTS] = {TAGS[WEIGHTS], .f32 = d->vae.params, .rows = (uint32_t)d->vae.n_params,
                     .cols = 1},
        [REF_LATENT] = {TAGS[REF_LATENT], .f32 = d->ref_latent, .rows = n_ref,
                        .cols = (uint32_t)a->latent},
        [REF_MAP] = {TAGS[REF_MAP], .f32 = d->ref_map, .rows = n_ref, .cols = 2},
        [REF_ID] = {TAGS[REF_ID], .i32 = d->ref_id, .rows = n_ref, .cols = 1},
        [CAL_SCORES] = {TAGS[CAL_SCORES], .f32 = d->cal_scores, .rows = (uint32_t)d->n_cal,
                        .cols = 1},
        [CAL_BASE] = {TAGS[CAL_BASE], .f32 = d->cal_base, .rows = (uint32_t)d->n_cal, .cols = 1},
        [CAL_MEMORY] = {TAGS[CAL_MEMORY], .f32 = d->cal_memory, .rows = (uint32_t)d->n_cal,
                        .cols = 1},
        [SCALING] = {TAGS[SCALING], .f32 = d->scale.stats, .rows = SCALING_ROWS,
                     .cols = (uint32_t)d->scale.dim},
    };
    /* The required sections, then those this detector has, in TAGS order. */
    const int fisher = d->use_memory && d->fusion == FUSION_FISHER;
    source list[N_KNOWN];
    int n = 0;
    for (int t = 0; t < N_KNOWN; t++)
        if (t < N_REQUIRED || ((t == CAL_BASE || t == CAL_MEMORY) && fisher) ||
            (t == SCALING && d->scale.kind != SCALE_NONE))
            list[n++] = src[t];
    int rc = -1;
    if (!text[0] || !text[1] || !text[2])
        snprintf(err, errlen, "cannot encode the JSON sections (out of memory, or a name "
                 "or spec that is not UTF-8)");
    else
        rc = assemble(list, n, buf, len, err, errlen);
    for (int i = 0; i < 3; i++) {
        free(text[i]);
        json_decref(j[i]);
    }
    return rc;
}

int bundle_save(const char *path, const detector *d, char *err, size_t errlen) {
    uint8_t *buf;
    size_t len;
    char sub[512];
    if (bundle_encode(d, &buf, &len, sub, sizeof sub) != 0) {
        snprintf(err, errlen, "%s: not saved: %s", path, sub);
        return -1;
    }
    int rc = bundle_write_file(path, buf, len, err, errlen);
    free(buf);
    return rc;
}

int bundle_parse(const uint8_t *buf, size_t len, detector *d, char *err, size_t errlen) {
    bundle_section s[BUNDLE_MAX_SECTIONS];
    const bundle_section *sec[N_KNOWN];
    int n;
    memset(d, 0, sizeof *d);
    if (bundle_sections(buf, len, s, &n, err, errlen) != 0) return -1;
    for (int t = 0; t < N_KNOWN; t++) {
        sec[t] = NULL;
        for (int i = 0; i < n && !sec[t]; i++)
            if (!strcmp(s[i].tag, TAGS[t])) sec[t] = &s[i];
        if (!sec[t] && t < N_REQUIRED) {
            snprintf(err, errlen, "missing section '%s'", TAGS[t]);
            return -1;
        }
    }
    json_t *arch = NULL, *scoring = NULL, *cal = NULL;
    array_view w, rl, rm, ri, cs;
    vae_arch a;
    char sub[256];
    int rc = -1;
    /* Sizes first, all from the file's own headers: nothing is allocated beyond
     * jansson's parse of at most BUNDLE_MAX_JSON bytes until they all agree. */
    scale_kind scale;
    if (!(arch = object_section(sec[ARCH], err, errlen)) ||
        decode_arch(arch, le_get32(buf + 8), &a, &scale, err, errlen))
        goto out;
    if (vae_layout(&d->vae, &a, sub, sizeof sub) != 0) {
        snprintf(err, errlen, "section 'arch': %s", sub);
        goto out;
    }
    if (array_section(sec[WEIGHTS], 1, "one parameter per row", &w, err, errlen)) goto out;
    if (w.rows != d->vae.n_params) {
        snprintf(err, errlen, "the architecture needs %zu parameters, section 'weights' "
                 "holds %u", d->vae.n_params, w.rows);
        goto out;
    }
    if (array_section(sec[REF_LATENT], (uint32_t)a.latent, "the latent size", &rl, err, errlen) ||
        array_section(sec[REF_MAP], 2, "x and y", &rm, err, errlen) ||
        array_section(sec[REF_ID], 1, "one id per row", &ri, err, errlen) ||
        array_section(sec[CAL_SCORES], 1, "one score per row", &cs, err, errlen))
        goto out;
    if (rm.rows != rl.rows || ri.rows != rl.rows) {
        snprintf(err, errlen, "reference sections disagree: ref_latent has %u points, "
                 "ref_map %u, ref_id %u", rl.rows, rm.rows, ri.rows);
        goto out;
    }
    if (!(scoring = object_section(sec[SCORING], err, errlen)) ||
        decode_scoring(scoring, le_get32(buf + 8), d, err, errlen) ||
        !(cal = object_section(sec[CALIBRATION], err, errlen)) ||
        decode_calibration(cal, le_get32(buf + 8), d, err, errlen))
        goto out;
    if ((uint32_t)d->n_cal != cs.rows) {
        snprintf(err, errlen, "section 'calibration' says n_cal = %d, section 'cal_scores' "
                 "holds %u", d->n_cal, cs.rows);
        goto out;
    }
    if (check_counts(rl.rows, cs.rows, err, errlen)) goto out;
    /* The Fisher fusion's calibration stream: both sections, n_cal rows each. */
    array_view cb = {0}, cm = {0};
    const int fisher = d->use_memory && d->fusion == FUSION_FISHER;
    if (fisher && (!sec[CAL_BASE] || !sec[CAL_MEMORY])) {
        snprintf(err, errlen, "the fisher fusion needs sections 'cal_base' and 'cal_memory'");
        goto out;
    }
    if (fisher && (array_section(sec[CAL_BASE], 1, "one score per row", &cb, err, errlen) ||
                   array_section(sec[CAL_MEMORY], 1, "one score per row", &cm, err, errlen)))
        goto out;
    if (fisher && (cb.rows != cs.rows || cm.rows != cs.rows)) {
        snprintf(err, errlen, "sections 'cal_base' (%u) and 'cal_memory' (%u) must hold "
                 "n_cal = %u rows", cb.rows, cm.rows, cs.rows);
        goto out;
    }
    /* The input scaling: the section exactly when 'arch' names one, 4 x input size. */
    array_view sc = {0};
    const uint32_t dim = (uint32_t)shape_size(a.in);
    if ((scale != SCALE_NONE) != (sec[SCALING] != NULL)) {
        snprintf(err, errlen, scale != SCALE_NONE
                                  ? "section 'arch' names a scaling, section 'scaling' is missing"
                                  : "section 'scaling' without a scaling named in section 'arch'");
        goto out;
    }
    if (scale != SCALE_NONE &&
        array_section(sec[SCALING], dim, "one per input value", &sc, err, errlen))
        goto out;
    if (scale != SCALE_NONE && sc.rows != SCALING_ROWS) {
        snprintf(err, errlen, "section 'scaling': %u rows, expected %d (center, scale, lo, hi)",
                 sc.rows, SCALING_ROWS);
        goto out;
    }
    const bundle_section *p = sec[PROVENANCE];
    if (memchr(p->data, 0, p->len)) {       /* the text becomes a C string */
        snprintf(err, errlen, "section 'provenance': NUL byte in JSON text");
        goto out;
    }
    /* Every size agrees with the file, which is in memory: allocate and copy. */
    if (vae_create(&d->vae, &a, 0, sub, sizeof sub) != 0) {
        snprintf(err, errlen, "%s", sub);
        goto out;
    }
    for (size_t i = 0; i < d->vae.n_params; i++) d->vae.params[i] = le_get_f32(w.data + 4 * i);
    d->n_ref = (int)rl.rows;
    d->ref_latent = copy_f32(&rl);
    d->ref_map = copy_f32(&rm);
    d->ref_id = copy_i32(&ri);
    d->cal_scores = copy_f32(&cs);
    d->provenance = malloc(p->len + 1);
    if (fisher) {
        d->cal_base = copy_f32(&cb);
        d->cal_memory = copy_f32(&cm);
    }
    if (scale != SCALE_NONE) {
        d->scale = (scaling){.kind = scale, .dim = dim, .stats = copy_f32(&sc)};
        if (!d->scale.stats) d->scale.kind = SCALE_NONE;   /* reported just below */
    }
    if (!d->ref_latent || !d->ref_map || !d->ref_id || !d->cal_scores || !d->provenance ||
        (fisher && (!d->cal_base || !d->cal_memory)) || (scale != SCALE_NONE && !d->scale.stats)) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    memcpy(d->provenance, p->data, p->len);
    d->provenance[p->len] = 0;
    rc = check_detector(d, err, errlen);
out:
    json_decref(arch);
    json_decref(scoring);
    json_decref(cal);
    if (rc != 0) detector_free(d);
    return rc;
}

int bundle_load(const char *path, detector *d, char *err, size_t errlen) {
    uint8_t *buf;
    size_t len;
    char sub[512];
    memset(d, 0, sizeof *d);
    if (bundle_read_file(path, BUNDLE_MAX_FILE_BYTES, &buf, &len, err, errlen) != 0) return -1;
    int rc = bundle_parse(buf, len, d, sub, sizeof sub);
    if (rc != 0) snprintf(err, errlen, "%s: %s", path, sub);
    free(buf);
    return rc;
}

/* ------------------------------------------------------------------ files */

int bundle_read_file(const char *path, size_t max_bytes, uint8_t **buf, size_t *len,
                     char *err, size_t errlen) {
    struct stat st;
    *buf = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    if ((uint64_t)st.st_size > max_bytes) {
        snprintf(err, errlen, "%s: %lld bytes, more than the %zu allowed", path,
                 (long long)st.st_size, max_bytes);
        close(fd);
        return -1;
    }
    const size_t size = (size_t)st.st_size;
    uint8_t *b = malloc(size ? size : 1);
    if (!b) {
        snprintf(err, errlen, "%s: out of memory for %zu bytes", path, size);
        close(fd);
        return -1;
    }
    size_t got = 0;
    ssize_t r = 0;
    while (got < size && ((r = read(fd, b + got, size - got)) > 0 || (r < 0 && errno == EINTR)))
        if (r > 0) got += (size_t)r;
    int saved = errno;
    close(fd);
    if (got != size) {
        snprintf(err, errlen, "%s: read failed: %s", path,
                 r < 0 ? strerror(saved) : "the file shrank while being read");
        free(b);
        return -1;
    }
    *buf = b;
    *len = size;
    return 0;
}

int bundle_write_file(const char *path, const uint8_t *buf, size_t len, char *err,
                      size_t errlen) {
    char tmp[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp) {
        snprintf(err, errlen, "%s: cannot write: path too long", path);
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot write: %s", path, strerror(errno));
        return -1;
    }
    size_t done = 0;
    ssize_t r = 0;
    while (done < len && ((r = write(fd, buf + done, len - done)) > 0 || (r < 0 && errno == EINTR)))
        if (r > 0) done += (size_t)r;
    int saved = r < 0 ? errno : EIO;
    /* fsync before rename: a crash must leave the old file or the whole new one, which
     * the daemon may be reloading at any moment. */
    int ok = done == len;
    if (ok && fsync(fd) != 0) {
        ok = 0;
        saved = errno;
    }
    if (close(fd) != 0 && ok) {
        ok = 0;
        saved = errno;
    }
    if (ok && rename(tmp, path) != 0) {
        ok = 0;
        saved = errno;
    }
    if (!ok) {
        snprintf(err, errlen, "%s: cannot write: %s", path, strerror(saved));
        unlink(tmp);
        return -1;
    }
    return 0;
}
