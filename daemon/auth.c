/* API keys (see auth.h). */
#include "auth.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* RFC 6750's b64token: the characters a Bearer token may hold, '=' only at the end. */
static int valid_token(const char *s, size_t n) {
    size_t i = 0;
    while (i < n && (isalnum((unsigned char)s[i]) || strchr("-._~+/", s[i]))) i++;
    while (i < n && s[i] == '=') i++;
    return n > 0 && i == n;
}

/* Append the key s[0..n) (white space around it trimmed). 0, or -1 with err naming
 * where the key was given, never the key itself. */
static int add_key(auth_keys *k, const char *s, size_t n, const char *where, char *err,
                   size_t errlen) {
    while (n && isspace((unsigned char)*s)) s++, n--;
    while (n && isspace((unsigned char)s[n - 1])) n--;
    if (n < AUTH_KEY_MIN || n > AUTH_KEY_MAX || !valid_token(s, n)) {
        snprintf(err, errlen, "%s is not %d..%d characters of [A-Za-z0-9-._~+/]", where,
                 AUTH_KEY_MIN, AUTH_KEY_MAX);
        return -1;
    }
    uint8_t (*d)[SHA256_DIGEST] = realloc(k->digest, (size_t)(k->n + 1) * sizeof *d);
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    k->digest = d;
    sha256(s, n, k->digest[k->n++]);
    return 0;
}

/* The keys of the api_keys setting. */
static int load_list(auth_keys *k, const char *list, char *err, size_t errlen) {
    char where[64];
    for (const char *s = list, *comma;; s = comma + 1) {
        comma = strchr(s, ',');
        size_t n = comma ? (size_t)(comma - s) : strlen(s);
        snprintf(where, sizeof where, "api_keys: key %d", k->n + 1);
        if (add_key(k, s, n, where, err, errlen)) return -1;
        if (!comma) return 0;
    }
}

/* The keys of api_keys_file: one per line; blank lines and # comments skipped. */
static int load_file(auth_keys *k, const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "api_keys_file %s: %s", path, strerror(errno));
        return -1;
    }
    char line[AUTH_KEY_MAX + 64], where[4200];
    int rc = 0;
    for (int n = 1; rc == 0 && fgets(line, sizeof line, f); n++) {
        snprintf(where, sizeof where, "%s:%d: the key", path, n);
        size_t len = strcspn(line, "#\n");
        if (!strchr(line, '\n') && !feof(f)) {
            snprintf(err, errlen, "%s:%d: line too long", path, n);
            rc = -1;
        } else if (strspn(line, " \t\r") < len) {
            rc = add_key(k, line, len, where, err, errlen);
        }
    }
    fclose(f);
    return rc;
}

int auth_load(auth_keys *k, const char *list, const char *path, char *err, size_t errlen) {
    k->digest = NULL;
    k->n = 0;
    if ((list && *list && load_list(k, list, err, errlen)) ||
        (path && *path && load_file(k, path, err, errlen))) {
        auth_free(k);
        return -1;
    }
    return 0;
}

void auth_free(auth_keys *k) {
    free(k->digest);
    k->digest = NULL;
    k->n = 0;
}

int auth_allows(const auth_keys *k, const char *authorization) {
    if (!k || k->n == 0) return 1;
    if (!authorization || strncasecmp(authorization, "Bearer ", 7)) return 0;
    const char *token = authorization + 7;
    while (*token == ' ') token++;
    uint8_t d[SHA256_DIGEST];
    sha256(token, strlen(token), d);
    /* Every digest compared in full: the time taken does not depend on which matched. */
    unsigned match = 0;
    for (int i = 0; i < k->n; i++) {
        unsigned diff = 0;
        for (int j = 0; j < SHA256_DIGEST; j++) diff |= (unsigned)(d[j] ^ k->digest[i][j]);
        match |= diff == 0;
    }
    return (int)match;
}
