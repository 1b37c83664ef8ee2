#!/usr/bin/python3
"""Write the PyTorch parity fixtures for core/'s dense and convolutional layers and Adam
(tests/test_layers.c reads them) and for whole beta-VAEs, the presets fashion, ecg-cnn,
ecg-tcn and ecg-lstm and ecg-cnn with the MSE reconstruction loss (tests/test_vae.c).

Run with Debian's python3-torch:  /usr/bin/python3 tests/gen_fixtures.py tests/fixtures
(or `make fixtures`, which also runs gen_fixtures_seq.py). The reference is computed in
float64 and stored as float32, so its own rounding error (~1e-16 relative) is negligible
next to the C code's float32 error. Inputs and weights are not stored: det_fill() below
reproduces tests/fixture.c's generator bit for bit, and the C test regenerates them.
The output is the same bytes on every run.
"""
import gzip
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

from gen_fixtures_seq import M64, Rng, tcn_param_count, tcn_reference

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


def f32(t):
    """t rounded to float32, as a fixture stores it (kept in float64)."""
    return t.detach().to(torch.float32).to(torch.float64)


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


# ------------------------------------------------------------------ whole beta-VAEs
# Each model is written out layer by layer as core/nn/vae.c's presets build it, and lists its
# layers with parameters in core/nn/net.c's block order (encoder then decoder; weight, bias,
# bn's running statistics) as (kind, module) pairs: `layers`. tests/test_vae.c reads the
# fixtures of vae_fixture below.
LATENT = 16


class Linear(torch.nn.Linear):
    """nn.Linear that keeps its input and output: its weight gradient is stored as the two
    factors dY^T X (a few kB) rather than as the matrix (megabytes for 384 -> 2048)."""

    def forward(self, x):
        self.x = x
        self.y = F.linear(x, self.weight, self.bias)
        self.y.retain_grad()
        return self.y


class Tcn(torch.nn.Module):
    """core/nn/tcn.c's stack as gen_fixtures_seq.tcn_reference computes it, on one flat
    parameter run (core/nn/tcn.h's order), with the dropout masks of the C run."""

    def __init__(self, in_c, filters, kernel, dilations, rate):
        super().__init__()
        self.filters, self.kernel, self.dilations, self.rate = filters, kernel, dilations, rate
        self.flat = torch.nn.Parameter(torch.zeros(tcn_param_count(in_c, filters, kernel,
                                                                   dilations)))

    def forward(self, x, rng):
        B = x.shape[0]
        masks = []
        for _ in self.dilations:      # per block m1 then m2, [B * F] each, as tcn_forward
            m1 = torch.tensor(rng.dropout_mask(B * self.filters, self.rate))
            m2 = torch.tensor(rng.dropout_mask(B * self.filters, self.rate))
            masks.append((m1.view(B, self.filters, 1), m2.view(B, self.filters, 1)))
        return tcn_reference(x, self.flat, masks, self.kernel, self.dilations, self.filters)


class EcgDecoder(torch.nn.Module):
    """core/nn/vae.c ECG_DEC: FC 256, 384, 2048, bn, then six 1-D deconvolutions to 187."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.ModuleList([Linear(LATENT, 256), Linear(256, 384), Linear(384, 2048)])
        self.bn = torch.nn.BatchNorm1d(2048, eps=1e-5, momentum=0.1)
        spec = [(1024, 64, 0, 0), (64, 64, 0, 0), (64, 64, 0, 0), (64, 32, 1, 1), (32, 32, 0, 0),
                (32, 1, 0, 0)]
        self.deconv = torch.nn.ModuleList([
            torch.nn.ConvTranspose1d(i, o, 3, 2, p, output_padding=op) for i, o, p, op in spec])
        self.layers = ([("linear", m) for m in self.fc] + [("bn", self.bn)] +
                       [("conv", m) for m in self.deconv])

    def forward(self, z):
        h = F.relu(self.fc[2](F.relu(self.fc[1](F.relu(self.fc[0](z))))))
        h = self.bn(h).reshape(-1, 1024, 2)
        for k, m in enumerate(self.deconv):
            h = m(h) if k == len(self.deconv) - 1 else F.relu(m(h))
        return h.reshape(-1, 1, 1, 187)


class Vae(torch.nn.Module):
    """An encoder (features), the (mu, logvar) head and a decoder, as core/nn/vae.c joins them."""

    def __init__(self, enc, feat, dec):
        super().__init__()
        self.enc, self.head, self.dec = enc, Linear(feat, 2 * LATENT), dec
        self.layers = enc.layers + [("linear", self.head)] + dec.layers

    def forward(self, x, eps, rng):
        h = self.head(self.enc(x, rng))
        mu, logvar = h[:, :LATENT], h[:, LATENT:]
        z = mu + torch.exp(0.5 * logvar) * eps
        return mu, logvar, self.dec(z)


class FashionEncoder(torch.nn.Module):
    """core/nn/vae.c FASHION_ENC: two k3 s2 p1 convs (28 -> 14 -> 7), FC 128, FC 128."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = torch.nn.Conv2d(1, 32, 3, 2, 1), torch.nn.Conv2d(32, 32, 3, 2, 1)
        self.l1, self.l2 = Linear(1568, 128), Linear(128, 128)
        self.layers = [("conv", self.c1), ("conv", self.c2), ("linear", self.l1),
                       ("linear", self.l2)]

    def forward(self, x, rng):
        h = F.relu(self.c2(F.relu(self.c1(x))))
        return F.relu(self.l2(F.relu(self.l1(h.flatten(1)))))


class FashionDecoder(torch.nn.Module):
    """core/nn/vae.c FASHION_DEC: FC 128, FC 1568, 32x7x7, two k3 s2 deconvolutions to 28."""

    def __init__(self):
        super().__init__()
        self.l1, self.l2 = Linear(LATENT, 128), Linear(128, 1568)
        self.t1 = torch.nn.ConvTranspose2d(32, 32, 3, 2, 1, output_padding=1)
        self.t2 = torch.nn.ConvTranspose2d(32, 1, 3, 2, 1, output_padding=1)
        self.layers = [("linear", self.l1), ("linear", self.l2), ("conv", self.t1),
                       ("conv", self.t2)]

    def forward(self, z):
        g = F.relu(self.l2(F.relu(self.l1(z)))).reshape(-1, 32, 7, 7)
        return self.t2(F.relu(self.t1(g)))


class EcgCnnEncoder(torch.nn.Module):
    """core/nn/vae.c ECG_CNN_ENC: three k4 s2 p1 1-D convs (187 -> 93 -> 46 -> 23), FC 256."""

    def __init__(self):
        super().__init__()
        self.convs = torch.nn.ModuleList([torch.nn.Conv1d(c, 64, 4, 2, 1) for c in (1, 64, 64)])
        self.fc = Linear(64 * 23, 256)
        self.layers = [("conv", m) for m in self.convs] + [("linear", self.fc)]

    def forward(self, x, rng):
        h = x.reshape(-1, 1, 187)
        for m in self.convs:
            h = F.relu(m(h))
        return F.relu(self.fc(h.flatten(1)))


class EcgTcnEncoder(torch.nn.Module):
    """core/nn/vae.c ECG_TCN_ENC: tcn(64,4,0.05,1,2,4,8,16,32), its last step."""

    def __init__(self):
        super().__init__()
        self.tcn = Tcn(1, 64, 4, [1, 2, 4, 8, 16, 32], 0.05)
        self.layers = [("tcn", self.tcn)]

    def forward(self, x, rng):
        return self.tcn(x.reshape(-1, 1, 187), rng)


class EcgLstmEncoder(torch.nn.Module):
    """core/nn/vae.c ECG_LSTM_ENC: lstm(64) over the 187 steps, its last hidden state."""

    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(1, 64, batch_first=True)
        self.layers = [("lstm", self.lstm)]

    def forward(self, x, rng):
        out, _ = self.lstm(x.reshape(-1, 187, 1))
        return out[:, -1]


def fan_in(weight):
    # PyTorch's rule: dim 1 times the kernel size, for Linear, Conv and ConvTranspose alike.
    return weight.shape[1] * int(np.prod(weight.shape[2:]))


def lstm_runs(m):
    """core/nn/net.c's lstm layer: weight = W_ih, W_hh; bias = b_ih, b_hh."""
    return [m.weight_ih_l0, m.weight_hh_l0], [m.bias_ih_l0, m.bias_hh_l0]


def fill_run(tensors, seed, lo, hi):
    """One det_fill stream over tensors laid end to end, as C fills one run of floats."""
    flat = det_fill(sum(t.numel() for t in tensors), seed, lo, hi)
    off = 0
    for t in tensors:
        t.copy_(flat[off:off + t.numel()].reshape(t.shape))
        off += t.numel()


def parity_weights(layers):
    """tests/test_vae.c parity_weights: the k-th layer with parameters draws its weight from
    stream 100 + 2k and its bias from 101 + 2k, uniform in +-1/sqrt(fan_in) (a tcn, with no
    single fan-in, uses 1/sqrt(filters * kernel) for its whole run; an lstm 1/sqrt(H)); bn
    draws gamma from [0.5, 1.5) and beta from [-0.5, 0.5) and starts at mean 0, var 1."""
    with torch.no_grad():
        for k, (kind, m) in enumerate(layers):
            ws, bs = 100 + 2 * k, 101 + 2 * k
            if kind == "bn":
                fill_run([m.weight], ws, 0.5, 1.5)
                fill_run([m.bias], bs, -0.5, 0.5)
            elif kind == "tcn":
                bound = float(np.float32(1.0) / np.sqrt(np.float32(m.filters * m.kernel)))
                fill_run([m.flat], ws, -bound, bound)
            elif kind == "lstm":
                bound = float(np.float32(1.0) / np.sqrt(np.float32(m.hidden_size)))
                w, b = lstm_runs(m)
                fill_run(w, ws, -bound, bound)
                fill_run(b, bs, -bound, bound)
            else:
                bound = float(np.float32(1.0) / np.sqrt(np.float32(fan_in(m.weight))))
                fill_run([m.weight], ws, -bound, bound)
                fill_run([m.bias], bs, -bound, bound)


def vae_fixture(outdir, name, model, in_shape, recon_kind, adam=False):
    """Forward (train mode), loss and backward of one batch of B = 4 with beta 0.5, C 2.
    Stored: mu, logvar, the decoder's output ("logits", values for MSE), recon, kl, loss;
    each linear layer k's gradient as its input pK_x and output gradient pK_dy (the C
    test forms dY^T X and sum dY), every other layer's gradient in grads_rest (core
    order), bn's running statistics after the step in bn_state; with adam, one
    torch.optim.Adam step (lr 1e-3) from these gradients, params_after_adam (core order)."""
    B, beta, capacity = 4, 0.5, 2.0
    parity_weights(model.layers)
    model.train()
    x = det((B,) + in_shape, 1, 0, 1)
    eps = det((B, LATENT), 2, -1.7, 1.7)
    rng = Rng(~7 & M64)    # vae_trainer_new(..., seed 7) seeds shard 0's stream with ~7
    mu, logvar, out = model(x, eps, rng)
    if recon_kind == "bce":
        recon = F.binary_cross_entropy_with_logits(out, x, reduction="sum") / B
    else:
        recon = F.mse_loss(out, x, reduction="sum") / B
    kl = (-0.5 * (1 + logvar - mu ** 2 - logvar.exp())).sum() / B
    loss = recon + beta * (kl - capacity).abs()
    loss.backward()
    res = {"mu": mu, "logvar": logvar, "logits": out, "recon": recon.reshape(1),
           "kl": kl.reshape(1), "loss": loss.reshape(1)}
    rest, state, core_params = [], [], []
    for k, (kind, m) in enumerate(model.layers):
        if kind == "tcn":
            params = [m.flat]
        elif kind == "lstm":
            w, b = lstm_runs(m)
            params = w + b
        else:
            params = [m.weight, m.bias]
        core_params += params
        if kind == "linear":
            res["p%d_x" % k], res["p%d_dy" % k] = m.x, m.y.grad
        else:
            rest += [p.grad for p in params]
        if kind == "bn":
            state += [m.running_mean, m.running_var]
    res["grads_rest"] = torch.cat([g.flatten() for g in rest])
    if state:
        res["bn_state"] = torch.cat(state)
    if adam:
        # From the gradients exactly as the C test holds them (float32, a linear layer's
        # formed from its stored factors), so that the step checks Adam alone.
        assert not state, "params_after_adam is the block without bn's running statistics"
        for k, (kind, m) in enumerate(model.layers):
            if kind == "linear":
                x32, dy32 = f32(m.x), f32(m.y.grad)
                m.weight.grad, m.bias.grad = f32(dy32.T @ x32), f32(dy32.sum(0))
        for p in core_params:
            p.grad = f32(p.grad)
        opt = torch.optim.Adam(core_params, lr=1e-3)
        opt.step()
        res["params_after_adam"] = torch.cat([p.detach().flatten() for p in core_params])
    write(os.path.join(outdir, name + ".bin.gz"), res)


def vae_fixtures(outdir):
    fashion = Vae(FashionEncoder(), 128, FashionDecoder())
    vae_fixture(outdir, "vae_fashion", fashion, (1, 28, 28), "bce", adam=True)
    ecg = (1, 1, 187)
    for name, enc, feat in (("cnn", EcgCnnEncoder, 256), ("tcn", EcgTcnEncoder, 64),
                            ("lstm", EcgLstmEncoder, 64)):
        vae_fixture(outdir, "vae_ecg_" + name, Vae(enc(), feat, EcgDecoder()), ecg, "bce")
    vae_fixture(outdir, "vae_ecg_cnn_mse", Vae(EcgCnnEncoder(), 256, EcgDecoder()), ecg, "mse")


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(1)      # one summation order, whatever the machine
    layer_fixtures(outdir)
    activation_fixture(outdir)
    adam_fixture(outdir)
    vae_fixtures(outdir)


if __name__ == "__main__":
    main()
