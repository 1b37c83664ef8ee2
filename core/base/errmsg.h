/* errmsg.h — the error-message convention of core's parsers and readers.
 *
 * Functions that can fail take `char *err, size_t errlen` and fill it with a message a
 * person can act on; these two helpers keep each error path one statement. */
#ifndef ANODM_ERRMSG_H
#define ANODM_ERRMSG_H

#include <stddef.h>

/* Format the message into err (when err and errlen are non-zero); returns -1. */
int err_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Put "prefix: " in front of the message already in err. */
void err_prefix(char *err, size_t errlen, const char *prefix);

#endif
