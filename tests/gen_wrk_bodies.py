#!/usr/bin/env python3
"""Request bodies for the daemon load test (tests/bench_daemon.sh): the first Fashion-MNIST
test image as {"sample": [...]} and the first 64 as {"samples": [[...], ...]}, pixels
scaled to [0, 1] as anodm reads IDX files (v / 255). Standard library only.

usage: gen_wrk_bodies.py FASHION_MNIST_DIR OUT_DIR   -> OUT_DIR/single.json, batch64.json
"""
import gzip
import json
import os
import struct
import sys


def read_images(path, count):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        magic, n, rows, cols = struct.unpack(">IIII", f.read(16))
        if magic != 0x803:
            sys.exit(f"{path}: not an IDX image file (magic {magic:#x})")
        dim = rows * cols
        count = min(count, n)
        data = f.read(count * dim)
    px = [round(b / 255.0, 4) if b else 0 for b in range(256)]  # 0 rather than 0.0: shorter
    return [[px[b] for b in data[i * dim:(i + 1) * dim]] for i in range(count)]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    src, out = sys.argv[1], sys.argv[2]
    path = os.path.join(src, "t10k-images-idx3-ubyte.gz")
    if not os.path.exists(path):
        path = path[:-3]
    images = read_images(path, 64)
    if len(images) < 64:
        sys.exit(f"{path}: fewer than 64 images")
    os.makedirs(out, exist_ok=True)
    sep = (",", ":")
    with open(os.path.join(out, "single.json"), "w") as f:
        json.dump({"sample": images[0], "source": "bench"}, f, separators=sep)
    with open(os.path.join(out, "batch64.json"), "w") as f:
        json.dump({"samples": images, "source": "bench"}, f, separators=sep)


if __name__ == "__main__":
    main()
