/* fuzz_config.c — anodmd's config file parser (daemon/config.c).
 *
 * The parser has no in-memory entry point: config_load_file takes a path and reads it
 * with fgets. So that nothing in daemon/ has to change, each input is written to an
 * anonymous memory file (memfd_create) and read through /proc/self/fd/N, exactly as a
 * file on disk would be: lines of any length (the 8 KiB line limit), NUL bytes, '#'
 * comments, missing '=', unknown keys, out-of-range or overflowing numbers, over-long
 * text values, more models than CONFIG_MAX_MODELS. The config is freed after each run,
 * so LeakSanitizer sees any model string a failure path forgets. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

static int fd = -1;
static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (fd < 0) {
        fd = memfd_create("fuzz_config", 0);
        if (fd < 0) return 0;
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size) return 0;
    config c;
    char err[8192];
    config_init(&c);
    if (config_load_file(&c, path, err, sizeof err) == 0 &&
        (c.n_models < 0 || c.n_models > CONFIG_MAX_MODELS))
        __builtin_trap();
    config_free(&c);
    return 0;
}
