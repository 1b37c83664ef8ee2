/* The error-message helpers (see errmsg.h). */
#include "errmsg.h"

#include <stdarg.h>
#include <stdio.h>

int err_fail(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void err_prefix(char *err, size_t errlen, const char *prefix) {
    char msg[512];
    if (!err || !errlen) return;
    snprintf(msg, sizeof msg, "%s", err);
    snprintf(err, errlen, "%s: %s", prefix, msg);
}
