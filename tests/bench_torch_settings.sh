#!/bin/sh
# Which thread settings make the PyTorch side of tests/bench_vae.sh fastest on this
# machine. PyTorch on Debian has three thread layers: its own intra-op threads
# (torch.set_num_threads, OpenMP), oneDNN's convolutions (the same OpenMP pool) and
# OpenBLAS's own pthreads under its matrix products (OPENBLAS_NUM_THREADS). Each setting
# below is one torch process; the settings are run in turn, REPEAT rounds, so that load
# from other work falls on all of them alike. Each line is preceded by the load average.
#   PYTHON=/usr/bin/python3 REPEAT=2 LIMIT=20000 sh tests/bench_torch_settings.sh fashion
#   ... sh tests/bench_torch_settings.sh ecg-tcn BEATS.npy     (an `anodm ecg-extract` file)
# The last setting keeps subnormal floats (--keep-denormals), to show what flushing them,
# as anodm does, is worth. Settings run under `timeout TIMEOUT` (300 s): with two thread
# pools spinning against each other one epoch has taken minutes.
set -eu
ARCH=${1:-fashion}
PYTHON=${PYTHON:-/usr/bin/python3}
REPEAT=${REPEAT:-2}
LIMIT=${LIMIT:-20000}
TIMEOUT=${TIMEOUT:-300}
case $ARCH in
fashion) set -- --arch fashion --limit "$LIMIT" ;;
ecg-tcn) [ -n "${2:-}" ] || { echo "usage: $0 ecg-tcn BEATS.npy" >&2; exit 2; }
         set -- --arch ecg-tcn --data "$2" --limit "$LIMIT" ;;
*) echo "$0: ARCH is fashion or ecg-tcn" >&2; exit 2 ;;
esac

# torch threads | environment
SETTINGS="2|OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2
2|OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE
2|OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=1
2|OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
1|OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=2
1|OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
2|OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE --keep-denormals"

echo "== PyTorch thread settings, $ARCH, $LIMIT samples, $REPEAT rounds"
r=1
while [ "$r" -le "$REPEAT" ]; do
  echo "$SETTINGS" | while IFS='|' read -r threads env; do
    flags=""
    case $env in *--keep-denormals) env=${env% --keep-denormals}; flags=--keep-denormals ;; esac
    echo "round $r; load $(cut -d' ' -f1-3 /proc/loadavg); torch threads $threads; $env $flags"
    # shellcheck disable=SC2086
    env $env timeout "$TIMEOUT" "$PYTHON" tests/bench_vae.py "$@" --threads "$threads" $flags ||
      echo "(failed or over $TIMEOUT s)"
  done
  r=$((r + 1))
done
