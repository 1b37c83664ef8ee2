#!/usr/bin/python3
"""Write the PyTorch parity fixtures for core/'s dense and convolutional layers, Adam and
the whole Fashion-MNIST beta-VAE (tests/test_parity.c reads them).

Run with Debian's python3-torch:  /usr/bin/python3 tests/gen_fixtures.py tests/fixtures
(or `make fixtures`). The reference is computed in float64 and stored as float32, so its
own rounding error (~1e-16 relative) is negligible next to the C code's float32 error.
Inputs and weights are not stored: det_fill() below reproduces tests/fixture.c's
generator bit for bit, and the C test regenerates them.
"""
import gzip
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def det_fill(n, seed, lo, hi):
    """tests/fixture.c det_fill: lowbias32 hash of (i+1)*0x9E3779B1 + seed*0x85EBCA77."""
    i = np.arange(n, dtype=np.uint64)
    m = np.uint64(0xFFFFFFFF)
    h = ((i + np.uint64(1)) * np.uint64(0x9E3779B1) + np.uint64(seed) * np.uint64(0x85EBCA77)) & m
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x7FEB352D)) & m
    h ^= h >> np.uint64(15)
    h = (h * np.uint64(0x846CA68B)) & m
    h ^= h >> np.uint64(16)
    u = (h >> np.uint64(8)).astype(np.float64) / 16777216.0
    lo, hi = float(np.float32(lo)), float(np.float32(hi))  # C passes them as float
    v = (lo + (hi - lo) * u).astype(np.float32)
    return torch.from_numpy(v.astype(np.float64))


def det(shape, seed, lo, hi):
    return det_fill(int(np.prod(shape)), seed, lo, hi).reshape(shape)


def write(path, tensors):
    with gzip.GzipFile(path, "wb", 9, mtime=0) as f:
        f.write(b"ANTF" + struct.pack("<II", 1, len(tensors)))
        for name, t in tensors.items():
            a = np.ascontiguousarray(t.detach().numpy().astype("<f4"))
            f.write(struct.pack("<I", len(name)) + name.encode())
            f.write(struct.pack("<I", a.ndim) + struct.pack("<%dI" % a.ndim, *a.shape))
            f.write(a.tobytes())
    print("wrote", path, os.path.getsize(path), "bytes")


def grads_of(out, dout, *leaves):
    for leaf in leaves:
        leaf.grad = None
    out.backward(dout)
    return [leaf.grad for leaf in leaves]


def layer_fixture(outdir, name, x, w, b, fn):
    """Forward with dout = det(...); store y and the gradients of x, w, b."""
    x.requires_grad_(True); w.requires_grad_(True); b.requires_grad_(True)
    y = fn(x, w, b)
    dout = det(tuple(y.shape), 4, -1, 1)
    dx, dw, db = grads_of(y, dout, x, w, b)
    write(os.path.join(outdir, name + ".bin.gz"), {"y": y, "dx": dx, "dw": dw, "db": db})


def layer_fixtures(outdir):
    # Linear: B=4, 7 -> 5.
    layer_fixture(outdir, "linear", det((4, 7), 1, -1, 1), det((5, 7), 2, -0.4, 0.4),
                  det((5,), 3, -0.4, 0.4), lambda x, w, b: F.linear(x, w, b))
    # Conv2d 3 -> 4, k3 s2 p1 on 9x8.
    layer_fixture(outdir, "conv2d", det((2, 3, 9, 8), 1, -1, 1), det((4, 3, 3, 3), 2, -0.2, 0.2),
                  det((4,), 3, -0.2, 0.2), lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1))
    # ConvTranspose2d 3 -> 2, k3 s2 p1 op1 on 5x4 (-> 10x8).
    layer_fixture(outdir, "convt2d", det((2, 3, 5, 4), 1, -1, 1), det((3, 2, 3, 3), 2, -0.2, 0.2),
                  det((2,), 3, -0.2, 0.2),
                  lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1))
    # Conv1d 3 -> 4, k4 dilation 2, causal (left padding 6) on 20 samples.
    layer_fixture(outdir, "conv1d_causal", det((2, 3, 20), 1, -1, 1), det((4, 3, 4), 2, -0.3, 0.3),
                  det((4,), 3, -0.3, 0.3),
                  lambda x, w, b: F.conv1d(F.pad(x, (6, 0)), w, b, dilation=2))
    # ConvTranspose1d 3 -> 2, k3 s2 p1 op1 on 10 samples (-> 20).
    layer_fixture(outdir, "convt1d", det((2, 3, 10), 1, -1, 1), det((3, 2, 3), 2, -0.3, 0.3),
                  det((2,), 3, -0.3, 0.3),
                  lambda x, w, b: F.conv_transpose1d(x, w, b, stride=2, padding=1, output_padding=1))


def activation_fixture(outdir):
    """ReLU and sigmoid on 64 values in [-4, 4), with upstream gradient r."""
    x = det((64,), 8, -4, 4).requires_grad_(True)
    r = det((64,), 9, -1, 1)
    out = {}
    for name, fn in (("relu", torch.relu), ("sigmoid", torch.sigmoid)):
        x.grad = None
        y = fn(x)
        y.backward(r)
        out[name + "_y"] = y.detach().clone()
        out[name + "_dx"] = x.grad.clone()
    write(os.path.join(outdir, "activations.bin.gz"), out)


def adam_fixture(outdir):
    """Three torch.optim.Adam steps (lr 1e-2) on 11 parameters with given gradients."""
    p = det((11,), 1, -1, 1).clone().requires_grad_(True)
    opt = torch.optim.Adam([p], lr=1e-2)
    out = {}
    for step in range(3):
        g = det((11,), 10 + step, -2, 2)
        p.grad = g.clone()
        opt.step()
        out["p%d" % (step + 1)] = p.detach().clone()
    write(os.path.join(outdir, "adam.bin.gz"), out)


# The Fashion-MNIST beta-VAE exactly as core/vae.c builds it (preset "fashion").
LATENT = 16


class FashionVAE(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = torch.nn.ModuleList([
            torch.nn.Conv2d(1, 32, 3, 2, 1), torch.nn.Conv2d(32, 32, 3, 2, 1),
            torch.nn.Linear(1568, 128), torch.nn.Linear(128, 128), torch.nn.Linear(128, 2 * LATENT)])
        self.dec = torch.nn.ModuleList([
            torch.nn.Linear(LATENT, 128), torch.nn.Linear(128, 1568),
            torch.nn.ConvTranspose2d(32, 32, 3, 2, 1, output_padding=1),
            torch.nn.ConvTranspose2d(32, 1, 3, 2, 1, output_padding=1)])

    def forward(self, x, eps):
        c1, c2, l1, l2, head = self.enc
        h = F.relu(c2(F.relu(c1(x))))
        h = F.relu(l2(F.relu(l1(h.flatten(1)))))
        h = head(h)
        mu, logvar = h[:, :LATENT], h[:, LATENT:]
        z = mu + torch.exp(0.5 * logvar) * eps
        d1, d2, t1, t2 = self.dec
        g = F.relu(d2(F.relu(d1(z)))).reshape(-1, 32, 7, 7)
        return mu, logvar, t2(F.relu(t1(g)))

    def params_in_core_order(self):
        """Weight then bias, encoder layers then decoder layers: core/net.c's block."""
        out = []
        for m in list(self.enc) + list(self.dec):
            out += [m.weight, m.bias]
        return out


def fan_in(weight):
    # PyTorch's rule: dim 1 times the kernel size, for Linear, Conv and ConvTranspose alike.
    return weight.shape[1] * int(np.prod(weight.shape[2:]))


def vae_fixture(outdir):
    B, beta, capacity = 4, 0.5, 2.0
    model = FashionVAE()
    params = model.params_in_core_order()
    with torch.no_grad():
        for t, p in enumerate(params):
            w = params[t - (t % 2)]            # bias uses its weight's fan-in
            bound = 1.0 / math.sqrt(fan_in(w))
            p.copy_(det(tuple(p.shape), 100 + t, -bound, bound))
    x = det((B, 1, 28, 28), 1, 0, 1)
    eps = det((B, LATENT), 2, -1.7, 1.7)
    mu, logvar, logits = model(x, eps)
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / B
    kl = (-0.5 * (1 + logvar - mu ** 2 - logvar.exp())).sum() / B
    loss = recon + beta * (kl - capacity).abs()
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in params])
    opt = torch.optim.Adam(params, lr=1e-3)
    opt.step()
    after = torch.cat([p.detach().flatten() for p in params])
    write(os.path.join(outdir, "vae_fashion.bin.gz"), {
        "mu": mu, "logvar": logvar, "logits": logits, "recon": recon.reshape(1),
        "kl": kl.reshape(1), "loss": loss.reshape(1), "grads": grads, "params_after_adam": after})


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
    os.makedirs(outdir, exist_ok=True)
    layer_fixtures(outdir)
    activation_fixture(outdir)
    adam_fixture(outdir)
    vae_fixture(outdir)


if __name__ == "__main__":
    main()
