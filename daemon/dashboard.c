/* The built-in dashboard's embedded files (see dashboard.h). */
#include "dashboard.h"

#include <string.h>

const dashboard_file *dashboard_find(const char *name) {
    for (const dashboard_file *f = DASHBOARD_FILES; f->name; f++)
        if (!strcmp(f->name, name)) return f;
    return NULL;
}

const char *dashboard_type(const char *name) {
    static const struct {
        const char *ext, *type;
    } TYPES[] = {
        {".html", "text/html; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".svg", "image/svg+xml"},
    };
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < sizeof TYPES / sizeof TYPES[0]; i++)
        if (!strcmp(dot, TYPES[i].ext)) return TYPES[i].type;
    return "application/octet-stream";
}
