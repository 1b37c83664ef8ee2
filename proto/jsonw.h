/* jsonw.h — JSON text written straight into a growing buffer, as jansson writes it.
 *
 * Why: the daemon's hottest answers (a score, a log record, an infer answer) built as a
 * jansson tree cost a malloc per value and a printf per real, 9-12 us of CPU per scored
 * sample; written here they cost a fraction of that. The text is byte for byte what
 * jansson 2.14 dumps for the same values with api.c's flags (JSON_COMPACT |
 * JSON_REAL_PRECISION(JSONW_REAL_DIGITS)), which tests/test_api_encode.c checks against
 * jansson itself on random values and answers:
 * - a real as "%.9g" prints it (its digits from decimal_digits where that is exact, else
 *   from snprintf), then as jansson amends it: ".0" after a number with neither '.' nor
 *   exponent (1.0, 100000000.0), and the exponent without '+' or leading zeros (1e9,
 *   1.5e-5); one that is not finite is null (JSON has no NaN; api_json_number's rule);
 * - a string with '"', '\\', \b \f \n \r \t escaped so, the other bytes below 0x20 as
 *   \u00XX (upper-case hex) and every other byte as it is (DEL, U+2028, all of UTF-8); a
 *   string that is not well-formed UTF-8 spoils the text, as json_string refuses it;
 * - an integer as "%lld"; true, false, null; ',' between members, ':' after a key, no
 *   spaces.
 * A writer starts zeroed ({0}). Once a write fails (out of memory, a string that is not
 * UTF-8), the later ones do nothing and jsonw_finish gives NULL: a text is whole or none.
 * The caller nests objects and arrays correctly; keys are written only inside objects. */
#ifndef ANODM_JSONW_H
#define ANODM_JSONW_H

#include <stddef.h>
#include <stdint.h>

/* Significant digits of a real: 9 round-trip every float and keep scores to 1e-9. */
#define JSONW_REAL_DIGITS 9

typedef struct {
    char *s;
    size_t len, cap;
    int failed;
    int comma;                   /* the next member or element follows another */
} jsonw;

/* Raw bytes, no separator: the binary data after a V2 answer's JSON header, and jansson's
 * dump callback (api_json_text): 0, or -1 once the text has failed. */
int jsonw_bytes(const char *bytes, size_t n, void *w);
void jsonw_open(jsonw *w, char bracket);        /* '{' or '[' */
void jsonw_close(jsonw *w, char bracket);       /* '}' or ']' */
void jsonw_key(jsonw *w, const char *key);
void jsonw_string(jsonw *w, const char *s);
void jsonw_key_string(jsonw *w, const char *key, const char *s);   /* a member, "key":"s" */
void jsonw_real(jsonw *w, double v);
void jsonw_int(jsonw *w, int64_t v);
void jsonw_bool(jsonw *w, int v);
void jsonw_null(jsonw *w);
/* The text, NUL-terminated (*len its length without the NUL when len is not NULL), to
 * free; NULL (and nothing to free) if a write failed. */
char *jsonw_finish(jsonw *w, size_t *len);

/* The length (1-4) of the well-formed UTF-8 sequence at p (RFC 3629: no overlong forms,
 * no surrogates, nothing past U+10FFFF), or 0 when p does not begin one (or is at NUL). */
int jsonw_utf8_length(const unsigned char *p);

#endif
