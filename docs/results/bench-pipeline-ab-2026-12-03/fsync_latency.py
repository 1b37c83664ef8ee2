"""How long an fsync of a 4 KB append takes on this machine's disk (where the score log
lives): python3 docs/results/bench-pipeline-ab-2026-12-03/fsync_latency.py [DIR]"""
import os
import sys
import tempfile
import time

fd, path = tempfile.mkstemp(dir=sys.argv[1] if len(sys.argv) > 1 else ".")
lat = []
for _ in range(300):
    os.write(fd, b"x" * 4096)
    t = time.perf_counter()
    os.fsync(fd)
    lat.append((time.perf_counter() - t) * 1000)
os.close(fd)
os.unlink(path)
lat.sort()
print("300 fsyncs, ms: p50 %.3f p90 %.3f p99 %.3f max %.3f" % (lat[150], lat[270], lat[297], lat[-1]))
