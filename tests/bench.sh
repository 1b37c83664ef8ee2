#!/bin/sh
# make bench: anodm against its references, measured in the same run on this machine.
#   1. One training epoch of the Fashion-MNIST beta-VAE (54000 images, batch 100): C
#      against PyTorch on the CPU, same architecture, same thread count.
#   1b. The same for the ECG beta-VAE with the TCN encoder ("ecg-tcn"), on the first
#      ECG_LIMIT (20000) MIT-BIH beats from ECG_DATA; skipped when the records are absent.
# Both run through tests/bench_vae.sh, which says how PyTorch's BLAS and threads are set.
set -eu
ANODM_BIN=${ANODM_BIN:-build/anodm}
PYTHON=${PYTHON:-/usr/bin/python3}
THREADS=${THREADS:-2}
export ANODM_BIN PYTHON THREADS

echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; $(date -u '+%Y-%m-%d %H:%M UTC')"
sh tests/bench_vae.sh fashion
sh tests/bench_vae.sh ecg-tcn

#   2. t-SNE: our fit against scikit-learn's TSNE (Barnes-Hut, same perplexity,
#      iterations and threads) on PCA-50 of Fashion-MNIST, then placement speed and error.
#      TSNE_SIZES=5000,10000,60000 adds the large fit (scikit-learn takes ~17 min there).
echo "== t-SNE fit and placement, $THREADS threads"
OPENBLAS_NUM_THREADS=1 "$PYTHON" tests/bench_tsne.py --bin "$ANODM_BIN" \
  --sizes "${TSNE_SIZES:-5000,10000}" --threads "$THREADS"
ANODM_BIN="$ANODM_BIN" PYTHON="$PYTHON" sh tests/bench_daemon.sh  # 3. anodmd under load (wrk)
