#!/usr/bin/env python3
"""Generate the two data sets of README.md's "Bring your own data" walk-through, with
known anomalies (standard library only; the recipe of tests/test_byod.c, which runs the
same walk-through at a small size in `make test`).

  sensors.csv   600 rows of 12 sensor readings, no header, no labels: 3 hidden factors
                drive all 12 values (around 50, spread ~10) plus a little noise
  windows.npy   400 windows of shape (3, 32), float32: a sine and a cosine of one random
                frequency (2 to 3 cycles) and phase, and their product, around 20

test sets of 200 samples, every tenth an anomaly (label 1, else 0), for `anodm score
--anomaly-class 1`:
  sensors_test.csv                            the label in the last column
  windows_test.npy, windows_test_labels.npy   labels as int32

and, for curl, one normal and one anomalous sample of each as a request body:
  sensors_normal.json, sensors_anomaly.json   anomaly: the first 4 readings mirrored
                                              around 50 (each value plausible alone, their
                                              relation to the other 8 broken)
  windows_normal.json, windows_anomaly.json   anomaly: three times the frequency

usage: make_sensor_data.py OUTDIR
"""
import json
import math
import os
import random
import struct
import sys

W_TAB, N_TAB = 12, 600
C_WIN, W_WIN, N_WIN = 3, 32, 400


def loadings(rng):
    return [[rng.gauss(0, 1) / math.sqrt(3) for _ in range(W_TAB)] for _ in range(3)]


def tab_row(rng, a, anomalous):
    z = [rng.gauss(0, 1) for _ in range(3)]
    x = [50 + 10 * sum(a[k][j] * z[k] for k in range(3)) + 0.3 * rng.gauss(0, 1)
         for j in range(W_TAB)]
    if anomalous:
        x[:4] = [100 - v for v in x[:4]]
    return x


def window(rng, anomalous):
    f = (2 + rng.random()) * (3 if anomalous else 1)
    ph = rng.random()
    s = [math.sin(2 * math.pi * (f * t / W_WIN + ph)) for t in range(W_WIN)]
    c = [math.cos(2 * math.pi * (f * t / W_WIN + ph)) for t in range(W_WIN)]
    noise = lambda: 0.1 * rng.gauss(0, 1)
    return ([20 + 5 * v + noise() for v in s] + [20 + 5 * v + noise() for v in c] +
            [20 + 5 * u * v + noise() for u, v in zip(s, c)])


def write_npy(path, rows, shape, dtype="<f4", code="f"):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (dtype, shape)
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        for r in rows:
            f.write(struct.pack("<%d%s" % (len(r), code), *r))


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = random.Random(19)
    a = loadings(rng)
    with open(os.path.join(out, "sensors.csv"), "w") as f:
        for _ in range(N_TAB):
            f.write(",".join("%.5f" % v for v in tab_row(rng, a, False)) + "\n")
    write_npy(os.path.join(out, "windows.npy"), [window(rng, False) for _ in range(N_WIN)],
              (N_WIN, C_WIN, W_WIN))
    labels = [int(i % 10 == 0) for i in range(200)]
    with open(os.path.join(out, "sensors_test.csv"), "w") as f:
        for y in labels:
            f.write(",".join("%.5f" % v for v in tab_row(rng, a, y)) + ",%d\n" % y)
    write_npy(os.path.join(out, "windows_test.npy"), [window(rng, y) for y in labels],
              (len(labels), C_WIN, W_WIN))
    write_npy(os.path.join(out, "windows_test_labels.npy"), [labels], (len(labels),), "<i4", "i")
    for name, make in (("sensors", lambda bad: tab_row(rng, a, bad)),
                       ("windows", lambda bad: window(rng, bad))):
        for kind, bad in (("normal", False), ("anomaly", True)):
            with open(os.path.join(out, "%s_%s.json" % (name, kind)), "w") as f:
                json.dump({"sample": [round(v, 5) for v in make(bad)]}, f)


if __name__ == "__main__":
    main()
