#!/bin/sh
# make bench: anodm against its references, measured in the same run on this machine.
#   1. One training epoch of the Fashion-MNIST beta-VAE (54000 images, batch 100): C
#      against PyTorch on the CPU, same architecture, same thread count.
# Each side prints the BLAS it used. PyTorch runs on Debian's OpenBLAS with the kernels
# anodm selects (OPENBLAS_CORETYPE, see core/blas.h) and OpenBLAS single-threaded under
# torch's own 2 threads: with its defaults (OpenBLAS's own threads under torch's,
# generic kernels on this CPU) the same epoch took 380 s here, a comparison worth nothing.
set -eu
ANODM_BIN=${ANODM_BIN:-build/anodm}
PYTHON=${PYTHON:-/usr/bin/python3}
THREADS=${THREADS:-2}

echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "== beta-VAE training epoch, Fashion-MNIST, $THREADS threads"
c_line=$("$ANODM_BIN" bench-vae --threads "$THREADS")
echo "$c_line"
kernel=$(echo "$c_line" | sed -n 's/.* kernel=\([^ ]*\) .*/\1/p')
t_line=$(OPENBLAS_CORETYPE=$kernel OPENBLAS_NUM_THREADS=1 "$PYTHON" tests/bench_vae.py --threads "$THREADS")
echo "$t_line"
c_s=$(echo "$c_line" | sed -n 's/.* epoch_s=\([0-9.]*\) .*/\1/p')
t_s=$(echo "$t_line" | sed -n 's/.* epoch_s=\([0-9.]*\) .*/\1/p')
echo "$c_s $t_s" | awk '{ printf "vae epoch: C %.1f s, PyTorch %.1f s: C is %.2fx as fast as PyTorch\n", $1, $2, $2 / $1 }'

#   2. t-SNE: our fit against scikit-learn's TSNE (Barnes-Hut, same perplexity,
#      iterations and threads) on PCA-50 of Fashion-MNIST, then placement speed and error.
#      TSNE_SIZES=5000,10000,60000 adds the large fit (scikit-learn takes ~17 min there).
echo "== t-SNE fit and placement, $THREADS threads"
OPENBLAS_NUM_THREADS=1 "$PYTHON" tests/bench_tsne.py --bin "$ANODM_BIN" \
  --sizes "${TSNE_SIZES:-5000,10000}" --threads "$THREADS"
ANODM_BIN="$ANODM_BIN" PYTHON="$PYTHON" sh tests/bench_daemon.sh  # 3. anodmd under load (wrk)
