# Reference for core/pool.c, core/resize.c and core/loss.c: pooling, bilinear/nearest resize,
# cross-entropy (label smoothing, ignore index), KL between softmaxes and smooth-L1, each with its
# output and input gradients from torch, computed in float64 from float32 inputs, stored as float32.
# Run: /usr/bin/python3 tests/ref/ops_pool_loss.py  (writes tests/ref/ops_pool_loss.h5)
import torch
import torch.nn.functional as F

from common import open_ref, close_ref, save_case

# common.open_ref stores torch.__version__, a str subclass that h5py cannot convert: pass a plain str.
torch.__version__ = str(torch.__version__)

torch.manual_seed(20240611)


def leaf(t):
    """float32 values (what the C test reads) promoted to float64 for an exact reference."""
    return t.float().double().requires_grad_(True)


def run(f, name, inputs, fn, ints=None, attrs=None, scalar_gout=None):
    out = fn(*inputs)
    if out.dim() == 0:
        gout = torch.tensor(scalar_gout if scalar_gout is not None else 1.0, dtype=torch.float64)
    else:
        gout = torch.randn(out.shape, dtype=torch.float64).float().double()
    out.backward(gout)
    grads = [x.grad if x.requires_grad else None for x in inputs]
    save_case(f, name, inputs, out, grads=grads, gout=gout.reshape(-1) if out.dim() == 0 else gout,
              ints=ints, attrs=attrs)


def distinct(shape):
    """Distinct values (a random permutation of a grid) so max-pool ties never happen."""
    n = 1
    for s in shape:
        n *= s
    return (torch.randperm(n).double() * 0.05 - n * 0.025).reshape(shape)


def main():
    f, path = open_ref("ops_pool_loss")

    # Pooling.
    run(f, "global_avg_pool", [leaf(torch.randn(2, 3, 5, 7))], lambda x: F.adaptive_avg_pool2d(x, 1))
    for k, s, p in [(3, 2, 1), (2, 2, 0), (3, 1, 1)]:
        run(f, f"avg_pool_k{k}s{s}p{p}", [leaf(torch.randn(2, 3, 9, 7))],
            lambda x: F.avg_pool2d(x, k, s, p, count_include_pad=True), attrs={"k": k, "stride": s, "pad": p})
        run(f, f"max_pool_k{k}s{s}p{p}", [leaf(distinct((2, 3, 9, 7)))],
            lambda x: F.max_pool2d(x, k, s, p), attrs={"k": k, "stride": s, "pad": p})

    # Resize: up, down, mixed, same size, non-integer ratios and torch's exact 2x shortcut (nearest).
    for h, w, ho, wo in [(5, 7, 11, 13), (13, 11, 5, 4), (7, 9, 10, 4), (6, 5, 6, 5), (5, 7, 10, 14), (3, 4, 1, 1)]:
        for mode in ("bilinear", "nearest"):
            kw = {"align_corners": False} if mode == "bilinear" else {}
            run(f, f"resize_{mode}_{h}x{w}_to_{ho}x{wo}", [leaf(torch.randn(2, 3, h, w))],
                lambda x: F.interpolate(x, size=(ho, wo), mode=mode, **kw), attrs={"ho": ho, "wo": wo})

    # Cross-entropy. (N, C) with ignore -1 and smoothing; (N, C, H, W) per pixel with ignore 255.
    t2 = torch.tensor([0, 4, -1, 2, 3, -1, 1])
    for eps in (0.0, 0.1):
        run(f, f"ce_2d_eps{eps}", [leaf(torch.randn(7, 5) * 2)],
            lambda x: F.cross_entropy(x, t2, label_smoothing=eps, ignore_index=-1),
            ints={"targets": t2.numpy()}, attrs={"eps": eps, "ignore_index": -1}, scalar_gout=1.3)
    t4 = torch.randint(0, 5, (2, 3, 4))
    t4[0, 1, 2] = 255
    t4[1, 0, 0] = 255
    t4[1, 2, 3] = 255
    for eps in (0.0, 0.2):
        run(f, f"ce_4d_eps{eps}", [leaf(torch.randn(2, 5, 3, 4) * 2)],
            lambda x: F.cross_entropy(x, t4, label_smoothing=eps, ignore_index=255),
            ints={"targets": t4.reshape(-1).numpy()}, attrs={"eps": eps, "ignore_index": 255}, scalar_gout=0.7)

    # KL(softmax(teacher) || softmax(student)), batchmean, gradients into both.
    run(f, "kl_div_softmax", [leaf(torch.randn(6, 9) * 2), leaf(torch.randn(6, 9) * 2)],
        lambda s, t: F.kl_div(F.log_softmax(s, 1), F.softmax(t, 1), reduction="batchmean"), scalar_gout=1.7)

    # Smooth-L1 with differences on both sides of beta.
    for red in ("mean", "sum"):
        run(f, f"smooth_l1_{red}", [leaf(torch.randn(4, 3, 5)), leaf(torch.randn(4, 3, 5))],
            lambda p, t: F.smooth_l1_loss(p, t, beta=0.5, reduction=red), attrs={"beta": 0.5}, scalar_gout=0.9)

    close_ref(f, path)


if __name__ == "__main__":
    main()
