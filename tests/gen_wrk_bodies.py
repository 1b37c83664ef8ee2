#!/usr/bin/env python3
"""Request bodies for the daemon load test (tests/bench_daemon.sh), from the first 64
Fashion-MNIST test images:

  single.json, batch64.json   POST /v1/score: image 0 as {"sample": [...]}, images 0-63 as
                              {"samples": [[...], ...]}, pixels / 255 to 4 decimals;
  single-fp32.bin, batch64-fp32.bin, single-u8.bin, batch64-u8.bin
                              POST /v2/models/{name}/infer with the binary tensor data
                              extension: a JSON header asking for binary outputs, then the
                              input tensor's raw little-endian bytes, FP32 (v / 255 as a
                              float32, what anodm reads from IDX) or UINT8 (the bytes as they
                              are, which anodmd reads as v / 255); each with NAME.hlen, the
                              header's length in bytes (Inference-Header-Content-Length).

Standard library only.

usage: gen_wrk_bodies.py FASHION_MNIST_DIR OUT_DIR
"""
import gzip
import json
import os
import struct
import sys


def read_images(path, count):
    """The first count images of an IDX file, as bytes objects of rows x cols pixels."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        magic, n, rows, cols = struct.unpack(">IIII", f.read(16))
        if magic != 0x803:
            sys.exit(f"{path}: not an IDX image file (magic {magic:#x})")
        dim = rows * cols
        count = min(count, n)
        data = f.read(count * dim)
    return [data[i * dim:(i + 1) * dim] for i in range(count)]


_PX = [round(b / 255.0, 4) if b else 0 for b in range(256)]  # 0 rather than 0.0: shorter


def json_pixels(image):
    """An image's pixels as the JSON API takes them: v/255, to 4 decimals."""
    return [_PX[b] for b in image]


def write_json(out, name, doc):
    with open(os.path.join(out, name), "w") as f:
        json.dump(doc, f, separators=(",", ":"))


def write_binary(out, name, images, datatype):
    """NAME.bin: the infer header and the images' tensor; NAME.hlen: the header's length."""
    if datatype == "FP32":
        data = b"".join(struct.pack("<%df" % len(im), *(b / 255.0 for b in im)) for im in images)
    else:
        data = b"".join(images)
    head = json.dumps({"inputs": [{"name": "input", "shape": [len(images), len(images[0])],
                                   "datatype": datatype,
                                   "parameters": {"binary_data_size": len(data)}}],
                       "parameters": {"binary_data_output": True}},
                      separators=(",", ":")).encode()
    with open(os.path.join(out, name + ".bin"), "wb") as f:
        f.write(head + data)
    with open(os.path.join(out, name + ".hlen"), "w") as f:
        f.write("%d\n" % len(head))


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
    floats = [json_pixels(im) for im in images]
    write_json(out, "single.json", {"sample": floats[0], "source": "bench"})
    write_json(out, "batch64.json", {"samples": floats, "source": "bench"})
    for datatype, suffix in (("FP32", "fp32"), ("UINT8", "u8")):
        write_binary(out, "single-" + suffix, images[:1], datatype)
        write_binary(out, "batch64-" + suffix, images, datatype)


if __name__ == "__main__":
    main()
