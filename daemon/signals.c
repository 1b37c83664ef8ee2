/* anodmd's signals, passed to the main thread through a pipe (see signals.h). */
#include "signals.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static int pipe_fd[2] = {-1, -1};

/* Async-signal-safe: one write of one byte; a full pipe already holds a wake-up. */
static void on_signal(int sig) {
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    if (write(pipe_fd[1], &b, 1) < 0) {}
    errno = saved;
}

int signals_init(void) {
    if (pipe(pipe_fd) != 0) return -1;
    for (int i = 0; i < 2; i++)
        if (fcntl(pipe_fd[i], F_SETFD, FD_CLOEXEC) != 0) return -1;
    if (fcntl(pipe_fd[1], F_SETFL, O_NONBLOCK) != 0) return -1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    static const int caught[] = {SIGTERM, SIGINT, SIGHUP};
    for (int i = 0; i < 3; i++)
        if (sigaction(caught[i], &sa, NULL) != 0) return -1;
    /* SIGXFSZ too: past a file size limit (RLIMIT_FSIZE) a write then fails with EFBIG,
     * which the log reports like a full disk, instead of the signal killing the daemon. */
    sa.sa_handler = SIG_IGN;
    return sigaction(SIGPIPE, &sa, NULL) || sigaction(SIGXFSZ, &sa, NULL) ? -1 : 0;
}

int signals_wait(int timeout_ms) {
    struct pollfd p = {.fd = pipe_fd[0], .events = POLLIN};
    int ready;
    while ((ready = poll(&p, 1, timeout_ms)) < 0)
        if (errno != EINTR) return SIGTERM;             /* cannot wait: stop */
    if (ready == 0) return 0;
    unsigned char b;
    ssize_t n;
    while ((n = read(pipe_fd[0], &b, 1)) != 1)
        if (n == 0 || errno != EINTR) return SIGTERM;   /* the pipe broke: stop */
    return b;
}
