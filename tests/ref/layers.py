# PyTorch references for layers/blocks.c: each block op (ibn, fused, tucker, gcibn, skip) as a torch.nn
# module with exactly the parameter names ib_block_init gives ("conv.0.0.weight", ..., projection conv and
# BN last), random weights and BN running statistics, run in training mode (batch statistics, running
# statistics updated) and in eval mode. Computed in float64 from float32 values, then cast.
# Writes tests/ref/layers.h5; per case group:
#   attrs: op, cin, out, stride, kernel, expand, groups, r_in, r_out, se, act (the ib_block_cfg)
#   x, gout (loss = sum(out * gout)), params/<name>, buffers/<name> (before any step)
#   (train runs first; eval then uses the running statistics the training step left)
#   train/{out, gx, grad/<name>, buffers/<name> (running statistics after the step)}
#   eval/{out, gx, grad/<name>}
import torch
import torch.nn as nn
import torch.nn.functional as F

import os
import h5py

from common import HERE, close_ref

torch.__version__ = str(torch.__version__)   # h5py cannot store torch's version string subclass
torch.manual_seed(20261123)


def make_divisible(v, divisor=8):
    """torchvision's _make_divisible (layers/modules.c: ib_make_divisible)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class SqueezeExcite(nn.Module):
    """MobileNetV3's: pool, 1x1 conv + ReLU, 1x1 conv + h-sigmoid, channel scale (layers/modules.c)."""

    def __init__(self, c, squeeze):
        super().__init__()
        self.fc1 = nn.Conv2d(c, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, c, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        s = F.hardsigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s


class Block(nn.Module):
    """One block of layers/blocks.c: conv-BN-act stages, optional SE, projection conv + BN, residual."""

    def __init__(self, op, cin, out, stride, kernel=3, expand=1, groups=1, r_in=0.25, r_out=0.75, se=0.0,
                 act="relu6"):
        super().__init__()
        self.residual = stride == 1 and cin == out
        self.op = op
        if op == "skip":
            return
        Act = {"relu6": nn.ReLU6, "hswish": nn.Hardswish}[act]
        hid = make_divisible(r_out * out) if op == "tucker" else cin * expand
        layers = []

        def stage(ci, co, k, s, g):
            layers.append(nn.Sequential(nn.Conv2d(ci, co, k, s, (k - 1) // 2, groups=g, bias=False),
                                        nn.BatchNorm2d(co), Act()))

        if op == "ibn":
            if expand != 1:
                stage(cin, hid, 1, 1, 1)
            stage(hid, hid, kernel, stride, hid)
        elif op == "fused":
            stage(cin, hid, kernel, stride, 1)
        elif op == "gcibn":
            stage(cin, hid, kernel, stride, groups)
        elif op == "tucker":
            mid = make_divisible(r_in * cin)
            stage(cin, mid, 1, 1, 1)
            stage(mid, hid, kernel, stride, 1)
        if se > 0:
            layers.append(SqueezeExcite(hid, make_divisible(hid * se)))
        layers.append(nn.Conv2d(hid, out, 1, bias=False))
        layers.append(nn.BatchNorm2d(out))
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        if self.op == "skip":
            return x
        h = self.conv(x)
        return x + h if self.residual else h


# name: block config (N = 2 images of H x W)
CASES = {
    "ibn_e1_k3_s1": dict(op="ibn", cin=16, out=16, stride=1, kernel=3, expand=1),
    "ibn_e6_k3_s1": dict(op="ibn", cin=8, out=8, stride=1, kernel=3, expand=6),
    "ibn_e6_k5_s2": dict(op="ibn", cin=8, out=16, stride=2, kernel=5, expand=6),
    "ibn_e6_k7_s1_se_hswish": dict(op="ibn", cin=8, out=8, stride=1, kernel=7, expand=6, se=0.25, act="hswish"),
    "fused_e4_k3_s1": dict(op="fused", cin=8, out=8, stride=1, kernel=3, expand=4),
    "fused_e3_k5_s2": dict(op="fused", cin=8, out=16, stride=2, kernel=5, expand=3),
    "tucker_k3_s1": dict(op="tucker", cin=16, out=16, stride=1, kernel=3, r_in=0.25, r_out=0.75),
    "tucker_k5_s2": dict(op="tucker", cin=16, out=24, stride=2, kernel=5, r_in=0.75, r_out=0.25),
    "gcibn_g2_k3_s1": dict(op="gcibn", cin=8, out=8, stride=1, kernel=3, expand=4, groups=2),
    "gcibn_g4_k5_s2": dict(op="gcibn", cin=8, out=16, stride=2, kernel=5, expand=4, groups=4),
    "gcibn_g4_k7_s1": dict(op="gcibn", cin=8, out=8, stride=1, kernel=7, expand=4, groups=4),
    "skip": dict(op="skip", cin=8, out=8, stride=1),
}
N, H, W = 2, 7, 7


def randomise(block):
    """Random weights and running statistics, of the scale a trained network has, in float32 values."""
    for name, p in block.named_parameters():
        with torch.no_grad():
            if p.dim() == 4:
                fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                p.copy_(torch.randn(p.shape) * (2.0 / fan_in) ** 0.5)
            elif name.endswith("weight"):   # BN weight
                p.copy_(torch.rand(p.shape) + 0.5)
            else:                           # BN and SE biases
                p.copy_(torch.randn(p.shape) * 0.2)
    for name, b in block.named_buffers():
        if name.endswith("running_mean"):
            b.copy_(torch.randn(b.shape) * 0.3)
        elif name.endswith("running_var"):
            b.copy_(torch.rand(b.shape) * 1.5 + 0.5)


def f32(t):
    return t.detach().float().numpy()


def run(block, x, gout, training):
    block.train(training)
    block.zero_grad()
    xl = x.clone().requires_grad_(True)
    out = block(xl)
    (out * gout).sum().backward()
    grads = {n: p.grad.clone() for n, p in block.named_parameters()}
    return out, xl.grad, grads


def main():
    # common.open_ref's attributes, with the compact group format: ~90 groups of small datasets
    path = os.path.join(HERE, "layers.h5")
    f = h5py.File(path + ".tmp", "w", libver="latest")
    f.attrs["format"] = "ibnas-ref"
    f.attrs["torch"] = str(torch.__version__)
    for case, cfg in CASES.items():
        full = dict(kernel=3, expand=1, groups=1, r_in=0.25, r_out=0.75, se=0.0, act="relu6")
        full.update(cfg)
        block = Block(**full)
        randomise(block)
        block.double()
        x = torch.randn(N, full["cin"], H, W).double()
        params = {n: p.detach().clone() for n, p in block.named_parameters()}
        buffers = {n: b.detach().clone() for n, b in block.named_buffers() if not n.endswith("num_batches_tracked")}

        g = f.create_group(case)
        for k, v in full.items():
            g.attrs[k] = v
        g.create_dataset("x", data=f32(x))
        for n, t in params.items():
            g.create_dataset("params/" + n, data=f32(t))
        for n, t in buffers.items():
            g.create_dataset("buffers/" + n, data=f32(t))

        with torch.no_grad():   # the upstream gradient needs the output's shape (eval: buffers untouched)
            block.eval()
            gout = torch.randn(block(x).shape).double()
        g.create_dataset("gout", data=f32(gout))
        for mode in ("train", "eval"):
            out, gx, grads = run(block, x, gout, mode == "train")
            m = g.create_group(mode)
            m.create_dataset("out", data=f32(out))
            m.create_dataset("gx", data=f32(gx))
            for n, t in grads.items():
                m.create_dataset("grad/" + n, data=f32(t))
            if mode == "train":
                for n, b in block.named_buffers():
                    if not n.endswith("num_batches_tracked"):
                        m.create_dataset("buffers/" + n, data=f32(b))
        print(f"{case}: {len(params)} params, {len(buffers)} buffers, out {tuple(out.shape)}")
    close_ref(f, path)


if __name__ == "__main__":
    main()
