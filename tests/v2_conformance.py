#!/usr/bin/python3
"""The Open Inference Protocol (V2) as a client sees it, against a running anodmd.

    python3 tests/v2_conformance.py --anodmd build/anodmd --model M.anodm \
        --data /usr/share/datasets/fashion-mnist [--out DIR]

Starts anodmd on a free loopback port with the bundle as "fashion" (a Fashion-MNIST
model), sends test images as a V2 client would (JSON data flat and nested, FP32 and
UINT8 bytes after a JSON header as tritonclient sends them, outputs as JSON and as
binary data, by name and by version), and checks that

  - every answer is the /v1/score answer for the same samples: scores and p-values equal
    to the digits /v1 prints (9 significant), the same verdicts, and log ids whose rows
    hold those scores;
  - every V2 response body, errors included, validates against the specification's
    schemas (tests/v2_schemas.yaml), binary outputs against the extension's form, and
    every request sent against the request schema;
  - the binary extension's framing holds: Inference-Header-Content-Length and
    Content-Length, outputs in the order asked, and refusals of bodies whose lengths
    disagree.

The model has a stream memory, so a score depends on the traffic before it: the memory
is reset before each request, and every request holds the same samples in the same order.
Debian's python3 with python3-requests, python3-jsonschema and python3-yaml only. Exits 0
when every check passed, 1 otherwise (each failure printed)."""

import argparse
import gzip
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import time

import jsonschema
import requests
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = "fashion"
N, DIM = 8, 784                    # samples per request, values per sample
FAILURES = []


def check(ok, what):
    if not ok:
        FAILURES.append(what)
        print("FAIL", what, flush=True)
    return ok


# ---------------------------------------------------------------------------- schemas

SCHEMAS = yaml.safe_load(open(os.path.join(HERE, "v2_schemas.yaml")))


def valid(doc, name, what):
    """doc validates against the specification's schema name."""
    schema = {"$ref": "#/definitions/" + name, "definitions": SCHEMAS["definitions"]}
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(doc))
    return check(not errors, "%s: not a valid %s: %s" % (what, name,
                                                        "; ".join(e.message for e in errors[:3])))


# ---------------------------------------------------------------------------- data

def test_images(data_dir, n):
    """The first n Fashion-MNIST test images, 784 bytes each."""
    with gzip.open(os.path.join(data_dir, "t10k-images-idx3-ubyte.gz")) as f:
        magic, count, rows, cols = struct.unpack(">IIII", f.read(16))
        assert magic == 2051 and rows * cols == DIM and count >= n
        return [f.read(DIM) for _ in range(n)]


def as_float32(v):
    return struct.unpack("<f", struct.pack("<f", v))[0]


def printed(v):
    """v as anodmd prints reals: 9 significant digits."""
    return float("%.9g" % v)


# ---------------------------------------------------------------------------- the daemon

def start(anodmd, model, out):
    log = open(os.path.join(out, "anodmd.log"), "w+")
    proc = subprocess.Popen([anodmd, "--port", "0", "--model", "%s=%s" % (MODEL, model),
                             "--db", os.path.join(out, "scores.db")],
                            stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.time() + 20
    while time.time() < deadline and proc.poll() is None:
        log.seek(0)
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", log.read())
        if m:
            return proc, "http://127.0.0.1:%s" % m.group(1)
        time.sleep(0.05)
    proc.kill()
    sys.exit("anodmd did not start; see %s" % log.name)


class Client:
    """A V2 client: JSON requests, and binary ones framed as tritonclient frames them."""

    def __init__(self, base):
        self.base = base
        self.http = requests.Session()

    def get(self, path):
        return self.http.get(self.base + path, timeout=30)

    def reset(self):
        r = self.http.post(self.base + "/v1/models/%s/memory/reset" % MODEL, timeout=30)
        check(r.status_code in (200, 409), "memory reset: %d" % r.status_code)

    def v1(self, floats):
        self.reset()
        r = self.http.post(self.base + "/v1/models/%s/score" % MODEL, json={"samples": floats},
                           timeout=30)
        check(r.status_code == 200, "/v1 score: %d %s" % (r.status_code, r.text[:200]))
        return r.json()["results"]

    def infer(self, request, binary=b"", path=None, header_length=None, content_type=None):
        """POST request (a dict, checked against the request schema) with binary after it;
        header_length overrides the JSON's own length (None: the JSON's, when there is
        binary data). The response, its JSON and its binary part."""
        valid(request, "inference_request", "the request sent")
        head = json.dumps(request).encode()
        headers = {}
        if binary or header_length is not None:
            headers["Inference-Header-Content-Length"] = str(
                len(head) if header_length is None else header_length)
        if content_type:
            headers["Content-Type"] = content_type
        elif not binary:
            headers["Content-Type"] = "application/json"
        self.reset()
        r = self.http.post(self.base + (path or "/v2/models/%s/infer" % MODEL),
                           data=head + binary, headers=headers, timeout=30)
        n = r.headers.get("Inference-Header-Content-Length")
        json_len = int(n) if n is not None else len(r.content)
        check(json_len <= len(r.content), "header length past the answer")
        body = json.loads(r.content[:json_len]) if r.content else None
        return r, body, r.content[json_len:]


# ---------------------------------------------------------------------------- answers

WIDTH = {"FP64": ("<d", 8), "BOOL": ("<?", 1), "INT64": ("<q", 8)}


def outputs_of(body, binary, what):
    """{name: values} of an inference response, from JSON data or the binary data (in the
    outputs' order), checking every binary_data_size against its shape and datatype."""
    values, at = {}, 0
    for o in body["outputs"]:
        size = o.get("parameters", {}).get("binary_data_size")
        if size is None:
            values[o["name"]] = o["data"]
            continue
        fmt, width = WIDTH[o["datatype"]]
        count = o["shape"][0]
        check(size == count * width, "%s: %s: binary_data_size %d for shape %s" %
              (what, o["name"], size, o["shape"]))
        values[o["name"]] = [struct.unpack_from(fmt, binary, at + i * width)[0]
                             for i in range(count)]
        at += size
    check(at == len(binary), "%s: %d binary bytes, the outputs take %d" % (what, len(binary), at))
    return values


def same_as_v1(r, body, binary, want, what, client, outputs=("score", "is_anomaly",
                                                             "p_value", "log_id")):
    """A 200 inference response valid by the schema, holding outputs in that order with
    /v1's numbers; each log id's row holds its score."""
    if not check(r.status_code == 200, "%s: %d %s" % (what, r.status_code, r.text[:300])):
        return
    valid(body, "inference_response", what)
    check(body["model_name"] == MODEL and len(body["model_version"]) == 64,
          "%s: model %s %s" % (what, body["model_name"], body.get("model_version")))
    check([o["name"] for o in body["outputs"]] == list(outputs),
          "%s: outputs %s, asked for %s" % (what, [o["name"] for o in body["outputs"]], outputs))
    got = outputs_of(body, binary, what)
    for i, w in enumerate(want):
        if "score" in got:
            check(printed(got["score"][i]) == w["score"],
                  "%s: sample %d scores %r, /v1 %r" % (what, i, got["score"][i], w["score"]))
        if "p_value" in got:
            check(printed(got["p_value"][i]) == w["p_value"],
                  "%s: sample %d p %r, /v1 %r" % (what, i, got["p_value"][i], w["p_value"]))
        if "is_anomaly" in got:
            check(bool(got["is_anomaly"][i]) == w["is_anomaly"],
                  "%s: sample %d verdict differs" % (what, i))
    for i, log_id in enumerate(got.get("log_id", [])[:2]):
        row = client.get("/v1/scores/%d" % log_id).json()
        check(row.get("score") == want[i]["score"],
              "%s: log row %d holds %r" % (what, log_id, row.get("score")))


def refused(r, body, status, what, schema="inference_error_response"):
    check(r.status_code == status, "%s: %d, want %d" % (what, r.status_code, status))
    valid(body, schema, what)


# ---------------------------------------------------------------------------- the tests

def run(client, images):
    pixels = [[as_float32(p / 255.0) for p in img] for img in images]
    batches = [(pixels[k:k + N], images[k:k + N]) for k in range(0, len(images), N)]

    # Server, health and model metadata, by name and by version.
    r = client.get("/v2")
    valid(r.json(), "metadata_server_response", "GET /v2")
    check("binary_tensor_data" in r.json()["extensions"], "GET /v2 does not list the extension")
    valid(client.get("/v2/health/live").json(), "live_server_response", "live")
    valid(client.get("/v2/health/ready").json(), "ready_server_response", "ready")
    meta = client.get("/v2/models/%s" % MODEL).json()
    valid(meta, "metadata_model_response", "model metadata")
    version = meta["versions"][0]
    check(meta["inputs"][0]["shape"] == [-1, DIM], "input shape %s" % meta["inputs"][0])
    versioned = "/v2/models/%s/versions/%s" % (MODEL, version)
    check(client.get(versioned).json() == meta, "versioned metadata differs")
    for path in ("/v2/models/%s/ready" % MODEL, versioned + "/ready"):
        r = client.get(path)
        valid(r.json(), "ready_model_response", path)
        check(r.status_code == 200 and r.json()["ready"], "%s: not ready" % path)
    for path in ("/v2/models/nope", "/v2/models/%s/versions/0" % MODEL):
        r = client.get(path)
        refused(r, r.json(), 404, "GET " + path, "metadata_model_error_response")

    for b, (floats, raw) in enumerate(batches):
        want = client.v1(floats)
        n = len(floats)
        fp32 = {"name": "input", "shape": [n, DIM], "datatype": "FP32"}
        flat = [v for s in floats for v in s]
        what = "batch %d" % b

        r, body, binary = client.infer({"inputs": [dict(fp32, data=flat)]})
        same_as_v1(r, body, binary, want, what + ", JSON flat", client)
        r, body, binary = client.infer({"id": "b%d" % b, "inputs": [
            dict(fp32, shape=[n, 1, 28, 28], data=[[s[28 * y:28 * y + 28] for y in range(28)]
                                                   for s in floats])],
            "outputs": [{"name": "p_value"}, {"name": "score"}]})
        same_as_v1(r, body, binary, want, what + ", JSON nested", client, ("p_value", "score"))
        check(body and body.get("id") == "b%d" % b, what + ": id not echoed")

        # As tritonclient sends them: binary input, binary_data_output when no outputs named.
        data = struct.pack("<%df" % (n * DIM), *flat)
        binary_in = dict(fp32, parameters={"binary_data_size": len(data)})
        r, body, binary = client.infer({"inputs": [binary_in],
                                        "parameters": {"binary_data_output": True}}, data,
                                       content_type="application/octet-stream")
        same_as_v1(r, body, binary, want, what + ", binary in and out", client)
        check(r.headers.get("Content-Type") == "application/octet-stream" and
              int(r.headers["Content-Length"]) == len(r.content), what + ": framing headers")
        r, body, binary = client.infer({"inputs": [binary_in], "outputs": [
            {"name": "log_id", "parameters": {"binary_data": True}}, {"name": "is_anomaly"},
            {"name": "score", "parameters": {"binary_data": True}}]}, data,
            path=versioned + "/infer")
        same_as_v1(r, body, binary, want, what + ", versioned, mixed outputs", client,
                   ("log_id", "is_anomaly", "score"))
        u8 = b"".join(raw)
        r, body, binary = client.infer({"inputs": [{"name": "input", "shape": [n, DIM],
                                                    "datatype": "UINT8",
                                                    "parameters": {"binary_data_size": len(u8)}}]},
                                       u8, content_type="application/octet-stream")
        same_as_v1(r, body, binary, want, what + ", UINT8 bytes", client)

    # Refusals, each in the protocol's error shape.
    data = struct.pack("<%df" % DIM, *pixels[0])
    one = {"inputs": [{"name": "input", "shape": [1, DIM], "datatype": "FP32",
                       "parameters": {"binary_data_size": len(data)}}]}
    head = len(json.dumps(one))
    cases = [
        ("truncated binary data", one, data[:-1], None, 400),
        ("a byte left over", one, data + b"\0", None, 400),
        ("header length past the body", one, data, head + len(data) + 1, 400),
        ("header length inside the JSON", one, data, head - 1, 400),
        ("binary_data_size off the shape", {"inputs": [dict(one["inputs"][0], parameters={
            "binary_data_size": len(data) - 4})]}, data[:-4], None, 400),
        ("NaN in FP32 bytes", one, struct.pack("<f", float("nan")) + data[4:], None, 400),
        ("an unknown output", dict(one, outputs=[{"name": "label"}]), data, None, 400),
    ]
    for name, request, binary, length, status in cases:
        r, body, _ = client.infer(request, binary, header_length=length)
        refused(r, body, status, name)
    for path in ("/v2/models/nope/infer", "/v2/models/%s/versions/%s/infer" % (MODEL, "0" * 64)):
        r, body, _ = client.infer(one, data, path=path)
        refused(r, body, 404, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--anodmd", default="build/anodmd")
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--out", default=None, help="where the daemon's log and score log go")
    ap.add_argument("--samples", type=int, default=24)
    opt = ap.parse_args()
    out = opt.out or tempfile.mkdtemp(prefix="v2-conformance-")
    os.makedirs(out, exist_ok=True)
    db = os.path.join(out, "scores.db")
    for f in (db, db + "-wal", db + "-shm"):
        if os.path.exists(f):
            os.remove(f)
    t0 = time.time()
    proc, base = start(opt.anodmd, opt.model, out)
    try:
        run(Client(base), test_images(opt.data, opt.samples))
    finally:
        proc.terminate()
        check(proc.wait(timeout=30) == 0, "anodmd did not stop cleanly")
    print("v2-conformance: %d samples, %d failed checks, %.1f s" %
          (opt.samples, len(FAILURES), time.time() - t0))
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
