/* notify.h — telling systemd how anodmd is doing (Type=notify, WatchdogSec).
 *
 * The sd_notify protocol is one datagram of "KEY=VALUE" lines to the AF_UNIX socket named
 * by $NOTIFY_SOCKET (a leading '@' meaning the abstract namespace). It is small enough to
 * speak directly, which keeps libsystemd out of the link and the container image; outside
 * systemd (no $NOTIFY_SOCKET) every call here does nothing. */
#ifndef ANODMD_NOTIFY_H
#define ANODMD_NOTIFY_H

/* Send state ("READY=1", "STOPPING=1", "WATCHDOG=1", ...); 0, or -1 when it failed. */
int notify_send(const char *state);
/* How often to ping the watchdog, in milliseconds (half of $WATCHDOG_USEC), or 0 when
 * systemd does not watch this process. */
long notify_watchdog_ms(void);

#endif
