#!/usr/bin/python3
"""PyTorch side of `make bench`: one training epoch of a beta-VAE of core/nn/vae.c, batch 100,
Adam 1e-3, beta 0.01, on the CPU with the given thread count. Two architectures, as
`anodm bench-vae --arch`:
  fashion  the "fashion" preset on Fashion-MNIST, trouser held out (54000 images);
  ecg-tcn  the "ecg-tcn" preset (keras-tcn encoder, core/nn/tcn.h) on the first --limit
           beats of an `anodm ecg-extract` FILE.npy (default 20000).
Prints one line in the same form as `anodm bench-vae`, including which BLAS library the
process actually loaded (from /proc/self/maps), the kernel family (core name) and thread
count that library reports, the thread settings torch saw, and the model's parameter
count as anodm counts it (BatchNorm running statistics included), to check the two
models are the same.

Subnormal floats are flushed to zero (torch.set_flush_denormal), as anodm's training
threads flush them (core/nn/train.c), unless --keep-denormals. That sets the calling
thread's mode, which threads started later inherit (torch's OpenMP pool); OpenBLAS's
worker threads start when the library loads, before it, and follow it only if the
library was built to pass the mode on (CONSISTENT_FPCSR), which is not checked here.

Usage: /usr/bin/python3 tests/bench_vae.py [--arch fashion|ecg-tcn] [--threads N]
                                           [--data DIR|FILE.npy] [--limit N] [--keep-denormals]
"""
import argparse
import ctypes
import gzip
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LATENT = 16


def load_images(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    n, h, w = np.frombuffer(raw[4:16], dtype=">u4")
    return np.frombuffer(raw[16:], dtype=np.uint8).reshape(n, 1, h, w).astype(np.float32) / 255


def load_labels(path):
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read()[8:], dtype=np.uint8)


def load_fashion(path):
    x = load_images(os.path.join(path, "train-images-idx3-ubyte.gz"))
    y = load_labels(os.path.join(path, "train-labels-idx1-ubyte.gz"))
    return x[y != 1].copy()  # trouser held out: 54000 images


def load_beats(path):
    """FILE.npy of `anodm ecg-extract`: float32 (n, 187) beats in [0, 1], as [n, 1, 187]
    (anodm's 1x1x187: one channel, the TCN's [B, C, T]). Labels unread, as by anodm."""
    x = np.load(path).astype(np.float32, copy=False)
    return x.reshape(len(x), 1, -1)


def loaded_blas():
    with open("/proc/self/maps") as f:
        libs = {line.split()[-1] for line in f if "blas" in line.lower() and "/" in line}
    return ",".join(sorted(os.path.realpath(p) for p in libs)) or "none"


def openblas_state():
    """(core name, threads) of the OpenBLAS torch loaded (Debian's libblas.so.3 is a thin
    wrapper over libopenblas.so.0, so there is one instance to ask), or ("none", 0)."""
    try:
        lib = ctypes.CDLL("libopenblas.so.0", mode=os.RTLD_NOLOAD)
    except OSError:
        return "none", 0
    lib.openblas_get_corename.restype = ctypes.c_char_p
    return lib.openblas_get_corename().decode(), lib.openblas_get_num_threads()


def fashion_nets():
    """core/nn/vae.c's FASHION_ENC (+ the mu/logvar head) and FASHION_DEC."""
    enc = nn.Sequential(
        nn.Conv2d(1, 32, 3, 2, 1), nn.ReLU(), nn.Conv2d(32, 32, 3, 2, 1), nn.ReLU(),
        nn.Flatten(), nn.Linear(1568, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
        nn.Linear(128, 2 * LATENT))
    dec = nn.Sequential(
        nn.Linear(LATENT, 128), nn.ReLU(), nn.Linear(128, 1568), nn.ReLU(),
        nn.Unflatten(1, (32, 7, 7)), nn.ConvTranspose2d(32, 32, 3, 2, 1, output_padding=1),
        nn.ReLU(), nn.ConvTranspose2d(32, 1, 3, 2, 1, output_padding=1))
    return enc, dec


class TCNBlock(nn.Module):
    """One residual block in core/nn/tcn.c's order (tcn_block_forward):
    h1 = ReLU(CausalConv_d(x)), d1 = Drop(h1), branch = Drop(ReLU(CausalConv_d(d1))),
    out = ReLU(res + branch) with res = x or Conv1x1(x) when the channels change.
    Drop is channel dropout (SpatialDropout1D; core/nn/dropout.h with S = T), one mask per
    (sample, channel), i.e. nn.Dropout1d."""

    def __init__(self, in_c, filters, kernel, dilation, p):
        super().__init__()
        self.pad = dilation * (kernel - 1)   # all on the left: causal
        self.conv1 = nn.Conv1d(in_c, filters, kernel, dilation=dilation)
        self.conv2 = nn.Conv1d(filters, filters, kernel, dilation=dilation)
        self.down = nn.Conv1d(in_c, filters, 1) if in_c != filters else None
        self.drop1, self.drop2 = nn.Dropout1d(p), nn.Dropout1d(p)

    def forward(self, x):
        d1 = self.drop1(F.relu(self.conv1(F.pad(x, (self.pad, 0)))))
        branch = self.drop2(F.relu(self.conv2(F.pad(d1, (self.pad, 0)))))
        res = x if self.down is None else self.down(x)
        return F.relu(res + branch), branch


class TCN(nn.Module):
    """core/nn/tcn.c's tcn_forward: the sum of the blocks' branches (skip connections), its
    last time step, no activation after the sum. The last block's `out` is computed, as
    in C, but reaches nothing, so autograd (like tcn_backward) sends nothing back into it."""

    def __init__(self, in_c, filters, kernel, p, dilations):
        super().__init__()
        self.blocks = nn.ModuleList(
            TCNBlock(in_c if k == 0 else filters, filters, kernel, d, p)
            for k, d in enumerate(dilations))

    def forward(self, x):
        skip = 0
        for block in self.blocks:
            x, branch = block(x)
            skip = skip + branch
        return skip[:, :, -1]


def ecg_tcn_nets():
    """core/nn/vae.c's ECG_TCN_ENC "tcn(64,4,0.05,1,2,4,8,16,32)" (+ the head on its 64
    features) and ECG_DEC on (1, 1, 187) beats: 2 -> 5 -> 11 -> 23 -> 46 -> 93 -> 187."""
    enc = nn.Sequential(TCN(1, 64, 4, 0.05, (1, 2, 4, 8, 16, 32)), nn.Linear(64, 2 * LATENT))
    dec = nn.Sequential(
        nn.Linear(LATENT, 256), nn.ReLU(), nn.Linear(256, 384), nn.ReLU(),
        nn.Linear(384, 2048), nn.ReLU(), nn.BatchNorm1d(2048), nn.Unflatten(1, (1024, 2)),
        nn.ConvTranspose1d(1024, 64, 3, 2, 0, 0), nn.ReLU(),
        nn.ConvTranspose1d(64, 64, 3, 2, 0, 0), nn.ReLU(),
        nn.ConvTranspose1d(64, 64, 3, 2, 0, 0), nn.ReLU(),
        nn.ConvTranspose1d(64, 32, 3, 2, 1, 1), nn.ReLU(),
        nn.ConvTranspose1d(32, 32, 3, 2, 0, 0), nn.ReLU(),
        nn.ConvTranspose1d(32, 1, 3, 2, 0, 0))
    return enc, dec


# --arch: (encoder and decoder, loader, default --data, default --limit; 0: all samples)
ARCHS = {
    "fashion": (fashion_nets, load_fashion, "/usr/share/datasets/fashion-mnist", 0),
    "ecg-tcn": (ecg_tcn_nets, load_beats, None, 20000),
}


class VAE(nn.Module):
    def __init__(self, nets):
        super().__init__()
        self.enc, self.dec = nets()

    def forward(self, x):
        h = self.enc(x)
        mu, logvar = h[:, :LATENT], h[:, LATENT:]
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return mu, logvar, self.dec(z)


def anodm_param_count(model):
    """Parameters as anodm counts them: its BatchNorm layers keep running mean and
    variance in the parameter block too (core/nn/batchnorm.h)."""
    stats = sum(b.numel() for name, b in model.named_buffers()
                if name.endswith(("running_mean", "running_var")))
    return sum(p.numel() for p in model.parameters()) + stats


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", choices=sorted(ARCHS), default="fashion")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", help="Fashion-MNIST directory, or ecg-extract FILE.npy")
    ap.add_argument("--limit", "--images", type=int, default=-1,
                    help="time only the first N samples (ecg-tcn default 20000)")
    ap.add_argument("--keep-denormals", action="store_true",
                    help="do not flush subnormal floats to zero (anodm flushes them)")
    args = ap.parse_args()
    nets, load, data, limit = ARCHS[args.arch]
    data = args.data or data
    if not data:
        sys.exit("bench_vae.py: --arch %s needs --data FILE.npy" % args.arch)
    limit = limit if args.limit < 0 else args.limit
    torch.set_num_threads(args.threads)
    ftz = not args.keep_denormals and torch.set_flush_denormal(True)
    torch.manual_seed(1)
    x = torch.from_numpy(load(data))
    if limit:
        x = x[:limit]
    model = VAE(nets)
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
    core, blas_threads = openblas_state()
    env = " ".join("%s=%s" % (k, os.environ.get(k, "unset")) for k in
                   ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS"))
    print('torch: blas="%s" kernel=%s blas_threads=%d version=%s threads=%d flush_denormal=%d '
          '%s images=%d epoch_s=%.3f images_per_s=%.0f params=%d'
          % (loaded_blas(), core, blas_threads, torch.__version__, torch.get_num_threads(),
             ftz, env, len(x), dt, len(x) / dt, anodm_param_count(model)))


if __name__ == "__main__":
    main()
