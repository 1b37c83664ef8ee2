#!/bin/sh
# The base p-value's tail measured with the method lab (tests/lab/stream_lab.c), all ten
# Fashion-MNIST classes, the cached 10-epoch detectors of the stream protocol (/work/models),
# the default memory (ranks 3..10, retention by company, horizon 10000). Usage, from the repo:
#   make build/stream_lab
#   for c in 0 1 2 3 4 5 6 7 8 9; do OPENBLAS_NUM_THREADS=1 build/stream_lab dump \
#       /work/models /usr/share/datasets/fashion-mnist $c DUMPS/class$c.bin; done
#   sh docs/results/stream-tail-2026-12-03/lab/run.sh DUMPS docs/results/stream-tail-2026-12-03/lab
set -e
dumps=$1
out=$2
lab() {
    name=$1
    shift
    echo "\$ stream_lab eval $* DUMPS" > "$out/$name.txt"
    nice -n 10 build/stream_lab eval "$@" "$dumps"/class?.bin >> "$out/$name.txt"
}
# without the tail (the empirical p-value, floor 1 / (n + 1)): stream-method-2026-12-03's default
lab tail0 --susp memavg --tau 10000 --tail 0
lab tail0-v --susp memavg --tau 10000 --tail 0 -v
# the tail over the top ceil(sqrt(n)) = 142 of the 20000 calibration base scores (the product's)
lab tail --susp memavg --tau 10000
lab tail-v --susp memavg --tau 10000 -v
# other tail sizes, and the tail on every term's p-value (the memory term's too)
lab tail-30 --susp memavg --tau 10000 --tail 30
lab tail-1000 --susp memavg --tau 10000 --tail 1000
lab tail-all --susp memavg --tau 10000 --tail-all
# short streams: the metrics on each test stream's first 300 samples only
lab head300-tail0 --susp memavg --tau 10000 --tail 0 --head 300
lab head300-tail --susp memavg --tau 10000 --head 300
# the 1% target (issue 15): a larger suspicious half (recent share 0.25, 0.1) with the default
lab recent25 --susp memavg --tau 10000 --recent 0.25
lab recent10 --susp memavg --tau 10000 --recent 0.1
