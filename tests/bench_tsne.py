#!/usr/bin/python3
"""t-SNE benchmark: anodm's fit against scikit-learn's TSNE on the same data, same run.

For each N: `anodm bench-tsne fit` takes PCA-50 of the first N Fashion-MNIST training
images, fits our map (timed) and writes the data; scikit-learn's TSNE (Barnes-Hut,
angle 0.5, same perplexity, iterations, threads; learning_rate='auto', which is N/48 in
its gradient convention = our N/12) fits the same data (timed); then
`anodm bench-tsne kl` computes the exact KL of both maps under our P, so the two KLs
are measured by one yardstick. Finally `anodm bench-tsne place` reports placement speed
and error. Numbers go to stdout; docs/TSNE.md records them.

usage: tests/bench_tsne.py [--bin build/anodm] [--sizes 5000,10000,60000] [--threads 2]
                           [--iters 1000] [--no-place] [--no-sklearn]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np


def run(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("ANODM_BIN", "build/anodm"))
    ap.add_argument("--sizes", default="5000,10000,60000")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=1000)
    ap.add_argument("--perplexity", type=float, default=30.0)
    ap.add_argument("--no-place", action="store_true")
    ap.add_argument("--no-sklearn", action="store_true")
    a = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    with tempfile.TemporaryDirectory(prefix="bench-tsne-") as tmp:  # the data and maps
        return bench(a, tmp)


def bench(a, tmp):
    rows = []
    for n in [int(s) for s in a.sizes.split(",")]:
        x, y_ours, y_sk = (os.path.join(tmp, f"{name}-{n}.f32") for name in ("x", "ours", "sk"))
        out = run([a.bin, "bench-tsne", "fit", "--n", str(n), "--threads", str(a.threads),
                   "--iters", str(a.iters), "--perplexity", str(a.perplexity),
                   "--save-x", x, "--save-y", y_ours])
        print(out.strip(), flush=True)
        t_ours = float(re.search(r": ([0-9.]+) s, KL", out).group(1))
        kl = lambda y: float(re.search(r"exact KL ([0-9.]+)", run(
            [a.bin, "bench-tsne", "kl", "--x", x, "--y", y, "--d", "50",
             "--perplexity", str(a.perplexity), "--threads", str(a.threads)])).group(1))
        kl_ours = kl(y_ours)
        t_sk = kl_sk = float("nan")
        if not a.no_sklearn:
            from sklearn.manifold import TSNE
            X = np.fromfile(x, dtype=np.float32).reshape(n, 50)
            t0 = time.time()
            Y = TSNE(n_components=2, perplexity=a.perplexity, n_iter=a.iters, init="pca",
                     learning_rate="auto", method="barnes_hut", angle=0.5, n_jobs=a.threads,
                     random_state=0).fit_transform(X)
            t_sk = time.time() - t0
            Y.astype(np.float32).tofile(y_sk)
            kl_sk = kl(y_sk)
        rows.append((n, t_ours, kl_ours, t_sk, kl_sk))
        print(f"N={n}: ours {t_ours:.1f} s KL {kl_ours:.4f} | scikit-learn {t_sk:.1f} s "
              f"KL {kl_sk:.4f} | speed-up {t_sk / t_ours:.1f}x", flush=True)
    print("\n| N | ours: time | ours: KL | scikit-learn: time | scikit-learn: KL | speed-up |")
    print("|---|---|---|---|---|---|")
    for n, to, ko, ts, ks in rows:
        print(f"| {n} | {to:.1f} s | {ko:.4f} | {ts:.1f} s | {ks:.4f} | {ts / to:.1f}x |")
    if not a.no_place:
        print(run([a.bin, "bench-tsne", "place", "--n", "10000", "--queries", "2000",
                   "--threads", str(a.threads)]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
