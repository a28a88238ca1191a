# Reference for the DeepLabv3+-lite head (tasks/segment.c): the head alone on given low- and high-stride
# features, in training mode (batch statistics), its logits upsampled to the input size, the weighted pixel
# cross-entropy with an ignore index, and the gradients of that loss with respect to both features and
# every head parameter. Parameter names are ibnas's (seg.*), so the C test loads them by name.
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


head = Head().train()
params = {}
for prefix, m in head.names().items():
    nn.init.normal_(m[0].weight, 0, 0.5)
    nn.init.uniform_(m[1].weight, 0.5, 1.5)
    nn.init.normal_(m[1].bias, 0, 0.1)
    params[prefix + ".0.weight"] = m[0].weight
    params[prefix + ".1.weight"] = m[1].weight
    params[prefix + ".1.bias"] = m[1].bias
nn.init.normal_(head.cls.weight, 0, 0.5)
nn.init.normal_(head.cls.bias, 0, 0.1)
params["seg.classifier.weight"] = head.cls.weight
params["seg.classifier.bias"] = head.cls.bias

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
close_ref(f, path)
print("wrote", path)
