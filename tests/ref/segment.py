# Reference for the DeepLabv3+-lite head (tasks/segment.c): the head alone on given low- and high-stride
# features, in training mode (batch statistics), its logits upsampled to the input size, the weighted pixel
# cross-entropy with an ignore index, and the gradients of that loss with respect to both features and
# every head parameter. Parameter names are ibnas's (seg.*), so the C test loads them by name.
# Group bifpn/: the same for the BiFPN head (tasks/seg_bifpn.c) on three levels, two layers, with its fast
# normalised fusion weights among the parameters.
# Run: /usr/bin/python3 tests/ref/segment.py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from common import open_ref, close_ref

torch.manual_seed(0)
N, CH, CL, ASPP, LOW, DEC, CLASSES = 2, 12, 6, 8, 4, 8, 5
H16, W16, H4, W4, H, W = 3, 2, 9, 7, 36, 26
RATES = (2, 3)
IGNORE = 255


def cba(cin, cout, k=1, groups=1, dil=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=dil * (k - 1) // 2, dilation=dil, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU())


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.a0 = cba(CH, ASPP)
        self.a1dw, self.a1pw = cba(CH, CH, 3, CH, RATES[0]), cba(CH, ASPP)
        self.a2dw, self.a2pw = cba(CH, CH, 3, CH, RATES[1]), cba(CH, ASPP)
        self.pool = cba(CH, ASPP)
        self.proj = cba(4 * ASPP, ASPP)
        self.reduce = cba(CL, LOW)
        self.fdw, self.fpw = cba(ASPP + LOW, ASPP + LOW, 3, ASPP + LOW), cba(ASPP + LOW, DEC)
        self.cls = nn.Conv2d(DEC, CLASSES, 1)

    def names(self):
        return {"seg.aspp.0": self.a0, "seg.aspp.1.dw": self.a1dw, "seg.aspp.1.pw": self.a1pw, "seg.aspp.2.dw": self.a2dw,
                "seg.aspp.2.pw": self.a2pw, "seg.aspp.pool": self.pool, "seg.aspp.project": self.proj,
                "seg.decoder.reduce": self.reduce, "seg.decoder.fuse.dw": self.fdw, "seg.decoder.fuse.pw": self.fpw}

    def forward(self, lo, hi):
        p = self.pool(F.adaptive_avg_pool2d(hi, 1))
        p = F.interpolate(p, size=hi.shape[2:], mode="bilinear", align_corners=False)
        a = torch.cat([self.a0(hi), self.a1pw(self.a1dw(hi)), self.a2pw(self.a2dw(hi)), p], 1)
        a = F.interpolate(self.proj(a), size=lo.shape[2:], mode="bilinear", align_corners=False)
        d = self.fpw(self.fdw(torch.cat([a, self.reduce(lo)], 1)))
        return F.interpolate(self.cls(d), size=(H, W), mode="bilinear", align_corners=False)


def init_head(cbas, cls, params):
    """Draws every conv + BN pair of cbas (ibnas prefix -> Sequential) and the classifier away from the
    defaults; adds them to params under ibnas's names."""
    for prefix, m in cbas.items():
        nn.init.normal_(m[0].weight, 0, 0.5)
        nn.init.uniform_(m[1].weight, 0.5, 1.5)
        nn.init.normal_(m[1].bias, 0, 0.1)
        params[prefix + ".0.weight"] = m[0].weight
        params[prefix + ".1.weight"] = m[1].weight
        params[prefix + ".1.bias"] = m[1].bias
    nn.init.normal_(cls.weight, 0, 0.5)
    nn.init.normal_(cls.bias, 0, 0.1)
    params["seg.classifier.weight"] = cls.weight
    params["seg.classifier.bias"] = cls.bias
    return params


head = Head().train()
params = init_head(head.names(), head.cls, {})

lo = torch.randn(N, CL, H4, W4, requires_grad=True)
hi = torch.randn(N, CH, H16, W16, requires_grad=True)
z = head(lo, hi)
t = torch.randint(0, CLASSES, (N, H, W))
t[:, ::5, ::3] = IGNORE
w = torch.tensor([0.5, 1.0, 2.0, 1.5, 0.75])
loss = F.cross_entropy(z, t, weight=w, ignore_index=IGNORE)
loss.backward()

f, path = open_ref("segment")
f.attrs["dims"] = np.array([N, CH, CL, ASPP, LOW, DEC, CLASSES, H16, W16, H4, W4, H, W, RATES[0], RATES[1], IGNORE],
                           dtype=np.int64)
f.create_dataset("lo", data=lo.detach().numpy())
f.create_dataset("hi", data=hi.detach().numpy())
f.create_dataset("g_lo", data=lo.grad.numpy())
f.create_dataset("g_hi", data=hi.grad.numpy())
f.create_dataset("logits", data=z.detach().numpy())
f.create_dataset("targets", data=t.numpy().astype(np.int32))
f.create_dataset("class_weights", data=w.numpy())
f.create_dataset("loss", data=np.array([loss.item()], dtype=np.float32))
for name, p in params.items():
    f.create_dataset("params/" + name, data=p.detach().numpy())
    f.create_dataset("grads/" + name, data=p.grad.numpy())

# ---------------------------------------------------------------------------------------------
# BiFPN: levels at strides 4, 8, 16 (sizes halved, rounded up), lateral 1x1 + BN, REPEATS layers of a
# top-down and a bottom-up pass (fast normalised fusion, then depthwise 3x3 + BN + ReLU, 1x1 + BN + ReLU),
# the last layer's outputs upsampled bilinearly to level 0 and fused, a 1x1 classifier, bilinear to H x W.
LC, WB, REPEATS, EPS = (6, 8, 12), 8, 2, 1e-4
LSIZE = ((9, 7), (5, 4), (3, 2))
L = len(LC)


def fuse(w, xs):
    r = F.relu(w)
    r = r / (r.sum() + EPS)
    y = r[0] * xs[0]
    for i in range(1, len(xs)):
        y = y + r[i] * xs[i]
    return y


class Node(nn.Module):
    def __init__(self, inputs):
        super().__init__()
        self.w = nn.Parameter(torch.empty(inputs).uniform_(0.3, 1.5))
        self.dw, self.pw = cba(WB, WB, 3, WB), cba(WB, WB)

    def forward(self, xs):
        return self.pw(self.dw(fuse(self.w, xs)))


class BiFPN(nn.Module):
    def __init__(self):
        super().__init__()
        self.lat = nn.ModuleList([nn.Sequential(nn.Conv2d(c, WB, 1, bias=False), nn.BatchNorm2d(WB)) for c in LC])
        self.td = nn.ModuleList([nn.ModuleList([Node(2) for _ in range(L - 1)]) for _ in range(REPEATS)])
        self.up = nn.ModuleList([nn.ModuleList([Node(3 if l < L - 1 else 2) for l in range(1, L)])
                                 for _ in range(REPEATS)])
        self.merge = nn.Parameter(torch.empty(L).uniform_(0.3, 1.5))
        self.cls = nn.Conv2d(WB, CLASSES, 1)

    def names(self):
        """ibnas names of every conv + BN pair, and of the fusion weights."""
        cbas = {f"seg.bifpn.lateral.{l}": self.lat[l] for l in range(L)}
        fuses = {"seg.bifpn.merge.weight": self.merge}
        for r in range(REPEATS):
            nodes = [(f"seg.bifpn.{r}.td.{l}", self.td[r][l]) for l in range(L - 1)]
            nodes += [(f"seg.bifpn.{r}.up.{l}", self.up[r][l - 1]) for l in range(1, L)]
            for prefix, n in nodes:
                cbas[prefix + ".dw"], cbas[prefix + ".pw"] = n.dw, n.pw
                fuses[prefix + ".fuse.weight"] = n.w
        return cbas, fuses

    def forward(self, feats):
        p = [self.lat[l](feats[l]) for l in range(L)]
        for r in range(REPEATS):
            td = [None] * L
            td[L - 1] = p[L - 1]
            for l in range(L - 2, -1, -1):
                td[l] = self.td[r][l]([p[l], F.interpolate(td[l + 1], size=p[l].shape[2:], mode="nearest")])
            out = [td[0]]
            for l in range(1, L):
                down = F.max_pool2d(out[l - 1], 3, 2, 1)
                xs = [p[l], td[l], down] if l < L - 1 else [p[l], down]
                out.append(self.up[r][l - 1](xs))
            p = out
        m = [p[0]] + [F.interpolate(p[l], size=p[0].shape[2:], mode="bilinear", align_corners=False) for l in range(1, L)]
        z = self.cls(fuse(self.merge, m))
        return F.interpolate(z, size=(H, W), mode="bilinear", align_corners=False)


bif = BiFPN().train()
cbas, fuses = bif.names()
bparams = init_head(cbas, bif.cls, fuses)

feats = [torch.randn(N, c, h, w, requires_grad=True) for c, (h, w) in zip(LC, LSIZE)]
zb = bif(feats)
tb = torch.randint(0, CLASSES, (N, H, W))
tb[:, 1::4, ::3] = IGNORE
lb = F.cross_entropy(zb, tb, weight=w, ignore_index=IGNORE)
lb.backward()
g = f.create_group("bifpn")
g.attrs["dims"] = np.array([N, WB, REPEATS, CLASSES, H, W, IGNORE] + list(LC), dtype=np.int64)
for l in range(L):
    g.create_dataset(f"feat{l}", data=feats[l].detach().numpy())
    g.create_dataset(f"g_feat{l}", data=feats[l].grad.numpy())
g.create_dataset("logits", data=zb.detach().numpy())
g.create_dataset("targets", data=tb.numpy().astype(np.int32))
g.create_dataset("loss", data=np.array([lb.item()], dtype=np.float32))
for name, p in bparams.items():
    g.create_dataset("params/" + name, data=p.detach().numpy())
    g.create_dataset("grads/" + name, data=p.grad.numpy())

close_ref(f, path)
print("wrote", path)
