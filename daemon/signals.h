/* signals.h — anodmd's signals, handled as ordinary code on the main thread.
 *
 * Blocking the signals and sigwait-ing for them is not enough here: OpenBLAS starts its
 * threads when the library loads, before main, with every signal unblocked, and a
 * SIGTERM delivered to one of them would kill the process without a drain. So the
 * handlers (which may run on any thread) only write the signal's number to a pipe, and
 * the main thread reads it and does the work. SIGPIPE is ignored: a client hanging up
 * must not kill the daemon; so is SIGXFSZ: a file size limit must not either. */
#ifndef ANODMD_SIGNALS_H
#define ANODMD_SIGNALS_H

/* Catch SIGTERM, SIGINT and SIGHUP; ignore SIGPIPE and SIGXFSZ. 0, or -1 with errno. */
int signals_init(void);
/* Wait up to timeout_ms (-1: for ever) for one of the caught signals; its number, or 0
 * when the time ran out. */
int signals_wait(int timeout_ms);

#endif
