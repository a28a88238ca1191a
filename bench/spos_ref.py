#!/usr/bin/python3
"""PyTorch reference of uniform path sampling (SPOS) over a search space whose layers choose between op
types with separate weights, to tell a property of such supernets from a defect of ibnas' (docs/SEARCH.md,
"Why the mobiledets supernet does not learn").

    /usr/bin/python3 bench/spos_ref.py SPACE.space.json TRAIN.h5 VAL.h5 [--epochs-run 3] [--epochs 20]

The space may list several op types per stage, but one value of each other field (kernel, expand, r_in,
r_out): every choice of a layer is then one op with its own weights, as in an ibnas supernet of that space,
and there is no sharing inside an op to reproduce. Skip is allowed after a stage's first layer, as in
ibnas. The recipe is `ibnas supernet train --sampling uniform` with the flags the probes used: batch 64, SGD
nesterov momentum 0.9, lr 0.1, weight decay 4e-5 on every parameter, a per-step cosine over --epochs with
0.3 warm-up epochs, gradient norm clipped to 2, label smoothing 0.1, pad-4 crop and flip, 10% of the
training images held out, one thread. Each epoch prints the mean training loss of the sampled paths (ln 50
= 3.912 for 50 classes is chance) and the validation top-1 of one random path after BN recalibration on
20 training batches. The packs are ibnas packs (`ibnas pack`: images uint8 N x H x W x 3, labels int32).
"""
import argparse
import json
import math
import os
import random
import sys

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))
from layers import Block  # noqa: E402  (the parity tests' PyTorch block)

MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], np.float32) * 255


def one(stage, key, default):
    v = stage.get(key, [default])
    if len(v) != 1:
        sys.exit(f"spos_ref: stage {stage}: one value of {key} only (this reference has no sharing inside an op)")
    return v[0]


class Supernet(nn.Module):
    def __init__(self, space, classes):
        super().__init__()
        st = space["stem"]
        self.stem = nn.Sequential(nn.Conv2d(3, st["out"], st["kernel"], st["stride"], st["kernel"] // 2, bias=False),
                                  nn.BatchNorm2d(st["out"]), nn.ReLU6())
        self.layers = nn.ModuleList()
        cin = st["out"]
        for s in space["stages"]:
            kw = dict(kernel=one(s, "kernel", 3), expand=one(s, "expand", 1), r_in=one(s, "r_in", 0.25),
                      r_out=one(s, "r_out", 0.75))
            for i in range(s["layers"]):
                stride = s["stride"] if i == 0 else 1
                ops = [o for o in s["op"] if o != "skip" or (i > 0 and cin == s["out"])]
                self.layers.append(nn.ModuleDict({o: Block(o, cin, s["out"], stride, **kw) for o in ops}))
                cin = s["out"]
        h = space["head"]["out"]
        self.head = nn.Sequential(nn.Conv2d(cin, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU6())
        self.fc = nn.Linear(h, classes)
        self.drop = nn.Dropout(space["head"].get("dropout", 0.0))

    def sample(self, rng):
        return [rng.choice(sorted(m.keys())) for m in self.layers]

    def forward(self, x, path):
        x = self.stem(x)
        for m, o in zip(self.layers, path):
            x = m[o](x)
        return self.fc(self.drop(self.head(x).mean((2, 3))))


def batches(images, labels, idx, batch, rng, aug, pad=4):
    idx = list(idx)
    if aug:
        rng.shuffle(idx)
    for b in range(0, len(idx) - (batch - 1 if aug else 0), batch):
        sel = sorted(idx[b:b + batch])
        x = images[sel].astype(np.float32)
        if aug:
            n, h, w, _ = x.shape
            xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
            for i in range(n):
                dy, dx = rng.randrange(2 * pad + 1), rng.randrange(2 * pad + 1)
                x[i] = xp[i, dy:dy + h, dx:dx + w]
                if rng.random() < 0.5:
                    x[i] = x[i, :, ::-1]
        x = (x - MEAN) / STD
        yield torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))), torch.from_numpy(labels[sel].astype(np.int64))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("space")
    ap.add_argument("train")
    ap.add_argument("val")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--epochs-run", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)
    space = json.load(open(a.space))
    with h5py.File(a.train, "r") as f:
        images, labels = f["images"][:], f["labels"][:]
        classes = int(f.attrs["n_classes"])
    with h5py.File(a.val, "r") as f:
        vimages, vlabels = f["images"][:], f["labels"][:]
    order = list(range(len(labels)))
    random.Random(a.seed + 1).shuffle(order)
    train_idx = sorted(order[len(order) // 10:])
    net = Supernet(space, classes)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=4e-5)
    spe = len(train_idx) // 64
    total, warm = a.epochs * spe, 0.3 * spe
    step = 0
    for e in range(a.epochs_run):
        net.train()
        loss_sum = n_sum = 0
        for x, y in batches(images, labels, train_idx, 64, rng, True):
            lr = 0.1 * (step + 1) / warm if step < warm else 0.05 * (1 + math.cos(math.pi * step / total))
            for g in opt.param_groups:
                g["lr"] = lr
            path = net.sample(rng)
            loss = F.cross_entropy(net(x, path), y, label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)   # ops off the path get no gradient and no step
            loss.backward()
            nn.utils.clip_grad_norm_([p for p in net.parameters() if p.grad is not None], 2.0)
            opt.step()
            loss_sum += loss.item() * len(y)
            n_sum += len(y)
            step += 1
        path = net.sample(rng)
        for m in net.modules():   # recalibrate: cumulative averages over 20 training batches
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None
        with torch.no_grad():
            for k, (x, _) in enumerate(batches(images, labels, train_idx, 64, rng, True)):
                if k == 20:
                    break
                net(x, path)
            net.eval()
            correct = sum((net(x, path).argmax(1) == y).sum().item()
                          for x, y in batches(vimages, vlabels, range(len(vlabels)), 250, rng, False))
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 0.1
        print(f"epoch {e + 1}: train loss {loss_sum / n_sum:.4f} (chance {math.log(classes):.3f}), "
              f"a random path's val top-1 {correct / len(vlabels):.4f}", flush=True)


if __name__ == "__main__":
    main()
