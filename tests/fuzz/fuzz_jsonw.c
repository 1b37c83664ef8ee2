/* fuzz_jsonw.c — proto/jsonw.c, the writer of the daemon's hottest answers, against
 * jansson: whatever reals and strings the fuzzer makes, an array of them must be written
 * byte for byte as jansson dumps it with the daemon's flags (a real that is not finite as
 * null, as api_json_number gives it; a string that is not UTF-8 spoils both texts).
 *
 * Input layout: byte 0 even: the rest is reals, 8 bytes each (a double's bits,
 * little-endian; a short tail ignored); odd: the rest is strings, separated by NUL bytes. */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jsonw.h"
#include "le.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int strings = data[0] & 1;
    data++;
    size--;
    char *text = malloc(size + 1);
    json_t *a = json_array();
    if (!text || !a) {
        free(text);
        json_decref(a);
        return 0;
    }
    memcpy(text, data, size);
    text[size] = 0;
    jsonw w = {0};
    int refused = 0;
    jsonw_open(&w, '[');
    if (strings) {
        for (size_t at = 0; at <= size; at += strlen(text + at) + 1) {
            json_t *s = json_string(text + at);
            refused |= !s;
            json_array_append_new(a, s);
            jsonw_string(&w, text + at);
        }
    } else {
        for (size_t at = 0; at + 8 <= size; at += 8) {
            double v = le_get_f64(data + at);
            json_array_append_new(a, isfinite(v) ? json_real(v) : json_null());
            jsonw_real(&w, v);
        }
    }
    jsonw_close(&w, ']');
    char *got = jsonw_finish(&w, NULL);
    char *want = refused ? NULL : json_dumps(a, JSON_COMPACT | JSON_REAL_PRECISION(JSONW_REAL_DIGITS));
    if (!got != !want || (got && strcmp(got, want))) abort();
    free(got);
    free(want);
    json_decref(a);
    free(text);
    return 0;
}
