#!/usr/bin/python3
"""PyTorch parity fixtures for core/nn/batchnorm, core/nn/lstm and core/nn/tcn (tests/test_layers_seq.c).

Run with Debian's torch: /usr/bin/python3 tests/gen_fixtures_seq.py tests/fixtures
Inputs and weights are not stored: det_fill() reproduces tests/fixture.c's generator bit
for bit, so only results go into the files. The reference runs in float64 and is stored
as float32, so its own error (~1e-16) is negligible next to the C side's float32 error.
The TCN's training-mode fixture needs the C dropout masks: rng_t (core/base/rng.c, xoshiro256**
seeded by splitmix64) is reproduced here too, drawn in the order tcn_forward draws them.
"""
import gzip
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF


def det_fill(n, seed, lo, hi):
    """tests/fixture.c det_fill: lowbias32 hash of the index, 24 bits, scaled in double."""
    i = np.arange(n, dtype=np.uint64)
    h = ((i + 1) * 0x9E3779B1 + (seed * 0x85EBCA77)) & M32
    h ^= h >> 16
    h = (h * 0x7FEB352D) & M32
    h ^= h >> 15
    h = (h * 0x846CA68B) & M32
    h ^= h >> 16
    u = (h >> 8).astype(np.float64) / 16777216.0
    lo, hi = float(np.float32(lo)), float(np.float32(hi))
    return (lo + (hi - lo) * u).astype(np.float32)


def det(shape, seed, lo, hi):
    """A float64 tensor of det_fill values (exactly the float32 values C sees)."""
    n = int(np.prod(shape))
    return torch.tensor(det_fill(n, seed, lo, hi).astype(np.float64).reshape(shape))


class Rng:
    """core/base/rng.c: xoshiro256** with splitmix64 seeding; only what dropout_mask uses."""

    def __init__(self, seed):
        self.s = []
        state = seed & M64
        for _ in range(4):
            state = (state + 0x9E3779B97F4A7C15) & M64
            z = state
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
            self.s.append(z ^ (z >> 31))

    @staticmethod
    def _rotl(x, k):
        return ((x << k) | (x >> (64 - k))) & M64

    def u64(self):
        s = self.s
        result = (self._rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = self._rotl(s[3], 45)
        return result

    def uniform(self):
        return (self.u64() >> 40) / 16777216.0    # exact in float32, as in C

    def dropout_mask(self, n, p):
        """core/nn/dropout.c dropout_mask: 0 or 1/(1-p), the scale computed in float32."""
        p32 = np.float32(p)
        keep = float(np.float32(1.0) / (np.float32(1.0) - p32))
        return [keep if self.uniform() >= float(p32) else 0.0 for _ in range(n)]


def write_fixture(path, tensors):
    """gzip of "ANTF", u32 version 1, u32 count, then (name, ndim, dims, float32 LE data)."""
    out = [b"ANTF", struct.pack("<II", 1, len(tensors))]
    for name, t in tensors.items():
        a = np.ascontiguousarray(np.asarray(t.detach() if torch.is_tensor(t) else t,
                                            dtype=np.float64).astype("<f4"))
        nb = name.encode()
        out.append(struct.pack("<I", len(nb)) + nb)
        out.append(struct.pack("<I", a.ndim) + struct.pack("<%dI" % a.ndim, *a.shape))
        out.append(a.tobytes())
    with open(path, "wb") as f:
        with gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as gz:   # reproducible bytes
            gz.write(b"".join(out))


def batchnorm_case(prefix, B, C, S, seed, res):
    """Train (batch stats, running update) and eval (running stats) of nn.BatchNorm on [B, C, S]."""
    x0 = det((B, C, S), seed, -2.0, 3.0)
    gamma0 = det((C,), seed + 1, 0.5, 1.5)
    beta0 = det((C,), seed + 2, -0.5, 0.5)
    rmean = det((C,), seed + 3, -0.2, 0.2)
    rvar = det((C,), seed + 4, 0.5, 1.5)
    dy = det((B, C, S), seed + 5, -1.0, 1.0)
    for mode in ("train", "eval"):
        bn = torch.nn.BatchNorm1d(C, eps=1e-5, momentum=0.1).double()
        with torch.no_grad():
            bn.weight.copy_(gamma0)
            bn.bias.copy_(beta0)
            bn.running_mean.copy_(rmean)
            bn.running_var.copy_(rvar)
        bn.train(mode == "train")
        x = x0.clone().requires_grad_(True)
        y = bn(x)       # BatchNorm1d on [B, C, L] normalises per channel over B and L
        (y * dy).sum().backward()
        res[f"{prefix}_{mode}_y"] = y
        res[f"{prefix}_{mode}_dx"] = x.grad
        res[f"{prefix}_{mode}_dgamma"] = bn.weight.grad
        res[f"{prefix}_{mode}_dbeta"] = bn.bias.grad
        if mode == "train":
            res[f"{prefix}_run_mean"] = bn.running_mean
            res[f"{prefix}_run_var"] = bn.running_var


def gen_batchnorm(outdir):
    res = {}
    batchnorm_case("bn1d", 4, 3, 1, 101, res)    # BatchNorm1d on FC features
    batchnorm_case("bn2d", 3, 4, 15, 201, res)   # BatchNorm2d on 3x5 maps
    write_fixture(os.path.join(outdir, "seq_batchnorm.bin.gz"), res)


def gen_lstm(outdir):
    B, T, In, H = 3, 12, 2, 5
    lstm = torch.nn.LSTM(In, H, batch_first=True).double()
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(det((4 * H, In), 301, -0.5, 0.5))
        lstm.weight_hh_l0.copy_(det((4 * H, H), 302, -0.5, 0.5))
        lstm.bias_ih_l0.copy_(det((4 * H,), 303, -0.5, 0.5))
        lstm.bias_hh_l0.copy_(det((4 * H,), 304, -0.5, 0.5))
    x = det((B, T, In), 305, -1.5, 1.5).requires_grad_(True)
    dout = det((B, T, H), 306, -1.0, 1.0)
    out, _ = lstm(x)
    (out * dout).sum().backward()
    write_fixture(os.path.join(outdir, "seq_lstm.bin.gz"), {
        "out": out, "dx": x.grad,
        "dw_ih": lstm.weight_ih_l0.grad, "dw_hh": lstm.weight_hh_l0.grad,
        "db_ih": lstm.bias_ih_l0.grad, "db_hh": lstm.bias_hh_l0.grad,
    })


TCN = dict(in_c=2, len=20, filters=8, kernel=3, dilations=[1, 2, 4], B=3)


def tcn_param_count(in_c, filters, kernel, dilations):
    """Floats in core/nn/tcn.h's run: per block w1, b1, w2, b2 [, wd, bd if C != F]."""
    n, c = 0, in_c
    for _ in dilations:
        n += filters * c * kernel + filters + filters * filters * kernel + filters
        if c != filters:
            n += filters * c + filters
        c = filters
    return n


def tcn_split(flat, in_c, filters, kernel, dilations):
    """Parameter views in core/nn/tcn.h's order: per block w1, b1, w2, b2 [, wd, bd]."""
    blocks, off = [], 0

    def take(*shape):
        nonlocal off
        n = int(np.prod(shape))
        v = flat[off:off + n].view(*shape)
        off += n
        return v

    c = in_c
    for _ in dilations:
        blk = [take(filters, c, kernel), take(filters), take(filters, filters, kernel),
               take(filters)]
        if c != filters:
            blk += [take(filters, c, 1), take(filters)]
        blocks.append(blk)
        c = filters
    assert off == flat.numel()
    return blocks


def tcn_reference(x, flat, masks, kernel, dilations, filters):
    """keras-tcn's TCN (causal, skip connections, last step) in torch, channels-first;
    masks[k] = (m1, m2) of shape [B, F, 1] (SpatialDropout1D), or None in eval."""
    blocks = tcn_split(flat, x.shape[1], filters, kernel, dilations)
    skip_sum = 0
    for k, d in enumerate(dilations):
        w1, b1, w2, b2 = blocks[k][:4]
        pad = d * (kernel - 1)
        h1 = F.relu(F.conv1d(F.pad(x, (pad, 0)), w1, b1, dilation=d))
        d1 = h1 * masks[k][0] if masks else h1
        h2 = F.relu(F.conv1d(F.pad(d1, (pad, 0)), w2, b2, dilation=d))
        branch = h2 * masks[k][1] if masks else h2
        res = F.conv1d(x, blocks[k][4], blocks[k][5]) if len(blocks[k]) == 6 else x
        x = F.relu(res + branch)
        skip_sum = skip_sum + branch
    return skip_sum[:, :, -1]


def gen_tcn(outdir):
    cfg = TCN
    B, C, T, Fn = cfg["B"], cfg["in_c"], cfg["len"], cfg["filters"]
    n_params = tcn_param_count(C, Fn, cfg["kernel"], cfg["dilations"])
    x0 = det((B, C, T), 401, -1.0, 1.0)
    p0 = det((n_params,), 402, -0.4, 0.4)
    dout = det((B, Fn), 403, -1.0, 1.0)
    res = {"n_params": torch.tensor([float(n_params)])}
    rng = Rng(7)
    p_drop = 0.3
    masks = []
    for _ in cfg["dilations"]:   # per block: m1 then m2, [B*F] each, as tcn_block_forward
        m1 = torch.tensor(rng.dropout_mask(B * Fn, p_drop), dtype=torch.float64)
        m2 = torch.tensor(rng.dropout_mask(B * Fn, p_drop), dtype=torch.float64)
        masks.append((m1.view(B, Fn, 1), m2.view(B, Fn, 1)))
    for mode, m in (("eval", None), ("train", masks)):
        x = x0.clone().requires_grad_(True)
        p = p0.clone().requires_grad_(True)
        out = tcn_reference(x, p, m, cfg["kernel"], cfg["dilations"], Fn)
        (out * dout).sum().backward()
        res[f"{mode}_out"] = out
        res[f"{mode}_dx"] = x.grad
        res[f"{mode}_dparams"] = p.grad
    write_fixture(os.path.join(outdir, "seq_tcn.bin.gz"), res)


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(1)
    gen_batchnorm(outdir)
    gen_lstm(outdir)
    gen_tcn(outdir)


if __name__ == "__main__":
    main()
