#!/bin/sh
# The method lab's measurements (tools/stream_lab.c), all ten Fashion-MNIST classes, the
# cached 10-epoch detectors of the stream protocol (/work/models). Usage, from the repo:
#   make build/stream_lab
#   for c in 0 1 2 3 4 5 6 7 8 9; do OPENBLAS_NUM_THREADS=1 build/stream_lab dump \
#       /work/models /usr/share/datasets/fashion-mnist $c /tmp/slab/class$c.bin; done
#   sh docs/results/stream-method-2026-12-03/lab/run.sh /tmp/slab docs/results/stream-method-2026-12-03/lab
set -e
dumps=$1
out=$2
lab() {
    name=$1
    shift
    echo "\$ stream_lab eval $* DUMPS" > "$out/$name.txt"
    nice -n 10 build/stream_lab eval "$@" "$dumps"/class?.bin >> "$out/$name.txt"
}
# format 4's memory (k 5, retention by evidence, no decay): today's default, reproduced
lab format4
lab format4-v -v
lab format4-warm --warm
lab format4-steady --skip 2000
# one setting changed at a time from format 4's
lab z-space --space z
lab retain-none --susp none
lab recent-only --recent 1
lab capacity-5000 --cap 5000
lab capacity-10000 --cap 10000
lab retain-fused --susp fused
# retention by company (the term averaged over ranks 3..10), without and with decay
lab company --susp memavg
lab company-warm --susp memavg --warm
lab company-tau5000 --susp memavg --tau 5000
lab company-tau5000-warm --susp memavg --tau 5000 --warm
lab company-tau20000 --susp memavg --tau 20000
lab company-tau20000-warm --susp memavg --tau 20000 --warm
# the new default: company, horizon 10000, ranks 3..10
lab default --susp memavg --tau 10000
lab default-v --susp memavg --tau 10000 -v
lab default-warm --susp memavg --tau 10000 --warm
lab default-steady --susp memavg --tau 10000 --skip 2000
lab default-wm2 --susp memavg --tau 10000 --wm 2
lab default-ranks5-20 --susp memavg --tau 10000 --k1 5 --k2 20
lab default-ranks2-8 --susp memavg --tau 10000 --k1 2 --k2 8
# the reference's rank scaled while the memory fills (rejected: see docs/RESULTS.md)
lab fill --susp memavg --tau 10000 --rank 1
lab fill-mass --susp memavg --tau 10000 --rank 2
lab fill-max2 --susp memavg --tau 10000 --rank 1 --maxscale 2
# single-sample scores without a memory
echo "\$ stream_lab base DUMPS" > "$out/base.txt"
nice -n 10 build/stream_lab base "$dumps"/class?.bin >> "$out/base.txt"
