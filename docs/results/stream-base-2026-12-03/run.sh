#!/bin/sh
# The base score variants' measurements (tests/lab/stream_lab.c), all ten Fashion-MNIST
# classes, the cached 10-epoch detectors of the stream protocol (/work/models). Usage,
# from the repo:
#   make build/stream_lab
#   for c in 0 1 2 3 4 5 6 7 8 9; do OPENBLAS_NUM_THREADS=1 build/stream_lab dump \
#       /work/models /usr/share/datasets/fashion-mnist $c /tmp/slab/class$c.bin; done
# (a dump written before the refs section existed gets it with `stream_lab refs
#  /work/models /usr/share/datasets/fashion-mnist $c /tmp/slab/class$c.bin`)
#   sh docs/results/stream-base-2026-12-03/run.sh /tmp/slab docs/results/stream-base-2026-12-03
set -e
dumps=$1
out=$2
lab() {
    name=$1
    shift
    echo "\$ stream_lab eval $* DUMPS" > "$out/$name.txt"
    OPENBLAS_NUM_THREADS=1 nice -n 10 build/stream_lab eval "$@" "$dumps"/class?.bin >> "$out/$name.txt"
}
# single-sample scores (no memory): auROC and TPR at 1% FPR on each whole test set
echo "\$ stream_lab base DUMPS" > "$out/base.txt"
OPENBLAS_NUM_THREADS=1 nice -n 10 build/stream_lab base "$dumps"/class?.bin >> "$out/base.txt"
# the product's memory (k 10, k_min 3, retention by company, horizon 10000) with each base
P="--susp memavg --tau 10000 --k 10 --k1 3"
lab product $P
lab lof10 $P --base lof10
lab lof20 $P --base lof20
lab lof50 $P --base lof50
lab lof10-added $P --base lof10+
lab lof20-added $P --base lof20+
lab maha-added $P --base maha+
lab lre20 $P --base lre20
# per class: the product's base and the best variant
lab product-v $P -v
lab lof20-added-v $P --base lof20+ -v
