#!/usr/bin/python3
"""Before tests/bench_daemon.sh times the binary tensor bodies of tests/gen_wrk_bodies.py,
check that anodmd answers them as it should: each body, sent byte for byte as
tests/wrk_score.lua sends it, is answered 200 with the scores, p-values and verdicts that
POST /v1/models/{name}/score gives for the same samples (to the 9 digits /v1 prints) and
log ids whose rows hold them. The comparison is tests/v2_conformance.py's, as is the
client (the stream memory reset before each request); its Debian packages are needed.

usage: check_wrk_bodies.py BASE_URL DIR NAME...   (DIR/NAME.bin and DIR/NAME.hlen)
Exits 0 when every check passed, 1 otherwise (each failure printed).
"""
import json
import os
import struct
import sys

import v2_conformance as v2

HEADER_LENGTH = "Inference-Header-Content-Length"


def samples_of(body, hlen):
    """The request's samples as /v1 takes them: floats equal to what anodmd reads."""
    head = json.loads(body[:hlen])
    t = head["inputs"][0]
    n, dim = t["shape"][0], t["shape"][1]
    data = body[hlen:]
    if t["datatype"] == "FP32":
        flat = struct.unpack("<%df" % (n * dim), data)
    else:
        flat = [v2.as_float32(b / 255.0) for b in data]
    return [list(flat[i * dim:(i + 1) * dim]) for i in range(n)]


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__.strip().splitlines()[-2])
    base, where = sys.argv[1], sys.argv[2]
    client = v2.Client(base)
    for name in sys.argv[3:]:
        with open(os.path.join(where, name + ".bin"), "rb") as f:
            body = f.read()
        with open(os.path.join(where, name + ".hlen")) as f:
            hlen = int(f.read())
        samples = samples_of(body, hlen)
        failed = len(v2.FAILURES)
        want = client.v1(samples)
        client.reset()
        r = client.http.post(base + "/v2/models/%s/infer" % v2.MODEL, data=body, timeout=30,
                             headers={"Content-Type": "application/octet-stream",
                                      HEADER_LENGTH: str(hlen)})
        n = int(r.headers.get(HEADER_LENGTH, len(r.content)))
        answer = json.loads(r.content[:n]) if r.content else None
        v2.same_as_v1(r, answer, r.content[n:], want, name, client)
        print("check_wrk_bodies: %s: %d samples, %d bytes: %s" %
              (name, len(samples), len(body), "FAILED" if len(v2.FAILURES) > failed else "as /v1"))
    return 1 if v2.FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
