#!/bin/sh
# What the stream memory costs per sample (docs/STREAM.md): two detectors trained alike
# but for --memory on|off (same seed, so the same network and map), then `anodm score`
# on the 10000 Fashion-MNIST test images with each, in turns, three runs each, BLAS on
# one thread as in anodmd. Usage: sh tests/bench_memory.sh [ANODM] [OUT_DIR]
set -eu
ANODM=${1:-build/anodm}
OUT=${2:-build/bench-memory}
FMNIST=/usr/share/datasets/fashion-mnist
mkdir -p "$OUT"
for m in on off; do
  [ -f "$OUT/memory-$m.anodm" ] || "$ANODM" train --data $FMNIST --exclude-class 1 --limit 20000 \
    --epochs 2 --beta 0.01 --n-ref 10000 --memory $m --out "$OUT/memory-$m.anodm" >"$OUT/train-$m.log" 2>&1
done
echo "date: $(date -u '+%F %T UTC')"; echo "cpu: $(lscpu | sed -n 's/^Model name: *//p')"
echo "load before: $(uptime)"
for i in 1 2 3; do
  for m in on off; do
    OPENBLAS_NUM_THREADS=1 /usr/bin/time -f "memory $m: %e s wall %U s user" \
      "$ANODM" score "$OUT/memory-$m.anodm" $FMNIST --batch 64 --out /dev/null 2>&1 | grep -v "^auROC"
  done
done
echo "load after: $(uptime)"
