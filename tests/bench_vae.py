#!/usr/bin/python3
"""PyTorch side of `make bench`: one training epoch of the Fashion-MNIST beta-VAE (the
architecture of core/vae.c's "fashion" preset), batch 100, Adam 1e-3, on the CPU with the
given thread count. Prints one line in the same form as `anodm bench-vae`, including
which BLAS library the process actually loaded (from /proc/self/maps).

Usage: /usr/bin/python3 tests/bench_vae.py [--threads N] [--data DIR]
"""
import argparse
import gzip
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

LATENT = 16


def load_images(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    n, h, w = np.frombuffer(raw[4:16], dtype=">u4")
    return np.frombuffer(raw[16:], dtype=np.uint8).reshape(n, 1, h, w).astype(np.float32) / 255


def load_labels(path):
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read()[8:], dtype=np.uint8)


def loaded_blas():
    with open("/proc/self/maps") as f:
        libs = {line.split()[-1] for line in f if "blas" in line.lower() and "/" in line}
    return ",".join(sorted(os.path.realpath(p) for p in libs)) or "none"


class VAE(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(1, 32, 3, 2, 1)
        self.c2 = torch.nn.Conv2d(32, 32, 3, 2, 1)
        self.l1 = torch.nn.Linear(1568, 128)
        self.l2 = torch.nn.Linear(128, 128)
        self.head = torch.nn.Linear(128, 2 * LATENT)
        self.d1 = torch.nn.Linear(LATENT, 128)
        self.d2 = torch.nn.Linear(128, 1568)
        self.t1 = torch.nn.ConvTranspose2d(32, 32, 3, 2, 1, output_padding=1)
        self.t2 = torch.nn.ConvTranspose2d(32, 1, 3, 2, 1, output_padding=1)

    def forward(self, x):
        h = F.relu(self.c2(F.relu(self.c1(x)))).flatten(1)
        h = self.head(F.relu(self.l2(F.relu(self.l1(h)))))
        mu, logvar = h[:, :LATENT], h[:, LATENT:]
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        g = F.relu(self.d2(F.relu(self.d1(z)))).reshape(-1, 32, 7, 7)
        return mu, logvar, self.t2(F.relu(self.t1(g)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--images", type=int, default=0, help="time only the first N images")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    x = load_images(os.path.join(args.data, "train-images-idx3-ubyte.gz"))
    y = load_labels(os.path.join(args.data, "train-labels-idx1-ubyte.gz"))
    x = torch.from_numpy(x[y != 1].copy())  # trouser held out: 54000 images
    if args.images:
        x = x[:args.images]
    model = VAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    beta, batch = 0.01, 100
    perm = torch.randperm(len(x))
    t0 = time.perf_counter()
    for s in range(0, len(x), batch):
        xb = x[perm[s:s + batch]]
        mu, logvar, logits = model(xb)
        recon = F.binary_cross_entropy_with_logits(logits, xb, reduction="sum") / len(xb)
        kl = (-0.5 * (1 + logvar - mu ** 2 - logvar.exp())).sum() / len(xb)
        loss = recon + beta * kl.abs()
        opt.zero_grad()
        loss.backward()
        opt.step()
    dt = time.perf_counter() - t0
    print('torch: blas="%s" version=%s threads=%d images=%d epoch_s=%.3f images_per_s=%.0f'
          % (loaded_blas(), torch.__version__, torch.get_num_threads(), len(x), dt, len(x) / dt))


if __name__ == "__main__":
    main()
