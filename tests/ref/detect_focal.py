# Reference for tasks/detect.c's ib_focal_loss: the multibox loss with RetinaNet's sigmoid focal loss
# (torchvision.ops.sigmoid_focal_loss over the object classes, smooth-L1 over the positives' offsets, both
# summed and divided by the positives), its value and the gradients of the offsets and logits, computed in
# float64 from float32 inputs, stored as float32.
# Run: /usr/bin/python3 tests/ref/detect_focal.py  (writes tests/ref/detect_focal.h5)
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

from common import open_ref, close_ref, save_case

torch.manual_seed(20261130)


def leaf(t):
    return t.float().double().requires_grad_(True)


def focal_multibox(loc, conf, loc_t, labels, alpha, gamma):
    """loc (N, A, 4, 1), conf (N, A, K, 1) with column 0 unused, labels (N, A) in 0..K-1 (0: background)."""
    K = conf.shape[2]
    z = conf[:, :, 1:, 0]
    t = F.one_hot(labels.long(), K)[:, :, 1:].double()
    cls = sigmoid_focal_loss(z, t, alpha=alpha, gamma=gamma, reduction="sum")
    pos = labels > 0
    box = F.smooth_l1_loss(loc[:, :, :, 0][pos], loc_t[:, :, :, 0][pos], beta=1.0, reduction="sum")
    return (cls + box) / max(1, int(pos.sum()))


def main():
    f, path = open_ref("detect_focal")
    # N = 2 images, A = 7 anchors, K = 4 (background + 3 classes); logits wide enough to reach both tails
    for name, alpha, gamma, npos in [("focal_a0.25_g2", 0.25, 2.0, 4), ("focal_a0.6_g0.5", 0.6, 0.5, 3),
                                     ("focal_a0.25_g0", 0.25, 0.0, 5), ("focal_no_positives", 0.25, 2.0, 0)]:
        N, A, K = 2, 7, 4
        labels = torch.zeros(N, A, dtype=torch.int64)
        idx = torch.randperm(N * A)[:npos]
        labels.view(-1)[idx] = torch.randint(1, K, (npos,))
        loc_t = torch.randn(N, A, 4, 1).float().double()
        loc = leaf(loc_t + torch.randn(N, A, 4, 1) * 1.2)
        conf = leaf(torch.randn(N, A, K, 1) * 3)
        out = focal_multibox(loc, conf, loc_t, labels, alpha, gamma)
        gout = torch.tensor(0.7, dtype=torch.float64)
        out.backward(gout)
        save_case(f, name, [loc, conf, loc_t], out.reshape(1), grads=[loc.grad, conf.grad, None], gout=gout.reshape(1),
                  ints={"labels": labels.reshape(-1)}, attrs={"alpha": alpha, "gamma": gamma})
    close_ref(f, path)
    print("wrote", path)


if __name__ == "__main__":
    main()
