/* dashboard.h — the built-in dashboard's files, embedded in anodmd at build time.
 *
 * The page (daemon/dashboard/: HTML, CSS and JavaScript, no framework, nothing fetched
 * from elsewhere) polls the daemon's own JSON API, so it needs no server-side state:
 * anodmd only hands out these files. The Makefile turns the files of daemon/dashboard/
 * into C arrays (daemon/dashboard/embed.c writes DASHBOARD_FILES), so the binary needs
 * nothing installed beside it. */
#ifndef ANODMD_DASHBOARD_H
#define ANODMD_DASHBOARD_H

#include <stddef.h>

typedef struct {
    const char *name;            /* base name, e.g. "app.js"; NULL ends DASHBOARD_FILES */
    const unsigned char *data;   /* len bytes, then a NUL (text files only) */
    size_t len;
} dashboard_file;

/* Every embedded file, ended by an entry whose name is NULL (generated). */
extern const dashboard_file DASHBOARD_FILES[];

/* The file called name ("index.html", "app.js"), or NULL. */
const dashboard_file *dashboard_find(const char *name);
/* The Content-Type to serve a file under, from its extension. */
const char *dashboard_type(const char *name);

/* What the page may load and run: only itself (no inline script, no other origin), and
 * no framing by other sites. */
#define DASHBOARD_CSP                                                                       \
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "     \
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

#endif
