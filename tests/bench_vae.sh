#!/bin/sh
# One training epoch of a beta-VAE preset, C (`anodm bench-vae`) against PyTorch
# (tests/bench_vae.py) on the CPU, same architecture, same thread count, measured in the
# same run. Steps 1 and 1b of `make bench` (tests/bench.sh), or alone:
#   ANODM_BIN=build/anodm PYTHON=/usr/bin/python3 THREADS=2 sh tests/bench_vae.sh ARCH
#   fashion  Fashion-MNIST, trouser held out: 54000 images, batch 100
#   ecg-tcn  the first ECG_LIMIT (20000) MIT-BIH beats, batch 100, extracted here with
#            `anodm ecg-extract` from the records in ECG_DATA (as the Makefile's ECG_DATA:
#            ../shared/data/ecg/mitdb, else /work/shared/data/ecg/mitdb) into a temporary
#            directory; skipped, with a message, when there are no records there.
# Each side prints the BLAS it used. PyTorch runs on Debian's OpenBLAS with the kernels
# anodm selects (OPENBLAS_CORETYPE, see core/blas.h) and OpenBLAS single-threaded under
# torch's own threads: with its defaults (OpenBLAS's own threads under torch's, generic
# kernels on this CPU) the Fashion epoch took 380 s here, a comparison worth nothing.
set -eu
ARCH=${1:-fashion}
ANODM_BIN=${ANODM_BIN:-build/anodm}
PYTHON=${PYTHON:-/usr/bin/python3}
THREADS=${THREADS:-2}

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

c_line=$("$ANODM_BIN" bench-vae "$@" --threads "$THREADS")
echo "$c_line"
kernel=$(echo "$c_line" | sed -n 's/.* kernel=\([^ ]*\) .*/\1/p')
t_line=$(OPENBLAS_CORETYPE=$kernel OPENBLAS_NUM_THREADS=1 "$PYTHON" tests/bench_vae.py "$@" \
  --threads "$THREADS")
echo "$t_line"
c_s=$(echo "$c_line" | sed -n 's/.* epoch_s=\([0-9.]*\) .*/\1/p')
t_s=$(echo "$t_line" | sed -n 's/.* epoch_s=\([0-9.]*\) .*/\1/p')
echo "$c_s $t_s" | awk -v label="$label" \
  '{ printf "%s: C %.1f s, PyTorch %.1f s: C is %.2fx as fast as PyTorch\n", label, $1, $2, $2 / $1 }'
