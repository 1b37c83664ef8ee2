#!/bin/sh
# One training epoch of a beta-VAE preset, C (`anodm bench-vae`) against PyTorch
# (tests/bench_vae.py) on the CPU, same architecture, same cores, measured in the same
# run: RUNS (3) rounds of C then PyTorch, alternating, so that load from other work falls
# on both; the median and the spread (min-max) of each side, and the load average before
# each run. Steps 1 and 1b of `make bench` (tests/bench.sh), or alone:
#   ANODM_BIN=build/anodm PYTHON=/usr/bin/python3 THREADS=2 sh tests/bench_vae.sh ARCH
#   fashion  Fashion-MNIST, trouser held out: 54000 images, batch 100
#   ecg-tcn  the first ECG_LIMIT (20000) MIT-BIH beats, batch 100, extracted here with
#            `anodm ecg-extract` from the records in ECG_DATA (as the Makefile's ECG_DATA:
#            ../shared/data/ecg/mitdb, else /work/shared/data/ecg/mitdb) into a temporary
#            directory; skipped, with a message, when there are no records there.
# Each side prints the BLAS, kernel family and threads it used. Both flush subnormal floats
# to zero (anodm's training threads; torch.set_flush_denormal on the other side). PyTorch
# runs on Debian's OpenBLAS with the kernels anodm selects (OPENBLAS_CORETYPE, see
# core/base/blas.h; on a CPU OpenBLAS recognises that is its own choice) and in the thread
# setting that was its fastest on 2 cores here beside other work
# (tests/bench_torch_settings.sh, docs/results/bench-vae-2026-12-03/): one intra-op
# thread, THREADS OpenBLAS threads under its matrix products. Two OpenMP threads that
# wait actively were faster for ecg-tcn on a quieter machine, and 5x slower beside other
# work. TORCH_THREADS and TORCH_BLAS_THREADS override the setting, TORCH_WAIT_POLICY sets
# OMP_WAIT_POLICY (unset by default).
set -eu
ARCH=${1:-fashion}
ANODM_BIN=${ANODM_BIN:-build/anodm}
PYTHON=${PYTHON:-/usr/bin/python3}
THREADS=${THREADS:-2}
RUNS=${RUNS:-3}

case $ARCH in
fashion)
  label="vae epoch"
  echo "== beta-VAE training epoch, Fashion-MNIST, $THREADS threads"
  set --
  ;;
ecg-tcn)
  label="ecg-tcn epoch"
  if [ -z "${ECG_DATA:-}" ]; then
    ECG_DATA=../shared/data/ecg/mitdb
    [ -d "$ECG_DATA" ] || [ ! -d /work/shared/data/ecg/mitdb ] || ECG_DATA=/work/shared/data/ecg/mitdb
  fi
  if [ ! -f "$ECG_DATA/RECORDS" ]; then   # what ecg-extract reads the record list from
    echo "== ecg-tcn training epoch skipped: no MIT-BIH records in $ECG_DATA (set ECG_DATA)"
    exit 0
  fi
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/anodm-bench-ecg.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  trap 'exit 130' INT TERM   # so that the EXIT trap runs
  # Both sides read the same file, extracted once; not part of either timing.
  "$ANODM_BIN" ecg-extract --data "$ECG_DATA" --out "$tmp/beats.npy" >"$tmp/extract.log" 2>&1 ||
    { tail -5 "$tmp/extract.log"; exit 1; }
  limit=${ECG_LIMIT:-20000}
  echo "== beta-VAE training epoch, MIT-BIH heartbeats (ecg-tcn), $limit beats, $THREADS threads"
  set -- --arch ecg-tcn --data "$tmp/beats.npy" --limit "$limit"
  ;;
*)
  echo "tests/bench_vae.sh: ARCH is fashion or ecg-tcn, not '$ARCH'" >&2
  exit 2
  ;;
esac

torch_threads=${TORCH_THREADS:-1} torch_blas=${TORCH_BLAS_THREADS:-$THREADS}
echo "== PyTorch: torch.set_num_threads($torch_threads), OMP_NUM_THREADS=$torch_threads," \
     "OPENBLAS_NUM_THREADS=$torch_blas, OMP_WAIT_POLICY=${TORCH_WAIT_POLICY:-unset}; $RUNS rounds"
load() { echo "load $(cut -d' ' -f1-3 /proc/loadavg)"; }
times=""
r=1
while [ "$r" -le "$RUNS" ]; do
  echo "round $r, C: $(load)"
  c_line=$("$ANODM_BIN" bench-vae "$@" --threads "$THREADS")
  echo "$c_line"
  kernel=$(echo "$c_line" | sed -n 's/.* kernel=\([^ ]*\) .*/\1/p')
  echo "round $r, PyTorch: $(load)"
  t_line=$(env OPENBLAS_CORETYPE="$kernel" OPENBLAS_NUM_THREADS="$torch_blas" \
    OMP_NUM_THREADS="$torch_threads" ${TORCH_WAIT_POLICY:+OMP_WAIT_POLICY=$TORCH_WAIT_POLICY} \
    "$PYTHON" tests/bench_vae.py "$@" --threads "$torch_threads")
  echo "$t_line"
  times="$times
c $(echo "$c_line" | sed -n 's/.* epoch_s=\([0-9.]*\) .*/\1/p')
t $(echo "$t_line" | sed -n 's/.* epoch_s=\([0-9.]*\) .*/\1/p')"
  r=$((r + 1))
done
echo "$(load) at the end"
# Median and spread of each side; the ratio of the medians.
echo "$times" | awk -v label="$label" -v n="$RUNS" -v th="$THREADS" '
  function med(a, k,   i, j, t) {
    for (i = 2; i <= k; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
  }
  $1 == "c" { c[++nc] = $2 } $1 == "t" { t[++nt] = $2 }
  END {
    mc = med(c, nc); mt = med(t, nt)
    printf "%s, %d threads, median of %d: C %.2f s (%.2f-%.2f), PyTorch %.2f s (%.2f-%.2f): " \
           "C is %.2fx as fast as PyTorch\n", label, th, n, mc, c[1], c[nc], mt, t[1], t[nt], mt / mc
  }'
