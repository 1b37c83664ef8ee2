/* clock.h — the one clock anodm times itself with: monotonic, so that a step of the wall
 * clock (NTP, an operator) moves no deadline, latency or progress figure. Seconds for
 * progress and benchmarks, nanoseconds for the daemon's deadlines. */
#ifndef ANODM_CLOCK_H
#define ANODM_CLOCK_H

/* Seconds since an arbitrary start. */
double clock_seconds(void);
/* Nanoseconds since the same start. */
long long clock_ns(void);

#endif
