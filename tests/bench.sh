#!/bin/sh
# make bench: anodm against its references, measured in the same run on this machine.
#   1. One training epoch of the Fashion-MNIST beta-VAE (54000 images, batch 100): C
#      against PyTorch on the CPU, same architecture, same thread count.
#   1b. The same for the ECG beta-VAE with the TCN encoder ("ecg-tcn"), on the first
#      ECG_LIMIT (20000) MIT-BIH beats from ECG_DATA; skipped when the records are absent.
# Both run through tests/bench_vae.sh, which says how PyTorch's BLAS and threads are set.
#   2. and 3., t-SNE and the daemon, below; 4. where a scored sample's CPU time goes.
# Each step's output goes to the terminal and to OUT/<step>.txt, OUT being BENCH_OUT or
# docs/results/bench-<UTC date>/ (the figures in README.md and docs/ cite these files);
# OUT/machine.txt records the machine, its load and the commit measured, run after run.
# BENCH_STEPS runs only the steps named (vae-fashion vae-ecg-tcn tsne daemon stages; all by
# default), e.g. to redo one.
set -eu
ANODM_BIN=${ANODM_BIN:-build/anodm}
PYTHON=${PYTHON:-/usr/bin/python3}
THREADS=${THREADS:-2}
OUT=${BENCH_OUT:-docs/results/bench-$(date -u +%F)}
export ANODM_BIN PYTHON THREADS
mkdir -p "$OUT"

# step NAME COMMAND...: run it, its stdout and stderr to the terminal and OUT/NAME.txt
# between two lines with the time and load average; stop the bench if it fails.
step() {
  name=$1; shift
  case " ${BENCH_STEPS:-$name} " in *" $name "*) ;; *) return 0 ;; esac
  { echo "\$ $*"; echo "# $(date -u '+%H:%M:%S UTC'), load $(cut -d' ' -f1-3 /proc/loadavg)"
    "$@" 2>&1 && rc=0 || rc=$?; echo "$rc" >"$OUT/.rc"
    echo "# $(date -u '+%H:%M:%S UTC'), load $(cut -d' ' -f1-3 /proc/loadavg), exit $rc"
  } | tee "$OUT/$name.txt"
  rc=$(cat "$OUT/.rc"); rm -f "$OUT/.rc"
  [ "$rc" -eq 0 ] || { echo "bench: step $name failed ($rc), see $OUT/$name.txt" >&2; exit 1; }
}

{
  echo "== make bench, steps: ${BENCH_STEPS:-all}"
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "uptime: $(uptime)"
  echo "cpu: $(LC_ALL=C lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
  echo "openblas: $("$PYTHON" -c 'import ctypes; b = ctypes.CDLL("libopenblas.so.0"); b.openblas_get_corename.restype = b.openblas_get_config.restype = ctypes.c_char_p; print(b.openblas_get_config().decode(), "| core:", b.openblas_get_corename().decode())')"
  echo "OPENBLAS_CORETYPE: ${OPENBLAS_CORETYPE:-unset}"
  echo "kernel: $(uname -sr)"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (working tree differs)')"
} | tee -a "$OUT/machine.txt"
step vae-fashion sh tests/bench_vae.sh fashion
step vae-ecg-tcn sh tests/bench_vae.sh ecg-tcn

#   2. t-SNE: our fit against scikit-learn's TSNE (Barnes-Hut, same perplexity,
#      iterations and threads) on PCA-50 of Fashion-MNIST, then placement speed and error.
#      TSNE_SIZES=5000,10000,60000 adds the large fit (scikit-learn takes ~17 min there).
step tsne env OPENBLAS_NUM_THREADS=1 "$PYTHON" tests/bench_tsne.py --bin "$ANODM_BIN" \
  --sizes "${TSNE_SIZES:-5000,10000}" --threads "$THREADS"
step daemon sh tests/bench_daemon.sh  # 3. anodmd under load (wrk)
#   4. anodm bench-score: the CPU time per sample of each scoring stage at batches 1, 8
#      and 64, beside its arithmetic floor (FLOPs / the sgemm rate measured in the run),
#      with the default model (MODEL to choose another) on 2048 test images.
STAGE_MODEL=${MODEL:-models/fashion-trouser.anodm}
if [ -f "$STAGE_MODEL" ]; then
  step stages "$ANODM_BIN" bench-score "$STAGE_MODEL" "${FMNIST:-/usr/share/datasets/fashion-mnist}" \
    --samples 2048
else
  echo "bench: step stages skipped: no $STAGE_MODEL (make run builds it, or set MODEL)"
fi
echo "uptime at the end: $(uptime)" | tee -a "$OUT/machine.txt"
