# PyTorch references for core/conv.c and core/linear.c: conv2d (1x1, KxK, stride, padding, dilation,
# groups), depthwise conv, matmul and linear. Computed in float64 from float32 inputs, then cast, so the
# reference is exact to float32 rounding. Writes tests/ref/ops_conv.h5 (see common.py for the layout).
import torch
import torch.nn.functional as F

from common import open_ref, close_ref, save_case

# common.open_ref stores torch.__version__, a str subclass that h5py cannot convert: pass a plain str.
torch.__version__ = str(torch.__version__)

torch.manual_seed(20261123)

# name: (N, Cin, Cout, H, W, K, stride, pad, dilation, groups, bias)
CONV = {
    "conv1x1": (2, 5, 7, 6, 5, 1, 1, 0, 1, 1, True),
    "conv1x1_s2": (2, 5, 7, 7, 6, 1, 2, 0, 1, 1, True),
    "conv3x3_s1": (2, 3, 4, 7, 6, 3, 1, 0, 1, 1, True),
    "conv3x3_s1_p1": (2, 3, 4, 7, 6, 3, 1, 1, 1, 1, True),
    "conv3x3_s2_p1": (2, 3, 4, 9, 7, 3, 2, 1, 1, 1, True),
    "conv3x3_d2_p2": (2, 3, 4, 9, 8, 3, 1, 2, 2, 1, True),
    "conv3x3_nobias": (2, 3, 5, 5, 7, 3, 1, 1, 1, 1, False),
    "conv3x3_g2": (2, 4, 6, 7, 5, 3, 1, 1, 1, 2, True),
    "conv3x3_g4_s2": (2, 8, 8, 7, 7, 3, 2, 1, 1, 4, True),
    "conv5x5_p2": (2, 3, 4, 7, 6, 5, 1, 2, 1, 1, True),
    "conv7x7_s2_p3": (1, 3, 4, 11, 9, 7, 2, 3, 1, 1, True),
    # wider maps at stride 1 (full GEMM column vectors, padding 0 to 3)
    "conv3x3_p1_wide": (2, 4, 6, 10, 12, 3, 1, 1, 1, 1, True),
    "conv3x3_g2_wide": (2, 4, 6, 9, 11, 3, 1, 1, 1, 2, True),
    "conv5x5_p2_wide": (1, 3, 5, 9, 10, 5, 1, 2, 1, 1, False),
    "conv3x3_p0_wide": (2, 3, 4, 10, 11, 3, 1, 0, 1, 1, True),
    "conv3x3_p3_wide": (1, 2, 3, 8, 9, 3, 1, 3, 1, 1, True),
}

# name: (N, C, H, W, K, stride, pad, dilation, bias)
DW = {
    "dw3x3_s1": (2, 5, 7, 6, 3, 1, 1, 1, True),
    "dw3x3_s1_p0": (2, 5, 7, 6, 3, 1, 0, 1, True),
    "dw3x3_s2": (2, 5, 9, 7, 3, 2, 1, 1, True),
    "dw5x5_s1": (2, 5, 7, 8, 5, 1, 2, 1, True),
    "dw5x5_s2": (2, 5, 9, 9, 5, 2, 2, 1, True),
    "dw3x3_d2": (2, 5, 9, 7, 3, 1, 2, 2, True),
    "dw3x3_nobias": (2, 4, 6, 5, 3, 2, 1, 1, False),
    "dw3x3_s1_p3": (1, 3, 5, 6, 3, 1, 3, 1, True),
    "dw3x3_s3": (2, 3, 10, 8, 3, 3, 1, 1, True),
    "dw4x4_s2_p1": (2, 3, 8, 9, 4, 2, 1, 1, True),
    "dw7x7_s2_p3": (1, 4, 11, 10, 7, 2, 3, 1, True),
    "dw7x7_s1_p3": (1, 3, 9, 8, 7, 1, 3, 1, True),
    "dw1x1": (2, 3, 4, 5, 1, 1, 0, 1, True),
}


def leaf(*shape):
    return torch.randn(*shape, dtype=torch.float32).double().requires_grad_(True)


def run(f, name, inputs, out, attrs):
    gout = torch.randn(out.shape, dtype=torch.float32).double()
    (out * gout).sum().backward()
    save_case(f, name, inputs, out, grads=[t.grad for t in inputs], gout=gout, attrs=attrs)


def main():
    f, path = open_ref("ops_conv")
    for name, (n, cin, cout, h, w, k, s, p, d, g, has_b) in CONV.items():
        x = leaf(n, cin, h, w)
        wt = leaf(cout, cin // g, k, k)
        ins = [x, wt] + ([leaf(cout)] if has_b else [])
        y = F.conv2d(x, wt, ins[2] if has_b else None, stride=s, padding=p, dilation=d, groups=g)
        run(f, name, ins, y, dict(stride=s, pad=p, dilation=d, groups=g, bias=int(has_b)))
    for name, (n, c, h, w, k, s, p, d, has_b) in DW.items():
        x = leaf(n, c, h, w)
        wt = leaf(c, 1, k, k)
        ins = [x, wt] + ([leaf(c)] if has_b else [])
        y = F.conv2d(x, wt, ins[2] if has_b else None, stride=s, padding=p, dilation=d, groups=c)
        run(f, name, ins, y, dict(stride=s, pad=p, dilation=d, groups=c, bias=int(has_b)))
    a, b = leaf(5, 7), leaf(7, 3)
    run(f, "matmul", [a, b], a @ b, {})
    for name, has_b in (("linear", True), ("linear_nobias", False)):
        x, w = leaf(4, 6), leaf(5, 6)
        ins = [x, w] + ([leaf(5)] if has_b else [])
        run(f, name, ins, F.linear(x, w, ins[2] if has_b else None), dict(bias=int(has_b)))
    close_ref(f, path)


if __name__ == "__main__":
    main()
