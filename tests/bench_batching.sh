#!/bin/sh
# The scorer runs the network per sample (docs/BATCHING.md); this measures what that costs
# against 64-row network passes: `anodm score` on the 10000 Fashion-MNIST test images, an old
# binary (commit b989a49 ran 64-row chunks) and a new one in turns, 3 runs each, BLAS on one
# thread as in anodmd.  Usage: sh tests/bench_batching.sh MODEL OLD_ANODM NEW_ANODM
M=$1; OLD=$2; NEW=$3
echo "date: $(date -u '+%F %T UTC')"; echo "cpu: $(lscpu | sed -n 's/^Model name: *//p')"
echo "load before: $(uptime)"
for i in 1 2 3; do
  for b in "$OLD" "$NEW"; do
    OPENBLAS_NUM_THREADS=1 /usr/bin/time -f "$b: %e s wall %U s user" $b score $M /usr/share/datasets/fashion-mnist --batch 64 --out /dev/null 2>&1 | grep -v "^scored\|^auROC"
  done
done
echo "load after: $(uptime)"
