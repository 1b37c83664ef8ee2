/* bundle.h — the model bundle: one file holding everything a trained detector is.
 *
 * The daemon loads a bundle at start and on SIGHUP, from a path an operator controls,
 * so the loader is the trust boundary between a file on disk and the scoring code: it
 * checks every size, count, offset, checksum and value before it allocates or trusts a
 * byte, and a truncated, damaged, hostile or newer file ends in -1 and a message naming
 * the problem, never a crash or an allocation the file's own size does not justify.
 * The format (version 1, little-endian, a section table with a CRC-32 per section and a
 * trailing SHA-256) is specified in proto/BUNDLE.md; the constants below are its limits.
 *
 * A model's version is the SHA-256 of its whole file (what sha256sum prints). A caller
 * that reports it (the daemon) reads the file once with bundle_read_file and runs
 * bundle_hash and bundle_parse on the same bytes, so the version always names the file
 * that was actually loaded. JSON (jansson) lives here, never in core/. */
#ifndef ANODM_BUNDLE_H
#define ANODM_BUNDLE_H

#include <stddef.h>
#include <stdint.h>

#include "detector.h"

#define BUNDLE_VERSION 6                          /* written; 1 to 6 are read (BUNDLE.md) */
#define BUNDLE_MAGIC "ANODMB\r\n"                  /* 8 bytes, no NUL */
#define BUNDLE_HEADER_BYTES 32
#define BUNDLE_ENTRY_BYTES 40                     /* one section table entry */
#define BUNDLE_HASH_BYTES 32                      /* the trailing SHA-256 */
#define BUNDLE_TAG_MAX 15                         /* tag characters: [a-z0-9_] */

/* Hard limits (BUNDLE.md, "Limits"); a file beyond any of them is refused. */
#define BUNDLE_MAX_SECTIONS 32
#define BUNDLE_MAX_FILE_BYTES ((uint64_t)1 << 31) /* 2 GiB */
#define BUNDLE_MAX_JSON ((size_t)1 << 20)         /* bytes per JSON section */
#define BUNDLE_MAX_ARRAY ((uint64_t)1 << 28)      /* elements per array section */
#define BUNDLE_MAX_REF DETECTOR_MAX_REF           /* reference points: 2^21 */
#define BUNDLE_MAX_CAL (1 << 24)                  /* calibration scores */
#define BUNDLE_MAX_WINDOW DETECTOR_MAX_WINDOW     /* context-mode window: 2^16 */
#define BUNDLE_MAX_PLACE_ITER TSNE_MAX_PLACE_ITER /* placement iterations: 100000 */

/* One section: its tag and bytes (inside the file's buffer when bundle_sections found
 * it). offset and crc are the table's values; bundle_assemble ignores them. */
typedef struct {
    char tag[BUNDLE_TAG_MAX + 1];
    const uint8_t *data;
    size_t len;
    uint64_t offset;
    uint32_t crc;
} bundle_section;

/* Write d to path atomically (a temporary file, fsync, rename). d must pass the
 * loader's checks: nothing is written that bundle_load would refuse. */
int bundle_save(const char *path, const detector *d, char *err, size_t errlen);
/* The file bundle_save writes, in a new buffer (free it). */
int bundle_encode(const detector *d, uint8_t **buf, size_t *len, char *err, size_t errlen);
/* Read and validate a bundle into d (detector_free it). On failure d is zeroed, so
 * detector_free(d) is always safe. */
int bundle_load(const char *path, detector *d, char *err, size_t errlen);
/* The same on bytes in memory (the fuzzing entry point). */
int bundle_parse(const uint8_t *buf, size_t len, detector *d, char *err, size_t errlen);
/* The model version: SHA-256 of the whole file, 64 lowercase hex digits. */
void bundle_hash(const uint8_t *buf, size_t len, char hex[65]);

/* The container layer alone: check header, table, section CRCs and the file hash, then
 * list the sections (at most BUNDLE_MAX_SECTIONS, pointing into buf) in table order.
 * Says nothing about what the sections hold; bundle_parse does. */
int bundle_sections(const uint8_t *buf, size_t len, bundle_section *s, int *n, char *err,
                    size_t errlen);
/* A file from raw sections, in order, with header, table, CRCs and hash computed: for
 * tools and for tests that need a well-sealed file with chosen contents. */
int bundle_assemble(const bundle_section *s, int n, uint8_t **buf, size_t *len, char *err,
                    size_t errlen);

/* Whole-file I/O shared by anodm's file formats (bundle and weights files). */
/* Read a regular file of at most max_bytes into a new buffer (free it). */
int bundle_read_file(const char *path, size_t max_bytes, uint8_t **buf, size_t *len,
                     char *err, size_t errlen);
/* Replace path with buf atomically: write path.tmp, fsync, rename over path. */
int bundle_write_file(const char *path, const uint8_t *buf, size_t len, char *err,
                      size_t errlen);

#endif
