/* clock.h — the clocks anodm times itself with: monotonic, so that a step of the wall
 * clock (NTP, an operator) moves no deadline, latency or progress figure (seconds for
 * progress and benchmarks, nanoseconds for the daemon's deadlines), and the calling
 * thread's CPU time, for costs that must not count the time other processes took the
 * core (the per-stage profile of scoring on a shared machine). */
#ifndef ANODM_CLOCK_H
#define ANODM_CLOCK_H

/* Seconds since an arbitrary start. */
double clock_seconds(void);
/* Nanoseconds since the same start. */
long long clock_ns(void);
/* CPU time the calling thread has used, in nanoseconds. */
long long clock_thread_cpu_ns(void);

#endif
