#!/bin/sh
# What drawing the stream memory costs (GET /v1/models/{name}/memory/map, docs/STREAM.md
# "On the map"): the detector tests/bench_memory.sh trains as its "on" one (shared with
# it; its map holds 9000 points, half the training part), served by anodmd; for each
# memory size the memory is reset and filled with one image fewer of the Fashion-MNIST test
# set, then co-placed three times (one more image before each, so none is answered from
# the cache) and asked once more unchanged (the cached answer). Up to 1024 points the
# co-placement sums the points' repulsion exactly, beyond by Barnes-Hut (tsne_place.c), so
# 1020 and 1030 bracket that switch. Prints the daemon's own timing of each
# placement ("seconds") and each request's time at the client.
# Usage: sh tests/bench_memory_map.sh [BUILD_DIR] [OUT_DIR]
set -eu
BUILD=${1:-build}
OUT=${2:-build/bench-memory}
FMNIST=/usr/share/datasets/fashion-mnist
MODEL="$OUT/memory-on.anodm"
mkdir -p "$OUT"
[ -f "$MODEL" ] || "$BUILD/anodm" train --data $FMNIST --exclude-class 1 --limit 20000 \
  --epochs 2 --beta 0.01 --n-ref 10000 --memory on --out "$MODEL" >"$OUT/train-on.log" 2>&1
rm -f "$OUT/memory-map.db" "$OUT/memory-map.db-wal" "$OUT/memory-map.db-shm"
"$BUILD/anodmd" --model "fashion=$MODEL" --db "$OUT/memory-map.db" --port 0 \
  2>"$OUT/memory-map-anodmd.log" &
PID=$!
trap 'kill $PID 2>/dev/null' EXIT
PORT=""
for _ in $(seq 100); do
  PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$OUT/memory-map-anodmd.log")
  [ -n "$PORT" ] && break
  sleep 0.1
done
[ -n "$PORT" ] || { echo "anodmd did not start; see $OUT/memory-map-anodmd.log"; exit 1; }
echo "date: $(date -u '+%F %T UTC')"; echo "cpu: $(lscpu | sed -n 's/^Model name: *//p')"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "load before: $(uptime)"
python3 - "$PORT" "$FMNIST" <<'PY'
import gzip, json, sys, time, urllib.request
port, data = sys.argv[1], sys.argv[2]
images = gzip.open(f'{data}/t10k-images-idx3-ubyte.gz').read()[16:]
base = f'http://127.0.0.1:{port}/v1/models/fashion'
def call(path, body=None):
    req = urllib.request.Request(base + path, data=body and json.dumps(body).encode(),
                                 headers={'Content-Type': 'application/json'})
    t = time.monotonic()
    answer = json.load(urllib.request.urlopen(req))
    return answer, time.monotonic() - t
def post(lo, hi):
    for a in range(lo, hi, 50):
        call('/score', {'samples': [[v / 255 for v in images[784 * i:784 * (i + 1)]]
                                    for i in range(a, min(hi, a + 50))]})
meta, _ = call('')
print(f"map: {meta['scoring']['n_ref']} reference points, memory capacity "
      f"{meta['scoring']['memory']['capacity']}, perplexity {meta['scoring']['perplexity']}")
at = 0
for size in (250, 500, 1000, 1020, 1030, 2000):
    call('/memory/reset', {})
    post(at, at + size - 1)
    at += size - 1
    runs = []
    for _ in range(3):
        post(at, at + 1)
        at += 1
        m, t = call('/memory/map')
        assert not m['cached']
        runs.append(f"{m['count']} latents {m['seconds']:.3f} s placed, {t:.3f} s answered")
    m, t = call('/memory/map')
    print(f"memory {size}: " + "; ".join(runs) + f"; unchanged: cached {m['cached']}, {t * 1000:.1f} ms")
PY
echo "load after: $(uptime)"
